/**
 * `optuna`: the real Optuna library proposes whole knob assignments (ask/tell), through a Python
 * driver (meta-agent/optuna_driver.py) run once per proposal.
 *
 * Nothing is kept between calls: each proposal rebuilds an in-memory study from the ledger — the
 * baseline as a trial with the run's starting values, every evaluated experiment with knob meta
 * (its assignment) told with its mean metric, a crash or timeout told as FAIL; rejected and
 * pending ones are not told — and asks it for one trial. What a sampler stores in the study
 * (CMA-ES its optimizer, QMC its position in the sequence) is recorded in the proposal's meta
 * and put back on replay, and the sampler's seed is derived from (proposer.seed, experiment
 * number): a given ledger always yields the same proposal, so a resumed run proposes exactly what
 * the uninterrupted one would have. A suggestion that repeats an evaluated candidate is told FAIL
 * in the in-memory study and the driver asks again (at most MAX_ASKS times per proposal).
 *
 * The search space is meta-agent/search/space.ts's, built around the run's starting values
 * (recorded in every proposal's meta as `start`), so it is the same on every call.
 */
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { join } from 'node:path';
import type { KnobValue, LedgerEntry, Proposal, ProposalContext, Proposer } from './types.ts';
import { ProposalFailed } from './types.ts';
import { applyEdits, filesHash } from './hash.ts';
import { discoverKnobs, formatKnobValue, knobKey, normalizeKnobValue, setKnob, type Knob } from './search/knobs.ts';
import { startSpace, type Dim } from './search/space.ts';
import { seededRandom } from './search/rng.ts';
import { readKnobMeta } from './search/index.ts';
import { findPython } from '../base/python.ts';
import { UsageError, UserError } from '../base/errors.ts';

export const OPTUNA_SAMPLERS = ['tpe', 'cmaes', 'random', 'qmc', 'gp'] as const;
export type OptunaSampler = (typeof OPTUNA_SAMPLERS)[number];

/** asks per proposal before giving up on finding a candidate not evaluated yet */
export const MAX_ASKS = 32;
/** how long one driver run may take (a GP sampler fits a model per ask) */
const DRIVER_TIMEOUT_MS = 10 * 60_000;

export const DRIVER = join(import.meta.dirname, 'optuna_driver.py');

export interface OptunaInfo {
  python: string;
  optuna: string;
  cmaes: boolean;
  scipy: boolean;
  torch: boolean;
}

const INSTALL = '`apt-get install python3-optuna` (Debian/Ubuntu) or `pip install optuna`';
const probes = new Map<string, OptunaInfo | null>();

/** The Python that has Optuna (cached per AUTOAGENT_PYTHON), or a one-line UserError with the install command. */
export function findOptuna(env: NodeJS.ProcessEnv = process.env): OptunaInfo {
  const key = env.AUTOAGENT_PYTHON ?? '';
  if (!probes.has(key)) {
    const found = findPython<Omit<OptunaInfo, 'python'>>([DRIVER, '--probe'], env);
    probes.set(key, found && typeof found.info.optuna === 'string' ? { ...found.info, python: found.python } : null);
  }
  const info = probes.get(key);
  if (info) return info;
  if (env.AUTOAGENT_PYTHON) throw new UserError(`the optuna proposer needs Optuna, and AUTOAGENT_PYTHON=${env.AUTOAGENT_PYTHON} cannot import it: ${INSTALL}`);
  throw new UserError(`the optuna proposer needs Optuna: ${INSTALL}; or set AUTOAGENT_PYTHON`);
}

/** `3.1.0` ≥ `3.6`? (pre-release and dev suffixes ignored) */
export function versionAtLeast(version: string, min: string): boolean {
  const parse = (v: string) => v.split('.').map((p) => parseInt(p, 10) || 0);
  const a = parse(version);
  const b = parse(min);
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    const d = (a[i] ?? 0) - (b[i] ?? 0);
    if (d !== 0) return d > 0;
  }
  return true;
}

/**
 * Everything the sampler needs, checked before the run starts: one line naming what to install.
 * Returns what was found.
 */
export function checkOptuna(sampler: OptunaSampler, env: NodeJS.ProcessEnv = process.env): OptunaInfo {
  const info = findOptuna(env);
  const where = `${info.python} (Optuna ${info.optuna})`;
  if (sampler === 'cmaes' && !info.cmaes) {
    throw new UserError(`sampler cmaes needs the cmaes package, which ${where} cannot import: \`apt-get install python3-cmaes\` (Debian/Ubuntu) or \`pip install cmaes\``);
  }
  if (sampler === 'qmc' && !info.scipy) {
    throw new UserError(`sampler qmc needs SciPy, which ${where} cannot import: \`apt-get install python3-scipy\` (Debian/Ubuntu) or \`pip install scipy\``);
  }
  if (sampler === 'gp') {
    if (!versionAtLeast(info.optuna, '3.6')) throw new UsageError(`sampler gp needs Optuna ≥ 3.6 (found ${info.optuna}): \`pip install -U optuna\`, or use tpe`);
    if (!info.torch || !info.scipy) throw new UserError(`sampler gp needs PyTorch and SciPy, which ${where} cannot import: \`pip install torch scipy\`, or use tpe`);
  }
  return info;
}

// ------------------------------------------------------------------------ the ledger as trials

/** What the optuna proposer stores in Proposal.meta (a KnobMeta, read back by readKnobMeta). */
export interface OptunaMeta {
  proposer: 'optuna';
  sampler: OptunaSampler;
  /** the candidate's full knob assignment, `file:name` → value (as written) */
  assignment: Record<string, KnobValue>;
  /** the knobs this candidate changed from the incumbent, in file order */
  changed: Array<{ knob: string; from: KnobValue; to: KnobValue }>;
  /** the trial's number in the rebuilt study */
  trial_number: number;
  /** the knob values the search space is built around (the run's start) */
  start: Record<string, KnobValue>;
  /** the sampler's seed for this proposal */
  sampler_seed: number;
  /** what the sampler stored on the trial and on the study (put back on replay) */
  sampler_state?: { trial?: Record<string, unknown>; study?: Record<string, unknown> };
}

type DriverDim =
  | { key: string; type: 'float' | 'int'; low: number; high: number; log: boolean }
  | { key: string; type: 'categorical'; n: number };

export interface DriverTrial {
  params: Record<string, number>;
  value: number | null;
  state: 'complete' | 'fail';
  system_attrs?: Record<string, unknown>;
}

export interface DriverRequest {
  sampler: OptunaSampler;
  /** the study's proposer.seed mixed into a fixed nonzero seed (QMC's scramble) */
  seed: number;
  /** this proposal's seed, from (proposer.seed, experiment number) */
  sampler_seed: number;
  direction: 'minimize' | 'maximize';
  space: DriverDim[];
  trials: DriverTrial[];
  study_attrs: Record<string, unknown>;
  x0: Record<string, number>;
  max_asks: number;
}

interface Suggestion {
  params: Record<string, number>;
  trial_number: number;
  system_attrs: Record<string, unknown>;
  study_attrs: Record<string, unknown>;
}

function readOptunaMeta(meta: unknown): OptunaMeta | null {
  const m = meta as Partial<OptunaMeta> | null | undefined;
  if (!m || typeof m !== 'object' || m.proposer !== 'optuna' || !readKnobMeta(m)) return null;
  return m as OptunaMeta;
}

function same(a: KnobValue, b: KnobValue): boolean {
  if (typeof a === 'number' && typeof b === 'number') return Math.abs(a - b) <= 1e-9 * Math.max(Math.abs(a), Math.abs(b));
  return a === b;
}

const BOOLS = [false, true];
const choicesOf = (d: Dim): KnobValue[] => (d.type === 'bool' ? BOOLS : d.type === 'choice' ? d.choices : []);

function driverDim(d: Dim): DriverDim {
  if (d.type === 'float' || d.type === 'int') return { key: d.key, type: d.type, low: d.low, high: d.high, log: d.log };
  return { key: d.key, type: 'categorical', n: choicesOf(d).length };
}

/** A knob value as the driver's parameter value (clipped into the space; a choice by index), or null when it has none. */
function encode(d: Dim, v: KnobValue | undefined): number | null {
  if (v === undefined) return null;
  if (d.type === 'float' || d.type === 'int') {
    if (typeof v !== 'number' || !Number.isFinite(v)) return null;
    const x = Math.min(d.high, Math.max(d.low, d.type === 'int' ? Math.round(v) : v));
    return x;
  }
  const i = choicesOf(d).findIndex((c) => same(c, v));
  return i < 0 ? null : i;
}

function encodeAll(space: Dim[], assignment: Record<string, KnobValue>): Record<string, number> | null {
  const params: Record<string, number> = {};
  for (const d of space) {
    const x = encode(d, assignment[d.key]);
    if (x === null) return null;
    params[d.key] = x;
  }
  return params;
}

/** The value the driver suggested, as it will be written (rounded as setKnob writes it, kept inside the space). */
function decode(k: Knob, d: Dim, x: number): KnobValue {
  if (d.type === 'bool' || d.type === 'choice') return choicesOf(d)[x]!;
  let v = normalizeKnobValue(k, Math.min(d.high, Math.max(d.low, x))) as number;
  if (d.type === 'int') return v;
  // 3 significant digits may round past a bound: one unit in the last digit back inside
  const unit = (y: number) => (y === 0 ? 0 : 10 ** (Math.floor(Math.log10(Math.abs(y))) - 2));
  if (v > d.high) v = normalizeKnobValue(k, v - unit(v)) as number;
  if (v < d.low) v = normalizeKnobValue(k, v + unit(v)) as number;
  return v;
}

/** The run's starting knob values: recorded by the first optuna proposal; before that, the incumbent's (the baseline's). */
export function startAssignment(ledger: LedgerEntry[], knobs: Knob[]): Record<string, KnobValue> {
  const first = ledger.map((e) => readOptunaMeta(e.meta)).find((m) => m && m.start && typeof m.start === 'object');
  const start: Record<string, KnobValue> = {};
  for (const k of knobs) start[knobKey(k)] = first?.start[knobKey(k)] ?? k.value;
  return start;
}

/** The past trials the ledger tells (see the module comment), oldest first. */
export function ledgerTrials(ledger: LedgerEntry[], space: Dim[], start: Record<string, KnobValue>, sampler: OptunaSampler): DriverTrial[] {
  const trials: DriverTrial[] = [];
  for (const e of ledger) {
    if (e.decision === 'baseline') {
      const params = encodeAll(space, start);
      if (params && e.metric !== undefined && Number.isFinite(e.metric)) trials.push({ params, value: e.metric, state: 'complete' });
      continue;
    }
    const meta = readKnobMeta(e.meta);
    if (!meta) continue;
    let state: DriverTrial['state'];
    if ((e.decision === 'kept' || e.decision === 'discarded') && e.metric !== undefined && Number.isFinite(e.metric)) state = 'complete';
    else if (e.decision === 'crash' || e.decision === 'timeout') state = 'fail';
    else continue;
    const params = encodeAll(space, meta.assignment);
    if (!params) continue;
    const t: DriverTrial = { params, value: state === 'complete' ? e.metric! : null, state };
    const om = readOptunaMeta(e.meta);
    if (om && om.sampler === sampler && om.sampler_state?.trial) t.system_attrs = om.sampler_state.trial;
    trials.push(t);
  }
  return trials;
}

/** The study's sampler attributes after the latest optuna proposal of this sampler (any decision). */
function latestStudyAttrs(ledger: LedgerEntry[], sampler: OptunaSampler): Record<string, unknown> {
  for (let i = ledger.length - 1; i >= 0; i--) {
    const m = readOptunaMeta(ledger[i]!.meta);
    if (m && m.sampler === sampler) return m.sampler_state?.study ?? {};
  }
  return {};
}

/** a seed in [1, 2^31 - 1) for (seed, stream) */
function mixSeed(seed: number, stream: number): number {
  return 1 + Math.floor(seededRandom(seed, stream)() * (2 ** 31 - 2));
}

// ------------------------------------------------------------------------ the proposer

function label(k: Knob, knobs: Knob[]): string {
  if (new Set(knobs.map((o) => o.file)).size <= 1) return k.name;
  const base = k.file.split('/').pop()!;
  const unique = knobs.every((o) => o.file === k.file || o.file.split('/').pop() !== base);
  return `${unique ? base : k.file}:${k.name}`;
}

export interface OptunaSettings {
  sampler: OptunaSampler;
  seed: number;
  /** the environment the Python is found in and the driver runs with (default: process.env) */
  env?: NodeJS.ProcessEnv;
}

export class OptunaProposer implements Proposer {
  readonly name = 'optuna';
  readonly sampler: OptunaSampler;
  readonly seed: number;
  private readonly env: NodeJS.ProcessEnv;

  constructor(s: OptunaSettings) {
    this.sampler = s.sampler;
    this.seed = s.seed;
    this.env = s.env ?? process.env;
  }

  /** the one-line start check (the loop calls it before the baseline) */
  check(): OptunaInfo {
    return checkOptuna(this.sampler, this.env);
  }

  /** The driver's request for this context (exported for tests: same ledger, same request). */
  request(ctx: ProposalContext, knobs: Knob[]): { request: DriverRequest; space: Dim[]; start: Record<string, KnobValue> } {
    const start = startAssignment(ctx.ledger, knobs);
    const space = startSpace(ctx, knobs, start);
    const x0: Record<string, number> = {};
    for (const d of space) if (d.type === 'float' || d.type === 'int') x0[d.key] = encode(d, start[d.key])!;
    const request: DriverRequest = {
      sampler: this.sampler,
      seed: mixSeed(this.seed, -1),
      sampler_seed: mixSeed(this.seed, ctx.seq ?? ctx.ledger.length),
      direction: ctx.metric.direction,
      space: space.map(driverDim),
      trials: ledgerTrials(ctx.ledger, space, start, this.sampler),
      study_attrs: latestStudyAttrs(ctx.ledger, this.sampler),
      x0,
      max_asks: MAX_ASKS,
    };
    return { request, space, start };
  }

  async propose(ctx: ProposalContext): Promise<Proposal | null> {
    const knobs = discoverKnobs(ctx.files, ctx.editable, ctx.knobs, ctx.command);
    if (knobs.length === 0) return null;
    let python: string;
    try {
      python = this.check().python;
    } catch (e) {
      throw new ProposalFailed((e as Error).message);
    }
    const { request, space, start } = this.request(ctx, knobs);
    const incumbentHash = filesHash(ctx.files);
    return runDriver(python, request, this.env, ctx.signal, (s) => {
      const p = this.build(ctx, knobs, space, start, request.sampler_seed, s);
      if (!p) return null;
      const h = filesHash(applyEdits(ctx.files, p.edits));
      return h === incumbentHash || ctx.seen.has(h) ? null : p;
    });
  }

  private build(ctx: ProposalContext, knobs: Knob[], space: Dim[], start: Record<string, KnobValue>, samplerSeed: number, s: Suggestion): Proposal | null {
    const assignment: Record<string, KnobValue> = {};
    const moves: Array<{ k: Knob; to: KnobValue }> = [];
    knobs.forEach((k, i) => {
      const d = space[i]!;
      const x = s.params[d.key];
      const to = typeof x === 'number' ? decode(k, d, x) : k.value;
      assignment[knobKey(k)] = to;
      if (!same(to, k.value)) moves.push({ k, to });
    });
    if (moves.length === 0) return null;
    const edits: Array<{ path: string; content: string }> = [];
    for (const file of [...new Set(moves.map((m) => m.k.file))]) {
      let content = ctx.files[file]!;
      // rewrite from the end of the file so earlier spans stay valid
      for (const m of moves.filter((x) => x.k.file === file).sort((a, b) => b.k.span.start - a.k.span.start)) content = setKnob(content, m.k, m.to);
      edits.push({ path: file, content });
    }
    const meta: OptunaMeta = {
      proposer: 'optuna',
      sampler: this.sampler,
      assignment,
      changed: moves.map((m) => ({ knob: knobKey(m.k), from: m.k.value, to: m.to })),
      trial_number: s.trial_number,
      start,
      sampler_seed: samplerSeed,
    };
    const trial = Object.keys(s.system_attrs).length ? s.system_attrs : undefined;
    const study = Object.keys(s.study_attrs).length ? s.study_attrs : undefined;
    if (trial || study) meta.sampler_state = { ...(trial ? { trial } : {}), ...(study ? { study } : {}) };
    return {
      hypothesis: `optuna ${this.sampler} trial ${s.trial_number}: ${moves.map((m) => `${label(m.k, knobs)} ${m.k.text} → ${formatKnobValue(m.k, m.to)}`).join(', ')}`,
      edits,
      meta,
    };
  }
}

function lastLine(text: string): string {
  return text.trim().split('\n').pop()?.trim() ?? '';
}

/**
 * Run the driver: send the request, then answer each suggestion — `accept` returns the proposal
 * (done) or null (again: a repeat). null when every ask repeated something; ProposalFailed when
 * the driver fails (its last stderr line).
 */
function runDriver(
  python: string, request: DriverRequest, env: NodeJS.ProcessEnv, signal: AbortSignal | undefined,
  accept: (s: Suggestion) => Proposal | null,
): Promise<Proposal | null> {
  return new Promise((resolve, reject) => {
    const child = spawn(python, [DRIVER], {
      stdio: ['pipe', 'pipe', 'pipe'],
      env: { ...env, PYTHONHASHSEED: '0', PYTHONDONTWRITEBYTECODE: '1', PYTHONWARNINGS: 'ignore' },
    });
    let stderr = '';
    let result: Proposal | null = null;
    let failure: string | null = null;
    let settled = false;
    const finish = (err: string | null) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      if (err) reject(new ProposalFailed(err));
      else resolve(result);
    };
    const kill = (why: string) => {
      failure ??= why;
      child.kill('SIGKILL');
    };
    const onAbort = () => kill('interrupted');
    const timer = setTimeout(() => kill(`the optuna driver took longer than ${DRIVER_TIMEOUT_MS / 1000} s`), DRIVER_TIMEOUT_MS);
    signal?.addEventListener('abort', onAbort, { once: true });
    if (signal?.aborted) onAbort();
    child.stdin.on('error', () => undefined); // the driver may exit before reading everything
    child.stderr.on('data', (b: Buffer) => {
      stderr = (stderr + b.toString('utf8')).slice(-8192);
    });
    const lines = createInterface({ input: child.stdout });
    lines.on('line', (line) => {
      if (result || failure) return;
      let s: Suggestion;
      try {
        s = JSON.parse(line) as Suggestion;
        if (typeof s !== 'object' || s === null || typeof s.params !== 'object') throw new Error('no params');
      } catch {
        kill(`the optuna driver wrote something that is not a suggestion: ${line.slice(0, 200)}`);
        return;
      }
      try {
        result = accept(s);
      } catch (e) {
        kill(`optuna suggestion could not be written: ${(e as Error).message}`);
        return;
      }
      if (result) child.stdin.end('done\n');
      else child.stdin.write('again\n');
    });
    child.on('error', (e) => finish(`the optuna driver could not start (${python}): ${e.message}`));
    child.on('close', (code) => {
      if (failure) return finish(failure);
      if (result) return finish(null);
      if (code !== 0) return finish(lastLine(stderr) || `the optuna driver exited with status ${code}`);
      finish(null); // every ask repeated an evaluated candidate
    });
    child.stdin.write(JSON.stringify(request) + '\n');
  });
}
