export { openDb, openDbReadOnly, dataVersion, migrate, now, storeErrorMessage, lastStorePath, checkStorePath, BUSY_TIMEOUT_MS } from './db.ts';
export type { DB } from './db.ts';
export * from './ledger.ts';
export type {
  TraceRecord, SpanRecord, SpanKind, SpanStatus, TraceRole, TraceSpend, ExperimentSpend, RoleSpend, EvalListing, RunActivity,
} from './types.ts';
export * from './traces.ts';
export { renderTranscript, renderTraceList, type TranscriptOptions } from './transcript.ts';
export * from './views.ts';
export * from './trace-queries.ts';
export * from './cache.ts';
export * from './admin.ts';
export * from './ui.ts';
export * from './store.ts';
export { MemoryStore } from './memory.ts';
