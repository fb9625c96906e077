/**
 * The noise-aware ratchet: keep a candidate only if it beats the incumbent by more than
 * max(min_delta, the noise margin), first on one evaluation (the screen) and again on the
 * mean of the screen plus `confirm_repeats` more evaluations (the confirmation).
 *
 * Noise: the run's pooled within-group standard deviation s, over every group of repeated
 * evaluations of identical files (the baseline repeats, each confirmed candidate, ...), with
 * df = Σ(n_g − 1) degrees of freedom. It starts from the baseline repeats and sharpens as the
 * run goes.
 *
 * Margin for a candidate mean over n_c evaluations against an incumbent mean over n_i:
 *     margin = max(min_delta, t_{1−α, df} · s · √(1/n_c + 1/n_i))
 * a one-sided two-sample t-test at level α (default 0.025). With only 3 baseline repeats
 * (df = 2) t is 4.30, so early decisions are strict; as df grows t falls towards 1.96.
 * On a metric that is pure noise each test lets through at most α of candidates, and a keep
 * needs both to pass, so false keeps stay under α.
 *
 * The comparison "improvement > margin" is made with a tolerance of 1e-9 of the metric's scale
 * (see `beats`), so that an improvement exactly equal to the margin is never decided by
 * floating-point rounding (0.80 − 0.78 is 0.020000000000000018 in binary, 0.82 − 0.80 is
 * 0.019999999999999907; against min_delta 0.02 both are equal, so neither is kept).
 */
import { mean, tQuantile, type Noise } from '../base/stats.ts';

/** improvement in the "higher is better" sense */
export function improvementOf(direction: 'minimize' | 'maximize', incumbent: number, candidate: number): number {
  return direction === 'minimize' ? incumbent - candidate : candidate - incumbent;
}

export interface AcceptanceRule {
  alpha: number;
  minDelta: number;
}

export function noiseMargin(noise: Noise, nCandidate: number, nIncumbent: number, rule: AcceptanceRule): number {
  if (noise.df === 0 || noise.sd === 0) return rule.minDelta;
  const t = tQuantile(1 - rule.alpha, noise.df);
  return Math.max(rule.minDelta, t * noise.sd * Math.sqrt(1 / nCandidate + 1 / nIncumbent));
}

export interface Judgement {
  pass: boolean;
  candidateMean: number;
  incumbentMean: number;
  improvement: number;
  margin: number;
}

/** relative tolerance of the margin comparison */
export const TOLERANCE = 1e-9;

/**
 * Does `improvement` exceed `margin` by more than rounding? The tolerance is 1e-9 of the largest
 * metric value compared: far above the error of subtracting two of them (about 1e-16 of it) and
 * far below any difference a metric means, at any scale (no absolute floor, so a metric of order
 * 1e-6 keeps its resolution).
 */
export function beats(improvement: number, margin: number, ...values: number[]): boolean {
  const scale = Math.max(0, ...values.map((v) => (Number.isFinite(v) ? Math.abs(v) : 0)));
  return improvement > margin + TOLERANCE * scale;
}

export function judge(
  direction: 'minimize' | 'maximize',
  incumbent: number[],
  candidate: number[],
  noise: Noise,
  rule: AcceptanceRule,
): Judgement {
  const incumbentMean = mean(incumbent);
  const candidateMean = mean(candidate);
  const improvement = improvementOf(direction, incumbentMean, candidateMean);
  const margin = noiseMargin(noise, candidate.length, incumbent.length, rule);
  return { pass: beats(improvement, margin, incumbentMean, candidateMean), candidateMean, incumbentMean, improvement, margin };
}
