/**
 * kind: command — run the study's command for the candidate in its worktree (sandbox 1),
 * then the locked evaluator (sandbox 2), which reads the candidate's outputs read-only and
 * prints `METRIC name=value`. With `metric.from: output` the number comes from the command's
 * own output instead, and the run is marked self-reported.
 */
import { join } from 'node:path';
import { runSandboxed } from '../../sandbox/index.ts';
import type { EvalOutcome, EvalRequest, KindAdapter, PrepareResult } from './types.ts';
import { candidateMounts, evaluatorEnv, evaluatorMounts, lastLine, limitReason, parseMetricLines, parsePattern, sandboxEnv, tail, unseenHint } from './common.ts';
import type { Study } from '../study.ts';

export function commandCwd(req: EvalRequest): string {
  return join(req.worktree, req.paths.studyDir);
}

/** The study's folder in the evaluator's view: the evaluator's working directory. */
export function evaluatorCwd(req: EvalRequest, view: string): string {
  return join(view, req.paths.studyDir);
}

export class CommandKind implements KindAdapter {
  readonly kind = 'command' as const;
  readonly selfReported: boolean;
  constructor(study: Study) {
    this.selfReported = study.metric.from === 'output';
  }

  async prepare(): Promise<PrepareResult> {
    return { lockedExternal: [], environment: {} };
  }

  async evaluate(req: EvalRequest): Promise<EvalOutcome> {
    const { study } = req;
    const env = sandboxEnv(req, { AUTOAGENT_BUDGET_SECONDS: String(study.budget.experiment_seconds) });
    const cmd = await runSandboxed({
      command: study.command!,
      cwd: commandCwd(req),
      ...candidateMounts(req),
      env,
      timeoutMs: study.budget.experiment_seconds * 1000,
      memoryMB: req.policy.memoryMB,
      maxProcesses: req.policy.maxProcesses,
      unsafeNoSandbox: req.policy.unsafeNoSandbox,
      onOutput: req.onOutput,
      signal: req.signal,
    });
    const base: EvalOutcome = {
      status: 'ok', metric: null, reason: null, commandMs: cmd.durationMs, evaluatorMs: 0,
      exitCode: cmd.exitCode, stdoutTail: tail(cmd.stdout), stderrTail: tail(cmd.stderr), telemetry: null,
    };
    const limit = limitReason(cmd, req);
    if (limit) return { ...base, status: 'crash', reason: limit };
    if (cmd.timedOut) {
      return { ...base, status: 'timeout', reason: `command ran past ${study.budget.experiment_seconds} s and was killed` };
    }
    if (cmd.exitCode !== 0) {
      const why = cmd.signal ? `killed by ${cmd.signal}` : `exited with code ${cmd.exitCode}`;
      return { ...base, status: 'crash', reason: `command ${why}: ${lastLine(cmd.stderr || cmd.stdout)}` };
    }
    let metric: number | null = null;
    let telemetry: Record<string, unknown> | null = null;
    if (study.metric.from === 'output') {
      const p = parsePattern(cmd.stdout + '\n' + cmd.stderr, study.metric.pattern!);
      if (p.error) return { ...base, status: 'crash', reason: p.error };
      metric = p.value;
      if (metric === null) return { ...base, status: 'crash', reason: `command output has no match for metric.pattern /${study.metric.pattern}/` };
    }
    if (study.evaluate) {
      const view = await req.ws.evaluatorView();
      const ev = await runSandboxed({
        command: study.evaluate,
        cwd: evaluatorCwd(req, view),
        ...evaluatorMounts(req, view),
        env: evaluatorEnv(req, {}),
        timeoutMs: study.budget.evaluate_seconds * 1000,
        memoryMB: req.policy.memoryMB,
        maxProcesses: req.policy.maxProcesses,
        unsafeNoSandbox: req.policy.unsafeNoSandbox,
        signal: req.signal,
      });
      base.evaluatorMs = ev.durationMs;
      base.stdoutTail = tail(`${cmd.stdout}\n--- evaluator ---\n${ev.stdout}`);
      base.stderrTail = tail(`${cmd.stderr}\n--- evaluator ---\n${ev.stderr}`);
      if (ev.timedOut) return { ...base, status: 'crash', reason: `evaluator ran past ${study.budget.evaluate_seconds} s and was killed` };
      if (ev.exitCode !== 0) return { ...base, status: 'crash', reason: `evaluator exited with code ${ev.exitCode}: ${lastLine(ev.stderr || ev.stdout)}${unseenHint(req)}` };
      const parsed = parseMetricLines(ev.stdout, study.metric.name);
      telemetry = { metrics: parsed.all };
      if (study.metric.from === 'evaluator') {
        if (parsed.error) return { ...base, status: 'crash', telemetry, reason: parsed.error };
        if (parsed.value === null) return { ...base, status: 'crash', reason: `evaluator printed no \`METRIC ${study.metric.name}=<number>\` line` };
        metric = parsed.value;
      }
    }
    if (metric === null || !Number.isFinite(metric)) {
      return { ...base, status: 'crash', telemetry, reason: `metric ${study.metric.name} is not a finite number (${metric})` };
    }
    return { ...base, metric, telemetry };
  }
}
