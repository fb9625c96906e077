/**
 * The loop: baseline repeats → propose → evaluate in a sandbox → keep or discard, until a
 * budget ends. All state lives in SQLite and git; this module holds none between calls, so
 * a run killed at any moment resumes from what was recorded (see resumeRun).
 *
 * Crash safety, step by step:
 *  - a proposal is recorded (with its candidate commit and diff) before it is evaluated;
 *  - each evaluation is one row, written when it completes (an evaluation cut short by a
 *    kill is simply run again on resume: nothing half-written is ever read);
 *  - a keep first creates the kept commit, then moves the branch (compare-and-swap), then
 *    records the decision; resume finishes a keep whose branch already moved.
 */
import { rmSync, existsSync, readdirSync } from 'node:fs';
import { dirname, join, relative, resolve, isAbsolute, normalize } from 'node:path';
import {
  openDb, SqliteStore, type LedgerStore, type RunStore, type RunRow, type ExperimentRow, type EvaluationRow, type Decision, type ProposalRecord,
} from '../traces/index.ts';
import { loadStudy, StudySchema, type Study } from './study.ts';
import { UsageError, UserError } from '../base/errors.ts';
import * as g from '../base/git.ts';
import { buildManifest, matchGlobs, verifyManifest, walkFiles, LockViolation, type Manifest } from './lock.ts';
import { globMatcher } from '../base/glob.ts';
import { noiseMargin, type Judgement } from './ratchet.ts';
import { pooledNoise, mean, stddev, type Noise } from '../base/stats.ts';
import { incumbentBefore, incumbentMetrics, judgeCandidate, keptMessage, noiseGroupsBefore, okMetrics, roundOf, visibleAt, type Stage } from './acceptance.ts';
import { SlotPool, planSlots } from './slots.ts';
import { LocalDispatcher, QueueWaitExpired, redactUrl, type Dispatcher } from './dispatch.ts';
import { slotLine, runEtaMs, type SlotState } from './progress.ts';
import { runSummary, runMetricFmt, zeroNoiseNote } from './summary.ts';
import { sandboxAvailable } from '../sandbox/index.ts';
import { adapterFor } from './kinds/index.ts';
import { readPaths, type EvalContext } from './evaluation.ts';
import { cleanWork } from './workspace.ts';
import type { KindAdapter, PrepareResult, RunPaths, SandboxPolicy } from './kinds/types.ts';
import { KNOB_PROPOSERS, TRACED_PROPOSERS, makeProposer, checkProposer } from '../meta-agent/proposers.ts';
import { requireKnobs } from './knobs.ts';
import { filesHash, applyEdits, type Proposer, type LedgerEntry, type FileEdit } from '../meta-agent/index.ts';
import { seededRandom } from '../meta-agent/search/rng.ts';
import { toneOf, type Reporter } from './report.ts';
import { SpendGuard, BudgetExceeded } from '../task-agent/evaluate.ts';
import { createProvider, loadPrices, ProviderError, type Env } from '../task-agent/providers/index.ts';
import type { Provider } from '../task-agent/types.ts';
import { ProposalFailed, type Proposal } from '../meta-agent/types.ts';
import { StoreHistory } from '../meta-agent/history.ts';
export { roundAlpha } from './acceptance.ts';
import { ProposalSession, loadProgram, seedOnlyChange, whitespaceOnlyChange } from './proposal.ts';
import { fmtMetric, fmtDuration, fmtDelta, fmtTokens, metricFormat, type MetricFmt } from '../base/format.ts';
import { liveExportFor } from './export/live.ts';
import type { LangfuseLiveExporter } from './export/langfuse.ts';
import { resolveRunPaths } from './run-paths.ts';
import { ContaminationGuard } from './contamination.ts';
import { pidAlive } from '../base/proc.ts';

export interface Overrides {
  parallel?: number;
  experiments?: number;
  experimentSeconds?: number;
  wallSeconds?: number;
  corpus?: string;
  /** harness studies: the data root (--data) and a price table (--prices), over harness.data / harness.prices */
  data?: string;
  prices?: string;
}

export interface LoopOptions {
  /** the store file (--db); the repository's .autoagent/autoagent.db when not given */
  dbPath?: string;
  /**
   * use this store instead of a file (tests, embedding: a MemoryStore runs the loop without SQLite); a
   * study whose evaluations or proposals write traces needs one that keeps them (`sqlite`)
   */
  store?: RunStore;
  overrides: Overrides;
  unsafeNoSandbox: boolean;
  reporter: Reporter;
  signal?: AbortSignal;
  /** use this proposer instead of the study's (tests, embedding) */
  proposer?: Proposer;
  /** use this kind adapter instead of the study's (tests and benchmarks: a fake kind in milliseconds) */
  kind?: KindAdapter;
  /**
   * evaluate on queue workers (src/queue/): --queue / --queue-wait, over the study's `queue:`;
   * url null (--no-queue): on this machine even when the study or the resumed run names a queue
   */
  queue?: { url?: string | null; waitSeconds?: number };
  /** a new run's label and tags (`run --name --tag`) */
  annotations?: { label?: string | null; tags?: string[] };
}

export interface RunResult {
  runId: string;
  /** where the store is: the file's path, or `(memory)` */
  dbPath: string;
  status: RunRow['status'];
  stopReason: string | null;
  /** why a 'stopped' run stopped, when the CLI exits differently for it */
  stopCause?: 'provider';
}

/** Everything one run needs, passed explicitly (no module state: several runs can share a process). */
interface RunCtx {
  store: RunStore;
  run: RunRow;
  study: Study;
  paths: RunPaths;
  adapter: KindAdapter;
  prepared: PrepareResult;
  manifest: Manifest;
  isEditable: (repoPath: string) => boolean;
  isLocked: (repoPath: string) => boolean;
  proposer: Proposer;
  policy: SandboxPolicy;
  reporter: Reporter;
  signal: AbortSignal;
  sessionStart: number;
  lastCheckpoint: number;
  guard: SpendGuard;
  /** the meta-agent's model provider (llm, hybrid), else null */
  metaProvider: Provider | null;
  /** the direction text handed to the proposer */
  program: string;
  isHidden: (repoPath: string) => boolean;
  /** the live Langfuse export (study `export.langfuse`), else null */
  live: LangfuseLiveExporter | null;
  /** what every evaluation of this run shares (src/evaluation.ts) */
  evalCtx: EvalContext;
  /** the memorisation check of each proposal (src/contamination.ts) */
  contamination: ContaminationGuard;
  /** where evaluations run (src/dispatch.ts): this machine's slots, or a queue's workers */
  dispatcher: Dispatcher;
  /** the run's ETA as last computed (src/progress.ts) */
  etaCache: { at: number; ms: number | null } | null;
  /** the run's metric format, once its baseline is decided (fm) */
  metricFmt: MetricFmt | null;
  /** the editable files at a few recent commits (editableFiles: a round's proposals all read its incumbent's) */
  filesAt: Map<string, Promise<Record<string, string>>>;
}

class Interrupted extends Error {}
/** the token or dollar budget ran out mid-evaluation: the partial evaluation is not recorded */
class BudgetStop extends Error {}
/** the model provider failed mid-evaluation (harness kinds): the partial evaluation is not recorded */
class ProviderStop extends Error {}

export function defaultDbPath(repo: string): string {
  return join(repo, '.autoagent', 'autoagent.db');
}

function applyOverrides(study: Study, o: Overrides): Study {
  const s: Study = JSON.parse(JSON.stringify(study));
  if (o.experiments !== undefined) s.budget.experiments = o.experiments;
  if (o.experimentSeconds !== undefined) s.budget.experiment_seconds = o.experimentSeconds;
  if (o.wallSeconds !== undefined) s.budget.wall_seconds = o.wallSeconds;
  if (o.parallel !== undefined) s.parallel = o.parallel;
  if (o.corpus !== undefined) {
    if (s.kind !== 'trainer') throw new UsageError(`--corpus applies to trainer studies only (this study is kind: ${s.kind})`);
    s.trainer = { ...(s.trainer ?? StudySchema.shape.trainer.unwrap().parse({})), corpus: resolve(o.corpus) };
  }
  for (const [flag, key] of [['--data', 'data'], ['--prices', 'prices']] as const) {
    if (o[key] === undefined) continue;
    if (s.kind !== 'harness' || !s.harness) throw new UsageError(`${flag} applies to harness studies only (this study is kind: ${s.kind})`);
    s.harness[key] = resolve(o[key]);
  }
  return StudySchema.parse(s);
}

function runIdFor(name: string): string {
  const d = new Date();
  const p = (n: number) => String(n).padStart(2, '0');
  const stamp = `${d.getUTCFullYear()}${p(d.getUTCMonth() + 1)}${p(d.getUTCDate())}-${p(d.getUTCHours())}${p(d.getUTCMinutes())}${p(d.getUTCSeconds())}`;
  const rand = Math.floor(Math.random() * 36 ** 3).toString(36).padStart(3, '0');
  return `${name.toLowerCase().replace(/[^a-z0-9_-]+/g, '-')}-${stamp}-${rand}`;
}

/**
 * Sends what the live export has not sent yet and closes it; Ctrl-C cuts the wait (an interrupted
 * run waits at most 2 s). Says how to send what Langfuse did not take.
 */
async function finishLiveExport(ctx: RunCtx): Promise<void> {
  const live = ctx.live;
  if (!live) return;
  if (!ctx.signal.aborted) {
    let onAbort = (): void => undefined;
    const aborted = new Promise<void>((ok) => (onAbort = ok));
    ctx.signal.addEventListener('abort', onAbort, { once: true });
    await Promise.race([live.sync(ctx.store.sqlite!, ctx.run.id, { final: true }), aborted]);
    ctx.signal.removeEventListener('abort', onAbort);
  }
  await live.shutdown(ctx.signal.aborted ? { waitMs: 2000 } : {});
  const missed = live.undelivered(ctx.store.sqlite!, ctx.run.id);
  if (missed > 0) ctx.reporter.event(`langfuse: ${missed} experiment(s) not delivered; \`autoagent export langfuse ${ctx.run.id}\` sends them (so does resuming the run)`);
}

function checkSandbox(unsafe: boolean): void {
  if (unsafe) return;
  const s = sandboxAvailable();
  if (!s.ok) throw new UserError(s.message);
}

/**
 * A store that keeps no traces (a MemoryStore) takes only a run that writes none: not a harness
 * study (a trace per task), not a proposer whose proposals are traces, not a live Langfuse export.
 */
function checkTraceStore(store: RunStore, study: Study, opts: LoopOptions, live: LangfuseLiveExporter | null): void {
  if (store.sqlite) return;
  const why = study.kind === 'harness' ? 'a harness study records a trace of every task'
    : !opts.proposer && TRACED_PROPOSERS.has(study.proposer.type) ? `the ${study.proposer.type} proposer's proposals are recorded as traces`
      : live ? 'the live Langfuse export sends the traces' : null;
  if (why) throw new UsageError(`this run needs a store that keeps traces (${store.where} keeps none): ${why}`);
}

/** Paths the lock and the proposer need, derived from the study and the files at `commit`. */
async function resolvePaths(study: Study, studyPath: string, repo: string, commit: string) {
  const studyDir = relative(repo, dirname(studyPath)).split('\\').join('/');
  const files = walkFiles(repo);
  const tracked = new Set(await g.trackedFiles(repo, commit));
  const locked = study.locked.length ? matchGlobs(files, study.locked, studyDir, 'locked', studyPath) : [];
  const hiddenFiles = study.sandbox.hidden.length ? matchGlobs(files, study.sandbox.hidden, studyDir, 'sandbox.hidden', studyPath) : [];
  const isLocked = globMatcher(study.locked, studyDir);
  const editableMatch = globMatcher(study.editable, studyDir);
  const isEditable = (p: string) => editableMatch(p) && !isLocked(p);
  if (![...tracked].some(isEditable)) {
    throw new UsageError(`${studyPath}: field \`editable\`: no committed file matches ${JSON.stringify(study.editable)} (outside the locked paths; paths are relative to the study file's folder)`);
  }
  return { studyDir, locked, hiddenFiles, isLocked, isEditable, tracked };
}

export async function startRun(studyFile: string, opts: LoopOptions): Promise<RunResult> {
  const studyPath = resolve(studyFile);
  const loaded = loadStudy(studyPath);
  const study = applyOverrides(loaded.study, opts.overrides);
  checkSandbox(opts.unsafeNoSandbox);
  if (!opts.proposer) checkProposer(study.proposer);
  const live = await liveExportFor(study, opts.reporter);
  const repo = await g.repoRoot(dirname(studyPath));
  const base = await g.headCommit(repo);
  const r = await resolvePaths(study, studyPath, repo, base);

  const dirty = await g.dirtyPaths(repo);
  const dirtyLocked = dirty.filter((p) => r.isLocked(p) && r.tracked.has(p));
  if (dirtyLocked.length > 0) {
    throw new UserError(`locked path ${dirtyLocked[0]} has uncommitted changes: commit or restore it before starting a run (the run evaluates committed files only)`);
  }
  // a knob proposer with nothing to turn would end after the baseline: say so before it runs
  const knobProposer = opts.proposer ? (opts.proposer.requiresKnobs ? opts.proposer.name : null) : KNOB_PROPOSERS.has(study.proposer.type) ? study.proposer.type : null;
  if (knobProposer && study.budget.experiments > 0) await requireKnobs(studyFile, knobProposer, study, r.studyDir, repo, base, r.isEditable);
  const dirtyEditable = dirty.filter((p) => r.isEditable(p));
  if (dirtyEditable.length > 0) {
    opts.reporter.event(`note: ${dirtyEditable.join(', ')} has uncommitted changes; the run starts from the last commit (${base.slice(0, 8)})`);
  }

  // the store before preparing (which may take long): a bad --db ends the command at once
  const store = opts.store ?? new SqliteStore(openDb(opts.dbPath ? resolve(opts.dbPath) : defaultDbPath(repo)));
  checkTraceStore(store, study, opts, live);
  const paths: RunPaths = { repo, studyDir: r.studyDir, studyPath, stateDir: join(repo, '.autoagent') };
  const adapter = opts.kind ?? adapterFor(study, { keysElsewhere: Boolean(queueUrl(study, opts)) }).adapter;
  opts.reporter.event(`preparing ${study.kind} study ${study.name}…`);
  const prepared = await adapter.prepare(study, paths);
  const manifest = buildManifest(repo, r.locked, prepared.lockedExternal);

  g.excludeStateDir(await g.gitCommonDir(repo));
  const runId = runIdFor(study.name);
  const branch = `autoagent/${runId}`;
  store.insertRun({
    id: runId, name: study.name, kind: study.kind, study_path: studyPath, study_json: JSON.stringify(study),
    study_text: loaded.text, config_hash: loaded.configHash, repo, base_commit: base, branch,
    lock_manifest: JSON.stringify(manifest), metric_name: study.metric.name, direction: study.metric.direction,
    self_reported: adapter.selfReported ? 1 : 0, unsafe_no_sandbox: opts.unsafeNoSandbox ? 1 : 0,
    // the queue (its password never stored): `resume` without --queue goes back to it
    environment: JSON.stringify({ ...prepared, node: process.version, platform: process.platform, ...(queueUrl(study, opts) ? { queue: redactUrl(queueUrl(study, opts)!) } : {}) }),
  });
  if (opts.annotations) store.setRunAnnotations(runId, opts.annotations);
  await g.createBranch(repo, branch, base);
  store.claimRun(runId, process.pid);
  opts.reporter.event(`run ${runId} on branch ${branch} (store ${relative(process.cwd(), store.where) || store.where})`);
  if (opts.unsafeNoSandbox) opts.reporter.event('WARNING: --unsafe-no-sandbox: candidate code runs without isolation (recorded on the run)');
  if (adapter.selfReported) opts.reporter.event('WARNING: metric.from: output — the metric is SELF-REPORTED by candidate code (marked on every report)');
  return drive(store, runId, study, paths, adapter, prepared, manifest, r, opts, live);
}

/** A run marked running whose process is gone was killed: show it as interrupted. */
export function effectiveStatus(run: RunRow): RunRow['status'] | 'interrupted' {
  if (run.status === 'running' && (!run.owner_pid || (run.owner_pid !== process.pid && !pidAlive(run.owner_pid)))) return 'interrupted';
  return run.status;
}

export async function resumeRun(runRef: string, cwd: string, opts: LoopOptions): Promise<RunResult> {
  let store = opts.store;
  if (!store) {
    const dbPath = opts.dbPath ? resolve(opts.dbPath) : defaultDbPath(await g.repoRoot(cwd));
    if (!existsSync(dbPath)) throw new UsageError(`${dbPath}: no autoagent store here (pass --db PATH)`);
    store = new SqliteStore(openDb(dbPath));
  }
  // an exact id or a unique prefix; the paths where the store's repository is now (a copied repo resumes as itself)
  const place = await resolveRunPaths(store.findRun(runRef), store.sqlite ? store.where : null, cwd);
  const run = place.run;
  const runId = run.id;
  if (place.note) opts.reporter.event(place.note);
  if (run.status === 'failed') throw new UserError(`run ${runId} failed (${run.stop_reason}); it cannot be resumed: start a new run`);
  if (run.status === 'running' && run.owner_pid && run.owner_pid !== process.pid && pidAlive(run.owner_pid)) {
    throw new UserError(`run ${runId} is being run by process ${run.owner_pid}; stop it first (Ctrl-C) or wait`);
  }
  if (run.unsafe_no_sandbox && !opts.unsafeNoSandbox) {
    throw new UsageError(`run ${runId} was started with --unsafe-no-sandbox; resume it with the same flag`);
  }
  checkSandbox(opts.unsafeNoSandbox);
  const study = applyOverrides(StudySchema.parse(JSON.parse(run.study_json)), opts.overrides);
  if (!opts.proposer) checkProposer(study.proposer);
  const live = await liveExportFor(study, opts.reporter);
  checkTraceStore(store, study, opts, live);
  store.updateRunStudy(runId, JSON.stringify(study));
  const paths: RunPaths = { repo: run.repo, studyDir: relative(run.repo, dirname(run.study_path)).split('\\').join('/'), studyPath: run.study_path, stateDir: join(run.repo, '.autoagent') };
  const r = await resolvePaths(study, run.study_path, run.repo, run.base_commit);
  const onQueue = Boolean(queueUrl(study, opts)) || (opts.queue?.url !== null && Boolean(recordedQueue(run)));
  const adapter = opts.kind ?? adapterFor(study, { keysElsewhere: onQueue }).adapter;
  const prepared = await adapter.prepare(study, paths);
  const manifest: Manifest = JSON.parse(run.lock_manifest);
  verifyManifest(manifest, run.repo, null, r.tracked);
  if (!(await g.revParse(run.repo, `refs/heads/${run.branch}`))) await g.createBranch(run.repo, run.branch, run.base_commit);
  store.claimRun(runId, process.pid);
  opts.reporter.event(`resuming run ${runId} on branch ${run.branch}`);
  return drive(store, runId, study, paths, adapter, prepared, manifest, r, opts, live);
}

async function drive(
  store: RunStore, runId: string, study: Study, paths: RunPaths, adapter: KindAdapter, prepared: PrepareResult,
  manifest: Manifest, r: Awaited<ReturnType<typeof resolvePaths>>, opts: LoopOptions, live: LangfuseLiveExporter | null,
): Promise<RunResult> {
  const policy: SandboxPolicy = {
    unsafeNoSandbox: opts.unsafeNoSandbox, memoryMB: study.sandbox.memory_mb, maxProcesses: study.sandbox.max_processes,
    read: readPaths(study, dirname(paths.studyPath)),
  };
  const guard = runGuard(store, runId, study);
  const plan = planSlots(study, study.parallel);
  if (plan.note) opts.reporter.event(`note: ${plan.note}`);
  if (plan.size > 1) opts.reporter.event(`${plan.size} evaluation slots${plan.leases.some((l) => l.gpu) ? ` (GPUs ${plan.leases.map((l) => l.gpu!.uuid).join(', ')})` : ''}; rounds of ${Math.max(study.proposer.candidates, plan.size)} candidates, each tested at α / k`);
  const evalCtx: EvalContext = {
    db: store.sqlite, runId, study, paths, adapter, prepared, manifest, baseTracked: r.tracked, isLocked: r.isLocked, hidden: r.hiddenFiles,
    policy, guard, signal: opts.signal,
  };
  const run = store.getRun(runId)!;
  const ctx: RunCtx = {
    store, run, study, paths, adapter, prepared, manifest,
    isEditable: r.isEditable, isLocked: r.isLocked,
    proposer: opts.proposer ?? makeProposer(study.proposer, study.locked.map((l) => (paths.studyDir ? `${paths.studyDir}/` : '') + l.replace(/^\.\//, ''))),
    policy,
    reporter: opts.reporter,
    signal: opts.signal ?? new AbortController().signal,
    sessionStart: Date.now(),
    lastCheckpoint: Date.now(),
    guard,
    metaProvider: metaProvider(study, paths),
    program: loadProgram(study, dirname(paths.studyPath)),
    isHidden: globMatcher(study.sandbox.hidden, paths.studyDir),
    live,
    evalCtx,
    contamination: new ContaminationGuard(study, paths, (note) => opts.reporter.event(note)),
    dispatcher: await dispatcherFor(study, plan, evalCtx, run, r, opts),
    etaCache: null,
    metricFmt: null,
    filesAt: new Map(),
  };
  if (live) opts.reporter.event(`langfuse: live export to ${live.host} (session ${runId}); each experiment is sent once decided`);
  cleanStale(ctx);
  reconcilePromotions(ctx);
  let status: RunRow['status'] = 'finished';
  let reason: string | null = null;
  let stopCause: RunResult['stopCause'];
  try {
    reason = await loop(ctx);
    if (ctx.signal.aborted) throw new Interrupted();
  } catch (e) {
    if (e instanceof Interrupted) {
      status = 'stopped';
      reason = `interrupted; continue with: autoagent resume ${runId}`;
    } else if (e instanceof LockViolation) {
      status = 'failed';
      reason = e.message;
    } else if (e instanceof BaselineFailed) {
      status = 'failed';
      reason = e.message;
    } else if (e instanceof BudgetStop) {
      status = 'stopped';
      reason = `${e.message}; raise budget.tokens / budget.dollars and resume to go on`;
    } else if (e instanceof QueueWaitExpired) {
      status = 'stopped';
      reason = `${e.message}; start a worker and resume with \`autoagent resume ${runId} --queue …\``;
    } else if (e instanceof ProviderStop) {
      status = 'stopped';
      stopCause = 'provider';
      reason = `${e.message}; fix the provider and resume with \`autoagent resume ${runId}\``;
    } else {
      checkpoint(ctx);
      store.setRunStatus(runId, 'stopped', `error: ${(e as Error).message}`);
      await finishLiveExport(ctx);
      throw e;
    }
  } finally {
    await ctx.dispatcher.close();
    try {
      cleanStale(ctx);
    } catch {
      /* best effort: the next start or resume removes it */
    }
  }
  checkpoint(ctx);
  store.setRunStatus(runId, status, reason);
  await dropEmptyBranch(ctx);
  await finishLiveExport(ctx);
  const found = runSummary(store, runId);
  if (found) opts.reporter.event(found);
  const head = store.ledgerHead(runId)!.head.slice(0, 16);
  opts.reporter.event(`ledger head: ${head} (keep it: \`autoagent audit ${runId} --expect-head ${head}\` later proves the ledger was not rewritten since)`);
  return { runId, dbPath: store.where, status, stopReason: reason, ...(stopCause ? { stopCause } : {}) };
}

class BaselineFailed extends UserError {}

/** `--queue`, else the study's `queue.url`; none with --no-queue */
function queueUrl(study: Study, opts: LoopOptions): string | undefined {
  return opts.queue?.url === null ? undefined : opts.queue?.url ?? study.queue?.url;
}

/** the queue the run evaluated on, as recorded when it started (its password replaced by ***) */
function recordedQueue(run: RunRow): string | undefined {
  return (JSON.parse(run.environment ?? '{}') as { queue?: string }).queue;
}

/**
 * This machine's slots, or the queue's workers (`--queue`, else the study's `queue.url`, else on
 * resume the queue the run used: re-attached to its jobs, not evaluating them again here).
 */
async function dispatcherFor(study: Study, plan: ReturnType<typeof planSlots>, evalCtx: EvalContext, run: RunRow, r: Awaited<ReturnType<typeof resolvePaths>>, opts: LoopOptions): Promise<Dispatcher> {
  let url = queueUrl(study, opts);
  const used = recordedQueue(run);
  if (!url && used && opts.queue?.url !== null) {
    if (/:\*\*\*@/.test(used)) throw new UsageError(`run ${evalCtx.runId} evaluated on queue ${used}, whose password is not stored: resume it with --queue URL (or --no-queue to evaluate here)`);
    opts.reporter.event(`the run evaluated on queue ${used}: resuming there (--no-queue evaluates here)`);
    url = used;
  }
  if (!url) return new LocalDispatcher(evalCtx, new SlotPool(plan));
  // BullMQ and ioredis are loaded only by runs that use a queue
  const { QueueDispatcher } = await import('./queue/dispatcher.ts');
  return new QueueDispatcher({
    url, size: Math.max(1, study.parallel), waitSeconds: opts.queue?.waitSeconds ?? study.queue?.wait_seconds ?? 600,
    runId: evalCtx.runId, repo: evalCtx.paths.repo, study, studyDir: evalCtx.paths.studyDir, manifest: evalCtx.manifest,
    baseTracked: r.tracked, hidden: r.hiddenFiles, unsafeNoSandbox: evalCtx.policy.unsafeNoSandbox, lockedExternal: evalCtx.prepared.lockedExternal,
    say: (line) => opts.reporter.event(line), guard: evalCtx.guard, baseCommit: run.base_commit,
  });
}

/**
 * A run that failed before its baseline was measured, or ended having run no experiment, leaves no
 * branch: it would only point at the base commit (resume makes it again). Only while the branch is
 * still at the base commit (a compare-and-swap delete).
 */
async function dropEmptyBranch(ctx: RunCtx): Promise<void> {
  const exps = ctx.store.listExperiments(ctx.run.id);
  const baselineDone = exps.some((e) => e.seq === 0 && e.decision === 'baseline');
  const ran = exps.some((e) => e.seq > 0);
  if (ran && baselineDone) return;
  try {
    await g.git(ctx.paths.repo).raw(['update-ref', '-d', `refs/heads/${ctx.run.branch}`, ctx.run.base_commit]);
    ctx.reporter.event(`no experiment ran: branch ${ctx.run.branch} removed (it held only the base commit; \`autoagent runs prune\` removes such runs from the store)`);
  } catch {
    /* moved or gone: left as it is */
  }
}

/** The meta-agent's provider for llm and hybrid proposers (a missing key is a UserError now, before the baseline runs). */
function metaProvider(study: Study, paths: RunPaths): Provider | null {
  const p = study.proposer;
  if (p.type !== 'llm' && p.type !== 'hybrid') return null;
  const env: Env = { ...process.env };
  if (p.base_url) env[p.provider === 'anthropic' ? 'ANTHROPIC_BASE_URL' : 'OPENAI_BASE_URL'] = p.base_url;
  return createProvider(p.provider, { env, prices: loadPrices(p.prices ? resolve(dirname(paths.studyPath), p.prices) : undefined) });
}

/** The run's spend so far (from its traces) against its token and dollar budgets. */
function runGuard(store: RunStore, runId: string, study: Study): SpendGuard {
  const spent = store.traceTotals(runId);
  return new SpendGuard(spent.tokens, spent.cost_usd, study.budget.tokens, study.budget.dollars);
}

function checkpoint(ctx: RunCtx): void {
  const t = Date.now();
  ctx.store.addRunElapsed(ctx.run.id, t - ctx.lastCheckpoint);
  ctx.lastCheckpoint = t;
}

function elapsedMs(ctx: RunCtx): number {
  return ctx.store.getRun(ctx.run.id)!.elapsed_ms + (Date.now() - ctx.lastCheckpoint);
}

/**
 * A keep cut short by a crash: its intent row says which kept commit was to become the branch head.
 * Decided since (the keep was recorded): done. Otherwise the round is still pending and is decided
 * again on this resume — from the store, finishing the keep when the branch already moved to it.
 */
function reconcilePromotions(ctx: RunCtx): void {
  const exps = ctx.store.listExperiments(ctx.run.id);
  for (const p of ctx.store.promotionsOf(ctx.run.id, 'intent')) {
    const e = exps.find((x) => x.seq === p.experiment_seq);
    if (e && e.decision !== null) ctx.store.finishPromotion(ctx.run.id, p.experiment_seq);
    else ctx.reporter.event(`resume: experiment #${p.experiment_seq} was being kept (commit ${p.kept_commit.slice(0, 10)}) when the run stopped; its round is decided again`);
  }
}

/** What a killed run left: its evaluations' folders (and disk images), and git worktrees of runs made before workspaces. */
function cleanStale(ctx: RunCtx): void {
  cleanWork(ctx.paths.stateDir, ctx.run.id);
  const legacy = join(ctx.paths.stateDir, 'worktrees', ctx.run.id);
  if (existsSync(legacy)) {
    // no git command runs in them (candidate code wrote there): delete the folders, then prune git's records
    for (const seq of readdirSync(legacy)) rmSync(join(legacy, seq), { recursive: true, force: true });
    rmSync(legacy, { recursive: true, force: true });
    void g.git(ctx.paths.repo).raw(['worktree', 'prune']).catch(() => undefined);
  }
}

/** consecutive failed proposals (invalid model output, CLI errors) before the run stops */
const MAX_FAILED_PROPOSALS = 5;
/** consecutive proposals that made no new candidate (repeats, whitespace-only) before the run stops */
const MAX_EMPTY_PROPOSALS = 20;

/** what the proposals since the last experiment came to: counted toward the stops, told to the next proposal */
interface ProposalStreak {
  empty: number;
  failed: number;
  lastFailure: string;
  notes: string[];
}

/**
 * The main loop; returns the reason it stopped. Work goes in rounds: up to k candidates from the
 * same incumbent (k = max(`proposer.candidates`, slots)), each screened as soon as it is proposed,
 * while the next one is proposed; the round is decided when all are in (processRound). With one
 * candidate per round this is the plain propose → evaluate → decide loop.
 */
async function loop(ctx: RunCtx): Promise<string> {
  const { study } = ctx;
  const streak: ProposalStreak = { empty: 0, failed: 0, lastFailure: '', notes: [] };
  for (;;) {
    if (ctx.signal.aborted) throw new Interrupted();
    // whatever was decided since the last turn goes to Langfuse in the background
    if (ctx.live) void ctx.live.sync(ctx.store.sqlite!, ctx.run.id);
    const exps = ctx.store.listExperiments(ctx.run.id);
    const pending = exps.filter((e) => e.status === 'pending');
    if (pending.length) {
      if (pending[0]!.seq === 0) await processExperiment(ctx, pending[0]!);
      else await processRound(ctx, pending);
      checkpoint(ctx);
      continue;
    }
    if (exps.length === 0) {
      await createBaseline(ctx);
      continue;
    }
    const done = exps.filter((e) => e.seq > 0).length;
    if (done >= study.budget.experiments) {
      return `experiment budget reached (${done}/${study.budget.experiments})`;
    }
    if (elapsedMs(ctx) >= study.budget.wall_seconds * 1000) {
      return `wall-time budget reached (${fmtDuration(study.budget.wall_seconds * 1000)})`;
    }
    // a new round: up to k candidates from the incumbent, each screened while the next is proposed
    const round = Math.max(0, ...exps.map((e) => e.round ?? e.seq)) + 1;
    const k = Math.min(Math.max(study.proposer.candidates, ctx.dispatcher.size), study.budget.experiments - done);
    let stop: string | null = null;
    await processRound(ctx, [], {
      round,
      propose: async (screen, signal) => {
        stop = await proposeRound(ctx, streak, round, k, screen, signal);
      },
    });
    if (stop !== null) return stop;
    checkpoint(ctx);
  }
}

/**
 * Propose up to `k` candidates of `round`, handing each one created to `screen` at once. Returns
 * why the run stops when the round got no experiment at all (the proposer has nothing left, found
 * nothing new, or failed too often), else null; a round that got some stops proposing early on
 * the same conditions, and the run stops at the next round's failure.
 */
async function proposeRound(
  ctx: RunCtx, streak: ProposalStreak, round: number, k: number, screen: (exp: ExperimentRow) => void, signal: AbortSignal,
): Promise<string | null> {
  let made = 0;
  while (made < k) {
    if (ctx.signal.aborted) throw new Interrupted();
    if (signal.aborted) throw new Aborted();
    const out = await proposeNext(ctx, round, streak.notes.slice(-5));
    if (out === 'rejected' || (typeof out === 'object' && 'created' in out)) {
      made++;
      streak.empty = 0;
      streak.failed = 0;
      streak.notes.length = 0;
      if (out !== 'rejected') screen(out.created);
      continue;
    }
    if (out === 'none') return made === 0 ? `the ${ctx.proposer.name} proposer has nothing left to propose` : null;
    if (out === 'empty') {
      if (++streak.empty >= MAX_EMPTY_PROPOSALS) return made === 0 ? `the ${ctx.proposer.name} proposer found nothing new to try` : null;
      continue;
    }
    // a failed proposal, or a model-made one that repeats what was tried (it cost money): both
    // count toward the stop, and the next proposal is told what happened
    streak.lastFailure = 'skipped' in out ? out.skipped : out.failed;
    streak.notes.push('skipped' in out ? out.skipped : `a proposal failed: ${out.failed}`);
    if (++streak.failed >= MAX_FAILED_PROPOSALS) {
      // what this round already proposed is evaluated first; the run stops at the next failure
      return made === 0 ? `the ${ctx.proposer.name} proposer failed ${streak.failed} times in a row (last: ${streak.lastFailure})` : null;
    }
    if (elapsedMs(ctx) >= ctx.study.budget.wall_seconds * 1000) break;
  }
  return null;
}

async function incumbentOf(ctx: RunCtx, exps: ExperimentRow[]): Promise<ExperimentRow> {
  const kept = exps.filter((e) => e.decision === 'kept');
  return kept.length ? kept[kept.length - 1]! : exps.find((e) => e.seq === 0)!;
}

function incumbentCommit(inc: ExperimentRow): string {
  return inc.kept_commit ?? inc.parent_commit;
}

/** The editable files at `commit`, as a copy; a commit never changes, so the last few read are kept (a failed read is not). */
async function editableFiles(ctx: RunCtx, commit: string): Promise<Record<string, string>> {
  let read = ctx.filesAt.get(commit);
  if (!read) {
    read = (async () => {
      const files: Record<string, string> = {};
      for (const p of await g.trackedFiles(ctx.paths.repo, commit)) {
        if (ctx.isEditable(p)) files[p] = await g.showFile(ctx.paths.repo, commit, p);
      }
      return files;
    })();
    ctx.filesAt.set(commit, read);
    read.catch(() => ctx.filesAt.delete(commit));
    if (ctx.filesAt.size > FILES_KEPT) ctx.filesAt.delete(ctx.filesAt.keys().next().value!);
  }
  return { ...(await read) };
}

/** commits whose editable files editableFiles keeps: the incumbent's, the base's, and a few before */
const FILES_KEPT = 4;

async function createBaseline(ctx: RunCtx): Promise<void> {
  const base = ctx.run.base_commit;
  const files = await editableFiles(ctx, base);
  ctx.store.insertExperiment({
    run_id: ctx.run.id, seq: 0, parent_commit: base, candidate_commit: base, proposer: 'baseline',
    hypothesis: 'baseline (the starting commit, evaluated repeatedly to measure noise)', meta: null,
    edits: '[]', diff: '', files_hash: filesHash(files),
  });
}

/**
 * The ledger a proposal of `round` is shown: what was measured before the round started, so a
 * proposal does not depend on which of its round-mates' screens happened to finish first (they
 * run while it is made): the same seeds give the same proposals whatever the timing.
 */
function ledgerOf(ctx: RunCtx, exps: ExperimentRow[], round: number): LedgerEntry[] {
  const evals = ctx.store.evaluationsOfRun(ctx.run.id);
  return exps.map((e) => ({
    values: okMetrics(visibleAt(evals.get(e.id), e, round - 1)),
    seq: e.seq,
    hypothesis: e.hypothesis,
    decision: (e.decision ?? 'pending') as LedgerEntry['decision'],
    metric: e.metric ?? undefined,
    improvement: e.improvement ?? undefined,
    meta: e.meta ? JSON.parse(e.meta) : undefined,
    reason: e.reason ?? undefined,
    proposer: e.proposer,
  }));
}

function checkEditPath(ctx: RunCtx, p: string): string | null {
  if (isAbsolute(p) || normalize(p).startsWith('..') || normalize(p) !== p.replace(/^\.\//, '')) return `path ${p} is not a plain repo-relative path`;
  if (ctx.isLocked(p)) return `edit touches locked path ${p}`;
  if (!ctx.isEditable(p)) return `edit touches ${p}, which is not editable (editable: ${ctx.study.editable.join(', ')})`;
  return null;
}

type ProposeOutcome = { created: ExperimentRow } | 'rejected' | 'empty' | 'none' | { failed: string } | { skipped: string };

/**
 * Ask the proposer for one candidate of round `round` and record it: `created` (pending, to be
 * evaluated; its row), `rejected` (recorded, never evaluated), `empty` (nothing new: a repeat, no change,
 * whitespace only), `none` (the proposer has nothing left) or a failed proposal (its trace says why).
 */
async function proposeNext(ctx: RunCtx, round: number, notes: string[]): Promise<ProposeOutcome> {
  const exps = ctx.store.listExperiments(ctx.run.id);
  const inc = await incumbentOf(ctx, exps);
  const parent = incumbentCommit(inc);
  const files = await editableFiles(ctx, parent);
  const seq = exps.length;
  const seen = new Set(exps.map((e) => e.files_hash));
  const label = `[exp ${seq}/${ctx.study.budget.experiments}]`;
  // the proposer sees repo-relative paths; the study's are relative to its folder
  const pre = ctx.paths.studyDir ? `${ctx.paths.studyDir}/` : '';
  const session = new ProposalSession({
    db: ctx.store.sqlite, runId: ctx.run.id, seq, proposer: ctx.proposer.name, provider: ctx.metaProvider, guard: ctx.guard,
    limits: { tokens: ctx.study.proposer.tokens, dollars: ctx.study.proposer.dollars }, signal: ctx.signal,
  });
  // what a model proposer reads of the run's traces (none in a store that keeps none)
  const history = ctx.store.sqlite ? new StoreHistory({
    db: ctx.store.sqlite, runId: ctx.run.id, kind: ctx.study.kind, incumbentSeq: inc.seq,
    readFile: async (p: string) => (ctx.isHidden(p) ? null : g.showFile(ctx.paths.repo, parent, p).catch(() => null)),
  }) : undefined;
  let proposal: Proposal | null;
  try {
    proposal = await ctx.proposer.propose({
      files, editable: ctx.study.editable.map((e) => pre + e.replace(/^\.\//, '')),
      knobs: ctx.study.knobs.map((k) => ({ ...k, file: pre + k.file.replace(/^\.\//, '') })), metric: ctx.study.metric,
      ledger: ledgerOf(ctx, exps, round), random: seededRandom(ctx.study.proposer.seed, seq), seen,
      baseFiles: inc.seq === 0 ? files : await editableFiles(ctx, ctx.run.base_commit),
      screenMargin: screenMarginFor(ctx, exps, seq, round),
      seq, runId: ctx.run.id, kind: ctx.study.kind, command: ctx.study.command, incumbent: { seq: inc.seq, commit: parent, metric: inc.metric ?? undefined },
      repo: ctx.paths.repo, program: ctx.program,
      round: exps.filter((e) => e.round === round).map((e) => ({ hypothesis: e.hypothesis })), notes,
      history, services: session, signal: ctx.signal,
    });
  } catch (e) {
    const message = (e as Error).message;
    session.finish('error', null, message);
    if (ctx.signal.aborted) throw new Interrupted();
    if (e instanceof BudgetExceeded) throw new BudgetStop(message);
    if (e instanceof ProposalFailed || e instanceof ProviderError) {
      ctx.reporter.event(`${label} proposal failed: ${message}${spendNote(session)}`);
      return { failed: message };
    }
    throw e;
  }
  if (!proposal) {
    session.finish('ok', 'nothing left to propose');
    return 'none';
  }
  const skip = (why: string): ProposeOutcome => {
    session.finish('ok', { hypothesis: proposal!.hypothesis, skipped: why });
    if (!session.hasTrace) return 'empty';
    ctx.reporter.event(`${label} skipped (${why}): ${proposal!.hypothesis}${spendNote(session)}`);
    return { skipped: `"${proposal!.hypothesis}" was skipped: ${why}` };
  };
  // drop edits that change nothing; a proposal that changes nothing is not an experiment
  const edits: FileEdit[] = proposal.edits.filter((e) => files[e.path] !== e.content);
  if (edits.length === 0) return skip('it changes nothing');
  if (whitespaceOnlyChange(files, edits)) return skip('it changes whitespace only');
  const hash = filesHash(applyEdits(files, edits));
  if (seen.has(hash)) {
    const twin = exps.find((e) => e.files_hash === hash);
    return skip(`these exact files were already evaluated${twin ? ` as #${twin.seq} (${twin.decision ?? 'pending'})` : ''}`);
  }
  const guarded = edits.map((e) => checkEditPath(ctx, e.path)).find((x) => x !== null)
    ?? (!ctx.study.proposer.allow_seed_changes && seedOnlyChange(files, edits)
      ? 'it only changes a random seed (a seed change can only win by luck; set proposer.allow_seed_changes to allow it)' : null);
  // the memorisation check (src/contamination.ts): validation task data written into the editable files; its details are for people only
  const contamination = guarded ? null : await ctx.contamination.check(files, edits);
  const rejection = guarded ?? contamination?.rejection ?? null;
  if (contamination) ctx.reporter.event(`${label} memorisation check (${contamination.record.verdict}): ${contamination.record.summary}`);

  const meta = proposal.meta === undefined ? null : JSON.stringify(proposal.meta);
  const spent = session.spent();
  const record: ProposalRecord | null = session.hasTrace || proposal.cited?.length || proposal.expected_effect
    ? { trace_id: session.hasTrace ? session.traceId : null, cited: proposal.cited ?? [], expected_effect: proposal.expected_effect ?? null, tokens: spent.tokens, cost_usd: spent.dollars, ms: session.ms }
    : null;
  session.finish('ok', { hypothesis: proposal.hypothesis, cited: proposal.cited ?? [], expected_effect: proposal.expected_effect ?? null, files: edits.map((e) => e.path), rejected: rejection });
  const row = { run_id: ctx.run.id, seq, parent_commit: parent, proposer: ctx.proposer.name, hypothesis: proposal.hypothesis, meta, round, proposal: record ? JSON.stringify(record) : null, files_hash: hash, edits: JSON.stringify(edits), contamination: contamination ? JSON.stringify(contamination.record) : null };
  if (rejection) {
    // recorded with its diff for audit, never written into any tree, never evaluated
    const exp = ctx.store.insertExperiment({ ...row, candidate_commit: null, diff: await g.diffEdits(files, edits) });
    ctx.store.decideExperiment(exp.id, {
      decision: 'rejected', reason: rejection, metric: null, incumbent_metric: inc.metric, improvement: null, margin: null,
      wall_ms: 0, inside_ms: 0,
    });
    ctx.reporter.event(`${label} rejected: ${rejection} (${proposal.hypothesis})${spendNote(session)}`);
    return 'rejected';
  }
  // the candidate commit is built in a private index of the repository: no working tree involved
  const candidate = await g.commitEdits(ctx.paths.repo, parent, edits, `autoagent candidate ${ctx.run.id} #${seq}

${proposal.hypothesis}`);
  await g.pinCandidate(ctx.paths.repo, ctx.run.id, seq, candidate); // before the row: a recorded candidate always has its ref
  const created = ctx.store.insertExperiment({ ...row, candidate_commit: candidate, diff: await g.diff(ctx.paths.repo, parent, candidate) });
  if (session.hasTrace) ctx.reporter.event(`${label} proposed by ${ctx.proposer.name}${spendNote(session)}: ${proposal.hypothesis}`);
  return { created };
}

/** ` (meta-agent 12.3k tokens, $0.0412, 21s)`, or nothing for a proposer that spent nothing */
/** The margin the screen of a candidate proposed now (experiment `seq` of `round`) will have to beat, as of now. */
function screenMarginFor(ctx: RunCtx, exps: ExperimentRow[], seq: number, round: number): number {
  const evals = ctx.store.evaluationsOfRun(ctx.run.id);
  const at = { seq, round };
  const inc = incumbentMetrics([...exps, { id: -1, seq, round, decision: null, candidate_commit: null }] as ExperimentRow[], evals, at, 'screen').metrics;
  return noiseMargin(pooledNoise(noiseGroupsBefore(exps, evals, at, 'screen')), 1, Math.max(1, inc.length), {
    alpha: ctx.study.acceptance.alpha / Math.max(1, ctx.study.proposer.candidates, ctx.dispatcher.size), minDelta: ctx.study.acceptance.min_delta,
  });
}

function spendNote(session: ProposalSession): string {
  const s = session.spent();
  if (!session.hasTrace) return '';
  return ` (meta-agent ${fmtTokens(s.tokens)} tokens, $${s.dollars.toFixed(4)}, ${fmtDuration(session.ms)})`;
}

function seedFor(study: Study, seq: number, repeat: number): number {
  return study.acceptance.seed_offset + seq * 1000 + repeat + 1;
}

/** The run's noise as `log` shows it: the groups the next decision would pool. */
export function runNoise(store: LedgerStore, runId: string): Noise {
  return pooledNoise(noiseGroupsBefore(store.listExperiments(runId), store.evaluationsOfRun(runId), { seq: Infinity, round: Infinity }));
}

/** Thrown into the evaluations still running when one of a batch stops the run (the others are cut short, not recorded). */
class Aborted extends Error {}

/**
 * Tasks run at once that stop together: when one fails, the others are aborted, and `settle`
 * awaits every task (tasks may add tasks while they run) and throws the first failure; a run
 * stopped from outside throws Interrupted. Nothing is left running, and only evaluations that
 * completed were recorded.
 */
class TaskGroup {
  private readonly ac = new AbortController();
  private readonly tasks: Array<Promise<unknown>> = [];
  private first: unknown = null;
  private readonly onAbort = () => this.ac.abort();

  constructor(private readonly ctx: RunCtx) {
    ctx.signal.addEventListener('abort', this.onAbort, { once: true });
  }

  add<T>(task: (signal: AbortSignal) => Promise<T>): Promise<T> {
    const p = (async () => {
      try {
        return await task(this.ac.signal);
      } catch (e) {
        if (this.first === null && !(e instanceof Aborted)) this.first = e;
        this.ac.abort();
        throw e;
      }
    })();
    this.tasks.push(p.catch(() => undefined));
    return p;
  }

  async settle(): Promise<void> {
    try {
      for (let seen = 0; seen < this.tasks.length;) {
        const batch = this.tasks.slice(seen);
        seen = this.tasks.length;
        await Promise.all(batch);
      }
      if (this.ctx.signal.aborted) throw new Interrupted();
      if (this.first !== null) throw this.first;
    } finally {
      this.ctx.signal.removeEventListener('abort', this.onAbort);
    }
  }
}

/** Run `tasks` at once, as a TaskGroup; their results in order. */
async function together<T>(ctx: RunCtx, tasks: Array<(signal: AbortSignal) => Promise<T>>): Promise<T[]> {
  const group = new TaskGroup(ctx);
  const results = tasks.map((t) => group.add(t));
  await group.settle();
  return Promise.all(results);
}

/** One evaluation of `exp` as repeat `repeat`, in a free slot; recorded when it completes (not when it is cut short). */
async function evaluateOnce(
  ctx: RunCtx, exp: ExperimentRow, repeat: number, label: string,
  o: { round?: number; screenAgainst?: Map<string, number>; signal?: AbortSignal } = {},
): Promise<EvaluationRow> {
  const seed = seedFor(ctx.study, exp.seq, repeat);
  if (o.signal?.aborted || ctx.signal.aborted) throw new Aborted();
  const signal = o.signal ? AbortSignal.any([ctx.signal, o.signal]) : ctx.signal;
  const stage = exp.seq === 0 ? 'baseline' : o.round !== undefined && exp.round !== o.round ? 'incumbent' : repeat === 0 ? 'screen' : 'confirm';
  // what the result is measured for: a candidate's parent (the round's incumbent), else the incumbent itself
  const incumbent = stage === 'screen' || stage === 'confirm' ? exp.parent_commit : incumbentCommit(exp);
  // the slot's live status line: what it evaluates, how far, what it spent, ETAs (src/progress.ts)
  let timer: ReturnType<typeof setInterval> | undefined;
  let state: SlotState | undefined;
  let show: (t: (() => string) | null) => void = () => {};
  const tick = () => {
    const st = state;
    if (!st) return;
    show(() => {
      // an evaluation that took its slot just before the previous one was recorded learns its typical time when drawn
      if (st.typicalMs === null) st.typicalMs = typicalEvalMs(ctx);
      return slotLine(st, Date.now(), runEta(ctx));
    });
  };
  try {
    const { out, slot, hardware, screenedAgainst, traces } = await ctx.dispatcher.evaluate({
      commit: exp.candidate_commit!, label: `${exp.seq}-${repeat}`, seq: exp.seq, seed, repeat, stage, incumbent, screenAgainst: o.screenAgainst, signal,
      onProgress: (p) => {
        if (!state) return;
        state.progress = { ...state.progress, ...p };
        tick();
      },
    }, (slot) => {
      if (o.signal?.aborted || ctx.signal.aborted) throw new Aborted();
      state = { label, slot: ctx.dispatcher.size > 1 ? slot + 1 : null, started: Date.now(), progress: {}, typicalMs: typicalEvalMs(ctx) };
      show = (t) => (ctx.reporter.progress ? ctx.reporter.progress(slot, t) : ctx.reporter.live(t && t()));
      tick();
      timer = setInterval(() => {
        tick();
        // the elapsed time is recorded as it goes: a killed run keeps all but the last seconds
        if (Date.now() - ctx.lastCheckpoint >= HEARTBEAT_MS) checkpoint(ctx);
      }, 1000);
      // cleared while this evaluation still holds the slot: the next one's line is its own
      return () => {
        clearInterval(timer);
        timer = undefined;
        show(null);
      };
    });
    if (ctx.signal.aborted) throw new Interrupted();
    if (o.signal?.aborted) throw new Aborted();
    // a result measured for another incumbent is never recorded for this one (the queue's dispatcher evaluates such a job again)
    if (screenedAgainst !== incumbent) throw new Error(`experiment #${exp.seq} repeat ${repeat}: the dispatcher returned a result measured for incumbent ${screenedAgainst.slice(0, 10)}, not ${incumbent.slice(0, 10)}`);
    // a queue worker's traces are recorded whatever the outcome (a partial evaluation's too, as a local one's are); twice adds nothing
    if (traces) ctx.store.importTraces(traces);
    if (out.budgetExceeded) throw new BudgetStop(out.budgetExceeded);
    if (out.providerFailed) throw new ProviderStop(out.providerFailed);
    ctx.store.insertEvaluation({
      experiment_id: exp.id, repeat, seed, status: out.status, metric: out.metric, reason: out.reason,
      command_ms: Math.round(out.commandMs), evaluator_ms: Math.round(out.evaluatorMs), exit_code: out.exitCode,
      stdout_tail: out.stdoutTail, stderr_tail: out.stderrTail,
      telemetry: out.telemetry || out.screenedOut ? JSON.stringify({ ...out.telemetry, ...(out.screenedOut ? { screened_out: out.screenedOut } : {}) }) : null,
      round: o.round ?? null, slot, hardware,
    });
    checkpoint(ctx);
    ctx.etaCache = null;
    return ctx.store.evaluationsOf(exp.id).find((v) => v.repeat === repeat)!;
  } finally {
    if (timer) {
      clearInterval(timer);
      show(null);
    }
  }
}

/** seconds between elapsed-time checkpoints while an evaluation runs */
const HEARTBEAT_MS = 5000;

/** the mean duration of this run's completed evaluations, else null */
function typicalEvalMs(ctx: RunCtx): number | null {
  const ms = ctx.store.okEvaluationMs(ctx.run.id);
  return ms.length ? mean(ms) : null;
}

/** The run's ETA (src/progress.ts runEtaMs), from the store at most every 5 s. */
function runEta(ctx: RunCtx): number | null {
  const now = Date.now();
  if (ctx.etaCache && now - ctx.etaCache.at < 5000) return ctx.etaCache.ms === null ? null : Math.max(0, ctx.etaCache.ms - (now - ctx.etaCache.at));
  const exps = ctx.store.listExperiments(ctx.run.id);
  const evalMs = ctx.store.okEvaluationMs(ctx.run.id);
  const decided = exps.filter((e) => e.seq > 0 && e.decision !== null && e.decision !== 'rejected' && e.wall_ms !== null);
  const base = exps.find((e) => e.seq === 0);
  const baselineLeft = base?.decision ? 0 : ctx.study.acceptance.baseline_repeats - (base ? ctx.store.evaluationsOf(base.id).length : 0);
  const ms = runEtaMs({
    experimentsLeft: Math.max(0, ctx.study.budget.experiments - decided.length - exps.filter((e) => e.decision === 'rejected').length),
    experimentMs: decided.map((e) => e.wall_ms!), baselineLeft, evaluationMs: evalMs, slots: ctx.dispatcher.size,
    wallLeftMs: Math.max(0, ctx.study.budget.wall_seconds * 1000 - elapsedMs(ctx)),
  });
  ctx.etaCache = { at: now, ms };
  return ms;
}

async function processExperiment(ctx: RunCtx, exp: ExperimentRow): Promise<void> {
  await runBaseline(ctx, exp, Date.now());
}

function insideMs(evals: EvaluationRow[]): number {
  return evals.reduce((s, v) => s + v.command_ms + v.evaluator_ms, 0);
}

/** The baseline's repeats, in parallel when the run has slots; one that fails fails the baseline. */
async function runBaseline(ctx: RunCtx, exp: ExperimentRow, started: number): Promise<void> {
  const n = ctx.study.acceptance.baseline_repeats;
  const name = ctx.study.metric.name;
  const done = new Set(ctx.store.evaluationsOf(exp.id).map((v) => v.repeat));
  const todo = Array.from({ length: n }, (_, r) => r).filter((r) => !done.has(r));
  await together(ctx, todo.map((r) => async (signal: AbortSignal) => {
    const v = await evaluateOnce(ctx, exp, r, `[baseline ${r + 1}/${n}]`, { signal });
    if (v.status !== 'ok') {
      ctx.store.decideExperiment(exp.id, {
        decision: v.status === 'timeout' ? 'timeout' : 'crash', reason: `baseline repeat ${r + 1} ${v.status}: ${v.reason}`,
        metric: null, incumbent_metric: null, improvement: null, margin: null, wall_ms: Date.now() - started, inside_ms: insideMs(ctx.store.evaluationsOf(exp.id)),
      });
      throw new BaselineFailed(`the baseline failed (${v.status}: ${v.reason}); fix the starting commit and start a new run`);
    }
    ctx.reporter.event(`[baseline ${r + 1}/${n}] ${name}=${fmtMetric(v.metric!)} (${fmtDuration(v.command_ms + v.evaluator_ms)}, seed ${v.seed}${v.slot !== null ? `, slot ${v.slot + 1}` : ''})`);
  }));
  const evals = ctx.store.evaluationsOf(exp.id);
  const m = okMetrics(evals);
  const sd = stddev(m);
  ctx.store.decideExperiment(exp.id, {
    decision: 'baseline', reason: `${m.length} repeats: mean ${metricFormat(sd)(mean(m))}, sd ${metricFormat(sd)(sd)}`,
    metric: mean(m), incumbent_metric: null, improvement: null, margin: null, wall_ms: Date.now() - started, inside_ms: insideMs(evals),
  });
  ctx.reporter.event(`baseline ${name} = ${metricFormat(sd)(mean(m))} ± ${metricFormat(sd)(sd)} (sd over ${m.length} seeds: the noise floor)`);
  const note = zeroNoiseNote(m, name, ctx.study.acceptance.min_delta);
  if (note) ctx.reporter.event(note);
}

interface Passed {
  exp: ExperimentRow;
  j: Judgement;
  m: number[];
  incMetrics: number[];
  started: number;
}

/** The acceptance test of candidate `exp` on its evaluations `m` at `stage` (src/acceptance.ts: the same rule `audit` re-derives). */
function judgeOf(ctx: RunCtx, exp: ExperimentRow, m: number[], stage: Stage): Judgement & { incumbent: number[] } {
  return judgeCandidate(ctx.store.listExperiments(ctx.run.id), ctx.store.evaluationsOfRun(ctx.run.id), exp, m, ctx.study.metric.direction, {
    alpha: ctx.study.acceptance.alpha, minDelta: ctx.study.acceptance.min_delta,
  }, stage);
}

/** A new round being proposed: its number, and the proposals, which hand each candidate to `screen` as it is made. */
interface RoundFeed {
  round: number;
  propose: (screen: (exp: ExperimentRow) => void, signal: AbortSignal) => Promise<void>;
}

/**
 * Evaluate the candidates of one round and decide it: the pending ones (a round resumed), or those
 * of a new round as they are proposed (`feed`: each screen starts while the next candidate is
 * proposed). With several slots the round runs at once: the candidates' screens side by side,
 * each judged as it comes in once the round is complete (against the incumbent as of the round's
 * start, at α / k for the round's k candidates), and a candidate that passes starts its
 * confirmations at once; the first one to pass also starts one fresh repeat of the incumbent
 * beside them (its noise under the same load), which every final judgement of the round waits
 * for. A round where no screen passes runs nothing but its screens. Failures are recorded in seq
 * order when the round is decided; then the best of those that passed is kept and the others
 * discarded. Passed candidates stay pending until
 * then, with all their evaluations stored, so a run killed in between re-judges them from the
 * store on resume without evaluating again.
 */
async function processRound(ctx: RunCtx, pending: ExperimentRow[], feed?: RoundFeed): Promise<void> {
  const exps = ctx.store.listExperiments(ctx.run.id);
  const parent = pending[0]?.parent_commit ?? incumbentCommit(await incumbentOf(ctx, exps));
  const r = feed?.round ?? roundOf(pending[0]!);
  // A keep interrupted after the branch moved: the head must be one member's kept commit
  // (its parent, its tree and its message say so); finish recording that round.
  const head = await g.revParse(ctx.paths.repo, `refs/heads/${ctx.run.branch}`);
  const moved = head && head !== parent;
  const passed: Passed[] = [];
  if (moved) {
    for (const exp of pending) {
      const started = Date.now();
      const p = judgeStored(ctx, exp, started);
      if (p) passed.push(p);
      else record(ctx, exp, 'discarded', 'its stored evaluations do not pass the acceptance rule', null, started);
    }
  } else {
    // (a seq not recorded yet: the next one, whose incumbent is the current one)
    const inc = incumbentBefore(exps, pending[0]?.seq ?? exps.length)!;
    const screenAgainst = ctx.store.taskMeanScores(ctx.run.id, inc.seq);
    // the incumbent's fresh repeats of this round: started by the first screen that passes, awaited by every final judgement
    let fresh: Promise<unknown> | null = null;
    const incumbentFresh = (signal: AbortSignal) => (fresh ??= Promise.all(incumbentRepeats(ctx, inc, r).map((rep) => evaluateOnce(ctx, inc, rep, `[incumbent #${inc.seq} repeat ${rep + 1}]`, { round: r, signal }))));
    const group = new TaskGroup(ctx);
    const members: Array<Promise<Passed | Failed>> = [];
    // a screen is judged once the round is complete: its α / k counts every candidate of the round
    let complete: Promise<unknown> = Promise.resolve();
    const screen = (exp: ExperimentRow) => members.push(group.add(async (signal) => {
      const started = Date.now();
      ctx.reporter.event(`[exp ${exp.seq}/${ctx.study.budget.experiments}] ${exp.hypothesis}`);
      const first = ctx.store.evaluationsOf(exp.id).find((v) => v.repeat === 0) ?? (await evaluateOnce(ctx, exp, 0, `[exp ${exp.seq}/${ctx.study.budget.experiments}]`, { round: r, screenAgainst, signal }));
      await complete;
      if (signal.aborted) throw new Aborted();
      return confirmCandidate(ctx, exp, first, started, r, signal, () => incumbentFresh(signal));
    }));
    if (feed) complete = group.add((signal) => feed.propose(screen, signal)).catch(() => undefined);
    pending.forEach(screen);
    await group.settle();
    const confirmed = await Promise.all(members);
    // the failures, in seq order: the chain's order does not depend on which evaluation finished first
    for (const f of confirmed) {
      if ('decision' in f) record(ctx, f.exp, f.decision, f.reason, f.j, f.started, undefined, f.ended);
      else passed.push(f);
    }
  }
  const better = (a: Passed, b: Passed) => b.j.improvement - a.j.improvement || a.exp.seq - b.exp.seq;
  passed.sort(better);
  // a candidate measured against an incumbent that is no longer the incumbent is never promoted: dropped
  if (!moved) {
    const current = incumbentCommit(await incumbentOf(ctx, ctx.store.listExperiments(ctx.run.id)));
    for (const p of passed.filter((x) => x.exp.parent_commit !== current)) {
      passed.splice(passed.indexOf(p), 1);
      record(ctx, p.exp, 'discarded', `measured against incumbent ${p.exp.parent_commit.slice(0, 10)}, but the incumbent is now ${current.slice(0, 10)}: not promoted`, p.j, p.started);
    }
  }
  const winner = passed[0];
  if (moved) {
    const ours = winner && (await isKeptCommitOf(ctx, head, winner));
    if (!ours) throw new UserError(`run branch ${ctx.run.branch} moved to ${head.slice(0, 10)}, which is not a kept commit of experiment ${pending.map((e) => e.seq).join(' or ')}: the branch was changed outside autoagent (see \`autoagent audit\`)`);
  }
  if (winner) await keepCandidate(ctx, winner, passed.length, moved ? head : undefined);
  for (const p of passed.slice(1)) {
    record(ctx, p.exp, 'discarded', `passed (Δ ${fmtDelta(p.j.improvement, ctx.study.metric.direction, fm(ctx))} > margin ${fm(ctx)(p.j.margin)}), but #${winner!.exp.seq} of the same round did better (Δ ${fmtDelta(winner!.j.improvement, ctx.study.metric.direction, fm(ctx))})`, p.j, p.started);
  }
}

/**
 * The repeat numbers of the incumbent's fresh evaluations in round `r` still to run: with several
 * slots, one per round where a candidate passed its screen (the noise under the same load as the
 * confirmations); none with one slot, or without confirmations (nothing would see it).
 */
function incumbentRepeats(ctx: RunCtx, inc: ExperimentRow, r: number): number[] {
  if (ctx.dispatcher.size <= 1 || ctx.study.acceptance.confirm_repeats === 0 || inc.decision === 'crash' || inc.decision === 'timeout') return [];
  const evals = ctx.store.evaluationsOf(inc.id);
  const have = evals.filter((v) => v.round === r).length;
  const next = Math.max(-1, ...evals.map((v) => v.repeat)) + 1;
  return Array.from({ length: Math.max(0, INCUMBENT_REPEATS_PER_ROUND - have) }, (_, i) => next + i);
}

/** fresh evaluations of the incumbent in each round of a run with several slots */
const INCUMBENT_REPEATS_PER_ROUND = 1;

async function isKeptCommitOf(ctx: RunCtx, head: string, p: Passed): Promise<boolean> {
  const repo = ctx.paths.repo;
  return (await g.parentOf(repo, head)) === p.exp.parent_commit
    && (await g.revParse(repo, `${head}^{tree}`)) === (await g.revParse(repo, `${p.exp.candidate_commit}^{tree}`))
    && (await g.commitMessage(repo, head)).includes(`\nExperiment: ${p.exp.seq}\n`);
}

/** A round member whose keep was interrupted after the branch moved: its stored evaluations, judged again. */
function judgeStored(ctx: RunCtx, exp: ExperimentRow, started: number): Passed | null {
  const m = okMetrics(ctx.store.evaluationsOf(exp.id));
  if (m.length !== 1 + ctx.study.acceptance.confirm_repeats) return null;
  const j = judgeOf(ctx, exp, m, 'final');
  return j.pass ? { exp, j, m, incMetrics: j.incumbent, started } : null;
}

/** A candidate's failure, recorded when its round is decided (then every link of the round covers the round's fresh repeats). */
interface Failed {
  exp: ExperimentRow;
  decision: Decision;
  reason: string;
  j: Judgement | null;
  started: number;
  ended: number;
}

/**
 * Judge a candidate's screen; if it passes, run its confirmations beside the incumbent's fresh
 * repeats of the round (`incumbentFresh`) and judge them all. Returns it when it passed, else its failure.
 */
async function confirmCandidate(
  ctx: RunCtx, exp: ExperimentRow, screen: EvaluationRow, started: number, r: number, signal: AbortSignal, incumbentFresh: () => Promise<unknown>,
): Promise<Passed | Failed> {
  const { study, store } = ctx;
  const label = `[exp ${exp.seq}/${study.budget.experiments}]`;
  const fail = (decision: Decision, reason: string, j: Judgement | null): Failed => ({ exp, decision, reason, j, started, ended: Date.now() });
  if (screen.status !== 'ok') {
    return fail(screen.status as Decision, screen.reason ?? screen.status, null);
  }
  const screenedOut = screen.telemetry ? (JSON.parse(screen.telemetry).screened_out as string | undefined) : undefined;
  if (screenedOut) {
    return fail('discarded', screenedOut, null);
  }
  let j = judgeOf(ctx, exp, [screen.metric!], 'screen');
  if (!j.pass) {
    return fail('discarded', `first evaluation: Δ ${fmtDelta(j.improvement, study.metric.direction, fm(ctx))} does not beat the margin ${fm(ctx)(j.margin)}`, j);
  }
  const c = study.acceptance.confirm_repeats;
  const have = new Set(store.evaluationsOf(exp.id).map((v) => v.repeat));
  const [confirmations] = await Promise.all([
    Promise.all(Array.from({ length: c }, (_, i) => i + 1).map((rep) => (have.has(rep)
      ? Promise.resolve(store.evaluationsOf(exp.id).find((x) => x.repeat === rep)!)
      : evaluateOnce(ctx, exp, rep, `${label} confirm ${rep}/${c}`, { round: r, signal })))),
    c > 0 ? incumbentFresh() : null,
  ]);
  const failedRep = confirmations.find((v) => v.status !== 'ok');
  if (failedRep) {
    return fail(failedRep.status as Decision, `confirmation repeat ${failedRep.repeat}: ${failedRep.reason ?? failedRep.status}`, null);
  }
  const m = okMetrics(store.evaluationsOf(exp.id));
  if (c > 0) {
    j = judgeOf(ctx, exp, m, 'final');
    if (!j.pass) {
      return fail('discarded', `passed the screen but not the confirmation: mean of ${m.length} Δ ${fmtDelta(j.improvement, study.metric.direction, fm(ctx))} ≤ margin ${fm(ctx)(j.margin)}`, j);
    }
  }
  return { exp, j, m, incMetrics: j.incumbent, started };
}

/**
 * Commit the winner on the run branch (or finish recording a keep whose branch already moved):
 * the kept commit, an intent row, one compare-and-swap of the branch, then the decision.
 */
async function keepCandidate(ctx: RunCtx, p: Passed, passedInRound: number, alreadyKept?: string): Promise<void> {
  const { exp, j, m, incMetrics } = p;
  let kept = alreadyKept;
  if (!kept) {
    const message = keptMessage(ctx.study.metric.name, ctx.run.id, exp.seq, exp.hypothesis, j, m, incMetrics, ctx.store.ledgerHead(ctx.run.id)!.head);
    kept = await g.commitTree(ctx.paths.repo, exp.candidate_commit!, exp.parent_commit, message);
    ctx.store.recordPromotionIntent({ run_id: ctx.run.id, experiment_seq: exp.seq, kept_commit: kept, expected_parent: exp.parent_commit });
    await g.advanceBranch(ctx.paths.repo, ctx.run.branch, kept, exp.parent_commit);
  }
  const reason = keptReason(j, m.length, fm(ctx)) + (passedInRound > 1 ? ` (the best of ${passedInRound} that passed in its round)` : '');
  record(ctx, exp, 'kept', reason, j, p.started, kept);
  ctx.store.finishPromotion(ctx.run.id, exp.seq);
}

function keptReason(j: { improvement: number; margin: number }, n: number, fmt: MetricFmt): string {
  return `improvement ${fmt(j.improvement)} > margin ${fmt(j.margin)} over ${n} evaluation(s)`;
}

function record(
  ctx: RunCtx, exp: ExperimentRow, decision: Decision, reason: string,
  j: { candidateMean: number; incumbentMean: number; improvement: number; margin: number } | null, started: number, keptCommit?: string, ended = Date.now(),
): void {
  const evals = ctx.store.evaluationsOf(exp.id);
  const m = okMetrics(evals);
  ctx.store.decideExperiment(exp.id, {
    decision, reason, metric: m.length ? mean(m) : null, incumbent_metric: j?.incumbentMean ?? null,
    improvement: j?.improvement ?? null, margin: j?.margin ?? null, kept_commit: keptCommit ?? null,
    wall_ms: ended - started, inside_ms: insideMs(evals),
  });
  const name = ctx.study.metric.name;
  const metricText = m.length ? `${name}=${fm(ctx)(mean(m))}` : '';
  const left = Math.max(0, ctx.study.budget.wall_seconds * 1000 - elapsedMs(ctx));
  ctx.reporter.event(`[exp ${exp.seq}/${ctx.study.budget.experiments}] ${decision.padEnd(9)} ${metricText} ${reason} · ${bestLine(ctx)} · ${fmtDuration(left)} wall left`, toneOf(decision));
}

/** The run's metric format (decimals from the baseline's noise), fixed once the baseline is decided. */
function fm(ctx: RunCtx): MetricFmt {
  if (ctx.metricFmt) return ctx.metricFmt;
  const f = runMetricFmt(ctx.store, ctx.run.id);
  if (ctx.store.listExperiments(ctx.run.id).some((e) => e.seq === 0 && e.decision === 'baseline')) ctx.metricFmt = f;
  return f;
}

function bestLine(ctx: RunCtx): string {
  const exps = ctx.store.listExperiments(ctx.run.id);
  const base = exps.find((e) => e.seq === 0);
  const kept = exps.filter((e) => e.decision === 'kept');
  const best = kept.length ? kept[kept.length - 1]! : base;
  // a baseline of 0 is a baseline (`!base.metric` took it for none): only a missing one is none
  if (base?.metric === null || base?.metric === undefined || best?.metric === null || best?.metric === undefined) return 'no baseline yet';
  const d = best.metric - base.metric;
  // relative to a baseline of 0 is undefined: the absolute change then
  const vs = base.metric === 0 ? `${d > 0 ? '+' : d < 0 ? '' : '±'}${fm(ctx)(d)}` : `${d >= 0 ? '+' : ''}${((d / Math.abs(base.metric)) * 100).toFixed(2)}%`;
  return `best ${fm(ctx)(best.metric)} (${vs} vs baseline, ${kept.length} kept)`;
}
