/**
 * Rounds: the candidates proposed from one incumbent (`proposer.candidates` per round). Two
 * rules derived from the ledger alone, shared by the loop and the audit so both judge alike.
 */
import type { ExperimentRow } from '../traces/index.ts';

type Row = Pick<ExperimentRow, 'seq' | 'round' | 'decision' | 'candidate_commit'>;

/**
 * The incumbent experiment `seq` was judged against: the last kept experiment before it that is
 * not of its own round (a round's candidates all start from the same incumbent), else the baseline.
 */
export function incumbentBefore<T extends Row>(exps: T[], seq: number): T | undefined {
  const round = exps.find((e) => e.seq === seq)?.round ?? null;
  const prior = exps.filter((e) => e.seq < seq);
  const kept = prior.filter((e) => e.decision === 'kept' && (round === null || e.round !== round));
  return kept.length ? kept[kept.length - 1] : prior.find((e) => e.seq === 0);
}

/**
 * The significance level of each test of experiment `exp`: the study's α divided by the number of
 * evaluated candidates of its round (Bonferroni), so keeping the best of k candidates is no more
 * likely to keep noise than keeping one.
 */
export function roundAlpha(alpha: number, exps: Row[], exp: Row): number {
  if (exp.round === null) return alpha;
  const k = exps.filter((e) => e.round === exp.round && e.candidate_commit !== null && e.seq > 0).length;
  return alpha / Math.max(1, k);
}
