/**
 * Ownership of sagas among coordinators that share one saga store. A saga belongs to the
 * coordinator that wrote its journal last (`SagaRecord.owner`). Each coordinator records
 * a heartbeat in the store (every `beatInterval(leaseMs)`); each watches the others'
 * heartbeat revisions.
 * A coordinator whose revision has not changed for `leaseMs` (by the watcher's own
 * clock, so clocks need not agree) is presumed dead, and the watcher takes its running
 * sagas over: a journal write with compare-and-set on the revision read fences the old
 * owner off, should it still be alive.
 *
 * The bookkeeping is pure (`observe`); `startOwnership` is the loop at the edge.
 */
import type { Logger } from 'pino';
import type { Clock, SagaStore, VersionedSagaRecord } from '../types.ts';

/** What a watcher knows of one coordinator: its last heartbeat revision and when that changed. */
export interface Seen {
  readonly revision: number;
  readonly since: number;
}

/**
 * Folds one reading of every heartbeat into what the watcher knows. A coordinator seen
 * for the first time (or that owns a saga but has no heartbeat at all: revision -1)
 * counts from now.
 */
export function observe(seen: ReadonlyMap<string, Seen>, beats: ReadonlyMap<string, number>, owners: Iterable<string>, now: number): Map<string, Seen> {
  const next = new Map(seen);
  for (const [owner, revision] of beats) {
    const s = next.get(owner);
    if (s === undefined || s.revision !== revision) next.set(owner, { revision, since: now });
  }
  for (const owner of owners) if (!next.has(owner)) next.set(owner, { revision: -1, since: now });
  return next;
}

/** Whether `owner` is presumed dead: no heartbeat change for longer than `leaseMs`. */
export function isDead(seen: ReadonlyMap<string, Seen>, owner: string, self: string, now: number, leaseMs: number): boolean {
  if (owner === self) return false;
  const s = seen.get(owner);
  return s !== undefined && now - s.since > leaseMs;
}

export interface OwnershipOptions {
  readonly id: string;
  readonly leaseMs: number;
  readonly store: SagaStore;
  readonly clock: Clock;
  readonly logger: Logger;
  /** Running sagas of dead coordinators: take them over (each with a compare-and-set write). */
  readonly adopt: (orphans: VersionedSagaRecord[]) => Promise<void>;
  /** This coordinator's own sagas that nothing drives (its journal failed): take them up again. Called every tick. */
  readonly strays?: () => Promise<void>;
}

export interface Ownership {
  /** Stops heartbeating and watching, and removes this coordinator's heartbeat (it closed: it is not alive). */
  stop(): Promise<void>;
}

/** Heartbeat and watch interval: often enough that a takeover comes within the lease plus a second. */
export function beatInterval(leaseMs: number): number {
  return Math.max(10, Math.min(500, Math.floor(leaseMs / 4)));
}

/**
 * How often a watcher lists the unfinished sagas although no heartbeat it knows stopped:
 * it finds the sagas of coordinators it never saw beat (one that closed or died before
 * this watcher started, its heartbeat removed or expired).
 */
export function sweepInterval(leaseMs: number): number {
  return Math.max(10 * leaseMs, 60_000);
}

/** Starts heartbeating and watching. A store without `beat`/`beats` gets none of it. */
export function startOwnership(o: OwnershipOptions): Ownership {
  const { store, clock, id, leaseMs, logger } = o;
  let stopped = false;
  let timer: unknown;
  if (store.beat === undefined || store.beats === undefined) return { stop: async () => undefined };
  const beat = store.beat.bind(store);
  const beats = store.beats.bind(store);
  let seen = new Map<string, Seen>();
  /** Dead coordinators whose sagas were swept, and when: swept again once per lease while they stay dead. */
  const swept = new Map<string, number>();
  const every = beatInterval(leaseMs);
  /** When the unfinished sagas are listed next even if no known coordinator is due: at once on start. */
  let nextSweep = clock.now();
  /** The store's retention (`prune`): at most one at a time, about once per sweep interval, aborted on stop. */
  let nextPrune = clock.now();
  let pruning: Promise<void> | undefined;
  const abort = new AbortController();
  const prune = () => {
    const now = clock.now();
    if (store.prune === undefined || pruning !== undefined || now < nextPrune || stopped) return;
    nextPrune = now + sweepInterval(leaseMs);
    pruning = store
      .prune(abort.signal)
      .then(
        (removed) => void (removed > 0 && logger.info({ coordinator: id, removed }, 'removed the final records of sagas past the store retention')),
        (error: unknown) => logger.warn({ err: error, coordinator: id }, 'could not remove old final records; trying again later'),
      )
      .finally(() => (pruning = undefined));
  };

  const tick = async () => {
    try {
      await beat(id);
      await o.strays?.();
      prune();
      const now = clock.now();
      seen = observe(seen, await beats(), [], now);
      const due = [...seen.keys()].filter((owner) => isDead(seen, owner, id, now, leaseMs) && now - (swept.get(owner) ?? -Infinity) > leaseMs);
      if ((due.length === 0 && now < nextSweep) || stopped) return;
      const unfinished = await store.unfinished();
      const at = clock.now();
      // Owners never seen beating (one that died before its first heartbeat, or stopped
      // before this watcher started) count from now: listed again once their lease is over.
      const owners = unfinished.map((v) => v.record.owner ?? '');
      const unseen = owners.some((owner) => owner !== id && !seen.has(owner));
      seen = observe(seen, new Map(), owners, at);
      nextSweep = at + (unseen ? leaseMs + every : sweepInterval(leaseMs));
      for (const owner of due) swept.set(owner, at);
      const orphans = unfinished.filter((v) => v.record.status === 'running' && v.record.outcome === undefined && isDead(seen, v.record.owner ?? '', id, at, leaseMs));
      if (orphans.length > 0 && !stopped) {
        logger.warn({ coordinator: id, dead: due, sagas: orphans.length }, 'taking over the sagas of coordinators that stopped');
        await o.adopt(orphans);
      }
    } catch (error) {
      logger.warn({ err: error, coordinator: id }, 'ownership: heartbeat or takeover failed; trying again');
    }
  };
  let ticking: Promise<void> = Promise.resolve();
  const loop = () => {
    if (stopped) return;
    timer = clock.setTimeout(() => {
      ticking = tick().finally(loop);
    }, every);
    (timer as { unref?: () => void })?.unref?.();
  };
  ticking = tick().finally(loop);
  return {
    async stop() {
      stopped = true;
      abort.abort();
      if (timer !== undefined) clock.clearTimeout(timer);
      await ticking.catch(() => undefined);
      await pruning;
      await store.retire?.(id).catch((error: unknown) => logger.warn({ err: error, coordinator: id }, 'could not remove the heartbeat of this coordinator'));
    },
  };
}
