/**
 * The live status of running evaluations: one line per busy slot (what it evaluates, tasks done or
 * the training step and loss, tokens and dollars so far, elapsed, an ETA for the evaluation) and an
 * ETA for the run. Pure functions of the state and the clock: the loop feeds them, the Reporter
 * (src/report.ts) decides how to show the lines.
 */
import type { EvalProgress } from './kinds/types.ts';
import { fmtDuration, fmtTokens } from '../base/format.ts';
import { mean } from '../base/stats.ts';

export interface SlotState {
  /** `[exp 3/8]`, `[baseline 2/3]`, … */
  label: string;
  /** 1-based slot number, shown when the run has several */
  slot: number | null;
  started: number;
  progress: EvalProgress;
  /** how long an evaluation of this run took so far (mean of the completed ones), else null */
  typicalMs: number | null;
}

/** fraction of the evaluation done, when the kind says (tasks, steps, or its own fraction) */
export function fractionDone(p: EvalProgress): number | null {
  if (p.tasksTotal && p.tasksDone !== undefined) return Math.min(1, p.tasksDone / p.tasksTotal);
  if (p.steps && p.step !== undefined) return Math.min(1, p.step / p.steps);
  if (p.fraction !== undefined && Number.isFinite(p.fraction)) return Math.max(0, Math.min(1, p.fraction));
  return null;
}

/**
 * Time left of one evaluation: from its own rate once a tenth or more is done (or 2 s have
 * passed with some done), else from the run's earlier evaluations; null when neither is known.
 */
export function evalEtaMs(s: Pick<SlotState, 'started' | 'progress' | 'typicalMs'>, now: number): number | null {
  const elapsed = now - s.started;
  const f = fractionDone(s.progress);
  if (f !== null && f > 0 && (f >= 0.1 || elapsed >= 2000)) return Math.max(0, (elapsed * (1 - f)) / f);
  if (s.typicalMs !== null) return Math.max(0, s.typicalMs - elapsed);
  return null;
}

export interface RunEtaInput {
  /** experiments still to decide (budget − decided) */
  experimentsLeft: number;
  /** wall time of each decided experiment (seq > 0) */
  experimentMs: number[];
  /** evaluations of the baseline still to run */
  baselineLeft: number;
  /** duration of each completed evaluation */
  evaluationMs: number[];
  slots: number;
  /** wall budget left */
  wallLeftMs: number;
}

/**
 * Time left of the run: the remaining experiments × the mean experiment time (else the mean
 * evaluation time) / slots, plus the baseline repeats still to run; never past the wall budget.
 */
export function runEtaMs(r: RunEtaInput): number | null {
  const perEval = r.evaluationMs.length ? mean(r.evaluationMs) : null;
  const perExp = r.experimentMs.length ? mean(r.experimentMs) : perEval;
  if (perExp === null || perEval === null) return null;
  const slots = Math.max(1, r.slots);
  const ms = (r.baselineLeft * perEval) / slots + (r.experimentsLeft * perExp) / slots;
  return Math.max(0, Math.min(ms, r.wallLeftMs));
}

function money(x: number): string {
  return x < 1 ? `$${x.toFixed(4)}` : `$${x.toFixed(2)}`;
}

/** An evaluation's progress in words: `12/50 tasks`, `step 1200/5000 loss 3.412`, `41.2k tokens`, `$0.0123` (what it has of them). */
export function progressBits(p: EvalProgress): string[] {
  const bits: string[] = [];
  if (p.tasksTotal) bits.push(`${p.tasksDone ?? 0}/${p.tasksTotal} tasks`);
  if (p.step !== undefined) bits.push(`step ${p.step}${p.steps ? `/${p.steps}` : ''}${p.loss !== undefined ? ` loss ${Number.isFinite(p.loss) ? p.loss.toFixed(3) : String(p.loss)}` : ''}`);
  if (p.tokens) bits.push(`${fmtTokens(p.tokens)} tokens`);
  if (p.dollars) bits.push(money(p.dollars));
  return bits;
}

/** `[exp 3/8] slot 2 · 12/50 tasks · 41.2k tokens · $0.0123 · 1m 05s, ~3m 10s left` */
export function slotLine(s: SlotState, now: number, runEta?: number | null): string {
  const p = s.progress;
  const bits: string[] = [`${s.label}${s.slot !== null ? ` slot ${s.slot}` : ''}${p.worker ? ` on ${p.worker}` : ''}`, ...progressBits(p)];
  const eta = evalEtaMs(s, now);
  bits.push(`${fmtDuration(now - s.started)}${eta !== null ? `, ~${fmtDuration(eta)} left` : ''}`);
  if (runEta !== undefined && runEta !== null) bits.push(`run ~${fmtDuration(runEta)} left`);
  return bits.join(' · ');
}
