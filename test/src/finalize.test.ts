/**
 * `finalizeRun`: the final incumbent is evaluated once on the sealed test split and recorded; a
 * second finalize refuses unless forced; the clean branch carries one commit per kept change
 * with its evidence (or one squashed commit), and ends on the run branch's tree. One run per kind.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startRun } from '../../src/loop.ts';
import { finalizeRun, listFinalizations, pickTree } from '../../src/finalize.ts';
import { finalizeCommand } from '../../src/audit-cli.ts';
import { ledgerText } from '../../src/views.ts';
import { MemoryReporter } from '../../src/report.ts';
import { openDb, listExperiments, getRun, type DB, type RunRow, type ExperimentRow } from '../../traces/index.ts';
import { tracesOf } from '../../traces/traces.ts';
import type { Proposer, ProposalContext } from '../../meta-agent/index.ts';
import { startMockOpenAI, openaiText } from '../helpers/mock-llm.ts';
import { makeRepo, cleanup, sh, PARAMS_PY, EVALUATE_PY, studyYaml, tinyHarnessRepo } from '../helpers/repo.ts';

function scripted(steps: Array<(ctx: ProposalContext) => { hypothesis: string; edits: Array<{ path: string; content: string }> }>): Proposer {
  let i = 0;
  return { name: 'scripted', propose: async (ctx) => (i < steps.length ? steps[i++]!(ctx) : null) };
}

const setKnob = (file: string, name: string, value: string) => (ctx: ProposalContext) => ({
  hypothesis: `${name} → ${value}`,
  edits: [{ path: file, content: ctx.files[file]!.replace(new RegExp(`^${name} = \\S+`, 'm'), `${name} = ${value}`) }],
});

/** the quadratic of test/helpers/repo.ts, deterministic, and 0.5 worse on the test split */
const SPLIT_EVALUATE_PY = `import os, re
src = open('params.py').read()
x = float(re.search(r'^X = (\\S+)', src, re.M).group(1))
n = int(re.search(r'^N = (\\S+)', src, re.M).group(1))
split = os.environ.get('AUTOAGENT_SPLIT', 'val')
loss = (x - 3.0) ** 2 + (n - 5) ** 2 + (0.5 if split == 'test' else 0.0)
print(f'METRIC loss={loss}')
`;

const opts = (extra: Partial<Parameters<typeof finalizeRun>[2]> = {}) => ({ unsafeNoSandbox: false, reporter: new MemoryReporter(), ...extra });

// ---------------------------------------------------------------------------------------------
// a finished command run: X → 2, N → 4, X → 0 (worse), X → 3: three kept changes, loss 13 → 1

let repo = '';
let db: DB;
let run: RunRow;
let kept: ExperimentRow[];
let head = '';
let status = '';

before(async () => {
  repo = makeRepo({ 'params.py': PARAMS_PY, 'evaluate.py': SPLIT_EVALUATE_PY, 'study.yaml': studyYaml() });
  const proposer = scripted([setKnob('params.py', 'X', '2.0'), setKnob('params.py', 'N', '4'), setKnob('params.py', 'X', '0.0'), setKnob('params.py', 'X', '3.0')]);
  const res = await startRun(join(repo, 'study.yaml'), { overrides: { experiments: 4 }, unsafeNoSandbox: false, reporter: new MemoryReporter(), proposer });
  assert.equal(res.status, 'finished', res.stopReason ?? '');
  db = openDb(res.dbPath);
  run = getRun(db, res.runId)!;
  kept = listExperiments(db, run.id).filter((e) => e.decision === 'kept');
  head = sh(repo, 'git', ['rev-parse', 'HEAD']);
  status = sh(repo, 'git', ['status', '--porcelain']);
});

after(() => {
  db?.close();
  if (repo) cleanup(repo);
});

const tree = (rev: string) => sh(repo, 'git', ['rev-parse', `${rev}^{tree}`]).trim();

test('finalize evaluates the final incumbent once on the test split, refuses a second time, and records a forced one', async () => {
  assert.deepEqual(kept.map((e) => [e.seq, e.metric]), [[1, 10], [2, 2], [4, 1]]);
  const reporter = new MemoryReporter();
  const r = await finalizeRun(db, run.id, { unsafeNoSandbox: false, reporter });
  const last = kept[kept.length - 1]!;
  const scored = { split: 'test', repeats: 1, seed: 1_000_000_001, text: 'scored the test split as the evaluator reads AUTOAGENT_SPLIT=test, 1 evaluation, seed 1000000001 (and once with it unset, at the same seed, to check it is honoured)' };
  assert.deepEqual(r, { run: run.id, commit: last.kept_commit, split: 'test', metric: 1.5, validation: 1, forced: false, scored, untrusted_split: false, branch: `autoagent/${run.id}-clean` });
  const rows = listFinalizations(db, run.id);
  assert.equal(rows.length, 1);
  assert.equal(rows[0]!.commit, last.kept_commit);
  assert.equal(rows[0]!.split, 'test');
  assert.equal(rows[0]!.metric, 1.5);
  assert.equal(rows[0]!.forced, 0);
  const details = JSON.parse(rows[0]!.details);
  assert.equal(details.experiment, last.seq);
  assert.deepEqual(details.env, { AUTOAGENT_SPLIT: 'test' });
  assert.equal(details.audit.ok, true);
  assert.ok(reporter.lines.some((l) => /test loss=1.5 \(validation 1\)/.test(l)), reporter.lines.join('\n'));
  // the evaluator honours AUTOAGENT_SPLIT: at the same seed, unset, it gives the validation score, not the test one
  assert.ok(reporter.lines.includes(scored.text), reporter.lines.join('\n'));
  assert.ok(!reporter.lines.some((l) => l.startsWith('WARNING')), reporter.lines.join('\n'));
  assert.deepEqual(details.scored, scored);
  assert.equal(details.untrusted_split, false);
  assert.deepEqual(details.split_check, { env: 'AUTOAGENT_SPLIT unset (as in the run)', seed: 1_000_000_001, status: 'ok', metric: 1, reason: null });

  await assert.rejects(finalizeRun(db, run.id, opts()), (e: Error) => {
    assert.match(e.message, new RegExp(`^run ${run.id} was already finalized \\(.*: test loss=1.5 on ${last.kept_commit!.slice(0, 8)}\\); the test split is evaluated once — pass --force`));
    assert.doesNotMatch(e.message, /\n/);
    return true;
  });
  assert.equal(listFinalizations(db, run.id).length, 1, 'a refused finalize records nothing');

  const forced = await finalizeRun(db, run.id, opts({ force: true, branch: false }));
  assert.equal(forced.forced, true);
  assert.equal(forced.metric, 1.5);
  assert.equal(forced.branch, undefined);
  const rows2 = listFinalizations(db, run.id);
  assert.equal(rows2.length, 2);
  assert.equal(rows2[1]!.forced, 1);
  const d2 = JSON.parse(rows2[1]!.details);
  assert.match(d2.forced_over[0], /1 earlier finalization\(s\)/);
  assert.notEqual(d2.seed, details.seed);
  // the user's checkout was never touched, no worktree is left
  assert.equal(sh(repo, 'git', ['rev-parse', 'HEAD']), head);
  assert.equal(sh(repo, 'git', ['status', '--porcelain']), status);
  assert.equal(sh(repo, 'git', ['worktree', 'list']).trim().split('\n').length, 1);
});

test('the clean branch has one commit per kept change with its evidence, ending on the run branch tree', async () => {
  const branch = `autoagent/${run.id}-clean`;
  const commits = sh(repo, 'git', ['rev-list', '--reverse', `${run.base_commit}..${branch}`]).split('\n').filter(Boolean);
  assert.equal(commits.length, kept.length);
  assert.equal(tree(branch), tree(run.branch));
  let parent = run.base_commit;
  commits.forEach((c, i) => {
    const e = kept[i]!;
    assert.equal(sh(repo, 'git', ['rev-parse', `${c}^`]).trim(), parent);
    assert.equal(tree(c), tree(e.kept_commit!), `commit ${i + 1} holds kept change #${e.seq}`);
    const msg = sh(repo, 'git', ['log', '-1', '--format=%B', c]);
    assert.equal(msg.split('\n')[0], e.hypothesis);
    assert.match(msg, new RegExp(`^Experiment: ${run.id} #${e.seq} \\(proposer scripted\\)$`, 'm'));
    assert.match(msg, new RegExp(`^Metric: loss ${e.incumbent_metric} → ${e.metric} \\(Δ -${e.improvement}, minimize\\)$`, 'm'));
    assert.match(msg, /^Evaluations: 2: \S+, \S+ vs incumbent #\d+ \d: /m);
    assert.match(msg, /^Margin: 0 \(improvement \S+ > margin\)$/m);
    assert.match(msg, new RegExp(`^Kept-commit: ${e.kept_commit}$`, 'm'));
    parent = c;
  });
  // the kept change #1 against the baseline's three evaluations
  assert.match(sh(repo, 'git', ['log', '-1', '--format=%B', commits[0]!]), /^Evaluations: 2: 10, 10 vs incumbent #0 3: 13, 13, 13$/m);
});

test('squash writes one commit listing every kept change; an existing branch name is refused unless forced', async () => {
  await assert.rejects(finalizeRun(db, run.id, opts({ force: false, branch: `autoagent/${run.id}-clean` })), /already finalized/);
  const r = await finalizeRun(db, run.id, opts({ force: true, branch: 'squashed', squash: true }));
  assert.equal(r.branch, 'squashed');
  const commits = sh(repo, 'git', ['rev-list', `${run.base_commit}..squashed`]).split('\n').filter(Boolean);
  assert.equal(commits.length, 1);
  assert.equal(sh(repo, 'git', ['rev-parse', 'squashed^']).trim(), run.base_commit);
  assert.equal(tree('squashed'), tree(run.branch));
  const msg = sh(repo, 'git', ['log', '-1', '--format=%B', 'squashed']);
  assert.match(msg, new RegExp(`^autoagent ${run.id}: loss 13 → 1 in 3 kept change\\(s\\)`));
  for (const e of kept) {
    assert.match(msg, new RegExp(`^#${e.seq}: ${e.hypothesis}$`, 'm'));
    assert.match(msg, new RegExp(`^  Kept-commit: ${e.kept_commit}$`, 'm'));
  }
  // the name is taken now: another finalize writing it needs --force (and then replaces it)
  const before = sh(repo, 'git', ['rev-parse', 'squashed']).trim();
  writeFileSync(join(repo, 'unrelated.txt'), 'x\n');
  try {
    const again = await finalizeRun(db, run.id, opts({ force: true, branch: 'squashed' }));
    assert.equal(again.branch, 'squashed');
    assert.notEqual(sh(repo, 'git', ['rev-parse', 'squashed']).trim(), before);
    const last = listFinalizations(db, run.id).at(-1)!;
    assert.ok(JSON.parse(last.details).forced_over.some((s: string) => s.startsWith('branch squashed existed at ')));
  } finally {
    rmSync(join(repo, 'unrelated.txt'));
  }
});

test('a command study whose evaluator ignores AUTOAGENT_SPLIT gets a warning, recorded and shown by `log`', async () => {
  // the evaluator of test/helpers/repo.ts: seeded noise, no split at all
  const r2 = makeRepo({ 'params.py': PARAMS_PY, 'evaluate.py': EVALUATE_PY, 'study.yaml': studyYaml("env: { NOISE: '0.05' }\n") });
  let d: DB | null = null;
  try {
    const res = await startRun(join(r2, 'study.yaml'), { overrides: { experiments: 1 }, unsafeNoSandbox: false, reporter: new MemoryReporter(), proposer: scripted([setKnob('params.py', 'X', '2.0')]) });
    assert.equal(res.status, 'finished', res.stopReason ?? '');
    const out: string[] = [];
    const io = { out: (t: string) => void out.push(t), err: () => undefined, errIsTTY: false };
    assert.equal(await finalizeCommand(res.runId, { db: res.dbPath, branch: false }, io), 0);
    const text = out.join('');
    assert.match(text, /^finalized \S+: loss on the sealed test split = \S+ \(validation \S+\) at \w{10}\nscored the test split as the evaluator reads AUTOAGENT_SPLIT=test, 1 evaluation, seed 1000000001 .*\nWARNING: the test score equals the validation score at the same seed: the evaluator may ignore AUTOAGENT_SPLIT; this is not a held-out score\n$/);
    d = openDb(res.dbPath);
    const row = listFinalizations(d, res.runId)[0]!;
    const details = JSON.parse(row.details);
    assert.equal(details.untrusted_split, true);
    assert.equal(details.split_check.metric, row.metric);
    // the noise is real: the test score is not simply the incumbent's validation mean
    assert.notEqual(row.metric, details.validation);
    assert.match(ledgerText(d, getRun(d, res.runId)!), /^!! UNTRUSTED TEST SCORE: the test score equals the validation score at the same seed: the evaluator may ignore AUTOAGENT_SPLIT; this is not a held-out score$/m);
    assert.match(ledgerText(d, getRun(d, res.runId)!), /^finalized .*: test loss=\S+ \(validation \S+\) at \w{8} · scored the test split as the evaluator reads AUTOAGENT_SPLIT=test/m);
    // --all is for harness runs
    await assert.rejects(finalizeRun(d, res.runId, opts({ force: true, all: true, branch: false })), /^UsageError: --all applies to harness runs \(it lifts harness.limit\); a command run scores its whole test split already$/);
  } finally {
    d?.close();
    cleanup(r2);
  }
});

test('a run that fails its audit is not finalized unless forced', async () => {
  const tip = sh(repo, 'git', ['rev-parse', run.branch]).trim();
  sh(repo, 'git', ['update-ref', '-d', `refs/heads/${run.branch}`]);
  try {
    const n = listFinalizations(db, run.id).length;
    // as if it had never been finalized (rolled back below)
    db.exec('BEGIN');
    try {
      db.prepare('DELETE FROM finalizations WHERE run_id = ?').run(run.id);
      await assert.rejects(finalizeRun(db, run.id, opts({ branch: false })), new RegExp(`^UserError: run ${run.id} fails its audit \\(chain: the run branch ${run.branch} is missing`));
      const r = await finalizeRun(db, run.id, opts({ branch: false, force: true }));
      assert.equal(r.forced, true);
      assert.deepEqual(JSON.parse(listFinalizations(db, run.id)[0]!.details).forced_over, ['a failed audit (1 problem(s))']);
    } finally {
      db.exec('ROLLBACK');
    }
    assert.equal(listFinalizations(db, run.id).length, n);
  } finally {
    sh(repo, 'git', ['update-ref', `refs/heads/${run.branch}`, tip]);
  }
  // a locked file changed in the checkout: refused, and even --force does not evaluate with it
  const n = listFinalizations(db, run.id).length;
  writeFileSync(join(repo, 'evaluate.py'), SPLIT_EVALUATE_PY.replace("print(f'METRIC loss={loss}')", "print('METRIC loss=0')"));
  db.exec('BEGIN');
  try {
    db.prepare('DELETE FROM finalizations WHERE run_id = ?').run(run.id);
    await assert.rejects(finalizeRun(db, run.id, opts({ branch: false })), /fails its audit \(locked-current: locked file evaluate.py changed since the run started/);
    await assert.rejects(finalizeRun(db, run.id, opts({ branch: false, force: true })), /^UserError: locked file evaluate.py changed since the run started \(sha256 \w{12} → \w{12}\): finalize does not evaluate with changed locked files/);
    assert.equal(listFinalizations(db, run.id).length, 0);
  } finally {
    db.exec('ROLLBACK');
    writeFileSync(join(repo, 'evaluate.py'), SPLIT_EVALUATE_PY);
  }
  assert.equal(listFinalizations(db, run.id).length, n);
});

// ---------------------------------------------------------------------------------------------
// a harness run: the test split is the benchmark's test tasks

test('a harness run is finalized on the benchmark test tasks, traced apart from its experiments', async () => {
  const server = await startMockOpenAI((body: { temperature?: number; messages: unknown }) => {
    const q = JSON.stringify(body.messages);
    const right = q.includes('2+2') ? '4' : q.includes('3+3') ? '6' : q.includes('6+6') ? '12' : '99';
    // right at temperature ≤ 0.5 (except on 7+7, never), else only on 2+2
    return openaiText((body.temperature ?? 1) <= 0.5 || right === '4' ? right : '0', { prompt_tokens: 20, completion_tokens: 2 });
  });
  const env = { OPENAI_BASE_URL: process.env.OPENAI_BASE_URL, OPENAI_API_KEY: process.env.OPENAI_API_KEY };
  process.env.OPENAI_BASE_URL = server.baseURL;
  process.env.OPENAI_API_KEY = 'test';
  const tasks = [
    { id: 'v1', split: 'val', input: { question: 'What is 2+2?' }, answer: '4' },
    { id: 'v2', split: 'val', input: { question: 'What is 3+3?' }, answer: '6' },
    { id: 't1', split: 'test', input: { question: 'What is 6+6?' }, answer: '12' },
    { id: 't2', split: 'test', input: { question: 'What is 7+7?' }, answer: '14' },
  ];
  const hrepo = tinyHarnessRepo(tasks, 0);
  let hdb: DB | null = null;
  try {
    const proposer = scripted([(ctx) => ({
      hypothesis: 'temperature 0.9 → 0.1',
      edits: [{ path: 'h/harness.yaml', content: ctx.files['h/harness.yaml']!.replace('temperature: 0.9', 'temperature: 0.1') }],
    })]);
    const res = await startRun(join(hrepo, 'study.yaml'), { overrides: {}, unsafeNoSandbox: false, reporter: new MemoryReporter(), proposer });
    assert.equal(res.status, 'finished', res.stopReason ?? '');
    hdb = openDb(res.dbPath);
    const exps = listExperiments(hdb, res.runId);
    assert.deepEqual(exps.map((e) => [e.decision, e.metric]), [['baseline', 0.5], ['kept', 1]]);
    const reporter = new MemoryReporter();
    const r = await finalizeRun(hdb, res.runId, opts({ reporter }));
    assert.equal(r.metric, 0.5);
    assert.equal(r.validation, 1);
    assert.equal(r.commit, exps[1]!.kept_commit);
    assert.deepEqual(r.scored, { split: 'test', tasks: 2, of: 2, limit: 0, repeats: 1, seed: 1_000_000_001, text: 'scored 2 of 2 test tasks (every test task), 1 evaluation, seed 1000000001' });
    assert.ok(reporter.lines.includes(r.scored.text), reporter.lines.join('\n'));
    const traces = tracesOf(hdb, { groupId: `${res.runId}/-1/0` });
    assert.deepEqual(traces.map((t) => [t.task_id, t.split, t.score]), [['t1', 'test', 1], ['t2', 'test', 0]]);
    assert.equal(JSON.parse(listFinalizations(hdb, res.runId)[0]!.details).traces_group, `${res.runId}/-1/0`);
    // the run's own traces never touched the test split
    assert.ok(tracesOf(hdb, { runId: res.runId }).filter((t) => t.experiment_seq! >= 0).every((t) => t.split === 'val'));
  } finally {
    hdb?.close();
    await server.close();
    for (const [k, v] of Object.entries(env)) if (v === undefined) delete process.env[k]; else process.env[k] = v;
    cleanup(hrepo);
  }
});

test('a harness finalize names how many test tasks it scored: the study\'s limit by default, all of them with --all', async () => {
  const server = await startMockOpenAI((body: { messages: unknown }) => openaiText(JSON.stringify(body.messages).includes('2+2') ? '4' : '0', { prompt_tokens: 20, completion_tokens: 2 }));
  const env = { OPENAI_BASE_URL: process.env.OPENAI_BASE_URL, OPENAI_API_KEY: process.env.OPENAI_API_KEY };
  process.env.OPENAI_BASE_URL = server.baseURL;
  process.env.OPENAI_API_KEY = 'test';
  const hrepo = tinyHarnessRepo([
    { id: 'v1', split: 'val', input: { question: 'What is 2+2?' }, answer: '4' },
    { id: 'v2', split: 'val', input: { question: 'What is 3+3?' }, answer: '6' },
    { id: 't1', split: 'test', input: { question: 'What is 6+6?' }, answer: '12' },
    { id: 't2', split: 'test', input: { question: 'What is 7+7?' }, answer: '14' },
    { id: 't3', split: 'test', input: { question: 'What is 2+2?' }, answer: '4' },
  ], 0);
  writeFileSync(join(hrepo, 'study.yaml'), readFileSync(join(hrepo, 'study.yaml'), 'utf8').replace('concurrency: 1', 'concurrency: 1, limit: 1'));
  sh(hrepo, 'git', ['-c', 'user.name=t', '-c', 'user.email=t@t', 'commit', '-q', '-am', 'limit 1']);
  let hdb: DB | null = null;
  try {
    const res = await startRun(join(hrepo, 'study.yaml'), { overrides: {}, unsafeNoSandbox: false, reporter: new MemoryReporter(), proposer: scripted([(ctx) => ({
      hypothesis: 'temperature 0.9 → 0.1', edits: [{ path: 'h/harness.yaml', content: ctx.files['h/harness.yaml']!.replace('temperature: 0.9', 'temperature: 0.1') }],
    })]) });
    assert.equal(res.status, 'finished', res.stopReason ?? '');
    hdb = openDb(res.dbPath);
    const reporter = new MemoryReporter();
    const limited = await finalizeRun(hdb, res.runId, opts({ reporter, branch: false }));
    assert.equal(limited.scored.text, 'scored 1 of 3 test tasks (harness.limit 1; `--all` scores all 3), 1 evaluation, seed 1000000001');
    assert.deepEqual([limited.scored.tasks, limited.scored.of, limited.scored.limit], [1, 3, 1]);
    assert.ok(reporter.lines.includes(limited.scored.text), reporter.lines.join('\n'));
    assert.deepEqual(tracesOf(hdb, { groupId: `${res.runId}/-1/0` }).map((t) => t.task_id), ['t1']);
    const all = await finalizeRun(hdb, res.runId, opts({ force: true, all: true, branch: false }));
    assert.equal(all.scored.text, 'scored 3 of 3 test tasks (--all), 1 evaluation, seed 1000000002');
    assert.equal(all.metric, 1 / 3);
    assert.deepEqual(tracesOf(hdb, { groupId: `${res.runId}/-1/1` }).map((t) => t.task_id).sort(), ['t1', 't2', 't3']);
    assert.equal(JSON.parse(listFinalizations(hdb, res.runId)[1]!.details).scored.limit, 0);
  } finally {
    hdb?.close();
    await server.close();
    for (const [k, v] of Object.entries(env)) if (v === undefined) delete process.env[k]; else process.env[k] = v;
    cleanup(hrepo);
  }
});

// ---------------------------------------------------------------------------------------------
// a trainer run, with stand-ins for torch: the locked evaluator is called with --split test

const FAKE_PREPARE = `import argparse, json, os, sys
p = argparse.ArgumentParser()
sub = p.add_subparsers(dest='cmd', required=True)
b = sub.add_parser('build'); b.add_argument('--corpus'); b.add_argument('--format'); b.add_argument('--cache')
e = sub.add_parser('evaluate')
for a in ('--cache', '--model', '--split', '--tokens', '--device'): e.add_argument(a)
args = p.parse_args()
if args.cmd == 'build':
    for s in ('train', 'val', 'test'):
        os.makedirs(os.path.join(args.cache, s), exist_ok=True)
        open(os.path.join(args.cache, s, s + '.bin'), 'w').write(s)
    sys.exit(0)
loss = json.load(open(args.model))['loss']
print('RESULT ' + json.dumps({'status': 'ok', 'val_bpb': loss + (0.5 if args.split == 'test' else 0.0), 'split': args.split}))
`;

const FAKE_TRAIN = `import json, os, re
X = 1.0
os.makedirs(os.environ['AUTOAGENT_OUTPUT_DIR'], exist_ok=True)
json.dump({'loss': (X - 3.0) ** 2}, open(os.path.join(os.environ['AUTOAGENT_OUTPUT_DIR'], 'model.pt'), 'w'))
`;

test('a trainer run is finalized with a fresh training and the locked evaluator on --split test', async () => {
  const bin = mkdtempSync(join(tmpdir(), 'aa-fakepy-'));
  const fakePython = join(bin, 'python');
  writeFileSync(fakePython, `#!/bin/sh\nif [ "$1" = "-c" ] && printf '%s' "$2" | grep -q 'import json, torch'; then\n  echo '{"torch": "0-stand-in", "cuda": false, "device_name": null}'\n  exit 0\nfi\nexec python3 "$@"\n`);
  chmodSync(fakePython, 0o755);
  const saved = process.env.AUTOAGENT_PYTHON;
  process.env.AUTOAGENT_PYTHON = fakePython;
  const trepo = makeRepo({
    'prepare.py': FAKE_PREPARE,
    'train.py': FAKE_TRAIN,
    'corpus.txt': 'some text\n',
    'study.yaml': `name: fake-trainer
kind: trainer
editable: [train.py]
locked: [prepare.py, corpus.txt]
metric: { name: val_bpb, direction: minimize }
budget: { experiment_seconds: 5, grace_seconds: 5, evaluate_seconds: 30, experiments: 1 }
acceptance: { baseline_repeats: 1, confirm_repeats: 0 }
trainer: { corpus: corpus.txt, eval_tokens: 64 }
`,
  });
  let tdb: DB | null = null;
  try {
    const res = await startRun(join(trepo, 'study.yaml'), { overrides: {}, unsafeNoSandbox: false, reporter: new MemoryReporter(), proposer: scripted([setKnob('train.py', 'X', '2.0')]) });
    assert.equal(res.status, 'finished', res.stopReason ?? '');
    tdb = openDb(res.dbPath);
    const exps = listExperiments(tdb, res.runId);
    assert.deepEqual(exps.map((e) => [e.decision, e.metric]), [['baseline', 4], ['kept', 1]]);
    const r = await finalizeRun(tdb, res.runId, opts());
    assert.equal(r.metric, 1.5);
    assert.equal(r.validation, 1);
    assert.equal(r.scored.text, 'scored the test split on 64 tokens (trainer.eval_tokens 64) after a fresh training, 1 evaluation, seed 1000000001');
    assert.equal(r.untrusted_split, false);
    const details = JSON.parse(listFinalizations(tdb, res.runId)[0]!.details);
    assert.equal(details.telemetry.eval.split, 'test');
    assert.equal(details.scored.tokens, 64);
  } finally {
    tdb?.close();
    if (saved === undefined) delete process.env.AUTOAGENT_PYTHON; else process.env.AUTOAGENT_PYTHON = saved;
    cleanup(trepo);
    rmSync(bin, { recursive: true, force: true });
  }
});

test('a kept change whose parent is not the clean head is cherry-picked by its diff (pickTree)', async () => {
  const r = makeRepo({ 'a.txt': 'a\n', 'b.txt': 'b\n' });
  try {
    const base = sh(r, 'git', ['rev-parse', 'HEAD']).trim();
    const commitWith = (file: string, content: string) => {
      sh(r, 'git', ['checkout', '-q', '--detach', base]);
      writeFileSync(join(r, file), content);
      sh(r, 'git', ['-c', 'user.name=t', '-c', 'user.email=t@t', 'commit', '-q', '-am', file]);
      return sh(r, 'git', ['rev-parse', 'HEAD']).trim();
    };
    const k1 = commitWith('a.txt', 'A\n');
    const k2 = commitWith('b.txt', 'B\n');
    const t1 = await pickTree(r, tree0(r, base), k1, base);
    assert.equal(t1, tree0(r, k1), 'on its own parent: the kept tree itself');
    const t2 = await pickTree(r, t1, k2, base);
    assert.equal(sh(r, 'git', ['show', `${t2}:a.txt`]), 'A\n');
    assert.equal(sh(r, 'git', ['show', `${t2}:b.txt`]), 'B\n');
    const conflicting = commitWith('a.txt', 'other\n');
    await assert.rejects(pickTree(r, t2, conflicting, base), /^UserError: the change of \w{8} does not apply onto tree \w{8}/);
  } finally {
    cleanup(r);
  }
});

function tree0(repo: string, rev: string): string {
  return sh(repo, 'git', ['rev-parse', `${rev}^{tree}`]).trim();
}
