/**
 * The meta-agent inside the loop: llm and command proposers end to end against scripted model
 * servers and a fake coding-agent CLI, several candidates per round, the seed and whitespace
 * guards, per-proposal and run budgets, and what `show` and `log` print about proposals.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync, chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startRun } from '../../src/loop.ts';
import { MemoryReporter } from '../../src/report.ts';
import { auditRun } from '../../src/audit.ts';
import { openDb, listExperiments, getRun, getTrace, proposalOf, tracesOf, evaluationsOf } from '../../traces/index.ts';
import { ledgerText, showText, showData } from '../../src/views.ts';
import { main } from '../../src/cli.ts';
import type { Proposer, ProposalContext } from '../../meta-agent/index.ts';
import { startMockAnthropic, startMockOpenAI, anthropicText, anthropicToolUse, openaiText, type MockServer } from '../helpers/mock-llm.ts';
import { makeRepo, cleanup, sh, PARAMS_PY, EVALUATE_PY, studyYaml, tinyHarnessRepo } from '../helpers/repo.ts';

const opts = (extra: Partial<Parameters<typeof startRun>[1]> = {}) => ({
  overrides: {}, unsafeNoSandbox: false, reporter: new MemoryReporter(), ...extra,
});

const saved: Record<string, string | undefined> = {};
before(() => {
  for (const k of ['ANTHROPIC_API_KEY', 'ANTHROPIC_BASE_URL', 'OPENAI_API_KEY', 'OPENAI_BASE_URL']) saved[k] = process.env[k];
  process.env.ANTHROPIC_API_KEY = 'test-meta-key';
  process.env.OPENAI_API_KEY = 'test-task-key';
});
after(() => {
  for (const [k, v] of Object.entries(saved)) {
    if (v === undefined) delete process.env[k];
    else process.env[k] = v;
  }
});

function scripted(steps: Array<(ctx: ProposalContext) => { hypothesis: string; edits: Array<{ path: string; content: string }> } | null>): Proposer {
  let i = 0;
  return { name: 'scripted', propose: async (ctx) => (i < steps.length ? steps[i++]!(ctx) : null) };
}

const setX = (x: string) => (ctx: ProposalContext) => ({
  hypothesis: `X → ${x}`, edits: [{ path: 'params.py', content: ctx.files['params.py']!.replace(/^X = \S+/m, `X = ${x}`) }],
});

/** the text of a request's last user message (tool results included) */
function lastUser(body: { messages: Array<{ role: string; content: unknown }> }): string {
  const m = [...body.messages].reverse().find((x) => x.role === 'user');
  return JSON.stringify(m?.content ?? '');
}

const proposalJson = (p: Record<string, unknown>) => '```json\n' + JSON.stringify(p, null, 2) + '\n```';

test('llm proposer on a command study: tools, a kept edit, a repaired answer, and show / log of the proposals', async () => {
  const repo = makeRepo({ 'params.py': PARAMS_PY, 'evaluate.py': EVALUATE_PY, 'study.yaml': studyYaml() });
  let server: MockServer | null = null;
  try {
    server = await startMockAnthropic((body, i) => {
      if (i === 0) return anthropicToolUse('read_file', { path: 'evaluate.py' }, undefined, { text: 'Let me read the evaluator.' });
      if (i === 1) {
        // the tool result reached the model: the locked evaluator's text
        assert.match(lastUser(body), /loss = \(x - 3\.0\) \*\* 2/);
        return anthropicText('The loss is (x-3)^2 + (n-5)^2.\n' + proposalJson({
          hypothesis: 'X 1.0 → 3.0: the loss is a parabola centred at 3',
          cited_traces: [], expected_effect: 'loss falls by 4',
          edits: [{ path: 'params.py', search: 'X = 1.0', replace: 'X = 3.0' }],
        }), { input_tokens: 900, output_tokens: 120 });
      }
      if (i === 2) return anthropicText('I think N should go up.'); // no JSON: the proposer asks again once
      return anthropicText(proposalJson({
        hypothesis: 'N 2 → 5: the second term is centred at 5', cited_traces: [], expected_effect: 'loss falls to 0',
        edits: [{ path: 'params.py', search: 'N = 2', replace: 'N = 5' }],
      }));
    });
    writeFileSync(join(repo, 'study.yaml'), studyYaml(`proposer: { type: llm, base_url: ${server.url}, model: claude-sonnet-4-6, max_turns: 3 }\n`).replace('experiments: 8', 'experiments: 2'));
    const res = await startRun(join(repo, 'study.yaml'), opts());
    assert.equal(res.status, 'finished', res.stopReason ?? '');
    const db = openDb(res.dbPath);
    const run = getRun(db, res.runId)!;
    const exps = listExperiments(db, run.id);
    assert.deepEqual(exps.map((e) => [e.proposer, e.decision]), [['baseline', 'baseline'], ['llm', 'kept'], ['llm', 'kept']]);
    assert.equal(exps[2]!.metric, 0);
    // the direction reached the model as its system prompt (the simplicity rule is in program.md)
    assert.match(JSON.stringify(server.requests[0]!.body.system), /simpl/i);
    // the second proposal was repaired: the repair request says what was wrong
    assert.equal(server.requests.length, 4);
    assert.match(lastUser(server.requests[3]!.body), /json/i);
    // the proposal record and its conversation trace
    const p1 = proposalOf(exps[1]!)!;
    assert.ok(p1.trace_id);
    assert.equal(p1.expected_effect, 'loss falls by 4');
    assert.ok(p1.tokens >= 1020, `tokens ${p1.tokens}`);
    const conv = getTrace(db, p1.trace_id!)!;
    assert.equal(conv.trace.role, 'proposal');
    assert.equal(conv.trace.experiment_seq, 1);
    assert.deepEqual(conv.spans.map((s) => s.kind).sort(), ['model', 'model', 'tool']);
    // meta-agent traces are not task traces: they stay out of per-task views
    assert.equal(tracesOf(db, { runId: run.id }).length, 0);
    // show: hypothesis, expected effect, spend, the conversation with the tool call
    const text = showText(db, run, exps[1]!);
    assert.match(text, /hypothesis: X 1\.0 → 3\.0/);
    assert.match(text, /expected: {3}loss falls by 4/);
    assert.match(text, /proposer: {3}llm · [\d.k]+ tokens, \$\d\.\d{4}/);
    assert.match(text, /meta-agent conversation \(trace /);
    assert.match(text, /read_file/);
    // log: the spend line and a proposal column
    const log = ledgerText(db, run);
    assert.match(log, /spend: task-agent 0 tokens \$0\.0000 · meta-agent [\d.k]+ tokens \$\d\.\d{4} over 2 proposal\(s\)/);
    assert.match(log, /proposal/);
    // the audit is clean
    const audit = await auditRun(db, run.id);
    assert.ok(audit.ok, audit.problems.join('\n'));
    db.close();
  } finally {
    await server?.close();
    cleanup(repo);
  }
});

test('llm proposer on a harness study cites a failing trace it read; `show` resolves it and `traces ID` opens it', async () => {
  const tasks = [
    { id: 't1', split: 'val', input: { question: 'What is 2+2?' }, answer: '4' },
    { id: 't2', split: 'val', input: { question: 'What is 3+3?' }, answer: '6' },
    { id: 't3', split: 'val', input: { question: 'What is 5+5?' }, answer: '10' },
  ];
  // the task-agent: right on everything at temperature ≤ 0.5, else only on 2+2
  const taskServer = await startMockOpenAI((body: { temperature?: number; messages: unknown }) => {
    const q = JSON.stringify(body.messages);
    const right = q.includes('2+2') ? '4' : q.includes('3+3') ? '6' : '10';
    return openaiText((body.temperature ?? 1) <= 0.5 || right === '4' ? right : '0', { prompt_tokens: 20, completion_tokens: 2 });
  });
  let cited = '';
  const metaServer = await startMockAnthropic((body, i) => {
    const first = JSON.stringify(body.messages[0]);
    if (i === 0) {
      // the digest lists the incumbent's failed tasks with their trace ids
      const m = /t2[\s\S]*?([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})/.exec(first);
      assert.ok(m, 'the digest names the failing task t2 and its trace');
      cited = m![1]!;
      return anthropicToolUse('read_trace', { id: cited });
    }
    assert.match(lastUser(body), /What is 3\+3\?/); // the transcript of the failing task
    return anthropicText(proposalJson({
      hypothesis: 'temperature 0.9 → 0.1: the wrong answers are sampling noise',
      cited_traces: [cited, 'no-such-trace'], expected_effect: 'all three tasks pass',
      edits: [{ path: 'h/harness.yaml', search: 'temperature: 0.9', replace: 'temperature: 0.1' }],
    }));
  });
  process.env.OPENAI_BASE_URL = taskServer.baseURL;
  const repo = tinyHarnessRepo(tasks, 1);
  try {
    const study = sh(repo, 'cat', ['study.yaml']) + `proposer: { type: llm, base_url: ${metaServer.url}, max_turns: 2 }\n`;
    writeFileSync(join(repo, 'study.yaml'), study);
    const res = await startRun(join(repo, 'study.yaml'), opts());
    assert.equal(res.status, 'finished', res.stopReason ?? '');
    const db = openDb(res.dbPath);
    const run = getRun(db, res.runId)!;
    const exps = listExperiments(db, run.id);
    assert.deepEqual(exps.map((e) => e.decision), ['baseline', 'kept']);
    const p = proposalOf(exps[1]!)!;
    assert.deepEqual(p.cited, [cited]); // the unknown id is dropped
    const d = showData(db, run, exps[1]!);
    assert.equal(d.proposal!.cited[0]!.task_id, 't2');
    assert.equal(d.proposal!.cited[0]!.pass, false);
    const text = showText(db, run, exps[1]!);
    assert.match(text, new RegExp(`${cited} · task t2 of #0 · score 0 \\(failed\\)`));
    // the cited id opens with `autoagent traces ID`, and so does the meta-agent's own trace
    const out: string[] = [];
    const io = { out: (t: string) => void out.push(t), err: (t: string) => void out.push(t), errIsTTY: false };
    assert.equal(await main(['traces', cited, '--db', res.dbPath], io), 0);
    assert.match(out.join(''), /What is 3\+3\?/);
    out.length = 0;
    assert.equal(await main(['traces', p.trace_id!.slice(0, 8), '--db', res.dbPath], io), 0);
    assert.match(out.join(''), /read_trace/);
    // spend split: the task-agent's traces and the meta-agent's
    assert.match(ledgerText(db, run), /spend: task-agent \d[\d.k]* tokens .* · meta-agent \d[\d.k]* tokens .* over 1 proposal/);
    const audit = await auditRun(db, run.id);
    assert.ok(audit.ok, audit.problems.join('\n'));
    db.close();
  } finally {
    delete process.env.OPENAI_BASE_URL;
    await taskServer.close();
    await metaServer.close();
    cleanup(repo);
  }
});

test('several candidates per round: the best that passes is kept, the others are discarded, each tested at α / k', async () => {
  const repo = makeRepo({ 'params.py': PARAMS_PY, 'evaluate.py': EVALUATE_PY, 'study.yaml': studyYaml('proposer: { type: search, candidates: 3 }\n') });
  try {
    // round 1: X → 2.0 (loss 10), 3.0 (9), 2.5 (9.25) against the baseline's 13; round 2: N → 5 (0), N → 4 (1), X → 9 (36)
    const proposer = scripted([setX('2.0'), setX('3.0'), setX('2.5'),
      (ctx) => ({ hypothesis: 'N → 5', edits: [{ path: 'params.py', content: ctx.files['params.py']!.replace('N = 2', 'N = 5') }] }),
      (ctx) => ({ hypothesis: 'N → 4', edits: [{ path: 'params.py', content: ctx.files['params.py']!.replace('N = 2', 'N = 4') }] }),
      setX('9.0'),
    ]);
    const res = await startRun(join(repo, 'study.yaml'), opts({ proposer, overrides: { experiments: 6 } }));
    assert.equal(res.status, 'finished', res.stopReason ?? '');
    const db = openDb(res.dbPath);
    const run = getRun(db, res.runId)!;
    const exps = listExperiments(db, run.id);
    assert.deepEqual(exps.map((e) => [e.seq, e.round, e.decision]), [
      [0, null, 'baseline'], [1, 1, 'discarded'], [2, 1, 'kept'], [3, 1, 'discarded'], [4, 2, 'kept'], [5, 2, 'discarded'], [6, 2, 'discarded'],
    ]);
    // every candidate of a round has the same parent: the incumbent the round started from
    assert.equal(new Set(exps.slice(1, 4).map((e) => e.parent_commit)).size, 1);
    assert.equal(exps[4]!.parent_commit, exps[2]!.kept_commit);
    assert.match(exps[1]!.reason!, /but #2 of the same round did better/);
    assert.match(exps[2]!.reason!, /the best of 3 that passed in its round/);
    assert.match(exps[6]!.reason!, /first evaluation/);
    // the branch holds the two winners only
    assert.deepEqual(sh(repo, 'git', ['rev-list', '--reverse', `${run.base_commit}..${run.branch}`]).split('\n').filter(Boolean), [exps[2]!.kept_commit, exps[4]!.kept_commit]);
    const audit = await auditRun(db, run.id);
    assert.ok(audit.ok, audit.problems.join('\n'));
    db.close();
  } finally {
    cleanup(repo);
  }
});

test('the round test is stricter than a single test: α / k widens the margin on noisy metrics', async () => {
  const { roundAlpha } = await import('../../src/loop.ts');
  const row = (seq: number, round: number | null, candidate: string | null) => ({ seq, round, candidate_commit: candidate }) as never;
  const exps = [row(0, null, 'b'), row(1, 1, 'c1'), row(2, 1, 'c2'), row(3, 1, null), row(4, 1, 'c4'), row(5, 2, 'c5')];
  assert.equal(roundAlpha(0.03, exps, exps[1]), 0.01); // three evaluated candidates (the rejected one does not count)
  assert.equal(roundAlpha(0.03, exps, exps[5]), 0.03);
  assert.equal(roundAlpha(0.03, exps, row(9, null, 'x')), 0.03); // experiments from before rounds existed
});

test('guards: a seed-only change is rejected unless allowed, a whitespace-only change is not evaluated', async () => {
  const params = PARAMS_PY + 'SEED = 0\n';
  const reseed = (ctx: ProposalContext) => ({ hypothesis: 'reseed', edits: [{ path: 'params.py', content: ctx.files['params.py']!.replace('SEED = 0', 'SEED = 1') }] });
  const spaces = (ctx: ProposalContext) => ({ hypothesis: 'tidy', edits: [{ path: 'params.py', content: ctx.files['params.py']!.replace('X = 1.0', 'X =   1.0   ') + '\n\n' }] });
  for (const allow of [false, true]) {
    const repo = makeRepo({ 'params.py': params, 'evaluate.py': EVALUATE_PY, 'study.yaml': studyYaml(allow ? 'proposer: { type: search, allow_seed_changes: true }\n' : '') });
    try {
      const reporter = new MemoryReporter();
      const res = await startRun(join(repo, 'study.yaml'), opts({ reporter, proposer: scripted([reseed, spaces, setX('3.0')]), overrides: { experiments: 2 } }));
      const db = openDb(res.dbPath);
      const exps = listExperiments(db, res.runId);
      assert.deepEqual(exps.map((e) => e.hypothesis), ['baseline (the starting commit, evaluated repeatedly to measure noise)', 'reseed', 'X → 3.0']);
      if (allow) {
        assert.equal(exps[1]!.decision, 'discarded'); // evaluated: the seed does not change this deterministic loss
        assert.ok(evaluationsOf(db, exps[1]!.id).length > 0);
      } else {
        assert.equal(exps[1]!.decision, 'rejected');
        assert.match(exps[1]!.reason!, /only changes a random seed/);
        assert.equal(evaluationsOf(db, exps[1]!.id).length, 0);
      }
      assert.equal(exps[2]!.decision, 'kept');
      db.close();
    } finally {
      cleanup(repo);
    }
  }
});

test('failed proposals: invalid answers stop the run after five in a row, each conversation kept with its error', async () => {
  const repo = makeRepo({ 'params.py': PARAMS_PY, 'evaluate.py': EVALUATE_PY, 'study.yaml': studyYaml() });
  const server = await startMockAnthropic(() => anthropicText('no idea'));
  try {
    writeFileSync(join(repo, 'study.yaml'), studyYaml(`proposer: { type: llm, base_url: ${server.url}, max_turns: 1 }\n`));
    const res = await startRun(join(repo, 'study.yaml'), opts());
    assert.equal(res.status, 'finished');
    assert.match(res.stopReason!, /the llm proposer failed 5 times in a row/);
    const db = openDb(res.dbPath);
    assert.equal(listExperiments(db, res.runId).length, 1); // the baseline only
    const convs = tracesOf(db, { runId: res.runId, role: 'proposal' });
    assert.equal(convs.length, 5);
    for (const c of convs) assert.equal(c.status, 'error');
    assert.equal(server.requests.length, 10); // each proposal: one answer and one repair
    db.close();
  } finally {
    await server.close();
    cleanup(repo);
  }
});

test('a model that repeats an evaluated candidate is told so in its next context, and repeats count as failures', async () => {
  const repo = makeRepo({ 'params.py': PARAMS_PY, 'evaluate.py': EVALUATE_PY, 'study.yaml': studyYaml() });
  const answer = anthropicText(proposalJson({ hypothesis: 'X 1.0 → 3.0', cited_traces: [], expected_effect: 'lower loss', edits: [{ path: 'params.py', search: 'X = 1.0', replace: 'X = 3.0' }] }));
  const server = await startMockAnthropic(() => answer);
  try {
    writeFileSync(join(repo, 'study.yaml'), studyYaml(`proposer: { type: llm, base_url: ${server.url}, max_turns: 0, candidates: 2 }\n`));
    const res = await startRun(join(repo, 'study.yaml'), opts());
    // round 1: #1, then the same files again, skipped five times: #1 is still evaluated (kept);
    // round 2 starts with one more failure (the edit no longer applies) and the run stops
    assert.match(res.stopReason!, /the llm proposer failed 6 times in a row/);
    const db = openDb(res.dbPath);
    assert.deepEqual(listExperiments(db, res.runId).map((e) => e.decision), ['baseline', 'kept']);
    db.close();
    assert.equal(server.requests.length, 8);
    assert.doesNotMatch(JSON.stringify(server.requests[1]!.body.messages[0]), /made no experiment/);
    assert.match(JSON.stringify(server.requests[2]!.body.messages[0]), /made no experiment[\s\S]*X 1\.0 → 3\.0\\" was skipped: these exact files were already evaluated as #1/);
  } finally {
    await server.close();
    cleanup(repo);
  }
});

test('budgets: the per-proposal token budget fails a proposal; the run budget stops the run during a proposal', async () => {
  const repo = makeRepo({ 'params.py': PARAMS_PY, 'evaluate.py': EVALUATE_PY, 'study.yaml': studyYaml() });
  // every answer is a tool call costing 1,000 tokens: the second call of a proposal is over a 1,500-token budget
  const server = await startMockAnthropic(() => anthropicToolUse('read_file', { path: 'params.py' }, undefined, { usage: { input_tokens: 900, output_tokens: 100 } }));
  try {
    writeFileSync(join(repo, 'study.yaml'), studyYaml(`proposer: { type: llm, base_url: ${server.url}, max_turns: 5, tokens: 1500 }\n`));
    const reporter = new MemoryReporter();
    const res = await startRun(join(repo, 'study.yaml'), opts({ reporter, overrides: { experiments: 1 } }));
    assert.match(res.stopReason!, /failed 5 times in a row \(last: the proposal used its 1500 tokens/);
    assert.equal(server.requests.length, 10);
    assert.ok(reporter.lines.some((e: string) => /proposal failed: the proposal used its 1500 tokens \(proposer\.tokens\) \(meta-agent 2\.0k tokens/.test(e)), reporter.lines.join('\n'));

    writeFileSync(join(repo, 'study.yaml'), studyYaml(`proposer: { type: llm, base_url: ${server.url}, max_turns: 5 }\nbudget: { experiments: 3, tokens: 2500 }\n`).replace(/budget: \{ experiment_seconds: 20, experiments: 8 \}\n/, ''));
    const res2 = await startRun(join(repo, 'study.yaml'), opts());
    assert.equal(res2.status, 'stopped');
    assert.match(res2.stopReason!, /token budget reached \(3000 of 2500\); raise budget.tokens/);
    const db = openDb(res2.dbPath);
    const convs = tracesOf(db, { runId: res2.runId, role: 'proposal' });
    assert.equal(convs.reduce((s, c) => s + c.input_tokens + c.output_tokens, 0), 3000); // what was spent is on record
    db.close();
  } finally {
    await server.close();
    cleanup(repo);
  }
});

test('command proposer: a fake coding-agent CLI edits the worktree; its output is the proposal trace', async () => {
  const repo = makeRepo({ 'params.py': PARAMS_PY, 'evaluate.py': EVALUATE_PY, 'study.yaml': studyYaml() });
  const bin = mkdtempSync(join(tmpdir(), 'fake-agent-'));
  try {
    const cli = join(bin, 'fake-agent');
    // edits params.py, and on its second call also the locked evaluator (that proposal is rejected)
    writeFileSync(cli, `#!/bin/sh
cat > /dev/null
n=$(cat "${bin}/count" 2>/dev/null || echo 0); n=$((n+1)); echo $n > "${bin}/count"
test -f "$AUTOAGENT_TASK_FILE" || { echo "no task file" >&2; exit 3; }
if [ $n -eq 1 ]; then sed -i 's/^X = 1.0/X = 3.0/' params.py; echo "HYPOTHESIS: X 1.0 -> 3.0 (read the evaluator)"; echo "EXPECTED: loss -4"; fi
if [ $n -eq 2 ]; then echo "print('METRIC loss=-100')" > evaluate.py; sed -i 's/^N = 2/N = 5/' params.py; echo "HYPOTHESIS: N 2 -> 5"; fi
`);
    chmodSync(cli, 0o755);
    writeFileSync(join(repo, 'study.yaml'), studyYaml(`proposer: { type: command, command: ${cli}, timeout_seconds: 30 }\n`).replace('experiments: 8', 'experiments: 2'));
    const res = await startRun(join(repo, 'study.yaml'), opts());
    assert.equal(res.status, 'finished', res.stopReason ?? '');
    const db = openDb(res.dbPath);
    const run = getRun(db, res.runId)!;
    const exps = listExperiments(db, run.id);
    assert.deepEqual(exps.map((e) => [e.proposer, e.decision]), [['baseline', 'baseline'], ['command', 'kept'], ['command', 'rejected']]);
    assert.equal(exps[1]!.hypothesis, 'X 1.0 -> 3.0 (read the evaluator)');
    assert.match(exps[2]!.reason!, /locked path evaluate\.py/);
    const text = showText(db, run, exps[1]!);
    assert.match(text, /expected: {3}loss -4/);
    assert.match(text, /meta-agent conversation/);
    assert.match(text, /fake-agent/);
    // the user's checkout is untouched and no worktree is left
    assert.equal(sh(repo, 'git', ['status', '--porcelain']).includes('params.py'), false);
    assert.equal(sh(repo, 'git', ['worktree', 'list']).trim().split('\n').length, 1);
    db.close();
  } finally {
    rmSync(bin, { recursive: true, force: true });
    cleanup(repo);
  }
});
