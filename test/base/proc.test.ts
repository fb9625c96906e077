// Tests for base/proc.ts, the process runner the sandbox and the command proposer share: real
// processes, real signals. A grandchild that ignores SIGTERM still dies with its group; output
// past the cap keeps its end; nothing is left running after a timeout, an abort, a normal exit or
// this process's own exit.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { runProcess, startProcess } from '../../base/proc.ts';

const ROOT = resolve(import.meta.dirname, '..', '..');

/** running (a zombie only waits for its reaper and counts as gone) */
function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return !['Z', 'X'].includes(stat[stat.lastIndexOf(')') + 2]!);
  } catch {
    return false;
  }
}

async function gone(pid: number, withinMs = 2000): Promise<boolean> {
  const until = Date.now() + withinMs;
  while (Date.now() < until) {
    if (!alive(pid)) return true;
    await new Promise((r) => setTimeout(r, 20));
  }
  return !alive(pid);
}

function readPid(file: string): number {
  return Number(readFileSync(file, 'utf8').trim());
}

async function waitFile(file: string, withinMs = 5000): Promise<void> {
  const until = Date.now() + withinMs;
  while (!existsSync(file) || readFileSync(file, 'utf8').trim() === '') {
    if (Date.now() > until) throw new Error(`${file} never written`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

const sh = (script: string) => ({ file: '/bin/sh', args: ['-c', script], cwd: tmpdir() });

test('deadline: SIGTERM to the group first, then SIGKILL reaches a grandchild that ignores SIGTERM', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'proc-'));
  try {
    const log = join(dir, 'log');
    const pidFile = join(dir, 'grandchild');
    // the leader notes SIGTERM and keeps waiting; the grandchild ignores SIGTERM outright
    const script = `trap 'echo term >> ${log}' TERM; (trap '' TERM; exec sleep 60) & echo $! > ${pidFile}; wait; wait; wait`;
    const started = Date.now();
    const r = await runProcess({ ...sh(script), timeoutMs: 400, graceMs: 500 });
    const took = Date.now() - started;
    const grandchild = readPid(pidFile);
    assert.equal(r.timedOut, true);
    assert.equal(r.aborted, false);
    assert.equal(r.signal, 'SIGKILL', 'the leader outlived SIGTERM and was killed');
    assert.equal(readFileSync(log, 'utf8').trim(), 'term', 'SIGTERM came first, once');
    assert.ok(took >= 850 && took < 5000, `deadline + grace, then done: ${took} ms`);
    assert.ok(await gone(grandchild), `grandchild ${grandchild} is dead`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('without a grace the group gets SIGKILL at once (no SIGTERM seen)', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'proc-'));
  try {
    const log = join(dir, 'log');
    const pidFile = join(dir, 'grandchild');
    const r = await runProcess({ ...sh(`trap 'echo term >> ${log}' TERM; sleep 60 & echo $! > ${pidFile}; wait; wait`), timeoutMs: 300 });
    assert.equal(r.timedOut, true);
    assert.equal(r.signal, 'SIGKILL');
    assert.equal(existsSync(log), false, 'no SIGTERM');
    assert.ok(await gone(readPid(pidFile)));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('output past the cap: each stream keeps its last bytes, whole characters only, and says it dropped some', async () => {
  // 2 MB of two-byte characters on stdout, then a marker; stderr small
  const script = `s='é'; for k in 1 2 3 4 5 6 7 8 9; do s="$s$s"; done; i=0; while [ $i -lt 2000 ]; do printf '%s' "$s"; i=$((i+1)); done; echo; echo END-MARKER; echo small >&2`;
  const r = await runProcess({ ...sh(script), timeoutMs: 30_000, tailBytes: 1001 });
  assert.equal(r.exitCode, 0);
  assert.equal(r.truncated, true);
  assert.ok(Buffer.byteLength(r.stdout) <= 1001, `${Buffer.byteLength(r.stdout)} bytes kept`);
  assert.ok(Buffer.byteLength(r.stdout) >= 990, 'the tail is kept, not dropped');
  assert.ok(r.stdout.endsWith('\nEND-MARKER\n'), 'the end is kept');
  assert.ok(!r.stdout.includes('\uFFFD'), 'never starts inside a character');
  assert.equal(r.stderr, 'small\n');
});

test('onOutput sees all of the output as text, not only the tail', async () => {
  let seen = '';
  const r = await runProcess({ ...sh('seq 1 20000'), timeoutMs: 30_000, tailBytes: 100, onOutput: (s, t) => { if (s === 'stdout') seen += t; } });
  assert.equal(r.exitCode, 0);
  assert.equal(seen.split('\n').filter(Boolean).length, 20000);
  assert.ok(r.stdout.endsWith('19999\n20000\n'));
});

test('abort stops the group like the deadline, and says aborted, not timed out', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'proc-'));
  try {
    const pidFile = join(dir, 'grandchild');
    const ac = new AbortController();
    const p = startProcess({ ...sh(`(trap '' TERM; exec sleep 60) & echo $! > ${pidFile}; wait`), timeoutMs: 60_000, signal: ac.signal, graceMs: 200 });
    await waitFile(pidFile);
    ac.abort();
    const r = await p.result;
    assert.equal(r.aborted, true);
    assert.equal(r.timedOut, false);
    assert.ok(await gone(readPid(pidFile)));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('an abort that came before the start stops the run at once; a kill hook runs after its caller set up', async () => {
  const ac = new AbortController();
  ac.abort();
  let ready = false;
  let hookSawReady: boolean | null = null;
  const started = Date.now();
  const p = startProcess({
    ...sh('sleep 30'), timeoutMs: 60_000, signal: ac.signal,
    kill: (pid) => {
      hookSawReady = ready;
      process.kill(-pid, 'SIGKILL');
    },
  });
  ready = true;
  const r = await p.result;
  assert.equal(r.aborted, true);
  assert.equal(hookSawReady, true);
  assert.equal(r.signal, 'SIGKILL');
  assert.ok(Date.now() - started < 5000);
});

test('a leader that exits leaves nothing behind: its background jobs in the group are killed', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'proc-'));
  try {
    const pidFile = join(dir, 'bg');
    const started = Date.now();
    const r = await runProcess({ ...sh(`sleep 60 & echo $! > ${pidFile}; echo done`), timeoutMs: 60_000, graceMs: 300 });
    assert.equal(r.exitCode, 0);
    assert.equal(r.stdout, 'done\n');
    assert.ok(Date.now() - started < 5000, 'does not wait for the background job');
    assert.ok(await gone(readPid(pidFile)));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('stdin text reaches the command; a command that does not read it is no error', async () => {
  const r = await runProcess({ ...sh('cat'), stdin: 'hello\n', timeoutMs: 10_000 });
  assert.equal(r.stdout, 'hello\n');
  const big = await runProcess({ ...sh('exit 3'), stdin: 'x'.repeat(1 << 20), timeoutMs: 10_000 });
  assert.equal(big.exitCode, 3);
});

test('a program that does not exist ends with the spawn error, not a hang', async () => {
  const r = await runProcess({ file: '/nonexistent/program', args: [], cwd: tmpdir(), timeoutMs: 10_000 });
  assert.equal(r.error?.code, 'ENOENT');
  assert.equal(r.exitCode, null);
});

test('when this process exits, the groups it still runs are killed', () => {
  const dir = mkdtempSync(join(tmpdir(), 'proc-'));
  try {
    const pidFile = join(dir, 'grandchild');
    const script = join(dir, 'parent.ts');
    writeFileSync(script, `
import { existsSync, readFileSync } from 'node:fs';
import { startProcess } from ${JSON.stringify(join(ROOT, 'base/proc.ts'))};
startProcess({ file: '/bin/sh', args: ['-c', ${JSON.stringify(`(trap '' TERM; exec sleep 60) & echo $! > ${pidFile}; wait`)}], cwd: '/', timeoutMs: 60_000, graceMs: 5000 });
const until = Date.now() + 5000;
const t = setInterval(() => {
  if ((existsSync(${JSON.stringify(pidFile)}) && readFileSync(${JSON.stringify(pidFile)}, 'utf8').trim()) || Date.now() > until) { clearInterval(t); process.exit(0); }
}, 10);
`);
    const r = spawnSync(process.execPath, ['--import', 'tsx', script], { cwd: ROOT, encoding: 'utf8', timeout: 20_000 });
    assert.equal(r.status, 0, r.stderr);
    const pid = readPid(pidFile);
    // synchronous check, a little later: the exit hook's SIGKILL is immediate
    const until = Date.now() + 2000;
    while (alive(pid) && Date.now() < until) spawnSync('sleep', ['0.02']);
    assert.equal(alive(pid), false, `grandchild ${pid} outlived its parent`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
