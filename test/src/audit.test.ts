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
import { openDb, listExperiments, evaluationsOf, getRun, ledgerLink, ledgerHead, ledgerGenesis, getExperiment, type DB, type RunRow, type ExperimentRow } from '../../traces/index.ts';
import { ledgerText } from '../../src/views.ts';
import { tracesOf } from '../../traces/traces.ts';
import type { Proposer, ProposalContext } from '../../meta-agent/index.ts';
import { startMockOpenAI, openaiText, type MockServer } from '../helpers/mock-llm.ts';
import { makeRepo, cleanup, sh, PARAMS_PY, EVALUATE_PY, studyYaml, tinyHarnessRepo } from '../helpers/repo.ts';

const CHECKS = ['chain', 'editable-only', 'locked-hashes', 'locked-current', 'evidence', 'diffs', 'ledger', 'rescore'];

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
// a finished command run: seeded noise (deterministic per seed), 5 experiments, 3 kept, the last rejected

let repo = '';
let db: DB;
let run: RunRow;
let exps: ExperimentRow[];
let kept: ExperimentRow[];
let tip = '';
let runLines: string[] = [];

before(async () => {
  repo = makeRepo({ 'params.py': PARAMS_PY, 'evaluate.py': EVALUATE_PY, 'study.yaml': studyYaml("env: { NOISE: '0.05' }\n") });
  const cheat = () => ({ hypothesis: 'score everything 0', edits: [{ path: 'evaluate.py', content: "print('METRIC loss=0')\n" }] });
  const proposer = scripted([setKnob('X', '2.0'), setKnob('N', '4'), setKnob('X', '2.02'), setKnob('X', '3.0'), cheat]);
  const reporter = new MemoryReporter();
  const res = await startRun(join(repo, 'study.yaml'), { overrides: { experiments: 5 }, unsafeNoSandbox: false, reporter, proposer });
  assert.equal(res.status, 'finished', res.stopReason ?? '');
  runLines = reporter.lines;
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
  assert.deepEqual(exps.slice(1).map((e) => e.decision), ['kept', 'kept', 'discarded', 'kept', 'rejected'], exps.map((e) => `${e.seq} ${e.decision} ${e.reason}`).join('\n'));
  const r = await auditRun(db, run.id);
  assert.deepEqual(r.checks.map((c) => c.name), CHECKS);
  assert.deepEqual(r.problems, []);
  assert.equal(r.ok, true);
  for (const c of r.checks) assert.ok(c.ok, `${c.name}: ${c.detail}`);
  assert.match(check(r, 'chain').detail, /3 commit\(s\) since \w{8}, 3 kept experiment\(s\) \(#1, #2, #4\)/);
  assert.match(check(r, 'evidence').detail, /^4 decision\(s\) \(3 kept\)/);
  assert.match(check(r, 'locked-hashes').detail, /1 tracked locked file\(s\) match the manifest in the base and 3 branch commit\(s\)/);
  assert.equal(check(r, 'diffs').detail, '4 stored diff(s) re-derived from git, 1 rejected proposal(s) from their stored edits');
  // the chain: 6 decisions (the baseline first), its head printed by the run, shown by `log`, and in each kept commit the link before it
  const head = ledgerHead(db, run.id)!;
  assert.deepEqual(r.ledger, head);
  assert.equal(head.links, 6);
  assert.match(check(r, 'ledger').detail, new RegExp(`^6 decision\\(s\\) chained from the run's genesis, head ${head.head.slice(0, 16)}; 3 kept commit\\(s\\) carry the link before them$`));
  assert.ok(runLines.some((l) => l.startsWith(`ledger head: ${head.head.slice(0, 16)} `)), runLines.slice(-3).join('\n'));
  assert.match(ledgerText(db, run), new RegExp(`^ledger head ${head.head.slice(0, 16)} \\(6 decisions chained\\)`, 'm'));
  for (const e of kept) {
    const before = exps.find((x) => x.chain_pos === e.chain_pos! - 1)!;
    assert.match(sh(repo, 'git', ['log', '-1', '--format=%B', e.kept_commit!]), new RegExp(`^Ledger: ${before.chain}$`, 'm'));
  }
  // every candidate commit is held by its own ref
  for (const e of exps.filter((x) => x.seq > 0 && x.candidate_commit)) {
    assert.equal(sh(repo, 'git', ['rev-parse', `refs/autoagent/${run.id}/${e.seq}`]).trim(), e.candidate_commit);
  }
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

/** relink experiments of the run from `fromSeq` on (in chain order), as someone rewriting the store by hand would */
function relink(fromSeq: number): void {
  const all = listExperiments(db, run.id).filter((e) => e.chain !== null).sort((a, b) => a.chain_pos! - b.chain_pos!);
  const start = all.findIndex((e) => e.seq === fromSeq);
  for (let i = start; i < all.length; i++) {
    const prev = i === 0 ? ledgerGenesis(run) : getExperiment(db, run.id, all[i - 1]!.seq)!.chain!;
    const e = getExperiment(db, run.id, all[i]!.seq)!;
    db.prepare('UPDATE experiments SET chain = ? WHERE id = ?').run(ledgerLink(prev, e, evaluationsOf(db, e.id)), e.id);
  }
}

test('tampering (f): a kept commit rewritten in git, with its commit ids changed to match in SQLite, is named', async () => {
  const victim = kept[kept.length - 1]!;
  let forged = '';
  const r = await auditTampered(() => {
    const params = sh(repo, 'git', ['show', `${victim.kept_commit}:params.py`]);
    const message = sh(repo, 'git', ['log', '-1', '--format=%B', victim.kept_commit!]);
    // an editable-only change: the files that "won" are not the ones that were evaluated
    const tree = commitOn(repo, victim.parent_commit, { 'params.py': params.replace(/^N = \S+/m, 'N = 5') }, 'x');
    forged = sh(repo, 'git', ['-c', 'user.name=autoagent', '-c', 'user.email=autoagent@localhost', 'commit-tree', `${tree}^{tree}`, '-p', victim.parent_commit, '-m', message.trimEnd()]).trim();
    sh(repo, 'git', ['update-ref', `refs/heads/${run.branch}`, forged]);
    db.prepare('UPDATE experiments SET kept_commit = ?, candidate_commit = ? WHERE id = ?').run(forged, forged, victim.id);
  });
  assert.equal(r.ok, false);
  const who = `experiment #${victim.seq} (kept)`;
  assert.ok(r.problems.includes(`diffs: ${who}: its candidate ref refs/autoagent/${run.id}/${victim.seq} points at ${victim.candidate_commit!.slice(0, 8)}, but the store records candidate ${forged.slice(0, 8)}`), r.problems.join('\n'));
  assert.ok(r.problems.some((p) => p.startsWith(`diffs: ${who}: the stored diff is not \`git diff ${victim.parent_commit.slice(0, 8)} ${forged.slice(0, 8)}\` (line `)), r.problems.join('\n'));
  assert.ok(r.problems.some((p) => p.startsWith(`ledger: the chain breaks at experiment #${victim.seq} (link 5 of 6)`)), r.problems.join('\n'));
  // what the older checks see is consistent: the branch, the editable paths, the evidence
  for (const name of ['chain', 'editable-only', 'locked-hashes', 'evidence']) assert.ok(check(r, name).ok, `${name}: ${check(r, name).detail}`);
});

test('tampering (g): a stored diff edited in SQLite is named, for a discarded candidate and for a rejected proposal', async () => {
  const discarded = exps.find((e) => e.decision === 'discarded')!;
  assert.match(discarded.diff, /^\+X = 2\.02/m);
  const r1 = await auditTampered(() => {
    db.prepare('UPDATE experiments SET diff = ? WHERE id = ?').run(discarded.diff.replace('+X = 2.02', '+X = 2.5'), discarded.id);
  });
  assert.equal(r1.ok, false);
  assert.ok(r1.problems.includes(`diffs: experiment #${discarded.seq} (discarded): the stored diff is not \`git diff ${discarded.parent_commit.slice(0, 8)} ${discarded.candidate_commit!.slice(0, 8)}\` (line 8: stored "+X = 2.5  # first knob", git "+X = 2.02  # first knob")`), r1.problems.join('\n'));
  assert.ok(r1.problems.some((p) => p.startsWith(`ledger: the chain breaks at experiment #${discarded.seq} (link ${discarded.chain_pos} of 6)`)), r1.problems.join('\n'));

  // not a tampering: git now writes diffs otherwise (diff.noprefix set after the run); the stored diffs still apply exactly
  sh(repo, 'git', ['config', 'diff.noprefix', 'true']);
  try {
    const r = await auditRun(db, run.id);
    assert.ok(r.ok, r.problems.join('\n'));
    assert.equal(check(r, 'diffs').detail, "4 stored diff(s) re-derived from git, 1 rejected proposal(s) from their stored edits; 4 stored diff(s) formatted differently but applying to exactly the candidate's files");
    // and an edited one is still named
    const r3 = await auditTampered(() => {
      db.prepare('UPDATE experiments SET diff = ? WHERE id = ?').run(discarded.diff.replace('+X = 2.02', '+X = 2.5'), discarded.id);
    });
    assert.ok(r3.problems.some((p) => p.startsWith(`diffs: experiment #${discarded.seq} (discarded): the stored diff is not`)), r3.problems.join('\n'));
  } finally {
    sh(repo, 'git', ['config', '--unset', 'diff.noprefix']);
  }

  const rejected = exps.find((e) => e.decision === 'rejected')!;
  assert.equal(rejected.candidate_commit, null);
  assert.match(rejected.diff, /^\+print\('METRIC loss=0'\)$/m);
  const r2 = await auditTampered(() => {
    // the rejected proposal made to look harmless: the diff now shows an editable file
    db.prepare('UPDATE experiments SET diff = ? WHERE id = ?').run(rejected.diff.replaceAll('evaluate.py', 'params.py'), rejected.id);
  });
  assert.equal(r2.ok, false);
  assert.ok(r2.problems.includes(`diffs: experiment #${rejected.seq} (rejected): the stored diff is not the diff of its stored edits against ${rejected.parent_commit.slice(0, 8)} (line 1: stored "diff --git a/params.py b/params.py", git "diff --git a/evaluate.py b/evaluate.py")`), r2.problems.join('\n'));
});

test('tampering (j): a discarded experiment deleted from the store is named by its candidate ref', async () => {
  const discarded = exps.find((e) => e.decision === 'discarded')!;
  const r = await auditTampered(() => {
    db.prepare('DELETE FROM evaluations WHERE experiment_id = ?').run(discarded.id);
    db.prepare('DELETE FROM experiments WHERE id = ?').run(discarded.id);
  });
  assert.equal(r.ok, false);
  assert.ok(r.problems.includes(`diffs: refs/autoagent/${run.id}/${discarded.seq} holds candidate ${discarded.candidate_commit!.slice(0, 8)}, but the store has no experiment #${discarded.seq}: its row was removed`), r.problems.join('\n'));
  assert.ok(r.problems.some((p) => p.startsWith(`ledger: ledger position ${discarded.chain_pos} is missing`)), r.problems.join('\n'));
});

test('tampering (h): an evaluation edited with its own link recomputed breaks the chain at the next link', async () => {
  const discarded = exps.find((e) => e.decision === 'discarded')!;
  const next = exps.find((e) => e.chain_pos === discarded.chain_pos! + 1)!;
  const r = await auditTampered(() => {
    db.prepare('UPDATE evaluations SET metric = metric + 0.5 WHERE experiment_id = ? AND repeat = 0').run(discarded.id);
    const prev = exps.find((e) => e.chain_pos === discarded.chain_pos! - 1)!.chain!;
    const e = getExperiment(db, run.id, discarded.seq)!;
    db.prepare('UPDATE experiments SET chain = ? WHERE id = ?').run(ledgerLink(prev, e, evaluationsOf(db, e.id)), e.id);
  });
  assert.equal(r.ok, false);
  const breaks = r.problems.filter((p) => p.startsWith('ledger: the chain breaks'));
  assert.deepEqual(breaks.map((p) => p.slice(0, p.indexOf(':', 8))), [`ledger: the chain breaks at experiment #${next.seq} (link ${next.chain_pos} of 6)`], r.problems.join('\n'));
  assert.match(breaks[0]!, new RegExp(`does not follow from #${discarded.seq}'s link and its record`));
});

test('tampering (i): a store rewritten consistently (chain recomputed) is caught by the Ledger lines in git, or else only by --expect-head', async () => {
  const head = ledgerHead(db, run.id)!.head;
  const discarded = exps.find((e) => e.decision === 'discarded')!;
  const lastKept = kept[kept.length - 1]!;
  // an earlier copy of the head still verifies the ledger as it is (it grew by the later decisions)
  const earlier = await auditRun(db, run.id, { expectHead: discarded.chain!.slice(0, 16) });
  assert.ok(earlier.ok, earlier.problems.join('\n'));
  assert.match(check(earlier, 'ledger').detail, new RegExp(`the expected head ${discarded.chain!.slice(0, 16)} is link ${discarded.chain_pos} of 6 \\(#${discarded.seq}\\): the ledger grew by ${6 - discarded.chain_pos!} decision\\(s\\) since$`));
  assert.ok((await auditRun(db, run.id, { expectHead: head.slice(0, 16) })).ok);

  // the seeds of the discarded candidate rewritten, every later link recomputed: the kept commit after it names the old link
  const r1 = await auditTampered(() => {
    db.prepare('UPDATE evaluations SET seed = seed + 7 WHERE experiment_id = ?').run(discarded.id);
    relink(discarded.seq);
  });
  assert.equal(r1.ok, false);
  assert.deepEqual(r1.problems.filter((p) => p.startsWith('ledger:')).map((p) => p.slice(0, p.indexOf(' says '))), [`ledger: experiment #${lastKept.seq}: its kept commit ${lastKept.kept_commit!.slice(0, 8)}`], r1.problems.join('\n'));

  // after the last kept commit nothing in git names the ledger: the audit passes, a head printed earlier does not
  const r2 = await auditTampered(() => {
    db.prepare('UPDATE evaluations SET seed = seed + 7 WHERE experiment_id = ?').run(lastKept.id);
    relink(lastKept.seq);
    assert.ok(ledgerHead(db, run.id)!.head !== head);
  });
  assert.ok(r2.ok, r2.problems.join('\n'));
  let r3: AuditReport;
  let now = '';
  db.exec('BEGIN');
  try {
    db.prepare('UPDATE evaluations SET seed = seed + 7 WHERE experiment_id = ?').run(lastKept.id);
    relink(lastKept.seq);
    now = ledgerHead(db, run.id)!.head;
    r3 = await auditRun(db, run.id, { expectHead: head.slice(0, 16) });
    assert.ok((await auditRun(db, run.id, { expectHead: now.slice(0, 16) })).ok, 'the rewritten head verifies itself');
  } finally {
    db.exec('ROLLBACK');
  }
  assert.equal(r3.ok, false);
  assert.deepEqual(r3.problems, [`ledger: --expect-head ${head.slice(0, 16)} is not a link of this run's ledger chain (its head is now ${now.slice(0, 16)}…): the ledger was rewritten since that head was printed`]);
  await assert.rejects(auditRun(db, run.id, { expectHead: 'xyz' }), /^UsageError: --expect-head xyz: expected the ledger head a run printed \(8 to 64 hex digits\)$/);
});

test('a ledger chain removed from the store is named; a run that predates the chain audits with a note', async () => {
  const r = await auditTampered(() => {
    db.prepare('UPDATE experiments SET chain = NULL, chain_pos = NULL WHERE run_id = ?').run(run.id);
  });
  assert.equal(r.ok, false);
  assert.deepEqual(r.problems, [`ledger: no experiment has a ledger link, but its kept commits carry Ledger lines and it has candidate refs (refs/autoagent/${run.id}/1): the chain was removed from the store`]);

  // a run made before the chain: no links, no candidate refs, no Ledger lines (its only candidate was discarded)
  const old = makeRepo({ 'params.py': PARAMS_PY, 'evaluate.py': EVALUATE_PY, 'study.yaml': studyYaml() });
  let odb: DB | null = null;
  try {
    const res = await startRun(join(old, 'study.yaml'), { overrides: { experiments: 1 }, unsafeNoSandbox: false, reporter: new MemoryReporter(), proposer: scripted([setKnob('X', '0.0')]) });
    odb = openDb(res.dbPath);
    assert.deepEqual(listExperiments(odb, res.runId).map((e) => e.decision), ['baseline', 'discarded']);
    odb.prepare('UPDATE experiments SET chain = NULL, chain_pos = NULL').run();
    sh(old, 'git', ['update-ref', '-d', `refs/autoagent/${res.runId}/1`]);
    const legacy = await auditRun(odb, res.runId);
    assert.ok(legacy.ok, legacy.problems.join('\n'));
    assert.equal(legacy.ledger, null);
    assert.equal(check(legacy, 'ledger').detail, 'no ledger chain (run predates it)');
    assert.match(ledgerText(odb, getRun(odb, res.runId)!), /^ledger: no chain \(the run predates it\)$/m);
    const expect = await auditRun(odb, res.runId, { expectHead: '0123456789abcdef' });
    assert.deepEqual(expect.problems, ['ledger: --expect-head 0123456789abcdef: the run has no ledger chain to check it against']);
  } finally {
    odb?.close();
    cleanup(old);
  }
});

test('a discarded candidate\'s commit survives `git gc --prune=now` (its ref holds it); without the ref its loss is named', async () => {
  const discarded = exps.find((e) => e.decision === 'discarded')!;
  const gc = () => {
    sh(repo, 'git', ['reflog', 'expire', '--expire=now', '--expire-unreachable=now', '--all']);
    sh(repo, 'git', ['gc', '-q', '--prune=now']);
  };
  assert.equal(sh(repo, 'git', ['worktree', 'list']).trim().split('\n').length, 1, 'no worktree holds a candidate');
  gc();
  const r = await auditRun(db, run.id);
  assert.ok(r.ok, r.problems.join('\n'));
  assert.equal(check(r, 'diffs').detail, '4 stored diff(s) re-derived from git, 1 rejected proposal(s) from their stored edits');
  // what happened before candidate refs: the commit only lived in a removed worktree
  const ref = `refs/autoagent/${run.id}/${discarded.seq}`;
  const bundle = join(repo, '.autoagent', 'discarded.bundle');
  sh(repo, 'git', ['bundle', 'create', '-q', bundle, ref]);
  sh(repo, 'git', ['update-ref', '-d', ref]);
  try {
    gc();
    assert.throws(() => sh(repo, 'git', ['cat-file', '-e', `${discarded.candidate_commit}^{commit}`]));
    const lost = await auditRun(db, run.id);
    assert.equal(lost.ok, false);
    assert.deepEqual(lost.problems, [
      `diffs: experiment #${discarded.seq} (discarded): its candidate ref ${ref} is missing`,
      `diffs: candidate commit of #${discarded.seq} is missing (${discarded.candidate_commit!.slice(0, 8)}, no ${ref}): its stored diff cannot be re-derived`,
    ]);
  } finally {
    sh(repo, 'git', ['fetch', '-q', bundle, `${ref}:${ref}`]);
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


test('a stored diff of proposed edits keeps content lines that start with -- or ++ (only git\'s header is dropped)', async () => {
  const { diffEdits } = await import('../../base/git.ts');
  const d = await diffEdits({ 'a.sql': 'x\n-- comment\n++ y\n' }, [{ path: 'a.sql', content: 'x\n+++ z\n' }]);
  assert.match(d, /^diff --git a\/a\.sql b\/a\.sql\n--- a\/a\.sql\n\+\+\+ b\/a\.sql\n@@/);
  assert.match(d, /^--- comment$/m);
  assert.match(d, /^-\+\+ y$/m);
  assert.match(d, /^\+\+\+\+ z$/m);
});
