import { parseReply } from '../../src/transport/protocol.ts';
import { describe, expect, it } from 'vitest';
import { createWorkerHost, defineWorker, memoryDedupStore, SagaError, TerminalError } from '../../src/index.ts';
import type { DedupStore, KeyRecord, WorkerRequest } from '../../src/index.ts';
import { newKeyRecord, stepKey } from '../../src/machines/key-machine.ts';
import type { KeyEvent } from '../../src/machines/key-machine.ts';
import { startRequest, stepRequest } from '../../src/machines/host-protocol.ts';
import type { RequestSetup, RequestState } from '../../src/machines/host-protocol.ts';
import { createManualClock } from '../../src/testing/clock.ts';
import { prng } from '../helpers/random.ts';

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
  const err = (retryable: boolean) => ({ code: 'X', message: 'no', retryable });

  it('runs do once and answers repeats from the record', () => {
    const { rec, actions } = run([{ type: 'DO', attempt: 1 }, { type: 'DO', attempt: 1 }, ok, { type: 'DO', attempt: 1 }]);
    expect(actions).toEqual([['runDo'], ['awaitClaim'], [], ['replyStored']]);
    expect(rec).toMatchObject({ state: 'done', result: { ref: 1 } });
  });

  it('undoes blindly a key it has no record of, then refuses the late do (tombstone)', () => {
    const { rec, actions } = run([{ type: 'COMPENSATE' }, { type: 'DO', attempt: 1 }, { type: 'COMPENSATION.OK' }, { type: 'DO', attempt: 1 }, { type: 'COMPENSATE' }]);
    expect(actions).toEqual([['runCompensate'], ['refuse'], [], ['refuse'], ['ackCompensated']]);
    expect(rec.state).toBe('compensated');
  });

  it('makes a compensate that meets a running do wait for its claim; afterwards it undoes', () => {
    const { rec, actions } = run([{ type: 'DO', attempt: 1 }, { type: 'COMPENSATE' }, ok, { type: 'COMPENSATE' }, { type: 'COMPENSATION.OK' }, { type: 'DO', attempt: 1 }]);
    expect(actions).toEqual([['runDo'], ['awaitClaim'], [], ['runCompensate'], [], ['refuse']]);
    expect(rec.state).toBe('compensated');
  });

  it('needs no undo for a failed do', () => {
    const failed = run([{ type: 'DO', attempt: 1 }, { type: 'DO.FAILED', error: err(false) }, { type: 'COMPENSATE' }]);
    expect(failed.actions.at(-1)).toEqual(['ackCompensated']);
    expect(failed.rec.state).toBe('compensated');
  });

  it('after a retryable failure runs do again only for a newer attempt, never for a duplicate', () => {
    const retry = run([{ type: 'DO', attempt: 1 }, { type: 'DO.FAILED', error: err(true) }, { type: 'DO', attempt: 1 }, { type: 'DO', attempt: 2 }]);
    expect(retry.actions.slice(2)).toEqual([['replyStored'], ['runDo']]);
    expect(retry.rec).toMatchObject({ state: 'doing', attempt: 2 });
    const undone = run([{ type: 'DO', attempt: 1 }, { type: 'DO.FAILED', error: err(true) }, { type: 'COMPENSATE' }, { type: 'DO', attempt: 2 }]);
    expect(undone.actions.slice(2)).toEqual([['ackCompensated'], ['refuse']]);
  });

  it('keeps refusing do after any undo failed, and runs the undo again when asked', () => {
    const blind = run([{ type: 'COMPENSATE' }, { type: 'COMPENSATION.FAILED', error: err(true) }, { type: 'DO', attempt: 1 }, { type: 'COMPENSATE' }]);
    expect(blind.actions).toEqual([['runCompensate'], [], ['refuse'], ['runCompensate']]);
    const seen = run([{ type: 'DO', attempt: 1 }, ok, { type: 'COMPENSATE' }, { type: 'COMPENSATION.FAILED', error: err(true) }, { type: 'DO', attempt: 1 }, { type: 'COMPENSATE' }]);
    expect(seen.actions.slice(2)).toEqual([['runCompensate'], [], ['refuse'], ['runCompensate']]);
    expect(seen.rec).toMatchObject({ state: 'compensating', result: { ref: 1 } });
  });

  it('a fence makes every later do refused and keeps its first answer; a busy key makes it wait', () => {
    const fence = (by: string): KeyEvent => ({ type: 'FENCE', by });
    const done = run([{ type: 'DO', attempt: 1 }, fence('f0'), ok, fence('f1'), { type: 'DO', attempt: 2 }, fence('f2'), { type: 'COMPENSATE' }, { type: 'COMPENSATION.OK' }, fence('f3')]);
    expect(done.actions).toEqual([['runDo'], ['awaitClaim'], [], ['ackFenced'], ['refuse'], ['ackFenced'], ['runCompensate'], [], ['ackFenced']]);
    expect(done.rec).toMatchObject({ state: 'compensated', fence: { by: 'f1', was: 'applied' } });
    const interrupted = run([{ type: 'DO', attempt: 1 }, { type: 'CLAIM.EXPIRED' }, fence('f')]);
    expect(interrupted.rec).toMatchObject({ state: 'undoPending', fence: { by: 'f', was: 'unknown' } });
    const failed = run([{ type: 'DO', attempt: 1 }, { type: 'DO.FAILED', error: err(false) }, fence('f')]);
    expect(failed.rec).toMatchObject({ state: 'compensated', fence: { by: 'f', was: 'none' } });
    const pending = run([{ type: 'COMPENSATE' }, { type: 'COMPENSATION.FAILED', error: err(true) }, fence('f')]);
    expect(pending.rec).toMatchObject({ state: 'undoPending', fence: { by: 'f', was: 'undoPending' } });
  });

  it('a claim that expired mid-do leaves the key interrupted: a failure then proves nothing, even for newer attempts', () => {
    const r = run([
      { type: 'DO', attempt: 1 },
      { type: 'CLAIM.EXPIRED' },
      { type: 'DO', attempt: 1 },
      { type: 'DO.FAILED', error: err(true) },
      { type: 'DO', attempt: 2 },
      { type: 'DO.FAILED', error: err(false) },
      { type: 'DO', attempt: 2 },
      { type: 'COMPENSATE' },
    ]);
    expect(r.actions).toEqual([['runDo'], [], ['runDo'], [], ['runDo'], [], ['replyStored'], ['runCompensate']]);
    expect(r.rec).toMatchObject({ state: 'compensating' });
    const mid = run([{ type: 'DO', attempt: 1 }, ok, { type: 'COMPENSATE' }, { type: 'CLAIM.EXPIRED' }, { type: 'DO', attempt: 1 }]);
    expect(mid.actions.slice(3)).toEqual([[], ['refuse']]);
    expect(mid.rec.state).toBe('undoPending');
  });
});

describe('host protocol (pure): claim before effect', () => {
  const req: WorkerRequest = { v: 1, op: 'do', worker: 'pay', sagaId: 's', stepId: 'a', key: 'k', attempt: 1, deadline: 10_000, input: 1 };
  const setup: RequestSetup = { req, inputHash: '1', owner: 'h/1', leaseMs: 1_000 };

  /** A request that read first. */
  const deciding: RequestState = { phase: 'deciding', conflicts: 0 };

  it("a do's first attempt writes its claim as a create without reading; a conflict makes it read; other requests read first", () => {
    const t0 = startRequest(setup, 5);
    expect(t0.commands).toEqual([{ type: 'write', record: expect.objectContaining({ state: 'doing', owner: 'h/1', leaseUntil: 1_005, inputHash: '1' }), revision: 0 }]);
    // The key held something: read it, and decide from what it holds.
    expect(stepRequest(setup, t0.state, { type: 'CONFLICT', now: 6 }).commands).toEqual([{ type: 'read' }]);
    expect(stepRequest(setup, t0.state, { type: 'WRITTEN', revision: 1, now: 6 }).commands).toMatchObject([{ type: 'run', op: 'do', claim: { revision: 1 } }]);
    expect(startRequest({ ...setup, req: { ...req, op: 'compensate' } }, 5).commands).toEqual([{ type: 'read' }]);
  });

  it('tells user code to stop when a renewal finds the claim taken over, but not when the store only failed', () => {
    const running = stepRequest(setup, startRequest(setup, 5).state, { type: 'WRITTEN', revision: 1, now: 6 }).state;
    const renewing = stepRequest(setup, running, { type: 'RENEW', now: 500 });
    expect(renewing.commands).toMatchObject([{ type: 'write', record: { owner: 'h/1', leaseUntil: 1_500 }, revision: 1 }]);
    const taken = stepRequest(setup, renewing.state, { type: 'CONFLICT', now: 501 });
    expect(taken.commands).toEqual([{ type: 'abort', owner: 'h/1' }]);
    expect(taken.state).toMatchObject({ phase: 'running', lost: true });
    const failed = stepRequest(setup, renewing.state, { type: 'STORE_FAILED', error: { code: 'TRANSPORT_ERROR', message: 'down', retryable: true }, now: 501 });
    expect(failed.commands).toEqual([]);
    expect(failed.state).toMatchObject({ phase: 'running', lost: false, renewing: undefined });
  });

  it('writes the claim before it runs user code, and runs it only once the claim holds', () => {
    const retry = { ...setup, req: { ...req, attempt: 2 } };
    const t0 = startRequest(retry, 5);
    expect(t0.commands).toEqual([{ type: 'read' }]);
    const t1 = stepRequest(retry, t0.state, { type: 'READ', record: undefined, revision: 0, live: false, now: 5 });
    expect(t1.commands.map((c) => c.type)).toEqual(['write']);
    expect(t1.commands[0]).toMatchObject({ record: { state: 'doing', owner: 'h/1', leaseUntil: 1_005 }, revision: 0 });
    const lost = stepRequest(setup, t1.state, { type: 'CONFLICT', now: 6 });
    expect(lost.commands).toEqual([{ type: 'read' }]);
    const won = stepRequest(setup, t1.state, { type: 'WRITTEN', revision: 7, now: 6 });
    expect(won.commands).toMatchObject([{ type: 'run', op: 'do', claim: { revision: 7, owner: 'h/1' } }]);
  });

  it('waits for a live claim of another host; takes the key over once that claim is dead', () => {
    const busy = { state: 'doing' as const, inputHash: '1', attempt: 1, owner: 'x/1', leaseUntil: 900, updatedAt: 0 };
    const waiting = stepRequest(setup, deciding, { type: 'READ', record: busy, revision: 3, live: true, now: 100 });
    expect(waiting.commands).toEqual([{ type: 'wait', until: 900, owner: 'x/1' }]);
    const comp: RequestSetup = { ...setup, req: { ...req, op: 'compensate' } };
    const dead = stepRequest(comp, deciding, { type: 'READ', record: busy, revision: 3, live: false, now: 950 });
    expect(dead.commands).toMatchObject([{ type: 'write', record: { state: 'compensating', owner: 'h/1' }, revision: 3 }]);
    const late = stepRequest(setup, deciding, { type: 'READ', record: busy, revision: 3, live: true, now: 10_000 });
    expect(late.commands).toMatchObject([{ type: 'reply', reply: { ok: false, error: { code: 'IN_PROGRESS', retryable: true } } }]);
  });

  it('answers "nothing to undo" for a failed key only after the tombstone write wins', () => {
    const comp: RequestSetup = { ...setup, req: { ...req, op: 'compensate' } };
    const failed = { state: 'retryable' as const, inputHash: '1', attempt: 1, error: { code: 'WORKER_ERROR', message: 'x', retryable: true }, updatedAt: 0 };
    const t = stepRequest(comp, deciding, { type: 'READ', record: failed, revision: 4, live: false, now: 1 });
    expect(t.commands).toMatchObject([{ type: 'write', record: { state: 'compensated' }, revision: 4 }]);
    // A newer attempt claimed the key in between: decide again, never acknowledge.
    expect(stepRequest(comp, t.state, { type: 'CONFLICT', now: 2 }).commands).toEqual([{ type: 'read' }]);
    expect(stepRequest(comp, t.state, { type: 'WRITTEN', revision: 5, now: 2 }).commands).toEqual([{ type: 'reply', reply: { ok: true } }]);
  });

  it('a holder whose claim was taken over answers OUTCOME_UNKNOWN for a failure, and undoes a do that applied after an undo', () => {
    const t1 = stepRequest(setup, deciding, { type: 'READ', record: undefined, revision: 0, live: false, now: 0 });
    const running = stepRequest(setup, t1.state, { type: 'WRITTEN', revision: 1, now: 0 });
    const ran = stepRequest(setup, running.state, { type: 'RAN', outcome: { event: { type: 'DO.OK', result: 'r' } }, now: 5_000 });
    expect(ran.commands).toMatchObject([{ type: 'write', revision: 1, record: { state: 'done' } }]);
    const conflict = stepRequest(setup, ran.state, { type: 'CONFLICT', now: 5_000 });
    expect(conflict.commands).toEqual([{ type: 'read' }]);
    const tomb = { state: 'compensated' as const, inputHash: '1', updatedAt: 4_000 };
    const undo = stepRequest(setup, conflict.state, { type: 'READ', record: tomb, revision: 3, live: false, now: 5_001 });
    expect(undo.commands).toMatchObject([
      { type: 'release', owner: 'h/1' },
      { type: 'reply', reply: { ok: false, error: { code: 'OUTCOME_UNKNOWN' } } },
      { type: 'write', revision: 3, record: { state: 'compensating', result: 'r', owner: 'h/1+undo' } },
    ]);
    // Its undo runs once that claim holds, and is tried again until it succeeds.
    const undoing = stepRequest(setup, undo.state, { type: 'WRITTEN', revision: 4, now: 5_002 });
    expect(undoing.commands).toMatchObject([{ type: 'run', op: 'compensate', result: 'r' }]);
    const failedUndo = stepRequest(setup, undoing.state, { type: 'RAN', outcome: { event: { type: 'COMPENSATION.FAILED', error: { code: 'COMPENSATION_FAILED', message: 'x', retryable: true } } }, now: 5_003 });
    const again = stepRequest(setup, failedUndo.state, { type: 'WRITTEN', revision: 5, now: 5_004 });
    expect(again.state.phase).toBe('undoing');
    expect(again.commands).toMatchObject([{ type: 'release' }, { type: 'wait', until: 5_204 }]);
    const failed = stepRequest(setup, running.state, { type: 'RAN', outcome: { event: { type: 'DO.FAILED', error: { code: 'WORKER_ERROR', message: 'x', retryable: false } } }, now: 5_000 });
    const rechecking = stepRequest(setup, stepRequest(setup, failed.state, { type: 'CONFLICT', now: 5_000 }).state, {
      type: 'READ',
      record: { state: 'doing', inputHash: '1', owner: 'y/2', leaseUntil: 9_000, interrupted: true, updatedAt: 4_500 },
      revision: 3,
      live: true,
      now: 5_001,
    });
    expect(rechecking.commands).toMatchObject([{ type: 'release' }, { type: 'reply', reply: { ok: false, error: { code: 'OUTCOME_UNKNOWN' } } }]);
  });

  it('a do that applied and whose outcome the store failed to take answers OUTCOME_UNKNOWN at once, then reads the key until it can tell, and undoes a late effect itself', () => {
    const storeFailed = (now: number) => ({ type: 'STORE_FAILED' as const, error: { code: 'TRANSPORT_ERROR', message: 'no answer', retryable: true }, now });
    const t1 = stepRequest(setup, deciding, { type: 'READ', record: undefined, revision: 0, live: false, now: 0 });
    const running = stepRequest(setup, t1.state, { type: 'WRITTEN', revision: 1, now: 0 });
    const ran = stepRequest(setup, running.state, { type: 'RAN', outcome: { event: { type: 'DO.OK', result: 'r' } }, now: 5_000 });
    const failedWrite = stepRequest(setup, ran.state, storeFailed(5_001));
    expect(failedWrite.state.phase).toBe('rechecking');
    expect(failedWrite.commands).toMatchObject([
      { type: 'release', owner: 'h/1' },
      { type: 'reply', reply: { ok: false, error: { code: 'OUTCOME_UNKNOWN' } } },
      { type: 'wait', until: 5_101, owner: undefined },
    ]);
    // The store still fails: read again later, with a longer pause, and no second answer.
    const read1 = stepRequest(setup, failedWrite.state, { type: 'WAITED', now: 5_101 });
    expect(read1.commands).toEqual([{ type: 'read' }]);
    const failedRead = stepRequest(setup, read1.state, storeFailed(5_102));
    expect(failedRead.commands).toEqual([{ type: 'release', owner: 'h/1' }, { type: 'wait', until: 5_302, owner: undefined }]);
    // The store answers: another host undid the key meanwhile, so this host undoes its late effect itself (answered already).
    const tomb = { state: 'compensated' as const, inputHash: '1', updatedAt: 4_000 };
    const read2 = stepRequest(setup, stepRequest(setup, failedRead.state, { type: 'WAITED', now: 5_302 }).state, { type: 'READ', record: tomb, revision: 3, live: false, now: 5_303 });
    expect(read2.commands).toMatchObject([{ type: 'release', owner: 'h/1' }, { type: 'write', revision: 3, record: { state: 'compensating', result: 'r', owner: 'h/1+undo' } }]);
    expect(read2.commands.some((c) => c.type === 'reply')).toBe(false);
    // Still its own claim instead: it records the outcome, and answers nothing more.
    const own = stepRequest(setup, failedWrite.state, { type: 'WAITED', now: 5_101 });
    const mine = stepRequest(setup, own.state, { type: 'READ', record: { state: 'doing', inputHash: '1', owner: 'h/1', leaseUntil: 5_500, updatedAt: 4_900 }, revision: 2, live: false, now: 5_102 });
    expect(mine.commands).toMatchObject([{ type: 'write', revision: 2, record: { state: 'done', result: 'r' } }]);
    const recorded = stepRequest(setup, mine.state, { type: 'WRITTEN', revision: 3, now: 5_103 });
    expect(recorded.state.phase).toBe('done');
    expect(recorded.commands).toEqual([{ type: 'release', owner: 'h/1' }]);
    // A do that failed has no effect to look after: the store failing under its outcome ends the request.
    const failedDo = stepRequest(setup, running.state, { type: 'RAN', outcome: { event: { type: 'DO.FAILED', error: { code: 'WORKER_ERROR', message: 'x', retryable: false } } }, now: 5_000 });
    const gaveUp = stepRequest(setup, failedDo.state, storeFailed(5_001));
    expect(gaveUp.state.phase).toBe('done');
    expect(gaveUp.commands).toMatchObject([{ type: 'release' }, { type: 'reply', reply: { ok: false, error: { code: 'OUTCOME_UNKNOWN' } } }]);
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
  const req = (op: 'do' | 'compensate' | 'fence', extra: Partial<WorkerRequest> = {}): WorkerRequest => ({
    v: 1,
    op,
    worker: 'pay',
    sagaId: 's',
    stepId: 'charge',
    key: 'k1',
    attempt: 1,
    deadline: Date.now() + 1000,
    input: { amount: 5 },
    ...(op === 'fence' ? { fence: 'resolve-1' } : {}),
    ...extra,
  });
  return { host, req, effects, calls, dedup, worker };
}

describe('worker host', () => {
  it('reports the workers it serves, in the order given (what serveWorkers logs and the CLI prints)', () => {
    const a = defineWorker({ name: 'flights', do: async () => 1, compensate: async () => {} });
    const b = defineWorker({ name: 'hotels', do: async () => 1, compensate: async () => {} });
    expect(createWorkerHost([a, b], { dedup: memoryDedupStore() }).workers).toEqual(['flights', 'hotels']);
  });

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

  it('fences a key nobody touched: nothing was there, and a do that arrives later is refused', async () => {
    const h = harness();
    expect(await h.host.handle(h.req('fence'))).toEqual({ ok: true, result: { by: 'resolve-1', was: 'none' } });
    expect(await h.host.handle(h.req('do'))).toMatchObject({ ok: false, error: { code: 'COMPENSATED' } });
    expect(h.calls.do).toBe(0);
    // A compensate still undoes (blindly, as for any key whose do may have been forgotten).
    expect(await h.host.handle(h.req('compensate'))).toEqual({ ok: true });
  });

  it('makes a fence that meets a running do wait for it, then says the effect applied; it answers its first fence again', async () => {
    const gate = deferred<unknown>();
    const h = harness({ doImpl: () => gate.promise });
    const doing = h.host.handle(h.req('do'));
    const fencing = h.host.handle(h.req('fence'));
    await new Promise((r) => setTimeout(r, 5));
    gate.resolve({ charged: 5 });
    expect(await doing).toEqual({ ok: true, result: { charged: 5 } });
    expect(await fencing).toEqual({ ok: true, result: { by: 'resolve-1', was: 'applied' } });
    // A duplicate of the do is refused now: the key is fenced, its effect left for the operator.
    expect(await h.host.handle(h.req('do', { attempt: 2 }))).toMatchObject({ ok: false, error: { code: 'COMPENSATED' } });
    expect(await h.host.handle(h.req('fence', { fence: 'resolve-2' }))).toEqual({ ok: true, result: { by: 'resolve-1', was: 'applied' } });
    expect(h.effects.get('k1')).toBe(1);
    expect(h.calls.compensate).toBe(0);
  });

  it('answers a fence with IN_PROGRESS when the do still runs at the fence deadline', async () => {
    const gate = deferred<unknown>();
    const h = harness({ doImpl: () => gate.promise });
    const doing = h.host.handle(h.req('do'));
    expect(await h.host.handle(h.req('fence', { deadline: Date.now() + 30 }))).toMatchObject({ ok: false, error: { code: 'IN_PROGRESS', retryable: true } });
    gate.resolve({ charged: 5 });
    await doing;
  });

  it('fences a failed or undone key as holding nothing', async () => {
    const h = harness({ doImpl: () => Promise.reject(new TerminalError('declined')) });
    await h.host.handle(h.req('do'));
    expect(await h.host.handle(h.req('fence'))).toEqual({ ok: true, result: { by: 'resolve-1', was: 'none' } });
    const u = harness();
    await u.host.handle(u.req('do'));
    await u.host.handle(u.req('compensate'));
    expect(await u.host.handle(u.req('fence'))).toEqual({ ok: true, result: { by: 'resolve-1', was: 'compensated' } });
  });

  it('refuses a fence without its fence id', async () => {
    const h = harness();
    const { fence: _drop, ...bare } = h.req('fence');
    expect(await h.host.handle(bare)).toMatchObject({ ok: false, error: { code: 'PROTOCOL_ERROR', message: expect.stringContaining("'fence'") } });
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

  it('puts WORKER_ERROR on the wire for whatever user code throws, keeping its message, and its code and detail in `detail` (never "[object Object]")', async () => {
    class Refusal {
      constructor(readonly why: string) {}
    }
    const thrown: unknown[] = [
      { code: 'CARD_DECLINED', message: 'insufficient funds', detail: { left: 3 } },
      { reason: 'no stock', retryable: false },
      undefined,
      'just a string',
      new SagaError('PROTOCOL_ERROR', 'a worker must not answer for the host'),
      Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }),
      { code: 42, message: 'big', detail: 'x'.repeat(10_008) },
      (() => {
        const cyclic: Record<string, unknown> = {};
        cyclic.self = cyclic;
        return { message: 'cyclic', detail: cyclic };
      })(),
      404,
      null,
      new TypeError(),
      new Refusal('closed'),
      ['a', 1],
    ];
    let i = 0;
    const h = harness({
      doImpl: async () => {
        throw thrown[i++];
      },
    });
    const replies = [];
    for (let a = 1; a <= thrown.length; a++) replies.push(await h.host.handle(h.req('do', { key: `k${a}` })));
    expect(replies).toEqual([
      { ok: false, error: { code: 'WORKER_ERROR', message: 'insufficient funds', retryable: true, detail: { code: 'CARD_DECLINED', detail: { left: 3 } } } },
      { ok: false, error: { code: 'WORKER_ERROR', message: `the do of worker 'pay' threw an object that is not an Error: {"reason":"no stock","retryable":false}`, retryable: false } },
      { ok: false, error: { code: 'WORKER_ERROR', message: "the do of worker 'pay' threw undefined", retryable: true } },
      { ok: false, error: { code: 'WORKER_ERROR', message: `the do of worker 'pay' threw the string "just a string"`, retryable: true } },
      // A code that means "nothing ran" from the host's side is never passed through from user code: it is kept in detail.
      { ok: false, error: { code: 'WORKER_ERROR', message: 'a worker must not answer for the host', retryable: false, detail: { code: 'PROTOCOL_ERROR' } } },
      { ok: false, error: { code: 'WORKER_ERROR', message: 'connect ECONNREFUSED', retryable: true, detail: { code: 'ECONNREFUSED' } } },
      { ok: false, error: { code: 'WORKER_ERROR', message: 'big', retryable: true, detail: { code: 42, detail: '(a detail of 10010 bytes of JSON, over 4096, was left out)' } } },
      { ok: false, error: { code: 'WORKER_ERROR', message: 'cyclic', retryable: true, detail: { detail: expect.stringMatching(/^\(a detail that is not JSON was left out: /) } } },
      { ok: false, error: { code: 'WORKER_ERROR', message: "the do of worker 'pay' threw the number 404", retryable: true } },
      { ok: false, error: { code: 'WORKER_ERROR', message: "the do of worker 'pay' threw null", retryable: true } },
      { ok: false, error: { code: 'WORKER_ERROR', message: "the do of worker 'pay' threw a TypeError with no message", retryable: true } },
      { ok: false, error: { code: 'WORKER_ERROR', message: `the do of worker 'pay' threw a Refusal that is not an Error: {"why":"closed"}`, retryable: true } },
      { ok: false, error: { code: 'WORKER_ERROR', message: `the do of worker 'pay' threw an array: ["a",1]`, retryable: true } },
    ]);
  });

  it('names the compensate that threw a value that is not an Error', async () => {
    const h = harness({
      compImpl: async () => {
        throw 'cannot refund';
      },
    });
    await h.host.handle(h.req('do'));
    expect(await h.host.handle(h.req('compensate'))).toMatchObject({
      ok: false,
      error: { code: 'COMPENSATION_FAILED', message: `the compensate of worker 'pay' threw the string "cannot refund"`, retryable: true },
    });
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
    const slow = latent(memoryDedupStore(), prng(7));
    const h = harness();
    const host = createWorkerHost([h.worker], { dedup: slow });
    const replies = await Promise.all([
      host.handle(h.req('do')),
      host.handle(h.req('do', { attempt: 2 })),
      host.handle(h.req('compensate')),
      host.handle(h.req('do', { attempt: 3 })),
    ]);
    expect(h.calls.do).toBeLessThanOrEqual(1);
    expect(h.calls.compensate).toBe(1);
    expect(h.effects.get('k1') ?? 0).toBe(0);
    expect(replies[2]).toEqual({ ok: true });
    expect(await host.handle(h.req('do', { attempt: 4 }))).toMatchObject({ ok: false, error: { code: 'COMPENSATED' } });
  });

  it('a do and a compensate of one key on two hosts at once: once the compensate is acknowledged no effect remains (300 keys)', async () => {
    const random = prng(42);
    const h = harness({ doImpl: async () => (await pause(random() * 4), { charged: 5 }) });
    const dedup = latent(memoryDedupStore(), random);
    const a = createWorkerHost([h.worker], { dedup });
    const b = createWorkerHost([h.worker], { dedup });
    const doReplies: string[] = [];
    for (let i = 0; i < 300; i++) {
      const key = `a-${i}`;
      const [done, undone] = await Promise.all([a.handle(h.req('do', { key })), b.handle(h.req('compensate', { key }))]);
      expect(undone, key).toEqual({ ok: true });
      doReplies.push(done.ok ? 'ok' : done.error.code);
      expect(h.effects.get(key) ?? 0, key).toBe(0);
    }
    // Both orders happened: some do ran and was undone, some was refused by the tombstone.
    expect(doReplies).toContain('ok');
    expect(doReplies).toContain('COMPENSATED');
  });

  it('a failed attempt on one host says nothing about a newer attempt on another (300 keys)', async () => {
    const random = prng(43);
    const h = harness({
      doImpl: async () => {
        await pause(random() * 4);
        return { charged: 5 };
      },
    });
    const failing = defineWorker<unknown, unknown>({ name: 'pay', do: async () => Promise.reject(new Error('flaky')), compensate: async () => undefined });
    const dedup = latent(memoryDedupStore(), random);
    const first = createWorkerHost([failing], { dedup });
    const a = createWorkerHost([h.worker], { dedup });
    const b = createWorkerHost([h.worker], { dedup });
    const outcomes = new Set<string>();
    for (let i = 0; i < 300; i++) {
      const key = `b-${i}`;
      expect(await first.handle(h.req('do', { key }))).toMatchObject({ ok: false, error: { retryable: true } });
      const [retried, undone] = await Promise.all([b.handle(h.req('do', { key, attempt: 2 })), a.handle(h.req('compensate', { key }))]);
      expect(undone, key).toEqual({ ok: true });
      outcomes.add(retried.ok ? 'ok' : retried.error.code);
      expect(h.effects.get(key) ?? 0, key).toBe(0);
    }
    expect(outcomes).toContain('ok');
    expect(outcomes).toContain('COMPENSATED');
  });

  it('renews its claim while a slow do runs past the lease: another host waits, then undoes it', async () => {
    const clock = createManualClock(1_000);
    const gate = deferred<unknown>();
    const h = harness({ doImpl: () => gate.promise });
    const dedup = memoryDedupStore({ clock });
    const a = createWorkerHost([h.worker], { dedup, clock, leaseMs: 100 });
    const b = createWorkerHost([h.worker], { dedup, clock, leaseMs: 100 });
    const doing = a.handle(h.req('do', { deadline: 1_050 }));
    await clock.settle();
    let answered = false;
    const undoing = b.handle(h.req('compensate', { deadline: 60_000 })).then((r) => ((answered = true), r));
    await clock.advance(1_000); // ten leases long: a renews, b keeps waiting
    expect(answered).toBe(false);
    expect(h.calls.compensate).toBe(0);
    gate.resolve({ charged: 5 });
    await clock.advance(300);
    expect(await doing).toEqual({ ok: true, result: { charged: 5 } });
    expect(await undoing).toEqual({ ok: true });
    expect(h.effects.get('k1')).toBe(0);
  });

  it('answers IN_PROGRESS when another host still holds the key at the request deadline', async () => {
    const clock = createManualClock(1_000);
    const gate = deferred<unknown>();
    const h = harness({ doImpl: () => gate.promise });
    const dedup = memoryDedupStore({ clock });
    const a = createWorkerHost([h.worker], { dedup, clock });
    const b = createWorkerHost([h.worker], { dedup, clock });
    const first = a.handle(h.req('do', { deadline: 5_000 }));
    await clock.settle();
    const second = b.handle(h.req('do', { attempt: 2, deadline: 1_500 }));
    await clock.advance(600);
    expect(await second).toMatchObject({ ok: false, error: { code: 'IN_PROGRESS', retryable: true } });
    gate.resolve({ charged: 5 });
    expect(await first).toEqual({ ok: true, result: { charged: 5 } });
    expect(await b.handle(h.req('do', { attempt: 3 }))).toEqual({ ok: true, result: { charged: 5 } });
    expect(h.calls.do).toBe(1);
  });

  it('takes over a key orphaned by a host that died, once its lease has passed', async () => {
    const clock = createManualClock(1_000);
    const h = harness({ doImpl: () => new Promise(() => {}) });
    const dedup = memoryDedupStore({ clock });
    const dying = cuttable(dedup);
    void createWorkerHost([h.worker], { dedup: dying, clock, leaseMs: 1_000 }).handle(h.req('do', { deadline: 2_000 }));
    await clock.settle();
    dying.cut('hang'); // the host is gone: it neither renews nor writes again
    const survivor = createWorkerHost([defineWorker({ name: 'pay', do: async () => ({ charged: 5 }), compensate: async () => {} })], { dedup, clock });
    const asked = survivor.handle(h.req('do', { attempt: 2, deadline: 9_000 }));
    await clock.advance(1_100);
    expect(await asked).toEqual({ ok: true, result: { charged: 5 } });
  });

  it('a host that lost its claim while its do ran undoes the effect itself when the key was undone meanwhile', async () => {
    const clock = createManualClock(1_000);
    const gate = deferred<unknown>();
    const h = harness({ doImpl: () => gate.promise });
    const dedup = memoryDedupStore({ clock });
    const cut = cuttable(dedup);
    const a = createWorkerHost([h.worker], { dedup: cut, clock, leaseMs: 100 });
    const b = createWorkerHost([h.worker], { dedup, clock, leaseMs: 100 });
    const slowDo = a.handle(h.req('do', { deadline: 60_000 }));
    await clock.settle();
    cut.cut('fail'); // a cannot renew (its store is unreachable)
    await clock.advance(200);
    // b takes the key over: the do may have applied, so it undoes blindly and leaves a tombstone.
    expect(await b.handle(h.req('compensate', { deadline: 60_000 }))).toEqual({ ok: true });
    cut.heal();
    gate.resolve({ charged: 5 }); // the effect lands after the undo
    await clock.advance(50);
    expect(await slowDo).toMatchObject({ ok: false, error: { code: 'OUTCOME_UNKNOWN' } });
    expect(h.calls.compensate).toBe(2);
    expect(h.effects.get('k1')).toBe(0);
    expect(await b.handle(h.req('do'))).toMatchObject({ ok: false, error: { code: 'COMPENSATED' } });
  });

  it('answers OUTCOME_UNKNOWN (in doubt), never a failure, when it cannot record what do did', async () => {
    const inner = memoryDedupStore();
    let writes = 0;
    const flaky: DedupStore = {
      read: (w, k) => inner.read(w, k),
      write: (w, k, rec, rev) => {
        if (++writes === 2) throw new Error('KV unavailable');
        return inner.write(w, k, rec, rev);
      },
    };
    const h = harness();
    const host = createWorkerHost([h.worker], { dedup: flaky });
    expect(await host.handle(h.req('do'))).toMatchObject({ ok: false, error: { code: 'OUTCOME_UNKNOWN', retryable: true } });
    expect(h.effects.get('k1')).toBe(1);
  });

  it('runs nothing and says so when the dedup store cannot be read', async () => {
    const h = harness();
    const down: DedupStore = {
      read: () => Promise.reject(new Error('KV unavailable')),
      write: () => Promise.reject(new Error('KV unavailable')),
    };
    const host = createWorkerHost([h.worker], { dedup: down });
    expect(await host.handle(h.req('do'))).toMatchObject({ ok: false, error: { code: 'TRANSPORT_ERROR', retryable: true, message: expect.stringContaining('nothing ran') } });
    expect(h.calls.do).toBe(0);
  });

  it('does not trust the failure of a do re-run after its host died: the first run may have applied', async () => {
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
    const dying = cuttable(dedup);
    void createWorkerHost([crashed], { dedup: dying, clock, leaseMs: 500 }).handle(h.req('do', { deadline: 1_500 }));
    await clock.settle();
    dying.cut('hang');
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

  it('passes user code a fencing token that grows with every claim on the key, and validates leaseMs', async () => {
    const tokens: number[] = [];
    const w = defineWorker<unknown, unknown>({
      name: 'pay',
      do: async (_i: unknown, ctx) => {
        tokens.push(ctx.fencingToken);
        expect(ctx.signal.aborted).toBe(false);
        throw new Error('again');
      },
      compensate: async (_i, _r, ctx) => void tokens.push(ctx.fencingToken),
    });
    const h = harness();
    const host = createWorkerHost([w], { dedup: memoryDedupStore() });
    await host.handle(h.req('do'));
    await host.handle(h.req('do', { attempt: 2 }));
    await host.handle(h.req('compensate', { key: 'other' }));
    expect(tokens).toHaveLength(3);
    expect(tokens[1]).toBeGreaterThan(tokens[0] as number);
    expect(() => createWorkerHost([w], { leaseMs: 5 })).toThrow(/leaseMs/);
  });
});

/** Yields to the event loop `n` times (rounded down): other requests run in between. */
const pause = async (n: number) => {
  for (let i = 0; i < Math.floor(n); i++) await new Promise<void>((r) => setImmediate(r));
};

/** A store reached over a network: every read and write waits a random few turns of the event loop each way. */
function latent(inner: DedupStore, random: () => number): DedupStore {
  const hop = () => pause(random() * 4);
  return {
    async read(w, k) {
      await hop();
      const v = await inner.read(w, k);
      await hop();
      return v;
    },
    async write(w, k, rec, rev) {
      await hop();
      const v = await inner.write(w, k, rec, rev);
      await hop();
      return v;
    },
  };
}

/** A host's view of a shared store that can be cut: its calls then hang (a dead host) or fail (a partition). */
function cuttable(inner: DedupStore) {
  let mode: 'ok' | 'hang' | 'fail' = 'ok';
  const gate = <T>(f: () => T): T | Promise<never> => (mode === 'hang' ? new Promise<never>(() => {}) : mode === 'fail' ? Promise.reject(new Error('store unreachable')) : f());
  return {
    read: (w: string, k: string) => gate(() => inner.read(w, k)),
    write: (w: string, k: string, rec: KeyRecord, rev: number) => gate(() => inner.write(w, k, rec, rev)),
    cut(how: 'hang' | 'fail') {
      mode = how;
    },
    heal() {
      mode = 'ok';
    },
  };
}

describe('error replies on the wire', () => {
  it("a reply's optional detail passes through parseReply; a malformed error is a PROTOCOL_ERROR naming the shape", () => {
    const error = { code: 'WORKER_ERROR', message: 'sold out', retryable: false, detail: { code: 'SOLD_OUT', detail: { left: 0 } } };
    expect(parseReply({ ok: false, error })).toEqual({ ok: false, error });
    expect(parseReply({ ok: false, error: { code: 'X', message: 'm', retryable: true } })).toEqual({ ok: false, error: { code: 'X', message: 'm', retryable: true } });
    expect(() => parseReply({ ok: false, error: { code: 'X', message: 'm' } })).toThrow(/'error': \{ code: string, message: string, retryable: boolean \}/);
  });
});
