/**
 * The one retry loop of the model providers. The SDKs run with `maxRetries: 0`; every attempt
 * goes through here so it is counted (and reported through `onAttempt`).
 *
 * Retried: HTTP 408, 409, 429 (not OpenAI's `insufficient_quota`), every 5xx (529 = Anthropic overloaded included), connection
 * errors, and attempts that exceed `timeout_ms`. Never retried: other 4xx (400, 401, 403, 404,
 * 413, 422 …). A server's `x-should-retry: true|false` header overrides the status rule, as the
 * SDKs do.
 *
 * Delay before retry k (k = 1, 2, …): the server's `retry-after-ms` or `retry-after` (seconds or
 * an HTTP date) when present, capped at `maxRetryAfterMs`; otherwise exponential backoff with
 * full jitter: uniform in [base_delay_ms, min(max_delay_ms, base_delay_ms · 2^k)].
 *
 * An AbortSignal stops everything at once: the attempt in flight and the wait between attempts.
 */
import type { RetryPolicy } from '../types.ts';

export type SleepFn = (ms: number, signal?: AbortSignal) => Promise<void>;

export interface AttemptRecord {
  /** 1-based */
  attempt: number;
  ok: boolean;
  latency_ms: number;
  /** HTTP status of a failed attempt, when there was a response */
  status?: number;
  /** one line */
  error?: string;
  retryable?: boolean;
  /** the wait before the next attempt, when there is one */
  delay_ms?: number;
}

export interface RetryOptions {
  policy: RetryPolicy;
  signal?: AbortSignal;
  /** injected for tests; the default honours the signal */
  sleep?: SleepFn;
  /** injected for tests; [0, 1) */
  random?: () => number;
  /** cap on a server-advertised delay (default 60 000 ms) */
  maxRetryAfterMs?: number;
  /** clock for HTTP-date retry-after (default Date.now) */
  now?: () => number;
  onAttempt?: (record: AttemptRecord) => void;
}

export const DEFAULT_MAX_RETRY_AFTER_MS = 60_000;

/** An attempt that ran past `timeout_ms`. */
export class AttemptTimeoutError extends Error {
  constructor(readonly timeoutMs: number) {
    super(`timed out after ${timeoutMs} ms`);
    this.name = 'AttemptTimeoutError';
  }
}

/** The call failed: `lastError` is the last attempt's error. */
export class RetryError extends Error {
  constructor(
    readonly lastError: unknown,
    readonly attempts: number,
    /** true when the last error was retryable and the retries ran out */
    readonly exhausted: boolean,
  ) {
    super(describeError(lastError));
    this.name = 'RetryError';
  }
}

export const defaultSleep: SleepFn = (ms, signal) =>
  new Promise<void>((resolve, reject) => {
    if (signal?.aborted) return reject(abortReason(signal));
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(abortReason(signal!));
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });

export function abortReason(signal: AbortSignal): unknown {
  return signal.reason ?? new DOMException('This operation was aborted', 'AbortError');
}

/** Runs `fn` until it succeeds, fails for good, or retries run out. */
export async function withRetry<T>(fn: (signal: AbortSignal, attempt: number) => Promise<T>, opts: RetryOptions): Promise<{ value: T; attempts: number }> {
  const { policy, signal } = opts;
  const sleep = opts.sleep ?? defaultSleep;
  const random = opts.random ?? Math.random;
  for (let attempt = 1; ; attempt++) {
    if (signal?.aborted) throw abortReason(signal);
    const started = performance.now();
    try {
      const value = await runAttempt(fn, attempt, policy.timeout_ms, signal);
      opts.onAttempt?.({ attempt, ok: true, latency_ms: Math.round(performance.now() - started) });
      return { value, attempts: attempt };
    } catch (err) {
      if (signal?.aborted) throw abortReason(signal);
      const latency_ms = Math.round(performance.now() - started);
      const status = statusOf(err);
      const retryable = isRetryable(err);
      const more = retryable && attempt <= policy.max_retries;
      const delay = more ? retryDelay(err, attempt, opts, random) : undefined;
      opts.onAttempt?.({
        attempt,
        ok: false,
        latency_ms,
        ...(status !== undefined ? { status } : {}),
        error: describeError(err),
        retryable,
        ...(delay !== undefined ? { delay_ms: delay } : {}),
      });
      if (!more) throw new RetryError(err, attempt, retryable);
      await sleep(delay!, signal);
    }
  }
}

/** One attempt with its own deadline, linked to the caller's signal. */
async function runAttempt<T>(fn: (signal: AbortSignal, attempt: number) => Promise<T>, attempt: number, timeoutMs: number, outer?: AbortSignal): Promise<T> {
  const ac = new AbortController();
  let timedOut = false;
  let rejectRace!: (e: unknown) => void;
  const race = new Promise<never>((_, reject) => (rejectRace = reject));
  const timer = setTimeout(() => {
    timedOut = true;
    const e = new AttemptTimeoutError(timeoutMs);
    ac.abort(e);
    rejectRace(e);
  }, timeoutMs);
  const onAbort = (): void => {
    ac.abort(abortReason(outer!));
    rejectRace(abortReason(outer!));
  };
  outer?.addEventListener('abort', onAbort, { once: true });
  try {
    // The race makes the deadline hold even if `fn` ignores its signal.
    return await Promise.race([fn(ac.signal, attempt), race]);
  } catch (err) {
    if (timedOut) throw new AttemptTimeoutError(timeoutMs);
    throw err;
  } finally {
    clearTimeout(timer);
    outer?.removeEventListener('abort', onAbort);
  }
}

// ---------------------------------------------------------------------------------------------
// classification (works for both SDKs' error classes, and plain fetch errors)

export function statusOf(err: unknown): number | undefined {
  const s = (err as { status?: unknown } | null)?.status;
  return typeof s === 'number' ? s : undefined;
}

function headerOf(err: unknown, name: string): string | undefined {
  const h = (err as { headers?: unknown } | null)?.headers;
  if (!h) return undefined;
  if (typeof (h as Headers).get === 'function') return (h as Headers).get(name) ?? undefined;
  const v = (h as Record<string, unknown>)[name];
  return typeof v === 'string' ? v : undefined;
}

/** The error's class: its `name`, or its constructor's name when `name` is the generic 'Error' (the SDKs' errors). */
function kindOf(err: unknown): string {
  const e = err as { name?: unknown; constructor?: { name?: unknown } } | null;
  const name = typeof e?.name === 'string' ? e.name : '';
  if (name && name !== 'Error') return name;
  const ctor = e?.constructor?.name;
  return typeof ctor === 'string' && ctor ? ctor : name;
}

export function isRetryable(err: unknown): boolean {
  if (err instanceof AttemptTimeoutError) return true;
  const status = statusOf(err);
  if (status !== undefined) {
    const should = headerOf(err, 'x-should-retry');
    if (should === 'true') return true;
    if (should === 'false') return false;
    // OpenAI answers an exhausted quota with 429 too: waiting does not help.
    if (status === 429 && /insufficient_quota/.test(JSON.stringify((err as { error?: unknown }).error ?? ''))) return false;
    return status === 408 || status === 409 || status === 429 || status >= 500;
  }
  const name = kindOf(err);
  if (name === 'APIUserAbortError' || name === 'AbortError') return false;
  // SDK connection errors (APIConnectionError, APIConnectionTimeoutError), fetch's TypeError,
  // and socket errors.
  if (name === 'APIConnectionError' || name === 'APIConnectionTimeoutError') return true;
  if (err instanceof TypeError && /fetch failed|terminated|network/i.test(err.message)) return true;
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && /^(ECONNRESET|ECONNREFUSED|EPIPE|ETIMEDOUT|EAI_AGAIN|UND_ERR_)/.test(code);
}

/** The server's advertised delay in ms (`retry-after-ms`, then `retry-after`), or undefined. */
export function retryAfterMs(headers: Headers | Record<string, string> | undefined, now: number = Date.now()): number | undefined {
  if (!headers) return undefined;
  const get = (n: string): string | undefined =>
    typeof (headers as Headers).get === 'function' ? ((headers as Headers).get(n) ?? undefined) : (headers as Record<string, string>)[n];
  const ms = get('retry-after-ms');
  if (ms !== undefined && ms.trim() !== '' && Number.isFinite(Number(ms)) && Number(ms) >= 0) return Number(ms);
  const ra = get('retry-after')?.trim();
  if (!ra) return undefined;
  if (/^\d+(\.\d+)?$/.test(ra)) return Number(ra) * 1000;
  const date = Date.parse(ra);
  if (Number.isNaN(date)) return undefined;
  return Math.max(0, date - now);
}

/** Exponential backoff with full jitter for retry k (1-based). */
export function backoffMs(k: number, policy: Pick<RetryPolicy, 'base_delay_ms' | 'max_delay_ms'>, random: () => number): number {
  const base = Math.min(policy.base_delay_ms, policy.max_delay_ms);
  const ceiling = Math.min(policy.max_delay_ms, policy.base_delay_ms * 2 ** k);
  return Math.round(base + random() * Math.max(0, ceiling - base));
}

function retryDelay(err: unknown, k: number, opts: RetryOptions, random: () => number): number {
  const h = (err as { headers?: unknown } | null)?.headers as Headers | Record<string, string> | undefined;
  const advertised = retryAfterMs(h, (opts.now ?? Date.now)());
  if (advertised !== undefined) return Math.min(advertised, opts.maxRetryAfterMs ?? DEFAULT_MAX_RETRY_AFTER_MS);
  return backoffMs(k, opts.policy, random);
}

// ---------------------------------------------------------------------------------------------

function oneLine(s: string, max = 400): string {
  const t = s.replace(/\s+/g, ' ').trim();
  return t.length > max ? `${t.slice(0, max - 1)}…` : t;
}

/**
 * One line for any error of an attempt: `HTTP 400 invalid_request_error: <server message>`,
 * `timed out after 500 ms`, `connection error (ECONNREFUSED)`.
 */
export function describeError(err: unknown): string {
  if (err instanceof RetryError) return err.message;
  if (err instanceof AttemptTimeoutError) return err.message;
  const status = statusOf(err);
  const e = err as { error?: unknown; message?: unknown; name?: unknown; cause?: unknown } | null;
  if (status !== undefined) {
    // Anthropic: error = {type:'error', error:{type, message}}; OpenAI: error = {message, type, code}.
    const body = e?.error as Record<string, unknown> | string | undefined;
    const inner = (typeof body === 'object' && body && typeof body.error === 'object' && body.error ? body.error : body) as
      | Record<string, unknown>
      | string
      | undefined;
    let type: string | undefined;
    let message: string | undefined;
    if (typeof inner === 'string') message = inner;
    else if (inner) {
      type = typeof inner.type === 'string' ? inner.type : typeof inner.code === 'string' ? inner.code : undefined;
      message = typeof inner.message === 'string' ? inner.message : JSON.stringify(inner);
    }
    if (!message) message = typeof e?.message === 'string' ? e.message.replace(/^\d{3}\s*/, '') : 'no body';
    return oneLine(`HTTP ${status}${type ? ` ${type}` : ''}: ${message}`);
  }
  const name = kindOf(err);
  if (name === 'APIConnectionTimeoutError') return 'timed out (SDK)';
  if (name === 'APIConnectionError' || err instanceof TypeError) {
    let cause: unknown = e?.cause;
    let detail = '';
    for (let i = 0; i < 4 && cause; i++) {
      const c = cause as { code?: unknown; message?: unknown; cause?: unknown };
      if (typeof c.code === 'string') {
        detail = c.code;
        break;
      }
      if (typeof c.message === 'string' && c.message) detail = c.message;
      cause = c.cause;
    }
    return oneLine(`connection error (${detail || (typeof e?.message === 'string' ? e.message : 'unknown')})`);
  }
  if (err instanceof Error) return oneLine(`${err.name !== 'Error' ? `${err.name}: ` : ''}${err.message}`);
  return oneLine(String(err));
}
