/**
 * Bad stores, run-id prefixes and copied repositories, through the real CLI.
 *
 *  - every command that takes --db, given random bytes, a truncated store, a directory, a FIFO,
 *    someone else's SQLite database, a newer store, a path under /proc, /sys or /dev, or a path
 *    below a regular file, ends at once with exit 2 and one line naming the path: no stack trace,
 *    no spin (each process is SIGKILLed at a deadline, so a spin fails the test instead of hanging);
 *  - a run-id prefix of several runs is a usage error listing them; an exact id always wins;
 *  - a repository copied with its store is resumed, audited, finalized and reported as itself.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, readFileSync, symlinkSync, rmSync, truncateSync, statSync, writeFileSync, copyFileSync, existsSync, realpathSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { randomBytes } from 'node:crypto';
import Database from 'better-sqlite3';
import { startRun } from '../../src/loop.ts';
import { MemoryReporter } from '../../src/report.ts';
import { openDb, insertRun, getRun, listExperiments, type NewRun } from '../../traces/index.ts';
import type { Proposer, ProposalContext } from '../../meta-agent/index.ts';
import { makeRepo, cleanup, sh, PARAMS_PY, EVALUATE_PY, studyYaml } from '../helpers/repo.ts';
import { cli } from '../helpers/cli.ts';

const BIN = resolve(import.meta.dirname, '../../bin/autoagent.js');
/** a spinning CLI is killed here and the test fails; a healthy one answers in a few seconds even on a loaded machine */
const DEADLINE_MS = 30_000;

interface Ran { code: number | null; signal: string | null; stdout: string; stderr: string; ms: number }

function spawnCli(args: string[], cwd: string, env: Record<string, string> = {}): Promise<Ran> {
  return new Promise((done) => {
    const t0 = Date.now();
    const child = spawn(process.execPath, [BIN, ...args], {
      cwd, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'], timeout: DEADLINE_MS, killSignal: 'SIGKILL',
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('close', (code, signal) => done({ code, signal, stdout, stderr, ms: Date.now() - t0 }));
  });
}

/** run `fns` with at most `n` at once */
async function pool<T>(n: number, fns: Array<() => Promise<T>>): Promise<T[]> {
  const out: T[] = new Array(fns.length);
  let next = 0;
  await Promise.all(Array.from({ length: Math.min(n, fns.length) }, async () => {
    while (next < fns.length) {
      const i = next++;
      out[i] = await fns[i]!();
    }
  }));
  return out;
}

function scripted(steps: Array<(ctx: ProposalContext) => { hypothesis: string; edits: Array<{ path: string; content: string }> }>): Proposer {
  let i = 0;
  return { name: 'scripted', propose: async (ctx) => (i < steps.length ? steps[i++]!(ctx) : null) };
}
const setX = (value: string) => (ctx: ProposalContext) => ({
  hypothesis: `X → ${value}`,
  edits: [{ path: 'params.py', content: ctx.files['params.py']!.replace(/^X = \S+/m, `X = ${value}`) }],
});

const TINY = studyYaml().replace('experiments: 8', 'experiments: 1').replace('baseline_repeats: 3', 'baseline_repeats: 1');

// ---------------------------------------------------------------------------------------------
// one real store from a tiny study, and bad stores made from it and from nothing

let dir = '';
let repo = '';
let good = '';
let runId = '';

before(async () => {
  dir = realpathSync(mkdtempSync(join(tmpdir(), 'autoagent-store-')));
  repo = makeRepo({ 'params.py': PARAMS_PY, 'evaluate.py': EVALUATE_PY, 'study.yaml': TINY });
  const res = await startRun(join(repo, 'study.yaml'), { overrides: {}, unsafeNoSandbox: false, reporter: new MemoryReporter(), proposer: scripted([setX('3.0')]) });
  assert.equal(res.status, 'finished', res.stopReason ?? '');
  runId = res.runId;
  good = res.dbPath;
  checkpoint(good); // the copies below are whole stores
});

after(() => {
  if (repo) cleanup(repo);
  if (dir) rmSync(dir, { recursive: true, force: true });
});

function badStores(): Array<{ label: string; path: string; says: RegExp }> {
  const random = join(dir, 'random.db');
  writeFileSync(random, randomBytes(8192));
  const truncated = join(dir, 'truncated.db');
  copyFileSync(good, truncated);
  truncateSync(truncated, Math.floor(statSync(truncated).size / 2));
  const folder = join(dir, 'folder.db');
  mkdirSync(folder, { recursive: true });
  const fifo = join(dir, 'fifo.db');
  if (!existsSync(fifo)) assert.equal(spawnSync('mkfifo', [fifo]).status, 0, 'mkfifo');
  const foreign = join(dir, 'foreign.db');
  rmSync(foreign, { force: true });
  const f = new Database(foreign);
  f.exec('CREATE TABLE songs (title TEXT); INSERT INTO songs VALUES (\'a\')');
  f.close();
  const newer = join(dir, 'newer.db');
  copyFileSync(good, newer);
  const n = new Database(newer);
  n.pragma('user_version = 99');
  n.close();
  const short = join(dir, 'short.db');
  writeFileSync(short, 'SQLite format 3\0');
  return [
    { label: 'random bytes', path: random, says: /not an autoagent store \(not a SQLite database\)/ },
    { label: 'a truncated store', path: truncated, says: /not an autoagent store \(truncated: .*malformed\)/ },
    { label: 'a directory', path: folder, says: /is a directory, not an autoagent store \(pass --db FILE\)/ },
    { label: 'a FIFO', path: fifo, says: /is a FIFO \(named pipe\), not an autoagent store/ },
    { label: 'a foreign SQLite database', path: foreign, says: /a SQLite database, but not an autoagent store \(tables songs, user_version 0\)/ },
    { label: 'a newer store', path: newer, says: /written by a newer autoagent \(schema 99, this one knows \d+\): upgrade autoagent/ },
    { label: 'a SQLite header only', path: short, says: /not an autoagent store \(not a SQLite database: 16 byte\(s\), shorter than a SQLite header\)/ },
  ];
}

function assertOneLine(r: Ran, label: string, path: string, says: RegExp, code = 2): void {
  assert.equal(r.signal, null, `${label}: killed at the ${DEADLINE_MS} ms deadline (a spin?); stderr: ${r.stderr}`);
  assert.equal(r.code, code, `${label}: exit code (stderr: ${r.stderr})`);
  const lines = r.stderr.split('\n').filter((l) => l.trim());
  assert.equal(lines.length, 1, `${label}: one line on stderr, got:\n${r.stderr}`);
  assert.ok(lines[0]!.includes(path), `${label}: the line names ${path}: ${lines[0]}`);
  assert.match(lines[0]!, says, label);
  assert.doesNotMatch(r.stderr, /internal error|    at |SqliteError/, `${label}: no stack trace`);
}

test('every bad store given to `log --db` is one line naming it, exit 2, at once', async () => {
  const stores = badStores();
  const results = await pool(4, stores.map((s) => () => spawnCli(['log', '--db', s.path], repo)));
  stores.forEach((s, i) => assertOneLine(results[i]!, s.label, s.path, s.says));
  // the good store is still a store, and a bad store was not changed by being looked at
  const ok = await spawnCli(['log', '--db', good], repo);
  assert.equal(ok.code, 0, ok.stderr);
  assert.match(ok.stdout, new RegExp(`run ${runId}`));
  const foreign = new Database(stores.find((s) => s.label.includes('foreign'))!.path, { readonly: true });
  assert.deepEqual(foreign.prepare(`SELECT name FROM sqlite_master WHERE type = 'table'`).all(), [{ name: 'songs' }]);
  assert.equal(foreign.pragma('user_version', { simple: true }), 0);
  foreign.close();
});

test('every command that takes --db says the same of random bytes (and run, eval and log of a directory)', async () => {
  const stores = badStores().filter((s) => s.label === 'random bytes' || s.label === 'a directory');
  const commands: string[][] = [
    ['run', 'study.yaml', '--unsafe-no-sandbox'], ['resume', runId, '--unsafe-no-sandbox'], ['log'], ['show', '1'], ['status'],
    ['audit'], ['report', '-o', join(dir, 'r.html')], ['finalize', '--unsafe-no-sandbox'], ['export', 'langfuse'],
    ['eval', '--harness', 'h', '--bench', 'b', '--unsafe-no-sandbox'], ['traces', 'search', 'x'], ['traces', '1'],
  ];
  const env = { LANGFUSE_HOST: 'http://127.0.0.1:9', LANGFUSE_PUBLIC_KEY: 'pk-lf-x', LANGFUSE_SECRET_KEY: 'sk-lf-x' };
  const jobs = stores.flatMap((s) => commands.filter((c) => s.label === 'random bytes' || ['run', 'eval', 'log'].includes(c[0]!)).map((c) => ({ s, c })));
  const results = await pool(4, jobs.map(({ s, c }) => () => spawnCli([...c, '--db', s.path], repo, env)));
  jobs.forEach(({ s, c }, i) => assertOneLine(results[i]!, `${c.join(' ')} on ${s.label}`, s.path, s.says));
});

test('paths under /proc, /sys, /dev and below a regular file: one line, exit 2, no spin', async () => {
  const dangling = join(dir, 'dangling');
  rmSync(dangling, { force: true });
  symlinkSync(join(dir, 'gone'), dangling);
  const cases: Array<{ args: string[]; path: string; says: RegExp }> = [
    // a recursive mkdir of /proc/x spins forever (procfs answers ENOENT for a child of a folder that exists)
    { args: ['run', 'study.yaml', '--unsafe-no-sandbox'], path: '/proc/x/y.db', says: /lies in \/proc, which holds no autoagent store/ },
    { args: ['run', 'study.yaml', '--unsafe-no-sandbox'], path: '/proc/self/x.db', says: /lies in \/proc/ },
    { args: ['run', 'study.yaml', '--unsafe-no-sandbox'], path: '/sys/x.db', says: /lies in \/sys/ },
    { args: ['run', 'study.yaml', '--unsafe-no-sandbox'], path: '/dev/autoagent-x.db', says: /lies in \/dev/ },
    { args: ['eval', '--harness', 'h', '--bench', 'b', '--unsafe-no-sandbox'], path: '/proc/x/y.db', says: /lies in \/proc/ },
    { args: ['log'], path: '/dev/null', says: /lies in \/dev/ },
    // root writes anywhere, but not below a regular file
    { args: ['run', 'study.yaml', '--unsafe-no-sandbox'], path: join(repo, 'params.py', 'x.db'), says: /cannot create the store: .*params\.py is a file, not a folder/ },
    { args: ['run', 'study.yaml', '--unsafe-no-sandbox'], path: join(repo, 'params.py', 'a', 'b', 'x.db'), says: /cannot create the store: .*params\.py is a file, not a folder/ },
    { args: ['eval', '--harness', 'h', '--bench', 'b', '--unsafe-no-sandbox'], path: '/etc/passwd/x.db', says: /cannot create the store: \/etc\/passwd is a file, not a folder/ },
    // a dangling symbolic link on the way (another endless mkdir loop elsewhere)
    { args: ['run', 'study.yaml', '--unsafe-no-sandbox'], path: join(dangling, 'x.db'), says: /cannot create the store: .*dangling is a symbolic link to .*gone, which does not exist/ },
    // the read commands never create a store
    { args: ['log'], path: '/etc/passwd/x.db', says: /no autoagent store here/ },
    { args: ['status'], path: '/proc/x/y.db', says: /no autoagent store here/ },
  ];
  const results = await pool(4, cases.map((c) => () => spawnCli([...c.args, '--db', c.path], repo)));
  cases.forEach((c, i) => assertOneLine(results[i]!, `${c.args[0]} --db ${c.path}`, c.path, c.says));
  assert.ok(!existsSync('/dev/autoagent-x.db'), 'nothing was created in /dev');
  assert.equal(sh(repo, 'git', ['status', '--porcelain']).trim(), '', 'nothing was created in the repository');
});

test('a read-only file system: one line naming the path and the reason', { skip: spawnSync('bwrap', ['--version']).status !== 0 && 'no bwrap' }, async () => {
  // as root, only a read-only mount refuses a write: bind a folder read-only for the CLI
  const ro = join(dir, 'ro');
  mkdirSync(ro, { recursive: true });
  copyFileSync(join(repo, 'study.yaml'), join(ro, 'keep'));
  const r = await new Promise<Ran>((done) => {
    const t0 = Date.now();
    const child = spawn('bwrap', ['--dev-bind', '/', '/', '--ro-bind', ro, ro, process.execPath, BIN, 'run', 'study.yaml', '--unsafe-no-sandbox', '--db', join(ro, 'sub', 'x.db')], {
      cwd: repo, stdio: ['ignore', 'pipe', 'pipe'], timeout: DEADLINE_MS, killSignal: 'SIGKILL',
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('close', (code, signal) => done({ code, signal, stdout, stderr, ms: Date.now() - t0 }));
  });
  assertOneLine(r, 'read-only', join(ro, 'sub', 'x.db'), /cannot create the folder .*\/ro\/sub: read-only file system \(EROFS\)/);
});

// ---------------------------------------------------------------------------------------------
// run ids

/** the columns of a real run, to insert look-alikes under other ids */
function newRunLike(id: string): NewRun {
  const db = openDb(good);
  try {
    const { status: _s, stop_reason: _r, elapsed_ms: _e, owner_pid: _p, created_at: _c, updated_at: _u, ...row } = getRun(db, id)!;
    return row;
  } finally {
    db.close();
  }
}

test('a run-id prefix of several runs is a usage error listing them; an exact id wins', async () => {
  const path = join(dir, 'ids.db');
  const row = newRunLike(runId);
  const db = openDb(path);
  for (const id of ['demo-20260101-000000-aaa', 'demo-20260101-000000-bbb', 'exact', 'exact-2', 'solo-1']) insertRun(db, { ...row, id, branch: `autoagent/${id}` });
  db.close();
  const env = { LANGFUSE_HOST: 'http://127.0.0.1:9', LANGFUSE_PUBLIC_KEY: 'pk-lf-x', LANGFUSE_SECRET_KEY: 'sk-lf-x' };
  const saved = { ...process.env };
  Object.assign(process.env, env);
  try {
    const ambiguous: Array<[string[], string]> = [
      [['log', 'demo'], 'demo'], [['show', 'demo/1'], 'demo'], [['show', '1', '--run', 'demo-2026'], 'demo-2026'], [['audit', 'demo'], 'demo'],
      [['report', 'demo', '-o', join(dir, 'x.html')], 'demo'], [['finalize', 'demo', '--unsafe-no-sandbox'], 'demo'],
      [['export', 'langfuse', 'demo'], 'demo'], [['resume', 'demo', '--unsafe-no-sandbox'], 'demo'], [['traces', 'demo/1'], 'demo'],
      [['log', 'ex'], 'ex'],
    ];
    for (const [args, prefix] of ambiguous) {
      const r = await cli([...args, '--db', path], repo);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.equal(r.stderr.trim().split('\n').length, 1, `${args.join(' ')}: one line: ${r.stderr}`);
      assert.match(r.stderr, new RegExp(`run id prefix ${prefix} is ambiguous: it matches 2 runs`), args.join(' '));
      if (prefix.startsWith('demo')) assert.match(r.stderr, /\(demo-20260101-000000-aaa, demo-20260101-000000-bbb\)/, args.join(' '));
      else assert.match(r.stderr, /\(exact, exact-2\)/, args.join(' '));
    }
    // an exact id wins over the longer ids it is a prefix of; a unique prefix still works
    const exact = await cli(['log', 'exact', '--json', '--db', path], repo);
    assert.equal(exact.code, 0, exact.stderr);
    assert.equal(JSON.parse(exact.stdout).run.id, 'exact');
    const solo = await cli(['log', 'sol', '--json', '--db', path], repo);
    assert.equal(JSON.parse(solo.stdout).run.id, 'solo-1');
    const none = await cli(['log', 'zzz', '--db', path], repo);
    assert.equal(none.code, 2);
    assert.match(none.stderr, /no run zzz in this store/);
  } finally {
    for (const k of Object.keys(env)) if (saved[k] === undefined) delete process.env[k]; else process.env[k] = saved[k];
  }
  // more than five matches: five shown, and how many
  const many = join(dir, 'many.db');
  const m = openDb(many);
  for (let i = 0; i < 7; i++) insertRun(m, { ...row, id: `many-${i}`, branch: `autoagent/many-${i}` });
  m.close();
  const r = await cli(['status', '--db', many], repo);
  assert.equal(r.code, 0);
  const lot = await cli(['log', 'many', '--db', many], repo);
  assert.equal(lot.code, 2);
  assert.match(lot.stderr, /matches 7 runs \(many-0, many-1, many-2, many-3, many-4, …\)/);
});

// ---------------------------------------------------------------------------------------------
// a copied repository

/** everything in the main file and no WAL left, so a plain copy is the whole store */
function checkpoint(path: string): void {
  const db = new Database(path);
  db.pragma('wal_checkpoint(TRUNCATE)');
  db.close();
}

test('a repository copied with its store is audited, reported, resumed and finalized as itself', async () => {
  const orig = makeRepo({ 'params.py': PARAMS_PY, 'evaluate.py': EVALUATE_PY, 'study.yaml': TINY });
  const copyParent = realpathSync(mkdtempSync(join(tmpdir(), 'autoagent-copy-')));
  const copy = join(copyParent, 'moved');
  try {
    const res = await startRun(join(orig, 'study.yaml'), { overrides: {}, unsafeNoSandbox: false, reporter: new MemoryReporter(), proposer: scripted([setX('3.0')]) });
    assert.equal(res.status, 'finished', res.stopReason ?? '');
    const db = openDb(res.dbPath);
    assert.equal(listExperiments(db, res.runId).filter((e) => e.decision === 'kept').length, 1, 'one kept experiment: a chain to audit');
    db.close();
    checkpoint(res.dbPath);
    sh(copyParent, 'cp', ['-a', orig, copy]);

    // a locked file changed in the copy is the copy's problem, not the original's
    writeFileSync(join(copy, 'evaluate.py'), EVALUATE_PY + '# tampered\n');
    const a = await cli(['audit', '--json'], copy);
    assert.equal(a.code, 1, a.stderr);
    assert.equal(a.stderr.trim(), `note: run ${res.runId} recorded in ${orig}; using ${copy}`);
    const audit = JSON.parse(a.stdout) as { problems: string[]; checks: Array<{ name: string; detail: string }> };
    assert.equal(audit.problems.length, 1, audit.problems.join('\n'));
    assert.match(audit.problems[0]!, /^locked-current: locked file evaluate\.py changed since the run started/);
    assert.ok(audit.checks.find((c) => c.name === 'locked-current')!.detail.includes(` in ${copy}`), 'the copy\'s checkout was checked');
    const o = await cli(['audit'], orig);
    assert.equal(o.code, 0, o.stdout + o.stderr);
    assert.equal(o.stderr, '', 'no note in the original');

    // the original gone: the copy still audits clean, reports its own study, resumes and finalizes in place
    writeFileSync(join(copy, 'evaluate.py'), EVALUATE_PY);
    rmSync(orig, { recursive: true, force: true });
    const clean = await cli(['audit'], copy);
    assert.equal(clean.code, 0, clean.stdout + clean.stderr);
    assert.match(clean.stdout, /ok — every check passed/);
    const rep = await cli(['report', '-o', join(copyParent, 'r.html')], copy);
    assert.equal(rep.code, 0, rep.stderr);
    assert.match(rep.stderr, /^note: run .* recorded in .*; using /);
    assert.ok(readFileSync(join(copyParent, 'r.html'), 'utf8').includes(join(copy, 'study.yaml')), 'the report shows the copy\'s study');
    const resumed = await cli(['resume', res.runId.slice(0, -2), '--experiments', '2', '--json'], copy);
    assert.equal(resumed.code, 0, resumed.stderr);
    assert.match(resumed.stderr, new RegExp(`note: run ${res.runId} recorded in ${orig}; using ${copy}`));
    const fin = await cli(['finalize', '--json'], copy);
    assert.equal(fin.code, 0, fin.stderr);
    assert.ok(sh(copy, 'git', ['rev-parse', '--verify', `refs/heads/autoagent/${res.runId}-clean`]).trim(), 'the clean branch is in the copy');
    assert.ok(!existsSync(orig), 'nothing recreated the original');
    // a store in <repo>/.autoagent belongs to <repo>, from wherever it is named
    const other = makeRepo({ 'a.txt': 'a' });
    try {
      const byLocation = await cli(['audit', '--db', join(copy, '.autoagent', 'autoagent.db')], other);
      assert.equal(byLocation.code, 0, byLocation.stdout + byLocation.stderr);
      assert.match(byLocation.stderr, new RegExp(`using ${copy}$`, 'm'));
      // a store kept elsewhere belongs to the repository it is used from, when that holds the run's commits…
      const loose = join(copyParent, 'loose.db');
      new Database(join(copy, '.autoagent', 'autoagent.db')).exec(`VACUUM INTO '${loose}'`);
      const fromCopy = await cli(['audit', '--db', loose], copy);
      assert.equal(fromCopy.code, 0, fromCopy.stdout + fromCopy.stderr);
      assert.match(fromCopy.stderr, new RegExp(`using ${copy}$`, 'm'));
      // …and an unrelated repository never gets the run: the recorded one (gone) is audited
      const fromOther = await cli(['audit', '--db', loose, '--json'], other);
      assert.equal(fromOther.code, 1);
      assert.equal(fromOther.stderr, '');
      assert.match(JSON.parse(fromOther.stdout).problems[0], new RegExp(`the run's repository ${orig} is gone`));
    } finally {
      cleanup(other);
    }
  } finally {
    cleanup(orig);
    rmSync(copyParent, { recursive: true, force: true });
  }
});

