/**
 * Evaluate one harness on a list of tasks: a pool of sandboxed workers (one per concurrency
 * slot, each running tasks one at a time), a broker that makes every model call for them
 * (the parent holds the keys, records each call, enforces the token and dollar budgets), the
 * locked scorer, and a trace per task written by this process only.
 */
import { mkdirSync, rmSync, writeFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { randomUUID, createHash } from 'node:crypto';
import type { Writable } from 'node:stream';
import { runSandboxed, sandboxPath, type SandboxResult } from '../sandbox/index.ts';
import { cachedResponse, cacheResponse, type DB } from '../traces/index.ts';
import { TraceWriter } from '../traces/traces.ts';
import type { SpanRecord } from '../traces/types.ts';
import type { Benchmark, Task, Aggregate } from '../benchmarks/types.ts';
import { aggregate } from '../benchmarks/aggregate.ts';
import type { Harness, Route } from './harness.ts';
import { staticRoute, applyTarget, renderTemplate, defaultUserMessage } from './harness.ts';
import type { ModelRequest, ModelResponse, Provider } from './types.ts';
import { MARK, type ToParent, type ToWorker, type WorkerRequest } from './protocol.ts';
import { providerFailure, type ProviderFailure, type ProviderFailureKind } from './providers/errors.ts';

const WORKER = resolve(import.meta.dirname, 'worker.ts');
/** tsx's loader by absolute URL: the worker's cwd (a scratch folder) has no node_modules */
const TSX = import.meta.resolve('tsx');

export class BudgetExceeded extends Error {}

/** Token and dollar limits of a run, shared by every evaluation of the run. */
export class SpendGuard {
  constructor(
    public tokens: number,
    public dollars: number,
    readonly maxTokens: number,
    readonly maxDollars: number,
  ) {}
  check(): void {
    if (this.maxTokens > 0 && this.tokens >= this.maxTokens) throw new BudgetExceeded(`token budget reached (${this.tokens} of ${this.maxTokens})`);
    if (this.maxDollars > 0 && this.dollars >= this.maxDollars) throw new BudgetExceeded(`dollar budget reached ($${this.dollars.toFixed(4)} of $${this.maxDollars})`);
  }
  add(r: ModelResponse): void {
    const tokens = r.usage.input_tokens + r.usage.output_tokens;
    this.tokens += tokens;
    this.dollars += r.cost_usd;
    for (const s of this.sinks) s(tokens, r.cost_usd);
  }
  private readonly sinks: Array<(tokens: number, dollars: number) => void> = [];
  /** every later add() is also told to `sink` (what it added): a count shared with other processes (src/queue/spend.ts) */
  share(sink: (tokens: number, dollars: number) => void): void {
    this.sinks.push(sink);
  }
  /** totals counted elsewhere (the whole run's, on the queue): this guard's rise to them, never fall */
  observe(tokens: number, dollars: number): void {
    if (Number.isFinite(tokens)) this.tokens = Math.max(this.tokens, tokens);
    if (Number.isFinite(dollars)) this.dollars = Math.max(this.dollars, dollars);
  }
}

export interface TaskResult {
  task_id: string;
  trace_id: string;
  status: 'ok' | 'error' | 'timeout';
  score: number;
  pass: boolean;
  feedback: string;
  output: string;
  error: string | null;
  steps: number;
  tokens: number;
  cost_usd: number;
  ms: number;
  route: string;
  /** the task failed because the model provider did (connection, timeout, auth, 5xx or 429 after the retries), not because of the harness */
  provider_failure: ProviderFailureKind | null;
}

export interface EvalOptions {
  db: DB;
  harness: Harness;
  harnessName: string;
  benchmark: Benchmark;
  tasks: Task[];
  provider: Provider;
  groupId: string;
  runId?: string | null;
  experimentSeq?: number | null;
  repeat?: number;
  concurrency: number;
  /** absolute paths the agent must not see (data root, answer keys, the store) */
  hide: string[];
  /** absolute paths the worker must read (autoagent's code, the harness), re-exposed inside hidden ones */
  readable: string[];
  unsafeNoSandbox: boolean;
  memoryMB?: number;
  maxProcesses?: number;
  guard: SpendGuard;
  /** replay identical requests from the response cache (and fill it) */
  cache?: boolean;
  signal?: AbortSignal;
  onTask?: (r: TaskResult, done: number, total: number) => void;
  /** scorer settings */
  scoreTimeoutMs?: number;
  /**
   * When the provider makes the evaluation an error, not a score: any auth failure, or provider
   * failures on more than `maxRate` of the evaluation's `total` tasks (default: these tasks;
   * an evaluation run in parts passes the earlier parts' `done` tasks and `failed` among them).
   * Default maxRate 0.1.
   */
  providerLimit?: { maxRate: number; total?: number; done?: number; failed?: number };
}

export interface EvalSummary {
  results: TaskResult[];
  aggregate: Aggregate;
  tokens: number;
  cost_usd: number;
  /** the run's budget ran out during this evaluation: results are partial */
  budgetExceeded: string | null;
  /** the model provider failed (see providerLimit): results are partial and are not a score; one line */
  providerFailed: string | null;
}

interface OpenTask {
  task: Task;
  traceId: string;
  rootSpan: string;
  started: number;
  route: Route;
  tokens: number;
  cost: number;
  usage: { i: number; o: number; cr: number; cw: number };
  /** the last provider failure of one of the task's model calls */
  providerFailure?: ProviderFailure;
  resolve: (r: { output: string; steps: number; stop: string; error?: string; status: 'ok' | 'error' | 'timeout' }) => void;
}

/** One sandboxed worker process. */
class Worker {
  private stdin: Writable | null = null;
  private buffer = '';
  private readonly abort = new AbortController();
  readonly exited: Promise<SandboxResult>;
  private readyResolve!: () => void;
  readonly ready = new Promise<void>((r) => (this.readyResolve = r));
  current: OpenTask | null = null;
  stderr = '';

  constructor(opts: EvalOptions, readonly scratch: string, private readonly onMessage: (w: Worker, m: ToParent) => void) {
    mkdirSync(join(scratch, 'home'), { recursive: true });
    this.exited = runSandboxed({
      command: `exec "${process.execPath}" --import "${TSX}" "${WORKER}" "${opts.harness.dir}"`,
      cwd: scratch,
      writable: [scratch],
      // the minimal system view, plus autoagent's code and the harness; never a checkout's git dir or store
      hide: [...opts.hide, ...opts.readable.flatMap((r) => [join(r, '.git'), join(r, '.autoagent')])],
      readonly: opts.readable,
      env: {
        PATH: sandboxPath(), HOME: join(scratch, 'home'), LANG: 'C.UTF-8', TMPDIR: '/tmp',
        NODE_NO_WARNINGS: '1',
      },
      timeoutMs: 24 * 3600 * 1000,
      memoryMB: opts.memoryMB ?? 0,
      maxProcesses: opts.maxProcesses,
      unsafeNoSandbox: opts.unsafeNoSandbox,
      interactive: (s) => (this.stdin = s),
      signal: this.abort.signal,
      maxOutputBytes: 64 * 1024,
      onOutput: (stream, chunk) => (stream === 'stdout' ? this.onStdout(chunk) : void (this.stderr = (this.stderr + chunk).slice(-4000))),
    });
    void this.exited.then(() => this.readyResolve());
  }

  private onStdout(chunk: string): void {
    this.buffer += chunk;
    let nl: number;
    while ((nl = this.buffer.indexOf('\n')) >= 0) {
      const line = this.buffer.slice(0, nl);
      this.buffer = this.buffer.slice(nl + 1);
      if (!line.startsWith(MARK)) continue;
      let msg: ToParent;
      try {
        msg = JSON.parse(line.slice(MARK.length));
      } catch {
        continue;
      }
      if (msg.t === 'ready') this.readyResolve();
      else this.onMessage(this, msg);
    }
  }

  send(m: ToWorker): void {
    this.stdin?.write(JSON.stringify(m) + '\n');
  }

  kill(): void {
    this.abort.abort();
  }
}

/** what a worker reports is untrusted: keep at most ~200 KB of it per field */
const MAX_REPORTED = 200_000;
function clamp(v: unknown): unknown {
  if (v === undefined) return null;
  const text = typeof v === 'string' ? v : JSON.stringify(v);
  if (text === undefined || text.length <= MAX_REPORTED) return v;
  return { truncated: true, chars: text.length, preview: text.slice(0, MAX_REPORTED) };
}

function requestHash(req: ModelRequest): string {
  return createHash('sha256').update(JSON.stringify(req)).digest('hex');
}

export async function evaluateHarness(opts: EvalOptions): Promise<EvalSummary> {
  const { db, harness, benchmark } = opts;
  const cfg = harness.config;
  const results: TaskResult[] = [];
  let budgetExceeded: string | null = null;
  // provider failures: once the evaluation cannot be a score, no task is dispatched and no call is sent
  const limit = opts.providerLimit ?? { maxRate: 0.1 };
  const limitTotal = limit.total ?? opts.tasks.length;
  const allowedFailures = Math.floor(limit.maxRate * limitTotal + 1e-9);
  let providerFailures = limit.failed ?? 0;
  let providerFailed: string | null = null;
  let firstDetail: string | null = null;
  const stopCalls = new AbortController();
  const callSignal = opts.signal ? AbortSignal.any([opts.signal, stopCalls.signal]) : stopCalls.signal;
  const stopForProvider = (reason: string) => {
    if (providerFailed) return;
    providerFailed = reason;
    stopCalls.abort(new Error('not sent: the evaluation stopped because the model provider failed'));
  };
  const scratchRoot = mkdtempSync(join(tmpdir(), 'autoagent-eval-'));
  // spans are queued and written in batches (one transaction each); every trace is complete on disk when its task ends
  const writer = new TraceWriter(db, { batchSpans: 256, flushMs: 500 });
  const insertSpan = (_db: DB, sp: SpanRecord) => writer.span(sp);
  const openSpans = new Map<string, { traceId: string; parent: string | null; kind: SpanRecord['kind']; name: string; at: number; input: unknown }>();

  const recordModel = (t: OpenTask, parent: string, name: string, req: ModelRequest, res: ModelResponse | null, error: string | null, started: number) => {
    insertSpan(db, {
      id: randomUUID(), trace_id: t.traceId, parent_id: parent, kind: 'model', name, status: error ? 'error' : 'ok',
      started_at: started, ended_at: Date.now(), input: req, output: res ? { content: res.content, stop_reason: res.stop_reason, raw: res.raw } : null,
      error, input_tokens: res?.usage.input_tokens ?? 0, output_tokens: res?.usage.output_tokens ?? 0,
      cache_read_tokens: res?.usage.cache_read_tokens ?? 0, cache_write_tokens: res?.usage.cache_write_tokens ?? 0,
      cost_usd: res?.cost_usd ?? 0,
      attributes: res ? { model: res.model, latency_ms: res.latency_ms, attempts: res.attempts, cached: (res as { cached?: boolean }).cached ?? false } : {},
    });
  };

  /** every model call of every task goes through here */
  const callModel = async (t: OpenTask, parent: string, name: string, wreq: WorkerRequest): Promise<ModelResponse> => {
    const req: ModelRequest = { ...wreq, provider: cfg.provider };
    const started = Date.now();
    try {
      if (providerFailed) throw new Error('not sent: the evaluation stopped because the model provider failed');
      opts.guard.check();
      if (cfg.max_task_tokens > 0 && t.tokens >= cfg.max_task_tokens) throw new Error(`the task used its ${cfg.max_task_tokens} tokens (max_task_tokens)`);
      let res: ModelResponse | null = null;
      const key = opts.cache ? requestHash(req) : null;
      if (key) {
        const cached = cachedResponse(db, key);
        if (cached !== undefined) res = { ...JSON.parse(cached), cached: true, cost_usd: 0 };
      }
      if (!res) {
        res = await opts.provider.call(req, callSignal);
        if (key) cacheResponse(db, key, JSON.stringify(res));
      }
      opts.guard.add(res);
      t.tokens += res.usage.input_tokens + res.usage.output_tokens;
      t.cost += res.cost_usd;
      t.usage.i += res.usage.input_tokens;
      t.usage.o += res.usage.output_tokens;
      t.usage.cr += res.usage.cache_read_tokens;
      t.usage.cw += res.usage.cache_write_tokens;
      recordModel(t, parent, name, req, res, null, started);
      return res;
    } catch (e) {
      if (e instanceof BudgetExceeded) budgetExceeded = e.message;
      const failure = providerFailure(e, opts.provider.baseURL);
      if (failure) {
        t.providerFailure = failure;
        // a key the server refuses fails every task alike: stop at once
        if (failure.kind === 'auth') stopForProvider(`the model provider refused the credentials on task ${t.task.id}: ${failure.detail}`);
      }
      recordModel(t, parent, name, req, null, (e as Error).message, started);
      throw e;
    }
  };

  const onMessage = (w: Worker, m: ToParent) => {
    const t = w.current;
    if (!t) return;
    if (m.t === 'model') {
      void callModel(t, m.span, m.name, m.request).then(
        (response) => w.send({ t: 'model_result', id: m.id, response }),
        (e: Error) => w.send({ t: 'model_result', id: m.id, error: e.message }),
      );
    } else if (m.t === 'span' && m.phase === 'start') {
      if (typeof m.id !== 'string' || openSpans.has(m.id)) return;
      const kind = m.kind === 'tool' || m.kind === 'subagent' ? m.kind : 'turn';
      openSpans.set(m.id, { traceId: t.traceId, parent: typeof m.parent === 'string' ? m.parent : t.rootSpan, kind, name: String(m.name).slice(0, 200), at: Number(m.at) || Date.now(), input: clamp(m.input) });
    } else if (m.t === 'span' && m.phase === 'end') {
      const s = openSpans.get(m.id);
      if (!s || s.traceId !== t.traceId) return;
      openSpans.delete(m.id);
      insertSpan(db, {
        id: m.id, trace_id: s.traceId, parent_id: s.parent, kind: s.kind, name: s.name, status: m.status === 'error' ? 'error' : 'ok',
        started_at: s.at, ended_at: Number(m.at) || Date.now(), input: s.input ?? null, output: clamp(m.output), error: m.error ? String(m.error).slice(0, 10_000) : null,
        input_tokens: 0, output_tokens: 0, cache_read_tokens: 0, cache_write_tokens: 0, cost_usd: 0, attributes: { reported_by: 'sandbox' },
      });
    } else if (m.t === 'done' && m.task_id === t.task.id) {
      t.resolve({ output: String(m.output ?? '').slice(0, MAX_REPORTED), steps: Number(m.steps) || 0, stop: m.stop, error: m.error, status: m.stop === 'error' ? 'error' : 'ok' });
    }
  };

  const route = async (task: Task, t: OpenTask): Promise<Route> => {
    const base = staticRoute(cfg, task);
    const cls = cfg.routing.classifier;
    if (!cls || base.label !== 'default') return base;
    const prompt = renderTemplate(harness.prompts[cls.prompt]!, task);
    const labels = Object.keys(cls.routes);
    try {
      const res = await callModel(t, t.rootSpan, 'router', {
        model: cls.model ?? cfg.model, system: prompt, max_tokens: 16, tools: [], temperature: 0,
        messages: [{ role: 'user', content: [{ type: 'text', text: `${defaultUserMessage(task)}\n\nAnswer with one label: ${labels.join(', ')}` }] }],
      });
      const text = res.content.map((b) => (b.type === 'text' ? b.text : '')).join(' ');
      const label = labels.find((l) => new RegExp(`\\b${l}\\b`, 'i').test(text));
      return label ? applyTarget(base, cls.routes[label]!, `classifier: ${label}`) : base;
    } catch {
      return base;
    }
  };

  const queue = [...opts.tasks];
  const total = queue.length;
  const slot = async (n: number) => {
    let worker: Worker | null = null;
    const slotScratch = join(scratchRoot, `slot-${n}`);
    while (queue.length > 0 && !budgetExceeded && !providerFailed && !opts.signal?.aborted) {
      const task = queue.shift()!;
      if (!worker) {
        rmSync(slotScratch, { recursive: true, force: true });
        mkdirSync(slotScratch, { recursive: true });
        worker = new Worker(opts, slotScratch, onMessage);
        await worker.ready;
      }
      const result = await runOne(worker, task, slotScratch);
      results.push(result);
      if (result.provider_failure) {
        providerFailures++;
        if (providerFailures > allowedFailures) {
          const run = (limit.done ?? 0) + results.length;
          const pct = `${+(limit.maxRate * 100).toFixed(2)}%`;
          stopForProvider(`the model provider failed on ${providerFailures} of the ${run} tasks run (of ${limitTotal}; at most ${pct} may fail): ${firstDetail}`);
        }
      }
      opts.onTask?.(result, results.length, total);
      if (workerDead.has(worker)) worker = null;
    }
    if (worker) {
      worker.kill();
      await worker.exited;
    }
  };

  const workerDead = new WeakSet<Worker>();
  const runOne = async (worker: Worker, task: Task, slotScratch: string): Promise<TaskResult> => {
    const traceId = randomUUID();
    const rootSpan = randomUUID();
    const started = Date.now();
    const scratch = join(slotScratch, `task-${createHash('sha1').update(task.id).digest('hex').slice(0, 12)}`);
    rmSync(scratch, { recursive: true, force: true });
    mkdirSync(scratch, { recursive: true });
    for (const [p, content] of Object.entries(task.files ?? {})) {
      const abs = resolve(scratch, p);
      if (!abs.startsWith(scratch + '/')) continue;
      mkdirSync(dirname(abs), { recursive: true });
      writeFileSync(abs, content);
    }
    writer.trace({
      id: traceId, run_id: opts.runId ?? null, experiment_seq: opts.experimentSeq ?? null, group_id: opts.groupId, task_id: task.id,
      repeat: opts.repeat ?? 0, benchmark: benchmark.name, split: task.split, harness: opts.harnessName, status: 'ok', score: null, pass: null,
      output: null, error: null, started_at: started, ended_at: started, input_tokens: 0, output_tokens: 0, cache_read_tokens: 0, cache_write_tokens: 0, cost_usd: 0,
    });
    let settle!: OpenTask['resolve'];
    const done = new Promise<Parameters<OpenTask['resolve']>[0]>((r) => (settle = r));
    const open: OpenTask = { task, traceId, rootSpan, started, route: staticRoute(cfg, task), tokens: 0, cost: 0, usage: { i: 0, o: 0, cr: 0, cw: 0 }, resolve: settle };
    worker.current = open;
    open.route = await route(task, open);
    worker.send({ t: 'task', task: { id: task.id, input: task.input, tags: task.tags }, route: open.route, scratch, root_span: rootSpan });
    const deadline = cfg.task_timeout_seconds * 1000;
    let timer: NodeJS.Timeout | undefined;
    const outcome = await Promise.race([
      done,
      new Promise<Parameters<OpenTask['resolve']>[0]>((r) => (timer = setTimeout(() => r({ output: '', steps: 0, stop: 'error', status: 'timeout', error: `task ran past its ${cfg.task_timeout_seconds} s deadline and was killed` }), deadline))),
      worker.exited.then((x) => ({ output: '', steps: 0, stop: 'error', status: 'error' as const, error: `the task-agent worker exited (${x.timedOut ? 'deadline' : `code ${x.exitCode ?? x.signal}`}): ${worker.stderr.trim().split('\n').slice(-3).join(' | ').slice(0, 500)}` })),
    ]);
    clearTimeout(timer);
    worker.current = null;
    if (outcome.status !== 'ok' && outcome.stop === 'error' && (outcome.status === 'timeout' || outcome.error?.startsWith('the task-agent worker exited'))) {
      worker.kill();
      await worker.exited;
      workerDead.add(worker);
    }
    // spans the worker opened and never closed (killed mid-tool): record them as cut off
    for (const [id, s] of openSpans) {
      if (s.traceId !== traceId) continue;
      openSpans.delete(id);
      insertSpan(db, {
        id, trace_id: traceId, parent_id: s.parent, kind: s.kind, name: s.name, status: outcome.status === 'timeout' ? 'timeout' : 'error',
        started_at: s.at, ended_at: Date.now(), input: s.input ?? null, output: null, error: outcome.error ?? 'not finished',
        input_tokens: 0, output_tokens: 0, cache_read_tokens: 0, cache_write_tokens: 0, cost_usd: 0, attributes: { reported_by: 'sandbox', cut_off: true },
      });
    }
    // the locked scorer: the answer key never left this process
    const scoreStart = Date.now();
    let score = 0;
    let pass = false;
    let feedback = outcome.error ?? '';
    if (outcome.status === 'ok') {
      try {
        const s = await benchmark.scorer.score(task, benchmark.answers.get(task.id), outcome.output, {
          unsafeNoSandbox: opts.unsafeNoSandbox, timeoutMs: opts.scoreTimeoutMs ?? 10_000,
        });
        score = s.score;
        pass = s.pass;
        feedback = s.feedback;
      } catch (e) {
        feedback = `scorer failed: ${(e as Error).message}`;
      }
    }
    insertSpan(db, {
      id: randomUUID(), trace_id: traceId, parent_id: rootSpan, kind: 'scoring', name: benchmark.scorer.type, status: 'ok',
      started_at: scoreStart, ended_at: Date.now(), input: { output: outcome.output }, output: { score, pass, feedback },
      error: null, input_tokens: 0, output_tokens: 0, cache_read_tokens: 0, cache_write_tokens: 0, cost_usd: 0, attributes: {},
    });
    // a task that ended well despite a failed call (a tool's sub-call, the router) did not fail by the provider
    const failure = outcome.status !== 'ok' ? open.providerFailure : undefined;
    if (failure) firstDetail ??= failure.detail;
    const ended = Date.now();
    insertSpan(db, {
      id: rootSpan, trace_id: traceId, parent_id: null, kind: 'agent', name: `${opts.harnessName} on ${task.id}`,
      status: outcome.status, started_at: started, ended_at: ended, input: { task: { id: task.id, input: task.input, tags: task.tags }, route: open.route },
      output: { output: outcome.output, steps: outcome.steps, stop: outcome.stop }, error: outcome.error ?? null,
      input_tokens: 0, output_tokens: 0, cache_read_tokens: 0, cache_write_tokens: 0, cost_usd: 0,
      attributes: { route: open.route.label, ...(failure ? { provider_failure: failure.kind } : {}) },
    });
    const sums = { ...open.usage, c: open.cost };
    writer.finish(traceId, {
      status: outcome.status, score, pass, output: outcome.output, error: outcome.error ?? null, ended_at: ended,
      input_tokens: sums.i, output_tokens: sums.o, cache_read_tokens: sums.cr, cache_write_tokens: sums.cw, cost_usd: sums.c,
    });
    writer.flush();
    return {
      task_id: task.id, trace_id: traceId, status: outcome.status, score, pass, feedback, output: outcome.output, error: outcome.error ?? null,
      steps: outcome.steps, tokens: sums.i + sums.o, cost_usd: sums.c, ms: ended - started, route: open.route.label,
      provider_failure: failure?.kind ?? null,
    };
  };

  try {
    await Promise.all(Array.from({ length: Math.max(1, Math.min(opts.concurrency, opts.tasks.length)) }, (_, i) => slot(i)));
  } finally {
    writer.close();
    rmSync(scratchRoot, { recursive: true, force: true });
  }
  results.sort((a, b) => opts.tasks.findIndex((t) => t.id === a.task_id) - opts.tasks.findIndex((t) => t.id === b.task_id));
  return {
    results,
    aggregate: aggregate(results.map((r) => r.score)),
    tokens: results.reduce((s, r) => s + r.tokens, 0),
    cost_usd: results.reduce((s, r) => s + r.cost_usd, 0),
    budgetExceeded,
    providerFailed,
  };
}
