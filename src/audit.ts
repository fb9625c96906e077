/**
 * `autoagent audit <run>`: re-derive, from git and SQLite alone, why every kept change of a run
 * was kept, and name whatever does not add up. Nothing here trusts the recorded decisions: each
 * check recomputes what the loop would have had to see.
 *
 *  - chain: the run branch holds exactly the kept experiments' commits, in seq order, each on the
 *    previous one (the base commit first), each with the very files that were evaluated.
 *  - editable-only: each commit on the branch changes only editable, unlocked paths.
 *  - locked-hashes: every locked file tracked in the base and in each branch commit has the sha256
 *    of the run's lock manifest.
 *  - locked-current: the checkout (and the external locked resources) still match the manifest.
 *  - evidence: every kept (and discarded) decision re-derived with the acceptance rule from the
 *    stored evaluations, with the noise the loop had at that point; the stored improvement and
 *    margin and the kept commit's `Evidence:` line match the recomputation.
 *  - diffs: every experiment's stored diff (kept, discarded, crashed, rejected) re-derived from git:
 *    `git diff parent..candidate` (the candidate commit is held by `refs/autoagent/<run>/<seq>`), or,
 *    for a proposal rejected before evaluation, its stored edits against the parent's files.
 *  - ledger: the ledger chain recomputed from the genesis (run id, base commit, lock manifest, study
 *    hash) through every decided experiment's record; each kept commit's `Ledger:` line is the link
 *    before it; with `expectHead`, a head printed earlier is the head now or one of its links.
 *  - rescore (harness runs): every scored trace's stored output re-scored by the benchmark's locked
 *    scorer; each evaluation's metric is the mean of its traces' scores.
 */
import { createHash } from 'node:crypto';
import { existsSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import {
  tracesOf, ledgerGenesis, ledgerLink, roundRepeatsOf, SqliteStore,
  type DB, type RunStore, type RunRow, type ExperimentRow, type EvaluationRow,
} from '../traces/index.ts';
import { StudySchema, type Study } from './study.ts';
import { sha256File, type Manifest } from './lock.ts';
import { globMatcher } from '../base/glob.ts';
import { judge, type Judgement, type AcceptanceRule } from './ratchet.ts';
import { mean, pooledNoise } from '../base/stats.ts';
import { incumbentBefore, incumbentMetrics, keptMessageLines, noiseGroupsBefore, okMetrics, ownEvaluations, roundAlpha } from './acceptance.ts';
import { fmtMetric } from '../base/format.ts';
import { UsageError } from '../base/errors.ts';
import { loadBenchmark } from '../benchmarks/index.ts';
import { dataRoot } from './kinds/harness.ts';
import * as g from '../base/git.ts';

export interface AuditCheck {
  name: string;
  ok: boolean;
  detail: string;
}

export interface AuditReport {
  run: string;
  ok: boolean;
  checks: AuditCheck[];
  /** the ledger chain as recomputed from the store (null: the run predates it) */
  ledger: { head: string; links: number } | null;
  /** each names its check first (`chain: …`), then the experiment, commit, file or trace */
  problems: string[];
}

export interface AuditOptions {
  /** re-score the stored outputs of a harness run's traces (default true) */
  rescore?: boolean;
  /** data root for built-in benchmarks (default: the study's harness.data, else AUTOAGENT_DATA) */
  dataRoot?: string;
  /** a ledger head printed earlier (hex, a prefix of 8 or more digits): it must be the head now, or a link of the chain */
  expectHead?: string;
}

const EMPTY_TREE = '4b825dc642cb6eb9a060e54bf8d69288fbee4904';

async function git(repo: string, args: string[]): Promise<string> {
  return (await g.gitRaw(repo, args)).toString('utf8');
}

async function gitOk(repo: string, args: string[]): Promise<boolean> {
  try {
    await git(repo, args);
    return true;
  } catch {
    return false;
  }
}

export const short = (sha: string | null | undefined): string => (sha ? sha.slice(0, 8) : '(none)');

/** relative agreement, for numbers recomputed from the same stored inputs */
export function close(a: number | null | undefined, b: number | null | undefined, rel = 1e-9): boolean {
  if (a === null || a === undefined || b === null || b === undefined) return a === b || (a == null && b == null);
  if (a === b) return true;
  if (!Number.isFinite(a) || !Number.isFinite(b)) return false;
  return Math.abs(a - b) <= rel * Math.max(Math.abs(a), Math.abs(b));
}

/** The run's study as recorded (budget overrides of resumes included). */
export function runStudy(run: RunRow): Study {
  return StudySchema.parse(JSON.parse(run.study_json));
}

/** The study file's folder, repo-relative ('' at the root): the prefix of the study's globs. */
export function runStudyDir(run: RunRow): string {
  return relative(run.repo, dirname(run.study_path)).split('\\').join('/');
}


/** The incumbent before experiment `seq`: the last kept experiment before it, else the baseline. */
/** A run by id, or by a unique prefix of its id (the store's one lookup). */
export { findRun } from '../traces/index.ts';
export { incumbentBefore, okMetrics } from './acceptance.ts';

/** The run's final incumbent: the last kept experiment, else the baseline. */
export function finalIncumbent(exps: ExperimentRow[]): ExperimentRow | undefined {
  return incumbentBefore(exps, Number.POSITIVE_INFINITY);
}

interface Ctx {
  store: RunStore;
  run: RunRow;
  study: Study;
  studyDir: string;
  manifest: Manifest;
  exps: ExperimentRow[];
  evals: Map<number, EvaluationRow[]>;
  repo: string;
  /** the branch tip, when the branch exists */
  tip: string | null;
  /** commits base..tip, oldest first (empty when the branch is missing or not on the base) */
  commits: string[];
  parents: Map<string, string[]>;
  subjects: Map<string, string>;
  byKeptCommit: Map<string, ExperimentRow>;
  kept: ExperimentRow[];
  /** seq → commit of the run's candidate refs (refs/autoagent/<run>/<seq>) */
  refs: Map<number, string>;
  /** the ledger chain recomputed by checkLedger */
  ledger: { head: string; links: number } | null;
}

interface Part {
  detail: string;
  problems: string[];
}

async function parentsOf(ctx: Ctx, commit: string): Promise<string[]> {
  let p = ctx.parents.get(commit);
  if (!p) {
    const line = (await git(ctx.repo, ['rev-list', '--parents', '-n', '1', commit])).trim();
    p = line.split(/\s+/).slice(1);
    ctx.parents.set(commit, p);
  }
  return p;
}

async function subjectOf(ctx: Ctx, commit: string): Promise<string> {
  let s = ctx.subjects.get(commit);
  if (s === undefined) {
    s = (await git(ctx.repo, ['log', '-1', '--format=%s', commit])).trim();
    ctx.subjects.set(commit, s);
  }
  return s;
}

async function commitExists(repo: string, sha: string): Promise<boolean> {
  return gitOk(repo, ['cat-file', '-e', `${sha}^{commit}`]);
}

async function treeOf(repo: string, sha: string): Promise<string> {
  return (await git(repo, ['rev-parse', `${sha}^{tree}`])).trim();
}

/** how a commit is named in problems */
function label(ctx: Ctx, commit: string): string {
  const e = ctx.byKeptCommit.get(commit);
  return e ? `experiment #${e.seq} (commit ${short(commit)})` : `commit ${short(commit)}`;
}

// ---------------------------------------------------------------------------------------------
// chain

async function checkChain(ctx: Ctx): Promise<Part> {
  const P: string[] = [];
  const { run, repo, kept } = ctx;
  if (!ctx.tip) {
    // a run that ran no experiment, or failed before its baseline, ends without a branch (src/loop.ts dropEmptyBranch)
    const endsEmpty = !ctx.exps.some((e) => e.seq > 0) || !ctx.exps.some((e) => e.seq === 0 && e.decision === 'baseline');
    if (kept.length || !endsEmpty) P.push(`the run branch ${run.branch} is missing from ${repo}${kept.length ? ` (${kept.length} kept experiment(s) have no commits there)` : ''}`);
  } else if (!(await gitOk(repo, ['merge-base', '--is-ancestor', run.base_commit, ctx.tip]))) {
    P.push(`the run branch ${run.branch} (at ${short(ctx.tip)}) does not descend from the run's base commit ${short(run.base_commit)}: it was rewritten`);
  }
  const branchOk = ctx.tip !== null && P.length === 0;
  let prev = run.base_commit;
  for (const c of ctx.commits) {
    const parents = await parentsOf(ctx, c);
    const subject = await subjectOf(ctx, c);
    if (parents.length !== 1 || parents[0] !== prev) {
      P.push(`commit ${short(c)} "${subject}" has parent(s) ${parents.map(short).join(', ') || '(none)'}, but the chain needs ${short(prev)}${prev === run.base_commit ? ' (the base commit)' : ''}`);
    }
    const e = ctx.byKeptCommit.get(c);
    if (!e) {
      const msg = await git(repo, ['log', '-1', '--format=%B', c]);
      const seq = /^Experiment: (\d+)$/m.exec(msg)?.[1];
      const claimed = seq !== undefined && /^Run: (.+)$/m.exec(msg)?.[1]?.trim() === run.id ? ctx.exps.find((x) => x.seq === Number(seq)) : undefined;
      const hint = claimed && claimed.status === 'pending'
        ? ` (experiment #${claimed.seq} is still pending: the run was interrupted during its keep; \`autoagent resume ${run.id}\` finishes it)`
        : ' (added by hand, or its experiment row was changed)';
      P.push(`commit ${short(c)} "${subject}" on ${run.branch} is not the kept commit of any experiment${hint}`);
    } else if (e.decision !== 'kept') {
      P.push(`commit ${short(c)} on ${run.branch} is experiment #${e.seq}'s kept commit, but #${e.seq} is recorded as ${e.decision ?? 'pending'}`);
    }
    prev = c;
  }
  const onBranch = new Set(ctx.commits);
  let expectedParent = run.base_commit;
  let expectedFrom = 'the base commit';
  for (const e of kept) {
    if (!e.kept_commit) {
      P.push(`experiment #${e.seq} is kept but has no kept commit recorded`);
      continue;
    }
    const exists = await commitExists(repo, e.kept_commit);
    if (!exists) {
      P.push(`experiment #${e.seq} is kept (commit ${short(e.kept_commit)}) but that commit is not in the repository`);
    } else if (!onBranch.has(e.kept_commit)) {
      if (branchOk) P.push(`experiment #${e.seq} is kept (commit ${short(e.kept_commit)}) but that commit is not on ${run.branch}`);
      // the branch walk did not see it: its own link in the chain
      const parents = await parentsOf(ctx, e.kept_commit);
      if (parents.length !== 1 || parents[0] !== expectedParent) {
        P.push(`experiment #${e.seq}: kept commit ${short(e.kept_commit)} has parent(s) ${parents.map(short).join(', ') || '(none)'}, but the chain needs ${short(expectedParent)} (${expectedFrom})`);
      }
    }
    if (e.parent_commit !== expectedParent) {
      P.push(`experiment #${e.seq} was evaluated against ${short(e.parent_commit)}, but the incumbent before it was ${short(expectedParent)} (${expectedFrom})`);
    }
    if (e.candidate_commit && exists && (await commitExists(repo, e.candidate_commit))) {
      if ((await treeOf(repo, e.kept_commit)) !== (await treeOf(repo, e.candidate_commit))) {
        P.push(`experiment #${e.seq}: kept commit ${short(e.kept_commit)} does not hold the files that were evaluated (its tree differs from candidate ${short(e.candidate_commit)})`);
      }
    } else if (!e.candidate_commit) {
      P.push(`experiment #${e.seq} is kept but has no candidate commit recorded`);
    }
    expectedParent = e.kept_commit;
    expectedFrom = `experiment #${e.seq}`;
  }
  // order: the kept commits on the branch, in branch order, against seq order
  const branchKept = ctx.commits.filter((c) => ctx.byKeptCommit.get(c)?.decision === 'kept').map((c) => ctx.byKeptCommit.get(c)!.seq);
  const seqOrder = kept.filter((e) => e.kept_commit && onBranch.has(e.kept_commit)).map((e) => e.seq);
  if (branchKept.join(',') !== seqOrder.join(',')) {
    P.push(`the kept commits are out of order on ${run.branch}: experiments ${branchKept.map((s) => `#${s}`).join(', ')} (seq order: ${seqOrder.map((s) => `#${s}`).join(', ')})`);
  }
  return {
    detail: `${run.branch}: ${ctx.commits.length} commit(s) since ${short(run.base_commit)}, ${kept.length} kept experiment(s)${kept.length ? ` (#${kept.map((e) => e.seq).join(', #')})` : ''}`,
    problems: P,
  };
}

/** the commits to look into: the branch's, plus kept commits that are not on it */
async function auditedCommits(ctx: Ctx): Promise<Array<{ commit: string; parent: string }>> {
  const out: Array<{ commit: string; parent: string }> = [];
  for (const c of ctx.commits) out.push({ commit: c, parent: (await parentsOf(ctx, c))[0] ?? EMPTY_TREE });
  const on = new Set(ctx.commits);
  for (const e of ctx.kept) {
    if (e.kept_commit && !on.has(e.kept_commit) && (await commitExists(ctx.repo, e.kept_commit))) {
      out.push({ commit: e.kept_commit, parent: (await parentsOf(ctx, e.kept_commit))[0] ?? EMPTY_TREE });
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// editable-only

async function checkEditableOnly(ctx: Ctx): Promise<Part> {
  const P: string[] = [];
  const isLocked = globMatcher(ctx.study.locked, ctx.studyDir);
  const isEditable = globMatcher(ctx.study.editable, ctx.studyDir);
  const commits = await auditedCommits(ctx);
  let files = 0;
  for (const { commit, parent } of commits) {
    const out = await git(ctx.repo, ['diff', '--name-only', '-z', '--no-renames', parent, commit, '--']);
    const paths = out.split('\0').filter(Boolean);
    files += paths.length;
    if (paths.length === 0) P.push(`${label(ctx, commit)} changes no file`);
    for (const p of paths) {
      if (isLocked(p)) P.push(`${label(ctx, commit)} touches ${p}, which is locked (locked: ${ctx.study.locked.join(', ')})`);
      else if (!isEditable(p)) P.push(`${label(ctx, commit)} touches ${p}, which is not editable (editable: ${ctx.study.editable.join(', ')})`);
    }
  }
  return { detail: `${commits.length} commit(s), ${files} changed path(s), all within ${ctx.study.editable.join(', ')}`, problems: P };
}

// ---------------------------------------------------------------------------------------------
// locked-hashes, locked-current

async function lsTree(repo: string, commit: string): Promise<Map<string, string>> {
  const out = await git(repo, ['ls-tree', '-r', '-z', '--full-tree', commit]);
  const m = new Map<string, string>();
  for (const entry of out.split('\0')) {
    if (!entry) continue;
    const tab = entry.indexOf('\t');
    const [, type, id] = entry.slice(0, tab).split(' ');
    if (type === 'blob') m.set(entry.slice(tab + 1), id!);
  }
  return m;
}

async function checkLockedHashes(ctx: Ctx): Promise<Part> {
  const P: string[] = [];
  const locked = Object.entries(ctx.manifest.files);
  const blobSha = new Map<string, string>();
  const hashBlob = async (id: string) => {
    let h = blobSha.get(id);
    if (!h) {
      h = createHash('sha256').update(await g.gitRaw(ctx.repo, ['cat-file', 'blob', id])).digest('hex');
      blobSha.set(id, h);
    }
    return h;
  };
  const isLocked = globMatcher(ctx.study.locked, ctx.studyDir);
  const baseTree = await lsTree(ctx.repo, ctx.run.base_commit);
  const tracked = locked.filter(([p]) => baseTree.has(p));
  const commits = [{ commit: ctx.run.base_commit, name: `the base commit ${short(ctx.run.base_commit)}` }];
  for (const { commit } of await auditedCommits(ctx)) commits.push({ commit, name: label(ctx, commit) });
  for (const { commit, name } of commits) {
    const tree = commit === ctx.run.base_commit ? baseTree : await lsTree(ctx.repo, commit);
    for (const [p, expected] of tracked) {
      const id = tree.get(p);
      if (!id) {
        P.push(`${name}: locked file ${p} was deleted`);
        continue;
      }
      const got = await hashBlob(id);
      if (got !== expected) P.push(`${name}: locked file ${p} has sha256 ${got.slice(0, 12)}, the run's lock manifest recorded ${expected.slice(0, 12)}`);
    }
    // locked paths the manifest did not know that a commit brought in
    for (const [p, id] of tree) {
      if (p in ctx.manifest.files || commit === ctx.run.base_commit) continue;
      if (isLocked(p) && !baseTree.has(p)) {
        P.push(`${name}: adds ${p}, a locked path absent from the run's lock manifest (blob ${short(id)})`);
      }
    }
  }
  return {
    detail: `${tracked.length} tracked locked file(s) match the manifest in the base and ${commits.length - 1} branch commit(s)`
      + (locked.length > tracked.length ? `; ${locked.length - tracked.length} untracked locked file(s) checked in the checkout only` : ''),
    problems: P,
  };
}

function checkLockedCurrent(ctx: Ctx): Part {
  const P: string[] = [];
  const check = (abs: string, shown: string, expected: string) => {
    if (!existsSync(abs) || !statSync(abs).isFile()) return void P.push(`locked file ${shown} is missing now (the run recorded sha256 ${expected.slice(0, 12)})`);
    const got = sha256File(abs);
    if (got !== expected) P.push(`locked file ${shown} changed since the run started (sha256 ${expected.slice(0, 12)} → ${got.slice(0, 12)})`);
  };
  const files = Object.entries(ctx.manifest.files);
  const external = Object.entries(ctx.manifest.external);
  for (const [rel, h] of files) check(join(ctx.repo, rel), rel, h);
  for (const [abs, h] of external) check(abs, abs, h);
  return { detail: `${files.length} locked file(s) in ${ctx.repo}${external.length ? ` and ${external.length} external` : ''} match the manifest`, problems: P };
}

// ---------------------------------------------------------------------------------------------
// evidence

interface Variant {
  name: string;
  judgement: Judgement;
}

/** what a judgement saw: the incumbent's metrics and the noise groups pooled (before the candidate's own) */
export interface Seen {
  incumbent: number[];
  before: number[][];
}

/**
 * Re-derive one experiment's judgements as the loop computed them (src/acceptance.ts judgeCandidate):
 *  - screen: the first evaluation against what the incumbent and the noise groups had as of the
 *    round's start (`screen`: the loop's variants, see below);
 *  - final (confirm_repeats > 0): the mean of all evaluations against the incumbent as of the
 *    round, noise from the earlier groups plus the candidate's own evaluations, once.
 */
export function rejudge(
  direction: 'minimize' | 'maximize', rule: AcceptanceRule, confirmRepeats: number,
  seen: { screen: Array<Seen & { name: string }>; final: Seen }, candidate: number[], screen: number,
): { screen: Variant[]; final: Variant[] } {
  const j = (cand: number[], incumbent: number[], groups: number[][]) => judge(direction, incumbent, cand, pooledNoise(groups), rule);
  const screenV: Variant[] = seen.screen.map((s) => ({ name: s.name, judgement: j([screen], s.incumbent, s.before) }));
  if (confirmRepeats === 0) return { screen: screenV, final: screenV };
  const f = seen.final;
  return { screen: screenV, final: [{ name: 'loop', judgement: j(candidate, f.incumbent, candidate.length >= 2 ? [...f.before, candidate] : f.before) }] };
}

/**
 * What a screen of `e` saw: as of its round's start (the loop since 2026-12-02), or — for runs
 * recorded before — after the round's fresh incumbent repeat, which then ran beside the screens.
 */
function screenViews(exps: ExperimentRow[], evals: Map<number, EvaluationRow[]>, e: ExperimentRow, final: Seen): Array<Seen & { name: string }> {
  return [
    { name: 'loop', incumbent: incumbentMetrics(exps, evals, e, 'screen').metrics, before: noiseGroupsBefore(exps, evals, e, 'screen') },
    // the older visibility is the final judgement's (the round's fresh repeat included)
    { name: 'loop before 2026-12-02', ...final },
  ];
}

function storedMatches(e: ExperimentRow, j: Judgement): boolean {
  return close(e.improvement, j.improvement) && close(e.margin, j.margin);
}

async function checkEvidence(ctx: Ctx): Promise<Part> {
  const P: string[] = [];
  const { study, run, exps, evals } = ctx;
  const rule: AcceptanceRule = { alpha: study.acceptance.alpha, minDelta: study.acceptance.min_delta };
  const c = study.acceptance.confirm_repeats;
  const dir = run.direction;
  let judged = 0;
  let nEvals = 0;

  const base = exps.find((e) => e.seq === 0);
  if (!base) {
    P.push('the run has no baseline experiment (#0)');
  } else if (base.decision === 'baseline') {
    const all = ownEvaluations(evals.get(base.id), base);
    const m = okMetrics(all);
    nEvals += m.length;
    if (all.some((v) => v.status !== 'ok')) P.push(`baseline #0 has a non-ok evaluation (repeat ${all.find((v) => v.status !== 'ok')!.repeat})`);
    if (m.length < study.acceptance.baseline_repeats) P.push(`baseline #0 has ${m.length} ok evaluation(s), the study asks for ${study.acceptance.baseline_repeats}`);
    if (!close(base.metric, mean(m))) P.push(`baseline #0: stored metric ${fmtMetric(base.metric)} is not the mean ${fmtMetric(mean(m))} of its evaluations`);
  }

  for (const e of exps) {
    if (e.seq === 0 || (e.decision !== 'kept' && e.decision !== 'discarded')) continue;
    const vs = ownEvaluations(evals.get(e.id), e);
    const who = `experiment #${e.seq}${e.kept_commit ? ` (commit ${short(e.kept_commit)})` : ''}`;
    // the incumbent as of this experiment's round (it may have had fresh repeats in later rounds)
    const { inc, metrics: incM } = incumbentMetrics(exps, evals, e);
    const m = okMetrics(vs);
    const screenEval = vs.find((v) => v.repeat === 0);
    const telemetry = screenEval?.telemetry ? (JSON.parse(screenEval.telemetry) as Record<string, unknown>) : {};
    if (e.decision === 'discarded' && typeof telemetry.screened_out === 'string') continue; // the harness minibatch screen: no judgement
    nEvals += vs.length;

    if (e.decision === 'kept') {
      if (vs.length === 0) {
        P.push(`${who} is kept but has no evaluations in the store`);
        continue;
      }
      for (const v of vs) if (v.status !== 'ok' || v.metric === null) P.push(`${who} is kept but its evaluation repeat ${v.repeat} is ${v.status}${v.reason ? ` (${v.reason})` : ''}`);
      const repeats = vs.map((v) => v.repeat).sort((a, b) => a - b).join(',');
      const want = Array.from({ length: 1 + c }, (_, i) => i).join(',');
      if (repeats !== want) P.push(`${who} has evaluation repeat(s) ${repeats || '(none)'}; a keep needs the screen and ${c} confirmation(s): ${want}`);
    }
    if (!inc || incM.length === 0) {
      P.push(`${who}: its incumbent ${inc ? `#${inc.seq}` : '(none)'} has no ok evaluations to compare with`);
      continue;
    }
    if (!screenEval || screenEval.status !== 'ok' || screenEval.metric === null) {
      if (e.decision === 'discarded') P.push(`${who} is discarded but has no ok first evaluation (a failed one is a crash or timeout)`);
      continue;
    }
    judged++;
    const before = noiseGroupsBefore(exps, evals, e);
    // several candidates per round: each is tested at α / k (src/loop.ts roundAlpha)
    const v = rejudge(dir, { ...rule, alpha: roundAlpha(rule.alpha, exps, e) }, c, { screen: screenViews(exps, evals, e, { incumbent: incM, before }), final: { incumbent: incM, before } }, m, screenEval.metric);
    const screenPass = v.screen.find((x) => x.judgement.pass);

    if (e.decision === 'kept') {
      if (!screenPass) {
        const j = v.screen[0]!.judgement;
        P.push(`${who} is kept, but its first evaluation ${fmtMetric(screenEval.metric)} does not pass the screen against incumbent #${inc.seq}: improvement ${fmtMetric(j.improvement)} ≤ margin ${fmtMetric(j.margin)}`);
      }
      // the variant whose numbers were stored; else the loop's own
      const chosen = v.final.find((x) => storedMatches(e, x.judgement)) ?? v.final[0]!;
      const j = chosen.judgement;
      if (!j.pass) {
        P.push(`${who} is kept, but the acceptance rule fails on its stored evaluations: improvement ${fmtMetric(j.improvement)} ≤ margin ${fmtMetric(j.margin)} (${m.length} evaluation(s) ${m.map(fmtMetric).join(', ')} vs incumbent #${inc.seq}'s ${incM.map(fmtMetric).join(', ')})`);
      }
      if (!close(e.metric, mean(m))) P.push(`${who}: stored metric ${fmtMetric(e.metric)} ≠ the mean ${fmtMetric(mean(m))} of its evaluations`);
      if (!close(e.incumbent_metric, j.incumbentMean)) P.push(`${who}: stored incumbent metric ${fmtMetric(e.incumbent_metric)} ≠ recomputed ${fmtMetric(j.incumbentMean)} (incumbent #${inc.seq})`);
      if (!close(e.improvement, j.improvement)) P.push(`${who}: stored improvement ${e.improvement} ≠ recomputed ${j.improvement}`);
      if (!close(e.margin, j.margin)) {
        const noise = pooledNoise(c > 0 && m.length >= 2 ? [...before, m] : before);
        P.push(`${who}: stored margin ${e.margin} ≠ recomputed ${j.margin} (pooled sd ${fmtMetric(noise.sd)}, df ${noise.df})`);
      }
      // the kept commit's message: the Evidence line (any of the loop's noise variants)
      if (e.kept_commit && (await commitExists(ctx.repo, e.kept_commit))) {
        const msg = await git(ctx.repo, ['log', '-1', '--format=%B', e.kept_commit]);
        const lines = msg.split('\n').map((l) => l.trimEnd());
        const expected = v.final.map((x) => keptMessageLines(run.metric_name, run.id, e.seq, x.judgement, m, incM));
        const got = (prefix: string) => lines.find((l) => l.startsWith(prefix));
        const ev = got('Evidence:');
        if (!ev) P.push(`${who}: the commit message has no Evidence line`);
        else if (!expected.some((x) => x.evidence === ev)) P.push(`${who}: the commit's "${ev}" does not match the stored evaluations ("${expected[0]!.evidence}")`);
        if (!expected.some((x) => x.title === lines[0])) P.push(`${who}: the commit's title "${lines[0]}" does not match the stored evaluations ("${expected[0]!.title}")`);
        if (got('Run:') !== expected[0]!.run) P.push(`${who}: the commit's Run line is "${got('Run:') ?? '(none)'}", expected "${expected[0]!.run}"`);
        if (got('Experiment:') !== expected[0]!.experiment) P.push(`${who}: the commit's Experiment line is "${got('Experiment:') ?? '(none)'}", expected "${expected[0]!.experiment}"`);
      }
    } else {
      // discarded: some judgement the loop made must fail, and the stored numbers must be that judgement's
      // the judgements that could have discarded it: a failed screen, or (after a passed screen) a failed confirmation
      const failing = [...v.screen.filter((x) => !x.judgement.pass), ...(screenPass && c > 0 ? v.final.filter((x) => !x.judgement.pass) : [])];
      // or it passed and lost its round to a kept candidate that did better
      const winner = e.round === null ? undefined : exps.find((x) => x.round === e.round && x.decision === 'kept' && x.seq !== e.seq);
      const lostRound = failing.length === 0 && winner !== undefined && (winner.improvement ?? -Infinity) >= (v.final[0]!.judgement.improvement);
      if (lostRound) {
        if (!storedMatches(e, v.final[0]!.judgement)) P.push(`${who} (discarded in its round): stored improvement ${e.improvement} / margin ${e.margin} ≠ recomputed ${v.final[0]!.judgement.improvement} / ${v.final[0]!.judgement.margin}`);
      } else if (failing.length === 0) {
        const j = (c > 0 ? v.final[0]! : v.screen[0]!).judgement;
        P.push(`${who} is recorded as discarded, but the acceptance rule passes on its stored evaluations (improvement ${fmtMetric(j.improvement)} > margin ${fmtMetric(j.margin)} against incumbent #${inc.seq})`);
      } else if (e.improvement !== null && !failing.some((x) => storedMatches(e, x.judgement))) {
        const j = failing[0]!.judgement;
        P.push(`${who} (discarded): stored improvement ${e.improvement} / margin ${e.margin} ≠ recomputed ${j.improvement} / ${j.margin}`);
      }
    }
  }
  const kept = exps.filter((e) => e.decision === 'kept').length;
  const flags = [run.self_reported ? '; the metric is SELF-REPORTED by candidate code' : '', run.unsafe_no_sandbox ? '; ran WITHOUT a sandbox' : ''].join('');
  return { detail: `${judged} decision(s) (${kept} kept) re-derived from ${nEvals} stored evaluation(s); α ${rule.alpha}, min_delta ${rule.minDelta}, confirm_repeats ${c}${flags}`, problems: P };
}

// ---------------------------------------------------------------------------------------------
// diffs

/** where two texts first differ, for a problem line */
function firstDifference(stored: string, derived: string): string {
  const a = stored.split('\n');
  const b = derived.split('\n');
  let i = 0;
  while (i < a.length && i < b.length && a[i] === b[i]) i++;
  const cut = (x: string | undefined) => (x === undefined ? '(end)' : JSON.stringify(x.length > 60 ? x.slice(0, 59) + '…' : x));
  return `line ${i + 1}: stored ${cut(a[i])}, git ${cut(b[i])}`;
}

/** Does `patch` turn `parent`'s tree into exactly `candidate`'s? (a stored diff formatted by another git configuration) */
async function patchGives(repo: string, parent: string, candidate: string, patch: string): Promise<boolean> {
  if (!patch.trim()) return (await treeOf(repo, parent)) === (await treeOf(repo, candidate));
  const dir = mkdtempSync(join(tmpdir(), 'autoagent-audit-'));
  try {
    const env = { GIT_INDEX_FILE: join(dir, 'index') };
    writeFileSync(join(dir, 'patch'), patch.endsWith('\n') ? patch : patch + '\n');
    const want = await treeOf(repo, candidate);
    // a/ b/ prefixes, or none (diff.noprefix)
    for (const strip of ['-p1', '-p0']) {
      await g.gitRaw(repo, ['read-tree', parent], { env });
      try {
        await g.gitRaw(repo, ['apply', '--cached', strip, join(dir, 'patch')], { env });
      } catch {
        continue;
      }
      if ((await g.gitRaw(repo, ['write-tree'], { env })).toString('utf8').trim() === want) return true;
    }
    return false;
  } catch {
    return false;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** A run made by this version: its baseline has a ledger link (and every candidate a ref). */
function madeWithLedger(ctx: Ctx): boolean {
  return ctx.exps.find((e) => e.seq === 0)?.chain != null;
}

async function checkDiffs(ctx: Ctx): Promise<Part> {
  const P: string[] = [];
  const { run, repo, study, studyDir } = ctx;
  const isLocked = globMatcher(study.locked, studyDir);
  const editable = globMatcher(study.editable, studyDir);
  const isEditable = (p: string) => editable(p) && !isLocked(p);
  // candidates need their ref from the first one that has one (a run resumed by a newer autoagent: from there on)
  const withRef = [...ctx.refs.keys()];
  const refsFrom = madeWithLedger(ctx) ? 1 : withRef.length ? Math.min(...withRef) : Infinity;
  let fromGit = 0;
  let fromEdits = 0;
  let reformatted = 0;
  const gone: number[] = [];
  for (const e of ctx.exps) {
    const who = `experiment #${e.seq}${e.decision ? ` (${e.decision})` : ' (pending)'}`;
    if (e.seq === 0) {
      if (e.diff !== '') P.push(`baseline #0 has a stored diff; the baseline changes nothing`);
      if (e.candidate_commit !== run.base_commit) P.push(`baseline #0 records candidate ${short(e.candidate_commit)}, not the base commit ${short(run.base_commit)}`);
      continue;
    }
    if (!(await commitExists(repo, e.parent_commit))) {
      P.push(`${who}: its parent commit ${short(e.parent_commit)} is not in the repository: its diff cannot be re-derived`);
      continue;
    }
    if (e.candidate_commit === null) {
      // rejected before evaluation: the loop diffed its edits against the parent's editable files
      let edits: Array<{ path: string; content: string }>;
      try {
        edits = JSON.parse(e.edits);
        if (!Array.isArray(edits) || !edits.every((x) => typeof x?.path === 'string' && typeof x?.content === 'string')) throw new Error('not a list of {path, content}');
      } catch (err) {
        P.push(`${who}: its stored edits are unreadable (${(err as Error).message}): its diff cannot be re-derived`);
        continue;
      }
      const tracked = new Set(await g.trackedFiles(repo, e.parent_commit));
      const before: Record<string, string> = {};
      for (const x of edits) if (tracked.has(x.path) && isEditable(x.path)) before[x.path] = await g.showFile(repo, e.parent_commit, x.path);
      const derived = await g.diffEdits(before, edits);
      fromEdits++;
      if (derived !== e.diff) P.push(`${who}: the stored diff is not the diff of its stored edits against ${short(e.parent_commit)} (${firstDifference(e.diff, derived)})`);
      continue;
    }
    const ref = ctx.refs.get(e.seq);
    const refName = g.candidateRef(run.id, e.seq);
    if (ref === undefined && e.seq >= refsFrom) {
      P.push(`${who}: its candidate ref ${refName} is missing${(await commitExists(repo, e.candidate_commit)) ? ' (the commit is still there, but `git gc` may remove it)' : ''}`);
    } else if (ref !== undefined && ref !== e.candidate_commit) {
      P.push(`${who}: its candidate ref ${refName} points at ${short(ref)}, but the store records candidate ${short(e.candidate_commit)}`);
    }
    let to = e.candidate_commit;
    if (!(await commitExists(repo, to))) {
      // a kept commit holds the candidate's tree on the same parent: the diff is re-derived from it
      const viaKept = e.kept_commit && (await commitExists(repo, e.kept_commit)) ? e.kept_commit : null;
      if (e.seq >= refsFrom) P.push(`candidate commit of #${e.seq} is missing (${short(e.candidate_commit)}${ref === undefined ? `, no ${refName}` : ''})${viaKept ? '' : ': its stored diff cannot be re-derived'}`);
      else if (!viaKept) gone.push(e.seq);
      if (!viaKept) continue;
      to = viaKept;
    }
    const derived = await g.diff(repo, e.parent_commit, to);
    fromGit++;
    if (derived === e.diff) continue;
    if (await patchGives(repo, e.parent_commit, to, e.diff)) {
      reformatted++; // the same change, written by git with other settings
      continue;
    }
    P.push(`${who}: the stored diff is not \`git diff ${short(e.parent_commit)} ${short(to)}\` (${firstDifference(e.diff, derived)})`);
  }
  // a candidate ref with no experiment: its row was removed (a proposal killed before its row was written leaves the next seq only)
  const seqs = new Set(ctx.exps.map((e) => e.seq));
  const next = ctx.exps.length ? Math.max(...seqs) + 1 : 0;
  for (const [seq, sha] of ctx.refs) {
    if (!seqs.has(seq) && seq !== next) P.push(`${g.candidateRef(run.id, seq)} holds candidate ${short(sha)}, but the store has no experiment #${seq}: its row was removed`);
  }
  const notes = [
    reformatted ? `; ${reformatted} stored diff(s) formatted differently but applying to exactly the candidate's files` : '',
    gone.length ? `; the candidate commits of #${gone.join(', #')} are gone (the run predates candidate refs): not re-derived` : '',
  ].join('');
  return { detail: `${fromGit} stored diff(s) re-derived from git, ${fromEdits} rejected proposal(s) from their stored edits${notes}`, problems: P };
}

// ---------------------------------------------------------------------------------------------
// ledger

const head16 = (h: string | null | undefined) => (h ? `${h.slice(0, 16)}…` : '(none)');

function ledgerLineOf(message: string): string | null {
  return /^Ledger: ([0-9a-f]+)\s*$/m.exec(message)?.[1] ?? null;
}

async function checkLedger(ctx: Ctx, expectHead: string | undefined): Promise<Part> {
  const P: string[] = [];
  const { run, exps, evals, repo } = ctx;
  const genesis = ledgerGenesis(run);
  const lines = new Map<number, string | null>();
  for (const e of ctx.kept) {
    if (e.kept_commit && (await commitExists(repo, e.kept_commit))) lines.set(e.seq, ledgerLineOf(await git(repo, ['log', '-1', '--format=%B', e.kept_commit])));
  }
  const chained = exps.filter((e) => e.chain !== null).sort((a, b) => a.chain_pos! - b.chain_pos!);
  if (chained.length === 0) {
    const signs = [
      [...lines.values()].some((l) => l !== null) ? 'its kept commits carry Ledger lines' : '',
      ctx.refs.size ? `it has candidate refs (${g.candidateRef(run.id, [...ctx.refs.keys()][0]!)})` : '',
    ].filter(Boolean);
    if (signs.length) P.push(`no experiment has a ledger link, but ${signs.join(' and ')}: the chain was removed from the store`);
    if (expectHead) P.push(`--expect-head ${expectHead}: the run has no ledger chain to check it against`);
    return { detail: 'no ledger chain (run predates it)', problems: P };
  }
  // positions 1..n, one link each
  chained.forEach((e, i) => {
    if (e.chain_pos !== i + 1 && P.length === 0) P.push(`ledger position ${i + 1} is ${i > 0 && chained[i - 1]!.chain_pos === e.chain_pos ? `held by both #${chained[i - 1]!.seq} and #${e.seq}` : `missing (#${e.seq} is at ${e.chain_pos})`}: links were removed or reordered`);
  });
  // decided experiments without a link: only those decided before the chain began (a run resumed by a newer autoagent)
  const first = chained.reduce((a, b) => (b.seq < a.seq ? b : a));
  const legacy: number[] = [];
  for (const e of exps) {
    if (e.status === 'pending' && e.chain !== null) P.push(`experiment #${e.seq} is pending but has a ledger link`);
    if (e.status !== 'decided' || e.chain !== null) continue;
    if (e.seq < first.seq || (e.round !== null && e.round === first.round)) legacy.push(e.seq);
    else P.push(`experiment #${e.seq} is ${e.decision} but has no ledger link: its link was removed from the store`);
  }
  // recompute from the genesis; name the first link that does not follow
  const links: string[] = [];
  let prev = genesis;
  let broken = false;
  chained.forEach((e, i) => {
    const link = ledgerLink(prev, e, evals.get(e.id) ?? [], roundRepeatsOf(exps, evals, e));
    links.push(link);
    if (!broken && link !== e.chain) {
      broken = true;
      const from = i === 0 ? "the run's genesis (its id, base commit, lock manifest and study hash)" : `#${chained[i - 1]!.seq}'s link`;
      P.push(`the chain breaks at experiment #${e.seq} (link ${i + 1} of ${chained.length}): its stored link ${head16(e.chain)} does not follow from ${from} and its record (recomputed ${head16(link)}): #${e.seq}'s record${i ? ', or an earlier one with its link,' : " or the run's start"} was changed after the decision`);
    }
    prev = link;
  });
  const head = links[links.length - 1]!;
  ctx.ledger = { head, links: links.length };
  // each kept commit names the link before its own (a keep finished on resume: before its round's other candidates)
  const pos = new Map(chained.map((e, i) => [e.seq, i]));
  let lineChecked = 0;
  for (const e of ctx.kept) {
    const line = lines.get(e.seq);
    const i = pos.get(e.seq);
    if (line === undefined || i === undefined) continue;
    if (line === null) {
      P.push(`experiment #${e.seq}: its kept commit ${short(e.kept_commit)} has no Ledger line`);
      continue;
    }
    let j = i - 1;
    while (j >= 0 && links[j] !== line && chained[j]!.round !== null && chained[j]!.round === e.round) j--;
    lineChecked++;
    if ((j >= 0 ? links[j] : genesis) !== line) {
      P.push(`experiment #${e.seq}: its kept commit ${short(e.kept_commit)} says "Ledger: ${head16(line)}", but the link before it is ${head16(i > 0 ? links[i - 1] : genesis)}: the store or the commit was rewritten`);
    }
  }
  let expectNote = '';
  if (expectHead) {
    const x = expectHead.toLowerCase();
    const k = head.startsWith(x) ? links.length - 1 : links.findIndex((l) => l.startsWith(x));
    if (k === links.length - 1) expectNote = `; the head is the expected ${x}`;
    else if (k >= 0) expectNote = `; the expected head ${x} is link ${k + 1} of ${links.length} (#${chained[k]!.seq}): the ledger grew by ${links.length - 1 - k} decision(s) since`;
    else P.push(`--expect-head ${x} is not a link of this run's ledger chain (its head is now ${head16(head)}): the ledger was rewritten since that head was printed`);
  }
  return {
    detail: `${links.length} decision(s) chained from the run's genesis, head ${head.slice(0, 16)}; ${lineChecked} kept commit(s) carry the link before them`
      + (legacy.length ? `; #${legacy.join(', #')} predate the chain (the run was resumed by a newer autoagent)` : '') + expectNote,
    problems: P,
  };
}

// ---------------------------------------------------------------------------------------------
// rescore

async function pool<T>(items: T[], n: number, fn: (x: T) => Promise<void>): Promise<void> {
  let i = 0;
  await Promise.all(Array.from({ length: Math.min(n, items.length) }, async () => {
    while (i < items.length) await fn(items[i++]!);
  }));
}

async function checkRescore(ctx: Ctx, opts: AuditOptions): Promise<Part> {
  const P: string[] = [];
  const s = ctx.study.harness!;
  const base = join(ctx.repo, ctx.studyDir);
  const data = opts.dataRoot ? resolve(opts.dataRoot) : dataRoot(s.data, base);
  const local = resolve(base, s.benchmark);
  const b = await loadBenchmark(existsSync(join(local, 'benchmark.yaml')) ? local : s.benchmark, { dataRoot: data });
  const tasks = new Map(b.tasks.map((t) => [t.id, t]));
  // a store that keeps no traces has none to re-score (it takes no harness run: src/loop.ts)
  const traces = ctx.store.sqlite ? tracesOf(ctx.store.sqlite, { runId: ctx.run.id }).filter((t) => t.finalized) : [];
  const where = (t: (typeof traces)[number]) => `trace ${t.id} (task ${t.task_id}, ${t.experiment_seq !== null && t.experiment_seq >= 0 ? `experiment #${t.experiment_seq}` : `group ${t.group_id}`}, repeat ${t.repeat})`;
  let rescored = 0;
  await pool(traces, 4, async (t) => {
    if (t.status !== 'ok') {
      if (t.score !== null && t.score !== 0) P.push(`${where(t)}: the task ${t.status === 'timeout' ? 'timed out' : 'failed'} but has score ${t.score} (a failed task scores 0)`);
      return;
    }
    if (t.output === null || t.score === null) return;
    const task = tasks.get(t.task_id);
    if (!task) return void P.push(`${where(t)}: benchmark ${b.name} has no task ${t.task_id}`);
    let score = 0;
    let pass = false;
    let failed: string | null = null;
    try {
      const r = await b.scorer.score(task, b.answers.get(task.id), t.output, { unsafeNoSandbox: ctx.run.unsafe_no_sandbox === 1, timeoutMs: 10_000 });
      score = r.score;
      pass = r.pass;
    } catch (e) {
      failed = (e as Error).message.split('\n')[0]!; // the loop scores a scorer failure 0
    }
    rescored++;
    if (Math.abs(score - t.score) > 1e-9) {
      P.push(`${where(t)}: stored score ${t.score}, but the locked ${b.scorer.type} scorer ${failed ? `failed on its stored output (${failed})` : `gives ${score} for its stored output`}`);
    }
    else if (t.pass !== null && t.pass !== pass) P.push(`${where(t)}: stored pass ${t.pass}, but the locked scorer says ${pass}`);
  });
  // each harness evaluation's metric is the mean of its tasks' scores (a task run again after an interrupted evaluation: its latest trace)
  let checked = 0;
  const byGroup = new Map<string, Map<string, number>>();
  for (const t of traces) {
    const m = byGroup.get(t.group_id) ?? new Map<string, number>();
    m.set(t.task_id, t.score ?? 0); // tracesOf orders a task's traces by write order: the last one wins
    byGroup.set(t.group_id, m);
  }
  for (const e of ctx.exps) {
    for (const v of ctx.evals.get(e.id) ?? []) {
      if (v.status !== 'ok' || v.metric === null) continue;
      const scores = byGroup.get(`${ctx.run.id}/${e.seq}/${v.repeat}`);
      if (!scores) {
        P.push(`experiment #${e.seq} evaluation repeat ${v.repeat}: no traces in the store (metric ${fmtMetric(v.metric)})`);
        continue;
      }
      checked++;
      const m = mean([...scores.values()]);
      if (!close(m, v.metric)) P.push(`experiment #${e.seq} evaluation repeat ${v.repeat}: metric ${fmtMetric(v.metric)} ≠ the mean ${fmtMetric(m)} of its ${scores.size} traces' scores`);
    }
  }
  P.sort();
  return { detail: `${rescored} trace output(s) re-scored with ${b.name}'s locked ${b.scorer.type} scorer; ${checked} evaluation metric(s) = mean of their trace scores`, problems: P };
}

// ---------------------------------------------------------------------------------------------

/**
 * `run`: an id (or unique prefix), or the run itself as placed by resolveRunPaths (a copied repository).
 * `from`: the store (any RunStore), or the SQLite handle of a store file.
 */
export async function auditRun(from: RunStore | DB, runOrId: string | RunRow, opts: AuditOptions = {}): Promise<AuditReport> {
  const store = 'prepare' in from ? new SqliteStore(from) : from;
  if (opts.expectHead !== undefined && !/^[0-9a-f]{8,64}$/i.test(opts.expectHead)) {
    throw new UsageError(`--expect-head ${opts.expectHead}: expected the ledger head a run printed (8 to 64 hex digits)`);
  }
  const run = typeof runOrId === 'string' ? store.findRun(runOrId) : runOrId;
  const exps = store.listExperiments(run.id);
  const checks: AuditCheck[] = [];
  const problems: string[] = [];
  const add = (name: string, part: Part) => {
    checks.push({ name, ok: part.problems.length === 0, detail: part.problems.length ? `${part.problems.length} problem(s); ${part.detail}` : part.detail });
    problems.push(...part.problems.map((p) => `${name}: ${p}`));
  };
  if (!existsSync(run.repo) || !(await gitOk(run.repo, ['rev-parse', '--git-dir']))) {
    add('chain', { detail: 'no repository', problems: [`the run's repository ${run.repo} is gone`] });
    return { run: run.id, ok: false, checks, ledger: null, problems };
  }
  const tip = (await gitOk(run.repo, ['rev-parse', '--verify', '--quiet', `refs/heads/${run.branch}`]))
    ? (await git(run.repo, ['rev-parse', `refs/heads/${run.branch}`])).trim()
    : null;
  const onBase = tip ? await gitOk(run.repo, ['merge-base', '--is-ancestor', run.base_commit, tip]) : false;
  const commits = tip && onBase ? (await git(run.repo, ['rev-list', '--reverse', `${run.base_commit}..${tip}`])).split('\n').filter(Boolean) : [];
  const ctx: Ctx = {
    store, run, study: runStudy(run), studyDir: runStudyDir(run), manifest: JSON.parse(run.lock_manifest) as Manifest,
    exps, evals: store.evaluationsOfRun(run.id), repo: run.repo, tip, commits, parents: new Map(), subjects: new Map(),
    byKeptCommit: new Map(exps.filter((e) => e.kept_commit).map((e) => [e.kept_commit!, e])),
    kept: exps.filter((e) => e.decision === 'kept'),
    refs: await candidateRefs(run.repo, run.id),
    ledger: null,
  };
  const guarded = async (name: string, f: () => Promise<Part> | Part) => {
    try {
      add(name, await f());
    } catch (e) {
      add(name, { detail: 'could not be checked', problems: [(e as Error).message.split('\n')[0]!] });
    }
  };
  await guarded('chain', () => checkChain(ctx));
  await guarded('editable-only', () => checkEditableOnly(ctx));
  await guarded('locked-hashes', () => checkLockedHashes(ctx));
  await guarded('locked-current', () => checkLockedCurrent(ctx));
  await guarded('evidence', () => checkEvidence(ctx));
  await guarded('diffs', () => checkDiffs(ctx));
  await guarded('ledger', () => checkLedger(ctx, opts.expectHead));
  if (run.kind !== 'harness') {
    add('rescore', { detail: `not applicable: a ${run.kind} run has no traces to re-score`, problems: [] });
  } else if (opts.rescore === false) {
    add('rescore', { detail: 'skipped (rescore off)', problems: [] });
  } else {
    await guarded('rescore', () => checkRescore(ctx, opts));
  }
  return { run: run.id, ok: problems.length === 0, checks, ledger: ctx.ledger, problems };
}

/** seq → commit of `refs/autoagent/<run>/<seq>` */
async function candidateRefs(repo: string, runId: string): Promise<Map<number, string>> {
  const out = await git(repo, ['for-each-ref', '--format=%(refname) %(objectname)', `refs/autoagent/${runId}/`]);
  const m = new Map<number, string>();
  for (const line of out.split('\n')) {
    const [name, sha] = line.split(' ');
    const seq = name?.slice(`refs/autoagent/${runId}/`.length);
    if (sha && seq && /^\d+$/.test(seq)) m.set(Number(seq), sha);
  }
  return m;
}

export function formatAudit(r: AuditReport): string {
  const width = Math.max(...r.checks.map((c) => c.name.length));
  const lines = [`audit of run ${r.run}: ${r.ok ? 'ok — every check passed' : `FAILED — ${r.problems.length} problem(s)`}`];
  for (const c of r.checks) lines.push(`  ${c.ok ? '✓' : '✗'} ${c.name.padEnd(width)}  ${c.detail}`);
  if (r.problems.length) {
    lines.push('', 'problems:');
    for (const p of r.problems) lines.push(`  - ${p}`);
  }
  return lines.join('\n');
}

/** used by finalize: the locked files of the run and which are tracked at a commit */
export async function trackedAt(repo: string, commit: string): Promise<Set<string>> {
  return new Set((await lsTree(repo, commit)).keys());
}
