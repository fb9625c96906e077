/**
 * Knob search against the tool people would pick instead, side by side in one run.
 *
 * Methods, each with the same number of evaluations of the same noisy function:
 *   - search, random: our proposers inside the real loop and ratchet (startRun with an in-process
 *     kind that evaluates the function: no sandbox, no subprocess), baseline repeats and
 *     confirmations counted in the budget; the recommendation is the final incumbent.
 *   - tpe, cmaes, optuna-random: Optuna as its users run it (ask/tell, the start values enqueued as
 *     the first trial); the recommendation is study.best_trial.
 * The figure is the TRUE (noise-free) value of each recommendation, as regret normalized by the
 * start's: (f(rec) − f*) / (f(start) − f*); 0 is the optimum, 1 is no progress. Also counted: our
 * false keeps (a kept change whose true value is not better than its parent's).
 *
 *   node --import tsx bench/peers.ts [--seeds 5] [--evals 40] [--functions a,b] [--methods m,n] [--noise 0.02,0.1] [--cli] [--no-write]
 *
 * --cli adds one run through the real CLI (bubblewrap, `node evaluate.mjs` as the locked
 * evaluator) and the same run in process, and says whether their ledgers agree.
 */
import { execFileSync, spawn } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { stringify } from 'yaml';
import { startRun } from '../src/loop.ts';
import { MemoryReporter } from '../src/report.ts';
import { openDb, listExperiments, evaluationsOfRun, getRun } from '../traces/index.ts';
import type { KindAdapter, EvalOutcome, EvalRequest } from '../src/kinds/types.ts';
import type { Proposer } from '../meta-agent/index.ts';
import { makeProposer } from '../meta-agent/proposers.ts';
import { StudySchema } from '../src/study.ts';
import { FUNCTIONS, knobDecls, noisy, paramsFile, parseParams, startValues } from './functions.mjs';
import { writeSection, machine } from './markdown.ts';

type Fn = (typeof FUNCTIONS)[number];
const ROOT = resolve(import.meta.dirname, '..');
const PYTHON = '/usr/bin/python3';

const { values: args } = parseArgs({
  options: {
    seeds: { type: 'string', default: '5' },
    evals: { type: 'string', default: '40' },
    functions: { type: 'string', default: FUNCTIONS.map((f) => f.name).join(',') },
    methods: { type: 'string', default: 'search,random,tpe,cmaes,optuna-random' },
    noise: { type: 'string', default: '0.01,0.05' },
    cli: { type: 'boolean', default: false },
    'no-write': { type: 'boolean', default: false },
  },
});
const SEEDS = Number(args.seeds);
const EVALS = Number(args.evals);
const FNS = FUNCTIONS.filter((f) => args.functions!.split(',').includes(f.name));
const METHODS = args.methods!.split(',');
const NOISE = args.noise!.split(',').map(Number);
const CONFIRM = 1;
const BASELINE = 3;

const git = (cwd: string, ...a: string[]) => execFileSync('git', a, { cwd, encoding: 'utf8' }).trim();

/** the noise sd of a function at a level: a fraction of the start–optimum gap */
function noiseSd(fn: Fn, level: number): number {
  return level * (fn.f(startValues(fn)) - fn.optimum);
}

function regret(fn: Fn, values: Record<string, unknown>): number {
  return (fn.f(values) - fn.optimum) / (fn.f(startValues(fn)) - fn.optimum);
}

/** The function as a kind: reads params.py from the candidate's tree, returns the noisy value. */
class FunctionKind implements KindAdapter {
  readonly kind = 'command' as const;
  readonly selfReported = false;
  evaluations = 0;
  constructor(private readonly fn: Fn, private readonly sd: number, private readonly noiseSeed: number) {}
  async prepare() {
    return { lockedExternal: [], environment: {} };
  }
  async evaluate(req: EvalRequest): Promise<EvalOutcome> {
    this.evaluations++;
    const params = parseParams(readFileSync(join(req.worktree, 'params.py'), 'utf8'));
    const metric = noisy(this.fn, params, this.sd, this.noiseSeed, req.seed);
    return { status: 'ok', metric, reason: null, commandMs: 0, evaluatorMs: 0, exitCode: 0, stdoutTail: '', stderrTail: '', telemetry: null };
  }
}

function studyYaml(fn: Fn, proposer: string, seed: number, experiments: number, noise: { sd: number; seed: number }, cli = false): string {
  return stringify({
    name: 'peers',
    kind: 'command',
    editable: ['params.py'],
    locked: cli ? ['evaluate.mjs', 'functions.mjs'] : [],
    command: 'true',
    evaluate: cli ? 'node evaluate.mjs' : 'true',
    metric: { name: 'f', direction: 'minimize' },
    budget: { experiment_seconds: 30, experiments, wall_seconds: 86400 },
    proposer: { type: proposer, seed },
    acceptance: { baseline_repeats: BASELINE, confirm_repeats: CONFIRM },
    knobs: knobDecls(fn),
    env: { FN: fn.name, NOISE_SD: String(noise.sd), NOISE_SEED: String(noise.seed) },
  });
}

function makeRepo(fn: Fn, yaml: string, cli = false): string {
  const dir = mkdtempSync(join(tmpdir(), 'autoagent-peers-'));
  writeFileSync(join(dir, 'params.py'), paramsFile(fn));
  writeFileSync(join(dir, 'study.yaml'), yaml);
  if (cli) {
    copyFileSync(join(ROOT, 'bench/functions.mjs'), join(dir, 'functions.mjs'));
    writeFileSync(join(dir, 'evaluate.mjs'), `import { readFileSync } from 'node:fs';
import { FUNCTIONS, noisy, parseParams } from './functions.mjs';
const fn = FUNCTIONS.find((f) => f.name === process.env.FN);
const v = noisy(fn, parseParams(readFileSync('params.py', 'utf8')), Number(process.env.NOISE_SD), Number(process.env.NOISE_SEED), Number(process.env.AUTOAGENT_SEED));
console.log('METRIC f=' + v);
`);
  }
  git(dir, 'init', '-q', '-b', 'main');
  git(dir, 'add', '-A');
  git(dir, '-c', 'user.name=b', '-c', 'user.email=b@b', 'commit', '-q', '-m', 'start');
  return dir;
}

interface Outcome {
  regret: number;
  evaluations: number;
  kept: number;
  falseKeeps: number;
  ledger?: Array<[string, number[]]>;
}

/** Our proposer in the real loop, stopped when the evaluation budget is (nearly) spent. */
async function ours(fn: Fn, method: string, seed: number, level: number, opts: { experiments?: number } = {}): Promise<Outcome> {
  const sd = noiseSd(fn, level);
  const kind = new FunctionKind(fn, sd, seed);
  const yaml = studyYaml(fn, method, seed, opts.experiments ?? 10_000, { sd, seed });
  const repo = makeRepo(fn, yaml);
  try {
    const study = StudySchema.parse((await import('yaml')).parse(yaml));
    const inner = makeProposer(study.proposer, []);
    // a proposal needs room for its screen and its confirmation
    const proposer: Proposer = opts.experiments ? inner : {
      name: inner.name,
      propose: (ctx) => (kind.evaluations + 1 + CONFIRM > EVALS ? Promise.resolve(null) : inner.propose(ctx)),
    };
    const res = await startRun(join(repo, 'study.yaml'), { overrides: {}, unsafeNoSandbox: true, reporter: new MemoryReporter(), kind, proposer });
    return summarize(fn, repo, res.dbPath, res.runId, kind.evaluations);
  } finally {
    rmSync(repo, { recursive: true, force: true });
  }
}

function summarize(fn: Fn, repo: string, dbPath: string, runId: string, evaluations: number): Outcome {
  const db = openDb(dbPath);
  const run = getRun(db, runId)!;
  const exps = listExperiments(db, runId);
  const trueAt = (commit: string) => fn.f(parseParams(git(repo, 'show', `${commit}:params.py`)));
  let incumbent = trueAt(run.base_commit);
  let kept = 0;
  let falseKeeps = 0;
  let final = run.base_commit;
  for (const e of exps) {
    if (e.decision !== 'kept') continue;
    kept++;
    const t = trueAt(e.kept_commit!);
    if (t >= incumbent) falseKeeps++;
    incumbent = t;
    final = e.kept_commit!;
  }
  const evals = evaluationsOfRun(db, runId);
  const ledger = exps.map((e) => [`${e.decision ?? '?'} ${process.env.PEERS_DEBUG ? e.hypothesis : ''}`.trim(), (evals.get(e.id) ?? []).map((v) => v.metric!)] as [string, number[]]);
  db.close();
  return { regret: regret(fn, parseParams(git(repo, 'show', `${final}:params.py`))), evaluations, kept, falseKeeps, ledger };
}

/** Optuna as a user runs it: ask/tell for EVALS trials, the start enqueued first; best_trial is its answer. */
async function optuna(fn: Fn, sampler: string, seed: number, level: number): Promise<Outcome> {
  const sd = noiseSd(fn, level);
  const dims = fn.knobs.map((k) => (k.choices ? { key: k.name, type: 'choice', choices: k.choices }
    : { key: k.name, type: k.int ? 'int' : 'float', low: k.min, high: k.max, log: Boolean(k.log) }));
  const child = spawn(PYTHON, [join(ROOT, 'bench/optuna_peer.py')], { stdio: ['pipe', 'pipe', 'inherit'] });
  const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
  const call = async (line: string): Promise<string> => {
    child.stdin.write(line + '\n');
    const r = await lines.next();
    if (r.done) throw new Error('optuna_peer.py exited');
    return r.value;
  };
  child.stdin.write(JSON.stringify({ sampler, seed, dims, start: startValues(fn) }) + '\n');
  for (let i = 0; i < EVALS; i++) {
    const params = JSON.parse(await call('ask'));
    await call(`tell ${noisy(fn, params, sd, seed, i + 1)}`);
  }
  const best = JSON.parse(await call('best'));
  child.stdin.end('quit\n');
  return { regret: regret(fn, best), evaluations: EVALS, kept: 0, falseKeeps: 0 };
}

async function runMethod(fn: Fn, method: string, seed: number, level: number): Promise<Outcome> {
  if (method === 'search' || method === 'random' || method === 'optuna') return ours(fn, method, seed, level);
  return optuna(fn, method === 'optuna-random' ? 'random' : method, seed, level);
}

/** One run through the real CLI (sandbox, `node evaluate.mjs`) and the same run in process: do their ledgers agree? */
async function cliAgreement(): Promise<string> {
  const fn = FUNCTIONS[0]!;
  const seed = 1;
  const level = NOISE[0]!;
  const sd = noiseSd(fn, level);
  const experiments = 8;
  const repo = makeRepo(fn, studyYaml(fn, 'search', seed, experiments, { sd, seed }, true), true);
  try {
    execFileSync(process.execPath, [join(ROOT, 'bin/autoagent.js'), 'run', 'study.yaml', '--json'], { cwd: repo, stdio: ['ignore', 'pipe', 'pipe'] });
    const db = openDb(join(repo, '.autoagent/autoagent.db'));
    const runId = listExperiments.length >= 0 ? (db.prepare('SELECT id FROM runs').get() as { id: string }).id : '';
    db.close();
    const viaCli = summarize(fn, repo, join(repo, '.autoagent/autoagent.db'), runId, 0);
    const inProcess = await ours(fn, 'search', seed, level, { experiments });
    const same = JSON.stringify(viaCli.ledger!.map(([d, v]) => [d, v.map((x) => x.toPrecision(12))])) === JSON.stringify(inProcess.ledger!.map(([d, v]) => [d, v.map((x) => x.toPrecision(12))]));
    if (!same && process.env.PEERS_DEBUG_CLI) console.error(JSON.stringify({ viaCli: viaCli.ledger, inProcess: inProcess.ledger }, null, 1));
    return `${fn.name}, noise ${level}, seed ${seed}, ${experiments} experiments with \`search\`: through the CLI (bubblewrap, \`node evaluate.mjs\`) regret ${viaCli.regret.toFixed(4)}, in process ${inProcess.regret.toFixed(4)}; the two ledgers (every decision and evaluation) are ${same ? '**identical**' : '**different**'}.`;
  } finally {
    rmSync(repo, { recursive: true, force: true });
  }
}

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
const f3 = (x: number) => (Math.abs(x) < 1e-3 && x !== 0 ? x.toExponential(1) : x.toFixed(3));

async function main(): Promise<void> {
  const started = Date.now();
  const results = new Map<string, Outcome[]>(); // `${fn}|${level}|${method}` → per seed
  for (const fn of FNS) {
    for (const level of NOISE) {
      for (const method of METHODS) {
        const out: Outcome[] = [];
        for (let seed = 1; seed <= SEEDS; seed++) out.push(await runMethod(fn, method, seed, level));
        results.set(`${fn.name}|${level}|${method}`, out);
        process.stderr.write(`${fn.name} noise ${level} ${method}: mean regret ${f3(mean(out.map((o) => o.regret)))} (${out.map((o) => f3(o.regret)).join(' ')}) evals ${out.map((o) => o.evaluations).join(',')}\n`);
      }
    }
  }
  const rows: string[] = [];
  let cases = 0;
  let searchVsTpe = 0;
  let kept = 0;
  let falseKeeps = 0;
  const searchBeatsRandom: string[] = [];
  for (const fn of FNS) {
    const perFnSearch: number[] = [];
    const perFnRandom: number[] = [];
    for (const level of NOISE) {
      const cells = METHODS.map((m) => {
        const out = results.get(`${fn.name}|${level}|${m}`)!;
        return `${f3(mean(out.map((o) => o.regret)))}`;
      });
      rows.push(`| ${fn.name} | ${level} | ${cells.join(' | ')} |`);
      const s = results.get(`${fn.name}|${level}|search`);
      const t = results.get(`${fn.name}|${level}|tpe`);
      const r = results.get(`${fn.name}|${level}|random`);
      if (s && t) for (let i = 0; i < SEEDS; i++) { cases++; if (s[i]!.regret <= t[i]!.regret) searchVsTpe++; }
      if (s) { perFnSearch.push(...s.map((o) => o.regret)); for (const o of s) { kept += o.kept; falseKeeps += o.falseKeeps; } }
      if (r) perFnRandom.push(...r.map((o) => o.regret));
    }
    if (perFnSearch.length && perFnRandom.length) searchBeatsRandom.push(`${fn.name} ${mean(perFnSearch) <= mean(perFnRandom) ? '✓' : '✗'} (${f3(mean(perFnSearch))} vs ${f3(mean(perFnRandom))})`);
  }
  const cli = args.cli ? await cliAgreement() : null;
  const minutes = ((Date.now() - started) / 60000).toFixed(1);
  const body = `## Knob search vs Optuna (\`node --import tsx bench/peers.ts\`)

${SEEDS} seeds × ${FNS.length} functions × ${NOISE.length} noise levels, **${EVALS} evaluations per run for every method**
(ours: ${BASELINE} baseline repeats, screens and ${CONFIRM} confirmation per passing candidate, all counted; Optuna: ${EVALS} trials).
Noise: Gaussian, sd = level × (f(start) − f*). Figure: **true** (noise-free) regret of the final recommendation,
(f(rec) − f*) / (f(start) − f*), mean over seeds (0 = the optimum, 1 = the start): our final incumbent, Optuna's best trial.
\`search\` and \`random\` run inside the real loop and ratchet (an in-process kind evaluates the function);
Optuna ${execFileSync(PYTHON, ['-c', 'import optuna; print(optuna.__version__)'], { encoding: 'utf8' }).trim()} is driven by ask/tell with the start enqueued as its first trial.
Measured ${new Date().toISOString().slice(0, 10)} on ${machine()}, ${minutes} min.

| function | noise | ${METHODS.join(' | ')} |
| --- | --- | ${METHODS.map(() => '---').join(' | ')} |
${rows.join('\n')}

- \`search\` ≤ Optuna TPE in **${searchVsTpe} of ${cases}** (function, noise, seed) cases (${cases ? ((100 * searchVsTpe) / cases).toFixed(0) : 0}%).
- \`search\` ≤ \`random\` on average, per function: ${searchBeatsRandom.join('; ')}.
- False keeps of \`search\`: **${falseKeeps} of ${kept}** kept changes (${kept ? ((100 * falseKeeps) / kept).toFixed(1) : '0'}%) did not improve the true value.
${cli ? `- ${cli}` : ''}
`;
  console.log(body);
  if (!args['no-write']) writeSection('peers', body);
}

if (process.env.PEERS_DEBUG_CLI) {
  console.log(await cliAgreement());
} else if (process.env.PEERS_DEBUG) {
  const [fnName, method, seed, level] = process.env.PEERS_DEBUG.split(',');
  const o = await ours(FUNCTIONS.find((f) => f.name === fnName)!, method!, Number(seed), Number(level));
  console.log(JSON.stringify(o.ledger), o.regret);
} else {
  await main();
}
