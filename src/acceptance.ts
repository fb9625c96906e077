/**
 * The acceptance rule as data: which evaluations a judgement of an experiment saw, which noise
 * groups it pooled, which incumbent it was compared with and at which α, and the kept commit's
 * message. One module, used by the loop when it decides, by `audit` when it re-derives every
 * decision, and by `finalize` when it writes the clean branch — so the three cannot drift apart.
 *
 * Rounds: the candidates proposed from one incumbent (`proposer.candidates`, or `parallel`
 * slots), tested at α / k for k evaluated candidates in the round (Bonferroni). Two judgements:
 *  - the screen (the first evaluation) against the incumbent's evaluations and the noise groups
 *    as of the round's start (earlier rounds only): it needs nothing measured in its own round;
 *  - the final one (after the confirmations) against the incumbent's evaluations as of the round,
 *    its fresh repeat included: with several slots, a round where a candidate passes its screen
 *    runs one fresh repeat of the incumbent beside the confirmations, so the keep is decided on
 *    noise measured under the same load; noise pooled over the earlier rounds' groups plus the
 *    candidate's own evaluations.
 * Runs recorded before 2026-12-02 judged the screen after the round's fresh incumbent repeat (it
 * ran beside the screens); `audit` accepts that visibility for a screen too.
 */
import { roundOf, type EvaluationRow, type ExperimentRow } from '../traces/index.ts';
import { fmtMetric } from '../base/format.ts';
import { judge, type AcceptanceRule, type Judgement } from './ratchet.ts';
import { pooledNoise } from '../base/stats.ts';

type Row = Pick<ExperimentRow, 'id' | 'seq' | 'round' | 'decision' | 'candidate_commit'>;

export { roundOf, ownEvaluations } from '../traces/index.ts';

/** the metrics of the evaluations that succeeded */
export function okMetrics(evals: EvaluationRow[] | undefined): number[] {
  return (evals ?? []).filter((v) => v.status === 'ok' && v.metric !== null).map((v) => v.metric!);
}

/** which judgement of a candidate: its screen (the first evaluation) or the final one (after the confirmations) */
export type Stage = 'screen' | 'final';

/** the last round whose evaluations a judgement of `stage` in round `r` sees */
function seenRound(r: number, stage: Stage): number {
  return stage === 'screen' ? r - 1 : r;
}

/** the evaluations of an experiment a judgement in round `r` could see (its own round's, or earlier) */
export function visibleAt(evals: EvaluationRow[] | undefined, owner: Pick<ExperimentRow, 'seq' | 'round'>, r: number): EvaluationRow[] {
  return (evals ?? []).filter((v) => (v.round ?? roundOf(owner)) <= r);
}

/**
 * The incumbent experiment `seq` was judged against: the last kept experiment before it that is
 * not of its own round (a round's candidates all start from the same incumbent), else the baseline.
 */
export function incumbentBefore<T extends Pick<ExperimentRow, 'seq' | 'round' | 'decision'>>(exps: T[], seq: number): T | undefined {
  const round = exps.find((e) => e.seq === seq)?.round ?? null;
  const prior = exps.filter((e) => e.seq < seq);
  const kept = prior.filter((e) => e.decision === 'kept' && (round === null || e.round !== round));
  return kept.length ? kept[kept.length - 1] : prior.find((e) => e.seq === 0);
}

/**
 * The significance level of each test of experiment `exp`: the study's α divided by the number of
 * evaluated candidates of its round, so keeping the best of k candidates is no more likely to keep
 * noise than keeping one.
 */
export function roundAlpha(alpha: number, exps: Array<Pick<ExperimentRow, 'seq' | 'round' | 'candidate_commit'>>, exp: Pick<ExperimentRow, 'round'>): number {
  if (exp.round === null) return alpha;
  const k = exps.filter((e) => e.round === exp.round && e.candidate_commit !== null && e.seq > 0).length;
  return alpha / Math.max(1, k);
}

/**
 * The noise groups a judgement of `exp` pooled: for every experiment of an earlier round that did
 * not crash or time out, its ok evaluations (as of `exp`'s round) on each hardware class, where
 * there are at least two: noise is pooled within one hardware class (a GPU model), never across.
 */
export function noiseGroupsBefore(exps: Row[], evals: Map<number, EvaluationRow[]>, exp: Pick<ExperimentRow, 'seq' | 'round'>, stage: Stage = 'final'): number[][] {
  const r = roundOf(exp);
  const groups: number[][] = [];
  for (const e of exps) {
    if (roundOf(e) >= r || e.decision === 'crash' || e.decision === 'timeout') continue;
    const byClass = new Map<string, EvaluationRow[]>();
    for (const v of visibleAt(evals.get(e.id), e, seenRound(r, stage))) byClass.set(v.hardware ?? '', [...(byClass.get(v.hardware ?? '') ?? []), v]);
    for (const vs of byClass.values()) {
      const m = okMetrics(vs);
      if (m.length >= 2) groups.push(m);
    }
  }
  return groups;
}

/** The incumbent's metrics a candidate of `exp`'s round was compared with, at its screen or at its final judgement. */
export function incumbentMetrics(exps: Row[], evals: Map<number, EvaluationRow[]>, exp: Pick<ExperimentRow, 'seq' | 'round'>, stage: Stage = 'final'): { inc: Row | undefined; metrics: number[] } {
  const inc = incumbentBefore(exps, exp.seq);
  return { inc, metrics: inc ? okMetrics(visibleAt(evals.get(inc.id), inc, seenRound(roundOf(exp), stage))) : [] };
}

/**
 * The judgement of candidate `exp` on its evaluations `m` (the screen: its first; final: all,
 * after the confirmations): against the incumbent as of that stage, noise from the earlier
 * rounds' groups plus its own evaluations (when it has two or more), at the round's α.
 */
export function judgeCandidate(
  exps: Row[], evals: Map<number, EvaluationRow[]>, exp: Row, m: number[],
  direction: 'minimize' | 'maximize', rule: AcceptanceRule, stage: Stage = 'final',
): Judgement & { incumbent: number[] } {
  const { metrics } = incumbentMetrics(exps, evals, exp, stage);
  const groups = noiseGroupsBefore(exps, evals, exp, stage);
  if (m.length >= 2) groups.push(m);
  const j = judge(direction, metrics, m, pooledNoise(groups), { ...rule, alpha: roundAlpha(rule.alpha, exps, exp) });
  return { ...j, incumbent: metrics };
}

/** the commit message lines the loop writes for a keep */
export function keptMessageLines(metricName: string, runId: string, seq: number, j: Judgement, m: number[], inc: number[]): { title: string; run: string; experiment: string; evidence: string } {
  return {
    title: `autoagent #${seq}: ${metricName} ${fmtMetric(j.incumbentMean)} → ${fmtMetric(j.candidateMean)}`,
    run: `Run: ${runId}`,
    experiment: `Experiment: ${seq}`,
    evidence: `Evidence: ${m.length} evaluation(s) ${m.map(fmtMetric).join(', ')} vs incumbent ${inc.map(fmtMetric).join(', ')}; margin ${fmtMetric(j.margin)}`,
  };
}

/** The kept commit's whole message: title, hypothesis, the run, the experiment, the evidence, the ledger link. */
export function keptMessage(metricName: string, runId: string, seq: number, hypothesis: string, j: Judgement, m: number[], inc: number[], ledgerLink: string): string {
  const l = keptMessageLines(metricName, runId, seq, j, m, inc);
  return [l.title, '', hypothesis, '', l.run, l.experiment, l.evidence, `Ledger: ${ledgerLink}`].join('\n');
}
