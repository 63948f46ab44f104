/**
 * The real clock: Date.now and the process's timers. Tests inject a manual clock
 * from `scatter-saga/testing` instead.
 */
import type { Clock } from './types.ts';

/** The system clock: `Date.now` and the process's timers. The default of every `clock` option. */
export const systemClock: Clock = Object.freeze({
  now: () => Date.now(),
  setTimeout: (fn: () => void, ms: number) => setTimeout(fn, ms),
  clearTimeout: (handle: unknown) => clearTimeout(handle as ReturnType<typeof setTimeout>),
});
