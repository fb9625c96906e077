import { UserError } from '../../base/errors.ts';
import { AttemptTimeoutError, RetryError, describeError, statusOf } from './retry.ts';

/**
 * A model call that failed for good, as one line:
 *   `anthropic claude-sonnet-4-5: HTTP 400 invalid_request_error: max_tokens: … (not retried)`
 *   `openai gpt-4.1: timed out after 30000 ms (gave up after 5 attempts)`
 * It is a UserError: a bad key, a bad model name or an unreachable server is fixed by the user,
 * and the CLI prints it without a stack trace.
 */
export class ProviderError extends UserError {
  constructor(
    message: string,
    readonly provider: 'anthropic' | 'openai',
    readonly model: string,
    /** HTTP status of the last attempt, when there was a response */
    readonly status: number | undefined,
    readonly attempts: number,
    /** the last error was retryable (the retries ran out) */
    readonly retryable: boolean,
    readonly cause: unknown,
  ) {
    super(message);
    this.name = 'ProviderError';
  }

  static from(err: RetryError, provider: 'anthropic' | 'openai', model: string): ProviderError {
    const what = describeError(err.lastError);
    const how = err.exhausted
      ? `gave up after ${err.attempts} attempt${err.attempts === 1 ? '' : 's'}`
      : err.attempts === 1
        ? 'not retried'
        : `not retryable, attempt ${err.attempts}`;
    return new ProviderError(`${provider} ${model}: ${what} (${how})`, provider, model, statusOf(err.lastError), err.attempts, err.exhausted, err.lastError);
  }

  /** `gave up after 3 attempts` / `not retried` */
  get how(): string {
    if (this.retryable) return `gave up after ${this.attempts} attempt${this.attempts === 1 ? '' : 's'}`;
    return this.attempts === 1 ? 'not retried' : `not retryable, attempt ${this.attempts}`;
  }
}

/**
 * Why a model call failed when the provider, not the candidate, is at fault:
 *  - connection: refused, reset, DNS, any network error, after the retries;
 *  - timeout: every attempt ran past timeout_ms;
 *  - auth: HTTP 401 or 403 (a wrong or unauthorized key: no retry helps, no task can succeed);
 *  - server: HTTP 5xx (529 overloaded included) after the retries;
 *  - rate_limit: HTTP 429 after the retries (or an exhausted quota).
 * Everything else (400, 404, 413, 422: a request the harness made; budgets; aborts) is not one.
 */
export type ProviderFailureKind = 'connection' | 'timeout' | 'auth' | 'server' | 'rate_limit';

export interface ProviderFailure {
  kind: ProviderFailureKind;
  /** one line naming the server, e.g. `connection refused to http://127.0.0.1:9/v1` */
  detail: string;
}

/** the first `code` in an error's cause chain (ECONNREFUSED, ENOTFOUND, …) */
function codeOf(err: unknown): string | undefined {
  let e: unknown = err;
  for (let i = 0; i < 6 && e; i++) {
    const c = (e as { code?: unknown }).code;
    if (typeof c === 'string' && /^E[A-Z_]+$|^UND_ERR/.test(c)) return c;
    e = (e as { cause?: unknown }).cause;
  }
  return undefined;
}

/** The provider failure behind `err`, or null when `err` is not one (see ProviderFailureKind). */
export function providerFailure(err: unknown, baseURL?: string): ProviderFailure | null {
  if (!(err instanceof ProviderError)) return null;
  const url = baseURL ?? `the ${err.provider} server`;
  const s = err.status;
  if (s === 401 || s === 403) return { kind: 'auth', detail: `${url} answered ${describeError(err.cause)}` };
  if (s !== undefined && s >= 500) return { kind: 'server', detail: `${url} answered ${describeError(err.cause)} (${err.how})` };
  if (s === 429) return { kind: 'rate_limit', detail: `${url} answered ${describeError(err.cause)} (${err.how})` };
  if (s !== undefined || !err.retryable) return null;
  const name = (err.cause as { name?: unknown } | null)?.name;
  if (err.cause instanceof AttemptTimeoutError) return { kind: 'timeout', detail: `no answer from ${url} within ${err.cause.timeoutMs} ms (${err.how})` };
  if (name === 'APIConnectionTimeoutError') return { kind: 'timeout', detail: `no answer from ${url} (${err.how})` };
  const code = codeOf(err.cause);
  if (code === 'ECONNREFUSED') return { kind: 'connection', detail: `connection refused to ${url}` };
  if (code === 'ECONNRESET' || code === 'EPIPE' || code === 'UND_ERR_SOCKET') return { kind: 'connection', detail: `connection reset by ${url}` };
  if (code === 'ENOTFOUND' || code === 'EAI_AGAIN') return { kind: 'connection', detail: `cannot resolve the host of ${url}` };
  return { kind: 'connection', detail: `cannot connect to ${url} (${describeError(err.cause)})` };
}
