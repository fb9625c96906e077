/**
 * Model prices and the cost of one call.
 *
 * Usage convention (both providers): `input_tokens` is the WHOLE prompt — uncached tokens, cache
 * reads and cache writes together (it excludes nothing). `cache_read_tokens` and
 * `cache_write_tokens` are the parts of it read from / written to the prompt cache. So
 *
 *   cost = (input − cache_read − cache_write) · input
 *        + cache_read · cache_read_price + cache_write · cache_write_price + output · output
 *
 * (per million tokens). Anthropic reports the three parts separately (its `input_tokens` is the
 * uncached part only): the provider adds them up. OpenAI's `prompt_tokens` already includes
 * `cached_tokens`. A price without `cache_read` charges 0.1 × input for cache reads, one without
 * `cache_write` charges 1.25 × input for cache writes (Anthropic's 5-minute cache rates).
 *
 * Arithmetic is exact: prices are scaled to integers (1e-6 $/Mtok) and summed as BigInt, so
 * the result is the double nearest to the true decimal cost.
 */
import { readFileSync } from 'node:fs';
import { parseDocument } from 'yaml';
import { z } from 'zod';
import { UserError } from '../../base/errors.ts';
import type { Price, PriceTable, Usage } from '../types.ts';

/**
 * Default prices, dollars per million tokens.
 * Source: https://www.anthropic.com/pricing (and docs.anthropic.com "Pricing") and
 * https://openai.com/api/pricing/, as published in late 2025 (standard tier, prompts ≤ 200k
 * tokens, 5-minute cache writes; OpenAI charges nothing extra for cache writes).
 * Prices change: USERS SHOULD OVERRIDE THEM with a prices file (`loadPrices(path)`) and not
 * rely on these defaults for budgets. Models are matched by the longest prefix, so dated ids
 * (claude-sonnet-4-20250514, gpt-4o-2024-08-06) find their family; a model with no entry
 * (a local model on Ollama, llama.cpp, vLLM …) costs 0.
 */
export const DEFAULT_PRICES: PriceTable = {
  // Anthropic
  'claude-opus-4': { input: 15, output: 75, cache_read: 1.5, cache_write: 18.75 },
  'claude-opus-4-0': { input: 15, output: 75, cache_read: 1.5, cache_write: 18.75 },
  'claude-opus-4-1': { input: 15, output: 75, cache_read: 1.5, cache_write: 18.75 },
  'claude-opus-4-5': { input: 5, output: 25, cache_read: 0.5, cache_write: 6.25 },
  'claude-opus-4-6': { input: 5, output: 25, cache_read: 0.5, cache_write: 6.25 },
  'claude-sonnet-4': { input: 3, output: 15, cache_read: 0.3, cache_write: 3.75 },
  'claude-haiku-4': { input: 1, output: 5, cache_read: 0.1, cache_write: 1.25 },
  'claude-3-7-sonnet': { input: 3, output: 15, cache_read: 0.3, cache_write: 3.75 },
  'claude-3-5-haiku': { input: 0.8, output: 4, cache_read: 0.08, cache_write: 1 },
  // OpenAI (cache_write = input: no surcharge)
  'gpt-4.1': { input: 2, output: 8, cache_read: 0.5, cache_write: 2 },
  'gpt-4.1-mini': { input: 0.4, output: 1.6, cache_read: 0.1, cache_write: 0.4 },
  'gpt-4.1-nano': { input: 0.1, output: 0.4, cache_read: 0.025, cache_write: 0.1 },
  'gpt-4o': { input: 2.5, output: 10, cache_read: 1.25, cache_write: 2.5 },
  'gpt-4o-mini': { input: 0.15, output: 0.6, cache_read: 0.075, cache_write: 0.15 },
  o3: { input: 2, output: 8, cache_read: 0.5, cache_write: 2 },
  'o3-mini': { input: 1.1, output: 4.4, cache_read: 0.55, cache_write: 1.1 },
  'o3-pro': { input: 20, output: 80, cache_read: 20, cache_write: 20 },
  'o4-mini': { input: 1.1, output: 4.4, cache_read: 0.275, cache_write: 1.1 },
  'gpt-5': { input: 1.25, output: 10, cache_read: 0.125, cache_write: 1.25 },
  'gpt-5-mini': { input: 0.25, output: 2, cache_read: 0.025, cache_write: 0.25 },
  'gpt-5-nano': { input: 0.05, output: 0.4, cache_read: 0.005, cache_write: 0.05 },
};

/** The price of `model`: an exact key, else the longest key that is a prefix of it. */
export function priceFor(model: string, table: PriceTable): Price | undefined {
  if (Object.hasOwn(table, model)) return table[model];
  let best: string | undefined;
  for (const key of Object.keys(table)) {
    if (model.startsWith(key) && (best === undefined || key.length > best.length)) best = key;
  }
  return best === undefined ? undefined : table[best];
}

/** Price in units of 1e-6 dollars per million tokens (= 1e-12 dollars per token). */
function micro(p: number): bigint {
  return BigInt(Math.round(p * 1e6));
}

/** Dollars for `usage` on `model` (0 when the model has no price). Exact; see the module comment. */
export function costOf(model: string, usage: Usage, table: PriceTable): number {
  const price = priceFor(model, table);
  if (!price) return 0;
  const tok = (n: number): bigint => BigInt(Math.max(0, Math.round(n)));
  const uncached = tok(usage.input_tokens - usage.cache_read_tokens - usage.cache_write_tokens);
  // Everything in units of 1e-14 dollars: token · micro-price · 100 (so ×0.1 and ×1.25 stay integral).
  const input = micro(price.input);
  const read = price.cache_read !== undefined ? micro(price.cache_read) * 100n : input * 10n;
  const write = price.cache_write !== undefined ? micro(price.cache_write) * 100n : input * 125n;
  const total =
    uncached * input * 100n + tok(usage.cache_read_tokens) * read + tok(usage.cache_write_tokens) * write + tok(usage.output_tokens) * micro(price.output) * 100n;
  return Number(total) / 1e14;
}

const PriceSchema = z
  .object({
    input: z.number().nonnegative(),
    output: z.number().nonnegative(),
    cache_read: z.number().nonnegative().optional(),
    cache_write: z.number().nonnegative().optional(),
  })
  .strict();
const PriceFileSchema = z.record(z.string().min(1), PriceSchema);

function describePath(path: PropertyKey[]): string {
  return path.length === 0 ? '(top level)' : path.map(String).join('.');
}

/**
 * The default table with a prices file merged over it (its entries win; the rest stay).
 * The file is JSON or YAML: `{ "<model-prefix>": { input, output, cache_read?, cache_write? } }`,
 * dollars per million tokens. Errors are one line naming the file and the field.
 */
export function loadPrices(overridePath?: string, defaults: PriceTable = DEFAULT_PRICES): PriceTable {
  if (!overridePath) return { ...defaults };
  let text: string;
  try {
    text = readFileSync(overridePath, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new UserError(`prices file ${overridePath}: cannot read it (${code ?? (e as Error).message})`);
  }
  let data: unknown;
  if (/\.json$/i.test(overridePath)) {
    try {
      data = JSON.parse(text);
    } catch (e) {
      throw new UserError(`prices file ${overridePath}: not valid JSON (${(e as Error).message.split('\n')[0]})`);
    }
  } else {
    const doc = parseDocument(text, { prettyErrors: false });
    if (doc.errors.length > 0) {
      const err = doc.errors[0]!;
      const line = err.linePos?.[0]?.line;
      throw new UserError(`prices file ${overridePath}${line ? `:${line}` : ''}: not valid YAML (${err.message.split('\n')[0]})`);
    }
    data = doc.toJS();
  }
  const parsed = PriceFileSchema.safeParse(data ?? {});
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    if (issue.code === 'unrecognized_keys') {
      const fields = issue.keys.map((k) => `\`${describePath([...issue.path, k])}\``).join(', ');
      throw new UserError(`prices file ${overridePath}: unknown field ${fields} (allowed: input, output, cache_read, cache_write)`);
    }
    let message = issue.message.replace(/^Invalid input: /, '');
    if (issue.code === 'invalid_type') message = `expected a ${issue.expected === 'number' ? 'number (dollars per million tokens)' : issue.expected}${/received (\w+)/.exec(issue.message)?.[0] ? `, ${/received (\w+)/.exec(issue.message)![0]}` : ''}`;
    throw new UserError(`prices file ${overridePath}: field \`${describePath(issue.path)}\`: ${message}`);
  }
  return { ...defaults, ...parsed.data };
}
