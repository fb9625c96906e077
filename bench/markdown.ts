/** Write one benchmark's section into BENCHMARKS.md, between markers, leaving the others. */
import * as nodeOs from 'node:os';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';

export const BENCHMARKS = resolve(import.meta.dirname, '..', 'BENCHMARKS.md');

export function writeSection(id: string, body: string): void {
  const begin = `<!-- bench:${id} -->`;
  const end = `<!-- /bench:${id} -->`;
  let text = existsSync(BENCHMARKS) ? readFileSync(BENCHMARKS, 'utf8') : '# Benchmarks\n\nEach section is written by the command it names; figures are ratios measured side by side in one run.\n';
  const block = `${begin}\n${body.trim()}\n${end}`;
  const i = text.indexOf(begin);
  const j = text.indexOf(end);
  text = i >= 0 && j > i ? text.slice(0, i) + block + text.slice(j + end.length) : `${text.trimEnd()}\n\n${block}\n`;
  writeFileSync(BENCHMARKS, text);
}

export function machine(): string {
  const os = nodeOs;
  return `${os.cpus().length} × ${os.cpus()[0]?.model ?? 'cpu'}, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${process.version}`;
}

