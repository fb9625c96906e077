/**
 * `tasks: tasks.jsonl` (instead of `source`): a benchmark's own tasks, one JSON object a line:
 * `{"id": "...", "input": {...}, "answer": ..., "split"?: "train"|"val"|"test", "tags"?: [...], "files"?: {"path": "content"}}`.
 * Lines without `split` get the seeded hash split (benchmark.yaml `split`, default val 0.2, test 0.2).
 * Blank lines are skipped. The answer goes to the answer key only.
 */
import fs from 'node:fs';
import path from 'node:path';
import { z } from 'zod';

import { UsageError } from '../../base/errors.ts';
import { assignSplits, resolveSplit } from '../split.ts';
import type { Split, Task } from '../types.ts';
import type { Loaded, LoaderContext } from './data.ts';

/** A path a task file may have in the scratch folder: relative, no `..`. */
export function safeRelPath(p: string): boolean {
  return p !== '' && !path.isAbsolute(p) && !p.split(/[\\/]/).includes('..');
}

export const TaskLineSchema = z.strictObject({
  id: z.string().min(1, 'a non-empty id'),
  input: z.record(z.string(), z.unknown()),
  answer: z.unknown(),
  split: z.enum(['train', 'val', 'test']).optional(),
  tags: z.array(z.string()).optional(),
  files: z.record(z.string(), z.string()).optional(),
});

export function loadTasksJsonl(ctx: LoaderContext, tasksPath: string): Loaded {
  const file = path.resolve(ctx.dir, tasksPath);
  if (!fs.existsSync(file)) throw new UsageError(`${ctx.file}: field \`tasks\`: file not found: ${file}`);
  const rows: Array<z.output<typeof TaskLineSchema> & { line: number }> = [];
  const seen = new Map<string, number>();
  fs.readFileSync(file, 'utf8')
    .split('\n')
    .forEach((text, i) => {
      const line = i + 1;
      if (text.trim() === '') return;
      let obj: unknown;
      try {
        obj = JSON.parse(text);
      } catch (e) {
        throw new UsageError(`${file}:${line}: not a JSON object (${(e as Error).message})`);
      }
      if (obj !== null && typeof obj === 'object' && !Array.isArray(obj) && !('answer' in obj)) {
        throw new UsageError(`${file}:${line}: field \`answer\`: missing (the expected answer for the scorer)`);
      }
      const r = TaskLineSchema.safeParse(obj);
      if (!r.success) {
        const issue = r.error.issues[0]!;
        const field = issue.path.map(String).join('.') || '(line)';
        const msg = issue.code === 'unrecognized_keys' ? `unknown field(s) ${issue.keys.join(', ')} (allowed: id, input, answer, split, tags, files)` : issue.message.replace(/^Invalid input: /, '');
        throw new UsageError(`${file}:${line}: field \`${field}\`: ${msg}`);
      }
      const badPath = Object.keys(r.data.files ?? {}).find((p) => !safeRelPath(p));
      if (badPath !== undefined) {
        throw new UsageError(`${file}:${line}: field \`files\`: ${JSON.stringify(badPath)} is not a relative path inside the scratch folder (no .., not absolute)`);
      }
      const prev = seen.get(r.data.id);
      if (prev !== undefined) throw new UsageError(`${file}:${line}: field \`id\`: duplicate id ${JSON.stringify(r.data.id)} (first on line ${prev})`);
      seen.set(r.data.id, line);
      rows.push({ ...r.data, line });
    });
  if (rows.length === 0) throw new UsageError(`${file}: no tasks (one JSON object a line: {"id", "input", "answer"})`);
  const unsplit = rows.filter((r) => r.split === undefined);
  const hashed = assignSplits(
    unsplit.map((r) => r.id),
    resolveSplit(ctx.file, ctx.split, { val: 0.2, test: 0.2, seed: ctx.name }, unsplit.length),
  );
  const splitOf = new Map<string, Split>(unsplit.map((r, i) => [r.id, hashed[i]!]));
  const tasks: Task[] = rows.map((r) => {
    const t: Task = { id: r.id, split: r.split ?? splitOf.get(r.id)!, input: r.input };
    if (r.tags) t.tags = r.tags;
    if (r.files) t.files = r.files;
    return t;
  });
  return { tasks, answers: new Map(rows.map((r) => [r.id, r.answer])), files: [file] };
}
