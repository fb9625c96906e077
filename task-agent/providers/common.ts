/** What both providers share: options, defaults, and the call wrapper (retries, timing, errors). */
import type { Block, ModelRequest, ModelResponse, PriceTable, RetryPolicy, Usage } from '../types.ts';
import { costOf, priceFor } from './prices.ts';
import { ProviderError } from './errors.ts';
import { RetryError, withRetry, type AttemptRecord, type SleepFn } from './retry.ts';

export type Env = Record<string, string | undefined>;

export interface ProviderOptions {
  /** where keys and base URLs are read (default process.env) */
  env?: Env;
  /** default DEFAULT_PRICES; use loadPrices(path) to override */
  prices?: PriceTable;
  /** merged over DEFAULT_RETRY */
  retry?: Partial<RetryPolicy>;
  /** cap on a server-advertised retry-after (default 60 000 ms) */
  maxRetryAfterMs?: number;
  /** injected for tests */
  sleep?: SleepFn;
  /** injected for tests; [0, 1) */
  random?: () => number;
  /** called after every attempt (ok or not), e.g. to record it in the trace */
  onAttempt?: (record: AttemptRecord & { provider: 'anthropic' | 'openai'; model: string }) => void;
}

export const DEFAULT_RETRY: RetryPolicy = {
  max_retries: 4,
  base_delay_ms: 1000,
  max_delay_ms: 30_000,
  timeout_ms: 300_000,
};

export function resolveRetry(p?: Partial<RetryPolicy>): RetryPolicy {
  const r = { ...DEFAULT_RETRY, ...p };
  for (const [k, v] of Object.entries(r)) {
    if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) throw new Error(`retry policy: ${k} must be a non-negative number (got ${String(v)})`);
  }
  if (r.timeout_ms <= 0) throw new Error('retry policy: timeout_ms must be positive');
  return r;
}

/** Non-empty value of an env variable, or undefined. */
export function envValue(env: Env, name: string): string | undefined {
  const v = env[name]?.trim();
  return v ? v : undefined;
}

/**
 * Runs one model call through the retry loop; failures become one ProviderError.
 * `latency_ms` is the whole call, retries and waits included (per-attempt times go to onAttempt).
 */
export async function callWithRetry<T>(
  provider: 'anthropic' | 'openai',
  model: string,
  opts: ProviderOptions,
  policy: RetryPolicy,
  signal: AbortSignal | undefined,
  fn: (signal: AbortSignal) => Promise<T>,
): Promise<{ value: T; attempts: number; latency_ms: number }> {
  const started = performance.now();
  try {
    const { value, attempts } = await withRetry(fn, {
      policy,
      signal,
      sleep: opts.sleep,
      random: opts.random,
      maxRetryAfterMs: opts.maxRetryAfterMs,
      onAttempt: opts.onAttempt ? (r) => opts.onAttempt!({ ...r, provider, model }) : undefined,
    });
    return { value, attempts, latency_ms: Math.round(performance.now() - started) };
  } catch (err) {
    if (err instanceof RetryError) throw ProviderError.from(err, provider, model);
    throw err; // an abort: the caller's reason, unchanged
  }
}

/**
 * The provider-neutral response both providers return: priced by the requested model when the
 * table knows it, else by the model the server says it used.
 */
export function modelResponse(
  req: ModelRequest,
  prices: PriceTable,
  mapped: { content: Block[]; stop_reason: ModelResponse['stop_reason']; usage: Usage },
  served: { model: string | undefined; raw: unknown; raw_request: unknown; latency_ms: number; attempts: number },
): ModelResponse {
  const model = served.model || req.model;
  const priced = priceFor(req.model, prices) ? req.model : model;
  return {
    content: mapped.content,
    stop_reason: mapped.stop_reason,
    usage: mapped.usage,
    cost_usd: costOf(priced, mapped.usage, prices),
    model,
    raw: served.raw,
    raw_request: served.raw_request,
    latency_ms: served.latency_ms,
    attempts: served.attempts,
  };
}
