/**
 * What a run found, in plain words: the line printed at its end (kept changes with their effect
 * and evidence, or why nothing was kept), and the once-only note after a baseline without noise.
 */
import type { ExperimentRow, LedgerStore } from '../traces/index.ts';
import { fmtDelta, fmtMetric as fmtPlain, metricFormat, type MetricFmt } from '../base/format.ts';
import { stddev } from '../base/stats.ts';

/**
 * The note after a baseline whose repeats all gave the same value (null otherwise): the metric
 * shows no noise, so the margin is min_delta alone, and a command that ignores AUTOAGENT_SEED
 * would keep any change that moves the metric by rounding's worth.
 */
export function zeroNoiseNote(values: number[], metricName: string, minDelta: number): string | null {
  if (values.length < 2 || !values.every((v) => v === values[0])) return null;
  return `note: the ${values.length} baseline repeats gave the same ${metricName} (${fmtPlain(values[0])}): the metric shows no noise, `
    + `so any improvement larger than min_delta (now ${fmtPlain(minDelta)}) is kept; if the command is meant to vary with AUTOAGENT_SEED, `
    + 'it does not — set acceptance.min_delta to the smallest change that matters';
}

/** a hypothesis short enough for one line, without the semicolons that separate its clauses */
function what(e: ExperimentRow): string {
  const h = e.hypothesis.replace(/\s+/g, ' ').replace(/;\s*/g, ', ').trim();
  return h.length > 90 ? `${h.slice(0, 87)}…` : h;
}

function pct(from: number, to: number): string {
  if (from === 0) return '';
  const rel = ((to - from) / Math.abs(from)) * 100;
  return `${rel > 0 ? '+' : ''}${rel.toFixed(Math.abs(rel) < 0.1 ? 2 : 1)}%`;
}

function plural(n: number, one: string, many = `${one}s`): string {
  return `${n} ${n === 1 ? one : many}`;
}

/**
 * One paragraph saying what the run found: `kept 1 of 6 changes: #3 N_LAYER 2 → 3 lowered val_bpb
 * 3.21 → 3.05 (-5.0%, beyond the noise margin 0.04); …`, or, when nothing was kept, the closest
 * change and why it was not kept. Null when the run has no baseline (it failed before one).
 */
/** The run's metric format (base/format.ts metricFormat): decimals from its baseline repeats' sd. */
export function runMetricFmt(store: LedgerStore, runId: string): MetricFmt {
  const base = store.listExperiments(runId).find((e) => e.seq === 0);
  if (!base) return fmtPlain;
  return metricFormat(stddev(store.evaluationsOf(base.id).filter((v) => v.status === 'ok' && v.metric !== null).map((v) => v.metric!)));
}

export function runSummary(store: LedgerStore, runId: string): string | null {
  const run = store.getRun(runId);
  if (!run) return null;
  const fmtMetric = runMetricFmt(store, runId);
  const fmtDeltaRun = (x: number | null, d: 'minimize' | 'maximize') => fmtDelta(x, d, fmtMetric);
  const exps = store.listExperiments(runId);
  const base = exps.find((e) => e.seq === 0);
  if (!base || base.decision !== 'baseline' || base.metric === null) return null;
  const name = run.metric_name;
  const dir = run.direction;
  const tried = exps.filter((e) => e.seq > 0 && e.status === 'decided');
  const count = (d: string) => tried.filter((e) => e.decision === d).length;
  const others = [
    count('crash') && `${count('crash')} crashed`,
    count('timeout') && `${count('timeout')} timed out`,
    count('rejected') && `${count('rejected')} rejected before evaluation`,
  ].filter(Boolean);
  const otherText = others.length ? ` (${others.join(', ')})` : '';
  const baseSd = stddev(store.evaluationsOf(base.id).filter((v) => v.status === 'ok' && v.metric !== null).map((v) => v.metric!));
  const baseText = `${name} ${fmtMetric(base.metric)} ± ${fmtMetric(baseSd)}`;
  if (tried.length === 0) return `kept nothing: no change was tried after the baseline (${baseText})`;

  const kept = tried.filter((e) => e.decision === 'kept');
  const verb = dir === 'minimize' ? 'lowered' : 'raised';
  if (kept.length > 0) {
    const last = kept[kept.length - 1]!;
    const head = `kept ${kept.length} of ${plural(tried.length, 'change')}${otherText}`;
    const where = `the run branch ${run.branch} holds ${kept.length === 1 ? 'it' : 'them'}; \`autoagent show ${last.seq}\` for the evidence`;
    if (kept.length === 1) {
      const k = kept[0]!;
      return `${head}: #${k.seq} ${what(k)} ${verb} ${name} ${fmtMetric(k.incumbent_metric)} → ${fmtMetric(k.metric)} `
        + `(${pct(k.incumbent_metric!, k.metric!)}, beyond the noise margin ${fmtMetric(k.margin)}); ${where}`;
    }
    const shown = kept.slice(0, 5).map((k) => `#${k.seq} ${what(k)} (${fmtMetric(k.incumbent_metric)} → ${fmtMetric(k.metric)}, margin ${fmtMetric(k.margin)})`);
    const more = kept.length > 5 ? `, and ${kept.length - 5} more` : '';
    return `${head}, ${verb === 'lowered' ? 'lowering' : 'raising'} ${name} ${fmtMetric(base.metric)} → ${fmtMetric(last.metric)} `
      + `(${pct(base.metric, last.metric!)}) in all: ${shown.join('; ')}${more}; ${where}`;
  }

  const head = `kept none of ${plural(tried.length, 'change')}${otherText}`;
  const judged = tried.filter((e) => e.improvement !== null && e.metric !== null && e.incumbent_metric !== null);
  if (judged.length === 0) return `${head}: none was scored, so nothing could beat the baseline (${baseText})`;
  const best = judged.reduce((a, b) => (b.improvement! > a.improvement! ? b : a));
  const measured = `#${best.seq} ${what(best)} gave ${name} ${fmtMetric(best.metric)} against ${fmtMetric(best.incumbent_metric)} (Δ ${fmtDeltaRun(best.improvement, dir)})`;
  if (best.improvement! <= 0) {
    return `${head}: none measured better than the baseline (${baseText}); the closest, ${measured}; \`autoagent show ${best.seq}\` for the evidence`;
  }
  const why = /confirmation/.test(best.reason ?? '')
    ? `it passed its first evaluation but not the confirmation (${best.reason!.replace(/^passed the screen but not the confirmation: /, '')})`
    : `a gain inside the noise margin ${fmtMetric(best.margin)} can be the seed's alone`;
  return `${head}: the best, ${measured}, was not kept: ${why} (baseline ${baseText} over ${plural(store.evaluationsOf(base.id).length, 'seed')}); `
    + `\`autoagent show ${best.seq}\` for the evidence`;
}
