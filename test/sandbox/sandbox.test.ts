// Tests for sandbox/: real bubblewrap runs (bwrap must be installed and able to create
// namespaces; the whole file is skipped with a message when it is not).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

import {
  SandboxSpecError,
  SandboxUnavailableError,
  buildBwrapArgs,
  killAllSandboxes,
  runSandboxed,
  sandboxAvailable,
  type SandboxSpec,
} from '../../sandbox/index.ts';

const PY = fs.existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';
const ENV = { PATH: '/usr/local/bin:/usr/bin:/bin', LANG: 'C.UTF-8' };
const avail = sandboxAvailable();
const skip = avail.ok ? false : `bwrap unusable here: ${avail.message}`;

const tmpDirs: string[] = [];
function tmp(base: string, prefix = 'sbtest-'): string {
  const d = fs.mkdtempSync(path.join(base, prefix));
  tmpDirs.push(d);
  return d;
}
after(() => {
  killAllSandboxes();
  for (const d of tmpDirs) fs.rmSync(d, { recursive: true, force: true });
});

function spec(over: Partial<SandboxSpec> & { command: string }): SandboxSpec {
  return { cwd: '/', writable: [], env: { ...ENV }, timeoutMs: 20_000, ...over };
}

/** Host pids of processes whose command line contains `marker`. */
function pidsWithMarker(marker: string): number[] {
  const out: number[] = [];
  for (const e of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(e) || Number(e) === process.pid) continue;
    try {
      const cmd = fs.readFileSync(`/proc/${e}/cmdline`, 'utf8').replace(/\0/g, ' ');
      if (cmd.includes(marker)) out.push(Number(e));
    } catch {
      /* exited meanwhile */
    }
  }
  return out;
}

/** Asserts the pid no longer exists (ESRCH). Polls briefly: an orphan killed in unsafe mode is a
 *  zombie until the host's pid 1 reaps it (this VM's init does so only every second or so). */
async function assertGone(pid: number, withinMs = 5000): Promise<void> {
  const until = Date.now() + withinMs;
  for (;;) {
    try {
      process.kill(pid, 0);
    } catch (e) {
      assert.equal((e as NodeJS.ErrnoException).code, 'ESRCH');
      return;
    }
    if (Date.now() > until) assert.fail(`process ${pid} survived the sandbox`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

describe('sandbox availability', () => {
  test('missing bwrap: sandboxAvailable says how to install, runSandboxed rejects', async () => {
    const a = sandboxAvailable('/nonexistent/bwrap');
    assert.equal(a.ok, false);
    assert.ok(!a.ok && a.message.includes('apt-get install bubblewrap'), JSON.stringify(a));
    assert.ok(!a.ok && !a.message.includes('\n'), 'message is one line');
    await assert.rejects(
      runSandboxed(spec({ command: 'true', bwrapPath: '/nonexistent/bwrap' })),
      (e: unknown) => e instanceof SandboxUnavailableError && /apt-get install bubblewrap/.test((e as Error).message),
    );
  });

  test('a bwrap that cannot create namespaces is reported as unavailable', async () => {
    const dir = tmp(os.tmpdir());
    const fake = path.join(dir, 'bwrap');
    fs.writeFileSync(fake, '#!/bin/sh\necho "bwrap: No permissions to create new namespace" >&2\nexit 1\n', { mode: 0o755 });
    const a = sandboxAvailable(fake);
    assert.equal(a.ok, false);
    assert.ok(!a.ok && a.message.includes('No permissions to create new namespace'), JSON.stringify(a));
    assert.ok(!a.ok && a.message.includes('--unsafe-no-sandbox') && !a.message.includes('\n'));
    await assert.rejects(runSandboxed(spec({ command: 'true', bwrapPath: fake })), SandboxUnavailableError);
  });

  test('unsafeNoSandbox does not need bwrap', async () => {
    const r = await runSandboxed(spec({ command: 'echo hi', bwrapPath: '/nonexistent/bwrap', unsafeNoSandbox: true }));
    assert.equal(r.exitCode, 0);
    assert.equal(r.stdout, 'hi\n');
    assert.equal(r.sandboxed, false);
  });
});

describe('sandbox', { skip }, () => {
  let wt: string; // writable worktree under /tmp (sandbox /tmp is a fresh tmpfs; must still be bound)
  let outside: string; // exists on the host, readable, not writable in the sandbox
  before(() => {
    wt = tmp(os.tmpdir());
    outside = tmp('/var/tmp');
  });

  test('exit code, stdout, stderr, cwd', async () => {
    const r = await runSandboxed(spec({ command: 'echo out; echo err >&2; pwd; exit 3', cwd: wt, writable: [wt] }));
    assert.equal(r.exitCode, 3);
    assert.equal(r.signal, null);
    assert.equal(r.timedOut, false);
    assert.equal(r.stdout, `out\n${wt}\n`);
    assert.equal(r.stderr, 'err\n');
    assert.equal(r.truncated, false);
    assert.equal(r.sandboxed, true);
    assert.ok(r.durationMs >= 0 && r.durationMs < 10_000);
  });

  test('environment is exactly the one passed', async () => {
    process.env.SECRET_KEY = 'leak-me';
    try {
      for (const unsafeNoSandbox of [false, true]) {
        const r = await runSandboxed(spec({ command: 'env', env: { ...ENV, FOO: 'bar baz' }, unsafeNoSandbox }));
        assert.equal(r.exitCode, 0, r.stderr);
        const vars = new Map(
          r.stdout
            .trim()
            .split('\n')
            .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)] as const),
        );
        assert.equal(vars.get('FOO'), 'bar baz');
        assert.equal(vars.get('PATH'), ENV.PATH);
        assert.ok(!vars.has('SECRET_KEY'), 'parent env leaked');
        assert.ok(!vars.has('HOME'), 'HOME leaked');
        // only what we passed, plus what /bin/sh itself sets
        for (const k of vars.keys()) assert.ok(k in ENV || k === 'FOO' || ['PWD', 'SHLVL', '_', 'OLDPWD'].includes(k), `unexpected env ${k}`);
      }
    } finally {
      delete process.env.SECRET_KEY;
    }
  });

  test('stdin and streamed output', async () => {
    const chunks: string[] = [];
    const r = await runSandboxed(
      spec({ command: 'cat; echo done >&2', stdin: 'hello\nworld\n', onOutput: (s, c) => chunks.push(`${s}:${c}`) }),
    );
    assert.equal(r.exitCode, 0);
    assert.equal(r.stdout, 'hello\nworld\n');
    assert.equal(chunks.filter((c) => c.startsWith('stdout:')).map((c) => c.slice(7)).join(''), 'hello\nworld\n');
    assert.ok(chunks.includes('stderr:done\n'));
  });

  test('output tail truncation keeps the end', async () => {
    const r = await runSandboxed(
      spec({ command: 'i=0; while [ $i -lt 5000 ]; do echo "line $i"; i=$((i+1)); done; echo e >&2', maxOutputBytes: 100 }),
    );
    assert.equal(r.exitCode, 0);
    assert.equal(r.truncated, true);
    assert.ok(Buffer.byteLength(r.stdout) <= 100);
    assert.ok(r.stdout.endsWith('line 4998\nline 4999\n'), r.stdout);
    assert.ok(!r.stdout.includes('line 0\n'));
    assert.equal(r.stderr, 'e\n');
  });

  test('network is refused (and the probe works without the sandbox)', async () => {
    const server = net.createServer((s) => s.end());
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as net.AddressInfo).port;
    const command = `${PY} -c "import socket; socket.create_connection(('127.0.0.1', ${port}), timeout=2); print('connected')"`;
    try {
      const boxed = await runSandboxed(spec({ command }));
      assert.notEqual(boxed.exitCode, 0, 'connected to the host from inside the sandbox');
      assert.ok(!boxed.stdout.includes('connected'));
      const plain = await runSandboxed(spec({ command, unsafeNoSandbox: true }));
      assert.equal(plain.exitCode, 0, plain.stderr);
      assert.equal(plain.stdout, 'connected\n');
      const shared = await runSandboxed(spec({ command, network: true }));
      assert.equal(shared.exitCode, 0, `network: true should share the network: ${shared.stderr}`);
    } finally {
      server.close();
    }
  });

  test('writes outside the writable dirs are refused; inside they reach the host; the rest of the host is not there', async () => {
    fs.writeFileSync(path.join(outside, 'existing'), 'host');
    const r = await runSandboxed(
      spec({
        cwd: wt,
        writable: [wt],
        command: [
          `echo ok > ${wt}/made-inside && echo inside-ok`,
          `echo x > ${outside}/new && echo OUTSIDE-WROTE`,
          `echo x >> ${outside}/existing && echo OUTSIDE-APPENDED`,
          `rm ${outside}/existing && echo OUTSIDE-RM`,
          `ls ${outside} >/dev/null && echo OUTSIDE-READABLE`,
          `echo x > /root/.sbtest-home && echo HOME-WROTE`,
          `echo x > /etc/sbtest && echo ETC-WROTE`,
          `echo x > /tmp/scratch && echo tmp-ok`,
          'exit 0',
        ].join('; '),
      }),
    );
    assert.equal(r.exitCode, 0);
    for (const bad of ['OUTSIDE-WROTE', 'OUTSIDE-APPENDED', 'OUTSIDE-RM', 'OUTSIDE-READABLE', 'HOME-WROTE', 'ETC-WROTE']) assert.ok(!r.stdout.includes(bad), bad);
    assert.match(r.stdout, /inside-ok/);
    assert.match(r.stdout, /tmp-ok/);
    assert.equal(fs.readFileSync(path.join(wt, 'made-inside'), 'utf8'), 'ok\n');
    assert.ok(!fs.existsSync(path.join(outside, 'new')));
    assert.equal(fs.readFileSync(path.join(outside, 'existing'), 'utf8'), 'host');
    assert.ok(!fs.existsSync('/root/.sbtest-home'));
    assert.ok(!fs.existsSync('/etc/sbtest'));
    assert.ok(!fs.existsSync('/tmp/scratch'), 'sandbox /tmp must be private');
  });

  test('host /tmp is not visible, except bound paths', async () => {
    const marker = path.join(os.tmpdir(), `sbtest-host-${process.pid}`);
    fs.writeFileSync(marker, 'x');
    try {
      const r = await runSandboxed(spec({ command: `test -e ${marker} && echo VISIBLE; ls /tmp`, writable: [wt] }));
      assert.ok(!r.stdout.includes('VISIBLE'));
    } finally {
      fs.rmSync(marker);
    }
  });

  test('/run and /var (sockets of host daemons: docker, dbus, ...) are not there', async () => {
    const r = await runSandboxed(spec({ command: 'for d in /run /var/run /var; do test -e $d && echo "$d EXISTS"; done; echo done' }));
    assert.equal(r.exitCode, 0, r.stderr);
    assert.equal(r.stdout, 'done\n');
  });

  test('a readonly file inside a writable dir cannot be modified, deleted, replaced or moved away', async () => {
    const root = tmp(os.tmpdir());
    fs.mkdirSync(path.join(root, 'locked/sub'), { recursive: true });
    const locked = path.join(root, 'locked/sub/score.py');
    fs.writeFileSync(locked, 'ORIGINAL\n');
    const lockedTop = path.join(root, 'eval.py');
    fs.writeFileSync(lockedTop, 'TOP\n');
    const r = await runSandboxed(
      spec({
        cwd: root,
        writable: [root],
        readonly: [locked, lockedTop],
        command: [
          'echo HACK > locked/sub/score.py && echo WROTE',
          'echo HACK >> locked/sub/score.py && echo APPENDED',
          'rm -f locked/sub/score.py && echo DELETED',
          'echo FAKE > fake; mv -f fake locked/sub/score.py && echo RENAMED-OVER',
          'mv locked/sub/score.py moved && echo MOVED',
          'mv locked/sub locked/sub2 && echo MOVED-DIR',
          'mv locked locked2 && echo MOVED-PARENT',
          'chmod 777 locked/sub/score.py && echo CHMOD',
          'rm -f eval.py && echo DELETED-TOP',
          'echo HACK > eval.py && echo WROTE-TOP',
          'umount eval.py && echo UNMOUNTED',
          'echo fine > locked/other && echo other-ok',
          'cat locked/sub/score.py',
          'exit 0',
        ].join('; '),
      }),
    );
    for (const bad of ['WROTE', 'APPENDED', 'DELETED', 'RENAMED-OVER', 'MOVED', 'MOVED-DIR', 'MOVED-PARENT', 'CHMOD', 'WROTE-TOP', 'UNMOUNTED'])
      assert.ok(!r.stdout.split('\n').includes(bad), `${bad}\n${r.stdout}\n${r.stderr}`);
    assert.match(r.stdout, /other-ok/);
    assert.match(r.stdout, /ORIGINAL/);
    assert.equal(fs.readFileSync(locked, 'utf8'), 'ORIGINAL\n');
    assert.equal(fs.readFileSync(lockedTop, 'utf8'), 'TOP\n');
    // `mv` of the locked file may fall back to copy+unlink across mounts: the copy is harmless
    assert.deepEqual(fs.readdirSync(root).filter((e) => e !== 'moved').sort(), ['eval.py', 'fake', 'locked']);
    assert.deepEqual(fs.readdirSync(path.join(root, 'locked/sub')), ['score.py']);
    assert.equal(fs.readFileSync(path.join(root, 'locked/other'), 'utf8'), 'fine\n');
  });

  test('a readonly path that does not exist is a clear one-line error', async () => {
    const missing = path.join(wt, 'no-such-file');
    await assert.rejects(runSandboxed(spec({ command: 'true', writable: [wt], readonly: [missing] })), (e: unknown) => {
      assert.ok(e instanceof SandboxSpecError);
      assert.ok((e as Error).message.includes(missing));
      assert.ok(!(e as Error).message.includes('\n'));
      return true;
    });
  });

  test('hidden paths are invisible; bound children re-exposed; hides inside a writable dir hold', async () => {
    const secretDir = tmp('/var/tmp');
    fs.writeFileSync(path.join(secretDir, 'answers.txt'), 'SECRET-ANSWERS');
    fs.mkdirSync(path.join(secretDir, 'public'));
    fs.writeFileSync(path.join(secretDir, 'public/data.txt'), 'PUBLIC-DATA');
    const secretFile = path.join(outside, 'key.txt');
    fs.writeFileSync(secretFile, 'SECRET-KEY');
    const root = tmp(os.tmpdir());
    fs.mkdirSync(path.join(root, 'a/answers'), { recursive: true });
    fs.writeFileSync(path.join(root, 'a/answers/key'), 'SECRET-NESTED');
    const r = await runSandboxed(
      spec({
        cwd: root,
        writable: [root],
        hide: [secretDir, secretFile, path.join(root, 'a/answers')],
        readonly: [path.join(secretDir, 'public')],
        command: [
          `cat ${secretDir}/answers.txt`,
          `echo rc=$?`,
          `cat ${secretDir}/public/data.txt`,
          `echo; cat ${secretFile}`,
          `cat ${root}/a/answers/key`,
          `mv ${root}/a ${root}/b && echo MOVED-PARENT`,
          `echo x > ${secretDir}/planted && echo PLANTED`,
          'exit 0',
        ].join('; '),
      }),
    );
    assert.ok(!r.stdout.includes('SECRET'), r.stdout);
    assert.match(r.stdout, /rc=[1-9]/);
    assert.match(r.stdout, /PUBLIC-DATA/);
    assert.ok(!r.stdout.includes('MOVED-PARENT'));
    assert.ok(!r.stdout.includes('PLANTED'));
    assert.equal(fs.readFileSync(path.join(root, 'a/answers/key'), 'utf8'), 'SECRET-NESTED');
  });

  test('extra binds with a different destination', async () => {
    const src = tmp('/var/tmp');
    fs.writeFileSync(path.join(src, 'in.txt'), 'BOUND');
    const dest = path.join(wt, 'mnt');
    const r = await runSandboxed(
      spec({
        writable: [wt],
        binds: [{ src, dest, readonly: true }],
        command: `cat ${dest}/in.txt; echo x > ${dest}/w && echo WROTE`,
      }),
    );
    assert.match(r.stdout, /^BOUND/);
    assert.ok(!r.stdout.includes('WROTE'));
    assert.ok(!fs.existsSync(path.join(src, 'w')));
  });

  test('devices are only the minimal set unless exposed', { skip: !fs.existsSync('/dev/loop-control') && 'no /dev/loop-control' }, async () => {
    const command = 'test -e /dev/loop-control && echo PRESENT; ls /dev | tr "\\n" " "';
    const plain = await runSandboxed(spec({ command }));
    assert.ok(!plain.stdout.includes('PRESENT'), plain.stdout);
    const exposed = await runSandboxed(spec({ command, devices: ['/dev/loop-control'] }));
    assert.match(exposed.stdout, /PRESENT/);
  });

  test('deadline: sleep 100 is killed at timeoutMs', async () => {
    const r = await runSandboxed(spec({ command: 'echo started; sleep 100', timeoutMs: 1000 }));
    assert.equal(r.timedOut, true);
    assert.ok(r.durationMs >= 900 && r.durationMs < 5000, `durationMs ${r.durationMs}`);
    assert.equal(r.stdout, 'started\n');
    assert.equal(r.exitCode, null);
    assert.equal(r.signal, 'SIGKILL');
  });

  test('deadline: no process of the sandbox survives, background grandchildren included', async () => {
    const marker = `100.${process.pid}${Date.now() % 100000}`; // unique `sleep` argument
    const seen: number[] = [];
    const probe = setTimeout(() => seen.push(...pidsWithMarker(marker)), 1200);
    const r = await runSandboxed(
      spec({
        cwd: wt,
        writable: [wt],
        timeoutMs: 2000,
        command: `(sh -c 'echo $$ > ${wt}/gc.pid; exec sleep ${marker}' &) ; (setsid sleep ${marker} &) ; sleep ${marker}`,
      }),
    );
    clearTimeout(probe);
    assert.equal(r.timedOut, true);
    assert.ok(fs.existsSync(path.join(wt, 'gc.pid')));
    assert.ok(seen.length >= 3, `expected to see the sandbox's sleeps on the host, saw ${seen.length}`);
    for (const pid of seen) await assertGone(pid, 200); // bwrap reaps its namespace itself
    assert.deepEqual(pidsWithMarker(marker), []);
  });

  test('unsafeNoSandbox enforces the deadline and kills the process group', async () => {
    const dir = tmp(os.tmpdir());
    const marker = `100.${process.pid}${(Date.now() + 7) % 100000}`;
    const r = await runSandboxed(
      spec({
        unsafeNoSandbox: true,
        cwd: dir,
        writable: [dir],
        timeoutMs: 1500,
        command: `(sh -c 'echo $$ > ${dir}/gc.pid; exec sleep ${marker}' &) ; sleep ${marker}`,
      }),
    );
    assert.equal(r.timedOut, true);
    assert.equal(r.sandboxed, false);
    assert.ok(r.durationMs < 5000);
    const pid = Number(fs.readFileSync(path.join(dir, 'gc.pid'), 'utf8'));
    assert.ok(pid > 1);
    await assertGone(pid);
    assert.deepEqual(pidsWithMarker(marker), []);
  });

  test('SIGINT to the parent kills running sandboxes (bwrap and unsafe) and still exits the parent', async () => {
    const marker = `100.${process.pid}${(Date.now() + 29) % 100000}`;
    const dir = tmp(os.tmpdir());
    const script = path.join(dir, 'parent.mts');
    const mod = new URL('../../sandbox/index.ts', import.meta.url).pathname;
    fs.writeFileSync(
      script,
      [
        `import { runSandboxed } from ${JSON.stringify(mod)};`,
        `const base = { cwd: '/', writable: [], env: { PATH: '/usr/bin:/bin' }, timeoutMs: 60000, command: '(sleep ${marker} &); sleep ${marker}' };`,
        'setTimeout(() => console.log("ready"), 500);',
        'await Promise.all([runSandboxed(base), runSandboxed({ ...base, unsafeNoSandbox: true })]);',
        'console.log("NOT KILLED");',
      ].join('\n'),
    );
    const { spawn } = await import('node:child_process');
    const child = spawn(process.execPath, ['--import', 'tsx', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    await new Promise<void>((resolve) =>
      child.stdout.on('data', (b: Buffer) => {
        out += b.toString();
        if (out.includes('ready')) resolve();
      }),
    );
    // the first sandbox of a process probes the interpreters first: wait for the sleeps to exist
    let seen = pidsWithMarker(marker);
    for (const until = Date.now() + 15_000; seen.length < 4 && Date.now() < until; seen = pidsWithMarker(marker)) {
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.ok(seen.length >= 4, `saw ${seen.length} sleeps`);
    child.kill('SIGINT');
    const [code, signal] = await new Promise<[number | null, string | null]>((r) => child.on('exit', (c, s) => r([c, s])));
    assert.ok(signal === 'SIGINT' || code === 130, `parent should die of SIGINT: ${code} ${signal}`);
    assert.ok(!out.includes('NOT KILLED'));
    for (const pid of seen) await assertGone(pid);
  });

  test('bounded fork bomb is contained by maxProcesses and killed at the deadline', async (t) => {
    const marker = `60.${process.pid}${(Date.now() + 13) % 100000}`;
    const script = [
      'import subprocess, time',
      'ok = fail = 0',
      'for i in range(2000):',
      '    try:',
      `        subprocess.Popen(['sleep', '${marker}']); ok += 1`,
      '    except OSError:',
      '        fail += 1',
      'print(ok, fail, flush=True)',
      'time.sleep(60)',
    ].join('\n');
    const r = await runSandboxed(spec({ command: `${PY} -c "${script}"`, maxProcesses: 64, timeoutMs: 10_000 }));
    assert.equal(r.timedOut, true, `not killed at the deadline: ${r.stderr.slice(-500)}`);
    if (r.processLimit === 'none') {
      // real root without a writable pids cgroup: nothing can enforce the limit; say so loudly
      t.skip('maxProcesses cannot be enforced here (root, no writable pids cgroup)');
      return;
    }
    const m = /^(\d+) (\d+)$/m.exec(r.stdout);
    assert.ok(m, `no count printed: ${r.stdout} ${r.stderr.slice(-500)}`);
    const [ok, fail] = [Number(m[1]), Number(m[2])];
    assert.ok(ok <= 64, `${ok} spawns succeeded with maxProcesses 64 (limit: ${r.processLimit})`);
    assert.ok(fail >= 1900, `only ${fail} spawns failed`);
    // RLIMIT_NPROC never binds real root, so as root the limit must have come from the cgroup
    if (process.getuid?.() === 0) assert.equal(r.processLimit, 'cgroup-pids');
    await new Promise((res) => setTimeout(res, 100));
    assert.deepEqual(pidsWithMarker(marker), []);
  });

  test('memory limit: allocating 2 GB with memoryMB 256 fails', async () => {
    const r = await runSandboxed(
      spec({ command: `${PY} -c "b = bytearray(2 * 1024**3); print('ALLOCATED')"`, memoryMB: 256 }),
    );
    assert.notEqual(r.exitCode, 0);
    assert.ok(!r.stdout.includes('ALLOCATED'));
    assert.match(r.stderr, /MemoryError/);
    assert.equal(r.memoryLimit, 'rlimit-as');
    // and a small allocation under the same limit works
    const ok = await runSandboxed(spec({ command: `${PY} -c "b = bytearray(50 * 1024**2); print('ok')"`, memoryMB: 256 }));
    assert.equal(ok.exitCode, 0, ok.stderr);
  });

  test('bwrap argv: a minimal read-only system view, fresh /tmp before binds, namespaces, caps dropped', () => {
    fs.mkdirSync(path.join(wt, 'locked'), { recursive: true });
    const argv = buildBwrapArgs(
      spec({ command: 'make test', cwd: wt, writable: [wt], readonly: [path.join(wt, 'locked')] }),
      ['/bin/sh', '-c', 'make test'],
    );
    const s = argv.join(' ');
    assert.ok(!s.includes('--ro-bind / /'), 'the whole host filesystem is not bound');
    assert.ok(s.startsWith('--ro-bind /usr /usr'), s.slice(0, 80));
    for (const f of ['--dev /dev', '--tmpfs /dev/shm --remount-ro /dev', '--proc /proc', '--tmpfs /tmp', '--remount-ro /']) assert.ok(s.includes(f), f);
    assert.ok(s.indexOf('--remount-ro / ') > s.lastIndexOf('--bind '), 'the root is made read-only after every mount');
    for (const f of ['--unshare-all', '--die-with-parent', '--new-session', '--cap-drop ALL', `--chdir ${wt}`])
      assert.ok(s.includes(f), f);
    assert.ok(!s.includes('--share-net'));
    assert.ok(s.indexOf('--tmpfs /tmp') < s.indexOf(`--bind ${wt} ${wt}`));
    assert.ok(s.indexOf(`--bind ${wt} ${wt}`) < s.indexOf(`--ro-bind ${wt}/locked`));
    assert.deepEqual(argv.slice(-4), ['--', '/bin/sh', '-c', 'make test']);
  });
});

describe('interactive workers', { skip }, () => {
  test('a signal already aborted ends the run at once, in both modes', async () => {
    for (const unsafeNoSandbox of [false, true]) {
      const controller = new AbortController();
      controller.abort();
      const started = Date.now();
      const r = await runSandboxed(spec({ command: 'sleep 30', timeoutMs: 60_000, signal: controller.signal, unsafeNoSandbox }));
      assert.equal(r.timedOut, false);
      assert.notEqual(r.exitCode, 0);
      assert.ok(Date.now() - started < 10_000, `killed at once (unsafe ${unsafeNoSandbox}): ${Date.now() - started} ms`);
    }
  });
  test('a long-lived process answers lines written to its stdin, and an abort kills it at once', async () => {
    const controller = new AbortController();
    const lines: string[] = [];
    let stdin: import('node:stream').Writable | undefined;
    const started = Date.now();
    const result = runSandboxed(spec({
      command: `${PY} -u -c "import sys\nfor line in sys.stdin:\n    print('echo ' + line.strip(), flush=True)"`,
      timeoutMs: 60_000,
      interactive: (s) => { stdin = s; },
      signal: controller.signal,
      onOutput: (stream, chunk) => { if (stream === 'stdout') lines.push(...chunk.split('\n').filter(Boolean)); },
    }));
    assert.ok(stdin, 'stdin handed over at start');
    stdin!.write('one\n');
    stdin!.write('two\n');
    const until = Date.now() + 10_000;
    while (lines.length < 2 && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
    assert.deepEqual(lines, ['echo one', 'echo two']);
    controller.abort();
    const r = await result;
    assert.equal(r.timedOut, false);
    assert.notEqual(r.exitCode, 0);
    assert.ok(Date.now() - started < 20_000, 'killed long before the deadline');
  });
});
