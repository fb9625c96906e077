/**
 * Deterministic splits for sources that ship none. Each task id is hashed with a seed:
 *
 *     u(id) = first 48 bits of sha256(`${seed}:${id}`) / 2^48        (a fraction in [0, 1))
 *
 * - Fractions (`val: 0.2, test: 0.2`): u < val → val; u < val + test → test; else train. A task's
 *   split depends only on its own id and the seed, so adding or removing other tasks never moves it.
 * - Counts (`val: 200`): the tasks sorted by u (ties by id); the first `val` go to val, the next
 *   `test` to test, the rest to train. Exact sizes; adding tasks may move a few at the boundary.
 */
import { createHash } from 'node:crypto';

import { UsageError } from '../base/errors.ts';
import type { Split } from './types.ts';

export interface SplitSpec {
  /** a fraction (< 1) or a count (an integer >= 1) of the tasks; 0 = none */
  val: number;
  test: number;
  seed: string;
}

export function splitFraction(seed: string, id: string): number {
  const hex = createHash('sha256').update(`${seed}:${id}`).digest('hex').slice(0, 12);
  return parseInt(hex, 16) / 2 ** 48;
}

/** Whether the spec is in count mode (either value an integer >= 1). */
export function isCountMode(spec: Pick<SplitSpec, 'val' | 'test'>): boolean {
  return spec.val >= 1 || spec.test >= 1;
}

/** A problem with the spec for `n` tasks, or null. */
export function splitSpecProblem(spec: Pick<SplitSpec, 'val' | 'test'>, n?: number): string | null {
  for (const key of ['val', 'test'] as const) {
    const v = spec[key];
    if (!(Number.isFinite(v) && v >= 0)) return `${key}: expected a fraction below 1 or a whole count, got ${v}`;
    if (v >= 1 && !Number.isInteger(v)) return `${key}: ${v} is neither a fraction below 1 nor a whole count`;
  }
  if (isCountMode(spec)) {
    for (const key of ['val', 'test'] as const) {
      if (!Number.isInteger(spec[key])) return `${key}: ${spec[key]} is a fraction but the other value is a count; use two counts or two fractions`;
    }
    if (n !== undefined && spec.val + spec.test > n) return `val + test = ${spec.val + spec.test} tasks, but there are only ${n}`;
  } else if (spec.val + spec.test > 1) {
    return `val + test = ${spec.val + spec.test} is more than all the tasks (fractions must add up to at most 1)`;
  }
  return null;
}

/** The split of every id (same order as `ids`). Call splitSpecProblem first. */
export function assignSplits(ids: readonly string[], spec: SplitSpec): Split[] {
  const u = ids.map((id) => splitFraction(spec.seed, id));
  if (!isCountMode(spec)) {
    return u.map((x) => (x < spec.val ? 'val' : x < spec.val + spec.test ? 'test' : 'train'));
  }
  const order = ids.map((_, i) => i).sort((a, b) => u[a]! - u[b]! || (ids[a]! < ids[b]! ? -1 : ids[a]! > ids[b]! ? 1 : 0));
  const out: Split[] = new Array(ids.length).fill('train');
  order.forEach((idx, rank) => {
    out[idx] = rank < spec.val ? 'val' : rank < spec.val + spec.test ? 'test' : 'train';
  });
  return out;
}

/** The split spec for `n` tasks from benchmark.yaml's `split` (missing values from `defaults`);
 *  a bad spec is a one-line UsageError naming `file` and the field. */
export function resolveSplit(
  file: string,
  given: { val?: number; test?: number; seed?: string },
  defaults: { val: number; test: number; seed: string },
  n: number,
): SplitSpec {
  // a default in the other mode than the value given follows the given one (`val: 50` with the
  // default test 0.2 means test = 20% of the tasks as a count)
  const fill = (value: number | undefined, other: number | undefined, fallback: number): number => {
    if (value !== undefined) return value;
    if (other === undefined || other === 0 || fallback === 0) return fallback;
    if (other >= 1 && fallback < 1) return Math.round(fallback * n);
    if (other < 1 && fallback >= 1) return n > 0 ? fallback / n : 0;
    return fallback;
  };
  const spec: SplitSpec = { val: fill(given.val, given.test, defaults.val), test: fill(given.test, given.val, defaults.test), seed: given.seed ?? defaults.seed };
  const problem = splitSpecProblem(spec, n);
  if (problem) {
    const field = problem.startsWith('val:') ? 'split.val' : problem.startsWith('test:') ? 'split.test' : 'split';
    throw new UsageError(`${file}: field \`${field}\`: ${problem.replace(/^(val|test): /, '')}`);
  }
  return spec;
}
