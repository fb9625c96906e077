/**
 * `autoagent runs`: name, tag, annotate, delete and prune runs.
 *
 *   runs [list]                 the runs with their label and tags (--json)
 *   runs rename RUN LABEL       the run's label ("" clears it); its id never changes
 *   runs tag RUN TAG… [--remove]  add (or remove) tags
 *   runs note RUN TEXT          the run's notes ("" clears them)
 *   runs rm RUN --yes           delete a run: its branch, its candidate refs, its work folder, its rows
 *   runs prune [--yes]          the runs that hold nothing: failed ones, and those that ran no experiment
 *                               (finished with --experiments 0, or interrupted before one); a dry run without --yes
 *
 * Label, tags and notes are the same columns the dashboard edits (schema 9), outside the ledger
 * chain. A running run (its process alive) is never deleted.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { type DB, type RunRow, findRun, listRuns, listExperiments, runAnnotations, setRunAnnotations, deleteRunRows } from '../traces/index.ts';
import { parseAnnotations } from './ui/queries.ts';
import { effectiveStatus } from './loop.ts';
import { UsageError, UserError } from '../base/errors.ts';
import { cleanWork } from './workspace.ts';
import { gitRaw } from '../base/git.ts';
import { fmtDuration, table } from '../base/format.ts';

export interface RunsIO {
  out: (text: string) => void;
}

/** A run's annotations after `patch` (checked as the dashboard checks them). */
export function annotateRun(db: DB, ref: string, patch: Record<string, unknown>): RunRow {
  const run = findRun(db, ref);
  setRunAnnotations(db, run.id, parseAnnotations(patch));
  return findRun(db, run.id);
}

export function runsData(db: DB) {
  return listRuns(db).map((r) => {
    const exps = listExperiments(db, r.id);
    const a = runAnnotations(r);
    return {
      id: r.id, label: a.label, tags: a.tags, status: effectiveStatus(r), experiments: exps.filter((e) => e.seq > 0).length,
      kept: exps.filter((e) => e.decision === 'kept').length, elapsed_ms: r.elapsed_ms, created_at: r.created_at, branch: r.branch,
    };
  });
}

export function runsText(db: DB): string {
  const rows = runsData(db);
  if (!rows.length) return 'no runs yet: start one with `autoagent run study.yaml`';
  return table(['run', 'label', 'tags', 'status', 'experiments', 'kept', 'elapsed'],
    rows.map((r) => [r.id, r.label ?? '', r.tags.join(','), r.status, String(r.experiments), String(r.kept), fmtDuration(r.elapsed_ms)]));
}

/** Why `prune` would remove this run, or null to keep it. */
export function pruneReason(db: DB, run: RunRow): string | null {
  const status = effectiveStatus(run);
  if (status === 'running') return null;
  const exps = listExperiments(db, run.id);
  const ran = exps.filter((e) => e.seq > 0).length;
  if (status === 'failed') return `failed${run.stop_reason ? `: ${run.stop_reason.split('\n')[0]!.slice(0, 80)}` : ''}`;
  if (ran === 0) return status === 'interrupted' ? 'interrupted before any experiment' : status === 'stopped' ? 'stopped before any experiment' : 'ran no experiment';
  return null;
}

/** Deletes a run: its branch and candidate refs (when its repository is there), its work folder, and every row of it. */
export async function deleteRun(db: DB, run: RunRow): Promise<string[]> {
  if (effectiveStatus(run) === 'running') throw new UserError(`run ${run.id} is running (process ${run.owner_pid}); stop it first (Ctrl-C)`);
  const done: string[] = [];
  if (existsSync(run.repo)) {
    const refs = (await gitRaw(run.repo, ['for-each-ref', '--format=%(refname)', `refs/heads/${run.branch}`, `refs/autoagent/${run.id}/`]).catch(() => Buffer.from(''))).toString().split('\n').filter(Boolean);
    for (const ref of refs) {
      await gitRaw(run.repo, ['update-ref', '-d', ref]).catch(() => undefined);
    }
    if (refs.includes(`refs/heads/${run.branch}`)) done.push(`branch ${run.branch}`);
    if (refs.length > done.length) done.push(`${refs.length - done.length} candidate ref(s)`);
    cleanWork(join(run.repo, '.autoagent'), run.id);
  }
  const rows = deleteRunRows(db, run.id);
  done.push(`${rows.experiments} experiment(s)`, `${rows.traces} trace(s)`);
  return done;
}

export async function runsRm(db: DB, ref: string, o: { yes?: boolean; json?: boolean }, io: RunsIO): Promise<number> {
  const run = findRun(db, ref);
  if (effectiveStatus(run) === 'running') throw new UserError(`run ${run.id} is running (process ${run.owner_pid}); stop it first (Ctrl-C)`);
  if (!o.yes) {
    const n = listExperiments(db, run.id).filter((e) => e.seq > 0).length;
    throw new UsageError(`runs rm deletes run ${run.id} (${n} experiment(s), branch ${run.branch}) for good; pass --yes to do it`);
  }
  const removed = await deleteRun(db, run);
  io.out(o.json ? JSON.stringify({ deleted: run.id, removed }, null, 2) + '\n' : `deleted run ${run.id}: ${removed.join(', ')}\n`);
  return 0;
}

export async function runsPrune(db: DB, o: { yes?: boolean; json?: boolean }, io: RunsIO): Promise<number> {
  const victims = listRuns(db).map((r) => ({ run: r, why: pruneReason(db, r) })).filter((x): x is { run: RunRow; why: string } => x.why !== null);
  const deleted: Array<{ id: string; why: string; removed: string[] }> = [];
  if (o.yes) for (const v of victims) deleted.push({ id: v.run.id, why: v.why, removed: await deleteRun(db, v.run) });
  if (o.json) {
    io.out(JSON.stringify({ dry_run: !o.yes, runs: victims.map((v) => ({ id: v.run.id, why: v.why, removed: deleted.find((d) => d.id === v.run.id)?.removed ?? null })) }, null, 2) + '\n');
    return 0;
  }
  if (!victims.length) {
    io.out('nothing to prune: no failed run, none without experiments\n');
    return 0;
  }
  const lines = victims.map((v) => `  ${v.run.id}  ${v.why}`);
  io.out(o.yes
    ? `deleted ${victims.length} run(s) (branch, refs, rows):\n${lines.join('\n')}\n`
    : `would delete ${victims.length} run(s) (dry run; pass --yes to delete them):\n${lines.join('\n')}\n`);
  return 0;
}

/** `runs tag RUN TAG…`: adds the tags (or removes them with --remove). */
export function runsTag(db: DB, ref: string, tags: string[], remove: boolean): RunRow {
  const run = findRun(db, ref);
  const have = runAnnotations(run).tags;
  const next = remove ? have.filter((t) => !tags.includes(t)) : [...have, ...tags];
  return annotateRun(db, run.id, { tags: next });
}
