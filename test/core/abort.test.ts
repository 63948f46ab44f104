/**
 * runtime.abort(sagaId): an operator stops a running saga; every step that committed or may
 * have is undone, from the runtime that drives it or from another one sharing the store.
 */
import { describe, expect, it } from 'vitest';
import { createRuntime, defineSaga, defineWorker, InvalidOptionError, memorySagaStore, memoryTransport, SagaError } from '../../src/index.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls until `cond` holds (at most 5 s): no timing guess on a loaded machine. */
async function until(cond: () => boolean): Promise<void> {
  for (let i = 0; i < 500 && !cond(); i++) await sleep(10);
  expect(cond()).toBe(true);
}

function world() {
  const effects = new Map<string, number>();
  const worker = (name: string, ms: number | Promise<unknown>, undo: () => boolean = () => true) =>
    defineWorker({
      name,
      do: async (_input: unknown, ctx) => {
        if (typeof ms === 'number') await sleep(ms);
        else await ms;
        effects.set(ctx.idempotencyKey, 1);
        return { name };
      },
      compensate: async (_input: unknown, _result: unknown, ctx) => {
        if (!undo()) throw new Error('cannot undo now');
        effects.delete(ctx.idempotencyKey);
      },
    });
  return { effects, worker };
}

const code = async (p: Promise<unknown>) =>
  p.then(
    () => 'resolved',
    (e: unknown) => (e as SagaError).code,
  );

describe('runtime.abort', () => {
  it('undoes a step that committed and one still running (after it lands), and says who aborted', async () => {
    const { effects, worker } = world();
    const saga = defineSaga({ name: 'trip', version: 1, steps: { fast: { worker: 'fast' }, slow: { worker: 'slow', timeoutMs: 5_000 } } });
    let land!: () => void;
    const landed = new Promise<void>((r) => (land = r));
    const runtime = createRuntime().host(worker('fast', 0), worker('slow', landed));
    const run = runtime.run(saga, {}, { sagaId: 't1' });
    await until(() => effects.size === 1);
    const aborting = runtime.abort('t1', 'customer cancelled');
    // The slow do lands after the abort: its undo waits for it.
    await sleep(20);
    land();
    const outcome = await aborting;
    expect(outcome).toMatchObject({ sagaId: 't1', status: 'compensated', abortedByOperator: { note: 'customer cancelled' }, failures: [] });
    expect([...(outcome as unknown as { compensated: string[] }).compensated].sort()).toEqual(['fast', 'slow']);
    expect(await run).toEqual(outcome);
    expect(effects.size).toBe(0);
    expect(await runtime.status('t1')).toMatchObject({ state: 'compensated', outcome: { abortedByOperator: { note: 'customer cancelled' } } });
    await runtime.close();
  });

  it('from another coordinator sharing the store: it takes the saga over and aborts it', async () => {
    const { effects, worker } = world();
    const store = memorySagaStore();
    const transport = memoryTransport();
    const saga = defineSaga({ name: 'trip', version: 1, steps: { fast: { worker: 'fast' }, slow: { worker: 'slow', timeoutMs: 5_000 } } });
    let land!: () => void;
    const landed = new Promise<void>((r) => (land = r));
    const a = createRuntime({ store, transport, ownership: { id: 'a' } }).host(worker('fast', 0), worker('slow', landed));
    const b = createRuntime({ store, transport, sagas: [saga], ownership: { id: 'b' } });
    const run = a.run(saga, {}, { sagaId: 't2' });
    run.catch(() => undefined);
    await until(() => effects.size === 1);
    const aborting = b.abort('t2');
    await sleep(20);
    land();
    const outcome = await aborting;
    expect(outcome).toMatchObject({ status: 'compensated', abortedByOperator: {} });
    await sleep(50);
    expect(effects.size).toBe(0);
    expect(await a.status('t2')).toMatchObject({ state: 'compensated' });
    await b.close();
    await a.close();
  });

  it('a saga whose undo fails parks, listing what remains', async () => {
    const { effects, worker } = world();
    const saga = defineSaga({ name: 'stuck', version: 1, steps: { x: { worker: 'x' }, y: { worker: 'y', timeoutMs: 5_000 } }, compensation: { retries: 0, backoff: { initialMs: 1 } } });
    let land!: () => void;
    const landed = new Promise<void>((r) => (land = r));
    const runtime = createRuntime().host(
      worker('x', 0, () => false),
      worker('y', landed),
    );
    const run = runtime.run(saga, {}, { sagaId: 's' });
    await until(() => effects.size === 1);
    const aborting = runtime.abort('s');
    await sleep(20);
    land();
    expect(await aborting).toMatchObject({ status: 'compensation-failed', decision: 'abort', abortedByOperator: {}, remaining: [{ stepId: 'x', inDoubt: false }] });
    await run;
    expect(effects.size).toBe(1);
    expect(await code(runtime.abort('s'))).toBe('SAGA_NOT_RUNNING');
    await runtime.close();
  });

  it('refuses what is not running, and bad arguments', async () => {
    const { worker } = world();
    const saga = defineSaga({ name: 'one', version: 1, steps: { a: { worker: 'a' } } });
    const runtime = createRuntime().host(worker('a', 0));
    await runtime.run(saga, {}, { sagaId: 'done' });
    expect(await code(runtime.abort('done'))).toBe('SAGA_NOT_RUNNING');
    await expect(runtime.abort('done')).rejects.toThrow(/committed, not running/);
    expect(await code(runtime.abort('nobody'))).toBe('SAGA_NOT_FOUND');
    await expect(runtime.abort('')).rejects.toThrow(InvalidOptionError);
    await expect(runtime.abort('done', 42 as never)).rejects.toThrow(/note/);
    await runtime.close();
    expect(await code(runtime.abort('done'))).toBe('RUNTIME_CLOSED');
  });
});
