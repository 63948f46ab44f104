/**
 * A durable DedupStore on JetStream KV: one bucket per worker, the dedup window as
 * the bucket's max age (so the server forgets a key a window after its last change),
 * and every write a compare-and-set on the revision last read, so an update made by
 * another host in between is never silently overwritten.
 *
 * Also a SagaStore on KV: one journal record per saga, written with compare-and-set, its
 * outcome written as a delete marker that carries the final record.
 *
 * Reads go to each stream's leader (`allow_direct: false`): with replicas, a direct get
 * may be answered by a follower that has not caught up, and a decision made on a stale
 * record (an answer, a takeover) would not be safe.
 * Works with nats-server 2.9: no per-message TTL, no stream metadata, no compression.
 */
import { Kvm } from '@nats-io/kv';
import type { KV } from '@nats-io/kv';
import { DeliverPolicy, jetstream, jetstreamManager } from '@nats-io/jetstream';
import type { JetStreamClient, JetStreamPublishOptions } from '@nats-io/jetstream';
import { headers, nanos } from '@nats-io/transport-node';
import type { NatsConnection } from '@nats-io/transport-node';
import { InvalidOptionError, TransportError } from '../errors.ts';
import { perTurn } from '../transport/nats/turn.ts';
import type { DedupStore, KeyRecord, SagaRecord, SagaStore, VersionedSagaRecord } from '../types.ts';

/** Default time a JetStream KV dedup store remembers a key: 24 hours (each bucket's max age). */
export const DEFAULT_KV_DEDUP_WINDOW_MS = 24 * 60 * 60 * 1000;

/** The options of `jetstreamDedupStore`. */
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
  /**
   * Use replicated buckets (`replicas` > 1) although the connected nats-server is older than
   * 2.9.21, whose clustered streams accept two compare-and-set writes naming the same
   * revision (nats-server issue 4320): claims and fencing are then not safe, and the
   * guarantee does not hold. For tests of failover only. Default false: such a server is
   * refused with an `OPTION_INVALID` error naming `replicas`.
   */
  allowUnsafeServer?: boolean;
}

export interface JetStreamDedupStore extends DedupStore {
  /** The bucket of a worker, created on first use. */
  bucket(worker: string): Promise<KV>;
}

/** The first nats-server release whose clustered streams check a compare-and-set write's expected revision under consensus (nats-server issue 4320). */
export const MIN_SAFE_CLUSTERED_SERVER = '2.9.21';

function versionParts(v: string): number[] {
  return (/^v?(\d+)\.(\d+)\.(\d+)/.exec(v) ?? []).slice(1).map(Number);
}

/**
 * Replicated buckets need a server whose clustered streams keep compare-and-set safe:
 * on older ones two hosts can both claim a key, and two coordinators both write a saga.
 */
export function assertSafeReplication(nc: NatsConnection, replicas: number, allowUnsafe: unknown): void {
  if (allowUnsafe !== undefined && typeof allowUnsafe !== 'boolean') throw new InvalidOptionError('allowUnsafeServer', 'must be a boolean');
  if (replicas === 1 || allowUnsafe === true) return;
  const version = nc.info?.version;
  if (version === undefined) return;
  const have = versionParts(version);
  const need = versionParts(MIN_SAFE_CLUSTERED_SERVER);
  if (have.length !== 3) return;
  const older = have[0]! !== need[0]! ? have[0]! < need[0]! : have[1]! !== need[1]! ? have[1]! < need[1]! : have[2]! < need[2]!;
  if (older) {
    throw new InvalidOptionError(
      'replicas',
      `${replicas} replicas need nats-server ${MIN_SAFE_CLUSTERED_SERVER} or later, but the connected server is ${version}: its clustered streams accept two compare-and-set writes naming the same revision (nats-server issue 4320), so two hosts could both run a key and two coordinators both drive a saga. Upgrade the cluster, or use replicas: 1 (see docs/durability.md)`,
    );
  }
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

/** The key a KV key was made from by {@link kvKeyOf}. */
export function keyOfKvKey(kvKey: string): string {
  return kvKey.startsWith('b64.') ? Buffer.from(kvKey.slice(4), 'base64url').toString('utf8') : kvKey;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function isCasConflict(error: unknown): boolean {
  const e = error as { code?: unknown; api_error?: { err_code?: unknown }; message?: unknown };
  return e?.code === WRONG_LAST_SEQUENCE || e?.api_error?.err_code === WRONG_LAST_SEQUENCE || (typeof e?.message === 'string' && e.message.includes('wrong last sequence'));
}

const messageOf = (error: unknown) => (error as Error)?.message ?? String(error);

/** A KV entry as this module reads it: its text (a value, or the final record a closing marker carries) and revision, or absent. */
export interface RawEntry {
  readonly text: string | undefined;
  readonly revision: number;
  /** A closing marker: a delete marker whose payload is the saga's final record. */
  readonly closed: boolean;
}

async function readRaw(kv: KV, key: string): Promise<RawEntry> {
  const e = await kv.get(key);
  if (e === null) return { text: undefined, revision: 0, closed: false };
  if (e.operation === 'PUT') return { text: e.string(), revision: e.revision, closed: false };
  // A delete marker with a payload closes a saga; a bare delete or purge marker is absent, but a write must name its revision.
  if (e.operation === 'DEL' && e.value.length > 0) return { text: e.string(), revision: e.revision, closed: true };
  return { text: undefined, revision: e.revision, closed: false };
}

/** The KV header that marks a delete: a closing write is a delete marker that carries the final record. */
const KV_OPERATION = 'KV-Operation';

/** One KV key as {@link casWrite} writes it: a compare-and-set publish, and a read. */
export interface CasKey {
  /** Lands only if the key's last message is still `revision` (0: none, not even a delete marker); resolves with the new revision. */
  publish(text: string, revision: number, close: boolean): Promise<number>;
  read(): Promise<RawEntry>;
}

/** A write to publish: subject, text, and what settles its promise. */
interface Publish {
  readonly subject: string;
  readonly text: string;
  readonly options: Partial<JetStreamPublishOptions>;
  readonly resolve: (seq: number) => void;
  readonly reject: (error: unknown) => void;
}

/**
 * Group commit: the writes a store is asked for in one turn of the event loop are
 * published together (the writes of many sagas, or of many keys on a worker host), each
 * waiting for its own acknowledgement.
 */
function groupPublisher(js: JetStreamClient): (subject: string, text: string, options: Partial<JetStreamPublishOptions>) => Promise<number> {
  const send = perTurn<Publish>((w) => void js.publish(w.subject, w.text, w.options).then((ack) => w.resolve(ack.seq), w.reject));
  return (subject, text, options) => new Promise<number>((resolve, reject) => send({ subject, text, options, resolve, reject }));
}

/**
 * A key of a KV bucket. Writes are published on the key's subject with the expected
 * last subject sequence, not through `kv.create`, which would write over a delete
 * marker. `close` publishes a delete marker carrying the text: the key leaves the
 * bucket's listing, and a read still finds its record.
 */
function casKey(kv: KV, publish: ReturnType<typeof groupPublisher>, bucket: string, key: string): CasKey {
  const subject = `$KV.${bucket}.${key}`;
  return {
    publish(text, revision, close) {
      const options: Partial<JetStreamPublishOptions> = { expect: { lastSubjectSequence: revision } };
      if (close) {
        const h = headers();
        h.set(KV_OPERATION, 'DEL');
        options.headers = h;
      }
      return publish(subject, text, options);
    },
    read: () => readRaw(kv, key),
  };
}

/**
 * A compare-and-set write on a KV key that settles ambiguous outcomes: when the server
 * does not answer (a restart, a timeout) or reports a conflict, the key is read back.
 * Our own text there means the write landed (an earlier attempt, whose answer was lost);
 * the revision we named still there means it did not (and it is sent again: a clustered
 * 2.9 server can report "wrong last sequence" around a leader change although nothing
 * changed); anything else means another writer came first. Resolves with the new
 * revision, or `undefined` on a conflict; rejects when the server stays unreachable.
 */
export async function casWrite(key: CasKey, text: string, revision: number, attempts: number, what: string, close = false): Promise<number | undefined> {
  let last: unknown;
  /** An earlier attempt failed without an answer: it may have landed. */
  let mayHaveLanded = false;
  for (let i = 1; i <= attempts; i++) {
    try {
      return await key.publish(text, revision, close);
    } catch (error) {
      // A conflict is settled by the read below, like a missing answer.
      if (isCasConflict(error)) last = new Error(`the server reported a conflict, but revision ${revision} is still the last`, { cause: error });
      else {
        last = error;
        mayHaveLanded = true;
      }
    }
    try {
      const now = await key.read();
      // Our text is ours only if one of our attempts may have landed: another writer may write the same text.
      if (now.text === text && now.closed === close && mayHaveLanded) return now.revision;
      if (now.revision !== revision) return undefined;
    } catch (error) {
      last = error;
    }
    if (i < attempts) await sleep(20 * 2 ** i);
  }
  throw new TransportError('TRANSPORT_ERROR', `${what} failed: ${messageOf(last)}`, { cause: last });
}

/**
 * Creates a JetStream KV dedup store for worker hosts. Every host of a worker must use
 * the same bucket prefix: claims are compare-and-set writes on the shared records.
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
  assertSafeReplication(nc, replicas, options.allowUnsafeServer);
  const storage = options.storage ?? 'file';
  if (storage !== 'file' && storage !== 'memory') throw new InvalidOptionError('storage', "must be 'file' or 'memory'");
  const attempts = options.attempts ?? 3;
  if (!Number.isSafeInteger(attempts) || attempts < 1) throw new InvalidOptionError('attempts', 'must be a whole number >= 1');

  const kvm = new Kvm(nc);
  const publisher = groupPublisher(jetstream(nc));
  const buckets = new Map<string, Promise<KV>>();

  const open = async (worker: string): Promise<KV> => {
    const name = `${bucketPrefix}_${worker}`;
    if (!BUCKET.test(name)) throw new InvalidOptionError('worker', `cannot make a bucket name from worker ${JSON.stringify(worker)}`);
    const kv = await kvm.create(name, { ttl: windowMs, history: 1, replicas, storage: storage as never, allow_direct: false });
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

  return {
    bucket,

    async read(worker, key) {
      let raw: RawEntry | undefined;
      let last: unknown;
      for (let i = 1; raw === undefined; i++) {
        try {
          raw = await readRaw(await bucket(worker), kvKeyOf(key));
        } catch (error) {
          last = error;
          if (i >= attempts) throw new TransportError('TRANSPORT_ERROR', `dedup store: read of ${worker}/${key} failed: ${messageOf(last)}`, { cause: last });
          await sleep(20 * 2 ** i);
        }
      }
      if (raw.text === undefined) return { record: undefined, revision: raw.revision };
      let record: KeyRecord;
      try {
        record = JSON.parse(raw.text) as KeyRecord;
      } catch (error) {
        throw new TransportError('TRANSPORT_ERROR', `dedup store: the record of ${worker}/${key} is not JSON`, { cause: error, retryable: false });
      }
      // The server expires whole messages a window after they were written; so do we.
      return record.updatedAt <= Date.now() - windowMs ? { record: undefined, revision: raw.revision } : { record, revision: raw.revision };
    },

    async write(worker, key, record, revision) {
      let kv: KV;
      try {
        kv = await bucket(worker);
      } catch (error) {
        throw new TransportError('TRANSPORT_ERROR', `dedup store: bucket of worker '${worker}' unavailable: ${messageOf(error)}`, { cause: error });
      }
      return casWrite(casKey(kv, publisher, `${bucketPrefix}_${worker}`, kvKeyOf(key)), JSON.stringify(record), revision, attempts, `dedup store: write of ${worker}/${key}`);
    },
  };
}

// ---------------------------------------------------------------------------
// Saga journals

/** The options of `jetstreamSagaStore`. */
export interface JetStreamSagaStoreOptions {
  /**
   * Buckets are `<bucketPrefix>_journal` (one key per saga: its journal while it runs or
   * is parked, then its final record) and `<bucketPrefix>_owners` (coordinators'
   * heartbeats, forgotten after a day). Default `'saga'`.
   */
  bucketPrefix?: string;
  /**
   * How long a finished saga's final record is kept (0: forever). Coordinators remove
   * older ones as they go (`prune`). Default 7 days.
   */
  keepMs?: number;
  /** Stream replicas of each bucket. Default 1. */
  replicas?: number;
  /** Attempts of one read or write before it fails (transient NATS errors). Default 3. */
  attempts?: number;
  /**
   * Use replicated buckets (`replicas` > 1) although the connected nats-server is older than
   * 2.9.21, whose clustered streams accept two compare-and-set writes naming the same
   * revision (nats-server issue 4320): claims and fencing are then not safe, and the
   * guarantee does not hold. For tests of failover only. Default false: such a server is
   * refused with an `OPTION_INVALID` error naming `replicas`.
   */
  allowUnsafeServer?: boolean;
}

/** Messages `prune` reads ahead, and purges it sends at once. */
const PRUNE_BATCH = 256;
/** `prune` stops reading when no message came for this long (the rest was removed meanwhile). */
const PRUNE_IDLE_MS = 2_000;

/**
 * A durable SagaStore on JetStream KV, two writes for a saga that commits: the intent
 * (a create of the saga's key in the `journal` bucket, before anything is dispatched)
 * and the outcome. Every write is a compare-and-set on the revision the coordinator last
 * wrote, so a coordinator that is no longer the saga's owner cannot write it. The
 * outcome closes the saga in the same write: it is a delete marker carrying the final
 * record, so the key leaves the listing of unfinished sagas at once while `load` and
 * `get` still find the outcome, and no other coordinator can write the key again. The
 * dead letter of a parked saga is part of its record, written in the same write. Final
 * records older than `keepMs` are removed by `prune`, which coordinators call as they
 * watch each other.
 *
 * @example
 * const runtime = createRuntime({ transport: natsTransport(nc), store: jetstreamSagaStore(nc), sagas: [trip] });
 * await runtime.recover();
 */
export function jetstreamSagaStore(nc: NatsConnection, options: JetStreamSagaStoreOptions = {}): SagaStore {
  if (nc === null || typeof nc !== 'object') throw new InvalidOptionError('nc', 'must be a NatsConnection');
  const bucketPrefix = options.bucketPrefix ?? 'saga';
  if (typeof bucketPrefix !== 'string' || !BUCKET.test(bucketPrefix)) throw new InvalidOptionError('bucketPrefix', `must match ${BUCKET.source}`);
  const keepMs = options.keepMs ?? 7 * 24 * 3600_000;
  if (!Number.isSafeInteger(keepMs) || keepMs < 0) throw new InvalidOptionError('keepMs', 'must be a whole number of milliseconds >= 0');
  const replicas = options.replicas ?? 1;
  if (![1, 3, 5].includes(replicas)) throw new InvalidOptionError('replicas', 'must be 1, 3 or 5');
  assertSafeReplication(nc, replicas, options.allowUnsafeServer);
  const attempts = options.attempts ?? 3;
  if (!Number.isSafeInteger(attempts) || attempts < 1) throw new InvalidOptionError('attempts', 'must be a whole number >= 1');
  const kvm = new Kvm(nc);
  const js = jetstream(nc);
  const publisher = groupPublisher(js);
  const journalBucket = `${bucketPrefix}_journal`;
  const open = (suffix: string, ttl: number) => kvm.create(`${bucketPrefix}_${suffix}`, { history: 1, replicas, allow_direct: false, ...(ttl > 0 ? { ttl } : {}) });
  let buckets: Promise<{ journal: KV; owners: KV }> | undefined;
  const kv = async () => {
    // Heartbeats of coordinators that stopped are forgotten after a day.
    buckets ??= Promise.all([open('journal', 0), open('owners', 24 * 3600_000)]).then(([journal, owners]) => ({ journal, owners }));
    try {
      return await buckets;
    } catch (error) {
      buckets = undefined;
      throw new TransportError('TRANSPORT_ERROR', `saga store: buckets '${journalBucket}' and '${bucketPrefix}_owners' unavailable: ${messageOf(error)}`, { cause: error });
    }
  };
  /** Retries a read a few times; a failure is a typed TRANSPORT_ERROR. */
  const reading = async <T>(what: string, fn: () => Promise<T>): Promise<T> => {
    for (let i = 1; ; i++) {
      try {
        return await fn();
      } catch (error) {
        if (i >= attempts) throw new TransportError('TRANSPORT_ERROR', `saga store: ${what} failed: ${messageOf(error)}`, { cause: error });
        await sleep(20 * 2 ** i);
      }
    }
  };
  const parse = (raw: RawEntry): SagaRecord | undefined => (raw.text === undefined ? undefined : (JSON.parse(raw.text) as SagaRecord));
  const load = async (sagaId: string): Promise<VersionedSagaRecord | undefined> => {
    const { journal } = await kv();
    const raw = await reading(`read of saga ${sagaId}`, () => readRaw(journal, kvKeyOf(sagaId)));
    const rec = parse(raw);
    if (rec === undefined) return undefined;
    // A closed saga takes no more writes: revision 0.
    return { record: rec, revision: raw.closed ? 0 : raw.revision };
  };
  const unfinished = async (): Promise<VersionedSagaRecord[]> => {
    const { journal } = await kv();
    const keys: string[] = [];
    // The listing leaves out delete markers: closed sagas.
    await reading('listing of unfinished sagas', async () => {
      keys.length = 0;
      for await (const key of await journal.keys()) keys.push(key);
    });
    const out: VersionedSagaRecord[] = [];
    for (const key of keys) {
      const raw = await reading(`read of ${key}`, () => readRaw(journal, key));
      const rec = parse(raw);
      if (rec !== undefined && !raw.closed) out.push({ record: rec, revision: raw.revision });
    }
    return out;
  };
  const writeJournal = async (record: SagaRecord, revision: number, what: string) => {
    const { journal } = await kv();
    const close = record.outcome !== undefined;
    return casWrite(casKey(journal, publisher, journalBucket, kvKeyOf(record.sagaId)), JSON.stringify(record), revision, attempts, `saga store: ${what} of saga ${record.sagaId}`, close);
  };

  return {
    begin: (record) => writeJournal(record, 0, 'intent'),
    write: (record, revision) => writeJournal(record, revision, 'journal'),
    load,
    get: async (sagaId) => (await load(sagaId))?.record,
    unfinished,
    async prune(signal) {
      if (keepMs === 0) return 0;
      await kv();
      const jsm = await jetstreamManager(nc);
      const stream = `KV_${journalBucket}`;
      const state = (await reading('journal stream info', () => jsm.streams.info(stream))).state;
      if (state.messages === 0) return 0;
      const horizonNanos = (Date.now() - keepMs) * 1e6;
      // Messages are in the order they were written: read from the oldest until one is younger than keepMs.
      const consumer = await js.consumers.get(stream, { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: state.first_seq, headers_only: true });
      const messages = await consumer.consume({ max_messages: PRUNE_BATCH });
      // Messages removed since the stream's state was read: nothing more may come. Stop once none came for a while.
      let idle: ReturnType<typeof setTimeout> | undefined;
      const watchIdle = () => {
        clearTimeout(idle);
        idle = setTimeout(() => void messages.stop(), PRUNE_IDLE_MS);
      };
      let pruned = 0;
      let old: { subject: string; seq: number }[] = [];
      // Up to the marker itself: a key written again since keeps its newer message.
      const purge = async () => {
        const batch = old;
        old = [];
        await Promise.all(batch.map(({ subject, seq }) => jsm.streams.purge(stream, { filter: subject, seq: seq + 1 })));
        pruned += batch.length;
      };
      try {
        watchIdle();
        for await (const m of messages) {
          watchIdle();
          if (signal?.aborted === true || m.info.timestampNanos >= horizonNanos) break;
          if (m.headers?.get(KV_OPERATION) === 'DEL') old.push({ subject: m.subject, seq: m.seq });
          if (old.length >= PRUNE_BATCH) await purge();
          if (m.info.pending === 0) break;
        }
        if (signal?.aborted !== true) await purge();
      } finally {
        clearTimeout(idle);
        await messages.close().catch(() => undefined);
      }
      return pruned;
    },
    async beat(owner) {
      const { owners } = await kv();
      await reading(`heartbeat of coordinator ${owner}`, () => owners.put(kvKeyOf(owner), String(Date.now())));
    },
    async retire(owner) {
      const { owners } = await kv();
      await reading(`retirement of coordinator ${owner}`, () => owners.delete(kvKeyOf(owner)));
    },
    async beats() {
      const { owners } = await kv();
      const out = new Map<string, number>();
      const keys: string[] = [];
      await reading('listing of coordinators', async () => {
        keys.length = 0;
        for await (const key of await owners.keys()) keys.push(key);
      });
      for (const key of keys) {
        const raw = await reading(`read of coordinator ${key}`, () => readRaw(owners, key));
        if (raw.text !== undefined) out.set(keyOfKvKey(key), raw.revision);
      }
      return out;
    },
    deadLetters: async () => (await unfinished()).flatMap(({ record }) => (record.status === 'parked' && record.deadLetter !== undefined ? [record.deadLetter] : [])),
  };
}
