/**
 * Model checking of the supervisor gate (docs/patterns.md): a gated step's `do` may return
 * a result its gate accepts or one it rejects, on every path. The checks are the saga
 * model's own, plus one that asks the gate itself, from the definition: a committed saga
 * keeps no result its gate rejects (`kept-results-pass-their-gates`). A rejected step's
 * effect exists, so the world's ledger must see it undone (`committed-releases-the-rest`,
 * `compensated-leaves-no-effect`).
 */
import { describe, expect, test } from 'vitest';
import { defineSaga } from '../../src/define.ts';
import type { JoinSpec, StepSpec } from '../../src/types.ts';
import { explainModelViolation, exploreSaga } from '../../src/testing/model.ts';

/** The model's do returns 'r' or, for a gated step, also 'r2': this gate takes only the first. */
const onlyR = (result: unknown) => result === 'r' || `supervisor: ${JSON.stringify(result)} is not r`;

function gated(name: string, layout: Record<string, string[]>, gates: readonly string[], join: JoinSpec = { kind: 'all' }, retries = 0, gate: StepSpec['gate'] = onlyR) {
  const steps: Record<string, StepSpec> = {};
  for (const [id, after] of Object.entries(layout)) steps[id] = { worker: `w-${id}`, after, retries, ...(gates.includes(id) ? { gate } : {}) };
  return defineSaga({ name, version: 1, steps, join, compensation: { retries: 1 } });
}

const shapes = [
  gated('gate1', { a: [] }, ['a'], { kind: 'all' }, 1),
  gated('gate2', { a: [], b: [] }, ['a', 'b']),
  gated('gate3-any', { a: [], b: [], c: [] }, ['a', 'b']),
  gated('gate3-any', { a: [], b: [], c: [] }, ['a', 'b'], { kind: 'any' }),
  gated('gate3-quorum', { a: [], b: [], c: [] }, ['a', 'c'], { kind: 'quorum', n: 2 }),
  gated('gate-chain', { a: [], b: ['a'] }, ['a', 'b'], { kind: 'all' }, 1),
  gated('gate-fanin', { a: [], b: [], c: ['a', 'b'] }, ['b']),
];

describe('supervisor gate: a rejected result is never kept, and its effect is undone', () => {
  for (const def of shapes) {
    test(`${def.name}, join ${def.join.kind}, gated ${def.steps.filter((p) => p.gate !== undefined).map((p) => p.id).join('+')}`, () => {
      const r = exploreSaga(def);
      console.log(`[model] ${r.shape}, gated: ${r.states} states, ${r.transitions} transitions, exhaustive: ${!r.truncated}`);
      expect(r.truncated).toBe(false);
      expect(r.violations.map(explainModelViolation)).toEqual([]);
      expect(r.finals.committed).toBeGreaterThan(0);
      expect(r.finals.compensated).toBeGreaterThan(0);
    });
  }

  test('with a coordinator crash at any point', () => {
    const r = exploreSaga(gated('gate2', { a: [], b: [] }, ['a']), { crashes: 1 });
    expect(r.truncated).toBe(false);
    expect(r.violations.map(explainModelViolation)).toEqual([]);
  });

  test('a gate that rejects every result: no saga commits, and every path still ends undone or parked', () => {
    const r = exploreSaga(gated('gate-none', { a: [], b: [] }, ['a', 'b'], { kind: 'all' }, 0, (x) => `never: ${String(x)}`));
    expect(r.violations.map(explainModelViolation)).toEqual([]);
    expect(r.finals.committed).toBe(0);
    expect(r.finals.compensated).toBeGreaterThan(0);
    expect(r.finals.compensationFailed).toBeGreaterThan(0);
  });

  test('a gate that throws rejects: under any, the saga commits only through the ungated step', () => {
    const r = exploreSaga(gated('gate-throws', { a: [], b: [] }, ['a'], { kind: 'any' }, 0, () => {
      throw new Error('supervisor down');
    }));
    expect(r.violations.map(explainModelViolation)).toEqual([]);
    expect(r.finals.committed).toBeGreaterThan(0);
  });
});
