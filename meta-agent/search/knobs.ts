/**
 * Knobs: the literal settings of the editable files that a search can turn, found without
 * declarations.
 *
 * Python (`.py`), read with Python's own parser (knobs.py, run once per batch of new files with
 * any Python 3.8+ on PATH; results cached by content):
 *   - module-level `name = literal` / `name: T = literal`, in any case (`learning_rate = 6e-4`,
 *     `N_LAYER = 4`), unless the name is bound anywhere else at module level (assignment,
 *     augmented assignment, `for` target, `with … as`, import, def/class, walrus, `del`), inside a
 *     top-level `while`/`for`/`if`/`with`/`try` too, or assigned by a function that declares it
 *     `global`: such a name is state, not a knob;
 *   - argparse: `add_argument('--lr', type=float, default=3e-4)` is the knob `lr` (the long
 *     option, dashes → underscores, or `dest=`), its literal the `default=` value; `choices=[…]`
 *     makes a choice knob; `action='store_true'` without a default is a bool knob (False) whose
 *     rewrite adds `, default=True`;
 *   - fields of a module-level dataclass or plain class (`class Hyperparameters: lr: float = 3e-4`,
 *     `field(default=…)` too), named `Class.field`, unless reassigned (in the class body,
 *     `Class.field = …`, `self.field = …`).
 * A name the study's `command` sets with `--name=value` / `--name value` (nanoGPT's configurator,
 * argparse), or a YAML key it sets Hydra-style (`optimizer.lr=0.1`), is overridden by the command
 * line, not a knob.
 * YAML (`.yaml`/`.yml`, through the `yaml` library's document API): top-level scalar keys, and
 * those of one nested mapping level (`optimizer.lr`); a repeated key is ambiguous.
 * In every file: literals are int (`4`, `-2`, `1_000`), float (`6e-4`, `.5`, `-1e-3`), bool and,
 * only with declared (or argparse) choices, a one-line string; anything else (expressions, tuples,
 * calls, hex, None) is not a knob. Names containing SEED are skipped unless declared (searching
 * the seed only hunts for lucky noise). The trailing comment (argparse: `help=`) is the
 * description. What was passed over, and why, is reported (`findKnobReport`, `autoagent knobs`).
 *
 * Bounds (inclusive), unless declared (a declared min/max replaces the inferred one):
 *   - int   v >= 1: [1, ∞)       int   v = 0: [0, ∞)            int   v < 0: unbounded
 *   - float 0 < v < 1: (0, 1]  — rates, fractions, probabilities; searched on a log scale
 *   - float v >= 1: (0, ∞)     — searched on a log scale
 *   - float v = 0: [0, 1]      — a switched-off fraction (dropout 0.0); linear
 *   - float v < 0: unbounded, linear
 * `log` defaults to true for positive floats (when `min` is declared: when min > 0, as the
 * study schema says); a log-scale int is multiplied rather than stepped.
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import picomatch from 'picomatch';
import { isMap, isScalar, LineCounter, parseDocument, type Pair, type Scalar } from 'yaml';
import type { KnobDecl, KnobValue } from '../types.ts';
import { UsageError, UserError } from '../../base/errors.ts';

export type KnobType = 'int' | 'float' | 'bool' | 'choice';
export type KnobSyntax = 'python' | 'yaml';
/** where the literal sits: a module-level global, an argparse default, a class field, a YAML key */
export type KnobForm = 'global' | 'argparse' | 'class' | 'yaml';

export interface Knob {
  /** repo-relative path of the file */
  file: string;
  /** `lr`, `N_LAYER`, `Hyperparameters.lr` (a class field), `optimizer.lr` (a nested YAML key) */
  name: string;
  type: KnobType;
  /** the current value (a choice knob's value may be a string, number or bool) */
  value: KnobValue;
  /** the literal exactly as written, e.g. `6e-4`, `1_000`, `"adamw"` ('' for an argparse flag without default=) */
  text: string;
  /** 1-based line of the literal */
  line: number;
  /** character offsets of the literal in the source: source.slice(start, end) === text */
  span: { start: number; end: number };
  /** inclusive numeric bounds (undefined: unbounded on that side) */
  min?: number;
  max?: number;
  /** the lower bound itself is excluded (positive floats stay > 0) */
  minExclusive?: boolean;
  /** min / max come from the study's declaration (else they were inferred from the literal) */
  minDeclared?: boolean;
  maxDeclared?: boolean;
  /** mutate multiplicatively (log scale) */
  log: boolean;
  /** the allowed values of a choice knob */
  choices?: KnobValue[];
  /** the trailing comment of the assignment, without `#` (argparse: the help text) */
  description?: string;
  /** named by a study declaration */
  declared: boolean;
  syntax: KnobSyntax;
  form?: KnobForm;
  /** written before the value when the source has no literal yet (`, default=` of an argparse flag) */
  prefix?: string;
}

/** A setting that looked like a knob and is not one, with why. */
export interface SkippedKnob {
  file: string;
  name: string;
  line?: number;
  reason: string;
}

export interface KnobReport {
  knobs: Knob[];
  skipped: SkippedKnob[];
}

/** `file:name`, the identity of a knob in proposal meta. */
export function knobKey(k: { file: string; name: string }): string {
  return `${k.file}:${k.name}`;
}

// ------------------------------------------------------------------------ analysis (syntax only)

type LiteralKind = 'int' | 'float' | 'bool' | 'string';

/** One place a setting could be turned, as the parser sees it (no declarations, no command line). */
interface Entry {
  form: KnobForm;
  name: string;
  line: number;
  literal?: { kind: LiteralKind; value: KnobValue; text: string; start: number; end: number };
  /** why there is no usable literal (`None`, `a tuple`, `no default`) */
  other?: string;
  description?: string;
  reassigned?: { line: number; how: string };
  /** argparse: option strings, `type=`, `choices=`, where `, default=` goes when absent */
  flags?: string[];
  argtype?: 'int' | 'float' | 'bool' | 'str';
  choices?: KnobValue[];
  insert?: { prefix: string };
}

interface Analysis {
  entries: Entry[];
  /** the file could not be read (a syntax error): no knobs */
  error?: string;
}

const HELPER = fileURLToPath(new URL('./knobs.py', import.meta.url));
/** the interpreter that worked (the real executable once known: a pyenv shim costs half a second a call) */
let python: string | null = null;
const CACHE_MAX = 4096;
const cache = new Map<string, Analysis>();

function hashOf(source: string): string {
  return createHash('sha1').update(source).digest('hex');
}

function remember(key: string, a: Analysis): void {
  if (cache.has(key)) cache.delete(key);
  cache.set(key, a);
  if (cache.size > CACHE_MAX) cache.delete(cache.keys().next().value!);
}

/** Forget every cached analysis (tests compare a derived analysis with a fresh one). */
export function clearKnobCache(): void {
  cache.clear();
}

/** Run knobs.py once over `sources`; their analyses in order. */
function runHelper(sources: string[]): Analysis[] {
  const input = JSON.stringify({ files: sources.map((source) => ({ source })) });
  const candidates = python ? [python] : [...(process.env.AUTOAGENT_PYTHON ? [process.env.AUTOAGENT_PYTHON] : []), 'python3', '/usr/bin/python3', 'python'];
  const failures: string[] = [];
  for (const exe of candidates) {
    const r = spawnSync(exe, ['-I', '-S', HELPER], { input, encoding: 'utf8', maxBuffer: 1 << 28, timeout: 120_000 });
    if (r.error) {
      if ((r.error as NodeJS.ErrnoException).code === 'ENOENT') continue;
      failures.push(`${exe}: ${r.error.message}`);
      continue;
    }
    let out: { files?: Analysis[]; fatal?: string; python?: string };
    try {
      out = JSON.parse(r.stdout) as typeof out;
    } catch {
      failures.push(`${exe} exited ${r.status}: ${(r.stderr || r.stdout).trim().split('\n').slice(-1)[0] ?? ''}`);
      continue;
    }
    if (out.fatal || !out.files) {
      failures.push(`${exe}: ${out.fatal ?? 'no answer'}`);
      continue;
    }
    python = out.python || exe;
    return out.files;
  }
  if (failures.length === 0) {
    throw new UserError('knob discovery reads .py files with Python 3.8+ (its ast module) and found no python3 on PATH: install Python 3, or set AUTOAGENT_PYTHON=/path/to/python3');
  }
  throw new UserError(`knob discovery could not run Python on the .py files (${failures[0]}); set AUTOAGENT_PYTHON to a Python 3.8+`);
}

/** Analyze every Python source not cached yet, in one run of the helper. */
function prefetchPython(sources: string[]): void {
  const todo = new Map<string, string>();
  for (const s of sources) {
    const key = hashOf(s);
    if (!cache.has(key)) todo.set(key, s);
  }
  if (todo.size === 0) return;
  const results = runHelper([...todo.values()]);
  [...todo.keys()].forEach((key, i) => remember(key, results[i]!));
}

function analyzePython(source: string): Analysis {
  const key = hashOf(source);
  let a = cache.get(key);
  if (!a) {
    prefetchPython([source]);
    a = cache.get(key)!;
  }
  return a;
}

const YAML_KEY = /^[A-Za-z_][A-Za-z0-9_-]*$/;
const YAML_DECIMAL_INT = /^[-+]?(?:0|[1-9]\d*)$/;
const YAML_DECIMAL_FLOAT = /^[-+]?(?:\d+\.\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?|\d+[eE][-+]?\d+)$/;
/** a plain (unquoted) one-word scalar such as `claude-sonnet` or `gpt-4o-mini` */
const YAML_PLAIN = /^[A-Za-z_][A-Za-z0-9_./+-]*$/;
/** plain words YAML 1.1 readers take as bools or null, not strings */
const YAML_RESERVED = /^(?:null|Null|NULL|~|yes|Yes|YES|no|No|NO|on|On|ON|off|Off|OFF|y|Y|n|N)$/;

function analyzeYaml(source: string): Analysis {
  const lines = new LineCounter();
  const doc = parseDocument(source, { uniqueKeys: false, prettyErrors: false, lineCounter: lines });
  if (doc.errors.length > 0) {
    const e = doc.errors[0]!;
    return { entries: [], error: `line ${e.linePos?.[0]?.line ?? '?'}: ${e.message.split('\n')[0]}` };
  }
  const entries: Entry[] = [];
  const lineOf = (offset: number) => lines.linePos(offset).line;
  const visit = (items: Pair[], prefix: string, depth: number) => {
    const seen = new Map<string, number[]>();
    for (const pair of items) {
      if (!isScalar(pair.key) || typeof pair.key.value !== 'string') continue;
      const key = pair.key.value;
      const keyLine = lineOf(pair.key.range![0]);
      seen.set(key, [...(seen.get(key) ?? []), keyLine]);
    }
    for (const pair of items) {
      if (!isScalar(pair.key) || typeof pair.key.value !== 'string' || !YAML_KEY.test(pair.key.value)) continue;
      const key = pair.key.value;
      const name = prefix + key;
      const keyLine = lineOf(pair.key.range![0]);
      const again = (seen.get(key) ?? []).find((l) => l !== keyLine);
      const reassigned = again !== undefined ? { line: again, how: `key repeated at line ${again}` } : undefined;
      if (isMap(pair.value)) {
        if (depth === 0) visit(pair.value.items as Pair[], `${name}.`, 1);
        continue;
      }
      if (!isScalar(pair.value)) continue;
      const node = pair.value as Scalar;
      const description = (node.comment ?? pair.key.commentBefore?.split('\n').pop())?.trim() || undefined;
      const e: Entry = { form: 'yaml', name, line: lineOf(node.range![0]), ...(description ? { description } : {}), ...(reassigned ? { reassigned } : {}) };
      const lit = yamlLiteral(source, node);
      if (typeof lit === 'string') e.other = lit;
      else e.literal = lit;
      entries.push(e);
    }
  };
  if (isMap(doc.contents)) visit(doc.contents.items as Pair[], '', 0);
  return { entries };
}

/** The literal of a YAML scalar, or why it is not one. */
function yamlLiteral(source: string, node: Scalar): NonNullable<Entry['literal']> | string {
  const [start, end] = node.range!;
  const text = source.slice(start, end);
  if (node.anchor || node.tag) return 'a scalar with an anchor or tag';
  if (node.type === 'BLOCK_LITERAL' || node.type === 'BLOCK_FOLDED') return 'a block string';
  if (/[\r\n]/.test(text)) return 'a multi-line string';
  const lit = (kind: LiteralKind, value: KnobValue) => ({ kind, value, text, start, end });
  const v = node.value;
  if (node.type === 'QUOTE_DOUBLE' || node.type === 'QUOTE_SINGLE') return lit('string', String(v));
  if (v === null) return 'null';
  if (typeof v === 'boolean') return lit('bool', v);
  if (typeof v === 'number') {
    if (YAML_DECIMAL_INT.test(text)) return lit('int', v);
    if (YAML_DECIMAL_FLOAT.test(text)) return lit('float', v);
    return 'not a decimal number';
  }
  if (typeof v === 'string') {
    if (YAML_RESERVED.test(text)) return `\`${text}\`: a word other YAML readers take as a bool or null`;
    return lit('string', v);
  }
  return 'not a number, bool or string';
}

// ------------------------------------------------------------------------ the command line

/** Split a shell command line into words (quotes and backslashes; no expansion). */
function shellWords(command: string): string[] {
  const words: string[] = [];
  let cur = '';
  let has = false;
  let quote = '';
  for (let i = 0; i < command.length; i++) {
    const c = command[i]!;
    if (quote) {
      if (c === quote) quote = '';
      else if (c === '\\' && quote === '"' && i + 1 < command.length) cur += command[++i];
      else cur += c;
    } else if (c === "'" || c === '"') {
      quote = c;
      has = true;
    } else if (c === '\\' && i + 1 < command.length) {
      cur += command[++i];
      has = true;
    } else if (/\s/.test(c) || c === ';' || c === '|' || c === '&') {
      if (has) words.push(cur);
      cur = '';
      has = false;
    } else {
      cur += c;
      has = true;
    }
  }
  if (has) words.push(cur);
  return words;
}

/**
 * The flags a command line passes: `--name` (or `-n`) → how it is written there (`--name=value`,
 * `--name value`); a Hydra-style override `a.b=value` (`+a.b=…`, `++a.b=…`) is keyed `a.b=`.
 */
export function commandFlags(command: string | undefined): Map<string, string> {
  const flags = new Map<string, string>();
  if (!command) return flags;
  const words = shellWords(command);
  words.forEach((w, i) => {
    const hydra = /^\+{0,2}([A-Za-z_][\w.-]*)=/.exec(w);
    if (hydra && !flags.has(`${hydra[1]}=`)) flags.set(`${hydra[1]}=`, w);
    const m = /^(--?[A-Za-z_][\w.-]*)(=.*)?$/.exec(w);
    if (!m || flags.has(m[1]!)) return;
    const next = words[i + 1];
    flags.set(m[1]!, m[2] !== undefined || next === undefined || next.startsWith('-') ? w : `${w} ${next}`);
  });
  return flags;
}

const underscore = (s: string) => s.replace(/^-+/, '').replace(/-/g, '_');

/** How the command line sets this entry, if it does. */
function overriddenBy(e: Entry, flags: Map<string, string>): string | undefined {
  if (e.form === 'yaml') return flags.get(`${e.name}=`);
  for (const [flag, shown] of flags) {
    if (flag.endsWith('=')) continue;
    if (e.form === 'argparse' && e.flags?.includes(flag)) return shown;
    if (!flag.startsWith('--')) continue;
    const n = underscore(flag);
    if (e.form === 'global' && n === e.name) return shown;
    if (e.form === 'argparse' && n === e.name) return shown;
    if (e.form === 'class' && n.split('.').pop() === e.name.split('.').pop()) return shown;
  }
  return undefined;
}

// ------------------------------------------------------------------------ discovery

const SEED_NAME = /(?:^|_)SEED(?:$|_)/i;

function syntaxOf(path: string): KnobSyntax | null {
  if (/\.py$/i.test(path)) return 'python';
  if (/\.ya?ml$/i.test(path)) return 'yaml';
  return null;
}

const sameValue = (a: KnobValue, b: KnobValue) => a === b || (typeof a === 'number' && typeof b === 'number' && Math.abs(a - b) <= 1e-12 * Math.max(Math.abs(a), Math.abs(b)));

/**
 * The knobs of one file. `decls` may name knobs of other files (ignored here); `command` is the
 * study's command line (a setting it passes is overridden, not a knob).
 * Throws a UsageError for a declaration that names no usable literal of this file.
 */
export function findKnobs(path: string, source: string, decls: KnobDecl[], command?: string): Knob[] {
  return findKnobReport(path, source, decls, command).knobs;
}

/** The knobs of one file and what was passed over, with why. */
export function findKnobReport(path: string, source: string, decls: KnobDecl[], command?: string): KnobReport {
  const mine = decls.filter((d) => d.file === path);
  const syntax = syntaxOf(path);
  if (!syntax) {
    if (mine.length > 0) throw new UsageError(`knobs: ${mine[0]!.name} in ${path}: only .py, .yaml and .yml files have knobs`);
    return { knobs: [], skipped: [] };
  }
  const declOf = new Map<string, KnobDecl>();
  for (const d of mine) {
    if (declOf.has(d.name)) throw new UsageError(`knobs: ${d.name} in ${path} is declared twice; merge the two declarations`);
    declOf.set(d.name, d);
  }
  const analysis = syntax === 'python' ? analyzePython(source) : analyzeYaml(source);
  const skipped: SkippedKnob[] = [];
  const skip = (e: Pick<Entry, 'name' | 'line'>, reason: string) => skipped.push({ file: path, name: e.name, line: e.line, reason });
  if (analysis.error) {
    if (mine.length > 0) throw new UsageError(`knobs: ${mine[0]!.name} in ${path}: the file is not valid ${syntax === 'python' ? 'Python' : 'YAML'} (${analysis.error})`);
    skipped.push({ file: path, name: '*', reason: `not valid ${syntax === 'python' ? 'Python' : 'YAML'} (${analysis.error}): no knobs read` });
    return { knobs: [], skipped };
  }
  // one entry per name: the first (a second setting of the same name is ambiguous)
  const first = new Map<string, Entry>();
  for (const e of analysis.entries) if (!first.has(e.name)) first.set(e.name, e);
  for (const d of mine) {
    const e = first.get(d.name);
    const where = `knobs: ${d.name} in ${path}`;
    if (!e) {
      const hint = syntax === 'python'
        ? `expected a module-level \`${d.name} = <number, bool or string>\`, an argparse \`--${d.name}\` with a default, or a class field \`Class.${d.name.split('.').pop()}\``
        : `expected \`${d.name.split('.').pop()}: <number, bool or string>\` at the top level${d.name.includes('.') ? ' or one mapping down' : ''}`;
      throw new UsageError(`knobs: ${d.name} not found as a top-level literal in ${path} (${hint})`);
    }
    if (d.search === false) continue;
    if (e.reassigned) throw new UsageError(`knobs: ${d.name} is assigned more than once at top level in ${path} (${e.reassigned.how}); a knob needs exactly one literal assignment`);
    const flag = overriddenBy(e, commandFlags(command));
    if (flag) throw new UsageError(`${where} is set by the study's command (${flag}), which overrides it; drop the flag from \`command\` or the declaration`);
    if (!e.literal) throw new UsageError(`${where} is ${e.other}; a knob needs a number, bool or string literal`);
  }
  const flags = commandFlags(command);
  const knobs: Knob[] = [];
  for (const e of analysis.entries) {
    const decl = declOf.get(e.name);
    const owner = first.get(e.name)!;
    if (owner !== e) {
      // a name set twice is reported once (the first setting says where the other is)
      if (!(owner.reassigned && e.reassigned)) skip(e, `same name as the setting at line ${owner.line}: ambiguous`);
      continue;
    }
    if (decl?.search === false) {
      skip(e, 'declared not to be searched (search: false)');
      continue;
    }
    if (e.reassigned) {
      skip(e, `${e.reassigned.how} (state, not a knob)`);
      continue;
    }
    const flag = overriddenBy(e, flags);
    if (flag) {
      skip(e, `set by the command line (${flag}): the command overrides it`);
      continue;
    }
    if (!e.literal) {
      skip(e, `${e.other}: a knob needs a number, bool or string literal`);
      continue;
    }
    const choices = decl?.choices ?? (e.literal.kind !== 'bool' ? e.choices : undefined);
    if (!decl) {
      if (SEED_NAME.test(e.name.split('.').pop()!)) {
        skip(e, 'a seed: searching it only hunts for lucky noise (declare it to search it anyway)');
        continue;
      }
      if (e.literal.kind === 'string' && !choices) {
        skip(e, 'a string: declare its `choices` to search it');
        continue;
      }
      if (choices && !choices.some((c) => sameValue(c, e.literal!.value))) {
        skip(e, `its value ${e.literal.text} is not one of its choices`);
        continue;
      }
    }
    knobs.push(makeKnob(path, syntax, e, decl, choices));
  }
  return { knobs, skipped };
}

function makeKnob(file: string, syntax: KnobSyntax, e: Entry, decl: KnobDecl | undefined, choices: KnobValue[] | undefined): Knob {
  const lit = e.literal!;
  const where = `knobs: ${e.name} in ${file}`;
  const base = {
    file, name: e.name, value: lit.value, text: lit.text, line: e.line,
    span: { start: lit.start, end: lit.end }, declared: decl !== undefined, syntax, form: e.form,
    ...(e.insert ? { prefix: e.insert.prefix } : {}),
    ...(e.description !== undefined ? { description: e.description } : {}),
  };
  if (choices) {
    return { ...base, type: 'choice', choices: [...choices], log: false };
  }
  if (lit.kind === 'string') {
    throw new UsageError(`${where} is a string; declare its \`choices\` to search it`);
  }
  if (lit.kind === 'bool') {
    if (decl && (decl.min !== undefined || decl.max !== undefined || decl.log !== undefined)) {
      throw new UsageError(`${where} is a bool; min, max and log do not apply (remove them)`);
    }
    return { ...base, type: 'bool', log: false };
  }
  const v = lit.value as number;
  const type: KnobType = lit.kind === 'int' && e.argtype !== 'float' ? 'int' : 'float';
  let min: number | undefined;
  let max: number | undefined;
  let minExclusive = false;
  if (type === 'int') {
    if (v >= 1) min = 1;
    else if (v === 0) min = 0;
  } else if (v > 0 && v < 1) {
    min = 0; max = 1; minExclusive = true;
  } else if (v >= 1) {
    min = 0; minExclusive = true;
  } else if (v === 0) {
    min = 0; max = 1;
  }
  if (decl?.min !== undefined) {
    min = decl.min;
    minExclusive = false;
  }
  if (decl?.max !== undefined) max = decl.max;
  if (min !== undefined && max !== undefined && min > max) {
    throw new UsageError(`${where}: min ${min} is greater than max ${max}; swap them`);
  }
  const defaultLog = type === 'float' && (decl?.min !== undefined ? decl.min > 0 : v > 0);
  const log = decl?.log ?? defaultLog;
  if (log && (v <= 0 || (min !== undefined && min < 0))) {
    throw new UsageError(`${where}: log scale needs a positive value and a min >= 0 (value ${v}${min !== undefined ? `, min ${min}` : ''}); set log: false`);
  }
  return {
    ...base, type, log,
    ...(min !== undefined ? { min } : {}),
    ...(max !== undefined ? { max } : {}),
    ...(minExclusive ? { minExclusive } : {}),
    ...(decl?.min !== undefined ? { minDeclared: true } : {}),
    ...(decl?.max !== undefined ? { maxDeclared: true } : {}),
  };
}

/**
 * The knobs of every editable file, in path order. A declaration for a file that is not an
 * editable file of the study is an error. `command`: the study's command line (see findKnobs).
 */
export function discoverKnobs(files: Record<string, string>, editable: string[], decls: KnobDecl[], command?: string): Knob[] {
  return discoverKnobReport(files, editable, decls, command).knobs;
}

/** discoverKnobs, with what was passed over and why. */
export function discoverKnobReport(files: Record<string, string>, editable: string[], decls: KnobDecl[], command?: string): KnobReport {
  const isEditable = editable.length > 0 ? picomatch(editable, { dot: true }) : () => true;
  const paths = Object.keys(files).filter((p) => isEditable(p)).sort();
  for (const d of decls) {
    if (!paths.includes(d.file)) {
      throw new UsageError(`knobs: ${d.file} (declared for ${d.name}) is not an editable file of this study; fix the path or add it to \`editable\``);
    }
  }
  prefetchPython(paths.filter((p) => syntaxOf(p) === 'python').map((p) => files[p]!));
  const reports = paths.map((p) => findKnobReport(p, files[p]!, decls, command));
  return { knobs: reports.flatMap((r) => r.knobs), skipped: reports.flatMap((r) => r.skipped) };
}

// ------------------------------------------------------------------------ rewriting

/** Round a number to 3 significant digits (exactly what formatting writes). */
function round3(v: number): number {
  return v === 0 ? 0 : Number(v.toPrecision(3));
}

function formatFloat(v: number, originalUsedExponent: boolean): string {
  const r = round3(v);
  if (r === 0) return '0.0';
  const a = Math.abs(r);
  const exp = a < 1e-3 || a >= 1e6 || (originalUsedExponent && (a < 0.1 || a >= 1e3));
  if (exp) {
    const [m, e] = r.toExponential().split('e') as [string, string];
    return `${m}e${e.replace('+', '')}`;
  }
  const s = String(r);
  return /[.e]/.test(s) ? s : `${s}.0`;
}

function formatInt(v: number, grouped: boolean): string {
  const s = String(Math.round(v));
  if (!grouped) return s;
  const neg = s.startsWith('-');
  const digits = neg ? s.slice(1) : s;
  return (neg ? '-' : '') + digits.replace(/\B(?=(\d{3})+(?!\d))/g, '_');
}

function quoteString(knob: Knob, s: string): string {
  const first = knob.text[0];
  if (knob.syntax === 'yaml') {
    const plainOriginal = first !== '"' && first !== "'";
    if (plainOriginal && YAML_PLAIN.test(s) && !YAML_RESERVED.test(s) && !/^(?:true|false)$/i.test(s)) return s;
    if (first === "'") return `'${s.replace(/'/g, "''")}'`;
    return JSON.stringify(s);
  }
  let q = first === "'" || first === '"' ? first : '"';
  if (s.includes(q) && !s.includes(q === '"' ? "'" : '"')) q = q === '"' ? "'" : '"';
  return q + s.replace(/\\/g, '\\\\').replace(new RegExp(q, 'g'), `\\${q}`) + q;
}

function formatBool(knob: Knob, b: boolean): string {
  if (knob.syntax === 'python') return b ? 'True' : 'False';
  const t = knob.text;
  const word = b ? 'true' : 'false';
  if (t === t.toUpperCase() && /^[A-Z]+$/.test(t)) return word.toUpperCase();
  if (/^[A-Z]/.test(t)) return word[0]!.toUpperCase() + word.slice(1);
  return word;
}

/** The literal text for `value`, in the knob's own style (3 significant digits for floats). */
export function formatKnobValue(knob: Knob, value: KnobValue): string {
  if (typeof value === 'boolean') return formatBool(knob, value);
  if (typeof value === 'string') return quoteString(knob, value);
  const text = knob.text;
  const literalIsFloat = knob.type === 'float' || (knob.type === 'choice' && /[.eE]/.test(text) && !/^["']/.test(text));
  const isInt = knob.type === 'int' || (knob.type === 'choice' && !literalIsFloat && Number.isInteger(value));
  if (isInt) return formatInt(value, knob.syntax === 'python' && text.includes('_'));
  return formatFloat(value, /[eE]/.test(text) && !/^["']/.test(text));
}

/** The value a knob reads back after `setKnob(…, value)`: ints rounded, floats at 3 significant digits. */
export function normalizeKnobValue(knob: Knob, value: KnobValue): KnobValue {
  if (typeof value !== 'number') return value;
  if (knob.type === 'int' || (knob.type === 'choice' && Number.isInteger(value) && !/[.eE]/.test(knob.text))) return Math.round(value);
  return round3(value);
}

/** Rewrite only the knob's literal; every other byte of the file is kept. */
export function setKnob(source: string, knob: Knob, value: KnobValue): string {
  if (source.slice(knob.span.start, knob.span.end) !== knob.text) {
    throw new Error(`setKnob: stale knob ${knobKey(knob)}: the source no longer has \`${knob.text}\` at line ${knob.line}`);
  }
  const literal = formatKnobValue(knob, value);
  const prefix = knob.text === '' ? (knob.prefix ?? '') : '';
  const out = source.slice(0, knob.span.start) + prefix + literal + source.slice(knob.span.end);
  if (knob.syntax === 'python') deriveAnalysis(source, out, knob, prefix, literal);
  return out;
}

/**
 * The analysis of a Python file that setKnob rewrote, derived from the analysis of the file before
 * (the same entries, the rewritten literal's value and text replaced, later offsets shifted) and
 * cached, so a search does not run Python for each candidate it writes. Only a literal of the same
 * shape is derived (one line, a plain number, bool or quoted string); anything else is read again.
 */
function deriveAnalysis(before: string, after: string, knob: Knob, prefix: string, text: string): void {
  const old = cache.get(hashOf(before));
  if (!old || old.error) return;
  let kind: LiteralKind;
  let value: KnobValue;
  if (text === 'True' || text === 'False') {
    kind = 'bool';
    value = text === 'True';
  } else if (/^[-+]?\d[\d_]*$/.test(text)) {
    kind = 'int';
    value = Number(text.replace(/_/g, ''));
  } else if (/^[-+]?(?:\d[\d_]*\.?[\d_]*|\.\d[\d_]*)(?:[eE][-+]?\d+)?$/.test(text) && Number.isFinite(Number(text.replace(/_/g, '')))) {
    kind = 'float';
    value = Number(text.replace(/_/g, ''));
  } else if (/^(?:'(?:[^'\\\r\n]|\\.)*'|"(?:[^"\\\r\n]|\\.)*")$/.test(text) && typeof knob.value === 'string' && !/\\(?!["'\\])/.test(text)) {
    kind = 'string';
    value = text.slice(1, -1).replace(/\\(["'\\])/g, '$1');
  } else {
    return;
  }
  const { start, end } = knob.span;
  const delta = prefix.length + text.length - (end - start);
  let found = false;
  const entries = old.entries.map((e): Entry => {
    const l = e.literal;
    if (!l) return e;
    if (l.start === start && l.end === end && e.name === knob.name && !found) {
      found = true;
      const { insert: _insert, ...rest } = e;
      return { ...rest, literal: { kind, value, text, start: start + prefix.length, end: start + prefix.length + text.length } };
    }
    if (l.start >= end && l.start > start) return { ...e, literal: { ...l, start: l.start + delta, end: l.end + delta } };
    return e;
  });
  if (found) remember(hashOf(after), { entries });
}
