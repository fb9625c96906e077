/** `autoagent audit`, `finalize`, `report` and `export langfuse`: the commands that explain and check a finished run. */
import { existsSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { openDb, type DB, type RunRow } from '../traces/index.ts';
import { resolveRunPaths } from './run-paths.ts';
import { UsageError } from '../base/errors.ts';
import { defaultDbPath } from './loop.ts';
import { repoRoot } from '../base/git.ts';
import { pickRun } from './views.ts';
import { auditRun, formatAudit } from './audit.ts';
import { finalizeRun, UNTRUSTED_SPLIT } from './finalize.ts';
import { renderReport } from './report/html.ts';
import { renderPng } from './report/png.ts';
import { StreamReporter } from './report.ts';
import { auditEdits, formatEditsAudit } from './edits-audit.ts';
import { ablateRun, formatAblation } from './ablate.ts';

export interface IOLike {
  out: (t: string) => void;
  err: (t: string) => void;
  errIsTTY: boolean;
}

export async function store(db?: string) {
  const path = db ? resolve(db) : defaultDbPath(await repoRoot(process.cwd()));
  if (!existsSync(path)) throw new UsageError(`${path}: no autoagent store here (run a study first, or pass --db PATH)`);
  return { db: openDb(path), path };
}

/** the named (or latest) run, re-based onto the repository the store lives in now (a copied repo is itself) */
export async function placedRun(db: DB, path: string, runId: string | undefined, io: IOLike): Promise<RunRow> {
  const place = await resolveRunPaths(pickRun(db, runId), path);
  if (place.note) io.err(place.note + '\n');
  return place.run;
}

export async function auditCommand(runId: string | undefined, o: { db?: string; json?: boolean; rescore?: boolean; data?: string; expectHead?: string; edits?: boolean }, io: IOLike): Promise<number> {
  const { db, path } = await store(o.db);
  try {
    const run = await placedRun(db, path, runId, io);
    const r = await auditRun(db, run, { rescore: o.rescore !== false, dataRoot: o.data, expectHead: o.expectHead });
    if (o.edits) {
      // what each kept change did; the exit code is the chain's alone, never a verdict's
      const a = auditEdits(db, run);
      const chain = { ok: r.ok, problems: r.problems, ledger: r.ledger };
      io.out(o.json ? JSON.stringify({ ...a, chain }, null, 2) + '\n'
        : `${formatEditsAudit(a)}\n\nchain of evidence: ${r.ok ? 'ok (every check of `autoagent audit` passed)' : `BROKEN — ${r.problems.length} problem(s):`}\n${r.problems.map((p) => `  - ${p}\n`).join('')}`);
      return r.ok ? 0 : 1;
    }
    io.out(o.json ? JSON.stringify(r, null, 2) + '\n' : formatAudit(r) + '\n');
    return r.ok ? 0 : 1;
  } finally {
    db.close();
  }
}

export async function finalizeCommand(
  runId: string | undefined,
  o: { db?: string; json?: boolean; force?: boolean; branch?: string | false; squash?: boolean; data?: string; unsafeNoSandbox?: boolean; all?: boolean; ablate?: boolean; repeats?: number },
  io: IOLike,
): Promise<number> {
  if (!o.ablate && o.repeats !== undefined) throw new UsageError('--repeats applies to --ablate');
  if (o.ablate && (o.squash || typeof o.branch === 'string')) throw new UsageError('--ablate writes no clean branch: drop --squash / --branch');
  const { db, path } = await store(o.db);
  try {
    const run = await placedRun(db, path, runId, io);
    if (o.ablate) {
      const r = await ablateRun(db, run, {
        force: o.force, repeats: o.repeats, all: Boolean(o.all), dataRoot: o.data, unsafeNoSandbox: Boolean(o.unsafeNoSandbox),
        reporter: new StreamReporter(io.err, io.errIsTTY),
      });
      io.out(o.json ? JSON.stringify(r, null, 2) + '\n' : formatAblation(run, r) + '\n');
      return 0;
    }
    const r = await finalizeRun(db, run, {
      force: o.force, branch: o.branch, squash: o.squash, dataRoot: o.data, unsafeNoSandbox: Boolean(o.unsafeNoSandbox), all: Boolean(o.all),
      reporter: new StreamReporter(io.err, io.errIsTTY),
    });
    io.out(o.json ? JSON.stringify(r, null, 2) + '\n'
      : `finalized ${r.run}${r.forced ? ' (forced)' : ''}: ${run.metric_name} on the sealed test split = ${r.metric} (validation ${r.validation ?? '—'}) at ${r.commit.slice(0, 10)}\n`
        + `${r.scored.text}\n`
        + (r.untrusted_split ? `WARNING: ${UNTRUSTED_SPLIT}\n` : '')
        + (r.contamination ? `WARNING: memorisation check: ${r.contamination.summary}\n` : '')
        + (r.branch ? `clean branch: ${r.branch}\n` : ''));
    return 0;
  } finally {
    db.close();
  }
}

export async function reportCommand(runId: string | undefined, o: { db?: string; output?: string; png?: string }, io: IOLike): Promise<number> {
  const { db, path } = await store(o.db);
  try {
    const run = await placedRun(db, path, runId, io);
    const out = resolve(o.output ?? `autoagent-report-${run.id}.html`);
    writeFileSync(out, renderReport(db, run));
    io.out(`report: ${out}\n`);
    if (o.png) {
      const png = resolve(o.png);
      await renderPng(out, png);
      io.out(`picture: ${png}\n`);
    }
    return 0;
  } finally {
    db.close();
  }
}

export async function exportLangfuseCommand(runId: string | undefined, o: { db?: string; json?: boolean }, io: IOLike): Promise<number> {
  // the Langfuse and OpenTelemetry SDKs take seconds to load: only this command loads them
  const { exportToLangfuse, langfuseOptionsFromEnv } = await import('./export/langfuse.ts');
  const opts = langfuseOptionsFromEnv();
  const { db } = await store(o.db);
  try {
    const run = pickRun(db, runId);
    const r = await exportToLangfuse(db, run.id, { ...opts, onProgress: (n, total) => io.err(`\rexported ${n}/${total} traces`) });
    io.err('\n');
    io.out(o.json ? JSON.stringify(r, null, 2) + '\n' : `exported run ${run.id} to ${opts.host}: ${r.traces} traces, ${r.observations} observations, ${r.scores} scores\n`);
    return 0;
  } finally {
    db.close();
  }
}
