// The model-call limit shared by the parallel slots of a harness run (task-agent/providers/limit.ts):
// N wrappers of one endpoint never run more than its capacity at once; a call that ends rate-limited
// pauses the others; an aborted wait gives up without taking a place.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { sharedLimit, activeCalls } from '../../task-agent/providers/limit.ts';
import { ProviderError } from '../../task-agent/providers/errors.ts';
import type { ModelRequest, ModelResponse, Provider } from '../../task-agent/types.ts';

function fakeProvider(baseURL: string, behave: (n: number) => Promise<void>): Provider & { running: number; max: number; starts: number[] } {
  let n = 0;
  const p = {
    name: 'openai' as const, baseURL, running: 0, max: 0, starts: [] as number[],
    async call(_req: ModelRequest): Promise<ModelResponse> {
      const i = n++;
      p.starts.push(Date.now());
      p.running++;
      p.max = Math.max(p.max, p.running);
      try {
        await behave(i);
      } finally {
        p.running--;
      }
      return { content: [], stop_reason: 'end_turn', usage: { input_tokens: 1, output_tokens: 1 }, cost_usd: 0, model: 'm', raw: {}, raw_request: {}, latency_ms: 1, attempts: 1 } as unknown as ModelResponse;
    },
  };
  return p;
}
const req = { model: 'm', messages: [] } as unknown as ModelRequest;
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

test('three slots with 2 workers each on one endpoint of capacity 2 run at most 2 calls at once, and all finish', async () => {
  const inner = fakeProvider('http://127.0.0.1:1/limit-a', () => sleep(20));
  const slots = [sharedLimit(inner, 2), sharedLimit(inner, 2), sharedLimit(inner, 2)];
  await Promise.all(slots.flatMap((s) => [0, 1, 2, 3].map(() => s.call(req))));
  assert.equal(inner.starts.length, 12);
  assert.equal(inner.max, 2);
  assert.equal(activeCalls(inner), 0);
});

test('a call that ends in HTTP 429 pauses every other call to that endpoint for a while', async () => {
  const inner = fakeProvider('http://127.0.0.1:1/limit-b', async (i) => {
    if (i === 0) throw new ProviderError('rate limited', 'openai', 'm', 429, 3, true, null);
    await sleep(5);
  });
  const a = sharedLimit(inner, 4);
  const b = sharedLimit(inner, 4);
  await assert.rejects(a.call(req), /rate limited/);
  const t0 = Date.now();
  await Promise.all([b.call(req), a.call(req)]);
  assert.ok(inner.starts[1]! - t0 >= 1500, `the next call waited ${inner.starts[1]! - t0} ms`);
  // a success resets the pause: the next call goes at once
  const t1 = Date.now();
  await b.call(req);
  assert.ok(inner.starts[3]! - t1 < 500);
});

test('a wait that is aborted gives up without taking a place', async () => {
  const inner = fakeProvider('http://127.0.0.1:1/limit-c', () => sleep(200));
  const s = sharedLimit(inner, 1);
  const first = s.call(req);
  const ac = new AbortController();
  const second = s.call(req, ac.signal);
  const third = s.call(req);
  const t0 = Date.now();
  setTimeout(() => ac.abort(new Error('stopped')), 20);
  await assert.rejects(second, /stopped/);
  assert.ok(Date.now() - t0 < 150, 'the aborted wait ended at once, not when a place came free');
  await first;
  await third; // the call queued behind the aborted one still gets its place
  assert.equal(inner.starts.length, 2);
  assert.equal(activeCalls(inner), 0);
});
