// Standard test functions for knob search, with seeded Gaussian noise. Plain JavaScript (no
// TypeScript, no imports) so that the in-process bench (bench/peers.ts) and a real study's locked
// evaluator (`node evaluate.mjs`, through the CLI) compute exactly the same numbers.
//
// Each function: minimized, its domain as knobs (name, min, max, log, int, choices), the value the
// search starts from, and its known minimum.

const branin = {
  name: 'branin-2d',
  knobs: [
    { name: 'X1', min: -5, max: 10, start: -2.5 },
    { name: 'X2', min: 0, max: 15, start: 12.5 },
  ],
  optimum: 0.397887,
  f: ({ X1, X2 }) => {
    const b = 5.1 / (4 * Math.PI ** 2);
    const c = 5 / Math.PI;
    const t = 1 / (8 * Math.PI);
    return (X2 - b * X1 ** 2 + c * X1 - 6) ** 2 + 10 * (1 - t) * Math.cos(X1) + 10;
  },
};

const H_A = [
  [10, 3, 17, 3.5, 1.7, 8],
  [0.05, 10, 17, 0.1, 8, 14],
  [3, 3.5, 1.7, 10, 17, 8],
  [17, 8, 0.05, 10, 0.1, 14],
];
const H_P = [
  [1312, 1696, 5569, 124, 8283, 5886],
  [2329, 4135, 8307, 3736, 1004, 9991],
  [2348, 1451, 3522, 2883, 3047, 6650],
  [4047, 8828, 8732, 5743, 1091, 381],
];
const H_ALPHA = [1.0, 1.2, 3.0, 3.2];

const hartmann = {
  name: 'hartmann-6d',
  knobs: ['X1', 'X2', 'X3', 'X4', 'X5', 'X6'].map((name) => ({ name, min: 0, max: 1, start: 0.7 })),
  optimum: -3.32237,
  f: (v) => {
    const x = ['X1', 'X2', 'X3', 'X4', 'X5', 'X6'].map((k) => v[k]);
    let s = 0;
    for (let i = 0; i < 4; i++) {
      let inner = 0;
      for (let j = 0; j < 6; j++) inner += H_A[i][j] * (x[j] - H_P[i][j] * 1e-4) ** 2;
      s += H_ALPHA[i] * Math.exp(-inner);
    }
    return -s;
  },
};

const rosenbrock = {
  name: 'rosenbrock-4d',
  knobs: ['X1', 'X2', 'X3', 'X4'].map((name) => ({ name, min: -2, max: 2, start: -1.2 })),
  optimum: 0,
  f: (v) => {
    const x = ['X1', 'X2', 'X3', 'X4'].map((k) => v[k]);
    let s = 0;
    for (let i = 0; i < 3; i++) s += 100 * (x[i + 1] - x[i] ** 2) ** 2 + (1 - x[i]) ** 2;
    return s;
  },
};

const mixed = {
  name: 'mixed-lr-layers-opt',
  knobs: [
    { name: 'LR', min: 1e-5, max: 1e-1, log: true, start: 1e-4 },
    { name: 'LAYERS', min: 1, max: 16, int: true, start: 2 },
    { name: 'OPTIMIZER', choices: ['sgd', 'adam', 'adamw'], start: 'sgd' },
    { name: 'DROPOUT', min: 0, max: 0.5, start: 0.4 },
  ],
  optimum: 0,
  f: ({ LR, LAYERS, OPTIMIZER, DROPOUT }) =>
    (Math.log10(LR) + 2.3) ** 2 + 0.04 * (LAYERS - 9) ** 2 + { sgd: 0.6, adam: 0.15, adamw: 0 }[OPTIMIZER] + 4 * (DROPOUT - 0.1) ** 2,
};

export const FUNCTIONS = [branin, hartmann, rosenbrock, mixed];

export function startValues(fn) {
  return Object.fromEntries(fn.knobs.map((k) => [k.name, k.start]));
}

/** mulberry32 over a 32-bit seed */
function mulberry32(a) {
  return () => {
    a |= 0;
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** a standard normal draw determined by (noise seed, evaluation seed) */
export function gaussian(noiseSeed, evalSeed) {
  const r = mulberry32((Math.imul(noiseSeed, 0x9e3779b1) ^ Math.imul(evalSeed, 0x85ebca6b)) >>> 0);
  r();
  const u = Math.max(1e-12, r());
  const v = r();
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
}

/** the noisy value: f + noiseSd · N(0, 1), the draw fixed by the two seeds */
export function noisy(fn, values, noiseSd, noiseSeed, evalSeed) {
  return fn.f(values) + noiseSd * gaussian(noiseSeed, evalSeed);
}

/** parse `NAME = value` lines of a params.py written by the search (numbers, quoted strings) */
export function parseParams(src) {
  const out = {};
  for (const line of src.split('\n')) {
    const m = /^([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.+?)\s*(#.*)?$/.exec(line);
    if (!m) continue;
    const raw = m[2];
    out[m[1]] = /^["']/.test(raw) ? raw.slice(1, -1) : Number(raw.replace(/_/g, ''));
  }
  return out;
}

/** the params file the search edits, at the start values */
export function paramsFile(fn) {
  return fn.knobs.map((k) => `${k.name} = ${typeof k.start === 'string' ? JSON.stringify(k.start) : formatStart(k)}`).join('\n') + '\n';
}

function formatStart(k) {
  if (k.int) return String(k.start);
  const s = String(k.start);
  return /[.e]/.test(s) ? s : `${s}.0`;
}

/** the study's knob declarations for the function's domain */
export function knobDecls(fn, file = 'params.py') {
  return fn.knobs.map((k) =>
    k.choices ? { file, name: k.name, choices: k.choices } : { file, name: k.name, min: k.min, max: k.max, ...(k.log ? { log: true } : { log: false }) },
  );
}
