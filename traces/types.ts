/**
 * The store's rows, typed once: the ledger (runs, experiments, evaluations, promotions, the
 * sealed test split's finalizations and ablations) and the traces of harness evaluations.
 * Every reader and writer of the store (traces/*.ts) returns these, or aggregates named below.
 */

// ---------------------------------------------------------------------------------------------
// the ledger

export type RunStatus = 'running' | 'finished' | 'stopped' | 'failed';
export type Decision = 'baseline' | 'kept' | 'discarded' | 'crash' | 'timeout' | 'rejected';
export type EvalStatus = 'ok' | 'crash' | 'timeout' | 'rejected';

export interface RunRow {
  id: string;
  name: string;
  kind: string;
  study_path: string;
  study_json: string;
  study_text: string;
  config_hash: string;
  repo: string;
  base_commit: string;
  branch: string;
  lock_manifest: string;
  metric_name: string;
  direction: 'minimize' | 'maximize';
  self_reported: number;
  unsafe_no_sandbox: number;
  status: RunStatus;
  stop_reason: string | null;
  environment: string | null;
  elapsed_ms: number;
  owner_pid: number | null;
  created_at: string;
  updated_at: string;
  /** a person's name for the run (schema 8; undefined on an older store) */
  label?: string | null;
  /** JSON array of strings (schema 8) */
  tags?: string;
  /** free text (schema 8) */
  notes?: string;
}

export interface ExperimentRow {
  id: number;
  run_id: string;
  seq: number;
  parent_commit: string;
  candidate_commit: string | null;
  kept_commit: string | null;
  proposer: string;
  hypothesis: string;
  meta: string | null;
  edits: string;
  diff: string;
  files_hash: string;
  /** pending: proposed, evaluations may be partial; decided: has a decision */
  status: 'pending' | 'decided';
  decision: Decision | null;
  reason: string | null;
  metric: number | null;
  incumbent_metric: number | null;
  improvement: number | null;
  margin: number | null;
  started_at: string;
  finished_at: string | null;
  wall_ms: number | null;
  inside_ms: number | null;
  /** the round it was proposed in (candidates of one round share the incumbent); null before schema 5 */
  round: number | null;
  /** the proposer's record as JSON (see ProposalRecord); null for the baseline and knob proposers */
  proposal: string | null;
  /** its link in the ledger chain (set with the decision, see ledgerLink); null while pending and before schema 7 */
  chain: string | null;
  /** its position in the chain: 1 for the first decision of the run, then in decision order */
  chain_pos: number | null;
  /** the memorisation check's verdict (JSON, see src/contamination.ts) when its diff writes validation task data; null: clean or not checked (before schema 8) */
  contamination: string | null;
}

/** What experiments.proposal holds. */
export interface ProposalRecord {
  /** the proposer's own conversation (a trace with role 'proposal'), when it has one */
  trace_id: string | null;
  /** trace ids the proposer said motivate the change */
  cited: string[];
  expected_effect: string | null;
  tokens: number;
  cost_usd: number;
  ms: number;
}

export interface EvaluationRow {
  id: number;
  experiment_id: number;
  repeat: number;
  seed: number;
  status: EvalStatus;
  metric: number | null;
  reason: string | null;
  command_ms: number;
  evaluator_ms: number;
  exit_code: number | null;
  stdout_tail: string;
  stderr_tail: string;
  telemetry: string | null;
  created_at: string;
  /** the round it was made in (null: the round of its experiment) */
  round: number | null;
  /** the evaluation slot that ran it (parallel runs; null: sequential) */
  slot: number | null;
  /** the hardware class it ran on (a GPU model), when known */
  hardware: string | null;
}

export interface PromotionRow {
  run_id: string;
  experiment_seq: number;
  kept_commit: string;
  expected_parent: string;
  state: 'intent' | 'done';
  created_at: string;
}

/** A finalization (src/finalize.ts): the final incumbent evaluated once on the sealed test split. */
export interface FinalizationRow {
  id: number;
  run_id: string;
  commit: string;
  split: string;
  metric: number;
  /** JSON */
  details: string;
  forced: number;
  created_at: string;
}

/** An ablation (`finalize --ablate`, src/ablate.ts): each kept change's contribution on the sealed test split. */
export interface AblationRow {
  id: number;
  run_id: string;
  commit: string;
  split: string;
  /** JSON (src/ablate.ts AblationResult and what the run spent) */
  details: string;
  forced: number;
  created_at: string;
}

// ---------------------------------------------------------------------------------------------
// aggregates the views read (traces/views.ts)

/** A run's task-agent traces summed (the report's header). */
export interface TraceSpend {
  traces: number;
  input: number;
  output: number;
  cacheRead: number;
  cacheWrite: number;
  cost: number;
}

/** One experiment's task-agent traces summed (the report's spend charts). */
export interface ExperimentSpend {
  seq: number;
  traces: number;
  input: number;
  output: number;
  cacheRead: number;
  cost: number;
}

/** A run's traces of one role summed: the task-agent's (`task`) or the meta-agent's (`proposal`). */
export interface RoleSpend {
  traces: number;
  tokens: number;
  cost_usd: number;
}

/** One `autoagent eval` invocation (its traces' group id eval-…), as `autoagent evals` lists it. */
export interface EvalListing {
  /** the eval's id (its traces' group id): `autoagent traces ID` opens them */
  id: string;
  benchmark: string;
  split: string;
  harness: string;
  /** distinct tasks evaluated */
  tasks: number;
  /** tasks (traces) that ended: score is over them */
  finished: number;
  passed: number;
  /** status != ok or pass = false */
  failed: number;
  /** mean score over the finished traces, one without a score counting 0; null when none finished */
  score: number | null;
  tokens: number;
  cost_usd: number;
  /** ISO time of the first task's start */
  started_at: string;
  wall_ms: number;
}

/** What the dashboard compares between polls to tell that a run moved on. */
export interface RunActivity {
  experiments: number;
  decided: number;
  last_seq: number | null;
  evaluations: number;
  traces: number;
}

// ---------------------------------------------------------------------------------------------
// traces

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
