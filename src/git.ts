/**
 * Git plumbing for a run: the run branch `autoagent/<run-id>` and one detached worktree per
 * candidate. The user's checkout and working tree are never modified: we only create a
 * branch ref, worktrees under .autoagent/worktrees, and objects.
 */
import { simpleGit, type SimpleGit } from 'simple-git';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync, appendFileSync } from 'node:fs';
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

export async function removeWorktree(repo: string, path: string): Promise<void> {
  try {
    await git(repo).raw(['worktree', 'remove', '--force', '--force', path]);
  } catch {
    // not registered (or already gone): remove what is there and prune the record
  }
  rmSync(path, { recursive: true, force: true });
  await git(repo).raw(['worktree', 'prune']);
}

/** Write whole files into a worktree and commit them on its detached HEAD; returns the commit. */
export async function commitFiles(worktree: string, files: Array<{ path: string; content: string }>, message: string): Promise<string> {
  for (const f of files) {
    const abs = join(worktree, f.path);
    mkdirSync(dirname(abs), { recursive: true });
    writeFileSync(abs, f.content);
  }
  const g = git(worktree);
  if (files.length > 0) await g.raw(['add', '--', ...files.map((f) => f.path)]);
  await g.raw([...IDENTITY, 'commit', '--allow-empty', '--no-verify', '-q', '-m', message]);
  return (await g.raw(['rev-parse', 'HEAD'])).trim();
}

/** Put the worktree back to exactly `commit`: tracked files restored, everything untracked removed. */
export async function resetWorktree(worktree: string, commit: string): Promise<void> {
  const g = git(worktree);
  await g.raw(['reset', '-q', '--hard', commit]);
  await g.raw(['clean', '-q', '-ffdx']);
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
      const body = out.split('\n').filter((l) => !/^(diff --git|index |--- |\+\+\+ )/.test(l)).join('\n');
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
