// Parallel evaluation slots, with the in-process fake kind (milliseconds, no sandbox): rounds of
// max(candidates, parallel) candidates from one incumbent, screens and confirmations in parallel,
// a fresh incumbent repeat beside the confirmations of a round where a screen passed, one keep per round at α / k, the same ledger whatever the
// timing, GPU leases never shared, a stop in one slot stops the others.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join, resolve } from 'node:path';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { startRun } from '../../src/loop.ts';
import { MemoryReporter } from '../../src/report.ts';
import { auditRun } from '../../src/audit.ts';
import { ledgerText } from '../../src/views.ts';
import { openDb, listExperiments, evaluationsOfRun, evaluationsOf, getRun, latestRun, MemoryStore, SqliteStore, type LedgerStore } from '../../traces/index.ts';
import { readFileSync, readdirSync } from 'node:fs';
import { UsageError } from '../../base/errors.ts';
import { planSlots } from '../../src/slots.ts';
import { judgeCandidate } from '../../src/acceptance.ts';
import { StudySchema } from '../../src/study.ts';
import type { Proposer } from '../../meta-agent/types.ts';
import { makeRepo, cleanup, sh, PARAMS_PY, EVALUATE_PY, studyYaml } from '../helpers/repo.ts';

const BIN = resolve(import.meta.dirname, '../../bin/autoagent.js');
import { FakeKind } from '../helpers/fake-kind.ts';

function study(extra = '', kind = 'command'): string {
  return `name: par
kind: ${kind}
editable: [params.py]
${kind === 'command' ? 'command: "true"\nevaluate: "true"\n' : ''}metric: { name: loss, direction: minimize }
budget: { experiment_seconds: 20, experiments: 8 }
acceptance: { baseline_repeats: 3, confirm_repeats: 1 }
${extra}`;
}

const opts = (kind: FakeKind, extra: Partial<Parameters<typeof startRun>[1]> = {}) => ({
  overrides: {}, unsafeNoSandbox: true, reporter: new MemoryReporter(), kind, ...extra,
});

function summary(dbPath: string, runId: string) {
  const db = openDb(dbPath);
  const out = ledgerSummary(new SqliteStore(db), runId);
  db.close();
  return out;
}

function ledgerSummary(store: LedgerStore, runId: string) {
  const exps = store.listExperiments(runId);
  const evals = store.evaluationsOfRun(runId);
  return exps.map((e) => ({ seq: e.seq, round: e.round, decision: e.decision, hypothesis: e.hypothesis, evals: (evals.get(e.id) ?? []).map((v) => [v.repeat, v.seed, v.round, v.metric]) }));
}

test('parallel 4: rounds of 4 candidates evaluated at once, one fresh incumbent repeat in a round where a screen passed, one keep per round; audit passes', async () => {
  const repo = makeRepo({ 'params.py': PARAMS_PY, 'study.yaml': study('parallel: 4\n') });
  try {
    const kind = new FakeKind({ noise: 0.05, delayMs: (seed) => 20 + (seed * 7919) % 40 });
    const res = await startRun(join(repo, 'study.yaml'), opts(kind));
    assert.equal(res.status, 'finished', res.stopReason ?? '');
    assert.equal(kind.maxRunning, 4, 'four evaluations ran at once');
    const db = openDb(res.dbPath);
    const exps = listExperiments(db, res.runId);
    const evals = evaluationsOfRun(db, res.runId);
    const rounds = new Map<number, typeof exps>();
    for (const e of exps.filter((x) => x.seq > 0)) rounds.set(e.round!, [...(rounds.get(e.round!) ?? []), e]);
    assert.deepEqual([...rounds.values()].map((r) => r.length), [4, 4], 'two rounds of four candidates');
    for (const r of rounds.values()) assert.ok(r.filter((e) => e.decision === 'kept').length <= 1, 'at most one keep per round');
    assert.ok(exps.some((e) => e.decision === 'kept'), 'the quadratic improves');
    // the incumbent of a round where a screen passed (a candidate was confirmed) got one fresh repeat in
    // that round, recorded with its round and slot, after the screens it was not seen by
    for (const [r, members] of rounds) {
      const incSeq = Math.max(0, ...exps.filter((e) => e.decision === 'kept' && e.round! < r).map((e) => e.seq));
      const inc = exps.find((e) => e.seq === incSeq)!;
      const confirmed = members.filter((e) => (evals.get(e.id) ?? []).some((v) => v.repeat === 1));
      const fresh = (evals.get(inc.id) ?? []).filter((v) => v.round === r);
      assert.equal(fresh.length, confirmed.length ? 1 : 0, `incumbent #${inc.seq} repeated ${confirmed.length ? 'once' : 'never'} in round ${r}`);
      for (const e of members) for (const v of evals.get(e.id) ?? []) assert.ok(v.slot !== null && v.slot >= 0 && v.slot < 4);
      // a screen is judged on what the incumbent had at the round's start: its stored incumbent metric (a
      // candidate discarded at its screen) is the mean of the incumbent's evaluations of earlier rounds
      const before = (evals.get(inc.id) ?? []).filter((v) => (v.round ?? inc.round ?? inc.seq) < r).map((v) => v.metric!);
      for (const e of members.filter((x) => x.decision === 'discarded' && /^first evaluation/.test(x.reason ?? ''))) {
        assert.ok(Math.abs(e.incumbent_metric! - before.reduce((a, b) => a + b, 0) / before.length) < 1e-9, `#${e.seq}: screened against the round's start`);
      }
    }
    assert.ok(exps.some((e) => /^first evaluation/.test(e.reason ?? '')), 'some candidate was discarded at its screen');
    const text = ledgerText(db, getRun(db, res.runId)!);
    assert.match(text, /round\s+slot/);
    assert.match(text, /fresh repeat of (the incumbent|incumbent #\d+) in round \d+/);
    db.close();
    const audit = await auditRun(openDb(res.dbPath), res.runId, { rescore: false });
    assert.ok(audit.ok, audit.problems.join('\n'));
  } finally {
    cleanup(repo);
  }
});

test('audit re-derives a screen either way: as of the round start (now), or after the round\'s fresh incumbent repeat (runs before 2026-12-02); other numbers fail', async () => {
  const repo = makeRepo({ 'params.py': PARAMS_PY, 'study.yaml': study('parallel: 4\n').replace('experiments: 8', 'experiments: 16') });
  try {
    const res = await startRun(join(repo, 'study.yaml'), opts(new FakeKind({ noise: 0.05, delayMs: 5 })));
    assert.equal(res.status, 'finished', res.stopReason ?? '');
    const db = openDb(res.dbPath);
    const exps = listExperiments(db, res.runId);
    const evals = evaluationsOfRun(db, res.runId);
    const acc = (JSON.parse(getRun(db, res.runId)!.study_json) as { acceptance: { alpha: number; min_delta: number } }).acceptance;
    const rule = { alpha: acc.alpha, minDelta: acc.min_delta };
    // a candidate discarded at its screen in a round where the incumbent got a fresh repeat (after the screens)
    const target = exps.map((e) => ({ e, old: judgeCandidate(exps, evals, e, [evaluationsOf(db, e.id)[0]?.metric ?? NaN], 'minimize', rule, 'final') }))
      .find(({ e, old }) => e.decision === 'discarded' && /^first evaluation/.test(e.reason ?? '') && !old.pass && Math.abs(old.incumbentMean - e.incumbent_metric!) > 1e-12);
    assert.ok(target, 'a screen-discarded candidate in a round with a fresh incumbent repeat');
    const write = (j: { incumbentMean: number; improvement: number; margin: number }) => db.prepare('UPDATE experiments SET incumbent_metric = ?, improvement = ?, margin = ? WHERE id = ?').run(j.incumbentMean, j.improvement, j.margin, target.e.id);
    const evidence = async () => (await auditRun(openDb(res.dbPath), res.runId, { rescore: false })).problems.filter((p) => p.startsWith('evidence:'));
    assert.deepEqual(await evidence(), [], 'as the loop stored it');
    // the numbers the loop before 2026-12-02 stored (its screen saw the round's fresh repeat): still the rule
    write(target.old);
    assert.deepEqual(await evidence(), []);
    // numbers neither rule gives
    write({ ...target.old, margin: target.old.margin * 2 + 0.01 });
    const bad = await evidence();
    assert.equal(bad.length, 1, bad.join('\n'));
    assert.match(bad[0]!, new RegExp(`#${target.e.seq} \\(discarded\\): stored improvement`));
    db.close();
  } finally {
    cleanup(repo);
  }
});

test('the same seeds give the same ledger whatever the timing of the slots', async () => {
  const runs = [];
  for (const jitter of [(s: number) => (s * 31) % 50, (s: number) => 50 - ((s * 17) % 50)]) {
    const repo = makeRepo({ 'params.py': PARAMS_PY, 'study.yaml': study('parallel: 3\n') });
    try {
      const res = await startRun(join(repo, 'study.yaml'), opts(new FakeKind({ noise: 0.3, delayMs: jitter })));
      runs.push(summary(res.dbPath, res.runId).map((e) => ({ ...e, hypothesis: e.hypothesis })));
    } finally {
      cleanup(repo);
    }
  }
  assert.deepEqual(runs[1], runs[0]);
});

test('the loop takes a store: on a MemoryStore it records the ledger the store file records, audit passes on it, and no file is written', async () => {
  const runs: Array<{ ledger: unknown; decisions: unknown }> = [];
  for (const store of [undefined, new MemoryStore()]) {
    const repo = makeRepo({ 'params.py': PARAMS_PY, 'study.yaml': study('parallel: 3\n') });
    try {
      const res = await startRun(join(repo, 'study.yaml'), opts(new FakeKind({ noise: 0.3, delayMs: (s) => (s * 31) % 50 }), { store }));
      assert.equal(res.status, 'finished', res.stopReason ?? '');
      const s = store ?? new SqliteStore(openDb(res.dbPath));
      const exps = s.listExperiments(res.runId);
      runs.push({
        ledger: ledgerSummary(s, res.runId),
        decisions: exps.map((e) => [e.reason, e.metric, e.incumbent_metric, e.improvement, e.margin, e.chain_pos, e.kept_commit === null]),
      });
      assert.ok(exps.some((e) => e.decision === 'kept'));
      const audit = await auditRun(s, res.runId, { rescore: false });
      assert.ok(audit.ok, audit.problems.join('\n'));
      if (store) {
        assert.equal(res.dbPath, '(memory)');
        assert.deepEqual(readdirSync(join(repo, '.autoagent')).filter((f) => f.endsWith('.db')), [], 'no store file');
        // the kept commits are on the branch as from a store file (audit checked their messages and trees)
        const tip = sh(repo, 'git', ['rev-parse', `autoagent/${res.runId}`]).trim();
        assert.equal(tip, exps.filter((e) => e.decision === 'kept').at(-1)!.kept_commit);
      }
    } finally {
      cleanup(repo);
    }
  }
  assert.deepEqual(runs[1], runs[0]);
});

test('a MemoryStore keeps no traces: a harness study or a traced proposer is refused before it starts; a proposer that records anyway stops the run, naming why', async () => {
  // a harness study (GSM8K's, as shipped): refused before preparing, nothing recorded
  const files: Record<string, string> = {};
  const gsm = resolve(import.meta.dirname, '../../harnesses/gsm8k');
  for (const f of ['study.yaml', 'harness.yaml', ...readdirSync(join(gsm, 'prompts')).map((p) => `prompts/${p}`)]) files[f] = readFileSync(join(gsm, f), 'utf8');
  const harnessRepo = makeRepo(files);
  const repo = makeRepo({ 'params.py': PARAMS_PY, 'study.yaml': study('proposer: { type: command, command: "true" }\n') });
  try {
    const store = new MemoryStore();
    await assert.rejects(startRun(join(harnessRepo, 'study.yaml'), { overrides: {}, unsafeNoSandbox: true, reporter: new MemoryReporter(), store }),
      (e: unknown) => e instanceof UsageError && /^this run needs a store that keeps traces \(\(memory\) keeps none\): a harness study records a trace of every task$/.test(e.message));
    await assert.rejects(startRun(join(repo, 'study.yaml'), opts(new FakeKind(), { store })),
      (e: unknown) => e instanceof UsageError && /keeps none\): the command proposer's proposals are recorded as traces$/.test(e.message));
    assert.deepEqual(store.listRuns(), [], 'nothing recorded');
    // a proposer of the caller's own that records a span: the run stops at its first proposal, saying why
    const proposer: Proposer = {
      name: 'recording',
      propose: async (ctx) => {
        ctx.services!.record({ kind: 'tool', name: 'look', status: 'ok', started_at: Date.now(), ended_at: Date.now(), input: {}, output: {} });
        return { hypothesis: 'X = 2', edits: [{ path: 'params.py', content: ctx.files['params.py']!.replace(/^X = .*/m, 'X = 2') }] };
      },
    };
    const plain = makeRepo({ 'params.py': PARAMS_PY, 'study.yaml': study() });
    try {
      await assert.rejects(startRun(join(plain, 'study.yaml'), opts(new FakeKind(), { store, proposer })),
        /the recording proposer records its proposals as traces, and this run's store keeps none: run it on a store file/);
      const run = store.latestRun()!;
      assert.equal(run.status, 'stopped');
      assert.deepEqual(store.listExperiments(run.id).map((e) => e.seq), [0], 'the baseline only: no experiment was recorded');
    } finally {
      cleanup(plain);
    }
  } finally {
    cleanup(harnessRepo);
    cleanup(repo);
  }
});

test('a round screens each candidate while the next is proposed; proposals see only what was measured before their round', async () => {
  const repo = makeRepo({ 'params.py': PARAMS_PY, 'study.yaml': study('parallel: 4\n') });
  try {
    const kind = new FakeKind({ noise: 0.05, delayMs: 30 });
    let waitedOut = 0;
    const sawRoundMates: string[] = [];
    const xs = [0.5, 1, 1.5, 2, 2.5, 2.8, 3.2, 3.5];
    const proposer: Proposer = {
      name: 'scripted',
      propose: async (ctx) => {
        const seq = ctx.seq!;
        for (const e of ctx.ledger.filter((x) => x.decision === 'pending' && x.values?.length)) sawRoundMates.push(`#${ctx.seq} saw #${e.seq}'s ${e.values!.length} value(s)`);
        // the last candidate of a round waits (5 s at most) until a round-mate's screen has started
        if (ctx.round?.length === 3) {
          const mates = [seq - 1, seq - 2, seq - 3];
          const deadline = Date.now() + 5000;
          while (!kind.started.some((s) => mates.includes(s)) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
          if (!kind.started.some((s) => mates.includes(s))) waitedOut++;
          // then until the screens running are in: their values are stored, and must still not be shown
          const until = Date.now() + 5000;
          while (kind.running > 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 10));
        }
        const x = xs[seq - 1];
        return x === undefined ? null : { hypothesis: `X = ${x}`, edits: [{ path: 'params.py', content: ctx.files['params.py']!.replace(/^X = .*/m, `X = ${x}`) }] };
      },
    };
    const res = await startRun(join(repo, 'study.yaml'), opts(kind, { proposer }));
    assert.equal(res.status, 'finished', res.stopReason ?? '');
    assert.equal(waitedOut, 0, 'the last candidate of each round was proposed after a round-mate\'s screen had started');
    assert.deepEqual(sawRoundMates, [], 'a proposal is not shown its round-mates\' screens');
    const all = summary(res.dbPath, res.runId).filter((e) => e.seq > 0);
    assert.deepEqual(all.map((e) => e.round), [1, 1, 1, 1, 2, 2, 2, 2]);
    const audit = await auditRun(openDb(res.dbPath), res.runId, { rescore: false });
    assert.ok(audit.ok, audit.problems.join('\n'));
  } finally {
    cleanup(repo);
  }
});

test('acceptance.seed_offset moves every evaluation to seeds the default run never used, and audit passes', async () => {
  const seeds: number[][] = [];
  for (const offset of [0, 500000]) {
    const repo = makeRepo({ 'params.py': PARAMS_PY, 'study.yaml': study().replace('confirm_repeats: 1 }', `confirm_repeats: 1, seed_offset: ${offset} }`).replace('experiments: 8', 'experiments: 3') });
    try {
      const res = await startRun(join(repo, 'study.yaml'), opts(new FakeKind({ noise: 0.3 })));
      const evals = summary(res.dbPath, res.runId).flatMap((e) => e.evals.map((v) => v[1] as number));
      seeds.push(evals);
      const audit = await auditRun(openDb(res.dbPath), res.runId, { rescore: false });
      assert.ok(audit.ok, audit.problems.join('\n'));
    } finally {
      cleanup(repo);
    }
  }
  assert.ok(seeds[0]!.length >= 4 && seeds[0]!.every((s) => s < 500000));
  assert.ok(seeds[1]!.every((s) => s > 500000));
  assert.equal(seeds[1]![0], seeds[0]![0]! + 500000);
});

test('a pure-noise study with parallel 4 keeps at most 5% of its candidates (α / k holds)', async () => {
  const repo = makeRepo({ 'params.py': PARAMS_PY, 'study.yaml': study('parallel: 4\nproposer: { type: random }\n').replace('experiments: 8', 'experiments: 80') });
  try {
    const res = await startRun(join(repo, 'study.yaml'), opts(new FakeKind({ pureNoise: true, noise: 1 })));
    const all = summary(res.dbPath, res.runId);
    const exps = all.filter((e) => e.seq > 0 && e.decision !== 'rejected');
    const kept = exps.filter((e) => e.decision === 'kept').length;
    console.log(`  pure noise, parallel 4: kept ${kept} of ${exps.length} candidates`);
    assert.ok(exps.length >= 70);
    assert.ok(kept <= 0.05 * exps.length, `kept ${kept} of ${exps.length}`);
    // a round where no screen passed runs its screens and nothing else: no fresh repeat of the incumbent
    const rounds = [...new Set(exps.map((e) => e.round!))];
    const quiet = rounds.filter((r) => exps.filter((e) => e.round === r).every((e) => e.evals.length === 1));
    assert.ok(quiet.length >= 5, `${quiet.length} rounds without a passed screen`);
    const freshIn = new Set(all.flatMap((e) => e.evals.filter((v) => v[2] !== null && v[2] !== (e.round ?? e.seq)).map((v) => v[2] as number)));
    for (const r of quiet) assert.ok(!freshIn.has(r), `round ${r}: no screen passed, yet the incumbent was repeated`);
    for (const r of freshIn) assert.ok(!quiet.includes(r));
  } finally {
    cleanup(repo);
  }
});

test('GPU leases: N+1 trainer slots asked on N GPUs get N slots, and no GPU ever runs two evaluations', async () => {
  const env = { AUTOAGENT_FAKE_GPUS: 'GPU-aaaa=NVIDIA H200,GPU-bbbb=NVIDIA H200' };
  const s = StudySchema.parse({ name: 't', kind: 'trainer', editable: ['params.py'], metric: { name: 'loss', direction: 'minimize' }, trainer: { gpus: 'auto', device: 'cuda' } });
  const plan = planSlots(s, 3, env);
  assert.equal(plan.size, 2);
  assert.deepEqual(plan.leases.map((l) => [l.gpu!.uuid, l.hardware]), [['GPU-aaaa', 'NVIDIA H200'], ['GPU-bbbb', 'NVIDIA H200']]);
  assert.match(plan.note!, /parallel 3 asked, 2 GPU\(s\) leased/);
  // without GPUs: capped by cpus_per_slot
  const cpu = planSlots(StudySchema.parse({ ...s, trainer: { cpus_per_slot: 2 } }), 8, {}, 4);
  assert.equal(cpu.size, 2);
  assert.deepEqual(cpu.leases.map((l) => l.cpus), [2, 2]);
  // without cpus_per_slot: the CPUs shared evenly; one slot keeps the trainer's own thread default
  const even = planSlots(StudySchema.parse({ ...s, trainer: {} }), 3, {}, 8);
  assert.deepEqual([even.size, even.leases.map((l) => l.cpus)], [3, [2, 2, 2]]);
  const one = planSlots(StudySchema.parse({ ...s, trainer: {} }), 1, {}, 8);
  assert.deepEqual([one.size, one.leases[0]!.cpus, one.leases[0]!.hardware], [1, undefined, 'cpu']);
  // a run: every evaluation holds one of the two GPUs, never one that is busy
  const old = process.env.AUTOAGENT_FAKE_GPUS;
  process.env.AUTOAGENT_FAKE_GPUS = env.AUTOAGENT_FAKE_GPUS;
  const repo = makeRepo({ 'params.py': PARAMS_PY, 'study.yaml': study('parallel: 3\ntrainer: { gpus: auto, device: cuda }\n', 'trainer') });
  try {
    const kind = new FakeKind({ noise: 0.1, delayMs: 15 });
    const res = await startRun(join(repo, 'study.yaml'), opts(kind));
    assert.equal(res.status, 'finished', res.stopReason ?? '');
    assert.equal(kind.gpuOverlap, 0, 'two evaluations on one GPU');
    assert.equal(kind.maxRunning, 2);
    assert.deepEqual([...new Set(kind.leases)].sort(), ['GPU-aaaa', 'GPU-bbbb']);
    const db = openDb(res.dbPath);
    const hw = [...evaluationsOfRun(db, res.runId).values()].flat().map((v) => v.hardware);
    assert.ok(hw.every((h) => h === 'NVIDIA H200'), 'each evaluation records its hardware class');
    db.close();
  } finally {
    if (old === undefined) delete process.env.AUTOAGENT_FAKE_GPUS;
    else process.env.AUTOAGENT_FAKE_GPUS = old;
    cleanup(repo);
  }
});

test('kill -9 at 10 seeded moments of a --parallel 3 run, resumed each time: it completes with every experiment once, every repeat once, and audit passes', async () => {
  // each evaluation sleeps ~0.4 s, so kills land in screens, confirmations, incumbent repeats and keeps
  const yaml = studyYaml().replace(/^command: .*$/m, 'command: python3 -c "import time; time.sleep(0.4)"');
  const repo = makeRepo({ 'params.py': PARAMS_PY, 'evaluate.py': EVALUATE_PY, 'study.yaml': yaml });
  const dbPath = join(repo, '.autoagent', 'autoagent.db');
  let rng = 7;
  const next = () => (rng = (rng * 48271) % 2147483647) / 2147483647;
  const KILLS = 10;
  try {
    let runId: string | null = null;
    let kills = 0;
    let inFlight = 0;
    let finished = false;
    for (let attempt = 0; attempt < KILLS + 4 && !finished; attempt++) {
      const args = runId ? ['resume', runId, '--parallel', '3'] : ['run', 'study.yaml', '--experiments', '18', '--parallel', '3'];
      const child = spawn(process.execPath, [BIN, ...args], { cwd: repo, stdio: ['ignore', 'ignore', 'pipe'] });
      let err = '';
      child.stderr!.on('data', (b: Buffer) => (err += b.toString()));
      const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
      // the first KILLS starts are killed once they have recorded a new evaluation, 0–0.8 s later (inside
      // proposals, screens, confirmations, incumbent repeats, keeps); the last ones run to the end
      let code: number | null | undefined;
      void exited.then((c) => (code = c));
      if (attempt < KILLS) {
        const count = () => {
          if (!existsSync(dbPath)) return -1;
          const db = openDb(dbPath);
          try {
            return (db.prepare('SELECT count(*) AS n FROM evaluations').get() as { n: number }).n;
          } finally {
            db.close();
          }
        };
        const start = count();
        const deadline = Date.now() + 60_000;
        while (code === undefined && Date.now() < deadline && count() <= Math.max(start, 0)) await new Promise((r) => setTimeout(r, 50));
        await new Promise((r) => setTimeout(r, next() * 800));
        if (code === undefined) {
          child.kill('SIGKILL');
          kills++;
        }
      }
      await exited;
      if (!runId && existsSync(dbPath)) {
        const db = openDb(dbPath);
        runId = latestRun(db)?.id ?? null;
        db.close();
      }
      if (attempt < KILLS && code === null && runId) {
        const db = openDb(dbPath);
        inFlight += listExperiments(db, runId).some((e) => e.status === 'pending') ? 1 : 0;
        db.close();
      }
      if (code === 0) finished = true;
      else assert.equal(code, null, `a run ended by itself with exit ${code}: ${err.slice(-600)}`);
    }
    assert.ok(finished, `the run finished within ${KILLS + 4} starts`);
    console.log(`  ${kills} kills, ${inFlight} with an experiment in flight`);
    // (a start that finishes the run before its kill is not killed: the last ones may)
    assert.ok(kills >= KILLS - 2 && inFlight >= KILLS / 2, `killed ${kills} times, ${inFlight} in flight`);
    const db = openDb(dbPath);
    const run = getRun(db, runId!)!;
    const exps = listExperiments(db, run.id);
    assert.equal(run.status, 'finished');
    assert.deepEqual(exps.map((e) => e.seq), Array.from({ length: 19 }, (_, i) => i));
    for (const e of exps) {
      assert.equal(e.status, 'decided', `#${e.seq} decided`);
      const reps = evaluationsOf(db, e.id).map((v) => v.repeat);
      assert.deepEqual(reps, [...new Set(reps)].sort((a, b) => a - b), `#${e.seq}: no repeat recorded twice`);
    }
    const commits = sh(repo, 'git', ['rev-list', '--reverse', `${run.base_commit}..${run.branch}`]).split('\n').filter(Boolean);
    assert.deepEqual(commits, exps.filter((e) => e.decision === 'kept').map((e) => e.kept_commit));
    db.close();
    const audit = spawnSync(process.execPath, [BIN, 'audit', run.id], { cwd: repo, encoding: 'utf8' });
    assert.equal(audit.status, 0, audit.stdout + audit.stderr);
    assert.equal(sh(repo, 'git', ['worktree', 'list']).trim().split('\n').length, 1, 'no stale worktrees');
  } finally {
    cleanup(repo);
  }
});
