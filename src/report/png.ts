/**
 * A PNG of an HTML report, taken by headless Chromium driven by playwright-core (no browser is
 * downloaded: the system's Chromium is used). Without a height the picture is the whole page
 * (Chromium's full-page screenshot: exactly as tall as the document). Chromium is found at
 * `opts.chromium`, `$AUTOAGENT_CHROMIUM`, or the first of chromium, chromium-browser,
 * google-chrome, google-chrome-stable on PATH (and /usr/bin/chromium). It runs with a fresh
 * profile, no network features, and a deadline.
 */
import { accessSync, constants, existsSync, statSync, unlinkSync } from 'node:fs';
import { delimiter, join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Browser } from 'playwright-core';
import { UserError } from '../../base/errors.ts';

export interface PngOptions {
  /** viewport width in CSS pixels (default 1400) */
  width?: number;
  /** viewport height in CSS pixels: the picture is exactly this tall; default: the whole page */
  height?: number;
  /** path of the Chromium / Chrome binary */
  chromium?: string;
  /** deadline in ms (default 60 000) */
  timeoutMs?: number;
}

const NAMES = ['chromium', 'chromium-browser', 'google-chrome', 'google-chrome-stable'];
const INSTALL = 'apt-get install chromium';

/** a file this process may run */
export function executable(p: string): boolean {
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

/** The flags every headless Chromium of ours runs with: nothing reaches the network on its own. */
export const CHROMIUM_ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--no-default-browser-check',
  '--disable-background-networking', '--disable-component-update', '--disable-sync', '--disable-extensions',
  '--disable-default-apps', '--mute-audio', '--hide-scrollbars',
];

/** The Chromium binary to run: found and executable, else a UserError naming the install command. */
export function chromiumPath(explicit?: string): string {
  const bin = findChromium(explicit);
  if (!bin) throw new UserError(`no Chromium found (looked for ${NAMES.join(', ')} on PATH): install it with \`${INSTALL}\`, or set AUTOAGENT_CHROMIUM to its path`);
  if (!executable(bin)) throw new UserError(`${bin}: not an executable Chromium binary: install Chromium with \`${INSTALL}\`, or pass the path of one`);
  return bin;
}

/** Starts the system's headless Chromium under playwright-core; a missing or broken one is a UserError of one line. */
export async function launchChromium(opts: { chromium?: string; timeoutMs?: number } = {}): Promise<Browser> {
  const bin = chromiumPath(opts.chromium);
  // playwright-core is loaded by what starts a browser only (about 1 s of every CLI start otherwise)
  const { chromium } = await import('playwright-core');
  try {
    return await chromium.launch({ executablePath: bin, headless: true, args: CHROMIUM_ARGS, timeout: opts.timeoutMs ?? 60_000 });
  } catch (e) {
    const first = String((e as Error).message ?? e).split('\n').map((l) => l.trim()).find((l) => l && !/^=+/.test(l)) ?? 'unknown error';
    throw new UserError(`${bin} failed to start: ${first.replace(/^browserType\.launch: /, '')}`);
  }
}

export async function renderPng(htmlPath: string, pngPath: string, opts: PngOptions = {}): Promise<void> {
  const html = resolve(htmlPath);
  chromiumPath(opts.chromium);
  if (!existsSync(html)) throw new UserError(`${htmlPath}: no such file (write the report first)`);
  const browser = await launchChromium(opts);
  const out = resolve(pngPath);
  const width = Math.max(200, Math.round(opts.width ?? 1400));
  const fullPage = opts.height === undefined;
  const height = fullPage ? 900 : Math.max(100, Math.round(opts.height!));
  const timeout = opts.timeoutMs ?? 60_000;
  if (existsSync(out)) unlinkSync(out);
  try {
    const page = await browser.newPage({ viewport: { width, height }, deviceScaleFactor: 1 });
    await page.goto(pathToFileURL(html).href, { waitUntil: 'load', timeout });
    await page.screenshot({ path: out, fullPage, timeout, animations: 'disabled' });
  } catch (e) {
    if (e instanceof UserError) throw e;
    const msg = String((e as Error).message ?? e).split('\n')[0];
    throw new UserError(`Chromium failed to take the screenshot of ${htmlPath}: ${msg}`);
  } finally {
    await browser.close();
  }
  if (!existsSync(out) || statSync(out).size === 0) throw new UserError(`Chromium wrote no screenshot to ${pngPath}`);
}
