/**
 * Exports traces to Langfuse (cloud or self-hosted) with Langfuse's JS SDK: after the fact
 * (`exportToLangfuse`, `autoagent export langfuse <run>`: a whole run) and live
 * (`LangfuseLiveExporter`: one decided experiment at a time, while the run goes on).
 *
 * How: spans go through `@langfuse/otel`'s LangfuseSpanProcessor (OTLP/HTTP JSON to
 * `{host}/api/public/otel/v1/traces`, basic auth with the keys) on a tracer provider of our own
 * that is never registered globally (nothing leaks into other code of the process, or from one
 * export into the next); each span is wrapped in `@langfuse/tracing`'s observation class of its
 * type (LangfuseAgent, LangfuseGeneration, LangfuseTool, LangfuseSpan), which writes Langfuse's
 * attributes. Scores are not spans: they go through `@langfuse/client`'s API client
 * (`POST {host}/api/public/scores`), one request per score. Not `client.score.create()` + flush:
 * that queue logs failed requests and drops them, and an export must say when it failed.
 *
 * Our spans already exist in SQLite, so the export keeps what they are:
 * - ids: the Langfuse trace id is `createTraceId(<our trace id>)` (the SDK's seeded id: the first
 *   32 hex digits of its SHA-256) and each observation id the first 16 hex digits of
 *   SHA-256(`<our trace id>/<our span id>`), given to the spans by the provider's IdGenerator;
 *   score ids are derived the same way. Re-exporting a run (or a live export followed by an
 *   after-the-fact one) updates the same Langfuse objects instead of making copies.
 *   `langfuseTraceId(ourId)` gives the id to look a trace up in Langfuse.
 * - times: each observation starts and ends at our span's times; parents: our parent links (as
 *   buildSpanTree resolves them: a span whose parent was never written is at the top of its trace).
 *
 * Mapping:
 * - one Langfuse trace per task run: name `<benchmark>/<task>` (`traceName`), session = the run id, input = the
 *   task, output = the final answer, tags [exp-N | final, decision, benchmark, split], metadata
 *   {run_id, experiment_seq, experiment_id, decision, hypothesis, benchmark, split, repeat, task_id,
 *   harness, status, score, pass, ...}. Trace-level attributes are set on every observation of the
 *   trace (what the SDK's propagateAttributes does), input and output on its root.
 * - model span → generation (model, modelParameters, input = system + messages, output = the
 *   response, usageDetails {input (uncached), input_cache_read, input_cache_creation, output,
 *   total}, costDetails {total}); tool span → tool; agent and subagent spans → agent; turn and
 *   scoring spans → span; status error / timeout → level ERROR with the error as statusMessage.
 * - one score per task run: name = the run's metric, value = the task's score (a task without a
 *   score counts 0, as in the run's mean), on the trace and its scoring observation, with the
 *   scorer's feedback as comment.
 * - the meta-agent's conversations (traces with role `proposal`) are their own traces named
 *   `meta-agent/proposal` in the same session, tagged `proposal`, without a score.
 *
 * Errors end in one line (a UserError): keys refused (401/403), other HTTP errors, an unreachable
 * host, no answer in time. The OTLP exporter retries 429/502/503/504 and network errors within
 * its timeout; the scores API client retries 408/429/5xx twice.
 */
import { createHash } from 'node:crypto';
import { ROOT_CONTEXT, SpanStatusCode, trace as otelTrace, type Attributes, type Span, type Tracer } from '@opentelemetry/api';
import { AlwaysOnSampler, BasicTracerProvider, type IdGenerator } from '@opentelemetry/sdk-trace-base';
import { LangfuseSpanProcessor } from '@langfuse/otel';
import {
  LangfuseAgent, LangfuseGeneration, LangfuseOtelSpanAttributes, LangfuseSpan, LangfuseTool, createTraceAttributes, createTraceId,
  type LangfuseGenerationAttributes, type LangfuseSpanAttributes,
} from '@langfuse/tracing';
import { LangfuseClient } from '@langfuse/client';
import { getRun, listExperiments, tracesOf, getTrace, recordExport, exportedSeqs, type DB, type SpanRecord, type SpanNode, type TraceDetail, type RunRow, type ExperimentRow } from '../../traces/index.ts';
import type { StoredTrace } from '../../traces/traces.ts';
import { UserError, UsageError } from '../../base/errors.ts';

export interface LangfuseOptions {
  /** e.g. https://cloud.langfuse.com or http://localhost:3000 */
  host: string;
  publicKey: string;
  secretKey: string;
  /** per request, retries included (default 20; LANGFUSE_TIMEOUT) */
  timeoutSeconds?: number;
  /** called after each request of spans with the traces sent so far and the number to send */
  onProgress?: (traces: number, total: number) => void;
}

export interface LangfuseExportResult {
  /** Langfuse traces: task runs and meta-agent conversations */
  traces: number;
  observations: number;
  scores: number;
}

const DEFAULT_HOST = 'https://cloud.langfuse.com';
const DEFAULT_TIMEOUT_S = 20;
/** a request of spans is sent after this many spans or bytes of attributes (the queue of the SDK's batch processor holds 2048) */
const FLUSH_SPANS = 400;
const FLUSH_BYTES = 3_000_000;
/** input and output fields longer than this (as JSON) are replaced by a preview */
const MAX_FIELD_CHARS = 400_000;
const SCORE_CONCURRENCY = 8;
/** a live export's last sync of a run does not try again this soon after a failure */
const FINAL_RETRY_MS = 30_000;

/** A UserError naming the first missing key. */
function requireKeys(publicKey: string | undefined, secretKey: string | undefined): void {
  const project = 'your Langfuse project (Settings → API Keys)';
  if (!publicKey) throw new UserError(`LANGFUSE_PUBLIC_KEY is not set: export the public key (pk-lf-…) of ${project}`);
  if (!secretKey) throw new UserError(`LANGFUSE_SECRET_KEY is not set: export the secret key (sk-lf-…) of ${project}`);
}

/** Host and keys from LANGFUSE_HOST (or LANGFUSE_BASE_URL), LANGFUSE_PUBLIC_KEY, LANGFUSE_SECRET_KEY; LANGFUSE_TIMEOUT (seconds) when set. */
export function langfuseOptionsFromEnv(env: NodeJS.ProcessEnv = process.env): LangfuseOptions {
  const publicKey = env.LANGFUSE_PUBLIC_KEY?.trim();
  const secretKey = env.LANGFUSE_SECRET_KEY?.trim();
  requireKeys(publicKey, secretKey);
  const host = env.LANGFUSE_HOST?.trim() || env.LANGFUSE_BASE_URL?.trim() || DEFAULT_HOST;
  const timeout = Number(env.LANGFUSE_TIMEOUT);
  return { host, publicKey: publicKey!, secretKey: secretKey!, ...(env.LANGFUSE_TIMEOUT && timeout > 0 ? { timeoutSeconds: timeout } : {}) };
}

/** The host without a trailing slash; a UserError when keys are missing or the host is no http(s) URL. */
function checkOptions(opts: LangfuseOptions): string {
  requireKeys(opts.publicKey, opts.secretKey);
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
// ids

const sha256 = (s: string): string => createHash('sha256').update(s).digest('hex');

/** The Langfuse trace id of one of our traces (the SDK's seeded trace id). */
export function langfuseTraceId(traceId: string): Promise<string> {
  return createTraceId(traceId);
}

/** The Langfuse observation id (OpenTelemetry span id) of one of our spans. */
export function langfuseObservationId(traceId: string, spanId: string): string {
  const id = sha256(`${traceId}/${spanId}`).slice(0, 16);
  return /^0+$/.test(id) ? '0000000000000001' : id;
}

/** The id of a trace's score: a UUID derived from the trace and the metric. */
function scoreId(traceId: string, metric: string): string {
  const h = sha256(`score/${traceId}/${metric}`);
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20, 32)}`;
}

/** Hands the tracer the ids of the span about to start (set just before each startSpan, synchronously). */
class GivenIds implements IdGenerator {
  next: { traceId: string; spanId: string } | null = null;
  generateTraceId(): string {
    if (!this.next) throw new Error('autoagent langfuse export: a span started without its id');
    return this.next.traceId;
  }
  generateSpanId(): string {
    if (!this.next) throw new Error('autoagent langfuse export: a span started without its id');
    return this.next.spanId;
  }
}

// ---------------------------------------------------------------------------------------------
// mapping

function isObj(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** A field as the SDK serializes it (strings as they are, the rest as JSON), with huge values replaced by a preview. */
function field(v: unknown): string | undefined {
  if (v === undefined || v === null) return undefined;
  const s = typeof v === 'string' ? v : JSON.stringify(v);
  if (s === undefined || s.length <= MAX_FIELD_CHARS) return s;
  return JSON.stringify({ truncated_by_autoagent: true, chars: s.length, preview: s.slice(0, 20_000) });
}

function level(s: SpanRecord): Pick<LangfuseSpanAttributes, 'level' | 'statusMessage'> {
  if (s.status === 'ok') return {};
  return { level: 'ERROR', statusMessage: s.error ?? (s.status === 'timeout' ? 'timed out' : 'error') };
}

function generationAttributes(s: SpanRecord): LangfuseGenerationAttributes {
  const req = isObj(s.input) ? s.input : {};
  const res = isObj(s.output) ? s.output : null;
  const params: Record<string, string | number> = {};
  for (const k of ['temperature', 'top_p', 'max_tokens', 'thinking_budget'] as const) {
    if (typeof req[k] === 'number') params[k] = req[k];
  }
  if (Array.isArray(req.stop)) params.stop = JSON.stringify(req.stop);
  else if (typeof req.stop === 'string') params.stop = req.stop;
  const messages: unknown[] = [];
  if (typeof req.system === 'string' && req.system) messages.push({ role: 'system', content: req.system });
  if (Array.isArray(req.messages)) messages.push(...req.messages);
  const tools = Array.isArray(req.tools) ? (req.tools as Array<{ name?: unknown }>).map((t) => String(t?.name ?? '')) : [];
  const attrs = s.attributes ?? {};
  const model = typeof attrs.model === 'string' ? attrs.model : typeof req.model === 'string' ? req.model : undefined;
  return {
    ...(model ? { model } : {}),
    modelParameters: params,
    input: field(messages.length ? messages : s.input),
    output: field(res ? { role: 'assistant', content: res.content ?? null } : s.output),
    usageDetails: {
      input: Math.max(0, s.input_tokens - s.cache_read_tokens - s.cache_write_tokens),
      input_cache_read: s.cache_read_tokens,
      input_cache_creation: s.cache_write_tokens,
      output: s.output_tokens,
      total: s.input_tokens + s.output_tokens,
    },
    costDetails: { total: s.cost_usd },
    metadata: {
      span_kind: s.kind,
      ...(typeof req.provider === 'string' ? { provider: req.provider } : {}),
      tools,
      stop_reason: res?.stop_reason ?? null,
      latency_ms: attrs.latency_ms ?? null,
      attempts: attrs.attempts ?? null,
      cached: attrs.cached ?? false,
    },
    ...level(s),
  };
}

/** What a trace needs besides its rows: the run and the experiment it belongs to. */
interface TraceContext {
  run: RunRow;
  decision: string;
  experimentId: number | null;
  hypothesis: string | null;
}

/** `<benchmark>/<task>`; task ids that already start with their benchmark (`gsm8k/12`) are not prefixed twice. */
export function traceName(t: Pick<StoredTrace, 'benchmark' | 'task_id'>): string {
  return t.task_id.startsWith(`${t.benchmark}/`) ? t.task_id : `${t.benchmark}/${t.task_id}`;
}

/** Trace-level attributes, set on every observation of the trace. */
function traceLevelAttributes(t: StoredTrace, ctx: TraceContext): Attributes {
  const proposal = t.role === 'proposal';
  const seq = t.experiment_seq;
  const stage = seq === null ? 'eval' : seq === -2 ? 'ablation' : seq < 0 ? 'final' : `exp-${seq}`;
  const metadata: Record<string, unknown> = {
    run_id: ctx.run.id,
    role: t.role ?? 'task',
    experiment_seq: seq,
    experiment_id: ctx.experimentId,
    decision: ctx.decision,
    hypothesis: ctx.hypothesis === null ? null : ctx.hypothesis.length > 500 ? ctx.hypothesis.slice(0, 500) + '…' : ctx.hypothesis,
    benchmark: t.benchmark,
    split: t.split,
    repeat: t.repeat,
    task_id: t.task_id,
    harness: t.harness,
    status: t.status,
    error: t.error,
    score: t.score,
    pass: t.pass,
    finalized: t.finalized,
    input_tokens: t.input_tokens,
    output_tokens: t.output_tokens,
    cache_read_tokens: t.cache_read_tokens,
    cache_write_tokens: t.cache_write_tokens,
    cost_usd: t.cost_usd,
  };
  const out: Attributes = {
    [LangfuseOtelSpanAttributes.TRACE_NAME]: proposal ? 'meta-agent/proposal' : traceName(t),
    [LangfuseOtelSpanAttributes.TRACE_SESSION_ID]: ctx.run.id,
    [LangfuseOtelSpanAttributes.TRACE_TAGS]: (proposal ? ['proposal', stage, ctx.decision] : [stage, ctx.decision, t.benchmark, t.split]).filter(Boolean),
  };
  for (const [k, v] of Object.entries(metadata)) {
    if (v === null || v === undefined) continue;
    out[`${LangfuseOtelSpanAttributes.TRACE_METADATA}.${k}`] = typeof v === 'string' ? v : JSON.stringify(v);
  }
  return out;
}

function attributeBytes(a: Attributes): number {
  let n = 0;
  for (const [k, v] of Object.entries(a)) n += k.length + (typeof v === 'string' ? v.length : JSON.stringify(v ?? null).length);
  return n;
}

interface ScoreRequest {
  id: string;
  traceId: string;
  observationId?: string;
  name: string;
  value: number;
  dataType: 'NUMERIC';
  comment?: string;
  metadata: Record<string, unknown>;
  environment?: string;
}

// ---------------------------------------------------------------------------------------------
// errors

interface HttpishError {
  code?: unknown;
  statusCode?: unknown;
  data?: unknown;
  body?: unknown;
  message?: string;
  cause?: { code?: unknown; message?: unknown };
}

/** One line for a failed request: keys refused, an HTTP error, an unreachable host, no answer. */
function describeFailure(e: unknown, host: string, what: string, timeoutS: number): string {
  const err = (e ?? {}) as HttpishError;
  const status = typeof err.statusCode === 'number' ? err.statusCode : typeof err.code === 'number' ? err.code : null;
  const oneLine = (v: unknown): string => (typeof v === 'string' ? v : v === undefined || v === null ? '' : JSON.stringify(v)).replace(/\s+/g, ' ').trim().slice(0, 200);
  if (status === 401 || status === 403) {
    return `Langfuse rejected the keys (${status} from ${host}): check that LANGFUSE_PUBLIC_KEY and LANGFUSE_SECRET_KEY belong to a project on that host`;
  }
  if (status !== null) {
    const detail = oneLine(err.data ?? err.body);
    return `Langfuse at ${host} refused ${what} (HTTP ${status}${detail ? `: ${detail}` : ''})`;
  }
  const netCode = typeof err.code === 'string' ? err.code : typeof err.cause?.code === 'string' ? err.cause.code : null;
  if (netCode) return `cannot reach Langfuse at ${host} (${netCode}): check LANGFUSE_HOST`;
  const message = oneLine(err.message ?? String(e));
  if (/timed? ?out|timeout/i.test(message)) return `no answer from Langfuse at ${host} within ${timeoutS} s while sending ${what}`;
  if (/fetch failed/i.test(message)) return `cannot reach Langfuse at ${host} (${oneLine(err.cause?.message) || message}): check LANGFUSE_HOST`;
  return `cannot export ${what} to Langfuse at ${host}: ${message}`;
}

// ---------------------------------------------------------------------------------------------
// the sink: our own tracer provider, Langfuse's span processor, Langfuse's API client

class LangfuseSink {
  private readonly ids = new GivenIds();
  private readonly provider: BasicTracerProvider;
  private readonly processor: LangfuseSpanProcessor;
  private readonly tracer: Tracer;
  private readonly client: LangfuseClient;
  readonly host: string;
  private readonly timeoutS: number;
  private pendingSpans = 0;
  private pendingBytes = 0;
  private readonly scores: ScoreRequest[] = [];
  private closed = false;

  constructor(opts: LangfuseOptions) {
    this.host = checkOptions(opts);
    this.timeoutS = opts.timeoutSeconds && opts.timeoutSeconds > 0 ? opts.timeoutSeconds : DEFAULT_TIMEOUT_S;
    this.processor = new LangfuseSpanProcessor({
      publicKey: opts.publicKey,
      secretKey: opts.secretKey,
      baseUrl: this.host,
      timeout: this.timeoutS,
      // requests are sent by flush() only: a batch the processor sent by itself would fail unheard
      flushAt: 2048,
      flushInterval: 24 * 3600,
      // every span of this provider is ours (the default filter keeps only the SDK's own tracer)
      shouldExportSpan: () => true,
      // data: URIs in inputs stay in the observation instead of going to the media API
      mediaUploadEnabled: false,
    });
    this.provider = new BasicTracerProvider({
      idGenerator: this.ids,
      sampler: new AlwaysOnSampler(),
      spanLimits: { attributeCountLimit: 1024 },
      spanProcessors: [this.processor],
    });
    this.tracer = this.provider.getTracer('autoagent');
    this.client = new LangfuseClient({ publicKey: opts.publicKey, secretKey: opts.secretKey, baseUrl: this.host, timeout: this.timeoutS });
  }

  /** Whether enough spans wait for a request. */
  get full(): boolean {
    return this.pendingSpans >= FLUSH_SPANS || this.pendingBytes >= FLUSH_BYTES;
  }

  private startSpan(name: string, traceId: string, spanId: string, startedAt: number, parent: Span | null): Span {
    this.ids.next = { traceId, spanId };
    try {
      const ctx = parent ? otelTrace.setSpan(ROOT_CONTEXT, parent) : ROOT_CONTEXT;
      return this.tracer.startSpan(name, { startTime: new Date(startedAt) }, ctx);
    } finally {
      this.ids.next = null;
    }
  }

  /** Adds one of our traces (its observations and its score); returns its number of observations. */
  async add(detail: TraceDetail, ctx: TraceContext): Promise<number> {
    if (this.closed) throw new Error('the Langfuse export was shut down');
    const t = detail.trace;
    const traceId = await langfuseTraceId(t.id);
    const traceAttrs = traceLevelAttributes(t, ctx);
    const version = t.harness || undefined;
    const roots = detail.roots;
    const ioRoot = roots.find((s) => s.kind === 'agent') ?? roots[0];
    let n = 0;
    const open = (s: SpanNode, parent: Span | null): void => {
      const otelSpan = this.startSpan(s.kind === 'scoring' ? `scoring:${s.name}` : s.name, traceId, langfuseObservationId(t.id, s.id), s.started_at, parent);
      const base: LangfuseSpanAttributes = {
        input: field(s.input),
        output: field(s.output),
        metadata: { span_kind: s.kind, ...(isObj(s.attributes) ? s.attributes : {}) },
        ...(version ? { version } : {}),
        ...level(s),
      };
      const obs =
        s.kind === 'model' ? new LangfuseGeneration({ otelSpan, attributes: { ...generationAttributes(s), ...(version ? { version } : {}) } })
        : s.kind === 'tool' ? new LangfuseTool({ otelSpan, attributes: base })
        : s.kind === 'agent' || s.kind === 'subagent' ? new LangfuseAgent({ otelSpan, attributes: base })
        : new LangfuseSpan({ otelSpan, attributes: base });
      otelSpan.setAttributes(traceAttrs);
      if (s === ioRoot) otelSpan.setAttributes(createTraceAttributes(traceIO(detail)));
      if (s.status !== 'ok') otelSpan.setStatus({ code: SpanStatusCode.ERROR, message: s.error ?? s.status });
      for (const c of s.children) open(c, otelSpan);
      // the SDK's spans are ReadableSpans: their attributes are what the request will carry
      this.pendingBytes += attributeBytes((otelSpan as unknown as { attributes?: Attributes }).attributes ?? {});
      obs.end(new Date(Math.max(s.ended_at, s.started_at)));
      n++;
    };
    for (const r of roots) open(r, null);
    this.pendingSpans += n;
    if (t.role !== 'proposal') {
      const scoring = detail.spans.find((s) => s.kind === 'scoring');
      const feedback = isObj(scoring?.output) && typeof scoring.output.feedback === 'string' ? scoring.output.feedback : null;
      const comment = t.score === null ? `no score: ${t.error ?? t.status}` : feedback;
      const env = process.env.LANGFUSE_TRACING_ENVIRONMENT?.trim();
      this.scores.push({
        id: scoreId(t.id, ctx.run.metric_name),
        traceId,
        ...(scoring ? { observationId: langfuseObservationId(t.id, scoring.id) } : {}),
        name: ctx.run.metric_name,
        value: t.score ?? 0,
        dataType: 'NUMERIC',
        ...(comment ? { comment: comment.length > 2000 ? comment.slice(0, 2000) + '…' : comment } : {}),
        metadata: { pass: t.pass, status: t.status, experiment_seq: t.experiment_seq, repeat: t.repeat, autoagent_trace_id: t.id },
        ...(env ? { environment: env } : {}),
      });
    }
    return n;
  }

  /** Sends the spans added so far (one request); a UserError when Langfuse did not take them. */
  async flushSpans(): Promise<void> {
    this.pendingSpans = 0;
    this.pendingBytes = 0;
    try {
      await this.processor.forceFlush();
    } catch (e) {
      throw new UserError(describeFailure(e, this.host, 'the traces', this.timeoutS));
    }
  }

  /** Sends the scores added so far; returns how many. */
  async flushScores(): Promise<number> {
    const todo = this.scores.splice(0);
    let next = 0;
    let failure: unknown = null;
    const worker = async () => {
      while (failure === null && next < todo.length) {
        const s = todo[next++]!;
        try {
          await this.client.api.scores.create(s, { timeoutInSeconds: this.timeoutS, maxRetries: 2 });
        } catch (e) {
          failure ??= e;
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(SCORE_CONCURRENCY, todo.length) }, worker));
    if (failure !== null) throw new UserError(describeFailure(failure, this.host, 'the scores', this.timeoutS));
    return todo.length;
  }

  /** Forgets what was added and not sent (after a failed export: its scores must not go out with the next one). */
  discard(): void {
    this.scores.length = 0;
    this.pendingSpans = 0;
    this.pendingBytes = 0;
  }

  async shutdown(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.scores.length = 0;
    await this.provider.shutdown().catch(() => undefined);
  }
}

/** The trace's input (the task, as the agent got it) and output (its final answer). */
function traceIO(detail: TraceDetail): { input?: unknown; output?: unknown } {
  const t = detail.trace;
  if (t.role === 'proposal') {
    let output: unknown = t.output;
    try {
      output = t.output === null ? null : JSON.parse(t.output);
    } catch {
      // the proposal as text
    }
    return { input: field({ proposer: t.harness, experiment_seq: t.experiment_seq }), output: field(output) };
  }
  const agent = detail.spans.find((s) => s.kind === 'agent' && s.parent_id === null);
  const task = isObj(agent?.input) && isObj(agent.input.task) ? agent.input.task : { id: t.task_id };
  return { input: field(task), output: field(t.output) };
}

// ---------------------------------------------------------------------------------------------
// exporting

function contextOf(db: DB, run: RunRow): (t: StoredTrace) => TraceContext {
  const experiments = new Map(listExperiments(db, run.id).map((e) => [e.seq, e]));
  return (t) => {
    const seq = t.experiment_seq;
    const e = seq === null ? undefined : experiments.get(seq);
    // seq -1: the final evaluation on the sealed test split (src/finalize.ts); -2: `finalize --ablate` (src/ablate.ts)
    const decision = seq === null ? 'eval' : seq === -2 ? 'ablation' : seq < 0 ? 'finalization' : seq === 0 ? 'baseline' : e?.decision ?? 'pending';
    return { run, decision, experimentId: e?.id ?? null, hypothesis: e?.hypothesis ?? null };
  };
}

/** Sends the given traces: spans in requests of a few hundred, then the scores. */
async function sendTraces(sink: LangfuseSink, db: DB, ids: string[], ctxOf: (t: StoredTrace) => TraceContext, onProgress?: (n: number, total: number) => void): Promise<LangfuseExportResult> {
  const result: LangfuseExportResult = { traces: 0, observations: 0, scores: 0 };
  let added = 0;
  try {
    for (const id of ids) {
      const detail = getTrace(db, id);
      if (!detail) continue;
      result.observations += await sink.add(detail, ctxOf(detail.trace));
      added++;
      if (sink.full) {
        await sink.flushSpans();
        result.traces = added;
        onProgress?.(result.traces, ids.length);
      }
    }
    await sink.flushSpans();
    result.traces = added;
    onProgress?.(result.traces, ids.length);
    result.scores = await sink.flushScores();
    return result;
  } catch (e) {
    sink.discard();
    throw e;
  }
}

function requireRun(db: DB, runId: string): RunRow {
  const run = getRun(db, runId);
  if (!run) throw new UsageError(`no run ${runId} in this store (see \`autoagent status\`)`);
  return run;
}

/** What the exports table calls this target. */
export const LANGFUSE_TARGET = 'langfuse';

/**
 * Sends every trace of a run to Langfuse (task runs and the meta-agent's conversations); returns
 * how many traces, observations and scores Langfuse took, and records the run's decided
 * experiments as delivered (a live export resumed later does not send them again). Throws a
 * one-line UserError when Langfuse did not take them (the traces sent before the failure stay in
 * Langfuse; exporting again updates them).
 */
export async function exportToLangfuse(db: DB, runId: string, opts: LangfuseOptions): Promise<LangfuseExportResult> {
  const sink = new LangfuseSink(opts);
  try {
    const run = requireRun(db, runId);
    const decided = listExperiments(db, run.id).filter((e) => e.status === 'decided');
    const all = tracesOf(db, { runId: run.id, role: 'any' });
    const result = await sendTraces(sink, db, all.map((t) => t.id), contextOf(db, run), opts.onProgress);
    const perSeq = new Map<number | null, number>();
    for (const t of all) perSeq.set(t.experiment_seq, (perSeq.get(t.experiment_seq) ?? 0) + 1);
    for (const e of decided) recordExport(db, run.id, e.seq, LANGFUSE_TARGET, perSeq.get(e.seq) ?? 0);
    return result;
  } finally {
    await sink.shutdown();
  }
}

/** The run's decided experiments that Langfuse has not taken yet (the exports table does not list them), in order. */
function undeliveredExperiments(db: DB, runId: string): ExperimentRow[] {
  const done = exportedSeqs(db, runId, LANGFUSE_TARGET);
  return listExperiments(db, runId).filter((e) => e.status === 'decided' && !done.has(e.seq));
}

export type LiveExportResult = ({ ok: true } & LangfuseExportResult) | { ok: false; error: string };

/**
 * Live export during a run (`export: { langfuse: true }` in the study). The loop calls `sync(db,
 * runId)` whenever it has decided something: every decided experiment that the store's exports
 * table does not list yet is sent (its task runs and the meta-agent's conversation that proposed
 * it, with its decision), in order, and listed once Langfuse took it. Because the list is in
 * SQLite, a run killed before an export finished, or one whose export was refused, sends what is
 * missing when it is resumed; ids are deterministic, so whatever did arrive is updated, not copied.
 * One tracer provider, span processor and API client serve the whole run.
 *
 * A failed live export never stops a run: sync, exportExperiment and shutdown never throw (nor
 * reject). A failure is reported as one line to `onError` (default: stderr, prefixed `langfuse: `),
 * the same failure again is not repeated, and the next sync tries again. Work is serialized, and
 * at most one sync waits behind the one under way, so a Langfuse that is down costs one timeout
 * per sync, not a growing backlog.
 */
export class LangfuseLiveExporter {
  private readonly sink: LangfuseSink;
  private readonly onError: (message: string) => void;
  private queue: Promise<unknown> = Promise.resolve();
  /** a sync queued and not started yet: a second request joins it (and makes it final if it is) */
  private waiting: Promise<void> | null = null;
  private waitingFinal = false;
  /** when the last send failed (ms since the epoch; 0: never) */
  private lastFailureAt = 0;
  /** the last failure reported (without its experiment), so a Langfuse that stays down is said once */
  private lastFailure: string | null = null;

  constructor(opts: LangfuseOptions & { onError?: (message: string) => void }) {
    this.sink = new LangfuseSink(opts);
    this.onError = opts.onError ?? ((m) => void process.stderr.write(`langfuse: ${m}\n`));
  }

  /** the Langfuse host, without a trailing slash */
  get host(): string {
    return this.sink.host;
  }

  /**
   * From LANGFUSE_PUBLIC_KEY, LANGFUSE_SECRET_KEY, LANGFUSE_HOST (or LANGFUSE_BASE_URL) and
   * LANGFUSE_TIMEOUT. Throws a one-line UserError when a key is missing or the host is no URL:
   * call it when the run starts, so a study asking for a live export stops before the first experiment.
   */
  static fromEnv(env: NodeJS.ProcessEnv = process.env, o: { onError?: (message: string) => void } = {}): LangfuseLiveExporter {
    return new LangfuseLiveExporter({ ...langfuseOptionsFromEnv(env), ...o });
  }

  private report(message: string, failure: string | null): void {
    if (failure !== null && failure === this.lastFailure) return;
    this.lastFailure = failure;
    try {
      this.onError(message);
    } catch {
      // a failing logger must not stop the run either
    }
  }

  private async send(db: DB, runId: string, seq: number): Promise<LiveExportResult> {
    try {
      const run = requireRun(db, runId);
      const ids = tracesOf(db, { runId: run.id, experimentSeq: seq, role: 'any' }).map((t) => t.id);
      const result = await sendTraces(this.sink, db, ids, contextOf(db, run));
      // a request went through: say so once after a failure (an experiment without traces sends none)
      if (this.lastFailure !== null && result.traces > 0) this.report(`export works again (experiment ${seq} sent)`, null);
      return { ok: true, ...result };
    } catch (e) {
      const why = e instanceof UserError ? e.message : (e as Error)?.message ?? String(e);
      const error = `experiment ${seq} not exported: ${why}`;
      this.lastFailureAt = Date.now();
      this.report(error, why);
      return { ok: false, error };
    }
  }

  /** Sends experiment `seq` of the run (its task traces, the proposal's trace, the scores), whatever the exports table says. Never throws. */
  exportExperiment(db: DB, runId: string, seq: number): Promise<LiveExportResult> {
    const job = this.queue.then(() => this.send(db, runId, seq));
    this.queue = job;
    return job;
  }

  /**
   * Sends the run's decided experiments not yet delivered, in order, recording each one Langfuse
   * took; stops at the first failure (the next sync starts there). With `final` (the run is
   * stopping) it also sends traces whose experiment was never recorded (a proposal that failed
   * last), without listing them: a resumed run may still make that experiment; and a final sync
   * that comes less than `FINAL_RETRY_MS` after a failure does not try again (a Langfuse that is
   * down must not hold the end of a run: `undelivered` says what is left). Never throws.
   */
  sync(db: DB, runId: string, o: { final?: boolean } = {}): Promise<void> {
    if (this.waiting) {
      this.waitingFinal ||= Boolean(o.final);
      return this.waiting;
    }
    this.waitingFinal = Boolean(o.final);
    const job: Promise<void> = this.queue.then(async () => {
      this.waiting = null;
      const final = this.waitingFinal;
      if (final && this.lastFailureAt > 0 && Date.now() - this.lastFailureAt < FINAL_RETRY_MS) return;
      try {
        for (const e of undeliveredExperiments(db, runId)) {
          const r = await this.send(db, runId, e.seq);
          if (!r.ok) return;
          recordExport(db, runId, e.seq, LANGFUSE_TARGET, r.traces);
        }
        if (final) {
          const known = new Set(listExperiments(db, runId).map((e) => e.seq));
          const orphans = new Set(tracesOf(db, { runId, role: 'any' }).map((t) => t.experiment_seq).filter((q): q is number => q !== null && q >= 0 && !known.has(q)));
          for (const seq of orphans) if (!(await this.send(db, runId, seq)).ok) return;
        }
      } catch (e) {
        this.report(`live export failed: ${(e as Error)?.message ?? String(e)}`, String(e));
      }
    });
    this.waiting = job;
    this.queue = job;
    return job;
  }

  /** How many decided experiments of the run Langfuse has not taken yet. */
  undelivered(db: DB, runId: string): number {
    return undeliveredExperiments(db, runId).length;
  }

  /**
   * Waits for the exports under way (at most `waitMs`, default: as long as they take) and closes
   * the connection. Never throws.
   */
  async shutdown(o: { waitMs?: number } = {}): Promise<void> {
    const closing = this.queue.catch(() => undefined).then(() => this.sink.shutdown());
    if (o.waitMs === undefined) return closing;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([closing, new Promise<void>((ok) => (timer = setTimeout(ok, o.waitMs)))]);
    clearTimeout(timer);
  }
}
