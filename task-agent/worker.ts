/**
 * The sandboxed task-agent worker: `node --import tsx task-agent/worker.ts <harness-dir>`.
 * Loads the harness and its tools, then runs tasks one at a time as the parent sends them,
 * asking the parent for every model call (see protocol.ts). It has no API key and no network.
 */
import { createInterface } from 'node:readline';
import { randomUUID } from 'node:crypto';
import { pathToFileURL } from 'node:url';
import { loadHarness } from './harness.ts';
import { runTask } from './runtime.ts';
import type { ToolDefinition } from './tool.ts';
import { MARK, type ToParent, type ToWorker, type WorkerRequest } from './protocol.ts';
import type { ModelResponse } from './types.ts';

// stdout carries the protocol: whatever tools print goes to stderr
const write = process.stdout.write.bind(process.stdout);
console.log = console.info = console.debug = (...a: unknown[]) => void process.stderr.write(a.map(String).join(' ') + '\n');
const send = (m: ToParent) => void write(MARK + JSON.stringify(m) + '\n');

// a tool's stray promise must not take the worker (and the tasks after it) down
process.on('unhandledRejection', (e) => void process.stderr.write(`unhandled rejection in a tool: ${String(e)}\n`));

const harnessDir = process.argv[2];
if (!harnessDir) {
  process.stderr.write('usage: worker.ts <harness-dir>\n');
  process.exit(2);
}
const harness = loadHarness(harnessDir);
const tools: Record<string, ToolDefinition> = {};
for (const [name, file] of Object.entries(harness.toolModules)) {
  const mod = await import(pathToFileURL(file).href);
  const def = (mod.default ?? mod.tool) as ToolDefinition | undefined;
  if (!def || typeof def.run !== 'function') {
    process.stderr.write(`tools/${name}.ts must \`export default defineTool({ name, description, parameters, run })\`\n`);
    process.exit(3);
  }
  tools[name] = def;
}

const pending = new Map<string, { resolve: (r: ModelResponse) => void; reject: (e: Error) => void }>();
function callModel(request: WorkerRequest, span: string, name: string): Promise<ModelResponse> {
  const id = randomUUID();
  return new Promise((resolve, reject) => {
    pending.set(id, { resolve, reject });
    send({ t: 'model', id, span, name, request });
  });
}

let queue = Promise.resolve();
const rl = createInterface({ input: process.stdin });
rl.on('line', (line) => {
  let msg: ToWorker;
  try {
    msg = JSON.parse(line);
  } catch {
    return;
  }
  if (msg.t === 'model_result') {
    const p = pending.get(msg.id);
    if (!p) return;
    pending.delete(msg.id);
    if (msg.response) p.resolve(msg.response);
    else p.reject(new Error(msg.error ?? 'model call failed'));
  } else if (msg.t === 'task') {
    const m = msg;
    queue = queue.then(async () => {
      try {
        const r = await runTask(m.task, m.scratch, m.root_span, {
          route: m.route, prompts: harness.prompts, tools, max_tokens: harness.config.max_tokens,
          top_p: harness.config.top_p, stop: harness.config.stop, thinking_budget: harness.config.thinking_budget,
        }, { callModel, emit: send, newId: randomUUID, now: Date.now });
        send({ t: 'done', task_id: m.task.id, ...r });
      } catch (e) {
        send({ t: 'done', task_id: m.task.id, output: '', steps: 0, stop: 'error', error: (e as Error).message });
      }
    });
  }
});
rl.on('close', () => process.exit(0));
send({ t: 'ready' });
