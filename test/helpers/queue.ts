/**
 * What queue tests share: a redis-server of their own on a free loopback port (AOF on, noeviction,
 * as BullMQ's production notes ask), `autoagent` processes with their output kept, and polling.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Redis } from 'ioredis';

const BIN = resolve(import.meta.dirname, '../../bin/autoagent.js');
const REDIS = '/usr/bin/redis-server';

export function freePort(): Promise<number> {
  return new Promise((ok, fail) => {
    const s = createServer();
    s.on('error', fail);
    s.listen(0, '127.0.0.1', () => {
      const p = (s.address() as { port: number }).port;
      s.close(() => ok(p));
    });
  });
}

/** Polls `check` every 50 ms until it holds; throws after `ms`. */
export async function until(what: string, check: () => boolean | Promise<boolean>, ms = 15_000): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out waiting for ${what}`);
}

export interface RedisServer {
  url: string;
  port: number;
  /** its data folder (the append-only file: every write it was sent) */
  dir: string;
  /** (re)starts the server on the same port and folder; resolves once it answers PING */
  start(): Promise<void>;
  /** sends `signal` (SIGTERM: Redis writes its AOF and exits); resolves when it has exited */
  stop(signal?: NodeJS.Signals): Promise<void>;
  flushall(): Promise<void>;
  /** kills it and removes its folder */
  close(): void;
}

export async function redisServer(): Promise<RedisServer> {
  const dir = mkdtempSync(join(tmpdir(), 'autoagent-redis-'));
  const port = await freePort();
  const url = `redis://127.0.0.1:${port}`;
  let child: ChildProcess | null = null;
  const s: RedisServer = {
    url, port, dir,
    async start() {
      child = spawn(REDIS, ['--port', String(port), '--bind', '127.0.0.1', '--appendonly', 'yes', '--maxmemory-policy', 'noeviction', '--save', '', '--dir', dir], { stdio: 'ignore' });
      await until('redis', async () => {
        const r = new Redis(url, { lazyConnect: true, retryStrategy: () => null, maxRetriesPerRequest: 0 });
        r.on('error', () => undefined);
        try {
          await r.connect();
          return (await r.ping()) === 'PONG';
        } catch {
          return false;
        } finally {
          r.disconnect();
        }
      });
    },
    async stop(signal = 'SIGKILL') {
      const c = child;
      if (!c || c.exitCode !== null || c.signalCode !== null) return;
      const down = new Promise((ok) => c.once('exit', ok));
      c.kill(signal);
      await down;
    },
    async flushall() {
      const r = new Redis(url);
      await r.flushall();
      r.disconnect();
    },
    close() {
      child?.kill('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    },
  };
  await s.start();
  return s;
}

export interface Proc { child: ChildProcess; log: () => string; exited: Promise<number | null> }

const children: ChildProcess[] = [];

/** `autoagent ARGS` in `cwd`, its stdout and stderr kept together. */
export function startProc(args: string[], cwd: string, env: Record<string, string | undefined> = {}): Proc {
  const child = spawn(process.execPath, [BIN, ...args], { cwd, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
  children.push(child);
  let text = '';
  child.stdout!.on('data', (b: Buffer) => (text += b.toString()));
  child.stderr!.on('data', (b: Buffer) => (text += b.toString()));
  const exited = new Promise<number | null>((ok) => child.on('exit', (code) => ok(code)));
  return { child, log: () => text, exited };
}

/** SIGKILLs every process startProc started that still runs (an `after` hook). */
export function killProcs(): void {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
}

/** `autoagent worker --queue URL` with short locks, once it says it started. */
export async function startWorker(url: string, cwd: string, extra: string[] = [], env: Record<string, string | undefined> = {}): Promise<Proc> {
  const w = startProc(['worker', '--queue', url, '--lock-ms', '3000', '--stalled-ms', '1000', ...extra], cwd, env);
  await until('the worker to start', () => /slot\(s\)/.test(w.log()), 90_000);
  return w;
}

/** SIGTERM (it drains), then waits for it to exit. */
export async function stopWorker(w: Proc): Promise<void> {
  if (w.child.exitCode === null && w.child.signalCode === null) w.child.kill('SIGTERM');
  await w.exited;
}
