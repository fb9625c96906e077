/** `autoagent evals`: the evaluations `autoagent eval` stored (group ids eval-…), newest first. */
import type { DB } from '../traces/index.ts';
import { fmtMetric, table } from '../base/format.ts';

export interface EvalListing {
  /** the eval's id (its traces' group id): `autoagent traces ID` opens them */
  id: string;
  benchmark: string;
  split: string;
  harness: string;
  /** distinct tasks evaluated */
  tasks: number;
  /** tasks (traces) that ended: score is over them */
  finished: number;
  passed: number;
  /** status != ok or pass = false */
  failed: number;
  /** mean score over the finished traces, one without a score counting 0; null when none finished */
  score: number | null;
  tokens: number;
  cost_usd: number;
  /** ISO time of the first task's start */
  started_at: string;
  wall_ms: number;
}

export function evalsData(db: DB): EvalListing[] {
  const rows = db.prepare(
    `SELECT group_id AS id, min(benchmark) AS benchmark, min(split) AS split, min(harness) AS harness,
       count(DISTINCT task_id) AS tasks, sum(finalized) AS finished, sum(pass = 1) AS passed,
       sum(finalized = 1 AND (status != 'ok' OR pass = 0)) AS failed,
       avg(CASE WHEN finalized = 1 THEN coalesce(score, 0) END) AS score,
       sum(input_tokens + output_tokens) AS tokens, sum(cost_usd) AS cost_usd,
       min(started_at) AS started, max(ended_at) AS ended, min(seq) AS first
     FROM traces WHERE run_id IS NULL AND role = 'task' AND group_id LIKE 'eval-%'
     GROUP BY group_id ORDER BY first DESC`,
  ).all() as Array<Omit<EvalListing, 'started_at' | 'wall_ms'> & { started: number; ended: number; first: number }>;
  return rows.map(({ started, ended, first: _first, ...r }) => ({
    ...r,
    passed: r.passed ?? 0,
    failed: r.failed ?? 0,
    started_at: new Date(started).toISOString(),
    wall_ms: Math.max(0, ended - started),
  }));
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
