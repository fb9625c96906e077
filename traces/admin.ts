/** Store administration: what `autoagent runs rm` deletes. */
import type { DB } from './db.ts';

/**
 * Deletes every row of a run in one transaction: its traces (with their spans and search index
 * entries), evaluations, promotions, exports, ablations, finalizations, experiments and the run.
 * Returns how many experiments and traces went.
 */
export function deleteRunRows(db: DB, runId: string): { experiments: number; traces: number } {
  return db.transaction(() => {
    const traceIds = `SELECT id FROM traces WHERE run_id = @id`;
    db.prepare(`DELETE FROM trace_fts WHERE rowid IN (SELECT seq FROM spans WHERE trace_id IN (${traceIds})) OR rowid IN (SELECT -seq FROM traces WHERE run_id = @id)`).run({ id: runId });
    db.prepare(`DELETE FROM spans WHERE trace_id IN (${traceIds})`).run({ id: runId });
    const traces = db.prepare('DELETE FROM traces WHERE run_id = @id').run({ id: runId }).changes;
    db.prepare('DELETE FROM evaluations WHERE experiment_id IN (SELECT id FROM experiments WHERE run_id = @id)').run({ id: runId });
    for (const t of ['promotions', 'exports', 'ablations', 'finalizations']) db.prepare(`DELETE FROM ${t} WHERE run_id = @id`).run({ id: runId });
    const experiments = db.prepare('DELETE FROM experiments WHERE run_id = @id').run({ id: runId }).changes;
    db.prepare('DELETE FROM runs WHERE id = @id').run({ id: runId });
    return { experiments, traces };
  })();
}
