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
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { Worker, type Job } from 'bullmq';
import * as g from '../../base/git.ts';
import { StudySchema, type Study } from '../study.ts';
import { CommandKind } from '../kinds/command.ts';
import { evaluateCommit, readPaths, type EvalContext } from '../evaluation.ts';
import { LockViolation } from '../lock.ts';
import { globMatcher } from '../../base/glob.ts';
import { SpendGuard } from '../../task-agent/evaluate.ts';
import { discoverGpus } from '../slots.ts';
import { sandboxAvailable } from '../../sandbox/index.ts';
import { UserError } from '../../base/errors.ts';
import type { DB } from '../../traces/index.ts';
import {
  QUEUE_NAME, WORKER_KEY, HEARTBEAT_MS, HEARTBEAT_TTL_S, JobDataSchema, checkQueueUrl, connect, redactUrl, sha256,
  type JobData, type JobResult, type WorkerBeat,
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
}

/** Evaluate one job in a private temporary repository; never throws for what the job holds. */
export async function evaluateJob(data: JobData, o: { unsafeNoSandbox: boolean; worker: string }): Promise<JobResult> {
  const t0 = Date.now();
  // command studies record no hardware class (as local slots); the heartbeat shows the worker's
  const base = { v: 1 as const, hardware: null, worker: o.worker };
  const refuse = (why: string): JobResult => ({ ...base, refused: why, setupMs: Date.now() - t0, evalMs: 0 });
  if (sha256(data.study) !== data.study_hash) return refuse('the study in the job does not match its hash');
  let study: Study;
  try {
    study = StudySchema.parse(JSON.parse(data.study));
  } catch (e) {
    return refuse(`the study in the job is not valid here: ${(e as Error).message.split('\n')[0]}`);
  }
  if (study.kind !== 'command') return refuse(`kind ${study.kind} is not evaluated by queue workers yet (this version: kind command)`);
  if (Object.keys(data.manifest.external).length > 0) return refuse('locked resources outside the repository are not evaluated by queue workers yet');
  if (data.unsafe_no_sandbox === false && o.unsafeNoSandbox) return refuse('this worker runs without a sandbox (--unsafe-no-sandbox) and the run was not started with --unsafe-no-sandbox');
  const dir = mkdtempSync(join(tmpdir(), 'autoagent-worker-'));
  try {
    await g.gitRaw(dir, ['init', '-q']);
    const bundle = join(dir, '.git', 'candidate.bundle');
    writeFileSync(bundle, Buffer.from(data.bundle, 'base64'));
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
    const studyPath = join(dir, data.study_dir, 'study.yaml');
    const paths = { repo: dir, studyDir: data.study_dir, studyPath, stateDir: join(dir, '.autoagent') };
    const unsafe = o.unsafeNoSandbox || false;
    const ctx: EvalContext = {
      // the command kind writes nothing to the store; the coordinator records the outcome
      db: null as unknown as DB,
      runId: data.run, study, paths, adapter: new CommandKind(study), prepared: { lockedExternal: [], environment: {} },
      manifest: data.manifest, baseTracked: new Set(data.base_tracked), isLocked: globMatcher(study.locked, data.study_dir), hidden: data.hidden,
      policy: { unsafeNoSandbox: unsafe, memoryMB: study.sandbox.memory_mb, maxProcesses: study.sandbox.max_processes, read: readPaths(study, dirname(studyPath)) },
      guard: new SpendGuard(0, 0, 0, 0),
    };
    const t1 = Date.now();
    let out;
    try {
      out = await evaluateCommit(ctx, { commit: data.commit, label: `${data.seq}-${data.repeat}`, seq: data.seq, seed: data.seed, repeat: data.repeat, lease: { hardware: null } });
    } catch (e) {
      if (e instanceof LockViolation) return refuse(e.message.replace(/: the run stops.*$/, ''));
      throw e;
    }
    const { screenedOut: _s, budgetExceeded: _b, providerFailed: _p, ...outcome } = out;
    return { ...base, outcome: { ...outcome, status: outcome.status === 'rejected' ? 'crash' : outcome.status } as JobResult['outcome'], setupMs: t1 - t0, evalMs: Date.now() - t1 };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Runs until `o.stop` resolves; then finishes the jobs it holds and returns. */
export async function runWorker(o: WorkerOptions): Promise<void> {
  checkQueueUrl(o.url);
  if (!o.unsafeNoSandbox) {
    const s = sandboxAvailable();
    if (!s.ok) throw new UserError(s.message);
  }
  const gpus = discoverGpus();
  const hardware = gpus.length ? gpus[0]!.name : 'cpu';
  const id = `${hostname()}-${process.pid}-${randomBytes(3).toString('hex')}`;
  const conn = connect(o.url, o.log);
  const beats = connect(o.url, () => undefined);
  let active = 0;
  const worker = new Worker<JobData, JobResult>(QUEUE_NAME, async (job: Job<JobData, JobResult>) => {
    active++;
    try {
      const data = JobDataSchema.parse(job.data);
      o.log(`job ${job.id!.slice(0, 15)} #${data.seq} repeat ${data.repeat}: started`);
      const r = await evaluateJob(data, { unsafeNoSandbox: o.unsafeNoSandbox, worker: id });
      const what = r.refused ? `refused: ${r.refused}` : `${r.outcome!.status}${r.outcome!.metric !== null ? ` ${r.outcome!.metric}` : ''}`;
      o.log(`job ${job.id!.slice(0, 15)} #${data.seq} repeat ${data.repeat}: ${what} (${r.evalMs} ms)`);
      return r;
    } finally {
      active--;
    }
  }, {
    connection: conn, concurrency: o.slots, lockDuration: o.lockMs, stalledInterval: o.stalledMs,
    // a job whose worker died is handed out again (not failed) this many times
    maxStalledCount: 5,
  });
  // a job whose lock this worker lost (stalled past it: the job went to another worker): its result is refused
  worker.on('error', (e: Error) => {
    if (/lock/i.test(e.message)) o.log(`result refused by the queue: ${e.message}`);
  });
  worker.on('failed', (job, e: Error) => {
    if (/lock/i.test(e.message)) o.log(`job ${job?.id?.slice(0, 15) ?? '?'}: result refused by the queue: ${e.message}`);
  });
  const started = Date.now();
  const beat = async () => {
    const b: WorkerBeat = { id, host: hostname(), pid: process.pid, slots: o.slots, hardware, active, started, seen: Date.now() };
    await beats.set(`${WORKER_KEY}${id}`, JSON.stringify(b), 'EX', HEARTBEAT_TTL_S).catch(() => undefined);
  };
  await beat();
  const timer = setInterval(() => void beat(), HEARTBEAT_MS);
  o.log(`worker ${id} on ${redactUrl(o.url)}: ${o.slots} slot(s), ${hardware}${o.unsafeNoSandbox ? ', WITHOUT sandbox' : ''}`);
  await o.stop;
  o.log('worker: stopping: finishing the jobs it holds');
  clearInterval(timer);
  await worker.close();
  await beats.del(`${WORKER_KEY}${id}`).catch(() => undefined);
  beats.disconnect();
  conn.disconnect();
}
