/**
 * run() with a saga id that is already used: the same saga and input get the existing
 * saga's outcome and start nothing; another saga, version or input is a SAGA_ID_CONFLICT
 * that writes and sends nothing; once the store no longer keeps a finished saga, the id
 * starts a new one.
 */
import { describe, expect, it } from 'vitest';
import { createRuntime, createWorkerHost, defineSaga, defineWorker, memorySagaStore, memoryTransport, TerminalError } from '../../src/index.ts';
import type { WorkerDefinition } from '../../src/index.ts';
import { createManualClock } from '../../src/testing/clock.ts';

function deferred<T>() {
  let resolve!: (v: T) => void;
  const promise = new Promise<T>((res) => (resolve = res));
  return { promise, resolve };
}

interface Order {
  sku: string;
  qty: number;
}

/** Workers that log every call; `charge` can be made to fail or to wait. */
function workers(charge: { fail?: boolean; gate?: Promise<void> } = {}) {
  const calls: string[] = [];
  const make = (name: string, run?: () => Promise<void> | void): WorkerDefinition =>
    defineWorker({
      name,
      async do(input: unknown) {
        calls.push(`${name}.do`);
        await run?.();
        return { input };
      },
      async compensate() {
        calls.push(`${name}.compensate`);
      },
    });
  const list = [
    make('stock'),
    make('payments', async () => {
      await charge.gate;
      if (charge.fail === true) throw new TerminalError('card declined');
    }),
  ];
  return { list, calls };
}

const orderV = (version: number, name = 'order') =>
  defineSaga({
    name,
    version,
    steps: {
      reserve: { worker: 'stock', input: (o: Order) => ({ sku: o.sku, qty: o.qty }) },
      charge: { worker: 'payments', input: (o: Order) => ({ amount: o.qty * 10 }) },
    },
  });

describe('run() with a saga id already used', () => {
  it('returns the outcome of a finished saga for the same saga and input (keys in any order), and starts nothing', async () => {
    const w = workers();
    const runtime = createRuntime().host(...w.list);
    const first = await runtime.run(orderV(1), { sku: 'A', qty: 2 }, { sagaId: 'o-1' });
    expect(first).toMatchObject({ sagaId: 'o-1', status: 'committed' });
    const calls = [...w.calls];
    // The input is compared as canonical JSON: the order of its keys does not matter.
    expect(await runtime.run(orderV(1), { qty: 2, sku: 'A' }, { sagaId: 'o-1' })).toEqual(first);
    expect(w.calls).toEqual(calls);
    await runtime.close();
  });

  it('returns a compensated outcome as it is: the same id does not run the saga again', async () => {
    const w = workers({ fail: true });
    const runtime = createRuntime().host(...w.list);
    const first = await runtime.run(orderV(1), { sku: 'A', qty: 2 }, { sagaId: 'o-2' });
    expect(first).toMatchObject({ status: 'compensated' });
    const calls = [...w.calls];
    expect(await runtime.run(orderV(1), { sku: 'A', qty: 2 }, { sagaId: 'o-2' })).toEqual(first);
    expect(w.calls).toEqual(calls);
    await runtime.close();
  });

  it('rejects another input, another version or another saga with SAGA_ID_CONFLICT, and writes or sends nothing', async () => {
    const w = workers();
    const store = memorySagaStore();
    const runtime = createRuntime({ store }).host(...w.list);
    const first = await runtime.run(orderV(1), { sku: 'A', qty: 2 }, { sagaId: 'o-3' });
    const journal = await store.load('o-3');
    const calls = [...w.calls];

    await expect(runtime.run(orderV(1), { sku: 'A', qty: 3 }, { sagaId: 'o-3' })).rejects.toMatchObject({
      code: 'SAGA_ID_CONFLICT',
      message: "saga id 'o-3' is already used by saga 'order' version 1 with another input",
    });
    await expect(runtime.run(orderV(2), { sku: 'A', qty: 2 }, { sagaId: 'o-3' })).rejects.toMatchObject({
      code: 'SAGA_ID_CONFLICT',
      message: "saga id 'o-3' is already used by saga 'order' version 1",
    });
    await expect(runtime.run(orderV(1, 'refund'), { sku: 'A', qty: 2 }, { sagaId: 'o-3' })).rejects.toMatchObject({ code: 'SAGA_ID_CONFLICT' });

    expect(w.calls).toEqual(calls);
    expect(await store.load('o-3')).toEqual(journal);
    // The saga that holds the id is untouched.
    expect(await runtime.run(orderV(1), { sku: 'A', qty: 2 }, { sagaId: 'o-3' })).toEqual(first);
    await runtime.close();
  });

  it('rejects another input while the saga runs, and the running saga ends as it would have', async () => {
    const clock = createManualClock();
    const gate = deferred<void>();
    const w = workers({ gate: gate.promise });
    const runtime = createRuntime({ clock }).host(...w.list);
    const first = runtime.run(orderV(1), { sku: 'A', qty: 2 }, { sagaId: 'o-4' });
    await clock.advance(1);
    await expect(runtime.run(orderV(1), { sku: 'B', qty: 2 }, { sagaId: 'o-4' })).rejects.toMatchObject({ code: 'SAGA_ID_CONFLICT' });
    expect(runtime.inFlight).toBe(1);
    gate.resolve();
    await clock.advance(1);
    expect(await first).toMatchObject({ status: 'committed', results: { reserve: { input: { sku: 'A', qty: 2 } } } });
    expect(w.calls.filter((c) => c === 'stock.do')).toHaveLength(1);
    await runtime.close();
  });

  it('is checked against the store: another runtime on the same store gets the outcome, or the conflict', async () => {
    const store = memorySagaStore();
    const transport = memoryTransport();
    const w = workers();
    await createWorkerHost(w.list).serve(transport);
    const a = createRuntime({ store, transport });
    const first = await a.run(orderV(1), { sku: 'A', qty: 2 }, { sagaId: 'o-5' });
    await a.close();
    const calls = [...w.calls];
    const b = createRuntime({ store, transport });
    expect(await b.run(orderV(1), { sku: 'A', qty: 2 }, { sagaId: 'o-5' })).toEqual(first);
    await expect(b.run(orderV(1), { sku: 'A', qty: 9 }, { sagaId: 'o-5' })).rejects.toMatchObject({ code: 'SAGA_ID_CONFLICT' });
    expect(w.calls).toEqual(calls);
    await b.close();
  });

  it('starts a new saga once the store no longer keeps the finished one', async () => {
    const w = workers();
    const store = memorySagaStore({ keepFinished: 0 });
    const runtime = createRuntime({ store }).host(...w.list);
    expect(await runtime.run(orderV(1), { sku: 'A', qty: 2 }, { sagaId: 'o-6' })).toMatchObject({ status: 'committed' });
    expect(await store.get('o-6')).toBeUndefined();
    // Forgotten: another input is no conflict, it is a new saga with new idempotency keys.
    const second = await runtime.run(orderV(1), { sku: 'B', qty: 1 }, { sagaId: 'o-6' });
    expect(second).toMatchObject({ status: 'committed', results: { reserve: { input: { sku: 'B', qty: 1 } } } });
    expect(w.calls.filter((c) => c === 'stock.do')).toHaveLength(2);
    await runtime.close();
  });

  it('with the same input once the journal is forgotten: a new saga whose keys the worker hosts may still remember', async () => {
    const committed = workers();
    const store = memorySagaStore({ keepFinished: 0 });
    const a = createRuntime({ store }).host(...committed.list);
    await a.run(orderV(1), { sku: 'A', qty: 2 }, { sagaId: 'o-7' });
    const calls = [...committed.calls];
    // Same id, same input: same idempotency keys; the hosts answer from their records, no do runs again.
    expect(await a.run(orderV(1), { sku: 'A', qty: 2 }, { sagaId: 'o-7' })).toMatchObject({ status: 'committed' });
    expect(committed.calls).toEqual(calls);
    await a.close();

    const declined = workers({ fail: true });
    const b = createRuntime({ store }).host(...declined.list);
    expect(await b.run(orderV(1), { sku: 'A', qty: 2 }, { sagaId: 'o-8' })).toMatchObject({ status: 'compensated', compensated: ['reserve'] });
    // The compensated key is a tombstone on its host: the new saga's do is refused, and it is compensated too.
    const again = await b.run(orderV(1), { sku: 'A', qty: 2 }, { sagaId: 'o-8' });
    expect(again).toMatchObject({ status: 'compensated', failures: expect.arrayContaining([expect.objectContaining({ stepId: 'reserve', error: expect.objectContaining({ code: 'COMPENSATED' }) })]) });
    expect(declined.calls.filter((c) => c === 'stock.do')).toHaveLength(1);
    await b.close();
  });
});
