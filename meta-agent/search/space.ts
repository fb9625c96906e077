/**
 * The search space of a set of knobs: one finite dimension per knob, shared by every proposer that
 * proposes whole assignments (the model-based `search`, `optuna`).
 *
 * Declared bounds are used as they are. A bound a knob does not have (knobs.ts infers only what
 * the literal says: a positive float is > 0, a fraction ≤ 1) is replaced by a window around the
 * run's starting value — the scale a user would try first:
 *   - log-scale float v:  [v / 10, v × 10]  (clipped to the knob's own bounds)
 *   - linear float v = 0: [0, 1]; other linear floats: v ± max(1, 2|v|)
 *   - int v ≥ 1: [max(1, ⌊v / 4⌋), max(4v, v + 4)], log scale from 8 up (widths, batch sizes)
 *   - int v ≤ 0: [v − 4, v + 4] (clipped to the knob's own min)
 * The window is computed from the value at the start of the run, so it does not drift as the
 * incumbent moves: the space is the same on every call and after a resume.
 */
import type { KnobValue, ProposalContext } from '../types.ts';
import { discoverKnobs, knobKey, setKnob, type Knob } from './knobs.ts';

export type Dim =
  | { key: string; type: 'float'; low: number; high: number; log: boolean }
  | { key: string; type: 'int'; low: number; high: number; log: boolean }
  | { key: string; type: 'bool' }
  | { key: string; type: 'choice'; choices: KnobValue[] };

const FLOAT_EPS = 1e-12;
/** how far short of an inferred upper bound a float's range stops (a share of the bound, or of the range) */
const INFERRED_EDGE = 0.02;

/** The dimension of one knob, with `start` the knob's value when the run began. */
export function dimOf(k: Knob, start: KnobValue = k.value): Dim {
  const key = knobKey(k);
  if (k.type === 'bool') return { key, type: 'bool' };
  if (k.type === 'choice') return { key, type: 'choice', choices: [...(k.choices ?? [])] };
  const v = typeof start === 'number' ? start : Number(k.value);
  if (k.type === 'float') {
    let low: number;
    let high: number;
    if (k.log) {
      low = v / 10;
      high = v * 10;
    } else if (v === 0) {
      low = 0;
      high = 1;
    } else {
      const w = Math.max(1, 2 * Math.abs(v));
      low = v - w;
      high = v + w;
    }
    if (k.minDeclared) low = k.min!;
    if (k.maxDeclared) high = k.max!;
    if (k.min !== undefined) low = Math.max(low, k.minExclusive ? k.min + FLOAT_EPS : k.min);
    if (k.max !== undefined) high = Math.min(high, k.max);
    if (k.log) low = Math.max(low, FLOAT_EPS);
    // an upper bound inferred from the value (a fraction's 1) is a guess, often a value the script
    // cannot take (Adam's beta at 1.0): the space stops a little short of it; a declared one is kept
    if (k.max !== undefined && !k.maxDeclared && high >= k.max) high = k.log ? k.max * (1 - INFERRED_EDGE) : k.max - INFERRED_EDGE * (k.max - low);
    return { key, type: 'float', low: Math.min(low, v), high: Math.max(high, v), log: k.log && low > 0 };
  }
  let low: number;
  let high: number;
  let log: boolean;
  if (v >= 1) {
    low = Math.max(1, Math.floor(v / 4));
    high = Math.max(4 * v, v + 4);
    log = k.log || v >= 8;
  } else {
    low = v - 4;
    high = v + 4;
    log = false;
  }
  if (k.minDeclared) low = k.min!;
  if (k.maxDeclared) high = k.max!;
  if (k.min !== undefined) low = Math.max(low, k.min);
  if (k.max !== undefined) high = Math.min(high, k.max);
  low = Math.ceil(Math.min(low, v));
  high = Math.floor(Math.max(high, v));
  return { key, type: 'int', low, high, log: log && low >= 1 };
}

/** The space of `knobs`, each bounded around its value in `start` (`file:name` → value at the run's start). */
export function searchSpace(knobs: Knob[], start: Record<string, KnobValue> = {}): Dim[] {
  return knobs.map((k) => dimOf(k, start[knobKey(k)] ?? k.value));
}

/** A value of `d` as a number in [0, 1] (log dimensions on their log scale); choices and bools by index. */
export function toUnit(d: Dim, v: KnobValue): number {
  switch (d.type) {
    case 'bool':
      return v === true ? 1 : 0;
    case 'choice': {
      const i = d.choices.findIndex((c) => c === v);
      return d.choices.length <= 1 ? 0 : Math.max(0, i) / (d.choices.length - 1);
    }
    default: {
      const x = Number(v);
      if (d.high <= d.low) return 0.5;
      const u = d.log ? (Math.log(x) - Math.log(d.low)) / (Math.log(d.high) - Math.log(d.low)) : (x - d.low) / (d.high - d.low);
      return Math.min(1, Math.max(0, u));
    }
  }
}

/** The value of `d` at unit coordinate `u` (ints rounded, choices and bools by nearest index). */
export function fromUnit(d: Dim, u: number): KnobValue {
  const c = Math.min(1, Math.max(0, u));
  switch (d.type) {
    case 'bool':
      return c >= 0.5;
    case 'choice':
      return d.choices[Math.min(d.choices.length - 1, Math.round(c * (d.choices.length - 1)))]!;
    default: {
      const x = d.log ? Math.exp(Math.log(d.low) + c * (Math.log(d.high) - Math.log(d.low))) : d.low + c * (d.high - d.low);
      if (d.type === 'int') return Math.min(d.high, Math.max(d.low, Math.round(x)));
      return Math.min(d.high, Math.max(d.low, x));
    }
  }
}

/**
 * The space around the start, with each knob read as it was at the start: what is inferred from a
 * literal (a fraction's log scale and bounds, a zero's linear [0, 1]) must not drift as the
 * incumbent moves (a dropout 0.0 that became 0.3 would otherwise turn into a log-scale knob).
 */
export function startSpace(ctx: Pick<ProposalContext, 'files' | 'editable' | 'knobs' | 'command'>, knobs: Knob[], start: Record<string, KnobValue>): Dim[] {
  const files = { ...ctx.files };
  for (const file of [...new Set(knobs.map((k) => k.file))]) {
    let content = files[file]!;
    for (const k of knobs.filter((x) => x.file === file).sort((a, b) => b.span.start - a.span.start)) {
      const v = start[knobKey(k)];
      if (v !== undefined && v !== k.value) content = setKnob(content, k, v);
    }
    files[file] = content;
  }
  let atStart: Knob[] = [];
  try {
    atStart = discoverKnobs(files, ctx.editable, ctx.knobs, ctx.command);
  } catch {
    // a start value the declarations refuse: read the knobs as they are now
  }
  const dims = new Map(searchSpace(atStart, start).map((d) => [d.key, d]));
  const now = searchSpace(knobs, start);
  return knobs.map((k, i) => dims.get(knobKey(k)) ?? now[i]!);
}
