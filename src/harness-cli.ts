/** `autoagent eval` and `autoagent traces`: evaluate a harness outside a run, read its traces. */
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { openDb, getRun, traceIdsByPrefix, type DB } from '../traces/index.ts';
import { tracesOf, getTrace, searchTraceHits, type TraceHit } from '../traces/traces.ts';
import { renderTranscript, renderTraceList } from '../traces/transcript.ts';
import { loadHarness } from '../task-agent/harness.ts';
import { evaluateHarness, SpendGuard } from '../task-agent/evaluate.ts';
import { createProvider, loadPrices } from '../task-agent/providers/index.ts';
import { loadBenchmark } from '../benchmarks/index.ts';
import { UsageError, UserError } from '../base/errors.ts';
import { sandboxAvailable } from '../sandbox/index.ts';
import { dataRoot, hiddenPaths, studyTasks, workerReadable } from './kinds/harness.ts';
import { parseExperimentRef } from './views.ts';
import { fmtDuration, fmtMetric, table } from '../base/format.ts';
import { repoRoot } from '../base/git.ts';

export interface EvalCliOptions {
  harness: string;
  bench: string;
  split: 'train' | 'val' | 'test';
  /** only the first N tasks (absent or 0: all) */
  limit?: number;
  concurrency: number;
  data?: string;
  prices?: string;
  db?: string;
  cache?: boolean;
  json?: boolean;
  unsafeNoSandbox?: boolean;
  /** provider failures on more than this fraction of the tasks (or any refused key) make the eval an error (default 0.1) */
  maxProviderErrorRate?: number;
}

async function defaultStore(): Promise<string> {
  try {
    return join(await repoRoot(process.cwd()), '.autoagent', 'autoagent.db');
  } catch {
    return resolve('.autoagent', 'autoagent.db');
  }
}

export async function evalCommand(o: EvalCliOptions, out: (t: string) => void, err: (t: string) => void): Promise<number> {
  // the store first: a bad --db ends the command before anything is loaded
  const dbPath = o.db ? resolve(o.db) : await defaultStore();
  const db = openDb(dbPath);
  if (!o.unsafeNoSandbox) {
    const s = sandboxAvailable();
    if (!s.ok) throw new UsageError(s.message);
  }
  const harness = loadHarness(o.harness);
  const data = dataRoot(o.data, process.cwd());
  const local = resolve(o.bench);
  const bench = await loadBenchmark(existsSync(join(local, 'benchmark.yaml')) ? local : o.bench, { dataRoot: data });
  const tasks = studyTasks(bench, o.split, o.limit ?? 0);
  if (tasks.length === 0) throw new UsageError(`benchmark ${bench.name} has no ${o.split} tasks`);
  const provider = createProvider(harness.config.provider, { prices: loadPrices(o.prices), retry: harness.config.retry });
  const groupId = `eval-${new Date().toISOString().replace(/[-:]/g, '').replace(/\..*/, '')}-${Math.random().toString(36).slice(2, 6)}`;
  err(`eval ${groupId}: ${harness.dir} on ${bench.name}/${o.split} (${tasks.length} tasks, ${harness.config.provider}:${harness.config.model}, concurrency ${o.concurrency})\n`);
  const summary = await evaluateHarness({
    db, harness, harnessName: harness.dir, benchmark: bench, tasks, provider, groupId, concurrency: o.concurrency,
    hide: hiddenPaths(bench, [join(dbPath, '..'), ...(data ? [data] : [])]), readable: workerReadable(harness.dir),
    unsafeNoSandbox: Boolean(o.unsafeNoSandbox), guard: new SpendGuard(0, 0, 0, 0), cache: o.cache,
    providerLimit: { maxRate: o.maxProviderErrorRate ?? 0.1 },
    onTask: (r, done, total) => err(`[${done}/${total}] ${r.task_id} ${r.status} score ${fmtMetric(r.score)} (${fmtDuration(r.ms)})\n`),
  });
  const a = summary.aggregate;
  const failed = summary.providerFailed;
  if (o.json) {
    out(JSON.stringify({
      group: groupId, benchmark: bench.name, split: o.split, harness: harness.dir, aggregate: failed ? null : a, provider_failed: failed,
      tokens: summary.tokens, cost_usd: summary.cost_usd, results: summary.results,
    }, null, 2) + '\n');
  } else {
    out(table(['task', 'status', 'score', 'steps', 'tokens', 'cost $', 'time', 'feedback'], summary.results.map((r) => [
      r.task_id, r.status, fmtMetric(r.score), String(r.steps), String(r.tokens), r.cost_usd.toFixed(4), fmtDuration(r.ms), (r.error ?? r.feedback).split('\n')[0]!.slice(0, 80),
    ])) + '\n');
    if (failed) out(`\nno score: the evaluation stopped after ${summary.results.length} of ${tasks.length} tasks · ${summary.tokens} tokens · $${summary.cost_usd.toFixed(4)}\n`);
    else out(`\nscore ${fmtMetric(a.mean)} (95% CI ${fmtMetric(a.ci95[0])}–${fmtMetric(a.ci95[1])}) over ${a.n} tasks · ${summary.tokens} tokens · $${summary.cost_usd.toFixed(4)}\n`);
    out(`transcripts: autoagent traces ${groupId} [--task ID] [--failed]\n`);
  }
  db.close();
  // what was done is printed above; the run is an error, not a score
  if (failed) throw new UserError(`${failed}; fix the provider and run again`);
  return 0;
}

export interface TracesCliOptions {
  task?: string;
  failed?: boolean;
  json?: boolean;
  db?: string;
  run?: string;
  limit: number;
}

export async function tracesCommand(target: string, query: string | undefined, o: TracesCliOptions, out: (t: string) => void): Promise<number> {
  const dbPath = o.db ? resolve(o.db) : await defaultStore();
  if (!existsSync(dbPath)) throw new UsageError(`${dbPath}: no autoagent store here (pass --db PATH)`);
  const db = openDb(dbPath);
  try {
    if (target === 'search') {
      if (!query) throw new UsageError('traces search: give the text to look for, e.g. autoagent traces search "timeout"');
      if (o.run !== undefined && !getRun(db, o.run)) throw new UsageError(`--run: no run ${o.run} in ${dbPath}`);
      const hits = searchTraceHits(db, query, { limit: o.limit, runId: o.run });
      if (o.json) out(JSON.stringify(hits, null, 2) + '\n');
      else out((hits.length ? searchTable(hits) : `no trace mentions "${query}"`) + '\n');
      return 0;
    }
    const traces = findTraces(db, target, o);
    if (o.json) {
      out(JSON.stringify(traces.map((t) => getTrace(db, t.id)), null, 2) + '\n');
      return 0;
    }
    if (traces.length === 0) {
      out('no traces match\n');
      return 0;
    }
    // several traces: a list, unless one task or the failed ones were asked for (their transcripts)
    if (!o.task && !o.failed && traces.length > 1) {
      out(renderTraceList(traces) + '\n\none transcript: add --task ID\n');
      return 0;
    }
    for (const t of traces) {
      const full = getTrace(db, t.id)!;
      out(renderTranscript(full.trace, full.spans) + '\n');
    }
    return 0;
  } finally {
    db.close();
  }
}

/** one row per trace: where it ran (RUN/N, as `traces` takes it, or the eval's id), its result, its matching rows, its best match */
function searchTable(hits: TraceHit[]): string {
  return table(['trace', 'run / eval', 'task', 'rep', 'status', 'score', 'matches', 'best match'], hits.map((h) => [
    h.trace_id.slice(0, 8),
    h.run_id !== null ? `${h.run_id}/${h.experiment_seq ?? '?'}${h.role === 'proposal' ? ' (meta-agent)' : ''}` : h.group_id,
    h.task_id,
    String(h.repeat),
    !h.finalized ? 'unfinished' : h.pass === false && h.status === 'ok' ? 'wrong' : h.status,
    fmtMetric(h.score),
    String(h.matches),
    `${h.span_kind ? `${h.span_kind} ${h.span_name}` : 'answer / error'}: ${h.snippet.replace(/\s+/g, ' ')}`,
  ]));
}

function findTraces(db: DB, target: string, o: TracesCliOptions) {
  const filter = { taskId: o.task, failed: o.failed };
  if (/^eval-/.test(target)) return tracesOf(db, { groupId: target, ...filter });
  // a trace id, or a prefix of one of at least 6 characters (as `traces search` and `show` print them)
  if (!/^\d+$/.test(target) && !target.includes('/') && target.length >= 6) {
    const ids = traceIdsByPrefix(db, target, 2);
    if (ids.length > 1) throw new UsageError(`trace id prefix ${target} is ambiguous: give more characters`);
    if (ids.length === 1) return tracesOf(db, { id: ids[0]!, role: 'any' });
  }
  const { run, exp } = parseExperimentRef(db, target, o.run);
  return tracesOf(db, { runId: run.id, experimentSeq: exp.seq, ...filter });
}
