/**
 * close(): what it waits for (the calls in flight of workers hosted by the runtime, up to
 * drainMs of real time) and what it leaves alone (the transport, and the store's journals).
 */
import { describe, expect, it } from 'vitest';
import { createRuntime, createWorkerHost, defineSaga, defineWorker, memorySagaStore, memoryTransport } from '../../src/index.ts';

function deferred<T>() {
  let resolve!: (v: T) => void;
  const promise = new Promise<T>((res) => (resolve = res));
  return { promise, resolve };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Resolves true once `p` settles, or false after `ms`. */
const settlesWithin = (p: Promise<unknown>, ms: number) => Promise.race([p.then(() => true, () => true), sleep(ms).then(() => false)]);

const saga = defineSaga({ name: 'one', version: 1, steps: { s: { worker: 'slow' } } });

describe('close()', () => {
  it('waits for the calls in flight of workers hosted here, then resolves; the saga is left to recover()', async () => {
    const gate = deferred<void>();
    const started = deferred<void>();
    let finished = false;
    const slow = defineWorker({
      name: 'slow',
      async do() {
        started.resolve();
        await gate.promise;
        finished = true;
        return 'done';
      },
      compensate: () => undefined,
    });
    const store = memorySagaStore();
    const runtime = createRuntime({ store }).host(slow);
    const running = runtime.run(saga, {}, { sagaId: 'c-1' });
    const rejected = running.catch((e: unknown) => e);
    await started.promise;
    const closing = runtime.close({ drainMs: 10_000 });
    // The saga is stopped at once; its run() rejects without waiting for the drain.
    expect(await rejected).toMatchObject({ code: 'RUNTIME_CLOSED' });
    expect(await settlesWithin(closing, 50)).toBe(false);
    gate.resolve();
    await closing;
    expect(finished).toBe(true);
    expect((await store.get('c-1'))?.status).toBe('running');
    // A second call resolves at once.
    await runtime.close();
  });

  it('gives up waiting after drainMs', async () => {
    const never = defineWorker({ name: 'slow', do: () => new Promise<unknown>(() => {}), compensate: () => undefined });
    const runtime = createRuntime().host(never);
    runtime.run(saga, {}).catch(() => undefined);
    await sleep(5);
    const t0 = Date.now();
    await runtime.close({ drainMs: 30 });
    const waited = Date.now() - t0;
    expect(waited).toBeGreaterThanOrEqual(20);
    expect(waited).toBeLessThan(2_000);
  });

  it('leaves the transport open: workers served on it by others still answer', async () => {
    const transport = memoryTransport();
    const slow = defineWorker({ name: 'slow', do: () => 'ok', compensate: () => undefined });
    await createWorkerHost([slow]).serve(transport);
    const a = createRuntime({ transport });
    expect(await a.run(saga, {})).toMatchObject({ status: 'committed' });
    await a.close();
    await expect(a.run(saga, {})).rejects.toMatchObject({ code: 'RUNTIME_CLOSED' });
    const b = createRuntime({ transport });
    expect(await b.run(saga, {})).toMatchObject({ status: 'committed' });
    await b.close();
  });
});
