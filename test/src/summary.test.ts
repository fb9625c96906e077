/**
 * What a run says it found: the once-only note after a baseline without noise, and the summary
 * line at its end (kept changes with their effect, or why nothing was kept), through real runs of
 * the quadratic command study (test/helpers/repo.ts), recorded in a MemoryStore (the loop takes any
 * RunStore: start and resume share the one object).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { startRun, resumeRun } from '../../src/loop.ts';
import { MemoryReporter } from '../../src/report.ts';
import { runSummary, zeroNoiseNote } from '../../src/summary.ts';
import { MemoryStore } from '../../traces/index.ts';
import type { Proposer } from '../../meta-agent/index.ts';
import { makeRepo, cleanup, PARAMS_PY, EVALUATE_PY, studyYaml } from '../helpers/repo.ts';

/** Proposes `X = v` for each v in turn, then stops. */
function setX(values: string[]): Proposer {
  let i = 0;
  return {
    name: 'scripted',
    propose: async () => (i < values.length
      ? { hypothesis: `X 1.0 → ${values[i]}`, edits: [{ path: 'params.py', content: PARAMS_PY.replace('X = 1.0', `X = ${values[i++]}`) }] }
      : null),
  };
}

const NOTE = /^note: the 3 baseline repeats gave the same loss \(13\): the metric shows no noise, so any improvement larger than min_delta \(now 0\) is kept; if the command is meant to vary with AUTOAGENT_SEED, it does not — set acceptance\.min_delta to the smallest change that matters$/;

test('a baseline without noise is said once, after the baseline; a kept change is summed up in plain words', async () => {
  const repo = makeRepo({ 'params.py': PARAMS_PY, 'evaluate.py': EVALUATE_PY, 'study.yaml': studyYaml() });
  try {
    const reporter = new MemoryReporter();
    const store = new MemoryStore();
    const first = await startRun(join(repo, 'study.yaml'), {
      overrides: { experiments: 1 }, unsafeNoSandbox: false, reporter, proposer: setX(['2.0']), store,
    });
    assert.equal(first.dbPath, '(memory)');
    assert.equal(first.status, 'finished', first.stopReason ?? '');
    const notes = reporter.lines.filter((l) => l.startsWith('note: the '));
    assert.equal(notes.length, 1, reporter.lines.join('\n'));
    assert.match(notes[0]!, NOTE);
    const at = reporter.lines.indexOf(notes[0]!);
    assert.match(reporter.lines[at - 1]!, /^baseline loss = 13 ± 0 /, 'right after the baseline line');

    // resumed with one more experiment (worse): the note is not said again; the summary counts both
    const again = new MemoryReporter();
    const res = await resumeRun(first.runId, repo, { overrides: { experiments: 2 }, unsafeNoSandbox: false, reporter: again, proposer: setX(['0.0']), store });
    assert.equal(res.status, 'finished', res.stopReason ?? '');
    assert.equal(again.lines.filter((l) => l.startsWith('note: the ')).length, 0, again.lines.join('\n'));
    const run = store.getRun(res.runId)!;
    assert.deepEqual(store.listExperiments(run.id).map((e) => e.decision), ['baseline', 'kept', 'discarded']);
    const summary = runSummary(store, run.id)!;
    assert.equal(summary, `kept 1 of 2 changes: #1 X 1.0 → 2.0 lowered loss 13 → 10 (-23.1%, beyond the noise margin 0); the run branch ${run.branch} holds it; \`autoagent show 1\` for the evidence`);
    assert.ok(again.lines.includes(summary), 'the run prints it at its end');
    assert.ok(again.lines.indexOf(summary) > again.lines.findIndex((l) => l.startsWith('[exp 2/2] discarded')));
  } finally {
    cleanup(repo);
  }
});

test('two kept changes: the total and each step; a noisy metric gets no note; nothing kept says the closest and why', async () => {
  const repo = makeRepo({ 'params.py': PARAMS_PY, 'evaluate.py': EVALUATE_PY, 'study.yaml': studyYaml() });
  const noisy = makeRepo({ 'params.py': PARAMS_PY, 'evaluate.py': EVALUATE_PY, 'study.yaml': studyYaml('env: { NOISE: "1.0" }\n') });
  try {
    const store = new MemoryStore();
    const res = await startRun(join(repo, 'study.yaml'), { overrides: { experiments: 2 }, unsafeNoSandbox: false, reporter: new MemoryReporter(), proposer: setX(['2.0', '3.0']), store });
    let run = store.getRun(res.runId)!;
    // the second proposal replaces X = 1.0 in the original text, so it is X = 3.0: loss 13 → 10 → 9
    assert.equal(runSummary(store, run.id), `kept 2 of 2 changes, lowering loss 13 → 9 (-30.8%) in all: #1 X 1.0 → 2.0 (13 → 10, margin 0); #2 X 1.0 → 3.0 (10 → 9, margin 0); the run branch ${run.branch} holds them; \`autoagent show 2\` for the evidence`);

    const reporter = new MemoryReporter();
    const r2 = await startRun(join(noisy, 'study.yaml'), { overrides: { experiments: 2 }, unsafeNoSandbox: false, reporter, proposer: setX(['1.5', '0.2']), store });
    assert.equal(r2.status, 'finished', r2.stopReason ?? '');
    assert.equal(reporter.lines.filter((l) => l.startsWith('note: ')).length, 0, 'seeded noise: no note');
    run = store.getRun(r2.runId)!;
    const exps = store.listExperiments(run.id);
    assert.deepEqual(exps.map((e) => e.decision), ['baseline', 'discarded', 'discarded']);
    const best = exps[1]!; // X = 1.5: truly 1.75 better, inside the margin of a noise of sd 1 over 3 repeats
    assert.ok(best.improvement! > 0 && best.improvement! < best.margin!, `${best.improvement} vs ${best.margin}`);
    const summary = runSummary(store, run.id)!;
    assert.match(summary, /^kept none of 2 changes: the best, #1 X 1\.0 → 1\.5 gave loss \S+ against \S+ \(Δ -\S+\), was not kept: a gain inside the noise margin \S+ can be the seed's alone \(baseline loss \S+ ± \S+ over 3 seeds\); `autoagent show 1` for the evidence$/);
    assert.ok(reporter.lines.includes(summary));
  } finally {
    cleanup(repo);
    cleanup(noisy);
  }
});

test('zeroNoiseNote: only when every repeat is identical, and only with two or more', () => {
  assert.equal(zeroNoiseNote([0.5], 'loss', 0), null);
  assert.equal(zeroNoiseNote([0.5, 0.5000001], 'loss', 0), null);
  assert.match(zeroNoiseNote([0.5, 0.5], 'acc', 0.01)!, /^note: the 2 baseline repeats gave the same acc \(0\.5\): .*min_delta \(now 0\.01\)/);
});
