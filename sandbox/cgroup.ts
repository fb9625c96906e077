// Best-effort per-run cgroup with a pids limit (cgroup v1 "pids" controller or cgroup v2 with
// "pids" enabled). Used because RLIMIT_NPROC is never enforced for uid 0 (the kernel exempts
// root's user, whatever its capabilities), so a root-run sandbox needs another process limit.
// The cgroup is created UNDER the cgroup this process is already in, so outer limits still apply.
import fs from 'node:fs';
import path from 'node:path';
import { pidAlive } from '../base/proc.ts';

export interface PidsCgroup {
  dir: string;
  /** File a process writes its pid into to join the cgroup. */
  procsFile: string;
  /** Pids currently in the cgroup (empty when it cannot be read). */
  pids(): number[];
  /** SIGKILL everything in the cgroup. */
  killAll(): void;
  /** Remove the cgroup directory; false while processes remain. */
  remove(): boolean;
}

interface Base {
  dir: string;
  v2: boolean;
}

let baseCache: Base | null | undefined;
let counter = 0;
const PREFIX = 'autoagent-sandbox-';

function readOr(p: string, fallback = ''): string {
  try {
    return fs.readFileSync(p, 'utf8');
  } catch {
    return fallback;
  }
}

/** Mount points of cgroup filesystems, from /proc/self/mountinfo. */
function cgroupMounts(): Array<{ root: string; mountPoint: string; fsType: string; superOpts: string[] }> {
  const out: Array<{ root: string; mountPoint: string; fsType: string; superOpts: string[] }> = [];
  for (const line of readOr('/proc/self/mountinfo').split('\n')) {
    const sep = line.indexOf(' - ');
    if (sep < 0) continue;
    const left = line.slice(0, sep).split(' ');
    const right = line.slice(sep + 3).split(' ');
    const fsType = right[0] ?? '';
    if (fsType !== 'cgroup' && fsType !== 'cgroup2') continue;
    const unescape = (s: string) => s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
    out.push({
      root: unescape(left[3] ?? '/'),
      mountPoint: unescape(left[4] ?? ''),
      fsType,
      superOpts: (right[2] ?? '').split(','),
    });
  }
  return out;
}

function join(mount: { root: string; mountPoint: string }, rel: string): string {
  // /proc/self/cgroup paths are relative to the hierarchy root; the mount may show a subtree.
  let r = rel;
  if (mount.root !== '/' && (r === mount.root || r.startsWith(mount.root + '/'))) r = r.slice(mount.root.length);
  return path.join(mount.mountPoint, r);
}

function writable(dir: string): boolean {
  try {
    fs.accessSync(dir, fs.constants.W_OK);
    return true;
  } catch {
    return false;
  }
}

function findBase(): Base | null {
  const lines = readOr('/proc/self/cgroup').split('\n').filter(Boolean);
  const mounts = cgroupMounts();
  // cgroup v1 pids controller
  for (const line of lines) {
    const [, controllers = '', rel = '/'] = line.split(':');
    if (!controllers.split(',').includes('pids')) continue;
    const m = mounts.find((x) => x.fsType === 'cgroup' && x.superOpts.includes('pids'));
    if (!m) continue;
    const dir = join(m, rel);
    if (fs.existsSync(dir) && writable(dir)) return { dir, v2: false };
  }
  // cgroup v2
  const unified = lines.find((l) => l.startsWith('0::'));
  const m2 = mounts.find((x) => x.fsType === 'cgroup2');
  if (unified && m2) {
    const dir = join(m2, unified.slice(3));
    if (!writable(dir)) return null;
    const subtree = readOr(path.join(dir, 'cgroup.subtree_control')).split(/\s+/);
    if (!subtree.includes('pids')) {
      // Only possible when this cgroup has no processes of its own (or is the root); try once.
      try {
        fs.writeFileSync(path.join(dir, 'cgroup.subtree_control'), '+pids');
      } catch {
        return null;
      }
    }
    return { dir, v2: true };
  }
  return null;
}

/** Remove empty cgroups left behind by earlier (crashed) runs of this library. */
function sweepStale(base: string): void {
  let entries: string[] = [];
  try {
    entries = fs.readdirSync(base);
  } catch {
    return;
  }
  for (const e of entries) {
    const m = new RegExp(`^${PREFIX}(\\d+)-\\d+$`).exec(e);
    if (!m || pidAlive(Number(m[1]))) continue;
    try {
      fs.rmdirSync(path.join(base, e));
    } catch {
      /* still populated or not ours to remove */
    }
  }
}

/** Creates a fresh cgroup limited to `maxPids` tasks, or returns null when not possible here. */
export function createPidsCgroup(maxPids: number): PidsCgroup | null {
  if (baseCache === undefined) {
    baseCache = findBase();
    if (baseCache) sweepStale(baseCache.dir);
  }
  const base = baseCache;
  if (!base) return null;
  const dir = path.join(base.dir, `${PREFIX}${process.pid}-${++counter}`);
  try {
    fs.mkdirSync(dir);
    fs.writeFileSync(path.join(dir, 'pids.max'), String(maxPids));
  } catch {
    try {
      fs.rmdirSync(dir);
    } catch {
      /* ignore */
    }
    return null;
  }
  const procsFile = path.join(dir, 'cgroup.procs');
  const pids = (): number[] =>
    readOr(procsFile)
      .split('\n')
      .filter(Boolean)
      .map(Number);
  return {
    dir,
    procsFile,
    pids,
    killAll() {
      if (base.v2) {
        try {
          fs.writeFileSync(path.join(dir, 'cgroup.kill'), '1');
          return;
        } catch {
          /* kernels before 5.14: fall through */
        }
      }
      // A fork bomb can add members while we kill; a few rounds catch them (the pids limit bounds
      // how many there can be).
      for (let round = 0; round < 5; round++) {
        const list = pids();
        if (list.length === 0) return;
        for (const p of list) {
          try {
            process.kill(p, 'SIGKILL');
          } catch {
            /* gone */
          }
        }
      }
    },
    remove() {
      try {
        fs.rmdirSync(dir);
        return true;
      } catch (e) {
        return (e as NodeJS.ErrnoException).code === 'ENOENT';
      }
    },
  };
}
