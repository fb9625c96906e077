/**
 * Evaluations as BullMQ jobs (the coordinator's side of `run --queue`). Each evaluation becomes a
 * job whose id is a hash of (run, candidate commit, study hash, stage, repeat, seed): adding it
 * again is ignored by BullMQ, and a resumed coordinator finds the job still queued, running or
 * done under the same id instead of starting it again. The result is read from the job once it
 * is completed; the loop records it (the ledger's uniqueness on (experiment, repeat) makes a
 * second delivery add nothing). Delivery is at-least-once: a worker that dies mid-job has its job
 * handed to another once its lock expires; a worker stalled past its lock has its late result
 * refused by BullMQ ("lock mismatch").
 *
 * No worker connected: the run says so once and waits up to `waitSeconds` for one, polling once a
 * second; then it stops, resumable (QueueWaitExpired).
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Queue, QueueEvents, Job } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Dispatcher, DispatchTarget, Dispatched } from '../dispatch.ts';
import { SlotPool } from '../slots.ts';
import type { Manifest } from '../lock.ts';
import { LockViolation } from '../lock.ts';
import type { Study } from '../study.ts';
import { UserError, UsageError } from '../../base/errors.ts';
import * as g from '../../base/git.ts';
import type { EvalOutcome, EvalProgress } from '../kinds/types.ts';
import { relativeManifest } from '../lock.ts';
import type { SpendGuard } from '../../task-agent/evaluate.ts';
import type { TraceExport } from '../../traces/index.ts';
import { shareSpend, type SharedSpend } from './spend.ts';
import { TraceTransferError, unpackTraces } from './traces.ts';
import { BLOB_KEY, BLOB_TTL_S, MODELS_QUEUE_NAME, QUEUE_NAME, checkQueueUrl, connect, evalIdentityHash, jobId, jobProgressOf, jobStudy, liveWorkers, redactUrl, sha256, type JobData, type JobResult } from './common.ts';


export { QueueWaitExpired } from '../dispatch.ts';
import { QueueWaitExpired, type SlotStart } from '../dispatch.ts';

export interface QueueDispatcherOptions {
  url: string;
  /** evaluations kept queued or running at once */
  size: number;
  waitSeconds: number;
  runId: string;
  repo: string;
  study: Study;
  studyDir: string;
  manifest: Manifest;
  baseTracked: Set<string>;
  hidden: string[];
  unsafeNoSandbox: boolean;
  /** what the kind's prepare() locked outside the repository (a trainer's corpus cache) */
  lockedExternal?: string[];
  say: (line: string) => void;
  /** how often a queued job's state is read (ms) */
  pollMs?: number;
  /** the run's token and dollar limits: harness studies count their spend on the queue with the workers' (src/queue/spend.ts) */
  guard?: SpendGuard;
  /** the run's base commit (harness studies: the tree a worker prepares the benchmark from) */
  baseCommit?: string;
}

export class QueueDispatcher implements Dispatcher {
  readonly size: number;
  private readonly pool: SlotPool;
  private readonly conn: Redis;
  private readonly queue: Queue<JobData, JobResult>;
  private readonly studyText: string;
  private readonly studyHash: string;
  /** what of the study a job's identity depends on (common.ts evalIdentityHash) */
  private readonly identityHash: string;
  /** each commit's bundle in Redis: its sha256 */
  private readonly bundles = new Map<string, Promise<string>>();
  private workersAt = 0;
  private workers = -1;
  private toldNoWorker = false;
  private reachable: Promise<void> | null = null;
  /** trainer studies: the corpus cache folder (prepare.py build) the manifest's external files are in */
  private readonly trainerCache: string | null;
  /** the queue's events (a connection of their own), read for the progress of the jobs waited for */
  private events: Promise<{ queue: QueueEvents; conn: Redis } | null> | null = null;
  private closed = false;
  private readonly progressOf = new Map<string, (p: EvalProgress) => void>();
  /** harness studies: jobs that call a model go to their own queue, taken by workers with --models own */
  private readonly models: boolean;
  private readonly queueName: string;
  /** harness studies: the benchmark's locked files by relative path (src/lock.ts relativeManifest) */
  private readonly lockedRoots: Array<Record<string, string>> | undefined;
  private spend: Promise<SharedSpend | null> | null = null;

  constructor(private readonly o: QueueDispatcherOptions) {
    checkQueueUrl(o.url);
    this.models = o.study.kind === 'harness';
    this.queueName = this.models ? MODELS_QUEUE_NAME : QUEUE_NAME;
    const cache = o.study.kind === 'trainer' ? o.lockedExternal?.[0] ?? null : null;
    // a harness study's benchmark (scorer, loaders, data) is checked by relative path on the worker
    if (!this.models && Object.keys(o.manifest.external).some((p) => !cache || !p.startsWith(`${cache}/`))) throw new UsageError('--queue: locked resources outside the repository (other than a trainer\'s corpus cache) are not evaluated by queue workers yet');
    this.lockedRoots = this.models ? relativeManifest(o.manifest.external, o.lockedExternal ?? []) : undefined;
    this.trainerCache = cache;
    this.size = o.size;
    this.pool = new SlotPool({ size: o.size, leases: Array.from({ length: o.size }, () => ({ hardware: null })), note: null });
    this.conn = connect(o.url, o.say);
    this.queue = new Queue<JobData, JobResult>(this.queueName, { connection: this.conn });
    this.queue.on('error', () => undefined);
    this.studyText = JSON.stringify(jobStudy(o.study));
    this.studyHash = sha256(this.studyText);
    this.identityHash = evalIdentityHash(o.study);
    o.say(`evaluations go to queue ${redactUrl(o.url)} (${o.size} at once); start workers with \`${this.workerCommand()}\``);
  }

  private workerCommand(): string {
    return `autoagent worker --queue ${redactUrl(this.o.url)}${this.models ? ' --models own' : ''}`;
  }

  /**
   * The sha256 of the commit's `git bundle` (its whole history), stored in Redis under it
   * (BLOB_KEY) for BLOB_TTL_S, renewed by every job that names it; the bytes stay in Redis only.
   * Made once per commit per run, and made and stored again when Redis no longer has it (expired,
   * lost): a bundle made again may differ byte for byte (git's packing), so its new sha256 is sent.
   */
  private async bundle(commit: string): Promise<string> {
    const known = this.bundles.get(commit);
    if (known) {
      const sha = await known.catch(() => null);
      if (sha && (await this.conn.expire(`${BLOB_KEY}${sha}`, BLOB_TTL_S))) return sha;
      if (this.bundles.get(commit) === known) this.bundles.delete(commit);
    }
    let made = this.bundles.get(commit);
    if (!made) {
      made = this.storeBundle(commit);
      made.catch(() => this.bundles.delete(commit));
      this.bundles.set(commit, made);
    }
    return made;
  }

  private async storeBundle(commit: string): Promise<string> {
    const ref = `refs/autoagent-bundle/${commit}`;
    const dir = mkdtempSync(join(tmpdir(), 'autoagent-bundle-'));
    try {
      await g.gitRaw(this.o.repo, ['update-ref', ref, commit]);
      await g.gitRaw(this.o.repo, ['bundle', 'create', '-q', join(dir, 'b'), ref]);
      const bytes = readFileSync(join(dir, 'b'));
      const sha = sha256(bytes);
      await this.conn.set(`${BLOB_KEY}${sha}`, bytes, 'EX', BLOB_TTL_S);
      return sha;
    } finally {
      await g.gitRaw(this.o.repo, ['update-ref', '-d', ref]).catch(() => undefined);
      rmSync(dir, { recursive: true, force: true });
    }
  }

  evaluate(t: DispatchTarget, start: SlotStart): Promise<Dispatched> {
    return this.pool.run(async (slot) => {
      const end = start(slot);
      try {
        await (this.reachable ??= this.ping());
        const id = jobId({ run: this.o.runId, commit: t.commit, studyHash: this.identityHash, stage: t.stage, repeat: t.repeat, seed: t.seed });
        const data: JobData = {
          v: 1, run: this.o.runId, study: this.studyText, study_hash: this.studyHash, study_dir: this.o.studyDir, commit: t.commit,
          bundle_sha256: await this.bundle(t.commit), manifest: this.o.manifest, trainer_cache: this.trainerCache, base_tracked: [...this.o.baseTracked], hidden: this.o.hidden,
          seq: t.seq, seed: t.seed, repeat: t.repeat, stage: t.stage, incumbent: t.incumbent, unsafe_no_sandbox: this.o.unsafeNoSandbox,
          ...(this.models ? {
            locked_roots: this.lockedRoots, base_commit: this.o.baseCommit,
            spend: { max_tokens: this.o.study.budget.tokens, max_dollars: this.o.study.budget.dollars },
            ...(t.screenAgainst?.size ? { screen_against: Object.fromEntries(t.screenAgainst) } : {}),
          } : {}),
        };
        // the run's spend counted on the queue from the first job on (a failed attempt is made again by the next job)
        const spend = this.models ? await (this.spend ??= this.o.guard ? shareSpend(this.conn, this.o.runId, this.o.guard, { seed: true }).catch((e) => {
          this.spend = null;
          throw e;
        }) : Promise.resolve(null)) : null;
        let res = await this.submit(id, data, t.signal, t.onProgress);
        let used = id;
        if (res && !res.refused && res.incumbent !== t.incumbent) {
          // a result measured for another incumbent (a job queued before the incumbent changed) is
          // never used for this decision: it is evaluated again for the current incumbent, as its own job
          this.o.say(`experiment #${t.seq} repeat ${t.repeat}: the result on the queue was measured for incumbent ${res.incumbent.slice(0, 10)}, the incumbent is now ${t.incumbent.slice(0, 10)}: evaluated again`);
          used = jobId({ run: this.o.runId, commit: t.commit, studyHash: this.identityHash, stage: t.stage, repeat: t.repeat, seed: t.seed, incumbent: t.incumbent });
          res = await this.submit(used, data, t.signal, t.onProgress);
        }
        if (!res) return { out: aborted(), slot: null, hardware: null, screenedAgainst: t.incumbent };
        if (res.refused) throw new LockViolation(`worker ${res.worker} refused experiment #${t.seq} repeat ${t.repeat}: ${res.refused}`);
        let traces: TraceExport | undefined;
        if (this.models) {
          await spend?.refresh().catch(() => undefined); // what the workers spent: the run's guard sees it before the next decision
          traces = await this.traces(res, data);
          // not a measurement (the provider failed, the budget ran out; the run stops): `resume` evaluates it again, as a local run does
          if (res.outcome?.providerFailed || res.outcome?.budgetExceeded) await this.queue.remove(used).catch(() => undefined);
        }
        return {
          out: { ...res.outcome!, telemetry: { ...res.outcome!.telemetry, worker: res.worker, incumbent: res.incumbent } },
          slot: this.size > 1 ? slot : null, hardware: res.hardware, screenedAgainst: res.incumbent, ...(traces ? { traces } : {}),
        };
      } finally {
        end?.();
      }
    });
  }

  /**
   * A harness job's traces, read from the parts its result names and checked (src/queue/traces.ts):
   * a result without them, or whose parts are gone or do not check, is refused (the run stops,
   * naming the worker); nothing of it is recorded.
   */
  private async traces(res: JobResult, data: JobData): Promise<TraceExport> {
    const what = `worker ${res.worker}'s result for experiment #${data.seq} repeat ${data.repeat}`;
    if (!res.traces) throw new LockViolation(`${what} holds no traces (every harness evaluation has them): refused`);
    try {
      return await unpackTraces(res.traces, (sha) => this.conn.getBuffer(`${BLOB_KEY}${sha}`), { run: data.run, seq: data.seq, repeat: data.repeat });
    } catch (e) {
      if (e instanceof TraceTransferError) throw new LockViolation(`${what} is refused: ${e.message}`);
      throw e;
    }
  }

  /**
   * Tell `f` the progress job `id` reports (checked: common.ts jobProgressOf) until the returned
   * function is called. The queue's events are read from the first call on: from the moment of
   * that call by Redis's own clock (an event stream id is its time in ms), so what a job reports
   * while that connection is still being set up is read too.
   */
  private async listen(id: string, f: (p: EvalProgress) => void): Promise<() => void> {
    this.events ??= (async () => {
      const [s, us] = await this.conn.time();
      // closed meanwhile (the run ended while this waited for Redis): no connection is left behind
      if (this.closed) return null;
      const conn = connect(this.o.url);
      const queue = new QueueEvents(this.queueName, { connection: conn, lastEventId: `${Number(s) * 1000 + Math.floor(Number(us) / 1000)}-0` });
      queue.on('error', () => undefined);
      queue.on('progress', ({ jobId: job, data }) => {
        const to = this.progressOf.get(job);
        const p = to ? jobProgressOf(data) : null;
        if (to && p) to(p);
      });
      return { queue, conn };
    })();
    // progress is for people: without it (Redis gone meanwhile), the job is still waited for
    if (!(await this.events.catch(() => null)) && !this.closed) this.events = null; // tried again by the next job
    this.progressOf.set(id, f);
    return () => {
      if (this.progressOf.get(id) === f) this.progressOf.delete(id);
    };
  }

  /** Add the job (a no-op when its id exists) and wait for its result, telling `onProgress` its progress; null when `signal` aborts first. */
  private async submit(id: string, data: JobData, signal: AbortSignal, onProgress?: (p: EvalProgress) => void): Promise<JobResult | null> {
    const unlisten = onProgress ? await this.listen(id, onProgress) : null;
    try {
      return await this.waitFor(id, data, signal);
    } finally {
      unlisten?.();
    }
  }

  private async waitFor(id: string, data: JobData, signal: AbortSignal): Promise<JobResult | null> {
    // a resumed coordinator finds the jobs its predecessor queued: their results are taken, not evaluated again
    const found = await this.queue.getJobState(id);
    const what = `experiment #${data.seq} repeat ${data.repeat} (job ${id.slice(0, 15)})`;
    if (found === 'failed') {
      // a failure (a worker's error, not an evaluation's crash) is not a result: queued again
      const job = await Job.fromId<JobData, JobResult>(this.queue, id);
      this.o.say(`${what} failed on a worker before (${job?.failedReason ?? 'no reason given'}): queued again`);
      await this.queue.remove(id);
    } else if (found !== 'unknown') {
      this.o.say(`${what} is already on the queue (${found}): ${found === 'completed' ? 'its result is used' : 'waiting for its result'}, not evaluating it again`);
    }
    // named for people (queue status, BullMQ dashboards): the run, the experiment, the repeat
    let sent = data;
    const add = () => this.queue.add(`${sent.run} #${sent.seq} repeat ${sent.repeat}`, sent, {
      jobId: id, attempts: 1,
      // kept a week: a resumed coordinator reads results it did not see; failed ones tell why
      removeOnComplete: { age: 7 * 86400 }, removeOnFail: { age: 7 * 86400 },
    });
    await add();
    const pollMs = this.o.pollMs ?? 100;
    let storedAgain = false;
    let noWorkerSince: number | null = null;
    for (;;) {
      if (signal.aborted) {
        await this.queue.remove(id).catch(() => undefined); // a waiting job is removed; an active one is locked and stays
        return null;
      }
      const state = await this.queue.getJobState(id);
      if (state === 'completed') {
        const job = await Job.fromId<JobData, JobResult>(this.queue, id);
        if (job?.returnvalue) return job.returnvalue;
      } else if (state === 'failed') {
        const job = await Job.fromId<JobData, JobResult>(this.queue, id);
        const why = job?.failedReason ?? 'no reason given';
        if (!storedAgain && sent.bundle_sha256 && why.includes(`bundle ${sent.bundle_sha256.slice(0, 12)} is not on the queue`)) {
          // the bundle expired or Redis lost it (not its job): stored again, and the job queued again, once
          storedAgain = true;
          this.o.say(`${what}: its bundle was gone from the queue when a worker took it: stored and queued again`);
          sent = { ...sent, bundle_sha256: await this.bundle(sent.commit) };
          await this.queue.remove(id);
          await add();
          continue;
        }
        throw new UserError(`queue job for experiment #${data.seq} repeat ${data.repeat} failed on a worker: ${why}`);
      } else if (state === 'unknown') {
        // gone (removed, or Redis lost it): add it again
        await add();
      }
      if (state === 'waiting' || state === 'prioritized' || state === 'delayed' || state === 'unknown') {
        if ((await this.workerCount()) === 0) {
          noWorkerSince ??= Date.now();
          if (!this.toldNoWorker) {
            this.toldNoWorker = true;
            this.o.say(`no worker${this.models ? ' with --models own' : ''} is connected to queue ${redactUrl(this.o.url)}: waiting up to ${this.o.waitSeconds} s for one (\`${this.workerCommand()}\`)`);
          }
          if (Date.now() - noWorkerSince > this.o.waitSeconds * 1000) {
            await this.queue.remove(id).catch(() => undefined); // not left for a worker that comes later (resume adds it again)
            throw new QueueWaitExpired(`no worker took an evaluation from queue ${redactUrl(this.o.url)} within ${this.o.waitSeconds} s`);
          }
          await sleep(1000, signal);
          continue;
        }
        if (noWorkerSince !== null && this.toldNoWorker) {
          this.o.say('a worker connected: evaluations go on');
          this.toldNoWorker = false;
        }
        noWorkerSince = null;
      }
      await sleep(pollMs, signal);
    }
  }

  /** Redis answers within 10 s when the run starts (later outages are waited out) */
  private async ping(): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<never>((_, fail) => {
      timer = setTimeout(() => fail(new UserError(`cannot reach queue ${redactUrl(this.o.url)} (no answer in 10 s): start redis-server there, or check --queue`)), 10_000);
    });
    try {
      await Promise.race([this.conn.ping(), late]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** live workers, read at most every 2 s */
  private async workerCount(): Promise<number> {
    if (Date.now() - this.workersAt > 2000 || this.workers < 0) {
      this.workers = (await liveWorkers(this.conn)).filter((w) => !this.models || w.models).length;
      this.workersAt = Date.now();
    }
    return this.workers;
  }

  async close(): Promise<void> {
    await this.queue.close().catch(() => undefined);
    this.closed = true;
    const events = await this.events?.catch(() => null);
    if (events) {
      await events.queue.close().catch(() => undefined);
      events.conn.disconnect();
    }
    this.conn.disconnect();
  }
}

function aborted(): EvalOutcome {
  return { status: 'crash', metric: null, reason: 'cut short', commandMs: 0, evaluatorMs: 0, exitCode: null, stdoutTail: '', stderrTail: '', telemetry: null };
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((ok) => {
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal.removeEventListener('abort', done);
      ok();
    }
    signal.addEventListener('abort', done, { once: true });
  });
}
