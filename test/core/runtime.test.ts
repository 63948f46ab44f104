import { Writable } from 'node:stream';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import {
  createRuntime,
  createWorkerHost,
  defineSaga,
  defineWorker,
  InputNotSerializableError,
  InvalidOptionError,
  memoryDedupStore,
  memorySagaStore,
  memoryTransport,
  SagaNotFoundError,
  TerminalError,
  WorkerNotHostedError,
} from '../../src/index.ts';
import type { EscalationEvent, SagaOutcome, WorkerContext } from '../../src/index.ts';
import { idempotencyKey } from '../../src/machines/serializable.ts';
import { createManualClock } from '../../src/testing/clock.ts';

function deferred<T>() {
  let resolve!: (v: T) => void;
  const promise = new Promise<T>((res) => (resolve = res));
  return { promise, resolve };
}

/** A fake system of record per worker: effects by idempotency key, and a log of calls. */
function world() {
  const held = new Map<string, Set<string>>();
  const calls: string[] = [];
  const holding = (w: string) => (held.get(w) ?? new Set()).size;
  const make = (
    name: string,
    behaviour: {
      do?: (ctx: WorkerContext, n: number) => Promise<void> | void;
      compensate?: (ctx: WorkerContext, n: number) => Promise<void> | void;
    } = {},
  ) => {
    let doCalls = 0;
    let compCalls = 0;
    return defineWorker({
      name,
      async do(input: unknown, ctx) {
        calls.push(`${name}.do`);
        await behaviour.do?.(ctx, ++doCalls);
        const set = held.get(name) ?? new Set<string>();
        held.set(name, set);
        set.add(ctx.idempotencyKey);
        return { ref: `${name}:${ctx.idempotencyKey.slice(0, 6)}`, input };
      },
      async compensate(_input, _result, ctx) {
        calls.push(`${name}.compensate`);
        await behaviour.compensate?.(ctx, ++compCalls);
        held.get(name)?.delete(ctx.idempotencyKey);
      },
    });
  };
  return { make, holding, calls };
}

const tripOf = (timeoutMs = 1_000, compensation = { retries: 2, backoff: { initialMs: 100, factor: 2, maxMs: 1_000 } }) =>
  defineSaga({
    name: 'trip',
    version: 1,
    steps: {
      flight: { worker: 'flights', input: (t: { to: string }) => ({ to: t.to }), timeoutMs },
      hotel: { worker: 'hotels', input: (t: { to: string }) => ({ city: t.to }), timeoutMs },
      car: { worker: 'cars', timeoutMs },
    },
    compensation,
  });

describe('runtime: outcomes', () => {
  it('commits and returns each step result; keys are hash(sagaId, stepId, input)', async () => {
    const w = world();
    const keys: string[] = [];
    const runtime = createRuntime().host(w.make('flights', { do: (ctx) => void keys.push(ctx.idempotencyKey) }), w.make('hotels'), w.make('cars'));
    const outcome = await runtime.run(tripOf(), { to: 'OSL' }, { sagaId: 'trip-1' });
    expect(outcome).toMatchObject({ sagaId: 'trip-1', status: 'committed', results: { flight: { input: { to: 'OSL' } }, hotel: { input: { city: 'OSL' } } } });
    expect(keys).toEqual([idempotencyKey('trip-1', 'flight', { to: 'OSL' })]);
    expect([w.holding('flights'), w.holding('hotels'), w.holding('cars')]).toEqual([1, 1, 1]);
    expect(await runtime.status('trip-1')).toMatchObject({ state: 'committed', outcome: { status: 'committed' } });
    await runtime.close();
  });

  it('compensates what committed when a step fails', async () => {
    const w = world();
    const runtime = createRuntime().host(
      w.make('flights'),
      w.make('hotels', {
        do: () => {
          throw new TerminalError('full');
        },
      }),
      w.make('cars'),
    );
    const outcome = await runtime.run(tripOf(), { to: 'OSL' });
    expect(outcome).toMatchObject({ status: 'compensated', compensated: ['flight', 'car'], failures: [{ stepId: 'hotel', error: { message: 'full' } }] });
    expect([w.holding('flights'), w.holding('hotels'), w.holding('cars')]).toEqual([0, 0, 0]);
    await runtime.close();
  });

  it('treats a timed-out step as in doubt; its late success is undone before run resolves', async () => {
    const clock = createManualClock();
    const w = world();
    const gate = deferred<void>();
    const runtime = createRuntime({ clock }).host(w.make('flights'), w.make('hotels', { do: () => gate.promise }), w.make('cars'));
    let outcome: SagaOutcome | undefined;
    void runtime.run(tripOf(1_000), { to: 'OSL' }).then((o) => (outcome = o));
    await clock.advance(999);
    expect(outcome).toBeUndefined();
    await clock.advance(10);
    // Timed out: flight and car are undone, the hotel's compensation waits for its do.
    expect(w.holding('flights')).toBe(0);
    expect(outcome).toBeUndefined();
    gate.resolve();
    await clock.advance(1);
    expect(outcome).toMatchObject({ status: 'compensated', compensated: ['flight', 'hotel', 'car'], failures: [{ stepId: 'hotel', reason: 'timed-out' }] });
    expect([w.holding('flights'), w.holding('hotels'), w.holding('cars')]).toEqual([0, 0, 0]);
    expect(w.calls.filter((c) => c === 'hotels.compensate')).toHaveLength(1);
    await runtime.close();
  });

  it('retries a retryable step failure with backoff and the same key', async () => {
    const clock = createManualClock();
    const w = world();
    const keys: string[] = [];
    const flaky = w.make('flights', {
      do: (ctx, n) => {
        keys.push(ctx.idempotencyKey);
        if (n === 1) throw new Error('503');
      },
    });
    const saga = defineSaga({ name: 'one', version: 1, steps: { f: { worker: 'flights', retries: 1, backoff: { initialMs: 200, jitter: false } } } });
    const runtime = createRuntime({ clock }).host(flaky);
    let outcome: SagaOutcome | undefined;
    void runtime.run(saga, {}).then((o) => (outcome = o));
    await clock.advance(199);
    expect(keys).toHaveLength(1);
    await clock.advance(10);
    expect(outcome).toMatchObject({ status: 'committed' });
    expect(keys).toHaveLength(2);
    expect(keys[0]).toBe(keys[1]);
    await runtime.close();
  });

  it('undoes staged steps in reverse order', async () => {
    const w = world();
    const saga = defineSaga({
      name: 'order',
      version: 1,
      steps: {
        reserve: { worker: 'stock' },
        charge: { worker: 'payments', after: ['reserve'] },
        ship: { worker: 'shipping', after: ['charge'] },
      },
    });
    const runtime = createRuntime().host(
      w.make('stock'),
      w.make('payments'),
      w.make('shipping', {
        do: () => {
          throw new TerminalError('no courier');
        },
      }),
    );
    expect(await runtime.run(saga, {})).toMatchObject({ status: 'compensated', compensated: ['reserve', 'charge'] });
    expect(w.calls).toEqual(['stock.do', 'payments.do', 'shipping.do', 'payments.compensate', 'stock.compensate']);
    await runtime.close();
  });

  it('compensates a step whose result cannot be serialized (its effect was applied)', async () => {
    const w = world();
    const odd = defineWorker({
      name: 'odd',
      do: async () => ({ big: 1n }),
      compensate: async () => void w.calls.push('odd.compensate'),
    });
    const saga = defineSaga({ name: 'odd', version: 1, steps: { a: { worker: odd } } });
    const runtime = createRuntime().host(odd);
    expect(await runtime.run(saga, {})).toMatchObject({ status: 'compensated', compensated: ['a'], failures: [{ error: { code: 'RESULT_NOT_SERIALIZABLE' } }] });
    expect(w.calls).toEqual(['odd.compensate']);
    await runtime.close();
  });
});

/** A saga whose hotel is full and whose flight refund fails: it parks. */
async function parkedSaga() {
  const clock = createManualClock();
  const w = world();
  let refundsWork = false;
  const store = memorySagaStore({ clock });
  const runtime = createRuntime({ clock, store, random: () => 0 }).host(
    w.make('flights', {
      compensate: () => {
        if (!refundsWork) throw new Error('refund API down');
      },
    }),
    w.make('hotels', {
      do: () => {
        throw new TerminalError('full');
      },
    }),
    w.make('cars'),
  );
  const escalations: EscalationEvent[] = [];
  runtime.on('escalation', (e) => escalations.push(e));
  let outcome: SagaOutcome | undefined;
  void runtime.run(tripOf(), { to: 'OSL' }, { sagaId: 'p1' }).then((o) => (outcome = o));
  return { clock, w, runtime, escalations, store, fix: () => (refundsWork = true), outcome: () => outcome };
}

describe('runtime: failing compensations and operators', () => {
  it('retries with exponential backoff and jitter, then parks with a dead letter and an escalation', async () => {
    const p = await parkedSaga();
    await p.clock.advance(0);
    expect(p.w.calls.filter((c) => c === 'flights.compensate')).toHaveLength(1);
    // random() = 0 gives half of each delay: 50 ms, then 100 ms.
    await p.clock.advance(49);
    expect(p.w.calls.filter((c) => c === 'flights.compensate')).toHaveLength(1);
    await p.clock.advance(1);
    expect(p.w.calls.filter((c) => c === 'flights.compensate')).toHaveLength(2);
    expect(p.outcome()).toBeUndefined();
    await p.clock.advance(100);
    expect(p.w.calls.filter((c) => c === 'flights.compensate')).toHaveLength(3);
    const outcome = p.outcome();
    expect(outcome?.status).toBe('compensation-failed');
    if (outcome?.status !== 'compensation-failed') throw new Error('unreachable');
    expect(outcome.remaining).toEqual([
      expect.objectContaining({ stepId: 'flight', worker: 'flights', why: 'compensation-failed', attempts: 3, lastError: expect.objectContaining({ message: 'refund API down' }) }),
    ]);
    expect(outcome.compensated).toEqual(['car']);
    expect(p.w.holding('flights')).toBe(1);
    expect(p.escalations).toEqual([expect.objectContaining({ sagaId: 'p1', saga: 'trip', remaining: outcome.remaining })]);
    expect(await p.runtime.deadLetters()).toEqual([expect.objectContaining({ sagaId: 'p1', remaining: outcome.remaining })]);
    expect(await p.runtime.status('p1')).toMatchObject({ state: 'compensationFailed', steps: { flight: 'compensationFailed', car: 'compensated', hotel: 'failed' } });
    expect(p.runtime.inFlight).toBe(0);
    await p.runtime.close();
  });

  it('resumes compensation on operator retry and clears the dead letter', async () => {
    const p = await parkedSaga();
    await p.clock.advance(1_000);
    expect(p.outcome()?.status).toBe('compensation-failed');
    p.fix();
    const again = p.runtime.retry('p1');
    await p.clock.advance(0);
    expect(await again).toMatchObject({ status: 'compensated', compensated: ['flight', 'car'] });
    expect(p.w.holding('flights')).toBe(0);
    expect(await p.runtime.deadLetters()).toEqual([]);
    await p.runtime.close();
  });

  it('parks again, escalating again, when the operator retry fails too', async () => {
    const p = await parkedSaga();
    await p.clock.advance(1_000);
    const again = p.runtime.retry('p1');
    await p.clock.advance(1_000);
    expect(await again).toMatchObject({ status: 'compensation-failed' });
    expect(p.escalations.map((e) => e.timesParked)).toEqual([1, 2]);
    await p.runtime.close();
  });

  it('lets an operator resolve a parked saga by hand', async () => {
    const p = await parkedSaga();
    await p.clock.advance(1_000);
    const resolved = p.runtime.resolve('p1', 'refunded by phone');
    await p.clock.advance(0);
    expect(await resolved).toMatchObject({ status: 'compensated', resolvedByOperator: ['flight'] });
    await p.runtime.close();
  });

  it('rejects operator calls for unknown or running sagas', async () => {
    const clock = createManualClock();
    const w = world();
    const gate = deferred<void>();
    const runtime = createRuntime({ clock }).host(w.make('flights', { do: () => gate.promise }), w.make('hotels'), w.make('cars'));
    await expect(runtime.retry('nope')).rejects.toBeInstanceOf(SagaNotFoundError);
    const running = runtime.run(tripOf(), { to: 'X' }, { sagaId: 'r1' });
    await clock.advance(0);
    await expect(runtime.retry('r1')).rejects.toMatchObject({ code: 'SAGA_NOT_PARKED' });
    gate.resolve();
    await clock.advance(1);
    expect(await running).toMatchObject({ status: 'committed' });
    await runtime.close();
  });

  it('recovers a parked saga in a new coordinator that shares the store', async () => {
    const p = await parkedSaga();
    await p.clock.advance(1_000);
    await p.runtime.close();
    p.fix();
    const w2 = world();
    const next = createRuntime({ clock: p.clock, store: p.store, sagas: [tripOf()] }).host(w2.make('flights'), w2.make('hotels'), w2.make('cars'));
    expect(await next.recover()).toEqual(['p1']);
    const resumed = next.retry('p1');
    await p.clock.advance(0);
    expect(await resumed).toMatchObject({ status: 'compensated' });
    expect(w2.calls).toEqual(['flights.compensate']);
    await next.close();
  });
});

describe('runtime: several coordinators on one store', () => {
  it('another coordinator waits for an outcome by saga id, and an operator retries there a saga the first one parked', async () => {
    const p = await parkedSaga();
    await p.clock.advance(1_000);
    expect(p.outcome()).toMatchObject({ status: 'compensation-failed' });
    const w2 = world();
    const other = createRuntime({ clock: p.clock, store: p.store, sagas: [tripOf()] }).host(w2.make('flights'), w2.make('hotels'), w2.make('cars'));
    expect(await other.outcome('p1')).toMatchObject({ status: 'compensation-failed', remaining: [expect.objectContaining({ stepId: 'flight' })] });
    expect((await other.deadLetters()).map((d) => d.sagaId)).toEqual(['p1']);
    // status() from a coordinator that does not drive it shows the parked outcome from the journal.
    expect(await other.status('p1')).toMatchObject({ state: 'compensationFailed', outcome: { status: 'compensation-failed', decision: 'abort' } });
    const resumed = other.retry('p1');
    await p.clock.advance(0);
    expect(await resumed).toMatchObject({ status: 'compensated' });
    expect(w2.calls).toEqual(['flights.compensate']);
    // The first coordinator was fenced off; both now read the outcome from the store.
    expect(await p.runtime.outcome('p1')).toMatchObject({ status: 'compensated' });
    // Its status is the journal's, not that of the parked saga it held before.
    expect(await p.runtime.status('p1')).toMatchObject({ state: 'compensated', outcome: { status: 'compensated' } });
    expect(await p.runtime.deadLetters()).toEqual([]);
    await other.close();
    await p.runtime.close();
  });

  it('outcome() follows a saga another coordinator drives until it ends; undefined at its timeout; unknown ids are an error', async () => {
    const clock = createManualClock();
    const store = memorySagaStore({ clock });
    const w = world();
    const driver = createRuntime({ clock, store }).host(w.make('flights', { do: () => new Promise<void>((r) => clock.setTimeout(r, 700)) }), w.make('hotels'), w.make('cars'));
    const watcher = createRuntime({ clock, store });
    const run = driver.run(tripOf(), { to: 'RIO' }, { sagaId: 'r1' });
    await clock.advance(1);
    const soon = watcher.outcome('r1', { timeoutMs: 300, pollMs: 100 });
    const later = watcher.outcome('r1', { pollMs: 100 });
    await clock.advance(300);
    expect(await soon).toBeUndefined();
    await clock.advance(500);
    expect(await later).toMatchObject({ sagaId: 'r1', status: 'committed' });
    expect(await run).toEqual(await later);
    await expect(watcher.outcome('nope')).rejects.toBeInstanceOf(SagaNotFoundError);
    await expect(watcher.outcome('r1', { timeout: 5 } as never)).rejects.toBeInstanceOf(InvalidOptionError);
    await driver.close();
    await watcher.close();
  });

  it('an operator command for a saga that is not parked anywhere, or whose definition this runtime lacks, is a typed error', async () => {
    const p = await parkedSaga();
    await p.clock.advance(1_000);
    const bare = createRuntime({ clock: p.clock, store: p.store });
    await expect(bare.retry('p1')).rejects.toMatchObject({ code: 'SAGA_NOT_FOUND', message: expect.stringContaining('sagas option') });
    await expect(bare.retry('missing')).rejects.toBeInstanceOf(SagaNotFoundError);
    await bare.close();
    await p.runtime.close();
  });
});

describe('runtime: coordinator crash', () => {
  it('a new coordinator re-drives an unfinished saga; the worker host dedups the repeats', async () => {
    const clock = createManualClock();
    const store = memorySagaStore({ clock });
    const transport = memoryTransport();
    const w = world();
    const gate = deferred<void>();
    const saga = tripOf(5_000);
    // The workers live in their own host; only the coordinator dies.
    const host = createWorkerHost([w.make('flights'), w.make('hotels', { do: () => gate.promise }), w.make('cars')], { clock });
    await host.serve(transport);
    const a = createRuntime({ clock, store, transport });
    const abandoned = a.run(saga, { to: 'OSL' }, { sagaId: 'c1' });
    await clock.advance(10);
    void a.close({ drainMs: 0 }); // the coordinator dies with the hotel still running
    await expect(abandoned).rejects.toMatchObject({ code: 'RUNTIME_CLOSED' });
    const b = createRuntime({ clock, store, transport, sagas: [saga] });
    const outcomes: SagaOutcome[] = [];
    b.on('outcome', (o) => outcomes.push(o));
    expect(await b.recover()).toEqual(['c1']);
    gate.resolve();
    await clock.advance(10);
    expect(outcomes).toEqual([expect.objectContaining({ sagaId: 'c1', status: 'committed' })]);
    expect(w.calls.filter((c) => c.endsWith('.do'))).toEqual(['flights.do', 'hotels.do', 'cars.do']);
    expect([w.holding('flights'), w.holding('hotels'), w.holding('cars')]).toEqual([1, 1, 1]);
    await b.close();
  });
});

describe('runtime: write-ahead for later stages', () => {
  it('stores that a later stage was dispatched before sending it, so a new coordinator drives it on', async () => {
    const clock = createManualClock();
    const store = memorySagaStore({ clock });
    const transport = memoryTransport();
    const w = world();
    const gate = deferred<void>();
    const saga = defineSaga({ name: 'staged', version: 1, steps: { a: { worker: 'stock' }, b: { worker: 'payments', after: ['a'], timeoutMs: 60_000 } } });
    const host = createWorkerHost([w.make('stock'), w.make('payments', { do: () => gate.promise })], { clock });
    await host.serve(transport);
    const a = createRuntime({ clock, store, transport });
    const abandoned = a.run(saga, {}, { sagaId: 'w1' });
    abandoned.catch(() => {}); // rejected with RUNTIME_CLOSED when the coordinator dies below
    await clock.advance(1);
    expect(w.calls).toEqual(['stock.do', 'payments.do']);
    const journal = (await store.get('w1'))?.snapshot as { context: { steps: Record<string, { status: string }> } };
    expect(journal.context.steps.b?.status).toBe('dispatched');
    await a.close({ drainMs: 0 }); // closed: its heartbeat is gone, so recover() takes its sagas at once
    const b = createRuntime({ clock, store, transport, sagas: [saga] });
    const outcome = new Promise<SagaOutcome>((resolve) => b.on('outcome', resolve));
    expect(await b.recover()).toEqual(['w1']);
    gate.resolve();
    await clock.advance(1);
    expect(await outcome).toMatchObject({ status: 'committed' });
    expect(w.calls.filter((c) => c === 'payments.do')).toHaveLength(1);
    await b.close();
  });
});

describe('runtime: the journal and recovery', () => {
  it('recover() re-establishes the dead letter and the escalation of a saga parked before a crash', async () => {
    const p = await parkedSaga();
    await p.clock.advance(1_000);
    expect(p.escalations).toHaveLength(1);
    await p.runtime.close();
    const next = createRuntime({ clock: p.clock, store: p.store, sagas: [tripOf()] }).host(world().make('flights'), world().make('hotels'), world().make('cars'));
    const escalations: EscalationEvent[] = [];
    next.on('escalation', (e) => escalations.push(e));
    expect(await next.recover()).toEqual(['p1']);
    await p.clock.advance(0);
    // Its undo failed cleanly and nothing was in flight when it parked: the effect is certainly there.
    expect(escalations).toEqual([expect.objectContaining({ sagaId: 'p1', remaining: [expect.objectContaining({ stepId: 'flight', inDoubt: false })] })]);
    expect((await next.deadLetters()).map((d) => d.sagaId)).toEqual(['p1']);
    // run() with the saga's id attaches to it: here, its parked outcome.
    expect(await next.run(tripOf(), { to: 'OSL' }, { sagaId: 'p1' })).toMatchObject({ status: 'compensation-failed', sagaId: 'p1' });
    await next.close();
  });

  it('a step whose do may have been sent before a crash is in doubt after recover(): "no responders" then proves nothing, and it is undone', async () => {
    const clock = createManualClock();
    const store = memorySagaStore({ clock });
    const transport = memoryTransport();
    const w = world();
    const saga = defineSaga({ name: 'one', version: 1, steps: { a: { worker: 'stock', timeoutMs: 1_000 } }, compensation: { retries: 1, backoff: { initialMs: 10, maxMs: 10, jitter: false } } });
    const stock = w.make('stock', { do: () => new Promise<void>(() => {}) }); // applies, then its host dies before answering
    await createWorkerHost([stock], { clock }).serve(transport);
    const a = createRuntime({ clock, store, transport });
    void a.run(saga, {}, { sagaId: 'nr' }).catch(() => undefined);
    await clock.advance(1);
    expect(w.calls).toEqual(['stock.do']);
    await a.close({ drainMs: 0 });
    // The new coordinator finds no host of the worker at all: its requests get no responders.
    const empty = memoryTransport();
    const b = createRuntime({ clock, store, transport: empty, sagas: [saga] });
    const outcome = new Promise<SagaOutcome>((resolve) => b.on('outcome', resolve));
    let parked: EscalationEvent | undefined;
    b.on('escalation', (e) => (parked = e));
    await b.recover();
    await clock.advance(100);
    // Not a clean failure: the step is undone, and with nobody to undo it the saga parks listing it.
    expect(parked?.remaining).toEqual([expect.objectContaining({ stepId: 'a', inDoubt: true })]);
    expect(parked?.failures).toEqual([expect.objectContaining({ stepId: 'a', inDoubt: true, error: expect.objectContaining({ code: 'NO_RESPONDERS' }) })]);
    await createWorkerHost([w.make('stock')], { clock }).serve(empty);
    void b.retry('nr');
    await clock.advance(100);
    expect(await outcome).toMatchObject({ status: 'compensated', compensated: ['a'] });
    expect(w.calls).toContain('stock.compensate');
    await b.close();
  });

  it('run() with a saga id is idempotent: it attaches to the running saga, returns a finished one, and refuses another input', async () => {
    const clock = createManualClock();
    const w = world();
    const gate = deferred<void>();
    const runtime = createRuntime({ clock }).host(w.make('flights', { do: () => gate.promise }), w.make('hotels'), w.make('cars'));
    const first = runtime.run(tripOf(), { to: 'OSL' }, { sagaId: 'order-1' });
    await clock.advance(1);
    const again = runtime.run(tripOf(), { to: 'OSL' }, { sagaId: 'order-1' });
    await expect(runtime.run(tripOf(), { to: 'BER' }, { sagaId: 'order-1' })).rejects.toMatchObject({ code: 'SAGA_ID_CONFLICT' });
    gate.resolve();
    await clock.advance(1);
    const [o1, o2] = await Promise.all([first, again]);
    expect(o1).toMatchObject({ status: 'committed' });
    expect(o2).toEqual(o1);
    expect(await runtime.run(tripOf(), { to: 'OSL' }, { sagaId: 'order-1' })).toEqual(o1);
    expect(w.calls.filter((c) => c === 'flights.do')).toHaveLength(1);
    await runtime.close();
  });

  /** A store and a transport two coordinators share, with a hotels worker that holds its do until `gate` resolves. */
  async function heldHotel() {
    const clock = createManualClock();
    const store = memorySagaStore({ clock });
    const transport = memoryTransport();
    const w = world();
    const gate = deferred<void>();
    await createWorkerHost([w.make('flights'), w.make('hotels', { do: () => gate.promise }), w.make('cars')], { clock }).serve(transport);
    return { clock, store, transport, gate, saga: tripOf(60_000) };
  }

  it('run() with the id of a saga another live coordinator drives waits for its outcome, and does not take it over', async () => {
    const { clock, store, transport, gate, saga } = await heldHotel();
    const a = createRuntime({ clock, store, transport, ownership: { id: 'coord-a' } });
    const first = a.run(saga, { to: 'OSL' }, { sagaId: 'r0' });
    await clock.advance(1);
    const b = createRuntime({ clock, store, transport, ownership: { id: 'coord-b' } });
    const waiting = b.run(saga, { to: 'OSL' }, { sagaId: 'r0' });
    await clock.advance(1_000);
    expect((await store.get('r0'))?.owner).toBe('coord-a');
    gate.resolve();
    await clock.advance(1_000);
    expect(await first).toMatchObject({ status: 'committed' });
    expect(await waiting).toMatchObject({ status: 'committed' });
    expect((await store.get('r0'))?.owner).toBe('coord-a');
    await a.close();
    await b.close();
  });

  it('run() resumes a saga its journal holds (ownership off), and fences off the coordinator that wrote it before', async () => {
    const { clock, store, transport, gate, saga } = await heldHotel();
    const a = createRuntime({ clock, store, transport, ownership: false });
    const first = a.run(saga, { to: 'OSL' }, { sagaId: 'r1' });
    const firstFailed = first.catch((e: unknown) => e);
    await clock.advance(1);
    const b = createRuntime({ clock, store, transport, ownership: false });
    const resumed = b.run(saga, { to: 'OSL' }, { sagaId: 'r1' });
    await clock.advance(1);
    gate.resolve();
    await clock.advance(1);
    expect(await resumed).toMatchObject({ status: 'committed' });
    // The first coordinator wrote nothing once b had taken the saga over.
    expect(await firstFailed).toMatchObject({ code: 'SAGA_FENCED' });
    expect((await store.get('r1'))?.outcome).toMatchObject({ status: 'committed' });
    await a.close();
    await b.close();
  });

  it('rejects run() with JOURNAL_UNAVAILABLE, nothing dispatched, when the intent cannot be written', async () => {
    const w = world();
    const inner = memorySagaStore();
    const store = { ...inner, begin: async () => Promise.reject(new Error('KV unavailable')) };
    const runtime = createRuntime({ store }).host(w.make('flights'), w.make('hotels'), w.make('cars'));
    const err = await runtime.run(tripOf(), { to: 'X' }, { sagaId: 'j0' }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'JOURNAL_UNAVAILABLE', dispatched: false, sagaId: 'j0', cause: expect.objectContaining({ message: 'KV unavailable' }) });
    expect(w.calls).toEqual([]);
    await runtime.close();
  });

  it('journals the decision before any compensation goes out, and reports an outcome only once it is journaled', async () => {
    const clock = createManualClock();
    const w = world();
    const inner = memorySagaStore({ clock });
    let hold: Promise<void> | undefined;
    const store = { ...inner, write: async (rec: Parameters<typeof inner.write>[0], rev: number) => (await hold, inner.write(rec, rev)) };
    const runtime = createRuntime({ clock, store }).host(w.make('flights'), w.make('hotels', { do: () => Promise.reject(new TerminalError('full')) }), w.make('cars'));
    let gate!: () => void;
    hold = new Promise<void>((r) => (gate = r));
    let outcome: SagaOutcome | undefined;
    void runtime.run(tripOf(), { to: 'X' }, { sagaId: 'wa' }).then((o) => (outcome = o));
    await clock.advance(10);
    expect(w.calls.filter((c) => c.endsWith('.compensate'))).toEqual([]); // the abort decision is not journaled yet
    gate();
    hold = undefined;
    await clock.advance(10);
    expect(w.calls.filter((c) => c.endsWith('.compensate')).sort()).toEqual(['cars.compensate', 'flights.compensate']);
    expect(outcome).toMatchObject({ status: 'compensated' });
    expect((await inner.get('wa'))?.outcome).toMatchObject({ status: 'compensated' });
    await runtime.close();
  });

  it('stops a saga whose journal stays unavailable and leaves it to recover(), with a typed error', async () => {
    const clock = createManualClock();
    const w = world();
    const { inner, store, setDown } = downable(clock);
    const runtime = createRuntime({ clock, store, journalRetryMs: 1_000 }).host(w.make('flights'), w.make('hotels'), w.make('cars'));
    setDown(true);
    const running = runtime.run(tripOf(), { to: 'X' }, { sagaId: 'down' });
    running.catch(() => undefined);
    await clock.advance(5_000);
    await expect(running).rejects.toMatchObject({ code: 'JOURNAL_UNAVAILABLE', dispatched: true, message: expect.stringContaining('recover()') });
    expect(runtime.inFlight).toBe(0);
    setDown(false);
    const outcome = new Promise<SagaOutcome>((resolve) => runtime.on('outcome', resolve));
    expect(await runtime.recover()).toEqual(['down']);
    await clock.advance(10);
    expect(await outcome).toMatchObject({ status: 'committed' });
    expect(w.calls.filter((c) => c.endsWith('.do'))).toHaveLength(3);
    await runtime.close();
  });
});

/** A journal store whose writes fail ('KV unavailable') while it is down. */
function downable(clock: ReturnType<typeof createManualClock>) {
  const inner = memorySagaStore({ clock });
  let down = false;
  const store = { ...inner, write: async (rec: Parameters<typeof inner.write>[0], rev: number) => (down ? Promise.reject(new Error('KV unavailable')) : inner.write(rec, rev)) };
  return { inner, store, setDown: (d: boolean) => void (down = d) };
}

describe('runtime: journal writes whose answer is lost', () => {
  /** A store whose next `n` writes (or intents) land but throw, as when the server dies after committing. */
  function lossy(clock: ReturnType<typeof createManualClock>) {
    const inner = memorySagaStore({ clock });
    let loseWrites = 0;
    let loseIntents = 0;
    const store = {
      ...inner,
      begin: async (rec: Parameters<typeof inner.begin>[0]) => {
        const v = await inner.begin(rec);
        if (loseIntents > 0 && loseIntents--) throw new Error('no answer to the intent');
        return v;
      },
      write: async (rec: Parameters<typeof inner.write>[0], rev: number) => {
        const v = await inner.write(rec, rev);
        if (loseWrites > 0 && loseWrites--) throw new Error('no answer to the write');
        return v;
      },
    };
    return { inner, store, lose: (writes: number, intents = 0) => ((loseWrites = writes), (loseIntents = intents)) };
  }

  it('a write that landed with its answer lost is read back, not taken for another coordinator: the saga goes on', async () => {
    const clock = createManualClock();
    const w = world();
    const l = lossy(clock);
    const runtime = createRuntime({ clock, store: l.store }).host(w.make('flights'), w.make('hotels'), w.make('cars'));
    l.lose(2, 1);
    const running = runtime.run(tripOf(), { to: 'X' }, { sagaId: 'lost' });
    await clock.advance(1_000);
    await expect(running).resolves.toMatchObject({ status: 'committed' });
    expect(w.calls.filter((c) => c.endsWith('.do')).sort()).toEqual(['cars.do', 'flights.do', 'hotels.do']);
    expect((await l.inner.get('lost'))?.outcome).toMatchObject({ status: 'committed' });
    await runtime.close();
  });

  it('a saga stopped here while its journal failed is taken up again by this coordinator once the store answers, without recover()', async () => {
    const clock = createManualClock();
    const w = world();
    const { inner, store, setDown } = downable(clock);
    const runtime = createRuntime({ clock, store, journalRetryMs: 1_000, sagas: [tripOf()], ownership: { id: 'me', leaseMs: 1_000 } }).host(w.make('flights'), w.make('hotels'), w.make('cars'));
    setDown(true);
    const running = runtime.run(tripOf(), { to: 'X' }, { sagaId: 'stray' });
    running.catch(() => undefined);
    await clock.advance(3_000);
    await expect(running).rejects.toMatchObject({ code: 'JOURNAL_UNAVAILABLE', dispatched: true });
    expect(runtime.inFlight).toBe(0);
    setDown(false);
    await clock.advance(2_000);
    expect((await inner.get('stray'))?.outcome).toMatchObject({ status: 'committed' });
    expect(await runtime.outcome('stray')).toMatchObject({ status: 'committed' });
    await runtime.close();
  });
});

describe('runtime: closing', () => {
  it('rejects the run() of a saga still running when the runtime closes', async () => {
    const clock = createManualClock();
    const w = world();
    const gate = deferred<void>();
    const runtime = createRuntime({ clock }).host(w.make('flights', { do: () => gate.promise }), w.make('hotels'), w.make('cars'));
    const running = runtime.run(tripOf(), { to: 'X' });
    await clock.advance(1);
    const closing = runtime.close({ drainMs: 0 });
    await expect(running).rejects.toMatchObject({ code: 'RUNTIME_CLOSED', message: expect.stringContaining('recover()') });
    gate.resolve();
    await closing;
  });

  it('rejects a run still writing its intent when the runtime closes, and dispatches nothing', async () => {
    const w = world();
    const inner = memorySagaStore();
    let release!: () => void;
    const slowBegin = new Promise<void>((r) => (release = r));
    const store = { ...inner, begin: async (rec: Parameters<typeof inner.begin>[0]) => (await slowBegin, inner.begin(rec)) };
    const runtime = createRuntime({ store }).host(w.make('flights'), w.make('hotels'), w.make('cars'));
    const running = runtime.run(tripOf(), { to: 'X' });
    await new Promise((r) => setTimeout(r, 5));
    await runtime.close();
    release();
    await expect(running).rejects.toMatchObject({ code: 'RUNTIME_CLOSED' });
    expect(w.calls).toEqual([]);
  });
});

describe('runtime: misuse', () => {
  it('fails before dispatch when a worker is not hosted', async () => {
    const w = world();
    const runtime = createRuntime().host(w.make('flights'));
    const err = await runtime.run(tripOf(), { to: 'X' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(WorkerNotHostedError);
    expect((err as WorkerNotHostedError).workers).toEqual(['hotels', 'cars']);
    expect(w.calls).toEqual([]);
    await runtime.close();
  });

  it('rejects input that cannot be serialized, naming the path, before dispatch', async () => {
    const w = world();
    const runtime = createRuntime().host(w.make('flights'), w.make('hotels'), w.make('cars'));
    const cyclic: Record<string, unknown> = { to: 'X' };
    cyclic.self = cyclic;
    for (const [input, path] of [
      [{ to: 'X', fn: () => 1 }, 'input.fn'],
      [cyclic, 'input.self'],
      [{ to: 'X', n: 10n }, 'input.n'],
      [{ to: 'X', when: new Map() }, 'input.when'],
    ] as const) {
      const err = await runtime.run(tripOf(), input as never).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(InputNotSerializableError);
      expect((err as InputNotSerializableError).path).toBe(path);
    }
    const badStep = defineSaga({ name: 'b', version: 1, steps: { a: { worker: 'flights', input: () => ({ f: () => 1 }) } } });
    await expect(runtime.run(badStep, {})).rejects.toMatchObject({ code: 'INPUT_NOT_SERIALIZABLE', path: "step 'a' input.f" });
    expect(w.calls).toEqual([]);
    await runtime.close();
  });

  it('rejects bad options and bad calls with typed errors', async () => {
    expect(() => createRuntime({ timerTickMs: -1 })).toThrow(InvalidOptionError);
    expect(() => createRuntime({ colour: 'blue' } as never)).toThrow(/option 'colour'/);
    const w = world();
    const runtime = createRuntime().host(w.make('flights'));
    expect(() => runtime.host(w.make('flights'))).toThrow(/already hosted/);
    await expect(runtime.run({ name: 'fake' } as never, {} as never)).rejects.toMatchObject({ code: 'DEFINITION_INVALID' });
    expect(() => runtime.on('nonsense' as never, () => {})).toThrow(InvalidOptionError);
    await runtime.close();
    await expect(runtime.run(tripOf(), { to: 'X' })).rejects.toMatchObject({ code: 'RUNTIME_CLOSED' });
  });
});

describe('runtime: inspection', () => {
  it('shows every saga and worker actor to an XState inspector', async () => {
    const seen = new Set<string>();
    const events: string[] = [];
    const w = world();
    const runtime = createRuntime({
      inspect: (ev) => {
        if (ev.type === '@xstate.actor') seen.add((ev.actorRef as unknown as { id: string }).id);
        if (ev.type === '@xstate.event' && (ev.actorRef as unknown as { id: string }).id === 'i-1') events.push(ev.event.type);
      },
    }).host(w.make('flights'), w.make('hotels'), w.make('cars'));
    await runtime.run(tripOf(), { to: 'X' }, { sagaId: 'i-1' });
    expect(seen).toContain('i-1');
    expect(seen).toContain('worker:flights');
    expect(seen).toContain('timer');
    expect(events.filter((e) => e === 'STEP.COMMITTED')).toHaveLength(3);
    await runtime.close();
  });
});

describe('runtime: logging', () => {
  it('logs JSON with sagaId and stepId bindings', async () => {
    const lines: Record<string, unknown>[] = [];
    const sink = new Writable({
      write(chunk, _enc, done) {
        for (const line of String(chunk).split('\n')) if (line.trim()) lines.push(JSON.parse(line));
        done();
      },
    });
    const logger = pino({ level: 'info' }, sink);
    const w = world();
    const runtime = createRuntime({ logger }).host(
      w.make('flights', {
        compensate: () => {
          throw new Error('nope');
        },
      }),
      w.make('hotels', {
        do: (ctx) => {
          ctx.logger.info({ room: 12 }, 'hotel trying');
          throw new TerminalError('full');
        },
      }),
      w.make('cars'),
    );
    const saga = tripOf(1_000, { retries: 0, backoff: { initialMs: 1, factor: 1, maxMs: 1 } });
    await runtime.run(saga, { to: 'X' }, { sagaId: 'log-1' });
    await new Promise((r) => setTimeout(r, 10));
    expect(lines).toContainEqual(expect.objectContaining({ msg: 'hotel trying', sagaId: 'log-1', stepId: 'hotel', worker: 'hotels', room: 12 }));
    expect(lines).toContainEqual(expect.objectContaining({ msg: 'compensation failed', sagaId: 'log-1', stepId: 'flight', level: 40 }));
    expect(lines).toContainEqual(expect.objectContaining({ msg: 'saga parked: compensation failed', sagaId: 'log-1', level: 50 }));
    await runtime.close();
  });
});
