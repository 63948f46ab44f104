/**
 * Model checking of one idempotency key: the key machine alone (with @xstate/graph and
 * with a BFS over the world), and in product with one coordinator step (the real saga
 * machine) on one or two worker hosts that share a compare-and-set store, running the
 * real host protocol over a faulty channel, with host crashes and restarts, coordinator
 * crashes, operator retries and an operator resolve.
 */
import { getShortestPaths, getSimplePaths } from '@xstate/graph';
import { transition } from 'xstate';
import { describe, expect, test } from 'vitest';
import { defineSaga } from '../../src/define.ts';
import { InvalidOptionError, SagaDefinitionError } from '../../src/errors.ts';
import { keyMachine } from '../../src/machines/key-machine.ts';
import type { KeyEvent } from '../../src/machines/key-machine.ts';
import { exploreKeyMachine, exploreProduct } from '../../src/testing/key-model.ts';
import type { ProductOptions } from '../../src/testing/key-model.ts';
import { explainModelViolation } from '../../src/testing/model.ts';

const DEEP = process.env.SCATTER_SAGA_DEEP === '1';
const ERR = { code: 'WORKER_ERROR', message: 'x', retryable: false };
const RETRY = { ...ERR, retryable: true };
const events = (s: { value: unknown }): KeyEvent[] => {
  const out: KeyEvent[] = [{ type: 'DO', attempt: 1 }, { type: 'DO', attempt: 2 }, { type: 'COMPENSATE' }, { type: 'FENCE', by: 'f' }];
  if (s.value === 'doing') out.push({ type: 'DO.OK', result: 'r' }, { type: 'DO.FAILED', error: ERR }, { type: 'DO.FAILED', error: RETRY }, { type: 'CLAIM.EXPIRED' });
  if (s.value === 'compensating') out.push({ type: 'COMPENSATION.OK' }, { type: 'COMPENSATION.FAILED', error: RETRY }, { type: 'CLAIM.EXPIRED' });
  return out;
};
const serializeState = (s: { value: unknown; context: { interrupted: boolean; attempt: number; fence: unknown } }) => `${String(s.value)}|${s.context.interrupted}|${s.context.attempt}|${s.context.fence === undefined ? '' : 'f'}`;

describe('worker-host key machine', () => {
  test('@xstate/graph: on every simple path, once undone no do ever runs again', () => {
    const paths = getSimplePaths(keyMachine, { events, serializeState });
    const shortest = getShortestPaths(keyMachine, { events, serializeState });
    let transitions = 0;
    for (const path of paths) {
      let snap = keyMachine.resolveState({ value: 'new', context: { attempt: 0, interrupted: false, result: undefined, error: undefined, fence: undefined } });
      let undone = false;
      let fenced = false;
      for (const step of path.steps) {
        if ((step.event.type as string) === 'xstate.init') continue;
        const [next, actions] = transition(keyMachine, snap, step.event as KeyEvent);
        transitions++;
        if (actions.some((a) => a.type === 'runDo')) {
          expect(undone, `do ran after compensation on ${path.steps.map((s) => s.event.type).join(' -> ')}`).toBe(false);
          expect(fenced, `do ran after a fence on ${path.steps.map((s) => s.event.type).join(' -> ')}`).toBe(false);
        }
        if (actions.some((a) => a.type === 'ackFenced')) fenced = true;
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

/** The operator resolved the saga, yet the step's effect is in the system of record. */
const LATE_DO_AFTER_RESOLVE = 'resolved-effect-stays-handled';

interface Config {
  readonly what: string;
  readonly options: ProductOptions;
  /** The exploration must cover every reachable state: the test fails when it is truncated. */
  readonly exhaustive: boolean;
}

/**
 * Each configuration stays small enough to be exhaustive; together they cover two hosts
 * racing on one key (claims, compare-and-set, waits), host crashes (a store write on its
 * way lands or not, the dead claim holds until its lease passes) and restarts,
 * coordinator crashes with recovery and no responders, lost, duplicated, garbled and
 * oversized replies, transport deadlines passing with the request still in flight, a
 * lease passing while a do runs, retry budgets of 2, repeated operator retries, and
 * operator resolves that fence the key (a review, a resolve call that times out while its
 * fence is still on its way). `npm run verify:deep` adds larger ones.
 */
const configs: Config[] = [
  { what: 'two hosts race: do and compensate on different hosts, a retry, a lost and a duplicated message', exhaustive: true, options: { hosts: 2, stepRetries: 1, compensationRetries: 0, duplicates: 1, drops: 1, operatorRetries: 0 } },
  { what: 'two hosts race: retried compensations', exhaustive: true, options: { hosts: 2, stepRetries: 1, compensationRetries: 1, duplicates: 0, drops: 1, operatorRetries: 0 } },
  { what: 'a host crash and restart and a coordinator crash with recovery (no responders while the host is down)', exhaustive: true, options: { hosts: 1, stepRetries: 1, compensationRetries: 0, duplicates: 0, drops: 0, hostCrashes: 1, coordinatorCrashes: 1, operatorRetries: 0 } },
  { what: 'garbled, oversized and lost replies', exhaustive: true, options: { hosts: 1, stepRetries: 1, compensationRetries: 0, duplicates: 0, drops: 1, garbles: 1, oversizes: 1, operatorRetries: 0 } },
  { what: 'the transport gives up (STEP_TIMED_OUT) while a request or its reply is in flight, two hosts', exhaustive: true, options: { hosts: 2, stepRetries: 1, compensationRetries: 0, duplicates: 0, drops: 0, transportTimeouts: 1, operatorRetries: 0 } },
  { what: "a host's lease passes while its do runs: another host takes the key over, the do may still apply", exhaustive: true, options: { hosts: 2, stepRetries: 0, compensationRetries: 0, duplicates: 0, drops: 0, leaseExpiries: 1, operatorRetries: 0 } },
  { what: "two hosts both stall while their dos run (a duplicated request): each may apply late, and each undoes its own late effect", exhaustive: true, options: { hosts: 2, stepRetries: 0, compensationRetries: 0, duplicates: 1, drops: 0, leaseExpiries: 2, operatorRetries: 0 } },
  { what: "the store fails under a host's calls: a stalled host's do applies late and the write of its outcome fails", exhaustive: true, options: { hosts: 2, stepRetries: 0, compensationRetries: 0, duplicates: 0, drops: 0, leaseExpiries: 1, storeFailures: 2, operatorRetries: 0 } },
  { what: 'a parked saga retried by an operator, a lost message', exhaustive: true, options: { hosts: 1, stepRetries: 0, compensationRetries: 0, duplicates: 0, drops: 1, operatorRetries: 1 } },
  { what: 'step retries 2 on two hosts, a lost message', exhaustive: true, options: { hosts: 2, stepRetries: 2, compensationRetries: 0, duplicates: 0, drops: 1, operatorRetries: 0 } },
  { what: 'compensation retries 2', exhaustive: true, options: { hosts: 1, stepRetries: 0, compensationRetries: 2, duplicates: 0, drops: 0, operatorRetries: 0 } },
  { what: 'an operator aborts the running saga: two hosts, a retry, a lost message', exhaustive: true, options: { hosts: 2, stepRetries: 1, compensationRetries: 0, duplicates: 0, drops: 1, operatorRetries: 0, operatorAborts: 1 } },
  { what: 'an operator retry, then an operator resolve', exhaustive: true, options: { hosts: 1, stepRetries: 0, compensationRetries: 0, duplicates: 0, drops: 0, operatorRetries: 1, operatorResolves: 1 } },
  { what: 'resolve calls that fence the key: a review, then a resolve after it; a call that times out while its fence is on its way', exhaustive: true, options: { hosts: 1, stepRetries: 0, compensationRetries: 0, duplicates: 0, drops: 0, operatorRetries: 0, operatorResolves: 3, transportTimeouts: 1 } },
  { what: 'two hosts, one crashes and restarts while the other serves, then an operator resolve', exhaustive: true, options: { hosts: 2, stepRetries: 0, compensationRetries: 0, duplicates: 0, drops: 0, hostCrashes: 1, operatorRetries: 0, operatorResolves: 1 } },
];
if (DEEP) {
  configs.push(
    { what: 'deep: two hosts, both crash and restart, and the coordinator crashes', exhaustive: true, options: { hosts: 2, stepRetries: 0, compensationRetries: 0, duplicates: 0, drops: 0, hostCrashes: 2, coordinatorCrashes: 1, operatorRetries: 0 } },
    // With a duplicate as well, this goes past 2 000 000 states: it would not be exhaustive.
    { what: 'deep: two hosts race with a lost, a garbled and an oversized reply', exhaustive: true, options: { hosts: 2, stepRetries: 1, compensationRetries: 1, duplicates: 0, drops: 1, garbles: 1, oversizes: 1, operatorRetries: 0 } },
    { what: 'deep: step and compensation retries 2', exhaustive: true, options: { hosts: 1, stepRetries: 2, compensationRetries: 2, duplicates: 0, drops: 0, operatorRetries: 0 } },
    { what: 'deep: an operator retry and two resolve calls, a lost message', exhaustive: true, options: { hosts: 1, stepRetries: 0, compensationRetries: 0, duplicates: 0, drops: 1, operatorRetries: 1, operatorResolves: 2 } },
    { what: 'deep: resolves that fence the key while a stalled host\'s do may still apply', exhaustive: true, options: { hosts: 2, stepRetries: 0, compensationRetries: 0, duplicates: 0, drops: 0, operatorRetries: 0, operatorResolves: 2, leaseExpiries: 1 } },
    { what: 'deep: a failed store call on one host, a step retry and a duplicated message', exhaustive: true, options: { hosts: 1, stepRetries: 1, compensationRetries: 0, duplicates: 1, drops: 0, storeFailures: 1, operatorRetries: 0 } },
    // An interrupted do's record answered to a third copy of the request: 1 500 000 states without exhausting the space (about 4 minutes).
    { what: 'deep: two hosts, a host crash mid-do and two duplicates of the request (bounded)', exhaustive: false, options: { hosts: 2, stepRetries: 0, compensationRetries: 0, duplicates: 2, drops: 0, hostCrashes: 1, operatorRetries: 0, maxStates: 1_500_000 } },
    { what: 'deep: two operator retries, then a resolve', exhaustive: true, options: { hosts: 1, stepRetries: 0, compensationRetries: 0, duplicates: 0, drops: 0, operatorRetries: 2, operatorResolves: 1, maxStates: 3_000_000 } },
  );
}

/** One line per configuration, as CI shows it. */
function line(shape: string, r: { states: number; transitions: number; exhaustive: boolean }, ms: number): string {
  return `[model] ${shape}: ${r.states} states, ${r.transitions} transitions, exhaustive: ${r.exhaustive ? 'yes' : 'no'} (${ms} ms)`;
}

describe('one coordinator step x one key on worker hosts sharing a compare-and-set store', () => {
  for (const { what, options, exhaustive } of configs) {
    test(what, () => {
      const t0 = performance.now();
      const r = exploreProduct(oneStep, { maxStates: 2_000_000, ...options });
      console.log(line(r.shape, r, Math.round(performance.now() - t0)));
      expect(r.violations.map(explainModelViolation)).toEqual([]);
      if (exhaustive) {
        expect(r.truncated, `${what}: marked exhaustive but stopped at ${r.states} states`).toBe(false);
        expect(r.exhaustive).toBe(true);
      }
      // Every bound of the configuration was reached on some path: the faults it names were exercised.
      const c = r.coverage;
      expect(c.committed && c.compensated && c.parked, 'reaches committed, compensated and parked').toBe(true);
      expect(c.doAttempts).toBe((options.stepRetries ?? 1) + 1);
      expect(c.compensationAttempts).toBe((options.compensationRetries ?? 1) + 1);
      expect(c.operatorRetries).toBe(options.operatorRetries ?? 1);
      expect(c.resolved).toBe((options.operatorResolves ?? 0) > 0);
      expect(c.resolvedAfterReview, 'a resolve asked for a review and a later call resolved').toBe((options.operatorResolves ?? 0) > 1);
      expect(c.abortedThenCompensated, 'an aborted saga ended compensated').toBe((options.operatorAborts ?? 0) > 0);
      expect(c.hostCrashes).toBe(options.hostCrashes ?? 0);
      expect(c.hostRestarts).toBe(options.hostCrashes ?? 0);
      expect(c.coordinatorCrashes).toBe(options.coordinatorCrashes ?? 0);
      expect(r.states).toBeGreaterThan(500);
    }, 600_000);
  }

  test('an operator resolve while a do of the in-doubt step still runs: the fence waits for it, and the resolve asks for a review', () => {
    // Without the fence (the resolve of earlier versions), this path ended with the effect
    // landing after the saga reported compensated: the do held the key's claim when the
    // operator looked. Now the fence waits for the claim and finds the effect applied.
    const r = exploreProduct(oneStep, { hosts: 1, stepRetries: 0, compensationRetries: 0, duplicates: 0, drops: 0, operatorRetries: 0, operatorResolves: 2 });
    expect(r.violations.map(explainModelViolation)).toEqual([]);
    expect(r.exhaustive).toBe(true);
    expect(r.coverage.resolvedAfterReview).toBe(true);
  });

  test('the dedup window must outlast a host cut off while its do runs: a store that forgets the key first leaves its late effect', () => {
    // docs/guarantees.md: a host that lost its claim comes back to the store within the
    // dedup window. Without that, the model finds the leak: the key is undone and the saga
    // compensated, the store forgets the key, and the stalled host's re-check finds no
    // record, so it cannot tell an undone key from a committed one.
    const options: ProductOptions = { hosts: 2, stepRetries: 0, compensationRetries: 0, duplicates: 0, drops: 0, leaseExpiries: 1, operatorRetries: 0, forgets: 1 };
    const r = exploreProduct(oneStep, options);
    const leak = r.violations.find((v) => v.property === 'compensated-step-leaves-no-effect');
    expect(leak, r.violations.map(explainModelViolation).join('\n')).toBeDefined();
    expect(leak?.path).toContain('the store forgets the key (its dedup window passed)');
    // It also reached a host undoing a late effect of a key the store had forgotten.
    expect(r.coverage.forgottenWhileUndoing).toBe(true);
    expect(leak?.path.indexOf('the store forgets the key (its dedup window passed)')).toBeGreaterThan(leak?.path.indexOf('host 0 stalls while its do#1 runs: its lease passes') ?? Infinity);
    // Without the store forgetting, the same configuration is clean.
    const within = exploreProduct(oneStep, { ...options, forgets: 0 });
    expect(within.violations.map(explainModelViolation)).toEqual([]);
    expect(within.exhaustive).toBe(true);
  });

  test('a bound too small is reported: not exhaustive, truncated', () => {
    const r = exploreProduct(oneStep, { hosts: 1, stepRetries: 0, compensationRetries: 0, operatorRetries: 0, maxStates: 50 });
    console.log(line(r.shape, r, 0));
    expect(r.truncated).toBe(true);
    expect(r.exhaustive).toBe(false);
    expect(r.states).toBe(50);
  });

  test('bad options are refused with a typed error naming the option', () => {
    const bad: [unknown, string, RegExp][] = [
      [{ hosts: 3 }, 'hosts', /integer from 1 to 2/],
      [{ hosts: 0 }, 'hosts', /integer from 1 to 2/],
      [{ operatorRetries: -1 }, 'operatorRetries', /integer from 0 to 4/],
      [{ stepRetries: 1.5 }, 'stepRetries', /integer/],
      [{ drops: '1' }, 'drops', /got "1"/],
      [{ operatorResolves: 4 }, 'operatorResolves', /from 0 to 3/],
      [{ forgets: 2 }, 'forgets', /from 0 to 1/],
      [{ maxStates: 0 }, 'maxStates', />= 1/],
      [{ hostCrash: 1 }, 'hostCrash', /unknown option of exploreProduct/],
      [{ ignore: 'x' }, 'ignore', /array of property names/],
      [null, 'options', /must be an object/],
    ];
    for (const [options, option, message] of bad) {
      let error: unknown;
      try {
        exploreProduct(oneStep, options as ProductOptions);
      } catch (e) {
        error = e;
      }
      expect(error, JSON.stringify(options)).toBeInstanceOf(InvalidOptionError);
      expect((error as InvalidOptionError).option).toBe(option);
      expect((error as Error).message).toMatch(message);
    }
    const twoSteps = () => defineSaga({ name: 'two', version: 1, steps: { a: { worker: 'w' }, b: { worker: 'w' } } });
    expect(() => exploreProduct(twoSteps)).toThrow(SagaDefinitionError);
  });
});
