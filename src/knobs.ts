/**
 * The knobs of a study's committed editable files (module-level literals, argparse defaults,
 * hyperparameter classes, YAML keys), and the check that lets a knob proposer refuse to start when
 * there is nothing to turn. `autoagent knobs` (knobs-cli.ts) prints the same report.
 */
import type { Study } from './study.ts';
import { UsageError } from '../base/errors.ts';
import * as g from '../base/git.ts';
import { discoverKnobReport, type KnobReport, type SkippedKnob } from '../meta-agent/search/knobs.ts';

export interface StudyKnobs extends KnobReport {
  /** the editable files looked at (repo-relative) */
  files: string[];
}

/** The knob report of a study's editable files at `commit` (paths repo-relative; globs relative to `studyDir`). */
export async function studyKnobsAt(study: Study, studyDir: string, repo: string, commit: string, isEditable: (p: string) => boolean): Promise<StudyKnobs> {
  const files: Record<string, string> = {};
  for (const p of await g.trackedFiles(repo, commit)) {
    if (isEditable(p)) files[p] = await g.showFile(repo, commit, p);
  }
  const pre = studyDir ? `${studyDir}/` : '';
  const editable = study.editable.map((e) => pre + e.replace(/^\.\//, ''));
  const decls = study.knobs.map((k) => ({ ...k, file: pre + k.file.replace(/^\.\//, '') }));
  return { files: Object.keys(files).sort(), ...discoverKnobReport(files, editable, decls, study.command) };
}

/** `name (the reason up to its first colon outside brackets)`: `iter_num (reassigned at line 40)` */
function shortReason(s: SkippedKnob): string {
  let depth = 0;
  let cut = s.reason.length;
  for (let i = 0; i < s.reason.length; i++) {
    const c = s.reason[i]!;
    if (c === '(' || c === '[') depth++;
    else if (c === ')' || c === ']') depth--;
    else if (c === ':' && depth === 0 && s.reason[i + 1] === ' ') {
      cut = i;
      break;
    }
  }
  return `${s.name} (${s.reason.slice(0, cut).replace(/ \(state, not a knob\)$/, '')})`;
}

function listed(items: string[], max: number): string {
  return items.length <= max ? items.join(', ') : `${items.slice(0, max).join(', ')} and ${items.length - max} more`;
}

/**
 * A knob proposer with nothing to turn ends before the baseline runs, in one line: where it
 * looked, what it passed over, how to declare knobs.
 */
export async function requireKnobs(studyFile: string, proposer: string, study: Study, studyDir: string, repo: string, commit: string, isEditable: (p: string) => boolean): Promise<void> {
  const r = await studyKnobsAt(study, studyDir, repo, commit, isEditable);
  if (r.knobs.length > 0) return;
  const skipped = r.skipped.length === 0 ? 'nothing skipped' : `${r.skipped.length} skipped: ${listed(r.skipped.map(shortReason), 3)}`;
  throw new UsageError(
    `${studyFile}: the ${proposer} proposer found no knobs in ${listed(r.files, 4)} (looked for module-level literals, argparse defaults, hyperparameter classes and YAML keys; ${skipped}): declare them under \`knobs:\` or see \`autoagent knobs ${studyFile}\``,
  );
}
