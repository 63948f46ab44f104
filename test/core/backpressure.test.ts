/**
 * Backpressure: a host at capacity refuses a request before it touches anything
 * (OVERLOADED); the coordinator sends it again after a growing, jittered pause without
 * spending the step's or the compensation's retry budget. And the runtime bounds its own
 * work: beyond `maxInFlight`, run() waits in a queue and writes nothing.
 */
import { describe, expect, it } from 'vitest';
import { createRuntime, defineSaga, defineWorker, InvalidOptionError, memoryTransport, TerminalError } from '../../src/index.ts';
import type { Transport, WorkerRequest } from '../../src/index.ts';
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
