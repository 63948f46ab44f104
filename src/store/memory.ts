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

export interface MemorySagaStoreOptions {
  /** Keep finished sagas' journals (for status look-ups). Default 10_000 most recent. */
  keepFinished?: number;
  clock?: Clock;
}

/**
 * Journals in this process, with the same compare-and-set revisions as a durable store:
 * a coordinator that shares it with another (tests, recovery in one process) is fenced
 * off the sagas the other took over.
 */
export function memorySagaStore(options: MemorySagaStoreOptions = {}): SagaStore {
  const keepFinished = options.keepFinished ?? 10_000;
  if (!Number.isSafeInteger(keepFinished) || keepFinished < 0) throw new InvalidOptionError('keepFinished', 'must be a whole number >= 0');
  const live = new Map<string, VersionedSagaRecord>();
  const finished = new Map<string, SagaRecord>();
  let revision = 0;

  return {
    async begin(record) {
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
      finished.set(sagaId, cur.record);
      // Oldest first: a Map iterates in insertion order.
      for (const id of finished.keys()) {
        if (finished.size <= keepFinished) break;
        finished.delete(id);
      }
    },
    async load(sagaId) {
      const cur = live.get(sagaId);
      if (cur !== undefined) return cur;
      const done = finished.get(sagaId);
      return done === undefined ? undefined : { record: done, revision: 0 };
    },
    async get(sagaId) {
      return live.get(sagaId)?.record ?? finished.get(sagaId);
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
  /** Every write as [the worker's entries, key, entry written]; an entry since replaced is stale. */
  let queue: [Map<string, VersionedKeyRecord>, string, VersionedKeyRecord][] = [];
  let head = 0;
  const ABSENT: VersionedKeyRecord = Object.freeze({ record: undefined, revision: 0 });

  const sweep = () => {
    const oldest = clock.now() - windowMs;
    while (head < queue.length) {
      const [entries, k, entry] = queue[head] as [Map<string, VersionedKeyRecord>, string, VersionedKeyRecord];
      if (entries.get(k) !== entry) {
        head++; // superseded by a later write
        continue;
      }
      if ((entry.record as KeyRecord).updatedAt > oldest && size <= maxRecords) break;
      entries.delete(k);
      size--;
      head++;
    }
    if (head > 1024 && head * 2 > queue.length) {
      queue = queue.slice(head);
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
      queue.push([entries, key, entry]);
      sweep();
      return entry.revision;
    },
    get size() {
      return size;
    },
  };
}
