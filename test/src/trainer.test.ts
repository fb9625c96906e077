/**
 * The trainer kind end to end on CPU with tiny budgets, against deliberately cheating train files.
 * Each cheat must be caught by locked code: nothing a train.py prints or writes is trusted.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { startRun } from '../../src/loop.ts';
import { MemoryReporter } from '../../src/report.ts';
import { openDb, listExperiments, evaluationsOf, getRun } from '../../traces/index.ts';
import { showText } from '../../src/views.ts';
import { findTorchPython } from '../../src/kinds/trainer.ts';
import type { Proposer, ProposalContext } from '../../meta-agent/index.ts';
import { cleanup, tinyTrainerRepo, TRAINER_PREPARE_PY as PREPARE, TRAINER_TRAIN_PY as TRAIN } from '../helpers/repo.ts';
import { startMockAnthropic, anthropicText } from '../helpers/mock-llm.ts';

function torchAvailable(): string | null {
  try {
    findTorchPython();
    return null;
  } catch (e) {
    return (e as Error).message;
  }
}

/** Python that exports a TorchScript model built by `body` (a Module class named M) and exits 0. */
function exporter(body: string, extra = ''): string {
  return `import json, os, torch, torch.nn as nn
${extra}
${body}
out = os.environ['AUTOAGENT_OUTPUT_DIR']
os.makedirs(out, exist_ok=True)
m = torch.jit.trace(M().eval(), torch.zeros(2, 32, dtype=torch.long))
m.save(os.path.join(out, 'model.pt'))
json.dump({'block_size': 32, 'vocab_size': 256}, open(os.path.join(out, 'model_meta.json'), 'w'))
`;
}

const PEEKER = exporter(`class M(nn.Module):
    def forward(self, idx):
        nxt = torch.cat([idx[:, 1:], idx[:, -1:]], dim=1)  # the NEXT token: cheating
        return torch.nn.functional.one_hot(nxt, 256).float() * 20.0`);

const NAN_MODEL = exporter(`class M(nn.Module):
    def forward(self, idx):
        return torch.zeros(idx.shape[0], idx.shape[1], 256) * float('nan')`);

const UNIFORM = `class M(nn.Module):
    def forward(self, idx):
        return torch.zeros(idx.shape[0], idx.shape[1], 256) + idx.unsqueeze(-1).float() * 0.0`;

const FAKE_PRINTER = exporter(UNIFORM, `print('METRIC val_bpb=0.001')\nprint('val_bpb: 0.001')\nprint('RESULT {"status": "ok", "val_bpb": 0.001}')`);

const VAL_READER = exporter(UNIFORM, `import glob, sys
data = os.environ['AUTOAGENT_DATA_DIR']
tried = [os.path.join(data, '..', 'val', 'val.bin'), os.path.join(data, '..', 'test', 'test.bin')] + glob.glob('/tmp/**/val.bin', recursive=True)
leaked = []
for p in tried:
    try:
        open(p, 'rb').read(10)
        leaked.append(p)
    except OSError:
        pass
print('LEAKED ' + ' '.join(leaked) if leaked else 'val and test unreadable')`);

const NO_EXPORT = `print('training... done (but nothing exported)')\n`;
const SLEEPER = `import time\nprint('training forever', flush=True)\ntime.sleep(600)\n`;

function scripted(trainFiles: Array<[string, string]>, onCall?: (i: number) => void): Proposer {
  let i = 0;
  return {
    name: 'scripted',
    propose: async (_ctx: ProposalContext) => {
      onCall?.(i);
      if (i >= trainFiles.length) return null;
      const [hypothesis, content] = trainFiles[i++]!;
      return { hypothesis, edits: [{ path: 'train.py', content }] };
    },
  };
}

test('trainer: a real baseline is scored by locked code, and every cheating train.py is caught', { timeout: 600_000 }, async (t) => {
  const why = torchAvailable();
  if (why) return t.skip(why);
  const repo = tinyTrainerRepo();
  try {
    const cheats: Array<[string, string]> = [
      ['peek at the next token', PEEKER],
      ['read the validation data', VAL_READER],
      ['print a fake val_bpb', FAKE_PRINTER],
      ['export NaN logits', NAN_MODEL],
      ['export nothing', NO_EXPORT],
      ['train past the budget', SLEEPER],
    ];
    const res = await startRun(join(repo, 'study.yaml'), {
      overrides: { experiments: cheats.length }, unsafeNoSandbox: false, reporter: new MemoryReporter(), proposer: scripted(cheats),
    });
    assert.equal(res.status, 'finished', res.stopReason ?? '');
    const db = openDb(res.dbPath);
    const run = getRun(db, res.runId)!;
    const exps = listExperiments(db, run.id);
    const base = exps[0]!;
    assert.equal(base.decision, 'baseline');
    assert.ok(base.metric! > 0.5 && base.metric! < 8, `baseline val_bpb ${base.metric} is a real score below uniform (8)`);
    const baseEval = evaluationsOf(db, base.id)[0]!;
    const tel = JSON.parse(baseEval.telemetry!);
    assert.ok(tel.train.steps > 0, 'training telemetry recorded');
    assert.ok(Array.isArray(tel.train.loss_curve) && tel.train.loss_curve.length > 0);
    assert.equal(tel.eval.status, 'ok');

    const by = (h: string) => exps.find((e) => e.hypothesis === h)!;
    // 1. causality probe
    assert.equal(by('peek at the next token').decision, 'rejected');
    assert.match(by('peek at the next token').reason!, /causality/);
    // 2. the training sandbox cannot read val or test data
    const reader = evaluationsOf(db, by('read the validation data').id)[0]!;
    assert.match(reader.stdout_tail, /val and test unreadable/);
    assert.doesNotMatch(reader.stdout_tail, /LEAKED/);
    // 3. a fake printed val_bpb gets the real score (uniform model: exactly 8 bits per byte)
    const fake = by('print a fake val_bpb');
    assert.equal(fake.decision, 'discarded');
    assert.ok(Math.abs(fake.metric! - 8) < 1e-6, `real score of the uniform model is 8.0, got ${fake.metric}`);
    // 4. NaN, missing export → crash; past the budget plus grace → timeout
    assert.equal(by('export NaN logits').decision, 'crash');
    assert.match(by('export NaN logits').reason!, /NaN|inf/i);
    assert.equal(by('export nothing').decision, 'crash');
    assert.match(by('export nothing').reason!, /no model export|model\.pt/);
    const sleeper = by('train past the budget');
    assert.equal(sleeper.decision, 'timeout');
    assert.ok(sleeper.wall_ms! < 30_000);
    // show displays telemetry and scoring evidence
    const text = showText(db, run, base);
    assert.match(text, /training: device=cpu/);
    assert.match(text, /loss curve: /);
    assert.match(text, /scoring: status=ok/);
    db.close();
  } finally {
    cleanup(repo);
  }
});

// the four runs below share nothing (each its own repository, store and sandboxes) and none of them
// asserts on a score the training clock decides: they run at once (the cheats above ran alone), with
// a grace long enough that a slow start of four trainings at once never times one out
const LOOSE = '{ experiment_seconds: 3, grace_seconds: 30, evaluate_seconds: 60, experiments: 1 }';
describe('trainer runs at once', { concurrency: true }, () => {
  test('trainer: budget steps trains exactly trainer.steps steps in the sandbox, whatever experiment_seconds says', { timeout: 300_000 }, async (t) => {
    const why = torchAvailable();
    if (why) return t.skip(why);
    const repo = tinyTrainerRepo({
      budget: '{ experiment_seconds: 0.001, grace_seconds: 60, evaluate_seconds: 60, experiments: 0 }',
      trainer: '{ corpus: corpus.txt, eval_tokens: 4096, budget: steps, steps: 13 }',
    });
    try {
      const res = await startRun(join(repo, 'study.yaml'), { overrides: {}, unsafeNoSandbox: false, reporter: new MemoryReporter() });
      assert.equal(res.status, 'finished', res.stopReason ?? '');
      const db = openDb(res.dbPath);
      const base = listExperiments(db, res.runId)[0]!;
      assert.equal(base.decision, 'baseline');
      const tel = JSON.parse(evaluationsOf(db, base.id)[0]!.telemetry!);
      // a 0.001 s clock budget would stop after the first step: the steps budget decides
      assert.equal(tel.train.steps, 13);
      assert.equal(tel.train.budget, '13 steps');
      assert.equal(tel.eval.status, 'ok');
      db.close();
    } finally {
      cleanup(repo);
    }
  });

  test('trainer: editing the prepared data during a run stops it (locked manifest)', { timeout: 300_000 }, async (t) => {
    const why = torchAvailable();
    if (why) return t.skip(why);
    const repo = tinyTrainerRepo({ budget: LOOSE });
    try {
      const tamper = (i: number) => {
        if (i !== 0) return;
        const cacheRoot = join(repo, '.autoagent', 'cache');
        const cache = join(cacheRoot, readdirSync(cacheRoot).find((n) => !n.startsWith('.'))!);
        const val = join(cache, 'val', 'val.bin');
        writeFileSync(val, Buffer.alloc(readFileSync(val).length, 32)); // all spaces: trivially predictable
      };
      const res = await startRun(join(repo, 'study.yaml'), {
        overrides: { experiments: 1 }, unsafeNoSandbox: false, reporter: new MemoryReporter(),
        proposer: scripted([['anything', TRAIN.replace(/^LEARNING_RATE = .*$/m, 'LEARNING_RATE = 1e-3  # peak')]], tamper),
      });
      assert.equal(res.status, 'failed');
      assert.match(res.stopReason!, /locked file .*val\.bin changed since the run started/);
    } finally {
      cleanup(repo);
    }
  });

  test('trainer: editing prepare.py in the checkout stops the run', { timeout: 300_000 }, async (t) => {
    const why = torchAvailable();
    if (why) return t.skip(why);
    const repo = tinyTrainerRepo({ budget: LOOSE });
    try {
      const res = await startRun(join(repo, 'study.yaml'), {
        overrides: { experiments: 1 }, unsafeNoSandbox: false, reporter: new MemoryReporter(),
        proposer: scripted([['anything', TRAIN.replace(/^LEARNING_RATE = .*$/m, 'LEARNING_RATE = 1e-3  # peak')]], (i) => {
          if (i === 0) writeFileSync(join(repo, 'prepare.py'), PREPARE.replace('def ', 'def _unused(): pass\ndef '));
        }),
      });
      assert.equal(res.status, 'failed');
      assert.match(res.stopReason!, /locked file prepare\.py changed since the run started/);
    } finally {
      cleanup(repo);
    }
  });

  test('trainer: an llm proposer reads the loss curve in its digest and edits train.py (scripted model server)', { timeout: 300_000 }, async (t) => {
    const why = torchAvailable();
    if (why) return t.skip(why);
    const key = process.env.ANTHROPIC_API_KEY;
    process.env.ANTHROPIC_API_KEY = 'test-meta-key';
    let digest = '';
    const server = await startMockAnthropic((body: { messages: Array<{ content: unknown }> }) => {
      digest = JSON.stringify(body.messages[0]!.content);
      return anthropicText('```json\n' + JSON.stringify({
        hypothesis: 'N_LAYER 2 → 1: in 3 seconds a shallower model takes more steps',
        cited_traces: [], expected_effect: 'lower val_bpb from more steps',
        edits: [{ path: 'train.py', search: 'N_LAYER = 2', replace: 'N_LAYER = 1' }],
      }) + '\n```');
    });
    const repo = tinyTrainerRepo({ budget: LOOSE, extra: `proposer: { type: llm, base_url: ${server.url}, max_turns: 0 }\n` });
    try {
      const res = await startRun(join(repo, 'study.yaml'), { overrides: {}, unsafeNoSandbox: false, reporter: new MemoryReporter() });
      assert.equal(res.status, 'finished', res.stopReason ?? '');
      const db = openDb(res.dbPath);
      const run = getRun(db, res.runId)!;
      const exps = listExperiments(db, run.id);
      assert.equal(exps.length, 2);
      assert.equal(exps[1]!.proposer, 'llm');
      assert.ok(['kept', 'discarded'].includes(exps[1]!.decision!), `${exps[1]!.decision}: ${exps[1]!.reason}`);
      assert.match(exps[1]!.diff, /-N_LAYER = 2[\s\S]*\+N_LAYER = 1/);
      // the trainer digest: the baseline's evaluation with its loss numbers and the training figures
      assert.match(digest, /loss by step/);
      assert.match(digest, /tokens_per_s/);
      const text = showText(db, run, exps[1]!);
      assert.match(text, /hypothesis: N_LAYER 2 → 1/);
      assert.match(text, /expected: {3}lower val_bpb/);
      assert.match(text, /meta-agent conversation \(trace /);
      db.close();
    } finally {
      if (key === undefined) delete process.env.ANTHROPIC_API_KEY;
      else process.env.ANTHROPIC_API_KEY = key;
      await server.close();
      cleanup(repo);
    }
  });
});

test('trainer: no Python with torch → one line with the install command', () => {
  assert.throws(() => findTorchPython({ AUTOAGENT_PYTHON: '/bin/false' }), (e: Error) => {
    assert.match(e.message, /AUTOAGENT_PYTHON=\/bin\/false cannot import torch/);
    assert.match(e.message, /apt-get install python3-torch python3-numpy libopenblas0-pthread/);
    assert.equal(e.message.split('\n').length, 1);
    return true;
  });
});
