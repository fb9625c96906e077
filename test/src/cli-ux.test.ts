// Issue 15, items 4, 5, 7, 8: live progress (per slot, ETAs, plain lines off a terminal, colours and
// NO_COLOR, one number format per metric), a baseline of 0, misspelled study fields, naming / tagging /
// deleting / pruning runs, no branch for runs that hold nothing, and the elapsed time of a killed run.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { startRun } from '../../src/loop.ts';
import { MemoryReporter, StreamReporter } from '../../src/report.ts';
import { parseStudy } from '../../src/study.ts';
import { auditRun } from '../../src/audit.ts';
import { ledgerText, statusData } from '../../src/views.ts';
import { slotLine, evalEtaMs, runEtaMs } from '../../src/progress.ts';
import { metricFormat } from '../../base/format.ts';
import { trainProgress } from '../../src/kinds/trainer.ts';
import type { EvalOutcome, EvalProgress, EvalRequest, KindAdapter } from '../../src/kinds/types.ts';
import { openDb, getRun, latestRun, listExperiments, runAnnotations } from '../../traces/index.ts';
import type { Proposer } from '../../meta-agent/index.ts';
import { FakeKind } from '../helpers/fake-kind.ts';
import { makeRepo, cleanup, sh, PARAMS_PY, EVALUATE_PY, studyYaml } from '../helpers/repo.ts';
import { cli } from '../helpers/cli.ts';

const BIN = resolve(import.meta.dirname, '../../bin/autoagent.js');

function fakeStudy(extra = ''): string {
  return `name: ux
kind: command
editable: [params.py]
command: "true"
evaluate: "true"
metric: { name: loss, direction: minimize }
budget: { experiment_seconds: 20, experiments: 2 }
acceptance: { baseline_repeats: 2, confirm_repeats: 0 }
${extra}`;
}

/** moves X by +0.5 each call */
const stepper = (): Proposer => {
  let i = 0;
  return {
    name: 'stepper',
    propose: async (ctx) => {
      i++;
      const src = ctx.files['params.py']!;
      return { hypothesis: `X + ${i / 2}`, edits: [{ path: 'params.py', content: src.replace(/^X = \S+/m, `X = ${1 + i / 2}`) }] };
    },
  };
};

/** a kind that reports task progress as a harness does, then scores 0 */
class ProgressKind implements KindAdapter {
  readonly kind = 'command' as const;
  readonly selfReported = false;
  constructor(private readonly metric: number | null = 0, private readonly stepMs = 30) {}
  async prepare() {
    return { lockedExternal: [], environment: {} };
  }
  async evaluate(req: EvalRequest): Promise<EvalOutcome> {
    for (let i = 0; i <= 4; i++) {
      req.onProgress?.({ tasksDone: i, tasksTotal: 4, tokens: 1000 * i, dollars: 0.001 * i });
      await new Promise((r) => setTimeout(r, this.stepMs));
    }
    if (this.metric === null) return { status: 'crash', metric: null, reason: 'boom', commandMs: 1, evaluatorMs: 0, exitCode: 1, stdoutTail: '', stderrTail: '', telemetry: null };
    return { status: 'ok', metric: this.metric, reason: null, commandMs: 4 * this.stepMs, evaluatorMs: 0, exitCode: 0, stdoutTail: '', stderrTail: '', telemetry: null };
  }
}

// ---------------------------------------------------------------------------------------------
// 5: a baseline of 0

test('a baseline metric of 0 is a baseline: the progress line says best 0 against it, never "no baseline yet"', async () => {
  const repo = makeRepo({ 'params.py': PARAMS_PY, 'study.yaml': fakeStudy() });
  try {
    const reporter = new MemoryReporter();
    const res = await startRun(join(repo, 'study.yaml'), { overrides: {}, unsafeNoSandbox: true, reporter, kind: new FakeKind({ pureNoise: true }), proposer: stepper() });
    assert.equal(res.status, 'finished', res.stopReason ?? '');
    const decided = reporter.lines.filter((l) => /^\[exp \d\/2\] (discarded|kept)/.test(l));
    assert.equal(decided.length, 2, reporter.lines.join('\n'));
    for (const l of decided) {
      assert.doesNotMatch(l, /no baseline yet/);
      assert.match(l, /best 0 \(±0 vs baseline, 0 kept\)/, l);
    }
  } finally {
    cleanup(repo);
  }
});

// ---------------------------------------------------------------------------------------------
// 7: misspelled fields

test('a misspelled required field is named as unknown with the near one, and points to `npx autoagent schema`', async () => {
  const bad = (yaml: string) => {
    try {
      parseStudy(yaml, 'study.yaml');
    } catch (e) {
      return (e as Error).message;
    }
    assert.fail('parsed');
  };
  const m1 = bad(studyYaml().replace('editable:', 'editabel:'));
  assert.equal(m1, 'study.yaml: unknown field `editabel` (did you mean `editable`?); `npx autoagent schema` prints every field');
  const m2 = bad(studyYaml().replace('experiments: 8', 'experimnts: 8'));
  assert.match(m2, /unknown field `budget\.experimnts` \(did you mean `budget\.experiments`\?\)/);
  const m3 = bad(studyYaml() + 'zzqqxx: 1\n');
  assert.match(m3, /unknown field `zzqqxx`; `npx autoagent schema`/);
  assert.doesNotMatch(m3, /did you mean/);
  for (const m of [m1, m2, m3, bad('- a\n')]) assert.doesNotMatch(m, /schema\/study\.schema\.json/);
  // through the CLI: one line, exit 2
  const repo = makeRepo({ 'params.py': PARAMS_PY, 'evaluate.py': EVALUATE_PY, 'study.yaml': studyYaml().replace('editable:', 'editabel:') });
  try {
    const r = await cli(['run', 'study.yaml', '--unsafe-no-sandbox'], repo);
    assert.equal(r.code, 2);
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
    assert.match(r.stderr, /unknown field `editabel` \(did you mean `editable`\?\)/);
  } finally {
    cleanup(repo);
  }
});

// ---------------------------------------------------------------------------------------------
// 4: progress

test('the TTY reporter keeps one live line per busy slot, redrawn in place at a few Hz; events clear it first', async () => {
  const out: string[] = [];
  const r = new StreamReporter((t) => void out.push(t), true, { env: {}, redrawMs: 100 });
  r.progress(0, 'slot A');
  r.progress(1, 'slot B');
  // 200 updates in a burst: at most a couple of redraws, not 200
  for (let i = 0; i < 200; i++) r.progress(0, `slot A ${i}`);
  await new Promise((res) => setTimeout(res, 250));
  const draws = out.filter((t) => t.includes('slot A'));
  assert.ok(draws.length <= 4, `${draws.length} redraws for a burst of 200 updates`);
  assert.ok(draws[draws.length - 1]!.includes('slot A 199') && draws[draws.length - 1]!.includes('slot B'), JSON.stringify(draws));
  r.progress(0, () => 'slot A fresh');
  await new Promise((res) => setTimeout(res, 150));
  const last = out[out.length - 1]!;
  // the two-line block erased (cursor up one line) and written again with the latest text
  assert.match(last, /^\r\x1b\[2K\x1b\[1A\x1b\[2K/);
  assert.ok(last.includes('slot A fresh') && last.includes('slot B'), JSON.stringify(last));
  out.length = 0;
  r.event('[exp 1/2] kept     loss=1', 'kept');
  assert.match(out[0]!, /^\r\x1b\[2K\x1b\[1A\x1b\[2K/, 'the block is erased before the event line');
  assert.ok(out.join('').includes('\x1b[32m[exp 1/2] kept'), 'kept is green on a terminal');
  r.progress(0, null);
  r.progress(1, null);
  await new Promise((res) => setTimeout(res, 150));
});

test('colours only on a terminal and never with NO_COLOR; crash red, discarded yellow', () => {
  const run = (tty: boolean, env: NodeJS.ProcessEnv) => {
    const out: string[] = [];
    const r = new StreamReporter((t) => void out.push(t), tty, { env });
    r.event('a', 'kept');
    r.event('b', 'discarded');
    r.event('c', 'crash');
    return out.join('');
  };
  const coloured = run(true, {});
  assert.ok(coloured.includes('\x1b[32ma') && coloured.includes('\x1b[33mb') && coloured.includes('\x1b[31mc'), JSON.stringify(coloured));
  assert.equal(run(true, { NO_COLOR: '1' }), 'a\nb\nc\n');
  assert.equal(run(false, {}), 'a\nb\nc\n');
});

test('not on a terminal, a long evaluation prints plain progress lines every interval (no escape codes)', async () => {
  const repo = makeRepo({ 'params.py': PARAMS_PY, 'study.yaml': fakeStudy() });
  try {
    const out: string[] = [];
    const reporter = new StreamReporter((t) => void out.push(t), false, { plainIntervalMs: 150 });
    const res = await startRun(join(repo, 'study.yaml'), { overrides: { experiments: 0 }, unsafeNoSandbox: true, reporter, kind: new FakeKind({ delayMs: 800 }) });
    assert.equal(res.status, 'finished');
    const text = out.join('');
    assert.doesNotMatch(text, /\x1b\[/, 'no escape codes in a log');
    const progress = text.split('\n').filter((l) => l.startsWith('… [baseline'));
    assert.ok(progress.length >= 4, `plain progress lines during two 0.8 s evaluations: ${progress.length}\n${text}`);
    assert.ok(progress.some((l) => /\[baseline 1\/2\] · \d/.test(l)), progress.join('\n'));
    // the second repeat knows how long the first took: an ETA for the evaluation and the run
    assert.ok(progress.some((l) => /\[baseline 2\/2\] · [^·]+, ~[^·]+ left · run ~[^·]+ left$/.test(l)), progress.join('\n'));
    // the lines are fresh when printed: the elapsed time grows
    const firsts = progress.filter((l) => l.includes('[baseline 1/2]'));
    assert.notEqual(firsts[0], firsts[firsts.length - 1]);
  } finally {
    cleanup(repo);
  }
});

test('a kind\'s progress reaches the slot line: tasks done, tokens and dollars so far', async () => {
  const repo = makeRepo({ 'params.py': PARAMS_PY, 'study.yaml': fakeStudy() });
  try {
    const reporter = new MemoryReporter();
    await startRun(join(repo, 'study.yaml'), { overrides: { experiments: 0, parallel: 2 }, unsafeNoSandbox: true, reporter, kind: new ProgressKind(1) });
    const lines = reporter.progressLines;
    assert.ok(lines.some((l) => /^[01]: \[baseline [12]\/2\] slot [12] · 3\/4 tasks · 3\.0k tokens · \$0\.0030 · /.test(l)), lines.join('\n'));
    // both slots were busy at once, each with its own line
    assert.ok(lines.some((l) => l.startsWith('0: ')) && lines.some((l) => l.startsWith('1: ')));
  } finally {
    cleanup(repo);
  }
});

test('slot lines and ETAs: from the evaluation\'s own rate, else the run\'s earlier evaluations; the run from its experiments / slots', () => {
  const now = 100_000;
  const s = { label: '[exp 3/8]', slot: 2, started: now - 10_000, progress: { tasksDone: 12, tasksTotal: 48, tokens: 41_200, dollars: 0.0123 } as EvalProgress, typicalMs: null };
  assert.equal(evalEtaMs(s, now), 30_000);
  assert.match(slotLine(s, now, 125_000), /^\[exp 3\/8\] slot 2 · 12\/48 tasks · 41\.2k tokens · \$0\.0123 · 10\.0 s, ~30\.0 s left · run ~2m05s left$/);
  assert.match(slotLine(s, now), /12\/48 tasks · 41\.2k tokens · \$0\.0123 · 10\.0 s, ~30\.0 s left$/);
  // no progress yet: from the earlier evaluations' mean
  assert.equal(evalEtaMs({ started: now - 4000, progress: {}, typicalMs: 10_000 }, now), 6000);
  assert.equal(evalEtaMs({ started: now - 4000, progress: {}, typicalMs: null }, now), null);
  // a trainer: step and loss
  assert.match(slotLine({ label: '[exp 1/2]', slot: null, started: now - 5000, progress: { step: 50, steps: 200, loss: 3.21234 }, typicalMs: null }, now), /^\[exp 1\/2\] · step 50\/200 loss 3\.212 · /);
  // the run: 6 experiments left of 20 s each on 2 slots, never past the wall budget
  assert.equal(runEtaMs({ experimentsLeft: 6, experimentMs: [10_000, 30_000], baselineLeft: 0, evaluationMs: [5000], slots: 2, wallLeftMs: 1e9 }), 60_000);
  assert.equal(runEtaMs({ experimentsLeft: 6, experimentMs: [10_000, 30_000], baselineLeft: 0, evaluationMs: [5000], slots: 2, wallLeftMs: 7000 }), 7000);
  assert.equal(runEtaMs({ experimentsLeft: 4, experimentMs: [], baselineLeft: 2, evaluationMs: [3000], slots: 1, wallLeftMs: 1e9 }), 18_000);
  assert.equal(runEtaMs({ experimentsLeft: 4, experimentMs: [], baselineLeft: 3, evaluationMs: [], slots: 1, wallLeftMs: 1e9 }), null);
});

test('the trainer\'s step and loss come from its `step N | loss X` lines, joined across chunks', () => {
  const seen: EvalProgress[] = [];
  const echoed: string[] = [];
  const on = trainProgress({ onProgress: (p) => void seen.push(p), onOutput: (_s, c) => void echoed.push(c) }, 200, 60)!;
  on('stdout', 'device cpu | torch 2\nstep 1');
  assert.equal(seen.length, 0, 'half a line is not a step yet');
  on('stdout', '0 | loss 4.125 | lr 1e-3 | 3.0k tok/s\nstep 20 | lo');
  on('stderr', 'step 99 | loss 0.1\n');
  on('stdout', 'ss 3.5 | lr 1e-3\n');
  assert.deepEqual(seen.map((p) => [p.step, p.steps, p.loss, p.fraction]), [[10, 200, 4.125, 0.05], [20, 200, 3.5, 0.1]]);
  assert.equal(echoed.length, 4, 'the output still reaches the original listener');
});

test('one number format per metric: decimals from the baseline noise, in the progress lines and in `log`', async () => {
  const f = metricFormat(0.0123);
  assert.equal(f(3.5983016780536725), '3.598');
  assert.equal(f(-0.074488), '-0.074');
  assert.equal(f(3.235), '3.235');
  assert.equal(f(-0.0001), '0.000');
  assert.equal(metricFormat(0)(3.5983016780536725), '3.5983', 'no noise: five significant digits');
  const repo = makeRepo({ 'params.py': PARAMS_PY, 'study.yaml': fakeStudy('').replace('baseline_repeats: 2', 'baseline_repeats: 3') });
  try {
    const reporter = new MemoryReporter();
    const res = await startRun(join(repo, 'study.yaml'), { overrides: {}, unsafeNoSandbox: true, reporter, kind: new FakeKind({ noise: 0.05 }), proposer: stepper() });
    const db = openDb(res.dbPath);
    const run = getRun(db, res.runId)!;
    const after = reporter.lines.slice(reporter.lines.findIndex((l) => l.startsWith('baseline loss =')));
    const numbers = after.flatMap((l) => [...l.matchAll(/loss[ =]+(-?\d+\.\d+)/g)].map((m) => m[1]!));
    assert.ok(numbers.length >= 3, after.join('\n'));
    const decimals = new Set(numbers.map((x) => x.split('.')[1]!.length));
    assert.equal(decimals.size, 1, `one number of decimals: ${numbers.join(', ')}`);
    const d = [...decimals][0]!;
    const log = ledgerText(db, run);
    const cells = [...log.matchAll(/^\S+\s+\S*\s+(-?\d+\.\d+)\s/gm)].map((m) => m[1]!);
    assert.ok(cells.length >= 3, log);
    for (const c of cells) assert.equal(c.split('.')[1]!.length, d, `${c} in\n${log}`);
    db.close();
  } finally {
    cleanup(repo);
  }
});

// ---------------------------------------------------------------------------------------------
// 8: runs

test('run --name --tag labels a run; runs rename / tag / note change it; runs lists it', async () => {
  const repo = makeRepo({ 'params.py': PARAMS_PY, 'evaluate.py': EVALUATE_PY, 'study.yaml': studyYaml() });
  try {
    const r = await cli(['run', 'study.yaml', '--experiments', '1', '--name', 'first try', '--tag', 'lr', '--tag', 'sweep'], repo);
    assert.equal(r.code, 0, r.stderr);
    const db = openDb(join(repo, '.autoagent', 'autoagent.db'));
    const id = latestRun(db)!.id;
    assert.deepEqual(runAnnotations(getRun(db, id)!), { label: 'first try', tags: ['lr', 'sweep'], notes: '' });
    assert.match((await cli(['runs'], repo)).stdout, new RegExp(`${id}\\s+first try\\s+lr,sweep\\s+finished`));
    assert.equal((await cli(['runs', 'rename', id.slice(0, 12), 'better name'], repo)).code, 0);
    assert.equal((await cli(['runs', 'tag', id, 'keep', 'lr'], repo)).code, 0);
    assert.equal((await cli(['runs', 'tag', id, 'sweep', '--remove'], repo)).code, 0);
    const n = await cli(['runs', 'note', id, 'the lr knob mattered', '--json'], repo);
    assert.deepEqual(JSON.parse(n.stdout), { id, label: 'better name', tags: ['lr', 'keep'], notes: 'the lr knob mattered' });
    const long = await cli(['runs', 'rename', id, 'x'.repeat(300)], repo);
    assert.equal(long.code, 2);
    assert.match(long.stderr, /label: at most 200 characters/);
    const json = JSON.parse((await cli(['runs', 'list', '--json'], repo)).stdout);
    assert.equal(json[0].label, 'better name');
    db.close();
  } finally {
    cleanup(repo);
  }
});

test('a run that ran no experiment, or failed at its baseline, leaves no branch (audit passes); runs prune removes such runs, rm one run', async () => {
  const repo = makeRepo({ 'params.py': PARAMS_PY, 'study.yaml': fakeStudy() });
  const o = (kind: KindAdapter, experiments?: number) => ({ overrides: experiments === undefined ? {} : { experiments }, unsafeNoSandbox: true, reporter: new MemoryReporter(), kind, proposer: stepper() });
  try {
    const zero = await startRun(join(repo, 'study.yaml'), o(new FakeKind(), 0));
    const failed = await startRun(join(repo, 'study.yaml'), o(new ProgressKind(null, 1)));
    assert.equal(failed.status, 'failed');
    const full = await startRun(join(repo, 'study.yaml'), o(new FakeKind({ noise: 0.01 })));
    assert.equal(full.status, 'finished');
    const db = openDb(zero.dbPath);
    const branch = (id: string) => sh(repo, 'git', ['branch', '--list', `autoagent/${id}`]).trim();
    assert.equal(branch(zero.runId), '', 'no branch for a baseline-only run');
    assert.equal(branch(failed.runId), '', 'no branch for a run whose baseline failed');
    assert.notEqual(branch(full.runId), '');
    const audit = await auditRun(db, getRun(db, zero.runId)!, { rescore: false });
    assert.ok(audit.ok, audit.problems.join('\n'));
    // pinned candidate refs of the full run
    assert.ok(sh(repo, 'git', ['for-each-ref', `refs/autoagent/${full.runId}/`]).trim().length > 0);

    // prune: a dry run by default, then --yes
    const dry = await cli(['runs', 'prune'], repo);
    assert.equal(dry.code, 0);
    assert.match(dry.stdout, /would delete 2 run\(s\)/);
    assert.ok(dry.stdout.includes(zero.runId) && dry.stdout.includes(failed.runId) && !dry.stdout.includes(full.runId), dry.stdout);
    assert.equal(listExperiments(db, zero.runId).length, 1, 'a dry run deletes nothing');
    const done = await cli(['runs', 'prune', '--yes'], repo);
    assert.equal(done.code, 0, done.stderr);
    assert.equal(getRun(db, zero.runId), undefined);
    assert.equal(getRun(db, failed.runId), undefined);
    assert.equal(listExperiments(db, zero.runId).length, 0);
    assert.ok(getRun(db, full.runId));

    // rm: refuses without --yes, and a running run
    const no = await cli(['runs', 'rm', full.runId], repo);
    assert.equal(no.code, 2);
    assert.match(no.stderr, /pass --yes/);
    assert.ok(getRun(db, full.runId));
    db.prepare("UPDATE runs SET status = 'running', owner_pid = ? WHERE id = ?").run(process.pid, full.runId);
    const busy = await cli(['runs', 'rm', full.runId, '--yes'], repo);
    assert.equal(busy.code, 1);
    assert.match(busy.stderr, /is running/);
    db.prepare("UPDATE runs SET status = 'finished', owner_pid = NULL WHERE id = ?").run(full.runId);
    const rm = await cli(['runs', 'rm', full.runId, '--yes'], repo);
    assert.equal(rm.code, 0, rm.stderr);
    assert.match(rm.stdout, /deleted run .*branch autoagent\//);
    assert.equal(getRun(db, full.runId), undefined);
    assert.equal(branch(full.runId), '');
    assert.equal(sh(repo, 'git', ['for-each-ref', `refs/autoagent/${full.runId}/`]).trim(), '');
    assert.equal((db.prepare('SELECT count(*) n FROM evaluations').get() as { n: number }).n, 0);
    db.close();
  } finally {
    cleanup(repo);
  }
});

test('a run killed with -9 mid-evaluation keeps the elapsed time it worked (not 0 ms)', async () => {
  const yaml = studyYaml().replace(/^command: .*$/m, 'command: sleep 30');
  const repo = makeRepo({ 'params.py': PARAMS_PY, 'evaluate.py': EVALUATE_PY, 'study.yaml': yaml });
  const dbPath = join(repo, '.autoagent', 'autoagent.db');
  try {
    const child = spawn(process.execPath, [BIN, 'run', 'study.yaml', '--unsafe-no-sandbox'], { cwd: repo, stdio: 'ignore', detached: true });
    const exited = new Promise((r) => child.once('exit', r));
    const deadline = Date.now() + 30_000;
    while (Date.now() < deadline && !existsSync(dbPath)) await new Promise((r) => setTimeout(r, 100));
    await new Promise((r) => setTimeout(r, 7000));
    process.kill(-child.pid!, 'SIGKILL');
    await exited;
    const db = openDb(dbPath);
    const row = statusData(db)[0]!;
    assert.equal(row.status, 'interrupted');
    assert.ok(row.elapsed_ms >= 4000, `elapsed ${row.elapsed_ms} ms after ~7 s of work`);
    db.close();
  } finally {
    cleanup(repo);
  }
});

