/**
 * The line protocol between the parent and a sandboxed task-agent worker. Worker → parent lines
 * on stdout start with MARK (anything else a tool prints is a log line); parent → worker lines
 * are plain JSON on stdin. The worker holds no key and writes no trace: it asks the parent for
 * every model call and reports its turns and tool calls as events, which the parent records.
 */
import type { Message, ModelRequest, ModelResponse, ToolSpec } from './types.ts';
import type { Task } from '../benchmarks/types.ts';
import type { Route } from './harness.ts';

export const MARK = '\u001eAA ';

export type WorkerRequest = Omit<ModelRequest, 'provider'>;

export type ToParent =
  | { t: 'ready' }
  | { t: 'model'; id: string; span: string; name: string; request: WorkerRequest }
  | { t: 'span'; phase: 'start'; id: string; parent: string | null; kind: 'turn' | 'tool' | 'subagent'; name: string; at: number; input?: unknown }
  | { t: 'span'; phase: 'end'; id: string; at: number; status: 'ok' | 'error'; output?: unknown; error?: string }
  | { t: 'done'; task_id: string; output: string; steps: number; stop: 'final' | 'max_steps' | 'error'; error?: string };

export type ToWorker =
  | { t: 'task'; task: Pick<Task, 'id' | 'input' | 'tags'>; route: Route; scratch: string; root_span: string }
  | { t: 'model_result'; id: string; response?: ModelResponse; error?: string };

export type { Message, ToolSpec };
