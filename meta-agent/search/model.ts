/**
 * `search`: model-based knob search.
 *
 * Data: every evaluation in the ledger whose knob assignment is known — the baseline (the run's
 * starting values), and every experiment a knob proposer made (its `meta.assignment`), kept,
 * discarded or confirmed, one observation per evaluation so repeats carry the noise; a crashed or
 * timed-out candidate counts as the worst value seen (a bad outcome, not a missing one).
 *
 * Model: a Gaussian process (gp.ts) over the joint knob space mapped to the unit cube (space.ts),
 * with the run's measured noise (the pooled spread of repeated evaluations) as its noise prior.
 *
 * Choice: the whole assignment with the highest expected improvement of a first evaluation beyond
 * the margin the ratchet will ask of it (≈ 2 · noise · √(1 + 1/n_incumbent)): a candidate whose
 * predicted gain is lost in the noise is not worth an evaluation. Candidates are drawn around the
 * incumbent (near and far), around the best points the model knows, along each knob from the
 * incumbent, and uniformly; each is rounded to what its knob can be written as before it is scored.
 * Until the ledger holds two distinct assignments there is no model: the first proposal spreads
 * out from the incumbent (a quarter of each knob's range, all knobs at once).
 *
 * Deterministic: the same ledger and the same ctx.random give the same proposal.
 */
import type { KnobValue, LedgerEntry, Proposal, ProposalContext, Proposer } from '../types.ts';
import { filesHash } from '../hash.ts';
import { discoverKnobs, findKnobs, formatKnobValue, knobKey, normalizeKnobValue, type Knob } from './knobs.ts';
import { startSpace, toUnit, fromUnit, type Dim } from './space.ts';
import { fitGp, expectedImprovement, Phi, type GpFit } from './gp.ts';
import { build, clip, readKnobMeta, same, MAX_TRIES, type Move, type SearchExplanation } from './build.ts';
import { normal, type Uniform } from './rng.ts';

/** the screen's t quantile, roughly (the ratchet's own t falls from 4.3 to ~2 as repeats accumulate) */
const T_SCREEN = 2;
const RANDOM_CANDIDATES = 512;
/** the initial design's steps from the incumbent (no model yet), drawn first */
const INITIAL_STEPS = 64;
const LOCAL_CANDIDATES = 768;
/** trust region: starting side, bounds, and the kept changes in a row that double it */
const TR_START = 0.8;
const TR_MIN = 1 / 64;
const TR_MAX = 1.6;
const TR_SUCCESSES = 2;
/** uniform candidates anywhere, and the factor their expected improvement is weighed by (outside the region) */
const GLOBAL_CANDIDATES = 256;
const OUTSIDE_WEIGHT = 0.5;
/** local polishing of the acquisition: how many of the best candidates, and moves per scale */
const REFINE_TOP = 8;
const REFINE_STEPS = 16;

interface Observations {
  /** one point per distinct assignment */
  X: number[][];
  /** the mean of its evaluations, in the minimize sense */
  y: number[];
  /** how many evaluations each mean is of */
  counts: number[];
  /** every evaluation (minimize sense), for the best-points search */
  evaluations: number;
  /** distinct assignments */
  distinct: number;
  /** pooled within-assignment sd, in metric units (undefined: no repeats yet) */
  noiseSd?: number;
  /** evaluations of the incumbent's assignment */
  incumbentN: number;
}

/** The knob values the search space is centred on: recorded by the first search proposal, else the run's start. */
function startValues(ctx: ProposalContext, knobs: Knob[]): Record<string, KnobValue> {
  for (const e of ctx.ledger) {
    const start = (e.meta as { start?: Record<string, KnobValue> } | undefined)?.start;
    if (start && typeof start === 'object') return { ...Object.fromEntries(knobs.map((k) => [knobKey(k), k.value])), ...start };
  }
  const out: Record<string, KnobValue> = Object.fromEntries(knobs.map((k) => [knobKey(k), k.value]));
  if (ctx.baseFiles) {
    for (const [file, src] of Object.entries(ctx.baseFiles)) {
      try {
        for (const k of findKnobs(file, src, ctx.knobs)) if (knobKey(k) in out) out[knobKey(k)] = k.value;
      } catch {
        /* the base file may not parse with today's declarations: keep the incumbent's value */
      }
    }
  }
  return out;
}

/** the assignment of a ledger entry: its knob meta, or the start values for the baseline */
function assignmentOf(e: LedgerEntry, start: Record<string, KnobValue>): Record<string, KnobValue> | null {
  if (e.decision === 'baseline') return start;
  return readKnobMeta(e.meta)?.assignment ?? null;
}

function observe(ctx: ProposalContext, dims: Dim[], start: Record<string, KnobValue>, incumbent: Record<string, KnobValue>): Observations {
  const sign = ctx.metric.direction === 'minimize' ? 1 : -1;
  const rows: Array<{ x: number[]; ys: number[]; crashed: boolean; key: string }> = [];
  for (const e of ctx.ledger) {
    if (!['baseline', 'kept', 'discarded', 'crash', 'timeout'].includes(e.decision)) continue;
    const a = assignmentOf(e, start);
    if (!a) continue;
    const x = dims.map((d) => toUnit(d, a[d.key] ?? start[d.key]!));
    const values = e.values && e.values.length > 0 ? e.values : e.metric !== undefined ? [e.metric] : [];
    const ys = values.filter(Number.isFinite).map((v) => sign * v);
    const crashed = ys.length === 0 && (e.decision === 'crash' || e.decision === 'timeout');
    if (ys.length === 0 && !crashed) continue;
    rows.push({ x, ys, crashed, key: x.map((v) => v.toFixed(9)).join(',') });
  }
  const all = rows.flatMap((r) => r.ys);
  const worst = all.length ? Math.max(...all) : 0;
  const spread = all.length ? Math.max(...all) - Math.min(...all) : 1;
  // evaluations of the same assignment are one point (their mean; its noise shrinks with the count)
  const groups = new Map<string, { x: number[]; ys: number[] }>();
  for (const r of rows) {
    const ys = r.crashed ? [worst + 0.1 * (spread || 1)] : r.ys;
    const g = groups.get(r.key) ?? { x: r.x, ys: [] };
    g.ys.push(...ys);
    groups.set(r.key, g);
  }
  const X: number[][] = [];
  const y: number[] = [];
  const counts: number[] = [];
  let ss = 0;
  let df = 0;
  for (const g of groups.values()) {
    const m = g.ys.reduce((s, v) => s + v, 0) / g.ys.length;
    X.push(g.x);
    y.push(m);
    counts.push(g.ys.length);
    if (g.ys.length >= 2) {
      ss += g.ys.reduce((s, v) => s + (v - m) ** 2, 0);
      df += g.ys.length - 1;
    }
  }
  const incKey = dims.map((d) => toUnit(d, incumbent[d.key]!).toFixed(9)).join(',');
  return {
    X, y, counts, evaluations: all.length, distinct: groups.size,
    noiseSd: df > 0 ? Math.sqrt(ss / df) : undefined,
    incumbentN: Math.max(1, groups.get(incKey)?.ys.length ?? 1),
  };
}

/** The value a knob will really be written as, for unit coordinate u. */
function representable(k: Knob, d: Dim, u: number): KnobValue {
  const v = fromUnit(d, u);
  if (typeof v !== 'number') return v;
  const r = clip(k, normalizeKnobValue(k, v) as number, k.value as number);
  return r === 0 ? 0 : r; // never -0

}

interface Scored {
  values: KnobValue[];
  /** its unit-cube coordinates */
  x: number[];
  score: number;
  mean?: number;
  sd?: number;
}

export class SearchProposer implements Proposer {
  readonly name = 'search';

  async propose(ctx: ProposalContext): Promise<Proposal | null> {
    return this.proposeNow(ctx);
  }

  /** The proposal, synchronously: what propose returns, and what describeSearchState shows. */
  proposeNow(ctx: ProposalContext): Proposal | null {
    const knobs = discoverKnobs(ctx.files, ctx.editable, ctx.knobs, ctx.command);
    if (knobs.length === 0) return null;
    const start = startValues(ctx, knobs);
    const dims = startSpace(ctx, knobs, start);
    const incumbent = Object.fromEntries(knobs.map((k) => [knobKey(k), k.value]));
    const obs = observe(ctx, dims, start, incumbent);
    const xInc = dims.map((d) => toUnit(d, incumbent[d.key]!));
    const rand = ctx.random;
    const noise = obs.noiseSd ?? 0;
    const margin0 = ctx.screenMargin ?? T_SCREEN * noise * Math.sqrt(1 + 1 / obs.incumbentN);
    // optimism where nothing was tried: the prior lets f vary by at least the margin (else a flat start stays flat)
    const fit = obs.distinct >= 2 ? fitGp(obs.X, obs.y, obs.counts, obs.noiseSd, Math.max(margin0, noise)) : null;
    // the margin the ratchet's screen will ask of this candidate (the loop says; else an estimate)
    const margin = margin0;
    const incPred = fit ? fit.predict(xInc) : null;
    // the candidates of this round still pending (parallel slots): believed to improve nothing (a
    // "constant liar", as Optuna's samplers treat running trials), so this proposal goes elsewhere
    // instead of next to one already being evaluated
    const pending = ctx.ledger.filter((e) => e.decision === 'pending').map((e) => assignmentOf(e, start)).filter((a): a is Record<string, KnobValue> => a !== null)
      .map((a) => dims.map((d) => toUnit(d, a[d.key] ?? start[d.key]!)));
    const model = fit && pending.length
      ? fitGp(
        [...obs.X, ...pending], [...obs.y, ...pending.map(() => incPred!.mean)],
        [...obs.counts, ...pending.map(() => 1)], obs.noiseSd, Math.max(margin0, noise), fit.hyper,
      )
      : fit;

    const region = trustRegion(ctx.ledger, dims.length);
    const pool = candidates(dims, xInc, obs, rand, model ? region : 0);
    const scored: Scored[] = [];
    const seenKeys = new Set<string>();
    const consider = (u: number[], initial = false): Scored | null => {
      const values = knobs.map((k, i) => representable(k, dims[i]!, u[i]!));
      const key = JSON.stringify(values);
      if (seenKeys.has(key) || values.every((v, i) => same(v, knobs[i]!.value))) return null;
      seenKeys.add(key);
      let c: Scored;
      if (!model) {
        // the initial steps first, in the order drawn; the fallbacks after them. With pending round-mates
        // (parallel slots): the initial step farthest from them, so a round's first steps go different ways
        c = { values, x: u, score: pending.length ? (initial ? 1 + Math.sqrt(dims.length) : 0) + Math.min(...pending.map((q) => Math.hypot(...q.map((v, j) => v - u[j]!)))) : -scored.length };
      } else {
        const x = dims.map((d, i) => toUnit(d, values[i]!));
        const p = model.predict(x);
        const ei = expectedImprovement(p.mean, Math.sqrt(p.sd ** 2 + noise ** 2), incPred!.mean - margin);
        const outside = x.some((v, j) => Math.abs(v - xInc[j]!) > region / 2 + 1e-9);
        c = { values, x, score: outside ? OUTSIDE_WEIGHT * ei : ei, mean: p.mean, sd: p.sd };
      }
      scored.push(c);
      return c;
    };
    pool.forEach((u, i) => consider(u, !model && i < INITIAL_STEPS));
    if (model) {
      // polish the best few: small moves that raise the expected improvement, at shrinking scales
      const top = [...scored].sort((a, b) => b.score - a.score).slice(0, REFINE_TOP);
      for (const start of top) {
        let best = start;
        for (const scale of [0.1, 0.03, 0.01]) {
          for (let i = 0; i < REFINE_STEPS; i++) {
            const c = consider(best.x.map((v) => Math.min(1, Math.max(0, v + scale * region * normal(rand)))));
            if (c && c.score > best.score) best = c;
          }
        }
      }
    }
    scored.sort((a, b) => b.score - a.score);
    const incumbentHash = filesHash(ctx.files);
    const sign = ctx.metric.direction === 'minimize' ? 1 : -1;
    for (const c of scored.slice(0, MAX_TRIES * 4)) {
      const moves: Move[] = knobs.map((k, i) => ({ knob: k, to: c.values[i]! }));
      const explanation: SearchExplanation = model
        ? {
          kind: 'gp-matern52', observations: obs.evaluations, assignments: obs.distinct, noise_sd: obs.noiseSd ?? null,
          predicted: { mean: sign * c.mean!, sd: c.sd! }, incumbent: { mean: sign * incPred!.mean, sd: incPred!.sd },
          margin, expected_improvement: c.score,
          p_pass: Phi((incPred!.mean - margin - c.mean!) / Math.sqrt(c.sd! ** 2 + noise ** 2)),
        }
        : { kind: 'initial-design', observations: obs.evaluations, assignments: obs.distinct, noise_sd: obs.noiseSd ?? null, predicted: null, incumbent: null, margin: null, expected_improvement: null, p_pass: null };
      const reasons = model
        ? [`a Gaussian process over ${obs.evaluations} evaluation(s) of ${obs.distinct} assignment(s) expects ${ctx.metric.name} ${fmt(sign * c.mean!)} ± ${fmt(c.sd!)} here vs ${fmt(sign * incPred!.mean)} ± ${fmt(incPred!.sd)} for the incumbent; chance to clear the margin ${fmt(margin)}: ${(explanation.p_pass! * 100).toFixed(0)}%`]
        : ['no model yet (one assignment measured): a first step away from the incumbent on every knob'];
      const p = build(ctx, knobs, moves, this.name, incumbentHash, { model: explanation, start, reasons });
      if (p) return p;
    }
    return null;
  }
}

function fmt(v: number): string {
  return Number.isFinite(v) ? String(Number(v.toPrecision(3))) : String(v);
}

/** Points of the unit cube worth scoring: local around the incumbent and the best points, per knob, uniform. */
/**
 * The side of the trust region around the incumbent (unit-cube units), from the ledger alone: it
 * starts at TR_START, doubles after TR_SUCCESSES kept changes in a row and halves after
 * max(3, ⌈d/2⌉) discards in a row (the search spends its evaluations where the model is trusted,
 * and widens or narrows that by what the ratchet decided).
 */
export function trustRegion(ledger: LedgerEntry[], d: number): number {
  let side = TR_START;
  let ok = 0;
  let bad = 0;
  const failTol = Math.max(3, Math.ceil(d / 2));
  for (const e of ledger) {
    if (!readKnobMeta(e.meta)) continue;
    if (e.decision === 'kept') {
      ok++;
      bad = 0;
    } else if (e.decision === 'crash' || e.decision === 'timeout' || (e.decision === 'discarded' && !(e.improvement !== undefined && e.improvement > 0))) {
      // a failure: worse than the incumbent (a candidate that measured better but not beyond the
      // noise margin is inconclusive, not evidence against the region)
      bad++;
      ok = 0;
    } else {
      continue;
    }
    if (ok >= TR_SUCCESSES) {
      side = Math.min(TR_MAX, side * 2);
      ok = 0;
    } else if (bad >= failTol) {
      side = Math.max(TR_MIN, side / 2);
      bad = 0;
    }
  }
  return side;
}

function candidates(dims: Dim[], xInc: number[], obs: Observations, rand: Uniform, region: number): number[][] {
  const withModel = region > 0;
  const d = dims.length;
  const clamp = (v: number) => Math.min(1, Math.max(0, v));
  const out: number[][] = [];
  if (!withModel) {
    // an initial step: every knob moved by about a quarter of its range, in a random direction
    // (a bool or a choice changes half of the time); then anything, should those all be taken
    const step = (d: Dim, v: number) => (d.type === 'bool' || d.type === 'choice' ? (rand() < 0.5 ? v : rand()) : clamp(v + (rand() < 0.5 ? -1 : 1) * (0.15 + 0.2 * rand())));
    for (let i = 0; i < INITIAL_STEPS; i++) out.push(xInc.map((v, j) => step(dims[j]!, v)));
    for (let j = 0; j < d; j++) for (let s = 0; s <= 16; s++) out.push(xInc.map((v, i) => (i === j ? s / 16 : v)));
    for (let i = 0; i < RANDOM_CANDIDATES; i++) out.push(dims.map(() => rand()));
    return out;
  }
  // uniform in the trust region around the incumbent, and (handicapped when scored) anywhere
  for (let i = 0; i < RANDOM_CANDIDATES; i++) out.push(xInc.map((v) => clamp(v + region * (rand() - 0.5))));
  for (let i = 0; i < GLOBAL_CANDIDATES; i++) out.push(dims.map(() => rand()));
  // the best observed points inside the region (lowest y), as further centres of local search
  const inside = (x: number[]) => x.every((v, j) => Math.abs(v - xInc[j]!) <= region / 2);
  const order = obs.y.map((v, i) => [v, i] as const).filter(([, i]) => inside(obs.X[i]!)).sort((a, b) => a[0] - b[0]);
  const centres = [xInc, ...order.slice(0, 4).map(([, i]) => obs.X[i]!)];
  for (let i = 0; i < LOCAL_CANDIDATES; i++) {
    const c = centres[i % centres.length]!;
    const scale = region * [0.05, 0.15, 0.35][Math.floor(i / centres.length) % 3]!;
    // perturb a random subset of knobs (all of them half of the time)
    const all = rand() < 0.5;
    out.push(c.map((v) => (all || rand() < 2 / Math.max(2, d) ? clamp(v + scale * normal(rand)) : v)));
  }
  // one knob at a time from the incumbent, over its whole range
  for (let j = 0; j < d; j++) {
    for (let s = 0; s <= 16; s++) out.push(xInc.map((v, i) => (i === j ? s / 16 : v)));
  }
  return out;
}

/**
 * What `search` believes now, for a reader (the hybrid proposer's model): each knob with its
 * range, the model's fit, and the proposal SearchProposer would make now, computed by the same
 * code (it draws from ctx.random exactly as propose would).
 */
export function describeSearchState(ctx: ProposalContext): { text: string; suggestion: Proposal | null } {
  const knobs = discoverKnobs(ctx.files, ctx.editable, ctx.knobs, ctx.command);
  if (knobs.length === 0) return { text: 'No searchable knobs in the editable files.', suggestion: null };
  const dims = startSpace(ctx, knobs, startValues(ctx, knobs));
  const lines = knobs.map((k, i) => {
    const d = dims[i]!;
    const range = d.type === 'int' || d.type === 'float'
      ? `, searched in [${formatKnobValue(k, d.low)}, ${formatKnobValue(k, d.high)}]${d.log ? ' on a log scale' : ''}`
      : d.type === 'choice' ? `, choices ${d.choices.map(String).join(' | ')}` : '';
    return `- ${knobKey(k)} = ${k.text} (${k.type}${range})${k.description ? `  # ${k.description}` : ''}`;
  });
  const suggestion = new SearchProposer().proposeNow(ctx);
  const model = (suggestion?.meta as { model?: SearchExplanation; reasons?: string[] } | undefined);
  const text = [
    'Knobs (search fits a Gaussian process to every evaluation of the run and proposes the whole assignment with the highest expected improvement beyond the ratchet\'s margin):',
    ...lines,
    suggestion ? `Search would propose now: ${suggestion.hypothesis}${model?.reasons?.length ? ` (${model.reasons.join('; ')})` : ''}` : 'Search has no new candidate to propose now.',
  ].join('\n');
  return { text, suggestion };
}

export type { GpFit };
