/**
 * Parallel slots, side by side in one run: the same study through the real loop and sandbox with
 * parallel 1, 2 and 4, for two kinds of evaluation —
 *   - wait-bound: the command sleeps (a harness waiting on model calls, a trainer on its own GPU):
 *     slots should divide the wall time;
 *   - CPU-bound: the command spins one core: on this machine's cores, slots help up to the core count.
 * Figures: wall time of the whole run (baseline + the experiments), the speed-up against parallel 1,
 * evaluations per minute, and the decisions (rounds change which candidates are tried, so the kept
 * counts are shown, not compared).
 *
 *   - slow proposer: the wait-bound command, with a proposer that takes 1 s per candidate (a model call):
 *     each candidate is screened while the next one is proposed.
 *   - at the optimum: the wait-bound command on a study that starts where nothing improves: screens
 *     fail (but for the α / k false passes), so rounds need no confirmation wave.
 * Another arm is the whole-run check: 8 experiments whose *evaluator* sleeps (the command does nothing).
 * Experiments per hour counts decided experiments over the whole run's wall time (baseline included).
 *
 * The floor: the fewest evaluation-times a run's own rounds allow on its slots, read from its ledger —
 * the baseline's repeats, then per round its screens, then (a round where a screen passed) its
 * confirmations and the incumbent's fresh repeat, each step ⌈evaluations / slots⌉ evaluation-times
 * long, as a step needs the one before (a confirmation needs its screen, the round's keep all of its
 * confirmations, the next round the keep). The parallel-1 run's floor over a run's is the speed-up
 * bound: what those rounds allow when an evaluation-time costs what it costs the sequential run.
 *
 *   node --import tsx bench/parallel.ts [--experiments 16] [--seconds 2] [--arms wait-bound,at-optimum,CPU-bound,slow-proposer,evaluator-wait]
 */
import { existsSync, rmSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { startRun } from '../src/loop.ts';
import type { Proposer } from '../meta-agent/types.ts';
import { MemoryReporter } from '../src/report.ts';
import { openDb, listExperiments, evaluationsOfRun, type EvaluationRow, type ExperimentRow } from '../traces/index.ts';
import { writeSection, machine } from './markdown.ts';
import { makeRepo as makeGitRepo } from '../test/helpers/repo.ts';

const { values } = parseArgs({ options: {
  experiments: { type: 'string', default: '16' }, seconds: { type: 'string', default: '2' },
  arms: { type: 'string', default: 'wait-bound,at-optimum,CPU-bound,slow-proposer,evaluator-wait' },
} });
const E = Number(values.experiments);
const S = Number(values.seconds);
const SLOTS = [1, 2, 4];

// the CPU-bound command does a fixed amount of work that takes about S s on one idle core here (measured now),
// so on a busy machine it takes longer: the cores, not the clock, bound it
const probe = 10_000_000;
const t = Date.now();
// the sandbox runs the system's python3 (a pyenv shim on PATH here is slower)
execFileSync(existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3', ['-c', `any(i < 0 for i in range(${probe}))`]);
const ITERATIONS = Math.round((probe * S * 1000) / Math.max(1, Date.now() - t));

interface Arm { command: string; evaluatorSleep: number; experiments: number; proposeMs?: number; params?: string }
const ARMS: Record<string, Arm> = {
  'wait-bound': { command: `python3 -c "import time; time.sleep(${S})"`, evaluatorSleep: 0, experiments: E },
  // the same, from the quadratic's minimum (X = 3, N = 5): no candidate is better than the incumbent
  'at-optimum': { command: `python3 -c "import time; time.sleep(${S})"`, evaluatorSleep: 0, experiments: E, params: 'X = 3.0\nN = 5\n' },
  'slow-proposer': { command: `python3 -c "import time; time.sleep(${S})"`, evaluatorSleep: 0, experiments: E, proposeMs: 1000 },
  'CPU-bound': { command: `python3 -c "any(i < 0 for i in range(${ITERATIONS}))"`, evaluatorSleep: 0, experiments: E },
  // the whole run: 3 baseline repeats, 8 experiments, an evaluator that sleeps
  'evaluator-wait': { command: 'true', evaluatorSleep: S, experiments: 8 },
};
const chosen = values.arms.split(',').map((a) => a.trim()).filter(Boolean);
for (const a of chosen) if (!ARMS[a]) throw new Error(`unknown arm ${a} (arms: ${Object.keys(ARMS).join(', ')})`);

const PARAMS = 'X = 1.0\nN = 2\n';
const EVALUATE = (sleep: number) => `import os, re, random, time
time.sleep(${sleep})
src = open('params.py').read()
x = float(re.search(r'^X = (\\S+)', src, re.M).group(1))
n = int(re.search(r'^N = (\\S+)', src, re.M).group(1))
random.seed(int(os.environ['AUTOAGENT_SEED']))
print(f'METRIC loss={(x - 3.0) ** 2 + (n - 5) ** 2 + 0.05 * random.gauss(0, 1)}')
`;

/**
 * A proposer that thinks like a model call: it waits `ms`, then sets X and N at random (seeded by
 * the run and the proposal, so every arm tries the same candidates).
 */
function slowProposer(ms: number): Proposer {
  return {
    name: 'slow',
    propose: async (ctx) => {
      await new Promise((r) => setTimeout(r, ms));
      const x = (ctx.random() * 6).toFixed(3);
      const n = Math.floor(ctx.random() * 11);
      return { hypothesis: `X = ${x}, N = ${n}`, edits: [{ path: 'params.py', content: `X = ${x}\nN = ${n}\n` }] };
    },
  };
}

function makeRepo({ command, evaluatorSleep, experiments, params }: Arm): string {
  return makeGitRepo({
    'params.py': params ?? PARAMS,
    'evaluate.py': EVALUATE(evaluatorSleep),
    'study.yaml': `name: par
kind: command
editable: [params.py]
locked: [evaluate.py]
command: '${command.replace(/'/g, "''")}'
evaluate: python3 evaluate.py
metric: { name: loss, direction: minimize }
budget: { experiment_seconds: ${Math.ceil(S * 20)}, experiments: ${experiments} }
proposer: { type: search, seed: 1 }
acceptance: { baseline_repeats: 3, confirm_repeats: 1 }
`,
  });
}

interface Row { kind: string; parallel: number; wall: number; evals: number; kept: number; decided: number; steps: number; rounds: number; passed: number }

/**
 * The run's floor in evaluation-times on `slots` slots (see the header): the baseline's repeats, then
 * per round ⌈screens / slots⌉, plus ⌈(confirmations + fresh incumbent repeats) / slots⌉ where the
 * round has any; and how many rounds, how many with a confirmation.
 */
function floorSteps(exps: ExperimentRow[], evals: Map<number, EvaluationRow[]>, slots: number): { steps: number; rounds: number; passed: number } {
  const step = (n: number) => Math.ceil(n / slots);
  const base = exps.find((e) => e.seq === 0)!;
  let steps = step((evals.get(base.id) ?? []).filter((v) => v.round === null).length);
  let passed = 0;
  const rounds = [...new Set(exps.filter((e) => e.seq > 0 && e.candidate_commit).map((e) => e.round ?? e.seq))].sort((a, b) => a - b);
  for (const r of rounds) {
    const members = exps.filter((e) => e.seq > 0 && (e.round ?? e.seq) === r);
    const screens = members.filter((e) => (evals.get(e.id) ?? []).some((v) => v.repeat === 0)).length;
    // a member's confirmations in its own round (a member kept later gets fresh repeats in later rounds: those count there)
    const confirms = members.reduce((n, e) => n + (evals.get(e.id) ?? []).filter((v) => v.repeat > 0 && (v.round ?? r) === r).length, 0);
    const fresh = exps.filter((e) => !members.includes(e)).reduce((n, e) => n + (evals.get(e.id) ?? []).filter((v) => v.round === r).length, 0);
    steps += step(screens) + step(confirms + fresh);
    if (confirms > 0) passed++;
  }
  return { steps, rounds: rounds.length, passed };
}

const rows: Row[] = [];
const t0 = Date.now();
const loadAtStart = loadavg()[0]!;
for (const kind of chosen) {
  for (const parallel of SLOTS) {
    const repo = makeRepo(ARMS[kind]!);
    try {
      const started = Date.now();
      const arm = ARMS[kind]!;
      const res = await startRun(join(repo, 'study.yaml'), {
        overrides: { parallel }, unsafeNoSandbox: false, reporter: new MemoryReporter(), proposer: arm.proposeMs ? slowProposer(arm.proposeMs) : undefined,
      });
      const wall = (Date.now() - started) / 1000;
      if (res.status !== 'finished') throw new Error(`${kind} parallel ${parallel}: ${res.status} ${res.stopReason}`);
      const db = openDb(res.dbPath);
      const exps = listExperiments(db, res.runId);
      const byExp = evaluationsOfRun(db, res.runId);
      const evals = [...byExp.values()].flat().length;
      db.close();
      const row = { kind, parallel, wall, evals, kept: exps.filter((e) => e.decision === 'kept').length, decided: exps.filter((e) => e.seq > 0).length, ...floorSteps(exps, byExp, parallel) };
      rows.push(row);
      console.log(`${kind} parallel ${parallel}: ${wall.toFixed(1)} s (floor ${row.steps} evaluation-times), ${evals} evaluations, ${row.passed} of ${row.rounds} rounds with a passed screen, ${row.kept} kept of ${row.decided}`);
    } finally {
      rmSync(repo, { recursive: true, force: true });
    }
  }
}

const lines = [
  '## Parallel slots (`node --import tsx bench/parallel.ts`)',
  '',
  `One command study (3 baseline repeats, the \`search\` proposer, 1 confirmation) through the real loop and bubblewrap sandbox, with`,
  `\`parallel\` 1, 2 and 4, side by side in one run. *wait-bound*: ${E} experiments, each command sleeps ${S} s (a harness waiting on its`,
  `model, a trainer on its own GPU; the quadratic from X = 1, N = 2, which the proposer improves, so some rounds have a screen that passes);`,
  `*at-optimum*: the same from the quadratic's minimum, where no candidate is better, so screens fail but for the α / k false passes;`,
  `*CPU-bound*: ${E} experiments, each command does ${S} s of one idle core's work (${(ITERATIONS / 1e6).toFixed(0)}M Python iterations); *slow-proposer*: wait-bound, with a`,
  'proposer that takes 1 s per candidate (a model call; random X, N), each candidate screened while the next is proposed; *evaluator-wait*: the issue\'s',
  `whole run, 8 experiments whose locked evaluator sleeps ${S} s. *Experiments / h* counts decided experiments over the whole run's wall`,
  'time, baseline included. With slots, a round that has a candidate passing its screen also runs a fresh repeat of the incumbent',
  'beside the confirmations, so a run may do more evaluations.',
  '',
  '*Floor*: the fewest evaluation-times the run\'s own rounds allow on its slots, from its ledger: the baseline\'s repeats, then per round',
  '⌈screens / slots⌉, then — where a screen passed — ⌈(confirmations + the incumbent\'s fresh repeat) / slots⌉, since each step needs the',
  'one before (a confirmation needs its screen, the keep all the round\'s confirmations, the next round the keep; a next round proposed',
  'early could not finish its k screens in the slots the confirmations leave). *Speed-up bound*: the parallel-1 run\'s floor over this',
  'run\'s (experiments being equal), what these rounds allow when an evaluation-time costs what it costs the sequential run (each',
  'evaluation\'s own start — the sandbox, Python — is paid in every step as in every sequential evaluation); *of bound*: the measured',
  'speed-up over it. A round where a screen passes costs a second step, so a study that improves often gains less from slots than one',
  'where screens mostly fail.',
  `Measured ${new Date().toISOString().slice(0, 10)} on ${machine()} (${cpus().length} cores), ${((Date.now() - t0) / 60000).toFixed(1)} min; load average ${loadAtStart.toFixed(1)} at the start, ${loadavg()[0]!.toFixed(1)} at the end (other work on the machine slows every arm alike, but CPU-bound slots gain less).`,
  '',
  '| arm | parallel | wall | experiments / h | speed-up | evaluations | rounds with a passed screen | floor (evaluation-times) | speed-up bound | of bound | kept / experiments |',
  '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |',
];
for (const r of rows) {
  const one = rows.find((x) => x.kind === r.kind && x.parallel === 1)!;
  const perHour = (x: Row) => (x.decided / x.wall) * 3600;
  const speedUp = perHour(r) / perHour(one);
  const bound = (r.decided / r.steps) / (one.decided / one.steps);
  lines.push(`| ${r.kind} | ${r.parallel} | ${r.wall.toFixed(1)} s | ${perHour(r).toFixed(0)} | **${speedUp.toFixed(2)}×** | ${r.evals} | ${r.passed} of ${r.rounds} | ${r.steps} | ${bound.toFixed(2)}× | ${((speedUp / bound) * 100).toFixed(0)}% | ${r.kept} / ${r.decided} |`);
}
writeSection('parallel', lines.join('\n'));
console.log(lines.join('\n'));
