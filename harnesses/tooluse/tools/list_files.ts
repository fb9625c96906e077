import { readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { defineTool } from '../../../task-agent/tool.ts';

export default defineTool({
  name: 'list_files',
  description: 'List the files in the working folder, with their sizes in bytes.',
  parameters: { type: 'object', properties: {}, additionalProperties: false },
  run(_args, ctx) {
    const out: string[] = [];
    const walk = (dir: string) => {
      for (const e of readdirSync(dir, { withFileTypes: true })) {
        const p = join(dir, e.name);
        if (e.isDirectory()) walk(p);
        else out.push(`${relative(ctx.scratch, p)}\t${statSync(p).size}`);
      }
    };
    walk(ctx.scratch);
    return out.sort().join('\n') || '(no files)';
  },
});
