/** Benchmarks: suites with train / val / test splits, the answer key apart, and locked scorers. */
export type { Aggregate, Benchmark, ScoreContext, ScoreResult, Scorer, Split, Task } from './types.ts';
export {
  BENCHMARKS_DIR,
  BUILTIN_SOURCES,
  BenchmarkConfigSchema,
  listBuiltinBenchmarks,
  loadBenchmark,
  parseBenchmarkConfig,
  splitSizes,
  tasksOf,
  type BenchmarkConfig,
  type BuiltinBenchmarkInfo,
  type LoadOptions,
  type LoadedBenchmark,
} from './benchmark.ts';
export { makeScorer, ScorerSpecSchema, SCORER_TYPES, type ScorerSpec, type ScorerSpecInput, type ScorerType } from './scorers/index.ts';
export { DEFAULT_JS_TIMEOUT_MS, stripFence } from './scorers/js-exec.ts';
export { extractGsm8kAnswer } from './scorers/gsm8k.ts';
export { extractBbhAnswer } from './scorers/choice.ts';
export { aggregate, wilson } from './aggregate.ts';
export { assignSplits, splitFraction } from './split.ts';

import type { ScoreContext } from './types.ts';
import { DEFAULT_JS_TIMEOUT_MS } from './scorers/js-exec.ts';

/** The score context to use unless a study says otherwise: sandboxed, 5 s per program. */
export function defaultScoreContext(over: Partial<ScoreContext> = {}): ScoreContext {
  return { unsafeNoSandbox: false, timeoutMs: DEFAULT_JS_TIMEOUT_MS, ...over };
}
