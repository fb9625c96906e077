/** Sampling helpers over a caller-supplied uniform source (ctx.random); no other randomness. */

export type Uniform = () => number;

/**
 * A deterministic uniform source for (seed, stream), e.g. (run seed, proposal number):
 * mulberry32 seeded by a 32-bit mix of both numbers.
 */
export function seededRandom(seed: number, stream = 0): Uniform {
  let h = 0x9e3779b9 ^ Math.imul(seed | 0, 0x85ebca6b) ^ Math.imul((stream | 0) + 0x632be5ab, 0xc2b2ae35);
  h = Math.imul(h ^ (h >>> 16), 0x7feb352d);
  h = Math.imul(h ^ (h >>> 15), 0x846ca68b);
  let a = (h ^ (h >>> 16)) >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** uniform in (0, 1): never exactly 0, so logs are finite */
function open01(rand: Uniform): number {
  const u = rand();
  return u > 0 && u < 1 ? u : 0.5;
}

/** standard normal (Box–Muller) */
export function normal(rand: Uniform): number {
  return Math.sqrt(-2 * Math.log(open01(rand))) * Math.cos(2 * Math.PI * rand());
}

/** Gamma(shape, 1) for shape >= 1 (Marsaglia–Tsang) */
function gamma(rand: Uniform, shape: number): number {
  const d = shape - 1 / 3;
  const c = 1 / Math.sqrt(9 * d);
  for (let i = 0; i < 1000; i++) {
    const x = normal(rand);
    const v = (1 + c * x) ** 3;
    if (v <= 0) continue;
    const u = open01(rand);
    if (Math.log(u) < 0.5 * x * x + d - d * v + d * Math.log(v)) return d * v;
  }
  return d;
}

/** Beta(a, b) for a, b >= 1 */
export function beta(rand: Uniform, a: number, b: number): number {
  const x = gamma(rand, a);
  const y = gamma(rand, b);
  return x / (x + y);
}

/** an integer in [0, n) */
export function pickIndex(rand: Uniform, n: number): number {
  return Math.min(n - 1, Math.floor(rand() * n));
}
