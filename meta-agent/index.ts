export type { KnobDecl, KnobValue, LedgerEntry, ProposalContext, FileEdit, Proposal, Proposer } from './types.ts';
export { filesHash, applyEdits } from './hash.ts';
export { SearchProposer, RandomProposer, findKnobs, discoverKnobs, setKnob, formatKnobValue, seededRandom, type Knob, type KnobMeta } from './search/index.ts';
