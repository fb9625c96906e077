/**
 * The seam between the engine and where an evaluation runs. The loop asks a Dispatcher to evaluate
 * a commit (seed, repeat); it gets the kind's outcome back and records it itself: whatever the
 * dispatcher, the coordinator is the only writer of git and SQLite.
 *
 *   - LocalDispatcher: the run's slots on this machine (src/slots.ts), evaluateCommit in each.
 *   - QueueDispatcher (src/queue/dispatcher.ts): jobs on a BullMQ queue in Redis, run by
 *     `autoagent worker` processes on any machine that reaches it.
 */
import type { EvalOutcome, EvalProgress } from './kinds/types.ts';
import type { TraceExport } from '../traces/index.ts';
import { evaluateCommit, type EvalContext } from './evaluation.ts';
import { UserError } from '../base/errors.ts';

/** A queue URL as it may be printed or stored: the password replaced by ***. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString().replace(/\/$/, '');
  } catch {
    return 'redis://(unparsable URL)';
  }
}

/** No queue worker took a job within the deadline: the run stops, resumable. */
export class QueueWaitExpired extends UserError {}
import type { SlotPool } from './slots.ts';

export interface DispatchTarget {
  commit: string;
  /** names the workspace folder: `<seq>-<repeat>` */
  label: string;
  seq: number;
  seed: number;
  repeat: number;
  /** baseline | screen | confirm | incumbent: part of a queued job's identity */
  stage: string;
  /**
   * the incumbent commit this evaluation is measured for (a candidate's parent; the incumbent itself
   * for its repeats): a queued job carries it, and a result measured for another one is not used
   */
  incumbent: string;
  screenAgainst?: Map<string, number>;
  signal: AbortSignal;
  /** how far it is (tasks, steps, loss, spend), as the kind reports it; local slots only for now */
  onProgress?: (p: EvalProgress) => void;
}

export interface Dispatched {
  out: EvalOutcome;
  /** the slot it ran in (null with one slot) */
  slot: number | null;
  /** the hardware class it ran on (a GPU model, `cpu`, or null when not recorded) */
  hardware: string | null;
  /** the incumbent commit the result was measured for (its job's); the loop uses a result only when it is the target's */
  screenedAgainst: string;
  /** traces made elsewhere (a queue worker's harness evaluation), checked: the loop records them with the evaluation */
  traces?: TraceExport;
}

/** Called when an evaluation takes its slot; returns what to do when it gives the slot back. */
export type SlotStart = (slot: number) => (() => void) | void;

export interface Dispatcher {
  /** evaluations this run keeps going at once */
  readonly size: number;
  /**
   * Evaluate one target. `start(slot)` is called when it begins (it may throw to give the slot back
   * unused); what it returns is called when it ends, before the slot goes to the next evaluation
   * (a slot's status line is cleared by its own evaluation, never by the next one's). Its outcome is
   * returned, never recorded here.
   */
  evaluate(t: DispatchTarget, start: SlotStart): Promise<Dispatched>;
  close(): Promise<void>;
}

/** The run's slots on this machine. */
export class LocalDispatcher implements Dispatcher {
  constructor(private readonly ctx: EvalContext, private readonly pool: SlotPool) {}

  get size(): number {
    return this.pool.size;
  }

  evaluate(t: DispatchTarget, start: SlotStart): Promise<Dispatched> {
    return this.pool.run(async (slot) => {
      const end = start(slot);
      try {
        const lease = this.pool.lease(slot);
        const out = await evaluateCommit({ ...this.ctx, signal: t.signal }, {
          commit: t.commit, label: t.label, seq: t.seq, seed: t.seed, repeat: t.repeat, screenAgainst: t.screenAgainst, lease, onProgress: t.onProgress,
        });
        return { out, slot: this.pool.size > 1 ? slot : null, hardware: lease?.hardware ?? null, screenedAgainst: t.incumbent };
      } finally {
        end?.();
      }
    });
  }

  async close(): Promise<void> {}
}
