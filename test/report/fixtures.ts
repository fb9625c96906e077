/**
 * Fixtures for the report and export tests: a finished harness run written straight into a store
 * (the rows and span shapes that src/loop.ts and task-agent/evaluate.ts write), and a small PNG
 * decoder for checking what headless Chromium drew.
 */
import { randomUUID } from 'node:crypto';
import { inflateSync } from 'node:zlib';
import { openDb, type DB } from '../../traces/db.ts';
import { insertRun, insertExperiment, decideExperiment, insertEvaluation, setRunStatus, type Decision, type ProposalRecord } from '../../traces/ledger.ts';
import { insertTrace, finishTrace, insertSpans } from '../../traces/traces.ts';
import type { SpanRecord } from '../../traces/types.ts';

export const T0 = 1_763_000_000_000;
export const TASKS = ['tooluse/2', 'tooluse/10', 'tooluse/1', 'tooluse/3'];

/** Per experiment: decision, metric (mean task score), tasks run and repeats; score(task, seq) is deterministic. */
const PLAN: Array<{ seq: number; decision: Decision; repeats: number; tasks: string[]; hypothesis: string; cited?: string[] }> = [
  { seq: 0, decision: 'baseline', repeats: 2, tasks: TASKS, hypothesis: 'baseline (the starting commit, evaluated repeatedly to measure noise)' },
  { seq: 1, decision: 'kept', repeats: 2, tasks: TASKS, hypothesis: 'prompt: tell the agent to read the file before answering', cited: ['see-below'] },
  { seq: 2, decision: 'discarded', repeats: 1, tasks: TASKS.slice(0, 2), hypothesis: 'temperature 0.2 → 0.9' },
  { seq: 3, decision: 'kept', repeats: 2, tasks: TASKS, hypothesis: 'tools: add grep' },
  { seq: 4, decision: 'crash', repeats: 0, tasks: [], hypothesis: 'tools: a tool that throws at import' },
];

const SCORES: Record<number, number[]> = { 0: [0, 0, 0], 1: [1, 0, 0], 2: [0, 0, 0], 3: [1, 1, 0] };

/** The score of a task: each kept change fixes one more task; the fourth task is flaky (1 on repeat 0, 0 on repeat 1). */
export function scoreOf(task: string, seq: number, repeat: number): number {
  const i = TASKS.indexOf(task);
  if (i === 3) return repeat === 0 ? 1 : 0;
  return SCORES[seq]![i]!;
}

export interface HarnessFixture {
  db: DB;
  runId: string;
  /** every trace id written, with its experiment (-1: the final test evaluation), task, repeat and split */
  traces: Array<{ id: string; seq: number; task: string; repeat: number; score: number; split: string }>;
}

/** One task run: agent → turn 1 → (model call 1 asking for a tool, tool `lookup` → subagent → model), turn 2 → model call 2; scoring. */
function writeTaskTrace(db: DB, runId: string, seq: number, task: string, repeat: number, at: number, score: number, split = 'val'): string {
  const id = randomUUID();
  const root = randomUUID();
  const turn1 = randomUUID();
  const turn2 = randomUUID();
  const tool = randomUUID();
  const sub = randomUUID();
  insertTrace(db, {
    id, run_id: runId, experiment_seq: seq, group_id: seq < 0 ? `${runId}/-1/1` : `${runId}#${seq}`, task_id: task, repeat, benchmark: 'tooluse', split,
    harness: 'tooluse', status: 'ok', score: null, pass: null, output: null, error: null, started_at: at, ended_at: at,
    input_tokens: 0, output_tokens: 0, cache_read_tokens: 0, cache_write_tokens: 0, cost_usd: 0,
  });
  const zero = { input_tokens: 0, output_tokens: 0, cache_read_tokens: 0, cache_write_tokens: 0, cost_usd: 0 };
  const request = (messages: unknown[]) => ({
    provider: 'openai', model: 'gpt-4.1-mini', system: `Answer the question about ${task}.`, messages, tools: [{ name: 'lookup', description: 'read a file', parameters: {} }],
    max_tokens: 512, temperature: 0.2,
  });
  const user = { role: 'user', content: [{ type: 'text', text: `question of ${task}` }] };
  const call1 = { content: [{ type: 'text', text: 'Let me look.' }, { type: 'tool_use', id: 'tu1', name: 'lookup', input: { path: 'data.txt' } }], stop_reason: 'tool_use', raw: {} };
  const call2 = { content: [{ type: 'text', text: `#### ${score}` }], stop_reason: 'end_turn', raw: {} };
  const model = (sid: string, parent: string, name: string, input: unknown, output: unknown, from: number, to: number, tok: [number, number, number]): SpanRecord => ({
    id: sid, trace_id: id, parent_id: parent, kind: 'model', name, status: 'ok', started_at: at + from, ended_at: at + to, input, output, error: null,
    input_tokens: tok[0], output_tokens: tok[1], cache_read_tokens: tok[2], cache_write_tokens: 0, cost_usd: (tok[0] * 0.4 + tok[1] * 1.6) / 1e6,
    attributes: { model: 'gpt-4.1-mini-2025-04-14', latency_ms: to - from, attempts: 1, cached: false },
  });
  const spans: SpanRecord[] = [
    model(randomUUID(), turn1, 'model call 1', request([user]), call1, 10, 200, [300, 40, 128]),
    { id: sub, trace_id: id, parent_id: tool, kind: 'subagent', name: 'summarise', status: 'ok', started_at: at + 230, ended_at: at + 300, input: { system: 'summarise' }, output: 'a summary', error: null, ...zero, attributes: {} },
    model(randomUUID(), sub, 'summarise', { ...request([{ role: 'user', content: 'summarise data.txt' }]), tools: [] }, { content: [{ type: 'text', text: 'a summary' }], stop_reason: 'end_turn', raw: {} }, 240, 290, [80, 20, 0]),
    { id: tool, trace_id: id, parent_id: turn1, kind: 'tool', name: 'lookup', status: repeat === 1 && task === TASKS[3] ? 'error' : 'ok', started_at: at + 210, ended_at: at + 310, input: { path: 'data.txt' }, output: 'file contents', error: repeat === 1 && task === TASKS[3] ? 'ENOENT data.txt' : null, ...zero, attributes: {} },
    { id: turn1, trace_id: id, parent_id: root, kind: 'turn', name: 'turn 1', status: 'ok', started_at: at + 5, ended_at: at + 320, input: null, output: 'Let me look.', error: null, ...zero, attributes: {} },
    model(randomUUID(), turn2, 'model call 2', request([user, { role: 'assistant', content: call1.content }, { role: 'user', content: [{ type: 'tool_result', tool_use_id: 'tu1', content: 'file contents' }] }]), call2, 330, 500, [420, 12, 256]),
    { id: turn2, trace_id: id, parent_id: root, kind: 'turn', name: 'turn 2', status: 'ok', started_at: at + 325, ended_at: at + 510, input: null, output: `#### ${score}`, error: null, ...zero, attributes: {} },
    { id: randomUUID(), trace_id: id, parent_id: root, kind: 'scoring', name: 'numeric', status: 'ok', started_at: at + 520, ended_at: at + 530, input: { output: `#### ${score}` }, output: { score, pass: score === 1, feedback: score === 1 ? 'correct' : 'expected 7' }, error: null, ...zero, attributes: {} },
    { id: root, trace_id: id, parent_id: null, kind: 'agent', name: `tooluse on ${task}`, status: 'ok', started_at: at, ended_at: at + 540, input: { task: { id: task, input: { question: `question of ${task}` }, tags: [] }, route: { label: 'default' } }, output: { output: `#### ${score}`, steps: 2, stop: 'final' }, error: null, ...zero, attributes: { route: 'default' } },
  ];
  insertSpans(db, spans);
  const models = spans.filter((s) => s.kind === 'model');
  finishTrace(db, id, {
    status: 'ok', ended_at: at + 540, score, pass: score === 1, output: `#### ${score}`, error: null,
    input_tokens: models.reduce((a, s) => a + s.input_tokens, 0), output_tokens: models.reduce((a, s) => a + s.output_tokens, 0),
    cache_read_tokens: models.reduce((a, s) => a + s.cache_read_tokens, 0), cache_write_tokens: 0, cost_usd: models.reduce((a, s) => a + s.cost_usd, 0),
  });
  return id;
}

/** A finished harness run (metric `score`, maximize) with traces for every evaluated experiment. */
export function makeHarnessRun(path = ':memory:'): HarnessFixture {
  const db = openDb(path);
  const runId = 'tooluse-20261122-000000-abc';
  insertRun(db, {
    id: runId, name: 'tooluse-study', kind: 'harness', study_path: '/repo/harnesses/tooluse/study.yaml',
    study_json: JSON.stringify({ name: 'tooluse-study', kind: 'harness', harness: { dir: 'h', benchmark: 'tooluse', split: 'val' } }),
    study_text: '', config_hash: 'x', repo: '/repo', base_commit: 'a'.repeat(40), branch: `autoagent/${runId}`, lock_manifest: '{}',
    metric_name: 'score', direction: 'maximize', self_reported: 0, unsafe_no_sandbox: 0, environment: null,
  });
  const traces: HarnessFixture['traces'] = [];
  let at = T0;
  let incumbent = 0;
  for (const p of PLAN) {
    const e = insertExperiment(db, {
      run_id: runId, seq: p.seq, parent_commit: 'a'.repeat(40), candidate_commit: p.seq === 0 ? 'a'.repeat(40) : `${p.seq}`.repeat(40).slice(0, 40),
      proposer: p.seq === 0 ? 'baseline' : 'llm', hypothesis: p.hypothesis, meta: null, edits: '[]',
      diff: p.seq === 0 ? '' : `diff --git a/h/harness.yaml b/h/harness.yaml\n--- a/h/harness.yaml\n+++ b/h/harness.yaml\n@@ -1 +1 @@\n-old ${p.seq}\n+new ${p.seq}\n`,
      files_hash: `h${p.seq}`,
    });
    const means: number[] = [];
    for (let r = 0; r < p.repeats; r++) {
      const scores: number[] = [];
      for (const task of p.tasks) {
        const s = scoreOf(task, p.seq, r);
        const id = writeTaskTrace(db, runId, p.seq, task, r, at, s);
        traces.push({ id, seq: p.seq, task, repeat: r, score: s, split: 'val' });
        scores.push(s);
        at += 1000;
      }
      const m = scores.reduce((a, b) => a + b, 0) / scores.length;
      means.push(m);
      insertEvaluation(db, {
        experiment_id: e.id, repeat: r, seed: p.seq * 1000 + r + 1, status: 'ok', metric: m, reason: null, command_ms: 1000, evaluator_ms: 0,
        exit_code: 0, stdout_tail: '', stderr_tail: '', telemetry: null,
      });
    }
    if (p.decision === 'crash') {
      insertEvaluation(db, {
        experiment_id: e.id, repeat: 0, seed: p.seq * 1000 + 1, status: 'crash', metric: null, reason: 'tool module failed to load', command_ms: 10,
        evaluator_ms: 0, exit_code: null, stdout_tail: '', stderr_tail: '', telemetry: null,
      });
    }
    const metric = means.length ? means.reduce((a, b) => a + b, 0) / means.length : null;
    if (p.cited) {
      // cite a real trace of the incumbent
      const cite = traces.find((t) => t.seq === 0 && t.task === TASKS[1])!.id;
      const record: ProposalRecord = { trace_id: null, cited: [cite], expected_effect: null, tokens: 0, cost_usd: 0, ms: 0 };
      db.prepare('UPDATE experiments SET proposal = ? WHERE id = ?').run(JSON.stringify(record), e.id);
    }
    decideExperiment(db, e.id, {
      decision: p.decision, reason: p.decision === 'kept' ? 'improvement beats the margin' : p.decision === 'crash' ? 'tool module failed to load' : 'within noise',
      metric, incumbent_metric: p.seq === 0 ? null : incumbent, improvement: metric === null || p.seq === 0 ? null : metric - incumbent, margin: p.seq === 0 ? null : 0.05,
      kept_commit: p.decision === 'kept' ? `${p.seq}`.repeat(40).slice(0, 40) : null, wall_ms: 1000, inside_ms: 900,
    });
    if (p.seq === 0 || p.decision === 'kept') incumbent = metric!;
  }
  setRunStatus(db, runId, 'finished', 'experiment budget reached (4/4)');
  // finalized: the last kept experiment once on the sealed test split (src/finalize.ts: traces at seq -1, a finalizations row)
  const finalId = writeTaskTrace(db, runId, -1, 'tooluse/test-1', 0, at, 1, 'test');
  traces.push({ id: finalId, seq: -1, task: 'tooluse/test-1', repeat: 0, score: 1, split: 'test' });
  db.prepare('INSERT INTO finalizations (run_id, "commit", split, metric, details, forced, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)')
    .run(runId, '3'.repeat(40), 'test', 1, JSON.stringify({ experiment: 3, validation: incumbent, test_minus_validation: 1 - incumbent, forced_over: [], traces_group: `${runId}/-1/1` }), 0, new Date(at).toISOString());
  return { db, runId, traces };
}

// ---------------------------------------------------------------------------------------------
// PNG

export interface Image {
  width: number;
  height: number;
  /** RGBA, 4 bytes a pixel */
  rgba: Uint8Array;
}

/** Decodes an 8-bit, non-interlaced PNG (greyscale, RGB, RGBA, grey+alpha); throws on anything else. */
export function decodePng(buf: Buffer): Image {
  const sig = '89504e470d0a1a0a';
  if (buf.subarray(0, 8).toString('hex') !== sig) throw new Error('not a PNG');
  let off = 8;
  let width = 0;
  let height = 0;
  let depth = 0;
  let color = 0;
  let interlace = 0;
  const idat: Buffer[] = [];
  while (off < buf.length) {
    const len = buf.readUInt32BE(off);
    const type = buf.toString('latin1', off + 4, off + 8);
    const data = buf.subarray(off + 8, off + 8 + len);
    if (type === 'IHDR') {
      width = data.readUInt32BE(0);
      height = data.readUInt32BE(4);
      depth = data[8]!;
      color = data[9]!;
      interlace = data[12]!;
    } else if (type === 'IDAT') idat.push(data);
    else if (type === 'IEND') break;
    off += 12 + len;
  }
  const channels = ({ 0: 1, 2: 3, 4: 2, 6: 4 } as Record<number, number>)[color];
  if (depth !== 8 || !channels || interlace !== 0) throw new Error(`unsupported PNG: depth ${depth}, colour type ${color}, interlace ${interlace}`);
  const raw = inflateSync(Buffer.concat(idat));
  const stride = width * channels;
  const px = new Uint8Array(height * stride);
  let prev = new Uint8Array(stride);
  for (let y = 0; y < height; y++) {
    const filter = raw[y * (stride + 1)]!;
    const line = raw.subarray(y * (stride + 1) + 1, (y + 1) * (stride + 1));
    const cur = px.subarray(y * stride, (y + 1) * stride);
    for (let i = 0; i < stride; i++) {
      const a = i >= channels ? cur[i - channels]! : 0;
      const b = prev[i]!;
      const c = i >= channels ? prev[i - channels]! : 0;
      let v = line[i]!;
      if (filter === 1) v += a;
      else if (filter === 2) v += b;
      else if (filter === 3) v += (a + b) >> 1;
      else if (filter === 4) {
        const p = a + b - c;
        const pa = Math.abs(p - a);
        const pb = Math.abs(p - b);
        const pc = Math.abs(p - c);
        v += pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
      } else if (filter !== 0) throw new Error(`bad PNG filter ${filter}`);
      cur[i] = v & 0xff;
    }
    prev = cur;
  }
  const rgba = new Uint8Array(width * height * 4);
  for (let p = 0; p < width * height; p++) {
    const s = p * channels;
    const [r, g, b, al] = channels === 4 ? [px[s]!, px[s + 1]!, px[s + 2]!, px[s + 3]!] : channels === 3 ? [px[s]!, px[s + 1]!, px[s + 2]!, 255]
      : channels === 2 ? [px[s]!, px[s]!, px[s]!, px[s + 1]!] : [px[s]!, px[s]!, px[s]!, 255];
    rgba.set([r, g, b, al], p * 4);
  }
  return { width, height, rgba };
}

/** Pixels of exactly this colour (#rrggbb), and the longest horizontal run of them. */
export function colourStats(img: Image, hex: string): { count: number; longestRun: number; rows: number } {
  const r = parseInt(hex.slice(1, 3), 16);
  const g = parseInt(hex.slice(3, 5), 16);
  const b = parseInt(hex.slice(5, 7), 16);
  let count = 0;
  let longestRun = 0;
  let rows = 0;
  for (let y = 0; y < img.height; y++) {
    let run = 0;
    let inRow = false;
    for (let x = 0; x < img.width; x++) {
      const i = (y * img.width + x) * 4;
      if (img.rgba[i] === r && img.rgba[i + 1] === g && img.rgba[i + 2] === b) {
        count++;
        run++;
        inRow = true;
        if (run > longestRun) longestRun = run;
      } else run = 0;
    }
    if (inRow) rows++;
  }
  return { count, longestRun, rows };
}
