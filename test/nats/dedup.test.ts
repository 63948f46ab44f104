/**
 * Durable dedup on JetStream KV: a worker host that restarts (and a nats-server that
 * restarts under it) still answers a repeated do/compensate from the stored outcome
 * and still refuses a do after its compensate.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect } from '@nats-io/transport-node';
import type { NatsConnection } from '@nats-io/transport-node';
import { createWorkerHost, defineWorker } from '../../src/index.ts';
import type { KeyRecord, WorkerRequest } from '../../src/index.ts';
import { jetstreamDedupStore, kvKeyOf, natsTransport, serveWorkers } from '../../src/nats.ts';
import { casWrite } from '../../src/store/jetstream.ts';
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
    const rec = (inputHash: string): KeyRecord => ({ state: 'done', inputHash, result: { inputHash }, updatedAt: Date.now() });
    const odd = ['a b/c.d', '.', 'ключ', '*>', 'abc'];
    const plainLookalike = kvKeyOf('a b/c.d');
    odd.push(plainLookalike.replace('.', '_'));
    for (const key of odd) {
      expect(await store.read('w', key)).toEqual({ record: undefined, revision: 0 });
      expect(await store.write('w', key, rec(key), 0)).toBeGreaterThan(0);
    }
    for (const key of odd) expect((await store.read('w', key)).record?.inputHash).toBe(key);
    expect(kvKeyOf('0123abcdef')).toBe('0123abcdef');
    await nc.close();
  });

  it('writes only over the revision it names: a host that read before another wrote loses (compare-and-set)', async () => {
    const a = await connect({ servers: server.url });
    const b = await connect({ servers: server.url });
    const sa = jetstreamDedupStore(a, { windowMs: 60_000, bucketPrefix: 'cas' });
    const sb = jetstreamDedupStore(b, { windowMs: 60_000, bucketPrefix: 'cas' });
    const base: KeyRecord = { state: 'doing', inputHash: 'h', owner: 'a/1', leaseUntil: Date.now() + 1_000, updatedAt: Date.now() };
    const r1 = (await sa.write('w', 'k1', base, 0)) as number;
    expect(await sb.write('w', 'k1', { ...base, owner: 'b/1' }, 0)).toBeUndefined(); // both tried to create it: one claim wins
    const seenByA = await sa.read('w', 'k1');
    const seenByB = await sb.read('w', 'k1');
    expect(seenByA).toEqual({ record: base, revision: r1 });
    expect(await sb.write('w', 'k1', { ...base, state: 'compensating', owner: 'b/2' }, seenByB.revision)).toBeGreaterThan(r1);
    expect(await sa.write('w', 'k1', { ...base, state: 'done', result: 'from a' }, seenByA.revision)).toBeUndefined();
    expect((await sa.read('w', 'k1')).record).toMatchObject({ state: 'compensating', owner: 'b/2' });
    await a.close();
    await b.close();
  });

  it('two hosts on their own connections, one running do and one compensate of each key at once: no effect survives an acknowledged undo (100 keys)', async () => {
    const a = await connect({ servers: server.url });
    const b = await connect({ servers: server.url });
    const effects = new Map<string, number>();
    const pay = defineWorker({
      name: 'pay',
      async do(_input: unknown, ctx) {
        await new Promise((r) => setTimeout(r, Math.random() * 3));
        effects.set(ctx.idempotencyKey, 1);
        return { ok: 1 };
      },
      async compensate(_input, _result, ctx) {
        effects.set(ctx.idempotencyKey, 0);
      },
    });
    const hostA = createWorkerHost([pay], { dedup: jetstreamDedupStore(a, { windowMs: 60_000, bucketPrefix: 'race' }) });
    const hostB = createWorkerHost([pay], { dedup: jetstreamDedupStore(b, { windowMs: 60_000, bucketPrefix: 'race' }) });
    const req = (op: 'do' | 'compensate', key: string) => ({ v: 1, op, worker: 'pay', sagaId: 's', stepId: 'a', key, attempt: 1, deadline: Date.now() + 10_000, input: {} });
    const doReplies = new Set<string>();
    await Promise.all(
      Array.from({ length: 100 }, async (_, i) => {
        const key = `race-${i}`;
        const [done, undone] = await Promise.all([hostA.handle(req('do', key)), hostB.handle(req('compensate', key))]);
        expect(undone, key).toEqual({ ok: true });
        doReplies.add(done.ok ? 'ok' : done.error.code);
        expect(effects.get(key) ?? 0, key).toBe(0);
      }),
    );
    expect([...doReplies].every((c) => c === 'ok' || c === 'COMPENSATED')).toBe(true);
    await a.close();
    await b.close();
  });
});

describe('compare-and-set writes whose outcome the server did not report', () => {
  /** A KV that applies a write and then loses the acknowledgement (a server restart, a timeout). */
  function lossyKv() {
    let text: string | undefined;
    let revision = 0;
    let loseNext = true;
    const entry = async () => ({ text, revision, closed: false });
    const apply = (value: string, expected: number) => {
      if (expected !== revision) throw Object.assign(new Error('wrong last sequence'), { code: 10071 });
      text = value;
      revision++;
      if (loseNext) {
        loseNext = false;
        throw new Error('TIMEOUT');
      }
      return revision;
    };
    return {
      key: { read: entry, publish: async (v: string, rev: number) => apply(v, rev) },
      other: (value: string) => {
        text = value;
        revision++;
      },
    };
  }

  it('reads the key back: its own text means the write landed, another means it lost', async () => {
    const landed = lossyKv();
    expect(await casWrite(landed.key, 'mine', 0, 3, 'test')).toBe(1);
    const lost = lossyKv();
    lost.other('theirs');
    expect(await casWrite(lost.key, 'mine', 0, 3, 'test')).toBeUndefined();
  });

  it('a conflict reported while the named revision is still the last is not a conflict: the write is sent again', async () => {
    // A clustered 2.9 server can answer "wrong last sequence" around a leader change although nothing changed.
    let text: string | undefined = 'before';
    let revision = 4;
    let spurious = 2;
    const updates: number[] = [];
    const key = {
      read: async () => ({ text, revision, closed: false }),
      publish: async (v: string, rev: number) => {
        updates.push(rev);
        if (spurious-- > 0 || rev !== revision) throw Object.assign(new Error('wrong last sequence: 4'), { code: 10071 });
        text = v;
        return ++revision;
      },
    };
    expect(await casWrite(key, 'mine', 4, 5, 'test')).toBe(5);
    expect(updates).toEqual([4, 4, 4]);
    expect(text).toBe('mine');
    // It keeps failing: an error naming the write, never a conflict (which would fence a saga off for nothing).
    spurious = 10;
    await expect(casWrite(key, 'again', 5, 3, 'journal of saga s')).rejects.toThrow(/journal of saga s failed: the server reported a conflict, but revision 5 is still the last/);
    // A real conflict (the revision moved on, another text) is one.
    spurious = 0;
    expect(await casWrite(key, 'late', 4, 3, 'test')).toBeUndefined();
    // So is another writer's record with the very text we write, when none of our attempts can have landed.
    expect(await casWrite(key, 'mine', 4, 3, 'test')).toBeUndefined();
  });
});
