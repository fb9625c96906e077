/**
 * Bundles the dashboard's client (src/ui/client/main.ts, uPlot and the styles) into one script,
 * dist/ui/app.js, with esbuild: offline, no CDN. `npm ci` runs it (the `prepare` script); the
 * server rebuilds it when it is missing or older than a client source.
 *
 *   node --import tsx src/ui/build.ts
 */
import { build } from 'esbuild';
import { mkdirSync, readdirSync, renameSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
export const CLIENT_DIR = join(here, 'client');
export const BUNDLE = resolve(here, '../../dist/ui/app.js');

function newestSource(dir: string): number {
  let t = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    t = Math.max(t, e.isDirectory() ? newestSource(p) : statSync(p).mtimeMs);
  }
  return t;
}

/** Writes the bundle (atomically: a reader never sees half a file). */
export async function buildClient(out = BUNDLE): Promise<string> {
  mkdirSync(dirname(out), { recursive: true });
  const tmp = `${out}.${process.pid}.tmp`;
  await build({
    entryPoints: [join(CLIENT_DIR, 'main.ts')],
    bundle: true,
    format: 'iife',
    target: 'es2020',
    minify: true,
    legalComments: 'none',
    outfile: tmp,
    loader: { '.css': 'text' },
    logLevel: 'silent',
  });
  renameSync(tmp, out);
  return out;
}

/** The bundle's path, built first when it is missing or older than the client's sources. */
export async function ensureBundle(out = BUNDLE): Promise<string> {
  const have = statSync(out, { throwIfNoEntry: false });
  const sources = existsDir(CLIENT_DIR) ? newestSource(CLIENT_DIR) : 0;
  if (!have || have.mtimeMs < sources || have.size === 0) await buildClient(out);
  return out;
}

function existsDir(p: string): boolean {
  return statSync(p, { throwIfNoEntry: false })?.isDirectory() ?? false;
}

if (process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  const out = await buildClient();
  process.stdout.write(`dashboard client: ${out} (${Math.round(statSync(out).size / 1024)} KiB)\n`);
}
