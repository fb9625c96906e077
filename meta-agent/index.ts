export type { KnobDecl, KnobValue, LedgerEntry, ProposalContext, FileEdit, Proposal, Proposer } from './types.ts';
export { filesHash, applyEdits } from './hash.ts';
