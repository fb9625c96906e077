import { test } from 'node:test';
import assert from 'node:assert/strict';
import { openDb, type DB } from '../../traces/db.ts';
import { insertRun, insertExperiment, decideExperiment, insertEvaluation, type Decision } from '../../traces/ledger.ts';
import { insertTrace, insertSpans, finishTrace } from '../../traces/traces.ts';
import type { SpanRecord, TraceRecord } from '../../traces/types.ts';
import { StoreHistory, cutMiddle, CHARS_PER_TOKEN } from '../../meta-agent/history.ts';
import { sparkline } from '../../base/format.ts';

// ---------------------------------------------------------------------------------------------
// fixtures

const T0 = 1_700_000_000_000;
const MARKER = /\[… (\d+) characters cut …\]/;

function addRun(db: DB, id: string, kind: string, metric = 'score', direction: 'maximize' | 'minimize' = 'maximize'): void {
  insertRun(db, {
    id, name: id, kind, study_path: 'study.yaml', study_json: '{}', study_text: '', config_hash: 'h', repo: '/repo', base_commit: 'base0000',
    branch: `autoagent/${id}`, lock_manifest: '{}', metric_name: metric, direction, self_reported: 0, unsafe_no_sandbox: 0, environment: null,
  });
}

function addExperiment(db: DB, runId: string, seq: number, decision: Decision, hypothesis: string, metric: number | null, reason = ''): number {
  const e = insertExperiment(db, {
    run_id: runId, seq, parent_commit: `p${seq}`, candidate_commit: `c${seq}`, proposer: seq === 0 ? 'baseline' : 'llm', hypothesis, meta: null,
    edits: '[]', diff: seq === 0 ? '' : `--- a/prompt.md\n+++ b/prompt.md\n@@ -1 +1 @@\n-old ${seq}\n+new ${seq}\n`, files_hash: `f${seq}`,
  });
  decideExperiment(db, e.id, {
    decision, reason: reason || `${decision} because`, metric, incumbent_metric: null, improvement: null, margin: null,
    kept_commit: decision === 'kept' ? `k${seq}` : null, wall_ms: 1000, inside_ms: 900,
  });
  return e.id;
}

function addEval(db: DB, experimentId: number, repeat: number, over: Partial<Parameters<typeof insertEvaluation>[1]> = {}): void {
  insertEvaluation(db, {
    experiment_id: experimentId, repeat, seed: repeat + 1, status: 'ok', metric: 0.5, reason: null, command_ms: 60_000, evaluator_ms: 2000,
    exit_code: 0, stdout_tail: '', stderr_tail: '', telemetry: null, ...over,
  });
}

interface TaskRun {
  id: string;
  runId: string;
  seq: number | null;
  task: string;
  repeat: number;
  score: number;
  pass: boolean;
  /** a word that appears only in this trace's tool output */
  word: string;
  role?: 'task' | 'proposal';
  status?: 'ok' | 'error';
}

const SYSTEM = 'You answer geography questions. ' + 'Always check a source before you answer. '.repeat(6).trim();
const REASONING = (t: TaskRun) => `I should look up the capital before answering task ${t.task}; guessing failed last time.`;
const TOOL_OUT = (t: TaskRun) => `lookup result for ${t.task}: ${t.word} is the city you want. ` + 'Background facts about the region follow. '.repeat(12);
const FEEDBACK = (t: TaskRun) => (t.pass ? `correct: expected Paris, found Paris (${t.task})` : `wrong: expected Paris, found ${t.word} (${t.task})`);
const FINAL = (t: TaskRun) => `The capital is ${t.pass ? 'Paris' : t.word}.`;

function addTask(db: DB, t: TaskRun): void {
  const trace: TraceRecord = {
    id: t.id, role: t.role ?? 'task', run_id: t.runId, experiment_seq: t.seq, group_id: `${t.runId}/${t.seq}/${t.repeat}`, task_id: t.task,
    repeat: t.repeat, benchmark: 'geo', split: 'val', harness: 'react', status: 'ok', score: null, pass: null, output: null, error: null,
    started_at: T0, ended_at: T0, input_tokens: 0, output_tokens: 0, cache_read_tokens: 0, cache_write_tokens: 0, cost_usd: 0,
  };
  insertTrace(db, trace);
  const span = (id: string, parent: string | null, kind: SpanRecord['kind'], name: string, from: number, to: number, over: Partial<SpanRecord>): SpanRecord => ({
    id, trace_id: t.id, parent_id: parent, kind, name, status: 'ok', started_at: T0 + from, ended_at: T0 + to, input: null, output: null, error: null,
    input_tokens: 0, output_tokens: 0, cache_read_tokens: 0, cache_write_tokens: 0, cost_usd: 0, attributes: {}, ...over,
  });
  const user = { role: 'user', content: [{ type: 'text', text: `What is the capital of France? (task ${t.task})` }] };
  const r1 = [
    { type: 'reasoning', text: REASONING(t) },
    { type: 'text', text: 'Let me look it up.' },
    { type: 'tool_use', id: 'tu1', name: 'lookup', input: { query: 'capital of France' } },
  ];
  insertSpans(db, [
    span('a', null, 'agent', `react on ${t.task}`, 0, 900, { input: { task: t.task }, output: { output: FINAL(t) } }),
    span('m1', 'a', 'model', 'model call 1', 10, 100, {
      input: { model: 'm', system: SYSTEM, messages: [user] }, output: { content: r1, stop_reason: 'tool_use' },
      attributes: { model: 'm' },
    }),
    span('k1', 'a', 'tool', 'lookup', 110, 120, { input: { query: 'capital of France' }, output: TOOL_OUT(t), attributes: { tool_use_id: 'tu1' } }),
    span('m2', 'a', 'model', 'model call 2', 130, 200, {
      input: { model: 'm', system: SYSTEM, messages: [user, { role: 'assistant', content: r1 }, { role: 'user', content: [{ type: 'tool_result', tool_use_id: 'tu1', content: TOOL_OUT(t) }] }] },
      output: { content: [{ type: 'text', text: FINAL(t) }], stop_reason: 'end_turn' }, attributes: { model: 'm' },
    }),
    span('sc', 'a', 'scoring', 'exact-match', 800, 810, { input: { output: FINAL(t) }, output: { score: t.score, pass: t.pass, feedback: FEEDBACK(t) } }),
  ]);
  assert.ok(finishTrace(db, t.id, { status: t.status ?? 'ok', ended_at: T0 + 1000, score: t.score, pass: t.pass, output: FINAL(t), error: t.status === 'error' ? 'tool loop exceeded 20 steps' : null }));
}

/**
 * run-h (harness): #0 baseline, #1 kept (the incumbent), #2 discarded. Incumbent: t-a fails twice
 * (score 0), t-b fails once (score 0.5), t-c, t-d, t-e pass. #2 broke t-c (regressed) and still fails t-a.
 * Also a proposal trace of run-h and a task trace of another run, both with the word "zanzibar".
 */
function harnessStore(): DB {
  const db = openDb(':memory:');
  addRun(db, 'run-h', 'harness');
  addRun(db, 'run-x', 'harness');
  addExperiment(db, 'run-h', 0, 'baseline', 'baseline', 0.4);
  const e1 = addExperiment(db, 'run-h', 1, 'kept', 'ask for a lookup before answering', 0.7);
  const e2 = addExperiment(db, 'run-h', 2, 'discarded', 'drop the lookup tool to save tokens', 0.3, 'no improvement: 0.3 vs 0.7');
  addEval(db, e1, 0);
  addEval(db, e2, 0);
  const inc: Array<[string, number, number, boolean, string]> = [
    ['t-a', 0, 0, false, 'zanzibar'], ['t-a', 1, 0, false, 'zanzibar'],
    ['t-b', 0, 0, false, 'lyon'], ['t-b', 1, 1, true, 'paris'],
    ['t-c', 0, 1, true, 'paris'], ['t-c', 1, 1, true, 'paris'],
    ['t-d', 0, 1, true, 'paris'], ['t-d', 1, 1, true, 'paris'],
    ['t-e', 0, 1, true, 'paris'], ['t-e', 1, 1, true, 'paris'],
  ];
  for (const [task, repeat, score, pass, word] of inc) addTask(db, { id: `h1-${task}-${repeat}`, runId: 'run-h', seq: 1, task, repeat, score, pass, word });
  // t-a's first repeat also has an error status
  addTask(db, { id: 'h2-t-a-0', runId: 'run-h', seq: 2, task: 't-a', repeat: 0, score: 0, pass: false, word: 'marseille', status: 'error' });
  addTask(db, { id: 'h2-t-c-0', runId: 'run-h', seq: 2, task: 't-c', repeat: 0, score: 0, pass: false, word: 'toulouse' });
  addTask(db, { id: 'h2-t-d-0', runId: 'run-h', seq: 2, task: 't-d', repeat: 0, score: 1, pass: true, word: 'paris' });
  addTask(db, { id: 'h0-t-a-0', runId: 'run-h', seq: 0, task: 't-a', repeat: 0, score: 0, pass: false, word: 'nantes' });
  addTask(db, { id: 'prop-1', runId: 'run-h', seq: 2, task: 'proposal', repeat: 0, score: 0, pass: false, word: 'zanzibar', role: 'proposal' });
  addTask(db, { id: 'x1-t-a-0', runId: 'run-x', seq: 1, task: 't-a', repeat: 0, score: 0, pass: false, word: 'zanzibar' });
  return db;
}

function history(db: DB, over: Partial<ConstructorParameters<typeof StoreHistory>[0]> = {}): StoreHistory {
  return new StoreHistory({ db, runId: 'run-h', kind: 'harness', incumbentSeq: 1, readFile: async () => null, ...over });
}

// ---------------------------------------------------------------------------------------------
// cutting

test('cutMiddle keeps head and tail, names exactly how many characters it cut, and never exceeds the limit', () => {
  const text = Array.from({ length: 200 }, (_, i) => `line ${i} ${'x'.repeat(i % 17)}`).join('\n');
  for (const max of [60, 100, 333, 1000, 2500]) {
    const out = cutMiddle(text, max);
    assert.ok(out.length <= max, `${out.length} > ${max}`);
    const m = MARKER.exec(out);
    assert.ok(m, `no marker at ${max}`);
    const rawHead = out.slice(0, m.index);
    const rawTail = out.slice(m.index + m[0].length);
    const n = Number(m[1]);
    // the marker sits on its own line: a line break either side may be the text's own or added
    const fits = [rawHead, rawHead.replace(/\n$/, '')].some((head) =>
      [rawTail, rawTail.replace(/^\n/, '')].some((tail) => tail.length > 0 && text.startsWith(head) && text.endsWith(tail) && head.length + n + tail.length === text.length),
    );
    assert.ok(fits, `at ${max}: head + ${n} cut + tail is not the text`);
  }
  assert.equal(cutMiddle('short', 100), 'short');
  const tailOnly = cutMiddle(text, 300, 0);
  assert.ok(tailOnly.startsWith('[… '), 'a tail cut starts with the marker');
  assert.ok(tailOnly.endsWith('line 199 ' + 'x'.repeat(199 % 17)));
});

test('cutMiddle does not split a surrogate pair', () => {
  const text = '😀'.repeat(500);
  for (const max of [50, 51, 52, 99, 100]) {
    const out = cutMiddle(text, max);
    assert.ok(out.length <= max);
    assert.ok(!/[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/.test(out), `lone surrogate at ${max}`);
  }
});

// ---------------------------------------------------------------------------------------------
// reads

test('diff and failingTasks: worst first, only failing repeats, only this experiment', () => {
  const db = harnessStore();
  const h = history(db);
  assert.match(h.diff(1)!, /\+new 1/);
  assert.equal(h.diff(0), '');
  assert.equal(h.diff(42), null);
  assert.deepEqual(h.failingTasks(1), [
    { task_id: 't-a', score: 0, trace_ids: ['h1-t-a-0', 'h1-t-a-1'] },
    { task_id: 't-b', score: 0.5, trace_ids: ['h1-t-b-0'] },
  ]);
  assert.deepEqual(h.failingTasks(2).map((t) => t.task_id), ['t-a', 't-c']);
  assert.deepEqual(h.failingTasks(42), []);
  // another run with the same seq and task ids is not mixed in
  assert.ok(!h.failingTasks(1).some((t) => t.trace_ids.includes('x1-t-a-0')));
});

test('trace renders the transcript: reasoning, tool call and output, scorer feedback, final answer', () => {
  const db = harnessStore();
  const h = history(db);
  const t = h.trace('h1-t-a-0')!;
  assert.ok(t.startsWith('task t-a · repeat 0'));
  for (const s of ['I should look up the capital before answering task t-a', 'tool_use lookup', 'zanzibar is the city you want', 'wrong: expected Paris, found zanzibar (t-a)', 'The capital is zanzibar.']) {
    assert.ok(t.includes(s), `missing ${s}`);
  }
  assert.doesNotMatch(t, MARKER);
  assert.ok(t.length <= 12_000);
});

test('trace cut to maxChars keeps the header and the result line, with a marker', () => {
  const db = harnessStore();
  const h = history(db);
  const full = h.trace('h1-t-a-0', 100_000)!;
  for (const max of [300, 700, 1200]) {
    assert.ok(full.length > max);
    const t = h.trace('h1-t-a-0', max)!;
    assert.ok(t.length <= max, `${t.length} > ${max}`);
    // shorter text blocks first (the renderer marks each cut block), then a cut in the middle
    if (max < 1000) assert.match(t, MARKER);
    else assert.ok(MARKER.test(t) || /… \[\d+ more chars\]/.test(t), t);
    assert.ok(t.startsWith('task t-a · repeat 0'), 'head kept');
    assert.ok(t.endsWith('result: ok · score 0 · fail · wrong: expected Paris, found zanzibar (t-a)'), `tail kept: …${t.slice(-80)}`);
  }
});

test('trace and hasTrace: unknown ids, other runs and proposal traces are not visible', () => {
  const db = harnessStore();
  const h = history(db);
  assert.equal(h.hasTrace('h1-t-a-0'), true);
  for (const id of ['nope', 'x1-t-a-0', 'prop-1']) {
    assert.equal(h.trace(id), null, id);
    assert.equal(h.hasTrace(id), false, id);
  }
  // the same trace is visible from its own run
  assert.notEqual(history(db, { runId: 'run-x' }).trace('x1-t-a-0'), null);
});

test('search finds a word of a tool output, only in this run and only in task traces', () => {
  const db = harnessStore();
  const h = history(db);
  const hits = h.search('zanzibar');
  assert.deepEqual(hits.map((x) => x.trace_id).sort(), ['h1-t-a-0', 'h1-t-a-1']);
  for (const x of hits) {
    assert.equal(x.task_id, 't-a');
    assert.equal(x.experiment_seq, 1);
    assert.match(x.snippet, /«zanzibar»/);
  }
  assert.deepEqual(h.search('toulouse').map((x) => [x.trace_id, x.experiment_seq]), [['h2-t-c-0', 2]]);
  assert.equal(h.search('zanzibar', 1).length, 1);
  assert.deepEqual(h.search('nosuchwordanywhere'), []);
  assert.deepEqual(h.search('  "" '), []);
});

test('readFile delegates repo-relative paths and refuses absolute and parent paths', async () => {
  const db = harnessStore();
  const asked: string[] = [];
  const h = history(db, { readFile: async (p) => (asked.push(p), p === 'harness/prompt.md' ? 'PROMPT' : null) });
  assert.equal(await h.readFile('harness/prompt.md'), 'PROMPT');
  assert.equal(await h.readFile('./harness/prompt.md'), 'PROMPT');
  assert.equal(await h.readFile('harness/missing.md'), null);
  for (const p of ['/etc/passwd', '../secret', 'harness/../../x', '..', '', 'C:/x', 'a\\..\\b']) assert.equal(await h.readFile(p), null, p);
  assert.deepEqual(asked, ['harness/prompt.md', 'harness/prompt.md', 'harness/missing.md']);
});

// ---------------------------------------------------------------------------------------------
// the harness digest

test('harness digest: failed, then regressed by the last discarded candidate, then passed, with transcripts and feedback', () => {
  const db = harnessStore();
  const d = history(db).digest(100_000);
  assert.match(d.split('\n')[0]!, /^harness digest · run run-h · metric score \(maximize\)/);
  assert.match(d, /5 tasks × up to 2 repeats \(10 traces\) · 3 passed · 2 failed · mean score 0\.7$/m);
  const failed = d.indexOf('== FAILED in incumbent #1');
  const regressed = d.indexOf('== REGRESSED by #2');
  const passed = d.indexOf('== PASSED');
  assert.ok(failed >= 0 && regressed > failed && passed > regressed, `${failed} ${regressed} ${passed}`);
  // failed: t-a (worst) before t-b, with the worst repeat's transcript
  const ta = d.indexOf('--- FAILED task t-a');
  const tb = d.indexOf('--- FAILED task t-b');
  assert.ok(ta > failed && tb > ta && tb < regressed);
  assert.match(d, /--- FAILED task t-a · score 0 · failed 2\/2 repeats · trace h1-t-a-0 \(other failing: h1-t-a-1\) ---/);
  assert.ok(d.includes('I should look up the capital before answering task t-a'));
  assert.ok(d.includes('wrong: expected Paris, found zanzibar (t-a)'));
  assert.ok(d.includes('wrong: expected Paris, found lyon (t-b)'));
  // regressed: t-c broke in #2 (t-a failed in both, so it is not a regression); the section names #2's hypothesis
  const section = d.slice(regressed, passed);
  assert.ok(section.includes('"drop the lookup tool to save tokens"'));
  assert.ok(section.includes('reason: no improvement: 0.3 vs 0.7'));
  assert.match(section, /--- REGRESSED task t-c · incumbent score 1 \(passed, trace h1-t-c-0\) → #2 score 0 \(failed 1\/1, trace h2-t-c-0\) ---/);
  assert.ok(section.includes('wrong: expected Paris, found toulouse (t-c)'));
  assert.ok(!section.includes('REGRESSED task t-a'));
  // passed: all three, each with its transcript
  const tail = d.slice(passed);
  for (const task of ['t-c', 't-d', 't-e']) assert.ok(tail.includes(`--- PASSED task ${task}`), task);
  assert.ok(tail.includes('correct: expected Paris, found Paris (t-e)'));
  assert.match(tail, /== PASSED: all 3 passed tasks ==/);
  // nothing cut, nothing left out; nothing from the proposal trace or the other run
  assert.doesNotMatch(d, MARKER);
  assert.ok(!d.includes('more chars]'));
  assert.ok(d.trimEnd().endsWith('no task left out for lack of budget'));
  assert.ok(!d.includes('x1-t-a-0') && !d.includes('prop-1') && !d.includes('nantes'));
  assert.equal(history(db).digest(100_000), d, 'deterministic');
});

test('harness digest fits every budget and marks what it cut or left out', () => {
  const db = harnessStore();
  const h = history(db);
  const full = h.digest(1_000_000);
  let sawTranscriptCut = false;
  let sawLeftOut = false;
  for (const tokens of [1, 20, 60, 150, 300, 500, 800, 1200, 2000, 3000]) {
    const d = h.digest(tokens);
    assert.ok(d.length <= tokens * CHARS_PER_TOKEN, `${tokens} tokens: ${d.length} chars`);
    assert.equal(d, h.digest(tokens), 'deterministic');
    if (full.length <= tokens * CHARS_PER_TOKEN) {
      assert.equal(d, full);
      continue;
    }
    const cut = MARKER.test(d) || d.includes('more chars]');
    const left = /tasks left out for lack of budget: (\d+) failed, (\d+) regressed, (\d+) passed/.exec(d);
    const leftSome = left !== null && left.slice(1).some((n) => Number(n) > 0);
    assert.ok(cut || leftSome || d === '[…]', `${tokens} tokens: a shorter digest without a marker:\n${d}`);
    sawTranscriptCut ||= cut && d.includes('== PASSED');
    sawLeftOut ||= leftSome;
    if (tokens >= 500) {
      // the worst failure is shown whole enough to read its result line
      assert.ok(d.includes('result: ok · score 0 · fail · wrong: expected Paris, found zanzibar (t-a)'), `${tokens}: t-a's result line kept`);
    }
    if (tokens >= 800) {
      // the order holds, and the regression gets a place before any pass
      const f = d.indexOf('--- FAILED task t-a');
      const r = d.indexOf('--- REGRESSED task t-c');
      assert.ok(f >= 0 && r > f, `${tokens} tokens: failed ${f}, regressed ${r}`);
      const p = d.indexOf('--- PASSED');
      if (p >= 0) assert.ok(p > r);
    }
  }
  assert.ok(sawTranscriptCut, 'some budget cut a transcript');
  assert.ok(sawLeftOut, 'some budget left tasks out');
  const small = h.digest(500);
  assert.match(small, /\(\d+ more passed tasks? not shown for lack of budget\)/);
});

test('harness digest: short of room, the system prompt every task shares is left out of the transcripts, marked', () => {
  const db = harnessStore();
  const h = history(db);
  assert.ok(h.digest(100_000).includes(SYSTEM), 'a big budget shows it');
  assert.ok(h.trace('h1-t-a-0', 100_000)!.includes(SYSTEM));
  const d = h.digest(1500);
  assert.ok(!d.includes(SYSTEM.slice(0, 120)), 'not repeated under a tight budget');
  assert.match(d, /system: \[… the system prompt every task shares, \d+ characters, left out for lack of budget …\]/);
  // a prompt that differs per task is never left out
  const other = openDb(':memory:');
  addRun(other, 'run-h', 'harness');
  addExperiment(other, 'run-h', 1, 'kept', 'k', 0.5);
  addTask(other, { id: 'only', runId: 'run-h', seq: 1, task: 't-a', repeat: 0, score: 0, pass: false, word: 'zanzibar' });
  const one = history(other).digest(300);
  assert.ok(one.includes('You answer geography questions. Always check a source'), one);
  assert.ok(!one.includes('the system prompt every task shares'));
});

test('harness digest: a candidate that ran no task shows its evaluation reason and stderr tail', () => {
  const db = harnessStore();
  const e3 = addExperiment(db, 'run-h', 3, 'crash', 'add a summarize tool', null, 'the candidate harness does not load: SyntaxError in tools.py');
  addEval(db, e3, 0, { status: 'crash', metric: null, reason: 'the candidate harness does not load: SyntaxError in tools.py', stderr_tail: 'File "tools.py", line 3\n    def summarize(:\nSyntaxError: invalid syntax' });
  const d = history(db).digest(20_000);
  const section = d.slice(d.indexOf('== REGRESSED'), d.indexOf('== PASSED'));
  assert.ok(section.includes('== REGRESSED by #3 (crash'), section);
  assert.ok(section.includes('"add a summarize tool"'));
  assert.ok(section.includes('SyntaxError: invalid syntax'));
  assert.ok(section.includes('0 tasks passed in #1 and failed in #3'));
});

test('harness digest when the incumbent is the newest experiment: no regressed section to show', () => {
  const db = harnessStore();
  const d = history(db, { incumbentSeq: 2 }).digest(50_000);
  assert.ok(d.includes('== REGRESSED: no candidate decided since incumbent #2 =='));
  assert.ok(d.includes('--- FAILED task t-a'));
  assert.ok(d.includes('--- FAILED task t-c'));
});

// ---------------------------------------------------------------------------------------------
// the trainer and command digests

const CURVE = Array.from({ length: 40 }, (_, i) => [i * 50, i * 1.5, Number((5.5 - i * 0.09).toFixed(4))]);
const trainTelemetry = (loss: number[][]) =>
  JSON.stringify({
    train: { device: 'NVIDIA H100', torch_version: '2.4.0', steps: 1950, tokens: 1_000_000, tokens_per_s: 123_456, peak_mem_mb: 2048, loss_curve: loss, final_train_loss: 2.0 },
    eval: { status: 'ok', val_bpb: 1.31 },
  });

function trainerStore(): DB {
  const db = openDb(':memory:');
  addRun(db, 'run-t', 'trainer', 'val_bpb', 'minimize');
  const e0 = addExperiment(db, 'run-t', 0, 'baseline', 'baseline', 1.4);
  const e1 = addExperiment(db, 'run-t', 1, 'kept', 'LEARNING_RATE 6e-4 → 8e-4', 1.31);
  const e2 = addExperiment(db, 'run-t', 2, 'discarded', 'N_LAYER 4 → 6', 1.33);
  const e3 = addExperiment(db, 'run-t', 3, 'crash', 'BATCH_SIZE 64 → 512', null, 'train.py exited with code 1: torch.OutOfMemoryError: CUDA out of memory');
  addEval(db, e0, 0, { metric: 1.4, telemetry: trainTelemetry(CURVE.slice(0, 10)) });
  addEval(db, e1, 0, { metric: 1.31, telemetry: trainTelemetry(CURVE) });
  addEval(db, e1, 1, { metric: 1.32, telemetry: trainTelemetry(CURVE) });
  addEval(db, e2, 0, { metric: 1.33, telemetry: trainTelemetry(CURVE.slice(0, 30)) });
  const noise = Array.from({ length: 80 }, (_, i) => `  File "/usr/lib/python3/torch/nn/modules/module.py", line ${1000 + i}, in _call_impl`).join('\n');
  addEval(db, e3, 0, {
    status: 'crash', metric: null, exit_code: 1, reason: 'train.py exited with code 1: torch.OutOfMemoryError: CUDA out of memory',
    stdout_tail: 'step 0 | loss 5.545', stderr_tail: `Traceback (most recent call last):\n${noise}\ntorch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB`,
    telemetry: JSON.stringify({ train: null }),
  });
  return db;
}

test('trainer digest: loss curve numbers and sparkline, telemetry, and the stderr tail of the last crash', () => {
  const db = trainerStore();
  const h = new StoreHistory({ db, runId: 'run-t', kind: 'trainer', incumbentSeq: 1, readFile: async () => null });
  const d = h.digest(20_000);
  assert.match(d, /^trainer digest · run run-t · metric val_bpb \(lower is better\)/);
  assert.ok(d.includes('incumbent #1 "LEARNING_RATE 6e-4 → 8e-4" · val_bpb 1.31'));
  const inc = d.indexOf('--- incumbent #1');
  const r3 = d.indexOf('--- recent #3 crash');
  const r2 = d.indexOf('--- recent #2 discarded');
  const r0 = d.indexOf('--- recent #0 baseline');
  assert.ok(inc >= 0 && r3 > inc && r2 > r3 && r0 > r2, `${inc} ${r3} ${r2} ${r0}`);
  const incBlock = d.slice(inc, r3);
  assert.ok(incBlock.includes('loss by step: 0: 5.5 · '), incBlock);
  assert.ok(incBlock.includes(`1950: ${CURVE[39]![2]}`));
  assert.ok(incBlock.includes(sparkline(CURVE.map((p) => p[2]!))));
  for (const s of ['device=NVIDIA H100', 'steps=1950', 'tokens_per_s=1.235e+5', 'peak_mem_mb=2048', 'val_bpb=1.31']) assert.ok(incBlock.includes(s), s);
  assert.equal(incBlock.match(/eval \d \(seed/g)?.length, 2, 'both evaluations of the incumbent');
  const crash = d.slice(r3, r2);
  assert.ok(crash.includes('torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB'));
  assert.ok(crash.includes('stderr tail:'));
  assert.ok(!incBlock.includes('stderr tail:'), 'no tails for successful training');
  assert.ok(d.trimEnd().endsWith('no experiment left out for lack of budget'));
  // a small budget still shows the crash's last line, cutting the traceback's head
  for (const tokens of [300, 450, 700]) {
    const s = h.digest(tokens);
    assert.ok(s.length <= tokens * 4, `${tokens}: ${s.length}`);
    assert.ok(s.includes('Tried to allocate 2.00 GiB'), `${tokens} tokens:\n${s}`);
    assert.ok(MARKER.test(s) || /experiments left out for lack of budget: [1-9]/.test(s));
  }
});

test('command digest: each recent evaluation with metric, status, reason and output tails', () => {
  const db = openDb(':memory:');
  addRun(db, 'run-c', 'command', 'score');
  const e0 = addExperiment(db, 'run-c', 0, 'baseline', 'baseline', 0.8);
  const e1 = addExperiment(db, 'run-c', 1, 'crash', 'use the fast path', null, 'command exited with code 2: KeyError: fast');
  const e2 = addExperiment(db, 'run-c', 2, 'discarded', 'cache the table', 0.79);
  addEval(db, e0, 0, { metric: 0.8, stdout_tail: 'building\nMETRIC score=0.8', stderr_tail: 'warning: slow path taken', telemetry: JSON.stringify({ metrics: { score: 0.8, latency: 12 } }) });
  addEval(db, e1, 0, { status: 'crash', metric: null, exit_code: 2, reason: 'command exited with code 2: KeyError: fast', stderr_tail: 'Traceback\nKeyError: fast' });
  addEval(db, e2, 0, { metric: 0.79, stdout_tail: 'METRIC score=0.79' });
  const h = new StoreHistory({ db, runId: 'run-c', kind: 'command', incumbentSeq: 0, readFile: async () => null });
  const d = h.digest(5000);
  assert.ok(d.length <= 20_000);
  const inc = d.slice(d.indexOf('--- incumbent #0'), d.indexOf('== RECENT'));
  assert.ok(inc.includes('METRIC score=0.8'));
  assert.ok(inc.includes('warning: slow path taken'));
  assert.ok(inc.includes('evaluator metrics: score=0.8 latency=12'));
  const recent = d.slice(d.indexOf('== RECENT'));
  assert.ok(recent.indexOf('--- recent #2 discarded') < recent.indexOf('--- recent #1 crash'));
  assert.ok(recent.includes('eval 1 (seed 1): crash · score — · command 1m00s · evaluator 2.0 s · exit 2 · command exited with code 2: KeyError: fast'), recent);
  assert.ok(recent.includes('KeyError: fast'));
  assert.ok(recent.includes('METRIC score=0.79'));
  for (const tokens of [40, 100, 200]) assert.ok(h.digest(tokens).length <= tokens * 4);
});
