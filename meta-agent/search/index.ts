/**
 * Knob proposers: `search` (model-based, meta-agent/search/model.ts) and `random` (the baseline).
 *
 * `search` fits a Gaussian process to every evaluation in the ledger — kept, discarded, confirmed,
 * crashed (as a bad outcome) — over the joint knob space (space.ts) and proposes the whole
 * assignment with the highest expected improvement beyond the margin the ratchet will ask of it.
 * Everything is recomputed from the ledger on every call (no hidden state: a resumed run proposes
 * exactly what the interrupted one would have) and every random choice comes from ctx.random.
 *
 * `random`: the plain baseline, with no learning: one knob picked uniformly, moved to a value
 * drawn uniformly from a broad range around the current one.
 */
import type { Proposal, ProposalContext, Proposer } from '../types.ts';
import { pickIndex } from './rng.ts';
import { clip, otherChoice, proposeWith, span } from './build.ts';

export { seededRandom } from './rng.ts';
export { MAX_TRIES, readKnobMeta, type KnobChange, type KnobMeta, type SearchExplanation } from './build.ts';
export { SearchProposer, describeSearchState } from './model.ts';
export { findKnobs, discoverKnobs, setKnob, formatKnobValue, normalizeKnobValue, knobKey } from './knobs.ts';
export type { Knob, KnobType, KnobSyntax } from './knobs.ts';

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
