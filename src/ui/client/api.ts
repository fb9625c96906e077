/** The server's JSON API, with the token the page was opened with (`?token=`). */
import type { RunSummary, RunDetail, ExperimentView, knobView, experimentDetail, traceDetail, traceSearch, runState } from '../queries.ts';

export type { RunSummary, RunDetail, ExperimentView };
export type KnobData = ReturnType<typeof knobView>;
export type ExperimentDetail = ReturnType<typeof experimentDetail>;
export type TraceData = NonNullable<ReturnType<typeof traceDetail>>;
export type SearchHit = ReturnType<typeof traceSearch>[number];
export type RunState = ReturnType<typeof runState>;

const TOKEN = new URLSearchParams(location.search).get('token');

/** an /api URL with the token when the page has one */
export function apiUrl(path: string, params: Record<string, string | number | undefined> = {}): string {
  const u = new URL(path, location.origin);
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== '') u.searchParams.set(k, String(v));
  if (TOKEN) u.searchParams.set('token', TOKEN);
  return u.pathname + u.search;
}

async function call<T>(method: string, path: string, params: Record<string, string | number | undefined> = {}, body?: unknown): Promise<T> {
  const r = await fetch(apiUrl(path, params), {
    method,
    headers: body === undefined ? {} : { 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const j = (await r.json().catch(() => ({ error: `${r.status} ${r.statusText}` }))) as T & { error?: string };
  if (!r.ok) throw new Error(j.error ?? `${r.status} ${r.statusText}`);
  return j;
}

const enc = encodeURIComponent;

export const api = {
  runs: () => call<{ runs: RunSummary[] }>('GET', '/api/runs').then((r) => r.runs),
  run: (id: string) => call<RunDetail>('GET', `/api/runs/${enc(id)}`),
  experiment: (id: string, seq: number) => call<ExperimentDetail>('GET', `/api/runs/${enc(id)}/experiments/${seq}`),
  knobs: (id: string) => call<KnobData>('GET', `/api/runs/${enc(id)}/knobs`),
  trace: (id: string) => call<TraceData>('GET', `/api/traces/${enc(id)}`),
  search: (q: string, run?: string) => call<{ hits: SearchHit[] }>('GET', '/api/search', { q, run, limit: 100 }).then((r) => r.hits),
  annotate: (id: string, changes: { label?: string | null; tags?: string[]; notes?: string }) =>
    call<{ label: string | null; tags: string[]; notes: string }>('PATCH', `/api/runs/${enc(id)}`, {}, changes),
};

/** An event stream that calls `on` with each event's parsed data; returns a function that closes it. */
export function watch(path: string, event: string, on: (data: unknown) => void, status?: (live: boolean) => void): () => void {
  const es = new EventSource(apiUrl(path));
  es.addEventListener(event, (e) => {
    try {
      on(JSON.parse((e as MessageEvent).data));
    } catch {
      // a malformed event is skipped
    }
  });
  es.onopen = () => status?.(true);
  es.onerror = () => status?.(false);
  return () => es.close();
}
