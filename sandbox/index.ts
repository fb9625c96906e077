// Runs untrusted candidate code under bubblewrap: a minimal read-only view of the system (see
// view.ts: no home folders, no /var, no host /tmp, no service sockets), private size-limited /tmp
// and /dev/shm, no network, no capabilities, own pid namespace, hard deadline with the whole tree
// SIGKILLed, memory (RLIMIT_AS, and the tmpfs sizes), process and disk limits. See DESIGN.md,
// "Trust boundaries", and README "Threat model".
//
// Limits and why they are built this way:
// - Memory: RLIMIT_AS set by `prlimit` (util-linux) inside the sandbox, right before the command
//   (falls back to `ulimit -v` in /bin/sh). Per process, so N processes may use N times the limit;
//   the process limit bounds N.
// - Processes: RLIMIT_NPROC is ignored by the kernel for uid 0 of the initial user namespace,
//   even without capabilities, so when we run as real root it does nothing; we then put the run in
//   a fresh cgroup with pids.max (cgroup v1 pids controller or cgroup v2). As non-root, bwrap
//   creates a user namespace and RLIMIT_NPROC counts only that namespace's processes (kernel >=
//   5.14), so it is a real per-sandbox limit. SandboxResult.processLimit says which one applied.
//   Both limits count threads, not just processes.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { startProcess, type Proc } from '../base/proc.ts';
import { createPidsCgroup, type PidsCgroup } from './cgroup.ts';
import { systemView } from './view.ts';
export { sandboxPath, systemView, hostInterpreters, ETC_ALLOW } from './view.ts';

export interface SandboxSpec {
  /** Run with /bin/sh -c inside the sandbox. */
  command: string;
  /** Absolute path; visible at the same path. */
  cwd: string;
  /** Absolute paths bound read-write at the same path (must exist). */
  writable: string[];
  /** Absolute paths bound read-only at the same path (must exist; files or dirs). */
  readonly?: string[];
  /** Absolute paths made invisible: an empty read-only tmpfs over a dir, /dev/null over a file.
   *  Missing paths are ignored. */
  hide?: string[];
  /** Extra binds with different source/dest paths (src must exist). */
  binds?: Array<{ src: string; dest: string; readonly: boolean }>;
  /** The COMPLETE environment (nothing is inherited from the parent). */
  env: Record<string, string>;
  /** Hard deadline: the whole process tree is SIGKILLed at it. */
  timeoutMs: number;
  /** RLIMIT_AS per process, in MiB; 0 or undefined = none. */
  memoryMB?: number;
  /** Limit on processes/threads (fork bombs); default 1024; 0 = none. */
  maxProcesses?: number;
  /** Default false: own network namespace (only its own loopback, nothing else reachable). */
  network?: boolean;
  /** Run without bwrap: plain child in its own process group, same deadline and killing. */
  unsafeNoSandbox?: boolean;
  stdin?: string;
  /** Keep stdin open and hand it to the caller (a line protocol with a long-lived worker);
   *  called once, right after the process starts. */
  interactive?: (stdin: import('node:stream').Writable) => void;
  /** Aborting kills the whole run at once, like the deadline (the result has timedOut false). */
  signal?: AbortSignal;
  onOutput?: (stream: 'stdout' | 'stderr', chunk: string) => void;
  /** Keep at most this many bytes of each stream (the TAIL); default 1 MiB. */
  maxOutputBytes?: number;
  /** Default 'bwrap' resolved on PATH. */
  bwrapPath?: string;
  /** Extra host paths (files or folders) readable at the same path, on top of the system view. */
  read?: string[];
  /** Executables outside the system view the command runs by absolute path (a Python elsewhere):
   *  their installation is made readable. */
  executables?: string[];
  /** Kill the run once the files under `paths` take more than `maxBytes` on disk (polled), and cap
   *  each file the command writes at `maxBytes` (RLIMIT_FSIZE). */
  diskWatch?: { paths: string[]; maxBytes: number };
  /** Host device nodes to expose at the same path (e.g. /dev/nvidia0, /dev/nvidiactl,
   *  /dev/nvidia-uvm for a GPU); the sandbox otherwise gets only null, zero, full, random,
   *  urandom, tty, pts and shm. Each must exist. */
  devices?: string[];
}

export interface SandboxResult {
  exitCode: number | null;
  signal: string | null;
  timedOut: boolean;
  /** Tail, at most maxOutputBytes. */
  stdout: string;
  stderr: string;
  durationMs: number;
  /** Some output of either stream was dropped. */
  truncated: boolean;
  /** False when run with unsafeNoSandbox. */
  sandboxed: boolean;
  /** How maxProcesses was enforced ('none' when it was 0 or nothing could enforce it here). */
  processLimit: 'cgroup-pids' | 'rlimit-nproc' | 'none';
  /** How memoryMB was enforced (RLIMIT_AS per process, and every tmpfs sized within it). */
  memoryLimit: 'rlimit-as' | 'none';
  /** The files under diskWatch.paths grew past diskWatch.maxBytes and the run was killed. */
  diskExceeded: boolean;
}

/** bwrap missing or unable to create a sandbox here. One-line message with what to do. */
export class SandboxUnavailableError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SandboxUnavailableError';
  }
}

/** The spec is unusable (relative path, a path that must exist does not, bad timeout). */
export class SandboxSpecError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SandboxSpecError';
  }
}

export const DEFAULT_MAX_PROCESSES = 1024;
export const DEFAULT_MAX_OUTPUT_BYTES = 1024 * 1024;
const INSTALL_HINT =
  'apt-get install bubblewrap (Debian/Ubuntu) or dnf install bubblewrap; or pass --unsafe-no-sandbox to run without isolation';
const SYSTEM_DIRS = ['/usr/bin', '/bin', '/usr/sbin', '/sbin', '/usr/local/bin'];

// ---------------------------------------------------------------------------------------------
// Executables and the availability probe

function resolveExecutable(name: string, dirs: string[]): string | null {
  const candidates = name.includes('/') ? [name] : dirs.filter(Boolean).map((d) => path.join(d, name));
  for (const c of candidates) {
    try {
      fs.accessSync(c, fs.constants.X_OK);
      if (fs.statSync(c).isFile()) return path.resolve(c);
    } catch {
      /* next */
    }
  }
  return null;
}

interface Probe {
  ok: boolean;
  message: string;
  path: string;
  /** Flags that worked in the probe on top of the fixed ones. */
  flags: string[];
}
const probeCache = new Map<string, Probe>();

const PROBE_BASE = [
  '--ro-bind', '/', '/', '--dev', '/dev', '--proc', '/proc', '--tmpfs', '/tmp',
  '--unshare-all', '--cap-drop', 'ALL', '--die-with-parent', '--new-session',
];
// Forbid nested user namespaces (kernel attack surface) where bwrap and the kernel allow it.
const USERNS_FLAGS = ['--unshare-user', '--disable-userns'];

function probeBwrap(bwrapPath = 'bwrap'): Probe {
  const cached = probeCache.get(bwrapPath);
  if (cached) return cached;
  const resolved = resolveExecutable(bwrapPath, [...(process.env.PATH ?? '').split(':'), ...SYSTEM_DIRS]);
  let probe: Probe;
  if (!resolved) {
    const where = bwrapPath.includes('/') ? ` (no executable at ${bwrapPath})` : '';
    probe = { ok: false, path: bwrapPath, flags: [], message: `bubblewrap (bwrap) is not installed${where}: ${INSTALL_HINT}` };
  } else {
    probe = { ok: false, path: resolved, flags: [], message: '' };
    let lastErr = '';
    for (const flags of [USERNS_FLAGS, []]) {
      const r = spawnSync(resolved, [...PROBE_BASE, ...flags, '--', '/bin/sh', '-c', ':'], {
        env: { PATH: '/usr/bin:/bin' },
        stdio: ['ignore', 'ignore', 'pipe'],
        timeout: 15_000,
        encoding: 'utf8',
      });
      if (r.status === 0) {
        probe = { ok: true, path: resolved, flags, message: '' };
        break;
      }
      lastErr = (r.error?.message ?? r.stderr ?? '').trim().split('\n')[0] || `exit ${r.status ?? r.signal}`;
    }
    if (!probe.ok) {
      probe.message =
        `bubblewrap (${resolved}) is installed but cannot create a sandbox here (${lastErr}): ` +
        'unprivileged user namespaces may be disabled (sysctl kernel.unprivileged_userns_clone=1, ' +
        'kernel.apparmor_restrict_unprivileged_userns=0) or the container forbids them; ' +
        'or pass --unsafe-no-sandbox to run without isolation';
    }
  }
  probeCache.set(bwrapPath, probe);
  return probe;
}

/** Whether bwrap exists and can create the namespaces we need (runs it once; cached per path). */
export function sandboxAvailable(bwrapPath?: string): { ok: true } | { ok: false; message: string } {
  const p = probeBwrap(bwrapPath);
  return p.ok ? { ok: true } : { ok: false, message: p.message };
}

// ---------------------------------------------------------------------------------------------
// Limits

let prlimitCache: string | null | undefined;
function prlimitPath(): string | null {
  if (prlimitCache === undefined) prlimitCache = resolveExecutable('prlimit', SYSTEM_DIRS);
  return prlimitCache;
}

/** Real root (uid 0 of the initial user namespace): RLIMIT_NPROC is never enforced for it. */
function isInitNsRoot(): boolean {
  if (process.geteuid?.() !== 0) return false;
  try {
    const map = fs.readFileSync('/proc/self/uid_map', 'utf8').trim().split(/\s+/);
    return map[0] === '0' && map[1] === '0';
  } catch {
    return true;
  }
}

/** RLIMIT_NPROC counts per user namespace since Linux 5.14; before that it counted every process
 *  of the uid on the host, which would make a per-sandbox limit misfire. */
function kernelCountsNprocPerUserns(): boolean {
  const m = /^(\d+)\.(\d+)/.exec(os.release());
  if (!m) return false;
  const [maj, min] = [Number(m[1]), Number(m[2])];
  return maj > 5 || (maj === 5 && min >= 14);
}

/** argv run inside the sandbox: set the limits, then `/bin/sh -c command`. */
function innerArgv(command: string, memBytes: number, nproc: number, fsizeBytes = 0): string[] {
  if (!memBytes && !nproc && !fsizeBytes) return ['/bin/sh', '-c', command];
  const prl = prlimitPath();
  if (prl) {
    return [
      prl,
      ...(memBytes ? [`--as=${memBytes}`] : []),
      ...(nproc ? [`--nproc=${nproc}`] : []),
      ...(fsizeBytes ? [`--fsize=${fsizeBytes}`] : []),
      '--',
      '/bin/sh',
      '-c',
      command,
    ];
  }
  const parts: string[] = [];
  if (memBytes) parts.push(`ulimit -v ${Math.floor(memBytes / 1024)} || exit 126`);
  if (nproc) parts.push(`{ ulimit -u ${nproc} || ulimit -p ${nproc} || exit 126; } 2>/dev/null`);
  if (fsizeBytes) parts.push(`ulimit -f ${Math.ceil(fsizeBytes / 512)} || exit 126`);
  return ['/bin/sh', '-c', `${parts.join('; ')}; exec /bin/sh -c "$0"`, command];
}

// ---------------------------------------------------------------------------------------------
// bwrap argv

interface Mount {
  kind: 'hide' | 'pin' | 'rw' | 'ro';
  src: string;
  dest: string;
  /** Among mounts on the same path, higher rank is applied later (wins). */
  rank: number;
  isDir: boolean;
}

function depth(p: string): number {
  return p === '/' ? 0 : p.split('/').length - 1;
}
function isUnder(p: string, dir: string): boolean {
  return p === dir || dir === '/' || p.startsWith(dir + '/');
}

function absolute(p: string, what: string): string {
  if (typeof p !== 'string' || !path.isAbsolute(p)) throw new SandboxSpecError(`sandbox: ${what} path must be absolute: ${String(p)}`);
  return path.resolve(p);
}
function existing(p: string, what: string): string {
  const abs = absolute(p, what);
  try {
    return fs.realpathSync(abs);
  } catch {
    throw new SandboxSpecError(`sandbox: ${what} path does not exist: ${abs}`);
  }
}
function isDir(p: string): boolean {
  try {
    return fs.statSync(p).isDirectory();
  } catch {
    return false;
  }
}

function userMounts(spec: SandboxSpec): Mount[] {
  const mounts: Mount[] = [];
  for (const h of spec.hide ?? []) {
    const abs = absolute(h, 'hide');
    let real: string;
    try {
      real = fs.realpathSync(abs);
    } catch {
      continue; // nothing there to hide
    }
    mounts.push({ kind: 'hide', src: '', dest: real, rank: 0, isDir: isDir(real) });
  }
  for (const w of spec.writable) {
    const real = existing(w, 'writable');
    mounts.push({ kind: 'rw', src: real, dest: real, rank: 2, isDir: isDir(real) });
  }
  for (const b of spec.binds ?? []) {
    const src = existing(b.src, 'bind source');
    const dest = absolute(b.dest, 'bind destination');
    mounts.push({ kind: b.readonly ? 'ro' : 'rw', src, dest, rank: 3, isDir: isDir(src) });
  }
  for (const r of [...(spec.readonly ?? []), ...(spec.read ?? [])]) {
    const real = existing(r, 'readonly');
    mounts.push({ kind: 'ro', src: real, dest: real, rank: 4, isDir: isDir(real) });
  }
  return mounts;
}

/** The mount that decides what `p` is in the sandbox (innermost; later wins on equal paths). */
function coverOf(p: string, mounts: Mount[]): Mount | undefined {
  let best: Mount | undefined;
  for (const m of mounts) {
    if (!isUnder(p, m.dest)) continue;
    if (!best || depth(m.dest) > depth(best.dest) || (depth(m.dest) === depth(best.dest) && m.rank >= best.rank)) best = m;
  }
  return best;
}

/**
 * Directories between a writable mount and a nested mount (a locked file, a hidden dir, ...) are
 * bound onto themselves so that they are mount points too: a mount point cannot be renamed or
 * removed (EBUSY). Without this, `mv locked locked2; mkdir locked; echo fake > locked/score.py`
 * inside a writable worktree would leave a forged file at the locked path on the host.
 */
function pins(mounts: Mount[]): Mount[] {
  const out = new Map<string, Mount>();
  for (const t of mounts) {
    const parts = t.dest.split('/').filter(Boolean);
    for (let i = 1; i < parts.length; i++) {
      const a = '/' + parts.slice(0, i).join('/');
      if (out.has(a)) continue;
      const cover = coverOf(a, mounts);
      if (!cover || cover.kind !== 'rw' || cover.dest === a) continue;
      const src = cover.src + a.slice(cover.dest === '/' ? 0 : cover.dest.length);
      if (!isDir(src)) continue;
      out.set(a, { kind: 'pin', src, dest: a, rank: 1, isDir: true });
    }
  }
  return [...out.values()];
}

/**
 * The bwrap argv (without the bwrap executable) for `spec`, ending in `-- ...inner`.
 * The system view (view.ts) first, then /dev (minimal, read-only but for a sized /dev/shm), a fresh
 * /proc and a sized /tmp; then the spec's mounts, applied parent-first (by path depth), so a hidden or read-only path inside a writable
 * dir stays hidden/read-only and a writable or read-only child of a hidden dir is re-exposed; on
 * the same path the order is hide, writable, binds, readonly (the last wins).
 * Throws SandboxSpecError for relative paths and missing writable/readonly/bind-source paths.
 */
export function buildBwrapArgs(spec: SandboxSpec, inner: string[], extraFlags: string[] = []): string[] {
  const view = systemView(spec.executables ?? []);
  const a: string[] = [];
  const hideDirs: string[] = [];
  for (const m of view.mounts) {
    if (m.kind === 'ro') a.push('--ro-bind', m.path, m.path);
    else if (m.kind === 'symlink') a.push('--symlink', m.target, m.path);
    else hideDirs.push(m.path);
  }
  for (const h of hideDirs) a.push('--size', '4096', '--tmpfs', h, '--remount-ro', h);
  // tmpfs is RAM: with a memory limit, /tmp and /dev/shm together stay within it
  const memBytes = spec.memoryMB && spec.memoryMB > 0 ? Math.floor(spec.memoryMB * 1024 * 1024) : 0;
  const sized = (share: number) => (memBytes ? ['--size', String(Math.max(1 << 20, Math.floor(memBytes * share)))] : []);
  a.push('--dev', '/dev');
  for (const d of spec.devices ?? []) {
    const real = existing(d, 'device');
    if (!real.startsWith('/dev/')) throw new SandboxSpecError(`sandbox: device path is not under /dev: ${d}`);
    a.push('--dev-bind', real, real);
  }
  a.push(...sized(0.25), '--tmpfs', '/dev/shm', '--remount-ro', '/dev');
  a.push('--proc', '/proc', ...sized(0.5), '--tmpfs', '/tmp');
  if (spec.network) {
    // keep DNS working when /etc/resolv.conf points into /run (systemd-resolved)
    try {
      const resolv = fs.realpathSync('/etc/resolv.conf');
      if (resolv.startsWith('/run/') || resolv.startsWith('/var/run/')) a.push('--ro-bind', resolv, resolv);
    } catch {
      /* none */
    }
  }
  a.push('--unshare-all');
  if (spec.network) a.push('--share-net');
  a.push(...extraFlags, '--cap-drop', 'ALL', '--die-with-parent', '--new-session');

  const user = userMounts(spec);
  const all = [...user, ...pins(user)].sort((x, y) => depth(x.dest) - depth(y.dest) || x.rank - y.rank);
  const remountRo: string[] = [];
  for (const m of all) {
    if (m.kind === 'hide') {
      if (m.isDir) {
        a.push('--tmpfs', m.dest);
        remountRo.push('--remount-ro', m.dest);
      } else {
        a.push('--ro-bind', '/dev/null', m.dest);
      }
    } else if (m.kind === 'ro') {
      a.push('--ro-bind', m.src, m.dest);
    } else {
      a.push('--bind', m.src, m.dest);
    }
  }
  a.push(...remountRo);
  // the sandbox's own root (a tmpfs holding the mount points) is read-only too
  a.push('--remount-ro', '/');

  const cwd = absolute(spec.cwd, 'cwd');
  let realCwd = cwd;
  try {
    realCwd = fs.realpathSync(cwd);
  } catch {
    /* may exist only inside (under a bind destination) */
  }
  a.push('--chdir', realCwd, '--', ...inner);
  return a;
}

// ---------------------------------------------------------------------------------------------
// Live runs, killing

interface LiveRun {
  pid: number;
  sandboxed: boolean;
  /** The leader (bwrap, or the shell in unsafe mode) has exited. */
  readonly exited: boolean;
  cgroup: PidsCgroup | null;
  /** Pids we SIGKILLed; we wait until they are gone before returning. */
  doomed: Set<number>;
}
const live = new Set<LiveRun>();

function readPpids(): Map<number, number[]> {
  const children = new Map<number, number[]>();
  let entries: string[] = [];
  try {
    entries = fs.readdirSync('/proc');
  } catch {
    return children;
  }
  for (const e of entries) {
    if (!/^\d+$/.test(e)) continue;
    let stat: string;
    try {
      stat = fs.readFileSync(`/proc/${e}/stat`, 'utf8');
    } catch {
      continue;
    }
    const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
    const list = children.get(ppid);
    if (list) list.push(Number(e));
    else children.set(ppid, [Number(e)]);
  }
  return children;
}

function descendants(root: number): number[] {
  const children = readPpids();
  const out: number[] = [];
  const queue = [root];
  while (queue.length) {
    for (const c of children.get(queue.shift()!) ?? []) {
      out.push(c);
      queue.push(c);
    }
  }
  return out;
}

/** Still running (a zombie only waits for its reaper and counts as gone). */
function running(pid: number): boolean {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat[stat.lastIndexOf(')') + 2];
    return state !== 'Z' && state !== 'X';
  } catch {
    return false;
  }
}

function kill(pid: number): void {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    /* gone */
  }
}

function killRun(run: LiveRun): void {
  // Snapshot the tree first: in sandbox mode it holds bwrap's pid-namespace init, whose death
  // kills everything in the namespace; in unsafe mode it also catches children that left the
  // process group with setsid.
  const tree = descendants(run.pid);
  for (const p of tree) {
    run.doomed.add(p);
    kill(p);
  }
  if (run.sandboxed && !run.exited) {
    // Let the outer bwrap reap its init and exit by itself (killing both at once leaves the init
    // as a zombie for the host's pid 1 to reap); kill the group if it does not come down quickly.
    setTimeout(() => {
      if (run.exited) return;
      kill(-run.pid);
      run.cgroup?.killAll();
    }, 300).unref();
    return;
  }
  kill(-run.pid);
  run.cgroup?.killAll();
}

/** SIGKILLs every running sandbox (for the CLI's Ctrl-C handler). Returns how many there were. */
export function killAllSandboxes(): number {
  const n = live.size;
  for (const run of live) killRun(run);
  return n;
}

const PARENT_SIGNALS: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];
let signalHooksInstalled = false;

function onParentSignal(sig: NodeJS.Signals): void {
  killAllSandboxes();
  // If nobody else handles the signal, restore the default action (exit) as if we were not here.
  if (process.listenerCount(sig) === 1) {
    removeSignalHooks();
    process.kill(process.pid, sig);
  }
}

/** Ctrl-C and friends kill every sandbox (the runner kills them when this process exits) */
function installHooks(): void {
  if (!signalHooksInstalled) {
    for (const s of PARENT_SIGNALS) process.on(s, onParentSignal);
    signalHooksInstalled = true;
  }
}

function removeSignalHooks(): void {
  if (!signalHooksInstalled) return;
  for (const s of PARENT_SIGNALS) process.off(s, onParentSignal);
  signalHooksInstalled = false;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** After the run's leader exited: wait (bounded) until every killed process and every cgroup
 *  member is gone, then remove the cgroup. */
async function settle(run: LiveRun): Promise<void> {
  const until = Date.now() + 3000;
  for (;;) {
    const left = [...run.doomed].filter(running);
    const members = run.cgroup?.pids() ?? [];
    if (members.length) run.cgroup!.killAll();
    if (!left.length && !members.length && (!run.cgroup || run.cgroup.remove())) return;
    if (Date.now() > until) return;
    await sleep(10);
  }
}

// ---------------------------------------------------------------------------------------------
// Disk

const DISK_POLL_MS = 200;

/** Bytes on disk under `roots` (allocated blocks, symlinks not followed); stops counting past `stopAt`. */
export function diskUsage(roots: string[], stopAt = Infinity): number {
  let total = 0;
  const seen = new Set<string>();
  const stack = [...roots];
  while (stack.length) {
    const p = stack.pop()!;
    let st: fs.Stats;
    try {
      st = fs.lstatSync(p);
    } catch {
      continue;
    }
    const id = `${st.dev}:${st.ino}`;
    if (seen.has(id)) continue; // hard links count once
    seen.add(id);
    total += st.blocks * 512;
    if (total > stopAt) return total;
    if (st.isDirectory()) {
      try {
        for (const n of fs.readdirSync(p)) stack.push(path.join(p, n));
      } catch {
        /* unreadable: counted as its own size */
      }
    }
  }
  return total;
}

// ---------------------------------------------------------------------------------------------
// Run

/**
 * Runs spec.command under bwrap (or, with unsafeNoSandbox, as a plain process group) and resolves
 * once it exited or was killed at the deadline and nothing it started is left running.
 * Rejects with SandboxUnavailableError (bwrap missing or unusable) or SandboxSpecError (bad spec).
 */
export async function runSandboxed(spec: SandboxSpec): Promise<SandboxResult> {
  if (!(typeof spec.timeoutMs === 'number' && spec.timeoutMs > 0)) {
    throw new SandboxSpecError(`sandbox: timeoutMs must be a positive number, got ${String(spec.timeoutMs)}`);
  }
  const sandboxed = !spec.unsafeNoSandbox;
  const memBytes = spec.memoryMB && spec.memoryMB > 0 ? Math.floor(spec.memoryMB * 1024 * 1024) : 0;
  const maxProcs = spec.maxProcesses === undefined ? DEFAULT_MAX_PROCESSES : Math.max(0, Math.floor(spec.maxProcesses));
  // RLIMIT_NPROC is a real per-sandbox limit only inside the user namespace bwrap creates for a
  // non-root caller; for real root the kernel ignores it, and without bwrap it would count every
  // process of the user on the host.
  const useRlimitNproc = sandboxed && maxProcs > 0 && !isInitNsRoot() && kernelCountsNprocPerUserns();
  const watch = spec.diskWatch && spec.diskWatch.maxBytes > 0 ? spec.diskWatch : null;
  const inner = innerArgv(spec.command, memBytes, useRlimitNproc ? maxProcs + 1 : 0, watch?.maxBytes ?? 0);

  let file: string;
  let args: string[];
  if (sandboxed) {
    const probe = probeBwrap(spec.bwrapPath);
    if (!probe.ok) throw new SandboxUnavailableError(probe.message);
    file = probe.path;
    args = buildBwrapArgs(spec, inner, probe.flags);
  } else {
    buildBwrapArgs(spec, inner); // same validation of paths
    file = inner[0]!;
    args = inner.slice(1);
  }

  // bwrap's monitor and pid-namespace init count too
  const cgroup = maxProcs > 0 ? createPidsCgroup(maxProcs + (sandboxed ? 2 : 0)) : null;
  if (cgroup) {
    // join the cgroup before anything of the run exists, then become the real command
    args = ['-c', 'echo $$ > "$0" || exit 125; exec "$@"', cgroup.procsFile, file, ...args];
    file = '/bin/sh';
  }
  const processLimit: SandboxResult['processLimit'] = cgroup ? 'cgroup-pids' : useRlimitNproc ? 'rlimit-nproc' : 'none';

  let spawnCwd: string | null = null;
  try {
    const c = fs.realpathSync(spec.cwd);
    if (isDir(c)) spawnCwd = c;
  } catch {
    /* may exist only inside the sandbox (under a bind destination) */
  }
  if (!sandboxed && spawnCwd === null) {
    cgroup?.remove();
    throw new SandboxSpecError(`sandbox: cwd does not exist: ${spec.cwd}`);
  }

  let run: LiveRun | null = null;
  let diskExceeded = false;
  let proc: Proc;
  try {
    proc = startProcess({
      file, args, cwd: spawnCwd ?? '/', env: spec.env,
      stdin: spec.interactive ?? spec.stdin,
      timeoutMs: spec.timeoutMs, signal: spec.signal,
      tailBytes: spec.maxOutputBytes ?? DEFAULT_MAX_OUTPUT_BYTES,
      onOutput: spec.onOutput,
      // the process tree (bwrap's pid-namespace init, children that left the group) and the cgroup
      kill: () => {
        if (run) killRun(run);
      },
      // every killed process and cgroup member gone, the cgroup removed
      settle: async () => {
        if (!run) return;
        await settle(run);
        live.delete(run);
        if (live.size === 0) removeSignalHooks();
      },
    });
  } catch (e) {
    cgroup?.remove();
    throw e;
  }
  if (proc.pid !== undefined) {
    const p = proc;
    run = { pid: proc.pid, sandboxed, get exited() { return p.exited; }, cgroup, doomed: new Set() };
    live.add(run);
    installHooks();
  }

  // disk use of the writable folders, polled; past the limit the whole run is killed
  let watcher: NodeJS.Timeout | undefined;
  if (watch) {
    watcher = setInterval(() => {
      if (diskExceeded || !run || run.exited) return;
      if (diskUsage(watch.paths, watch.maxBytes) > watch.maxBytes) {
        diskExceeded = true;
        killRun(run);
      }
    }, DISK_POLL_MS);
  }

  const r = await proc.result;
  clearInterval(watcher);
  if (!run) cgroup?.remove();
  if (r.error) {
    throw sandboxed && r.error.code === 'ENOENT' && !cgroup
      ? new SandboxUnavailableError(`bubblewrap (bwrap) is not installed: ${INSTALL_HINT}`)
      : r.error;
  }
  let { exitCode, signal } = r;
  // bwrap reports its killed init as exit status 128+9; report a deadline kill the same way in
  // both modes
  if (r.timedOut && exitCode === 128 + 9) [exitCode, signal] = [null, 'SIGKILL'];
  return {
    exitCode,
    signal,
    timedOut: r.timedOut,
    stdout: r.stdout,
    stderr: r.stderr,
    durationMs: r.durationMs,
    truncated: r.truncated,
    sandboxed,
    processLimit,
    memoryLimit: memBytes ? 'rlimit-as' : 'none',
    diskExceeded: diskExceeded || (watch !== null && diskUsage(watch.paths, watch.maxBytes) > watch.maxBytes),
  };
}
