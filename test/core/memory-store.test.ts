import { describe, expect, it } from 'vitest';
import { memoryDedupStore } from '../../src/index.ts';
import { createManualClock } from '../../src/testing/clock.ts';

describe('in-memory dedup store', () => {
  it('forgets keys after the window and beyond the size bound, oldest first', async () => {
    const clock = createManualClock();
    const store = memoryDedupStore({ clock, windowMs: 1_000, maxRecords: 3 });
    const rec = (at: number) => ({ state: 'done' as const, compensateRequested: false, inputHash: 'h', updatedAt: at });
    for (const k of ['a', 'b', 'c', 'd']) store.set('w', k, rec(clock.now()));
    expect(store.size).toBe(3);
    expect(store.get('w', 'a')).toBeUndefined();
    store.set('w', 'b', rec(clock.now())); // b is now the most recent
    store.set('w', 'e', rec(clock.now()));
    expect(['b', 'c', 'd', 'e'].filter((k) => store.get('w', k) !== undefined)).toEqual(['b', 'd', 'e']);
    await clock.advance(1_001);
    expect(store.get('w', 'e')).toBeUndefined();
    store.set('w', 'f', rec(clock.now()));
    expect(store.size).toBe(1);
  });
});
