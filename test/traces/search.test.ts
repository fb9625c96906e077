import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { spawnSync } from 'node:child_process';
import Database from 'better-sqlite3';
import { openDb, openDbReadOnly, MIGRATIONS, type DB } from '../../traces/db.ts';
import { insertRun } from '../../traces/ledger.ts';
import { insertTrace, insertSpans, finishTrace, searchTraces, searchTraceHits, RANK_CAP, COMMON_ROWS, MIN_PREFIX } from '../../traces/traces.ts';
import { UsageError } from '../../base/errors.ts';
import type { SpanRecord, TraceRecord } from '../../traces/types.ts';

const BIN = resolve(import.meta.dirname, '../../bin/autoagent.js');

function trace(id: string, over: Partial<TraceRecord> = {}): TraceRecord {
  return {
    id, role: 'task', run_id: 'run-a', experiment_seq: 3, group_id: 'run-a#3', task_id: `gsm8k/${id}`, repeat: 0, benchmark: 'gsm8k', split: 'val',
    harness: 'h', status: 'ok', score: null, pass: null, output: null, error: null, started_at: 0, ended_at: 0, input_tokens: 0, output_tokens: 0,
    cache_read_tokens: 0, cache_write_tokens: 0, cost_usd: 0, ...over,
  };
}

function span(traceId: string, id: string, text: string, name = 'calc'): SpanRecord {
  return {
    id, trace_id: traceId, parent_id: null, kind: 'tool', name, status: 'ok', started_at: 0, ended_at: 1, input: { text }, output: null, error: null,
  } as SpanRecord;
}

/** a trace with its spans, finished with `fin` */
function put(db: DB, t: TraceRecord, texts: string[], fin: Partial<TraceRecord> = {}): void {
  insertTrace(db, t);
  insertSpans(db, texts.map((x, i) => span(t.id, `s${i}`, x)));
  finishTrace(db, t.id, { status: 'ok', ended_at: 5, ...fin });
}

test('search groups hits by trace: its best match, its matching rows counted, where it ran and how it did', () => {
  const db = openDb(':memory:');
  // five spans of one trace say "#### 42", and so does its answer; another trace has one; an eval's trace one
  put(db, trace('t1', { repeat: 1 }), ['step one #### 42 alpha', 'step two #### 42 beta', 'nothing here', '#### 42 gamma', '#### 42 delta', '#### 42 epsilon'],
    { score: 1, pass: true, output: 'so the answer is #### 42' });
  put(db, trace('t2', { experiment_seq: 4, group_id: 'run-a#4' }), ['#### 42 once, with many other words around it to dilute the match'], { score: 0, pass: false, output: '#### 7' });
  put(db, trace('t3', { run_id: null, experiment_seq: null, group_id: 'eval-20260101T000000-abcd' }), ['a lone #### 42'], { status: 'error', error: 'timeout' });
  const hits = searchTraceHits(db, '#### 42');
  assert.deepEqual(hits.map((h) => h.trace_id).sort(), ['t1', 't2', 't3']);
  const t1 = hits.find((h) => h.trace_id === 't1')!;
  assert.equal(t1.matches, 6); // five spans and the answer
  assert.deepEqual([t1.run_id, t1.experiment_seq, t1.repeat, t1.status, t1.score, t1.pass, t1.finalized], ['run-a', 3, 1, 'ok', 1, true, true]);
  // the snippet is the best-ranked row's own text, not another match's
  const ownText = t1.span_id === null ? 'answer' : ['alpha', 'beta', '', 'gamma', 'delta', 'epsilon'][Number(t1.span_id.slice(1))]!;
  assert.ok(t1.snippet.includes(ownText), `${t1.span_id}: ${t1.snippet}`);
  const t2 = hits.find((h) => h.trace_id === 't2')!;
  assert.deepEqual([t2.matches, t2.experiment_seq, t2.pass, t2.span_id], [1, 4, false, 's0']);
  const t3 = hits.find((h) => h.trace_id === 't3')!;
  assert.deepEqual([t3.run_id, t3.group_id, t3.status, t3.matches], [null, 'eval-20260101T000000-abcd', 'error', 1]);
  // best first; the limit counts traces; filters
  assert.ok(hits.every((h, i) => i === 0 || hits[i - 1]!.rank <= h.rank));
  assert.equal(searchTraceHits(db, '#### 42', { limit: 2 }).length, 2);
  assert.deepEqual(searchTraceHits(db, '#### 42', { runId: 'run-a' }).map((h) => h.trace_id).sort(), ['t1', 't2']);
  assert.deepEqual(searchTraceHits(db, '#### 42', { groupId: 'eval-20260101T000000-abcd' }).map((h) => h.trace_id), ['t3']);
  assert.deepEqual(searchTraceHits(db, '#### 42', { runId: 'nope' }), []);
  // every span hit's snippet is its own span's (a REAL rowid bound to `rowid = ?` made FTS5 ignore it: each got the first match's)
  for (const h of searchTraces(db, '#### 42', { limit: 50 })) {
    if (h.trace_id !== 't1' || h.span_id === null) continue;
    const own = ['alpha', 'beta', '', 'gamma', 'delta', 'epsilon'][Number(h.span_id.slice(1))]!;
    assert.ok(h.snippet.includes(own), `${h.span_id}: ${h.snippet}`);
  }
  db.close();
});

test('a word with more matches than RANK_CAP shows its newest first, unranked; a rare word, an OR alternative, an old run and an old role are still found', () => {
  const db = openDb(':memory:');
  const per = 10;
  const n = Math.ceil((RANK_CAP * 1.5) / per);
  // the oldest trace: the best bm25 match of "common" (a short span that is nothing else), a rare word, in an old run
  put(db, { ...trace('old', { run_id: 'run-old', group_id: 'run-old#1' }) }, ['common', 'common zyzzyva']);
  put(db, trace('prop', { role: 'proposal', run_id: 'run-old', group_id: 'run-old#1' }), ['the proposer said common things at length here']);
  for (let i = 0; i < n; i++) {
    put(db, trace(`n${i}`, { run_id: 'run-new', group_id: 'run-new#1' }), Array.from({ length: per }, (_, k) => `a long line of words where common appears once among many others ${i} ${k}`));
  }
  // exact ranking puts the short old span first; the capped one ranks only the newest RANK_CAP matches
  assert.equal(searchTraceHits(db, 'common', { exact: true })[0]!.trace_id, 'old');
  const capped = searchTraceHits(db, 'common');
  assert.equal(capped.length, 20);
  assert.ok(!capped.some((h) => h.trace_id === 'old' || h.trace_id === 'prop'));
  // unranked, newest first
  assert.deepEqual(capped.map((h) => h.trace_id), Array.from({ length: 20 }, (_, i) => `n${n - 1 - i}`));
  assert.ok(capped.every((h) => h.rank === 0 && h.matches === per));
  // a rare word alone, with a common one, or OR a common one
  assert.deepEqual(searchTraceHits(db, 'zyzzyva').map((h) => h.trace_id), ['old']);
  assert.deepEqual(searchTraceHits(db, 'common zyzzyva').map((h) => h.trace_id), ['old']);
  const or = searchTraceHits(db, 'common OR zyzzyva');
  assert.equal(or[0]!.trace_id, 'old', JSON.stringify(or.slice(0, 2)));
  assert.equal(or[0]!.matches, 2);
  // an old run's matches lie outside the newest: its range is searched
  assert.deepEqual(searchTraceHits(db, 'common', { runId: 'run-old' }).map((h) => h.trace_id).sort(), ['old', 'prop']);
  // a role kept by none of the newest matches: ranked again over every match
  assert.deepEqual(searchTraceHits(db, 'common', { role: 'proposal' }).map((h) => h.trace_id), ['prop']);
  // span hits follow the same rule
  assert.ok(!searchTraces(db, 'common').some((h) => h.trace_id === 'old'));
  assert.equal(searchTraces(db, 'common OR zyzzyva')[0]!.span_id, 's1');
  db.close();
});

test('a trace counts its own matching rows only, when the spans of traces written at once interleave', () => {
  const db = openDb(':memory:');
  insertTrace(db, trace('x'));
  insertTrace(db, trace('y'));
  // x: three spans with the word, y: one, written in turns (x, y, x, y, x)
  insertSpans(db, [span('x', 'a', 'kumquat one')]);
  insertSpans(db, [span('y', 'a', 'kumquat two')]);
  insertSpans(db, [span('x', 'b', 'kumquat three')]);
  insertSpans(db, [span('y', 'b', 'nothing here')]);
  insertSpans(db, [span('x', 'c', 'kumquat four')]);
  for (const id of ['x', 'y']) finishTrace(db, id, { status: 'ok', ended_at: 5 });
  for (const exact of [false, true]) {
    const m = Object.fromEntries(searchTraceHits(db, 'kumquat', { exact }).map((h) => [h.trace_id, h.matches]));
    assert.deepEqual(m, { x: 3, y: 1 }, `exact: ${exact}`);
    const or = Object.fromEntries(searchTraceHits(db, 'kumquat OR nothing', { exact }).map((h) => [h.trace_id, h.matches]));
    assert.deepEqual(or, { x: 3, y: 2 }, `exact: ${exact}`);
  }
  db.close();
});

/** bm25 of `fts` (an FTS5 query) for the index row of each trace's first span, as the search weighs it */
function bm25Of(db: DB, fts: string, traceIds: string[]): number[] {
  const st = db.prepare(`SELECT bm25(trace_fts, 0.5, 2.0, 1.0, 1.5) AS bm FROM trace_fts WHERE trace_fts MATCH ?
    AND rowid = (SELECT min(seq) FROM spans WHERE trace_id = ?)`).pluck();
  return traceIds.map((id) => st.get(fts, id) as number);
}

test('an OR ranks each alternative on its own, a row matching several scoring their sum: the scores of bm25 over the whole query', () => {
  const db = openDb(':memory:');
  // equal lengths, one word each; the row with both is the oldest (a tie would put it last)
  put(db, trace('both'), ['alpha beta gamma delta']);
  put(db, trace('a'), ['alpha gamma delta epsilon']);
  put(db, trace('b'), ['beta gamma delta epsilon']);
  put(db, trace('none'), ['gamma delta epsilon zeta']);
  const hits = searchTraceHits(db, 'alpha OR beta');
  assert.deepEqual(hits.map((h) => h.trace_id), ['both', 'b', 'a']);
  assert.deepEqual(hits.map((h) => h.matches), [1, 1, 1]);
  const whole = bm25Of(db, '"alpha" OR "beta"', ['both', 'b', 'a']);
  hits.forEach((h, i) => assert.ok(Math.abs(h.rank - whole[i]!) < 1e-9, `${h.trace_id}: ${h.rank} vs ${whole[i]}`));
  assert.ok(hits[0]!.rank < hits[1]!.rank);
  // an alternative with no match anywhere, and no match at all
  assert.deepEqual(searchTraceHits(db, 'alpha OR nosuchword').map((h) => h.trace_id), ['a', 'both']); // a tie: newest first
  assert.deepEqual(searchTraceHits(db, 'nosuchword OR another'), []);
  db.close();
});

test('a word in more than COMMON_ROWS rows weighs nothing: the rarer words rank its matches; a query of such words only shows them newest first', () => {
  const db = openDb(':memory:');
  const n = COMMON_ROWS + 1;
  insertTrace(db, trace('big'));
  insertSpans(db, Array.from({ length: 2 * n }, (_, k) => span('big', `s${k}`, k % 2 ? 'filler' : 'again')));
  put(db, trace('x1'), ['filler zyzzyva and more words here']);
  put(db, trace('x2'), ['zyzzyva zyzzyva filler words']);
  put(db, trace('y1'), ['filler again once']);
  put(db, trace('y2'), ['again and filler, twice again']);
  // ranked by bm25 of the rare word alone (over the rows holding both); exact: of both words
  const hits = searchTraceHits(db, 'filler zyzzyva');
  assert.deepEqual(hits.map((h) => h.trace_id), ['x2', 'x1']);
  const rare = bm25Of(db, '"zyzzyva"', ['x2', 'x1']);
  hits.forEach((h, i) => assert.ok(Math.abs(h.rank - rare[i]!) < 1e-9, `${h.trace_id}: ${h.rank} vs ${rare[i]}`));
  // the snippet marks the words that ranked it
  assert.ok(hits.every((h) => h.snippet.includes('«zyzzyva»') && !h.snippet.includes('«filler»')), JSON.stringify(hits.map((h) => h.snippet)));
  const or = searchTraceHits(db, 'filler OR zyzzyva');
  assert.ok(or[0]!.snippet.includes('«zyzzyva»'), JSON.stringify(or.slice(0, 3)));
  const exact = searchTraceHits(db, 'filler zyzzyva', { exact: true });
  const both = bm25Of(db, '"filler" "zyzzyva"', exact.map((h) => h.trace_id));
  exact.forEach((h, i) => assert.ok(Math.abs(h.rank - both[i]!) < 1e-9, `${h.trace_id}: ${h.rank} vs ${both[i]}`));
  // two common words matching few rows together: unranked, newest first; exact ranks them
  const common = searchTraceHits(db, 'filler again');
  assert.deepEqual(common.map((h) => [h.trace_id, h.rank, h.matches]), [['y2', 0, 1], ['y1', 0, 1]]);
  assert.ok(searchTraceHits(db, 'filler again', { exact: true }).every((h) => h.rank < 0));
  // span hits follow the same rule
  assert.deepEqual(searchTraces(db, 'filler zyzzyva').map((h) => [h.trace_id, h.rank]), hits.map((h) => [h.trace_id, h.rank]));
  db.close();
});

/** the texts of the prefix tests: trace id → its one span */
const PREFIXED: Record<string, string> = {
  sitting: 'babysitting the kids all evening',
  sitter: 'a babysitter came at nine',
  baby: 'the baby sleeps',
  because: 'late because of the rain',
  bacon: 'eggs and bacon',
  other: 'nothing of the sort',
};

/** the trace ids `query` finds, sorted */
const found = (db: DB, query: string, opts = {}) => searchTraceHits(db, query, opts).map((h) => h.trace_id).sort();

/** every prefix case of PREFIXED, on `db` */
function checkPrefixes(db: DB): void {
  // porter stems `babysitting` to `babysit` and would stem the prefix `babys` to `babi` (baby): it is looked up as it is
  assert.deepEqual(found(db, 'babys*'), ['sitter', 'sitting']);
  // prefixes longer than the stem of a word they start (`babysitting` is `babysit` in the index)
  assert.deepEqual(found(db, 'babysitt*'), ['sitter', 'sitting']);
  assert.deepEqual(found(db, 'babysitti*'), ['sitting']);
  assert.deepEqual(found(db, 'bab*'), ['baby', 'sitter', 'sitting']);
  assert.deepEqual(found(db, 'ba*'), ['baby', 'bacon', 'sitter', 'sitting']);
  assert.deepEqual(found(db, 'BABYS*'), ['sitter', 'sitting']);
  // a word that porter stems to a stem porter would change again (`because` → `becaus` → `becau`)
  assert.deepEqual(found(db, 'becaus*'), ['because']);
  assert.deepEqual(found(db, 'because*'), ['because']);
  // with other words, OR alternatives, a prefix nothing starts with, exact ranking, span hits
  assert.deepEqual(found(db, 'babys* evening'), ['sitting']);
  assert.deepEqual(found(db, 'babys* OR bacon'), ['bacon', 'sitter', 'sitting']);
  assert.deepEqual(found(db, 'babysx*'), []);
  assert.deepEqual(found(db, 'babysx* OR bacon'), ['bacon']);
  assert.deepEqual(found(db, 'babys*', { exact: true }), ['sitter', 'sitting']);
  const hit = searchTraceHits(db, 'babys*').find((h) => h.trace_id === 'sitting')!;
  assert.ok(hit.snippet.includes('«babysitting»') && hit.matches === 1 && hit.rank < 0, JSON.stringify(hit));
  assert.deepEqual(searchTraces(db, 'babys*').map((h) => h.trace_id).sort(), ['sitter', 'sitting']);
}

test('a prefix (`babys*`) finds the words it starts, stemmed ones too; a prefix of one letter is a usage error', () => {
  const db = openDb(':memory:');
  for (const [id, text] of Object.entries(PREFIXED)) put(db, trace(id), [text]);
  checkPrefixes(db);
  assert.equal(MIN_PREFIX, 2);
  for (const q of ['b*', 'babysitting b*', 'x-b*', '4*']) {
    assert.throws(() => searchTraceHits(db, q), (e: unknown) => e instanceof UsageError && /a prefix needs at least 2 letters or digits/.test(e.message), q);
    assert.throws(() => searchTraces(db, q), UsageError, q);
  }
  // a lone `*` or a word ending in `**` is no prefix: searched as it is (and `*` alone is nothing to search)
  assert.deepEqual(found(db, '*'), []);
  db.close();
});

test('a store from before the prefix indexes (schema 10) migrates on its first open by a writer: its prefix search then works, a reader needs none', () => {
  const dir = mkdtempSync(join(tmpdir(), 'aa-search-'));
  try {
    const path = join(dir, 'store.db');
    const old = new Database(path);
    for (const m of MIGRATIONS.slice(0, 10)) old.exec(m);
    old.pragma('user_version = 10');
    for (const [id, text] of Object.entries(PREFIXED)) put(old, trace(id), [text]);
    const ftsSql = (d: DB) => (d.prepare("SELECT sql FROM sqlite_master WHERE name = 'trace_fts'").pluck().get() as string);
    assert.ok(!ftsSql(old).includes('prefix'));
    const rows = (d: DB) => d.prepare('SELECT rowid, body FROM trace_fts ORDER BY rowid').all();
    const before = rows(old);
    old.close();
    // a reader (the dashboard) takes the old schema as it is: prefix search works, without the prefix indexes
    const ro = openDbReadOnly(path);
    assert.equal(ro.pragma('user_version', { simple: true }), 10);
    checkPrefixes(ro);
    ro.close();
    const db = openDb(path);
    assert.equal(db.pragma('user_version', { simple: true }), MIGRATIONS.length);
    assert.match(ftsSql(db), /prefix = '2 3'/);
    assert.deepEqual(rows(db), before); // same rows, same rowids
    db.prepare("INSERT INTO trace_fts (trace_fts) VALUES ('integrity-check')").run();
    checkPrefixes(db);
    // writers keep the new index: a new trace is found by prefix, a deleted row is gone
    put(db, trace('later'), ['babysat twice']);
    assert.deepEqual(found(db, 'babys*'), ['later', 'sitter', 'sitting']);
    db.prepare("INSERT INTO trace_fts (trace_fts) VALUES ('integrity-check')").run();
    db.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

function cli(args: string[]): { code: number; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8' });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

test('CLI: traces search prints one row per trace with run / eval, task, repeat, status, score, matches; --run, --json; evals lists the evaluations', () => {
  const dir = mkdtempSync(join(tmpdir(), 'aa-search-'));
  try {
    const path = join(dir, 'store.db');
    const db = openDb(path);
    insertRun(db, {
      id: 'run-a', name: 'demo', kind: 'harness', study_path: 'study.yaml', study_json: '{}', study_text: 'x: 1', config_hash: 'h', repo: '/r',
      base_commit: 'abc', branch: 'autoagent/run-a', lock_manifest: '{}', metric_name: 'accuracy', direction: 'maximize', self_reported: 0,
      unsafe_no_sandbox: 0, environment: null,
    });
    put(db, trace('trace-aaaa1', { repeat: 2 }), ['#### 42 first', '#### 42 second', 'other'], { score: 1, pass: true, output: '#### 42' });
    const ev = 'eval-20260102T030405-wxyz';
    const evt = (id: string, task: string, started: number) => trace(id, { run_id: null, experiment_seq: null, group_id: ev, task_id: task, started_at: started, harness: 'harnesses/gsm8k' });
    put(db, evt('trace-bbbb1', 'gsm8k/0001', Date.parse('2026-01-02T03:04:05Z')), ['#### 42 here'], { score: 1, pass: true, ended_at: Date.parse('2026-01-02T03:05:05Z') });
    put(db, evt('trace-bbbb2', 'gsm8k/0002', Date.parse('2026-01-02T03:04:06Z')), ['nothing'], { score: 0, pass: false, ended_at: Date.parse('2026-01-02T03:05:00Z') });
    db.close();

    const text = cli(['traces', 'search', '#### 42', '--db', path]);
    assert.equal(text.code, 0, text.stderr);
    const lines = text.stdout.trimEnd().split('\n');
    assert.match(lines[0]!, /^trace\s+run \/ eval\s+task\s+rep\s+status\s+score\s+matches\s+best match$/);
    assert.equal(lines.length, 3, text.stdout); // two traces, not four spans
    const runRow = lines.find((l) => l.startsWith('trace-aa'))!;
    assert.match(runRow, /run-a\/3\s+gsm8k\/trace-aaaa1\s+2\s+ok\s+1\S*\s+3\s+(tool calc|answer \/ error): .*«42»/);
    assert.match(lines.find((l) => l.startsWith('trace-bb'))!, new RegExp(`${ev}\\s+gsm8k/0001\\s+0\\s+ok\\s+1\\S*\\s+1\\s`));
    const json = JSON.parse(cli(['traces', 'search', '#### 42', '--db', path, '--json', '--run', 'run-a']).stdout);
    assert.deepEqual(json.map((h: { trace_id: string; matches: number; run_id: string }) => [h.trace_id, h.matches, h.run_id]), [['trace-aaaa1', 3, 'run-a']]);
    assert.equal(JSON.parse(cli(['traces', 'search', '#### 42', '--db', path, '--json', '--limit', '1']).stdout).length, 1);
    const badRun = cli(['traces', 'search', '42', '--db', path, '--run', 'nope']);
    assert.equal(badRun.code, 2);
    assert.match(badRun.stderr, /--run: no run nope/);
    assert.equal(badRun.stderr.trim().split('\n').length, 1);
    const short = cli(['traces', 'search', '4*', '--db', path]);
    assert.equal(short.code, 2, short.stderr);
    assert.match(short.stderr, /search "4\*": a prefix needs at least 2 letters or digits before the \*/);
    assert.equal(short.stderr.trim().split('\n').length, 1);
    assert.match(cli(['traces', 'search', '42*', '--db', path]).stdout, /trace-aaaa1/);

    const evals = cli(['evals', '--db', path]);
    assert.equal(evals.code, 0, evals.stderr);
    assert.match(evals.stdout, /^eval\s+benchmark\s+harness\s+tasks\s+score\s+passed\s+failed\s+cost \$\s+date/);
    assert.match(evals.stdout, new RegExp(`${ev}\\s+gsm8k/val\\s+harnesses/gsm8k\\s+2\\s+0\\.5\\S*\\s+1\\s+1\\s+0\\.0000\\s+2026-01-02 03:04`));
    assert.ok(!evals.stdout.includes('run-a'));
    const ej = JSON.parse(cli(['evals', '--db', path, '--json']).stdout);
    assert.equal(ej.length, 1);
    assert.deepEqual([ej[0].id, ej[0].tasks, ej[0].score, ej[0].passed, ej[0].failed, ej[0].started_at, ej[0].wall_ms], [ev, 2, 0.5, 1, 1, '2026-01-02T03:04:05.000Z', 60_000]);
    const empty = join(dir, 'empty.db');
    openDb(empty).close();
    assert.match(cli(['evals', '--db', empty]).stdout, /no evaluations in this store/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
