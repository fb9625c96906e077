/**
 * The trainer study under the same budget for four proposers, side by side in one run:
 * `search` (ours, model-based), `random`, `optuna` (Optuna's TPE through the real library) and
 * `noop` (edits that change nothing but a comment: the baseline repeated, so every keep it makes is
 * a false keep; not in the default arms). Every experiment trains exactly --steps optimizer steps (trainer.budget: steps, as
 * the shipped gpu-trainer/study.yaml), so a busy machine is slower, not noisier. Each arm runs with
 * several proposer seeds; every kept change is then re-evaluated against its parent with fresh seeds
 * to count false keeps (kept changes that do not reproduce).
 *
 *   node --import tsx bench/trainer.ts [--experiments 6] [--steps 400] [--seeds 3] [--recheck 2] [--arms search,random,optuna[,noop]]
 */
import { execFileSync } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir, loadavg } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { startRun } from '../src/loop.ts';
import { MemoryReporter } from '../src/report.ts';
import { openDb, listExperiments, evaluationsOf, getRun, SqliteStore, type DB } from '../traces/index.ts';
import type { Proposer } from '../meta-agent/index.ts';
import { mean } from '../base/stats.ts';
import { runNoise } from '../src/loop.ts';
import { writeSection, machine } from './markdown.ts';

const { values } = parseArgs({
  options: {
    experiments: { type: 'string', default: '6' },
    steps: { type: 'string', default: '400' },
    seeds: { type: 'string', default: '3' },
    recheck: { type: 'string', default: '2' },
    arms: { type: 'string', default: 'search,random,optuna' },
  },
});
const E = Number(values.experiments);
const STEPS = Number(values.steps);
const SEEDS = Number(values.seeds);
const RECHECK = Number(values.recheck);
const ARMS = values.arms!.split(',');
const ROOT = resolve(import.meta.dirname, '..');

const git = (cwd: string, ...args: string[]) => execFileSync('git', args, { cwd, encoding: 'utf8' }).trim();

/** a fresh repo holding the shipped gpu-trainer folder and its study, with this arm's proposer */
function makeRepo(arm: string, seed: number): string {
  const dir = mkdtempSync(join(tmpdir(), 'autoagent-bench-'));
  for (const f of ['prepare.py', 'train.py']) cpSync(join(ROOT, 'gpu-trainer', f), join(dir, f));
  const proposer = arm === 'noop' ? `{ type: search, seed: ${seed} }` : arm === 'optuna' ? `{ type: optuna, sampler: tpe, seed: ${seed} }` : `{ type: ${arm}, seed: ${seed} }`;
  const study = readFileSync(join(ROOT, 'gpu-trainer', 'study.yaml'), 'utf8')
    .replace(/^proposer: .*$/m, `proposer: ${proposer}`)
    .replace(/^(budget: .*experiments: )\d+/m, `$1${E}`)
    .replace(/^(trainer: .*steps: )\d+/m, `$1${STEPS}`)
    // a steps budget makes load slow a run, not change it: deadlines far out so a loaded machine cannot time one out
    .replace(/experiment_seconds: \d+/, 'experiment_seconds: 900').replace(/wall_seconds: \d+/, 'wall_seconds: 36000');
  if (!study.includes(`proposer: ${proposer}`) || !study.includes('experiment_seconds: 900') || !study.includes('wall_seconds: 36000') || !study.includes(`experiments: ${E}`) || !new RegExp(`^trainer: .*steps: ${STEPS} `, 'm').test(study)) throw new Error('gpu-trainer/study.yaml changed shape: update bench/trainer.ts');
  writeFileSync(join(dir, 'study.yaml'), study);
  git(dir, 'init', '-q', '-b', 'main');
  git(dir, 'add', '-A');
  git(dir, '-c', 'user.name=b', '-c', 'user.email=b@b', 'commit', '-q', '-m', 'bench');
  return dir;
}

/** the baseline repeated: each proposal only adds a comment line */
const noop: Proposer = {
  name: 'noop',
  propose: async (ctx) => {
    const path = Object.keys(ctx.files)[0]!;
    return { hypothesis: `no-op comment #${ctx.ledger.length}`, edits: [{ path, content: ctx.files[path] + `# no-op ${ctx.ledger.length}\n` }] };
  },
};

/**
 * Mean val_bpb of a train.py over RECHECK evaluations on seeds no decision used (acceptance.seed_offset): a run with
 * --experiments 0 on a commit holding it. Cached by content: the baseline's train.py is measured once for all arms.
 */
const measured = new Map<string, number>();
async function measureTrain(repo: string, content: string): Promise<number> {
  const hit = measured.get(content);
  if (hit !== undefined) return hit;
  writeFileSync(join(repo, 'train.py'), content);
  git(repo, '-c', 'user.name=b', '-c', 'user.email=b@b', 'commit', '-q', '--allow-empty', '-am', 'recheck');
  const res = await startRun(join(repo, 'study.yaml'), { overrides: { experiments: 0 }, unsafeNoSandbox: false, reporter: new MemoryReporter() });
  const db = openDb(res.dbPath);
  const base = listExperiments(db, res.runId)[0]!;
  const m = evaluationsOf(db, base.id).map((v) => v.metric!);
  db.close();
  if (m.length !== RECHECK || m.some((x) => !Number.isFinite(x))) throw new Error(`recheck got ${m.length} of ${RECHECK} finite values`);
  measured.set(content, mean(m));
  return mean(m);
}

interface ArmResult { arm: string; seed: number; baseline: number; final: number; baseRe: number; finalRe: number; kept: number; falseKeeps: number; evaluated: number; wallS: number; insideS: number; overheadPct: number; noiseSd: number }

function summarize(db: DB, runId: string) {
  const exps = listExperiments(db, runId);
  const base = exps[0]!;
  const kept = exps.filter((e) => e.decision === 'kept');
  const final = kept.length ? kept[kept.length - 1]!.metric! : base.metric!;
  const inside = exps.reduce((s, e) => s + (e.inside_ms ?? 0), 0) / 1000;
  return { base, kept, final, inside, evaluated: exps.filter((e) => e.seq > 0).length };
}

const results: ArmResult[] = [];
for (let seed = 1; seed <= SEEDS; seed++) {
  for (const arm of ARMS) {
    const repo = makeRepo(arm, seed);
    try {
      const t0 = performance.now();
      const res = await startRun(join(repo, 'study.yaml'), {
        overrides: {}, unsafeNoSandbox: false, reporter: new MemoryReporter(), proposer: arm === 'noop' ? noop : undefined,
      });
      const wallS = (performance.now() - t0) / 1000;
      const db = openDb(res.dbPath);
      const run = getRun(db, res.runId)!;
      const s = summarize(db, run.id);
      const noiseSd = runNoise(new SqliteStore(db), run.id).sd;
      db.close();
      // re-measure with seeds no decision used: each kept train.py against its parent's (false keeps), and the final
      // tree against the baseline's (the figure)
      const study = readFileSync(join(repo, 'study.yaml'), 'utf8');
      const recheck = study.replace(/baseline_repeats: \d+/, `baseline_repeats: ${RECHECK}, seed_offset: 500000`);
      if (recheck === study) throw new Error('gpu-trainer/study.yaml changed shape: update bench/trainer.ts');
      writeFileSync(join(repo, 'study.yaml'), recheck);
      let falseKeeps = 0;
      for (const k of s.kept) {
        const keptMean = await measureTrain(repo, git(repo, 'show', `${k.kept_commit}:train.py`) + '\n');
        const parentMean = await measureTrain(repo, git(repo, 'show', `${k.parent_commit}:train.py`) + '\n');
        if (!(keptMean < parentMean)) falseKeeps++;
      }
      const baseRe = await measureTrain(repo, git(repo, 'show', `${s.base.candidate_commit}:train.py`) + '\n');
      const finalRe = s.kept.length ? await measureTrain(repo, git(repo, 'show', `${s.kept[s.kept.length - 1]!.kept_commit}:train.py`) + '\n') : baseRe;
      results.push({
        arm, seed, baseline: s.base.metric!, final: s.final, baseRe, finalRe, kept: s.kept.length, falseKeeps, evaluated: s.evaluated,
        wallS, insideS: s.inside, overheadPct: ((wallS - s.inside) / wallS) * 100, noiseSd,
      });
      writeSection('trainer', section());
      process.stderr.write(`${arm} seed ${seed}: baseline ${s.base.metric!.toFixed(4)} → ${s.final.toFixed(4)} (re-measured ${baseRe.toFixed(4)} → ${finalRe.toFixed(4)}), kept ${s.kept.length}, false keeps ${falseKeeps}\n`);
    } finally {
      rmSync(repo, { recursive: true, force: true });
    }
  }
}

/** the BENCHMARKS.md section from the runs done so far (written after each run: a long bench stopped early keeps what it measured) */
function section(): string {
const lines = ARMS.filter((arm) => results.some((r) => r.arm === arm)).map((arm) => {
  const rs = results.filter((r) => r.arm === arm);
  const rel = mean(rs.map((r) => r.final / r.baseline));
  const relRe = mean(rs.map((r) => r.finalRe / r.baseRe));
  const kept = rs.reduce((s, r) => s + r.kept, 0);
  const fk = rs.reduce((s, r) => s + r.falseKeeps, 0);
  const ov = mean(rs.map((r) => r.overheadPct));
  const noise = mean(rs.map((r) => r.noiseSd));
  return `| ${arm} | ${relRe.toFixed(4)} (${((relRe - 1) * 100).toFixed(2)}%) | ${rel.toFixed(4)} | ${kept} of ${rs.reduce((s, r) => s + r.evaluated, 0)} | ${fk} | ${noise.toFixed(4)} | ${ov.toFixed(1)}% |`;
});
/** seeds on which arm a's re-measured final val_bpb is below arm b's */
const wins = (a: string, b: string) => {
  let w = 0, n = 0;
  for (let seed = 1; seed <= SEEDS; seed++) {
    const ra = results.find((r) => r.arm === a && r.seed === seed), rb = results.find((r) => r.arm === b && r.seed === seed);
    if (!ra || !rb) continue;
    n++;
    if (ra.finalRe < rb.finalRe) w++;
  }
  return `${w} of ${n}`;
};
const versus = ARMS.filter((a) => a !== 'search').map((a) => `\`search\` below \`${a}\` on ${wins('search', a)} seeds`).join('; ');
const partial = results.length < SEEDS * ARMS.length ? `\n**Partial**: ${results.length} of ${SEEDS * ARMS.length} runs done when this was written (the bench writes after each run).\n` : '';
const body = `## Trainer study: ${ARMS.join(' vs ')} (\`node --import tsx bench/trainer.ts\`)
${partial}
The shipped study (\`gpu-trainer/study.yaml\`: 4 baseline repeats, knobs found in train.py, confirmations as the ratchet
asks) for each arm with the same budget: ${E} experiments of exactly ${STEPS} optimizer steps each on CPU, ${SEEDS} proposer
seeds, the Brown corpus; measured ${new Date().toISOString().slice(0, 10)} on ${machine()}.${ARMS.includes('optuna') ? " *optuna* is Optuna's TPE through the real library (ask/tell, rebuilt from the ledger)." : ''}${ARMS.includes('noop') ? ' *noop* proposes an edit that only adds a comment: every keep it makes is a false keep.' : ''}
*False keeps*: kept changes whose kept tree did not beat its parent's tree again when both were re-evaluated
${RECHECK}× with fresh seeds. *Overhead*: run wall time minus the time inside train.py and the locked evaluator, as a share
of the run (sandbox start, dataset check, git, SQLite, the proposer).

The figure is the final tree's val_bpb **re-measured** with ${RECHECK} seeds no decision used (\`acceptance.seed_offset\`),
over the baseline tree's re-measured the same way; the run's own final/baseline ratio is beside it.

| proposer | final val_bpb / baseline, re-measured (mean over seeds) | as the run measured it | kept | false keeps | noise sd (pooled, per run) | overhead |
| --- | --- | --- | --- | --- | --- | --- |
${lines.join('\n')}

Per seed, re-measured final val_bpb: ${versus}.

Load average of the machine when the run ended: ${loadavg().map((x) => x.toFixed(1)).join(' / ')} (1 / 5 / 15 min; with a steps
budget, load makes runs slower, not noisier). Per seed (re-measured): ${results.map((r) => `${r.arm}#${r.seed} ${r.baseRe.toFixed(3)}→${r.finalRe.toFixed(3)} (kept ${r.kept})`).join(', ')}.
`;
return body;
}

process.stdout.write(section());
