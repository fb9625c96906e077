import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { writeFileSync, readdirSync, existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { openDb, listExperiments, evaluationsOf, getRun, latestRun } from '../../traces/index.ts';
import { makeRepo, cleanup, sh, PARAMS_PY, EVALUATE_PY, studyYaml } from '../helpers/repo.ts';
import { cli } from '../helpers/cli.ts';

const BIN = resolve(import.meta.dirname, '../../bin/autoagent.js');

const BAD_STUDIES: Array<[string, string, RegExp]> = [
  ['missing name', studyYaml().replace(/^name: demo\n/m, ''), /field `name`: expected string/],
  ['bad name', studyYaml().replace('name: demo', 'name: "my study!"'), /field `name`: a name of letters/],
  ['bad kind', studyYaml().replace('kind: command', 'kind: docker'), /field `kind`: one of "command", "trainer", "harness"/],
  ['editable not a list', studyYaml().replace('editable: [params.py]', 'editable: params.py'), /field `editable`: expected array/],
  ['editable empty', studyYaml().replace('editable: [params.py]', 'editable: []'), /field `editable`: at least one editable glob/],
  ['locked not a list', studyYaml().replace('locked: [evaluate.py]', 'locked: 3'), /field `locked`: expected array/],
  ['no command', studyYaml().replace(/^command: .*\n/m, ''), /field `command`: a command to run/],
  ['no evaluate', studyYaml().replace(/^evaluate: .*\n/m, ''), /field `evaluate`: a locked evaluator command/],
  ['bad direction', studyYaml().replace('direction: minimize', 'direction: lower'), /field `metric.direction`: one of "minimize", "maximize"/],
  ['pattern without group', studyYaml().replace('direction: minimize }', "direction: minimize, from: output, pattern: 'loss' }"), /field `metric.pattern`: a regex with one capture group/],
  ['bad regex', studyYaml().replace('direction: minimize }', "direction: minimize, from: output, pattern: '(' }"), /field `metric.pattern`: a valid regex/],
  ['negative budget', studyYaml().replace('experiments: 8', 'experiments: -1'), /field `budget.experiments`: .*>=0/],
  ['zero seconds', studyYaml().replace('experiment_seconds: 20', 'experiment_seconds: 0'), /field `budget.experiment_seconds`: .*>0/],
  ['unknown proposer', studyYaml() + 'proposer: { type: genius }\n', /field `proposer.type`: one of "search", "random"/],
  ['repeats zero', studyYaml().replace('baseline_repeats: 3', 'baseline_repeats: 0'), /field `acceptance.baseline_repeats`: .*>=1/],
  ['typo field', studyYaml() + 'budgte: {}\n', /unknown field `budgte`/],
  ['not yaml', 'name: [demo\n', /not valid YAML/],
  ['not a mapping', '- a\n- b\n', /expected a YAML mapping/],
  ['glob matches nothing', studyYaml().replace('locked: [evaluate.py]', 'locked: [evaluat.py]'), /field `locked`: glob 'evaluat.py' matches no file/],
  ['nothing editable', studyYaml().replace('editable: [params.py]', 'editable: [nope/*.py]'), /field `editable`: no committed file matches/],
];

test('malformed study files end in one line naming the file and the field, exit code 2', async () => {
  const repo = makeRepo({ 'params.py': PARAMS_PY, 'evaluate.py': EVALUATE_PY, 'study.yaml': studyYaml() });
  try {
    for (const [label, yaml, pattern] of BAD_STUDIES) {
      writeFileSync(join(repo, 'bad.yaml'), yaml);
      const r = await cli(['run', join(repo, 'bad.yaml'), '--unsafe-no-sandbox']);
      assert.equal(r.code, 2, `${label}: exit code (stderr: ${r.stderr})`);
      const lines = r.stderr.trim().split('\n');
      assert.equal(lines.length, 1, `${label}: one line, got ${r.stderr}`);
      assert.match(lines[0]!, /bad\.yaml/, label);
      assert.match(lines[0]!, pattern, label);
      assert.doesNotMatch(r.stderr, /\bat .*\.ts:\d+/, `${label}: no stack trace`);
    }
    const missing = await cli(['run', join(repo, 'nope.yaml')]);
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /nope\.yaml: study file not found/);
  } finally {
    cleanup(repo);
  }
});

test('usage errors exit 2: bad flags, unknown run, no store', async () => {
  const repo = makeRepo({ 'params.py': PARAMS_PY, 'evaluate.py': EVALUATE_PY, 'study.yaml': studyYaml() });
  try {
    assert.equal((await cli(['run', 'study.yaml', '--experiments', 'many'], repo)).code, 2);
    assert.equal((await cli(['frobnicate'], repo)).code, 2);
    const nostore = await cli(['log'], repo);
    assert.equal(nostore.code, 2);
    assert.match(nostore.stderr, /no autoagent store here/);
  } finally {
    cleanup(repo);
  }
});

test('run, log --json, show and status through the CLI', async () => {
  const repo = makeRepo({ 'params.py': PARAMS_PY, 'evaluate.py': EVALUATE_PY, 'study.yaml': studyYaml() });
  try {
    const run = await cli(['run', 'study.yaml', '--experiments', '3'], repo);
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, /run demo-\S+ finished: experiment budget reached \(3\/3\)/);
    assert.match(run.stdout, /^#\s+commit\s+loss\s+Δ\s+status\s+description$/m);
    assert.match(run.stderr, /\[baseline 1\/3\] loss=13/);
    const log = JSON.parse((await cli(['log', '--json'], repo)).stdout);
    assert.equal(log.rows.length, 6);
    assert.deepEqual(log.rows.slice(0, 3).map((r: { id: string }) => r.id), ['0.1', '0.2', '0.3']);
    assert.equal(log.baseline.mean, 13);
    const show = await cli(['show', '1'], repo);
    assert.equal(show.code, 0);
    assert.match(show.stdout, /^hypothesis: /m);
    assert.match(show.stdout, /^decision: /m);
    const showJson = JSON.parse((await cli(['show', `${log.run.id}/1`, '--json'], repo)).stdout);
    assert.equal(showJson.seq, 1);
    assert.ok(showJson.evaluations.length >= 1);
    const bad = await cli(['show', '99'], repo);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /has no experiment 99/);
    const status = JSON.parse((await cli(['status', '--json'], repo)).stdout);
    assert.equal(status.length, 1);
    assert.equal(status[0].experiments, 3);
  } finally {
    cleanup(repo);
  }
});

test('kill -9 during an evaluation, then resume: the budget completes, nothing lost or counted twice', async () => {
  // each evaluation takes ~0.6 s so the kill lands inside one
  const yaml = studyYaml().replace(/^command: .*$/m, 'command: python3 -c "import time; time.sleep(0.6)"');
  const repo = makeRepo({ 'params.py': PARAMS_PY, 'evaluate.py': EVALUATE_PY, 'study.yaml': yaml });
  try {
    const child = spawn(process.execPath, [BIN, 'run', 'study.yaml', '--experiments', '6'], { cwd: repo, stdio: ['ignore', 'ignore', 'pipe'] });
    let childErr = '';
    child.stderr!.on('data', (b: Buffer) => (childErr += b.toString()));
    const exited = new Promise((r) => child.once('exit', r));
    let gone = false;
    void exited.then(() => (gone = true));
    const dbPath = join(repo, '.autoagent', 'autoagent.db');
    const deadline = Date.now() + 60_000;
    let killedDuring = -1;
    while (Date.now() < deadline && !gone) {
      await new Promise((r) => setTimeout(r, 100));
      if (!existsSync(dbPath)) continue;
      const db = openDb(dbPath);
      const run = latestRun(db);
      const exps = run ? listExperiments(db, run.id) : [];
      const pending = exps.find((e) => e.status === 'pending' && e.seq >= 2);
      db.close();
      if (pending) {
        await new Promise((r) => setTimeout(r, 300));
        child.kill('SIGKILL');
        killedDuring = pending.seq;
        break;
      }
    }
    await exited;
    assert.ok(killedDuring >= 2, `the run was killed during an experiment (child stderr: ${childErr.slice(-500)})`);
    let db = openDb(dbPath);
    const runId = latestRun(db)!.id;
    const before = listExperiments(db, runId);
    db.close();
    assert.ok(before.some((e) => e.status === 'pending'), 'an experiment was in flight when killed');

    const status = JSON.parse((await cli(['status', '--json'], repo)).stdout);
    assert.equal(status[0].status, 'interrupted');

    const resumed = spawnSync(process.execPath, [BIN, 'resume', runId], { cwd: repo, encoding: 'utf8' });
    assert.equal(resumed.status, 0, resumed.stderr);
    assert.match(resumed.stderr, /resuming run/);

    db = openDb(dbPath);
    const run = getRun(db, runId)!;
    const exps = listExperiments(db, runId);
    assert.equal(run.status, 'finished');
    assert.deepEqual(exps.map((e) => e.seq), [0, 1, 2, 3, 4, 5, 6]);
    for (const e of exps) {
      assert.equal(e.status, 'decided');
      const reps = evaluationsOf(db, e.id).map((v) => v.repeat);
      assert.deepEqual(reps, [...new Set(reps)].sort(), 'no repeat recorded twice');
    }
    assert.equal(evaluationsOf(db, exps[0]!.id).length, 3);
    const commits = sh(repo, 'git', ['rev-list', '--reverse', `${run.base_commit}..${run.branch}`]).split('\n').filter(Boolean);
    assert.deepEqual(commits, exps.filter((e) => e.decision === 'kept').map((e) => e.kept_commit));
    assert.equal(sh(repo, 'git', ['worktree', 'list']).trim().split('\n').length, 1, 'stale worktrees cleaned');
    const wtDir = join(repo, '.autoagent', 'worktrees');
    assert.ok(!existsSync(wtDir) || readdirSync(wtDir).length === 0);
    db.close();
  } finally {
    cleanup(repo);
  }
});
