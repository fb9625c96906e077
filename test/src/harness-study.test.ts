/**
 * Harness studies end to end against a scripted OpenAI-compatible server: `autoagent eval` on
 * GSM8K's val split with readable transcripts, and a `kind: harness` run with the search proposer.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { createHash } from 'node:crypto';
import { startRun } from '../../src/loop.ts';
import { MemoryReporter } from '../../src/report.ts';
import { openDb, listExperiments, getRun } from '../../traces/index.ts';
import { tracesOf } from '../../traces/traces.ts';
import { startMockOpenAI, openaiText, type MockServer } from '../helpers/mock-llm.ts';
import { makeRepo, cleanup } from '../helpers/repo.ts';
import { cli } from '../helpers/cli.ts';

const ROOT = resolve(import.meta.dirname, '../..');
const DATA = resolve(ROOT, '../shared/data');
const hasData = existsSync(join(DATA, 'gsm8k', 'train.jsonl'));

/** question -> gold number, from the public data */
function goldAnswers(): Map<string, string> {
  const m = new Map<string, string>();
  for (const file of ['train.jsonl', 'test.jsonl']) {
    for (const line of readFileSync(join(DATA, 'gsm8k', file), 'utf8').split('\n')) {
      if (!line.trim()) continue;
      const r = JSON.parse(line) as { question: string; answer: string };
      m.set(r.question, /#### (\-?[0-9.,]+)/.exec(r.answer)![1]!.replace(/,/g, '').trim());
    }
  }
  return m;
}

/** a scripted "model" that gets a question right when the question's fixed hash fraction is at
 *  least 2 × its temperature: lowering the temperature helps, monotonically and deterministically */
async function oracle(): Promise<MockServer> {
  const gold = goldAnswers();
  return startMockOpenAI((body: { temperature?: number; messages: Array<{ role: string; content: unknown }> }) => {
    const user = body.messages.find((m) => m.role === 'user');
    const text = typeof user?.content === 'string' ? user.content : JSON.stringify(user?.content);
    const q = [...gold.keys()].find((k) => text.includes(k.slice(0, 60)));
    const right = q ? gold.get(q)! : '0';
    const frac = q ? (parseInt(createHash('sha256').update(q).digest('hex').slice(0, 8), 16) % 1000) / 1000 : 0;
    const answer = frac >= 2 * (body.temperature ?? 1) ? right : String(Number(right) + 1);
    return openaiText(`Let me think. The result is ${answer}.\n#### ${answer}`, { prompt_tokens: 120, completion_tokens: 20 });
  });
}

const servers: MockServer[] = [];
after(async () => {
  for (const s of servers) await s.close();
});

test('autoagent eval runs GSM8K val end to end against a scripted server; traces shows a full transcript', { skip: !hasData && 'no ../shared/data' }, async () => {
  const server = await oracle();
  servers.push(server);
  const repo = makeRepo({ 'README': 'x\n' });
  const env = { OPENAI_BASE_URL: process.env.OPENAI_BASE_URL, OPENAI_API_KEY: process.env.OPENAI_API_KEY, AUTOAGENT_DATA: process.env.AUTOAGENT_DATA };
  process.env.OPENAI_BASE_URL = server.baseURL;
  process.env.OPENAI_API_KEY = 'test';
  process.env.AUTOAGENT_DATA = DATA;
  try {
    const r = await cli(['eval', '--harness', join(ROOT, 'harnesses/gsm8k'), '--bench', 'gsm8k', '--split', 'val', '--concurrency', '4', '--json'], repo);
    assert.equal(r.code, 0, r.stderr);
    const res = JSON.parse(r.stdout);
    assert.ok(res.results.length >= 100, `the whole val split (${res.results.length} tasks)`);
    // harnesses/gsm8k runs at temperature 0.2: the oracle is right on about 60% of the questions
    assert.ok(res.aggregate.mean > 0.4 && res.aggregate.mean < 0.8, String(res.aggregate.mean));
    const passed = res.results.filter((t: { pass: boolean }) => t.pass).length;
    assert.equal(res.aggregate.mean, passed / res.results.length);
    assert.ok(res.results.every((t: { status: string; feedback: string }) => t.status === 'ok' && t.feedback.length > 0));
    assert.equal(res.tokens, res.results.length * 140);
    const first = res.results.find((t: { pass: boolean }) => !t.pass);
    const tr = await cli(['traces', res.group, '--task', first.task_id], repo);
    assert.equal(tr.code, 0, tr.stderr);
    assert.match(tr.stdout, new RegExp(`task ${first.task_id.replace(/[/.]/g, '\\$&')}`));
    assert.match(tr.stdout, /system:\s+You solve grade-school maths word problems/);
    assert.match(tr.stdout, /assistant:[\s\S]*#### /);
    assert.match(tr.stdout, /scoring gsm8k/);
    const list = await cli(['traces', res.group, '--failed'], repo);
    assert.match(list.stdout, new RegExp(first.task_id.replace(/[/.]/g, '\\$&')));
    const search = await cli(['traces', 'search', 'grade-school maths', '--json'], repo);
    assert.ok(JSON.parse(search.stdout).length > 0);
  } finally {
    for (const [k, v] of Object.entries(env)) if (v === undefined) delete process.env[k]; else process.env[k] = v;
    cleanup(repo);
  }
});

test('a harness study with the search proposer ratchets harness.yaml against the scripted server', { skip: !hasData && 'no ../shared/data' }, async () => {
  const server = await oracle();
  servers.push(server);
  const harnessYaml = readFileSync(join(ROOT, 'harnesses/gsm8k/harness.yaml'), 'utf8').replace('temperature: 0.2', 'temperature: 0.3');
  const repo = makeRepo({
    'h/harness.yaml': harnessYaml,
    'h/prompts/system.md': readFileSync(join(ROOT, 'harnesses/gsm8k/prompts/system.md'), 'utf8'),
    'study.yaml': `name: gsm8k-h
kind: harness
editable: [h/harness.yaml]
metric: { name: score, direction: maximize }
harness: { dir: h, benchmark: gsm8k, split: val, limit: 12, concurrency: 2, data: ${JSON.stringify(DATA)}, screen_tasks: 3 }
budget: { experiments: 8 }
acceptance: { baseline_repeats: 2, confirm_repeats: 1 }
knobs:
  - { file: h/harness.yaml, name: temperature, min: 0, max: 1 }
  - { file: h/harness.yaml, name: max_steps, search: false }
  - { file: h/harness.yaml, name: max_tokens, search: false }
`,
  });
  const env = { OPENAI_BASE_URL: process.env.OPENAI_BASE_URL, OPENAI_API_KEY: process.env.OPENAI_API_KEY };
  process.env.OPENAI_BASE_URL = server.baseURL;
  process.env.OPENAI_API_KEY = 'test';
  try {
    const res = await startRun(join(repo, 'study.yaml'), { overrides: {}, unsafeNoSandbox: false, reporter: new MemoryReporter() });
    assert.equal(res.status, 'finished', res.stopReason ?? '');
    const db = openDb(res.dbPath);
    const run = getRun(db, res.runId)!;
    const exps = listExperiments(db, run.id);
    const base = exps[0]!.metric!;
    assert.ok(base < 1);
    const kept = exps.filter((e) => e.decision === 'kept');
    assert.ok(kept.length >= 1, `the proposer lowered the temperature: ${exps.map((e) => `${e.hypothesis}=${e.decision}`).join('; ')}`);
    assert.ok(kept[kept.length - 1]!.metric! > base);
    for (const e of kept) assert.match(e.hypothesis, /^temperature \S+ → \S+$/);
    // every evaluated experiment has one trace per task and repeat, linked to the run
    const baseTraces = tracesOf(db, { runId: run.id, experimentSeq: 0 });
    assert.equal(baseTraces.length, 12 * 2);
    // a screened-out candidate stopped after the minibatch
    const screened = exps.filter((e) => /^minibatch screen:/.test(e.reason ?? ''));
    assert.ok(screened.length >= 1, 'a worse temperature lost on the minibatch');
    for (const e of screened) assert.equal(tracesOf(db, { runId: run.id, experimentSeq: e.seq }).length, 3);
    db.close();
  } finally {
    for (const [k, v] of Object.entries(env)) if (v === undefined) delete process.env[k]; else process.env[k] = v;
    cleanup(repo);
  }
});
