/** Helpers shared by the scorers: quoting for feedback lines, text normalisation, number parsing. */

/** `s` as a JSON string literal for a feedback line, cut to `max` characters (keeping the end with `tail`). */
export function quote(s: string, max = 80, tail = false): string {
  if (s.length <= max) return JSON.stringify(s);
  return JSON.stringify(tail ? '…' + s.slice(s.length - max) : s.slice(0, max) + '…');
}

export interface Normalize {
  /** `sensitive` (default): compare as is; `insensitive`: lower-case both sides */
  case: 'sensitive' | 'insensitive';
  /** `trim` (default): strip leading and trailing whitespace; `collapse`: also turn every run of
   *  whitespace into one space; `exact`: leave whitespace alone */
  whitespace: 'exact' | 'trim' | 'collapse';
}

export const DEFAULT_NORMALIZE: Normalize = { case: 'sensitive', whitespace: 'trim' };

export function normalizeText(s: string, n: Normalize): string {
  let out = s;
  if (n.whitespace === 'trim') out = out.trim();
  else if (n.whitespace === 'collapse') out = out.replace(/\s+/g, ' ').trim();
  if (n.case === 'insensitive') out = out.toLowerCase();
  return out;
}

/** The answer key entry as text: strings as they are, numbers and booleans printed, else JSON. */
export function keyText(expected: unknown): string {
  if (typeof expected === 'string') return expected;
  if (typeof expected === 'number' || typeof expected === 'boolean' || typeof expected === 'bigint') return String(expected);
  return JSON.stringify(expected) ?? String(expected);
}

/**
 * Numbers as written in prose: optional sign, digits with optional thousands commas (`1,234`),
 * optional decimals and exponent. A number glued to a preceding letter, digit or dot (`v2`, the
 * `-2020` of `2019-2020`) does not start there.
 */
const NUMBER = /(?<![\p{L}\p{N}_.])[-+−]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?|(?<![\p{L}\p{N}_.])[-+−]?\.\d+(?:[eE][-+]?\d+)?/gu;

export interface FoundNumber {
  value: number;
  /** the text it was read from */
  text: string;
  index: number;
}

export function findNumbers(s: string): FoundNumber[] {
  const out: FoundNumber[] = [];
  for (const m of s.matchAll(NUMBER)) {
    const value = Number(m[0].replace(/,/g, '').replace('−', '-'));
    if (Number.isFinite(value)) out.push({ value, text: m[0], index: m.index ?? 0 });
  }
  return out;
}

export function lastNumber(s: string): FoundNumber | null {
  const all = findNumbers(s);
  return all.length ? all[all.length - 1]! : null;
}

/** The answer key entry as a number: a number, or a string that is exactly one number. */
export function keyNumber(expected: unknown): number | null {
  if (typeof expected === 'number') return Number.isFinite(expected) ? expected : null;
  if (typeof expected === 'string') {
    const t = expected.trim();
    const all = findNumbers(t);
    if (all.length === 1 && all[0]!.text === t) return all[0]!.value;
  }
  return null;
}

/** A few characters around `index` in `s`, for "found 41 in '... 41 ...'". */
export function around(s: string, index: number, length: number, width = 30): string {
  const start = Math.max(0, index - width);
  const end = Math.min(s.length, index + length + width);
  return (start > 0 ? '…' : '') + s.slice(start, end).replace(/\s+/g, ' ') + (end < s.length ? '…' : '');
}

export function fail(feedback: string): { score: number; pass: boolean; feedback: string } {
  return { score: 0, pass: false, feedback };
}
export function ok(feedback: string): { score: number; pass: boolean; feedback: string } {
  return { score: 1, pass: true, feedback };
}
