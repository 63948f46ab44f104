/**
 * Model checking of the worker host's key machine, alone (with @xstate/graph and with
 * a BFS over the host's executor), and in product with one coordinator step over a
 * channel that loses and reorders messages.
 */
import { getShortestPaths, getSimplePaths } from '@xstate/graph';
import { transition } from 'xstate';
import { describe, expect, test } from 'vitest';
import { defineSaga } from '../../src/define.ts';
import { keyMachine } from '../../src/machines/key-machine.ts';
import type { KeyEvent } from '../../src/machines/key-machine.ts';
import { exploreKeyMachine, exploreProduct } from '../../src/testing/key-model.ts';
import { explainModelViolation } from '../../src/testing/model.ts';

const ERR = { code: 'WORKER_ERROR', message: 'x', retryable: false };
const RETRY = { ...ERR, retryable: true };
const events = (s: { value: unknown }): KeyEvent[] => {
  const out: KeyEvent[] = [{ type: 'DO', attempt: 1 }, { type: 'DO', attempt: 2 }, { type: 'COMPENSATE' }];
  if (s.value === 'doing') out.push({ type: 'DO.OK', result: 'r' }, { type: 'DO.FAILED', error: ERR }, { type: 'DO.FAILED', error: RETRY });
  if (s.value === 'compensating') out.push({ type: 'COMPENSATION.OK' }, { type: 'COMPENSATION.FAILED', error: RETRY });
  return out;
};
const serializeState = (s: { value: unknown; context: { compensateRequested: boolean; blind: boolean; attempt: number } }) =>
  `${String(s.value)}|${s.context.compensateRequested}|${s.context.blind}|${s.context.attempt}`;


describe('worker-host key machine', () => {
  test('@xstate/graph: on every simple path, once compensated no do ever runs again', () => {
    const paths = getSimplePaths(keyMachine, { events, serializeState });
    const shortest = getShortestPaths(keyMachine, { events, serializeState });
    let transitions = 0;
    for (const path of paths) {
      let snap = keyMachine.resolveState({ value: 'new', context: { compensateRequested: false, blind: false, attempt: 0, interrupted: false, result: undefined, error: undefined } });
      let undone = false;
      for (const step of path.steps) {
        if ((step.event.type as string) === 'xstate.init') continue;
        const [next, actions] = transition(keyMachine, snap, step.event as KeyEvent);
        transitions++;
        if (actions.some((a) => a.type === 'runDo')) expect(undone, `do ran after compensation on ${path.steps.map((s) => s.event.type).join(' -> ')}`).toBe(false);
        if (next.value === 'compensated') undone = true;
        snap = next;
      }
    }
    console.log(`[model] key machine (@xstate/graph): ${shortest.length} states, ${paths.length} simple paths, ${transitions} transitions replayed`);
    expect(shortest.length).toBeGreaterThanOrEqual(7);
  });

  test('with the host executor and the world: effects at most once, none after compensation', () => {
    const r = exploreKeyMachine();
    console.log(`[model] key machine x executor: ${r.states} states, ${r.transitions} transitions, ${r.paths} paths`);
    expect(r.violations.map(explainModelViolation)).toEqual([]);
    expect(r.states).toBeGreaterThan(5);
  });
});

describe('one coordinator step x one worker-host key over a lossy, reordering channel', () => {
  const oneStep = (retries: number, compRetries: number) =>
    defineSaga({ name: 'one', version: 1, steps: { a: { worker: 'w', retries } }, compensation: { retries: compRetries } });
  for (const [stepRetries, compensationRetries, drops] of [
    [0, 1, 2],
    [1, 1, 2],
    [1, 1, 3],
  ] as const) {
    test(`retries ${stepRetries}/${compensationRetries}, ${drops} drops, 1 duplicate: committed => effect 1, compensated => effect 0`, () => {
      const t0 = performance.now();
      const r = exploreProduct(oneStep, { stepRetries, compensationRetries, duplicates: 1, drops });
      console.log(`[model] ${r.shape}: ${r.states} states, ${r.transitions} transitions, ${r.paths} paths (${Math.round(performance.now() - t0)} ms)`);
      expect(r.truncated).toBe(false);
      expect(r.violations.map(explainModelViolation)).toEqual([]);
    });
  }
});
