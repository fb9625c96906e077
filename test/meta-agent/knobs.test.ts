/**
 * Knob discovery without declarations: lowercase module-level globals (nanoGPT), argparse
 * defaults, hyperparameter classes, YAML keys one level deep; what is state (reassigned) or set by
 * the study's command line is reported as skipped. Each form is rewritten by setKnob and read back.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parse as parseYaml } from 'yaml';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  clearKnobCache, commandFlags, discoverKnobReport, findKnobReport, findKnobs, setKnob, type Knob,
} from '../../meta-agent/search/knobs.ts';
import { UsageError } from '../../base/errors.ts';

const byName = (knobs: Knob[]) => new Map(knobs.map((k) => [k.name, k]));
const reasons = (path: string, src: string, command?: string) =>
  Object.fromEntries(findKnobReport(path, src, [], command).skipped.map((s) => [s.name, s.reason]));

/** Run a Python source and return what it prints (proves a rewritten file is still valid Python). */
function runPython(src: string, args: string[] = []): string {
  const dir = mkdtempSync(join(tmpdir(), 'knobs-py-'));
  try {
    writeFileSync(join(dir, 'f.py'), src);
    return execFileSync('python3', ['f.py', ...args], { cwd: dir, encoding: 'utf8' });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------- module-level globals

const NANO = `"""nanoGPT-shaped: settings are lowercase globals; configurator.py overrides them from argv."""
import os
import time
from contextlib import nullcontext as ctx_factory

out_dir = 'out'
eval_interval = 2000
learning_rate = 6e-4  # max learning rate
weight_decay = 1e-1
n_layer = 12
batch_size = 12
block_size: int = 1024
dropout = 0.0  # for pretraining 0 is good
bias = False  # bias inside LayerNorm and Linear layers?
compile = True
seed = 1337
betas = (0.9, 0.95)
meta_vocab_size = None
gradient_accumulation_steps = 5 * 8
exec(open('configurator.py').read())  # overrides from command line or config file

# state, bound again at module level in every way Python allows
iter_num = 0
best_val_loss = 1e9
local_iter_num = 0
running_mfu = -1.0
tokens_seen = 0
ckpt = 'ckpt.pt'
handle = 0
err_count = 0
total = 0
warmup = 100
lr_min = 6e-5
t0 = 0.0
dtype = 'float32'
step_fn = 0
counter = 0
scratch = 1
mode = 0

if eval_interval > 0:
    ckpt = os.path.join(out_dir, 'ckpt.pt')
for tokens_seen in range(3):
    pass
with ctx_factory() as handle:
    pass
try:
    raise ValueError()
except ValueError as err_count:
    pass
finally:
    total += 1
import math as warmup
def lr_min():
    return 0
class dtype:
    pass
if (step_fn := 3) > 2:
    pass
del scratch


def bump():
    global counter
    counter += 1


def reads_only():
    global mode
    return mode


while True:
    t0 = time.time()
    local_iter_num += 1
    if iter_num % eval_interval == 0:
        if best_val_loss > 0:
            best_val_loss = 0.5
    running_mfu = 0.9 * running_mfu
    iter_num += 1
    if iter_num > 3:
        break
`;

test('module-level globals in any case are knobs; a name bound again anywhere at module level is state', () => {
  const knobs = findKnobs('train.py', NANO, []);
  assert.deepEqual(knobs.map((k) => k.name), [
    'eval_interval', 'learning_rate', 'weight_decay', 'n_layer', 'batch_size', 'block_size', 'dropout', 'bias', 'compile', 'mode',
  ]);
  const k = byName(knobs);
  assert.deepEqual([k.get('learning_rate')!.type, k.get('learning_rate')!.value, k.get('learning_rate')!.text], ['float', 6e-4, '6e-4']);
  assert.equal(k.get('learning_rate')!.description, 'max learning rate');
  assert.equal(k.get('learning_rate')!.form, 'global');
  assert.deepEqual([k.get('n_layer')!.type, k.get('n_layer')!.min, k.get('n_layer')!.log], ['int', 1, false]);
  assert.deepEqual([k.get('block_size')!.type, k.get('block_size')!.value], ['int', 1024]);
  assert.deepEqual([k.get('bias')!.type, k.get('bias')!.value], ['bool', false]);
  assert.equal(k.get('weight_decay')!.log, true);
  for (const x of knobs) assert.equal(NANO.slice(x.span.start, x.span.end), x.text);

  const why = reasons('train.py', NANO);
  const line = (needle: string) => NANO.slice(0, NANO.indexOf(needle)).split('\n').length;
  const state = (name: string, at: string) => assert.equal(why[name], `reassigned at line ${line(at)} (state, not a knob)`, name);
  state('iter_num', '    iter_num += 1'); // inside the top-level while
  state('best_val_loss', 'best_val_loss = 0.5'); // nested ifs inside the while
  state('local_iter_num', 'local_iter_num += 1');
  state('running_mfu', 'running_mfu = 0.9');
  state('ckpt', 'ckpt = os.path'); // top-level if
  state('tokens_seen', 'for tokens_seen'); // for target
  state('handle', 'as handle:'); // with-as
  state('err_count', 'as err_count:'); // except-as inside try
  state('total', 'total += 1'); // finally
  state('warmup', 'import math as warmup');
  state('lr_min', 'def lr_min');
  state('dtype', 'class dtype');
  state('step_fn', 'step_fn := 3'); // walrus
  state('scratch', 'del scratch');
  state('t0', 't0 = time.time()');
  assert.equal(why.counter, `reassigned at line ${line('counter += 1')} in bump() (global counter) (state, not a knob)`);
  assert.equal(why.mode, undefined, 'a function that only reads a global does not make it state');
  assert.match(why.seed!, /^a seed/);
  assert.match(why.out_dir!, /^a string: declare its `choices`/);
  assert.match(why.betas!, /^a tuple/);
  assert.match(why.meta_vocab_size!, /^None/);
  assert.equal(why.gradient_accumulation_steps, undefined, 'an expression is not listed');
});

test("names the study's command sets (nanoGPT's configurator: --name=value, or --name value) are overridden, not knobs", () => {
  const cmd = 'python3 train.py config/small.py --batch_size=32 --compile=False --n-layer 4 --dropout "0.1"';
  const report = findKnobReport('train.py', NANO, [], cmd);
  const names = report.knobs.map((k) => k.name);
  for (const n of ['batch_size', 'compile', 'n_layer', 'dropout']) assert.ok(!names.includes(n), n);
  assert.ok(names.includes('learning_rate'));
  const why = Object.fromEntries(report.skipped.map((s) => [s.name, s.reason]));
  assert.equal(why.batch_size, 'set by the command line (--batch_size=32): the command overrides it');
  assert.equal(why.compile, 'set by the command line (--compile=False): the command overrides it');
  assert.equal(why.n_layer, 'set by the command line (--n-layer 4): the command overrides it');
  assert.equal(why.dropout, 'set by the command line (--dropout 0.1): the command overrides it');
  // a declared knob that the command overrides is a study error, in one line
  assert.throws(() => findKnobs('train.py', NANO, [{ file: 'train.py', name: 'batch_size' }], cmd), (e: unknown) =>
    e instanceof UsageError && /^knobs: batch_size in train\.py is set by the study's command \(--batch_size=32\)/.test(e.message));
  // and a declared one that is state
  assert.throws(() => findKnobs('train.py', NANO, [{ file: 'train.py', name: 'iter_num' }]), (e: unknown) =>
    e instanceof UsageError && /^knobs: iter_num is assigned more than once at top level in train\.py \(reassigned at line \d+\)/.test(e.message));
  // a seed and a string are searched when declared (choices for the string)
  const declared = byName(findKnobs('train.py', NANO, [{ file: 'train.py', name: 'seed' }, { file: 'train.py', name: 'out_dir', choices: ['out', 'out2'] }]));
  assert.equal(declared.get('seed')!.type, 'int');
  assert.equal(declared.get('out_dir')!.type, 'choice');
});

test('commandFlags reads flags as a shell would split them', () => {
  const f = commandFlags(`python3 train.py --lr=3e-4 --name 'my run' -l 0.1 --flag --tag="a b" optimizer.lr=0.1 && echo --done`);
  assert.deepEqual([...f.entries()], [
    ['--lr', '--lr=3e-4'], ['--name', '--name my run'], ['-l', '-l 0.1'], ['--flag', '--flag'], ['--tag', '--tag=a b'],
    ['optimizer.lr=', 'optimizer.lr=0.1'], ['--done', '--done'],
  ]);
  assert.equal(commandFlags(undefined).size, 0);
});

// ---------------------------------------------------------------- argparse

const ARGS = `import argparse


def get_args():
    parser = argparse.ArgumentParser(description="train")
    parser.add_argument('--lr', type=float, default=3e-4, help='peak learning rate')
    parser.add_argument('-l', '--num-layers', type=int, default=6)  # transformer blocks
    parser.add_argument('--wd', dest='weight_decay', type=float, default=1)
    parser.add_argument('--compile', action='store_true', help='torch.compile the model')
    parser.add_argument('--no-bias', dest='bias', action='store_false')
    parser.add_argument('--amp', action='store_true', default=False)
    parser.add_argument('--optimizer', choices=['adamw', 'sgd', 'lion'], default='adamw')
    parser.add_argument('--width', type=int, choices=[64, 128, 256], default=128)
    parser.add_argument('--name', type=str, default='run')
    parser.add_argument('--resume', default=None)
    parser.add_argument('--data', required=True)
    parser.add_argument('--gpus', nargs='+', type=int, default=[0])
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('dataset')
    parser.add_argument(
        '--warmup-steps',
        type=int,
        default=100,
    )
    return parser.parse_args()


if __name__ == '__main__':
    args = get_args()
    print(args.lr, args.num_layers, args.weight_decay, args.compile, args.bias, args.amp, args.optimizer, args.width, args.warmup_steps)
`;

test('argparse: add_argument defaults are knobs named by the long option (or dest), with store_true flags and choices', () => {
  const report = findKnobReport('train.py', ARGS, []);
  const k = byName(report.knobs);
  assert.deepEqual([...k.keys()], ['lr', 'num_layers', 'weight_decay', 'compile', 'bias', 'amp', 'optimizer', 'width', 'warmup_steps']);
  assert.deepEqual([k.get('lr')!.type, k.get('lr')!.value, k.get('lr')!.text, k.get('lr')!.form], ['float', 3e-4, '3e-4', 'argparse']);
  assert.equal(k.get('lr')!.description, 'peak learning rate', 'help= is the description');
  assert.equal(k.get('num_layers')!.description, 'transformer blocks');
  assert.equal(k.get('weight_decay')!.type, 'float', 'type=float makes `1` a float knob');
  assert.deepEqual([k.get('compile')!.type, k.get('compile')!.value, k.get('compile')!.text], ['bool', false, '']);
  assert.deepEqual([k.get('bias')!.type, k.get('bias')!.value], ['bool', true], 'store_false defaults to True');
  assert.deepEqual([k.get('amp')!.type, k.get('amp')!.text], ['bool', 'False']);
  assert.deepEqual([k.get('optimizer')!.type, k.get('optimizer')!.choices], ['choice', ['adamw', 'sgd', 'lion']]);
  assert.deepEqual([k.get('width')!.type, k.get('width')!.value, k.get('width')!.choices], ['choice', 128, [64, 128, 256]]);
  assert.equal(k.get('warmup_steps')!.value, 100);
  const why = Object.fromEntries(report.skipped.map((s) => [s.name, s.reason]));
  assert.match(why.name!, /^a string/);
  assert.match(why.resume!, /^default is None/);
  assert.match(why.seed!, /^a seed/);
  for (const n of ['data', 'gpus', 'dataset']) assert.ok(!(n in why) && !k.has(n), `${n}: required, a list or positional: not a setting to list`);

  // the command line overrides by any of the option strings
  const over = findKnobReport('train.py', ARGS, [], 'python3 train.py data/ -l 8 --lr 1e-3 --compile --wd=0.05');
  assert.deepEqual(over.knobs.map((x) => x.name), ['bias', 'amp', 'optimizer', 'width', 'warmup_steps']);
  const w = Object.fromEntries(over.skipped.map((s) => [s.name, s.reason]));
  assert.equal(w.num_layers, 'set by the command line (-l 8): the command overrides it');
  assert.equal(w.lr, 'set by the command line (--lr 1e-3): the command overrides it');
  assert.equal(w.compile, 'set by the command line (--compile): the command overrides it');
  assert.equal(w.weight_decay, 'set by the command line (--wd=0.05): the command overrides it');
});

// ---------------------------------------------------------------- classes

const CLASSES = `from dataclasses import dataclass, field
import torch.nn as nn


@dataclass
class Hyperparameters:
    lr: float = 3e-4  # adam lr
    num_iterations: int = 5100
    warmup_iters = 0
    cooldown_frac: float = field(default=0.4)
    input_bin: str = 'data/train_*.bin'
    sequence_length: int = 64 * 1024
    vocab: list = field(default_factory=list)
    steps: int = 10
    _private: int = 3


class Config:
    n_embd = 768
    n_head = 12
    bias = True

    def scaled(self):
        self.n_head = 1
        return self


@dataclass(frozen=True)
class Model(object):
    width: int = 256


class Block(nn.Module):
    hidden = 512


Hyperparameters.steps = 20
args = Hyperparameters()
`;

test('dataclass and plain-class hyperparameter fields are knobs named Class.field', () => {
  const report = findKnobReport('train_gpt.py', CLASSES, []);
  const k = byName(report.knobs);
  assert.deepEqual([...k.keys()], [
    'Hyperparameters.lr', 'Hyperparameters.num_iterations', 'Hyperparameters.warmup_iters', 'Hyperparameters.cooldown_frac',
    'Config.n_embd', 'Config.bias', 'Model.width',
  ]);
  assert.deepEqual([k.get('Hyperparameters.lr')!.value, k.get('Hyperparameters.lr')!.description, k.get('Hyperparameters.lr')!.form], [3e-4, 'adam lr', 'class']);
  assert.equal(k.get('Hyperparameters.cooldown_frac')!.text, '0.4', 'field(default=…) is the literal');
  const why = Object.fromEntries(report.skipped.map((s) => [s.name, s.reason]));
  assert.match(why['Hyperparameters.steps']!, /^reassigned at line \d+ \(Hyperparameters\.steps = \.\.\.\) \(state, not a knob\)$/);
  assert.match(why['Config.n_head']!, /^reassigned at line \d+ \(self\.n_head = \.\.\.\)/);
  assert.match(why['Hyperparameters.input_bin']!, /^a string/);
  assert.ok(!k.has('Block.hidden') && !('Block.hidden' in why), 'an nn.Module subclass is not a hyperparameter class');
  // a command-line flag of the field's name overrides it (tyro / simple-parsing style)
  const over = findKnobReport('train_gpt.py', CLASSES, [], 'python3 train_gpt.py --lr=1e-3 --config.n-embd 512');
  assert.ok(!over.knobs.some((x) => x.name === 'Hyperparameters.lr' || x.name === 'Config.n_embd'));
  // declarations name class fields the same way
  const d = findKnobs('train_gpt.py', CLASSES, [{ file: 'train_gpt.py', name: 'Hyperparameters.lr', min: 1e-4, max: 1e-2 }]);
  assert.deepEqual([d[0]!.min, d[0]!.max, d[0]!.declared], [1e-4, 1e-2, true]);
});

// ---------------------------------------------------------------- YAML

const CONFIG_YAML = `# training config
# (a file header comment)
lr: 0.001  # peak learning rate
# transformer blocks
n_layer: 6
optimizer:
  # Adam's first moment
  beta1: 0.9
  eps: 1e-8  # numerical floor
  kind: adamw
  schedule:
    warmup: 100
model: 'gpt'
layers: [4, 4]
prompt: |
  Be brief.
anchored: &a 3
alias: *a
maybe: yes
nothing: null
hexed: 0x10
dup: 1
dup: 2
`;

test('YAML: top-level and one nested level of scalar keys, spans from the document, comments as descriptions', () => {
  const report = findKnobReport('config.yaml', CONFIG_YAML, []);
  const k = byName(report.knobs);
  assert.deepEqual([...k.keys()], ['lr', 'n_layer', 'optimizer.beta1', 'optimizer.eps']);
  assert.equal(k.get('lr')!.description, 'peak learning rate');
  assert.equal(k.get('n_layer')!.description, 'transformer blocks', 'the comment line above the key');
  assert.equal(k.get('optimizer.eps')!.description, 'numerical floor');
  assert.deepEqual([k.get('optimizer.eps')!.type, k.get('optimizer.eps')!.value, k.get('optimizer.eps')!.text], ['float', 1e-8, '1e-8']);
  for (const x of report.knobs) assert.equal(CONFIG_YAML.slice(x.span.start, x.span.end), x.text);
  const why = Object.fromEntries(report.skipped.map((s) => [s.name, s.reason]));
  assert.match(why['optimizer.kind']!, /^a string/);
  assert.match(why.model!, /^a string/);
  assert.match(why.prompt!, /^a block string/);
  assert.match(why.anchored!, /anchor/);
  assert.match(why.maybe!, /bool or null/);
  assert.match(why.nothing!, /^null/);
  assert.match(why.hexed!, /^not a decimal number/);
  assert.equal(why.dup, 'key repeated at line 23 (state, not a knob)');
  assert.equal(report.skipped.filter((x) => x.name === 'dup').length, 1, 'reported once');
  assert.ok(!('optimizer.schedule.warmup' in why) && !k.has('optimizer.schedule.warmup'), 'two levels down is not searched');
  // a Hydra-style override on the command line sets a YAML key; a --flag does not
  const hydra = findKnobReport('config.yaml', CONFIG_YAML, [], 'python3 train.py optimizer.beta1=0.95 ++lr=1e-2 --n_layer=3');
  assert.deepEqual(hydra.knobs.map((x) => x.name), ['n_layer', 'optimizer.eps']);
  assert.equal(hydra.skipped.find((x) => x.name === 'lr')!.reason, 'set by the command line (++lr=1e-2): the command overrides it');
  // choices make a nested string a knob; setKnob keeps every comment
  const kinds = findKnobs('config.yaml', CONFIG_YAML, [{ file: 'config.yaml', name: 'optimizer.kind', choices: ['adamw', 'lion'] }]);
  let out = setKnob(CONFIG_YAML, kinds.find((x) => x.name === 'optimizer.kind')!, 'lion');
  out = setKnob(out, findKnobs('config.yaml', out, []).find((x) => x.name === 'optimizer.eps')!, 1e-6);
  out = setKnob(out, findKnobs('config.yaml', out, []).find((x) => x.name === 'lr')!, 0.003);
  const parsed = parseYaml(out, { uniqueKeys: false }) as { lr: number; optimizer: { kind: string; eps: number; beta1: number } };
  assert.deepEqual([parsed.lr, parsed.optimizer.kind, parsed.optimizer.eps, parsed.optimizer.beta1], [0.003, 'lion', 1e-6, 0.9]);
  assert.match(out, /^ {2}eps: 1e-6 {2}# numerical floor$/m);
  assert.match(out, /^lr: 0\.003 {2}# peak learning rate$/m);
  assert.equal(out.replace(/1e-6|0\.003|lion/g, ''), CONFIG_YAML.replace(/1e-8|0\.001|adamw/g, ''));
});

// ---------------------------------------------------------------- rewriting every form

test('setKnob on every form rewrites only the literal; discovery reads the new value back, the rest byte-identical', () => {
  const cases: Array<[string, string, string, number | boolean | string, string]> = [
    ['train.py', NANO, 'learning_rate', 1.2e-3, '1.2e-3'],
    ['train.py', NANO, 'n_layer', 8, '8'],
    ['train.py', NANO, 'block_size', 512, '512'],
    ['train.py', NANO, 'bias', true, 'True'],
    ['train.py', ARGS, 'lr', 5e-4, '5e-4'],
    ['train.py', ARGS, 'num_layers', 3, '3'],
    ['train.py', ARGS, 'weight_decay', 0.5, '0.5'],
    ['train.py', ARGS, 'compile', true, ', default=True'],
    ['train.py', ARGS, 'bias', false, ', default=False'],
    ['train.py', ARGS, 'optimizer', 'lion', "'lion'"],
    ['train.py', ARGS, 'width', 256, '256'],
    ['train.py', ARGS, 'warmup_steps', 250, '250'],
    ['train_gpt.py', CLASSES, 'Hyperparameters.lr', 1e-3, '1e-3'],
    ['train_gpt.py', CLASSES, 'Hyperparameters.cooldown_frac', 0.25, '0.25'],
    ['train_gpt.py', CLASSES, 'Config.bias', false, 'False'],
    ['config.yaml', CONFIG_YAML, 'optimizer.beta1', 0.95, '0.95'],
  ];
  for (const [path, src, name, value, written] of cases) {
    for (const fresh of [false, true]) {
      const before = findKnobs(path, src, []);
      const knob = before.find((k) => k.name === name)!;
      assert.ok(knob, name);
      const out = setKnob(src, knob, value);
      const at = knob.span.start;
      assert.equal(out.slice(0, at), src.slice(0, at), `${name}: bytes before the literal`);
      assert.equal(out.slice(at + written.length), src.slice(knob.span.end), `${name}: bytes after the literal`);
      assert.equal(out.slice(at, at + written.length), written, name);
      // read back: from the analysis setKnob derived, and (fresh) from Python itself
      if (fresh) clearKnobCache();
      const after = findKnobs(path, out, []);
      assert.equal(after.find((k) => k.name === name)!.value, value, `${name} reads back (${fresh ? 'fresh' : 'derived'})`);
      assert.deepEqual(after.map((k) => k.name), before.map((k) => k.name), `${name}: the same knobs`);
      for (const k of after) {
        assert.equal(out.slice(k.span.start, k.span.end), k.text, `${name}: span of ${k.name}`);
        if (k.name !== name) assert.equal(k.value, before.find((b) => b.name === k.name)!.value);
      }
      if (!fresh) {
        const derived = JSON.stringify(after);
        clearKnobCache();
        assert.equal(JSON.stringify(findKnobs(path, out, [])), derived, `${name}: the derived analysis is what Python reads`);
      }
    }
  }
  // the rewritten argparse file still runs and parses the new defaults
  let out = ARGS;
  for (const [name, v] of [['compile', true], ['bias', false], ['lr', 5e-4], ['optimizer', 'sgd']] as const) {
    out = setKnob(out, findKnobs('train.py', out, []).find((k) => k.name === name)!, v);
  }
  assert.equal(runPython(out, ['--data', 'x', 'ds']).trim(), '0.0005 6 1 True False False sgd 128 100');
});

test('spans count UTF-16 code units: non-ASCII text before a knob', () => {
  const src = '# größe 😀 — 中文\nname = "😀"; n_layer = 4  # 層\nlr = 1e-3\n';
  const k = byName(findKnobs('t.py', src, []));
  assert.equal(src.slice(k.get('n_layer')!.span.start, k.get('n_layer')!.span.end), '4');
  assert.equal(k.get('n_layer')!.description, '層');
  const out = setKnob(src, k.get('lr')!, 2e-3);
  assert.equal(out, '# größe 😀 — 中文\nname = "😀"; n_layer = 4  # 層\nlr = 2e-3\n');
  clearKnobCache();
  assert.equal(findKnobs('t.py', out, []).find((x) => x.name === 'lr')!.value, 2e-3);
});

test('a file Python cannot parse has no knobs and says why; discovery runs Python once for many files', () => {
  const files = { 'a.py': 'lr = 1e-3\n', 'b.py': 'def broken(:\n    pass\n', 'c.yaml': 'lr: [1,\n', 'notes.md': 'x = 1\n' };
  const r = discoverKnobReport(files, [], []);
  assert.deepEqual(r.knobs.map((k) => `${k.file}:${k.name}`), ['a.py:lr']);
  assert.deepEqual(r.skipped.map((s) => [s.file, s.name]), [['b.py', '*'], ['c.yaml', '*']]);
  assert.match(r.skipped[0]!.reason, /^not valid Python \(line 1: .*\): no knobs read$/);
  assert.throws(() => findKnobs('b.py', files['b.py'], [{ file: 'b.py', name: 'x' }]), (e: unknown) =>
    e instanceof UsageError && /^knobs: x in b\.py: the file is not valid Python/.test(e.message));
});
