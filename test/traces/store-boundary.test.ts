/**
 * The store's boundary: all SQL lives in traces/. Outside it, the code autoagent ships (src,
 * meta-agent, task-agent, benchmarks, harnesses, bin) neither imports better-sqlite3 nor calls the
 * handle's SQL methods (`.prepare(`, `.exec(`, `.pragma(`, `.transaction(`); it calls the named
 * functions traces/index.ts exports. test/ and bench/ are not scanned: tests tamper with a store's
 * rows on purpose (a forged decision, an old schema) and bench/ measures the store's own queries.
 *
 * The scan parses each file with TypeScript's parser (syntax only, no type checking):
 *  - any import, export-from, import(), require() or `import('…')` type of 'better-sqlite3';
 *  - `X.prepare(a)` with one argument (SQL); `X.prepare(a, b)` is another API (a kind's prepare);
 *  - `X.pragma(…)` and `X.transaction(…)`;
 *  - `X.exec(a)` where `a` is a literal that starts like SQL, or X is named like a database
 *    handle (`db`, `this.db`, `hdb`, `database`, `sqlite`); a regular expression's exec is not.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative, resolve, sep } from 'node:path';
import ts from 'typescript';

const ROOT = resolve(import.meta.dirname, '../..');
/** the folders of shipped code outside the store */
const SCANNED = ['src', 'meta-agent', 'task-agent', 'benchmarks', 'harnesses', 'bin'];
const SOURCE = /\.(ts|mts|cts|js|mjs|cjs)$/;
const SQL_START = /^\s*(SELECT|INSERT|UPDATE|DELETE|REPLACE|CREATE|DROP|ALTER|PRAGMA|BEGIN|COMMIT|ROLLBACK|SAVEPOINT|RELEASE|VACUUM|WITH|ATTACH|DETACH|ANALYZE|REINDEX)\b/i;
const DB_NAME = /(db|database|sqlite)$/i;
const MENTIONS = /better-sqlite3|\.\s*(prepare|exec|pragma|transaction)\b/;

/** the violations in one file's text: `path:line: what` */
export function violationsIn(path: string, text: string): string[] {
  const sf = ts.createSourceFile(path, text, ts.ScriptTarget.Latest, true, path.endsWith('.js') || path.endsWith('.mjs') || path.endsWith('.cjs') ? ts.ScriptKind.JS : ts.ScriptKind.TS);
  const out: string[] = [];
  const at = (n: ts.Node, what: string) => out.push(`${path}:${sf.getLineAndCharacterOfPosition(n.getStart(sf)).line + 1}: ${what}`);
  const isSqlite = (e: ts.Node | undefined) => !!e && ts.isStringLiteralLike(e) && e.text === 'better-sqlite3';
  const literalText = (e: ts.Expression): string | null => {
    if (ts.isStringLiteralLike(e)) return e.text;
    if (ts.isTemplateExpression(e)) return e.head.text;
    return null;
  };
  const isRegex = (e: ts.Expression): boolean => {
    let x = e;
    while (ts.isParenthesizedExpression(x)) x = x.expression;
    return ts.isRegularExpressionLiteral(x) || (ts.isNewExpression(x) && ts.isIdentifier(x.expression) && x.expression.text === 'RegExp');
  };
  const nameOf = (e: ts.Expression): string => (ts.isIdentifier(e) ? e.text : ts.isPropertyAccessExpression(e) ? e.name.text : e.kind === ts.SyntaxKind.ThisKeyword ? 'this' : '');
  const visit = (n: ts.Node): void => {
    if ((ts.isImportDeclaration(n) || ts.isExportDeclaration(n)) && isSqlite(n.moduleSpecifier)) at(n, 'imports better-sqlite3');
    else if (ts.isImportEqualsDeclaration(n) && ts.isExternalModuleReference(n.moduleReference) && isSqlite(n.moduleReference.expression)) at(n, 'imports better-sqlite3');
    else if (ts.isImportTypeNode(n) && ts.isLiteralTypeNode(n.argument) && isSqlite(n.argument.literal)) at(n, 'imports better-sqlite3 (a type)');
    else if (ts.isCallExpression(n)) {
      const callee = n.expression;
      if ((callee.kind === ts.SyntaxKind.ImportKeyword || (ts.isIdentifier(callee) && callee.text === 'require')) && isSqlite(n.arguments[0])) at(n, 'imports better-sqlite3');
      if (ts.isPropertyAccessExpression(callee)) {
        const method = callee.name.text;
        const recv = callee.expression;
        const args = n.arguments;
        if (method === 'prepare' && args.length === 1) at(n, `calls ${recv.getText(sf)}.prepare( (SQL outside traces/)`);
        else if (method === 'pragma' || method === 'transaction') at(n, `calls ${recv.getText(sf)}.${method}( (SQL outside traces/)`);
        else if (method === 'exec' && args.length === 1 && !isRegex(recv)) {
          const lit = literalText(args[0]!);
          if ((lit !== null && SQL_START.test(lit)) || DB_NAME.test(nameOf(recv))) at(n, `calls ${recv.getText(sf)}.exec( (SQL outside traces/)`);
        }
      }
    }
    ts.forEachChild(n, visit);
  };
  visit(sf);
  return out;
}

function sources(dir: string): string[] {
  let entries: import('node:fs').Dirent[];
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch {
    return [];
  }
  return entries.flatMap((e) => {
    if (e.name === 'node_modules' || e.name === 'dist' || e.name.startsWith('.')) return [];
    const p = join(dir, e.name);
    return e.isDirectory() ? sources(p) : e.isFile() && SOURCE.test(e.name) ? [p] : [];
  });
}

/** every violation under `root`'s scanned folders (traces/ is the store: never scanned) */
export function scanTree(root: string): string[] {
  return SCANNED.flatMap((d) => sources(join(root, d))).flatMap((p) => {
    const text = readFileSync(p, 'utf8');
    // only a file that mentions one of them can break a rule: the rest are not parsed
    return MENTIONS.test(text) ? violationsIn(relative(root, p), text) : [];
  });
}

test('no shipped file outside traces/ imports better-sqlite3 or runs SQL on a handle', () => {
  const files = SCANNED.flatMap((d) => sources(join(ROOT, d)));
  assert.ok(files.length > 100, `the scan sees the code (${files.length} files)`);
  assert.deepEqual(scanTree(ROOT), []);
});

test('the scan finds each kind of violation, and leaves a regex exec and a kind prepare alone', () => {
  const bad = [
    `import Database from 'better-sqlite3';`,
    `import type { Database as D } from 'better-sqlite3';`,
    `export { default } from 'better-sqlite3';`,
    `const m = await import('better-sqlite3');`,
    `const r = require('better-sqlite3');`,
    `type H = import('better-sqlite3').Database;`,
    `db.prepare('SELECT 1').get();`,
    `this.db.prepare(sql).all();`,
    `ctx.db.prepare(\`SELECT * FROM runs WHERE id = \${x}\`).get();`,
    `db.exec('BEGIN');`,
    `handle.exec(\`DELETE FROM runs\`);`,
    `hdb.exec(script);`,
    `db.pragma('journal_mode = WAL');`,
    `db.transaction(() => undefined)();`,
  ];
  for (const line of bad) assert.equal(violationsIn('src/x.ts', line).length, 1, `not caught: ${line}`);
  const fine = [
    `const m = /^(\\d+)$/.exec(line);`,
    `const m = ANSWER.exec(text);`,
    `const g = new RegExp(p + '|').exec('')!.length;`,
    `prepared = await adapter.prepare(study, paths);`,
    `import { openDb } from '../traces/index.ts';`,
    `db.close();`,
  ];
  for (const line of fine) assert.deepEqual(violationsIn('src/x.ts', line), [], `wrongly caught: ${line}`);
  assert.match(violationsIn('src/x.ts', `\n\nconst a = 1;\ndb.prepare('SELECT 1');`)[0]!, /^src\/x\.ts:4: calls db\.prepare\(/);
});

test('a tree with SQL outside traces/ fails the scan; the same SQL inside traces/ does not', () => {
  const root = mkdtempSync(join(tmpdir(), 'aa-boundary-'));
  try {
    mkdirSync(join(root, 'traces'));
    writeFileSync(join(root, 'traces', 'db.ts'), `import Database from 'better-sqlite3';\nexport const f = (db: Database.Database) => db.prepare('SELECT 1').get();\n`);
    mkdirSync(join(root, 'src', 'ui'), { recursive: true });
    writeFileSync(join(root, 'src', 'ok.ts'), `import { openDb } from '../traces/index.ts';\nexport const db = openDb(':memory:');\n`);
    assert.deepEqual(scanTree(root), [], 'traces/ is the store');
    writeFileSync(join(root, 'src', 'ui', 'server.ts'), `import Database from 'better-sqlite3';\nconst db = new Database('x');\ndb.prepare("SELECT 1 FROM sqlite_master").get();\n`);
    mkdirSync(join(root, 'meta-agent'));
    writeFileSync(join(root, 'meta-agent', 'history.ts'), `export class H { db: any; f() { return this.db.prepare('SELECT 1').get(); } }\n`);
    assert.deepEqual(scanTree(root), [
      `src${sep}ui${sep}server.ts:1: imports better-sqlite3`,
      `src${sep}ui${sep}server.ts:3: calls db.prepare( (SQL outside traces/)`,
      `meta-agent${sep}history.ts:1: calls this.db.prepare( (SQL outside traces/)`,
    ]);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});
