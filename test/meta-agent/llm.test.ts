import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { createProvider } from '../../task-agent/providers/index.ts';
import type { ModelRequest, Provider } from '../../task-agent/types.ts';
import { LlmProposer, extractJson, type LlmSettings } from '../../meta-agent/llm.ts';
import { UsageError } from '../../base/errors.ts';
import { HybridProposer } from '../../meta-agent/hybrid.ts';
import { SearchProposer, describeSearchState, readKnobMeta, seededRandom } from '../../meta-agent/search/index.ts';
import {
  ProposalBudgetExceeded,
  ProposalFailed,
  type LedgerEntry,
  type Proposal,
  type ProposalContext,
  type ProposalServices,
  type ProposalSpan,
  type Proposer,
  type RunHistory,
} from '../../meta-agent/types.ts';
import {
  anthropicBlocks,
  anthropicMessage,
  anthropicText,
  anthropicToolUse,
  openaiCompletion,
  openaiText,
  openaiToolCall,
  startMockAnthropic,
  startMockOpenAI,
  type MockServer,
  type Script,
} from '../helpers/mock-llm.ts';

// ---------------------------------------------------------------- fixtures

const PROMPT = 'You are a careful math agent.\nThink step by step.\nAnswer with a number only.\n';
const CONFIG = 'TEMPERATURE = 0.7  # sampling temperature\nMAX_STEPS = 8  # tool-loop turns\n';
const FILES = { 'agent/prompt.md': PROMPT, 'agent/config.py': CONFIG };
const PROGRAM = 'DIRECTION: fix the failure that repeats most across tasks.';
const DIGEST = 'DIGEST: task t7 failed (tr-1): the agent answered "12 km" instead of 12.';
const TRACES: Record<string, string> = {
  'tr-1': 'TRANSCRIPT tr-1: user asked for a distance; agent answered "12 km"; scorer: expected a bare number',
  'tr-2': 'TRANSCRIPT tr-2: agent divided by zero in the calculator tool',
};

class FakeHistory implements RunHistory {
  digestCalls: number[] = [];
  traceCalls: Array<{ id: string; maxChars?: number }> = [];
  diff(seq: number): string | null {
    return seq === 1 ? '--- a/agent/prompt.md\n+++ b/agent/prompt.md\n-Answer briefly.\n+Answer with a number only.' : null;
  }
  failingTasks(seq: number) {
    return seq === 1 ? [{ task_id: 't7', score: 0, trace_ids: ['tr-1'] }] : [];
  }
  trace(id: string, maxChars?: number): string | null {
    this.traceCalls.push({ id, maxChars });
    return TRACES[id] ?? null;
  }
  search(query: string, limit?: number) {
    if (query === 'AND OR') throw new Error('fts5: syntax error near "OR"');
    return [{ trace_id: 'tr-2', task_id: 't9', experiment_seq: 1, snippet: `…a ${query} in the calculator…` }].slice(0, limit ?? 10);
  }
  async readFile(path: string): Promise<string | null> {
    return path === 'agent/notes.md' ? 'NOTES: units confuse the scorer' : null;
  }
  digest(tokens: number): string {
    this.digestCalls.push(tokens);
    return DIGEST;
  }
  hasTrace(id: string): boolean {
    return id in TRACES;
  }
}

const LEDGER: LedgerEntry[] = [
  { seq: 0, hypothesis: 'baseline', decision: 'baseline', metric: 0.6, proposer: 'baseline' },
  { seq: 1, hypothesis: 'demand a bare number in the prompt', decision: 'kept', metric: 0.65, improvement: 0.05, proposer: 'llm', reason: 'beat the incumbent by 0.05 (noise 0.01)' },
  { seq: 2, hypothesis: 'raise TEMPERATURE to 1.0', decision: 'discarded', metric: 0.61, improvement: -0.04, proposer: 'llm', reason: 'worse than the incumbent' },
];

/** The loop's services, as a test double over a real provider: records model spans, counts spend. */
function servicesFor(provider: Provider) {
  const spans: ProposalSpan[] = [];
  const names: string[] = [];
  let tokens = 0;
  let dollars = 0;
  const services: ProposalServices = {
    async model(req, name = 'model') {
      names.push(name);
      const started = Date.now();
      const res = await provider.call({ ...req, provider: provider.name } as ModelRequest);
      tokens += res.usage.input_tokens + res.usage.output_tokens;
      dollars += res.cost_usd;
      spans.push({ kind: 'model', name, status: 'ok', started_at: started, ended_at: Date.now(), input: req, output: res.content });
      return res;
    },
    record(span) {
      spans.push(span);
    },
    spent: () => ({ tokens, dollars }),
  };
  return { services, spans, names };
}

const SETTINGS: LlmSettings = { model: 'claude-test', max_tokens: 2048, max_turns: 4, context_tokens: 8000, temperature: 0.3 };

function context(extra: Partial<ProposalContext> = {}): ProposalContext {
  return {
    files: { ...FILES },
    editable: ['agent/**'],
    knobs: [],
    metric: { name: 'accuracy', direction: 'maximize' },
    ledger: LEDGER,
    random: seededRandom(7),
    seen: new Set(),
    seq: 3,
    kind: 'harness',
    runId: 'run-1',
    incumbent: { seq: 1, commit: 'abc123', metric: 0.65 },
    program: PROGRAM,
    round: [],
    ...extra,
  };
}

interface Outcome {
  proposal?: Proposal | null;
  error?: unknown;
  server: MockServer;
  spans: ProposalSpan[];
  names: string[];
  history: FakeHistory;
}

/** Runs one proposal against a scripted server of the given flavour, with a real provider. */
async function propose(
  flavor: 'anthropic' | 'openai',
  script: Script,
  opts: { settings?: Partial<LlmSettings>; ctx?: Partial<ProposalContext>; make?: (s: LlmSettings) => Proposer } = {},
): Promise<Outcome> {
  const server = flavor === 'anthropic' ? await startMockAnthropic(script) : await startMockOpenAI(script);
  try {
    const env = flavor === 'anthropic' ? { ANTHROPIC_API_KEY: 'test', ANTHROPIC_BASE_URL: server.url } : { OPENAI_API_KEY: 'test', OPENAI_BASE_URL: server.baseURL };
    const provider = createProvider(flavor, { env, retry: { max_retries: 0, timeout_ms: 10_000 } });
    const { services, spans, names } = servicesFor(provider);
    const history = new FakeHistory();
    const settings = { ...SETTINGS, ...(flavor === 'openai' ? { model: 'gpt-test' } : {}), ...opts.settings };
    const proposer = opts.make ? opts.make(settings) : new LlmProposer(settings);
    const ctx = context({ history, services, ...opts.ctx });
    try {
      return { proposal: await proposer.propose(ctx), server, spans, names, history };
    } catch (error) {
      return { error, server, spans, names, history };
    }
  } finally {
    await server.close();
  }
}

const fenced = (obj: unknown, before = 'I read the failing traces first.') => `${before}\n\n\`\`\`json\n${JSON.stringify(obj, null, 2)}\n\`\`\`\n`;

const GOOD = {
  hypothesis: 'Tell the agent to drop units from the final answer (t7 answered "12 km")',
  cited_traces: ['tr-1'],
  expected_effect: 'tasks with unit-bearing answers flip to pass; accuracy +0.03',
  edits: [{ path: 'agent/prompt.md', search: 'Answer with a number only.', replace: 'Answer with a bare number only: no units, no words.' }],
};
const GOOD_PROMPT = PROMPT.replace('Answer with a number only.', 'Answer with a bare number only: no units, no words.');

/** the text of every block of a recorded Anthropic request's last message */
function lastAnthropicMessage(body: any): any[] {
  const m = body.messages.at(-1);
  return typeof m.content === 'string' ? [{ type: 'text', text: m.content }] : m.content;
}
const firstUserText = (body: any): string => {
  const c = body.messages[0].content;
  return typeof c === 'string' ? c : c.map((b: any) => b.text ?? '').join('');
};

// ---------------------------------------------------------------- parsing

describe('llm proposer: answers', () => {
  test('fenced JSON with a search/replace block becomes a whole-file edit; request carries role, direction, tools, digest', async () => {
    const o = await propose('anthropic', [anthropicText(fenced(GOOD))]);
    assert.equal(o.error, undefined, String(o.error));
    const p = o.proposal!;
    assert.equal(p.hypothesis, GOOD.hypothesis);
    assert.deepEqual(p.edits, [{ path: 'agent/prompt.md', content: GOOD_PROMPT }]);
    assert.deepEqual(p.cited, ['tr-1']);
    assert.equal(p.expected_effect, GOOD.expected_effect);
    assert.deepEqual(p.meta, { proposer: 'llm', model: 'claude-test', turns: 1, repaired: false });

    assert.equal(o.server.requests.length, 1);
    const body = o.server.requests[0]!.body;
    const system = typeof body.system === 'string' ? body.system : body.system.map((b: any) => b.text).join('');
    assert.match(system, /meta-agent of an automated research loop/);
    assert.ok(system.includes(PROGRAM), 'the direction text is in the system prompt');
    assert.deepEqual(body.tools.map((t: any) => t.name).sort(), ['list_failing_tasks', 'read_file', 'read_trace', 'search_traces', 'show_diff']);
    assert.equal(body.tools.find((t: any) => t.name === 'read_trace').input_schema.required[0], 'id');
    assert.equal(body.max_tokens, 2048);
    assert.equal(body.temperature, 0.3);
    const doc = firstUserText(body);
    assert.ok(doc.includes(DIGEST), 'the trace digest is in the context document');
    assert.ok(doc.includes(PROMPT) && doc.includes(CONFIG), 'the editable files are shown in full');
    assert.match(doc, /metric: accuracy \(higher is better\)/);
    assert.match(doc, /editable paths: agent\/\*\*/);
    assert.match(doc, /#2 · llm · discarded/);
    assert.match(doc, /reason: worse than the incumbent/);
    assert.ok(o.history.digestCalls.length === 1 && o.history.digestCalls[0]! <= SETTINGS.context_tokens && o.history.digestCalls[0]! > 0);
  });

  test('a bare JSON object with several blocks on one file (applied in order, `$` kept literal) and a new whole file', async () => {
    const answer = {
      hypothesis: 'Cap steps lower and add a units note',
      expected_effect: 'fewer runaway loops',
      edits: [
        { path: 'agent/config.py', search: 'MAX_STEPS = 8', replace: 'MAX_STEPS = 6' },
        { path: 'agent/config.py', search: 'MAX_STEPS = 6  #', replace: 'MAX_STEPS = 5  # cost $& $1 —' },
        { path: './agent/units.md', content: 'Never print units.\n' },
      ],
    };
    const o = await propose('anthropic', [anthropicText(`Proposal: ${JSON.stringify(answer)} — done.`)]);
    assert.equal(o.error, undefined, String(o.error));
    assert.deepEqual(o.proposal!.edits, [
      { path: 'agent/config.py', content: 'TEMPERATURE = 0.7  # sampling temperature\nMAX_STEPS = 5  # cost $& $1 — tool-loop turns\n' },
      { path: 'agent/units.md', content: 'Never print units.\n' },
    ]);
    assert.deepEqual(o.proposal!.cited, [], 'cited_traces defaults to none');
  });

  test('the last fenced json block wins, and backtick fences inside JSON strings do not end it', async () => {
    const draft = { ...GOOD, hypothesis: 'draft, not this one' };
    const final = { ...GOOD, edits: [{ path: 'agent/prompt.md', search: 'Think step by step.', replace: 'Think step by step.\nExample:\n```\n12\n```' }] };
    const o = await propose('anthropic', [anthropicText(`${fenced(draft, 'Draft:')}\nOn reflection:\n${fenced(final, '')}`)]);
    assert.equal(o.error, undefined, String(o.error));
    assert.equal(o.proposal!.hypothesis, GOOD.hypothesis);
    assert.equal(o.proposal!.edits[0]!.content, PROMPT.replace('Think step by step.', 'Think step by step.\nExample:\n```\n12\n```'));
    assert.deepEqual(extractJson('no json here'), { error: 'the answer holds no JSON object' });
  });

  test('OpenAI wire format: a tool call, its result as a role:tool message, then the answer', async () => {
    const o = await propose('openai', [openaiToolCall('read_trace', '{"id":"tr-1"}', 'call_abc'), openaiText(fenced(GOOD))]);
    assert.equal(o.error, undefined, String(o.error));
    assert.deepEqual(o.proposal!.edits, [{ path: 'agent/prompt.md', content: GOOD_PROMPT }]);
    assert.equal(o.server.requests.length, 2);
    const first = o.server.requests[0]!.body;
    assert.equal(first.model, 'gpt-test');
    assert.equal(first.messages[0].role, 'system');
    assert.ok(first.messages[0].content.includes(PROGRAM));
    assert.ok(first.messages[1].content.includes(DIGEST));
    assert.ok(first.tools.some((t: any) => t.function.name === 'search_traces'));
    const tool = o.server.requests[1]!.body.messages.find((m: any) => m.role === 'tool');
    assert.equal(tool.tool_call_id, 'call_abc');
    assert.equal(tool.content, TRACES['tr-1']);
    assert.equal((o.proposal!.meta as any).turns, 2);
  });

  test('a path that is not plain is passed through for the loop to reject; the proposer does not filter by editable', async () => {
    const answer = { ...GOOD, edits: [{ path: '../outside.py', content: 'x = 1\n' }, { path: 'README.md', content: 'hi\n' }] };
    const o = await propose('anthropic', [anthropicText(fenced(answer))]);
    assert.equal(o.error, undefined, String(o.error));
    assert.deepEqual(o.proposal!.edits, [
      { path: '../outside.py', content: 'x = 1\n' },
      { path: 'README.md', content: 'hi\n' },
    ]);
  });

  test('a search block on a file outside ctx.files reads it from the history', async () => {
    const answer = { ...GOOD, edits: [{ path: 'agent/notes.md', search: 'units', replace: 'unit suffixes' }] };
    const o = await propose('anthropic', [anthropicText(fenced(answer))]);
    assert.equal(o.error, undefined, String(o.error));
    assert.deepEqual(o.proposal!.edits, [{ path: 'agent/notes.md', content: 'NOTES: unit suffixes confuse the scorer' }]);
  });

  test('cited ids the run does not know are dropped to meta.unknown_citations', async () => {
    const o = await propose('anthropic', [anthropicText(fenced({ ...GOOD, cited_traces: ['tr-1', 'tr-404', 'tr-2', 'made-up'] }))]);
    assert.deepEqual(o.proposal!.cited, ['tr-1', 'tr-2']);
    assert.deepEqual((o.proposal!.meta as any).unknown_citations, ['tr-404', 'made-up']);
  });

  test('without the loop services it refuses with a clear error', async () => {
    await assert.rejects(new LlmProposer(SETTINGS).propose(context()), /needs the loop's services/);
  });

  test('settings a study cannot run with are a usage error naming the field', () => {
    assert.throws(() => new LlmProposer({ ...SETTINGS, thinking_budget: 4096 }), (e: unknown) => e instanceof UsageError && /proposer\.thinking_budget/.test((e as Error).message));
    assert.throws(() => new LlmProposer({ ...SETTINGS, max_turns: -1 }), /proposer\.max_turns/);
  });

  test('errors of the services (budget) propagate', async () => {
    const history = new FakeHistory();
    const services: ProposalServices = {
      async model() {
        throw new ProposalBudgetExceeded('proposal token budget (1000) spent');
      },
      record() {},
      spent: () => ({ tokens: 0, dollars: 0 }),
    };
    await assert.rejects(new LlmProposer(SETTINGS).propose(context({ history, services })), (e: unknown) => e instanceof ProposalBudgetExceeded && /1000/.test((e as Error).message));
  });
});

// ---------------------------------------------------------------- repair

describe('llm proposer: repair', () => {
  test('an answer failing validation gets one repair message naming the problem; the repaired answer is used', async () => {
    const bad = { hypothesis: 'line one\nline two', expected_effect: 'x', edits: [] };
    const o = await propose('anthropic', [anthropicText(fenced(bad)), anthropicText(fenced(GOOD))]);
    assert.equal(o.error, undefined, String(o.error));
    assert.equal(o.server.requests.length, 2);
    const repair = lastAnthropicMessage(o.server.requests[1]!.body).map((b) => b.text).join('');
    assert.match(repair, /could not be used/);
    assert.match(repair, /hypothesis: must be one line/);
    assert.match(repair, /edits: must hold at least one edit/);
    assert.match(repair, /corrected JSON object only/);
    assert.deepEqual(o.server.requests[1]!.body.tools ?? [], [], 'the repair call offers no tools');
    // the model sees its own invalid answer before the repair message
    assert.ok(JSON.stringify(o.server.requests[1]!.body.messages).includes('line two'));
    assert.deepEqual(o.proposal!.meta, { proposer: 'llm', model: 'claude-test', turns: 2, repaired: true });
    assert.deepEqual(o.names, ['propose turn 1', 'repair']);
  });

  test('no JSON at all, then still invalid: ProposalFailed with a one-line reason, after exactly one repair', async () => {
    const o = await propose('anthropic', [anthropicText('I think we should lower the temperature.'), anthropicText(fenced({ hypothesis: 'h', edits: [{ path: 'a.py' }] }))]);
    assert.ok(o.error instanceof ProposalFailed, String(o.error));
    const msg = (o.error as Error).message;
    assert.doesNotMatch(msg, /\n/);
    assert.match(msg, /still invalid after one repair/);
    assert.match(msg, /expected_effect/);
    assert.match(msg, /edits\.0/);
    assert.equal(o.server.requests.length, 2);
    assert.match(lastAnthropicMessage(o.server.requests[1]!.body)[0].text, /holds no JSON object/);
  });

  test('a truncated answer (stop max_tokens) is repaired', async () => {
    const cut = anthropicMessage([anthropicBlocks.text('```json\n{"hypothesis": "Tell the agent to drop units", "edits": [{"path": "agent/prompt.md", "sea')], { stop_reason: 'max_tokens' });
    const o = await propose('anthropic', [cut, anthropicText(fenced(GOOD))]);
    assert.equal(o.error, undefined, String(o.error));
    assert.match(lastAnthropicMessage(o.server.requests[1]!.body)[0].text, /cut off at the 2048-token output limit/);
    assert.equal((o.proposal!.meta as any).repaired, true);
  });

  test('OpenAI: a truncated answer (finish_reason length) twice → ProposalFailed', async () => {
    const cut = openaiCompletion({ content: '```json\n{"hypothesis": "x"' }, { finish_reason: 'length' });
    const o = await propose('openai', [cut, cut]);
    assert.ok(o.error instanceof ProposalFailed);
    assert.match((o.error as Error).message, /cut off/);
    const last = o.server.requests[1]!.body.messages.at(-1);
    assert.equal(last.role, 'user');
    assert.match(last.content, /cut off at the 2048-token output limit/);
  });

  test('search text not found → repair naming the path and the first line', async () => {
    const wrong = { ...GOOD, edits: [{ path: 'agent/prompt.md', search: 'Answer with digits.\nNothing else.', replace: 'x' }] };
    const o = await propose('anthropic', [anthropicText(fenced(wrong)), anthropicText(fenced(GOOD))]);
    assert.equal(o.error, undefined, String(o.error));
    const repair = lastAnthropicMessage(o.server.requests[1]!.body)[0].text as string;
    assert.match(repair, /edits\.0 \(path "agent\/prompt\.md"\): the search text was not found/);
    assert.ok(repair.includes('"Answer with digits."'), repair);
    assert.deepEqual(o.proposal!.edits, [{ path: 'agent/prompt.md', content: GOOD_PROMPT }]);
  });

  test('ambiguous search text → repair saying how many times it occurs', async () => {
    const ambiguous = { ...GOOD, edits: [{ path: 'agent/config.py', search: '  # ', replace: ' # ' }] };
    const o = await propose('anthropic', [anthropicText(fenced(ambiguous)), anthropicText(fenced(ambiguous))]);
    assert.ok(o.error instanceof ProposalFailed);
    assert.match((o.error as Error).message, /occurs 2 times/);
    assert.match(lastAnthropicMessage(o.server.requests[1]!.body)[0].text, /edits\.0 \(path "agent\/config\.py"\): the search text occurs 2 times/);
  });

  test('an earlier block changes what a later block must match (edits apply in order)', async () => {
    const stale = { ...GOOD, edits: [{ path: 'agent/config.py', search: 'MAX_STEPS = 8', replace: 'MAX_STEPS = 4' }, { path: 'agent/config.py', search: 'MAX_STEPS = 8', replace: 'MAX_STEPS = 2' }] };
    const o = await propose('anthropic', [anthropicText(fenced(stale)), anthropicText(fenced(GOOD))]);
    assert.match(lastAnthropicMessage(o.server.requests[1]!.body)[0].text, /edits\.1 .*not found/);
  });
});

// ---------------------------------------------------------------- tools

describe('llm proposer: tools', () => {
  test('each trace tool returns what the history holds; results go back as tool_result blocks and are recorded as spans', async () => {
    const calls = anthropicMessage([
      anthropicBlocks.toolUse('read_trace', { id: 'tr-2' }, 'toolu_a'),
      anthropicBlocks.toolUse('search_traces', { query: 'division', limit: 3 }, 'toolu_b'),
      anthropicBlocks.toolUse('list_failing_tasks', { seq: 1 }, 'toolu_c'),
      anthropicBlocks.toolUse('read_file', { path: 'agent/notes.md' }, 'toolu_d'),
      anthropicBlocks.toolUse('show_diff', { seq: 1 }, 'toolu_e'),
    ]);
    const o = await propose('anthropic', [calls, anthropicText(fenced(GOOD))]);
    assert.equal(o.error, undefined, String(o.error));
    const results = lastAnthropicMessage(o.server.requests[1]!.body);
    const byId = Object.fromEntries(results.map((r: any) => [r.tool_use_id, r]));
    assert.equal(byId.toolu_a.content, TRACES['tr-2']);
    assert.match(byId.toolu_b.content, /^tr-2 · task t9 · experiment #1: …a division in the calculator…$/);
    assert.match(byId.toolu_c.content, /^t7 · score 0 · traces: tr-1$/);
    assert.equal(byId.toolu_d.content, 'NOTES: units confuse the scorer');
    assert.match(byId.toolu_e.content, /\+Answer with a number only\./);
    assert.ok(results.every((r: any) => r.type === 'tool_result' && !r.is_error));
    // the trace was read with a character limit
    assert.ok(o.history.traceCalls[0]!.maxChars! > 0);
    const toolSpans = o.spans.filter((s) => s.kind === 'tool');
    assert.deepEqual(toolSpans.map((s) => s.name), ['read_trace', 'search_traces', 'list_failing_tasks', 'read_file', 'show_diff']);
    assert.ok(toolSpans.every((s) => s.status === 'ok' && typeof s.output === 'string' && s.ended_at >= s.started_at));
    assert.deepEqual(toolSpans[0]!.input, { id: 'tr-2' });
    assert.equal(o.spans.filter((s) => s.kind === 'model').length, 2);
  });

  test('unknown tools, bad arguments, unknown ids and a failing search come back as error results, never exceptions', async () => {
    const calls = anthropicMessage([
      anthropicBlocks.toolUse('rm_rf', { path: '/' }, 'toolu_1'),
      anthropicBlocks.toolUse('read_trace', {}, 'toolu_2'),
      anthropicBlocks.toolUse('read_trace', { id: 'nope' }, 'toolu_3'),
      anthropicBlocks.toolUse('show_diff', { seq: 99 }, 'toolu_4'),
      anthropicBlocks.toolUse('search_traces', { query: 'AND OR' }, 'toolu_5'),
      anthropicBlocks.toolUse('read_file', { path: 'secret/answers.json' }, 'toolu_6'),
    ]);
    const o = await propose('anthropic', [calls, anthropicText(fenced(GOOD))]);
    assert.equal(o.error, undefined, String(o.error));
    const byId = Object.fromEntries(lastAnthropicMessage(o.server.requests[1]!.body).map((r: any) => [r.tool_use_id, r]));
    for (const id of ['toolu_1', 'toolu_2', 'toolu_3', 'toolu_4', 'toolu_5', 'toolu_6']) assert.equal(byId[id].is_error, true, id);
    assert.match(byId.toolu_1.content, /unknown tool "rm_rf"; the tools are: read_trace, search_traces/);
    assert.match(byId.toolu_2.content, /bad arguments for read_trace: id:/);
    assert.match(byId.toolu_3.content, /no trace with id "nope"/);
    assert.match(byId.toolu_4.content, /no experiment #99/);
    assert.match(byId.toolu_5.content, /search_traces failed: fts5: syntax error/);
    assert.match(byId.toolu_6.content, /no readable file "secret\/answers\.json"/);
    const toolSpans = o.spans.filter((s) => s.kind === 'tool');
    assert.equal(toolSpans.length, 6);
    assert.ok(toolSpans.every((s) => s.status === 'error' && typeof s.error === 'string'));
  });

  test('OpenAI: malformed tool arguments become an error result prefixed ERROR', async () => {
    const o = await propose('openai', [openaiToolCall('read_trace', '{"id": tr-1', 'call_bad'), openaiText(fenced(GOOD))]);
    assert.equal(o.error, undefined, String(o.error));
    const tool = o.server.requests[1]!.body.messages.find((m: any) => m.role === 'tool');
    assert.equal(tool.tool_call_id, 'call_bad');
    assert.match(tool.content, /^ERROR: the arguments are not a JSON object: \{"id": tr-1/);
  });

  test('max_turns: after the last tool turn one call without tools asks for the answer now', async () => {
    const script: Script = (body, i) => (i < 2 ? anthropicToolUse('read_trace', { id: 'tr-1' }) : anthropicText(fenced(GOOD)));
    const o = await propose('anthropic', script, { settings: { max_turns: 2 } });
    assert.equal(o.error, undefined, String(o.error));
    assert.equal(o.server.requests.length, 3);
    assert.equal(o.server.requests[0]!.body.tools.length, 5);
    assert.equal(o.server.requests[1]!.body.tools.length, 5);
    const last = o.server.requests[2]!.body;
    assert.deepEqual(last.tools ?? [], [], 'the final call has no tools');
    const wire = JSON.stringify(last.messages);
    assert.ok(!wire.includes('"tool_use"') && !wire.includes('"tool_result"'), 'tool blocks are flattened to text for the call without tools');
    assert.ok(wire.includes(TRACES['tr-1']!.slice(0, 30)), 'the tool results are still in the conversation');
    assert.match(lastAnthropicMessage(last).map((b: any) => b.text).join(''), /used all your tool calls\. Answer now/);
    assert.deepEqual(o.names, ['propose turn 1', 'propose turn 2', 'propose answer']);
    assert.equal((o.proposal!.meta as any).turns, 3);
  });

  test('Anthropic thinking: the budget is sent and a thinking block before a tool call goes back verbatim', async () => {
    const withThinking = anthropicMessage([anthropicBlocks.thinking('t7 looks like a units problem', 'sig-abc'), anthropicBlocks.toolUse('read_trace', { id: 'tr-1' }, 'toolu_t')]);
    const o = await propose('anthropic', [withThinking, anthropicText(fenced(GOOD))], { settings: { thinking_budget: 1024, temperature: undefined } });
    assert.equal(o.error, undefined, String(o.error));
    assert.deepEqual(o.server.requests[0]!.body.thinking, { type: 'enabled', budget_tokens: 1024 });
    const assistant = o.server.requests[1]!.body.messages[1];
    assert.equal(assistant.role, 'assistant');
    assert.deepEqual(assistant.content[0], { type: 'thinking', thinking: 't7 looks like a units problem', signature: 'sig-abc' });
  });

  test('max_turns 0: one call without tools', async () => {
    const o = await propose('openai', [openaiText(fenced(GOOD))], { settings: { max_turns: 0 } });
    assert.equal(o.error, undefined, String(o.error));
    assert.equal(o.server.requests.length, 1);
    assert.equal(o.server.requests[0]!.body.tools, undefined);
    assert.ok(!o.server.requests[0]!.body.messages[0].content.includes('read_trace'), 'no tools are promised in the system prompt');
  });
});

// ---------------------------------------------------------------- context document

describe('llm proposer: context document', () => {
  test('files larger than the budget are cut with a marker; ledger recent in full, older one line; round; digest', async () => {
    const huge = Array.from({ length: 8000 }, (_, i) => `LINE_${i} = ${i}  # filler`).join('\n');
    const ledger: LedgerEntry[] = [LEDGER[0]!];
    for (let s = 1; s <= 20; s++) ledger.push({ seq: s, hypothesis: `idea number ${s}`, decision: s % 5 === 0 ? 'kept' : 'discarded', metric: 0.5 + s / 100, improvement: -0.01, proposer: 'llm', reason: `reason for ${s}` });
    const o = await propose('anthropic', [anthropicText(fenced(GOOD))], {
      settings: { context_tokens: 4000 },
      ctx: { files: { ...FILES, 'agent/big.py': huge }, ledger, round: [{ hypothesis: 'switch to chain-of-thought few-shot' }] },
    });
    assert.equal(o.error, undefined, String(o.error));
    const doc = firstUserText(o.server.requests[0]!.body);
    assert.ok(doc.length <= 4000 * 4, `document of ${doc.length} characters exceeds the budget`);
    assert.match(doc, /\[… \d+ characters cut …\]/);
    assert.ok(doc.includes('LINE_0 = 0') && doc.includes('LINE_7999 = 7999'), 'a cut file keeps its head and tail');
    assert.match(doc, /agent\/big\.py \(\d+ characters, cut to fit: read_file "agent\/big\.py" gives it whole\)/);
    assert.ok(doc.includes(PROMPT), 'small files stay whole');
    assert.ok(doc.includes(DIGEST));
    // the 12 most recent in full (with their reasons), older ones one line each
    assert.match(doc, /#20 · llm · kept\n {2}hypothesis: idea number 20\n {2}metric: 0\.7 · improvement: -0\.01\n {2}reason: reason for 20/);
    assert.match(doc, /#9 · llm · discarded\n/);
    assert.ok(!doc.includes('#8 · llm'), 'experiment 8 is summarised, not in full');
    assert.match(doc, /^#8 llm discarded metric=0\.58 Δ=-0\.01: idea number 8$/m);
    assert.match(doc, /^#0 baseline baseline metric=0\.6/m);
    assert.ok(!doc.includes('reason for 8'));
    assert.match(doc, /Already proposed this round[^\n]*\n\n- switch to chain-of-thought few-shot/);
    assert.ok(o.history.digestCalls[0]! <= 4000);
  });
});

// ---------------------------------------------------------------- hybrid

describe('hybrid proposer', () => {
  test('alternate: odd seq is the search proposer (no model call), its knob meta readable by readKnobMeta', async () => {
    const o = await propose('anthropic', [], { ctx: { seq: 3 }, make: (s) => new HybridProposer({ ...s, mode: 'alternate' }) });
    assert.equal(o.error, undefined, String(o.error));
    assert.equal(o.server.requests.length, 0);
    const expected = (await new SearchProposer().propose(context({ seq: 3 })))!;
    assert.deepEqual(o.proposal!.edits, expected.edits);
    assert.equal(o.proposal!.hypothesis, expected.hypothesis);
    const meta = o.proposal!.meta as any;
    assert.equal(meta.proposer, 'hybrid');
    assert.equal(meta.choice, 'search');
    assert.deepEqual(meta.knob, expected.meta);
    const knob = readKnobMeta(meta)!;
    assert.ok(knob, 'readKnobMeta reads the hybrid search meta');
    assert.deepEqual(knob.changed, (expected.meta as any).changed);
    assert.ok(knob.changed.length >= 1 && knob.changed[0]!.knob.startsWith('agent/config.py:'));
  });

  test('alternate: even seq is the llm', async () => {
    const o = await propose('anthropic', [anthropicText(fenced(GOOD))], { ctx: { seq: 4 }, make: (s) => new HybridProposer({ ...s, mode: 'alternate' }) });
    assert.equal(o.error, undefined, String(o.error));
    assert.equal(o.server.requests.length, 1);
    assert.deepEqual(o.proposal!.edits, [{ path: 'agent/prompt.md', content: GOOD_PROMPT }]);
    assert.deepEqual(o.proposal!.meta, { proposer: 'hybrid', model: 'claude-test', turns: 1, repaired: false, choice: 'llm' });
  });

  test('alternate: an odd seq with no knobs goes to the llm', async () => {
    const o = await propose('anthropic', [anthropicText(fenced(GOOD))], { ctx: { seq: 5, files: { 'agent/prompt.md': PROMPT } }, make: (s) => new HybridProposer({ ...s, mode: 'alternate' }) });
    assert.equal(o.error, undefined, String(o.error));
    assert.equal((o.proposal!.meta as any).choice, 'llm');
  });

  test('llm mode: the model sees the knob state and takes the search suggestion with use_search', async () => {
    const o = await propose('anthropic', [anthropicText(fenced({ use_search: true, hypothesis: 'temperature is the least explored knob', cited_traces: ['tr-2', 'ghost'] }))], {
      make: (s) => new HybridProposer({ ...s, mode: 'llm' }),
    });
    assert.equal(o.error, undefined, String(o.error));
    const expected = (await new SearchProposer().propose(context()))!;
    assert.deepEqual(o.proposal!.edits, expected.edits, 'the suggestion is exactly what search proposes with the same random source');
    assert.equal(o.proposal!.hypothesis, `${expected.hypothesis} — temperature is the least explored knob`);
    assert.deepEqual(o.proposal!.cited, ['tr-2']);
    const meta = o.proposal!.meta as any;
    assert.equal(meta.proposer, 'hybrid');
    assert.equal(meta.choice, 'search');
    assert.deepEqual(meta.knob, expected.meta);
    assert.deepEqual(meta.unknown_citations, ['ghost']);
    assert.deepEqual(readKnobMeta(meta)!.changed, (expected.meta as any).changed);

    const body = o.server.requests[0]!.body;
    const doc = firstUserText(body);
    assert.match(doc, /agent\/config\.py:TEMPERATURE = 0\.7 \(float, searched in \[[\d.e-]+, [\d.e-]+\][^)]*\)/);
    assert.ok(doc.includes(`Search would propose now: ${expected.hypothesis}`));
    const system = typeof body.system === 'string' ? body.system : body.system.map((b: any) => b.text).join('');
    assert.match(system, /"use_search": true/);
  });

  test('llm mode: the model may answer with its own edits instead', async () => {
    const o = await propose('anthropic', [anthropicText(fenced({ ...GOOD, use_search: false }))], { make: (s) => new HybridProposer({ ...s, mode: 'llm' }) });
    assert.equal(o.error, undefined, String(o.error));
    assert.deepEqual(o.proposal!.edits, [{ path: 'agent/prompt.md', content: GOOD_PROMPT }]);
    assert.equal((o.proposal!.meta as any).choice, 'llm');
    assert.equal(readKnobMeta(o.proposal!.meta), null);
  });

  test('llm mode: use_search without a suggestion is repaired', async () => {
    const o = await propose('openai', [openaiText(fenced({ use_search: true })), openaiText(fenced(GOOD))], {
      ctx: { files: { 'agent/prompt.md': PROMPT } },
      make: (s) => new HybridProposer({ ...s, mode: 'llm' }),
    });
    assert.equal(o.error, undefined, String(o.error));
    assert.match(o.server.requests[1]!.body.messages.at(-1).content, /no search suggestion to take/);
    assert.equal((o.proposal!.meta as any).choice, 'llm');
  });

  test('a kept hybrid search choice teaches search: its model is fitted on it', async () => {
    const first = (await new HybridProposer({ ...SETTINGS, mode: 'alternate' }).propose(context({ seq: 3 })))!;
    const change = readKnobMeta(first.meta)!.changed[0]!;
    const files = { ...FILES };
    for (const e of first.edits) files[e.path as keyof typeof FILES] = e.content;
    const ledger: LedgerEntry[] = [...LEDGER, { seq: 3, hypothesis: first.hypothesis, decision: 'kept', metric: 0.7, improvement: 0.05, meta: first.meta, proposer: 'hybrid' }];
    const { text, suggestion } = describeSearchState(context({ files, ledger, seq: 4 }));
    const line = text.split('\n').find((l) => l.includes(`${change.knob} =`))!;
    assert.match(line, new RegExp(`${change.knob.replace(/[.:/]/g, '\\$&')} = ${String(change.to).replace('.', '\\.')}`));
    // the hybrid's search choice counts as data: the model now has two assignments
    assert.match(text, /Gaussian process over \d+ evaluation\(s\) of 2 assignment\(s\)/);
    const expected = await new SearchProposer().propose(context({ files, ledger, seq: 4 }));
    assert.deepEqual(suggestion, expected);
  });
});
