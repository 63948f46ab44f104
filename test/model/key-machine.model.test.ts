/**
 * Model checking of one idempotency key: the key machine alone (with @xstate/graph and
 * with a BFS over the world), and in product with one coordinator step (the real saga
 * machine) on one or two worker hosts that share a compare-and-set store, running the
 * real host protocol over a faulty channel, with host and coordinator crashes.
 */
import { getShortestPaths, getSimplePaths } from '@xstate/graph';
import { transition } from 'xstate';
import { describe, expect, test } from 'vitest';
import { defineSaga } from '../../src/define.ts';
import { keyMachine } from '../../src/machines/key-machine.ts';
import type { KeyEvent } from '../../src/machines/key-machine.ts';
import { exploreKeyMachine, exploreProduct } from '../../src/testing/key-model.ts';
import type { ProductOptions } from '../../src/testing/key-model.ts';
import { explainModelViolation } from '../../src/testing/model.ts';

const DEEP = process.env.SCATTER_SAGA_DEEP === '1';
const ERR = { code: 'WORKER_ERROR', message: 'x', retryable: false };
const RETRY = { ...ERR, retryable: true };
const events = (s: { value: unknown }): KeyEvent[] => {
  const out: KeyEvent[] = [{ type: 'DO', attempt: 1 }, { type: 'DO', attempt: 2 }, { type: 'COMPENSATE' }];
  if (s.value === 'doing') out.push({ type: 'DO.OK', result: 'r' }, { type: 'DO.FAILED', error: ERR }, { type: 'DO.FAILED', error: RETRY }, { type: 'CLAIM.EXPIRED' });
  if (s.value === 'compensating') out.push({ type: 'COMPENSATION.OK' }, { type: 'COMPENSATION.FAILED', error: RETRY }, { type: 'CLAIM.EXPIRED' });
  return out;
};
const serializeState = (s: { value: unknown; context: { interrupted: boolean; attempt: number } }) => `${String(s.value)}|${s.context.interrupted}|${s.context.attempt}`;

describe('worker-host key machine', () => {
  test('@xstate/graph: on every simple path, once undone no do ever runs again', () => {
    const paths = getSimplePaths(keyMachine, { events, serializeState });
    const shortest = getShortestPaths(keyMachine, { events, serializeState });
    let transitions = 0;
    for (const path of paths) {
      let snap = keyMachine.resolveState({ value: 'new', context: { attempt: 0, interrupted: false, result: undefined, error: undefined } });
      let undone = false;
      for (const step of path.steps) {
        if ((step.event.type as string) === 'xstate.init') continue;
        const [next, actions] = transition(keyMachine, snap, step.event as KeyEvent);
        transitions++;
        if (actions.some((a) => a.type === 'runDo')) expect(undone, `do ran after compensation on ${path.steps.map((s) => s.event.type).join(' -> ')}`).toBe(false);
        if (actions.some((a) => a.type === 'runCompensate') || next.value === 'compensated') undone = true;
        snap = next;
      }
    }
    console.log(`[model] key machine (@xstate/graph): ${shortest.length} states, ${paths.length} simple paths, ${transitions} transitions replayed`);
    expect(shortest.length).toBeGreaterThanOrEqual(9);
  });

  test('with the world: effects at most once, none after an undo, acknowledged only when undone', () => {
    const r = exploreKeyMachine();
    console.log(`[model] key machine x world: ${r.states} states, ${r.transitions} transitions`);
    expect(r.violations.map(explainModelViolation)).toEqual([]);
    expect(r.states).toBeGreaterThan(20);
  });
});

const oneStep = (retries: number, compRetries: number) => defineSaga({ name: 'one', version: 1, steps: { a: { worker: 'w', retries } }, compensation: { retries: compRetries } });

/**
 * Each configuration stays small enough to be exhaustive; together they cover two hosts
 * racing on one key (claims, compare-and-set, waits), host and coordinator crashes with
 * recovery and no responders, lost, duplicated, garbled and oversized replies, transport
 * deadlines passing with the request still in flight, a lease passing while a do runs,
 * and an operator retry.
 * `npm run verify:deep` adds larger ones.
 */
const configs: [string, ProductOptions][] = [
  ['two hosts race: do and compensate on different hosts, a retry, a lost and a duplicated message', { hosts: 2, stepRetries: 1, compensationRetries: 0, duplicates: 1, drops: 1, operatorRetries: 0 }],
  ['two hosts race: retried compensations', { hosts: 2, stepRetries: 1, compensationRetries: 1, duplicates: 0, drops: 1, operatorRetries: 0 }],
  ['a host crash and a coordinator crash with recovery (no responders while the host is down)', { hosts: 1, stepRetries: 1, compensationRetries: 0, duplicates: 0, drops: 0, hostCrashes: 1, coordinatorCrashes: 1, operatorRetries: 0 }],
  ['garbled, oversized and lost replies', { hosts: 1, stepRetries: 1, compensationRetries: 0, duplicates: 0, drops: 1, garbles: 1, oversizes: 1, operatorRetries: 0 }],
  ['the transport gives up (STEP_TIMED_OUT) while a request or its reply is in flight, two hosts', { hosts: 2, stepRetries: 1, compensationRetries: 0, duplicates: 0, drops: 0, transportTimeouts: 1, operatorRetries: 0 }],
  ["a host's lease passes while its do runs: another host takes the key over, the do may still apply", { hosts: 2, stepRetries: 0, compensationRetries: 0, duplicates: 0, drops: 0, leaseExpiries: 1, operatorRetries: 0 }],
  ['a parked saga retried by an operator, a lost message', { hosts: 1, stepRetries: 0, compensationRetries: 0, duplicates: 0, drops: 1, operatorRetries: 1 }],
];
if (DEEP) {
  configs.push(
    ['deep: two hosts, both crash, and the coordinator crashes', { hosts: 2, stepRetries: 0, compensationRetries: 0, duplicates: 0, drops: 0, hostCrashes: 2, coordinatorCrashes: 1, operatorRetries: 0 }],
    ['deep: two hosts race with every channel fault', { hosts: 2, stepRetries: 1, compensationRetries: 1, duplicates: 1, drops: 1, garbles: 1, operatorRetries: 0 }],
  );
}

describe('one coordinator step x one key on worker hosts sharing a compare-and-set store', () => {
  for (const [what, options] of configs) {
    test(what, () => {
      const t0 = performance.now();
      const r = exploreProduct(oneStep, { maxStates: 2_000_000, ...options });
      console.log(`[model] ${r.shape}: ${r.states} states, ${r.transitions} transitions (${Math.round(performance.now() - t0)} ms)`);
      expect(r.violations.map(explainModelViolation)).toEqual([]);
      expect(r.truncated).toBe(false);
      expect(r.states).toBeGreaterThan(500);
    }, 600_000);
  }
});
