/**
 * The harness format: a folder with harness.yaml, prompts/*.md and tools/*.ts — the editable
 * surface of a harness study. Loading is pure (no model call, no tool code executed): it
 * validates the YAML, reads the prompts, and lists the tool modules to load inside the sandbox.
 */
import { existsSync, readFileSync, realpathSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseDocument } from 'yaml';
import { z } from 'zod';
import { UsageError } from '../base/errors.ts';
import type { Task } from '../benchmarks/types.ts';

/** inside the harness folder: relative, no `..` segment (a candidate's harness.yaml must not read the host's files into a prompt) */
const PromptPath = z.string().regex(/^(?!.*(?:^|\/)\.\.(?:\/|$))[^/].*\.md$/, 'a prompt file inside the harness folder, e.g. prompts/system.md (relative, no ..)');
const ToolName = z.string().regex(/^[a-z][a-z0-9_]*$/, 'a tool name of lowercase letters, digits and _ (tools/<name>.ts)');

/** What a routing rule may change for the tasks it matches. */
const RouteTarget = z.strictObject({
  system: PromptPath.optional(),
  user: PromptPath.optional(),
  model: z.string().min(1).optional(),
  tools: z.array(ToolName).optional(),
  max_steps: z.number().int().positive().optional(),
  temperature: z.number().min(0).max(2).optional(),
});

const RouteRule = RouteTarget.extend({
  /** match: every listed tag present in task.tags, and every field equal to task.input[field] */
  when: z.strictObject({
    tags: z.array(z.string()).optional(),
    fields: z.record(z.string(), z.union([z.string(), z.number(), z.boolean()])).optional(),
  }),
});

export const HarnessSchema = z.strictObject({
  provider: z.enum(['anthropic', 'openai']),
  model: z.string().min(1),
  system: PromptPath,
  /** the first user message; default: the task's input fields, one per paragraph */
  user: PromptPath.optional(),
  max_steps: z.number().int().positive().default(8),
  /** max output tokens of one model call */
  max_tokens: z.number().int().positive().default(1024),
  /** total tokens (input + output) one task may use across its calls; 0 = no limit */
  max_task_tokens: z.number().int().nonnegative().default(0),
  temperature: z.number().min(0).max(2).optional(),
  top_p: z.number().gt(0).max(1).optional(),
  stop: z.array(z.string()).optional(),
  thinking_budget: z.number().int().positive().optional(),
  tools: z.array(ToolName).default([]),
  routing: z.strictObject({
    rules: z.array(RouteRule).default([]),
    /** a cheap classifier call picks a route by label; its prompt sees the task, answers one label */
    classifier: z.strictObject({
      prompt: PromptPath,
      model: z.string().min(1).optional(),
      routes: z.record(z.string().regex(/^[A-Za-z0-9_-]+$/), RouteTarget),
    }).optional(),
  }).default({ rules: [] }),
  retry: z.strictObject({
    max_retries: z.number().int().nonnegative().default(4),
    base_delay_ms: z.number().nonnegative().default(500),
    max_delay_ms: z.number().positive().default(30_000),
    timeout_ms: z.number().positive().default(120_000),
  }).default({ max_retries: 4, base_delay_ms: 500, max_delay_ms: 30_000, timeout_ms: 120_000 }),
  /** wall-clock deadline of one task, model calls included */
  task_timeout_seconds: z.number().positive().default(300),
});

export type HarnessConfig = z.infer<typeof HarnessSchema>;

export interface Harness {
  dir: string;
  config: HarnessConfig;
  /** prompt path (as written in harness.yaml) -> text */
  prompts: Record<string, string>;
  /** tool name -> absolute module path */
  toolModules: Record<string, string>;
}

function formatIssue(file: string, error: z.ZodError): string {
  const issue = error.issues[0]!;
  const field = issue.path.map((p) => (typeof p === 'number' ? `[${p}]` : String(p))).join('.').replace(/\.\[/g, '[');
  if (issue.code === 'unrecognized_keys') return `${file}: unknown field ${issue.keys.map((k) => `\`${[...issue.path, k].join('.')}\``).join(', ')}`;
  const msg = issue.code === 'invalid_value' && 'values' in issue
    ? `one of ${(issue.values as unknown[]).map((v) => JSON.stringify(v)).join(', ')}`
    : issue.message.replace(/^Invalid input: /, '');
  return `${file}: field \`${field || '(top level)'}\`: ${msg}`;
}

export function loadHarness(dir: string): Harness {
  const abs = resolve(dir);
  const file = join(abs, 'harness.yaml');
  if (!existsSync(file)) throw new UsageError(`${file}: harness.yaml not found (a harness is a folder with harness.yaml, prompts/ and tools/)`);
  const doc = parseDocument(readFileSync(file, 'utf8'));
  if (doc.errors.length) throw new UsageError(`${file}: not valid YAML (${doc.errors[0]!.message.split('\n')[0]})`);
  const parsed = HarnessSchema.safeParse(doc.toJS() ?? {});
  if (!parsed.success) throw new UsageError(formatIssue(file, parsed.error));
  const config = parsed.data;
  const promptPaths = new Set<string>([config.system]);
  if (config.user) promptPaths.add(config.user);
  const toolNames = new Set(config.tools);
  const targets = [...config.routing.rules, ...Object.values(config.routing.classifier?.routes ?? {})];
  for (const t of targets) {
    if (t.system) promptPaths.add(t.system);
    if (t.user) promptPaths.add(t.user);
    t.tools?.forEach((n) => toolNames.add(n));
  }
  if (config.routing.classifier) promptPaths.add(config.routing.classifier.prompt);
  const prompts: Record<string, string> = {};
  for (const p of promptPaths) {
    const f = join(abs, p);
    if (!existsSync(f)) throw new UsageError(`${file}: prompt ${p} not found in the harness folder`);
    // read only a regular file that is inside the folder once links are followed (not a FIFO, not a link out)
    const real = realpathSync(f);
    if (!real.startsWith(`${realpathSync(abs)}/`) || !statSync(real).isFile()) throw new UsageError(`${file}: prompt ${p} is not a file inside the harness folder`);
    prompts[p] = readFileSync(real, 'utf8');
  }
  const toolModules: Record<string, string> = {};
  for (const n of toolNames) {
    const f = join(abs, 'tools', `${n}.ts`);
    if (!existsSync(f)) throw new UsageError(`${file}: tool ${n} has no module tools/${n}.ts`);
    toolModules[n] = f;
  }
  return { dir: abs, config, prompts, toolModules };
}

/** `{{task.field}}`, `{{task.id}}`, `{{task.tags}}`; an unknown field renders empty. */
export function renderTemplate(template: string, task: Task): string {
  return template.replace(/\{\{\s*task\.([A-Za-z0-9_]+)\s*\}\}/g, (_, field: string) => {
    if (field === 'id') return task.id;
    if (field === 'tags') return (task.tags ?? []).join(', ');
    const v = task.input[field];
    if (v === undefined || v === null) return '';
    return typeof v === 'string' ? v : JSON.stringify(v);
  });
}

export function defaultUserMessage(task: Task): string {
  const entries = Object.entries(task.input);
  if (entries.length === 1) {
    const v = entries[0]![1];
    return typeof v === 'string' ? v : JSON.stringify(v);
  }
  return entries.map(([k, v]) => `${k}:\n${typeof v === 'string' ? v : JSON.stringify(v, null, 2)}`).join('\n\n');
}

/** The settings one task runs with, after routing rules (first match wins). */
export interface Route {
  system: string;
  user: string | undefined;
  model: string;
  tools: string[];
  max_steps: number;
  temperature: number | undefined;
  /** which rule or classifier label applied ('default' when none) */
  label: string;
}

export function staticRoute(h: HarnessConfig, task: Task): Route {
  const base: Route = {
    system: h.system, user: h.user, model: h.model, tools: h.tools, max_steps: h.max_steps, temperature: h.temperature, label: 'default',
  };
  for (const [i, rule] of h.routing.rules.entries()) {
    const tagsOk = (rule.when.tags ?? []).every((t) => task.tags?.includes(t));
    const fieldsOk = Object.entries(rule.when.fields ?? {}).every(([k, v]) => task.input[k] === v);
    if (tagsOk && fieldsOk) return applyTarget(base, rule, `rule ${i + 1}`);
  }
  return base;
}

export function applyTarget(base: Route, t: z.infer<typeof RouteTarget>, label: string): Route {
  return {
    system: t.system ?? base.system,
    user: t.user ?? base.user,
    model: t.model ?? base.model,
    tools: t.tools ?? base.tools,
    max_steps: t.max_steps ?? base.max_steps,
    temperature: t.temperature ?? base.temperature,
    label,
  };
}
