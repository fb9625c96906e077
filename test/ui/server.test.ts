/**
 * `autoagent ui`'s server over a real store on disk, on real ports on 127.0.0.1: the JSON API as the
 * README documents it (with curl), the event stream, the token off loopback, the Host check,
 * static files by name only, a read-only store connection, and the one write (label, tags, notes).
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openDb, ledgerHead, insertExperiment, getRun } from '../../traces/index.ts';
import { startUiServer, openReadOnly, isLoopback, type UiServer } from '../../src/ui/server.ts';
import { ledgerData } from '../../src/views.ts';
import { knobImportance, knobView, type KnobAxis, type KnobTrial } from '../../src/ui/queries.ts';
import { ensureBundle } from '../../src/ui/build.ts';
import { makeHarnessRun, TASKS } from '../report/fixtures.ts';

const tmp = mkdtempSync(join(tmpdir(), 'autoagent-ui-test-'));
const store = join(tmp, 'store.db');
let runId = '';
let traceId = '';
let server: UiServer;
const BIN = join(import.meta.dirname, '../../bin/autoagent.js');

function curl(args: string[], timeoutS = 10): Promise<{ code: number; out: string; err: string }> {
  return new Promise((done) => {
    execFile('curl', ['-sS', '--max-time', String(timeoutS), ...args], { encoding: 'utf8' }, (e, out, err) => {
      done({ code: e ? ((e as { code?: number }).code ?? 1) : 0, out, err });
    });
  });
}

const hasCurl = await new Promise<boolean>((done) => execFile('curl', ['--version'], (e) => done(!e)));

function sha(path: string): string {
  return createHash('sha256').update(readFileSync(path)).digest('hex');
}

before(async () => {
  const fx = makeHarnessRun(store);
  runId = fx.runId;
  traceId = fx.traces.find((t) => t.seq === 0 && t.task === TASKS[3] && t.repeat === 1)!.id;
  // a knob experiment (as search / optuna record them) on top of the fixture
  fx.db.prepare("UPDATE experiments SET meta = ? WHERE run_id = ? AND seq = 1").run(JSON.stringify({
    proposer: 'search', start: { 'h/harness.yaml:temperature': 0.9 }, assignment: { 'h/harness.yaml:temperature': 0.2 },
    changed: [{ knob: 'h/harness.yaml:temperature', from: 0.9, to: 0.2 }],
  }), runId);
  fx.db.close(); // checkpoints the WAL: the file on disk is the whole store
  server = await startUiServer({ dbPath: store, port: 0 });
});

after(async () => {
  await server?.close();
  rmSync(tmp, { recursive: true, force: true });
});

test('GET /api/runs and GET /api/runs/:id answer curl as the README says: runs with status, best, Δ, spend; a run with its experiments', { skip: !hasCurl && 'no curl' }, async () => {
  const base = `http://127.0.0.1:${server.port}`;
  assert.equal(server.url, `${base}/`, 'on loopback the URL has no token');
  const list = await curl([`${base}/api/runs`]);
  assert.equal(list.code, 0, list.err);
  const runs = JSON.parse(list.out).runs;
  assert.equal(runs.length, 1);
  const r = runs[0];
  assert.equal(r.id, runId);
  assert.equal(r.status, 'finished');
  assert.equal(r.metric, 'score');
  assert.equal(typeof r.best, 'number');
  assert.ok(Math.abs(r.delta - (r.best - r.baseline)) < 1e-12);
  assert.ok(r.spend.tokens > 0 && r.spend.cost_usd > 0, 'the harness run spent tokens');
  assert.deepEqual([r.label, r.tags, r.notes], [null, [], '']);

  const one = await curl([`${base}/api/runs/${runId}`]);
  const d = JSON.parse(one.out);
  assert.equal(d.run.id, runId);
  assert.deepEqual(d.experiments.map((e: { seq: number }) => e.seq), [0, 1, 2, 3, 4]);
  const e1 = d.experiments[1];
  for (const k of ['decision', 'reason', 'hypothesis', 'diff', 'evaluations', 'incumbent_metric', 'margin', 'threshold', 'proposal', 'meta']) assert.ok(k in e1, k);
  assert.ok(e1.diff.includes('+new 1'));
  // the bar of the acceptance rule: incumbent + margin on a metric to maximize
  assert.ok(Math.abs(e1.threshold - (e1.incumbent_metric + e1.margin)) < 1e-12);
  assert.ok(d.experiments.some((e: { proposal: { cited: Array<{ found: boolean }> } | null }) => e.proposal?.cited[0]?.found), 'a cited trace resolved');

  // a run id prefix works as on the command line; an unknown run is a 404 with one line
  assert.equal(JSON.parse((await curl([`${base}/api/runs/${runId.slice(0, 12)}`])).out).run.id, runId);
  const missing = await curl(['-w', '\n%{http_code}', `${base}/api/runs/nope`]);
  assert.match(missing.out, /"error":"no run nope in this store[^"]*"}\n404$/);
});

test('the event stream: curl -N prints the run\'s state at once, and a new event when another process writes the store', { skip: !hasCurl && 'no curl' }, async () => {
  const events: string[] = [];
  const child = spawn('curl', ['-sN', '--max-time', '15', `http://127.0.0.1:${server.port}/api/runs/${runId}/events`]);
  let buf = '';
  child.stdout.on('data', (b) => {
    buf += String(b);
    let i: number;
    while ((i = buf.indexOf('\n\n')) >= 0) {
      events.push(buf.slice(0, i));
      buf = buf.slice(i + 2);
    }
  });
  const waitFor = async (pred: () => boolean, what: string) => {
    for (let i = 0; i < 100 && !pred(); i++) await new Promise((r) => setTimeout(r, 100));
    assert.ok(pred(), `${what}; got: ${events.join(' | ')}`);
  };
  const runEvents = () => events.filter((e) => e.startsWith('event: run'));
  try {
    await waitFor(() => runEvents().length === 1, 'the state at once');
    const first = JSON.parse(/data: (.*)/.exec(runEvents()[0]!)![1]!);
    assert.equal(first.experiments, 5);
    // another connection (as a run in another process would) adds an experiment
    const w = openDb(store);
    insertExperiment(w, {
      run_id: runId, seq: 5, parent_commit: 'a'.repeat(40), candidate_commit: null, proposer: 'llm', hypothesis: 'one more', meta: null, edits: '[]', diff: '', files_hash: 'h5',
    });
    w.close();
    await waitFor(() => runEvents().length === 2, 'a second event after the write');
    const second = JSON.parse(/data: (.*)/.exec(runEvents()[1]!)![1]!);
    assert.equal(second.experiments, 6);
    assert.equal(second.last_seq, 5);
    assert.equal(server.streams(), 1);
    child.kill();
    for (let i = 0; i < 50 && server.streams() > 0; i++) await new Promise((r) => setTimeout(r, 100));
    assert.equal(server.streams(), 0, 'a client that leaves is unsubscribed');
  } finally {
    child.kill();
    const w = openDb(store);
    w.prepare('DELETE FROM experiments WHERE run_id = ? AND seq = 5').run(runId);
    w.close();
  }
});

test('traces: GET /api/traces/:id has the spans, their tree and the transcript; GET /api/search finds a word with its run and experiment', async () => {
  const base = `http://127.0.0.1:${server.port}`;
  const t = await (await fetch(`${base}/api/traces/${traceId}`)).json();
  assert.equal(t.trace.id, traceId);
  assert.ok(t.spans.length >= 8);
  assert.equal(t.roots.length, 1);
  assert.match(t.transcript, /ENOENT data\.txt/);
  const s = await (await fetch(`${base}/api/search?q=ENOENT`)).json();
  assert.ok(s.hits.length >= 1);
  assert.ok(s.hits.every((h: { run_id: string; experiment_seq: number }) => h.run_id === runId && typeof h.experiment_seq === 'number'));
  assert.ok(s.hits.some((h: { snippet: string }) => h.snippet.includes('«ENOENT»')));
  assert.equal((await fetch(`${base}/api/traces/nope`)).status, 404);
});

test('knobs: the baseline at the recorded start, each assignment with its mean, and importances that find the knob that matters', async () => {
  const k = knobView(openReadOnly(store), runId);
  assert.deepEqual(k.trials.map((t) => [t.seq, t.assignment['h/harness.yaml:temperature']]), [[0, 0.9], [1, 0.2]]);
  // importance: `a` decides the metric, `b` is noise
  const axes: KnobAxis[] = [
    { key: 'a', type: 'number', log: false, min: 0, max: 7, values: [] },
    { key: 'b', type: 'string', log: false, min: null, max: null, values: ['x', 'y'] },
  ];
  const trials: KnobTrial[] = Array.from({ length: 8 }, (_, i) => ({ seq: i, assignment: { a: i, b: i % 2 ? 'x' : 'y' }, metric: i * 10 + (i % 2), decision: 'discarded' }));
  const imp = knobImportance(axes, trials)!;
  assert.equal(imp[0]!.key, 'a');
  assert.ok(imp[0]!.importance > 0.9, JSON.stringify(imp));
  assert.ok(Math.abs(imp.reduce((s, x) => s + x.importance, 0) - 1) < 1e-9);
  assert.equal(knobImportance(axes, trials.slice(0, 2)), null, 'too few to say');
});

test('exports: CSV with one row per experiment (knob columns, formula-looking text defused) and JSON as attachments', async () => {
  const base = `http://127.0.0.1:${server.port}`;
  const w = openDb(store);
  const hyp = (w.prepare('SELECT hypothesis FROM experiments WHERE run_id = ? AND seq = 2').get(runId) as { hypothesis: string }).hypothesis;
  w.prepare('UPDATE experiments SET hypothesis = ? WHERE run_id = ? AND seq = 2').run('=HYPERLINK("http://x","a, b")', runId);
  w.close();
  const r = await fetch(`${base}/api/runs/${runId}/export.csv`);
  assert.equal(r.status, 200);
  assert.match(r.headers.get('content-type') ?? '', /^text\/csv/);
  assert.match(r.headers.get('content-disposition') ?? '', /attachment; filename="tooluse-20261122-000000-abc\.csv"/);
  const lines = (await r.text()).trim().split('\r\n');
  assert.equal(lines.length, 1 + 5);
  assert.ok(lines[0]!.startsWith('run,seq,round,proposer,decision,metric'));
  assert.ok(lines[0]!.endsWith(',knob:h/harness.yaml:temperature'));
  assert.ok(lines[1]!.endsWith(',0.9') && lines[2]!.endsWith(',0.2'), 'baseline at its start value, #1 at its assignment');
  assert.ok(lines[3]!.includes(`,"'=HYPERLINK(""http://x"",""a, b"")",`), lines[3]);
  const w2 = openDb(store);
  w2.prepare('UPDATE experiments SET hypothesis = ? WHERE run_id = ? AND seq = 2').run(hyp, runId);
  w2.close();
  const j = await fetch(`${base}/api/runs/${runId}/export.json`);
  assert.match(j.headers.get('content-disposition') ?? '', /attachment/);
  assert.equal((await j.json()).experiments.length, 5);
});

test('the store is opened read-only: its connection refuses writes, and reading everything leaves the file as it was', async () => {
  const ro = openReadOnly(store);
  assert.throws(() => ro.prepare("UPDATE runs SET name = 'x'").run(), /readonly/i);
  ro.close();
  const files = () => [store, `${store}-wal`].map((f) => (existsSync(f) ? sha(f) : '-')).join(' ');
  const before = files();
  const base = `http://127.0.0.1:${server.port}`;
  for (const p of ['/api/runs', `/api/runs/${runId}`, `/api/runs/${runId}/experiments/1`, `/api/runs/${runId}/knobs`, `/api/traces/${traceId}`, '/api/search?q=lookup', `/api/runs/${runId}/export.csv`, '/', '/app.js']) {
    assert.equal((await fetch(base + p)).status, 200, p);
  }
  assert.equal(files(), before, 'neither the database file nor its WAL changed');
});

test('PATCH and PUT change only label, tags and notes; the ledger chain is untouched; anything else is refused', async () => {
  const base = `http://127.0.0.1:${server.port}`;
  const headBefore = (() => { const d = openDb(store); const h = ledgerHead(d, runId); d.close(); return h; })();
  const send = (method: string, body: unknown, headers: Record<string, string> = { 'content-type': 'application/json' }) =>
    fetch(`${base}/api/runs/${runId}`, { method, headers, body: typeof body === 'string' ? body : JSON.stringify(body) });
  let r = await send('PATCH', { label: '  lr sweep  ', tags: ['gpu', 'nightly', 'gpu', ' '], notes: 'first try' });
  assert.equal(r.status, 200);
  assert.deepEqual(await r.json(), { label: 'lr sweep', tags: ['gpu', 'nightly'], notes: 'first try' });
  r = await send('PUT', { notes: 'second' });
  assert.deepEqual(await r.json(), { label: 'lr sweep', tags: ['gpu', 'nightly'], notes: 'second' });
  const listed = (await (await fetch(`${base}/api/runs`)).json()).runs[0];
  assert.deepEqual([listed.id, listed.label, listed.tags, listed.notes], [runId, 'lr sweep', ['gpu', 'nightly'], 'second'], 'the id keeps its form');

  const refused = async (res: Response, status: number, says: RegExp) => {
    assert.equal(res.status, status);
    assert.match((await res.json()).error, says);
  };
  await refused(await send('PATCH', { status: 'finished' }), 400, /only label, tags and notes can be changed \(got status\)/);
  await refused(await send('PATCH', { tags: 'gpu' }), 400, /tags: an array of strings/);
  await refused(await send('PATCH', { label: 'x'.repeat(201) }), 400, /label: at most 200/);
  await refused(await send('PATCH', 'label=x', { 'content-type': 'application/x-www-form-urlencoded' }), 415, /application\/json/);
  await refused(await send('PATCH', { label: 'x' }, { 'content-type': 'application/json', origin: 'http://evil.example' }), 403, /origin http:\/\/evil\.example refused/);
  await refused(await send('PATCH', '{not json', { 'content-type': 'application/json' }), 400, /not JSON/);
  await refused(await fetch(`${base}/api/runs/nope`, { method: 'PATCH', headers: { 'content-type': 'application/json' }, body: '{"label":"x"}' }), 404, /no run nope/);

  const d = openDb(store);
  assert.deepEqual(ledgerHead(d, runId), headBefore);
  assert.equal(getRun(d, runId)!.status, 'finished');
  d.close();
});

test('a store from before schema 9 is read as it is (no label yet), and the first edit adds the fields', async () => {
  const old = join(tmp, 'old.db');
  const fx = makeHarnessRun(old);
  // schema 8's store: without runs.label/tags/notes (9) and the parallel slots' columns (10)
  fx.db.exec(`ALTER TABLE runs DROP COLUMN label; ALTER TABLE runs DROP COLUMN tags; ALTER TABLE runs DROP COLUMN notes;
    ALTER TABLE evaluations DROP COLUMN round; ALTER TABLE evaluations DROP COLUMN slot; ALTER TABLE evaluations DROP COLUMN hardware;
    DROP TABLE promotions;`);
  fx.db.pragma('user_version = 8');
  fx.db.close();
  const s = await startUiServer({ dbPath: old, port: 0 });
  try {
    const base = `http://127.0.0.1:${s.port}`;
    const before = sha(old);
    const r = (await (await fetch(`${base}/api/runs`)).json()).runs[0];
    assert.deepEqual([r.label, r.tags, r.notes], [null, [], '']);
    // its baseline repeats read as baseline repeats (no round column yet), not as fresh repeats of a round
    const ro = openReadOnly(old);
    try {
      const rows = ledgerData(ro, getRun(ro, fx.runId)!).rows;
      assert.ok(rows.some((x) => x.status === 'baseline' && x.description.startsWith('baseline repeat 1')), 'the baseline repeats are listed as such');
      assert.ok(!rows.some((x) => x.description.includes('fresh repeat')), 'no fresh repeat in a run without rounds');
    } finally {
      ro.close();
    }
    assert.equal(sha(old), before, 'reading did not migrate it');
    const p = await fetch(`${base}/api/runs/${fx.runId}`, { method: 'PATCH', headers: { 'content-type': 'application/json' }, body: '{"tags":["old"]}' });
    assert.deepEqual(await p.json(), { label: null, tags: ['old'], notes: '' });
    assert.deepEqual((await (await fetch(`${base}/api/runs`)).json()).runs[0].tags, ['old']);
  } finally {
    await s.close();
  }
});

test('off loopback a token is required (header or ?token=), and the URL printed carries it', async () => {
  assert.ok(isLoopback('127.0.0.1') && isLoopback('127.8.9.1') && isLoopback('localhost') && isLoopback('::1') && isLoopback('[::1]'));
  assert.ok(!isLoopback('0.0.0.0') && !isLoopback('192.168.1.4') && !isLoopback('::'));
  const s = await startUiServer({ dbPath: store, host: '0.0.0.0', port: 0 });
  try {
    assert.ok(s.token && s.token.length >= 24, 'a random token');
    assert.equal(s.url, `http://0.0.0.0:${s.port}/?token=${s.token}`);
    const base = `http://127.0.0.1:${s.port}`;
    const noToken = await fetch(`${base}/api/runs`);
    assert.equal(noToken.status, 401);
    assert.match((await noToken.json()).error, /a token is required/);
    assert.equal((await fetch(`${base}/api/runs?token=wrong`)).status, 401);
    assert.equal((await fetch(`${base}/api/runs?token=${s.token}x`)).status, 401);
    assert.equal((await fetch(`${base}/api/runs/${runId}/events`)).status, 401, 'the event stream too');
    assert.equal((await fetch(`${base}/api/runs`, { method: 'PATCH', headers: { 'content-type': 'application/json' }, body: '{}' })).status, 401);
    assert.equal((await fetch(`${base}/api/runs?token=${s.token}`)).status, 200);
    assert.equal((await fetch(`${base}/api/runs`, { headers: { authorization: `Bearer ${s.token}` } })).status, 200);
    assert.equal((await fetch(`${base}/api/runs`, { headers: { 'x-autoagent-token': s.token! } })).status, 200);
    // another host name is fine here: the token is the guard
    assert.match(await rawGet(s.port, `/api/runs?token=${s.token}`, 'box.example:1'), /^HTTP\/1\.1 200/);
  } finally {
    await s.close();
  }
  // and each start makes a new one
  const s2 = await startUiServer({ dbPath: store, host: '0.0.0.0', port: 0 });
  const t2 = s2.token;
  await s2.close();
  assert.notEqual(t2, null);
});

test('on loopback without a token, a request naming another host is refused (DNS rebinding)', async () => {
  const r = await rawGet(server.port, '/api/runs', `attacker.example:${server.port}`);
  assert.match(r, /^HTTP\/1\.1 403/);
  assert.match(r, /host attacker\.example:\d+ refused/);
  assert.match(await rawGet(server.port, '/', 'attacker.example'), /^HTTP\/1\.1 403/, 'the page too');
  assert.match(await rawGet(server.port, '/api/runs', `localhost:${server.port}`), /^HTTP\/1\.1 200/);
  assert.match(await rawGet(server.port, '/api/runs', `[::1]:${server.port}`), /^HTTP\/1\.1 200/);
});

/** a raw request line, so nothing normalises the path before the server sees it */
function rawGet(port: number, path: string, host = `127.0.0.1:${port}`): Promise<string> {
  return new Promise((done, fail) => {
    const sock = connect(port, '127.0.0.1', () => sock.write(`GET ${path} HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`));
    let out = '';
    sock.on('data', (b) => (out += String(b)));
    sock.on('end', () => done(out));
    sock.on('error', fail);
    sock.setTimeout(5000, () => sock.destroy(new Error('timeout')));
  });
}

test('static files are a fixed table: traversal in any spelling is a 404, and the page and script come with safe headers', async () => {
  for (const p of ['/../../../../etc/passwd', '/%2e%2e/%2e%2e/etc/passwd', '/..%2f..%2f..%2fetc%2fpasswd', '/app.js/../../package.json', '/%2e%2e%5c%2e%2e%5cpackage.json', '/dist/ui/app.js', '/src/ui/server.ts', '//etc/passwd']) {
    const res = await rawGet(server.port, p);
    assert.match(res, /^HTTP\/1\.1 (404|400)/, `${p}: ${res.slice(0, 80)}`);
    assert.doesNotMatch(res, /root:x:0:0|"name": "autoagent"|startUiServer/, p);
  }
  const page = await fetch(`http://127.0.0.1:${server.port}/`);
  assert.match(page.headers.get('content-security-policy') ?? '', /default-src 'none'; script-src 'self'/);
  assert.equal(page.headers.get('x-content-type-options'), 'nosniff');
  assert.match(await page.text(), /<script src="\/app\.js"><\/script>/);
  const js = await fetch(`http://127.0.0.1:${server.port}/app.js`);
  assert.match(js.headers.get('content-type') ?? '', /text\/javascript/);
  assert.ok((await js.text()).length > 30_000, 'the bundle, uPlot included');
});

function runCli(args: string[], cwd = tmp): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((done) => {
    const child = spawn(process.execPath, [BIN, ...args], { cwd });
    let out = '';
    let err = '';
    child.stdout.on('data', (b) => (out += String(b)));
    child.stderr.on('data', (b) => (err += String(b)));
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    child.on('exit', (code) => {
      clearTimeout(timer);
      done({ code, out, err });
    });
  });
}

test('autoagent ui: prints the URL (with the token off loopback), serves until SIGTERM, and says in one line what is wrong', async () => {
  const child = spawn(process.execPath, [BIN, 'ui', '--db', store, '--port', '0', '--host', '0.0.0.0'], { cwd: tmp });
  let out = '';
  child.stdout.on('data', (b) => (out += String(b)));
  try {
    for (let i = 0; i < 300 && !/Ctrl-C/.test(out); i++) await new Promise((r) => setTimeout(r, 100));
    const m = /autoagent ui: http:\/\/0\.0\.0\.0:(\d+)\/\?token=([\w-]+)/.exec(out);
    assert.ok(m, out);
    assert.match(out, /every request needs the token/);
    const r = await fetch(`http://127.0.0.1:${m[1]}/api/runs?token=${m[2]}`);
    assert.equal(r.status, 200);
    assert.equal((await fetch(`http://127.0.0.1:${m[1]}/api/runs`)).status, 401);
    const exited = new Promise<number | null>((done) => child.on('exit', (c) => done(c)));
    child.kill('SIGTERM');
    assert.equal(await exited, 0);
  } finally {
    child.kill('SIGKILL');
  }
  const missing = await runCli(['ui', '--db', join(tmp, 'none.db'), '--port', '0']);
  assert.equal(missing.code, 2);
  assert.match(missing.err, /^autoagent: .*none\.db: no autoagent store here/);
  assert.equal(missing.err.trim().split('\n').length, 1);
  const busy = await runCli(['ui', '--db', store, '--port', String(server.port)]);
  assert.equal(busy.code, 1);
  assert.match(busy.err, new RegExp(`^autoagent: port ${server.port} on 127\\.0\\.0\\.1 is in use \\(another autoagent ui\\?\\): pass --port N\\n$`));
});

test('every curl line of the README\'s dashboard section works as written (port, run and trace filled in)', { skip: !hasCurl && 'no curl' }, async () => {
  const readme = readFileSync(join(import.meta.dirname, '../../README.md'), 'utf8');
  const section = readme.slice(readme.indexOf('## Dashboard'), readme.indexOf('\n## ', readme.indexOf('## Dashboard') + 5));
  const block = /```sh\n([\s\S]*?)```/.exec(section)![1]!;
  const lines = block.split('\n').filter((l) => l.startsWith('curl '));
  assert.ok(lines.length >= 9, `${lines.length} curl lines`);
  const paths = new Set<string>();
  for (const line of lines) {
    const cmd = line.replace(/\s+#.*$/, '').replaceAll('127.0.0.1:4873', `127.0.0.1:${server.port}`).replaceAll('RUN', runId).replaceAll('TRACE', traceId);
    const stream = / -sN /.test(cmd);
    const res = await new Promise<{ code: number; out: string }>((done) => {
      execFile('sh', ['-c', stream ? cmd.replace('curl -sN', 'curl -sN --max-time 2') : cmd], { encoding: 'utf8' }, (e, out) => done({ code: e ? ((e as { code?: number }).code ?? 1) : 0, out }));
    });
    paths.add(/http:\/\/[^/]+(\/[^\s'?]*)/.exec(cmd)![1]!);
    if (stream) {
      assert.equal(res.code, 28, `${line}: a stream runs until curl's --max-time`);
      assert.match(res.out, /^event: hello\n[\s\S]*\nevent: (run|runs)\ndata: \{/, line);
    } else {
      assert.equal(res.code, 0, line);
      if (cmd.includes('export.csv')) assert.match(res.out, /^run,seq,/, line);
      else assert.doesNotThrow(() => JSON.parse(res.out), `${line}: ${res.out.slice(0, 200)}`);
      assert.doesNotMatch(res.out, /^\{"error"/, `${line}: ${res.out.slice(0, 200)}`);
    }
  }
  for (const p of ['/api/runs', `/api/runs/${runId}`, `/api/runs/${runId}/events`, '/api/events']) assert.ok(paths.has(p), `the README shows ${p}`);
});

test('the client bundle is built when missing or older than its sources, and kept otherwise', async () => {
  const out = join(tmp, 'bundle', 'app.js');
  assert.equal(await ensureBundle(out), out);
  const js = readFileSync(out, 'utf8');
  assert.ok(js.length > 30_000 && js.includes('uplot'), 'uPlot bundled in');
  assert.doesNotMatch(js, /https?:\/\/(?!www\.w3\.org)[a-z0-9.-]+\.(com|net|org|io|dev)\//i, 'no CDN or other remote URL');
  const built = statSync(out).mtimeMs;
  await ensureBundle(out);
  assert.equal(statSync(out).mtimeMs, built, 'a fresh bundle is not rebuilt');
  writeFileSync(out, 'stale');
  utimesSync(out, new Date(0), new Date(0));
  await ensureBundle(out);
  assert.ok(readFileSync(out, 'utf8').length > 30_000, 'a stale bundle is rebuilt');
});
