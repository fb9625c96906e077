/**
 * GSM8K (openai/grade-school-math): `gsm8k/train.jsonl` (7,473) and `gsm8k/test.jsonl` (1,319).
 *
 * - ids `train/<line index>` and `test/<line index>` (0-based, file order).
 * - Splits: test.jsonl is the test split, as upstream. train.jsonl is divided into train and val by
 *   the seeded hash (benchmarks/split.ts); val is a COUNT, default 200 tasks (so 7,273 train):
 *   every candidate and every repeat is scored on val, and 200 keeps that affordable while the
 *   Wilson 95% interval at 50% is still ±7 points. `split.val` may set another count or a fraction;
 *   `split.test` is refused (the test split is upstream's).
 * - input: `{ question }`. Answer key: the gold number string, extracted from `answer` by the
 *   upstream rule (scorers/gsm8k.ts). The worked solution is never in the input nor in the key.
 */
import fs from 'node:fs';

import { UsageError } from '../../base/errors.ts';
import { extractGsm8kAnswer } from '../scorers/gsm8k.ts';
import { assignSplits, resolveSplit } from '../split.ts';
import type { Task } from '../types.ts';
import { badData, dataFile, DATA_FILES, resolveDataRoot, type Loaded, type LoaderContext } from './data.ts';

export const GSM8K_DEFAULT_VAL = 200;

export interface Gsm8kRecord {
  question: string;
  answer: string;
}

export function readGsm8kFile(file: string): Gsm8kRecord[] {
  const out: Gsm8kRecord[] = [];
  const lines = fs.readFileSync(file, 'utf8').split('\n');
  lines.forEach((line, i) => {
    if (line.trim() === '') return;
    let obj: unknown;
    try {
      obj = JSON.parse(line);
    } catch {
      throw badData(file, i + 1, 'not a JSON line');
    }
    const rec = obj as Partial<Gsm8kRecord> | null;
    if (!rec || typeof rec.question !== 'string' || typeof rec.answer !== 'string') {
      throw badData(file, i + 1, 'expected {"question": string, "answer": string}');
    }
    out.push({ question: rec.question, answer: rec.answer });
  });
  return out;
}

export function loadGsm8k(ctx: LoaderContext): Loaded {
  if (ctx.split.test !== undefined) {
    throw new UsageError(`${ctx.file}: field \`split.test\`: gsm8k's test split is upstream's test.jsonl; remove split.test`);
  }
  const root = resolveDataRoot(ctx.name, ctx.dataRoot, DATA_FILES.gsm8kTrain);
  const trainFile = dataFile(ctx.name, root, DATA_FILES.gsm8kTrain);
  const testFile = dataFile(ctx.name, root, DATA_FILES.gsm8kTest);
  const tasks: Task[] = [];
  const answers = new Map<string, unknown>();
  for (const [part, file] of [['train', trainFile], ['test', testFile]] as const) {
    const records = readGsm8kFile(file);
    const ids = records.map((_, i) => `${part}/${i}`);
    const splits =
      part === 'test'
        ? ids.map(() => 'test' as const)
        : assignSplits(ids, resolveSplit(ctx.file, ctx.split, { val: GSM8K_DEFAULT_VAL, test: 0, seed: ctx.name }, ids.length));
    records.forEach((r, i) => {
      const gold = extractGsm8kAnswer(r.answer);
      if (gold === null) throw badData(file, i + 1, "answer has no '#### <number>'");
      tasks.push({ id: ids[i]!, split: splits[i]!, input: { question: r.question } });
      answers.set(ids[i]!, gold);
    });
  }
  return { tasks, answers, files: [trainFile, testFile] };
}
