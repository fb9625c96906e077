/**
 * Bundles the dashboard's client (src/ui/client/main.ts, uPlot and the styles) into one script,
 * dist/ui/app.js, with esbuild: offline, no CDN. `npm ci` runs it (the `prepare` script); the
 * server rebuilds it when it is missing or older than a client source.
 *
 *   node --import tsx src/ui/build.ts
 */
import { build } from 'esbuild';
import { mkdirSync, readdirSync, renameSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
export const CLIENT_DIR = join(here, 'client');
export const BUNDLE = resolve(here, '../../dist/ui/app.js');
/** modules outside the client folder that the client bundles (a change to them makes the bundle stale too) */
const SHARED_SOURCES = [resolve(here, '../../base/format.ts')];

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

/**
 * The bundle's path, built first when it is missing or older than the client's sources. Where the
 * package's folder is not writable (installed by root, run by a user) a stale bundle is built into
 * a private temporary folder instead.
 */
export async function ensureBundle(out = BUNDLE): Promise<string> {
  const sources = Math.max(existsDir(CLIENT_DIR) ? newestSource(CLIENT_DIR) : 0, ...SHARED_SOURCES.map((f) => statSync(f, { throwIfNoEntry: false })?.mtimeMs ?? 0));
  const fresh = (p: string) => {
    const have = statSync(p, { throwIfNoEntry: false });
    return Boolean(have && have.size > 0 && have.mtimeMs >= sources);
  };
  if (fresh(out)) return out;
  try {
    return await buildClient(out);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const denied = code === 'EACCES' || code === 'EPERM' || code === 'EROFS' || /EACCES|EPERM|EROFS|permission denied|read-only/i.test(String((e as Error).message));
    if (!denied) throw e;
    const alt = join(tmpdir(), `autoagent-ui-${process.getuid?.() ?? 'user'}`, 'app.js');
    return fresh(alt) ? alt : buildClient(alt);
  }
}

function existsDir(p: string): boolean {
  return statSync(p, { throwIfNoEntry: false })?.isDirectory() ?? false;
}

if (process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  const out = await buildClient();
  process.stderr.write(`dashboard client: ${out} (${Math.round(statSync(out).size / 1024)} KiB)\n`);
}
