/**
 * Knobs of a real-shaped training script through the real CLI: a nanoGPT-style train.py (lowercase
 * globals, a configurator that overrides some from the command line, a training loop at module
 * level) gets knobs without declarations, `autoagent knobs` lists them, and a search run moves
 * them; a knob proposer with nothing to turn refuses to start.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { openDb, listExperiments, latestRun } from '../../traces/index.ts';
import { makeRepo, cleanup, sh } from '../helpers/repo.ts';

const BIN = resolve(import.meta.dirname, '../../bin/autoagent.js');

function cli(args: string[], cwd: string): { code: number; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [BIN, ...args], { cwd, encoding: 'utf8', timeout: 240_000 });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

const TRAIN_PY = `"""A nanoGPT-shaped training script: the settings are lowercase module-level globals, and
configurator.py overrides them from the command line (python3 train.py --batch_size=8)."""
import json
import math

# -----------------------------------------------------------------------------
# default config values
out_dir = 'out'
learning_rate = 6e-4  # max learning rate
n_layer = 4  # transformer blocks
batch_size = 12  # sequences per step (the command sets it)
dropout = 0.0  # for pretraining 0 is good
seed = 1337
config_keys = [k for k, v in globals().items() if not k.startswith('_') and isinstance(v, (int, float, bool, str))]
exec(open('configurator.py').read())  # overrides from command line or config file
config = {k: globals()[k] for k in config_keys}  # will be useful for logging
# -----------------------------------------------------------------------------

iter_num = 0
best_val_loss = 1e9
while True:
    loss = (math.log10(learning_rate) - math.log10(2e-3)) ** 2 + 0.1 * (n_layer - 6) ** 2
    if loss < best_val_loss:
        best_val_loss = loss
    iter_num += 1
    if iter_num >= 3:
        break

with open('result.json', 'w') as f:
    json.dump({**config, 'iter_num': iter_num, 'best_val_loss': best_val_loss}, f)
print(f"iter {iter_num}: loss {best_val_loss:.4f}")
`;

/** nanoGPT's "Poor Man's Configurator", as train.py exec's it */
const CONFIGURATOR_PY = `import sys
from ast import literal_eval
for arg in sys.argv[1:]:
    if '=' not in arg:
        assert not arg.startswith('--')
        exec(open(arg).read())
    else:
        assert arg.startswith('--')
        key, val = arg.split('=')
        key = key[2:]
        if key in globals():
            try:
                attempt = literal_eval(val)
            except (SyntaxError, ValueError):
                attempt = val
            assert type(attempt) == type(globals()[key])
            print(f"Overriding: {key} = {attempt}")
            globals()[key] = attempt
        else:
            raise ValueError(f"Unknown config key: {key}")
`;

/** the locked evaluator scores the values the training run used: a quadratic in log10(lr) and n_layer */
const EVALUATE_PY = `import json, math
r = json.load(open('result.json'))
assert r['batch_size'] == 8, 'the command line sets batch_size'
loss = (math.log10(r['learning_rate']) - math.log10(2e-3)) ** 2 + 0.1 * (r['n_layer'] - 6) ** 2
print(f"METRIC loss={loss}")
`;

const STUDY = `name: nano
kind: command
editable: [train.py]
locked: [evaluate.py, configurator.py]
command: python3 train.py --batch_size=8
evaluate: python3 evaluate.py
outputs: [result.json]
metric: { name: loss, direction: minimize }
budget: { experiment_seconds: 30, experiments: 6 }
proposer: { type: search }
acceptance: { baseline_repeats: 2, min_delta: 0, confirm_repeats: 0 }
`;

const nanoRepo = (study = STUDY) => makeRepo({ 'train.py': TRAIN_PY, 'configurator.py': CONFIGURATOR_PY, 'evaluate.py': EVALUATE_PY, 'study.yaml': study });

test('autoagent knobs --json: a nanoGPT-shaped train.py has knobs without declarations; overridden and state names are skipped', () => {
  const repo = nanoRepo();
  try {
    const r = cli(['knobs', 'study.yaml', '--json'], repo);
    assert.equal(r.code, 0, r.stderr);
    const data = JSON.parse(r.stdout) as {
      knobs: Array<Record<string, unknown>>; skipped: Array<{ file: string; name: string; reason: string }>;
    };
    assert.deepEqual(data.knobs.map((k) => k.name), ['learning_rate', 'n_layer', 'dropout']);
    const lr = data.knobs[0]!;
    assert.deepEqual(
      [lr.file, lr.type, lr.value, lr.min, lr.max, lr.log, lr.search_low, lr.search_high, lr.search_log],
      ['train.py', 'float', 6e-4, 0, 1, true, 6e-5, 6e-3, true],
    );
    const nl = data.knobs[1]!;
    assert.deepEqual([nl.type, nl.value, nl.min, nl.max, nl.log, nl.search_low, nl.search_high], ['int', 4, 1, null, false, 1, 16]);
    assert.ok(!('choices' in nl));
    const why = Object.fromEntries(data.skipped.map((s) => [s.name, s.reason]));
    assert.equal(why.batch_size, 'set by the command line (--batch_size=8): the command overrides it');
    assert.match(why.iter_num!, /^reassigned at line \d+ \(state, not a knob\)$/);
    assert.match(why.best_val_loss!, /^reassigned at line \d+ \(state, not a knob\)$/);
    assert.match(why.seed!, /^a seed/);
    assert.match(why.out_dir!, /^a string/);
    for (const s of data.skipped) assert.equal(s.file, 'train.py');

    // the table says the same, with the search window and the skipped section
    const t = cli(['knobs', 'study.yaml'], repo);
    assert.equal(t.code, 0, t.stderr);
    assert.match(t.stdout, /^FILE +NAME +TYPE +VALUE +MIN +MAX +LOG +CHOICES +SEARCH$/m);
    assert.match(t.stdout, /^train\.py:\d+ +learning_rate +float +6e-4 +>0 +1 +yes +\[0\.00006, 0\.006\] log$/m);
    assert.match(t.stdout, /^skipped:$/m);
    assert.match(t.stdout, /^ {2}train\.py:\d+ batch_size: set by the command line \(--batch_size=8\)/m);
  } finally {
    cleanup(repo);
  }
});

test('a search run on the nanoGPT-shaped study moves the discovered knobs (real CLI, sandboxed)', { timeout: 300_000 }, () => {
  const repo = nanoRepo();
  try {
    const r = cli(['run', 'study.yaml', '--json'], repo);
    assert.equal(r.code, 0, r.stderr);
    const db = openDb(join(repo, '.autoagent', 'autoagent.db'));
    const run = latestRun(db)!;
    const exps = listExperiments(db, run.id).filter((e) => e.seq > 0);
    assert.ok(exps.length >= 3, `experiments ran (stderr: ${r.stderr.slice(-2000)})`);
    const changed = (e: (typeof exps)[number]) => e.diff.split('\n').filter((l) => /^[-+][^-+]/.test(l)).map((l) => l.slice(1).split('=')[0]!.trim());
    const touched = new Set(exps.flatMap(changed));
    assert.ok(touched.has('learning_rate') || touched.has('n_layer'), `a run moves learning_rate or n_layer: ${[...touched].join(', ')}`);
    for (const name of touched) assert.ok(['learning_rate', 'n_layer', 'dropout'].includes(name), `only knobs change, not ${name}`);
    const kept = exps.filter((e) => e.decision === 'kept');
    assert.ok(kept.length >= 1, `a move helps and is kept: ${exps.map((e) => `${e.hypothesis} ${e.decision}`).join('; ')}`);
    assert.ok(kept.every((e) => e.metric! < e.incumbent_metric!));
    // the kept train.py still runs with the configurator and the command line override
    const head = sh(repo, 'git', ['show', `${run.branch}:train.py`]);
    assert.match(head, /^batch_size = 12 {2}# sequences per step/m, 'the overridden default is never touched');
    db.close();
  } finally {
    cleanup(repo);
  }
});

test('a knob proposer with no knobs refuses to start: one line, exit 2, before the baseline (real CLI)', () => {
  const study = STUDY.replace('command: python3 train.py --batch_size=8', 'command: python3 train.py --batch_size=8 --learning_rate=1e-3 --n_layer=6 --dropout=0.1');
  const repo = nanoRepo(study);
  try {
    const r = cli(['run', 'study.yaml'], repo);
    assert.equal(r.code, 2, r.stderr);
    const lines = r.stderr.trim().split('\n');
    assert.equal(lines.length, 1, r.stderr);
    assert.match(lines[0]!, /^autoagent: study\.yaml: the search proposer found no knobs in train\.py \(looked for module-level literals, argparse defaults, hyperparameter classes and YAML keys; \d+ skipped: .*learning_rate \(set by the command line \(--learning_rate=1e-3\)\).*\): declare them under `knobs:` or see `autoagent knobs study\.yaml`$/);
    assert.equal(existsSync(join(repo, '.autoagent', 'autoagent.db')), false, 'no run was recorded');
    assert.equal(sh(repo, 'git', ['branch', '--list', 'autoagent/*']), '', 'no run branch');
    // random refuses the same way; --experiments 0 (the baseline only) needs no knobs
    writeFileSync(join(repo, 'study.yaml'), study.replace('type: search', 'type: random'));
    sh(repo, 'git', ['-c', 'user.name=t', '-c', 'user.email=t@t', 'commit', '-qam', 'random']);
    assert.match(cli(['run', 'study.yaml'], repo).stderr, /the random proposer found no knobs/);
    const base = cli(['run', 'study.yaml', '--experiments', '0'], repo);
    assert.equal(base.code, 0, base.stderr);
  } finally {
    cleanup(repo);
  }
});
