/** The autoagent command line. */
import type { IO } from './io.ts';
import { Command, CommanderError, InvalidArgumentError } from 'commander';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { openDb, storeErrorMessage, lastStorePath } from '../traces/index.ts';
import { UserError, UsageError } from '../base/errors.ts';
import { startRun, resumeRun, defaultDbPath, type LoopOptions, type Overrides, type RunResult } from './loop.ts';
import { repoRoot } from '../base/git.ts';
import { StreamReporter } from './report.ts';
import { killAllSandboxes } from '../sandbox/index.ts';
import { studyJsonSchema } from './study.ts';
import { auditCommand, finalizeCommand, reportCommand, exportLangfuseCommand } from './audit-cli.ts';
import { knobsCommand } from './knobs-cli.ts';
import { blameCommand } from './blame-cli.ts';
import type { WorkerCliOptions } from './queue/cli.ts';
import { doctorCommand, thisMachine } from './doctor.ts';
import { askOver, hasStudyFlags, initCommand, type InitOptions } from './init.ts';
import { evalCommand, tracesCommand, type EvalCliOptions, type TracesCliOptions } from './harness-cli.ts';
import { evalsData, evalsText } from './evals-cli.ts';
import { ledgerData, ledgerText, pickRun, parseExperimentRef, showData, showText, statusData, statusText } from './views.ts';
// --- runs: name, tag, note, rm, prune (issue 15, item 8) ---
import { annotateRun, runsData, runsText, runsRm, runsPrune, runsTag } from './runs-cli.ts';
import { parseAnnotations } from './ui/queries.ts';
import { runAnnotations, type RunRow } from '../traces/index.ts';

function intArg(name: string) {
  return (v: string) => {
    if (!/^\d+$/.test(v)) throw new InvalidArgumentError(`${name} must be a whole number ≥ 0`);
    return Number(v);
  };
}
function fractionArg(name: string) {
  return (v: string) => {
    const n = Number(v);
    if (v.trim() === '' || !Number.isFinite(n) || n < 0 || n > 1) throw new InvalidArgumentError(`${name} must be a number from 0 to 1`);
    return n;
  };
}
function positiveIntArg(name: string) {
  return (v: string) => {
    if (!/^\d+$/.test(v) || Number(v) < 1 || Number(v) > 64) throw new InvalidArgumentError(`${name} must be a whole number from 1 to 64`);
    return Number(v);
  };
}
function secondsArg(name: string) {
  return (v: string) => {
    const n = Number(v);
    if (!Number.isFinite(n) || n <= 0) throw new InvalidArgumentError(`${name} must be a positive number of seconds`);
    return n;
  };
}

interface CommonOpts { db?: string; json?: boolean }
interface RunOpts extends CommonOpts {
  experiments?: number; experimentSeconds?: number; wallSeconds?: number; corpus?: string; unsafeNoSandbox?: boolean; parallel?: number;
  /** false: --no-queue */
  queue?: string | false; queueWait?: number;
  data?: string; prices?: string;
  /** run only: the run's label and tags (runs.label / runs.tags) */
  name?: string; tag?: string[];
}

/** the version in autoagent's own package.json */
export function packageVersion(): string {
  return (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }).version;
}

async function storePath(opts: CommonOpts): Promise<string> {
  const path = opts.db ? resolve(opts.db) : defaultDbPath(await repoRoot(process.cwd()));
  if (!existsSync(path)) throw new UsageError(`${path}: no autoagent store here (run a study first, or pass --db PATH)`);
  return path;
}

function overridesOf(o: RunOpts): Overrides {
  return { experiments: o.experiments, experimentSeconds: o.experimentSeconds, wallSeconds: o.wallSeconds, corpus: o.corpus, parallel: o.parallel, data: o.data, prices: o.prices };
}

/** Run or resume with Ctrl-C handling: finish recording, remove worktrees, exit 130. */
async function withInterrupts(io: IO, fn: (o: LoopOptions) => Promise<RunResult>, o: RunOpts): Promise<number> {
  const controller = new AbortController();
  let interrupts = 0;
  const onSignal = () => {
    interrupts++;
    if (interrupts > 1) process.exit(130);
    io.err('\ninterrupting: stopping the evaluation, recording, cleaning up (Ctrl-C again to quit at once)\n');
    controller.abort();
    killAllSandboxes();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  const reporter = new StreamReporter(io.err, io.errIsTTY);
  let result: RunResult;
  try {
    const annotations = o.name !== undefined || o.tag?.length ? parseAnnotations({ ...(o.name !== undefined ? { label: o.name } : {}), ...(o.tag?.length ? { tags: o.tag } : {}) }) : undefined;
    result = await fn({
      dbPath: o.db, overrides: overridesOf(o), unsafeNoSandbox: Boolean(o.unsafeNoSandbox), reporter, signal: controller.signal, annotations,
      queue: o.queue !== undefined || o.queueWait ? { url: o.queue === false ? null : o.queue, waitSeconds: o.queueWait } : undefined,
    });
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
  const db = openDb(result.dbPath);
  const run = pickRun(db, result.runId);
  if (o.json) {
    io.out(JSON.stringify(ledgerData(db, run), null, 2) + '\n');
  } else {
    io.out(`\n${summaryLine(result)}\n\n${ledgerText(db, run)}\n`);
    const kept = ledgerData(db, run).rows.some((r) => r.status === 'kept');
    io.out(`\nshow an experiment: autoagent show N${kept ? `   ·   kept commits: git log ${run.branch}` : ''}\n`);
  }
  db.close();
  // a provider that failed stopped the run (resumable), but the run did not do its job: exit 1, not 130
  return result.stopCause === 'provider' ? 1 : result.status === 'stopped' ? 130 : result.status === 'failed' ? 1 : 0;
}

function summaryLine(r: RunResult): string {
  return `run ${r.runId} ${r.status}: ${r.stopReason ?? ''}`;
}

function addRunOptions(c: Command): Command {
  return c
    .option('--experiments <n>', 'experiments to run (0: measure the baseline only)', intArg('--experiments'))
    .option('--experiment-seconds <s>', 'time budget of one experiment', secondsArg('--experiment-seconds'))
    .option('--wall-seconds <s>', 'time budget of the whole run', secondsArg('--wall-seconds'))
    .option('--parallel <n>', 'evaluations at once (slots); a round then has max(candidates, n) candidates', positiveIntArg('--parallel'))
    .option('--corpus <path>', 'trainer studies: a UTF-8 file or folder to train on instead of the study\'s corpus')
    .option('--data <dir>', 'harness studies: the data root of the built-in benchmarks (instead of harness.data / AUTOAGENT_DATA)')
    .option('--prices <file>', 'harness studies: a price table (JSON or YAML) over the defaults (instead of harness.prices)')
    .option('--unsafe-no-sandbox', 'run candidate code without bubblewrap (recorded on the run)')
    .option('--db <path>', 'the SQLite store (default: .autoagent/autoagent.db in the repository)')
    .option('--queue <url>', 'evaluate on `autoagent worker` processes of this Redis (redis://HOST:PORT, rediss://:PASSWORD@HOST:PORT)')
    .option('--no-queue', 'evaluate on this machine even when the study (or, on resume, the run) names a queue')
    .option('--queue-wait <s>', 'with --queue and no worker connected: wait this long for one, then stop resumable (default 600)', secondsArg('--queue-wait'))
    .option('--json', 'print the final ledger as JSON');
}

export type { IO } from './io.ts';

const processIO: IO = {
  out: (t) => void process.stdout.write(t),
  err: (t) => void process.stderr.write(t),
  errIsTTY: Boolean(process.stderr.isTTY),
};

export function buildProgram(io: IO, exit: { code: number } = { code: 0 }): Command {
  const program = new Command('autoagent')
    .description('Runs the ratchet loop unattended: propose an edit, score it with locked code in a sandbox, keep only real improvements in git.')
    .version(packageVersion(), '-V, --version', 'print the version')
    .showSuggestionAfterError()
    .exitOverride()
    .configureOutput({ writeOut: io.out, writeErr: io.err });
  program.addHelpText('after', `
Examples:
  autoagent doctor --install                           check this machine, install what is missing
  autoagent init --kind command --editable params.py --command "python3 train.py" --evaluate "python3 evaluate.py" --metric loss
                                                       scaffold a study in your repository (no flags on a terminal: it asks)
  autoagent run gpu-trainer/study.yaml                 train a small GPT, ratchet its train.py
  autoagent run study.yaml --experiments 8             8 experiments after the baseline
  autoagent knobs study.yaml                           the knobs a search would turn, and what was skipped
  autoagent log                                        the ledger of the latest run
  autoagent show 3                                     diff, evaluations and decision of experiment 3
  autoagent resume <run-id>                            continue a run that was stopped or killed
  autoagent status --json                              every run in this repository's store
  autoagent eval --harness harnesses/gsm8k --bench gsm8k --limit 20
  autoagent traces 3 --failed                          transcripts of experiment 3's failed tasks
  autoagent traces search "timeout"                    full-text search over every trace
  autoagent audit                                      verify the latest run's chain of evidence
  autoagent audit --edits                              what each kept change fixed, against the traces it cited
  autoagent blame h/prompts/system.md                  which kept experiment wrote each line, and why
  autoagent report -o report.html --png progress.png   a report to look at
  autoagent finalize                                   score the final incumbent on the sealed test split once
  autoagent finalize --ablate                          each kept change's contribution on the test split (leave-one-out)
  autoagent ui                                         a live dashboard at http://127.0.0.1:4873/`);

  addRunOptions(program.command('run <study>').description('start a run of a study file'))
    .option('--name <label>', 'a label for the run (shown by `runs`, the dashboard and the report; `runs rename` changes it)')
    .option('--tag <tag>', 'a tag for the run (repeatable)', (v: string, prev: string[] = []) => [...prev, v])
    .action(async (study: string, o: RunOpts) => {
    exit.code = await withInterrupts(io, (lo) => startRun(study, lo), o);
  });
  addRunOptions(program.command('resume <run-id>').description('continue a stopped or killed run where it stopped')).action(async (runId: string, o: RunOpts) => {
    exit.code = await withInterrupts(io, (lo) => resumeRun(runId, process.cwd(), lo), o);
  });
  program.command('log [run]').description('the ledger: baseline repeats and every experiment (latest run by default)')
    .option('--db <path>', 'the SQLite store').option('--json', 'machine-readable output')
    .action(async (runId: string | undefined, o: CommonOpts) => {
      const db = openDb(await storePath(o));
      const run = pickRun(db, runId);
      io.out((o.json ? JSON.stringify(ledgerData(db, run), null, 2) : ledgerText(db, run)) + '\n');
    });
  program.command('show <experiment>').description('what an experiment changed, its evaluations, and why it was kept or not (N or RUN/N)')
    .option('--run <id>', 'the run (default: the latest)').option('--full', 'the meta-agent conversation without cuts')
    .option('--db <path>', 'the SQLite store').option('--json', 'machine-readable output')
    .action(async (ref: string, o: CommonOpts & { run?: string; full?: boolean }) => {
      const db = openDb(await storePath(o));
      const { run, exp } = parseExperimentRef(db, ref, o.run);
      io.out((o.json ? JSON.stringify(showData(db, run, exp), null, 2) : showText(db, run, exp, { full: o.full })) + '\n');
    });
  program.command('status').description('runs in this store with their ids and state; with --queue, the queue\'s workers too')
    .option('--db <path>', 'the SQLite store').option('--json', 'machine-readable output')
    .option('--queue <url>', 'also the workers of this Redis queue: id, host, slots, GPU model, heartbeat age')
    .action(async (o: CommonOpts & { queue?: string }) => {
      const db = openDb(await storePath(o));
      if (!o.queue) {
        io.out((o.json ? JSON.stringify(statusData(db), null, 2) : statusText(db)) + '\n');
        return;
      }
      const { queueStatus, workersText } = await import('./queue/cli.ts'); // BullMQ and ioredis only when used
      const q = await queueStatus(o.queue);
      io.out((o.json ? JSON.stringify({ runs: statusData(db), queue: q }, null, 2) : `${statusText(db)}\n\nqueue ${q.queue}: ${q.jobs.waiting} waiting, ${q.jobs.active} active\n${workersText(q.workers).join('\n')}`) + '\n');
    });
  program.command('evals').description('evaluations `autoagent eval` stored, newest first: id, benchmark, harness, tasks, score, date')
    .option('--db <path>', 'the SQLite store').option('--json', 'machine-readable output')
    .action(async (o: CommonOpts) => io.out((o.json ? JSON.stringify(evalsData(openDb(await storePath(o))), null, 2) : evalsText(openDb(await storePath(o)))) + '\n'));
  program.command('eval').description('evaluate a harness on a benchmark split, outside any run: per-task results and the aggregate')
    .requiredOption('--harness <dir>', 'the harness folder (harness.yaml, prompts/, tools/)')
    .requiredOption('--bench <name>', 'a built-in benchmark (gsm8k, bbh, humaneval-x-js, tooluse) or a benchmark folder')
    .option('--split <split>', 'train | val | test', 'val')
    .option('--limit <n>', 'only the first N tasks of the split (default: all)', intArg('--limit'))
    .option('--concurrency <n>', 'tasks at once', intArg('--concurrency'), 4)
    .option('--data <dir>', 'data root of the built-in suites (default: AUTOAGENT_DATA)')
    .option('--prices <file>', 'a price table (JSON or YAML) over the defaults')
    .option('--cache', 'replay identical model requests from the store\'s response cache')
    .option('--max-provider-error-rate <r>', 'stop, exit 1 and give no score when the model provider fails on more than this fraction of the tasks (any refused key stops at once)', fractionArg('--max-provider-error-rate'), 0.1)
    .option('--unsafe-no-sandbox', 'run the task-agent without bubblewrap')
    .option('--db <path>', 'the SQLite store').option('--json', 'machine-readable output')
    .action(async (o: EvalCliOptions & { split: string }) => {
      if (!['train', 'val', 'test'].includes(o.split)) throw new UsageError(`--split: one of train, val, test (got ${o.split})`);
      exit.code = await evalCommand(o, io.out, io.err);
    });
  program.command('traces <target> [query]').description('transcripts of an experiment (N or RUN/N), an eval (eval-…) or one trace (its id, or its first 6+ characters, as `show`, `blame` and `traces search` print them); `traces search "text"` searches every trace')
    .option('--task <id>', 'only this task').option('--failed', 'the transcripts of the failed or wrong tasks')
    .option('--run <id>', 'the run (default: the latest; search: only its traces)').option('--limit <n>', 'traces to show (search)', intArg('--limit'), 20)
    .option('--db <path>', 'the SQLite store').option('--json', 'machine-readable output')
    .action(async (target: string, query: string | undefined, o: TracesCliOptions) => {
      exit.code = await tracesCommand(target, query, o, io.out);
    });
  program.command('audit [run]').description('verify a run: branch ↔ kept experiments, editable-only diffs, locked hashes, the acceptance evidence, stored diffs re-derived from git, the ledger chain, re-scored outputs; exit 1 on any break')
    .option('--no-rescore', 'skip re-scoring stored task outputs (harness runs)').option('--data <dir>', 'data root of the built-in benchmarks')
    .option('--expect-head <hex>', 'a ledger head printed earlier (by the run, `log` or the report): fail unless it is the head now or a link of the chain')
    .option('--edits', 'per kept change: the claim (hypothesis, cited tasks), the tasks it flipped over repeats, a verdict, the cost change (exit 1 only on a broken chain)')
    .option('--db <path>', 'the SQLite store').option('--json', 'machine-readable output')
    .action(async (runId: string | undefined, o: { db?: string; json?: boolean; rescore?: boolean; data?: string; expectHead?: string; edits?: boolean }) => {
      exit.code = await auditCommand(runId, o, io);
    });
  program.command('finalize [run]').description('evaluate the final incumbent once on the sealed test split, and write a clean branch of the kept changes')
    .option('--force', 'evaluate the test split again (recorded as forced)').option('--branch <name>', 'the clean branch (default autoagent/<run>-clean)')
    .option('--no-branch', 'write no clean branch').option('--squash', 'one commit for all kept changes')
    .option('--data <dir>', 'data root of the built-in benchmarks').option('--unsafe-no-sandbox', 'evaluate without bubblewrap')
    .option('--all', 'harness runs: score every test task (default: harness.limit, as in the run)')
    .option('--ablate', 'instead: each kept change\'s contribution on the test split, the final incumbent against it with that change reverted (recorded apart, once unless --force)')
    .option('--repeats <n>', 'with --ablate: evaluations per variant (default: acceptance.baseline_repeats)', intArg('--repeats'))
    .option('--db <path>', 'the SQLite store').option('--json', 'machine-readable output')
    .action(async (runId: string | undefined, o: { db?: string; json?: boolean; force?: boolean; branch?: string | false; squash?: boolean; data?: string; unsafeNoSandbox?: boolean; all?: boolean; ablate?: boolean; repeats?: number }) => {
      exit.code = await finalizeCommand(runId, o, io);
    });
  program.command('blame <file>').description('each line of a file at the run\'s head with the kept experiment that wrote it: hypothesis, evidence, cited traces')
    .option('--run <id>', 'the run (default: the latest)')
    .option('--db <path>', 'the SQLite store').option('--json', 'one entry per line: {line, text, commit, experiment}')
    .action(async (file: string, o: { run?: string; db?: string; json?: boolean }) => {
      exit.code = await blameCommand(file, o, io);
    });
  program.command('report [run]').description('write a self-contained HTML report of a run (progress chart, heatmap, kept changes, ledger)')
    .option('-o, --output <file>', 'the HTML file (default autoagent-report-<run>.html)').option('--png <file>', 'also a PNG picture of it (headless Chromium)')
    .option('--db <path>', 'the SQLite store')
    .action(async (runId: string | undefined, o: { db?: string; output?: string; png?: string }) => {
      exit.code = await reportCommand(runId, o, io);
    });
  program.command('export').description('export a run elsewhere').command('langfuse [run]')
    .description('send a run\'s traces to Langfuse (LANGFUSE_HOST, LANGFUSE_PUBLIC_KEY, LANGFUSE_SECRET_KEY)')
    .option('--db <path>', 'the SQLite store').option('--json', 'machine-readable output')
    .action(async (runId: string | undefined, o: { db?: string; json?: boolean }) => {
      exit.code = await exportLangfuseCommand(runId, o, io);
    });
  program.command('knobs <study>').description('the knobs a search would turn in the study\'s committed editable files: type, bounds, scale, search window, and what was skipped and why')
    .option('--json', 'machine-readable output')
    .action(async (study: string, o: { json?: boolean }) => {
      exit.code = await knobsCommand(study, o, io);
    });
  program.command('ui').description('a live dashboard of the store in the browser: runs, experiments as they land, traces, knobs, comparisons')
    .option('--port <n>', 'the port (0: any free one)', intArg('--port'), 4873)
    .option('--host <addr>', 'the address to listen on; any but loopback requires the printed token', '127.0.0.1')
    .option('--db <path>', 'the SQLite store (default: .autoagent/autoagent.db in the repository)')
    .action(async (o: { port: number; host: string; db?: string }) => {
      const { uiCommand } = await import('./ui/cli.ts'); // hono and the server only when the dashboard runs
      exit.code = await uiCommand(o, io);
    });
  program.command('worker').description('evaluate jobs of `run --queue` runs from a Redis queue (stateless; any machine that reaches Redis)')
    .requiredOption('--queue <url>', 'the Redis: redis://HOST:PORT or rediss://:PASSWORD@HOST:PORT')
    .option('--slots <n>', 'jobs at once', positiveIntArg('--slots'), 1)
    .option('--unsafe-no-sandbox', 'run candidate code without bubblewrap (only jobs of runs started so)')
    .option('--lock-ms <ms>', 'BullMQ lock duration: a job is handed to another worker this long after this one stops renewing it', intArg('--lock-ms'), 30000)
    .option('--stalled-ms <ms>', 'how often this worker looks for jobs whose worker died', intArg('--stalled-ms'), 30000)
    .option('--models <own>', 'also evaluate harness studies, calling models with this machine\'s keys (OPENAI_API_KEY, ANTHROPIC_API_KEY, *_BASE_URL): the queue carries none')
    .option('--data <dir>', 'harness studies: the benchmark data here (as AUTOAGENT_DATA); it must be the coordinator\'s, byte for byte')
    .action(async (o: WorkerCliOptions) => {
      const { workerCommand } = await import('./queue/cli.ts'); // BullMQ and ioredis only when used
      exit.code = await workerCommand(o, io.err);
    });
  program.command('queue').description('the evaluation queue of `run --queue`').command('status')
    .description('workers (heartbeat: host, slots, hardware, last seen), jobs waiting / active / completed / failed, the oldest waiting job')
    .requiredOption('--queue <url>', 'the Redis: redis://HOST:PORT').option('--json', 'machine-readable output')
    .action(async (o: { queue: string; json?: boolean }) => {
      const { queueStatus, queueStatusText } = await import('./queue/cli.ts');
      const s = await queueStatus(o.queue);
      io.out((o.json ? JSON.stringify(s, null, 2) : queueStatusText(s)) + '\n');
    });
  program.command('init').description('scaffold a study in this repository: study.yaml from the flags, or by asking on a terminal when none is given (never overwrites; copies autoagent\'s example train.py / prepare.py or harness when missing)')
    .option('--kind <kind>', 'command | trainer | harness')
    .option('--name <name>', 'the study\'s name (default: the folder\'s)')
    .option('--editable <globs...>', 'the files a proposer may change (trainer: train.py; harness: the harness files)')
    .option('--locked <globs...>', 'files hashed and verified (default: the files the --evaluate command names; trainer: prepare.py)')
    .option('--metric <name>', 'the metric\'s name (trainer: val_bpb; harness: score)')
    .option('--direction <dir>', 'minimize | maximize (default minimize; harness: maximize)')
    .option('--command <cmd>', 'command studies: run for each candidate (e.g. "python3 train.py")')
    .option('--evaluate <cmd>', 'command studies: the locked evaluator, printing METRIC name=value (e.g. "python3 evaluate.py")')
    .option('--harness <dir>', 'harness studies: the harness folder (default harness)')
    .option('--benchmark <name>', 'harness studies: gsm8k, bbh, humaneval-x-js, tooluse, or a benchmark folder')
    .option('-o, --output <file>', 'the study file to write (default study.yaml)')
    .action(async (o: InitOptions) => {
      const asker = !hasStudyFlags(o) && process.stdin.isTTY ? askOver(process.stdin, process.stdout) : null;
      try {
        exit.code = await initCommand(o, io, asker?.ask ?? null);
      } finally {
        asker?.close();
      }
    });
  program.command('doctor').description('what this machine has of what autoagent needs (Node, git, bubblewrap, a Python with PyTorch, optuna, Chromium, the corpus): one line each, with the command that installs what is missing; exit 1 when something required is missing')
    .option('--install', 'install every missing Debian package (apt-get as root or through sudo; otherwise print the command and exit 1)')
    .option('--dry-run', 'with --install: print the commands instead of running them')
    .option('--json', 'machine-readable output')
    .action(async (o: { install?: boolean; dryRun?: boolean; json?: boolean }) => {
      exit.code = await doctorCommand(o, io, thisMachine(), fileURLToPath(new URL('..', import.meta.url)));
    });
  // --- runs: name, tag, note, rm, prune (issue 15, item 8) ---
  const runs = program.command('runs').description('list, name, tag, annotate, delete and prune runs');
  runs.command('list', { isDefault: true }).description('the runs with their label and tags')
    .option('--db <path>', 'the SQLite store').option('--json', 'machine-readable output')
    .action(async (o: CommonOpts) => {
      const db = openDb(await storePath(o));
      io.out((o.json ? JSON.stringify(runsData(db), null, 2) : runsText(db)) + '\n');
    });
  const annotated = (run: RunRow, json?: boolean) => {
    const a = runAnnotations(run);
    io.out(json ? JSON.stringify({ id: run.id, ...a }, null, 2) + '\n' : `${run.id}: label ${a.label === null ? '(none)' : JSON.stringify(a.label)} · tags ${a.tags.length ? a.tags.join(', ') : '(none)'}${a.notes ? ` · notes ${a.notes.length} chars` : ''}\n`);
  };
  runs.command('rename <run> <label>').description('set the run\'s label ("" clears it; the id stays)')
    .option('--db <path>', 'the SQLite store').option('--json', 'machine-readable output')
    .action(async (ref: string, label: string, o: CommonOpts) => {
      annotated(annotateRun(openDb(await storePath(o)), ref, { label }), o.json);
    });
  runs.command('tag <run> <tags...>').description('add tags to a run (--remove: take them off)')
    .option('--remove', 'remove these tags').option('--db <path>', 'the SQLite store').option('--json', 'machine-readable output')
    .action(async (ref: string, tags: string[], o: CommonOpts & { remove?: boolean }) => {
      annotated(runsTag(openDb(await storePath(o)), ref, tags, Boolean(o.remove)), o.json);
    });
  runs.command('note <run> <text>').description('set the run\'s notes ("" clears them)')
    .option('--db <path>', 'the SQLite store').option('--json', 'machine-readable output')
    .action(async (ref: string, text: string, o: CommonOpts) => {
      annotated(annotateRun(openDb(await storePath(o)), ref, { notes: text }), o.json);
    });
  runs.command('rm <run>').description('delete a run: its branch, candidate refs, work folder and rows (needs --yes; never a running run)')
    .option('--yes', 'really delete it').option('--db <path>', 'the SQLite store').option('--json', 'machine-readable output')
    .action(async (ref: string, o: CommonOpts & { yes?: boolean }) => {
      exit.code = await runsRm(openDb(await storePath(o)), ref, o, io);
    });
  runs.command('prune').description('delete the runs that hold nothing: failed, or no experiment run (a dry run without --yes)')
    .option('--yes', 'really delete them').option('--db <path>', 'the SQLite store').option('--json', 'machine-readable output')
    .action(async (o: CommonOpts & { yes?: boolean }) => {
      exit.code = await runsPrune(openDb(await storePath(o)), o, io);
    });
  // --- end runs ---
  program.command('schema').description('print the JSON Schema of study files (for editors)')
    .option('-o, --output <file>', 'write it to a file')
    .action((o: { output?: string }) => {
      const text = JSON.stringify(studyJsonSchema(), null, 2) + '\n';
      if (o.output) writeFileSync(o.output, text); else io.out(text);
    });
  return program;
}

export async function main(argv: string[], io: IO = processIO): Promise<number> {
  const exit = { code: 0 };
  const program = buildProgram(io, exit);
  try {
    await program.parseAsync(argv, { from: 'user' });
    return exit.code;
  } catch (e) {
    if (e instanceof CommanderError) {
      if (e.code === 'commander.helpDisplayed' || e.code === 'commander.version' || e.exitCode === 0) return 0;
      return 2;
    }
    if (e instanceof UserError) {
      io.err(`autoagent: ${e.message}\n`);
      return e.exitCode;
    }
    // the store turned out damaged or unreadable after it opened (a truncated page, a full disk)
    const store = storeErrorMessage(lastStorePath() ?? 'the store', e);
    if (store) {
      io.err(`autoagent: ${store}\n`);
      return /^SQLITE_(NOTADB|CORRUPT)/.test((e as { code?: string }).code ?? '') ? 2 : 1;
    }
    io.err(`autoagent: internal error: ${(e as Error).stack ?? e}\n`);
    return 1;
  }
}
