/**
 * Model providers: Anthropic Messages and OpenAI(-compatible) Chat Completions behind one
 * `Provider` interface (task-agent/types.ts), with one retry loop and one price table.
 *
 *   const provider = createProvider('anthropic', { prices: loadPrices(pricesFile) });
 *   const res = await provider.call(request, signal);   // res.usage, res.cost_usd, res.attempts
 */
import { UserError } from '../../base/errors.ts';
import type { Provider } from '../types.ts';
import { AnthropicProvider } from './anthropic.ts';
import type { ProviderOptions } from './common.ts';
import { OpenAIProvider } from './openai.ts';

export const PROVIDER_NAMES = ['anthropic', 'openai'] as const;
export type ProviderName = (typeof PROVIDER_NAMES)[number];

/**
 * A provider by name. Keys are read from `env` now, so a missing key is a UserError at creation,
 * before any task runs.
 */
export function createProvider(name: string, opts: ProviderOptions = {}): Provider {
  switch (name) {
    case 'anthropic':
      return new AnthropicProvider(opts);
    case 'openai':
      return new OpenAIProvider(opts);
    default:
      throw new UserError(`unknown provider: ${name} (expected one of: ${PROVIDER_NAMES.join(', ')})`);
  }
}

export { AnthropicProvider, ANTHROPIC_DEFAULT_BASE_URL, fromAnthropicMessage, toAnthropicBody } from './anthropic.ts';
export { OpenAIProvider, OPENAI_DEFAULT_BASE_URL, LOCAL_PLACEHOLDER_KEY, fromOpenAICompletion, toOpenAIBody, parseArguments, isOpenAIHost } from './openai.ts';
export { DEFAULT_RETRY, type ProviderOptions, type Env } from './common.ts';
export { ProviderError, providerFailure, type ProviderFailure, type ProviderFailureKind } from './errors.ts';
export { DEFAULT_PRICES, costOf, loadPrices, priceFor } from './prices.ts';
export {
  withRetry,
  backoffMs,
  retryAfterMs,
  isRetryable,
  describeError,
  defaultSleep,
  AttemptTimeoutError,
  RetryError,
  DEFAULT_MAX_RETRY_AFTER_MS,
  type AttemptRecord,
  type RetryOptions,
  type SleepFn,
} from './retry.ts';
