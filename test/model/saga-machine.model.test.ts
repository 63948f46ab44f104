/**
 * Model checking of the real saga machine: every reachable state of each shape, under
 * every event a saga can see, checked against the guarantee (DESIGN section 2).
 */
import { describe, expect, test } from 'vitest';
import { defineSaga } from '../../src/define.ts';
import type { JoinSpec, StepSpec } from '../../src/types.ts';
import { explainModelViolation, exploreSaga } from '../../src/testing/model.ts';

function parallel(n: number, retries: number, compRetries: number, join: JoinSpec = { kind: 'all' }) {
  const steps: Record<string, StepSpec> = {};
  for (let i = 0; i < n; i++) steps[`s${i}`] = { worker: `w${i}`, retries };
  return defineSaga({ name: `parallel${n}`, version: 1, steps, join, compensation: { retries: compRetries } });
}

function staged(name: string, layout: Record<string, string[]>, retries: number, compRetries: number) {
  const steps: Record<string, StepSpec> = {};
  for (const [id, after] of Object.entries(layout)) steps[id] = { worker: `w-${id}`, retries, after };
  return defineSaga({ name, version: 1, steps, compensation: { retries: compRetries } });
}

const DEEP = process.env.SCATTER_SAGA_DEEP === '1';

const shapes = [
  parallel(1, 1, 1),
  parallel(2, 1, 1),
  parallel(3, 1, 1),
  parallel(4, 0, 1),
  parallel(2, 1, 1, { kind: 'any' }),
  parallel(3, 0, 1, { kind: 'any' }),
  parallel(3, 0, 1, { kind: 'quorum', n: 2 }),
  ...(DEEP ? [parallel(4, 0, 1, { kind: 'quorum', n: 2 })] : []),
  staged('chain2', { a: [], b: ['a'] }, 1, 1),
  staged('chain3', { a: [], b: ['a'], c: ['b'] }, 0, 1),
  staged('fanin', { a: [], b: [], c: ['a', 'b'] }, 0, 1),
  staged('diamond', { a: [], b: ['a'], c: ['a'], d: ['b', 'c'] }, 0, 1),
];

/** A coordinator crash at any point, recovered from the last write-ahead write or the last write. */
const crashShapes = [
  parallel(1, 1, 1),
  parallel(2, 0, 1),
  parallel(2, 1, 0),
  parallel(2, 0, 0, { kind: 'any' }),
  staged('chain2', { a: [], b: ['a'] }, 1, 0),
  staged('chain3', { a: [], b: ['a'], c: ['b'] }, 0, 0),
  ...(DEEP ? [parallel(3, 0, 0, { kind: 'quorum', n: 2 }), staged('chain2', { a: [], b: ['a'] }, 1, 1)] : []),
];

/** Shapes explored with hosts that refuse requests at capacity (backpressure). */
const overloadShapes = [
  parallel(1, 1, 1),
  parallel(2, 0, 1),
  parallel(2, 1, 0, { kind: 'any' }),
  staged('chain2', { a: [], b: ['a'] }, 1, 1),
  ...(DEEP ? [parallel(2, 1, 1), parallel(3, 0, 0, { kind: 'quorum', n: 2 })] : []),
];

describe('saga machine: refusals at capacity keep the guarantee and spend no retry budget', () => {
  for (const def of overloadShapes) {
    test(`${def.name}${def.join.kind === 'all' ? '' : ` join ${def.join.kind}`}, retries ${def.steps[0]?.retries}/${def.steps[0]?.compensation.retries}, hosts at capacity`, () => {
      const t0 = performance.now();
      const r = exploreSaga(def, { overload: true, maxStates: 600_000 });
      const plain = exploreSaga(def, { maxStates: 600_000 });
      console.log(`[model] ${r.shape}, hosts at capacity: ${r.states} states (${plain.states} without), ${r.transitions} transitions (${Math.round(performance.now() - t0)} ms)`);
      expect(r.truncated).toBe(false);
      expect(r.violations.map(explainModelViolation)).toEqual([]);
      expect(r.states).toBeGreaterThan(plain.states);
      expect(r.finals.committed).toBeGreaterThan(0);
      expect(r.finals.compensated).toBeGreaterThan(0);
      expect(r.finals.compensationFailed).toBeGreaterThan(0);
    }, 300_000);
  }
});

describe('saga machine: every reachable state keeps the guarantee', () => {
  for (const [def, crashes] of [...shapes.map((d) => [d, 0] as const), ...crashShapes.map((d) => [d, 1] as const)]) {
    test(def.name + (def.join.kind === 'all' ? '' : ` join ${def.join.kind}`) + (crashes > 0 ? `, retries ${def.steps[0]?.retries}/${def.steps[0]?.compensation.retries}, a coordinator crash` : ''), () => {
      const t0 = performance.now();
      const r = exploreSaga(def, { crashes, maxStates: 600_000 });
      console.log(
        `[model] ${r.shape}${crashes > 0 ? ', a coordinator crash' : ''}: ${r.states} states, ${r.transitions} transitions, ${r.paths} paths; ` +
          `finals committed ${r.finals.committed}, compensated ${r.finals.compensated}, parked ${r.finals.compensationFailed} (${Math.round(performance.now() - t0)} ms)`,
      );
      expect(r.truncated).toBe(false);
      expect(r.violations.map(explainModelViolation)).toEqual([]);
      // The traversal reaches each kind of end this shape can have.
      expect(r.finals.committed).toBeGreaterThan(0);
      expect(r.finals.compensated).toBeGreaterThan(0);
      expect(r.finals.compensationFailed).toBeGreaterThan(0);
    }, 300_000);
  }
});
