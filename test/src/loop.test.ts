import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync, existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { startRun, resumeRun } from '../../src/loop.ts';
import { MemoryReporter } from '../../src/report.ts';
import { openDb, listExperiments, evaluationsOf, getRun } from '../../traces/index.ts';
import { ledgerData, showText } from '../../src/views.ts';
import type { Proposer, ProposalContext } from '../../meta-agent/index.ts';
import { makeRepo, cleanup, sh, PARAMS_PY, EVALUATE_PY, studyYaml } from '../helpers/repo.ts';

const opts = (extra: Partial<Parameters<typeof startRun>[1]> = {}) => ({
  overrides: {}, unsafeNoSandbox: false, reporter: new MemoryReporter(), ...extra,
});

function branchCommits(repo: string, base: string, branch: string): string[] {
  return sh(repo, 'git', ['rev-list', '--reverse', `${base}..${branch}`]).split('\n').filter(Boolean);
}

test('a command study runs end to end: baseline repeats, 8 experiments, kept commits on the run branch', async () => {
  const repo = makeRepo({ 'params.py': PARAMS_PY, 'evaluate.py': EVALUATE_PY, 'study.yaml': studyYaml() });
  try {
    const headBefore = sh(repo, 'git', ['rev-parse', 'HEAD']);
    const statusBefore = sh(repo, 'git', ['status', '--porcelain']);
    const res = await startRun(join(repo, 'study.yaml'), opts());
    assert.equal(res.status, 'finished', res.stopReason ?? '');
    const db = openDb(res.dbPath);
    const run = getRun(db, res.runId)!;
    const exps = listExperiments(db, run.id);
    assert.equal(exps.length, 9);
    assert.equal(evaluationsOf(db, exps[0]!.id).length, 3);
    assert.equal(exps[0]!.decision, 'baseline');
    assert.equal(exps[0]!.metric, 4 + 9); // (1-3)^2 + (2-5)^2, deterministic
    for (const e of exps.slice(1)) assert.ok(['kept', 'discarded', 'crash', 'timeout', 'rejected'].includes(e.decision!), e.decision!);
    const kept = exps.filter((e) => e.decision === 'kept');
    assert.ok(kept.length >= 1, 'a quadratic with a deterministic evaluator improves within 8 experiments');
    // the branch holds exactly the kept commits, in order, with the evidence in the messages
    const commits = branchCommits(repo, run.base_commit, run.branch);
    assert.deepEqual(commits, kept.map((e) => e.kept_commit));
    const msg = sh(repo, 'git', ['log', '-1', '--format=%B', run.branch]);
    assert.match(msg, new RegExp(`autoagent #${kept[kept.length - 1]!.seq}: loss \\S+ → \\S+`));
    assert.match(msg, /Run: demo-/);
    // each kept experiment improved on its incumbent
    for (const e of kept) assert.ok(e.metric! < e.incumbent_metric!);
    // the user's checkout is untouched and no worktree is left behind
    assert.equal(sh(repo, 'git', ['rev-parse', 'HEAD']), headBefore);
    assert.equal(sh(repo, 'git', ['status', '--porcelain']), statusBefore);
    assert.equal(sh(repo, 'git', ['worktree', 'list']).trim().split('\n').length, 1);
    // log data: 3 baseline repeats + 8 experiments
    const ledger = ledgerData(db, run);
    assert.equal(ledger.rows.filter((r) => r.status === 'baseline').length, 3);
    assert.equal(ledger.rows.filter((r) => r.seq > 0).length, 8);
    const text = showText(db, run, kept[0]!);
    assert.match(text, /decision: {3}kept — improvement/);
    // the search proposer says which model proposed it and what it expected
    assert.match(text, /^model: {6}(Gaussian process \(Matérn 5\/2\) over \d+ evaluation\(s\) of \d+ assignment\(s\)|none yet)/m);
    const later = showText(db, run, kept[kept.length - 1]!);
    if (kept[kept.length - 1]!.seq > 2) assert.match(later, /^expected: {3}loss \S+ ± \S+ \(incumbent \S+ ± \S+\); margin \S+, chance to pass the screen \d+%/m);
    assert.match(text, /^diff --git a\/params.py b\/params.py/m);
    assert.match(text, /#2 seed \d+: ok loss=/); // the confirmation repeat
    db.close();
  } finally {
    cleanup(repo);
  }
});

test('--experiments 0 measures only the baseline', async () => {
  const repo = makeRepo({ 'params.py': PARAMS_PY, 'evaluate.py': EVALUATE_PY, 'study.yaml': studyYaml() });
  try {
    const res = await startRun(join(repo, 'study.yaml'), opts({ overrides: { experiments: 0 } }));
    const db = openDb(res.dbPath);
    const exps = listExperiments(db, res.runId);
    assert.equal(exps.length, 1);
    assert.match(res.stopReason!, /experiment budget reached \(0\/0\)/);
    db.close();
  } finally {
    cleanup(repo);
  }
});

/** A proposer with a script: each call returns the next edit list. */
function scripted(steps: Array<(ctx: ProposalContext) => { hypothesis: string; edits: Array<{ path: string; content: string }> } | null>): Proposer {
  let i = 0;
  return { name: 'scripted', propose: async (ctx) => (i < steps.length ? steps[i++]!(ctx) : null) };
}

test('a proposal touching a locked or non-editable path is recorded as rejected and never evaluated', async () => {
  const repo = makeRepo({ 'params.py': PARAMS_PY, 'evaluate.py': EVALUATE_PY, 'other.txt': 'x\n', 'study.yaml': studyYaml() });
  try {
    const proposer = scripted([
      () => ({ hypothesis: 'cheat', edits: [{ path: 'evaluate.py', content: "print('METRIC loss=-1')\n" }] }),
      () => ({ hypothesis: 'outside', edits: [{ path: 'other.txt', content: 'y\n' }] }),
      () => ({ hypothesis: 'escape', edits: [{ path: '../escape.py', content: 'X = 1\n' }] }),
      (ctx) => ({ hypothesis: 'X 1.0 → 3.0', edits: [{ path: 'params.py', content: ctx.files['params.py']!.replace('X = 1.0', 'X = 3.0') }] }),
    ]);
    const res = await startRun(join(repo, 'study.yaml'), opts({ proposer, overrides: { experiments: 4 } }));
    const db = openDb(res.dbPath);
    const exps = listExperiments(db, res.runId);
    assert.deepEqual(exps.slice(1).map((e) => e.decision), ['rejected', 'rejected', 'rejected', 'kept']);
    assert.match(exps[1]!.reason!, /locked path evaluate.py/);
    assert.match(exps[2]!.reason!, /other.txt, which is not editable/);
    assert.match(exps[3]!.reason!, /not a plain repo-relative path/);
    for (const e of exps.slice(1, 4)) assert.equal(evaluationsOf(db, e.id).length, 0);
    assert.match(exps[1]!.diff, /METRIC loss=-1/); // the rejected diff is kept for audit
    assert.equal(exps[4]!.metric, 9);
    assert.equal(existsSync(join(repo, '..', 'escape.py')), false);
    db.close();
  } finally {
    cleanup(repo);
  }
});

test('a proposal that changes nothing or repeats an evaluated candidate is not evaluated again', async () => {
  const repo = makeRepo({ 'params.py': PARAMS_PY, 'evaluate.py': EVALUATE_PY, 'study.yaml': studyYaml() });
  try {
    const set = (x: string) => (ctx: ProposalContext) => ({ hypothesis: `X → ${x}`, edits: [{ path: 'params.py', content: ctx.files['params.py']!.replace(/X = \S+/, `X = ${x}`) }] });
    const proposer = scripted([set('0.5'), set('1.0'), set('0.5'), set('2.0')]);
    const res = await startRun(join(repo, 'study.yaml'), opts({ proposer, overrides: { experiments: 5 } }));
    const db = openDb(res.dbPath);
    const exps = listExperiments(db, res.runId);
    assert.deepEqual(exps.slice(1).map((e) => e.hypothesis), ['X → 0.5', 'X → 2.0']);
    assert.match(res.stopReason!, /nothing left to propose/);
    db.close();
  } finally {
    cleanup(repo);
  }
});

test('a locked file changed during the run stops it with a message naming the file', async () => {
  const repo = makeRepo({ 'params.py': PARAMS_PY, 'evaluate.py': EVALUATE_PY, 'study.yaml': studyYaml() });
  try {
    const proposer = scripted([
      (ctx) => {
        writeFileSync(join(repo, 'evaluate.py'), EVALUATE_PY + "\nprint('METRIC loss=0')\n");
        return { hypothesis: 'X → 3.0', edits: [{ path: 'params.py', content: ctx.files['params.py']!.replace('X = 1.0', 'X = 3.0') }] };
      },
    ]);
    const res = await startRun(join(repo, 'study.yaml'), opts({ proposer }));
    assert.equal(res.status, 'failed');
    assert.match(res.stopReason!, /locked file evaluate.py changed since the run started/);
    const db = openDb(res.dbPath);
    const exps = listExperiments(db, res.runId);
    assert.equal(evaluationsOf(db, exps[1]!.id).length, 0, 'nothing was evaluated with the tampered evaluator');
    db.close();
  } finally {
    cleanup(repo);
  }
});

test('refuses to start when a locked path has uncommitted changes', async () => {
  const repo = makeRepo({ 'params.py': PARAMS_PY, 'evaluate.py': EVALUATE_PY, 'study.yaml': studyYaml() });
  try {
    writeFileSync(join(repo, 'evaluate.py'), EVALUATE_PY + '\n# edited\n');
    await assert.rejects(startRun(join(repo, 'study.yaml'), opts()), /locked path evaluate.py has uncommitted changes/);
  } finally {
    cleanup(repo);
  }
});

test('crashing and timing-out candidates are recorded with their reason, and the run goes on', async () => {
  const RUN_PY = `import re, sys, time
x = float(re.search(r'^X = (\\S+)', open('params.py').read(), re.M).group(1))
if x > 2.5: sys.exit(3)
if x < 0.5: time.sleep(30)
`;
  const yaml = studyYaml().replace(/^command: .*$/m, 'command: python3 run.py').replace('experiment_seconds: 20', 'experiment_seconds: 2');
  const repo = makeRepo({ 'params.py': PARAMS_PY, 'evaluate.py': EVALUATE_PY, 'run.py': RUN_PY, 'study.yaml': yaml });
  try {
    const set = (x: string) => (ctx: ProposalContext) => ({ hypothesis: `X → ${x}`, edits: [{ path: 'params.py', content: ctx.files['params.py']!.replace(/X = \S+/, `X = ${x}`) }] });
    const proposer = scripted([set('2.9'), set('0.1'), set('2.0')]);
    const res = await startRun(join(repo, 'study.yaml'), opts({ proposer, overrides: { experiments: 3 } }));
    assert.equal(res.status, 'finished', res.stopReason ?? '');
    const db = openDb(res.dbPath);
    const exps = listExperiments(db, res.runId);
    assert.deepEqual(exps.slice(1).map((e) => e.decision), ['crash', 'timeout', 'kept']);
    assert.match(exps[1]!.reason!, /exited with code 3/);
    assert.match(exps[2]!.reason!, /ran past 2 s/);
    assert.ok(exps[2]!.wall_ms! < 15_000);
    db.close();
  } finally {
    cleanup(repo);
  }
});

test('the metric from the candidate output is marked self-reported', async () => {
  const yaml = studyYaml()
    .replace(/^command: .*$/m, 'command: echo score=1.5')
    .replace(/^evaluate: .*$/m, '')
    .replace('metric: { name: loss, direction: minimize }', "metric: { name: loss, direction: minimize, from: output, pattern: 'score=(\\S+)' }");
  const repo = makeRepo({ 'params.py': PARAMS_PY, 'evaluate.py': EVALUATE_PY, 'study.yaml': yaml });
  try {
    const reporter = new MemoryReporter();
    const res = await startRun(join(repo, 'study.yaml'), opts({ reporter, overrides: { experiments: 0 } }));
    const db = openDb(res.dbPath);
    const run = getRun(db, res.runId)!;
    assert.equal(run.self_reported, 1);
    assert.equal(listExperiments(db, run.id)[0]!.metric, 1.5);
    assert.ok(reporter.lines.some((l) => /SELF-REPORTED/.test(l)));
    db.close();
  } finally {
    cleanup(repo);
  }
});

test('resume continues a stopped run without repeating recorded work', async () => {
  const repo = makeRepo({ 'params.py': PARAMS_PY, 'evaluate.py': EVALUATE_PY, 'study.yaml': studyYaml() });
  try {
    const first = await startRun(join(repo, 'study.yaml'), opts({ overrides: { experiments: 3 } }));
    const res = await resumeRun(first.runId, repo, opts({ overrides: { experiments: 6 } }));
    assert.equal(res.status, 'finished');
    const db = openDb(res.dbPath);
    const exps = listExperiments(db, res.runId);
    assert.deepEqual(exps.map((e) => e.seq), [0, 1, 2, 3, 4, 5, 6]);
    assert.equal(evaluationsOf(db, exps[0]!.id).length, 3, 'the baseline was not measured again');
    const run = getRun(db, res.runId)!;
    assert.deepEqual(branchCommits(repo, run.base_commit, run.branch), exps.filter((e) => e.decision === 'kept').map((e) => e.kept_commit));
    assert.equal(readdirSync(join(repo, '.autoagent')).includes('worktrees') ? readdirSync(join(repo, '.autoagent', 'worktrees')).length : 0, 0);
    db.close();
  } finally {
    cleanup(repo);
  }
});

test('a study in a subfolder: paths and commands are relative to the study file, the search proposer finds its knobs', async () => {
  const repo = makeRepo({ 'sub/params.py': PARAMS_PY, 'sub/evaluate.py': EVALUATE_PY, 'sub/study.yaml': studyYaml(), 'README': 'x\n' });
  try {
    const res = await startRun(join(repo, 'sub', 'study.yaml'), opts({ overrides: { experiments: 3 } }));
    assert.equal(res.status, 'finished', res.stopReason ?? '');
    const db = openDb(res.dbPath);
    const exps = listExperiments(db, res.runId);
    assert.equal(exps.length, 4);
    assert.equal(exps[0]!.metric, 13);
    for (const e of exps.slice(1)) {
      assert.match(e.hypothesis, /^(X|N) \S+ → \S+/);
      assert.match(e.diff, /^diff --git a\/sub\/params.py/m);
    }
    db.close();
  } finally {
    cleanup(repo);
  }
});
