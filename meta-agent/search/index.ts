/**
 * `search`: knob search without an LLM that learns from the run's ledger.
 *
 * Each proposal changes one knob (sometimes two or three) of the editable files. Which knob is
 * chosen by Thompson sampling: each knob has a Beta(1 + kept, 1 + not kept) belief, with older
 * outcomes of that knob discounted, so knobs whose changes have been kept get tried more
 * while every knob keeps some chance. How far it moves follows the 1/5th success rule
 * of evolution strategies: the knob's step grows ×1.4 after a kept change and shrinks ×0.92
 * after a discard, so it settles where about one change in five is kept. Which way it moves
 * has a memory: a direction that was just kept is tried again (momentum), and a direction
 * discarded twice from the current value is turned around. All of this is recomputed from the
 * ledger on every call (no hidden state, so a resumed run proposes exactly what the
 * interrupted one would have) and every random choice comes from ctx.random.
 *
 * `random`: the plain baseline, with no learning: one knob picked uniformly, moved to a value
 * drawn uniformly from a broad range around the current one.
 */
import type { KnobValue, LedgerEntry, Proposal, ProposalContext, Proposer } from '../types.ts';
import { applyEdits, filesHash } from '../hash.ts';
import { discoverKnobs, formatKnobValue, knobKey, normalizeKnobValue, setKnob, type Knob } from './knobs.ts';
import { beta, normal, pickIndex, type Uniform } from './rng.ts';

export { seededRandom } from './rng.ts';
export { findKnobs, discoverKnobs, setKnob, formatKnobValue, normalizeKnobValue, knobKey } from './knobs.ts';
export type { Knob, KnobType, KnobSyntax } from './knobs.ts';

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
  /** search only: why each change went the way it did */
  reasons?: string[];
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

function same(a: KnobValue, b: KnobValue): boolean {
  if (typeof a === 'number' && typeof b === 'number') return Math.abs(a - b) <= 1e-9 * Math.max(Math.abs(a), Math.abs(b));
  return a === b;
}

const isNumeric = (k: Knob) => k.type === 'int' || k.type === 'float';
/** a power of two >= 8, the kind of int (batch 64, width 128) that is doubled or halved */
const isPow2 = (v: number) => Number.isInteger(v) && v >= 8 && v <= 2 ** 30 && (v & (v - 1)) === 0;
/** any power of two (a halved 8 is 4) */
const isPow2Any = (v: KnobValue) => typeof v === 'number' && Number.isInteger(v) && v >= 1 && v <= 2 ** 30 && (v & (v - 1)) === 0;

// ------------------------------------------------------------------------ learned state

/** step growth after a kept change; a discard shrinks by its 4th root (the 1/5th rule) */
const STEP_UP = 1.4;
const STEP_DOWN = STEP_UP ** -0.25;
const STEP_MIN = 1 / 8;
const STEP_MAX = 4;
/** weight of a knob's older outcomes relative to its next one */
const DISCOUNT = 0.85;

export interface KnobStats {
  /** multiplier of the knob's base step size */
  step: number;
  /** discounted kept / not-kept counts (the Thompson-sampling belief) */
  kept: number;
  failed: number;
  trials: number;
  /** direction of the last kept change, if the knob still sits where that change put it */
  momentum?: 1 | -1;
  /** discarded moves from the current value, by direction */
  failsUp: number;
  failsDown: number;
  /** values tried from the current value and not kept */
  failedTo: KnobValue[];
  /** every value the knob has had in the ledger (and now) was a power of two */
  alwaysPow2: boolean;
}

/** Everything `search` knows, derived from the ledger alone. */
export function deriveStats(ledger: LedgerEntry[], knobs: Knob[]): Map<string, KnobStats> {
  const stats = new Map<string, KnobStats>();
  const current = new Map<string, Knob>();
  for (const k of knobs) {
    current.set(knobKey(k), k);
    stats.set(knobKey(k), { step: 1, kept: 0, failed: 0, trials: 0, failsUp: 0, failsDown: 0, failedTo: [], alwaysPow2: k.type === 'int' && isPow2(k.value as number) });
  }
  const lastKept = new Map<string, { dir: 1 | -1 | 0; to: KnobValue }>();
  for (const e of ledger) {
    const meta = readKnobMeta(e.meta);
    if (!meta) continue;
    const won = e.decision === 'kept';
    const lost = e.decision === 'discarded' || e.decision === 'crash' || e.decision === 'timeout';
    if (!won && !lost) continue;
    for (const c of meta.changed) {
      const s = stats.get(c.knob);
      const k = current.get(c.knob);
      if (!s || !k) continue;
      s.trials++;
      if (!(isPow2Any(c.from) && isPow2Any(c.to))) s.alwaysPow2 = false;
      s.kept = s.kept * DISCOUNT + (won ? 1 : 0);
      s.failed = s.failed * DISCOUNT + (won ? 0 : 1);
      s.step = Math.min(STEP_MAX, Math.max(STEP_MIN, s.step * (won ? STEP_UP : STEP_DOWN)));
      const dir = typeof c.from === 'number' && typeof c.to === 'number' && isNumeric(k) ? (Math.sign(c.to - c.from) as 1 | -1 | 0) : 0;
      if (won) {
        lastKept.set(c.knob, { dir, to: c.to });
      } else if (same(c.from, k.value)) {
        if (dir > 0) s.failsUp++;
        if (dir < 0) s.failsDown++;
        s.failedTo.push(c.to);
      }
    }
  }
  for (const [key, lk] of lastKept) {
    const s = stats.get(key)!;
    if (lk.dir !== 0 && same(lk.to, current.get(key)!.value)) s.momentum = lk.dir;
  }
  return stats;
}

// ------------------------------------------------------------------------ values

/** Clip to the knob's bounds and to what its literal can express; the value setKnob will write. */
function clip(k: Knob, v: number, from: number): number {
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

function span(k: Knob): number | undefined {
  return k.min !== undefined && k.max !== undefined ? k.max - k.min : undefined;
}


/** One directed step of size ~ `scale` (1 = the knob's base step). */
function step(k: Knob, from: number, dir: 1 | -1, scale: number, rand: Uniform, pow2: boolean): number {
  const z = Math.abs(normal(rand));
  if (k.type === 'float') {
    if (k.log) return from * Math.exp(dir * Math.max(0.05, z * 0.5 * scale));
    const base = span(k) !== undefined ? 0.1 * span(k)! : Math.max(0.1, 0.25 * Math.abs(from));
    return from + dir * Math.max(0.1 * base, z * base * scale);
  }
  if (k.log) {
    const next = Math.round(from * Math.exp(dir * Math.max(0.1, z * 0.5 * scale)));
    return next === from ? from + dir : next;
  }
  if (pow2) return from * 2 ** (dir * Math.min(2, Math.max(1, Math.round(z * 0.7 * scale))));
  return from + dir * Math.max(1, Math.round(z * Math.max(1, 0.1 * Math.abs(from)) * scale));
}

function otherChoice(k: Knob, avoid: KnobValue[], rand: Uniform): KnobValue | null {
  const others = (k.choices ?? []).filter((c) => !same(c, k.value));
  if (others.length === 0) return null;
  const fresh = others.filter((c) => !avoid.some((a) => same(a, c)));
  const pool = fresh.length > 0 ? fresh : others;
  return pool[pickIndex(rand, pool.length)]!;
}

// ------------------------------------------------------------------------ proposals

interface Move {
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
function build(ctx: ProposalContext, knobs: Knob[], moves: Move[], proposer: string, incumbentHash: string): Proposal | null {
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
function proposeWith(ctx: ProposalContext, proposer: string, generate: (knobs: Knob[], attempt: number) => Move[]): Proposal | null {
  const knobs = discoverKnobs(ctx.files, ctx.editable, ctx.knobs, ctx.command);
  if (knobs.length === 0) return null;
  const incumbentHash = filesHash(ctx.files);
  for (let attempt = 0; attempt < MAX_TRIES; attempt++) {
    const p = build(ctx, knobs, generate(knobs, attempt), proposer, incumbentHash);
    if (p) return p;
  }
  return null;
}

export class SearchProposer implements Proposer {
  readonly name = 'search';

  async propose(ctx: ProposalContext): Promise<Proposal | null> {
    return this.proposeNow(ctx);
  }

  /** The proposal, synchronously: what propose returns, and what describeSearchState shows. */
  proposeNow(ctx: ProposalContext): Proposal | null {
    let stats: Map<string, KnobStats> | undefined;
    return proposeWith(ctx, this.name, (knobs, attempt) => {
      stats ??= deriveStats(ctx.ledger, knobs);
      return this.moves(knobs, stats, attempt, ctx.random);
    });
  }

  private moves(knobs: Knob[], stats: Map<string, KnobStats>, attempt: number, rand: Uniform): Move[] {
    // how many knobs: mostly one; more often several once single moves keep colliding with `seen`
    let count = 1;
    if (knobs.length > 1 && rand() < Math.min(0.8, 0.15 + 0.03 * attempt)) count = knobs.length > 2 && rand() < 0.25 ? 3 : 2;
    // Thompson sampling over knobs
    const ranked = knobs
      .map((k) => {
        const s = stats.get(knobKey(k))!;
        return { k, score: beta(rand, 1 + s.kept, 1 + s.failed) };
      })
      .sort((a, b) => b.score - a.score)
      .slice(0, count);
    // widen the step after collisions; after many, forget direction memory
    const widen = 1 + 0.15 * attempt;
    const free = attempt >= 8;
    const moves: Move[] = [];
    for (const { k } of ranked) {
      const s = stats.get(knobKey(k))!;
      if (k.type === 'bool') {
        moves.push({ knob: k, to: !(k.value as boolean), reason: 'flip' });
        continue;
      }
      if (k.type === 'choice') {
        const to = otherChoice(k, s.failedTo, rand);
        if (to !== null) moves.push({ knob: k, to, reason: 'another choice' });
        continue;
      }
      const [dir, why] = free ? [rand() < 0.5 ? 1 : -1, 'explore'] as const : chooseDirection(s, rand);
      const from = k.value as number;
      // double / halve a knob that has only ever been a power of two, until both ways failed twice
      const pow2 = k.type === 'int' && !k.log && s.alwaysPow2 && isPow2(from) && !(s.failsUp >= 2 && s.failsDown >= 2);
      for (const d of [dir, -dir as 1 | -1]) {
        const to = clip(k, step(k, from, d, s.step * widen, rand, pow2), from);
        if (to !== from) {
          moves.push({ knob: k, to, reason: `${d === dir ? why : 'bound reached, other way'}, step ×${s.step.toFixed(2)}` });
          break;
        }
      }
    }
    return moves;
  }
}

/** Direction memory: follow a kept direction; turn around after two discards. */
function chooseDirection(s: KnobStats, rand: Uniform): [1 | -1, string] {
  const fails = (d: 1 | -1) => (d > 0 ? s.failsUp : s.failsDown);
  if (s.momentum) {
    const d = s.momentum;
    if (fails(d) >= 2) return fails(-d as 1 | -1) >= 2 ? [rand() < 0.5 ? 1 : -1, 'both ways discarded twice'] : [-d as 1 | -1, 'turn around after 2 discards'];
    return rand() < 0.85 ? [d, 'continue kept direction'] : [-d as 1 | -1, 'probe the other way'];
  }
  if (s.failsUp >= 2 && s.failsDown < 2) return [-1, 'up discarded twice'];
  if (s.failsDown >= 2 && s.failsUp < 2) return [1, 'down discarded twice'];
  if (s.failsUp !== s.failsDown) {
    const fewer: 1 | -1 = s.failsUp < s.failsDown ? 1 : -1;
    return rand() < 0.75 ? [fewer, 'fewer discards this way'] : [-fewer as 1 | -1, 'explore'];
  }
  return [rand() < 0.5 ? 1 : -1, 'explore'];
}

/**
 * What `search` believes now, for a reader (the hybrid proposer's model): per knob its value,
 * trials, discounted kept / failed counts, step multiplier, momentum and the values already
 * discarded from the current value; and the proposal SearchProposer would make now, computed by
 * the same code (it draws from ctx.random exactly as propose would).
 */
export function describeSearchState(ctx: ProposalContext): { text: string; suggestion: Proposal | null } {
  const knobs = discoverKnobs(ctx.files, ctx.editable, ctx.knobs, ctx.command);
  if (knobs.length === 0) return { text: 'No searchable knobs in the editable files.', suggestion: null };
  const stats = deriveStats(ctx.ledger, knobs);
  const f2 = (x: number) => x.toFixed(2);
  const lines = knobs.map((k) => {
    const s = stats.get(knobKey(k))!;
    const range = k.type === 'int' || k.type === 'float' ? `, ${k.minExclusive || k.min === undefined ? '(' : '['}${k.min ?? '-∞'}, ${k.max ?? '∞'}${k.max === undefined ? ')' : ']'}${k.log ? ' log scale' : ''}` : k.type === 'choice' ? `, choices ${(k.choices ?? []).map(String).join(' | ')}` : '';
    const parts = [
      `${knobKey(k)} = ${k.text} (${k.type}${range})`,
      `trials ${s.trials}`,
      `kept ${f2(s.kept)} / failed ${f2(s.failed)}`,
      `step ×${f2(s.step)}`,
      `momentum ${s.momentum === 1 ? 'up' : s.momentum === -1 ? 'down' : 'none'}`,
    ];
    if (s.failedTo.length > 0) parts.push(`failed from here: ${s.failedTo.map((v) => formatKnobValue(k, v)).join(', ')}`);
    return `- ${parts.join(' · ')}${k.description ? `  # ${k.description}` : ''}`;
  });
  const suggestion = new SearchProposer().proposeNow(ctx);
  const reasons = (readKnobMetaReasons(suggestion?.meta) ?? []).join('; ');
  const text = [
    'Knobs (kept / failed are discounted counts of outcomes, older ones weigh less; step is the multiplier of the base step: ×1.4 after a kept change, smaller after each discard; momentum is the direction of the last kept change while the knob still sits there):',
    ...lines,
    suggestion ? `Search would propose now: ${suggestion.hypothesis}${reasons ? ` (${reasons})` : ''}` : 'Search has no new candidate to propose now.',
  ].join('\n');
  return { text, suggestion };
}

function readKnobMetaReasons(meta: unknown): string[] | null {
  const r = (meta as { reasons?: unknown } | undefined)?.reasons;
  return Array.isArray(r) ? r.filter((x): x is string => typeof x === 'string') : null;
}

export class RandomProposer implements Proposer {
  readonly name = 'random';

  async propose(ctx: ProposalContext): Promise<Proposal | null> {
    const rand = ctx.random;
    return proposeWith(ctx, this.name, (knobs) => {
      const k = knobs[pickIndex(rand, knobs.length)]!;
      if (k.type === 'bool') return [{ knob: k, to: !(k.value as boolean) }];
      if (k.type === 'choice') {
        const to = otherChoice(k, [], rand);
        return to === null ? [] : [{ knob: k, to }];
      }
      const from = k.value as number;
      const u = 2 * rand() - 1;
      let v: number;
      if (k.type === 'float' && k.log) v = from * 4 ** u;
      else if (k.type === 'float') v = from + u * (span(k) !== undefined ? 0.5 * span(k)! : Math.max(0.5 * Math.abs(from), from === 0 ? 1 : 0));
      else {
        const w = Math.max(1, Math.round(0.5 * Math.abs(from)));
        v = from - w + pickIndex(rand, 2 * w);
        if (v >= from) v++;
      }
      return [{ knob: k, to: clip(k, v, from) }];
    });
  }
}
