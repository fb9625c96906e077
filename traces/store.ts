/**
 * The store as an interface (Optuna's BaseStorage is the model). `LedgerStore`: runs, experiments,
 * evaluations, decisions with their chain links, promotions, and a run's label, tags and notes.
 * `RunStore`: what a run (src/loop.ts) and its audit (src/audit.ts) read and write — the ledger,
 * plus the few reads of the run's traces they need. Two implementations: SqliteStore (the store
 * file, over traces/ledger.ts and traces/views.ts) and MemoryStore (traces/memory.ts, for fast
 * tests). test/traces/conformance.test.ts runs the same calls against both and expects the same
 * results: the same rows, orderings, chain links and refusals.
 *
 * Not behind the interface: writing and reading traces and spans (harness evaluations, model
 * proposals and what a model proposer reads of the run's history), search, finalizations,
 * ablations, exports, the model cache. They stay functions over the SQLite handle (traces/*.ts),
 * which a RunStore hands out as `sqlite`; a MemoryStore has none (null) and keeps no traces, so a
 * run that would write some is refused on it before it starts (src/loop.ts checkTraceStore).
 */
import type { DB } from './db.ts';
import { runTraceTotals, taskMeanScores } from './views.ts';
import { importTraces, type TraceExport } from './traces.ts';
import {
  insertRun, getRun, findRun, latestRun, listRuns, setRunStatus, claimRun, updateRunStudy, addRunElapsed, setRunAnnotations,
  insertExperiment, decideExperiment, listExperiments, getExperiment, insertEvaluation, evaluationsOf, evaluationsOfRun, ledgerHead,
  recordPromotionIntent, promotionsOf, finishPromotion, okEvaluationMs,
  type NewRun, type NewExperiment, type NewEvaluation, type DecisionFields, type RunAnnotations,
} from './ledger.ts';
import type { EvaluationRow, ExperimentRow, PromotionRow, RunRow, RunStatus } from './types.ts';

export interface LedgerStore {
  // runs
  /** a new run, status `running`; a second run with the same id is refused (UNIQUE) */
  insertRun(run: NewRun): void;
  getRun(id: string): RunRow | undefined;
  /** its exact id, else the one run whose id starts with `ref`; else a UsageError (none, or ambiguous) */
  findRun(ref: string): RunRow;
  /** the newest run (created_at, then insertion order) */
  latestRun(): RunRow | undefined;
  /** every run, oldest first (created_at, then insertion order) */
  listRuns(): RunRow[];
  setRunStatus(id: string, status: RunStatus, stopReason: string | null): void;
  /** the run is `running` again, owned by process `pid`, with no stop reason */
  claimRun(id: string, pid: number): void;
  updateRunStudy(id: string, studyJson: string): void;
  /** adds `ms` (rounded) to the run's elapsed time */
  addRunElapsed(id: string, ms: number): void;
  /** sets the given label, tags, notes (outside the chain); false when there is no such run */
  setRunAnnotations(id: string, a: Partial<RunAnnotations>): boolean;

  // experiments
  /** a pending experiment; refused for an unknown run (FOREIGN KEY) or a seq the run has (UNIQUE) */
  insertExperiment(e: NewExperiment): ExperimentRow;
  /** records the decision and, with it, the experiment's link in the run's chain (position: decision order) */
  decideExperiment(id: number, d: DecisionFields): void;
  /** a run's experiments by seq */
  listExperiments(runId: string): ExperimentRow[];
  getExperiment(runId: string, seq: number): ExperimentRow | undefined;
  /** the run's last chain link (its genesis when nothing is decided) and how many links; null: no such run */
  ledgerHead(runId: string): { head: string; links: number } | null;

  // evaluations
  /** refused for an unknown experiment (FOREIGN KEY) or a repeat it has (UNIQUE (experiment, repeat)); a NaN metric is stored as null */
  insertEvaluation(e: NewEvaluation): void;
  /** an experiment's evaluations by repeat */
  evaluationsOf(experimentId: number): EvaluationRow[];
  /** a run's evaluations by experiment id (ascending), each list by repeat; experiments without any are absent */
  evaluationsOfRun(runId: string): Map<number, EvaluationRow[]>;
  /** the durations (command + evaluator, ms) of a run's evaluations that ended ok, by experiment id, then repeat */
  okEvaluationMs(runId: string): number[];

  // promotions (the intent of a keep, before the branch moves)
  /** an intent; a second one for the same (run, seq) replaces the commits and is an intent again */
  recordPromotionIntent(p: Omit<PromotionRow, 'state' | 'created_at'>): void;
  /** a run's promotions by experiment seq, of one state when given */
  promotionsOf(runId: string, state?: PromotionRow['state']): PromotionRow[];
  finishPromotion(runId: string, seq: number): void;
}

/** What a run and its audit read and write: the ledger, and the reads of its traces they need. */
export interface RunStore extends LedgerStore {
  /** where the store is, for people: the file's path, or `(memory)` */
  readonly where: string;
  /**
   * the SQLite handle for what is not behind this interface (traces and spans, search, exports, the
   * model cache); null for a store that keeps no traces (MemoryStore)
   */
  readonly sqlite: DB | null;
  /** the tokens and dollars of a run's traces (task-agent and meta-agent): its spend so far */
  traceTotals(runId: string): { tokens: number; cost_usd: number };
  /** per task, the mean score of experiment `seq`'s task traces (a trace without a score counts 0) */
  taskMeanScores(runId: string, seq: number): Map<string, number>;
  /** traces made elsewhere (a queue worker's), with their search rows; a trace already here is skipped */
  importTraces(x: TraceExport): { traces: number; spans: number };
}

/** The store file: traces/ledger.ts's and traces/views.ts's functions over one SQLite handle. */
export class SqliteStore implements RunStore {
  constructor(readonly sqlite: DB, readonly where = sqlite.name) {}
  traceTotals(runId: string): { tokens: number; cost_usd: number } {
    return runTraceTotals(this.sqlite, runId);
  }
  taskMeanScores(runId: string, seq: number): Map<string, number> {
    return taskMeanScores(this.sqlite, runId, seq);
  }
  importTraces(x: TraceExport): { traces: number; spans: number } {
    return importTraces(this.sqlite, x);
  }
  okEvaluationMs(runId: string): number[] {
    return okEvaluationMs(this.sqlite, runId);
  }
  insertRun(run: NewRun): void {
    insertRun(this.sqlite, run);
  }
  getRun(id: string): RunRow | undefined {
    return getRun(this.sqlite, id);
  }
  findRun(ref: string): RunRow {
    return findRun(this.sqlite, ref);
  }
  latestRun(): RunRow | undefined {
    return latestRun(this.sqlite);
  }
  listRuns(): RunRow[] {
    return listRuns(this.sqlite);
  }
  setRunStatus(id: string, status: RunStatus, stopReason: string | null): void {
    setRunStatus(this.sqlite, id, status, stopReason);
  }
  claimRun(id: string, pid: number): void {
    claimRun(this.sqlite, id, pid);
  }
  updateRunStudy(id: string, studyJson: string): void {
    updateRunStudy(this.sqlite, id, studyJson);
  }
  addRunElapsed(id: string, ms: number): void {
    addRunElapsed(this.sqlite, id, ms);
  }
  setRunAnnotations(id: string, a: Partial<RunAnnotations>): boolean {
    return setRunAnnotations(this.sqlite, id, a);
  }
  insertExperiment(e: NewExperiment): ExperimentRow {
    return insertExperiment(this.sqlite, e);
  }
  decideExperiment(id: number, d: DecisionFields): void {
    decideExperiment(this.sqlite, id, d);
  }
  listExperiments(runId: string): ExperimentRow[] {
    return listExperiments(this.sqlite, runId);
  }
  getExperiment(runId: string, seq: number): ExperimentRow | undefined {
    return getExperiment(this.sqlite, runId, seq);
  }
  ledgerHead(runId: string): { head: string; links: number } | null {
    return ledgerHead(this.sqlite, runId);
  }
  insertEvaluation(e: NewEvaluation): void {
    insertEvaluation(this.sqlite, e);
  }
  evaluationsOf(experimentId: number): EvaluationRow[] {
    return evaluationsOf(this.sqlite, experimentId);
  }
  evaluationsOfRun(runId: string): Map<number, EvaluationRow[]> {
    return evaluationsOfRun(this.sqlite, runId);
  }
  recordPromotionIntent(p: Omit<PromotionRow, 'state' | 'created_at'>): void {
    recordPromotionIntent(this.sqlite, p);
  }
  promotionsOf(runId: string, state?: PromotionRow['state']): PromotionRow[] {
    return promotionsOf(this.sqlite, runId, state);
  }
  finishPromotion(runId: string, seq: number): void {
    finishPromotion(this.sqlite, runId, seq);
  }
}
