/** Typed reads and writes of the ledger tables (runs, experiments, evaluations), and the ledger chain. */
import { createHash } from 'node:crypto';
import type { DB } from './db.ts';
import { now } from './db.ts';
import { UsageError } from '../base/errors.ts';
import type { RunStatus, Decision, RunRow, ExperimentRow, ProposalRecord, EvaluationRow, PromotionRow, FinalizationRow, AblationRow } from './types.ts';

export type { RunStatus, Decision, EvalStatus, RunRow, ExperimentRow, ProposalRecord, EvaluationRow, PromotionRow, FinalizationRow, AblationRow } from './types.ts';

export function proposalOf(e: Pick<ExperimentRow, 'proposal'>): ProposalRecord | null {
  if (!e.proposal) return null;
  try {
    return JSON.parse(e.proposal) as ProposalRecord;
  } catch {
    return null;
  }
}

export type NewRun = Omit<RunRow, 'status' | 'stop_reason' | 'elapsed_ms' | 'owner_pid' | 'created_at' | 'updated_at' | 'label' | 'tags' | 'notes'>;

/** A run's label, tags and notes: what a person may change about a run (the dashboard's only writes). */
export interface RunAnnotations {
  label: string | null;
  tags: string[];
  notes: string;
}

export function runAnnotations(run: Pick<RunRow, 'label' | 'tags' | 'notes'>): RunAnnotations {
  let tags: string[] = [];
  try {
    const t = JSON.parse(run.tags ?? '[]');
    if (Array.isArray(t)) tags = t.filter((x): x is string => typeof x === 'string');
  } catch {
    // an unreadable tags column reads as no tags
  }
  return { label: run.label ?? null, tags, notes: run.notes ?? '' };
}

/** Sets the given annotation fields of a run (label, tags, notes); the ledger and its chain are not touched. */
export function setRunAnnotations(db: DB, id: string, a: Partial<RunAnnotations>): boolean {
  const sets: string[] = [];
  const params: Record<string, unknown> = { id };
  if (a.label !== undefined) (sets.push('label = @label'), (params.label = a.label));
  if (a.tags !== undefined) (sets.push('tags = @tags'), (params.tags = JSON.stringify(a.tags)));
  if (a.notes !== undefined) (sets.push('notes = @notes'), (params.notes = a.notes));
  if (!sets.length) return Boolean(getRun(db, id));
  return db.prepare(`UPDATE runs SET ${sets.join(', ')} WHERE id = @id`).run(params).changes > 0;
}

export function insertRun(db: DB, run: NewRun): void {
  const t = now();
  db.prepare(
    `INSERT INTO runs (id, name, kind, study_path, study_json, study_text, config_hash, repo, base_commit, branch,
      lock_manifest, metric_name, direction, self_reported, unsafe_no_sandbox, environment, status, elapsed_ms, created_at, updated_at)
     VALUES (@id, @name, @kind, @study_path, @study_json, @study_text, @config_hash, @repo, @base_commit, @branch,
      @lock_manifest, @metric_name, @direction, @self_reported, @unsafe_no_sandbox, @environment, 'running', 0, @t, @t)`,
  ).run({ ...run, t });
}

export function getRun(db: DB, id: string): RunRow | undefined {
  return db.prepare('SELECT * FROM runs WHERE id = ?').get(id) as RunRow | undefined;
}

/**
 * The one lookup of a run a user names: its exact id, else the only run whose id starts with
 * `ref`. A prefix of several runs is a UsageError listing them (up to 5), never a silent pick.
 */
export function findRun(db: DB, ref: string): RunRow {
  return runByRef(ref, getRun(db, ref), () => db.prepare('SELECT * FROM runs WHERE substr(id, 1, ?) = ? ORDER BY created_at, rowid').all(ref.length, ref) as RunRow[]);
}

/** findRun's rule over any store: the exact match, else the one run of `prefixHits()` (runs whose id starts with `ref`, oldest first). */
export function runByRef(ref: string, exact: RunRow | undefined, prefixHits: () => RunRow[]): RunRow {
  if (exact) return exact;
  const hits = ref ? prefixHits() : [];
  if (hits.length === 1) return hits[0]!;
  if (hits.length === 0) throw new UsageError(`no run ${ref} in this store (see \`autoagent status\`)`);
  const shown = hits.slice(0, 5).map((r) => r.id).join(', ');
  throw new UsageError(`run id prefix ${ref} is ambiguous: it matches ${hits.length} runs (${shown}${hits.length > 5 ? ', …' : ''}); give more of the id`);
}

/** A run a user names (see findRun), or the latest run when none is named. */
export function pickRun(db: DB, ref?: string): RunRow {
  if (ref) return findRun(db, ref);
  const run = latestRun(db);
  if (!run) throw new UsageError('no runs yet in this store: start one with `autoagent run study.yaml`');
  return run;
}

export function latestRun(db: DB): RunRow | undefined {
  return db.prepare('SELECT * FROM runs ORDER BY created_at DESC, rowid DESC LIMIT 1').get() as RunRow | undefined;
}

export function listRuns(db: DB): RunRow[] {
  return db.prepare('SELECT * FROM runs ORDER BY created_at, rowid').all() as RunRow[];
}

export function setRunStatus(db: DB, id: string, status: RunStatus, stopReason: string | null): void {
  db.prepare('UPDATE runs SET status = ?, stop_reason = ?, updated_at = ? WHERE id = ?').run(status, stopReason, now(), id);
}

export function claimRun(db: DB, id: string, pid: number): void {
  db.prepare("UPDATE runs SET owner_pid = ?, status = 'running', stop_reason = NULL, updated_at = ? WHERE id = ?").run(pid, now(), id);
}

export function updateRunStudy(db: DB, id: string, studyJson: string): void {
  db.prepare('UPDATE runs SET study_json = ?, updated_at = ? WHERE id = ?').run(studyJson, now(), id);
}

export function addRunElapsed(db: DB, id: string, ms: number): void {
  db.prepare('UPDATE runs SET elapsed_ms = elapsed_ms + ?, updated_at = ? WHERE id = ?').run(Math.round(ms), now(), id);
}

export type NewExperiment = Pick<
  ExperimentRow,
  'run_id' | 'seq' | 'parent_commit' | 'candidate_commit' | 'proposer' | 'hypothesis' | 'meta' | 'edits' | 'diff' | 'files_hash'
> & Partial<Pick<ExperimentRow, 'round' | 'proposal' | 'contamination'>>;

export function insertExperiment(db: DB, e: NewExperiment): ExperimentRow {
  const info = db.prepare(
    `INSERT INTO experiments (run_id, seq, parent_commit, candidate_commit, proposer, hypothesis, meta, edits, diff, files_hash, round, proposal, contamination, status, started_at)
     VALUES (@run_id, @seq, @parent_commit, @candidate_commit, @proposer, @hypothesis, @meta, @edits, @diff, @files_hash, @round, @proposal, @contamination, 'pending', @t)`,
  ).run({ round: null, proposal: null, contamination: null, ...e, t: now() });
  return db.prepare('SELECT * FROM experiments WHERE id = ?').get(info.lastInsertRowid) as ExperimentRow;
}

export interface DecisionFields {
  decision: Decision;
  reason: string;
  metric: number | null;
  incumbent_metric: number | null;
  improvement: number | null;
  margin: number | null;
  kept_commit?: string | null;
  wall_ms: number;
  inside_ms: number;
}

/**
 * Records a decision, and in the same transaction the experiment's link in the run's ledger
 * chain: sha256(previous link ‖ its decision record), the previous link being the run's last
 * decided experiment's (in decision order), or the run's genesis for the first. So every writer of
 * a decision extends the chain, and a later change to any decided record breaks it from there on.
 */
export function decideExperiment(db: DB, id: number, d: DecisionFields): void {
  db.transaction(() => {
    db.prepare(
      `UPDATE experiments SET status = 'decided', decision = @decision, reason = @reason, metric = @metric,
         incumbent_metric = @incumbent_metric, improvement = @improvement, margin = @margin, kept_commit = @kept_commit,
         finished_at = @t, wall_ms = @wall_ms, inside_ms = @inside_ms
       WHERE id = @id`,
    ).run({ kept_commit: null, ...d, id, t: now() });
    const e = db.prepare('SELECT * FROM experiments WHERE id = ?').get(id) as ExperimentRow | undefined;
    const run = e && getRun(db, e.run_id);
    if (!e || !run) return;
    const prev = db.prepare('SELECT chain, chain_pos FROM experiments WHERE run_id = ? AND id != ? AND chain IS NOT NULL ORDER BY chain_pos DESC LIMIT 1')
      .get(e.run_id, id) as { chain: string; chain_pos: number } | undefined;
    // the same rows as roundRepeatsOf (what the audit recomputes), read by one query
    const roundRepeats = e.round === null ? [] : db.prepare(
      `SELECT x.seq AS experiment, v.repeat, v.seed, v.status, v.metric FROM evaluations v JOIN experiments x ON x.id = v.experiment_id
       WHERE x.run_id = ? AND v.round = ? AND COALESCE(x.round, x.seq) < ?`,
    ).all(e.run_id, e.round, e.round) as RoundRepeat[];
    db.prepare('UPDATE experiments SET chain = ?, chain_pos = ? WHERE id = ?')
      .run(ledgerLink(prev?.chain ?? ledgerGenesis(run), e, evaluationsOf(db, id), roundRepeats), (prev?.chain_pos ?? 0) + 1, id);
  })();
}

// ---------------------------------------------------------------------------------------------
// the ledger chain

const sha256 = (text: string): string => createHash('sha256').update(text, 'utf8').digest('hex');

/** JSON with the keys of every object sorted: one value, one text. */
export function canonicalJson(v: unknown): string {
  if (v === null || typeof v !== 'object') return JSON.stringify(v ?? null);
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(',')}]`;
  const o = v as Record<string, unknown>;
  return `{${Object.keys(o).sort().filter((k) => o[k] !== undefined).map((k) => `${JSON.stringify(k)}:${canonicalJson(o[k])}`).join(',')}}`;
}

/** The chain's first "previous link": what the run was started on (its id, base commit, lock manifest, study file hash). */
export function ledgerGenesis(run: Pick<RunRow, 'id' | 'base_commit' | 'lock_manifest' | 'config_hash'>): string {
  return sha256(canonicalJson({ run: run.id, base_commit: run.base_commit, lock_manifest: run.lock_manifest, config_hash: run.config_hash }));
}

/** the round of an experiment (experiments made before rounds existed: their own seq) */
export function roundOf(e: Pick<ExperimentRow, 'seq' | 'round'>): number {
  return e.round ?? e.seq;
}

/**
 * An experiment's own evaluations: those of its round. An incumbent can get fresh repeats in later
 * rounds (with parallel slots, noise measured under the same load); those are evidence of the later
 * round's judgements, not of the incumbent's own decision, its stored metric or its kept commit.
 */
export function ownEvaluations<T extends Pick<EvaluationRow, 'round'>>(evals: T[] | undefined, e: Pick<ExperimentRow, 'seq' | 'round'>): T[] {
  const r = roundOf(e);
  return (evals ?? []).filter((v) => (v.round ?? r) <= r);
}

/** A fresh repeat of an earlier round's experiment (the incumbent) made during a round, as a ledger link covers it. */
export interface RoundRepeat { experiment: number; repeat: number; seed: number; status: string; metric: number | null }

/** The fresh repeats of earlier experiments made in `e`'s round: evidence its judgement saw besides its own evaluations. */
export function roundRepeatsOf(exps: Array<Pick<ExperimentRow, 'id' | 'seq' | 'round'>>, evals: Map<number, EvaluationRow[]>, e: Pick<ExperimentRow, 'seq' | 'round'>): RoundRepeat[] {
  if (e.round === null) return [];
  const out: RoundRepeat[] = [];
  for (const x of exps) {
    if (roundOf(x) >= e.round) continue;
    for (const v of evals.get(x.id) ?? []) if (v.round === e.round) out.push({ experiment: x.seq, repeat: v.repeat, seed: v.seed, status: v.status, metric: v.metric });
  }
  return out;
}

/**
 * What a link covers: the experiment's decision-relevant fields (no free text), its own
 * evaluations and, in a round, the fresh incumbent repeats of that round its judgement saw.
 */
export function ledgerRecord(e: ExperimentRow, evals: Array<Pick<EvaluationRow, 'repeat' | 'seed' | 'status' | 'metric' | 'round'>>, roundRepeats: RoundRepeat[] = []): Record<string, unknown> {
  return {
    seq: e.seq, parent_commit: e.parent_commit, candidate_commit: e.candidate_commit, kept_commit: e.kept_commit,
    diff_sha256: sha256(e.diff), files_hash: e.files_hash, decision: e.decision,
    metric: e.metric, incumbent_metric: e.incumbent_metric, improvement: e.improvement, margin: e.margin,
    evaluations: ownEvaluations(evals, e).sort((a, b) => a.repeat - b.repeat).map((v) => ({ repeat: v.repeat, seed: v.seed, status: v.status, metric: v.metric })),
    round_repeats: roundRepeats.length
      ? [...roundRepeats].sort((a, b) => a.experiment - b.experiment || a.repeat - b.repeat).map((v) => ({ experiment: v.experiment, repeat: v.repeat, seed: v.seed, status: v.status, metric: v.metric }))
      : undefined,
  };
}

/** sha256(previous link ‖ newline ‖ canonical JSON of the record), hex */
export function ledgerLink(prev: string, e: ExperimentRow, evals: Array<Pick<EvaluationRow, 'repeat' | 'seed' | 'status' | 'metric' | 'round'>>, roundRepeats: RoundRepeat[] = []): string {
  return sha256(`${prev}\n${canonicalJson(ledgerRecord(e, evals, roundRepeats))}`);
}

/** The run's chain as stored: its last link (the genesis when nothing is chained yet) and how many links it has. */
export function ledgerHead(db: DB, runId: string): { head: string; links: number } | null {
  const run = getRun(db, runId);
  if (!run) return null;
  const last = db.prepare('SELECT chain, chain_pos FROM experiments WHERE run_id = ? AND chain IS NOT NULL ORDER BY chain_pos DESC LIMIT 1')
    .get(runId) as { chain: string; chain_pos: number } | undefined;
  const links = (db.prepare('SELECT count(*) AS n FROM experiments WHERE run_id = ? AND chain IS NOT NULL').get(runId) as { n: number }).n;
  return { head: last?.chain ?? ledgerGenesis(run), links };
}

export function listExperiments(db: DB, runId: string): ExperimentRow[] {
  return db.prepare('SELECT * FROM experiments WHERE run_id = ? ORDER BY seq').all(runId) as ExperimentRow[];
}

export function getExperiment(db: DB, runId: string, seq: number): ExperimentRow | undefined {
  return db.prepare('SELECT * FROM experiments WHERE run_id = ? AND seq = ?').get(runId, seq) as ExperimentRow | undefined;
}

export type NewEvaluation = Omit<EvaluationRow, 'id' | 'created_at' | 'round' | 'slot' | 'hardware'> & Partial<Pick<EvaluationRow, 'round' | 'slot' | 'hardware'>>;

export function insertEvaluation(db: DB, e: NewEvaluation): void {
  db.prepare(
    `INSERT INTO evaluations (experiment_id, repeat, seed, status, metric, reason, command_ms, evaluator_ms, exit_code,
       stdout_tail, stderr_tail, telemetry, created_at, round, slot, hardware)
     VALUES (@experiment_id, @repeat, @seed, @status, @metric, @reason, @command_ms, @evaluator_ms, @exit_code,
       @stdout_tail, @stderr_tail, @telemetry, @t, @round, @slot, @hardware)`,
  ).run({ round: null, slot: null, hardware: null, ...e, t: now() });
}

/** The intent of a keep, written before the run branch moves (a crash after it is reconciled on resume). */
export function recordPromotionIntent(db: DB, p: Omit<PromotionRow, 'state' | 'created_at'>): void {
  db.prepare(
    `INSERT INTO promotions (run_id, experiment_seq, kept_commit, expected_parent, state, created_at) VALUES (?, ?, ?, ?, 'intent', ?)
     ON CONFLICT (run_id, experiment_seq) DO UPDATE SET kept_commit = excluded.kept_commit, expected_parent = excluded.expected_parent, state = 'intent'`,
  ).run(p.run_id, p.experiment_seq, p.kept_commit, p.expected_parent, now());
}

export function promotionsOf(db: DB, runId: string, state?: PromotionRow['state']): PromotionRow[] {
  return db.prepare(`SELECT * FROM promotions WHERE run_id = ?${state ? ' AND state = ?' : ''} ORDER BY experiment_seq`).all(...(state ? [runId, state] : [runId])) as PromotionRow[];
}

export function finishPromotion(db: DB, runId: string, seq: number): void {
  db.prepare(`UPDATE promotions SET state = 'done' WHERE run_id = ? AND experiment_seq = ?`).run(runId, seq);
}

/** a row as read; a store opened read-only before schema 10 (the dashboard) has no round, slot or hardware: null */
function evaluationRow(r: EvaluationRow): EvaluationRow {
  return r.round === undefined ? { ...r, round: null, slot: null, hardware: null } : r;
}

export function evaluationsOf(db: DB, experimentId: number): EvaluationRow[] {
  return (db.prepare('SELECT * FROM evaluations WHERE experiment_id = ? ORDER BY repeat').all(experimentId) as EvaluationRow[]).map(evaluationRow);
}

export function evaluationsOfRun(db: DB, runId: string): Map<number, EvaluationRow[]> {
  const rows = db.prepare(
    `SELECT v.* FROM evaluations v JOIN experiments e ON e.id = v.experiment_id WHERE e.run_id = ? ORDER BY v.experiment_id, v.repeat`,
  ).all(runId) as EvaluationRow[];
  const out = new Map<number, EvaluationRow[]>();
  for (const r of rows) {
    const list = out.get(r.experiment_id) ?? [];
    list.push(evaluationRow(r));
    out.set(r.experiment_id, list);
  }
  return out;
}

/** Records that experiment `seq` of a run (its traces as of now) was delivered to `target` (e.g. `langfuse`). */
export function recordExport(db: DB, runId: string, seq: number, target: string, traces: number): void {
  db.prepare(
    `INSERT INTO exports (run_id, experiment_seq, target, traces, exported_at) VALUES (?, ?, ?, ?, ?)
     ON CONFLICT (run_id, experiment_seq, target) DO UPDATE SET traces = excluded.traces, exported_at = excluded.exported_at`,
  ).run(runId, seq, target, traces, now());
}

/** The experiment seqs of a run already delivered to `target`. */
export function exportedSeqs(db: DB, runId: string, target: string): Set<number> {
  const rows = db.prepare('SELECT experiment_seq FROM exports WHERE run_id = ? AND target = ?').all(runId, target) as Array<{ experiment_seq: number }>;
  return new Set(rows.map((r) => r.experiment_seq));
}

/** Durations (command + evaluator, ms) of a run's evaluations that ended ok, in no set order. */
export function okEvaluationMs(db: DB, runId: string): number[] {
  return (db.prepare(`SELECT v.command_ms + v.evaluator_ms ms FROM evaluations v JOIN experiments e ON e.id = v.experiment_id
    WHERE e.run_id = ? AND v.status = 'ok' ORDER BY v.experiment_id, v.repeat`).all(runId) as Array<{ ms: number }>).map((r) => r.ms);
}

// ---------------------------------------------------------------------------------------------
// the sealed test split: finalizations and ablations

function hasTable(db: DB, name: string): boolean {
  return db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?").get(name) !== undefined;
}

/** A run's finalizations, oldest first ([] on a store opened read-only from before the table). */
export function listFinalizations(db: DB, runId: string): FinalizationRow[] {
  if (!hasTable(db, 'finalizations')) return [];
  return db.prepare('SELECT * FROM finalizations WHERE run_id = ? ORDER BY id').all(runId) as FinalizationRow[];
}

/**
 * A run's finalizations as far as the table can be read: none when it lacks run_id or metric, in
 * rowid order when it lacks id, and every field possibly missing (the report reads any store).
 */
export function finalizationsAsStored(db: DB, runId: string): Array<Partial<FinalizationRow>> {
  if (!hasTable(db, 'finalizations')) return [];
  const cols = new Set((db.prepare('PRAGMA table_info(finalizations)').all() as Array<{ name: string }>).map((c) => c.name));
  if (!cols.has('run_id') || !cols.has('metric')) return [];
  return db.prepare(`SELECT * FROM finalizations WHERE run_id = ? ORDER BY ${cols.has('id') ? 'id' : 'rowid'}`).all(runId) as Array<Partial<FinalizationRow>>;
}

/**
 * Records a finalization. With `onlyFirst`, in one transaction with the check, only when the run
 * has none yet: false (and nothing written) when another process finalized it meanwhile.
 */
export function recordFinalization(db: DB, f: Omit<FinalizationRow, 'id'>, o: { onlyFirst: boolean }): boolean {
  return db.transaction(() => {
    if (o.onlyFirst && listFinalizations(db, f.run_id).length > 0) return false;
    db.prepare('INSERT INTO finalizations (run_id, "commit", split, metric, details, forced, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)')
      .run(f.run_id, f.commit, f.split, f.metric, f.details, f.forced, f.created_at);
    return true;
  })();
}

/** A run's ablations, oldest first ([] on a store opened read-only from before the table). */
export function listAblations(db: DB, runId: string): AblationRow[] {
  if (!hasTable(db, 'ablations')) return [];
  return db.prepare('SELECT * FROM ablations WHERE run_id = ? ORDER BY id').all(runId) as AblationRow[];
}

/** Records an ablation; with `onlyFirst`, only when the run has none yet (see recordFinalization). */
export function recordAblation(db: DB, a: Omit<AblationRow, 'id'>, o: { onlyFirst: boolean }): boolean {
  return db.transaction(() => {
    if (o.onlyFirst && listAblations(db, a.run_id).length > 0) return false;
    db.prepare('INSERT INTO ablations (run_id, "commit", split, details, forced, created_at) VALUES (?, ?, ?, ?, ?, ?)')
      .run(a.run_id, a.commit, a.split, a.details, a.forced, a.created_at);
    return true;
  })();
}
