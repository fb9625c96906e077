/**
 * Export to Langfuse (through the Langfuse SDK) against a local receiver on 127.0.0.1 that
 * answers like Langfuse: OTLP/HTTP JSON on `/api/public/otel/v1/traces` and score creation on
 * `/api/public/scores`. It decodes what arrives and the tests check it: one trace per task run,
 * nesting, observation types, usage and cost, our times, session, metadata, scores, stable ids,
 * basic auth, one-line errors, and the live exporter.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { trace as otelTrace } from '@opentelemetry/api';
import {
  exportToLangfuse, langfuseOptionsFromEnv, langfuseObservationId, langfuseTraceId, traceName, LangfuseLiveExporter,
} from '../../src/export/langfuse.ts';
import { UserError } from '../../base/errors.ts';
import { getTrace, insertTrace, insertSpans, finishTrace, type SpanRecord } from '../../traces/index.ts';
import { makeHarnessRun, TASKS, T0 } from '../report/fixtures.ts';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startRun, resumeRun } from '../../src/loop.ts';
import { finalizeRun } from '../../src/finalize.ts';
import { MemoryReporter } from '../../src/report.ts';
import { openDb, listExperiments, tracesOf, exportedSeqs } from '../../traces/index.ts';
import type { Proposer } from '../../meta-agent/index.ts';
import { startMockOpenAI, openaiText } from '../helpers/mock-llm.ts';
import { tinyHarnessRepo, sh, cleanup } from '../helpers/repo.ts';

// ---------------------------------------------------------------------------------------------
// the receiver

interface OtlpValue {
  stringValue?: string;
  boolValue?: boolean;
  intValue?: number | string;
  doubleValue?: number;
  arrayValue?: { values?: OtlpValue[] };
}

/** A span as it arrived, attributes decoded to plain values. */
interface ArrivedSpan {
  traceId: string;
  spanId: string;
  parentSpanId: string | null;
  name: string;
  start: number;
  end: number;
  scope: string;
  status: number;
  attrs: Record<string, unknown>;
}

interface Arrived {
  path: string;
  headers: IncomingHttpHeaders;
  status: number;
}

interface Receiver {
  host: string;
  requests: Arrived[];
  spans: ArrivedSpan[];
  scores: Array<Record<string, unknown>>;
  close(): Promise<void>;
}

const plain = (v: OtlpValue): unknown =>
  v.stringValue ?? v.boolValue ?? (v.intValue !== undefined ? Number(v.intValue) : undefined) ?? v.doubleValue ?? v.arrayValue?.values?.map(plain);

/** nanoseconds since the epoch (a string in OTLP JSON) → milliseconds */
const ms = (ns: string | number): number => Number(BigInt(ns) / 1_000_000n);

/** status(path) decides the answer to a request (200 unless told) */
async function receiver(status: (path: string) => number = () => 200): Promise<Receiver> {
  const r: Omit<Receiver, 'host' | 'close'> = { requests: [], spans: [], scores: [] };
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const path = req.url ?? '';
      const known = req.method === 'POST' && (path === '/api/public/otel/v1/traces' || path === '/api/public/scores');
      const code = known ? status(path) : 404;
      r.requests.push({ path, headers: req.headers, status: code });
      if (code !== 200) {
        res.writeHead(code, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ message: code === 401 ? 'Invalid credentials. Confirm that you\'ve configured the correct host.' : 'no' }));
        return;
      }
      const body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
      if (path === '/api/public/scores') {
        r.scores.push(body);
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ id: body.id }));
        return;
      }
      for (const rs of body.resourceSpans ?? []) {
        for (const ss of rs.scopeSpans ?? []) {
          for (const s of ss.spans ?? []) {
            r.spans.push({
              traceId: s.traceId, spanId: s.spanId, parentSpanId: s.parentSpanId || null, name: s.name,
              start: ms(s.startTimeUnixNano), end: ms(s.endTimeUnixNano), scope: ss.scope?.name, status: s.status?.code ?? 0,
              attrs: Object.fromEntries((s.attributes ?? []).map((a: { key: string; value: OtlpValue }) => [a.key, plain(a.value)])),
            });
          }
        }
      }
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{}');
    });
  });
  await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
  const { port } = server.address() as AddressInfo;
  const rec: Receiver = { ...r, host: `http://127.0.0.1:${port}`, close: () => new Promise<void>((ok) => server.close(() => ok())) };
  receivers.push(rec);
  return rec;
}

const receivers: Receiver[] = [];
after(async () => {
  for (const r of receivers) await r.close();
});

const KEYS = { publicKey: 'pk-lf-test', secretKey: 'sk-lf-secret' };
const AUTH = `Basic ${Buffer.from('pk-lf-test:sk-lf-secret').toString('base64')}`;
const json = (v: unknown): unknown => (typeof v === 'string' ? JSON.parse(v) : v);

// ---------------------------------------------------------------------------------------------

test('a run exports as one Langfuse trace per task run: nested typed observations, our times, session, metadata, usage, cost, scores', async () => {
  const fx = makeHarnessRun();
  const lf = await receiver();
  try {
    const progress: Array<[number, number]> = [];
    const res = await exportToLangfuse(fx.db, fx.runId, { host: lf.host + '/', ...KEYS, onProgress: (a, b) => void progress.push([a, b]) });
    const n = fx.traces.length;
    assert.deepEqual(res, { traces: n, observations: n * 9, scores: n });
    assert.deepEqual(progress.at(-1), [n, n]);

    // every request: basic auth with the keys; spans as OTLP JSON
    assert.ok(lf.requests.length >= 1 + n);
    for (const r of lf.requests) {
      assert.equal(r.headers.authorization, AUTH, r.path);
      assert.equal(r.status, 200, r.path);
    }
    assert.ok(lf.requests.filter((r) => r.path === '/api/public/otel/v1/traces').every((r) => r.headers['content-type'] === 'application/json'));
    assert.equal(lf.spans.length, n * 9);
    assert.ok(lf.spans.every((s) => s.scope === 'autoagent'));

    // trace ids: the SDK's seeded id of our trace id (SHA-256, 32 hex digits)
    const lfTrace = new Map<string, string>();
    for (const t of fx.traces) {
      const id = createHash('sha256').update(t.id).digest('hex').slice(0, 32);
      assert.equal(await langfuseTraceId(t.id), id);
      lfTrace.set(t.id, id);
    }
    assert.deepEqual(new Set(lf.spans.map((s) => s.traceId)), new Set(lfTrace.values()));

    // trace-level attributes on every observation: name, the run as session, tags, metadata with the decision
    const decisions: Record<number, string> = { [-1]: 'finalization', 0: 'baseline', 1: 'kept', 2: 'discarded', 3: 'kept' };
    for (const t of fx.traces) {
      const mine = lf.spans.filter((s) => s.traceId === lfTrace.get(t.id));
      assert.equal(mine.length, 9);
      for (const s of mine) {
        assert.equal(s.attrs['session.id'], fx.runId);
        assert.equal(s.attrs['langfuse.trace.name'], t.task, 'task ids already carry their benchmark');
        assert.equal(s.attrs['langfuse.trace.metadata.decision'], decisions[t.seq]);
        assert.equal(s.attrs['langfuse.trace.metadata.experiment_seq'], String(t.seq));
        assert.equal(s.attrs['langfuse.trace.metadata.benchmark'], 'tooluse');
        assert.equal(s.attrs['langfuse.trace.metadata.split'], t.split);
        assert.equal(s.attrs['langfuse.trace.metadata.repeat'], String(t.repeat));
        assert.equal(s.attrs['langfuse.trace.metadata.run_id'], fx.runId);
      }
      const root = mine.find((s) => s.parentSpanId === null)!;
      assert.deepEqual(json(root.attrs['langfuse.trace.input']), { id: t.task, input: { question: `question of ${t.task}` }, tags: [] });
      assert.equal(root.attrs['langfuse.trace.output'], `#### ${t.score}`);
      assert.equal(mine.filter((s) => 'langfuse.trace.input' in s.attrs).length, 1, 'trace input/output once, on the root');
    }
    assert.equal(traceName({ benchmark: 'gsm8k', task_id: '12' }), 'gsm8k/12');
    const final = lf.spans.find((s) => s.traceId === lfTrace.get(fx.traces.find((x) => x.seq === -1)!.id))!;
    assert.deepEqual(final.attrs['langfuse.trace.tags'], ['final', 'finalization', 'tooluse', 'test']);
    const exp1 = fx.traces.find((x) => x.seq === 1)!;
    const exp1Span = lf.spans.find((s) => s.traceId === lfTrace.get(exp1.id))!;
    assert.deepEqual(exp1Span.attrs['langfuse.trace.tags'], ['exp-1', 'kept', 'tooluse', 'val']);
    assert.match(String(exp1Span.attrs['langfuse.trace.metadata.experiment_id']), /^\d+$/);
    assert.match(String(exp1Span.attrs['langfuse.trace.metadata.hypothesis']), /read the file/);

    // observations follow our span tree: ids derived from ours, our parents, our times, typed by kind
    const one = fx.traces.find((t) => t.seq === 1 && t.task === TASKS[3] && t.repeat === 1)!;
    const detail = getTrace(fx.db, one.id)!;
    const byId = new Map(lf.spans.filter((s) => s.traceId === lfTrace.get(one.id)).map((s) => [s.spanId, s]));
    const type: Record<SpanRecord['kind'], string> = { agent: 'agent', subagent: 'agent', tool: 'tool', model: 'generation', turn: 'span', scoring: 'span' };
    for (const s of detail.spans) {
      const o = byId.get(langfuseObservationId(one.id, s.id));
      assert.ok(o, `span ${s.kind} ${s.name} exported under its derived id`);
      assert.equal(o.parentSpanId, s.parent_id === null ? null : langfuseObservationId(one.id, s.parent_id), `${s.name}: parent`);
      assert.equal(o.start, s.started_at, `${s.name}: start`);
      assert.equal(o.end, s.ended_at, `${s.name}: end`);
      assert.equal(o.attrs['langfuse.observation.type'], type[s.kind], `${s.name}: type`);
    }
    const obs = (name: string) => [...byId.values()].find((s) => s.name === name)!;
    const tool = obs('lookup');
    assert.equal(tool.parentSpanId, obs('turn 1').spanId, 'the tool call is nested under its turn');
    assert.equal(obs('summarise').parentSpanId === tool.spanId || [...byId.values()].some((s) => s.name === 'summarise' && s.parentSpanId === tool.spanId), true, 'the sub-agent is nested under the tool that called it');
    assert.equal(tool.attrs['langfuse.observation.level'], 'ERROR', 'the failed tool call is an error');
    assert.equal(tool.attrs['langfuse.observation.status_message'], 'ENOENT data.txt');
    assert.equal(tool.status, 2, 'and an OpenTelemetry error status');
    assert.deepEqual(json(tool.attrs['langfuse.observation.input']), { path: 'data.txt' });
    assert.equal(tool.attrs['langfuse.observation.output'], 'file contents');
    assert.ok(byId.has(langfuseObservationId(one.id, detail.spans.find((s) => s.kind === 'scoring')!.id)));
    assert.equal(obs('scoring:numeric').attrs['langfuse.observation.type'], 'span');

    // model calls are generations: model, parameters, messages, usage with cache tokens, cost
    const call2 = obs('model call 2');
    const span2 = detail.spans.find((s) => s.name === 'model call 2')!;
    assert.equal(call2.parentSpanId, obs('turn 2').spanId);
    assert.equal(call2.attrs['langfuse.observation.model.name'], 'gpt-4.1-mini-2025-04-14');
    assert.deepEqual(json(call2.attrs['langfuse.observation.model.parameters']), { temperature: 0.2, max_tokens: 512 });
    assert.deepEqual(json(call2.attrs['langfuse.observation.usage_details']), { input: 420 - 256, input_cache_read: 256, input_cache_creation: 0, output: 12, total: 432 });
    assert.deepEqual(json(call2.attrs['langfuse.observation.cost_details']), { total: span2.cost_usd });
    assert.deepEqual((json(call2.attrs['langfuse.observation.input']) as Array<{ role: string }>).map((m) => m.role), ['system', 'user', 'assistant', 'user']);
    assert.deepEqual(json(call2.attrs['langfuse.observation.output']), { role: 'assistant', content: [{ type: 'text', text: '#### 0' }] });

    // one score per task run: the run's metric, the task's score, on the trace and its scoring observation, the scorer's feedback
    assert.equal(lf.scores.length, n);
    for (const s of lf.scores) {
      const ours = fx.traces.find((t) => lfTrace.get(t.id) === s.traceId)!;
      assert.ok(ours, 'the score names a Langfuse trace of ours');
      assert.equal(s.name, 'score');
      assert.equal(s.value, ours.score);
      assert.equal(s.dataType, 'NUMERIC');
      assert.equal(s.comment, ours.score === 1 ? 'correct' : 'expected 7');
      const scoring = getTrace(fx.db, ours.id)!.spans.find((x) => x.kind === 'scoring')!;
      assert.equal(s.observationId, langfuseObservationId(ours.id, scoring.id));
    }

    // exporting again sends the same ids: Langfuse updates the objects instead of copying them
    const first = { spans: lf.spans.map((s) => `${s.traceId}/${s.spanId}`).sort(), scores: lf.scores.map((s) => s.id).sort() };
    assert.equal(new Set(first.spans).size, n * 9);
    assert.equal(new Set(first.scores).size, n);
    lf.spans.length = 0;
    lf.scores.length = 0;
    await exportToLangfuse(fx.db, fx.runId, { host: lf.host, ...KEYS });
    assert.deepEqual({ spans: lf.spans.map((s) => `${s.traceId}/${s.spanId}`).sort(), scores: lf.scores.map((s) => s.id).sort() }, first);

    // no tracer provider was registered globally
    assert.equal(otelTrace.getTracer('probe').startSpan('probe').isRecording(), false);
  } finally {
    fx.db.close();
  }
});

test('the meta-agent\'s conversations are their own traces (meta-agent/proposal) in the run\'s session, without a score', async () => {
  const fx = makeHarnessRun();
  const lf = await receiver();
  try {
    insertTrace(fx.db, {
      id: 'prop-1', role: 'proposal', run_id: fx.runId, experiment_seq: 1, group_id: `${fx.runId}/1/proposal`, task_id: 'proposal', repeat: 0,
      benchmark: 'meta-agent', split: '', harness: 'llm', status: 'ok', score: null, pass: null, output: null, error: null, started_at: T0, ended_at: T0,
      input_tokens: 0, output_tokens: 0, cache_read_tokens: 0, cache_write_tokens: 0, cost_usd: 0,
    });
    insertSpans(fx.db, [{
      id: 'm1', trace_id: 'prop-1', parent_id: null, kind: 'model', name: 'meta-agent call', status: 'ok', started_at: T0 + 1, ended_at: T0 + 900,
      input: { provider: 'anthropic', model: 'claude-x', system: 'propose', messages: [{ role: 'user', content: 'the traces' }] },
      output: { content: [{ type: 'text', text: '{"hypothesis":"h"}' }], stop_reason: 'end_turn' }, error: null,
      input_tokens: 1000, output_tokens: 50, cache_read_tokens: 0, cache_write_tokens: 600, cost_usd: 0.01, attributes: { model: 'claude-x-2026' },
    }]);
    finishTrace(fx.db, 'prop-1', { status: 'ok', ended_at: T0 + 950, output: JSON.stringify({ hypothesis: 'h' }) });
    const res = await exportToLangfuse(fx.db, fx.runId, { host: lf.host, ...KEYS });
    assert.deepEqual(res, { traces: fx.traces.length + 1, observations: fx.traces.length * 9 + 1, scores: fx.traces.length });
    const id = await langfuseTraceId('prop-1');
    const [gen, ...rest] = lf.spans.filter((s) => s.traceId === id);
    assert.equal(rest.length, 0);
    assert.equal(gen!.spanId, langfuseObservationId('prop-1', 'm1'));
    assert.equal(gen!.attrs['langfuse.trace.name'], 'meta-agent/proposal');
    assert.equal(gen!.attrs['session.id'], fx.runId);
    assert.equal(gen!.attrs['langfuse.trace.metadata.decision'], 'kept');
    assert.equal(gen!.attrs['langfuse.trace.metadata.role'], 'proposal');
    assert.deepEqual(gen!.attrs['langfuse.trace.tags'], ['proposal', 'exp-1', 'kept']);
    assert.deepEqual(json(gen!.attrs['langfuse.trace.output']), { hypothesis: 'h' });
    assert.deepEqual(json(gen!.attrs['langfuse.observation.usage_details']), { input: 400, input_cache_read: 0, input_cache_creation: 600, output: 50, total: 1050 });
    assert.ok(!lf.scores.some((s) => s.traceId === id));
  } finally {
    fx.db.close();
  }
});

test('missing keys, refused keys and an unreachable host end in one line', async () => {
  assert.throws(() => langfuseOptionsFromEnv({}), (e: Error) => e instanceof UserError && /^LANGFUSE_PUBLIC_KEY is not set/.test(e.message));
  assert.throws(() => langfuseOptionsFromEnv({ LANGFUSE_PUBLIC_KEY: 'pk' }), (e: Error) => e instanceof UserError && /^LANGFUSE_SECRET_KEY is not set/.test(e.message));
  assert.throws(() => LangfuseLiveExporter.fromEnv({ LANGFUSE_SECRET_KEY: 'sk' }), (e: Error) => e instanceof UserError && /^LANGFUSE_PUBLIC_KEY is not set/.test(e.message));
  assert.deepEqual(langfuseOptionsFromEnv({ LANGFUSE_PUBLIC_KEY: 'pk', LANGFUSE_SECRET_KEY: 'sk', LANGFUSE_BASE_URL: 'http://127.0.0.1:9' }), { host: 'http://127.0.0.1:9', publicKey: 'pk', secretKey: 'sk' });
  assert.equal(langfuseOptionsFromEnv({ LANGFUSE_PUBLIC_KEY: 'pk', LANGFUSE_SECRET_KEY: 'sk', LANGFUSE_HOST: 'http://a:1', LANGFUSE_BASE_URL: 'http://b:2' }).host, 'http://a:1');
  assert.equal(langfuseOptionsFromEnv({ LANGFUSE_PUBLIC_KEY: 'pk', LANGFUSE_SECRET_KEY: 'sk' }).host, 'https://cloud.langfuse.com');
  assert.equal(langfuseOptionsFromEnv({ LANGFUSE_PUBLIC_KEY: 'pk', LANGFUSE_SECRET_KEY: 'sk', LANGFUSE_TIMEOUT: '7' }).timeoutSeconds, 7);
  const fx = makeHarnessRun();
  const oneLine = (re: RegExp) => (e: Error) => {
    assert.ok(e instanceof UserError, String(e));
    assert.match(e.message, re);
    assert.ok(!e.message.includes('\n'), e.message);
    return true;
  };
  try {
    await assert.rejects(exportToLangfuse(fx.db, fx.runId, { host: 'http://127.0.0.1:9', publicKey: '', secretKey: 'sk' }), /LANGFUSE_PUBLIC_KEY is not set/);
    await assert.rejects(exportToLangfuse(fx.db, fx.runId, { host: 'not a url', ...KEYS }), /LANGFUSE_HOST 'not a url' is not a URL/);

    // 401 on the spans: the keys, in one line, and nothing sent after it
    const refusing = await receiver(() => 401);
    await assert.rejects(exportToLangfuse(fx.db, fx.runId, { host: refusing.host, ...KEYS }), oneLine(/^Langfuse rejected the keys \(401 from http:\/\/127\.0\.0\.1:\d+\): check that LANGFUSE_PUBLIC_KEY and LANGFUSE_SECRET_KEY/));
    assert.deepEqual(refusing.requests.map((r) => [r.path, r.headers.authorization]), [['/api/public/otel/v1/traces', AUTH]], 'not retried, no scores sent');

    // 403 on the scores only
    const noScores = await receiver((p) => (p === '/api/public/scores' ? 403 : 200));
    await assert.rejects(exportToLangfuse(fx.db, fx.runId, { host: noScores.host, ...KEYS }), oneLine(/^Langfuse rejected the keys \(403 from /));

    // another refusal: its status and body
    const broken = await receiver((p) => (p === '/api/public/scores' ? 404 : 200));
    await assert.rejects(exportToLangfuse(fx.db, fx.runId, { host: broken.host, ...KEYS }), oneLine(/^Langfuse at http:\/\/127\.0\.0\.1:\d+ refused the scores \(HTTP 404/));

    // nobody listening
    const gone = await receiver();
    await gone.close();
    receivers.splice(receivers.indexOf(gone), 1);
    const started = Date.now();
    await assert.rejects(exportToLangfuse(fx.db, fx.runId, { host: gone.host, ...KEYS, timeoutSeconds: 1 }), oneLine(/^cannot reach Langfuse at http:\/\/127\.0\.0\.1:\d+ \(ECONNREFUSED\): check LANGFUSE_HOST$/));
    assert.ok(Date.now() - started < 5000, `gave up within its timeout (${Date.now() - started} ms)`);

    await assert.rejects(exportToLangfuse(fx.db, 'nope', { host: broken.host, ...KEYS }), /no run nope/);
  } finally {
    fx.db.close();
  }
});

test('the live exporter sends one decided experiment with its decision, and a failure is reported, never thrown', async () => {
  const fx = makeHarnessRun();
  const lf = await receiver();
  // a task cut off by its deadline in experiment 2: its tool span's parent was never written
  const t0 = T0 + 5_000_000;
  insertTrace(fx.db, {
    id: 'tr-x', run_id: fx.runId, experiment_seq: 2, group_id: `${fx.runId}#2`, task_id: 'tooluse/99', repeat: 0, benchmark: 'tooluse', split: 'val',
    harness: 'tooluse', status: 'ok', score: null, pass: null, output: null, error: null, started_at: t0, ended_at: t0,
    input_tokens: 0, output_tokens: 0, cache_read_tokens: 0, cache_write_tokens: 0, cost_usd: 0,
  });
  const span = (id: string, parent: string | null, kind: SpanRecord['kind'], name: string, end: number): SpanRecord => ({
    id, trace_id: 'tr-x', parent_id: parent, kind, name, status: 'ok', started_at: t0 + 1, ended_at: t0 + end, input: null, output: null, error: null,
    input_tokens: 0, output_tokens: 0, cache_read_tokens: 0, cache_write_tokens: 0, cost_usd: 0, attributes: {},
  });
  insertSpans(fx.db, [span('root', null, 'agent', 'a', 50), span('t1', 'root', 'turn', 'turn 1', 40), span('lost', 'gone', 'tool', 'calc', 30)]);
  finishTrace(fx.db, 'tr-x', { status: 'timeout', ended_at: t0 + 60, error: 'task deadline' });
  const errors: string[] = [];
  const live = LangfuseLiveExporter.fromEnv({ LANGFUSE_PUBLIC_KEY: KEYS.publicKey, LANGFUSE_SECRET_KEY: KEYS.secretKey, LANGFUSE_BASE_URL: lf.host }, { onError: (m) => void errors.push(m) });
  try {
    const res = await live.exportExperiment(fx.db, fx.runId, 2);
    const exp2 = fx.traces.filter((t) => t.seq === 2);
    assert.deepEqual(res, { ok: true, traces: exp2.length + 1, observations: exp2.length * 9 + 3, scores: exp2.length + 1 });
    assert.equal(errors.length, 0, errors.join("; "));
    const ids = new Set(await Promise.all([...exp2.map((t) => t.id), 'tr-x'].map(langfuseTraceId)));
    assert.deepEqual(new Set(lf.spans.map((s) => s.traceId)), ids, 'that experiment\'s traces only');
    assert.ok(lf.spans.every((s) => s.attrs['langfuse.trace.metadata.decision'] === 'discarded' && s.attrs['session.id'] === fx.runId));
    assert.ok(lf.requests.every((r) => r.headers.authorization === AUTH));
    // the cut-off task: the orphan at the top of its trace, the score 0 with the reason
    const x = lf.spans.filter((s) => s.traceId === langfuseTraceIdSync('tr-x'));
    assert.equal(x.find((s) => s.name === 'calc')!.parentSpanId, null);
    assert.equal(x.find((s) => s.name === 'turn 1')!.parentSpanId, langfuseObservationId('tr-x', 'root'));
    const score = lf.scores.find((s) => s.traceId === langfuseTraceIdSync('tr-x'))!;
    assert.deepEqual([score.name, score.value, score.comment], ['score', 0, 'no score: task deadline']);
    assert.equal(score.observationId, undefined, 'no scoring span to attach it to');

    // the same experiment again, to a server refusing the keys: reported once, returned, not thrown
    lf.spans.length = 0;
    const refusing = await receiver(() => 401);
    const broken = new LangfuseLiveExporter({ host: refusing.host, ...KEYS, onError: (m) => void errors.push(m) });
    const [a, b] = await Promise.all([broken.exportExperiment(fx.db, fx.runId, 1), broken.exportExperiment(fx.db, fx.runId, 99)]);
    assert.equal(a.ok, false);
    assert.match(!a.ok ? a.error : '', /^experiment 1 not exported: Langfuse rejected the keys \(401 from /);
    assert.deepEqual(b, { ok: true, traces: 0, observations: 0, scores: 0 }, 'an experiment without traces sends nothing, not even the failed one\'s scores');
    assert.deepEqual(refusing.requests.map((r) => r.path), ['/api/public/otel/v1/traces'], 'one refused request, nothing after it');
    assert.equal(errors.length, 1);
    assert.equal(errors[0], !a.ok ? a.error : '');
    await broken.shutdown();
    const gone = await live.exportExperiment(fx.db, 'no-such-run', 1);
    assert.deepEqual(gone, { ok: false, error: 'experiment 1 not exported: no run no-such-run in this store (see `autoagent status`)' });
  } finally {
    await live.shutdown();
    fx.db.close();
  }
});

function langfuseTraceIdSync(id: string): string {
  return createHash('sha256').update(id).digest('hex').slice(0, 32);
}

// ---------------------------------------------------------------------------------------------
// the live export inside a run (study `export: { langfuse: true }`)

const LF_ENV = ['LANGFUSE_PUBLIC_KEY', 'LANGFUSE_SECRET_KEY', 'LANGFUSE_HOST', 'LANGFUSE_BASE_URL', 'LANGFUSE_TIMEOUT', 'OPENAI_API_KEY', 'OPENAI_BASE_URL'] as const;

async function withEnv<T>(vars: Partial<Record<(typeof LF_ENV)[number], string>>, fn: () => Promise<T>): Promise<T> {
  const saved = Object.fromEntries(LF_ENV.map((k) => [k, process.env[k]]));
  for (const k of LF_ENV) delete process.env[k];
  Object.assign(process.env, vars);
  try {
    return await fn();
  } finally {
    for (const k of LF_ENV) {
      if (saved[k] === undefined) delete process.env[k];
      else process.env[k] = saved[k];
    }
  }
}

/** a proposer that sets the harness temperature, step by step; `before(seq)` runs first */
function temperatures(values: string[], before: (seq: number) => Promise<void> = async () => undefined): Proposer {
  let i = 0;
  return {
    name: 'scripted',
    propose: async (ctx) => {
      await before(ctx.seq ?? 0);
      if (i >= values.length) return null;
      const t = values[i++]!;
      const cur = ctx.files['h/harness.yaml']!;
      return { hypothesis: `temperature → ${t}`, edits: [{ path: 'h/harness.yaml', content: cur.replace(/^temperature: \S+/m, `temperature: ${t}`) }] };
    },
  };
}

const TINY_TASKS = [
  { id: 't1', split: 'val', input: { question: 'What is 2+2?' }, answer: '4' },
  { id: 't2', split: 'val', input: { question: 'What is 3+3?' }, answer: '6' },
  { id: 't3', split: 'test', input: { question: 'What is 5+5?' }, answer: '10' },
];

/** the task-agent's model: right on everything at temperature ≤ 0.5, else only on 2+2 */
function tinyModel() {
  return startMockOpenAI((body: { temperature?: number; messages: unknown }) => {
    const q = JSON.stringify(body.messages);
    const right = q.includes('2+2') ? '4' : q.includes('3+3') ? '6' : '10';
    return openaiText((body.temperature ?? 1) <= 0.5 || right === '4' ? right : '0', { prompt_tokens: 20, completion_tokens: 2 });
  });
}

test('export.langfuse: each decided experiment reaches Langfuse while the run goes on; finalize sends the test evaluation', async () => {
  const model = await tinyModel();
  const lf = await receiver();
  const repo = tinyHarnessRepo(TINY_TASKS, 0);
  writeFileSync(join(repo, 'study.yaml'), readFileSync(join(repo, 'study.yaml'), 'utf8').replace('experiments: 1', 'experiments: 2') + 'export: { langfuse: true }\n');
  sh(repo, 'git', ['-c', 'user.name=t', '-c', 'user.email=t@t', 'commit', '-qam', 'live export']);
  const reporter = new MemoryReporter();
  const seenBefore = new Map<number, Set<string>>();
  try {
    await withEnv({ ...{ LANGFUSE_PUBLIC_KEY: KEYS.publicKey, LANGFUSE_SECRET_KEY: KEYS.secretKey, LANGFUSE_HOST: lf.host }, OPENAI_API_KEY: 'k', OPENAI_BASE_URL: model.baseURL }, async () => {
      // before proposing experiment n, wait (≤ 10 s) until Langfuse holds experiment n − 1: the export is live, not at the end
      const proposer = temperatures(['0.1', '0.05'], async (seq) => {
        const want = String(seq - 1);
        for (let t = 0; t < 200 && !lf.spans.some((s) => s.attrs['langfuse.trace.metadata.experiment_seq'] === want); t++) await new Promise((ok) => setTimeout(ok, 50));
        seenBefore.set(seq, new Set(lf.spans.map((s) => String(s.attrs['langfuse.trace.metadata.experiment_seq']))));
      });
      const res = await startRun(join(repo, 'study.yaml'), { overrides: {}, unsafeNoSandbox: false, reporter, proposer });
      assert.equal(res.status, 'finished', res.stopReason ?? '');
      const db = openDb(res.dbPath);
      try {
        const exps = listExperiments(db, res.runId);
        assert.deepEqual(exps.map((e) => e.decision), ['baseline', 'kept', 'discarded']);
        assert.ok(seenBefore.get(1)?.has('0'), 'the baseline was in Langfuse before experiment 1 was proposed');
        assert.ok(seenBefore.get(2)?.has('1'), 'experiment 1 was in Langfuse before experiment 2 was proposed');
        assert.ok(!seenBefore.get(1)?.has('1'), 'and nothing of an experiment before it was decided');

        // everything of the run arrived, each trace with its experiment's decision, one score per task run
        const traces = tracesOf(db, { runId: res.runId, role: 'any' });
        assert.equal(traces.length, 2 * 2 + 2 + 2, 'two baseline repeats and one evaluation each of two candidates, two tasks each');
        assert.deepEqual(new Set(lf.spans.map((s) => s.traceId)), new Set(await Promise.all(traces.map((t) => langfuseTraceId(t.id)))));
        const decisionOf = (seq: number) => new Set(lf.spans.filter((s) => s.attrs['langfuse.trace.metadata.experiment_seq'] === String(seq)).map((s) => s.attrs['langfuse.trace.metadata.decision']));
        assert.deepEqual([decisionOf(0), decisionOf(1), decisionOf(2)], [new Set(['baseline']), new Set(['kept']), new Set(['discarded'])]);
        assert.equal(new Set(lf.scores.map((s) => s.id)).size, traces.length);
        assert.ok(lf.spans.every((s) => s.attrs['session.id'] === res.runId));
        assert.deepEqual([...exportedSeqs(db, res.runId, 'langfuse')].sort(), [0, 1, 2], 'the store lists what was delivered');
        assert.ok(reporter.lines.some((l) => l.startsWith(`langfuse: live export to ${lf.host} (session ${res.runId})`)), reporter.lines.join('\n'));
        assert.ok(!reporter.lines.some((l) => /not exported|not delivered/.test(l)), reporter.lines.join('\n'));

        // finalize sends the sealed test evaluation, tagged final
        lf.spans.length = 0;
        const fin = await finalizeRun(db, res.runId, { unsafeNoSandbox: false, reporter, branch: false });
        assert.equal(fin.metric, 1);
        const finals = tracesOf(db, { runId: res.runId, experimentSeq: -1 });
        assert.equal(finals.length, 1);
        assert.deepEqual(new Set(lf.spans.map((s) => s.traceId)), new Set([await langfuseTraceId(finals[0]!.id)]));
        assert.deepEqual(lf.spans[0]!.attrs['langfuse.trace.tags'], ['final', 'finalization', 'tiny', 'test']);
        assert.ok(reporter.lines.includes(`langfuse: sent the test evaluation (1 trace(s)) to ${lf.host}`), reporter.lines.join('\n'));
      } finally {
        db.close();
      }
    });
  } finally {
    await model.close();
    cleanup(repo);
  }
});

test('export.langfuse: missing keys stop the start in one line; a refused export warns once, never stops the run, and a resume sends what was missed', async () => {
  const model = await tinyModel();
  const repo = tinyHarnessRepo(TINY_TASKS, 0);
  writeFileSync(join(repo, 'study.yaml'), readFileSync(join(repo, 'study.yaml'), 'utf8') + 'export: { langfuse: true }\n');
  sh(repo, 'git', ['-c', 'user.name=t', '-c', 'user.email=t@t', 'commit', '-qam', 'live export']);
  const study = join(repo, 'study.yaml');
  try {
    await withEnv({ OPENAI_API_KEY: 'k', OPENAI_BASE_URL: model.baseURL }, async () => {
      await assert.rejects(startRun(study, { overrides: {}, unsafeNoSandbox: false, reporter: new MemoryReporter(), proposer: temperatures(['0.1']) }),
        (e: Error) => e instanceof UserError && /^LANGFUSE_PUBLIC_KEY is not set: export the public key/.test(e.message));
      assert.equal(sh(repo, 'git', ['branch', '--list', 'autoagent/*']), '', 'no run was started');
    });

    const refusing = await receiver(() => 401);
    const lfEnv = { LANGFUSE_PUBLIC_KEY: KEYS.publicKey, LANGFUSE_SECRET_KEY: KEYS.secretKey, OPENAI_API_KEY: 'k', OPENAI_BASE_URL: model.baseURL };
    const reporter = new MemoryReporter();
    const res = await withEnv({ ...lfEnv, LANGFUSE_HOST: refusing.host }, () =>
      startRun(study, { overrides: {}, unsafeNoSandbox: false, reporter, proposer: temperatures(['0.1']) }));
    assert.equal(res.status, 'finished', res.stopReason ?? '');
    const refused = reporter.lines.filter((l) => /^langfuse: experiment \d+ not exported: Langfuse rejected the keys \(401 from /.test(l));
    assert.equal(refused.length, 1, `one warning for a Langfuse that keeps refusing:\n${reporter.lines.join('\n')}`);
    assert.ok(refusing.requests.length >= 2, 'it was tried again after the first refusal');
    assert.ok(reporter.lines.includes(`langfuse: 2 experiment(s) not delivered; \`autoagent export langfuse ${res.runId}\` sends them (so does resuming the run)`), reporter.lines.join('\n'));
    const db = openDb(res.dbPath);
    try {
      assert.equal(exportedSeqs(db, res.runId, 'langfuse').size, 0);
      assert.deepEqual(listExperiments(db, res.runId).map((e) => e.decision), ['baseline', 'kept']);

      // resumed with one more experiment against a Langfuse that answers: the missed ones go first
      const lf = await receiver();
      const again = new MemoryReporter();
      const res2 = await withEnv({ ...lfEnv, LANGFUSE_HOST: lf.host }, () =>
        resumeRun(res.runId, repo, { overrides: { experiments: 2 }, unsafeNoSandbox: false, reporter: again, proposer: temperatures(['0.05']) }));
      assert.equal(res2.status, 'finished', res2.stopReason ?? '');
      assert.deepEqual([...exportedSeqs(db, res.runId, 'langfuse')].sort(), [0, 1, 2]);
      const traces = tracesOf(db, { runId: res.runId, role: 'any' });
      assert.deepEqual(new Set(lf.spans.map((s) => s.traceId)), new Set(await Promise.all(traces.map((t) => langfuseTraceId(t.id)))));
      assert.ok(!again.lines.some((l) => /not exported/.test(l)), again.lines.join('\n'));
      const sentSeqs = lf.spans.map((s) => Number(s.attrs['langfuse.trace.metadata.experiment_seq']));
      assert.deepEqual(sentSeqs.slice(0, sentSeqs.indexOf(2)).filter((q) => q === 2), [], 'in order: the missed experiments before the new one');
      assert.deepEqual(new Set(sentSeqs), new Set([0, 1, 2]));
    } finally {
      db.close();
    }
  } finally {
    await model.close();
    cleanup(repo);
  }
});
