/**
 * Aggregates over the store that the views read: what a run's traces spent (the loop's budget
 * guard, `show`, the report, `finalize --ablate`'s plan), per-task scores, and the evaluations
 * `autoagent eval` stored. Read-only; any connection (the dashboard's is read-only).
 */
import type { DB } from './db.ts';
import type { EvalListing, ExperimentSpend, RoleSpend, TraceSpend } from './types.ts';

/** Tokens (input + output) and dollars of every trace of a run, of both roles. */
export function runTraceTotals(db: DB, runId: string): { tokens: number; cost_usd: number } {
  const row = db.prepare('SELECT COALESCE(SUM(input_tokens + output_tokens), 0) t, COALESCE(SUM(cost_usd), 0) c FROM traces WHERE run_id = ?').get(runId) as { t: number; c: number };
  return { tokens: row.t, cost_usd: row.c };
}

/** Per task, the mean score of an experiment's traces (a trace without a score counts 0). */
export function taskMeanScores(db: DB, runId: string, seq: number): Map<string, number> {
  const rows = db.prepare('SELECT task_id, AVG(COALESCE(score, 0)) s FROM traces WHERE run_id = ? AND experiment_seq = ? GROUP BY task_id').all(runId, seq) as Array<{ task_id: string; s: number }>;
  return new Map(rows.map((r) => [r.task_id, r.s]));
}

/** A run's traces summed per role: the task-agent's (`task`) and the meta-agent's (`proposal`). */
export function spendByRole(db: DB, runId: string): { task: RoleSpend; proposal: RoleSpend } {
  const rows = db.prepare(
    `SELECT role, count(*) AS traces, coalesce(sum(input_tokens + output_tokens), 0) AS tokens, coalesce(sum(cost_usd), 0) AS cost_usd
     FROM traces WHERE run_id = ? GROUP BY role`,
  ).all(runId) as Array<{ role: string } & RoleSpend>;
  const of = (role: string): RoleSpend => {
    const r = rows.find((x) => x.role === role);
    return { traces: r?.traces ?? 0, tokens: r?.tokens ?? 0, cost_usd: r?.cost_usd ?? 0 };
  };
  return { task: of('task'), proposal: of('proposal') };
}

/** A run's task-agent traces summed. */
export function taskSpend(db: DB, runId: string): TraceSpend {
  return db.prepare(
    `SELECT count(*) AS traces, coalesce(sum(input_tokens), 0) AS input, coalesce(sum(output_tokens), 0) AS output,
       coalesce(sum(cache_read_tokens), 0) AS cacheRead, coalesce(sum(cache_write_tokens), 0) AS cacheWrite, coalesce(sum(cost_usd), 0) AS cost
     FROM traces WHERE run_id = ? AND role = 'task'`,
  ).get(runId) as TraceSpend;
}

/** A run's task-agent traces summed per experiment (seq ≥ 0: not the test split's), by seq. */
export function experimentSpend(db: DB, runId: string): ExperimentSpend[] {
  return db.prepare(
    `SELECT experiment_seq AS seq, count(*) AS traces, sum(input_tokens) AS input, sum(output_tokens) AS output,
       sum(cache_read_tokens) AS cacheRead, sum(cost_usd) AS cost
     FROM traces WHERE run_id = ? AND role = 'task' AND experiment_seq >= 0 GROUP BY experiment_seq ORDER BY experiment_seq`,
  ).all(runId) as ExperimentSpend[];
}

/** How many task runs of a run ended, and their mean tokens and dollars (0 when none). */
export function finishedTaskRunCost(db: DB, runId: string): { n: number; tok: number; usd: number } {
  return db.prepare("SELECT count(*) n, coalesce(avg(input_tokens + output_tokens), 0) tok, coalesce(avg(cost_usd), 0) usd FROM traces WHERE run_id = ? AND role = 'task' AND finalized = 1")
    .get(runId) as { n: number; tok: number; usd: number };
}

/** The evaluations `autoagent eval` stored (group ids eval-…, outside any run), newest first. */
export function evalListings(db: DB): EvalListing[] {
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
