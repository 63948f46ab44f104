/**
 * The runtime's one timer actor: a hashed timer wheel serving every step timeout and
 * every retry backoff of every saga, on one clock timer at a time.
 */
import { fromCallback } from 'xstate';
import type { Clock } from '../types.ts';

export const DEFAULT_TIMER_TICK_MS = 5;

interface Entry {
  owner: object;
  id: string;
  tick: number;
  fire: () => void;
}

/** Timers keyed by (owner, id); scheduling the same pair again replaces the old timer. */
export class TimerWheel {
  private readonly buckets = new Map<number, Set<Entry>>();
  private readonly byOwner = new Map<object, Map<string, Entry>>();
  private size = 0;
  private processed: number;
  private handle: unknown = undefined;

  constructor(
    private readonly clock: Clock,
    private readonly tickMs = DEFAULT_TIMER_TICK_MS,
  ) {
    this.processed = Math.floor(clock.now() / tickMs);
  }

  schedule(owner: object, id: string, delayMs: number, fire: () => void): void {
    this.cancel(owner, id);
    if (this.size === 0) this.processed = Math.floor(this.clock.now() / this.tickMs);
    const tick = Math.max(Math.ceil((this.clock.now() + delayMs) / this.tickMs), this.processed + 1);
    const entry: Entry = { owner, id, tick, fire };
    let bucket = this.buckets.get(tick);
    if (bucket === undefined) this.buckets.set(tick, (bucket = new Set()));
    bucket.add(entry);
    let mine = this.byOwner.get(owner);
    if (mine === undefined) this.byOwner.set(owner, (mine = new Map()));
    mine.set(id, entry);
    this.size++;
    this.arm();
  }

  cancel(owner: object, id: string): void {
    const mine = this.byOwner.get(owner);
    const entry = mine?.get(id);
    if (entry === undefined || mine === undefined) return;
    this.remove(entry, mine);
  }

  cancelAll(owner: object): void {
    const mine = this.byOwner.get(owner);
    if (mine === undefined) return;
    for (const entry of [...mine.values()]) this.remove(entry, mine);
  }

  /** Timers waiting. */
  get pending(): number {
    return this.size;
  }

  stop(): void {
    if (this.handle !== undefined) this.clock.clearTimeout(this.handle);
    this.handle = undefined;
    this.buckets.clear();
    this.byOwner.clear();
    this.size = 0;
  }

  private remove(entry: Entry, mine: Map<string, Entry>): void {
    mine.delete(entry.id);
    if (mine.size === 0) this.byOwner.delete(entry.owner);
    const bucket = this.buckets.get(entry.tick);
    if (bucket?.delete(entry)) {
      this.size--;
      if (bucket.size === 0) this.buckets.delete(entry.tick);
    }
  }

  private arm(): void {
    if (this.handle !== undefined || this.size === 0) return;
    this.handle = this.clock.setTimeout(() => this.tick(), this.tickMs);
  }

  private tick(): void {
    this.handle = undefined;
    const current = Math.floor(this.clock.now() / this.tickMs);
    // Jump over empty stretches when the clock moved far (a simulated clock, a stalled loop).
    let t = this.processed + 1;
    while (t <= current && this.size > 0) {
      const bucket = this.buckets.get(t);
      if (bucket !== undefined) {
        this.buckets.delete(t);
        for (const entry of bucket) {
          const mine = this.byOwner.get(entry.owner);
          mine?.delete(entry.id);
          if (mine !== undefined && mine.size === 0) this.byOwner.delete(entry.owner);
          this.size--;
        }
        for (const entry of bucket) entry.fire();
      }
      t++;
    }
    this.processed = current;
    this.arm();
  }
}

/** Events the timer actor accepts. */
export type TimerEvent =
  | { type: 'SCHEDULE'; owner: object; id: string; delayMs: number; fire: () => void }
  | { type: 'CANCEL'; owner: object; id: string }
  | { type: 'CANCEL_ALL'; owner: object };

/** The timer as an actor of the runtime's system. */
export const timerLogic = fromCallback<TimerEvent, { wheel: TimerWheel }>(({ input, receive }) => {
  const { wheel } = input;
  receive((event) => {
    if (event.type === 'SCHEDULE') wheel.schedule(event.owner, event.id, event.delayMs, event.fire);
    else if (event.type === 'CANCEL') wheel.cancel(event.owner, event.id);
    else wheel.cancelAll(event.owner);
  });
  return () => wheel.stop();
});
