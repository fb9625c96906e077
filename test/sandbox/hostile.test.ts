// Attacks on the sandbox itself, with real processes: what a candidate can see of the machine (home
// folders, service sockets, /etc secrets), RAM through tmpfs, disk, and host-side reads of files a
// candidate wrote (FIFOs, symlinks). Each of these worked before issue 11.
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { runSandboxed, sandboxAvailable, sandboxPath, diskUsage, type SandboxSpec } from '../../sandbox/index.ts';
import { readCandidateFile } from '../../src/workspace.ts';
import { trainProgress } from '../../src/kinds/trainer.ts';
import { workerReadable } from '../../src/kinds/harness.ts';
import { slotLine } from '../../src/progress.ts';
import type { EvalProgress } from '../../src/kinds/types.ts';

const avail = sandboxAvailable();
const skip = avail.ok ? false : `bwrap unusable here: ${avail.message}`;
const cleanups: Array<() => void> = [];
after(() => cleanups.forEach((f) => f()));

function tmp(base = os.tmpdir()): string {
  const d = fs.mkdtempSync(path.join(base, 'sbhostile-'));
  cleanups.push(() => fs.rmSync(d, { recursive: true, force: true }));
  return d;
}
function spec(over: Partial<SandboxSpec> & { command: string }): SandboxSpec {
  return { cwd: '/', writable: [], env: { PATH: sandboxPath(), LANG: 'C.UTF-8' }, timeoutMs: 30_000, ...over };
}

describe('what a candidate sees of the machine', { skip }, () => {
  test('home folders, /var, /opt, /etc secrets and unix sockets of host services are not there', async () => {
    const secret = `SECRET-${process.pid}-${Date.now()}`;
    const home = os.homedir();
    const homeFile = path.join(home, `.autoagent-sbtest-${process.pid}`);
    fs.writeFileSync(homeFile, secret);
    cleanups.push(() => fs.rmSync(homeFile, { force: true }));
    const varDir = tmp('/var/tmp');
    fs.writeFileSync(path.join(varDir, 'token'), secret);
    const sock = path.join(varDir, 'svc.sock');
    const server = net.createServer((s) => s.end(`PONG ${secret}\n`));
    await new Promise<void>((r) => server.listen(sock, r));
    cleanups.push(() => server.close());
    // the socket answers on the host: the attack below is real
    const hostReply = await new Promise<string>((r) => {
      const c = net.createConnection(sock);
      let d = '';
      c.on('data', (b) => (d += b));
      c.on('close', () => r(d));
    });
    assert.match(hostReply, /PONG/);
    const probe = `
import os, socket, glob
out = []
for p in [${JSON.stringify(homeFile)}, ${JSON.stringify(path.join(varDir, 'token'))}, '/etc/shadow', '/etc/gshadow', '/etc/npmrc', '/etc/pip.conf', '/etc/ssh']:
    try:
        out.append(open(p).read())
    except Exception as e:
        out.append(p + ':' + type(e).__name__)
try:
    s = socket.socket(socket.AF_UNIX); s.connect(${JSON.stringify(sock)}); out.append(s.recv(100).decode())
except Exception as e:
    out.append('socket:' + type(e).__name__)
for d in ['/home', '/var', '/opt', '/srv', '/mnt', '/media', '/run', ${JSON.stringify(home)}]:
    out.append(d + ':' + str(os.path.isdir(d) and sorted(os.listdir(d))))
print(out)
`;
    const script = path.join(tmp(), 'probe.py');
    fs.writeFileSync(script, probe);
    const r = await runSandboxed(spec({ command: `python3 ${script}`, read: [script] }));
    assert.equal(r.exitCode, 0, r.stderr);
    assert.ok(!r.stdout.includes(secret), `a secret of the host reached the sandbox: ${r.stdout}`);
    assert.match(r.stdout, /socket:FileNotFoundError/);
    assert.match(r.stdout, /\/etc\/shadow:FileNotFoundError/);
    for (const d of ['/home', '/var', '/opt', '/srv', '/mnt', '/media', '/run']) assert.match(r.stdout, new RegExp(`'${d}:False'`));
  });

  test('the interpreters on the host PATH still work, and sandbox.read adds a folder read-only', async () => {
    const extra = tmp('/var/tmp');
    fs.writeFileSync(path.join(extra, 'data.txt'), 'shared data');
    const r = await runSandboxed(spec({
      command: `python3 -c "import json, sqlite3, ssl; print('py ok')" && node -e "console.log('node ok')" && cat ${extra}/data.txt && (echo x > ${extra}/w && echo WROTE || true)`,
      read: [extra],
    }));
    assert.equal(r.exitCode, 0, r.stderr);
    assert.match(r.stdout, /py ok\nnode ok\nshared data/);
    assert.ok(!r.stdout.includes('WROTE'));
    assert.ok(!fs.existsSync(path.join(extra, 'w')));
  });
});

describe('RAM through tmpfs, and disk', { skip }, () => {
  test('with memoryMB, /tmp and /dev/shm together stay within it; /dev and / are read-only', async () => {
    const r = await runSandboxed(spec({
      command: [
        'df -k /tmp /dev/shm | tail -n +2',
        'dd if=/dev/zero of=/tmp/fill bs=1M count=200 2>/dev/null; echo "tmp $(du -k /tmp/fill | cut -f1)"',
        'dd if=/dev/zero of=/dev/shm/fill bs=1M count=200 2>/dev/null; echo "shm $(du -k /dev/shm/fill | cut -f1)"',
        '(echo x > /dev/fill) 2>/dev/null && echo DEV-WROTE',
        '(echo x > /fill) 2>/dev/null && echo ROOT-WROTE',
        'true',
      ].join('; '),
      memoryMB: 64,
    }));
    assert.equal(r.exitCode, 0, r.stderr);
    const sizes = [...r.stdout.matchAll(/^tmpfs\s+(\d+)/gm)].map((m) => Number(m[1]));
    assert.equal(sizes.length, 2, r.stdout);
    assert.ok(sizes[0]! + sizes[1]! <= 64 * 1024, `tmpfs sizes ${sizes} KiB exceed 64 MiB`);
    const tmpKb = Number(/^tmp (\d+)/m.exec(r.stdout)![1]);
    const shmKb = Number(/^shm (\d+)/m.exec(r.stdout)![1]);
    assert.ok(tmpKb + shmKb <= 64 * 1024, `wrote ${tmpKb} + ${shmKb} KiB into RAM`);
    assert.ok(!r.stdout.includes('DEV-WROTE') && !r.stdout.includes('ROOT-WROTE'), r.stdout);
  });

  test('diskWatch: many files past the limit kill the run; one big file stops at the limit (RLIMIT_FSIZE)', async () => {
    const dir = tmp();
    const many = await runSandboxed(spec({
      command: `for i in $(seq 1 60); do dd if=/dev/zero of=${dir}/f$i bs=1M count=2 2>/dev/null; sleep 0.05; done; echo ALL-WRITTEN`,
      writable: [dir], diskWatch: { paths: [dir], maxBytes: 20 * 1024 * 1024 },
    }));
    assert.equal(many.diskExceeded, true);
    assert.ok(!many.stdout.includes('ALL-WRITTEN'));
    assert.ok(diskUsage([dir]) < 40 * 1024 * 1024, `left ${diskUsage([dir])} bytes`);
    for (const f of fs.readdirSync(dir)) fs.rmSync(path.join(dir, f));
    const big = await runSandboxed(spec({
      command: `dd if=/dev/zero of=${dir}/big bs=1M count=100 2>&1; echo done`,
      writable: [dir], diskWatch: { paths: [dir], maxBytes: 20 * 1024 * 1024 },
    }));
    assert.ok(fs.statSync(path.join(dir, 'big')).size <= 20 * 1024 * 1024, 'one file grew past the limit');
    assert.match(big.stdout, /File size limit exceeded|done/);
  });
});

describe('host-side reads of files a candidate wrote', () => {
  test('a FIFO is not read (no hang), a symlink is not followed, a symlinked folder is refused, a huge file is refused', () => {
    const root = tmp();
    const secret = path.join(tmp(), 'answers.txt');
    fs.writeFileSync(secret, 'THE ANSWERS');
    fs.mkdirSync(path.join(root, 'out'));
    execFileSync('mkfifo', [path.join(root, 'out', 'fifo.json')]);
    fs.symlinkSync(secret, path.join(root, 'out', 'link.json'));
    fs.symlinkSync(path.dirname(secret), path.join(root, 'dirlink'));
    fs.writeFileSync(path.join(root, 'out', 'big.json'), Buffer.alloc(3000));
    fs.writeFileSync(path.join(root, 'out', 'ok.json'), '{"a": 1}');
    const started = Date.now();
    assert.match((readCandidateFile(root, 'out/fifo.json', 1000) as { error: string }).error, /not a regular file/);
    assert.ok(Date.now() - started < 2000, 'reading a FIFO hung');
    assert.match((readCandidateFile(root, 'out/link.json', 1000) as { error: string }).error, /symbolic link/);
    assert.match((readCandidateFile(root, 'dirlink/answers.txt', 1000) as { error: string }).error, /not a folder/);
    assert.match((readCandidateFile(root, 'out/big.json', 1000) as { error: string }).error, /larger than 1000 bytes/);
    assert.deepEqual(readCandidateFile(root, 'out/ok.json', 1000), { text: '{"a": 1}' });
    assert.match((readCandidateFile(root, 'out/none.json', 1000) as { error: string }).error, /does not exist/);
  });
});

describe('new host-side paths of issues 13 and 15 (parallel slots, progress lines, linked installs)', { skip }, () => {
  test('a stop (abort) ends a candidate that ignores SIGTERM and leaves a detached child behind: nothing of it keeps running', async () => {
    const dir = tmp();
    const beat = path.join(dir, 'beat');
    const controller = new AbortController();
    // the candidate: ignores TERM and HUP, starts a setsid'd child that writes a heartbeat, then waits
    const result = runSandboxed(spec({
      command: `trap '' TERM HUP INT; setsid sh -c 'trap "" TERM HUP; while :; do date +%s%N > "${beat}"; sleep 0.05; done' & while :; do sleep 1; done`,
      cwd: dir, writable: [dir], timeoutMs: 60_000, signal: controller.signal,
    }));
    const until = Date.now() + 10_000;
    while (!fs.existsSync(beat) && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
    assert.ok(fs.existsSync(beat), 'the detached child ran');
    controller.abort();
    const r = await result;
    assert.notEqual(r.exitCode, 0);
    const last = fs.readFileSync(beat, 'utf8');
    await new Promise((r2) => setTimeout(r2, 600));
    assert.equal(fs.readFileSync(beat, 'utf8'), last, 'the detached child still writes after the stop');
  });

  test('a train.py printing escape codes and absurd numbers as progress: the host\'s status line carries numbers only', async () => {
    const seen: EvalProgress[] = [];
    const onOutput = trainProgress({ onProgress: (p) => void seen.push(p) }, 400, 60)!;
    await runSandboxed(spec({
      // each line its own chunk (the sleeps), so a line the parser wrongly took would show up
      command: ['step 3 | loss \\033]0;pwned\\007', 'step 4 | loss 2.5\\033[2J', 'step 7\\033[31m | loss 3', 'step 99999999999999999999999 | loss 1e999']
        .map((l) => `printf '${l}\\n'; sleep 0.15`).join('; '),
      timeoutMs: 30_000, onOutput,
    }));
    // the lines with an escape sequence where a number should be are not steps; the numbers are numbers
    assert.deepEqual(seen.map((p) => [p.step, p.loss, p.fraction]), [[4, 2.5, 0.01], [1e23, Infinity, 1]]);
    const line = slotLine({ label: '[exp 1/6]', slot: null, started: Date.now(), progress: seen[seen.length - 1]!, typicalMs: null }, Date.now());
    assert.doesNotMatch(line, /[\u001b\u0007]/, line);
    assert.match(line, /step 1e\+23\/400 loss Infinity/);
  });

  test('a linked node_modules is readable by task-agent workers, its siblings are not; a link to anything but a node_modules folder adds nothing', async () => {
    const base = tmp();
    const shared = path.join(base, 'shared');
    fs.mkdirSync(path.join(shared, 'node_modules', 'dep'), { recursive: true });
    fs.writeFileSync(path.join(shared, 'node_modules', 'dep', 'index.js'), 'module.exports = 1;\n');
    const secret = `SECRET-${process.pid}`;
    fs.writeFileSync(path.join(shared, 'secret.txt'), secret);
    const root = path.join(base, 'autoagent');
    const harness = path.join(root, 'h');
    fs.mkdirSync(harness, { recursive: true });
    fs.symlinkSync(path.join(shared, 'node_modules'), path.join(root, 'node_modules'));
    const readable = workerReadable(harness, root);
    assert.deepEqual(readable, [root, harness, path.join(shared, 'node_modules')]);
    const r = await runSandboxed(spec({
      command: `cat "${path.join(shared, 'node_modules', 'dep', 'index.js')}"; cat "${path.join(shared, 'secret.txt')}" || echo NO-SECRET`,
      readonly: readable, timeoutMs: 30_000,
    }));
    assert.match(r.stdout, /module\.exports = 1/);
    assert.match(r.stdout, /NO-SECRET/);
    assert.ok(!r.stdout.includes(secret), 'a sibling of the linked node_modules was readable');
    // a hostile or careless link: node_modules → the folder holding the secret
    const root2 = path.join(base, 'autoagent2');
    fs.mkdirSync(root2);
    fs.symlinkSync(shared, path.join(root2, 'node_modules'));
    assert.deepEqual(workerReadable(harness, root2), [root2, harness]);
  });
});
