/**
 * A small Gaussian-process regression for the `search` proposer: Matérn 5/2 kernel with one
 * length scale per dimension (ARD), a signal variance and a noise variance, on inputs in the unit
 * cube and standardized outputs. Hyperparameters are the maximum a posteriori under weak priors
 * (length scales log-normal around 0.3 of the cube, noise log-normal around the run's measured
 * noise when it has one), found by Nelder–Mead from a few fixed starts: deterministic, no random
 * state.
 *
 * Sizes here are small (tens of points, a handful of dimensions), so everything is exact. The
 * Cholesky factorization is a few lines over a Float64Array: the likelihood is evaluated hundreds
 * of times per proposal, and a general matrix library's per-element calls made that 10× slower.
 */

/** Lower Cholesky factor of the n×n symmetric matrix A (row-major), or null when not positive definite. */
function cholesky(A: Float64Array, n: number): Float64Array | null {
  const L = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j <= i; j++) {
      let sum = A[i * n + j]!;
      for (let k = 0; k < j; k++) sum -= L[i * n + k]! * L[j * n + k]!;
      if (i === j) {
        if (sum <= 0) return null;
        L[i * n + i] = Math.sqrt(sum);
      } else {
        L[i * n + j] = sum / L[j * n + j]!;
      }
    }
  }
  return L;
}

/** Solve L z = b (forward substitution). */
function forward(L: Float64Array, n: number, b: ArrayLike<number>): Float64Array {
  const z = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    let sum = b[i]!;
    for (let k = 0; k < i; k++) sum -= L[i * n + k]! * z[k]!;
    z[i] = sum / L[i * n + i]!;
  }
  return z;
}

/** Solve Lᵀ x = z (back substitution). */
function backward(L: Float64Array, n: number, z: Float64Array): Float64Array {
  const x = new Float64Array(n);
  for (let i = n - 1; i >= 0; i--) {
    let sum = z[i]!;
    for (let k = i + 1; k < n; k++) sum -= L[k * n + i]! * x[k]!;
    x[i] = sum / L[i * n + i]!;
  }
  return x;
}

export interface GpHyper {
  /** log length scales, one per dimension */
  logLen: number[];
  /** log signal standard deviation */
  logSf: number;
  /** log noise standard deviation */
  logSn: number;
}

export interface GpFit {
  hyper: GpHyper;
  /** posterior mean and standard deviation (of f, without noise) at x, in the original units */
  predict(x: number[]): { mean: number; sd: number };
  /** the log marginal likelihood of the fit (standardized units) */
  logLik: number;
}

const SQRT5 = Math.sqrt(5);

function matern52(a: number[], b: number[], len: number[]): number {
  let r2 = 0;
  for (let i = 0; i < a.length; i++) {
    const d = (a[i]! - b[i]!) / len[i]!;
    r2 += d * d;
  }
  const r = Math.sqrt(r2);
  return (1 + SQRT5 * r + (5 / 3) * r2) * Math.exp(-SQRT5 * r);
}

interface Prepared {
  X: number[][];
  y: number[];
  /** evaluations behind each point (its noise variance is sn² / count) */
  counts: number[];
  mu: number;
  scale: number;
}

function standardize(X: number[][], y: number[], counts: number[]): Prepared {
  const mu = y.reduce((s, v) => s + v, 0) / y.length;
  const v = y.reduce((s, t) => s + (t - mu) ** 2, 0) / Math.max(1, y.length - 1);
  const scale = v > 0 ? Math.sqrt(v) : 1;
  return { X, y: y.map((t) => (t - mu) / scale), counts, mu, scale };
}

/** Cholesky of K + sn² I, alpha = K⁻¹ y and the log marginal likelihood; null when not positive definite. */
function factor(p: Prepared, h: GpHyper): { L: Float64Array; alpha: Float64Array; logLik: number; len: number[]; sf2: number } | null {
  const n = p.y.length;
  const len = h.logLen.map(Math.exp);
  const sf2 = Math.exp(2 * h.logSf);
  const sn2 = Math.exp(2 * h.logSn) + 1e-8;
  const K = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j <= i; j++) {
      const k = sf2 * matern52(p.X[i]!, p.X[j]!, len) + (i === j ? sn2 / p.counts[i]! : 0);
      K[i * n + j] = k;
      K[j * n + i] = k;
    }
  }
  const L = cholesky(K, n);
  if (!L) return null;
  const z = forward(L, n, p.y);
  const alpha = backward(L, n, z);
  let logDet = 0;
  for (let i = 0; i < n; i++) logDet += Math.log(L[i * n + i]!);
  let quad = 0;
  for (let i = 0; i < n; i++) quad += z[i]! * z[i]!;
  const logLik = -0.5 * quad - logDet - 0.5 * n * Math.log(2 * Math.PI);
  return { L, alpha, logLik, len, sf2 };
}

/** log density of a normal on a log-scale parameter (up to a constant) */
const logNormal = (x: number, mean: number, sd: number) => -0.5 * ((x - mean) / sd) ** 2;

/** Minimize f over R^n by Nelder–Mead from x0 (fixed steps, bounded iterations). */
export function nelderMead(f: (x: number[]) => number, x0: number[], step = 0.5, iterations = 200): { x: number[]; value: number } {
  const n = x0.length;
  let simplex = [x0, ...x0.map((_, i) => x0.map((v, j) => (i === j ? v + step : v)))].map((x) => ({ x, v: f(x) }));
  for (let it = 0; it < iterations; it++) {
    simplex.sort((a, b) => a.v - b.v);
    const best = simplex[0]!;
    const worst = simplex[n]!;
    if (Math.abs(worst.v - best.v) < 1e-7) break;
    const centroid = x0.map((_, j) => simplex.slice(0, n).reduce((s, p) => s + p.x[j]!, 0) / n);
    const at = (t: number) => centroid.map((c, j) => c + t * (worst.x[j]! - c));
    const r = { x: at(-1), v: 0 };
    r.v = f(r.x);
    if (r.v < best.v) {
      const e = { x: at(-2), v: 0 };
      e.v = f(e.x);
      simplex[n] = e.v < r.v ? e : r;
    } else if (r.v < simplex[n - 1]!.v) {
      simplex[n] = r;
    } else {
      const c = { x: at(r.v < worst.v ? -0.5 : 0.5), v: 0 };
      c.v = f(c.x);
      if (c.v < Math.min(worst.v, r.v)) {
        simplex[n] = c;
      } else {
        simplex = simplex.map((p, i) => (i === 0 ? p : { x: p.x.map((v, j) => best.x[j]! + 0.5 * (v - best.x[j]!)), v: 0 }));
        for (let i = 1; i <= n; i++) simplex[i]!.v = f(simplex[i]!.x);
      }
    }
  }
  simplex.sort((a, b) => a.v - b.v);
  return { x: simplex[0]!.x, value: simplex[0]!.v };
}

/**
 * Fit a GP to (X, y): y[i] is the mean of counts[i] evaluations at X[i]. `noiseSd`: the measured
 * noise standard deviation of one evaluation in y's units, when the run has repeated evaluations
 * (it centres the noise prior; else the noise is left to the data). `minSignalSd`: the least
 * variation the model may assume of f (in y's units), so regions nobody tried stay uncertain.
 */
export function fitGp(X: number[][], y: number[], counts: number[], noiseSd?: number, minSignalSd = 0, fixed?: GpHyper): GpFit {
  const d = X[0]?.length ?? 0;
  const p = standardize(X, y, counts);
  const snCentre = noiseSd !== undefined && noiseSd > 0 ? Math.log(Math.max(1e-4, noiseSd / p.scale)) : Math.log(0.1);
  const snSpread = noiseSd !== undefined && noiseSd > 0 ? 0.5 : 1.5;
  const unpack = (t: number[]): GpHyper => ({ logLen: t.slice(0, d), logSf: t[d]!, logSn: t[d + 1]! });
  // the signal may not be assumed smaller than minSignalSd (in y's units): unexplored regions keep that much uncertainty
  const sfFloor = minSignalSd > 0 ? Math.log(minSignalSd / p.scale) : -3;
  const objective = (t: number[]): number => {
    const h = unpack(t);
    if (h.logLen.some((l) => l < Math.log(0.01) || l > Math.log(2)) || h.logSn < Math.log(1e-4) || h.logSn > Math.log(10) || h.logSf > 3 || h.logSf < Math.min(sfFloor, 3)) return 1e10;
    const fct = factor(p, h);
    if (!fct) return 1e10;
    const prior = h.logLen.reduce((s, l) => s + logNormal(l, Math.log(0.3), 1), 0) + logNormal(h.logSf, 0, 1) + logNormal(h.logSn, snCentre, snSpread);
    return -(fct.logLik + prior);
  };
  // hyperparameters given (a fit conditioned on more points, e.g. the pending candidates of a round): no search
  let hyper = fixed;
  if (!hyper) {
    let best: { x: number[]; value: number } | null = null;
    for (const start of [0.3, 1]) {
      const t0 = [...Array(d).fill(Math.log(start)), Math.max(0, sfFloor + 0.1), snCentre];
      const r = nelderMead(objective, t0, 0.7, 50 + 25 * d);
      if (!best || r.value < best.value) best = r;
    }
    hyper = unpack(best!.x);
  }
  const fct = factor(p, hyper) ?? factor(p, { ...hyper, logSn: Math.log(0.3) })!;
  const kStar = (x: number[]) => p.X.map((xi) => fct.sf2 * matern52(x, xi, fct.len));
  return {
    hyper,
    logLik: fct.logLik,
    predict(x: number[]) {
      const ks = kStar(x);
      let m = 0;
      for (let i = 0; i < ks.length; i++) m += ks[i]! * fct.alpha[i]!;
      const v = forward(fct.L, ks.length, ks);
      let q = 0;
      for (let i = 0; i < ks.length; i++) q += v[i]! * v[i]!;
      const varF = Math.max(1e-12, fct.sf2 - q);
      return { mean: p.mu + p.scale * m, sd: p.scale * Math.sqrt(varF) };
    },
  };
}

/** Standard normal density and distribution function. */
export function phi(z: number): number {
  return Math.exp(-0.5 * z * z) / Math.sqrt(2 * Math.PI);
}
export function Phi(z: number): number {
  // Abramowitz–Stegun 7.1.26 on erf, |error| < 1.5e-7
  const t = 1 / (1 + 0.3275911 * (Math.abs(z) / Math.SQRT2));
  const poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))));
  const erf = 1 - poly * Math.exp(-(z * z) / 2);
  return z >= 0 ? 0.5 * (1 + erf) : 0.5 * (1 - erf);
}

/**
 * Expected improvement of a minimized f below `target` (improvement counted beyond `target`):
 * E[max(0, target − f(x))] with f(x) ~ N(mean, sd²).
 */
export function expectedImprovement(mean: number, sd: number, target: number): number {
  if (sd <= 0) return Math.max(0, target - mean);
  const z = (target - mean) / sd;
  return (target - mean) * Phi(z) + sd * phi(z);
}
