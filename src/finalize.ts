/**
 * `autoagent finalize <run>`: evaluate a run's final incumbent (the last kept commit, else the
 * base) ONCE on the sealed test split, record it in `finalizations`, and optionally write a clean
 * branch with one commit per kept change (or one squashed commit) whose messages carry the
 * evidence. The run's validation numbers picked the incumbent; the test number is the honest one.
 *
 * Per kind (the kind's own evaluate, with the run's sandbox settings, in a fresh workspace of the
 * commit under .autoagent/work/<run>/, removed after; src/evaluation.ts):
 *  - harness: the harness folder at that commit on the benchmark's `test` split (the study's
 *    `limit` applies unless `all`, and the output says so; no minibatch screen); traces go to the
 *    store under group `<run>/-1/<n>`.
 *  - trainer: a fresh training of the final train.py, then prepare.py's locked evaluator with
 *    `--split test` (TrainerKind's `evalSplit`).
 *  - command: the study's command and evaluator with AUTOAGENT_SPLIT=test in their environment.
 *    A command study must honour it: during the run the variable is unset (score the validation
 *    data); with AUTOAGENT_SPLIT=test score the held-out test data. A study that ignores it
 *    reports its validation number again: so the evaluation is run a second time, as in the run
 *    (AUTOAGENT_SPLIT unset) at the same seed, and a test score equal to that validation score is
 *    flagged (`untrusted_split` in the record; `log` and the report show it).
 *
 * What was scored (split, tasks out of how many, repeats, tokens) is printed and recorded.
 *
 * A second finalize of the same run refuses unless `force`; so does a run that fails its audit,
 * or a clean branch name that already exists. A finalization that overrode any of these is
 * recorded as forced, with what it overrode.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { listExperiments, evaluationsOfRun, listFinalizations, recordFinalization, now, type DB, type ExperimentRow, type EvaluationRow, type RunRow } from '../traces/index.ts';
import { UsageError, UserError } from '../base/errors.ts';
import * as g from '../base/git.ts';
import { LockViolation, matchGlobs, walkFiles, type Manifest } from './lock.ts';
import { globMatcher } from '../base/glob.ts';
import { evaluateCommit, readPaths, type EvalContext } from './evaluation.ts';
import { sandboxAvailable } from '../sandbox/index.ts';
import { adapterFor } from './kinds/index.ts';
import type { EvalOutcome, KindAdapter, RunPaths } from './kinds/types.ts';
import { StudySchema, type Study } from './study.ts';
import { liveExportFor } from './export/live.ts';
import { SpendGuard } from '../task-agent/evaluate.ts';
import { incumbentMetrics, ownEvaluations } from './acceptance.ts';
import { auditRun, findRun, finalIncumbent, okMetrics, runStudy, runStudyDir, short, trackedAt } from './audit.ts';
import { effectiveStatus } from './loop.ts';
import type { Reporter } from './report.ts';
import { fmtDelta, fmtDuration, fmtMetric } from '../base/format.ts';
import { ReferenceIndex, checkCommitAgainst, referencesOf, studyBenchmark, type Contamination } from './contamination.ts';

export interface FinalizeOptions {
  /** evaluate the test split again although the run was finalized, finalize a run that fails its audit, replace an existing clean branch */
  force?: boolean;
  /** the clean branch to write (default `autoagent/<run-id>-clean`); false: none */
  branch?: string | false;
  /** one squashed commit instead of one per kept change */
  squash?: boolean;
  unsafeNoSandbox: boolean;
  reporter: Reporter;
  /** data root for built-in benchmarks (harness runs; default: the study's harness.data, else AUTOAGENT_DATA) */
  dataRoot?: string;
  signal?: AbortSignal;
  /** harness runs: score every test task (default: the study's harness.limit, as during the run) */
  all?: boolean;
}

/** What a finalization scored. */
export interface Scored {
  split: 'test';
  /** harness: the test tasks scored, out of how many the split has, and the limit that applied (0: none) */
  tasks?: number;
  of?: number;
  limit?: number;
  /** trainer: the tokens (bytes) the locked evaluator scored */
  tokens?: number;
  /** evaluations of the final incumbent on the test split */
  repeats: number;
  seed: number;
  /** one line: `scored 50 of 1,319 test tasks (harness.limit 50; …)` */
  text: string;
}

/** the warning of a command study whose test score is its validation score */
export const UNTRUSTED_SPLIT = 'the test score equals the validation score at the same seed: the evaluator may ignore AUTOAGENT_SPLIT; this is not a held-out score';

export interface FinalizeResult {
  run: string;
  commit: string;
  split: 'test';
  metric: number;
  /** the incumbent's validation metric (the mean of its evaluations in the run) */
  validation: number | null;
  forced: boolean;
  scored: Scored;
  /** command studies: the test score equals the validation score at the same seed (the evaluator may ignore AUTOAGENT_SPLIT) */
  untrusted_split: boolean;
  /** the clean branch written, if any */
  branch?: string;
  /** harness runs: the final incumbent's diff against the base writes test task data (the memorisation check on the test split) */
  contamination?: Contamination;
}

export { listFinalizations, type FinalizationRow } from '../traces/index.ts';

const IDENTITY = ['-c', 'user.name=autoagent', '-c', 'user.email=autoagent@localhost', '-c', 'commit.gpgsign=false'];

async function git(repo: string, args: string[], env?: Record<string, string>): Promise<string> {
  return (await g.gitRaw(repo, args, { env })).toString('utf8');
}

/** the seed of the n-th finalization of a run: apart from the run's seeds (seq·1000 + repeat + 1) */
export function finalSeed(n: number): number {
  return 1_000_000_001 + n;
}

async function branchCheckedOut(repo: string, branch: string): Promise<string | null> {
  const out = await git(repo, ['worktree', 'list', '--porcelain']);
  let path: string | null = null;
  for (const line of out.split('\n')) {
    if (line.startsWith('worktree ')) path = line.slice('worktree '.length);
    if (line === `branch refs/heads/${branch}`) return path;
  }
  return null;
}

// ---------------------------------------------------------------------------------------------
// the clean branch

interface KeptEvidence {
  exp: ExperimentRow;
  inc: ExperimentRow;
  m: number[];
  incM: number[];
}

function evidenceOf(exps: ExperimentRow[], evals: Map<number, EvaluationRow[]>): KeptEvidence[] {
  return exps.filter((e) => e.decision === 'kept').map((exp) => {
    const { inc, metrics } = incumbentMetrics(exps, evals, exp);
    return { exp, inc: inc as ExperimentRow, m: okMetrics(ownEvaluations(evals.get(exp.id), exp)), incM: metrics };
  });
}

function evidenceLines(run: RunRow, k: KeptEvidence, indent = ''): string[] {
  const { exp, inc, m, incM } = k;
  return [
    `Experiment: ${run.id} #${exp.seq} (proposer ${exp.proposer})`,
    `Metric: ${run.metric_name} ${fmtMetric(exp.incumbent_metric)} → ${fmtMetric(exp.metric)} (Δ ${fmtDelta(exp.improvement, run.direction)}, ${run.direction})`,
    `Evaluations: ${m.length}: ${m.map(fmtMetric).join(', ')} vs incumbent #${inc.seq} ${incM.length}: ${incM.map(fmtMetric).join(', ')}`,
    `Margin: ${fmtMetric(exp.margin)} (improvement ${fmtMetric(exp.improvement)} > margin)`,
    `Kept-commit: ${exp.kept_commit}`,
  ].map((l) => indent + l);
}

function subjectOf(text: string, max = 72): string {
  const first = text.split('\n')[0]!.trim() || '(no hypothesis)';
  return first.length > max ? first.slice(0, max - 1) + '…' : first;
}

export function changeMessage(run: RunRow, k: KeptEvidence): string {
  const rest = k.exp.hypothesis.split('\n').slice(1).join('\n').trim();
  return [subjectOf(k.exp.hypothesis), '', ...(rest ? [rest, ''] : []), ...evidenceLines(run, k)].join('\n') + '\n';
}

export function squashMessage(run: RunRow, base: ExperimentRow, ks: KeptEvidence[]): string {
  const last = ks[ks.length - 1]!.exp;
  const lines = [`autoagent ${run.id}: ${run.metric_name} ${fmtMetric(base.metric)} → ${fmtMetric(last.metric)} in ${ks.length} kept change(s)`, ''];
  for (const k of ks) lines.push(`#${k.exp.seq}: ${subjectOf(k.exp.hypothesis, 200)}`, ...evidenceLines(run, k, '  '), '');
  lines.push(`Run: ${run.id}`, `Base: ${run.base_commit}`);
  return lines.join('\n') + '\n';
}

/** `commit`'s change against `parent`, applied onto the tree `ontoTree` (a cherry-pick without any checkout); returns the new tree. */
export async function pickTree(repo: string, ontoTree: string, commit: string, parent: string): Promise<string> {
  const parentTree = (await git(repo, ['rev-parse', `${parent}^{tree}`])).trim();
  if (ontoTree === parentTree) return (await git(repo, ['rev-parse', `${commit}^{tree}`])).trim();
  // the general case: apply the diff to a temporary index
  const dir = mkdtempSync(join(tmpdir(), 'autoagent-pick-'));
  try {
    const env = { GIT_INDEX_FILE: join(dir, 'index') };
    await git(repo, ['read-tree', ontoTree], env);
    const patch = join(dir, 'patch');
    writeFileSync(patch, await git(repo, ['diff', '--binary', '--full-index', parent, commit]));
    try {
      await git(repo, ['apply', '--cached', patch], env);
    } catch (e) {
      throw new UserError(`the change of ${short(commit)} does not apply onto tree ${short(ontoTree)}: ${(e as Error).message.replace(/^git apply failed \(exit \d+\): /, '')}`);
    }
    return (await git(repo, ['write-tree'], env)).trim();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function writeCleanBranch(
  run: RunRow, exps: ExperimentRow[], evals: Map<number, EvaluationRow[]>, branch: string, squash: boolean, existing: string | null,
): Promise<{ head: string; commits: number }> {
  const repo = run.repo;
  const ks = evidenceOf(exps, evals);
  let head = run.base_commit;
  let tree = (await git(repo, ['rev-parse', `${head}^{tree}`])).trim();
  for (const k of ks) {
    const kept = k.exp.kept_commit!;
    const parent = (await git(repo, ['rev-list', '--parents', '-n', '1', kept])).trim().split(/\s+/)[1] ?? k.exp.parent_commit;
    tree = await pickTree(repo, tree, kept, parent);
    if (!squash) head = (await git(repo, [...IDENTITY, 'commit-tree', tree, '-p', head, '-m', changeMessage(run, k)])).trim();
  }
  if (squash) {
    const base = exps.find((e) => e.seq === 0)!;
    head = (await git(repo, [...IDENTITY, 'commit-tree', tree, '-p', run.base_commit, '-m', squashMessage(run, base, ks)])).trim();
  }
  // compare-and-swap: a new branch must not exist yet; a replaced one must not have moved meanwhile
  await git(repo, ['update-ref', `refs/heads/${branch}`, head, existing ?? '0'.repeat(40)]);
  return { head, commits: squash ? 1 : ks.length };
}

// ---------------------------------------------------------------------------------------------

/** `run`: an id (or unique prefix), or the run itself as placed by resolveRunPaths (a copied repository). */
export async function finalizeRun(db: DB, runOrId: string | RunRow, opts: FinalizeOptions): Promise<FinalizeResult> {
  const run = typeof runOrId === 'string' ? findRun(db, runOrId) : runOrId;
  const forcedOver: string[] = [];
  if (effectiveStatus(run) === 'running') {
    throw new UserError(`run ${run.id} is still running (process ${run.owner_pid}); finalize it after it stops`);
  }
  const prior = listFinalizations(db, run.id);
  if (prior.length > 0) {
    const p = prior[prior.length - 1]!;
    if (!opts.force) {
      throw new UserError(`run ${run.id} was already finalized (${p.created_at}: test ${run.metric_name}=${fmtMetric(p.metric)} on ${short(p.commit)}); the test split is evaluated once — pass --force to evaluate it again (recorded as forced)`);
    }
    forcedOver.push(`${prior.length} earlier finalization(s) (last #${p.id})`);
  }
  const exps = listExperiments(db, run.id);
  const base = exps.find((e) => e.seq === 0);
  if (!base || base.decision !== 'baseline') throw new UserError(`run ${run.id} has no measured baseline: there is nothing to finalize`);
  const pending = exps.filter((e) => e.status === 'pending');
  if (pending.length) opts.reporter.event(`note: experiment #${pending[0]!.seq} is pending (the run was interrupted): finalizing the incumbent as recorded`);
  const inc = finalIncumbent(exps)!;
  const commit = inc.kept_commit ?? run.base_commit;
  const validation = inc.metric;

  const audit = await auditRun(db, run, { rescore: false, dataRoot: opts.dataRoot });
  if (!audit.ok) {
    if (!opts.force) {
      throw new UserError(`run ${run.id} fails its audit (${audit.problems[0]}${audit.problems.length > 1 ? `; and ${audit.problems.length - 1} more` : ''}): see \`autoagent audit ${run.id}\`, or pass --force to finalize it anyway (recorded as forced)`);
    }
    forcedOver.push(`a failed audit (${audit.problems.length} problem(s))`);
  }

  // the clean branch: checked before the test split is spent
  const branch = opts.branch === false ? null : (opts.branch ?? `autoagent/${run.id}-clean`);
  let existing: string | null = null;
  if (branch) {
    try {
      await git(run.repo, ['check-ref-format', '--branch', branch]);
    } catch {
      throw new UsageError(`--branch ${branch}: not a valid branch name`);
    }
    if (branch === run.branch) throw new UsageError(`--branch ${branch}: that is the run branch itself; give another name`);
    existing = await g.revParse(run.repo, `refs/heads/${branch}`);
    const where = existing ? await branchCheckedOut(run.repo, branch) : null;
    if (where) throw new UserError(`branch ${branch} is checked out in ${where}; finalize never moves a checked-out branch: pass another --branch NAME`);
    if (existing) {
      if (!opts.force) throw new UserError(`branch ${branch} already exists (at ${short(existing)}); pass another --branch NAME, or --force to replace it`);
      forcedOver.push(`branch ${branch} existed at ${short(existing)}`);
    }
  }

  if (!opts.unsafeNoSandbox) {
    const s = sandboxAvailable();
    if (!s.ok) throw new UserError(s.message);
  }
  const study = runStudy(run);
  // a study with a live Langfuse export sends the test evaluation too (keys checked before it is spent)
  const live = await liveExportFor(study, opts.reporter);
  const paths: RunPaths = { repo: run.repo, studyDir: runStudyDir(run), studyPath: run.study_path, stateDir: join(run.repo, '.autoagent') };
  if (opts.all && study.kind !== 'harness') throw new UsageError(`--all applies to harness runs (it lifts harness.limit); a ${study.kind} run scores its whole test split already`);
  const { study: evalStudy, adapter } = adapterFor(study, { split: 'test', dataRoot: opts.dataRoot, all: Boolean(opts.all) });
  let prepared;
  try {
    prepared = await adapter.prepare(evalStudy, paths);
  } catch (e) {
    if (e instanceof UsageError && /has no test tasks/.test(e.message)) {
      throw new UserError(`run ${run.id}: benchmark ${study.harness!.benchmark} has no test tasks, so there is no sealed split to finalize on`);
    }
    throw e;
  }
  const manifest: Manifest = JSON.parse(run.lock_manifest);
  const hidden = study.sandbox.hidden.length ? matchGlobs(walkFiles(run.repo), study.sandbox.hidden, paths.studyDir, 'sandbox.hidden', run.study_path) : [];

  const n = prior.length;
  const seed = finalSeed(n);
  const from = inc.seq === 0 ? 'the base commit' : `experiment #${inc.seq}`;
  opts.reporter.event(`finalizing run ${run.id}: evaluating ${short(commit)} (${from}, validation ${run.metric_name}=${fmtMetric(validation)}) once on the sealed test split…`);
  const started = Date.now();
  let out: EvalOutcome;
  /** command studies: the same commit evaluated as in the run (AUTOAGENT_SPLIT unset), at the same seed */
  let asInRun: EvalOutcome | null = null;
  const baseTracked = await trackedAt(run.repo, run.base_commit);
  const evalCtx = (s: Study, a: KindAdapter): EvalContext => ({
    db, runId: run.id, study: s, paths, adapter: a, prepared, manifest,
    baseTracked, isLocked: globMatcher(study.locked, paths.studyDir), hidden,
    policy: { unsafeNoSandbox: opts.unsafeNoSandbox, memoryMB: study.sandbox.memory_mb, maxProcesses: study.sandbox.max_processes, read: readPaths(study, dirname(run.study_path)) },
    guard: new SpendGuard(0, 0, 0, 0), signal: opts.signal,
  });
  try {
    out = await evaluateCommit(evalCtx(evalStudy, adapter), { commit, label: 'finalize', seq: -1, seed, repeat: n });
    if (run.kind === 'command' && out.status === 'ok' && !opts.signal?.aborted) {
      // does the evaluator honour AUTOAGENT_SPLIT? the validation score at the same seed tells
      const { AUTOAGENT_SPLIT: _, ...env } = study.env;
      const valStudy: Study = { ...study, env };
      asInRun = await evaluateCommit(evalCtx(valStudy, adapterFor(valStudy).adapter), { commit, label: 'finalize-val', seq: -1, seed, repeat: n });
    }
  } catch (e) {
    if (!(e instanceof LockViolation)) throw e;
    throw new UserError(`${e.message.replace(/: the run stops.*$/, '')}: finalize does not evaluate with changed locked files (restore it); nothing was recorded`);
  }
  if (opts.signal?.aborted) throw new UserError('finalize interrupted: nothing was recorded');
  if (out.status !== 'ok' || out.metric === null || !Number.isFinite(out.metric)) {
    throw new UserError(`the test evaluation of ${short(commit)} ended ${out.status}: ${out.reason ?? 'no metric'}; nothing was recorded (fix the cause and finalize again)`);
  }
  const metric = out.metric;
  // the memorisation check on the sealed test split: only now, on the final incumbent's diff against the base
  let contamination: Contamination | null = null;
  if (study.kind === 'harness' && commit !== run.base_commit) {
    const b = await studyBenchmark(study, run.repo, paths.studyDir, opts.dataRoot);
    const isLocked = globMatcher(study.locked, paths.studyDir);
    const editable = globMatcher(study.editable, paths.studyDir);
    contamination = await checkCommitAgainst(run.repo, run.base_commit, commit, (p) => editable(p) && !isLocked(p), new ReferenceIndex(referencesOf(b, 'test')), 'test');
    if (contamination) opts.reporter.event(`WARNING: memorisation check: ${contamination.summary}; the test score is not a held-out score for those tasks`);
  }
  const scored = scoredOf(run, study, evalStudy, prepared.environment, out, seed, Boolean(opts.all));
  opts.reporter.event(scored.text);
  const untrustedSplit = asInRun !== null && asInRun.status === 'ok' && asInRun.metric === metric;
  const splitCheck = asInRun === null ? null : {
    env: 'AUTOAGENT_SPLIT unset (as in the run)', seed, status: asInRun.status, metric: asInRun.metric, reason: asInRun.reason,
  };
  if (untrustedSplit) opts.reporter.event(`WARNING: ${UNTRUSTED_SPLIT} (both ${run.metric_name}=${fmtMetric(metric)}, seed ${seed})`);
  else if (asInRun && asInRun.status !== 'ok') opts.reporter.event(`note: the validation evaluation at the same seed ended ${asInRun.status} (${asInRun.reason ?? 'no metric'}): whether the evaluator honours AUTOAGENT_SPLIT was not checked`);

  let written: { head: string; commits: number } | null = null;
  if (branch) {
    if (exps.some((e) => e.decision === 'kept')) {
      written = await writeCleanBranch(run, exps, evaluationsOfRun(db, run.id), branch, Boolean(opts.squash), existing);
    } else {
      opts.reporter.event('no kept change: no clean branch written');
    }
  }

  const details = {
    experiment: inc.seq, kind: run.kind, seed, repeat: n, validation, test_minus_validation: validation === null ? null : metric - validation,
    wall_ms: Date.now() - started, command_ms: Math.round(out.commandMs), evaluator_ms: Math.round(out.evaluatorMs),
    telemetry: out.telemetry, stdout_tail: out.stdoutTail.slice(-2000),
    ...(run.kind === 'harness' ? { traces_group: `${run.id}/-1/${n}` } : {}),
    ...(run.kind === 'command' ? { env: { AUTOAGENT_SPLIT: 'test' }, split_check: splitCheck } : {}),
    scored, untrusted_split: untrustedSplit, contamination,
    self_reported: run.self_reported === 1, unsafe_no_sandbox: opts.unsafeNoSandbox,
    audit: { ok: audit.ok, problems: audit.problems.length },
    forced_over: forcedOver,
    branch: written ? { name: branch, head: written.head, commits: written.commits, squash: Boolean(opts.squash) } : null,
  };
  const forced = forcedOver.length > 0;
  const row = { run_id: run.id, commit, split: 'test', metric, details: JSON.stringify(details), forced: forced ? 1 : 0, created_at: now() };
  if (!recordFinalization(db, row, { onlyFirst: !opts.force })) {
    throw new UserError(`run ${run.id} was finalized by another process meanwhile; pass --force to record this one too`);
  }
  opts.reporter.event(
    `test ${run.metric_name}=${fmtMetric(metric)} (validation ${fmtMetric(validation)}) for ${short(commit)} in ${fmtDuration(Date.now() - started)}${forced ? ' — FORCED' : ''}`
    + (written ? `; clean branch ${branch} (${written.commits} commit(s))` : ''),
  );
  if (live) {
    const sent = await live.exportExperiment(db, run.id, -1);
    await live.shutdown();
    if (sent.ok) opts.reporter.event(`langfuse: sent the test evaluation (${sent.traces} trace(s)) to ${live.host}`);
  }
  return { run: run.id, commit, split: 'test', metric, validation, forced, scored, untrusted_split: untrustedSplit, ...(written ? { branch: branch! } : {}), ...(contamination ? { contamination } : {}) };
}

const count = (x: number) => x.toLocaleString('en-US');

/** What the test evaluation covered, per kind (see Scored). */
function scoredOf(run: RunRow, study: Study, evalStudy: Study, env: Record<string, unknown>, out: EvalOutcome, seed: number, all: boolean): Scored {
  const once = `1 evaluation, seed ${seed}`;
  if (run.kind === 'harness') {
    const limit = study.harness!.limit;
    const applied = evalStudy.harness!.limit;
    const tasks = typeof out.telemetry?.tasks === 'number' ? out.telemetry.tasks : Number(env.tasks);
    const of = typeof env.split_tasks === 'number' ? env.split_tasks : tasks;
    const why = applied > 0 && applied < of ? `harness.limit ${applied}; \`--all\` scores all ${count(of)}` : all && limit > 0 ? '--all' : 'every test task';
    return { split: 'test', tasks, of, limit: applied, repeats: 1, seed, text: `scored ${count(tasks)} of ${count(of)} test tasks (${why}), ${once}` };
  }
  if (run.kind === 'trainer') {
    const asked = (study.trainer ?? StudySchema.shape.trainer.unwrap().parse({})).eval_tokens;
    const ev = out.telemetry?.eval as { tokens?: unknown } | undefined;
    const tokens = typeof ev?.tokens === 'number' ? ev.tokens : asked;
    return { split: 'test', tokens, repeats: 1, seed, text: `scored the test split on ${count(tokens)} tokens (trainer.eval_tokens ${count(asked)}) after a fresh training, ${once}` };
  }
  return { split: 'test', repeats: 1, seed, text: `scored the test split as the evaluator reads AUTOAGENT_SPLIT=test, ${once} (and once with it unset, at the same seed, to check it is honoured)` };
}
