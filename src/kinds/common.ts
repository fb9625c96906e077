/** Pieces shared by the kinds: the sandbox environment, METRIC parsing, output tails. */
import { join } from 'node:path';
import { mkdirSync } from 'node:fs';
import type { EvalRequest } from './types.ts';

export const TAIL_BYTES = 8192;

export function tail(text: string, bytes = TAIL_BYTES): string {
  return text.length <= bytes ? text : '…' + text.slice(text.length - bytes);
}

/** The complete environment of a sandboxed process: nothing inherited but PATH and locale. */
export function sandboxEnv(req: EvalRequest, extra: Record<string, string>): Record<string, string> {
  const home = join(req.scratch, 'home');
  mkdirSync(home, { recursive: true });
  return {
    PATH: process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin',
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
