/**
 * An in-process kind for fast loop tests: it reads the candidate's params.py (X, N) from the tree
 * the loop wrote out, returns (X − 3)² + (N − 5)² plus seeded noise, after an optional delay; and it
 * records what the loop asked of it (how many evaluations at once, which slot lease each held).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { EvalOutcome, EvalRequest, KindAdapter } from '../../src/kinds/types.ts';

export interface FakeKindOptions {
  /** sd of the Gaussian noise added to the metric (seeded by the evaluation's seed) */
  noise?: number;
  /** milliseconds each evaluation takes (a function of the seed for jitter) */
  delayMs?: number | ((seed: number) => number);
  /** ignore the params: the metric is pure noise around 0 */
  pureNoise?: boolean;
}

function gaussian(seed: number): number {
  let a = (seed * 2654435761) >>> 0;
  const r = () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  r();
  return Math.sqrt(-2 * Math.log(Math.max(1e-12, r()))) * Math.cos(2 * Math.PI * r());
}

export class FakeKind implements KindAdapter {
  readonly kind = 'command' as const;
  readonly selfReported = false;
  running = 0;
  maxRunning = 0;
  evaluations = 0;
  /** GPU uuid → evaluations on it right now (a lease must never be shared) */
  readonly onGpu = new Map<string, number>();
  gpuOverlap = 0;
  readonly leases: string[] = [];
  /** the experiment seq of each evaluation, in the order they started */
  readonly started: number[] = [];

  constructor(private readonly o: FakeKindOptions = {}) {}

  async prepare() {
    return { lockedExternal: [], environment: {} };
  }

  async evaluate(req: EvalRequest): Promise<EvalOutcome> {
    this.running++;
    this.evaluations++;
    this.started.push(req.run.seq);
    this.maxRunning = Math.max(this.maxRunning, this.running);
    const uuid = req.lease?.gpu?.uuid;
    if (uuid) {
      this.leases.push(uuid);
      const n = (this.onGpu.get(uuid) ?? 0) + 1;
      this.onGpu.set(uuid, n);
      if (n > 1) this.gpuOverlap++;
    }
    try {
      const d = typeof this.o.delayMs === 'function' ? this.o.delayMs(req.seed) : this.o.delayMs ?? 0;
      if (d > 0) {
        await new Promise<void>((resolve, reject) => {
          const t = setTimeout(resolve, d);
          req.signal?.addEventListener('abort', () => { clearTimeout(t); reject(new Error('aborted')); }, { once: true });
        });
      }
      const src = readFileSync(join(req.worktree, req.paths.studyDir, 'params.py'), 'utf8');
      const x = Number(/^X = (\S+)/m.exec(src)?.[1] ?? 0);
      const n = Number(/^N = (\S+)/m.exec(src)?.[1] ?? 0);
      const base = this.o.pureNoise ? 0 : (x - 3) ** 2 + (n - 5) ** 2;
      const metric = base + (this.o.noise ?? 0) * gaussian(req.seed);
      return { status: 'ok', metric, reason: null, commandMs: d, evaluatorMs: 0, exitCode: 0, stdoutTail: '', stderrTail: '', telemetry: null };
    } finally {
      this.running--;
      if (uuid) this.onGpu.set(uuid, (this.onGpu.get(uuid) ?? 1) - 1);
    }
  }
}
