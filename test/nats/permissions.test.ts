/**
 * A nats-server with authorization, and the subject permissions of docs/operations.md: a
 * coordinator and a worker host each allowed only what the docs list still run sagas to
 * commit and to compensation, so do a coordinator serving the coordinator service and its
 * client, a worker host may not touch another worker's subjects, and wrong credentials are
 * refused.
 */
import { connect } from '@nats-io/transport-node';
import type { NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { createRuntime, defineSaga, defineWorker, TerminalError } from '../../src/index.ts';
import { jetstreamDedupStore, jetstreamSagaStore, natsTransport, sagaClient, serveCoordinator, serveWorkers } from '../../src/nats.ts';
import type { WorkerServer } from '../../src/nats.ts';
import { startNatsServer } from '../helpers/nats-server.ts';
import type { NatsServer } from '../helpers/nats-server.ts';

/** The permissions of docs/operations.md ("Subject permissions"), for the default prefixes. */
const workerHost = (worker: string) => `{
  publish: { allow: [
    "$KV.saga_dedup_${worker}.>",
    "$JS.API.INFO",
    "$JS.API.STREAM.INFO.KV_saga_dedup_${worker}",
    "$JS.API.STREAM.CREATE.KV_saga_dedup_${worker}",
    "$JS.API.STREAM.UPDATE.KV_saga_dedup_${worker}",
    "$JS.API.STREAM.MSG.GET.KV_saga_dedup_${worker}",
    "$JS.API.DIRECT.GET.KV_saga_dedup_${worker}.>"
  ] }
  subscribe: { allow: ["saga.worker.${worker}.>", "_INBOX_${worker}.>"] }
  allow_responses: true
}`;
const coordinator = `{
  publish: { allow: [
    "saga.worker.*.do", "saga.worker.*.compensate", "saga.worker.*.ping",
    "$KV.saga_journal.>", "$KV.saga_owners.>",
    "$JS.API.INFO",
    "$JS.API.STREAM.*.KV_saga_journal", "$JS.API.STREAM.*.KV_saga_owners",
    "$JS.API.STREAM.MSG.GET.KV_saga_journal", "$JS.API.STREAM.MSG.GET.KV_saga_owners",
    "$JS.API.DIRECT.GET.KV_saga_journal.>", "$JS.API.DIRECT.GET.KV_saga_owners.>",
    "$JS.API.CONSUMER.*.KV_saga_journal.>", "$JS.API.CONSUMER.*.KV_saga_owners.>",
    "$JS.API.CONSUMER.MSG.NEXT.KV_saga_journal.>", "$JS.API.CONSUMER.MSG.NEXT.KV_saga_owners.>"
  ] }
  subscribe: { allow: ["_INBOX_coordinator.>"] }
}`;
/** A coordinator that also serves the coordinator service: the coordinator's permissions, and the service's. */
const serviceCoordinator = coordinator
  .replace('"saga.worker.*.do",', '"saga.worker.*.do", "saga.svc.events.>",')
  .replace('subscribe: { allow: ["_INBOX_coordinator.>"] }', 'subscribe: { allow: ["_INBOX_service.>", "saga.svc.*", "$SRV.>"] }\n  allow_responses: true');
const serviceClient = `{
  publish: { allow: ["saga.svc.*", "$SRV.>"] }
  subscribe: { allow: ["_INBOX_client.>", "saga.svc.events.>"] }
}`;

let server: NatsServer;
const open: NatsConnection[] = [];
const hosts: WorkerServer[] = [];
/** Permission errors each connection was told of, by user. */
const violations = new Map<string, string[]>();

beforeAll(async () => {
  server = await startNatsServer({
    config: `authorization {
  users = [
    { user: coordinator, password: "c-secret", permissions: ${coordinator} }
    { user: flights, password: "f-secret", permissions: ${workerHost('flights')} }
    { user: hotels, password: "h-secret", permissions: ${workerHost('hotels')} }
    { user: service, password: "s-secret", permissions: ${serviceCoordinator} }
    { user: client, password: "cl-secret", permissions: ${serviceClient} }
  ]
}
`,
  });
});

afterAll(async () => {
  for (const h of hosts) await h.drain();
  for (const nc of open) await nc.close().catch(() => undefined);
  await server?.stop();
});

async function as(user: string, pass: string): Promise<NatsConnection> {
  const nc = await connect({ servers: server.url, user, pass, inboxPrefix: `_INBOX_${user}`, reconnect: false });
  open.push(nc);
  const seen: string[] = [];
  violations.set(user, seen);
  void (async () => {
    for await (const s of nc.status()) if (s.type === 'error') seen.push(String((s as { error?: Error }).error?.message));
  })();
  return nc;
}

const booked = { flights: 0, hotels: 0, cancelled: 0 };
const flights = defineWorker({
  name: 'flights',
  do: (to: string) => ({ seat: `${to}-${++booked.flights}` }),
  compensate: () => void booked.cancelled++,
});
const hotels = defineWorker({
  name: 'hotels',
  do: (city: string) => {
    if (city === 'Atlantis') throw new TerminalError('no hotel in Atlantis');
    return { room: `${city}-${++booked.hotels}` };
  },
  compensate: () => undefined,
});
const trip = defineSaga({
  name: 'trip',
  version: 1,
  steps: {
    flight: { worker: 'flights', input: (t: { to: string }) => t.to, timeoutMs: 5_000 },
    hotel: { worker: 'hotels', input: (t: { to: string }) => t.to, timeoutMs: 5_000 },
  },
});

describe('a nats-server with authorization and the documented subject permissions', () => {
  test('wrong credentials are refused', async () => {
    await expect(connect({ servers: server.url, user: 'flights', pass: 'wrong', reconnect: false })).rejects.toThrow(/authorization/i);
    await expect(connect({ servers: server.url, reconnect: false })).rejects.toThrow(/authorization/i);
  });

  test('worker hosts allowed only their own subjects and buckets, and a coordinator allowed only its own, run sagas to commit and to compensation', async () => {
    for (const [user, pass, worker] of [['flights', 'f-secret', flights], ['hotels', 'h-secret', hotels]] as const) {
      const nc = await as(user, pass);
      hosts.push(await serveWorkers(nc, [worker], { dedup: jetstreamDedupStore(nc), signals: [] }));
    }
    const nc = await as('coordinator', 'c-secret');
    const runtime = createRuntime({ transport: natsTransport(nc), store: jetstreamSagaStore(nc), sagas: [trip] });
    try {
      const ok = await runtime.run(trip, { to: 'Oslo' });
      expect(ok.status).toBe('committed');
      const failed = await runtime.run(trip, { to: 'Atlantis' });
      expect(failed.status, JSON.stringify(failed)).toBe('compensated');
      expect(booked.cancelled).toBe(1);
      expect(await runtime.recover()).toEqual([]);
      expect(await runtime.deadLetters()).toEqual([]);
      expect((await runtime.status(ok.sagaId))?.state).toBe('committed');
    } finally {
      await runtime.close();
    }
    expect(Object.fromEntries(violations)).toEqual({ flights: [], hotels: [], coordinator: [] });
  });

  test('a coordinator serving the coordinator service, and a client, with the permissions docs/operations.md gives them', async () => {
    const nc = await as('service', 's-secret');
    const runtime = createRuntime({ transport: natsTransport(nc), store: jetstreamSagaStore(nc), sagas: [trip] });
    const service = await serveCoordinator(nc, runtime);
    try {
      const clientNc = await as('client', 'cl-secret');
      const client = sagaClient(clientNc);
      const watch = client.watch('trip-perm');
      await watch.ready;
      const started = await client.start('trip', { to: 'Lisbon' }, { sagaId: 'trip-perm', wait: true });
      expect(started.outcome?.status).toBe('committed');
      expect((await client.status('trip-perm'))?.state).toBe('committed');
      expect(await client.list()).toEqual({ sagas: [], truncated: false });
      expect(await client.deadLetters()).toEqual([]);
      const types: string[] = [];
      for await (const event of watch) {
        types.push(event.type);
        if (event.type === 'outcome') {
          expect(event).toMatchObject({ type: 'outcome', sagaId: 'trip-perm' });
          break;
        }
      }
      expect(types).toEqual(['step', 'step', 'step', 'step', 'outcome']);
      // Discovery answers through allow_responses.
      const ping = await clientNc.request('$SRV.PING', undefined, { timeout: 2_000 });
      expect(ping.json<{ type: string }>().type).toBe('io.nats.micro.v1.ping_response');
    } finally {
      await service.stop();
      await runtime.close();
    }
    expect(violations.get('service')).toEqual([]);
    expect(violations.get('client')).toEqual([]);
  });

  test("a worker host may not publish on another worker's subjects nor read its bucket", async () => {
    const nc = await as('flights', 'f-secret');
    nc.publish('saga.worker.hotels.do', 'x');
    await expect(nc.request('$JS.API.STREAM.INFO.KV_saga_dedup_hotels', undefined, { timeout: 2_000 })).rejects.toThrow();
    await nc.flush();
    const deadline = Date.now() + 5_000;
    while (Date.now() < deadline && (violations.get('flights')?.length ?? 0) < 2) await new Promise((r) => setTimeout(r, 20));
    expect(violations.get('flights')).toEqual([
      'Permissions Violation for Publish to "saga.worker.hotels.do"',
      'Permissions Violation for Publish to "$JS.API.STREAM.INFO.KV_saga_dedup_hotels"',
    ]);
  });
});
