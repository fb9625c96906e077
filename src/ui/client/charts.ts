/** Charts: the run's progress (uPlot), runs compared (uPlot), and the knob view (canvas). */
import uPlot from 'uplot';
import type { RunDetail, KnobData } from './api.ts';
import { fmtMetric } from './fmt.ts';

export const COLORS: Record<string, string> = {
  kept: '#1a9850', discarded: '#8c8c8c', crash: '#d73027', timeout: '#fc8d59', rejected: '#7b3294', pending: '#4575b4', running: '#4575b4',
  baseline: '#2c3e50', incumbent: '#2c3e50', bar: '#4575b4', band: 'rgba(69,117,180,0.16)',
};

function width(el: HTMLElement): number {
  return Math.max(320, Math.floor(el.getBoundingClientRect().width || 900));
}

/** one point per experiment; the incumbent and the bar each candidate had to beat, as the acceptance rule used them */
export function progressData(d: RunDetail) {
  const exps = d.experiments;
  const xs: number[] = [];
  const incumbent: Array<number | null> = [];
  const bar: Array<number | null> = [];
  const byDecision: Record<string, Array<number | null>> = { baseline: [], kept: [], discarded: [], pending: [] };
  const failed: Array<{ seq: number; decision: string }> = [];
  let current = d.baseline.mean;
  for (const e of exps) {
    xs.push(e.seq);
    const pendingMean = e.evaluations.filter((v) => v.status === 'ok' && v.metric !== null).map((v) => v.metric!);
    const m = e.metric ?? (pendingMean.length ? pendingMean.reduce((a, b) => a + b, 0) / pendingMean.length : null);
    for (const k of Object.keys(byDecision)) byDecision[k]!.push(null);
    const i = xs.length - 1;
    if (e.seq === 0) {
      byDecision.baseline![i] = d.baseline.mean;
      incumbent.push(d.baseline.mean);
      bar.push(null);
      continue;
    }
    incumbent.push(e.incumbent_metric ?? current);
    bar.push(e.threshold);
    if (e.decision === 'kept') byDecision.kept![i] = m;
    else if (e.decision === 'discarded') byDecision.discarded![i] = m;
    else if (e.decision === null) byDecision.pending![i] = m;
    else failed.push({ seq: e.seq, decision: e.decision });
    if (e.decision === 'kept' && e.metric !== null) current = e.metric;
  }
  return { xs, incumbent, bar, byDecision, failed };
}

const points = (stroke: string, fill: string, size = 9): uPlot.Series => ({
  stroke, fill, width: 0, paths: () => null, points: { show: true, size, stroke, fill, width: 1.5 },
});

/** The progress chart: experiments' means coloured by decision, the incumbent step line, and per experiment the band from the incumbent mean to the bar it had to beat. */
export function progressChart(el: HTMLElement, d: RunDetail): { update(d: RunDetail): void; destroy(): void } {
  let data = progressData(d);
  const metric = d.run.metric;
  const opts: uPlot.Options = {
    width: width(el),
    height: 320,
    scales: { x: { time: false, range: (_u, lo, hi) => [lo - 0.5, hi + 0.5] } },
    axes: [
      { label: 'experiment', incrs: [1, 2, 5, 10, 20, 50, 100, 200, 500], values: (_u, vals) => vals.map((v) => (Number.isInteger(v) ? String(v) : '')) },
      { label: `${metric} (${d.run.direction})`, size: 70, values: (_u, vals) => vals.map((v) => fmtMetric(v)) },
    ],
    series: [
      { label: '#' },
      { label: 'incumbent mean', stroke: COLORS.incumbent, width: 2, paths: () => null, points: { show: false } },
      { label: 'bar to beat', stroke: COLORS.bar, width: 0, paths: () => null, points: { show: false }, dash: [5, 4] },
      { label: 'baseline', ...points(COLORS.baseline, '#ffffff', 10) },
      { label: 'kept', ...points(COLORS.kept, COLORS.kept) },
      { label: 'discarded', ...points(COLORS.discarded, '#ffffff') },
      { label: 'running', ...points(COLORS.pending, 'rgba(69,117,180,0.25)') },
    ],
    hooks: {
      // under the series: per experiment, the band from the incumbent mean to the bar (dashed edge)
      drawAxes: [(u) => {
        const ctx = u.ctx;
        ctx.save();
        const dx = Math.abs(u.valToPos(1, 'x', true) - u.valToPos(0, 'x', true)) * 0.42;
        // the incumbent mean each experiment was compared with: a step line, stepping half-way between experiments
        ctx.strokeStyle = COLORS.incumbent!;
        ctx.lineWidth = 2 * devicePixelRatio;
        ctx.beginPath();
        let started = false;
        for (let i = 0; i < data.xs.length; i++) {
          const inc = data.incumbent[i];
          if (inc === null || inc === undefined) continue;
          const y = u.valToPos(inc, 'y', true);
          const x0 = u.valToPos(data.xs[i]! - (i === 0 ? 0 : 0.5), 'x', true);
          const x1 = u.valToPos(data.xs[i]! + (i === data.xs.length - 1 ? 0.5 : 0.5), 'x', true);
          if (started) ctx.lineTo(x0, y);
          else ctx.moveTo(x0, y);
          ctx.lineTo(x1, y);
          started = true;
        }
        ctx.stroke();
        for (let i = 0; i < data.xs.length; i++) {
          const inc = data.incumbent[i];
          const b = data.bar[i];
          if (inc === null || inc === undefined || b === null || b === undefined) continue;
          const x = u.valToPos(data.xs[i]!, 'x', true);
          const y0 = u.valToPos(inc, 'y', true);
          const y1 = u.valToPos(b, 'y', true);
          ctx.fillStyle = COLORS.band;
          ctx.fillRect(x - dx, Math.min(y0, y1), 2 * dx, Math.max(1, Math.abs(y1 - y0)));
          ctx.strokeStyle = COLORS.bar;
          ctx.lineWidth = 1.5 * devicePixelRatio;
          ctx.setLineDash([4 * devicePixelRatio, 3 * devicePixelRatio]);
          ctx.beginPath();
          ctx.moveTo(x - dx, y1);
          ctx.lineTo(x + dx, y1);
          ctx.stroke();
        }
        ctx.restore();
      }],
      // crashes, timeouts and rejections have no metric: a triangle on the x axis
      draw: [(u) => {
        const ctx = u.ctx;
        ctx.save();
        const y = u.bbox.top + u.bbox.height - 2 * devicePixelRatio;
        for (const f of data.failed) {
          const x = u.valToPos(f.seq, 'x', true);
          const s = 6 * devicePixelRatio;
          ctx.fillStyle = COLORS[f.decision] ?? COLORS.crash!;
          ctx.beginPath();
          ctx.moveTo(x, y - 1.6 * s);
          ctx.lineTo(x - s, y);
          ctx.lineTo(x + s, y);
          ctx.closePath();
          ctx.fill();
        }
        ctx.restore();
      }],
    },
  };
  const toData = (): uPlot.AlignedData => [
    data.xs, data.incumbent, data.bar, data.byDecision.baseline!, data.byDecision.kept!, data.byDecision.discarded!, data.byDecision.pending!,
  ] as uPlot.AlignedData;
  const plot = new uPlot(opts, toData(), el);
  const onResize = () => plot.setSize({ width: width(el), height: 320 });
  window.addEventListener('resize', onResize);
  return {
    update(next) {
      data = progressData(next);
      plot.setData(toData());
    },
    destroy() {
      window.removeEventListener('resize', onResize);
      plot.destroy();
    },
  };
}

const RUN_COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd'];

/** Runs side by side: each run's incumbent over its experiments, and its evaluated candidates. */
export function compareChart(el: HTMLElement, runs: RunDetail[]): { destroy(): void } {
  const maxSeq = Math.max(0, ...runs.flatMap((r) => r.experiments.map((e) => e.seq)));
  const xs = Array.from({ length: maxSeq + 1 }, (_, i) => i);
  const series: uPlot.Series[] = [{ label: '#' }];
  const cols: Array<Array<number | null>> = [];
  runs.forEach((r, k) => {
    const p = progressData(r);
    const inc: Array<number | null> = xs.map(() => null);
    const pts: Array<number | null> = xs.map(() => null);
    p.xs.forEach((x, i) => {
      inc[x] = p.incumbent[i] ?? null;
      pts[x] = p.byDecision.kept![i] ?? p.byDecision.discarded![i] ?? p.byDecision.pending![i] ?? null;
    });
    const c = RUN_COLORS[k % RUN_COLORS.length]!;
    const name = r.run.label ?? r.run.id;
    series.push({ label: `${name}: incumbent`, stroke: c, width: 2, paths: uPlot.paths.stepped!({ align: 1 }), points: { show: false }, spanGaps: true });
    series.push({ label: `${name}: candidates`, ...points(c, '#ffffff', 7) });
    cols.push(inc, pts);
  });
  const plot = new uPlot({
    width: width(el), height: 300, scales: { x: { time: false } },
    axes: [{ label: 'experiment', incrs: [1, 2, 5, 10, 20, 50, 100, 200, 500], values: (_u, vals) => vals.map((v) => (Number.isInteger(v) ? String(v) : '')) }, { label: runs[0]?.run.metric ?? '', size: 70, values: (_u, vals) => vals.map((v) => fmtMetric(v)) }],
    series,
  }, [xs, ...cols] as uPlot.AlignedData, el);
  return { destroy: () => plot.destroy() };
}

// ---------------------------------------------------------------------------------------------
// knobs: parallel coordinates and per-knob slices, drawn on canvas

type Axis = KnobData['axes'][number];
type Trial = KnobData['trials'][number];

/** position of a value on an axis, 0..1 */
function unit(ax: Axis, v: unknown): number | null {
  if (v === undefined || v === null) return null;
  if (ax.type === 'number') {
    const x = v as number;
    const lo = ax.min ?? 0;
    const hi = ax.max ?? 1;
    if (hi === lo) return 0.5;
    if (ax.log) return (Math.log(x) - Math.log(lo)) / (Math.log(hi) - Math.log(lo));
    return (x - lo) / (hi - lo);
  }
  const i = ax.values.findIndex((y) => String(y) === String(v));
  return ax.values.length <= 1 ? 0.5 : i / (ax.values.length - 1);
}

function canvas(el: HTMLElement, w: number, hgt: number): CanvasRenderingContext2D {
  const c = document.createElement('canvas');
  const r = devicePixelRatio || 1;
  c.width = w * r;
  c.height = hgt * r;
  c.style.width = `${w}px`;
  c.style.height = `${hgt}px`;
  el.appendChild(c);
  const ctx = c.getContext('2d')!;
  ctx.scale(r, r);
  ctx.font = '12px system-ui, sans-serif';
  return ctx;
}

/** better metric → darker; a colour from light yellow to deep blue (viridis-like) */
function metricColour(t: number): string {
  const stops = [[253, 231, 37], [94, 201, 98], [33, 145, 140], [59, 82, 139], [68, 1, 84]];
  const x = Math.min(1, Math.max(0, t)) * (stops.length - 1);
  const i = Math.min(stops.length - 2, Math.floor(x));
  const f = x - i;
  const c = stops[i]!.map((a, k) => Math.round(a + (stops[i + 1]![k]! - a) * f));
  return `rgb(${c[0]},${c[1]},${c[2]})`;
}

function goodness(k: KnobData, trials: Trial[]): (m: number) => number {
  const ms = trials.map((t) => t.metric).filter((m): m is number => m !== null);
  const lo = Math.min(...ms);
  const hi = Math.max(...ms);
  return (m) => (hi === lo ? 1 : k.direction === 'minimize' ? (hi - m) / (hi - lo) : (m - lo) / (hi - lo));
}

function label(ax: Axis, v: unknown): string {
  return typeof v === 'number' ? fmtMetric(v) : String(v);
}

export function parallelCoordinates(el: HTMLElement, k: KnobData): void {
  const trials = k.trials.filter((t) => t.metric !== null);
  const axes: Array<Axis | null> = [...k.axes, null]; // null: the metric
  const w = width(el);
  const hgt = 340;
  const ctx = canvas(el, w, hgt);
  const top = 40;
  const bottom = hgt - 30;
  const left = 60;
  const right = w - 60;
  const xAt = (i: number) => left + (axes.length === 1 ? 0 : (i * (right - left)) / (axes.length - 1));
  const ms = trials.map((t) => t.metric!);
  const mlo = Math.min(...ms);
  const mhi = Math.max(...ms);
  const metricUnit = (m: number) => (mhi === mlo ? 0.5 : (m - mlo) / (mhi - mlo));
  const yAt = (u: number) => bottom - u * (bottom - top);
  const good = goodness(k, trials);
  // worse first, so the best lines are drawn on top
  const order = [...trials].sort((a, b) => good(a.metric!) - good(b.metric!));
  for (const t of order) {
    ctx.strokeStyle = metricColour(good(t.metric!));
    ctx.lineWidth = t.decision === 'kept' ? 3 : 1.5;
    ctx.globalAlpha = t.decision === 'kept' ? 1 : 0.75;
    ctx.beginPath();
    let started = false;
    axes.forEach((ax, i) => {
      const u = ax ? unit(ax, t.assignment[ax.key]) : metricUnit(t.metric!);
      if (u === null) return;
      const x = xAt(i);
      const y = yAt(u);
      if (started) ctx.lineTo(x, y);
      else ctx.moveTo(x, y);
      started = true;
    });
    ctx.stroke();
  }
  ctx.globalAlpha = 1;
  axes.forEach((ax, i) => {
    const x = xAt(i);
    ctx.strokeStyle = '#333';
    ctx.lineWidth = 1;
    ctx.beginPath();
    ctx.moveTo(x, top);
    ctx.lineTo(x, bottom);
    ctx.stroke();
    ctx.fillStyle = '#111';
    ctx.textAlign = 'center';
    ctx.font = 'bold 12px system-ui, sans-serif';
    ctx.fillText(ax ? ax.key.replace(/^.*:/, '') : `${k.metric}`, x, top - 22);
    ctx.font = '11px system-ui, sans-serif';
    ctx.fillStyle = '#555';
    if (ax?.type === 'number') {
      ctx.fillText(label(ax, ax.max), x, top - 6);
      ctx.fillText(label(ax, ax.min) + (ax.log ? ' (log)' : ''), x, bottom + 16);
    } else if (ax) {
      ax.values.forEach((v, j) => {
        ctx.textAlign = 'left';
        ctx.fillText(String(v), x + 4, yAt(ax.values.length <= 1 ? 0.5 : j / (ax.values.length - 1)) + 4);
      });
    } else {
      ctx.fillText(fmtMetric(mhi), x, top - 6);
      ctx.fillText(fmtMetric(mlo), x, bottom + 16);
    }
  });
}

/** One small scatter per knob: the knob's value against the metric, coloured by decision. */
export function slices(el: HTMLElement, k: KnobData): void {
  const trials = k.trials.filter((t) => t.metric !== null);
  const ms = trials.map((t) => t.metric!);
  const mlo = Math.min(...ms);
  const mhi = Math.max(...ms);
  for (const ax of k.axes) {
    const box = document.createElement('div');
    box.className = 'slice';
    el.appendChild(box);
    const w = 300;
    const hgt = 200;
    const ctx = canvas(box, w, hgt);
    const l = 56;
    const r = w - 12;
    const t0 = 22;
    const b = hgt - 30;
    ctx.fillStyle = '#111';
    ctx.font = 'bold 12px system-ui, sans-serif';
    ctx.fillText(ax.key, 6, 14);
    ctx.strokeStyle = '#999';
    ctx.strokeRect(l, t0, r - l, b - t0);
    ctx.font = '11px system-ui, sans-serif';
    ctx.fillStyle = '#555';
    ctx.textAlign = 'right';
    ctx.fillText(fmtMetric(mhi), l - 4, t0 + 8);
    ctx.fillText(fmtMetric(mlo), l - 4, b);
    ctx.textAlign = 'left';
    if (ax.type === 'number') {
      ctx.fillText(label(ax, ax.min), l, b + 14);
      ctx.textAlign = 'right';
      ctx.fillText(label(ax, ax.max) + (ax.log ? ' (log)' : ''), r, b + 14);
    } else {
      ax.values.forEach((v, j) => {
        ctx.textAlign = 'center';
        ctx.fillText(String(v), l + (ax.values.length <= 1 ? 0.5 : j / (ax.values.length - 1)) * (r - l), b + 14);
      });
    }
    for (const t of trials) {
      const u = unit(ax, t.assignment[ax.key]);
      if (u === null) continue;
      const x = l + 6 + u * (r - l - 12);
      const y = b - 6 - (mhi === mlo ? 0.5 : (t.metric! - mlo) / (mhi - mlo)) * (b - t0 - 12);
      ctx.fillStyle = COLORS[t.decision ?? 'pending'] ?? COLORS.discarded!;
      ctx.beginPath();
      ctx.arc(x, y, t.decision === 'kept' || t.seq === 0 ? 5 : 4, 0, 2 * Math.PI);
      ctx.fill();
    }
  }
}
