/**
 * A trace store of realistic size for bench/search.ts: `traces` traces of `spansPerTrace` spans each, their text
 * taken from GSM8K questions and worked answers (/work/shared/data/gsm8k, or AUTOAGENT_DATA), written with batched
 * inserts in one transaction (the rows and the index the store's own writes make, without their JSON work).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { openDb, type DB } from '../traces/index.ts';

export const RARE = 'zebracornium';

function gsm8kTexts(): string[] {
  const root = process.env.AUTOAGENT_DATA ?? '/work/shared/data';
  const lines = readFileSync(join(root, 'gsm8k', 'train.jsonl'), 'utf8').split('\n').filter(Boolean);
  return lines.map((l) => JSON.parse(l) as { question: string; answer: string }).flatMap((r) => [r.question, r.answer.replace(/<<[^>]*>>/g, '')]);
}

/** Writes the store at `path` (a new file); returns it open. One rare word sits in one old span and one old answer. */
export function buildStore(path: string, traces: number, spansPerTrace: number): DB {
  const db = openDb(path);
  // a build, not a ledger: no journal, a large page cache (WAL again afterwards, as the store runs)
  db.pragma('journal_mode = DELETE');
  db.pragma('journal_mode = OFF');
  db.pragma('synchronous = OFF');
  db.pragma('cache_size = -524288');
  const texts = gsm8kTexts();
  const insTrace = db.prepare(
    `INSERT INTO traces (seq, id, role, run_id, experiment_seq, group_id, task_id, repeat, benchmark, split, harness, status, score, pass, output, error,
       started_at, ended_at, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, cost_usd, finalized)
     VALUES (?, ?, 'task', ?, ?, ?, ?, 0, 'gsm8k', 'val', 'h', ?, ?, ?, ?, NULL, 0, 1, 0, 0, 0, 0, 0, 1)`,
  );
  const insSpan = db.prepare(
    `INSERT INTO spans (seq, id, trace_id, parent_id, kind, name, status, started_at, ended_at, input, output, error,
       input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, cost_usd, attributes)
     VALUES (?, ?, ?, NULL, ?, ?, 'ok', 0, 1, '{}', '{}', NULL, 0, 0, 0, 0, 0, '{}')`,
  );
  const insFts = db.prepare('INSERT INTO trace_fts (rowid, kind, name, body, error) VALUES (?, ?, ?, ?, ?)');
  let seq = 0;
  let k = 0;
  db.transaction(() => {
    for (let t = 1; t <= traces; t++) {
      const id = `tr${t.toString(36).padStart(6, '0')}`;
      // 50 experiments of a run, then the next run
      const run = `run-${Math.floor((t - 1) / 5000)}`;
      const exp = Math.floor((t - 1) / 100) % 50;
      const task = `gsm8k/${(t % 1319).toString().padStart(4, '0')}`;
      const answer = texts[(2 * t + 1) % texts.length]!.split('\n').pop()!;
      const score = t % 3 === 0 ? 0 : 1;
      insTrace.run(t, id, run, exp, `${run}#${exp}`, task, 'ok', score, score, t === 7 ? `${answer} ${RARE}` : answer);
      insFts.run(-t, 'trace', task, t === 7 ? `${answer} ${RARE}` : answer, '');
      for (let s = 0; s < spansPerTrace; s++) {
        seq++;
        const kind = s % 2 === 0 ? 'model' : 'tool';
        const name = kind === 'model' ? 'claude-sonnet-4' : 'calc';
        let body = texts[k++ % texts.length]!;
        if (seq === 1234) body += ` ${RARE}`;
        insSpan.run(seq, `s${s}`, id, kind, name);
        insFts.run(seq, kind, name, body, '');
      }
    }
  })();
  db.exec("INSERT INTO trace_fts (trace_fts) VALUES ('optimize')");
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = NORMAL');
  return db;
}
