/**
 * benchmark.yaml and loading a benchmark.
 *
 * ```yaml
 * name: gsm8k
 * description: Grade-school maths word problems
 * source: gsm8k                 # built-in loader: gsm8k | bbh | humaneval-x-js | tooluse
 * # tasks: tasks.jsonl          # or, instead of source, your own tasks (relative to this folder)
 * scorer: { type: gsm8k }       # exact | numeric | gsm8k | choice | js-exec | regex | custom
 * split: { val: 200, seed: gsm8k }   # for sources without (some) splits
 * ```
 *
 * `loadBenchmark(nameOrDir, { dataRoot })`: a bare name (`gsm8k`) is the built-in suite
 * `benchmarks/<name>/benchmark.yaml` of this repository; anything else (a path with `/`, or a bare
 * name that is no built-in but an existing folder) is a folder holding a benchmark.yaml, or the
 * yaml file itself. Suites that
 * read public data take it from `dataRoot`, else AUTOAGENT_DATA.
 */
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseDocument } from 'yaml';
import { z } from 'zod';

import { UsageError } from '../base/errors.ts';
import { loadBbh } from './loaders/bbh.ts';
import type { Loaded, LoaderContext } from './loaders/data.ts';
import { loadGsm8k } from './loaders/gsm8k.ts';
import { loadHumanEvalJs } from './loaders/humaneval-x-js.ts';
import { loadTasksJsonl } from './loaders/tasks-jsonl.ts';
import { loadToolUse } from './loaders/tooluse.ts';
import { makeScorer, SCORER_TYPES, SCORERS_DIR, ScorerSpecSchema } from './scorers/index.ts';
import { assignSplits, resolveSplit } from './split.ts';
import type { Benchmark, Split, Task } from './types.ts';

export const BENCHMARKS_DIR = path.dirname(fileURLToPath(import.meta.url));
const LOADERS_DIR = path.join(BENCHMARKS_DIR, 'loaders');

export const BUILTIN_SOURCES = ['gsm8k', 'bbh', 'humaneval-x-js', 'tooluse'] as const;
export type BuiltinSource = (typeof BUILTIN_SOURCES)[number];

const NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;

export const SplitConfigSchema = z.strictObject({
  /** a fraction (< 1) or a whole count (>= 1) of the tasks; defaults per source */
  val: z.number().nonnegative().optional(),
  test: z.number().nonnegative().optional(),
  /** hashed with each task id; default: the benchmark's name */
  seed: z.string().min(1).optional(),
});

const SOURCE_HINT = `one of ${BUILTIN_SOURCES.map((s) => JSON.stringify(s)).join(', ')} (or give your own tasks with tasks: FILE.jsonl instead)`;

export const BenchmarkConfigSchema = z
  .strictObject({
    name: z.string().regex(NAME, 'a name of letters, digits, _ . -'),
    description: z.string().default(''),
    /** a built-in loader; or leave it out and give `tasks` */
    source: z.enum(BUILTIN_SOURCES, { error: SOURCE_HINT }).optional(),
    /** the benchmark's own tasks: a .jsonl file relative to the benchmark folder */
    tasks: z.string().min(1, 'a .jsonl file relative to the benchmark folder').optional(),
    scorer: ScorerSpecSchema,
    split: SplitConfigSchema.default({}),
  })
  .superRefine((c, ctx) => {
    if (c.source === undefined && c.tasks === undefined) {
      ctx.addIssue({ code: 'custom', path: ['source'], message: `missing: give source (${BUILTIN_SOURCES.join(' | ')}) or tasks: FILE.jsonl` });
    } else if (c.source !== undefined && c.tasks !== undefined) {
      ctx.addIssue({ code: 'custom', path: ['tasks'], message: `give either source or tasks, not both (source: ${c.source} brings its own tasks)` });
    }
  });

export type BenchmarkConfig = z.output<typeof BenchmarkConfigSchema>;

/** A loaded benchmark plus where it came from. */
export interface LoadedBenchmark extends Benchmark {
  /** the benchmark folder */
  dir: string;
  config: BenchmarkConfig;
}

export interface LoadOptions {
  /** folder with the public data (gsm8k/, bbh/, humaneval-x-js/); default AUTOAGENT_DATA */
  dataRoot?: string;
}

function describePath(p: PropertyKey[]): string {
  return p.length === 0 ? '(top level)' : p.map((x, i) => (typeof x === 'number' ? `[${x}]` : (i ? '.' : '') + String(x))).join('');
}

/** The first zod issue as "FILE: field `x.y`: what is wrong". */
export function formatConfigError(file: string, error: z.ZodError): string {
  const issue = error.issues[0]!;
  if (issue.code === 'unrecognized_keys') {
    return `${file}: unknown field ${issue.keys.map((k) => `\`${describePath([...issue.path, k])}\``).join(', ')} (fields: name, description, source, tasks, scorer, split)`;
  }
  const field = describePath(issue.path);
  let message = issue.message.replace(/^Invalid input: /, '');
  if (issue.code === 'invalid_value' && 'values' in issue) {
    message = `one of ${(issue.values as unknown[]).map((v) => JSON.stringify(v)).join(', ')}`;
  } else if (issue.code === 'invalid_type') {
    message = `expected ${issue.expected}`;
  }
  if (issue.path[0] === 'scorer' && issue.path[1] === 'type') message = `one of ${SCORER_TYPES.join(', ')}`;
  if (field === 'source' && issue.code !== 'custom') message = SOURCE_HINT;
  return `${file}: field \`${field}\`: ${message}`;
}

export function parseBenchmarkConfig(text: string, file: string): BenchmarkConfig {
  const doc = parseDocument(text, { prettyErrors: false });
  if (doc.errors.length > 0) {
    const err = doc.errors[0]!;
    const line = err.linePos?.[0]?.line;
    throw new UsageError(`${file}${line ? `:${line}` : ''}: not valid YAML (${err.message.split('\n')[0]})`);
  }
  const data: unknown = doc.toJS();
  if (data === null || typeof data !== 'object' || Array.isArray(data)) {
    throw new UsageError(`${file}: expected a YAML mapping with name, source, scorer`);
  }
  const r = BenchmarkConfigSchema.safeParse(data);
  if (!r.success) throw new UsageError(formatConfigError(file, r.error));
  return r.data;
}

/** The benchmark.yaml that `nameOrDir` refers to. */
export function resolveBenchmarkFile(nameOrDir: string): string {
  const bare = NAME.test(nameOrDir) && !nameOrDir.includes(path.sep);
  if (bare) {
    const builtin = path.join(BENCHMARKS_DIR, nameOrDir, 'benchmark.yaml');
    if (fs.existsSync(builtin)) return builtin;
    if (!fs.existsSync(nameOrDir)) {
      const names = listBuiltinBenchmarks().map((b) => b.name);
      throw new UsageError(`benchmark ${JSON.stringify(nameOrDir)}: no built-in benchmark by that name (built in: ${names.join(', ')}); or give the path of a folder with a benchmark.yaml`);
    }
  }
  const abs = path.resolve(nameOrDir);
  if (!fs.existsSync(abs)) throw new UsageError(`${abs}: benchmark folder not found`);
  if (fs.statSync(abs).isDirectory()) {
    const file = path.join(abs, 'benchmark.yaml');
    if (!fs.existsSync(file)) throw new UsageError(`${abs}: no benchmark.yaml in this folder`);
    return file;
  }
  return abs;
}

function runLoader(config: BenchmarkConfig, ctx: LoaderContext): Loaded {
  const source = config.source;
  if (source === undefined) return loadTasksJsonl(ctx, config.tasks!);
  switch (source) {
    case 'gsm8k':
      return loadGsm8k(ctx);
    case 'bbh':
      return loadBbh(ctx);
    case 'humaneval-x-js':
      return loadHumanEvalJs(ctx);
    case 'tooluse':
      return loadToolUse((ids) => assignSplits(ids, resolveSplit(ctx.file, ctx.split, { val: 0.2, test: 0.2, seed: ctx.name }, ids.length)));
  }
}

/** Load a benchmark: its tasks (all splits, stable order), the answer key apart, its scorer. */
export async function loadBenchmark(nameOrDir: string, options: LoadOptions = {}): Promise<LoadedBenchmark> {
  const file = resolveBenchmarkFile(nameOrDir);
  const dir = path.dirname(file);
  const config = parseBenchmarkConfig(fs.readFileSync(file, 'utf8'), file);
  const scorer = await makeScorer(config.scorer, dir);
  const loaded = runLoader(config, { name: config.name, dir, file, dataRoot: options.dataRoot, split: config.split });
  const lockedPaths = [...new Set([dir, ...loaded.files, SCORERS_DIR, LOADERS_DIR])];
  return { name: config.name, description: config.description, tasks: loaded.tasks, answers: loaded.answers, scorer, lockedPaths, dir, config };
}

export interface BuiltinBenchmarkInfo {
  name: string;
  description: string;
  dir: string;
  /** the loader, or `tasks.jsonl` for a suite with its own task file */
  source: string;
  /** whether it reads the public data root */
  needsData: boolean;
}

/** The built-in suites: the folders under benchmarks/ that hold a benchmark.yaml, by name. */
export function listBuiltinBenchmarks(): BuiltinBenchmarkInfo[] {
  const out: BuiltinBenchmarkInfo[] = [];
  for (const entry of fs.readdirSync(BENCHMARKS_DIR, { withFileTypes: true })) {
    const file = path.join(BENCHMARKS_DIR, entry.name, 'benchmark.yaml');
    if (!entry.isDirectory() || !fs.existsSync(file)) continue;
    const config = parseBenchmarkConfig(fs.readFileSync(file, 'utf8'), file);
    const source = config.source ?? config.tasks!;
    out.push({ name: entry.name, description: config.description, dir: path.dirname(file), source, needsData: ['gsm8k', 'bbh', 'humaneval-x-js'].includes(source) });
  }
  return out.sort((a, b) => (a.name < b.name ? -1 : 1));
}

/** The tasks of one split, in the benchmark's order. */
export function tasksOf(benchmark: Pick<Benchmark, 'tasks'>, split: Split): Task[] {
  return benchmark.tasks.filter((t) => t.split === split);
}

/** How many tasks each split has. */
export function splitSizes(benchmark: Pick<Benchmark, 'tasks'>): Record<Split, number> {
  const out: Record<Split, number> = { train: 0, val: 0, test: 0 };
  for (const t of benchmark.tasks) out[t.split]++;
  return out;
}
