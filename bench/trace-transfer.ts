/**
 * What sending a harness evaluation's traces from a queue worker to the coordinator costs
 * (src/queue/traces.ts), against what writing them costs a local run, side by side in one run:
 * one evaluation of `--tasks` GSM8K tasks (default 50), each traced as a local run traces it (an
 * agent span, `--turns` model calls with their full requests and answers, the scorer's span),
 * written into a store file as evaluateHarness writes them (a local run's cost); then, as a worker
 * does, exported from its store, gzipped into parts and stored in a real redis-server (SET), and,
 * as the coordinator does, read back (GET), checked row by row and imported into its store.
 * Median of `--runs`. Sizes: JSON lines, gzip, parts.
 *
 *   node --import tsx bench/trace-transfer.ts [--tasks 50] [--turns 3] [--runs 5]
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Redis } from 'ioredis';
import { openDb, exportTraceGroup, importTraces, TraceWriter, type DB } from '../traces/index.ts';
import type { SpanRecord } from '../traces/types.ts';
import { packTraces, unpackTraces } from '../src/queue/traces.ts';
import { BLOB_KEY, sha256 } from '../src/queue/common.ts';
import { redisServer } from '../test/helpers/queue.ts';
import { writeSection, machine } from './markdown.ts';

const { values } = parseArgs({ options: { tasks: { type: 'string', default: '50' }, turns: { type: 'string', default: '3' }, runs: { type: 'string', default: '5' } } });
const TASKS = Number(values.tasks);
const TURNS = Number(values.turns);
const RUNS = Math.max(1, Number(values.runs));

const root = process.env.AUTOAGENT_DATA ?? '/work/shared/data';
const gsm8k = readFileSync(join(root, 'gsm8k', 'train.jsonl'), 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as { question: string; answer: string });
const SYSTEM = readFileSync(new URL('../harnesses/gsm8k/prompts/system.md', import.meta.url), 'utf8');

/** one evaluation's traces, written as evaluateHarness writes them (a TraceWriter: batched, each finished task committed at once); returns the ms it took */
function writeEvaluation(db: DB, run: string, seq: number, repeat: number, offset: number): number {
  const t0 = performance.now();
  const writer = new TraceWriter(db);
  const group = `${run}/${seq}/${repeat}`;
  for (let i = 0; i < TASKS; i++) {
    const g = gsm8k[(offset + i) % gsm8k.length]!;
    const id = `${group}/${i}-${offset}`;
    writer.trace({
      id, run_id: run, experiment_seq: seq, group_id: group, task_id: `gsm8k/${i}`, repeat, benchmark: 'gsm8k', split: 'val', harness: 'h',
      status: 'ok', score: null, pass: null, output: null, error: null, started_at: 1, ended_at: 1,
      input_tokens: 0, output_tokens: 0, cache_read_tokens: 0, cache_write_tokens: 0, cost_usd: 0,
    });
    const messages: Array<{ role: string; content: string }> = [{ role: 'system', content: SYSTEM }, { role: 'user', content: g.question }];
    const spans: SpanRecord[] = [{ id: 'agent', trace_id: id, parent_id: null, kind: 'agent', name: 'h', status: 'ok', started_at: 1, ended_at: 9, input: { task: g.question }, output: g.answer, error: null, input_tokens: 0, output_tokens: 0, cache_read_tokens: 0, cache_write_tokens: 0, cost_usd: 0, attributes: {} }];
    for (let k = 0; k < TURNS; k++) {
      const answer = `${g.answer}\n(step ${k + 1})`;
      spans.push({
        id: `m${k}`, trace_id: id, parent_id: 'agent', kind: 'model', name: 'gpt-4.1-mini', status: 'ok', started_at: 2 + k, ended_at: 3 + k,
        input: { model: 'gpt-4.1-mini', messages: [...messages], max_tokens: 800, temperature: 0.2 }, output: { content: [{ type: 'text', text: answer }], stop_reason: 'end_turn' }, error: null,
        input_tokens: 150 + 40 * k, output_tokens: 60, cache_read_tokens: 0, cache_write_tokens: 0, cost_usd: 0.0002, attributes: { attempt: 1 },
      });
      messages.push({ role: 'assistant', content: answer }, { role: 'user', content: 'Check your work and answer again.' });
    }
    spans.push({ id: 'score', trace_id: id, parent_id: 'agent', kind: 'scoring', name: 'gsm8k', status: 'ok', started_at: 8, ended_at: 9, input: { output: g.answer.slice(-40) }, output: { score: 1, feedback: 'correct' }, error: null, input_tokens: 0, output_tokens: 0, cache_read_tokens: 0, cache_write_tokens: 0, cost_usd: 0, attributes: {} });
    for (const sp of spans) writer.span(sp);
    writer.finish(id, { status: 'ok', ended_at: 9, score: 1, pass: true, output: g.answer.slice(-40), input_tokens: 450, output_tokens: 180, cost_usd: 0.0006 });
  }
  writer.flush();
  return performance.now() - t0;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const dir = mkdtempSync(join(tmpdir(), 'autoagent-bench-transfer-'));
const redis = await redisServer();
const conn = new Redis(redis.url);
const load = loadavg()[0]!;
const t = { write: [] as number[], pack: [] as number[], unpack: [] as number[], import: [] as number[] };
let sizes = { json: 0, gzip: 0, parts: 0, traces: 0, spans: 0 };
try {
  const worker = openDb(join(dir, 'worker.db'));
  const coordinator = openDb(join(dir, 'coordinator.db'));
  const local = openDb(join(dir, 'local.db'));
  for (let r = 0; r < RUNS; r++) {
    // a local run's cost: its own writes
    t.write.push(writeEvaluation(local, 'run-l', r + 1, 0, r * TASKS));
    // the worker: the same writes into its store (not counted: a local run pays them too), then export and send
    writeEvaluation(worker, 'run-q', r + 1, 0, r * TASKS);
    const t0 = performance.now();
    const x = exportTraceGroup(worker, `run-q/${r + 1}/0`);
    const parts = await packTraces(x, async (b) => {
      const sha = sha256(b);
      await conn.set(`${BLOB_KEY}${sha}`, b);
      return sha;
    });
    t.pack.push(performance.now() - t0);
    // the coordinator: read, check, import
    const t1 = performance.now();
    const back = await unpackTraces(parts, (sha) => conn.getBuffer(`${BLOB_KEY}${sha}`), { run: 'run-q', seq: r + 1, repeat: 0 });
    t.unpack.push(performance.now() - t1);
    const t2 = performance.now();
    importTraces(coordinator, back);
    t.import.push(performance.now() - t2);
    const gz = (await Promise.all(parts.parts.map((p) => conn.strlen(`${BLOB_KEY}${p}`)))).reduce((a, b) => a + b, 0);
    sizes = { json: parts.bytes, gzip: gz, parts: parts.parts.length, traces: parts.traces, spans: parts.spans };
  }
  for (const db of [worker, coordinator, local]) db.close();
} finally {
  conn.disconnect();
  redis.close();
  rmSync(dir, { recursive: true, force: true });
}

const w = median(t.write);
const send = median(t.pack);
const recv = median(t.unpack) + median(t.import);
const kb = (n: number) => `${(n / 1024).toFixed(0)} KiB`;
const rows = [
  ['local run: write the traces (TraceWriter, as evaluateHarness)', w],
  ['worker: export from its store, gzip, SET the parts', send],
  ['coordinator: GET the parts, unzip, check every row', median(t.unpack)],
  ['coordinator: import (rows and search index, one transaction)', median(t.import)],
] as const;
const body = `## Sending traces from workers (\`node --import tsx bench/trace-transfer.ts\`)

What a harness evaluation on a queue worker adds to the traces it makes (src/queue/traces.ts), against what writing them costs
a local run, side by side in one run: one evaluation of ${TASKS} GSM8K tasks, each traced as a local run traces it (an agent span, ${TURNS}
model calls with their full requests and answers, the scorer's span: ${sizes.traces} traces, ${sizes.spans} spans), written into a store
file as a local run writes them (a TraceWriter: batched, each finished task committed at once); then exported from the worker's store, gzipped into parts and stored in a real redis-server,
read back by the coordinator, checked row by row and imported into its store. Median of ${RUNS} runs.
Measured ${new Date().toISOString().slice(0, 10)} on ${machine()}, load average ${load.toFixed(1)} at the start.

| step | ms (median) | × the local write |
| --- | --- | --- |
${rows.map(([what, ms]) => `| ${what} | ${ms.toFixed(1)} | ${(ms / w).toFixed(2)}× |`).join('\n')}
| **worker and coordinator together** | **${(send + recv).toFixed(1)}** | **${((send + recv) / w).toFixed(2)}×** |

Size on the queue: ${kb(sizes.json)} of JSON lines → ${kb(sizes.gzip)} gzipped in ${sizes.parts} part(s) (${(sizes.json / Math.max(1, sizes.gzip)).toFixed(1)}× smaller), kept 7 days:
size Redis's memory for about ${kb(sizes.gzip)} per evaluation of this shape.
`;
console.log(body);
writeSection('trace-transfer', body);
