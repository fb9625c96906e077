/** Number and time formats: the metric and token formats are the CLI's own (base/format.ts, bundled in). */
import { fmtMetric } from '../../../base/format.ts';

export { fmtMetric, fmtTokens } from '../../../base/format.ts';

export function fmtSigned(x: number | null | undefined): string {
  if (x === null || x === undefined || Number.isNaN(x)) return '—';
  return (x > 0 ? '+' : x < 0 ? '' : '±') + fmtMetric(x);
}

export function fmtDuration(ms: number | null | undefined): string {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return '—';
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(1)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} m ${Math.round(s - m * 60)} s`;
  return `${Math.floor(m / 60)} h ${m % 60} m`;
}

export function fmtCost(usd: number): string {
  return `$${(usd ?? 0).toFixed(usd >= 10 ? 2 : 4)}`;
}

export function fmtTime(iso: string | null | undefined): string {
  return iso ? iso.replace('T', ' ').slice(0, 19) : '—';
}
