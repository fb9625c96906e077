/** Run the CLI's main() in this process, in `cwd` when given, capturing what it writes. */
import { main } from '../../src/cli.ts';

export async function cli(args: string[], cwd?: string): Promise<{ code: number; stdout: string; stderr: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const prev = process.cwd();
  if (cwd) process.chdir(cwd);
  try {
    const code = await main(args, { out: (t) => void out.push(t), err: (t) => void err.push(t), errIsTTY: false });
    return { code, stdout: out.join(''), stderr: err.join('') };
  } finally {
    process.chdir(prev);
  }
}
