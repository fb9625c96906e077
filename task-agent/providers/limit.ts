/**
 * One limit on concurrent model calls per provider endpoint, shared by everything in the process
 * that calls it: the parallel slots of a harness run each evaluate with `concurrency` workers, and
 * without this N slots would send N × concurrency calls at once. A call that ends in HTTP 429 (the
 * provider's retries spent) also pauses every other call to that endpoint for a while, so the slots
 * back off together instead of each hammering on.
 */
import type { ModelRequest, ModelResponse, Provider } from '../types.ts';
import { ProviderError } from './errors.ts';

/** pause after a call that ended rate-limited (doubled while they keep coming, up to the max) */
const COOLDOWN_MS = 2000;
const COOLDOWN_MAX_MS = 60_000;

class Limiter {
  active = 0;
  cooldownUntil = 0;
  cooldown = COOLDOWN_MS;
  private readonly waiting: Array<() => void> = [];

  constructor(public capacity: number) {}

  async acquire(signal?: AbortSignal): Promise<void> {
    for (;;) {
      if (signal?.aborted) throw signal.reason ?? new Error('aborted');
      const wait = this.cooldownUntil - Date.now();
      if (wait > 0) {
        await new Promise<void>((r) => setTimeout(r, Math.min(wait, 1000)));
        continue;
      }
      if (this.active < this.capacity) {
        this.active++;
        return;
      }
      // wait for a release; an abort leaves the queue at once (a wake it was handed goes on to the next)
      await new Promise<void>((resolve) => {
        const wake = () => {
          signal?.removeEventListener('abort', onAbort);
          resolve();
        };
        const onAbort = () => {
          const i = this.waiting.indexOf(wake);
          if (i >= 0) this.waiting.splice(i, 1);
          resolve();
        };
        this.waiting.push(wake);
        signal?.addEventListener('abort', onAbort, { once: true });
      });
    }
  }

  release(): void {
    this.active--;
    this.waiting.shift()?.();
  }

  rateLimited(): void {
    this.cooldownUntil = Math.max(this.cooldownUntil, Date.now() + this.cooldown);
    this.cooldown = Math.min(COOLDOWN_MAX_MS, this.cooldown * 2);
  }

  succeeded(): void {
    this.cooldown = COOLDOWN_MS;
  }
}

const limiters = new Map<string, Limiter>();

/** The process-wide limiter of an endpoint; its capacity is the largest any caller asked for. */
function limiterFor(key: string, capacity: number): Limiter {
  let l = limiters.get(key);
  if (!l) {
    l = new Limiter(capacity);
    limiters.set(key, l);
  }
  l.capacity = Math.max(1, capacity);
  return l;
}

/** `provider`, with its calls counted against the shared limit of its endpoint (`capacity` calls at once). */
export function sharedLimit(provider: Provider, capacity: number): Provider {
  const limiter = limiterFor(`${provider.name} ${provider.baseURL ?? ''}`, capacity);
  return {
    name: provider.name,
    ...(provider.baseURL !== undefined ? { baseURL: provider.baseURL } : {}),
    async call(req: ModelRequest, signal?: AbortSignal): Promise<ModelResponse> {
      await limiter.acquire(signal);
      try {
        const res = await provider.call(req, signal);
        limiter.succeeded();
        return res;
      } catch (e) {
        if (e instanceof ProviderError && e.status === 429) limiter.rateLimited();
        throw e;
      } finally {
        limiter.release();
      }
    },
  };
}

/** How many calls are running on an endpoint now (tests). */
export function activeCalls(provider: Pick<Provider, 'name' | 'baseURL'>): number {
  return limiters.get(`${provider.name} ${provider.baseURL ?? ''}`)?.active ?? 0;
}
