/**
 * runtime.resolve fences the keys of a parked saga's remaining effects before it declares
 * them handled: a `do` still running when the operator looked can no longer land unseen
 * after the saga reported compensated.
 */
import { describe, expect, it } from 'vitest';
import { createRuntime, defineSaga, defineWorker, InvalidOptionError, memoryTransport, ResolveError } from '../../src/index.ts';
import type { ResolveError as ResolveErrorType, WorkerReply, WorkerRequest } from '../../src/index.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A system of record: effects by idempotency key. */
function ledger() {
  const effects = new Map<string, number>();
  return {
    effects,
    apply: (key: string) => effects.set(key, (effects.get(key) ?? 0) + 1),
    undo: (key: string) => effects.delete(key),
    total: () => [...effects.values()].reduce((a, b) => a + b, 0),
  };
}

/**
 * `slow` applies its effect `doMs` after it starts; its undo always fails. The saga times
 * the do out after 40 ms and each compensation after 60 ms, with no retries: the
 * compensate waits behind the running do (a compensate never answers while a do may
 * still apply), times out, and the saga parks with the step in doubt while the do runs on.
 */
function setup(doMs: number) {
  const sor = ledger();
  let doFinished!: () => void;
  const finished = new Promise<void>((r) => (doFinished = r));
  const slow = defineWorker({
    name: 'slow',
    do: async (_input: unknown, ctx) => {
      await sleep(doMs);
      sor.apply(ctx.idempotencyKey);
      doFinished();
      return { booked: true };
    },
    compensate: async () => {
      throw new Error('the undo is broken');
    },
  });
  const saga = defineSaga({
    name: 'late',
    version: 1,
    steps: { s: { worker: 'slow', timeoutMs: 40, retries: 0 } },
    compensation: { retries: 0, timeoutMs: 60, backoff: { initialMs: 1 } },
  });
  const runtime = createRuntime().host(slow);
  return { sor, saga, runtime, finished };
}

async function rejection(p: Promise<unknown>): Promise<ResolveErrorType> {
  const e = await p.then(
    () => undefined,
    (error: unknown) => error,
  );
  expect(e).toBeInstanceOf(ResolveError);
  return e as ResolveErrorType;
}

describe('resolve fences the remaining keys first', () => {
  it('a do still running when the operator resolves: the fence waits for it, finds the effect applied and asks for a review', async () => {
    const { sor, saga, runtime, finished } = setup(300);
    const parked = await runtime.run(saga, {}, { sagaId: 'gap' });
    expect(parked).toMatchObject({ status: 'compensation-failed', remaining: [{ stepId: 's', inDoubt: true }] });
    // The operator looks now: nothing is in the system of record yet.
    expect(sor.total()).toBe(0);
    const e = await rejection(runtime.resolve('gap', 'looked: nothing booked'));
    await finished;
    expect(e.code).toBe('RESOLVE_NEEDS_REVIEW');
    expect(e.fences).toEqual([expect.objectContaining({ stepId: 's', worker: 'slow', inDoubt: true, verdict: 'review', fence: expect.objectContaining({ was: 'applied' }) })]);
    expect(e.review).toEqual(expect.any(String));
    expect(e.message).toContain(e.review as string);
    // Still parked, nothing journaled.
    expect((await runtime.status('gap'))?.state).toBe('compensationFailed');
    // The effect landed after the operator looked: the review shows it.
    expect(sor.total()).toBe(1);
    sor.effects.clear();
    const outcome = await runtime.resolve('gap', { note: 'cancelled the booking by hand', reviewed: e.review });
    expect(outcome).toMatchObject({ sagaId: 'gap', status: 'compensated', resolvedByOperator: ['s'] });
    await sleep(50);
    expect(sor.total()).toBe(0);
    await runtime.close();
  });

  it('a do that runs longer than the fence may wait: FENCE_FAILED, the saga stays parked, and a later resolve settles it', async () => {
    const { sor, saga, runtime, finished } = setup(400);
    await runtime.run(saga, {}, { sagaId: 'busy' });
    const e = await rejection(runtime.resolve('busy', { fenceTimeoutMs: 100 }));
    expect(e.code).toBe('FENCE_FAILED');
    expect(e.retryable).toBe(true);
    expect(e.fences[0]).toMatchObject({ stepId: 's', verdict: 'failed', error: { code: 'IN_PROGRESS' } });
    expect((await runtime.status('busy'))?.state).toBe('compensationFailed');
    await finished;
    // The do applied after all; the next resolve fences the key and asks for a review of it.
    const again = await rejection(runtime.resolve('busy'));
    expect(again.code).toBe('RESOLVE_NEEDS_REVIEW');
    sor.effects.clear();
    expect(await runtime.resolve('busy', { reviewed: again.review })).toMatchObject({ status: 'compensated', resolvedByOperator: ['s'] });
    await runtime.close();
  });

  it('a review token names the fences it showed: one from an earlier review does not stand for a later fence', async () => {
    const { saga, runtime, finished } = setup(250);
    await runtime.run(saga, {}, { sagaId: 'a' });
    const first = await rejection(runtime.resolve('a'));
    await finished;
    const other = setup(250);
    await other.runtime.run(other.saga, {}, { sagaId: 'a' });
    // A token from another saga's review names other fences: still a review.
    const e = await rejection(other.runtime.resolve('a', { reviewed: first.review }));
    expect(e.code).toBe('RESOLVE_NEEDS_REVIEW');
    await other.finished;
    await other.runtime.close();
    await runtime.close();
  });

  it('a step that committed before the saga parked (its undo fails) is resolved at once: the operator saw it listed as certain', async () => {
    const sor = ledger();
    const stuck = defineWorker({
      name: 'stuck',
      do: async (_i: unknown, ctx) => (sor.apply(ctx.idempotencyKey), { ok: true }),
      compensate: async () => {
        throw new Error('cannot undo');
      },
    });
    const no = defineWorker({
      name: 'no',
      do: async (): Promise<{ ok: boolean }> => {
        throw new Error('refused');
      },
      compensate: async () => undefined,
    });
    const saga = defineSaga({ name: 'c', version: 1, steps: { x: { worker: 'stuck' }, y: { worker: 'no', retries: 0 } }, compensation: { retries: 0, backoff: { initialMs: 1 } } });
    const runtime = createRuntime().host(stuck, no);
    const parked = await runtime.run(saga, {}, { sagaId: 'c1' });
    expect(parked).toMatchObject({ status: 'compensation-failed', remaining: [{ stepId: 'x', inDoubt: false }] });
    sor.effects.clear();
    expect(await runtime.resolve('c1', 'reversed by hand')).toMatchObject({ status: 'compensated', resolvedByOperator: ['x'] });
    await runtime.close();
  });

  it('no host answers the fence: FENCE_FAILED; force resolves without it', async () => {
    const transport = memoryTransport();
    const saga = defineSaga({ name: 'gone', version: 1, steps: { s: { worker: 'w', timeoutMs: 30, retries: 0 } }, compensation: { retries: 0, timeoutMs: 30, backoff: { initialMs: 1 } } });
    // A host that answers after the saga stopped waiting (its undo fails), then goes away for good.
    const late = (reply: WorkerReply) => new Promise<WorkerReply>((r) => setTimeout(() => r(reply), 100));
    const served = await transport.serve('w', (req: WorkerRequest) =>
      late(req.op === 'do' ? { ok: true, result: {} } : { ok: false, error: { code: 'COMPENSATION_FAILED', message: 'the undo is broken', retryable: true } }),
    );
    const runtime = createRuntime({ transport });
    expect(await runtime.run(saga, {}, { sagaId: 'g' })).toMatchObject({ status: 'compensation-failed' });
    await served.stop();
    const e = await rejection(runtime.resolve('g'));
    expect(e.code).toBe('FENCE_FAILED');
    expect(e.fences[0]?.error?.code).toMatch(/NO_RESPONDERS|UNKNOWN_WORKER|TRANSPORT_ERROR/);
    expect(await runtime.resolve('g', { force: true, note: 'worker decommissioned' })).toMatchObject({ status: 'compensated', resolvedByOperator: ['s'] });
    await runtime.close();
  });

  it('hosts that do not speak fence: FENCE_FAILED naming the upgrade', async () => {
    const transport = memoryTransport();
    const saga = defineSaga({ name: 'old', version: 1, steps: { s: { worker: 'w', timeoutMs: 30, retries: 0 } }, compensation: { retries: 0, timeoutMs: 30, backoff: { initialMs: 1 } } });
    await transport.serve('w', (req: WorkerRequest) =>
      req.op === 'fence'
        ? Promise.resolve({ ok: false, error: { code: 'PROTOCOL_ERROR', message: "'op' must be \"do\" or \"compensate\", got \"fence\"", retryable: false } })
        : new Promise<WorkerReply>(() => {}),
    );
    const runtime = createRuntime({ transport });
    await runtime.run(saga, {}, { sagaId: 'o' });
    const e = await rejection(runtime.resolve('o'));
    expect(e.code).toBe('FENCE_FAILED');
    expect(e.message).toContain('do not speak fence');
    await runtime.close();
  });

  it('bad options are refused before anything is fenced', async () => {
    const { saga, runtime, finished } = setup(100);
    await runtime.run(saga, {}, { sagaId: 'bad' });
    await expect(runtime.resolve('bad', { bogus: 1 } as never)).rejects.toThrow(InvalidOptionError);
    await expect(runtime.resolve('bad', { reviewed: 'not a token' })).rejects.toThrow(/reviewed/);
    await expect(runtime.resolve('bad', { force: 'yes' } as never)).rejects.toThrow(/force/);
    await expect(runtime.resolve('bad', { fenceTimeoutMs: 0 })).rejects.toThrow(/fenceTimeoutMs/);
    await expect(runtime.resolve('bad', 42 as never)).rejects.toThrow(InvalidOptionError);
    await finished;
    expect((await runtime.status('bad'))?.state).toBe('compensationFailed');
    await runtime.close();
  });
});
