import type { Proposer } from './types.ts';
import { SearchProposer, RandomProposer } from './search/index.ts';

/** The proposer a study asks for. */
export function makeProposer(study: { proposer: { type: 'search' | 'random' } }): Proposer {
  switch (study.proposer.type) {
    case 'search':
      return new SearchProposer();
    case 'random':
      return new RandomProposer();
  }
}
