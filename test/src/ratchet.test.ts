import { test } from 'node:test';
import assert from 'node:assert/strict';
import { judge, noiseMargin, improvementOf } from '../../src/ratchet.ts';
import { pooledNoise, tQuantile, tCdf } from '../../base/stats.ts';

/** deterministic normal samples (mulberry32 + Box-Muller) */
function normalSource(seed: number): () => number {
  let a = seed >>> 0;
  const uni = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return () => Math.sqrt(-2 * Math.log(1 - uni())) * Math.cos(2 * Math.PI * uni());
}

test('t quantiles match published tables', () => {
  assert.ok(Math.abs(tQuantile(0.975, 2) - 4.303) < 1e-3);
  assert.ok(Math.abs(tQuantile(0.975, 10) - 2.228) < 1e-3);
  assert.ok(Math.abs(tQuantile(0.95, 5) - 2.015) < 1e-3);
  assert.ok(Math.abs(tQuantile(0.975, 1000) - 1.962) < 1e-3);
  assert.ok(Math.abs(tCdf(0, 7) - 0.5) < 1e-12);
});

test('pooled noise over groups ignores singletons and weights by degrees of freedom', () => {
  const n = pooledNoise([[1, 2, 3], [10], [5, 7]]);
  // ss = 2 + 2 = 4, df = 2 + 1 = 3
  assert.equal(n.df, 3);
  assert.ok(Math.abs(n.sd - Math.sqrt(4 / 3)) < 1e-12);
  assert.deepEqual(pooledNoise([[4], [2]]), { sd: 0, df: 0 });
});

test('direction: minimize counts a lower metric as an improvement', () => {
  assert.equal(improvementOf('minimize', 2, 1.5), 0.5);
  assert.equal(improvementOf('maximize', 2, 1.5), -0.5);
});

test('a deterministic metric keeps any strict improvement above min_delta', () => {
  const rule = { alpha: 0.025, minDelta: 0 };
  const noise = pooledNoise([[1, 1, 1]]);
  assert.equal(judge('minimize', [1, 1, 1], [0.999], noise, rule).pass, true);
  assert.equal(judge('minimize', [1, 1, 1], [1], noise, rule).pass, false);
  assert.equal(judge('minimize', [1, 1, 1], [0.999], noise, { alpha: 0.025, minDelta: 0.01 }).pass, false);
});

test('a large real improvement passes even with a noisy baseline', () => {
  const rule = { alpha: 0.025, minDelta: 0 };
  const noise = pooledNoise([[1.0, 1.1, 0.9]]);
  assert.equal(judge('minimize', [1.0, 1.1, 0.9], [0.3], noise, rule).pass, true);
  assert.equal(judge('minimize', [1.0, 1.1, 0.9], [0.85], noise, rule).pass, false);
  assert.ok(noiseMargin(noise, 1, 3, rule) > 0.4);
});

/** Simulate the loop's rule on a metric that is pure noise: every candidate is a no-op. */
function simulateNoOps(seed: number, candidates: number, baselineRepeats: number, confirmRepeats: number) {
  const draw = normalSource(seed);
  const rule = { alpha: 0.025, minDelta: 0 };
  const groups: number[][] = [];
  let incumbent = Array.from({ length: baselineRepeats }, () => 10 + draw());
  groups.push(incumbent);
  let kept = 0;
  for (let i = 0; i < candidates; i++) {
    const screen = [10 + draw()];
    let j = judge('minimize', incumbent, screen, pooledNoise(groups), rule);
    if (!j.pass) continue;
    const all = [...screen, ...Array.from({ length: confirmRepeats }, () => 10 + draw())];
    groups.push(all);
    j = judge('minimize', incumbent, all, pooledNoise(groups), rule);
    if (j.pass) {
      kept++;
      incumbent = all;
    }
  }
  return kept;
}

test('on a pure-noise metric fewer than 5% of no-op candidates are kept', () => {
  let kept = 0;
  let total = 0;
  for (let seed = 1; seed <= 40; seed++) {
    kept += simulateNoOps(seed, 50, 3, 1);
    total += 50;
  }
  const rate = kept / total;
  assert.ok(rate < 0.05, `false keep rate ${rate}`);
  // and the rule is not vacuous: with no noise margin at all, many no-ops would be kept
  let naive = 0;
  const draw = normalSource(99);
  let inc = 10 + draw();
  for (let i = 0; i < 1000; i++) {
    const c = 10 + draw();
    if (c < inc) { naive++; inc = c; }
  }
  assert.ok(naive > 3, 'a naive "keep if better" rule keeps noise');
});

test('single baseline repeat: no noise estimate, margin falls back to min_delta', () => {
  const noise = pooledNoise([[5]]);
  assert.equal(noiseMargin(noise, 1, 1, { alpha: 0.025, minDelta: 0.1 }), 0.1);
});

test('the margin comparison is not decided by floating-point rounding: equal is not an improvement, beyond is', () => {
  const rule = { alpha: 0.025, minDelta: 0.02 };
  const none = pooledNoise([[0.8, 0.8, 0.8]]);
  // in binary 0.82 − 0.80 < 0.02 and 0.80 − 0.78 > 0.02: both are equal to min_delta, so neither passes
  assert.ok(0.82 - 0.8 < 0.02 && 0.8 - 0.78 > 0.02, 'the two rounding directions this test is about');
  assert.equal(judge('maximize', [0.8, 0.8, 0.8], [0.82], none, rule).pass, false);
  assert.equal(judge('maximize', [0.78, 0.78, 0.78], [0.8], pooledNoise([[0.78, 0.78, 0.78]]), rule).pass, false);
  assert.equal(judge('minimize', [0.82, 0.82, 0.82], [0.8], pooledNoise([[0.82, 0.82, 0.82]]), rule).pass, false);
  assert.equal(judge('minimize', [0.8, 0.8, 0.8], [0.78], none, rule).pass, false);
  assert.equal(judge('maximize', [1.0], [1.1], none, { alpha: 0.025, minDelta: 0.1 }).pass, false, '1.1 − 1.0 = 0.10000000000000009');
  // beyond it, even by little, passes
  assert.equal(judge('maximize', [0.8, 0.8, 0.8], [0.8201], none, rule).pass, true);
  assert.equal(judge('minimize', [0.8, 0.8, 0.8], [0.7799], none, rule).pass, true);
  assert.equal(judge('maximize', [0.78, 0.78, 0.78], [0.8000001], pooledNoise([[0.78, 0.78, 0.78]]), rule).pass, true);
  // with min_delta 0, a difference below rounding is no improvement, a real one at any scale is
  assert.equal(judge('minimize', [0.3], [0.1 + 0.2], none, { alpha: 0.025, minDelta: 0 }).pass, false, '0.1 + 0.2 = 0.30000000000000004');
  assert.equal(judge('maximize', [0.1 + 0.2], [0.3], none, { alpha: 0.025, minDelta: 0 }).pass, false);
  assert.equal(judge('minimize', [3e-6, 3e-6], [2.9e-6], pooledNoise([[3e-6, 3e-6]]), { alpha: 0.025, minDelta: 0 }).pass, true, 'a tiny metric keeps its resolution');
});

test('identical repeats are exactly zero noise, even when their mean does not round-trip', () => {
  const g = [0.1, 0.1, 0.1];
  assert.notEqual(g.reduce((a, b) => a + b) / 3, 0.1, 'the mean of three 0.1 is not 0.1 in binary');
  assert.deepEqual(pooledNoise([g]), { sd: 0, df: 2 });
  assert.deepEqual(pooledNoise([g, [7, 7]]), { sd: 0, df: 3 });
});
