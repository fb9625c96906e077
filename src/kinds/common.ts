/** Pieces shared by the kinds: the sandboxes' mounts and environments, METRIC parsing, output tails. */
import { isAbsolute, join } from 'node:path';
import { mkdirSync } from 'node:fs';
import type { EvalRequest } from './types.ts';
import { sandboxPath, type SandboxSpec } from '../../sandbox/index.ts';

export const TAIL_BYTES = 8192;

export function tail(text: string, bytes = TAIL_BYTES): string {
  return text.length <= bytes ? text : '…' + text.slice(text.length - bytes);
}

/** A PATH without relative entries and without folders under `forbidden` (where candidate code writes). */
function safePath(value: string, forbidden: string[]): string {
  return value.split(':').filter((d) => d && isAbsolute(d) && !forbidden.some((f) => d === f || d.startsWith(f + '/'))).join(':');
}

/** The complete environment of the candidate's command: nothing inherited; PATH finds only what the sandbox shows. */
export function sandboxEnv(req: EvalRequest, extra: Record<string, string>, executables: string[] = []): Record<string, string> {
  const home = join(req.scratch, 'home');
  mkdirSync(home, { recursive: true });
  return {
    PATH: sandboxPath(executables),
    HOME: home,
    LANG: 'C.UTF-8',
    LC_ALL: 'C.UTF-8',
    TMPDIR: '/tmp',
    PYTHONDONTWRITEBYTECODE: '1',
    PYTHONUNBUFFERED: '1',
    ...req.study.env,
    AUTOAGENT_SEED: String(req.seed),
    AUTOAGENT_REPEAT: String(req.repeat),
    AUTOAGENT_SCRATCH: req.scratch,
    ...extra,
  };
}

/**
 * The locked evaluator's environment: its own HOME (the command never saw it), no user site
 * packages, byte code cached only in its private /tmp, a PATH with nothing the candidate wrote; the
 * candidate's tree and scratch are named as data folders.
 */
export function evaluatorEnv(req: EvalRequest, extra: Record<string, string>, executables: string[] = []): Record<string, string> {
  const env: Record<string, string> = {
    PATH: sandboxPath(executables),
    LANG: 'C.UTF-8',
    LC_ALL: 'C.UTF-8',
    PYTHONUNBUFFERED: '1',
    ...req.study.env,
    HOME: req.ws.evalHome,
    TMPDIR: '/tmp',
    PYTHONDONTWRITEBYTECODE: '1',
    PYTHONNOUSERSITE: '1',
    PYTHONPYCACHEPREFIX: '/tmp/pycache',
    AUTOAGENT_SEED: String(req.seed),
    AUTOAGENT_REPEAT: String(req.repeat),
    AUTOAGENT_SCRATCH: req.scratch,
    AUTOAGENT_CANDIDATE_DIR: req.worktree,
    ...extra,
  };
  env.PATH = safePath(env.PATH!, [req.worktree, req.scratch]);
  for (const k of ['PYTHONPATH', 'NODE_PATH']) if (env[k]) env[k] = safePath(env[k]!, [req.worktree, req.scratch]);
  return env;
}

type Mounts = Pick<SandboxSpec, 'writable' | 'readonly' | 'binds' | 'read' | 'diskWatch'>;

/** The command's sandbox: its tree and scratch writable, locked files read-only, hidden files absent. */
export function candidateMounts(req: EvalRequest): Mounts {
  return {
    writable: [req.ws.cand, req.ws.scratch],
    readonly: req.ws.lockedInCand,
    binds: req.ws.lockedBinds(req.ws.cand, false),
    read: req.policy.read,
    diskWatch: req.ws.diskWatch,
  };
}

/** The evaluator's sandbox: its view of the study (read-only), the candidate's tree and scratch as data, its own home. */
export function evaluatorMounts(req: EvalRequest, view: string): Mounts {
  return {
    writable: [req.ws.evalHome],
    readonly: [view, req.ws.cand, req.ws.scratch],
    binds: req.ws.lockedBinds(view, true),
    read: req.policy.read,
  };
}

/** Why the command's sandbox ended it, when it was a limit (disk), else null. */
export function limitReason(r: { diskExceeded: boolean }, req: EvalRequest): string | null {
  if (r.diskExceeded) return `the command wrote more than sandbox.disk_mb (${req.study.sandbox.disk_mb} MiB) and was killed`;
  return null;
}

/** A hint for an evaluator that failed: files the command made that its view does not show. */
export function unseenHint(req: EvalRequest): string {
  const unseen = req.ws.unseenOutputs(3);
  if (unseen.length === 0) return '';
  return ` (the command created ${unseen.join(', ')}, which the evaluator's folder does not show: declare data files in \`outputs:\`, or read them from $AUTOAGENT_CANDIDATE_DIR)`;
}

/**
 * The last `METRIC name=value` line for `name` (and every well-formed METRIC line as a map). A
 * metric is a decimal number (`12`, `-0.5`, `.5`, `5.`, `1e-3`); anything else on the named
 * metric's last line (`0x10`, `1_000`, nothing) is `error`, never a number: hex, binary, digit
 * separators and blanks are what JavaScript's Number() would have turned into 16, 0 or 0.
 * `nan` / `inf` / `Infinity` (any case, signed) are numbers that are not finite: an error too.
 */
export function parseMetricLines(stdout: string, name: string): { value: number | null; error: string | null; all: Record<string, number> } {
  const all: Record<string, number> = {};
  let value: number | null = null;
  let error: string | null = null;
  for (const line of stdout.split('\n')) {
    const m = /^\s*METRIC\s+([A-Za-z_][A-Za-z0-9_.-]*)\s*=(.*)$/.exec(line);
    if (!m) continue;
    const raw = m[2]!.trim();
    const shown = `METRIC ${m[1]}=${raw.length > 60 ? raw.slice(0, 60) + '…' : raw}`;
    let v: number | null = null;
    let why: string | null = null;
    if (/^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(raw)) {
      v = Number(raw);
      if (!Number.isFinite(v)) why = `metric ${m[1]} is not a finite number (${shown})`;
    } else if (/^[+-]?(nan|inf|infinity)$/i.test(raw)) {
      why = `metric ${m[1]} is not a finite number (${shown})`;
    } else {
      why = raw ? `${shown}: not a decimal number` : `${shown}: nothing after "=" (not a decimal number)`;
    }
    if (why === null) all[m[1]!] = v!;
    if (m[1] === name) {
      value = why === null ? v : null;
      error = why;
    }
  }
  return { value, error, all };
}

/**
 * The last match of a self-reported metric pattern (one capture group): `value` null and `error`
 * null when nothing matches; a capture that is not a decimal number (see parseMetricLines), an
 * empty one included, is `error`.
 */
export function parsePattern(output: string, pattern: string): { value: number | null; error: string | null } {
  const re = new RegExp(pattern, 'gm');
  let last: string | null = null;
  for (const m of output.matchAll(re)) last = m[1] ?? '';
  if (last === null) return { value: null, error: null };
  const raw = last.trim();
  const quoted = JSON.stringify(last.length > 60 ? last.slice(0, 60) + '…' : last);
  if (/^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(raw)) {
    const v = Number(raw);
    if (Number.isFinite(v)) return { value: v, error: null };
  } else if (!/^[+-]?(nan|inf|infinity)$/i.test(raw)) {
    return { value: null, error: `metric.pattern captured ${quoted} (not a decimal number)` };
  }
  return { value: null, error: `metric is not a finite number (metric.pattern captured ${quoted})` };
}

export function lastLine(text: string): string {
  const lines = text.trim().split('\n');
  return lines[lines.length - 1]?.slice(0, 200) ?? '';
}
