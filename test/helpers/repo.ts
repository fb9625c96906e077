/** Test fixtures: temporary git repositories with a small study. */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync, mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';

export function sh(cwd: string, cmd: string, args: string[]): string {
  return execFileSync(cmd, args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

export function makeRepo(files: Record<string, string>, parent = tmpdir()): string {
  const dir = mkdtempSync(join(parent, 'autoagent-test-'));
  for (const [p, c] of Object.entries(files)) {
    mkdirSync(dirname(join(dir, p)), { recursive: true });
    writeFileSync(join(dir, p), c);
  }
  sh(dir, 'git', ['init', '-q', '-b', 'main']);
  sh(dir, 'git', ['add', '-A']);
  sh(dir, 'git', ['-c', 'user.name=t', '-c', 'user.email=t@t', 'commit', '-q', '-m', 'init']);
  return dir;
}

export function cleanup(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}

/** A quadratic in two knobs, with optional seeded noise: the evaluator is locked. */
export const PARAMS_PY = `# parameters to tune
X = 1.0  # first knob
N = 2  # second knob
`;

export const EVALUATE_PY = `import os, re, random
src = open('params.py').read()
x = float(re.search(r'^X = (\\S+)', src, re.M).group(1))
n = int(re.search(r'^N = (\\S+)', src, re.M).group(1))
noise = float(os.environ.get('NOISE', '0'))
random.seed(int(os.environ['AUTOAGENT_SEED']))
loss = (x - 3.0) ** 2 + (n - 5) ** 2 + noise * random.gauss(0, 1)
print(f'METRIC loss={loss}')
`;

export function studyYaml(extra = ''): string {
  return `name: demo
kind: command
editable: [params.py]
locked: [evaluate.py]
command: python3 -c "print('trained')"
evaluate: python3 evaluate.py
metric: { name: loss, direction: minimize }
budget: { experiment_seconds: 20, experiments: 8 }
acceptance: { baseline_repeats: 3, min_delta: 0, confirm_repeats: 1 }
${extra}`;
}

/** A repo with a one-knob harness (temperature 0.9) and a tiny exact-match benchmark, for harness runs. */
export function tinyHarnessRepo(tasks: Array<Record<string, unknown>>, confirmRepeats: number): string {
  return makeRepo({
    'h/harness.yaml': 'provider: openai\nmodel: gpt-4.1-mini\nsystem: prompts/system.md\nmax_steps: 2\ntemperature: 0.9\ntools: []\n',
    'h/prompts/system.md': 'Answer with a number only.',
    'bench/benchmark.yaml': 'name: tiny\ndescription: tiny arithmetic\ntasks: tasks.jsonl\nscorer: { type: exact }\n',
    'bench/tasks.jsonl': tasks.map((t) => JSON.stringify(t)).join('\n') + '\n',
    'study.yaml': `name: tiny-h
kind: harness
editable: [h/harness.yaml]
locked: [bench/**]
metric: { name: score, direction: maximize }
harness: { dir: h, benchmark: bench, split: val, concurrency: 1 }
budget: { experiments: 1 }
acceptance: { baseline_repeats: 2, confirm_repeats: ${confirmRepeats} }
`,
  });
}

/** a few KB of varied English-like text in 40 documents, the same every time */
export function tinyCorpus(): string {
  const words = 'the quick brown fox jumps over a lazy dog while seven bright stars watch quietly from far above the old town'.split(' ');
  let s = 7;
  const docs = Array.from({ length: 40 }, () => Array.from({ length: 300 }, () => words[(s = (s * 1103515245 + 12345) % 2147483648) % words.length]).join(' ') + '.');
  return docs.join('\n\n');
}

export interface TinyTrainerOverrides {
  /** the flow mapping after `budget:` */
  budget?: string;
  /** the flow mapping after `trainer:` */
  trainer?: string;
  /** lines appended to the study */
  extra?: string;
}

/** a tiny trainer study on tinyCorpus(): the shipped gpu-trainer/train.py, 3 s of training on CPU, one baseline evaluation */
export function tinyTrainerStudy(o: TinyTrainerOverrides = {}): string {
  return `name: tiny-gpt
kind: trainer
editable: [train.py]
locked: [prepare.py, corpus.txt]
metric: { name: val_bpb, direction: minimize }
budget: ${o.budget ?? '{ experiment_seconds: 3, grace_seconds: 8, evaluate_seconds: 60, experiments: 1 }'}
acceptance: { baseline_repeats: 1, confirm_repeats: 0 }
trainer: ${o.trainer ?? '{ corpus: corpus.txt, eval_tokens: 4096 }'}
${o.extra ?? ''}`;
}

const TRAINER_DIR = join(import.meta.dirname, '../../gpu-trainer');
export const TRAINER_PREPARE_PY = readFileSync(join(TRAINER_DIR, 'prepare.py'), 'utf8');
export const TRAINER_TRAIN_PY = readFileSync(join(TRAINER_DIR, 'train.py'), 'utf8');

/** a repository with the shipped prepare.py and train.py, tinyCorpus() and tinyTrainerStudy(overrides) */
export function tinyTrainerRepo(overrides: TinyTrainerOverrides = {}): string {
  return makeRepo({ 'prepare.py': TRAINER_PREPARE_PY, 'train.py': TRAINER_TRAIN_PY, 'corpus.txt': tinyCorpus(), 'study.yaml': tinyTrainerStudy(overrides) });
}
