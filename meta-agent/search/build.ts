/**
 * What the knob proposers share: the proposal meta they record (and read back from the ledger),
 * clipping a value to what a knob and its literal allow, and turning moves into a proposal.
 */
import type { KnobValue, Proposal, ProposalContext } from '../types.ts';
import { applyEdits, filesHash } from '../hash.ts';
import { discoverKnobs, formatKnobValue, knobKey, normalizeKnobValue, setKnob, type Knob } from './knobs.ts';
import type { Uniform } from './rng.ts';
import { pickIndex } from './rng.ts';

/** candidates generated per call before giving up (each collision with `seen` costs one) */
export const MAX_TRIES = 64;

export interface KnobChange {
  /** `file:name` */
  knob: string;
  from: KnobValue;
  to: KnobValue;
}

/** What both proposers store in Proposal.meta (and read back from the ledger). */
export interface KnobMeta {
  proposer: string;
  /** the candidate's full knob assignment, `file:name` → value */
  assignment: Record<string, KnobValue>;
  /** the knobs this candidate changed, in file order */
  changed: KnobChange[];
  /** why each change went the way it did, or what the model expects of the candidate */
  reasons?: string[];
  /** search only: the model behind the proposal (see model.ts) */
  model?: SearchExplanation;
  /** search only: the knob values the search space is centred on (the run's start) */
  start?: Record<string, KnobValue>;
}

/** What `search` tells about a proposal: which model, what it expects, and why this candidate. */
export interface SearchExplanation {
  /** `gp-matern52` (a Gaussian process), or `initial-design` while there is too little data */
  kind: string;
  /** evaluations and distinct assignments the model was fitted on */
  observations: number;
  assignments: number;
  /** the noise standard deviation it assumed (measured from repeats), in metric units */
  noise_sd: number | null;
  /** predicted metric of the candidate and of the incumbent (mean, sd), in metric units */
  predicted: { mean: number; sd: number } | null;
  incumbent: { mean: number; sd: number } | null;
  /** the improvement the ratchet will ask of a first evaluation (approximate), in metric units */
  margin: number | null;
  /** expected improvement beyond that margin, and the probability of passing the screen */
  expected_improvement: number | null;
  p_pass: number | null;
}

const isValue = (v: unknown): v is KnobValue => typeof v === 'number' || typeof v === 'boolean' || typeof v === 'string';

/** The knob meta of a ledger entry, or null when it has none (another proposer, the baseline). */
export function readKnobMeta(meta: unknown): KnobMeta | null {
  if (typeof meta !== 'object' || meta === null) return null;
  const m = meta as Record<string, unknown>;
  if (typeof m.assignment !== 'object' || m.assignment === null || !Array.isArray(m.changed)) return null;
  const changed: KnobChange[] = [];
  for (const c of m.changed as unknown[]) {
    if (typeof c !== 'object' || c === null) return null;
    const { knob, from, to } = c as Record<string, unknown>;
    if (typeof knob !== 'string' || !isValue(from) || !isValue(to)) return null;
    changed.push({ knob, from, to });
  }
  return { proposer: typeof m.proposer === 'string' ? m.proposer : '?', assignment: m.assignment as Record<string, KnobValue>, changed };
}

export function same(a: KnobValue, b: KnobValue): boolean {
  if (typeof a === 'number' && typeof b === 'number') return Math.abs(a - b) <= 1e-9 * Math.max(Math.abs(a), Math.abs(b));
  return a === b;
}

// ------------------------------------------------------------------------ values

/** Clip to the knob's bounds and to what its literal can express; the value setKnob will write. */
export function clip(k: Knob, v: number, from: number): number {
  let x = v;
  if (k.min !== undefined) {
    if (k.minExclusive ? x <= k.min : x < k.min) x = k.minExclusive ? k.min + (from - k.min) / 2 : k.min;
  }
  if (k.max !== undefined && x > k.max) x = k.max;
  if (k.type === 'int') {
    x = Math.round(x);
    if (k.min !== undefined && x < k.min) x = Math.ceil(k.min);
    if (k.max !== undefined && x > k.max) x = Math.floor(k.max);
    return x;
  }
  let r = normalizeKnobValue(k, x) as number;
  // 3 significant digits may round past a bound: step one unit in the last digit back inside
  const unit = (y: number) => (y === 0 ? 0 : 10 ** (Math.floor(Math.log10(Math.abs(y))) - 2));
  if (k.max !== undefined && r > k.max) r = normalizeKnobValue(k, r - unit(r)) as number;
  if (k.min !== undefined && (k.minExclusive ? r <= k.min : r < k.min)) r = normalizeKnobValue(k, r + unit(r)) as number;
  return r;
}

export function span(k: Knob): number | undefined {
  return k.min !== undefined && k.max !== undefined ? k.max - k.min : undefined;
}


export function otherChoice(k: Knob, avoid: KnobValue[], rand: Uniform): KnobValue | null {
  const others = (k.choices ?? []).filter((c) => !same(c, k.value));
  if (others.length === 0) return null;
  const fresh = others.filter((c) => !avoid.some((a) => same(a, c)));
  const pool = fresh.length > 0 ? fresh : others;
  return pool[pickIndex(rand, pool.length)]!;
}

// ------------------------------------------------------------------------ proposals

export interface Move {
  knob: Knob;
  to: KnobValue;
  reason?: string;
}

function label(k: Knob, multiFile: boolean, knobs: Knob[]): string {
  if (!multiFile) return k.name;
  const base = k.file.split('/').pop()!;
  const unique = knobs.every((o) => o.file === k.file || o.file.split('/').pop() !== base);
  return `${unique ? base : k.file}:${k.name}`;
}

/** Turn moves into a proposal, or null when the candidate is the incumbent or already seen. */
export function build(ctx: ProposalContext, knobs: Knob[], moves: Move[], proposer: string, incumbentHash: string, extra: Partial<KnobMeta> = {}): Proposal | null {
  const order = new Map(knobs.map((k, i) => [k, i]));
  const real = moves.filter((m) => !same(m.to, m.knob.value)).sort((a, b) => order.get(a.knob)! - order.get(b.knob)!);
  if (real.length === 0) return null;
  const edits: Array<{ path: string; content: string }> = [];
  for (const file of [...new Set(real.map((m) => m.knob.file))]) {
    let content = ctx.files[file]!;
    // rewrite from the end of the file so earlier spans stay valid
    for (const m of real.filter((x) => x.knob.file === file).sort((a, b) => b.knob.span.start - a.knob.span.start)) {
      content = setKnob(content, m.knob, m.to);
    }
    edits.push({ path: file, content });
  }
  const h = filesHash(applyEdits(ctx.files, edits));
  if (h === incumbentHash || ctx.seen.has(h)) return null;
  const multiFile = new Set(knobs.map((k) => k.file)).size > 1;
  const assignment: Record<string, KnobValue> = {};
  for (const k of knobs) assignment[knobKey(k)] = k.value;
  for (const m of real) assignment[knobKey(m.knob)] = m.to;
  const meta: KnobMeta = {
    ...extra,
    proposer,
    assignment,
    changed: real.map((m) => ({ knob: knobKey(m.knob), from: m.knob.value, to: m.to })),
  };
  if (real.some((m) => m.reason)) meta.reasons = real.map((m) => `${m.knob.name}: ${m.reason ?? ''}`);
  return {
    hypothesis: real.map((m) => `${label(m.knob, multiFile, knobs)} ${m.knob.text} → ${formatKnobValue(m.knob, m.to)}`).join('; '),
    edits,
    meta,
  };
}

/** The loop both proposers share: generate moves until one gives a new candidate. */
export function proposeWith(ctx: ProposalContext, proposer: string, generate: (knobs: Knob[], attempt: number) => Move[]): Proposal | null {
  const knobs = discoverKnobs(ctx.files, ctx.editable, ctx.knobs, ctx.command);
  if (knobs.length === 0) return null;
  const incumbentHash = filesHash(ctx.files);
  for (let attempt = 0; attempt < MAX_TRIES; attempt++) {
    const p = build(ctx, knobs, generate(knobs, attempt), proposer, incumbentHash);
    if (p) return p;
  }
  return null;
}

