/**
 * The proposer interface: given the incumbent and the run's history, return one edit.
 * Every proposer (search, random, and later llm / command / hybrid) implements it.
 */

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
  /** improvement over the incumbent at decision time, in the "higher is better" sense */
  improvement?: number;
  /** whatever the proposer stored in Proposal.meta when it proposed this experiment */
  meta?: unknown;
}

export interface ProposalContext {
  /** editable files of the incumbent: repo-relative path -> content */
  files: Record<string, string>;
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
}

export interface Proposer {
  readonly name: string;
  /** null: nothing left to propose (the run stops with that reason) */
  propose(ctx: ProposalContext): Promise<Proposal | null>;
}
