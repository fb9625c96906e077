/**
 * Mean and 95% confidence interval of per-task scores.
 * - All scores 0 or 1: the Wilson score interval (good at small n and near 0% / 100%).
 * - Otherwise: the t-interval mean ± t(0.975, n−1) · s / √n, clipped to [0, 1] when every score
 *   lies in [0, 1] (so n = 1 gives [0, 1]: one score says nothing about the spread).
 * - No scores: mean NaN, interval [NaN, NaN].
 */
import { tQuantile } from '../base/stats.ts';
import type { Aggregate } from './types.ts';

const Z975 = 1.959963984540054;

export function wilson(successes: number, n: number, z = Z975): [number, number] {
  if (n === 0) return [0, 1];
  const p = successes / n;
  const z2 = z * z;
  const centre = (p + z2 / (2 * n)) / (1 + z2 / n);
  const half = (z / (1 + z2 / n)) * Math.sqrt((p * (1 - p)) / n + z2 / (4 * n * n));
  return [Math.max(0, centre - half), Math.min(1, centre + half)];
}

export function aggregate(scores: number[]): Aggregate {
  const n = scores.length;
  if (n === 0) return { n: 0, mean: NaN, ci95: [NaN, NaN] };
  for (const s of scores) if (!Number.isFinite(s)) throw new Error(`aggregate: score ${s} is not a finite number`);
  const mean = scores.reduce((a, b) => a + b, 0) / n;
  if (scores.every((s) => s === 0 || s === 1)) {
    return { n, mean, ci95: wilson(scores.filter((s) => s === 1).length, n) };
  }
  const unit = scores.every((s) => s >= 0 && s <= 1);
  if (n === 1) return { n, mean, ci95: unit ? [0, 1] : [-Infinity, Infinity] };
  const variance = scores.reduce((a, s) => a + (s - mean) ** 2, 0) / (n - 1);
  const half = tQuantile(0.975, n - 1) * Math.sqrt(variance / n);
  let lo = mean - half;
  let hi = mean + half;
  if (unit) {
    lo = Math.max(0, lo);
    hi = Math.min(1, hi);
  }
  return { n, mean, ci95: [lo, hi] };
}
