/**
 * Exports a run's traces to Langfuse (cloud or self-hosted) — one Langfuse trace per task run.
 *
 * How: Langfuse's public batch ingestion API, `POST {host}/api/public/ingestion` with basic auth
 * (public key : secret key), spoken directly with `fetch`; no SDK.
 *
 * Why not the SDK: the current JS SDK (@langfuse/tracing + @langfuse/otel 5.x, engines node >= 20)
 * is OpenTelemetry-based and needs @opentelemetry/api, core, sdk-trace-base and
 * exporter-trace-otlp-http besides @langfuse/core. It is built to instrument code while it runs;
 * here the spans already exist in SQLite, and we must keep our own ids (trace id = our trace id,
 * so a person can go from `autoagent traces <id>` to Langfuse and back), our own start/end times
 * and our parent links, and re-exporting a run must update the same objects instead of making
 * copies. The ingestion API gives exactly that (ids in the body are upserted), with zero new
 * dependencies. The legacy v3 `langfuse` package (which also used this endpoint) is deprecated.
 * The trade-off: Langfuse marks this endpoint "legacy" in favour of OTLP
 * (`/api/public/otel/v1/traces`) and says data sent to it may take minutes to show; it is still
 * served by Langfuse Cloud and self-hosted v3. If it is ever removed, this module is the one place
 * to switch to OTLP.
 *
 * Mapping (our span tree → Langfuse observations):
 * - trace: id = our trace id, name `<benchmark>/<task>`, sessionId = run id, input = the task,
 *   output = the agent's final answer, metadata {experiment_seq, decision, benchmark, split,
 *   repeat, ...}, tags [exp-N, decision, benchmark, split]
 * - model span → generation (model, modelParameters, input = system + messages, output = the
 *   response, usageDetails {input (uncached), input_cached_tokens, input_cache_creation, output,
 *   total}, costDetails {total})
 * - tool span → `tool-create` (Langfuse's tool observation type) named `tool:<name>`
 * - agent and subagent spans → `agent-create`; turn and scoring spans → span
 * - error / timeout → level ERROR with the message
 * - one score per task: name = the run's metric, value = the task's score (a task without a
 *   score counts 0, as in the run's mean), attached to the scoring observation, with the
 *   scorer's feedback as comment
 * A server too old for the typed observations (agent-create, tool-create) answers them with a
 * per-event 400; those are re-sent once as plain spans and the rest of the export sends plain
 * spans. Requests are retried on 429 and 5xx (honouring retry-after) and on network errors,
 * with exponential backoff; 401/403 and other client errors end in one line.
 */
import { randomUUID } from 'node:crypto';
import { getRun, listExperiments, tracesOf, getTrace, type DB, type SpanRecord, type SpanNode } from '../../traces/index.ts';
import type { StoredTrace } from '../../traces/traces.ts';
import { UserError, UsageError } from '../errors.ts';

export interface LangfuseOptions {
  /** e.g. https://cloud.langfuse.com or http://localhost:3000 */
  host: string;
  publicKey: string;
  secretKey: string;
  /** events per request (default 100; requests also stay under 3 MB) */
  batchSize?: number;
  /** retries of one request on 429 / 5xx / network errors (default 5) */
  maxRetries?: number;
  /** first backoff in ms, doubled each retry (default 500) */
  backoffMs?: number;
  /** per-request deadline in ms (default 30 000) */
  timeoutMs?: number;
  /** 'typed' (default): agent-create / tool-create observations, falling back to spans on an old server; 'basic': spans only */
  observationTypes?: 'typed' | 'basic';
  /** called after each request with the traces accepted so far and the run's number of traces */
  onProgress?: (traces: number, total: number) => void;
}

export interface LangfuseExportResult {
  traces: number;
  observations: number;
  scores: number;
}

export type IngestionEventType =
  | 'trace-create' | 'span-create' | 'generation-create' | 'event-create' | 'score-create' | 'agent-create' | 'tool-create';

export interface IngestionEvent {
  /** envelope id (deduplication); the object's own id is body.id */
  id: string;
  type: IngestionEventType;
  timestamp: string;
  body: Record<string, unknown>;
}

const DEFAULT_HOST = 'https://cloud.langfuse.com';
const MAX_REQUEST_BYTES = 3_000_000;
const MAX_FIELD_CHARS = 400_000;
const TYPED = new Set<IngestionEventType>(['agent-create', 'tool-create']);
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** Host and keys from LANGFUSE_HOST (or LANGFUSE_BASE_URL), LANGFUSE_PUBLIC_KEY, LANGFUSE_SECRET_KEY. */
export function langfuseOptionsFromEnv(env: NodeJS.ProcessEnv = process.env): LangfuseOptions {
  const publicKey = env.LANGFUSE_PUBLIC_KEY?.trim();
  const secretKey = env.LANGFUSE_SECRET_KEY?.trim();
  if (!publicKey) throw new UserError('LANGFUSE_PUBLIC_KEY is not set: export the public key (pk-lf-…) of your Langfuse project (Settings → API Keys)');
  if (!secretKey) throw new UserError('LANGFUSE_SECRET_KEY is not set: export the secret key (sk-lf-…) of your Langfuse project (Settings → API Keys)');
  const host = env.LANGFUSE_HOST?.trim() || env.LANGFUSE_BASE_URL?.trim() || DEFAULT_HOST;
  return { host, publicKey, secretKey };
}

function checkOptions(opts: LangfuseOptions): string {
  if (!opts.publicKey) throw new UserError('LANGFUSE_PUBLIC_KEY is not set: export the public key (pk-lf-…) of your Langfuse project (Settings → API Keys)');
  if (!opts.secretKey) throw new UserError('LANGFUSE_SECRET_KEY is not set: export the secret key (sk-lf-…) of your Langfuse project (Settings → API Keys)');
  let url: URL;
  try {
    url = new URL(opts.host);
  } catch {
    throw new UserError(`LANGFUSE_HOST '${opts.host}' is not a URL: expected e.g. ${DEFAULT_HOST} or http://localhost:3000`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new UserError(`LANGFUSE_HOST '${opts.host}': expected an http(s) URL`);
  return url.href.replace(/\/+$/, '');
}

// ---------------------------------------------------------------------------------------------
// building the events

const iso = (ms: number): string => new Date(Number.isFinite(ms) ? ms : Date.now()).toISOString();

/** A value for an input/output field: kept as is unless its JSON is huge (the API caps a batch at 3.5 MB). */
function capField(v: unknown): unknown {
  if (v === undefined) return null;
  const s = JSON.stringify(v);
  if (s === undefined || s.length <= MAX_FIELD_CHARS) return v;
  return { truncated_by_autoagent: true, json_chars: s.length, preview: s.slice(0, 20_000) };
}

function isObj(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function observationId(traceId: string, spanId: string): string {
  return UUID.test(spanId) ? spanId : `${traceId}:${spanId}`;
}

function level(s: SpanRecord): Record<string, unknown> {
  if (s.status === 'ok') return {};
  return { level: 'ERROR', statusMessage: s.error ?? (s.status === 'timeout' ? 'timed out' : 'error') };
}

function generationBody(s: SpanRecord, base: Record<string, unknown>): Record<string, unknown> {
  const req = isObj(s.input) ? s.input : {};
  const res = isObj(s.output) ? s.output : null;
  const params: Record<string, unknown> = {};
  for (const k of ['temperature', 'top_p', 'max_tokens', 'thinking_budget'] as const) {
    if (typeof req[k] === 'number') params[k] = req[k];
  }
  if (Array.isArray(req.stop)) params.stop = (req.stop as unknown[]).map(String);
  else if (typeof req.stop === 'string') params.stop = req.stop;
  const messages: unknown[] = [];
  if (typeof req.system === 'string' && req.system) messages.push({ role: 'system', content: req.system });
  if (Array.isArray(req.messages)) messages.push(...req.messages);
  const tools = Array.isArray(req.tools) ? (req.tools as Array<{ name?: unknown }>).map((t) => String(t?.name ?? '')) : [];
  const uncached = Math.max(0, s.input_tokens - s.cache_read_tokens - s.cache_write_tokens);
  const attrs = s.attributes ?? {};
  return {
    ...base,
    model: typeof attrs.model === 'string' ? attrs.model : typeof req.model === 'string' ? req.model : undefined,
    modelParameters: params,
    input: capField(messages.length ? messages : s.input),
    output: capField(res ? { role: 'assistant', content: res.content ?? null } : null),
    usageDetails: {
      input: uncached,
      input_cached_tokens: s.cache_read_tokens,
      input_cache_creation: s.cache_write_tokens,
      output: s.output_tokens,
      total: s.input_tokens + s.output_tokens,
    },
    costDetails: { total: s.cost_usd },
    metadata: {
      span_kind: s.kind,
      provider: typeof req.provider === 'string' ? req.provider : undefined,
      tools,
      stop_reason: res?.stop_reason ?? null,
      latency_ms: attrs.latency_ms ?? null,
      attempts: attrs.attempts ?? null,
      cached: attrs.cached ?? false,
    },
  };
}

interface TraceContext {
  runId: string;
  metric: string;
  decision: string;
}

/** The ingestion events of one trace: the trace, its observations (parents first), its score. */
export function traceEvents(trace: StoredTrace, roots: SpanNode[], ctx: TraceContext): IngestionEvent[] {
  const events: IngestionEvent[] = [];
  const ev = (type: IngestionEventType, at: number, body: Record<string, unknown>): void => {
    events.push({ id: randomUUID(), type, timestamp: iso(at), body });
  };
  // parents as in the tree (buildSpanTree makes orphans and spans caught in a parent cycle roots)
  const all: SpanNode[] = [];
  const parentOf = new Map<SpanNode, string | null>();
  const walk = (nodes: SpanNode[], parent: string | null) => {
    for (const node of nodes) {
      all.push(node);
      parentOf.set(node, parent);
      walk(node.children, node.id);
    }
  };
  walk(roots, null);
  const agent = all.find((s) => s.kind === 'agent' && s.parent_id === null);
  const taskInput = isObj(agent?.input) && isObj(agent.input.task) ? agent.input.task : { id: trace.task_id };
  ev('trace-create', trace.started_at, {
    id: trace.id,
    timestamp: iso(trace.started_at),
    name: `${trace.benchmark}/${trace.task_id}`,
    sessionId: ctx.runId,
    input: capField(taskInput),
    output: capField(trace.output),
    version: trace.harness,
    tags: [trace.experiment_seq === null ? 'eval' : trace.experiment_seq < 0 ? 'final' : `exp-${trace.experiment_seq}`, ctx.decision, trace.benchmark, trace.split],
    metadata: {
      run_id: ctx.runId,
      experiment_seq: trace.experiment_seq,
      decision: ctx.decision,
      benchmark: trace.benchmark,
      split: trace.split,
      repeat: trace.repeat,
      task_id: trace.task_id,
      harness: trace.harness,
      group_id: trace.group_id,
      status: trace.status,
      error: trace.error,
      score: trace.score,
      pass: trace.pass,
      finalized: trace.finalized,
      input_tokens: trace.input_tokens,
      output_tokens: trace.output_tokens,
      cache_read_tokens: trace.cache_read_tokens,
      cache_write_tokens: trace.cache_write_tokens,
      cost_usd: trace.cost_usd,
    },
  });
  for (const s of all) {
    const parent = parentOf.get(s) ?? null;
    const base: Record<string, unknown> = {
      id: observationId(trace.id, s.id),
      traceId: trace.id,
      parentObservationId: parent === null ? null : observationId(trace.id, parent),
      name: s.name,
      startTime: iso(s.started_at),
      endTime: iso(s.ended_at),
      ...level(s),
    };
    if (s.kind === 'model') {
      ev('generation-create', s.started_at, generationBody(s, base));
      continue;
    }
    const body = {
      ...base,
      input: capField(s.input),
      output: capField(s.output),
      metadata: { span_kind: s.kind, ...(isObj(s.attributes) ? s.attributes : {}) },
    };
    if (s.kind === 'tool') ev('tool-create', s.started_at, { ...body, name: `tool:${s.name}` });
    else if (s.kind === 'agent' || s.kind === 'subagent') ev('agent-create', s.started_at, body);
    else if (s.kind === 'scoring') ev('span-create', s.started_at, { ...body, name: `scoring:${s.name}` });
    else ev('span-create', s.started_at, body);
  }
  const scoring = all.find((s) => s.kind === 'scoring');
  const feedback = isObj(scoring?.output) && typeof scoring.output.feedback === 'string' ? scoring.output.feedback : null;
  const comment = trace.score === null ? `no score: ${trace.error ?? trace.status}` : feedback;
  ev('score-create', trace.ended_at, {
    id: `${trace.id}:${ctx.metric}`,
    traceId: trace.id,
    ...(scoring ? { observationId: observationId(trace.id, scoring.id) } : {}),
    name: ctx.metric,
    value: trace.score ?? 0,
    dataType: 'NUMERIC',
    ...(comment ? { comment: comment.length > 2000 ? comment.slice(0, 2000) + '…' : comment } : {}),
    metadata: { pass: trace.pass, status: trace.status, experiment_seq: trace.experiment_seq, repeat: trace.repeat },
  });
  return events;
}

/**
 * The ingestion events of a run, one trace at a time (experiment, task, repeat order), so that a
 * run with thousands of long conversations is never held in memory at once.
 */
export function* langfuseEventStream(db: DB, runId: string): Generator<IngestionEvent[], void, undefined> {
  const run = getRun(db, runId);
  if (!run) throw new UsageError(`no run ${runId} in this store (see \`autoagent status\`)`);
  const decisions = new Map(listExperiments(db, run.id).map((e) => [e.seq, e.seq === 0 ? 'baseline' : e.decision ?? 'pending']));
  for (const t of tracesOf(db, { runId: run.id })) {
    const detail = getTrace(db, t.id);
    if (!detail) continue;
    // seq -1: the final evaluation on the sealed test split (src/finalize.ts)
    const decision = t.experiment_seq === null ? 'eval' : t.experiment_seq < 0 ? 'finalization' : decisions.get(t.experiment_seq) ?? 'pending';
    yield traceEvents(detail.trace, detail.roots, { runId: run.id, metric: run.metric_name, decision });
  }
}

/** Every ingestion event of a run's traces. */
export function langfuseEvents(db: DB, runId: string): IngestionEvent[] {
  return [...langfuseEventStream(db, runId)].flat();
}

// ---------------------------------------------------------------------------------------------
// sending

interface IngestionResponse {
  successes?: Array<{ id: string; status: number }>;
  errors?: Array<{ id: string; status: number; message?: string; error?: unknown }>;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function retryAfterMs(h: string | null): number | null {
  if (!h) return null;
  const s = Number(h);
  if (Number.isFinite(s)) return Math.max(0, s * 1000);
  const t = Date.parse(h);
  return Number.isFinite(t) ? Math.max(0, t - Date.now()) : null;
}

function toBasic(e: IngestionEvent): IngestionEvent {
  return TYPED.has(e.type) ? { ...e, id: randomUUID(), type: 'span-create' } : e;
}

const eventBytes = (e: IngestionEvent): number => Buffer.byteLength(JSON.stringify(e)) + 1;

async function post(url: string, auth: string, batch: IngestionEvent[], opts: LangfuseOptions): Promise<IngestionResponse> {
  const retries = Math.max(0, opts.maxRetries ?? 5);
  const base = Math.max(1, opts.backoffMs ?? 500);
  let last = '';
  for (let attempt = 0; ; attempt++) {
    let wait: number | null = null;
    try {
      const res = await fetch(url, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: auth, 'x-langfuse-sdk-name': 'autoagent', 'x-langfuse-public-key': opts.publicKey },
        body: JSON.stringify({ batch, metadata: { sdk_name: 'autoagent', batch_size: batch.length } }),
        signal: AbortSignal.timeout(opts.timeoutMs ?? 30_000),
      });
      const text = await res.text();
      if (res.status === 200 || res.status === 201 || res.status === 207) {
        try {
          return JSON.parse(text) as IngestionResponse;
        } catch {
          return {};
        }
      }
      const detail = text.replace(/\s+/g, ' ').trim().slice(0, 200);
      if (res.status === 401 || res.status === 403) {
        throw new UserError(`Langfuse at ${new URL(url).origin} refused the keys (${res.status}): check LANGFUSE_PUBLIC_KEY and LANGFUSE_SECRET_KEY belong to a project on that host`);
      }
      if (res.status !== 429 && res.status < 500) {
        throw new UserError(`Langfuse at ${new URL(url).origin} rejected the batch (${res.status}${detail ? `: ${detail}` : ''})`);
      }
      last = `HTTP ${res.status}${detail ? ` ${detail}` : ''}`;
      wait = retryAfterMs(res.headers.get('retry-after'));
    } catch (e) {
      if (e instanceof UserError) throw e;
      const err = e as Error & { cause?: { code?: string; message?: string } };
      last = err.name === 'TimeoutError' ? `no answer within ${Math.round((opts.timeoutMs ?? 30_000) / 1000)} s` : err.cause?.code ?? err.cause?.message ?? err.message;
    }
    if (attempt >= retries) {
      throw new UserError(`cannot export to Langfuse at ${new URL(url).origin}: ${last} (after ${attempt + 1} attempts); check LANGFUSE_HOST and try again`);
    }
    const backoff = Math.min(30_000, base * 2 ** attempt) * (0.8 + Math.random() * 0.4);
    await sleep(Math.min(60_000, wait ?? backoff));
  }
}

/** Sends every trace of the run to Langfuse; returns how many traces, observations and scores it accepted. */
export async function exportToLangfuse(db: DB, runId: string, opts: LangfuseOptions): Promise<LangfuseExportResult> {
  const host = checkOptions(opts);
  const url = `${host}/api/public/ingestion`;
  const auth = `Basic ${Buffer.from(`${opts.publicKey}:${opts.secretKey}`).toString('base64')}`;
  const size = Math.max(1, Math.floor(opts.batchSize ?? 100));
  let basicOnly = opts.observationTypes === 'basic';
  const result: LangfuseExportResult = { traces: 0, observations: 0, scores: 0 };
  const failures: Array<{ e: IngestionEvent; status: number; message: string }> = [];
  let total = 0;
  const totalTraces = (db.prepare('SELECT count(*) AS k FROM traces WHERE run_id = ?').get(runId) as { k: number }).k;

  /** sends one request; typed observations an old server rejects are sent again as spans */
  const send = async (batch: IngestionEvent[]): Promise<void> => {
    const res = await post(url, auth, batch, opts);
    const byId = new Map(batch.map((e) => [e.id, e]));
    const failed = new Set<string>();
    const again: IngestionEvent[] = [];
    for (const err of res.errors ?? []) {
      const e = byId.get(err.id);
      if (!e) continue;
      failed.add(e.id);
      if (TYPED.has(e.type) && err.status >= 400 && err.status < 500) {
        // a server without the typed observations: this one as a plain span, and only plain spans from now on
        basicOnly = true;
        again.push(toBasic(e));
      } else {
        failures.push({ e, status: err.status, message: err.message ?? (typeof err.error === 'string' ? err.error : JSON.stringify(err.error ?? '')) });
      }
    }
    for (const e of batch) {
      if (failed.has(e.id)) continue;
      if (e.type === 'trace-create') result.traces++;
      else if (e.type === 'score-create') result.scores++;
      else result.observations++;
    }
    for (let i = 0; i < again.length; i += size) await send(again.slice(i, i + size));
  };

  let pending: IngestionEvent[] = [];
  let bytes = 0;
  const flush = async () => {
    if (!pending.length) return;
    const batch = pending;
    pending = [];
    bytes = 0;
    await send(batch);
    opts.onProgress?.(result.traces, totalTraces);
  };
  for (const events of langfuseEventStream(db, runId)) {
    for (const raw of events) {
      const e = basicOnly ? toBasic(raw) : raw;
      const b = eventBytes(e);
      if (pending.length && (pending.length >= size || bytes + b > MAX_REQUEST_BYTES)) await flush();
      pending.push(e);
      bytes += b;
      total++;
    }
  }
  await flush();
  if (failures.length) {
    const f = failures[0]!;
    throw new UserError(
      `Langfuse rejected ${failures.length} of ${total} events (first: ${f.e.type} ${String(f.e.body.id ?? f.e.id)}: ${f.status} ${f.message.slice(0, 200)}); ` +
        `exported ${result.traces} traces, ${result.observations} observations, ${result.scores} scores`,
    );
  }
  return result;
}
