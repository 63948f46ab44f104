import { describe, expect, test } from 'vitest';
import { createRuntime, defineSaga, defineWorker, TerminalError } from '../../src/index.ts';
import type { StepEvent } from '../../src/index.ts';

let refunds = 0;
const pay = defineWorker({ name: 'pay', do: (n: number) => ({ paid: n }), compensate: () => void refunds++ });
const ship = defineWorker({
  name: 'ship',
  do: (to: string) => {
    if (to === 'Atlantis') throw new TerminalError('no shipping to Atlantis');
    return { parcel: 1 };
  },
  compensate: () => undefined,
});
const order = defineSaga({
  name: 'order',
  version: 3,
  steps: { pay: { worker: pay, input: () => 10 }, ship: { worker: ship, input: (to: string) => to, after: ['pay'] } },
});

async function eventsOf(to: string, listen = true): Promise<{ events: StepEvent[]; status: string }> {
  const runtime = createRuntime().host(pay, ship);
  const events: StepEvent[] = [];
  if (listen) runtime.on('step', (e) => events.push(e));
  try {
    const outcome = await runtime.run(order, to, { sagaId: `order-${to}` });
    return { events, status: outcome.status };
  } finally {
    await runtime.close();
  }
}

const brief = (e: StepEvent) => `${e.stepId} ${e.status} do#${e.attempt} undo#${e.compensationAttempt}`;

describe("the runtime's step events", () => {
  test('a committed saga: each step dispatched, then committed, in order, with its saga and worker', async () => {
    const { events, status } = await eventsOf('Oslo');
    expect(status).toBe('committed');
    expect(events.map(brief)).toEqual(['pay dispatched do#1 undo#0', 'pay committed do#1 undo#0', 'ship dispatched do#1 undo#0', 'ship committed do#1 undo#0']);
    expect(events[0]).toEqual({ sagaId: 'order-Oslo', saga: 'order', version: 3, stepId: 'pay', worker: 'pay', status: 'dispatched', attempt: 1, compensationAttempt: 0 });
  });

  test('a compensated saga: the failure, then the undo of the step that committed', async () => {
    const before = refunds;
    const { events, status } = await eventsOf('Atlantis');
    expect(status).toBe('compensated');
    expect(refunds).toBe(before + 1);
    expect(events.map(brief)).toEqual([
      'pay dispatched do#1 undo#0',
      'pay committed do#1 undo#0',
      'ship dispatched do#1 undo#0',
      'ship failed do#1 undo#0',
      'pay compensating do#1 undo#1',
      'pay compensated do#1 undo#1',
    ]);
  });

  test('"step" is an event Runtime.on accepts, and sagas started while nobody listens emit none', async () => {
    const runtime = createRuntime().host(pay, ship);
    const late: StepEvent[] = [];
    try {
      await runtime.run(order, 'Lima');
      const off = runtime.on('step', (e) => late.push(e));
      await runtime.run(order, 'Quito');
      off();
      await runtime.run(order, 'Cusco');
    } finally {
      await runtime.close();
    }
    // Only the saga started while the listener was there: its two steps, dispatched and committed.
    expect(late).toHaveLength(4);
    expect(new Set(late.map((e) => e.sagaId)).size).toBe(1);
  });
});
