/**
 * HumanEval-X JavaScript (THUDM/CodeGeeX): `humaneval-x-js/humaneval_js.jsonl.gz`, 164 problems.
 *
 * - ids are upstream's `task_id`s, `JavaScript/0` … `JavaScript/163`.
 * - No upstream split: train / val / test by the seeded hash of the id (default val 0.2, test 0.2).
 * - input: `{ prompt, declaration, entry_point }`; `entry_point` is the name of the function the
 *   prompt opens (the last `const NAME =` / `function NAME` in the prompt; upstream has no field).
 * - Answer key: `{ test }` (the hidden tests). The canonical solution and `example_test` are not used.
 */
import fs from 'node:fs';
import zlib from 'node:zlib';

import { assignSplits, resolveSplit } from '../split.ts';
import type { Task } from '../types.ts';
import { badData, dataFile, DATA_FILES, resolveDataRoot, type Loaded, type LoaderContext } from './data.ts';

export interface HumanEvalJsRecord {
  task_id: string;
  prompt: string;
  canonical_solution: string;
  test: string;
  declaration: string;
  example_test: string;
}

const FIELDS = ['task_id', 'prompt', 'canonical_solution', 'test', 'declaration', 'example_test'] as const;

export function readHumanEvalJs(file: string): HumanEvalJsRecord[] {
  let text: string;
  try {
    text = zlib.gunzipSync(fs.readFileSync(file)).toString('utf8');
  } catch (e) {
    throw badData(file, null, `not a gzip file (${(e as Error).message})`);
  }
  const out: HumanEvalJsRecord[] = [];
  text.split('\n').forEach((line, i) => {
    if (line.trim() === '') return;
    let obj: Record<string, unknown>;
    try {
      obj = JSON.parse(line) as Record<string, unknown>;
    } catch {
      throw badData(file, i + 1, 'not a JSON line');
    }
    for (const f of FIELDS) {
      if (typeof obj?.[f] !== 'string') throw badData(file, i + 1, `field ${f}: expected a string`);
    }
    out.push(obj as unknown as HumanEvalJsRecord);
  });
  return out;
}

/** The function the prompt opens: its last `const NAME =` or `function NAME`. */
export function entryPoint(prompt: string): string | null {
  const names = [...prompt.matchAll(/(?:^|\n)\s*(?:const|let|var|function)\s+([A-Za-z_$][\w$]*)/g)].map((m) => m[1]!);
  return names.length ? names[names.length - 1]! : null;
}

export function loadHumanEvalJs(ctx: LoaderContext): Loaded {
  const root = resolveDataRoot(ctx.name, ctx.dataRoot, DATA_FILES.humanevalJs);
  const file = dataFile(ctx.name, root, DATA_FILES.humanevalJs);
  const records = readHumanEvalJs(file);
  const ids = records.map((r) => r.task_id);
  const splits = assignSplits(ids, resolveSplit(ctx.file, ctx.split, { val: 0.2, test: 0.2, seed: ctx.name }, ids.length));
  const tasks: Task[] = records.map((r, i) => ({
    id: r.task_id,
    split: splits[i]!,
    input: { prompt: r.prompt, declaration: r.declaration, entry_point: entryPoint(r.prompt) ?? '' },
  }));
  const answers = new Map<string, unknown>(records.map((r) => [r.task_id, { test: r.test }]));
  return { tasks, answers, files: [file] };
}
