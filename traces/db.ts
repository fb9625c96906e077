/**
 * The SQLite store: runs, experiments, evaluations. WAL mode; schema migrations by
 * PRAGMA user_version. Every write that the loop's crash safety relies on is a single
 * statement or a transaction, so kill -9 at any moment leaves a consistent ledger.
 */
import Database from 'better-sqlite3';
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';

export type DB = Database.Database;

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
];

export function openDb(path: string): DB {
  if (path !== ':memory:') mkdirSync(dirname(path), { recursive: true });
  const db = new Database(path);
  // the busy timeout first: another process may be creating or migrating the same store
  db.pragma('busy_timeout = 5000');
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = NORMAL');
  db.pragma('foreign_keys = ON');
  migrate(db);
  return db;
}

/**
 * Bring the schema up to date. The version is read and the migrations applied inside one
 * write transaction (BEGIN IMMEDIATE), so two processes opening a new store at once
 * (a run starting while `autoagent status` looks) cannot both create the tables.
 */
export function migrate(db: DB): void {
  const newer = (v: number) => new Error(`the store was written by a newer autoagent (schema ${v}, this one knows ${MIGRATIONS.length}): upgrade autoagent`);
  const current = db.pragma('user_version', { simple: true }) as number;
  if (current > MIGRATIONS.length) throw newer(current);
  if (current === MIGRATIONS.length) return;
  db.transaction(() => {
    const version = db.pragma('user_version', { simple: true }) as number;
    if (version > MIGRATIONS.length) throw newer(version);
    for (let v = version; v < MIGRATIONS.length; v++) db.exec(MIGRATIONS[v]!);
    db.pragma(`user_version = ${MIGRATIONS.length}`);
  }).immediate();
}

export const now = (): string => new Date().toISOString();
