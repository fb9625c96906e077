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
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { cpus, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { startRun } from '../src/loop.ts';
import { MemoryReporter } from '../src/report.ts';
import { openDb, listExperiments, evaluationsOfRun } from '../traces/index.ts';
import { QUEUE_NAME, type JobResult } from '../src/queue/common.ts';
import { writeSection, machine } from './markdown.ts';
import { makeRepo as makeGitRepo } from '../test/helpers/repo.ts';

const { values } = parseArgs({ options: { experiments: { type: 'string', default: '8' }, seconds: { type: 'string', default: '2' } } });
const E = Number(values.experiments);
const S = Number(values.seconds);
const BIN = resolve(import.meta.dirname, '../bin/autoagent.js');

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

function freePort(): Promise<number> {
  return new Promise((ok) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const p = (s.address() as { port: number }).port;
      s.close(() => ok(p));
    });
  });
}

async function waitFor(check: () => boolean | Promise<boolean>, ms: number): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error('timed out');
}

const port = await freePort();
const url = `redis://127.0.0.1:${port}`;
const redisDir = mkdtempSync(join(tmpdir(), 'autoagent-bench-redis-'));
const redis = spawn('/usr/bin/redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--appendonly', 'yes', '--maxmemory-policy', 'noeviction', '--save', '', '--dir', redisDir], { stdio: 'ignore' });
const workers: ChildProcess[] = [];
const conn = new Redis(url, { maxRetriesPerRequest: null });
conn.on('error', () => undefined); // until redis-server listens
await waitFor(async () => (await conn.ping().catch(() => '')) === 'PONG', 30_000);

async function addWorkers(n: number): Promise<void> {
  await Promise.all(Array.from({ length: n }, async () => {
    const w = spawn(process.execPath, [BIN, 'worker', '--queue', url], { stdio: ['ignore', 'ignore', 'pipe'] });
    workers.push(w);
    let log = '';
    w.stderr!.on('data', (b: Buffer) => (log += b.toString()));
    await waitFor(() => /slot\(s\)/.test(log), 120_000);
  }));
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
  for (const w of workers) w.kill('SIGTERM');
  conn.disconnect();
  await new Promise((r) => setTimeout(r, 1000));
  redis.kill('SIGTERM');
  rmSync(redisDir, { recursive: true, force: true });
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
