/** Pieces shared by the kinds: the sandboxes' mounts and environments, METRIC parsing, output tails. */
import { isAbsolute, join } from 'node:path';
import { mkdirSync } from 'node:fs';
import type { EvalRequest } from './types.ts';
import { sandboxPath, type SandboxSpec } from '../sandbox/index.ts';

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

/** The last `METRIC name=value` line for `name` (and every METRIC line as a map). */
export function parseMetricLines(stdout: string, name: string): { value: number | null; all: Record<string, number> } {
  const all: Record<string, number> = {};
  let value: number | null = null;
  for (const line of stdout.split('\n')) {
    const m = /^\s*METRIC\s+([A-Za-z_][A-Za-z0-9_.-]*)\s*=\s*(\S+)\s*$/.exec(line);
    if (!m) continue;
    const v = Number(m[2]);
    all[m[1]!] = v;
    if (m[1] === name) value = v;
  }
  return { value, all };
}

/** The last match of a self-reported metric pattern (one capture group). */
export function parsePattern(output: string, pattern: string): number | null {
  const re = new RegExp(pattern, 'gm');
  let last: number | null = null;
  for (const m of output.matchAll(re)) last = Number(m[1]);
  return last;
}

export function lastLine(text: string): string {
  const lines = text.trim().split('\n');
  return lines[lines.length - 1]?.slice(0, 200) ?? '';
}
