/**
 * Plain-text views of traces: one task run as a transcript, many as a table. Deterministic: the
 * same trace gives the same text on any machine (no locale, no clock, no terminal width).
 *
 * Transcript layout: a header (task, benchmark/split, harness, status, score, scorer feedback,
 * tokens, cost, duration), the spans in start order nested by parent (two spaces a level), then
 * the final answer and the score. Text that appears twice in a trace is shown once: a tool call's
 * arguments under the model call that asked for it, its result under the tool span (not again in
 * the next request), an agent's final text under the model call that wrote it.
 */
import type { SpanRecord, TraceRecord } from './types.ts';
import { buildSpanTree, type SpanNode } from './traces.ts';
import { fmtDuration } from '../base/format.ts';

export interface TranscriptOptions {
  /** text blocks (prompts, thinking, answers, tool results) longer than this are cut (default 2000) */
  maxTextChars?: number;
  /** string values inside JSON (tool arguments, inputs) longer than this are cut (default 200) */
  maxValueChars?: number;
  /** array items shown inside JSON (default 50) */
  maxItems?: number;
}

// ---------------------------------------------------------------------------------------------
// formatting

export const fmtCost = (usd: number): string => `$${(usd ?? 0).toFixed(4)}`;

export const fmtScore = (x: number | null | undefined): string =>
  x === null || x === undefined || Number.isNaN(x) ? '—' : String(Number(x.toFixed(4)));

const passWord = (pass: boolean | null | undefined): string => (pass === true ? 'pass' : pass === false ? 'fail' : 'not scored');

function fmtTokens(x: { input_tokens: number; output_tokens: number; cache_read_tokens: number; cache_write_tokens: number }): string {
  const base = `${x.input_tokens} in / ${x.output_tokens} out`;
  return x.cache_read_tokens || x.cache_write_tokens ? `${base} · cache ${x.cache_read_tokens} read / ${x.cache_write_tokens} write` : base;
}

/** `text` cut to `max` characters, with what was cut said explicitly */
export function trimText(text: string, max: number): string {
  return text.length > max ? `${text.slice(0, max)}… [${text.length - max} more chars]` : text;
}

/** pretty JSON (two-space indent) with long strings and long arrays cut, each cut marked */
export function prettyJson(v: unknown, maxValueChars = 200, maxItems = 50): string {
  const cut = (x: unknown, depth: number): unknown => {
    if (typeof x === 'string') return trimText(x, maxValueChars);
    if (x === null || typeof x !== 'object') return x;
    if (depth > 32) return '… [nested too deep]';
    if (Array.isArray(x)) {
      const items = x.slice(0, maxItems).map((y) => cut(y, depth + 1));
      if (x.length > maxItems) items.push(`… [${x.length - maxItems} more items]`);
      return items;
    }
    const out: Record<string, unknown> = {};
    for (const [k, y] of Object.entries(x as Record<string, unknown>)) out[k] = cut(y, depth + 1);
    return out;
  };
  return JSON.stringify(cut(v, 0), null, 2) ?? 'null';
}

const WIDTH = 120;

/** `label: text` on one line when short and single-line, else the label and the text indented below it */
function field(out: string[], indent: string, label: string, text: string): void {
  const lines = text.replace(/\r\n?/g, '\n').split('\n').map((l) => l.trimEnd());
  if (lines.length === 1 && indent.length + label.length + 2 + lines[0]!.length <= WIDTH) {
    out.push(`${indent}${label}: ${lines[0]}`.trimEnd());
    return;
  }
  out.push(`${indent}${label}:`);
  for (const l of lines) out.push(l ? `${indent}  ${l}` : '');
}

// ---------------------------------------------------------------------------------------------
// reading spans

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);
const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);
const num = (v: unknown): number | undefined => (typeof v === 'number' && Number.isFinite(v) ? v : undefined);

const blocksOf = (v: unknown): Obj[] => (Array.isArray(v) ? (v.filter(isObj) as Obj[]) : []);

function textOf(blocks: Obj[]): string {
  return blocks
    .filter((b) => b.type === 'text' && typeof b.text === 'string')
    .map((b) => b.text as string)
    .join('\n')
    .trim();
}

/** messages of a model request that are new in this call: all of them on a conversation's first call, else those after the last assistant message */
function newMessages(req: Obj): { first: boolean; messages: Obj[] } {
  const messages = Array.isArray(req.messages) ? (req.messages.filter(isObj) as Obj[]) : [];
  let last = -1;
  messages.forEach((m, i) => {
    if (m.role === 'assistant') last = i;
  });
  return { first: last < 0, messages: messages.slice(last + 1) };
}

const toolKey = (name: unknown, args: unknown): string => `${String(name)}\u0000${typeof args === 'string' ? args : JSON.stringify(args ?? null)}`;

interface Known {
  /** texts the transcript shows elsewhere: final answer, assistant texts, system prompts shown */
  texts: Set<string>;
  /** tool calls the model asked for (name + arguments) and their ids */
  toolUses: Set<string>;
  toolUseIds: Set<string>;
  /** what tool spans returned (results and errors) */
  toolResults: Set<string>;
}

function collectKnown(trace: TraceRecord, spans: SpanRecord[]): Known {
  const k: Known = { texts: new Set(), toolUses: new Set(), toolUseIds: new Set(), toolResults: new Set() };
  if (trace.output) k.texts.add(trace.output);
  for (const s of spans) {
    if (s.kind === 'model') {
      if (isObj(s.input)) {
        const { first } = newMessages(s.input);
        const system = str(s.input.system);
        if (first && system) k.texts.add(system);
      }
      const blocks = isObj(s.output) ? blocksOf(s.output.content) : [];
      const text = textOf(blocks);
      if (text) k.texts.add(text);
      for (const b of blocks) {
        if (b.type === 'text' && typeof b.text === 'string') k.texts.add(b.text);
        if (b.type === 'tool_use') {
          k.toolUses.add(toolKey(b.name, b.input));
          if (typeof b.raw_input === 'string') k.toolUses.add(toolKey(b.name, b.raw_input));
          if (typeof b.id === 'string') k.toolUseIds.add(b.id);
        }
      }
    } else if (s.kind === 'tool') {
      if (typeof s.output === 'string') k.toolResults.add(s.output);
      if (s.error) k.toolResults.add(s.error);
    }
  }
  return k;
}

/** a span's input or output without the strings shown elsewhere; undefined when nothing is left */
function strip(v: unknown, known: Set<string>): unknown {
  if (v === null || v === undefined) return undefined;
  if (typeof v === 'string') return v === '' || known.has(v) ? undefined : v;
  if (isObj(v)) {
    const out: Obj = {};
    for (const [key, x] of Object.entries(v)) {
      if (x === undefined || (typeof x === 'string' && known.has(x))) continue;
      out[key] = x;
    }
    return Object.keys(out).length ? out : undefined;
  }
  return v;
}

// ---------------------------------------------------------------------------------------------
// the transcript

export function renderTranscript(trace: TraceRecord & { finalized?: boolean }, spans: SpanRecord[], opts: TranscriptOptions = {}): string {
  const maxText = opts.maxTextChars ?? 2000;
  const maxValue = opts.maxValueChars ?? 200;
  const maxItems = opts.maxItems ?? 50;
  const text = (s: string) => trimText(s, maxText);
  /** an error under the label `error`, without a leading `error:` of its own */
  const errText = (s: string) => text(s.replace(/^error:\s*/i, ''));
  const value = (v: unknown) => (typeof v === 'string' ? text(v) : prettyJson(v, maxValue, maxItems));
  const known = collectKnown(trace, spans);
  const roots = buildSpanTree(spans);
  const out: string[] = [];

  // header
  const scoring = [...spans].reverse().find((s) => s.kind === 'scoring' && isObj(s.output) && typeof s.output.feedback === 'string');
  const feedback = scoring && isObj(scoring.output) ? (scoring.output.feedback as string) : null;
  out.push(`task ${trace.task_id} · repeat ${trace.repeat} · ${trace.benchmark}/${trace.split} · harness ${trace.harness}`);
  out.push(
    trace.finalized === false
      ? `status unfinished (the task never finished: still running, or cut off) · ${fmtDuration(trace.ended_at - trace.started_at)} so far`
      : `status ${trace.status} · score ${fmtScore(trace.score)} · ${passWord(trace.pass)} · ${fmtDuration(trace.ended_at - trace.started_at)}`,
  );
  if (feedback) field(out, '', 'feedback', text(feedback));
  if (trace.error) field(out, '', 'error', errText(trace.error));
  out.push(`tokens ${fmtTokens(trace)} · cost ${fmtCost(trace.cost_usd)}`);
  const where = [`trace ${trace.id}`, `group ${trace.group_id}`];
  if (trace.run_id !== null) where.push(`run ${trace.run_id}`);
  if (trace.experiment_seq !== null) where.push(`experiment ${trace.experiment_seq}`);
  out.push(where.join(' · '));

  const label = (s: SpanRecord) => (s.name === s.kind || s.name.startsWith(`${s.kind} `) ? s.name : `${s.kind} ${s.name}`);
  const spent = (s: SpanRecord) =>
    s.input_tokens || s.output_tokens || s.cache_read_tokens || s.cache_write_tokens || s.cost_usd ? ` · ${fmtTokens(s)} · ${fmtCost(s.cost_usd)}` : '';

  const renderModel = (s: SpanNode, ind: string) => {
    const attrs = s.attributes ?? {};
    const res = isObj(s.output) ? s.output : {};
    const req = isObj(s.input) ? s.input : {};
    const model = str(attrs.model) ?? str(res.model) ?? str(req.model);
    const latency = num(attrs.latency_ms) ?? num(res.latency_ms) ?? s.ended_at - s.started_at;
    const attempts = num(attrs.attempts) ?? num(res.attempts);
    const parts = [label(s)];
    if (model && model !== s.name) parts.push(model);
    parts.push(s.status, fmtTokens(s), fmtCost(s.cost_usd), fmtDuration(latency));
    if (attempts !== undefined) parts.push(`${attempts} attempt${attempts === 1 ? '' : 's'}`);
    if (attrs.cached === true) parts.push('cached');
    out.push(ind + parts.join(' · '));
    const b = ind + '  ';
    const { first, messages } = newMessages(req);
    const system = str(req.system);
    if (first && system) field(out, b, 'system', text(system));
    for (const m of messages) {
      const role = str(m.role) ?? 'user';
      if (typeof m.content === 'string') {
        field(out, b, role, text(m.content));
        continue;
      }
      for (const blk of blocksOf(m.content)) {
        if (blk.type === 'text' && typeof blk.text === 'string') field(out, b, role, text(blk.text));
        else if (blk.type === 'tool_result') {
          const content = typeof blk.content === 'string' ? blk.content : JSON.stringify(blk.content ?? null);
          if (!known.toolResults.has(content)) field(out, b, `tool_result ${String(blk.tool_use_id)}${blk.is_error ? ' (error)' : ''}`, text(content));
        }
      }
    }
    for (const blk of blocksOf(res.content)) {
      switch (blk.type) {
        case 'thinking':
          field(out, b, 'thinking', text(String(blk.thinking ?? '')));
          break;
        case 'redacted_thinking':
          out.push(`${b}thinking: [redacted by the provider, ${String(blk.data ?? '').length} chars]`);
          break;
        case 'reasoning':
          field(out, b, 'reasoning', text(String(blk.text ?? '')));
          break;
        case 'text':
          field(out, b, 'assistant', text(String(blk.text ?? '')));
          break;
        case 'tool_use': {
          const args = typeof blk.raw_input === 'string' ? `${text(blk.raw_input)}\n(not valid JSON)` : prettyJson(blk.input ?? {}, maxValue, maxItems);
          field(out, b, `tool_use ${String(blk.name)} (${String(blk.id)})`, args);
          break;
        }
        default:
          field(out, b, String(blk.type ?? 'block'), prettyJson(blk, maxValue, maxItems));
      }
    }
    const stop = str(res.stop_reason);
    if (stop && stop !== 'end_turn' && stop !== 'tool_use') out.push(`${b}stop: ${stop}`);
    for (const c of s.children) renderSpan(c, b);
    if (s.error) field(out, b, 'error', errText(s.error));
  };

  const renderTool = (s: SpanNode, ind: string) => {
    out.push(`${ind}${label(s)} · ${s.status} · ${fmtDuration(s.ended_at - s.started_at)}${spent(s)}`);
    const b = ind + '  ';
    const id = str(s.attributes?.tool_use_id);
    const asked = (id !== undefined && known.toolUseIds.has(id)) || known.toolUses.has(toolKey(s.name, s.input));
    if (!asked && s.input !== null && s.input !== undefined) field(out, b, 'arguments', value(s.input));
    for (const c of s.children) renderSpan(c, b);
    if (s.output !== null && s.output !== undefined && s.output !== s.error && s.output !== '') field(out, b, 'result', value(s.output));
    if (s.error) field(out, b, 'error', errText(s.error));
  };

  const renderScoring = (s: SpanNode, ind: string) => {
    out.push(`${ind}${label(s)} · ${s.status} · ${fmtDuration(s.ended_at - s.started_at)}${spent(s)}`);
    const b = ind + '  ';
    const input = strip(s.input, known.texts);
    if (input !== undefined) field(out, b, 'input', value(input));
    for (const c of s.children) renderSpan(c, b);
    const o = s.output;
    if (isObj(o) && ('score' in o || 'pass' in o)) {
      out.push(`${b}score ${fmtScore(num(o.score) ?? null)} · ${passWord(typeof o.pass === 'boolean' ? o.pass : null)}`);
      if (typeof o.feedback === 'string' && o.feedback) field(out, b, 'feedback', text(o.feedback));
    } else if (o !== null && o !== undefined) field(out, b, 'output', value(o));
    if (s.error) field(out, b, 'error', errText(s.error));
  };

  const renderGeneric = (s: SpanNode, ind: string) => {
    out.push(`${ind}${label(s)} · ${s.status} · ${fmtDuration(s.ended_at - s.started_at)}${spent(s)}`);
    const b = ind + '  ';
    const input = strip(s.input, known.texts);
    if (input !== undefined) field(out, b, 'input', value(input));
    for (const c of s.children) renderSpan(c, b);
    const output = strip(s.output, known.texts);
    if (output !== undefined && output !== s.error) field(out, b, 'output', value(output));
    if (s.error) field(out, b, 'error', errText(s.error));
  };

  const renderSpan = (s: SpanNode, ind: string): void => {
    if (s.kind === 'model') renderModel(s, ind);
    else if (s.kind === 'tool') renderTool(s, ind);
    else if (s.kind === 'scoring') renderScoring(s, ind);
    else renderGeneric(s, ind);
  };

  out.push('');
  if (roots.length === 0) out.push('(no spans recorded)');
  for (const r of roots) renderSpan(r, '');

  out.push('');
  if (trace.output) field(out, '', 'final answer', text(trace.output));
  else out.push('final answer: (none)');
  out.push(
    trace.finalized === false
      ? 'result: unfinished'
      : `result: ${trace.status} · score ${fmtScore(trace.score)} · ${passWord(trace.pass)}${feedback ? ` · ${trimText(feedback.split('\n')[0]!, 200)}` : ''}`,
  );
  return out.join('\n') + '\n';
}

// ---------------------------------------------------------------------------------------------
// the list

/** A table of traces: task, status, score, steps, tokens (in + out), cost, duration; then a totals line. */
export function renderTraceList(traces: Array<TraceRecord & { steps?: number; finalized?: boolean }>): string {
  if (traces.length === 0) return 'no traces\n';
  const repeats = traces.some((t) => t.repeat !== 0);
  const header = ['task', ...(repeats ? ['rep'] : []), 'status', 'score', 'steps', 'tokens', 'cost', 'duration'];
  const rows = traces.map((t) => [
    t.task_id,
    ...(repeats ? [String(t.repeat)] : []),
    t.finalized === false ? 'unfinished' : t.status,
    t.score === null && t.pass === null ? '—' : `${fmtScore(t.score)} ${t.pass === true ? '✓' : t.pass === false ? '✗' : ''}`.trimEnd(),
    t.steps === undefined ? '—' : String(t.steps),
    String(t.input_tokens + t.output_tokens),
    fmtCost(t.cost_usd),
    fmtDuration(t.ended_at - t.started_at),
  ]);
  const right = new Set(['rep', 'score', 'steps', 'tokens', 'cost', 'duration']);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => [...r[i]!].length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => {
        const pad = widths[i]! - [...c].length;
        return right.has(header[i]!) ? ' '.repeat(pad) + c : c + ' '.repeat(pad);
      })
      .join('  ')
      .trimEnd();
  const failed = traces.filter((t) => t.status !== 'ok' || t.pass === false).length;
  const scored = traces.filter((t) => t.score !== null);
  const mean = scored.length ? scored.reduce((a, t) => a + (t.score ?? 0), 0) / scored.length : null;
  const tokens = traces.reduce((a, t) => a + t.input_tokens + t.output_tokens, 0);
  const cost = traces.reduce((a, t) => a + t.cost_usd, 0);
  const passed = traces.filter((t) => t.pass === true).length;
  const total = `${traces.length} trace${traces.length === 1 ? '' : 's'} · ${passed} passed · ${failed} failed · mean score ${fmtScore(mean)} · ${tokens} tokens · ${fmtCost(cost)}`;
  return [line(header), ...rows.map(line), '', total].join('\n') + '\n';
}
