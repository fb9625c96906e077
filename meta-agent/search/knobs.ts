/**
 * Knobs: the top-level literal settings of an editable file that a search can turn.
 *
 * Discovery (Python `.py`): a statement at column 0, outside any string, bracket, line
 * continuation, `def` or `class` body, of the form `NAME = literal` or `NAME: type = literal`,
 * optionally followed by `# comment` (kept as the description). Literals: int (`4`, `-2`,
 * `1_000`), float (`6e-4`, `3.0`, `.5`, `-1e-3`), bool (`True`/`False`) and, only when the
 * study declares `choices` for it, a plain one-line string. Anything else is skipped:
 * expressions (`2 ** 10`, `A * 4`), tuples, lists, calls, hex, several statements on one line,
 * names that are not UPPER_CASE (unless declared), names containing SEED (searching the seed
 * only hunts for lucky noise; declare it to search it anyway), and names assigned more than
 * once at module scope (including inside a top-level `if`/`for`/`with`/`try`): which
 * assignment wins is ambiguous.
 *
 * Discovery (YAML `.yaml`/`.yml`): a column-0 `key: literal [# comment]` line; keys are YAML
 * identifiers in any case (`temperature`, `max_steps`), otherwise the same rules. Other files
 * have no knobs.
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
import picomatch from 'picomatch';
import type { KnobDecl, KnobValue } from '../types.ts';
import { UsageError } from '../../src/errors.ts';

export type KnobType = 'int' | 'float' | 'bool' | 'choice';
export type KnobSyntax = 'python' | 'yaml';

export interface Knob {
  /** repo-relative path of the file */
  file: string;
  name: string;
  type: KnobType;
  /** the current value (a choice knob's value may be a string, number or bool) */
  value: KnobValue;
  /** the literal exactly as written, e.g. `6e-4`, `1_000`, `"adamw"` */
  text: string;
  /** 1-based line of the assignment */
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
  /** the trailing comment of the assignment, without `#` */
  description?: string;
  /** named by a study declaration */
  declared: boolean;
  syntax: KnobSyntax;
}

/** `file:name`, the identity of a knob in proposal meta. */
export function knobKey(k: { file: string; name: string }): string {
  return `${k.file}:${k.name}`;
}

// ------------------------------------------------------------------------ literals

type LiteralKind = 'int' | 'float' | 'bool' | 'string';

interface Literal {
  kind: LiteralKind;
  value: KnobValue;
}

const PY_FLOAT = String.raw`[-+]?(?:\d(?:_?\d)*\.(?:\d(?:_?\d)*)?(?:[eE][-+]?\d(?:_?\d)*)?|\.\d(?:_?\d)*(?:[eE][-+]?\d(?:_?\d)*)?|\d(?:_?\d)*[eE][-+]?\d(?:_?\d)*)`;
const PY_INT = String.raw`[-+]?(?:0(?:_?0)*|[1-9](?:_?\d)*)`;
const PY_STR = String.raw`'(?:[^'\\\r\n]|\\.)*'|"(?:[^"\\\r\n]|\\.)*"`;
const PY_LIT = `${PY_FLOAT}|${PY_INT}|True|False|${PY_STR}`;
/** NAME [: annotation] = literal [# comment] — one physical line, nothing else */
const PY_KNOB_LINE = new RegExp(
  String.raw`^([A-Za-z_][A-Za-z0-9_]*)[ \t]*(?::[ \t]*[^=#\r\n]+?[ \t]*)?=[ \t]*(${PY_LIT})[ \t]*(?:#[ \t]*(.*?))?[ \t]*$`,
  'd',
);

const YAML_FLOAT = String.raw`[-+]?(?:\d+\.\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?|\d+[eE][-+]?\d+)`;
const YAML_INT = String.raw`[-+]?(?:0|[1-9]\d*)`;
const YAML_BOOL = 'true|false|True|False|TRUE|FALSE';
const YAML_DQ = String.raw`"(?:[^"\\\r\n]|\\.)*"`;
const YAML_SQ = String.raw`'(?:[^'\r\n]|'')*'`;
/** a plain (unquoted) one-word scalar such as `claude-sonnet` or `gpt-4o-mini` */
const YAML_PLAIN = String.raw`[A-Za-z_][A-Za-z0-9_./+-]*`;
const YAML_LIT = `${YAML_FLOAT}|${YAML_INT}|${YAML_BOOL}|${YAML_DQ}|${YAML_SQ}|${YAML_PLAIN}`;
const YAML_KEY = String.raw`[A-Za-z_][A-Za-z0-9_-]*`;
const YAML_KNOB_LINE = new RegExp(
  String.raw`^(${YAML_KEY})[ \t]*:[ \t]+(${YAML_LIT})(?:[ \t]+#[ \t]*(.*?))?[ \t]*$`,
  'd',
);
/** plain words a YAML reader does not take as strings */
const YAML_RESERVED = /^(?:null|Null|NULL|~|yes|Yes|YES|no|No|NO|on|On|ON|off|Off|OFF|y|Y|n|N)$/;

function parsePythonLiteral(text: string): Literal {
  if (text === 'True' || text === 'False') return { kind: 'bool', value: text === 'True' };
  if (text[0] === '"' || text[0] === "'") return { kind: 'string', value: unescapePython(text.slice(1, -1)) };
  const n = Number(text.replace(/_/g, ''));
  return { kind: new RegExp(`^(?:${PY_FLOAT})$`).test(text) ? 'float' : 'int', value: n };
}

function unescapePython(s: string): string {
  return s.replace(/\\(["'\\])/g, '$1');
}

function parseYamlLiteral(text: string): Literal | null {
  if (new RegExp(`^(?:${YAML_BOOL})$`).test(text)) return { kind: 'bool', value: text.toLowerCase() === 'true' };
  if (new RegExp(`^(?:${YAML_FLOAT})$`).test(text)) return { kind: 'float', value: Number(text) };
  if (new RegExp(`^(?:${YAML_INT})$`).test(text)) return { kind: 'int', value: Number(text) };
  if (text[0] === '"') {
    try {
      return { kind: 'string', value: JSON.parse(text) as string };
    } catch {
      return null;
    }
  }
  if (text[0] === "'") return { kind: 'string', value: text.slice(1, -1).replace(/''/g, "'") };
  if (YAML_RESERVED.test(text)) return null;
  return { kind: 'string', value: text };
}

// ------------------------------------------------------------------------ scanning

interface Candidate {
  name: string;
  literal: Literal;
  text: string;
  start: number;
  end: number;
  line: number;
  description?: string;
}

interface Scan {
  /** single-line top-level literal assignments, in file order */
  candidates: Candidate[];
  /** how many times each name is assigned at module scope / top level */
  assigned: Map<string, number>;
}

interface PyStatement {
  /** offset of the first character of code */
  start: number;
  /** offset of the end of the statement's first physical line (before \r\n) */
  firstLineEnd: number;
  line: number;
  indent: number;
  /** spans more than one physical line (brackets, triple-quoted strings, backslash) */
  multiline: boolean;
  /** the code of the statement without its trailing comment (for block detection) */
  code: string;
}

/** Split Python source into logical lines, tracking strings, brackets and continuations. */
function pythonStatements(src: string): PyStatement[] {
  const out: PyStatement[] = [];
  const n = src.length;
  let i = 0;
  let line = 1;
  while (i < n) {
    let j = i;
    while (j < n && (src[j] === ' ' || src[j] === '\t' || src[j] === '\f')) j++;
    if (j >= n) break;
    if (src[j] === '\n' || src[j] === '\r' || src[j] === '#') {
      // blank or comment-only line
      while (j < n && src[j] !== '\n') j++;
      i = j + 1;
      line++;
      continue;
    }
    const startLine = line;
    const indent = j - i;
    let depth = 0;
    let multiline = false;
    let k = j;
    let firstLineEnd = -1;
    let code = '';
    let codeFrom = j;
    const markLineEnd = (at: number) => {
      if (firstLineEnd < 0) firstLineEnd = at > j && src[at - 1] === '\r' ? at - 1 : at;
    };
    while (k < n) {
      const c = src[k]!;
      if (c === '#') {
        code += src.slice(codeFrom, k);
        while (k < n && src[k] !== '\n') k++;
        codeFrom = k;
        continue;
      }
      if (c === '"' || c === "'") {
        const triple = src.startsWith(c.repeat(3), k);
        const q = triple ? c.repeat(3) : c;
        k += q.length;
        while (k < n) {
          if (src[k] === '\\') {
            if (src[k + 1] === '\n') {
              markLineEnd(k);
              line++;
              multiline = true;
            }
            k += 2;
            continue;
          }
          if (src.startsWith(q, k)) {
            k += q.length;
            break;
          }
          if (src[k] === '\n') {
            if (!triple) break; // unterminated: end the string at the line end
            markLineEnd(k);
            line++;
            multiline = true;
          }
          k++;
        }
        continue;
      }
      if (c === '\\' && (src[k + 1] === '\n' || (src[k + 1] === '\r' && src[k + 2] === '\n'))) {
        markLineEnd(k);
        k += src[k + 1] === '\n' ? 2 : 3;
        line++;
        multiline = true;
        continue;
      }
      if (c === '(' || c === '[' || c === '{') depth++;
      else if (c === ')' || c === ']' || c === '}') depth = Math.max(0, depth - 1);
      else if (c === '\n') {
        markLineEnd(k);
        line++;
        if (depth === 0) {
          k++;
          break;
        }
        multiline = true;
      }
      k++;
    }
    if (k >= n) markLineEnd(n);
    code += src.slice(codeFrom, Math.min(k, n));
    out.push({ start: j, firstLineEnd, line: startLine, indent, multiline, code: code.trim() });
    i = k;
  }
  return out;
}

/** Names a module-scope statement assigns: `A = …`, `A = B = …`, `A, B = …`, `A: T = …`, `A += …`, `for A in …`. */
function assignedNames(code: string): string[] {
  const names: string[] = [];
  for (const part of splitSemicolons(code)) {
    let rest = part.trim();
    const aug = /^([A-Za-z_]\w*)\s*(?:\*\*|\/\/|>>|<<|[-+*/%@&|^])=/.exec(rest);
    if (aug) {
      names.push(aug[1]!);
      continue;
    }
    const ann = /^([A-Za-z_]\w*)\s*:[^=]*=(?!=)/.exec(rest);
    if (ann && !/^(?:if|elif|else|while|for|with|try|except|finally|def|class|lambda)\b/.test(rest)) {
      names.push(ann[1]!);
      continue;
    }
    const forLoop = /^(?:async\s+)?for\s+\(?\s*([A-Za-z_]\w*(?:\s*,\s*[A-Za-z_]\w*)*)\s*,?\s*\)?\s+in\b/.exec(rest);
    if (forLoop) {
      names.push(...forLoop[1]!.split(',').map((s) => s.trim()));
      continue;
    }
    const target = /^\(?\s*([A-Za-z_]\w*(?:\s*,\s*[A-Za-z_]\w*)*)\s*,?\s*\)?\s*=(?!=)/;
    let m: RegExpExecArray | null;
    while ((m = target.exec(rest))) {
      const targets = m[1]!.split(',').map((s) => s.trim());
      if (targets.some((t) => /^(?:if|elif|while|return|assert|not|and|or|in|is|lambda|yield)$/.test(t))) break;
      names.push(...targets);
      rest = rest.slice(m[0].length);
    }
  }
  return names;
}

function splitSemicolons(code: string): string[] {
  const parts: string[] = [];
  let depth = 0;
  let quote = '';
  let from = 0;
  for (let i = 0; i < code.length; i++) {
    const c = code[i]!;
    if (quote) {
      if (c === '\\') i++;
      else if (c === quote) quote = '';
      continue;
    }
    if (c === '"' || c === "'") quote = c;
    else if ('([{'.includes(c)) depth++;
    else if (')]}'.includes(c)) depth--;
    else if (c === ';' && depth === 0) {
      parts.push(code.slice(from, i));
      from = i + 1;
    }
  }
  parts.push(code.slice(from));
  return parts;
}

function scanPython(src: string): Scan {
  const candidates: Candidate[] = [];
  const assigned = new Map<string, number>();
  /** open blocks: their indentation and whether they are a function/class scope */
  const blocks: Array<{ indent: number; scope: boolean }> = [];
  for (const st of pythonStatements(src)) {
    while (blocks.length > 0 && blocks[blocks.length - 1]!.indent >= st.indent) blocks.pop();
    const inScope = blocks.some((b) => b.scope);
    if (st.code.endsWith(':')) blocks.push({ indent: st.indent, scope: /^(?:async\s+def|def|class)\b/.test(st.code) });
    if (inScope) continue;
    for (const name of assignedNames(st.code)) assigned.set(name, (assigned.get(name) ?? 0) + 1);
    if (st.indent !== 0 || st.multiline) continue;
    const text = src.slice(st.start, st.firstLineEnd);
    const m = PY_KNOB_LINE.exec(text);
    if (!m) continue;
    const [ls, le] = m.indices![2]!;
    const litText = m[2]!;
    candidates.push({
      name: m[1]!,
      literal: parsePythonLiteral(litText),
      text: litText,
      start: st.start + ls,
      end: st.start + le,
      line: st.line,
      description: m[3] ? m[3] : undefined,
    });
  }
  return { candidates, assigned };
}

function scanYaml(src: string): Scan {
  const candidates: Candidate[] = [];
  const assigned = new Map<string, number>();
  const lines = src.split('\n');
  let offset = 0;
  /** skip lines until this closes: an open flow collection or quoted scalar */
  let open: { brackets: number; quote: string } | null = null;
  for (let li = 0; li < lines.length; li++) {
    const raw = lines[li]!;
    const lineStart = offset;
    offset += raw.length + 1;
    const text = raw.endsWith('\r') ? raw.slice(0, -1) : raw;
    if (open) {
      open = yamlStillOpen(text, open);
      continue;
    }
    if (text === '' || /^[ \t]/.test(text) || text.startsWith('#')) continue;
    const key = /^([^\s#'"{}[\],&*!|>%@`?:-][^:#]*?)[ \t]*:(?:[ \t]+(.*))?$/.exec(text);
    if (!key) continue;
    assigned.set(key[1]!, (assigned.get(key[1]!) ?? 0) + 1);
    const value = (key[2] ?? '').trim();
    if (/^[[{"']/.test(value)) {
      const state = yamlStillOpen(value, { brackets: 0, quote: '' }, true);
      if (state) {
        open = state;
        continue;
      }
    }
    const m = YAML_KNOB_LINE.exec(text);
    if (!m) continue;
    // a plain scalar continued on the next (indented) line is a longer string, not this literal
    const next = lines.slice(li + 1).find((l) => l.trim() !== '' && !l.trim().startsWith('#'));
    if (next !== undefined && /^[ \t]/.test(next)) continue;
    const literal = parseYamlLiteral(m[2]!);
    if (!literal) continue;
    const [ls, le] = m.indices![2]!;
    candidates.push({
      name: m[1]!,
      literal,
      text: m[2]!,
      start: lineStart + ls,
      end: lineStart + le,
      line: li + 1,
      description: m[3] ? m[3] : undefined,
    });
  }
  return { candidates, assigned };
}

/** Track an unclosed YAML flow collection / quoted scalar; null once closed. */
function yamlStillOpen(text: string, state: { brackets: number; quote: string }, first = false): { brackets: number; quote: string } | null {
  let { brackets, quote } = state;
  let started = !first;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (quote) {
      if (quote === '"' && c === '\\') i++;
      else if (c === quote) {
        if (quote === "'" && text[i + 1] === "'") i++;
        else quote = '';
      }
    } else if (c === '"' || c === "'") quote = c;
    else if (c === '[' || c === '{') brackets++;
    else if (c === ']' || c === '}') brackets--;
    else if (c === '#' && (i === 0 || /\s/.test(text[i - 1]!))) break;
    started = true;
  }
  return started && (brackets > 0 || quote) ? { brackets, quote } : null;
}

// ------------------------------------------------------------------------ discovery

const AUTO_NAME = /^[A-Z][A-Z0-9_]*$/;
const SEED_NAME = /(?:^|_)SEED(?:$|_)/i;

function syntaxOf(path: string): KnobSyntax | null {
  if (/\.py$/i.test(path)) return 'python';
  if (/\.ya?ml$/i.test(path)) return 'yaml';
  return null;
}

/**
 * The knobs of one file. `decls` may name knobs of other files (ignored here).
 * Throws a UsageError for a declaration that names no top-level literal of this file.
 */
export function findKnobs(path: string, source: string, decls: KnobDecl[]): Knob[] {
  const mine = decls.filter((d) => d.file === path);
  const syntax = syntaxOf(path);
  if (!syntax) {
    if (mine.length > 0) throw new UsageError(`knobs: ${mine[0]!.name} in ${path}: only .py, .yaml and .yml files have knobs`);
    return [];
  }
  const scan = syntax === 'python' ? scanPython(source) : scanYaml(source);
  const declOf = new Map<string, KnobDecl>();
  for (const d of mine) {
    if (declOf.has(d.name)) throw new UsageError(`knobs: ${d.name} in ${path} is declared twice; merge the two declarations`);
    declOf.set(d.name, d);
  }
  const byName = new Map(scan.candidates.map((c) => [c.name, c]));
  for (const d of mine) {
    if ((scan.assigned.get(d.name) ?? 0) > 1) {
      throw new UsageError(`knobs: ${d.name} is assigned more than once at top level in ${path}; a knob needs exactly one literal assignment`);
    }
    if (!byName.has(d.name)) {
      throw new UsageError(`knobs: ${d.name} not found as a top-level literal in ${path} (expected a line \`${d.name} ${syntax === 'python' ? '=' : ':'} <number, bool or string>\` at column 0)`);
    }
  }
  const knobs: Knob[] = [];
  for (const c of scan.candidates) {
    const decl = declOf.get(c.name);
    if ((scan.assigned.get(c.name) ?? 0) > 1 || decl?.search === false) continue;
    if (!decl) {
      const nameOk = syntax === 'python' ? AUTO_NAME.test(c.name) : /^[A-Za-z_][A-Za-z0-9_-]*$/.test(c.name);
      if (!nameOk || SEED_NAME.test(c.name) || c.literal.kind === 'string') continue;
    }
    knobs.push(makeKnob(path, syntax, c, decl));
  }
  return knobs;
}

function makeKnob(file: string, syntax: KnobSyntax, c: Candidate, decl: KnobDecl | undefined): Knob {
  const where = `knobs: ${c.name} in ${file}`;
  const base = {
    file, name: c.name, value: c.literal.value, text: c.text, line: c.line,
    span: { start: c.start, end: c.end }, declared: decl !== undefined, syntax,
    ...(c.description !== undefined ? { description: c.description } : {}),
  };
  if (decl?.choices) {
    return { ...base, type: 'choice', choices: [...decl.choices], log: false };
  }
  if (c.literal.kind === 'string') {
    throw new UsageError(`${where} is a string; declare its \`choices\` to search it`);
  }
  if (c.literal.kind === 'bool') {
    if (decl && (decl.min !== undefined || decl.max !== undefined || decl.log !== undefined)) {
      throw new UsageError(`${where} is a bool; min, max and log do not apply (remove them)`);
    }
    return { ...base, type: 'bool', log: false };
  }
  const v = c.literal.value as number;
  const type: KnobType = c.literal.kind === 'int' ? 'int' : 'float';
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
 * editable file of the study is an error.
 */
export function discoverKnobs(files: Record<string, string>, editable: string[], decls: KnobDecl[]): Knob[] {
  const isEditable = editable.length > 0 ? picomatch(editable, { dot: true }) : () => true;
  const paths = Object.keys(files).filter((p) => isEditable(p)).sort();
  for (const d of decls) {
    if (!paths.includes(d.file)) {
      throw new UsageError(`knobs: ${d.file} (declared for ${d.name}) is not an editable file of this study; fix the path or add it to \`editable\``);
    }
  }
  return paths.flatMap((p) => findKnobs(p, files[p]!, decls));
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
    if (plainOriginal && new RegExp(`^(?:${YAML_PLAIN})$`).test(s) && !YAML_RESERVED.test(s) && !/^(?:true|false)$/i.test(s)) return s;
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
  return source.slice(0, knob.span.start) + formatKnobValue(knob, value) + source.slice(knob.span.end);
}
