/**
 * `autoagent worker --queue redis://HOST:PORT [--slots N]`: a stateless evaluation worker. Each job
 * carries what one evaluation needs (src/queue/common.ts JobData); the worker writes the
 * candidate's git bundle into a private temporary repository, checks the locked files of the
 * candidate commit against the run's manifest (a job whose locked files differ is refused), runs
 * the same sandboxed command and locked evaluator as a local slot (src/evaluation.ts and the kind
 * adapter), returns the outcome, and deletes the repository. It writes no git and no SQLite of the
 * run: the coordinator records the result.
 *
 * It refreshes a heartbeat key (host, slots, hardware, last seen) every 2 s, and on SIGTERM or
 * SIGINT stops taking jobs and finishes those it holds (BullMQ's worker.close()).
 */
import { existsSync, mkdtempSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, hostname, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { Worker, type Job } from 'bullmq';
import * as g from '../../base/git.ts';
import { StudySchema, type Study } from '../study.ts';
import { CommandKind } from '../kinds/command.ts';
import { evaluateCommit, readPaths, type EvalContext } from '../evaluation.ts';
import { buildManifest, LockViolation, relativeManifest, relativeManifestDiff, verifyManifest } from '../lock.ts';
import { globMatcher } from '../../base/glob.ts';
import { TrainerKind } from '../kinds/trainer.ts';
import type { EvalOutcome, EvalProgress, KindAdapter, PrepareResult, RunPaths as RunRepoPaths } from '../kinds/types.ts';
import { HarnessKind } from '../kinds/harness.ts';
import { packTraces } from './traces.ts';
import { shareSpend, type SharedSpend } from './spend.ts';
import { SpendGuard } from '../../task-agent/evaluate.ts';
import { discoverGpus, gpuDevices, type Lease } from '../slots.ts';
import { sandboxAvailable } from '../../sandbox/index.ts';
import { UserError } from '../../base/errors.ts';
import { openDb, exportTraceGroup, deleteTraceGroup, type DB } from '../../traces/index.ts';
import { pidAlive } from '../../base/proc.ts';
import {
  BLOB_KEY, QUEUE_NAME, WORKER_KEY, HEARTBEAT_MS, HEARTBEAT_TTL_S, JobDataSchema, checkQueueUrl, connect, redactUrl, sha256,
  BLOB_TTL_S, MODELS_QUEUE_NAME, type JobData, type JobResult, type TraceParts, type WorkerBeat,
} from './common.ts';

export interface WorkerOptions {
  url: string;
  slots: number;
  unsafeNoSandbox: boolean;
  /** BullMQ lockDuration (ms): a job whose worker stops renewing its lock this long is handed to another */
  lockMs: number;
  /** BullMQ stalledInterval (ms): how often workers look for such jobs */
  stalledMs: number;
  log: (line: string) => void;
  /** resolves when the worker should stop (SIGTERM / SIGINT in the CLI) */
  stop: Promise<void>;
  /**
   * `--models own`: also take jobs that call a model (kind harness; MODELS_QUEUE_NAME), up to
   * `slots` of them beside up to `slots` others, with the keys of this process's environment
   */
  models?: boolean;
  /** `--data DIR`: harness jobs' benchmark data here */
  dataDir?: string;
}

export interface JobOptions {
  unsafeNoSandbox: boolean;
  worker: string;
  /** where trainer corpus caches are kept between jobs (content-addressed; made when first asked for); a job's own temporary folder when absent */
  cacheDir?: string | (() => string);
  /** what this job's slot holds (a GPU, or a CPU share with several slots); trainer jobs only */
  lease?: Lease;
  /** the evaluation's progress as it goes (a trainer's steps and loss) */
  onProgress?: (p: EvalProgress) => void;
  /** the bytes stored under a sha256 (BLOB_KEY in Redis); null when there are none */
  blob?: (sha: string) => Promise<Buffer | null>;
  /** stores bytes under their sha256 on the queue (BLOB_KEY); returns the sha256 (a harness job's traces) */
  putBlob?: (bytes: Buffer) => Promise<string>;
  /** harness jobs: this worker calls models with its own environment's keys (`--models own`); without, they are refused */
  models?: boolean;
  /** harness jobs: the benchmark data's folder here (`--data`), over the study's `harness.data` and AUTOAGENT_DATA */
  dataDir?: string;
  /** harness jobs: the worker's store (traces until they are shipped, the model cache), made when first asked for */
  store?: () => { db: DB; dir: string };
  /** harness jobs: counts the job's spend with the run's on the queue (src/queue/spend.ts) */
  shareSpend?: (run: string, guard: SpendGuard) => Promise<SharedSpend>;
}

/** one corpus cache built at a time per folder (two slots asking for it wait for one build) */
const building = new Map<string, Promise<unknown>>();

/**
 * A worker's temporary folders are named by its host and process id, so that a later worker can
 * tell those of a worker that died (SIGKILL, OOM, power) from those of one that still runs.
 */
function tempFolder(kind: 'job' | 'cache'): string {
  return mkdtempSync(join(tmpdir(), `autoagent-worker-${kind === 'cache' ? 'cache-' : ''}${hostname()}-${process.pid}-`));
}

/**
 * Removes the temporary folders (job repositories, corpus caches) that workers of this host left
 * when they died without cleaning up; those of live processes are kept. Returns the names removed.
 */
export function sweepDeadWorkerFolders(dir = tmpdir(), host = hostname()): string[] {
  const escaped = host.replace(/[.*+?^$|()[\]{}\\]/g, '\\$&');
  const re = new RegExp(`^autoagent-worker-(?:cache-)?${escaped}-(\\d+)-[^/]+$`);
  const removed: string[] = [];
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return removed;
  }
  for (const name of names) {
    const pid = Number(re.exec(name)?.[1] ?? NaN);
    if (!Number.isInteger(pid) || pid === process.pid || pidAlive(pid)) continue;
    rmSync(join(dir, name), { recursive: true, force: true });
    removed.push(name);
  }
  return removed;
}

/** Evaluate one job in a private temporary repository; never throws for what the job holds. */
export async function evaluateJob(data: JobData, o: JobOptions): Promise<JobResult> {
  const t0 = Date.now();
  // command studies record no hardware class (as local slots); the heartbeat shows the worker's
  let base: Omit<JobResult, 'setupMs' | 'evalMs'> = { v: 1 as const, hardware: null, worker: o.worker, incumbent: data.incumbent };
  const refuse = (why: string): JobResult => ({ ...base, refused: why, setupMs: Date.now() - t0, evalMs: 0 });
  if (sha256(data.study) !== data.study_hash) return refuse('the study in the job does not match its hash');
  let study: Study;
  try {
    study = StudySchema.parse(JSON.parse(data.study));
  } catch (e) {
    return refuse(`the study in the job is not valid here: ${(e as Error).message.split('\n')[0]}`);
  }
  if (study.kind === 'harness') {
    if (!o.models) return refuse('kind harness calls a model, and this worker was not started with --models own (the queue carries no keys)');
    if (!o.store || !o.putBlob) return refuse('kind harness needs a store for its traces and a way to send them, which this worker has not');
    if (!data.locked_roots) return refuse('the job names none of its benchmark\'s locked files');
    if (!data.base_commit) return refuse('the job names no base commit to prepare its benchmark from');
  }
  const external = Object.keys(data.manifest.external);
  const cacheRoot = data.trainer_cache ?? null;
  if (study.kind === 'trainer' ? !cacheRoot || external.some((p) => !p.startsWith(`${cacheRoot}/`)) : study.kind === 'command' && external.length > 0) {
    return refuse('locked resources outside the repository (other than a trainer\'s corpus cache) are not evaluated by queue workers yet');
  }
  if (data.unsafe_no_sandbox === false && o.unsafeNoSandbox) return refuse('this worker runs without a sandbox (--unsafe-no-sandbox) and the run was not started with --unsafe-no-sandbox');
  const dir = tempFolder('job');
  try {
    await g.gitRaw(dir, ['init', '-q']);
    const bundle = join(dir, '.git', 'candidate.bundle');
    let bytes: Buffer;
    if (data.bundle_sha256) {
      const got = o.blob ? await o.blob(data.bundle_sha256) : null;
      // not a refusal (that stops the run): the job fails, and the coordinator stores the bundle again when it queues it again
      if (!got) throw new Error(`the candidate's bundle ${data.bundle_sha256.slice(0, 12)} is not on the queue (expired, or Redis lost it)`);
      if (sha256(got) !== data.bundle_sha256) return refuse(`the bundle on the queue does not match its sha256 ${data.bundle_sha256.slice(0, 12)}`);
      bytes = got;
    } else if (data.bundle !== undefined) {
      bytes = Buffer.from(data.bundle, 'base64');
    } else {
      return refuse('the job holds no bundle');
    }
    writeFileSync(bundle, bytes);
    await g.gitRaw(dir, ['fetch', '-q', bundle, `refs/autoagent-bundle/${data.commit}:refs/autoagent-bundle/${data.commit}`]);
    if ((await g.revParse(dir, `${data.commit}^{commit}`)) !== data.commit) return refuse(`the bundle does not hold commit ${data.commit.slice(0, 10)}`);
    // the locked files as the candidate commit has them, checked against the run's manifest (evaluateCommit)
    for (const rel of Object.keys(data.manifest.files)) {
      let content: Buffer;
      try {
        content = await g.gitRaw(dir, ['cat-file', 'blob', `${data.commit}:${rel}`]);
      } catch {
        return refuse(`locked file ${rel} is not in the candidate commit (a worker sees committed files only)`);
      }
      mkdirSync(dirname(join(dir, rel)), { recursive: true });
      writeFileSync(join(dir, rel), content);
    }
    // checked before any of them runs here (a trainer's prepare.py builds the corpus cache)
    try {
      verifyManifest({ files: data.manifest.files, external: {} }, dir, null, new Set());
    } catch (e) {
      if (e instanceof LockViolation) return refuse(e.message.replace(/: the run stops.*$/, ''));
      throw e;
    }
    const studyPath = join(dir, data.study_dir, 'study.yaml');
    const paths = { repo: dir, studyDir: data.study_dir, studyPath, stateDir: join(dir, '.autoagent') };
    const unsafe = o.unsafeNoSandbox || false;
    let adapter: KindAdapter = new CommandKind(study);
    let prepared: PrepareResult = { lockedExternal: [], environment: {} };
    let manifest = data.manifest;
    let lease: Lease = { hardware: null };
    let db = null as unknown as DB; // the kinds run here other than harness write nothing to a store
    let guard = new SpendGuard(0, 0, 0, 0);
    let spend: SharedSpend | null = null;
    const group = `${data.run}/${data.seq}/${data.repeat}`;
    if (study.kind === 'harness') {
      // the run's base tree, as the coordinator prepared from it (a benchmark folder next to the study, the
      // harness it checks a key for): nothing the candidate changed is read here; its tree is the evaluation's
      if ((await g.revParse(dir, `${data.base_commit}^{commit}`)) !== data.base_commit) return refuse(`the bundle does not hold the run's base commit ${data.base_commit!.slice(0, 10)}`);
      await g.gitRaw(dir, ['read-tree', data.base_commit!]);
      await g.gitRaw(dir, ['checkout-index', '-a', '-f']);
      const store = o.store!();
      db = store.db;
      const harness = new HarnessKind(study, { dataRoot: o.dataDir, hide: [store.dir] });
      try {
        prepared = await harness.prepare(study, paths);
      } catch (e) {
        if (e instanceof UserError) return refuse(e.message);
        throw e;
      }
      // the scorer, loaders, answers and data as this worker has them: the coordinator's, byte for byte
      const ext = buildManifest(dir, [], prepared.lockedExternal).external;
      const why = relativeManifestDiff(data.locked_roots!, relativeManifest(ext, prepared.lockedExternal));
      if (why) return refuse(`the benchmark's locked files here differ from the coordinator's (${why}): the same benchmark and data must be readable here (--data)`);
      adapter = harness;
      manifest = { files: data.manifest.files, external: ext };
      guard = new SpendGuard(0, 0, data.spend?.max_tokens ?? 0, data.spend?.max_dollars ?? 0);
      spend = o.shareSpend ? await o.shareSpend(data.run, guard) : null;
      deleteTraceGroup(db, group); // what an earlier delivery of this job left here
    }
    if (study.kind === 'trainer') {
      const t = await prepareTrainer(data, study, paths, cacheRoot!, o);
      if ('refused' in t) return refuse(t.refused);
      ({ adapter, prepared, manifest } = t);
      const env = prepared.environment as { device?: string; device_name?: string | null };
      // recorded as a local slot's: the GPU model (noise is pooled within one), or cpu
      lease = env.device === 'cuda'
        ? { ...(o.lease?.gpu ? { gpu: o.lease.gpu } : {}), hardware: o.lease?.gpu?.name ?? env.device_name ?? 'cuda' }
        : { ...(o.lease?.cpus ? { cpus: o.lease.cpus } : {}), hardware: 'cpu' };
      base = { ...base, hardware: lease.hardware };
    }
    const ctx: EvalContext = {
      // the coordinator records the outcome (and a harness job's traces, sent with it)
      db,
      runId: data.run, study, paths, adapter, prepared,
      manifest, baseTracked: new Set(data.base_tracked), isLocked: globMatcher(study.locked, data.study_dir), hidden: data.hidden,
      policy: { unsafeNoSandbox: unsafe, memoryMB: study.sandbox.memory_mb, maxProcesses: study.sandbox.max_processes, read: readPaths(study, dirname(studyPath)) },
      guard,
    };
    const t1 = Date.now();
    let out;
    try {
      const screenAgainst = data.screen_against ? new Map(Object.entries(data.screen_against)) : undefined;
      out = await evaluateCommit(ctx, { commit: data.commit, label: `${data.seq}-${data.repeat}`, seq: data.seq, seed: data.seed, repeat: data.repeat, lease, screenAgainst, onProgress: o.onProgress });
    } catch (e) {
      if (e instanceof LockViolation) return refuse(e.message.replace(/: the run stops.*$/, ''));
      throw e;
    } finally {
      await spend?.settled();
    }
    const evalMs = Date.now() - t1;
    let traces: TraceParts | undefined;
    if (study.kind === 'harness') {
      traces = await packTraces(exportTraceGroup(db, group), o.putBlob!);
      deleteTraceGroup(db, group);
    }
    const outcome = { ...out, status: out.status === 'rejected' ? 'crash' : out.status } as EvalOutcome;
    return { ...base, outcome, ...(traces ? { traces } : {}), setupMs: t1 - t0, evalMs };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * A trainer job: the same locked prepare.py (verified) builds the corpus cache here, in a folder
 * named by the content of the coordinator's cache, kept between jobs; its data files must be the
 * coordinator's, byte for byte (meta.json names local paths and is rebuilt by the same prepare.py).
 */
async function prepareTrainer(data: JobData, study: Study, paths: RunRepoPaths, cacheRoot: string, o: JobOptions): Promise<{ refused: string } | { adapter: KindAdapter; prepared: PrepareResult; manifest: JobData['manifest'] }> {
  const expected = new Map(Object.entries(data.manifest.external).map(([abs, h]) => [abs.slice(cacheRoot.length + 1), h] as const).filter(([rel]) => rel !== 'meta.json'));
  if (expected.size === 0) return { refused: 'the job names no corpus cache files' };
  const key = sha256(JSON.stringify([...expected].sort(([a], [b]) => a.localeCompare(b)))).slice(0, 16);
  const root = typeof o.cacheDir === 'function' ? o.cacheDir() : o.cacheDir ?? join(paths.stateDir, 'cache');
  const cache = join(root, `corpus-${key}`);
  // the train file too: prepare() checks that it is there (evaluateCommit writes the candidate's own workspace)
  const train = [paths.studyDir, study.trainer?.train ?? 'train.py'].filter(Boolean).join('/');
  const content = await g.gitRaw(paths.repo, ['cat-file', 'blob', `${data.commit}:${train}`]).catch(() => null);
  if (content) {
    mkdirSync(dirname(join(paths.repo, train)), { recursive: true });
    writeFileSync(join(paths.repo, train), content);
  }
  const adapter = new TrainerKind(study);
  const expectedRel = Object.fromEntries(expected);
  // the cache's files as hashed here; its data files (not meta.json) against the coordinator's, in words when they differ
  const hashed = () => (existsSync(cache) ? buildManifest(paths.repo, [], [cache]).external : null);
  const differs = (ext: Record<string, string>): string | null => {
    const { 'meta.json': _meta, ...have } = relativeManifest(ext, [cache])[0]!;
    return relativeManifestDiff([expectedRel], [have]);
  };
  const prev = building.get(cache) ?? Promise.resolve();
  const step = prev.catch(() => undefined).then(async () => {
    const before = hashed();
    const reuse = before !== null && differs(before) === null;
    const prepared = await adapter.prepare(study, paths, { cache, reuse });
    const external = hashed(); // after prepare.py (meta.json is made again)
    const why = external === null ? 'it was not built' : reuse ? null : differs(external);
    if (why || !external) {
      rmSync(cache, { recursive: true, force: true });
      return { refused: `the corpus cache prepare.py built on this worker differs from the coordinator's (${why}): the same corpus must be readable here (trainer.corpus)` };
    }
    return { adapter, prepared, manifest: { files: data.manifest.files, external } };
  });
  building.set(cache, step);
  try {
    return await step;
  } catch (e) {
    if (e instanceof UserError) return { refused: e.message };
    throw e;
  } finally {
    if (building.get(cache) === step) building.delete(cache);
  }
}

/** `cpu`, `NVIDIA H200`, `2× NVIDIA H200`, `2× NVIDIA H200 + NVIDIA A100 80GB PCIe` */
export function gpuSummary(models: string[]): string {
  if (models.length === 0) return 'cpu';
  const counts = new Map<string, number>();
  for (const m of models) counts.set(m, (counts.get(m) ?? 0) + 1);
  return [...counts].map(([m, n]) => (n > 1 ? `${n}× ${m}` : m)).join(' + ');
}

/** how often a job's progress goes to Redis at most (ms) */
const PROGRESS_MS = 1000;

/** `send` the latest value pushed, at most once every `ms` (the first at once, the last one late rather than lost); stop() drops what is pending. */
export function latestEvery<T>(ms: number, send: (v: T) => void): { push: (v: T) => void; stop: () => void } {
  let last = -Infinity;
  let pending: { v: T } | null = null;
  let timer: NodeJS.Timeout | null = null;
  const flush = () => {
    timer = null;
    if (!pending) return;
    last = Date.now();
    const { v } = pending;
    pending = null;
    send(v);
  };
  return {
    push: (v) => {
      pending = { v };
      if (timer) return;
      const wait = last + ms - Date.now();
      if (wait <= 0) flush();
      else timer = setTimeout(flush, wait);
    },
    stop: () => {
      if (timer) clearTimeout(timer);
      timer = null;
      pending = null;
    },
  };
}

/** Runs until `o.stop` resolves; then finishes the jobs it holds and returns. */
export async function runWorker(o: WorkerOptions): Promise<void> {
  checkQueueUrl(o.url);
  if (!o.unsafeNoSandbox) {
    const s = sandboxAvailable();
    if (!s.ok) throw new UserError(s.message);
  }
  const gpus = discoverGpus();
  const hardware = gpuSummary(gpus.map((g) => g.name));
  const id = `${hostname()}-${process.pid}-${randomBytes(3).toString('hex')}`;
  const conn = connect(o.url, o.log);
  const beats = connect(o.url, () => undefined);
  let active = 0;
  // trainer corpus caches live as long as the worker (content-addressed: every run on one corpus shares one)
  // (made by the first trainer job: a worker of command studies, or one killed, leaves no empty folder)
  let cacheDir: string | undefined;
  const cacheRoot = () => (cacheDir ??= tempFolder('cache'));
  // what workers of this host that died left behind: at the start, and before each job (one may have died since)
  const sweep = () => {
    const gone = sweepDeadWorkerFolders();
    if (gone.length) o.log(`removed ${gone.length} temporary folder(s) left by worker(s) that died: ${gone.join(', ')}`);
  };
  sweep();
  // one GPU per job while there are as many as slots (as local trainer slots); else all of them are visible to each
  const freeGpus = gpus.length >= o.slots ? [...gpus] : [];
  // harness jobs: one store for the worker's life, in its cache folder (traces until shipped, the model cache)
  let store: { db: DB; dir: string } | undefined;
  const storeOf = () => (store ??= { db: openDb(join(cacheRoot(), 'worker.db')), dir: cacheRoot() });
  const putBlob = async (bytes: Buffer) => {
    const sha = sha256(bytes);
    await beats.set(`${BLOB_KEY}${sha}`, bytes, 'EX', BLOB_TTL_S);
    return sha;
  };
  const started = Date.now();
  const beat = async () => {
    const b: WorkerBeat = { id, host: hostname(), pid: process.pid, slots: o.slots, hardware, gpus: gpus.map((g) => g.name), active, started, seen: Date.now(), models: Boolean(o.models) };
    await beats.set(`${WORKER_KEY}${id}`, JSON.stringify(b), 'EX', HEARTBEAT_TTL_S).catch(() => undefined);
  };
  const processor = async (job: Job<JobData, JobResult>) => {
    active++;
    void beat(); // `busy` in queue status at once, not at the next heartbeat
    // jobs that call a model hold no GPU
    const gpu = job.queueName === QUEUE_NAME ? freeGpus.shift() : undefined;
    try {
      const data = JobDataSchema.parse(job.data);
      o.log(`job ${job.id!.slice(0, 15)} #${data.seq} repeat ${data.repeat}: started`);
      sweep();
      // no GPU to itself: with several slots, an even share of the CPUs (as local trainer slots)
      const lease: Lease | undefined = gpu ? { gpu: { ...gpu, devices: gpuDevices(gpu) }, hardware: gpu.name }
        : o.slots > 1 ? { cpus: Math.max(1, Math.floor(availableParallelism() / o.slots)), hardware: null } : undefined;
      // the progress goes to the coordinator's slot line, the latest at most once a second
      const progress = latestEvery(PROGRESS_MS, (p: EvalProgress) => void job.updateProgress({ ...p, worker: id }).catch(() => undefined));
      progress.push({}); // which worker holds the job, at once (kinds without progress of their own too)
      const r = await evaluateJob(data, {
        unsafeNoSandbox: o.unsafeNoSandbox, worker: id, cacheDir: cacheRoot, lease, onProgress: progress.push, blob: (sha) => beats.getBuffer(`${BLOB_KEY}${sha}`),
        models: o.models, dataDir: o.dataDir, store: storeOf, putBlob, shareSpend: (run, guard) => shareSpend(beats, run, guard),
      }).finally(progress.stop);
      const what = r.refused ? `refused: ${r.refused}` : `${r.outcome!.status}${r.outcome!.metric !== null ? ` ${r.outcome!.metric}` : ''}`;
      o.log(`job ${job.id!.slice(0, 15)} #${data.seq} repeat ${data.repeat}: ${what} (${r.evalMs} ms)`);
      return r;
    } finally {
      if (gpu) freeGpus.push(gpu);
      active--;
      void beat();
    }
  };
  const workers = [QUEUE_NAME, ...(o.models ? [MODELS_QUEUE_NAME] : [])].map((name) => new Worker<JobData, JobResult>(name, processor, {
    connection: conn, concurrency: o.slots, lockDuration: o.lockMs, stalledInterval: o.stalledMs,
    // a job whose worker died is handed out again (not failed) this many times
    maxStalledCount: 5,
  }));
  for (const worker of workers) {
    // a job whose lock this worker lost (stalled past it: the job went to another worker): its result is refused
    worker.on('error', (e: Error) => {
      if (/lock/i.test(e.message)) o.log(`result refused by the queue: ${e.message}`);
    });
    worker.on('failed', (job, e: Error) => {
      const what = `job ${job?.id?.slice(0, 15) ?? '?'}${typeof job?.data?.seq === 'number' && typeof job.data.repeat === 'number' ? ` #${job.data.seq} repeat ${job.data.repeat}` : ''}`;
      o.log(/lock/i.test(e.message) ? `${what}: result refused by the queue: ${e.message}` : `${what}: failed: ${e.message}`);
    });
  }
  await beat();
  const timer = setInterval(() => void beat(), HEARTBEAT_MS);
  o.log(`worker ${id} on ${redactUrl(o.url)}: ${o.slots} slot(s), ${hardware}${o.models ? ', model calls with this machine\'s keys' : ''}${o.unsafeNoSandbox ? ', WITHOUT sandbox' : ''}`);
  await o.stop;
  o.log('worker: stopping: finishing the jobs it holds');
  clearInterval(timer);
  await Promise.all(workers.map((w) => w.close()));
  store?.db.close();
  await beats.del(`${WORKER_KEY}${id}`).catch(() => undefined);
  beats.disconnect();
  conn.disconnect();
  if (cacheDir) rmSync(cacheDir, { recursive: true, force: true });
}
