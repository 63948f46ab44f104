/**
 * A saga definition's version and recover(): a journal is driven on only by a runtime
 * given the definition of the same name and version. Any other version leaves it in the
 * store, untouched, with a warning.
 */
import { Writable } from 'node:stream';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { createRuntime, createWorkerHost, defineSaga, defineWorker, memorySagaStore, memoryTransport } from '../../src/index.ts';
import type { SagaOutcome, StepSpec } from '../../src/index.ts';
import { createManualClock } from '../../src/testing/clock.ts';

function deferred<T>() {
  let resolve!: (v: T) => void;
  const promise = new Promise<T>((res) => (resolve = res));
  return { promise, resolve };
}

function logLines() {
  const lines: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk, _enc, done) {
      for (const line of String(chunk).split('\n')) if (line.trim()) lines.push(JSON.parse(line));
      done();
    },
  });
  return { lines, logger: pino({ level: 'warn' }, sink) };
}

const order = (version: number) => {
  const steps: Record<string, StepSpec> = { reserve: { worker: 'stock', timeoutMs: 60_000 } };
  // Version 2 adds a step: a journal of version 1 must never be driven by it.
  if (version >= 2) steps.notify = { worker: 'stock', after: ['reserve'] };
  return defineSaga({ name: 'order', version, steps });
};

describe('recover() and the definition version', () => {
  it('leaves a journal whose version this runtime was not given in the store, and restores it once given that version', async () => {
    const clock = createManualClock();
    const store = memorySagaStore({ clock });
    const transport = memoryTransport();
    const gate = deferred<void>();
    const calls: string[] = [];
    const stock = defineWorker({
      name: 'stock',
      async do(_input: unknown, ctx) {
        calls.push(`${ctx.stepId}.do`);
        if (ctx.stepId === 'reserve') await gate.promise;
        return 'ok';
      },
      async compensate() {
        calls.push('compensate');
      },
    });
    await createWorkerHost([stock], { clock }).serve(transport);

    // A coordinator starts a version 1 saga and stops while it runs.
    const a = createRuntime({ clock, store, transport });
    a.run(order(1), {}, { sagaId: 'v1-saga' }).catch(() => undefined);
    await clock.advance(1);
    await a.close({ drainMs: 0 });
    const before = await store.load('v1-saga');
    expect(before?.record).toMatchObject({ saga: 'order', version: 1, status: 'running' });

    // A runtime that knows only version 2 does not restore it: a warning, and the journal stays as it was.
    const log = logLines();
    const b = createRuntime({ clock, store, transport, sagas: [order(2)], logger: log.logger });
    expect(await b.recover()).toEqual([]);
    expect(log.lines).toContainEqual(
      expect.objectContaining({ level: 40, msg: 'cannot take over a saga whose definition this runtime was not given', sagaId: 'v1-saga', saga: 'order', version: 1 }),
    );
    expect(await store.load('v1-saga')).toEqual(before);
    // run() of version 2 with that id is a conflict, not a restart under the new definition.
    await expect(b.run(order(2), {}, { sagaId: 'v1-saga' })).rejects.toMatchObject({
      code: 'SAGA_ID_CONFLICT',
      message: "saga id 'v1-saga' is already used by saga 'order' version 1",
    });
    await b.close();

    // A runtime given both versions restores it with version 1.
    const c = createRuntime({ clock, store, transport, sagas: [order(1), order(2)] });
    const outcome = new Promise<SagaOutcome>((resolve) => c.on('outcome', resolve));
    expect(await c.recover()).toEqual(['v1-saga']);
    gate.resolve();
    await clock.advance(1);
    expect(await outcome).toMatchObject({ sagaId: 'v1-saga', status: 'committed', results: { reserve: 'ok' } });
    // Version 1 has no notify step: it never ran.
    expect(calls).not.toContain('notify.do');
    await c.close();
  });
});
