/** What `log`, `show` and `status` print, as data (for --json) and as text. */
import {
  listExperiments, evaluationsOfRun, evaluationsOf, listRuns, getRun, latestRun, getExperiment,
  type DB, type RunRow, type ExperimentRow, type EvaluationRow,
} from '../traces/index.ts';
import { UsageError } from './errors.ts';
import { runNoise, effectiveStatus } from './loop.ts';
import { fmtMetric, fmtDelta, fmtDuration, table } from './format.ts';
import { mean, stddev } from './ratchet.ts';

export function pickRun(db: DB, runId?: string): RunRow {
  if (runId) {
    const run = getRun(db, runId) ?? listRuns(db).find((r) => r.id.startsWith(runId));
    if (!run) throw new UsageError(`no run ${runId} in this store (see \`autoagent status\`)`);
    return run;
  }
  const run = latestRun(db);
  if (!run) throw new UsageError('no runs yet in this store: start one with `autoagent run study.yaml`');
  return run;
}

function flags(run: RunRow): string[] {
  const f: string[] = [];
  if (run.self_reported) f.push('SELF-REPORTED metric (read from candidate output, not a locked evaluator)');
  if (run.unsafe_no_sandbox) f.push('UNSAFE: ran without a sandbox');
  return f;
}

export interface LedgerRow {
  id: string;
  seq: number;
  repeat: number | null;
  commit: string | null;
  metric: number | null;
  delta: number | null;
  status: string;
  description: string;
}

export function ledgerData(db: DB, run: RunRow) {
  const exps = listExperiments(db, run.id);
  const evals = evaluationsOfRun(db, run.id);
  const noise = runNoise(db, run.id);
  const base = exps.find((e) => e.seq === 0);
  const baseMetrics = (evals.get(base?.id ?? -1) ?? []).filter((v) => v.status === 'ok').map((v) => v.metric!);
  const rows: LedgerRow[] = [];
  for (const e of exps) {
    if (e.seq === 0) {
      for (const v of evals.get(e.id) ?? []) {
        rows.push({
          id: `0.${v.repeat + 1}`, seq: 0, repeat: v.repeat + 1, commit: e.parent_commit.slice(0, 8), metric: v.metric, delta: null,
          status: v.status === 'ok' ? 'baseline' : v.status, description: `baseline repeat ${v.repeat + 1} (seed ${v.seed})${v.reason ? ': ' + v.reason : ''}`,
        });
      }
      continue;
    }
    const delta = e.improvement === null ? null : run.direction === 'minimize' ? -e.improvement : e.improvement;
    rows.push({
      id: String(e.seq), seq: e.seq, repeat: null, commit: (e.kept_commit ?? e.candidate_commit)?.slice(0, 8) ?? null,
      metric: e.metric, delta, status: e.decision ?? 'running', description: e.hypothesis,
    });
  }
  const kept = exps.filter((e) => e.decision === 'kept');
  const best = kept.length ? kept[kept.length - 1]!.metric : base?.metric ?? null;
  return {
    run: {
      id: run.id, name: run.name, kind: run.kind, status: effectiveStatus(run), stop_reason: run.stop_reason, branch: run.branch,
      metric: run.metric_name, direction: run.direction, self_reported: Boolean(run.self_reported),
      unsafe_no_sandbox: Boolean(run.unsafe_no_sandbox), elapsed_ms: run.elapsed_ms,
    },
    baseline: { mean: baseMetrics.length ? mean(baseMetrics) : null, sd: stddev(baseMetrics), repeats: baseMetrics },
    noise: { sd: noise.sd, df: noise.df },
    best,
    counts: countDecisions(exps),
    rows,
  };
}

function countDecisions(exps: ExperimentRow[]): Record<string, number> {
  const c: Record<string, number> = {};
  for (const e of exps) if (e.seq > 0) c[e.decision ?? 'running'] = (c[e.decision ?? 'running'] ?? 0) + 1;
  return c;
}

export function ledgerText(db: DB, run: RunRow): string {
  const d = ledgerData(db, run);
  const lines: string[] = [];
  lines.push(`run ${run.id} · ${run.kind} · ${effectiveStatus(run)}${run.stop_reason ? ` (${run.stop_reason})` : ''}`);
  lines.push(`branch ${run.branch} · metric ${run.metric_name} (${run.direction})`);
  for (const f of flags(run)) lines.push(`!! ${f}`);
  if (d.baseline.mean !== null) {
    lines.push(`baseline ${fmtMetric(d.baseline.mean)} ± ${fmtMetric(d.baseline.sd)} over ${d.baseline.repeats.length} seeds · noise floor (pooled sd) ${fmtMetric(d.noise.sd)} with ${d.noise.df} df · best ${fmtMetric(d.best)}`);
  }
  const counts = Object.entries(d.counts).map(([k, v]) => `${v} ${k}`).join(', ');
  if (counts) lines.push(`experiments: ${counts}`);
  lines.push('');
  lines.push(table(
    ['#', 'commit', run.metric_name, 'Δ', 'status', 'description'],
    d.rows.map((r) => [r.id, r.commit ?? '', fmtMetric(r.metric), r.delta === null ? '' : (r.delta > 0 ? '+' : '') + fmtMetric(r.delta), r.status, r.description]),
  ));
  return lines.join('\n');
}

/** `show 3`, `show <run-id>/3`, or `show 3 --run ID` */
export function parseExperimentRef(db: DB, ref: string, runOpt?: string): { run: RunRow; exp: ExperimentRow } {
  let runId = runOpt;
  let seqText = ref;
  const slash = ref.lastIndexOf('/');
  if (slash > 0) {
    runId = ref.slice(0, slash);
    seqText = ref.slice(slash + 1);
  }
  if (!/^\d+$/.test(seqText)) throw new UsageError(`experiment '${ref}': expected a number (as in \`autoagent log\`), optionally as RUN/N`);
  const run = pickRun(db, runId);
  const exp = getExperiment(db, run.id, Number(seqText));
  if (!exp) throw new UsageError(`run ${run.id} has no experiment ${seqText} (see \`autoagent log\`)`);
  return { run, exp };
}

export function showData(db: DB, run: RunRow, exp: ExperimentRow) {
  const evals = evaluationsOf(db, exp.id);
  return {
    run: run.id,
    seq: exp.seq,
    proposer: exp.proposer,
    hypothesis: exp.hypothesis,
    decision: exp.decision,
    reason: exp.reason,
    parent_commit: exp.parent_commit,
    candidate_commit: exp.candidate_commit,
    kept_commit: exp.kept_commit,
    metric: exp.metric,
    incumbent_metric: exp.incumbent_metric,
    improvement: exp.improvement,
    margin: exp.margin,
    wall_ms: exp.wall_ms,
    inside_ms: exp.inside_ms,
    self_reported: Boolean(run.self_reported),
    meta: exp.meta ? JSON.parse(exp.meta) : null,
    diff: exp.diff,
    evaluations: evals.map((v) => ({
      repeat: v.repeat, seed: v.seed, status: v.status, metric: v.metric, reason: v.reason,
      command_ms: v.command_ms, evaluator_ms: v.evaluator_ms, exit_code: v.exit_code,
      telemetry: v.telemetry ? JSON.parse(v.telemetry) : null, stdout_tail: v.stdout_tail, stderr_tail: v.stderr_tail,
    })),
  };
}

function telemetryText(t: Record<string, unknown> | null): string[] {
  if (!t) return [];
  const out: string[] = [];
  const train = t.train as Record<string, unknown> | undefined;
  if (train) {
    const bits = ['device', 'torch_version', 'steps', 'tokens', 'tokens_per_s', 'steps_per_s', 'peak_mem_mb', 'mfu', 'final_train_loss']
      .filter((k) => train[k] !== undefined && train[k] !== null)
      .map((k) => `${k}=${typeof train[k] === 'number' ? fmtMetric(train[k] as number) : String(train[k])}`);
    out.push(`      training: ${bits.join(' ')}`);
    const curve = train.loss_curve as Array<[number, number, number]> | undefined;
    if (Array.isArray(curve) && curve.length) out.push(`      loss curve: ${sparkline(curve.map((p) => p[2]))} ${fmtMetric(curve[0]![2])} → ${fmtMetric(curve[curve.length - 1]![2])} over ${curve.length} points`);
  }
  const ev = t.eval as Record<string, unknown> | undefined;
  if (ev) out.push(`      scoring: ${Object.entries(ev).filter(([, v]) => typeof v !== 'object').map(([k, v]) => `${k}=${typeof v === 'number' ? fmtMetric(v) : v}`).join(' ')}`);
  const metrics = t.metrics as Record<string, number> | undefined;
  if (metrics && Object.keys(metrics).length) out.push(`      evaluator metrics: ${Object.entries(metrics).map(([k, v]) => `${k}=${fmtMetric(v)}`).join(' ')}`);
  return out;
}

export function sparkline(values: number[], width = 40): string {
  const finite = values.filter(Number.isFinite);
  if (!finite.length) return '';
  const step = Math.max(1, Math.ceil(values.length / width));
  const pts: number[] = [];
  for (let i = 0; i < values.length; i += step) pts.push(values[i]!);
  const lo = Math.min(...finite);
  const hi = Math.max(...finite);
  const bars = '▁▂▃▄▅▆▇█';
  return pts.map((v) => (Number.isFinite(v) ? bars[Math.round(((v - lo) / (hi - lo || 1)) * 7)] : ' ')).join('');
}

export function showText(db: DB, run: RunRow, exp: ExperimentRow): string {
  const d = showData(db, run, exp);
  const lines: string[] = [];
  lines.push(`experiment ${exp.seq} of run ${run.id}`);
  for (const f of flags(run)) lines.push(`!! ${f}`);
  lines.push(`proposer:   ${d.proposer}`);
  lines.push(`hypothesis: ${d.hypothesis}`);
  lines.push(`decision:   ${d.decision ?? 'running'}${d.reason ? ` — ${d.reason}` : ''}`);
  if (d.incumbent_metric !== null || d.metric !== null) {
    lines.push(`metric:     ${run.metric_name} ${fmtMetric(d.incumbent_metric)} (incumbent) → ${fmtMetric(d.metric)} (this), Δ ${fmtDelta(d.improvement, run.direction)}, margin ${fmtMetric(d.margin)}`);
  }
  lines.push(`commits:    parent ${d.parent_commit.slice(0, 10)} · candidate ${d.candidate_commit?.slice(0, 10) ?? '—'}${d.kept_commit ? ` · kept ${d.kept_commit.slice(0, 10)} on ${run.branch}` : ''}`);
  if (d.wall_ms !== null) lines.push(`time:       ${fmtDuration(d.wall_ms)} wall, ${fmtDuration(d.inside_ms ?? 0)} inside command and evaluator`);
  lines.push('');
  lines.push(`evaluations (${d.evaluations.length}):`);
  for (const v of d.evaluations) {
    lines.push(`  #${v.repeat + 1} seed ${v.seed}: ${v.status} ${run.metric_name}=${fmtMetric(v.metric)} · command ${fmtDuration(v.command_ms)} · evaluator ${fmtDuration(v.evaluator_ms)}${v.reason ? ` · ${v.reason}` : ''}`);
    lines.push(...telemetryText(v.telemetry));
  }
  lines.push('');
  lines.push(d.diff ? 'diff:' : 'diff: (none — the starting commit)');
  if (d.diff) lines.push(d.diff.trimEnd());
  return lines.join('\n');
}

export function statusData(db: DB) {
  return listRuns(db).map((r) => {
    const exps = listExperiments(db, r.id);
    return {
      id: r.id, name: r.name, kind: r.kind, status: effectiveStatus(r), stop_reason: r.stop_reason, branch: r.branch,
      experiments: exps.filter((e) => e.seq > 0).length, kept: exps.filter((e) => e.decision === 'kept').length,
      elapsed_ms: r.elapsed_ms, created_at: r.created_at, self_reported: Boolean(r.self_reported), unsafe_no_sandbox: Boolean(r.unsafe_no_sandbox),
    };
  });
}

export function statusText(db: DB): string {
  const rows = statusData(db);
  if (!rows.length) return 'no runs yet: start one with `autoagent run study.yaml`';
  return table(['run', 'kind', 'status', 'experiments', 'kept', 'elapsed', 'started'],
    rows.map((r) => [r.id, r.kind, r.status, String(r.experiments), String(r.kept), fmtDuration(r.elapsed_ms), r.created_at.replace('T', ' ').slice(0, 19)]));
}

export type { EvaluationRow };
