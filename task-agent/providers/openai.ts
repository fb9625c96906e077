/**
 * OpenAI Chat Completions (non-streaming) through the `openai` SDK, with our own retries. Any
 * OpenAI-compatible server works by base URL (Ollama, llama.cpp, vLLM, LM Studio, …).
 *
 * Request: the system prompt is the first `system` message; a user turn's tool_result blocks
 * become `role:'tool'` messages (an error result's content is prefixed "ERROR: "), placed before
 * the turn's text so they directly follow the assistant's tool_calls. Thinking / reasoning blocks
 * are not sent back (Chat Completions has no place for them). A tool call whose arguments did not
 * parse is sent back with arguments "{}" (servers such as vLLM re-parse them and would reject the
 * request); the tool result tells the model what went wrong.
 * The token limit is `max_completion_tokens` for api.openai.com (required by o-series and later
 * models) and `max_tokens` elsewhere (what compatible servers understand).
 *
 * Response: `reasoning_content` (vLLM, DeepSeek, llama.cpp) or `reasoning` (Ollama, OpenRouter)
 * becomes a `reasoning` block, first; malformed tool arguments become `input: {}` with
 * `raw_input` = the text as received.
 *
 * Usage: `input_tokens` = prompt_tokens (the whole prompt, cached part included),
 * `cache_read_tokens` = prompt_tokens_details.cached_tokens, `cache_write_tokens` = 0,
 * `output_tokens` = completion_tokens (reasoning tokens included). See prices.ts.
 */
import type OpenAI from 'openai';
import type {
  ChatCompletion,
  ChatCompletionCreateParamsNonStreaming,
  ChatCompletionMessageParam,
  ChatCompletionMessageFunctionToolCall,
} from 'openai/resources/chat/completions';
import { UserError } from '../../base/errors.ts';
import type { Block, ModelRequest, ModelResponse, PriceTable, Provider, RetryPolicy, Usage } from '../types.ts';
import { callWithRetry, envValue, modelResponse, resolveRetry, type ProviderOptions } from './common.ts';
import { ProviderError } from './errors.ts';
import { DEFAULT_PRICES } from './prices.ts';

export const OPENAI_DEFAULT_BASE_URL = 'https://api.openai.com/v1';
/** sent as the key to servers that need none (local ones ignore it) */
export const LOCAL_PLACEHOLDER_KEY = 'local';

type Body = ChatCompletionCreateParamsNonStreaming;

export function isOpenAIHost(baseURL: string): boolean {
  const host = new URL(baseURL).hostname.toLowerCase();
  return host === 'openai.com' || host.endsWith('.openai.com');
}

function toMessages(req: ModelRequest): ChatCompletionMessageParam[] {
  const out: ChatCompletionMessageParam[] = [];
  if (req.system) out.push({ role: 'system', content: req.system });
  for (const m of req.messages) {
    if (m.role === 'assistant') {
      const text = m.content.flatMap((b) => (b.type === 'text' ? [b.text] : [])).join('');
      const calls = m.content.flatMap((b) =>
        b.type === 'tool_use'
          ? [
              {
                id: b.id,
                type: 'function' as const,
                function: { name: b.name, arguments: b.raw_input !== undefined ? '{}' : JSON.stringify(b.input ?? {}) },
              },
            ]
          : [],
      );
      if (text === '' && calls.length === 0) continue; // e.g. a turn that held only thinking
      out.push({ role: 'assistant', content: text === '' && calls.length > 0 ? null : text, ...(calls.length > 0 ? { tool_calls: calls } : {}) });
    } else {
      const texts: string[] = [];
      for (const b of m.content) {
        if (b.type === 'tool_result') out.push({ role: 'tool', tool_call_id: b.tool_use_id, content: b.is_error ? `ERROR: ${b.content}` : b.content });
        else if (b.type === 'text') texts.push(b.text);
      }
      if (texts.length > 0) out.push({ role: 'user', content: texts.join('\n\n') });
    }
  }
  return out;
}

/** ModelRequest → Chat Completions body (exported for tests and trace tooling). */
export function toOpenAIBody(req: ModelRequest, opts: { maxTokensField?: 'max_tokens' | 'max_completion_tokens' } = {}): Body {
  const body: Body = { model: req.model, messages: toMessages(req) };
  body[opts.maxTokensField ?? 'max_tokens'] = req.max_tokens;
  if (req.tools.length > 0) {
    body.tools = req.tools.map((t) => ({ type: 'function', function: { name: t.name, description: t.description, parameters: t.parameters } }));
  }
  if (req.temperature !== undefined) body.temperature = req.temperature;
  if (req.top_p !== undefined) body.top_p = req.top_p;
  if (req.stop && req.stop.length > 0) body.stop = req.stop;
  return body;
}

/** Parses tool-call arguments: an object, or `{}` plus the raw text when it is not a JSON object. */
export function parseArguments(args: string | undefined | null): { input: unknown; raw_input?: string } {
  if (args === undefined || args === null || args.trim() === '') return { input: {} };
  try {
    const v: unknown = JSON.parse(args);
    if (typeof v === 'object' && v !== null && !Array.isArray(v)) return { input: v };
  } catch {
    /* below */
  }
  return { input: {}, raw_input: args };
}

/** Chat Completions response → blocks, stop reason, usage. */
export function fromOpenAICompletion(c: ChatCompletion): { content: Block[]; stop_reason: ModelResponse['stop_reason']; usage: Usage } {
  const choice = c.choices?.[0];
  const msg = (choice?.message ?? {}) as ChatCompletion.Choice['message'] & { reasoning_content?: unknown; reasoning?: unknown };
  const content: Block[] = [];
  const reasoning = typeof msg.reasoning_content === 'string' ? msg.reasoning_content : typeof msg.reasoning === 'string' ? msg.reasoning : '';
  if (reasoning) content.push({ type: 'reasoning', text: reasoning });
  if (typeof msg.content === 'string' && msg.content !== '') content.push({ type: 'text', text: msg.content });
  else if (typeof msg.refusal === 'string' && msg.refusal !== '') content.push({ type: 'text', text: msg.refusal });
  const calls = (msg.tool_calls ?? []).filter((t): t is ChatCompletionMessageFunctionToolCall => t.type === 'function' || 'function' in t);
  calls.forEach((t, i) => {
    const { input, raw_input } = parseArguments(t.function?.arguments);
    content.push({ type: 'tool_use', id: t.id || `call_${c.id ?? 'local'}_${i}`, name: t.function?.name ?? '', input, ...(raw_input !== undefined ? { raw_input } : {}) });
  });
  let stop_reason: ModelResponse['stop_reason'];
  switch (choice?.finish_reason) {
    case 'tool_calls':
    case 'function_call':
      stop_reason = 'tool_use';
      break;
    case 'stop':
      // some local servers say "stop" for a turn with tool calls
      stop_reason = calls.length > 0 ? 'tool_use' : 'end_turn';
      break;
    case 'length':
      stop_reason = 'max_tokens';
      break;
    default:
      stop_reason = calls.length > 0 ? 'tool_use' : 'other';
  }
  const u = c.usage;
  const usage: Usage = {
    input_tokens: u?.prompt_tokens ?? 0,
    output_tokens: u?.completion_tokens ?? 0,
    cache_read_tokens: u?.prompt_tokens_details?.cached_tokens ?? 0,
    cache_write_tokens: 0,
  };
  return { content, stop_reason, usage };
}

export class OpenAIProvider implements Provider {
  readonly name = 'openai' as const;
  readonly baseURL: string;
  /** false when the key is the local placeholder */
  readonly hasKey: boolean;
  private client: Promise<OpenAI> | null = null;
  private readonly clientOptions: ConstructorParameters<typeof OpenAI>[0];
  private readonly policy: RetryPolicy;
  private readonly prices: PriceTable;
  private readonly maxTokensField: 'max_tokens' | 'max_completion_tokens';

  /**
   * Reads OPENAI_API_KEY and OPENAI_BASE_URL from `opts.env`. Without a key: a base URL on a
   * non-openai.com host gets the placeholder key 'local'; otherwise a UserError here.
   */
  constructor(private readonly opts: ProviderOptions = {}) {
    const env = opts.env ?? process.env;
    this.baseURL = envValue(env, 'OPENAI_BASE_URL') ?? OPENAI_DEFAULT_BASE_URL;
    let official: boolean;
    try {
      official = isOpenAIHost(this.baseURL);
    } catch {
      throw new UserError(`OPENAI_BASE_URL is not a valid URL: ${this.baseURL} (e.g. http://127.0.0.1:11434/v1 for Ollama)`);
    }
    const key = envValue(env, 'OPENAI_API_KEY');
    if (!key && official) {
      throw new UserError('OPENAI_API_KEY is not set (needed for provider: openai; or set OPENAI_BASE_URL to a local OpenAI-compatible server)');
    }
    this.hasKey = key !== undefined;
    this.maxTokensField = official ? 'max_completion_tokens' : 'max_tokens';
    this.policy = resolveRetry(opts.retry);
    this.prices = opts.prices ?? DEFAULT_PRICES;
    this.clientOptions = {
      apiKey: key ?? LOCAL_PLACEHOLDER_KEY,
      baseURL: this.baseURL,
      organization: envValue(env, 'OPENAI_ORG_ID') ?? null,
      project: envValue(env, 'OPENAI_PROJECT_ID') ?? null,
      maxRetries: 0,
      timeout: this.policy.timeout_ms + 1000,
    };
  }

  /** The SDK client, made on the first call: the SDK is loaded only by a run that calls a model (it takes a second or more to load). */
  private sdk(): Promise<OpenAI> {
    this.client ??= import('openai').then(({ default: SDK }) => new SDK(this.clientOptions));
    return this.client;
  }

  async call(req: ModelRequest, signal?: AbortSignal): Promise<ModelResponse> {
    if (req.provider !== 'openai') throw new Error(`OpenAIProvider got a request for provider ${req.provider}`);
    const body = toOpenAIBody(req, { maxTokensField: this.maxTokensField });
    const client = await this.sdk();
    let result;
    try {
      result = await callWithRetry('openai', req.model, this.opts, this.policy, signal, (s) =>
        client.chat.completions.create(body, { signal: s, timeout: this.policy.timeout_ms + 1000 }),
      );
    } catch (err) {
      // The most common local-server mistake: a base URL without its /v1.
      if (err instanceof ProviderError && err.status === 404 && !/\/v1\/?$/.test(this.baseURL)) {
        throw new ProviderError(
          `${err.message}; check OPENAI_BASE_URL (${this.baseURL}): OpenAI-compatible servers usually want the /v1 suffix`,
          err.provider,
          err.model,
          err.status,
          err.attempts,
          err.retryable,
          err.cause,
        );
      }
      throw err;
    }
    const { value: completion, attempts, latency_ms } = result;
    return modelResponse(req, this.prices, fromOpenAICompletion(completion), { model: completion.model, raw: completion, raw_request: body, latency_ms, attempts });
  }
}
