/**
 * `autoagent knobs <study>`: the knobs a search would turn, found in the study's committed
 * editable files (module-level literals, argparse defaults, hyperparameter classes, YAML keys),
 * with type, bounds, scale and the window the search uses; and what was passed over, with why.
 * The report is src/knobs.ts's, the one a knob proposer checks before it starts.
 */
import { dirname, relative, resolve } from 'node:path';
import { loadStudy } from './study.ts';
import { UsageError } from '../base/errors.ts';
import * as g from '../base/git.ts';
import { globMatcher } from '../base/glob.ts';
import { table } from '../base/format.ts';
import { formatKnobValue, type Knob } from '../meta-agent/search/knobs.ts';
import { dimOf } from '../meta-agent/search/space.ts';
import type { IO } from './io.ts';
import { studyKnobsAt, type StudyKnobs } from './knobs.ts';

const round3 = (x: number) => Number(x.toPrecision(3));

function searchWindow(k: Knob): { search_low: number | null; search_high: number | null; search_log: boolean } {
  const d = dimOf(k);
  if (d.type === 'float' || d.type === 'int') return { search_low: round3(d.low), search_high: round3(d.high), search_log: d.log };
  return { search_low: null, search_high: null, search_log: false };
}

export function knobsData(studyPath: string, commit: string, r: StudyKnobs) {
  return {
    study: studyPath,
    commit,
    files: r.files,
    knobs: r.knobs.map((k) => ({
      file: k.file, name: k.name, type: k.type, value: k.value,
      min: k.min ?? null, max: k.max ?? null, ...(k.minExclusive ? { min_exclusive: true } : {}), log: k.log,
      ...(k.choices ? { choices: k.choices } : {}),
      ...searchWindow(k),
      line: k.line, text: k.text, form: k.form ?? (k.syntax === 'yaml' ? 'yaml' : 'global'), declared: k.declared,
      ...(k.description !== undefined ? { description: k.description } : {}),
    })),
    skipped: r.skipped.map((s) => ({ file: s.file, name: s.name, reason: s.reason, ...(s.line !== undefined ? { line: s.line } : {}) })),
  };
}

export function knobsText(studyFile: string, commit: string, r: StudyKnobs): string {
  const out: string[] = [];
  out.push(`knobs of ${studyFile} at ${commit.slice(0, 8)} (committed files): ${r.knobs.length} found, ${r.skipped.length} skipped, in ${r.files.join(', ')}`);
  if (r.knobs.length > 0) {
    const rows = r.knobs.map((k) => {
      const w = searchWindow(k);
      const search = k.type === 'choice' ? (k.choices ?? []).map(String).join(' | ') : k.type === 'bool' ? 'False | True' : `[${w.search_low}, ${w.search_high}]${w.search_log ? ' log' : ''}`;
      return [
        `${k.file}:${k.line}`, k.name, k.type, k.text === '' ? formatKnobValue(k, k.value) : k.text,
        k.min === undefined ? '—' : `${k.minExclusive ? '>' : ''}${k.min}`, k.max === undefined ? '—' : String(k.max),
        k.log ? 'yes' : 'no', k.choices ? k.choices.map(String).join('|') : '', search,
      ];
    });
    out.push('', table(['FILE', 'NAME', 'TYPE', 'VALUE', 'MIN', 'MAX', 'LOG', 'CHOICES', 'SEARCH'], rows));
  } else {
    out.push('', 'no knobs: declare them under `knobs:` in the study file ({ file, name, min, max, log, choices })');
  }
  if (r.skipped.length > 0) {
    out.push('', 'skipped:');
    for (const s of r.skipped) out.push(`  ${s.file}${s.line !== undefined ? `:${s.line}` : ''} ${s.name}: ${s.reason}`);
  }
  return out.join('\n');
}

export async function knobsCommand(studyFile: string, o: { json?: boolean }, io: IO): Promise<number> {
  const studyPath = resolve(studyFile);
  const { study } = loadStudy(studyPath);
  const repo = await g.repoRoot(dirname(studyPath));
  const commit = await g.headCommit(repo);
  const studyDir = relative(repo, dirname(studyPath)).split('\\').join('/');
  const isLocked = globMatcher(study.locked, studyDir);
  const editable = globMatcher(study.editable, studyDir);
  const isEditable = (p: string) => editable(p) && !isLocked(p);
  const r = await studyKnobsAt(study, studyDir, repo, commit, isEditable);
  if (r.files.length === 0) {
    throw new UsageError(`${studyPath}: field \`editable\`: no committed file matches ${JSON.stringify(study.editable)} (outside the locked paths; paths are relative to the study file's folder)`);
  }
  io.out((o.json ? JSON.stringify(knobsData(studyPath, commit, r), null, 2) : knobsText(studyFile, commit, r)) + '\n');
  return 0;
}
