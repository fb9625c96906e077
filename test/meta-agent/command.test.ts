import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CommandProposer, TASK_FILE, commandName, type CommandProposerSettings } from '../../meta-agent/command.ts';
import { ProposalFailed, type LedgerEntry, type ProposalContext, type ProposalSpan, type RunHistory } from '../../meta-agent/types.ts';
import { cleanup, makeRepo, sh, PARAMS_PY, EVALUATE_PY } from '../helpers/repo.ts';

// ---------------------------------------------------------------- fixtures

const dirs: string[] = [];
after(() => dirs.forEach(cleanup));

const DIGEST = 'DIGEST-MARKER: task t7 failed with a KeyError in tools/search.py (trace tr-42)';

function repo(): { dir: string; head: string } {
  const dir = makeRepo({
    'params.py': PARAMS_PY,
    'evaluate.py': EVALUATE_PY,
    'notes.txt': 'free-form notes\n',
    'extra/keep.py': 'A = 1\n',
    '.gitignore': '*.log\n',
  });
  dirs.push(dir);
  return { dir, head: sh(dir, 'git', ['rev-parse', 'HEAD']).trim() };
}

/** a fake coding-agent CLI: an executable sh script outside the repo; `out` is a folder outside the worktree it may write to */
function fakeCli(name: string, body: string): { command: string; out: string } {
  const out = mkdtempSync(join(tmpdir(), 'autoagent-fakecli-'));
  dirs.push(out);
  const path = join(out, name);
  writeFileSync(path, `#!/bin/sh\nOUT='${out}'\necho "$(pwd)" > "$OUT/cwd"\n${body}\n`);
  chmodSync(path, 0o755);
  return { command: path, out };
}

const LEDGER: LedgerEntry[] = [
  { seq: 0, hypothesis: 'baseline (the starting commit)', decision: 'baseline', metric: 8, proposer: 'baseline' },
  ...Array.from({ length: 10 }, (_, i): LedgerEntry => ({
    seq: i + 1, hypothesis: `try X = ${i + 1}.5 (ledger-entry-${i + 1})`, decision: i === 9 ? 'kept' : 'discarded',
    metric: 7 - i * 0.1, improvement: i === 9 ? 1.25 : -0.5, proposer: 'llm', reason: `reason-line-${i + 1}`,
  })),
];

interface Fixture {
  ctx: ProposalContext;
  spans: ProposalSpan[];
}

function context(dir: string, head: string, over: Partial<ProposalContext> = {}): Fixture {
  const spans: ProposalSpan[] = [];
  const history: RunHistory = {
    diff: () => null,
    failingTasks: () => [],
    trace: () => null,
    search: () => [],
    readFile: async () => null,
    digest: (tokens) => `${DIGEST} [budget ${tokens} tokens]`,
    hasTrace: (id) => id === 'tr-42' || id === 'tr-7',
  };
  const ctx: ProposalContext = {
    files: { 'params.py': PARAMS_PY, 'extra/keep.py': 'A = 1\n' },
    editable: ['params.py', 'extra/*.py'],
    knobs: [],
    metric: { name: 'loss', direction: 'minimize' },
    ledger: LEDGER,
    random: () => 0.5,
    seen: new Set(),
    seq: 11,
    runId: 'run-abc',
    kind: 'command',
    incumbent: { seq: 10, commit: head, metric: 6.1 },
    repo: dir,
    program: 'PROGRAM-MARKER: make the loss smaller by tuning X.',
    round: [{ hypothesis: 'ROUND-MARKER: set N = 4' }],
    history,
    services: {
      model: async () => {
        throw new Error('the command proposer makes no model call');
      },
      record: (s) => spans.push(s),
      spent: () => ({ tokens: 0, dollars: 0 }),
    },
    ...over,
  };
  return { ctx, spans };
}

function settings(command: string, over: Partial<CommandProposerSettings> = {}): CommandProposerSettings {
  return { command, timeout_seconds: 20, context_tokens: 3000, locked: ['evaluate.py'], ...over };
}

/** worktrees the repo knows besides its main checkout */
function extraWorktrees(dir: string): string[] {
  return sh(dir, 'git', ['worktree', 'list', '--porcelain']).split('\n').filter((l) => l.startsWith('worktree ')).slice(1);
}

function assertWorktreeGone(dir: string, out: string): void {
  const cwd = readFileSync(join(out, 'cwd'), 'utf8').trim();
  assert.ok(cwd.length > 0 && !cwd.startsWith(dir), `the command ran in a temp worktree outside the repo, got ${cwd}`);
  assert.equal(existsSync(cwd), false, `worktree ${cwd} was removed`);
  assert.deepEqual(extraWorktrees(dir), [], 'no worktree left registered');
}

function processGone(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return true;
  }
  // a killed process that nobody has reaped yet (pid 1 of a container may not reap) is dead too
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z');
  } catch {
    return true;
  }
}

// ---------------------------------------------------------------- tests

test('edits an editable file, parses HYPOTHESIS / CITED / EXPECTED, leaves the task file out and removes the worktree', async () => {
  const { dir, head } = repo();
  const cli = fakeCli('fake-agent', `
grep -q 'HYPOTHESIS:' "$AUTOAGENT_TASK_FILE" || exit 3
[ "$AUTOAGENT_TASK_FILE" = "$(pwd)/${TASK_FILE}" ] || exit 4
echo "$AUTOAGENT_RUN_ID $AUTOAGENT_SEQ $SECRET_TOKEN" > "$OUT/env"
cat > /dev/null
sed -i 's/^X = 1.0/X = 2.5/' params.py
echo "working..."
echo "HYPOTHESIS: an early draft that is superseded"
echo "HYPOTHESIS: X 1.0 -> 2.5 moves toward the optimum"
echo "CITED: tr-42, tr-unknown tr-7"
echo "EXPECTED: loss drops by about 2"
`);
  const { ctx, spans } = context(dir, head);
  const p = await new CommandProposer(settings(cli.command, { env: { SECRET_TOKEN: 'hunter2' } })).propose(ctx);

  assert.deepEqual(p.edits, [{ path: 'params.py', content: PARAMS_PY.replace('X = 1.0', 'X = 2.5') }]);
  assert.equal(p.hypothesis, 'X 1.0 -> 2.5 moves toward the optimum');
  assert.deepEqual(p.cited, ['tr-42', 'tr-7']);
  assert.equal(p.expected_effect, 'loss drops by about 2');
  const meta = p.meta as Record<string, unknown>;
  assert.deepEqual(meta.unknown_cited, ['tr-unknown']);
  assert.equal(meta.proposer, 'command');
  assert.equal(meta.exit_code, 0);
  assert.equal(meta.spend, 'unknown (external CLI)');
  assert.equal(meta.no_hypothesis, undefined);
  assert.equal(readFileSync(join(cli.out, 'env'), 'utf8').trim(), 'run-abc 11 hunter2');
  assertWorktreeGone(dir, cli.out);
  assert.equal(readFileSync(join(dir, 'params.py'), 'utf8'), PARAMS_PY, 'the user checkout is untouched');

  assert.equal(spans.length, 1);
  const s = spans[0]!;
  assert.equal(s.kind, 'agent');
  assert.equal(s.name, cli.command);
  assert.equal(s.status, 'ok');
  assert.ok(s.ended_at >= s.started_at);
  const input = s.input as { env_added: string[]; task_chars: number };
  assert.ok(input.env_added.includes('SECRET_TOKEN') && input.env_added.includes('AUTOAGENT_TASK_FILE'));
  assert.ok(input.task_chars > 0);
  assert.ok(!JSON.stringify(s).includes('hunter2'), 'env values are never recorded');
  const output = s.output as { exit_code: number; stdout_tail: string; changed: Array<{ path: string }>; dropped: unknown[] };
  assert.equal(output.exit_code, 0);
  assert.match(output.stdout_tail, /working\.\.\./);
  assert.deepEqual(output.changed.map((c) => c.path), ['params.py']);
  assert.deepEqual(output.dropped, []);
});

test('the context arrives on stdin and in the task file: direction, study, ledger, round, digest, instructions', async () => {
  const { dir, head } = repo();
  const cli = fakeCli('reader', `
cat > "$OUT/stdin.txt"
cp "$AUTOAGENT_TASK_FILE" "$OUT/task.md"
echo 'X = 9.0' >> params.py
`);
  const { ctx } = context(dir, head);
  await new CommandProposer(settings(cli.command)).propose(ctx);
  const stdin = readFileSync(join(cli.out, 'stdin.txt'), 'utf8');
  assert.equal(readFileSync(join(cli.out, 'task.md'), 'utf8'), stdin, 'the task file holds the same text');
  assert.match(stdin, /PROGRAM-MARKER/);
  assert.match(stdin, /DIGEST-MARKER/);
  assert.match(stdin, /\[budget 3000 tokens\]/, 'the digest is asked for context_tokens');
  assert.match(stdin, /loss \(minimize: lower is better\)/);
  assert.match(stdin, /editable.*params\.py, extra\/\*\.py/);
  assert.match(stdin, /locked.*evaluate\.py/);
  assert.match(stdin, /ROUND-MARKER/);
  // recent experiments in full, older ones on one line
  assert.match(stdin, /### #10 — kept \(proposer: llm\)/);
  assert.match(stdin, /reason: reason-line-10/);
  assert.match(stdin, /improvement over the best.*1\.25/);
  assert.match(stdin, /- #1 discarded loss=7 \(llm\): try X = 1\.5 \(ledger-entry-1\)/);
  assert.doesNotMatch(stdin, /reason-line-1\n/, 'old entries are one line');
  assert.match(stdin, /HYPOTHESIS:/);
  assert.match(stdin, /CITED:/);
  assert.match(stdin, /Do not commit/);
  assert.match(stdin, new RegExp(`${TASK_FILE}.*deleted`));
});

test('a change to a locked file is returned, so the loop rejects the proposal', async () => {
  const { dir, head } = repo();
  const cli = fakeCli('cheat', `
echo "print('METRIC loss=0')" >> evaluate.py
sed -i 's/^N = 2/N = 5/' params.py
echo "HYPOTHESIS: N 2 -> 5"
`);
  const { ctx, spans } = context(dir, head);
  const p = await new CommandProposer(settings(cli.command)).propose(ctx);
  const paths = p.edits.map((e) => e.path).sort();
  assert.deepEqual(paths, ['evaluate.py', 'params.py']);
  assert.match(p.edits.find((e) => e.path === 'evaluate.py')!.content, /METRIC loss=0/);
  assert.deepEqual((spans[0]!.output as { dropped: unknown[] }).dropped, [], 'a locked change is not silently dropped');
  assertWorktreeGone(dir, cli.out);
});

test('deleting a locked file is returned as an edit too (so the loop rejects it)', async () => {
  const { dir, head } = repo();
  const cli = fakeCli('deleter', `rm evaluate.py\necho 'X = 2.0' >> params.py`);
  const { ctx } = context(dir, head);
  const p = await new CommandProposer(settings(cli.command)).propose(ctx);
  assert.deepEqual(p.edits.find((e) => e.path === 'evaluate.py'), { path: 'evaluate.py', content: '' });
  assert.deepEqual((p.meta as { deleted_locked: string[] }).deleted_locked, ['evaluate.py']);
});

test('a command that changes nothing fails the proposal', async () => {
  const { dir, head } = repo();
  const cli = fakeCli('idle', `cat "$AUTOAGENT_TASK_FILE" > /dev/null\necho "HYPOTHESIS: nothing to do"`);
  const { ctx, spans } = context(dir, head);
  await assert.rejects(new CommandProposer(settings(cli.command)).propose(ctx), (e: Error) => e instanceof ProposalFailed && /changed no editable file/.test(e.message));
  assert.equal(spans.length, 1);
  assert.equal(spans[0]!.status, 'error');
  assert.match(String(spans[0]!.error), /changed no editable file/);
  assertWorktreeGone(dir, cli.out);
});

test('a change only to non-editable files fails the proposal and says what was dropped', async () => {
  const { dir, head } = repo();
  const cli = fakeCli('elsewhere', `echo more >> notes.txt`);
  const { ctx } = context(dir, head);
  await assert.rejects(new CommandProposer(settings(cli.command)).propose(ctx), (e: Error) => e instanceof ProposalFailed && /changed no editable file.*notes\.txt/.test(e.message));
});

test('changes to non-editable, non-locked files are dropped and listed in the span', async () => {
  const { dir, head } = repo();
  const cli = fakeCli('sprawl', `
echo "scribble" >> notes.txt
echo "new" > README.md
sed -i 's/^X = 1.0/X = 3.0/' params.py
echo "HYPOTHESIS: X = 3"
`);
  const { ctx, spans } = context(dir, head);
  const p = await new CommandProposer(settings(cli.command)).propose(ctx);
  assert.deepEqual(p.edits.map((e) => e.path), ['params.py']);
  const dropped = (spans[0]!.output as { dropped: Array<{ path: string; status: string; reason: string }> }).dropped;
  assert.deepEqual(dropped.map((d) => [d.path, d.status]).sort(), [['README.md', 'A'], ['notes.txt', 'M']]);
  assert.ok(dropped.every((d) => d.reason === 'not editable'));
  assert.deepEqual((p.meta as { dropped: string[] }).dropped.sort(), ['README.md', 'notes.txt']);
});

test('a change the command committed itself is still found; the committed task file is not an edit', async () => {
  const { dir, head } = repo();
  const cli = fakeCli('committer', `
sed -i 's/^N = 2/N = 4/' params.py
git add -A
git -c user.name=bot -c user.email=bot@x -c commit.gpgsign=false commit -q -m "tune N" || exit 9
echo "HYPOTHESIS: N 2 -> 4"
`);
  const { ctx } = context(dir, head);
  const p = await new CommandProposer(settings(cli.command)).propose(ctx);
  assert.deepEqual(p.edits, [{ path: 'params.py', content: PARAMS_PY.replace('N = 2', 'N = 4') }]);
  assert.equal(sh(dir, 'git', ['rev-parse', 'main']).trim(), head, 'the user branch did not move');
  assertWorktreeGone(dir, cli.out);
});

test('a new file matching an editable glob is an edit; git-ignored files are not', async () => {
  const { dir, head } = repo();
  const cli = fakeCli('creator', `
mkdir -p extra
printf 'def helper():\\n    return 42\\n' > extra/helper.py
echo "debug output" > run.log
echo "HYPOTHESIS: add a helper module"
`);
  const { ctx, spans } = context(dir, head);
  const p = await new CommandProposer(settings(cli.command)).propose(ctx);
  assert.deepEqual(p.edits, [{ path: 'extra/helper.py', content: 'def helper():\n    return 42\n' }]);
  assert.deepEqual((spans[0]!.output as { dropped: unknown[] }).dropped, []);
});

test('without a HYPOTHESIS line the hypothesis names the command and the files, and meta says so', async () => {
  const { dir, head } = repo();
  const cli = fakeCli('quiet-agent', `sed -i 's/^X = 1.0/X = 1.5/' params.py\necho "done."`);
  const { ctx } = context(dir, head);
  const p = await new CommandProposer(settings(cli.command)).propose(ctx);
  assert.equal(p.hypothesis, 'quiet-agent: edits params.py');
  assert.equal((p.meta as { no_hypothesis?: boolean }).no_hypothesis, true);
  assert.equal(p.cited, undefined);
  assert.equal(commandName('ANTHROPIC_MODEL=x /usr/local/bin/claude -p "improve it"'), 'claude');
});

test('deleting an editable file fails the proposal, naming the file', async () => {
  const { dir, head } = repo();
  const cli = fakeCli('remover', `rm extra/keep.py\nsed -i 's/^X = 1.0/X = 2.0/' params.py\necho "HYPOTHESIS: drop keep.py"`);
  const { ctx } = context(dir, head);
  await assert.rejects(new CommandProposer(settings(cli.command)).propose(ctx), (e: Error) => e instanceof ProposalFailed && /deleting files is not supported: extra\/keep\.py/.test(e.message));
  assertWorktreeGone(dir, cli.out);
});

test('a binary editable file fails the proposal, naming the file', async () => {
  const { dir, head } = repo();
  const cli = fakeCli('binary', `printf 'X = \\377\\000\\001\\n' > params.py`);
  const { ctx } = context(dir, head);
  await assert.rejects(new CommandProposer(settings(cli.command)).propose(ctx), (e: Error) => e instanceof ProposalFailed && /binary or non-UTF-8 file: params\.py/.test(e.message));
});

test('past the timeout the whole process group is killed, the proposal fails and the worktree is removed', async () => {
  const { dir, head } = repo();
  const cli = fakeCli('sleeper', `
sleep 300 &
echo $! > "$OUT/child.pid"
sed -i 's/^X = 1.0/X = 2.0/' params.py
sleep 300
`);
  const { ctx, spans } = context(dir, head);
  const t0 = Date.now();
  await assert.rejects(new CommandProposer(settings(cli.command, { timeout_seconds: 1 })).propose(ctx), (e: Error) => e instanceof ProposalFailed && /timed out after 1s/.test(e.message));
  assert.ok(Date.now() - t0 < 10_000, 'it did not wait for the sleeps');
  const child = Number(readFileSync(join(cli.out, 'child.pid'), 'utf8'));
  assert.ok(child > 0);
  assert.ok(processGone(child), `the background child ${child} is dead`);
  assert.equal(spans[0]!.status, 'timeout');
  assertWorktreeGone(dir, cli.out);
});

test('a command that ignores SIGTERM is SIGKILLed after the grace', async () => {
  const { dir, head } = repo();
  const cli = fakeCli('stubborn', `
trap '' TERM
sleep 300 &
echo $! > "$OUT/child.pid"
wait
`);
  const { ctx } = context(dir, head);
  const t0 = Date.now();
  await assert.rejects(new CommandProposer(settings(cli.command, { timeout_seconds: 1 })).propose(ctx), /timed out after 1s/);
  assert.ok(Date.now() - t0 < 10_000);
  assert.ok(processGone(Number(readFileSync(join(cli.out, 'child.pid'), 'utf8'))));
  assertWorktreeGone(dir, cli.out);
});

test('an abort of the run kills the command and fails the proposal', async () => {
  const { dir, head } = repo();
  const cli = fakeCli('aborted', `sleep 300 &\necho $! > "$OUT/child.pid"\nwait`);
  const ac = new AbortController();
  const { ctx } = context(dir, head, { signal: ac.signal });
  setTimeout(() => ac.abort(), 500);
  const t0 = Date.now();
  await assert.rejects(new CommandProposer(settings(cli.command)).propose(ctx), (e: Error) => e instanceof ProposalFailed && /interrupted/.test(e.message));
  assert.ok(Date.now() - t0 < 10_000);
  assert.ok(processGone(Number(readFileSync(join(cli.out, 'child.pid'), 'utf8'))));
  assertWorktreeGone(dir, cli.out);
});

test('a non-zero exit fails the proposal with the code and the last stderr line, even after edits', async () => {
  const { dir, head } = repo();
  const cli = fakeCli('crasher', `
sed -i 's/^X = 1.0/X = 2.0/' params.py
echo "HYPOTHESIS: X = 2"
echo "starting" >&2
echo "Error: model quota exceeded" >&2
exit 7
`);
  const { ctx, spans } = context(dir, head);
  await assert.rejects(
    new CommandProposer(settings(cli.command)).propose(ctx),
    (e: Error) => e instanceof ProposalFailed && /exited with status 7: Error: model quota exceeded/.test(e.message),
  );
  const out = spans[0]!.output as { exit_code: number; stderr_tail: string; changed: Array<{ path: string }> };
  assert.equal(out.exit_code, 7);
  assert.match(out.stderr_tail, /quota exceeded/);
  assert.deepEqual(out.changed.map((c) => c.path), ['params.py'], 'the span still shows what it changed');
  assertWorktreeGone(dir, cli.out);
});

test('missing context fields are named', async () => {
  const { dir, head } = repo();
  const { ctx } = context(dir, head, { history: undefined, repo: undefined });
  await assert.rejects(new CommandProposer(settings('true')).propose(ctx), /ctx\.repo, ctx\.history/);
});

test('only the last 64 KB of the output is kept, and a HYPOTHESIS line before it is still found', async () => {
  const { dir, head } = repo();
  const cli = fakeCli('chatty', `
echo "HYPOTHESIS: early but only one"
i=0; while [ $i -lt 3000 ]; do echo "line $i padding padding padding padding padding padding"; i=$((i+1)); done
sed -i 's/^X = 1.0/X = 2.0/' params.py
`);
  const { ctx, spans } = context(dir, head);
  const p = await new CommandProposer(settings(cli.command)).propose(ctx);
  assert.equal(p.hypothesis, 'early but only one');
  const tail = (spans[0]!.output as { stdout_tail: string }).stdout_tail;
  assert.ok(tail.length <= 64 * 1024 && tail.length > 60 * 1024, `tail length ${tail.length}`);
  assert.match(tail, /line 2999 padding/);
  assert.doesNotMatch(tail, /HYPOTHESIS/);
});

test('the task file is never an edit, even where *.md is editable and the command edits and commits it', async () => {
  const { dir, head } = repo();
  const cli = fakeCli('scribbler', `
echo "my notes" >> "$AUTOAGENT_TASK_FILE"
echo "# Plan" > PLAN.md
sed -i 's/^X = 1.0/X = 2.0/' params.py
git add -A && git -c user.name=bot -c user.email=bot@x -c commit.gpgsign=false commit -q -m wip || exit 9
echo "HYPOTHESIS: X = 2"
`);
  const { ctx } = context(dir, head, { editable: ['params.py', '*.md'] });
  const p = await new CommandProposer(settings(cli.command)).propose(ctx);
  assert.deepEqual(p.edits.map((e) => e.path).sort(), ['PLAN.md', 'params.py']);
});
