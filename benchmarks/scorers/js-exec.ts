/**
 * `js-exec`: the HumanEval-X (CodeGeeX) rule from the data README:
 * "The program is the string `prompt + completion + "\n" + test`. It is written to `test.js` in a
 * fresh directory and run with `node test.js` under a wall-clock timeout. The upstream shell wrapper
 * defaults to 5 s. A sample passes when node writes nothing to stderr and nothing to stdout."
 * We also require exit code 0 (the README: "a stricter rule that gave the same result on every
 * canonical solution here").
 *
 * - `prompt` is `task.input.prompt`; `test` is the answer key (`{ test }` or the test text itself).
 * - The completion is the agent's output, with one surrounding Markdown fence removed when the whole
 *   output is fenced (```` ```js\n...\n``` ````; see stripFence). Nothing else is rewritten: an
 *   output that repeats the prompt's opening line does not continue the prompt and fails.
 * - It runs under the bubblewrap sandbox (runSandboxed): no network, read-only system, only the
 *   fresh temp folder writable, the whole process tree killed at the deadline `ctx.timeoutMs`
 *   (5 s when 0). `ctx.unsafeNoSandbox` runs it as a plain process group instead.
 * - No npm packages are available (JavaScript/162 needs `js-md5` and fails, as upstream without it).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { UserError } from '../../base/errors.ts';
import { runSandboxed, SandboxUnavailableError } from '../../sandbox/index.ts';
import type { Scorer, Task } from '../types.ts';
import { fail, ok, quote } from './util.ts';

export const DEFAULT_JS_TIMEOUT_MS = 5000;

/** The inside of a Markdown code fence that surrounds the whole output; otherwise the output as is. */
export function stripFence(output: string): string {
  const m = /^\s*```[^\n`]*\n([\s\S]*?)\n?```\s*$/.exec(output);
  return m ? m[1]! : output;
}

export function jsProgram(prompt: string, completion: string, test: string): string {
  return prompt + completion + '\n' + test;
}

function shQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

function testText(expected: unknown): string | null {
  if (typeof expected === 'string') return expected;
  if (expected && typeof expected === 'object' && typeof (expected as { test?: unknown }).test === 'string') return (expected as { test: string }).test;
  return null;
}

/** Where line `line` of test.js lies: in the prompt, the completion or the test. */
function whereLine(line: number, prompt: string, completion: string): string {
  const p = prompt.split('\n').length - 1;
  const c = completion.split('\n').length;
  if (line <= p) return `test.js:${line}, in the prompt`;
  if (line <= p + c) return `test.js:${line}, completion line ${line - p}`;
  return `test.js:${line}, in the test`;
}

function summarize(stderr: string, prompt: string, completion: string): string {
  const lines = stderr.split('\n').map((l) => l.trimEnd()).filter((l) => l.trim() !== '');
  const asserts = lines.filter((l) => l.startsWith('Assertion failed')).length;
  const error = lines.find((l) => /^(?:[A-Za-z]*Error|Uncaught)\b/.test(l.trim()));
  const loc = /test\.js:(\d+)/.exec(stderr);
  const parts: string[] = [];
  if (asserts > 0) parts.push(`${asserts} × 'Assertion failed' on stderr`);
  if (error) parts.push(error.trim() + (loc ? ` (${whereLine(Number(loc[1]), prompt, completion)})` : ''));
  else if (asserts === 0 && lines.length) parts.push(`stderr: ${lines[0]!.trim()}`);
  return parts.join('; ');
}

export function jsExecScorer(): Scorer {
  return {
    type: 'js-exec',
    async score(task: Task, expected, output, ctx) {
      const prompt = task.input.prompt;
      if (typeof prompt !== 'string') return fail(`task ${task.id} has no string input.prompt to continue`);
      const test = testText(expected);
      if (test === null) return fail(`the answer key of task ${task.id} has no test (expected { test: string })`);
      const completion = stripFence(output);
      const timeoutMs = ctx.timeoutMs > 0 ? ctx.timeoutMs : DEFAULT_JS_TIMEOUT_MS;
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'autoagent-js-exec-'));
      try {
        fs.writeFileSync(path.join(dir, 'test.js'), jsProgram(prompt, completion, test));
        let r;
        try {
          r = await runSandboxed({
            command: `exec ${shQuote(process.execPath)} test.js`,
            cwd: dir,
            writable: [dir],
            env: { PATH: '/usr/local/bin:/usr/bin:/bin', HOME: dir, TMPDIR: dir, LANG: 'C.UTF-8' },
            timeoutMs,
            maxProcesses: 128,
            maxOutputBytes: 64 * 1024,
            unsafeNoSandbox: ctx.unsafeNoSandbox,
          });
        } catch (e) {
          if (e instanceof SandboxUnavailableError) throw new UserError(`js-exec scorer: ${e.message}`);
          throw e;
        }
        const asserts = (test.match(/console\.assert\s*\(/g) ?? []).length;
        if (r.timedOut) {
          const detail = summarize(r.stderr, prompt, completion);
          return fail(`timed out after ${timeoutMs} ms (an endless loop or too slow)${detail ? `; ${detail}` : ''}`);
        }
        if (r.exitCode === 0 && r.stdout === '' && r.stderr === '') {
          return ok(`passed: exit 0, nothing on stdout or stderr (${asserts} console.assert calls, ${r.durationMs} ms)`);
        }
        const parts: string[] = [];
        const status = r.exitCode !== null ? `exit ${r.exitCode}` : `killed by ${r.signal}`;
        const detail = summarize(r.stderr, prompt, completion);
        parts.push(detail ? `${status}: ${detail}` : status);
        if (/Assertion failed/.test(r.stderr)) parts.push(`the test has ${asserts} console.assert calls`);
        if (r.stdout !== '') parts.push(`wrote to stdout (any output fails): ${quote(r.stdout.trim().split('\n')[0]!, 80)}`);
        return fail(`failed: ${parts.join('; ')}`);
      } finally {
        fs.rmSync(dir, { recursive: true, force: true });
      }
    },
  };
}
