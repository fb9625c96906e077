/**
 * BIG-Bench Hard (suzgunmirac/BIG-Bench-Hard): `bbh/<task>.json`, 27 files, 6,511 examples.
 *
 * - ids `<task>/<index>` (0-based, file order); tags `[<task>]`.
 * - No upstream split: train / val / test by the seeded hash of the id (benchmarks/split.ts),
 *   fractions from benchmark.yaml (default val 0.2, test 0.2).
 * - input: `{ input, task }` (the example's text and its task name). Answer key: `target`.
 */
import fs from 'node:fs';

import { assignSplits, resolveSplit } from '../split.ts';
import type { Task } from '../types.ts';
import { badData, dataFile, DATA_FILES, resolveDataRoot, type Loaded, type LoaderContext } from './data.ts';

export const BBH_TASKS = [
  'boolean_expressions', 'causal_judgement', 'date_understanding', 'disambiguation_qa', 'dyck_languages',
  'formal_fallacies', 'geometric_shapes', 'hyperbaton', 'logical_deduction_five_objects',
  'logical_deduction_seven_objects', 'logical_deduction_three_objects', 'movie_recommendation',
  'multistep_arithmetic_two', 'navigate', 'object_counting', 'penguins_in_a_table',
  'reasoning_about_colored_objects', 'ruin_names', 'salient_translation_error_detection', 'snarks',
  'sports_understanding', 'temporal_sequences', 'tracking_shuffled_objects_five_objects',
  'tracking_shuffled_objects_seven_objects', 'tracking_shuffled_objects_three_objects', 'web_of_lies',
  'word_sorting',
] as const;

export interface BbhExample {
  input: string;
  target: string;
}

export function readBbhFile(file: string): BbhExample[] {
  let obj: unknown;
  try {
    obj = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch {
    throw badData(file, null, 'not valid JSON');
  }
  const examples = (obj as { examples?: unknown } | null)?.examples;
  if (!Array.isArray(examples)) throw badData(file, null, 'expected an object with an "examples" list');
  return examples.map((e, i) => {
    const ex = e as Partial<BbhExample> | null;
    if (!ex || typeof ex.input !== 'string' || typeof ex.target !== 'string') {
      throw badData(file, null, `examples[${i}]: expected {"input": string, "target": string}`);
    }
    return { input: ex.input, target: ex.target };
  });
}

export function loadBbh(ctx: LoaderContext): Loaded {
  const root = resolveDataRoot(ctx.name, ctx.dataRoot, DATA_FILES.bbh(BBH_TASKS[0]));
  const files = BBH_TASKS.map((t) => dataFile(ctx.name, root, DATA_FILES.bbh(t)));
  const rows: Array<{ id: string; task: string; ex: BbhExample }> = [];
  BBH_TASKS.forEach((task, k) => {
    readBbhFile(files[k]!).forEach((ex, i) => rows.push({ id: `${task}/${i}`, task, ex }));
  });
  const ids = rows.map((r) => r.id);
  const splits = assignSplits(ids, resolveSplit(ctx.file, ctx.split, { val: 0.2, test: 0.2, seed: ctx.name }, ids.length));
  const tasks: Task[] = rows.map((r, i) => ({ id: r.id, split: splits[i]!, input: { input: r.ex.input, task: r.task }, tags: [r.task] }));
  const answers = new Map<string, unknown>(rows.map((r) => [r.id, r.ex.target]));
  return { tasks, answers, files };
}
