/**
 * The HTML report: a finished command run (real loop, real sandbox, a scripted proposer that hits
 * every decision), a harness run from the store fixture, and what headless Chromium draws.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startRun } from '../../src/loop.ts';
import { MemoryReporter } from '../../src/report.ts';
import { UserError } from '../../base/errors.ts';
import { renderReport, CHART_COLORS } from '../../src/report/html.ts';
import { renderPng, findChromium } from '../../src/report/png.ts';
import { openDb, listExperiments, insertRun, insertExperiment, proposalOf, ledgerHead, type DB, type ExperimentRow } from '../../traces/index.ts';
import { auditRun } from '../../src/audit.ts';
import { fmtMetric } from '../../base/format.ts';
import type { Proposer, ProposalContext } from '../../meta-agent/index.ts';
import { makeRepo, cleanup, PARAMS_PY, EVALUATE_PY, studyYaml } from '../helpers/repo.ts';
import { makeHarnessRun, decodePng, colourStats, TASKS } from './fixtures.ts';

const XSS = '<script>alert("pwned")</script> X 1.0 → 3.0';
const CITE = '<img src=x onerror=alert(1)>';
const DIFF_MARK = '# </pre><script>alert(2)</script>';

/** One proposal per decision: kept (with an XSS hypothesis and markup in the diff), discarded, rejected, crash, kept. */
function scripted(): Proposer {
  const steps: Array<(ctx: ProposalContext) => { hypothesis: string; edits: Array<{ path: string; content: string }>; cited?: string[] }> = [
    (ctx) => ({
      hypothesis: XSS,
      edits: [{ path: 'params.py', content: ctx.files['params.py']!.replace('X = 1.0', 'X = 3.0') + DIFF_MARK + '\n' }],
      cited: ['trace-0001', CITE],
    }),
    (ctx) => ({ hypothesis: 'X 3.0 → 0.5', edits: [{ path: 'params.py', content: ctx.files['params.py']!.replace('X = 3.0', 'X = 0.5') }] }),
    () => ({ hypothesis: 'make the evaluator kinder', edits: [{ path: 'evaluate.py', content: "print('METRIC loss=-1')\n" }] }),
    (ctx) => ({ hypothesis: 'X → not a number', edits: [{ path: 'params.py', content: ctx.files['params.py']!.replace('X = 3.0', 'X = abc') }] }),
    (ctx) => ({ hypothesis: 'N 2 → 5', edits: [{ path: 'params.py', content: ctx.files['params.py']!.replace('N = 2', 'N = 5') }] }),
  ];
  let i = 0;
  return { name: 'scripted', propose: async (ctx) => (i < steps.length ? steps[i++]!(ctx) : null) };
}

let repo = '';
let db: DB;
let runId = '';
let html = '';
const tmp = mkdtempSync(join(tmpdir(), 'autoagent-report-test-'));

before(async () => {
  repo = makeRepo({ 'params.py': PARAMS_PY, 'evaluate.py': EVALUATE_PY, 'study.yaml': studyYaml('env: { NOISE: "0.2" }\n') });
  const res = await startRun(join(repo, 'study.yaml'), {
    overrides: { experiments: 5 }, unsafeNoSandbox: false, reporter: new MemoryReporter(), proposer: scripted(),
  });
  assert.equal(res.status, 'finished', res.stopReason ?? '');
  db = openDb(res.dbPath);
  runId = res.runId;
  html = renderReport(db, runId);
});

after(() => {
  db?.close();
  if (repo) cleanup(repo);
  rmSync(tmp, { recursive: true, force: true });
});

/** the markup of the element with this id (an svg or a table), up to its closing tag */
function element(page: string, tag: string, id: string): string {
  const start = page.indexOf(`<${tag} id="${id}"`);
  assert.ok(start >= 0, `no <${tag} id="${id}"> in the report`);
  const end = page.indexOf(`</${tag}>`, start);
  return page.slice(start, end + tag.length + 3);
}

const attrValues = (markup: string, attr: string): string[] => [...markup.matchAll(new RegExp(`${attr}="([^"]*)"`, 'g'))].map((m) => m[1]!);

test('the command run went through every decision the report must draw', () => {
  const exps = listExperiments(db, runId);
  assert.deepEqual(exps.map((e) => e.decision), ['baseline', 'kept', 'discarded', 'rejected', 'crash', 'kept']);
});

test('the header shows the ledger head, as `audit --expect-head` takes it', async () => {
  const head = ledgerHead(db, runId)!;
  assert.equal(head.links, 6);
  assert.ok(html.includes(`<b>ledger head</b> <code class="ledger-head">${head.head.slice(0, 16)}</code> <span class="sub">6 decisions chained; <code>autoagent audit ${runId} --expect-head ${head.head.slice(0, 16)}</code>`));
  // every decision (crash and rejected included) is a link the audit recomputes
  const r = await auditRun(db, runId, { expectHead: head.head.slice(0, 16) });
  assert.ok(r.ok, r.problems.join('\n'));
});

test('the report is one self-contained file: no external URL, script, stylesheet or font', () => {
  assert.match(html, /^<!DOCTYPE html>/);
  assert.doesNotMatch(html, /<script/i, 'no script element at all (the XSS hypothesis included)');
  assert.doesNotMatch(html, /<link\b/i);
  assert.doesNotMatch(html, /@import|url\(/i);
  assert.match(html, /<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline';/, 'no script and no fetch even if escaping failed');
  for (const m of html.matchAll(/\b(?:src|href|xlink:href|action|poster)\s*=\s*"([^"]*)"/gi)) {
    assert.ok(!/^\s*(?:https?:)?\/\//i.test(m[1]!), `external reference ${m[0]}`);
  }
  // the only URL-like strings are the SVG namespace declarations
  const urls = [...html.matchAll(/https?:\/\/[^\s"'<)]+/g)].map((m) => m[0]);
  assert.ok(urls.every((u) => u === 'http://www.w3.org/2000/svg'), urls.join(', '));
});

test('the progress chart has one marker per experiment, coloured by decision, the kept step line and the acceptance threshold each decision used', () => {
  const exps = listExperiments(db, runId).filter((e) => e.seq > 0);
  const svg = element(html, 'svg', 'progress-chart');
  const dots = [...svg.matchAll(/<g class="dot [^"]*" data-seq="(\d+)" data-decision="([a-z]+)">[\s\S]*?<\/g>/g)];
  assert.deepEqual(dots.map((d) => Number(d[1])), exps.map((e) => e.seq));
  assert.deepEqual(dots.map((d) => d[2]), exps.map((e) => e.decision));
  for (const d of dots) {
    const colour = { kept: CHART_COLORS.kept, discarded: CHART_COLORS.discarded, crash: CHART_COLORS.crash, rejected: CHART_COLORS.rejected }[d[2]!]!;
    assert.ok(d[0].includes(colour), `marker of #${d[1]} (${d[2]}) is drawn in ${colour}`);
  }
  // evaluated experiments are circles in the plot; the crash and the rejection sit on the axis, below every circle
  const yOf = (seq: number) => {
    const g = dots.find((d) => Number(d[1]) === seq)![0];
    const c = /<circle cx="[\d.]+" cy="([\d.]+)"/.exec(g);
    return c ? Number(c[1]) : Number(/M[\d.]+ ([\d.]+)/.exec(g)![1]);
  };
  const byDecision = (d: string) => exps.filter((e) => e.decision === d).map((e) => e.seq);
  const circles = [...byDecision('kept'), ...byDecision('discarded')];
  for (const s of circles) assert.match(dots.find((d) => Number(d[1]) === s)![0], /<circle/);
  for (const s of [...byDecision('crash'), ...byDecision('rejected')]) {
    assert.doesNotMatch(dots.find((d) => Number(d[1]) === s)![0], /<circle/);
    assert.ok(circles.every((c) => yOf(s) > yOf(c)), `#${s} is drawn below the plotted points`);
  }
  // a natural y axis: the second kept loss is lower, so it is drawn lower (larger y)
  const kept = byDecision('kept');
  assert.ok(yOf(kept[1]!) > yOf(kept[0]!) + 20);
  // the incumbent step line: one horizontal+vertical step per kept experiment
  const path = /<path id="incumbent-line"[^>]* d="([^"]+)"/.exec(svg);
  assert.ok(path, 'the kept incumbent line');
  assert.equal((path[1]!.match(/V/g) ?? []).length, kept.length);
  // the acceptance threshold the rule used at each decision (incumbent − margin, minimizing), not a band around the baseline
  assert.doesNotMatch(svg, /noise-band|± 2 pooled sd/);
  const judged = exps.filter((e) => e.incumbent_metric !== null && e.margin !== null);
  assert.ok(judged.length >= 2, 'experiments decided by the rule');
  const thr = [...svg.matchAll(/<path class="threshold" data-seq="(\d+)" data-threshold="([^"]+)" d="M[\d.]+ ([\d.]+) H[\d.]+"/g)];
  assert.deepEqual(thr.map((t) => Number(t[1])), judged.map((e) => e.seq));
  for (const e of judged) {
    const t = thr.find((x) => Number(x[1]) === e.seq)!;
    assert.equal(Number(t[2]), e.incumbent_metric! - e.margin!, `#${e.seq}: threshold = incumbent ${e.incumbent_metric} − margin ${e.margin}`);
    // drawn where the rule put it: a kept point lies past it (lower loss = lower on the chart), a discarded one short of it
    const ty = Number(t[3]);
    if (e.decision === 'kept') assert.ok(yOf(e.seq) > ty, `kept #${e.seq} is below its threshold line`);
    if (e.decision === 'discarded' && e.metric! >= e.incumbent_metric! - e.margin!) assert.ok(yOf(e.seq) <= ty + 0.5, `discarded #${e.seq} is not past its threshold line`);
  }
  assert.match(svg, /<path id="acceptance-zone"[^>]* d="M/);
  assert.equal((svg.match(/class="baseline-dot"/g) ?? []).length, 3);
  // axes with ticks and a legend
  assert.match(svg, /experiment \(0 = baseline\)/);
  assert.match(svg, /loss \(lower is better\)/);
  for (const label of ['kept', 'discarded', 'crash / timeout', 'rejected', 'kept incumbent']) assert.ok(svg.includes(`>${label}</text>`), label);
});

test('untrusted text is rendered inert: the XSS hypothesis, cited trace ids and diffs are escaped', () => {
  assert.ok(!html.includes('<script>alert("pwned")</script>'));
  assert.ok(html.includes('&lt;script&gt;alert(&quot;pwned&quot;)&lt;/script&gt; X 1.0 → 3.0'));
  assert.ok(!html.includes(CITE));
  assert.ok(html.includes('&lt;img src=x onerror=alert(1)&gt;'));
  assert.ok(!html.includes(DIFF_MARK));
  assert.ok(html.includes('+# &lt;/pre&gt;&lt;script&gt;alert(2)&lt;/script&gt;'));
  assert.doesNotMatch(html, /<img/i);
});

test('the kept-changes table lists each kept experiment with Δ, margin, evaluations, cited traces and its diff', () => {
  const exps = listExperiments(db, runId);
  const kept = exps.filter((e) => e.decision === 'kept');
  const table = element(html, 'table', 'kept-table');
  const rows = [...table.matchAll(/<tr id="kept-(\d+)"[\s\S]*?<\/tr>/g)];
  assert.deepEqual(rows.map((r) => Number(r[1])), kept.map((e) => e.seq));
  const first = rows[0]![0];
  const e: ExperimentRow = kept[0]!;
  assert.ok(first.includes(fmtMetric(e.margin)), 'margin');
  assert.ok(first.includes(fmtMetric(-e.improvement!)), 'Δ of a minimized metric is negative');
  assert.match(first, /<td class="num"[^>]*>2<div/, 'screen + confirmation = 2 evaluations');
  assert.match(first, /<code>trace-0001<\/code>/);
  assert.match(first, /<details><summary>diff \(\d+ lines\)<\/summary><pre class="diff">/);
  assert.match(first, /<span class="add">\+X = 3\.0  # first knob<\/span>/);
  assert.match(first, /<span class="del">-X = 1\.0  # first knob<\/span>/);
});

test('the ledger table has every baseline repeat and experiment, with the rejection reason', () => {
  const table = element(html, 'table', 'ledger-table');
  const seqs = attrValues(table, 'data-seq').map(Number);
  assert.deepEqual(seqs, [0, 0, 0, 1, 2, 3, 4, 5]);
  assert.match(table, /edit touches locked path evaluate\.py/);
  assert.match(table, /evaluator exited with code/);
  assert.match(html, /experiments<\/b> 2 kept, 1 discarded, 1 rejected, 1 crash/);
});

test('a self-reported or unsandboxed run gets a red banner; a finalization shows validation vs sealed test', () => {
  assert.doesNotMatch(html, /class="banner"/);
  assert.doesNotMatch(html, /id="final"/, 'not finalized: no section');
  const d2 = openDb(':memory:');
  try {
    // the same rows in a scratch store
    for (const t of ['runs', 'experiments', 'evaluations']) {
      const rows = db.prepare(`SELECT * FROM ${t}`).all() as Array<Record<string, unknown>>;
      for (const r of rows) {
        const cols = Object.keys(r);
        d2.prepare(`INSERT INTO ${t} (${cols.map((c) => `"${c}"`).join(',')}) VALUES (${cols.map((c) => '@' + c).join(',')})`).run(r);
      }
    }
    d2.prepare('UPDATE runs SET self_reported = 1, unsafe_no_sandbox = 1').run();
    const last = listExperiments(d2, runId).filter((e) => e.decision === 'kept').pop()!;
    const fin = d2.prepare('INSERT INTO finalizations (run_id, "commit", split, metric, details, forced, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)');
    fin.run(runId, last.kept_commit, 'test', 0.75, JSON.stringify({
      experiment: last.seq, validation: 0.25, test_minus_validation: 0.5, forced_over: [],
      scored: { text: 'scored the test split as the evaluator reads AUTOAGENT_SPLIT=test, 1 evaluation, seed 7' }, untrusted_split: true,
    }), 0, '2026-11-22T04:00:00.000Z');
    fin.run(runId, last.kept_commit, 'test', 0.125, JSON.stringify({ experiment: last.seq, forced_over: ['already finalized'] }), 1, '2026-11-22T05:00:00.000Z');
    const page = renderReport(d2, runId);
    const banners = [...page.matchAll(/<div class="banner" role="alert">([^<]*)<\/div>/g)].map((m) => m[1]!);
    assert.equal(banners.length, 2);
    assert.match(banners[0]!, /SELF-REPORTED/);
    assert.match(banners[1]!, /UNSAFE/);
    const rows = [...element(page, 'table', 'final-comparison').matchAll(/<tr class="final-row"[\s\S]*?<\/tr>/g)].map((m) => m[0]);
    assert.equal(rows.length, 2);
    assert.ok(rows[0]!.includes(`<a href="#exp-${last.seq}">#${last.seq}</a>`));
    assert.match(rows[0]!, /<td class="num">0\.25<\/td><td class="num">0\.75<\/td><td class="num"><span style="color:#8c1512">\+0\.5<\/span>/, 'a worse test loss, in red');
    // what was scored, and a test score that is not held out
    assert.ok(rows[0]!.includes('<span class="sub">scored the test split as the evaluator reads AUTOAGENT_SPLIT=test, 1 evaluation, seed 7</span> <span class="badge b-crash untrusted-split">not held out</span> <span class="sub">the test score equals the validation score at the same seed: the evaluator may ignore AUTOAGENT_SPLIT; this is not a held-out score</span>'), rows[0]);
    assert.doesNotMatch(rows[1]!, /untrusted-split/);
    // without a recorded validation number, the incumbent's own evaluations give it
    assert.ok(rows[1]!.includes(`<td class="num">${fmtMetric(last.metric)}</td><td class="num">0.125</td>`), rows[1]);
    assert.match(rows[1]!, /forced<\/span> <span class="sub">already finalized/);
    // a store from before the finalizations table: no section, no error
    d2.exec('DROP TABLE finalizations');
    assert.doesNotMatch(renderReport(d2, runId), /id="final"/);
  } finally {
    d2.close();
  }
});

test('a run that has only started (no baseline metric yet, one pending experiment) still renders', () => {
  const d = openDb(':memory:');
  try {
    insertRun(d, {
      id: 'r1', name: 'fresh', kind: 'command', study_path: 's.yaml', study_json: '{}', study_text: '', config_hash: 'x', repo: '/r',
      base_commit: 'b'.repeat(40), branch: 'autoagent/r1', lock_manifest: '{}', metric_name: 'acc', direction: 'maximize',
      self_reported: 0, unsafe_no_sandbox: 0, environment: null,
    });
    const empty = renderReport(d, 'r1');
    assert.match(empty, /<svg id="progress-chart"/);
    assert.doesNotMatch(empty, /data-seq="/);
    assert.match(empty, /No change has been kept yet/);
    insertExperiment(d, { run_id: 'r1', seq: 0, parent_commit: 'b'.repeat(40), candidate_commit: 'b'.repeat(40), proposer: 'baseline', hypothesis: 'baseline', meta: null, edits: '[]', diff: '', files_hash: 'h0' });
    insertExperiment(d, { run_id: 'r1', seq: 1, parent_commit: 'b'.repeat(40), candidate_commit: 'c'.repeat(40), proposer: 'search', hypothesis: 'K 1 → 2', meta: '{not json', edits: '[]', diff: '-K = 1\n+K = 2\n', files_hash: 'h1' });
    const page = renderReport(d, 'r1');
    assert.match(element(page, 'svg', 'progress-chart'), /data-seq="1" data-decision="pending"/);
    assert.match(page, /acc \(higher is better\)/);
    assert.doesNotMatch(page, /NaN|Infinity|undefined/);
  } finally {
    d.close();
  }
});

test('an unknown run is a usage error', () => {
  assert.throws(() => renderReport(db, 'no-such-run'), (e: Error) => e instanceof UserError && /no run no-such-run/.test(e.message));
});

test('the report of a harness run has a task × kept-experiment heatmap (one row per task) and tokens and cost charts', () => {
  const fx = makeHarnessRun();
  try {
    const page = renderReport(fx.db, fx.runId);
    const hm = element(page, 'svg', 'task-heatmap');
    const rows = [...hm.matchAll(/<g class="hm-row" data-task="([^"]+)">([\s\S]*?)<\/g>/g)];
    assert.deepEqual(rows.map((r) => r[1]), ['tooluse/1', 'tooluse/2', 'tooluse/3', 'tooluse/10'], 'every task once, in natural order');
    assert.equal(new Set(rows.map((r) => r[1])).size, TASKS.length);
    // columns: the baseline and the two kept experiments (not the discarded or crashed ones)
    for (const r of rows) assert.deepEqual(attrValues(r[2]!, 'data-seq'), ['0', '1', '3']);
    const cell = (task: string, seq: number) => {
      const row = rows.find((r) => r[1] === task)![2]!;
      return new RegExp(`data-seq="${seq}"[^>]*><title>[^<]*: ([^<]+)</title>`).exec(row)![1];
    };
    assert.equal(cell('tooluse/2', 0), '0');
    assert.equal(cell('tooluse/2', 1), '1', 'the first kept change fixed tooluse/2');
    assert.equal(cell('tooluse/10', 1), '0');
    assert.equal(cell('tooluse/10', 3), '1', 'the second kept change fixed tooluse/10');
    assert.equal(cell('tooluse/3', 3), '0.5', 'the flaky task: mean over the two repeats');
    // tokens and cost: one bar per experiment with traces (0..3; the crash has none)
    for (const id of ['tokens-chart', 'cost-chart']) {
      const svg = element(page, 'svg', id);
      assert.deepEqual([...svg.matchAll(/<g class="bar" data-seq="(\d+)"/g)].map((m) => Number(m[1])), [0, 1, 2, 3]);
    }
    assert.match(page, /benchmark<\/b> tooluse \(val\)/);
    // the finalization recorded by src/finalize.ts: validation 0.625 of #3 vs test 1
    assert.match(element(page, 'table', 'final-comparison'), /<a href="#exp-3">#3<\/a>[\s\S]*<td class="num">0\.625<\/td><td class="num">1<\/td><td class="num"><span style="color:#0c5a25">\+0\.375<\/span>/);
    assert.match(page, /\$0\.\d+ task models/);
    // the harness run's cited trace id is listed with its kept change
    const cited = proposalOf(fx.db.prepare('SELECT proposal FROM experiments WHERE seq = 1').get() as { proposal: string })!.cited[0]!;
    assert.ok(element(page, 'table', 'kept-table').includes(`<code>${cited}</code>`));
  } finally {
    fx.db.close();
  }
});

test('a harness run that costs almost nothing still gets readable axes: distinct cost ticks, a heatmap header clear of its first column', () => {
  const fx = makeHarnessRun();
  try {
    // a local model's price: a few millionths of a dollar per experiment
    fx.db.prepare('UPDATE traces SET cost_usd = cost_usd / 1000').run();
    // and short task ids (t1 … t10), narrower than the header above them
    fx.db.prepare("UPDATE traces SET task_id = 't' || substr(task_id, 9) WHERE task_id LIKE 'tooluse/%'").run();
    const page = renderReport(fx.db, fx.runId);
    const cost = element(page, 'svg', 'cost-chart');
    const ticks = [...cost.matchAll(/<text x="[\d.]+" y="[\d.]+" text-anchor="end">([^<]+)<\/text>/g)].map((m) => m[1]!);
    assert.ok(ticks.length >= 3, cost);
    assert.equal(new Set(ticks).size, ticks.length, `every tick label differs: ${ticks.join(', ')}`);
    assert.ok(ticks.slice(1).every((t) => Number(t) > 0), `only the first tick reads 0: ${ticks.join(', ')}`);
    // the header `task (N)` (7 px a character at x = 8) ends before the first column starts
    const hm = element(page, 'svg', 'task-heatmap');
    const firstCol = Number(/<rect class="hm-cell" data-seq="0" x="([\d.]+)"/.exec(hm)![1]);
    assert.ok(8 + 'task (4)'.length * 7 <= firstCol, `first column at ${firstCol}`);
  } finally {
    fx.db.close();
  }
});

// ---------------------------------------------------------------------------------------------
// what a browser shows

const chromium = findChromium();

test('headless Chromium draws the chart: the screenshot has the acceptance zones, kept points and incumbent line, and none without the chart', { skip: !chromium && 'no Chromium installed (apt-get install chromium)' }, async () => {
  const page = join(tmp, 'report.html');
  const png = join(tmp, 'report.png');
  writeFileSync(page, html);
  await renderPng(page, png, { width: 1400, height: 1000 });
  assert.ok(statSync(png).size > 20_000, `a real picture (${statSync(png).size} bytes)`);
  const img = decodePng(readFileSync(png));
  assert.equal(img.width, 1400);
  assert.equal(img.height, 1000);
  const band = colourStats(img, CHART_COLORS.band);
  const kept = colourStats(img, CHART_COLORS.kept);
  const line = colourStats(img, CHART_COLORS.incumbent);
  const discarded = colourStats(img, CHART_COLORS.discarded);
  // the acceptance zones: one per judged experiment, an experiment's width each; the dots and the line are there
  assert.ok(band.longestRun > 100, `acceptance zones drawn (longest run ${band.longestRun} px)`);
  assert.ok(band.count > 2000, `acceptance zone area ${band.count} px`);
  assert.ok(kept.count > 60, `kept points ${kept.count} px`);
  assert.ok(line.count > 100, `incumbent line ${line.count} px`);
  assert.ok(discarded.count > 20, `discarded point ${discarded.count} px`);

  // control: the same page without the chart draws none of those colours
  const bare = join(tmp, 'bare.html');
  const start = html.indexOf('<svg id="progress-chart"');
  writeFileSync(bare, html.slice(0, start) + html.slice(html.indexOf('</svg>', start) + 6));
  const barePng = join(tmp, 'bare.png');
  await renderPng(bare, barePng, { width: 1400, height: 1000 });
  const img2 = decodePng(readFileSync(barePng));
  assert.ok(colourStats(img2, CHART_COLORS.band).count < 10);
  assert.ok(colourStats(img2, CHART_COLORS.kept).count < 10);
  assert.ok(colourStats(img2, CHART_COLORS.incumbent).count < 10);
});

test('without a height, the PNG is the whole page (a full-page screenshot): a harness report with its heatmap, ending just below the footer', { skip: !chromium && 'no Chromium installed (apt-get install chromium)' }, async () => {
  const fx = makeHarnessRun();
  try {
    const page = join(tmp, 'harness.html');
    const png = join(tmp, 'harness.png');
    writeFileSync(page, renderReport(fx.db, fx.runId));
    await renderPng(page, png, { width: 1200 });
    const img = decodePng(readFileSync(png));
    assert.equal(img.width, 1200);
    assert.ok(img.height > 1500 && img.height < 12_000, `whole page, no empty window below it: ${img.height} px`);
    // the page's bottom padding (40 px) is background, and the footer ends right above it
    const bg = [...img.rgba.subarray((img.height - 1) * img.width * 4, (img.height - 1) * img.width * 4 + 3)];
    const rowIsBg = (y: number) => { for (let x = 0; x < img.width; x++) { const i = (y * img.width + x) * 4; if (img.rgba[i] !== bg[0] || img.rgba[i + 1] !== bg[1] || img.rgba[i + 2] !== bg[2]) return false; } return true; };
    for (let y = img.height - 24; y < img.height; y++) assert.ok(rowIsBg(y), `row ${y} is background`);
    let last = img.height - 1;
    while (last > 0 && rowIsBg(last)) last--;
    assert.ok(img.height - 1 - last <= 80, `the footer ends ${img.height - 1 - last} px above the bottom`);
    // the heatmap drew its green (score 1) and red (score 0) cells
    assert.ok(colourStats(img, '#1a9850').count > 500, 'green cells');
    assert.ok(colourStats(img, '#d73027').count > 500, 'red cells');
  } finally {
    fx.db.close();
  }
});

test('without Chromium, renderPng ends in one line naming the install command', async () => {
  const page = join(tmp, 'x.html');
  writeFileSync(page, '<p>x</p>');
  const prev = process.env.AUTOAGENT_CHROMIUM;
  delete process.env.AUTOAGENT_CHROMIUM;
  try {
    assert.equal(findChromium(undefined, tmp, []), null, 'nothing on an empty PATH');
    const bin = join(tmp, 'bin');
    mkdirSync(bin, { recursive: true });
    writeFileSync(join(bin, 'chromium-browser'), '#!/bin/sh\nexit 1\n', { mode: 0o755 });
    assert.equal(findChromium(undefined, `${tmp}:${bin}`, []), join(bin, 'chromium-browser'), 'found on PATH by its Debian/Ubuntu name');
  } finally {
    if (prev !== undefined) process.env.AUTOAGENT_CHROMIUM = prev;
  }
  await assert.rejects(renderPng(page, join(tmp, 'y.png'), { chromium: join(tmp, 'no-such-chromium') }), (e: Error) => {
    assert.ok(e instanceof UserError, String(e));
    assert.match(e.message, /no-such-chromium: not an executable Chromium binary: install Chromium with `apt-get install chromium`/);
    assert.ok(!e.message.includes('\n'));
    return true;
  });
  // a binary that starts and dies at once: one line naming it, not a stack of the driver's log
  const broken = join(tmp, 'broken-chromium');
  writeFileSync(broken, '#!/bin/sh\necho "cannot open display" >&2\nexit 1\n', { mode: 0o755 });
  await assert.rejects(renderPng(page, join(tmp, 'z.png'), { chromium: broken, timeoutMs: 15_000 }), (e: Error) => {
    assert.ok(e instanceof UserError, String(e));
    assert.match(e.message, /broken-chromium failed to start: /);
    assert.ok(!e.message.includes('\n'), e.message);
    return true;
  });
});
