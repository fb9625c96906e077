/**
 * `exact`: the whole output, normalised (default: whitespace trimmed, case kept), equals the answer
 * key normalised the same way. A key that is a list of strings accepts any of them.
 */
import type { ScoreResult, Scorer } from '../types.ts';
import { fail, keyText, normalizeText, ok, quote, type Normalize } from './util.ts';

export function acceptedAnswers(expected: unknown): string[] {
  return Array.isArray(expected) ? expected.map(keyText) : [keyText(expected)];
}

/** Compare an extracted answer with the key; `how` says where the answer came from. */
export function compareText(found: string, expected: unknown, normalize: Normalize, how = ''): ScoreResult {
  const accepted = acceptedAnswers(expected);
  const f = normalizeText(found, normalize);
  const suffix = how ? ` (${how})` : '';
  if (accepted.some((a) => normalizeText(a, normalize) === f)) return ok(`correct: ${quote(f)}${suffix}`);
  const want = accepted.length === 1 ? quote(normalizeText(accepted[0]!, normalize)) : `one of ${accepted.map((a) => quote(normalizeText(a, normalize), 40)).join(', ')}`;
  return fail(`expected ${want}, found ${quote(f)}${suffix}`);
}

export function exactScorer(normalize: Normalize): Scorer {
  return {
    type: 'exact',
    async score(_task, expected, output) {
      return compareText(output, expected, normalize);
    },
  };
}
