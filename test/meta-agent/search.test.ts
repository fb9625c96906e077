import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parse as parseYaml } from 'yaml';
import { filesHash, applyEdits } from '../../meta-agent/hash.ts';
import type { KnobDecl, LedgerEntry, Proposal, ProposalContext, Proposer } from '../../meta-agent/types.ts';
import { findKnobs, setKnob, formatKnobValue, discoverKnobs, type Knob } from '../../meta-agent/search/knobs.ts';
import { SearchProposer, RandomProposer, seededRandom } from '../../meta-agent/search/index.ts';
import { searchSpace, toUnit, fromUnit } from '../../meta-agent/search/space.ts';
import { UsageError } from '../../base/errors.ts';

// ---------------------------------------------------------------- fixtures

const TRAIN_PY = `"""
Train a small GPT on the prepared corpus.

The docstring mentions a setting on its own line:
X = 5
"""
import math

import torch

# ---- hyperparameters: the knobs ----
LEARNING_RATE = 6e-4  # peak AdamW learning rate
WEIGHT_DECAY: float = 0.1  # decoupled weight decay
N_LAYER = 4  # transformer blocks
N_EMBD = 128
BATCH_SIZE = 64    # sequences per step
MAX_ITERS = 1_000
WARMUP_FRAC = .05  # fraction of steps spent warming up
GRAD_CLIP = 1.0
DROPOUT = 0.0
INIT_SHIFT = -1e-3
LOGIT_BIAS = -2
USE_BIAS = False  # bias in linear layers
COMPILE: bool = True
SEED = 1337  # never searched unless declared
OPTIMIZER = "adamw"  # a string: searched only with declared choices
SCHEDULE = 'cosine'
VOCAB = 2 ** 10
HIDDEN = N_EMBD * 4
BETAS = (0.9, 0.95)
DEVICE = torch.device("cpu")
LAYER_SIZES = [4, 4]
MASK = 0xFF
EVAL_EVERY = 100
EVAL_EVERY = 200
CTX_LEN = 256
if torch.cuda.is_available():
    CTX_LEN = 512
lr_min = 1e-5  # lowercase: a knob too
ATTN_DROP = 0.1; RESID_DROP = 0.1
CONFIG = dict(
    N_HEAD=4,
)
SCALE = (
1.5
)
TOTAL = \\
    5
N_HEAD = 4 if N_LAYER > 2 else 2


def lr_at(step):
    WARM = 10
    return LEARNING_RATE * min(1.0, step / WARM)


def usage():
    return """
MAX_TOKENS = 10
"""


class Block(torch.nn.Module):
    N_INNER = 512

    def __init__(self):
        super().__init__()
        self.HIDDEN = 3


HEAD_DIM = 32  # per attention head

if __name__ == "__main__":
    STEPS = 3
    print(lr_at(STEPS))
`;

function summary(k: Knob) {
  return { name: k.name, type: k.type, value: k.value, line: k.line, text: k.text };
}

function lineOf(src: string, needle: string): number {
  const i = src.indexOf(needle);
  assert.ok(i >= 0, needle);
  return src.slice(0, i).split('\n').length;
}

// ---------------------------------------------------------------- discovery

test('findKnobs: exactly the top-level literal hyperparameters of a realistic train file', () => {
  const knobs = findKnobs('train.py', TRAIN_PY, []);
  const L = (s: string) => lineOf(TRAIN_PY, s);
  assert.deepEqual(knobs.map(summary), [
    { name: 'LEARNING_RATE', type: 'float', value: 6e-4, line: L('LEARNING_RATE ='), text: '6e-4' },
    { name: 'WEIGHT_DECAY', type: 'float', value: 0.1, line: L('WEIGHT_DECAY:'), text: '0.1' },
    { name: 'N_LAYER', type: 'int', value: 4, line: L('N_LAYER ='), text: '4' },
    { name: 'N_EMBD', type: 'int', value: 128, line: L('N_EMBD ='), text: '128' },
    { name: 'BATCH_SIZE', type: 'int', value: 64, line: L('BATCH_SIZE ='), text: '64' },
    { name: 'MAX_ITERS', type: 'int', value: 1000, line: L('MAX_ITERS ='), text: '1_000' },
    { name: 'WARMUP_FRAC', type: 'float', value: 0.05, line: L('WARMUP_FRAC ='), text: '.05' },
    { name: 'GRAD_CLIP', type: 'float', value: 1, line: L('GRAD_CLIP ='), text: '1.0' },
    { name: 'DROPOUT', type: 'float', value: 0, line: L('DROPOUT ='), text: '0.0' },
    { name: 'INIT_SHIFT', type: 'float', value: -1e-3, line: L('INIT_SHIFT ='), text: '-1e-3' },
    { name: 'LOGIT_BIAS', type: 'int', value: -2, line: L('LOGIT_BIAS ='), text: '-2' },
    { name: 'USE_BIAS', type: 'bool', value: false, line: L('USE_BIAS ='), text: 'False' },
    { name: 'COMPILE', type: 'bool', value: true, line: L('COMPILE:'), text: 'True' },
    // lowercase module-level names are knobs too; so are several statements on a line and a
    // literal in parentheses or after a line continuation (Python's parser reads them)
    { name: 'lr_min', type: 'float', value: 1e-5, line: L('lr_min ='), text: '1e-5' },
    { name: 'ATTN_DROP', type: 'float', value: 0.1, line: L('ATTN_DROP ='), text: '0.1' },
    { name: 'RESID_DROP', type: 'float', value: 0.1, line: L('ATTN_DROP ='), text: '0.1' },
    { name: 'SCALE', type: 'float', value: 1.5, line: L('SCALE =') + 1, text: '1.5' },
    { name: 'TOTAL', type: 'int', value: 5, line: L('TOTAL =') + 1, text: '5' },
    { name: 'HEAD_DIM', type: 'int', value: 32, line: L('HEAD_DIM ='), text: '32' },
  ]);
  const byName = new Map(knobs.map((k) => [k.name, k]));
  assert.equal(byName.get('LEARNING_RATE')!.description, 'peak AdamW learning rate');
  assert.equal(byName.get('BATCH_SIZE')!.description, 'sequences per step');
  assert.equal(byName.get('N_EMBD')!.description, undefined);
  for (const k of knobs) {
    assert.equal(TRAIN_PY.slice(k.span.start, k.span.end), k.text, `span of ${k.name}`);
    assert.equal(k.file, 'train.py');
  }
});

test('findKnobs: inferred bounds and scale', () => {
  const byName = new Map(findKnobs('train.py', TRAIN_PY, []).map((k) => [k.name, k]));
  const b = (n: string) => {
    const k = byName.get(n)!;
    return { min: k.min, max: k.max, minExclusive: k.minExclusive ?? false, log: k.log };
  };
  // positive fractions stay in (0, 1], on a log scale
  assert.deepEqual(b('LEARNING_RATE'), { min: 0, max: 1, minExclusive: true, log: true });
  assert.deepEqual(b('WEIGHT_DECAY'), { min: 0, max: 1, minExclusive: true, log: true });
  assert.deepEqual(b('WARMUP_FRAC'), { min: 0, max: 1, minExclusive: true, log: true });
  // positive floats >= 1 stay > 0
  assert.deepEqual(b('GRAD_CLIP'), { min: 0, max: undefined, minExclusive: true, log: true });
  // zero float: a fraction in [0, 1], linear
  assert.deepEqual(b('DROPOUT'), { min: 0, max: 1, minExclusive: false, log: false });
  // negative: unbounded, linear
  assert.deepEqual(b('INIT_SHIFT'), { min: undefined, max: undefined, minExclusive: false, log: false });
  assert.deepEqual(b('LOGIT_BIAS'), { min: undefined, max: undefined, minExclusive: false, log: false });
  // positive ints stay >= 1
  assert.deepEqual(b('N_LAYER'), { min: 1, max: undefined, minExclusive: false, log: false });
  assert.deepEqual(b('MAX_ITERS'), { min: 1, max: undefined, minExclusive: false, log: false });
});

test('findKnobs: zero int stays >= 0', () => {
  const [k] = findKnobs('t.py', 'WARMUP_STEPS = 0\n', []);
  assert.equal(k!.min, 0);
  assert.equal(k!.max, undefined);
});

test('findKnobs: declarations add bounds, log scale, choices and lowercase names', () => {
  const decls: KnobDecl[] = [
    { file: 'train.py', name: 'OPTIMIZER', choices: ['adamw', 'lion', 'sgd'] },
    { file: 'train.py', name: 'lr_min', min: 1e-6, max: 1e-4 },
    { file: 'train.py', name: 'N_LAYER', min: 2, max: 12 },
    { file: 'train.py', name: 'LEARNING_RATE', max: 1e-2, log: false },
    { file: 'train.py', name: 'SEED', min: 0, max: 10_000 },
    { file: 'train.py', name: 'BATCH_SIZE', choices: [32, 64, 128] },
    { file: 'other.py', name: 'IGNORED_HERE' },
  ];
  const knobs = findKnobs('train.py', TRAIN_PY, decls);
  const byName = new Map(knobs.map((k) => [k.name, k]));
  const opt = byName.get('OPTIMIZER')!;
  assert.equal(opt.type, 'choice');
  assert.equal(opt.value, 'adamw');
  assert.deepEqual(opt.choices, ['adamw', 'lion', 'sgd']);
  assert.equal(opt.text, '"adamw"');
  const lrMin = byName.get('lr_min')!;
  assert.equal(lrMin.type, 'float');
  assert.equal(lrMin.min, 1e-6);
  assert.equal(lrMin.max, 1e-4);
  assert.equal(lrMin.log, true, 'min > 0 → log scale by default');
  assert.equal(lrMin.description, 'lowercase: a knob too');
  assert.deepEqual([byName.get('N_LAYER')!.min, byName.get('N_LAYER')!.max], [2, 12]);
  const lr = byName.get('LEARNING_RATE')!;
  assert.deepEqual([lr.min, lr.max, lr.log], [0, 1e-2, false]);
  assert.equal(byName.get('SEED')!.type, 'int');
  assert.equal(byName.get('BATCH_SIZE')!.type, 'choice');
  assert.deepEqual(byName.get('BATCH_SIZE')!.choices, [32, 64, 128]);
  assert.ok(byName.get('SEED')!.declared);
  assert.ok(!byName.get('N_EMBD')!.declared);
  // SCHEDULE is a string without choices: still not a knob
  assert.ok(!byName.has('SCHEDULE'));
});

test('findKnobs: declaration errors name the knob, the file and the reason', () => {
  const bad = (decl: KnobDecl, re: RegExp) =>
    assert.throws(() => findKnobs('train.py', TRAIN_PY, [decl]), (e: unknown) => {
      assert.ok(e instanceof UsageError, 'a UsageError (one line, exit 2)');
      assert.match((e as Error).message, re);
      return true;
    });
  bad({ file: 'train.py', name: 'NOPE' }, /^knobs: NOPE not found as a top-level literal in train\.py/);
  bad({ file: 'train.py', name: 'VOCAB' }, /^knobs: VOCAB not found as a top-level literal in train\.py/);
  bad({ file: 'train.py', name: 'WARM' }, /^knobs: WARM not found as a top-level literal in train\.py/);
  bad({ file: 'train.py', name: 'X' }, /^knobs: X not found as a top-level literal in train\.py/);
  bad({ file: 'train.py', name: 'EVAL_EVERY' }, /^knobs: EVAL_EVERY .*assigned more than once.* in train\.py/);
  bad({ file: 'train.py', name: 'CTX_LEN' }, /^knobs: CTX_LEN .*assigned more than once.* in train\.py/);
  bad({ file: 'train.py', name: 'SCHEDULE' }, /^knobs: SCHEDULE in train\.py is a string.*choices/);
  bad({ file: 'train.py', name: 'N_LAYER', min: 8, max: 2 }, /^knobs: N_LAYER in train\.py: min 8 is greater than max 2/);
  bad({ file: 'train.py', name: 'INIT_SHIFT', log: true }, /^knobs: INIT_SHIFT in train\.py: log scale needs a positive value/);
  bad({ file: 'train.py', name: 'USE_BIAS', min: 0 }, /^knobs: USE_BIAS in train\.py is a bool/);
  assert.throws(() => findKnobs('notes.txt', 'A = 1\n', [{ file: 'notes.txt', name: 'A' }]), /knobs: A in notes\.txt: only \.py, \.yaml and \.yml files have knobs/);
});

test('findKnobs: other file types have no knobs', () => {
  assert.deepEqual(findKnobs('prompt.md', 'TEMPERATURE = 0.5\n', []), []);
  assert.deepEqual(findKnobs('tool.ts', 'const N = 5;\n', []), []);
});

test('discoverKnobs: only editable files; a declaration for a file outside them is an error', () => {
  const files = { 'gpu-trainer/train.py': 'N_LAYER = 4\n', 'gpu-trainer/prepare.py': 'EVAL_TOKENS = 100\n' };
  const knobs = discoverKnobs(files, ['gpu-trainer/train.py'], []);
  assert.deepEqual(knobs.map((k) => `${k.file}:${k.name}`), ['gpu-trainer/train.py:N_LAYER']);
  assert.throws(
    () => discoverKnobs(files, ['gpu-trainer/train.py'], [{ file: 'gpu-trainer/prepare.py', name: 'EVAL_TOKENS' }]),
    (e: unknown) => e instanceof UsageError && /^knobs: gpu-trainer\/prepare\.py \(declared for EVAL_TOKENS\) is not an editable file/.test(e.message),
  );
});

// ---------------------------------------------------------------- rewriting

test('setKnob rewrites only the literal and keeps every other byte', () => {
  const knobs = findKnobs('train.py', TRAIN_PY, [{ file: 'train.py', name: 'OPTIMIZER', choices: ['adamw', 'lion'] }]);
  const byName = new Map(knobs.map((k) => [k.name, k]));
  const cases: Array<[string, number | boolean | string, string]> = [
    ['LEARNING_RATE', 8.5e-4, 'LEARNING_RATE = 8.5e-4  # peak AdamW learning rate'],
    ['WEIGHT_DECAY', 0.15, 'WEIGHT_DECAY: float = 0.15  # decoupled weight decay'],
    ['N_LAYER', 5, 'N_LAYER = 5  # transformer blocks'],
    ['BATCH_SIZE', 128, 'BATCH_SIZE = 128    # sequences per step'],
    ['MAX_ITERS', 2500, 'MAX_ITERS = 2_500'],
    ['USE_BIAS', true, 'USE_BIAS = True  # bias in linear layers'],
    ['OPTIMIZER', 'lion', 'OPTIMIZER = "lion"  # a string: searched only with declared choices'],
    ['GRAD_CLIP', 2, 'GRAD_CLIP = 2.0'],
    ['DROPOUT', 0.1, 'DROPOUT = 0.1'],
  ];
  for (const [name, value, line] of cases) {
    const k = byName.get(name)!;
    const out = setKnob(TRAIN_PY, k, value);
    const before = TRAIN_PY.split('\n');
    const after = out.split('\n');
    assert.equal(after.length, before.length);
    for (let i = 0; i < before.length; i++) {
      if (i === k.line - 1) assert.equal(after[i], line);
      else assert.equal(after[i], before[i], `line ${i + 1} unchanged`);
    }
    // round trip: the rewritten file has the new value and the same knobs otherwise
    const again = new Map(findKnobs('train.py', out, [{ file: 'train.py', name: 'OPTIMIZER', choices: ['adamw', 'lion'] }]).map((x) => [x.name, x]));
    assert.deepEqual([...again.keys()], [...byName.keys()]);
    assert.equal(again.get(name)!.value, value);
    for (const [n, other] of byName) if (n !== name) assert.equal(again.get(n)!.value, other.value);
  }
  // CRLF files stay CRLF
  const crlf = 'A = 1  # one\r\nB = 2.5\r\n';
  const [a, b2] = findKnobs('c.py', crlf, []);
  assert.equal(a!.description, 'one');
  assert.equal(setKnob(setKnob(crlf, b2!, 3.25), a!, 7), 'A = 7  # one\r\nB = 3.25\r\n');
});

test('setKnob refuses a knob that does not match the source (stale span)', () => {
  const [k] = findKnobs('t.py', 'A = 1\n', []);
  assert.throws(() => setKnob('A = 7\n', k!, 2), /stale knob t\.py:A/);
  assert.throws(() => setKnob('# new first line\nA = 1\n', k!, 2), /stale/);
});

test('formatKnobValue: values the way a person writes them', () => {
  const knob = (src: string): Knob => findKnobs('t.py', src, [])[0]!;
  const exp = knob('LR = 6e-4\n');
  const dec = knob('WD = 0.1\n');
  const big = knob('SCALE = 3.0\n');
  const int = knob('N = 4\n');
  const under = knob('STEPS = 10_000\n');
  const f = formatKnobValue;
  assert.equal(f(exp, 8.5e-4), '8.5e-4');
  assert.equal(f(exp, 0.0008500000001), '8.5e-4');
  assert.equal(f(exp, 0.00123456), '1.23e-3');
  assert.equal(f(exp, 1e-3), '1e-3');
  assert.equal(f(exp, 0.25), '0.25'); // large enough to read as a decimal
  assert.equal(f(dec, 0.123456), '0.123');
  assert.equal(f(dec, 0.15000000000000002), '0.15');
  assert.equal(f(dec, 0.0004), '4e-4'); // tiny values in exponent form
  assert.equal(f(dec, 1), '1.0');
  assert.equal(f(big, 12), '12.0');
  assert.equal(f(big, 2.34567), '2.35');
  assert.equal(f(big, 1234567), '1.23e6');
  assert.equal(f(big, -0.5), '-0.5');
  assert.equal(f(int, 5), '5');
  assert.equal(f(int, 5.4), '5');
  assert.equal(f(int, -3), '-3');
  assert.equal(f(under, 20000), '20_000');
  assert.equal(f(under, 1500), '1_500');
  assert.equal(f(under, 999), '999');
  assert.equal(f(knob("X = True\n"), false), 'False');
  const single = findKnobs('t.py', "OPT = 'adam'\n", [{ file: 't.py', name: 'OPT', choices: ['adam', "it's"] }])[0]!;
  assert.equal(f(single, 'sgd'), "'sgd'");
  assert.equal(f(single, "it's"), `"it's"`);
  // every formatted float parses back as a float literal (never `3` for 3.0)
  for (const v of [1, 2, 10, 100, 0.5, 1e-5, 3e7]) {
    const out = setKnob('A = 1.5\n', knob('A = 1.5\n'), v);
    const again = knob(out);
    assert.equal(again.type, 'float', out);
    assert.equal(again.value, v);
  }
});

// ---------------------------------------------------------------- YAML

const HARNESS_YAML = `# harness settings
model: claude-sonnet  # which model
temperature: 0.7  # sampling temperature
max_steps: 12
top_p: 1.0
retries: 0
verbose: false
seed: 7
system_prompt: |
  You are careful.
  max_tokens: 99
tools:
  - name: shell
    timeout: 30
limits: {a: 1,
  b: 2}
name: "agent"
budget: 2 * 3
temperature2: 0.5
temperature2: 0.6
`;

test('YAML knobs: top-level `key: literal`, same rules', () => {
  const knobs = findKnobs('harnesses/basic/harness.yaml', HARNESS_YAML, []);
  assert.deepEqual(knobs.map(summary), [
    { name: 'temperature', type: 'float', value: 0.7, line: 3, text: '0.7' },
    { name: 'max_steps', type: 'int', value: 12, line: 4, text: '12' },
    { name: 'top_p', type: 'float', value: 1, line: 5, text: '1.0' },
    { name: 'retries', type: 'int', value: 0, line: 6, text: '0' },
    { name: 'verbose', type: 'bool', value: false, line: 7, text: 'false' },
    // one nested mapping level, named `outer.inner`
    { name: 'limits.a', type: 'int', value: 1, line: 15, text: '1' },
    { name: 'limits.b', type: 'int', value: 2, line: 16, text: '2' },
  ]);
  assert.equal(knobs[0]!.description, 'sampling temperature');
  const withChoices = findKnobs('h.yml', HARNESS_YAML, [
    { file: 'h.yml', name: 'model', choices: ['claude-sonnet', 'claude-haiku', 'gpt 4o'] },
    { file: 'h.yml', name: 'temperature', min: 0, max: 2 },
  ]);
  const model = withChoices.find((k) => k.name === 'model')!;
  assert.equal(model.type, 'choice');
  assert.equal(model.value, 'claude-sonnet');
  const temp = withChoices.find((k) => k.name === 'temperature')!;
  assert.deepEqual([temp.min, temp.max], [0, 2]);

  let out = setKnob(HARNESS_YAML, knobs[0]!, 0.35);
  out = setKnob(out, findKnobs('h.yaml', out, []).find((k) => k.name === 'verbose')!, true);
  out = setKnob(out, findKnobs('h.yaml', out, []).find((k) => k.name === 'max_steps')!, 20);
  out = setKnob(out, findKnobs('h.yml', out, [{ file: 'h.yml', name: 'model', choices: ['claude-sonnet', 'gpt 4o'] }]).find((k) => k.name === 'model')!, 'gpt 4o');
  const parsed = parseYaml(out, { uniqueKeys: false }) as Record<string, unknown>;
  assert.equal(parsed.temperature, 0.35);
  assert.equal(parsed.verbose, true);
  assert.equal(parsed.max_steps, 20);
  assert.equal(parsed.model, 'gpt 4o');
  assert.match(out, /^temperature: 0\.35  # sampling temperature$/m);
  assert.match(out, /^model: "gpt 4o"  # which model$/m);
  // small floats in exponent form are still YAML floats
  const [lr] = findKnobs('c.yaml', 'lr: 0.001\n', []);
  const lrOut = setKnob('lr: 0.001\n', lr!, 0.00025);
  assert.equal(lrOut, 'lr: 2.5e-4\n');
  assert.equal((parseYaml(lrOut) as { lr: number }).lr, 0.00025);
  // `2 * 3` is a plain YAML string, not an expression
  assert.throws(() => findKnobs('h.yaml', HARNESS_YAML, [{ file: 'h.yaml', name: 'budget' }]), /knobs: budget in h\.yaml is a string; declare its `choices`/);
  assert.throws(() => findKnobs('h.yaml', HARNESS_YAML, [{ file: 'h.yaml', name: 'nope' }]), /knobs: nope not found as a top-level literal in h\.yaml/);
});

// ---------------------------------------------------------------- proposals

function ctxFor(files: Record<string, string>, opts: Partial<ProposalContext> & { seed?: number } = {}): ProposalContext {
  return {
    files,
    editable: opts.editable ?? Object.keys(files),
    knobs: opts.knobs ?? [],
    metric: opts.metric ?? { name: 'val_loss', direction: 'minimize' },
    ledger: opts.ledger ?? [{ seq: 0, hypothesis: 'baseline', decision: 'baseline', metric: 1 }],
    random: opts.random ?? seededRandom(opts.seed ?? 1, 0),
    seen: opts.seen ?? new Set([filesHash(files)]),
    ...(opts.screenMargin !== undefined ? { screenMargin: opts.screenMargin } : {}),
    ...(opts.baseFiles ? { baseFiles: opts.baseFiles } : {}),
  };
}

const proposers = (): Proposer[] => [new SearchProposer(), new RandomProposer()];

test('proposers have the names the study file uses', () => {
  assert.deepEqual(proposers().map((p) => p.name), ['search', 'random']);
});

test('a proposal changes knobs only, states exactly what changed, and records the assignment', async () => {
  const files = { 'train.py': TRAIN_PY };
  for (const p of proposers()) {
    for (let seed = 1; seed <= 20; seed++) {
      const prop = (await p.propose(ctxFor(files, { seed })))!;
      assert.ok(prop, `${p.name} proposes`);
      assert.equal(prop.edits.length, 1);
      assert.equal(prop.edits[0]!.path, 'train.py');
      const after = findKnobs('train.py', prop.edits[0]!.content, []);
      const before = findKnobs('train.py', TRAIN_PY, []);
      const meta = prop.meta as { proposer: string; assignment: Record<string, unknown>; changed: Array<{ knob: string; from: unknown; to: unknown }> };
      assert.equal(meta.proposer, p.name);
      // the full assignment of the candidate
      assert.deepEqual(meta.assignment, Object.fromEntries(after.map((k) => [`train.py:${k.name}`, k.value])));
      const changed = before.filter((k, i) => k.value !== after[i]!.value);
      assert.ok(changed.length >= 1);
      assert.deepEqual(meta.changed.map((c) => c.knob), changed.map((k) => `train.py:${k.name}`));
      // hypothesis: `NAME old → new; ...` without a file prefix (one file)
      const expected = changed.map((k) => {
        const now = after.find((a) => a.name === k.name)!;
        return `${k.name} ${k.text} → ${now.text}`;
      }).join('; ');
      assert.equal(prop.hypothesis, expected);
      // nothing but the changed literals differs
      const lines0 = TRAIN_PY.split('\n');
      const lines1 = prop.edits[0]!.content.split('\n');
      const changedLines = new Set(changed.map((k) => k.line - 1));
      lines0.forEach((l, i) => { if (!changedLines.has(i)) assert.equal(lines1[i], l); });
    }
  }
});

test('the hypothesis names the file when knobs come from several files', async () => {
  const files = { 'gpu-trainer/train.py': 'N_LAYER = 4\n', 'harness.yaml': 'temperature: 0.5\n' };
  const seenPrefixes = new Set<string>();
  for (let seed = 1; seed <= 10; seed++) {
    const prop = (await new SearchProposer().propose(ctxFor(files, { seed })))!;
    assert.match(prop.hypothesis, /^(train\.py:N_LAYER 4 → \d+|harness\.yaml:temperature 0\.5 → [\d.e-]+)(; .*)?$/);
    for (const part of prop.hypothesis.split('; ')) seenPrefixes.add(part.split(':')[0]!);
  }
  assert.equal(seenPrefixes.size, 2, 'both files are searched');
});

test('proposals never repeat a seen candidate nor the incumbent; null once the space is exhausted', async () => {
  // N_LAYER in [1, 3] at 2, USE_BIAS a bool: 6 assignments, 5 besides the incumbent
  const files = { 'model.py': 'N_LAYER = 2\nUSE_BIAS = False\n' };
  const knobs: KnobDecl[] = [{ file: 'model.py', name: 'N_LAYER', min: 1, max: 3 }];
  const counts: Record<string, number> = {};
  for (const p of proposers()) {
    const seen = new Set([filesHash(files)]);
    const got: string[] = [];
    for (let i = 0; i < 10; i++) {
      const prop = await p.propose(ctxFor(files, { knobs, seen, random: seededRandom(3, i) }));
      if (!prop) break;
      const h = filesHash(applyEdits(files, prop.edits));
      assert.ok(!seen.has(h), 'never a seen candidate');
      seen.add(h);
      got.push(prop.edits[0]!.content);
    }
    counts[p.name] = got.length;
    assert.equal(new Set(got).size, got.length);
    assert.ok(!got.includes(files['model.py']));
  }
  // search also tries pairs of knobs, so it reaches all 5; random changes one knob at a time (3)
  assert.deepEqual(counts, { search: 5, random: 3 });
});

test('null when the only candidate was already evaluated, and when there are no knobs', async () => {
  const files = { 'm.py': 'USE_BIAS = False\n' };
  const flipped = { 'm.py': 'USE_BIAS = True\n' };
  for (const p of proposers()) {
    const first = await p.propose(ctxFor(files));
    assert.equal(first!.edits[0]!.content, flipped['m.py']);
    assert.equal(first!.hypothesis, 'USE_BIAS False → True');
    const seen = new Set([filesHash(files), filesHash(flipped)]);
    assert.equal(await p.propose(ctxFor(files, { seen })), null);
    assert.equal(await p.propose(ctxFor({ 'notes.md': '# nothing\n', 'a.py': 'x = compute(1)\n' })), null);
  }
});

test('files outside the editable globs are not searched', async () => {
  const files = { 'train.py': 'N_LAYER = 4\n', 'prepare.py': 'EVAL_TOKENS = 100\n' };
  for (const p of proposers()) {
    for (let seed = 1; seed <= 10; seed++) {
      const prop = (await p.propose(ctxFor(files, { seed, editable: ['train.py'] })))!;
      assert.deepEqual(prop.edits.map((e) => e.path), ['train.py']);
    }
  }
});

test('mutations stay within declared and inferred bounds', async () => {
  const src = 'LEARNING_RATE = 9e-4\nN_LAYER = 6\nDROPOUT = 0.95\nWD = 0.5\nCLIP = 2.0\nWIDTH = 64\n';
  const knobs: KnobDecl[] = [
    { file: 't.py', name: 'LEARNING_RATE', min: 1e-4, max: 1e-3 },
    { file: 't.py', name: 'N_LAYER', min: 2, max: 6 },
    { file: 't.py', name: 'WIDTH', min: 16, max: 128 },
  ];
  const files = { 't.py': src };
  const bounds: Record<string, [number, number, boolean]> = {
    LEARNING_RATE: [1e-4, 1e-3, false], N_LAYER: [2, 6, false], DROPOUT: [0, 1, true], WD: [0, 1, true], CLIP: [0, Infinity, true], WIDTH: [16, 128, false],
  };
  const moved = new Set<string>();
  for (const p of proposers()) {
    for (let i = 0; i < 300; i++) {
      const prop = (await p.propose(ctxFor(files, { knobs, random: seededRandom(11, i) })))!;
      for (const k of findKnobs('t.py', prop.edits[0]!.content, knobs)) {
        const [lo, hi, positive] = bounds[k.name]!;
        const v = k.value as number;
        assert.ok(v >= lo && v <= hi, `${p.name}: ${k.name} = ${v} within [${lo}, ${hi}]`);
        if (positive) assert.ok(v > 0, `${k.name} stays positive`);
        if (k.name === 'N_LAYER' || k.name === 'WIDTH') assert.ok(Number.isInteger(v));
        if (v !== findKnobs('t.py', src, knobs).find((x) => x.name === k.name)!.value) moved.add(`${p.name}:${k.name}`);
      }
    }
  }
  // every knob was mutated by both proposers (the bounds did not freeze anything)
  assert.equal(moved.size, 12);
});

test('the search space: declared bounds as declared, others a window around the start value, wide ints on a log scale', () => {
  const src = 'LEARNING_RATE = 6e-4\nBATCH_SIZE = 64\nN_LAYER = 4\nDROPOUT = 0.0\nUSE_BIAS = False\n';
  const knobs = findKnobs('t.py', src, [{ file: 't.py', name: 'N_LAYER', min: 2, max: 12 }]);
  const dims = Object.fromEntries(searchSpace(knobs).map((d) => [d.key.split(':')[1], d]));
  assert.deepEqual(dims.N_LAYER, { key: 't.py:N_LAYER', type: 'int', low: 2, high: 12, log: false });
  assert.deepEqual(dims.BATCH_SIZE, { key: 't.py:BATCH_SIZE', type: 'int', low: 16, high: 256, log: true });
  const lr = dims.LEARNING_RATE as { low: number; high: number; log: boolean };
  assert.ok(Math.abs(lr.low - 6e-5) < 1e-12 && Math.abs(lr.high - 6e-3) < 1e-12 && lr.log);
  // an inferred upper bound (a fraction's 1) is stopped short of; a declared one is not
  assert.deepEqual(dims.DROPOUT, { key: 't.py:DROPOUT', type: 'float', low: 0, high: 0.98, log: false });
  const betas = Object.fromEntries(searchSpace(findKnobs('t.py', 'BETA2 = 0.99\nFRAC = 0.5\n', [{ file: 't.py', name: 'FRAC', min: 0, max: 1 }])).map((d) => [d.key.split(':')[1], d as { high: number }]));
  assert.ok(betas.BETA2!.high === 0.99 && betas.FRAC!.high === 1, JSON.stringify(betas));
  assert.deepEqual(dims.USE_BIAS, { key: 't.py:USE_BIAS', type: 'bool' });
  // the window stays centred on the run's start, not on where the incumbent has moved to
  const moved = findKnobs('t.py', src.replace('6e-4', '5e-3'), []);
  const again = searchSpace(moved, { 't.py:LEARNING_RATE': 6e-4 }).find((d) => d.key === 't.py:LEARNING_RATE') as { low: number; high: number };
  assert.ok(Math.abs(again.high - 6e-3) < 1e-12);
  for (const d of Object.values(dims)) {
    for (const u of [0, 0.37, 1]) assert.ok(Math.abs(toUnit(d, fromUnit(d, u)) - u) < (d.type === 'float' ? 1e-9 : 0.5), `${d.key} round-trips`);
  }
});

// ---------------------------------------------------------------- learning

const START = 'LEARNING_RATE = 6e-4  # peak learning rate\nN_LAYER = 4\nDROPOUT = 0.1\nWARMUP_STEPS = 100\nUSE_BIAS = False\n';
const LR_OPT = 3e-3;
const N_OPT = 9;

/** a deterministic synthetic validation loss: quadratic in log(LEARNING_RATE) and N_LAYER; the other knobs do nothing */
function loss(src: string): number {
  const v = Object.fromEntries(findKnobs('train.py', src, []).map((k) => [k.name, k.value as number]));
  return 2 + Math.log(v.LEARNING_RATE! / LR_OPT) ** 2 + 0.1 * (v.N_LAYER! - N_OPT) ** 2;
}

/** A ratchet loop: propose, evaluate, keep only strict improvements, append to the ledger. */
async function ratchet(p: Proposer, seed: number, n: number, hideLedger = false): Promise<{ best: number; ledger: LedgerEntry[]; files: Record<string, string>; seen: Set<string> }> {
  let files: Record<string, string> = { 'train.py': START };
  let best = loss(START);
  const ledger: LedgerEntry[] = [{ seq: 0, hypothesis: 'baseline', decision: 'baseline', metric: best }];
  const seen = new Set([filesHash(files)]);
  for (let i = 1; i <= n; i++) {
    const prop: Proposal | null = await p.propose({
      files, editable: ['train.py'], knobs: [], metric: { name: 'val_loss', direction: 'minimize' },
      ledger: hideLedger ? [ledger[0]!] : structuredClone(ledger), random: seededRandom(seed, i), seen: new Set(seen),
    });
    if (!prop) break;
    const cand = applyEdits(files, prop.edits);
    const h = filesHash(cand);
    assert.ok(!seen.has(h));
    seen.add(h);
    const m = loss(cand['train.py']!);
    const improvement = best - m;
    const kept = improvement > 0;
    // meta goes through the store as JSON
    ledger.push({ seq: i, hypothesis: prop.hypothesis, decision: kept ? 'kept' : 'discarded', metric: m, improvement, meta: JSON.parse(JSON.stringify(prop.meta)) });
    if (kept) { files = cand; best = m; }
  }
  return { best, ledger, files, seen };
}

test('search learns from the ledger: it beats the random baseline on a synthetic objective', async () => {
  const seeds = [1, 2, 3, 4, 5, 6];
  const start = loss(START);
  const excess = { search: [] as number[], random: [] as number[], blind: [] as number[] };
  for (const seed of seeds) {
    excess.search.push((await ratchet(new SearchProposer(), seed, 30)).best - 2);
    excess.random.push((await ratchet(new RandomProposer(), seed, 30)).best - 2);
    // the same search with the ledger hidden (only `seen` avoids repeats): what learning adds
    excess.blind.push((await ratchet(new SearchProposer(), seed, 30, true)).best - 2);
  }
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  const s = mean(excess.search);
  const r = mean(excess.random);
  const b = mean(excess.blind);
  console.log(`  excess loss at start ${(start - 2).toFixed(3)}; after 30 proposals, mean over ${seeds.length} seeds: search ${s.toFixed(4)}, random ${r.toFixed(4)} (${(r / s).toFixed(1)}x worse), search without the ledger ${b.toFixed(4)} (${(b / s).toFixed(1)}x worse)`);
  assert.ok(r < 0.5 * (start - 2), 'random improves over the start');
  assert.ok(s < 0.1 * (start - 2), 'search gets close to the optimum');
  assert.ok(s < r / 3, `search (${s}) clearly better than random (${r})`);
  assert.ok(s < b / 3, `the ledger is what makes search good (${s} vs ${b} without it)`);
  // better on most seeds, not only on average
  const wins = seeds.filter((_, i) => excess.search[i]! < excess.random[i]!).length;
  assert.ok(wins >= 5, `search beats random on ${wins}/6 seeds`);
});

test('resumable: the same ledger and the same random seed give the same proposal', async () => {
  const { ledger, files, seen } = await ratchet(new SearchProposer(), 5, 12);
  const ctx = (): ProposalContext => ({
    files, editable: ['train.py'], knobs: [], metric: { name: 'val_loss', direction: 'minimize' },
    ledger: JSON.parse(JSON.stringify(ledger)), random: seededRandom(5, 13), seen: new Set(seen),
  });
  for (const make of [() => new SearchProposer(), () => new RandomProposer()]) {
    const a = await make().propose(ctx());
    // a proposer instance that has already proposed (state must not leak between calls)
    const warm = make();
    await warm.propose({ ...ctx(), random: seededRandom(99, 1) });
    const b = await warm.propose(ctx());
    assert.deepEqual(b, a);
  }
  // and the ledger does change what search proposes
  const blank = await new SearchProposer().propose({ ...ctx(), ledger: [ledger[0]!] });
  const learned = await new SearchProposer().propose(ctx());
  assert.notDeepEqual(blank, learned);
});

test('search proposes whole assignments where its model expects an improvement beyond the margin, and says so', async () => {
  // five assignments along N_LAYER: the loss falls as N_LAYER rises; WARMUP does nothing
  const assign = (n: number) => ({ 'train.py:N_LAYER': n, 'train.py:WARMUP': 100 });
  const meta = (n: number) => ({ proposer: 'search', assignment: assign(n), changed: [{ knob: 'train.py:N_LAYER', from: 2, to: n }] });
  const ledger: LedgerEntry[] = [
    { seq: 0, hypothesis: 'baseline', decision: 'baseline', metric: 3, values: [3.01, 2.99, 3.0] },
    ...[3, 4, 5, 6].map((n, i): LedgerEntry => ({ seq: i + 1, hypothesis: `N_LAYER → ${n}`, decision: n === 6 ? 'kept' : 'discarded', metric: 3 - 0.2 * (n - 2), values: [3 - 0.2 * (n - 2)], meta: meta(n) })),
  ];
  const files = { 'train.py': 'N_LAYER = 6\nWARMUP = 100\n' };
  const ups: number[] = [];
  for (let seed = 1; seed <= 8; seed++) {
    const prop = (await new SearchProposer().propose(ctxFor(files, { ledger, random: seededRandom(seed, ledger.length), knobs: [{ file: 'train.py', name: 'N_LAYER', min: 1, max: 16 }], screenMargin: 0.05, baseFiles: { 'train.py': 'N_LAYER = 2\nWARMUP = 100\n' } })))!;
    const m = prop.meta as { assignment: Record<string, number>; model: { kind: string; predicted: { mean: number }; incumbent: { mean: number }; margin: number; assignments: number }; reasons: string[] };
    assert.equal(m.model.kind, 'gp-matern52');
    assert.equal(m.model.assignments, 5);
    assert.equal(m.model.margin, 0.05);
    assert.ok(m.model.predicted.mean < m.model.incumbent.mean, `it expects an improvement: ${JSON.stringify(m.model)}`);
    assert.match(m.reasons[0]!, /Gaussian process over 7 evaluation\(s\) of 5 assignment\(s\) expects val_loss/);
    ups.push(m.assignment['train.py:N_LAYER']!);
  }
  assert.ok(ups.filter((n) => n > 6).length >= 6, `N_LAYER keeps rising: ${ups}`);
});

test('a round of proposals (parallel slots) spreads out: a pending round-mate is believed to improve nothing', async () => {
  // a noisy bowl in two knobs, measured at seven assignments; the incumbent sits near the minimum
  const f = (x: number, n: number) => (x - 3) ** 2 + (n - 5) ** 2;
  const assign = (x: number, n: number) => ({ 'p.py:X': x, 'p.py:N': n });
  const tried: Array<[number, number]> = [[1, 2], [3.5, 3], [4.6, 1], [0.4, 1], [2.5, 4], [6.2, 6], [2.6, 4]];
  const ledger: LedgerEntry[] = [
    { seq: 0, hypothesis: 'baseline', decision: 'baseline', metric: f(1, 2), values: [f(1, 2) + 0.2, f(1, 2) - 0.2, f(1, 2)] },
    ...tried.slice(1).map(([x, n], i): LedgerEntry => ({ seq: i + 1, hypothesis: `X ${x}, N ${n}`, decision: i === 5 ? 'kept' : 'discarded', metric: f(x, n), values: [f(x, n)], meta: { proposer: 'search', assignment: assign(x, n), changed: [] } })),
  ];
  const files = { 'p.py': 'X = 2.6\nN = 4\n' };
  const knobs = [{ file: 'p.py', name: 'X', min: 0, max: 10 }, { file: 'p.py', name: 'N', min: 1, max: 10 }];
  // four proposals of one round, each seeing the ones before it: as pending round-mates (now), or only as seen files (before)
  const round = async (asPending: boolean) => {
    const out: Array<Record<string, number>> = [];
    const seen = new Set([filesHash(files)]);
    const l = structuredClone(ledger);
    for (let i = 0; i < 4; i++) {
      const prop = (await new SearchProposer().propose(ctxFor(files, { ledger: structuredClone(l), random: seededRandom(1, l.length), knobs, seen: new Set(seen), screenMargin: 0.3, baseFiles: { 'p.py': 'X = 1.0\nN = 2\n' } })))!;
      const a = (prop.meta as { assignment: Record<string, number> }).assignment;
      out.push(a);
      seen.add(filesHash(applyEdits(files, prop.edits)));
      if (asPending) l.push({ seq: l.length, hypothesis: prop.hypothesis, decision: 'pending', meta: JSON.parse(JSON.stringify(prop.meta)) });
    }
    // the smallest distance between two proposals of the round, in units of each knob's range
    let min = Infinity;
    for (let i = 0; i < out.length; i++) for (let j = i + 1; j < out.length; j++) {
      min = Math.min(min, Math.hypot((out[i]!['p.py:X']! - out[j]!['p.py:X']!) / 10, (out[i]!['p.py:N']! - out[j]!['p.py:N']!) / 9));
    }
    return { out, min };
  };
  const now = await round(true);
  const before = await round(false);
  // and before any model (the first round of a run): the initial steps of one round go different ways
  const closest = (pts: Array<[number, number]>) => {
    let m = Infinity;
    for (let i = 0; i < pts.length; i++) for (let j = i + 1; j < pts.length; j++) m = Math.min(m, Math.hypot((pts[i]![0] - pts[j]![0]) / 10, (pts[i]![1] - pts[j]![1]) / 9));
    return m;
  };
  const first = async (seed: number, asPending: boolean) => {
    const l: LedgerEntry[] = [{ seq: 0, hypothesis: 'baseline', decision: 'baseline', metric: f(1, 2), values: [f(1, 2)] }];
    const base = { 'p.py': 'X = 1.0\nN = 2\n' };
    const seen = new Set([filesHash(base)]);
    const out: Array<[number, number]> = [];
    for (let i = 0; i < 4; i++) {
      const prop = (await new SearchProposer().propose(ctxFor(base, { ledger: structuredClone(l), random: seededRandom(seed, l.length), knobs, seen: new Set(seen) })))!;
      const a = (prop.meta as { assignment: Record<string, number> }).assignment;
      out.push([a['p.py:X']!, a['p.py:N']!]);
      seen.add(filesHash(applyEdits(base, prop.edits)));
      if (asPending) l.push({ seq: l.length, hypothesis: prop.hypothesis, decision: 'pending', meta: JSON.parse(JSON.stringify(prop.meta)) });
    }
    return closest(out);
  };
  const spread: number[] = [];
  const blind: number[] = [];
  for (let seed = 1; seed <= 6; seed++) {
    spread.push(await first(seed, true));
    blind.push(await first(seed, false));
  }
  const avg = (xs: number[]) => xs.reduce((x, y) => x + y, 0) / xs.length;
  console.log(`  first round (no model yet), closest two of four over 6 seeds: ${spread.map((v) => v.toFixed(2)).join(' ')} with pending round-mates, ${blind.map((v) => v.toFixed(2)).join(' ')} without`);
  assert.ok(Math.min(...spread) > 0.15, `initial steps of one round nearly coincide: ${spread}`);
  assert.ok(avg(spread) > 1.5 * avg(blind), `${avg(spread)} vs ${avg(blind)}`);
  console.log(`  closest two proposals of a round: ${now.min.toFixed(3)} with pending round-mates (${JSON.stringify(now.out)}), ${before.min.toFixed(3)} without (${JSON.stringify(before.out)})`);
  assert.ok(now.min > 0.05, `proposals of one round nearly coincide: ${JSON.stringify(now.out)}`);
  assert.ok(now.min > 3 * before.min, `${now.min} vs ${before.min}`);
});

test('a knob declared with search: false is never proposed', async () => {
  const src = 'LR = 1e-3  # learning rate\nCOMPILE = True  # only matters on CUDA\n';
  assert.deepEqual(findKnobs('t.py', src, [{ file: 't.py', name: 'COMPILE', search: false }]).map((k) => k.name), ['LR']);
  const p = new SearchProposer();
  for (let i = 0; i < 20; i++) {
    const prop = await p.propose({
      files: { 't.py': src }, editable: ['t.py'], knobs: [{ file: 't.py', name: 'COMPILE', search: false }],
      metric: { name: 'loss', direction: 'minimize' }, ledger: [], random: seededRandom(i), seen: new Set(),
    });
    assert.ok(prop);
    assert.doesNotMatch(prop.hypothesis, /COMPILE/);
  }
});

test('search never proposes an inferred bound itself (Adam betas at 1.0 crash the script), even after crashes push it to the edges', async () => {
  const src = 'BETA1 = 0.9\nBETA2 = 0.99\nDROPOUT = 0.1\nLEARNING_RATE = 6e-4\nN_LAYER = 2\n';
  let files: Record<string, string> = { 't.py': src };
  const ledger: LedgerEntry[] = [{ seq: 0, hypothesis: 'baseline', decision: 'baseline', metric: 3.7 }];
  const seen = new Set([filesHash(files)]);
  let atBound = 0;
  for (let i = 1; i <= 12; i++) {
    const prop = await new SearchProposer().propose(ctxFor(files, { ledger: structuredClone(ledger), random: seededRandom(1, i), seen: new Set(seen), screenMargin: 0.02 }));
    if (!prop) break;
    const cand = applyEdits(files, prop.edits);
    seen.add(filesHash(cand));
    const v = Object.fromEntries(findKnobs('t.py', cand['t.py']!, []).map((k) => [k.name, k.value as number]));
    if (v.BETA1 === 1 || v.BETA2 === 1) atBound++;
    // every other proposal "crashes", as a script with a bad knob does
    ledger.push({ seq: i, hypothesis: prop.hypothesis, decision: i % 2 ? 'crash' : 'discarded', ...(i % 2 ? {} : { metric: 3.8 }), meta: JSON.parse(JSON.stringify(prop.meta)) });
  }
  assert.equal(atBound, 0, 'a beta proposed at exactly 1.0');
});
