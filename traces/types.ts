/**
 * Traces of harness evaluations: one trace per (experiment or eval, task, repeat), made of nested
 * spans. Only the parent process writes them: the sandboxed task-agent reports events over a
 * pipe, model calls are made and recorded by the parent.
 */

export type SpanKind = 'agent' | 'turn' | 'model' | 'tool' | 'subagent' | 'scoring';
export type SpanStatus = 'ok' | 'error' | 'timeout';

/** `task`: a task-agent run scored by the benchmark; `proposal`: a meta-agent's conversation while proposing */
export type TraceRole = 'task' | 'proposal';

export interface TraceRecord {
  id: string;
  /** default `task` */
  role?: TraceRole;
  /** null for `autoagent eval` outside a run */
  run_id: string | null;
  /** experiment seq within the run; null for `autoagent eval` */
  experiment_seq: number | null;
  /** groups the traces of one `autoagent eval` invocation (or `<run>#<seq>` in a run) */
  group_id: string;
  task_id: string;
  repeat: number;
  benchmark: string;
  split: string;
  harness: string;
  status: SpanStatus;
  /** 0..1 from the locked scorer (null when the task failed before scoring) */
  score: number | null;
  pass: boolean | null;
  /** the agent's final answer text */
  output: string | null;
  error: string | null;
  started_at: number;
  ended_at: number;
  input_tokens: number;
  output_tokens: number;
  cache_read_tokens: number;
  cache_write_tokens: number;
  cost_usd: number;
}

export interface SpanRecord {
  id: string;
  trace_id: string;
  parent_id: string | null;
  kind: SpanKind;
  name: string;
  status: SpanStatus;
  started_at: number;
  ended_at: number;
  /** JSON-serialisable: a model call's full request, a tool call's arguments, ... */
  input: unknown;
  /** a model call's full response (reasoning included), a tool's result, the scorer's feedback */
  output: unknown;
  error: string | null;
  input_tokens: number;
  output_tokens: number;
  cache_read_tokens: number;
  cache_write_tokens: number;
  cost_usd: number;
  attributes: Record<string, unknown>;
}
