/**
 * Model checking of the compensation orders (docs/patterns.md, "Compensation order"):
 * `reverse` (the default, checked by every other model test too), `parallel` and
 * `sequential`, on chains, fan-ins and parallel steps, under every join, with gates and
 * with a coordinator crash. Besides every property of the saga model, each order has its
 * own, read from the commands and the world (the ghost), not from the machine's plan:
 * - `reverse` and `sequential`: no step is undone while one that ran after it may hold
 *   an effect (`staged-compensation-in-reverse-order`);
 * - `sequential`: no step is undone while another the saga still undoes completed after
 *   it, or never reported (`sequential-undo-last-completed-first`);
 * - `parallel`: every compensation goes out with the decision (`parallel-undoes-at-once`).
 */
import { describe, expect, test } from 'vitest';
import { defineSaga } from '../../src/define.ts';
import type { CompensationOrder, JoinSpec, SagaDefinition, StepSpec } from '../../src/types.ts';
import { explainModelViolation, exploreSaga } from '../../src/testing/model.ts';

function saga(name: string, order: CompensationOrder, layout: Record<string, string[]>, join: JoinSpec = { kind: 'all' }, gated: readonly string[] = []): SagaDefinition {
  const steps: Record<string, StepSpec> = {};
  for (const [id, after] of Object.entries(layout)) {
    steps[id] = { worker: `w-${id}`, after, ...(gated.includes(id) ? { gate: (r: unknown) => r === 'r' || 'not r' } : {}) };
  }
  return defineSaga({ name, version: 1, steps, join, compensation: { retries: 1, order } });
}

const layouts: Record<string, Record<string, string[]>> = {
  chain: { a: [], b: ['a'], c: ['b'] },
  fanin: { a: [], b: [], c: ['a', 'b'] },
  parallel: { a: [], b: [], c: [] },
};

describe('compensation order: each order undoes in its own order, and every guarantee holds', () => {
  for (const order of ['parallel', 'sequential'] as const) {
    for (const [shape, layout] of Object.entries(layouts)) {
      test(`${order}, ${shape}`, () => {
        const r = exploreSaga(saga(`${order}-${shape}`, order, layout));
        console.log(`[model] ${r.shape}: ${r.states} states, ${r.transitions} transitions, exhaustive: ${!r.truncated}`);
        expect(r.truncated).toBe(false);
        expect(r.violations.map(explainModelViolation)).toEqual([]);
        expect(r.finals.compensated).toBeGreaterThan(0);
        expect(r.finals.compensationFailed).toBeGreaterThan(0);
      });
    }
    for (const join of [{ kind: 'any' }, { kind: 'quorum', n: 2 }] as const) {
      test(`${order}, 3 parallel steps under ${join.kind}`, () => {
        const r = exploreSaga(saga(`${order}-${join.kind}`, order, layouts.parallel as Record<string, string[]>, join));
        expect(r.truncated).toBe(false);
        expect(r.violations.map(explainModelViolation)).toEqual([]);
        expect(r.finals.committed).toBeGreaterThan(0);
      });
    }
    test(`${order}, with a gate: a rejected step takes its place in the order`, () => {
      const r = exploreSaga(saga(`${order}-gated`, order, { a: [], b: [], c: ['a'] }, { kind: 'all' }, ['a', 'b']));
      expect(r.truncated).toBe(false);
      expect(r.violations.map(explainModelViolation)).toEqual([]);
    });
    test(`${order}, with a coordinator crash at any point`, () => {
      const r = exploreSaga(saga(`${order}-crash`, order, { a: [], b: ['a'] }), { crashes: 1 });
      expect(r.truncated).toBe(false);
      expect(r.violations.map(explainModelViolation)).toEqual([]);
    });
  }
});
