/**
 * The dashboard in headless Chromium (the system's, driven by playwright-core): a real run of a
 * small command study goes on while the run page is open, and its experiments appear on the page
 * without a reload; then the runs list, a label edit, the knob view and a trace. Screenshots are
 * left in /tmp (autoagent-ui-runs.png, autoagent-ui-run.png, autoagent-ui-trace.png).
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { Browser } from 'playwright-core';
import { startRun } from '../../src/loop.ts';
import { MemoryReporter } from '../../src/report.ts';
import { findChromium, launchChromium } from '../../src/report/png.ts';
import { startUiServer, openReadOnly, type UiServer } from '../../src/ui/server.ts';
import { makeRepo, cleanup, PARAMS_PY, EVALUATE_PY } from '../helpers/repo.ts';
import { makeHarnessRun, TASKS } from '../report/fixtures.ts';

const chromium = findChromium();
let repo = '';
let server: UiServer | undefined;
let browser: Browser | undefined;

after(async () => {
  await browser?.close();
  await server?.close();
  if (repo) cleanup(repo);
});

/** a command that takes a second, so experiments land while the page is open */
const STUDY = `name: slow
kind: command
editable: [params.py]
locked: [evaluate.py]
command: python3 -c "import time; time.sleep(0.8); print('trained')"
evaluate: python3 evaluate.py
metric: { name: loss, direction: minimize }
budget: { experiment_seconds: 20, experiments: 2 }
acceptance: { baseline_repeats: 2, min_delta: 0, confirm_repeats: 1 }
env: { NOISE: "0.2" }
`;

test('a run page in Chromium shows new experiments as the run records them, without reloading', { skip: !chromium && 'no Chromium installed (apt-get install chromium)', timeout: 120_000 }, async () => {
  repo = makeRepo({ 'params.py': PARAMS_PY, 'evaluate.py': EVALUATE_PY, 'study.yaml': STUDY });
  const dbPath = join(repo, '.autoagent', 'autoagent.db');
  const running = startRun(join(repo, 'study.yaml'), { overrides: {}, unsafeNoSandbox: false, reporter: new MemoryReporter() });
  let runId = '';
  for (let i = 0; i < 200 && !runId; i++) {
    await new Promise((r) => setTimeout(r, 50));
    if (!existsSync(dbPath)) continue;
    try {
      const db = openReadOnly(dbPath);
      runId = (db.prepare('SELECT id FROM runs').get() as { id: string } | undefined)?.id ?? '';
      db.close();
    } catch {
      // the store is being created
    }
  }
  assert.ok(runId, 'the run started');
  server = await startUiServer({ dbPath, port: 0, pollMs: 150 });
  browser = await launchChromium();
  const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  page.on('console', (m) => void (m.type() === 'error' && errors.push(`console: ${m.text()}`)));
  let loads = 0;
  page.on('load', () => loads++);

  await page.goto(`${server.url}#/run/${encodeURIComponent(runId)}`);
  await page.waitForSelector('tr.exp');
  const first = await page.locator('tr.exp').count();
  await page.evaluate(() => ((window as unknown as { marker: string }).marker = 'the same page'));
  // the run goes on: the baseline, then 2 experiments; rows appear as they are recorded
  await page.waitForFunction((n) => document.querySelectorAll('tr.exp').length > n, first, { timeout: 40_000 });
  const res = await running;
  assert.equal(res.status, 'finished', res.stopReason ?? '');
  await page.waitForFunction(() => document.querySelectorAll('tr.exp').length === 3 && !document.querySelector('tr.exp[data-decision="running"]'), null, { timeout: 15_000 });
  assert.equal(await page.evaluate(() => (window as unknown as { marker?: string }).marker), 'the same page', 'never reloaded');
  assert.equal(loads, 1, 'one page load');
  const decisions = await page.locator('tr.exp').evaluateAll((rows) => rows.map((r) => r.getAttribute('data-decision')));
  assert.equal(decisions.at(-1), 'baseline');
  assert.ok(decisions.slice(0, 2).every((d) => ['kept', 'discarded', 'crash', 'timeout', 'rejected'].includes(d!)), decisions.join(','));
  assert.equal(await page.locator('#progress canvas').count() > 0, true, 'the progress chart is drawn');
  // a row opens to its diff, evaluations and reason
  await page.locator('tr.exp[data-seq="1"]').click();
  await page.waitForSelector('tr.expdetail pre.diff');
  assert.match(await page.locator('tr.expdetail').innerText(), /decision:[\s\S]*bar to beat[\s\S]*evaluations/);
  await page.screenshot({ path: '/tmp/autoagent-ui-run.png', fullPage: true });

  // label and tags from the page; the runs list shows them (with a harness run added to the store)
  await page.locator('details.annot summary').click();
  await page.locator('input[aria-label="label"]').fill('slow sweep');
  await page.locator('input[aria-label="tags"]').fill('cpu, demo, <img src=x onerror=window.pwned=1>');
  await page.locator('button.save').click();
  await page.waitForFunction(() => /saved \(3 tag/.test(document.querySelector('details.annot')?.textContent ?? ''));
  const fx = makeHarnessRun(dbPath);
  const traceId = fx.traces.find((t) => t.seq === 0 && t.task === TASKS[3] && t.repeat === 1)!.id;
  fx.db.close();
  await page.goto(`${server.url}#/`);
  await page.waitForFunction(() => document.querySelectorAll('tr.run').length === 2);
  const listed = await page.locator(`tr.run[data-run="${runId}"]`).innerText();
  assert.match(listed, /slow sweep[\s\S]*cpu[\s\S]*demo[\s\S]*<img src=x onerror=window\.pwned=1>[\s\S]*finished/, 'markup in a tag is shown as text');
  assert.equal(await page.evaluate(() => (window as unknown as { pwned?: number }).pwned), undefined, 'and never runs');
  assert.equal(await page.locator('tr.run img').count(), 0);
  await page.screenshot({ path: '/tmp/autoagent-ui-runs.png', fullPage: true });

  // the knob view of the search run: importances, parallel coordinates, one slice per knob
  await page.goto(`${server.url}#/run/${encodeURIComponent(runId)}/knobs`);
  await page.waitForSelector('#parallel canvas');
  assert.equal(await page.locator('#slices canvas').count(), 2);

  // a trace: conversation and tool calls, searchable
  await page.goto(`${server.url}#/trace/${traceId}`);
  await page.waitForSelector('.trace .span-model');
  assert.ok(await page.locator('.blk-tool').count() >= 1, 'tool calls shown');
  await page.locator('#trace-find').fill('ENOENT');
  await page.waitForSelector('.trace mark');
  assert.ok(await page.locator('.trace mark').count() >= 1);
  await page.screenshot({ path: '/tmp/autoagent-ui-trace.png', fullPage: true });
  assert.deepEqual(errors, [], 'no script error on any page');
});
