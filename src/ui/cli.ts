/** `autoagent ui`: serve the dashboard until Ctrl-C. */
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { UsageError } from '../../base/errors.ts';
import { defaultDbPath } from '../loop.ts';
import { repoRoot } from '../../base/git.ts';
import { startUiServer, isLoopback, DEFAULT_HOST, DEFAULT_PORT } from './server.ts';

export interface UiCliOptions {
  db?: string;
  host?: string;
  port?: number;
}

export async function uiCommand(o: UiCliOptions, io: { out: (t: string) => void; err: (t: string) => void }, stop?: AbortSignal): Promise<number> {
  const dbPath = o.db ? resolve(o.db) : defaultDbPath(await repoRoot(process.cwd()));
  if (!existsSync(dbPath)) throw new UsageError(`${dbPath}: no autoagent store here (run a study first, or pass --db PATH)`);
  const host = o.host ?? DEFAULT_HOST;
  if (o.port !== undefined && o.port > 65535) throw new UsageError(`--port: at most 65535 (got ${o.port})`);
  const server = await startUiServer({ dbPath, host, port: o.port ?? DEFAULT_PORT });
  io.out(`autoagent ui: ${server.url}\n`);
  io.out(`store ${dbPath} (read-only; only a run's label, tags and notes are written)\n`);
  if (!isLoopback(host)) io.out(`bound to ${host}: every request needs the token above (?token=, or Authorization: Bearer TOKEN)\n`);
  io.out('Ctrl-C to stop\n');
  await new Promise<void>((done) => {
    const finish = () => {
      process.off('SIGINT', finish);
      process.off('SIGTERM', finish);
      done();
    };
    process.on('SIGINT', finish);
    process.on('SIGTERM', finish);
    stop?.addEventListener('abort', finish);
  });
  await server.close();
  return 0;
}
