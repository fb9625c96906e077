/**
 * Scripted LLM servers for tests: real HTTP on 127.0.0.1 (port 0) speaking the real wire formats
 * of the Anthropic Messages API and the OpenAI Chat Completions API, so the official SDKs run
 * unmodified against them.
 *
 *   const server = await startMockAnthropic([anthropicText('hi'), overloaded(), anthropicText('ok')]);
 *   env.ANTHROPIC_BASE_URL = server.url;      // the SDK posts to `${url}/v1/messages`
 *   ...
 *   server.requests[0].body.system;           // what the SDK sent, parsed
 *   await server.close();
 *
 *   const oai = await startMockOpenAI((body, i) => openaiText(`answer ${i}`));
 *   env.OPENAI_BASE_URL = oai.baseURL;        // `${url}/v1`: the SDK posts to `${baseURL}/chat/completions`
 *
 * A step is one of
 *   - a response body (any JSON value that is not a control object, or a string sent as is): 200
 *   - `{ status, headers?, body?, delayMs? }`: that status (errors: 429 + retry-after, 500, 529 …)
 *   - `{ delayMs, body }`: the body after a delay (timeouts); a client that gives up cancels it
 *   - `{ hangup: true, delayMs? }`: the socket is destroyed without a response
 * A script is an array of steps consumed in order (running out answers 500 "mock script
 * exhausted"), or a function `(requestBody, index) => step` (index counts requests from 0).
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface ControlStep {
  status?: number;
  headers?: Record<string, string>;
  /** a JSON value, or a string sent verbatim */
  body?: unknown;
  delayMs?: number;
  hangup?: boolean;
}
export type Step = ControlStep | Record<string, unknown> | string;
export type Script = Step[] | ((body: any, index: number) => Step | Promise<Step>);

export interface RecordedRequest {
  method: string;
  path: string;
  /** lower-cased header names; `authorization` and `x-api-key` removed (see apiKey) */
  headers: Record<string, string>;
  /** the key the client sent (x-api-key, or the Bearer token), for assertions on key handling */
  apiKey: string | undefined;
  /** the parsed JSON body (the raw text when it did not parse) */
  body: any;
}

export interface MockServer {
  /** http://127.0.0.1:PORT — what ANTHROPIC_BASE_URL takes */
  url: string;
  /** http://127.0.0.1:PORT/v1 — what OPENAI_BASE_URL takes */
  baseURL: string;
  port: number;
  requests: RecordedRequest[];
  close(): Promise<void>;
}

const CONTROL_KEYS = ['status', 'delayMs', 'hangup'];
function isControl(step: Step): step is ControlStep {
  return typeof step === 'object' && step !== null && !Array.isArray(step) && CONTROL_KEYS.some((k) => k in step);
}

type Flavor = 'anthropic' | 'openai';

function errorBody(flavor: Flavor, status: number, message: string): unknown {
  if (flavor === 'anthropic') {
    const type = status === 404 ? 'not_found_error' : status === 400 ? 'invalid_request_error' : 'api_error';
    return { type: 'error', error: { type, message }, request_id: nextId('req_011C', 20) };
  }
  return { error: { message, type: status === 404 ? 'invalid_request_error' : 'server_error', param: null, code: null } };
}

async function startMock(flavor: Flavor, script: Script): Promise<MockServer> {
  const requests: RecordedRequest[] = [];
  const timers = new Set<NodeJS.Timeout>();
  const endpoint = flavor === 'anthropic' ? /\/messages$/ : /\/chat\/completions$/;

  const send = (res: ServerResponse, status: number, headers: Record<string, string>, body: unknown): void => {
    if (res.destroyed || res.writableEnded) return;
    const text = typeof body === 'string' ? body : JSON.stringify(body ?? '');
    const isJson = typeof body !== 'string';
    const h: Record<string, string> = { 'content-type': isJson ? 'application/json' : 'text/plain', ...headers };
    if (flavor === 'anthropic') h['request-id'] ??= nextId('req_011C', 20);
    else h['x-request-id'] ??= nextId('req_', 32);
    res.writeHead(status, h);
    res.end(text);
  };

  const handle = async (req: IncomingMessage, res: ServerResponse, raw: string): Promise<void> => {
    const path = (req.url ?? '/').split('?')[0]!;
    let body: any = raw;
    try {
      body = raw ? JSON.parse(raw) : undefined;
    } catch {
      /* keep the text */
    }
    const headers: Record<string, string> = {};
    for (const [k, v] of Object.entries(req.headers)) {
      if (k === 'authorization' || k === 'x-api-key' || v === undefined) continue;
      headers[k] = Array.isArray(v) ? v.join(', ') : v;
    }
    const auth = req.headers['x-api-key'] ?? req.headers.authorization?.replace(/^Bearer\s+/i, '');
    const index = requests.length;
    requests.push({ method: req.method ?? '', path, headers, apiKey: Array.isArray(auth) ? auth[0] : auth, body });

    if (req.method !== 'POST' || !endpoint.test(path)) {
      send(res, 404, {}, errorBody(flavor, 404, `mock ${flavor} server: no route for ${req.method} ${path}`));
      return;
    }
    let step: Step | undefined;
    if (typeof script === 'function') step = await script(body, index);
    else {
      // Array scripts count only the requests to the endpoint.
      const served = requests.filter((r) => r.method === 'POST' && endpoint.test(r.path)).length - 1;
      step = script[served];
    }
    if (step === undefined) {
      send(res, 500, {}, errorBody(flavor, 500, `mock script exhausted at request ${index}`));
      return;
    }
    const control: ControlStep = isControl(step) ? step : { body: step };
    const act = (): void => {
      if (control.hangup) {
        req.socket.destroy();
        return;
      }
      send(res, control.status ?? 200, control.headers ?? {}, control.body);
    };
    if (control.delayMs && control.delayMs > 0) {
      const t = setTimeout(() => {
        timers.delete(t);
        act();
      }, control.delayMs);
      timers.add(t);
      res.on('close', () => {
        clearTimeout(t);
        timers.delete(t);
      });
    } else act();
  };

  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      handle(req, res, Buffer.concat(chunks).toString('utf8')).catch((e: unknown) => {
        send(res, 500, {}, errorBody(flavor, 500, `mock script threw: ${(e as Error)?.message ?? String(e)}`));
      });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  const url = `http://127.0.0.1:${port}`;
  return {
    url,
    baseURL: `${url}/v1`,
    port,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        for (const t of timers) clearTimeout(t);
        timers.clear();
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

/** Serves POST /v1/messages (any path ending in /messages). */
export function startMockAnthropic(script: Script): Promise<MockServer> {
  return startMock('anthropic', script);
}

/** Serves POST /v1/chat/completions (any path ending in /chat/completions). */
export function startMockOpenAI(script: Script): Promise<MockServer> {
  return startMock('openai', script);
}

// ---------------------------------------------------------------------------------------------
// ids: realistic shapes, deterministic (a counter), unique within a test process

let counter = 0;
const ALPHABET = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';
export function nextId(prefix: string, length: number): string {
  let n = ++counter * 7919 + 104729;
  let s = '';
  while (s.length < length) {
    s += ALPHABET[n % 62];
    n = Math.floor(n / 62) + s.length * 31 + 17;
  }
  return prefix + s;
}

// ---------------------------------------------------------------------------------------------
// Anthropic Messages API bodies

export const MOCK_ANTHROPIC_MODEL = 'claude-sonnet-4-20250514';

export interface AnthropicUsage {
  input_tokens: number;
  output_tokens: number;
  cache_creation_input_tokens: number;
  cache_read_input_tokens: number;
}
type AnyBlock = Record<string, unknown>;

export function anthropicMessage(content: AnyBlock[], opts: { usage?: Partial<AnthropicUsage>; stop_reason?: string; model?: string } = {}): Record<string, unknown> {
  const u: AnthropicUsage = { input_tokens: 25, output_tokens: 12, cache_creation_input_tokens: 0, cache_read_input_tokens: 0, ...opts.usage };
  return {
    id: nextId('msg_01', 22),
    type: 'message',
    role: 'assistant',
    model: opts.model ?? MOCK_ANTHROPIC_MODEL,
    content,
    stop_reason: opts.stop_reason ?? (content.some((b) => b.type === 'tool_use') ? 'tool_use' : 'end_turn'),
    stop_sequence: null,
    usage: {
      ...u,
      cache_creation: { ephemeral_5m_input_tokens: u.cache_creation_input_tokens, ephemeral_1h_input_tokens: 0 },
      server_tool_use: null,
      service_tier: 'standard',
    },
  };
}

export const anthropicBlocks = {
  text: (text: string): AnyBlock => ({ type: 'text', text }),
  toolUse: (name: string, input: unknown, id = nextId('toolu_01', 22)): AnyBlock => ({ type: 'tool_use', id, name, input }),
  thinking: (thinking: string, signature: string): AnyBlock => ({ type: 'thinking', thinking, signature }),
  redactedThinking: (data: string): AnyBlock => ({ type: 'redacted_thinking', data }),
};

export function anthropicText(text: string, usage?: Partial<AnthropicUsage>): Record<string, unknown> {
  return anthropicMessage([anthropicBlocks.text(text)], { usage });
}

export function anthropicToolUse(name: string, input: unknown, id?: string, opts: { text?: string; usage?: Partial<AnthropicUsage> } = {}): Record<string, unknown> {
  const content = [...(opts.text ? [anthropicBlocks.text(opts.text)] : []), anthropicBlocks.toolUse(name, input, id)];
  return anthropicMessage(content, { usage: opts.usage });
}

/** A thinking block (with its signature) followed by `then`: strings become text blocks. */
export function anthropicThinking(thinking: string, signature: string, ...then: Array<string | AnyBlock>): Record<string, unknown> {
  const rest = then.map((b) => (typeof b === 'string' ? anthropicBlocks.text(b) : b));
  return anthropicMessage([anthropicBlocks.thinking(thinking, signature), ...rest]);
}

/** An error response in Anthropic's shape: `{type:'error', error:{type, message}}`. */
export function anthropicError(status: number, type: string, message: string, headers?: Record<string, string>): ControlStep {
  return { status, headers, body: { type: 'error', error: { type, message }, request_id: nextId('req_011C', 20) } };
}

/** 529 overloaded_error, as the API sends it under load. */
export function overloaded(): ControlStep {
  return anthropicError(529, 'overloaded_error', 'Overloaded');
}

// ---------------------------------------------------------------------------------------------
// OpenAI Chat Completions bodies

export const MOCK_OPENAI_MODEL = 'gpt-4.1-2025-04-14';

export interface OpenAIUsage {
  prompt_tokens: number;
  completion_tokens: number;
  cached_tokens: number;
  reasoning_tokens: number;
}

export function openaiCompletion(
  message: Record<string, unknown>,
  opts: { usage?: Partial<OpenAIUsage>; finish_reason?: string; model?: string } = {},
): Record<string, unknown> {
  const u: OpenAIUsage = { prompt_tokens: 31, completion_tokens: 9, cached_tokens: 0, reasoning_tokens: 0, ...opts.usage };
  const hasCalls = Array.isArray(message.tool_calls) && message.tool_calls.length > 0;
  return {
    id: nextId('chatcmpl-', 29),
    object: 'chat.completion',
    created: 1_763_600_000 + counter,
    model: opts.model ?? MOCK_OPENAI_MODEL,
    choices: [
      {
        index: 0,
        message: { role: 'assistant', content: null, refusal: null, annotations: [], ...message },
        logprobs: null,
        finish_reason: opts.finish_reason ?? (hasCalls ? 'tool_calls' : 'stop'),
      },
    ],
    usage: {
      prompt_tokens: u.prompt_tokens,
      completion_tokens: u.completion_tokens,
      total_tokens: u.prompt_tokens + u.completion_tokens,
      prompt_tokens_details: { cached_tokens: u.cached_tokens, audio_tokens: 0 },
      completion_tokens_details: { reasoning_tokens: u.reasoning_tokens, audio_tokens: 0, accepted_prediction_tokens: 0, rejected_prediction_tokens: 0 },
    },
    service_tier: 'default',
    system_fingerprint: 'fp_b3f1157249',
  };
}

/** A plain answer; `extra` adds fields to the message (e.g. `{ reasoning_content: '…' }` as vLLM/DeepSeek send). */
export function openaiText(text: string, usage?: Partial<OpenAIUsage>, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return openaiCompletion({ content: text, ...extra }, { usage });
}

export function openaiToolCallPart(name: string, argsString: string, id = nextId('call_', 24)): Record<string, unknown> {
  return { id, type: 'function', function: { name, arguments: argsString } };
}

/** One tool call; `argsString` is sent verbatim (so it can be malformed JSON). */
export function openaiToolCall(name: string, argsString: string, id?: string, opts: { text?: string; usage?: Partial<OpenAIUsage> } = {}): Record<string, unknown> {
  return openaiCompletion({ content: opts.text ?? null, tool_calls: [openaiToolCallPart(name, argsString, id)] }, { usage: opts.usage });
}

/** An error response in OpenAI's shape: `{error:{message, type, param, code}}`. */
export function openaiError(status: number, message: string, type = 'invalid_request_error', code: string | null = null, headers?: Record<string, string>): ControlStep {
  return { status, headers, body: { error: { message, type, param: null, code } } };
}
