/**
 * Git plumbing for a run: the run branch `autoagent/<run-id>` and one detached worktree per
 * candidate. The user's checkout and working tree are never modified: we only create a
 * branch ref, worktrees under .autoagent/worktrees, and objects.
 */
import { simpleGit, type SimpleGit } from 'simple-git';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync, appendFileSync, symlinkSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { UsageError } from './errors.ts';

const IDENTITY = ['-c', 'user.name=autoagent', '-c', 'user.email=autoagent@localhost', '-c', 'commit.gpgsign=false'];

export function git(dir: string): SimpleGit {
  return simpleGit({ baseDir: dir, config: [] });
}

export async function repoRoot(dir: string): Promise<string> {
  try {
    return (await git(dir).raw(['rev-parse', '--show-toplevel'])).trim();
  } catch {
    throw new UsageError(`${dir}: not inside a git repository (run \`git init\` and commit your files first)`);
  }
}

export async function headCommit(repo: string): Promise<string> {
  try {
    return (await git(repo).raw(['rev-parse', 'HEAD'])).trim();
  } catch {
    throw new UsageError(`${repo}: the repository has no commit yet (commit the files the study needs first)`);
  }
}

export async function revParse(repo: string, rev: string): Promise<string | null> {
  try {
    return (await git(repo).raw(['rev-parse', '--verify', '--quiet', rev])).trim() || null;
  } catch {
    return null;
  }
}

/** repo-relative paths with uncommitted changes (staged, unstaged or untracked) */
export async function dirtyPaths(repo: string): Promise<string[]> {
  const out = await git(repo).raw(['status', '--porcelain=v1', '-z', '--untracked-files=all']);
  const paths: string[] = [];
  const parts = out.split('\0');
  for (let i = 0; i < parts.length; i++) {
    const entry = parts[i]!;
    if (entry.length < 4) continue;
    const code = entry.slice(0, 2);
    paths.push(entry.slice(3));
    if (code[0] === 'R' || code[0] === 'C') i++; // rename source follows
  }
  return paths;
}

export async function trackedFiles(repo: string, commit: string): Promise<string[]> {
  const out = await git(repo).raw(['ls-tree', '-r', '-z', '--name-only', commit]);
  return out.split('\0').filter(Boolean);
}

export async function showFile(repo: string, commit: string, path: string): Promise<string> {
  return git(repo).show([`${commit}:${path}`]);
}

export async function createBranch(repo: string, branch: string, commit: string): Promise<void> {
  await git(repo).raw(['branch', branch, commit]);
}

/** Move the run branch from `expected` to `next` atomically; fails if it moved meanwhile. */
export async function advanceBranch(repo: string, branch: string, next: string, expected: string): Promise<void> {
  await git(repo).raw(['update-ref', `refs/heads/${branch}`, next, expected]);
}

export async function addWorktree(repo: string, path: string, commit: string): Promise<void> {
  if (existsSync(path)) await removeWorktree(repo, path);
  mkdirSync(dirname(path), { recursive: true });
  await git(repo).raw(['worktree', 'add', '--detach', '--force', path, commit]);
}

/** Delete a worktree's folder (a plain delete: git never runs inside a folder someone else wrote), then prune git's record of it. */
export async function removeWorktree(repo: string, path: string): Promise<void> {
  rmSync(path, { recursive: true, force: true });
  await git(repo).raw(['worktree', 'prune']);
}

/** A commit with the tree of `candidate`, parent `parent`, and a message: the kept commit. */
export async function commitTree(repo: string, candidate: string, parent: string, message: string): Promise<string> {
  return (await git(repo).raw([...IDENTITY, 'commit-tree', `${candidate}^{tree}`, '-p', parent, '-m', message])).trim();
}

/** A unified diff of proposed whole-file edits against `before`, computed without writing into any tree. */
export async function diffEdits(before: Record<string, string>, edits: Array<{ path: string; content: string }>): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), 'autoagent-diff-'));
  try {
    const parts: string[] = [];
    for (const e of edits) {
      writeFileSync(join(dir, 'a'), before[e.path] ?? '');
      writeFileSync(join(dir, 'b'), e.content);
      let out = '';
      try {
        out = await git(dir).raw(['diff', '--no-index', '--no-color', '--', 'a', 'b']);
      } catch (err) {
        out = String((err as { message?: string }).message ?? '');
      }
      // drop git's header (everything before the first hunk), not content lines that happen to start with `--` or `++`
      const lines = out.split('\n');
      const hunk = lines.findIndex((l) => l.startsWith('@@'));
      const body = (hunk < 0 ? lines.filter((l) => !/^(diff --git|index |--- |\+\+\+ )/.test(l)) : lines.slice(hunk)).join('\n');
      parts.push(`diff --git a/${e.path} b/${e.path}\n--- a/${e.path}\n+++ b/${e.path}\n${body}`);
    }
    return parts.join('\n');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export async function diff(repo: string, from: string, to: string): Promise<string> {
  return git(repo).raw(['diff', from, to]);
}

/** commits reachable from `branch` and not from `base`, oldest first */
export async function commitsSince(repo: string, base: string, branch: string): Promise<string[]> {
  const out = await git(repo).raw(['rev-list', '--reverse', `${base}..${branch}`]);
  return out.split('\n').filter(Boolean);
}

export async function parentOf(repo: string, commit: string): Promise<string | null> {
  return revParse(repo, `${commit}^`);
}

export async function commitMessage(repo: string, commit: string): Promise<string> {
  return git(repo).raw(['log', '-1', '--format=%B', commit]);
}

/** Keep .autoagent/ out of the user's `git status` without touching their files. */
export function excludeStateDir(gitCommonDir: string): void {
  const exclude = join(gitCommonDir, 'info', 'exclude');
  mkdirSync(dirname(exclude), { recursive: true });
  const text = existsSync(exclude) ? readFileSync(exclude, 'utf8') : '';
  if (!text.split('\n').includes('/.autoagent/')) appendFileSync(exclude, `${text && !text.endsWith('\n') ? '\n' : ''}/.autoagent/\n`);
}

export async function gitCommonDir(repo: string): Promise<string> {
  const out = (await git(repo).raw(['rev-parse', '--path-format=absolute', '--git-common-dir'])).trim();
  return out;
}

// ---------------------------------------------------------------------------------------------
// Plumbing that never touches a working tree: candidate commits are built in a private index,
// and a commit is written out as plain files. No git command ever runs inside a folder candidate
// code has written (its config, hooks, .git file or attributes could run commands on the host).

/** Run git in `repo` with extra environment and optional stdin; resolves stdout (a Buffer). */
export function gitRaw(repo: string, args: string[], opts: { env?: Record<string, string>; input?: string | Buffer } = {}): Promise<Buffer> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn('git', args, { cwd: repo, env: { ...process.env, ...opts.env }, stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    child.stdin.on('error', () => undefined);
    child.on('error', reject);
    child.on('close', (code) => {
      if (code === 0) resolvePromise(Buffer.concat(out));
      else reject(new Error(`git ${args[0]} failed (exit ${code}): ${Buffer.concat(err).toString().trim().split('\n')[0]}`));
    });
    child.stdin.end(opts.input ?? '');
  });
}

export interface TreeEntry {
  mode: string;
  type: 'blob' | 'commit' | 'tree';
  sha: string;
  path: string;
}

/** Every file of `commit` (recursively), with its mode and blob id. */
export async function treeEntries(repo: string, commit: string): Promise<TreeEntry[]> {
  const out = (await gitRaw(repo, ['ls-tree', '-r', '-z', '--full-tree', commit])).toString('utf8');
  const entries: TreeEntry[] = [];
  for (const rec of out.split('\0')) {
    if (!rec) continue;
    const tab = rec.indexOf('\t');
    const [mode, type, sha] = rec.slice(0, tab).split(' ') as [string, TreeEntry['type'], string];
    entries.push({ mode, type, sha, path: rec.slice(tab + 1) });
  }
  return entries;
}

/** The contents of blobs, read in one `git cat-file --batch`. */
async function readBlobs(repo: string, shas: string[]): Promise<Map<string, Buffer>> {
  const out = new Map<string, Buffer>();
  const unique = [...new Set(shas)];
  if (unique.length === 0) return out;
  const buf = await gitRaw(repo, ['cat-file', '--batch'], { input: unique.join('\n') + '\n' });
  let i = 0;
  for (const sha of unique) {
    const nl = buf.indexOf(0x0a, i);
    const header = buf.subarray(i, nl).toString('utf8').split(' ');
    if (header[1] === 'missing') throw new Error(`git object ${sha} is missing`);
    const size = Number(header[2]);
    out.set(sha, buf.subarray(nl + 1, nl + 1 + size));
    i = nl + 1 + size + 1;
  }
  return out;
}

/**
 * Write the files of `commit` into `dest` (created; must not exist or be empty) as plain files:
 * exact blob contents (no filters, no attributes), executable bits, symlinks as committed,
 * submodules as empty folders. `skip(path)` leaves a path out. Returns the paths written.
 */
export async function exportCommit(repo: string, commit: string, dest: string, skip: (path: string) => boolean = () => false): Promise<string[]> {
  const entries = (await treeEntries(repo, commit)).filter((e) => !skip(e.path));
  const blobs = await readBlobs(repo, entries.filter((e) => e.type === 'blob').map((e) => e.sha));
  mkdirSync(dest, { recursive: true });
  const written: string[] = [];
  for (const e of entries) {
    const abs = join(dest, e.path);
    mkdirSync(dirname(abs), { recursive: true });
    if (e.type === 'commit') {
      mkdirSync(abs, { recursive: true });
    } else if (e.mode === '120000') {
      symlinkSync(blobs.get(e.sha)!.toString('utf8'), abs);
    } else {
      writeFileSync(abs, blobs.get(e.sha)!, { mode: e.mode === '100755' ? 0o755 : 0o644 });
    }
    written.push(e.path);
  }
  return written;
}

/**
 * A commit whose tree is `parent`'s with `edits` (whole files) applied, built in a private index:
 * no working tree is involved. Existing files keep their mode; new ones are 100644.
 */
export async function commitEdits(repo: string, parent: string, edits: Array<{ path: string; content: string }>, message: string): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), 'autoagent-index-'));
  const env = { GIT_INDEX_FILE: join(dir, 'index') };
  try {
    await gitRaw(repo, ['read-tree', parent], { env });
    const modes = new Map((await treeEntries(repo, parent)).map((e) => [e.path, e.mode]));
    for (const e of edits) {
      const sha = (await gitRaw(repo, ['hash-object', '-w', '--no-filters', '--stdin'], { input: e.content })).toString().trim();
      const mode = modes.get(e.path) === '100755' ? '100755' : '100644';
      await gitRaw(repo, ['update-index', '--add', '--cacheinfo', `${mode},${sha},${e.path}`], { env });
    }
    const tree = (await gitRaw(repo, ['write-tree'], { env })).toString().trim();
    return (await gitRaw(repo, [...IDENTITY, 'commit-tree', tree, '-p', parent, '-F', '-'], { input: message })).toString().trim();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

// candidate refs: every candidate commit stays reachable (and survives `git gc`), so `audit`
// can re-derive each experiment's stored diff from git, kept or not

/** `refs/autoagent/<run-id>/<seq>`: the ref that holds experiment `seq`'s candidate commit */
export function candidateRef(runId: string, seq: number): string {
  return `refs/autoagent/${runId}/${seq}`;
}

/** Point the candidate ref of experiment `seq` at `commit` (created, or moved if a killed proposal left one). */
export async function pinCandidate(repo: string, runId: string, seq: number, commit: string): Promise<void> {
  await git(repo).raw(['update-ref', candidateRef(runId, seq), commit]);
}
