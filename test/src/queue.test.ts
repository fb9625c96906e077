// Evaluation workers on BullMQ + Redis, with real processes: a redis-server of our own on a free
// loopback port (AOF, noeviction), `autoagent worker` processes, `autoagent run --queue`.
// Two workers give the same ledger as the local run; a worker SIGKILLed mid-job has its job
// delivered again and recorded once; a duplicate job id adds nothing; a job whose locked files
// differ is refused; no worker → the run says so once and stops resumable at its deadline.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { openDb, listExperiments, evaluationsOfRun } from '../../traces/index.ts';
import { startRun } from '../../src/loop.ts';
import { MemoryReporter } from '../../src/report.ts';
import { auditRun } from '../../src/audit.ts';
import { queueStatus } from '../../src/queue/cli.ts';
import { main } from '../../src/cli.ts';
import { makeRepo, cleanup, sh, PARAMS_PY } from '../helpers/repo.ts';
import { QUEUE_NAME, jobStudy, sha256, type JobData } from '../../src/queue/common.ts';
import { evaluateJob } from '../../src/queue/worker.ts';
import { StudySchema } from '../../src/study.ts';
import { sha256File } from '../../src/lock.ts';

const BIN = resolve(import.meta.dirname, '../../bin/autoagent.js');
const REDIS = '/usr/bin/redis-server';

// deterministic: the metric depends on the parameters only
const EVALUATE_PY = `import re
src = open('params.py').read()
x = float(re.search(r'^X = (\\S+)', src, re.M).group(1))
n = int(re.search(r'^N = (\\S+)', src, re.M).group(1))
print(f'METRIC loss={(x - 3.0) ** 2 + (n - 5) ** 2}')
`;

function studyYaml(o: { experiments?: number; command?: string; parallel?: number; baseline?: number } = {}): string {
  return `name: q
kind: command
editable: [params.py]
locked: [evaluate.py]
command: ${JSON.stringify(o.command ?? 'true')}
evaluate: python3 evaluate.py
parallel: ${o.parallel ?? 2}
metric: { name: loss, direction: minimize }
budget: { experiment_seconds: 30, experiments: ${o.experiments ?? 4} }
acceptance: { baseline_repeats: ${o.baseline ?? 2}, min_delta: 0, confirm_repeats: 1 }
`;
}

let redis: ChildProcess;
let redisDir: string;
let url: string;
let port: number;
const children: ChildProcess[] = [];

function freePort(): Promise<number> {
  return new Promise((ok, fail) => {
    const s = createServer();
    s.on('error', fail);
    s.listen(0, '127.0.0.1', () => {
      const p = (s.address() as { port: number }).port;
      s.close(() => ok(p));
    });
  });
}

async function until(what: string, check: () => boolean | Promise<boolean>, ms = 15_000): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out waiting for ${what}`);
}

async function startRedis(): Promise<void> {
  redis = spawn(REDIS, ['--port', String(port), '--bind', '127.0.0.1', '--appendonly', 'yes', '--maxmemory-policy', 'noeviction', '--save', '', '--dir', redisDir], { stdio: 'ignore' });
  await until('redis', async () => {
    const r = new Redis(url, { lazyConnect: true, retryStrategy: () => null, maxRetriesPerRequest: 0 });
    r.on('error', () => undefined);
    try {
      await r.connect();
      return (await r.ping()) === 'PONG';
    } catch {
      return false;
    } finally {
      r.disconnect();
    }
  });
}

before(async () => {
  redisDir = mkdtempSync(join(tmpdir(), 'autoagent-redis-'));
  port = await freePort();
  url = `redis://127.0.0.1:${port}`;
  await startRedis();
});

after(async () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  redis.kill('SIGKILL');
  rmSync(redisDir, { recursive: true, force: true });
});

async function flush(): Promise<void> {
  const r = new Redis(url);
  await r.flushall();
  r.disconnect();
}

interface Proc { child: ChildProcess; log: () => string; exited: Promise<number | null> }

function startProc(args: string[], cwd: string): Proc {
  const child = spawn(process.execPath, [BIN, ...args], { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  let text = '';
  child.stdout!.on('data', (b: Buffer) => (text += b.toString()));
  child.stderr!.on('data', (b: Buffer) => (text += b.toString()));
  const exited = new Promise<number | null>((ok) => child.on('exit', (code) => ok(code)));
  return { child, log: () => text, exited };
}

async function startWorker(cwd: string, extra: string[] = []): Promise<Proc> {
  const w = startProc(['worker', '--queue', url, '--unsafe-no-sandbox', '--lock-ms', '3000', '--stalled-ms', '1000', ...extra], cwd);
  await until('the worker to start', () => /slot\(s\)/.test(w.log()), 90_000);
  return w;
}

async function stopWorker(w: Proc): Promise<void> {
  if (w.child.exitCode === null && w.child.signalCode === null) w.child.kill('SIGTERM');
  await w.exited;
}

function ledger(dbPath: string, runId: string) {
  const db = openDb(dbPath);
  const evals = evaluationsOfRun(db, runId);
  const out = listExperiments(db, runId).map((e) => ({
    seq: e.seq, decision: e.decision, metric: e.metric, hypothesis: e.hypothesis,
    evals: (evals.get(e.id) ?? []).map((v) => [v.repeat, v.seed, v.status, v.metric]).sort(),
  }));
  db.close();
  return out;
}

/** The coordinator, in this process (the workers are real processes). */
function run(repo: string, queue?: { url: string; waitSeconds?: number }) {
  const reporter = new MemoryReporter();
  return { reporter, result: startRun(join(repo, 'study.yaml'), { overrides: {}, unsafeNoSandbox: true, reporter, queue }) };
}

async function audited(dbPath: string, runId: string): Promise<void> {
  const db = openDb(dbPath);
  const a = await auditRun(db, runId, { rescore: false });
  db.close();
  assert.ok(a.ok, a.problems.join('\n'));
}

test('two workers: the run completes, audit passes, and the ledger equals the local run of the same study', async () => {
  await flush();
  const repo = makeRepo({ 'params.py': PARAMS_PY, 'evaluate.py': EVALUATE_PY, 'study.yaml': studyYaml() });
  // the workers start while the local run goes
  const [w1, w2, local] = await Promise.all([startWorker(repo, ['--slots', '1']), startWorker(repo, ['--slots', '1']), run(repo).result]);
  try {
    assert.equal(local.status, 'finished', local.stopReason ?? '');
    const q = run(repo, { url });
    const queued = await q.result;
    assert.equal(queued.status, 'finished', queued.stopReason ?? '');
    assert.ok(q.reporter.lines.some((l) => /^evaluations go to queue redis:\/\/127\.0\.0\.1/.test(l)));
    const a = ledger(local.dbPath, local.runId);
    const b = ledger(queued.dbPath, queued.runId);
    assert.ok(a.some((e) => e.decision === 'kept'), 'the study improves');
    assert.deepEqual(b, a, 'same seeds, same evaluations, same decisions');
    // both workers took jobs, and each evaluation ran once
    const jobs = (w: Proc) => [...w.log().matchAll(/job (\S+) #\d+ repeat \d+: ok/g)].map((m) => m[1]);
    assert.ok(jobs(w1).length > 0 && jobs(w2).length > 0, `both workers worked:\n${w1.log()}\n${w2.log()}`);
    const all = [...jobs(w1), ...jobs(w2)];
    // at-least-once: a job may run twice when a loaded machine delays a lock renewal; each is recorded once
    assert.equal(new Set(all).size, b.reduce((s, e) => s + e.evals.length, 0), 'one job per recorded evaluation');
    await audited(queued.dbPath, queued.runId);
    // queue status sees both workers and the completed jobs
    const s = await queueStatus(url);
    assert.equal(s.workers.length, 2);
    assert.equal(s.workers[0]!.hardware, 'cpu');
    assert.equal(s.jobs.completed, new Set(all).size);
    assert.equal(s.jobs.waiting, 0);

    // (c) a duplicate job id adds nothing: BullMQ ignores it, no worker runs it again
    const queue = new Queue(QUEUE_NAME, { connection: { host: '127.0.0.1', port } });
    const done = await queue.getJobs(['completed']);
    const first = done[0]!;
    const again = await queue.add('eval', first.data, { jobId: first.id });
    assert.equal(again.id, first.id);
    await new Promise((r) => setTimeout(r, 500));
    const counts = await queue.getJobCounts('waiting', 'active', 'completed');
    assert.deepEqual(counts, { waiting: 0, active: 0, completed: new Set(all).size });
    assert.equal([...jobs(w1), ...jobs(w2)].length, all.length, 'the duplicate was not run');
    await queue.close();
  } finally {
    await stopWorker(w1);
    await stopWorker(w2);
    cleanup(repo);
  }
});

test('a worker SIGKILLed mid-job: the job is delivered again to another worker and recorded once', async () => {
  await flush();
  // the command sleeps so a job is surely in flight when the worker is killed
  const repo = makeRepo({ 'params.py': PARAMS_PY, 'evaluate.py': EVALUATE_PY, 'study.yaml': studyYaml({ experiments: 1, parallel: 1, command: 'sleep 1', baseline: 1 }) });
  const pair = await Promise.all([startWorker(repo), startWorker(repo)]);
  try {
    const coordinator = run(repo, { url });
    await until('the first job to start', () => pair.some((w) => /started/.test(w.log())));
    // the worker that took it is killed mid-job; the other one gets it once its lock expires
    const doomed = pair.find((w) => /started/.test(w.log()))!;
    const rescuer = pair.find((w) => w !== doomed)!;
    const jobId = /job (\S+) #0 repeat 0: started/.exec(doomed.log())![1]!;
    doomed.child.kill('SIGKILL');
    await doomed.exited;
    try {
      const res = await coordinator.result;
      assert.equal(res.status, 'finished', res.stopReason ?? '');
      assert.match(rescuer.log(), new RegExp(`job ${jobId} #0 repeat 0: ok`), 'the killed job ran again on the other worker');
      const l = ledger(res.dbPath, res.runId);
      const done = new Set([...rescuer.log().matchAll(/job (\S+) #\d+ repeat \d+: ok/g)].map((m) => m[1]));
      assert.equal(l.reduce((s, e) => s + e.evals.length, 0), done.size, 'each evaluation recorded once');
      assert.ok(l.every((e) => e.evals.every((v) => v[2] === 'ok')));
      await audited(res.dbPath, res.runId);
    } finally {
      await stopWorker(rescuer);
    }
  } finally {
    cleanup(repo);
  }
});

test('a worker stopped (SIGSTOP) past its lock: the job runs on another worker, the late result is refused, one evaluation recorded', async () => {
  await flush();
  const repo = makeRepo({ 'params.py': PARAMS_PY, 'evaluate.py': EVALUATE_PY, 'study.yaml': studyYaml({ experiments: 0, parallel: 1, command: 'sleep 2', baseline: 1 }) });
  const pair = await Promise.all([startWorker(repo), startWorker(repo)]);
  try {
    const coordinator = run(repo, { url });
    await until('the job to start', () => pair.some((w) => /started/.test(w.log())));
    const stalled = pair.find((w) => /started/.test(w.log()))!;
    const other = pair.find((w) => w !== stalled)!;
    const otherId = /worker (\S+) on/.exec(other.log())![1]!;
    stalled.child.kill('SIGSTOP');
    const res = await coordinator.result;
    assert.equal(res.status, 'finished', res.stopReason ?? '');
    assert.match(other.log(), /#0 repeat 0: ok 13/, 'the other worker ran it once the lock expired');
    const db = openDb(res.dbPath);
    const evals = [...evaluationsOfRun(db, res.runId).values()].flat();
    db.close();
    assert.equal(evals.length, 1);
    assert.equal(JSON.parse(evals[0]!.telemetry!).worker, otherId, 'the result recorded is the live worker\'s');
    // woken up, the stalled worker finishes its evaluation; the queue refuses its result
    stalled.child.kill('SIGCONT');
    await until('the stalled worker to finish', () => /#0 repeat 0: ok/.test(stalled.log()), 60_000);
    await until('its result to be refused', () => /refused by the queue/.test(stalled.log()), 30_000);
    const s = await queueStatus(url);
    assert.deepEqual(s.jobs, { waiting: 0, active: 0, completed: 1, failed: 0, delayed: 0 });
    await audited(res.dbPath, res.runId);
  } finally {
    for (const w of pair) w.child.kill('SIGCONT');
    await Promise.all(pair.map(stopWorker));
    cleanup(repo);
  }
});

test('Redis restarted mid-run: the coordinator and the worker reconnect, the run completes, nothing recorded twice', async () => {
  await flush();
  const repo = makeRepo({ 'params.py': PARAMS_PY, 'evaluate.py': EVALUATE_PY, 'study.yaml': studyYaml({ experiments: 2, parallel: 1, command: 'sleep 1', baseline: 2 }) });
  const w = await startWorker(repo);
  try {
    const coordinator = run(repo, { url });
    await until('a first result', () => /: ok/.test(w.log()), 60_000);
    const down = new Promise((ok) => redis.once('exit', ok));
    redis.kill('SIGTERM'); // AOF written on shutdown
    await down;
    await new Promise((r) => setTimeout(r, 1500));
    await startRedis();
    const res = await coordinator.result;
    assert.equal(res.status, 'finished', res.stopReason ?? '');
    const l = ledger(res.dbPath, res.runId);
    assert.equal(l.length, 3, 'the baseline and two experiments');
    assert.ok(l.every((e) => e.evals.every((v) => v[2] === 'ok')));
    assert.ok(l.some((e) => e.decision === 'kept'));
    await audited(res.dbPath, res.runId);
  } finally {
    await stopWorker(w);
    cleanup(repo);
  }
});

test('no worker connected: the run says so once, waits up to --queue-wait, and stops resumable; the password is never printed', async () => {
  await flush();
  const repo = makeRepo({ 'params.py': PARAMS_PY, 'evaluate.py': EVALUATE_PY, 'study.yaml': studyYaml({ experiments: 1 }) });
  try {
    const t0 = Date.now();
    const r = run(repo, { url, waitSeconds: 2 });
    const res = await r.result;
    assert.equal(res.status, 'stopped');
    assert.ok(Date.now() - t0 < 15_000);
    assert.equal(r.reporter.lines.filter((l) => /no worker is connected/.test(l)).length, 1, r.reporter.lines.join('\n'));
    assert.match(res.stopReason ?? '', /^no worker took an evaluation .* within 2 s; start a worker and resume/);
    assert.deepEqual(await queueStatus(url).then((s) => s.jobs), { waiting: 0, active: 0, completed: 0, failed: 0, delayed: 0 }, 'the job is not left behind');
    // a password: never printed, in any line
    const cli = async (args: string[]) => {
      let stdout = '';
      let stderr = '';
      const status = await main(args, { out: (t) => void (stdout += t), err: (t) => void (stderr += t), errIsTTY: false });
      return { status, stdout, stderr };
    };
    const p = await cli(['queue', 'status', '--queue', 'redis://:hunter2@127.0.0.1:1']);
    const bad = await cli(['worker', '--queue', 'http://127.0.0.1:1']);
    assert.equal(p.status, 1);
    assert.match(p.stderr, /^autoagent: cannot reach queue redis:\/\/:\*\*\*@127\.0\.0\.1:1/);
    assert.doesNotMatch(p.stderr + p.stdout, /hunter2/);
    assert.equal(bad.status, 2);
    assert.match(bad.stderr, /--queue: http: is not redis: or rediss:/);
  } finally {
    cleanup(repo);
  }
});

test('a job whose locked files differ from the run\'s manifest is refused by the worker', async () => {
  const repo = makeRepo({ 'params.py': PARAMS_PY, 'evaluate.py': EVALUATE_PY, 'study.yaml': studyYaml() });
  try {
    const commit = sh(repo, 'git', ['rev-parse', 'HEAD']).trim();
    sh(repo, 'git', ['update-ref', `refs/autoagent-bundle/${commit}`, commit]);
    sh(repo, 'git', ['bundle', 'create', '-q', join(repo, 'b.bundle'), `refs/autoagent-bundle/${commit}`]);
    const study = JSON.stringify(jobStudy(StudySchema.parse({ name: 'q', kind: 'command', editable: ['params.py'], locked: ['evaluate.py'], command: 'true', evaluate: 'python3 evaluate.py', metric: { name: 'loss', direction: 'minimize' } })));
    const job = (hash: string): JobData => ({
      v: 1, run: 'r', study, study_hash: sha256(study), study_dir: '', commit, bundle: readFileSync(join(repo, 'b.bundle')).toString('base64'),
      manifest: { files: { 'evaluate.py': hash }, external: {} }, base_tracked: ['params.py', 'evaluate.py', 'study.yaml'], hidden: [],
      seq: 1, seed: 1001, repeat: 0, stage: 'screen', unsafe_no_sandbox: true,
    });
    const ok = await evaluateJob(job(sha256File(join(repo, 'evaluate.py'))), { unsafeNoSandbox: true, worker: 'w' });
    assert.equal(ok.refused, undefined);
    assert.equal(ok.outcome?.status, 'ok', ok.outcome?.reason ?? '');
    assert.equal(ok.outcome?.metric, 13);
    writeFileSync(join(repo, 'x'), 'other');
    const bad = await evaluateJob(job(sha256File(join(repo, 'x'))), { unsafeNoSandbox: true, worker: 'w' });
    assert.match(bad.refused ?? '', /^locked file evaluate\.py changed since the run started/);
    assert.equal(bad.outcome, undefined);
    const tampered = await evaluateJob({ ...job(sha256File(join(repo, 'evaluate.py'))), study_hash: sha256('other') }, { unsafeNoSandbox: true, worker: 'w' });
    assert.match(tampered.refused ?? '', /does not match its hash/);
  } finally {
    cleanup(repo);
  }
});
