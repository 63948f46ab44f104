import { describe, expect, test } from 'vitest';
import { defineSaga } from '../../src/define.ts';
import { InputNotSerializableError, InvalidOptionError, SagaDefinitionError } from '../../src/errors.ts';
import {
  assertSagaVerified,
  createManualClock,
  exploreSaga,
  explainModelViolation,
  formatViolations,
  simulate,
  verifySaga,
  NO_FAULTS,
} from '../../src/testing/index.ts';
import type { VerifyOptions } from '../../src/testing/index.ts';

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

  test("checks the saga as written: its steps' gates are asked, and its compensation order is the one explored", async () => {
    let asked = 0;
    const gated = defineSaga({
      name: 'gated',
      version: 1,
      steps: { a: { worker: 'wa', timeoutMs: 100, gate: () => (asked++, true) }, b: { worker: 'wb', timeoutMs: 100 } },
    });
    const r = await verifySaga(gated, { runs: 20, seed: 3 });
    expect(r.violations).toEqual([]);
    expect(asked).toBeGreaterThan(0);
    // Three parallel steps: undone all at once (reverse) or one at a time (sequential), two different spaces.
    const three = (order: 'reverse' | 'sequential') =>
      defineSaga({ name: `three-${order}`, version: 1, steps: { a: { worker: 'wa' }, b: { worker: 'wb' }, c: { worker: 'wc' } }, compensation: { retries: 1, order } });
    const [reverse, sequential] = [await verifySaga(three('reverse'), { runs: 0 }), await verifySaga(three('sequential'), { runs: 0 })];
    expect(sequential.violations).toEqual([]);
    expect(reverse.states).toBe(exploreSaga(three('reverse')).states);
    expect(sequential.states).toBe(exploreSaga(three('sequential')).states);
    expect(sequential.states).not.toBe(reverse.states);
  }, 60_000);
});

const one = defineSaga({ name: 'one', version: 1, steps: { a: { worker: 'w' } }, compensation: { retries: 0 } });

/** The error `verifySaga` rejects with; fails the test when it resolves. */
async function refusal(def: unknown, options: unknown): Promise<Error> {
  try {
    await verifySaga(def as typeof saga, options as VerifyOptions);
  } catch (error) {
    return error as Error;
  }
  throw new Error('verifySaga resolved; a refusal was expected');
}

describe('verifySaga says how much it checked', () => {
  test('a model check that covered every state is exhaustive, and says so', async () => {
    const r = await verifySaga(one, { runs: 0 });
    expect(r.exhaustive).toBe(true);
    expect(r.truncated).toBe(false);
    expect(r.maxStates).toBe(300_000);
    expect(r.states).toBeLessThan(300_000);
    expect(String(r)).toBe(`verifySaga(one@1): model check exhaustive: ${r.states} states, ${r.transitions} transitions; 0 simulated run(s); 0 violation(s)`);
    expect(() => r.assert()).not.toThrow();
  });

  test('a model check stopped by maxStates is truncated, not exhaustive, and assert() fails saying where it stopped', async () => {
    const r = await verifySaga(saga, { runs: 0, maxStates: 50 });
    expect(r.truncated).toBe(true);
    expect(r.exhaustive).toBe(false);
    expect(r.states).toBe(50);
    expect(r.violations).toEqual([]);
    expect(() => r.assert()).toThrow(`the model check stopped at maxStates 50 after 50 states and ${r.transitions} transitions`);
    expect(() => r.assert()).toThrow(/Raise maxStates above 50 .* or pass allowPartial: true/);
    await expect(assertSagaVerified(saga, { runs: 0, maxStates: 50 })).rejects.toThrow('stopped at maxStates 50 after 50 states');
  });

  test('the summary of a truncated run never reads as a clean one', async () => {
    const r = await verifySaga(saga, { runs: 0, maxStates: 50 });
    const text = r.toString();
    expect(text).toContain('truncated at 50 states (not exhaustive)');
    expect(text).not.toContain('exhaustive:');
    expect(text).not.toMatch(/0 violation\(s\)$/);
    expect(text).toContain('0 violation(s) in the part explored');
  });

  test('allowPartial lets assert() pass a truncated run, which still reads as truncated', async () => {
    const r = await verifySaga(saga, { runs: 0, maxStates: 50, allowPartial: true });
    expect(r.truncated).toBe(true);
    expect(r.allowPartial).toBe(true);
    expect(() => r.assert()).not.toThrow();
    expect(String(r)).toContain('truncated at 50 states (not exhaustive)');
    await expect(assertSagaVerified(saga, { runs: 0, maxStates: 50, allowPartial: true })).resolves.toMatchObject({ truncated: true });
  });

  test('a skipped model check is neither exhaustive nor truncated, and the summary says it was skipped', async () => {
    const r = await verifySaga(one, { runs: 2, seed: 3, skipModel: true });
    expect(r).toMatchObject({ exhaustive: false, truncated: false, maxStates: undefined, states: 0, runs: 2 });
    expect(String(r)).toBe('verifySaga(one@1): model check skipped; 2 simulated run(s); 0 violation(s)');
  }, 60_000);
});

describe('verifySaga refuses misuse before anything runs', () => {
  test('an unknown option is refused, naming it and what is allowed', async () => {
    let called = 0;
    const e = await refusal(saga, { run: 5, input: () => (called++, {}) });
    expect(e).toBeInstanceOf(InvalidOptionError);
    expect((e as InvalidOptionError).option).toBe('run');
    expect(e.message).toContain('allowed: runs, seed, path, modelRetryCap, skipModel, input, faults, maxStates, allowPartial');
    expect(e.message).toContain("did you mean 'runs'?");
    expect(called).toBe(0);
    const f = await refusal(saga, { faults: { dorp: 10 } });
    expect(f).toBeInstanceOf(InvalidOptionError);
    expect((f as InvalidOptionError).option).toBe('faults.dorp');
    expect(f.message).toContain("did you mean 'faults.drop'?");
  });

  test.each([
    ['runs', { runs: -1 }, 'must be an integer >= 0'],
    ['runs', { runs: 1.5 }, 'must be an integer >= 0'],
    ['runs', { runs: '5' }, 'got the string "5"'],
    ['maxStates', { maxStates: 0 }, 'must be an integer >= 1'],
    ['maxStates', { maxStates: 2.5 }, 'must be an integer >= 1'],
    ['maxStates', { maxStates: Number.NaN }, 'got NaN'],
    ['modelRetryCap', { modelRetryCap: -1 }, 'must be an integer from 0 to 10'],
    ['seed', { seed: 1.5 }, 'must be an integer'],
    ['path', { path: '1:2' }, 'only with its seed'],
    ['path', { seed: 1, path: 'x' }, "a fast-check path such as '17:3:0'"],
    ['skipModel', { skipModel: 'yes' }, 'must be true or false'],
    ['allowPartial', { allowPartial: 1 }, 'must be true or false'],
    ['input', { input: { n: 1 } }, 'must be a function (sagaId) => saga input'],
    ['faults', { faults: null }, 'must be an object of fault bounds'],
    ['faults.drop', { faults: { drop: 150 } }, 'must be an integer from 0 to 100 (a percentage), got 150'],
    ['faults.hosts', { faults: { hosts: 0 } }, 'must be an integer from 1 to 3'],
    ['options', null, 'must be an object of verifySaga options'],
    ['runs', { runs: 0, skipModel: true }, 'nothing would be verified'],
  ])('option %s: %j is refused', async (option, options, text) => {
    const e = await refusal(saga, options);
    expect(e).toBeInstanceOf(InvalidOptionError);
    expect((e as InvalidOptionError).option).toBe(option);
    expect(e.message).toContain(`option '${option}': `);
    expect(e.message).toContain(text);
  });

  test.each([
    ['a BigInt', () => ({ total: 10n }), "input('model').total is a BigInt"],
    ['a Date', () => ({ when: new Date(0) }), "input('model').when is a Date"],
    ['a Map', () => new Map([['a', 1]]), "input('model') is a Map"],
  ])('a saga input holding %s is refused as not plain JSON, not reported as a violation', async (_what, input, text) => {
    const e = await refusal(saga, { runs: 5, input });
    expect(e).toBeInstanceOf(InputNotSerializableError);
    expect(e.message).toContain(text);
  });

  test('a simulated saga input that is not JSON is refused too, with the model check skipped', async () => {
    const e = await refusal(saga, { runs: 5, skipModel: true, input: (id: string) => ({ id, at: new Date(0) }) });
    expect(e).toBeInstanceOf(InputNotSerializableError);
    expect(e.message).toContain("input('saga-0').at is a Date");
  });

  test('a first step whose input function makes a value that is not JSON is refused, naming the step', async () => {
    const dated = defineSaga({ name: 'dated', version: 1, steps: { a: { worker: 'w', input: () => ({ at: new Date(0) }) } } });
    const e = await refusal(dated, { runs: 0 });
    expect(e).toBeInstanceOf(InputNotSerializableError);
    expect(e.message).toContain("step 'a' input (on the saga input of 'model').at is a Date");
  });

  test('an input function that throws is refused: the option, or the step whose input reads a saga input not given', async () => {
    const e = await refusal(saga, { runs: 0, input: () => { throw new Error('no fixture'); } });
    expect(e).toBeInstanceOf(InvalidOptionError);
    expect(e.message).toBe("option 'input': input('model') threw: no fixture");
    const reads = defineSaga<{ hotel: { city: string } }>({ name: 'reads', version: 1, steps: { h: { worker: 'w', input: (t) => t.hotel.city } } });
    const f = await refusal(reads, { runs: 0 });
    expect(f).toBeInstanceOf(SagaDefinitionError);
    expect((f as SagaDefinitionError).path).toBe('steps.h.input');
    expect(f.message).toContain('the model check starts the saga with the input null when the input option is not given: pass input');
  });

  test.each([
    ['undefined', undefined, 'got undefined'],
    ['a copy of a definition', { ...saga }, 'an object that defineSaga did not return'],
    ['a hand-made definition with no worker', { kind: 'saga', name: 'x', version: 1, steps: [{ id: 'a' }], join: { kind: 'all' } }, 'an object that defineSaga did not return'],
    ['a saga spec not passed to defineSaga', { name: 'x', version: 1, steps: { a: { worker: 'w' } } }, 'an object without kind: "saga"'],
  ])('%s is refused as not a defineSaga definition', async (_what, def, text) => {
    const e = await refusal(def, { runs: 0 });
    expect(e).toBeInstanceOf(SagaDefinitionError);
    expect(e.message).toContain('verifySaga needs a saga made with defineSaga(...)');
    expect(e.message).toContain(text);
  });

  test('a step without a worker is refused by defineSaga, naming the field', () => {
    expect(() => defineSaga({ name: 'x', version: 1, steps: { a: {} as never } })).toThrow(SagaDefinitionError);
  });
});

describe('model check and simulation primitives', () => {
  test('model violations render the bad path event by event', () => {
    const text = explainModelViolation({ property: 'p', message: 'm', path: ['(start)', 'STEP.TIMED_OUT(a#1)'] });
    expect(text).toContain('p: m');
    expect(text).toContain('2. STEP.TIMED_OUT(a#1)');
  });

  test('exploreSaga covers committed, compensated and parked ends of a one-step saga', () => {
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

  test('simulate refuses a coordinator lease that is not a number of at least 40 ms, before running anything', async () => {
    for (const bad of [10, Number.NaN, '500' as unknown as number]) {
      await expect(simulate(saga, { tape: [], faults: NO_FAULTS, coordinatorLeaseMs: bad })).rejects.toMatchObject({ code: 'OPTION_INVALID', option: 'coordinatorLeaseMs' });
    }
    const r = await simulate(saga, { tape: [], faults: NO_FAULTS, coordinatorLeaseMs: 100 });
    expect(r.outcomes.map((o) => o?.status)).toEqual(['committed']);
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
