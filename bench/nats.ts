/**
 * Benchmark: the fanout-3 saga through NATS, with the worker host in a separate
 * process, at 1 and 256 sagas in flight; and, in the same run between the same two
 * processes, raw NATS request/reply as the baseline. Starts its own nats-server.
 *
 *   npx tsx bench/nats.ts            (BENCH_SECONDS=5 per phase by default)
 *
 * Prints one JSON object. `ratio_to_raw_rps_over_3` compares sagas/s at 256 in flight
 * with (raw request/reply per second at 256 in flight) / 3, since a saga is three
 * requests; `p50_over_raw_rtt` compares the p50 saga latency at 1 in flight with one
 * raw round trip.
 */
import { spawn } from 'node:child_process';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import { connect } from '@nats-io/transport-node';
import type { NatsConnection } from '@nats-io/transport-node';
import { createRuntime, defineSaga, defineWorker } from '../src/index.ts';
import { natsTransport, serveWorkers } from '../src/nats.ts';
import { startNatsServer } from '../test/helpers/nats-server.ts';

const RAW_SUBJECT = 'bench.raw';
const workers = ['inventory', 'payment', 'shipping'].map((name) =>
  defineWorker({ name, do: (input: { orderId: number }) => ({ ok: name, orderId: input.orderId }), compensate: () => undefined }),
);

async function child(): Promise<void> {
  const nc = await connect({ servers: process.env.NATS_URL as string, name: 'bench-worker-host', noAsyncTraces: true });
  nc.subscribe(RAW_SUBJECT, {
    callback: (_err, msg) => {
      msg.respond(msg.data);
    },
  });
  await serveWorkers(nc, workers, { concurrency: 256, maxPending: 4096 });
  process.once('SIGINT', () => process.exit(0));
  process.stdout.write('ready\n');
}

const percentile = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))] ?? NaN;
const round = (n: number, d = 1) => Math.round(n * 10 ** d) / 10 ** d;

/** Runs `op` in a closed loop with `inFlight` concurrent callers for `seconds`. */
async function closedLoop(inFlight: number, seconds: number, op: () => Promise<unknown>) {
  const lat: number[] = [];
  const end = performance.now() + seconds * 1000;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: inFlight }, async () => {
      while (performance.now() < end) {
        const s = performance.now();
        await op();
        lat.push(performance.now() - s);
      }
    }),
  );
  const elapsed = (performance.now() - t0) / 1000;
  lat.sort((a, b) => a - b);
  return { per_s: round(lat.length / elapsed), p50_ms: round(percentile(lat, 0.5), 3), p99_ms: round(percentile(lat, 0.99), 3), n: lat.length };
}

async function main(): Promise<void> {
  const seconds = Number(process.env.BENCH_SECONDS ?? 5);
  const server = await startNatsServer();
  const host = spawn(process.execPath, ['--import', 'tsx', fileURLToPath(import.meta.url), '--child'], {
    env: { ...process.env, NATS_URL: server.url },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let nc: NatsConnection | undefined;
  try {
    await new Promise<void>((resolve, reject) => {
      host.stdout?.on('data', (d: Buffer) => d.toString().includes('ready') && resolve());
      host.once('exit', (code) => reject(new Error(`worker host exited with ${code}`)));
    });
    nc = await connect({ servers: server.url, name: 'bench-coordinator', noAsyncTraces: true });
    const conn = nc;
    const runtime = createRuntime({ transport: natsTransport(conn) });
    const saga = defineSaga({
      name: 'fanout3',
      version: 1,
      steps: { inventory: { worker: 'inventory', timeoutMs: 10_000 }, payment: { worker: 'payment', timeoutMs: 10_000 }, shipping: { worker: 'shipping', timeoutMs: 10_000 } },
    });
    let orderId = 0;
    const runSaga = async () => {
      const o = await runtime.run(saga, { orderId: orderId++ });
      if (o.status !== 'committed') throw new Error(`saga ended ${o.status}`);
    };
    // A raw payload the size of one worker request on the wire.
    const payload = new TextEncoder().encode(
      JSON.stringify({ v: 1, op: 'do', worker: 'inventory', sagaId: crypto.randomUUID(), stepId: 'inventory', key: 'f'.repeat(40), attempt: 1, deadline: Date.now(), input: { orderId: 1 } }),
    );
    const raw = () => conn.request(RAW_SUBJECT, payload, { timeout: 10_000 });

    // Warm up both paths (JIT, connections, subscriptions).
    await closedLoop(64, 1, raw);
    await closedLoop(64, 1.5, runSaga);

    const raw1 = await closedLoop(1, seconds, raw);
    const raw256 = await closedLoop(256, seconds, raw);
    const saga1 = await closedLoop(1, seconds, runSaga);
    const saga256 = await closedLoop(256, seconds, runSaga);
    // The coordinator's own ceiling: the same saga with the in-memory transport, workers in this process.
    const embedded = createRuntime();
    embedded.host(...workers);
    const embedded256 = await closedLoop(256, seconds, async () => {
      const o = await embedded.run(saga, { orderId: orderId++ });
      if (o.status !== 'committed') throw new Error(`saga ended ${o.status}`);
    });
    await embedded.close();

    const result = {
      bench: 'nats fanout-3 saga, worker host in a separate process',
      node: process.version,
      cpus: os.availableParallelism(),
      seconds_per_phase: seconds,
      saga: {
        in_flight_1: { sagas_per_s: saga1.per_s, p50_ms: saga1.p50_ms, p99_ms: saga1.p99_ms, sagas: saga1.n },
        in_flight_256: { sagas_per_s: saga256.per_s, p50_ms: saga256.p50_ms, p99_ms: saga256.p99_ms, sagas: saga256.n },
      },
      raw_request_reply: {
        payload_bytes: payload.length,
        in_flight_1: { rps: raw1.per_s, p50_ms: raw1.p50_ms, p99_ms: raw1.p99_ms },
        in_flight_256: { rps: raw256.per_s, p50_ms: raw256.p50_ms, p99_ms: raw256.p99_ms },
      },
      embedded_in_flight_256: { sagas_per_s: embedded256.per_s, p50_ms: embedded256.p50_ms, p99_ms: embedded256.p99_ms, note: 'same saga, in-memory transport, one process: the runtime alone' },
      loadavg_1m: round(os.loadavg()[0] ?? NaN, 2),
      ratio_to_raw_rps_over_3: round(saga256.per_s / (raw256.per_s / 3), 3),
      p50_over_raw_rtt: round(saga1.p50_ms / raw1.p50_ms, 3),
      targets: { sagas_per_s_256: 5000, ratio_to_raw_rps_over_3: 0.6, p50_over_raw_rtt: 2 },
    };
    console.log(JSON.stringify(result, null, 2));
    await runtime.close();
  } finally {
    await nc?.close();
    host.kill('SIGKILL');
    await server.stop();
  }
}

if (process.argv.includes('--child')) await child();
else await main();
