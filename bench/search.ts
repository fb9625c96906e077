/**
 * Trace search on a large store: the search before issue 15 (bm25 over every match, one row per span) and now
 * (one row per trace; a query with more than RANK_CAP matches in a part of the index shows its newest, unranked;
 * words in more than COMMON_ROWS rows weigh nothing), side by side on the same store of `--traces` × 10 spans
 * (default 100 000 × 10 = 1M spans), median of `--runs` runs: wall time, and for now also the CPU time the search
 * took (the machine is shared: wall time follows its load, reported with the figures). Prefix queries too (`bab*`,
 * schema 11's prefix indexes; `b*` is refused now). An older store given with `--store` is migrated by its first
 * open, timed and reported.
 * The store is built once (GSM8K text, bench/search-store.ts) and kept at `--store` for later runs.
 *
 *   node --import tsx bench/search.ts [--traces 100000] [--runs 5] [--store /tmp/autoagent-bench-search-100000.db]
 */
import { existsSync } from 'node:fs';
import { loadavg } from 'node:os';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import type { SpanRecord } from '../traces/types.ts';
import { openDb, type DB } from '../traces/index.ts';
import { openDbReadOnly, MIGRATIONS } from '../traces/db.ts';
import { ftsQuery, searchTraceHits, RANK_CAP, COMMON_ROWS, MIN_PREFIX, type SearchHit, type SearchOptions } from '../traces/traces.ts';
import { UsageError } from '../base/errors.ts';
import { buildStore, RARE } from './search-store.ts';
import { writeSection, machine } from './markdown.ts';

const { values } = parseArgs({ options: { traces: { type: 'string', default: '100000' }, runs: { type: 'string', default: '5' }, store: { type: 'string' } } });
const traces = Number(values.traces);
const runs = Math.max(1, Number(values.runs));
const SPANS = 10;
const store = values.store ?? join(tmpdir(), `autoagent-bench-search-${traces}.db`);

/** the FTS5 query of the search as it was: FTS5's own prefix query for a `*` (a 1-letter prefix too, refused now) */
const oldFtsQuery = (query: string): string | null => {
  try {
    return ftsQuery(query);
  } catch (e) {
    if (e instanceof UsageError && /^\S+\*$/.test(query)) return `"${query.slice(0, -1)}"*`;
    throw e;
  }
};

// the search as it was (commit fd01389), verbatim but for the query (oldFtsQuery): every match ranked, one row per span
/** Full-text search over spans and traces; best hits first. */
function oldSearch(db: DB, query: string, opts: SearchOptions = {}): SearchHit[] {
  const q = oldFtsQuery(query);
  if (!q) return [];
  const limit = Math.max(1, Math.floor(opts.limit ?? 20));
  const tokens = Math.min(64, Math.max(1, Math.floor(opts.snippetTokens ?? 12)));
  const where: string[] = ['trace_fts MATCH @q'];
  const params: Record<string, unknown> = { q, limit };
  const filtered = opts.groupId !== undefined || opts.runId !== undefined || opts.role !== undefined;
  if (opts.groupId !== undefined) (where.push('t.group_id = @groupId'), (params.groupId = opts.groupId));
  if (opts.runId !== undefined) (where.push('t.run_id = @runId'), (params.runId = opts.runId));
  if (opts.role !== undefined) (where.push('t.role = @role'), (params.role = opts.role));
  // pass 1: the best rowids (joins only when filtering); pass 2: a snippet for each of them
  const top = db.prepare(
    filtered
      ? `SELECT f.rowid AS r, bm25(trace_fts, 0.5, 2.0, 1.0, 1.5) AS bm FROM trace_fts f
           LEFT JOIN spans s ON s.seq = f.rowid
           JOIN traces t ON t.seq = -f.rowid OR t.id = s.trace_id
         WHERE ${where.join(' AND ')} ORDER BY bm LIMIT @limit`
      : `SELECT rowid AS r, bm25(trace_fts, 0.5, 2.0, 1.0, 1.5) AS bm FROM trace_fts WHERE trace_fts MATCH @q ORDER BY bm LIMIT @limit`,
  ).all(params) as Array<{ r: number; bm: number }>;
  const snip = db.prepare(`SELECT snippet(trace_fts, -1, '«', '»', '…', ${tokens}) AS s FROM trace_fts WHERE trace_fts MATCH ? AND rowid = ?`);
  const spanAt = db.prepare('SELECT s.id, s.kind, s.name, t.id AS trace_id, t.task_id, t.group_id FROM spans s JOIN traces t ON t.id = s.trace_id WHERE s.seq = ?');
  const traceAt = db.prepare('SELECT id AS trace_id, task_id, group_id FROM traces WHERE seq = ?');
  const hits: SearchHit[] = [];
  for (const { r, bm: rank } of top) {
    const snippet = (snip.get(q, r) as { s: string } | undefined)?.s ?? '';
    if (r > 0) {
      const s = spanAt.get(r) as { id: string; kind: SpanRecord['kind']; name: string; trace_id: string; task_id: string; group_id: string } | undefined;
      if (s) hits.push({ trace_id: s.trace_id, span_id: s.id, span_kind: s.kind, span_name: s.name, task_id: s.task_id, group_id: s.group_id, snippet, rank });
    } else {
      const t = traceAt.get(-r) as { trace_id: string; task_id: string; group_id: string } | undefined;
      if (t) hits.push({ trace_id: t.trace_id, span_id: null, span_kind: null, span_name: null, task_id: t.task_id, group_id: t.group_id, snippet, rank });
    }
  }
  return hits;
}

let db: DB;
let buildS: number | null = null;
/** an older store is migrated by its first open (schema 11: the prefix indexes, trace_fts made again): how long it took */
let migrated: string | null = null;
const ready = existsSync(store) && (() => {
  const ro = openDbReadOnly(store);
  const version = ro.pragma('user_version', { simple: true }) as number;
  ro.close();
  const t0 = performance.now();
  const d = openDb(store);
  if (version < MIGRATIONS.length) migrated = `migrated from schema ${version} to ${MIGRATIONS.length} by its first open in ${((performance.now() - t0) / 1000).toFixed(0)} s`;
  const n = (d.prepare('SELECT count(*) AS n FROM spans').get() as { n: number }).n;
  d.close();
  return n === traces * SPANS;
})();
if (ready) db = openDb(store);
else {
  const t0 = performance.now();
  db = buildStore(store, traces, SPANS);
  buildS = (performance.now() - t0) / 1000;
}
const total = (db.prepare('SELECT count(*) AS n FROM spans').get() as { n: number }).n;

/** median wall and CPU (user + system) milliseconds of `runs` runs after one warm-up */
function median(f: () => unknown): { wall: number; cpu: number } {
  const wall: number[] = [];
  const cpu: number[] = [];
  f(); // warm the page cache and the statement
  for (let i = 0; i < runs; i++) {
    const c = process.cpuUsage();
    const t = performance.now();
    f();
    wall.push(performance.now() - t);
    const d = process.cpuUsage(c);
    cpu.push((d.user + d.system) / 1000);
  }
  const mid = (xs: number[]) => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  return { wall: mid(wall), cpu: mid(cpu) };
}
const load = () => loadavg().map((x) => x.toFixed(1)).join(' ');
const loadBefore = load();

const queries: Array<[string, string]> = [
  ['rare', RARE],
  ['medium', 'babysitting'],
  ['common', 'eggs'],
  ['common', '#### 42'],
  ['very common', 'how much'],
  ['very common', 'the'],
  ['very common OR rare', `the OR ${RARE}`],
  ['very common AND rare', `the ${RARE}`],
  ['medium AND very common', 'babysitting the'],
  ['1-letter prefix', 'b*'],
  ['prefix', 'bab*'],
  ['prefix (stemmed)', 'babys*'],
  ['very common prefix', 'the*'],
];
const rows: string[] = [];
for (const [kind, q] of queries) {
  // matches: of the query as FTS5 reads it (a prefix: FTS5's own prefix query, of the stemmed prefix)
  const matches = (db.prepare('SELECT count(*) AS n FROM trace_fts WHERE trace_fts MATCH ?').get(oldFtsQuery(q)) as { n: number }).n;
  const old = median(() => oldSearch(db, q, { limit: 20 })).wall;
  /** the search now: its hits, or the usage error it answers with */
  const search = (): SearchHit[] | string => {
    try {
      return searchTraceHits(db, q, { limit: 20 });
    } catch (e) {
      if (e instanceof UsageError) return `usage error: ${e.message.replace(/^.*?: /, '')}`;
      throw e;
    }
  };
  const { wall: now, cpu } = median(search);
  const hits = search();
  /** a prefix's words as the snippets mark them, the first three */
  const marked = (hs: SearchHit[]) => [...new Set(hs.flatMap((h) => [...h.snippet.matchAll(/«([^»]*)»/g)].map((m) => m[1]!.toLowerCase())))].slice(0, 3).map((w) => `«${w}»`).join(', ');
  const words = q.endsWith('*') && typeof hits !== 'string' ? `: ${marked(hits)} (before: ${marked(oldSearch(db, q, { limit: 20 }))})` : '';
  const found = typeof hits === 'string' ? hits : `${hits.length} traces${q.includes(RARE) ? (hits.some((h) => h.snippet.includes(RARE)) ? ' (rare word found)' : ' (rare word MISSING)') : ''}${words}`;
  const speedUp = typeof hits === 'string' ? '—' : `${(old / now).toFixed(1)}×`;
  rows.push(`| ${kind} | \`${q}\` | ${matches.toLocaleString('en')} | ${old.toFixed(1)} ms | **${now.toFixed(1)} ms** | ${cpu.toFixed(1)} ms | ${speedUp} | ${found} |`);
  console.log(rows[rows.length - 1]);
}
db.close();

const body = `## Trace search (\`node --import tsx bench/search.ts\`)

A store of ${traces.toLocaleString('en')} traces × ${SPANS} spans = ${total.toLocaleString('en')} spans (GSM8K questions and worked answers as
span text; built ${buildS === null ? `earlier and reused${migrated ? `, ${migrated}` : ''}` : `in ${buildS.toFixed(0)} s`}), measured ${new Date().toISOString().slice(0, 10)} on ${machine()};
median of ${runs} runs after one warm-up, the top 20 each; load average (1, 5, 15 min) ${loadBefore} before, ${load()} after.
*Before*: bm25 over every match, one row per span. *Now*: one row per trace (its best match, its matching rows counted); a query
with more than ${RANK_CAP.toLocaleString('en')} matches in a part of the index (spans; answers and errors) shows its newest ${RANK_CAP.toLocaleString('en')} first, unranked; an OR
alternative with fewer is still ranked by bm25, ahead of them; a word in more than ${COMMON_ROWS.toLocaleString('en')} rows weighs nothing (bm25 would count
them all first). A prefix (\`bab*\`) is answered from FTS5's prefix indexes of 2 and 3 letters (schema 11) and matched against
the index's stems (\`babys*\` finds *babysitting*, stored as \`babysit\`; FTS5 alone would stem the prefix to \`babi\`, *baby*);
one of fewer than ${MIN_PREFIX} letters is refused (*before*: FTS5's own prefix query, the stemmed prefix for \`babys*\`).
*Matches* counts index rows (spans and trace answers) of FTS5's reading of the query. The machine is shared: wall times vary
with its load (the ratios hold); *now CPU* is the CPU time of the search itself.

| query | text | matches | before | now | now CPU | speed-up | now returns |
| --- | --- | --- | --- | --- | --- | --- | --- |
${rows.join('\n')}
`;
writeSection('search', body);
console.log(body);
