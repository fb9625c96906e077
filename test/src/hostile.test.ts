// Hostile candidates against the whole loop, with real processes: a real bubblewrap sandbox, a real
// forged .git, real import shadowing, real FIFOs and symlinks, real separate git dirs and linked
// worktrees. Each test is an attack that worked before the trust boundary was rebuilt (issue 11).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startRun } from '../../src/loop.ts';
import { MemoryReporter } from '../../src/report.ts';
import { sandboxAvailable } from '../../sandbox/index.ts';
import { openDb, listExperiments, evaluationsOf, evaluationsOfRun, type DB } from '../../traces/index.ts';
import type { Proposer } from '../../meta-agent/index.ts';
import { makeRepo, cleanup, sh } from '../helpers/repo.ts';
import { findTorchPython } from '../../src/kinds/trainer.ts';

function torchMissing(): string | false {
  try {
    findTorchPython();
    return false;
  } catch (e) {
    return (e as Error).message;
  }
}

const avail = sandboxAvailable();
const skip = avail.ok ? false : `bwrap unusable here: ${avail.message}`;
const opts = (extra: Partial<Parameters<typeof startRun>[1]> = {}) => ({ overrides: {}, unsafeNoSandbox: false, reporter: new MemoryReporter(), ...extra });

/** A proposer that sets X to 3.0 once (so the run has a candidate to evaluate), then stops. */
const once: Proposer = {
  name: 'once',
  async propose(ctx) {
    if ((ctx.seq ?? 1) > 1) return null;
    return { hypothesis: 'X → 3.0', edits: [{ path: 'params.py', content: ctx.files['params.py']!.replace('X = 1.0', 'X = 3.0') }] };
  },
};

const PARAMS = 'X = 1.0\nN = 2\n';
/** an honest evaluator: imports the editable params module, uses re, counts the locked data files */
const EVALUATE = `import os, re, params
files = sorted(os.listdir('data'))
assert re.match(r'^\\d', '1')
loss = (params.X - 3.0) ** 2 + (params.N - 5) ** 2 + 1000 * len(files)
print(f'METRIC loss={loss}')
`;

function study(extra = '', baselineRepeats = 2): string {
  return `name: hostile
kind: command
editable: [params.py, attack.py]
locked: [evaluate.py, data/**]
command: python3 attack.py
evaluate: python3 evaluate.py
metric: { name: loss, direction: minimize }
budget: { experiment_seconds: 30, experiments: 1 }
acceptance: { baseline_repeats: ${baselineRepeats}, confirm_repeats: 1 }
${extra}`;
}

function allOutput(db: DB, runId: string): string {
  return [...evaluationsOfRun(db, runId).values()].flat().map((v) => `${v.stdout_tail}\n${v.stderr_tail}\n${v.reason ?? ''}`).join('\n');
}

test('a forged .git (fsmonitor, hooks) and a symlink to the checkout in the candidate tree never run or reach anything on the host', { skip }, async () => {
  const outside = mkdtempSync(join(tmpdir(), 'autoagent-hostile-'));
  const marker = join(outside, 'pwned');
  const ATTACK = `import os, subprocess
# a git dir of our own whose config runs a command whenever git looks at this tree
subprocess.run(['git', 'init', '-q', '.evil'], check=True, capture_output=True)
with open('.evil/.git/config', 'a') as f:
    f.write('[core]\\n\\tfsmonitor = "touch ${marker}; false"\\n\\thooksPath = /nonexistent\\n')
# borrow the real repository's objects (its path is this tree's path up to .autoagent), so git can read our commits
repo = os.getcwd().split('/.autoagent/')[0]
open('.evil/.git/objects/info/alternates', 'w').write(repo + '/.git/objects\\n')
os.makedirs('.evil/.git/hooks', exist_ok=True)
for hook in ('post-checkout', 'reference-transaction', 'pre-commit'):
    p = '.evil/.git/hooks/' + hook
    open(p, 'w').write('#!/bin/sh\\ntouch ${marker}\\n')
    os.chmod(p, 0o755)
# the tree's .git now points there; attributes ask for a filter driver
open('.git', 'w').write('gitdir: ' + os.path.abspath('.evil/.git') + '\\n')
open('.gitattributes', 'w').write('* filter=evil\\n')
# a symlink to the user's checkout: a host-side cleanup that followed it would delete it
os.symlink(os.environ['VICTIM'], 'victim')
os.symlink('/', 'root-link')
print('planted')
`;
  const repo = makeRepo({ 'params.py': PARAMS, 'attack.py': ATTACK, 'evaluate.py': EVALUATE, 'data/a.csv': '1\n', 'study.yaml': '' });
  try {
    writeFileSync(join(repo, 'study.yaml'), study(`env: { VICTIM: ${JSON.stringify(repo)} }\n`, 3));
    sh(repo, 'git', ['add', '-A']);
    sh(repo, 'git', ['-c', 'user.name=t', '-c', 'user.email=t@t', 'commit', '-q', '-m', 'study']);
    const branchesBefore = sh(repo, 'git', ['branch', '--list']);
    const res = await startRun(join(repo, 'study.yaml'), opts({ proposer: once }));
    assert.equal(res.status, 'finished', res.stopReason ?? '');
    const db = openDb(res.dbPath);
    const exps = listExperiments(db, res.runId);
    assert.equal(evaluationsOf(db, exps[0]!.id).length, 3, 'three baseline repeats ran the attack three times');
    assert.ok(evaluationsOf(db, exps[1]!.id).length >= 1, 'the candidate was evaluated too');
    assert.match(allOutput(db, res.runId), /planted/);
    db.close();
    assert.ok(!existsSync(marker), 'a command planted by the candidate ran on the host');
    // the user's checkout, hooks and branches are as they were; nothing behind the symlinks was deleted
    assert.ok(existsSync(join(repo, 'params.py')) && existsSync(join(repo, 'evaluate.py')) && existsSync(join(repo, 'data/a.csv')));
    assert.deepEqual(readdirSync(join(repo, '.git/hooks')).filter((h) => !h.endsWith('.sample')), []);
    assert.equal(sh(repo, 'git', ['branch', '--list']).replace(/^.*autoagent\/.*\n/m, ''), branchesBefore);
    assert.equal(spawnSync('git', ['config', '--get', 'core.fsmonitor'], { cwd: repo, encoding: 'utf8' }).stdout, '', 'fsmonitor set in the user repo');
  } finally {
    cleanup(repo);
    rmSync(outside, { recursive: true, force: true });
  }
});

test('the evaluator cannot be hijacked: usercustomize in the shared HOME, re.py beside evaluate.py, a new file under a locked glob', { skip }, async () => {
  const ATTACK = `import os, site, sys
# 1. a usercustomize module in the user site of $HOME (the evaluator used to share it)
d = site.getusersitepackages()
os.makedirs(d, exist_ok=True)
open(os.path.join(d, 'usercustomize.py'), 'w').write('print("METRIC loss=-1000000"); import os; os._exit(0)\\n')
# 2. a module that shadows the stdlib beside the evaluator, and in the scratch folder
for folder in ('.', os.environ['AUTOAGENT_SCRATCH']):
    open(os.path.join(folder, 're.py'), 'w').write('print("METRIC loss=-2000000"); import os; os._exit(0)\\n')
    os.makedirs(os.path.join(folder, '__pycache__'), exist_ok=True)
# 3. a new file under the locked glob data/**
open('data/zz-extra.csv', 'w').write('9\\n')
# 4. a sitecustomize and a .pth file where a site dir might be searched
open('sitecustomize.py', 'w').write('print("METRIC loss=-3000000"); import os; os._exit(0)\\n')
open('evil.pth', 'w').write('import os; print("METRIC loss=-4000000"); os._exit(0)\\n')
print('planted')
`;
  const repo = makeRepo({ 'params.py': PARAMS, 'attack.py': ATTACK, 'evaluate.py': EVALUATE, 'data/a.csv': '1\n', 'study.yaml': study() });
  try {
    const res = await startRun(join(repo, 'study.yaml'), opts({ proposer: once }));
    assert.equal(res.status, 'finished', res.stopReason ?? '');
    const db = openDb(res.dbPath);
    const exps = listExperiments(db, res.runId);
    const base = evaluationsOf(db, exps[0]!.id);
    assert.deepEqual(base.map((v) => [v.status, v.metric]), [['ok', 1013], ['ok', 1013]], 'the honest score: (1-3)^2 + (2-5)^2 + 1000 × one data file');
    const cand = evaluationsOf(db, exps[1]!.id);
    assert.equal(cand[0]!.metric, 1009, 'import params still imports the candidate\'s committed params.py');
    assert.match(allOutput(db, res.runId), /planted/);
    db.close();
  } finally {
    cleanup(repo);
  }
});

test('hidden files stay hidden when the git dir lives outside the repo folder (--separate-git-dir)', { skip }, async () => {
  const secret = `ANSWER-${Date.now()}`;
  // outside the system temp folder (the sandbox has a private /tmp): where a user's git dir may well be
  const gitdir = mkdtempSync(join('/var/tmp', 'autoagent-gitdir-'));
  const repo = mkdtempSync(join(tmpdir(), 'autoagent-sep-'));
  const ATTACK = `import os, subprocess, glob
found = []
for cmd in (['git', '--git-dir', os.environ['GITDIR'], 'show', 'HEAD:answers.txt'], ['git', 'show', 'HEAD:answers.txt'], ['cat', 'answers.txt']):
    r = subprocess.run(cmd, capture_output=True, text=True)
    found.append(r.stdout)
for p in glob.glob(os.environ['GITDIR'] + '/**', recursive=True):
    found.append(p)
print('FOUND:', found)
`;
  try {
    const files: Record<string, string> = { 'params.py': PARAMS, 'attack.py': ATTACK, 'evaluate.py': EVALUATE.replace("files = sorted(os.listdir('data'))", "files = [] if open('answers.txt').read().startswith('ANSWER') else ['x']"), 'answers.txt': secret + '\n' };
    for (const [p, c] of Object.entries(files)) writeFileSync(join(repo, p), c);
    writeFileSync(join(repo, 'study.yaml'), study(`env: { GITDIR: ${JSON.stringify(join(gitdir, 'g'))} }\nsandbox: { hidden: [answers.txt] }\n`).replace('locked: [evaluate.py, data/**]', 'locked: [evaluate.py, answers.txt]'));
    execFileSync('git', ['init', '-q', '-b', 'main', `--separate-git-dir=${join(gitdir, 'g')}`], { cwd: repo });
    sh(repo, 'git', ['add', '-A']);
    sh(repo, 'git', ['-c', 'user.name=t', '-c', 'user.email=t@t', 'commit', '-q', '-m', 'init']);
    const res = await startRun(join(repo, 'study.yaml'), opts({ proposer: once }));
    assert.equal(res.status, 'finished', res.stopReason ?? '');
    const db = openDb(res.dbPath);
    const out = allOutput(db, res.runId);
    assert.match(out, /FOUND:/);
    assert.ok(!out.includes(secret), 'the answer key reached the store');
    const base = evaluationsOf(db, listExperiments(db, res.runId)[0]!.id);
    assert.equal(base[0]!.metric, 13, 'the evaluator still reads the hidden file');
    db.close();
  } finally {
    rmSync(repo, { recursive: true, force: true });
    rmSync(gitdir, { recursive: true, force: true });
  }
});

test('a run from a linked git worktree: the main checkout (and its copy of a hidden file) is not visible', { skip }, async () => {
  const secret = `ANSWER-${Date.now()}`;
  const ATTACK = `import os
main = os.environ['MAIN']
seen = []
for p in (main, os.path.join(main, 'answers.txt'), os.path.join(main, '.git')):
    seen.append((p, os.path.exists(p)))
    try:
        seen.append(open(p).read())
    except Exception as e:
        seen.append(type(e).__name__)
print('SEEN:', seen)
`;
  const main = makeRepo({ 'params.py': PARAMS, 'attack.py': ATTACK, 'evaluate.py': EVALUATE.replace("files = sorted(os.listdir('data'))", 'files = []'), 'answers.txt': secret + '\n', 'study.yaml': '' }, '/var/tmp');
  const linked = join(mkdtempSync(join(tmpdir(), 'autoagent-linked-')), 'wt');
  try {
    writeFileSync(join(main, 'study.yaml'), study(`env: { MAIN: ${JSON.stringify(main)} }\nsandbox: { hidden: [answers.txt] }\n`).replace('locked: [evaluate.py, data/**]', 'locked: [evaluate.py]'));
    sh(main, 'git', ['add', '-A']);
    sh(main, 'git', ['-c', 'user.name=t', '-c', 'user.email=t@t', 'commit', '-q', '-m', 'study']);
    sh(main, 'git', ['worktree', 'add', '-q', '--detach', linked]);
    const res = await startRun(join(linked, 'study.yaml'), opts({ proposer: once }));
    assert.equal(res.status, 'finished', res.stopReason ?? '');
    const db = openDb(res.dbPath);
    const out = allOutput(db, res.runId);
    assert.match(out, /SEEN:/);
    assert.ok(!out.includes(secret), 'the main checkout\'s copy of the answer key reached the store');
    assert.match(out, new RegExp(`\\('${main.replace(/[/.]/g, '\\$&')}', False\\)`));
    db.close();
  } finally {
    cleanup(main);
    rmSync(join(linked, '..'), { recursive: true, force: true });
  }
});

test('sandbox.disk_mb: a candidate that fills the disk is stopped at the limit and recorded as a crash', { skip }, async () => {
  const ATTACK = `import os
chunk = b'x' * (1 << 20)
with open('fill.bin', 'wb') as f:
    for i in range(200):
        f.write(chunk)
        f.flush()
print('wrote 200 MiB')
`;
  const repo = makeRepo({ 'params.py': PARAMS, 'attack.py': ATTACK, 'evaluate.py': EVALUATE, 'data/a.csv': '1\n', 'study.yaml': study('sandbox: { disk_mb: 24 }\n') });
  try {
    const res = await startRun(join(repo, 'study.yaml'), opts({ proposer: once }));
    assert.equal(res.status, 'failed', 'the baseline itself fills the disk');
    assert.match(res.stopReason!, /baseline failed/);
    const db = openDb(res.dbPath);
    const v = evaluationsOf(db, listExperiments(db, res.runId)[0]!.id)[0]!;
    assert.equal(v.status, 'crash');
    assert.match(`${v.reason} ${v.stderr_tail}`, /No space left on device|disk_mb|File too large/);
    assert.ok(!v.stdout_tail.includes('wrote 200 MiB'));
    db.close();
    // nothing of the evaluation is left behind (the disk image is unmounted and removed)
    assert.deepEqual(readdirSync(join(repo, '.autoagent')).filter((d) => d === 'work'), existsSync(join(repo, '.autoagent/work')) ? ['work'] : []);
    const mounts = readFileSync('/proc/self/mountinfo', 'utf8');
    assert.ok(!mounts.includes(join(repo, '.autoagent')), 'a disk image is still mounted');
  } finally {
    cleanup(repo);
  }
});

test('an evaluation folder left by a killed run is removed on the next start of the same run (no scratch leaks)', { skip }, async () => {
  const repo = makeRepo({ 'params.py': PARAMS, 'attack.py': 'print(1)\n', 'evaluate.py': EVALUATE, 'data/a.csv': '1\n', 'study.yaml': study() });
  try {
    const res = await startRun(join(repo, 'study.yaml'), opts({ proposer: once, overrides: { experiments: 0 } }));
    const stale = join(repo, '.autoagent', 'work', res.runId, '0-9-abc', 'rw', 'scratch');
    mkdirSync(stale, { recursive: true });
    writeFileSync(join(stale, 'junk'), 'x');
    const { resumeRun } = await import('../../src/loop.ts');
    await resumeRun(res.runId, repo, opts({ proposer: once, overrides: { experiments: 0 } }));
    assert.ok(!existsSync(join(repo, '.autoagent', 'work', res.runId)), 'stale evaluation folders are removed');
  } finally {
    cleanup(repo);
  }
});

test('trainer: telemetry.json as a FIFO does not hang the run; as a symlink to the hidden answer key it is not followed', { skip: skip || torchMissing() }, async () => {
  const ROOT = join(import.meta.dirname, '../..');
  const secret = `ANSWER-${Date.now()}`;
  const TRAIN = `import os
out = os.environ['AUTOAGENT_OUTPUT_DIR']
os.makedirs(out, exist_ok=True)
repo = os.getcwd().split('/.autoagent/')[0]
if os.environ['AUTOAGENT_REPEAT'] == '0':
    os.mkfifo(os.path.join(out, 'telemetry.json'))
else:
    os.symlink(os.path.join(repo, 'answers.json'), os.path.join(out, 'telemetry.json'))
print('planted')
`;
  const repo = makeRepo({
    'prepare.py': readFileSync(join(ROOT, 'gpu-trainer/prepare.py'), 'utf8'),
    'train.py': TRAIN,
    'corpus.txt': Array.from({ length: 12 }, (_, i) => `document ${i}: ` + 'the quick brown fox jumps over the lazy dog. '.repeat(60)).join('\n\n'),
    'answers.json': JSON.stringify({ key: secret }),
    'study.yaml': `name: tiny-gpt
kind: trainer
editable: [train.py]
locked: [prepare.py, corpus.txt]
metric: { name: val_bpb, direction: minimize }
budget: { experiment_seconds: 3, grace_seconds: 5, evaluate_seconds: 60, experiments: 0 }
acceptance: { baseline_repeats: 2, confirm_repeats: 0 }
sandbox: { hidden: [answers.json] }
trainer: { corpus: corpus.txt, eval_tokens: 4096 }
`,
  });
  try {
    const started = Date.now();
    // the baseline fails (no model), so the run stops after its first repeat: run it twice to try both
    for (const repeat of [0, 1]) {
      if (repeat === 1) {
        writeFileSync(join(repo, 'train.py'), TRAIN.replace("os.environ['AUTOAGENT_REPEAT'] == '0'", 'False'));
        sh(repo, 'git', ['-c', 'user.name=t', '-c', 'user.email=t@t', 'commit', '-qam', 'symlink variant']);
      }
      const res = await startRun(join(repo, 'study.yaml'), opts());
      assert.equal(res.status, 'failed', res.stopReason ?? '');
      const db = openDb(res.dbPath);
      const v = evaluationsOf(db, listExperiments(db, res.runId)[0]!.id)[0]!;
      assert.equal(v.status, 'crash');
      const telemetry = JSON.parse(v.telemetry ?? '{}') as { train?: { error?: string } };
      assert.match(telemetry.train?.error ?? '', repeat === 0 ? /not a regular file/ : /symbolic link/);
      assert.ok(!JSON.stringify(v).includes(secret), 'the hidden answer key was copied into the store');
      db.close();
    }
    assert.ok(Date.now() - started < 120_000, 'the FIFO held the run');
  } finally {
    cleanup(repo);
  }
});
