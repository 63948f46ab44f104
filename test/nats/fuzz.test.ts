/**
 * Fuzz: 10,000 random messages (valid requests, mutated headers and bodies, random
 * bytes, wrong subjects, oversize payloads, messages without a reply subject) at a
 * live worker host in its own process. The host never crashes; every request on a
 * served subject gets a well-formed reply; every rejected one has exactly one warn
 * line; only what the protocol says is dropped (no reply subject) or gets the
 * server's no-responders (a worker nobody serves). A failure prints its seed and path.
 */
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { connect, headers } from '@nats-io/transport-node';
import type { NatsConnection } from '@nats-io/transport-node';
import { spawnHost, startNatsServer } from '../helpers/nats-server.ts';
import type { ChildHost, NatsServer } from '../helpers/nats-server.ts';

const FIXTURE = fileURLToPath(new URL('../fixtures/nats-worker-host.ts', import.meta.url));
const MAX_PAYLOAD = 8192;
const RUNS = 100;
const PER_RUN = 100;

let server: NatsServer;
let nc: NatsConnection;
let host: ChildHost;

beforeAll(async () => {
  server = await startNatsServer();
  nc = await connect({ servers: server.url, noAsyncTraces: true });
  host = await spawnHost(FIXTURE, { NATS_URL: server.url, MAX_PAYLOAD: String(MAX_PAYLOAD), LOG_LEVEL: 'warn' });
});

afterAll(async () => {
  await host?.kill('SIGKILL');
  await nc?.close();
  await server?.stop();
});

const SERVED = ['flights', 'hotels', 'cars', 'slow'];
const HEADERS = ['Saga-Protocol', 'Saga-Id', 'Saga-Step', 'Idempotency-Key', 'Saga-Attempt', 'Saga-Deadline', 'Traceparent'];
const BAD_INPUT = new Set(['PROTOCOL_ERROR', 'UNKNOWN_WORKER', 'PAYLOAD_TOO_LARGE', 'KEY_CONFLICT']);
const ALLOWED = new Set([...BAD_INPUT, 'COMPENSATED', 'WORKER_ERROR', 'COMPENSATION_FAILED']);

type Mutation =
  | { kind: 'none' }
  | { kind: 'dropHeader'; name: string }
  | { kind: 'setHeader'; name: string; value: string }
  | { kind: 'lowercaseHeaders' }
  | { kind: 'dropField'; field: string }
  | { kind: 'setField'; field: string; value: unknown }
  | { kind: 'rawBody'; bytes: Uint8Array }
  | { kind: 'jsonBody'; value: unknown }
  | { kind: 'truncate'; at: number }
  | { kind: 'oversize' }
  | { kind: 'bodyOp'; op: string }
  | { kind: 'bodyWorker'; worker: string };

interface Message {
  worker: string;
  op: string;
  /** false: published without a reply subject. */
  reply: boolean;
  key: string;
  attempt: number;
  input: unknown;
  mutations: Mutation[];
}

const hex = fc.string({ unit: fc.constantFrom(...'0123456789abcdef'), minLength: 1, maxLength: 40 });
const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  { weight: 6, arbitrary: fc.constant<Mutation>({ kind: 'none' }) },
  { weight: 1, arbitrary: fc.constantFrom(...HEADERS).map((name): Mutation => ({ kind: 'dropHeader', name })) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('setHeader' as const), name: fc.constantFrom(...HEADERS), value: fc.string({ maxLength: 20 }) }) },
  { weight: 1, arbitrary: fc.constant<Mutation>({ kind: 'lowercaseHeaders' }) },
  { weight: 1, arbitrary: fc.constantFrom('v', 'op', 'worker', 'sagaId', 'stepId', 'key', 'attempt', 'deadline', 'input').map((field): Mutation => ({ kind: 'dropField', field })) },
  {
    weight: 1,
    arbitrary: fc.record({ kind: fc.constant('setField' as const), field: fc.constantFrom('v', 'attempt', 'deadline', 'key', 'sagaId', 'stepId', 'result', 'traceparent'), value: fc.jsonValue({ maxDepth: 2 }) }),
  },
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 64 }).map((bytes): Mutation => ({ kind: 'rawBody', bytes })) },
  { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 3 }).map((value): Mutation => ({ kind: 'jsonBody', value })) },
  { weight: 1, arbitrary: fc.nat({ max: 200 }).map((at): Mutation => ({ kind: 'truncate', at })) },
  { weight: 1, arbitrary: fc.constant<Mutation>({ kind: 'oversize' }) },
  { weight: 1, arbitrary: fc.constantFrom('do', 'compensate', 'ping', 'DO', '').map((op): Mutation => ({ kind: 'bodyOp', op })) },
  { weight: 1, arbitrary: fc.constantFrom('flights', 'hotels', 'nobody', 'bad name!').map((worker): Mutation => ({ kind: 'bodyWorker', worker })) },
);

const message: fc.Arbitrary<Message> = fc.record({
  worker: fc.oneof({ weight: 9, arbitrary: fc.constantFrom(...SERVED) }, { weight: 1, arbitrary: fc.constant('nobody') }),
  op: fc.oneof({ weight: 9, arbitrary: fc.constantFrom('do', 'compensate') }, { weight: 1, arbitrary: fc.constantFrom('ping', 'bogus') }),
  reply: fc.oneof({ weight: 19, arbitrary: fc.constant(true) }, { weight: 1, arbitrary: fc.constant(false) }),
  // A small key space, so duplicates, compensate-before-do and key conflicts happen.
  key: fc.oneof(hex, fc.constantFrom('k1', 'k2', 'k3', 'a.b', 'with space')),
  attempt: fc.integer({ min: 1, max: 3 }),
  input: fc.oneof(fc.jsonValue({ maxDepth: 3 }), fc.record({ ms: fc.nat({ max: 5 }) })),
  mutations: fc.array(mutation, { maxLength: 2 }),
});

function encode(m: Message): { subject: string; data: Uint8Array; hdrs: Record<string, string> } {
  const sagaId = `fuzz-${m.key}`;
  const deadline = Date.now() + 10_000;
  const body: Record<string, unknown> = { v: 1, op: m.op, worker: m.worker, sagaId, stepId: 'step', key: m.key, attempt: m.attempt, deadline, input: m.input };
  let hdrs: Record<string, string> = {
    'Saga-Protocol': '1',
    'Saga-Id': sagaId,
    'Saga-Step': 'step',
    'Idempotency-Key': m.key,
    'Saga-Attempt': String(m.attempt),
    'Saga-Deadline': String(deadline),
  };
  let raw: Uint8Array | undefined;
  let json: unknown = body;
  let truncateAt: number | undefined;
  for (const mu of m.mutations) {
    switch (mu.kind) {
      case 'none':
        break;
      case 'dropHeader':
        delete hdrs[mu.name];
        break;
      case 'setHeader':
        hdrs[mu.name] = mu.value;
        break;
      case 'lowercaseHeaders':
        hdrs = Object.fromEntries(Object.entries(hdrs).map(([k, v]) => [k.toLowerCase(), v]));
        break;
      case 'dropField':
        delete body[mu.field];
        break;
      case 'setField':
        body[mu.field] = mu.value;
        break;
      case 'rawBody':
        raw = mu.bytes;
        break;
      case 'jsonBody':
        json = mu.value;
        break;
      case 'truncate':
        truncateAt = mu.at;
        break;
      case 'oversize':
        body.input = { blob: 'x'.repeat(MAX_PAYLOAD) };
        break;
      case 'bodyOp':
        body.op = mu.op;
        break;
      case 'bodyWorker':
        body.worker = mu.worker;
        break;
    }
  }
  let data = raw ?? new TextEncoder().encode(JSON.stringify(json) ?? 'null');
  if (truncateAt !== undefined) data = data.subarray(0, truncateAt);
  // Header values cannot carry CR/LF on the wire; the client would refuse to send them.
  for (const k of Object.keys(hdrs)) hdrs[k] = (hdrs[k] ?? '').replace(/[\r\n]/g, ' ');
  return { subject: `saga.worker.${m.worker}.${m.op}`, data, hdrs };
}

const isUnmutated = (m: Message) => m.mutations.every((mu) => mu.kind === 'none' || mu.kind === 'lowercaseHeaders');

describe('fuzz: random messages at a live worker host', () => {
  it(`answers ${RUNS * PER_RUN} random messages as the protocol says and never crashes`, async () => {
    const counts = { replies: 0, rejected: 0, ok: 0, noResponders: 0, dropped: 0, unheard: 0 };
    await fc.assert(
      fc.asyncProperty(fc.array(message, { minLength: PER_RUN, maxLength: PER_RUN }), async (batch) => {
        await Promise.all(
          batch.map(async (m) => {
            const { subject, data, hdrs } = encode(m);
            const h = headers();
            for (const [k, v] of Object.entries(hdrs)) h.set(k, v);
            if (!m.reply) {
              nc.publish(subject, data, { headers: h });
              if (m.worker === 'nobody') counts.unheard++;
              else counts.dropped++;
              return;
            }
            let reply: unknown;
            try {
              const msg = await nc.request(subject, data, { headers: h, timeout: 5_000 });
              reply = JSON.parse(new TextDecoder().decode(msg.data));
            } catch (error) {
              if (m.worker === 'nobody' && (error as { isNoResponders?: () => boolean }).isNoResponders?.()) {
                counts.noResponders++;
                return;
              }
              throw new Error(`no reply to ${subject}: ${(error as Error).message}`);
            }
            expect(m.worker, 'only served workers answer').not.toBe('nobody');
            counts.replies++;
            const r = reply as { ok?: unknown; result?: unknown; error?: { code?: unknown; message?: unknown; retryable?: unknown } };
            if (m.op === 'ping') {
              expect(r).toEqual({ ok: true, result: { worker: m.worker, v: 1 } });
              return;
            }
            if (r.ok === true) {
              counts.ok++;
              return;
            }
            expect(r.ok).toBe(false);
            expect(typeof r.error?.message).toBe('string');
            expect(typeof r.error?.retryable).toBe('boolean');
            expect(ALLOWED, `unexpected error code ${String(r.error?.code)}: ${String(r.error?.message)}`).toContain(r.error?.code);
            if (BAD_INPUT.has(r.error?.code as string)) counts.rejected++;
            if (isUnmutated(m) && m.op !== 'bogus') expect(['PROTOCOL_ERROR', 'UNKNOWN_WORKER', 'PAYLOAD_TOO_LARGE']).not.toContain(r.error?.code);
          }),
        );
      }),
      { numRuns: RUNS },
    );
    const sent = counts.replies + counts.noResponders + counts.dropped + counts.unheard;
    expect(sent).toBe(RUNS * PER_RUN);
    expect(counts.rejected).toBeGreaterThan(500);
    expect(counts.ok).toBeGreaterThan(500);
    expect(counts.noResponders).toBeGreaterThan(0);
    expect(counts.dropped).toBeGreaterThan(0);

    // Still alive, still serving.
    expect(host.child.exitCode).toBeNull();
    expect(host.child.signalCode).toBeNull();
    const ping = await nc.request('saga.worker.flights.ping', '', { timeout: 2_000 });
    expect(ping.json()).toEqual({ ok: true, result: { worker: 'flights', v: 1 } });

    // One warn line per rejected request, one per dropped message.
    const warns = () => host.lines.filter((l) => l.level === 40);
    for (let i = 0; i < 100 && warns().length < counts.rejected + counts.dropped; i++) await new Promise((r) => setTimeout(r, 20));
    expect(warns().filter((l) => l.msg === 'rejected a request')).toHaveLength(counts.rejected);
    expect(warns().filter((l) => l.msg === 'dropped a message without a reply subject')).toHaveLength(counts.dropped);
    expect(host.lines.filter((l) => typeof l.level === 'number' && l.level >= 50)).toEqual([]);
  }, 120_000);
});
