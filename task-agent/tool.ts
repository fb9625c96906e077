/**
 * What a harness tool module (harnesses/<h>/tools/<name>.ts) exports: `export default defineTool({...})`.
 * Tools run inside the task-agent's sandbox: the task's scratch folder is writable, the network
 * is absent, and a model call (agent-as-tool) goes through the parent like every other call.
 */
import type { ModelResponse, Message, ToolSpec } from './types.ts';

export interface ToolContext {
  /** absolute path of this task's scratch folder (the task's files are there) */
  scratch: string;
  /** the task as the agent sees it: id, input fields, tags (never the answer) */
  task: { id: string; input: Record<string, unknown>; tags?: string[] };
  /** call the model again with its own prompt (a sub-agent), traced as a nested span */
  callModel(req: { system: string; messages: Message[]; tools?: ToolSpec[]; max_tokens?: number; model?: string; name?: string }): Promise<ModelResponse>;
}

export interface ToolDefinition<A = Record<string, unknown>> extends ToolSpec {
  run(args: A, ctx: ToolContext): Promise<string> | string;
}

export function defineTool<A = Record<string, unknown>>(t: ToolDefinition<A>): ToolDefinition<A> {
  return t;
}
