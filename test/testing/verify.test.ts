import { describe, expect, test } from 'vitest';
import { defineSaga } from '../../src/define.ts';
import { createManualClock, exploreSaga, explainModelViolation, formatViolations, simulate, verifySaga, NO_FAULTS } from '../../src/testing/index.ts';

const saga = defineSaga({
  name: 'pair',
  version: 1,
  steps: { a: { worker: 'wa', timeoutMs: 100 }, b: { worker: 'wb', timeoutMs: 100 } },
  compensation: { retries: 1, timeoutMs: 100 },
});

describe('verifySaga', () => {
  test('reports states, transitions, runs and no violations for a sound saga', async () => {
    const r = await verifySaga(saga, { runs: 40, seed: 7 });
    expect(r.states).toBeGreaterThan(100);
    expect(r.transitions).toBeGreaterThan(r.states);
    expect(r.runs).toBe(40);
    expect(r.violations).toEqual([]);
    expect(() => r.assert()).not.toThrow();
  }, 60_000);

  test('the same seed replays the same runs', async () => {
    const a = await verifySaga(saga, { runs: 10, seed: 42, skipModel: true });
    const b = await verifySaga(saga, { runs: 10, seed: 42, skipModel: true });
    expect(a.runs).toBe(10);
    expect(b.runs).toBe(a.runs);
    expect(b.violations).toEqual(a.violations);
  }, 60_000);

  test('the assertion text explains each violation with its property, path and seed', () => {
    const text = formatViolations('trip@1', [
      { property: 'compensated-has-no-effect', explanation: 'compensated-has-no-effect: saga x is compensated but the systems of record hold [hotel]', path: '3:1:0', seed: 7 },
    ]);
    expect(text).toContain('verifySaga(trip@1) found 1 violation');
    expect(text).toContain('systems of record hold [hotel]');
    expect(text).toContain('seed 7, path 3:1:0');
  });
});

describe('model check and simulation primitives', () => {
  test('model violations render the bad path event by event', () => {
    const text = explainModelViolation({ property: 'p', message: 'm', path: ['(start)', 'STEP.TIMED_OUT(a#1)'] });
    expect(text).toContain('p: m');
    expect(text).toContain('2. STEP.TIMED_OUT(a#1)');
  });

  test('exploreSaga covers committed, compensated and parked ends of a one-step saga', () => {
    const one = defineSaga({ name: 'one', version: 1, steps: { a: { worker: 'w' } }, compensation: { retries: 0 } });
    const r = exploreSaga(one);
    expect(r.violations).toEqual([]);
    expect(r.finals.committed).toBeGreaterThan(0);
    expect(r.finals.compensated).toBeGreaterThan(0);
    expect(r.finals.compensationFailed).toBeGreaterThan(0);
  });

  test('without faults a saga commits and the systems of record hold each effect once', async () => {
    const r = await simulate(saga, { tape: [], faults: NO_FAULTS, sagas: 2 });
    expect(r.violations).toEqual([]);
    expect(r.outcomes.map((o) => o?.status)).toEqual(['committed', 'committed']);
  });

  test('the manual clock is re-exported', async () => {
    const clock = createManualClock(10);
    let fired = 0;
    clock.setTimeout(() => fired++, 5);
    await clock.advance(5);
    expect(fired).toBe(1);
    expect(clock.now()).toBe(15);
  });
});
