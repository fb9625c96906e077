/**
 * Finding "the Python that has X": `AUTOAGENT_PYTHON` when set, else the first of python3,
 * /usr/bin/python3, /usr/local/bin/python3, python whose probe succeeds. The `python3` first on
 * PATH may be a virtualenv or pyenv interpreter without the system's packages (Debian's
 * python3-torch, python3-optuna), so the system interpreters are tried after it.
 */
import { spawnSync } from 'node:child_process';

/** the interpreters tried, in order */
export function pythonCandidates(env: NodeJS.ProcessEnv = process.env): string[] {
  return env.AUTOAGENT_PYTHON ? [env.AUTOAGENT_PYTHON] : ['python3', '/usr/bin/python3', '/usr/local/bin/python3', 'python'];
}

/**
 * The first candidate for which `args` exits 0 and whose last stdout line parses as JSON; its
 * absolute path (sys.executable) and that JSON. null when none does.
 */
export function findPython<T = Record<string, unknown>>(args: string[], env: NodeJS.ProcessEnv = process.env, timeoutMs = 60_000): { python: string; info: T } | null {
  for (const py of pythonCandidates(env)) {
    const r = spawnSync(py, args, { encoding: 'utf8', timeout: timeoutMs, env: { ...env, PYTHONDONTWRITEBYTECODE: '1' } });
    if (r.status !== 0) continue;
    try {
      const info = JSON.parse(r.stdout.trim().split('\n').pop()!) as T;
      const abs = spawnSync(py, ['-c', 'import sys; print(sys.executable)'], { encoding: 'utf8' }).stdout?.trim() || py;
      return { python: abs, info };
    } catch {
      // not our output: try the next interpreter
    }
  }
  return null;
}
