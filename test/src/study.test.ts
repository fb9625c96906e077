import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { parseStudy, studyJsonSchema } from '../../src/study.ts';
import { studyYaml } from '../helpers/repo.ts';

const ROOT = resolve(import.meta.dirname, '../..');

test('the committed JSON Schema is the one the zod schema exports (run `autoagent schema -o schema/study.schema.json`)', () => {
  const committed = JSON.parse(readFileSync(resolve(ROOT, 'schema/study.schema.json'), 'utf8'));
  assert.deepEqual(committed, studyJsonSchema());
});

test('defaults fill in budgets, proposer and acceptance', () => {
  const s = parseStudy(studyYaml().replace(/^budget: .*$/m, '').replace(/^acceptance: .*$/m, ''), 'study.yaml');
  assert.equal(s.budget.experiments, 20);
  assert.equal(s.budget.experiment_seconds, 60);
  assert.equal(s.proposer.type, 'search');
  assert.deepEqual(s.acceptance, { baseline_repeats: 3, min_delta: 0, confirm_repeats: 1, alpha: 0.025, contamination: 'warn', seed_offset: 0 });
  assert.equal(s.metric.from, 'evaluator');
});

test('the shipped trainer study is valid', () => {
  const s = parseStudy(readFileSync(resolve(ROOT, 'gpu-trainer/study.yaml'), 'utf8'), 'gpu-trainer/study.yaml');
  assert.equal(s.kind, 'trainer');
  assert.deepEqual(s.editable, ['train.py']);
  assert.equal(s.metric.name, 'val_bpb');
});

test('trainer.budget: seconds by default; steps and tokens need their count, and a count needs its budget', () => {
  const trainer = (t: string) => `name: t\nkind: trainer\neditable: [train.py]\nmetric: { name: val_bpb, direction: minimize }\ntrainer: ${t}\n`;
  assert.equal(parseStudy(trainer('{}'), 's.yaml').trainer!.budget, 'seconds');
  assert.deepEqual(parseStudy(trainer('{ budget: steps, steps: 300 }'), 's.yaml').trainer!.steps, 300);
  assert.deepEqual(parseStudy(trainer('{ budget: tokens, tokens: 100000 }'), 's.yaml').trainer!.tokens, 100000);
  const err = (t: string) => {
    try {
      parseStudy(trainer(t), 's.yaml');
    } catch (e) {
      return (e as Error).message;
    }
    return 'accepted';
  };
  assert.equal(err('{ budget: steps }'), 's.yaml: field `trainer.steps`: a positive integer (trainer.budget is steps: how many steps each training run takes)');
  assert.equal(err('{ steps: 300 }'), 's.yaml: field `trainer.budget`: steps (trainer.steps is set, but the budget is seconds: set trainer.budget: steps, or remove trainer.steps)');
  assert.equal(err('{ budget: steps, steps: 300, tokens: 5 }'), 's.yaml: field `trainer.budget`: tokens (trainer.tokens is set, but the budget is steps: set trainer.budget: tokens, or remove trainer.tokens)');
  assert.match(err('{ budget: steps, steps: 2.5 }'), /^s\.yaml: field `trainer\.steps`: /);
  assert.match(err('{ budget: epochs }'), /^s\.yaml: field `trainer\.budget`: one of "seconds", "steps", "tokens"$/);
});
