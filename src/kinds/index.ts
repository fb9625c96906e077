import { resolve } from 'node:path';
import type { Study } from '../study.ts';
import type { KindAdapter } from './types.ts';
import { CommandKind } from './command.ts';
import { TrainerKind } from './trainer.ts';
import { HarnessKind } from './harness.ts';
import { UsageError } from '../../base/errors.ts';

export interface SplitOptions {
  /** `val` (a run) or `test` (finalize and ablate only: the study schema keeps `test` out of a run) */
  split?: 'val' | 'test';
  /** harness, test split: the benchmark data folder when it is not the study's */
  dataRoot?: string;
  /** harness, test split: every test task, not the study's `limit` */
  all?: boolean;
  /** harness: queue workers call the model with their own keys (`run --queue`): none is needed here */
  keysElsewhere?: boolean;
}

/** The one place a study's kind picks its adapter; on the test split, also the study as that split evaluates it. */
export function adapterFor(study: Study, o: SplitOptions = {}): { study: Study; adapter: KindAdapter } {
  const test = o.split === 'test';
  switch (study.kind) {
    case 'command': {
      const s: Study = test ? { ...study, env: { ...study.env, AUTOAGENT_SPLIT: 'test' } } : study;
      return { study: s, adapter: new CommandKind(s) };
    }
    case 'trainer':
      return { study, adapter: new TrainerKind(study, test ? 'test' : 'val') };
    case 'harness': {
      if (!test) return { study, adapter: new HarnessKind(study, { keysElsewhere: o.keysElsewhere }) };
      const harness = { ...study.harness!, split: 'test' as unknown as 'val', screen_tasks: 0, ...(o.all ? { limit: 0 } : {}), ...(o.dataRoot ? { data: resolve(o.dataRoot) } : {}) };
      const s: Study = { ...study, harness };
      return { study: s, adapter: new HarnessKind(s) };
    }
    default:
      throw new UsageError(`kind: ${String((study as Study).kind)} is not available in this version`);
  }
}
export type { KindAdapter, EvalRequest, EvalOutcome, PrepareResult, RunPaths } from './types.ts';
