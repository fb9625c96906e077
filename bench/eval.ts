/**
 * What the tool adds to a harness evaluation, side by side in one run:
 *  1. tasks/s and per-step orchestration cost of `eval` against a zero-latency scripted server
 *     (N tasks × 5 model calls each: 4 tool calls and an answer), concurrency 1 and 8;
 *  2. the same harness with a 200 ms model: measured wall time against the model's own time;
 *  3. the start cost of a task-agent worker, sandboxed and not;
 *  4. trace-store writes per second, one insert at a time and batched.
 *
 *   node --import tsx bench/eval.ts [--tasks 1000] [--slow-tasks 32]
 */
import { mkdtempSync, mkdirSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { randomUUID } from 'node:crypto';
import { openDb } from '../traces/index.ts';
import { insertTrace, insertSpan, TraceWriter } from '../traces/traces.ts';
import type { SpanRecord } from '../traces/types.ts';
import { loadHarness } from '../task-agent/harness.ts';
import { evaluateHarness, SpendGuard } from '../task-agent/evaluate.ts';
import { createProvider } from '../task-agent/providers/index.ts';
import { loadBenchmark } from '../benchmarks/index.ts';
import { spawn } from 'node:child_process';
import { writeSection, machine } from './markdown.ts';

const { values } = parseArgs({ options: { tasks: { type: 'string', default: '1000' }, 'slow-tasks': { type: 'string', default: '64' } } });
const N = Number(values.tasks);
const SLOW_N = Number(values['slow-tasks']);
const ROOT = resolve(import.meta.dirname, '..');
const STEPS = 5;
const dir = mkdtempSync(join(tmpdir(), 'aa-bench-eval-'));

function setup(n: number) {
  const bench = join(dir, `bench-${n}`);
  mkdirSync(bench, { recursive: true });
  writeFileSync(join(bench, 'benchmark.yaml'), 'name: synthetic\ntasks: tasks.jsonl\nscorer: { type: exact }\n');
  writeFileSync(join(bench, 'tasks.jsonl'), Array.from({ length: n }, (_, i) => JSON.stringify({ id: `t${i}`, split: 'val', input: { question: `q${i}` }, answer: 'done' })).join('\n') + '\n');
  return bench;
}
const harnessDir = join(dir, 'harness');
mkdirSync(join(harnessDir, 'prompts'), { recursive: true });
mkdirSync(join(harnessDir, 'tools'), { recursive: true });
writeFileSync(join(harnessDir, 'harness.yaml'), `provider: openai\nmodel: local-model\nsystem: prompts/system.md\nmax_steps: ${STEPS}\ntools: [noop]\n`);
writeFileSync(join(harnessDir, 'prompts/system.md'), 'Call noop four times, then answer "done".');
writeFileSync(join(harnessDir, 'tools/noop.ts'), "export default { name: 'noop', description: 'does nothing', parameters: { type: 'object', properties: {} }, run: () => 'ok' };\n");

/** the scripted model server, in its own process */
async function startServer(latencyMs: number): Promise<{ baseURL: string; close: () => void }> {
  const child = spawn(process.execPath, ['--import', 'tsx', join(import.meta.dirname, 'mock-server.ts'), String(STEPS), String(latencyMs)], { stdio: ['pipe', 'pipe', 'inherit'] });
  const baseURL = await new Promise<string>((res) => child.stdout!.once('data', (b: Buffer) => res(b.toString().trim().split('\n')[0]!)));
  return { baseURL, close: () => child.stdin!.end() };
}

async function evalRun(n: number, concurrency: number, latencyMs: number, unsafe = false) {
  const server = await startServer(latencyMs);
  const db = openDb(join(dir, `store-${randomUUID()}.db`));
  const bench = await loadBenchmark(setup(n), {});
  const harness = loadHarness(harnessDir);
  const provider = createProvider('openai', { env: { OPENAI_BASE_URL: server.baseURL, OPENAI_API_KEY: 'k' }, prices: {} });
  const t0 = performance.now();
  const r = await evaluateHarness({
    db, harness, harnessName: 'bench', benchmark: bench, tasks: bench.tasks, provider, groupId: 'g', concurrency,
    hide: [], readable: [ROOT, harnessDir], unsafeNoSandbox: unsafe, guard: new SpendGuard(0, 0, 0, 0),
  });
  const wall = performance.now() - t0;
  server.close();
  db.close();
  const ok = r.results.filter((x) => x.score === 1).length;
  if (ok !== n) throw new Error(`only ${ok}/${n} tasks completed: ${r.results.find((x) => x.score !== 1)?.error}`);
  return { wall, tasksPerS: n / (wall / 1000), msPerStep: wall / (n * STEPS) * Math.min(concurrency, n) };
}

const fast1 = await evalRun(N, 1, 0);
const fast8 = await evalRun(N, 8, 0);
// worker start: one task per evaluation, so every evaluation starts a fresh worker
const starts = async (unsafe: boolean) => {
  const xs: number[] = [];
  for (let i = 0; i < 8; i++) xs.push((await evalRun(1, 1, 0, unsafe)).wall);
  xs.sort((a, b) => a - b);
  return xs[Math.floor(xs.length / 2)]!;
};
const startSandboxed = await starts(false);
const startPlain = await starts(true);
const slow = await evalRun(SLOW_N, 8, 200);
const ideal = Math.ceil(SLOW_N / 8) * STEPS * 200;

// trace store throughput
const span = (traceId: string): SpanRecord => ({
  id: randomUUID(), trace_id: traceId, parent_id: null, kind: 'tool', name: 'noop', status: 'ok', started_at: 0, ended_at: 1,
  input: { a: 1 }, output: 'ok result text', error: null, input_tokens: 0, output_tokens: 0, cache_read_tokens: 0, cache_write_tokens: 0, cost_usd: 0, attributes: {},
});
const store = openDb(join(dir, 'writes.db'));
insertTrace(store, {
  id: 'tr', run_id: null, experiment_seq: null, group_id: 'w', task_id: 't', repeat: 0, benchmark: 'b', split: 'val', harness: 'h', status: 'ok',
  score: null, pass: null, output: null, error: null, started_at: 0, ended_at: 0, input_tokens: 0, output_tokens: 0, cache_read_tokens: 0, cache_write_tokens: 0, cost_usd: 0,
});
const W = 20_000;
let t = performance.now();
for (let i = 0; i < W; i++) insertSpan(store, span('tr'));
const singlePerS = W / ((performance.now() - t) / 1000);
const writer = new TraceWriter(store, { batchSpans: 256 });
t = performance.now();
for (let i = 0; i < W; i++) writer.span(span('tr'));
writer.close();
const batchPerS = W / ((performance.now() - t) / 1000);
store.close();
rmSync(dir, { recursive: true, force: true });

const perStep = fast1.msPerStep;
// steady state: the one-task run is a worker start plus one task; the rest is per-step cost
const steadyStep = (fast1.wall - startSandboxed) / ((N - 1) * STEPS);
const body = `## Harness evaluation overhead (\`node --import tsx bench/eval.ts\`)

A synthetic harness whose tasks each take ${STEPS} model calls (4 tool calls to a no-op tool, then the answer),
a scripted OpenAI-compatible server in its own process on 127.0.0.1, bubblewrap workers, traces written to SQLite;
measured ${new Date().toISOString().slice(0, 10)} on ${machine()}.

| measure | value |
| --- | --- |
| ${N} tasks × ${STEPS} steps, zero-latency model, concurrency 1 | ${(fast1.wall / 1000).toFixed(1)} s · ${fast1.tasksPerS.toFixed(1)} tasks/s · ${perStep.toFixed(2)} ms per step, worker start included |
| ${N} tasks × ${STEPS} steps, zero-latency model, concurrency 8 | ${(fast8.wall / 1000).toFixed(1)} s · ${fast8.tasksPerS.toFixed(1)} tasks/s (${(fast8.tasksPerS / fast1.tasksPerS).toFixed(2)}× concurrency 1 on 2 cores) |
| ${SLOW_N} tasks × ${STEPS} steps, 200 ms model, concurrency 8 | ${(slow.wall / 1000).toFixed(2)} s against ${(ideal / 1000).toFixed(2)} s of model time: **+${(((slow.wall - ideal) / ideal) * 100).toFixed(1)}%** (worker starts included) |
| steady-state cost per step (concurrency 1, the worker start taken out) | **${steadyStep.toFixed(2)} ms** |
| projected share at 200 ms per call (steady per-step cost ÷ (200 ms + it)) | **${((steadyStep / (200 + steadyStep)) * 100).toFixed(2)}%** (goal: under 1%) |
| worker start + 1 task (median of 8), bubblewrap | ${startSandboxed.toFixed(0)} ms |
| worker start + 1 task (median of 8), --unsafe-no-sandbox | ${startPlain.toFixed(0)} ms (sandbox cost ${(startSandboxed - startPlain).toFixed(0)} ms per worker) |
| trace store: single inserts | ${Math.round(singlePerS).toLocaleString('en')} spans/s |
| trace store: TraceWriter batches of 256 | ${Math.round(batchPerS).toLocaleString('en')} spans/s (${(batchPerS / singlePerS).toFixed(1)}×) |

The per-step cost covers the worker ↔ parent pipe, the provider SDK's request and response handling, the
loopback HTTP round trip, span writes, and scoring (the scripted server runs in its own process; on 2 cores it
still competes for the CPU). A worker is started once per concurrency slot and reused for
every task (and replaced after a task that timed out or crashed), so its start cost is paid per slot, not per
task; the 200 ms row includes those starts.
`;
writeSection('eval', body);
process.stdout.write(body);
