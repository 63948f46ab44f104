/**
 * runtime.status(sagaId) tells the truth at the end, for every join (all, any, quorum),
 * every layout (parallel, chain, staged) and every outcome (committed, compensated,
 * compensation-failed): from the runtime that drove the saga, and from another runtime
 * that reads the same store.
 */
import { describe, expect, it } from 'vitest';
import { createRuntime, defineSaga, defineWorker, memorySagaStore, TerminalError } from '../../src/index.ts';
import type { JoinSpec, SagaStatus, StepSpec } from '../../src/index.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Workers: `fast`, `mid` and `slow` commit after 0, 100 and 400 ms; `no` fails after 20 ms;
 * `stuck` commits and cannot be undone; `slowstuck` the same after 150 ms. The gaps are wide
 * so that the order in which they end holds on a loaded machine.
 */
const ok = (name: string, ms: number) => defineWorker({ name, do: async () => (await sleep(ms), { name }), compensate: async () => undefined });
const workers = [
  ok('fast', 0),
  ok('mid', 100),
  ok('slow', 400),
  defineWorker({
    name: 'no',
    do: async (): Promise<{ name: string }> => {
      await sleep(20);
      throw new TerminalError('refused');
    },
    compensate: async () => undefined,
  }),
  defineWorker({ name: 'stuck', do: async () => ({ held: true }), compensate: async () => { throw new Error('cannot undo'); } }),
  defineWorker({ name: 'slowstuck', do: async () => (await sleep(150), { held: true }), compensate: async () => { throw new Error('cannot undo'); } }),
];

type Case = {
  name: string;
  steps: Record<string, StepSpec<unknown>>;
  join?: JoinSpec;
  outcome: 'committed' | 'compensated' | 'compensation-failed';
  state: SagaStatus['state'];
  expected: Record<string, string>;
};

const par = (a: string, b: string, c: string) => ({ x: { worker: a }, y: { worker: b }, z: { worker: c } });
const chain = (a: string, b: string, c: string) => ({ x: { worker: a }, y: { worker: b, after: ['x'] }, z: { worker: c, after: ['y'] } });
const staged = (a: string, b: string, c: string) => ({ x: { worker: a }, y: { worker: b }, z: { worker: c, after: ['x', 'y'] } });
const all3 = (s: string) => ({ x: s, y: s, z: s });

const cases: Case[] = [
  { name: 'parallel, all, committed', steps: par('fast', 'mid', 'slow'), outcome: 'committed', state: 'committed', expected: all3('committed') },
  { name: 'chain, all, committed', steps: chain('fast', 'mid', 'slow'), outcome: 'committed', state: 'committed', expected: all3('committed') },
  { name: 'staged, all, committed', steps: staged('fast', 'mid', 'slow'), outcome: 'committed', state: 'committed', expected: all3('committed') },
  { name: 'parallel, any, committed (the others released)', steps: par('fast', 'mid', 'slow'), join: { kind: 'any' }, outcome: 'committed', state: 'committed', expected: { x: 'committed', y: 'compensated', z: 'compensated' } },
  { name: 'parallel, any, committed while another fails', steps: par('slow', 'no', 'mid'), join: { kind: 'any' }, outcome: 'committed', state: 'committed', expected: { x: 'compensated', y: 'failed', z: 'committed' } },
  { name: 'parallel, quorum 2, committed (the third released)', steps: par('fast', 'mid', 'slow'), join: { kind: 'quorum', n: 2 }, outcome: 'committed', state: 'committed', expected: { x: 'committed', y: 'committed', z: 'compensated' } },
  { name: 'parallel, all, compensated', steps: par('fast', 'no', 'mid'), outcome: 'compensated', state: 'compensated', expected: { x: 'compensated', y: 'failed', z: 'compensated' } },
  { name: 'chain, all, compensated at the last step', steps: chain('fast', 'mid', 'no'), outcome: 'compensated', state: 'compensated', expected: { x: 'compensated', y: 'compensated', z: 'failed' } },
  { name: 'chain, all, compensated at the middle step', steps: chain('fast', 'no', 'mid'), outcome: 'compensated', state: 'compensated', expected: { x: 'compensated', y: 'failed', z: 'pending' } },
  { name: 'staged, all, compensated', steps: staged('fast', 'mid', 'no'), outcome: 'compensated', state: 'compensated', expected: { x: 'compensated', y: 'compensated', z: 'failed' } },
  { name: 'parallel, any, compensated (every step failed)', steps: par('no', 'no', 'no'), join: { kind: 'any' }, outcome: 'compensated', state: 'compensated', expected: all3('failed') },
  { name: 'parallel, quorum 2, compensated', steps: par('fast', 'no', 'no'), join: { kind: 'quorum', n: 2 }, outcome: 'compensated', state: 'compensated', expected: { x: 'compensated', y: 'failed', z: 'failed' } },
  { name: 'parallel, all, compensation failed', steps: par('stuck', 'no', 'mid'), outcome: 'compensation-failed', state: 'compensationFailed', expected: { x: 'compensationFailed', y: 'failed', z: 'compensated' } },
  { name: 'chain, all, compensation failed (the first step blocked behind it)', steps: chain('fast', 'stuck', 'no'), outcome: 'compensation-failed', state: 'compensationFailed', expected: { x: 'committed', y: 'compensationFailed', z: 'failed' } },
  { name: 'parallel, any, compensation failed releasing a step', steps: par('fast', 'slowstuck', 'slow'), join: { kind: 'any' }, outcome: 'compensation-failed', state: 'compensationFailed', expected: { x: 'committed', y: 'compensationFailed', z: 'compensated' } },
];

describe('runtime.status at the end', () => {
  it.each(cases.map((c) => [c.name, c] as const))('%s', async (_name, c) => {
    const store = memorySagaStore();
    const runtime = createRuntime({ store }).host(...workers);
    const other = createRuntime({ store, ownership: false });
    const saga = defineSaga({ name: 's', version: 1, steps: c.steps, compensation: { retries: 0, backoff: { initialMs: 1 } }, ...(c.join ? { join: c.join } : {}) });
    const outcome = await runtime.run(saga, {}, { sagaId: 'sid' });
    expect(outcome.status).toBe(c.outcome);
    const want = { sagaId: 'sid', saga: 's', version: 1, state: c.state, steps: c.expected, outcome: expect.objectContaining({ status: c.outcome }) };
    expect(await runtime.status('sid')).toEqual(want);
    expect(await other.status('sid')).toEqual(want);
    await runtime.close();
    await other.close();
  });

  it('a parked saga that an operator resolves shows its released step compensated, and the saga committed', async () => {
    const store = memorySagaStore();
    const runtime = createRuntime({ store }).host(...workers);
    const other = createRuntime({ store, ownership: false });
    const saga = defineSaga({ name: 's', version: 1, steps: par('fast', 'slowstuck', 'slow'), join: { kind: 'any' }, compensation: { retries: 0, backoff: { initialMs: 1 } } });
    expect(await runtime.run(saga, {}, { sagaId: 'p' })).toMatchObject({ status: 'compensation-failed', decision: 'commit' });
    expect(await runtime.resolve('p', 'refunded by hand')).toMatchObject({ status: 'committed', resolvedByOperator: ['y'] });
    const want = { state: 'committed', steps: { x: 'committed', y: 'compensated', z: 'compensated' } };
    expect(await runtime.status('p')).toMatchObject(want);
    expect(await other.status('p')).toMatchObject(want);
    await runtime.close();
    await other.close();
  });
});

describe('runtime.status of a running saga', () => {
  it('from another runtime, before any checkpoint: every step of a parallel saga, dispatched', async () => {
    const store = memorySagaStore();
    const runtime = createRuntime({ store }).host(...workers);
    const saga = defineSaga({ name: 'p', version: 1, steps: staged('slow', 'slow', 'fast') });
    const withDefinition = createRuntime({ store, ownership: false, sagas: [saga] });
    const without = createRuntime({ store, ownership: false });
    const running = runtime.run(saga, {}, { sagaId: 'r' });
    await sleep(5);
    expect(await runtime.status('r')).toMatchObject({ state: 'gathering', steps: { x: 'dispatched', y: 'dispatched', z: 'pending' }, outcome: undefined });
    expect(await withDefinition.status('r')).toMatchObject({ state: 'gathering', steps: { x: 'dispatched', y: 'dispatched', z: 'pending' }, outcome: undefined });
    expect(await without.status('r')).toMatchObject({ steps: {}, outcome: undefined });
    await running;
    expect(await withDefinition.status('r')).toMatchObject({ state: 'committed', steps: all3('committed') });
    await Promise.all([runtime.close(), withDefinition.close(), without.close()]);
  });
});
