/**
 * Orchestration overhead of the loop per experiment: wall time of an experiment minus the time
 * spent inside the candidate command and the evaluator, as a share of the experiment's wall
 * time. Measured side by side with and without the sandbox, on the same study, in one run.
 *
 *   node --import tsx bench/overhead.ts [--experiments 8] [--seconds 1]
 */
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { startRun } from '../src/loop.ts';
import { MemoryReporter } from '../src/report.ts';
import { openDb, listExperiments, evaluationsOf } from '../traces/index.ts';
import { makeRepo, cleanup, PARAMS_PY, EVALUATE_PY, studyYaml } from '../test/helpers/repo.ts';
import { writeSection, machine } from './markdown.ts';

const { values } = parseArgs({ options: { experiments: { type: 'string', default: '8' }, seconds: { type: 'string', default: '1' } } });
const experiments = Number(values.experiments);
const seconds = Number(values.seconds);

interface Figures { wall: number; inside: number; evals: number; overheadMs: number; pct: number; sandboxMs: number }

/** total wall time of a run (start to finish) minus the time inside commands and evaluators, per experiment */

async function measure(unsafe: boolean): Promise<Figures> {
  const yaml = studyYaml().replace(/^command: .*$/m, `command: python3 -c "import time; time.sleep(${seconds})"`);
  const repo = makeRepo({ 'params.py': PARAMS_PY, 'evaluate.py': EVALUATE_PY, 'study.yaml': yaml });
  try {
    const t0 = performance.now();
    const res = await startRun(join(repo, 'study.yaml'), { overrides: { experiments }, unsafeNoSandbox: unsafe, reporter: new MemoryReporter() });
    const wall = performance.now() - t0;
    const db = openDb(res.dbPath);
    const all = listExperiments(db, res.runId);
    const inside = all.reduce((s, e) => s + (e.inside_ms ?? 0), 0);
    const exps = all.filter((e) => e.seq > 0);
    const evals = exps.reduce((s, e) => s + evaluationsOf(db, e.id).length, 0);
    // the command sleeps `seconds`: what is left of its time is sandbox + interpreter start
    const commandMs = exps.reduce((s, e) => s + evaluationsOf(db, e.id).reduce((t, v) => t + v.command_ms, 0), 0);
    db.close();
    return { wall: wall / all.length, inside: inside / all.length, evals, overheadMs: (wall - inside) / all.length, pct: ((wall - inside) / wall) * 100, sandboxMs: commandMs / evals - seconds * 1000 };
  } finally {
    cleanup(repo);
  }
}

const sandboxed = await measure(false);
const unsafe = await measure(true);
const row = (name: string, f: Figures) =>
  `| ${name} | ${(f.wall / 1000).toFixed(2)} s | ${(f.inside / 1000).toFixed(2)} s | ${f.overheadMs.toFixed(0)} ms | **${f.pct.toFixed(1)}%** | ${f.sandboxMs.toFixed(0)} ms |`;
const body = `## Loop overhead per experiment (\`node --import tsx bench/overhead.ts\`)

A command study whose command sleeps ${seconds} s and whose locked evaluator is a short Python script;
${experiments} experiments after 3 baseline repeats (${sandboxed.evals} evaluations with confirmations), measured ${new Date().toISOString().slice(0, 10)} on ${machine()}.
*Overhead* is the run's whole wall time (start to summary, baseline included) minus the time inside the
commands and evaluators, divided by the ${experiments + 1} experiments (baseline counted as one): study loading,
proposals, git worktree add/commit/reset/remove, lock verification, SQLite writes. The last column is
the command's time beyond its ${seconds} s sleep: sandbox plus interpreter start, counted *inside*.

| mode | wall / experiment | inside command + evaluator | overhead / experiment | overhead share | start cost per command |
| --- | --- | --- | --- | --- | --- |
${row('bubblewrap sandbox', sandboxed)}
${row('--unsafe-no-sandbox', unsafe)}

With ${seconds} s experiments the loop's own share is the figure above; it scales as overhead / experiment time,
so at autoresearch's 300 s budget it is ${((sandboxed.overheadMs / (300_000 + sandboxed.overheadMs)) * 100).toFixed(2)}%.
`;
writeSection('overhead', body);
process.stdout.write(body);
