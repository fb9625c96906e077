/**
 * Traces of harness evaluations: writes (parent process only), reads, full-text search.
 *
 * Write-once: a span row is never updated; a trace row is inserted when its task starts and
 * finalized exactly once (`finishTrace`) when the task ends. The search index `trace_fts` is kept
 * in sync in the same transaction as each write: one row per span (rowid = spans.seq) and one per
 * trace (rowid = -traces.seq: task id, final answer, error).
 *
 * What a span contributes to the index (see `spanSearchText`):
 * - model spans: the request's system prompt and messages the first time a conversation is sent
 *   (no assistant message yet), afterwards only the messages after the last assistant message
 *   (each call resends the whole history: indexing it every time would index a conversation once
 *   per turn and flood every search with repeats); and every block of the response. Blocks give
 *   their text (text, thinking, reasoning), tool_use its name and arguments, tool_result its content.
 * - every other span: the string leaves of its input and output (JSON keys left out).
 * - always: kind, name and error.
 */
import type { Statement } from 'better-sqlite3';
import { FTS_TOKENIZE, type DB } from './db.ts';
import { UsageError } from '../base/errors.ts';
import type { SpanRecord, TraceRecord, SpanStatus, TraceRole } from './types.ts';

/** A trace as stored: `finalized` is false until `finishTrace` ran (a task still running, or cut off by a crash). */
export interface StoredTrace extends TraceRecord {
  finalized: boolean;
}

/** A row of `tracesOf`: the trace and its number of agent steps (turn spans; model spans where a trace has no turns). */
export interface TraceSummary extends StoredTrace {
  steps: number;
}

export type SpanNode = SpanRecord & { children: SpanNode[] };

export interface TraceDetail {
  trace: StoredTrace;
  /** every span, ordered by start time then write order */
  spans: SpanRecord[];
  /** the same spans as a forest (spans whose parent is missing become roots) */
  roots: SpanNode[];
}

/** What `finishTrace` sets; omitted optional fields keep the values given to `insertTrace`. */
export type TraceFinish = Pick<TraceRecord, 'status' | 'ended_at'> &
  Partial<
    Pick<
      TraceRecord,
      'score' | 'pass' | 'output' | 'error' | 'input_tokens' | 'output_tokens' | 'cache_read_tokens' | 'cache_write_tokens' | 'cost_usd'
    >
  >;

export interface TraceFilter {
  /** one trace by id */
  id?: string;
  runId?: string;
  experimentSeq?: number;
  groupId?: string;
  taskId?: string;
  /** true: status != ok or pass = false; false: the others */
  failed?: boolean;
  /** default 'task' (the meta-agent's own conversations are left out); 'any' for all */
  role?: TraceRole | 'any';
}

export interface SearchOptions {
  /** most hits returned (default 20) */
  limit?: number;
  groupId?: string;
  runId?: string;
  /** words of context in each snippet (default 12, at most 64) */
  snippetTokens?: number;
  /** only traces of this role (default: all) */
  role?: TraceRole;
  /** rank every match by bm25 of every word, however many (default: see RANK_CAP, COMMON_ROWS) */
  exact?: boolean;
}

export interface SearchHit {
  trace_id: string;
  /** the span that matched; null (with span_kind and span_name) when the hit is in the trace itself: task id, final answer, error */
  span_id: string | null;
  span_kind: SpanRecord['kind'] | null;
  span_name: string | null;
  task_id: string;
  group_id: string;
  /** FTS5 snippet() of the best matching column, matches marked «like this» */
  snippet: string;
  /** bm25 score: lower is better; hits come sorted by it (0: not ranked, see RANK_CAP) */
  rank: number;
}

/** A hit of `searchTraceHits`: one trace, its best match and where it ran. */
export interface TraceHit {
  trace_id: string;
  role: TraceRole;
  /** null for an `autoagent eval` (its id is group_id, eval-…) */
  run_id: string | null;
  experiment_seq: number | null;
  group_id: string;
  task_id: string;
  repeat: number;
  status: SpanStatus;
  score: number | null;
  pass: boolean | null;
  finalized: boolean;
  /** the trace's index rows that match: its spans, and its answer / error */
  matches: number;
  /** the best match: a span, or null (with span_kind and span_name) for the trace's answer / error */
  span_id: string | null;
  span_kind: SpanRecord['kind'] | null;
  span_name: string | null;
  /** FTS5 snippet() of the best match, matches marked «like this» */
  snippet: string;
  /** bm25 score of the best match: lower is better (0: not ranked, see RANK_CAP) */
  rank: number;
}

export interface TaskScore {
  task_id: string;
  /** traces of this task in the group */
  repeats: number;
  /** mean over repeats, a repeat without a score counting 0; null when no repeat has a score */
  score: number | null;
  /** per repeat, in repeat order */
  scores: Array<number | null>;
  passed: number;
  /** repeats with status != ok or pass = false */
  failed: number;
  trace_ids: string[];
  input_tokens: number;
  output_tokens: number;
  cost_usd: number;
  /** mean wall time of a repeat */
  duration_ms: number;
}

// ---------------------------------------------------------------------------------------------
// search text

type Block = { type?: unknown; [k: string]: unknown };

function pushLeaves(v: unknown, out: string[], depth = 0): void {
  if (v === null || v === undefined || depth > 64) return;
  if (typeof v === 'string') {
    if (v) out.push(v);
  } else if (typeof v === 'number' || typeof v === 'boolean' || typeof v === 'bigint') {
    out.push(String(v));
  } else if (Array.isArray(v)) {
    for (const x of v) pushLeaves(x, out, depth + 1);
  } else if (typeof v === 'object') {
    for (const x of Object.values(v as Record<string, unknown>)) pushLeaves(x, out, depth + 1);
  }
}

function pushBlocks(content: unknown, out: string[]): void {
  if (typeof content === 'string') {
    if (content) out.push(content);
    return;
  }
  if (!Array.isArray(content)) return;
  for (const b of content as Block[]) {
    if (!b || typeof b !== 'object') continue;
    switch (b.type) {
      case 'text':
      case 'reasoning':
        if (typeof b.text === 'string') out.push(b.text);
        break;
      case 'thinking':
        if (typeof b.thinking === 'string') out.push(b.thinking);
        break;
      case 'redacted_thinking':
        break;
      case 'tool_use':
        if (typeof b.name === 'string') out.push(b.name);
        if (typeof b.raw_input === 'string') out.push(b.raw_input);
        else pushLeaves(b.input, out);
        break;
      case 'tool_result':
        pushBlocks(b.content, out);
        break;
      default:
        pushLeaves(b, out);
    }
  }
}

const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

function modelRequestText(req: Record<string, unknown>, out: string[]): void {
  const messages = req.messages as Array<{ role?: unknown; content?: unknown }>;
  let last = -1;
  for (let i = 0; i < messages.length; i++) if (messages[i]?.role === 'assistant') last = i;
  if (last < 0 && typeof req.system === 'string' && req.system) out.push(req.system);
  for (let i = last + 1; i < messages.length; i++) pushBlocks(messages[i]?.content, out);
}

/** The text a span contributes to the search index, besides its kind, name and error. */
export function spanSearchText(s: Pick<SpanRecord, 'kind' | 'input' | 'output'>): string {
  const out: string[] = [];
  if (s.kind === 'model' && isObj(s.input) && Array.isArray(s.input.messages)) modelRequestText(s.input, out);
  else pushLeaves(s.input, out);
  if (s.kind === 'model' && isObj(s.output) && Array.isArray(s.output.content)) pushBlocks(s.output.content, out);
  else pushLeaves(s.output, out);
  return out.join('\n');
}

// ---------------------------------------------------------------------------------------------
// writes

interface Statements {
  insertTrace: Statement<unknown[]>;
  insertSpan: Statement<unknown[]>;
  insertFts: Statement<unknown[]>;
  deleteFts: Statement<unknown[]>;
  getTraceRow: Statement<unknown[]>;
  finish: Statement<unknown[]>;
}

const cache = new WeakMap<DB, Statements>();

function stmts(db: DB): Statements {
  let s = cache.get(db);
  if (!s) {
    s = {
      insertTrace: db.prepare(
        `INSERT INTO traces (id, role, run_id, experiment_seq, group_id, task_id, repeat, benchmark, split, harness, status, score, pass,
           output, error, started_at, ended_at, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, cost_usd)
         VALUES (@id, @role, @run_id, @experiment_seq, @group_id, @task_id, @repeat, @benchmark, @split, @harness, @status, @score, @pass,
           @output, @error, @started_at, @ended_at, @input_tokens, @output_tokens, @cache_read_tokens, @cache_write_tokens, @cost_usd)`,
      ),
      insertSpan: db.prepare(
        `INSERT INTO spans (id, trace_id, parent_id, kind, name, status, started_at, ended_at, input, output, error,
           input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, cost_usd, attributes)
         VALUES (@id, @trace_id, @parent_id, @kind, @name, @status, @started_at, @ended_at, @input, @output, @error,
           @input_tokens, @output_tokens, @cache_read_tokens, @cache_write_tokens, @cost_usd, @attributes)`,
      ),
      insertFts: db.prepare('INSERT INTO trace_fts (rowid, kind, name, body, error) VALUES (?, ?, ?, ?, ?)'),
      deleteFts: db.prepare('DELETE FROM trace_fts WHERE rowid = ?'),
      getTraceRow: db.prepare('SELECT * FROM traces WHERE id = ?'),
      finish: db.prepare(
        `UPDATE traces SET status = @status, score = @score, pass = @pass, output = @output, error = @error, ended_at = @ended_at,
           input_tokens = @input_tokens, output_tokens = @output_tokens, cache_read_tokens = @cache_read_tokens,
           cache_write_tokens = @cache_write_tokens, cost_usd = @cost_usd, finalized = 1
         WHERE id = @id AND finalized = 0`,
      ),
    };
    cache.set(db, s);
  }
  return s;
}

const boolInt = (b: boolean | null | undefined): number | null => (b === null || b === undefined ? null : b ? 1 : 0);
const json = (v: unknown): string => JSON.stringify(v === undefined ? null : v) ?? 'null';

/** A span serialised for its two inserts; made at once so later changes to the caller's objects are not recorded. */
interface SpanRow {
  params: Record<string, unknown>;
  fts: [string, string, string, string];
}

function spanRow(s: SpanRecord): SpanRow {
  const params = {
    id: s.id, trace_id: s.trace_id, parent_id: s.parent_id ?? null, kind: s.kind, name: s.name, status: s.status,
    started_at: s.started_at, ended_at: s.ended_at, input: json(s.input), output: json(s.output), error: s.error ?? null,
    input_tokens: s.input_tokens ?? 0, output_tokens: s.output_tokens ?? 0, cache_read_tokens: s.cache_read_tokens ?? 0,
    cache_write_tokens: s.cache_write_tokens ?? 0, cost_usd: s.cost_usd ?? 0, attributes: json(s.attributes ?? {}),
  };
  return { params, fts: [s.kind, s.name, spanSearchText(s), s.error ?? ''] };
}

function traceParams(t: TraceRecord): Record<string, unknown> {
  return { ...t, role: t.role ?? 'task', pass: boolInt(t.pass) };
}

function writeSpan(st: Statements, row: SpanRow): void {
  const info = st.insertSpan.run(row.params);
  st.insertFts.run(info.lastInsertRowid, ...row.fts);
}

function writeTrace(st: Statements, p: Record<string, unknown>): void {
  const info = st.insertTrace.run(p);
  st.insertFts.run(-Number(info.lastInsertRowid), 'trace', p.task_id, p.output ?? '', p.error ?? '');
}

function writeFinish(st: Statements, id: string, f: TraceFinish): boolean {
  const row = st.getTraceRow.get(id) as (Record<string, unknown> & { seq: number; finalized: number }) | undefined;
  if (!row || row.finalized) return false;
  const p: Record<string, unknown> = {
    id,
    status: f.status,
    ended_at: f.ended_at,
    score: f.score !== undefined ? f.score : row.score,
    pass: f.pass !== undefined ? boolInt(f.pass) : row.pass,
    output: f.output !== undefined ? f.output : row.output,
    error: f.error !== undefined ? f.error : row.error,
    input_tokens: f.input_tokens ?? row.input_tokens,
    output_tokens: f.output_tokens ?? row.output_tokens,
    cache_read_tokens: f.cache_read_tokens ?? row.cache_read_tokens,
    cache_write_tokens: f.cache_write_tokens ?? row.cache_write_tokens,
    cost_usd: f.cost_usd ?? row.cost_usd,
  };
  st.finish.run(p);
  st.deleteFts.run(-row.seq);
  st.insertFts.run(-row.seq, 'trace', row.task_id, p.output ?? '', p.error ?? '');
  return true;
}

/** Records a trace when its task starts (spans reference it). Throws when the id exists. */
export function insertTrace(db: DB, t: TraceRecord): void {
  const st = stmts(db);
  const p = traceParams(t);
  db.transaction(() => writeTrace(st, p))();
}

/**
 * Finalizes a trace once: its status, end time and, where given, score, pass, output, error, tokens
 * and cost. Returns false (and changes nothing) when the trace is unknown or already finalized.
 */
export function finishTrace(db: DB, id: string, fields: TraceFinish): boolean {
  const st = stmts(db);
  return db.transaction(() => writeFinish(st, id, fields))();
}

/** Records one finished span (its trace must exist). Throws on a duplicate (trace_id, id). */
export function insertSpan(db: DB, s: SpanRecord): void {
  const st = stmts(db);
  const row = spanRow(s);
  db.transaction(() => writeSpan(st, row))();
}

/** Records many spans in one transaction: all or none. */
export function insertSpans(db: DB, spans: SpanRecord[]): void {
  const st = stmts(db);
  const rows = spans.map(spanRow);
  db.transaction(() => {
    for (const r of rows) writeSpan(st, r);
  })();
}

type Op =
  | { k: 'trace'; id: string; p: Record<string, unknown> }
  | { k: 'span'; id: string; trace_id: string; row: SpanRow }
  | { k: 'finish'; id: string; f: TraceFinish };

export interface WriteFailure {
  /** what could not be written: 'trace', 'span' or 'finish', and its id */
  what: 'trace' | 'span' | 'finish';
  id: string;
  trace_id: string;
  error: Error;
}

export interface TraceWriterOptions {
  /** flush when this many spans are buffered (default 256) */
  batchSpans?: number;
  /** flush this long after the first buffered write at the latest (default 250 ms; 0: only by count, flush() and close()) */
  flushMs?: number;
  /** called for each write that failed (duplicate id, missing trace, ...); default: kept in `errors`, first one also emitted as a process warning */
  onError?: (failure: WriteFailure) => void;
}

/**
 * Buffers trace writes and commits them in one transaction per batch: every `batchSpans` spans,
 * `flushMs` after the first buffered write, on `finish()` (a finished task is durable at once), and
 * on `flush()` / `close()`. Writes are serialised when queued (later changes to the objects passed
 * in are not recorded) and committed in the order they were made, so a trace queued before its
 * spans is inserted first. A process that dies loses at most the unflushed buffer: each batch is
 * one transaction, so the store is never left half-written. A write that fails (duplicate id,
 * unknown trace) does not take the rest of its batch down: the batch is retried write by write and
 * the failures are reported through `onError`.
 */
export class TraceWriter {
  readonly errors: WriteFailure[] = [];
  /** spans committed so far */
  spansWritten = 0;
  private ops: Op[] = [];
  private spans = 0;
  private timer: NodeJS.Timeout | null = null;
  private closed = false;
  private warned = false;
  private readonly st: Statements;
  private readonly batchSpans: number;
  private readonly flushMs: number;
  private readonly onError: (f: WriteFailure) => void;

  constructor(
    private readonly db: DB,
    opts: TraceWriterOptions = {},
  ) {
    this.st = stmts(db);
    this.batchSpans = Math.max(1, opts.batchSpans ?? 256);
    this.flushMs = Math.max(0, opts.flushMs ?? 250);
    this.onError =
      opts.onError ??
      ((f) => {
        this.errors.push(f);
        if (!this.warned) {
          this.warned = true;
          process.emitWarning(`trace writer: could not write ${f.what} ${f.id} of trace ${f.trace_id}: ${f.error.message}`);
        }
      });
  }

  /** writes buffered and not yet committed */
  get pending(): number {
    return this.ops.length;
  }

  trace(t: TraceRecord): void {
    this.push({ k: 'trace', id: t.id, p: traceParams(t) });
  }

  span(s: SpanRecord): void {
    this.push({ k: 'span', id: s.id, trace_id: s.trace_id, row: spanRow(s) });
    if (++this.spans >= this.batchSpans) this.flush();
  }

  /** queues the trace's finalization and flushes */
  finish(id: string, fields: TraceFinish): void {
    this.push({ k: 'finish', id, f: { ...fields } });
    this.flush();
  }

  /** commits the buffer; returns the number of writes committed */
  flush(): number {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    const ops = this.ops;
    if (ops.length === 0) return 0;
    this.ops = [];
    this.spans = 0;
    try {
      this.db.transaction(() => {
        for (const op of ops) this.apply(op);
      })();
      this.spansWritten += ops.reduce((n, op) => n + (op.k === 'span' ? 1 : 0), 0);
      return ops.length;
    } catch {
      let n = 0;
      for (const op of ops) {
        try {
          this.db.transaction(() => this.apply(op))();
          if (op.k === 'span') this.spansWritten++;
          n++;
        } catch (e) {
          this.onError({ what: op.k, id: op.id, trace_id: op.k === 'span' ? op.trace_id : op.id, error: e as Error });
        }
      }
      return n;
    }
  }

  /** flushes and stops the timer; the writer refuses writes afterwards (the database stays open) */
  close(): void {
    this.flush();
    this.closed = true;
  }

  private apply(op: Op): void {
    if (op.k === 'span') writeSpan(this.st, op.row);
    else if (op.k === 'trace') writeTrace(this.st, op.p);
    else if (!writeFinish(this.st, op.id, op.f)) throw new Error(`trace ${op.id} is unknown or already finished`);
  }

  private push(op: Op): void {
    if (this.closed) throw new Error('trace writer is closed');
    this.ops.push(op);
    if (!this.timer && this.flushMs > 0) {
      this.timer = setTimeout(() => {
        this.timer = null;
        this.flush();
      }, this.flushMs);
      this.timer.unref();
    }
  }
}

/** Rebuilds the search index from the stored traces and spans (after a change to what is indexed). */
export function rebuildSearchIndex(db: DB): void {
  const st = stmts(db);
  const CHUNK = 500;
  const traces = db.prepare('SELECT seq, task_id, output, error FROM traces WHERE seq > ? ORDER BY seq LIMIT ?');
  const spans = db.prepare('SELECT seq, kind, name, input, output, error FROM spans WHERE seq > ? ORDER BY seq LIMIT ?');
  db.transaction(() => {
    db.exec('DELETE FROM trace_fts');
    for (let after = 0; ; ) {
      const rows = traces.all(after, CHUNK) as Array<{ seq: number; task_id: string; output: string | null; error: string | null }>;
      for (const t of rows) st.insertFts.run(-t.seq, 'trace', t.task_id, t.output ?? '', t.error ?? '');
      if (rows.length < CHUNK) break;
      after = rows[rows.length - 1]!.seq;
    }
    for (let after = 0; ; ) {
      const rows = spans.all(after, CHUNK) as Array<{
        seq: number; kind: SpanRecord['kind']; name: string; input: string; output: string; error: string | null;
      }>;
      for (const r of rows) {
        const text = spanSearchText({ kind: r.kind, input: JSON.parse(r.input), output: JSON.parse(r.output) });
        st.insertFts.run(r.seq, r.kind, r.name, text, r.error ?? '');
      }
      if (rows.length < CHUNK) break;
      after = rows[rows.length - 1]!.seq;
    }
  })();
}

// ---------------------------------------------------------------------------------------------
// reads

interface TraceRow extends Omit<TraceRecord, 'pass'> {
  seq: number;
  pass: number | null;
  finalized: number;
  steps?: number;
}

function toTrace(r: TraceRow): StoredTrace {
  return {
    id: r.id, role: r.role ?? 'task', run_id: r.run_id, experiment_seq: r.experiment_seq, group_id: r.group_id, task_id: r.task_id, repeat: r.repeat,
    benchmark: r.benchmark, split: r.split, harness: r.harness, status: r.status, score: r.score,
    pass: r.pass === null ? null : r.pass !== 0, output: r.output, error: r.error, started_at: r.started_at, ended_at: r.ended_at,
    input_tokens: r.input_tokens, output_tokens: r.output_tokens, cache_read_tokens: r.cache_read_tokens,
    cache_write_tokens: r.cache_write_tokens, cost_usd: r.cost_usd, finalized: r.finalized !== 0,
  };
}

interface SpanRow2 extends Omit<SpanRecord, 'input' | 'output' | 'attributes'> {
  seq: number;
  input: string;
  output: string;
  attributes: string;
}

function toSpan(r: SpanRow2): SpanRecord {
  return {
    id: r.id, trace_id: r.trace_id, parent_id: r.parent_id, kind: r.kind, name: r.name, status: r.status,
    started_at: r.started_at, ended_at: r.ended_at, input: JSON.parse(r.input), output: JSON.parse(r.output), error: r.error,
    input_tokens: r.input_tokens, output_tokens: r.output_tokens, cache_read_tokens: r.cache_read_tokens,
    cache_write_tokens: r.cache_write_tokens, cost_usd: r.cost_usd, attributes: JSON.parse(r.attributes),
  };
}

const FAILED = `(t.status != 'ok' OR t.pass = 0)`;

/** Traces matching every given filter, ordered by run, experiment, group, task, repeat. */
export function tracesOf(db: DB, filter: TraceFilter = {}): TraceSummary[] {
  const where: string[] = [];
  const params: Record<string, unknown> = {};
  if (filter.id !== undefined) (where.push('t.id = @id'), (params.id = filter.id));
  if (filter.runId !== undefined) (where.push('t.run_id = @runId'), (params.runId = filter.runId));
  if (filter.experimentSeq !== undefined) (where.push('t.experiment_seq = @experimentSeq'), (params.experimentSeq = filter.experimentSeq));
  if (filter.groupId !== undefined) (where.push('t.group_id = @groupId'), (params.groupId = filter.groupId));
  if (filter.taskId !== undefined) (where.push('t.task_id = @taskId'), (params.taskId = filter.taskId));
  const role = filter.role ?? 'task';
  if (role !== 'any') (where.push('t.role = @role'), (params.role = role));
  if (filter.failed === true) where.push(FAILED);
  if (filter.failed === false) where.push(`NOT ${FAILED}`);
  const rows = db.prepare(
    `SELECT t.*,
       (SELECT CASE WHEN sum(s.kind = 'turn') > 0 THEN sum(s.kind = 'turn') ELSE coalesce(sum(s.kind = 'model'), 0) END
          FROM spans s WHERE s.trace_id = t.id) AS steps
     FROM traces t ${where.length ? `WHERE ${where.join(' AND ')}` : ''}
     ORDER BY t.run_id, t.experiment_seq, t.group_id, t.task_id, t.repeat, t.seq`,
  ).all(params) as TraceRow[];
  return rows.map((r) => ({ ...toTrace(r), steps: r.steps ?? 0 }));
}

/** Orders spans (start time, then the given order) and nests them by parent; orphans and cycles become roots. */
export function buildSpanTree(spans: SpanRecord[]): SpanNode[] {
  const sorted = spans
    .map((s, i) => ({ s, i }))
    .sort((a, b) => a.s.started_at - b.s.started_at || a.i - b.i)
    .map(({ s }) => s);
  const nodes = new Map<string, SpanNode>();
  for (const s of sorted) if (!nodes.has(s.id)) nodes.set(s.id, { ...s, children: [] });
  const roots: SpanNode[] = [];
  const attached = new Set<SpanNode>();
  for (const n of nodes.values()) {
    const parent = n.parent_id !== null && n.parent_id !== n.id ? nodes.get(n.parent_id) : undefined;
    if (parent) parent.children.push(n);
    else roots.push(n);
  }
  // spans caught in a parent cycle are reachable from no root: make the first of each a root
  const mark = (n: SpanNode) => {
    const stack = [n];
    while (stack.length) {
      const x = stack.pop()!;
      if (attached.has(x)) continue;
      attached.add(x);
      stack.push(...x.children);
    }
  };
  roots.forEach(mark);
  for (const n of nodes.values()) {
    if (attached.has(n)) continue;
    const parent = nodes.get(n.parent_id!)!;
    parent.children.splice(parent.children.indexOf(n), 1);
    roots.push(n);
    mark(n);
  }
  return roots;
}

export function getTrace(db: DB, id: string): TraceDetail | undefined {
  const row = db.prepare('SELECT * FROM traces WHERE id = ?').get(id) as TraceRow | undefined;
  if (!row) return undefined;
  const spans = (db.prepare('SELECT * FROM spans WHERE trace_id = ? ORDER BY started_at, seq').all(id) as SpanRow2[]).map(toSpan);
  return { trace: toTrace(row), spans, roots: buildSpanTree(spans) };
}

/** An FTS5 term that matches nothing (a prefix no word of the index starts with): its alternative is left out. */
const NOTHING = '\u0000';

/** How a prefix word (`babys*`, given as `babys`) is searched: an FTS5 term, or null when no word starts with it. */
type PrefixTerm = (base: string) => string | null;

/**
 * Turns what a person typed into FTS5 terms that cannot be a syntax error: each word and each
 * "quoted phrase" becomes a quoted FTS5 string (all must match); `OR` between two terms is kept;
 * a trailing `*` on a word makes it a prefix search (`prefix` tells how, see `prefixTerms`; without it FTS5's own
 * `"base"*`); terms without a letter or digit are dropped. A prefix of one letter or digit is a UsageError.
 */
function ftsTerms(text: string, prefix?: PrefixTerm): string[] {
  const terms: string[] = [];
  const quote = (s: string) => `"${s.replace(/"/g, '""')}"`;
  const searchable = (s: string) => /[\p{L}\p{N}]/u.test(s);
  let pendingOr = false;
  const add = (term: string) => {
    if (pendingOr && terms.length > 0) terms.push('OR');
    pendingOr = false;
    terms.push(term);
  };
  const re = /"([^"]*)"?|([^\s"]+)/g;
  for (let m = re.exec(text); m; m = re.exec(text)) {
    if (m[1] !== undefined) {
      if (searchable(m[1])) add(quote(m[1]));
    } else {
      const word = m[2]!;
      if (word === 'OR') {
        pendingOr = terms.length > 0;
        continue;
      }
      const isPrefix = word.length > 1 && word.endsWith('*') && /[\p{L}\p{N}]$/u.test(word.slice(0, -1));
      const base = isPrefix ? word.slice(0, -1) : word;
      if (!searchable(base)) continue;
      if (!isPrefix) {
        add(quote(base));
        continue;
      }
      // FTS5 takes the last token of the word as the prefix (`x-b*` is the phrase `x` `b*`)
      const last = base.match(/[\p{L}\p{N}]+/gu)!.at(-1)!;
      if ([...last].length < MIN_PREFIX) {
        throw new UsageError(`search ${JSON.stringify(word)}: a prefix needs at least ${MIN_PREFIX} letters or digits before the * (one matches most of the index)`);
      }
      add(prefix ? (prefix(base) ?? NOTHING) : `${quote(base)}*`);
    }
  }
  return terms;
}

/** The shortest prefix searched (`ba*`): one letter would have FTS5 merge the rows of every word it starts (no index of 1-letter prefixes). */
export const MIN_PREFIX = 2;

/**
 * A query as one FTS5 query (its alternatives joined by OR, see `ftsAlternativeTerms`); null when nothing searchable
 * is left.
 */
export function ftsQuery(text: string, prefix?: PrefixTerm): string | null {
  const alts = ftsAlternatives(text, prefix);
  return alts.length ? alts.join(' OR ') : null;
}

/**
 * The alternatives of a query, each its terms: FTS5 binds AND tighter than OR, so `a b OR c` is `(a b) OR c`. An
 * alternative with a prefix that no word starts with matches nothing and is left out.
 */
function ftsAlternativeTerms(text: string, prefix?: PrefixTerm): string[][] {
  const alts: string[][] = [[]];
  for (const t of ftsTerms(text, prefix)) {
    if (t === 'OR') alts.push([]);
    else alts[alts.length - 1]!.push(t);
  }
  return alts.filter((a) => a.length && !a.includes(NOTHING));
}

/** Terms that must all match, as one FTS5 query (after a group in parentheses FTS5 wants an explicit AND). */
const allOf = (terms: string[]): string => terms.join(terms.some((t) => t.startsWith('(')) ? ' AND ' : ' ');

/** The alternatives of a query as FTS5 queries (see `ftsAlternativeTerms`). */
function ftsAlternatives(text: string, prefix?: PrefixTerm): string[] {
  return ftsAlternativeTerms(text, prefix).map(allOf);
}

/** A prefix that stemming changes is searched as the words of the index it starts, when there are at most this many. */
export const PREFIX_WORDS = 64;

/** endings that make porter give back the stem it was given (`becaus` + `e`: `because` stems to `becaus`) */
const RESTEM = ['', 'e', 'al', 'ic', 'l', 's', 'es', 'ed', 'ing', 'ate'];

/** endings that complete a prefix into a word whose stem is shorter than the prefix (`babysitt` + `ing`: `babysit`) */
const ENDINGS = ['e', 'ed', 'es', 'ing', 'y', 'ies', 'ied', 'er', 'ers', 'ness', 'ation', 'ment', 'ly'];

/**
 * How the prefixes of one search are matched (memoised for that search). The index holds porter stems
 * (`babysitting` as `babysit`), and FTS5 stems a query's prefix too (`babys` as `babi`, which finds `baby`, not
 * `babysitting`). A prefix is matched as:
 * - the words of the index it starts: when porter leaves it as it is (most, and every one of 2 letters), FTS5's own
 *   prefix query, answered from the prefix indexes of 2 and 3 letters (migration 11); else the words of the index
 *   that start with it (fts5vocab), each written so that porter stems it to itself, an OR of at most `PREFIX_WORDS`
 *   (more: FTS5's own prefix query after all, of the stemmed prefix);
 * - and the stems shorter than the prefix of the words it starts (`babysitt*`: `babysitting` is `babysit` in the
 *   index), found by completing it with common endings (`ENDINGS`), those the index holds.
 * Temporary tables of this connection do the stemming and the word lists; a read-only connection has them too.
 */
function prefixTerms(db: DB): PrefixTerm {
  const memo = new Map<string, string | null>();
  let st: { clear: Statement<unknown[]>; put: Statement<unknown[]>; stems: Statement<unknown[]>; words: Statement<unknown[]>; any: Statement<unknown[]> } | undefined;
  const quote = (s: string) => `"${s.replace(/"/g, '""')}"`;
  /** porter's stem of each text (its last token), by the order of `texts` */
  const stemsOf = (texts: string[]): Array<string | undefined> => {
    st ??= (() => {
      db.exec(`CREATE VIRTUAL TABLE IF NOT EXISTS temp.autoagent_stem USING fts5(t, tokenize = '${FTS_TOKENIZE}');
        CREATE VIRTUAL TABLE IF NOT EXISTS temp.autoagent_stem_v USING fts5vocab(temp, 'autoagent_stem', 'instance');
        CREATE VIRTUAL TABLE IF NOT EXISTS temp.autoagent_words USING fts5vocab(main, 'trace_fts', 'row');`);
      return {
        clear: db.prepare('DELETE FROM temp.autoagent_stem'),
        put: db.prepare('INSERT INTO temp.autoagent_stem (rowid, t) VALUES (?, ?)'),
        // the last token of each row: the one with the highest offset
        stems: db.prepare('SELECT doc, term, max("offset") AS o FROM temp.autoagent_stem_v GROUP BY doc'),
        words: db.prepare('SELECT term FROM temp.autoagent_words WHERE term >= ? AND term < ? ORDER BY term LIMIT ?').pluck(),
        any: db.prepare('SELECT rowid FROM trace_fts WHERE trace_fts MATCH ? LIMIT 1').pluck(),
      };
    })();
    const out: Array<string | undefined> = texts.map(() => undefined);
    db.transaction(() => {
      st!.clear.run();
      texts.forEach((t, i) => st!.put.run(i + 1, t));
      for (const r of st!.stems.all() as Array<{ doc: number; term: string }>) out[r.doc - 1] = r.term;
      st!.clear.run();
    })();
    return out;
  };
  return (base) => {
    if (memo.has(base)) return memo.get(base)!;
    const raw = base.normalize('NFKD').replace(/\p{M}/gu, '').toLowerCase().match(/[\p{L}\p{N}]+/gu)!;
    const last = raw.at(-1)!;
    const head = raw.slice(0, -1).map((w) => w + ' ').join('');
    const native = `${quote(base)}*`;
    if ([...last].length < 3) {
      memo.set(base, native); // porter leaves tokens of 1 or 2 letters as they are
      return native;
    }
    // completions of the prefix into words: `babysitt` + `ing`, and `babysitti` + `ng`
    const completions = [...new Set(ENDINGS.flatMap((e) => [...Array(e.length).keys()].filter((k) => last.endsWith(e.slice(0, k))).map((k) => last + e.slice(k))))];
    const [own, ...stems] = stemsOf([last, ...completions]);
    const parts: string[] = [];
    if (own === last) parts.push(native);
    else {
      const next = last.slice(0, -1) + String.fromCodePoint(last.at(-1)!.codePointAt(0)! + 1);
      const words = st!.words.all(last, next, PREFIX_WORDS + 1) as string[];
      if (words.length > PREFIX_WORDS) parts.push(native);
      else {
        // each word as a text that porter stems to it (tried in RESTEM's order); one that none gives is left out
        const tries = stemsOf(words.flatMap((w) => RESTEM.map((e) => w + e)));
        for (const [i, w] of words.entries()) {
          const k = RESTEM.findIndex((_, j) => tries[i * RESTEM.length + j] === w);
          if (k >= 0) parts.push(quote(head + w + RESTEM[k]));
        }
      }
    }
    const shorter = new Set<string>();
    completions.forEach((c, i) => {
      const stem = stems[i];
      if (stem === undefined || stem.startsWith(last) || shorter.has(stem)) return;
      shorter.add(stem);
      if (st!.any.get(quote(c)) !== undefined) parts.push(quote(head + c));
    });
    const term = parts.length === 0 ? null : parts.length === 1 ? parts[0]! : `(${parts.join(' OR ')})`;
    memo.set(base, term);
    return term;
  };
}

/**
 * The most matching index rows a query (or one of its OR alternatives) gets ranked by bm25, per part of the index
 * (spans; the traces' answers and errors). A query with more matches shows its newest `RANK_CAP` newest first,
 * unranked (rank 0, after the ranked hits): bm25 must count every row that holds a word before it can score one
 * (the whole cost of a search for a common word, whose weight is near zero anyway). A rarer OR alternative is
 * still ranked by bm25, ahead of them.
 */
export const RANK_CAP = 2_000;

/**
 * A word (or quoted phrase, or prefix) in more index rows than this weighs nothing in the ranking: bm25 counts every
 * row of the whole index that holds each word of the query before it scores one, however few rows the query matches
 * (~40 ms of CPU for a word in 700,000 rows), and such a word's weight is small (at most about ln(rows / COMMON_ROWS)).
 * `the zebracornium` is ranked by bm25 of `zebracornium` (over the rows that hold both); an alternative of such
 * words only shows its matches newest first, unranked. Telling a word common costs a walk of COMMON_ROWS of its rows.
 */
export const COMMON_ROWS = 20_000;

const BM25 = 'bm25(trace_fts, 0.5, 2.0, 1.0, 1.5)';
const MAX_ROWID = Number.MAX_SAFE_INTEGER;

interface Plan {
  /** the union of index rows to rank, each `SELECT rowid AS r, bm25 AS bm` (parameters inline by name) */
  parts: string[];
  params: Record<string, unknown>;
  /** some matches were left out (beyond `RANK_CAP`) */
  capped: boolean;
  /** per alternative, the words its snippet marks (those it is ranked by; all, when none is), ranked ones first */
  snippets: string[];
  /** per alternative, every span row it matches (ascending), when the plan found them all (none beyond `cap`) */
  spanRows: Array<number[] | null>;
}

/**
 * What to rank, per part of the index (span rows have rowid = spans.seq > 0, newest highest; trace rows have
 * rowid = -traces.seq < 0, newest lowest) and per OR alternative (FTS5 seeks a rowid range well in one, not in an
 * OR; and bm25 of an OR counts the rows of every alternative's words, however few rows the OR matches in a part):
 * an alternative with more than `cap` matches in the part: its newest `cap` unranked (score 0); else every match,
 * ranked by bm25 of its words in at most `common` rows of the whole index (unranked when it has none). A row
 * matched by several alternatives scores their sum, as bm25 of the whole query does.
 */
function plan(db: DB, text: string, prefix: PrefixTerm, ranges: { spans: [number, number] | null; traces: [number, number] | null }, cap: number, common: number): Plan {
  const alts = ftsAlternativeTerms(text, prefix);
  const out: Plan = { parts: [], params: {}, capped: false, snippets: alts.map(allOf), spanRows: alts.map(() => null) };
  const weighs = alts.map(() => false);
  const segments: Array<{ key: string; range: [number, number] | null; newest: 'DESC' | 'ASC' }> = [
    { key: 's', range: ranges.spans, newest: 'DESC' },
    { key: 't', range: ranges.traces, newest: 'ASC' },
  ];
  const rowsSql = (dir: 'DESC' | 'ASC', tail: string) =>
    db.prepare(`SELECT rowid FROM trace_fts WHERE trace_fts MATCH ? AND rowid BETWEEN CAST(? AS INTEGER) AND CAST(? AS INTEGER) ORDER BY rowid ${dir} ${tail}`).pluck();
  // the nth match in rowid order (from 0); the first n in ascending order
  const nthOf = { DESC: rowsSql('DESC', 'LIMIT 1 OFFSET ?'), ASC: rowsSql('ASC', 'LIMIT 1 OFFSET ?') };
  const firstOf = rowsSql('ASC', 'LIMIT ?');
  const rare = new Map<string, boolean>();
  const isRare = (term: string) => {
    if (!rare.has(term)) rare.set(term, nthOf.ASC.get(term, -MAX_ROWID, MAX_ROWID, common) === undefined);
    return rare.get(term)!;
  };
  const inRange = (key: string, lo = `CAST(@${key}lo AS INTEGER)`, hi = `CAST(@${key}hi AS INTEGER)`) => `rowid BETWEEN ${lo} AND ${hi}`;
  alts.forEach((terms, i) => (out.params[`a${i}`] = allOf(terms)));
  for (const { key, range, newest: dir } of segments) {
    if (!range) continue;
    out.params[`${key}lo`] = range[0];
    out.params[`${key}hi`] = range[1];
    alts.forEach((terms, i) => {
      const a = `@a${i}`;
      const alt = out.params[`a${i}`];
      if (!Number.isFinite(cap)) {
        out.parts.push(`SELECT rowid AS r, ${BM25} AS bm FROM trace_fts WHERE trace_fts MATCH ${a} AND ${inRange(key)}`);
        return;
      }
      // its first `cap` + 1 matches (ascending: FTS5 walks that way faster, an AND of a rare and a common word twice as
      // fast), once: whether it has more than `cap`, whether it has any, and (when it has a word that weighs nothing)
      // the rows to rank
      const rows = firstOf.all(alt, range[0], range[1], cap + 1) as number[];
      // beyond `cap` matches: its newest `cap`, unranked
      const cut = rows.length <= cap ? undefined : dir === 'ASC' ? rows[cap] : (nthOf.DESC.get(alt, range[0], range[1], cap) as number);
      if (cut !== undefined) {
        out.capped = true;
        out.params[`${key}c${i}`] = cut;
        out.parts.push(`SELECT rowid AS r, 0.0 AS bm FROM trace_fts WHERE trace_fts MATCH ${a} AND ${dir === 'DESC'
          ? inRange(key, `CAST(@${key}c${i} AS INTEGER) + 1`)
          : inRange(key, undefined, `CAST(@${key}c${i} AS INTEGER) - 1`)}`);
        return;
      }
      if (key === 's') out.spanRows[i] = rows;
      if (rows.length === 0) return; // no match in this part
      const weighed = terms.filter(isRare);
      weighs[i] ||= weighed.length > 0;
      if (weighed.length === 0 || weighed.length === terms.length) {
        out.parts.push(`SELECT rowid AS r, ${weighed.length ? BM25 : '0.0'} AS bm FROM trace_fts WHERE trace_fts MATCH ${a} AND ${inRange(key)}`);
        return;
      }
      // bm25 of the rarer words over the rows that hold them, kept when they match the whole alternative (its rows
      // found here; `+rowid`: a filter, not an index search per row, which would count the words again for each)
      out.params[`w${i}`] = out.snippets[i] = allOf(weighed);
      out.params[`${key}m${i}`] = JSON.stringify(rows);
      out.parts.push(`SELECT rowid AS r, ${BM25} AS bm FROM trace_fts WHERE trace_fts MATCH @w${i} AND ${inRange(key)}
          AND +rowid IN (SELECT value FROM json_each(@${key}m${i}))`);
    });
  }
  out.snippets = [...out.snippets.filter((_, i) => weighs[i]), ...out.snippets.filter((_, i) => !weighs[i])];
  return out;
}

/** The index rows of the traces a filter keeps (spans; trace rows), or null when it keeps none; every row without one. */
function rangesOf(db: DB, opts: SearchOptions): { spans: [number, number] | null; traces: [number, number] | null } | null {
  const where: string[] = [];
  const params: Record<string, unknown> = {};
  if (opts.groupId !== undefined) (where.push('t.group_id = @groupId'), (params.groupId = opts.groupId));
  if (opts.runId !== undefined) (where.push('t.run_id = @runId'), (params.runId = opts.runId));
  if (!where.length) return { spans: [1, MAX_ROWID], traces: [-MAX_ROWID, -1] };
  const t = db.prepare(`SELECT min(t.seq) AS lo, max(t.seq) AS hi FROM traces t WHERE ${where.join(' AND ')}`).get(params) as { lo: number | null; hi: number | null };
  if (t.lo === null || t.hi === null) return null;
  const s = db.prepare(`SELECT min(s.seq) AS lo, max(s.seq) AS hi FROM traces t JOIN spans s ON s.trace_id = t.id WHERE ${where.join(' AND ')}`).get(params) as { lo: number | null; hi: number | null };
  return { spans: s.lo === null || s.hi === null ? null : [s.lo, s.hi], traces: [-t.hi, -t.lo] };
}

/** a ranked index row with the trace it belongs to */
interface RankedRow {
  r: number;
  bm: number;
  trace: TraceRow;
}

/**
 * Walks the planned rows best first (ties: newest first), each with its trace, keeping those the filters keep,
 * until `want` says enough. Only the rows walked are looked up: the top 20 traces of a common word cost 20-odd
 * lookups, not one per match.
 */
function walk(db: DB, p: Plan, opts: SearchOptions, want: (row: RankedRow) => boolean): void {
  if (!p.parts.length) return;
  const sql = p.parts.length === 1
    ? `${p.parts[0]} ORDER BY bm, r DESC`
    : `SELECT r, sum(bm) AS bm FROM (${p.parts.join(' UNION ALL ')}) GROUP BY r ORDER BY bm, r DESC`;
  const spanTrace = db.prepare('SELECT trace_id FROM spans WHERE seq = ?').pluck();
  const traceBySeq = db.prepare('SELECT * FROM traces WHERE seq = ?');
  const traceById = db.prepare('SELECT * FROM traces WHERE id = ?');
  const cache = new Map<string, TraceRow | undefined>();
  for (const row of db.prepare(sql).iterate(p.params) as IterableIterator<{ r: number; bm: number }>) {
    let trace: TraceRow | undefined;
    if (row.r < 0) trace = traceBySeq.get(-row.r) as TraceRow | undefined;
    else {
      const id = spanTrace.get(row.r) as string | undefined;
      if (id === undefined) continue;
      if (!cache.has(id)) cache.set(id, traceById.get(id) as TraceRow | undefined);
      trace = cache.get(id);
    }
    if (!trace) continue;
    if (opts.groupId !== undefined && trace.group_id !== opts.groupId) continue;
    if (opts.runId !== undefined && trace.run_id !== opts.runId) continue;
    if (opts.role !== undefined && (trace.role ?? 'task') !== opts.role) continue;
    if (!want({ r: row.r, bm: row.bm, trace })) break;
  }
}

/**
 * Collects ranked rows: first with matches beyond `RANK_CAP` left unranked; again ranking every match when that
 * left out so many that fewer than `limit` results came back (a filter that keeps few of the newest matches).
 */
function ranked<T>(db: DB, query: string, prefix: PrefixTerm, opts: SearchOptions, limit: number, collect: (p: Plan) => T[]): { items: T[]; capped: boolean; snippets: string[]; spanRows?: number[][] } {
  const q = ftsQuery(query, prefix);
  if (!q) return { items: [], capped: false, snippets: [] };
  const ranges = rangesOf(db, opts);
  if (!ranges) return { items: [], capped: false, snippets: [] };
  const p = opts.exact ? plan(db, query, prefix, ranges, Infinity, Infinity) : plan(db, query, prefix, ranges, RANK_CAP, COMMON_ROWS);
  const first = collect(p);
  const all = p.spanRows.every((r) => r !== null) ? (p.spanRows as number[][]) : undefined;
  if (first.length >= limit || !p.capped) return { items: first, capped: p.capped, snippets: p.snippets, spanRows: all };
  return { items: collect(plan(db, query, prefix, ranges, Infinity, Infinity)), capped: false, snippets: p.snippets };
}

const clampLimit = (n: number | undefined, dflt: number) => Math.max(1, Math.floor(n !== undefined && Number.isFinite(n) ? n : dflt));
const snippetSql = (opts: SearchOptions) =>
  `SELECT snippet(trace_fts, -1, '«', '»', '…', ${Math.min(64, Math.max(1, Math.floor(opts.snippetTokens ?? 12)))}) AS s FROM trace_fts WHERE trace_fts MATCH ? AND rowid = CAST(? AS INTEGER)`;

/**
 * A row's snippet: with the words of the first OR alternative it matches that its ranking weighs (FTS5 finds one row
 * of an OR slowly; and `the zebracornium` shows where `zebracornium` is, not the first `the`).
 */
function snippetOf(snip: Statement<unknown[]>, snippets: string[], r: number): string {
  for (const a of snippets) {
    const s = (snip.get(a, r) as { s: string } | undefined)?.s;
    if (s !== undefined) return s;
  }
  return '';
}

/**
 * Full-text search over spans and traces, one hit per matching span (or trace answer / error); best first.
 * Ranking: bm25 (a span's name weighs 2, its text 1, its error 1.5, its kind 0.5), ties newest first; a query
 * with more than `RANK_CAP` matches in a part of the index shows its newest, unranked (see `RANK_CAP`).
 */
export function searchTraces(db: DB, query: string, opts: SearchOptions = {}): SearchHit[] {
  const limit = clampLimit(opts.limit, 20);
  const { items, snippets } = ranked(db, query, prefixTerms(db), opts, limit, (p) => {
    const rows: RankedRow[] = [];
    walk(db, p, opts, (row) => rows.push(row) < limit);
    return rows;
  });
  const snip = db.prepare(snippetSql(opts));
  const spanAt = db.prepare('SELECT id, kind, name FROM spans WHERE seq = ?');
  return items.map(({ r, bm, trace }) => {
    const s = r > 0 ? (spanAt.get(r) as { id: string; kind: SpanRecord['kind']; name: string }) : undefined;
    return {
      trace_id: trace.id, span_id: s?.id ?? null, span_kind: s?.kind ?? null, span_name: s?.name ?? null, task_id: trace.task_id, group_id: trace.group_id,
      snippet: snippetOf(snip, snippets, r), rank: bm,
    };
  });
}

/**
 * Full-text search, one hit per trace: its best-ranked match (span or answer / error, ranked as in
 * `searchTraces`), how many of its rows match, and where it ran; best first.
 */
export function searchTraceHits(db: DB, query: string, opts: SearchOptions = {}): TraceHit[] {
  const limit = clampLimit(opts.limit, 20);
  const prefix = prefixTerms(db);
  const q = ftsQuery(query, prefix) ?? '';
  const { items, snippets, spanRows } = ranked(db, query, prefix, opts, limit, (p) => {
    const best = new Map<string, RankedRow>();
    walk(db, p, opts, (row) => {
      if (!best.has(row.trace.id)) best.set(row.trace.id, row);
      return best.size < limit;
    });
    return [...best.values()];
  });
  const snip = db.prepare(snippetSql(opts));
  const spanAt = db.prepare('SELECT id, kind, name FROM spans WHERE seq = ?');
  // a trace's matching rows, counted in its own rows of the index only
  const spanRange = db.prepare('SELECT min(seq) AS lo, max(seq) AS hi FROM spans WHERE trace_id = ?');
  // each OR alternative on its own: FTS5 seeks a rowid range well in one, not in an OR of a common and a rare word
  const alts = ftsAlternatives(query, prefix);
  const inRange = alts.map((_, i) => `SELECT rowid FROM trace_fts WHERE trace_fts MATCH @a${i} AND rowid BETWEEN CAST(@lo AS INTEGER) AND CAST(@hi AS INTEGER)`);
  const countSpans = db.prepare(`SELECT count(*) AS n FROM spans WHERE trace_id = @id AND seq IN (${inRange.join(' UNION ')})`).pluck();
  const altParams = Object.fromEntries(alts.map((a, i) => [`a${i}`, a]));
  const countTrace = db.prepare('SELECT count(*) AS n FROM trace_fts WHERE trace_fts MATCH ? AND rowid = CAST(? AS INTEGER)').pluck();
  const spanSeqs = db.prepare('SELECT seq FROM spans WHERE trace_id = ?').pluck();
  return items.map(({ r, bm, trace: row }) => {
    const t = toTrace(row);
    const s = r > 0 ? (spanAt.get(r) as { id: string; kind: SpanRecord['kind']; name: string }) : undefined;
    const range = spanRange.get(t.id) as { lo: number | null; hi: number | null };
    // (its spans need not be one run of seq: traces written at once interleave theirs)
    const spans = range.lo === null || range.hi === null ? 0
      : spanRows ? countIn(spanRows, spanSeqs.all(t.id) as number[]) : (countSpans.get({ ...altParams, id: t.id, lo: range.lo, hi: range.hi }) as number);
    const matches = (countTrace.get(q, -row.seq) as number) + spans;
    return {
      trace_id: t.id, role: t.role ?? 'task', run_id: t.run_id, experiment_seq: t.experiment_seq, group_id: t.group_id, task_id: t.task_id, repeat: t.repeat,
      status: t.status, score: t.score, pass: t.pass, finalized: t.finalized, matches,
      span_id: s?.id ?? null, span_kind: s?.kind ?? null, span_name: s?.name ?? null,
      snippet: snippetOf(snip, snippets, r), rank: bm,
    };
  });
}

/** How many of `seqs` one of `lists` (each ascending) holds. */
function countIn(lists: number[][], seqs: number[]): number {
  const has = (xs: number[], x: number) => {
    let a = 0;
    let b = xs.length;
    while (a < b) {
      const m = (a + b) >> 1;
      if (xs[m]! < x) a = m + 1;
      else b = m;
    }
    return a < xs.length && xs[a] === x;
  };
  return seqs.filter((x) => lists.some((xs) => has(xs, x))).length;
}

/** One row per task of one evaluation (group), tasks in id order. */
export function taskScores(db: DB, groupId: string): TaskScore[] {
  const rows = db.prepare(
    `SELECT id, task_id, repeat, status, score, pass, input_tokens, output_tokens, cost_usd, started_at, ended_at
     FROM traces WHERE group_id = ? ORDER BY task_id, repeat, seq`,
  ).all(groupId) as Array<{
    id: string; task_id: string; repeat: number; status: SpanStatus; score: number | null; pass: number | null;
    input_tokens: number; output_tokens: number; cost_usd: number; started_at: number; ended_at: number;
  }>;
  const out: TaskScore[] = [];
  let cur: (TaskScore & { _ms: number }) | undefined;
  for (const r of rows) {
    if (!cur || cur.task_id !== r.task_id) {
      if (cur) out.push(finishTask(cur));
      cur = { task_id: r.task_id, repeats: 0, score: null, scores: [], passed: 0, failed: 0, trace_ids: [], input_tokens: 0, output_tokens: 0, cost_usd: 0, duration_ms: 0, _ms: 0 };
    }
    cur.repeats++;
    cur.scores.push(r.score);
    if (r.pass === 1) cur.passed++;
    if (r.status !== 'ok' || r.pass === 0) cur.failed++;
    cur.trace_ids.push(r.id);
    cur.input_tokens += r.input_tokens;
    cur.output_tokens += r.output_tokens;
    cur.cost_usd += r.cost_usd;
    cur._ms += r.ended_at - r.started_at;
  }
  if (cur) out.push(finishTask(cur));
  return out;
}

function finishTask(t: TaskScore & { _ms: number }): TaskScore {
  const { _ms, ...rest } = t;
  const scored = rest.scores.some((s) => s !== null);
  return {
    ...rest,
    score: scored ? rest.scores.reduce<number>((a, s) => a + (s ?? 0), 0) / rest.repeats : null,
    duration_ms: _ms / rest.repeats,
  };
}

// ---------------------------------------------------------------------------------------------
// moving an evaluation's traces between stores (a queue worker's store → the coordinator's)

/** The traces of one group with their spans, as one store gives them to another (traces/transfer on the queue). */
export interface TraceExport {
  traces: Array<TraceRecord & { finalized: boolean }>;
  spans: SpanRecord[];
}

/** The traces of `groupId` (task traces and any other role) and all their spans, in insertion order. */
export function exportTraceGroup(db: DB, groupId: string): TraceExport {
  const rows = db.prepare('SELECT * FROM traces WHERE group_id = ? ORDER BY seq').all(groupId) as TraceRow[];
  const spans = db.prepare('SELECT s.* FROM spans s JOIN traces t ON t.id = s.trace_id WHERE t.group_id = ? ORDER BY s.seq').all(groupId) as SpanRow2[];
  return { traces: rows.map(toTrace), spans: spans.map(toSpan) };
}

/** Deletes the traces of `groupId`, their spans and their search index entries; returns how many traces went. */
export function deleteTraceGroup(db: DB, groupId: string): number {
  return db.transaction(() => {
    const ids = 'SELECT id FROM traces WHERE group_id = @g';
    db.prepare(`DELETE FROM trace_fts WHERE rowid IN (SELECT seq FROM spans WHERE trace_id IN (${ids})) OR rowid IN (SELECT -seq FROM traces WHERE group_id = @g)`).run({ g: groupId });
    db.prepare(`DELETE FROM spans WHERE trace_id IN (${ids})`).run({ g: groupId });
    return db.prepare('DELETE FROM traces WHERE group_id = @g').run({ g: groupId }).changes;
  })();
}

/**
 * Writes exported traces and their spans (with their search index entries) in one transaction:
 * all or none. A trace whose id the store has already is skipped with its spans, so importing the
 * same export twice (a result read again after a crash) adds nothing. Spans of traces not in the
 * export are refused (the whole import throws). Returns what was added.
 */
export function importTraces(db: DB, x: TraceExport): { traces: number; spans: number } {
  const st = stmts(db);
  const inExport = new Set(x.traces.map((t) => t.id));
  for (const s of x.spans) if (!inExport.has(s.trace_id)) throw new Error(`span ${s.id} belongs to trace ${s.trace_id}, which is not in the export`);
  const traceRows = x.traces.map((t) => {
    const { finalized, ...rec } = t;
    return { id: t.id, finalized, p: traceParams(rec) };
  });
  const spanRows = x.spans.map((s) => ({ trace_id: s.trace_id, row: spanRow(s) }));
  return db.transaction(() => {
    const added = new Set<string>();
    for (const t of traceRows) {
      if (st.getTraceRow.get(t.id)) continue;
      writeTrace(st, t.p);
      if (t.finalized) db.prepare('UPDATE traces SET finalized = 1 WHERE id = ?').run(t.id);
      added.add(t.id);
    }
    let spans = 0;
    for (const s of spanRows) {
      if (!added.has(s.trace_id)) continue;
      writeSpan(st, s.row);
      spans++;
    }
    return { traces: added.size, spans };
  })();
}
