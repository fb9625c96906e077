/**
 * `autoagent blame <file> [--run ID] [--json]`: who wrote each line of a file at the run's head,
 * and why. `git blame` over the run branch from its base commit (lines older than the base are
 * the base's); each kept commit maps to its experiment through the ledger (experiments.kept_commit),
 * which gives the hypothesis, the evidence (Δ, margin, evaluations against the incumbent's) and
 * the traces the proposer cited. `--json`: one entry per line, `{"line", "text", "commit",
 * "experiment"}`, `experiment` null for lines from the base (or from a commit that is no kept
 * experiment, which `autoagent audit` reports).
 */
import { isAbsolute, relative, resolve } from 'node:path';
import { listExperiments, evaluationsOfRun, getTrace, proposalOf, type DB, type RunRow, type ExperimentRow } from '../traces/index.ts';
import { UsageError, UserError } from '../base/errors.ts';
import * as g from '../base/git.ts';
import { incumbentMetrics, ownEvaluations } from './acceptance.ts';
import { fmtDelta, fmtMetric } from '../base/format.ts';
import { placedRun, store, type IOLike } from './audit-cli.ts';

export interface BlameExperiment {
  seq: number;
  commit: string;
  hypothesis: string;
  expected_effect: string | null;
  metric: number | null;
  incumbent_metric: number | null;
  /** higher is better */
  improvement: number | null;
  margin: number | null;
  evaluations: number;
  incumbent_evaluations: number;
  cited: Array<{ id: string; task_id: string | null }>;
}

export interface BlameLine {
  line: number;
  text: string;
  commit: string;
  experiment: BlameExperiment | null;
}

export interface BlameResult {
  run: string;
  path: string;
  head: string;
  base: string;
  lines: BlameLine[];
}

/** `git blame --line-porcelain base..head -- path`: commit, boundary flag and text of each line. */
async function gitBlame(repo: string, base: string, head: string, path: string): Promise<Array<{ commit: string; boundary: boolean; text: string }>> {
  const out = (await g.gitRaw(repo, ['blame', '--line-porcelain', `${base}..${head}`, '--', path])).toString('utf8');
  const lines: Array<{ commit: string; boundary: boolean; text: string }> = [];
  let cur: { commit: string; boundary: boolean } | null = null;
  for (const l of out.split('\n')) {
    if (cur === null) {
      const m = /^([0-9a-f]{40}) \d+ \d+/.exec(l);
      if (m) cur = { commit: m[1]!, boundary: false };
      continue;
    }
    if (l.startsWith('\t')) {
      lines.push({ ...cur, text: l.slice(1) });
      cur = null;
    } else if (l === 'boundary') cur.boundary = true;
  }
  return lines;
}

function experimentOf(db: DB, exps: ExperimentRow[], e: ExperimentRow, evals: ReturnType<typeof evaluationsOfRun>): BlameExperiment {
  const { inc, metrics } = incumbentMetrics(exps, evals, e);
  const ok = ownEvaluations(evals.get(e.id), e).filter((v) => v.status === 'ok').length;
  const p = proposalOf(e);
  return {
    seq: e.seq, commit: e.kept_commit!, hypothesis: e.hypothesis, expected_effect: p?.expected_effect ?? null,
    metric: e.metric, incumbent_metric: e.incumbent_metric, improvement: e.improvement, margin: e.margin,
    evaluations: ok, incumbent_evaluations: inc ? metrics.length : 0,
    cited: (p?.cited ?? []).map((id) => ({ id: String(id), task_id: getTrace(db, String(id))?.trace.task_id ?? null })),
  };
}

/** The repo-relative path a user means: relative to the current folder when that lands in the repository, else as given. */
async function repoPath(run: RunRow, file: string, head: string): Promise<string> {
  const tracked = new Set(await g.trackedFiles(run.repo, head));
  const candidates: string[] = [];
  const abs = isAbsolute(file) ? file : resolve(process.cwd(), file);
  const rel = relative(run.repo, abs).split('\\').join('/');
  if (rel && !rel.startsWith('..') && !isAbsolute(rel)) candidates.push(rel);
  if (!isAbsolute(file)) candidates.push(file.replace(/^\.\//, ''));
  const hit = candidates.find((c) => tracked.has(c));
  if (!hit) throw new UsageError(`${file}: not a file at the head of run ${run.id} (${run.branch} at ${head.slice(0, 8)}); give a path in ${run.repo}`);
  return hit;
}

export async function blameRun(db: DB, run: RunRow, file: string): Promise<BlameResult> {
  const head = await g.revParse(run.repo, `refs/heads/${run.branch}`);
  if (!head) throw new UserError(`the run branch ${run.branch} is missing from ${run.repo}: there is no head to blame (see \`autoagent audit ${run.id}\`)`);
  const path = await repoPath(run, file, head);
  const exps = listExperiments(db, run.id);
  const evals = evaluationsOfRun(db, run.id);
  const byCommit = new Map(exps.filter((e) => e.decision === 'kept' && e.kept_commit).map((e) => [e.kept_commit!, e]));
  const cache = new Map<string, BlameExperiment | null>();
  const lines = (await gitBlame(run.repo, run.base_commit, head, path)).map((l, i) => {
    let x = cache.get(l.commit);
    if (x === undefined) {
      const e = l.boundary ? undefined : byCommit.get(l.commit);
      cache.set(l.commit, (x = e ? experimentOf(db, exps, e, evals) : null));
    }
    return { line: i + 1, text: l.text, commit: l.commit, experiment: x };
  });
  return { run: run.id, path, head, base: run.base_commit, lines };
}

export function formatBlame(run: RunRow, r: BlameResult): string {
  const width = String(r.lines.length).length;
  const tag = (l: BlameLine) => (l.experiment ? `#${l.experiment.seq}` : l.commit === r.base || !l.commit ? 'base' : '?');
  const tagWidth = Math.max(4, ...r.lines.map((l) => tag(l).length));
  const fromBase = r.lines.filter((l) => tag(l) === 'base').length;
  const exps = [...new Map(r.lines.filter((l) => l.experiment).map((l) => [l.experiment!.seq, l.experiment!])).values()].sort((a, b) => a.seq - b.seq);
  const unknown = [...new Set(r.lines.filter((l) => tag(l) === '?').map((l) => l.commit))];
  const out = [
    `${r.path} at the head of run ${r.run} (${run.branch} at ${r.head.slice(0, 8)}): ${r.lines.length} line(s), ${fromBase} from the base ${r.base.slice(0, 8)}${exps.length ? `, the rest from ${exps.map((e) => `#${e.seq}`).join(', ')}` : ''}`,
    '',
    ...r.lines.map((l) => `${tag(l).padStart(tagWidth)} ${String(l.line).padStart(width)}  ${l.text}`),
  ];
  if (exps.length) out.push('');
  for (const e of exps) {
    out.push(`#${e.seq}  ${e.hypothesis.split('\n')[0]}`);
    out.push(`    ${run.metric_name} ${fmtMetric(e.incumbent_metric)} → ${fmtMetric(e.metric)}, Δ ${fmtDelta(e.improvement, run.direction)}, margin ${fmtMetric(e.margin)}, ${e.evaluations} evaluation(s) vs ${e.incumbent_evaluations} · commit ${e.commit.slice(0, 10)}`);
    if (e.expected_effect) out.push(`    expected: ${e.expected_effect}`);
    if (e.cited.length) out.push(`    cited: ${e.cited.map((c) => `${c.id}${c.task_id ? ` (task ${c.task_id})` : ''}`).join(', ')}`);
  }
  for (const c of unknown) out.push(`?  commit ${c.slice(0, 10)} is on the run branch but is no kept experiment (see \`autoagent audit ${r.run}\`)`);
  return out.join('\n');
}

export async function blameCommand(file: string, o: { run?: string; db?: string; json?: boolean }, io: IOLike): Promise<number> {
  const { db, path } = await store(o.db);
  try {
    const run = await placedRun(db, path, o.run, io);
    const r = await blameRun(db, run, file);
    io.out(o.json ? JSON.stringify(r.lines, null, 2) + '\n' : formatBlame(run, r) + '\n');
    return 0;
  } finally {
    db.close();
  }
}
