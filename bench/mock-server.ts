/**
 * A scripted OpenAI-compatible server in its own process (so its work is not counted as the
 * tool's): each task gets STEPS-1 calls of the `noop` tool, then the answer "done", after
 * LATENCY ms. Prints its base URL on the first line of stdout.
 *
 *   node --import tsx bench/mock-server.ts <steps> <latency-ms>
 */
import { startMockOpenAI, openaiText, openaiToolCall } from '../test/helpers/mock-llm.ts';

const steps = Number(process.argv[2] ?? 5);
const latency = Number(process.argv[3] ?? 0);
const server = await startMockOpenAI((body: { messages: Array<{ role: string }> }) => {
  const tools = body.messages.filter((m) => m.role === 'tool').length;
  const reply = tools < steps - 1 ? openaiToolCall('noop', '{}') : openaiText('done');
  return latency ? { delayMs: latency, body: reply } : reply;
});
process.stdout.write(server.baseURL + '\n');
process.stdin.resume();
process.stdin.on('end', () => void server.close().then(() => process.exit(0)));
