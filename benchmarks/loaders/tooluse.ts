/**
 * `tooluse`: 30 generated tasks (10 kinds × 3) whose answer is only in files placed in the task's
 * scratch folder (`Task.files`): a CSV of sales, an application log, a web access log, a JSON
 * inventory, orders joined with customers. Each task has its own data, generated from a fixed seed
 * (TOOLUSE_SEED) with a small deterministic PRNG, so the suite is the same on every machine and
 * needs no data root. Every answer is a number (a sum, a count, an id, a span in seconds) that
 * varies widely between tasks; questions end with "Give just the number." Scorer: `numeric`.
 */
import type { Task } from '../types.ts';
import type { Loaded } from './data.ts';

export const TOOLUSE_SEED = 20261122;
export const TOOLUSE_KINDS = [
  'sales-revenue',
  'sales-units',
  'sales-top-order',
  'log-errors-window',
  'log-error-span',
  'log-slowest-request',
  'access-bytes-5xx',
  'inventory-value',
  'inventory-min-qty',
  'orders-join',
] as const;
export type ToolUseKind = (typeof TOOLUSE_KINDS)[number];
/** the kind of file each kind reads, as a third tag (harness routing: `when: { tags: [logs] }`) */
export const TOOLUSE_FORMAT: Record<ToolUseKind, 'csv' | 'logs' | 'json'> = {
  'sales-revenue': 'csv',
  'sales-units': 'csv',
  'sales-top-order': 'csv',
  'log-errors-window': 'logs',
  'log-error-span': 'logs',
  'log-slowest-request': 'logs',
  'access-bytes-5xx': 'logs',
  'inventory-value': 'json',
  'inventory-min-qty': 'json',
  'orders-join': 'csv',
};
export const TOOLUSE_PER_KIND = 3;

// ---------------------------------------------------------------------------------------------
// deterministic randomness

function fnv1a(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

class Rng {
  private s: number;
  constructor(seed: number) {
    this.s = seed >>> 0;
  }
  /** mulberry32: uniform in [0, 1) */
  next(): number {
    this.s = (this.s + 0x6d2b79f5) >>> 0;
    let t = this.s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  /** integer in [lo, hi] */
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.next() * (hi - lo + 1));
  }
  pick<T>(xs: readonly T[]): T {
    return xs[Math.floor(this.next() * xs.length)]!;
  }
  /** `n` distinct integers in [lo, hi] */
  distinct(n: number, lo: number, hi: number): number[] {
    const seen = new Set<number>();
    while (seen.size < n) seen.add(this.int(lo, hi));
    return [...seen];
  }
}

const pad = (n: number, w = 2) => String(n).padStart(w, '0');
const money = (cents: number) => (cents / 100).toFixed(2);
const clock = (sec: number) => `${pad(Math.floor(sec / 3600))}:${pad(Math.floor(sec / 60) % 60)}:${pad(sec % 60)}`;

// ---------------------------------------------------------------------------------------------
// data generators

const REGIONS = ['North', 'South', 'East', 'West', 'Central'] as const;
const PRODUCTS = ['Widget', 'Gadget', 'Sprocket', 'Gizmo', 'Doohickey', 'Flange', 'Bracket', 'Valve'] as const;
const MONTHS = ['January', 'February', 'March', 'April', 'May', 'June'] as const;

interface SaleRow {
  order_id: number;
  date: string;
  month: number;
  region: string;
  product: string;
  units: number;
  cents: number;
}

function sales(rng: Rng): { rows: SaleRow[]; csv: string } {
  const n = rng.int(160, 260);
  const ids = rng.distinct(n, 10000, 99999);
  const price = new Map(PRODUCTS.map((p) => [p, rng.int(250, 19999)]));
  const rows: SaleRow[] = ids.map((order_id) => {
    const month = rng.int(1, 6);
    const product = rng.pick(PRODUCTS);
    // prices drift a little from order to order
    const cents = Math.max(99, price.get(product)! + rng.int(-150, 150));
    return { order_id, month, date: `2024-${pad(month)}-${pad(rng.int(1, 28))}`, region: rng.pick(REGIONS), product, units: rng.int(1, 60), cents };
  });
  rows.sort((a, b) => (a.date < b.date ? -1 : a.date > b.date ? 1 : a.order_id - b.order_id));
  const csv = ['order_id,date,region,product,units,unit_price', ...rows.map((r) => `${r.order_id},${r.date},${r.region},${r.product},${r.units},${money(r.cents)}`)].join('\n') + '\n';
  return { rows, csv };
}

const SERVICES = ['api', 'auth', 'billing', 'search', 'worker'] as const;
const PATHS = ['/api/orders', '/api/users', '/api/search', '/api/cart', '/api/checkout'] as const;

interface LogLine {
  sec: number;
  level: 'DEBUG' | 'INFO' | 'WARN' | 'ERROR';
  service: string;
  request?: { id: number; path: string; status: number; latency: number };
}

const DAY = '2024-05-14';

function appLog(rng: Rng): { lines: LogLine[]; text: string } {
  const n = rng.int(350, 600);
  const secs = Array.from({ length: n }, () => rng.int(0, 86399)).sort((a, b) => a - b);
  const reqIds = rng.distinct(n, 100000, 999999);
  const lines: LogLine[] = [];
  const out: string[] = [];
  secs.forEach((sec, i) => {
    const r = rng.next();
    const level = r < 0.08 ? 'DEBUG' : r < 0.66 ? 'INFO' : r < 0.86 ? 'WARN' : 'ERROR';
    const service = rng.pick(SERVICES);
    const line: LogLine = { sec, level, service };
    let msg: string;
    if (service === 'api' && (level === 'INFO' || level === 'WARN' || level === 'ERROR')) {
      const status = level === 'INFO' ? rng.pick([200, 200, 200, 201, 204, 304]) : level === 'WARN' ? rng.pick([400, 404, 429, 200]) : rng.pick([500, 502, 503]);
      line.request = { id: reqIds[i]!, path: rng.pick(PATHS), status, latency: rng.int(3, 2500) };
      msg = `request id=${line.request.id} path=${line.request.path} status=${status} latency_ms=${line.request.latency}`;
    } else if (level === 'ERROR') {
      msg = rng.pick(['connection reset by peer', 'timeout talking to db', 'payment declined', 'index shard unavailable', 'job crashed, will retry']);
    } else if (level === 'WARN') {
      msg = rng.pick(['slow query', 'ERROR rate above 1%', 'retrying', 'cache miss storm', 'disk 85% full']);
    } else {
      msg = rng.pick(['heartbeat ok', 'recovered from ERROR state', 'user login', 'cache refreshed', 'job done']);
    }
    lines.push(line);
    out.push(`${DAY}T${clock(sec)}Z ${level.padEnd(5)} ${service}: ${msg}`);
  });
  return { lines, text: out.join('\n') + '\n' };
}

const MON = 'May';
function accessLog(rng: Rng): { rows: Array<{ path: string; status: number; bytes: number }>; text: string } {
  const n = rng.int(300, 500);
  const secs = Array.from({ length: n }, () => rng.int(0, 86399)).sort((a, b) => a - b);
  const paths = [...PATHS, '/index.html', '/static/app.js', '/favicon.ico', '/login'];
  const rows = secs.map(() => {
    const r = rng.next();
    const status = r < 0.7 ? 200 : r < 0.78 ? 304 : r < 0.86 ? 404 : r < 0.9 ? 401 : rng.pick([500, 502, 503, 504]);
    return { path: rng.pick(paths), status, bytes: status === 304 ? 0 : rng.int(120, 98000), ip: `10.${rng.int(0, 9)}.${rng.int(0, 255)}.${rng.int(1, 254)}`, method: rng.pick(['GET', 'GET', 'GET', 'POST']) };
  });
  const text =
    rows.map((x, i) => `${x.ip} - - [14/${MON}/2024:${clock(secs[i]!)} +0000] "${x.method} ${x.path} HTTP/1.1" ${x.status} ${x.bytes} "-" "Mozilla/5.0"`).join('\n') + '\n';
  return { rows, text };
}

const CATEGORIES = ['tools', 'garden', 'kitchen', 'toys', 'office'] as const;
const WAREHOUSES = ['A1', 'B2', 'C3', 'D4'] as const;
const NOUNS = ['hammer', 'rake', 'kettle', 'puzzle', 'stapler', 'drill', 'hose', 'pan', 'kite', 'lamp', 'saw', 'pot', 'ball', 'pen', 'shovel', 'mug'];
const ADJS = ['red', 'large', 'compact', 'deluxe', 'basic', 'steel', 'blue', 'mini', 'pro', 'eco'];

interface Item {
  sku: number;
  name: string;
  category: string;
  warehouse: string;
  qty: number;
  unit_cost: number;
}

function inventory(rng: Rng): { items: Item[]; text: string } {
  const n = rng.int(60, 120);
  const skus = rng.distinct(n, 100000, 999999);
  const items: Item[] = skus.map((sku) => ({
    sku,
    name: `${rng.pick(ADJS)} ${rng.pick(NOUNS)}`,
    category: rng.pick(CATEGORIES),
    warehouse: rng.pick(WAREHOUSES),
    qty: rng.next() < 0.1 ? 0 : rng.int(1, 500),
    unit_cost: rng.int(99, 25000) / 100,
  }));
  return { items, text: JSON.stringify({ updated: `${DAY}`, currency: 'USD', items }, null, 2) + '\n' };
}

const COUNTRIES = ['Chile', 'Kenya', 'Norway', 'Japan', 'Canada', 'Portugal', 'India', 'Peru'] as const;
function ordersAndCustomers(rng: Rng): { customers: Array<{ id: number; name: string; country: string }>; orders: Array<{ order_id: number; customer_id: number; cents: number }>; files: Record<string, string> } {
  const nc = rng.int(25, 45);
  const cids = rng.distinct(nc, 1000, 9999);
  const customers = cids.map((id) => ({ id, name: `${rng.pick(['Ana', 'Bo', 'Chen', 'Dara', 'Eli', 'Femi', 'Gus', 'Hana', 'Ivo', 'Jun'])} ${rng.pick(['Silva', 'Berg', 'Ito', 'Otieno', 'Roy', 'Costa', 'Rao', 'Quispe'])}`, country: rng.pick(COUNTRIES) }));
  const no = rng.int(120, 220);
  const oids = rng.distinct(no, 100000, 999999);
  const orders = oids.map((order_id) => ({ order_id, customer_id: rng.pick(cids), cents: rng.int(500, 250000) }));
  const files = {
    'orders.csv': ['order_id,customer_id,amount', ...orders.map((o) => `${o.order_id},${o.customer_id},${money(o.cents)}`)].join('\n') + '\n',
    'customers.json': JSON.stringify(customers, null, 2) + '\n',
  };
  return { customers, orders, files };
}

// ---------------------------------------------------------------------------------------------
// tasks

interface Made {
  question: string;
  files: Record<string, string>;
  answer: number;
}

const JUST = 'Give just the number.';

/** One task of `kind` from `rng`, or null when the draw does not give a well-posed question (the caller draws again). */
function make(kind: ToolUseKind, rng: Rng): Made | null {
  switch (kind) {
    case 'sales-revenue': {
      const { rows, csv } = sales(rng);
      const region = rng.pick(REGIONS);
      const month = rng.int(1, 6);
      const hit = rows.filter((r) => r.region === region && r.month === month);
      if (hit.length < 3) return null;
      const cents = hit.reduce((s, r) => s + r.units * r.cents, 0);
      return {
        question: `The file sales.csv lists sales orders. What is the total revenue (units × unit_price, summed over orders) of the orders in the "${region}" region dated in ${MONTHS[month - 1]} 2024? ${JUST}`,
        files: { 'sales.csv': csv },
        answer: cents / 100,
      };
    }
    case 'sales-units': {
      const { rows, csv } = sales(rng);
      const product = rng.pick(PRODUCTS);
      const region = rng.pick(REGIONS);
      const units = rows.filter((r) => r.product === product && r.region !== region).reduce((s, r) => s + r.units, 0);
      if (units === 0) return null;
      return {
        question: `The file sales.csv lists sales orders. How many units of "${product}" were sold in total, counting every order except those in the "${region}" region? ${JUST}`,
        files: { 'sales.csv': csv },
        answer: units,
      };
    }
    case 'sales-top-order': {
      const { rows, csv } = sales(rng);
      const product = rng.pick(PRODUCTS);
      const hit = rows.filter((r) => r.product === product).sort((a, b) => b.units * b.cents - a.units * a.cents);
      if (hit.length < 5 || hit[0]!.units * hit[0]!.cents === hit[1]!.units * hit[1]!.cents) return null;
      return {
        question: `The file sales.csv lists sales orders. Among the orders for "${product}", which one has the largest revenue (units × unit_price)? Give just its order_id.`,
        files: { 'sales.csv': csv },
        answer: hit[0]!.order_id,
      };
    }
    case 'log-errors-window': {
      const { lines, text } = appLog(rng);
      const from = rng.int(0, 14) * 3600 + rng.int(0, 59) * 60;
      const to = from + rng.int(3, 9) * 3600 + rng.int(0, 59) * 60 - 1;
      const count = lines.filter((l) => l.level === 'ERROR' && l.sec >= from && l.sec <= to).length;
      if (count < 3) return null;
      return {
        question: `The file app.log is an application log, one entry a line: timestamp, level, service, message. How many entries with level ERROR have a timestamp from ${DAY} ${clock(from)} to ${DAY} ${clock(to)} UTC, both ends included? ${JUST}`,
        files: { 'app.log': text },
        answer: count,
      };
    }
    case 'log-error-span': {
      const { lines, text } = appLog(rng);
      const service = rng.pick(SERVICES);
      const errs = lines.filter((l) => l.level === 'ERROR' && l.service === service);
      if (errs.length < 3) return null;
      return {
        question: `The file app.log is an application log, one entry a line: timestamp, level, service, message. How many seconds passed between the first and the last entry with level ERROR from the service "${service}"? ${JUST}`,
        files: { 'app.log': text },
        answer: errs[errs.length - 1]!.sec - errs[0]!.sec,
      };
    }
    case 'log-slowest-request': {
      const { lines, text } = appLog(rng);
      const p = rng.pick(PATHS);
      const reqs = lines.filter((l) => l.request && l.request.path === p && l.request.status === 200).map((l) => l.request!).sort((a, b) => b.latency - a.latency);
      if (reqs.length < 4 || reqs[0]!.latency === reqs[1]!.latency) return null;
      return {
        question: `The file app.log is an application log; the service "api" logs each request as "request id=... path=... status=... latency_ms=...". Among the requests to ${p} that returned status 200, which one had the highest latency_ms? Give just its request id.`,
        files: { 'app.log': text },
        answer: reqs[0]!.id,
      };
    }
    case 'access-bytes-5xx': {
      const { rows, text } = accessLog(rng);
      const bytes = rows.filter((r) => r.status >= 500 && r.status <= 599 && r.path.startsWith('/api/')).reduce((s, r) => s + r.bytes, 0);
      if (bytes === 0) return null;
      return {
        question: `The file access.log is a web server access log in the combined log format (the number after the status code is the response size in bytes). What is the total response size, in bytes, of all requests to paths starting with /api/ that got a 5xx status code? ${JUST}`,
        files: { 'access.log': text },
        answer: bytes,
      };
    }
    case 'inventory-value': {
      const { items, text } = inventory(rng);
      const category = rng.pick(CATEGORIES);
      const warehouse = rng.pick(WAREHOUSES);
      const hit = items.filter((i) => i.category === category && i.warehouse === warehouse && i.qty > 0);
      if (hit.length < 2) return null;
      const cents = hit.reduce((s, i) => s + i.qty * Math.round(i.unit_cost * 100), 0);
      return {
        question: `The file inventory.json lists a shop's stock. What is the total stock value (qty × unit_cost, summed) of the items in category "${category}" stored in warehouse "${warehouse}"? ${JUST}`,
        files: { 'inventory.json': text },
        answer: cents / 100,
      };
    }
    case 'inventory-min-qty': {
      const { items, text } = inventory(rng);
      const category = rng.pick(CATEGORIES);
      const hit = items.filter((i) => i.category === category && i.qty > 0).sort((a, b) => a.qty - b.qty);
      if (hit.length < 4 || hit[0]!.qty === hit[1]!.qty) return null;
      return {
        question: `The file inventory.json lists a shop's stock. Among the items in category "${category}" that are in stock (qty above 0), which has the lowest qty? Give just its sku.`,
        files: { 'inventory.json': text },
        answer: hit[0]!.sku,
      };
    }
    case 'orders-join': {
      const { customers, orders, files } = ordersAndCustomers(rng);
      const country = rng.pick(COUNTRIES);
      const ids = new Set(customers.filter((c) => c.country === country).map((c) => c.id));
      const hit = orders.filter((o) => ids.has(o.customer_id));
      if (hit.length < 3) return null;
      return {
        question: `The file orders.csv lists orders with the customer_id who placed each; customers.json gives each customer's country. What is the total amount of the orders placed by customers from ${country}? ${JUST}`,
        files,
        answer: hit.reduce((s, o) => s + o.cents, 0) / 100,
      };
    }
  }
}

/** The 30 tasks (ids `<kind>/<n>`, tags `[tooluse, <kind>, csv|logs|json]`) and their answers; splits are set by the caller. */
export function generateToolUse(seed = TOOLUSE_SEED): Array<{ id: string; kind: ToolUseKind; made: Made }> {
  const out: Array<{ id: string; kind: ToolUseKind; made: Made }> = [];
  for (const kind of TOOLUSE_KINDS) {
    for (let k = 0; k < TOOLUSE_PER_KIND; k++) {
      const id = `${kind}/${k}`;
      const rng = new Rng(fnv1a(`${seed}/${id}`));
      let made: Made | null = null;
      for (let attempt = 0; attempt < 100 && !made; attempt++) made = make(kind, rng);
      if (!made) throw new Error(`tooluse: could not generate ${id}`);
      out.push({ id, kind, made });
    }
  }
  return out;
}

export function loadToolUse(splitOf: (ids: string[]) => Array<Task['split']>): Loaded {
  const gen = generateToolUse();
  const splits = splitOf(gen.map((g) => g.id));
  const tasks: Task[] = gen.map((g, i) => ({ id: g.id, split: splits[i]!, input: { question: g.made.question }, tags: ['tooluse', g.kind, TOOLUSE_FORMAT[g.kind]], files: g.made.files }));
  return { tasks, answers: new Map(gen.map((g) => [g.id, g.made.answer])), files: [] };
}
