// Conformance of the scorers with the upstream rules, on the real data (../shared/data; skipped
// when absent): the figures of the data README must come out exactly.
// - HumanEval-X JS: canonical solutions pass 161/164 in the sandbox, failing exactly 112 and 155
//   (reference bugs) and 162 (needs the js-md5 package); empty completions pass 0/164.
// - GSM8K: the upstream rule parses every gold answer (7,473 train, 1,319 test).
// - BBH: every target scores 100% against itself on all 27 tasks (6,511 examples).
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';

import { defaultScoreContext, loadBenchmark, type ScoreResult, type Task } from '../../benchmarks/index.ts';
import { BBH_TASKS } from '../../benchmarks/loaders/bbh.ts';
import { readGsm8kFile } from '../../benchmarks/loaders/gsm8k.ts';
import { readHumanEvalJs } from '../../benchmarks/loaders/humaneval-x-js.ts';
import { extractGsm8kAnswer } from '../../benchmarks/scorers/gsm8k.ts';
import { sandboxAvailable } from '../../sandbox/index.ts';

const DATA = path.resolve(import.meta.dirname, '../../../shared/data');
const noData = fs.existsSync(path.join(DATA, 'README.md')) ? false : `no benchmark data at ${DATA}`;
const sandbox = sandboxAvailable();
const noSandbox = sandbox.ok ? false : `bwrap unusable here: ${sandbox.message}`;

/** Run `fn` over `items` with at most `limit` at a time; results in input order. */
async function pool<T, R>(items: T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

describe('HumanEval-X JavaScript: the CodeGeeX rule in the sandbox', { skip: noData || noSandbox }, () => {
  const ctx = defaultScoreContext(); // sandboxed, 5 s per program
  const CONCURRENCY = 4;

  test('canonical solutions pass 161/164; exactly JavaScript/112, /155 (reference bugs) and /162 (js-md5) fail', async () => {
    const b = await loadBenchmark('humaneval-x-js', { dataRoot: DATA });
    const canonical = new Map(readHumanEvalJs(path.join(DATA, 'humaneval-x-js/humaneval_js.jsonl.gz')).map((r) => [r.task_id, r.canonical_solution]));
    assert.equal(b.tasks.length, 164);
    const results = await pool(b.tasks, CONCURRENCY, (t) => b.scorer.score(t, b.answers.get(t.id), canonical.get(t.id)!, ctx));
    const failed = b.tasks.filter((_, i) => !results[i]!.pass).map((t) => t.id);
    const why = (id: string) => results[b.tasks.findIndex((t) => t.id === id)]!.feedback;
    assert.deepEqual(failed, ['JavaScript/112', 'JavaScript/155', 'JavaScript/162'], failed.map((id) => `${id}: ${why(id)}`).join('\n'));
    assert.equal(results.filter((r) => r.pass).length, 161);
    for (const r of results) assert.equal(r.score, r.pass ? 1 : 0);
    // the reasons the data README gives
    assert.match(why('JavaScript/112'), /^failed: exit 0: 9 × 'Assertion failed' on stderr; the test has 9 console\.assert calls$/);
    assert.match(why('JavaScript/155'), /^failed: exit 0: 1 × 'Assertion failed' on stderr/);
    assert.match(why('JavaScript/162'), /^failed: exit 1: Error: Cannot find module 'js-md5'/);
  });

  test('empty completions pass 0/164', async () => {
    const b = await loadBenchmark('humaneval-x-js', { dataRoot: DATA });
    const results: ScoreResult[] = await pool(b.tasks, CONCURRENCY, (t: Task) => b.scorer.score(t, b.answers.get(t.id), '', ctx));
    assert.equal(results.filter((r) => r.pass).length, 0);
    for (const r of results) assert.match(r.feedback, /^failed: exit 1: SyntaxError/, r.feedback);
  });
});

describe('GSM8K: the upstream reference rule', { skip: noData }, () => {
  test('parses all 7,473 train and 1,319 test gold answers to an integer string, and the loaded key is that string', async () => {
    const b = await loadBenchmark('gsm8k', { dataRoot: DATA });
    const facts: Record<string, { n: number; commas: number; negative: number }> = {};
    for (const part of ['train', 'test'] as const) {
      const records = readGsm8kFile(path.join(DATA, `gsm8k/${part}.jsonl`));
      let commas = 0;
      let negative = 0;
      records.forEach((r, i) => {
        const gold = extractGsm8kAnswer(r.answer);
        assert.ok(gold !== null && /^-?\d+$/.test(gold), `${part}/${i}: ${gold}`);
        assert.equal(b.answers.get(`${part}/${i}`), gold);
        assert.ok(r.answer.split('\n').at(-1)!.startsWith('#### '), `${part}/${i}: #### is on the last line`);
        if (/#### [^\n]*,/.test(r.answer)) commas++;
        if (gold.startsWith('-')) negative++;
      });
      facts[part] = { n: records.length, commas, negative };
    }
    // the figures of the data README
    assert.deepEqual(facts, { train: { n: 7473, commas: 79, negative: 3 }, test: { n: 1319, commas: 14, negative: 2 } });
  });

  test('every upstream worked answer, given as the output, scores 100% (8,792); without its #### line, 0%', async () => {
    const b = await loadBenchmark('gsm8k', { dataRoot: DATA });
    const ctx = defaultScoreContext();
    const text = new Map<string, string>();
    for (const part of ['train', 'test'] as const) readGsm8kFile(path.join(DATA, `gsm8k/${part}.jsonl`)).forEach((r, i) => text.set(`${part}/${i}`, r.answer));
    let right = 0;
    let invalid = 0;
    for (const t of b.tasks) {
      const full = text.get(t.id)!;
      if ((await b.scorer.score(t, b.answers.get(t.id), full, ctx)).pass) right++;
      const cut = await b.scorer.score(t, b.answers.get(t.id), full.slice(0, full.lastIndexOf('####')), ctx);
      if (!cut.pass && /no '#### <number>'/.test(cut.feedback)) invalid++;
    }
    assert.equal(b.tasks.length, 8792);
    assert.equal(right, 8792);
    assert.equal(invalid, 8792);
  });
});

describe('BIG-Bench Hard: exact match after the README extraction', { skip: noData }, () => {
  const COUNTS: Record<string, number> = { causal_judgement: 187, penguins_in_a_table: 146, snarks: 178 };

  test('27 tasks, 6,511 examples; each target scores 100% against itself, direct and as a CoT answer, on every task', async () => {
    const b = await loadBenchmark('bbh', { dataRoot: DATA });
    const ctx = defaultScoreContext();
    assert.equal(b.tasks.length, 6511);
    const perTask = new Map<string, { n: number; direct: number; cot: number; wrong: number }>();
    const targets = [...new Set(b.answers.values())] as string[];
    for (const t of b.tasks) {
      const target = b.answers.get(t.id) as string;
      const c = perTask.get(t.tags![0]!) ?? { n: 0, direct: 0, cot: 0, wrong: 0 };
      c.n++;
      if ((await b.scorer.score(t, target, target, ctx)).pass) c.direct++;
      if ((await b.scorer.score(t, target, `Let's think step by step.\nSo the answer is (Z). No, wait.\nSo the answer is ${target}.`, ctx)).pass) c.cot++;
      const other = targets.find((x) => x !== target)!;
      if ((await b.scorer.score(t, target, `So the answer is ${other}.`, ctx)).pass) c.wrong++;
      perTask.set(t.tags![0]!, c);
    }
    assert.deepEqual([...perTask.keys()], [...BBH_TASKS]);
    for (const [task, c] of perTask) {
      assert.equal(c.n, COUNTS[task] ?? 250, task);
      assert.deepEqual(c, { n: c.n, direct: c.n, cot: c.n, wrong: 0 }, task);
    }
  });
});
