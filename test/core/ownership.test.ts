/**
 * Several coordinators on one store: heartbeats, presumed death by the watcher's own
 * clock, and the takeover of a dead coordinator's running sagas within the lease plus a
 * second.
 */
import { describe, expect, it } from 'vitest';
import { createRuntime, createWorkerHost, defineSaga, defineWorker, InvalidOptionError, memoryDedupStore, memorySagaStore, memoryTransport } from '../../src/index.ts';
import { beatInterval, isDead, observe } from '../../src/coordination/ownership.ts';
import { createManualClock } from '../../src/testing/clock.ts';

describe('ownership bookkeeping (pure)', () => {
  it('a coordinator is dead once its heartbeat revision has not changed for longer than the lease', () => {
    let seen = observe(new Map(), new Map([['a', 1], ['b', 7]]), [], 0);
    seen = observe(seen, new Map([['a', 2], ['b', 7]]), [], 400);
    expect(isDead(seen, 'a', 'me', 1_000, 1_000)).toBe(false);
    expect(isDead(seen, 'b', 'me', 1_000, 1_000)).toBe(false);
    expect(isDead(seen, 'b', 'me', 1_001, 1_000)).toBe(true);
    expect(isDead(seen, 'a', 'me', 1_401, 1_000)).toBe(true);
    // Never itself, and an owner never seen is not presumed dead until watched for a lease.
    expect(isDead(seen, 'me', 'me', 99_999, 1_000)).toBe(false);
    expect(isDead(seen, 'ghost', 'me', 99_999, 1_000)).toBe(false);
    seen = observe(seen, new Map(), ['ghost'], 5_000);
    expect(isDead(seen, 'ghost', 'me', 6_001, 1_000)).toBe(true);
  });

  it('beats often enough for a takeover within the lease plus a second', () => {
    expect(beatInterval(10_000)).toBe(500);
    expect(beatInterval(1_000)).toBe(250);
    expect(beatInterval(100)).toBe(25);
  });
});

describe('coordinators sharing one store', () => {
  function world() {
    const clock = createManualClock();
    const store = memorySagaStore({ clock });
    const transport = memoryTransport();
    const held = new Set<string>();
    let release: (() => void) | undefined;
    const slow = defineWorker({
      name: 'slow',
      do: async (_i: unknown, ctx) => {
        // The first run hangs (its coordinator dies meanwhile); later runs of the key answer at once.
        if (release === undefined) await new Promise<void>((r) => (release = r));
        held.add(ctx.idempotencyKey);
        return 'ok';
      },
      compensate: (_i, _r, ctx) => void held.delete(ctx.idempotencyKey),
    });
    const host = createWorkerHost([slow], { dedup: memoryDedupStore({ clock }), clock });
    void host.serve(transport);
    const saga = defineSaga({ name: 'slow', version: 1, steps: { s: { worker: 'slow', timeoutMs: 60_000 } } });
    return { clock, store, transport, held, saga, release: () => release?.() };
  }

  it('a live coordinator takes over the running sagas of one that died, within the lease plus a second', async () => {
    const w = world();
    const leaseMs = 2_000;
    const a = createRuntime({ clock: w.clock, store: w.store, transport: w.transport, sagas: [w.saga], ownership: { id: 'coord-a', leaseMs } });
    const b = createRuntime({ clock: w.clock, store: w.store, transport: w.transport, sagas: [w.saga], ownership: { id: 'coord-b', leaseMs } });
    expect([a.coordinatorId, b.coordinatorId]).toEqual(['coord-a', 'coord-b']);
    const running = a.run(w.saga, {}, { sagaId: 'orphan' });
    await w.clock.advance(10);
    expect((await w.store.get('orphan'))?.owner).toBe('coord-a');
    // Coordinator a dies: it beats no more and drives nothing more.
    const died = w.clock.now();
    await a.close({ drainMs: 0 });
    await expect(running).rejects.toMatchObject({ code: 'RUNTIME_CLOSED' });
    w.release();
    let takenAt: number | undefined;
    for (let t = 0; t < 10_000 && takenAt === undefined; t += 50) {
      await w.clock.advance(50);
      if ((await w.store.get('orphan'))?.owner === 'coord-b') takenAt = w.clock.now();
    }
    expect(takenAt).toBeDefined();
    expect((takenAt as number) - died).toBeLessThanOrEqual(leaseMs + 1_000);
    await w.clock.advance(100);
    expect(await b.outcome('orphan')).toMatchObject({ status: 'committed' });
    expect(w.held.size).toBe(1);
    await b.close();
  });

  it('a coordinator that keeps beating keeps its sagas; with ownership off nothing is taken over', async () => {
    const w = world();
    const a = createRuntime({ clock: w.clock, store: w.store, transport: w.transport, sagas: [w.saga], ownership: { id: 'coord-a', leaseMs: 500 } });
    const b = createRuntime({ clock: w.clock, store: w.store, transport: w.transport, sagas: [w.saga], ownership: { id: 'coord-b', leaseMs: 500 } });
    const running = a.run(w.saga, {}, { sagaId: 'kept' });
    await w.clock.advance(5_000);
    expect((await w.store.get('kept'))?.owner).toBe('coord-a');
    w.release();
    await w.clock.advance(10);
    expect(await running).toMatchObject({ status: 'committed' });
    await a.close();
    await b.close();

    const w2 = world();
    const c = createRuntime({ clock: w2.clock, store: w2.store, transport: w2.transport, sagas: [w2.saga], ownership: false });
    const d = createRuntime({ clock: w2.clock, store: w2.store, transport: w2.transport, sagas: [w2.saga], ownership: false });
    void c.run(w2.saga, {}, { sagaId: 'left' }).catch(() => undefined);
    await w2.clock.advance(10);
    await c.close({ drainMs: 0 });
    await w2.clock.advance(60_000);
    expect((await w2.store.get('left'))?.owner).toBe(c.coordinatorId);
    expect(await d.recover()).toEqual(['left']);
    w2.release();
    await d.close({ drainMs: 0 });
  });

  it('takes over the sagas of a coordinator it never saw beat (closed before this one started), without recover()', async () => {
    const w = world();
    const leaseMs = 2_000;
    const a = createRuntime({ clock: w.clock, store: w.store, transport: w.transport, sagas: [w.saga], ownership: { id: 'coord-a', leaseMs } });
    const running = a.run(w.saga, {}, { sagaId: 'unseen' });
    await w.clock.advance(10);
    // a closes (removing its heartbeat) before b exists: b never sees a heartbeat of a.
    await a.close({ drainMs: 0 });
    await expect(running).rejects.toMatchObject({ code: 'RUNTIME_CLOSED' });
    w.release();
    const started = w.clock.now();
    const b = createRuntime({ clock: w.clock, store: w.store, transport: w.transport, sagas: [w.saga], ownership: { id: 'coord-b', leaseMs } });
    let takenAt: number | undefined;
    for (let t = 0; t < 120_000 && takenAt === undefined; t += 100) {
      await w.clock.advance(100);
      if ((await w.store.get('unseen'))?.owner === 'coord-b') takenAt = w.clock.now();
    }
    expect(takenAt).toBeDefined();
    // Within two leases and a second of b starting (a first sweep, then the lease of an owner never seen beating).
    expect((takenAt as number) - started).toBeLessThanOrEqual(2 * leaseMs + 1_000);
    await w.clock.advance(100);
    expect(await b.outcome('unseen')).toMatchObject({ status: 'committed' });
    await b.close();
  });

  it("runs the store's retention (prune) on start and about once a minute, one at a time, and aborts it on close", async () => {
    const clock = createManualClock();
    const calls: AbortSignal[] = [];
    let finish: (() => void) | undefined;
    const store = memorySagaStore({ clock });
    store.prune = (signal?: AbortSignal) => {
      calls.push(signal as AbortSignal);
      return new Promise<number>((resolve) => {
        finish = () => resolve(1);
        signal?.addEventListener('abort', () => resolve(0));
      });
    };
    const runtime = createRuntime({ clock, store, ownership: { id: 'p', leaseMs: 1_000 } });
    await clock.settle();
    expect(calls).toHaveLength(1);
    await clock.advance(70_000);
    expect(calls).toHaveLength(1); // still running: never two at once
    finish?.();
    await clock.advance(70_000);
    expect(calls).toHaveLength(2);
    expect(calls[1]?.aborted).toBe(false);
    await runtime.close();
    expect(calls[1]?.aborted).toBe(true);
  });

  it('rejects bad ownership options with typed errors', () => {
    expect(() => createRuntime({ ownership: { leaseMs: 5 } })).toThrow(InvalidOptionError);
    expect(() => createRuntime({ ownership: { id: 'bad id!' } })).toThrow(/ownership.id/);
    expect(() => createRuntime({ ownership: { lease: 1 } as never })).toThrow(/ownership.lease/);
    expect(() => createRuntime({ ownership: 'yes' as never })).toThrow(/ownership/);
  });
});
