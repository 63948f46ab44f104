/**
 * Benchmark: a burst far over a worker host's capacity. BURST sagas (default 10,000) of
 * the fanout-3 saga start at once with Promise.all against one `serveWorkers` host with
 * concurrency 64 over a private nats-server, every option at its default. The host
 * refuses what it cannot queue (OVERLOADED); the coordinator's backpressure sends it
 * again. Baseline in the same run: the same burst on the embedded runtime.
 *
 *   npm run bench:burst              (BURST=10000 by default)
 *
 * Prints one JSON object: outcomes by status (the target is every saga committed, none
 * parked), wall time, sagas/s, and how many requests the host refused at capacity.
 */
import os from 'node:os';
import { connect } from '@nats-io/transport-node';
import pino from 'pino';
import { createRuntime, defineSaga, defineWorker } from '../src/index.ts';
import type { SagaOutcome } from '../src/index.ts';
import { natsTransport, serveWorkers } from '../src/nats.ts';
import { startNatsServer } from '../test/helpers/nats-server.ts';

const BURST = Number(process.env.BURST ?? 10_000);
const round = (n: number, d = 1) => Math.round(n * 10 ** d) / 10 ** d;
const workers = ['inventory', 'payment', 'shipping'].map((name) =>
  defineWorker({ name, do: (input: { orderId: number }) => ({ ok: name, orderId: input.orderId }), compensate: () => undefined }),
);
const saga = defineSaga({
  name: 'fanout3',
  version: 1,
  steps: { inventory: { worker: 'inventory' }, payment: { worker: 'payment' }, shipping: { worker: 'shipping' } },
});

function tally(outcomes: SagaOutcome[], ms: number) {
  const by: Record<string, number> = { committed: 0, compensated: 0, 'compensation-failed': 0 };
  for (const o of outcomes) by[o.status] = (by[o.status] ?? 0) + 1;
  return { outcomes: by, wall_ms: Math.round(ms), sagas_per_s: round(outcomes.length / (ms / 1000)) };
}

async function main(): Promise<void> {
  const server = await startNatsServer();
  const hostConn = await connect({ servers: server.url, name: 'burst-host', noAsyncTraces: true });
  const client = await connect({ servers: server.url, name: 'burst-coordinator', noAsyncTraces: true });
  try {
    /** The burst over NATS; `maxInFlight` is the runtime's own bound (undefined: the default). */
    const overNats = async (prefix: string, maxInFlight?: number) => {
      let refusals = 0;
      const logger = pino({ level: 'debug' }, { write: (line: string) => void (line.includes('at capacity: refused') && refusals++) });
      const served = await serveWorkers(hostConn, workers, { concurrency: 64, signals: [], logger, prefix });
      const runtime = createRuntime({ transport: natsTransport(client, { prefix }), ...(maxInFlight !== undefined ? { maxInFlight } : {}) });
      const t = performance.now();
      const r = tally(await Promise.all(Array.from({ length: BURST }, (_, orderId) => runtime.run(saga, { orderId }))), performance.now() - t);
      await runtime.close();
      await served.drain();
      return { ...r, refused_at_capacity: refusals };
    };
    const nats = await overNats('burst');
    // No bound in the coordinator: every request reaches the host at once, and the host's refusals are the only brake.
    const unbounded = await overNats('burstu', Number.POSITIVE_INFINITY);

    const embedded = createRuntime().host(...workers);
    const t0 = performance.now();
    const mem = tally(await Promise.all(Array.from({ length: BURST }, (_, orderId) => embedded.run(saga, { orderId }))), performance.now() - t0);
    await embedded.close();

    const result = {
      bench: 'burst: fanout-3 sagas started at once against one serveWorkers host (concurrency 64), default options',
      node: process.version,
      cpus: os.availableParallelism(),
      loadavg_1m: round(os.loadavg()[0] ?? Number.NaN, 2),
      burst: BURST,
      nats,
      nats_max_in_flight_unbounded: unbounded,
      embedded_baseline: mem,
      all_committed: nats.outcomes.committed === BURST && unbounded.outcomes.committed === BURST,
      target: 'every saga committed, none parked',
    };
    console.log(JSON.stringify(result, null, 2));
    if (!result.all_committed) process.exitCode = 1;
  } finally {
    await client.close();
    await hostConn.close();
    await server.stop();
  }
}

await main();
