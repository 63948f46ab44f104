import { describe, expect, it } from 'vitest';
import { createActor } from 'xstate';
import { defineSaga } from '../../src/index.ts';
import type { SagaDefinition } from '../../src/index.ts';
import { createSagaMachine } from '../../src/machines/saga-machine.ts';
import type { SagaCommand, SagaContext, SagaEvent } from '../../src/machines/saga-logic.ts';
import { outcomeOf, stepOf } from '../../src/machines/saga-logic.ts';

/** Runs the real machine with effects recorded instead of performed. */
function drive(def: SagaDefinition) {
  const commands: SagaCommand[] = [];
  const machine = createSagaMachine(def, { keyOf: (s, step) => `${s}/${step}` }).provide({
    actions: { effect: (_: unknown, params: SagaCommand) => void commands.push(params) },
  });
  const actor = createActor(machine, { input: { sagaId: 's1', input: { n: 1 } } });
  actor.start();
  const take = () => commands.splice(0);
  const send = (ev: SagaEvent) => actor.send(ev);
  const state = () => actor.getSnapshot().value as string;
  const steps = () => Object.fromEntries(def.steps.map((p) => [p.id, actor.getSnapshot().context.steps[p.index]?.status]));
  const outcome = () => outcomeOf(def, actor.getSnapshot().context as SagaContext, state() as never);
  return { take, send, state, steps, outcome, actor, def };
}

const ids = (cmds: SagaCommand[], type: SagaCommand['type']) =>
  cmds.filter((c) => c.type === type).map((c) => ('stepId' in c ? c.stepId : (c as { timerId: string }).timerId));

const fail = (stepId: string, retryable = false, attempt = 1): SagaEvent => ({
  type: 'STEP.FAILED',
  stepId,
  attempt,
  error: { code: 'WORKER_ERROR', message: 'boom', retryable },
});
const commit = (stepId: string, attempt = 1): SagaEvent => ({ type: 'STEP.COMMITTED', stepId, attempt, result: { id: stepId } });

const trip = defineSaga({
  name: 'trip',
  version: 1,
  steps: { flight: { worker: 'flights' }, hotel: { worker: 'hotels' }, car: { worker: 'cars' } },
  compensation: { retries: 1, backoff: { initialMs: 10, jitter: false } },
});

describe('saga machine: parallel steps', () => {
  it('dispatches every step at once with its timeout, and commits when all commit', () => {
    const m = drive(trip);
    const first = m.take();
    expect(ids(first, 'do')).toEqual(['flight', 'hotel', 'car']);
    expect(first.filter((c) => c.type === 'schedule').map((c) => (c as { timerId: string }).timerId)).toEqual(['do:flight', 'do:hotel', 'do:car']);
    expect(first.find((c) => c.type === 'do')).toMatchObject({ key: 's1/flight', input: { n: 1 }, attempt: 1, timeoutMs: 30_000 });
    expect(m.state()).toBe('gathering');
    m.send(commit('flight'));
    m.send(commit('hotel'));
    expect(m.state()).toBe('gathering');
    m.send(commit('car'));
    expect(m.state()).toBe('committed');
    expect(m.outcome()).toMatchObject({ status: 'committed', results: { flight: { id: 'flight' }, hotel: { id: 'hotel' }, car: { id: 'car' } } });
  });

  it('on a failure compensates every step that committed or is still in flight, and not the failed one', () => {
    const m = drive(trip);
    m.take();
    m.send(commit('flight'));
    m.send(fail('hotel'));
    expect(m.state()).toBe('compensating');
    expect(ids(m.take(), 'compensate')).toEqual(['flight', 'car']);
    expect(m.steps()).toEqual({ flight: 'compensating', hotel: 'failed', car: 'compensating' });
    m.send({ type: 'COMPENSATION.DONE', stepId: 'flight', attempt: 1 });
    expect(m.state()).toBe('compensating');
    m.send({ type: 'COMPENSATION.DONE', stepId: 'car', attempt: 1 });
    expect(m.state()).toBe('compensated');
    expect(m.outcome()).toMatchObject({ status: 'compensated', compensated: ['flight', 'car'], failures: [{ stepId: 'hotel', reason: 'failed' }] });
  });

  it('treats a timed-out step as in doubt and compensates it; a late success does not revive it', () => {
    const m = drive(trip);
    m.take();
    m.send(commit('flight'));
    m.send(commit('car'));
    m.send({ type: 'STEP.TIMED_OUT', stepId: 'hotel', attempt: 1 });
    expect(m.state()).toBe('compensating');
    expect(ids(m.take(), 'compensate')).toEqual(['flight', 'hotel', 'car']);
    m.send(commit('hotel'));
    expect(m.steps().hotel).toBe('compensating');
    for (const s of ['flight', 'hotel', 'car']) m.send({ type: 'COMPENSATION.DONE', stepId: s, attempt: 1 });
    expect(m.outcome()).toMatchObject({ status: 'compensated', compensated: ['flight', 'hotel', 'car'] });
  });

  it('keeps the result of a late success that arrives while the saga still gathers: the undo gets it, and the step is no longer in doubt', () => {
    const def = defineSaga({
      name: 'late',
      version: 1,
      steps: { a: { worker: 'wa' }, b: { worker: 'wb' } },
      join: { kind: 'any' },
      compensation: { retries: 0 },
    });
    const m = drive(def);
    m.take();
    m.send({ type: 'STEP.TIMED_OUT', stepId: 'a', attempt: 1 });
    // Under join any, b may still carry the saga, so it gathers; a's do answers late.
    expect(m.state()).toBe('gathering');
    m.send(commit('a'));
    expect(m.steps().a).toBe('inDoubt');
    expect(stepOf(m.def, m.actor.getSnapshot().context, 'a')?.result).toEqual({ id: 'a' });
    expect(m.actor.getSnapshot().context.commitSeq).toBe(0);
    // b commits and is kept; a is released, and its undo gets the late result.
    m.take();
    m.send(commit('b'));
    const undo = m.take().filter((c) => c.type === 'compensate');
    expect(undo.map((c) => [c.stepId, c.type === 'compensate' ? c.result : undefined])).toEqual([['a', { id: 'a' }]]);
    m.send({ type: 'COMPENSATION.FAILED', stepId: 'a', attempt: 1, error: { code: 'COMPENSATION_FAILED', message: 'no', retryable: true } });
    // The host said the effect exists and its undo failed cleanly: the operator is told so.
    expect(m.outcome()).toMatchObject({ status: 'compensation-failed', decision: 'commit', remaining: [{ stepId: 'a', inDoubt: false, result: { id: 'a' } }] });
  });

  it('ignores stale and unknown events', () => {
    const m = drive(trip);
    m.take();
    m.send({ type: 'STEP.TIMED_OUT', stepId: 'hotel', attempt: 7 });
    m.send(commit('nope'));
    m.send({ type: 'COMPENSATION.DONE', stepId: 'flight', attempt: 1 });
    expect(m.state()).toBe('gathering');
    expect(m.steps()).toEqual({ flight: 'dispatched', hotel: 'dispatched', car: 'dispatched' });
    m.send(commit('flight'));
    m.send({ type: 'STEP.COMMITTED', stepId: 'flight', attempt: 1, result: { id: 'other' } });
    expect(m.actor.getSnapshot().context.commitSeq).toBe(1);
    expect(stepOf(m.def, m.actor.getSnapshot().context, 'flight')?.result).toEqual({ id: 'flight' });
    // The step's timeout still fires later, into a guard that ignores it.
    m.send({ type: 'STEP.TIMED_OUT', stepId: 'flight', attempt: 1 });
    expect(m.steps().flight).toBe('committed');
  });

  it('retries a retryable failure with backoff and the same key, within the step budget', () => {
    const def = defineSaga({ name: 'r', version: 1, steps: { a: { worker: 'w', retries: 1, backoff: { initialMs: 40, jitter: false } } } });
    const m = drive(def);
    m.take();
    m.send(fail('a', true, 1));
    const retry = m.take().find((c) => c.type === 'schedule');
    expect(retry).toMatchObject({ timerId: 'retry:a', delayMs: 40, event: { type: 'STEP.RETRY_DUE', attempt: 2 } });
    m.send({ type: 'STEP.RETRY_DUE', stepId: 'a', attempt: 2 });
    expect(m.take().find((c) => c.type === 'do')).toMatchObject({ attempt: 2, key: 's1/a' });
    m.send(fail('a', true, 2));
    expect(m.state()).toBe('compensated');
    expect(m.outcome()).toMatchObject({ failures: [{ stepId: 'a', attempt: 2 }], compensated: [] });
  });

  it('on abort, abandons a step waiting to retry (its host proved no effect) instead of undoing it', () => {
    const def = defineSaga({ name: 'r', version: 1, steps: { a: { worker: 'w', retries: 2 }, b: { worker: 'w' } } });
    const m = drive(def);
    m.take();
    m.send(fail('a', true, 1));
    m.send(fail('b', false));
    expect(m.state()).toBe('compensated');
    expect(m.steps()).toEqual({ a: 'failed', b: 'failed' });
    expect(ids(m.take(), 'compensate')).toEqual([]);
    m.send({ type: 'STEP.RETRY_DUE', stepId: 'a', attempt: 2 });
    expect(ids(m.take(), 'do')).toEqual([]);
  });

  it('undoes a step waiting to retry when an attempt left doubt (IN_PROGRESS on another host)', () => {
    const def = defineSaga({ name: 'r', version: 1, steps: { a: { worker: 'w', retries: 2 }, b: { worker: 'w' } } });
    const m = drive(def);
    m.take();
    m.send({ type: 'STEP.FAILED', stepId: 'a', attempt: 1, error: { code: 'IN_PROGRESS', message: 'busy', retryable: true } });
    m.send(fail('b', false));
    expect(ids(m.take(), 'compensate')).toEqual(['a']);
  });

  it('treats OUTCOME_UNKNOWN as in doubt once retries are spent: the step is undone', () => {
    const m = drive(trip);
    m.take();
    m.send({ type: 'STEP.FAILED', stepId: 'hotel', attempt: 1, error: { code: 'OUTCOME_UNKNOWN', message: 'KV down', retryable: true } });
    expect(m.steps().hotel).toBe('compensating');
    expect(m.outcome()).toBeUndefined();
  });

  it('does not retry a terminal failure', () => {
    const def = defineSaga({ name: 'r', version: 1, steps: { a: { worker: 'w', retries: 3 } } });
    const m = drive(def);
    m.take();
    m.send(fail('a', false));
    expect(m.state()).toBe('compensated');
  });
});

describe('saga machine: failing compensations', () => {
  it('retries a failing compensation with backoff, then parks with the exact remaining effects', () => {
    const m = drive(trip);
    m.take();
    m.send(commit('flight'));
    m.send(commit('car'));
    m.send(fail('hotel'));
    m.take();
    m.send({ type: 'COMPENSATION.DONE', stepId: 'car', attempt: 1 });
    m.send({ type: 'COMPENSATION.FAILED', stepId: 'flight', attempt: 1, error: { code: 'X', message: 'down', retryable: true } });
    const backoff = m.take().find((c) => c.type === 'schedule');
    expect(backoff).toMatchObject({ delayMs: 10, event: { type: 'COMPENSATION.RETRY_DUE', stepId: 'flight', attempt: 2 } });
    m.send({ type: 'COMPENSATION.RETRY_DUE', stepId: 'flight', attempt: 2 });
    expect(m.take().find((c) => c.type === 'compensate')).toMatchObject({ stepId: 'flight', attempt: 2, result: { id: 'flight' } });
    m.send({ type: 'COMPENSATION.TIMED_OUT', stepId: 'flight', attempt: 2 });
    expect(m.state()).toBe('compensationFailed');
    const out = m.outcome();
    expect(out?.status).toBe('compensation-failed');
    if (out?.status !== 'compensation-failed') throw new Error('unreachable');
    expect(out.remaining.map((r) => [r.stepId, r.why, r.attempts])).toEqual([['flight', 'compensation-failed', 2]]);
    expect(out.compensated).toEqual(['car']);

    // The operator retries: a fresh budget, and success this time.
    m.send({ type: 'OPERATOR.RETRY' });
    expect(m.state()).toBe('compensating');
    expect(m.take().find((c) => c.type === 'compensate')).toMatchObject({ stepId: 'flight', attempt: 1 });
    m.send({ type: 'COMPENSATION.DONE', stepId: 'flight', attempt: 1 });
    expect(m.outcome()).toMatchObject({ status: 'compensated', compensated: ['flight', 'car'] });
  });

  it('lets an operator resolve a parked saga by hand', () => {
    const def = defineSaga({ name: 'r', version: 1, steps: { a: { worker: 'w' }, b: { worker: 'w' } }, compensation: { retries: 0 } });
    const m = drive(def);
    m.take();
    m.send(commit('a'));
    m.send(fail('b'));
    m.send({ type: 'COMPENSATION.FAILED', stepId: 'a', attempt: 1, error: { code: 'X', message: 'down', retryable: true } });
    expect(m.state()).toBe('compensationFailed');
    m.send({ type: 'OPERATOR.RESOLVE', note: 'refunded by phone' });
    expect(m.outcome()).toMatchObject({ status: 'compensated', resolvedByOperator: ['a'] });
  });
});

describe('saga machine: stages', () => {
  const staged = defineSaga({
    name: 'order',
    version: 1,
    steps: {
      reserve: { worker: 'stock' },
      charge: { worker: 'payments', after: ['reserve'], input: (_i, r) => ({ reservation: r.reserve }) },
      ship: { worker: 'shipping', after: ['charge'] },
      notify: { worker: 'mail', after: ['reserve'] },
    },
  });

  it('dispatches a stage once its dependencies commit, with their results', () => {
    const m = drive(staged);
    expect(ids(m.take(), 'do')).toEqual(['reserve']);
    m.send(commit('reserve'));
    const next = m.take();
    expect(ids(next, 'do')).toEqual(['charge', 'notify']);
    expect(next.find((c) => c.type === 'do' && c.stepId === 'charge')).toMatchObject({ input: { reservation: { id: 'reserve' } } });
  });

  it('undoes in reverse order: a step only after every step that ran after it', () => {
    const m = drive(staged);
    m.take();
    m.send(commit('reserve'));
    m.send(commit('charge'));
    m.send(commit('notify'));
    m.take();
    m.send(fail('ship'));
    expect(ids(m.take(), 'compensate')).toEqual(['charge', 'notify']);
    m.send({ type: 'COMPENSATION.DONE', stepId: 'charge', attempt: 1 });
    expect(ids(m.take(), 'compensate')).toEqual([]);
    m.send({ type: 'COMPENSATION.DONE', stepId: 'notify', attempt: 1 });
    expect(ids(m.take(), 'compensate')).toEqual(['reserve']);
    m.send({ type: 'COMPENSATION.DONE', stepId: 'reserve', attempt: 1 });
    expect(m.outcome()).toMatchObject({ status: 'compensated' });
  });

  it('reports steps blocked behind a failed compensation as remaining', () => {
    const def = defineSaga({ name: 'o', version: 1, steps: { a: { worker: 'w' }, b: { worker: 'w', after: ['a'] }, c: { worker: 'w', after: ['b'] } }, compensation: { retries: 0 } });
    const m = drive(def);
    m.send(commit('a'));
    m.send(commit('b'));
    m.send(fail('c'));
    m.send({ type: 'COMPENSATION.FAILED', stepId: 'b', attempt: 1, error: { code: 'X', message: 'down', retryable: true } });
    const out = m.outcome();
    if (out?.status !== 'compensation-failed') throw new Error(`expected compensation-failed, got ${out?.status}`);
    expect(out.remaining.map((r) => [r.stepId, r.why])).toEqual([
      ['a', 'blocked'],
      ['b', 'compensation-failed'],
    ]);
  });

  it('fails a step whose input function throws, and undoes what ran', () => {
    const def = defineSaga({
      name: 'o',
      version: 1,
      steps: { a: { worker: 'w' }, b: { worker: 'w', after: ['a'], input: () => { throw new Error('no address'); } } },
    });
    const m = drive(def);
    m.send(commit('a'));
    expect(m.state()).toBe('compensating');
    expect(m.outcome()).toBeUndefined();
    m.send({ type: 'COMPENSATION.DONE', stepId: 'a', attempt: 1 });
    expect(m.outcome()).toMatchObject({ status: 'compensated', failures: [{ stepId: 'b', reason: 'input-failed' }] });
  });
});

describe('saga machine: join policies', () => {
  it("'any' keeps the first to commit and releases the others", () => {
    const def = defineSaga({ name: 'q', version: 1, steps: { a: { worker: 'w' }, b: { worker: 'w' }, c: { worker: 'w' } }, join: { kind: 'any' } });
    const m = drive(def);
    m.take();
    m.send(commit('b'));
    expect(m.state()).toBe('compensating');
    expect(ids(m.take(), 'compensate')).toEqual(['a', 'c']);
    m.send({ type: 'COMPENSATION.DONE', stepId: 'a', attempt: 1 });
    m.send({ type: 'COMPENSATION.DONE', stepId: 'c', attempt: 1 });
    expect(m.outcome()).toMatchObject({ status: 'committed', results: { b: { id: 'b' } }, released: ['a', 'c'] });
  });

  it("'quorum' commits with n and aborts once n is out of reach", () => {
    const def = defineSaga({ name: 'q', version: 1, steps: { a: { worker: 'w' }, b: { worker: 'w' }, c: { worker: 'w' } }, join: { kind: 'quorum', n: 2 } });
    const m = drive(def);
    m.send(fail('a'));
    expect(m.state()).toBe('gathering');
    m.send(commit('b'));
    m.send({ type: 'STEP.TIMED_OUT', stepId: 'c', attempt: 1 });
    expect(m.state()).toBe('compensating');
    m.send({ type: 'COMPENSATION.DONE', stepId: 'b', attempt: 1 });
    m.send({ type: 'COMPENSATION.DONE', stepId: 'c', attempt: 1 });
    expect(m.outcome()).toMatchObject({ status: 'compensated', compensated: ['b', 'c'] });
  });

  it("'quorum' commits directly when exactly n ran", () => {
    const def = defineSaga({ name: 'q', version: 1, steps: { a: { worker: 'w' }, b: { worker: 'w' }, c: { worker: 'w' } }, join: { kind: 'quorum', n: 2 } });
    const m = drive(def);
    m.send(fail('a'));
    m.send(commit('b'));
    m.send(commit('c'));
    expect(m.outcome()).toMatchObject({ status: 'committed', results: { b: { id: 'b' }, c: { id: 'c' } }, released: [] });
  });
});
