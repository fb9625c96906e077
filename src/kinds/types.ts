/** The one seam between the loop and a domain: prepare a run, evaluate one candidate once. */
import type { Study } from '../study.ts';
import type { EvalStatus, DB } from '../../traces/index.ts';
import type { SpendGuard } from '../../task-agent/evaluate.ts';
import type { Workspace } from '../workspace.ts';
import type { Lease } from '../slots.ts';

export interface SandboxPolicy {
  unsafeNoSandbox: boolean;
  memoryMB: number;
  maxProcesses: number;
  /** extra host paths readable in the sandbox (study `sandbox.read`, absolute) */
  read: string[];
}

export interface RunPaths {
  /** absolute repo root */
  repo: string;
  /** the study file's folder, repo-relative ('' at the root) */
  studyDir: string;
  /** absolute path of the study file */
  studyPath: string;
  /** absolute folder for this run's state (.autoagent) */
  stateDir: string;
}

export interface PrepareResult {
  /** absolute paths outside the repository to add to the lock manifest (files or folders) */
  lockedExternal: string[];
  /** facts about the environment to record on the run (interpreter, device, versions) */
  environment: Record<string, unknown>;
}

/** How far an evaluation has come, as its kind knows it (every field optional: a kind says what it can). */
export interface EvalProgress {
  /** harness kinds: tasks scored so far, of tasksTotal */
  tasksDone?: number;
  tasksTotal?: number;
  /** trainer: the training step reached, of steps (when the budget is in steps), and the current train loss */
  step?: number;
  steps?: number;
  loss?: number;
  /** 0..1 when the kind knows its fraction otherwise (a trainer with a seconds budget) */
  fraction?: number;
  /** model tokens and dollars this evaluation spent so far */
  tokens?: number;
  dollars?: number;
  /** the queue worker running it (src/queue/): its id */
  worker?: string;
}

export interface EvalRequest {
  study: Study;
  paths: RunPaths;
  /** absolute path of the candidate's tree: its commit written out fresh for this evaluation (= ws.cand) */
  worktree: string;
  /** absolute, fresh, writable scratch folder of the command (= ws.scratch; the evaluator reads it) */
  scratch: string;
  /** this evaluation's folders: the candidate tree, the evaluator's view and home, the disk limit */
  ws: Workspace;
  seed: number;
  repeat: number;
  policy: SandboxPolicy;
  /** what prepare() returned for this run */
  prepared: PrepareResult;
  onOutput?: (stream: 'stdout' | 'stderr', chunk: string) => void;
  /** how far the evaluation has come (the loop's live status line); called as the kind learns more */
  onProgress?: (p: EvalProgress) => void;
  /** where this evaluation belongs (harness kinds write traces under it) */
  /** the run, and the store handle its traces go to (null: a store that keeps none) */
  run: { db: DB | null; id: string; seq: number };
  /** the run's token and dollar budget */
  guard: SpendGuard;
  /** what the evaluation's slot holds: a GPU (trainer: only that device, CUDA_VISIBLE_DEVICES), a CPU share */
  lease?: Lease;
  /** per-task mean scores of the incumbent: a kind with a screen compares a minibatch against them */
  screenAgainst?: Map<string, number>;
  signal?: AbortSignal;
}

export interface EvalOutcome {
  status: EvalStatus;
  metric: number | null;
  reason: string | null;
  commandMs: number;
  evaluatorMs: number;
  exitCode: number | null;
  stdoutTail: string;
  stderrTail: string;
  /** anything the kind records (training telemetry, other metrics) */
  telemetry: Record<string, unknown> | null;
  /** the candidate lost on the cheap screen: discard it without further evaluations */
  screenedOut?: string;
  /** the run's token or dollar budget ran out: the evaluation is partial and the run stops */
  budgetExceeded?: string;
  /** the model provider failed (harness kinds): the evaluation is not a score, the run stops (resumable); one line */
  providerFailed?: string;
}

export interface KindAdapter {
  readonly kind: Study['kind'];
  /** candidates' metric is read from their own output (marked self-reported everywhere) */
  readonly selfReported: boolean;
  prepare(study: Study, paths: RunPaths): Promise<PrepareResult>;
  evaluate(req: EvalRequest): Promise<EvalOutcome>;
}
