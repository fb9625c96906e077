/** What the dashboard (src/ui/) reads from the store besides the views: trace counts and change detection. */
import type { DB } from './db.ts';
import type { RunActivity } from './types.ts';

/** Per experiment seq, a run's task-agent traces and how many of them failed (status not ok, or not passed). */
export function traceCountsByExperiment(db: DB, runId: string): Map<number, { traces: number; failed: number }> {
  const rows = db.prepare(
    `SELECT experiment_seq AS seq, count(*) AS n, sum(status != 'ok' OR pass = 0) AS failed FROM traces
     WHERE run_id = ? AND role = 'task' GROUP BY experiment_seq`,
  ).all(runId) as Array<{ seq: number | null; n: number; failed: number | null }>;
  return new Map(rows.filter((r) => r.seq !== null).map((r) => [r.seq!, { traces: r.n, failed: r.failed ?? 0 }]));
}

/** How far a run has got: experiments, decided ones, the last seq, evaluations and traces (compared between polls). */
export function runActivity(db: DB, runId: string): RunActivity {
  const e = db.prepare(
    `SELECT count(*) AS n, sum(status = 'decided') AS decided, max(seq) AS last FROM experiments WHERE run_id = ?`,
  ).get(runId) as { n: number; decided: number | null; last: number | null };
  const v = db.prepare('SELECT count(*) AS n FROM evaluations v JOIN experiments e ON e.id = v.experiment_id WHERE e.run_id = ?').get(runId) as { n: number };
  const t = db.prepare('SELECT count(*) AS n FROM traces WHERE run_id = ?').get(runId) as { n: number };
  return { experiments: e.n, decided: e.decided ?? 0, last_seq: e.last, evaluations: v.n, traces: t.n };
}

/** How many experiments of each run are decided, in the order of `runIds`. */
export function decidedCounts(db: DB, runIds: string[]): number[] {
  const decided = db.prepare("SELECT count(*) AS n FROM experiments WHERE run_id = ? AND status = 'decided'");
  return runIds.map((id) => (decided.get(id) as { n: number }).n);
}
