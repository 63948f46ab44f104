/**
 * The runtime's log lines, read back as a user's log pipeline reads them: pino writing
 * JSON lines to a memory destination, each line parsed. Debug lines for each step's
 * life, info lines for outcomes (error when a saga parks), and nothing built for debug
 * when the level is above it.
 */
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { createRuntime, defineSaga, defineWorker, TerminalError } from '../../src/index.ts';
import type { Logger } from '../../src/index.ts';
import { createManualClock } from '../../src/testing/clock.ts';

type Line = Record<string, unknown> & { level: number; msg: string };

/** A pino logger at `level` writing to memory, and the lines it wrote, parsed. */
function memoryLog(level: string) {
  const lines: Line[] = [];
  const logger = pino({ level }, { write: (chunk: string) => void lines.push(JSON.parse(chunk) as Line) });
  return { logger, lines };
}

const DEBUG = 20;
const INFO = 30;
const ERROR = 50;

/** The lines about one saga with a given msg, in order. */
const about = (lines: Line[], sagaId: string, msg: string) => lines.filter((l) => l.sagaId === sagaId && l.msg === msg);

const ok = (name: string) => defineWorker({ name, do: async (input: unknown) => ({ name, input }), compensate: async () => undefined });

describe('log lines', () => {
  it('a committed saga: started, each step dispatched then committed with its duration, and the outcome at info', async () => {
    const { logger, lines } = memoryLog('debug');
    const runtime = createRuntime({ logger }).host(ok('flights'), ok('hotels'));
    const saga = defineSaga({ name: 'trip', version: 3, steps: { flight: { worker: 'flights', timeoutMs: 2_000 }, hotel: { worker: 'hotels' } } });
    await runtime.run(saga, {}, { sagaId: 'c-1' });
    expect(about(lines, 'c-1', 'saga started')).toEqual([expect.objectContaining({ level: DEBUG, saga: 'trip', version: 3, steps: 2, recovered: false })]);
    for (const [stepId, worker, timeoutMs] of [
      ['flight', 'flights', 2_000],
      ['hotel', 'hotels', 30_000],
    ] as const) {
      const dispatched = about(lines, 'c-1', 'step dispatched').filter((l) => l.stepId === stepId);
      const committed = about(lines, 'c-1', 'step committed').filter((l) => l.stepId === stepId);
      expect(dispatched).toEqual([expect.objectContaining({ level: DEBUG, saga: 'trip', worker, attempt: 1, timeoutMs })]);
      expect(committed).toEqual([expect.objectContaining({ level: DEBUG, saga: 'trip', worker, attempt: 1, durationMs: expect.any(Number) })]);
      expect(committed[0]?.durationMs).toBeGreaterThanOrEqual(0);
      expect(lines.indexOf(dispatched[0] as Line)).toBeLessThan(lines.indexOf(committed[0] as Line));
    }
    expect(about(lines, 'c-1', 'saga ended')).toEqual([expect.objectContaining({ level: INFO, saga: 'trip', status: 'committed', durationMs: expect.any(Number) })]);
    // Every line about this saga carries its id, and every step line its step, worker and attempt.
    for (const l of lines.filter((x) => x.msg.startsWith('step ') || x.msg.startsWith('compensation '))) {
      expect(l).toMatchObject({ sagaId: 'c-1', stepId: expect.any(String), worker: expect.any(String), attempt: expect.any(Number) });
    }
    await runtime.close();
  });

  it('a retry then a success: the failure (retrying), the retry scheduled, the second dispatch, the commit', async () => {
    const { logger, lines } = memoryLog('debug');
    let calls = 0;
    const flaky = defineWorker({
      name: 'payments',
      do: async () => {
        if (++calls === 1) throw Object.assign(new Error('gateway busy'), { code: 'BUSY' });
        return { paid: true };
      },
      compensate: async () => undefined,
    });
    const runtime = createRuntime({ logger, random: () => 0.5 }).host(flaky);
    const saga = defineSaga({ name: 'pay', version: 1, steps: { charge: { worker: 'payments', retries: 2, backoff: { initialMs: 20, factor: 2, maxMs: 100 } } } });
    expect(await runtime.run(saga, {}, { sagaId: 'r-1' })).toMatchObject({ status: 'committed' });
    const mine = lines.filter((l) => l.sagaId === 'r-1' && l.stepId === 'charge').map((l) => [l.msg, l.attempt]);
    expect(mine).toEqual([
      ['step dispatched', 1],
      ['step failed', 1],
      ['step retry scheduled', 2],
      ['step dispatched', 2],
      ['step committed', 2],
    ]);
    expect(about(lines, 'r-1', 'step failed')[0]).toMatchObject({
      level: DEBUG,
      worker: 'payments',
      attempt: 1,
      code: 'WORKER_ERROR',
      error: 'gateway busy',
      retryable: true,
      retrying: true,
      durationMs: expect.any(Number),
    });
    // Equal jitter with random() = 0.5: three quarters of the nominal 20 ms.
    expect(about(lines, 'r-1', 'step retry scheduled')[0]).toMatchObject({ worker: 'payments', attempt: 2, delayMs: 15 });
    expect(about(lines, 'r-1', 'step committed')[0]).toMatchObject({ attempt: 2, durationMs: expect.any(Number) });
    await runtime.close();
  });

  it('a timeout: the step timed out after its timeoutMs, the undo of every step, and the outcome naming the step and code', async () => {
    const clock = createManualClock();
    const { logger, lines } = memoryLog('debug');
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const slow = defineWorker({ name: 'hotels', do: async () => (await gate, { room: 1 }), compensate: async () => undefined });
    const runtime = createRuntime({ logger, clock }).host(ok('flights'), slow);
    const saga = defineSaga({ name: 'trip', version: 1, steps: { flight: { worker: 'flights' }, hotel: { worker: 'hotels', timeoutMs: 1_000 } } });
    let done = false;
    const outcome = runtime.run(saga, {}, { sagaId: 't-1' }).then((o) => ((done = true), o));
    await clock.advance(1_010);
    const timedOut = about(lines, 't-1', 'step timed out');
    expect(timedOut).toEqual([expect.objectContaining({ level: DEBUG, stepId: 'hotel', worker: 'hotels', attempt: 1, timeoutMs: 1_000 })]);
    expect(timedOut[0]?.durationMs).toBeGreaterThanOrEqual(1_000);
    expect(timedOut[0]?.durationMs).toBeLessThan(1_010);
    expect(about(lines, 't-1', 'compensation started').map((l) => l.stepId).sort()).toEqual(['flight', 'hotel']);
    expect(done).toBe(false);
    release();
    await clock.advance(10);
    expect(await outcome).toMatchObject({ status: 'compensated' });
    expect(about(lines, 't-1', 'compensation done').map((l) => [l.stepId, l.worker, l.attempt, typeof l.durationMs])).toEqual(
      expect.arrayContaining([
        ['flight', 'flights', 1, 'number'],
        ['hotel', 'hotels', 1, 'number'],
      ]),
    );
    expect(about(lines, 't-1', 'saga ended')).toEqual([
      expect.objectContaining({
        level: INFO,
        status: 'compensated',
        failedStep: 'hotel',
        failedWorker: 'hotels',
        code: 'STEP_TIMED_OUT',
        failures: [{ stepId: 'hotel', worker: 'hotels', reason: 'timed-out', attempt: 1, code: 'STEP_TIMED_OUT', inDoubt: true }],
        compensated: ['flight', 'hotel'],
      }),
    ]);
    await runtime.close();
  });

  it('a compensated saga: the final failure, each undo started and done, and the outcome with the failed step and its error', async () => {
    const { logger, lines } = memoryLog('debug');
    const full = defineWorker({
      name: 'hotels',
      do: async (): Promise<unknown> => {
        throw new TerminalError('no rooms left');
      },
      compensate: async () => undefined,
    });
    const runtime = createRuntime({ logger }).host(ok('flights'), full);
    const saga = defineSaga({ name: 'trip', version: 1, steps: { flight: { worker: 'flights' }, hotel: { worker: 'hotels', after: ['flight'] } } });
    expect(await runtime.run(saga, {}, { sagaId: 'x-1' })).toMatchObject({ status: 'compensated' });
    expect(about(lines, 'x-1', 'step failed')).toEqual([
      expect.objectContaining({ level: DEBUG, stepId: 'hotel', worker: 'hotels', attempt: 1, code: 'WORKER_ERROR', error: 'no rooms left', retryable: false, retrying: false, inDoubt: false }),
    ]);
    const started = about(lines, 'x-1', 'compensation started');
    const done = about(lines, 'x-1', 'compensation done');
    expect(started).toEqual([expect.objectContaining({ stepId: 'flight', worker: 'flights', attempt: 1, timeoutMs: 30_000 })]);
    expect(done).toEqual([expect.objectContaining({ stepId: 'flight', worker: 'flights', attempt: 1, durationMs: expect.any(Number) })]);
    expect(lines.indexOf(about(lines, 'x-1', 'step failed')[0] as Line)).toBeLessThan(lines.indexOf(started[0] as Line));
    expect(about(lines, 'x-1', 'saga ended')).toEqual([
      expect.objectContaining({ level: INFO, status: 'compensated', failedStep: 'hotel', failedWorker: 'hotels', code: 'WORKER_ERROR', error: 'no rooms left', compensated: ['flight'] }),
    ]);
    await runtime.close();
  });

  it('a parked saga: each failed undo attempt, its retry, the step parked, and the saga parked at error', async () => {
    const { logger, lines } = memoryLog('debug');
    const stuck = defineWorker({
      name: 'flights',
      do: async () => ({ seat: '1A' }),
      compensate: async () => {
        throw new Error('airline offline');
      },
    });
    const full = defineWorker({
      name: 'hotels',
      do: async (): Promise<unknown> => {
        throw new TerminalError('no rooms left');
      },
      compensate: async () => undefined,
    });
    const runtime = createRuntime({ logger }).host(stuck, full);
    const saga = defineSaga({
      name: 'trip',
      version: 1,
      steps: { flight: { worker: 'flights' }, hotel: { worker: 'hotels', after: ['flight'] } },
      compensation: { retries: 1, backoff: { initialMs: 1, jitter: false } },
    });
    expect(await runtime.run(saga, {}, { sagaId: 'p-1' })).toMatchObject({ status: 'compensation-failed' });
    const flight = lines.filter((l) => l.sagaId === 'p-1' && l.stepId === 'flight' && l.level === DEBUG).map((l) => [l.msg, l.attempt, l.retrying]);
    expect(flight).toEqual([
      ['step dispatched', 1, undefined],
      ['step committed', 1, undefined],
      ['compensation started', 1, undefined],
      ['compensation attempt failed', 1, true],
      ['compensation retry scheduled', 2, undefined],
      ['compensation started', 2, undefined],
      ['compensation attempt failed', 2, false],
      ['step parked', 2, undefined],
    ]);
    expect(about(lines, 'p-1', 'compensation attempt failed')[1]).toMatchObject({ code: 'COMPENSATION_FAILED', error: 'airline offline', durationMs: expect.any(Number) });
    expect(about(lines, 'p-1', 'step parked')).toEqual([expect.objectContaining({ worker: 'flights', attempts: 2, why: 'compensation-failed', code: 'COMPENSATION_FAILED' })]);
    expect(about(lines, 'p-1', 'saga parked: compensation failed')).toEqual([
      expect.objectContaining({
        level: ERROR,
        status: 'compensation-failed',
        decision: 'abort',
        failedStep: 'hotel',
        code: 'WORKER_ERROR',
        remaining: [{ stepId: 'flight', worker: 'flights', why: 'compensation-failed', inDoubt: false, attempts: 2, code: 'COMPENSATION_FAILED' }],
      }),
    ]);
    await runtime.close();
  });

  it('above debug, no debug line is written or built, and sagas make no child logger', async () => {
    const counted = (level: string) => {
      const { logger } = memoryLog(level);
      const uses = { debug: 0, child: 0 };
      const spy = new Proxy(logger, {
        get(target, key, receiver) {
          if (key === 'debug' || key === 'child') uses[key]++;
          return Reflect.get(target, key, receiver);
        },
      }) as Logger;
      return { spy, uses };
    };
    const run = async (logger: Logger) => {
      const runtime = createRuntime({ logger }).host(ok('flights'), ok('hotels'));
      const saga = defineSaga({ name: 'trip', version: 1, steps: { flight: { worker: 'flights' }, hotel: { worker: 'hotels', after: ['flight'] } } });
      for (let i = 0; i < 20; i++) await runtime.run(saga, {});
      await runtime.close();
    };
    const info = counted('info');
    await run(info.spy);
    expect(info.uses).toEqual({ debug: 0, child: 0 });
    // The same runs at debug do use them: the count above can tell.
    const debug = counted('debug');
    await run(debug.spy);
    expect(debug.uses.child).toBe(20);
  });

  it('a logger whose level is lowered to debug traces the sagas started after it', async () => {
    const { logger, lines } = memoryLog('info');
    const runtime = createRuntime({ logger }).host(ok('flights'));
    const saga = defineSaga({ name: 'one', version: 1, steps: { a: { worker: 'flights' } } });
    await runtime.run(saga, {}, { sagaId: 'before' });
    logger.level = 'debug';
    await runtime.run(saga, {}, { sagaId: 'after' });
    expect(lines.filter((l) => l.level === DEBUG).map((l) => l.sagaId)).not.toContain('before');
    expect(about(lines, 'after', 'step committed')).toHaveLength(1);
    expect(about(lines, 'before', 'saga ended')).toHaveLength(1);
    await runtime.close();
  });
});
