/**
 * What the coordinator and the workers share: the queue's name, the Redis connection (a
 * redis:// or rediss:// URL, maybe with a password that is never printed), a job's identity and
 * contents, a result's shape, and the workers' heartbeat keys.
 */
import { createHash } from 'node:crypto';
import { Redis } from 'ioredis';
import { z } from 'zod';
import { UsageError } from '../../base/errors.ts';
import type { Study } from '../study.ts';
import type { EvalOutcome, EvalProgress } from '../kinds/types.ts';

/** the BullMQ queue every coordinator and worker of one Redis share */
export const QUEUE_NAME = 'autoagent-evals';
/** a worker refreshes `${WORKER_KEY}<id>` (JSON, expiring) every HEARTBEAT_MS */
export const WORKER_KEY = 'autoagent:workers:';
/**
 * a candidate's git bundle, stored once under `${BLOB_KEY}<its sha256>` (content-addressed: the
 * jobs of one commit, its repeats and confirmations, share it; a job carries only the hash, and a
 * worker checks the bytes it reads against it)
 */
export const BLOB_KEY = 'autoagent:blob:';
/** how long a bundle stays in Redis after the last job that named it was added (as completed jobs) */
export const BLOB_TTL_S = 7 * 86400;
/** a run's spend on the queue: a hash of tokens and dollars (src/queue/spend.ts) */
export const SPEND_KEY = 'autoagent:spend:';
/**
 * jobs that call a model (kind harness): a queue of their own, taken only by workers started with
 * `--models own` (the queue carries no keys: such a worker uses the keys of its own environment)
 */
export const MODELS_QUEUE_NAME = 'autoagent-evals-models';
export const HEARTBEAT_MS = 2000;
export const HEARTBEAT_TTL_S = 10;

/** Checks a --queue / `queue.url` value; returns it unchanged. */
export function checkQueueUrl(url: string, where = '--queue'): string {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new UsageError(`${where}: not a URL; expected redis://HOST:PORT or rediss://[:PASSWORD@]HOST:PORT`);
  }
  if (u.protocol !== 'redis:' && u.protocol !== 'rediss:') throw new UsageError(`${where}: ${u.protocol} is not redis: or rediss: (expected redis://HOST:PORT)`);
  if (!u.hostname) throw new UsageError(`${where}: no host in the URL (expected redis://HOST:PORT)`);
  return url;
}

export { redactUrl } from '../dispatch.ts';
import { redactUrl } from '../dispatch.ts';

/**
 * A connection for BullMQ (maxRetriesPerRequest: null, as BullMQ asks of workers: commands wait
 * for Redis to come back instead of failing). Connection errors are reported once per outage
 * through `onError`, never with the URL's password.
 */
export function connect(url: string, onError: (message: string) => void = () => undefined): Redis {
  const r = new Redis(url, { maxRetriesPerRequest: null, enableReadyCheck: true, retryStrategy: (n) => Math.min(200 * n, 2000) });
  let down = false;
  r.on('error', (e: Error) => {
    if (down) return;
    down = true;
    onError(`queue ${redactUrl(url)}: ${e.message.replace(url, redactUrl(url))} (retrying)`);
  });
  r.on('ready', () => {
    if (down) onError(`queue ${redactUrl(url)}: connected again`);
    down = false;
  });
  return r;
}

/** The study as a job carries it: without `queue` (its URL may hold a password). */
export function jobStudy(study: Study): Record<string, unknown> {
  const { queue: _queue, ...rest } = study as Study & { queue?: unknown };
  return rest;
}

/**
 * sha256 of what in the study can change an evaluation: the study as a job carries it, less the
 * run's budgets of experiments and wall time and its slots (`resume --experiments 20` or
 * `--parallel 4` finds the jobs it queued before under the same ids).
 */
export function evalIdentityHash(study: Study): string {
  const s = JSON.parse(JSON.stringify(jobStudy(study))) as Record<string, unknown> & { budget?: Record<string, unknown> };
  delete s.parallel;
  if (s.budget) {
    delete s.budget.experiments;
    delete s.budget.wall_seconds;
  }
  return sha256(JSON.stringify(s));
}

export function sha256(text: string | Buffer): string {
  return createHash('sha256').update(text).digest('hex');
}

/**
 * A job's id: sha256 of the run, candidate commit, study hash (evalIdentityHash), stage, repeat and seed. Adding a job
 * whose id exists is ignored by BullMQ (and a resumed coordinator finds its result there); the
 * run id keeps two runs of one study from sharing results.
 */
export function jobId(p: { run: string; commit: string; studyHash: string; stage: string; repeat: number; seed: number; incumbent?: string }): string {
  return 'ev-' + sha256([p.run, p.commit, p.studyHash, p.stage, String(p.repeat), String(p.seed), ...(p.incumbent ? [p.incumbent] : [])].join('\n'));
}

export const JobDataSchema = z.object({
  v: z.literal(1),
  run: z.string(),
  /** the study (as jobStudy gives it) and sha256 of its JSON text */
  study: z.string(),
  study_hash: z.string(),
  /** the study file's folder, repo-relative */
  study_dir: z.string(),
  commit: z.string().regex(/^[0-9a-f]{40,64}$/),
  /**
   * `git bundle` of the commit (it holds refs/autoagent-bundle/<commit>): its sha256, the key of
   * its bytes in Redis (BLOB_KEY); or the bundle itself, base64 (jobs made before 2026-12-03)
   */
  bundle_sha256: z.string().regex(/^[0-9a-f]{64}$/).optional(),
  bundle: z.string().optional(),
  /** the locked files' sha256 as hashed when the run started (repo-relative), and outside the repository */
  manifest: z.object({ files: z.record(z.string(), z.string()), external: z.record(z.string(), z.string()) }),
  /**
   * trainer studies: the coordinator's corpus cache folder (prepare.py build); its files are the
   * manifest's external entries, and a worker's own build must give the same data files
   */
  trainer_cache: z.string().nullable().optional(),
  /** repo-relative paths tracked at the run's base commit */
  base_tracked: z.array(z.string()),
  /** repo-relative files hidden from the candidate */
  hidden: z.array(z.string()),
  seq: z.number().int(),
  /** the incumbent commit the result is for (src/dispatch.ts DispatchTarget.incumbent); returned with the result */
  incumbent: z.string().regex(/^[0-9a-f]{40,64}$/),
  seed: z.number().int(),
  repeat: z.number().int(),
  stage: z.string(),
  /** the run was started with --unsafe-no-sandbox (a sandboxed worker still sandboxes) */
  unsafe_no_sandbox: z.boolean(),
  /**
   * harness studies: the benchmark's locked resources (scorer, loaders, data) as the coordinator
   * hashed them, per root by relative path (src/lock.ts relativeManifest); the worker's own must be
   * the same, byte for byte
   */
  locked_roots: z.array(z.record(z.string(), z.string())).optional(),
  /**
   * harness studies: the run's base commit (in the bundle: the candidate descends from it); the
   * worker prepares the benchmark from its tree, as the coordinator did, never from the candidate's
   */
  base_commit: z.string().regex(/^[0-9a-f]{40,64}$/).optional(),
  /** harness studies: the incumbent's mean score per task, for the minibatch screen */
  screen_against: z.record(z.string(), z.number()).optional(),
  /** harness studies: the run's token and dollar budgets (0: none); the spend is counted on the queue (src/queue/spend.ts) */
  spend: z.object({ max_tokens: z.number().nonnegative(), max_dollars: z.number().nonnegative() }).optional(),
});
export type JobData = z.infer<typeof JobDataSchema>;

/** An evaluation's traces as a job's result names them: gzipped JSON lines in content-addressed parts (src/queue/traces.ts). */
export interface TraceParts {
  /** the sha256 of each part (BLOB_KEY), in order */
  parts: string[];
  traces: number;
  spans: number;
  /** bytes of JSON lines, before gzip */
  bytes: number;
}

export interface JobResult {
  v: 1;
  /** the worker would not evaluate this job (locked files differ, a kind it does not run): one line */
  refused?: string;
  /** what the worker's evaluation gave, as a local slot's (src/kinds/types.ts) */
  outcome?: EvalOutcome;
  /** harness jobs: the evaluation's traces, stored in parts on the queue (src/queue/traces.ts) */
  traces?: TraceParts;
  hardware: string | null;
  worker: string;
  /** the job's incumbent commit: what the result was measured for */
  incumbent: string;
  /** ms the worker spent unbundling and checking, and evaluating */
  setupMs: number;
  evalMs: number;
}

/** The numbers of a job's progress (src/kinds/types.ts EvalProgress) a coordinator shows. */
const PROGRESS_NUMBERS = ['tasksDone', 'tasksTotal', 'step', 'steps', 'loss', 'fraction', 'tokens', 'dollars'] as const;

/**
 * A job's progress as a worker reported it (BullMQ job progress, read from Redis), as the
 * coordinator may show it on a terminal: the known fields that are finite numbers, and the
 * worker's id when it is a plain name (letters, digits, `.`, `_`, `-`); anything else is dropped,
 * so nothing from the queue reaches a terminal unchecked. Null when nothing is left.
 */
export function jobProgressOf(raw: unknown): EvalProgress | null {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) return null;
  const r = raw as Record<string, unknown>;
  const p: EvalProgress = {};
  for (const k of PROGRESS_NUMBERS) {
    const v = r[k];
    if (typeof v === 'number' && Number.isFinite(v)) p[k] = v;
  }
  if (typeof r.worker === 'string' && /^[A-Za-z0-9._-]{1,100}$/.test(r.worker)) p.worker = r.worker;
  return Object.keys(p).length ? p : null;
}

export interface WorkerBeat {
  id: string;
  host: string;
  pid: number;
  slots: number;
  /** the GPU model (`2× NVIDIA H200` with several), or `cpu` */
  hardware: string;
  /** the model of each GPU the worker sees (absent from workers of earlier versions) */
  gpus?: string[];
  active: number;
  started: number;
  seen: number;
  /** started with `--models own`: takes jobs that call a model (MODELS_QUEUE_NAME) */
  models?: boolean;
}

/** The workers whose heartbeat has not expired. */
export async function liveWorkers(r: Redis): Promise<WorkerBeat[]> {
  const keys: string[] = [];
  let cursor = '0';
  for (let i = 0; i < 1000; i++) {
    const [next, batch] = await r.scan(cursor, 'MATCH', `${WORKER_KEY}*`, 'COUNT', 200);
    keys.push(...batch);
    cursor = next;
    if (cursor === '0') break;
  }
  if (keys.length === 0) return [];
  const vals = await r.mget(...keys);
  return vals.filter((v): v is string => v !== null).map((v) => JSON.parse(v) as WorkerBeat).sort((a, b) => a.id.localeCompare(b.id));
}
