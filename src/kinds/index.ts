import type { Study } from '../study.ts';
import type { KindAdapter } from './types.ts';
import { CommandKind } from './command.ts';
import { TrainerKind } from './trainer.ts';
import { HarnessKind } from './harness.ts';
import { UsageError } from '../../base/errors.ts';

export function adapterFor(study: Study): KindAdapter {
  switch (study.kind) {
    case 'command':
      return new CommandKind(study);
    case 'trainer':
      return new TrainerKind(study);
    case 'harness':
      return new HarnessKind(study);
    default:
      throw new UsageError(`kind: ${study.kind} is not available in this version`);
  }
}
export type { KindAdapter, EvalRequest, EvalOutcome, PrepareResult, RunPaths } from './types.ts';
