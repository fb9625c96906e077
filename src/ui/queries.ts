/**
 * Every read and write the dashboard makes on the store, in one module (over traces/index.ts and
 * src/views.ts). Reads take any connection — the server hands them a read-only one; the only
 * write is `annotate` (a run's label, tags and notes).
 */
import {
  listRuns, listExperiments, evaluationsOfRun, evaluationsOf, getExperiment, getTrace, tracesOf, searchTraceHits, proposalOf, findRun,
  runAnnotations, setRunAnnotations, renderTranscript, traceCountsByExperiment, runActivity, decidedCounts,
  type DB, type RunRow, type ExperimentRow, type EvaluationRow, type RunAnnotations,
} from '../../traces/index.ts';
import { ledgerData, showData } from '../views.ts';
import { effectiveStatus } from '../loop.ts';
import { UsageError } from '../../base/errors.ts';

export type Direction = 'minimize' | 'maximize';

function studyOf(run: RunRow): Record<string, unknown> {
  try {
    return JSON.parse(run.study_json) as Record<string, unknown>;
  } catch {
    return {};
  }
}

/** the run as the runs list shows it: status, best, Δ against the baseline, spend, label and tags */
export function runSummary(db: DB, run: RunRow) {
  const l = ledgerData(db, run);
  const a = runAnnotations(run);
  const experiments = l.rows.filter((r) => r.seq > 0).length;
  const base = l.baseline.mean;
  const best = l.best;
  const spend = l.spend;
  return {
    id: run.id,
    study: run.name,
    label: a.label,
    tags: a.tags,
    notes: a.notes,
    kind: run.kind,
    status: effectiveStatus(run),
    stop_reason: run.stop_reason,
    metric: run.metric_name,
    direction: run.direction,
    self_reported: Boolean(run.self_reported),
    unsafe_no_sandbox: Boolean(run.unsafe_no_sandbox),
    branch: run.branch,
    experiments,
    kept: l.counts.kept ?? 0,
    counts: l.counts,
    baseline: base,
    best,
    /** best − baseline mean, in the metric's own units (negative is better when minimizing) */
    delta: base !== null && best !== null ? best - base : null,
    spend: {
      tokens: spend.task_agent.tokens + spend.meta_agent.tokens,
      cost_usd: spend.task_agent.cost_usd + spend.meta_agent.cost_usd,
      task_agent: spend.task_agent,
      meta_agent: spend.meta_agent,
    },
    elapsed_ms: run.elapsed_ms,
    created_at: run.created_at,
    updated_at: run.updated_at,
  };
}
export type RunSummary = ReturnType<typeof runSummary>;

/** every run, newest first */
export function runsList(db: DB): RunSummary[] {
  return listRuns(db).reverse().map((r) => runSummary(db, r));
}

/** The bar a candidate had to clear: the incumbent's mean moved by the margin in the better direction. */
export function thresholdOf(direction: Direction, incumbent: number | null, margin: number | null): number | null {
  if (incumbent === null || margin === null) return null;
  return direction === 'minimize' ? incumbent - margin : incumbent + margin;
}

function parseJson(text: string | null): unknown {
  if (!text) return null;
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}

function evaluationView(v: EvaluationRow) {
  return {
    repeat: v.repeat, seed: v.seed, status: v.status, metric: v.metric, reason: v.reason,
    command_ms: v.command_ms, evaluator_ms: v.evaluator_ms, exit_code: v.exit_code,
    telemetry: parseJson(v.telemetry), stdout_tail: v.stdout_tail, stderr_tail: v.stderr_tail, created_at: v.created_at,
  };
}

function citedOf(db: DB, ids: string[]) {
  return ids.map((id) => {
    const t = getTrace(db, id)?.trace;
    return { id, found: Boolean(t), task_id: t?.task_id ?? null, experiment_seq: t?.experiment_seq ?? null, score: t?.score ?? null, pass: t?.pass ?? null };
  });
}

export function experimentView(db: DB, run: RunRow, e: ExperimentRow, evals: EvaluationRow[], traces?: { traces: number; failed: number }) {
  const direction = run.direction;
  const proposal = proposalOf(e);
  return {
    seq: e.seq,
    round: e.round,
    proposer: e.proposer,
    hypothesis: e.hypothesis,
    status: e.status,
    decision: e.decision,
    reason: e.reason,
    metric: e.metric,
    incumbent_metric: e.incumbent_metric,
    improvement: e.improvement,
    margin: e.margin,
    /** what the acceptance rule asked of it: the incumbent mean moved by the margin */
    threshold: thresholdOf(direction, e.incumbent_metric, e.margin),
    /** metric − incumbent mean, in metric units */
    delta: e.improvement === null ? null : direction === 'minimize' ? -e.improvement : e.improvement,
    parent_commit: e.parent_commit,
    candidate_commit: e.candidate_commit,
    kept_commit: e.kept_commit,
    started_at: e.started_at,
    finished_at: e.finished_at,
    wall_ms: e.wall_ms,
    meta: parseJson(e.meta),
    proposal: proposal ? { ...proposal, cited: citedOf(db, proposal.cited) } : null,
    diff: e.diff,
    evaluations: evals.map(evaluationView),
    traces: traces ?? { traces: 0, failed: 0 },
  };
}
export type ExperimentView = ReturnType<typeof experimentView>;

/** A run with its experiments (each with its diff, evaluations, decision, reason, proposal). */
export function runDetail(db: DB, ref: string) {
  const run = findRun(db, ref);
  const l = ledgerData(db, run);
  const evals = evaluationsOfRun(db, run.id);
  const counts = traceCountsByExperiment(db, run.id);
  const study = studyOf(run);
  const acceptance = (study.acceptance ?? {}) as Record<string, unknown>;
  return {
    run: { ...runSummary(db, run), study_path: run.study_path, base_commit: run.base_commit, repo: run.repo },
    acceptance: {
      alpha: typeof acceptance.alpha === 'number' ? acceptance.alpha : null,
      min_delta: typeof acceptance.min_delta === 'number' ? acceptance.min_delta : null,
      baseline_repeats: typeof acceptance.baseline_repeats === 'number' ? acceptance.baseline_repeats : null,
      confirm_repeats: typeof acceptance.confirm_repeats === 'number' ? acceptance.confirm_repeats : null,
    },
    noise: l.noise,
    baseline: l.baseline,
    ledger: l.ledger,
    finalizations: l.finalizations,
    experiments: listExperiments(db, run.id).map((e) => experimentView(db, run, e, evals.get(e.id) ?? [], counts.get(e.seq))),
  };
}
export type RunDetail = ReturnType<typeof runDetail>;

/** One experiment as `show --json` gives it, with its task traces listed. */
export function experimentDetail(db: DB, ref: string, seq: number) {
  const run = findRun(db, ref);
  const e = getExperiment(db, run.id, seq);
  if (!e) throw new UsageError(`run ${run.id} has no experiment ${seq}`);
  const show = showData(db, run, e);
  const traces = tracesOf(db, { runId: run.id, experimentSeq: seq }).map((t) => ({
    id: t.id, task_id: t.task_id, repeat: t.repeat, status: t.status, score: t.score, pass: t.pass, steps: t.steps,
    cost_usd: t.cost_usd, tokens: t.input_tokens + t.output_tokens, ms: t.ended_at - t.started_at, finalized: t.finalized,
  }));
  return { ...experimentView(db, run, e, evaluationsOf(db, e.id), traceCountsByExperiment(db, run.id).get(seq)), conversation: show.conversation, trace_list: traces };
}

/** A trace: its record, its spans (flat and as a tree), and the transcript `autoagent traces ID` prints. */
export function traceDetail(db: DB, id: string) {
  const t = getTrace(db, id);
  if (!t) return null;
  return { trace: t.trace, spans: t.spans, roots: t.roots, transcript: renderTranscript(t.trace, t.spans, { maxTextChars: 20_000, maxValueChars: 4000 }) };
}

/** Full-text search over traces (optionally of one run): one hit per trace, its best match, its run and experiment. */
export function traceSearch(db: DB, query: string, opts: { runId?: string; limit?: number } = {}) {
  return searchTraceHits(db, query, { runId: opts.runId, limit: Math.min(200, Math.max(1, opts.limit ?? 50)) });
}

// ---------------------------------------------------------------------------------------------
// knobs: assignments from each experiment's meta, per-knob importance

export type KnobValue = number | string | boolean;

export interface KnobTrial {
  seq: number;
  assignment: Record<string, KnobValue>;
  /** mean metric of its evaluations (null: crash, timeout, rejected, pending) */
  metric: number | null;
  decision: string | null;
}

export interface KnobAxis {
  key: string;
  type: 'number' | 'string' | 'boolean';
  /** numbers: drawn on a log scale (all positive, spanning more than a factor of 20) */
  log: boolean;
  /** numbers: the range seen; others: the values seen */
  min: number | null;
  max: number | null;
  values: KnobValue[];
}

function assignmentOf(meta: unknown): Record<string, KnobValue> | null {
  if (!meta || typeof meta !== 'object') return null;
  const a = (meta as { assignment?: unknown }).assignment;
  if (!a || typeof a !== 'object' || Array.isArray(a)) return null;
  const out: Record<string, KnobValue> = {};
  for (const [k, v] of Object.entries(a as Record<string, unknown>)) {
    if (typeof v === 'number' || typeof v === 'string' || typeof v === 'boolean') out[k] = v;
  }
  return out;
}

/** The baseline's assignment: a proposer's recorded start, else the first knob experiment's assignment with its changes undone. */
function baselineAssignment(exps: ExperimentRow[], baseCommit: string): Record<string, KnobValue> | null {
  for (const e of exps) {
    const meta = parseJson(e.meta) as { start?: unknown; changed?: unknown } | null;
    const a = assignmentOf(meta);
    if (!a || !meta) continue;
    if (meta.start && typeof meta.start === 'object') return { ...a, ...(assignmentOf({ assignment: meta.start }) ?? {}) };
    if (e.parent_commit !== baseCommit || !Array.isArray(meta.changed)) continue;
    const out = { ...a };
    for (const c of meta.changed as Array<{ knob?: unknown; from?: unknown }>) {
      if (typeof c?.knob === 'string' && (typeof c.from === 'number' || typeof c.from === 'string' || typeof c.from === 'boolean')) out[c.knob] = c.from;
    }
    return out;
  }
  return null;
}

/**
 * Importance of each knob for the metric: the share of the metric's variance its values explain
 * (η², the correlation ratio: numbers binned by rank into at most 4 bins, other values by value),
 * normalised to sum to 1 over the knobs, as Optuna's dashboard shows importances. Null with fewer
 * than 3 evaluated trials or no variance.
 */
export function knobImportance(axes: KnobAxis[], trials: KnobTrial[]): Array<{ key: string; importance: number }> | null {
  const ok = trials.filter((t) => t.metric !== null && Number.isFinite(t.metric));
  if (ok.length < 3) return null;
  const ys = ok.map((t) => t.metric!);
  const my = ys.reduce((a, b) => a + b, 0) / ys.length;
  const total = ys.reduce((a, y) => a + (y - my) ** 2, 0);
  if (!(total > 0)) return null;
  const raw = axes.map((ax) => {
    const present = ok.filter((t) => t.assignment[ax.key] !== undefined);
    if (present.length < 3) return { key: ax.key, eta: 0 };
    let groupOf: (t: KnobTrial) => string;
    if (ax.type === 'number') {
      const sorted = [...new Set(present.map((t) => t.assignment[ax.key] as number))].sort((a, b) => a - b);
      const bins = Math.min(4, sorted.length);
      const rank = new Map(sorted.map((v, i) => [v, Math.min(bins - 1, Math.floor((i * bins) / sorted.length))]));
      groupOf = (t) => String(rank.get(t.assignment[ax.key] as number));
    } else groupOf = (t) => String(t.assignment[ax.key]);
    const groups = new Map<string, number[]>();
    for (const t of present) groups.set(groupOf(t), [...(groups.get(groupOf(t)) ?? []), t.metric!]);
    const m = present.reduce((a, t) => a + t.metric!, 0) / present.length;
    const tot = present.reduce((a, t) => a + (t.metric! - m) ** 2, 0);
    let between = 0;
    for (const g of groups.values()) {
      const gm = g.reduce((a, b) => a + b, 0) / g.length;
      between += g.length * (gm - m) ** 2;
    }
    return { key: ax.key, eta: tot > 0 && groups.size > 1 ? between / tot : 0 };
  });
  const sum = raw.reduce((a, r) => a + r.eta, 0);
  if (!(sum > 0)) return raw.map((r) => ({ key: r.key, importance: 0 }));
  return raw.map((r) => ({ key: r.key, importance: r.eta / sum })).sort((a, b) => b.importance - a.importance);
}

/** The knob view's data: every experiment with a known assignment (the baseline at the starting values), the axes, and the importances. */
export function knobView(db: DB, ref: string) {
  const run = findRun(db, ref);
  const exps = listExperiments(db, run.id);
  const evals = evaluationsOfRun(db, run.id);
  const meanOk = (e: ExperimentRow): number | null => {
    if (e.decision === 'crash' || e.decision === 'timeout' || e.decision === 'rejected') return null;
    const m = (evals.get(e.id) ?? []).filter((v) => v.status === 'ok' && v.metric !== null).map((v) => v.metric!);
    return m.length ? m.reduce((a, b) => a + b, 0) / m.length : null;
  };
  const trials: KnobTrial[] = [];
  const base = exps.find((e) => e.seq === 0);
  const start = baselineAssignment(exps, run.base_commit);
  if (base && start) trials.push({ seq: 0, assignment: start, metric: meanOk(base), decision: base.decision });
  for (const e of exps) {
    if (e.seq === 0) continue;
    const a = assignmentOf(parseJson(e.meta));
    if (a) trials.push({ seq: e.seq, assignment: a, metric: meanOk(e), decision: e.decision });
  }
  const keys = [...new Set(trials.flatMap((t) => Object.keys(t.assignment)))];
  const axes: KnobAxis[] = keys.map((key) => {
    const vals = trials.map((t) => t.assignment[key]).filter((v): v is KnobValue => v !== undefined);
    const type = vals.every((v) => typeof v === 'number') ? 'number' : vals.every((v) => typeof v === 'boolean') ? 'boolean' : 'string';
    if (type === 'number') {
      const ns = vals as number[];
      const min = Math.min(...ns);
      const max = Math.max(...ns);
      return { key, type, log: min > 0 && max / min > 20, min, max, values: [...new Set(ns)].sort((a, b) => a - b) };
    }
    return { key, type, log: false, min: null, max: null, values: [...new Set(vals.map((v) => (type === 'string' ? String(v) : v)))] };
  });
  return { run: run.id, metric: run.metric_name, direction: run.direction, axes, trials, importance: knobImportance(axes, trials) };
}

// ---------------------------------------------------------------------------------------------
// export

const CSV_COLUMNS = [
  'run', 'seq', 'round', 'proposer', 'decision', 'metric', 'incumbent_metric', 'delta', 'margin', 'threshold', 'evaluations',
  'wall_ms', 'started_at', 'finished_at', 'candidate_commit', 'kept_commit', 'hypothesis', 'reason',
] as const;

function csvCell(v: unknown): string {
  if (v === null || v === undefined) return '';
  let s = typeof v === 'string' ? v : String(v);
  // a cell a spreadsheet would run as a formula is quoted text
  if (/^[=+\-@\t\r]/.test(s) && typeof v === 'string') s = `'${s}`;
  return /[",\n\r]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

/** The run's experiments as CSV (one row per experiment; knob assignments as `knob:NAME` columns). */
export function runCsv(db: DB, ref: string): string {
  const d = runDetail(db, ref);
  const assigned = new Map(knobView(db, ref).trials.map((t) => [t.seq, t.assignment]));
  const knobs = [...new Set([...assigned.values()].flatMap((a) => Object.keys(a)))];
  const lines = [[...CSV_COLUMNS, ...knobs.map((k) => `knob:${k}`)].map(csvCell).join(',')];
  for (const e of d.experiments) {
    const a = assigned.get(e.seq) ?? {};
    const row: Record<string, unknown> = {
      ...e, run: d.run.id, evaluations: e.evaluations.map((v) => v.metric ?? v.status).join(' '),
    };
    lines.push([...CSV_COLUMNS.map((c) => csvCell(row[c])), ...knobs.map((k) => csvCell(a[k]))].join(','));
  }
  return lines.join('\r\n') + '\r\n';
}

// ---------------------------------------------------------------------------------------------
// change detection for the event streams

/** What changes when a run moves on: compared between polls, sent in the run's event stream. */
export function runState(db: DB, ref: string) {
  const run = findRun(db, ref);
  const n = runActivity(db, run.id);
  const a = runAnnotations(run);
  return {
    id: run.id, status: effectiveStatus(run), experiments: n.experiments, decided: n.decided, last_seq: n.last_seq, evaluations: n.evaluations, traces: n.traces,
    updated_at: run.updated_at, label: a.label, tags: a.tags, notes: a.notes,
  };
}

/** What changes the runs list: one entry per run (the `runs` event's data). */
export function storeState(db: DB): string {
  const list = listRuns(db);
  const decided = decidedCounts(db, list.map((r) => r.id));
  const runs = list.map((r, i) => ({
    id: r.id, status: effectiveStatus(r), decided: decided[i]!, updated_at: r.updated_at, ...runAnnotations(r),
  }));
  return JSON.stringify({ runs });
}

// ---------------------------------------------------------------------------------------------
// the one write

const MAX_LABEL = 200;
const MAX_TAG = 64;
const MAX_TAGS = 32;
const MAX_NOTES = 20_000;

/** Checks a PATCH body: only label, tags and notes, of the right types and sizes. */
export function parseAnnotations(body: unknown): Partial<RunAnnotations> {
  if (!body || typeof body !== 'object' || Array.isArray(body)) throw new UsageError('expected a JSON object with label, tags or notes');
  const b = body as Record<string, unknown>;
  const extra = Object.keys(b).filter((k) => !['label', 'tags', 'notes'].includes(k));
  if (extra.length) throw new UsageError(`only label, tags and notes can be changed (got ${extra.join(', ')})`);
  const out: Partial<RunAnnotations> = {};
  if (b.label !== undefined) {
    if (b.label !== null && typeof b.label !== 'string') throw new UsageError('label: a string or null');
    const l = b.label === null ? null : b.label.trim();
    if (l !== null && l.length > MAX_LABEL) throw new UsageError(`label: at most ${MAX_LABEL} characters`);
    out.label = l || null;
  }
  if (b.tags !== undefined) {
    if (!Array.isArray(b.tags) || !b.tags.every((t) => typeof t === 'string')) throw new UsageError('tags: an array of strings');
    const tags = [...new Set((b.tags as string[]).map((t) => t.trim()).filter(Boolean))];
    if (tags.length > MAX_TAGS) throw new UsageError(`tags: at most ${MAX_TAGS}`);
    const long = tags.find((t) => t.length > MAX_TAG);
    if (long) throw new UsageError(`tags: at most ${MAX_TAG} characters each`);
    out.tags = tags;
  }
  if (b.notes !== undefined) {
    if (typeof b.notes !== 'string') throw new UsageError('notes: a string');
    if (b.notes.length > MAX_NOTES) throw new UsageError(`notes: at most ${MAX_NOTES} characters`);
    out.notes = b.notes;
  }
  return out;
}

/** Writes a run's label, tags and notes (on a writable connection); returns them as stored. */
export function annotate(db: DB, ref: string, a: Partial<RunAnnotations>): RunAnnotations {
  const run = findRun(db, ref);
  setRunAnnotations(db, run.id, a);
  return runAnnotations(findRun(db, run.id));
}
