/**
 * An evaluation's traces, from the worker that made them to the coordinator that records them.
 * The worker writes its traces into a store of its own, exports the evaluation's group
 * (traces/traces.ts exportTraceGroup), and stores it as gzipped JSON lines in content-addressed
 * parts (`autoagent:blob:<sha256>`, at most PART_BYTES each: whole, never cut); the job's result
 * names the parts. The coordinator reads the parts, checks each against its sha256, and checks
 * every row (its fields and types, and that it belongs to the job's run, experiment and repeat)
 * before the loop imports them; anything else refuses the whole result.
 */
import { gzipSync, gunzipSync } from 'node:zlib';
import { z } from 'zod';
import type { TraceExport } from '../../traces/index.ts';
import { sha256, type TraceParts } from './common.ts';

/** the largest part stored under one key (bytes of gzip) */
export const PART_BYTES = 4 * 1024 * 1024;
/** the most an evaluation's traces may take once unzipped: a bomb is refused, not inflated */
export const MAX_TRACE_BYTES = 1024 * 1024 * 1024;

/** Stores `x` as parts through `put` (which stores bytes under their sha256 and returns it). */
export async function packTraces(x: TraceExport, put: (bytes: Buffer) => Promise<string>, partBytes = PART_BYTES): Promise<TraceParts> {
  const lines = [...x.traces.map((t) => JSON.stringify({ t })), ...x.spans.map((s) => JSON.stringify({ s }))].join('\n');
  const zipped = gzipSync(Buffer.from(lines));
  const parts: string[] = [];
  for (let at = 0; at < zipped.length || parts.length === 0; at += partBytes) parts.push(await put(zipped.subarray(at, at + partBytes)));
  return { parts, traces: x.traces.length, spans: x.spans.length, bytes: Buffer.byteLength(lines) };
}

const str = (max: number) => z.string().max(max);
const int = z.number().int().finite();
const num = z.number().finite();
const status = z.enum(['ok', 'error', 'timeout']);

const TraceSchema = z.object({
  id: str(200), role: z.literal('task'), run_id: str(200), experiment_seq: int, group_id: str(400), task_id: str(1000), repeat: int,
  benchmark: str(200), split: str(200), harness: str(1000), status, score: num.nullable(), pass: z.boolean().nullable(),
  output: z.string().nullable(), error: z.string().nullable(), started_at: int, ended_at: int,
  input_tokens: int.nonnegative(), output_tokens: int.nonnegative(), cache_read_tokens: int.nonnegative(), cache_write_tokens: int.nonnegative(),
  cost_usd: num.nonnegative(), finalized: z.boolean(),
}).strict();

const SpanSchema = z.object({
  id: str(200), trace_id: str(200), parent_id: str(200).nullable(), kind: z.enum(['agent', 'turn', 'model', 'tool', 'subagent', 'scoring']),
  name: str(1000), status, started_at: int, ended_at: int, input: z.unknown(), output: z.unknown(), error: z.string().nullable(),
  input_tokens: int.nonnegative(), output_tokens: int.nonnegative(), cache_read_tokens: int.nonnegative(), cache_write_tokens: int.nonnegative(),
  cost_usd: num.nonnegative(), attributes: z.record(z.string(), z.unknown()),
}).strict();

const LineSchema = z.union([z.object({ t: TraceSchema }).strict(), z.object({ s: SpanSchema }).strict()]);

export class TraceTransferError extends Error {}

/**
 * Reads the parts through `get` and returns the traces, checked: every part present and matching
 * its sha256, every row well-formed, every trace of run `job.run`, experiment `job.seq`, repeat
 * `job.repeat` and group `<run>/<seq>/<repeat>`, every span of one of them. Throws TraceTransferError.
 */
export async function unpackTraces(p: TraceParts, get: (sha: string) => Promise<Buffer | null>, job: { run: string; seq: number; repeat: number }, maxBytes = MAX_TRACE_BYTES): Promise<TraceExport> {
  const bufs: Buffer[] = [];
  for (const sha of p.parts) {
    if (!/^[0-9a-f]{64}$/.test(sha)) throw new TraceTransferError(`a trace part is not named by a sha256`);
    const b = await get(sha);
    if (!b) throw new TraceTransferError(`trace part ${sha.slice(0, 12)} is not on the queue (expired, or Redis lost it)`);
    if (sha256(b) !== sha) throw new TraceTransferError(`trace part ${sha.slice(0, 12)} does not match its sha256`);
    bufs.push(b);
  }
  let text: string;
  try {
    text = gunzipSync(Buffer.concat(bufs), { maxOutputLength: maxBytes }).toString();
  } catch (e) {
    throw new TraceTransferError(`the traces do not unzip: ${(e as Error).message}`);
  }
  const group = `${job.run}/${job.seq}/${job.repeat}`;
  const out: TraceExport = { traces: [], spans: [] };
  let n = 0;
  for (const line of text.split('\n')) {
    n++;
    if (!line) continue;
    let raw: unknown;
    try {
      raw = JSON.parse(line);
    } catch {
      throw new TraceTransferError(`trace line ${n} is not JSON`);
    }
    const r = LineSchema.safeParse(raw);
    if (!r.success) throw new TraceTransferError(`trace line ${n} is not a trace or span: ${r.error.issues[0]?.path.join('.')}: ${r.error.issues[0]?.message}`);
    if ('t' in r.data) {
      const t = r.data.t;
      if (t.run_id !== job.run || t.experiment_seq !== job.seq || t.repeat !== job.repeat || t.group_id !== group) {
        throw new TraceTransferError(`trace ${t.id} is of ${t.run_id} #${t.experiment_seq} repeat ${t.repeat} (${t.group_id}), not of this job (${group})`);
      }
      out.traces.push(t);
    } else {
      out.spans.push(r.data.s as TraceExport['spans'][number]);
    }
  }
  if (out.traces.length !== p.traces || out.spans.length !== p.spans) throw new TraceTransferError(`the result names ${p.traces} traces and ${p.spans} spans; its parts hold ${out.traces.length} and ${out.spans.length}`);
  const ids = new Set(out.traces.map((t) => t.id));
  for (const s of out.spans) if (!ids.has(s.trace_id)) throw new TraceTransferError(`span ${s.id} is of trace ${s.trace_id}, not one of this job's`);
  return out;
}
