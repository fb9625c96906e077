/**
 * The memorisation check (src/contamination.ts) on its own: what counts as a task's input, answer
 * or id in the lines a diff adds, and what does not (templates shared by tasks, lines already
 * there, a bare short answer).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ReferenceIndex, addedLines, judgeContamination, tokens, type TaskReference } from '../../src/contamination.ts';

const TEMPLATE = 'Solve the following problem and give the final answer after "####".';
const refs: TaskReference[] = [
  { id: 'train/1042', inputs: [`${TEMPLATE}\nNatalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. How many clips did she sell altogether?`], answers: ['72'] },
  { id: 'train/77', inputs: [`${TEMPLATE}\nWeng earns $12 an hour for babysitting. Yesterday, she just did 50 minutes of babysitting. How much did she earn?`], answers: ['10'] },
  { id: 't3', inputs: ['What is 3+3?'], answers: ['the answer is six'] },
];
const index = new ReferenceIndex(refs);
const check = (before: string, after: string, path = 'h/prompts/system.md') => judgeContamination(index, addedLines({ [path]: before }, [{ path, content: after }]), 'val', 'warn');

test('tokens: words and single punctuation marks, lowercased', () => {
  assert.deepEqual(tokens('What is 3+3?'), ['what', 'is', '3', '+', '3', '?']);
});

test('a pasted question with its answer is flagged as input and answer, with the file and line', () => {
  const c = check('You are a careful solver.\n', 'You are a careful solver.\nRemember: Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May -> 72\n');
  assert.ok(c);
  assert.deepEqual(c.tasks, ['train/1042']);
  assert.deepEqual(c.hits.map((h) => [h.task, h.field, h.path, h.line]), [['train/1042', 'input', 'h/prompts/system.md', 2], ['train/1042', 'answer', 'h/prompts/system.md', 2]]);
  assert.match(c.summary, /^the diff writes data of 1 validation task into the editable files: train\/1042 \(input, answer; h\/prompts\/system\.md line 2\)$/);
});

test('an id, a whole short input and a medium answer count on their own; a bare short answer does not', () => {
  assert.deepEqual(check('', 'If the task is train/77, say 10.\n')?.hits.map((h) => h.field), ['id', 'answer']);
  assert.deepEqual(check('', 'Q: What is 3 + 3 ?\n')?.hits.map((h) => h.field), ['input']);
  assert.deepEqual(check('', 'Always end with: the answer is six\n')?.hits.map((h) => h.field), ['answer']);
  assert.equal(check('', 'Give the number 72 only when sure.\n'), null);
  assert.equal(check('', 'A task id like t3 is not distinctive.\n'), null);
});

test('the shared instruction template belongs to no task; lines already in the file are not the diff\'s', () => {
  assert.equal(check('', `${TEMPLATE}\n`), null);
  const pasted = 'Weng earns $12 an hour for babysitting. Yesterday, she just did 50 minutes of babysitting.\n';
  assert.equal(check(pasted, pasted + 'Be brief.\n'), null);
  assert.ok(check('Be brief.\n', 'Be brief.\n' + pasted));
});
