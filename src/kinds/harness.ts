/**
 * kind: harness — evaluate the candidate's harness folder on a benchmark split with the
 * task-agent runtime (sandboxed workers, parent-held keys, traces in SQLite), score each task
 * with the benchmark's locked scorer; the metric is the mean task score (maximize).
 */
import { existsSync, realpathSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { UsageError, UserError } from '../../base/errors.ts';
import type { Study } from '../study.ts';
import type { EvalOutcome, EvalRequest, KindAdapter, PrepareResult, RunPaths } from './types.ts';
import { loadHarness, type Harness } from '../../task-agent/harness.ts';
import { evaluateHarness } from '../../task-agent/evaluate.ts';
import { createProvider, loadPrices } from '../../task-agent/providers/index.ts';
import { sharedLimit } from '../../task-agent/providers/limit.ts';
import { loadBenchmark } from '../../benchmarks/index.ts';
import type { Benchmark, Task } from '../../benchmarks/types.ts';
import { mean } from '../../base/stats.ts';

/** the autoagent installation (its code and node_modules must stay visible to workers) */
export const AUTOAGENT_ROOT = resolve(import.meta.dirname, '..', '..');

/**
 * What a task-agent worker must read of autoagent: its folder, and its node_modules where a link
 * puts them elsewhere (npm link, a shared install) — that folder only, and only when it is a
 * `node_modules` folder: a link to anything else (a home folder, `/`) widens nothing.
 */
export function workerReadable(harnessDir: string, root = AUTOAGENT_ROOT): string[] {
  const out = [root, harnessDir];
  try {
    const nm = realpathSync(join(root, 'node_modules'));
    if (!nm.startsWith(root + '/') && basename(nm) === 'node_modules') out.push(nm);
  } catch {
    /* no node_modules folder: the dependencies resolve from a parent, under /usr or a prefix on the system view */
  }
  return out;
}

export function dataRoot(explicit: string | undefined, base: string): string | undefined {
  const d = explicit ?? process.env.AUTOAGENT_DATA;
  return d ? resolve(base, d) : undefined;
}

/** the tasks a harness study evaluates: the split, in the benchmark's order, limited */
export function studyTasks(b: Benchmark, split: string, limit: number): Task[] {
  const tasks = b.tasks.filter((t) => t.split === split);
  return limit > 0 ? tasks.slice(0, limit) : tasks;
}

/** what the agent must never see: the data, the answer keys and scorers, the store */
export function hiddenPaths(b: Benchmark, extra: string[]): string[] {
  return [...new Set([...b.lockedPaths.map((p) => resolve(p)), ...extra])];
}

export class HarnessKind implements KindAdapter {
  readonly kind = 'harness' as const;
  readonly selfReported = false;
  private benchmark: Benchmark | null = null;
  private data: string | undefined;

  /**
   * `dataRoot`: the benchmark data's folder, over the study's `harness.data` and AUTOAGENT_DATA (a
   * queue worker's own copy); `hide`: more host paths the agent must not see (a worker's store);
   * `keysElsewhere`: the model is called by queue workers with their keys, not here (prepare does
   * not ask for one).
   */
  constructor(private readonly study: Study, private readonly opts: { dataRoot?: string; hide?: string[]; keysElsewhere?: boolean } = {}) {}

  private settings() {
    return this.study.harness!;
  }

  async prepare(study: Study, paths: RunPaths): Promise<PrepareResult> {
    const s = this.settings();
    const base = join(paths.repo, paths.studyDir);
    this.data = this.opts.dataRoot ? resolve(this.opts.dataRoot) : dataRoot(s.data, base);
    // a folder next to the study, or a built-in suite by name
    const local = resolve(base, s.benchmark);
    const b = await loadBenchmark(existsSync(join(local, 'benchmark.yaml')) ? local : s.benchmark, { dataRoot: this.data });
    this.benchmark = b;
    const tasks = studyTasks(b, s.split, s.limit);
    if (tasks.length === 0) throw new UsageError(`${paths.studyPath}: field \`harness.split\`: benchmark ${b.name} has no ${s.split} tasks`);
    const harness = loadHarness(join(base, s.dir));
    // fail before the first task when a key is missing
    if (!this.opts.keysElsewhere) createProvider(harness.config.provider, { prices: loadPrices(s.prices ? resolve(base, s.prices) : undefined) });
    return {
      // the scorer, loaders and answer files: hashed at start, verified before every evaluation
      lockedExternal: b.lockedPaths.map((p) => resolve(p)),
      environment: {
        benchmark: b.name, split: s.split, tasks: tasks.length, split_tasks: b.tasks.filter((t) => t.split === s.split).length,
        data: this.data ?? null, provider: harness.config.provider, model: harness.config.model,
      },
    };
  }

  async evaluate(req: EvalRequest): Promise<EvalOutcome> {
    const db = req.run.db;
    if (!db) throw new UsageError('a harness evaluation records a trace of every task, and this run\'s store keeps none: run it on a store file');
    const s = this.settings();
    const b = this.benchmark!;
    const base = join(req.worktree, req.paths.studyDir);
    const started = Date.now();
    const fail = (reason: string): EvalOutcome => ({
      status: 'crash', metric: null, reason, commandMs: Date.now() - started, evaluatorMs: 0, exitCode: null, stdoutTail: '', stderrTail: '', telemetry: null,
    });
    let harness: Harness;
    try {
      harness = loadHarness(join(base, s.dir));
    } catch (e) {
      return fail(`the candidate harness does not load: ${(e as Error).message}`);
    }
    let provider;
    try {
      // every slot of the run shares one limit of `concurrency` calls to this endpoint (and backs off together on 429)
      provider = sharedLimit(createProvider(harness.config.provider, { prices: loadPrices(s.prices ? resolve(join(req.paths.repo, req.paths.studyDir), s.prices) : undefined), retry: harness.config.retry }), s.concurrency);
    } catch (e) {
      if (e instanceof UserError) throw e;
      return fail((e as Error).message);
    }
    const tasks = studyTasks(b, s.split, s.limit);
    const hide = hiddenPaths(b, [req.paths.repo, req.paths.stateDir, ...(this.data ? [this.data] : []), ...(this.opts.hide ?? [])]);
    // progress: tasks scored of the whole evaluation (screen and rest), tokens and dollars so far
    const spent = { tasks: 0, tokens: 0, dollars: 0 };
    const onTask = req.onProgress ? (r: { tokens: number; cost_usd: number }) => {
      spent.tasks++;
      spent.tokens += r.tokens;
      spent.dollars += r.cost_usd;
      req.onProgress!({ tasksDone: spent.tasks, tasksTotal: tasks.length, tokens: spent.tokens, dollars: spent.dollars });
    } : undefined;
    req.onProgress?.({ tasksDone: 0, tasksTotal: tasks.length, tokens: 0, dollars: 0 });
    const common = {
      db, harness, harnessName: s.dir, benchmark: b, provider, runId: req.run.id, experimentSeq: req.run.seq,
      repeat: req.repeat, concurrency: s.concurrency, hide, unsafeNoSandbox: req.policy.unsafeNoSandbox,
      memoryMB: req.policy.memoryMB, maxProcesses: req.policy.maxProcesses, guard: req.guard, cache: s.cache, signal: req.signal,
      readable: workerReadable(harness.dir), onTask,
    };
    const maxRate = s.max_provider_error_rate;
    const group = (part: string) => `${req.run.id}/${req.run.seq}/${req.repeat}${part}`;
    let done: Awaited<ReturnType<typeof evaluateHarness>>['results'] = [];
    // the screen: a minibatch first, compared task by task with the incumbent's scores on it
    if (s.screen_tasks > 0 && req.screenAgainst && req.screenAgainst.size > 0 && s.screen_tasks < tasks.length) {
      const mini = tasks.slice(0, s.screen_tasks);
      const r = await evaluateHarness({ ...common, tasks: mini, groupId: group(''), providerLimit: { maxRate, total: tasks.length } });
      done = r.results;
      if (r.providerFailed) return this.outcome(done, started, { providerFailed: r.providerFailed });
      if (r.budgetExceeded) return this.outcome(done, started, { budgetExceeded: r.budgetExceeded });
      const inc = mean(mini.map((t) => req.screenAgainst!.get(t.id) ?? 0));
      const cand = mean(done.map((x) => x.score));
      // a minibatch the provider failed on says nothing about the candidate: go on to the full evaluation (its rate decides)
      if (cand < inc && !done.some((x) => x.provider_failure)) {
        return this.outcome(done, started, { screenedOut: `minibatch screen: ${cand.toFixed(4)} on the first ${mini.length} tasks is below the incumbent's ${inc.toFixed(4)} there` });
      }
    }
    const doneIds = new Set(done.map((d) => d.task_id));
    const r = await evaluateHarness({
      ...common, tasks: tasks.filter((t) => !doneIds.has(t.id)), groupId: group(''),
      providerLimit: { maxRate, total: tasks.length, done: done.length, failed: done.filter((d) => d.provider_failure).length },
    });
    const all = [...done, ...r.results];
    if (r.providerFailed) return this.outcome(all, started, { providerFailed: r.providerFailed });
    return this.outcome(all, started, r.budgetExceeded ? { budgetExceeded: r.budgetExceeded } : {});
  }

  private outcome(results: Awaited<ReturnType<typeof evaluateHarness>>['results'], started: number, extra: Partial<EvalOutcome>): EvalOutcome {
    const scores = results.map((r) => r.score);
    const failed = results.filter((r) => r.status !== 'ok');
    // a harness whose worker cannot even start (a broken tool module, a bad prompt path) crashed: it was not measured
    const dead = results.length > 0 && results.every((r) => r.status === 'error' && (r.error ?? '').startsWith('the task-agent worker exited'));
    const lines = results.map((r) => `${r.task_id}\t${r.status}\t${r.score}\t${r.feedback.split('\n')[0]!.slice(0, 120)}`);
    // a provider that failed makes the evaluation an error, not a score: no metric, whoever reads the outcome
    if (extra.providerFailed) return { ...this.outcome(results, started, {}), status: 'crash', metric: null, reason: extra.providerFailed, ...extra };
    return {
      status: dead ? 'crash' : 'ok', metric: dead ? null : mean(scores), reason: dead ? results[0]!.error : null, commandMs: Date.now() - started, evaluatorMs: 0, exitCode: 0,
      stdoutTail: lines.join('\n').slice(-8000), stderrTail: failed.map((r) => `${r.task_id}: ${r.error}`).join('\n').slice(-8000),
      telemetry: {
        tasks: results.length, passed: results.filter((r) => r.pass).length, failed: failed.length,
        tokens: results.reduce((s, r) => s + r.tokens, 0), cost_usd: results.reduce((s, r) => s + r.cost_usd, 0),
      },
      ...extra,
    };
  }
}

