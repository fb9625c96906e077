/**
 * The `command` proposer: an external coding-agent CLI (`claude -p`, `codex exec`,
 * `aider --message`, …) run in a scratch worktree of the incumbent.
 *
 * One proposal = one run of the command:
 *  1. a detached worktree of the incumbent commit in a temp folder (outside the repo), always
 *     removed afterwards — on success, failure, timeout and abort alike;
 *  2. the context (direction, study facts, ledger, this round's proposals, trace digest and the
 *     instructions) written to `AUTOAGENT_TASK.md` in the worktree root and piped on stdin;
 *  3. `/bin/sh -c COMMAND` in the worktree, in its own process group, killed as a group
 *     (SIGTERM, then SIGKILL after a short grace) at the deadline or when the run is interrupted;
 *  4. the change = the worktree (commits the CLI made itself, new untracked files that .gitignore
 *     does not exclude, deletions) against the incumbent commit, turned into whole-file edits.
 *
 * Path rules: changes to paths that are neither editable nor locked are dropped (and listed in
 * the recorded span); changes to locked paths are KEPT in the returned edits so that the loop's
 * path check records the proposal as `rejected`, naming the locked path.
 *
 * The CLI is not sandboxed (it needs its own network access and credentials): it runs with the
 * user's rights, like any command the user would run by hand.
 */
import { lstatSync, mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { addWorktree, git, removeWorktree } from '../base/git.ts';
import { globMatcher } from '../base/glob.ts';
import { startProcess } from '../base/proc.ts';
import { ProposalFailed, type FileEdit, type LedgerEntry, type Proposal, type ProposalContext, type Proposer } from './types.ts';

export interface CommandProposerSettings {
  /** shell command line, run with `/bin/sh -c` in the worktree */
  command: string;
  /** wall-clock limit of one run of the command */
  timeout_seconds: number;
  /** token budget (≈ 4 characters each) of the trace digest included in the context */
  context_tokens: number;
  /** extra environment variables for the command (their values are never recorded) */
  env?: Record<string, string>;
  /** the study's locked globs, repo-relative: any change to these is returned so the loop rejects it */
  locked?: string[];
}

/** the task file's name in the worktree root */
export const TASK_FILE = 'AUTOAGENT_TASK.md';
/** how much of the command's stdout and stderr is kept (each) */
export const OUTPUT_TAIL_BYTES = 64 * 1024;
/** SIGTERM to SIGKILL */
const KILL_GRACE_MS = 2000;
/** experiments of the ledger shown in full; older ones get one line */
const LEDGER_FULL = 8;

interface RunResult {
  exitCode: number | null;
  signal: string | null;
  timedOut: boolean;
  aborted: boolean;
  stdoutTail: string;
  stderrTail: string;
  /** the last HYPOTHESIS / CITED / EXPECTED lines seen on stdout (scanned as it streams, so none is lost to the tail) */
  tags: Partial<Record<Tag, string>>;
  ms: number;
}

type Tag = 'HYPOTHESIS' | 'CITED' | 'EXPECTED';

interface Change {
  path: string;
  /** git's status letter against the incumbent: A, M, D, T */
  status: string;
  /** the new git mode ('000000' when deleted) */
  mode: string;
}

export interface DroppedChange {
  path: string;
  status: string;
  reason: string;
}

export class CommandProposer implements Proposer {
  readonly name = 'command';

  constructor(private readonly settings: CommandProposerSettings) {
    if (!settings.command.trim()) throw new Error('command proposer: `command` is empty');
    if (!(settings.timeout_seconds > 0)) throw new Error('command proposer: `timeout_seconds` must be positive');
  }

  async propose(ctx: ProposalContext): Promise<Proposal> {
    const missing = (['repo', 'incumbent', 'services', 'history'] as const).filter((k) => ctx[k] === undefined);
    if (missing.length) throw new Error(`command proposer: the proposal context lacks ${missing.map((m) => `ctx.${m}`).join(', ')} (the loop must pass them)`);
    const repo = ctx.repo!;
    const commit = ctx.incumbent!.commit;
    const services = ctx.services!;
    const history = ctx.history!;
    const { command } = this.settings;
    const label = clip(oneLine(command), 80); // for error messages: a command may embed a long prompt

    const isEditable = globMatcher(ctx.editable, '');
    const isLocked = globMatcher(this.settings.locked ?? [], '');

    const task = taskText(ctx, this.settings, history.digest(this.settings.context_tokens));
    const envAdded: Record<string, string> = { ...(this.settings.env ?? {}) };

    const scratch = mkdtempSync(join(tmpdir(), 'autoagent-command-'));
    const wt = join(scratch, 'worktree');
    const started = Date.now();
    let run: RunResult | null = null;
    let changes: Change[] | null = null;
    const dropped: DroppedChange[] = [];
    let failure: Error | null = null;
    let timedOut = false;
    try {
      await addWorktree(repo, wt, commit);
      const taskName = freeName(wt);
      const taskPath = join(wt, taskName);
      writeFileSync(taskPath, task);
      envAdded.AUTOAGENT_TASK_FILE = taskPath;
      if (ctx.runId !== undefined) envAdded.AUTOAGENT_RUN_ID = ctx.runId;
      if (ctx.seq !== undefined) envAdded.AUTOAGENT_SEQ = String(ctx.seq);

      run = await runCommand(command, wt, childEnv(envAdded), task, this.settings.timeout_seconds * 1000, ctx.signal);
      timedOut = run.timedOut;
      if (run.timedOut) throw new ProposalFailed(`command \`${label}\` timed out after ${this.settings.timeout_seconds}s`);
      if (run.aborted) throw new ProposalFailed(`command \`${label}\` was interrupted`);

      // What the command changed is listed (for the span) even when it failed.
      rmSync(taskPath, { force: true });
      let changeError: Error | null = null;
      try {
        changes = (await collectChanges(wt, commit)).filter((c) => c.path !== taskName);
      } catch (e) {
        changeError = e as Error;
      }

      // A failing command may have stopped half-way through its edits: evaluating a half-made
      // change wastes an experiment and misattributes the hypothesis, so a non-zero exit is a
      // failed proposal even when files were changed (the safer choice).
      if (run.exitCode !== 0) {
        const how = run.exitCode === null ? `was killed by ${run.signal ?? 'a signal'}` : `exited with status ${run.exitCode}`;
        const last = lastLine(run.stderrTail) || lastLine(run.stdoutTail);
        throw new ProposalFailed(`command \`${label}\` ${how}${last ? `: ${last}` : ''}`);
      }
      if (changeError || !changes) throw new ProposalFailed(`command \`${label}\`: could not read its change from the worktree: ${lastLine(changeError?.message ?? '')}`);

      const edits: FileEdit[] = [];
      const deletedLocked: string[] = [];
      for (const c of changes) {
        if (isLocked(c.path)) {
          // kept on purpose: the loop's path check rejects the proposal, naming this path
          if (c.status === 'D') deletedLocked.push(c.path);
          edits.push({ path: c.path, content: c.status === 'D' ? '' : lockedContent(wt, c.path) });
          continue;
        }
        if (!isEditable(c.path)) {
          dropped.push({ path: c.path, status: c.status, reason: 'not editable' });
          continue;
        }
        if (c.status === 'D') throw new ProposalFailed(`command \`${label}\`: deleting files is not supported: ${c.path}`);
        if (c.mode === '120000' || c.mode === '160000' || isSymlink(join(wt, c.path))) {
          throw new ProposalFailed(`command \`${label}\`: ${c.path} became a ${c.mode === '160000' ? 'submodule' : 'symbolic link'}; only regular files can be edited`);
        }
        const content = readText(join(wt, c.path));
        if (content === null) throw new ProposalFailed(`command \`${label}\` wrote a binary or non-UTF-8 file: ${c.path}`);
        if (ctx.files[c.path] === content) {
          dropped.push({ path: c.path, status: c.status, reason: 'content unchanged (mode only)' });
          continue;
        }
        edits.push({ path: c.path, content });
      }
      if (edits.length === 0) {
        throw new ProposalFailed(`command \`${label}\` changed no editable file${dropped.length ? ` (dropped: ${dropped.map((d) => d.path).join(', ')})` : ''}`);
      }

      const meta: Record<string, unknown> = {
        proposer: 'command', command, exit_code: run.exitCode, ms: run.ms, spend: 'unknown (external CLI)',
      };
      let hypothesis = oneLine(run.tags.HYPOTHESIS ?? '');
      if (!hypothesis) {
        hypothesis = `${commandName(command)}: edits ${edits.map((e) => e.path).join(', ')}`;
        meta.no_hypothesis = true;
      }
      if (dropped.length) meta.dropped = dropped.map((d) => d.path);
      if (deletedLocked.length) meta.deleted_locked = deletedLocked;
      const proposal: Proposal = { hypothesis, edits, meta };
      if (run.tags.CITED !== undefined) {
        const ids = [...new Set(run.tags.CITED.split(/[\s,]+/).map((s) => s.replace(/^[`'"[(]+|[`'")\].]+$/g, '')).filter(Boolean))];
        const known = ids.filter((id) => history.hasTrace(id));
        const unknown = ids.filter((id) => !history.hasTrace(id));
        if (known.length) proposal.cited = known;
        if (unknown.length) meta.unknown_cited = unknown;
      }
      const expected = oneLine(run.tags.EXPECTED ?? '');
      if (expected) proposal.expected_effect = expected;
      return proposal;
    } catch (e) {
      failure = e as Error;
      throw e;
    } finally {
      // best effort: a failed cleanup must neither hide the outcome nor skip the span
      let cleanupError: string | null = null;
      try {
        await removeWorktree(repo, wt);
      } catch (e) {
        cleanupError = (e as Error).message;
      }
      try {
        rmSync(scratch, { recursive: true, force: true });
      } catch (e) {
        cleanupError ??= (e as Error).message;
      }
      const ended = Date.now();
      services.record({
        kind: 'agent',
        name: command,
        status: timedOut ? 'timeout' : failure ? 'error' : 'ok',
        started_at: started,
        ended_at: ended,
        input: { command, task_chars: task.length, env_added: Object.keys(envAdded) },
        output: {
          exit_code: run?.exitCode ?? null,
          signal: run?.signal ?? null,
          stdout_tail: run?.stdoutTail ?? '',
          stderr_tail: run?.stderrTail ?? '',
          changed: changes?.map((c) => ({ path: c.path, status: c.status })) ?? null,
          dropped,
          elapsed: ended - started,
          ...(cleanupError ? { cleanup_error: cleanupError } : {}),
        },
        error: failure ? failure.message : null,
        attributes: { proposer: 'command', command, exit_code: run?.exitCode ?? null, ms: run?.ms ?? ended - started, spend: 'unknown (external CLI)' },
      });
    }
  }
}

// ------------------------------------------------------------------ the context

/** The task the CLI reads: written to the task file and piped on stdin. */
export function taskText(ctx: ProposalContext, settings: Pick<CommandProposerSettings, 'locked'>, digest: string): string {
  const out: string[] = [];
  out.push('# autoagent task: propose one improvement', '');
  out.push(
    'You are the proposer of an automated experiment loop. This folder is a scratch copy (a git worktree) of the',
    'current best version. Make ONE focused change to the editable files that you expect to improve the metric.',
    'A locked scorer will evaluate your change; it is kept only if it beats the current best by more than the noise.',
    '',
  );
  out.push('## Direction', '', ctx.program?.trim() || '(none given)', '');

  out.push('## Study', '');
  if (ctx.kind) out.push(`- kind: ${ctx.kind}`);
  const better = ctx.metric.direction === 'minimize' ? 'lower is better' : 'higher is better';
  out.push(`- metric: ${ctx.metric.name} (${ctx.metric.direction}: ${better})`);
  out.push(`- editable (globs relative to this folder): ${ctx.editable.join(', ') || '(none)'}`);
  if (settings.locked?.length) out.push(`- locked (never change these; any change to them gets the proposal rejected): ${settings.locked.join(', ')}`);
  const present = Object.keys(ctx.files).sort();
  if (present.length) out.push(`- editable files now: ${present.join(', ')}`);
  if (ctx.incumbent) out.push(`- current best: experiment #${ctx.incumbent.seq}${ctx.incumbent.metric !== undefined ? `, ${ctx.metric.name} = ${fmt(ctx.incumbent.metric)}` : ''}`);
  if (ctx.seq !== undefined) out.push(`- this will be experiment #${ctx.seq}`);
  out.push('');

  out.push('## Ledger (experiments so far, oldest first)', '');
  out.push(...ledgerText(ctx.ledger, ctx.metric.name), '');

  if (ctx.round?.length) {
    out.push('## Already proposed this round (from the same starting point; propose something different)', '');
    for (const r of ctx.round) out.push(`- ${oneLine(r.hypothesis)}`);
    out.push('');
  }
  if (ctx.notes?.length) {
    out.push('## Your last proposals that made no experiment (do not repeat them)', '');
    for (const n of ctx.notes) out.push(`- ${oneLine(n)}`);
    out.push('');
  }

  out.push('## Trace digest of the current best', '', digest.trim() || '(no traces)', '');

  out.push('## Instructions', '');
  out.push(
    '- Edit only the editable files in this folder (you may create new files matching the editable globs).',
    '- Do not delete or rename files; do not touch any other file — changes elsewhere are dropped, and changes to locked files get the proposal rejected.',
    '- Do not commit, push or create branches.',
    `- This file (${TASK_FILE}) is deleted when you finish; it is not part of your change.`,
    '- When done, print exactly one line describing the change:',
    '  HYPOTHESIS: <what you changed and why you expect it to help>',
    '  optionally followed by:',
    '  CITED: <trace id>, <trace id>   (the traces from the digest that motivated the change)',
    '  EXPECTED: <the effect you expect on the metric>',
    '',
  );
  return out.join('\n');
}

function ledgerText(ledger: LedgerEntry[], metricName: string): string[] {
  if (ledger.length === 0) return ['(no experiments yet)'];
  const lines: string[] = [];
  const cut = Math.max(0, ledger.length - LEDGER_FULL);
  if (cut > 0) lines.push(`Older experiments, one line each:`);
  for (const e of ledger.slice(0, cut)) {
    const m = e.metric !== undefined ? ` ${metricName}=${fmt(e.metric)}` : '';
    lines.push(`- #${e.seq} ${e.decision}${m}${e.proposer ? ` (${e.proposer})` : ''}: ${clip(oneLine(e.hypothesis), 160)}`);
  }
  if (cut > 0) lines.push('', 'Recent experiments:');
  for (const e of ledger.slice(cut)) {
    lines.push(`### #${e.seq} — ${e.decision}${e.proposer ? ` (proposer: ${e.proposer})` : ''}`);
    lines.push(`- hypothesis: ${oneLine(e.hypothesis)}`);
    lines.push(`- ${metricName}: ${e.metric !== undefined ? fmt(e.metric) : 'n/a'}`);
    if (e.improvement !== undefined) lines.push(`- improvement over the best at the time (higher is better): ${fmt(e.improvement)}`);
    if (e.reason) lines.push(`- reason: ${oneLine(e.reason)}`);
  }
  return lines;
}

function fmt(x: number): string {
  return Number.isFinite(x) ? String(Number(x.toPrecision(6))) : String(x);
}

function oneLine(s: string): string {
  return s.replace(/\s+/g, ' ').trim();
}

function clip(s: string, n: number): string {
  return s.length <= n ? s : s.slice(0, n - 1) + '…';
}

/** `AUTOAGENT_TASK.md`, unless the incumbent has such a file; then the first free variant */
function freeName(wt: string): string {
  if (!existsSync(join(wt, TASK_FILE))) return TASK_FILE;
  for (let i = 1; ; i++) {
    const name = TASK_FILE.replace(/\.md$/, `-${i}.md`);
    if (!existsSync(join(wt, name))) return name;
  }
}

/** the program's name for the fallback hypothesis: `FOO=1 /usr/bin/claude -p …` → `claude` */
export function commandName(command: string): string {
  const words = command.trim().split(/\s+/);
  const first = words.find((w) => !/^[A-Za-z_][A-Za-z0-9_]*=/.test(w)) ?? words[0] ?? 'command';
  return basename(first.replace(/^['"]|['"]$/g, '')) || 'command';
}

function lastLine(s: string): string {
  const lines = s.split('\n').map((l) => l.trim()).filter(Boolean);
  return clip(lines[lines.length - 1] ?? '', 300);
}

// ------------------------------------------------------------------ the change

/** every path whose tree entry differs between the worktree (as `git add -A` sees it) and `commit` */
async function collectChanges(wt: string, commit: string): Promise<Change[]> {
  const g = git(wt);
  await g.raw(['add', '-A']);
  // :oldmode newmode oldsha newsha STATUS \0 path \0
  const out = await g.raw(['diff', '--cached', '--raw', '-z', '--no-renames', '--no-abbrev', commit]);
  const parts = out.split('\0');
  const changes: Change[] = [];
  for (let i = 0; i + 1 < parts.length; i += 2) {
    const head = parts[i]!;
    if (!head.startsWith(':')) break;
    const f = head.slice(1).split(' ');
    changes.push({ path: parts[i + 1]!, mode: f[1] ?? '', status: (f[4] ?? '?').charAt(0) });
  }
  return changes;
}

function readText(path: string): string | null {
  const buf = readFileSync(path);
  if (buf.includes(0)) return null;
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(buf);
  } catch {
    return null;
  }
}

function isSymlink(path: string): boolean {
  try {
    return lstatSync(path).isSymbolicLink();
  } catch {
    return false;
  }
}

/** a locked file's new content, for the rejected experiment's audit diff */
function lockedContent(wt: string, path: string): string {
  try {
    if (isSymlink(join(wt, path))) return '(changed into a symbolic link by the command)';
    return readText(join(wt, path)) ?? '(binary content written by the command)';
  } catch {
    return '(unreadable content written by the command)';
  }
}

// ------------------------------------------------------------------ running the command

/** the process environment for the command: ours, minus git's per-repo overrides, plus `added` */
function childEnv(added: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  // these would point the CLI's git at another repository than its worktree
  for (const k of ['GIT_DIR', 'GIT_WORK_TREE', 'GIT_INDEX_FILE', 'GIT_COMMON_DIR', 'GIT_OBJECT_DIRECTORY', 'GIT_PREFIX']) delete env[k];
  return { ...env, ...added };
}

const TAG_LINE = /^[\s>*_`#-]*(HYPOTHESIS|CITED|EXPECTED)[*_`]*\s*:[*_`]*\s*(.*?)\s*$/;

export async function runCommand(command: string, cwd: string, env: NodeJS.ProcessEnv, stdin: string, timeoutMs: number, signal?: AbortSignal): Promise<RunResult> {
  const tags: RunResult['tags'] = {};
  if (signal?.aborted) {
    return { exitCode: null, signal: null, timedOut: false, aborted: true, stdoutTail: '', stderrTail: '', tags, ms: 0 };
  }
  let partial = '';
  const scan = (text: string, final = false) => {
    const lines = (partial + text).split('\n');
    partial = final ? '' : lines.pop()!;
    if (partial.length > 100_000) partial = partial.slice(-100_000); // a line without end: keep its tail
    for (const l of lines) {
      const m = TAG_LINE.exec(l.replace(/\r$/, ''));
      if (m && m[2]) tags[m[1] as Tag] = m[2];
    }
  };
  const proc = startProcess({
    file: '/bin/sh', args: ['-c', command], cwd, env, stdin, timeoutMs, signal,
    tailBytes: OUTPUT_TAIL_BYTES, graceMs: KILL_GRACE_MS,
    onOutput: (stream, text) => {
      if (stream === 'stdout') scan(text);
    },
  });
  const r = await proc.result;
  scan('', true);
  return {
    exitCode: r.exitCode, signal: r.signal, timedOut: r.timedOut, aborted: r.aborted,
    stdoutTail: r.stdout, stderrTail: r.stderr, tags, ms: r.durationMs,
  };
}
