import { createHash } from 'node:crypto';

/** Identity of a set of editable files: sha256 over sorted (path, content) pairs. */
export function filesHash(files: Record<string, string>): string {
  const h = createHash('sha256');
  for (const path of Object.keys(files).sort()) {
    h.update(path).update('\0').update(files[path]!).update('\0');
  }
  return h.digest('hex');
}

/** The incumbent's files with a proposal's edits applied. */
export function applyEdits(files: Record<string, string>, edits: Array<{ path: string; content: string }>): Record<string, string> {
  const out = { ...files };
  for (const e of edits) out[e.path] = e.content;
  return out;
}
