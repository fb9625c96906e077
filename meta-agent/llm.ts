/**
 * `llm`: a model reads the run's record and proposes one edit.
 *
 * The conversation: system = a fixed role text + the direction (`program.md`) + the answer
 * format; user = the context document (meta-agent/format.ts). The model may call read-only
 * tools over the run's history for up to `max_turns` calls; after that one last call without
 * tools asks for the answer. The answer is one JSON object (zod-validated) whose edits are
 * search/replace blocks or whole files; they are applied here to the incumbent's files so the
 * loop receives whole-file edits. An invalid answer gets ONE repair message saying exactly what
 * was wrong; a second invalid answer is a ProposalFailed.
 *
 * Every model call goes through `ctx.services.model` (the loop records it and enforces budgets;
 * its errors propagate), every tool call is recorded as a `tool` span via `ctx.services.record`.
 */
import { z } from 'zod';
import type { Block, Message, ModelRequest, ModelResponse, ToolSpec } from '../task-agent/types.ts';
import { UsageError } from '../base/errors.ts';
import { CHARS_PER_TOKEN, contextDocument, cutEnd, cutMiddle } from './format.ts';
import { ProposalFailed, type FileEdit, type Proposal, type ProposalContext, type ProposalServices, type Proposer, type RunHistory } from './types.ts';

export interface LlmSettings {
  model: string;
  /** output tokens per model call */
  max_tokens: number;
  /** model calls that may use tools; one more call without tools follows when they run out */
  max_turns: number;
  /** the context document's budget (≈ 4 characters per token) */
  context_tokens: number;
  temperature?: number;
  /** Anthropic extended thinking budget (must stay below max_tokens) */
  thinking_budget?: number;
}

/** An answer another proposer (hybrid) recognised in the model's JSON, instead of the standard shape. */
export interface ExtensionAnswer {
  hypothesis: string;
  edits: FileEdit[];
  cited_traces?: string[];
  expected_effect?: string;
  /** merged into the proposal's meta (after proposer/model/turns/repaired) */
  meta?: Record<string, unknown>;
}

/**
 * How another proposer extends the llm proposer without copying it: more context, more answer
 * instructions, and a first look at the parsed answer.
 */
export interface LlmExtension {
  /** meta.proposer of the result (default `llm`) */
  proposer?: string;
  /** sections added to the context document (before the trace digest) */
  context?: Array<{ title: string; body: string }>;
  /** appended to the system prompt's answer format */
  instructions?: string;
  /** merged into the meta of a standard answer */
  meta?: Record<string, unknown>;
  /**
   * Sees the parsed JSON object first: an answer, an error (sent back as the repair reason), or
   * undefined to validate it as a standard answer.
   */
  interpret?(value: unknown): ExtensionAnswer | { error: string } | undefined;
}

// ------------------------------------------------------------------------ prompts

export const ROLE = `You are the meta-agent of an automated research loop. Each experiment changes the editable files of a repository; a locked scorer evaluates the candidate, and only a change that beats the incumbent by more than the measured noise is kept. You propose the next experiment: one clear hypothesis, implemented as a small edit of the editable files.

You receive the study, the incumbent's editable files, the ledger of past experiments (do not repeat what was already discarded) and a digest of the incumbent's traces.`;

const TOOLS_TEXT = `Before answering you may call read-only tools to look at the run's record: read_trace (one trace as a transcript), search_traces (full-text search over task traces), list_failing_tasks (the failing tasks of an experiment), read_file (a file of the incumbent), show_diff (the diff of a past experiment). Use them to ground the hypothesis in evidence; cite the trace ids you relied on.`;

const ANSWER_FORMAT = `Answer with exactly one JSON object, in a \`\`\`json fenced block, and nothing after it:
{
  "hypothesis": "one line: what you change and why it should help",
  "cited_traces": ["ids of the traces that motivate the change"],
  "expected_effect": "what should happen to the metric, and where",
  "edits": [
    {"path": "path/of/file.py", "search": "exact text of the current file", "replace": "the text that replaces it"},
    {"path": "path/of/other.md", "content": "the whole new content of a file"}
  ]
}
Edits apply in order. A "search" text must occur exactly once in the file as it is at that point (copy it exactly, with enough surrounding lines to be unique); several blocks may edit one file. Prefer search/replace blocks; use "content" for a new file or a short file rewritten whole. Paths are relative to the repository root. Edit only editable paths.`;

const ANSWER_NOW = 'You have used all your tool calls. Answer now with the JSON object only; no more tools are available.';

// ------------------------------------------------------------------------ answer schema

const EditSchema = z
  .object({ path: z.string().min(1), search: z.string().optional(), replace: z.string().optional(), content: z.string().optional() })
  .superRefine((e, c) => {
    const sr = e.search !== undefined || e.replace !== undefined;
    if (sr && e.content !== undefined) c.addIssue({ code: 'custom', message: 'give either "search" + "replace" or "content", not both' });
    else if (sr && (e.search === undefined || e.replace === undefined)) c.addIssue({ code: 'custom', message: '"search" and "replace" go together' });
    else if (!sr && e.content === undefined) c.addIssue({ code: 'custom', message: 'give "search" + "replace" or "content"' });
    if (e.search !== undefined && e.search === '') c.addIssue({ code: 'custom', path: ['search'], message: 'must not be empty' });
  });

export const AnswerSchema = z.object({
  hypothesis: z
    .string()
    .trim()
    .min(1, 'must not be empty')
    .refine((s) => !/[\r\n]/.test(s), 'must be one line'),
  cited_traces: z.array(z.string()).default([]),
  expected_effect: z.string(),
  edits: z.array(EditSchema).min(1, 'must hold at least one edit'),
});
export type Answer = z.infer<typeof AnswerSchema>;

/** zod issues as `field: message; field: message` (the first few). */
export function describeIssues(error: z.ZodError): string {
  const shown = error.issues.slice(0, 6).map((i) => `${i.path.length > 0 ? i.path.join('.') : '(root)'}: ${i.message}`);
  if (error.issues.length > shown.length) shown.push(`and ${error.issues.length - shown.length} more`);
  return shown.join('; ');
}

// ------------------------------------------------------------------------ JSON extraction

/**
 * The answer's JSON object: the last ```json fenced block (or plain ``` block holding an object),
 * else the text from the first `{` to the last `}`. A raw newline cannot occur inside a JSON
 * string, so the first line starting with ``` after the opener closes the block even when the
 * JSON's strings contain backticks.
 */
export function extractJson(text: string): { value: unknown } | { error: string } {
  const openers = [...text.matchAll(/```(json|JSON)?[ \t]*\r?\n/g)].filter((m) => m[1] !== undefined || text.slice(m.index! + m[0].length).trimStart().startsWith('{'));
  const last = openers.at(-1);
  let candidate: string | undefined;
  if (last) {
    const start = last.index! + last[0].length;
    const close = text.slice(start).search(/\r?\n[ \t]*```/);
    candidate = close >= 0 ? text.slice(start, start + close) : text.slice(start);
  } else {
    const a = text.indexOf('{');
    const b = text.lastIndexOf('}');
    if (a < 0 || b < a) return { error: 'the answer holds no JSON object' };
    candidate = text.slice(a, b + 1);
  }
  try {
    const value: unknown = JSON.parse(candidate);
    if (typeof value !== 'object' || value === null || Array.isArray(value)) return { error: 'the JSON in the answer is not an object' };
    return { value };
  } catch (e) {
    return { error: `the JSON does not parse: ${(e as Error).message}` };
  }
}

// ------------------------------------------------------------------------ edits

/** a plain repo-relative path: not absolute, no `..`, no backslashes or NUL */
export function isPlainRelativePath(p: string): boolean {
  if (p === '' || p.startsWith('/') || /^[A-Za-z]:/.test(p) || p.includes('\\') || p.includes('\0')) return false;
  return !p.split('/').some((s) => s === '..');
}

/** `./a//b.py` → `a/b.py` (what the model writes for a path it was shown as `a/b.py`) */
function normalizePath(p: string): string {
  return p.replace(/^(\.\/)+/, '').replace(/\/{2,}/g, '/');
}

function occurrences(haystack: string, needle: string): number {
  let n = 0;
  for (let i = haystack.indexOf(needle); i >= 0; i = haystack.indexOf(needle, i + 1)) n++;
  return n;
}

const firstLine = (s: string) => {
  const line = s.split('\n').find((l) => l.trim() !== '') ?? '';
  return JSON.stringify(line.length > 120 ? `${line.slice(0, 120)}…` : line);
};

/**
 * Apply the answer's edits in order to the incumbent's files and return one whole-file edit per
 * touched path (in the order first touched). A path outside ctx.files is read from the history
 * when it is a plain path; paths that are not plain are passed through for the loop to reject.
 */
export async function applyAnswerEdits(
  edits: Answer['edits'],
  files: Record<string, string>,
  readFile: (path: string) => Promise<string | null>,
): Promise<{ edits: FileEdit[] } | { error: string }> {
  const work = new Map<string, string | null>();
  const order: string[] = [];
  for (const [i, e] of edits.entries()) {
    const path = isPlainRelativePath(e.path) ? normalizePath(e.path) : e.path;
    if (!order.includes(path)) order.push(path);
    if (e.content !== undefined) {
      work.set(path, e.content);
      continue;
    }
    if (!work.has(path)) {
      const known = Object.prototype.hasOwnProperty.call(files, path) ? files[path]! : isPlainRelativePath(path) ? await readFile(path) : null;
      work.set(path, known);
    }
    const current = work.get(path);
    const search = e.search!;
    if (current === null || current === undefined) return { error: `edits.${i} (path "${e.path}"): the file does not exist; give its whole "content" to create it` };
    const n = occurrences(current, search);
    if (n === 0) return { error: `edits.${i} (path "${e.path}"): the search text was not found in the file (as it is after the edits before it); its first line is ${firstLine(search)}. Copy the search text exactly from the file` };
    if (n > 1) return { error: `edits.${i} (path "${e.path}"): the search text occurs ${n} times in the file; its first line is ${firstLine(search)}. Include more surrounding lines so it occurs exactly once` };
    // split, not String.replace: `$&` and `$1` in the replacement must stay literal
    const at = current.indexOf(search);
    work.set(path, current.slice(0, at) + e.replace! + current.slice(at + search.length));
  }
  return { edits: order.map((path) => ({ path, content: work.get(path)! })) };
}

// ------------------------------------------------------------------------ tools

interface ToolDef {
  spec: ToolSpec;
  args: z.ZodType;
  run(args: any, history: RunHistory, limits: { chars: number; fileChars: number }): Promise<string | null> | string | null;
  /** the error text when the result is null */
  missing(args: any): string;
}

const TOOLS: ToolDef[] = [
  {
    spec: {
      name: 'read_trace',
      description: 'One trace of this run rendered as a transcript (reasoning, tool calls, errors, scorer feedback), long ones cut in the middle.',
      parameters: { type: 'object', properties: { id: { type: 'string', description: 'the trace id' } }, required: ['id'], additionalProperties: false },
    },
    args: z.object({ id: z.string().min(1) }),
    run: (a, h, l) => h.trace(a.id, l.chars),
    missing: (a) => `no trace with id "${a.id}" in this run`,
  },
  {
    spec: {
      name: 'search_traces',
      description: "Full-text search over this run's task traces; returns matching traces with a snippet each.",
      parameters: {
        type: 'object',
        properties: { query: { type: 'string', description: 'words that must all match (`a OR b`: either; a word ending in * is a prefix of 2 or more letters: `timeout*`)' }, limit: { type: 'integer', minimum: 1, maximum: 50, description: 'most results (default 10)' } },
        required: ['query'],
        additionalProperties: false,
      },
    },
    args: z.object({ query: z.string().min(1), limit: z.number().int().min(1).max(50).optional() }),
    run: (a, h, l) => {
      const hits = h.search(a.query, a.limit ?? 10);
      if (hits.length === 0) return `no traces match "${a.query}"`;
      const lines = hits.map((x) => `${x.trace_id} · task ${x.task_id} · experiment ${x.experiment_seq === null ? '—' : `#${x.experiment_seq}`}: ${x.snippet.replace(/\s+/g, ' ')}`);
      return cutEnd(lines.join('\n'), l.chars);
    },
    missing: () => 'no result',
  },
  {
    spec: {
      name: 'list_failing_tasks',
      description: "The tasks that failed in an experiment's evaluations (worst first), with their trace ids.",
      parameters: { type: 'object', properties: { seq: { type: 'integer', description: 'the experiment number' } }, required: ['seq'], additionalProperties: false },
    },
    args: z.object({ seq: z.number().int() }),
    run: (a, h, l) => {
      const tasks = h.failingTasks(a.seq);
      if (tasks.length === 0) return `experiment #${a.seq} has no failing tasks (or no evaluations)`;
      const lines = tasks.map((t) => `${t.task_id} · score ${t.score === null ? '—' : t.score} · traces: ${t.trace_ids.join(', ') || '—'}`);
      return cutEnd(lines.join('\n'), l.chars);
    },
    missing: () => 'no result',
  },
  {
    spec: {
      name: 'read_file',
      description: 'A file of the incumbent (repository-relative path), whole when it fits.',
      parameters: { type: 'object', properties: { path: { type: 'string' } }, required: ['path'], additionalProperties: false },
    },
    args: z.object({ path: z.string().min(1) }),
    run: async (a, h, l) => {
      const text = await h.readFile(a.path);
      return text === null ? null : cutMiddle(text, l.fileChars);
    },
    missing: (a) => `no readable file "${a.path}" in the incumbent`,
  },
  {
    spec: {
      name: 'show_diff',
      description: 'The diff of a past experiment against its parent.',
      parameters: { type: 'object', properties: { seq: { type: 'integer', description: 'the experiment number' } }, required: ['seq'], additionalProperties: false },
    },
    args: z.object({ seq: z.number().int() }),
    run: (a, h, l) => {
      const d = h.diff(a.seq);
      return d === null ? null : cutMiddle(d, l.chars);
    },
    missing: (a) => `no experiment #${a.seq} in this run`,
  },
];

export const LLM_TOOL_SPECS: ToolSpec[] = TOOLS.map((t) => t.spec);

/** Run one tool call; every failure becomes an error result for the model, never an exception. */
async function runTool(use: Extract<Block, { type: 'tool_use' }>, history: RunHistory, services: ProposalServices, limits: { chars: number; fileChars: number }): Promise<Extract<Block, { type: 'tool_result' }>> {
  const started = Date.now();
  let content: string;
  let isError = false;
  const tool = TOOLS.find((t) => t.spec.name === use.name);
  if (!tool) {
    content = `unknown tool "${use.name}"; the tools are: ${TOOLS.map((t) => t.spec.name).join(', ')}`;
    isError = true;
  } else if (use.raw_input !== undefined) {
    content = `the arguments are not a JSON object: ${cutEnd(use.raw_input, 200)}`;
    isError = true;
  } else {
    const parsed = tool.args.safeParse(use.input ?? {});
    if (!parsed.success) {
      content = `bad arguments for ${use.name}: ${describeIssues(parsed.error)}`;
      isError = true;
    } else {
      try {
        const out = await tool.run(parsed.data, history, limits);
        if (out === null) {
          content = tool.missing(parsed.data);
          isError = true;
        } else content = out === '' ? '(empty)' : out; // an empty tool_result is not accepted everywhere
      } catch (e) {
        // e.g. a full-text query the index cannot parse: the model can rephrase
        content = `${use.name} failed: ${(e as Error)?.message ?? String(e)}`;
        isError = true;
      }
    }
  }
  services.record({
    kind: 'tool',
    name: use.name,
    status: isError ? 'error' : 'ok',
    started_at: started,
    ended_at: Date.now(),
    input: use.raw_input ?? use.input,
    output: content,
    error: isError ? content : null,
    attributes: { tool_use_id: use.id },
  });
  return { type: 'tool_result', tool_use_id: use.id, content, ...(isError ? { is_error: true } : {}) };
}

// ------------------------------------------------------------------------ conversation helpers

const textOf = (content: Block[]) => content.flatMap((b) => (b.type === 'text' ? [b.text] : [])).join('\n');

/**
 * The conversation as plain text turns, for the calls made without tools (the last answer, the
 * repair): the Anthropic API wants tools declared whenever tool blocks are present, and some
 * OpenAI-compatible servers reject tool messages without tools. Thinking blocks are dropped
 * (they only have to be sent back within a tool-use turn).
 */
export function flattenConversation(messages: Message[]): Message[] {
  const names = new Map<string, string>();
  const out: Message[] = [];
  for (const m of messages) {
    const parts: string[] = [];
    for (const b of m.content) {
      if (b.type === 'text' && b.text !== '') parts.push(b.text);
      else if (b.type === 'tool_use') {
        names.set(b.id, b.name);
        parts.push(`[tool call: ${b.name} ${b.raw_input ?? JSON.stringify(b.input ?? {})}]`);
      } else if (b.type === 'tool_result') parts.push(`[${b.is_error ? 'error from' : 'result of'} ${names.get(b.tool_use_id) ?? 'tool'}]\n${b.content}`);
    }
    const text = parts.join('\n\n') || (m.role === 'assistant' ? '(no text)' : '(empty)');
    const prev = out.at(-1);
    // two turns of one role in a row (e.g. an assistant turn that held only thinking) merge
    if (prev && prev.role === m.role) (prev.content[0] as { text: string }).text += `\n\n${text}`;
    else out.push({ role: m.role, content: [{ type: 'text', text }] });
  }
  return out;
}

function oneLine(s: string, max = 400): string {
  const t = s.replace(/\s+/g, ' ').trim();
  return t.length > max ? `${t.slice(0, max - 1)}…` : t;
}

// ------------------------------------------------------------------------ the proposer

export class LlmProposer implements Proposer {
  readonly name = 'llm';

  constructor(readonly settings: LlmSettings) {
    // settings come from the study file: a bad one is the user's to fix, named by its field
    const bad = (what: string) => {
      throw new UsageError(`field \`proposer.${what}`);
    };
    if (!settings.model) bad('model`: required');
    if (!(Number.isInteger(settings.max_tokens) && settings.max_tokens > 0)) bad('max_tokens`: must be a positive integer');
    if (!(Number.isInteger(settings.max_turns) && settings.max_turns >= 0)) bad('max_turns`: must be an integer >= 0');
    if (!(settings.context_tokens > 0)) bad('context_tokens`: must be positive');
    if (settings.thinking_budget !== undefined && settings.thinking_budget >= settings.max_tokens) {
      bad(`thinking_budget\`: ${settings.thinking_budget} must be below \`max_tokens\` (${settings.max_tokens}); raise max_tokens or lower thinking_budget`);
    }
  }

  async propose(ctx: ProposalContext, ext: LlmExtension = {}): Promise<Proposal> {
    const { services, history } = ctx;
    if (!services || !history) throw new Error("the llm proposer needs the loop's services (ctx.services and ctx.history); it cannot run outside a run");
    const s = this.settings;
    const tools = s.max_turns > 0 ? LLM_TOOL_SPECS : [];
    const system = [ROLE, ctx.program?.trim() ? (ctx.program.trim().startsWith('#') ? ctx.program.trim() : `# Direction\n\n${ctx.program.trim()}`) : '', s.max_turns > 0 ? TOOLS_TEXT : '', `# Answer format\n\n${ANSWER_FORMAT}`, ext.instructions ?? '']
      .filter((x) => x !== '')
      .join('\n\n');
    const doc = contextDocument(ctx, (tokens) => history.digest(tokens), { context_tokens: s.context_tokens, extra: ext.context });
    const budgetChars = s.context_tokens * CHARS_PER_TOKEN;
    const limits = { chars: Math.min(40_000, Math.max(2_000, Math.floor(budgetChars / 4))), fileChars: Math.max(4_000, Math.floor(budgetChars / 2)) };

    let turns = 0;
    const call = async (messages: Message[], withTools: ToolSpec[], name: string): Promise<ModelResponse> => {
      ctx.signal?.throwIfAborted();
      const req: Omit<ModelRequest, 'provider'> = { model: s.model, system, messages, tools: withTools, max_tokens: s.max_tokens };
      if (s.temperature !== undefined) req.temperature = s.temperature;
      if (s.thinking_budget !== undefined) req.thinking_budget = s.thinking_budget;
      turns++;
      return services.model(req, name);
    };

    const messages: Message[] = [{ role: 'user', content: [{ type: 'text', text: doc }] }];
    let answer: ModelResponse | undefined;
    for (let turn = 1; turn <= s.max_turns && !answer; turn++) {
      const res = await call(messages, tools, `propose turn ${turn}`);
      messages.push({ role: 'assistant', content: res.content });
      const uses = res.content.filter((b): b is Extract<Block, { type: 'tool_use' }> => b.type === 'tool_use');
      if (uses.length === 0) {
        answer = res;
        break;
      }
      const results: Block[] = [];
      for (const u of uses) results.push(await runTool(u, history, services, limits));
      messages.push({ role: 'user', content: results });
    }
    if (!answer) {
      // tools ran out (or max_turns is 0): one call without tools for the answer
      if (messages.length > 1) messages.push({ role: 'user', content: [{ type: 'text', text: ANSWER_NOW }] });
      answer = await call(flattenConversation(messages), [], 'propose answer');
      messages.push({ role: 'assistant', content: answer.content });
    }

    let outcome = await this.read(answer, ctx, history, ext);
    let repaired = false;
    if ('error' in outcome) {
      const repair = `Your answer could not be used: ${outcome.error}.\nReply with the corrected JSON object only: the whole object in one \`\`\`json block, nothing else.`;
      messages.push({ role: 'user', content: [{ type: 'text', text: repair }] });
      const res = await call(flattenConversation(messages), [], 'repair');
      outcome = await this.read(res, ctx, history, ext);
      repaired = true;
      if ('error' in outcome) throw new ProposalFailed(`llm proposer: the answer was still invalid after one repair: ${oneLine(outcome.error)}`);
    }

    const a = outcome.answer;
    const cited = [...new Set(a.cited_traces ?? [])];
    const known = cited.filter((id) => history.hasTrace(id));
    const unknown = cited.filter((id) => !history.hasTrace(id));
    const meta: Record<string, unknown> = { proposer: ext.proposer ?? 'llm', model: s.model, turns, repaired };
    if (unknown.length > 0) meta.unknown_citations = unknown;
    Object.assign(meta, outcome.standard ? ext.meta : undefined, a.meta);
    const proposal: Proposal = { hypothesis: a.hypothesis, edits: a.edits, cited: known, meta };
    if (a.expected_effect !== undefined) proposal.expected_effect = a.expected_effect;
    return proposal;
  }

  /** One response → a usable answer, or the exact reason it is not (the repair message's text). */
  private async read(res: ModelResponse, ctx: ProposalContext, history: RunHistory, ext: LlmExtension): Promise<{ answer: ExtensionAnswer; standard: boolean } | { error: string }> {
    if (res.stop_reason === 'max_tokens') {
      return { error: `the answer was cut off at the ${this.settings.max_tokens}-token output limit before it was complete; answer more compactly (search/replace blocks instead of whole files, no text outside the JSON)` };
    }
    const found = extractJson(textOf(res.content));
    if ('error' in found) return found;
    const special = ext.interpret?.(found.value);
    if (special) return 'error' in special ? special : { answer: special, standard: false };
    const parsed = AnswerSchema.safeParse(found.value);
    if (!parsed.success) return { error: `the JSON does not match the answer format: ${describeIssues(parsed.error)}` };
    const applied = await applyAnswerEdits(parsed.data.edits, ctx.files, (p) => history.readFile(p));
    if ('error' in applied) return applied;
    const d = parsed.data;
    return { answer: { hypothesis: d.hypothesis, edits: applied.edits, cited_traces: d.cited_traces, expected_effect: d.expected_effect }, standard: true };
  }
}
