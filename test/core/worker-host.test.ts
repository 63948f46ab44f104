import { describe, expect, it } from 'vitest';
import { createWorkerHost, defineWorker, memoryDedupStore, TerminalError } from '../../src/index.ts';
import type { WorkerRequest } from '../../src/index.ts';
import { newKeyRecord, stepKey } from '../../src/machines/key-machine.ts';
import type { KeyEvent } from '../../src/machines/key-machine.ts';
import { createManualClock } from '../../src/testing/clock.ts';

describe('key machine (pure)', () => {
  const run = (events: KeyEvent[]) => {
    let rec = newKeyRecord('h', 0);
    const actions: string[][] = [];
    for (const e of events) {
      const r = stepKey(rec, e, 1);
      rec = r.record;
      actions.push(r.actions);
    }
    return { rec, actions };
  };
  const ok: KeyEvent = { type: 'DO.OK', result: { ref: 1 } };

  it('runs do once and answers repeats from the record', () => {
    const { rec, actions } = run([{ type: 'DO', attempt: 1 }, { type: 'DO', attempt: 1 }, ok, { type: 'DO', attempt: 1 }]);
    expect(actions).toEqual([['runDo'], ['awaitDo'], [], ['replyStored']]);
    expect(rec).toMatchObject({ state: 'done', result: { ref: 1 } });
  });

  it('undoes blindly a key it has no record of, then refuses the late do (tombstone)', () => {
    const { rec, actions } = run([{ type: 'COMPENSATE' }, { type: 'DO', attempt: 1 }, { type: 'COMPENSATION.OK' }, { type: 'DO', attempt: 1 }, { type: 'COMPENSATE' }]);
    expect(actions).toEqual([['runCompensate'], ['refuse'], [], ['refuse'], ['ackCompensated']]);
    expect(rec.state).toBe('compensated');
  });

  it('makes a compensate that overtakes a running do wait, then undo it', () => {
    const { rec, actions } = run([{ type: 'DO', attempt: 1 }, { type: 'COMPENSATE' }, ok, { type: 'COMPENSATION.OK' }, { type: 'DO', attempt: 1 }]);
    expect(actions).toEqual([['runDo'], ['awaitDo'], ['runCompensate'], [], ['refuse']]);
    expect(rec.state).toBe('compensated');
  });

  it('needs no undo for a failed do', () => {
    const failed = run([{ type: 'DO', attempt: 1 }, { type: 'DO.FAILED', error: { code: 'X', message: 'no', retryable: false } }, { type: 'COMPENSATE' }]);
    expect(failed.actions.at(-1)).toEqual(['ackCompensated']);
    expect(failed.rec.state).toBe('compensated');
  });

  it('after a retryable failure runs do again only for a newer attempt, never for a duplicate', () => {
    const retry = run([
      { type: 'DO', attempt: 1 },
      { type: 'DO.FAILED', error: { code: 'X', message: 'no', retryable: true } },
      { type: 'DO', attempt: 1 },
      { type: 'DO', attempt: 2 },
    ]);
    expect(retry.actions.slice(2)).toEqual([['replyStored'], ['runDo']]);
    expect(retry.rec).toMatchObject({ state: 'doing', attempt: 2 });
    const undone = run([{ type: 'DO', attempt: 1 }, { type: 'DO.FAILED', error: { code: 'X', message: 'no', retryable: true } }, { type: 'COMPENSATE' }, { type: 'DO', attempt: 2 }]);
    expect(undone.actions.slice(2)).toEqual([['ackCompensated'], ['refuse']]);
  });

  it('refuses a late do while an undo of a never-seen key waits to be retried', () => {
    const { rec, actions } = run([{ type: 'COMPENSATE' }, { type: 'COMPENSATION.FAILED', error: { code: 'X', message: 'down', retryable: true } }, { type: 'DO', attempt: 1 }, { type: 'COMPENSATE' }]);
    expect(actions).toEqual([['runCompensate'], [], ['refuse'], ['runCompensate']]);
    expect(rec.state).toBe('compensating');
  });

  it('lets a failed compensation be tried again', () => {
    const { rec, actions } = run([{ type: 'DO', attempt: 1 }, ok, { type: 'COMPENSATE' }, { type: 'COMPENSATION.FAILED', error: { code: 'X', message: 'no', retryable: true } }, { type: 'COMPENSATE' }]);
    expect(actions.slice(2)).toEqual([['runCompensate'], [], ['runCompensate']]);
    expect(rec).toMatchObject({ state: 'compensating', result: { ref: 1 } });
  });
});

function deferred<T>() {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

function harness(opts: { doImpl?: () => Promise<unknown>; compImpl?: () => Promise<void> } = {}) {
  const effects = new Map<string, number>();
  const calls = { do: 0, compensate: 0 };
  const worker = defineWorker({
    name: 'pay',
    async do(input: { amount: number }, ctx) {
      calls.do++;
      const r = opts.doImpl ? await opts.doImpl() : { charged: input.amount };
      effects.set(ctx.idempotencyKey, (effects.get(ctx.idempotencyKey) ?? 0) + 1);
      return r;
    },
    async compensate(_input, _result, ctx) {
      calls.compensate++;
      if (opts.compImpl) await opts.compImpl();
      if ((effects.get(ctx.idempotencyKey) ?? 0) > 0) effects.set(ctx.idempotencyKey, (effects.get(ctx.idempotencyKey) ?? 0) - 1);
    },
  });
  const dedup = memoryDedupStore();
  const host = createWorkerHost([worker], { dedup });
  const req = (op: 'do' | 'compensate', extra: Partial<WorkerRequest> = {}): WorkerRequest => ({
    v: 1,
    op,
    worker: 'pay',
    sagaId: 's',
    stepId: 'charge',
    key: 'k1',
    attempt: 1,
    deadline: Date.now() + 1000,
    input: { amount: 5 },
    ...extra,
  });
  return { host, req, effects, calls, dedup, worker };
}

describe('worker host', () => {
  it('applies a duplicated do once', async () => {
    const h = harness();
    const replies = await Promise.all([h.host.handle(h.req('do')), h.host.handle(h.req('do', { attempt: 2 })), h.host.handle(h.req('do'))]);
    expect(replies).toEqual([{ ok: true, result: { charged: 5 } }, { ok: true, result: { charged: 5 } }, { ok: true, result: { charged: 5 } }]);
    expect(h.calls.do).toBe(1);
    expect(h.effects.get('k1')).toBe(1);
  });

  it('refuses a do that arrives after its compensate (tombstone)', async () => {
    const h = harness();
    // No record does not prove no effect (a host may have lost its memory): the undo runs.
    expect(await h.host.handle(h.req('compensate'))).toEqual({ ok: true });
    expect(h.calls.compensate).toBe(1);
    const late = await h.host.handle(h.req('do'));
    expect(late).toMatchObject({ ok: false, error: { code: 'COMPENSATED', retryable: false } });
    expect(h.calls.do).toBe(0);
    expect(h.effects.get('k1')).toBeUndefined();
  });

  it('makes a compensate that arrives while do runs wait for it, then undo it', async () => {
    const gate = deferred<unknown>();
    const h = harness({ doImpl: () => gate.promise });
    const doing = h.host.handle(h.req('do'));
    const compensating = h.host.handle(h.req('compensate'));
    await new Promise((r) => setTimeout(r, 5));
    expect(h.calls.compensate).toBe(0);
    gate.resolve({ charged: 5 });
    expect(await compensating).toEqual({ ok: true });
    expect(await doing).toEqual({ ok: true, result: { charged: 5 } });
    expect(h.calls.compensate).toBe(1);
    expect(h.effects.get('k1')).toBe(0);
    expect(await h.host.handle(h.req('do'))).toMatchObject({ ok: false, error: { code: 'COMPENSATED' } });
  });

  it('answers a repeated compensate from the record without undoing twice', async () => {
    const h = harness();
    await h.host.handle(h.req('do'));
    const both = await Promise.all([h.host.handle(h.req('compensate')), h.host.handle(h.req('compensate'))]);
    expect(both).toEqual([{ ok: true }, { ok: true }]);
    expect(await h.host.handle(h.req('compensate'))).toEqual({ ok: true });
    expect(h.calls.compensate).toBe(1);
  });

  it('reports a failing compensation as retryable and runs it again when asked', async () => {
    let failures = 1;
    const h = harness({
      compImpl: async () => {
        if (failures-- > 0) throw new Error('refund API down');
      },
    });
    await h.host.handle(h.req('do'));
    expect(await h.host.handle(h.req('compensate'))).toMatchObject({ ok: false, error: { code: 'COMPENSATION_FAILED', retryable: true, message: 'refund API down' } });
    expect(await h.host.handle(h.req('compensate', { attempt: 2 }))).toEqual({ ok: true });
    expect(h.effects.get('k1')).toBe(0);
  });

  it('stores a terminal failure; a retryable one may run again', async () => {
    let n = 0;
    const h = harness({
      doImpl: async () => {
        n++;
        if (n === 1) throw new Error('flaky');
        if (n === 2) throw new TerminalError('card declined');
        return { charged: 5 };
      },
    });
    expect(await h.host.handle(h.req('do'))).toMatchObject({ ok: false, error: { retryable: true, message: 'flaky' } });
    expect(await h.host.handle(h.req('do', { attempt: 2 }))).toMatchObject({ ok: false, error: { retryable: false, message: 'card declined' } });
    expect(await h.host.handle(h.req('do', { attempt: 3 }))).toMatchObject({ ok: false, error: { message: 'card declined' } });
    expect(n).toBe(2);
  });

  it('rejects an idempotency key reused with a different input', async () => {
    const h = harness();
    await h.host.handle(h.req('do'));
    expect(await h.host.handle(h.req('do', { input: { amount: 500 } }))).toMatchObject({ ok: false, error: { code: 'KEY_CONFLICT' } });
    expect(h.calls.do).toBe(1);
  });

  it('answers malformed requests and unknown workers with typed errors', async () => {
    const h = harness();
    expect(await h.host.handle('nonsense')).toMatchObject({ ok: false, error: { code: 'PROTOCOL_ERROR' } });
    expect(await h.host.handle({ ...h.req('do'), v: 2 })).toMatchObject({ ok: false, error: { code: 'PROTOCOL_ERROR', message: expect.stringContaining('version') } });
    expect(await h.host.handle({ ...h.req('do'), attempt: 0 })).toMatchObject({ ok: false, error: { message: expect.stringContaining("'attempt'") } });
    expect(await h.host.handle({ ...h.req('do'), op: 'undo' })).toMatchObject({ ok: false, error: { message: expect.stringContaining("'op'") } });
    expect(await h.host.handle(h.req('do', { worker: 'ghost' }))).toMatchObject({ ok: false, error: { code: 'UNKNOWN_WORKER' } });
    expect(h.calls.do).toBe(0);
  });

  it('remembers keys across a host restart when the dedup store survives', async () => {
    const h = harness();
    await h.host.handle(h.req('compensate', { key: 'k2' }));
    await h.host.handle(h.req('do'));
    const restarted = createWorkerHost([h.worker], { dedup: h.dedup });
    expect(await restarted.handle(h.req('do', { key: 'k2' }))).toMatchObject({ ok: false, error: { code: 'COMPENSATED' } });
    expect(await restarted.handle(h.req('do'))).toEqual({ ok: true, result: { charged: 5 } });
    expect(h.calls.do).toBe(1);
  });

  it('serializes each key on an asynchronous dedup store (a remote KV)', async () => {
    const inner = memoryDedupStore();
    const tick = () => new Promise((r) => setImmediate(r));
    const slow = {
      async get(w: string, k: string) {
        await tick();
        return inner.get(w, k);
      },
      async set(w: string, k: string, rec: Parameters<typeof inner.set>[2]) {
        await tick();
        inner.set(w, k, rec);
      },
    };
    const h = harness();
    const host = createWorkerHost([h.worker], { dedup: slow });
    const replies = await Promise.all([
      host.handle(h.req('do')),
      host.handle(h.req('do', { attempt: 2 })),
      host.handle(h.req('compensate')),
      host.handle(h.req('do', { attempt: 3 })),
    ]);
    expect(h.calls).toEqual({ do: 1, compensate: 1 });
    expect(h.effects.get('k1')).toBe(0);
    expect(replies[2]).toEqual({ ok: true });
    // Every do arrived while the first ran: they share its answer, and its effect was undone.
    expect(replies[3]).toEqual(replies[0]);
    expect(await host.handle(h.req('do', { attempt: 4 }))).toMatchObject({ ok: false, error: { code: 'COMPENSATED' } });
  });

  it('does not run a key twice across hosts sharing a store: IN_PROGRESS until the lease ends', async () => {
    const clock = createManualClock(1_000);
    const gate = deferred<unknown>();
    const h = harness({ doImpl: () => gate.promise });
    const dedup = memoryDedupStore({ clock });
    const a = createWorkerHost([h.worker], { dedup, clock });
    const b = createWorkerHost([h.worker], { dedup, clock });
    const first = a.handle(h.req('do', { deadline: 5_000 }));
    await clock.settle();
    expect(await b.handle(h.req('do', { attempt: 2 }))).toMatchObject({ ok: false, error: { code: 'IN_PROGRESS', retryable: true } });
    expect(await b.handle(h.req('compensate'))).toMatchObject({ ok: false, error: { code: 'IN_PROGRESS' } });
    gate.resolve({ charged: 5 });
    expect(await first).toEqual({ ok: true, result: { charged: 5 } });
    expect(await b.handle(h.req('do', { attempt: 3 }))).toEqual({ ok: true, result: { charged: 5 } });
    expect(h.calls.do).toBe(1);
  });

  it('takes over a key orphaned by a host that died, once its lease has ended', async () => {
    const clock = createManualClock(1_000);
    const h = harness({ doImpl: () => new Promise(() => {}) });
    const dedup = memoryDedupStore({ clock });
    void createWorkerHost([h.worker], { dedup, clock }).handle(h.req('do', { deadline: 2_000 }));
    await clock.settle();
    const survivor = createWorkerHost([defineWorker({ name: 'pay', do: async () => ({ charged: 5 }), compensate: async () => {} })], { dedup, clock });
    expect(await survivor.handle(h.req('do', { attempt: 2, deadline: 9_000 }))).toMatchObject({ error: { code: 'IN_PROGRESS' } });
    await clock.advance(1_001);
    expect(await survivor.handle(h.req('do', { attempt: 3, deadline: 9_000 }))).toEqual({ ok: true, result: { charged: 5 } });
  });

  it('answers OUTCOME_UNKNOWN (in doubt), never a failure, when it cannot record what do did', async () => {
    const inner = memoryDedupStore();
    let writes = 0;
    const flaky = {
      get: (w: string, k: string) => inner.get(w, k),
      set: (w: string, k: string, rec: Parameters<typeof inner.set>[2]) => {
        if (++writes === 2) throw new Error('KV unavailable');
        inner.set(w, k, rec);
      },
    };
    const h = harness();
    const host = createWorkerHost([h.worker], { dedup: flaky });
    expect(await host.handle(h.req('do'))).toMatchObject({ ok: false, error: { code: 'OUTCOME_UNKNOWN', retryable: true } });
    expect(h.effects.get('k1')).toBe(1);
  });

  it('does not trust the failure of a do re-run after a crash: the first run may have applied', async () => {
    const clock = createManualClock(1_000);
    const dedup = memoryDedupStore({ clock });
    const effects: string[] = [];
    const crashed = defineWorker({
      name: 'pay',
      do: async () => {
        effects.push('charged');
        return new Promise(() => {}); // the host dies before it can record the outcome
      },
      compensate: async () => void effects.push('refunded'),
    });
    const h = harness();
    void createWorkerHost([crashed], { dedup, clock }).handle(h.req('do', { deadline: 1_500 }));
    await clock.advance(600); // its lease is over
    let fail = true;
    const next = defineWorker({
      name: 'pay',
      do: async () => {
        if (fail) throw new TerminalError('card declined');
        return { charged: 5 };
      },
      compensate: async () => void effects.push('refunded'),
    });
    const survivor = createWorkerHost([next], { dedup, clock });
    expect(await survivor.handle(h.req('do', { attempt: 2, deadline: 9_000 }))).toMatchObject({ ok: false, error: { code: 'OUTCOME_UNKNOWN' } });
    expect(await survivor.handle(h.req('do', { attempt: 2, deadline: 9_000 }))).toMatchObject({ ok: false, error: { code: 'OUTCOME_UNKNOWN' } });
    expect(await survivor.handle(h.req('compensate'))).toEqual({ ok: true });
    expect(effects).toEqual(['charged', 'refunded']);
    fail = false;
    expect(await survivor.handle(h.req('do', { attempt: 3, deadline: 9_000 }))).toMatchObject({ ok: false, error: { code: 'COMPENSATED' } });
  });

  it('reports a result that cannot be serialized, and still undoes its effect on compensate', async () => {
    const h = harness({ doImpl: async () => ({ when: 10n }) });
    expect(await h.host.handle(h.req('do'))).toMatchObject({ ok: false, error: { code: 'RESULT_NOT_SERIALIZABLE', message: expect.stringContaining('BigInt') } });
    expect(h.effects.get('k1')).toBe(1);
    expect(await h.host.handle(h.req('compensate'))).toEqual({ ok: true });
    expect(h.effects.get('k1')).toBe(0);
  });
});
