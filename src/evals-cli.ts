/** `autoagent evals`: the evaluations `autoagent eval` stored (group ids eval-…), newest first. */
import { evalListings, type DB, type EvalListing } from '../traces/index.ts';
import { fmtMetric, table } from '../base/format.ts';

export type { EvalListing } from '../traces/index.ts';

/** the evaluations `autoagent eval` stored, newest first */
export function evalsData(db: DB): EvalListing[] {
  return evalListings(db);
}

export function evalsText(db: DB): string {
  const evals = evalsData(db);
  if (!evals.length) return 'no evaluations in this store (autoagent eval --harness DIR --bench NAME stores one)';
  return table(['eval', 'benchmark', 'harness', 'tasks', 'score', 'passed', 'failed', 'cost $', 'date'], evals.map((e) => [
    e.id,
    `${e.benchmark}/${e.split}`,
    e.harness,
    e.finished < e.tasks ? `${e.finished}/${e.tasks}` : String(e.tasks),
    fmtMetric(e.score),
    String(e.passed),
    String(e.failed),
    e.cost_usd.toFixed(4),
    e.started_at.slice(0, 16).replace('T', ' '),
  ])) + '\n\ntranscripts: autoagent traces EVAL-ID [--failed]';
}
