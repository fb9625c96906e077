/**
 * The task-agent loop: model ↔ tools until a final answer or max steps. A tool error goes back
 * to the model as an error result; nothing a tool does can abort the loop. The loop knows
 * nothing of pipes or providers: `callModel` and `emit` are given (the worker wires them to the
 * parent; tests call it directly).
 */
import type { Block, Message, ModelResponse, ToolSpec } from './types.ts';
import type { ToolDefinition, ToolContext } from './tool.ts';
import type { Route } from './harness.ts';
import { renderTemplate, defaultUserMessage } from './harness.ts';
import type { Task } from '../benchmarks/types.ts';
import type { ToParent, WorkerRequest } from './protocol.ts';

export interface RuntimeDeps {
  callModel(req: WorkerRequest, span: string, name: string): Promise<ModelResponse>;
  emit(event: Extract<ToParent, { t: 'span' }>): void;
  newId(): string;
  now(): number;
}

export interface RuntimeSettings {
  route: Route;
  prompts: Record<string, string>;
  tools: Record<string, ToolDefinition>;
  max_tokens: number;
  top_p?: number;
  stop?: string[];
  thinking_budget?: number;
}

export interface TaskRun {
  output: string;
  steps: number;
  stop: 'final' | 'max_steps' | 'error';
  error?: string;
}

const MAX_TOOL_RESULT = 20_000;

function textOf(blocks: Block[]): string {
  return blocks.filter((b): b is Extract<Block, { type: 'text' }> => b.type === 'text').map((b) => b.text).join('\n').trim();
}

export async function runTask(task: Pick<Task, 'id' | 'input' | 'tags'>, scratch: string, rootSpan: string, s: RuntimeSettings, deps: RuntimeDeps): Promise<TaskRun> {
  const fullTask = { ...task, split: 'val' as const };
  const system = renderTemplate(s.prompts[s.route.system] ?? '', fullTask);
  const user = s.route.user ? renderTemplate(s.prompts[s.route.user] ?? '', fullTask) : defaultUserMessage(fullTask);
  const specs: ToolSpec[] = s.route.tools.map((n) => {
    const t = s.tools[n];
    if (!t) throw new Error(`tool ${n} is not loaded`);
    return { name: t.name, description: t.description, parameters: t.parameters };
  });
  const messages: Message[] = [{ role: 'user', content: [{ type: 'text', text: user }] }];
  let lastText = '';

  const toolCtx = (parentSpan: string): ToolContext => ({
    scratch,
    task: { id: task.id, input: task.input, tags: task.tags },
    callModel: async (req) => {
      const span = deps.newId();
      deps.emit({ t: 'span', phase: 'start', id: span, parent: parentSpan, kind: 'subagent', name: req.name ?? 'subagent', at: deps.now(), input: { system: req.system } });
      try {
        const res = await deps.callModel({
          model: req.model ?? s.route.model, system: req.system, messages: req.messages, tools: req.tools ?? [],
          max_tokens: req.max_tokens ?? s.max_tokens, temperature: s.route.temperature,
        }, span, req.name ?? 'subagent');
        deps.emit({ t: 'span', phase: 'end', id: span, at: deps.now(), status: 'ok', output: textOf(res.content) });
        return res;
      } catch (e) {
        deps.emit({ t: 'span', phase: 'end', id: span, at: deps.now(), status: 'error', error: (e as Error).message });
        throw e;
      }
    },
  });

  for (let step = 1; step <= s.route.max_steps; step++) {
    const turn = deps.newId();
    deps.emit({ t: 'span', phase: 'start', id: turn, parent: rootSpan, kind: 'turn', name: `turn ${step}`, at: deps.now() });
    let res: ModelResponse;
    try {
      res = await deps.callModel({
        model: s.route.model, system, messages, tools: specs, max_tokens: s.max_tokens, temperature: s.route.temperature,
        top_p: s.top_p, stop: s.stop, thinking_budget: s.thinking_budget,
      }, turn, `model call ${step}`);
    } catch (e) {
      const error = (e as Error).message;
      deps.emit({ t: 'span', phase: 'end', id: turn, at: deps.now(), status: 'error', error });
      return { output: lastText, steps: step, stop: 'error', error };
    }
    messages.push({ role: 'assistant', content: res.content });
    const text = textOf(res.content);
    if (text) lastText = text;
    const uses = res.content.filter((b): b is Extract<Block, { type: 'tool_use' }> => b.type === 'tool_use');
    if (uses.length === 0) {
      deps.emit({ t: 'span', phase: 'end', id: turn, at: deps.now(), status: 'ok', output: text });
      return { output: text, steps: step, stop: 'final' };
    }
    const results: Block[] = [];
    for (const use of uses) {
      const span = deps.newId();
      deps.emit({ t: 'span', phase: 'start', id: span, parent: turn, kind: 'tool', name: use.name, at: deps.now(), input: use.raw_input ?? use.input });
      let content: string;
      let isError = false;
      try {
        const tool = s.route.tools.includes(use.name) ? s.tools[use.name] : undefined;
        if (!tool) throw new Error(`unknown tool ${use.name}; available: ${s.route.tools.join(', ') || 'none'}`);
        if (use.raw_input !== undefined) throw new Error(`the arguments are not valid JSON: ${use.raw_input.slice(0, 200)}`);
        const out = await tool.run((use.input ?? {}) as Record<string, unknown>, toolCtx(span));
        content = typeof out === 'string' ? out : JSON.stringify(out);
        if (content.length > MAX_TOOL_RESULT) content = content.slice(0, MAX_TOOL_RESULT) + `\n… [${content.length - MAX_TOOL_RESULT} more chars cut]`;
      } catch (e) {
        isError = true;
        content = `error: ${(e as Error)?.message ?? String(e)}`;
      }
      deps.emit({ t: 'span', phase: 'end', id: span, at: deps.now(), status: isError ? 'error' : 'ok', output: content, ...(isError ? { error: content } : {}) });
      results.push({ type: 'tool_result', tool_use_id: use.id, content, ...(isError ? { is_error: true } : {}) });
    }
    messages.push({ role: 'user', content: results });
    deps.emit({ t: 'span', phase: 'end', id: turn, at: deps.now(), status: 'ok', output: text });
  }
  return { output: lastText, steps: s.route.max_steps, stop: 'max_steps' };
}
