/**
 * In-memory stores: the embedded default. The saga store keeps journals and dead
 * letters for the life of the process; the dedup store keeps worker-host key records
 * for the dedup window.
 */
import type { Clock, DeadLetter, DedupStore, KeyRecord, SagaRecord, SagaStore, VersionedKeyRecord, VersionedSagaRecord } from '../types.ts';
import { systemClock } from '../clock.ts';
import { InvalidOptionError } from '../errors.ts';

/** Default time an in-memory worker host remembers a key: 1 hour (use JetStream KV for longer). */
export const DEFAULT_DEDUP_WINDOW_MS = 60 * 60 * 1000;
/** Default bound on the keys an in-memory dedup store keeps; the least recently changed go first. */
export const DEFAULT_DEDUP_MAX_RECORDS = 100_000;

/** The options of `memorySagaStore`. */
export interface MemorySagaStoreOptions {
  /** Keep at most this many finished sagas' journals (for status look-ups and run() by sagaId). Default 10_000 most recent. */
  keepFinished?: number;
  /** Forget a finished saga's journal this long after it finished. Default 7 days (as `jetstreamSagaStore`). */
  keepMs?: number;
  clock?: Clock;
}

/** A memory saga store also says how many journals it holds. */
export interface MemorySagaStore extends SagaStore {
  /** Moves a finished saga from the live journals to the finished ones. Idempotent. */
  archive(sagaId: string): Promise<void>;
  /** Journals of sagas not finished (running or parked), and of finished ones still kept. */
  readonly size: { readonly live: number; readonly finished: number };
}

/**
 * Journals in this process, with the same compare-and-set revisions as a durable store:
 * a coordinator that shares it with another (tests, recovery in one process) is fenced
 * off the sagas the other took over.
 */
export function memorySagaStore(options: MemorySagaStoreOptions = {}): MemorySagaStore {
  const keepFinished = options.keepFinished ?? 10_000;
  if (!Number.isSafeInteger(keepFinished) || keepFinished < 0) throw new InvalidOptionError('keepFinished', 'must be a whole number >= 0');
  const keepMs = options.keepMs ?? 7 * 24 * 3600_000;
  if (typeof keepMs !== 'number' || !(keepMs >= 0)) throw new InvalidOptionError('keepMs', 'must be a number of milliseconds >= 0');
  const clock = options.clock ?? systemClock;
  const live = new Map<string, VersionedSagaRecord>();
  /** Finished journals and when they were archived, oldest first (a Map iterates in insertion order). */
  const finished = new Map<string, { record: SagaRecord; at: number }>();
  let revision = 0;
  const heartbeats = new Map<string, number>();
  let beatRevision = 0;
  const forgetOld = () => {
    const oldest = clock.now() - keepMs;
    for (const [id, f] of finished) {
      if (finished.size <= keepFinished && f.at >= oldest) break;
      finished.delete(id);
    }
  };

  return {
    async beat(owner) {
      heartbeats.set(owner, ++beatRevision);
    },
    async beats() {
      return new Map(heartbeats);
    },
    async retire(owner) {
      heartbeats.delete(owner);
    },
    get size() {
      forgetOld();
      return { live: live.size, finished: finished.size };
    },
    async begin(record) {
      forgetOld();
      if (live.has(record.sagaId) || finished.has(record.sagaId)) return undefined;
      live.set(record.sagaId, { record, revision: ++revision });
      return revision;
    },
    async write(record, expected) {
      const cur = live.get(record.sagaId);
      if (cur === undefined || cur.revision !== expected) return undefined;
      live.set(record.sagaId, { record, revision: ++revision });
      return revision;
    },
    async archive(sagaId) {
      const cur = live.get(sagaId);
      if (cur === undefined) return;
      live.delete(sagaId);
      finished.set(sagaId, { record: cur.record, at: clock.now() });
      forgetOld();
    },
    async load(sagaId) {
      const cur = live.get(sagaId);
      if (cur !== undefined) return cur;
      forgetOld();
      const done = finished.get(sagaId);
      return done === undefined ? undefined : { record: done.record, revision: 0 };
    },
    async get(sagaId) {
      const cur = live.get(sagaId);
      if (cur !== undefined) return cur.record;
      forgetOld();
      return finished.get(sagaId)?.record;
    },
    async unfinished() {
      return [...live.values()];
    },
    async deadLetters() {
      const out: DeadLetter[] = [];
      for (const { record } of live.values()) if (record.status === 'parked' && record.deadLetter !== undefined) out.push(record.deadLetter);
      return out;
    },
  };
}

/** The options of `memoryDedupStore`. */
export interface MemoryDedupStoreOptions {
  /** How long a key is remembered after its last change. Default 1 hour. */
  windowMs?: number;
  /**
   * At most this many keys are kept; past it the least recently changed are forgotten
   * early. Default 100_000. A forgotten key is still undone correctly (a compensate for an
   * unknown key runs the worker's compensate), but a duplicate `do` delayed past its
   * record's life would run again: size the bound to the traffic, or use JetStream KV.
   */
  maxRecords?: number;
  clock?: Clock;
}

/**
 * Key records by worker and key, with a compare-and-set revision each, and a queue of
 * writes in time order so expiry and the size bound are a sweep from the queue's head:
 * O(1) amortized per write. (Sweeping a Map from its start instead would skip ever more
 * deleted slots: quadratic.) Hosts in one process may share it as hosts of a worker
 * share a JetStream KV bucket.
 */
export function memoryDedupStore(options: MemoryDedupStoreOptions = {}): DedupStore & { readonly size: number } {
  const windowMs = options.windowMs ?? DEFAULT_DEDUP_WINDOW_MS;
  const maxRecords = options.maxRecords ?? DEFAULT_DEDUP_MAX_RECORDS;
  if (!(windowMs > 0)) throw new InvalidOptionError('windowMs', 'must be a number of milliseconds > 0');
  if (!Number.isSafeInteger(maxRecords) || maxRecords < 1) throw new InvalidOptionError('maxRecords', 'must be a whole number >= 1');
  const clock = options.clock ?? systemClock;
  /** worker -> key -> entry: no joined key strings to build and hash on every call. */
  const byWorker = new Map<string, Map<string, VersionedKeyRecord>>();
  let size = 0;
  let revision = 0;
  /**
   * Every write in time order, as three parallel columns: the worker's entries, the key and
   * the revision written. A write since replaced is stale; it holds no record (a superseded
   * record is garbage at once) and costs no object of its own.
   */
  let maps: Map<string, VersionedKeyRecord>[] = [];
  let keys: string[] = [];
  let revisions: number[] = [];
  let head = 0;
  const ABSENT: VersionedKeyRecord = Object.freeze({ record: undefined, revision: 0 });

  const sweep = () => {
    const oldest = clock.now() - windowMs;
    while (head < keys.length) {
      const entries = maps[head] as Map<string, VersionedKeyRecord>;
      const k = keys[head] as string;
      const entry = entries.get(k);
      if (entry === undefined || entry.revision !== revisions[head]) {
        head++; // superseded by a later write
        continue;
      }
      if ((entry.record as KeyRecord).updatedAt > oldest && size <= maxRecords) break;
      entries.delete(k);
      size--;
      head++;
    }
    if (head > 1024 && head * 2 > keys.length) {
      maps = maps.slice(head);
      keys = keys.slice(head);
      revisions = revisions.slice(head);
      head = 0;
    }
  };

  return {
    read(worker, key) {
      const entry = byWorker.get(worker)?.get(key);
      if (entry === undefined) return ABSENT;
      // Past the window: forgotten, but a write must still name the revision it replaces.
      if ((entry.record as KeyRecord).updatedAt <= clock.now() - windowMs) return { record: undefined, revision: entry.revision };
      return entry;
    },
    write(worker, key, record, expected) {
      let entries = byWorker.get(worker);
      if (entries === undefined) byWorker.set(worker, (entries = new Map()));
      const current = entries.get(key)?.revision ?? 0;
      if (current !== expected) return undefined;
      const entry: VersionedKeyRecord = { record, revision: ++revision };
      if (current === 0) size++;
      entries.set(key, entry);
      maps.push(entries);
      keys.push(key);
      revisions.push(entry.revision);
      sweep();
      return entry.revision;
    },
    get size() {
      return size;
    },
  };
}
