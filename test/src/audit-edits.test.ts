/**
 * Auditing trace-driven edits, through the real CLI on real runs:
 *  - a harness run with an llm proposer (scripted Anthropic server) reading a scripted task model
 *    (scripted OpenAI server): change #1 cites the failing v-add-1 and v-add-2 and fixes them;
 *    change #2 cites v-mul-3 but fixes v-sub-4 and v-sub-5 instead, and by design of the task model
 *    only on validation; #3 pastes a validation question and its answer into the prompt (warned,
 *    discarded). `audit --edits`, `finalize --ablate`, the report, `blame`, `show` / `log` markers.
 *  - the memorisation check with `acceptance.contamination: reject` (the loop with a fake kind).
 *  - a command run: no tasks, said plainly; the ablation with a change that does not revert cleanly.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { startRun } from '../../src/loop.ts';
import { MemoryReporter } from '../../src/report.ts';
import { CONTAMINATION_REJECTION } from '../../src/contamination.ts';
import { openDb, listExperiments, getRun, evaluationsOf, proposalOf, type DB, type RunRow, type ExperimentRow } from '../../traces/index.ts';
import type { Proposer, ProposalContext } from '../../meta-agent/index.ts';
import type { KindAdapter } from '../../src/kinds/types.ts';
import { startMockAnthropic, startMockOpenAI, anthropicText, openaiText, type MockServer } from '../helpers/mock-llm.ts';
import { makeRepo, cleanup, sh, PARAMS_PY, studyYaml } from '../helpers/repo.ts';
import { cli } from '../helpers/cli.ts';

const q = (text: string) => `${text} Reply with the number.`;
/** T: right at temperature ≤ 0.5; H: right when the system prompt says "Subtract carefully" (validation tasks only); never; always */
const TASKS = [
  { id: 'v-add-1', split: 'val', input: { question: q('What is 12 plus 30?') }, answer: '42', group: 'T' },
  { id: 'v-add-2', split: 'val', input: { question: q('What is 7 plus 8?') }, answer: '15', group: 'T' },
  { id: 'v-mul-3', split: 'val', input: { question: q('What is 9 times 9?') }, answer: '81', group: 'never' },
  { id: 'v-sub-4', split: 'val', input: { question: q('What is 50 minus 8?') }, answer: '42', group: 'H' },
  { id: 'v-sub-5', split: 'val', input: { question: q('What is 20 minus 5?') }, answer: '15', group: 'H' },
  { id: 'v-one-6', split: 'val', input: { question: q('What is 1 plus 1?') }, answer: '2', group: 'always' },
  { id: 's-add-1', split: 'test', input: { question: q('What is 3 plus 4?') }, answer: '7', group: 'T' },
  { id: 's-add-2', split: 'test', input: { question: q('What is 6 plus 5?') }, answer: '11', group: 'T' },
  { id: 's-sub-3', split: 'test', input: { question: q('What is 9 minus 3?') }, answer: '6', group: 'never' },
  { id: 's-one-4', split: 'test', input: { question: q('What is 2 plus 2?') }, answer: '4', group: 'always' },
];

function harnessFiles(extraStudy = '', acceptance = '{ baseline_repeats: 2, confirm_repeats: 1 }'): Record<string, string> {
  return {
    'h/harness.yaml': 'provider: openai\nmodel: gpt-4.1-mini\nsystem: prompts/system.md\nmax_steps: 2\ntemperature: 0.9\ntools: []\n',
    'h/prompts/system.md': 'Answer with a number only.\n',
    'bench/benchmark.yaml': 'name: sums\ndescription: sums with a sealed test split\ntasks: tasks.jsonl\nscorer: { type: exact }\n',
    'bench/tasks.jsonl': TASKS.map(({ group: _, ...t }) => JSON.stringify(t)).join('\n') + '\n',
    'study.yaml': `name: sums
kind: harness
editable: [h/harness.yaml, h/prompts/*.md]
locked: [bench/**]
metric: { name: score, direction: maximize }
harness: { dir: h, benchmark: bench, split: val, concurrency: 1 }
budget: { experiments: 3 }
acceptance: ${acceptance}
${extraStudy}`,
  };
}

/** the task model: deterministic per task group, prompt and temperature */
function taskModel(): Promise<MockServer> {
  return startMockOpenAI((body: { temperature?: number; messages: Array<{ role: string; content: unknown }> }) => {
    const system = JSON.stringify(body.messages.filter((m) => m.role === 'system').map((m) => m.content));
    const user = JSON.stringify(body.messages.filter((m) => m.role === 'user').map((m) => m.content));
    const t = TASKS.find((x) => user.includes(String(x.input.question)));
    const right = t && (t.group === 'always' || (t.group === 'T' && (body.temperature ?? 1) <= 0.5) || (t.group === 'H' && t.split === 'val' && system.includes('Subtract carefully')));
    return openaiText(right ? t.answer : '0', { prompt_tokens: 20 + Math.round(system.length / 4), completion_tokens: 2 });
  });
}

const proposalJson = (p: Record<string, unknown>) => '```json\n' + JSON.stringify(p, null, 2) + '\n```';
const traceOf = (digest: string, task: string) => new RegExp(`--- FAILED task ${task} · [^\\n]*? · trace ([0-9a-f-]{36})`).exec(digest)?.[1];

/** the meta-agent: #1 cites the failing additions, #2 cites the multiplication, #3 pastes a question and its answer */
function metaAgent(cited: string[][]): Promise<MockServer> {
  return startMockAnthropic((body: { messages: Array<{ content: unknown }> }, i: number) => {
    const digest = JSON.stringify(body.messages[0]!.content).replace(/\\n/g, '\n');
    if (i === 0) {
      const ids = [traceOf(digest, 'v-add-1'), traceOf(digest, 'v-add-2')];
      assert.ok(ids.every(Boolean), 'the digest lists the failing additions with their traces');
      cited.push(ids as string[]);
      return anthropicText(proposalJson({
        hypothesis: 'temperature 0.9 → 0.1: the additions fail from sampling noise', cited_traces: ids, expected_effect: 'v-add-1 and v-add-2 pass',
        edits: [{ path: 'h/harness.yaml', search: 'temperature: 0.9', replace: 'temperature: 0.1' }],
      }));
    }
    if (i === 1) {
      const id = traceOf(digest, 'v-mul-3');
      assert.ok(id, 'the digest lists v-mul-3');
      cited.push([id!]);
      return anthropicText(proposalJson({
        hypothesis: 'Subtract carefully: v-mul-3 is an arithmetic slip', cited_traces: [id], expected_effect: 'v-mul-3 passes',
        edits: [{ path: 'h/prompts/system.md', search: 'Answer with a number only.', replace: 'Answer with a number only.\nSubtract carefully.' }],
      }));
    }
    return anthropicText(proposalJson({
      hypothesis: 'a worked example', cited_traces: [], expected_effect: 'v-mul-3 passes',
      edits: [{ path: 'h/prompts/system.md', search: 'Subtract carefully.', replace: 'Subtract carefully.\nExample: What is 9 times 9? Reply with the number. Answer: 81' }],
    }));
  });
}

const saved: Record<string, string | undefined> = {};
const servers: MockServer[] = [];
let repo = '';
let db: DB;
let run: RunRow;
let exps: ExperimentRow[];
const cited: string[][] = [];

before(async () => {
  for (const k of ['ANTHROPIC_API_KEY', 'OPENAI_API_KEY', 'OPENAI_BASE_URL']) saved[k] = process.env[k];
  process.env.ANTHROPIC_API_KEY = 'test-meta-key';
  process.env.OPENAI_API_KEY = 'test-task-key';
  const task = await taskModel();
  const meta = await metaAgent(cited);
  servers.push(task, meta);
  process.env.OPENAI_BASE_URL = task.baseURL;
  repo = makeRepo(harnessFiles(`proposer: { type: llm, base_url: ${meta.url}, max_turns: 0 }\n`));
  const res = await startRun(join(repo, 'study.yaml'), { overrides: {}, unsafeNoSandbox: false, reporter: new MemoryReporter() });
  assert.equal(res.status, 'finished', res.stopReason ?? '');
  db = openDb(res.dbPath);
  run = getRun(db, res.runId)!;
  exps = listExperiments(db, run.id);
});

after(async () => {
  db?.close();
  for (const s of servers) await s.close();
  for (const [k, v] of Object.entries(saved)) if (v === undefined) delete process.env[k]; else process.env[k] = v;
  if (repo) cleanup(repo);
});

test('the scripted harness run: two kept changes, and a discarded one the memorisation check warned about', () => {
  assert.deepEqual(exps.map((e) => [e.seq, e.decision, e.metric]), [[0, 'baseline', 1 / 6], [1, 'kept', 0.5], [2, 'kept', 5 / 6], [3, 'discarded', 5 / 6]]);
  assert.deepEqual(proposalOf(exps[1]!)!.cited, cited[0]);
  assert.equal(exps[1]!.contamination, null);
  const c = JSON.parse(exps[3]!.contamination!);
  assert.equal(c.verdict, 'warn');
  assert.deepEqual(c.tasks, ['v-mul-3']);
  assert.deepEqual(c.hits.map((h: { field: string; line: number }) => [h.field, h.line]), [['input', 3], ['answer', 3]]);
  // a warning is not a rejection: the candidate was evaluated, and its reason (which the proposer reads) names no task
  assert.equal(evaluationsOf(db, exps[3]!.id).length, 1);
  assert.doesNotMatch(exps[3]!.reason!, /v-mul-3|81/);
});

test('audit --edits: the change that fixed its cited tasks, the one that fixed others, with counts; exit 0', async () => {
  const r = await cli(['audit', '--edits', '--no-rescore'], repo);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /#1 {2}temperature 0\.9 → 0\.1[^\n]*\n {4}claim: {5}cited 2 trace\(s\) of task\(s\) v-add-1, v-add-2 · expected: v-add-1 and v-add-2 pass/);
  assert.match(r.stdout, /flips: {5}2 fail → pass, 0 pass → fail, 4 unchanged of 6 task\(s\)\n {17}fixed {2}v-add-1 0\/2 → 2\/2 passed, every repeat, p 0\.167 {2}\(cited\)\n {17}fixed {2}v-add-2 0\/2 → 2\/2 passed/);
  assert.match(r.stdout, /verdict: {3}cited tasks fixed 2\/2\n/);
  assert.match(r.stdout, /#2 {2}Subtract carefully[\s\S]*?cited {2}v-mul-3 0\/2 → 0\/2 passed: still failing[\s\S]*?verdict: {3}fixed none of the cited tasks; gains elsewhere \(v-sub-4, v-sub-5\)\n/);
  // the longer prompt costs more per task run
  assert.match(r.stdout, /#2[\s\S]*?cost: {6}30 → 35 tokens per task run/);
  assert.match(r.stdout, /flagged by the memorisation check, not kept:\n {2}#3 discarded \(warn\): the diff writes data of 1 validation task into the editable files: v-mul-3 \(input, answer; h\/prompts\/system\.md line 3\)/);
  assert.match(r.stdout, /chain of evidence: ok/);

  const j = await cli(['audit', '--edits', '--no-rescore', '--json'], repo);
  assert.equal(j.code, 0);
  const a = JSON.parse(j.stdout);
  assert.deepEqual(a.changes.map((c: { seq: number; cited_tasks: string[]; verdict: string }) => [c.seq, c.cited_tasks, c.verdict]), [
    [1, ['v-add-1', 'v-add-2'], 'cited tasks fixed 2/2'],
    [2, ['v-mul-3'], 'fixed none of the cited tasks; gains elsewhere (v-sub-4, v-sub-5)'],
  ]);
  assert.deepEqual(a.changes[1].flips.map((f: { task: string; from: string; to: string; before: object; after: object; cited: boolean }) => [f.task, f.from, f.to, f.before, f.after, f.cited]), [
    ['v-sub-4', 'fail', 'pass', { passed: 0, runs: 2 }, { passed: 2, runs: 2 }, false],
    ['v-sub-5', 'fail', 'pass', { passed: 0, runs: 2 }, { passed: 2, runs: 2 }, false],
  ]);
  assert.equal(a.changes[0].evidence.values.length, 2);
  assert.equal(a.chain.ok, true);
});

test('show and log mark the candidate the memorisation check warned about', async () => {
  const show = await cli(['show', '3'], repo);
  assert.match(show.stdout, /!! memorisation check \(warning\): the diff writes data of 1 validation task into the editable files: v-mul-3/);
  const log = await cli(['log'], repo);
  assert.match(log.stdout, /3 +\S+ +0\.83333 +0 +discarded .*!! benchmark data · a worked example/);
  assert.match(log.stdout, /!! benchmark data: the memorisation check found validation task data in the diff of #3 \(warn\)/);
  const json = JSON.parse((await cli(['log', '--json'], repo)).stdout);
  assert.equal(json.rows.find((r: { seq: number }) => r.seq === 3).contamination.verdict, 'warn');
});

test('blame: each line of the prompt and the harness with the experiment that wrote it, and why', async () => {
  const j = await cli(['blame', 'h/prompts/system.md', '--json'], repo);
  assert.equal(j.code, 0, j.stderr);
  const lines = JSON.parse(j.stdout);
  assert.deepEqual(lines.map((l: { line: number; text: string; experiment: { seq: number } | null }) => [l.line, l.text, l.experiment?.seq ?? null]), [
    [1, 'Answer with a number only.', null], [2, 'Subtract carefully.', 2],
  ]);
  assert.equal(lines[1].experiment.hypothesis, 'Subtract carefully: v-mul-3 is an arithmetic slip');
  assert.deepEqual(lines[1].experiment.cited, [{ id: cited[1]![0], task_id: 'v-mul-3' }]);
  assert.equal(lines[1].experiment.evaluations, 2);
  const t = await cli(['blame', join(repo, 'h/harness.yaml')], repo);
  assert.match(t.stdout, /^ {2}#1 5 {2}temperature: 0\.1$/m);
  assert.match(t.stdout, /^base 1 {2}provider: openai$/m);
  assert.match(t.stdout, /#1 {2}temperature 0\.9 → 0\.1[^\n]*\n {4}score 0\.16667 → 0\.5, Δ \+0\.33333, margin 0, 2 evaluation\(s\) vs 2/);
  assert.match(t.stdout, new RegExp(`cited: ${cited[0]![0]} \\(task v-add-1\\), ${cited[0]![1]} \\(task v-add-2\\)`));
  const missing = await cli(['blame', 'h/nope.md'], repo);
  assert.equal(missing.code, 2);
  assert.match(missing.stderr, /^autoagent: h\/nope\.md: not a file at the head of run /);
});

test('finalize --ablate: says what it will spend, measures each change on the test split; the report shows validation Δ vs test Δ', async () => {
  const r = await cli(['finalize', '--ablate'], repo);
  assert.equal(r.code, 0, r.stderr);
  // the plan comes before the first evaluation
  const plan = r.stderr.indexOf('ablating 2 kept change(s) of run');
  assert.ok(plan >= 0 && plan < r.stderr.indexOf('[ablate 1/6]'), r.stderr);
  assert.match(r.stderr, /3 variant\(s\) \(the final incumbent #2, and 2 with one kept change reverted\) × 2 repeat\(s\) = 6 evaluation\(s\)\n {2}4 test task\(s\) per evaluation: 24 task run\(s\); at the run's mean of \d+ tokens/);
  assert.match(r.stdout, /the final incumbent #2 \(\w+\) score 0\.75 over 2 evaluation\(s\)/);
  assert.match(r.stdout, /#1 +\+0\.33333 +\+0\.5 +0 +0\.25, 0\.25 +helps on test/);
  assert.match(r.stdout, /#2 +\+0\.33333 +±0 +0 +0\.75, 0\.75 +no measurable effect on test: it helped validation only/);
  // once: a second ablation refuses without --force; the one-time finalize is still there to use
  const again = await cli(['finalize', '--ablate'], repo);
  assert.equal(again.code, 1);
  assert.match(again.stderr, /was already ablated .*pass --force to run it again/);
  assert.equal((db.prepare('SELECT count(*) n FROM finalizations').get() as { n: number }).n, 0);

  const edits = JSON.parse((await cli(['audit', '--edits', '--no-rescore', '--json'], repo)).stdout);
  assert.deepEqual(edits.changes.map((c: { ablation: { verdict: string } }) => c.ablation.verdict), ['helps on test', 'no measurable effect on test']);

  const out = join(repo, 'report.html');
  assert.equal((await cli(['report', '-o', out], repo)).code, 0);
  const html = readFileSync(out, 'utf8');
  assert.match(html, /<th class="num">validation Δ<\/th>[\s\S]*<th class="num">test Δ \(leave-one-out\)<\/th>/);
  assert.match(html, /<td class="num test-delta" data-seq="1" data-verdict="helps on test"><span[^>]*>\+0\.5<\/span>/);
  assert.match(html, /<td class="num test-delta" data-seq="2" data-verdict="no measurable effect on test"><span[^>]*>±0<\/span>[\s\S]*?it helped validation only/);
  assert.match(html, /<tr class="edit-row" data-seq="2">[\s\S]*?fixed none of the cited tasks; gains elsewhere \(v-sub-4, v-sub-5\)/);

  const fin = await cli(['finalize', '--no-branch'], repo);
  assert.equal(fin.code, 0, fin.stderr);
  assert.match(fin.stdout, /on the sealed test split = 0\.75/);
});

test('audit --edits exits 1 on a broken chain, and still says what each change did', async () => {
  const tip = sh(repo, 'git', ['rev-parse', run.branch]).trim();
  sh(repo, 'git', ['update-ref', `refs/heads/${run.branch}`, run.base_commit]);
  try {
    const r = await cli(['audit', '--edits', '--no-rescore'], repo);
    assert.equal(r.code, 1);
    assert.match(r.stdout, /verdict: {3}cited tasks fixed 2\/2/);
    assert.match(r.stdout, /chain of evidence: BROKEN — \d+ problem\(s\):\n {2}- chain: /);
  } finally {
    sh(repo, 'git', ['update-ref', `refs/heads/${run.branch}`, tip]);
  }
});

test('acceptance.contamination: reject — a candidate pasting a validation answer is rejected before evaluation, and the proposer is not told which', async () => {
  const r2 = makeRepo(harnessFiles('', '{ baseline_repeats: 1, confirm_repeats: 0, contamination: reject }'));
  let evaluated = 0;
  const kind: KindAdapter = {
    kind: 'harness', selfReported: false,
    prepare: async () => ({ lockedExternal: [], environment: {} }),
    evaluate: async () => ((evaluated++), { status: 'ok', metric: 0.5, reason: null, commandMs: 1, evaluatorMs: 0, exitCode: 0, stdoutTail: '', stderrTail: '', telemetry: null }),
  };
  const seen: string[] = [];
  const steps = [
    (ctx: ProposalContext) => ({ hypothesis: 'remember one', edits: [{ path: 'h/prompts/system.md', content: ctx.files['h/prompts/system.md'] + 'If asked "What is 50 minus 8? Reply with the number." say 42.\n' }] }),
    (ctx: ProposalContext) => {
      seen.push(JSON.stringify(ctx.ledger));
      return { hypothesis: 'be brief', edits: [{ path: 'h/prompts/system.md', content: ctx.files['h/prompts/system.md'] + 'Be brief.\n' }] };
    },
  ];
  let i = 0;
  const proposer: Proposer = { name: 'scripted', propose: async (ctx) => (i < steps.length ? steps[i++]!(ctx) : null) };
  try {
    const res = await startRun(join(r2, 'study.yaml'), { overrides: { experiments: 2 }, unsafeNoSandbox: false, reporter: new MemoryReporter(), proposer, kind });
    assert.equal(res.status, 'finished', res.stopReason ?? '');
    const d = openDb(res.dbPath);
    const e = listExperiments(d, res.runId);
    assert.deepEqual(e.map((x) => x.decision), ['baseline', 'rejected', 'discarded']);
    assert.equal(e[1]!.reason, CONTAMINATION_REJECTION);
    assert.equal(evaluationsOf(d, e[1]!.id).length, 0);
    assert.equal(evaluated, 2, 'the baseline and the clean candidate only');
    assert.deepEqual(JSON.parse(e[1]!.contamination!).tasks, ['v-sub-4']);
    assert.equal(JSON.parse(e[1]!.contamination!).verdict, 'reject');
    assert.equal(e[2]!.contamination, null);
    // what the next proposal read says it was rejected, not which task or answer matched
    assert.match(seen[0]!, /rejected by the memorisation check/);
    assert.doesNotMatch(seen[0]!, /v-sub-4|50 minus 8 is|"42"/);
    d.close();
    const show = await cli(['show', '1'], r2);
    assert.match(show.stdout, /!! memorisation check \(rejected\): the diff writes data of 1 validation task into the editable files: v-sub-4 \(input, answer; h\/prompts\/system\.md line 2\)/);
  } finally {
    cleanup(r2);
  }
});

/** the quadratic of test/helpers/repo.ts, deterministic, and 0.5 worse on the test split */
const SPLIT_EVALUATE_PY = `import os, re
src = open('params.py').read()
x = float(re.search(r'^X = (\\S+)', src, re.M).group(1))
n = int(re.search(r'^N = (\\S+)', src, re.M).group(1))
loss = (x - 3.0) ** 2 + (n - 5) ** 2 + (0.5 if os.environ.get('AUTOAGENT_SPLIT') == 'test' else 0.0)
print(f'METRIC loss={loss}')
`;

test('a command run: no tasks, said plainly; the ablation marks a change that does not revert cleanly', async () => {
  const r3 = makeRepo({ 'params.py': PARAMS_PY, 'evaluate.py': SPLIT_EVALUATE_PY, 'study.yaml': studyYaml().replace('baseline_repeats: 3, min_delta: 0, confirm_repeats: 1', 'baseline_repeats: 2, min_delta: 0, confirm_repeats: 0') });
  const set = (name: string, value: string) => (ctx: ProposalContext) => ({
    hypothesis: `${name} → ${value}`, edits: [{ path: 'params.py', content: ctx.files['params.py']!.replace(new RegExp(`^${name} = \\S+`, 'm'), `${name} = ${value}`) }],
  });
  const steps = [set('X', '2.0'), set('N', '4'), set('X', '3.0')];
  let i = 0;
  const proposer: Proposer = { name: 'scripted', propose: async (ctx) => (i < steps.length ? steps[i++]!(ctx) : null) };
  try {
    const res = await startRun(join(r3, 'study.yaml'), { overrides: { experiments: 3 }, unsafeNoSandbox: false, reporter: new MemoryReporter(), proposer });
    assert.equal(res.status, 'finished', res.stopReason ?? '');
    const a = await cli(['audit', '--edits'], r3);
    assert.equal(a.code, 0, a.stdout);
    assert.match(a.stdout, /note: a command run has no tasks: per-task flips, cited tasks and cost per task do not apply/);
    assert.match(a.stdout, /note: the memorisation check does not apply: a command run has no benchmark tasks/);
    assert.match(a.stdout, /#1 {2}X → 2\.0 {3}\(scripted; against #0\)\n {4}evidence: {2}loss 13 → 10, Δ -3 > margin 0 · this: 10 \(1 evaluation\) · incumbent #0: 13, 13 \(2 evaluations\)\n {4}verdict: {3}no tasks to check \(a command run\): kept on its evaluations alone/);
    assert.doesNotMatch(a.stdout, /flips:|cost:/);

    const ab = await cli(['finalize', '--ablate', '--repeats', '1', '--json'], r3);
    assert.equal(ab.code, 0, ab.stderr);
    assert.match(ab.stderr, /not evaluated: #1 \(does not revert cleanly from the final incumbent\)/);
    const res2 = JSON.parse(ab.stdout);
    assert.deepEqual(res2.final.values, [1.5]);
    assert.deepEqual(res2.noise, { sd: 0, df: 0 });
    assert.deepEqual(res2.changes.map((c: { seq: number; revert: string | null; values: number[]; test_improvement: number | null; verdict: string }) => [c.seq, c.revert, c.values, c.test_improvement, c.verdict]), [
      [1, null, [], null, 'does not revert cleanly'],
      [2, 'without-context', [9.5], 8, 'helps on test'],
      [3, 'clean', [2.5], 1, 'helps on test'],
    ]);
    // the leave-one-out commits are pinned, and hold the final incumbent without that change
    assert.match(sh(r3, 'git', ['show', `refs/autoagent/${res.runId}/ablate/2:params.py`]), /^X = 3\.0 .*\nN = 2 /m);
    const text = await cli(['audit', '--edits', '--json'], r3);
    const changes = JSON.parse(text.stdout).changes;
    assert.equal(changes[0].ablation.verdict, 'does not revert cleanly');
    assert.equal(changes[0].flips, null);
  } finally {
    cleanup(r3);
  }
});
