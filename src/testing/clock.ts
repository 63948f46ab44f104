/**
 * A manual clock for tests: time moves only when the test says so, and every
 * promise chain that a timer starts is allowed to settle before the next timer fires.
 */
import type { Clock } from '../types.ts';

export interface ManualClock extends Clock {
  /** Moves time forward by `ms`, firing due timers in order and letting their promises settle. */
  advance(ms: number): Promise<void>;
  /** Lets pending promise chains settle without moving time. */
  settle(): Promise<void>;
  /** How many timers are waiting. */
  pending(): number;
}

interface Timer {
  id: number;
  at: number;
  fn: () => void;
}

/** Waits for every queued microtask and immediate to run, a few rounds deep. */
async function flush(rounds = 5): Promise<void> {
  for (let i = 0; i < rounds; i++) await new Promise<void>((resolve) => setImmediate(resolve));
}

export function createManualClock(start = 0): ManualClock {
  let now = start;
  let seq = 0;
  const timers = new Map<number, Timer>();

  const nextDue = (limit: number): Timer | undefined => {
    let best: Timer | undefined;
    for (const t of timers.values()) {
      if (t.at <= limit && (best === undefined || t.at < best.at || (t.at === best.at && t.id < best.id))) best = t;
    }
    return best;
  };

  return {
    now: () => now,
    setTimeout(fn, ms) {
      const id = ++seq;
      timers.set(id, { id, at: now + Math.max(0, ms), fn });
      return id;
    },
    clearTimeout(handle) {
      timers.delete(handle as number);
    },
    async advance(ms) {
      const target = now + ms;
      await flush();
      for (;;) {
        const t = nextDue(target);
        if (t === undefined) break;
        timers.delete(t.id);
        now = Math.max(now, t.at);
        t.fn();
        await flush();
      }
      now = target;
      await flush();
    },
    settle: () => flush(),
    pending: () => timers.size,
  };
}
