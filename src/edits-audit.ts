/**
 * `autoagent audit --edits [run]`: did each kept change do what its evidence said? Per kept change,
 * from the store alone (no git, no evaluation):
 *  - the claim: hypothesis, expected effect, the traces the proposer cited and their tasks;
 *  - the evidence: the change's evaluations against its incumbent's (Δ, margin, repeats);
 *  - flips (harness runs): per task, the repeats that passed in the incumbent and in the change;
 *    a task flips fail → pass when it failed in most of the incumbent's repeats and passed in most
 *    of the change's (pass → fail the other way round), with a one-sided Fisher exact p (how
 *    likely a flip this clear is by chance from the same pass rate) and whether every repeat agrees;
 *  - a verdict line: `cited tasks fixed 2/2`, `fixed none of the cited tasks; gains elsewhere
 *    (t4, t5)`, `no cited traces`, …;
 *  - the cost change (harness runs): tokens and dollars per task run, incumbent → change;
 *  - the memorisation check's verdict, and the ablation's test Δ (`finalize --ablate`) when one exists.
 * Command and trainer runs have no tasks: flips, cited tasks and cost per task do not apply, and
 * the audit says so; the per-repeat evidence and the ablation remain.
 */
import {
  listExperiments, evaluationsOfRun, getTrace, proposalOf, tracesOf,
  type DB, type RunRow, type ExperimentRow,
} from '../traces/index.ts';
import { incumbentMetrics, okMetrics, ownEvaluations } from './acceptance.ts';
import { mean } from '../base/stats.ts';
import { fmtDelta, fmtMetric } from '../base/format.ts';
import { latestAblation, type AblationChange } from './ablate.ts';
import { contaminationNotApplicable, storedContamination, type Contamination } from './contamination.ts';

export interface PassCount {
  passed: number;
  runs: number;
}

export interface TaskFlip {
  task: string;
  from: 'fail' | 'pass';
  to: 'fail' | 'pass';
  before: PassCount;
  after: PassCount;
  /** one-sided Fisher exact test: the chance of a change at least this clear between two samples of one pass rate */
  p: number;
  /** every repeat of the incumbent one way and every repeat of the change the other */
  consistent: boolean;
  /** one of the cited tasks */
  cited: boolean;
}

export interface CitedTask {
  task: string;
  before: PassCount | null;
  after: PassCount | null;
  outcome: 'fixed' | 'still failing' | 'already passing' | 'broken' | 'not evaluated';
}

export interface ChangeAudit {
  seq: number;
  kept_commit: string | null;
  incumbent: number;
  proposer: string;
  hypothesis: string;
  expected_effect: string | null;
  cited_traces: Array<{ id: string; task_id: string | null; experiment_seq: number | null; found: boolean }>;
  cited_tasks: string[];
  /** per cited task: how it did in the incumbent and in the change */
  cited_outcomes: CitedTask[];
  evidence: {
    incumbent_metric: number | null;
    metric: number | null;
    /** higher is better */
    improvement: number | null;
    margin: number | null;
    values: number[];
    incumbent_values: number[];
  };
  /** harness runs: the tasks that flipped (null: the run has no tasks) */
  flips: TaskFlip[] | null;
  counts: { tasks: number; fixed: number; broken: number; unchanged: number } | null;
  verdict: string;
  /** harness runs: tokens and dollars per task run, incumbent → change */
  cost: { tokens_per_task: [number, number]; dollars_per_task: [number, number] } | null;
  contamination: Contamination | null;
  /** from the latest `finalize --ablate`: validation Δ against test Δ */
  ablation: Pick<AblationChange, 'validation_improvement' | 'test_improvement' | 'margin' | 'verdict' | 'text' | 'revert'> | null;
}

export interface EditsAudit {
  run: string;
  kind: string;
  metric: string;
  direction: 'minimize' | 'maximize';
  /** what does not apply to this run, in words */
  not_applicable: string[];
  changes: ChangeAudit[];
  /** candidates that were not kept but that the memorisation check flagged (warned or rejected) */
  flagged: Array<{ seq: number; decision: string | null; verdict: string; summary: string }>;
  ablation: { created_at: string; forced: boolean; repeats: number; final: number } | null;
}

// ---------------------------------------------------------------------------------------------

const logFact = (() => {
  const cache = [0];
  return (n: number): number => {
    for (let i = cache.length; i <= n; i++) cache.push(cache[i - 1]! + Math.log(i));
    return cache[n]!;
  };
})();

/**
 * One-sided Fisher exact p: with `a` passes in `n1` runs before and `c` in `n2` after, the chance
 * (same pass rate, margins fixed) of `c` or more passes after (`up`), or `c` or fewer (`!up`).
 */
export function fisherOneSided(a: number, n1: number, c: number, n2: number, up: boolean): number {
  const k = a + c; // total passes
  const N = n1 + n2;
  const logChoose = (n: number, r: number) => logFact(n) - logFact(r) - logFact(n - r);
  const pmf = (x: number) => Math.exp(logChoose(n2, x) + logChoose(n1, k - x) - logChoose(N, k));
  let p = 0;
  const lo = Math.max(0, k - n1);
  const hi = Math.min(k, n2);
  for (let x = lo; x <= hi; x++) if (up ? x >= c : x <= c) p += pmf(x);
  return Math.min(1, p);
}

interface TaskRuns {
  /** per task: one entry per repeat (the last finished trace of that repeat) */
  byTask: Map<string, Array<{ pass: boolean; tokens: number; cost: number }>>;
}

/** The task runs of experiment `seq`'s evaluations: per task and repeat, its last finished trace. */
function taskRuns(db: DB, runId: string, seq: number): TaskRuns {
  const last = new Map<string, { task: string; pass: boolean; tokens: number; cost: number }>();
  for (const t of tracesOf(db, { runId, experimentSeq: seq, role: 'task' })) {
    if (!t.finalized) continue;
    last.set(`${t.task_id}\u0000${t.repeat}`, { task: t.task_id, pass: t.status === 'ok' && t.pass === true, tokens: t.input_tokens + t.output_tokens, cost: t.cost_usd });
  }
  const byTask = new Map<string, Array<{ pass: boolean; tokens: number; cost: number }>>();
  for (const r of last.values()) byTask.set(r.task, [...(byTask.get(r.task) ?? []), r]);
  return { byTask };
}

const countOf = (runs: Array<{ pass: boolean }> | undefined): PassCount | null => (runs?.length ? { passed: runs.filter((r) => r.pass).length, runs: runs.length } : null);
const state = (c: PassCount): 'pass' | 'fail' | 'mixed' => (2 * c.passed > c.runs ? 'pass' : 2 * c.passed < c.runs ? 'fail' : 'mixed');

function contaminationOf(e: ExperimentRow): Contamination | null {
  const c = storedContamination(e.contamination);
  return c === 'unreadable' ? null : c;
}

const list = (xs: string[], max = 6) => xs.slice(0, max).join(', ') + (xs.length > max ? `, +${xs.length - max} more` : '');

function verdictOf(citedTasks: string[], outcomes: CitedTask[], flips: TaskFlip[]): string {
  const fixed = flips.filter((f) => f.to === 'pass');
  const broken = flips.filter((f) => f.to === 'fail');
  const fixedElsewhere = fixed.filter((f) => !f.cited).map((f) => f.task);
  const brokeText = broken.length ? `; broke ${list(broken.map((f) => f.task))}` : '';
  if (!citedTasks.length) {
    return `no cited traces${fixed.length ? `; fixed ${list(fixed.map((f) => f.task))}` : '; no task flipped'}${brokeText}`;
  }
  const fixedCited = outcomes.filter((o) => o.outcome === 'fixed').length;
  if (fixedCited > 0) {
    return `cited tasks fixed ${fixedCited}/${citedTasks.length}${fixedElsewhere.length ? `; also fixed ${list(fixedElsewhere)}` : ''}${brokeText}`;
  }
  const why = outcomes.every((o) => o.outcome === 'already passing') ? ' (they already passed in the incumbent)' : '';
  return `fixed none of the cited tasks${why}${fixedElsewhere.length ? `; gains elsewhere (${list(fixedElsewhere)})` : '; no task flipped'}${brokeText}`;
}

/** The edits audit of a run, from the store. */
export function auditEdits(db: DB, run: RunRow): EditsAudit {
  const exps = listExperiments(db, run.id);
  const evals = evaluationsOfRun(db, run.id);
  const tasksApply = run.kind === 'harness';
  const notApplicable: string[] = [];
  if (!tasksApply) {
    notApplicable.push(`a ${run.kind} run has no tasks: per-task flips, cited tasks and cost per task do not apply; shown: each change's evaluations against its incumbent's (and its test contribution after \`autoagent finalize --ablate\`)`);
    notApplicable.push(contaminationNotApplicable(run.kind)!);
  }
  const ablation = latestAblation(db, run.id);
  const ablated = new Map((ablation?.changes ?? []).map((c) => [c.seq, c]));
  const runsCache = new Map<number, TaskRuns>();
  const runsOf = (seq: number) => {
    let r = runsCache.get(seq);
    if (!r) runsCache.set(seq, (r = taskRuns(db, run.id, seq)));
    return r;
  };

  const changes: ChangeAudit[] = exps.filter((e) => e.decision === 'kept').map((e) => {
    const { inc: incumbent, metrics: incumbentValues } = incumbentMetrics(exps, evals, e);
    const inc = incumbent!;
    const p = proposalOf(e);
    const citedTraces = (p?.cited ?? []).map((id) => {
      const t = getTrace(db, String(id))?.trace;
      return { id: String(id), task_id: t && t.role !== 'proposal' ? t.task_id : null, experiment_seq: t?.experiment_seq ?? null, found: Boolean(t) };
    });
    const citedTasks = [...new Set(citedTraces.map((c) => c.task_id).filter((x): x is string => x !== null))];
    const evidence = {
      incumbent_metric: e.incumbent_metric, metric: e.metric, improvement: e.improvement, margin: e.margin,
      values: okMetrics(ownEvaluations(evals.get(e.id), e)), incumbent_values: incumbentValues,
    };
    const a = ablated.get(e.seq);
    const base = {
      seq: e.seq, kept_commit: e.kept_commit, incumbent: inc.seq, proposer: e.proposer, hypothesis: e.hypothesis,
      expected_effect: p?.expected_effect ?? null, cited_traces: citedTraces, cited_tasks: citedTasks, evidence,
      contamination: contaminationOf(e),
      ablation: a ? { validation_improvement: a.validation_improvement, test_improvement: a.test_improvement, margin: a.margin, verdict: a.verdict, text: a.text, revert: a.revert } : null,
    };
    if (!tasksApply) {
      return { ...base, cited_outcomes: [], flips: null, counts: null, cost: null, verdict: `no tasks to check (a ${run.kind} run): kept on its evaluations alone` };
    }
    const before = runsOf(inc.seq).byTask;
    const after = runsOf(e.seq).byTask;
    const flips: TaskFlip[] = [];
    let tasks = 0;
    for (const [task, runs] of after) {
      const b = countOf(before.get(task));
      const c = countOf(runs)!;
      if (!b) continue;
      tasks++;
      const sb = state(b);
      const sc = state(c);
      if (sb === sc || sb === 'mixed' || sc === 'mixed') continue;
      const up = sc === 'pass';
      flips.push({
        task, from: sb, to: sc, before: b, after: c, p: fisherOneSided(b.passed, b.runs, c.passed, c.runs, up),
        consistent: up ? b.passed === 0 && c.passed === c.runs : b.passed === b.runs && c.passed === 0, cited: citedTasks.includes(task),
      });
    }
    flips.sort((x, y) => (x.to === y.to ? (x.task < y.task ? -1 : 1) : x.to === 'pass' ? -1 : 1));
    const outcomes: CitedTask[] = citedTasks.map((task) => {
      const b = countOf(before.get(task));
      const c = countOf(after.get(task));
      if (!b || !c) return { task, before: b, after: c, outcome: 'not evaluated' };
      const f = flips.find((x) => x.task === task);
      const outcome = f ? (f.to === 'pass' ? 'fixed' : 'broken') : state(b) === 'pass' ? 'already passing' : 'still failing';
      return { task, before: b, after: c, outcome };
    });
    const per = (m: Map<string, Array<{ tokens: number; cost: number }>>) => {
      const all = [...m.values()].flat();
      return { tokens: all.length ? mean(all.map((r) => r.tokens)) : 0, cost: all.length ? mean(all.map((r) => r.cost)) : 0 };
    };
    const cb = per(before);
    const ca = per(after);
    const fixed = flips.filter((f) => f.to === 'pass').length;
    const broken = flips.length - fixed;
    return {
      ...base, cited_outcomes: outcomes, flips, counts: { tasks, fixed, broken, unchanged: tasks - flips.length },
      verdict: verdictOf(citedTasks, outcomes, flips),
      cost: { tokens_per_task: [cb.tokens, ca.tokens], dollars_per_task: [cb.cost, ca.cost] },
    };
  });

  const flagged = exps.filter((e) => e.decision !== 'kept' && e.contamination).map((e) => {
    const c = contaminationOf(e);
    return { seq: e.seq, decision: e.decision, verdict: c?.verdict ?? 'warn', summary: c?.summary ?? '(unreadable record)' };
  });
  return {
    run: run.id, kind: run.kind, metric: run.metric_name, direction: run.direction, not_applicable: notApplicable, changes, flagged,
    ablation: ablation ? { created_at: ablation.created_at, forced: ablation.forced, repeats: ablation.repeats, final: ablation.final.seq } : null,
  };
}

// ---------------------------------------------------------------------------------------------
// text

const frac = (c: PassCount | null) => (c ? `${c.passed}/${c.runs}` : '—');

function flipText(f: TaskFlip): string {
  return `${f.task} ${frac(f.before)} → ${frac(f.after)} passed${f.consistent ? ', every repeat' : ''}, p ${f.p < 0.001 ? '< 0.001' : f.p.toFixed(3)}`;
}

const perTask = (x: number) => (x >= 100 ? Math.round(x).toLocaleString('en-US') : fmtMetric(x));

export function formatEditsAudit(a: EditsAudit): string {
  const lines: string[] = [];
  lines.push(`edits audit of run ${a.run} (${a.kind}, ${a.changes.length} kept change${a.changes.length === 1 ? '' : 's'})`);
  for (const n of a.not_applicable) lines.push(`note: ${n}`);
  if (!a.changes.length) lines.push('', 'no change was kept: there is nothing to audit');
  for (const c of a.changes) {
    lines.push('', `#${c.seq}  ${c.hypothesis.split('\n')[0]}   (${c.proposer}; against #${c.incumbent})`);
    const claim: string[] = [];
    if (a.kind === 'harness') {
      claim.push(c.cited_traces.length
        ? `cited ${c.cited_traces.length} trace(s) of task(s) ${c.cited_tasks.length ? c.cited_tasks.join(', ') : '(none in the store)'}`
        : 'cited no traces');
    } else if (c.cited_traces.length) claim.push(`cited ${c.cited_traces.map((t) => t.id).join(', ')}`);
    if (c.expected_effect) claim.push(`expected: ${c.expected_effect}`);
    if (claim.length) lines.push(`    claim:     ${claim.join(' · ')}`);
    const ev = c.evidence;
    const evals = (xs: number[]) => `${xs.map(fmtMetric).join(', ') || '—'} (${xs.length} evaluation${xs.length === 1 ? '' : 's'})`;
    lines.push(`    evidence:  ${a.metric} ${fmtMetric(ev.incumbent_metric)} → ${fmtMetric(ev.metric)}, Δ ${fmtDelta(ev.improvement, a.direction)} > margin ${fmtMetric(ev.margin)} · this: ${evals(ev.values)} · incumbent #${c.incumbent}: ${evals(ev.incumbent_values)}`);
    if (c.counts && c.flips) {
      const fixed = c.flips.filter((f) => f.to === 'pass');
      const broken = c.flips.filter((f) => f.to === 'fail');
      lines.push(`    flips:     ${c.counts.fixed} fail → pass, ${c.counts.broken} pass → fail, ${c.counts.unchanged} unchanged of ${c.counts.tasks} task(s)`);
      for (const f of fixed) lines.push(`                 fixed  ${flipText(f)}${f.cited ? '  (cited)' : ''}`);
      for (const f of broken) lines.push(`                 broke  ${flipText(f)}${f.cited ? '  (cited)' : ''}`);
      const quiet = c.cited_outcomes.filter((o) => o.outcome !== 'fixed' && o.outcome !== 'broken');
      for (const o of quiet) lines.push(`                 cited  ${o.task} ${frac(o.before)} → ${frac(o.after)} passed: ${o.outcome}`);
    }
    if (c.cost) {
      const [tb, ta] = c.cost.tokens_per_task;
      const [db, da] = c.cost.dollars_per_task;
      lines.push(`    cost:      ${perTask(tb)} → ${perTask(ta)} tokens per task run, $${db.toFixed(6)} → $${da.toFixed(6)} per task run`);
    }
    if (c.contamination) lines.push(`    !! memorisation check (${c.contamination.verdict}): ${c.contamination.summary}`);
    if (c.ablation) {
      lines.push(`    test:      validation Δ ${fmtDelta(c.ablation.validation_improvement, a.direction)} · test Δ ${c.ablation.test_improvement === null ? '—' : `${fmtDelta(c.ablation.test_improvement, a.direction)} (margin ${fmtMetric(c.ablation.margin)})`}: ${c.ablation.text}`);
    }
    lines.push(`    verdict:   ${c.verdict}`);
  }
  if (a.flagged.length) {
    lines.push('', 'flagged by the memorisation check, not kept:');
    for (const f of a.flagged) lines.push(`  #${f.seq} ${f.decision ?? 'pending'} (${f.verdict}): ${f.summary}`);
  }
  if (!a.ablation && a.changes.length) lines.push('', `does it generalize? \`autoagent finalize --ablate ${a.run}\` measures each kept change on the sealed test split`);
  return lines.join('\n');
}
