/**
 * The three compensation orders, side by side: a warehouse move that reserves a truck,
 * loads it, and books a crossing, then fails at customs. Each order undoes the same three
 * effects; the log shows in which order. On the embedded runtime (no server needed).
 *
 *   npx tsx examples/compensation-order.ts
 *
 * - `reverse` (the default): the booking and the load (both ran after the truck was
 *   reserved) are undone first, at once; the truck is released once both are undone.
 * - `parallel`: all three undos start at once.
 * - `sequential`: one at a time, the last step to complete first.
 */
import { createRuntime, defineSaga, defineWorker, TerminalError } from '../src/index.ts';
import type { CompensationOrder } from '../src/index.ts';

let log: string[] = [];
const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** A worker whose undo takes a while, so that undos which run at once overlap in the log. */
function worker(name: string, doMs: number) {
  return defineWorker({
    name,
    async do(input: { move: string }) {
      await pause(doMs);
      return { [name]: input.move };
    },
    async compensate() {
      log.push(`undo ${name} starts`);
      await pause(20);
      log.push(`undo ${name} done`);
    },
  });
}

const truck = worker('truck', 1);
const load = worker('load', 5);
const crossing = worker('crossing', 1);
const customs = defineWorker({
  name: 'customs',
  async do(_input: unknown): Promise<null> {
    throw new TerminalError('customs: papers missing');
  },
  async compensate() {},
});

function move(order: CompensationOrder) {
  return defineSaga({
    name: `move-${order}`,
    version: 1,
    steps: {
      truck: { worker: truck },
      // load and crossing run in parallel after the truck; crossing completes first.
      load: { worker: load, after: ['truck'] },
      crossing: { worker: crossing, after: ['truck'] },
      customs: { worker: customs, after: ['load', 'crossing'] },
    },
    compensation: { order },
  });
}

const runtime = createRuntime().host(truck, load, crossing, customs);
try {
  for (const order of ['reverse', 'parallel', 'sequential'] as const) {
    log = [];
    const outcome = await runtime.run(move(order), { move: 'm-1' }, { sagaId: `move-${order}` });
    console.log(`${order}: ${outcome.status}`);
    for (const line of log) console.log(`  ${line}`);
  }
} finally {
  await runtime.close();
}
