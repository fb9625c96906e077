import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { UserError } from '../../base/errors.ts';
import type { Message, ModelRequest, PriceTable, ToolSpec } from '../../task-agent/types.ts';
import {
  AnthropicProvider,
  OpenAIProvider,
  ProviderError,
  RetryError,
  backoffMs,
  costOf,
  createProvider,
  DEFAULT_PRICES,
  isOpenAIHost,
  isRetryable,
  loadPrices,
  priceFor,
  providerFailure,
  retryAfterMs,
  toOpenAIBody,
  withRetry,
  type AttemptRecord,
  type ProviderOptions,
} from '../../task-agent/providers/index.ts';
import {
  anthropicBlocks,
  anthropicError,
  anthropicText,
  anthropicThinking,
  anthropicToolUse,
  openaiCompletion,
  openaiError,
  openaiText,
  openaiToolCall,
  overloaded,
  startMockAnthropic,
  startMockOpenAI,
  type MockServer,
  type Script,
} from '../helpers/mock-llm.ts';

const SYS = 'You are a careful coding agent. Answer briefly.';
const TOOLS: ToolSpec[] = [
  {
    name: 'read_file',
    description: 'Read a file of the workspace.',
    parameters: { type: 'object', properties: { path: { type: 'string' } }, required: ['path'] },
  },
  {
    name: 'write_file',
    description: 'Write a file of the workspace.',
    parameters: { type: 'object', properties: { path: { type: 'string' }, content: { type: 'string' } }, required: ['path', 'content'] },
  },
];
const PRICES: PriceTable = {
  'claude-test': { input: 3, output: 15, cache_read: 0.3, cache_write: 3.75 },
  'claude-plain': { input: 3, output: 15 },
  'gpt-test': { input: 2, output: 8, cache_read: 0.5 },
};

function request(provider: 'anthropic' | 'openai', messages: Message[], extra: Partial<ModelRequest> = {}): ModelRequest {
  return {
    provider,
    model: provider === 'anthropic' ? 'claude-test' : 'gpt-test',
    system: SYS,
    messages,
    tools: TOOLS,
    max_tokens: 256,
    ...extra,
  };
}
const user = (text: string): Message => ({ role: 'user', content: [{ type: 'text', text }] });

/** Options with a recording, instant sleep and a fixed "random" (0.5). */
function fast(env: Record<string, string>, extra: ProviderOptions = {}): ProviderOptions & { sleeps: number[]; attempts: AttemptRecord[] } {
  const sleeps: number[] = [];
  const attempts: AttemptRecord[] = [];
  return {
    env,
    prices: PRICES,
    retry: { max_retries: 3, base_delay_ms: 100, max_delay_ms: 1000, timeout_ms: 5000 },
    sleep: async (ms) => {
      sleeps.push(ms);
    },
    random: () => 0.5,
    onAttempt: (r) => attempts.push(r),
    ...extra,
    sleeps,
    attempts,
  };
}

async function withAnthropic(script: Script, fn: (s: MockServer, env: Record<string, string>) => Promise<void>): Promise<void> {
  const s = await startMockAnthropic(script);
  try {
    await fn(s, { ANTHROPIC_API_KEY: 'sk-ant-test-key', ANTHROPIC_BASE_URL: s.url });
  } finally {
    await s.close();
  }
}
async function withOpenAI(script: Script, fn: (s: MockServer, env: Record<string, string>) => Promise<void>): Promise<void> {
  const s = await startMockOpenAI(script);
  try {
    await fn(s, { OPENAI_API_KEY: 'sk-test-key', OPENAI_BASE_URL: s.baseURL });
  } finally {
    await s.close();
  }
}

// 400 / 500 / 529 bodies the way the real APIs send them
const BAD_REQUEST_MSG = 'max_tokens: 999999 > 64000, which is the maximum allowed number of output tokens for claude-test';

describe('anthropic provider', () => {
  test('text answer: blocks, stop reason, usage, request as the API receives it', async () => {
    const scripted = anthropicText('Hello there.', { input_tokens: 12, output_tokens: 5 });
    await withAnthropic([scripted], async (s, env) => {
      const p = new AnthropicProvider(fast(env));
      const res = await p.call(request('anthropic', [user('Say hello.')], { temperature: 0.2, top_p: 0.9, stop: ['</done>'] }));
      assert.deepEqual(res.content, [{ type: 'text', text: 'Hello there.' }]);
      assert.equal(res.stop_reason, 'end_turn');
      assert.deepEqual(res.usage, { input_tokens: 12, output_tokens: 5, cache_read_tokens: 0, cache_write_tokens: 0 });
      assert.equal(res.attempts, 1);
      assert.equal(res.model, 'claude-sonnet-4-20250514');
      assert.deepEqual(res.raw, scripted);
      assert.ok(res.latency_ms >= 0);

      assert.equal(s.requests.length, 1);
      const r = s.requests[0]!;
      assert.equal(r.method, 'POST');
      assert.equal(r.path, '/v1/messages');
      assert.equal(r.apiKey, 'sk-ant-test-key');
      assert.equal(r.headers['x-api-key'], undefined);
      assert.ok(r.headers['anthropic-version'], 'anthropic-version header sent');
      assert.equal(r.body.model, 'claude-test');
      assert.equal(r.body.max_tokens, 256);
      assert.equal(r.body.temperature, 0.2);
      assert.equal(r.body.top_p, 0.9);
      assert.deepEqual(r.body.stop_sequences, ['</done>']);
      assert.equal(r.body.thinking, undefined);
      assert.deepEqual(r.body.messages, [{ role: 'user', content: [{ type: 'text', text: 'Say hello.' }] }]);
      assert.deepEqual(res.raw_request, r.body, 'raw_request is the body as sent');
      assert.ok(!JSON.stringify(res.raw_request).includes('sk-ant-test-key'));
    });
  });

  test('prompt caching: cache_control on the system block and on the last tool only', async () => {
    await withAnthropic([anthropicText('ok')], async (s, env) => {
      await new AnthropicProvider(fast(env)).call(request('anthropic', [user('hi')]));
      const body = s.requests[0]!.body;
      assert.deepEqual(body.system, [{ type: 'text', text: SYS, cache_control: { type: 'ephemeral' } }]);
      assert.deepEqual(body.tools, [
        { name: 'read_file', description: 'Read a file of the workspace.', input_schema: TOOLS[0]!.parameters },
        { name: 'write_file', description: 'Write a file of the workspace.', input_schema: TOOLS[1]!.parameters, cache_control: { type: 'ephemeral' } },
      ]);
    });
  });

  test('tool call round trip: tool_use parsed, tool_result (with is_error) sent as the API expects', async () => {
    await withAnthropic(
      [anthropicToolUse('read_file', { path: 'src/a.ts' }, 'toolu_01Aq9yW3xsZbPm8cK4ud7Qtr', { text: 'Let me look.' }), anthropicText('Done.')],
      async (s, env) => {
        const p = new AnthropicProvider(fast(env));
        const first = await p.call(request('anthropic', [user('Fix a.ts')]));
        assert.equal(first.stop_reason, 'tool_use');
        assert.deepEqual(first.content, [
          { type: 'text', text: 'Let me look.' },
          { type: 'tool_use', id: 'toolu_01Aq9yW3xsZbPm8cK4ud7Qtr', name: 'read_file', input: { path: 'src/a.ts' } },
        ]);
        const history: Message[] = [
          user('Fix a.ts'),
          { role: 'assistant', content: first.content },
          {
            role: 'user',
            content: [
              { type: 'tool_result', tool_use_id: 'toolu_01Aq9yW3xsZbPm8cK4ud7Qtr', content: 'export const a = 1;' },
              { type: 'tool_result', tool_use_id: 'toolu_01other', content: 'ENOENT: b.ts', is_error: true },
              { type: 'text', text: 'Go on.' },
            ],
          },
        ];
        const second = await p.call(request('anthropic', history));
        assert.deepEqual(second.content, [{ type: 'text', text: 'Done.' }]);
        assert.deepEqual(s.requests[1]!.body.messages, [
          { role: 'user', content: [{ type: 'text', text: 'Fix a.ts' }] },
          {
            role: 'assistant',
            content: [
              { type: 'text', text: 'Let me look.' },
              { type: 'tool_use', id: 'toolu_01Aq9yW3xsZbPm8cK4ud7Qtr', name: 'read_file', input: { path: 'src/a.ts' } },
            ],
          },
          {
            role: 'user',
            content: [
              { type: 'tool_result', tool_use_id: 'toolu_01Aq9yW3xsZbPm8cK4ud7Qtr', content: 'export const a = 1;' },
              { type: 'tool_result', tool_use_id: 'toolu_01other', content: 'ENOENT: b.ts', is_error: true },
              { type: 'text', text: 'Go on.' },
            ],
          },
        ]);
      },
    );
  });

  test('extended thinking: thinking (with signature) and redacted_thinking kept verbatim and sent back verbatim', async () => {
    const sig = 'EqQBCkgIBxABGAIiQHd0Wq3hMv0f1c2ZCeG8v0mT8p+Qk8e2x1j2q7yQ==';
    const first = anthropicThinking(
      'The user wants the file read first.\nI will call read_file.',
      sig,
      anthropicBlocks.redactedThinking('EmwKAhgBEgy3va3pzix/LafPsn4aDFIT2Xlxh0L5L8rLVyIwxtE3rAFBa8cr3qpP'),
      anthropicBlocks.toolUse('read_file', { path: 'a.txt' }, 'toolu_01T1x1fJ34qAmk2tNTrN7Up6'),
    );
    await withAnthropic([first, anthropicText('The file says hi.')], async (s, env) => {
      const p = new AnthropicProvider(fast(env));
      const req1 = request('anthropic', [user('What is in a.txt?')], { thinking_budget: 2048 });
      const r1 = await p.call(req1);
      assert.deepEqual(r1.content, [
        { type: 'thinking', thinking: 'The user wants the file read first.\nI will call read_file.', signature: sig },
        { type: 'redacted_thinking', data: 'EmwKAhgBEgy3va3pzix/LafPsn4aDFIT2Xlxh0L5L8rLVyIwxtE3rAFBa8cr3qpP' },
        { type: 'tool_use', id: 'toolu_01T1x1fJ34qAmk2tNTrN7Up6', name: 'read_file', input: { path: 'a.txt' } },
      ]);
      assert.deepEqual(s.requests[0]!.body.thinking, { type: 'enabled', budget_tokens: 2048 });

      await p.call({
        ...req1,
        messages: [
          ...req1.messages,
          { role: 'assistant', content: r1.content },
          { role: 'user', content: [{ type: 'tool_result', tool_use_id: 'toolu_01T1x1fJ34qAmk2tNTrN7Up6', content: 'hi' }] },
        ],
      });
      // the assistant turn reaches the server exactly as the server produced it
      assert.deepEqual(s.requests[1]!.body.messages[1], { role: 'assistant', content: first.content });
    });
  });

  test('usage with cache tokens and the exact cost', async () => {
    const usage = { input_tokens: 100, output_tokens: 50, cache_read_input_tokens: 2000, cache_creation_input_tokens: 1000 };
    await withAnthropic([anthropicText('a', usage), anthropicText('b', usage)], async (_s, env) => {
      const p = new AnthropicProvider(fast(env));
      const res = await p.call(request('anthropic', [user('hi')]));
      // input_tokens is the whole prompt: 100 uncached + 2000 read + 1000 written
      assert.deepEqual(res.usage, { input_tokens: 3100, output_tokens: 50, cache_read_tokens: 2000, cache_write_tokens: 1000 });
      // 100·3 + 2000·0.3 + 1000·3.75 + 50·15 = 5400 per million
      assert.equal(res.cost_usd, 0.0054);
      // a price without cache rates: reads at 0.1 × input, writes at 1.25 × input: the same here
      const plain = await p.call(request('anthropic', [user('hi')], { model: 'claude-plain' }));
      assert.equal(plain.cost_usd, 0.0054);
    });
  });

  test('429 with retry-after: 1 waits the advertised 1000 ms, then succeeds (attempts = 2)', async () => {
    await withAnthropic(
      [anthropicError(429, 'rate_limit_error', 'Number of request tokens has exceeded your per-minute rate limit', { 'retry-after': '1' }), anthropicText('ok')],
      async (s, env) => {
        const o = fast(env);
        const res = await new AnthropicProvider(o).call(request('anthropic', [user('hi')]));
        assert.equal(res.attempts, 2);
        assert.deepEqual(o.sleeps, [1000]);
        assert.equal(s.requests.length, 2);
        assert.deepEqual(
          o.attempts.map((a) => ({ attempt: a.attempt, ok: a.ok, status: a.status, delay_ms: a.delay_ms })),
          [
            { attempt: 1, ok: false, status: 429, delay_ms: 1000 },
            { attempt: 2, ok: true, status: undefined, delay_ms: undefined },
          ],
        );
      },
    );
  });

  test('retry-after is capped (maxRetryAfterMs)', async () => {
    await withAnthropic([anthropicError(429, 'rate_limit_error', 'slow down', { 'retry-after': '3600' }), anthropicText('ok')], async (_s, env) => {
      const o = fast(env, { maxRetryAfterMs: 60_000 });
      await new AnthropicProvider(o).call(request('anthropic', [user('hi')]));
      assert.deepEqual(o.sleeps, [60_000]);
    });
  });

  test('500 then success: backoff with jitter between base and 2·base', async () => {
    await withAnthropic([anthropicError(500, 'api_error', 'Internal server error'), anthropicText('ok')], async (_s, env) => {
      const o = fast(env);
      const res = await new AnthropicProvider(o).call(request('anthropic', [user('hi')]));
      assert.equal(res.attempts, 2);
      assert.deepEqual(o.sleeps, [150]); // base 100 + 0.5 · (200 − 100)
    });
  });

  test('529 overloaded then success', async () => {
    await withAnthropic([overloaded(), overloaded(), anthropicText('ok')], async (s, env) => {
      const o = fast(env);
      const res = await new AnthropicProvider(o).call(request('anthropic', [user('hi')]));
      assert.equal(res.attempts, 3);
      assert.deepEqual(o.sleeps, [150, 250]);
      assert.equal(s.requests.length, 3);
    });
  });

  test('a dropped connection is retried', async () => {
    await withAnthropic([{ hangup: true }, anthropicText('ok')], async (_s, env) => {
      const res = await new AnthropicProvider(fast(env)).call(request('anthropic', [user('hi')]));
      assert.equal(res.attempts, 2);
      assert.deepEqual(res.content, [{ type: 'text', text: 'ok' }]);
    });
  });

  test('a server that is not there: connection errors retried, then one clear line', async () => {
    const gone = await startMockAnthropic([]);
    await gone.close();
    const o = fast({ ANTHROPIC_API_KEY: 'k', ANTHROPIC_BASE_URL: gone.url }, { retry: { max_retries: 2, base_delay_ms: 100, max_delay_ms: 1000, timeout_ms: 5000 } });
    const err = await new AnthropicProvider(o).call(request('anthropic', [user('hi')])).catch((e: unknown) => e);
    assert.ok(err instanceof ProviderError);
    assert.equal(err.message, 'anthropic claude-test: connection error (ECONNREFUSED) (gave up after 3 attempts)');
    assert.deepEqual(o.sleeps, [150, 250]);
  });

  test('400 is not retried; the error is one line with the status and the server message', async () => {
    await withAnthropic([anthropicError(400, 'invalid_request_error', BAD_REQUEST_MSG), anthropicText('never')], async (s, env) => {
      const o = fast(env);
      const err = await new AnthropicProvider(o).call(request('anthropic', [user('hi')])).catch((e: unknown) => e);
      assert.ok(err instanceof ProviderError);
      assert.ok(err instanceof UserError);
      assert.equal(err.message, `anthropic claude-test: HTTP 400 invalid_request_error: ${BAD_REQUEST_MSG} (not retried)`);
      assert.equal(err.status, 400);
      assert.equal(err.attempts, 1);
      assert.equal(s.requests.length, 1);
      assert.deepEqual(o.sleeps, []);
    });
  });

  test('timeout: each attempt is cut at timeout_ms, retried, then a clear failure', async () => {
    await withAnthropic(
      () => ({ delayMs: 3000, body: anthropicText('too late') }),
      async (s, env) => {
        const o = fast(env, { retry: { max_retries: 2, base_delay_ms: 100, max_delay_ms: 1000, timeout_ms: 100 } });
        const started = Date.now();
        const err = await new AnthropicProvider(o).call(request('anthropic', [user('hi')])).catch((e: unknown) => e);
        assert.ok(err instanceof ProviderError);
        assert.equal(err.message, 'anthropic claude-test: timed out after 100 ms (gave up after 3 attempts)');
        assert.equal(err.attempts, 3);
        assert.equal(s.requests.length, 3);
        assert.deepEqual(o.sleeps, [150, 250]);
        assert.ok(Date.now() - started < 2500, 'attempts were cut at the deadline');
      },
    );
  });

  test('an AbortSignal stops the wait between attempts at once', async () => {
    await withAnthropic([anthropicError(429, 'rate_limit_error', 'slow down', { 'retry-after': '30' }), anthropicText('ok')], async (s, env) => {
      const { sleep: _real, ...o } = fast(env);
      const ac = new AbortController();
      const started = Date.now();
      setTimeout(() => ac.abort(), 50);
      const err = await new AnthropicProvider(o).call(request('anthropic', [user('hi')]), ac.signal).catch((e: unknown) => e);
      assert.equal((err as Error).name, 'AbortError');
      assert.ok(Date.now() - started < 2000);
      assert.equal(s.requests.length, 1);
    });
  });

  test('an AbortSignal stops an attempt in flight', async () => {
    await withAnthropic([{ delayMs: 5000, body: anthropicText('late') }], async (_s, env) => {
      const ac = new AbortController();
      const started = Date.now();
      setTimeout(() => ac.abort(), 50);
      const err = await new AnthropicProvider(fast(env)).call(request('anthropic', [user('hi')]), ac.signal).catch((e: unknown) => e);
      assert.equal((err as Error).name, 'AbortError');
      assert.ok(Date.now() - started < 2000);
    });
  });

  test('missing ANTHROPIC_API_KEY: one-line UserError at creation', () => {
    assert.throws(
      () => createProvider('anthropic', { env: {} }),
      (e: unknown) => e instanceof UserError && e.message === 'ANTHROPIC_API_KEY is not set (needed for provider: anthropic)',
    );
    assert.throws(() => createProvider('anthropic', { env: { ANTHROPIC_API_KEY: '  ' } }), UserError);
  });
});

describe('openai provider', () => {
  test('text answer: system message first, request as the server receives it', async () => {
    const scripted = openaiText('Paris.', { prompt_tokens: 50, completion_tokens: 3 });
    await withOpenAI([scripted], async (s, env) => {
      const res = await new OpenAIProvider(fast(env)).call(request('openai', [user('Capital of France?')], { temperature: 0, stop: ['END'] }));
      assert.deepEqual(res.content, [{ type: 'text', text: 'Paris.' }]);
      assert.equal(res.stop_reason, 'end_turn');
      assert.deepEqual(res.usage, { input_tokens: 50, output_tokens: 3, cache_read_tokens: 0, cache_write_tokens: 0 });
      assert.equal(res.attempts, 1);
      assert.equal(res.model, 'gpt-4.1-2025-04-14');
      assert.deepEqual(res.raw, scripted);
      const r = s.requests[0]!;
      assert.equal(r.path, '/v1/chat/completions');
      assert.equal(r.apiKey, 'sk-test-key');
      assert.equal(r.headers.authorization, undefined);
      assert.deepEqual(r.body.messages, [
        { role: 'system', content: SYS },
        { role: 'user', content: 'Capital of France?' },
      ]);
      assert.equal(r.body.max_tokens, 256, 'compatible servers get max_tokens');
      assert.equal(r.body.temperature, 0);
      assert.deepEqual(r.body.stop, ['END']);
      assert.deepEqual(res.raw_request, r.body);
    });
  });

  test('tool call round trip: tools as functions, tool_calls and role:tool messages (errors prefixed)', async () => {
    await withOpenAI([openaiToolCall('read_file', '{"path":"src/a.ts"}', 'call_Qm3kX9vT2bLr8sNw4YpZ1aHc'), openaiText('Done.')], async (s, env) => {
      const p = new OpenAIProvider(fast(env));
      const first = await p.call(request('openai', [user('Fix a.ts')]));
      assert.equal(first.stop_reason, 'tool_use');
      assert.deepEqual(first.content, [{ type: 'tool_use', id: 'call_Qm3kX9vT2bLr8sNw4YpZ1aHc', name: 'read_file', input: { path: 'src/a.ts' } }]);
      assert.deepEqual(s.requests[0]!.body.tools, [
        { type: 'function', function: { name: 'read_file', description: 'Read a file of the workspace.', parameters: TOOLS[0]!.parameters } },
        { type: 'function', function: { name: 'write_file', description: 'Write a file of the workspace.', parameters: TOOLS[1]!.parameters } },
      ]);
      await p.call(
        request('openai', [
          user('Fix a.ts'),
          { role: 'assistant', content: [{ type: 'thinking', thinking: 'hidden', signature: 'sig' }, { type: 'text', text: 'Reading.' }, ...first.content] },
          {
            role: 'user',
            content: [
              { type: 'tool_result', tool_use_id: 'call_Qm3kX9vT2bLr8sNw4YpZ1aHc', content: 'export const a = 1;' },
              { type: 'tool_result', tool_use_id: 'call_other', content: 'ENOENT: b.ts', is_error: true },
              { type: 'text', text: 'Go on.' },
            ],
          },
        ]),
      );
      assert.deepEqual(s.requests[1]!.body.messages, [
        { role: 'system', content: SYS },
        { role: 'user', content: 'Fix a.ts' },
        {
          role: 'assistant',
          content: 'Reading.',
          tool_calls: [{ id: 'call_Qm3kX9vT2bLr8sNw4YpZ1aHc', type: 'function', function: { name: 'read_file', arguments: '{"path":"src/a.ts"}' } }],
        },
        { role: 'tool', tool_call_id: 'call_Qm3kX9vT2bLr8sNw4YpZ1aHc', content: 'export const a = 1;' },
        { role: 'tool', tool_call_id: 'call_other', content: 'ERROR: ENOENT: b.ts' },
        { role: 'user', content: 'Go on.' },
      ]);
    });
  });

  test('reasoning_content / reasoning fields become a reasoning block', async () => {
    await withOpenAI(
      [openaiText('42', undefined, { reasoning_content: 'Six times seven.' }), openaiText('43', undefined, { reasoning: 'Add one.' })],
      async (_s, env) => {
        const p = new OpenAIProvider(fast(env));
        const a = await p.call(request('openai', [user('6*7?')]));
        assert.deepEqual(a.content, [
          { type: 'reasoning', text: 'Six times seven.' },
          { type: 'text', text: '42' },
        ]);
        const b = await p.call(request('openai', [user('43?')]));
        assert.deepEqual(b.content, [
          { type: 'reasoning', text: 'Add one.' },
          { type: 'text', text: '43' },
        ]);
      },
    );
  });

  test('malformed tool arguments: input {} and raw_input = the text as received', async () => {
    const bad = '{"path": "a.txt", "content": "unterminated';
    await withOpenAI([openaiToolCall('write_file', bad, 'call_bad1'), openaiText('ok')], async (s, env) => {
      const p = new OpenAIProvider(fast(env));
      const res = await p.call(request('openai', [user('write it')]));
      assert.equal(res.stop_reason, 'tool_use');
      assert.deepEqual(res.content, [{ type: 'tool_use', id: 'call_bad1', name: 'write_file', input: {}, raw_input: bad }]);
      await p.call(
        request('openai', [
          user('write it'),
          { role: 'assistant', content: res.content },
          { role: 'user', content: [{ type: 'tool_result', tool_use_id: 'call_bad1', content: 'arguments are not valid JSON', is_error: true }] },
        ]),
      );
      const sent = s.requests[1]!.body.messages[2];
      assert.equal(sent.tool_calls[0].function.arguments, '{}', 'a server that re-parses arguments gets valid JSON');
    });
  });

  test('usage with cached tokens and the exact cost', async () => {
    await withOpenAI([openaiText('ok', { prompt_tokens: 1000, completion_tokens: 200, cached_tokens: 400 })], async (_s, env) => {
      const res = await new OpenAIProvider(fast(env)).call(request('openai', [user('hi')]));
      assert.deepEqual(res.usage, { input_tokens: 1000, output_tokens: 200, cache_read_tokens: 400, cache_write_tokens: 0 });
      // (1000 − 400)·2 + 400·0.5 + 200·8 = 3000 per million
      assert.equal(res.cost_usd, 0.003);
    });
  });

  test('429 with retry-after-ms, then success', async () => {
    await withOpenAI(
      [openaiError(429, 'Rate limit reached for gpt-test', 'requests', 'rate_limit_exceeded', { 'retry-after-ms': '250' }), openaiText('ok')],
      async (_s, env) => {
        const o = fast(env);
        const res = await new OpenAIProvider(o).call(request('openai', [user('hi')]));
        assert.equal(res.attempts, 2);
        assert.deepEqual(o.sleeps, [250]);
      },
    );
  });

  test('500 then success', async () => {
    await withOpenAI([openaiError(500, 'The server had an error while processing your request.', 'server_error'), openaiText('ok')], async (_s, env) => {
      const o = fast(env);
      const res = await new OpenAIProvider(o).call(request('openai', [user('hi')]));
      assert.equal(res.attempts, 2);
      assert.deepEqual(o.sleeps, [150]);
    });
  });

  test('400 is not retried; one line with status and server message', async () => {
    const msg = "Invalid 'messages[1].content': string too long.";
    await withOpenAI([openaiError(400, msg, 'invalid_request_error', 'string_above_max_length'), openaiText('never')], async (s, env) => {
      const err = await new OpenAIProvider(fast(env)).call(request('openai', [user('hi')])).catch((e: unknown) => e);
      assert.ok(err instanceof ProviderError);
      assert.equal(err.message, `openai gpt-test: HTTP 400 invalid_request_error: ${msg} (not retried)`);
      assert.equal(s.requests.length, 1);
    });
  });

  test('401, 403, 404, 422 are never retried', async () => {
    for (const status of [401, 403, 404, 422]) {
      await withOpenAI([openaiError(status, `status ${status}`), openaiText('never')], async (s, env) => {
        const o = fast(env);
        const err = await new OpenAIProvider(o).call(request('openai', [user('hi')])).catch((e: unknown) => e);
        assert.ok(err instanceof ProviderError, `status ${status}`);
        assert.equal(err.status, status);
        assert.equal(s.requests.length, 1, `status ${status}: one request`);
        assert.deepEqual(o.sleeps, []);
      });
    }
  });

  test('429 insufficient_quota is not retried (waiting does not refill a quota)', async () => {
    await withOpenAI(
      [openaiError(429, 'You exceeded your current quota, please check your plan and billing details.', 'insufficient_quota', 'insufficient_quota'), openaiText('never')],
      async (s, env) => {
        const err = await new OpenAIProvider(fast(env)).call(request('openai', [user('hi')])).catch((e: unknown) => e);
        assert.ok(err instanceof ProviderError);
        assert.match(err.message, /^openai gpt-test: HTTP 429 insufficient_quota: You exceeded your current quota.*\(not retried\)$/);
        assert.equal(s.requests.length, 1);
      },
    );
  });

  test('a base URL without /v1 that 404s gets a hint', async () => {
    // Ollama at http://127.0.0.1:11434 without /v1: the SDK posts to /chat/completions
    const s404 = await startMockOpenAI(() => openaiError(404, 'page not found', 'not_found'));
    try {
      const err = await new OpenAIProvider(fast({ OPENAI_BASE_URL: s404.url })).call(request('openai', [user('hi')])).catch((e: unknown) => e);
      assert.ok(err instanceof ProviderError);
      assert.equal(s404.requests[0]!.path, '/chat/completions');
      assert.match(err.message, /HTTP 404 not_found: page not found \(not retried\); check OPENAI_BASE_URL \(http:\/\/127\.0\.0\.1:\d+\): .*\/v1 suffix$/);
    } finally {
      await s404.close();
    }
  });

  test('a refusal becomes text', async () => {
    await withOpenAI([openaiCompletion({ content: null, refusal: "I can't help with that." })], async (_s, env) => {
      const res = await new OpenAIProvider(fast(env)).call(request('openai', [user('bad')]));
      assert.deepEqual(res.content, [{ type: 'text', text: "I can't help with that." }]);
      assert.equal(res.stop_reason, 'end_turn');
    });
  });

  test('timeout then failure after max_retries', async () => {
    await withOpenAI(
      () => ({ delayMs: 3000, body: openaiText('too late') }),
      async (s, env) => {
        const o = fast(env, { retry: { max_retries: 1, base_delay_ms: 100, max_delay_ms: 1000, timeout_ms: 100 } });
        const err = await new OpenAIProvider(o).call(request('openai', [user('hi')])).catch((e: unknown) => e);
        assert.ok(err instanceof ProviderError);
        assert.equal(err.message, 'openai gpt-test: timed out after 100 ms (gave up after 2 attempts)');
        assert.equal(s.requests.length, 2);
      },
    );
  });

  test('OPENAI_BASE_URL on a local server works without a key (placeholder key "local")', async () => {
    await withOpenAI([openaiText('hello from llama')], async (s) => {
      const p = createProvider('openai', { ...fast({}), env: { OPENAI_BASE_URL: s.baseURL } });
      const res = await p.call(request('openai', [user('hi')], { model: 'llama3.1:8b' }));
      assert.deepEqual(res.content, [{ type: 'text', text: 'hello from llama' }]);
      assert.equal(res.cost_usd, 0, 'a model without a price costs 0');
      assert.equal(s.requests[0]!.apiKey, 'local');
    });
  });

  test('missing OPENAI_API_KEY for api.openai.com: one-line UserError at creation', () => {
    const msg = 'OPENAI_API_KEY is not set (needed for provider: openai; or set OPENAI_BASE_URL to a local OpenAI-compatible server)';
    for (const env of [{}, { OPENAI_BASE_URL: 'https://api.openai.com/v1' }]) {
      assert.throws(
        () => createProvider('openai', { env }),
        (e: unknown) => e instanceof UserError && e.message === msg,
      );
    }
    assert.throws(() => createProvider('openai', { env: { OPENAI_BASE_URL: 'not a url' } }), /OPENAI_BASE_URL is not a valid URL/);
  });

  test('api.openai.com gets max_completion_tokens; other hosts max_tokens', () => {
    assert.equal(isOpenAIHost('https://api.openai.com/v1'), true);
    assert.equal(isOpenAIHost('http://127.0.0.1:11434/v1'), false);
    assert.equal(isOpenAIHost('https://openrouter.ai/api/v1'), false);
    const body = toOpenAIBody(request('openai', [user('hi')]), { maxTokensField: 'max_completion_tokens' });
    assert.equal(body.max_completion_tokens, 256);
    assert.equal(body.max_tokens, undefined);
  });
});

describe('createProvider', () => {
  test('an unknown provider is a UserError', () => {
    assert.throws(() => createProvider('gemini', { env: {} }), (e: unknown) => e instanceof UserError && /unknown provider: gemini/.test(e.message));
  });
});

describe('retry loop', () => {
  const policy = { max_retries: 2, base_delay_ms: 100, max_delay_ms: 1000, timeout_ms: 1000 };
  const httpError = (status: number, headers: Record<string, string> = {}): Error =>
    Object.assign(new Error(`${status} boom`), { status, headers: new Headers(headers) });

  test('classification', () => {
    for (const s of [408, 409, 429, 500, 502, 503, 529]) assert.equal(isRetryable(httpError(s)), true, `status ${s}`);
    for (const s of [400, 401, 403, 404, 413, 422]) assert.equal(isRetryable(httpError(s)), false, `status ${s}`);
    assert.equal(isRetryable(httpError(503, { 'x-should-retry': 'false' })), false);
    assert.equal(isRetryable(Object.assign(new Error('Connection error.'), { name: 'APIConnectionError' })), true);
    assert.equal(isRetryable(new TypeError('fetch failed')), true);
    assert.equal(isRetryable(new Error('a bug')), false);
  });

  test('backoff: exponential with full jitter between base and max', () => {
    const p = { base_delay_ms: 100, max_delay_ms: 1000 };
    assert.equal(backoffMs(1, p, () => 0), 100);
    assert.equal(backoffMs(1, p, () => 0.5), 150);
    assert.equal(backoffMs(2, p, () => 0.5), 250);
    assert.equal(backoffMs(3, p, () => 1), 800);
    assert.equal(backoffMs(6, p, () => 1), 1000, 'capped at max_delay_ms');
  });

  test('retry-after: seconds, HTTP date, retry-after-ms first, garbage ignored', () => {
    const now = Date.parse('Wed, 21 Oct 2015 07:28:00 GMT');
    assert.equal(retryAfterMs(new Headers({ 'retry-after': '2' }), now), 2000);
    assert.equal(retryAfterMs(new Headers({ 'retry-after': '0.5' }), now), 500);
    assert.equal(retryAfterMs(new Headers({ 'retry-after': 'Wed, 21 Oct 2015 07:28:30 GMT' }), now), 30_000);
    assert.equal(retryAfterMs(new Headers({ 'retry-after': '2', 'retry-after-ms': '120' }), now), 120);
    assert.equal(retryAfterMs(new Headers({ 'retry-after': 'soon' }), now), undefined);
    assert.equal(retryAfterMs(new Headers({}), now), undefined);
  });

  test('counts attempts and gives up after max_retries', async () => {
    const sleeps: number[] = [];
    let calls = 0;
    const err = await withRetry(
      async () => {
        calls++;
        throw httpError(503);
      },
      { policy, sleep: async (ms) => void sleeps.push(ms), random: () => 0 },
    ).catch((e: unknown) => e);
    assert.ok(err instanceof RetryError);
    assert.equal(err.attempts, 3);
    assert.equal(err.exhausted, true);
    assert.equal(calls, 3);
    assert.deepEqual(sleeps, [100, 100]);
  });

  test('returns the value and the attempt count', async () => {
    let calls = 0;
    const r = await withRetry(
      async () => {
        if (++calls < 2) throw httpError(429, { 'retry-after': '3' });
        return 'ok';
      },
      { policy, sleep: async () => {}, random: () => 0 },
    );
    assert.deepEqual(r, { value: 'ok', attempts: 2 });
  });
});

describe('prices', () => {
  const u = (input: number, output: number, read = 0, write = 0) => ({ input_tokens: input, output_tokens: output, cache_read_tokens: read, cache_write_tokens: write });

  test('longest-prefix match on the defaults, dated ids included; unknown models cost 0', () => {
    const cases: Array<[string, number | undefined]> = [
      ['claude-sonnet-4-20250514', 3],
      ['claude-sonnet-4-5-20250929', 3],
      ['claude-opus-4-20250514', 15],
      ['claude-opus-4-1-20250805', 15],
      ['claude-opus-4-5-20251101', 5],
      ['claude-haiku-4-5-20251001', 1],
      ['gpt-4.1-2025-04-14', 2],
      ['gpt-4.1-mini-2025-04-14', 0.4],
      ['gpt-4.1-nano', 0.1],
      ['gpt-4o-2024-08-06', 2.5],
      ['gpt-4o-mini-2024-07-18', 0.15],
      ['o3-2025-04-16', 2],
      ['o4-mini-2025-04-16', 1.1],
      ['llama3.1:8b', undefined],
      ['qwen2.5-coder:32b', undefined],
    ];
    for (const [model, input] of cases) assert.equal(priceFor(model, DEFAULT_PRICES)?.input, input, model);
    assert.equal(costOf('llama3.1:8b', u(1_000_000, 1_000_000), DEFAULT_PRICES), 0);
  });

  test('exact arithmetic', () => {
    // 1 234 567 · 0.4 + 89 · 1.6 = 493 969.2 per million
    assert.equal(costOf('gpt-4.1-mini', u(1_234_567, 89), DEFAULT_PRICES), 0.4939692);
    // 3 · 0.1 is 0.30000000000000004 in floating point; the cost is exactly 0.0000003
    assert.equal(costOf('m', u(3, 0), { m: { input: 0.1, output: 0 } }), 0.0000003);
    // sonnet: 10 uncached · 3 + 7 read · 0.3 + 1 write · 3.75 + 3 out · 15 = 80.85 per million
    assert.equal(costOf('claude-sonnet-4-5', u(18, 3, 7, 1), DEFAULT_PRICES), 0.00008085);
  });

  test('a prices file (JSON or YAML) is merged over the defaults', () => {
    const dir = mkdtempSync(join(tmpdir(), 'prices-'));
    try {
      const json = join(dir, 'prices.json');
      writeFileSync(json, JSON.stringify({ 'claude-sonnet-4': { input: 2, output: 10 }, 'my-llama': { input: 0.01, output: 0.02, cache_read: 0 } }));
      const t = loadPrices(json);
      assert.deepEqual(t['claude-sonnet-4'], { input: 2, output: 10 });
      assert.deepEqual(t['my-llama'], { input: 0.01, output: 0.02, cache_read: 0 });
      assert.deepEqual(t['claude-opus-4'], DEFAULT_PRICES['claude-opus-4'], 'the other defaults stay');
      assert.equal(priceFor('claude-sonnet-4-20250514', t)?.input, 2);

      const yaml = join(dir, 'prices.yaml');
      writeFileSync(yaml, '# mine\ngpt-4o:\n  input: 1\n  output: 4\n  cache_read: 0.5\n');
      assert.deepEqual(loadPrices(yaml)['gpt-4o'], { input: 1, output: 4, cache_read: 0.5 });
      assert.deepEqual(loadPrices(), DEFAULT_PRICES);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('a bad prices file: one line naming the file and the field', () => {
    const dir = mkdtempSync(join(tmpdir(), 'prices-'));
    try {
      const check = (name: string, content: string, expected: RegExp): void => {
        const f = join(dir, name);
        writeFileSync(f, content);
        assert.throws(
          () => loadPrices(f),
          (e: unknown) => e instanceof UserError && !e.message.includes('\n') && e.message.startsWith(`prices file ${f}`) && expected.test(e.message),
          `${name}: ${expected}`,
        );
      };
      check('a.json', JSON.stringify({ 'my-model': { input: 'cheap', output: 1 } }), /field `my-model\.input`: expected a number/);
      check('b.json', JSON.stringify({ 'my-model': { input: 1 } }), /field `my-model\.output`/);
      check('c.json', JSON.stringify({ 'my-model': { input: 1, output: 1, cached: 0.1 } }), /unknown field `my-model\.cached`/);
      check('d.json', JSON.stringify({ 'my-model': { input: -1, output: 1 } }), /field `my-model\.input`/);
      check('e.json', '{ "my-model": ', /not valid JSON/);
      check('f.yaml', 'my-model: [unclosed', /not valid YAML/);
      assert.throws(() => loadPrices(join(dir, 'missing.json')), /prices file .*missing\.json: cannot read it \(ENOENT\)/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('provider failures (what makes an evaluation an error, not a score)', () => {
  const retry = { max_retries: 1, base_delay_ms: 1, max_delay_ms: 2, timeout_ms: 2000 };
  const fail = async (p: { call: AnthropicProvider['call'] }, kind: 'anthropic' | 'openai') =>
    p.call(request(kind, [user('hi')])).catch((e: unknown) => e);

  test('a refused port, 401, 403, 5xx and 529 after the retries, 429 after the retries, a timeout: each classified, in one line naming the server', async () => {
    const gone = await startMockOpenAI([]);
    await gone.close();
    const dead = await fail(new OpenAIProvider(fast({ OPENAI_BASE_URL: gone.baseURL }, { retry })), 'openai');
    assert.deepEqual(providerFailure(dead, gone.baseURL), { kind: 'connection', detail: `connection refused to ${gone.baseURL}` });
    const goneA = await startMockAnthropic([]);
    await goneA.close();
    const deadA = await fail(new AnthropicProvider(fast({ ANTHROPIC_API_KEY: 'k', ANTHROPIC_BASE_URL: goneA.url }, { retry })), 'anthropic');
    assert.equal(providerFailure(deadA, goneA.url)?.kind, 'connection');

    for (const status of [401, 403]) {
      await withOpenAI(() => openaiError(status, 'Incorrect API key provided', 'invalid_request_error', 'invalid_api_key'), async (s, env) => {
        const err = await fail(new OpenAIProvider(fast(env, { retry })), 'openai');
        assert.deepEqual(providerFailure(err, s.baseURL), { kind: 'auth', detail: `${s.baseURL} answered HTTP ${status} invalid_request_error: Incorrect API key provided` });
        assert.equal(s.requests.length, 1, 'not retried');
      });
    }
    await withOpenAI(() => openaiError(503, 'upstream down', 'server_error'), async (s, env) => {
      const err = await fail(new OpenAIProvider(fast(env, { retry })), 'openai');
      assert.deepEqual(providerFailure(err, s.baseURL), { kind: 'server', detail: `${s.baseURL} answered HTTP 503 server_error: upstream down (gave up after 2 attempts)` });
    });
    await withAnthropic(() => overloaded(), async (s, env) => {
      const err = await fail(new AnthropicProvider(fast(env, { retry })), 'anthropic');
      assert.equal(providerFailure(err, s.url)?.kind, 'server');
      assert.match(providerFailure(err, s.url)!.detail, /HTTP 529 overloaded_error: Overloaded \(gave up after 2 attempts\)$/);
    });
    await withOpenAI(() => openaiError(429, 'Rate limit reached', 'rate_limit_exceeded'), async (s, env) => {
      const err = await fail(new OpenAIProvider(fast(env, { retry })), 'openai');
      assert.equal(providerFailure(err, s.baseURL)?.kind, 'rate_limit');
    });
    await withOpenAI(() => ({ delayMs: 3000, body: openaiText('too late') }), async (s, env) => {
      const err = await fail(new OpenAIProvider(fast(env, { retry: { ...retry, timeout_ms: 100 } })), 'openai');
      assert.deepEqual(providerFailure(err, s.baseURL), { kind: 'timeout', detail: `no answer from ${s.baseURL} within 100 ms (gave up after 2 attempts)` });
    });
  });

  test('what the candidate caused stays data: 400, 404, 413, 422, a budget, a plain error, an abort', async () => {
    for (const status of [400, 404, 413, 422]) {
      await withOpenAI(() => openaiError(status, `status ${status}`), async (s, env) => {
        const err = await fail(new OpenAIProvider(fast(env, { retry })), 'openai');
        assert.ok(err instanceof ProviderError);
        assert.equal(providerFailure(err, s.baseURL), null, `status ${status}`);
      });
    }
    assert.equal(providerFailure(new Error('the task used its 100 tokens (max_task_tokens)')), null);
    await withOpenAI(() => ({ delayMs: 3000, body: openaiText('late') }), async (_s, env) => {
      const ac = new AbortController();
      setTimeout(() => ac.abort(), 50);
      const err = await new OpenAIProvider(fast(env, { retry })).call(request('openai', [user('hi')]), ac.signal).catch((e: unknown) => e);
      assert.equal(providerFailure(err), null);
    });
  });

  test('DNS and reset connections are named as such', () => {
    const conn = (code: string) => new ProviderError('x', 'openai', 'm', undefined, 3, true,
      Object.assign(new Error('Connection error.'), { name: 'APIConnectionError', cause: Object.assign(new TypeError('fetch failed'), { cause: { code } }) }));
    assert.deepEqual(providerFailure(conn('ENOTFOUND'), 'http://nowhere.test/v1'), { kind: 'connection', detail: 'cannot resolve the host of http://nowhere.test/v1' });
    assert.deepEqual(providerFailure(conn('ECONNRESET'), 'http://h/v1'), { kind: 'connection', detail: 'connection reset by http://h/v1' });
    assert.deepEqual(providerFailure(conn('EHOSTUNREACH'), 'http://h/v1'), { kind: 'connection', detail: 'cannot connect to http://h/v1 (connection error (EHOSTUNREACH))' });
  });
});
