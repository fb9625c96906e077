/**
 * The context document a model-based proposer reads: the study, the incumbent's editable files,
 * the ledger, this round's other proposals and the trace digest, within one character budget.
 *
 * Budget (≈ 4 characters per token of `context_tokens`): the study header, the ledger (at most a
 * fifth) and the round come first because they are small and stop the model repeating itself;
 * the files get up to half of what is left and the digest the rest. Whatever is cut says so with
 * a `[… N characters cut …]` marker, so the model knows to ask a tool for the rest instead of
 * assuming the text ends there.
 */
import type { LedgerEntry, ProposalContext } from './types.ts';

/** characters per token, the estimate used for every budget here */
export const CHARS_PER_TOKEN = 4;
/** experiments of the ledger shown in full; older ones get one line each */
export const LEDGER_FULL = 12;

// ---------------------------------------------------------------------------------------------
// cutting text, every cut marked

export function cutMarker(n: number): string {
  return `[… ${n} characters cut …]`;
}
const marker = cutMarker;
const isHigh = (c: number) => c >= 0xd800 && c <= 0xdbff;
const isLow = (c: number) => c >= 0xdc00 && c <= 0xdfff;

/** `text` unchanged when it fits, else its head and tail around a marker naming how many characters were cut; never longer than `max`. */
export function cutMiddle(text: string, max: number, headShare = 0.5): string {
  if (text.length <= max) return text;
  max = Math.max(0, Math.floor(max));
  const assemble = (h: number, t: number) => {
    const head = text.slice(0, h);
    const tail = text.slice(text.length - t);
    const sep1 = h === 0 || head.endsWith('\n') ? '' : '\n';
    const sep2 = t === 0 || tail.startsWith('\n') ? '' : '\n';
    return `${head}${sep1}${marker(text.length - h - t)}${sep2}${tail}`;
  };
  // room for the text itself once the marker and its line breaks are paid for
  const keep = Math.max(0, max - marker(text.length).length - 2);
  let h = Math.floor(keep * headShare);
  let t = keep - h;
  // prefer whole lines when that loses little
  const nl = text.lastIndexOf('\n', h - 1);
  if (h > 0 && nl >= 0 && nl + 1 >= h * 0.75) h = nl + 1;
  const start = text.indexOf('\n', text.length - t);
  if (t > 0 && start >= 0 && text.length - (start + 1) >= t * 0.75) t = text.length - (start + 1);
  const fix = () => {
    if (h > 0 && isHigh(text.charCodeAt(h - 1))) h--;
    if (t > 0 && isLow(text.charCodeAt(text.length - t))) t--;
  };
  fix();
  let out = assemble(h, t);
  while (out.length > max && h + t > 0) {
    if (t >= h) t--;
    else h--;
    fix();
    out = assemble(h, t);
  }
  if (out.length > max) return max >= 3 ? '[…]' : '';
  return out;
}

/** the end of `text` (output tails: the last lines matter), the cut marked at the start; never longer than `max` */
export function cutHead(text: string, max: number): string {
  if (text.length <= max) return text;
  return cutMiddle(text, max, 0);
}


/** At most `max` characters, cut at the end (lists where the first lines matter most). */
export function cutEnd(text: string, max: number): string {
  if (text.length <= max) return text;
  const marker = (n: number) => `\n${cutMarker(n)}`;
  const keep = Math.max(0, max - marker(text.length).length);
  return text.slice(0, keep) + marker(text.length - keep);
}

function num(x: number | undefined): string {
  if (x === undefined || !Number.isFinite(x)) return '—';
  return Math.abs(x) >= 1e4 || (x !== 0 && Math.abs(x) < 1e-3) ? x.toExponential(3) : String(Number(x.toPrecision(6)));
}

function signed(x: number | undefined): string {
  if (x === undefined || !Number.isFinite(x)) return '—';
  return (x >= 0 ? '+' : '') + num(x);
}

const oneLine = (s: string | undefined) => (s ?? '').replace(/\s+/g, ' ').trim();

/** One experiment in full: everything the ledger knows about why it was decided so. */
export function formatLedgerEntry(e: LedgerEntry): string {
  const lines = [`#${e.seq} · ${e.proposer ?? '?'} · ${e.decision}`];
  lines.push(`  hypothesis: ${oneLine(e.hypothesis) || '(none)'}`);
  lines.push(`  metric: ${num(e.metric)} · improvement: ${signed(e.improvement)}`);
  if (e.reason) lines.push(`  reason: ${oneLine(e.reason)}`);
  return lines.join('\n');
}

/** One experiment in one line (older experiments). */
export function summarizeLedgerEntry(e: LedgerEntry): string {
  const line = `#${e.seq} ${e.proposer ?? '?'} ${e.decision} metric=${num(e.metric)} Δ=${signed(e.improvement)}: ${oneLine(e.hypothesis)}`;
  return line.length > 200 ? `${line.slice(0, 199)}…` : line;
}

/**
 * The ledger: the last `LEDGER_FULL` experiments in full, older ones summarised one line each;
 * when even that exceeds `maxChars`, the oldest summary lines are dropped with a count.
 */
export function formatLedger(ledger: LedgerEntry[], maxChars: number): string {
  if (ledger.length === 0) return '(no experiments yet)';
  const older = ledger.slice(0, Math.max(0, ledger.length - LEDGER_FULL));
  const recent = ledger.slice(older.length);
  const full = recent.map(formatLedgerEntry).join('\n');
  let summary = older.map(summarizeLedgerEntry);
  const total = () => summary.join('\n').length + full.length + 64;
  let dropped = 0;
  // drop the oldest one-liners first: the recent past says more about the incumbent
  while (summary.length > 0 && total() > maxChars) {
    summary = summary.slice(1);
    dropped++;
  }
  const parts: string[] = [];
  if (dropped > 0) parts.push(`[… ${dropped} older experiments omitted …]`);
  if (summary.length > 0) parts.push(`Older experiments (one line each):\n${summary.join('\n')}`);
  parts.push(`${older.length > 0 ? 'Most recent experiments' : 'Experiments'} (oldest first):\n${full}`);
  return cutMiddle(parts.join('\n\n'), maxChars);
}

/** A code fence longer than any backtick run inside `text`, so file contents cannot close it. */
function fenceFor(text: string): string {
  let longest = 0;
  for (const m of text.matchAll(/`{3,}/g)) longest = Math.max(longest, m[0].length);
  return '`'.repeat(Math.max(3, longest + 1));
}

/**
 * The editable files within `maxChars`: small files whole, the budget left shared evenly among
 * the larger ones (each cut in the middle with a marker), in path order.
 */
export function formatFiles(files: Record<string, string>, maxChars: number): string {
  const paths = Object.keys(files).sort();
  if (paths.length === 0) return '(no editable files)';
  const overhead = (p: string) => p.length + 48;
  const allowed = new Map<string, number>();
  let left = Math.max(0, maxChars - paths.reduce((n, p) => n + overhead(p), 0));
  // water-filling: files smaller than an even share keep everything; the rest split what remains
  const bySize = [...paths].sort((a, b) => files[a]!.length - files[b]!.length);
  for (let i = 0; i < bySize.length; i++) {
    const p = bySize[i]!;
    const share = Math.floor(left / (bySize.length - i));
    const take = Math.min(files[p]!.length, share);
    allowed.set(p, take);
    left -= take;
  }
  return paths
    .map((p) => {
      const text = files[p]!;
      const shown = cutMiddle(text, allowed.get(p)!);
      const fence = fenceFor(shown);
      const note = shown.length < text.length ? `, cut to fit: read_file "${p}" gives it whole` : '';
      // a file's own final newline ends the fenced text; no blank line is added before the fence
      return `### ${p} (${text.length} characters${note})\n${fence}\n${shown}${shown.endsWith('\n') ? '' : '\n'}${fence}`;
    })
    .join('\n\n');
}

/** The study in a few lines. */
export function formatStudy(ctx: ProposalContext): string {
  const lines = [
    `kind: ${ctx.kind ?? 'unknown'}`,
    `metric: ${ctx.metric.name} (${ctx.metric.direction === 'maximize' ? 'higher is better' : 'lower is better'})`,
    `editable paths: ${ctx.editable.join(', ') || '(none)'}`,
  ];
  if (ctx.incumbent) lines.push(`incumbent: experiment #${ctx.incumbent.seq}, metric ${num(ctx.incumbent.metric)}`);
  if (ctx.seq !== undefined) lines.push(`this proposal becomes experiment #${ctx.seq}`);
  return lines.join('\n');
}

export interface ContextDocOptions {
  /** the whole document's budget in tokens (≈ 4 characters each) */
  context_tokens: number;
  /** extra sections (the hybrid proposer's knob state), placed before the digest */
  extra?: Array<{ title: string; body: string }>;
}

/**
 * The user message of a proposal conversation. The digest is asked for with the tokens the other
 * sections left (never more than `context_tokens`) and cut again if the history overshoots.
 */
export function contextDocument(ctx: ProposalContext, digest: (tokens: number) => string, opts: ContextDocOptions): string {
  const budget = Math.max(1000, Math.floor(opts.context_tokens * CHARS_PER_TOKEN));
  const section = (title: string, body: string) => `## ${title}\n\n${body}`;
  const head: string[] = [section('Study', formatStudy(ctx))];
  head.push(section('Ledger', formatLedger(ctx.ledger, Math.floor(budget / 5))));
  if (ctx.round && ctx.round.length > 0) {
    const list = ctx.round.map((p) => `- ${oneLine(p.hypothesis)}`).join('\n');
    head.push(section('Already proposed this round (from the same incumbent): propose something different', cutEnd(list, Math.floor(budget / 20))));
  }
  if (ctx.notes && ctx.notes.length > 0) {
    const list = ctx.notes.map((n) => `- ${oneLine(n)}`).join('\n');
    head.push(section('Your last proposals that made no experiment (do not repeat them)', cutEnd(list, Math.floor(budget / 20))));
  }
  for (const x of opts.extra ?? []) head.push(section(x.title, cutMiddle(x.body, Math.floor(budget / 8))));
  const closing = 'Propose exactly one experiment now, as the JSON object described in your instructions.';
  const used = head.reduce((n, s) => n + s.length + 2, 0) + closing.length + 64;
  const rest = Math.max(0, budget - used);
  const fileSection = section('Editable files of the incumbent', formatFiles(ctx.files, Math.floor(rest / 2)));
  const digestChars = Math.max(0, rest - fileSection.length - 40);
  const digestTokens = Math.min(opts.context_tokens, Math.floor(digestChars / CHARS_PER_TOKEN));
  const digestText = digestTokens > 0 ? cutMiddle(digest(digestTokens), digestChars) : '(no room left for the trace digest: the files filled the budget)';
  return [...head, fileSection, section('Trace digest of the incumbent', digestText || '(empty)'), closing].join('\n\n');
}
