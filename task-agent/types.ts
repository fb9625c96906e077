/**
 * The provider-neutral conversation format of the task-agent runtime, and the provider interface.
 * Anthropic Messages and OpenAI Chat Completions are mapped to and from these types in
 * task-agent/providers/; traces store requests and responses in this form plus each raw body.
 */

export type Block =
  | { type: 'text'; text: string }
  /** a tool call requested by the model; `input` is the parsed arguments, `raw_input` the original text when it did not parse */
  | { type: 'tool_use'; id: string; name: string; input: unknown; raw_input?: string }
  | { type: 'tool_result'; tool_use_id: string; content: string; is_error?: boolean }
  /** Anthropic extended thinking, kept verbatim (signature included) so it can be sent back unchanged */
  | { type: 'thinking'; thinking: string; signature?: string }
  | { type: 'redacted_thinking'; data: string }
  /** reasoning text some OpenAI-compatible servers return (e.g. `reasoning_content`) */
  | { type: 'reasoning'; text: string };

export interface Message {
  role: 'user' | 'assistant';
  content: Block[];
}

export interface ToolSpec {
  name: string;
  description: string;
  /** JSON Schema of the arguments object */
  parameters: Record<string, unknown>;
}

export interface ModelRequest {
  provider: 'anthropic' | 'openai';
  model: string;
  system: string;
  messages: Message[];
  tools: ToolSpec[];
  max_tokens: number;
  temperature?: number;
  top_p?: number;
  stop?: string[];
  /** Anthropic extended thinking budget; ignored by providers without it */
  thinking_budget?: number;
}

export interface Usage {
  input_tokens: number;
  output_tokens: number;
  cache_read_tokens: number;
  cache_write_tokens: number;
}

export interface ModelResponse {
  content: Block[];
  stop_reason: 'end_turn' | 'tool_use' | 'max_tokens' | 'stop_sequence' | 'other';
  usage: Usage;
  /** dollars, from the price table (0 when the model has no price) */
  cost_usd: number;
  model: string;
  /** the provider's response body, as received */
  raw: unknown;
  /** the body sent, as sent (keys never included) */
  raw_request: unknown;
  latency_ms: number;
  /** 1 + retries */
  attempts: number;
}

export interface Provider {
  readonly name: 'anthropic' | 'openai';
  /** the server it calls, for messages (`connection refused to http://127.0.0.1:9/v1`) */
  readonly baseURL?: string;
  call(req: ModelRequest, signal?: AbortSignal): Promise<ModelResponse>;
}

/** dollars per million tokens */
export interface Price {
  input: number;
  output: number;
  cache_read?: number;
  cache_write?: number;
}
export type PriceTable = Record<string, Price>;

export interface RetryPolicy {
  max_retries: number;
  base_delay_ms: number;
  max_delay_ms: number;
  /** per-attempt timeout */
  timeout_ms: number;
}
