/**
 * The dashboard's client: hash routes, one view at a time, live updates over server-sent events.
 *   #/                          runs
 *   #/run/ID                    a run: progress chart, experiments (live), knobs, traces
 *   #/run/ID/exp/N              one experiment
 *   #/run/ID/compare/A/B        two experiments side by side
 *   #/compare/RUN-A/RUN-B       two runs side by side
 *   #/trace/ID                  a trace
 *   #/search?q=TEXT             full-text search over traces
 */
import uplotCss from 'uplot/dist/uPlot.min.css';
import css from './style.css';
import { h, clear, marked, highlight, type Child } from './dom.ts';
import { api, apiUrl, watch, type RunSummary, type RunDetail, type ExperimentView, type ExperimentDetail, type TraceData, type KnobData } from './api.ts';
import { fmtMetric, fmtSigned, fmtDuration, fmtTokens, fmtCost, fmtTime } from './fmt.ts';
import { progressChart, compareChart, parallelCoordinates, slices, COLORS } from './charts.ts';

const style = document.createElement('style');
style.textContent = uplotCss + '\n' + css;
document.head.appendChild(style);

type Cleanup = () => void;
let cleanups: Cleanup[] = [];
const root = () => document.getElementById('app')!;

function link(hash: string, ...children: Child[]): HTMLAnchorElement {
  return h('a', { href: `${location.search}${hash}` }, ...children);
}

function badge(decision: string | null): HTMLElement {
  const d = decision ?? 'running';
  return h('span', { class: `badge b-${d}`, style: { background: COLORS[d] ?? '#666' } }, d);
}

function statusBadge(s: string): HTMLElement {
  return h('span', { class: `status s-${s}` }, s);
}

function runTitle(r: Pick<RunSummary, 'label' | 'id'>): string {
  return r.label || r.id;
}

function errorBox(e: unknown): HTMLElement {
  return h('div', { class: 'error' }, String((e as Error)?.message ?? e));
}

function nav(...crumbs: Child[]): HTMLElement {
  return h('nav', null, link('#/', h('b', null, 'autoagent')), ...crumbs.flatMap((c) => [' / ', c]),
    h('form', {
      class: 'navsearch', onsubmit: (ev: Event) => {
        ev.preventDefault();
        const q = ((ev.target as HTMLFormElement).elements.namedItem('q') as HTMLInputElement).value;
        location.hash = `#/search?q=${encodeURIComponent(q)}`;
      },
    }, h('input', { name: 'q', type: 'search', placeholder: 'search traces…' })));
}

function liveDot(): { el: HTMLElement; set(live: boolean, at?: string): void } {
  const el = h('span', { class: 'live off', title: 'live updates' }, '● live');
  return {
    el,
    set(live, at) {
      el.className = `live ${live ? 'on' : 'off'}`;
      el.title = live ? `live: updated ${at ?? ''}` : 'reconnecting…';
    },
  };
}

// ---------------------------------------------------------------------------------------------
// runs

async function runsView(main: HTMLElement): Promise<void> {
  const dot = liveDot();
  const filter = h('input', { type: 'search', placeholder: 'filter by text or tag', class: 'filter' });
  const body = h('div');
  const picked = new Set<string>();
  const compareBtn = h('button', { disabled: true, onclick: () => {
    const [a, b] = [...picked];
    location.hash = `#/compare/${encodeURIComponent(a!)}/${encodeURIComponent(b!)}`;
  } }, 'compare 2 runs');
  main.append(nav(), h('h1', null, 'Runs ', dot.el), h('div', { class: 'toolbar' }, filter, compareBtn), body);
  let runs: RunSummary[] = [];
  const render = () => {
    const q = filter.value.trim().toLowerCase();
    const shown = runs.filter((r) => !q || [r.id, r.label ?? '', r.study, r.kind, r.status, ...r.tags, r.notes].some((s) => s.toLowerCase().includes(q)));
    clear(body);
    if (!runs.length) {
      body.append(h('p', { class: 'empty' }, 'No runs in this store yet: start one with ', h('code', null, 'autoagent run study.yaml'), '.'));
      return;
    }
    body.append(h('table', { class: 'runs' },
      h('thead', null, h('tr', null, ...['', 'run', 'tags', 'status', 'experiments', 'best', 'Δ vs baseline', 'spend', 'started'].map((t) => h('th', null, t)))),
      h('tbody', null, ...shown.map((r) => h('tr', { class: 'run', 'data-run': r.id },
        h('td', null, h('input', { type: 'checkbox', checked: picked.has(r.id), onchange: (ev: Event) => {
          if ((ev.target as HTMLInputElement).checked) picked.add(r.id); else picked.delete(r.id);
          compareBtn.disabled = picked.size !== 2;
        } })),
        h('td', null, link(`#/run/${encodeURIComponent(r.id)}`, runTitle(r)), r.label ? h('div', { class: 'sub' }, r.id) : h('div', { class: 'sub' }, `${r.study} · ${r.kind}`),
          r.self_reported ? h('div', { class: 'flag' }, 'self-reported metric') : null, r.unsafe_no_sandbox ? h('div', { class: 'flag' }, 'no sandbox') : null),
        h('td', null, ...r.tags.map((t) => h('span', { class: 'tag' }, t))),
        h('td', null, statusBadge(r.status), r.stop_reason ? h('div', { class: 'sub', title: r.stop_reason }, r.stop_reason.slice(0, 60)) : null),
        h('td', { class: 'num' }, `${r.kept} kept / ${r.experiments}`),
        h('td', { class: 'num' }, `${r.metric} ${fmtMetric(r.best)}`),
        h('td', { class: 'num' }, fmtSigned(r.delta)),
        h('td', { class: 'num' }, r.spend.tokens ? `${fmtTokens(r.spend.tokens)} tok · ${fmtCost(r.spend.cost_usd)}` : '—', h('div', { class: 'sub' }, fmtDuration(r.elapsed_ms))),
        h('td', null, fmtTime(r.created_at)),
      ))),
    ));
  };
  filter.addEventListener('input', render);
  const load = async () => {
    try {
      runs = await api.runs();
      render();
      dot.set(true, new Date().toLocaleTimeString());
    } catch (e) {
      clear(body);
      body.append(errorBox(e));
    }
  };
  await load();
  cleanups.push(watch('/api/events', 'runs', () => void load(), (live) => dot.set(live)));
}

// ---------------------------------------------------------------------------------------------
// a run

function annotationEditor(d: RunDetail): HTMLElement {
  const label = h('input', { type: 'text', value: d.run.label ?? '', placeholder: 'a name for this run', maxlength: 200, 'aria-label': 'label' });
  const tags = h('input', { type: 'text', value: d.run.tags.join(', '), placeholder: 'tags, comma separated', 'aria-label': 'tags' });
  const notes = h('textarea', { rows: 2, placeholder: 'notes', 'aria-label': 'notes' });
  notes.value = d.run.notes;
  const said = h('span', { class: 'sub' });
  const save = h('button', { class: 'save', onclick: async () => {
    said.textContent = 'saving…';
    try {
      const a = await api.annotate(d.run.id, { label: label.value, tags: tags.value.split(',').map((t) => t.trim()).filter(Boolean), notes: notes.value });
      said.textContent = `saved (${a.tags.length} tag(s))`;
    } catch (e) {
      said.textContent = String((e as Error).message);
    }
  } }, 'save');
  return h('details', { class: 'annot' }, h('summary', null, 'label, tags, notes'), h('div', { class: 'annot-grid' }, label, tags, notes, h('div', null, save, ' ', said)));
}

function runHeader(d: RunDetail, dot: HTMLElement): HTMLElement {
  const r = d.run;
  const facts: Array<[string, Child]> = [
    ['status', [statusBadge(r.status), r.stop_reason ? ` ${r.stop_reason}` : '']],
    ['study', `${r.study} (${r.kind}) · ${r.study_path}`],
    ['metric', `${r.metric} (${r.direction})`],
    ['baseline', d.baseline.mean === null ? '—' : `${fmtMetric(d.baseline.mean)} ± ${fmtMetric(d.baseline.sd)} over ${d.baseline.repeats.length} seeds`],
    ['best', `${fmtMetric(r.best)} (Δ ${fmtSigned(r.delta)})`],
    ['noise', `pooled sd ${fmtMetric(d.noise.sd)}, ${d.noise.df} df${d.acceptance.alpha !== null ? ` · α ${d.acceptance.alpha}` : ''}${d.acceptance.min_delta ? ` · min Δ ${d.acceptance.min_delta}` : ''}`],
    ['experiments', Object.entries(r.counts).map(([k, v]) => `${v} ${k}`).join(', ') || 'none yet'],
    ['spend', r.spend.tokens ? `task-agent ${fmtTokens(r.spend.task_agent.tokens)} tok ${fmtCost(r.spend.task_agent.cost_usd)} · meta-agent ${fmtTokens(r.spend.meta_agent.tokens)} tok ${fmtCost(r.spend.meta_agent.cost_usd)}` : 'no model spend'],
    ['branch', h('code', null, r.branch)],
    ['ledger head', d.ledger ? h('code', null, d.ledger.head.slice(0, 16)) : '—'],
  ];
  return h('div', { class: 'runhead' },
    h('h1', null, runTitle(r), ' ', dot, r.tags.map((t) => h('span', { class: 'tag' }, t))),
    r.label ? h('div', { class: 'sub' }, r.id) : null,
    r.self_reported ? h('div', { class: 'flag' }, 'SELF-REPORTED metric: read from the candidate\'s own output, not a locked evaluator') : null,
    r.unsafe_no_sandbox ? h('div', { class: 'flag' }, 'UNSAFE: ran without a sandbox') : null,
    h('dl', { class: 'facts' }, ...facts.flatMap(([k, v]) => [h('dt', null, k), h('dd', null, v)])),
    h('div', { class: 'toolbar' },
      h('a', { href: apiUrl(`/api/runs/${encodeURIComponent(r.id)}/export.csv`), download: `${r.id}.csv`, class: 'button' }, 'export CSV'),
      h('a', { href: apiUrl(`/api/runs/${encodeURIComponent(r.id)}/export.json`), download: `${r.id}.json`, class: 'button' }, 'export JSON')),
    annotationEditor(d),
  );
}

function diffView(diff: string): HTMLElement {
  if (!diff) return h('p', { class: 'sub' }, 'no diff (the starting commit)');
  return h('pre', { class: 'diff' }, ...diff.split('\n').map((l) => h('span', {
    class: l.startsWith('+++') || l.startsWith('---') ? 'dh' : l.startsWith('+') ? 'da' : l.startsWith('-') ? 'dd' : l.startsWith('@@') ? 'dc' : '',
  }, l + '\n')));
}

function knobChanges(meta: unknown): HTMLElement | null {
  const m = meta as { changed?: Array<{ knob: string; from: unknown; to: unknown }>; sampler?: string; trial_number?: number; model?: { kind?: string; predicted?: { mean: number; sd: number } | null; p_pass?: number | null } } | null;
  if (!m || !Array.isArray(m.changed)) return null;
  return h('div', { class: 'knobs-changed' },
    h('b', null, 'knobs: '), m.changed.map((c) => h('span', { class: 'kv' }, `${c.knob.replace(/^.*:/, '')} ${String(c.from)} → ${String(c.to)}`)),
    m.sampler ? h('span', { class: 'sub' }, ` · optuna ${m.sampler}${m.trial_number !== undefined ? ` trial ${m.trial_number}` : ''}`) : null,
    m.model?.predicted ? h('span', { class: 'sub' }, ` · model expected ${fmtMetric(m.model.predicted.mean)} ± ${fmtMetric(m.model.predicted.sd)}${m.model.p_pass !== null && m.model.p_pass !== undefined ? `, ${Math.round(100 * m.model.p_pass)}% chance to pass` : ''}`) : null);
}

function evaluationsTable(e: ExperimentView, metric: string): HTMLElement {
  if (!e.evaluations.length) return h('p', { class: 'sub' }, e.decision === 'rejected' ? 'never evaluated (rejected)' : 'no evaluation yet');
  return h('table', { class: 'evals' },
    h('thead', null, h('tr', null, ...['#', 'seed', 'status', metric, 'command', 'evaluator', 'reason'].map((t, i) => h('th', i >= 3 && i <= 5 ? { class: 'num' } : null, t)))),
    h('tbody', null, ...e.evaluations.map((v) => h('tr', null,
      h('td', null, String(v.repeat + 1)), h('td', null, String(v.seed)), h('td', null, v.status), h('td', { class: 'num' }, fmtMetric(v.metric)),
      h('td', { class: 'num' }, fmtDuration(v.command_ms)), h('td', { class: 'num' }, fmtDuration(v.evaluator_ms)), h('td', null, v.reason ?? ''),
    ))));
}

function experimentBody(runId: string, e: ExperimentView, metric: string): HTMLElement {
  const p = e.proposal;
  return h('div', { class: 'expbody' },
    h('p', null, h('b', null, 'decision: '), badge(e.decision), ' ', e.reason ?? ''),
    e.threshold !== null ? h('p', { class: 'rule' },
      `incumbent ${fmtMetric(e.incumbent_metric)} · bar to beat ${fmtMetric(e.threshold)} (margin ${fmtMetric(e.margin)}) · this ${fmtMetric(e.metric)} (Δ ${fmtSigned(e.delta)})`) : null,
    h('p', null, h('b', null, 'hypothesis: '), e.hypothesis),
    p?.expected_effect ? h('p', null, h('b', null, 'expected: '), p.expected_effect) : null,
    knobChanges(e.meta),
    p && (p.cited.length || p.trace_id) ? h('p', null, h('b', null, 'meta-agent: '),
      p.trace_id ? [link(`#/trace/${encodeURIComponent(p.trace_id)}`, 'its conversation'), ` (${fmtTokens(p.tokens)} tokens, ${fmtCost(p.cost_usd)}, ${fmtDuration(p.ms)})`] : null,
      p.cited.length ? [' · cited: ', ...p.cited.map((c) => h('span', { class: 'cite' },
        c.found ? link(`#/trace/${encodeURIComponent(c.id)}`, `${c.task_id}${c.experiment_seq !== null ? ` of #${c.experiment_seq}` : ''} (score ${fmtMetric(c.score)})`) : `${c.id} (not in the store)`))] : null) : null,
    e.traces.traces ? h('p', null, h('b', null, 'traces: '), link(`#/run/${encodeURIComponent(runId)}/exp/${e.seq}`, `${e.traces.traces} task trace(s), ${e.traces.failed} failed`)) : null,
    h('h4', null, 'evaluations'), evaluationsTable(e, metric),
    h('h4', null, 'diff'), diffView(e.diff),
    h('p', null, link(`#/run/${encodeURIComponent(runId)}/exp/${e.seq}`, 'open experiment page')),
  );
}

function experimentsTable(d: RunDetail, state: { open: Set<number>; picked: Set<number> }, onPick: () => void): HTMLElement {
  const rows: HTMLElement[] = [];
  for (const e of [...d.experiments].reverse()) {
    const open = state.open.has(e.seq);
    const tr = h('tr', { class: `exp${open ? ' open' : ''}`, 'data-seq': e.seq, 'data-decision': e.decision ?? 'running' },
      h('td', null, h('input', { type: 'checkbox', checked: state.picked.has(e.seq), title: 'pick two to compare', onclick: (ev: Event) => ev.stopPropagation(), onchange: (ev: Event) => {
        if ((ev.target as HTMLInputElement).checked) state.picked.add(e.seq); else state.picked.delete(e.seq);
        onPick();
      } })),
      h('td', { class: 'num' }, e.seq === 0 ? 'baseline' : String(e.seq)),
      h('td', null, badge(e.decision)),
      h('td', { class: 'num' }, fmtMetric(e.metric)),
      h('td', { class: 'num' }, fmtSigned(e.delta)),
      h('td', { class: 'num' }, e.threshold === null ? '—' : fmtMetric(e.threshold)),
      h('td', { class: 'num' }, String(e.evaluations.length)),
      h('td', null, e.proposer),
      h('td', { class: 'hyp' }, e.hypothesis),
    );
    tr.addEventListener('click', () => {
      if (state.open.has(e.seq)) state.open.delete(e.seq); else state.open.add(e.seq);
      const next = tr.nextElementSibling as HTMLElement | null;
      if (next?.classList.contains('expdetail')) next.remove();
      else tr.after(h('tr', { class: 'expdetail' }, h('td', { colspan: 9 }, experimentBody(d.run.id, e, d.run.metric))));
      tr.classList.toggle('open');
    });
    rows.push(tr);
    if (open) rows.push(h('tr', { class: 'expdetail' }, h('td', { colspan: 9 }, experimentBody(d.run.id, e, d.run.metric))));
  }
  return h('table', { class: 'exps' },
    h('thead', null, h('tr', null, ...['', '#', 'decision', d.run.metric, 'Δ', 'bar to beat', 'evals', 'proposer', 'hypothesis'].map((t) => h('th', null, t)))),
    h('tbody', null, ...rows));
}

async function runView(main: HTMLElement, id: string, tab: string): Promise<void> {
  let d: RunDetail;
  try {
    d = await api.run(id);
  } catch (e) {
    main.append(nav(), errorBox(e));
    return;
  }
  const dot = liveDot();
  const head = h('div');
  const tabs = ['progress', 'knobs', 'traces'];
  const tabBar = h('div', { class: 'tabs' }, ...tabs.map((t) => link(`#/run/${encodeURIComponent(d.run.id)}${t === 'progress' ? '' : `/${t}`}`, t)));
  [...tabBar.children].forEach((a, i) => a.classList.toggle('active', tabs[i] === tab));
  const content = h('div');
  main.append(nav(link(`#/run/${encodeURIComponent(d.run.id)}`, runTitle(d.run))), head, tabBar, content);
  head.append(runHeader(d, dot.el));

  if (tab !== 'progress') dot.el.style.display = 'none'; // only the progress tab follows the run live
  if (tab === 'knobs') return knobsTab(content, d);
  if (tab === 'traces') return tracesTab(content, d);

  const chartBox = h('div', { class: 'chart', id: 'progress' });
  const legend = h('p', { class: 'sub legend' },
    'Each point is an experiment\'s mean ', d.run.metric, '. The dark step line is the incumbent mean the acceptance rule compared it with; the shaded band runs from it to the dashed ',
    h('b', null, 'bar to beat'), ' (incumbent ', d.run.direction === 'minimize' ? '−' : '+', ' margin = max(min Δ, t·s·√(1/n + 1/m)), as decided). Triangles on the axis: crashed, timed out or rejected.');
  const pickBar = h('div', { class: 'toolbar' });
  const list = h('div', { id: 'experiments' });
  content.append(chartBox, legend, h('h2', null, 'Experiments'), pickBar, list);
  const state = { open: new Set<number>(), picked: new Set<number>() };
  const renderPick = () => {
    clear(pickBar);
    const [a, b] = [...state.picked].sort((x, y) => x - y);
    pickBar.append(state.picked.size === 2
      ? link(`#/run/${encodeURIComponent(d.run.id)}/compare/${a}/${b}`, h('button', null, `compare #${a} and #${b}`))
      : h('span', { class: 'sub' }, 'tick two experiments to compare them side by side; click a row for its diff, evaluations and reasons'));
  };
  const renderList = () => {
    clear(list);
    list.append(experimentsTable(d, state, renderPick));
  };
  renderPick();
  renderList();
  let chart: ReturnType<typeof progressChart> | null = null;
  const drawChart = () => {
    if (chart) return chart.update(d);
    clear(chartBox);
    if (d.experiments.length) chart = progressChart(chartBox, d);
    else chartBox.append(h('p', { class: 'sub' }, 'no experiment yet'));
  };
  drawChart();
  cleanups.push(() => chart?.destroy());
  let lastCount = -1;
  cleanups.push(watch(`/api/runs/${encodeURIComponent(d.run.id)}/events`, 'run', async (s) => {
    const st = s as { decided: number; experiments: number; evaluations: number };
    const sig = st.decided * 1e6 + st.experiments * 1e3 + st.evaluations;
    if (sig === lastCount) return;
    const first = lastCount === -1;
    lastCount = sig;
    if (first) return; // the page was just drawn from the same data
    try {
      d = await api.run(d.run.id);
    } catch {
      return;
    }
    clear(head);
    head.append(runHeader(d, dot.el));
    drawChart();
    renderList();
    dot.set(true, new Date().toLocaleTimeString());
  }, (live) => dot.set(live)));
}

async function knobsTab(content: HTMLElement, d: RunDetail): Promise<void> {
  let k: KnobData;
  try {
    k = await api.knobs(d.run.id);
  } catch (e) {
    content.append(errorBox(e));
    return;
  }
  if (!k.axes.length) {
    content.append(h('p', { class: 'empty' }, 'No knob assignments in this run: only the search and optuna proposers record them (each experiment\'s meta.assignment).'));
    return;
  }
  const evaluated = k.trials.filter((t) => t.metric !== null).length;
  content.append(
    h('h2', null, 'Importance'),
    k.importance ? h('div', { class: 'importance' }, ...k.importance.map((i) => h('div', { class: 'imp-row' },
      h('span', { class: 'imp-name' }, i.key), h('span', { class: 'imp-bar', style: { width: `${Math.round(i.importance * 300)}px` } }), h('span', { class: 'num' }, `${(i.importance * 100).toFixed(0)}%`))))
      : h('p', { class: 'sub' }, 'needs at least 3 evaluated assignments with differing results'),
    h('p', { class: 'sub' }, `The share of the ${k.metric} variance each knob's values explain (η², normalised), over ${evaluated} evaluated assignment(s).`),
    h('h2', null, 'Parallel coordinates'),
    h('p', { class: 'sub' }, `One line per evaluated assignment (the baseline included), darker = better ${k.metric}; kept ones thicker.`),
  );
  const pc = h('div', { class: 'chart', id: 'parallel' });
  const sl = h('div', { class: 'slices', id: 'slices' });
  content.append(pc, h('h2', null, 'Slices'), sl);
  parallelCoordinates(pc, k);
  slices(sl, k);
}

async function tracesTab(content: HTMLElement, d: RunDetail): Promise<void> {
  const input = h('input', { type: 'search', placeholder: `search this run's traces`, class: 'filter' });
  const out = h('div');
  const go = async () => {
    clear(out);
    if (!input.value.trim()) return;
    try {
      out.append(hitsList(await api.search(input.value, d.run.id)));
    } catch (e) {
      out.append(errorBox(e));
    }
  };
  input.addEventListener('change', () => void go());
  const withTraces = d.experiments.filter((e) => e.traces.traces > 0);
  content.append(h('form', { onsubmit: (ev: Event) => { ev.preventDefault(); void go(); } }, input), out,
    h('h2', null, 'Experiments with traces'),
    withTraces.length ? h('ul', null, ...withTraces.map((e) => h('li', null, link(`#/run/${encodeURIComponent(d.run.id)}/exp/${e.seq}`, `#${e.seq}`), ` ${e.traces.traces} trace(s), ${e.traces.failed} failed · `, badge(e.decision), ' ', e.hypothesis)))
      : h('p', { class: 'sub' }, 'No task traces in this run (command and trainer studies have none; harness studies and the llm proposer record them).'));
}

// ---------------------------------------------------------------------------------------------
// experiments

function experimentColumn(runId: string, e: ExperimentDetail, metric: string): HTMLElement {
  return h('div', { class: 'expcol' },
    h('h2', null, e.seq === 0 ? 'baseline' : `#${e.seq}`, ' ', badge(e.decision)),
    experimentBody(runId, e, metric),
    e.trace_list.length ? [h('h4', null, `task traces (${e.trace_list.length})`), h('table', { class: 'evals' },
      h('thead', null, h('tr', null, ...['task', 'rep', 'status', 'score', 'steps', 'tokens', 'cost', 'time'].map((t) => h('th', null, t)))),
      h('tbody', null, ...e.trace_list.map((t) => h('tr', { class: t.pass === false || t.status !== 'ok' ? 'failed' : '' },
        h('td', null, link(`#/trace/${encodeURIComponent(t.id)}`, t.task_id)), h('td', null, String(t.repeat)), h('td', null, t.status),
        h('td', { class: 'num' }, fmtMetric(t.score)), h('td', { class: 'num' }, String(t.steps)), h('td', { class: 'num' }, fmtTokens(t.tokens)),
        h('td', { class: 'num' }, fmtCost(t.cost_usd)), h('td', { class: 'num' }, fmtDuration(t.ms))))))] : null,
  );
}

async function experimentView(main: HTMLElement, id: string, seqs: number[]): Promise<void> {
  try {
    const [d, ...exps] = await Promise.all([api.run(id), ...seqs.map((s) => api.experiment(id, s))]) as [RunDetail, ...ExperimentDetail[]];
    main.append(nav(link(`#/run/${encodeURIComponent(d.run.id)}`, runTitle(d.run)), seqs.length === 1 ? `experiment ${seqs[0]}` : `#${seqs[0]} vs #${seqs[1]}`));
    if (exps.length === 2) {
      const [a, b] = exps as [ExperimentDetail, ExperimentDetail];
      main.append(h('table', { class: 'cmp' },
        h('thead', null, h('tr', null, h('th', null, ''), h('th', null, `#${a.seq}`), h('th', null, `#${b.seq}`))),
        h('tbody', null, ...([
          ['decision', a.decision ?? 'running', b.decision ?? 'running'],
          [d.run.metric, fmtMetric(a.metric), fmtMetric(b.metric)],
          ['Δ vs its incumbent', fmtSigned(a.delta), fmtSigned(b.delta)],
          ['bar to beat', fmtMetric(a.threshold), fmtMetric(b.threshold)],
          ['evaluations', a.evaluations.map((v) => fmtMetric(v.metric)).join(', '), b.evaluations.map((v) => fmtMetric(v.metric)).join(', ')],
          ['proposer', a.proposer, b.proposer],
          ['time', fmtDuration(a.wall_ms), fmtDuration(b.wall_ms)],
        ] as Array<[string, string, string]>).map(([k, x, y]) => h('tr', { class: x !== y ? 'differs' : '' }, h('th', null, k), h('td', null, x), h('td', null, y))))));
    }
    main.append(h('div', { class: exps.length === 2 ? 'side' : '' }, ...exps.map((e) => experimentColumn(d.run.id, e, d.run.metric))));
    const conv = exps.length === 1 ? exps[0]!.conversation : null;
    if (conv) main.append(h('h2', null, 'meta-agent conversation'), traceBody(conv as unknown as TraceData, ''));
  } catch (e) {
    main.append(nav(), errorBox(e));
  }
}

async function compareRunsView(main: HTMLElement, a: string, b: string): Promise<void> {
  try {
    const runs = await Promise.all([api.run(a), api.run(b)]);
    main.append(nav('compare'), h('h1', null, 'Runs compared'));
    const rows: Array<[string, (d: RunDetail) => string]> = [
      ['run', (d) => d.run.id], ['label', (d) => d.run.label ?? ''], ['tags', (d) => d.run.tags.join(', ')], ['study', (d) => `${d.run.study} (${d.run.kind})`],
      ['status', (d) => d.run.status], ['metric', (d) => `${d.run.metric} (${d.run.direction})`],
      ['baseline', (d) => `${fmtMetric(d.baseline.mean)} ± ${fmtMetric(d.baseline.sd)}`], ['best', (d) => fmtMetric(d.run.best)], ['Δ vs baseline', (d) => fmtSigned(d.run.delta)],
      ['experiments', (d) => Object.entries(d.run.counts).map(([k, v]) => `${v} ${k}`).join(', ')], ['noise sd', (d) => `${fmtMetric(d.noise.sd)} (${d.noise.df} df)`],
      ['proposer', (d) => [...new Set(d.experiments.filter((e) => e.seq > 0).map((e) => e.proposer))].join(', ')],
      ['spend', (d) => `${fmtTokens(d.run.spend.tokens)} tok ${fmtCost(d.run.spend.cost_usd)}`], ['elapsed', (d) => fmtDuration(d.run.elapsed_ms)],
      ['started', (d) => fmtTime(d.run.created_at)],
    ];
    main.append(h('table', { class: 'cmp' },
      h('thead', null, h('tr', null, h('th', null, ''), ...runs.map((r) => h('th', null, link(`#/run/${encodeURIComponent(r.run.id)}`, runTitle(r.run)))))),
      h('tbody', null, ...rows.map(([k, f]) => {
        const vals = runs.map(f);
        return h('tr', { class: vals[0] !== vals[1] ? 'differs' : '' }, h('th', null, k), ...vals.map((v) => h('td', null, v)));
      }))));
    if (runs[0]!.run.metric !== runs[1]!.run.metric) main.append(h('p', { class: 'flag' }, `different metrics (${runs[0]!.run.metric}, ${runs[1]!.run.metric}): one axis, read with care`));
    const box = h('div', { class: 'chart' });
    main.append(h('h2', null, 'Incumbent by experiment'), box);
    const c = compareChart(box, runs);
    cleanups.push(() => c.destroy());
  } catch (e) {
    main.append(nav(), errorBox(e));
  }
}

// ---------------------------------------------------------------------------------------------
// traces

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);

function textBlock(text: string, needle: string, hits: { n: number }): HTMLElement {
  return h('pre', { class: 'text' }, ...highlight(text, needle, hits));
}

function jsonBlock(v: unknown, needle: string, hits: { n: number }): HTMLElement {
  return textBlock(typeof v === 'string' ? v : JSON.stringify(v, null, 2) ?? 'null', needle, hits);
}

function contentBlocks(content: unknown, needle: string, hits: { n: number }): Child[] {
  if (typeof content === 'string') return [textBlock(content, needle, hits)];
  if (!Array.isArray(content)) return content === undefined || content === null ? [] : [jsonBlock(content, needle, hits)];
  return content.map((b) => {
    if (!isObj(b)) return jsonBlock(b, needle, hits);
    if ((b.type === 'text' || b.type === 'thinking' || b.type === 'reasoning') && typeof (b.text ?? b.thinking) === 'string') {
      return h('div', { class: `blk blk-${b.type}` }, b.type !== 'text' ? h('span', { class: 'blk-label' }, b.type) : null, textBlock(String(b.text ?? b.thinking), needle, hits));
    }
    if (b.type === 'tool_use') return h('div', { class: 'blk blk-tool' }, h('span', { class: 'blk-label' }, `tool call: ${String(b.name)}`), jsonBlock(b.input ?? b.raw_input, needle, hits));
    if (b.type === 'tool_result') return h('div', { class: 'blk blk-result' }, h('span', { class: 'blk-label' }, 'tool result'), contentBlocks(b.content, needle, hits));
    return jsonBlock(b, needle, hits);
  });
}

function spanCard(s: TraceData['roots'][number], needle: string, hits: { n: number }): HTMLElement {
  const body: Child[] = [];
  if (s.kind === 'model') {
    const req = isObj(s.input) ? s.input : {};
    const messages = Array.isArray(req.messages) ? (req.messages as unknown[]).filter(isObj) : [];
    let last = -1;
    messages.forEach((m, i) => { if (m.role === 'assistant') last = i; });
    if (last < 0 && typeof req.system === 'string') body.push(h('div', { class: 'msg msg-system' }, h('span', { class: 'role' }, 'system'), textBlock(req.system, needle, hits)));
    for (const m of messages.slice(last + 1)) body.push(h('div', { class: `msg msg-${String(m.role)}` }, h('span', { class: 'role' }, String(m.role)), ...contentBlocks(m.content, needle, hits)));
    const out = isObj(s.output) ? s.output : null;
    if (out) body.push(h('div', { class: 'msg msg-assistant' }, h('span', { class: 'role' }, 'assistant'), ...contentBlocks(out.content ?? out, needle, hits)));
  } else if (s.kind === 'tool') {
    body.push(h('div', { class: 'blk blk-tool' }, h('span', { class: 'blk-label' }, 'arguments'), jsonBlock(s.input, needle, hits)));
    if (s.output !== null && s.output !== undefined) body.push(h('div', { class: 'blk blk-result' }, h('span', { class: 'blk-label' }, 'result'), jsonBlock(s.output, needle, hits)));
  } else if (s.kind === 'scoring') {
    body.push(jsonBlock(s.output, needle, hits));
  } else if (!s.children.length) {
    if (s.input !== null && s.input !== undefined && !(isObj(s.input) && !Object.keys(s.input).length)) body.push(jsonBlock(s.input, needle, hits));
    if (s.output !== null && s.output !== undefined) body.push(jsonBlock(s.output, needle, hits));
  }
  if (s.error) body.push(h('div', { class: 'err' }, ...highlight(s.error, needle, hits)));
  const tokens = s.input_tokens + s.output_tokens;
  return h('div', { class: `span span-${s.kind} st-${s.status}` },
    h('div', { class: 'span-head' }, h('span', { class: `kind k-${s.kind}` }, s.kind), ' ', h('b', null, s.name), ' ',
      h('span', { class: 'sub' }, `${fmtDuration(s.ended_at - s.started_at)}${tokens ? ` · ${fmtTokens(tokens)} tokens · ${fmtCost(s.cost_usd)}` : ''}${s.status !== 'ok' ? ` · ${s.status}` : ''}`)),
    ...body,
    s.children.length ? h('div', { class: 'children' }, ...s.children.map((c) => spanCard(c, needle, hits))) : null);
}

function traceBody(t: TraceData, needle: string): HTMLElement {
  const hits = { n: 0 };
  const el = h('div', { class: 'trace' }, ...t.roots.map((r) => spanCard(r, needle, hits)));
  el.dataset.hits = String(hits.n);
  return el;
}

async function traceView(main: HTMLElement, id: string): Promise<void> {
  let t: TraceData;
  try {
    t = await api.trace(id);
  } catch (e) {
    main.append(nav(), errorBox(e));
    return;
  }
  const tr = t.trace;
  const find = h('input', { type: 'search', placeholder: 'find in this trace', class: 'filter', id: 'trace-find' });
  const count = h('span', { class: 'sub' });
  const mode = h('select', null, h('option', { value: 'conversation' }, 'conversation'), h('option', { value: 'transcript' }, 'transcript (as the CLI prints it)'));
  const body = h('div');
  const render = () => {
    clear(body);
    if (mode.value === 'transcript') {
      const hits = { n: 0 };
      body.append(h('pre', { class: 'transcript' }, ...highlight(t.transcript, find.value, hits)));
      count.textContent = find.value ? `${hits.n} match(es)` : '';
    } else {
      const b = traceBody(t, find.value);
      body.append(b);
      count.textContent = find.value ? `${b.dataset.hits} match(es)` : '';
    }
    body.querySelector('mark')?.scrollIntoView({ block: 'center' });
  };
  find.addEventListener('input', render);
  mode.addEventListener('change', render);
  const scoring = [...t.spans].reverse().find((s) => s.kind === 'scoring' && isObj(s.output));
  const feedback = scoring && isObj(scoring.output) && typeof scoring.output.feedback === 'string' ? scoring.output.feedback : null;
  main.append(
    nav(tr.run_id ? link(`#/run/${encodeURIComponent(tr.run_id)}`, tr.run_id) : tr.group_id,
      tr.run_id && tr.experiment_seq !== null ? link(`#/run/${encodeURIComponent(tr.run_id)}/exp/${tr.experiment_seq}`, `#${tr.experiment_seq}`) : null, `trace ${tr.id}`),
    h('h1', null, tr.role === 'proposal' ? 'meta-agent conversation' : `task ${tr.task_id}`, ' ', tr.pass === true ? h('span', { class: 'badge', style: { background: COLORS.kept } }, 'pass')
      : tr.pass === false ? h('span', { class: 'badge', style: { background: COLORS.crash } }, 'fail') : null),
    h('dl', { class: 'facts' },
      h('dt', null, 'score'), h('dd', null, fmtMetric(tr.score)),
      h('dt', null, 'status'), h('dd', null, tr.finalized ? tr.status : 'unfinished (still running, or cut off)'),
      h('dt', null, 'benchmark'), h('dd', null, `${tr.benchmark}/${tr.split} · harness ${tr.harness} · repeat ${tr.repeat}`),
      h('dt', null, 'tokens'), h('dd', null, `${fmtTokens(tr.input_tokens)} in · ${fmtTokens(tr.output_tokens)} out · ${fmtCost(tr.cost_usd)} · ${fmtDuration(tr.ended_at - tr.started_at)}`),
      feedback ? [h('dt', null, 'feedback'), h('dd', null, feedback)] : null,
      tr.error ? [h('dt', null, 'error'), h('dd', { class: 'err' }, tr.error)] : null,
      tr.output ? [h('dt', null, 'answer'), h('dd', null, h('code', null, tr.output.slice(0, 500)))] : null,
    ),
    h('div', { class: 'toolbar' }, find, mode, count),
    body);
  render();
}

function hitsList(hits: Awaited<ReturnType<typeof api.search>>): HTMLElement {
  if (!hits.length) return h('p', { class: 'empty' }, 'no match');
  return h('table', { class: 'hits' },
    h('thead', null, h('tr', null, ...['trace', 'where', 'span', 'score', 'match'].map((t) => h('th', null, t)))),
    h('tbody', null, ...hits.map((x) => h('tr', null,
      h('td', null, link(`#/trace/${encodeURIComponent(x.trace_id)}`, x.role === 'proposal' ? 'meta-agent' : x.task_id)),
      h('td', null, x.run_id ? [link(`#/run/${encodeURIComponent(x.run_id)}`, x.run_id), x.experiment_seq !== null ? ` #${x.experiment_seq}` : ''] : x.group_id),
      h('td', null, x.span_kind ? `${x.span_kind} ${x.span_name ?? ''}` : 'answer / error'),
      h('td', { class: 'num' }, fmtMetric(x.score)),
      h('td', { class: 'snippet' }, ...marked(x.snippet))))));
}

async function searchView(main: HTMLElement, q: string): Promise<void> {
  const input = h('input', { type: 'search', value: q, class: 'filter', placeholder: 'words, "a phrase", word*, a OR b' });
  const out = h('div');
  main.append(nav('search'), h('h1', null, 'Search traces'),
    h('form', { onsubmit: (ev: Event) => { ev.preventDefault(); location.hash = `#/search?q=${encodeURIComponent(input.value)}`; } }, input, h('button', null, 'search')), out);
  if (!q.trim()) return;
  try {
    out.append(hitsList(await api.search(q)));
  } catch (e) {
    out.append(errorBox(e));
  }
}

// ---------------------------------------------------------------------------------------------
// routing

async function route(): Promise<void> {
  for (const c of cleanups) c();
  cleanups = [];
  const main = root();
  clear(main);
  const hash = location.hash.replace(/^#/, '') || '/';
  const [path, query] = hash.split('?', 2) as [string, string | undefined];
  const parts = path.split('/').filter(Boolean).map(decodeURIComponent);
  if (parts[0] === 'run' && parts[1]) {
    if (parts[2] === 'exp' && parts[3]) return experimentView(main, parts[1], [Number(parts[3])]);
    if (parts[2] === 'compare' && parts[3] && parts[4]) return experimentView(main, parts[1], [Number(parts[3]), Number(parts[4])]);
    return runView(main, parts[1], parts[2] === 'knobs' || parts[2] === 'traces' ? parts[2] : 'progress');
  }
  if (parts[0] === 'compare' && parts[1] && parts[2]) return compareRunsView(main, parts[1], parts[2]);
  if (parts[0] === 'trace' && parts[1]) return traceView(main, parts[1]);
  if (parts[0] === 'search') return searchView(main, new URLSearchParams(query ?? '').get('q') ?? '');
  return runsView(main);
}

window.addEventListener('hashchange', () => void route());
void route();
