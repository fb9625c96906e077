// Evaluation workers on BullMQ + Redis, with real processes: a redis-server of our own on a free
// loopback port (AOF, noeviction), `autoagent worker` processes, `autoagent run --queue`.
// Two workers give the same ledger as the local run; a worker SIGKILLed mid-job has its job
// delivered again and recorded once; a duplicate job id adds nothing; a job whose locked files
// differ is refused; no worker → the run says so once and stops resumable at its deadline.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { Queue, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { openDb, listExperiments, evaluationsOfRun, getRun } from '../../traces/index.ts';
import { startRun } from '../../src/loop.ts';
import { MemoryReporter } from '../../src/report.ts';
import { auditRun } from '../../src/audit.ts';
import { renderReport } from '../../src/report/html.ts';
import { queueStatus, queueStatusText } from '../../src/queue/cli.ts';
import { main } from '../../src/cli.ts';
import { cli } from '../helpers/cli.ts';
import { redisServer, startProc, startWorker as startQueueWorker, stopWorker, killProcs, until, type Proc, type RedisServer } from '../helpers/queue.ts';
import { makeRepo, cleanup, sh, PARAMS_PY, tinyTrainerRepo, tinyTrainerStudy, tinyCorpus, TRAINER_PREPARE_PY, TRAINER_TRAIN_PY } from '../helpers/repo.ts';
import { sandboxAvailable } from '../../sandbox/index.ts';
import { BLOB_KEY, QUEUE_NAME, WORKER_KEY, jobStudy, sha256, type JobData, type JobResult } from '../../src/queue/common.ts';
import { evaluateJob, latestEvery, sweepDeadWorkerFolders } from '../../src/queue/worker.ts';
import { StudySchema } from '../../src/study.ts';
import { TrainerKind, findTorchPython } from '../../src/kinds/trainer.ts';
import { buildManifest, sha256File } from '../../src/lock.ts';
import { QueueDispatcher } from '../../src/queue/dispatcher.ts';
import { parse as parseYaml } from 'yaml';


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

let redis: RedisServer;
let url: string;
let port: number;

before(async () => {
  redis = await redisServer();
  ({ url, port } = redis);
});

after(() => {
  killProcs();
  redis.close();
});

const flush = () => redis.flushall();

/** a worker without the sandbox (the jobs' own tests sandbox theirs), short locks */
function startWorker(cwd: string, extra: string[] = [], env: Record<string, string> = {}): Promise<Proc> {
  return startQueueWorker(url, cwd, ['--unsafe-no-sandbox', ...extra], env);
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
    // the report says where the evaluations ran: on which worker, on what hardware
    const wid = (w: Proc) => /worker (\S+) on/.exec(w.log())![1]!;
    const rdb = openDb(queued.dbPath);
    const html = renderReport(rdb, queued.runId);
    rdb.close();
    const on = /<b>evaluated on<\/b> ([^<]*)<\/div>/.exec(html)?.[1] ?? '';
    const counted = [...on.matchAll(/(\d+) on (\S+)/g)];
    assert.deepEqual(counted.map((m) => m[2]).sort(), [wid(w1), wid(w2)].sort(), on);
    assert.equal(counted.reduce((n, m) => n + Number(m[1]), 0), b.reduce((n, e) => n + e.evals.length, 0), on);
    const ldb = openDb(local.dbPath);
    assert.doesNotMatch(renderReport(ldb, local.runId), /evaluated on/, 'a local run without hardware classes says nothing of it');
    ldb.close();
    // each candidate's bundle is in Redis once, under its sha256; the jobs carry only that hash
    const r = new Redis(url);
    const blobs = await r.keys(`${BLOB_KEY}*`);
    const jobKeys = (await r.keys(`bull:${QUEUE_NAME}:ev-*`)).filter((k) => !k.includes(':', `bull:${QUEUE_NAME}:ev-`.length));
    const datas = await Promise.all(jobKeys.map(async (k) => JSON.parse((await r.hget(k, 'data'))!) as JobData));
    r.disconnect();
    assert.equal(datas.length, new Set(all).size);
    assert.ok(datas.every((d) => d.bundle === undefined && d.bundle_sha256 && blobs.includes(`${BLOB_KEY}${d.bundle_sha256}`)));
    assert.equal(blobs.length, new Set(datas.map((d) => d.commit)).size, 'one bundle per commit, shared by its jobs');
    assert.ok(blobs.length < datas.length, 'repeats and confirmations share their commit\'s bundle');
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
  // the workers' own temporary folder, to see what a killed one leaves there
  const tmp = mkdtempSync(join(tmpdir(), 'aa-worker-tmp-'));
  const pair = await Promise.all([startWorker(repo, [], { TMPDIR: tmp }), startWorker(repo, [], { TMPDIR: tmp })]);
  try {
    const coordinator = run(repo, { url });
    await until('the first job to start', () => pair.some((w) => /started/.test(w.log())));
    // the worker that took it is killed mid-job; the other one gets it once its lock expires
    const doomed = pair.find((w) => /started/.test(w.log()))!;
    const rescuer = pair.find((w) => w !== doomed)!;
    const jobId = /job (\S+) #0 repeat 0: started/.exec(doomed.log())![1]!;
    const left = () => readdirSync(tmp).filter((n) => new RegExp(`^autoagent-worker-.*-${doomed.child.pid}-`).test(n));
    // (its job folder is made just after it says `started`)
    await until('the job folder', () => left().length === 1);
    doomed.child.kill('SIGKILL');
    await doomed.exited;
    assert.equal(left().length, 1, 'the killed worker left its job folder');
    try {
      const res = await coordinator.result;
      assert.equal(res.status, 'finished', res.stopReason ?? '');
      assert.match(rescuer.log(), new RegExp(`job ${jobId} #0 repeat 0: ok`), 'the killed job ran again on the other worker');
      const l = ledger(res.dbPath, res.runId);
      const done = new Set([...rescuer.log().matchAll(/job (\S+) #\d+ repeat \d+: ok/g)].map((m) => m[1]));
      assert.equal(l.reduce((s, e) => s + e.evals.length, 0), done.size, 'each evaluation recorded once');
      assert.ok(l.every((e) => e.evals.every((v) => v[2] === 'ok')));
      await audited(res.dbPath, res.runId);
      // the other worker removed it when it took the job (the dead worker's pid is gone); nothing else is left
      assert.deepEqual(left(), []);
      assert.match(rescuer.log(), /removed 1 temporary folder\(s\) left by worker\(s\) that died/);
    } finally {
      await stopWorker(rescuer);
    }
    assert.deepEqual(readdirSync(tmp).filter((n) => n.startsWith('autoagent-')), [], 'a drained worker leaves nothing of its own');
  } finally {
    rmSync(tmp, { recursive: true, force: true });
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
    await redis.stop('SIGTERM'); // AOF written on shutdown
    await new Promise((r) => setTimeout(r, 1500));
    await redis.start();
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

test('the coordinator SIGKILLed mid-job: `resume` re-attaches to the job still running, then to one completed meanwhile; each evaluation runs once', { timeout: 180_000 }, async () => {
  await flush();
  const tmp = mkdtempSync(join(tmpdir(), 'autoagent-resume-'));
  const count = join(tmp, 'count');
  const hold = join(tmp, 'hold');
  // each execution appends its seed; an evaluation whose hold file exists waits until the test removes it (at most 60 s)
  const command = `echo "$AUTOAGENT_SEED" >> ${count}; i=0; while [ -e ${hold}-$AUTOAGENT_SEED ] && [ $i -lt 1200 ]; do sleep 0.05; i=$((i+1)); done`;
  const repo = makeRepo({ 'params.py': PARAMS_PY, 'evaluate.py': EVALUATE_PY, 'study.yaml': studyYaml({ experiments: 3, parallel: 1, command, baseline: 1 }) });
  const seeds = () => (existsSync(count) ? readFileSync(count, 'utf8').split('\n').filter(Boolean) : []);
  // a long lock: on a loaded machine a late renewal of a 3 s lock hands a job out again (at-least-once), which is not what this counts
  const w = await startWorker(repo, ['--slots', '1', '--lock-ms', '60000']);
  const procs: Proc[] = [];
  const coordinator = (args: string[], queue = ['--queue', url]) => {
    const p = startProc([...args, ...queue, '--unsafe-no-sandbox'], repo);
    procs.push(p);
    return p;
  };
  try {
    // 1. killed while experiment #1's screen (seed 1001) runs on the worker
    writeFileSync(`${hold}-1001`, '');
    const a = coordinator(['run', 'study.yaml']);
    await until('the screen of #1 to start on the worker', () => seeds().includes('1001'), 90_000);
    const runId = /run (\S+) on branch/.exec(a.log())![1]!;
    a.child.kill('SIGKILL');
    await a.exited;
    const b = coordinator(['resume', runId]);
    await until('the resumed coordinator to re-attach', () => /#1 repeat 0 .*already on the queue \(active\)/.test(b.log()), 90_000);
    assert.deepEqual(seeds().filter((s) => s === '1001'), ['1001'], 'not started again');
    // 2. killed while #2's screen (seed 2001) runs; the job completes while no coordinator is up
    writeFileSync(`${hold}-2001`, '');
    rmSync(`${hold}-1001`);
    await until('the screen of #2 to start on the worker', () => seeds().includes('2001'), 90_000);
    b.child.kill('SIGKILL');
    await b.exited;
    rmSync(`${hold}-2001`);
    await until('the worker to finish #2\'s screen', () => /#2 repeat 0: ok/.test(w.log()), 60_000);
    // a raised budget does not change the jobs' identity; without --queue, the run's queue (no password: recorded)
    const c = coordinator(['resume', runId, '--experiments', '4'], []);
    assert.equal(await c.exited, 0, c.log());
    assert.match(c.log(), new RegExp(`the run evaluated on queue ${url.replace(/[.]/g, '\\.')}: resuming there`));
    assert.match(c.log(), /#2 repeat 0 .*already on the queue \(completed\)/);

    const dbPath = join(repo, '.autoagent', 'autoagent.db');
    const l = ledger(dbPath, runId);
    const recorded = l.flatMap((e) => e.evals.map((v) => String(v[1])));
    assert.deepEqual([...seeds()].sort(), [...recorded].sort(), 'the worker ran each recorded evaluation once, and nothing else');
    assert.equal(new Set(seeds()).size, seeds().length, 'no evaluation ran twice');
    assert.equal(l.filter((e) => e.seq > 0).length, 4);
    assert.ok(l.every((e) => e.evals.every((v) => v[2] === 'ok')));
    // the branch holds exactly the kept experiments, in order
    const db = openDb(dbPath);
    const exps = listExperiments(db, runId);
    const branch = getRun(db, runId)!.branch;
    db.close();
    const kept = exps.filter((e) => e.decision === 'kept').map((e) => e.kept_commit!);
    const onBranch = sh(repo, 'git', ['rev-list', '--reverse', `main..${branch}`]).split('\n').filter(Boolean);
    assert.deepEqual(onBranch, kept);
    await audited(dbPath, runId);
    const s = await queueStatus(url);
    assert.deepEqual({ ...s.jobs, completed: 0 }, { waiting: 0, active: 0, completed: 0, failed: 0, delayed: 0 });
  } finally {
    for (const p of procs) if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGKILL');
    await stopWorker(w);
    cleanup(repo);
    rmSync(tmp, { recursive: true, force: true });
  }
});

test('a result on the queue measured for another incumbent is not used: the job is evaluated again for the current one', { timeout: 120_000 }, async () => {
  await flush();
  const tmp = mkdtempSync(join(tmpdir(), 'autoagent-stale-'));
  const count = join(tmp, 'count');
  const repo = makeRepo({ 'params.py': PARAMS_PY, 'evaluate.py': EVALUATE_PY, 'study.yaml': studyYaml({ command: `echo "$AUTOAGENT_SEED" >> ${count}` }) });
  const w = await startWorker(repo, ['--slots', '1']);
  const lines: string[] = [];
  const dispatcher = () => new QueueDispatcher({
    url, size: 1, waitSeconds: 30, runId: 'r-stale', repo, study: StudySchema.parse(parseYaml(readFileSync(join(repo, 'study.yaml'), 'utf8'))), studyDir: '',
    manifest: buildManifest(repo, ['evaluate.py'], []), baseTracked: new Set(['params.py', 'evaluate.py', 'study.yaml']), hidden: [], unsafeNoSandbox: true,
    say: (l) => lines.push(l),
  });
  const executions = () => readFileSync(count, 'utf8').split('\n').filter(Boolean).length;
  try {
    const base = sh(repo, 'git', ['rev-parse', 'HEAD']).trim();
    writeFileSync(join(repo, 'params.py'), PARAMS_PY.replace('X = 1.0', 'X = 2.0'));
    sh(repo, 'git', ['-c', 'user.name=t', '-c', 'user.email=t@t', 'commit', '-qam', 'candidate']);
    const candidate = sh(repo, 'git', ['rev-parse', 'HEAD']).trim();
    const newer = sh(repo, 'git', ['commit-tree', '-p', base, '-m', 'a newer incumbent', `${base}^{tree}`], ).trim();
    const target = { commit: candidate, label: '1-0', seq: 1, seed: 1001, repeat: 0, stage: 'screen', incumbent: base, signal: new AbortController().signal };
    const evaluate = async (incumbent: string) => {
      const d = dispatcher();
      try {
        return await d.evaluate({ ...target, incumbent }, () => undefined);
      } finally {
        await d.close();
      }
    };
    const first = await evaluate(base);
    assert.equal(first.screenedAgainst, base);
    assert.equal(first.out.metric, 13 - 3);
    assert.equal(executions(), 1);
    // the same job (same run, commit, stage, repeat, seed) asked for a newer incumbent: the completed one is not used
    const again = await evaluate(newer);
    assert.equal(again.screenedAgainst, newer);
    assert.equal((again.out.telemetry as { incumbent?: string }).incumbent, newer);
    assert.equal(executions(), 2, 'evaluated again');
    assert.ok(lines.some((l) => l.includes(`measured for incumbent ${base.slice(0, 10)}, the incumbent is now ${newer.slice(0, 10)}: evaluated again`)), lines.join('\n'));
    // asked for the incumbent it was measured for: its result is used, nothing runs
    const same = await evaluate(base);
    assert.equal(same.screenedAgainst, base);
    assert.equal(executions(), 2);
  } finally {
    await stopWorker(w);
    cleanup(repo);
    rmSync(tmp, { recursive: true, force: true });
  }
});

test('a worker\'s busy count changes as a job starts and ends, not at its next heartbeat', { timeout: 120_000 }, async () => {
  await flush();
  const repo = makeRepo({ 'params.py': PARAMS_PY, 'evaluate.py': EVALUATE_PY, 'study.yaml': studyYaml({ experiments: 0, parallel: 1, command: 'sleep 2', baseline: 1 }) });
  const w = await startWorker(repo, ['--slots', '1']);
  try {
    const id = /worker (\S+) on/.exec(w.log())![1]!;
    const busy = async () => (await queueStatus(url)).workers.find((x) => x.id === id)!.active;
    assert.equal(await busy(), 0);
    const coordinator = run(repo, { url });
    await until('the first job to start', () => /#0 repeat 0: started/.test(w.log()), 60_000);
    assert.equal(await busy(), 1, 'busy as soon as the job started');
    const res = await coordinator.result;
    assert.equal(res.status, 'finished', res.stopReason ?? '');
    // its last job done, the worker says so within a second (heartbeats are 2 s apart)
    await until('the worker to be idle', async () => (await busy()) === 0, 1000);
  } finally {
    await stopWorker(w);
    cleanup(repo);
  }
});

test('status --queue and queue status show each worker: id, slots, GPU model, heartbeat age; a drained worker is gone', { timeout: 120_000 }, async () => {
  await flush();
  const repo = makeRepo({ 'params.py': PARAMS_PY, 'evaluate.py': EVALUATE_PY, 'study.yaml': studyYaml() });
  const w = await startWorker(repo, ['--slots', '2'], { AUTOAGENT_FAKE_GPUS: 'GPU-a=NVIDIA H200,GPU-b=NVIDIA H200' });
  try {
    const id = /worker (\S+) on/.exec(w.log())![1]!;
    assert.match(w.log(), /2 slot\(s\), 2× NVIDIA H200/);
    const db = join(repo, '.autoagent', 'autoagent.db');
    mkdirSync(dirname(db), { recursive: true });
    openDb(db).close();
    const text = await cli(['status', '--queue', url, '--db', db]);
    assert.equal(text.code, 0, text.stderr);
    assert.match(text.stdout, /^no runs yet/);
    assert.match(text.stdout, /workers: 1 \(2 slots\)/);
    const row = text.stdout.split('\n').find((l) => l.includes(id)) ?? '';
    assert.match(row, new RegExp(`${id}\\s+\\S+\\s+2\\s+0\\s+2× NVIDIA H200\\s+-\\s+\\d+(\\.\\d)? s ago$`), text.stdout);
    const json = await cli(['status', '--queue', url, '--db', db, '--json']);
    const q = JSON.parse(json.stdout) as { runs: unknown[]; queue: { workers: Array<{ id: string; slots: number; hardware: string; gpus: string[]; seen_ago_s: number }> } };
    assert.deepEqual(q.runs, []);
    assert.equal(q.queue.workers.length, 1);
    const beat = q.queue.workers[0]!;
    assert.deepEqual([beat.id, beat.slots, beat.hardware, beat.gpus], [id, 2, '2× NVIDIA H200', ['NVIDIA H200', 'NVIDIA H200']]);
    assert.ok(beat.seen_ago_s >= 0 && beat.seen_ago_s < 10, String(beat.seen_ago_s));
    const qs = await cli(['queue', 'status', '--queue', url]);
    assert.match(qs.stdout, new RegExp(`${id}.*2× NVIDIA H200.* s ago`));
    // drained (SIGTERM): its heartbeat goes with it
    await stopWorker(w);
    const after = await cli(['status', '--queue', url, '--db', db]);
    assert.match(after.stdout, /workers: none connected/);
  } finally {
    await stopWorker(w);
    cleanup(repo);
  }
});

/** the tiny trainer study of test/helpers/repo.ts, on CPU, with room for a loaded machine */
function trainerRepo(): string {
  return tinyTrainerRepo({
    budget: '{ experiment_seconds: 3, grace_seconds: 20, evaluate_seconds: 120, experiments: 0 }',
    trainer: '{ corpus: corpus.txt, eval_tokens: 4096, device: cpu }',
  });
}

function torchMissing(): string | null {
  try {
    findTorchPython();
    return null;
  } catch (e) {
    return (e as Error).message;
  }
}

test('latestEvery sends the first value at once, then the latest at most once per interval; stop drops what is pending', async () => {
  const sent: number[] = [];
  const l = latestEvery(80, (v: number) => sent.push(v));
  l.push(1);
  l.push(2);
  l.push(3);
  assert.deepEqual(sent, [1], 'the first at once; the next ones wait');
  await new Promise((r) => setTimeout(r, 150));
  assert.deepEqual(sent, [1, 3], 'then only the latest');
  l.push(4);
  l.stop();
  await new Promise((r) => setTimeout(r, 150));
  assert.deepEqual(sent, [1, 3], 'a value pending at stop is dropped');
});

test('a job\'s progress reaches the coordinator\'s slot line; from a hostile worker only finite numbers and a plain worker name get through', async () => {
  await flush();
  const repo = makeRepo({ 'params.py': PARAMS_PY, 'evaluate.py': EVALUATE_PY, 'study.yaml': studyYaml({ experiments: 0, baseline: 1, parallel: 1 }) });
  const conn = new Redis(url, { maxRetriesPerRequest: null });
  // a worker of our own, in this process: it heartbeats like one, reports progress, and answers with a plain result
  const beat = () => conn.set(`${WORKER_KEY}fake`, JSON.stringify({ id: 'fake', host: 'h', pid: 1, slots: 1, hardware: 'cpu', active: 0, started: Date.now(), seen: Date.now() }), 'EX', 10);
  await beat();
  const fakeConn = new Redis(url, { maxRetriesPerRequest: null });
  let status: Awaited<ReturnType<typeof queueStatus>> | null = null;
  const fake = new Worker<JobData, JobResult>(QUEUE_NAME, async (job) => {
    await job.updateProgress({ step: 7, steps: 70, loss: 2.5, tasksTotal: 9, tasksDone: '\x1b[31m5', fraction: 'all', dollars: null, worker: '\x1b]0;owned\x07box', extra: '\x1b[2J'.repeat(1000) });
    await job.updateProgress({ step: 8, steps: 70, loss: 2.25, worker: 'box-2.lan' });
    status = await queueStatus(url);
    await job.updateProgress('\x1b[2J');
    await new Promise((r) => setTimeout(r, 500));
    return {
      v: 1, worker: 'box-2.lan', hardware: null, incumbent: job.data.incumbent, setupMs: 0, evalMs: 1,
      outcome: { status: 'ok', metric: 1.5, reason: null, commandMs: 1, evaluatorMs: 0, exitCode: 0, stdoutTail: '', stderrTail: '', telemetry: null },
    };
  }, { connection: fakeConn });
  try {
    const q = run(repo, { url });
    const res = await q.result;
    assert.equal(res.status, 'finished', `${res.stopReason}\n${q.reporter.lines.join('\n')}`);
    const lines = q.reporter.progressLines;
    assert.ok(lines.some((l) => /step 8\/70 loss 2\.250/.test(l) && l.includes(' on box-2.lan')), lines.join('\n'));
    assert.ok(lines.some((l) => /step 7\/70 loss 2\.500/.test(l) && l.includes('0/9 tasks')), `the numbers of the hostile report, not its strings: ${lines.join('\n')}`);
    assert.deepEqual(lines.filter((l) => /[\x00-\x08\x0b-\x1f\x7f]/.test(l) || l.includes('owned') || l.length > 300), [], 'no control character, hostile name or flood reached the line');
    // queue status lists the running job: its name (run, experiment, repeat), worker, progress
    const run0 = status!.running;
    assert.equal(run0.length, 1);
    assert.equal(run0[0]!.name, `${res.runId} #0 repeat 0`);
    assert.equal(run0[0]!.worker, 'box-2.lan');
    assert.match(queueStatusText(status!), new RegExp(`running:\\n.*\\n\\s+${res.runId} #0 repeat 0\\s+box-2\\.lan\\s+step 8/70 loss 2\\.250\\s+\\d+ s`));
  } finally {
    await fake.close();
    fakeConn.disconnect();
    await conn.del(`${WORKER_KEY}fake`);
    conn.disconnect();
    cleanup(repo);
  }
});

test('a trainer study on a worker: prepare.py builds the corpus cache there, checked against the coordinator\'s; the evaluation is the worker\'s', { timeout: 300_000 }, async (t) => {
  const why = torchMissing();
  if (why) return t.skip(why);
  await flush();
  const repo = trainerRepo();
  const caches = () => readdirSync(tmpdir()).filter((n) => n.startsWith('autoagent-worker-cache-'));
  const before = new Set(caches());
  const w = await startWorker(repo, ['--lock-ms', '60000']);
  try {
    const id = /worker (\S+) on/.exec(w.log())![1]!;
    const q = run(repo, { url });
    const res = await q.result;
    assert.equal(res.status, 'finished', `${res.stopReason}\n${q.reporter.lines.join('\n')}\n${w.log()}`);
    assert.match(w.log(), /#0 repeat 0: ok \d/);
    const db = openDb(res.dbPath);
    const evals = [...evaluationsOfRun(db, res.runId).values()].flat();
    db.close();
    assert.equal(evals.length, 1);
    const v = evals[0]!;
    assert.ok(v.metric! > 0.5 && v.metric! < 8, `val_bpb ${v.metric} is a real score below uniform (8)`);
    assert.equal(v.hardware, 'cpu');
    const tel = JSON.parse(v.telemetry!);
    assert.equal(tel.worker, id);
    assert.equal(tel.eval.status, 'ok');
    assert.ok(tel.train.steps > 0, 'training telemetry came back');
    // the training's progress streamed from the worker to the coordinator's slot line as it ran
    assert.ok(q.reporter.progressLines.some((l) => l.includes(` on ${id}`) && /step \d+ loss \d/.test(l)), q.reporter.progressLines.join('\n'));
    await audited(res.dbPath, res.runId);
  } finally {
    await stopWorker(w);
    cleanup(repo);
  }
  assert.deepEqual(caches().filter((n) => !before.has(n)), [], 'the drained worker left no corpus cache behind');
});

test('a hostile train.py on a sandboxed worker: its progress lines reach the coordinator as numbers only, at most once a second, and it cannot reach the queue', { timeout: 300_000 }, async (t) => {
  const why = torchMissing();
  if (why) return t.skip(why);
  if (!sandboxAvailable().ok) return t.skip('no bubblewrap here');
  await flush();
  const r = new Redis(url);
  await r.set('autoagent:target', 'untouched');
  // before training: 20,000 forged progress lines (escape sequences after the numbers, a number too big
  // for a double, an injected worker field), then a try at the queue's Redis, to overwrite a key and to
  // publish its own progress; then the real training
  const hostile = `import socket, sys
for i in range(20000):
    print(f"step {i} | loss 2.5\\x1b]0;owned\\x07\\x1b[2J worker=evil")
print("step 7 | loss 1e999")
sys.stdout.flush()
try:
    s = socket.create_connection(("127.0.0.1", ${port}), timeout=2)
    s.sendall(b"SET autoagent:target owned\\r\\n")
    s.close()
    print("REACHED THE QUEUE")
except OSError as e:
    print(f"no queue from the sandbox: {e}")
` + TRAINER_TRAIN_PY;
  const repo = makeRepo({ 'prepare.py': TRAINER_PREPARE_PY, 'train.py': hostile, 'corpus.txt': tinyCorpus(), 'study.yaml': tinyTrainerStudy({
    budget: '{ experiment_seconds: 3, grace_seconds: 20, evaluate_seconds: 120, experiments: 0 }',
    trainer: '{ corpus: corpus.txt, eval_tokens: 4096, device: cpu }',
  }) });
  // a real worker process, sandboxed (no --unsafe-no-sandbox)
  const w = startProc(['worker', '--queue', url, '--lock-ms', '60000'], repo);
  try {
    await until('the worker to start', () => /slot\(s\)/.test(w.log()), 90_000);
    assert.doesNotMatch(w.log(), /WITHOUT sandbox/);
    const q = run(repo, { url });
    const res = await q.result;
    assert.equal(res.status, 'finished', `${res.stopReason}\n${q.reporter.lines.join('\n')}\n${w.log()}`);
    const db = openDb(res.dbPath);
    const v = [...evaluationsOfRun(db, res.runId).values()].flat()[0]!;
    const seconds = (Date.parse(v.created_at) - Date.parse(getRun(db, res.runId)!.created_at)) / 1000;
    db.close();
    assert.match(v.stdout_tail, /no queue from the sandbox/, 'the candidate ran, and found no network');
    assert.doesNotMatch(v.stdout_tail, /REACHED THE QUEUE/);
    assert.equal(await r.get('autoagent:target'), 'untouched');
    const lines = q.reporter.progressLines;
    const id = /worker (\S+) on/.exec(w.log())![1]!;
    assert.ok(lines.some((l) => l.includes(` on ${id}`) && /step \d+ loss 2\.500/.test(l)), lines.join('\n'));
    assert.deepEqual(lines.filter((l) => /[\x00-\x1f\x7f]|owned|evil|Infinity|NaN/.test(l)), [], 'numbers only reach the line');
    assert.ok(lines.every((l) => !l.includes(' on ') || l.includes(` on ${id}`)), 'the worker named is the worker');
    // 20,000 lines at once: the worker sent at most one report a second (the slot line is also redrawn once a second)
    assert.ok(lines.length <= 2 * seconds + 10, `${lines.length} slot lines in ${seconds} s`);
  } finally {
    w.child.kill('SIGTERM');
    await w.exited;
    r.disconnect();
    cleanup(repo);
  }
});

test('a trainer job whose corpus cache comes out different on the worker is refused; one whose cache matches is evaluated', { timeout: 300_000 }, async (t) => {
  const why = torchMissing();
  if (why) return t.skip(why);
  const repo = trainerRepo();
  const cacheDir = mkdtempSync(join(tmpdir(), 'autoagent-test-cache-'));
  try {
    const study = StudySchema.parse(parseYaml(readFileSync(join(repo, 'study.yaml'), 'utf8')));
    // the coordinator's side: its cache, hashed into the manifest as a run does
    const prepared = await new TrainerKind(study).prepare(study, { repo, studyDir: '', studyPath: join(repo, 'study.yaml'), stateDir: join(repo, '.autoagent') });
    const cache = prepared.lockedExternal[0]!;
    const manifest = buildManifest(repo, ['prepare.py', 'corpus.txt'], [cache]);
    const commit = sh(repo, 'git', ['rev-parse', 'HEAD']).trim();
    sh(repo, 'git', ['update-ref', `refs/autoagent-bundle/${commit}`, commit]);
    sh(repo, 'git', ['bundle', 'create', '-q', join(cacheDir, 'b.bundle'), `refs/autoagent-bundle/${commit}`]);
    const text = JSON.stringify(jobStudy(study));
    const job = (external: Record<string, string>): JobData => ({
      v: 1, run: 'r', study: text, study_hash: sha256(text), study_dir: '', commit, bundle: readFileSync(join(cacheDir, 'b.bundle')).toString('base64'),
      manifest: { files: manifest.files, external }, trainer_cache: cache, base_tracked: ['prepare.py', 'train.py', 'corpus.txt', 'study.yaml'], hidden: [],
      seq: 0, seed: 1, repeat: 0, stage: 'baseline', incumbent: commit, unsafe_no_sandbox: true,
    });
    const trainBin = Object.keys(manifest.external).find((p) => p.endsWith('train/train.bin'))!;
    const bad = await evaluateJob(job({ ...manifest.external, [trainBin]: sha256('another corpus') }), { unsafeNoSandbox: true, worker: 'w', cacheDir });
    assert.match(bad.refused ?? '', /^the corpus cache prepare\.py built on this worker differs from the coordinator's \(train\/train\.bin: sha256 /);
    assert.equal(bad.outcome, undefined);
    const ok = await evaluateJob(job(manifest.external), { unsafeNoSandbox: true, worker: 'w', cacheDir });
    assert.equal(ok.refused, undefined, ok.refused);
    assert.equal(ok.outcome?.status, 'ok', ok.outcome?.reason ?? '');
    assert.equal(ok.hardware, 'cpu');
    // kept for the next job, under a name from its content, not the coordinator's path
    assert.deepEqual(readdirSync(cacheDir).filter((n) => n.startsWith('corpus-')).length, 1);
  } finally {
    cleanup(repo);
    rmSync(cacheDir, { recursive: true, force: true });
  }
});

test('a bundle gone from Redis before a worker takes its job (expired, lost): the coordinator stores it again and the run completes, each evaluation once', async () => {
  await flush();
  const repo = makeRepo({ 'params.py': PARAMS_PY, 'evaluate.py': EVALUATE_PY, 'study.yaml': studyYaml({ experiments: 0, baseline: 1, parallel: 1 }) });
  const r = new Redis(url);
  let w: Proc | null = null;
  try {
    const q = run(repo, { url, waitSeconds: 60 });
    // no worker yet: the job waits; its bundle is deleted from Redis meanwhile
    await until('the job to wait', async () => (await r.keys(`${BLOB_KEY}*`)).length === 1 && q.reporter.lines.some((l) => /no worker is connected/.test(l)));
    await r.del(...(await r.keys(`${BLOB_KEY}*`)));
    w = await startWorker(repo);
    const res = await q.result;
    assert.equal(res.status, 'finished', `${res.stopReason}\n${q.reporter.lines.join('\n')}\n${w.log()}`);
    assert.ok(q.reporter.lines.some((l) => /its bundle was gone from the queue when a worker took it: stored and queued again/.test(l)), q.reporter.lines.join('\n'));
    assert.match(w.log(), /is not on the queue/);
    assert.equal(ledger(res.dbPath, res.runId)[0]!.evals.length, 1);
    await audited(res.dbPath, res.runId);
  } finally {
    if (w) await stopWorker(w);
    r.disconnect();
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

test('a job whose locked files differ from the run\'s manifest, or whose bundle is not the one its sha256 names, is refused by the worker', async () => {
  const repo = makeRepo({ 'params.py': PARAMS_PY, 'evaluate.py': EVALUATE_PY, 'study.yaml': studyYaml() });
  try {
    const commit = sh(repo, 'git', ['rev-parse', 'HEAD']).trim();
    sh(repo, 'git', ['update-ref', `refs/autoagent-bundle/${commit}`, commit]);
    sh(repo, 'git', ['bundle', 'create', '-q', join(repo, 'b.bundle'), `refs/autoagent-bundle/${commit}`]);
    const study = JSON.stringify(jobStudy(StudySchema.parse({ name: 'q', kind: 'command', editable: ['params.py'], locked: ['evaluate.py'], command: 'true', evaluate: 'python3 evaluate.py', metric: { name: 'loss', direction: 'minimize' } })));
    const job = (hash: string): JobData => ({
      v: 1, run: 'r', study, study_hash: sha256(study), study_dir: '', commit, bundle: readFileSync(join(repo, 'b.bundle')).toString('base64'),
      manifest: { files: { 'evaluate.py': hash }, external: {} }, base_tracked: ['params.py', 'evaluate.py', 'study.yaml'], hidden: [],
      seq: 1, seed: 1001, repeat: 0, stage: 'screen', incumbent: commit, unsafe_no_sandbox: true,
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
    // the bundle by its sha256 (as the coordinator sends it): the bytes read are checked against it
    const bytes = readFileSync(join(repo, 'b.bundle'));
    const { bundle: _inline, ...rest } = job(sha256File(join(repo, 'evaluate.py')));
    const byHash = { ...rest, bundle_sha256: sha256(bytes) };
    const stored = await evaluateJob(byHash, { unsafeNoSandbox: true, worker: 'w', blob: async (sha) => (sha === sha256(bytes) ? bytes : null) });
    assert.equal(stored.outcome?.metric, 13, stored.refused ?? stored.outcome?.reason ?? '');
    // another bundle (a commit with other locked files) stored under that hash: refused, not evaluated
    writeFileSync(join(repo, 'evaluate.py'), EVALUATE_PY.replace('** 2}', '** 2 - 100}'));
    sh(repo, 'git', ['-c', 'user.name=t', '-c', 'user.email=t@t', 'commit', '-qam', 'a swapped scorer']);
    const other = sh(repo, 'git', ['rev-parse', 'HEAD']).trim();
    sh(repo, 'git', ['update-ref', `refs/autoagent-bundle/${commit}`, other]);
    sh(repo, 'git', ['bundle', 'create', '-q', join(repo, 'swapped.bundle'), `refs/autoagent-bundle/${commit}`]);
    const swapped = await evaluateJob(byHash, { unsafeNoSandbox: true, worker: 'w', blob: async () => readFileSync(join(repo, 'swapped.bundle')) });
    assert.match(swapped.refused ?? '', /^the bundle on the queue does not match its sha256/);
    assert.equal(swapped.outcome, undefined);
    // none under that hash (expired, or Redis lost it): the job fails (the coordinator queues it again), nothing is evaluated
    await assert.rejects(evaluateJob(byHash, { unsafeNoSandbox: true, worker: 'w', blob: async () => null }), /bundle [0-9a-f]{12} is not on the queue/);
    await assert.rejects(evaluateJob(byHash, { unsafeNoSandbox: true, worker: 'w' }), /is not on the queue/);
  } finally {
    cleanup(repo);
  }
});

test('dead workers\' folders: a candidate in the real sandbox cannot plant one in the host\'s temp folder, and a planted symlink is removed as a link, never followed', async () => {
  const tmp = mkdtempSync(join(tmpdir(), 'aa-sweep-'));
  const precious = mkdtempSync(join(tmpdir(), 'aa-precious-'));
  writeFileSync(join(precious, 'keep.txt'), 'mine');
  const host = hostname();
  const planted = [`autoagent-worker-${host}-999999-evil`, `autoagent-worker-cache-${host}-999998-evil`];
  // the candidate's command: plants a dead-worker symlink to the precious folder and a folder, in /tmp and next to its checkout
  const hostile = `python3 -c "import os; [os.symlink('${precious}', d + '/${planted[0]}') or os.makedirs(d + '/${planted[1]}') for d in ('/tmp', os.path.dirname(os.getcwd()))]"`;
  const repo = makeRepo({ 'params.py': PARAMS_PY, 'evaluate.py': EVALUATE_PY, 'study.yaml': studyYaml() });
  const old = process.env.TMPDIR;
  try {
    const commit = sh(repo, 'git', ['rev-parse', 'HEAD']).trim();
    sh(repo, 'git', ['update-ref', `refs/autoagent-bundle/${commit}`, commit]);
    sh(repo, 'git', ['bundle', 'create', '-q', join(repo, 'b.bundle'), `refs/autoagent-bundle/${commit}`]);
    const study = JSON.stringify(jobStudy(StudySchema.parse({ name: 'q', kind: 'command', editable: ['params.py'], locked: ['evaluate.py'], command: hostile, evaluate: 'python3 evaluate.py', metric: { name: 'loss', direction: 'minimize' } })));
    const job: JobData = {
      v: 1, run: 'r', study, study_hash: sha256(study), study_dir: '', commit, bundle: readFileSync(join(repo, 'b.bundle')).toString('base64'),
      manifest: { files: { 'evaluate.py': sha256File(join(repo, 'evaluate.py')) }, external: {} }, base_tracked: ['params.py', 'evaluate.py', 'study.yaml'], hidden: [],
      seq: 1, seed: 1001, repeat: 0, stage: 'screen', incumbent: commit, unsafe_no_sandbox: false,
    };
    process.env.TMPDIR = tmp;
    const r = await evaluateJob(job, { unsafeNoSandbox: false, worker: 'w' });
    assert.equal(r.refused, undefined);
    // the command ran (in bubblewrap: its /tmp is its own) and the job folder is gone with whatever it planted there
    assert.equal(r.outcome?.status, 'ok', `${r.outcome?.reason ?? ''} ${r.outcome?.stderrTail ?? ''}`);
    assert.deepEqual(readdirSync(tmp).filter((n) => n.startsWith('autoagent-')), [], 'nothing planted in the host temp folder');
    // the same names planted on the host (another local user): the sweep unlinks the symlink and keeps its target
    symlinkSync(precious, join(tmp, planted[0]!));
    mkdirSync(join(tmp, planted[1]!));
    assert.deepEqual(sweepDeadWorkerFolders(tmp, host).sort(), [...planted].sort());
    assert.deepEqual(readdirSync(tmp).filter((n) => n.startsWith('autoagent-')), []);
    assert.equal(readFileSync(join(precious, 'keep.txt'), 'utf8'), 'mine', 'the link\'s target is untouched');
  } finally {
    if (old === undefined) delete process.env.TMPDIR;
    else process.env.TMPDIR = old;
    rmSync(tmp, { recursive: true, force: true });
    rmSync(precious, { recursive: true, force: true });
    cleanup(repo);
  }
});
