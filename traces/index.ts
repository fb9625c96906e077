export { openDb, migrate, now } from './db.ts';
export type { DB } from './db.ts';
export * from './ledger.ts';
