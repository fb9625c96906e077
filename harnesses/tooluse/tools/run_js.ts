import { spawnSync } from 'node:child_process';
import { defineTool } from '../../../task-agent/tool.ts';

export default defineTool<{ code: string }>({
  name: 'run_js',
  description:
    'Run a JavaScript program with node in the working folder (fs is available via require). Print what you want to see with console.log. 10 s limit.',
  parameters: {
    type: 'object',
    properties: { code: { type: 'string', description: 'a complete CommonJS program' } },
    required: ['code'],
    additionalProperties: false,
  },
  run({ code }, ctx) {
    const r = spawnSync(process.execPath, ['-e', code], { cwd: ctx.scratch, encoding: 'utf8', timeout: 10_000, maxBuffer: 1 << 20 });
    if (r.error) throw new Error(r.error.message);
    const out = `${r.stdout}${r.stderr ? `\n[stderr]\n${r.stderr}` : ''}`.trim();
    if (r.status !== 0) throw new Error(`exit ${r.status ?? r.signal}: ${out.slice(-2000)}`);
    return out || '(no output)';
  },
});
