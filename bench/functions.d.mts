// Types of bench/functions.mjs (plain JavaScript so a locked evaluator can run it with `node`).
export interface KnobSpec {
  name: string;
  min?: number;
  max?: number;
  log?: boolean;
  int?: boolean;
  choices?: string[];
  start: number | string;
}
export interface TestFunction {
  name: string;
  knobs: KnobSpec[];
  optimum: number;
  f(values: Record<string, any>): number;
}
export const FUNCTIONS: TestFunction[];
export function startValues(fn: TestFunction): Record<string, number | string>;
export function gaussian(noiseSeed: number, evalSeed: number): number;
export function noisy(fn: TestFunction, values: Record<string, any>, noiseSd: number, noiseSeed: number, evalSeed: number): number;
export function parseParams(src: string): Record<string, number | string>;
export function paramsFile(fn: TestFunction): string;
export function knobDecls(fn: TestFunction, file?: string): Array<Record<string, unknown>>;
