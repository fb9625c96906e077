/**
 * The store in memory (a RunStore, traces/store.ts) for fast tests: the same rows, orderings,
 * chain links and refusals as the SQLite store, checked by test/traces/conformance.test.ts. It keeps
 * no traces: their totals are zero, a run's task scores are none, and importing some is refused.
 * Values are bound as better-sqlite3 binds them (undefined and NaN are stored as null; a boolean
 * is refused); rows are returned as copies, as a SELECT returns fresh objects.
 */
import { now } from './db.ts';
import {
  runByRef, ledgerGenesis, ledgerLink, roundRepeatsOf,
  type NewRun, type NewExperiment, type NewEvaluation, type DecisionFields, type RunAnnotations,
} from './ledger.ts';
import type { RunStore } from './store.ts';
import type { TraceExport } from './traces.ts';
import { UsageError } from '../base/errors.ts';
import type { EvaluationRow, ExperimentRow, PromotionRow, RunRow, RunStatus } from './types.ts';

/** a value as SQLite stores it through better-sqlite3 */
function bind<T>(v: T): T {
  if (v === undefined || (typeof v === 'number' && Number.isNaN(v))) return null as T;
  if (typeof v === 'boolean') throw new TypeError('SQLite3 can only bind numbers, strings, bigints, buffers, and null');
  return v;
}

const unique = (what: string) => new Error(`UNIQUE constraint failed: ${what}`);
const foreignKey = () => new Error('FOREIGN KEY constraint failed');

export class MemoryStore implements RunStore {
  readonly where = '(memory)';
  readonly sqlite = null;
  /** runs in insertion order (SQLite's rowid order) */
  private runs: RunRow[] = [];
  private experiments = new Map<number, ExperimentRow>();
  private evaluations = new Map<number, EvaluationRow>();
  private promotions: PromotionRow[] = [];
  private nextExperiment = 1;
  private nextEvaluation = 1;

  private run(id: string): RunRow | undefined {
    return this.runs.find((r) => r.id === id);
  }

  insertRun(run: NewRun): void {
    if (this.run(run.id)) throw unique('runs.id');
    const t = now();
    this.runs.push({
      id: bind(run.id), name: bind(run.name), kind: bind(run.kind), study_path: bind(run.study_path), study_json: bind(run.study_json),
      study_text: bind(run.study_text), config_hash: bind(run.config_hash), repo: bind(run.repo), base_commit: bind(run.base_commit),
      branch: bind(run.branch), lock_manifest: bind(run.lock_manifest), metric_name: bind(run.metric_name), direction: bind(run.direction),
      self_reported: bind(run.self_reported), unsafe_no_sandbox: bind(run.unsafe_no_sandbox), status: 'running', stop_reason: null,
      environment: bind(run.environment), elapsed_ms: 0, owner_pid: null, created_at: t, updated_at: t, label: null, tags: '[]', notes: '',
    });
  }

  getRun(id: string): RunRow | undefined {
    const r = this.run(id);
    return r && { ...r };
  }

  /** created_at, then insertion order */
  private runsInOrder(): RunRow[] {
    return this.runs.map((r, i) => ({ r, i })).sort((a, b) => (a.r.created_at < b.r.created_at ? -1 : a.r.created_at > b.r.created_at ? 1 : a.i - b.i)).map((x) => ({ ...x.r }));
  }

  findRun(ref: string): RunRow {
    return runByRef(ref, this.getRun(ref), () => this.runsInOrder().filter((r) => r.id.startsWith(ref)));
  }

  latestRun(): RunRow | undefined {
    return this.runsInOrder().at(-1);
  }

  listRuns(): RunRow[] {
    return this.runsInOrder();
  }

  private updateRun(id: string, f: (r: RunRow) => void): void {
    const r = this.run(id);
    if (r) f(r);
  }

  setRunStatus(id: string, status: RunStatus, stopReason: string | null): void {
    this.updateRun(id, (r) => Object.assign(r, { status: bind(status), stop_reason: bind(stopReason), updated_at: now() }));
  }

  claimRun(id: string, pid: number): void {
    this.updateRun(id, (r) => Object.assign(r, { owner_pid: bind(pid), status: 'running', stop_reason: null, updated_at: now() }));
  }

  updateRunStudy(id: string, studyJson: string): void {
    this.updateRun(id, (r) => Object.assign(r, { study_json: bind(studyJson), updated_at: now() }));
  }

  addRunElapsed(id: string, ms: number): void {
    const add = bind(Math.round(ms));
    this.updateRun(id, (r) => Object.assign(r, { elapsed_ms: add === null ? null : r.elapsed_ms + add, updated_at: now() }));
  }

  setRunAnnotations(id: string, a: Partial<RunAnnotations>): boolean {
    const r = this.run(id);
    if (!r) return false;
    if (a.label !== undefined) r.label = bind(a.label);
    if (a.tags !== undefined) r.tags = JSON.stringify(a.tags);
    if (a.notes !== undefined) r.notes = bind(a.notes);
    return true;
  }

  insertExperiment(e: NewExperiment): ExperimentRow {
    if (!this.run(e.run_id)) throw foreignKey();
    if ([...this.experiments.values()].some((x) => x.run_id === e.run_id && x.seq === e.seq)) throw unique('experiments.run_id, experiments.seq');
    const row: ExperimentRow = {
      id: this.nextExperiment++, run_id: bind(e.run_id), seq: bind(e.seq), parent_commit: bind(e.parent_commit), candidate_commit: bind(e.candidate_commit),
      kept_commit: null, proposer: bind(e.proposer), hypothesis: bind(e.hypothesis), meta: bind(e.meta), edits: bind(e.edits), diff: bind(e.diff),
      files_hash: bind(e.files_hash), status: 'pending', decision: null, reason: null, metric: null, incumbent_metric: null, improvement: null,
      margin: null, started_at: now(), finished_at: null, wall_ms: null, inside_ms: null, round: bind(e.round ?? null),
      proposal: bind(e.proposal ?? null), chain: null, chain_pos: null, contamination: bind(e.contamination ?? null),
    };
    this.experiments.set(row.id, row);
    return { ...row };
  }

  decideExperiment(id: number, d: DecisionFields): void {
    const e = this.experiments.get(id);
    if (!e) return;
    const decided: ExperimentRow = {
      ...e, status: 'decided', decision: bind(d.decision), reason: bind(d.reason), metric: bind(d.metric), incumbent_metric: bind(d.incumbent_metric),
      improvement: bind(d.improvement), margin: bind(d.margin), kept_commit: bind(d.kept_commit ?? null), finished_at: now(),
      wall_ms: bind(d.wall_ms), inside_ms: bind(d.inside_ms),
    };
    const run = this.run(e.run_id)!;
    const exps = [...this.experiments.values()].filter((x) => x.run_id === e.run_id);
    let prev: ExperimentRow | undefined;
    for (const x of exps) if (x.id !== id && x.chain !== null && (!prev || x.chain_pos! > prev.chain_pos!)) prev = x;
    const roundRepeats = roundRepeatsOf(exps, this.evaluationsOfRun(e.run_id), decided);
    decided.chain = ledgerLink(prev?.chain ?? ledgerGenesis(run), decided, this.evaluationsOf(id), roundRepeats);
    decided.chain_pos = (prev?.chain_pos ?? 0) + 1;
    this.experiments.set(id, decided);
  }

  listExperiments(runId: string): ExperimentRow[] {
    return [...this.experiments.values()].filter((x) => x.run_id === runId).sort((a, b) => a.seq - b.seq).map((x) => ({ ...x }));
  }

  getExperiment(runId: string, seq: number): ExperimentRow | undefined {
    const e = [...this.experiments.values()].find((x) => x.run_id === runId && x.seq === seq);
    return e && { ...e };
  }

  ledgerHead(runId: string): { head: string; links: number } | null {
    const run = this.run(runId);
    if (!run) return null;
    const chained = [...this.experiments.values()].filter((x) => x.run_id === runId && x.chain !== null);
    const last = chained.reduce<ExperimentRow | undefined>((m, x) => (!m || x.chain_pos! > m.chain_pos! ? x : m), undefined);
    return { head: last?.chain ?? ledgerGenesis(run), links: chained.length };
  }

  insertEvaluation(e: NewEvaluation): void {
    if (!this.experiments.has(e.experiment_id)) throw foreignKey();
    if ([...this.evaluations.values()].some((v) => v.experiment_id === e.experiment_id && v.repeat === e.repeat)) {
      throw unique('evaluations.experiment_id, evaluations.repeat');
    }
    const row: EvaluationRow = {
      id: this.nextEvaluation++, experiment_id: bind(e.experiment_id), repeat: bind(e.repeat), seed: bind(e.seed), status: bind(e.status),
      metric: bind(e.metric), reason: bind(e.reason), command_ms: bind(e.command_ms), evaluator_ms: bind(e.evaluator_ms),
      exit_code: bind(e.exit_code), stdout_tail: bind(e.stdout_tail), stderr_tail: bind(e.stderr_tail), telemetry: bind(e.telemetry),
      created_at: now(), round: bind(e.round ?? null), slot: bind(e.slot ?? null), hardware: bind(e.hardware ?? null),
    };
    this.evaluations.set(row.id, row);
  }

  evaluationsOf(experimentId: number): EvaluationRow[] {
    return [...this.evaluations.values()].filter((v) => v.experiment_id === experimentId).sort((a, b) => a.repeat - b.repeat).map((v) => ({ ...v }));
  }

  evaluationsOfRun(runId: string): Map<number, EvaluationRow[]> {
    const ids = new Set([...this.experiments.values()].filter((x) => x.run_id === runId).map((x) => x.id));
    const rows = [...this.evaluations.values()].filter((v) => ids.has(v.experiment_id))
      .sort((a, b) => a.experiment_id - b.experiment_id || a.repeat - b.repeat);
    const out = new Map<number, EvaluationRow[]>();
    for (const r of rows) {
      const list = out.get(r.experiment_id) ?? [];
      list.push({ ...r });
      out.set(r.experiment_id, list);
    }
    return out;
  }

  recordPromotionIntent(p: Omit<PromotionRow, 'state' | 'created_at'>): void {
    if (!this.run(p.run_id)) throw foreignKey();
    const old = this.promotions.find((x) => x.run_id === p.run_id && x.experiment_seq === p.experiment_seq);
    if (old) Object.assign(old, { kept_commit: bind(p.kept_commit), expected_parent: bind(p.expected_parent), state: 'intent' });
    else {
      this.promotions.push({
        run_id: bind(p.run_id), experiment_seq: bind(p.experiment_seq), kept_commit: bind(p.kept_commit), expected_parent: bind(p.expected_parent),
        state: 'intent', created_at: now(),
      });
    }
  }

  promotionsOf(runId: string, state?: PromotionRow['state']): PromotionRow[] {
    return this.promotions.filter((x) => x.run_id === runId && (!state || x.state === state))
      .sort((a, b) => a.experiment_seq - b.experiment_seq).map((x) => ({ ...x }));
  }

  finishPromotion(runId: string, seq: number): void {
    for (const x of this.promotions) if (x.run_id === runId && x.experiment_seq === seq) x.state = 'done';
  }

  okEvaluationMs(runId: string): number[] {
    return [...this.evaluationsOfRun(runId).values()].flat().filter((v) => v.status === 'ok').map((v) => v.command_ms + v.evaluator_ms);
  }

  traceTotals(_runId: string): { tokens: number; cost_usd: number } {
    return { tokens: 0, cost_usd: 0 };
  }

  taskMeanScores(_runId: string, _seq: number): Map<string, number> {
    return new Map();
  }

  importTraces(_x: TraceExport): { traces: number; spans: number } {
    throw new UsageError('this store keeps no traces (a memory store): a run whose evaluations or proposals write traces needs the SQLite store');
  }
}
