/** `autoagent worker` and `autoagent queue status`. */
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { resolve } from 'node:path';
import { UsageError, UserError } from '../../base/errors.ts';
import { runWorker } from './worker.ts';
import { MODELS_QUEUE_NAME, QUEUE_NAME, checkQueueUrl, jobProgressOf, liveWorkers, redactUrl, type WorkerBeat } from './common.ts';
import type { EvalProgress } from '../kinds/types.ts';
import { progressBits } from '../progress.ts';
import { killAllSandboxes } from '../../sandbox/index.ts';
import { table } from '../../base/format.ts';

export interface WorkerCliOptions { queue: string; slots: number; unsafeNoSandbox?: boolean; lockMs: number; stalledMs: number; models?: string; data?: string }

/** what a `--models own` worker needs at least one of: a provider's key, or the base URL of a local OpenAI- or Anthropic-compatible server */
const MODEL_ENV = ['OPENAI_API_KEY', 'OPENAI_BASE_URL', 'ANTHROPIC_API_KEY', 'ANTHROPIC_BASE_URL'];

export async function workerCommand(o: WorkerCliOptions, err: (t: string) => void): Promise<number> {
  checkQueueUrl(o.queue);
  if (o.models !== undefined && o.models !== 'own') throw new UsageError(`--models: '${o.models}' is not a choice; the one choice is 'own' (model calls with this machine's keys: OPENAI_API_KEY, ANTHROPIC_API_KEY, their *_BASE_URL)`);
  // a worker that would take harness jobs and refuse each one (which fails their runs) does not start
  if (o.models === 'own' && !MODEL_ENV.some((k) => process.env[k])) throw new UsageError(`--models own: this environment has none of ${MODEL_ENV.join(', ')}: set the key (or the base URL of a local server) of the provider the harness uses`);
  let stop!: () => void;
  const stopped = new Promise<void>((ok) => (stop = ok));
  let signals = 0;
  const onSignal = () => {
    if (++signals > 1) {
      killAllSandboxes();
      process.exit(130);
    }
    stop();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    await runWorker({
      url: o.queue, slots: o.slots, unsafeNoSandbox: Boolean(o.unsafeNoSandbox), lockMs: o.lockMs, stalledMs: o.stalledMs,
      models: o.models === 'own', dataDir: o.data ? resolve(o.data) : undefined,
      log: (line) => err(`${line}\n`), stop: stopped,
    });
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
  return 0;
}

export interface QueueStatus {
  queue: string;
  workers: Array<WorkerBeat & { seen_ago_s: number }>;
  jobs: { waiting: number; active: number; completed: number; failed: number; delayed: number };
  /** age of the oldest job still waiting (s), null when none waits */
  oldest_waiting_s: number | null;
  /** the jobs running now (the first RUNNING_SHOWN): name (run, experiment, repeat), worker and progress as reported, for how long */
  running: Array<{ id: string; name: string; worker: string | null; progress: EvalProgress | null; running_s: number | null }>;
}

/** running jobs `queue status` lists at most */
const RUNNING_SHOWN = 50;

export async function queueStatus(url: string): Promise<QueueStatus> {
  checkQueueUrl(url);
  // fail fast: a status that cannot reach Redis says so instead of waiting for it
  const conn = new Redis(url, { maxRetriesPerRequest: 1, connectTimeout: 5000, retryStrategy: () => null, lazyConnect: true });
  conn.on('error', () => undefined);
  try {
    await conn.connect();
  } catch (e) {
    conn.disconnect();
    throw new UserError(`cannot reach queue ${redactUrl(url)}: ${(e as Error).message.replace(url, redactUrl(url))}`);
  }
  // the evaluations' queue and the one of jobs that call a model (workers with --models own)
  const queues = [QUEUE_NAME, MODELS_QUEUE_NAME].map((name) => new Queue(name, { connection: conn }));
  for (const q of queues) q.on('error', () => undefined);
  try {
    const now = Date.now();
    const workers = (await liveWorkers(conn)).map((w) => ({ ...w, seen_ago_s: Math.round((now - w.seen) / 100) / 10 }));
    const c: Record<string, number> = {};
    for (const q of queues) for (const [k, n] of Object.entries(await q.getJobCounts('waiting', 'prioritized', 'active', 'completed', 'failed', 'delayed'))) c[k] = (c[k] ?? 0) + n;
    const oldest = (await Promise.all(queues.map((q) => q.getJobs(['waiting', 'prioritized'], 0, 0, true)))).flat().sort((a, b) => a.timestamp - b.timestamp);
    // the running jobs' name, progress and start only (not their data), read at once
    const active = (await Promise.all(queues.map(async (q) => (await q.getRanges(['active'], 0, RUNNING_SHOWN - 1, true)).map((id) => ({ q, id }))))).flat().slice(0, RUNNING_SHOWN);
    const running: QueueStatus['running'] = await Promise.all(active.map(async ({ q: queue, id }) => {
      const [name, progress, processedOn] = await conn.hmget(queue.toKey(id), 'name', 'progress', 'processedOn');
      let p: EvalProgress | null = null;
      try {
        p = progress ? jobProgressOf(JSON.parse(progress)) : null;
      } catch {
        p = null;
      }
      return {
        id, name: (name ?? '').replace(/[^\x20-\x7e]/g, '?').slice(0, 120), worker: p?.worker ?? null, progress: p,
        running_s: processedOn ? Math.round((now - Number(processedOn)) / 1000) : null,
      };
    }));
    return {
      queue: redactUrl(url), workers,
      jobs: { waiting: (c.waiting ?? 0) + (c.prioritized ?? 0), active: c.active ?? 0, completed: c.completed ?? 0, failed: c.failed ?? 0, delayed: c.delayed ?? 0 },
      oldest_waiting_s: oldest[0] ? Math.round((now - oldest[0].timestamp) / 1000) : null,
      running,
    };
  } finally {
    await Promise.all(queues.map((q) => q.close().catch(() => undefined)));
    conn.disconnect();
  }
}

/** The workers of a queue: id, host, slots (busy), GPU model, heartbeat age. */
export function workersText(workers: QueueStatus['workers']): string[] {
  if (workers.length === 0) return ['workers: none connected'];
  return [
    `workers: ${workers.length} (${workers.reduce((a, w) => a + w.slots, 0)} slots)`,
    ...table(['worker', 'host', 'slots', 'busy', 'GPU', 'models', 'heartbeat'],
      workers.map((w) => [w.id, w.host, String(w.slots), String(w.active), w.hardware, w.models ? 'own keys' : '-', `${w.seen_ago_s} s ago`])).split('\n').map((l) => `  ${l}`),
  ];
}

export function queueStatusText(s: QueueStatus): string {
  const lines = [`queue ${s.queue}`, '', ...workersText(s.workers)];
  const j = s.jobs;
  lines.push('', `jobs: ${j.waiting} waiting, ${j.active} active, ${j.completed} completed, ${j.failed} failed${j.delayed ? `, ${j.delayed} delayed` : ''}`);
  lines.push(`oldest waiting job: ${s.oldest_waiting_s === null ? 'none' : `${s.oldest_waiting_s} s`}`);
  if (s.running.length) {
    lines.push('', `running${j.active > s.running.length ? ` (the first ${s.running.length})` : ''}:`, ...table(['job', 'worker', 'progress', 'for'],
      s.running.map((r) => [r.name, r.worker ?? '?', r.progress ? progressBits(r.progress).join(' · ') || '-' : '-', r.running_s === null ? '?' : `${r.running_s} s`])).split('\n').map((l) => `  ${l}`));
  }
  return lines.join('\n');
}
