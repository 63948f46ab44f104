/**
 * A planted bug the model check must still catch with symmetry reduction on: compensations
 * launched without waiting for the steps that ran after them to be undone.
 */
import { expect, test, vi } from 'vitest';
import { defineSaga } from '../../src/define.ts';
import { exploreSaga } from '../../src/testing/model.ts';

vi.mock('../../src/machines/saga-logic.ts', async (importOriginal) => {
  const real = await importOriginal<typeof import('../../src/machines/saga-logic.ts')>();
  return {
    ...real,
    launchCompensations: (def: Parameters<typeof real.launchCompensations>[0], ctx: Parameters<typeof real.launchCompensations>[1]) =>
      real.launchCompensations({ ...def, steps: def.steps.map((p) => ({ ...p, dependents: [] })) }, ctx),
  };
});

test('compensating out of dependency order is caught with symmetry on', () => {
  const fanin = defineSaga({ name: 'fanin', version: 1, steps: { a: { worker: 'w' }, b: { worker: 'w' }, c: { worker: 'w', after: ['a', 'b'] } }, compensation: { retries: 0 } });
  const r = exploreSaga(fanin, { maxStates: 600_000 });
  expect(r.symmetry).toBe(true);
  expect(r.symmetryClasses).toEqual([['a', 'b']]);
  expect(r.violations.map((v) => v.property)).toContain('staged-compensation-in-reverse-order');
  const full = exploreSaga(fanin, { maxStates: 600_000, symmetry: false });
  expect(full.violations.map((v) => v.property).sort()).toEqual(r.violations.map((v) => v.property).sort());
});
