/**
 * `autoagent init`: scaffold a study in the current repository — from flags (--kind, --editable,
 * --metric, …) or, on a terminal without flags, by asking. Writes study.yaml (validated by the
 * real study schema), never over an existing file; a trainer or harness study without its files
 * gets autoagent's own examples copied beside it. Says what to commit and how to run it.
 */
import { copyFileSync, cpSync, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { basename, dirname, join, relative, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import type { Readable, Writable } from 'node:stream';
import { stringify } from 'yaml';
import { UsageError, UserError } from '../base/errors.ts';
import { repoRoot } from '../base/git.ts';
import { parseStudy } from './study.ts';
import type { IO } from './io.ts';

export const KINDS = ['command', 'trainer', 'harness'] as const;
type Kind = (typeof KINDS)[number];

export interface InitOptions {
  kind?: string;
  name?: string;
  editable?: string[];
  locked?: string[];
  metric?: string;
  direction?: string;
  command?: string;
  evaluate?: string;
  harness?: string;
  benchmark?: string;
  output?: string;
}

/** Asks one question, answered with a line (the default when empty). */
export type Ask = (question: string, fallback?: string) => Promise<string>;

/** questions on `output`, answers read line by line from `input` (a terminal, or any stream in tests) */
export function askOver(input: Readable, output: Writable): { ask: Ask; close: () => void } {
  const rl = createInterface({ input, output, terminal: false });
  const lines = rl[Symbol.asyncIterator]();
  return {
    ask: async (question, fallback) => {
      output.write(`${question}${fallback ? ` [${fallback}]` : ''}: `);
      const next = await lines.next();
      if (next.done) throw new UsageError(`init: no answer to "${question}" (input ended)`);
      return next.value.trim() || fallback || '';
    },
    close: () => rl.close(),
  };
}

/** whether any flag that describes the study was given (then nothing is asked) */
export function hasStudyFlags(o: InitOptions): boolean {
  return ['kind', 'name', 'editable', 'locked', 'metric', 'direction', 'command', 'evaluate', 'harness', 'benchmark'].some((k) => o[k as keyof InitOptions] !== undefined);
}

const ROOT = resolve(import.meta.dirname, '..');

function cleanName(s: string): string {
  const n = s.replace(/[^A-Za-z0-9_.-]+/g, '-').replace(/^[^A-Za-z0-9]+/, '');
  return n || 'study';
}

/** existing files named in a command line (`python3 evaluate.py --x` → evaluate.py): what to lock */
function filesIn(command: string, dir: string): string[] {
  return command.split(/\s+/).filter((w) => /^[\w./-]+$/.test(w) && !w.startsWith('-') && w.includes('.') && existsSync(join(dir, w)));
}

const list = (s: string) => s.split(/[,\s]+/).filter(Boolean);

/** Ask for what the flags did not give (only when `ask` is there), then check every field is there. */
async function complete(o: InitOptions, ask: Ask | null, dir: string): Promise<Required<Pick<InitOptions, 'name' | 'editable' | 'locked' | 'metric' | 'direction'>> & InitOptions & { kind: Kind }> {
  const need = async (value: string | undefined, question: string, flag: string, fallback?: string): Promise<string> => {
    if (value !== undefined) return value;
    if (ask) {
      const a = await ask(question, fallback);
      if (a) return a;
    } else if (fallback !== undefined) return fallback;
    throw new UsageError(`init: ${flag} is needed (${question.toLowerCase()})`);
  };
  const k = await need(o.kind, 'Kind of study: command, trainer or harness', '--kind', ask ? 'command' : undefined);
  if (!(KINDS as readonly string[]).includes(k)) throw new UsageError(`init: --kind: one of ${KINDS.join(', ')} (got ${k})`);
  const kind = k as Kind;
  const name = await need(o.name, 'Name (letters, digits, _ . -)', '--name', cleanName(basename(dir)));
  if (kind === 'trainer') {
    const editable = o.editable ?? list(await need(undefined, 'Editable file (train.py is copied from autoagent when missing)', '--editable', 'train.py'));
    const metric = await need(o.metric, 'Metric', '--metric', 'val_bpb');
    const direction = await need(o.direction, 'Direction: minimize or maximize', '--direction', 'minimize');
    return { ...o, kind, name, editable, locked: o.locked ?? ['prepare.py'], metric, direction };
  }
  if (kind === 'harness') {
    const harness = await need(o.harness, 'Harness folder (an example is copied there when missing)', '--harness', 'harness');
    const benchmark = await need(o.benchmark, 'Benchmark: gsm8k, bbh, humaneval-x-js, tooluse, or a benchmark folder', '--benchmark', ask ? 'gsm8k' : undefined);
    const editable = o.editable ?? [`${harness}/harness.yaml`, `${harness}/prompts/*.md`];
    const local = existsSync(join(dir, benchmark, 'benchmark.yaml'));
    return { ...o, kind, name, harness, benchmark, editable, locked: o.locked ?? (local ? [`${benchmark}/**`] : []), metric: o.metric ?? 'score', direction: o.direction ?? 'maximize' };
  }
  const editable = o.editable ?? list(await need(undefined, 'Editable files (globs, comma-separated): the only files a proposer may change', '--editable'));
  const command = await need(o.command, 'Command run for each candidate, in its copy of the repository (e.g. python3 train.py)', '--command');
  const evaluate = await need(o.evaluate, 'Locked evaluator command: prints METRIC name=value (e.g. python3 evaluate.py)', '--evaluate');
  const metric = await need(o.metric, 'Metric name (as the evaluator prints it)', '--metric');
  const direction = await need(o.direction, 'Direction: minimize or maximize', '--direction', 'minimize');
  return { ...o, kind, name, editable, command, evaluate, locked: o.locked ?? filesIn(evaluate, dir), metric, direction };
}

/** the study's YAML text, commented */
function studyText(s: Awaited<ReturnType<typeof complete>>): string {
  const flow = (v: unknown) => stringify(v, { collectionStyle: 'flow', flowCollectionPadding: false, lineWidth: 0 }).trim();
  const lines = [
    `# ${s.kind} study, written by \`autoagent init\`. Paths and commands are relative to this file's folder.`,
    '# Every field: README.md ("A study file"), or schema/study.schema.json.',
    `name: ${flow(s.name)}`,
    `kind: ${s.kind}`,
    `editable: ${flow(s.editable)}        # the only files a proposer may change`,
    `locked: ${flow(s.locked)}        # hashed at start, verified before every evaluation`,
  ];
  if (s.kind === 'command') {
    lines.push(`command: ${flow(s.command)}        # run for each candidate, in its own copy, inside the sandbox`);
    lines.push(`evaluate: ${flow(s.evaluate)}        # the locked evaluator: prints \`METRIC ${s.metric}=<number>\``);
  }
  lines.push(`metric: ${flow({ name: s.metric, direction: s.direction })}`);
  if (s.kind === 'trainer') {
    lines.push('trainer: { train: train.py, prepare: prepare.py, corpus: brown, budget: steps, steps: 400 }   # exactly 400 optimizer steps per experiment');
    lines.push('budget: { experiment_seconds: 300, experiments: 20, wall_seconds: 28800 }');
  } else if (s.kind === 'harness') {
    lines.push(`harness: ${flow({ dir: s.harness, benchmark: s.benchmark, split: 'val', limit: 50, concurrency: 4 })}   # the data of built-in suites: AUTOAGENT_DATA or --data`);
    lines.push('budget: { experiment_seconds: 1800, experiments: 10, dollars: 2 }');
  } else {
    lines.push('budget: { experiment_seconds: 60, experiments: 20, wall_seconds: 28800 }');
  }
  lines.push('proposer: { type: search }       # search | random | optuna | llm | hybrid | command');
  lines.push('acceptance: { baseline_repeats: 3, min_delta: 0, confirm_repeats: 1 }');
  return lines.join('\n') + '\n';
}

export async function initCommand(o: InitOptions, io: IO, ask: Ask | null, cwd = process.cwd()): Promise<number> {
  const file = resolve(cwd, o.output ?? 'study.yaml');
  const dir = dirname(file);
  if (existsSync(file)) throw new UsageError(`${file} exists already: init never overwrites (remove it, or pass -o another.yaml)`);
  let near = dir;
  while (!existsSync(near)) near = dirname(near);
  try {
    await repoRoot(near);
  } catch {
    throw new UserError(`${dir} is not in a git repository (a run commits its kept changes to git): run \`git init\` there first`);
  }
  const s = await complete({ ...o, editable: o.editable?.flatMap(list), locked: o.locked?.flatMap(list) }, ask, dir);
  const text = studyText(s);
  parseStudy(text, file); // the real schema: a bad --direction, name or glob ends here, before anything is written
  const copied: string[] = [];
  const copy = (from: string, to: string) => {
    if (existsSync(join(dir, to))) return;
    mkdirSync(dirname(join(dir, to)), { recursive: true });
    if (from.endsWith('/')) cpSync(join(ROOT, from), join(dir, to), { recursive: true });
    else copyFileSync(join(ROOT, from), join(dir, to));
    copied.push(to);
  };
  if (s.kind === 'trainer') {
    copy('gpu-trainer/train.py', 'train.py');
    copy('gpu-trainer/prepare.py', 'prepare.py');
  } else if (s.kind === 'harness') {
    copy('harnesses/gsm8k/harness.yaml', `${s.harness}/harness.yaml`);
    copy('harnesses/gsm8k/prompts/', `${s.harness}/prompts`);
  }
  mkdirSync(dir, { recursive: true });
  writeFileSync(file, text, { flag: 'wx' });
  const rel = (p: string) => relative(cwd, join(dir, p)) || '.';
  const studyRel = relative(cwd, file);
  io.out(`wrote ${studyRel}: kind ${s.kind}, editable ${s.editable.join(', ')}, locked ${s.locked.join(', ') || 'nothing'}, metric ${s.metric} (${s.direction})\n`);
  if (copied.length) io.out(`copied from autoagent: ${copied.map(rel).join(', ')}\n`);
  const missing = [...s.editable, ...s.locked].filter((g) => !/[*?[{]/.test(g) && !existsSync(join(dir, g)));
  if (missing.length) io.out(`not there yet: ${missing.map(rel).join(', ')} (a run needs them committed)\n`);
  const toAdd = [studyRel, ...copied.map(rel), ...[...s.editable, ...s.locked].filter((g) => !/[*?[{]/.test(g) && existsSync(join(dir, g))).map(rel)];
  io.out(`next: git add ${[...new Set(toAdd)].join(' ')} && git commit -m "autoagent study"\n`);
  io.out(`then: autoagent knobs ${studyRel}   (what the search would turn)\n      autoagent run ${studyRel}\n`);
  return 0;
}
