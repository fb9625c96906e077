/**
 * Anthropic Messages API (non-streaming) through @anthropic-ai/sdk, with our own retries.
 *
 * Request: the system prompt is one text block with `cache_control: ephemeral`, and the last
 * tool carries one too, so the stable prefix (tools, then system) is cached across the turns of
 * a task. Thinking and redacted_thinking blocks from earlier turns go back VERBATIM (signature
 * included), as the API requires for tool use with extended thinking. `reasoning` blocks (from
 * OpenAI-compatible servers) have no Anthropic form and are not sent; neither are thinking
 * blocks without a signature (the API would reject them) nor empty text blocks; an error
 * tool_result with empty content is sent as "error" (the API rejects it empty).
 *
 * Usage: our `input_tokens` is the whole prompt = Anthropic's input_tokens +
 * cache_read_input_tokens + cache_creation_input_tokens (see prices.ts).
 */
import type Anthropic from '@anthropic-ai/sdk';
import { UserError } from '../../base/errors.ts';
import type { Block, ModelRequest, ModelResponse, PriceTable, Provider, RetryPolicy, Usage } from '../types.ts';
import { callWithRetry, envValue, modelResponse, resolveRetry, type ProviderOptions } from './common.ts';
import { DEFAULT_PRICES } from './prices.ts';

export const ANTHROPIC_DEFAULT_BASE_URL = 'https://api.anthropic.com';

type Body = Anthropic.MessageCreateParamsNonStreaming;
type ContentParam = Anthropic.ContentBlockParam;

const EPHEMERAL = { type: 'ephemeral' } as const;

function toContent(blocks: Block[]): ContentParam[] {
  const out: ContentParam[] = [];
  for (const b of blocks) {
    switch (b.type) {
      case 'text':
        if (b.text !== '') out.push({ type: 'text', text: b.text });
        break;
      case 'tool_use':
        out.push({ type: 'tool_use', id: b.id, name: b.name, input: isObject(b.input) ? b.input : {} });
        break;
      case 'tool_result':
        // the API rejects an error result with empty content
        out.push({ type: 'tool_result', tool_use_id: b.tool_use_id, content: b.is_error && b.content === '' ? 'error' : b.content, ...(b.is_error ? { is_error: true } : {}) });
        break;
      case 'thinking':
        if (b.signature !== undefined) out.push({ type: 'thinking', thinking: b.thinking, signature: b.signature });
        break;
      case 'redacted_thinking':
        out.push({ type: 'redacted_thinking', data: b.data });
        break;
      case 'reasoning':
        break;
    }
  }
  return out;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** ModelRequest → Messages API body (exported for tests and trace tooling). */
export function toAnthropicBody(req: ModelRequest): Body {
  const body: Body = {
    model: req.model,
    max_tokens: req.max_tokens,
    messages: req.messages.map((m) => ({ role: m.role, content: toContent(m.content) })),
  };
  if (req.system) body.system = [{ type: 'text', text: req.system, cache_control: EPHEMERAL }];
  if (req.tools.length > 0) {
    body.tools = req.tools.map((t, i) => ({
      name: t.name,
      description: t.description,
      input_schema: t.parameters as Anthropic.Tool.InputSchema,
      ...(i === req.tools.length - 1 ? { cache_control: EPHEMERAL } : {}),
    }));
  }
  if (req.thinking_budget !== undefined) body.thinking = { type: 'enabled', budget_tokens: req.thinking_budget };
  if (req.temperature !== undefined) body.temperature = req.temperature;
  if (req.top_p !== undefined) body.top_p = req.top_p;
  if (req.stop && req.stop.length > 0) body.stop_sequences = req.stop;
  return body;
}

const STOP: Record<string, ModelResponse['stop_reason']> = {
  end_turn: 'end_turn',
  tool_use: 'tool_use',
  max_tokens: 'max_tokens',
  stop_sequence: 'stop_sequence',
};

/** Messages API response → blocks, stop reason, usage. Unknown block types are left to `raw`. */
export function fromAnthropicMessage(msg: Anthropic.Message): { content: Block[]; stop_reason: ModelResponse['stop_reason']; usage: Usage } {
  const content: Block[] = [];
  for (const b of msg.content ?? []) {
    switch (b.type) {
      case 'text':
        content.push({ type: 'text', text: b.text });
        break;
      case 'tool_use':
        content.push({ type: 'tool_use', id: b.id, name: b.name, input: b.input });
        break;
      case 'thinking':
        content.push({ type: 'thinking', thinking: b.thinking, signature: b.signature });
        break;
      case 'redacted_thinking':
        content.push({ type: 'redacted_thinking', data: b.data });
        break;
      default:
        break;
    }
  }
  const u = msg.usage;
  const read = u?.cache_read_input_tokens ?? 0;
  const write = u?.cache_creation_input_tokens ?? 0;
  const usage: Usage = {
    input_tokens: (u?.input_tokens ?? 0) + read + write,
    output_tokens: u?.output_tokens ?? 0,
    cache_read_tokens: read,
    cache_write_tokens: write,
  };
  return { content, stop_reason: (msg.stop_reason && STOP[msg.stop_reason]) || 'other', usage };
}

export class AnthropicProvider implements Provider {
  readonly name = 'anthropic' as const;
  readonly baseURL: string;
  private client: Promise<Anthropic> | null = null;
  private readonly clientOptions: ConstructorParameters<typeof Anthropic>[0];
  private readonly policy: RetryPolicy;
  private readonly prices: PriceTable;

  /** Reads ANTHROPIC_API_KEY and ANTHROPIC_BASE_URL from `opts.env`; a missing key is a UserError here. */
  constructor(private readonly opts: ProviderOptions = {}) {
    const env = opts.env ?? process.env;
    const apiKey = envValue(env, 'ANTHROPIC_API_KEY');
    if (!apiKey) throw new UserError('ANTHROPIC_API_KEY is not set (needed for provider: anthropic)');
    this.baseURL = envValue(env, 'ANTHROPIC_BASE_URL') ?? ANTHROPIC_DEFAULT_BASE_URL;
    this.policy = resolveRetry(opts.retry);
    this.prices = opts.prices ?? DEFAULT_PRICES;
    this.clientOptions = {
      apiKey,
      authToken: null,
      baseURL: this.baseURL,
      maxRetries: 0,
      // our deadline (retry.ts) fires first; this is the SDK's backstop
      timeout: this.policy.timeout_ms + 1000,
    };
  }

  /** The SDK client, made on the first call: the SDK is loaded only by a run that calls a model (it takes a second or more to load). */
  private sdk(): Promise<Anthropic> {
    this.client ??= import('@anthropic-ai/sdk').then(({ default: SDK }) => new SDK(this.clientOptions));
    return this.client;
  }

  async call(req: ModelRequest, signal?: AbortSignal): Promise<ModelResponse> {
    if (req.provider !== 'anthropic') throw new Error(`AnthropicProvider got a request for provider ${req.provider}`);
    const body = toAnthropicBody(req);
    const client = await this.sdk();
    const { value: msg, attempts, latency_ms } = await callWithRetry('anthropic', req.model, this.opts, this.policy, signal, (s) =>
      client.messages.create(body, { signal: s, timeout: this.policy.timeout_ms + 1000 }),
    );
    return modelResponse(req, this.prices, fromAnthropicMessage(msg), { model: msg.model, raw: msg, raw_request: body, latency_ms, attempts });
  }
}
