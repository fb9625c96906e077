/**
 * The data root (`--data DIR` or AUTOAGENT_DATA) and the public files the built-in suites read from
 * it, with where each comes from upstream (per /work/shared/data/README.md's source list). A missing
 * root or file is a one-line UserError that names the file and where to download it.
 */
import fs from 'node:fs';
import path from 'node:path';

import { UserError } from '../../base/errors.ts';
import type { Task } from '../types.ts';

export interface DataFile {
  /** path under the data root */
  rel: string;
  /** GitHub repository, commit and path it comes from */
  repo: string;
  commit: string;
  upstream: string;
}

const GSM8K = { repo: 'openai/grade-school-math', commit: '3101c7d5' };
export const DATA_FILES = {
  gsm8kTrain: { rel: 'gsm8k/train.jsonl', ...GSM8K, upstream: 'grade_school_math/data/train.jsonl' },
  gsm8kTest: { rel: 'gsm8k/test.jsonl', ...GSM8K, upstream: 'grade_school_math/data/test.jsonl' },
  humanevalJs: {
    rel: 'humaneval-x-js/humaneval_js.jsonl.gz',
    repo: 'THUDM/CodeGeeX',
    commit: '2838420b',
    upstream: 'codegeex/benchmark/humaneval-x/js/data/humaneval_js.jsonl.gz',
  },
  bbh: (task: string): DataFile => ({ rel: `bbh/${task}.json`, repo: 'suzgunmirac/BIG-Bench-Hard', commit: '9ee07bd4', upstream: `bbh/${task}.json` }),
} satisfies Record<string, DataFile | ((t: string) => DataFile)>;

function origin(f: DataFile): string {
  return `${f.upstream} from the GitHub repository ${f.repo} (commit ${f.commit})`;
}

/** `option` (from --data or loadBenchmark's dataRoot), else AUTOAGENT_DATA, else a UserError. */
export function resolveDataRoot(benchmark: string, option: string | undefined, example: DataFile): string {
  const root = option ?? process.env.AUTOAGENT_DATA;
  if (root === undefined || root === '') {
    throw new UserError(
      `${benchmark}: no data root: pass --data DIR or set AUTOAGENT_DATA to the folder that holds ${example.rel} (get ${origin(example)})`,
    );
  }
  const abs = path.resolve(root);
  if (!fs.existsSync(abs) || !fs.statSync(abs).isDirectory()) {
    throw new UserError(`${benchmark}: data root ${abs} is not a folder (from ${option !== undefined ? '--data' : 'AUTOAGENT_DATA'}); it should hold ${example.rel}`);
  }
  return abs;
}

/** The absolute path of `f` under `root`; a UserError saying where to get it when it is missing. */
export function dataFile(benchmark: string, root: string, f: DataFile): string {
  const abs = path.join(root, f.rel);
  if (!fs.existsSync(abs)) {
    throw new UserError(`${benchmark}: data file not found: ${abs}; download ${origin(f)} and save it as ${abs}`);
  }
  return abs;
}

/** A line of a data file that is not what we expect: one line naming file and line. */
export function badData(file: string, line: number | null, what: string): UserError {
  return new UserError(`${file}${line !== null ? `:${line}` : ''}: ${what}`);
}

/** What a loader hands back: tasks in a stable order, their answers, and the files it read. */
export interface Loaded {
  tasks: Task[];
  answers: Map<string, unknown>;
  /** absolute paths of the data files that hold the answers */
  files: string[];
}

/** Split options as written in benchmark.yaml (all optional). */
export interface SplitOptions {
  val?: number;
  test?: number;
  seed?: string;
}

export interface LoaderContext {
  /** the benchmark's name (errors, default split seed) */
  name: string;
  /** the benchmark folder */
  dir: string;
  /** its benchmark.yaml (errors) */
  file: string;
  dataRoot: string | undefined;
  split: SplitOptions;
}
