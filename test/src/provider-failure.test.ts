/**
 * A model provider that is down, refuses the key or fails on too many tasks makes an evaluation an
 * error, not a score (issue 11, item 7): a harness run stops resumable with one line and exit 1,
 * storing no metric; `autoagent eval` exits 1. A few failed tasks stay ordinary data.
 * Real CLI processes, real sandboxed workers, scripted servers (or a refused port) on 127.0.0.1.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { startRun } from '../../src/loop.ts';
import { auditRun } from '../../src/audit.ts';
import { MemoryReporter } from '../../src/report.ts';
import { openDb, listExperiments, evaluationsOf, getRun, latestRun } from '../../traces/index.ts';
import { tracesOf, getTrace } from '../../traces/traces.ts';
import { startMockOpenAI, openaiText, openaiError, type MockServer } from '../helpers/mock-llm.ts';
import { tinyHarnessRepo, cleanup, sh } from '../helpers/repo.ts';
import type { Proposer } from '../../meta-agent/index.ts';

const BIN = resolve(import.meta.dirname, '../../bin/autoagent.js');

/** 20 val tasks "What is i+i?" */
const TASKS = Array.from({ length: 20 }, (_, k) => ({ id: `t${k + 1}`, split: 'val', input: { question: `What is ${k + 1}+${k + 1}?` }, answer: String(2 * (k + 1)) }));

/** the tiny harness repo with 20 tasks, short retries, the given concurrency; baseline only */
function repoWith(concurrency: number): string {
  const repo = tinyHarnessRepo(TASKS, 0);
  const h = join(repo, 'h/harness.yaml');
  writeFileSync(h, readFileSync(h, 'utf8') + 'retry: { max_retries: 1, base_delay_ms: 10, max_delay_ms: 20, timeout_ms: 5000 }\n');
  const s = join(repo, 'study.yaml');
  writeFileSync(s, readFileSync(s, 'utf8').replace('concurrency: 1', `concurrency: ${concurrency}`).replace('experiments: 1', 'experiments: 0'));
  sh(repo, 'git', ['-c', 'user.name=t', '-c', 'user.email=t@t', 'commit', '-qam', 'short retries']);
  return repo;
}

/** a model that answers every question right; `fail(question)` returns a step to send instead */
function model(fail: (q: string) => unknown = () => null): Promise<MockServer> {
  return startMockOpenAI((body: { messages: Array<{ content: unknown }> }) => {
    const q = JSON.stringify(body.messages);
    const m = /What is (\d+)\+(\d+)\?/.exec(q)!;
    return (fail(m[0]) as never) ?? openaiText(String(Number(m[1]) + Number(m[2])), { prompt_tokens: 10, completion_tokens: 1 });
  });
}

/** a port on 127.0.0.1 that refuses connections: bound, then closed */
async function deadBaseURL(): Promise<string> {
  const s = await startMockOpenAI([]);
  await s.close();
  return s.baseURL;
}

function cliProcess(args: string[], cwd: string, env: Record<string, string>): Promise<{ code: number | null; stdout: string; stderr: string; ms: number }> {
  const started = Date.now();
  return new Promise((ok) => {
    const child = spawn(process.execPath, [BIN, ...args], { cwd, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (b: Buffer) => (stdout += b));
    child.stderr.on('data', (b: Buffer) => (stderr += b));
    const kill = setTimeout(() => child.kill('SIGKILL'), 120_000);
    child.on('close', (code) => {
      clearTimeout(kill);
      ok({ code, stdout, stderr, ms: Date.now() - started });
    });
  });
}

async function withEnv<T>(env: Record<string, string>, fn: () => Promise<T>): Promise<T> {
  const prev = Object.fromEntries(Object.keys(env).map((k) => [k, process.env[k]]));
  Object.assign(process.env, env);
  try {
    return await fn();
  } finally {
    for (const [k, v] of Object.entries(prev)) if (v === undefined) delete process.env[k]; else process.env[k] = v;
  }
}

const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');

test('a dead model server: the run stops after 3 of 20 tasks (resumable, exit 1, one line, no metric stored); resumed against a working server it completes', async () => {
  const dead = await deadBaseURL();
  const repo = repoWith(4);
  const server = await model();
  try {
    const r = await cliProcess(['run', 'study.yaml'], repo, { OPENAI_BASE_URL: dead, OPENAI_API_KEY: 'k' });
    assert.equal(r.code, 1, `exit 1 for a provider stop\n${r.stdout}\n${r.stderr}`);
    const db = openDb(join(repo, '.autoagent', 'autoagent.db'));
    try {
      const run = latestRun(db)!;
      assert.equal(run.status, 'stopped');
      const line = `the model provider failed on 3 of the \\d+ tasks run \\(of 20; at most 10% may fail\\): connection refused to ${escape(dead)}; fix the provider and resume with \`autoagent resume ${escape(run.id)}\``;
      assert.match(run.stop_reason!, new RegExp(`^${line}$`));
      assert.match(r.stdout, new RegExp(`^run ${escape(run.id)} stopped: ${line}$`, 'm'), 'the summary line says what failed');
      assert.doesNotMatch(r.stdout + r.stderr, /baseline score =|finished|\bat .*\.ts:\d+/);
      const base = listExperiments(db, run.id)[0]!;
      assert.equal(base.decision, null, 'the baseline is not decided');
      assert.deepEqual(evaluationsOf(db, base.id), [], 'the partial evaluation is not stored as a result');
      const traces = tracesOf(db, { runId: run.id, experimentSeq: 0 });
      assert.ok(traces.length >= 3 && traces.length <= 6, `stopped once 3 failed, in-flight tasks cut (ran ${traces.length} of 20)`);
      assert.ok(traces.every((t) => t.status === 'error'), 'every task it ran failed');
      const failedByProvider = traces.filter((t) => getTrace(db, t.id)!.spans.find((s) => s.parent_id === null)!.attributes.provider_failure === 'connection');
      assert.ok(failedByProvider.length >= 3, 'the class is recorded on the task');
    } finally {
      db.close();
    }

    const resumed = await cliProcess(['resume', getRunId(repo)], repo, { OPENAI_BASE_URL: server.baseURL, OPENAI_API_KEY: 'k' });
    assert.equal(resumed.code, 0, `${resumed.stdout}\n${resumed.stderr}`);
    const db2 = openDb(join(repo, '.autoagent', 'autoagent.db'));
    try {
      const run = latestRun(db2)!;
      assert.equal(run.status, 'finished', run.stop_reason ?? '');
      const base = listExperiments(db2, run.id)[0]!;
      assert.equal(base.decision, 'baseline');
      assert.deepEqual(evaluationsOf(db2, base.id).map((v) => [v.status, v.metric]), [['ok', 1], ['ok', 1]]);
      const audit = await auditRun(db2, run.id);
      assert.ok(audit.ok, `the stopped attempt's traces do not break the audit:\n${audit.problems.join('\n')}`);
    } finally {
      db2.close();
    }
  } finally {
    await server.close();
    cleanup(repo);
  }
});

function getRunId(repo: string): string {
  const db = openDb(join(repo, '.autoagent', 'autoagent.db'));
  try {
    return latestRun(db)!.id;
  } finally {
    db.close();
  }
}

test('a server that refuses the key (401): the run stops at the first task, one request sent', async () => {
  const server = await model(() => openaiError(401, 'Incorrect API key provided: sk-wrong', 'invalid_request_error', 'invalid_api_key'));
  const repo = repoWith(1);
  try {
    const res = await withEnv({ OPENAI_BASE_URL: server.baseURL, OPENAI_API_KEY: 'sk-wrong' }, () =>
      startRun(join(repo, 'study.yaml'), { overrides: {}, unsafeNoSandbox: false, reporter: new MemoryReporter() }));
    assert.equal(res.status, 'stopped');
    assert.equal(res.stopCause, 'provider');
    assert.equal(res.stopReason, `the model provider refused the credentials on task t1: ${server.baseURL} answered HTTP 401 invalid_request_error: Incorrect API key provided: sk-wrong; fix the provider and resume with \`autoagent resume ${res.runId}\``);
    assert.equal(server.requests.length, 1, 'not retried, no other task dispatched');
    const db = openDb(res.dbPath);
    try {
      assert.equal(getRun(db, res.runId)!.status, 'stopped');
      assert.equal(tracesOf(db, { runId: res.runId }).length, 1);
      assert.deepEqual(evaluationsOf(db, listExperiments(db, res.runId)[0]!.id), []);
    } finally {
      db.close();
    }
  } finally {
    await server.close();
    cleanup(repo);
  }
});

test('HTTP 500 on 2 of 20 tasks (10%, not more): the run completes and those tasks are ordinary failed tasks', async () => {
  const failing = new Set(['What is 5+5?', 'What is 13+13?']);
  const server = await model((q) => (failing.has(q) ? openaiError(500, 'The server had an error while processing your request', 'server_error') : null));
  const repo = repoWith(2);
  try {
    const res = await withEnv({ OPENAI_BASE_URL: server.baseURL, OPENAI_API_KEY: 'k' }, () =>
      startRun(join(repo, 'study.yaml'), { overrides: {}, unsafeNoSandbox: false, reporter: new MemoryReporter() }));
    assert.equal(res.status, 'finished', res.stopReason ?? '');
    assert.equal(res.stopCause, undefined);
    const db = openDb(res.dbPath);
    try {
      const base = listExperiments(db, res.runId)[0]!;
      assert.equal(base.decision, 'baseline');
      assert.deepEqual(evaluationsOf(db, base.id).map((v) => [v.status, v.metric]), [['ok', 0.9], ['ok', 0.9]]);
      const traces = tracesOf(db, { runId: res.runId, experimentSeq: 0 });
      assert.equal(traces.length, 40, 'every task of both repeats ran');
      const bad = traces.filter((t) => t.status !== 'ok');
      assert.deepEqual(bad.map((t) => t.task_id).sort(), ['t13', 't13', 't5', 't5']);
      for (const t of bad) {
        assert.match(t.error ?? '', /HTTP 500 server_error: The server had an error.*gave up after 2 attempts/);
        assert.equal(getTrace(db, t.id)!.spans.find((s) => s.parent_id === null)!.attributes.provider_failure, 'server');
      }
    } finally {
      db.close();
    }
  } finally {
    await server.close();
    cleanup(repo);
  }
});

test('autoagent eval against a dead port: prints what it did, then one line, exit 1, no score', async () => {
  const dead = await deadBaseURL();
  const repo = repoWith(1);
  try {
    const r = await cliProcess(['eval', '--harness', 'h', '--bench', 'bench', '--concurrency', '1', '--db', 'store.db'], repo, { OPENAI_BASE_URL: dead, OPENAI_API_KEY: 'k' });
    assert.equal(r.code, 1, `${r.stdout}\n${r.stderr}`);
    const last = r.stderr.trim().split('\n').pop()!;
    assert.equal(last, `autoagent: the model provider failed on 3 of the 3 tasks run (of 20; at most 10% may fail): connection refused to ${dead}; fix the provider and run again`);
    assert.match(r.stdout, /^t1\s+error\s/m, 'the table of what was done');
    assert.match(r.stdout, /no score: the evaluation stopped after 3 of 20 tasks/);
    assert.doesNotMatch(r.stdout, /^score /m);
    assert.doesNotMatch(r.stderr, /\bat .*\.ts:\d+/);
    // --json: the results, no aggregate, the reason
    const j = await cliProcess(['eval', '--harness', 'h', '--bench', 'bench', '--db', 'store.db', '--json', '--max-provider-error-rate', '0'], repo, { OPENAI_BASE_URL: dead, OPENAI_API_KEY: 'k' });
    assert.equal(j.code, 1, j.stderr);
    const out = JSON.parse(j.stdout);
    assert.equal(out.aggregate, null);
    assert.match(out.provider_failed, /^the model provider failed on 1 of the \d tasks run \(of 20; at most 0% may fail\): connection refused/);
    assert.ok(out.results.length >= 1 && out.results.length <= 4, String(out.results.length));
    assert.ok(out.results.some((t: { provider_failure: string | null }) => t.provider_failure === 'connection'));
  } finally {
    cleanup(repo);
  }
});

test('a provider that goes down during a candidate\'s minibatch screen: the candidate is not screened out on it, the run stops', async () => {
  let down = false;
  const server = await model(() => (down ? { hangup: true } : null));
  const repo = repoWith(1);
  const s = join(repo, 'study.yaml');
  writeFileSync(s, readFileSync(s, 'utf8').replace('concurrency: 1', 'concurrency: 1, screen_tasks: 2'));
  sh(repo, 'git', ['-c', 'user.name=t', '-c', 'user.email=t@t', 'commit', '-qam', 'screen']);
  const proposer: Proposer = {
    name: 'scripted',
    propose: async (ctx) => {
      if (ctx.seq !== 1) return null;
      down = true; // the baseline is measured; the provider goes away now
      return { hypothesis: 'temperature → 0.1', edits: [{ path: 'h/harness.yaml', content: ctx.files['h/harness.yaml']!.replace(/^temperature: \S+/m, 'temperature: 0.1') }] };
    },
  };
  try {
    const res = await withEnv({ OPENAI_BASE_URL: server.baseURL, OPENAI_API_KEY: 'k' }, () =>
      startRun(s, { overrides: { experiments: 1 }, unsafeNoSandbox: false, reporter: new MemoryReporter(), proposer }));
    assert.equal(res.status, 'stopped', res.stopReason ?? '');
    assert.equal(res.stopCause, 'provider');
    assert.match(res.stopReason!, /^the model provider failed on 3 of the 3 tasks run \(of 20; at most 10% may fail\): connection reset by /);
    const db = openDb(res.dbPath);
    try {
      const exps = listExperiments(db, res.runId);
      assert.deepEqual(exps.map((e) => e.decision), ['baseline', null], 'the candidate is neither discarded nor kept');
      assert.deepEqual(evaluationsOf(db, exps[1]!.id), []);
      assert.equal(tracesOf(db, { runId: res.runId, experimentSeq: 1 }).length, 3, 'the 2-task screen, then one more task');
    } finally {
      db.close();
    }
  } finally {
    await server.close();
    cleanup(repo);
  }
});
