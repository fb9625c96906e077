/**
 * `choice`: the BIG-Bench Hard rule from the data README ("reproduces all 54 published Codex
 * accuracies exactly"):
 * - "For CoT outputs, take the text after the last `So the answer is `."
 * - "For direct outputs, take the whole output."
 * - "Strip whitespace, keep the first line, and drop one trailing `.`."
 * - "Compare that string with `target` for exact equality." (case-sensitive, no normalisation)
 */
import type { Scorer } from '../types.ts';
import { fail, keyText, ok, quote } from './util.ts';

const MARKER = 'So the answer is ';

export function extractBbhAnswer(output: string): { answer: string; how: string } {
  const at = output.lastIndexOf(MARKER);
  let s = at >= 0 ? output.slice(at + MARKER.length) : output;
  const how = at >= 0 ? `text after the last '${MARKER.trim()}'` : 'whole output';
  s = s.trim();
  s = s.split('\n')[0]!;
  if (s.endsWith('.')) s = s.slice(0, -1);
  return { answer: s, how };
}

export function choiceScorer(): Scorer {
  return {
    type: 'choice',
    async score(_task, expected, output) {
      const target = keyText(expected);
      const { answer, how } = extractBbhAnswer(output);
      if (answer === target) return ok(`correct: ${quote(answer)} (${how})`);
      let hint = '';
      if (answer.toLowerCase() === target.toLowerCase()) hint = '; differs only in case (the comparison is case-sensitive)';
      else if (answer.includes(target)) hint = `; it contains the target but must equal it (end with '${MARKER}${target}.')`;
      return fail(`expected ${quote(target)}, found ${quote(answer)} (${how}, first line, one trailing '.' dropped)${hint}`);
    },
  };
}
