/**
 * `regex`: the FIRST match of `pattern` (a JavaScript regular expression with exactly one capturing
 * group; `flags` from i, m, s, u) in the output; its group is the answer, compared with the key like
 * `exact` (same `normalize` options). No match: wrong.
 */
import type { Scorer } from '../types.ts';
import { compareText } from './exact.ts';
import { fail, quote, type Normalize } from './util.ts';

/** Number of capturing groups of a valid pattern. */
export function captureGroups(pattern: string, flags = ''): number {
  return new RegExp(`${pattern}|`, flags).exec('')!.length - 1;
}

export function regexScorer(pattern: string, flags: string, normalize: Normalize): Scorer {
  const re = new RegExp(pattern, flags.replace(/g/g, ''));
  return {
    type: 'regex',
    async score(_task, expected, output) {
      const m = re.exec(output);
      if (!m) return fail(`no match of /${pattern}/${flags} in the output ${quote(output.trim(), 60, true)}`);
      return compareText(m[1] ?? '', expected, normalize, `group 1 of /${pattern}/${flags} in ${quote(m[0], 60)}`);
    },
  };
}
