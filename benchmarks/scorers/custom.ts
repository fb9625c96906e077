/**
 * `custom`: a TypeScript (or JavaScript) module in the benchmark folder, loaded with dynamic import,
 * that exports `score(task, expected, output, ctx) → ScoreResult | Promise<ScoreResult>`. Its result
 * is validated (score in 0..1, pass boolean, feedback string); a throw or an invalid result scores
 * the task 0 with the reason as feedback (one failing task never aborts an evaluation).
 */
import fs from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { z } from 'zod';

import { UsageError } from '../../base/errors.ts';
import type { ScoreContext, ScoreResult, Scorer, Task } from '../types.ts';
import { fail } from './util.ts';

const ResultSchema = z.object({
  score: z.number().min(0).max(1),
  pass: z.boolean(),
  feedback: z.string(),
});

type ScoreFn = (task: Task, expected: unknown, output: string, ctx: ScoreContext) => ScoreResult | Promise<ScoreResult>;

function firstLine(e: unknown): string {
  const msg = e instanceof Error ? e.message : String(e);
  return msg.split('\n')[0]!.slice(0, 200);
}

export async function customScorer(modulePath: string, benchmarkDir: string, field = 'scorer.module'): Promise<Scorer> {
  const file = path.resolve(benchmarkDir, modulePath);
  const rel = path.relative(benchmarkDir, file);
  if (rel.startsWith('..') || path.isAbsolute(rel)) {
    throw new UsageError(`${path.join(benchmarkDir, 'benchmark.yaml')}: field \`${field}\`: ${modulePath} is outside the benchmark folder; put the scorer module inside it`);
  }
  if (!fs.existsSync(file)) {
    throw new UsageError(`${path.join(benchmarkDir, 'benchmark.yaml')}: field \`${field}\`: custom scorer module not found: ${file}`);
  }
  let mod: Record<string, unknown>;
  try {
    mod = (await import(pathToFileURL(file).href)) as Record<string, unknown>;
  } catch (e) {
    throw new UsageError(`${file}: custom scorer module failed to load: ${firstLine(e)}`);
  }
  const fn = mod.score ?? (mod.default as Record<string, unknown> | undefined)?.score;
  if (typeof fn !== 'function') {
    throw new UsageError(`${file}: a custom scorer must export a function score(task, expected, output) returning { score, pass, feedback }`);
  }
  const score = fn as ScoreFn;
  return {
    type: 'custom',
    async score(task, expected, output, ctx) {
      let result: unknown;
      try {
        result = await score(task, expected, output, ctx);
      } catch (e) {
        return fail(`custom scorer ${rel} threw: ${firstLine(e)}`);
      }
      const parsed = ResultSchema.safeParse(result);
      if (!parsed.success) {
        const issue = parsed.error.issues[0]!;
        return fail(`custom scorer ${rel} returned an invalid result (${issue.path.join('.') || 'result'}: ${issue.message}); expected { score: 0..1, pass: boolean, feedback: string }`);
      }
      return parsed.data;
    },
  };
}
