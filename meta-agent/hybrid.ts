/**
 * `hybrid`: knob search and the llm proposer together.
 *
 *   mode `alternate`: experiments alternate by seq parity: odd → the search proposer exactly as
 *     `search` would propose (falling back to the llm when search has nothing left), even → llm.
 *   mode `llm`: every experiment goes to the llm, which is also shown the search proposer's model
 *     of the knobs and the change search would make now; it may answer with its own edits or
 *     with `{"use_search": true}` to take that change.
 *
 * A search choice keeps the knob meta (`assignment`, `changed`) at the top level of Proposal.meta,
 * so `readKnobMeta` reads it from the ledger and the search half keeps learning from every
 * experiment it made, whichever mode chose it.
 */
import { z } from 'zod';
import { LlmProposer, describeIssues, type ExtensionAnswer, type LlmExtension, type LlmSettings } from './llm.ts';
import { describeSearchState, SearchProposer } from './search/index.ts';
import type { LedgerEntry, Proposal, ProposalContext, Proposer } from './types.ts';

export interface HybridSettings extends LlmSettings {
  mode: 'alternate' | 'llm';
}

/** The meta of a proposal taken from the search proposer: the knob meta kept readable, plus where it came from. */
export function searchChoiceMeta(knobMeta: unknown): Record<string, unknown> {
  const m = typeof knobMeta === 'object' && knobMeta !== null ? (knobMeta as Record<string, unknown>) : {};
  return { ...m, proposer: 'hybrid', choice: 'search', knob: knobMeta };
}

const UseSearchSchema = z.object({
  use_search: z.literal(true),
  hypothesis: z.string().optional(),
  cited_traces: z.array(z.string()).default([]),
  expected_effect: z.string().optional(),
});

function nextSeq(ledger: LedgerEntry[]): number {
  return ledger.reduce((m, e) => Math.max(m, e.seq), -1) + 1;
}

const oneLine = (s: string) => s.replace(/\s+/g, ' ').trim();

export class HybridProposer implements Proposer {
  readonly name = 'hybrid';
  private readonly llm: LlmProposer;
  private readonly search = new SearchProposer();

  constructor(readonly settings: HybridSettings) {
    if (settings.mode !== 'alternate' && settings.mode !== 'llm') throw new Error(`hybrid proposer: mode must be "alternate" or "llm" (got ${String(settings.mode)})`);
    this.llm = new LlmProposer(settings);
  }

  async propose(ctx: ProposalContext): Promise<Proposal | null> {
    if (this.settings.mode === 'alternate') {
      const seq = ctx.seq ?? nextSeq(ctx.ledger);
      if (seq % 2 === 1) {
        const p = await this.search.propose(ctx);
        if (p) return { ...p, meta: searchChoiceMeta(p.meta) };
        // no knob left to turn (or none at all): this experiment goes to the llm
      }
      return this.llm.propose(ctx, { proposer: 'hybrid', meta: { choice: 'llm' } });
    }
    return this.llm.propose(ctx, this.withSearchState(ctx));
  }

  /** The extension that shows the llm the knob state and lets it take the search suggestion. */
  private withSearchState(ctx: ProposalContext): LlmExtension {
    const { text, suggestion } = describeSearchState(ctx);
    const instructions = suggestion
      ? `# Taking the search suggestion\n\nThe context shows the knob search's state and the change it would propose now. If that change is the best next experiment, answer instead with {"use_search": true, "hypothesis": "why this change, in one line", "cited_traces": [...]} in the \`\`\`json block: the search's edit is then used exactly as shown. Otherwise answer with your own edits as above.`
      : `# Knob search\n\nThe context shows the knob search's state; it has no change to suggest now, so answer with your own edits.`;
    return {
      proposer: 'hybrid',
      meta: { choice: 'llm' },
      context: [{ title: "Knob search (the search proposer's model of the knobs)", body: text }],
      instructions,
      interpret: (value): ExtensionAnswer | { error: string } | undefined => {
        if (typeof value !== 'object' || value === null || !('use_search' in value) || (value as { use_search: unknown }).use_search === false) return undefined;
        const parsed = UseSearchSchema.safeParse(value);
        if (!parsed.success) return { error: `the "use_search" answer does not match its format: ${describeIssues(parsed.error)}` };
        if (!suggestion) return { error: 'there is no search suggestion to take ("use_search" is not available now); answer with your own edits' };
        const why = oneLine(parsed.data.hypothesis ?? '');
        return {
          hypothesis: why ? `${suggestion.hypothesis} — ${why}` : suggestion.hypothesis,
          edits: suggestion.edits,
          cited_traces: parsed.data.cited_traces,
          ...(parsed.data.expected_effect !== undefined ? { expected_effect: parsed.data.expected_effect } : {}),
          meta: searchChoiceMeta(suggestion.meta),
        };
      },
    };
  }
}
