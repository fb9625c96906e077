/**
 * The SQLite store: runs, experiments, evaluations. WAL mode; schema migrations by
 * PRAGMA user_version. Every write that the loop's crash safety relies on is a single
 * statement or a transaction, so kill -9 at any moment leaves a consistent ledger.
 */
import Database from 'better-sqlite3';
import { accessSync, closeSync, constants, existsSync, fstatSync, lstatSync, mkdirSync, readlinkSync, openSync, readSync, realpathSync, statSync, statfsSync, type Stats } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { UsageError } from '../base/errors.ts';

export type DB = Database.Database;

/** How trace_fts splits and stems text (traces/traces.ts checks what it does to a prefix the same way). */
export const FTS_TOKENIZE = 'porter unicode61 remove_diacritics 2';

export const MIGRATIONS: readonly string[] = [
  // 1: the ledger
  `
  CREATE TABLE runs (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    study_path TEXT NOT NULL,
    study_json TEXT NOT NULL,
    study_text TEXT NOT NULL,
    config_hash TEXT NOT NULL,
    repo TEXT NOT NULL,
    base_commit TEXT NOT NULL,
    branch TEXT NOT NULL,
    lock_manifest TEXT NOT NULL,
    metric_name TEXT NOT NULL,
    direction TEXT NOT NULL,
    self_reported INTEGER NOT NULL DEFAULT 0,
    unsafe_no_sandbox INTEGER NOT NULL DEFAULT 0,
    status TEXT NOT NULL,
    stop_reason TEXT,
    environment TEXT,
    elapsed_ms INTEGER NOT NULL DEFAULT 0,
    owner_pid INTEGER,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
  );
  CREATE TABLE experiments (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL REFERENCES runs(id),
    seq INTEGER NOT NULL,
    parent_commit TEXT NOT NULL,
    candidate_commit TEXT,
    kept_commit TEXT,
    proposer TEXT NOT NULL,
    hypothesis TEXT NOT NULL,
    meta TEXT,
    edits TEXT NOT NULL,
    diff TEXT NOT NULL,
    files_hash TEXT NOT NULL,
    status TEXT NOT NULL,
    decision TEXT,
    reason TEXT,
    metric REAL,
    incumbent_metric REAL,
    improvement REAL,
    margin REAL,
    started_at TEXT NOT NULL,
    finished_at TEXT,
    wall_ms INTEGER,
    inside_ms INTEGER,
    UNIQUE (run_id, seq)
  );
  CREATE INDEX experiments_run ON experiments(run_id, seq);
  CREATE TABLE evaluations (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    experiment_id INTEGER NOT NULL REFERENCES experiments(id),
    repeat INTEGER NOT NULL,
    seed INTEGER NOT NULL,
    status TEXT NOT NULL,
    metric REAL,
    reason TEXT,
    command_ms INTEGER NOT NULL,
    evaluator_ms INTEGER NOT NULL,
    exit_code INTEGER,
    stdout_tail TEXT NOT NULL,
    stderr_tail TEXT NOT NULL,
    telemetry TEXT,
    created_at TEXT NOT NULL,
    UNIQUE (experiment_id, repeat)
  );
  `,
  // 2: traces of harness evaluations (traces/traces.ts). `seq` is an explicit INTEGER PRIMARY KEY so that
  // VACUUM never renumbers it: trace_fts rowids point at spans.seq (> 0) and at -traces.seq (< 0).
  `
  CREATE TABLE traces (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    run_id TEXT,
    experiment_seq INTEGER,
    group_id TEXT NOT NULL,
    task_id TEXT NOT NULL,
    repeat INTEGER NOT NULL,
    benchmark TEXT NOT NULL,
    split TEXT NOT NULL,
    harness TEXT NOT NULL,
    status TEXT NOT NULL,
    score REAL,
    pass INTEGER,
    output TEXT,
    error TEXT,
    started_at INTEGER NOT NULL,
    ended_at INTEGER NOT NULL,
    input_tokens INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    cache_read_tokens INTEGER NOT NULL,
    cache_write_tokens INTEGER NOT NULL,
    cost_usd REAL NOT NULL,
    finalized INTEGER NOT NULL DEFAULT 0
  );
  CREATE INDEX traces_group ON traces(group_id, task_id, repeat);
  CREATE INDEX traces_run ON traces(run_id, experiment_seq);
  CREATE INDEX traces_task ON traces(task_id);
  CREATE TABLE spans (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL,
    trace_id TEXT NOT NULL REFERENCES traces(id),
    parent_id TEXT,
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    status TEXT NOT NULL,
    started_at INTEGER NOT NULL,
    ended_at INTEGER NOT NULL,
    input TEXT NOT NULL,
    output TEXT NOT NULL,
    error TEXT,
    input_tokens INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    cache_read_tokens INTEGER NOT NULL,
    cache_write_tokens INTEGER NOT NULL,
    cost_usd REAL NOT NULL,
    attributes TEXT NOT NULL,
    UNIQUE (trace_id, id)
  );
  CREATE INDEX spans_parent ON spans(parent_id);
  CREATE VIRTUAL TABLE trace_fts USING fts5(kind, name, body, error, tokenize = 'porter unicode61 remove_diacritics 2');
  `,
  // 3: the response cache (optional replay of identical model requests, keyed by request hash)
  `
  CREATE TABLE model_cache (
    key TEXT PRIMARY KEY,
    response TEXT NOT NULL,
    created_at TEXT NOT NULL
  );
  `,
  // 4: finalizations: the sealed test split evaluated once on a run's final incumbent (src/finalize.ts);
  // a second one is only recorded when forced (forced = 1)
  `
  CREATE TABLE finalizations (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL REFERENCES runs(id),
    "commit" TEXT NOT NULL,
    split TEXT NOT NULL,
    metric REAL NOT NULL,
    details TEXT NOT NULL,
    forced INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL
  );
  CREATE INDEX finalizations_run ON finalizations(run_id, id);
  `,
  // 5: the meta-agent. traces.role tells task-agent traces ('task') from the proposer's own
  // conversations ('proposal'); experiments.round groups the candidates proposed from one
  // incumbent (several candidates per round); experiments.proposal is the proposer's record
  // (its trace id, the trace ids it cited, its expected effect, its spend) as JSON.
  `
  ALTER TABLE traces ADD COLUMN role TEXT NOT NULL DEFAULT 'task';
  ALTER TABLE experiments ADD COLUMN round INTEGER;
  ALTER TABLE experiments ADD COLUMN proposal TEXT;
  `,
  // 6: exports: which experiments of a run a live export (src/export/langfuse.ts) has delivered,
  // so a resumed run sends what a killed or refused export missed, and nothing twice
  `
  CREATE TABLE exports (
    run_id TEXT NOT NULL REFERENCES runs(id),
    experiment_seq INTEGER NOT NULL,
    target TEXT NOT NULL,
    traces INTEGER NOT NULL,
    exported_at TEXT NOT NULL,
    PRIMARY KEY (run_id, experiment_seq, target)
  );
  `,
  // 7: the ledger chain (traces/ledger.ts decideExperiment): each decided experiment's link,
  // sha256(previous link ‖ its decision record), and its position in the chain (decision order)
  `
  ALTER TABLE experiments ADD COLUMN chain TEXT;
  ALTER TABLE experiments ADD COLUMN chain_pos INTEGER;
  `,
  // 8: auditing edits. experiments.contamination: the memorisation check's verdict on a candidate
  // whose diff writes validation task data into the editable files (src/contamination.ts), as JSON;
  // ablations: `finalize --ablate`, each kept change's contribution on the sealed test split
  // (src/ablate.ts), recorded apart from finalizations (it neither needs nor uses up a finalize)
  `
  ALTER TABLE experiments ADD COLUMN contamination TEXT;
  CREATE TABLE ablations (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL REFERENCES runs(id),
    "commit" TEXT NOT NULL,
    split TEXT NOT NULL,
    details TEXT NOT NULL,
    forced INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL
  );
  CREATE INDEX ablations_run ON ablations(run_id, id);
  `,
  // 9: what a person says about a run (the dashboard, src/ui/): a label (the run's name; its id keeps its
  // form), tags (a JSON array of strings) and notes. Outside the ledger chain: editing them changes no evidence.
  `
  ALTER TABLE runs ADD COLUMN label TEXT;
  ALTER TABLE runs ADD COLUMN tags TEXT NOT NULL DEFAULT '[]';
  ALTER TABLE runs ADD COLUMN notes TEXT NOT NULL DEFAULT '';
  `,
  // 10: parallel slots (src/loop.ts): the round an evaluation was made in (an incumbent gets fresh
  // repeats during later rounds; a judgement sees those of its round and earlier), the slot that ran
  // it, the hardware it ran on (noise is pooled within one hardware class); promotions: the intent of
  // a keep, written before the run branch moves, so a crash mid-promotion is reconciled on resume
  `
  ALTER TABLE evaluations ADD COLUMN round INTEGER;
  ALTER TABLE evaluations ADD COLUMN slot INTEGER;
  ALTER TABLE evaluations ADD COLUMN hardware TEXT;
  CREATE TABLE promotions (
    run_id TEXT NOT NULL REFERENCES runs(id),
    experiment_seq INTEGER NOT NULL,
    kept_commit TEXT NOT NULL,
    expected_parent TEXT NOT NULL,
    state TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (run_id, experiment_seq)
  );
  `,
  // 11: prefix indexes for the search (`bab*`; FTS5 has no way to add them to a table): trace_fts made again with
  // prefix = '2 3', refilled from the old one (same rowids) and merged into one segment. An old store pays this
  // once, on its first open by a writer (~70 s for 1M spans, see README).
  `
  CREATE VIRTUAL TABLE trace_fts_new USING fts5(kind, name, body, error, tokenize = '${FTS_TOKENIZE}', prefix = '2 3');
  INSERT INTO trace_fts_new (rowid, kind, name, body, error) SELECT rowid, kind, name, body, error FROM trace_fts;
  DROP TABLE trace_fts;
  ALTER TABLE trace_fts_new RENAME TO trace_fts;
  INSERT INTO trace_fts (trace_fts) VALUES ('optimize');
  `,
];

let lastStore: string | null = null;
/** The store this process opened last (for naming it when a later read finds it damaged). */
export function lastStorePath(): string | null {
  return lastStore;
}

/** How long a command waits for another process that holds the store's write lock. */
export const BUSY_TIMEOUT_MS = 5000;

/**
 * Open (creating when missing) the autoagent store at `path` and bring its schema up to date.
 * Anything that is not an autoagent store — a directory, a FIFO or device, a path under /proc,
 * /sys or /dev, a parent that cannot be created, random bytes, a truncated file, someone else's
 * SQLite database, a store written by a newer autoagent — is a UsageError of one line naming the
 * path, raised before SQLite is handed the path where that is possible.
 */
export function openDb(path: string): DB {
  if (path === ':memory:') return setUp(new Database(path), path);
  const abs = resolve(path);
  lastStore = abs;
  checkStorePath(abs);
  let db: DB | undefined;
  try {
    db = new Database(abs);
    return setUp(db, abs);
  } catch (e) {
    try {
      db?.close();
    } catch {
      // already unusable
    }
    const msg = storeErrorMessage(abs, e);
    if (msg) throw new UsageError(msg);
    throw e;
  }
}

function setUp(db: DB, path: string): DB {
  // the busy timeout first: another process may be creating or migrating the same store
  db.pragma(`busy_timeout = ${BUSY_TIMEOUT_MS}`);
  if (path !== ':memory:') checkOurs(db, path);
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = NORMAL');
  db.pragma('foreign_keys = ON');
  migrate(db, path);
  return db;
}

const SQLITE_MAGIC = 'SQLite format 3\0';
/** file systems that hold no files of ours: proc, sysfs, devpts, cgroup, cgroup2, debugfs, securityfs */
const SYSTEM_FS = new Map<number, string>([
  [0x9fa0, 'procfs'], [0x62656572, 'sysfs'], [0x1cd1, 'devpts'], [0x27e0eb, 'cgroup'], [0x63677270, 'cgroup2'],
  [0x64626720, 'debugfs'], [0x73636673, 'securityfs'],
]);

/** `permission denied (EACCES)` from a Node file-system error */
export function errnoReason(e: unknown): string {
  const err = e as NodeJS.ErrnoException;
  if (!err?.code) return String((e as Error)?.message ?? e);
  const text = (err.message ?? '').replace(/^[A-Z0-9_]+: /, '').replace(/, \w+ '.*'$/s, '');
  return `${text || err.code} (${err.code})`;
}

function kindOf(st: Stats): string {
  if (st.isFile()) return 'a file';
  if (st.isDirectory()) return 'a directory';
  if (st.isFIFO()) return 'a FIFO (named pipe)';
  if (st.isSocket()) return 'a socket';
  if (st.isCharacterDevice()) return 'a character device';
  if (st.isBlockDevice()) return 'a block device';
  return 'not a regular file';
}

/** the nearest ancestor of `abs` (itself included) that exists, and the rest of the path below it */
function nearestExisting(abs: string): { dir: string; rest: string[] } {
  const rest: string[] = [];
  let d = abs;
  // bounded by the depth of the path
  while (!existsSync(d)) {
    const up = dirname(d);
    if (up === d) break;
    rest.unshift(basename(d));
    d = up;
  }
  return { dir: d, rest };
}

/** A system area (/proc, /sys, /dev but /dev/shm, or a proc-like file system) that `abs` lies in, else null. */
function systemArea(abs: string): string | null {
  const { dir, rest } = nearestExisting(abs);
  let real = abs;
  try {
    real = join(realpathSync(dir), ...rest);
  } catch {
    // a path we cannot resolve is checked as given
  }
  for (const p of [abs, real]) {
    for (const area of ['/proc', '/sys', '/dev']) {
      if (p !== area && !p.startsWith(area + '/')) continue;
      if (area === '/dev' && (p === '/dev/shm' || p.startsWith('/dev/shm/'))) continue;
      return area;
    }
  }
  try {
    const fs = SYSTEM_FS.get(Number(statfsSync(dir).type));
    if (fs) return `a ${fs} file system`;
  } catch {
    // statfs unsupported: the prefixes above are the check
  }
  return null;
}

/** Create the missing folders above the store one at a time (a recursive mkdir spins forever on /proc). */
function makeParents(dir: string, storePath: string): void {
  const missing: string[] = [];
  let d = dir;
  for (;;) {
    let st: Stats;
    try {
      st = statSync(d);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      const up = dirname(d);
      if ((code === 'ENOENT' || code === 'ENOTDIR') && up !== d) {
        missing.unshift(d);
        d = up;
        continue;
      }
      throw new UsageError(`${storePath}: cannot create the store: ${d}: ${errnoReason(e)}`);
    }
    if (!st.isDirectory()) throw new UsageError(`${storePath}: cannot create the store: ${d} is ${kindOf(st)}, not a folder`);
    break;
  }
  for (const m of missing) {
    try {
      mkdirSync(m);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'EEXIST' && statSync(m, { throwIfNoEntry: false })?.isDirectory()) continue;
      if (lstatSync(m, { throwIfNoEntry: false })?.isSymbolicLink()) {
        throw new UsageError(`${storePath}: cannot create the store: ${m} is a symbolic link to ${readlinkSync(m)}, which does not exist`);
      }
      throw new UsageError(`${storePath}: cannot create the folder ${m}: ${errnoReason(e)}`);
    }
  }
}

/** The checks that need no SQLite: what is at `abs`, where it is, and whether its first bytes are a SQLite database's. */
export function checkStorePath(abs: string): void {
  const area = systemArea(abs);
  if (area) throw new UsageError(`${abs}: lies in ${area}, which holds no autoagent store (pass --db FILE on a regular disk)`);
  let st: Stats | undefined;
  try {
    st = statSync(abs);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code !== 'ENOENT' && code !== 'ENOTDIR') throw new UsageError(`${abs}: cannot read the store: ${errnoReason(e)}`);
  }
  if (st && st.isDirectory()) throw new UsageError(`${abs}: is a directory, not an autoagent store (pass --db FILE)`);
  if (st && !st.isFile()) throw new UsageError(`${abs}: is ${kindOf(st)}, not an autoagent store (pass --db FILE)`);
  if (!st) {
    const parent = dirname(abs);
    makeParents(parent, abs);
    try {
      accessSync(parent, constants.W_OK);
    } catch (e) {
      throw new UsageError(`${abs}: cannot create the store in ${parent}: ${errnoReason(e)}`);
    }
    return;
  }
  sniffHeader(abs);
}

/** A non-empty store must start with SQLite's header, and be as long as its header says. */
function sniffHeader(abs: string): void {
  // a writer may be growing the file right now (the first commit of a new store, a checkpoint):
  // a short file counts as truncated only when it stays short with no journal or WAL beside it
  for (let attempt = 0; ; attempt++) {
    const h = readHeader(abs);
    if (h.size === 0) return; // an empty file: SQLite makes it a new database
    if (h.read < 100 || h.head.toString('latin1', 0, 16) !== SQLITE_MAGIC) {
      throw new UsageError(`${abs}: not an autoagent store (not a SQLite database${h.read < 100 ? `: ${h.size} byte(s), shorter than a SQLite header` : ''})`);
    }
    const raw = h.head.readUInt16BE(16);
    const pageSize = raw === 1 ? 65536 : raw;
    const pages = h.head.readUInt32BE(28);
    // the page count in the header is valid when the change counter matches version-valid-for
    const valid = pages > 0 && h.head.readUInt32BE(24) === h.head.readUInt32BE(92);
    if (!valid || h.size >= pages * pageSize) return;
    const busy = ['-wal', '-journal'].some((x) => (statSync(abs + x, { throwIfNoEntry: false })?.size ?? 0) > 0);
    if (attempt >= 3 && !busy) {
      throw new UsageError(`${abs}: not an autoagent store (truncated: ${h.size} bytes, its header says ${pages * pageSize}; database disk image is malformed)`);
    }
    if (attempt >= 20) return; // a writer is at work: SQLite itself will tell
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 25);
  }
}

function readHeader(abs: string): { head: Buffer; read: number; size: number } {
  let fd: number;
  try {
    fd = openSync(abs, 'r');
  } catch (e) {
    throw new UsageError(`${abs}: cannot read the store: ${errnoReason(e)}`);
  }
  const head = Buffer.alloc(100);
  try {
    const size = fstatSync(fd).size;
    return { head, read: readSync(fd, head, 0, 100, 0), size };
  } catch (e) {
    throw new UsageError(`${abs}: cannot read the store: ${errnoReason(e)}`);
  } finally {
    closeSync(fd);
  }
}

/** The tables of an existing SQLite database must be ours: someone else's database is never migrated. */
function checkOurs(db: DB, path: string): void {
  // one read transaction: another process may be creating the tables and the version right now
  const { version, tables } = db.transaction(() => ({
    version: db.pragma('user_version', { simple: true }) as number,
    tables: (db.prepare(`SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'`).all() as Array<{ name: string }>).map((t) => t.name),
  }))();
  if (tables.length === 0 && version === 0) return; // a new store
  const list = (xs: string[]) => xs.slice(0, 5).join(', ') + (xs.length > 5 ? `, … (${xs.length} tables)` : '');
  if (!tables.includes('runs') || !tables.includes('experiments') || version === 0) {
    throw new UsageError(`${path}: a SQLite database, but not an autoagent store (tables ${list(tables) || '(none)'}, user_version ${version}); pass --db with an autoagent store or a new file`);
  }
}

/** One line for an SQLite error met while opening or reading the store at `path`, or null when it is not about the file. */
export function storeErrorMessage(path: string, e: unknown): string | null {
  if (!(e instanceof Database.SqliteError)) return null;
  const code = e.code ?? '';
  if (code.startsWith('SQLITE_NOTADB') || code.startsWith('SQLITE_CORRUPT')) return `${path}: not an autoagent store (${e.message})`;
  if (code.startsWith('SQLITE_BUSY') || code.startsWith('SQLITE_LOCKED')) return `${path}: the store stayed locked by another process for ${BUSY_TIMEOUT_MS / 1000} s (${e.message}); try again when it is done`;
  if (/^SQLITE_(CANTOPEN|IOERR|READONLY|PERM|FULL|AUTH|NOLFS|PROTOCOL)/.test(code)) return `${path}: cannot use the store: ${e.message} (${code})`;
  return null;
}

/**
 * Bring the schema up to date. The version is read and the migrations applied inside one
 * write transaction (BEGIN IMMEDIATE), so two processes opening a new store at once
 * (a run starting while `autoagent status` looks) cannot both create the tables.
 */
export function migrate(db: DB, path = 'the store'): void {
  const newer = (v: number) => new UsageError(`${path}: written by a newer autoagent (schema ${v}, this one knows ${MIGRATIONS.length}): upgrade autoagent`);
  const current = db.pragma('user_version', { simple: true }) as number;
  if (current > MIGRATIONS.length) throw newer(current);
  if (current === MIGRATIONS.length) return;
  // rebuilding the search index (migration 11) takes about a minute per million spans: say so first,
  // since every other autoagent command on this store waits (and gives up after a few seconds)
  if (current >= 1 && current < 11 && db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'spans'").get()) {
    const spans = (db.prepare('SELECT count(*) AS n FROM spans').get() as { n: number }).n;
    if (spans >= 100_000) process.stderr.write(`autoagent: upgrading ${path} (schema ${current} → ${MIGRATIONS.length}): rebuilding the search index of ${spans.toLocaleString('en-US')} spans, about ${Math.max(1, Math.round(spans / 1e6))} min; other commands on this store wait until it is done\n`);
  }
  db.transaction(() => {
    const version = db.pragma('user_version', { simple: true }) as number;
    if (version > MIGRATIONS.length) throw newer(version);
    for (let v = version; v < MIGRATIONS.length; v++) db.exec(MIGRATIONS[v]!);
    db.pragma(`user_version = ${MIGRATIONS.length}`);
  }).immediate();
}

export const now = (): string => new Date().toISOString();

/**
 * Opens the store read-only (the dashboard), after the checks `openDb` makes (an autoagent store,
 * not a directory or device); it is not migrated, so readers take an older schema as it is.
 */
export function openDbReadOnly(path: string): DB {
  const abs = resolve(path);
  if (!existsSync(abs)) throw new UsageError(`${abs}: no autoagent store here (run a study first, or pass --db PATH)`);
  checkStorePath(abs);
  const db = new Database(abs, { readonly: true, fileMustExist: true });
  db.pragma(`busy_timeout = ${BUSY_TIMEOUT_MS}`);
  const ok = db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'runs'").get();
  if (!ok) {
    db.close();
    throw new UsageError(`${abs}: not an autoagent store (no runs table); pass --db with an autoagent store`);
  }
  return db;
}

/** SQLite's data_version of this connection: it changes when any other connection commits. */
export function dataVersion(db: DB): number {
  return db.pragma('data_version', { simple: true }) as number;
}
