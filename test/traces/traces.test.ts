import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { spawn } from 'node:child_process';
import { pathToFileURL } from 'node:url';
import Database from 'better-sqlite3';
import { openDb, MIGRATIONS, type DB } from '../../traces/db.ts';
import { insertRun, getRun, listExperiments, evaluationsOf } from '../../traces/ledger.ts';
import {
  insertTrace, finishTrace, insertSpan, TraceWriter, tracesOf, getTrace, searchTraces, taskScores, ftsQuery, rebuildSearchIndex,
  type SpanNode,
} from '../../traces/traces.ts';
import { renderTranscript, renderTraceList } from '../../traces/transcript.ts';
import type { SpanRecord, TraceRecord } from '../../traces/types.ts';
import type { Block, ModelRequest, Message } from '../../task-agent/types.ts';

const ROOT = resolve(import.meta.dirname, '../..');

function tmp(): string {
  return mkdtempSync(join(tmpdir(), 'autoagent-traces-'));
}

// ---------------------------------------------------------------------------------------------
// the fixture: one task run with the shapes task-agent/evaluate.ts writes

const T0 = 1_700_000_000_000;
const SYSTEM = 'You are a careful solver. Use the calc tool.';
const FINAL = 'The answer is 42.\n#### 42';
const USER: Message = { role: 'user', content: [{ type: 'text', text: 'What is 6*7? End with #### N.' }] };
const NOTE = 'x'.repeat(250);
const R1: Block[] = [
  { type: 'thinking', thinking: 'Multiply 6 by 7; the calculator is safer than mental arithmetic.', signature: 'sig-abc' },
  { type: 'text', text: 'Let me compute.' },
  { type: 'tool_use', id: 'tu_1', name: 'calc', input: { expr: '6*7/0', note: NOTE } },
];
const TOOL_ERROR = 'error: ZeroDivisionError: division by zero';
const R2: Block[] = [
  { type: 'text', text: 'Division by zero; I will ask the helper.' },
  { type: 'tool_use', id: 'tu_2', name: 'ask_helper', input: { question: 'What is 6*7?' } },
];
const HELPER = '42 (verified by repeated addition)';
const TOOLS = [
  { name: 'calc', description: 'evaluate an arithmetic expression', parameters: { type: 'object' } },
  { name: 'ask_helper', description: 'ask a sub-agent', parameters: { type: 'object' } },
];
const req = (messages: Message[]): ModelRequest => ({ provider: 'anthropic', model: 'claude-sonnet-4', system: SYSTEM, messages, tools: TOOLS, max_tokens: 1024 });

function trace(over: Partial<TraceRecord> = {}): TraceRecord {
  return {
    id: 'tr-1', run_id: 'run-a', experiment_seq: 3, group_id: 'run-a#3', task_id: 'gsm8k/0042', repeat: 0, benchmark: 'gsm8k',
    split: 'val', harness: 'react', status: 'ok', score: null, pass: null, output: null, error: null, started_at: T0, ended_at: T0,
    input_tokens: 0, output_tokens: 0, cache_read_tokens: 0, cache_write_tokens: 0, cost_usd: 0, ...over,
  };
}

function span(id: string, parent: string | null, kind: SpanRecord['kind'], name: string, from: number, to: number, over: Partial<SpanRecord> = {}): SpanRecord {
  return {
    id, trace_id: 'tr-1', parent_id: parent, kind, name, status: 'ok', started_at: T0 + from, ended_at: T0 + to, input: null, output: null,
    error: null, input_tokens: 0, output_tokens: 0, cache_read_tokens: 0, cache_write_tokens: 0, cost_usd: 0, attributes: {}, ...over,
  };
}

const FINISH = {
  status: 'ok' as const, score: 1, pass: true, output: FINAL, error: null, ended_at: T0 + 12_345,
  input_tokens: 1500, output_tokens: 230, cache_read_tokens: 100, cache_write_tokens: 0, cost_usd: 0.0123,
};

/** in completion order, as the parent records them */
function fixtureSpans(): SpanRecord[] {
  const history1: Message[] = [USER, { role: 'assistant', content: R1 }, { role: 'user', content: [{ type: 'tool_result', tool_use_id: 'tu_1', content: TOOL_ERROR, is_error: true }] }];
  const history2: Message[] = [...history1, { role: 'assistant', content: R2 }, { role: 'user', content: [{ type: 'tool_result', tool_use_id: 'tu_2', content: HELPER }] }];
  return [
    span('m1', 't1', 'model', 'model call 1', 10, 2110, {
      input: req([USER]), output: { content: R1, stop_reason: 'tool_use', raw: {} },
      input_tokens: 400, output_tokens: 80, cache_read_tokens: 100, cost_usd: 0.004,
      attributes: { model: 'claude-sonnet-4', latency_ms: 2100, attempts: 2, cached: false },
    }),
    span('k1', 't1', 'tool', 'calc', 2120, 2125, {
      status: 'error', input: { expr: '6*7/0', note: NOTE }, output: TOOL_ERROR, error: TOOL_ERROR, attributes: { reported_by: 'sandbox' },
    }),
    span('t1', 'a', 'turn', 'turn 1', 5, 2130, { output: 'Let me compute.', attributes: { reported_by: 'sandbox' } }),
    span('m2', 't2', 'model', 'model call 2', 2140, 3140, {
      input: req(history1), output: { content: R2, stop_reason: 'tool_use', raw: {} },
      input_tokens: 500, output_tokens: 60, cost_usd: 0.004, attributes: { model: 'claude-sonnet-4', latency_ms: 1000, attempts: 1, cached: false },
    }),
    span('m3', 'sa', 'model', 'verifier', 3170, 4280, {
      input: { provider: 'openai', model: 'gpt-4o-mini', system: 'Check arithmetic.', messages: [{ role: 'user', content: [{ type: 'text', text: 'What is 6*7?' }] }], tools: [], max_tokens: 256 },
      output: { content: [{ type: 'reasoning', text: 'six sevens are forty-two' }, { type: 'text', text: HELPER }], stop_reason: 'end_turn', raw: {} },
      input_tokens: 100, output_tokens: 20, cost_usd: 0.0003, attributes: { model: 'gpt-4o-mini', latency_ms: 1100, attempts: 1, cached: false },
    }),
    span('sa', 'k2', 'subagent', 'verifier', 3160, 4290, { input: { system: 'Check arithmetic.' }, output: HELPER, attributes: { reported_by: 'sandbox' } }),
    span('k2', 't2', 'tool', 'ask_helper', 3150, 4300, { input: { question: 'What is 6*7?' }, output: HELPER, attributes: { reported_by: 'sandbox' } }),
    span('t2', 'a', 'turn', 'turn 2', 2135, 4310, { output: 'Division by zero; I will ask the helper.', attributes: { reported_by: 'sandbox' } }),
    span('m4', 't3', 'model', 'model call 3', 4320, 12_000, {
      input: req(history2), output: { content: [{ type: 'text', text: FINAL }], stop_reason: 'end_turn', raw: {} },
      input_tokens: 500, output_tokens: 70, cost_usd: 0.004, attributes: { model: 'claude-sonnet-4', latency_ms: 7680, attempts: 1, cached: false },
    }),
    span('t3', 'a', 'turn', 'turn 3', 4315, 12_010, { output: FINAL, attributes: { reported_by: 'sandbox' } }),
    span('sc', 'a', 'scoring', 'exact-match', 12_020, 12_023, { input: { output: FINAL }, output: { score: 1, pass: true, feedback: 'expected 42, found 42' } }),
    span('a', null, 'agent', 'react on gsm8k/0042', 0, 12_345, {
      input: { task: { id: 'gsm8k/0042', input: { question: 'What is 6*7?' } } }, output: { output: FINAL, steps: 3, stop: 'final' },
      attributes: { route: 'default' },
    }),
  ];
}

function writeFixture(db: DB): void {
  insertTrace(db, trace());
  for (const s of fixtureSpans()) insertSpan(db, s);
  assert.equal(finishTrace(db, 'tr-1', FINISH), true);
}

const shape = (n: SpanNode): unknown => [n.id, n.children.map(shape)];

// ---------------------------------------------------------------------------------------------

test('a v1 store (ledger only) migrates to v2: ledger rows survive, trace tables and FTS5 work', () => {
  const dir = tmp();
  try {
    const path = join(dir, 'store.db');
    const v1 = new Database(path);
    v1.exec(MIGRATIONS[0]!);
    v1.pragma('user_version = 1');
    insertRun(v1, {
      id: 'run-a', name: 'demo', kind: 'harness', study_path: 'study.yaml', study_json: '{}', study_text: 'x: 1', config_hash: 'h', repo: '/r',
      base_commit: 'abc', branch: 'autoagent/run-a', lock_manifest: '{}', metric_name: 'accuracy', direction: 'maximize', self_reported: 0,
      unsafe_no_sandbox: 0, environment: null,
    });
    // a v1 experiment row, written as v1 wrote it (no round / proposal columns yet)
    const id = v1.prepare(
      `INSERT INTO experiments (run_id, seq, parent_commit, candidate_commit, proposer, hypothesis, meta, edits, diff, files_hash, status, started_at)
       VALUES ('run-a', 0, 'abc', NULL, 'baseline', 'baseline', NULL, '[]', '', 'f', 'pending', '2026-01-01T00:00:00Z')`,
    ).run().lastInsertRowid;
    const e = { id: Number(id) };
    // and its evaluation, as v1 wrote it (no round / slot / hardware yet)
    v1.prepare(
      `INSERT INTO evaluations (experiment_id, repeat, seed, status, metric, reason, command_ms, evaluator_ms, exit_code, stdout_tail, stderr_tail, telemetry, created_at)
       VALUES (?, 0, 1, 'ok', 0.5, NULL, 10, 5, 0, 'out', '', NULL, '2026-01-01T00:00:00Z')`,
    ).run(e.id);
    assert.throws(() => v1.prepare('SELECT * FROM traces').all(), /no such table/);
    v1.close();

    const db = openDb(path);
    assert.equal(db.pragma('user_version', { simple: true }), MIGRATIONS.length);
    assert.equal(getRun(db, 'run-a')!.name, 'demo');
    assert.equal(listExperiments(db, 'run-a').length, 1);
    assert.equal(listExperiments(db, 'run-a')[0]!.round, null); // migration 5 adds the column, empty for old rows
    assert.deepEqual(evaluationsOf(db, e.id).map((v) => [v.metric, v.stdout_tail]), [[0.5, 'out']]);
    writeFixture(db);
    assert.equal(searchTraces(db, 'ZeroDivisionError')[0]!.span_id, 'k1');
    db.close();
    // opening again migrates nothing and keeps everything
    const again = openDb(path);
    assert.equal(getTrace(again, 'tr-1')!.spans.length, 12);
    assert.equal(getRun(again, 'run-a')!.name, 'demo');
    again.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a trace with nested spans reads back whole, as a tree, and is finalized once', () => {
  const db = openDb(':memory:');
  writeFixture(db);
  const d = getTrace(db, 'tr-1')!;
  assert.equal(d.trace.finalized, true);
  assert.equal(d.trace.pass, true);
  assert.equal(d.trace.score, 1);
  assert.equal(d.trace.output, FINAL);
  assert.equal(d.trace.input_tokens, 1500);
  assert.deepEqual(d.spans.map((s) => s.id), ['a', 't1', 'm1', 'k1', 't2', 'm2', 'k2', 'sa', 'm3', 't3', 'm4', 'sc']);
  assert.deepEqual(d.roots.map(shape), [
    ['a', [['t1', [['m1', []], ['k1', []]]], ['t2', [['m2', []], ['k2', [['sa', [['m3', []]]]]]]], ['t3', [['m4', []]]], ['sc', []]]],
  ]);
  // JSON values round-trip exactly
  const orig = fixtureSpans().find((s) => s.id === 'm1')!;
  const m1 = d.spans.find((s) => s.id === 'm1')!;
  assert.deepEqual(m1.input, orig.input);
  assert.deepEqual(m1.output, orig.output);
  assert.deepEqual(m1.attributes, orig.attributes);
  // finalized once: a second finish changes nothing
  assert.equal(finishTrace(db, 'tr-1', { status: 'error', ended_at: T0 + 99_999, score: 0, pass: false }), false);
  assert.equal(getTrace(db, 'tr-1')!.trace.status, 'ok');
  assert.equal(finishTrace(db, 'nope', { status: 'ok', ended_at: T0 }), false);
  // spans are write-once: the same id twice in a trace is refused; a span needs its trace
  assert.throws(() => insertSpan(db, fixtureSpans()[0]!), /UNIQUE/);
  assert.throws(() => insertSpan(db, { ...fixtureSpans()[0]!, id: 'zz', trace_id: 'no-such-trace' }), /FOREIGN KEY/);
  assert.equal(getTrace(db, 'nope'), undefined);
  db.close();
});

const EXPECTED_TRANSCRIPT = `task gsm8k/0042 · repeat 0 · gsm8k/val · harness react
status ok · score 1 · pass · 12.3 s
feedback: expected 42, found 42
tokens 1500 in / 230 out · cache 100 read / 0 write · cost $0.0123
trace tr-1 · group run-a#3 · run run-a · experiment 3

agent react on gsm8k/0042 · ok · 12.3 s
  input:
    {
      "task": {
        "id": "gsm8k/0042",
        "input": {
          "question": "What is 6*7?"
        }
      }
    }
  turn 1 · ok · 2.1 s
    model call 1 · claude-sonnet-4 · ok · 400 in / 80 out · cache 100 read / 0 write · $0.0040 · 2.1 s · 2 attempts
      system: You are a careful solver. Use the calc tool.
      user: What is 6*7? End with #### N.
      thinking: Multiply 6 by 7; the calculator is safer than mental arithmetic.
      assistant: Let me compute.
      tool_use calc (tu_1):
        {
          "expr": "6*7/0",
          "note": "${'x'.repeat(200)}… [50 more chars]"
        }
    tool calc · error · 5 ms
      error: ZeroDivisionError: division by zero
  turn 2 · ok · 2.2 s
    model call 2 · claude-sonnet-4 · ok · 500 in / 60 out · $0.0040 · 1.0 s · 1 attempt
      assistant: Division by zero; I will ask the helper.
      tool_use ask_helper (tu_2):
        {
          "question": "What is 6*7?"
        }
    tool ask_helper · ok · 1.1 s
      subagent verifier · ok · 1.1 s
        model verifier · gpt-4o-mini · ok · 100 in / 20 out · $0.0003 · 1.1 s · 1 attempt
          system: Check arithmetic.
          user: What is 6*7?
          reasoning: six sevens are forty-two
          assistant: 42 (verified by repeated addition)
      result: 42 (verified by repeated addition)
  turn 3 · ok · 7.7 s
    model call 3 · claude-sonnet-4 · ok · 500 in / 70 out · $0.0040 · 7.7 s · 1 attempt
      assistant:
        The answer is 42.
        #### 42
  scoring exact-match · ok · 3 ms
    score 1 · pass
    feedback: expected 42, found 42
  output:
    {
      "steps": 3,
      "stop": "final"
    }

final answer:
  The answer is 42.
  #### 42
result: ok · score 1 · pass · expected 42, found 42
`;

test('renderTranscript: header, turns, model calls with thinking, tool calls with errors, sub-agents, final answer', () => {
  const db = openDb(':memory:');
  writeFixture(db);
  const d = getTrace(db, 'tr-1')!;
  const text = renderTranscript(d.trace, d.spans);
  assert.equal(text, EXPECTED_TRANSCRIPT);
  // the same from spans in any order
  assert.equal(renderTranscript(d.trace, [...d.spans].reverse()), text);
  db.close();
});

test('renderTranscript without tool spans shows the results sent back, cuts long text, and marks unfinished traces', () => {
  const t: TraceRecord & { finalized: boolean } = { ...trace({ id: 'tr-x' }), finalized: false };
  const long = 'y'.repeat(30);
  const history: Message[] = [USER, { role: 'assistant', content: R1 }, { role: 'user', content: [{ type: 'tool_result', tool_use_id: 'tu_1', content: long, is_error: true }] }];
  const spans: SpanRecord[] = [
    span('m', null, 'model', 'model call 2', 0, 50, {
      trace_id: 'tr-x', status: 'error', input: req(history), output: null, error: 'HTTP 529 overloaded', attributes: {},
    }),
  ];
  const text = renderTranscript(t, spans, { maxTextChars: 10 });
  assert.deepEqual(text.split('\n'), [
    'task gsm8k/0042 · repeat 0 · gsm8k/val · harness react',
    'status unfinished (the task never finished: still running, or cut off) · 0 ms so far',
    'tokens 0 in / 0 out · cost $0.0000',
    'trace tr-x · group run-a#3 · run run-a · experiment 3',
    '',
    'model call 2 · claude-sonnet-4 · error · 0 in / 0 out · $0.0000 · 50 ms',
    '  tool_result tu_1 (error): yyyyyyyyyy… [20 more chars]',
    '  error: HTTP 529 o… [9 more chars]',
    '',
    'final answer: (none)',
    'result: unfinished',
    '',
  ]);
});

test('search finds text in tool results and thinking blocks, ranks hits, and never chokes on punctuation', () => {
  const db = openDb(':memory:');
  writeFixture(db);
  // inside a tool result (the ask_helper span), and in the sub-agent's answer
  const helper = searchTraces(db, 'repeated addition');
  assert.ok(helper.some((h) => h.span_id === 'k2' && h.span_kind === 'tool' && h.span_name === 'ask_helper'), JSON.stringify(helper));
  assert.ok(helper.every((h) => h.trace_id === 'tr-1' && h.task_id === 'gsm8k/0042' && h.group_id === 'run-a#3'));
  // inside a thinking block, with the match marked in the snippet
  const thinking = searchTraces(db, 'safer arithmetic');
  assert.deepEqual(thinking.map((h) => h.span_id), ['m1']);
  assert.match(thinking[0]!.snippet, /«safer» than mental «arithmetic»/);
  // the error span outranks the request that merely carries the error back; ranks ascend
  const err = searchTraces(db, 'ZeroDivisionError');
  assert.deepEqual(err.map((h) => h.span_id), ['k1', 'm2']);
  assert.ok(err[0]!.rank <= err[1]!.rank);
  // words need not be adjacent; prefixes; a phrase with punctuation; the task id and final answer
  assert.deepEqual(searchTraces(db, 'division zero').map((h) => h.span_id).sort(), ['k1', 'm2', 't2']);
  assert.ok(searchTraces(db, 'ZeroDiv*').some((h) => h.span_id === 'k1'));
  const answer = searchTraces(db, '"#### 42"');
  assert.ok(answer.some((h) => h.span_id === null && h.span_kind === null && h.span_name === null), JSON.stringify(answer));
  assert.ok(answer.some((h) => h.span_id === 'm4'));
  assert.equal(searchTraces(db, 'gsm8k/0042').filter((h) => h.span_id === null).length, 1);
  // hostile input: no throw
  for (const q of ['ERROR: "x" (y)', '"#### 42', 'AND OR NOT', '(', '"', '*', 'name:calc', 'NEAR(a b)', '^foo', '-x', "it's", 'a"b', '""', 'OR x OR']) {
    assert.doesNotThrow(() => searchTraces(db, q), q);
  }
  assert.ok(searchTraces(db, 'ERROR: ZeroDivisionError (division)').some((h) => h.span_id === 'k1'));
  assert.deepEqual(searchTraces(db, '  '), []);
  assert.deepEqual(searchTraces(db, '#### ::'), []);
  assert.equal(ftsQuery('ERROR: "x" (y)'), '"ERROR:" "x" "(y)"');
  assert.equal(ftsQuery('calc OR helper'), '"calc" OR "helper"');
  // limit and filters
  assert.equal(searchTraces(db, 'what', { limit: 1 }).length, 1);
  assert.equal(searchTraces(db, 'ZeroDivisionError', { groupId: 'other' }).length, 0);
  assert.deepEqual(searchTraces(db, 'ZeroDivisionError', { runId: 'run-a' }).map((h) => h.span_id), ['k1', 'm2']);
  // the index rebuilt from the tables gives the same hits
  rebuildSearchIndex(db);
  assert.deepEqual(searchTraces(db, 'ZeroDivisionError').map((h) => h.span_id), ['k1', 'm2']);
  db.prepare("INSERT INTO trace_fts (trace_fts) VALUES ('integrity-check')").run();
  db.close();
});

test('the history a model call resends is indexed once, not once per turn', () => {
  const db = openDb(':memory:');
  writeFixture(db);
  // the user prompt is in m1, m2 and m4's requests but only indexed for m1 (the conversation's first call)
  assert.deepEqual(searchTraces(db, 'End with').map((h) => h.span_id), ['m1']);
  // the system prompt likewise
  assert.deepEqual(searchTraces(db, 'careful solver').map((h) => h.span_id), ['m1']);
  db.close();
});

function addTraces(db: DB): void {
  writeFixture(db);
  insertTrace(db, trace({ id: 'tr-2', task_id: 'gsm8k/0007', started_at: T0 + 1 }));
  insertSpan(db, span('x1', null, 'turn', 'turn 1', 1, 2, { trace_id: 'tr-2' }));
  finishTrace(db, 'tr-2', { status: 'timeout', ended_at: T0 + 60_001, error: 'task ran past its 60 s deadline and was killed', score: 0, pass: false });
  insertTrace(db, trace({ id: 'tr-3', task_id: 'gsm8k/0042', repeat: 1, started_at: T0 + 2 }));
  finishTrace(db, 'tr-3', { status: 'ok', ended_at: T0 + 2002, score: 0, pass: false, output: '41', input_tokens: 10, output_tokens: 5, cost_usd: 0.001 });
  insertTrace(db, trace({ id: 'tr-4', group_id: 'eval-1', run_id: null, experiment_seq: null, task_id: 'gsm8k/0001' }));
}

test('tracesOf filters by run, experiment, group, task and failure; the list view and per-task scores', () => {
  const db = openDb(':memory:');
  addTraces(db);
  const ids = (f: Parameters<typeof tracesOf>[1]) => tracesOf(db, f).map((t) => t.id);
  assert.deepEqual(ids({ groupId: 'run-a#3' }), ['tr-2', 'tr-1', 'tr-3']);
  assert.deepEqual(ids({ groupId: 'run-a#3', failed: true }), ['tr-2', 'tr-3']);
  assert.deepEqual(ids({ groupId: 'run-a#3', failed: false }), ['tr-1']);
  assert.deepEqual(ids({ runId: 'run-a', experimentSeq: 3, taskId: 'gsm8k/0042' }), ['tr-1', 'tr-3']);
  assert.deepEqual(ids({ experimentSeq: 4 }), []);
  assert.deepEqual(ids({ groupId: 'eval-1' }), ['tr-4']);
  assert.deepEqual(ids({}), ['tr-4', 'tr-2', 'tr-1', 'tr-3']);
  const rows = tracesOf(db, { groupId: 'run-a#3' });
  assert.deepEqual(rows.map((r) => [r.id, r.steps, r.finalized]), [['tr-2', 1, true], ['tr-1', 3, true], ['tr-3', 0, true]]);
  assert.equal(tracesOf(db, { groupId: 'eval-1' })[0]!.finalized, false);

  assert.equal(renderTraceList(rows), [
    'task        rep  status   score  steps  tokens     cost  duration',
    'gsm8k/0007    0  timeout    0 ✗      1       0  $0.0000     1m00s',
    'gsm8k/0042    0  ok         1 ✓      3    1730  $0.0123    12.3 s',
    'gsm8k/0042    1  ok         0 ✗      0      15  $0.0010     2.0 s',
    '',
    '3 traces · 1 passed · 2 failed · mean score 0.3333 · 1745 tokens · $0.0133',
    '',
  ].join('\n'));
  assert.equal(renderTraceList([]), 'no traces\n');

  assert.deepEqual(taskScores(db, 'run-a#3'), [
    {
      task_id: 'gsm8k/0007', repeats: 1, score: 0, scores: [0], passed: 0, failed: 1, trace_ids: ['tr-2'],
      input_tokens: 0, output_tokens: 0, cost_usd: 0, duration_ms: 60_000,
    },
    {
      task_id: 'gsm8k/0042', repeats: 2, score: 0.5, scores: [1, 0], passed: 1, failed: 1, trace_ids: ['tr-1', 'tr-3'],
      input_tokens: 1510, output_tokens: 235, cost_usd: 0.0123 + 0.001, duration_ms: (12_345 + 2000) / 2,
    },
  ]);
  assert.deepEqual(taskScores(db, 'eval-1').map((t) => [t.task_id, t.score, t.scores]), [['gsm8k/0001', null, [null]]]);
  assert.deepEqual(taskScores(db, 'none'), []);
  db.close();
});

const tspan = (trace_id: string, i: number): SpanRecord => ({
  id: `s${i}`, trace_id, parent_id: i === 0 ? null : 's0', kind: i % 2 ? 'model' : 'tool', name: `step ${i}`, status: 'ok',
  started_at: T0 + i, ended_at: T0 + i + 1, input: { arg: `${trace_id}-in-${i}` }, output: `token${trace_id.replace(/\W/g, '')}x${i} result`,
  error: null, input_tokens: 1, output_tokens: 1, cache_read_tokens: 0, cache_write_tokens: 0, cost_usd: 0, attributes: { i },
});

test('TraceWriter: interleaved traces from concurrent tasks all land, batched, searchable; a bad write does not sink its batch', () => {
  const db = openDb(':memory:');
  const w = new TraceWriter(db, { batchSpans: 64, flushMs: 0 });
  const N = 20;
  const S = 50;
  for (let t = 0; t < N; t++) w.trace(trace({ id: `w${t}`, task_id: `task-${t}` }));
  // round-robin, as concurrent tasks produce them
  for (let i = 0; i < S; i++) for (let t = 0; t < N; t++) w.span(tspan(`w${t}`, i));
  assert.ok(w.pending < 64, `flushed by count (${w.pending} pending)`);
  // a span queued, then its object changed: what was queued is what is stored
  const mutable = tspan('w0', 999);
  w.span(mutable);
  (mutable.input as { arg: string }).arg = 'changed';
  for (let t = 0; t < N; t++) w.finish(`w${t}`, { status: 'ok', ended_at: T0 + 100, score: 1, pass: true });
  w.span(tspan('w1', 0)); // duplicate id in its trace
  w.span(tspan('w1', 1000));
  w.close();
  assert.throws(() => w.span(tspan('w1', 1001)), /closed/);
  assert.equal(w.errors.length, 1);
  assert.deepEqual([w.errors[0]!.what, w.errors[0]!.id, w.errors[0]!.trace_id], ['span', 's0', 'w1']);
  assert.equal(w.spansWritten, N * S + 2);
  assert.equal((db.prepare('SELECT count(*) n FROM spans').get() as { n: number }).n, N * S + 2);
  assert.equal((db.prepare('SELECT count(*) n FROM trace_fts').get() as { n: number }).n, N * S + 2 + N);
  for (let t = 0; t < N; t++) {
    const d = getTrace(db, `w${t}`)!;
    assert.equal(d.trace.finalized, true);
    assert.equal(d.spans.length, S + (t === 0 || t === 1 ? 1 : 0));
    assert.equal(d.roots.length, 1);
  }
  assert.deepEqual(getTrace(db, 'w0')!.spans.find((s) => s.id === 's999')!.input, { arg: 'w0-in-999' });
  assert.deepEqual(searchTraces(db, 'tokenw7x33').map((h) => [h.trace_id, h.span_id]), [['w7', 's33']]);
  db.close();
});

test('TraceWriter flushes on its timer', async () => {
  const db = openDb(':memory:');
  const w = new TraceWriter(db, { batchSpans: 1000, flushMs: 20 });
  w.trace(trace({ id: 'q' }));
  w.span(tspan('q', 0));
  assert.equal((db.prepare('SELECT count(*) n FROM spans').get() as { n: number }).n, 0);
  await new Promise((r) => setTimeout(r, 80));
  assert.equal(w.pending, 0);
  assert.equal((db.prepare('SELECT count(*) n FROM spans').get() as { n: number }).n, 1);
  w.close();
  db.close();
});

function checkStore(path: string): { spans: number; fts: number; traces: number } {
  const db = new Database(path, { readonly: false });
  try {
    assert.equal(db.pragma('integrity_check', { simple: true }), 'ok');
    assert.deepEqual(db.pragma('foreign_key_check'), []);
    db.prepare("INSERT INTO trace_fts (trace_fts) VALUES ('integrity-check')").run();
    const n = (sql: string) => (db.prepare(sql).get() as { n: number }).n;
    return { spans: n('SELECT count(*) n FROM spans'), fts: n('SELECT count(*) n FROM trace_fts'), traces: n('SELECT count(*) n FROM traces') };
  } finally {
    db.close();
  }
}

test('a writer never closed loses only its unflushed buffer; the store stays consistent', () => {
  const dir = tmp();
  try {
    const path = join(dir, 'store.db');
    const db = openDb(path);
    const w = new TraceWriter(db, { batchSpans: 100, flushMs: 0 });
    for (let t = 0; t < 5; t++) w.trace(trace({ id: `c${t}` }));
    for (let i = 0; i < 50; i++) for (let t = 0; t < 5; t++) w.span(tspan(`c${t}`, i));
    // 250 spans queued: two batches of 100 committed, 50 still buffered; no close()
    const seen = checkStore(path);
    assert.deepEqual(seen, { spans: 200, fts: 205, traces: 5 });
    db.close(); // the process goes away without flushing
    assert.deepEqual(checkStore(path), seen);
    const again = openDb(path);
    assert.equal(searchTraces(again, 'tokenc4x39').length, 1);
    again.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('kill -9 in the middle of writing leaves whole batches only', async () => {
  const dir = tmp();
  try {
    const path = join(dir, 'store.db');
    const script = join(dir, 'writer.ts');
    const url = (p: string) => pathToFileURL(join(ROOT, p)).href;
    writeFileSync(script, `
      import { writeSync } from 'node:fs';
      import { openDb } from ${JSON.stringify(url('traces/db.ts'))};
      import { TraceWriter } from ${JSON.stringify(url('traces/traces.ts'))};
      const db = openDb(${JSON.stringify(path)});
      const w = new TraceWriter(db, { batchSpans: 50, flushMs: 0 });
      for (let t = 0; t < 4; t++) w.trace({ id: 'k' + t, run_id: null, experiment_seq: null, group_id: 'g', task_id: 't' + t, repeat: 0,
        benchmark: 'b', split: 'val', harness: 'h', status: 'ok', score: null, pass: null, output: null, error: null, started_at: 0,
        ended_at: 0, input_tokens: 0, output_tokens: 0, cache_read_tokens: 0, cache_write_tokens: 0, cost_usd: 0 });
      const big = 'lorem ipsum '.repeat(400);
      for (let i = 0; ; i++) {
        w.span({ id: 's' + i, trace_id: 'k' + (i % 4), parent_id: null, kind: 'tool', name: 'n', status: 'ok', started_at: i, ended_at: i,
          input: { big }, output: 'out ' + i, error: null, input_tokens: 0, output_tokens: 0, cache_read_tokens: 0, cache_write_tokens: 0,
          cost_usd: 0, attributes: {} });
        if (i % 50 === 49) writeSync(1, 'batch\\n');
      }
    `);
    const child = spawn(process.execPath, ['--import', 'tsx', script], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    await new Promise<void>((res, rej) => {
      let batches = 0;
      child.stdout.on('data', (d: Buffer) => {
        batches += String(d).split('batch').length - 1;
        if (batches >= 5) {
          child.kill('SIGKILL');
          res();
        }
      });
      child.on('exit', (code) => (batches < 5 ? rej(new Error(`writer exited early (${code}): ${stderr}`)) : undefined));
    });
    await new Promise((r) => child.once('close', r));
    const s = checkStore(path);
    assert.equal(s.traces, 4);
    assert.ok(s.spans >= 200, `${s.spans} spans`);
    assert.equal(s.spans % 50, 0, `whole batches only: ${s.spans} spans`);
    assert.equal(s.fts, s.spans + s.traces);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('two processes opening a new store at once do not both create its tables', async () => {
  const { spawn } = await import('node:child_process');
  for (let round = 0; round < 5; round++) {
    const dir = mkdtempSync(join(tmpdir(), 'aa-race-'));
    const path = join(dir, 'store.db');
    const code = `import('${resolve(import.meta.dirname, '../../traces/db.ts')}').then((m) => { m.openDb(${JSON.stringify(path)}).close(); })`;
    const runs = Array.from({ length: 4 }, () => new Promise<number>((res) => {
      const c = spawn(process.execPath, ['--import', 'tsx', '-e', code], { stdio: ['ignore', 'ignore', 'pipe'] });
      let err = '';
      c.stderr!.on('data', (b: Buffer) => (err += b));
      c.on('exit', (status) => { if (status !== 0) console.error(err); res(status ?? 1); });
    }));
    assert.deepEqual(await Promise.all(runs), [0, 0, 0, 0]);
    rmSync(dir, { recursive: true, force: true });
  }
});
