/** Where a command writes: its output, its messages (and whether they go to a terminal). Tests pass their own. */
export interface IO {
  out: (text: string) => void;
  err: (text: string) => void;
  errIsTTY: boolean;
}
