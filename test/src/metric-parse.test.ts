/**
 * Metrics are decimal numbers. Whatever JavaScript's Number() would have made of other text
 * (0x10 → 16, '' → 0, ' ' → 0, 0b1 → 1) is a recorded crash quoting the text, never a number;
 * nan / inf are numbers that are not finite: a crash too.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { parseMetricLines, parsePattern } from '../../src/kinds/common.ts';
import { startRun } from '../../src/loop.ts';
import { MemoryReporter } from '../../src/report.ts';
import { openDb, listExperiments, evaluationsOf } from '../../traces/index.ts';
import { makeRepo, cleanup, PARAMS_PY, studyYaml } from '../helpers/repo.ts';

const DECIMALS: Array<[string, number]> = [
  ['0', 0], ['12', 12], ['-3', -3], ['+3', 3], ['0.25', 0.25], ['.5', 0.5], ['5.', 5], ['-.5', -0.5], ['1e3', 1000],
  ['1E-3', 0.001], ['2.5e+2', 250], ['007', 7], ['  1.5  ', 1.5],
];
const NOT_DECIMAL = ['0x10', '0X1f', '0b1', '0o7', '1_000', '', ' ', '1,5', '1 000', '12abc', 'e5', '.', '-', '1e', '--1', '½', 'true', '[1]', '1.5 # best'];
const NOT_FINITE = ['nan', 'NaN', 'NAN', '-nan', 'inf', '-inf', '+Inf', 'INF', 'infinity', 'Infinity', '-Infinity', '1e999'];

test('METRIC lines: decimal numbers are read, anything else is an error quoting the line', () => {
  for (const [text, value] of DECIMALS) {
    const r = parseMetricLines(`METRIC loss=${text}\n`, 'loss');
    assert.equal(r.error, null, text);
    assert.equal(r.value, value, text);
    assert.equal(r.all.loss, value, text);
  }
  for (const text of NOT_DECIMAL) {
    const r = parseMetricLines(`METRIC loss=${text}\n`, 'loss');
    assert.equal(r.value, null, `${JSON.stringify(text)} must not be a number (got ${r.value})`);
    assert.ok(r.error, JSON.stringify(text));
    assert.match(r.error!, /^METRIC loss=.*: (nothing after "=" \()?not a decimal number\)?$/, JSON.stringify(text));
    assert.ok(r.error!.includes(`METRIC loss=${text.trim()}`), `${r.error} quotes ${JSON.stringify(text)}`);
    assert.equal('loss' in r.all, false);
  }
  for (const text of NOT_FINITE) {
    const r = parseMetricLines(`METRIC loss=${text}\n`, 'loss');
    assert.equal(r.value, null, text);
    assert.equal(r.error, `metric loss is not a finite number (METRIC loss=${text})`);
  }
  assert.equal(parseMetricLines('METRIC loss=0x10\n', 'loss').error, 'METRIC loss=0x10: not a decimal number');
  assert.equal(parseMetricLines('METRIC loss=\n', 'loss').error, 'METRIC loss=: nothing after "=" (not a decimal number)');
});

test('METRIC lines: the last line of the named metric decides; other metrics are kept when they are numbers', () => {
  const out = 'noise\nMETRIC loss=0x10\nMETRIC acc=0.9\nMETRIC size=1_000\n  METRIC loss = 2.5  \nMETRIC other=nan\n';
  const r = parseMetricLines(out, 'loss');
  assert.deepEqual(r, { value: 2.5, error: null, all: { loss: 2.5, acc: 0.9 } });
  const bad = parseMetricLines('METRIC loss=1.0\nMETRIC loss=0b1\n', 'loss');
  assert.deepEqual({ value: bad.value, error: bad.error }, { value: null, error: 'METRIC loss=0b1: not a decimal number' });
  assert.deepEqual(parseMetricLines('loss=1\nMETRICloss=2\n', 'loss'), { value: null, error: null, all: {} });
  // a long value is cut in the reason
  const long = parseMetricLines(`METRIC loss=${'x'.repeat(500)}\n`, 'loss').error!;
  assert.ok(long.length < 120, long);
});

test('metric.pattern: the last capture must be a decimal number; an empty capture is an error, never 0', () => {
  const pat = 'loss: (\\S*)';
  for (const [text, value] of DECIMALS) {
    if (/\s/.test(text)) continue;
    assert.deepEqual(parsePattern(`loss: ${text}\n`, pat), { value, error: null }, text);
  }
  for (const text of NOT_DECIMAL.filter((t) => !/\s/.test(t))) {
    const r = parsePattern(`loss: ${text}\n`, pat);
    assert.deepEqual(r, { value: null, error: `metric.pattern captured ${JSON.stringify(text)} (not a decimal number)` }, text);
  }
  for (const text of NOT_FINITE) {
    assert.deepEqual(parsePattern(`loss: ${text}\n`, pat), { value: null, error: `metric is not a finite number (metric.pattern captured ${JSON.stringify(text)})` }, text);
  }
  assert.deepEqual(parsePattern('loss: \n', pat), { value: null, error: 'metric.pattern captured "" (not a decimal number)' });
  assert.deepEqual(parsePattern('loss: x\n', 'loss=(.*)'), { value: null, error: null }, 'no match: neither');
  assert.deepEqual(parsePattern('a=1\na=2\n', 'a=(.*)'), { value: 2, error: null }, 'the last match');
  assert.deepEqual(parsePattern('loss:  0.5 \n', 'loss:(.*)'), { value: 0.5, error: null }, 'spaces around a number are fine');
  assert.deepEqual(parsePattern('loss:   \n', 'loss:(.*)'), { value: null, error: 'metric.pattern captured "   " (not a decimal number)' });
  // an optional group that took no part in the match captured nothing
  assert.deepEqual(parsePattern('loss\n', 'loss(?:=(\\d+))?'), { value: null, error: 'metric.pattern captured "" (not a decimal number)' });
});

async function baselineOf(files: Record<string, string>) {
  const repo = makeRepo(files);
  try {
    const res = await startRun(join(repo, 'study.yaml'), { overrides: {}, unsafeNoSandbox: false, reporter: new MemoryReporter() });
    const db = openDb(res.dbPath);
    try {
      const base = listExperiments(db, res.runId).find((e) => e.seq === 0)!;
      return { res, base, evals: evaluationsOf(db, base.id) };
    } finally {
      db.close();
    }
  } finally {
    cleanup(repo);
  }
}

const ONE = (yaml: string) => yaml.replace('baseline_repeats: 3', 'baseline_repeats: 1').replace('experiments: 8', 'experiments: 0');

test('a command study whose evaluator prints METRIC loss=0x10 records a crash quoting it, not 16', async () => {
  const { res, base, evals } = await baselineOf({ 'params.py': PARAMS_PY, 'evaluate.py': "print('METRIC loss=0x10')\n", 'study.yaml': ONE(studyYaml()) });
  assert.equal(res.status, 'failed', 'a baseline without one measured metric fails the run');
  assert.equal(evals.length, 1);
  assert.equal(evals[0]!.status, 'crash');
  assert.equal(evals[0]!.metric, null);
  assert.equal(evals[0]!.reason, 'METRIC loss=0x10: not a decimal number');
  assert.equal(base.metric, null);
  assert.match(res.stopReason ?? '', /METRIC loss=0x10: not a decimal number/);
});

test('a self-reported pattern that captures nothing records a crash, not 0', async () => {
  const yaml = ONE(studyYaml())
    .replace(`command: python3 -c "print('trained')"`, 'command: echo loss=')
    .replace(/^evaluate: .*\n/m, '')
    .replace('direction: minimize }', `direction: minimize, from: output, pattern: 'loss=(\\S*)' }`);
  const { res, evals } = await baselineOf({ 'params.py': PARAMS_PY, 'evaluate.py': '', 'study.yaml': yaml });
  assert.equal(res.status, 'failed');
  assert.equal(evals[0]!.status, 'crash');
  assert.equal(evals[0]!.metric, null);
  assert.equal(evals[0]!.reason, 'metric.pattern captured "" (not a decimal number)');
});
