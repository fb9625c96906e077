/** What `log`, `show` and `status` print, as data (for --json) and as text. */
import {
  listExperiments, evaluationsOfRun, ownEvaluations, evaluationsOf, listRuns, getExperiment, pickRun, getTrace, proposalOf, renderTranscript, ledgerHead,
  listFinalizations, spendByRole, SqliteStore,
  type DB, type RunRow, type ExperimentRow, type EvaluationRow,
} from '../traces/index.ts';
import { UsageError } from '../base/errors.ts';
import { runNoise, effectiveStatus } from './loop.ts';
import { fmtMetric, fmtDelta, fmtDuration, fmtTokens, table, telemetryText } from '../base/format.ts';
import { runMetricFmt } from './summary.ts';
import { mean, stddev } from '../base/stats.ts';
import { UNTRUSTED_SPLIT } from './finalize.ts';
import { storedContamination } from './contamination.ts';

/** a run by id or unique prefix, else the latest (the store's one lookup: traces/ledger.ts) */
export { pickRun } from '../traces/index.ts';

function flags(run: RunRow): string[] {
  const f: string[] = [];
  if (run.self_reported) f.push('SELF-REPORTED metric (read from candidate output, not a locked evaluator)');
  if (run.unsafe_no_sandbox) f.push('UNSAFE: ran without a sandbox');
  return f;
}

export interface LedgerRow {
  id: string;
  seq: number;
  repeat: number | null;
  commit: string | null;
  metric: number | null;
  delta: number | null;
  status: string;
  description: string;
  /** what proposing it cost (llm / hybrid proposers), null when nothing */
  proposal_tokens: number | null;
  proposal_cost_usd: number | null;
  /** the memorisation check flagged its diff (src/contamination.ts): warn or reject, with one line for people */
  contamination: { verdict: string; summary: string } | null;
  /** its round (the candidates proposed from one incumbent) and the slots its evaluations ran in */
  round: number | null;
  slots: number[];
}

function contaminationRecord(e: ExperimentRow): unknown {
  const c = storedContamination(e.contamination);
  return c === 'unreadable' ? { unreadable: e.contamination } : c;
}

/** an experiment's memorisation-check record, as ledger rows show it */
function contaminationOf(e: ExperimentRow): { verdict: string; summary: string } | null {
  const c = storedContamination(e.contamination);
  if (c === 'unreadable') return { verdict: 'warn', summary: '(an unreadable record)' };
  return c && { verdict: c.verdict ?? 'warn', summary: c.summary ?? '' };
}

export function ledgerData(db: DB, run: RunRow) {
  const exps = listExperiments(db, run.id);
  const evals = evaluationsOfRun(db, run.id);
  const noise = runNoise(new SqliteStore(db), run.id);
  const base = exps.find((e) => e.seq === 0);
  const baseMetrics = (base ? ownEvaluations(evals.get(base.id), base) : []).filter((v) => v.status === 'ok').map((v) => v.metric!);
  const rows: LedgerRow[] = [];
  for (const e of exps) {
    if (e.seq === 0) {
      for (const v of evals.get(e.id) ?? []) {
        rows.push({
          id: `0.${v.repeat + 1}`, seq: 0, repeat: v.repeat + 1, commit: e.parent_commit.slice(0, 8), metric: v.metric, delta: null,
          status: v.status === 'ok' ? (v.round !== null ? 'repeat' : 'baseline') : v.status,
          description: v.round !== null ? `fresh repeat of the incumbent in round ${v.round} (seed ${v.seed})` : `baseline repeat ${v.repeat + 1} (seed ${v.seed})${v.reason ? ': ' + v.reason : ''}`,
          proposal_tokens: null, proposal_cost_usd: null, contamination: null, round: v.round, slots: v.slot === null ? [] : [v.slot + 1],
        });
      }
      continue;
    }
    const delta = e.improvement === null ? null : run.direction === 'minimize' ? -e.improvement : e.improvement;
    rows.push({
      id: String(e.seq), seq: e.seq, repeat: null, commit: (e.kept_commit ?? e.candidate_commit)?.slice(0, 8) ?? null,
      metric: e.metric, delta, status: e.decision ?? 'running', description: e.hypothesis,
      proposal_tokens: proposalOf(e)?.tokens ?? null, proposal_cost_usd: proposalOf(e)?.cost_usd ?? null,
      contamination: contaminationOf(e),
      round: e.round, slots: [...new Set((evals.get(e.id) ?? []).filter((v) => v.round === null || v.round === (e.round ?? e.seq)).flatMap((v) => (v.slot === null ? [] : [v.slot + 1])))],
    });
    // an incumbent evaluated again in later rounds (parallel runs: its noise under the same load)
    for (const v of (evals.get(e.id) ?? []).filter((x) => x.round !== null && x.round !== (e.round ?? e.seq))) {
      rows.push({
        id: `${e.seq}.${v.repeat + 1}`, seq: e.seq, repeat: v.repeat + 1, commit: (e.kept_commit ?? e.candidate_commit)?.slice(0, 8) ?? null, metric: v.metric, delta: null,
        status: v.status === 'ok' ? 'repeat' : v.status, description: `fresh repeat of incumbent #${e.seq} in round ${v.round} (seed ${v.seed})`,
        proposal_tokens: null, proposal_cost_usd: null, contamination: null, round: v.round, slots: v.slot === null ? [] : [v.slot + 1],
      });
    }
  }
  const kept = exps.filter((e) => e.decision === 'kept');
  const best = kept.length ? kept[kept.length - 1]!.metric : base?.metric ?? null;
  return {
    run: {
      id: run.id, name: run.name, kind: run.kind, status: effectiveStatus(run), stop_reason: run.stop_reason, branch: run.branch,
      metric: run.metric_name, direction: run.direction, self_reported: Boolean(run.self_reported),
      unsafe_no_sandbox: Boolean(run.unsafe_no_sandbox), elapsed_ms: run.elapsed_ms,
    },
    /** the ledger chain's head as stored (`audit --expect-head` checks a copy of it later); null: the run predates the chain */
    ledger: ledgerOf(db, run.id),
    finalizations: finalizationsOf(db, run.id),
    baseline: { mean: baseMetrics.length ? mean(baseMetrics) : null, sd: stddev(baseMetrics), repeats: baseMetrics },
    noise: { sd: noise.sd, df: noise.df },
    best,
    counts: countDecisions(exps),
    spend: runSpend(db, run.id),
    rows,
  };
}

/** The run's test-split evaluations (src/finalize.ts), with what they scored and whether the split can be trusted. */
function finalizationsOf(db: DB, runId: string) {
  return listFinalizations(db, runId).map((r) => {
    let d: { validation?: number | null; scored?: { text?: string }; untrusted_split?: boolean } = {};
    try {
      d = JSON.parse(r.details);
    } catch {
      // an unreadable details column: the row's own fields still say what was scored
    }
    return {
      created_at: r.created_at, commit: r.commit, test: r.metric, validation: d.validation ?? null, forced: r.forced === 1,
      scored: d.scored?.text ?? null, untrusted_split: d.untrusted_split === true,
    };
  });
}

function ledgerOf(db: DB, runId: string): { head: string; links: number } | null {
  const h = ledgerHead(db, runId);
  return h && h.links > 0 ? h : null;
}

/** Model spend of a run from its traces: the task-agent's (harness evaluations) and the meta-agent's (proposals). */
export function runSpend(db: DB, runId: string) {
  const s = spendByRole(db, runId);
  return { task_agent: s.task, meta_agent: s.proposal };
}

function countDecisions(exps: ExperimentRow[]): Record<string, number> {
  const c: Record<string, number> = {};
  for (const e of exps) if (e.seq > 0) c[e.decision ?? 'running'] = (c[e.decision ?? 'running'] ?? 0) + 1;
  return c;
}

export function ledgerText(db: DB, run: RunRow): string {
  const d = ledgerData(db, run);
  // one format for this run's metric (decimals from its baseline noise), as the run's progress lines print it
  const fmtMetric = runMetricFmt(new SqliteStore(db), run.id);
  const lines: string[] = [];
  lines.push(`run ${run.id} · ${run.kind} · ${effectiveStatus(run)}${run.stop_reason ? ` (${run.stop_reason})` : ''}`);
  lines.push(`branch ${run.branch} · metric ${run.metric_name} (${run.direction})`);
  for (const f of flags(run)) lines.push(`!! ${f}`);
  if (d.baseline.mean !== null) {
    lines.push(`baseline ${fmtMetric(d.baseline.mean)} ± ${fmtMetric(d.baseline.sd)} over ${d.baseline.repeats.length} seeds · noise floor (pooled sd) ${fmtMetric(d.noise.sd)} with ${d.noise.df} df · best ${fmtMetric(d.best)}`);
  }
  const counts = Object.entries(d.counts).map(([k, v]) => `${v} ${k}`).join(', ');
  if (counts) lines.push(`experiments: ${counts}`);
  for (const f of d.finalizations) {
    lines.push(`finalized ${f.created_at.replace('T', ' ').slice(0, 19)}${f.forced ? ' (forced)' : ''}: test ${run.metric_name}=${fmtMetric(f.test)} (validation ${fmtMetric(f.validation)}) at ${f.commit.slice(0, 8)}${f.scored ? ` · ${f.scored}` : ''}`);
    if (f.untrusted_split) lines.push(`!! UNTRUSTED TEST SCORE: ${UNTRUSTED_SPLIT}`);
  }
  lines.push(d.ledger ? `ledger head ${d.ledger.head.slice(0, 16)} (${d.ledger.links} decisions chained)` : 'ledger: no chain (the run predates it)');
  const { task_agent: ta, meta_agent: ma } = d.spend;
  if (ta.traces || ma.traces) {
    lines.push(`spend: task-agent ${fmtTokens(ta.tokens)} tokens $${ta.cost_usd.toFixed(4)} · meta-agent ${fmtTokens(ma.tokens)} tokens $${ma.cost_usd.toFixed(4)} over ${ma.traces} proposal(s)`);
  }
  lines.push('');
  const withSpend = d.rows.some((r) => r.proposal_tokens !== null);
  // rounds and slots, when the run had several candidates per round or several slots
  const withRounds = d.rows.some((r) => r.seq > 0 && r.round !== null && r.round !== r.seq) || d.rows.some((r) => r.slots.length > 0);
  lines.push(table(
    ['#', 'commit', run.metric_name, 'Δ', 'status', ...(withRounds ? ['round', 'slot'] : []), ...(withSpend ? ['proposal'] : []), 'description'],
    d.rows.map((r) => [
      r.id, r.commit ?? '', fmtMetric(r.metric), r.delta === null ? '' : (r.delta > 0 ? '+' : '') + fmtMetric(r.delta), r.status,
      ...(withRounds ? [r.round === null ? '' : String(r.round), r.slots.join(',')] : []),
      ...(withSpend ? [r.proposal_tokens === null ? '' : `${fmtTokens(r.proposal_tokens)} $${(r.proposal_cost_usd ?? 0).toFixed(3)}`] : []),
      (r.contamination ? '!! benchmark data · ' : '') + r.description,
    ]),
  ));
  const flagged = d.rows.filter((r) => r.contamination);
  if (flagged.length) lines.push('', `!! benchmark data: the memorisation check found validation task data in the diff of ${flagged.map((r) => `#${r.id} (${r.contamination!.verdict})`).join(', ')}: see \`autoagent show N\``);
  return lines.join('\n');
}

/** `show 3`, `show <run-id>/3`, or `show 3 --run ID` */
export function parseExperimentRef(db: DB, ref: string, runOpt?: string): { run: RunRow; exp: ExperimentRow } {
  let runId = runOpt;
  let seqText = ref;
  const slash = ref.lastIndexOf('/');
  if (slash > 0) {
    runId = ref.slice(0, slash);
    seqText = ref.slice(slash + 1);
  }
  if (!/^\d+$/.test(seqText)) throw new UsageError(`experiment '${ref}': expected a number (as in \`autoagent log\`), optionally as RUN/N`);
  const run = pickRun(db, runId);
  const exp = getExperiment(db, run.id, Number(seqText));
  if (!exp) throw new UsageError(`run ${run.id} has no experiment ${seqText} (see \`autoagent log\`)`);
  return { run, exp };
}

/** The trace ids an experiment's proposer cited, with what each is (task, experiment, score) when it is still in the store. */
function citedTraces(db: DB, ids: string[]) {
  return ids.map((id) => {
    const t = getTrace(db, id)?.trace;
    return { id, task_id: t?.task_id ?? null, experiment_seq: t?.experiment_seq ?? null, score: t?.score ?? null, pass: t?.pass ?? null, found: Boolean(t) };
  });
}

export function showData(db: DB, run: RunRow, exp: ExperimentRow) {
  const evals = evaluationsOf(db, exp.id);
  const proposal = proposalOf(exp);
  const conversation = proposal?.trace_id ? getTrace(db, proposal.trace_id) ?? null : null;
  return {
    run: run.id,
    seq: exp.seq,
    proposer: exp.proposer,
    hypothesis: exp.hypothesis,
    decision: exp.decision,
    reason: exp.reason,
    parent_commit: exp.parent_commit,
    candidate_commit: exp.candidate_commit,
    kept_commit: exp.kept_commit,
    metric: exp.metric,
    incumbent_metric: exp.incumbent_metric,
    improvement: exp.improvement,
    margin: exp.margin,
    wall_ms: exp.wall_ms,
    inside_ms: exp.inside_ms,
    self_reported: Boolean(run.self_reported),
    meta: exp.meta ? JSON.parse(exp.meta) : null,
    round: exp.round,
    proposal: proposal ? { ...proposal, cited: citedTraces(db, proposal.cited) } : null,
    /** the memorisation check's record (src/contamination.ts): which tasks' data the diff writes, where */
    contamination: contaminationRecord(exp),
    conversation,
    diff: exp.diff,
    evaluations: evals.map((v) => ({
      repeat: v.repeat, seed: v.seed, status: v.status, metric: v.metric, reason: v.reason, round: v.round, slot: v.slot, hardware: v.hardware,
      command_ms: v.command_ms, evaluator_ms: v.evaluator_ms, exit_code: v.exit_code,
      telemetry: v.telemetry ? JSON.parse(v.telemetry) : null, stdout_tail: v.stdout_tail, stderr_tail: v.stderr_tail,
    })),
  };
}

/** What a knob proposer recorded about why it proposed this: the model, what it expected, the sampler. */
function proposerWhy(meta: unknown, metric: string): string[] {
  if (!meta || typeof meta !== 'object') return [];
  const m = meta as { model?: { kind: string; observations: number; assignments: number; predicted: { mean: number; sd: number } | null; incumbent: { mean: number; sd: number } | null; margin: number | null; p_pass: number | null; noise_sd: number | null }; reasons?: unknown; sampler?: string; trial_number?: number };
  const out: string[] = [];
  if (m.model?.kind === 'gp-matern52' && m.model.predicted && m.model.incumbent) {
    out.push(`model:      Gaussian process (Matérn 5/2) over ${m.model.observations} evaluation(s) of ${m.model.assignments} assignment(s)${m.model.noise_sd !== null ? `, noise sd ${fmtMetric(m.model.noise_sd)}` : ''}`);
    out.push(`expected:   ${metric} ${fmtMetric(m.model.predicted.mean)} ± ${fmtMetric(m.model.predicted.sd)} (incumbent ${fmtMetric(m.model.incumbent.mean)} ± ${fmtMetric(m.model.incumbent.sd)}); margin ${fmtMetric(m.model.margin)}, chance to pass the screen ${m.model.p_pass === null ? '—' : `${Math.round(100 * m.model.p_pass)}%`}`);
  } else if (m.model?.kind === 'initial-design') {
    out.push('model:      none yet (one assignment measured): a first step away from the incumbent on every knob');
  } else if (m.sampler) {
    out.push(`model:      Optuna ${m.sampler} sampler${m.trial_number !== undefined ? `, trial ${m.trial_number}` : ''} (the study rebuilt from the ledger)`);
  }
  if (Array.isArray(m.reasons) && !m.model) for (const r of m.reasons) if (typeof r === 'string') out.push(`why:        ${r}`);
  return out;
}

export function showText(db: DB, run: RunRow, exp: ExperimentRow, opts: { full?: boolean } = {}): string {
  const fmtMetric = runMetricFmt(new SqliteStore(db), run.id);
  const d = showData(db, run, exp);
  const lines: string[] = [];
  lines.push(`experiment ${exp.seq} of run ${run.id}`);
  for (const f of flags(run)) lines.push(`!! ${f}`);
  const p = d.proposal;
  lines.push(`proposer:   ${d.proposer}${p && p.trace_id ? ` · ${fmtTokens(p.tokens)} tokens, $${p.cost_usd.toFixed(4)}, ${fmtDuration(p.ms)} to propose` : ''}`);
  lines.push(`hypothesis: ${d.hypothesis}`);
  if (p?.expected_effect) lines.push(`expected:   ${p.expected_effect}`);
  lines.push(...proposerWhy(d.meta, run.metric_name));
  if (p && p.cited.length) {
    lines.push(`cited:      ${p.cited.length} trace(s) (open one: autoagent traces ID)`);
    for (const c of p.cited) {
      lines.push(`              ${c.id}${c.found ? ` · task ${c.task_id}${c.experiment_seq !== null ? ` of #${c.experiment_seq}` : ''} · score ${c.score === null ? '—' : fmtMetric(c.score)}${c.pass === false ? ' (failed)' : ''}` : ' · (not in the store)'}`);
    }
  }
  const c = contaminationOf(exp);
  if (c) lines.push(`!! memorisation check (${c.verdict === 'reject' ? 'rejected' : 'warning'}): ${c.summary}`);
  lines.push(`decision:   ${d.decision ?? 'running'}${d.reason ? ` — ${d.reason}` : ''}`);
  if (d.incumbent_metric !== null || d.metric !== null) {
    lines.push(`metric:     ${run.metric_name} ${fmtMetric(d.incumbent_metric)} (incumbent) → ${fmtMetric(d.metric)} (this), Δ ${fmtDelta(d.improvement, run.direction, fmtMetric)}, margin ${fmtMetric(d.margin)}`);
  }
  lines.push(`commits:    parent ${d.parent_commit.slice(0, 10)} · candidate ${d.candidate_commit?.slice(0, 10) ?? '—'}${d.kept_commit ? ` · kept ${d.kept_commit.slice(0, 10)} on ${run.branch}` : ''}`);
  if (d.wall_ms !== null) lines.push(`time:       ${fmtDuration(d.wall_ms)} wall, ${fmtDuration(d.inside_ms ?? 0)} inside command and evaluator`);
  lines.push('');
  lines.push(`evaluations (${d.evaluations.length}):`);
  for (const v of d.evaluations) {
    lines.push(`  #${v.repeat + 1} seed ${v.seed}: ${v.status} ${run.metric_name}=${fmtMetric(v.metric)} · command ${fmtDuration(v.command_ms)} · evaluator ${fmtDuration(v.evaluator_ms)}${v.slot !== null ? ` · slot ${v.slot + 1}` : ''}${v.round !== null && v.round !== (exp.round ?? exp.seq) ? ` · fresh repeat in round ${v.round}` : ''}${v.hardware ? ` · ${v.hardware}` : ''}${v.reason ? ` · ${v.reason}` : ''}`);
    lines.push(...telemetryText(v.telemetry));
  }
  lines.push('');
  lines.push(d.diff ? 'diff:' : 'diff: (none — the starting commit)');
  if (d.diff) lines.push(d.diff.trimEnd());
  if (d.conversation) {
    lines.push('');
    lines.push(`meta-agent conversation (trace ${d.conversation.trace.id}${opts.full ? '' : '; long texts cut, see it whole with --full or autoagent traces ID'}):`);
    lines.push(renderTranscript(d.conversation.trace, d.conversation.spans, opts.full ? { maxTextChars: Infinity, maxValueChars: Infinity } : { maxTextChars: 1500 }).trimEnd());
  }
  return lines.join('\n');
}

export function statusData(db: DB) {
  return listRuns(db).map((r) => {
    const exps = listExperiments(db, r.id);
    return {
      id: r.id, name: r.name, kind: r.kind, status: effectiveStatus(r), stop_reason: r.stop_reason, branch: r.branch,
      experiments: exps.filter((e) => e.seq > 0).length, kept: exps.filter((e) => e.decision === 'kept').length,
      elapsed_ms: r.elapsed_ms, created_at: r.created_at, self_reported: Boolean(r.self_reported), unsafe_no_sandbox: Boolean(r.unsafe_no_sandbox),
    };
  });
}

export function statusText(db: DB): string {
  const rows = statusData(db);
  if (!rows.length) return 'no runs yet: start one with `autoagent run study.yaml`';
  return table(['run', 'kind', 'status', 'experiments', 'kept', 'elapsed', 'started'],
    rows.map((r) => [r.id, r.kind, r.status, String(r.experiments), String(r.kept), fmtDuration(r.elapsed_ms), r.created_at.replace('T', ' ').slice(0, 19)]));
}

export type { EvaluationRow };
