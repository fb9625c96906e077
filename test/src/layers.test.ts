// The folders' import direction (README, Layout): a folder imports only folders before it in
// LAYERS; base/, the ground floor, imports no other folder of the project. Every import counts:
// static, `export ... from`, type-only and dynamic `import(...)` (TypeScript's own pre-parser
// finds them, so comments and strings do not). The checker is tried on made-up trees first, so
// a checker that finds nothing fails here too.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve, sep } from 'node:path';
import ts from 'typescript';

const ROOT = resolve(import.meta.dirname, '..', '..');

/** lowest first: each folder may import the folders before it, never one after it */
const LAYERS = ['base', 'traces', 'sandbox', 'benchmarks', 'task-agent', 'harnesses', 'meta-agent', 'src', 'bin'];
/** folders outside the layers: they may import anything, nothing may import them */
const FREE = new Set(['test', 'bench']);
const SKIP = new Set(['node_modules', 'dist', '.git', '.autoagent']);
const CODE = /\.(ts|mts|cts|tsx|js|mjs|cjs)$/;

function codeFiles(dir: string, out: string[] = []): string[] {
  for (const name of readdirSync(dir)) {
    if (SKIP.has(name)) continue;
    const p = join(dir, name);
    if (statSync(p).isDirectory()) codeFiles(p, out);
    else if (CODE.test(name)) out.push(p);
  }
  return out;
}

/** the relative imports of one file: static, re-exports, type-only, dynamic, require */
function importsOf(source: string): string[] {
  return ts.preProcessFile(source, true, true).importedFiles.map((r) => r.fileName).filter((f) => f.startsWith('.'));
}

/** Every import against the direction, as "from -> to (folder -> folder)"; folders with code but no layer too. */
function violations(root: string, layers = LAYERS): string[] {
  const out: string[] = [];
  const rank = new Map(layers.map((l, i) => [l, i]));
  for (const top of readdirSync(root)) {
    if (SKIP.has(top) || FREE.has(top) || !statSync(join(root, top)).isDirectory()) continue;
    const files = codeFiles(join(root, top));
    if (!rank.has(top)) {
      if (files.length) out.push(`${top}/ holds code but has no layer`);
      continue;
    }
    for (const file of files) {
      for (const spec of importsOf(readFileSync(file, 'utf8'))) {
        const target = relative(root, resolve(dirname(file), spec));
        const folder = target.split(sep)[0]!;
        if (folder === top) continue;
        const from = relative(root, file);
        if (target.startsWith('..')) out.push(`${from} -> ${spec} (outside the project)`);
        else if (!rank.has(folder)) out.push(`${from} -> ${target} (${top} -> ${folder}: not a layer)`);
        else if (rank.get(folder)! > rank.get(top)!) out.push(`${from} -> ${target} (${top} -> ${folder}: against the direction)`);
      }
    }
  }
  return out.sort();
}

/**
 * The import cycles among the project's modules (inside a folder too; type-only imports count),
 * each as its modules in a ring from the smallest path, e.g. "src/a.ts -> src/b.ts -> src/a.ts".
 */
function cycles(root: string, layers = LAYERS): string[] {
  const graph = new Map<string, string[]>();
  for (const top of layers) {
    if (!existsSync(join(root, top))) continue;
    for (const file of codeFiles(join(root, top))) {
      graph.set(relative(root, file), importsOf(readFileSync(file, 'utf8')).map((spec) => relative(root, resolve(dirname(file), spec))));
    }
  }
  // Tarjan's strongly connected components; a component of two or more modules (or one importing itself) is a cycle
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const out: string[] = [];
  const visit = (v: string) => {
    index.set(v, index.size);
    low.set(v, index.get(v)!);
    stack.push(v);
    for (const w of graph.get(v) ?? []) {
      if (!graph.has(w)) continue;
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (stack.includes(w)) low.set(v, Math.min(low.get(v)!, index.get(w)!));
    }
    if (low.get(v) !== index.get(v)) return;
    const scc: string[] = [];
    for (let w = ''; w !== v;) scc.push((w = stack.pop()!));
    if (scc.length > 1 || graph.get(v)!.includes(v)) {
      // one ring through the component, from its smallest path
      const members = new Set(scc);
      const start = [...scc].sort()[0]!;
      const ring = [start];
      for (let at = start; ;) {
        at = graph.get(at)!.filter((w) => members.has(w)).sort()[0]!;
        ring.push(at);
        if (ring.indexOf(at) < ring.length - 1) break;
      }
      out.push(`${ring.join(' -> ')} (${scc.length} module${scc.length > 1 ? 's' : ''} in the cycle)`);
    }
  };
  for (const v of [...graph.keys()].sort()) if (!index.has(v)) visit(v);
  return out.sort();
}

function tree(files: Record<string, string>): string {
  const root = mkdtempSync(join(tmpdir(), 'layers-'));
  for (const [p, text] of Object.entries(files)) {
    mkdirSync(dirname(join(root, p)), { recursive: true });
    writeFileSync(join(root, p), text);
  }
  return root;
}

/** a checker's self-test: on a tree of `bad` files it finds exactly `expected`, on a tree of `good` ones nothing */
function selfTest(check: (root: string) => string[], bad: Record<string, string>, good: Record<string, string>, expected: string[]): void {
  const roots = [tree(bad), tree(good)];
  try {
    assert.deepEqual(check(roots[0]!), expected);
    assert.deepEqual(check(roots[1]!), []);
  } finally {
    for (const r of roots) rmSync(r, { recursive: true, force: true });
  }
}

test('the checker finds each kind of import against the direction, and passes a tree that keeps it', () => {
  selfTest(violations, {
    'base/errors.ts': "import { loop } from '../src/loop.ts';\nexport const x = loop;\n",
    'base/git.ts': "export type T = import('../traces/db.ts').DB;\n",
    'traces/db.ts': "export async function f() { return import('../meta-agent/x.ts'); }\nexport type DB = number;\n",
    'meta-agent/x.ts': "import type { Loop } from '../src/loop.ts';\nexport { y } from '../src/loop.ts';\n// import '../bin/a.js' (a comment, not an import)\n",
    'src/loop.ts': "import '../base/errors.ts';\nimport '../test/helpers/h.ts';\nexport const loop = 1, y = 2;\nexport type Loop = 1;\n",
    'extra/a.ts': "export const a = 1;\n",
    'test/helpers/h.ts': "import '../../src/loop.ts';\n",
  }, {
    'base/errors.ts': "import { readFileSync } from 'node:fs';\nimport './git.ts';\n",
    'base/git.ts': "export const g = 1;\n",
    'traces/db.ts': "import '../base/git.ts';\n",
    'src/loop.ts': "import '../traces/db.ts';\nimport('../base/errors.ts');\n",
    'test/x.test.ts': "import '../src/loop.ts';\n",
  }, [
    'base/errors.ts -> src/loop.ts (base -> src: against the direction)',
      'base/git.ts -> traces/db.ts (base -> traces: against the direction)',
      'extra/ holds code but has no layer',
      'meta-agent/x.ts -> src/loop.ts (meta-agent -> src: against the direction)',
      'meta-agent/x.ts -> src/loop.ts (meta-agent -> src: against the direction)',
      'src/loop.ts -> test/helpers/h.ts (src -> test: not a layer)',
    'traces/db.ts -> meta-agent/x.ts (traces -> meta-agent: against the direction)',
  ]);
});

test('no import in the project goes against the folders\' direction (base/ imports no other folder)', () => {
  assert.deepEqual(violations(ROOT), []);
});

test('the cycle checker finds an import cycle inside a folder, a type-only one, a dynamic one, and passes a tree without', () => {
  selfTest(cycles, {
    'src/cli.ts': "import { knobs } from './knobs-cli.ts';\nexport const cli = knobs;\n",
    'src/knobs-cli.ts': "import type { IO } from './cli.ts';\nexport const knobs = 1;\n",
    'src/loop.ts': "export async function f() { return import('./ui/server.ts'); }\n",
    'src/ui/server.ts': "import '../loop.ts';\n",
    'base/self.ts': "import './self.ts';\n",
  }, {
    'src/cli.ts': "import { knobs } from './knobs-cli.ts';\nimport './io.ts';\n",
    'src/knobs-cli.ts': "import type { IO } from './io.ts';\nexport const knobs = 1;\n",
    'src/io.ts': "export interface IO { out: string }\n",
  }, [
    'base/self.ts -> base/self.ts (1 module in the cycle)',
    'src/cli.ts -> src/knobs-cli.ts -> src/cli.ts (2 modules in the cycle)',
    'src/loop.ts -> src/ui/server.ts -> src/loop.ts (2 modules in the cycle)',
  ]);
});

test('no module of the project imports itself through others (no import cycles, inside a folder either)', () => {
  assert.deepEqual(cycles(ROOT), []);
});

test('the Layout section of the README names the same order', () => {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
  const line = /A folder imports only folders before it in this order: ([^.]*)\./.exec(readme.replace(/\s+/g, ' '));
  assert.ok(line, 'README states the order');
  assert.deepEqual([...line[1]!.matchAll(/`([a-z-]+)\/`/g)].map((m) => m[1]), LAYERS);
});
