/**
 * `numeric`: the LAST number in the output (sign, thousands commas and decimals allowed: `-1,234.5`)
 * is compared with the answer key (a number or a numeric string). It matches when
 * |found − expected| ≤ tolerance · |expected| (relative; default 1e-6), or |found| ≤ tolerance when
 * the key is 0.
 */
import type { Scorer } from '../types.ts';
import { around, fail, keyNumber, lastNumber, ok, quote } from './util.ts';

export const DEFAULT_TOLERANCE = 1e-6;

export function numericScorer(tolerance = DEFAULT_TOLERANCE): Scorer {
  return {
    type: 'numeric',
    async score(_task, expected, output) {
      const want = keyNumber(expected);
      if (want === null) return fail(`the answer key for this task is not a number: ${quote(String(expected))}`);
      const found = lastNumber(output);
      if (!found) return fail(`expected ${want}, found no number in the output ${quote(output.trim(), 60, true)}`);
      const where = `last number, in ${quote(around(output, found.index, found.text.length), 80)}`;
      const close = want === 0 ? Math.abs(found.value) <= tolerance : Math.abs(found.value - want) <= tolerance * Math.abs(want);
      if (close) return ok(`correct: ${found.value} (${where})`);
      return fail(`expected ${want}, found ${found.value} (${where})`);
    },
  };
}
