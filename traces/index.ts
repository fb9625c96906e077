export { openDb, migrate, now, storeErrorMessage, lastStorePath, checkStorePath, BUSY_TIMEOUT_MS } from './db.ts';
export type { DB } from './db.ts';
export * from './ledger.ts';
export type { TraceRecord, SpanRecord, SpanKind, SpanStatus, TraceRole } from './types.ts';
export * from './traces.ts';
export { renderTranscript, renderTraceList, type TranscriptOptions } from './transcript.ts';
