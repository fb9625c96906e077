/**
 * A PNG of an HTML report, taken by headless Chromium (`--screenshot`). Without a height the
 * picture is the whole page: Chromium draws a tall window (`maxHeight`, default 12 000 px) and
 * the empty background below the content is cut off. Chromium is found at
 * `opts.chromium`, `$AUTOAGENT_CHROMIUM`, or the first of chromium, chromium-browser,
 * google-chrome, google-chrome-stable on PATH (and /usr/bin/chromium). It runs with a fresh
 * profile folder, no network features, and a deadline; the folder is removed afterwards.
 */
import { execFile } from 'node:child_process';
import { accessSync, constants, existsSync, mkdtempSync, readFileSync, rmSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { UserError } from '../errors.ts';
import { decodePng, encodePng, trimBottom } from './pngcodec.ts';

export interface PngOptions {
  /** viewport width in CSS pixels (default 1400) */
  width?: number;
  /** viewport height in CSS pixels: the picture is exactly this tall; default: the whole page, up to maxHeight */
  height?: number;
  /** the tallest whole-page picture (default 12 000) */
  maxHeight?: number;
  /** path of the Chromium / Chrome binary */
  chromium?: string;
  /** deadline in ms (default 60 000) */
  timeoutMs?: number;
}

const NAMES = ['chromium', 'chromium-browser', 'google-chrome', 'google-chrome-stable'];
const INSTALL = 'apt-get install chromium';

function executable(p: string): boolean {
  try {
    accessSync(p, constants.X_OK);
    return statSync(p).isFile();
  } catch {
    return false;
  }
}

const FALLBACKS = ['/usr/bin/chromium', '/usr/bin/chromium-browser', '/usr/bin/google-chrome', '/snap/bin/chromium'];

/** The Chromium binary to use (explicit, $AUTOAGENT_CHROMIUM, PATH, then the usual places), or null when none is installed. */
export function findChromium(explicit?: string, searchPath = process.env.PATH ?? '', fallbacks: readonly string[] = FALLBACKS): string | null {
  if (explicit) return explicit;
  const env = process.env.AUTOAGENT_CHROMIUM;
  if (env) return env;
  const dirs = searchPath.split(delimiter).filter(Boolean);
  for (const name of NAMES) {
    for (const d of dirs) {
      const p = join(d, name);
      if (executable(p)) return p;
    }
  }
  for (const p of fallbacks) if (executable(p)) return p;
  return null;
}

export async function renderPng(htmlPath: string, pngPath: string, opts: PngOptions = {}): Promise<void> {
  const bin = findChromium(opts.chromium);
  if (!bin) throw new UserError(`no Chromium found (looked for ${NAMES.join(', ')} on PATH): install it with \`${INSTALL}\`, or set AUTOAGENT_CHROMIUM to its path`);
  if (!executable(bin)) throw new UserError(`${bin}: not an executable Chromium binary: install Chromium with \`${INSTALL}\`, or pass the path of one`);
  const html = resolve(htmlPath);
  if (!existsSync(html)) throw new UserError(`${htmlPath}: no such file (write the report first)`);
  const out = resolve(pngPath);
  const width = Math.max(200, Math.round(opts.width ?? 1400));
  const fullPage = opts.height === undefined;
  const height = fullPage ? Math.max(400, Math.min(16_000, Math.round(opts.maxHeight ?? 12_000))) : Math.max(100, Math.round(opts.height!));
  const profile = mkdtempSync(join(tmpdir(), 'autoagent-chromium-'));
  if (existsSync(out)) unlinkSync(out);
  const args = [
    '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--no-default-browser-check',
    '--disable-background-networking', '--disable-component-update', '--disable-sync', '--disable-extensions',
    '--disable-default-apps', '--mute-audio', '--hide-scrollbars', '--force-device-scale-factor=1',
    `--user-data-dir=${profile}`, `--window-size=${width},${height}`, `--screenshot=${out}`,
    pathToFileURL(html).href,
  ];
  try {
    await new Promise<void>((done, fail) => {
      execFile(bin, args, { timeout: opts.timeoutMs ?? 60_000, maxBuffer: 8 << 20, killSignal: 'SIGKILL' }, (err, _stdout, stderr) => {
        if (err && !existsSync(out)) {
          const e = err as NodeJS.ErrnoException & { killed?: boolean };
          if (e.code === 'ENOENT') return fail(new UserError(`${bin}: not found: install Chromium with \`${INSTALL}\``));
          if (e.killed) return fail(new UserError(`${bin} took longer than ${Math.round((opts.timeoutMs ?? 60_000) / 1000)} s to take the screenshot`));
          const last = String(stderr).split('\n').map((l) => l.trim()).filter((l) => l && !/dbus|Fontconfig/i.test(l)).pop() ?? err.message;
          return fail(new UserError(`${bin} failed to take the screenshot: ${last}`));
        }
        done();
      });
    });
  } finally {
    rmSync(profile, { recursive: true, force: true });
  }
  if (!existsSync(out) || statSync(out).size === 0) throw new UserError(`${bin} wrote no screenshot to ${pngPath}`);
  if (fullPage) {
    const full = decodePng(readFileSync(out));
    const trimmed = trimBottom(full);
    if (trimmed !== full) writeFileSync(out, encodePng(trimmed));
  }
}
