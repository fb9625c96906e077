// Tests for benchmarks/: benchmark.yaml, loaders and splits, the answer key kept apart, the
// scorers and their feedback, the tooluse suite (solved from its files by a reference solver
// written here), aggregate. Suites that read public data are skipped when ../shared/data is absent.
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import {
  aggregate,
  defaultScoreContext,
  listBuiltinBenchmarks,
  loadBenchmark,
  makeScorer,
  splitSizes,
  stripFence,
  wilson,
  type Benchmark,
  type ScoreResult,
  type Scorer,
  type Task,
} from '../../benchmarks/index.ts';
import { UsageError, UserError } from '../../base/errors.ts';
import { sandboxAvailable } from '../../sandbox/index.ts';

const DATA = path.resolve(import.meta.dirname, '../../../shared/data');
const haveData = fs.existsSync(path.join(DATA, 'README.md'));
const noData = haveData ? false : `no benchmark data at ${DATA}`;
const sandbox = sandboxAvailable();
const noSandbox = sandbox.ok ? false : `bwrap unusable here: ${sandbox.message}`;
const ctx = defaultScoreContext();

const tmpDirs: string[] = [];
function tmp(): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'autoagent-bench-test-'));
  tmpDirs.push(d);
  return d;
}
after(() => {
  for (const d of tmpDirs) fs.rmSync(d, { recursive: true, force: true });
});

/** A benchmark folder with the given files (benchmark.yaml, tasks.jsonl, scorer modules). */
function benchDir(files: Record<string, string>): string {
  const dir = tmp();
  for (const [p, c] of Object.entries(files)) fs.writeFileSync(path.join(dir, p), c);
  return dir;
}
const jsonl = (rows: unknown[]) => rows.map((r) => JSON.stringify(r)).join('\n') + '\n';
const TASK: Task = { id: 't', split: 'train', input: {} };

/** The UserError a promise rejects with (asserted to be one line). */
async function userError(p: Promise<unknown>, cls: typeof UserError = UserError): Promise<string> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof cls, `expected a ${cls.name}, got ${String(e)}`);
    const msg = (e as Error).message;
    assert.ok(!msg.includes('\n'), `one line: ${msg}`);
    return msg;
  }
  assert.fail('expected an error');
}

async function score(s: Scorer, expected: unknown, output: string, task: Task = TASK): Promise<ScoreResult> {
  return s.score(task, expected, output, ctx);
}

// ---------------------------------------------------------------------------------------------

describe('built-in suites', () => {
  test('the four built-in suites are listed with their sources', () => {
    const list = listBuiltinBenchmarks();
    assert.deepEqual(
      list.map((b) => [b.name, b.source, b.needsData]),
      [
        ['bbh', 'bbh', true],
        ['gsm8k', 'gsm8k', true],
        ['humaneval-x-js', 'humaneval-x-js', true],
        ['tooluse', 'tooluse', false],
      ],
    );
    for (const b of list) assert.ok(b.description.length > 20, b.name);
  });

  const sizes: Record<string, [number, number, number]> = {
    gsm8k: [7273, 200, 1319],
    bbh: [3772, 1355, 1384],
    'humaneval-x-js': [109, 31, 24],
    tooluse: [18, 6, 6],
  };
  for (const [name, [train, val, tst]] of Object.entries(sizes)) {
    test(`${name}: splits are deterministic, disjoint, and cover every task (${train}/${val}/${tst})`, { skip: name === 'tooluse' ? false : noData }, async () => {
      const a = await loadBenchmark(name, { dataRoot: DATA });
      const b = await loadBenchmark(name, { dataRoot: DATA });
      assert.deepEqual(
        a.tasks.map((t) => [t.id, t.split]),
        b.tasks.map((t) => [t.id, t.split]),
      );
      const ids = new Set(a.tasks.map((t) => t.id));
      assert.equal(ids.size, a.tasks.length, 'unique ids, so each task is in exactly one split');
      assert.deepEqual(splitSizes(a), { train, val, test: tst });
      assert.deepEqual([...a.answers.keys()].sort(), [...ids].sort(), 'one answer per task');
      assert.equal(a.name, name);
      assert.ok(a.lockedPaths.includes(path.join(a.dir)), 'the benchmark folder is locked');
    });
  }

  test('gsm8k: test is upstream test.jsonl, val is 200 of train.jsonl; the answer key is the gold number; no solution in the input', { skip: noData }, async () => {
    const b = await loadBenchmark('gsm8k', { dataRoot: DATA });
    for (const t of b.tasks) {
      assert.equal(t.split === 'test', t.id.startsWith('test/'), t.id);
      assert.deepEqual(Object.keys(t.input), ['question']);
      const text = JSON.stringify(t);
      assert.ok(!text.includes('####') && !text.includes('<<'), `${t.id}: no worked answer in the task`);
      assert.ok(!text.includes(`#### ${b.answers.get(t.id)}`));
    }
    assert.equal(b.answers.get('test/0'), '18'); // Janet's ducks
    assert.equal(b.tasks.find((t) => t.id === 'test/0')!.input.question, JSON.parse(fs.readFileSync(path.join(DATA, 'gsm8k/test.jsonl'), 'utf8').split('\n')[0]!).question);
    assert.ok(b.lockedPaths.includes(path.join(DATA, 'gsm8k/test.jsonl')));
  });

  test('bbh: ids <task>/<index>, tags [task], input {input, task}; the target is only in the answer key', { skip: noData }, async () => {
    const b = await loadBenchmark('bbh', { dataRoot: DATA });
    const t = b.tasks.find((x) => x.id === 'boolean_expressions/0')!;
    assert.deepEqual(t.input, { input: 'not ( True ) and ( True ) is', task: 'boolean_expressions' });
    assert.deepEqual(t.tags, ['boolean_expressions']);
    assert.equal(b.answers.get('boolean_expressions/0'), 'False');
    for (const x of b.tasks) assert.deepEqual(Object.keys(x.input), ['input', 'task']);
    // every task gets about 20% val and 20% test
    const perTask = new Map<string, number[]>();
    for (const x of b.tasks) {
      const c = perTask.get(x.tags![0]!) ?? [0, 0];
      c[0]!++;
      if (x.split === 'val') c[1]!++;
      perTask.set(x.tags![0]!, c);
    }
    assert.equal(perTask.size, 27);
    for (const [name, [n, val]] of perTask) assert.ok(val! / n! > 0.1 && val! / n! < 0.3, `${name}: ${val}/${n} in val`);
  });

  test('humaneval-x-js: input {prompt, declaration, entry_point}; the hidden test is only in the answer key', { skip: noData }, async () => {
    const b = await loadBenchmark('humaneval-x-js', { dataRoot: DATA });
    assert.equal(b.tasks.length, 164);
    const t0 = b.tasks[0]!;
    assert.equal(t0.id, 'JavaScript/0');
    assert.equal(t0.input.entry_point, 'hasCloseElements');
    assert.equal(b.tasks[10]!.input.entry_point, 'makePalindrome', 'the function the prompt opens, not a helper before it');
    for (const t of b.tasks) {
      assert.deepEqual(Object.keys(t.input), ['prompt', 'declaration', 'entry_point']);
      const key = b.answers.get(t.id) as { test: string };
      assert.ok(key.test.includes('console.assert'));
      const text = JSON.stringify(t.input);
      assert.ok(!text.includes('console.assert') && !text.includes(JSON.stringify(key.test).slice(1, -1)), `${t.id}: no test in the input`);
      assert.ok((t.input.prompt as string).endsWith('{\n') || (t.input.prompt as string).endsWith('{'), t.id);
    }
  });
});

// ---------------------------------------------------------------------------------------------
// tooluse: a reference solver that reads only the task's files and question

function csv(text: string): Array<Record<string, string>> {
  const [head, ...rows] = text.trim().split('\n');
  const cols = head!.split(',');
  return rows.map((r) => Object.fromEntries(r.split(',').map((v, i) => [cols[i]!, v])));
}
const cents = (s: string | number) => Math.round(Number(s) * 100);
function need(re: RegExp, s: string): string[] {
  const m = re.exec(s);
  assert.ok(m, `question does not match ${re}: ${s}`);
  return m.slice(1);
}
const MONTH = ['January', 'February', 'March', 'April', 'May', 'June', 'July', 'August', 'September', 'October', 'November', 'December'];
interface LogEntry {
  time: string;
  level: string;
  service: string;
  msg: string;
}
function appLog(text: string): LogEntry[] {
  return text
    .trim()
    .split('\n')
    .map((l) => {
      const [, time, level, service, msg] = /^(\S+) +(\S+) +(\S+): (.*)$/.exec(l)!;
      return { time: time!, level: level!, service: service!, msg: msg! };
    });
}

function solveToolUse(t: Task): number {
  const q = t.input.question as string;
  const f = t.files!;
  switch (t.tags![1]) {
    case 'sales-revenue': {
      const [region, month] = need(/"(\w+)" region dated in (\w+) 2024/, q);
      const mm = String(MONTH.indexOf(month!) + 1).padStart(2, '0');
      const rows = csv(f['sales.csv']!).filter((r) => r.region === region && r.date!.startsWith(`2024-${mm}-`));
      return rows.reduce((s, r) => s + Number(r.units) * cents(r.unit_price!), 0) / 100;
    }
    case 'sales-units': {
      const [product, region] = need(/units of "(\w+)".*except those in the "(\w+)" region/, q);
      return csv(f['sales.csv']!)
        .filter((r) => r.product === product && r.region !== region)
        .reduce((s, r) => s + Number(r.units), 0);
    }
    case 'sales-top-order': {
      const [product] = need(/orders for "(\w+)"/, q);
      const rows = csv(f['sales.csv']!).filter((r) => r.product === product);
      const best = rows.reduce((a, r) => (Number(r.units) * cents(r.unit_price!) > Number(a.units) * cents(a.unit_price!) ? r : a));
      return Number(best.order_id);
    }
    case 'log-errors-window': {
      const [from, to] = need(/from (\S+ \S+) to (\S+ \S+) UTC/, q).map((s) => s.replace(' ', 'T') + 'Z');
      return appLog(f['app.log']!).filter((e) => e.level === 'ERROR' && e.time >= from! && e.time <= to!).length;
    }
    case 'log-error-span': {
      const [service] = need(/service "(\w+)"/, q);
      const errs = appLog(f['app.log']!).filter((e) => e.level === 'ERROR' && e.service === service);
      return (Date.parse(errs[errs.length - 1]!.time) - Date.parse(errs[0]!.time)) / 1000;
    }
    case 'log-slowest-request': {
      const [p] = need(/requests to (\S+) that returned status 200/, q);
      let best: [number, number] = [-1, -1];
      for (const e of appLog(f['app.log']!)) {
        const m = /^request id=(\d+) path=(\S+) status=(\d+) latency_ms=(\d+)$/.exec(e.msg);
        if (m && m[2] === p && m[3] === '200' && Number(m[4]) > best[1]) best = [Number(m[1]), Number(m[4])];
      }
      return best[0];
    }
    case 'access-bytes-5xx': {
      assert.match(q, /paths starting with \/api\/ that got a 5xx status/);
      let total = 0;
      for (const line of f['access.log']!.trim().split('\n')) {
        const [, p, status, bytes] = /"[A-Z]+ (\S+) HTTP\/[\d.]+" (\d{3}) (\d+|-)/.exec(line)!;
        if (p!.startsWith('/api/') && status!.startsWith('5')) total += bytes === '-' ? 0 : Number(bytes);
      }
      return total;
    }
    case 'inventory-value': {
      const [category, warehouse] = need(/category "(\w+)" stored in warehouse "(\w+)"/, q);
      const items = JSON.parse(f['inventory.json']!).items as Array<Record<string, number | string>>;
      return items.filter((i) => i.category === category && i.warehouse === warehouse).reduce((s, i) => s + Number(i.qty) * cents(i.unit_cost!), 0) / 100;
    }
    case 'inventory-min-qty': {
      const [category] = need(/category "(\w+)" that are in stock/, q);
      const items = (JSON.parse(f['inventory.json']!).items as Array<Record<string, number | string>>).filter((i) => i.category === category && Number(i.qty) > 0);
      return Number(items.reduce((a, i) => (Number(i.qty) < Number(a.qty) ? i : a)).sku);
    }
    case 'orders-join': {
      const [country] = need(/customers from (\w+)\?/, q);
      const ids = new Set((JSON.parse(f['customers.json']!) as Array<{ id: number; country: string }>).filter((c) => c.country === country).map((c) => String(c.id)));
      return csv(f['orders.csv']!)
        .filter((o) => ids.has(o.customer_id!))
        .reduce((s, o) => s + cents(o.amount!), 0) / 100;
    }
  }
  throw new Error(`no solver for ${t.id}`);
}

describe('tooluse', () => {
  const saved = process.env.AUTOAGENT_DATA;
  let b: Benchmark;
  test('loads without a data root: 30 tasks, 10 kinds, each with files and a numeric answer', async () => {
    delete process.env.AUTOAGENT_DATA;
    try {
      b = await loadBenchmark('tooluse');
    } finally {
      if (saved !== undefined) process.env.AUTOAGENT_DATA = saved;
    }
    assert.equal(b.tasks.length, 30);
    assert.equal(new Set(b.tasks.map((t) => t.tags![1])).size, 10);
    assert.deepEqual(b.tasks.find((t) => t.id === 'log-error-span/0')!.tags, ['tooluse', 'log-error-span', 'logs']);
    assert.equal(b.tasks.filter((t) => t.tags!.includes('logs')).length, 12);
    for (const t of b.tasks) {
      assert.deepEqual(Object.keys(t.input), ['question']);
      assert.ok(Object.keys(t.files ?? {}).length >= 1, t.id);
      assert.equal(typeof b.answers.get(t.id), 'number', t.id);
      assert.ok(!(t.input.question as string).includes(String(b.answers.get(t.id))), `${t.id}: the answer is not in the question`);
      for (const name of Object.keys(t.files!)) assert.ok((t.input.question as string).includes(name), `${t.id}: the question names ${name}`);
    }
  });

  test('every answer is computed from the task files by an independent reference solver, and the scorer accepts it', async () => {
    for (const t of b.tasks) {
      const solved = solveToolUse(t);
      assert.equal(solved, b.answers.get(t.id), `${t.id}: ${t.input.question}`);
      const r = await score(b.scorer, b.answers.get(t.id), `I read the file and computed it.\n${solved.toLocaleString('en-US', { maximumFractionDigits: 2 })}`);
      assert.ok(r.pass, `${t.id}: ${r.feedback}`);
    }
  });

  test('answers are not guessable: all distinct, spread over orders of magnitude; no constant guess gets more than one right', async () => {
    const answers = b.tasks.map((t) => b.answers.get(t.id) as number);
    assert.equal(new Set(answers).size, 30);
    const mags = new Set(answers.map((a) => Math.floor(Math.log10(a))));
    assert.ok(mags.size >= 4, `orders of magnitude: ${[...mags]}`);
    for (const guess of [...answers, 0, 1, 42, 100]) {
      let right = 0;
      for (const t of b.tasks) if ((await score(b.scorer, b.answers.get(t.id), String(guess))).pass) right++;
      assert.ok(right <= 1, `guess ${guess} is right ${right} times`);
    }
    // the same tasks from the same seed on every load
    const again = await loadBenchmark('tooluse');
    assert.deepEqual(again.tasks, b.tasks);
  });
});

// ---------------------------------------------------------------------------------------------

describe('scorers', () => {
  test('gsm8k: the upstream rule (first #### match, commas removed, string comparison) with feedback', async () => {
    const s = await makeScorer({ type: 'gsm8k' }, tmp());
    assert.deepEqual(await score(s, '42', 'so 6*7 = 42\n#### 42'), { score: 1, pass: true, feedback: 'correct: 42 in "#### 42"' });
    assert.deepEqual(await score(s, '42', 'It is 41.\n#### 41'), { score: 0, pass: false, feedback: 'expected 42, found 41 in "#### 41"' });
    const none = await score(s, '42', 'The answer is 42.');
    assert.equal(none.pass, false);
    assert.match(none.feedback, /no '#### <number>' in the output/);
    assert.match(none.feedback, /The answer is 42\./);
    assert.equal((await score(s, '1000', '#### 1,000')).pass, true, 'commas are removed');
    assert.equal((await score(s, '-3', '#### -3')).pass, true);
    const f = await score(s, '18', '#### 18.0');
    assert.equal(f.pass, false, 'string comparison: 18.0 is not 18');
    assert.match(f.feedback, /expected 18, found 18\.0.*string comparison/);
    assert.equal((await score(s, '18', '#### 18.')).pass, false, 'a trailing dot is part of the match upstream');
    assert.equal((await score(s, '5', '#### 5\nwait, no: #### 6')).pass, true, 'the first match counts');
    assert.equal((await score(s, '5', '####5')).pass, false, 'needs "#### " with a space');
    assert.equal((await score(s, '18', 'Janet ... #### 18')).pass, true);
  });

  test('choice: the BBH rule (after the last "So the answer is ", first line, one trailing dot dropped, exact)', async () => {
    const s = await makeScorer({ type: 'choice' }, tmp());
    const cot = 'Step 1 ... So the answer is (B). Hmm.\nLet me recheck. So the answer is (A).';
    assert.deepEqual(await score(s, '(A)', cot), { score: 1, pass: true, feedback: `correct: "(A)" (text after the last 'So the answer is')` });
    const wrong = await score(s, '(A)', 'So the answer is (C).');
    assert.equal(wrong.pass, false);
    assert.match(wrong.feedback, /expected "\(A\)", found "\(C\)" \(text after the last 'So the answer is'/);
    assert.equal((await score(s, 'True', '  True.\n\nbecause ...')).pass, true, 'direct: whole output, stripped, first line, dot dropped');
    assert.equal((await score(s, 'True', 'True..')).pass, false, 'only one trailing dot is dropped');
    const cased = await score(s, 'yes', 'So the answer is Yes.');
    assert.equal(cased.pass, false);
    assert.match(cased.feedback, /case-sensitive/);
    assert.equal((await score(s, 'True', 'the answer is True')).pass, false, 'only "So the answer is " is a marker');
    assert.equal((await score(s, '] ] >', 'So the answer is ] ] >.')).pass, true);
    assert.equal((await score(s, '(A)', 'So the answer is (A) because ...')).pass, false, 'no normalisation beyond the rule');
  });

  test('numeric: the last number, relative tolerance, thousands commas and signs', async () => {
    const s = await makeScorer({ type: 'numeric' }, tmp());
    const r = await score(s, 42, 'First 17, then 25, total 42.');
    assert.equal(r.pass, true);
    assert.match(r.feedback, /^correct: 42 \(last number, in ".*total 42\."\)$/);
    const w = await score(s, 42, 'The sum is 41.');
    assert.equal(w.feedback, 'expected 42, found 41 (last number, in "The sum is 41.")');
    assert.match((await score(s, 42, 'I cannot tell.')).feedback, /^expected 42, found no number in the output "I cannot tell\."$/);
    assert.equal((await score(s, 1234567.5, 'It is 1,234,567.50')).pass, true);
    assert.equal((await score(s, -12, 'change: -12')).pass, true);
    assert.equal((await score(s, '3.5', '$3.50')).pass, true, 'a numeric string key');
    assert.equal((await score(s, 1e6, '1000000.5')).pass, true, 'within 1e-6 relative');
    assert.equal((await score(s, 1e6, '1000002')).pass, false);
    assert.equal((await score(s, 0, '0')).pass, true);
    assert.equal((await score(s, 2020, 'from 2019-2020')).pass, true, 'a hyphen between numbers is not a minus sign');
    const loose = await makeScorer({ type: 'numeric', tolerance: 0.01 }, tmp());
    assert.equal((await score(loose, 100, '100.9')).pass, true);
    assert.match((await score(s, 'many', '5')).feedback, /answer key for this task is not a number/);
  });

  test('exact: normalisation options, lists of accepted answers', async () => {
    const plain = await makeScorer({ type: 'exact' }, tmp());
    assert.equal((await score(plain, 'Paris', '  Paris \n')).pass, true, 'trimmed by default');
    assert.deepEqual(await score(plain, 'Paris', 'paris'), { score: 0, pass: false, feedback: 'expected "Paris", found "paris"' });
    const loose = await makeScorer({ type: 'exact', normalize: { case: 'insensitive', whitespace: 'collapse' } }, tmp());
    assert.equal((await score(loose, 'New  York', ' new york\n')).pass, true);
    const strict = await makeScorer({ type: 'exact', normalize: { whitespace: 'exact' } }, tmp());
    assert.equal((await score(strict, 'a', 'a\n')).pass, false);
    assert.equal((await score(plain, ['NYC', 'New York'], 'New York')).pass, true);
    assert.match((await score(plain, ['NYC', 'New York'], 'LA')).feedback, /expected one of "NYC", "New York", found "LA"/);
    assert.equal((await score(plain, 7, '7')).pass, true);
  });

  test('regex and custom scorers on a benchmark folder with tasks.jsonl', async () => {
    const tasks = jsonl([
      { id: 'a', input: { question: 'capital of France?' }, answer: 'Paris', split: 'val' },
      { id: 'b', input: { question: 'capital of Peru?' }, answer: 'Lima', tags: ['geo'] },
    ]);
    const rx = benchDir({
      'benchmark.yaml': 'name: capitals\ndescription: capitals\ntasks: tasks.jsonl\nscorer: { type: regex, pattern: "Answer: *(\\\\w+)", normalize: { case: insensitive } }\n',
      'tasks.jsonl': tasks,
    });
    const b = await loadBenchmark(rx);
    assert.equal(b.name, 'capitals');
    assert.equal(b.tasks.length, 2);
    assert.equal(b.tasks[0]!.split, 'val', 'an explicit split is kept');
    assert.deepEqual(b.tasks[1]!.tags, ['geo']);
    assert.ok(!JSON.stringify(b.tasks).includes('Paris') && !JSON.stringify(b.tasks).includes('Lima'), 'answers only in the key');
    assert.equal(b.answers.get('a'), 'Paris');
    const [a] = b.tasks;
    assert.equal((await b.scorer.score(a!, 'Paris', 'Thinking... Answer: PARIS', ctx)).pass, true);
    const wrong = await b.scorer.score(a!, 'Paris', 'Answer: Lyon. Answer: Paris', ctx);
    assert.equal(wrong.pass, false, 'the first match counts');
    assert.match(wrong.feedback, /expected "paris", found "lyon" \(group 1 of .* in "Answer: Lyon"\)/);
    assert.match((await b.scorer.score(a!, 'Paris', 'Paris', ctx)).feedback, /^no match of \/Answer: \*\(\\w\+\)\/ in the output "Paris"$/);

    const custom = benchDir({
      'benchmark.yaml': 'name: capitals-custom\ntasks: tasks.jsonl\nscorer: { type: custom, module: score.ts }\n',
      'tasks.jsonl': tasks,
      'score.ts': [
        'export function score(task: { id: string }, expected: unknown, output: string) {',
        "  if (output === 'boom') throw new Error('kaboom');",
        "  if (output === 'bad') return { score: 2, pass: true, feedback: 'x' };",
        '  const hit = output.includes(String(expected));',
        '  return { score: hit ? 1 : 0.25, pass: hit, feedback: `${task.id}: ${hit ? "mentions" : "misses"} ${String(expected)}` };',
        '}',
      ].join('\n'),
    });
    const c = await loadBenchmark(custom);
    assert.equal(c.scorer.type, 'custom');
    assert.deepEqual(await c.scorer.score(a!, 'Paris', 'It is Paris.', ctx), { score: 1, pass: true, feedback: 'a: mentions Paris' });
    assert.deepEqual(await c.scorer.score(a!, 'Paris', 'Rome', ctx), { score: 0.25, pass: false, feedback: 'a: misses Paris' });
    assert.deepEqual(await c.scorer.score(a!, 'Paris', 'boom', ctx), { score: 0, pass: false, feedback: 'custom scorer score.ts threw: kaboom' });
    assert.match((await c.scorer.score(a!, 'Paris', 'bad', ctx)).feedback, /^custom scorer score\.ts returned an invalid result \(score: /);

    const missing = benchDir({ 'benchmark.yaml': 'name: m\ntasks: tasks.jsonl\nscorer: { type: custom, module: nope.ts }\n', 'tasks.jsonl': tasks });
    assert.match(await userError(loadBenchmark(missing), UsageError), /benchmark\.yaml: field `scorer\.module`: custom scorer module not found: .*nope\.ts$/);
    const noExport = benchDir({ 'benchmark.yaml': 'name: m\ntasks: tasks.jsonl\nscorer: { type: custom, module: s.ts }\n', 'tasks.jsonl': tasks, 's.ts': 'export const x = 1;\n' });
    assert.match(await userError(loadBenchmark(noExport), UsageError), /s\.ts: a custom scorer must export a function score\(task, expected, output\)/);
  });

  describe('js-exec', { skip: noSandbox }, () => {
    const PROMPT = '/* add two numbers */\nconst add = (a, b) => {\n';
    const TEST = 'const testAdd = () => {\n  console.assert(add(1, 2) === 3)\n  console.assert(add(-1, 1) === 0)\n}\ntestAdd()\n';
    const task: Task = { id: 'js/add', split: 'train', input: { prompt: PROMPT } };
    let s: Scorer;
    test('passes when node exits 0 with no output; a surrounding fence is removed', async () => {
      s = await makeScorer({ type: 'js-exec' }, tmp());
      const r = await score(s, { test: TEST }, '  return a + b;\n}\n', task);
      assert.equal(r.pass, true, r.feedback);
      assert.match(r.feedback, /^passed: exit 0, nothing on stdout or stderr \(2 console\.assert calls, \d+ ms\)$/);
      assert.equal((await score(s, { test: TEST }, '```javascript\n  return a + b;\n}\n```\n', task)).pass, true);
      assert.equal(stripFence('```js\nx\n```'), 'x');
      assert.equal(stripFence('text\n```js\nx\n```'), 'text\n```js\nx\n```', 'only a fence around the whole output');
    });

    test('failing asserts (exit 0), exceptions, stdout and timeouts fail with a reason', async () => {
      const asserts = await score(s, { test: TEST }, '  return a - b;\n}\n', task);
      assert.equal(asserts.pass, false);
      assert.equal(asserts.feedback, "failed: exit 0: 2 × 'Assertion failed' on stderr; the test has 2 console.assert calls");
      const thrown = await score(s, { test: TEST }, '  return c;\n}\n', task);
      assert.match(thrown.feedback, /^failed: exit 1: ReferenceError: c is not defined \(test\.js:3, completion line 1\)$/);
      const syntax = await score(s, { test: TEST }, '  return a +;\n', task);
      assert.match(syntax.feedback, /^failed: exit 1: SyntaxError: /);
      const printed = await score(s, { test: TEST }, '  console.log("debug", a);\n  return a + b;\n}\n', task);
      assert.equal(printed.pass, false, 'any stdout fails');
      assert.match(printed.feedback, /wrote to stdout \(any output fails\): "debug 1"/);
      const slow = await s.score(task, { test: TEST }, '  while (true) {}\n}\n', { ...ctx, timeoutMs: 1500 });
      assert.equal(slow.pass, false);
      assert.match(slow.feedback, /^timed out after 1500 ms/);
    });

    test('the program runs in the sandbox: only its temp folder is writable, no network', async () => {
      // a folder of the host outside the sandbox's minimal view (/var is not there at all)
      const outside = fs.mkdtempSync(path.join('/var/tmp', 'autoagent-bench-test-'));
      tmpDirs.push(outside);
      const probe = path.join(outside, 'escaped.txt');
      const out = `  require('fs').writeFileSync(${JSON.stringify(probe)}, 'x');\n  return a + b;\n}\n`;
      const r = await score(s, { test: TEST }, out, task);
      assert.equal(r.pass, false);
      assert.match(r.feedback, /EROFS|read-only|EACCES|ENOENT/);
      assert.ok(!fs.existsSync(probe));
      const here = await score(s, { test: TEST }, "  require('fs').writeFileSync('scratch.txt', 'x');\n  return a + b;\n}\n", task);
      assert.equal(here.pass, true, here.feedback);
      const net = `  require('net').connect(80, '1.1.1.1').on('error', (e) => { console.error('neterr', e.code) });\n  return a + b;\n}\n`;
      const n = await score(s, { test: TEST }, net, task);
      assert.equal(n.pass, false);
      assert.match(n.feedback, /neterr (ENETUNREACH|EHOSTUNREACH|ECONNREFUSED)/);
    });
  });
});

// ---------------------------------------------------------------------------------------------

describe('benchmark.yaml errors', () => {
  const base = { name: 'x', tasks: 'tasks.jsonl', scorer: '{ type: exact }' };
  const yaml = (over: Record<string, string | undefined>) =>
    Object.entries({ ...base, ...over })
      .filter(([, v]) => v !== undefined)
      .map(([k, v]) => `${k}: ${v}`)
      .join('\n') + '\n';
  const cases: Array<[string, Record<string, string | undefined>, RegExp]> = [
    ['an unknown source', { source: 'gsm9k', tasks: undefined }, /field `source`: one of "gsm8k", "bbh", "humaneval-x-js", "tooluse" \(or give your own tasks with tasks: FILE\.jsonl instead\)$/],
    ['neither source nor tasks', { tasks: undefined }, /field `source`: missing: give source \(gsm8k \| bbh \| humaneval-x-js \| tooluse\) or tasks: FILE\.jsonl$/],
    ['both source and tasks', { source: 'gsm8k' }, /field `tasks`: give either source or tasks, not both/],
    ['a missing tasks file', { tasks: 'nope.jsonl' }, /field `tasks`: file not found: .*nope\.jsonl$/],
    ['an unknown scorer type', { scorer: '{ type: exactly }' }, /field `scorer\.type`: one of exact, numeric, gsm8k, choice, js-exec, regex, custom$/],
    ['a regex without a capturing group', { scorer: '{ type: regex, pattern: "Answer: .+" }' }, /field `scorer\.pattern`: needs exactly one capturing group \(the answer\), found 0$/],
    ['an invalid regex', { scorer: '{ type: regex, pattern: "(a" }' }, /field `scorer\.pattern`: not a valid JavaScript regular expression/],
    ['a field of another scorer type', { scorer: '{ type: exact, tolerance: 0.1 }' }, /field `scorer\.tolerance`: only used by scorer type numeric, not exact; remove it$/],
    ['a custom scorer without module', { scorer: '{ type: custom }' }, /field `scorer\.module`: the custom scorer needs module/],
    ['an unknown field', { scorers: '{ type: exact }' }, /unknown field `scorers`/],
    ['a missing scorer', { scorer: undefined }, /field `scorer`: expected object$/],
    ['a bad split value', { split: '{ val: 1.5 }' }, /field `split\.val`: 1\.5 is neither a fraction below 1 nor a whole count$/],
    ['fractions adding up to more than 1', { split: '{ val: 0.6, test: 0.6 }' }, /field `split`: val \+ test = 1\.2 is more than all the tasks/],
    ['a count larger than the tasks', { split: '{ val: 5 }' }, /field `split`: val \+ test = 5 tasks, but there are only 2$/],
    ['a count mixed with a fraction', { split: '{ val: 1, test: 0.5 }' }, /field `split\.test`: 0\.5 is a fraction but the other value is a count; use two counts or two fractions$/],
    ['a bad name', { name: '"my bench"' }, /field `name`: a name of letters, digits/],
  ];
  const tasks = jsonl([
    { id: '1', input: { q: 'a' }, answer: 'a' },
    { id: '2', input: { q: 'b' }, answer: 'b' },
  ]);
  for (const [what, over, re] of cases) {
    test(`${what}: one line naming the file and the field`, async () => {
      const dir = benchDir({ 'benchmark.yaml': yaml(over), 'tasks.jsonl': tasks });
      const msg = await userError(loadBenchmark(dir), UsageError);
      assert.ok(msg.startsWith(path.join(dir, 'benchmark.yaml') + ': '), msg);
      assert.match(msg, re);
    });
  }

  test('YAML syntax errors, bad task lines and unknown names are one line too', async () => {
    const dir = benchDir({ 'benchmark.yaml': 'name: x\nscorer: [a\n', 'tasks.jsonl': tasks });
    assert.match(await userError(loadBenchmark(dir), UsageError), /benchmark\.yaml(:\d+)?: not valid YAML/);
    const badLine = benchDir({ 'benchmark.yaml': yaml({}), 'tasks.jsonl': tasks + '{"id": "3", "input": "q", "answer": 1}\n' });
    assert.match(await userError(loadBenchmark(badLine), UsageError), /tasks\.jsonl:3: field `input`: expected record/);
    const dup = benchDir({ 'benchmark.yaml': yaml({}), 'tasks.jsonl': tasks + jsonl([{ id: '1', input: {}, answer: 1 }]) });
    assert.match(await userError(loadBenchmark(dup), UsageError), /tasks\.jsonl:3: field `id`: duplicate id "1" \(first on line 1\)/);
    const noAnswer = benchDir({ 'benchmark.yaml': yaml({}), 'tasks.jsonl': jsonl([{ id: '1', input: {} }]) });
    assert.match(await userError(loadBenchmark(noAnswer), UsageError), /tasks\.jsonl:1: field `answer`: missing/);
    const escape = benchDir({ 'benchmark.yaml': yaml({}), 'tasks.jsonl': jsonl([{ id: '1', input: {}, answer: 1, files: { '../x': 'y' } }]) });
    assert.match(await userError(loadBenchmark(escape), UsageError), /tasks\.jsonl:1: field `files`: "\.\.\/x" is not a relative path inside the scratch folder/);
    assert.match(await userError(loadBenchmark('gsm9k'), UsageError), /^benchmark "gsm9k": no built-in benchmark by that name \(built in: bbh, gsm8k, humaneval-x-js, tooluse\)/);
    assert.match(await userError(loadBenchmark(path.join(tmp(), 'nope')), UsageError), /nope: benchmark folder not found$/);
    assert.match(await userError(loadBenchmark(tmp()), UsageError), /: no benchmark\.yaml in this folder$/);
  });

  test('gsm8k refuses split.test (its test split is upstream test.jsonl)', { skip: noData }, async () => {
    const dir = benchDir({ 'benchmark.yaml': 'name: g\nsource: gsm8k\nscorer: { type: gsm8k }\nsplit: { val: 100, test: 100 }\n' });
    assert.match(await userError(loadBenchmark(dir, { dataRoot: DATA }), UsageError), /field `split\.test`: gsm8k's test split is upstream's test\.jsonl/);
    const pct = benchDir({ 'benchmark.yaml': 'name: g\nsource: gsm8k\nscorer: { type: gsm8k }\nsplit: { val: 0.1 }\n' });
    const b = await loadBenchmark(pct, { dataRoot: DATA });
    const val = splitSizes(b).val;
    assert.ok(val > 650 && val < 850, `about 10% of 7,473: ${val}`);
  });
});

describe('missing data', () => {
  const cases: Array<[string, RegExp]> = [
    ['gsm8k', /^gsm8k: data file not found: .*\/gsm8k\/train\.jsonl; download grade_school_math\/data\/train\.jsonl from the GitHub repository openai\/grade-school-math \(commit 3101c7d5\) and save it as .*\/gsm8k\/train\.jsonl$/],
    ['bbh', /^bbh: data file not found: .*\/bbh\/boolean_expressions\.json; download bbh\/boolean_expressions\.json from the GitHub repository suzgunmirac\/BIG-Bench-Hard/],
    ['humaneval-x-js', /^humaneval-x-js: data file not found: .*humaneval_js\.jsonl\.gz; download codegeex\/benchmark\/humaneval-x\/js\/data\/humaneval_js\.jsonl\.gz from the GitHub repository THUDM\/CodeGeeX/],
  ];
  for (const [name, re] of cases) {
    test(`${name}: an empty data root is one line naming the file and where to get it`, async () => {
      assert.match(await userError(loadBenchmark(name, { dataRoot: tmp() })), re);
    });
  }

  test('no data root at all names --data and AUTOAGENT_DATA; the env variable is used when set', async () => {
    const saved = process.env.AUTOAGENT_DATA;
    try {
      delete process.env.AUTOAGENT_DATA;
      assert.match(await userError(loadBenchmark('gsm8k')), /^gsm8k: no data root: pass --data DIR or set AUTOAGENT_DATA to the folder that holds gsm8k\/train\.jsonl \(get .* openai\/grade-school-math/);
      process.env.AUTOAGENT_DATA = path.join(tmp(), 'missing');
      assert.match(await userError(loadBenchmark('bbh')), /^bbh: data root .*missing is not a folder \(from AUTOAGENT_DATA\)/);
      if (haveData) {
        process.env.AUTOAGENT_DATA = DATA;
        assert.equal((await loadBenchmark('humaneval-x-js')).tasks.length, 164);
      }
    } finally {
      if (saved === undefined) delete process.env.AUTOAGENT_DATA;
      else process.env.AUTOAGENT_DATA = saved;
    }
  });
});

// ---------------------------------------------------------------------------------------------

describe('splits and aggregate', () => {
  test('the hash split: seeded, stable when tasks are added (fractions), exact sizes (counts)', async () => {
    const rows = (n: number) => Array.from({ length: n }, (_, i) => ({ id: `t${i}`, input: { i }, answer: i }));
    const mk = (n: number, split: string) => loadBenchmark(benchDir({ 'benchmark.yaml': `name: s\ntasks: tasks.jsonl\nscorer: { type: numeric }\nsplit: ${split}\n`, 'tasks.jsonl': jsonl(rows(n)) }));
    const small = await mk(400, '{ val: 0.25, test: 0.25 }');
    const big = await mk(500, '{ val: 0.25, test: 0.25 }');
    for (const t of small.tasks) assert.equal(big.tasks.find((x) => x.id === t.id)!.split, t.split, 'adding tasks moves none');
    const { train, val, test: tst } = splitSizes(big);
    assert.ok(val > 90 && val < 160 && tst > 90 && tst < 160 && train > 180, `${train}/${val}/${tst}`);
    const reseeded = await mk(400, '{ val: 0.25, test: 0.25, seed: other }');
    const moved = reseeded.tasks.filter((t, i) => t.split !== small.tasks[i]!.split).length;
    assert.ok(moved > 100, `another seed gives another split (${moved} moved)`);
    assert.deepEqual(splitSizes(await mk(400, '{ val: 37, test: 11 }')), { train: 352, val: 37, test: 11 });
    assert.deepEqual(splitSizes(await mk(400, '{ val: 37 }')), { train: 283, val: 37, test: 80 }, 'the default test 0.2 becomes 20% as a count');
  });

  test('Wilson interval for 0/1 scores, t-interval otherwise', () => {
    const a = aggregate([1, 1, 1, 1, 1, 1, 1, 1, 0, 0]);
    assert.equal(a.n, 10);
    assert.equal(a.mean, 0.8);
    assert.ok(Math.abs(a.ci95[0] - 0.4902) < 1e-4 && Math.abs(a.ci95[1] - 0.9433) < 1e-4, `${a.ci95}`);
    const all = aggregate([1, 1, 1]);
    assert.equal(all.ci95[1], 1);
    assert.ok(all.ci95[0] > 0.4 && all.ci95[0] < 0.5, 'Wilson is not degenerate at 100%');
    assert.deepEqual(wilson(0, 0), [0, 1]);
    const t = aggregate([0.5, 0.7, 0.9]);
    assert.ok(Math.abs(t.mean - 0.7) < 1e-12);
    assert.ok(Math.abs(t.ci95[0] - (0.7 - 4.302653 * 0.2 / Math.sqrt(3))) < 1e-5, `${t.ci95}`);
    assert.equal(t.ci95[1], 1, 'clipped to [0, 1]');
    const wide = aggregate([10, 20, 30, 40]);
    assert.ok(Math.abs(wide.ci95[1] - (25 + 3.182446 * Math.sqrt(166.6667 / 4))) < 1e-3, 'not clipped when scores are not in [0, 1]');
    assert.deepEqual(aggregate([0.5]).ci95, [0, 1]);
    const empty = aggregate([]);
    assert.equal(empty.n, 0);
    assert.ok(Number.isNaN(empty.mean));
    assert.throws(() => aggregate([NaN]), /not a finite number/);
  });
});
