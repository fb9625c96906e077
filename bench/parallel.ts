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
 *   node --import tsx bench/parallel.ts [--experiments 12] [--seconds 1]
 */
import { rmSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { startRun } from '../src/loop.ts';
import { MemoryReporter } from '../src/report.ts';
import { openDb, listExperiments, evaluationsOfRun } from '../traces/index.ts';
import { writeSection, machine } from './markdown.ts';
import { makeRepo as makeGitRepo } from '../test/helpers/repo.ts';

const { values } = parseArgs({ options: { experiments: { type: 'string', default: '12' }, seconds: { type: 'string', default: '1' } } });
const E = Number(values.experiments);
const S = Number(values.seconds);
const SLOTS = [1, 2, 4];

const COMMANDS = {
  'wait-bound': `python3 -c "import time; time.sleep(${S})"`,
  'CPU-bound': `python3 -c "import time; t = time.time(); any(time.time() - t > ${S} for _ in iter(int, 1))"`,
} as const;

const PARAMS = 'X = 1.0\nN = 2\n';
const EVALUATE = `import os, re, random
src = open('params.py').read()
x = float(re.search(r'^X = (\\S+)', src, re.M).group(1))
n = int(re.search(r'^N = (\\S+)', src, re.M).group(1))
random.seed(int(os.environ['AUTOAGENT_SEED']))
print(f'METRIC loss={(x - 3.0) ** 2 + (n - 5) ** 2 + 0.05 * random.gauss(0, 1)}')
`;

function makeRepo(command: string): string {
  return makeGitRepo({
    'params.py': PARAMS,
    'evaluate.py': EVALUATE,
    'study.yaml': `name: par
kind: command
editable: [params.py]
locked: [evaluate.py]
command: '${command.replace(/'/g, "''")}'
evaluate: python3 evaluate.py
metric: { name: loss, direction: minimize }
budget: { experiment_seconds: ${Math.ceil(S * 20)}, experiments: ${E} }
proposer: { type: search, seed: 1 }
acceptance: { baseline_repeats: 3, confirm_repeats: 1 }
`,
  });
}

interface Row { kind: string; parallel: number; wall: number; evals: number; kept: number; decided: number }

const rows: Row[] = [];
const t0 = Date.now();
const loadAtStart = loadavg()[0]!;
for (const [kind, command] of Object.entries(COMMANDS)) {
  for (const parallel of SLOTS) {
    const repo = makeRepo(command);
    try {
      const started = Date.now();
      const res = await startRun(join(repo, 'study.yaml'), { overrides: { parallel }, unsafeNoSandbox: false, reporter: new MemoryReporter() });
      const wall = (Date.now() - started) / 1000;
      if (res.status !== 'finished') throw new Error(`${kind} parallel ${parallel}: ${res.status} ${res.stopReason}`);
      const db = openDb(res.dbPath);
      const exps = listExperiments(db, res.runId);
      const evals = [...evaluationsOfRun(db, res.runId).values()].flat().length;
      db.close();
      const row = { kind, parallel, wall, evals, kept: exps.filter((e) => e.decision === 'kept').length, decided: exps.filter((e) => e.seq > 0).length };
      rows.push(row);
      console.log(`${kind} parallel ${parallel}: ${wall.toFixed(1)} s, ${evals} evaluations, ${row.kept} kept of ${row.decided}`);
    } finally {
      rmSync(repo, { recursive: true, force: true });
    }
  }
}

const lines = [
  '## Parallel slots (`node --import tsx bench/parallel.ts`)',
  '',
  `One command study (3 baseline repeats, ${E} experiments, the \`search\` proposer, 1 confirmation) through the real loop and`,
  `bubblewrap sandbox, with \`parallel\` 1, 2 and 4, side by side in one run. Each evaluation's command takes ${S} s: *wait-bound* sleeps`,
  '(a harness waiting on its model, a trainer on its own GPU), *CPU-bound* spins one core. With slots, each round also runs a fresh',
  'repeat of the incumbent, so a run does more evaluations; evaluations per minute is the throughput.',
  `Measured ${new Date().toISOString().slice(0, 10)} on ${machine()} (${cpus().length} cores), ${((Date.now() - t0) / 60000).toFixed(1)} min; load average ${loadAtStart.toFixed(1)} at the start, ${loadavg()[0]!.toFixed(1)} at the end (other work on the machine slows every arm alike, but CPU-bound slots gain less).`,
  '',
  '| command | parallel | wall | speed-up (wall) | evaluations | evaluations / min | throughput × | kept / experiments |',
  '| --- | --- | --- | --- | --- | --- | --- | --- |',
];
for (const r of rows) {
  const one = rows.find((x) => x.kind === r.kind && x.parallel === 1)!;
  const perMin = (x: Row) => (x.evals / x.wall) * 60;
  lines.push(`| ${r.kind} | ${r.parallel} | ${r.wall.toFixed(1)} s | ${(one.wall / r.wall).toFixed(2)}× | ${r.evals} | ${perMin(r).toFixed(1)} | ${(perMin(r) / perMin(one)).toFixed(2)}× | ${r.kept} / ${r.decided} |`);
}
writeSection('parallel', lines.join('\n'));
console.log(lines.join('\n'));
