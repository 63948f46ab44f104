/**
 * Wire protocol v1 conformance: a client that speaks only raw NATS (connect, headers,
 * hand-written JSON; no scatter-saga client code) against a worker host, as a Go or
 * Python client written from docs/protocol.md would. Then every kind of bad input:
 * an error reply with a code, a warn log line, and a host that keeps serving.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, headers } from '@nats-io/transport-node';
import type { Msg, MsgHdrs, NatsConnection } from '@nats-io/transport-node';
import pino from 'pino';
import { defineWorker, SagaError, TerminalError } from '../../src/index.ts';
import { serveWorkers } from '../../src/nats.ts';
import type { WorkerServer } from '../../src/nats.ts';
import { startNatsServer } from '../helpers/nats-server.ts';
import type { NatsServer } from '../helpers/nats-server.ts';

let server: NatsServer;
let hostNc: NatsConnection;
let nc: NatsConnection;
let host: WorkerServer;
const logs: Record<string, unknown>[] = [];
const calls = { do: [] as unknown[], compensate: [] as unknown[] };
const MAX = 4096;

beforeAll(async () => {
  server = await startNatsServer();
  hostNc = await connect({ servers: server.url });
  nc = await connect({ servers: server.url });
  const logger = pino({ level: 'info' }, { write: (s: string) => void logs.push(JSON.parse(s) as Record<string, unknown>) });
  const echo = defineWorker({
    name: 'echo',
    do: async (input: { fail?: 'terminal' | 'retryable'; slowFailMs?: number; bigint?: boolean; hostCode?: string }, ctx) => {
      calls.do.push(input);
      if (input?.fail === 'terminal') throw new TerminalError('no such thing');
      if (input?.fail === 'retryable') throw new Error('flaky');
      if (input?.slowFailMs !== undefined) {
        await new Promise((r) => setTimeout(r, input.slowFailMs));
        throw new TerminalError('failed after a while');
      }
      if (input?.hostCode !== undefined) throw new SagaError(input.hostCode as 'NO_RESPONDERS', 'user code throwing a host code');
      if (input?.bigint === true) return { big: 10n } as unknown as { echoed: unknown; key: string };
      return { echoed: input, key: ctx.idempotencyKey };
    },
    compensate: (input: unknown) => void calls.compensate.push(input),
  });
  host = await serveWorkers(hostNc, [echo], { logger, maxPayload: MAX, signals: [] });
});

afterAll(async () => {
  await host?.drain();
  await nc?.close();
  await hostNc?.close();
  await server?.stop();
});

let n = 0;
const hexKey = () => (++n).toString(16).padStart(40, 'a');

interface Wire {
  subject: string;
  hdrs: Record<string, string>;
  body: Record<string, unknown>;
}

/** A well-formed request, written the way docs/protocol.md describes it. */
function wire(op: 'do' | 'compensate' | 'fence', key: string, input: unknown, extra: Record<string, unknown> = {}): Wire {
  const sagaId = `s-${key.slice(-6)}`;
  const deadline = Date.now() + 10_000;
  return {
    subject: `saga.worker.echo.${op}`,
    hdrs: { 'Saga-Protocol': '1', 'Saga-Id': sagaId, 'Saga-Step': 'step1', 'Idempotency-Key': key, 'Saga-Attempt': '1', 'Saga-Deadline': String(deadline) },
    body: { v: 1, op, worker: 'echo', sagaId, stepId: 'step1', key, attempt: 1, deadline, input, ...extra },
  };
}

function toHeaders(h: Record<string, string>): MsgHdrs {
  const out = headers();
  for (const [k, v] of Object.entries(h)) out.set(k, v);
  return out;
}

async function send(w: Wire | { subject: string; hdrs: Record<string, string>; raw: string | Uint8Array }): Promise<{ reply: Record<string, unknown>; msg: Msg }> {
  const data = 'raw' in w ? w.raw : JSON.stringify(w.body);
  const msg = await nc.request(w.subject, data, { timeout: 5_000, headers: toHeaders(w.hdrs) });
  return { reply: JSON.parse(new TextDecoder().decode(msg.data)) as Record<string, unknown>, msg };
}

describe('conformance: raw NATS client', () => {
  it('ping answers which worker and protocol version are served', async () => {
    const msg = await nc.request('saga.worker.echo.ping', '', { timeout: 2_000 });
    expect(msg.json()).toEqual({ ok: true, result: { worker: 'echo', v: 1 } });
  });

  it('do runs once; a repeated do (any attempt) gets the stored result', async () => {
    const key = hexKey();
    const before = calls.do.length;
    const first = await send(wire('do', key, { a: 1 }));
    expect(first.reply).toEqual({ ok: true, result: { echoed: { a: 1 }, key } });
    expect(first.msg.headers?.get('Saga-Error-Code') ?? '').toBe('');
    const again = wire('do', key, { a: 1 }, { attempt: 2 });
    again.hdrs['Saga-Attempt'] = '2';
    expect((await send(again)).reply).toEqual(first.reply);
    expect(calls.do.length - before).toBe(1);
  });

  it('compensate undoes once, is idempotent, and a later do is refused with COMPENSATED', async () => {
    const key = hexKey();
    await send(wire('do', key, { b: 2 }));
    const before = calls.compensate.length;
    expect((await send(wire('compensate', key, { b: 2 }, { result: { echoed: { b: 2 } } }))).reply).toEqual({ ok: true });
    expect((await send(wire('compensate', key, { b: 2 }))).reply).toEqual({ ok: true });
    expect(calls.compensate.length - before).toBe(1);
    const late = await send(wire('do', key, { b: 2 }));
    expect(late.reply).toMatchObject({ ok: false, error: { code: 'COMPENSATED', retryable: false } });
    expect(late.msg.headers?.get('Saga-Error-Code')).toBe('COMPENSATED');
  });

  it('fence: waits for nothing on an untouched key, answers what a do left and which fence came first, and every later do is refused', async () => {
    const fresh = hexKey();
    expect((await send(wire('fence', fresh, null, { fence: 'op-1' }))).reply).toEqual({ ok: true, result: { by: 'op-1', was: 'none' } });
    expect((await send(wire('do', fresh, null))).reply).toMatchObject({ ok: false, error: { code: 'COMPENSATED' } });
    const done = hexKey();
    await send(wire('do', done, { d: 4 }));
    expect((await send(wire('fence', done, { d: 4 }, { fence: 'op-2' }))).reply).toEqual({ ok: true, result: { by: 'op-2', was: 'applied' } });
    expect((await send(wire('fence', done, { d: 4 }, { fence: 'op-3' }))).reply).toEqual({ ok: true, result: { by: 'op-2', was: 'applied' } });
    const again = wire('do', done, { d: 4 }, { attempt: 2 });
    again.hdrs['Saga-Attempt'] = '2';
    expect((await send(again)).reply).toMatchObject({ ok: false, error: { code: 'COMPENSATED' } });
    // Without its fence id: a PROTOCOL_ERROR naming the field.
    expect((await send(wire('fence', hexKey(), null))).reply).toMatchObject({ ok: false, error: { code: 'PROTOCOL_ERROR', message: expect.stringContaining("'fence'") } });
  });

  it('a compensate that overtakes its do leaves a tombstone: the do never runs', async () => {
    const key = hexKey();
    const before = calls.do.length;
    expect((await send(wire('compensate', key, { c: 3 }))).reply).toEqual({ ok: true });
    expect((await send(wire('do', key, { c: 3 }))).reply).toMatchObject({ ok: false, error: { code: 'COMPENSATED' } });
    expect(calls.do.length).toBe(before);
  });

  it('worker errors come back with their kind: TerminalError is not retryable, other errors are', async () => {
    expect((await send(wire('do', hexKey(), { fail: 'terminal' }))).reply).toEqual({ ok: false, error: { code: 'WORKER_ERROR', message: 'no such thing', retryable: false } });
    expect((await send(wire('do', hexKey(), { fail: 'retryable' }))).reply).toEqual({ ok: false, error: { code: 'WORKER_ERROR', message: 'flaky', retryable: true } });
  });

  it('header names are matched case-insensitively and a valid traceparent header is accepted', async () => {
    const key = hexKey();
    const w = wire('do', key, { d: 4 });
    w.hdrs = Object.fromEntries(Object.entries(w.hdrs).map(([k, v]) => [k.toLowerCase(), v]));
    w.hdrs.traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
    expect((await send(w)).reply).toEqual({ ok: true, result: { echoed: { d: 4 }, key } });
  });
});

describe('the points docs/protocol.md makes exact', () => {
  it('a body that starts with a UTF-8 byte order mark is read as if it had none', async () => {
    const key = hexKey();
    const w = wire('do', key, { bom: 1 });
    const bytes = new TextEncoder().encode(JSON.stringify(w.body));
    const raw = new Uint8Array([0xef, 0xbb, 0xbf, ...bytes]);
    expect((await send({ ...w, raw })).reply).toEqual({ ok: true, result: { echoed: { bom: 1 }, key } });
  });

  it('lengths count UTF-8 bytes: a 200-character saga id of 3-byte characters is too long', async () => {
    const w = wire('do', hexKey(), {});
    const long = '€'.repeat(86); // 86 UTF-16 code units, 258 bytes
    w.body.sagaId = long;
    w.hdrs['Saga-Id'] = long;
    const { reply } = await send(w);
    expect(reply).toMatchObject({ ok: false, error: { code: 'PROTOCOL_ERROR', message: expect.stringContaining("'sagaId' must be a non-empty string of at most 256 bytes") } });
  });

  it('integers are whole numbers up to 2^53-1', async () => {
    for (const attempt of [1.5, 2 ** 53]) {
      const w = wire('do', hexKey(), {});
      w.body.attempt = attempt;
      w.hdrs['Saga-Attempt'] = String(attempt);
      expect((await send(w)).reply).toMatchObject({ ok: false, error: { code: 'PROTOCOL_ERROR', message: expect.stringContaining("'attempt' must be a whole number from 1 to 9007199254740991") } });
    }
  });

  it('an invalid traceparent in the body is ignored, not an error', async () => {
    const key = hexKey();
    expect((await send(wire('do', key, { t: 1 }, { traceparent: 'not-a-trace' }))).reply).toEqual({ ok: true, result: { echoed: { t: 1 }, key } });
  });

  it('a result that cannot be serialized: RESULT_NOT_SERIALIZABLE, again for a repeated do, and compensate undoes it', async () => {
    const key = hexKey();
    const first = await send(wire('do', key, { bigint: true }));
    expect(first.reply).toMatchObject({ ok: false, error: { code: 'RESULT_NOT_SERIALIZABLE', retryable: false } });
    const retry = wire('do', key, { bigint: true }, { attempt: 2 });
    retry.hdrs['Saga-Attempt'] = '2';
    const again = await send(retry);
    expect(again.reply).toMatchObject({ ok: false, error: { code: 'RESULT_NOT_SERIALIZABLE' } });
    const before = calls.compensate.length;
    expect((await send(wire('compensate', key, { bigint: true }))).reply).toEqual({ ok: true });
    expect(calls.compensate.length).toBe(before + 1);
  });

  it('a compensate that arrives while do runs waits for it; when the do fails, it answers ok without running compensate', async () => {
    const key = hexKey();
    const before = calls.compensate.length;
    const doing = send(wire('do', key, { slowFailMs: 300 }));
    await new Promise((r) => setTimeout(r, 50));
    const compensating = send(wire('compensate', key, { slowFailMs: 300 }));
    expect((await doing).reply).toMatchObject({ ok: false, error: { code: 'WORKER_ERROR', retryable: false } });
    expect((await compensating).reply).toEqual({ ok: true });
    expect(calls.compensate.length).toBe(before);
  });

  it('worker code throwing a host code still answers WORKER_ERROR, with that code in detail', async () => {
    const { reply } = await send(wire('do', hexKey(), { hostCode: 'NO_RESPONDERS' }));
    expect(reply).toEqual({ ok: false, error: { code: 'WORKER_ERROR', message: 'user code throwing a host code', retryable: false, detail: { code: 'NO_RESPONDERS' } } });
  });
});

describe('bad input over the wire', () => {
  const good = () => wire('do', hexKey(), { ok: 1 });
  const cases: [string, () => Wire | { subject: string; hdrs: Record<string, string>; raw: string | Uint8Array }, string][] = [
    ['malformed JSON', () => ({ ...good(), raw: '{"v":1,' }), 'PROTOCOL_ERROR'],
    ['a body that is not UTF-8', () => ({ ...good(), raw: new Uint8Array([0xff, 0xfe, 0x7b]) }), 'PROTOCOL_ERROR'],
    ['a JSON body that is not an object', () => ({ ...good(), raw: '[1,2,3]' }), 'PROTOCOL_ERROR'],
    ['a missing Saga-Protocol header', () => { const w = good(); delete w.hdrs['Saga-Protocol']; return w; }, 'PROTOCOL_ERROR'],
    ['a missing Idempotency-Key header', () => { const w = good(); delete w.hdrs['Idempotency-Key']; return w; }, 'PROTOCOL_ERROR'],
    ['a Saga-Id header that disagrees with the body', () => { const w = good(); w.hdrs['Saga-Id'] = 'someone-else'; return w; }, 'PROTOCOL_ERROR'],
    ['a non-numeric Saga-Attempt header', () => { const w = good(); w.hdrs['Saga-Attempt'] = 'one'; return w; }, 'PROTOCOL_ERROR'],
    ['protocol version 2 in the header', () => { const w = good(); w.hdrs['Saga-Protocol'] = '2'; return w; }, 'PROTOCOL_ERROR'],
    ['protocol version 2 in the body', () => { const w = good(); w.body.v = 2; return w; }, 'PROTOCOL_ERROR'],
    ['a body field of the wrong type (attempt 0)', () => { const w = good(); w.body.attempt = 0; w.hdrs['Saga-Attempt'] = '0'; return w; }, 'PROTOCOL_ERROR'],
    ['a body op that disagrees with the subject', () => { const w = good(); w.body.op = 'compensate'; return w; }, 'PROTOCOL_ERROR'],
    ['an unknown operation subject', () => ({ ...good(), subject: 'saga.worker.echo.frobnicate' }), 'PROTOCOL_ERROR'],
    ['a body naming a worker this host does not serve', () => { const w = good(); w.body.worker = 'hotels'; return w; }, 'UNKNOWN_WORKER'],
    ['a payload over the host limit', () => { const w = good(); w.body.input = { blob: 'x'.repeat(MAX) }; return w; }, 'PAYLOAD_TOO_LARGE'],
  ];

  for (const [what, make, code] of cases) {
    it(`${what}: error reply ${code}, a warn line, and the host keeps serving`, async () => {
      const warnsBefore = logs.filter((l) => l.level === 40).length;
      const callsBefore = calls.do.length;
      const { reply, msg } = await send(make());
      expect(reply).toMatchObject({ ok: false, error: { code, retryable: false, message: expect.any(String) } });
      expect(msg.headers?.get('Saga-Error-Code')).toBe(code);
      const warns = logs.filter((l) => l.level === 40).slice(warnsBefore);
      expect(warns).toEqual([expect.objectContaining({ code, msg: 'rejected a request' })]);
      expect(calls.do.length).toBe(callsBefore); // no worker code ran
      const after = good();
      expect((await send(after)).reply).toMatchObject({ ok: true });
    });
  }

  it('an idempotency key reused with a different input: KEY_CONFLICT, a warn line, the first outcome untouched', async () => {
    const key = hexKey();
    const first = await send(wire('do', key, { amount: 10 }));
    const warnsBefore = logs.filter((l) => l.level === 40).length;
    const { reply } = await send(wire('do', key, { amount: 99 }));
    expect(reply).toMatchObject({ ok: false, error: { code: 'KEY_CONFLICT', retryable: false } });
    expect(logs.filter((l) => l.level === 40).slice(warnsBefore)).toEqual([expect.objectContaining({ code: 'KEY_CONFLICT' })]);
    expect((await send(wire('do', key, { amount: 10 }))).reply).toEqual(first.reply);
  });

  it('a request to a worker nobody serves gets the server no-responders status', async () => {
    const w = good();
    await expect(nc.request('saga.worker.nobody.do', JSON.stringify(w.body), { timeout: 2_000, headers: toHeaders(w.hdrs) })).rejects.toSatisfy(
      (e: unknown) => (e as { isNoResponders?: () => boolean }).isNoResponders?.() === true,
    );
  });

  it('a message without a reply subject is dropped with a warn line', async () => {
    const warnsBefore = logs.filter((l) => l.level === 40).length;
    const w = good();
    nc.publish(w.subject, JSON.stringify(w.body), { headers: toHeaders(w.hdrs) });
    await nc.flush();
    for (let i = 0; i < 50 && logs.filter((l) => l.level === 40).length === warnsBefore; i++) await new Promise((r) => setTimeout(r, 10));
    expect(logs.filter((l) => l.level === 40).slice(warnsBefore)).toEqual([expect.objectContaining({ msg: 'dropped a message without a reply subject' })]);
  });
});
