/**
 * The baselines of the benchmark suite, run in the same process and the same run as the
 * runtime they are compared with:
 *
 * - `bareMachine(width)`: a bare XState v5 saga machine that messages three long-lived
 *   worker actors, which answer at once. No transport, worker host, timers or store: the
 *   floor of the embedded runtime.
 * - `sagaMachineAlone(def)`: scatter-saga's own saga machine for the workload's saga, run
 *   by an XState actor whose `effect` action answers every `do` and `compensate` at once
 *   (a microtask, as the bare machine's workers do). No worker host, key machine, store,
 *   timer or transport: what the saga machine alone costs, the part of the embedded
 *   runtime a faster runtime around it cannot remove.
 * - `allSettledSaga(width)`: `width` async calls under `Promise.allSettled`, and on a
 *   failure the compensations of the calls that succeeded: a saga with no machine, no
 *   journal and no durability at all.
 * - `rawNats(nc)`: NATS request/reply to the worker host process (which echoes on
 *   {@link RAW_SUBJECT}), a JetStream publish awaiting its ack, and a KV put, each with a
 *   payload the size of one worker request.
 */
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import { assign, createActor, fromCallback, setup } from 'xstate';
import type { AnyActorRef } from 'xstate';
import type { SagaCommand, SagaEvent } from '../src/machines/saga-logic.ts';
import { createSagaMachine } from '../src/machines/saga-machine.ts';
import type { SagaDefinition } from '../src/index.ts';

/** The subject the worker host process answers raw requests on (echo). */
export const RAW_SUBJECT = 'bench.raw';

type Ev = { type: 'DONE'; step: number } | { type: 'FAIL'; step: number };

const workerActor = fromCallback<{ type: 'DO'; saga: AnyActorRef; step: number; fail: boolean }>(({ receive }) => {
  receive((e) => {
    void Promise.resolve().then(() => e.saga.send(e.fail ? { type: 'FAIL', step: e.step } : { type: 'DONE', step: e.step }));
  });
});

/** The bare machine with worker actors, `width` steps; resolves when the saga machine is final. */
export function bareMachine(width: number): (fail: boolean) => Promise<void> {
  const actors = [0, 1, 2].map(() => {
    const a = createActor(workerActor);
    a.start();
    return a;
  });
  const machine = setup({
    types: { context: {} as { done: number; fail: boolean }, events: {} as Ev, input: {} as { fail: boolean } },
    actions: {
      dispatch: ({ self, context }) => {
        for (let i = 0; i < width; i++) actors[i % actors.length]?.send({ type: 'DO', saga: self, step: i, fail: context.fail && i === width - 1 });
      },
    },
  }).createMachine({
    context: ({ input }) => ({ done: 0, fail: input.fail }),
    initial: 'gathering',
    states: {
      gathering: {
        entry: 'dispatch',
        always: { guard: ({ context }) => context.done === width, target: 'committed' },
        on: { DONE: { actions: assign({ done: ({ context }) => context.done + 1 }) }, FAIL: 'compensated' },
      },
      committed: { type: 'final' },
      compensated: { type: 'final' },
    },
  });
  return (fail) =>
    new Promise<void>((resolve) => {
      const actor = createActor(machine, { input: { fail } });
      actor.subscribe({ complete: () => resolve() });
      actor.start();
    });
}

/**
 * The saga machine of `def` alone: each `do` answers at once (the last step fails when the
 * saga is chosen to fail, terminally), each `compensate` succeeds at once.
 */
export function sagaMachineAlone(def: SagaDefinition): (k: number, fail: boolean) => Promise<void> {
  const last = def.steps[def.steps.length - 1]?.id;
  const machine = createSagaMachine(def).provide({
    actions: {
      effect: ({ self }, params) => {
        const c = params as SagaCommand;
        let ev: SagaEvent;
        if (c.type === 'do') {
          const failing = (c.input as { fail?: boolean }).fail === true && c.stepId === last;
          ev = failing
            ? { type: 'STEP.FAILED', stepId: c.stepId, attempt: c.attempt, error: { code: 'WORKER_ERROR', message: 'sold out', retryable: false } }
            : { type: 'STEP.COMMITTED', stepId: c.stepId, attempt: c.attempt, result: { ok: (c.input as { k: number }).k } };
        } else if (c.type === 'compensate') ev = { type: 'COMPENSATION.DONE', stepId: c.stepId, attempt: c.attempt };
        else return; // timers and checkpoints: nothing to do here
        queueMicrotask(() => self.send(ev));
      },
    },
  });
  return (k, fail) =>
    new Promise<void>((resolve) => {
      const actor = createActor(machine, { input: { sagaId: `m${k}`, input: { k, fail } } });
      actor.subscribe({ complete: () => resolve() });
      actor.start();
    });
}

const call = async (i: number, fail: boolean) => {
  if (fail) throw new Error('sold out');
  return { ok: i };
};
const undo = async (_i: number) => undefined;

/** `width` async calls under Promise.allSettled; on a failure, the compensations of the ones that succeeded. */
export function allSettledSaga(width: number): (fail: boolean) => Promise<void> {
  return async (fail) => {
    const results = await Promise.allSettled(Array.from({ length: width }, (_, i) => call(i, fail && i === width - 1)));
    if (results.some((r) => r.status === 'rejected')) {
      await Promise.allSettled(results.map((r, i) => (r.status === 'fulfilled' ? undo(i) : undefined)));
    }
  };
}

/** A payload the size of one worker request on the wire. */
export const RAW_PAYLOAD = new TextEncoder().encode(
  JSON.stringify({ v: 1, op: 'do', worker: 'w0', sagaId: '00000000-0000-4000-8000-000000000000', stepId: 's0', key: 'f'.repeat(40), attempt: 1, deadline: 0, input: { k: 1 } }),
);

export interface RawNats {
  /** One request/reply round trip to the worker host process. */
  request(): Promise<unknown>;
  /** One JetStream publish (file storage), awaiting its ack. */
  publish(): Promise<unknown>;
  /** One KV put (file storage, history 1) to one of 1,024 keys. */
  kvPut(k: number): Promise<unknown>;
}

/** The raw NATS operations the NATS and durable modes are compared with. Creates its stream and bucket. */
export async function rawNats(nc: NatsConnection): Promise<RawNats> {
  const jsm = await jetstreamManager(nc);
  await jsm.streams.add({ name: 'BENCH_RAW', subjects: ['bench.js.>'], max_msgs: 100_000 });
  const js = jetstream(nc);
  const kv = await new Kvm(nc).create('bench_raw', { history: 1 });
  return {
    request: () => nc.request(RAW_SUBJECT, RAW_PAYLOAD, { timeout: 60_000 }),
    publish: () => js.publish('bench.js.raw', RAW_PAYLOAD, { timeout: 60_000 }),
    kvPut: (k) => kv.put(`k${k % 1024}`, RAW_PAYLOAD),
  };
}
