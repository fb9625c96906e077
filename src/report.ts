/**
 * Progress output: event lines always. While evaluations run, one status line per busy slot: on a
 * terminal redrawn in place (at most a few times a second); not on a terminal, printed as plain
 * lines every `plainIntervalMs` (30 s by default) so a log shows the run is alive. Colours (kept
 * green, discarded yellow, crash / timeout red) only on a terminal and never with NO_COLOR set
 * (https://no-color.org).
 */

/** how an event line is coloured on a terminal */
export type Tone = 'kept' | 'discarded' | 'crash' | 'note';

export interface Reporter {
  event(line: string, tone?: Tone): void;
  /** the live line (null clears it); shown as the status line of slot "live" */
  live(text: string | null): void;
  /** the status line of evaluation slot `slot`, or a function that makes it fresh (null: the slot is idle) */
  progress?(slot: number, text: string | (() => string) | null): void;
}

export interface StreamReporterOptions {
  /** plain (non-terminal) output: seconds between progress lines; default 30 */
  plainIntervalMs?: number;
  /** the environment to read NO_COLOR from (tests) */
  env?: NodeJS.ProcessEnv;
  /** the least time between two redraws on a terminal; default 250 ms (4 Hz) */
  redrawMs?: number;
}

const ANSI: Record<Tone, [string, string]> = {
  kept: ['\x1b[32m', '\x1b[39m'],
  discarded: ['\x1b[33m', '\x1b[39m'],
  crash: ['\x1b[31m', '\x1b[39m'],
  note: ['\x1b[2m', '\x1b[22m'],
};

/** colour is on for a terminal unless NO_COLOR is set to anything but the empty string */
export function colourOn(tty: boolean, env: NodeJS.ProcessEnv = process.env): boolean {
  return tty && !(env.NO_COLOR !== undefined && env.NO_COLOR !== '');
}

/** the tone of an experiment's decision */
export function toneOf(decision: string): Tone | undefined {
  if (decision === 'kept') return 'kept';
  if (decision === 'discarded' || decision === 'rejected') return 'discarded';
  if (decision === 'crash' || decision === 'timeout') return 'crash';
  return undefined;
}

export class StreamReporter implements Reporter {
  /** slot → its status line (insertion order is display order); a function is called each time it is shown */
  private readonly lines = new Map<number, string | (() => string)>();
  /** how many lines the block on screen has */
  private shown = 0;
  private lastDraw = 0;
  private drawTimer: NodeJS.Timeout | null = null;
  private plainTimer: NodeJS.Timeout | null = null;
  private readonly colour: boolean;
  private readonly plainIntervalMs: number;
  private readonly redrawMs: number;

  constructor(
    private readonly write: (text: string) => void = (t) => void process.stderr.write(t),
    private readonly tty = Boolean(process.stderr.isTTY),
    o: StreamReporterOptions = {},
  ) {
    this.colour = colourOn(tty, o.env ?? process.env);
    this.plainIntervalMs = o.plainIntervalMs ?? 30_000;
    this.redrawMs = o.redrawMs ?? 250;
  }

  event(line: string, tone?: Tone): void {
    this.clear();
    this.write((tone && this.colour ? `${ANSI[tone][0]}${line}${ANSI[tone][1]}` : line) + '\n');
    if (this.tty) this.draw();
  }

  live(text: string | null): void {
    this.progress(-1, text);
  }

  progress(slot: number, text: string | (() => string) | null): void {
    if (text === null) this.lines.delete(slot);
    else this.lines.set(slot, text);
    if (this.tty) return this.schedule();
    // not a terminal: a plain line per busy slot every interval, while any is busy
    if (this.lines.size && !this.plainTimer) {
      this.plainTimer = setInterval(() => {
        for (const l of this.lines.values()) this.write(`… ${typeof l === 'function' ? l() : l}\n`);
      }, this.plainIntervalMs);
      this.plainTimer.unref();
    } else if (!this.lines.size && this.plainTimer) {
      clearInterval(this.plainTimer);
      this.plainTimer = null;
    }
  }

  /** redraw now if the last one is old enough, else once when it is (a few Hz at most) */
  private schedule(): void {
    const wait = this.lastDraw + this.redrawMs - Date.now();
    if (wait <= 0) return this.draw();
    if (this.drawTimer) return;
    this.drawTimer = setTimeout(() => {
      this.drawTimer = null;
      this.draw();
    }, wait);
    this.drawTimer.unref();
  }

  private draw(): void {
    if (this.drawTimer) {
      clearTimeout(this.drawTimer);
      this.drawTimer = null;
    }
    this.lastDraw = Date.now();
    const rows = [...this.lines.values()].map((l) => (typeof l === 'function' ? l() : l));
    let out = this.eraseText();
    out += rows.map((r) => (this.colour ? `${ANSI.note[0]}${r}${ANSI.note[1]}` : r)).join('\n');
    this.shown = rows.length;
    if (out) this.write(out);
  }

  /** the escape text that erases the block on screen and leaves the cursor at its first column */
  private eraseText(): string {
    if (!this.shown) return '';
    // the cursor is at the end of the block's last line (no newline after it)
    return '\r\x1b[2K' + '\x1b[1A\x1b[2K'.repeat(this.shown - 1);
  }

  private clear(): void {
    if (this.shown) {
      this.write(this.eraseText());
      this.shown = 0;
    }
  }
}

/** Collects events in memory (tests, --json mode); progress lines in `progressLines` ("slot: text"). */
export class MemoryReporter implements Reporter {
  readonly lines: string[] = [];
  readonly tones: Array<Tone | undefined> = [];
  readonly progressLines: string[] = [];
  event(line: string, tone?: Tone): void {
    this.lines.push(line);
    this.tones.push(tone);
  }
  live(): void {}
  progress(slot: number, text: string | (() => string) | null): void {
    if (text !== null) this.progressLines.push(`${slot}: ${typeof text === 'function' ? text() : text}`);
  }
}
