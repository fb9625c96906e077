/**
 * `gsm8k`: the upstream reference rule of openai/grade-school-math, as stated in the data README:
 * "The gold answer is the first match of the regex `#### (\-?[0-9\.\,]+)` in `answer`, with
 * surrounding whitespace stripped and every `,` removed. The same extraction is applied to the
 * model's output. If the output has no `#### ` followed by a number, it is invalid and counts as
 * wrong. A prediction is correct when the two extracted strings are identical. This is a string
 * comparison, not a numeric one, so `18` and `18.0` do not match."
 */
import type { Scorer } from '../types.ts';
import { fail, keyText, ok, quote } from './util.ts';

const ANSWER = /#### (-?[0-9.,]+)/;

/** The extracted answer string (stripped, commas removed), or null when there is no `#### <number>`. */
export function extractGsm8kAnswer(text: string): string | null {
  const m = ANSWER.exec(text);
  if (!m) return null;
  return m[1]!.trim().replace(/,/g, '');
}

export function gsm8kScorer(): Scorer {
  return {
    type: 'gsm8k',
    async score(_task, expected, output) {
      // the key is the gold number; a key written as a whole upstream answer (`... #### 1,000`) is extracted the same way
      const key = keyText(expected);
      const gold = extractGsm8kAnswer(key) ?? key.trim().replace(/,/g, '');
      const m = ANSWER.exec(output);
      if (!m) {
        return fail(`expected ${gold}; no '#### <number>' in the output (invalid, counts as wrong; it ends with ${quote(output.trim(), 60, true)})`);
      }
      const found = m[1]!.trim().replace(/,/g, '');
      const where = `in ${quote(m[0], 40)}`;
      if (found === gold) return ok(`correct: ${found} ${where}`);
      const hint = found !== '' && Number(found) === Number(gold) ? ' (string comparison: the same number written differently is wrong)' : '';
      return fail(`expected ${gold}, found ${found} ${where}${hint}`);
    },
  };
}
