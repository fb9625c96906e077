/** The response cache: optional replay of identical model requests, keyed by request hash (schema 3). */
import type { DB } from './db.ts';

/** The cached response (JSON text) for `key`, if any. */
export function cachedResponse(db: DB, key: string): string | undefined {
  const row = db.prepare('SELECT response FROM model_cache WHERE key = ?').get(key) as { response: string } | undefined;
  return row?.response;
}

/** Stores (or replaces) the response (JSON text) for `key`. */
export function cacheResponse(db: DB, key: string, response: string): void {
  db.prepare('INSERT OR REPLACE INTO model_cache (key, response, created_at) VALUES (?, ?, ?)').run(key, response, new Date().toISOString());
}
