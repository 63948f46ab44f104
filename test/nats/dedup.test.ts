/**
 * Durable dedup on JetStream KV: a worker host that restarts (and a nats-server that
 * restarts under it) still answers a repeated do/compensate from the stored outcome
 * and still refuses a do after its compensate.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect } from '@nats-io/transport-node';
import type { NatsConnection } from '@nats-io/transport-node';
import { defineWorker } from '../../src/index.ts';
import type { KeyRecord, WorkerRequest } from '../../src/index.ts';
import { jetstreamDedupStore, kvKeyOf, natsTransport, serveWorkers } from '../../src/nats.ts';
import type { WorkerServer } from '../../src/nats.ts';
import { startNatsServer } from '../helpers/nats-server.ts';
import type { NatsServer } from '../helpers/nats-server.ts';

let server: NatsServer;

beforeAll(async () => {
  server = await startNatsServer();
});

afterAll(async () => {
  await server?.stop();
});

const effects = { do: 0, compensate: 0 };
const payments = defineWorker({
  name: 'payments',
  do: (input: { amount: number }, ctx) => {
    effects.do++;
    return { charged: input.amount, receipt: `r-${ctx.idempotencyKey.slice(0, 6)}`, nth: effects.do };
  },
  compensate: () => void effects.compensate++,
});

/** A worker host process, as far as NATS and JetStream can tell: its own connection and store. */
async function startHost(): Promise<{ nc: NatsConnection; host: WorkerServer }> {
  const nc = await connect({ servers: server.url, reconnect: false });
  const host = await serveWorkers(nc, [payments], { dedup: jetstreamDedupStore(nc, { windowMs: 60_000 }), signals: [] });
  return { nc, host };
}

async function stopHost(h: { nc: NatsConnection; host: WorkerServer }) {
  await h.host.drain();
  await h.nc.close();
}

let k = 0;
const request = (op: 'do' | 'compensate', key: string, amount = 10): WorkerRequest => ({
  v: 1,
  op,
  worker: 'payments',
  sagaId: `saga-${key.slice(0, 8)}`,
  stepId: 'pay',
  key,
  attempt: 1,
  deadline: Date.now() + 10_000,
  input: { amount },
});
const newKey = () => `${(++k).toString(16).padStart(8, '0')}${'c'.repeat(32)}`;

async function ask(req: WorkerRequest) {
  const nc = await connect({ servers: server.url, reconnect: false });
  try {
    return await natsTransport(nc).request(req, 5_000);
  } finally {
    await nc.close();
  }
}

describe('jetstreamDedupStore across restarts', () => {
  it('a restarted host (and a restarted nats-server) answers a repeated do from the stored outcome and refuses a do after its compensate', async () => {
    const key = newKey();
    let h = await startHost();
    const first = await ask(request('do', key));
    expect(first).toMatchObject({ ok: true, result: { charged: 10 } });
    const doneBefore = effects.do;
    await stopHost(h);

    await server.restart(); // the records must be on disk, not in anyone's memory
    h = await startHost();
    expect(await ask(request('do', key))).toEqual(first);
    expect(effects.do).toBe(doneBefore);
    const compBefore = effects.compensate;
    expect(await ask(request('compensate', key))).toEqual({ ok: true });
    expect(effects.compensate).toBe(compBefore + 1);
    await stopHost(h);

    h = await startHost();
    expect(await ask(request('do', key))).toMatchObject({ ok: false, error: { code: 'COMPENSATED', retryable: false } });
    expect(await ask(request('compensate', key))).toEqual({ ok: true });
    expect(effects.do).toBe(doneBefore);
    expect(effects.compensate).toBe(compBefore + 1);
    await stopHost(h);
  });

  it('a compensate that arrived before a restart still refuses the do that arrives after it', async () => {
    const key = newKey();
    let h = await startHost();
    expect(await ask(request('compensate', key))).toEqual({ ok: true });
    await stopHost(h);
    h = await startHost();
    const before = effects.do;
    expect(await ask(request('do', key))).toMatchObject({ ok: false, error: { code: 'COMPENSATED' } });
    expect(effects.do).toBe(before);
    await stopHost(h);
  });

  it('still detects an idempotency key reused with a different input after a restart', async () => {
    const key = newKey();
    let h = await startHost();
    expect(await ask(request('do', key, 10))).toMatchObject({ ok: true });
    await stopHost(h);
    h = await startHost();
    expect(await ask(request('do', key, 99))).toMatchObject({ ok: false, error: { code: 'KEY_CONFLICT' } });
    await stopHost(h);
  });
});

describe('jetstreamDedupStore buckets and keys', () => {
  it('keeps one bucket per worker with the dedup window as its max age, and moves an existing bucket to a new window', async () => {
    const nc = await connect({ servers: server.url });
    const store = jetstreamDedupStore(nc, { windowMs: 90_000, bucketPrefix: 'win' });
    const kv = await store.bucket('flights');
    const status = await kv.status();
    expect(status.bucket).toBe('win_flights');
    expect(status.ttl).toBe(90_000);
    expect(status.history).toBe(1);
    const again = jetstreamDedupStore(nc, { windowMs: 30_000, bucketPrefix: 'win' });
    expect((await (await again.bucket('flights')).status()).ttl).toBe(30_000);
    expect((await (await again.bucket('hotels')).status()).bucket).toBe('win_hotels');
    await nc.close();
  });

  it('stores keys that are not valid KV keys, without collisions', async () => {
    const nc = await connect({ servers: server.url });
    const store = jetstreamDedupStore(nc, { windowMs: 60_000, bucketPrefix: 'keys' });
    const rec = (inputHash: string): KeyRecord => ({ state: 'done', compensateRequested: false, inputHash, result: { inputHash }, updatedAt: Date.now() });
    const odd = ['a b/c.d', '.', 'ключ', '*>', 'abc'];
    const plainLookalike = kvKeyOf('a b/c.d');
    odd.push(plainLookalike.replace('.', '_'));
    for (const key of odd) {
      expect(await store.get('w', key)).toBeUndefined();
      await store.set('w', key, rec(key));
    }
    for (const key of odd) expect((await store.get('w', key))?.inputHash).toBe(key);
    expect(kvKeyOf('0123abcdef')).toBe('0123abcdef');
    await nc.close();
  });

  it('never silently overwrites a record another host changed meanwhile (compare-and-set)', async () => {
    const a = await connect({ servers: server.url });
    const b = await connect({ servers: server.url });
    const sa = jetstreamDedupStore(a, { windowMs: 60_000, bucketPrefix: 'cas' });
    const sb = jetstreamDedupStore(b, { windowMs: 60_000, bucketPrefix: 'cas' });
    const base: KeyRecord = { state: 'doing', compensateRequested: false, inputHash: 'h', updatedAt: Date.now() };
    await sa.get('w', 'k1');
    await sa.set('w', 'k1', base);
    await sa.get('w', 'k1');
    await sb.get('w', 'k1');
    await sb.set('w', 'k1', { ...base, state: 'done', result: 'from b' });
    await expect(sa.set('w', 'k1', { ...base, state: 'done', result: 'from a' })).rejects.toMatchObject({ code: 'TRANSPORT_ERROR', retryable: true });
    expect((await sa.get('w', 'k1'))?.result).toBe('from b');
    await a.close();
    await b.close();
  });
});
