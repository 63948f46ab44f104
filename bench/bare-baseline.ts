/**
 * The baseline for bench/embedded.ts: a bare fanout-3 saga machine in XState v5 that
 * messages long-lived worker actors which answer at once. No transport, no worker
 * host, no timers, no store: the floor the runtime is compared with.
 */
import { assign, createActor, fromCallback, setup } from 'xstate';
import type { AnyActorRef } from 'xstate';

type Ev = { type: 'DONE'; step: string } | { type: 'FAIL'; step: string };

const worker = fromCallback<{ type: 'DO'; saga: AnyActorRef; step: string; fail: boolean }>(({ receive }) => {
  receive((e) => {
    void Promise.resolve().then(() => e.saga.send(e.fail ? { type: 'FAIL', step: e.step } : { type: 'DONE', step: e.step }));
  });
});

export function bareSagaRunner() {
  const workers = ['flights', 'hotels', 'cars'].map((name) => {
    const a = createActor(worker);
    a.start();
    return [name, a] as const;
  });
  const machine = setup({
    types: { context: {} as { done: number; input: { failHotel: boolean } }, events: {} as Ev, input: {} as { failHotel: boolean } },
    actions: {
      dispatch: ({ self, context }) => {
        for (const [name, ref] of workers) ref.send({ type: 'DO', saga: self, step: name, fail: name === 'hotels' && context.input.failHotel });
      },
    },
  }).createMachine({
    context: ({ input }) => ({ done: 0, input }),
    initial: 'gathering',
    states: {
      gathering: {
        entry: 'dispatch',
        always: { guard: ({ context }) => context.done === 3, target: 'committed' },
        on: { DONE: { actions: assign({ done: ({ context }) => context.done + 1 }) }, FAIL: 'compensated' },
      },
      committed: { type: 'final' },
      compensated: { type: 'final' },
    },
  });
  return (failHotel: boolean) =>
    new Promise<void>((resolve) => {
      const actor = createActor(machine, { input: { failHotel } });
      actor.subscribe({ complete: () => resolve() });
      actor.start();
    });
}
