/**
 * Queue workers against the local sequential run, side by side in one run: one command study whose
 * command sleeps 2 s, run locally with one slot, then through a Redis queue (a redis-server of its
 * own on a loopback port, AOF, noeviction) with 1, 2 and 4 `autoagent worker` processes on this
 * machine (`parallel` = the number of workers). Figures: wall time, experiments per hour and the
 * speed-up against the local run, and the queue's overhead per job: the time from the job's
 * creation to its completion in Redis less the worker's own evaluation time (pick-up, unbundling,
 * the manifest check, the completion), as a mean and the largest.
 *
 *   node --import tsx bench/distributed.ts [--experiments 8] [--seconds 2]
 */
import { rmSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { startRun } from '../src/loop.ts';
import { MemoryReporter } from '../src/report.ts';
import { openDb, listExperiments, evaluationsOfRun } from '../traces/index.ts';
import { QUEUE_NAME, type JobResult } from '../src/queue/common.ts';
import { writeSection, machine } from './markdown.ts';
import { makeRepo as makeGitRepo } from '../test/helpers/repo.ts';
import { redisServer, startWorker, stopWorker, type Proc } from '../test/helpers/queue.ts';

const { values } = parseArgs({ options: { experiments: { type: 'string', default: '8' }, seconds: { type: 'string', default: '2' } } });
const E = Number(values.experiments);
const S = Number(values.seconds);

const EVALUATE = `import re
src = open('params.py').read()
x = float(re.search(r'^X = (\\S+)', src, re.M).group(1))
n = int(re.search(r'^N = (\\S+)', src, re.M).group(1))
print(f'METRIC loss={(x - 3.0) ** 2 + (n - 5) ** 2}')
`;

function makeRepo(): string {
  return makeGitRepo({
    'params.py': 'X = 1.0\nN = 2\n',
    'evaluate.py': EVALUATE,
    'study.yaml': `name: dist
kind: command
editable: [params.py]
locked: [evaluate.py]
command: sleep ${S}
evaluate: python3 evaluate.py
metric: { name: loss, direction: minimize }
budget: { experiment_seconds: ${Math.ceil(S * 20)}, experiments: ${E} }
proposer: { type: search, seed: 1 }
acceptance: { baseline_repeats: 2, min_delta: 0, confirm_repeats: 1 }
`,
  });
}

const redis = await redisServer();
const url = redis.url;
const workers: Proc[] = [];
const conn = new Redis(url, { maxRetriesPerRequest: null });
conn.on('error', () => undefined);

/** n more workers (BullMQ's default lock and stall check, as a user's) */
async function addWorkers(n: number): Promise<void> {
  workers.push(...(await Promise.all(Array.from({ length: n }, () => startWorker(url, process.cwd(), ['--lock-ms', '30000', '--stalled-ms', '30000'])))));
}

interface Row { where: string; wall: number; experiments: number; evals: number; kept: number; overheadMean: number | null; overheadMax: number | null }
const rows: Row[] = [];
const t0 = Date.now();

async function measure(where: string, workersN: number | null): Promise<void> {
  const repo = makeRepo();
  try {
    await conn.flushall();
    const started = Date.now();
    const res = await startRun(join(repo, 'study.yaml'), {
      overrides: { parallel: workersN ?? 1 }, unsafeNoSandbox: false, reporter: new MemoryReporter(), queue: workersN ? { url } : undefined,
    });
    const wall = (Date.now() - started) / 1000;
    if (res.status !== 'finished') throw new Error(`${where}: ${res.status} ${res.stopReason}`);
    const db = openDb(res.dbPath);
    const exps = listExperiments(db, res.runId);
    const evals = [...evaluationsOfRun(db, res.runId).values()].flat().length;
    db.close();
    let overheadMean: number | null = null;
    let overheadMax: number | null = null;
    if (workersN) {
      const queue = new Queue<unknown, JobResult>(QUEUE_NAME, { connection: conn });
      const jobs = await queue.getJobs(['completed']);
      const over = jobs.map((j) => j.finishedOn! - j.timestamp - j.returnvalue.evalMs);
      overheadMean = over.reduce((a, b) => a + b, 0) / over.length;
      overheadMax = Math.max(...over);
      await queue.close();
    }
    const row = { where, wall, experiments: exps.filter((e) => e.seq > 0).length, evals, kept: exps.filter((e) => e.decision === 'kept').length, overheadMean, overheadMax };
    rows.push(row);
    console.log(JSON.stringify(row));
  } finally {
    rmSync(repo, { recursive: true, force: true });
  }
}

try {
  await measure('local, 1 slot', null);
  await addWorkers(1);
  await measure('queue, 1 worker', 1);
  await addWorkers(1);
  await measure('queue, 2 workers', 2);
  await addWorkers(2);
  await measure('queue, 4 workers', 4);
} finally {
  await Promise.all(workers.map(stopWorker));
  conn.disconnect();
  redis.close();
}

const local = rows[0]!;
const perHour = (r: Row) => (r.experiments / r.wall) * 3600;
const lines = [
  '## Distributed workers (`node --import tsx bench/distributed.ts`)',
  '',
  `One command study (its command sleeps ${S} s; 2 baseline repeats, ${E} experiments, the \`search\` proposer, 1 confirmation, bubblewrap`,
  'sandbox) run locally with one slot, then through a Redis queue with 1, 2 and 4 `autoagent worker` processes on this same machine',
  '(`parallel` = workers), side by side in one run. Overhead per job: job created → completed in Redis, less the worker\'s evaluation',
  '(pick-up, polling, unbundling into a temporary repository, the manifest check, the completion).',
  `Measured ${new Date().toISOString().slice(0, 10)} on ${machine()} (${cpus().length} cores, shared, load average at start ${(await import('node:os')).loadavg()[0]!.toFixed(1)}), ${((Date.now() - t0) / 60000).toFixed(1)} min.`,
  '',
  '| where | wall | experiments | evaluations | experiments / hour | × local | queue overhead / job (mean, max) | kept |',
  '| --- | --- | --- | --- | --- | --- | --- | --- |',
];
for (const r of rows) {
  lines.push(`| ${r.where} | ${r.wall.toFixed(1)} s | ${r.experiments} | ${r.evals} | ${perHour(r).toFixed(0)} | ${(perHour(r) / perHour(local)).toFixed(2)}× | ${r.overheadMean === null ? '—' : `${r.overheadMean.toFixed(0)} ms, ${r.overheadMax!.toFixed(0)} ms`} | ${r.kept} |`);
}
writeSection('distributed', lines.join('\n'));
console.log(lines.join('\n'));
process.exit(0);
