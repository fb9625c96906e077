/**
 * The folders of one evaluation, made fresh for it and removed after it:
 *
 *   <state>/work/<run>/<label>-<rand>/
 *     rw/cand      the candidate's files, written from its commit (writable by the command)
 *     rw/scratch   scratch space of the command ($AUTOAGENT_SCRATCH; its HOME is scratch/home)
 *     view/        what the locked evaluator sees as the study's files (built after the command)
 *     evalhome/    the evaluator's own HOME (the command never sees it)
 *
 * Nothing here runs git (or any other host tool that reads configuration) inside a folder candidate
 * code has written: the candidate's tree is written from the commit with plain file writes, and
 * removed with a plain recursive delete that never follows symbolic links.
 *
 * The evaluator's view is a second, fresh copy of the commit: the files the proposer committed, not
 * what the command changed or created in its tree. What the command wrote is visible to the
 * evaluator only as data: at $AUTOAGENT_CANDIDATE_DIR (its tree, read-only) and $AUTOAGENT_SCRATCH,
 * and copied into the view for the paths the study declares as `outputs` — never a file a program
 * would load by name (Python and Node modules, caches and package folders, make files, R profiles,
 * .env). Files a proposal added since the run started are left out of the view by the same rule,
 * and new files under a locked glob never reach it (only files hashed at start count).
 *
 * Disk: with `disk_mb`, rw/ is a loop-mounted ext4 image of that size when we are root and the
 * kernel lets us (the command gets "No space left on device" past it); otherwise the sandbox polls
 * the folders' size and kills the command past the limit (and caps each file with RLIMIT_FSIZE).
 */
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import * as g from '../base/git.ts';

/** Names a program looks up by name (imports, caches, build and start-up files): never taken from candidate-created paths. */
const LOADER_DIRS = new Set(['__pycache__', 'node_modules', 'site-packages', 'dist-packages', '.git']);
const LOADER_FILE =
  /\.(py|pyc|pyo|pyd|pth|pyz|so|dylib|js|mjs|cjs|ts|mts|cts|jsx|tsx|node|egg-link)$|\.so\.\d|^(package\.json|GNUmakefile|makefile|Makefile|\.Rprofile|\.RData|\.Renviron|\.env|\.pythonrc|\.npmrc|\.gitattributes|\.gitmodules)$/;

/** Whether a repo-relative path has a component a loader could pick up by name. */
export function loaderSensitive(p: string): boolean {
  const parts = p.split('/');
  return parts.some((c, i) => LOADER_DIRS.has(c) || (i === parts.length - 1 && LOADER_FILE.test(c)) || c.endsWith('.egg-info'));
}

export type DiskLimit = 'loop-image' | 'watcher' | 'none';

export interface WorkspaceSpec {
  repo: string;
  /** the run's state folder (.autoagent) */
  stateDir: string;
  runId: string;
  /** names the folder: `<seq>-<repeat>`, `finalize` */
  label: string;
  /** the candidate commit */
  commit: string;
  /** repo-relative paths tracked at the run's base commit (new paths are treated as candidate-created) */
  baseTracked: Set<string>;
  /** repo-relative locked files hashed at start */
  locked: string[];
  isLocked: (repoPath: string) => boolean;
  /** repo-relative files the candidate must not read (the evaluator may) */
  hidden: string[];
  /** the study's `outputs` globs as a matcher on repo-relative paths */
  isOutput: (repoPath: string) => boolean;
  diskMb: number;
}

export interface Workspace {
  root: string;
  cand: string;
  scratch: string;
  evalHome: string;
  /** tracked locked files of the candidate tree (absolute), bound read-only in the command's sandbox */
  lockedInCand: string[];
  /** how disk_mb is enforced; `diskWatch` is set for the sandbox when it is the watcher */
  disk: DiskLimit;
  diskWatch?: { paths: string[]; maxBytes: number };
  /** untracked locked files bound read-only into `into` (the candidate tree or the view) */
  lockedBinds(into: string, withHidden: boolean): Array<{ src: string; dest: string; readonly: true }>;
  /** Build (once) and return the evaluator's view; see the module comment. */
  evaluatorView(): Promise<string>;
  /** files the command created that the view leaves out (for a hint when the evaluator fails) */
  unseenOutputs(limit?: number): string[];
  dispose(): void;
}

const MAX_WALK = 200_000;

function isMountPoint(dir: string): boolean {
  try {
    const real = fs.realpathSync(dir);
    return fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n').some((l) => l.split(' ')[4] === real);
  } catch {
    return false;
  }
}

function unmount(dir: string): void {
  if (!isMountPoint(dir)) return;
  const r = spawnSync('umount', [dir], { stdio: 'ignore' });
  if (r.status !== 0) spawnSync('umount', ['-l', dir], { stdio: 'ignore' });
}

let loopWorks: boolean | undefined;

/** A loop-mounted ext4 image of `mb` MiB at `dir`; false when this machine cannot (not root, no loop devices, no mkfs). */
function mountDiskImage(image: string, dir: string, mb: number): boolean {
  if (loopWorks === false || process.geteuid?.() !== 0) return false;
  try {
    fs.closeSync(fs.openSync(image, 'w'));
    fs.truncateSync(image, mb * 1024 * 1024);
    const mk = spawnSync('mkfs.ext4', ['-q', '-F', '-m', '0', '-O', '^has_journal', image], { stdio: 'ignore', timeout: 60_000 });
    if (mk.status !== 0) throw new Error('mkfs.ext4');
    const mt = spawnSync('mount', ['-o', 'loop,nosuid,nodev', image, dir], { stdio: 'ignore', timeout: 60_000 });
    if (mt.status !== 0) throw new Error('mount');
    loopWorks = true;
    return true;
  } catch {
    loopWorks = false;
    fs.rmSync(image, { force: true });
    return false;
  }
}

/** Remove a folder without following symbolic links, whatever its modes; unmounts a disk image first. */
export function removeTree(dir: string): void {
  if (!fs.existsSync(dir)) return;
  const rw = path.join(dir, 'rw');
  unmount(rw);
  try {
    fs.rmSync(dir, { recursive: true, force: true });
  } catch {
    // a folder the command made unwritable (as a user other than root): give it back, then delete
    spawnSync('chmod', ['-R', 'u+rwX', dir], { stdio: 'ignore' });
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** Remove what evaluations of `runId` left behind (a killed process leaves its folders and mounts). */
export function cleanWork(stateDir: string, runId: string): void {
  const dir = path.join(stateDir, 'work', runId);
  if (!fs.existsSync(dir)) return;
  for (const name of fs.readdirSync(dir)) removeTree(path.join(dir, name));
  fs.rmSync(dir, { recursive: true, force: true });
}

/** Paths under `root` (repo-relative to it), depth-first, not following symlinks, at most MAX_WALK. */
function walk(root: string, visit: (rel: string, st: fs.Stats) => boolean | void): void {
  const stack: string[] = [''];
  let n = 0;
  while (stack.length) {
    const rel = stack.pop()!;
    let names: string[];
    try {
      names = fs.readdirSync(path.join(root, rel));
    } catch {
      continue;
    }
    for (const name of names) {
      if (++n > MAX_WALK) return;
      const r = rel ? `${rel}/${name}` : name;
      let st: fs.Stats;
      try {
        st = fs.lstatSync(path.join(root, r));
      } catch {
        continue;
      }
      const descend = visit(r, st);
      if (st.isDirectory() && descend !== false) stack.push(r);
    }
  }
}

/** Make the folders from `root` down to `rel`'s parent, refusing to pass through anything but a real folder. */
function plainParents(root: string, rel: string): boolean {
  let cur = root;
  for (const p of rel.split('/').slice(0, -1)) {
    cur = path.join(cur, p);
    const st = fs.lstatSync(cur, { throwIfNoEntry: false });
    if (!st) fs.mkdirSync(cur);
    else if (!st.isDirectory()) return false; // a symlink (lstat) or a file: the output would land elsewhere
  }
  return true;
}

export async function openWorkspace(spec: WorkspaceSpec): Promise<Workspace> {
  const root = path.join(spec.stateDir, 'work', spec.runId, `${spec.label}-${randomBytes(3).toString('hex')}`);
  fs.mkdirSync(root, { recursive: true });
  const rw = path.join(root, 'rw');
  fs.mkdirSync(rw);
  let disk: DiskLimit = 'none';
  if (spec.diskMb > 0) disk = mountDiskImage(path.join(root, 'disk.img'), rw, spec.diskMb) ? 'loop-image' : 'watcher';
  const cand = path.join(rw, 'cand');
  const scratch = path.join(rw, 'scratch');
  const evalHome = path.join(root, 'evalhome');
  const viewDir = path.join(root, 'view');
  const hidden = new Set(spec.hidden);
  let tracked: Set<string>;
  try {
    fs.mkdirSync(scratch);
    fs.mkdirSync(path.join(scratch, 'home'));
    fs.mkdirSync(evalHome);
    tracked = new Set((await g.treeEntries(spec.repo, spec.commit)).map((e) => e.path));
    // hidden files are not written into the candidate's tree at all
    await g.exportCommit(spec.repo, spec.commit, cand, (p) => hidden.has(p));
  } catch (e) {
    removeTree(root);
    throw e;
  }
  const lockedSet = new Set(spec.locked);
  const untrackedLocked = spec.locked.filter((p) => !tracked.has(p));
  let view: string | null = null;

  const ws: Workspace = {
    root, cand, scratch, evalHome, disk,
    diskWatch: disk === 'watcher' ? { paths: [cand, scratch], maxBytes: spec.diskMb * 1024 * 1024 } : undefined,
    lockedInCand: spec.locked.filter((p) => tracked.has(p) && !hidden.has(p)).map((p) => path.join(cand, p)),
    lockedBinds(into, withHidden) {
      return untrackedLocked
        .filter((p) => withHidden || !hidden.has(p))
        .filter((p) => fs.existsSync(path.join(spec.repo, p)))
        .map((p) => ({ src: path.join(spec.repo, p), dest: path.join(into, p), readonly: true as const }));
    },
    async evaluatorView() {
      if (view) return view;
      const baseNew = (p: string) => !spec.baseTracked.has(p) && !lockedSet.has(p);
      await g.exportCommit(spec.repo, spec.commit, viewDir, (p) => baseNew(p) && (loaderSensitive(p) || spec.isLocked(p)));
      walk(cand, (rel, st) => {
        if (loaderSensitive(rel) && st.isDirectory()) return false;
        if (!st.isFile() || !spec.isOutput(rel) || loaderSensitive(rel) || spec.isLocked(rel) || hidden.has(rel)) return;
        if (!plainParents(viewDir, rel)) return;
        const dest = path.join(viewDir, rel);
        const existing = fs.lstatSync(dest, { throwIfNoEntry: false });
        if (existing && !existing.isFile()) return;
        if (existing) fs.rmSync(dest);
        try {
          fs.linkSync(path.join(cand, rel), dest);
        } catch {
          fs.copyFileSync(path.join(cand, rel), dest);
        }
      });
      view = viewDir;
      return view;
    },
    unseenOutputs(limit = 5) {
      const out: string[] = [];
      walk(cand, (rel, st) => {
        if (out.length >= limit) return false;
        if (tracked.has(rel) || st.isDirectory()) return;
        if (!spec.isOutput(rel) || loaderSensitive(rel)) out.push(rel);
      });
      return out;
    },
    dispose() {
      removeTree(root);
      const parent = path.dirname(root);
      try {
        if (fs.readdirSync(parent).length === 0) fs.rmdirSync(parent);
      } catch {
        /* another evaluation's folder is there */
      }
    },
  };
  return ws;
}

/**
 * Read a file the candidate wrote, on the host, without trusting it: every folder on the way must
 * be a real folder (not a symlink), the file itself a regular file (not a symlink, FIFO, device or
 * socket: it is opened with O_NOFOLLOW | O_NONBLOCK, so a FIFO cannot hang the run), at most
 * `maxBytes`. Returns its text, or why it was not read.
 */
export function readCandidateFile(root: string, rel: string, maxBytes: number): { text: string } | { error: string } {
  const parts = rel.split('/').filter(Boolean);
  let cur = root;
  for (const p of parts.slice(0, -1)) {
    cur = path.join(cur, p);
    const st = fs.lstatSync(cur, { throwIfNoEntry: false });
    if (!st) return { error: `${rel} does not exist` };
    if (!st.isDirectory()) return { error: `${rel}: ${p} is not a folder (${st.isSymbolicLink() ? 'a symbolic link' : 'a file'}); not read` };
  }
  let fd: number;
  try {
    fd = fs.openSync(path.join(cur, parts[parts.length - 1]!), fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return { error: `${rel} does not exist` };
    if (code === 'ELOOP') return { error: `${rel} is a symbolic link; not read` };
    return { error: `${rel} could not be opened (${code})` };
  }
  try {
    const st = fs.fstatSync(fd);
    if (!st.isFile()) return { error: `${rel} is not a regular file; not read` };
    if (st.size > maxBytes) return { error: `${rel} is larger than ${maxBytes} bytes; not read` };
    const buf = Buffer.alloc(Math.min(st.size, maxBytes) + 1);
    let n = 0;
    for (;;) {
      const k = fs.readSync(fd, buf, n, buf.length - n, null);
      if (k <= 0) break;
      n += k;
      if (n > maxBytes) return { error: `${rel} is larger than ${maxBytes} bytes; not read` };
    }
    return { text: buf.subarray(0, n).toString('utf8') };
  } finally {
    fs.closeSync(fd);
  }
}
