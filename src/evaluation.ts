/**
 * One evaluation of one commit, as the loop and finalize run it: verify the locked files, write the
 * commit out into a fresh workspace (src/workspace.ts), let the kind evaluate it there, remove the
 * workspace. The only place an EvalRequest is built.
 */
import { join } from 'node:path';
import type { Study } from './study.ts';
import type { DB } from '../traces/index.ts';
import type { SpendGuard } from '../task-agent/evaluate.ts';
import type { EvalOutcome, EvalRequest, KindAdapter, PrepareResult, RunPaths, SandboxPolicy } from './kinds/types.ts';
import { verifyManifest, type Manifest } from './lock.ts';
import { globMatcher } from '../base/glob.ts';
import { openWorkspace } from './workspace.ts';
import type { Lease } from './slots.ts';

export interface EvalContext {
  /** where a harness evaluation writes its traces; null: a store that keeps none (src/loop.ts refuses harness runs on it) */
  db: DB | null;
  runId: string;
  study: Study;
  paths: RunPaths;
  adapter: KindAdapter;
  prepared: PrepareResult;
  manifest: Manifest;
  /** repo-relative paths tracked at the run's base commit */
  baseTracked: Set<string>;
  isLocked: (repoPath: string) => boolean;
  /** repo-relative files hidden from the candidate */
  hidden: string[];
  policy: SandboxPolicy;
  guard: SpendGuard;
  signal?: AbortSignal;
}

export interface EvalTarget {
  commit: string;
  /** names the workspace folder */
  label: string;
  seq: number;
  seed: number;
  repeat: number;
  screenAgainst?: Map<string, number>;
  onOutput?: (stream: 'stdout' | 'stderr', chunk: string) => void;
  /** how far the evaluation has come (src/kinds/types.ts EvalProgress) */
  onProgress?: EvalRequest['onProgress'];
  /** what the evaluation's slot holds (a GPU, a CPU share) */
  lease?: Lease;
}

/** Throws LockViolation (naming the file) when a locked file changed; else the kind's outcome. */
export async function evaluateCommit(ctx: EvalContext, t: EvalTarget): Promise<EvalOutcome> {
  const locked = Object.keys(ctx.manifest.files);
  const ws = await openWorkspace({
    repo: ctx.paths.repo, stateDir: ctx.paths.stateDir, runId: ctx.runId, label: t.label, commit: t.commit,
    baseTracked: ctx.baseTracked, locked, isLocked: ctx.isLocked, hidden: ctx.hidden,
    isOutput: globMatcher(ctx.study.outputs, ctx.paths.studyDir), diskMb: ctx.study.sandbox.disk_mb,
  });
  try {
    // the checkout's locked files, the external ones, and the candidate's copy of each tracked one are as hashed at start
    const hidden = new Set(ctx.hidden);
    verifyManifest(ctx.manifest, ctx.paths.repo, ws.cand, new Set(ws.lockedInCand.map((p) => p.slice(ws.cand.length + 1)).filter((p) => !hidden.has(p))));
    const out = await ctx.adapter.evaluate({
      study: ctx.study, paths: ctx.paths, worktree: ws.cand, scratch: ws.scratch, ws, seed: t.seed, repeat: t.repeat,
      policy: ctx.policy, prepared: ctx.prepared, onOutput: t.onOutput, onProgress: t.onProgress,
      run: { db: ctx.db, id: ctx.runId, seq: t.seq }, guard: ctx.guard, screenAgainst: t.screenAgainst, signal: ctx.signal, lease: t.lease,
    });
    // how disk_mb was enforced for this evaluation (a loop-mounted image, or the polling watcher)
    if (ws.disk !== 'none') out.telemetry = { ...out.telemetry, disk_limit: ws.disk };
    return out;
  } finally {
    ws.dispose();
  }
}

/** `sandbox.read` entries as absolute paths (`~/` is the user's home; relative ones are relative to the study file). */
export function readPaths(study: Study, studyDirAbs: string): string[] {
  const home = process.env.HOME ?? '/';
  return study.sandbox.read.map((p) => (p === '~' || p.startsWith('~/') ? join(home, p.slice(1)) : p.startsWith('/') ? p : join(studyDirAbs, p)));
}
