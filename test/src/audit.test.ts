/**
 * `auditRun`: a finished run audits clean, and each kind of tampering with its branch or its
 * store is named by the audit. Every tamper happens inside a SQLite transaction that is rolled
 * back (and the branch is moved back), and the run is audited clean again after each one.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startRun } from '../../src/loop.ts';
import { auditRun, formatAudit, type AuditReport } from '../../src/audit.ts';
import { MemoryReporter } from '../../src/report.ts';
import { openDb, listExperiments, evaluationsOf, getRun, type DB, type RunRow, type ExperimentRow } from '../../traces/index.ts';
import { tracesOf } from '../../traces/traces.ts';
import type { Proposer, ProposalContext } from '../../meta-agent/index.ts';
import { startMockOpenAI, openaiText, type MockServer } from '../helpers/mock-llm.ts';
import { makeRepo, cleanup, sh, PARAMS_PY, EVALUATE_PY, studyYaml, tinyHarnessRepo } from '../helpers/repo.ts';

const CHECKS = ['chain', 'editable-only', 'locked-hashes', 'locked-current', 'evidence', 'rescore'];

function scripted(steps: Array<(ctx: ProposalContext) => { hypothesis: string; edits: Array<{ path: string; content: string }> }>): Proposer {
  let i = 0;
  return { name: 'scripted', propose: async (ctx) => (i < steps.length ? steps[i++]!(ctx) : null) };
}

const setKnob = (name: string, value: string) => (ctx: ProposalContext) => ({
  hypothesis: `${name} → ${value}`,
  edits: [{ path: 'params.py', content: ctx.files['params.py']!.replace(new RegExp(`^${name} = \\S+`, 'm'), `${name} = ${value}`) }],
});

/** a commit on `parent` with `files` written, made in a throwaway worktree (the checkout is not touched) */
function commitOn(repo: string, parent: string, files: Record<string, string>, message: string): string {
  const wt = join(repo, '.autoagent', 'tamper-wt');
  sh(repo, 'git', ['worktree', 'add', '-q', '--detach', wt, parent]);
  try {
    for (const [p, c] of Object.entries(files)) writeFileSync(join(wt, p), c);
    sh(wt, 'git', ['add', '-A']);
    sh(wt, 'git', ['-c', 'user.name=t', '-c', 'user.email=t@t', 'commit', '-q', '-m', message]);
    return sh(wt, 'git', ['rev-parse', 'HEAD']).trim();
  } finally {
    sh(repo, 'git', ['worktree', 'remove', '--force', wt]);
  }
}

// ---------------------------------------------------------------------------------------------
// a finished command run: seeded noise (deterministic per seed), 4 experiments, 3 kept

let repo = '';
let db: DB;
let run: RunRow;
let exps: ExperimentRow[];
let kept: ExperimentRow[];
let tip = '';

before(async () => {
  repo = makeRepo({ 'params.py': PARAMS_PY, 'evaluate.py': EVALUATE_PY, 'study.yaml': studyYaml("env: { NOISE: '0.05' }\n") });
  const proposer = scripted([setKnob('X', '2.0'), setKnob('N', '4'), setKnob('X', '2.02'), setKnob('X', '3.0')]);
  const res = await startRun(join(repo, 'study.yaml'), { overrides: { experiments: 4 }, unsafeNoSandbox: false, reporter: new MemoryReporter(), proposer });
  assert.equal(res.status, 'finished', res.stopReason ?? '');
  db = openDb(res.dbPath);
  run = getRun(db, res.runId)!;
  exps = listExperiments(db, run.id);
  kept = exps.filter((e) => e.decision === 'kept');
  tip = sh(repo, 'git', ['rev-parse', run.branch]).trim();
});

after(() => {
  db?.close();
  if (repo) cleanup(repo);
});

/** audit with a tamper applied: store edits are rolled back, the branch is moved back */
async function auditTampered(tamper: () => void): Promise<AuditReport> {
  db.exec('BEGIN');
  try {
    tamper();
    return await auditRun(db, run.id);
  } finally {
    db.exec('ROLLBACK');
    sh(repo, 'git', ['update-ref', `refs/heads/${run.branch}`, tip]);
    const again = await auditRun(db, run.id);
    assert.ok(again.ok, `clean again after the undo: ${again.problems.join('; ')}`);
  }
}

function check(r: AuditReport, name: string) {
  const c = r.checks.find((x) => x.name === name);
  assert.ok(c, `check ${name}`);
  return c;
}

test('a finished command run audits clean: every check ok', async () => {
  assert.deepEqual(exps.slice(1).map((e) => e.decision), ['kept', 'kept', 'discarded', 'kept'], exps.map((e) => `${e.seq} ${e.decision} ${e.reason}`).join('\n'));
  const r = await auditRun(db, run.id);
  assert.deepEqual(r.checks.map((c) => c.name), CHECKS);
  assert.deepEqual(r.problems, []);
  assert.equal(r.ok, true);
  for (const c of r.checks) assert.ok(c.ok, `${c.name}: ${c.detail}`);
  assert.match(check(r, 'chain').detail, /3 commit\(s\) since \w{8}, 3 kept experiment\(s\) \(#1, #2, #4\)/);
  assert.match(check(r, 'evidence').detail, /^4 decision\(s\) \(3 kept\)/);
  assert.match(check(r, 'locked-hashes').detail, /1 tracked locked file\(s\) match the manifest in the base and 3 branch commit\(s\)/);
  // the noise was real: the margins it re-derived are not just min_delta
  for (const e of kept) assert.ok(e.margin! > 0.05, `margin of #${e.seq}: ${e.margin}`);
  const text = formatAudit(r);
  assert.match(text, /^audit of run .*: ok/);
  for (const name of CHECKS) assert.match(text, new RegExp(`✓ ${name}`));
});

test('tampering (a): a commit added to the run branch by hand is named', async () => {
  const r = await auditTampered(() => {
    const extra = commitOn(repo, tip, { 'params.py': PARAMS_PY.replace('X = 1.0', 'X = 3.0').replace('N = 2', 'N = 5') }, 'hand-made win');
    sh(repo, 'git', ['update-ref', `refs/heads/${run.branch}`, extra]);
  });
  assert.equal(r.ok, false);
  assert.equal(check(r, 'chain').ok, false);
  assert.ok(r.problems.some((p) => /^chain: commit \w{8} "hand-made win" on autoagent\/\S+ is not the kept commit of any experiment/.test(p)), r.problems.join('\n'));
  // the hand-made commit only touched an editable file: nothing else is wrong
  assert.equal(check(r, 'editable-only').ok, true);
  assert.match(formatAudit(r), /✗ chain/);
});

test('tampering (b): a kept experiment flipped to discarded in SQLite is named', async () => {
  const victim = kept[1]!;
  const r = await auditTampered(() => {
    db.prepare("UPDATE experiments SET decision = 'discarded' WHERE id = ?").run(victim.id);
  });
  assert.equal(r.ok, false);
  assert.ok(r.problems.some((p) => p.startsWith(`chain: commit ${victim.kept_commit!.slice(0, 8)}`) && p.includes(`experiment #${victim.seq}'s kept commit, but #${victim.seq} is recorded as discarded`)), r.problems.join('\n'));
  assert.ok(r.problems.some((p) => p.startsWith(`evidence: experiment #${victim.seq}`) && /recorded as discarded, but the acceptance rule passes/.test(p)), r.problems.join('\n'));
});

test('tampering (c): a kept commit rewritten to also edit the locked evaluator is named, with evaluate.py', async () => {
  const victim = kept[kept.length - 1]!;
  let forged = '';
  const r = await auditTampered(() => {
    const params = sh(repo, 'git', ['show', `${victim.kept_commit}:params.py`]);
    const message = sh(repo, 'git', ['log', '-1', '--format=%B', victim.kept_commit!]);
    forged = commitOn(repo, victim.parent_commit, { 'params.py': params, 'evaluate.py': EVALUATE_PY.replace("print(f'METRIC loss={loss}')", "print('METRIC loss=0')") }, message);
    sh(repo, 'git', ['update-ref', `refs/heads/${run.branch}`, forged]);
    db.prepare('UPDATE experiments SET kept_commit = ? WHERE id = ?').run(forged, victim.id);
  });
  assert.equal(r.ok, false);
  const who = `experiment #${victim.seq} (commit ${forged.slice(0, 8)})`;
  assert.ok(r.problems.includes(`editable-only: ${who} touches evaluate.py, which is locked (locked: evaluate.py)`), r.problems.join('\n'));
  assert.ok(r.problems.some((p) => p.startsWith(`locked-hashes: ${who}: locked file evaluate.py has sha256 `)), r.problems.join('\n'));
  assert.ok(r.problems.some((p) => p.startsWith(`chain: experiment #${victim.seq}: kept commit ${forged.slice(0, 8)} does not hold the files that were evaluated`)), r.problems.join('\n'));
  // the checkout itself was not touched
  assert.equal(check(r, 'locked-current').ok, true);
});

test('tampering (d): an evaluation edited so the rule fails, and one edited so the Evidence line disagrees', async () => {
  const first = kept[0]!;
  const incumbent = exps[0]!.metric!;
  const r1 = await auditTampered(() => {
    db.prepare('UPDATE evaluations SET metric = ? WHERE experiment_id = ?').run(incumbent - 0.001, first.id);
  });
  assert.equal(r1.ok, false);
  assert.equal(check(r1, 'evidence').ok, false);
  assert.ok(r1.problems.some((p) => p.startsWith(`evidence: experiment #${first.seq} (commit ${first.kept_commit!.slice(0, 8)}) is kept, but the acceptance rule fails on its stored evaluations`)), r1.problems.join('\n'));

  const last = kept[kept.length - 1]!;
  const confirm = evaluationsOf(db, last.id).find((v) => v.repeat === 1)!;
  const r2 = await auditTampered(() => {
    db.prepare('UPDATE evaluations SET metric = ? WHERE id = ?').run(confirm.metric! + 0.01, confirm.id);
  });
  assert.equal(r2.ok, false);
  const who = `evidence: experiment #${last.seq} (commit ${last.kept_commit!.slice(0, 8)})`;
  assert.ok(r2.problems.some((p) => p.startsWith(`${who}: the commit's "Evidence: 2 evaluation(s) `) && p.includes('does not match the stored evaluations')), r2.problems.join('\n'));
  // still a clear win: the rule passes, it is the record that disagrees
  assert.ok(!r2.problems.some((p) => /acceptance rule fails/.test(p)), r2.problems.join('\n'));
  assert.ok(r2.problems.some((p) => p.startsWith(`${who}: stored improvement`)), r2.problems.join('\n'));
});

test('a missing run branch and a changed locked file in the checkout are named', async () => {
  const original = sh(repo, 'git', ['show', `HEAD:evaluate.py`]);
  writeFileSync(join(repo, 'evaluate.py'), original + '# edited after the run\n');
  sh(repo, 'git', ['update-ref', '-d', `refs/heads/${run.branch}`]);
  try {
    const r = await auditRun(db, run.id);
    assert.equal(r.ok, false);
    assert.ok(r.problems.some((p) => p.startsWith(`chain: the run branch ${run.branch} is missing`)), r.problems.join('\n'));
    assert.ok(r.problems.some((p) => p.startsWith('locked-current: locked file evaluate.py changed since the run started')), r.problems.join('\n'));
  } finally {
    writeFileSync(join(repo, 'evaluate.py'), original);
    sh(repo, 'git', ['update-ref', `refs/heads/${run.branch}`, tip]);
  }
  assert.ok((await auditRun(db, run.id)).ok);
});

// ---------------------------------------------------------------------------------------------
// a harness run against a scripted server: its traces are re-scored

const TASKS = [
  { id: 't1', split: 'val', input: { question: 'What is 2+2?' }, answer: '4' },
  { id: 't2', split: 'val', input: { question: 'What is 3+3?' }, answer: '6' },
  { id: 't3', split: 'val', input: { question: 'What is 5+5?' }, answer: '10' },
  { id: 't4', split: 'test', input: { question: 'What is 6+6?' }, answer: '12' },
];

/** right on every question at temperature ≤ 0.5, else only on 2+2 */
async function arithmeticServer(): Promise<MockServer> {
  return startMockOpenAI((body: { temperature?: number; messages: unknown }) => {
    const q = JSON.stringify(body.messages);
    const right = q.includes('2+2') ? '4' : q.includes('3+3') ? '6' : q.includes('5+5') ? '10' : '12';
    return openaiText((body.temperature ?? 1) <= 0.5 || right === '4' ? right : '0', { prompt_tokens: 20, completion_tokens: 2 });
  });
}

test('tampering (e): a harness trace whose stored score was edited is named by the rescore', async () => {
  const server = await arithmeticServer();
  const env = { OPENAI_BASE_URL: process.env.OPENAI_BASE_URL, OPENAI_API_KEY: process.env.OPENAI_API_KEY };
  process.env.OPENAI_BASE_URL = server.baseURL;
  process.env.OPENAI_API_KEY = 'test';
  const hrepo = tinyHarnessRepo(TASKS, 1);
  let hdb: DB | null = null;
  try {
    const proposer: Proposer = scripted([(ctx) => ({
      hypothesis: 'temperature 0.9 → 0.1',
      edits: [{ path: 'h/harness.yaml', content: ctx.files['h/harness.yaml']!.replace('temperature: 0.9', 'temperature: 0.1') }],
    })]);
    const res = await startRun(join(hrepo, 'study.yaml'), { overrides: {}, unsafeNoSandbox: false, reporter: new MemoryReporter(), proposer });
    assert.equal(res.status, 'finished', res.stopReason ?? '');
    hdb = openDb(res.dbPath);
    const hexps = listExperiments(hdb, res.runId);
    assert.deepEqual(hexps.map((e) => [e.decision, e.metric]), [['baseline', 1 / 3], ['kept', 1]]);

    const clean = await auditRun(hdb, res.runId);
    assert.ok(clean.ok, clean.problems.join('\n'));
    assert.match(check(clean, 'rescore').detail, /^12 trace output\(s\) re-scored with tiny's locked exact scorer; 4 evaluation metric\(s\)/);

    const victim = tracesOf(hdb, { runId: res.runId, experimentSeq: 1 }).find((t) => t.task_id === 't2' && t.repeat === 1)!;
    assert.equal(victim.score, 1);
    hdb.exec('BEGIN');
    let r: AuditReport;
    try {
      hdb.prepare('UPDATE traces SET score = 0 WHERE id = ?').run(victim.id);
      r = await auditRun(hdb, res.runId);
    } finally {
      hdb.exec('ROLLBACK');
    }
    assert.equal(r.ok, false);
    assert.equal(check(r, 'rescore').ok, false);
    assert.ok(r.problems.includes(`rescore: trace ${victim.id} (task t2, experiment #1, repeat 1): stored score 0, but the locked exact scorer gives 1 for its stored output`), r.problems.join('\n'));
    assert.ok(r.problems.some((p) => p.startsWith('rescore: experiment #1 evaluation repeat 1: metric 1 ≠ the mean 0.66667 of its 3 traces\' scores')), r.problems.join('\n'));
    // the other checks do not depend on traces
    for (const name of CHECKS.filter((n) => n !== 'rescore')) assert.ok(check(r, name).ok, name);
    assert.ok((await auditRun(hdb, res.runId, { rescore: false })).ok);
  } finally {
    hdb?.close();
    await server.close();
    for (const [k, v] of Object.entries(env)) if (v === undefined) delete process.env[k]; else process.env[k] = v;
    cleanup(hrepo);
  }
});

test('auditing an unknown run is a usage error naming it', async () => {
  await assert.rejects(auditRun(db, 'no-such-run'), /no run no-such-run in this store/);
});

