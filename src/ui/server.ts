/**
 * `autoagent ui`: a local web app on the store. Hono on Node's HTTP server; the client is one
 * bundled script (src/ui/client/, built by src/ui/build.ts). Reads go through one read-only SQLite
 * connection; the only writes (a run's label, tags, notes) open the store writable for the
 * request. Live updates: the server polls SQLite's `data_version` (it changes when any other
 * connection commits) and pushes server-sent events to the pages that watch.
 *
 * Security: bound to 127.0.0.1 by default, where requests must name a loopback Host (no DNS
 * rebinding); bound to any other address, every /api request needs the token (header
 * `Authorization: Bearer T`, `X-Autoagent-Token: T`, or `?token=T`). Static files are a fixed
 * table of names, never paths taken from the URL.
 */
import { createAdaptorServer } from '@hono/node-server';
import { Hono, type Context } from 'hono';
import { streamSSE, type SSEStreamingApi } from 'hono/streaming';
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { Server } from 'node:http';
import { isIP } from 'node:net';
import { resolve } from 'node:path';
import { openDb, openDbReadOnly, dataVersion, type DB } from '../../traces/index.ts';
import { UsageError, UserError } from '../../base/errors.ts';
import {
  runsList, runDetail, experimentDetail, traceDetail, traceSearch, knobView, runCsv, runState, storeState, parseAnnotations, annotate,
} from './queries.ts';
import { ensureBundle } from './build.ts';

export const DEFAULT_PORT = 4873;
export const DEFAULT_HOST = '127.0.0.1';

export interface UiOptions {
  dbPath: string;
  host?: string;
  port?: number;
  /** the token required off loopback (default: random); ignored on loopback unless `requireToken` */
  token?: string;
  /** require the token even on loopback (tests) */
  requireToken?: boolean;
  /** how often the store is polled for changes, ms (default 300) */
  pollMs?: number;
}

export interface UiServer {
  /** the address to open, with `?token=` when one is required */
  url: string;
  host: string;
  port: number;
  token: string | null;
  /** event streams open now */
  streams(): number;
  close(): Promise<void>;
}

/** 127.0.0.0/8, ::1, localhost */
export function isLoopback(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase();
  if (h === 'localhost' || h === '::1' || h === '0:0:0:0:0:0:0:1') return true;
  if (isIP(h) === 4) return h.startsWith('127.');
  if (h.startsWith('::ffff:')) return h.slice(7).startsWith('127.');
  return false;
}

/** Opens the store read-only, after the checks `openDb` makes (traces/db.ts openDbReadOnly). */
export const openReadOnly = openDbReadOnly;

const INDEX_HTML = `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>autoagent</title>
</head>
<body>
<div id="app"><p style="font-family:sans-serif;padding:2em">loading…</p></div>
<script src="/app.js"></script>
</body>
</html>
`;

const CSP = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

function sameToken(given: string | undefined | null, token: string): boolean {
  if (!given) return false;
  const a = Buffer.from(given);
  const b = Buffer.from(token);
  return a.length === b.length && timingSafeEqual(a, b);
}

function errorResponse(c: Context, e: unknown): Response {
  if (e instanceof UsageError) {
    const status = /^no run |has no experiment/.test(e.message) ? 404 : 400;
    return c.json({ error: e.message }, status);
  }
  if (e instanceof UserError) return c.json({ error: e.message }, 400);
  return c.json({ error: `internal error: ${(e as Error)?.message ?? String(e)}` }, 500);
}

/** Subscribers to store changes: each is called after every poll that saw a commit (and every few seconds anyway, for runs whose process died). */
class Hub {
  private subs = new Set<() => Promise<void> | void>();
  private timer: NodeJS.Timeout;
  private version = -1;
  private ticks = 0;
  constructor(private readonly db: DB, pollMs: number) {
    this.timer = setInterval(() => this.poll(), pollMs);
    this.timer.unref();
  }
  private poll(): void {
    let v: number;
    try {
      v = dataVersion(this.db);
    } catch {
      return;
    }
    this.ticks++;
    if (v === this.version && this.ticks % 10 !== 0) return;
    this.version = v;
    for (const s of this.subs) void Promise.resolve().then(s).catch(() => {});
  }
  subscribe(fn: () => Promise<void> | void): () => void {
    this.subs.add(fn);
    return () => this.subs.delete(fn);
  }
  close(): void {
    clearInterval(this.timer);
    this.subs.clear();
  }
}

export async function startUiServer(opts: UiOptions): Promise<UiServer> {
  const host = opts.host ?? DEFAULT_HOST;
  const loopback = isLoopback(host);
  const token = !loopback || opts.requireToken ? (opts.token ?? randomBytes(24).toString('base64url')) : null;
  const dbPath = resolve(opts.dbPath);
  const db = openReadOnly(dbPath);
  const bundle = await ensureBundle();
  const hub = new Hub(db, opts.pollMs ?? 300);
  const streams = new Set<SSEStreamingApi>();
  let port = opts.port ?? DEFAULT_PORT;

  const app = new Hono();
  app.onError((e, c) => errorResponse(c, e));

  app.use('*', async (c, next) => {
    // on loopback without a token, only loopback names in Host: a page elsewhere that rebinds its DNS to 127.0.0.1 is refused
    if (!token) {
      const h = c.req.header('host') ?? '';
      const name = h.replace(/:\d+$/, '');
      if (!isLoopback(name)) return c.json({ error: `host ${h || '(none)'} refused: this dashboard answers only on loopback names` }, 403);
    }
    await next();
    c.header('X-Content-Type-Options', 'nosniff');
    c.header('Referrer-Policy', 'no-referrer');
    c.header('X-Frame-Options', 'DENY');
    c.header('Cache-Control', 'no-store');
  });

  app.use('/api/*', async (c, next) => {
    if (token) {
      const auth = c.req.header('authorization');
      const given = auth?.startsWith('Bearer ') ? auth.slice(7) : c.req.header('x-autoagent-token') ?? c.req.query('token');
      if (!sameToken(given, token)) return c.json({ error: 'a token is required: open the URL `autoagent ui` printed, or send Authorization: Bearer TOKEN' }, 401);
    }
    await next();
  });

  app.get('/', (c) => {
    c.header('Content-Security-Policy', CSP);
    return c.html(INDEX_HTML);
  });
  app.get('/favicon.ico', (c) => c.body(null, 204));
  app.get('/app.js', (c) => {
    c.header('Content-Type', 'text/javascript; charset=utf-8');
    return c.body(readFileSync(bundle));
  });

  app.get('/api/runs', (c) => c.json({ runs: runsList(db) }));
  app.get('/api/runs/:id', (c) => c.json(runDetail(db, c.req.param('id'))));
  app.get('/api/runs/:id/experiments/:seq', (c) => {
    const seq = c.req.param('seq');
    if (!/^\d+$/.test(seq)) return c.json({ error: `experiment '${seq}': expected a number` }, 400);
    return c.json(experimentDetail(db, c.req.param('id'), Number(seq)));
  });
  app.get('/api/runs/:id/knobs', (c) => c.json(knobView(db, c.req.param('id'))));
  app.get('/api/runs/:id/export.json', (c) => {
    const d = runDetail(db, c.req.param('id'));
    c.header('Content-Disposition', `attachment; filename="${d.run.id}.json"`);
    return c.json(d);
  });
  app.get('/api/runs/:id/export.csv', (c) => {
    const id = c.req.param('id');
    const text = runCsv(db, id);
    c.header('Content-Type', 'text/csv; charset=utf-8');
    c.header('Content-Disposition', `attachment; filename="${id.replace(/[^\w.-]/g, '_')}.csv"`);
    return c.body(text);
  });
  app.get('/api/traces/:id', (c) => {
    const t = traceDetail(db, c.req.param('id'));
    return t ? c.json(t) : c.json({ error: `no trace ${c.req.param('id')} in this store` }, 404);
  });
  app.get('/api/search', (c) => {
    const q = c.req.query('q') ?? '';
    const limit = Number(c.req.query('limit') ?? 50);
    const run = c.req.query('run') || undefined;
    return c.json({ query: q, hits: traceSearch(db, q, { runId: run, limit: Number.isFinite(limit) ? limit : 50 }) });
  });

  const patch = async (c: Context) => {
    // a JSON body only (a cross-site form cannot send one without a preflight we never answer), from this origin
    if (!(c.req.header('content-type') ?? '').toLowerCase().startsWith('application/json')) {
      return c.json({ error: 'send the changes as application/json' }, 415);
    }
    const origin = c.req.header('origin');
    if (origin && origin !== 'null') {
      let same = false;
      try {
        same = new URL(origin).host === c.req.header('host');
      } catch {
        same = false;
      }
      if (!same) return c.json({ error: `origin ${origin} refused` }, 403);
    }
    let body: unknown;
    try {
      body = await c.req.json();
    } catch {
      return c.json({ error: 'the body is not JSON' }, 400);
    }
    const changes = parseAnnotations(body);
    const w = openDb(dbPath);
    try {
      return c.json(annotate(w, c.req.param('id')!, changes));
    } finally {
      w.close();
    }
  };
  app.patch('/api/runs/:id', patch);
  app.put('/api/runs/:id', patch);

  /** an event stream: `event` with `state()` as data now and whenever it changes; a comment line every 15 s keeps proxies open */
  const sse = (c: Context, event: string, state: () => string) =>
    streamSSE(c, async (stream) => {
      streams.add(stream);
      let last = '';
      let n = 0;
      const send = async () => {
        if (stream.aborted || stream.closed) return;
        let s: string;
        try {
          s = state();
        } catch (e) {
          s = JSON.stringify({ error: (e as Error).message });
        }
        if (s === last) return;
        last = s;
        await stream.writeSSE({ event, data: s, id: String(++n) });
      };
      await stream.writeSSE({ event: 'hello', data: JSON.stringify({ retry_ms: 2000 }), retry: 2000 });
      await send();
      const off = hub.subscribe(send);
      // a comment line every 15 s; an abort (the client left, or the server closes) ends the wait at once
      let wake: (() => void) | null = null;
      stream.onAbort(() => {
        off();
        streams.delete(stream);
        wake?.();
      });
      while (!stream.aborted && !stream.closed) {
        await new Promise<void>((done) => {
          const t = setTimeout(done, 15_000);
          t.unref();
          wake = () => {
            clearTimeout(t);
            done();
          };
        });
        wake = null;
        if (!stream.aborted && !stream.closed) await stream.write(': keep-alive\n\n');
      }
      off();
      streams.delete(stream);
    });

  app.get('/api/events', (c) => sse(c, 'runs', () => storeState(db)));
  app.get('/api/runs/:id/events', (c) => {
    const id = c.req.param('id');
    runState(db, id); // a run that is not there is a 404 now, not a stream of errors
    return sse(c, 'run', () => JSON.stringify(runState(db, id)));
  });

  app.notFound((c) => c.json({ error: `not found: ${c.req.path}` }, 404));

  const server = createAdaptorServer({ fetch: app.fetch }) as Server;
  await new Promise<void>((done, fail) => {
    server.once('error', (e: NodeJS.ErrnoException) => {
      if (e.code === 'EADDRINUSE') fail(new UserError(`port ${port} on ${host} is in use (another autoagent ui?): pass --port N`));
      else if (e.code === 'EADDRNOTAVAIL' || e.code === 'ENOTFOUND' || e.code === 'EAI_AGAIN') fail(new UserError(`cannot listen on ${host}: no such address on this machine (--host)`));
      else if (e.code === 'EACCES') fail(new UserError(`cannot listen on ${host}:${port}: permission denied (pick a port above 1023)`));
      else fail(e);
    });
    server.listen(port, host, () => done());
  }).catch((e) => {
    hub.close();
    db.close();
    throw e;
  });
  const addr = server.address();
  if (addr && typeof addr === 'object') port = addr.port;
  const shown = host.includes(':') ? `[${host}]` : host;
  const url = `http://${shown}:${port}/${token ? `?token=${token}` : ''}`;
  return {
    url, host, port, token,
    streams: () => streams.size,
    close: async () => {
      for (const s of streams) void s.abort?.();
      hub.close();
      await new Promise<void>((done) => {
        server.close(() => done());
        server.closeAllConnections();
      });
      db.close();
    },
  };
}
