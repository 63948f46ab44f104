/**
 * In-memory stores: the embedded default. The saga store keeps journals and dead
 * letters for the life of the process; the dedup store keeps worker-host key records
 * for the dedup window.
 */
import type { DeadLetter, DedupStore, KeyRecord, SagaOutcome, SagaRecord, SagaStore, Clock } from '../types.ts';
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

export function memorySagaStore(options: MemorySagaStoreOptions = {}): SagaStore {
  const keepFinished = options.keepFinished ?? 10_000;
  const clock = options.clock ?? systemClock;
  const records = new Map<string, SagaRecord>();
  let finished: string[] = [];
  let oldest = 0;
  const letters = new Map<string, DeadLetter>();

  const update = (sagaId: string, patch: Partial<SagaRecord>) => {
    const rec = records.get(sagaId);
    if (rec !== undefined) records.set(sagaId, { ...rec, ...patch, updatedAt: clock.now() });
  };

  return {
    async begin(record) {
      records.set(record.sagaId, record);
    },
    async checkpoint(sagaId, snapshot, status) {
      update(sagaId, { snapshot, status });
    },
    async finish(sagaId, outcome: SagaOutcome) {
      update(sagaId, { outcome, status: outcome.status === 'committed' ? 'committed' : 'compensated' });
      letters.delete(sagaId);
      finished.push(sagaId);
      while (finished.length - oldest > keepFinished) records.delete(finished[oldest++] as string);
      if (oldest > 1024 && oldest * 2 > finished.length) {
        finished = finished.slice(oldest);
        oldest = 0;
      }
    },
    async park(letter) {
      letters.set(letter.sagaId, letter);
      update(letter.sagaId, { status: 'parked' });
    },
    async unpark(sagaId) {
      letters.delete(sagaId);
      update(sagaId, { status: 'running' });
    },
    async get(sagaId) {
      return records.get(sagaId);
    },
    async deadLetters() {
      return [...letters.values()];
    },
    async unfinished() {
      return [...records.values()].filter((r) => r.status === 'running' || r.status === 'parked');
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
 * Key records by worker and key, with a queue of writes in time order so expiry and the
 * size bound are a sweep from the queue's head: O(1) amortized per write. (Sweeping a
 * Map from its start instead would skip ever more deleted slots: quadratic.)
 */
export function memoryDedupStore(options: MemoryDedupStoreOptions = {}): DedupStore & { readonly size: number } {
  const windowMs = options.windowMs ?? DEFAULT_DEDUP_WINDOW_MS;
  const maxRecords = options.maxRecords ?? DEFAULT_DEDUP_MAX_RECORDS;
  if (!(windowMs > 0)) throw new InvalidOptionError('windowMs', 'must be a number of milliseconds > 0');
  if (!Number.isSafeInteger(maxRecords) || maxRecords < 1) throw new InvalidOptionError('maxRecords', 'must be a whole number >= 1');
  const clock = options.clock ?? systemClock;
  /** worker -> key -> record: no joined key strings to build and hash on every call. */
  const byWorker = new Map<string, Map<string, KeyRecord>>();
  let size = 0;
  /** Every write as [the worker's records, key, record written]; an entry whose record was since replaced is stale. */
  let queue: [Map<string, KeyRecord>, string, KeyRecord][] = [];
  let head = 0;

  const sweep = () => {
    const oldest = clock.now() - windowMs;
    while (head < queue.length) {
      const [records, k, rec] = queue[head] as [Map<string, KeyRecord>, string, KeyRecord];
      if (records.get(k) !== rec) {
        head++; // superseded by a later write
        continue;
      }
      if (rec.updatedAt > oldest && size <= maxRecords) break;
      records.delete(k);
      size--;
      head++;
    }
    if (head > 1024 && head * 2 > queue.length) {
      queue = queue.slice(head);
      head = 0;
    }
  };

  return {
    get(worker, key) {
      const rec = byWorker.get(worker)?.get(key);
      if (rec !== undefined && rec.updatedAt <= clock.now() - windowMs) return undefined;
      return rec;
    },
    set(worker, key, record) {
      let records = byWorker.get(worker);
      if (records === undefined) byWorker.set(worker, (records = new Map()));
      const before = records.size;
      records.set(key, record);
      size += records.size - before;
      queue.push([records, key, record]);
      sweep();
    },
    get size() {
      return size;
    },
  };
}
