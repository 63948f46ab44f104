/**
 * Symmetry reduction of the saga model check: merging states equal up to a permutation of
 * interchangeable steps must find what the full traversal finds, in fewer states.
 */
import { describe, expect, test } from 'vitest';
import { defineSaga } from '../../src/define.ts';
import type { JoinSpec, SagaDefinition, StepSpec } from '../../src/types.ts';
import { explainModelViolation, exploreSaga, symmetryClasses } from '../../src/testing/model.ts';
import type { ModelReport } from '../../src/testing/model.ts';

function parallel(n: number, retries: number, compRetries: number, join: JoinSpec = { kind: 'all' }) {
  const steps: Record<string, StepSpec> = {};
  for (let i = 0; i < n; i++) steps[`s${i}`] = { worker: 'w', retries };
  return defineSaga({ name: `parallel${n}`, version: 1, steps, join, compensation: { retries: compRetries } });
}

const kinds = (r: ModelReport) => Object.entries(r.finals).filter(([, n]) => n > 0).map(([k]) => k).sort();

describe('symmetry classes', () => {
  test('steps with the same after, dependents, input and options form a class', () => {
    const fanin = defineSaga({
      name: 'fanin',
      version: 1,
      steps: { a: { worker: 'w' }, b: { worker: 'v' }, c: { worker: 'w', after: ['a', 'b'] } },
    });
    expect(symmetryClasses(fanin)).toEqual([['a', 'b']]);
    const split = defineSaga({
      name: 'split',
      version: 1,
      steps: { a: { worker: 'w' }, b: { worker: 'w', timeoutMs: 5_000 }, c: { worker: 'w' }, d: { worker: 'w', after: ['a'] } },
    });
    // a has a dependent, b another timeout: only c stays, alone.
    expect(symmetryClasses(split)).toEqual([]);
    const inputs = defineSaga({
      name: 'inputs',
      version: 1,
      steps: { a: { worker: 'w', input: (x: unknown) => x }, b: { worker: 'w', input: (x: unknown) => x }, c: { worker: 'w' }, d: { worker: 'w' } },
    });
    // Different input functions may differ (one may throw): a and b are not interchangeable.
    expect(symmetryClasses(inputs)).toEqual([['c', 'd']]);
  });
});

const shapes: SagaDefinition[] = [
  parallel(2, 0, 0),
  parallel(2, 1, 1),
  parallel(2, 1, 1, { kind: 'any' }),
  parallel(3, 0, 0),
  parallel(3, 0, 0, { kind: 'any' }),
  parallel(3, 0, 0, { kind: 'quorum', n: 2 }),
  defineSaga({ name: 'fanin', version: 1, steps: { a: { worker: 'w' }, b: { worker: 'w' }, c: { worker: 'w', after: ['a', 'b'] } }, compensation: { retries: 1 } }),
];

describe('symmetry reduction finds what the full traversal finds', () => {
  for (const def of shapes) {
    test(`${def.name}${def.join.kind === 'all' ? '' : ` join ${def.join.kind}`}, retries ${def.steps[0]?.retries}/${def.steps[0]?.compensation.retries}`, () => {
      const t0 = performance.now();
      const reduced = exploreSaga(def, { maxStates: 600_000 });
      const t1 = performance.now();
      const full = exploreSaga(def, { maxStates: 600_000, symmetry: false });
      console.log(
        `[model] ${reduced.shape}: ${reduced.states} states, ${reduced.transitions} transitions with symmetry (${Math.round(t1 - t0)} ms); ` +
          `${full.states} states, ${full.transitions} transitions without (${Math.round(performance.now() - t1)} ms)`,
      );
      expect(reduced.symmetry).toBe(true);
      expect(reduced.symmetryClasses.length).toBe(1);
      expect(full.symmetry).toBe(false);
      expect(full.symmetryClasses).toEqual([]);
      expect(reduced.truncated).toBe(false);
      expect(full.truncated).toBe(false);
      expect(reduced.violations.map(explainModelViolation)).toEqual([]);
      expect(full.violations.map(explainModelViolation)).toEqual([]);
      expect(kinds(reduced)).toEqual(kinds(full));
      expect(kinds(reduced)).toEqual(['committed', 'compensated', 'compensationFailed']);
      expect(reduced.states).toBeLessThan(full.states);
    }, 300_000);
  }

  test('off with a coordinator crash', () => {
    const r = exploreSaga(parallel(2, 0, 0), { crashes: 1, maxStates: 600_000 });
    expect(r.symmetry).toBe(false);
    expect(r.symmetryClasses).toEqual([]);
  });
});
