/**
 * `autoagent report`: one self-contained HTML file per run — no network, no scripts, no external
 * stylesheet, fonts or images; every chart is inline SVG drawn here. Everything read from the
 * store (hypotheses, diffs, reasons, task ids, even the study name) is untrusted text and goes
 * through `esc`, so a hypothesis holding `<script>` renders as text.
 *
 * Sections: header (run facts, noise, best, counts, spend; a red banner for self-reported or
 * unsandboxed runs), the progress chart, for harness runs a task × kept-experiment heatmap and
 * tokens / cost per experiment, the kept changes with their evidence and diffs, the final
 * validation vs sealed-test comparison (when a `finalizations` row exists), what each kept change did
 * (src/edits-audit.ts: cited tasks, flips over repeats, a verdict, cost per task, the memorisation
 * check, and validation Δ against test Δ from `finalize --ablate`), and the full ledger.
 * A Content-Security-Policy meta tag forbids scripts and every network fetch as a second line of
 * defence should anything ever slip past the escaping.
 */
import {
  getRun, listExperiments, evaluationsOfRun, ownEvaluations, tracesOf, proposalOf, taskSpend, experimentSpend, finalizationsAsStored,
  type DB, type RunRow, type ExperimentRow, type EvaluationRow, type TraceSpend, type ExperimentSpend,
} from '../../traces/index.ts';
import { UsageError } from '../../base/errors.ts';
import { ledgerData, runSpend } from '../views.ts';
import { UNTRUSTED_SPLIT } from '../finalize.ts';
import { fmtMetric, fmtDelta, fmtDuration } from '../../base/format.ts';
import { esc, n, linear, ticks, tickStep, tickLabel, niceDomain, quantile } from './svg.ts';
import { auditEdits, type EditsAudit, type TaskFlip } from '../edits-audit.ts';
import { okMetrics } from '../acceptance.ts';

/** Colours of the charts. The page's CSS uses none of them, so a screenshot can find the chart by colour. */
export const CHART_COLORS = {
  kept: '#1a9641',
  incumbent: '#137a34',
  discarded: '#5e7ea8',
  crash: '#d7191c',
  rejected: '#e08a00',
  pending: '#9a9a9a',
  baseline: '#2c7bb6',
  band: '#cfe3f5',
  baselineRepeat: '#6d8fb0',
} as const;

type Decision = ExperimentRow['decision'];

const DIFF_LIMIT = 200_000;

/** `run`: an exact id, or the run itself (as placed by resolveRunPaths: a copied repository shows its own study path). */
export function renderReport(db: DB, runOrId: string | RunRow): string {
  const run = typeof runOrId === 'string' ? getRun(db, runOrId) : runOrId;
  if (!run) throw new UsageError(`no run ${runOrId} in this store (see \`autoagent status\`)`);
  const ledger = ledgerData(db, run);
  const exps = listExperiments(db, run.id);
  // each experiment's own evaluations (an incumbent's fresh repeats in later rounds belong to those rounds' evidence; `log` lists them)
  const all = evaluationsOfRun(db, run.id);
  const evals = new Map(exps.map((e) => [e.id, ownEvaluations(all.get(e.id), e)]));
  const spend = taskSpend(db, run.id);
  const harness = run.kind === 'harness' || spend.traces > 0;
  const edits = auditEdits(db, run);
  const sections = [
    header(db, run, ledger, exps, spend, [...all.values()].flat()),
    section('Progress', progressChart(run, exps, evals, ledger.baseline.mean), 'progress'),
    harness ? section('Task scores of the kept experiments', heatmap(db, run, exps), 'heatmap') : '',
    harness && spend.traces > 0 ? section('Tokens and cost per experiment', spendCharts(db, run, exps), 'spend') : '',
    section('Kept changes', keptTable(run, exps, evals, edits), 'kept'),
    edits.changes.length || edits.flagged.length ? section('What each kept change did', editsSection(run, edits), 'edits') : '',
    finalization(db, run, exps, evals),
    section('Ledger', ledgerTable(run, exps, evals), 'ledger'),
  ];
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'">
<meta name="generator" content="autoagent report">
<title>${esc(`autoagent report · ${run.name} · ${run.id}`)}</title>
<style>${CSS}</style>
</head>
<body>
<main>
${sections.filter(Boolean).join('\n')}
<footer>run ${esc(run.id)} · report written ${esc(new Date().toISOString().replace('T', ' ').slice(0, 19))} UTC by autoagent</footer>
</main>
</body>
</html>
`;
}

const CSS = `
:root { color-scheme: light; }
* { box-sizing: border-box; }
body { margin: 0; background: #f6f7f9; color: #1d2430; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; }
main { max-width: 1180px; margin: 0 auto; padding: 18px 24px 40px; }
h1 { font-size: 22px; margin: 0 0 4px; }
h2 { font-size: 17px; margin: 0 0 10px; }
section { background: #fff; border: 1px solid #dde1e7; border-radius: 8px; padding: 14px 18px; margin: 14px 0; }
.sub { color: #5a6472; }
.banner { background: #b3261e; color: #fff; font-weight: 600; padding: 10px 14px; border-radius: 6px; margin: 10px 0; }
.facts { display: grid; grid-template-columns: repeat(auto-fill, minmax(320px, 1fr)); gap: 6px 18px; margin-top: 10px; }
.facts div { padding: 2px 0; }
.facts b { display: inline-block; min-width: 92px; color: #5a6472; font-weight: 500; }
code, pre, .mono { font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, "DejaVu Sans Mono", monospace; font-size: 12.5px; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid #e8ebef; vertical-align: top; }
th { color: #5a6472; font-weight: 600; background: #fafbfc; position: sticky; top: 0; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.text { word-break: break-word; }
.badge { display: inline-block; padding: 0 7px; border-radius: 9px; font-size: 12px; font-weight: 600; white-space: nowrap; }
.b-kept { background: #dcf2e2; color: #0c5a25; }
.b-discarded { background: #e4e9f1; color: #3b4a60; }
.b-crash, .b-timeout { background: #f9dedd; color: #8c1512; }
.b-rejected { background: #fbead0; color: #7a4a00; }
.b-baseline { background: #dbe8f5; color: #1b4d7a; }
.b-running, .b-pending { background: #eeeeee; color: #555; }
details summary { cursor: pointer; color: #2a5d9f; }
pre.diff { background: #fbfbfc; border: 1px solid #e3e6ea; border-radius: 4px; padding: 8px; overflow-x: auto; max-height: 520px; white-space: pre; margin: 6px 0 0; }
pre.diff .add { color: #116329; background: #e9f7ec; display: inline-block; min-width: 100%; }
pre.diff .del { color: #82071e; background: #fdecec; display: inline-block; min-width: 100%; }
pre.diff .hunk { color: #6639ba; }
.chart { width: 100%; height: auto; display: block; }
.chart text { font: 12px system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; fill: #333d4a; }
.chart .axis line, .chart .axis path { stroke: #8a929e; }
.chart .grid line { stroke: #eceff3; }
.chart .title { font-weight: 600; }
.scroll { overflow: auto; max-height: 720px; }
.ledger-wrap { overflow-x: auto; }
.cites code { display: inline-block; background: #f0f2f5; border-radius: 3px; padding: 0 4px; margin: 1px 2px 1px 0; }
.muted { color: #8a929e; }
.cmp td, .cmp th { width: auto; }
td.test-delta { white-space: normal; max-width: 190px; }
footer { color: #8a929e; font-size: 12px; text-align: center; margin-top: 18px; }
`;

function section(title: string, body: string, id: string): string {
  return `<section id="${esc(id)}">\n<h2>${esc(title)}</h2>\n${body}\n</section>`;
}

// ---------------------------------------------------------------------------------------------
// header

const fmtInt = (x: number): string => Math.round(x).toLocaleString('en-US');
const fmtUsd = (x: number): string => (x === 0 ? '$0' : x < 1e-4 ? `$${x.toExponential(1)}` : x < 0.01 ? `$${x.toFixed(4)}` : `$${x.toFixed(2)}`);

type Ledger = ReturnType<typeof ledgerData>;

/** the queue worker that ran an evaluation (its telemetry says), null when it ran on this machine */
function workerOf(v: EvaluationRow): string | null {
  const worker = (safeJson(v.telemetry) as { worker?: unknown } | null)?.worker;
  return typeof worker === 'string' ? worker : null;
}

/** Where an evaluation ran: its queue worker and its hardware class, as known; '' on this machine without either. */
function whereOf(v: EvaluationRow): string {
  const worker = workerOf(v);
  return [worker ? `on ${worker}` : '', v.hardware ?? ''].filter(Boolean).join(' · ');
}

/** `12 on this machine (cpu) · 8 on box-1-4242-ab12cd (NVIDIA H200)`; null when no evaluation says where it ran */
function evaluatedOn(evaluations: EvaluationRow[]): string | null {
  const by = new Map<string, number>();
  for (const v of evaluations) {
    const key = `on ${workerOf(v) ?? 'this machine'}${v.hardware ? ` (${v.hardware})` : ''}`;
    by.set(key, (by.get(key) ?? 0) + 1);
  }
  if ([...by.keys()].every((k) => k === 'on this machine')) return null;
  return [...by].map(([k, n]) => `${n} ${k}`).join(' · ');
}

function header(db: DB, run: RunRow, ledger: Ledger, exps: ExperimentRow[], spend: TraceSpend, evaluations: EvaluationRow[]): string {
  const banners: string[] = [];
  if (run.self_reported) banners.push('SELF-REPORTED metric: the numbers below were read from the candidate\'s own output, not computed by a locked evaluator.');
  if (run.unsafe_no_sandbox) banners.push('UNSAFE: this run executed candidate code without a sandbox (--unsafe-no-sandbox).');
  const study = safeJson(run.study_json) as { harness?: { benchmark?: string; split?: string } } | null;
  const dir = run.direction === 'minimize' ? 'minimize (lower is better)' : 'maximize (higher is better)';
  const b = ledger.baseline;
  const counts = Object.entries(ledger.counts).map(([k, v]) => `${v} ${k}`).join(', ') || 'none yet';
  const prop = runSpend(db, run.id).meta_agent;
  const spendParts = [`${fmtDuration(run.elapsed_ms)} wall`];
  if (spend.traces > 0) {
    spendParts.push(`${fmtInt(spend.input + spend.output)} tokens (${fmtInt(spend.input)} in, ${fmtInt(spend.output)} out, ${fmtInt(spend.cacheRead)} cache read)`);
    spendParts.push(`${fmtUsd(spend.cost)} task models`);
  }
  if (prop.traces) spendParts.push(`meta-agent ${fmtInt(prop.tokens)} tokens, ${fmtUsd(prop.cost_usd)} over ${prop.traces} proposal(s)`);
  const fact = (k: string, v: string) => `<div><b>${esc(k)}</b> ${v}</div>`;
  const on = evaluatedOn(evaluations);
  const facts = [
    fact('run', `<code>${esc(run.id)}</code>`),
    fact('kind', esc(run.kind)),
    fact('status', `${esc(ledger.run.status)}${run.stop_reason ? ` <span class="sub">(${esc(run.stop_reason)})</span>` : ''}`),
    fact('branch', `<code>${esc(run.branch)}</code>`),
    fact('base', `<code>${esc(run.base_commit.slice(0, 10))}</code>`),
    fact('metric', `${esc(run.metric_name)} · ${esc(dir)}`),
    fact('baseline', b.mean === null ? '—' : `${esc(fmtMetric(b.mean))} ± ${esc(fmtMetric(b.sd))} <span class="sub">over ${b.repeats.length} seed${b.repeats.length === 1 ? '' : 's'}</span>`),
    fact('noise floor', `${esc(fmtMetric(ledger.noise.sd))} <span class="sub">pooled sd, ${ledger.noise.df} df</span>`),
    fact('best', esc(fmtMetric(ledger.best))),
    fact('experiments', esc(counts)),
    fact('spend', esc(spendParts.join(' · '))),
    study?.harness?.benchmark ? fact('benchmark', esc(`${study.harness.benchmark}${study.harness.split ? ` (${study.harness.split})` : ''}`)) : '',
    on ? fact('evaluated on', esc(on)) : '',
    fact('started', esc(run.created_at.replace('T', ' ').slice(0, 19))),
    fact('ledger head', ledger.ledger
      ? `<code class="ledger-head">${esc(ledger.ledger.head.slice(0, 16))}</code> <span class="sub">${ledger.ledger.links} decisions chained; <code>autoagent audit ${esc(run.id)} --expect-head ${esc(ledger.ledger.head.slice(0, 16))}</code> proves the ledger was not rewritten since this report</span>`
      : '<span class="sub">no ledger chain (the run predates it)</span>'),
  ];
  return `<section id="summary">
<h1>${esc(run.name)}</h1>
<div class="sub">autoagent run report · study <code>${esc(run.study_path)}</code></div>
${banners.map((t) => `<div class="banner" role="alert">${esc(t)}</div>`).join('\n')}
<div class="facts">${facts.filter(Boolean).join('')}</div>
</section>`;
}

function safeJson(s: string | null): unknown {
  if (!s) return null;
  try {
    return JSON.parse(s);
  } catch {
    return null;
  }
}

// ---------------------------------------------------------------------------------------------
// the progress chart

const AT_AXIS = new Set<Decision>(['crash', 'timeout', 'rejected']);

function decisionOf(e: ExperimentRow): string {
  return e.decision ?? 'pending';
}

function colorOf(d: string): string {
  switch (d) {
    case 'kept': return CHART_COLORS.kept;
    case 'discarded': return CHART_COLORS.discarded;
    case 'crash': case 'timeout': return CHART_COLORS.crash;
    case 'rejected': return CHART_COLORS.rejected;
    default: return CHART_COLORS.pending;
  }
}

/**
 * The acceptance threshold each decision used: the incumbent mean it was judged against, moved by
 * the margin it had to beat (below it when minimizing, above when maximizing), as stored on the
 * experiment. Experiments decided without a judgement (crash, rejected, screened out) have none.
 */
export function acceptanceThresholds(exps: ExperimentRow[], direction: string): Array<{ seq: number; incumbent: number; margin: number; threshold: number }> {
  return exps
    .filter((e) => e.seq > 0 && e.incumbent_metric !== null && e.margin !== null && Number.isFinite(e.incumbent_metric) && Number.isFinite(e.margin))
    .map((e) => ({ seq: e.seq, incumbent: e.incumbent_metric!, margin: e.margin!, threshold: direction === 'minimize' ? e.incumbent_metric! - e.margin! : e.incumbent_metric! + e.margin! }));
}

function progressChart(run: RunRow, exps: ExperimentRow[], evals: Map<number, EvaluationRow[]>, baseMean: number | null): string {
  const W = 1000;
  const H = 420;
  const m = { l: 78, r: 24, t: 44, b: 78 };
  const plotB = H - m.b;
  const base = exps.find((e) => e.seq === 0);
  const baseRepeats = base ? okMetrics(evals.get(base.id)) : [];
  const cands = exps.filter((e) => e.seq > 0);
  const maxSeq = Math.max(1, ...cands.map((e) => e.seq));
  const kept = cands.filter((e) => e.decision === 'kept' && e.metric !== null);
  const valued = cands.filter((e) => !AT_AXIS.has(e.decision) && e.metric !== null && Number.isFinite(e.metric));
  // what each decision had to beat (not a band around the baseline: the rule judges against the incumbent of the moment)
  const thresholds = acceptanceThresholds(cands, run.direction);
  const band = thresholds.flatMap((t) => [t.incumbent, t.threshold]);

  // y domain: what must be visible (baseline, band, kept line) plus the points, without letting one
  // diverged candidate (loss = 1e9) flatten the rest: points far outside are drawn clipped at the edge
  const core = [...baseRepeats, ...kept.map((e) => e.metric!), ...band, ...(baseMean !== null ? [baseMean] : [])];
  const pts = valued.map((e) => e.metric!);
  const all = [...core, ...pts];
  let lo = Math.min(...all);
  let hi = Math.max(...all);
  if (pts.length >= 4) {
    const q1 = quantile(pts, 0.1);
    const q9 = quantile(pts, 0.9);
    const coreLo = core.length ? Math.min(...core) : q1;
    const coreHi = core.length ? Math.max(...core) : q9;
    const spread = Math.max(q9 - q1, coreHi - coreLo, Math.abs(coreHi) * 1e-6, 1e-12);
    lo = Math.max(lo, Math.min(coreLo, q1) - 3 * spread);
    hi = Math.min(hi, Math.max(coreHi, q9) + 3 * spread);
  }
  if (!Number.isFinite(lo) || !Number.isFinite(hi)) [lo, hi] = [0, 1];
  const pad = (hi - lo) * 0.06;
  // a metric that is never negative (a loss, a score) does not get a negative axis from the padding
  const [y0, y1] = niceDomain(lo >= 0 ? Math.max(0, lo - pad) : lo - pad, hi + pad, 8);
  const x = linear([0, maxSeq], [m.l + 14, W - m.r - 10]);
  const y = linear([y0, y1], [plotB, m.t]);
  const clampY = (v: number) => Math.max(m.t, Math.min(plotB, y(v)));

  const out: string[] = [];
  const label = `${run.metric_name} over experiments`;
  out.push(`<svg id="progress-chart" class="chart" viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" role="img" aria-label="${esc(label)}" xmlns="http://www.w3.org/2000/svg">`);
  out.push(`<title>${esc(label)}</title>`);
  // grid and y axis
  const yt = ticks(y0, y1, 8);
  const ystep = tickStep(y0, y1, 8);
  out.push('<g class="grid">' + yt.map((v) => `<line x1="${m.l}" x2="${W - m.r}" y1="${n(y(v))}" y2="${n(y(v))}"/>`).join('') + '</g>');
  // the acceptance zone of each decision: from the incumbent it was judged against to the threshold it had to pass
  const half = (x(1) - x(0)) / 2;
  const xl = (seq: number) => n(Math.max(m.l, x(seq) - half));
  const xr = (seq: number) => n(Math.min(W - m.r, x(seq) + half));
  if (thresholds.length) {
    const zone = thresholds.map((t) => `M${xl(t.seq)} ${n(clampY(t.incumbent))} H${xr(t.seq)} V${n(clampY(t.threshold))} H${xl(t.seq)} Z`).join(' ');
    out.push(`<path id="acceptance-zone" class="acceptance-zone" d="${zone}" fill="${CHART_COLORS.band}"/>`);
    out.push('<g id="acceptance-threshold">' + thresholds.map((t) => `<path class="threshold" data-seq="${t.seq}" data-threshold="${t.threshold}" d="M${xl(t.seq)} ${n(clampY(t.threshold))} H${xr(t.seq)}" stroke="${CHART_COLORS.baseline}" stroke-width="1.5" fill="none"><title>${esc(`#${t.seq} had to pass ${fmtMetric(t.threshold)}: incumbent ${fmtMetric(t.incumbent)} ${run.direction === 'minimize' ? '−' : '+'} margin ${fmtMetric(t.margin)}`)}</title></path>`).join('') + '</g>');
  }
  if (baseMean !== null) {
    out.push(`<line id="baseline-mean" x1="${m.l}" x2="${W - m.r}" y1="${n(y(baseMean))}" y2="${n(y(baseMean))}" stroke="${CHART_COLORS.baseline}" stroke-width="1.5" stroke-dasharray="6 4"><title>${esc(`baseline mean ${fmtMetric(baseMean)}`)}</title></line>`);
  }
  out.push('<g class="axis">');
  out.push(`<line x1="${m.l}" x2="${m.l}" y1="${m.t}" y2="${plotB}"/>`);
  out.push(`<line x1="${m.l}" x2="${W - m.r}" y1="${plotB}" y2="${plotB}"/>`);
  for (const v of yt) {
    out.push(`<line x1="${m.l - 5}" x2="${m.l}" y1="${n(y(v))}" y2="${n(y(v))}"/><text x="${m.l - 8}" y="${n(y(v) + 4)}" text-anchor="end">${esc(tickLabel(v, ystep))}</text>`);
  }
  const xt = ticks(0, maxSeq, Math.min(12, maxSeq)).filter((v) => Number.isInteger(v));
  for (const v of xt) {
    out.push(`<line x1="${n(x(v))}" x2="${n(x(v))}" y1="${plotB}" y2="${plotB + 5}"/><text x="${n(x(v))}" y="${plotB + 36}" text-anchor="middle">${v}</text>`);
  }
  out.push('</g>');
  out.push(`<text class="title" x="${n((m.l + W - m.r) / 2)}" y="${H - 12}" text-anchor="middle">experiment (0 = baseline)</text>`);
  const yTitle = `${run.metric_name} (${run.direction === 'minimize' ? 'lower' : 'higher'} is better)`;
  out.push(`<text class="title" transform="translate(16 ${n((m.t + plotB) / 2)}) rotate(-90)" text-anchor="middle">${esc(yTitle)}</text>`);
  out.push(`<text x="${m.l - 8}" y="${plotB + 20}" text-anchor="end" class="muted" style="font-size:10px">no metric</text>`);

  // the kept incumbent as a step line
  if (baseMean !== null || kept.length) {
    let cur = baseMean ?? kept[0]!.metric!;
    let d = `M${n(x(0))} ${n(clampY(cur))}`;
    for (const e of kept) {
      d += ` H${n(x(e.seq))} V${n(clampY(e.metric!))}`;
      cur = e.metric!;
    }
    d += ` H${n(x(maxSeq))}`;
    out.push(`<path id="incumbent-line" class="incumbent" d="${d}" fill="none" stroke="${CHART_COLORS.incumbent}" stroke-width="2.5" stroke-linejoin="round"><title>${esc(`kept incumbent: ${fmtMetric(baseMean)} → ${fmtMetric(cur)}`)}</title></path>`);
  }
  // baseline repeats
  out.push('<g class="baseline-repeats">');
  baseRepeats.forEach((v, i) => {
    out.push(`<circle class="baseline-dot" data-repeat="${i + 1}" cx="${n(x(0))}" cy="${n(clampY(v))}" r="3.5" fill="${CHART_COLORS.baselineRepeat}"><title>${esc(`baseline repeat ${i + 1}: ${fmtMetric(v)}`)}</title></circle>`);
  });
  out.push('</g>');
  // one marker per experiment
  out.push('<g class="dots">');
  const axisY = plotB + 14;
  for (const e of cands) {
    const d = decisionOf(e);
    const color = colorOf(d);
    const tip = `#${e.seq} ${d}: ${run.metric_name} ${fmtMetric(e.metric)}${e.improvement !== null ? `, Δ ${fmtDelta(e.improvement, run.direction)}` : ''} — ${e.hypothesis}${e.reason ? ` (${e.reason})` : ''}`;
    const cx = n(x(e.seq));
    const attrs = `class="dot dot-${esc(d)}" data-seq="${e.seq}" data-decision="${esc(d)}"`;
    let shape: string;
    if (AT_AXIS.has(e.decision) || e.metric === null || !Number.isFinite(e.metric)) {
      if (d === 'rejected') {
        shape = `<path d="M${cx} ${n(axisY - 5)} L${n(x(e.seq) + 5)} ${n(axisY + 4)} L${n(x(e.seq) - 5)} ${n(axisY + 4)} Z" fill="${color}"/>`;
      } else {
        const a = 4.5;
        shape = `<path d="M${n(x(e.seq) - a)} ${n(axisY - a)} L${n(x(e.seq) + a)} ${n(axisY + a)} M${n(x(e.seq) + a)} ${n(axisY - a)} L${n(x(e.seq) - a)} ${n(axisY + a)}" stroke="${color}" stroke-width="2.5" fill="none"/>`;
      }
    } else {
      const v = e.metric;
      const cy = y(v);
      if (cy < m.t || cy > plotB) {
        const up = cy < m.t;
        const ey = up ? m.t + 2 : plotB - 2;
        shape = `<path class="clipped" d="M${cx} ${n(ey)} L${n(x(e.seq) + 5)} ${n(ey + (up ? 8 : -8))} L${n(x(e.seq) - 5)} ${n(ey + (up ? 8 : -8))} Z" fill="${color}"/>`;
      } else {
        shape = `<circle cx="${cx}" cy="${n(cy)}" r="${d === 'kept' ? 5.5 : 4.5}" fill="${color}" stroke="#ffffff" stroke-width="1"/>`;
      }
    }
    out.push(`<g ${attrs}><title>${esc(tip)}</title>${shape}</g>`);
  }
  out.push('</g>');
  // legend
  const legend: Array<[string, string]> = [
    [`<circle cx="6" cy="-4" r="5" fill="${CHART_COLORS.kept}"/>`, 'kept'],
    [`<circle cx="6" cy="-4" r="4.5" fill="${CHART_COLORS.discarded}"/>`, 'discarded'],
    [`<path d="M2 -8 L10 0 M10 -8 L2 0" stroke="${CHART_COLORS.crash}" stroke-width="2.5"/>`, 'crash / timeout'],
    [`<path d="M6 -9 L11 0 L1 0 Z" fill="${CHART_COLORS.rejected}"/>`, 'rejected'],
    [`<path d="M0 -2 H6 V-8 H14" fill="none" stroke="${CHART_COLORS.incumbent}" stroke-width="2.5"/>`, 'kept incumbent'],
    [`<rect x="0" y="-10" width="14" height="12" fill="${CHART_COLORS.band}"/><line x1="0" x2="14" y1="-10" y2="-10" stroke="${CHART_COLORS.baseline}" stroke-width="1.5"/>`, `threshold to pass (incumbent ${run.direction === 'minimize' ? '−' : '+'} margin)`],
    [`<line x1="0" x2="14" y1="-4" y2="-4" stroke="${CHART_COLORS.baseline}" stroke-dasharray="4 2" stroke-width="1.5"/>`, 'baseline mean'],
  ];
  out.push(`<g class="legend" transform="translate(${m.l} 22)">`);
  let lx = 0;
  for (const [sym, text] of legend) {
    out.push(`<g transform="translate(${lx} 0)">${sym}<text x="20" y="0">${esc(text)}</text></g>`);
    lx += 30 + text.length * 6.6;
  }
  out.push('</g>');
  out.push('</svg>');
  const noteParts = [`${cands.length} experiment${cands.length === 1 ? '' : 's'}`, `${kept.length} kept`];
  if (thresholds.length) noteParts.push(`shaded: from the incumbent each experiment was judged against to the threshold it had to pass (incumbent ${run.direction === 'minimize' ? '−' : '+'} the margin the acceptance rule used)`);
  return out.join('\n') + `\n<div class="sub">${esc(noteParts.join(' · '))}. Hover a point for its hypothesis; crashes, timeouts and rejections sit on the axis.</div>`;
}

// ---------------------------------------------------------------------------------------------
// harness: task × kept-experiment heatmap, tokens and cost per experiment

function scoreColor(v: number): string {
  // red (0) → amber (0.5) → green (1)
  const t = Math.max(0, Math.min(1, v));
  const a = [215, 48, 39];
  const b = [254, 224, 139];
  const c = [26, 152, 80];
  const [p, q, u] = t < 0.5 ? [a, b, t * 2] : [b, c, (t - 0.5) * 2];
  const mix = (i: number) => Math.round(p[i]! + (q[i]! - p[i]!) * u);
  return `rgb(${mix(0)},${mix(1)},${mix(2)})`;
}

function heatmap(db: DB, run: RunRow, exps: ExperimentRow[]): string {
  const cols = exps.filter((e) => e.seq === 0 || e.decision === 'kept');
  const perCol = new Map<number, Map<string, number | null>>();
  const tasks = new Set<string>();
  for (const e of cols) {
    const acc = new Map<string, { sum: number; k: number; scored: boolean }>();
    for (const t of tracesOf(db, { runId: run.id, experimentSeq: e.seq })) {
      tasks.add(t.task_id);
      const a = acc.get(t.task_id) ?? { sum: 0, k: 0, scored: false };
      a.sum += t.score ?? 0;
      a.k++;
      if (t.score !== null) a.scored = true;
      acc.set(t.task_id, a);
    }
    const mm = new Map<string, number | null>();
    for (const [task, a] of acc) mm.set(task, a.scored ? a.sum / a.k : null);
    perCol.set(e.seq, mm);
  }
  if (tasks.size === 0) return '<p class="muted">No task traces recorded for this run.</p>';
  const rows = [...tasks].sort((a, b) => a.localeCompare(b, 'en', { numeric: true }));
  // wide enough for the longest task id (cut at 36) and for the header `task (N)`
  const labelW = Math.min(260, 16 + Math.max(`task (${rows.length})`.length, ...rows.map((r) => Math.min(r.length, 36))) * 7);
  const cw = 54;
  const ch = 18;
  const top = 58;
  const W = labelW + cw * (cols.length + 1) + 10;
  const H = top + ch * rows.length + 8;
  const out: string[] = [];
  out.push(`<svg id="task-heatmap" class="chart" viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" style="max-width:${W}px" role="img" aria-label="task scores per kept experiment" xmlns="http://www.w3.org/2000/svg">`);
  cols.forEach((e, j) => {
    const cx = labelW + cw * j + cw / 2;
    out.push(`<text class="title" x="${n(cx)}" y="${top - 26}" text-anchor="middle">${e.seq === 0 ? 'base' : `#${e.seq}`}</text>`);
    out.push(`<text x="${n(cx)}" y="${top - 10}" text-anchor="middle" class="muted" style="font-size:10px">${esc(fmtMetric(e.metric))}</text>`);
  });
  out.push(`<text class="title" x="${n(labelW + cw * cols.length + cw / 2)}" y="${top - 26}" text-anchor="middle">Δ</text>`);
  out.push(`<text class="title" x="8" y="${top - 10}">task (${rows.length})</text>`);
  rows.forEach((task, i) => {
    const ty = top + ch * i;
    const shown = task.length > 36 ? task.slice(0, 35) + '…' : task;
    out.push(`<g class="hm-row" data-task="${esc(task)}"><text x="8" y="${n(ty + ch - 5)}" class="mono" style="font-size:11px">${esc(shown)}<title>${esc(task)}</title></text>`);
    const vals: Array<number | null | undefined> = [];
    cols.forEach((e, j) => {
      const v = perCol.get(e.seq)?.get(task);
      vals.push(v);
      const x0 = labelW + cw * j;
      const fill = v === undefined ? '#f1f2f4' : v === null ? '#d9dce1' : scoreColor(v);
      const txt = v === undefined ? '' : v === null ? '–' : v.toFixed(2).replace(/\.00$/, '');
      out.push(`<rect class="hm-cell" data-seq="${e.seq}" x="${x0 + 1}" y="${ty + 1}" width="${cw - 2}" height="${ch - 2}" fill="${fill}"><title>${esc(`${task} · ${e.seq === 0 ? 'baseline' : `#${e.seq}`}: ${v === undefined ? 'not run' : v === null ? 'no score' : fmtMetric(v)}`)}</title></rect>`);
      if (txt) out.push(`<text x="${n(x0 + cw / 2)}" y="${n(ty + ch - 5)}" text-anchor="middle" style="font-size:10px;fill:#1d2430">${esc(txt)}</text>`);
    });
    const first = vals[0];
    const last = vals[vals.length - 1];
    if (typeof first === 'number' && typeof last === 'number' && cols.length > 1) {
      const d = last - first;
      const color = d > 1e-9 ? '#0c5a25' : d < -1e-9 ? '#8c1512' : '#8a929e';
      out.push(`<text x="${n(labelW + cw * cols.length + cw / 2)}" y="${n(ty + ch - 5)}" text-anchor="middle" style="font-size:11px;fill:${color}">${d > 1e-9 ? '+' : ''}${esc(Math.abs(d) < 1e-9 ? '0' : d.toFixed(2))}</text>`);
    }
    out.push('</g>');
  });
  out.push('</svg>');
  return `<div class="sub">Mean score per task (over repeats; a repeat without a score counts 0) of the baseline and each kept experiment; Δ = last kept − baseline.</div>\n<div class="scroll">${out.join('\n')}</div>`;
}

function spendCharts(db: DB, run: RunRow, exps: ExperimentRow[]): string {
  const rows = experimentSpend(db, run.id);
  if (!rows.length) return '<p class="muted">No traces.</p>';
  const decision = new Map(exps.map((e) => [e.seq, e.seq === 0 ? 'baseline' : decisionOf(e)]));
  const tokens = barChart({
    id: 'tokens-chart', title: 'tokens per experiment', rows,
    stacks: [
      { label: 'input (uncached)', color: '#7aa6d6', value: (r) => Math.max(0, r.input - r.cacheRead) },
      { label: 'cache read', color: '#b9d3ee', value: (r) => r.cacheRead },
      { label: 'output', color: '#f0a35e', value: (r) => r.output },
    ],
    fmt: (v) => (v >= 1e6 ? `${(v / 1e6).toFixed(1)}M` : v >= 1e3 ? `${(v / 1e3).toFixed(v >= 1e4 ? 0 : 1)}k` : String(Math.round(v))),
  });
  const cost = barChart({
    id: 'cost-chart', title: 'cost per experiment (USD)', rows,
    stacks: [{ label: 'cost', color: '#8c7ab8', value: (r) => r.cost }],
    // axis ticks follow their step (tickLabel): a run costing $0.00004 per experiment gets 1.0e-5, not 0.0000
    tip: (v) => fmtUsd(v),
    colorOf: (r) => (decision.get(r.seq) === 'kept' ? '#4f9d69' : decision.get(r.seq) === 'baseline' ? '#6d8fb0' : '#a8a1c4'),
  });
  return `<div style="display:flex;flex-wrap:wrap;gap:12px">${tokens}${cost}</div>
<div class="sub">Summed over every task trace of the experiment (screens, full evaluations and confirmation repeats); cost bars of kept experiments are green, the baseline blue. The final test evaluation is not shown here (it is in the header's spend).</div>`;
}

function barChart(o: {
  id: string; title: string; rows: ExperimentSpend[];
  stacks: Array<{ label: string; color: string; value: (r: ExperimentSpend) => number }>;
  /** tick labels (default: by the tick step) */
  fmt?: (v: number) => string;
  /** the bar's total in its tooltip (default: fmt) */
  tip?: (v: number) => string;
  colorOf?: (r: ExperimentSpend) => string;
}): string {
  const W = 540;
  const H = 250;
  const m = { l: 62, r: 12, t: 40, b: 40 };
  const totals = o.rows.map((r) => o.stacks.reduce((s, st) => s + st.value(r), 0));
  const maxV = Math.max(...totals, 0) || 1;
  const [, y1] = niceDomain(0, maxV, 4);
  const y = linear([0, y1], [H - m.b, m.t]);
  const slot = (W - m.l - m.r) / o.rows.length;
  const bw = Math.max(2, Math.min(28, slot * 0.7));
  const out: string[] = [];
  out.push(`<svg id="${esc(o.id)}" class="chart" viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" style="max-width:${W}px" role="img" aria-label="${esc(o.title)}" xmlns="http://www.w3.org/2000/svg">`);
  out.push(`<text class="title" x="${m.l}" y="16">${esc(o.title)}</text>`);
  const yt = ticks(0, y1, 4);
  const step = tickStep(0, y1, 4);
  out.push('<g class="grid">' + yt.map((v) => `<line x1="${m.l}" x2="${W - m.r}" y1="${n(y(v))}" y2="${n(y(v))}"/>`).join('') + '</g>');
  out.push('<g class="axis">');
  out.push(`<line x1="${m.l}" x2="${m.l}" y1="${m.t}" y2="${H - m.b}"/><line x1="${m.l}" x2="${W - m.r}" y1="${H - m.b}" y2="${H - m.b}"/>`);
  for (const v of yt) out.push(`<text x="${m.l - 6}" y="${n(y(v) + 4)}" text-anchor="end">${esc(o.fmt?.(v) || tickLabel(v, step))}</text>`);
  const every = Math.max(1, Math.ceil(o.rows.length / 14));
  o.rows.forEach((r, i) => {
    if (i % every === 0) out.push(`<text x="${n(m.l + slot * i + slot / 2)}" y="${H - m.b + 16}" text-anchor="middle">${r.seq}</text>`);
  });
  out.push('</g>');
  o.rows.forEach((r, i) => {
    const cx = m.l + slot * i + slot / 2;
    let acc = 0;
    const parts: string[] = [];
    for (const st of o.stacks) {
      const v = st.value(r);
      if (v <= 0) continue;
      const yTop = y(acc + v);
      const yBot = y(acc);
      parts.push(`<rect x="${n(cx - bw / 2)}" y="${n(yTop)}" width="${n(bw)}" height="${n(Math.max(0.5, yBot - yTop))}" fill="${o.colorOf ? o.colorOf(r) : st.color}"/>`);
      acc += v;
    }
    out.push(`<g class="bar" data-seq="${r.seq}"><title>${esc(`#${r.seq}: ${(o.tip ?? o.fmt ?? String)(totals[i]!)} (${r.traces} traces)`)}</title>${parts.join('')}</g>`);
  });
  out.push(`<text x="${n((m.l + W - m.r) / 2)}" y="${H - 6}" text-anchor="middle" class="muted">experiment</text>`);
  if (o.stacks.length > 1) {
    let lx = m.l + 170;
    for (const st of o.stacks) {
      out.push(`<rect x="${n(lx)}" y="6" width="10" height="10" fill="${st.color}"/><text x="${n(lx + 14)}" y="15" style="font-size:11px">${esc(st.label)}</text>`);
      lx += 24 + st.label.length * 6;
    }
  }
  out.push('</svg>');
  return out.join('\n');
}

// ---------------------------------------------------------------------------------------------
// tables

function badge(d: string): string {
  return `<span class="badge b-${esc(d)}">${esc(d)}</span>`;
}

function diffBlock(diff: string, label = 'diff'): string {
  if (!diff) return '<span class="muted">no diff</span>';
  const cut = diff.length > DIFF_LIMIT;
  const text = cut ? diff.slice(0, DIFF_LIMIT) : diff;
  const lines = text.replace(/\n$/, '').split('\n');
  const body = lines.map((l) => {
    const cls = l.startsWith('+') && !l.startsWith('+++') ? 'add' : l.startsWith('-') && !l.startsWith('---') ? 'del' : l.startsWith('@@') ? 'hunk' : '';
    return cls ? `<span class="${cls}">${esc(l)}</span>` : esc(l);
  }).join('\n');
  const more = cut ? `\n<span class="muted">… ${diff.length - DIFF_LIMIT} more characters (see \`autoagent show\`)</span>` : '';
  return `<details><summary>${esc(label)} (${lines.length} line${lines.length === 1 ? '' : 's'})</summary><pre class="diff">${body}${more}</pre></details>`;
}

/** the trace ids the proposer said motivate the change (experiments.proposal) */
function citedTraces(e: ExperimentRow): string[] {
  return proposalOf(e)?.cited.map(String) ?? [];
}

function keptTable(run: RunRow, exps: ExperimentRow[], evals: Map<number, EvaluationRow[]>, edits: EditsAudit): string {
  const kept = exps.filter((e) => e.decision === 'kept');
  const ablated = edits.ablation !== null;
  const bySeq = new Map(edits.changes.map((c) => [c.seq, c]));
  if (!kept.length) return '<p class="muted">No change has been kept yet: every candidate so far was within the noise, worse, or failed.</p>';
  const rows = kept.map((e) => {
    const ev = evals.get(e.id) ?? [];
    const ok = okMetrics(ev);
    const cites = citedTraces(e);
    return `<tr id="kept-${e.seq}" class="kept-row" data-seq="${e.seq}">
<td class="num"><a href="#exp-${e.seq}">${e.seq}</a></td>
<td class="text">${esc(e.hypothesis)}${e.kept_commit ? `<div class="sub mono">${esc(e.kept_commit.slice(0, 10))}</div>` : ''}${diffBlock(e.diff)}</td>
<td class="num">${esc(fmtMetric(e.incumbent_metric))} → ${esc(fmtMetric(e.metric))}</td>
<td class="num">${esc(fmtDelta(e.improvement, run.direction))}</td>
<td class="num">${esc(fmtMetric(e.margin))}</td>
<td class="num" title="${esc(ev.map((v) => [`#${v.repeat + 1} seed ${v.seed}: ${v.status} ${fmtMetric(v.metric)}`, whereOf(v)].filter(Boolean).join(' · ')).join('\n'))}">${ev.length}${ok.length ? `<div class="sub">${esc(ok.map(fmtMetric).join(', '))}</div>` : ''}</td>
<td class="cites">${cites.length ? cites.map((c) => `<code>${esc(c)}</code>`).join(' ') : '<span class="muted">—</span>'}</td>
${ablated ? testDeltaCell(run, e.seq, bySeq.get(e.seq)?.ablation ?? null) : ''}</tr>`;
  });
  return `<table id="kept-table">
<thead><tr><th class="num">#</th><th>hypothesis and diff</th><th class="num">${esc(run.metric_name)}</th><th class="num">${ablated ? 'validation Δ' : 'Δ'}</th><th class="num">margin</th><th class="num">evaluations</th><th>cited traces</th>${ablated ? '<th class="num">test Δ (leave-one-out)</th>' : ''}</tr></thead>
<tbody>
${rows.join('\n')}
</tbody>
</table>`;
}

/** the kept change's contribution on the sealed test split (`finalize --ablate`), next to its validation Δ */
function testDeltaCell(run: RunRow, seq: number, a: EditsAudit['changes'][number]['ablation']): string {
  if (!a) return '<td class="num test-delta"><span class="muted">—</span></td>';
  const color = a.verdict === 'helps on test' ? '#0c5a25' : a.verdict === 'hurts on test' ? '#8c1512' : '#7a4a00';
  const value = a.test_improvement === null ? '—' : fmtDelta(a.test_improvement, run.direction);
  return `<td class="num test-delta" data-seq="${seq}" data-verdict="${esc(a.verdict)}"><span style="color:${color}">${esc(value)}</span>`
    + `${a.margin !== null ? `<div class="sub">margin ${esc(fmtMetric(a.margin))}</div>` : ''}<div class="sub">${esc(a.text)}</div></td>`;
}

function flipList(flips: TaskFlip[]): string {
  return flips.map((f) => `<code title="${esc(`one-sided Fisher p ${f.p.toFixed(3)}${f.consistent ? '; every repeat agrees' : ''}`)}">${esc(f.task)}</code> <span class="sub">${f.before.passed}/${f.before.runs} → ${f.after.passed}/${f.after.runs}</span>${f.cited ? ' <span class="badge b-baseline">cited</span>' : ''}`).join('<br>');
}

/** What each kept change did: the claim against the tasks it flipped, its verdict, its cost, its test Δ. */
function editsSection(run: RunRow, a: EditsAudit): string {
  const notes = a.not_applicable.map((x) => `<p class="sub">${esc(x)}</p>`).join('\n');
  const harness = a.kind === 'harness';
  const rows = a.changes.map((c) => {
    const claim = [
      harness ? `<div>${c.cited_tasks.length ? `cited tasks: ${c.cited_tasks.map((t) => `<code>${esc(t)}</code>`).join(' ')}` : '<span class="muted">no cited traces</span>'}</div>` : '',
      c.expected_effect ? `<div class="sub">expected: ${esc(c.expected_effect)}</div>` : '',
    ].join('');
    const flips = c.flips
      ? `${c.flips.some((f) => f.to === 'pass') ? `<div><b>fail → pass</b><br>${flipList(c.flips.filter((f) => f.to === 'pass'))}</div>` : ''}`
        + `${c.flips.some((f) => f.to === 'fail') ? `<div><b>pass → fail</b><br>${flipList(c.flips.filter((f) => f.to === 'fail'))}</div>` : ''}`
        + `<div class="sub">${c.counts!.unchanged} of ${c.counts!.tasks} task(s) unchanged</div>`
      : '<span class="muted">no tasks</span>';
    const cost = c.cost
      ? `${esc(fmtMetric(c.cost.tokens_per_task[0]))} → ${esc(fmtMetric(c.cost.tokens_per_task[1]))} tokens<div class="sub">$${c.cost.dollars_per_task[0].toFixed(6)} → $${c.cost.dollars_per_task[1].toFixed(6)}</div>`
      : '<span class="muted">—</span>';
    const mem = c.contamination ? `<div class="badge b-crash contamination">memorisation check: ${esc(c.contamination.verdict)}</div><div class="sub">${esc(c.contamination.summary)}</div>` : '';
    return `<tr class="edit-row" data-seq="${c.seq}"><td class="num"><a href="#kept-${c.seq}">${c.seq}</a></td><td class="text">${esc(c.hypothesis)}${claim}</td>`
      + `<td class="text">${flips}</td><td class="text verdict">${esc(c.verdict)}${mem}</td><td class="num">${cost}</td></tr>`;
  });
  const flagged = a.flagged.length
    ? `<p class="sub">flagged by the memorisation check, not kept: ${a.flagged.map((f) => `<a href="#exp-${f.seq}">#${f.seq}</a> ${esc(f.decision ?? 'pending')} (${esc(f.verdict)}): ${esc(f.summary)}`).join('; ')}</p>`
    : '';
  const table = a.changes.length ? `<table id="edits-table">
<thead><tr><th class="num">#</th><th>claim</th><th>tasks flipped (passed / repeats: incumbent → change)</th><th>verdict</th><th class="num">per task run</th></tr></thead>
<tbody>
${rows.join('\n')}
</tbody>
</table>` : '';
  return `${notes}${table}${flagged}`;
}

function ledgerTable(run: RunRow, exps: ExperimentRow[], evals: Map<number, EvaluationRow[]>): string {
  const rows: string[] = [];
  for (const e of exps) {
    if (e.seq === 0) {
      const ev = evals.get(e.id) ?? [];
      for (const v of ev) {
        const st = v.status === 'ok' ? 'baseline' : v.status;
        rows.push(`<tr class="ledger-row" data-seq="0"><td class="num">0.${v.repeat + 1}</td><td class="mono">${esc(e.parent_commit.slice(0, 8))}</td><td class="num">${esc(fmtMetric(v.metric))}</td><td class="num"></td><td class="num"></td><td>${badge(st)}</td><td class="text">${esc(`baseline repeat ${v.repeat + 1} (seed ${v.seed})`)}</td><td class="text">${esc(v.reason ?? '')}</td></tr>`);
      }
      if (!ev.length) rows.push(`<tr class="ledger-row" data-seq="0"><td class="num">0</td><td class="mono">${esc(e.parent_commit.slice(0, 8))}</td><td class="num">—</td><td class="num"></td><td class="num"></td><td>${badge(e.decision ?? 'pending')}</td><td class="text">${esc(e.hypothesis)}</td><td></td></tr>`);
      continue;
    }
    const d = decisionOf(e);
    const commit = (e.kept_commit ?? e.candidate_commit)?.slice(0, 8) ?? '';
    rows.push(`<tr id="exp-${e.seq}" class="ledger-row" data-seq="${e.seq}"><td class="num">${e.seq}</td><td class="mono">${esc(commit)}</td><td class="num">${esc(fmtMetric(e.metric))}</td><td class="num">${e.improvement === null ? '' : esc(fmtDelta(e.improvement, run.direction))}</td><td class="num">${esc(fmtMetric(e.margin))}</td><td>${badge(d)}</td><td class="text">${esc(e.hypothesis)}${d !== 'kept' && e.diff ? diffBlock(e.diff) : ''}</td><td class="text">${esc(e.reason ?? '')}</td></tr>`);
  }
  return `<div class="ledger-wrap"><table id="ledger-table">
<thead><tr><th class="num">#</th><th>commit</th><th class="num">${esc(run.metric_name)}</th><th class="num">Δ</th><th class="num">margin</th><th>status</th><th>hypothesis</th><th>reason</th></tr></thead>
<tbody>
${rows.join('\n')}
</tbody>
</table></div>`;
}

// ---------------------------------------------------------------------------------------------
// final validation vs sealed test

/**
 * The run's `finalizations` rows (src/finalize.ts: the final incumbent evaluated once on the sealed
 * test split; `details` holds the experiment, its validation mean and what a forced one overrode).
 * The table is checked for first: a store written before it existed has none.
 */
function finalization(db: DB, run: RunRow, exps: ExperimentRow[], evals: Map<number, EvaluationRow[]>): string {
  const rows = finalizationsAsStored(db, run.id);
  if (!rows.length) return '';
  const bySeq = new Map(exps.map((e) => [e.seq, e]));
  const better = (gap: number) => (run.direction === 'minimize' ? gap < 0 : gap > 0);
  const body = rows.map((r, i) => {
    const d = (safeJson(r.details ?? null) ?? {}) as {
      experiment?: number; validation?: number | null; forced_over?: string[]; audit?: { ok?: boolean; problems?: number };
      scored?: { text?: string }; untrusted_split?: boolean;
    };
    const exp = typeof d.experiment === 'number' ? bySeq.get(d.experiment) : undefined;
    let val = typeof d.validation === 'number' ? d.validation : null;
    if (val === null && exp) {
      const m = okMetrics(evals.get(exp.id));
      val = m.length ? m.reduce((a, b) => a + b, 0) / m.length : exp.metric;
    }
    const test = typeof r.metric === 'number' ? r.metric : null;
    const gap = val !== null && test !== null ? test - val : null;
    const gapCell = gap === null ? '—' : `<span style="color:${Math.abs(gap) < 1e-12 ? '#5a6472' : better(gap) ? '#0c5a25' : '#8c1512'}">${gap > 0 ? '+' : ''}${esc(fmtMetric(gap))}</span>`;
    const forced = r.forced ? `<span class="badge b-crash">forced</span>${d.forced_over?.length ? ` <span class="sub">${esc(d.forced_over.join('; '))}</span>` : ''}` : '';
    const audit = d.audit ? (d.audit.ok ? 'passed' : `${d.audit.problems ?? '?'} problem(s)`) : '—';
    const scored = `${typeof d.scored?.text === 'string' ? `<span class="sub">${esc(d.scored.text)}</span>` : ''}`
      + (d.untrusted_split ? ` <span class="badge b-crash untrusted-split">not held out</span> <span class="sub">${esc(UNTRUSTED_SPLIT)}</span>` : '');
    return `<tr class="final-row" data-final="${i + 1}"><td>${exp ? `<a href="#exp-${exp.seq}">#${exp.seq}</a>` : typeof d.experiment === 'number' ? `#${d.experiment}` : '—'} <span class="mono sub">${esc((r.commit ?? '').slice(0, 10))}</span></td>`
      + `<td class="num">${esc(fmtMetric(val))}</td><td class="num">${esc(fmtMetric(test))}</td><td class="num">${gapCell}</td>`
      + `<td>${esc(r.split ?? 'test')}</td><td class="text">${scored}</td><td>${esc(audit)}</td><td>${forced}</td><td class="sub">${esc((r.created_at ?? '').replace('T', ' ').slice(0, 19))}</td></tr>`;
  });
  const note = `The validation number chose the incumbent, so it is biased in its favour; the sealed test split was evaluated once, at the end. `
    + `A test ${run.metric_name} much ${run.direction === 'minimize' ? 'higher' : 'lower'} than validation means the ratchet fitted the validation split.`;
  return section('Final validation vs sealed test', `<table id="final-comparison">
<thead><tr><th>final incumbent</th><th class="num">validation ${esc(run.metric_name)}</th><th class="num">test ${esc(run.metric_name)}</th><th class="num">test − validation</th><th>split</th><th>scored</th><th>audit</th><th></th><th>when</th></tr></thead>
<tbody>
${body.join('\n')}
</tbody>
</table>
<div class="sub">${esc(note)}</div>`, 'final');
}
