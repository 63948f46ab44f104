import { describe, expect, it } from 'vitest';
import { TimerWheel } from '../../src/actors/timer.ts';
import { createManualClock } from '../../src/testing/clock.ts';

describe('timer wheel', () => {
  it('fires timers in order, within one tick of their due time', async () => {
    const clock = createManualClock(1_000);
    const wheel = new TimerWheel(clock, 5);
    const fired: [string, number][] = [];
    const owner = {};
    wheel.schedule(owner, 'b', 30, () => fired.push(['b', clock.now()]));
    wheel.schedule(owner, 'a', 12, () => fired.push(['a', clock.now()]));
    await clock.advance(11);
    expect(fired).toEqual([]);
    await clock.advance(100);
    expect(fired.map(([id]) => id)).toEqual(['a', 'b']);
    expect(fired[0]?.[1]).toBeGreaterThanOrEqual(1_012);
    expect(fired[0]?.[1]).toBeLessThan(1_012 + 5);
    expect(wheel.pending).toBe(0);
    expect(clock.pending()).toBe(0);
  });

  it('replaces a timer scheduled again under the same id, and cancels per owner', async () => {
    const clock = createManualClock();
    const wheel = new TimerWheel(clock, 5);
    const fired: string[] = [];
    const a = {};
    const b = {};
    wheel.schedule(a, 't', 10, () => fired.push('a-first'));
    wheel.schedule(a, 't', 50, () => fired.push('a-second'));
    wheel.schedule(a, 'u', 10, () => fired.push('a-u'));
    wheel.schedule(b, 't', 10, () => fired.push('b'));
    wheel.cancel(a, 'u');
    expect(wheel.pending).toBe(2);
    await clock.advance(20);
    expect(fired).toEqual(['b']);
    wheel.cancelAll(a);
    await clock.advance(100);
    expect(fired).toEqual(['b']);
    expect(clock.pending()).toBe(0);
  });

  it('stops ticking when idle, so the process can exit', async () => {
    const clock = createManualClock();
    const wheel = new TimerWheel(clock, 5);
    wheel.schedule({}, 'x', 7, () => {});
    expect(clock.pending()).toBe(1);
    await clock.advance(20);
    expect(clock.pending()).toBe(0);
  });
});
