/**
 * What the loop gives a proposer besides the files and the ledger, and what it checks on the way
 * back: the proposal's own trace (a meta-agent conversation is stored like a task trace, with
 * role 'proposal', and linked from the experiment), its spend against the per-proposal and the
 * run's budgets, and the guards every proposal passes whatever made it (seed-only changes are
 * rejected, whitespace-only changes skipped).
 */
import { randomUUID } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { insertTrace, insertSpan, finishTrace, type DB, type SpanRecord } from '../traces/index.ts';
import type { ModelRequest, ModelResponse, Provider } from '../task-agent/types.ts';
import { ProposalBudgetExceeded, type FileEdit, type ProposalServices, type ProposalSpan } from '../meta-agent/types.ts';
import type { SpendGuard } from '../task-agent/evaluate.ts';
import type { Study } from './study.ts';
import { UsageError } from '../base/errors.ts';

const ROOT = resolve(import.meta.dirname, '..');

/** The direction text: the study's `proposer.program` (relative to the study file), else meta-agent/program.md. */
export function loadProgram(study: Study, studyDir: string): string {
  const p = study.proposer.program ? resolve(studyDir, study.proposer.program) : join(ROOT, 'meta-agent', 'program.md');
  if (!existsSync(p)) throw new UsageError(`field \`proposer.program\`: ${p} does not exist`);
  return readFileSync(p, 'utf8');
}

/**
 * One proposal's services: every model call is charged to the proposal and to the run, and
 * recorded (with every other span the proposer reports) in the proposal's trace. The trace is
 * written when the first span arrives, span by span, so a proposal cut short by a kill still
 * shows what it spent; `finish` closes it once.
 */
export class ProposalSession implements ProposalServices {
  readonly traceId = randomUUID();
  private started = Date.now();
  private opened = false;
  private tokens = 0;
  private dollars = 0;
  private usage = { input_tokens: 0, output_tokens: 0, cache_read_tokens: 0, cache_write_tokens: 0 };

  constructor(
    private readonly o: {
      /** where the trace goes; null: a store that keeps no traces, and a proposer that records one is refused */
      db: DB | null;
      runId: string;
      seq: number;
      proposer: string;
      provider: Provider | null;
      guard: SpendGuard;
      limits: { tokens: number; dollars: number };
      signal?: AbortSignal;
    },
  ) {}

  /** did the proposer record anything (is there a trace to link)? */
  get hasTrace(): boolean {
    return this.opened;
  }

  spent(): { tokens: number; dollars: number } {
    return { tokens: this.tokens, dollars: this.dollars };
  }

  /** the store's handle, where the trace is written */
  private get db(): DB {
    if (!this.o.db) throw new UsageError(`the ${this.o.proposer} proposer records its proposals as traces, and this run's store keeps none: run it on a store file`);
    return this.o.db;
  }

  private open(): void {
    if (this.opened) return;
    insertTrace(this.db, {
      id: this.traceId, role: 'proposal', run_id: this.o.runId, experiment_seq: this.o.seq, group_id: `${this.o.runId}/${this.o.seq}/proposal`,
      task_id: 'proposal', repeat: 0, benchmark: 'meta-agent', split: '', harness: this.o.proposer, status: 'ok', score: null, pass: null,
      output: null, error: null, started_at: this.started, ended_at: this.started, input_tokens: 0, output_tokens: 0,
      cache_read_tokens: 0, cache_write_tokens: 0, cost_usd: 0,
    });
    this.opened = true;
  }

  record(span: ProposalSpan): void {
    this.open();
    insertSpan(this.db, {
      id: randomUUID(), trace_id: this.traceId, parent_id: null, kind: span.kind, name: span.name, status: span.status,
      started_at: span.started_at, ended_at: span.ended_at, input: span.input, output: span.output, error: span.error ?? null,
      input_tokens: 0, output_tokens: 0, cache_read_tokens: 0, cache_write_tokens: 0, cost_usd: 0, attributes: span.attributes ?? {},
    });
  }

  async model(req: Omit<ModelRequest, 'provider'>, name = 'meta-agent call'): Promise<ModelResponse> {
    if (!this.o.provider) throw new Error(`the ${this.o.proposer} proposer has no model provider configured`);
    const { tokens, dollars } = this.o.limits;
    if (tokens > 0 && this.tokens >= tokens) throw new ProposalBudgetExceeded(`the proposal used its ${tokens} tokens (proposer.tokens)`);
    if (dollars > 0 && this.dollars >= dollars) throw new ProposalBudgetExceeded(`the proposal used its $${dollars} (proposer.dollars)`);
    this.o.guard.check(); // the run's budget: BudgetExceeded stops the run
    const full: ModelRequest = { ...req, provider: this.o.provider.name };
    const started = Date.now();
    this.open();
    let res: ModelResponse | null = null;
    let error: string | null = null;
    try {
      res = await this.o.provider.call(full, this.o.signal);
      return res;
    } catch (e) {
      error = (e as Error).message;
      throw e;
    } finally {
      const span: SpanRecord = {
        id: randomUUID(), trace_id: this.traceId, parent_id: null, kind: 'model', name, status: error ? 'error' : 'ok',
        started_at: started, ended_at: Date.now(), input: full, output: res ? { content: res.content, stop_reason: res.stop_reason, raw: res.raw } : null,
        error, input_tokens: res?.usage.input_tokens ?? 0, output_tokens: res?.usage.output_tokens ?? 0,
        cache_read_tokens: res?.usage.cache_read_tokens ?? 0, cache_write_tokens: res?.usage.cache_write_tokens ?? 0, cost_usd: res?.cost_usd ?? 0,
        attributes: res ? { model: res.model, latency_ms: res.latency_ms, attempts: res.attempts } : {},
      };
      insertSpan(this.db, span);
      if (res) {
        this.o.guard.add(res);
        this.tokens += res.usage.input_tokens + res.usage.output_tokens;
        this.dollars += res.cost_usd;
        for (const k of Object.keys(this.usage) as Array<keyof typeof this.usage>) this.usage[k] += res.usage[k];
      }
    }
  }

  /** Closes the trace (once): ok with the proposal as output, or error with the reason. */
  finish(status: 'ok' | 'error', output: unknown, error: string | null = null): void {
    if (!this.opened) return;
    finishTrace(this.db, this.traceId, {
      status, ended_at: Date.now(), output: output === null || output === undefined ? null : typeof output === 'string' ? output : JSON.stringify(output),
      error, ...this.usage, cost_usd: this.dollars,
    });
  }

  get ms(): number {
    return Date.now() - this.started;
  }
}

// ------------------------------------------------------------------------------------ guards

/** Lines of `a` not in `b`, as a multiset difference (line order is ignored: a moved line is no change). */
function lineDiff(a: string[], b: string[]): string[] {
  const count = new Map<string, number>();
  for (const l of b) count.set(l, (count.get(l) ?? 0) + 1);
  const out: string[] = [];
  for (const l of a) {
    const n = count.get(l) ?? 0;
    if (n > 0) count.set(l, n - 1);
    else out.push(l);
  }
  return out;
}

/** identifiers that name a random seed: SEED, seed, manual_seed, random_state, set_seed, … */
const SEED_WORD = /seed|random_state|rng_state/i;

/**
 * True when every line the edits change (removed or added) names a random seed: a proposal that
 * only reseeds the same code can only win by luck, so the loop rejects it unless the study sets
 * `proposer.allow_seed_changes`.
 */
export function seedOnlyChange(files: Record<string, string>, edits: FileEdit[]): boolean {
  let changed = 0;
  for (const e of edits) {
    const before = (files[e.path] ?? '').split('\n').map((l) => l.trim()).filter(Boolean);
    const after = e.content.split('\n').map((l) => l.trim()).filter(Boolean);
    const lines = [...lineDiff(before, after), ...lineDiff(after, before)];
    changed += lines.length;
    if (lines.some((l) => !SEED_WORD.test(l))) return false;
  }
  return changed > 0;
}

/** A file's text with trailing spaces, blank lines and runs of inner spaces normalised (indentation is kept: it means something in Python and YAML). */
function squeeze(text: string): string {
  return text
    .split('\n')
    .map((l) => l.replace(/\s+$/, '').replace(/(\S)[ \t]+/g, '$1 '))
    .filter((l) => l !== '')
    .join('\n');
}

/** True when the edits change only whitespace that means nothing (such a proposal is skipped, not evaluated). */
export function whitespaceOnlyChange(files: Record<string, string>, edits: FileEdit[]): boolean {
  return edits.length > 0 && edits.every((e) => files[e.path] !== undefined && squeeze(files[e.path]!) === squeeze(e.content));
}
