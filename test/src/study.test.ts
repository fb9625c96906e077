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
  assert.deepEqual(s.acceptance, { baseline_repeats: 3, min_delta: 0, confirm_repeats: 1, alpha: 0.025 });
  assert.equal(s.metric.from, 'evaluator');
});

test('the shipped trainer study is valid', () => {
  const s = parseStudy(readFileSync(resolve(ROOT, 'gpu-trainer/study.yaml'), 'utf8'), 'gpu-trainer/study.yaml');
  assert.equal(s.kind, 'trainer');
  assert.deepEqual(s.editable, ['train.py']);
  assert.equal(s.metric.name, 'val_bpb');
});
