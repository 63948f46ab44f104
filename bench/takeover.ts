/**
 * Measurement: how long the sagas of a coordinator killed with SIGKILL wait before a live
 * coordinator on the same JetStream saga store takes them over (DESIGN: within the lease
 * plus one second). Starts a private nats-server, one worker host (a `do` of 3 leases), a
 * coordinator process A that starts SAGAS sagas, and a coordinator B in this process;
 * kills A once its sagas are journaled, then watches the journals' owner.
 *
 *   npm run bench:takeover           (LEASE_MS=3000, SAGAS=50, RUNS=3 by default)
 *
 * Prints one JSON object: per run, the time from the SIGKILL to the first and to the last
 * saga owned by B, and to every saga committed; and their medians.
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { connect } from '@nats-io/transport-node';
import { createRuntime, defineSaga, defineWorker } from '../src/index.ts';
import { jetstreamDedupStore, jetstreamSagaStore, natsTransport, serveWorkers } from '../src/nats.ts';
import { startNatsServer } from '../test/helpers/nats-server.ts';

const LEASE_MS = Number(process.env.LEASE_MS ?? 3_000);
const SAGAS = Number(process.env.SAGAS ?? 50);
/** Each `do` outlasts the takeover, so the sagas are still running when A dies. */
const DO_MS = LEASE_MS * 3;
const RUNS = Number(process.env.RUNS ?? 3);
const saga = defineSaga({ name: 'slow', version: 1, steps: { s: { worker: 'slow', timeoutMs: 30_000 } } });
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? Number.NaN;

async function child(): Promise<void> {
  const nc = await connect({ servers: process.env.NATS_URL as string, noAsyncTraces: true });
  const runtime = createRuntime({ transport: natsTransport(nc), store: jetstreamSagaStore(nc, { bucketPrefix: process.env.PREFIX as string }), ownership: { id: 'A', leaseMs: LEASE_MS } });
  for (let i = 0; i < SAGAS; i++) void runtime.run(saga, { i }, { sagaId: `${process.env.PREFIX}-${i}` }).catch(() => undefined);
  // Every intent journaled: the sagas are A's.
  const store = jetstreamSagaStore(nc, { bucketPrefix: process.env.PREFIX as string });
  while ((await store.unfinished()).length < SAGAS) await new Promise((r) => setTimeout(r, 20));
  process.stdout.write('ready\n');
  await new Promise(() => {});
}

async function main(): Promise<void> {
  const server = await startNatsServer();
  const nc = await connect({ servers: server.url, noAsyncTraces: true });
  const slow = defineWorker({ name: 'slow', do: async (i: { i: number }) => (await new Promise((r) => setTimeout(r, DO_MS)), i.i), compensate: () => undefined });
  const served = await serveWorkers(nc, [slow], { signals: [], dedup: jetstreamDedupStore(nc), concurrency: 256 });
  const runs: { first_owned_ms: number; all_owned_ms: number; all_committed_ms: number }[] = [];
  try {
    for (let run = 0; run < RUNS; run++) {
      const prefix = `takeover${run}`;
      const store = jetstreamSagaStore(nc, { bucketPrefix: prefix });
      const a = spawn(process.execPath, ['--import', 'tsx', fileURLToPath(import.meta.url), '--child'], { env: { ...process.env, NATS_URL: server.url, PREFIX: prefix }, stdio: ['ignore', 'pipe', 'inherit'] });
      await new Promise<void>((resolve, reject) => {
        a.stdout?.on('data', (d: Buffer) => d.toString().includes('ready') && resolve());
        a.once('exit', (code) => reject(new Error(`coordinator A exited with ${code}`)));
      });
      const b = createRuntime({ transport: natsTransport(nc), store, sagas: [saga], ownership: { id: 'B', leaseMs: LEASE_MS } });
      // B watches A beat for a second: A is alive.
      await new Promise((r) => setTimeout(r, 1_000));
      a.kill('SIGKILL');
      const killed = Date.now();
      let first: number | undefined;
      let all: number | undefined;
      let committed: number | undefined;
      while (committed === undefined && Date.now() - killed < 60_000) {
        const ids = Array.from({ length: SAGAS }, (_, i) => `${prefix}-${i}`);
        const recs = await Promise.all(ids.map((id) => store.get(id)));
        const owned = recs.filter((r) => r?.owner === 'B').length;
        if (owned > 0) first ??= Date.now() - killed;
        if (owned === SAGAS) all ??= Date.now() - killed;
        if (recs.every((r) => r?.outcome?.status === 'committed')) committed = Date.now() - killed;
        await new Promise((r) => setTimeout(r, 25));
      }
      if (first === undefined || all === undefined || committed === undefined) throw new Error(`run ${run}: the sagas were not taken over within 60 s`);
      runs.push({ first_owned_ms: first, all_owned_ms: all, all_committed_ms: committed });
      await b.close();
    }
    const result = {
      bench: 'takeover after SIGKILL of one of two coordinators on one JetStream saga store',
      lease_ms: LEASE_MS,
      sagas_per_run: SAGAS,
      runs,
      median: { first_owned_ms: median(runs.map((r) => r.first_owned_ms)), all_owned_ms: median(runs.map((r) => r.all_owned_ms)), all_committed_ms: median(runs.map((r) => r.all_committed_ms)) },
      target_ms: LEASE_MS + 1_000,
    };
    console.log(JSON.stringify(result, null, 2));
  } finally {
    await served.drain();
    await nc.close();
    await server.stop();
  }
}

if (process.argv.includes('--child')) await child();
else await main();
