import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { defineTool } from '../../../task-agent/tool.ts';

export default defineTool<{ path: string; offset?: number; limit?: number }>({
  name: 'read_file',
  description: 'Read a text file of the working folder. Long files: use offset and limit (in lines).',
  parameters: {
    type: 'object',
    properties: {
      path: { type: 'string', description: 'path relative to the working folder' },
      offset: { type: 'integer', description: 'first line (0-based)', minimum: 0 },
      limit: { type: 'integer', description: 'number of lines', minimum: 1 },
    },
    required: ['path'],
    additionalProperties: false,
  },
  run({ path, offset = 0, limit = 400 }, ctx) {
    const abs = resolve(ctx.scratch, path);
    if (!abs.startsWith(ctx.scratch + '/')) throw new Error(`${path} is outside the working folder`);
    const lines = readFileSync(abs, 'utf8').split('\n');
    const part = lines.slice(offset, offset + limit).join('\n');
    const rest = lines.length - offset - limit;
    return rest > 0 ? `${part}\n… [${rest} more lines: read with offset ${offset + limit}]` : part;
  },
});
