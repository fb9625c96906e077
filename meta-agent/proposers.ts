import type { Proposer } from './types.ts';
import { SearchProposer, RandomProposer } from './search/index.ts';
import { LlmProposer } from './llm.ts';
import { HybridProposer } from './hybrid.ts';
import { CommandProposer } from './command.ts';
import { OptunaProposer, checkOptuna, type OptunaSampler } from './optuna.ts';

/** The study fields a proposer is made from (src/study.ts ProposerSchema). */
export interface ProposerSettings {
  type: 'search' | 'random' | 'llm' | 'command' | 'hybrid' | 'optuna';
  seed?: number;
  /** optuna: the sampler (default tpe) */
  sampler?: OptunaSampler;
  provider: 'anthropic' | 'openai';
  model?: string;
  max_tokens: number;
  max_turns: number;
  context_tokens: number;
  temperature?: number;
  thinking_budget?: number;
  mode: 'alternate' | 'llm';
  command?: string;
  timeout_seconds: number;
  env: Record<string, string>;
}

/** proposers that turn knobs: with no knobs they have nothing to do, and a run refuses to start */
export const KNOB_PROPOSERS: ReadonlySet<string> = new Set(['search', 'random', 'hybrid', 'optuna']);
/** proposers whose proposals are recorded as traces (a model's calls, a coding agent's session), read back as the run's history */
export const TRACED_PROPOSERS: ReadonlySet<string> = new Set(['llm', 'command', 'hybrid']);

/** the model an llm proposer uses when the study names none */
export const DEFAULT_META_MODEL = { anthropic: 'claude-sonnet-4-6', openai: 'gpt-5' } as const;

/**
 * The proposer a study asks for. `locked` are the study's locked globs made repo-relative: the
 * command proposer keeps edits to them so that the loop rejects the proposal.
 */
export function makeProposer(p: ProposerSettings, locked: string[] = []): Proposer {
  const llm = {
    model: p.model ?? DEFAULT_META_MODEL[p.provider], max_tokens: p.max_tokens, max_turns: p.max_turns, context_tokens: p.context_tokens,
    temperature: p.temperature, thinking_budget: p.thinking_budget,
  };
  switch (p.type) {
    case 'search':
      return new SearchProposer();
    case 'random':
      return new RandomProposer();
    case 'llm':
      return new LlmProposer(llm);
    case 'hybrid':
      return new HybridProposer({ ...llm, mode: p.mode });
    case 'command':
      return new CommandProposer({ command: p.command!, timeout_seconds: p.timeout_seconds, context_tokens: p.context_tokens, env: p.env, locked });
    case 'optuna':
      return new OptunaProposer({ sampler: p.sampler ?? 'tpe', seed: p.seed ?? 0 });
  }
}

/**
 * What a proposer needs from this machine, checked before a run starts or resumes (so that it
 * refuses to start rather than fail at experiment 1): one-line UserError / UsageError.
 */
export function checkProposer(p: Pick<ProposerSettings, 'type' | 'sampler'>, env: NodeJS.ProcessEnv = process.env): void {
  if (p.type === 'optuna') checkOptuna(p.sampler ?? 'tpe', env);
}
