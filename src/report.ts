/**
 * Progress output: event lines always; on a terminal also a live status line (rewritten in
 * place) while an evaluation runs. Not on a terminal: plain lines only.
 */
export interface Reporter {
  event(line: string): void;
  /** the live line (null clears it); ignored when not on a terminal */
  live(text: string | null): void;
}

export class StreamReporter implements Reporter {
  private liveShown = false;
  constructor(
    private readonly write: (text: string) => void = (t) => void process.stderr.write(t),
    private readonly tty = Boolean(process.stderr.isTTY),
  ) {}

  event(line: string): void {
    this.clear();
    this.write(line + '\n');
  }

  live(text: string | null): void {
    if (!this.tty) return;
    if (text === null) return this.clear();
    this.write(`\r\x1b[2K${text}`);
    this.liveShown = true;
  }

  private clear(): void {
    if (this.liveShown) {
      this.write('\r\x1b[2K');
      this.liveShown = false;
    }
  }
}

/** Collects events in memory (tests, --json mode). */
export class MemoryReporter implements Reporter {
  readonly lines: string[] = [];
  event(line: string): void {
    this.lines.push(line);
  }
  live(): void {}
}
