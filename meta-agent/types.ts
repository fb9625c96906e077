/**
 * The proposer interface: given the incumbent and the run's history, return one edit.
 * Every proposer (search, random, llm, command, hybrid) implements it.
 */
import type { ModelRequest, ModelResponse } from '../task-agent/types.ts';
import type { SpanKind, SpanStatus } from '../traces/types.ts';

/** One declared knob from the study file (`knobs:`), overriding or extending discovery. */
export interface KnobDecl {
  /** file the knob lives in, relative to the repo root (must be editable) */
  file: string;
  /** the top-level NAME assigned in that file */
  name: string;
  /** inclusive bounds for numeric knobs */
  min?: number;
  max?: number;
  /** search positive floats on a log scale (default: true for floats with min > 0) */
  log?: boolean;
  /** allowed values: the only way a string knob becomes searchable */
  choices?: Array<string | number | boolean>;
  /** false: never search this knob (e.g. a switch that only matters on another device) */
  search?: boolean;
}

export type KnobValue = number | boolean | string;

/** One experiment of the run as the proposer sees it (oldest first). */
export interface LedgerEntry {
  seq: number;
  hypothesis: string;
  decision: 'baseline' | 'kept' | 'discarded' | 'crash' | 'timeout' | 'rejected' | 'pending';
  /** mean metric over the experiment's evaluations (undefined when none succeeded) */
  metric?: number;
  /** the metric of each evaluation that succeeded (repeats and confirmations: the noise is in their spread) */
  values?: number[];
  /** improvement over the incumbent at decision time, in the "higher is better" sense */
  improvement?: number;
  /** whatever the proposer stored in Proposal.meta when it proposed this experiment */
  meta?: unknown;
  /** why it was decided so (the loop's reason line) */
  reason?: string;
  /** which proposer made it (`baseline`, `search`, `llm`, …) */
  proposer?: string;
}

/**
 * Read-only access to the run's record: what the meta-agent's tools and the trace digest read.
 * Implemented over the SQLite store and git by meta-agent/history.ts.
 */
export interface RunHistory {
  /** the experiment's diff against its parent; null when there is no such experiment */
  diff(seq: number): string | null;
  /** tasks of an experiment's evaluations that failed (status != ok or pass = false), worst first */
  failingTasks(seq: number): Array<{ task_id: string; score: number | null; trace_ids: string[] }>;
  /** one trace rendered as a transcript (reasoning, tool calls, errors, scorer feedback), at most maxChars; null when unknown */
  trace(id: string, maxChars?: number): string | null;
  /** full-text search over the run's task traces */
  search(query: string, limit?: number): Array<{ trace_id: string; task_id: string; experiment_seq: number | null; snippet: string }>;
  /** a tracked file of the incumbent (repo-relative), or null when it does not exist or is hidden */
  readFile(path: string): Promise<string | null>;
  /**
   * The trace digest of the incumbent, at most `tokens` (≈ 4 characters each), with explicit
   * markers where text was cut. Harness runs: failed and regressed tasks first, then a sample of
   * passes, each with its transcript. Trainer runs: loss curves and telemetry. Command runs: the
   * evaluations' output tails.
   */
  digest(tokens: number): string;
  /** does a trace with this id exist in this run? */
  hasTrace(id: string): boolean;
}

/** One span a proposer records in its own conversation trace (tool calls, the external CLI run). */
export interface ProposalSpan {
  kind: SpanKind;
  name: string;
  status: SpanStatus;
  started_at: number;
  ended_at: number;
  input: unknown;
  output: unknown;
  error?: string | null;
  attributes?: Record<string, unknown>;
}

/**
 * The loop's services to a proposer that talks to a model or runs a tool. `model` records the
 * call as a span of the proposal's trace and charges the per-proposal and the run's budgets
 * (it throws ProposalBudgetExceeded, or the run's BudgetExceeded, before a call that would start
 * over budget); `record` adds any other span.
 */
export interface ProposalServices {
  model(req: Omit<ModelRequest, 'provider'>, name?: string): Promise<ModelResponse>;
  record(span: ProposalSpan): void;
  /** tokens and dollars this proposal has spent so far */
  spent(): { tokens: number; dollars: number };
}

export interface ProposalContext {
  /** editable files of the incumbent: repo-relative path -> content */
  files: Record<string, string>;
  /** editable files of the run's starting commit (the knob values a search space is centred on) */
  baseFiles?: Record<string, string>;
  /** the improvement (in metric units) a first evaluation of this proposal must exceed to pass the
   *  ratchet's screen, as of now: max(min_delta, t · pooled noise · √(1 + 1/n_incumbent)) */
  screenMargin?: number;
  /** globs of editable paths (repo-relative) */
  editable: string[];
  /** knobs declared in the study */
  knobs: KnobDecl[];
  /** what the run optimizes */
  metric: { name: string; direction: 'minimize' | 'maximize' };
  /** every experiment of this run so far, oldest first, baseline included */
  ledger: LedgerEntry[];
  /** deterministic per (run, proposal) random source in [0, 1) */
  random: () => number;
  /** hashes (sha256 of sorted path+content) of every candidate already evaluated; avoid proposing these */
  seen: Set<string>;
  /** the experiment number this proposal will get */
  seq?: number;
  /** the study's `command` line: a setting it passes (`--name=value`) is overridden there, not a knob */
  command?: string;
  /** the run's id and kind */
  runId?: string;
  kind?: 'command' | 'trainer' | 'harness';
  /** the incumbent: its experiment seq and commit */
  incumbent?: { seq: number; commit: string; metric?: number };
  /** absolute repo root (the command proposer makes its own worktree from `incumbent.commit`) */
  repo?: string;
  /** the direction text (program.md, or the study's `proposer.program`) */
  program?: string;
  /** what happened to this proposer's recent proposals that made no experiment (skipped as repeats, failed), newest last */
  notes?: string[];
  /** proposals already made in this round from the same incumbent (several candidates per round) */
  round?: Array<Pick<Proposal, 'hypothesis'>>;
  /** the run's record (llm, hybrid, command) */
  history?: RunHistory;
  /** model calls and span recording (llm, hybrid, command) */
  services?: ProposalServices;
  signal?: AbortSignal;
}

export interface FileEdit {
  /** repo-relative path */
  path: string;
  /** the whole new content of the file */
  content: string;
}

export interface Proposal {
  /** one line stating exactly what changed, e.g. `LEARNING_RATE 6e-4 → 8.5e-4` */
  hypothesis: string;
  edits: FileEdit[];
  /** proposer-private state stored with the experiment and handed back in the ledger */
  meta?: unknown;
  /** ids of the traces that motivate the change (llm, hybrid) */
  cited?: string[];
  /** what the proposer expects to happen, in its words */
  expected_effect?: string;
}

/** A proposal that could not be made (invalid model output after the repair attempt, CLI failure, …): no experiment, the trace keeps why. */
export class ProposalFailed extends Error {}
/** The per-proposal token or dollar budget ran out. */
export class ProposalBudgetExceeded extends ProposalFailed {}

export interface Proposer {
  readonly name: string;
  /** it only turns knobs: a run with no knobs refuses to start (the study's search, random, hybrid set by type) */
  readonly requiresKnobs?: boolean;
  /** null: nothing left to propose (the run stops with that reason) */
  propose(ctx: ProposalContext): Promise<Proposal | null>;
}
