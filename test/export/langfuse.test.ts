/**
 * Export to Langfuse against a local ingestion server (127.0.0.1) that answers like Langfuse's
 * `POST /api/public/ingestion` (207 multi-status with successes and errors), records every batch,
 * and can be told to answer 429 first or to reject the typed observations of newer servers.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { exportToLangfuse, langfuseOptionsFromEnv, langfuseEvents, traceEvents, type IngestionEvent } from '../../src/export/langfuse.ts';
import { UserError } from '../../src/errors.ts';
import { getTrace, buildSpanTree, type SpanRecord } from '../../traces/index.ts';
import { makeHarnessRun, TASKS } from '../report/fixtures.ts';

interface Received {
  at: number;
  path: string;
  headers: IncomingHttpHeaders;
  batch: IngestionEvent[];
  status: number;
}

interface MockLangfuse {
  host: string;
  requests: Received[];
  close(): Promise<void>;
}

/** answer(i, batch) decides request i: a status (429/500/401: an error response) or per-event errors for a 207 */
async function mockLangfuse(answer: (i: number, batch: IngestionEvent[]) => { status?: number; retryAfter?: string; reject?: (e: IngestionEvent) => string | null }): Promise<MockLangfuse> {
  const requests: Received[] = [];
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}') as { batch?: IngestionEvent[] };
      const batch = body.batch ?? [];
      const a = answer(requests.length, batch);
      const status = req.method !== 'POST' || req.url !== '/api/public/ingestion' ? 404 : a.status ?? 207;
      requests.push({ at: Date.now(), path: req.url ?? '', headers: req.headers, batch, status });
      if (status !== 207) {
        res.writeHead(status, { 'content-type': 'application/json', ...(a.retryAfter ? { 'retry-after': a.retryAfter } : {}) });
        res.end(JSON.stringify({ message: status === 429 ? 'rate limit exceeded' : status === 401 ? 'Invalid credentials' : 'internal error' }));
        return;
      }
      const successes: Array<{ id: string; status: number }> = [];
      const errors: Array<{ id: string; status: number; message: string; error: string }> = [];
      for (const e of batch) {
        const why = a.reject?.(e) ?? null;
        if (why) errors.push({ id: e.id, status: 400, message: 'Invalid request data', error: why });
        else successes.push({ id: e.id, status: 201 });
      }
      res.writeHead(207, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ successes, errors }));
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  return {
    host: `http://127.0.0.1:${port}`,
    requests,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}

const servers: MockLangfuse[] = [];
after(async () => {
  for (const s of servers) await s.close();
});

const KEYS = { publicKey: 'pk-lf-test', secretKey: 'sk-lf-secret' };

/** the accepted events, in order, without the ones the server rejected */
function accepted(m: MockLangfuse, rejected = new Set<string>()): IngestionEvent[] {
  return m.requests.filter((r) => r.status === 207).flatMap((r) => r.batch).filter((e) => !rejected.has(e.id));
}

test('a harness run exports as one Langfuse trace per task run, with nested observations, generations and scores', async () => {
  const fx = makeHarnessRun();
  const lf = await mockLangfuse((i) => (i === 0 ? { status: 429, retryAfter: '1' } : {}));
  servers.push(lf);
  try {
    const started = Date.now();
    const progress: Array<[number, number]> = [];
    const res = await exportToLangfuse(fx.db, fx.runId, { host: lf.host + '/', ...KEYS, batchSize: 40, onProgress: (a, b) => void progress.push([a, b]) });
    assert.deepEqual(progress[progress.length - 1], [fx.traces.length, fx.traces.length]);
    assert.equal(progress.length, lf.requests.length - 1, 'one progress call per accepted request');
    // the retry: the first request got 429 with retry-after 1, the same batch was sent again about a second later
    assert.equal(lf.requests[0]!.status, 429);
    assert.deepEqual(lf.requests[1]!.batch.map((e) => e.id), lf.requests[0]!.batch.map((e) => e.id), 'the same batch (same event ids) again');
    assert.ok(lf.requests[1]!.at - lf.requests[0]!.at >= 900, `retry-after honoured (${lf.requests[1]!.at - lf.requests[0]!.at} ms)`);
    assert.ok(Date.now() - started < 10_000);
    // every request: the ingestion path, basic auth with the keys, at most batchSize events
    for (const r of lf.requests) {
      assert.equal(r.path, '/api/public/ingestion');
      assert.equal(r.headers.authorization, `Basic ${Buffer.from('pk-lf-test:sk-lf-secret').toString('base64')}`);
      assert.equal(r.headers['content-type'], 'application/json');
      assert.ok(r.batch.length >= 1 && r.batch.length <= 40, String(r.batch.length));
    }
    const events = accepted(lf);
    const nTraces = fx.traces.length;
    assert.equal(new Set(events.map((e) => e.id)).size, events.length, 'envelope ids are unique');
    for (const e of events) assert.ok(!Number.isNaN(Date.parse(e.timestamp)), e.timestamp);

    // one trace per task run: our trace id, the run as session, the experiment's facts as metadata
    const traces = events.filter((e) => e.type === 'trace-create');
    assert.equal(traces.length, nTraces);
    assert.deepEqual(traces.map((t) => t.body.id).sort(), fx.traces.map((t) => t.id).sort());
    const decisions: Record<number, string> = { [-1]: 'finalization', 0: 'baseline', 1: 'kept', 2: 'discarded', 3: 'kept' };
    for (const t of traces) {
      const ours = fx.traces.find((x) => x.id === t.body.id)!;
      assert.equal(t.body.sessionId, fx.runId);
      assert.equal(t.body.name, `tooluse/${ours.task}`);
      assert.deepEqual(
        (({ experiment_seq, decision, benchmark, split, repeat }) => ({ experiment_seq, decision, benchmark, split, repeat }))(t.body.metadata as Record<string, unknown>),
        { experiment_seq: ours.seq, decision: decisions[ours.seq], benchmark: 'tooluse', split: ours.split, repeat: ours.repeat },
      );
      assert.equal(t.body.timestamp, new Date(getTrace(fx.db, ours.id)!.trace.started_at).toISOString());
    }
    assert.deepEqual(traces.find((t) => t.body.id === fx.traces.find((x) => x.seq === -1)!.id)!.body.tags, ['final', 'finalization', 'tooluse', 'test']);

    // observations follow the span tree of each trace
    const one = fx.traces.find((t) => t.seq === 1 && t.task === TASKS[3] && t.repeat === 1)!;
    const detail = getTrace(fx.db, one.id)!;
    const mine = events.filter((e) => e.type !== 'trace-create' && e.body.traceId === one.id);
    const obs = mine.filter((e) => e.type !== 'score-create');
    assert.equal(obs.length, detail.spans.length, 'one observation per span');
    const byId = new Map(obs.map((e) => [e.body.id as string, e]));
    for (const s of detail.spans) {
      const o = byId.get(s.id);
      assert.ok(o, `span ${s.kind} ${s.name} exported under its own id`);
      assert.equal(o.body.parentObservationId ?? null, s.parent_id, `${s.name}: parent`);
      assert.equal(o.body.startTime, new Date(s.started_at).toISOString());
      assert.equal(o.body.endTime, new Date(s.ended_at).toISOString());
    }
    const turn1 = detail.spans.find((s) => s.name === 'turn 1')!;
    const tool = obs.find((e) => e.type === 'tool-create')!;
    assert.equal(tool.body.name, 'tool:lookup');
    assert.equal(tool.body.parentObservationId, turn1.id, 'the tool call is nested under its turn');
    assert.equal(tool.body.level, 'ERROR', 'the failed tool call is an error');
    assert.equal(tool.body.statusMessage, 'ENOENT data.txt');
    assert.equal(byId.get(turn1.id)!.type, 'span-create');
    assert.equal(byId.get(detail.spans.find((s) => s.kind === 'agent')!.id)!.type, 'agent-create');
    const sub = obs.find((e) => e.body.name === 'summarise' && e.type === 'agent-create')!;
    assert.equal(sub.body.parentObservationId, tool.body.id, 'the sub-agent is nested under the tool that called it');

    // model calls are generations with model, parameters, messages, usage (cache tokens included) and cost
    const gens = obs.filter((e) => e.type === 'generation-create');
    assert.equal(gens.length, detail.spans.filter((s) => s.kind === 'model').length);
    const call2 = gens.find((g) => g.body.name === 'model call 2')!;
    const span2 = detail.spans.find((s) => s.name === 'model call 2')!;
    assert.equal(call2.body.parentObservationId, detail.spans.find((s) => s.name === 'turn 2')!.id);
    assert.equal(call2.body.model, 'gpt-4.1-mini-2025-04-14');
    assert.deepEqual(call2.body.modelParameters, { temperature: 0.2, max_tokens: 512 });
    assert.deepEqual(call2.body.usageDetails, { input: 420 - 256, input_cached_tokens: 256, input_cache_creation: 0, output: 12, total: 432 });
    assert.deepEqual(call2.body.costDetails, { total: span2.cost_usd });
    const input = call2.body.input as Array<{ role: string }>;
    assert.deepEqual(input.map((m) => m.role), ['system', 'user', 'assistant', 'user']);
    assert.deepEqual(call2.body.output, { role: 'assistant', content: [{ type: 'text', text: '#### 0' }] });

    // one score per task run: the run's metric, the task's score, on the scoring observation, with the scorer's feedback
    const scores = events.filter((e) => e.type === 'score-create');
    assert.equal(scores.length, nTraces);
    for (const s of scores) {
      const ours = fx.traces.find((x) => x.id === s.body.traceId)!;
      assert.equal(s.body.name, 'score');
      assert.equal(s.body.value, ours.score);
      assert.equal(s.body.dataType, 'NUMERIC');
      assert.equal(s.body.comment, ours.score === 1 ? 'correct' : 'expected 7');
    }
    const myScore = scores.find((s) => s.body.traceId === one.id)!;
    assert.equal(myScore.body.observationId, detail.spans.find((s) => s.kind === 'scoring')!.id);

    // a trace is sent before its observations and score
    const order = events.map((e) => (e.type === 'trace-create' ? e.body.id : e.body.traceId));
    for (const t of fx.traces) assert.equal(events[order.indexOf(t.id)]!.type, 'trace-create');

    assert.deepEqual(res, { traces: nTraces, observations: events.length - 2 * nTraces, scores: nTraces });
    assert.equal(res.observations, nTraces * 9);
  } finally {
    fx.db.close();
  }
});

test('an older server without agent/tool observation types gets them again as plain spans', async () => {
  const fx = makeHarnessRun();
  const lf = await mockLangfuse(() => ({
    reject: (e) => (e.type === 'tool-create' || e.type === 'agent-create' ? `Invalid discriminator value. Expected 'trace-create' | ... received '${e.type}'` : null),
  }));
  servers.push(lf);
  try {
    const res = await exportToLangfuse(fx.db, fx.runId, { host: lf.host, ...KEYS, batchSize: 25 });
    const rejected = new Set(lf.requests.flatMap((r) => r.batch).filter((e) => e.type === 'tool-create' || e.type === 'agent-create').map((e) => e.id));
    assert.ok(rejected.size > 0 && rejected.size < 3 * 25, `only the first batch carried typed observations (${rejected.size})`);
    const ok = accepted(lf, rejected);
    // every span arrived exactly once, typed ones as spans, with their names and parents
    const obsIds = ok.filter((e) => !['trace-create', 'score-create'].includes(e.type)).map((e) => e.body.id as string);
    assert.equal(new Set(obsIds).size, obsIds.length, 'no observation twice');
    assert.equal(obsIds.length, fx.traces.length * 9);
    const tools = ok.filter((e) => e.body.name === 'tool:lookup');
    assert.equal(tools.length, fx.traces.length);
    assert.ok(tools.every((e) => e.type === 'span-create' && typeof e.body.parentObservationId === 'string'));
    assert.deepEqual(res, { traces: fx.traces.length, observations: fx.traces.length * 9, scores: fx.traces.length });
  } finally {
    fx.db.close();
  }
});

test('missing keys, refused keys and a server that keeps failing end in one line', async () => {
  assert.throws(() => langfuseOptionsFromEnv({}), (e: Error) => e instanceof UserError && /^LANGFUSE_PUBLIC_KEY is not set/.test(e.message));
  assert.throws(() => langfuseOptionsFromEnv({ LANGFUSE_PUBLIC_KEY: 'pk' }), (e: Error) => e instanceof UserError && /^LANGFUSE_SECRET_KEY is not set/.test(e.message));
  assert.deepEqual(langfuseOptionsFromEnv({ LANGFUSE_PUBLIC_KEY: 'pk', LANGFUSE_SECRET_KEY: 'sk', LANGFUSE_BASE_URL: 'http://127.0.0.1:9' }), { host: 'http://127.0.0.1:9', publicKey: 'pk', secretKey: 'sk' });
  assert.equal(langfuseOptionsFromEnv({ LANGFUSE_PUBLIC_KEY: 'pk', LANGFUSE_SECRET_KEY: 'sk' }).host, 'https://cloud.langfuse.com');
  const fx = makeHarnessRun();
  try {
    await assert.rejects(exportToLangfuse(fx.db, fx.runId, { host: 'http://127.0.0.1:9', publicKey: '', secretKey: 'sk' }), /LANGFUSE_PUBLIC_KEY is not set/);
    await assert.rejects(exportToLangfuse(fx.db, fx.runId, { host: 'not a url', ...KEYS }), /LANGFUSE_HOST 'not a url' is not a URL/);
    const refusing = await mockLangfuse(() => ({ status: 401 }));
    servers.push(refusing);
    await assert.rejects(exportToLangfuse(fx.db, fx.runId, { host: refusing.host, ...KEYS }), (e: Error) => {
      assert.ok(e instanceof UserError);
      assert.match(e.message, /refused the keys \(401\): check LANGFUSE_PUBLIC_KEY and LANGFUSE_SECRET_KEY/);
      assert.ok(!e.message.includes('\n'));
      return true;
    });
    assert.equal(refusing.requests.length, 1, '401 is not retried');
    const failing = await mockLangfuse(() => ({ status: 503 }));
    servers.push(failing);
    await assert.rejects(exportToLangfuse(fx.db, fx.runId, { host: failing.host, ...KEYS, maxRetries: 2, backoffMs: 5 }), /HTTP 503 .*after 3 attempts/);
    assert.equal(failing.requests.length, 3);
    // a per-event error that is not about observation types is reported with the event
    const picky = await mockLangfuse(() => ({ reject: (e) => (e.type === 'score-create' ? 'value must be a number' : null) }));
    servers.push(picky);
    await assert.rejects(exportToLangfuse(fx.db, fx.runId, { host: picky.host, ...KEYS }), /Langfuse rejected \d+ of \d+ events \(first: score-create \S+: 400 Invalid request data\)/);
    await assert.rejects(exportToLangfuse(fx.db, 'nope', { host: picky.host, ...KEYS }), /no run nope/);
  } finally {
    fx.db.close();
  }
});

test('events are built from the store alone: ids are stable across exports, so a re-export updates the same objects', () => {
  const fx = makeHarnessRun();
  try {
    const a = langfuseEvents(fx.db, fx.runId);
    const b = langfuseEvents(fx.db, fx.runId);
    assert.deepEqual(a.map((e) => [e.type, e.body.id]), b.map((e) => [e.type, e.body.id]));
    assert.ok(a.every((e, i) => e.id !== b[i]!.id), 'envelope ids are fresh per export');
  } finally {
    fx.db.close();
  }
});

test('a span whose parent was never written (a task cut off) is exported at the top of its trace, with non-UUID ids made unique per trace', () => {
  const t0 = 1_763_000_000_000;
  const span = (id: string, parent: string | null, kind: SpanRecord['kind'], name: string): SpanRecord => ({
    id, trace_id: 'tr-x', parent_id: parent, kind, name, status: 'ok', started_at: t0, ended_at: t0 + 5, input: null, output: null, error: null,
    input_tokens: 0, output_tokens: 0, cache_read_tokens: 0, cache_write_tokens: 0, cost_usd: 0, attributes: {},
  });
  const roots = buildSpanTree([span('root', null, 'agent', 'a'), span('t1', 'root', 'turn', 'turn 1'), span('lost', 'gone', 'tool', 'calc')]);
  const trace = {
    id: 'tr-x', run_id: 'r', experiment_seq: 2, group_id: 'r#2', task_id: 'x/1', repeat: 0, benchmark: 'x', split: 'val', harness: 'h',
    status: 'timeout' as const, score: null, pass: null, output: null, error: 'task deadline', started_at: t0, ended_at: t0 + 9,
    input_tokens: 0, output_tokens: 0, cache_read_tokens: 0, cache_write_tokens: 0, cost_usd: 0, finalized: true,
  };
  const events = traceEvents(trace, roots, { runId: 'r', metric: 'accuracy', decision: 'discarded' });
  const byName = new Map(events.map((e) => [e.body.name as string, e]));
  assert.equal(byName.get('turn 1')!.body.id, 'tr-x:t1');
  assert.equal(byName.get('turn 1')!.body.parentObservationId, 'tr-x:root');
  assert.equal(byName.get('tool:calc')!.body.parentObservationId, null);
  const score = events.find((e) => e.type === 'score-create')!;
  assert.deepEqual([score.body.name, score.body.value, score.body.comment], ['accuracy', 0, 'no score: task deadline']);
});
