/**
 * A durable DedupStore on JetStream KV: one bucket per worker, the dedup window as
 * the bucket's max age (so the server forgets a key a window after its last change),
 * and every write a compare-and-set on the revision last read, so an update made by
 * another host in between is never silently overwritten.
 *
 * Also a SagaStore (journals, the index of unfinished sagas, dead letters) on KV.
 * Works with nats-server 2.9: no per-message TTL, no stream metadata, no compression.
 */
import { Kvm } from '@nats-io/kv';
import type { KV } from '@nats-io/kv';
import { jetstreamManager } from '@nats-io/jetstream';
import { nanos } from '@nats-io/transport-node';
import type { NatsConnection } from '@nats-io/transport-node';
import { InvalidOptionError, TransportError } from '../errors.ts';
import type { DeadLetter, DedupStore, KeyRecord, SagaRecord, SagaStore } from '../types.ts';

/** Default time a JetStream KV dedup store remembers a key: 24 hours (each bucket's max age). */
export const DEFAULT_KV_DEDUP_WINDOW_MS = 24 * 60 * 60 * 1000;

export interface JetStreamDedupStoreOptions {
  /** How long a key is remembered after its last change: each bucket's max age. Default 24 hours. */
  windowMs?: number;
  /** Bucket names are `<bucketPrefix>_<worker>`. Default `'saga_dedup'`. */
  bucketPrefix?: string;
  /** Stream replicas of each bucket (1, 3 or 5 on a cluster). Default 1. */
  replicas?: number;
  /** `'file'` (survives a server restart) or `'memory'`. Default `'file'`. */
  storage?: 'file' | 'memory';
  /** Attempts of one read or write before it fails (transient NATS errors). Default 3. */
  attempts?: number;
}

export interface JetStreamDedupStore extends DedupStore {
  /** The bucket of a worker, created on first use. */
  bucket(worker: string): Promise<KV>;
}

const BUCKET = /^[A-Za-z0-9_-]{1,128}$/;
const PLAIN_KEY = /^[A-Za-z0-9_-]{1,512}$/;
const WRONG_LAST_SEQUENCE = 10071;

/**
 * KV keys are NATS subject tokens. Idempotency keys (hex) are used as they are; any
 * other key is stored as `b64.<base64url>`, which no plain key can collide with.
 */
export function kvKeyOf(key: string): string {
  return PLAIN_KEY.test(key) ? key : `b64.${Buffer.from(key, 'utf8').toString('base64url')}`;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function isCasConflict(error: unknown): boolean {
  const e = error as { code?: unknown; api_error?: { err_code?: unknown }; message?: unknown };
  return e?.code === WRONG_LAST_SEQUENCE || e?.api_error?.err_code === WRONG_LAST_SEQUENCE || (typeof e?.message === 'string' && e.message.includes('wrong last sequence'));
}

/**
 * Creates a JetStream KV dedup store for worker hosts.
 *
 * @example
 * const dedup = jetstreamDedupStore(nc, { windowMs: 24 * 3600_000 });
 * await serveWorkers(nc, [flights, hotels], { dedup });
 */
export function jetstreamDedupStore(nc: NatsConnection, options: JetStreamDedupStoreOptions = {}): JetStreamDedupStore {
  if (nc === null || typeof nc !== 'object') throw new InvalidOptionError('nc', 'must be a NatsConnection');
  const windowMs = options.windowMs ?? DEFAULT_KV_DEDUP_WINDOW_MS;
  if (typeof windowMs !== 'number' || !Number.isSafeInteger(windowMs) || windowMs < 1000) throw new InvalidOptionError('windowMs', `must be a whole number of milliseconds >= 1000, got ${String(windowMs)}`);
  const bucketPrefix = options.bucketPrefix ?? 'saga_dedup';
  if (typeof bucketPrefix !== 'string' || !BUCKET.test(bucketPrefix)) throw new InvalidOptionError('bucketPrefix', `must match ${BUCKET.source}`);
  const replicas = options.replicas ?? 1;
  if (![1, 3, 5].includes(replicas)) throw new InvalidOptionError('replicas', 'must be 1, 3 or 5');
  const storage = options.storage ?? 'file';
  if (storage !== 'file' && storage !== 'memory') throw new InvalidOptionError('storage', "must be 'file' or 'memory'");
  const attempts = options.attempts ?? 3;
  if (!Number.isSafeInteger(attempts) || attempts < 1) throw new InvalidOptionError('attempts', 'must be a whole number >= 1');

  const kvm = new Kvm(nc);
  const buckets = new Map<string, Promise<KV>>();
  /** Revision last read per (worker, key): the next write is a compare-and-set on it. 0 = absent. */
  const revisions = new Map<string, number>();
  const id = (worker: string, key: string) => `${worker}\u0000${key}`;

  const open = async (worker: string): Promise<KV> => {
    const name = `${bucketPrefix}_${worker}`;
    if (!BUCKET.test(name)) throw new InvalidOptionError('worker', `cannot make a bucket name from worker ${JSON.stringify(worker)}`);
    const kv = await kvm.create(name, { ttl: windowMs, history: 1, replicas, storage: storage as never });
    // An existing bucket keeps its old max age: bring it to this window.
    const status = await kv.status();
    if (status.ttl !== windowMs) {
      const jsm = await jetstreamManager(nc);
      await jsm.streams.update(`KV_${name}`, { max_age: nanos(windowMs), duplicate_window: nanos(Math.min(windowMs, 120_000)) });
    }
    return kv;
  };

  const bucket = (worker: string): Promise<KV> => {
    let p = buckets.get(worker);
    if (p === undefined) {
      p = open(worker);
      buckets.set(worker, p);
      p.catch(() => buckets.delete(worker));
    }
    return p;
  };

  const retrying = async <T>(what: string, fn: () => Promise<T>): Promise<T> => {
    for (let i = 1; ; i++) {
      try {
        return await fn();
      } catch (error) {
        if (isCasConflict(error)) throw error;
        if (i >= attempts) throw new TransportError('TRANSPORT_ERROR', `dedup store: ${what} failed: ${(error as Error)?.message ?? String(error)}`, { cause: error });
        await sleep(20 * 2 ** i);
      }
    }
  };

  return {
    bucket,

    async get(worker, key) {
      const kv = await bucket(worker);
      const entry = await retrying(`read of ${worker}/${key}`, () => kv.get(kvKeyOf(key)));
      const k = id(worker, key);
      if (entry === null || entry.operation !== 'PUT') {
        // A deleted or purged key: absent; `create` replaces the marker.
        revisions.set(k, 0);
        return undefined;
      }
      revisions.set(k, entry.revision);
      if (revisions.size > 100_000) revisions.delete(revisions.keys().next().value as string);
      let record: KeyRecord;
      try {
        record = entry.json<KeyRecord>();
      } catch (error) {
        throw new TransportError('TRANSPORT_ERROR', `dedup store: the record of ${worker}/${key} is not JSON`, { cause: error, retryable: false });
      }
      // The server expires whole messages a window after they were written; so do we.
      return record.updatedAt <= Date.now() - windowMs ? undefined : record;
    },

    async set(worker, key, record) {
      const kv = await bucket(worker);
      const k = id(worker, key);
      const rev = revisions.get(k);
      const value = JSON.stringify(record);
      const kk = kvKeyOf(key);
      try {
        const next = await retrying(`write of ${worker}/${key}`, () => (rev === undefined || rev === 0 ? kv.create(kk, value) : kv.update(kk, value, rev)));
        revisions.set(k, next);
      } catch (error) {
        revisions.delete(k);
        if (isCasConflict(error)) {
          throw new TransportError('TRANSPORT_ERROR', `dedup store: key ${key} of worker '${worker}' was changed by another host meanwhile; ask again`, { cause: error });
        }
        throw error;
      }
    },
  };
}

// ---------------------------------------------------------------------------
// Saga journals

export interface JetStreamSagaStoreOptions {
  /** Buckets are `<bucketPrefix>_journal`, `_open` (unfinished sagas) and `_dead` (dead letters). Default `'saga'`. */
  bucketPrefix?: string;
  /** How long a journal is kept after its last change (0: forever). Default 7 days. */
  keepMs?: number;
  /** Stream replicas of each bucket. Default 1. */
  replicas?: number;
}

/**
 * A durable SagaStore on JetStream KV: one journal record per saga, an index of the
 * unfinished ones (so `unfinished()` never scans finished sagas), and the dead letters.
 * Writes for one saga are applied in order.
 *
 * @example
 * const runtime = createRuntime({ transport: natsTransport(nc), store: jetstreamSagaStore(nc), sagas: [trip] });
 * await runtime.recover();
 */
export function jetstreamSagaStore(nc: NatsConnection, options: JetStreamSagaStoreOptions = {}): SagaStore {
  const bucketPrefix = options.bucketPrefix ?? 'saga';
  if (typeof bucketPrefix !== 'string' || !BUCKET.test(bucketPrefix)) throw new InvalidOptionError('bucketPrefix', `must match ${BUCKET.source}`);
  const keepMs = options.keepMs ?? 7 * 24 * 3600_000;
  if (!Number.isSafeInteger(keepMs) || keepMs < 0) throw new InvalidOptionError('keepMs', 'must be a whole number of milliseconds >= 0');
  const replicas = options.replicas ?? 1;
  if (![1, 3, 5].includes(replicas)) throw new InvalidOptionError('replicas', 'must be 1, 3 or 5');
  const kvm = new Kvm(nc);
  const open = (suffix: string, ttl: number) => kvm.create(`${bucketPrefix}_${suffix}`, { history: 1, replicas, ...(ttl > 0 ? { ttl } : {}) });
  let buckets: Promise<{ journal: KV; index: KV; dead: KV }> | undefined;
  const kv = () => {
    buckets ??= Promise.all([open('journal', keepMs), open('open', 0), open('dead', 0)]).then(([journal, index, dead]) => ({ journal, index, dead }));
    buckets.catch(() => (buckets = undefined));
    return buckets;
  };
  const tails = new Map<string, Promise<unknown>>();
  /** Runs the writes of one saga in order. */
  const serial = <T>(sagaId: string, fn: () => Promise<T>): Promise<T> => {
    const next = (tails.get(sagaId) ?? Promise.resolve()).then(fn, fn);
    const tail = next.then(
      () => undefined,
      () => undefined,
    );
    tails.set(sagaId, tail);
    void tail.then(() => tails.get(sagaId) === tail && tails.delete(sagaId));
    return next;
  };
  const read = async <T>(bucket: KV, sagaId: string): Promise<T | undefined> => {
    const e = await bucket.get(kvKeyOf(sagaId));
    return e === null || e.operation !== 'PUT' ? undefined : e.json<T>();
  };
  const update = (sagaId: string, patch: (r: SagaRecord) => Partial<SagaRecord>) =>
    serial(sagaId, async () => {
      const { journal } = await kv();
      const rec = await read<SagaRecord>(journal, sagaId);
      if (rec !== undefined) await journal.put(kvKeyOf(sagaId), JSON.stringify({ ...rec, ...patch(rec), updatedAt: Date.now() }));
    });
  const all = async <T>(bucket: KV): Promise<T[]> => {
    const out: T[] = [];
    for await (const key of await bucket.keys()) {
      const e = await bucket.get(key);
      if (e !== null && e.operation === 'PUT') out.push(e.json<T>());
    }
    return out;
  };

  return {
    begin: (record) =>
      serial(record.sagaId, async () => {
        const { journal, index } = await kv();
        await journal.put(kvKeyOf(record.sagaId), JSON.stringify(record));
        await index.put(kvKeyOf(record.sagaId), JSON.stringify({ sagaId: record.sagaId }));
      }),
    checkpoint: (sagaId, snapshot, status) => update(sagaId, () => ({ snapshot, status })),
    finish: async (sagaId, outcome) => {
      await update(sagaId, () => ({ outcome, status: outcome.status === 'committed' ? 'committed' : 'compensated' }));
      await serial(sagaId, async () => {
        const { index, dead } = await kv();
        await index.delete(kvKeyOf(sagaId));
        await dead.delete(kvKeyOf(sagaId));
      });
    },
    park: async (letter) => {
      await serial(letter.sagaId, async () => (await kv()).dead.put(kvKeyOf(letter.sagaId), JSON.stringify(letter)));
      await update(letter.sagaId, () => ({ status: 'parked' }));
    },
    unpark: async (sagaId) => {
      await serial(sagaId, async () => (await kv()).dead.delete(kvKeyOf(sagaId)));
      await update(sagaId, () => ({ status: 'running' }));
    },
    get: async (sagaId) => {
      await tails.get(sagaId);
      return read<SagaRecord>((await kv()).journal, sagaId);
    },
    deadLetters: async () => all<DeadLetter>((await kv()).dead),
    unfinished: async () => {
      const { index, journal } = await kv();
      const ids = await all<{ sagaId: string }>(index);
      const recs = await Promise.all(ids.map((i) => read<SagaRecord>(journal, i.sagaId)));
      return recs.filter((r): r is SagaRecord => r !== undefined && (r.status === 'running' || r.status === 'parked'));
    },
  };
}
