/**
 * Benchmarks: tasks with ids and splits, and locked scorers. The answer key is held apart from
 * the task: `Task` is what the task-agent may see, `AnswerKey` only the scorer process reads.
 */

export type Split = 'train' | 'val' | 'test';

export interface Task {
  id: string;
  split: Split;
  /** fields the agent sees (rendered into prompts as {{task.field}}) */
  input: Record<string, unknown>;
  tags?: string[];
  /** files placed in the task's scratch folder before the agent starts (path -> content) */
  files?: Record<string, string>;
}

export interface ScoreResult {
  /** 0..1 */
  score: number;
  pass: boolean;
  /** one or a few lines for the trace and the meta-agent: what was expected, what was found */
  feedback: string;
}

export interface Scorer {
  readonly type: string;
  /** `expected` is this task's entry of the answer key; `output` the agent's final answer text */
  score(task: Task, expected: unknown, output: string, ctx: ScoreContext): Promise<ScoreResult>;
}

export interface ScoreContext {
  /** sandbox settings for scorers that execute code (js-exec) */
  unsafeNoSandbox: boolean;
  timeoutMs: number;
}

export interface Benchmark {
  name: string;
  description: string;
  /** every task of every split, in a stable order */
  tasks: Task[];
  /** task id -> expected answer (never given to the agent) */
  answers: Map<string, unknown>;
  scorer: Scorer;
  /** files that hold the benchmark's scorer and answers: locked in a harness study, hidden from the agent */
  lockedPaths: string[];
}

export interface Aggregate {
  n: number;
  mean: number;
  /** 95% confidence interval of the mean */
  ci95: [number, number];
}
