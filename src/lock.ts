/**
 * Locked paths: a sha256 manifest taken at run start and verified before every evaluation.
 * Paths are matched by the study's globs (relative to the study file's folder), over the
 * files present in the repository folder, tracked or not.
 */
import { createHash } from 'node:crypto';
import { readFileSync, readdirSync, statSync, existsSync } from 'node:fs';
import { join, relative, sep } from 'node:path';
import { UsageError, UserError } from '../base/errors.ts';
import { globMatcher } from '../base/glob.ts';

const SKIP_DIRS = new Set(['.git', '.autoagent', 'node_modules']);

export interface Manifest {
  /** repo-relative path -> sha256, for files matched by the study's locked globs */
  files: Record<string, string>;
  /** absolute path -> sha256, for locked resources outside the repository (e.g. a dataset cache) */
  external: Record<string, string>;
}

export function sha256File(path: string): string {
  return createHash('sha256').update(readFileSync(path)).digest('hex');
}

/** every file under `root` (repo-relative, '/' separated), skipping .git, .autoagent and node_modules */
export function walkFiles(root: string): string[] {
  const out: string[] = [];
  const visit = (dir: string) => {
    for (const ent of readdirSync(dir, { withFileTypes: true })) {
      if (ent.isDirectory()) {
        if (!SKIP_DIRS.has(ent.name)) visit(join(dir, ent.name));
      } else if (ent.isFile()) {
        out.push(relative(root, join(dir, ent.name)).split(sep).join('/'));
      }
    }
  };
  visit(root);
  return out.sort();
}

/** the files each glob matches; a glob that matches nothing is a study error */
export function matchGlobs(files: string[], globs: string[], prefix: string, field: string, studyPath: string): string[] {
  const matched = new Set<string>();
  for (const g of globs) {
    const m = globMatcher([g], prefix);
    const hits = files.filter(m);
    if (hits.length === 0) throw new UsageError(`${studyPath}: field \`${field}\`: glob '${g}' matches no file (paths are relative to the study file's folder)`);
    hits.forEach((h) => matched.add(h));
  }
  return [...matched].sort();
}

export function buildManifest(repo: string, lockedFiles: string[], external: string[]): Manifest {
  const files: Record<string, string> = {};
  for (const f of lockedFiles) files[f] = sha256File(join(repo, f));
  const ext: Record<string, string> = {};
  for (const p of external) {
    if (!existsSync(p)) throw new UserError(`locked resource ${p} does not exist`);
    if (statSync(p).isDirectory()) {
      for (const f of walkFiles(p)) ext[join(p, f)] = sha256File(join(p, f));
    } else {
      ext[p] = sha256File(p);
    }
  }
  return { files, external: ext };
}

export class LockViolation extends UserError {}

/**
 * Verify the manifest against the repo folder, against each worktree given (tracked locked
 * files only: `tracked`), and the external resources. Throws LockViolation naming the file.
 */
export function verifyManifest(m: Manifest, repo: string, worktree: string | null, tracked: Set<string>): void {
  const check = (abs: string, shown: string, expected: string) => {
    if (!existsSync(abs)) throw new LockViolation(`locked file ${shown} was deleted since the run started: the run stops (restore it, or start a new run)`);
    const got = sha256File(abs);
    if (got !== expected) {
      throw new LockViolation(`locked file ${shown} changed since the run started (sha256 ${expected.slice(0, 12)} → ${got.slice(0, 12)}): the run stops (restore it, or start a new run)`);
    }
  };
  for (const [rel, h] of Object.entries(m.files)) {
    check(join(repo, rel), rel, h);
    if (worktree && tracked.has(rel)) check(join(worktree, rel), `${rel} (in the candidate worktree)`, h);
  }
  for (const [abs, h] of Object.entries(m.external)) check(abs, abs, h);
}

/**
 * The external part of a manifest as another machine can compare it: for each locked root (a
 * file or a folder, as prepare() named them), its files' sha256 by path relative to the root (a
 * file root: by its own name). Two machines whose roots lie at different paths hold the same
 * locked resources when these are equal.
 */
export function relativeManifest(external: Record<string, string>, roots: string[]): Array<Record<string, string>> {
  return roots.map((root) => {
    const out: Record<string, string> = {};
    for (const [abs, sha] of Object.entries(external)) {
      if (abs === root) out[root.split('/').pop()!] = sha;
      else if (abs.startsWith(`${root}/`)) out[abs.slice(root.length + 1)] = sha;
    }
    return Object.fromEntries(Object.entries(out).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
  });
}

/** The first difference between two relativeManifest()s, in words; null when they are equal. */
export function relativeManifestDiff(want: Array<Record<string, string>>, have: Array<Record<string, string>>): string | null {
  if (want.length !== have.length) return `${want.length} locked resource(s) on the coordinator, ${have.length} here`;
  for (let i = 0; i < want.length; i++) {
    const w = want[i]!;
    const h = have[i]!;
    for (const [rel, sha] of Object.entries(w)) {
      if (!(rel in h)) return `${rel} is missing here`;
      if (h[rel] !== sha) return `${rel}: sha256 ${sha.slice(0, 12)} on the coordinator, ${h[rel]!.slice(0, 12)} here`;
    }
    for (const rel of Object.keys(h)) if (!(rel in w)) return `${rel} is here and not on the coordinator`;
  }
  return null;
}
