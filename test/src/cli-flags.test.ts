/**
 * Issue 15, finding 3: `--version`; `--data` / `--prices` on `run` for harness studies; `traces --help`
 * names trace ids; `eval --limit` says "all", not 0; `traces eval-… --failed` prints the failed
 * tasks' transcripts (a real eval against a scripted OpenAI-compatible server on 127.0.0.1).
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { openDb, getRun, latestRun } from '../../traces/index.ts';
import { tracesOf } from '../../traces/traces.ts';
import { startMockOpenAI, openaiText, type MockServer } from '../helpers/mock-llm.ts';
import { makeRepo, cleanup, tinyHarnessRepo, PARAMS_PY, EVALUATE_PY, studyYaml } from '../helpers/repo.ts';
import { cli } from '../helpers/cli.ts';

const ROOT = resolve(import.meta.dirname, '../..');
const BIN = join(ROOT, 'bin/autoagent.js');

const servers: MockServer[] = [];
const savedEnv = { OPENAI_BASE_URL: process.env.OPENAI_BASE_URL, OPENAI_API_KEY: process.env.OPENAI_API_KEY };
after(async () => {
  for (const s of servers) await s.close();
  for (const [k, v] of Object.entries(savedEnv)) if (v === undefined) delete process.env[k]; else process.env[k] = v;
});

/** a "model" that always answers 4, 100 prompt and 10 completion tokens a call */
async function alwaysFour(): Promise<MockServer> {
  const s = await startMockOpenAI(() => openaiText('4', { prompt_tokens: 100, completion_tokens: 10 }));
  servers.push(s);
  process.env.OPENAI_BASE_URL = s.baseURL;
  process.env.OPENAI_API_KEY = 'test';
  return s;
}

const TASKS = [
  { id: 'v-right', split: 'val', input: { question: 'What is 2+2?' }, answer: '4' },
  { id: 'v-wrong-a', split: 'val', input: { question: 'What is 2+3?' }, answer: '5' },
  { id: 'v-wrong-b', split: 'val', input: { question: 'What is 3+3?' }, answer: '6' },
];

test('--version prints package.json\'s version, in-process and from the bin', async () => {
  const version = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).version as string;
  const r = await cli(['--version']);
  assert.equal(r.code, 0);
  assert.equal(r.stdout, `${version}\n`);
  const p = spawnSync(process.execPath, [BIN, '--version'], { encoding: 'utf8' });
  assert.equal(p.status, 0, p.stderr);
  assert.equal(p.stdout.trim(), version);
  assert.equal((await cli(['-V'])).stdout, `${version}\n`);
});

test('help: traces names trace ids; eval --limit defaults to all, not 0; run and resume take --data and --prices', async () => {
  const traces = await cli(['traces', '--help']);
  assert.match(traces.stdout.replace(/\s+/g, ' '), /one trace \(its id, or its first 6\+ characters/);
  const evalHelp = (await cli(['eval', '--help'])).stdout.replace(/\s+/g, ' ');
  assert.match(evalHelp, /--limit <n> only the first N tasks of the split \(default: all\)/);
  assert.doesNotMatch(evalHelp, /default: 0\)/);
  for (const cmd of ['run', 'resume']) {
    const h = (await cli([cmd, '--help'])).stdout;
    assert.match(h, /--data <dir>/, cmd);
    assert.match(h, /--prices <file>/, cmd);
  }
});

test('traces eval-… --failed prints the transcripts of the failed tasks, not a table', async () => {
  await alwaysFour();
  const repo = tinyHarnessRepo(TASKS, 1);
  try {
    const db = join(repo, '.autoagent', 'autoagent.db');
    const ev = await cli(['eval', '--harness', join(repo, 'h'), '--bench', join(repo, 'bench'), '--db', db, '--concurrency', '1'], repo);
    assert.equal(ev.code, 0, ev.stderr);
    const group = /eval (eval-\S+):/.exec(ev.stderr)![1]!;
    const failed = await cli(['traces', group, '--failed', '--db', db], repo);
    assert.equal(failed.code, 0, failed.stderr);
    for (const id of ['v-wrong-a', 'v-wrong-b']) assert.match(failed.stdout, new RegExp(`task ${id}`), `${id}'s transcript`);
    assert.doesNotMatch(failed.stdout, /v-right/, 'only the failed tasks');
    assert.match(failed.stdout, /assistant:\s+4/, 'the conversation itself');
    assert.doesNotMatch(failed.stdout, /one transcript: add --task ID/, 'not the list');
    // without --failed, several traces are still a list
    const list = await cli(['traces', group, '--db', db], repo);
    assert.match(list.stdout, /one transcript: add --task ID/);
    assert.match(list.stdout, /v-right/);
  } finally {
    cleanup(repo);
  }
});

test('run --data and --prices set harness.data and harness.prices (the run\'s costs follow the table); other kinds refuse them', async () => {
  await alwaysFour();
  const repo = tinyHarnessRepo(TASKS, 1);
  const data = join(repo, 'data-root');
  mkdirSync(data);
  // gpt-4.1-mini at $1000 / $2000 per million tokens: one call of 100 + 10 tokens costs $0.12
  writeFileSync(join(repo, 'prices.yaml'), 'gpt-4.1-mini: { input: 1000, output: 2000 }\n');
  try {
    const r = await cli(['run', join(repo, 'study.yaml'), '--experiments', '0', '--data', 'data-root', '--prices', 'prices.yaml'], repo);
    assert.equal(r.code, 0, r.stderr);
    const db = openDb(join(repo, '.autoagent', 'autoagent.db'));
    const run = getRun(db, latestRun(db)!.id)!;
    const study = JSON.parse(run.study_json);
    assert.equal(study.harness.data, data);
    assert.equal(study.harness.prices, join(repo, 'prices.yaml'));
    const traces = tracesOf(db, { runId: run.id });
    assert.ok(traces.length >= 3);
    for (const t of traces) assert.ok(Math.abs(t.cost_usd - 0.12) < 1e-9, `priced from --prices: ${t.cost_usd}`);
    db.close();
  } finally {
    cleanup(repo);
  }
  const cmd = makeRepo({ 'params.py': PARAMS_PY, 'evaluate.py': EVALUATE_PY, 'study.yaml': studyYaml() });
  try {
    for (const flag of ['--data', '--prices']) {
      const r = await cli(['run', join(cmd, 'study.yaml'), flag, 'x', '--experiments', '0'], cmd);
      assert.equal(r.code, 2, r.stderr);
      assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
      assert.match(r.stderr, new RegExp(`${flag} applies to harness studies only \\(this study is kind: command\\)`));
    }
  } finally {
    cleanup(cmd);
  }
});
