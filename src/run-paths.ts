/**
 * Where a recorded run lives now. A store records the repository's absolute path; a repository
 * copied elsewhere (cp -a, a restored backup, a moved folder) carries its store along in
 * `<repo>/.autoagent/autoagent.db`, and must be resumed, audited, finalized and reported as
 * itself, not as the original (which may be gone, or have moved on).
 */
import { existsSync, realpathSync } from 'node:fs';
import { basename, dirname, isAbsolute, join, relative, resolve } from 'node:path';
import type { RunRow } from '../traces/index.ts';
import { gitRaw } from '../base/git.ts';

export interface RunPlace {
  /** the run with `repo` and `study_path` where they are now */
  run: RunRow;
  /** `note: run recorded in /old; using /new` when they moved, else null */
  note: string | null;
}

async function gitTop(dir: string): Promise<string | null> {
  if (!existsSync(dir)) return null;
  try {
    return (await gitRaw(dir, ['rev-parse', '--show-toplevel'])).toString('utf8').trim() || null;
  } catch {
    return null;
  }
}

async function hasCommit(repo: string, sha: string): Promise<boolean> {
  try {
    await gitRaw(repo, ['cat-file', '-e', `${sha}^{commit}`]);
    return true;
  } catch {
    return false;
  }
}

function real(p: string): string {
  try {
    return realpathSync(p);
  } catch {
    return resolve(p);
  }
}

/** The repository a store at `dbPath` belongs to: `<X>` for `<X>/.autoagent/autoagent.db`, else the git top level of `cwd`. */
export async function storeHome(dbPath: string, cwd = process.cwd()): Promise<string | null> {
  const abs = resolve(dbPath);
  if (basename(abs) === 'autoagent.db' && basename(dirname(abs)) === '.autoagent') return gitTop(dirname(dirname(abs)));
  return gitTop(cwd);
}

/**
 * The run re-based onto the repository its store belongs to, when that is not the recorded one
 * (the recorded one is gone, or is another folder) and it holds the run's base commit (so a store
 * pointed at from an unrelated repository never redirects a run there).
 */
export async function resolveRunPaths(run: RunRow, dbPath: string | null, cwd = process.cwd()): Promise<RunPlace> {
  // a store that is no file (in memory) belongs to no repository: the recorded one
  const home = dbPath === null ? null : await storeHome(dbPath, cwd);
  if (!home || real(home) === real(run.repo)) return { run, note: null };
  if (!(await hasCommit(home, run.base_commit))) return { run, note: null };
  const rel = relative(run.repo, run.study_path);
  const studyPath = rel && !rel.startsWith('..') && !isAbsolute(rel) ? join(home, rel) : run.study_path;
  return {
    run: { ...run, repo: home, study_path: studyPath },
    note: `note: run ${run.id} recorded in ${run.repo}; using ${home}`,
  };
}
