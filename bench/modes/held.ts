/**
 * Holding sagas in flight for the memory figures: waits until every step of the held
 * sagas has reached its (gated) worker, polling, for at most a few seconds.
 */
import { sleep } from '../stats.ts';

/** Polls `done` every 5 ms until it is true or `ms` passed; resolves with whether it became true. */
export async function waitUntil(done: () => boolean | Promise<boolean>, ms: number): Promise<boolean> {
  const until = performance.now() + ms;
  for (;;) {
    if (await done()) return true;
    if (performance.now() > until) return false;
    await sleep(5);
  }
}
