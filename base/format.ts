/** Number and time formatting shared by progress lines, tables and commit messages. */

export function fmtMetric(x: number | null | undefined): string {
  if (x === null || x === undefined || Number.isNaN(x)) return '—';
  if (x === 0) return '0';
  const a = Math.abs(x);
  if (a >= 1e5 || a < 1e-3) return x.toExponential(3);
  return x.toPrecision(5).replace(/(\.\d*?)0+$/, '$1').replace(/\.$/, '');
}

/** Δ of the metric itself (candidate − incumbent), from an improvement in the higher-is-better sense. */
export function fmtDelta(improvement: number | null | undefined, direction: 'minimize' | 'maximize', fmt: MetricFmt = fmtMetric): string {
  if (improvement === null || improvement === undefined) return '—';
  const d = direction === 'minimize' ? -improvement : improvement;
  return (d > 0 ? '+' : d < 0 ? '' : '±') + fmt(d);
}

export type MetricFmt = (x: number | null | undefined) => string;

/**
 * Decimals that show a noise sd's first two significant digits (sd 0.0123 → 3: 0.012), or null
 * without a noise to go by (no sd, or 0): then fmtMetric's five significant digits.
 */
export function metricDecimals(sd: number | null | undefined): number | null {
  if (sd === null || sd === undefined || !Number.isFinite(sd) || sd <= 0) return null;
  return Math.min(12, Math.max(0, 1 - Math.floor(Math.log10(sd))));
}

/**
 * One format for one run's metric, wherever the CLI prints it (progress lines, log, show,
 * status, the summary): fixed decimals from the run's baseline noise (metricDecimals).
 */
export function metricFormat(sd: number | null | undefined): MetricFmt {
  const d = metricDecimals(sd);
  if (d === null) return fmtMetric;
  return (x) => {
    if (x === null || x === undefined || Number.isNaN(x)) return '—';
    if (!Number.isFinite(x) || Math.abs(x) >= 1e9) return fmtMetric(x);
    const t = x.toFixed(d);
    return /^-0(\.0*)?$/.test(t) ? t.slice(1) : t;
  };
}

/** one duration format everywhere (the CLI, the transcripts, the report) */
export function fmtDuration(ms: number): string {
  if (!Number.isFinite(ms) || ms < 0) return '—';
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(1)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m${String(Math.round(s % 60)).padStart(2, '0')}s`;
  return `${Math.floor(m / 60)}h${String(m % 60).padStart(2, '0')}m`;
}

/** A plain text table: columns padded, the last column left free. */
export function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) =>
    cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!))).join('  ').trimEnd();
  return [line(header), ...rows.map(line)].join('\n');
}

/** 1234 → 1.2k, 2500000 → 2.50M */
export function fmtTokens(n: number): string {
  return n >= 1e6 ? `${(n / 1e6).toFixed(2)}M` : n >= 1e3 ? `${(n / 1e3).toFixed(1)}k` : String(n);
}

/** The telemetry lines `show` prints under an evaluation (training figures, loss-curve sparkline, scoring, evaluator metrics), indented six spaces. */
export function telemetryText(t: Record<string, unknown> | null): string[] {
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

