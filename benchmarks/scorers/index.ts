/**
 * The locked scorers and the `scorer:` block of benchmark.yaml. `makeScorer(spec, benchmarkDir)`
 * validates the block and returns the scorer; see each module for its exact rule.
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';

import { UsageError } from '../../base/errors.ts';
import type { Scorer } from '../types.ts';
import { choiceScorer } from './choice.ts';
import { customScorer } from './custom.ts';
import { exactScorer } from './exact.ts';
import { gsm8kScorer } from './gsm8k.ts';
import { jsExecScorer } from './js-exec.ts';
import { DEFAULT_TOLERANCE, numericScorer } from './numeric.ts';
import { captureGroups, regexScorer } from './regex.ts';
import { DEFAULT_NORMALIZE } from './util.ts';

export const SCORER_TYPES = ['exact', 'numeric', 'gsm8k', 'choice', 'js-exec', 'regex', 'custom'] as const;
export type ScorerType = (typeof SCORER_TYPES)[number];

export const NormalizeSchema = z.strictObject({
  /** `sensitive` (default) or `insensitive` */
  case: z.enum(['sensitive', 'insensitive']).default(DEFAULT_NORMALIZE.case),
  /** `trim` (default), `collapse` (runs of whitespace → one space, then trim) or `exact` */
  whitespace: z.enum(['exact', 'trim', 'collapse']).default(DEFAULT_NORMALIZE.whitespace),
});

const ONLY: Record<string, ScorerType[]> = {
  pattern: ['regex'],
  flags: ['regex'],
  module: ['custom'],
  normalize: ['exact', 'regex'],
  tolerance: ['numeric'],
};

export const ScorerSpecSchema = z
  .strictObject({
    type: z.enum(SCORER_TYPES),
    /** regex: a JavaScript regular expression with exactly one capturing group */
    pattern: z.string().min(1).optional(),
    /** regex: flags from i, m, s, u */
    flags: z.string().regex(/^[imsu]*$/, 'flags from i, m, s, u').optional(),
    /** custom: a module in the benchmark folder exporting score(task, expected, output) */
    module: z.string().min(1).optional(),
    /** exact and regex: how both sides are normalised before comparing */
    normalize: NormalizeSchema.optional(),
    /** numeric: relative tolerance (default 1e-6) */
    tolerance: z.number().nonnegative().optional(),
  })
  .superRefine((s, ctx) => {
    for (const [key, types] of Object.entries(ONLY)) {
      if ((s as Record<string, unknown>)[key] !== undefined && !types.includes(s.type)) {
        ctx.addIssue({ code: 'custom', path: [key], message: `only used by scorer type ${types.join(' or ')}, not ${s.type}; remove it` });
      }
    }
    if (s.type === 'regex') {
      if (s.pattern === undefined) {
        ctx.addIssue({ code: 'custom', path: ['pattern'], message: 'the regex scorer needs a pattern with one capturing group, e.g. "Answer: (.+)"' });
        return;
      }
      let groups: number;
      try {
        groups = captureGroups(s.pattern, s.flags ?? '');
      } catch (e) {
        ctx.addIssue({ code: 'custom', path: ['pattern'], message: `not a valid JavaScript regular expression (${(e as Error).message})` });
        return;
      }
      if (groups !== 1) ctx.addIssue({ code: 'custom', path: ['pattern'], message: `needs exactly one capturing group (the answer), found ${groups}` });
    }
    if (s.type === 'custom' && s.module === undefined) {
      ctx.addIssue({ code: 'custom', path: ['module'], message: 'the custom scorer needs module: a .ts or .js file in the benchmark folder that exports score(task, expected, output)' });
    }
  });

export type ScorerSpec = z.output<typeof ScorerSpecSchema>;
export type ScorerSpecInput = z.input<typeof ScorerSpecSchema>;

/**
 * The scorer for a `scorer:` block (validated here too: a bad block is a one-line UsageError naming
 * benchmarkDir/benchmark.yaml and the field). `benchmarkDir` resolves a custom scorer's module.
 */
export async function makeScorer(spec: ScorerSpecInput, benchmarkDir: string): Promise<Scorer> {
  const parsed = ScorerSpecSchema.safeParse(spec);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const field = ['scorer', ...issue.path.map(String)].join('.');
    throw new UsageError(`${path.join(benchmarkDir, 'benchmark.yaml')}: field \`${field}\`: ${issue.message.replace(/^Invalid input: /, '')}`);
  }
  const s = parsed.data;
  const normalize = { ...DEFAULT_NORMALIZE, ...s.normalize };
  switch (s.type) {
    case 'exact':
      return exactScorer(normalize);
    case 'numeric':
      return numericScorer(s.tolerance ?? DEFAULT_TOLERANCE);
    case 'gsm8k':
      return gsm8kScorer();
    case 'choice':
      return choiceScorer();
    case 'js-exec':
      return jsExecScorer();
    case 'regex':
      return regexScorer(s.pattern!, s.flags ?? '', normalize);
    case 'custom':
      return customScorer(s.module!, benchmarkDir);
  }
}

/** Source files of the scorers (locked in a harness study). */
export const SCORERS_DIR = path.dirname(fileURLToPath(import.meta.url));
