/**
 * sagaClient end to end against serveCoordinator on a private nats-server: start,
 * outcome, idempotent start, status, list, dead letters, retry, resolve, watch, typed
 * errors, and the service's drain.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect } from '@nats-io/transport-node';
import type { NatsConnection } from '@nats-io/transport-node';
import { createRuntime, defineSaga, defineWorker, TerminalError } from '../../src/index.ts';
import type { Runtime } from '../../src/index.ts';
import { jetstreamSagaStore, natsTransport, sagaClient, serveCoordinator, serveWorkers, ServiceError } from '../../src/nats.ts';
import type { CoordinatorService, SagaClient, SagaEvent, SagaWatch, WorkerServer } from '../../src/nats.ts';
import { startNatsServer } from '../helpers/nats-server.ts';
import type { NatsServer } from '../helpers/nats-server.ts';

let server: NatsServer;
let workerNc: NatsConnection;
let coordNc: NatsConnection;
let nc: NatsConnection;
let workers: WorkerServer;
let runtime: Runtime;
let service: CoordinatorService;
let client: SagaClient;
const PREFIX = 'shop';

const world = { undoBroken: true, gate: Promise.resolve() as Promise<void>, traceparents: [] as (string | undefined)[], lateRunning: 0 };
const hotel = defineWorker({
  name: 'hotel',
  do: async (input: { city: string }, ctx) => {
    world.traceparents.push(ctx.traceparent);
    await world.gate;
    if (input.city === 'Atlantis') throw new TerminalError('no hotels in Atlantis');
    return { room: `${input.city}-12` };
  },
  compensate: () => undefined,
});
const invoice = defineWorker({
  name: 'invoice',
  do: () => ({ invoice: 7 }),
  compensate: () => {
    if (world.undoBroken) throw new Error('invoicing is down');
  },
});
/** Books `ms` (default 300) after it starts; its undo always fails. */
const late = defineWorker({
  name: 'late',
  do: async (input: { ms?: number } | null) => {
    world.lateRunning++;
    await new Promise((r) => setTimeout(r, input?.ms ?? 300));
    world.lateRunning--;
    return { booked: true };
  },
  compensate: () => {
    throw new Error('the undo is broken');
  },
});
/** The do times out after 40 ms, the undo after 60 ms (behind the running do): the saga parks in doubt while the do runs on. */
const lateSaga = defineSaga({
  name: 'late',
  version: 1,
  steps: { s: { worker: 'late', input: (i: { ms?: number } | null) => i, timeoutMs: 40, retries: 0 } },
  compensation: { retries: 0, timeoutMs: 60, backoff: { initialMs: 1 } },
});
type Trip = { city: string };
const trip = defineSaga({ name: 'trip', version: 1, steps: { invoice: { worker: 'invoice' }, hotel: { worker: 'hotel', input: (t: Trip) => ({ city: t.city }), after: ['invoice'] } }, compensation: { retries: 0 } });

/** The events of a watch, gathered in the background. */
function collect(watch: SagaWatch): SagaEvent[] {
  const seen: SagaEvent[] = [];
  void (async () => {
    for await (const e of watch) seen.push(e);
  })();
  return seen;
}

async function until(check: () => boolean, ms = 5_000): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}

beforeAll(async () => {
  server = await startNatsServer();
  workerNc = await connect({ servers: server.url });
  coordNc = await connect({ servers: server.url });
  nc = await connect({ servers: server.url });
  workers = await serveWorkers(workerNc, [hotel, invoice, late], { prefix: PREFIX, signals: [] });
  runtime = createRuntime({ transport: natsTransport(coordNc, { prefix: PREFIX }), store: jetstreamSagaStore(coordNc, { bucketPrefix: 'svc_client' }), sagas: [trip, lateSaga] });
  service = await serveCoordinator(coordNc, runtime, { prefix: PREFIX });
  client = sagaClient(nc, { prefix: PREFIX });
});

afterAll(async () => {
  await service?.stop();
  await runtime?.close();
  await workers?.drain();
  await nc?.close();
  await coordNc?.close();
  await workerNc?.close();
  await server?.stop();
});

describe('sagaClient', () => {
  it('starts a saga, then waits for its outcome; watch(sagaId) sees the outcome event', async () => {
    let release!: () => void;
    world.gate = new Promise<void>((r) => (release = r));
    const sagaId = 'trip-lisbon';
    const watch = client.watch(sagaId);
    const others = client.watch('trip-other');
    await Promise.all([watch.ready, others.ready]);
    const seen = collect(watch);
    const otherSeen = collect(others);
    const started = await client.start('trip', { city: 'Lisbon' }, { sagaId });
    expect(started).toEqual({ sagaId });
    expect(await client.outcome(sagaId, { timeoutMs: 0 })).toBeUndefined();
    release();
    const outcome = await client.outcome(sagaId, { timeoutMs: 10_000 });
    expect(outcome).toMatchObject({ sagaId, status: 'committed', results: { invoice: { invoice: 7 }, hotel: { room: 'Lisbon-12' } } });
    await until(() => seen.some((e) => e.type === 'outcome'));
    // Each step's changes, then the outcome.
    const steps = seen.filter((e) => e.type === 'step').map((e) => (e.type === 'step' ? `${e.stepId} ${e.status}` : ''));
    expect(steps).toEqual(['invoice dispatched', 'invoice committed', 'hotel dispatched', 'hotel committed']);
    expect(seen[0]).toEqual({ v: 1, type: 'step', sagaId, saga: 'trip', version: 1, stepId: 'invoice', worker: 'invoice', status: 'dispatched', attempt: 1, compensationAttempt: 0 });
    expect(seen.filter((e) => e.type !== 'step')).toEqual([{ v: 1, type: 'outcome', sagaId, saga: 'trip', version: 1, outcome }]);
    watch.stop();
    others.stop();
    expect(otherSeen).toEqual([]);
    expect(await client.status(sagaId)).toMatchObject({ sagaId, saga: 'trip', state: 'committed', steps: { invoice: 'committed', hotel: 'committed' } });
  });

  it('a repeated start with the same sagaId gives the same saga; wait gives the outcome', async () => {
    const a = await client.start('trip', { city: 'Porto' }, { sagaId: 'trip-porto', wait: true });
    const b = await client.start('trip', { city: 'Porto' }, { sagaId: 'trip-porto', wait: true, timeoutMs: 5_000 });
    expect(a.outcome).toMatchObject({ status: 'committed' });
    expect(b).toEqual(a);
    await expect(client.start('trip', { city: 'Faro' }, { sagaId: 'trip-porto' })).rejects.toMatchObject({ name: 'ServiceError', code: 'SAGA_ID_CONFLICT', endpoint: 'start' });
  });

  it('operates a parked saga: list, dead letters, watch() of every saga sees the escalation, retry and resolve', async () => {
    world.undoBroken = true;
    const all = client.watch();
    await all.ready;
    const seen = collect(all);
    const { sagaId, outcome } = await client.start('trip', { city: 'Atlantis' }, { wait: true });
    expect(outcome).toMatchObject({ status: 'compensation-failed', remaining: [expect.objectContaining({ stepId: 'invoice' })] });
    await until(() => seen.some((e) => e.sagaId === sagaId && e.type === 'escalation'));
    expect(seen.find((e) => e.sagaId === sagaId && e.type !== 'step')).toMatchObject({ type: 'escalation', saga: 'trip', remaining: [expect.objectContaining({ stepId: 'invoice' })], timesParked: 1 });

    const parked = await client.list({ status: 'parked' });
    expect(parked.truncated).toBe(false);
    expect(parked.sagas.map((s) => s.sagaId)).toContain(sagaId);
    expect((await client.deadLetters()).map((d) => d.sagaId)).toContain(sagaId);
    expect(await client.status(sagaId)).toMatchObject({ state: 'compensationFailed' });

    world.undoBroken = false;
    expect(await client.retry(sagaId, { timeoutMs: 10_000 })).toMatchObject({ sagaId, status: 'compensated', compensated: ['invoice'] });
    expect((await client.list()).sagas.map((s) => s.sagaId)).not.toContain(sagaId);
    await until(() => seen.some((e) => e.sagaId === sagaId && e.type === 'outcome'));
    expect(seen.filter((e) => e.sagaId === sagaId && e.type !== 'step').map((e) => e.type)).toEqual(['escalation', 'outcome']);

    world.undoBroken = true;
    const second = (await client.start('trip', { city: 'Atlantis' }, { wait: true })).sagaId;
    expect(await client.resolve(second, 'invoice cancelled by hand')).toMatchObject({ sagaId: second, status: 'compensated', resolvedByOperator: ['invoice'] });
    await expect(client.retry(second)).rejects.toMatchObject({ code: 'SAGA_NOT_PARKED', endpoint: 'retry' });
    all.stop();
  });

  it('resolve: a RESOLVE_NEEDS_REVIEW ServiceError carries the fences and the review token; resolve with { reviewed } ends the saga', async () => {
    const { sagaId, outcome } = await client.start('late', { ms: 300 }, { wait: true });
    expect(outcome).toMatchObject({ status: 'compensation-failed', remaining: [expect.objectContaining({ stepId: 's', inDoubt: true })] });
    const e = await client.resolve(sagaId, 'looked: nothing booked').catch((error: unknown) => error);
    expect(e).toBeInstanceOf(ServiceError);
    const review = e as ServiceError;
    expect(review).toMatchObject({ code: 'RESOLVE_NEEDS_REVIEW', endpoint: 'resolve', retryable: false });
    expect(review.fences).toEqual([expect.objectContaining({ stepId: 's', worker: 'late', inDoubt: true, verdict: 'review', fence: expect.objectContaining({ was: 'applied' }) })]);
    expect(review.review).toEqual(expect.any(String));
    expect(review.detail).toEqual({ fences: review.fences, review: review.review });
    expect(review.message).toContain(review.review as string);
    expect(await client.status(sagaId)).toMatchObject({ state: 'compensationFailed' });
    expect(await client.resolve(sagaId, { note: 'cancelled by hand', reviewed: review.review, timeoutMs: 10_000 })).toMatchObject({ sagaId, status: 'compensated', resolvedByOperator: ['s'] });
  });

  it('resolve: FENCE_FAILED is a retryable ServiceError with the fences and no review; force resolves; bad options are refused', async () => {
    const { sagaId } = await client.start('late', { ms: 1_500 }, { wait: true });
    const e = (await client.resolve(sagaId, { fenceTimeoutMs: 100 }, { timeoutMs: 5_000 }).catch((error: unknown) => error)) as ServiceError;
    expect(e).toBeInstanceOf(ServiceError);
    expect(e).toMatchObject({ code: 'FENCE_FAILED', endpoint: 'resolve', retryable: true, review: undefined });
    expect(e.fences).toEqual([expect.objectContaining({ stepId: 's', verdict: 'failed', error: expect.objectContaining({ code: expect.any(String) }) })]);
    await expect(client.resolve(sagaId, { fenceTimeoutMs: 0 })).rejects.toMatchObject({ code: 'PROTOCOL_ERROR', message: expect.stringContaining("'fenceTimeoutMs'"), fences: undefined });
    await expect(client.resolve(sagaId, { force: 'yes' as never })).rejects.toMatchObject({ code: 'PROTOCOL_ERROR', message: expect.stringContaining("'force'") });
    await expect(client.resolve(sagaId, { fenced: true } as never)).rejects.toThrow(/option 'fenced': unknown option/);
    expect(await client.resolve(sagaId, { force: true, note: 'the worker is gone' })).toMatchObject({ sagaId, status: 'compensated', resolvedByOperator: ['s'] });
    // The do runs on, unfenced; let it end before the next test.
    await until(() => world.lateRunning === 0);
  });

  it("start's traceparent (a Traceparent header) is the saga's: its requests carry that trace; a bad one is refused before anything is sent", async () => {
    world.traceparents = [];
    const parent = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';
    const { outcome } = await client.start('trip', { city: 'Madrid' }, { wait: true, traceparent: parent });
    expect(outcome?.status).toBe('committed');
    expect(world.traceparents).toHaveLength(1);
    expect(world.traceparents[0]).toMatch(/^00-0af7651916cd43dd8448eb211c80319c-[0-9a-f]{16}-01$/);
    expect(world.traceparents[0]).not.toBe(parent);
    await expect(client.start('trip', { city: 'Madrid' }, { traceparent: 'nope' })).rejects.toThrow(/option 'traceparent': must be a W3C traceparent/);
    // Without one, the saga is not traced.
    world.traceparents = [];
    await client.start('trip', { city: 'Madrid' }, { wait: true });
    expect(world.traceparents).toEqual([undefined]);
  });

  it('error replies are ServiceErrors with the service code; no coordinator is NO_RESPONDERS', async () => {
    const unknown = await client.start('cruise', {}).catch((e: unknown) => e);
    expect(unknown).toBeInstanceOf(ServiceError);
    expect(unknown).toMatchObject({ code: 'UNKNOWN_SAGA', endpoint: 'start', retryable: false, message: expect.stringContaining("'cruise'") });
    expect(await client.status('never-started')).toBeUndefined();
    await expect(client.outcome('never-started')).rejects.toMatchObject({ code: 'SAGA_NOT_FOUND', endpoint: 'outcome' });
    await expect(client.list({ limit: 0 })).rejects.toMatchObject({ code: 'PROTOCOL_ERROR', message: expect.stringContaining("'limit'") });
    const elsewhere = sagaClient(nc, { prefix: 'nobody-here', timeoutMs: 2_000 });
    await expect(elsewhere.deadLetters()).rejects.toMatchObject({ name: 'ServiceError', code: 'NO_RESPONDERS', endpoint: 'dead-letters', retryable: true });
    expect(() => sagaClient(nc, { prefix: 'bad prefix' })).toThrow(/option 'prefix'/);
    expect(() => sagaClient(nc, { timeout: 5 } as never)).toThrow(/option 'timeout': unknown option/);
    await expect(client.start('trip', {}, { timeoutMs: 5 })).rejects.toThrow(/option 'timeoutMs'.*wait: true/);
  });

  it('stop() drains: a start that waits is answered without an outcome, then nothing answers', async () => {
    const rt = createRuntime({ transport: natsTransport(coordNc, { prefix: 'drain' }), store: jetstreamSagaStore(coordNc, { bucketPrefix: 'svc_drain' }), sagas: [trip] });
    const hosts = await serveWorkers(workerNc, [hotel, invoice], { prefix: 'drain', signals: [] });
    const svc = await serveCoordinator(coordNc, rt, { prefix: 'drain', drainMs: 100 });
    const c = sagaClient(nc, { prefix: 'drain' });
    let release!: () => void;
    world.gate = new Promise<void>((r) => (release = r));
    try {
      const waiting = c.start('trip', { city: 'Oslo' }, { sagaId: 'trip-oslo', wait: true });
      await until(() => svc.stats().endpoints.find((e) => e.name === 'start')!.num_requests === 0 && rt.inFlight === 1);
      const stopped = svc.stop();
      expect(await waiting).toEqual({ sagaId: 'trip-oslo', outcome: undefined });
      await stopped;
      await expect(c.status('trip-oslo')).rejects.toMatchObject({ code: 'NO_RESPONDERS' });
      release();
      expect(await rt.outcome('trip-oslo', { timeoutMs: 10_000 })).toMatchObject({ status: 'committed' });
    } finally {
      release();
      await svc.stop();
      await rt.close();
      await hosts.drain();
    }
  });
});
