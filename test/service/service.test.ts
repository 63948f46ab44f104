/**
 * The coordinator service spoken with raw NATS only (nc.request with hand-written JSON;
 * no client code), as a Go or Python client written from docs/protocol.md would: start
 * and outcome, idempotent start, the operator endpoints on a parked saga, `$SRV`
 * discovery and stats, a queue group of two coordinators, and bad input of every kind
 * answered with a typed error while the service keeps serving.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, createInbox, headers } from '@nats-io/transport-node';
import type { Msg, NatsConnection } from '@nats-io/transport-node';
import pino from 'pino';
import { createRuntime, defineSaga, defineWorker, TerminalError } from '../../src/index.ts';
import type { Runtime } from '../../src/index.ts';
import { jetstreamSagaStore, natsTransport, serveCoordinator, serveWorkers, SERVICE_ENDPOINTS } from '../../src/nats.ts';
import type { CoordinatorService, WorkerServer } from '../../src/nats.ts';
import { startNatsServer } from '../helpers/nats-server.ts';
import type { NatsServer } from '../helpers/nats-server.ts';

let server: NatsServer;
let workerNc: NatsConnection;
let coordNc: NatsConnection;
let nc: NatsConnection;
let workers: WorkerServer;
let runtime: Runtime;
let service: CoordinatorService;
const logs: Record<string, unknown>[] = [];
const MAX = 8192;

/** Switches and counters the workers share with the tests. */
const world = { stockDos: 0, undoBroken: true, undone: [] as string[], gate: undefined as undefined | { open: () => void; opened: Promise<void> }, lateApplied: [] as string[] };

const stock = defineWorker({
  name: 'stock',
  do: (input: { qty: number }) => (world.stockDos++, { reserved: input.qty }),
  compensate: () => void world.undone.push('stock'),
});
const payment = defineWorker({
  name: 'payment',
  do: (input: { card: string }) => {
    if (input.card === 'declined') throw new TerminalError('card declined');
    return { paid: true };
  },
  compensate: () => void world.undone.push('payment'),
});
const ledger = defineWorker({
  name: 'ledger',
  do: () => ({ entry: 1 }),
  compensate: () => {
    if (world.undoBroken) throw new Error('ledger is read-only');
    world.undone.push('ledger');
  },
});
const slow = defineWorker({
  name: 'slow',
  do: async () => {
    await world.gate?.opened;
    return { done: true };
  },
  compensate: () => undefined,
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** Applies its effect `ms` (default 300) after it starts; its undo always fails. */
const late = defineWorker({
  name: 'late',
  do: async (input: { ms?: number } | null, ctx) => {
    await sleep(input?.ms ?? 300);
    world.lateApplied.push(ctx.idempotencyKey);
    return { booked: true };
  },
  compensate: () => {
    throw new Error('the undo is broken');
  },
});

type Order = { qty: number; card: string };
const orderV1 = defineSaga({ name: 'order', version: 1, steps: { stock: { worker: 'stock', input: (o: Order) => ({ qty: o.qty }) }, pay: { worker: 'payment', input: (o: Order) => ({ card: o.card }) } } });
const orderV2 = defineSaga({ name: 'order', version: 2, steps: { stock: { worker: 'stock', input: (o: Order) => ({ qty: o.qty }) }, pay: { worker: 'payment', input: (o: Order) => ({ card: o.card }) } } });
const stuck = defineSaga({
  name: 'stuck',
  version: 1,
  steps: { entry: { worker: 'ledger' }, pay: { worker: 'payment', input: () => ({ card: 'declined' }), after: ['entry'] } },
  compensation: { retries: 0 },
});
const waiting = defineSaga({ name: 'waiting', version: 1, steps: { wait: { worker: 'slow' } } });
const orphan = defineSaga({ name: 'orphan', version: 1, steps: { x: { worker: 'nobody' } } });
/**
 * Times the do out after 40 ms and each undo after 60 ms, no retries: the undo waits behind
 * the running do, times out, and the saga parks with the step in doubt while the do runs on.
 */
const lateSaga = defineSaga({
  name: 'late',
  version: 1,
  steps: { s: { worker: 'late', input: (i: { ms?: number } | null) => i, timeoutMs: 40, retries: 0 } },
  compensation: { retries: 0, timeoutMs: 60, backoff: { initialMs: 1 } },
});

beforeAll(async () => {
  server = await startNatsServer();
  workerNc = await connect({ servers: server.url });
  coordNc = await connect({ servers: server.url });
  nc = await connect({ servers: server.url });
  workers = await serveWorkers(workerNc, [stock, payment, ledger, slow, late], { signals: [] });
  const logger = pino({ level: 'info' }, { write: (s: string) => void logs.push(JSON.parse(s) as Record<string, unknown>) });
  runtime = createRuntime({ transport: natsTransport(coordNc), store: jetstreamSagaStore(coordNc, { bucketPrefix: 'svc_raw' }), sagas: [orderV1, orderV2, stuck, waiting, orphan, lateSaga], logger });
  service = await serveCoordinator(coordNc, runtime, { logger, maxPayload: MAX });
});

afterAll(async () => {
  world.gate?.open();
  await service?.stop();
  await runtime?.close();
  await workers?.drain();
  await nc?.close();
  await coordNc?.close();
  await workerNc?.close();
  await server?.stop();
});

interface Raw {
  msg: Msg;
  body: { ok: boolean; result?: any; error?: { code: string; message: string; retryable: boolean; detail?: any } };
}

/** A raw request: `body` is JSON-encoded unless it is already a string or bytes. */
async function raw(subject: string, body: unknown, hdrs: Record<string, string> = {}, timeout = 15_000): Promise<Raw> {
  const payload = typeof body === 'string' || body instanceof Uint8Array ? body : JSON.stringify(body);
  const h = headers();
  for (const [k, v] of Object.entries(hdrs)) h.set(k, v);
  const msg = await nc.request(subject, payload, { timeout, ...(Object.keys(hdrs).length > 0 ? { headers: h } : {}) });
  return { msg, body: JSON.parse(msg.string()) as Raw['body'] };
}

const svc = (endpoint: string, body: unknown, hdrs?: Record<string, string>) => raw(`saga.svc.${endpoint}`, body, hdrs);

/** Every reply to one request published on `subject` within `ms`. */
async function gather(subject: string, ms = 300): Promise<Record<string, any>[]> {
  const inbox = createInbox();
  const out: Record<string, any>[] = [];
  const sub = nc.subscribe(inbox, { callback: (_e, m) => void out.push(JSON.parse(m.string()) as Record<string, any>) });
  nc.publish(subject, '', { reply: inbox });
  await new Promise((r) => setTimeout(r, ms));
  sub.unsubscribe();
  return out;
}

function expectError(r: Raw, code: string, message?: RegExp): void {
  expect(r.body.ok).toBe(false);
  expect(r.body.error?.code).toBe(code);
  expect(typeof r.body.error?.retryable).toBe('boolean');
  if (message !== undefined) expect(r.body.error?.message).toMatch(message);
  expect(r.msg.headers?.get('Saga-Error-Code')).toBe(code);
  expect(r.msg.headers?.get('Saga-Protocol')).toBe('1');
  expect(r.msg.headers?.get('Nats-Service-Error')).toContain(code);
  expect(Number(r.msg.headers?.get('Nats-Service-Error-Code'))).toBeGreaterThanOrEqual(400);
}

describe('starting sagas with raw NATS requests', () => {
  it('start answers the saga id, and outcome answers the outcome', async () => {
    const started = await svc('start', { v: 1, saga: 'order', input: { qty: 2, card: 'ok' } });
    expect(started.body.ok).toBe(true);
    expect(started.msg.headers).toBeUndefined();
    const sagaId = started.body.result.sagaId as string;
    expect(sagaId).toMatch(/^[0-9a-f-]{36}$/);
    expect(Object.keys(started.body.result)).toEqual(['sagaId']);
    const out = await svc('outcome', { v: 1, sagaId, timeoutMs: 10_000 });
    expect(out.body).toEqual({ ok: true, result: { sagaId, outcome: expect.objectContaining({ sagaId, status: 'committed', results: { stock: { reserved: 2 }, pay: { paid: true } } }) } });
    const status = await svc('status', { v: 1, sagaId });
    // The highest version served, when none is asked for.
    expect(status.body.result).toMatchObject({ sagaId, saga: 'order', version: 2, state: 'committed', steps: { stock: 'committed', pay: 'committed' } });
  });

  it('start with wait answers the outcome; an asked-for version is the one run', async () => {
    const r = await svc('start', { v: 1, saga: 'order', version: 1, input: { qty: 1, card: 'declined' }, wait: true, timeoutMs: 10_000 });
    expect(r.body.ok).toBe(true);
    expect(r.body.result.outcome).toMatchObject({ status: 'compensated', compensated: ['stock'], failures: [expect.objectContaining({ stepId: 'pay', error: expect.objectContaining({ code: 'WORKER_ERROR', message: 'card declined' }) })] });
    expect((await svc('status', { v: 1, sagaId: r.body.result.sagaId })).body.result).toMatchObject({ version: 1, state: 'compensated' });
  });

  it('a repeated start with the same sagaId runs the saga once; another input with that id is a SAGA_ID_CONFLICT', async () => {
    const before = world.stockDos;
    const body = { v: 1, saga: 'order', input: { qty: 5, card: 'ok' }, sagaId: 'order-42', wait: true };
    const first = await svc('start', body);
    const again = await svc('start', body);
    const noWait = await svc('start', { ...body, wait: false });
    expect(first.body.result.outcome).toMatchObject({ sagaId: 'order-42', status: 'committed' });
    expect(again.body.result).toEqual(first.body.result);
    expect(noWait.body.result).toEqual({ sagaId: 'order-42' });
    expect(world.stockDos - before).toBe(1);
    const conflict = await svc('start', { ...body, input: { qty: 6, card: 'ok' } });
    expectError(conflict, 'SAGA_ID_CONFLICT', /order-42/);
    expect(conflict.msg.headers?.get('Nats-Service-Error-Code')).toBe('409');
    expect(world.stockDos - before).toBe(1);
  });
});

describe('operating a parked saga with raw NATS requests', () => {
  it('status, list, dead-letters, retry (the undo now works) and resolve', async () => {
    world.undoBroken = true;
    const parked = await svc('start', { v: 1, saga: 'stuck', input: {}, wait: true });
    const sagaId = parked.body.result.sagaId as string;
    expect(parked.body.result.outcome).toMatchObject({ status: 'compensation-failed', remaining: [expect.objectContaining({ stepId: 'entry' })] });
    expect((await svc('status', { v: 1, sagaId })).body.result).toMatchObject({ state: 'compensationFailed', steps: { entry: 'compensationFailed', pay: 'failed' } });
    // outcome of a parked saga is its compensation-failed outcome, at once.
    expect((await svc('outcome', { v: 1, sagaId, timeoutMs: 0 })).body.result.outcome).toMatchObject({ status: 'compensation-failed' });

    const listed = await svc('list', { v: 1, status: 'parked' });
    expect(listed.body.result.truncated).toBe(false);
    expect(listed.body.result.sagas).toContainEqual(expect.objectContaining({ sagaId, saga: 'stuck', version: 1, status: 'parked', owner: runtime.coordinatorId }));
    expect((await svc('list', { v: 1, status: 'running' })).body.result.sagas.map((s: { sagaId: string }) => s.sagaId)).not.toContain(sagaId);
    const letters = await svc('dead-letters', { v: 1 });
    expect(letters.body.result.deadLetters).toContainEqual(expect.objectContaining({ sagaId, saga: 'stuck', remaining: [expect.objectContaining({ stepId: 'entry' })], timesParked: 1 }));

    // Retried while the undo still fails: parked again.
    const stillBroken = await svc('retry', { v: 1, sagaId, timeoutMs: 10_000 });
    expect(stillBroken.body.result).toMatchObject({ sagaId, outcome: { status: 'compensation-failed' } });
    world.undoBroken = false;
    const retried = await svc('retry', { v: 1, sagaId, timeoutMs: 10_000 });
    expect(retried.body.result).toMatchObject({ sagaId, outcome: { status: 'compensated', compensated: ['entry'] } });
    expect(world.undone).toContain('ledger');
    expect((await svc('list', { v: 1 })).body.result.sagas.map((s: { sagaId: string }) => s.sagaId)).not.toContain(sagaId);
    expect((await svc('dead-letters', { v: 1 })).body.result.deadLetters.map((d: { sagaId: string }) => d.sagaId)).not.toContain(sagaId);
    // Not parked any more.
    expectError(await svc('retry', { v: 1, sagaId }), 'SAGA_NOT_PARKED');

    world.undoBroken = true;
    const other = (await svc('start', { v: 1, saga: 'stuck', input: { n: 2 }, wait: true })).body.result.sagaId as string;
    const resolved = await svc('resolve', { v: 1, sagaId: other, note: 'ledger entry voided by hand' });
    expect(resolved.body.result).toMatchObject({ sagaId: other, outcome: { status: 'compensated', resolvedByOperator: ['entry'] } });
    expect(logs).toContainEqual(expect.objectContaining({ sagaId: other, action: 'OPERATOR.RESOLVE', note: 'ledger entry voided by hand' }));
  });

  it('resolve fences the keys first: an effect that may have landed after the operator looked is a RESOLVE_NEEDS_REVIEW with the fences and a review token; resolve with reviewed ends the saga', async () => {
    const sagaId = 'late-review';
    const parked = await svc('start', { v: 1, saga: 'late', input: { ms: 300 }, sagaId, wait: true });
    expect(parked.body.result.outcome).toMatchObject({ status: 'compensation-failed', remaining: [expect.objectContaining({ stepId: 's', inDoubt: true })] });
    // The operator looks now: nothing is there yet; the do is still running.
    const key = parked.body.result.outcome.remaining[0].idempotencyKey as string;
    expect(world.lateApplied).not.toContain(key);
    const r = await svc('resolve', { v: 1, sagaId, note: 'nothing booked', timeoutMs: 10_000 });
    expectError(r, 'RESOLVE_NEEDS_REVIEW', /may have landed after you looked/);
    expect(r.msg.headers?.get('Nats-Service-Error-Code')).toBe('409');
    expect(r.body.error?.retryable).toBe(false);
    expect(r.body.error?.detail).toEqual({
      fences: [{ stepId: 's', worker: 'late', idempotencyKey: key, inDoubt: true, verdict: 'review', fence: { by: expect.any(String), was: 'applied' } }],
      review: expect.any(String),
    });
    const review = r.body.error?.detail.review as string;
    expect(r.body.error?.message).toContain(review);
    // The do applied while the fence waited for it; the saga is still parked.
    expect(world.lateApplied).toContain(key);
    expect((await svc('status', { v: 1, sagaId })).body.result.state).toBe('compensationFailed');
    const resolved = await svc('resolve', { v: 1, sagaId, note: 'cancelled the booking by hand', reviewed: review, timeoutMs: 10_000 });
    expect(resolved.body).toEqual({ ok: true, result: { sagaId, outcome: expect.objectContaining({ sagaId, status: 'compensated', resolvedByOperator: ['s'] }) } });
    expect(logs).toContainEqual(expect.objectContaining({ sagaId, action: 'OPERATOR.RESOLVE', note: 'cancelled the booking by hand' }));
  });

  it('a do that outlasts fenceTimeoutMs is a retryable FENCE_FAILED with the fences and no review token; force resolves without fencing', async () => {
    const sagaId = 'late-busy';
    const parked = await svc('start', { v: 1, saga: 'late', input: { ms: 1_500 }, sagaId, wait: true });
    expect(parked.body.result.outcome).toMatchObject({ status: 'compensation-failed' });
    const r = await svc('resolve', { v: 1, sagaId, fenceTimeoutMs: 100, timeoutMs: 5_000 });
    expectError(r, 'FENCE_FAILED', /could not fence 's'/);
    expect(r.msg.headers?.get('Nats-Service-Error-Code')).toBe('503');
    expect(r.body.error?.retryable).toBe(true);
    // The host answers nothing while the do runs (over NATS the fence times out; a host may also say IN_PROGRESS).
    expect(r.body.error?.detail).toEqual({ fences: [expect.objectContaining({ stepId: 's', worker: 'late', inDoubt: true, verdict: 'failed', error: expect.objectContaining({ code: expect.stringMatching(/^(STEP_TIMED_OUT|IN_PROGRESS)$/) }) })] });
    expect(r.body.error?.detail.fences[0]).not.toHaveProperty('fence');
    expect((await svc('status', { v: 1, sagaId })).body.result.state).toBe('compensationFailed');
    const from = logs.length;
    const forced = await svc('resolve', { v: 1, sagaId, force: true, timeoutMs: 5_000 });
    expect(forced.body.result.outcome).toMatchObject({ sagaId, status: 'compensated', resolvedByOperator: ['s'] });
    expect(logs.slice(from)).toContainEqual(expect.objectContaining({ sagaId, msg: 'resolve with force: the keys of the remaining effects were not fenced' }));
    // Nothing stopped the do: it applies after the saga ended.
    const key = parked.body.result.outcome.remaining[0].idempotencyKey as string;
    for (let i = 0; i < 150 && !world.lateApplied.includes(key); i++) await sleep(20);
    expect(world.lateApplied).toContain(key);
  });

  it('list shows a running saga as running', async () => {
    let open!: () => void;
    const opened = new Promise<void>((r) => (open = r));
    world.gate = { open, opened };
    const sagaId = (await svc('start', { v: 1, saga: 'waiting', input: null })).body.result.sagaId as string;
    const running = await svc('list', { v: 1, status: 'running' });
    expect(running.body.result.sagas).toContainEqual(expect.objectContaining({ sagaId, saga: 'waiting', status: 'running' }));
    expect((await svc('outcome', { v: 1, sagaId, timeoutMs: 50 })).body.result).toEqual({ sagaId, outcome: null });
    open();
    expect((await svc('outcome', { v: 1, sagaId, timeoutMs: 10_000 })).body.result.outcome).toMatchObject({ status: 'committed' });
    // limit
    const limited = await svc('list', { v: 1, limit: 1 });
    expect(limited.body.result.sagas.length).toBeLessThanOrEqual(1);
  });
});

describe('abort', () => {
  it('abort stops a running saga and answers its compensated outcome with the note; a finished saga is SAGA_NOT_RUNNING; bad fields are refused', async () => {
    let open!: () => void;
    const opened = new Promise<void>((r) => (open = r));
    world.gate = { open, opened };
    const sagaId = (await svc('start', { v: 1, saga: 'waiting', input: null })).body.result.sagaId as string;
    await new Promise((r) => setTimeout(r, 100));
    const aborting = svc('abort', { v: 1, sagaId, note: 'customer cancelled', timeoutMs: 10_000 });
    // The step's do is still running: its compensate waits for it, then undoes it.
    await new Promise((r) => setTimeout(r, 100));
    open();
    const r = await aborting;
    expect(r.body.ok).toBe(true);
    expect(r.body.result).toMatchObject({ sagaId, outcome: { status: 'compensated', abortedByOperator: { note: 'customer cancelled' }, compensated: ['wait'] } });
    expectError(await svc('abort', { v: 1, sagaId }), 'SAGA_NOT_RUNNING', /compensated, not running/);
    expect(Number((await svc('abort', { v: 1, sagaId })).msg.headers?.get('Nats-Service-Error-Code'))).toBe(409);
    expectError(await svc('abort', { v: 1, sagaId: 'no-such-saga' }), 'SAGA_NOT_FOUND');
    expectError(await svc('abort', { v: 1, sagaId, note: 7 }), 'PROTOCOL_ERROR', /'note'/);
    expectError(await svc('abort', { v: 1 }), 'PROTOCOL_ERROR', /'sagaId'/);
    expectError(await svc('abort', { v: 1, sagaId, force: true }), 'PROTOCOL_ERROR', /force/);
  });
});

describe('the NATS micro protocol', () => {
  it('$SRV.PING, INFO and STATS answer on all three subject forms and name every endpoint', async () => {
    const ping = (await raw('$SRV.PING', '')).body as unknown as Record<string, unknown>;
    expect(ping).toMatchObject({ type: 'io.nats.micro.v1.ping_response', name: 'scatter-saga', id: service.id, version: '1.0.0' });
    expect((ping.metadata as Record<string, string>).prefix).toBe('saga');
    const info = (await raw('$SRV.INFO.scatter-saga', '')).body as unknown as { type: string; description: string; endpoints: { name: string; subject: string; queue_group: string }[] };
    expect(info.type).toBe('io.nats.micro.v1.info_response');
    expect(typeof info.description).toBe('string');
    expect(info.endpoints.map((e) => e.name)).toEqual([...SERVICE_ENDPOINTS]);
    expect(info.endpoints.map((e) => e.subject)).toEqual(['saga.svc.start', 'saga.svc.status', 'saga.svc.outcome', 'saga.svc.list', 'saga.svc.retry', 'saga.svc.resolve', 'saga.svc.abort', 'saga.svc.dead-letters', 'saga.svc.graph']);
    for (const e of info.endpoints) expect(e.queue_group).toBe('saga-coordinators');

    const stats = async () => (await raw(`$SRV.STATS.scatter-saga.${service.id}`, '')).body as unknown as { type: string; started: string; endpoints: Record<string, any>[] };
    const before = await stats();
    expect(before.type).toBe('io.nats.micro.v1.stats_response');
    expect(Number.isNaN(Date.parse(before.started))).toBe(false);
    // What the io.nats.micro.v1 stats schema requires of every endpoint.
    for (const e of before.endpoints) {
      for (const k of ['num_requests', 'num_errors', 'processing_time', 'average_processing_time']) expect(Number.isSafeInteger(e[k]), k).toBe(true);
      expect(typeof e.last_error).toBe('string');
      expect(e.subject).toBe(`saga.svc.${e.name}`);
    }
    const statusOf = (s: typeof before) => s.endpoints.find((e) => e.name === 'status') as Record<string, number | string>;
    const b = statusOf(before);
    await svc('status', { v: 1, sagaId: 'order-42' });
    await svc('status', { v: 1, sagaId: 'no-such-saga' });
    const a = statusOf(await stats());
    expect(a.num_requests).toBe((b.num_requests as number) + 2);
    expect(a.num_errors).toBe((b.num_errors as number) + 1);
    expect(a.last_error).toMatch(/^SAGA_NOT_FOUND: /);
    expect(a.processing_time as number).toBeGreaterThan(b.processing_time as number);
    expect(a.average_processing_time).toBe(Math.round((a.processing_time as number) / (a.num_requests as number)));
  });

  it('two coordinators in the queue group: both answer discovery, each request is served once', async () => {
    const rt2 = createRuntime({ transport: natsTransport(coordNc), store: jetstreamSagaStore(coordNc, { bucketPrefix: 'svc_raw' }), sagas: [orderV2] });
    const second = await serveCoordinator(coordNc, rt2);
    try {
      const pings = await gather('$SRV.PING.scatter-saga');
      expect(pings.map((p) => p.id).sort()).toEqual([service.id, second.id].sort());
      const served = () => [service, second].reduce((n, s) => n + (s.stats().endpoints.find((e) => e.name === 'status')?.num_requests ?? 0), 0);
      const before = served();
      for (let i = 0; i < 10; i++) expect((await svc('status', { v: 1, sagaId: 'order-42' })).body.ok).toBe(true);
      expect(served() - before).toBe(10);
    } finally {
      await second.stop();
      await rt2.close();
    }
  });
});

describe('bad input', () => {
  const cases: [string, string, unknown, string, RegExp, Record<string, string>?][] = [
    ['a body that is not JSON', 'status', 'not json', 'PROTOCOL_ERROR', /not valid UTF-8 JSON/],
    ['an empty body', 'dead-letters', '', 'PROTOCOL_ERROR', /empty/],
    ['invalid UTF-8', 'status', new Uint8Array([0x7b, 0xff, 0xfe, 0x7d]), 'PROTOCOL_ERROR', /UTF-8/],
    ['an array', 'list', [1, 2], 'PROTOCOL_ERROR', /JSON object/],
    ['no protocol version', 'status', { sagaId: 'x' }, 'PROTOCOL_ERROR', /'v'/],
    ['protocol version 2 in the body', 'status', { v: 2, sagaId: 'x' }, 'PROTOCOL_ERROR', /version 2/],
    ['protocol version 2 in the header', 'status', { v: 1, sagaId: 'x' }, 'PROTOCOL_ERROR', /Saga-Protocol/, { 'Saga-Protocol': '2' }],
    ['protocol version 2 in a lower-case header', 'status', { v: 1, sagaId: 'x' }, 'PROTOCOL_ERROR', /Saga-Protocol/, { 'saga-protocol': '2' }],
    ['a misspelt field', 'start', { v: 1, saga: 'order', input: {}, sagaID: 'x' }, 'PROTOCOL_ERROR', /unknown field 'sagaID'/],
    ['a saga name that is not a string', 'start', { v: 1, saga: 7, input: {} }, 'PROTOCOL_ERROR', /'saga'/],
    ['an unknown saga', 'start', { v: 1, saga: 'nope', input: {} }, 'UNKNOWN_SAGA', /no saga 'nope'.*'order'/],
    ['an unknown version', 'start', { v: 1, saga: 'order', version: 9, input: {} }, 'UNKNOWN_SAGA', /versions 1, 2, not 9/],
    ['a fractional version', 'start', { v: 1, saga: 'order', version: 1.5, input: {} }, 'PROTOCOL_ERROR', /'version'/],
    ['timeoutMs without wait', 'start', { v: 1, saga: 'order', input: {}, timeoutMs: 10 }, 'PROTOCOL_ERROR', /wait/],
    ['wait that is not a boolean', 'start', { v: 1, saga: 'order', input: {}, wait: 'yes' }, 'PROTOCOL_ERROR', /'wait'/],
    ['a saga whose worker nobody serves', 'start', { v: 1, saga: 'orphan', input: {} }, 'WORKER_NOT_HOSTED', /'nobody'/],
    ['a negative timeout', 'outcome', { v: 1, sagaId: 'x', timeoutMs: -1 }, 'PROTOCOL_ERROR', /'timeoutMs'/],
    ['an empty saga id', 'status', { v: 1, sagaId: '' }, 'PROTOCOL_ERROR', /'sagaId'/],
    ['no saga id', 'retry', { v: 1 }, 'PROTOCOL_ERROR', /'sagaId'/],
    ['an unknown saga id', 'outcome', { v: 1, sagaId: 'never-started' }, 'SAGA_NOT_FOUND', /never-started/],
    ['resolve of an unknown saga', 'resolve', { v: 1, sagaId: 'never-started' }, 'SAGA_NOT_FOUND', /never-started/],
    ['a note that is not a string', 'resolve', { v: 1, sagaId: 'x', note: 5 }, 'PROTOCOL_ERROR', /'note'/],
    ['a review token that is not a string', 'resolve', { v: 1, sagaId: 'x', reviewed: 5 }, 'PROTOCOL_ERROR', /'reviewed' must be the 'review' token/],
    ['a review token that is not one', 'resolve', { v: 1, sagaId: 'x', reviewed: 'looked' }, 'PROTOCOL_ERROR', /'reviewed' must be the 'review' token/],
    ['force that is not a boolean', 'resolve', { v: 1, sagaId: 'x', force: 'yes' }, 'PROTOCOL_ERROR', /'force' must be true or false/],
    ['a fenceTimeoutMs of 0', 'resolve', { v: 1, sagaId: 'x', fenceTimeoutMs: 0 }, 'PROTOCOL_ERROR', /'fenceTimeoutMs' must be a whole number/],
    ['a fenceTimeoutMs not below timeoutMs', 'resolve', { v: 1, sagaId: 'x', fenceTimeoutMs: 1_000, timeoutMs: 1_000 }, 'PROTOCOL_ERROR', /'fenceTimeoutMs'.*less than 'timeoutMs' \(1000/],
    ['a status a list cannot show', 'list', { v: 1, status: 'committed' }, 'PROTOCOL_ERROR', /finished sagas are not listed/],
    ['a limit of 0', 'list', { v: 1, limit: 0 }, 'PROTOCOL_ERROR', /'limit'/],
    ['a body over the limit', 'start', { v: 1, saga: 'order', input: { pad: 'x'.repeat(MAX) } }, 'PAYLOAD_TOO_LARGE', /over this service's limit of 8192/],
  ];

  it.each(cases)('%s gets a typed error reply and a warn log line', async (_what, endpoint, body, code, message, hdrs) => {
    const from = logs.length;
    const r = await svc(endpoint, body, hdrs);
    expectError(r, code, message);
    expect(logs.slice(from)).toContainEqual(expect.objectContaining({ level: 40, endpoint, code, msg: 'refused a service request' }));
  });

  it('a message without a reply subject is dropped with a log line, and the service keeps serving', async () => {
    const from = logs.length;
    nc.publish('saga.svc.start', JSON.stringify({ v: 1, saga: 'order', input: { qty: 1, card: 'ok' } }));
    await nc.flush();
    await new Promise((r) => setTimeout(r, 100));
    expect(logs.slice(from)).toContainEqual(expect.objectContaining({ level: 40, endpoint: 'start', msg: 'dropped a service message without a reply subject' }));
    const r = await svc('start', { v: 1, saga: 'order', input: { qty: 1, card: 'ok' }, wait: true });
    expect(r.body.result.outcome.status).toBe('committed');
  });
});
