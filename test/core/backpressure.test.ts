/**
 * Backpressure: a host at capacity refuses a request before it touches anything
 * (OVERLOADED); the coordinator sends it again after a growing, jittered pause without
 * spending the step's or the compensation's retry budget. And the runtime bounds its own
 * work: beyond `maxInFlight`, run() waits in a queue and writes nothing; beyond a
 * worker's `workerMaxInFlight`, requests to it wait in that worker's queue.
 */
import { describe, expect, it } from 'vitest';
import { createRuntime, defineSaga, defineWorker, InvalidOptionError, memoryTransport, TerminalError } from '../../src/index.ts';
import type { Transport, WorkerReply, WorkerRequest } from '../../src/index.ts';
import { overloadDelay } from '../../src/machines/saga-logic.ts';
import { createManualClock } from '../../src/testing/clock.ts';

/** The in-memory transport, with hosts that refuse the first `n` requests of each (op, worker) at capacity. */
function refusing(n: Record<string, number>) {
  const inner = memoryTransport();
  const refused: string[] = [];
  const transport: Transport = {
    ...inner,
    request(req: WorkerRequest, timeoutMs: number) {
      const k = `${req.op}:${req.worker}`;
      if ((n[k] ?? 0) > 0) {
        n[k] = (n[k] as number) - 1;
        refused.push(`${k}#${req.attempt}`);
        return Promise.resolve({ ok: false as const, error: { code: 'OVERLOADED', message: 'at capacity', retryable: true } });
      }
      return inner.request(req, timeoutMs);
    },
    serve: (w, h) => inner.serve(w, h),
    isServed: (w) => inner.isServed(w),
    close: () => inner.close(),
  };
  return { transport, refused };
}

const effects = new Set<string>();
const worker = (name: string, failDo = false) =>
  defineWorker({
    name,
    do: (_i: unknown, ctx) => {
      if (failDo) throw new TerminalError(`${name} is sold out`);
      effects.add(ctx.idempotencyKey);
      return { name, attempt: ctx.attempt };
    },
    compensate: (_i, _r, ctx) => void effects.delete(ctx.idempotencyKey),
  });

const noRetries = defineSaga({
  name: 'burst',
  version: 1,
  steps: { a: { worker: 'alpha', retries: 0 }, b: { worker: 'beta', retries: 0 } },
  compensation: { retries: 0 },
});

describe('backpressure: refusals at capacity', () => {
  it('sends a refused do again, as often as it takes, without spending the retry budget', async () => {
    const { transport, refused } = refusing({ 'do:alpha': 5 });
    const runtime = createRuntime({ transport }).host(worker('alpha'), worker('beta'));
    const outcome = await runtime.run(noRetries, {});
    expect(outcome.status).toBe('committed');
    expect(refused).toEqual(['do:alpha#1', 'do:alpha#2', 'do:alpha#3', 'do:alpha#4', 'do:alpha#5']);
    // The sixth request ran; the refusals counted as no attempt of the budget (retries: 0).
    expect(outcome.status === 'committed' && outcome.results.a).toEqual({ name: 'alpha', attempt: 6 });
    await runtime.close();
  });

  it('sends a refused compensate again without spending the compensation budget: the saga ends compensated, not parked', async () => {
    const { transport, refused } = refusing({ 'compensate:alpha': 4 });
    const runtime = createRuntime({ transport }).host(worker('alpha'), worker('beta', true));
    effects.clear();
    const outcome = await runtime.run(noRetries, {});
    expect(outcome).toMatchObject({ status: 'compensated', compensated: ['a'] });
    expect(refused).toHaveLength(4);
    expect(effects.size).toBe(0);
    expect(await runtime.deadLetters()).toEqual([]);
    await runtime.close();
  });

  it('waits longer after each refusal: 25 ms doubling, at most 2 s', () => {
    expect([1, 2, 3, 4, 5, 6, 7, 8, 9, 20].map(overloadDelay)).toEqual([25, 50, 100, 200, 400, 800, 1_600, 2_000, 2_000, 2_000]);
  });
});

describe('backpressure: maxInFlight', () => {
  it('runs at most maxInFlight sagas at once; the rest wait in a queue, in order, and all commit', async () => {
    const clock = createManualClock();
    const started: number[] = [];
    const slow = defineWorker({
      name: 'slow',
      do: async (i: { n: number }) => {
        started.push(i.n);
        await new Promise<void>((r) => clock.setTimeout(r, 100));
        return i.n;
      },
      compensate: () => undefined,
    });
    const saga = defineSaga({ name: 'one', version: 1, steps: { s: { worker: 'slow', timeoutMs: 10_000 } } });
    const runtime = createRuntime({ clock, maxInFlight: 2 }).host(slow);
    const runs = [0, 1, 2, 3, 4].map((n) => runtime.run(saga, { n }));
    await clock.advance(1);
    expect(runtime.inFlight).toBe(2);
    expect(runtime.queued).toBe(3);
    expect(started).toEqual([0, 1]);
    for (let i = 0; i < 3; i++) await clock.advance(100);
    const outcomes = await Promise.all(runs);
    expect(outcomes.map((o) => o.status)).toEqual(['committed', 'committed', 'committed', 'committed', 'committed']);
    expect(started).toEqual([0, 1, 2, 3, 4]);
    expect(runtime.queued).toBe(0);
    await runtime.close();
  });

  it('rejects the queued run() calls when the runtime closes, with nothing written or sent', async () => {
    const clock = createManualClock();
    let calls = 0;
    const hang = defineWorker({ name: 'hang', do: () => (calls++, new Promise<unknown>(() => {})), compensate: () => undefined });
    const saga = defineSaga({ name: 'hung', version: 1, steps: { s: { worker: 'hang' } } });
    const runtime = createRuntime({ clock, maxInFlight: 1 }).host(hang);
    const first = runtime.run(saga, {});
    const second = runtime.run(saga, {}, { sagaId: 'queued-one' });
    await clock.advance(1);
    expect(runtime.queued).toBe(1);
    const closing = runtime.close({ drainMs: 0 });
    await expect(second).rejects.toMatchObject({ code: 'RUNTIME_CLOSED', message: expect.stringContaining('maxInFlight') });
    await expect(first).rejects.toMatchObject({ code: 'RUNTIME_CLOSED' });
    await closing;
    expect(calls).toBe(1);
  });

  it('rejects a bad maxInFlight with a typed error', () => {
    for (const bad of [0, -1, 1.5, '10', Number.NaN]) {
      expect(() => createRuntime({ maxInFlight: bad as number })).toThrow(InvalidOptionError);
    }
    expect(() => createRuntime({ maxInFlight: 0 })).toThrow(/maxInFlight/);
  });
});

/**
 * The in-memory transport, recording every request sent and the most in flight to each
 * worker at once. The first `lose` requests are lost: never delivered, never answered.
 */
function watching(lose = 0) {
  const inner = memoryTransport();
  const sent: WorkerRequest[] = [];
  const now = new Map<string, number>();
  const most = new Map<string, number>();
  const transport: Transport = {
    ...inner,
    request(req: WorkerRequest, timeoutMs: number): Promise<WorkerReply> {
      sent.push(req);
      const n = (now.get(req.worker) ?? 0) + 1;
      now.set(req.worker, n);
      most.set(req.worker, Math.max(most.get(req.worker) ?? 0, n));
      if (lose-- > 0) return new Promise<WorkerReply>(() => {});
      const reply = inner.request(req, timeoutMs);
      const done = () => void now.set(req.worker, (now.get(req.worker) as number) - 1);
      reply.then(done, done);
      return reply;
    },
    serve: (w, h) => inner.serve(w, h),
    isServed: (w) => inner.isServed(w),
    close: () => inner.close(),
  };
  return { transport, sent, most };
}

describe('backpressure: workerMaxInFlight', () => {
  const timed = (name: string, clock: ReturnType<typeof createManualClock>, ms: number) =>
    defineWorker({
      name,
      do: async (i: { n: number }) => {
        await new Promise<void>((r) => clock.setTimeout(r, ms));
        return i.n;
      },
      compensate: () => undefined,
    });

  it('sends at most the bound to a worker at once; the rest wait in order and every saga commits; other workers stay unbounded', async () => {
    const clock = createManualClock();
    const { transport, sent, most } = watching();
    const saga = defineSaga({ name: 'pair', version: 1, steps: { s: { worker: 'slow', timeoutMs: 10_000 }, f: { worker: 'free', timeoutMs: 10_000 } } });
    const runtime = createRuntime({ clock, transport, workerMaxInFlight: { slow: 2 } }).host(timed('slow', clock, 100), timed('free', clock, 100));
    const runs = [0, 1, 2, 3, 4].map((n) => runtime.run(saga, { n }, { sagaId: `pair-${n}` }));
    await clock.advance(1);
    expect(runtime.inFlight).toBe(5);
    expect(sent.filter((r) => r.worker === 'slow').map((r) => r.sagaId)).toEqual(['pair-0', 'pair-1']);
    expect(sent.filter((r) => r.worker === 'free')).toHaveLength(5);
    for (let i = 0; i < 3; i++) await clock.advance(100);
    const outcomes = await Promise.all(runs);
    expect(outcomes.map((o) => o.status)).toEqual(['committed', 'committed', 'committed', 'committed', 'committed']);
    expect(sent.filter((r) => r.worker === 'slow').map((r) => r.sagaId)).toEqual(['pair-0', 'pair-1', 'pair-2', 'pair-3', 'pair-4']);
    expect(most.get('slow')).toBe(2);
    expect(most.get('free')).toBe(5);
    await runtime.close();
  });

  it('bounds the parallel steps of one saga the same way', async () => {
    const clock = createManualClock();
    const { transport, sent, most } = watching();
    const step = { worker: 'slow', timeoutMs: 10_000 };
    const saga = defineSaga({ name: 'fan', version: 1, steps: { a: step, b: step, c: step, d: step, e: step } });
    const runtime = createRuntime({ clock, transport, workerMaxInFlight: { slow: 2 } }).host(timed('slow', clock, 100));
    const run = runtime.run(saga, { n: 1 });
    await clock.advance(1);
    expect(sent.map((r) => r.stepId)).toEqual(['a', 'b']);
    for (let i = 0; i < 3; i++) await clock.advance(100);
    expect(await run).toMatchObject({ status: 'committed', results: { a: 1, b: 1, c: 1, d: 1, e: 1 } });
    expect(sent.map((r) => r.stepId)).toEqual(['a', 'b', 'c', 'd', 'e']);
    expect(most.get('slow')).toBe(2);
    await runtime.close();
  });

  it('counts the wait toward the timeout: a request whose step timed out while it waited is never sent, and the saga compensates', async () => {
    const clock = createManualClock();
    const { transport, sent } = watching();
    const done: number[] = [];
    const undone: number[] = [];
    const slow = defineWorker({
      name: 'slow',
      do: async (i: { n: number }) => {
        await new Promise<void>((r) => clock.setTimeout(r, 1_000));
        done.push(i.n);
        return i.n;
      },
      compensate: (i: { n: number }) => void undone.push(i.n),
    });
    const patient = defineSaga({ name: 'patient', version: 1, steps: { s: { worker: 'slow', timeoutMs: 10_000 } } });
    const hasty = defineSaga({ name: 'hasty', version: 1, steps: { s: { worker: 'slow', timeoutMs: 100, retries: 0 } } });
    const runtime = createRuntime({ clock, transport, workerMaxInFlight: { slow: 1 } }).host(slow);
    const first = runtime.run(patient, { n: 1 }, { sagaId: 'patient' });
    const second = runtime.run(hasty, { n: 2 }, { sagaId: 'hasty' });
    await clock.advance(1);
    expect(sent.map((r) => `${r.op}:${r.sagaId}`)).toEqual(['do:patient']);
    for (let i = 0; i < 12; i++) await clock.advance(100);
    expect(await first).toMatchObject({ status: 'committed' });
    // Its step timed out in the queue: in doubt, so compensated; the do itself never left.
    expect(await second).toMatchObject({ status: 'compensated', compensated: ['s'], failures: [{ stepId: 's', reason: 'timed-out' }] });
    expect(sent.map((r) => `${r.op}:${r.sagaId}`)).toEqual(['do:patient', 'compensate:hasty']);
    expect(done).toEqual([1]);
    expect(undone).toEqual([2]);
    await runtime.close();
  });

  it('sends nothing queued for a saga that is no longer active (the runtime closed)', async () => {
    const clock = createManualClock();
    const { transport, sent } = watching();
    const saga = defineSaga({ name: 'one', version: 1, steps: { s: { worker: 'slow', timeoutMs: 10_000 } } });
    const runtime = createRuntime({ clock, transport, workerMaxInFlight: { slow: 1 } }).host(timed('slow', clock, 100));
    const runs = [0, 1].map((n) => runtime.run(saga, { n }));
    await clock.advance(1);
    expect(sent).toHaveLength(1);
    const closing = runtime.close({ drainMs: 0 });
    for (const run of runs) await expect(run).rejects.toMatchObject({ code: 'RUNTIME_CLOSED' });
    await clock.advance(200);
    await closing;
    expect(sent).toHaveLength(1);
  });

  it('frees the slot of a request the transport never answers at its deadline, so the compensation behind it is sent', async () => {
    const clock = createManualClock();
    // The in-memory transport leaves timeouts to the saga: a lost request would hold its slot for good.
    const { transport, sent } = watching(1);
    const ran: string[] = [];
    const lossy = defineWorker({ name: 'lossy', do: () => void ran.push('do'), compensate: () => void ran.push('compensate') });
    const saga = defineSaga({ name: 'lost', version: 1, steps: { s: { worker: 'lossy', timeoutMs: 100, retries: 0 } } });
    const runtime = createRuntime({ clock, transport, workerMaxInFlight: { lossy: 1 } }).host(lossy);
    const run = runtime.run(saga, {});
    for (let i = 0; i < 5; i++) await clock.advance(100);
    expect(await run).toMatchObject({ status: 'compensated', compensated: ['s'] });
    expect(sent.map((r) => r.op)).toEqual(['do', 'compensate']);
    expect(ran).toEqual(['compensate']);
    await runtime.close({ drainMs: 0 });
  });

  it('rejects a bad workerMaxInFlight with a typed error naming the field', () => {
    for (const bad of [5, 'slow', null, [2], () => 2]) {
      expect(() => createRuntime({ workerMaxInFlight: bad as never })).toThrow(expect.objectContaining({ option: 'workerMaxInFlight' }));
    }
    for (const bad of [0, -1, 1.5, '2', Number.NaN, Infinity, null, undefined]) {
      let thrown: unknown;
      try {
        createRuntime({ workerMaxInFlight: { slow: 3, alpha: bad as number } });
      } catch (error) {
        thrown = error;
      }
      expect(thrown).toBeInstanceOf(InvalidOptionError);
      expect(thrown).toMatchObject({ option: 'workerMaxInFlight.alpha', message: expect.stringContaining('workerMaxInFlight.alpha') });
    }
  });

  it('accepts a bound per worker', async () => {
    const runtime = createRuntime({ workerMaxInFlight: { slow: 1, fast: 64 } });
    await runtime.close();
  });
});
