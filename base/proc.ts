/**
 * The one process runner: a child in its own process group (detached: kill(-pid) reaches
 * everything it starts that stays in the group), stopped as a group at the deadline or on abort
 * (SIGTERM, then SIGKILL after a grace; or SIGKILL at once), and after it exits whatever it left
 * in the group goes too. Each of stdout and stderr keeps only its last `tailBytes` bytes. The
 * sandbox (bubblewrap runs) and the command proposer run their processes through it.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import type { Writable } from 'node:stream';
import { StringDecoder } from 'node:string_decoder';

export interface ProcSpec {
  file: string;
  args: string[];
  cwd: string;
  env?: NodeJS.ProcessEnv;
  /** text written to stdin (then closed), or a writer that keeps stdin; without it stdin is /dev/null */
  stdin?: string | ((stdin: Writable) => void);
  /** the deadline: the group is stopped at it (result.timedOut) */
  timeoutMs: number;
  /** aborting stops the group like the deadline (result.aborted) */
  signal?: AbortSignal;
  /** bytes kept of each of stdout and stderr, the last ones (default 64 KiB) */
  tailBytes?: number;
  /** the output as text as it arrives (whole UTF-8 characters); a listener that throws is ignored */
  onOutput?: (stream: 'stdout' | 'stderr', text: string) => void;
  /** SIGTERM to SIGKILL, in ms; 0 (the default): SIGKILL at once */
  graceMs?: number;
  /**
   * Replaces the group kill at the deadline, on abort and at this process's exit (the sandbox
   * kills the process tree and its cgroup; no SIGTERM first, graceMs does not apply); the group
   * still gets SIGKILL once the leader exited.
   */
  kill?: (pid: number) => void;
  /** after the leader exited and its group was killed: wait (bounded) for what must be gone */
  settle?: () => Promise<void>;
}

export interface ProcResult {
  exitCode: number | null;
  signal: string | null;
  timedOut: boolean;
  aborted: boolean;
  stdout: string;
  stderr: string;
  /** output was dropped from the front of stdout or stderr */
  truncated: boolean;
  durationMs: number;
  /** spawning failed (ENOENT, EACCES, a cwd that does not exist) */
  error?: NodeJS.ErrnoException;
}

export interface Proc {
  /** undefined when spawning failed */
  readonly pid: number | undefined;
  /** the leader has exited */
  readonly exited: boolean;
  /** stop the run now, as the deadline does (without marking it timed out) */
  stop(): Promise<void>;
  readonly result: Promise<ProcResult>;
}

export const DEFAULT_TAIL_BYTES = 64 * 1024;

/** Whether process `pid` exists (one of another user counts: signalling it is refused, not unknown). */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** signal a process group; false when none is left */
export function signalGroup(pgid: number, sig: NodeJS.Signals | 0): boolean {
  try {
    process.kill(-pgid, sig);
    return true;
  } catch {
    return false;
  }
}

/** The last `max` bytes of a stream, never starting inside a UTF-8 sequence. */
export class Tail {
  private chunks: Buffer[] = [];
  private size = 0;
  dropped = false;
  constructor(private readonly max: number) {}
  push(b: Buffer): void {
    this.chunks.push(b);
    this.size += b.length;
    while (this.size > this.max && this.chunks.length) {
      this.dropped = true;
      const first = this.chunks[0]!;
      const excess = this.size - this.max;
      if (first.length <= excess) {
        this.chunks.shift();
        this.size -= first.length;
      } else {
        this.chunks[0] = first.subarray(excess);
        this.size -= excess;
      }
    }
  }
  toString(): string {
    let buf = Buffer.concat(this.chunks);
    if (this.dropped) {
      let i = 0;
      while (i < buf.length && i < 3 && (buf[i]! & 0xc0) === 0x80) i++;
      buf = buf.subarray(i);
    }
    return buf.toString('utf8');
  }
}

/** runs still going, killed if this process exits under them */
const live = new Set<() => void>();
let exitHookInstalled = false;

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * Starts `spec.file` in its own process group. Throws what spawn throws synchronously (a bad
 * argument); a spawn that fails later (ENOENT) ends with result.error.
 */
export function startProcess(spec: ProcSpec): Proc {
  const started = performance.now();
  const tailBytes = spec.tailBytes ?? DEFAULT_TAIL_BYTES;
  const tails = { stdout: new Tail(tailBytes), stderr: new Tail(tailBytes) };
  const grace = spec.graceMs ?? 0;
  const child: ChildProcess = spawn(spec.file, spec.args, {
    cwd: spec.cwd,
    env: spec.env,
    detached: true, // own session and process group: kill(-pid) reaches the whole group
    stdio: [spec.stdin === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
  });
  const pid = child.pid;
  let exited = false;
  let timedOut = false;
  let aborted = false;

  const killNow = () => {
    if (pid === undefined) return;
    if (spec.kill) spec.kill(pid);
    else signalGroup(pid, 'SIGKILL');
  };
  // SIGTERM the group, SIGKILL whatever is left after the grace; one promise however often asked
  let stopping: Promise<void> | null = null;
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      if (pid === undefined) return;
      if (grace > 0 && !spec.kill) {
        if (!signalGroup(pid, 'SIGTERM')) return;
        const until = Date.now() + grace;
        while (Date.now() < until && signalGroup(pid, 0)) await sleep(20);
      }
      killNow();
    })();
    return stopping;
  };
  if (pid !== undefined) {
    live.add(killNow);
    if (!exitHookInstalled) {
      exitHookInstalled = true;
      process.on('exit', () => {
        for (const k of live) k();
      });
    }
  }

  const timer = setTimeout(() => {
    timedOut = true;
    void stop();
  }, Math.min(spec.timeoutMs, 2 ** 31 - 1));
  const onAbort = () => {
    aborted = true;
    void stop();
  };
  // an abort that came before: once startProcess has returned, so a kill hook sees what its caller set up
  if (spec.signal?.aborted) queueMicrotask(onAbort);
  else spec.signal?.addEventListener('abort', onAbort, { once: true });

  const closed: Array<Promise<void>> = [];
  for (const name of ['stdout', 'stderr'] as const) {
    const stream = child[name]!;
    const decoder = new StringDecoder('utf8');
    const emit = (text: string) => {
      if (!text || !spec.onOutput) return;
      try {
        spec.onOutput(name, text);
      } catch {
        /* a failing listener must not break the run */
      }
    };
    stream.on('data', (b: Buffer) => {
      tails[name].push(b);
      if (spec.onOutput) emit(decoder.write(b));
    });
    closed.push(new Promise<void>((r) => {
      stream.on('close', () => {
        if (spec.onOutput) emit(decoder.end());
        r();
      });
      stream.on('error', () => r());
    }));
  }
  if (child.stdin) {
    child.stdin.on('error', () => {
      /* EPIPE: the command did not read its input */
    });
    if (typeof spec.stdin === 'function') spec.stdin(child.stdin);
    else child.stdin.end(spec.stdin);
  }

  const result = (async (): Promise<ProcResult> => {
    const [exitCode, signal, error] = await new Promise<[number | null, string | null, NodeJS.ErrnoException | undefined]>((resolve) => {
      child.on('error', (e) => resolve([null, null, e]));
      child.on('exit', (code, sig) => resolve([code, sig, undefined]));
    });
    exited = true;
    clearTimeout(timer);
    spec.signal?.removeEventListener('abort', onAbort);
    const durationMs = Math.round(performance.now() - started);
    if (pid !== undefined) {
      // what the command left behind in its group (background jobs) goes with it
      if (stopping) await stopping;
      if (grace > 0 && !spec.kill) await stop();
      else signalGroup(pid, 'SIGKILL');
      await spec.settle?.();
      live.delete(killNow);
    }
    // the pipes close once every holder is dead; do not wait for ever on one that escaped the group
    let wait: NodeJS.Timeout | undefined;
    await Promise.race([Promise.all(closed), new Promise<void>((r) => (wait = setTimeout(r, 1000)))]);
    clearTimeout(wait);
    child.stdout?.destroy();
    child.stderr?.destroy();
    return {
      exitCode, signal, timedOut, aborted, durationMs,
      stdout: tails.stdout.toString(), stderr: tails.stderr.toString(),
      truncated: tails.stdout.dropped || tails.stderr.dropped,
      ...(error ? { error } : {}),
    };
  })();

  return {
    pid,
    get exited() {
      return exited;
    },
    stop,
    result,
  };
}

/** startProcess, awaited */
export function runProcess(spec: ProcSpec): Promise<ProcResult> {
  return startProcess(spec).result;
}
