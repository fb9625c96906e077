/**
 * What a sandbox sees of the host: a minimal, read-only system view instead of the whole filesystem.
 *
 * - system directories: /usr and the /bin, /sbin, /lib* entries (symlinks into /usr on merged-/usr
 *   systems are recreated as symlinks), /sys without firmware and kernel debug/security entries;
 * - an allow-list of /etc (the dynamic loader's cache, alternatives, passwd/group, name service,
 *   time zone, certificates, Python's and fonts' settings): nothing with secrets (/etc/shadow,
 *   ssh host keys, npmrc, pip.conf) and no service configuration;
 * - the interpreters on the host PATH (python3, python) and the running node, with their
 *   installation prefixes and import paths when they live outside /usr (pyenv, conda, nvm, a venv);
 * - nothing else: no /home, /root, /opt, /srv, /mnt, /media, /var (service sockets live in
 *   /var/run, /var/tmp and /run), no host /tmp. A study adds more with `sandbox.read` (spec.read).
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

export const SYSTEM_ROOTS = ['/usr', '/bin', '/sbin', '/lib', '/lib32', '/lib64', '/libx32'];

/** /etc entries a program may need to start, resolve names or find libraries (exact names or a trailing *). */
export const ETC_ALLOW = [
  'ld.so.cache', 'ld.so.conf', 'ld.so.conf.d', 'alternatives', 'passwd', 'group', 'nsswitch.conf', 'hosts',
  'host.conf', 'resolv.conf', 'gai.conf', 'localtime', 'timezone', 'ssl', 'ca-certificates', 'ca-certificates.conf',
  'pki', 'mime.types', 'python3', 'python3.*', 'os-release', 'debian_version', 'lsb-release', 'fonts', 'protocols',
  'services', 'networks', 'locale.alias', 'magic', 'magic.mime', 'terminfo', 'mtab', 'matplotlibrc', 'glvnd',
  'OpenCL', 'vulkan', 'nvidia', 'shells',
];
/** parts of /sys that say nothing a program needs and may say more than it should */
const SYS_HIDE = ['/sys/firmware', '/sys/kernel/security', '/sys/kernel/debug', '/sys/kernel/tracing'];

export type ViewMount =
  | { kind: 'ro'; path: string }
  | { kind: 'symlink'; target: string; path: string }
  | { kind: 'hide'; path: string };

function lstat(p: string): fs.Stats | null {
  try {
    return fs.lstatSync(p);
  } catch {
    return null;
  }
}

export function isUnder(p: string, dir: string): boolean {
  return p === dir || dir === '/' || p.startsWith(dir.endsWith('/') ? dir : dir + '/');
}

function etcMatches(name: string): boolean {
  return ETC_ALLOW.some((a) => (a.endsWith('*') ? name.startsWith(a.slice(0, -1)) : name === a));
}

/** A host path as the sandbox gets it: symlinks recreated, files and folders bound read-only. */
function mountOf(p: string): ViewMount | null {
  const st = lstat(p);
  if (!st) return null;
  if (st.isSymbolicLink()) return { kind: 'symlink', target: fs.readlinkSync(p), path: p };
  return { kind: 'ro', path: p };
}

export interface Interpreter {
  /** the name it answers to on the host PATH (python3, python, node) */
  name: string;
  /** the executable a sandboxed PATH lookup should find (its folder goes first on PATH) */
  executable: string;
  /** folders to mount read-only for it to run */
  roots: string[];
}

const probed = new Map<string, Interpreter | null>();

function onPath(name: string, pathVar: string): string | null {
  for (const dir of pathVar.split(':')) {
    if (!dir || !path.isAbsolute(dir)) continue;
    const p = path.join(dir, name);
    try {
      fs.accessSync(p, fs.constants.X_OK);
      if (fs.statSync(p).isFile()) return p;
    } catch {
      /* next */
    }
  }
  return null;
}

const PY_PROBE =
  'import sys, json; print(json.dumps({"executable": sys.executable, "prefixes": [sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix], "path": sys.path}))';

/** Where a Python installation lives: its prefixes and import path (user site and PYTHONPATH left out). */
function probePython(name: string, exe: string): Interpreter | null {
  const key = `py:${exe}`;
  if (probed.has(key)) return probed.get(key)!;
  let found: Interpreter | null = null;
  const r = spawnSync(exe, ['-E', '-s', '-c', PY_PROBE], { cwd: '/', encoding: 'utf8', timeout: 30_000, env: { PATH: process.env.PATH ?? '/usr/bin:/bin' } });
  if (r.status === 0) {
    try {
      const info = JSON.parse(r.stdout.trim().split('\n').pop()!) as { executable: string; prefixes: string[]; path: string[] };
      const roots = [...info.prefixes, ...info.path.filter((p) => p && path.isAbsolute(p) && lstat(p))];
      found = { name, executable: info.executable || exe, roots: [...new Set(roots)] };
    } catch {
      found = null;
    }
  }
  probed.set(key, found);
  return found;
}

/** The interpreters a command is likely to call by name: python3 and python from the host PATH, and this node. */
export function hostInterpreters(extra: string[] = []): Interpreter[] {
  const pathVar = process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin';
  const out: Interpreter[] = [];
  for (const name of ['python3', 'python']) {
    const exe = onPath(name, pathVar);
    const it = exe ? probePython(name, exe) : null;
    if (it) out.push(it);
  }
  for (const exe of extra) {
    const base = path.basename(exe);
    const it = /^python[\d.]*$/.test(base) ? probePython(base, exe) : null;
    if (it) out.push(it);
    else out.push({ name: base, executable: exe, roots: [path.dirname(path.dirname(realOr(exe)))] });
  }
  const node = realOr(process.execPath);
  out.push({ name: 'node', executable: node, roots: [path.dirname(path.dirname(node))] });
  return out;
}

function realOr(p: string): string {
  try {
    return fs.realpathSync(p);
  } catch {
    return p;
  }
}

/** Reduce a set of folders to those not inside another (or inside a system root). */
function outermost(paths: string[], covered: string[]): string[] {
  const sorted = [...new Set(paths.map((p) => path.resolve(p)))].sort((a, b) => a.length - b.length);
  const kept: string[] = [];
  for (const p of sorted) {
    if ([...covered, ...kept].some((c) => isUnder(p, c))) continue;
    kept.push(p);
  }
  return kept;
}

export interface SystemView {
  mounts: ViewMount[];
  /** the PATH a sandboxed command gets: interpreter folders first, then host PATH entries that are mounted */
  path: string;
  /** every host path the view makes readable (for coverage checks) */
  readable: string[];
}

const viewCache = new Map<string, SystemView>();

/** The system view (cached per set of extra executables). */
export function systemView(extraExecutables: string[] = []): SystemView {
  const key = JSON.stringify(extraExecutables);
  const cached = viewCache.get(key);
  if (cached) return cached;
  const mounts: ViewMount[] = [];
  const readable: string[] = [];
  for (const r of SYSTEM_ROOTS) {
    const m = mountOf(r);
    if (!m) continue;
    mounts.push(m);
    if (m.kind === 'ro') readable.push(r);
  }
  try {
    for (const name of fs.readdirSync('/etc').sort()) {
      if (!etcMatches(name)) continue;
      const m = mountOf(path.join('/etc', name));
      if (m) mounts.push(m);
    }
  } catch {
    /* no /etc */
  }
  if (lstat('/sys')) {
    mounts.push({ kind: 'ro', path: '/sys' });
    for (const h of SYS_HIDE) if (lstat(h)) mounts.push({ kind: 'hide', path: h });
  }
  const interpreters = hostInterpreters(extraExecutables);
  const extraRoots = outermost(
    interpreters.flatMap((i) => i.roots).filter((p) => lstat(p)).map(realOr),
    readable,
  );
  for (const p of extraRoots) {
    mounts.push({ kind: 'ro', path: p });
    readable.push(p);
  }
  const covered = (dir: string) => readable.some((r) => isUnder(realOr(dir), r));
  const dirs: string[] = [];
  for (const i of interpreters) if (covered(path.dirname(i.executable))) dirs.push(path.dirname(i.executable));
  for (const d of (process.env.PATH ?? '').split(':')) if (d && path.isAbsolute(d) && lstat(d) && covered(d)) dirs.push(d);
  for (const d of ['/usr/local/bin', '/usr/bin', '/bin']) if (lstat(d)) dirs.push(d);
  const view: SystemView = { mounts, path: [...new Set(dirs)].join(':'), readable };
  viewCache.set(key, view);
  return view;
}

/** The PATH to give sandboxed commands: only folders the sandbox can see, interpreters first. */
export function sandboxPath(extraExecutables: string[] = []): string {
  return systemView(extraExecutables).path;
}
