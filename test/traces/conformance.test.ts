/**
 * One conformance suite for the RunStore interface (traces/store.ts), run against the SQLite
 * store and the in-memory one: the same calls must give the same rows, orderings, chain links and
 * refusals. Then one scenario is replayed on both and every answer compared (timestamps masked).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { openDb } from '../../traces/db.ts';
import { ledgerGenesis, ledgerLink, runAnnotations, type DecisionFields, type NewEvaluation, type NewExperiment, type NewRun } from '../../traces/ledger.ts';
import { SqliteStore, type RunStore } from '../../traces/store.ts';
import { MemoryStore } from '../../traces/memory.ts';
import { UsageError } from '../../base/errors.ts';

const IMPLS: Array<[string, () => RunStore]> = [
  ['sqlite', () => new SqliteStore(openDb(':memory:'))],
  ['memory', () => new MemoryStore()],
];

const run = (id: string, over: Partial<NewRun> = {}): NewRun => ({
  id, name: 'demo', kind: 'command', study_path: '/s/study.yaml', study_json: '{}', study_text: 'name: demo', config_hash: 'c0ffee',
  repo: '/repo', base_commit: 'b'.repeat(40), branch: `autoagent/${id}`, lock_manifest: '{}', metric_name: 'loss', direction: 'minimize',
  self_reported: 0, unsafe_no_sandbox: 0, environment: null, ...over,
});
const exp = (runId: string, seq: number, over: Partial<NewExperiment> = {}): NewExperiment => ({
  run_id: runId, seq, parent_commit: 'p'.repeat(40), candidate_commit: seq === 0 ? null : `${seq}`.padEnd(40, 'c'), proposer: 'search',
  hypothesis: `h${seq}`, meta: null, edits: '[]', diff: `diff ${seq}`, files_hash: 'f', ...over,
});
const ev = (experimentId: number, repeat: number, metric: number | null, over: Partial<NewEvaluation> = {}): NewEvaluation => ({
  experiment_id: experimentId, repeat, seed: 100 + repeat, status: 'ok', metric, reason: null, command_ms: 10 * (repeat + 1), evaluator_ms: 1,
  exit_code: 0, stdout_tail: '', stderr_tail: '', telemetry: null, ...over,
});
const decision = (over: Partial<DecisionFields> = {}): DecisionFields => ({
  decision: 'discarded', reason: 'no better', metric: 1, incumbent_metric: 1, improvement: 0, margin: 0.1, wall_ms: 5, inside_ms: 4, ...over,
});

for (const [name, make] of IMPLS) {
  test(`${name}: runs — defaults, refusals, ordering, lookups by id and prefix, status and elapsed updates`, () => {
    const s = make();
    assert.equal(s.latestRun(), undefined);
    assert.deepEqual(s.listRuns(), []);
    s.insertRun(run('demo-1-aaa'));
    s.insertRun(run('demo-1-bbb'));
    s.insertRun(run('other'));
    assert.throws(() => s.insertRun(run('other', { name: 'again' })), /UNIQUE constraint failed: runs\.id/);
    const r = s.getRun('demo-1-aaa')!;
    assert.equal(r.status, 'running');
    assert.equal(r.stop_reason, null);
    assert.equal(r.elapsed_ms, 0);
    assert.equal(r.owner_pid, null);
    assert.equal(r.label, null);
    assert.equal(r.tags, '[]');
    assert.equal(r.notes, '');
    assert.equal(r.created_at, r.updated_at);
    assert.equal(s.getRun('other')!.name, 'demo', 'the refused insert changed nothing');
    assert.deepEqual(s.listRuns().map((x) => x.id), ['demo-1-aaa', 'demo-1-bbb', 'other'], 'created_at, then insertion order');
    assert.equal(s.latestRun()!.id, 'other');
    assert.equal(s.findRun('demo-1-bbb').id, 'demo-1-bbb');
    assert.equal(s.findRun('oth').id, 'other');
    assert.throws(() => s.findRun('demo-1'), (e: unknown) => e instanceof UsageError && /ambiguous: it matches 2 runs \(demo-1-aaa, demo-1-bbb\)/.test(e.message));
    assert.throws(() => s.findRun('nope'), (e: unknown) => e instanceof UsageError && /^no run nope in this store/.test(e.message));
    assert.throws(() => s.findRun(''), UsageError);
    // a returned row is a copy
    r.status = 'failed';
    assert.equal(s.getRun('demo-1-aaa')!.status, 'running');

    s.setRunStatus('demo-1-aaa', 'stopped', 'interrupted');
    assert.deepEqual([s.getRun('demo-1-aaa')!.status, s.getRun('demo-1-aaa')!.stop_reason], ['stopped', 'interrupted']);
    s.claimRun('demo-1-aaa', 4242);
    const c = s.getRun('demo-1-aaa')!;
    assert.deepEqual([c.status, c.stop_reason, c.owner_pid], ['running', null, 4242]);
    assert.ok(c.updated_at >= c.created_at);
    s.updateRunStudy('demo-1-aaa', '{"x":1}');
    assert.equal(s.getRun('demo-1-aaa')!.study_json, '{"x":1}');
    s.addRunElapsed('demo-1-aaa', 1000.4);
    s.addRunElapsed('demo-1-aaa', 0.6);
    assert.equal(s.getRun('demo-1-aaa')!.elapsed_ms, 1001, 'each addition rounded');
    // updates of an unknown run change nothing and do not throw
    s.setRunStatus('ghost', 'failed', 'x');
    s.claimRun('ghost', 1);
    s.addRunElapsed('ghost', 5);
    assert.equal(s.getRun('ghost'), undefined);
    assert.equal(s.listRuns().length, 3);
  });

  test(`${name}: labels, tags and notes — partial updates, an unknown run, outside the chain`, () => {
    const s = make();
    s.insertRun(run('r'));
    const before = s.ledgerHead('r');
    assert.equal(s.setRunAnnotations('r', { label: 'baseline sweep' }), true);
    assert.equal(s.setRunAnnotations('r', { tags: ['gpu', 'a100'] }), true);
    assert.equal(s.setRunAnnotations('r', { notes: 'ran overnight' }), true);
    assert.deepEqual(runAnnotations(s.getRun('r')!), { label: 'baseline sweep', tags: ['gpu', 'a100'], notes: 'ran overnight' });
    assert.equal(s.setRunAnnotations('r', { label: null, tags: [] }), true);
    assert.deepEqual(runAnnotations(s.getRun('r')!), { label: null, tags: [], notes: 'ran overnight' });
    assert.equal(s.setRunAnnotations('r', {}), true, 'nothing to set: says whether the run exists');
    assert.equal(s.setRunAnnotations('ghost', {}), false);
    assert.equal(s.setRunAnnotations('ghost', { label: 'x' }), false);
    assert.deepEqual(s.ledgerHead('r'), before);
  });

  test(`${name}: experiments — a pending row with its defaults, ordered by seq, unique per (run, seq), only of a known run`, () => {
    const s = make();
    s.insertRun(run('r'));
    s.insertRun(run('q'));
    const e2 = s.insertExperiment(exp('r', 2, { round: 2, proposal: '{"cited":[]}' }));
    const e0 = s.insertExperiment(exp('r', 0));
    s.insertExperiment(exp('q', 0));
    const e1 = s.insertExperiment(exp('r', 1, { contamination: '{"verdict":"warn"}' }));
    assert.ok(e0.id > e2.id && e1.id > e0.id, 'ids in insertion order');
    assert.deepEqual({ ...e2, id: 0, started_at: '' }, {
      id: 0, run_id: 'r', seq: 2, parent_commit: 'p'.repeat(40), candidate_commit: '2'.padEnd(40, 'c'), kept_commit: null, proposer: 'search',
      hypothesis: 'h2', meta: null, edits: '[]', diff: 'diff 2', files_hash: 'f', status: 'pending', decision: null, reason: null, metric: null,
      incumbent_metric: null, improvement: null, margin: null, started_at: '', finished_at: null, wall_ms: null, inside_ms: null, round: 2,
      proposal: '{"cited":[]}', chain: null, chain_pos: null, contamination: null,
    });
    assert.equal(e1.contamination, '{"verdict":"warn"}');
    assert.deepEqual(s.listExperiments('r').map((e) => e.seq), [0, 1, 2]);
    assert.deepEqual(s.listExperiments('q').map((e) => e.seq), [0]);
    assert.deepEqual(s.listExperiments('ghost'), []);
    assert.deepEqual(s.getExperiment('r', 2), e2);
    assert.equal(s.getExperiment('r', 9), undefined);
    assert.throws(() => s.insertExperiment(exp('r', 1, { hypothesis: 'again' })), /UNIQUE constraint failed: experiments\.run_id, experiments\.seq/);
    assert.equal(s.getExperiment('r', 1)!.hypothesis, 'h1');
    assert.throws(() => s.insertExperiment(exp('ghost', 0)), /FOREIGN KEY constraint failed/);
    const got = s.getExperiment('r', 0)!;
    got.hypothesis = 'changed';
    assert.equal(s.getExperiment('r', 0)!.hypothesis, 'h0', 'a returned row is a copy');
  });

  test(`${name}: evaluations — ordered by repeat, unique per (experiment, repeat), grouped per run, NaN stored as null`, () => {
    const s = make();
    s.insertRun(run('r'));
    s.insertRun(run('q'));
    const a = s.insertExperiment(exp('r', 0));
    const b = s.insertExperiment(exp('r', 1));
    const other = s.insertExperiment(exp('q', 0));
    s.insertEvaluation(ev(b.id, 1, 0.5));
    s.insertEvaluation(ev(a.id, 2, 1.2));
    s.insertEvaluation(ev(a.id, 0, 1.0, { round: 0, slot: 1, hardware: 'H200' }));
    s.insertEvaluation(ev(a.id, 1, Number.NaN, { status: 'crash', reason: 'exit 1', exit_code: 1 }));
    s.insertEvaluation(ev(other.id, 0, 9));
    assert.throws(() => s.insertEvaluation(ev(a.id, 1, 7)), /UNIQUE constraint failed: evaluations\.experiment_id, evaluations\.repeat/);
    assert.throws(() => s.insertEvaluation(ev(9999, 0, 7)), /FOREIGN KEY constraint failed/);
    const va = s.evaluationsOf(a.id);
    assert.deepEqual(va.map((v) => [v.repeat, v.metric, v.status]), [[0, 1.0, 'ok'], [1, null, 'crash'], [2, 1.2, 'ok']], 'the refused repeat left the first');
    assert.deepEqual([va[0]!.round, va[0]!.slot, va[0]!.hardware], [0, 1, 'H200']);
    assert.deepEqual([va[2]!.round, va[2]!.slot, va[2]!.hardware], [null, null, null]);
    assert.deepEqual(Object.keys(va[0]!).sort(), [
      'command_ms', 'created_at', 'evaluator_ms', 'exit_code', 'experiment_id', 'hardware', 'id', 'metric', 'reason', 'repeat', 'round', 'seed',
      'slot', 'status', 'stderr_tail', 'stdout_tail', 'telemetry',
    ]);
    const byExp = s.evaluationsOfRun('r');
    assert.deepEqual([...byExp.keys()], [a.id, b.id], 'by experiment id');
    assert.deepEqual(byExp.get(a.id), va);
    assert.deepEqual(byExp.get(b.id)!.map((v) => v.repeat), [1]);
    assert.equal(s.evaluationsOfRun('ghost').size, 0);
    assert.deepEqual(s.evaluationsOf(12345), []);
    // the ok ones' durations (command + evaluator), by experiment id then repeat; the crash is left out
    assert.deepEqual(s.okEvaluationMs('r'), [11, 31, 21]);
    assert.deepEqual(s.okEvaluationMs('ghost'), []);
  });

  test(`${name}: decisions — each extends the chain in decision order, over its own evaluations and its round's fresh repeats`, () => {
    const s = make();
    s.insertRun(run('r'));
    const genesis = ledgerGenesis(s.getRun('r')!);
    assert.deepEqual(s.ledgerHead('r'), { head: genesis, links: 0 });
    assert.equal(s.ledgerHead('ghost'), null);
    const base = s.insertExperiment(exp('r', 0));
    for (const k of [0, 1, 2]) s.insertEvaluation(ev(base.id, k, 1 + k / 100));
    s.decideExperiment(base.id, decision({ decision: 'baseline', reason: 'baseline', metric: 1.01, incumbent_metric: null, improvement: null, margin: null }));
    const b = s.getExperiment('r', 0)!;
    assert.equal(b.status, 'decided');
    assert.equal(b.chain_pos, 1);
    assert.equal(b.chain, ledgerLink(genesis, b, s.evaluationsOf(base.id)));
    assert.ok(b.finished_at);

    // two candidates of round 1; the later-numbered one is decided first
    const e1 = s.insertExperiment(exp('r', 1, { round: 1 }));
    const e2 = s.insertExperiment(exp('r', 2, { round: 1 }));
    s.insertEvaluation(ev(e1.id, 0, 0.9, { round: 1 }));
    s.insertEvaluation(ev(e2.id, 0, 1.1, { round: 1 }));
    // a fresh repeat of the incumbent (the baseline) made in round 1: evidence of round 1's judgements
    s.insertEvaluation(ev(base.id, 3, 1.02, { round: 1 }));
    s.decideExperiment(e2.id, decision({ metric: 1.1 }));
    s.decideExperiment(e1.id, decision({ decision: 'kept', reason: 'better', metric: 0.9, improvement: 0.11, kept_commit: 'k'.repeat(40) }));
    const d2 = s.getExperiment('r', 2)!;
    const d1 = s.getExperiment('r', 1)!;
    assert.deepEqual([d2.chain_pos, d1.chain_pos], [2, 3], 'positions follow decision order, not seq');
    assert.equal(d1.kept_commit, 'k'.repeat(40));
    assert.equal(d2.kept_commit, null);
    const fresh = [{ experiment: 0, repeat: 3, seed: 103, status: 'ok', metric: 1.02 }];
    assert.equal(d2.chain, ledgerLink(b.chain!, d2, s.evaluationsOf(e2.id), fresh));
    assert.notEqual(d2.chain, ledgerLink(b.chain!, d2, s.evaluationsOf(e2.id)), 'the round repeat is covered');
    assert.equal(d1.chain, ledgerLink(d2.chain!, d1, s.evaluationsOf(e1.id), fresh));
    assert.deepEqual(s.ledgerHead('r'), { head: d1.chain, links: 3 });
    // the baseline's own link did not change when its fresh repeat was added later
    assert.equal(s.getExperiment('r', 0)!.chain, b.chain);
    // an unknown experiment: nothing happens
    s.decideExperiment(424242, decision());
    assert.deepEqual(s.ledgerHead('r'), { head: d1.chain, links: 3 });
    // a pending experiment is not in the chain
    s.insertExperiment(exp('r', 3, { round: 2 }));
    assert.equal(s.ledgerHead('r')!.links, 3);
  });

  test(`${name}: promotions — an intent, replaced by a second one, finished; listed by seq, of one state`, () => {
    const s = make();
    s.insertRun(run('r'));
    s.recordPromotionIntent({ run_id: 'r', experiment_seq: 5, kept_commit: 'a', expected_parent: 'p' });
    s.recordPromotionIntent({ run_id: 'r', experiment_seq: 2, kept_commit: 'b', expected_parent: 'p' });
    s.finishPromotion('r', 2);
    s.recordPromotionIntent({ run_id: 'r', experiment_seq: 5, kept_commit: 'a2', expected_parent: 'p2' });
    assert.throws(() => s.recordPromotionIntent({ run_id: 'ghost', experiment_seq: 1, kept_commit: 'x', expected_parent: 'y' }), /FOREIGN KEY constraint failed/);
    assert.deepEqual(s.promotionsOf('r').map((p) => [p.experiment_seq, p.kept_commit, p.expected_parent, p.state]), [[2, 'b', 'p', 'done'], [5, 'a2', 'p2', 'intent']]);
    assert.deepEqual(s.promotionsOf('r', 'intent').map((p) => p.experiment_seq), [5]);
    assert.deepEqual(s.promotionsOf('r', 'done').map((p) => p.experiment_seq), [2]);
    s.finishPromotion('r', 5);
    s.recordPromotionIntent({ run_id: 'r', experiment_seq: 5, kept_commit: 'a3', expected_parent: 'p3' });
    assert.equal(s.promotionsOf('r', 'intent')[0]!.kept_commit, 'a3', 'a finished promotion is an intent again when recorded again');
    assert.deepEqual(s.promotionsOf('ghost'), []);
  });
}

/** every answer of one scenario, timestamps masked */
function scenario(s: RunStore): unknown[] {
  const out: unknown[] = [];
  const say = (x: unknown) => out.push(JSON.parse(JSON.stringify(x instanceof Map ? [...x.entries()] : x ?? null, (k, v) => (/_at$/.test(k) && typeof v === 'string' ? 'T' : v))));
  const attempt = (f: () => unknown) => {
    try {
      say({ ok: f() });
    } catch (e) {
      say({ error: (e as Error).message });
    }
  };
  for (const id of ['s-1', 's-2', 's-1']) attempt(() => s.insertRun(run(id)));
  const ids: number[] = [];
  for (const [rid, seq, round] of [['s-1', 0, null], ['s-1', 1, 1], ['s-1', 2, 1], ['s-2', 0, null], ['s-1', 1, 1], ['x', 0, null]] as const) {
    attempt(() => {
      const e = s.insertExperiment(exp(rid, seq, { round }));
      ids.push(e.id);
      return e;
    });
  }
  const [b, c1, c2, q] = ids as [number, number, number, number];
  for (const [id, k, m, r] of [[b, 0, 1], [b, 1, 1.03], [b, 2, 0.98], [c1, 0, 0.9, 1], [c2, 0, 1.2, 1], [b, 3, 1.01, 1], [q, 0, 5], [b, 1, 2]] as Array<[number, number, number, number?]>) {
    attempt(() => s.insertEvaluation(ev(id, k, m, r === undefined ? {} : { round: r })));
  }
  s.decideExperiment(b, decision({ decision: 'baseline' }));
  s.decideExperiment(c2, decision());
  s.decideExperiment(c1, decision({ decision: 'kept', kept_commit: 'k' }));
  s.decideExperiment(q, decision({ decision: 'baseline' }));
  s.setRunAnnotations('s-2', { label: 'second', tags: ['t'] });
  s.setRunStatus('s-1', 'finished', null);
  s.addRunElapsed('s-1', 12.5);
  s.recordPromotionIntent({ run_id: 's-1', experiment_seq: 1, kept_commit: 'k', expected_parent: 'p' });
  s.finishPromotion('s-1', 1);
  for (const id of ['s-1', 's-2']) {
    say(s.getRun(id));
    say(s.listExperiments(id));
    say(s.evaluationsOfRun(id));
    say(s.ledgerHead(id));
    say(s.promotionsOf(id));
    say(s.okEvaluationMs(id));
    say(s.traceTotals(id));
    say(s.taskMeanScores(id, 0));
  }
  say(s.listRuns());
  say(s.latestRun());
  attempt(() => s.findRun('s-'));
  attempt(() => s.findRun('s-2'));
  return out;
}

test('the same calls give the same answers from the SQLite store and the in-memory one', () => {
  const [sqlite, memory] = IMPLS.map(([, make]) => scenario(make()));
  assert.ok(sqlite!.length > 20);
  assert.deepEqual(memory, sqlite);
  // and the scenario saw refusals, chains and fresh repeats, not only empty answers
  const text = JSON.stringify(sqlite);
  for (const s of ['UNIQUE constraint failed: runs.id', 'UNIQUE constraint failed: experiments.run_id, experiments.seq', 'FOREIGN KEY constraint failed',
    'UNIQUE constraint failed: evaluations.experiment_id, evaluations.repeat', '"chain_pos":3', 'ambiguous']) {
    assert.ok(text.includes(s), `the scenario shows ${s}`);
  }
});
