/**
 * The optuna proposer: the real Optuna library through meta-agent/optuna_driver.py. Tests that
 * need Optuna are skipped (with the reason) where no Python has it; the install-line and
 * driver-failure tests run everywhere.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { OptunaProposer, findOptuna, startAssignment, versionAtLeast, OPTUNA_SAMPLERS, type OptunaMeta, type OptunaSampler } from '../../meta-agent/optuna.ts';
import { discoverKnobs, knobKey } from '../../meta-agent/search/knobs.ts';
import { searchSpace, type Dim } from '../../meta-agent/search/space.ts';
import { seededRandom } from '../../meta-agent/search/rng.ts';
import { applyEdits, filesHash } from '../../meta-agent/hash.ts';
import { ProposalFailed, type KnobDecl, type KnobValue, type LedgerEntry, type Proposal, type ProposalContext } from '../../meta-agent/types.ts';
import { parseStudy } from '../../src/study.ts';
import { startRun } from '../../src/loop.ts';
import { MemoryReporter } from '../../src/report.ts';
import { openDb, listExperiments, latestRun, getRun } from '../../traces/index.ts';
import { showData, showText } from '../../src/views.ts';
import { makeRepo, cleanup, PARAMS_PY, EVALUATE_PY, studyYaml } from '../helpers/repo.ts';

const BIN = resolve(import.meta.dirname, '../../bin/autoagent.js');

const optuna = (() => {
  try {
    return findOptuna();
  } catch (e) {
    return (e as Error).message;
  }
})();
const skip = typeof optuna === 'string' ? `no Python with Optuna here (${optuna})` : false;
const info = typeof optuna === 'string' ? null : optuna;
const samplerSkip = (s: OptunaSampler): string | false => {
  if (skip) return skip;
  if (s === 'cmaes' && !info!.cmaes) return 'no cmaes package';
  if (s === 'qmc' && !info!.scipy) return 'no SciPy';
  return false;
};

/** every kind of knob: log float, linear float at 0, int, bool, declared string choices */
const TRAIN_PY = `# a training script's settings
LR = 6e-4  # learning rate
DROPOUT = 0.0
N_LAYER = 4
USE_BIAS = True
OPTIMIZER = "adamw"

def main():
    pass
`;
const KNOBS: KnobDecl[] = [{ file: 'train.py', name: 'OPTIMIZER', choices: ['adamw', 'sgd', 'lion'] }];

function ctxFor(files: Record<string, string>, ledger: LedgerEntry[], seen: Set<string>, extra: Partial<ProposalContext> = {}): ProposalContext {
  return {
    files, editable: Object.keys(files), knobs: KNOBS, metric: { name: 'loss', direction: 'minimize' },
    ledger, random: seededRandom(0, ledger.length), seen, seq: ledger.length, ...extra,
  };
}

/** a smooth objective over the knobs, lowest at LR 2e-3, DROPOUT 0.1, N_LAYER 6, USE_BIAS false, lion */
function objective(a: Record<string, KnobValue>): number {
  const lr = Math.log10(a['train.py:LR'] as number) - Math.log10(2e-3);
  return lr * lr + ((a['train.py:DROPOUT'] as number) - 0.1) ** 2 + (((a['train.py:N_LAYER'] as number) - 6) / 4) ** 2
    + (a['train.py:USE_BIAS'] ? 0.1 : 0) + (a['train.py:OPTIMIZER'] === 'lion' ? 0 : 0.2);
}

function inside(d: Dim, v: KnobValue): boolean {
  switch (d.type) {
    case 'float': return typeof v === 'number' && v >= d.low && v <= d.high;
    case 'int': return Number.isInteger(v) && (v as number) >= d.low && (v as number) <= d.high;
    case 'bool': return typeof v === 'boolean';
    case 'choice': return d.choices.includes(v);
  }
}

/**
 * `n` proposals of a sampler as the loop would make them: each one evaluated with `objective`,
 * kept when it beats the incumbent; `crashAt` experiments crash. Returns the ledger and proposals.
 */
async function simulate(sampler: OptunaSampler, n: number, crashAt: number[] = [], seed = 0) {
  const base = { 'train.py': TRAIN_PY };
  const baseKnobs = discoverKnobs(base, ['train.py'], KNOBS);
  const start = Object.fromEntries(baseKnobs.map((k) => [knobKey(k), k.value]));
  const ledger: LedgerEntry[] = [{ seq: 0, hypothesis: 'baseline', decision: 'baseline', metric: objective(start) }];
  const seen = new Set([filesHash(base)]);
  let files: Record<string, string> = base;
  let best = objective(start);
  const proposals: Proposal[] = [];
  for (let seq = 1; seq <= n; seq++) {
    const p = await new OptunaProposer({ sampler, seed }).propose(ctxFor(files, ledger, seen));
    assert.ok(p, `${sampler} proposes at ${seq}`);
    proposals.push(p);
    const after = applyEdits(files, p.edits);
    seen.add(filesHash(after));
    const meta = p.meta as OptunaMeta;
    const crashed = crashAt.includes(seq);
    const metric = objective(meta.assignment);
    const kept = !crashed && metric < best;
    ledger.push({ seq, hypothesis: p.hypothesis, decision: crashed ? 'crash' : kept ? 'kept' : 'discarded', metric: crashed ? undefined : metric, meta: JSON.parse(JSON.stringify(p.meta)), proposer: 'optuna' });
    if (kept) {
      files = after;
      best = metric;
    }
  }
  return { ledger, proposals, start, space: searchSpace(baseKnobs, start), best, baseline: objective(start) };
}

/** one simulation per sampler, shared by the tests below (each proposal starts Python once) */
const LENGTH: Record<string, number> = { tpe: 15, cmaes: 14, random: 8, qmc: 8 };
const runs = new Map<string, ReturnType<typeof simulate>>();
function simulated(sampler: OptunaSampler) {
  if (!runs.has(sampler)) runs.set(sampler, simulate(sampler, LENGTH[sampler]!, [3]));
  return runs.get(sampler)!;
}
// the simulations share nothing and each proposal waits on a Python process: all start at once,
// each test awaits its own (a failure still fails the test that awaits it)
for (const s of ['tpe', 'cmaes', 'random', 'qmc'] as const) if (!samplerSkip(s)) simulated(s).catch(() => undefined);

for (const sampler of ['tpe', 'cmaes', 'random', 'qmc'] as const) {
  test(`${sampler}: proposals are valid assignments within the space, written exactly, never repeated`, { skip: samplerSkip(sampler) }, async () => {
    const { proposals, ledger, space, start } = await simulated(sampler);
    const hashes = new Set<string>();
    let files: Record<string, string> = { 'train.py': TRAIN_PY };
    proposals.forEach((p, i) => {
      const meta = p.meta as OptunaMeta;
      assert.equal(meta.proposer, 'optuna');
      assert.equal(meta.sampler, sampler);
      assert.deepEqual(meta.start, start);
      for (const d of space) assert.ok(inside(d, meta.assignment[d.key]!), `${sampler} #${i + 1}: ${d.key} = ${meta.assignment[d.key]} within ${JSON.stringify(d)}`);
      // the edited file holds exactly the assignment (every knob), and the hypothesis says what changed
      const after = applyEdits(files, p.edits);
      const written = Object.fromEntries(discoverKnobs(after, ['train.py'], KNOBS).map((k) => [knobKey(k), k.value]));
      assert.deepEqual(written, meta.assignment);
      assert.match(p.hypothesis, new RegExp(`^optuna ${sampler} trial ${meta.trial_number}: \\w+ \\S+ → \\S+(, \\w+ \\S+ → \\S+)*$`));
      assert.ok(meta.changed.length >= 1);
      const h = filesHash(after);
      assert.ok(!hashes.has(h), 'never a repeat');
      hashes.add(h);
      if (ledger[i + 1]!.decision === 'kept') files = after;
    });
  });
}

test('cmaes carries its optimizer through the ledger: the generation advances', { skip: samplerSkip('cmaes') }, async () => {
  // 3 numeric knobs (DROPOUT, LR, N_LAYER; the bool and the choice are not CMA's): a population of 4 + ⌊3 ln 3⌋ = 7
  const { proposals } = await simulated('cmaes');
  const gens = proposals.map((p) => (p.meta as OptunaMeta).sampler_state?.trial?.['cma:generation']);
  assert.ok(gens.every((g) => typeof g === 'number'), `every cmaes trial has its generation: ${gens}`);
  const stored = proposals.findIndex((p) => Object.keys((p.meta as OptunaMeta).sampler_state?.trial ?? {}).some((k) => k.startsWith('cma:optimizer')));
  assert.ok(stored > 0, 'the told optimizer is stored with the trial that told it');
  assert.ok(gens.slice(stored).every((g) => (g as number) >= 1), `after the first generation was told, the next ones follow: ${gens}`);
});

test('qmc walks one sequence: its position comes back from the ledger', { skip: samplerSkip('qmc') }, async () => {
  const { proposals } = await simulated('qmc');
  const ids = proposals.map((p) => Object.values((p.meta as OptunaMeta).sampler_state?.study ?? {})[0]);
  assert.deepEqual(ids, [0, 1, 2, 3, 4, 5, 6, 7]);
});

test('tpe beats its own baseline on a smooth objective, and the same ledger gives the same proposal', { skip }, async () => {
  const a = await simulated('tpe');
  assert.ok(a.best < a.baseline, `improves: ${a.best} < ${a.baseline}`);
  // the same ledger (rebuilt by a fresh proposer, as after a resume) gives exactly the same proposals
  const [b, c] = await Promise.all([simulate('tpe', 6, [3]), simulate('tpe', 3, [], 7)]);
  assert.deepEqual(b.proposals, a.proposals.slice(0, 6));
  // another seed, another sequence
  assert.notDeepEqual(c.proposals.map((p) => p.hypothesis), a.proposals.slice(0, 3).map((p) => p.hypothesis));
});

test('the ledger replay: baseline at the start values, crashes as FAIL, rejected and pending not told', { skip }, async () => {
  const { ledger } = await simulate('random', 5, [2]);
  // a rejected and a pending experiment, and one from another proposer with knob meta (told too)
  const assignment = { ...(ledger[1]!.meta as OptunaMeta).assignment, 'train.py:N_LAYER': 7 };
  ledger.push({ seq: 6, hypothesis: 'r', decision: 'rejected', meta: ledger[1]!.meta });
  ledger.push({ seq: 7, hypothesis: 'p', decision: 'pending', meta: ledger[3]!.meta });
  ledger.push({ seq: 8, hypothesis: 's', decision: 'discarded', metric: 9, meta: { proposer: 'search', assignment, changed: [{ knob: 'train.py:N_LAYER', from: 4, to: 7 }] } });
  const files = { 'train.py': TRAIN_PY };
  const p = new OptunaProposer({ sampler: 'random', seed: 0 });
  const knobs = discoverKnobs(files, ['train.py'], KNOBS);
  const { request } = p.request(ctxFor(files, ledger, new Set()), knobs);
  assert.deepEqual(request.trials.map((t) => t.state), ['complete', 'complete', 'fail', 'complete', 'complete', 'complete', 'complete']);
  assert.deepEqual(request.trials.map((t) => t.value), [ledger[0]!.metric, ledger[1]!.metric, null, ledger[3]!.metric, ledger[4]!.metric, ledger[5]!.metric, 9]);
  // the baseline is told at the run's starting values: LR 6e-4, DROPOUT 0, N_LAYER 4, USE_BIAS true (index 1), adamw (index 0)
  assert.deepEqual(request.trials[0]!.params, { 'train.py:DROPOUT': 0, 'train.py:LR': 6e-4, 'train.py:N_LAYER': 4, 'train.py:OPTIMIZER': 0, 'train.py:USE_BIAS': 1 });
  assert.equal(request.trials[6]!.params['train.py:N_LAYER'], 7);
  // the space is built around the start, whatever the incumbent is now (a dropout of 0.0 that
  // became 0.3 stays a linear [0, 1] knob, not a log-scale fraction)
  const moved = { 'train.py': TRAIN_PY.replace('LR = 6e-4', 'LR = 5e-3').replace('DROPOUT = 0.0', 'DROPOUT = 0.3') };
  const r2 = p.request(ctxFor(moved, ledger, new Set()), discoverKnobs(moved, ['train.py'], KNOBS)).request;
  assert.deepEqual(r2.space, request.space);
  assert.deepEqual(startAssignment(ledger, knobs)['train.py:LR'], 6e-4);
  // and Optuna takes a ledger with a crash in it
  assert.ok(await p.propose(ctxFor(files, ledger, new Set([filesHash(files)]))));
});

test('a small space is exhausted without repeats, then there is nothing left to propose', { skip }, async () => {
  // N_LAYER in [1, 3] at 2, USE_BIAS a bool: 6 assignments, 5 besides the incumbent
  const files = { 'model.py': 'N_LAYER = 2\nUSE_BIAS = False\n' };
  const knobs: KnobDecl[] = [{ file: 'model.py', name: 'N_LAYER', min: 1, max: 3 }];
  const ledger: LedgerEntry[] = [{ seq: 0, hypothesis: 'baseline', decision: 'baseline', metric: 1 }];
  const seen = new Set([filesHash(files)]);
  for (let seq = 1; seq <= 6; seq++) {
    const p = await new OptunaProposer({ sampler: 'random', seed: 0 }).propose({ ...ctxFor(files, ledger, seen), knobs });
    if (seq === 6) {
      assert.equal(p, null);
      break;
    }
    assert.ok(p, `proposal ${seq}`);
    const h = filesHash(applyEdits(files, p.edits));
    assert.ok(!seen.has(h));
    seen.add(h);
    ledger.push({ seq, hypothesis: p.hypothesis, decision: 'discarded', metric: 2, meta: p.meta });
  }
});

test('a driver that fails mid-run: the proposal fails with its last stderr line', { skip }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'autoagent-optuna-'));
  try {
    const fake = join(dir, 'python3');
    // the probe is answered by the real Python; a proposal dies the way a Python error does
    writeFileSync(fake, `#!/bin/sh\nif [ "$2" = "--probe" ]; then exec ${info!.python} "$@"; fi\necho 'Traceback (most recent call last):' >&2\necho 'MemoryError: the driver ran out of memory' >&2\nexit 1\n`);
    chmodSync(fake, 0o755);
    const p = new OptunaProposer({ sampler: 'tpe', seed: 0, env: { ...process.env, AUTOAGENT_PYTHON: fake } });
    const files = { 'train.py': TRAIN_PY };
    const ctx = ctxFor(files, [{ seq: 0, hypothesis: 'baseline', decision: 'baseline', metric: 1 }], new Set([filesHash(files)]));
    await assert.rejects(p.propose(ctx), (e: Error) => e instanceof ProposalFailed && e.message === 'MemoryError: the driver ran out of memory');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('the study file: type optuna with a sampler; a sampler on another proposer is refused', () => {
  const s = parseStudy(studyYaml('proposer: { type: optuna, sampler: cmaes, seed: 3 }\n'), 'study.yaml');
  assert.equal(s.proposer.type, 'optuna');
  assert.equal(s.proposer.sampler, 'cmaes');
  assert.equal(parseStudy(studyYaml('proposer: { type: optuna }\n'), 'study.yaml').proposer.sampler, undefined); // tpe
  assert.throws(() => parseStudy(studyYaml('proposer: { type: search, sampler: tpe }\n'), 'study.yaml'), /field `proposer.sampler`: applies to proposer type optuna only \(this proposer is search\)/);
  assert.throws(() => parseStudy(studyYaml('proposer: { type: optuna, sampler: bayes }\n'), 'study.yaml'), /field `proposer.sampler`: one of "tpe", "cmaes", "random", "qmc", "gp"/);
  assert.deepEqual([...OPTUNA_SAMPLERS], ['tpe', 'cmaes', 'random', 'qmc', 'gp']);
  assert.ok(versionAtLeast('3.6.0', '3.6') && versionAtLeast('4.2.1', '3.6') && !versionAtLeast('3.1.0', '3.6') && versionAtLeast('3.10.0', '3.6'));
});

// ------------------------------------------------------------------------ the real CLI

function cli(repo: string, args: string[], env: NodeJS.ProcessEnv = process.env) {
  return spawnSync(process.execPath, [BIN, ...args], { cwd: repo, encoding: 'utf8', env, timeout: 300_000 });
}

/** the CLI as `cli`, without blocking: other runs go on meanwhile */
function cliAsync(repo: string, args: string[]): Promise<{ status: number | null; stderr: string }> {
  return new Promise((done) => {
    const child = spawn(process.execPath, [BIN, ...args], { cwd: repo, stdio: ['ignore', 'ignore', 'pipe'], timeout: 300_000 });
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('close', (status) => done({ status, stderr }));
  });
}

test('no Python with Optuna: the run refuses to start with the install line (exit 1), nothing recorded', async () => {
  const repo = makeRepo({ 'params.py': PARAMS_PY, 'evaluate.py': EVALUATE_PY, 'study.yaml': studyYaml('proposer: { type: optuna }\n') });
  try {
    const fake = join(repo, '..', `${repo.split('/').pop()}-python`);
    writeFileSync(fake, "#!/bin/sh\necho \"ModuleNotFoundError: No module named 'optuna'\" >&2\nexit 1\n");
    chmodSync(fake, 0o755);
    for (const [env, says] of [
      [{ ...process.env, AUTOAGENT_PYTHON: fake }, `the optuna proposer needs Optuna, and AUTOAGENT_PYTHON=${fake} cannot import it: \`apt-get install python3-optuna\` (Debian/Ubuntu) or \`pip install optuna\``],
      [{ ...process.env, AUTOAGENT_PYTHON: join(repo, 'no-such-python') }, `the optuna proposer needs Optuna, and AUTOAGENT_PYTHON=${join(repo, 'no-such-python')} cannot import it: \`apt-get install python3-optuna\` (Debian/Ubuntu) or \`pip install optuna\``],
    ] as const) {
      const r = cli(repo, ['run', 'study.yaml', '--experiments', '2'], env);
      assert.equal(r.status, 1, r.stderr);
      assert.equal(r.stderr.trim(), `autoagent: ${says}`);
      assert.ok(!existsSync(join(repo, '.autoagent', 'autoagent.db')), 'no run was recorded');
    }
    rmSync(fake, { force: true });
  } finally {
    cleanup(repo);
  }
});

test('sampler gp on an Optuna older than 3.6: one line naming the version, exit 2, before anything runs', { skip: skip || (versionAtLeast(info!.optuna, '3.6') ? `Optuna ${info!.optuna} has GPSampler` : false) }, async () => {
  const repo = makeRepo({ 'params.py': PARAMS_PY, 'evaluate.py': EVALUATE_PY, 'study.yaml': studyYaml('proposer: { type: optuna, sampler: gp }\n') });
  try {
    const r = cli(repo, ['run', 'study.yaml', '--experiments', '2']);
    assert.equal(r.status, 2, r.stderr);
    assert.equal(r.stderr.trim(), `autoagent: sampler gp needs Optuna ≥ 3.6 (found ${info!.optuna}): \`pip install -U optuna\`, or use tpe`);
    assert.ok(!existsSync(join(repo, '.autoagent', 'autoagent.db')), 'no run was recorded');
  } finally {
    cleanup(repo);
  }
});

test('resume is exact: 3 experiments then resumed to 6 propose what one uninterrupted 6-experiment run does', { skip }, async () => {
  const study = studyYaml('proposer: { type: optuna, sampler: tpe, seed: 5 }\n');
  const a = makeRepo({ 'params.py': PARAMS_PY, 'evaluate.py': EVALUATE_PY, 'study.yaml': study });
  const b = makeRepo({ 'params.py': PARAMS_PY, 'evaluate.py': EVALUATE_PY, 'study.yaml': study });
  // the uninterrupted run (in b) goes on while the other (in a) runs and resumes: they share nothing
  const running = cliAsync(b, ['run', 'study.yaml', '--experiments', '6']);
  try {
    const first = await cliAsync(a, ['run', 'study.yaml', '--experiments', '3']);
    assert.equal(first.status, 0, first.stderr);
    const dbA = openDb(join(a, '.autoagent', 'autoagent.db'));
    const runA = latestRun(dbA)!;
    assert.equal(listExperiments(dbA, runA.id).length, 4);
    dbA.close();
    const resumed = await cliAsync(a, ['resume', runA.id, '--experiments', '6']);
    assert.equal(resumed.status, 0, resumed.stderr);
    const whole = await running;
    assert.equal(whole.status, 0, whole.stderr);
    const rows = (repo: string) => {
      const db = openDb(join(repo, '.autoagent', 'autoagent.db'));
      const out = listExperiments(db, latestRun(db)!.id).map((e) => ({ seq: e.seq, hypothesis: e.hypothesis, diff: e.diff, decision: e.decision, metric: e.metric, meta: e.meta }));
      db.close();
      return out;
    };
    const ra = rows(a);
    const rb = rows(b);
    assert.equal(ra.length, 7);
    assert.deepEqual(ra, rb);
    for (const r of ra.slice(1)) assert.match(r.hypothesis, /^optuna tpe trial \d+: /);
  } finally {
    await running;
    cleanup(a);
    cleanup(b);
  }
});

test('a real run with optuna tpe on the quadratic improves on the baseline', { skip }, async () => {
  const repo = makeRepo({ 'params.py': PARAMS_PY, 'evaluate.py': EVALUATE_PY, 'study.yaml': studyYaml('proposer: { type: optuna, sampler: tpe }\n') });
  try {
    const res = await startRun(join(repo, 'study.yaml'), { overrides: { experiments: 8 }, unsafeNoSandbox: false, reporter: new MemoryReporter() });
    assert.equal(res.status, 'finished', res.stopReason ?? '');
    const db = openDb(res.dbPath);
    const exps = listExperiments(db, res.runId);
    // `autoagent show N` says what Optuna proposed; --json has the sampler and the assignment
    const shown = showData(db, getRun(db, res.runId)!, exps[1]!);
    assert.match(showText(db, getRun(db, res.runId)!, exps[1]!), /^hypothesis: optuna tpe trial 1: (X 1\.0 → \S+|N 2 → \d+)(, N 2 → \d+)?$/m);
    assert.equal((shown.meta as OptunaMeta).sampler, 'tpe');
    assert.deepEqual(Object.keys((shown.meta as OptunaMeta).assignment), ['params.py:X', 'params.py:N']);
    db.close();
    assert.equal(exps.length, 9);
    assert.ok(exps.slice(1).every((e) => e.proposer === 'optuna' && /^optuna tpe trial \d+: /.test(e.hypothesis)));
    const kept = exps.filter((e) => e.decision === 'kept');
    assert.ok(kept.length >= 1, 'at least one improvement kept');
    assert.ok(kept[kept.length - 1]!.metric! < exps[0]!.metric!, `best ${kept[kept.length - 1]!.metric} < baseline ${exps[0]!.metric}`);
  } finally {
    cleanup(repo);
  }
});
