/** Small lookups of traces by id (the CLI's `traces ID`, the meta-agent's history tools). */
import type { DB } from './db.ts';
import type { TraceRecord } from './types.ts';

/** Ids of traces starting with `prefix`, at most `limit` of them. */
export function traceIdsByPrefix(db: DB, prefix: string, limit: number): string[] {
  return (db.prepare('SELECT id FROM traces WHERE substr(id, 1, ?) = ? LIMIT ?').all(prefix.length, prefix, limit) as Array<{ id: string }>).map((r) => r.id);
}

/** The experiment seq of a trace (null: outside a run, or no such trace). */
export function experimentSeqOfTrace(db: DB, id: string): number | null {
  const row = db.prepare('SELECT experiment_seq FROM traces WHERE id = ?').get(id) as Pick<TraceRecord, 'experiment_seq'> | undefined;
  return row?.experiment_seq ?? null;
}

/** Whether `id` is a task-agent trace of run `runId`. */
export function isTaskTraceOfRun(db: DB, id: string, runId: string): boolean {
  return db.prepare(`SELECT 1 FROM traces WHERE id = ? AND run_id = ? AND role = 'task'`).get(id, runId) !== undefined;
}

/**
 * The input (JSON text) of the first model call of each task-agent trace of an experiment, by
 * task, repeat and trace, at most `limit` of them.
 */
export function firstModelInputs(db: DB, runId: string, seq: number, limit: number): Array<{ task_id: string; input: string }> {
  return db.prepare(
    `SELECT t.task_id, s.input FROM traces t JOIN spans s ON s.trace_id = t.id
     WHERE t.run_id = ? AND t.experiment_seq = ? AND t.role = 'task' AND s.kind = 'model'
       AND s.seq = (SELECT s2.seq FROM spans s2 WHERE s2.trace_id = t.id AND s2.kind = 'model' ORDER BY s2.started_at, s2.seq LIMIT 1)
     ORDER BY t.task_id, t.repeat, t.seq LIMIT ?`,
  ).all(runId, seq, limit) as Array<{ task_id: string; input: string }>;
}
