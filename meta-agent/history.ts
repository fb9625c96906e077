/**
 * The read-only view of one run that the LLM meta-agent's tools and its trace digest read
 * (`RunHistory`, meta-agent/types.ts), over the SQLite store. Nothing here writes.
 *
 * Only task traces of this run are visible (traces.role = 'task'): the proposer's own
 * conversations (role 'proposal') and other runs' traces are neither searched, rendered nor
 * counted. Every text is deterministic (no clock, no randomness) and every cut is marked:
 * `[… N characters cut …]` where N is exactly the number of characters left out.
 *
 * The digest fits `tokens × 4` characters (a hard cap). Its layout per kind:
 * - harness: a header with the incumbent's totals; FAILED tasks of the incumbent, worst first;
 *   REGRESSED tasks (passed in the incumbent, failed in the most recent decided candidate that
 *   was not kept); a sample of PASSED tasks spread by a hash of the task id. Each task shows its
 *   full transcript; the budget is shared among the tasks shown (one that needs less than its
 *   share gives the rest back), transcripts that do not fit are first re-rendered with shorter
 *   text blocks, then cut in the middle (head and tail kept: the final answer and the scorer's
 *   feedback are at the end). Tasks that do not fit at all are counted and named.
 * - trainer: the incumbent and the most recent decided experiments, newest first: metric per
 *   evaluation, the training telemetry (`show`'s lines: loss-curve sparkline, steps, tokens/s,
 *   peak memory, device), the loss curve as numbers, and the stderr tail of evaluations that
 *   did not succeed.
 * - command: the same experiments with each evaluation's metric, status, reason and its
 *   stdout / stderr tails.
 */
import { createHash } from 'node:crypto';
import type { DB } from '../traces/db.ts';
import { getExperiment, getRun, listExperiments, evaluationsOf, type EvaluationRow, type ExperimentRow, type RunRow } from '../traces/ledger.ts';
import { getTrace, searchTraces, tracesOf, type StoredTrace } from '../traces/traces.ts';
import { experimentSeqOfTrace, firstModelInputs, isTaskTraceOfRun } from '../traces/trace-queries.ts';
import { renderTranscript, fmtScore, type TranscriptOptions } from '../traces/transcript.ts';
import { fmtMetric, fmtDuration, telemetryText } from '../base/format.ts';
import { CHARS_PER_TOKEN, cutMiddle, cutHead } from './format.ts';
export { CHARS_PER_TOKEN, cutMiddle, cutHead } from './format.ts';
import type { SpanRecord } from '../traces/types.ts';
import type { RunHistory } from './types.ts';

/** characters per token assumed by `digest(tokens)` */

export interface StoreHistoryOptions {
  db: DB;
  runId: string;
  kind: 'command' | 'trainer' | 'harness';
  /** the experiment the proposal starts from */
  incumbentSeq: number;
  /** a tracked file of the incumbent commit (repo-relative), hidden paths excluded; null when absent */
  readFile: (repoPath: string) => Promise<string | null>;
}

// ---------------------------------------------------------------------------------------------
// tasks of an experiment

interface TaskAgg {
  task_id: string;
  /** one trace per repeat (a retried repeat: its last finished trace), in repeat order */
  traces: StoredTrace[];
  /** mean over repeats, a repeat without a score counting 0; null when no repeat has a score */
  score: number | null;
  passed: number;
  failed: number;
  /** failing traces, worst first; empty when every repeat passed */
  failing: StoredTrace[];
}

const traceFailed = (t: StoredTrace) => t.status !== 'ok' || t.pass === false;

function aggregate(traces: StoredTrace[]): TaskAgg[] {
  // unfinished traces were never scored (a task cut off by a crash, then run again): left out
  const byKey = new Map<string, StoredTrace>();
  for (const t of traces) if (t.finalized) byKey.set(`${t.task_id}\u0000${t.repeat}`, t); // later seq wins (tracesOf order)
  const byTask = new Map<string, StoredTrace[]>();
  for (const t of byKey.values()) {
    const list = byTask.get(t.task_id) ?? [];
    list.push(t);
    byTask.set(t.task_id, list);
  }
  const out: TaskAgg[] = [];
  for (const [task_id, list] of byTask) {
    list.sort((a, b) => a.repeat - b.repeat);
    const scored = list.some((t) => t.score !== null);
    const failing = list.filter(traceFailed).sort((a, b) => (a.score ?? -1) - (b.score ?? -1) || a.repeat - b.repeat);
    out.push({
      task_id,
      traces: list,
      score: scored ? list.reduce((s, t) => s + (t.score ?? 0), 0) / list.length : null,
      passed: list.filter((t) => t.pass === true && t.status === 'ok').length,
      failed: failing.length,
      failing,
    });
  }
  return out.sort((a, b) => (a.task_id < b.task_id ? -1 : a.task_id > b.task_id ? 1 : 0));
}

/** worst first: lowest score (no score is the worst), then most failed repeats, then task id */
function worstFirst(a: TaskAgg, b: TaskAgg): number {
  return (a.score ?? -1) - (b.score ?? -1) || b.failed - a.failed || (a.task_id < b.task_id ? -1 : a.task_id > b.task_id ? 1 : 0);
}

const hashOf = (s: string) => createHash('sha1').update(s).digest('hex');

// ---------------------------------------------------------------------------------------------
// fitting items into a budget

/** A piece of the digest that can shrink: rendered at `levels` levels of detail (0 = full). */
interface Item {
  header: string;
  levels: number;
  render(level: number): string;
}

interface Section {
  title(shown: number): string[];
  items: Item[];
  /** the line saying which items were left out (null when none) */
  leftOut(left: Item[]): string | null;
}

/** the smallest share worth giving a task's transcript (it is cut in the middle below that) */
const MIN_TASK = 700;
/** the smallest share worth giving an experiment's evaluations (trainer, command) */
const MIN_EXPERIMENT = 350;

const fitItem = (item: Item, max: number): string => {
  let last = '';
  for (let l = 0; l < item.levels; l++) {
    last = item.render(l);
    if (last.length <= max) return last;
  }
  return cutMiddle(last, max);
};

/**
 * Lays out `top`, the sections and `bottom` within `max` characters: items are taken in
 * `priority` order while each can get at least min(its length, minItem); the characters left
 * are then shared among the items taken (water-filling: an item that needs less than an equal
 * share gives the rest back). Sections keep their own item order.
 */
function layout(
  max: number,
  minItem: number,
  top: string[],
  sections: Section[],
  priority: Item[],
  bottom: (chosen: Set<Item>) => string[],
): { text: string; complete: boolean } {
  const full = new Map<Item, string>();
  const fullOf = (i: Item) => {
    let s = full.get(i);
    if (s === undefined) full.set(i, (s = i.render(0)));
    return s;
  };
  const assemble = (chosen: Set<Item>, bodies: Map<Item, string>): string => {
    const lines = [...top];
    for (const s of sections) {
      const shown = s.items.filter((i) => chosen.has(i));
      lines.push('', ...s.title(shown.length));
      for (const i of shown) lines.push('', i.header, bodies.get(i) ?? '');
      const left = s.items.filter((i) => !chosen.has(i));
      const lo = left.length ? s.leftOut(left) : null;
      if (lo) lines.push('', lo);
    }
    lines.push('', ...bottom(chosen));
    return lines.join('\n');
  };
  const chosen = new Set<Item>();
  let minBodies = 0;
  for (const item of priority) {
    const need = Math.min(fullOf(item).length, minItem);
    chosen.add(item);
    if (assemble(chosen, new Map()).length + minBodies + need > max) {
      chosen.delete(item);
      break;
    }
    minBodies += need;
  }
  let avail = max - assemble(chosen, new Map()).length;
  const bodies = new Map<Item, string>();
  const order = [...chosen].sort((a, b) => fullOf(a).length - fullOf(b).length);
  order.forEach((item, k) => {
    const share = Math.max(0, Math.floor(avail / (order.length - k)));
    const body = fullOf(item).length <= share ? fullOf(item) : fitItem(item, share);
    bodies.set(item, body);
    avail -= body.length;
  });
  const text = assemble(chosen, bodies);
  const all = sections.every((s) => s.items.every((i) => chosen.has(i) && bodies.get(i) === fullOf(i)));
  return text.length <= max ? { text, complete: all } : { text: cutMiddle(text, max), complete: false };
}

/** `a, b, c` with the list cut (and the cut marked) past `max` characters */
function idList(ids: string[], max = 240): string {
  const s = ids.join(', ');
  if (s.length <= max) return s;
  let out = '';
  let n = 0;
  for (const id of ids) {
    const next = out ? `${out}, ${id}` : id;
    if (next.length > max) break;
    out = next;
    n++;
  }
  return `${out}${out ? ', ' : ''}… and ${ids.length - n} more`;
}

const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? '' : 's'}`;
const oneLine = (s: string, max = 300) => cutMiddle(s.replace(/\s*\n\s*/g, ' ⏎ ').trim(), max, 0.7);
const indent = (s: string, by: string) => s.split('\n').map((l) => (l ? by + l : l)).join('\n');

/** transcript detail levels: text blocks, JSON string values */
const TRANSCRIPT_LEVELS: TranscriptOptions[] = [
  { maxTextChars: 2000, maxValueChars: 200 },
  { maxTextChars: 1000, maxValueChars: 120 },
  { maxTextChars: 500, maxValueChars: 80 },
  { maxTextChars: 250, maxValueChars: 60 },
  { maxTextChars: 120, maxValueChars: 40, maxItems: 10 },
];

/** output tails kept per evaluation, by detail level (all of a stored tail at level 0) */
const TAIL_LEVELS = [Infinity, 4000, 2000, 1000, 500, 250, 120];

// ---------------------------------------------------------------------------------------------

export class StoreHistory implements RunHistory {
  private readonly db: DB;
  private readonly runId: string;
  private readonly kind: StoreHistoryOptions['kind'];
  private readonly incumbentSeq: number;
  private readonly read: StoreHistoryOptions['readFile'];

  constructor(opts: StoreHistoryOptions) {
    this.db = opts.db;
    this.runId = opts.runId;
    this.kind = opts.kind;
    this.incumbentSeq = opts.incumbentSeq;
    this.read = opts.readFile;
  }

  diff(seq: number): string | null {
    return getExperiment(this.db, this.runId, seq)?.diff ?? null;
  }

  failingTasks(seq: number): Array<{ task_id: string; score: number | null; trace_ids: string[] }> {
    return this.tasks(seq)
      .filter((t) => t.failed > 0)
      .sort(worstFirst)
      .map((t) => ({ task_id: t.task_id, score: t.score, trace_ids: t.failing.map((x) => x.id) }));
  }

  trace(id: string, maxChars = 12_000): string | null {
    const d = this.detail(id);
    if (!d) return null;
    const max = Number.isFinite(maxChars) ? Math.max(200, Math.floor(maxChars)) : Infinity;
    let text = '';
    const first = { maxTextChars: Number.isFinite(max) ? Math.max(2000, Math.floor(max / 4)) : 1_000_000, maxValueChars: 400 };
    for (const opts of [first, ...TRANSCRIPT_LEVELS.slice(1)]) {
      text = renderTranscript(d.trace, d.spans, opts).trimEnd();
      if (text.length <= max) return text;
    }
    return cutMiddle(text, max);
  }

  search(query: string, limit = 10): Array<{ trace_id: string; task_id: string; experiment_seq: number | null; snippet: string }> {
    const n = Number.isFinite(limit) ? Math.min(100, Math.max(1, Math.floor(limit))) : 10;
    // one hit per trace (its best span): a common word would otherwise fill the list with one trace's spans
    const hits = searchTraces(this.db, query, { runId: this.runId, role: 'task', limit: n * 5, snippetTokens: 16 });
    const out: Array<{ trace_id: string; task_id: string; experiment_seq: number | null; snippet: string }> = [];
    const seen = new Set<string>();
    for (const h of hits) {
      if (seen.has(h.trace_id)) continue;
      seen.add(h.trace_id);
      const where = h.span_kind ? `${h.span_kind} ${h.span_name}: ` : '';
      out.push({ trace_id: h.trace_id, task_id: h.task_id, experiment_seq: experimentSeqOfTrace(this.db, h.trace_id), snippet: where + h.snippet });
      if (out.length >= n) break;
    }
    return out;
  }

  async readFile(path: string): Promise<string | null> {
    if (typeof path !== 'string' || !path || path.includes('\0') || path.includes('\\')) return null;
    if (path.startsWith('/') || /^[A-Za-z]:/.test(path) || path.startsWith('~')) return null;
    const parts = path.split('/').filter((p) => p !== '' && p !== '.');
    if (parts.length === 0 || parts.some((p) => p === '..')) return null;
    return this.read(parts.join('/'));
  }

  hasTrace(id: string): boolean {
    return isTaskTraceOfRun(this.db, id, this.runId);
  }

  digest(tokens: number): string {
    if (Number.isNaN(tokens) || tokens <= 0) return '';
    const max = Math.floor(tokens * CHARS_PER_TOKEN);
    let text: string;
    if (this.kind === 'harness') {
      let d = this.harnessDigest(max, null);
      // short of room: the system prompt every task shares is left out of each transcript (the proposer has the harness files)
      const system = d.complete ? null : this.sharedSystemPrompt();
      if (system) d = this.harnessDigest(max, system);
      text = d.text;
    } else {
      text = this.evaluationDigest(max).text;
    }
    return text.length <= max ? text : cutMiddle(text, max);
  }

  // -------------------------------------------------------------------------------------------

  private detail(id: string) {
    if (!this.hasTrace(id)) return undefined;
    return getTrace(this.db, id);
  }

  private tasks(seq: number): TaskAgg[] {
    return aggregate(tracesOf(this.db, { runId: this.runId, experimentSeq: seq, role: 'task' }));
  }

  private run(): RunRow | undefined {
    return getRun(this.db, this.runId);
  }

  /** the most recent decided experiment after the incumbent that was not kept (what the last rejected change did) */
  private lastNotKept(): ExperimentRow | undefined {
    const exps = listExperiments(this.db, this.runId).filter(
      (e) => e.seq > this.incumbentSeq && e.status === 'decided' && e.decision !== 'kept' && e.decision !== 'baseline',
    );
    return exps[exps.length - 1];
  }

  /**
   * A task's transcript in the digest. The transcript's own header (task, status, feedback, tokens,
   * ids) is left out: the entry's header line names the task, score and trace, a second line gives
   * a status other than ok and the error, and the feedback is in the scoring span and the result line.
   */
  private transcriptItem(header: string, trace: StoredTrace, sharedSystem: string | null): Item {
    let d: ReturnType<typeof getTrace> | null = null;
    const extra: string[] = [];
    if (trace.status !== 'ok') extra.push(`status ${trace.status}`);
    if (trace.error) extra.push(`error: ${oneLine(trace.error, 300)}`);
    return {
      header: extra.length ? `${header}\n${extra.join(' · ')}` : header,
      levels: TRANSCRIPT_LEVELS.length,
      render: (level) => {
        d ??= getTrace(this.db, trace.id) ?? null;
        if (!d) return '(trace not found)';
        const spans = sharedSystem === null ? d.spans : d.spans.map((s) => withoutSystem(s, sharedSystem));
        const text = renderTranscript(d.trace, spans, TRANSCRIPT_LEVELS[level]).trimEnd();
        const where = `\ntrace ${trace.id} · group ${trace.group_id}`;
        const at = text.indexOf(where);
        if (at < 0) return text;
        const body = text.indexOf('\n', at + 1);
        return body < 0 ? text : text.slice(body + 1).replace(/^\n+/, '');
      },
    };
  }

  /**
   * The system prompt of the incumbent's task traces when the first model call of two different
   * tasks sends the same one (and it is long enough to matter); null otherwise.
   */
  private sharedSystemPrompt(): string | null {
    const first = firstModelInputs(this.db, this.runId, this.incumbentSeq, 8);
    const systemOf = (input: string): string | null => {
      try {
        const v = JSON.parse(input) as { system?: unknown };
        return typeof v?.system === 'string' ? v.system : null;
      } catch {
        return null;
      }
    };
    const a = first[0];
    const b = first.find((r) => a && r.task_id !== a.task_id);
    if (!a || !b) return null;
    const sa = systemOf(a.input);
    return sa !== null && sa.length >= 200 && sa === systemOf(b.input) ? sa : null;
  }

  private harnessDigest(max: number, sharedSystem: string | null): { text: string; complete: boolean } {
    const run = this.run();
    const inc = getExperiment(this.db, this.runId, this.incumbentSeq);
    const incTasks = this.tasks(this.incumbentSeq);
    const traces = incTasks.reduce((n, t) => n + t.traces.length, 0);
    const repeats = Math.max(0, ...incTasks.map((t) => t.traces.length));
    const failed = incTasks.filter((t) => t.failed > 0).sort(worstFirst);
    const passed = incTasks.filter((t) => t.failed === 0);
    const allTraces = incTasks.flatMap((t) => t.traces);
    const meanScore = allTraces.length ? allTraces.reduce((s, t) => s + (t.score ?? 0), 0) / allTraces.length : null;

    const top: string[] = [];
    top.push(`harness digest · run ${this.runId}${run ? ` · metric ${run.metric_name} (${run.direction})` : ''}`);
    top.push(
      inc
        ? `incumbent #${inc.seq} "${oneLine(inc.hypothesis, 200)}"${inc.metric !== null ? ` · ${run?.metric_name ?? 'metric'} ${fmtMetric(inc.metric)}` : ''}`
        : `incumbent #${this.incumbentSeq}: no such experiment in this run`,
    );
    top.push(
      `${plural(incTasks.length, 'task')}${repeats > 1 ? ` × up to ${repeats} repeats (${traces} traces)` : ''} · ${passed.length} passed · ${failed.length} failed · mean score ${fmtScore(meanScore)}`,
    );
    if (inc && incTasks.length === 0) {
      top.push(`no task traces recorded for incumbent #${inc.seq}`);
      for (const v of evaluationsOf(this.db, inc.id)) top.push(`  ${evalLine(v, run)}`);
    }

    // FAILED
    const failedItems = failed.map((t) => {
      const worst = t.failing[0]!;
      const others = t.failing.slice(1).map((x) => x.id);
      const header =
        `--- FAILED task ${t.task_id} · score ${fmtScore(t.score)} · failed ${t.failed}/${t.traces.length} repeat${t.traces.length === 1 ? '' : 's'}` +
        ` · trace ${worst.id}${others.length ? ` (other failing: ${idList(others, 120)})` : ''} ---`;
      return this.transcriptItem(header, worst, sharedSystem);
    });
    const failedIds = new Map(failedItems.map((i, k) => [i, failed[k]!.task_id]));
    const failedSection: Section = {
      title: () => [`== FAILED in incumbent #${this.incumbentSeq}: ${plural(failed.length, 'task')}, worst first ==`],
      items: failedItems,
      leftOut: (left) => `(${left.length} more failed task${left.length === 1 ? '' : 's'} not shown for lack of budget: ${idList(left.map((i) => failedIds.get(i)!))})`,
    };

    // REGRESSED
    const cand = this.lastNotKept();
    const candTasks = cand ? this.tasks(cand.seq) : [];
    const incPassed = new Map(passed.map((t) => [t.task_id, t]));
    const regressed = candTasks.filter((t) => t.failed > 0 && incPassed.has(t.task_id)).sort(worstFirst);
    const regressedIds = new Map<Item, string>();
    const regressedItems: Item[] = [];
    const candItems: Item[] = [];
    if (cand) {
      const evals = evaluationsOf(this.db, cand.id);
      if (candTasks.length === 0 && evals.length > 0) {
        // no task ran (the harness did not load, the edit was rejected, …): why, with the output tails
        candItems.push({
          header: `--- #${cand.seq} ran no task: its evaluations ---`,
          levels: TAIL_LEVELS.length,
          render: (level) => evals.map((v) => evalBlock(v, run, TAIL_LEVELS[level]!, { stdout: true, stderr: true, telemetry: false })).join('\n'),
        });
      }
      for (const t of regressed) {
        const was = incPassed.get(t.task_id)!;
        const worst = t.failing[0]!;
        const header =
          `--- REGRESSED task ${t.task_id} · incumbent score ${fmtScore(was.score)} (passed, trace ${was.traces[0]!.id})` +
          ` → #${cand.seq} score ${fmtScore(t.score)} (failed ${t.failed}/${t.traces.length}, trace ${worst.id}) ---`;
        const item = this.transcriptItem(header, worst, sharedSystem);
        regressedItems.push(item);
        regressedIds.set(item, t.task_id);
      }
    }
    const regressedSection: Section = {
      title: () =>
        cand
          ? [
              `== REGRESSED by #${cand.seq} (${cand.decision}, the most recent candidate not kept): "${oneLine(cand.hypothesis, 200)}" ==`,
              `#${cand.seq} vs incumbent #${this.incumbentSeq}: ${plural(regressed.length, 'task')} passed in #${this.incumbentSeq} and failed in #${cand.seq}` +
                `${candTasks.length ? ` (of ${candTasks.length} tasks it ran)` : ''}${cand.metric !== null ? ` · ${run?.metric_name ?? 'metric'} ${fmtMetric(cand.metric)}` : ''}`,
              ...(cand.reason ? [`reason: ${oneLine(cand.reason, 400)}`] : []),
            ]
          : [`== REGRESSED: no candidate decided since incumbent #${this.incumbentSeq} ==`],
      items: [...candItems, ...regressedItems],
      leftOut: (left) => {
        const tasks = left.filter((i) => regressedIds.has(i));
        const out: string[] = [];
        if (tasks.length) out.push(`${tasks.length} more regressed task${tasks.length === 1 ? '' : 's'} not shown for lack of budget: ${idList(tasks.map((i) => regressedIds.get(i)!))}`);
        if (left.length > tasks.length) out.push(`#${cand?.seq}'s evaluation output not shown for lack of budget`);
        return out.length ? `(${out.join('; ')})` : null;
      },
    };

    // PASSED: spread by a hash of the task id (deterministic, no clustering by id order)
    const sample = [...passed].sort((a, b) => (hashOf(a.task_id) < hashOf(b.task_id) ? -1 : 1));
    const passedIds = new Map<Item, string>();
    const passedItems = sample.map((t) => {
      const tr = t.traces[0]!;
      const item = this.transcriptItem(`--- PASSED task ${t.task_id} · score ${fmtScore(t.score)} · passed ${t.traces.length}/${t.traces.length} · trace ${tr.id} ---`, tr, sharedSystem);
      passedIds.set(item, t.task_id);
      return item;
    });
    const passedSection: Section = {
      title: (shown) => [
        passed.length === 0
          ? '== PASSED: none =='
          : `== PASSED: ${shown === passed.length ? `all ${passed.length}` : `a sample of ${shown} of ${passed.length}`} passed task${passed.length === 1 ? '' : 's'} ==`,
      ],
      items: passedItems,
      leftOut: (left) => `(${left.length} more passed task${left.length === 1 ? '' : 's'} not shown for lack of budget)`,
    };

    // priority: the candidate's own output, then failures and regressions ahead of passes (3 : 2 : 1)
    const priority: Item[] = [...candItems];
    const queues = [failedItems, regressedItems, passedItems].map((q) => [...q]);
    const pattern = [0, 1, 0, 2, 0, 1];
    for (let k = 0; queues.some((q) => q.length); k++) {
      const q = queues[pattern[k % pattern.length]!]!;
      if (q.length) priority.push(q.shift()!);
    }
    return layout(max, MIN_TASK, top, [failedSection, regressedSection, passedSection], priority, (chosen) => {
      const left = (items: Item[]) => items.filter((i) => !chosen.has(i)).length;
      const f = left(failedItems);
      const r = left(regressedItems);
      const p = left(passedItems);
      const out = f + r + p === 0 ? 'no task left out for lack of budget' : `tasks left out for lack of budget: ${f} failed, ${r} regressed, ${p} passed`;
      return [left(candItems) ? `${out}; #${cand?.seq}'s evaluation output left out` : out];
    });
  }

  private evaluationDigest(max: number): { text: string; complete: boolean } {
    const run = this.run();
    const trainer = this.kind === 'trainer';
    const exps = listExperiments(this.db, this.runId);
    const inc = exps.find((e) => e.seq === this.incumbentSeq);
    const decided = exps.filter((e) => e.status === 'decided' && e.seq > 0);
    const counts = new Map<string, number>();
    for (const e of decided) counts.set(e.decision ?? '?', (counts.get(e.decision ?? '?') ?? 0) + 1);
    const recent = exps
      .filter((e) => e.seq !== this.incumbentSeq && e.status === 'decided')
      .slice(-RECENT)
      .reverse();
    const metric = run?.metric_name ?? 'metric';

    const top: string[] = [];
    top.push(`${this.kind} digest · run ${this.runId} · metric ${metric}${run ? ` (${run.direction === 'minimize' ? 'lower' : 'higher'} is better)` : ''}${run?.self_reported ? ' · SELF-REPORTED by the command' : ''}`);
    top.push(
      inc
        ? `incumbent #${inc.seq} "${oneLine(inc.hypothesis, 200)}" · ${metric} ${fmtMetric(inc.metric)}`
        : `incumbent #${this.incumbentSeq}: no such experiment in this run`,
    );
    top.push(`${plural(decided.length, 'decided experiment')} after the baseline${counts.size ? ` (${[...counts].map(([k, v]) => `${v} ${k}`).join(', ')})` : ''}`);

    const item = (e: ExperimentRow, label: string): Item => {
      const evals = evaluationsOf(this.db, e.id);
      return {
        header: `--- ${label} #${e.seq} ${e.decision ?? e.status} · "${oneLine(e.hypothesis, 200)}" · ${metric} ${fmtMetric(e.metric)}${e.incumbent_metric !== null ? ` (incumbent then ${fmtMetric(e.incumbent_metric)})` : ''} ---`,
        levels: TAIL_LEVELS.length,
        render: (level) => {
          const lines: string[] = [];
          if (e.reason) lines.push(`reason: ${oneLine(e.reason, 600)}`);
          if (!evals.length) lines.push('(no evaluation recorded)');
          evals.forEach((v, k) => {
            // short of room, the telemetry of the first evaluation stands for its repeats
            const telemetry = level < 2 || k === 0;
            lines.push(
              evalBlock(v, run, TAIL_LEVELS[level]!, {
                telemetry,
                curvePoints: level < 3 ? 12 : 6,
                stdout: !trainer || (v.status !== 'ok' && !v.stderr_tail.trim()),
                stderr: !trainer || v.status !== 'ok',
              }),
            );
            if (!telemetry && v.telemetry) lines.push('  (the telemetry of this repeat left out for lack of budget)');
          });
          return lines.join('\n');
        },
      };
    };
    const incItems = inc ? [item(inc, 'incumbent')] : [];
    const recentItems = recent.map((e) => item(e, 'recent'));
    const seqOf = new Map(recentItems.map((i, k) => [i, recent[k]!.seq]));
    const sections: Section[] = [
      { title: () => [`== INCUMBENT ==`], items: incItems, leftOut: () => '(the incumbent not shown for lack of budget)' },
      {
        title: (shown) => [`== RECENT experiments, newest first (${shown} of the last ${recent.length}) ==`],
        items: recentItems,
        leftOut: (left) => `(${plural(left.length, 'more recent experiment')} not shown for lack of budget: ${left.map((i) => `#${seqOf.get(i)}`).join(', ')})`,
      },
    ];
    // the newest experiment first (when it crashed, why is what the next proposal needs most), then the incumbent
    const priority = [...recentItems.slice(0, 1), ...incItems, ...recentItems.slice(1)];
    return layout(max, MIN_EXPERIMENT, top, sections, priority, (chosen) => {
      const left = [...incItems, ...recentItems].filter((i) => !chosen.has(i)).length;
      return [left === 0 ? 'no experiment left out for lack of budget' : `experiments left out for lack of budget: ${left}`];
    });
  }
}

/** how many recent experiments the trainer and command digests show besides the incumbent */
const RECENT = 6;

/** a model span whose request's system prompt is `system`, with the prompt replaced by a marker */
function withoutSystem(s: SpanRecord, system: string): SpanRecord {
  if (s.kind !== 'model' || typeof s.input !== 'object' || s.input === null || (s.input as { system?: unknown }).system !== system) return s;
  return { ...s, input: { ...(s.input as object), system: `[… the system prompt every task shares, ${system.length} characters, left out for lack of budget …]` } };
}

function evalLine(v: EvaluationRow, run: RunRow | undefined): string {
  const bits = [`eval ${v.repeat + 1} (seed ${v.seed}): ${v.status}`, `${run?.metric_name ?? 'metric'} ${fmtMetric(v.metric)}`, `command ${fmtDuration(v.command_ms)}`];
  if (v.evaluator_ms) bits.push(`evaluator ${fmtDuration(v.evaluator_ms)}`);
  if (v.exit_code !== null && v.exit_code !== 0) bits.push(`exit ${v.exit_code}`);
  return bits.join(' · ') + (v.reason ? ` · ${oneLine(v.reason, 400)}` : '');
}

function parseTelemetry(v: EvaluationRow): Record<string, unknown> | null {
  if (!v.telemetry) return null;
  try {
    const t = JSON.parse(v.telemetry);
    return t && typeof t === 'object' && !Array.isArray(t) ? t : null;
  } catch {
    return null;
  }
}

/** the loss curve as `step loss` pairs, `points` of them spread evenly over the curve (first and last included) */
function curveNumbers(curve: unknown, points: number): string | null {
  if (!Array.isArray(curve) || curve.length === 0) return null;
  const pts = curve.filter((p): p is number[] => Array.isArray(p) && p.length >= 3 && typeof p[2] === 'number');
  if (!pts.length) return null;
  const n = Math.min(points, pts.length);
  const idx = n === 1 ? [pts.length - 1] : Array.from({ length: n }, (_, k) => Math.round((k * (pts.length - 1)) / (n - 1)));
  return idx.map((i) => `${pts[i]![0]}: ${fmtMetric(pts[i]![2])}`).join(' · ');
}

function evalBlock(
  v: EvaluationRow,
  run: RunRow | undefined,
  tailChars: number,
  show: { telemetry: boolean; stdout: boolean; stderr: boolean; curvePoints?: number },
): string {
  const lines = [evalLine(v, run)];
  if (show.telemetry) {
    const t = parseTelemetry(v);
    lines.push(...telemetryText(t).map((l) => `  ${l.trim()}`));
    const train = t?.train as Record<string, unknown> | undefined;
    const nums = curveNumbers(train?.loss_curve, show.curvePoints ?? 12);
    if (nums) lines.push(`  loss by step: ${nums}`);
    // anything else the kind recorded (not what `show`'s lines already cover)
    const other = Object.entries(t ?? {}).filter(([k, x]) => !['train', 'eval', 'metrics'].includes(k) && x !== null && x !== undefined);
    if (other.length) lines.push(`  telemetry: ${cutMiddle(JSON.stringify(Object.fromEntries(other)), 400)}`);
  }
  const tailOf = (label: string, text: string) => {
    const s = text.replace(/\s+$/, '');
    if (!s.trim()) return;
    lines.push(`  ${label} tail:`);
    lines.push(indent(cutHead(s, tailChars), '    '));
  };
  if (show.stderr && tailChars > 0) tailOf('stderr', v.stderr_tail);
  if (show.stdout && tailChars > 0) tailOf('stdout', v.stdout_tail);
  return lines.join('\n');
}
