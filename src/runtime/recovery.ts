/**
 * Recovery: taking unfinished sagas over from the store, after a coordinator restart
 * (recover()) or when the ownership watch finds a coordinator whose heartbeat stopped.
 */
import { startOwnership } from '../coordination/ownership.ts';
import type { Ownership } from '../coordination/ownership.ts';
import type { Served, VersionedSagaRecord } from '../types.ts';
import type { Live, SagaDriver } from './driver.ts';

/**
 * Takes an unfinished saga over from its journal (recover(), or the ownership watch):
 * undefined, with a warning, when this runtime lacks its definition or another
 * coordinator wrote it first.
 */
export async function adopt(driver: SagaDriver, found: VersionedSagaRecord): Promise<Live | undefined> {
  const rec = found.record;
  const def = driver.definitionOf(rec);
  if (def === undefined) {
    driver.logger.warn({ sagaId: rec.sagaId, saga: rec.saga, version: rec.version, owner: rec.owner }, 'cannot take over a saga whose definition this runtime was not given');
    return undefined;
  }
  const entry = await driver.takeOver(def, found);
  if (entry === undefined) driver.logger.warn({ sagaId: rec.sagaId }, 'another coordinator wrote this saga while it was being taken over: left to it');
  return entry;
}

/**
 * Restores unfinished sagas from the store and drives them on (see `Runtime.recover`),
 * once the workers hosted here are served. `ownershipLeaseMs`: heartbeats are on.
 */
export async function recover(driver: SagaDriver, serving: readonly Promise<Served>[], ownershipLeaseMs: number | undefined): Promise<string[]> {
  const { store, logger, ownerId } = driver;
  driver.ensureOpen();
  if (serving.length > 0) await Promise.all(serving);
  const restored: string[] = [];
  // Sagas of another coordinator with a heartbeat are its own while it lives: the
  // ownership watch takes them over once its heartbeat stops (a closed coordinator
  // removes its heartbeat; a restarted one with the same id recovers its own at once).
  const beating = ownershipLeaseMs !== undefined && store.beats !== undefined ? await store.beats() : new Map<string, number>();
  for (const found of await store.unfinished()) {
    driver.ensureOpen();
    const rec = found.record;
    if (driver.live.has(rec.sagaId)) continue;
    if (rec.owner !== undefined && rec.owner !== ownerId && beating.has(rec.owner) && rec.outcome === undefined) continue;
    if (rec.outcome !== undefined) {
      // Finished, its archiving interrupted.
      await store.archive?.(rec.sagaId).catch((error: unknown) => logger.warn({ err: error, sagaId: rec.sagaId }, 'could not archive a finished saga'));
      continue;
    }
    if ((await adopt(driver, found)) !== undefined) restored.push(rec.sagaId);
  }
  return restored;
}

/**
 * Starts heartbeating and the ownership watch, which takes over the running sagas of
 * coordinators whose heartbeat stopped, and takes up again this coordinator's own sagas
 * that it stopped while their journal could not be written.
 */
export function watchOwnership(driver: SagaDriver, leaseMs: number): Ownership {
  const { logger } = driver;
  return startOwnership({
    id: driver.ownerId,
    leaseMs,
    store: driver.store,
    clock: driver.clock,
    logger,
    strays: async () => {
      for (const sagaId of [...driver.stranded]) {
        if (driver.closed) return;
        if (driver.live.has(sagaId) || driver.isTakingOver(sagaId)) {
          driver.stranded.delete(sagaId);
          continue;
        }
        // A store that still fails throws here: the next tick tries again.
        const found = await driver.store.load(sagaId);
        if (found !== undefined && found.record.outcome === undefined && found.record.owner === driver.ownerId && !driver.live.has(sagaId)) {
          if ((await adopt(driver, found)) !== undefined) logger.warn({ sagaId }, 'took up again a saga stopped here while its journal could not be written');
        }
        driver.stranded.delete(sagaId);
      }
    },
    adopt: async (orphans) => {
      for (const found of orphans) {
        if (driver.closed) return;
        if (driver.live.has(found.record.sagaId)) continue;
        if ((await adopt(driver, found)) !== undefined) logger.info({ sagaId: found.record.sagaId, from: found.record.owner }, 'took over a saga of a coordinator that stopped');
      }
    },
  });
}
