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

/** improvement in the "higher is better" sense */
export function improvementOf(direction: 'minimize' | 'maximize', incumbent: number, candidate: number): number {
  return direction === 'minimize' ? incumbent - candidate : candidate - incumbent;
}

export function mean(xs: number[]): number {
  if (xs.length === 0) return NaN;
  let s = 0;
  for (const x of xs) s += x;
  return s / xs.length;
}

/** all values identical: their spread is exactly 0 (a mean that does not round-trip must not invent noise) */
function constant(xs: number[]): boolean {
  return xs.every((x) => x === xs[0]);
}

export function stddev(xs: number[]): number {
  if (xs.length < 2 || constant(xs)) return 0;
  const m = mean(xs);
  let ss = 0;
  for (const x of xs) ss += (x - m) ** 2;
  return Math.sqrt(ss / (xs.length - 1));
}

export interface Noise {
  /** pooled standard deviation of one evaluation */
  sd: number;
  /** degrees of freedom of that estimate (0: no estimate) */
  df: number;
}

/** Pooled within-group standard deviation over groups of repeated measurements of identical files. */
export function pooledNoise(groups: number[][]): Noise {
  let ss = 0;
  let df = 0;
  for (const g of groups) {
    if (g.length < 2) continue;
    df += g.length - 1;
    if (constant(g)) continue;
    const m = mean(g);
    for (const x of g) ss += (x - m) ** 2;
  }
  return { sd: df > 0 ? Math.sqrt(ss / df) : 0, df };
}

// ---- Student's t quantile (via the regularized incomplete beta function) ----

function logGamma(x: number): number {
  // Lanczos approximation, g = 7
  const c = [0.99999999999980993, 676.5203681218851, -1259.1392167224028, 771.32342877765313, -176.61502916214059,
    12.507343278686905, -0.13857109526572012, 9.9843695780195716e-6, 1.5056327351493116e-7];
  if (x < 0.5) return Math.log(Math.PI / Math.sin(Math.PI * x)) - logGamma(1 - x);
  x -= 1;
  let a = c[0]!;
  const t = x + 7.5;
  for (let i = 1; i < 9; i++) a += c[i]! / (x + i);
  return 0.5 * Math.log(2 * Math.PI) + (x + 0.5) * Math.log(t) - t + Math.log(a);
}

function betaContinuedFraction(a: number, b: number, x: number): number {
  const tiny = 1e-300;
  let c = 1;
  let d = 1 - ((a + b) * x) / (a + 1);
  if (Math.abs(d) < tiny) d = tiny;
  d = 1 / d;
  let h = d;
  for (let m = 1; m <= 300; m++) {
    const m2 = 2 * m;
    let aa = (m * (b - m) * x) / ((a + m2 - 1) * (a + m2));
    d = 1 + aa * d; if (Math.abs(d) < tiny) d = tiny;
    c = 1 + aa / c; if (Math.abs(c) < tiny) c = tiny;
    d = 1 / d; h *= d * c;
    aa = (-(a + m) * (a + b + m) * x) / ((a + m2) * (a + m2 + 1));
    d = 1 + aa * d; if (Math.abs(d) < tiny) d = tiny;
    c = 1 + aa / c; if (Math.abs(c) < tiny) c = tiny;
    d = 1 / d;
    const del = d * c;
    h *= del;
    if (Math.abs(del - 1) < 1e-14) break;
  }
  return h;
}

/** regularized incomplete beta I_x(a, b) */
function incompleteBeta(x: number, a: number, b: number): number {
  if (x <= 0) return 0;
  if (x >= 1) return 1;
  const lbeta = logGamma(a + b) - logGamma(a) - logGamma(b);
  const front = Math.exp(Math.log(x) * a + Math.log(1 - x) * b + lbeta);
  if (x < (a + 1) / (a + b + 2)) return (front * betaContinuedFraction(a, b, x)) / a;
  return 1 - (front * betaContinuedFraction(b, a, 1 - x)) / b;
}

/** CDF of Student's t with df degrees of freedom */
export function tCdf(t: number, df: number): number {
  const x = df / (df + t * t);
  const tail = 0.5 * incompleteBeta(x, df / 2, 0.5);
  return t >= 0 ? 1 - tail : tail;
}

/** quantile p (0.5 < p < 1) of Student's t with df degrees of freedom, by bisection */
export function tQuantile(p: number, df: number): number {
  let lo = 0;
  let hi = 1;
  while (tCdf(hi, df) < p) hi *= 2;
  for (let i = 0; i < 200; i++) {
    const mid = (lo + hi) / 2;
    if (tCdf(mid, df) < p) lo = mid; else hi = mid;
    if (hi - lo < 1e-12) break;
  }
  return (lo + hi) / 2;
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
