/**
 * The memorisation check: does a candidate's diff write benchmark task data — a task's input, its
 * id, or its expected answer — into the editable files? Computed on the host by autoagent (the
 * locked side) from the benchmark's own files; nothing here is shown to the proposer: a rejected
 * candidate's reason in the ledger says only that the check rejected it, never which task or
 * which answer matched (so the check is no oracle for guessed answers).
 *
 * During a run the candidate is checked against the VALIDATION split (study
 * `acceptance.contamination: warn | reject`, default warn); the test split only at finalize, on the
 * final incumbent's diff against the base, so it stays sealed during the run.
 *
 * What counts (word n-grams over the lines the diff ADDS; text lowercased and split into words and
 * single punctuation marks, so `What is 3+3?` is `what is 3 + 3 ?`):
 *  - input: a 10-token run of a task's input (an input field, a file placed in its scratch
 *    folder), or the whole input when it is 5 to 9 tokens long;
 *  - answer: a 10-token run of a long expected answer, a whole answer of 4 to 9 tokens, or a short
 *    answer (under 4 tokens: `42`) within 40 tokens of that same task's input or id in the added
 *    text (a question and its answer written together);
 *  - id: the task's id when it is distinctive (3 tokens or more, or 6 characters: `train/1234`).
 * A run of tokens that occurs in more than one task (a shared instruction template, boilerplate)
 * belongs to no task and never counts.
 *
 * Command and trainer studies have no tasks: the check does not apply to them.
 */
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Study } from './study.ts';
import type { RunPaths } from './kinds/types.ts';
import { loadBenchmark } from '../benchmarks/index.ts';
import type { Benchmark } from '../benchmarks/types.ts';
import { dataRoot } from './kinds/harness.ts';
import * as g from '../base/git.ts';

export type ContaminationSplit = 'val' | 'test';

export interface ContaminationHit {
  task: string;
  field: 'input' | 'answer' | 'id';
  /** repo-relative path of the editable file */
  path: string;
  /** 1-based line in the candidate's file */
  line: number;
  /** the matched text as written (at most 80 characters) */
  text: string;
}

/** What is recorded on an experiment (experiments.contamination) or a finalization. */
export interface Contamination {
  split: ContaminationSplit;
  /** warn: recorded and shown; reject: the candidate was rejected before evaluation */
  verdict: 'warn' | 'reject';
  /** the tasks whose data the diff writes */
  tasks: string[];
  /** at most MAX_HITS, in file order */
  hits: ContaminationHit[];
  /** one line for people: which tasks, what, where */
  summary: string;
}

/** An experiment's stored check (experiments.contamination): null when none, 'unreadable' when the JSON is damaged. */
export function storedContamination(text: string | null): Contamination | 'unreadable' | null {
  if (!text) return null;
  try {
    return JSON.parse(text) as Contamination;
  } catch {
    return 'unreadable';
  }
}

/** What the check knows of one task. */
export interface TaskReference {
  id: string;
  inputs: string[];
  answers: string[];
}

const N = 10;
const MIN_INPUT = 5;
const MIN_ANSWER = 4;
const WINDOW = 40;
const MAX_HITS = 50;
const SEP = '\u0001';
/** a token that matches nothing: between two added blocks that are not adjacent */
const GAP = '\u0000';

export function tokens(text: string): string[] {
  return text.toLowerCase().match(/[\p{L}\p{N}]+|[^\s\p{L}\p{N}]/gu) ?? [];
}

/** every string (or number) inside an input field, an answer key entry, … */
function leaves(v: unknown, out: string[] = [], depth = 0): string[] {
  if (typeof v === 'string') out.push(v);
  else if (typeof v === 'number' || typeof v === 'boolean') out.push(String(v));
  else if (v && typeof v === 'object' && depth < 8) for (const x of Array.isArray(v) ? v : Object.values(v)) leaves(x, out, depth + 1);
  return out;
}

/** The tasks of one split of a benchmark, as the check reads them. */
export function referencesOf(b: Pick<Benchmark, 'tasks' | 'answers'>, split: ContaminationSplit): TaskReference[] {
  return b.tasks.filter((t) => t.split === split).map((t) => ({
    id: t.id,
    inputs: [...leaves(t.input), ...Object.values(t.files ?? {})],
    answers: leaves(b.answers.get(t.id)),
  }));
}

interface Pattern {
  task: number;
  field: ContaminationHit['field'];
}

/** The n-gram index of one split's tasks. */
export class ReferenceIndex {
  /** length → key → owner (null: shared by several tasks, ignored) */
  private readonly byLength = new Map<number, Map<string, Pattern | null>>();
  /** short answers (under MIN_ANSWER tokens), per task */
  private readonly shortAnswers = new Map<number, string[][]>();

  constructor(readonly refs: TaskReference[]) {
    refs.forEach((r, i) => {
      const own = new Map<string, Pattern>();
      const add = (toks: string[], field: Pattern['field'], min: number) => {
        if (toks.length < min) return false;
        if (toks.length <= N) own.set(`${toks.length}:${toks.join(SEP)}`, { task: i, field });
        else for (let p = 0; p + N <= toks.length; p++) own.set(`${N}:${toks.slice(p, p + N).join(SEP)}`, { task: i, field });
        return true;
      };
      for (const text of r.inputs) add(tokens(text), 'input', MIN_INPUT);
      for (const text of r.answers) {
        const t = tokens(text);
        if (!add(t, 'answer', MIN_ANSWER) && t.length > 0) this.shortAnswers.set(i, [...(this.shortAnswers.get(i) ?? []), t]);
      }
      const idToks = tokens(r.id);
      if (idToks.length >= 3 || (r.id.length >= 6 && idToks.length > 0)) add(idToks, 'id', 1);
      // a key two tasks share is a template, not a task's data
      for (const [key, pat] of own) {
        const len = Number(key.slice(0, key.indexOf(':')));
        const k = key.slice(key.indexOf(':') + 1);
        let m = this.byLength.get(len);
        if (!m) this.byLength.set(len, (m = new Map()));
        const prev = m.get(k);
        if (prev === undefined) m.set(k, pat);
        else if (prev !== null && prev.task !== pat.task) m.set(k, null);
      }
    });
  }

  get size(): number {
    return this.refs.length;
  }

  /** The hits in the lines a diff adds (`added`: per file, its added lines with their line numbers). */
  scan(added: AddedText[]): ContaminationHit[] {
    const hits: ContaminationHit[] = [];
    const seen = new Set<string>();
    const lengths = [...this.byLength.keys()].sort((a, b) => b - a);
    for (const file of added) {
      const toks: string[] = [];
      const lineOf: number[] = [];
      const raw: string[] = [];
      let last = -1;
      for (const l of file.lines) {
        if (last >= 0 && l.n !== last + 1) (toks.push(GAP), lineOf.push(l.n), raw.push(''));
        for (const t of tokens(l.text)) (toks.push(t), lineOf.push(l.n), raw.push(l.text));
        last = l.n;
      }
      const push = (task: number, field: Pattern['field'], at: number) => {
        const key = `${task}\u0000${field}\u0000${file.path}`;
        if (seen.has(key)) return;
        seen.add(key);
        const text = raw[at]!.trim();
        hits.push({ task: this.refs[task]!.id, field, path: file.path, line: lineOf[at]!, text: text.length > 80 ? text.slice(0, 79) + '…' : text });
      };
      const anchors: Array<{ task: number; from: number; to: number }> = [];
      for (let p = 0; p < toks.length; p++) {
        for (const len of lengths) {
          if (p + len > toks.length) continue;
          const pat = this.byLength.get(len)!.get(toks.slice(p, p + len).join(SEP));
          if (!pat) continue;
          push(pat.task, pat.field, p);
          if (pat.field !== 'answer') anchors.push({ task: pat.task, from: p, to: p + len });
        }
      }
      // a short answer counts next to its own task's input or id
      for (const a of anchors) {
        for (const ans of this.shortAnswers.get(a.task) ?? []) {
          const lo = Math.max(0, a.from - WINDOW);
          const hi = Math.min(toks.length, a.to + WINDOW);
          for (let p = lo; p + ans.length <= hi; p++) {
            if (ans.every((t, k) => toks[p + k] === t)) {
              push(a.task, 'answer', p);
              break;
            }
          }
        }
      }
    }
    return hits;
  }
}

export interface AddedText {
  path: string;
  /** the lines of the new file that the old one does not have, with their 1-based numbers */
  lines: Array<{ n: number; text: string }>;
}

/** The lines each edit adds: a line of the new file counts unless the old file has it (as many times). */
export function addedLines(before: Record<string, string | undefined>, edits: Array<{ path: string; content: string }>): AddedText[] {
  const out: AddedText[] = [];
  for (const e of edits) {
    const old = new Map<string, number>();
    for (const l of (before[e.path] ?? '').split('\n')) old.set(l, (old.get(l) ?? 0) + 1);
    const lines: AddedText['lines'] = [];
    e.content.split('\n').forEach((text, i) => {
      const c = old.get(text) ?? 0;
      if (c > 0) old.set(text, c - 1);
      else if (text.trim()) lines.push({ n: i + 1, text });
    });
    if (lines.length) out.push({ path: e.path, lines });
  }
  return out;
}

const FIELD_ORDER: ContaminationHit['field'][] = ['input', 'answer', 'id'];

/** The verdict on some added text, or null when it writes no task's data. */
export function judgeContamination(index: ReferenceIndex, added: AddedText[], split: ContaminationSplit, verdict: 'warn' | 'reject'): Contamination | null {
  const hits = index.scan(added);
  if (!hits.length) return null;
  const tasks = [...new Set(hits.map((h) => h.task))];
  const byTask = tasks.slice(0, 5).map((t) => {
    const mine = hits.filter((h) => h.task === t);
    const fields = FIELD_ORDER.filter((f) => mine.some((h) => h.field === f));
    return `${t} (${fields.join(', ')}; ${mine[0]!.path} line ${mine[0]!.line})`;
  });
  const splitName = split === 'val' ? 'validation' : 'test';
  const summary = `the diff writes data of ${tasks.length} ${splitName} task${tasks.length === 1 ? '' : 's'} into the editable files: ${byTask.join(', ')}${tasks.length > 5 ? `, and ${tasks.length - 5} more` : ''}`;
  return { split, verdict, tasks, hits: hits.slice(0, MAX_HITS), summary };
}

/** The reason a rejected candidate gets in the ledger (the proposer reads it): which task or answer matched is left out on purpose. */
export const CONTAMINATION_REJECTION = 'rejected by the memorisation check: the diff writes validation task data (inputs, ids or expected answers) into the editable files (acceptance.contamination: reject)';

/** The benchmark of a harness study, loaded as its kind loads it (a folder next to the study, or a built-in suite). */
export async function studyBenchmark(study: Study, repo: string, studyDir: string, dataRootOverride?: string): Promise<Benchmark> {
  const s = study.harness!;
  const base = join(repo, studyDir);
  const data = dataRootOverride ? resolve(dataRootOverride) : dataRoot(s.data, base);
  const local = resolve(base, s.benchmark);
  return loadBenchmark(existsSync(join(local, 'benchmark.yaml')) ? local : s.benchmark, { dataRoot: data });
}

/** Why the check does not apply to a study, or null when it does. */
export function contaminationNotApplicable(kind: string): string | null {
  return kind === 'harness' ? null : `the memorisation check does not apply: a ${kind} run has no benchmark tasks`;
}

/**
 * The loop's check of each proposal (src/loop.ts proposeNext): the study's validation tasks,
 * loaded once on first use. `check` returns the verdict to record, and the rejection reason when
 * the study rejects.
 */
export class ContaminationGuard {
  private index: Promise<ReferenceIndex | null> | null = null;

  /** `note`: told once when the check cannot run (the benchmark does not load) */
  constructor(private readonly study: Study, private readonly paths: RunPaths, private readonly note: (line: string) => void = () => undefined) {}

  private load(): Promise<ReferenceIndex | null> {
    if (this.study.kind !== 'harness' || !this.study.harness) return Promise.resolve(null);
    this.index ??= studyBenchmark(this.study, this.paths.repo, this.paths.studyDir)
      .then((b) => new ReferenceIndex(referencesOf(b, 'val')))
      .catch((e: unknown) => {
        this.note(`note: the memorisation check is off for this session: the benchmark did not load (${(e as Error).message.split('\n')[0]})`);
        return null;
      });
    return this.index;
  }

  async check(files: Record<string, string>, edits: Array<{ path: string; content: string }>): Promise<{ record: Contamination; rejection: string | null } | null> {
    const index = await this.load();
    if (!index || index.size === 0) return null;
    const verdict = this.study.acceptance.contamination;
    const c = judgeContamination(index, addedLines(files, edits), 'val', verdict);
    return c ? { record: c, rejection: verdict === 'reject' ? CONTAMINATION_REJECTION : null } : null;
  }
}

/** The test split at finalize: the final incumbent's editable files against the base's. */
export async function checkCommitAgainst(
  repo: string, base: string, commit: string, isEditable: (p: string) => boolean, index: ReferenceIndex, split: ContaminationSplit,
): Promise<Contamination | null> {
  if (base === commit) return null;
  const changed = (await g.gitRaw(repo, ['diff', '--name-only', '-z', '--no-renames', base, commit, '--'])).toString().split('\0').filter((p) => p && isEditable(p));
  const before: Record<string, string | undefined> = {};
  const edits: Array<{ path: string; content: string }> = [];
  const at = new Set(await g.trackedFiles(repo, commit));
  const was = new Set(await g.trackedFiles(repo, base));
  for (const p of changed) {
    if (!at.has(p)) continue;
    before[p] = was.has(p) ? await g.showFile(repo, base, p) : undefined;
    edits.push({ path: p, content: await g.showFile(repo, commit, p) });
  }
  return judgeContamination(index, addedLines(before, edits), split, 'warn');
}
