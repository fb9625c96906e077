/**
 * `autoagent finalize --ablate [run]`: does each kept change generalize? On the sealed test split,
 * each kept change's contribution, leave-one-out: the final incumbent F against F with that one
 * change reverted, both evaluated `repeats` times (the study's baseline_repeats unless
 * `--repeats`), so each contribution comes with a noise estimate (the pooled within-variant sd
 * and the acceptance rule's t-margin at the study's α). A change helped validation only when its
 * validation Δ was a gain but its test contribution is within the noise.
 *
 * The leave-one-out tree is F's tree with the change's diff (kept commit against its parent)
 * applied in reverse, in a private index (`git apply --cached -R`): first with context lines, then
 * without (a later change that rewrote neighbouring lines); a change whose lines were rewritten
 * by a later one does not revert cleanly and is marked so, not evaluated. Each leave-one-out
 * commit is pinned under `refs/autoagent/<run>/ablate/<seq>`. Evaluations are src/evaluation.ts's
 * evaluateCommit with finalize's test-split adapter (harness traces under group `<run>/-2/<n>`);
 * seeds are apart from the run's and finalize's, the same for every variant (paired by seed).
 *
 * It prints what it will spend before it runs, is recorded in `ablations` (apart from
 * `finalizations`: it neither needs nor uses up the one-time finalize) and runs once per run
 * unless `force` (then recorded as forced). A run that fails its audit is refused unless forced.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { listExperiments, evaluationsOfRun, listAblations, recordAblation, finishedTaskRunCost, now, type DB, type RunRow, type ExperimentRow } from '../traces/index.ts';
import { UsageError, UserError } from '../base/errors.ts';
import * as g from '../base/git.ts';
import { LockViolation, matchGlobs, walkFiles, type Manifest } from './lock.ts';
import { globMatcher } from '../base/glob.ts';
import { evaluateCommit, readPaths, type EvalContext } from './evaluation.ts';
import { sandboxAvailable } from '../sandbox/index.ts';
import type { EvalOutcome, RunPaths } from './kinds/types.ts';
import { SpendGuard } from '../task-agent/evaluate.ts';
import { auditRun, findRun, runStudy, runStudyDir, short, trackedAt } from './audit.ts';
import { adapterFor } from './kinds/index.ts';
import { effectiveStatus } from './loop.ts';
import type { Reporter } from './report.ts';
import { beats, improvementOf, noiseMargin } from './ratchet.ts';
import { mean, pooledNoise, type Noise } from '../base/stats.ts';
import { fmtDelta, fmtDuration, fmtMetric, table } from '../base/format.ts';

export interface AblateOptions {
  /** run again although the run was ablated, or ablate a run that fails its audit (recorded as forced) */
  force?: boolean;
  /** evaluations per variant (default: the study's acceptance.baseline_repeats) */
  repeats?: number;
  /** harness runs: every test task (default: harness.limit, as in the run) */
  all?: boolean;
  dataRoot?: string;
  unsafeNoSandbox: boolean;
  reporter: Reporter;
  signal?: AbortSignal;
}

export interface AblationChange {
  seq: number;
  hypothesis: string;
  kept_commit: string;
  /** the change reverted from the final incumbent: with context lines, without them, or not at all */
  revert: 'clean' | 'without-context' | null;
  /** why it does not revert (git apply's first line) */
  revert_error: string | null;
  /** the leave-one-out commit (pinned under refs/autoagent/<run>/ablate/<seq>) */
  commit: string | null;
  /** its ok test metrics, one per repeat */
  values: number[];
  /** evaluations that did not end ok: `crash: reason` */
  failures: string[];
  /** the change's Δ when it was kept (higher is better), against its own incumbent, on validation */
  validation_improvement: number | null;
  /** the final incumbent's test mean over this variant's (higher is better): the change's contribution */
  test_improvement: number | null;
  /** the acceptance rule's margin for this comparison (t at α · sd · √(1/n_F + 1/n_variant)) */
  margin: number | null;
  /** standard error of the contribution (sd · √(1/n_F + 1/n_variant)) */
  se: number | null;
  verdict: 'helps on test' | 'hurts on test' | 'no measurable effect on test' | 'does not revert cleanly' | 'crashes without it';
  /** the verdict as a sentence */
  text: string;
}

export interface AblationResult {
  run: string;
  split: 'test';
  forced: boolean;
  repeats: number;
  seeds: number[];
  alpha: number;
  final: { seq: number; commit: string; values: number[]; mean: number };
  noise: Noise;
  changes: AblationChange[];
  /** what was scored, one line */
  scored: string;
  created_at: string;
}

export { listAblations, type AblationRow } from '../traces/index.ts';

/** The run's latest ablation, or null. */
export function latestAblation(db: DB, runId: string): AblationResult | null {
  const rows = listAblations(db, runId);
  const last = rows[rows.length - 1];
  if (!last) return null;
  try {
    return JSON.parse(last.details) as AblationResult;
  } catch {
    return null;
  }
}

/** the seed of repeat r of the n-th ablation of a run: apart from the run's (seq·1000 + r + 1) and finalize's (1,000,000,001 + n) */
export function ablationSeed(n: number, r: number): number {
  return 2_000_000_001 + n * 1000 + r;
}

/** The tree of `onto` with `kept`'s change (against its first parent) reverted, built in a private index. */
export async function revertTree(repo: string, onto: string, kept: string): Promise<{ tree: string; mode: 'clean' | 'without-context' }> {
  const parent = (await g.gitRaw(repo, ['rev-list', '--parents', '-n', '1', kept])).toString().trim().split(/\s+/)[1];
  if (!parent) throw new UserError(`${short(kept)} has no parent: there is no change to revert`);
  const dir = mkdtempSync(join(tmpdir(), 'autoagent-revert-'));
  try {
    const env = { GIT_INDEX_FILE: join(dir, 'index') };
    let last = '';
    for (const mode of ['clean', 'without-context'] as const) {
      const patch = join(dir, `${mode}.patch`);
      writeFileSync(patch, await g.gitRaw(repo, ['diff', '--binary', '--full-index', ...(mode === 'clean' ? [] : ['-U0']), parent, kept]));
      await g.gitRaw(repo, ['read-tree', onto], { env });
      try {
        await g.gitRaw(repo, ['apply', '--cached', '-R', ...(mode === 'clean' ? [] : ['--unidiff-zero']), patch], { env });
      } catch (e) {
        last = (e as Error).message.replace(/^git apply failed \(exit \d+\): /, '');
        continue;
      }
      return { tree: (await g.gitRaw(repo, ['write-tree'], { env })).toString().trim(), mode };
    }
    throw new RevertConflict(last);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export class RevertConflict extends Error {}

const IDENTITY = ['-c', 'user.name=autoagent', '-c', 'user.email=autoagent@localhost', '-c', 'commit.gpgsign=false'];

/** `refs/autoagent/<run>/ablate/<seq>`: the leave-one-out commit of kept change `seq` */
export function ablationRef(runId: string, seq: number): string {
  return `refs/autoagent/${runId}/ablate/${seq}`;
}

/** as the ratchet compares (src/ratchet.ts beats: a tolerance of the metric's scale, so equal is never decided by rounding) */
function verdictOf(c: Pick<AblationChange, 'test_improvement' | 'margin' | 'validation_improvement'>, ...means: number[]): { verdict: AblationChange['verdict']; text: string } {
  const t = c.test_improvement!;
  const m = c.margin ?? 0;
  if (beats(t, m, ...means)) return { verdict: 'helps on test', text: 'helps on test' };
  if (beats(-t, m, ...means)) return { verdict: 'hurts on test', text: 'hurts on test' };
  const valOnly = (c.validation_improvement ?? 0) > 0;
  return { verdict: 'no measurable effect on test', text: `no measurable effect on test${valOnly ? ': it helped validation only' : ''}` };
}

/** `run`: an id (or unique prefix), or the run itself as placed by resolveRunPaths. */
export async function ablateRun(db: DB, runOrId: string | RunRow, opts: AblateOptions): Promise<AblationResult> {
  const run = typeof runOrId === 'string' ? findRun(db, runOrId) : runOrId;
  const forcedOver: string[] = [];
  if (effectiveStatus(run) === 'running') throw new UserError(`run ${run.id} is still running (process ${run.owner_pid}); ablate it after it stops`);
  const study = runStudy(run);
  if (opts.all && study.kind !== 'harness') throw new UsageError(`--all applies to harness runs (it lifts harness.limit); a ${study.kind} run scores its whole test split already`);
  const repeats = opts.repeats ?? study.acceptance.baseline_repeats;
  if (!Number.isInteger(repeats) || repeats < 1 || repeats > 50) throw new UsageError(`--repeats ${repeats}: a whole number from 1 to 50`);
  const prior = listAblations(db, run.id);
  if (prior.length) {
    const p = prior[prior.length - 1]!;
    if (!opts.force) throw new UserError(`run ${run.id} was already ablated (${p.created_at}); the ablation evaluates the test split once — pass --force to run it again (recorded as forced)`);
    forcedOver.push(`${prior.length} earlier ablation(s) (last #${p.id})`);
  }
  const exps = listExperiments(db, run.id);
  const kept = exps.filter((e) => e.decision === 'kept' && e.kept_commit);
  if (!kept.length) throw new UserError(`run ${run.id} has no kept change: there is nothing to ablate`);
  const final = kept[kept.length - 1]!;
  const audit = await auditRun(db, run, { rescore: false, dataRoot: opts.dataRoot });
  if (!audit.ok) {
    if (!opts.force) throw new UserError(`run ${run.id} fails its audit (${audit.problems[0]}${audit.problems.length > 1 ? `; and ${audit.problems.length - 1} more` : ''}): see \`autoagent audit ${run.id}\`, or pass --force to ablate it anyway (recorded as forced)`);
    forcedOver.push(`a failed audit (${audit.problems.length} problem(s))`);
  }
  if (!opts.unsafeNoSandbox) {
    const s = sandboxAvailable();
    if (!s.ok) throw new UserError(s.message);
  }

  // the leave-one-out commits: built before anything is spent
  const F = final.kept_commit!;
  const variants: Array<{ exp: ExperimentRow; revert: AblationChange['revert']; error: string | null; commit: string | null }> = [];
  for (const e of kept) {
    try {
      const r = await revertTree(run.repo, F, e.kept_commit!);
      const message = `autoagent ablation ${run.id}: the final incumbent #${final.seq} without #${e.seq}\n\n${e.hypothesis}\n\nRun: ${run.id}\nReverted: ${e.kept_commit}\n`;
      const commit = (await g.gitRaw(run.repo, [...IDENTITY, 'commit-tree', r.tree, '-p', F, '-F', '-'], { input: message })).toString().trim();
      await g.gitRaw(run.repo, ['update-ref', ablationRef(run.id, e.seq), commit]);
      variants.push({ exp: e, revert: r.mode, error: null, commit });
    } catch (err) {
      if (!(err instanceof RevertConflict)) throw err;
      variants.push({ exp: e, revert: null, error: err.message || 'git apply refused the reverse patch', commit: null });
    }
  }

  const paths: RunPaths = { repo: run.repo, studyDir: runStudyDir(run), studyPath: run.study_path, stateDir: join(run.repo, '.autoagent') };
  const { study: evalStudy, adapter } = adapterFor(study, { split: 'test', dataRoot: opts.dataRoot, all: Boolean(opts.all) });
  let prepared;
  try {
    prepared = await adapter.prepare(evalStudy, paths);
  } catch (e) {
    if (e instanceof UsageError && /has no test tasks/.test(e.message)) throw new UserError(`run ${run.id}: benchmark ${study.harness!.benchmark} has no test tasks, so there is no sealed split to ablate on`);
    throw e;
  }
  const measured = variants.filter((v) => v.commit);
  const evaluations = (1 + measured.length) * repeats;
  opts.reporter.event(planText(db, run, final, variants, repeats, evaluations, prepared.environment));

  const manifest: Manifest = JSON.parse(run.lock_manifest);
  const hidden = study.sandbox.hidden.length ? matchGlobs(walkFiles(run.repo), study.sandbox.hidden, paths.studyDir, 'sandbox.hidden', run.study_path) : [];
  const ctx: EvalContext = {
    db, runId: run.id, study: evalStudy, paths, adapter, prepared, manifest,
    baseTracked: await trackedAt(run.repo, run.base_commit), isLocked: globMatcher(study.locked, paths.studyDir), hidden,
    policy: { unsafeNoSandbox: opts.unsafeNoSandbox, memoryMB: study.sandbox.memory_mb, maxProcesses: study.sandbox.max_processes, read: readPaths(study, dirname(run.study_path)) },
    guard: new SpendGuard(0, 0, 0, 0), signal: opts.signal,
  };
  const n = prior.length;
  const seeds = Array.from({ length: repeats }, (_, r) => ablationSeed(n, r));
  const started = Date.now();
  let done = 0;
  const evaluate = async (commit: string, vi: number, name: string): Promise<{ values: number[]; failures: string[] }> => {
    const values: number[] = [];
    const failures: string[] = [];
    for (let r = 0; r < repeats; r++) {
      let out: EvalOutcome;
      try {
        out = await evaluateCommit(ctx, { commit, label: `ablate-${vi}-${r}`, seq: -2, seed: seeds[r]!, repeat: n * 1_000_000 + vi * 100 + r });
      } catch (e) {
        if (!(e instanceof LockViolation)) throw e;
        throw new UserError(`${e.message.replace(/: the run stops.*$/, '')}: the ablation does not evaluate with changed locked files (restore it); nothing was recorded`);
      }
      if (opts.signal?.aborted) throw new UserError('the ablation was interrupted: nothing was recorded');
      if (out.providerFailed) throw new UserError(`${out.providerFailed}; nothing was recorded (fix the provider and run the ablation again)`);
      done++;
      if (out.status === 'ok' && out.metric !== null && Number.isFinite(out.metric)) values.push(out.metric);
      else failures.push(`${out.status}: ${out.reason ?? 'no metric'}`);
      opts.reporter.event(`[ablate ${done}/${evaluations}] ${name} repeat ${r + 1}: ${out.status === 'ok' ? `${run.metric_name}=${fmtMetric(out.metric)}` : `${out.status} (${out.reason ?? 'no metric'})`}`);
    }
    return { values, failures };
  };
  const fin = await evaluate(F, 0, `final incumbent #${final.seq}`);
  if (fin.failures.length) throw new UserError(`the final incumbent ${short(F)} did not evaluate on the test split (${fin.failures[0]}); nothing was recorded`);
  const results: Array<{ values: number[]; failures: string[] } | null> = [];
  for (const [i, v] of variants.entries()) results.push(v.commit ? await evaluate(v.commit, i + 1, `without #${v.exp.seq}`) : null);

  const noise = pooledNoise([fin.values, ...results.map((r) => r?.values ?? [])]);
  const rule = { alpha: study.acceptance.alpha, minDelta: 0 };
  const fMean = mean(fin.values);
  const changes: AblationChange[] = variants.map((v, i) => {
    const r = results[i];
    const base = {
      seq: v.exp.seq, hypothesis: v.exp.hypothesis, kept_commit: v.exp.kept_commit!, revert: v.revert, revert_error: v.error, commit: v.commit,
      values: r?.values ?? [], failures: r?.failures ?? [], validation_improvement: v.exp.improvement,
    };
    if (!v.commit) return { ...base, test_improvement: null, margin: null, se: null, verdict: 'does not revert cleanly' as const, text: `does not revert cleanly from the final incumbent (${v.error}): not measured` };
    if (!r!.values.length) return { ...base, test_improvement: null, margin: null, se: null, verdict: 'crashes without it' as const, text: `the final incumbent without it does not evaluate (${r!.failures[0]})` };
    const test = improvementOf(run.direction, mean(r!.values), fMean);
    const se = noise.df > 0 ? noise.sd * Math.sqrt(1 / fin.values.length + 1 / r!.values.length) : null;
    const margin = noiseMargin(noise, fin.values.length, r!.values.length, rule);
    return { ...base, test_improvement: test, margin, se, ...verdictOf({ test_improvement: test, margin, validation_improvement: v.exp.improvement }, fMean, mean(r!.values)) };
  });
  const scored = scoredText(run, prepared.environment, repeats, evaluations);
  const result: AblationResult = {
    run: run.id, split: 'test', forced: forcedOver.length > 0, repeats, seeds, alpha: study.acceptance.alpha,
    final: { seq: final.seq, commit: F, values: fin.values, mean: fMean }, noise, changes, scored, created_at: now(),
  };
  const details = { ...result, wall_ms: Date.now() - started, forced_over: forcedOver, audit: { ok: audit.ok, problems: audit.problems.length }, unsafe_no_sandbox: opts.unsafeNoSandbox,
    ...(run.kind === 'harness' ? { traces_group: `${run.id}/-2/${n * 1_000_000}…` } : {}), ...(run.kind === 'command' ? { env: { AUTOAGENT_SPLIT: 'test' } } : {}) };
  const row = { run_id: run.id, commit: F, split: 'test', details: JSON.stringify(details), forced: result.forced ? 1 : 0, created_at: result.created_at };
  if (!recordAblation(db, row, { onlyFirst: !opts.force })) throw new UserError(`run ${run.id} was ablated by another process meanwhile; pass --force to record this one too`);
  opts.reporter.event(`ablation of run ${run.id} recorded (${done} evaluations in ${fmtDuration(Date.now() - started)})${result.forced ? ' — FORCED' : ''}`);
  return result;
}

/** What the ablation will spend, said before it runs. */
function planText(db: DB, run: RunRow, final: ExperimentRow, variants: Array<{ exp: ExperimentRow; commit: string | null }>, repeats: number, evaluations: number, env: Record<string, unknown>): string {
  const measured = variants.filter((v) => v.commit).length;
  const lines = [`ablating ${variants.length} kept change(s) of run ${run.id} on the sealed test split: ${1 + measured} variant(s) (the final incumbent #${final.seq}, and ${measured} with one kept change reverted) × ${repeats} repeat(s) = ${evaluations} evaluation(s)`];
  const skipped = variants.filter((v) => !v.commit);
  if (skipped.length) lines.push(`  not evaluated: ${skipped.map((v) => `#${v.exp.seq}`).join(', ')} (does not revert cleanly from the final incumbent)`);
  // the run's own evaluations tell what one costs
  const evals = [...evaluationsOfRun(db, run.id).values()].flat().filter((v) => v.status === 'ok');
  const ms = evals.length ? mean(evals.map((v) => v.command_ms + v.evaluator_ms)) : null;
  if (run.kind === 'harness') {
    const tasks = Number(env.tasks) || 0;
    const recorded = (JSON.parse(run.environment ?? '{}') ?? {}) as { tasks?: unknown; environment?: { tasks?: unknown } };
    const runTasks = Number(recorded.environment?.tasks ?? recorded.tasks) || 0;
    const t = finishedTaskRunCost(db, run.id);
    const runs = evaluations * tasks;
    lines.push(`  ${tasks} test task(s) per evaluation: ${runs} task run(s)` + (t.n ? `; at the run's mean of ${Math.round(t.tok)} tokens and $${t.usd.toFixed(6)} per task run: ≈ ${Math.round(t.tok * runs)} tokens, $${(t.usd * runs).toFixed(4)}` : ''));
    if (ms !== null && runTasks > 0) lines.push(`  ≈ ${fmtDuration((ms / runTasks) * runs)} at the run's mean time per task`);
  } else if (ms !== null) {
    lines.push(`  ≈ ${fmtDuration(ms * evaluations)} at the run's mean evaluation time (${fmtDuration(ms)})`);
  }
  return lines.join('\n');
}

function scoredText(run: RunRow, env: Record<string, unknown>, repeats: number, evaluations: number): string {
  const each = `${repeats} evaluation(s) per variant, ${evaluations} in all`;
  if (run.kind === 'harness') return `scored ${Number(env.tasks)} of ${Number(env.split_tasks)} test tasks per evaluation, ${each}`;
  if (run.kind === 'trainer') return `a fresh training and prepare.py's evaluator on the test split per evaluation, ${each}`;
  return `the evaluator read AUTOAGENT_SPLIT=test, ${each}`;
}

/** The ablation as a table: validation Δ against test Δ for each kept change. */
export function formatAblation(run: RunRow, r: AblationResult): string {
  const d = (x: number | null) => fmtDelta(x, run.direction);
  const lines = [
    `ablation of run ${run.id} on the sealed test split${r.forced ? ' (forced)' : ''}: the final incumbent #${r.final.seq} (${short(r.final.commit)}) ${run.metric_name} ${fmtMetric(r.final.mean)} over ${r.final.values.length} evaluation(s)`,
    `${r.scored}; noise sd ${fmtMetric(r.noise.sd)} (${r.noise.df} df${r.noise.df === 0 ? ': no estimate, one repeat' : ''}), α ${r.alpha}`,
    '',
    table(['#', 'validation Δ', 'test Δ', '± margin', 'test evaluations', 'verdict', 'change'], r.changes.map((c) => [
      `#${c.seq}`, d(c.validation_improvement), c.test_improvement === null ? '—' : d(c.test_improvement), c.margin === null ? '—' : fmtMetric(c.margin),
      c.values.length ? c.values.map(fmtMetric).join(', ') : '—', c.text + (c.revert === 'without-context' ? ' (reverted without context lines)' : ''), c.hypothesis.split('\n')[0]!.slice(0, 70),
    ])),
    '',
    'test Δ: the final incumbent against it with that one change reverted (leave-one-out), in the direction of improvement; validation Δ: the change against its own incumbent when it was kept',
  ];
  return lines.join('\n');
}
