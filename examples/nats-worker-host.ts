/**
 * A worker host for the trip booking: serves `flights`, `hotels` and `cars` over NATS,
 * with durable dedup in JetStream KV so a restarted host remembers every key.
 *
 *   NATS_URL=nats://127.0.0.1:4222 npx tsx examples/nats-worker-host.ts
 *
 * Start as many as you like: they share the work through a queue group. SIGTERM
 * drains (finishes what it took, takes nothing new) and exits.
 */
import { connect } from '@nats-io/transport-node';
import pino from 'pino';
import { defineWorker, TerminalError } from '../src/index.ts';
import type { DedupStore } from '../src/index.ts';
import { jetstreamDedupStore, serveWorkers } from '../src/nats.ts';

interface Leg {
  city: string;
  date: string;
}

const logger = pino({ level: process.env.LOG_LEVEL ?? 'info' });
const url = process.env.NATS_URL ?? 'nats://127.0.0.1:4222';
const nc = await connect({ servers: url, name: `trip-worker-host-${process.pid}`, noAsyncTraces: true });

/** A stand-in for a provider API that honours idempotency keys. */
function provider(kind: string) {
  const bookings = new Map<string, { ref: string; cancelled: boolean }>();
  return {
    book(leg: Leg, key: string) {
      const known = bookings.get(key);
      if (known !== undefined) return known.ref;
      const ref = `${kind.slice(0, 3).toUpperCase()}-${key.slice(0, 6)}`;
      bookings.set(key, { ref, cancelled: false });
      logger.info({ kind, city: leg.city, ref }, 'booked');
      return ref;
    },
    cancel(key: string) {
      const b = bookings.get(key);
      if (b !== undefined && !b.cancelled) {
        b.cancelled = true;
        logger.info({ kind, ref: b.ref }, 'cancelled');
      }
    },
  };
}

const airline = provider('flight');
const hotelChain = provider('hotel');
const carRental = provider('car');

const flights = defineWorker({
  name: 'flights',
  do: (leg: Leg, ctx) => ({ reservation: airline.book(leg, ctx.idempotencyKey) }),
  compensate: (_leg, _result, ctx) => airline.cancel(ctx.idempotencyKey),
});

const hotels = defineWorker({
  name: 'hotels',
  do: (leg: Leg, ctx) => {
    if (leg.city === 'Atlantis') throw new TerminalError(`no hotel rooms in ${leg.city}`);
    return { reservation: hotelChain.book(leg, ctx.idempotencyKey) };
  },
  compensate: (_leg, _result, ctx) => hotelChain.cancel(ctx.idempotencyKey),
});

const cars = defineWorker({
  name: 'cars',
  do: (leg: Leg, ctx) => ({ reservation: carRental.book(leg, ctx.idempotencyKey) }),
  compensate: (_leg, _result, ctx) => carRental.cancel(ctx.idempotencyKey),
});

let dedup: DedupStore | undefined;
if (nc.info?.jetstream === true) {
  dedup = jetstreamDedupStore(nc);
} else {
  logger.warn({ url }, 'this nats-server has no JetStream (start it with -js): dedup records live in memory only');
}

const host = await serveWorkers(nc, [flights, hotels, cars], { logger, ...(dedup !== undefined ? { dedup } : {}) });
logger.info({ url, workers: host.workers, pid: process.pid }, 'worker host ready');
void host.drained.then(() => nc.close());
