import { UserError } from '../../src/errors.ts';
import { RetryError, describeError, statusOf } from './retry.ts';

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
}
