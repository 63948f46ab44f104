/**
 * Trip booking across processes: this process is the coordinator; the workers run in
 * a worker host process (examples/nats-worker-host.ts), reached over NATS.
 *
 *   npm run example:nats                       # NATS_URL defaults to nats://127.0.0.1:4222
 *   NATS_URL=nats://host:4222 npm run example:nats
 *
 * If no host serves the workers yet, one is started as a child process and stopped
 * (SIGTERM: graceful drain) at the end. The coordinator journals its sagas in JetStream
 * (jetstreamSagaStore) and calls recover() first, so a coordinator killed mid-saga is
 * picked up by the next run; each trip has a saga id, so running it again returns its
 * outcome instead of booking twice.
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { connect } from '@nats-io/transport-node';
import { createRuntime } from '../src/index.ts';
import { jetstreamSagaStore, natsTransport } from '../src/nats.ts';
import type { SagaStore } from '../src/index.ts';
import { trip } from './trip-saga-nats.ts';
import type { Trip } from './trip-saga-nats.ts';


const url = process.env.NATS_URL ?? 'nats://127.0.0.1:4222';
const nc = await connect({ servers: url, name: 'trip-coordinator', noAsyncTraces: true });
const transport = natsTransport(nc, { servedCacheMs: 0 });

let child: ChildProcess | undefined;
const served = async () => (await Promise.all(['flights', 'hotels', 'cars'].map((w) => transport.isServed(w)))).every(Boolean);
if (!(await served())) {
  console.log(`no worker host on ${url}: starting examples/nats-worker-host.ts`);
  child = spawn(process.execPath, ['--import', 'tsx', fileURLToPath(new URL('./nats-worker-host.ts', import.meta.url))], {
    env: { ...process.env, NATS_URL: url, LOG_LEVEL: process.env.LOG_LEVEL ?? 'warn' },
    stdio: 'inherit',
  });
  const deadline = Date.now() + 30_000;
  while (!(await served())) {
    if (child.exitCode !== null || Date.now() > deadline) throw new Error('the worker host did not start');
    await new Promise((r) => setTimeout(r, 100));
  }
}

let store: SagaStore | undefined;
if (nc.info?.jetstream === true) {
  store = jetstreamSagaStore(nc);
} else {
  console.warn(`the nats-server at ${url} has no JetStream (start it with -js): saga journals live in memory only`);
}
const runtime = createRuntime({ transport, ...(store !== undefined ? { store } : {}), sagas: [trip] });
const recovered = await runtime.recover();
if (recovered.length > 0) console.log(`recovered ${recovered.length} saga(s) a previous coordinator left unfinished`);

try {
  const lisbon: Trip = {
    traveller: 'Ada',
    flight: { city: 'Lisbon', date: '2026-06-01' },
    hotel: { city: 'Lisbon', date: '2026-06-01' },
    car: { city: 'Lisbon', date: '2026-06-01' },
  };
  const atlantis: Trip = { ...lisbon, traveller: 'Nemo', hotel: { city: 'Atlantis', date: '2026-06-01' } };
  for (const t of [lisbon, atlantis]) {
    const outcome = await runtime.run(trip, t, { sagaId: `trip-${t.traveller}-${t.flight.date}` });
    console.log(`${t.traveller} -> ${t.hotel.city}:`, JSON.stringify(outcome, null, 2));
  }
} finally {
  await runtime.close();
  if (child !== undefined) {
    child.kill('SIGTERM');
    await new Promise((r) => child?.once('exit', r));
  }
  await nc.close();
}
