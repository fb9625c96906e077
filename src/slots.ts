/**
 * Evaluation slots: how many evaluations of a run go at once (`parallel`), and what each slot
 * holds while it runs one — a GPU lease for trainer studies on a GPU machine (never two trainer
 * evaluations on one GPU), a share of the CPUs otherwise.
 *
 *   - parallel: N (study) or --parallel N (run, resume) asks for N slots.
 *   - Trainer studies with GPUs (`gpus: auto` or a list of UUIDs): one slot per GPU at most; slot i
 *     holds GPU i for every evaluation it runs (`CUDA_VISIBLE_DEVICES=<uuid>`, and the sandbox shows
 *     only that GPU's device node beside nvidiactl and nvidia-uvm).
 *   - Trainer studies without GPUs: at most ⌊cpus / cpus_per_slot⌋ slots, each told to use
 *     cpus_per_slot threads (OMP_NUM_THREADS and friends); without cpus_per_slot the CPUs are shared
 *     evenly among N slots, and one slot is left the trainer's own default (all of them).
 *   - Command and harness studies: N slots, uncapped (harness slots share one model-call limit,
 *     task-agent/providers/limit.ts).
 * Each evaluation records its slot and its hardware class (the GPU model, or `cpu`): noise is
 * pooled within one hardware class (src/acceptance.ts).
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import os from 'node:os';
import type { Study } from './study.ts';
import { UsageError } from '../base/errors.ts';

export interface Gpu {
  index: number;
  uuid: string;
  name: string;
}

export interface Lease {
  gpu?: Gpu & { devices: string[] };
  /** threads an evaluation in this slot should use (CPU trainer slots) */
  cpus?: number;
  /** the hardware class its evaluations are recorded under */
  hardware: string | null;
}

/**
 * The GPUs of this machine: `nvidia-smi --query-gpu=index,uuid,name`; none when it is missing.
 * AUTOAGENT_FAKE_GPUS (`uuid=name,uuid=name`) stands in for the discovery in tests.
 */
export function discoverGpus(env: NodeJS.ProcessEnv = process.env): Gpu[] {
  const fake = env.AUTOAGENT_FAKE_GPUS;
  if (fake !== undefined) {
    return fake.split(',').filter(Boolean).map((item, index) => {
      const [uuid, name] = item.split('=');
      return { index, uuid: uuid!, name: name ?? 'fake GPU' };
    });
  }
  const r = spawnSync('nvidia-smi', ['--query-gpu=index,uuid,name', '--format=csv,noheader'], { encoding: 'utf8', timeout: 30_000 });
  if (r.status !== 0 || !r.stdout) return [];
  return r.stdout.trim().split('\n').filter(Boolean).map((line) => {
    const [index, uuid, ...name] = line.split(',').map((x) => x.trim());
    return { index: Number(index), uuid: uuid!, name: name.join(', ') };
  });
}

/** The device nodes a process needs to use one GPU. */
export function gpuDevices(g: Gpu): string[] {
  return [`/dev/nvidia${g.index}`, '/dev/nvidiactl', '/dev/nvidia-uvm', '/dev/nvidia-uvm-tools'].filter((d) => existsSync(d));
}

export interface SlotPlan {
  size: number;
  leases: Lease[];
  /** a line for the run's output when the plan differs from what was asked */
  note: string | null;
}

/** How many slots a run gets and what each one holds. */
export function planSlots(study: Study, requested: number, env: NodeJS.ProcessEnv = process.env, cpus = os.availableParallelism?.() ?? os.cpus().length): SlotPlan {
  const n = Math.max(1, requested);
  if (study.kind !== 'trainer') return { size: n, leases: Array.from({ length: n }, () => ({ hardware: null })), note: null };
  const want = study.trainer?.gpus;
  const device = study.trainer?.device ?? 'auto';
  let gpus: Gpu[] = [];
  if (device !== 'cpu' && want !== undefined) {
    const found = discoverGpus(env);
    if (want === 'auto') gpus = found;
    else {
      gpus = want.map((uuid) => {
        const g = found.find((x) => x.uuid === uuid);
        if (!g) throw new UsageError(`trainer.gpus: no GPU with UUID ${uuid} on this machine (nvidia-smi -L lists ${found.length ? found.map((x) => x.uuid).join(', ') : 'none'})`);
        return g;
      });
    }
  }
  if (gpus.length > 0) {
    const size = Math.min(n, gpus.length);
    return {
      size,
      leases: gpus.slice(0, size).map((g) => ({ gpu: { ...g, devices: gpuDevices(g) }, hardware: g.name })),
      note: size < n ? `parallel ${n} asked, ${size} GPU(s) leased: ${size} slot(s), one GPU each` : null,
    };
  }
  // one slot keeps the whole machine (the trainer's own thread default); several share it evenly
  const asked = study.trainer?.cpus_per_slot;
  if (n === 1 && asked === undefined) return { size: 1, leases: [{ hardware: 'cpu' }], note: null };
  const per = Math.max(1, asked ?? Math.floor(cpus / n));
  const size = Math.max(1, Math.min(n, Math.floor(cpus / per)));
  return {
    size,
    leases: Array.from({ length: size }, () => ({ cpus: per, hardware: 'cpu' })),
    note: size < n ? `parallel ${n} asked, ${size} slot(s) of ${per} CPU(s) on ${cpus} CPU(s) (trainer.cpus_per_slot)` : null,
  };
}

/** At most `size` evaluations at once; slot i holds lease i while it runs one. FIFO when all are busy. */
export class SlotPool {
  readonly size: number;
  private readonly free: number[];
  private readonly waiting: Array<(slot: number) => void> = [];

  constructor(private readonly plan: SlotPlan) {
    this.size = plan.size;
    this.free = Array.from({ length: plan.size }, (_, i) => i);
  }

  lease(slot: number): Lease | undefined {
    return this.plan.leases[slot];
  }

  async run<T>(fn: (slot: number) => Promise<T>): Promise<T> {
    const slot = this.free.length > 0 ? this.free.shift()! : await new Promise<number>((resolve) => this.waiting.push(resolve));
    try {
      return await fn(slot);
    } finally {
      const next = this.waiting.shift();
      if (next) next(slot);
      else this.free.push(slot);
    }
  }
}
