/**
 * The coordinator service protocol without NATS: request bodies checked field by field,
 * event subjects, the micro stats counter; and the runtime calls the service stands on
 * (start resolving before the outcome, list) with the in-memory transport and store.
 */
import { describe, expect, it } from 'vitest';
import { createRuntime, defineSaga, defineWorker, InvalidOptionError, TransportError } from '../../src/index.ts';
import { EndpointCounter, microResponses, verbSubjects } from '../../src/service/micro.ts';
import { DEFAULT_LIST_LIMIT, DEFAULT_SERVICE_WAIT_MS, eventSubject, parseEvent, parseServiceRequest } from '../../src/service/protocol.ts';

describe('parseServiceRequest', () => {
  it('fills in the defaults', () => {
    expect(parseServiceRequest('start', { v: 1, saga: 'trip' })).toEqual({ saga: 'trip', version: undefined, input: null, sagaId: undefined, wait: false, timeoutMs: DEFAULT_SERVICE_WAIT_MS });
    expect(parseServiceRequest('start', { v: 1, saga: 'trip', version: 3, input: { a: 1 }, sagaId: 'x', wait: true, timeoutMs: 0 })).toEqual({ saga: 'trip', version: 3, input: { a: 1 }, sagaId: 'x', wait: true, timeoutMs: 0 });
    expect(parseServiceRequest('list', { v: 1 })).toEqual({ status: undefined, limit: DEFAULT_LIST_LIMIT });
    // A resolve's fences wait half of timeoutMs by default, at most 10 s.
    expect(parseServiceRequest('resolve', { v: 1, sagaId: 's', note: 'done by hand' })).toEqual({ sagaId: 's', note: 'done by hand', reviewed: undefined, force: false, fenceTimeoutMs: 10_000, timeoutMs: DEFAULT_SERVICE_WAIT_MS });
    expect(parseServiceRequest('resolve', { v: 1, sagaId: 's', timeoutMs: 5_000 })).toMatchObject({ fenceTimeoutMs: 2_500, timeoutMs: 5_000 });
    const token = Buffer.from(JSON.stringify([['s', 'f-1']])).toString('base64url');
    expect(parseServiceRequest('resolve', { v: 1, sagaId: 's', reviewed: token, force: false, fenceTimeoutMs: 4_999, timeoutMs: 5_000 })).toEqual({ sagaId: 's', note: undefined, reviewed: token, force: false, fenceTimeoutMs: 4_999, timeoutMs: 5_000 });
    // A forced resolve fences nothing: it may wait for nothing.
    expect(parseServiceRequest('resolve', { v: 1, sagaId: 's', force: true, timeoutMs: 0 })).toMatchObject({ force: true, timeoutMs: 0 });
    expect(parseServiceRequest('dead-letters', { v: 1 })).toEqual({});
  });

  it.each([
    ['status', null, /JSON object/],
    ['status', { v: '1', sagaId: 's' }, /version "1"/],
    ['status', { v: 1, sagaId: 'x'.repeat(257) }, /'sagaId'.*256 bytes/],
    ['status', { v: 1, sagaId: 's', extra: true }, /unknown field 'extra' for status \(allowed: v, sagaId\)/],
    ['start', { v: 1, saga: 'has space' }, /'saga' must be a saga name/],
    ['start', { v: 1, saga: 'trip', version: 0 }, /'version' must be a whole number from 1/],
    ['start', { v: 1, saga: 'trip', sagaId: 5 }, /'sagaId'/],
    ['outcome', { v: 1, sagaId: 's', timeoutMs: 600_001 }, /'timeoutMs' must be a whole number from 0 to 600000/],
    ['resolve', { v: 1, sagaId: 's', note: 'x'.repeat(4097) }, /'note'/],
    ['resolve', { v: 1, sagaId: 's', reviewed: '' }, /'reviewed' must be the 'review' token/],
    ['resolve', { v: 1, sagaId: 's', reviewed: Buffer.from(JSON.stringify([['s', 'x'.repeat(65_536)]])).toString('base64url') }, /'reviewed'.*at most 65536 bytes/],
    ['resolve', { v: 1, sagaId: 's', reviewed: ['s', 'f'] }, /'reviewed'/],
    ['resolve', { v: 1, sagaId: 's', force: 1 }, /'force' must be true or false, got 1/],
    ['resolve', { v: 1, sagaId: 's', fenceTimeoutMs: 2.5 }, /'fenceTimeoutMs' must be a whole number/],
    ['resolve', { v: 1, sagaId: 's', fenceTimeoutMs: '100' }, /'fenceTimeoutMs'/],
    ['resolve', { v: 1, sagaId: 's', fenceTimeoutMs: 30_000 }, /'fenceTimeoutMs'.*less than 'timeoutMs' \(30000/],
    ['resolve', { v: 1, sagaId: 's', timeoutMs: 0 }, /'timeoutMs' of a resolve must be at least 2.*"force": true/],
    ['resolve', { v: 1, sagaId: 's', fence: true }, /unknown field 'fence' for resolve \(allowed: v, sagaId, note, reviewed, force, fenceTimeoutMs, timeoutMs\)/],
    ['list', { v: 1, limit: 10_001 }, /'limit'/],
  ] as const)('%s %j is a PROTOCOL_ERROR naming what is wrong', (endpoint, body, message) => {
    let thrown: unknown;
    try {
      parseServiceRequest(endpoint, body);
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toBeInstanceOf(TransportError);
    expect(thrown).toMatchObject({ code: 'PROTOCOL_ERROR', retryable: false, message: expect.stringMatching(message) });
  });
});

describe('events and discovery', () => {
  it('a saga id is its own subject token when it can be, else b64. and its base64url', () => {
    expect(eventSubject('saga', 'order-42')).toBe('saga.svc.events.order-42');
    expect(eventSubject('a.b', 'order.42 *')).toBe(`a.b.svc.events.b64.${Buffer.from('order.42 *').toString('base64url')}`);
  });

  it('parseEvent takes events of this protocol only', () => {
    const outcome = { sagaId: 's', status: 'committed', results: {}, released: [], resolvedByOperator: [] };
    expect(parseEvent({ v: 1, type: 'outcome', sagaId: 's', saga: 't', version: 1, outcome })).toMatchObject({ type: 'outcome' });
    expect(parseEvent({ v: 2, type: 'outcome', sagaId: 's', saga: 't', version: 1, outcome })).toBeUndefined();
    expect(parseEvent({ v: 1, type: 'step', sagaId: 's', saga: 't', version: 1 })).toBeUndefined();
    expect(parseEvent('hello')).toBeUndefined();
  });

  it('the stats counter sums nanoseconds and errors; the verbs answer on three subjects', () => {
    const c = new EndpointCounter({ name: 'start', subject: 'saga.svc.start', queue_group: 'q', metadata: null });
    c.record(100n);
    c.record(201n, 'UNKNOWN_SAGA: no saga');
    expect(c.stats()).toEqual({ name: 'start', subject: 'saga.svc.start', queue_group: 'q', num_requests: 2, num_errors: 1, last_error: 'UNKNOWN_SAGA: no saga', processing_time: 301, average_processing_time: 151 });
    const r = microResponses({ name: 'svc', id: 'ID1', version: '1.0.0', metadata: {} }, 'd', new Date(0), [c]);
    expect(r.ping()).toEqual({ type: 'io.nats.micro.v1.ping_response', name: 'svc', id: 'ID1', version: '1.0.0', metadata: {} });
    expect(r.stats().started).toBe('1970-01-01T00:00:00.000Z');
    expect(verbSubjects('INFO', 'svc', 'ID1')).toEqual(['$SRV.INFO', '$SRV.INFO.svc', '$SRV.INFO.svc.ID1']);
  });
});

describe('runtime.start and runtime.list', () => {
  it('start resolves once the saga is written, before its outcome; list shows it running, then not', async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const w = defineWorker({ name: 'w', do: async () => (await gate, { ok: 1 }), compensate: () => undefined });
    const saga = defineSaga({ name: 's', version: 1, steps: { a: { worker: 'w' } } });
    const runtime = createRuntime({ sagas: [saga] }).host(w);
    expect(runtime.sagas).toEqual([saga]);
    const started = await runtime.start(saga, {}, { sagaId: 'one' });
    expect(started.sagaId).toBe('one');
    let settled = false;
    void started.outcome.then(() => (settled = true));
    await new Promise((r) => setTimeout(r, 20));
    expect(settled).toBe(false);
    expect(await runtime.list()).toEqual([expect.objectContaining({ sagaId: 'one', saga: 's', version: 1, status: 'running', owner: runtime.coordinatorId })]);
    expect(await runtime.list({ status: 'parked' })).toEqual([]);
    // A second start with the id attaches to the same saga, without waiting for it.
    const again = await runtime.start(saga, {}, { sagaId: 'one' });
    release();
    expect(await again.outcome).toEqual(await started.outcome);
    expect(await runtime.list()).toEqual([]);
    await expect(runtime.list({ status: 'done' as never })).rejects.toBeInstanceOf(InvalidOptionError);
    await runtime.close();
  });
});

describe('the graph request', () => {
  it('names a saga by id, or a definition by name and version', () => {
    expect(parseServiceRequest('graph', { v: 1, sagaId: 's-1' })).toEqual({ sagaId: 's-1' });
    expect(parseServiceRequest('graph', { v: 1, saga: 'trip' })).toEqual({ saga: 'trip', version: undefined });
    expect(parseServiceRequest('graph', { v: 1, saga: 'trip', version: 2 })).toEqual({ saga: 'trip', version: 2 });
    expect(() => parseServiceRequest('graph', { v: 1 })).toThrow(/'saga' must be a saga name .*or give 'sagaId'/);
    expect(() => parseServiceRequest('graph', { v: 1, sagaId: 's', saga: 'trip' })).toThrow(/not both/);
    expect(() => parseServiceRequest('graph', { v: 1, saga: 'trip', version: 0 })).toThrow(/'version' must be a whole number/);
    expect(() => parseServiceRequest('graph', { v: 1, saga: 'trip', steps: true })).toThrow(/unknown field 'steps'/);
    expect(() => parseServiceRequest('graph', { v: 1, sagaId: '' })).toThrow(TransportError);
  });
});
