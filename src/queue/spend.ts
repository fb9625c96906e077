/**
 * A run's token and dollar spend, counted once on the queue for every process of the run: the
 * coordinator (its proposer's model calls) and each worker evaluating a harness job. Each add()
 * of a shared SpendGuard goes to a Redis hash (`autoagent:spend:<run>`: tokens, dollars; HINCRBY
 * and HINCRBYFLOAT, so concurrent adds never lose one), and the totals Redis answers raise the
 * guard's own, so a worker's budget check sees what the others spent as of its last call.
 */
import type { Redis } from 'ioredis';
import type { SpendGuard } from '../../task-agent/evaluate.ts';
import { BLOB_TTL_S, SPEND_KEY } from './common.ts';

export interface SharedSpend {
  /** reads the run's totals from Redis into the guard */
  refresh(): Promise<void>;
  /** resolves when every add so far has reached Redis (or failed) */
  settled(): Promise<void>;
}

/**
 * Shares `guard` through Redis. `seed`: the coordinator starts the count at the guard's totals when
 * the run has none on the queue yet (HSETNX: a resumed run keeps the queue's, which also counts
 * what jobs lost with a dead coordinator spent).
 */
export async function shareSpend(r: Redis, run: string, guard: SpendGuard, o: { seed?: boolean } = {}): Promise<SharedSpend> {
  const key = `${SPEND_KEY}${run}`;
  if (o.seed) await r.multi().hsetnx(key, 'tokens', String(guard.tokens)).hsetnx(key, 'dollars', String(guard.dollars)).expire(key, BLOB_TTL_S).exec();
  const pending = new Set<Promise<unknown>>();
  const observe = (tokens: unknown, dollars: unknown) => guard.observe(Number(tokens ?? NaN), Number(dollars ?? NaN));
  const refresh = async () => {
    const [tokens, dollars] = await r.hmget(key, 'tokens', 'dollars');
    observe(tokens, dollars);
  };
  await refresh();
  // shared last: a call that failed above left nothing registered (a second try does not count twice)
  guard.share((tokens, dollars) => {
    const p = r.multi().hincrby(key, 'tokens', Math.round(tokens)).hincrbyfloat(key, 'dollars', dollars).expire(key, BLOB_TTL_S).exec()
      .then((res) => observe(res?.[0]?.[1], res?.[1]?.[1]))
      .catch(() => undefined) // refused by Redis (a BullMQ connection waits out an outage instead): this add is missing from the shared count; this process's own total still has it
      .finally(() => pending.delete(p));
    pending.add(p);
  });
  return { refresh, settled: async () => void (await Promise.all([...pending])) };
}
