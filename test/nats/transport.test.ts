/**
 * The NATS transport and serveWorkers against a private nats-server: sagas across
 * NATS, the headers on the wire, timeouts, no-responders, isServed, payload limits,
 * reply validation, queue groups, bounded concurrency with backpressure, drain.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect } from '@nats-io/transport-node';
import type { Msg, NatsConnection } from '@nats-io/transport-node';
import pino from 'pino';
import { createRuntime, defineSaga, defineWorker, memorySagaStore, SagaError, TerminalError } from '../../src/index.ts';
import type { WorkerRequest } from '../../src/index.ts';
import { natsTransport, serveWorkers } from '../../src/nats.ts';
import { startNatsServer } from '../helpers/nats-server.ts';
import type { NatsServer } from '../helpers/nats-server.ts';

let server: NatsServer;
let host: NatsConnection;
let client: NatsConnection;

beforeAll(async () => {
  server = await startNatsServer();
  host = await connect({ servers: server.url, name: 'test-host' });
  client = await connect({ servers: server.url, name: 'test-client' });
});

afterAll(async () => {
  await client?.close();
  await host?.close();
  await server?.stop();
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
let seq = 0;
const req = (worker: string, input: unknown = { n: 1 }, op: 'do' | 'compensate' = 'do'): WorkerRequest => ({
  v: 1,
  op,
  worker,
  sagaId: `saga-${++seq}`,
  stepId: 'step',
  key: seq.toString(16).padStart(40, '0'),
  attempt: 1,
  deadline: Date.now() + 5_000,
  input,
});

/** A pino logger at `level` that keeps every line. */
function logSink(level = 'debug') {
  const lines: Record<string, unknown>[] = [];
  const logger = pino({ level }, { write: (s: string) => void lines.push(JSON.parse(s) as Record<string, unknown>) });
  return { lines, logger };
}

describe('sagas over NATS', () => {
  it('commits a fanout saga with workers served over NATS, with the protocol headers on every request', async () => {
    const prefix = 'tfan';
    const calls: string[] = [];
    const w = (name: string) => defineWorker({ name, do: (i: { city: string }) => (calls.push(name), { name, city: i.city }), compensate: () => undefined });
    const served = await serveWorkers(host, [w('flights'), w('hotels'), w('cars')], { prefix, signals: [] });
    const seen: Msg[] = [];
    const spy = client.subscribe(`${prefix}.worker.>`, { callback: (_e, m) => void seen.push(m) });
    await client.flush();
    const runtime = createRuntime({ transport: natsTransport(client, { prefix }) });
    const trip = defineSaga({ name: 'trip', version: 1, steps: { flight: { worker: 'flights' }, hotel: { worker: 'hotels' }, car: { worker: 'cars' } } });
    const outcome = await runtime.run(trip, { city: 'Lyon' });
    expect(outcome.status).toBe('committed');
    if (outcome.status !== 'committed') return;
    expect(outcome.results).toEqual({ flight: { name: 'flights', city: 'Lyon' }, hotel: { name: 'hotels', city: 'Lyon' }, car: { name: 'cars', city: 'Lyon' } });
    expect(calls.sort()).toEqual(['cars', 'flights', 'hotels']);
    const dos = seen.filter((m) => m.subject.endsWith('.do'));
    expect(dos.map((m) => m.subject).sort()).toEqual([`${prefix}.worker.cars.do`, `${prefix}.worker.flights.do`, `${prefix}.worker.hotels.do`]);
    for (const m of dos) {
      const body = m.json<WorkerRequest>();
      expect(m.headers?.get('Saga-Protocol')).toBe('1');
      expect(m.headers?.get('Saga-Id')).toBe(outcome.sagaId);
      expect(m.headers?.get('Saga-Step')).toBe(body.stepId);
      expect(m.headers?.get('Idempotency-Key')).toBe(body.key);
      expect(m.headers?.get('Idempotency-Key')).toMatch(/^[0-9a-f]{40}$/);
      expect(m.headers?.get('Saga-Attempt')).toBe('1');
      expect(Number(m.headers?.get('Saga-Deadline'))).toBeGreaterThan(Date.now() - 60_000);
      expect(body).toMatchObject({ v: 1, op: 'do', sagaId: outcome.sagaId, input: { city: 'Lyon' } });
    }
    spy.unsubscribe();
    await runtime.close();
    await served.drain();
  });

  it('compensates the committed steps over NATS when one step fails', async () => {
    const prefix = 'tcomp';
    const undone: string[] = [];
    const w = (name: string, fail = false) =>
      defineWorker({
        name,
        do: () => {
          if (fail) throw new TerminalError(`${name} sold out`);
          return { name };
        },
        compensate: () => void undone.push(name),
      });
    const served = await serveWorkers(host, [w('flights'), w('hotels', true), w('cars')], { prefix, signals: [] });
    const runtime = createRuntime({ transport: natsTransport(client, { prefix }) });
    const trip = defineSaga({ name: 'trip', version: 1, steps: { flight: { worker: 'flights' }, hotel: { worker: 'hotels' }, car: { worker: 'cars' } } });
    const outcome = await runtime.run(trip, {});
    expect(outcome.status).toBe('compensated');
    if (outcome.status !== 'compensated') return;
    expect(outcome.failures).toEqual([expect.objectContaining({ stepId: 'hotel', error: expect.objectContaining({ code: 'WORKER_ERROR', message: 'hotels sold out' }) })]);
    expect(undone.sort()).toEqual(['cars', 'flights']);
    await runtime.close();
    await served.drain();
  });

  it('a do whose result is over the reply limit applied: the host answers RESULT_TOO_LARGE, the step is in doubt and undone', async () => {
    const prefix = 'tbig';
    const booked = new Set<string>();
    const big = defineWorker({
      name: 'reports',
      do: (_input: unknown, ctx) => {
        booked.add(ctx.idempotencyKey);
        return { blob: 'x'.repeat(4_096) };
      },
      compensate: (_input, _result, ctx) => void booked.delete(ctx.idempotencyKey),
    });
    const small = defineWorker({ name: 'notes', do: () => ({ ok: true }), compensate: () => undefined });
    const served = await serveWorkers(host, [big, small], { prefix, signals: [], maxPayload: 1_024 });
    const runtime = createRuntime({ transport: natsTransport(client, { prefix }) });
    const s = defineSaga({ name: 'report', version: 1, steps: { report: { worker: 'reports' }, note: { worker: 'notes' } } });
    const outcome = await runtime.run(s, {});
    expect(outcome).toMatchObject({
      status: 'compensated',
      compensated: expect.arrayContaining(['report', 'note']),
      failures: [expect.objectContaining({ stepId: 'report', inDoubt: true, error: expect.objectContaining({ code: 'RESULT_TOO_LARGE' }) })],
    });
    expect(booked.size).toBe(0);
    await runtime.close();
    await served.drain();
  });

  it('a burst far over the host capacity commits every saga: refusals at capacity are backpressure, not failures', async () => {
    const prefix = 'tburst';
    const { lines, logger } = logSink();
    const held = new Set<string>();
    const w = (name: string) =>
      defineWorker({ name, do: (_i: { n: number }, ctx) => void held.add(ctx.idempotencyKey), compensate: (_i, _r, ctx) => void held.delete(ctx.idempotencyKey) });
    // A small host: 4 running, 8 waiting; 2,000 sagas of 3 steps arrive at once.
    const served = await serveWorkers(host, [w('flights'), w('hotels'), w('cars')], { prefix, signals: [], concurrency: 4, maxPending: 8, logger });
    const runtime = createRuntime({ transport: natsTransport(client, { prefix }) });
    const trip = defineSaga({ name: 'trip', version: 1, steps: { flight: { worker: 'flights' }, hotel: { worker: 'hotels' }, car: { worker: 'cars' } } });
    const outcomes = await Promise.all(Array.from({ length: 2_000 }, (_, n) => runtime.run(trip, { n })));
    const counts: Record<string, number> = {};
    for (const o of outcomes) counts[o.status] = (counts[o.status] ?? 0) + 1;
    expect(counts).toEqual({ committed: 2_000 });
    expect(held.size).toBe(6_000);
    expect(lines.filter((l) => l.msg === 'at capacity: refused a request').length).toBeGreaterThan(0);
    await runtime.close();
    await served.drain();
  }, 120_000);

  it('refuses to start a saga whose worker nobody serves', async () => {
    const runtime = createRuntime({ transport: natsTransport(client, { prefix: 'tnone' }) });
    const s = defineSaga({ name: 'lonely', version: 1, steps: { a: { worker: 'ghost' } } });
    await expect(runtime.run(s, {})).rejects.toMatchObject({ code: 'WORKER_NOT_HOSTED' });
    await runtime.close();
  });
});

describe('natsTransport request side', () => {
  it('rejects with STEP_TIMED_OUT when a host takes the request but does not answer in time', async () => {
    const mute = client.subscribe('tmute.worker.mute.do', { callback: () => undefined });
    await client.flush();
    const t = natsTransport(host, { prefix: 'tmute' });
    const started = Date.now();
    const err = await t.request(req('mute'), 200).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SagaError);
    expect(err).toMatchObject({ code: 'STEP_TIMED_OUT', retryable: true });
    expect(Date.now() - started).toBeGreaterThanOrEqual(190);
    expect(Date.now() - started).toBeLessThan(2_000);
    mute.unsubscribe();
  });

  it('turns no-responders into TransportError NO_RESPONDERS, at once', async () => {
    const t = natsTransport(host, { prefix: 'tnobody' });
    const started = Date.now();
    await expect(t.request(req('nobody'), 5_000)).rejects.toMatchObject({ name: 'TransportError', code: 'NO_RESPONDERS', retryable: true });
    expect(Date.now() - started).toBeLessThan(1_000);
  });

  it('answers isServed from a ping: false with nobody, true once a host serves, false after it drains', async () => {
    const t = natsTransport(client, { prefix: 'tping', servedCacheMs: 0 });
    expect(await t.isServed('flights')).toBe(false);
    const served = await serveWorkers(host, [defineWorker({ name: 'flights', do: () => 1, compensate: () => undefined })], { prefix: 'tping', signals: [] });
    expect(await t.isServed('flights')).toBe(true);
    expect(await t.isServed('hotels')).toBe(false);
    await served.drain();
    expect(await t.isServed('flights')).toBe(false);
  });

  it('refuses a request over maxPayload before sending it', async () => {
    const seen: Msg[] = [];
    const spy = client.subscribe('tbig.worker.big.do', { callback: (_e, m) => void seen.push(m) });
    await client.flush();
    const t = natsTransport(host, { prefix: 'tbig', maxPayload: 1024 });
    await expect(t.request(req('big', { blob: 'x'.repeat(2_000) }), 1_000)).rejects.toMatchObject({ code: 'PAYLOAD_TOO_LARGE', retryable: false });
    await client.flush();
    await sleep(50);
    expect(seen).toHaveLength(0);
    spy.unsubscribe();
  });

  it('counts the headers against maxPayload: a body that fits alone but not with its headers is refused before sending', async () => {
    const t = natsTransport(host, { prefix: 'thdr', maxPayload: 1024 });
    const small = req('big', {});
    const bodyAlone = Buffer.byteLength(JSON.stringify(small));
    // A body of exactly the limit: under the old body-only count it would go out, and the client would refuse it.
    const r = req('big', { blob: 'x'.repeat(1024 - bodyAlone - 9) });
    expect(Buffer.byteLength(JSON.stringify(r))).toBeLessThanOrEqual(1024);
    expect(t.check?.(r)).toMatchObject({ code: 'PAYLOAD_TOO_LARGE', message: expect.stringContaining('with its headers') });
    await expect(t.request(r, 1_000)).rejects.toMatchObject({ code: 'PAYLOAD_TOO_LARGE', notSent: true });
    expect(t.check?.(small)).toBeUndefined();
  });

  it('rejects run() of a saga whose first request is over the payload limit, naming the step and the size, with nothing dispatched or journaled', async () => {
    const prefix = 'tin';
    let calls = 0;
    const w = (name: string) => defineWorker({ name, do: () => void calls++, compensate: () => undefined });
    const served = await serveWorkers(host, [w('scans'), w('notes')], { prefix, signals: [] });
    const store = memorySagaStore();
    const runtime = createRuntime({ transport: natsTransport(client, { prefix }), store });
    const s = defineSaga({ name: 'upload', version: 1, steps: { scan: { worker: 'scans' }, note: { worker: 'notes', input: () => ({}) } } });
    const bigInput = { blob: 'x'.repeat(5 * 1024 * 1024) };
    const started = Date.now();
    const error = await runtime.run(s, bigInput, { sagaId: 'too-big' }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(SagaError);
    expect(error).toMatchObject({ code: 'PAYLOAD_TOO_LARGE', message: expect.stringMatching(/step 'scan'.*is 52\d{5} bytes with its headers, over the limit of 1048576.*nothing was dispatched/) });
    expect(Date.now() - started).toBeLessThan(5_000); // refused up front, not after a timeout
    expect(calls).toBe(0);
    expect(await store.get('too-big')).toBeUndefined();
    expect(runtime.inFlight).toBe(0);
    await runtime.close();
    await served.drain();
  });

  it('a later stage whose input is over the payload limit fails cleanly (never sent): the saga compensates with that reason, nothing parked', async () => {
    const prefix = 'tlate';
    const held = new Set<string>();
    const make = (name: string) =>
      defineWorker({ name, do: (_i: unknown, ctx) => (held.add(ctx.idempotencyKey), { size: 2_000_000 }), compensate: (_i, _r, ctx) => void held.delete(ctx.idempotencyKey) });
    const served = await serveWorkers(host, [make('quotes'), make('orders')], { prefix, signals: [] });
    const runtime = createRuntime({ transport: natsTransport(client, { prefix }) });
    const s = defineSaga({
      name: 'late',
      version: 1,
      steps: {
        quote: { worker: 'quotes' },
        order: { worker: 'orders', after: ['quote'], input: (_i, r) => ({ blob: 'y'.repeat((r.quote as { size: number }).size) }) },
      },
    });
    const outcome = await runtime.run(s, {});
    expect(outcome).toMatchObject({
      status: 'compensated',
      compensated: ['quote'],
      failures: [expect.objectContaining({ stepId: 'order', inDoubt: false, error: expect.objectContaining({ code: 'PAYLOAD_TOO_LARGE', message: expect.stringContaining("step 'order'") }) })],
    });
    expect(held.size).toBe(0);
    expect(await runtime.deadLetters()).toEqual([]);
    await runtime.close();
    await served.drain();
  });

  it('rejects malformed replies with PROTOCOL_ERROR', async () => {
    const replies = ['not json', '{"ok":"yes"}', '{"ok":false,"error":{"code":"X"}}', '[1,2]'];
    let i = 0;
    const liar = client.subscribe('tliar.worker.liar.do', { callback: (_e, m) => void m.respond(replies[i++ % replies.length]) });
    await client.flush();
    const t = natsTransport(host, { prefix: 'tliar' });
    for (let k = 0; k < replies.length; k++) {
      await expect(t.request(req('liar'), 1_000)).rejects.toMatchObject({ code: 'PROTOCOL_ERROR', retryable: false });
    }
    liar.unsubscribe();
  });

  it('validates its options and names the bad one', () => {
    expect(() => natsTransport(host, { prefix: 'bad prefix' })).toThrow(/option 'prefix'/);
    expect(() => natsTransport(host, { concurrency: 0 })).toThrow(/option 'concurrency'/);
    expect(() => natsTransport(host, { nope: 1 } as never)).toThrow(/option 'nope'/);
  });
});

describe('serveWorkers', () => {
  it('shares a worker between hosts in the same queue group: each request is served exactly once', async () => {
    const hits = new Map<string, number>();
    const mk = (who: string) => defineWorker({ name: 'shared', do: () => (hits.set(who, (hits.get(who) ?? 0) + 1), who), compensate: () => undefined });
    const nc2 = await connect({ servers: server.url });
    const a = await serveWorkers(host, [mk('A')], { prefix: 'tq', signals: [] });
    const b = await serveWorkers(nc2, [mk('B')], { prefix: 'tq', signals: [] });
    const t = natsTransport(client, { prefix: 'tq' });
    const replies = await Promise.all(Array.from({ length: 200 }, () => t.request(req('shared'), 5_000)));
    expect(replies.every((r) => r.ok)).toBe(true);
    expect((hits.get('A') ?? 0) + (hits.get('B') ?? 0)).toBe(200);
    expect(hits.get('A')).toBeGreaterThan(0);
    expect(hits.get('B')).toBeGreaterThan(0);
    await a.drain();
    await b.drain();
    await nc2.close();
  });

  it('runs at most `concurrency` requests at once and refuses what does not fit in maxPending with OVERLOADED (nothing ran)', async () => {
    let running = 0;
    let peak = 0;
    const slow = defineWorker({
      name: 'slow',
      async do() {
        peak = Math.max(peak, ++running);
        await sleep(300);
        running--;
        return 'done';
      },
      compensate: () => undefined,
    });
    const { lines, logger } = logSink();
    const served = await serveWorkers(host, [slow], { prefix: 'tcap', concurrency: 2, maxPending: 3, logger, signals: [] });
    const t = natsTransport(client, { prefix: 'tcap' });
    const replies = await Promise.all(Array.from({ length: 10 }, () => t.request(req('slow'), 5_000)));
    const ok = replies.filter((r) => r.ok);
    const refused = replies.filter((r) => !r.ok);
    expect(peak).toBe(2);
    expect(ok.length).toBeGreaterThanOrEqual(5);
    expect(refused.length).toBeGreaterThan(0);
    expect(ok.length + refused.length).toBe(10);
    for (const r of refused) expect(r).toMatchObject({ ok: false, error: { code: 'OVERLOADED', retryable: true, message: expect.stringMatching(/at capacity.*nothing ran/) } });
    // Logged at debug: under a burst, refusals are routine backpressure, not warnings.
    expect(lines.filter((l) => l.level === 20 && l.msg === 'at capacity: refused a request')).toHaveLength(refused.length);
    // The backlog cleared: it serves again.
    await expect(t.request(req('slow'), 5_000)).resolves.toEqual({ ok: true, result: 'done' });
    await served.drain();
  });

  it('drain finishes what is in flight, then takes nothing new', async () => {
    const slow = defineWorker({
      name: 'slow',
      async do(i: { ms: number }) {
        await sleep(i.ms);
        return i.ms;
      },
      compensate: () => undefined,
    });
    const served = await serveWorkers(host, [slow], { prefix: 'tdrain', signals: [] });
    const t = natsTransport(client, { prefix: 'tdrain' });
    const inflight = [300, 350, 400].map((ms) => t.request(req('slow', { ms }), 5_000));
    for (let i = 0; i < 100 && served.load.running < 3; i++) await sleep(10);
    expect(served.load.running).toBe(3);
    const drained = served.drain();
    await host.flush(); // the server has seen the host unsubscribe
    await expect(t.request(req('slow', { ms: 1 }), 2_000)).rejects.toMatchObject({ code: 'NO_RESPONDERS' });
    expect(served.load.running).toBeGreaterThan(0); // ... while the requests it took still run
    expect(await Promise.all(inflight)).toEqual([
      { ok: true, result: 300 },
      { ok: true, result: 350 },
      { ok: true, result: 400 },
    ]);
    await drained;
    await served.drained;
    expect(served.load).toEqual({ running: 0, pending: 0 });
  });
});
