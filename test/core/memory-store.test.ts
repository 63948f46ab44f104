import { describe, expect, it } from 'vitest';
import { createRuntime, defineSaga, defineWorker, memoryDedupStore, memorySagaStore } from '../../src/index.ts';
import type { KeyRecord, SagaRecord } from '../../src/index.ts';
import { createManualClock } from '../../src/testing/clock.ts';

describe('in-memory dedup store', () => {
  const rec = (at: number): KeyRecord => ({ state: 'done', inputHash: 'h', updatedAt: at });
  /** Writes over whatever revision the key has now. */
  const put = (store: ReturnType<typeof memoryDedupStore>, k: string, r: KeyRecord) => store.write('w', k, r, (store.read('w', k) as { revision: number }).revision);
  const has = (store: ReturnType<typeof memoryDedupStore>, k: string) => (store.read('w', k) as { record?: KeyRecord }).record !== undefined;

  it('forgets keys after the window and beyond the size bound, oldest first', async () => {
    const clock = createManualClock();
    const store = memoryDedupStore({ clock, windowMs: 1_000, maxRecords: 3 });
    for (const k of ['a', 'b', 'c', 'd']) put(store, k, rec(clock.now()));
    expect(store.size).toBe(3);
    expect(has(store, 'a')).toBe(false);
    put(store, 'b', rec(clock.now())); // b is now the most recent
    put(store, 'e', rec(clock.now()));
    expect(['b', 'c', 'd', 'e'].filter((k) => has(store, k))).toEqual(['b', 'd', 'e']);
    await clock.advance(1_001);
    expect(has(store, 'e')).toBe(false);
    put(store, 'f', rec(clock.now()));
    expect(store.size).toBe(1);
  });

  it('writes only over the revision named (compare-and-set), and names the revision of a forgotten key', async () => {
    const clock = createManualClock();
    const store = memoryDedupStore({ clock, windowMs: 1_000 });
    expect(store.read('w', 'k')).toEqual({ record: undefined, revision: 0 });
    const r1 = store.write('w', 'k', rec(0), 0) as number;
    expect(r1).toBeGreaterThan(0);
    expect(store.write('w', 'k', rec(1), 0)).toBeUndefined(); // someone else created it first
    const r2 = store.write('w', 'k', rec(2), r1) as number;
    expect(store.write('w', 'k', rec(3), r1)).toBeUndefined(); // a stale revision loses
    expect(store.read('w', 'k')).toEqual({ record: rec(2), revision: r2 });
    await clock.advance(1_002); // the record was written at t=2: a window later it is forgotten
    expect(store.read('w', 'k')).toEqual({ record: undefined, revision: r2 });
    expect(store.write('w', 'k', rec(1_002), r2)).toBeGreaterThan(r2);
  });
});

describe('in-memory saga store', () => {
  const base: SagaRecord = { sagaId: 's1', saga: 'trip', version: 1, input: {}, status: 'running', startedAt: 0, updatedAt: 0, snapshot: undefined, outcome: undefined };

  it('begins once per id, fences writes by revision, and keeps finished sagas after archiving', async () => {
    const store = memorySagaStore({ keepFinished: 1 });
    const rev = (await store.begin(base)) as number;
    expect(rev).toBeGreaterThan(0);
    expect(await store.begin(base)).toBeUndefined();
    const parked: SagaRecord = { ...base, status: 'parked', deadLetter: { sagaId: 's1', saga: 'trip', version: 1, remaining: [], failures: [], parkedAt: 1, timesParked: 1 } };
    const rev2 = (await store.write(parked, rev)) as number;
    expect(await store.write({ ...base, status: 'running' }, rev)).toBeUndefined(); // a coordinator that is no longer the owner
    expect((await store.deadLetters()).map((d) => d.sagaId)).toEqual(['s1']);
    const outcome = { sagaId: 's1', status: 'compensated' as const, failures: [], compensated: [], resolvedByOperator: [] };
    await store.write({ ...base, status: 'compensated', outcome }, rev2);
    expect((await store.unfinished()).map((v) => v.record.sagaId)).toEqual(['s1']); // written, not archived yet
    await store.archive('s1');
    expect(await store.unfinished()).toEqual([]);
    expect(await store.load('s1')).toMatchObject({ revision: 0, record: { status: 'compensated' } });
    await store.begin({ ...base, sagaId: 's2' });
    await store.archive('s2');
    expect(await store.get('s1')).toBeUndefined(); // only the most recent finished saga is kept
    expect(await store.deadLetters()).toEqual([]);
  });

  it('forgets a finished saga keepMs after it finished; then its id starts a new saga', async () => {
    const clock = createManualClock();
    const store = memorySagaStore({ clock, keepMs: 1_000 });
    for (const id of ['a', 'b']) {
      await store.begin({ ...base, sagaId: id });
      await store.archive(id);
    }
    await clock.advance(600);
    await store.begin({ ...base, sagaId: 'c' });
    await store.archive('c');
    expect(store.size).toEqual({ live: 0, finished: 3 });
    await clock.advance(500);
    expect(store.size).toEqual({ live: 0, finished: 1 });
    expect(await store.get('a')).toBeUndefined();
    expect(await store.get('c')).toBeDefined();
    expect(await store.begin({ ...base, sagaId: 'a' })).toBeGreaterThan(0);
    expect(() => memorySagaStore({ keepMs: -1 })).toThrow(/keepMs/);
  });
});

describe('the embedded runtime under a steady load', () => {
  it('holds a bounded number of journals and keys however many sagas finish (memory stays flat)', async () => {
    const store = memorySagaStore({ keepFinished: 200 });
    const dedup = memoryDedupStore({ maxRecords: 500 });
    const w = (name: string) => defineWorker({ name, do: (i: { n: number }) => i.n, compensate: () => undefined });
    const runtime = createRuntime({ store, dedup }).host(w('a'), w('b'));
    const saga = defineSaga({ name: 'pair', version: 1, steps: { a: { worker: 'a' }, b: { worker: 'b' } } });
    const sizes: { finished: number; keys: number }[] = [];
    for (let batch = 0; batch < 6; batch++) {
      const outcomes = await Promise.all(Array.from({ length: 500 }, (_, i) => runtime.run(saga, { n: batch * 500 + i })));
      expect(outcomes.every((o) => o.status === 'committed')).toBe(true);
      sizes.push({ finished: store.size.finished, keys: dedup.size });
    }
    // 3,000 sagas and 6,000 keys later: the bounds hold from the first batch on.
    expect(sizes.every((x) => x.finished === 200 && x.keys === 500)).toBe(true);
    expect(store.size.live).toBe(0);
    expect(runtime.inFlight).toBe(0);
    await runtime.close();
  });
});
