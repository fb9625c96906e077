/** Number and time formatting shared by progress lines, tables and commit messages. */

export function fmtMetric(x: number | null | undefined): string {
  if (x === null || x === undefined || Number.isNaN(x)) return '—';
  if (x === 0) return '0';
  const a = Math.abs(x);
  if (a >= 1e5 || a < 1e-3) return x.toExponential(3);
  return x.toPrecision(5).replace(/(\.\d*?)0+$/, '$1').replace(/\.$/, '');
}

/** Δ of the metric itself (candidate − incumbent), from an improvement in the higher-is-better sense. */
export function fmtDelta(improvement: number | null | undefined, direction: 'minimize' | 'maximize'): string {
  if (improvement === null || improvement === undefined) return '—';
  const d = direction === 'minimize' ? -improvement : improvement;
  return (d > 0 ? '+' : d < 0 ? '' : '±') + fmtMetric(d);
}

/** one duration format everywhere (the transcript renderer owns it) */
export { fmtDuration } from '../traces/transcript.ts';

/** A plain text table: columns padded, the last column left free. */
export function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) =>
    cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!))).join('  ').trimEnd();
  return [line(header), ...rows.map(line)].join('\n');
}
