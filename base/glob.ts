/** Path globs (picomatch, dotfiles included), as the study's `locked`, `editable`, `outputs` and `sandbox.hidden` fields use them. */
import picomatch from 'picomatch';

/** A matcher for study globs, which are relative to the study folder (`prefix`, repo-relative). */
export function globMatcher(globs: string[], prefix: string): (repoPath: string) => boolean {
  const pre = prefix ? prefix.replace(/\/$/, '') + '/' : '';
  const matchers = globs.map((g) => picomatch(pre + g.replace(/^\.\//, ''), { dot: true }));
  return (p) => matchers.some((m) => m(p));
}
