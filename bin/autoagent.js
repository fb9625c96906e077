#!/usr/bin/env node
// Entry point: runs the TypeScript sources through tsx (a runtime dependency).
import { register } from 'tsx/esm/api';

register();
const { main } = await import('../src/cli.ts');
const code = await main(process.argv.slice(2));
process.exitCode = code;
// the command is done and its output written: a request still in flight (a Langfuse that does not
// answer) may keep the process up to 3 s more, not until its own timeout
setTimeout(() => process.exit(code), 3000).unref();
