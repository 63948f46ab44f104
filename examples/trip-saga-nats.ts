/**
 * The saga of the NATS trip example (examples/trip-booking-nats.ts): its workers run in
 * another process (examples/nats-worker-host.ts), so the saga names them.
 */
import { defineSaga } from '../src/index.ts';

export interface Leg {
  city: string;
  date: string;
}
export interface Trip {
  traveller: string;
  flight: Leg;
  hotel: Leg;
  car: Leg;
}

export const trip = defineSaga({
  name: 'trip',
  version: 1,
  steps: {
    flight: { worker: 'flights', input: (t: Trip) => t.flight, timeoutMs: 2_000 },
    hotel: { worker: 'hotels', input: (t: Trip) => t.hotel, timeoutMs: 2_000 },
    car: { worker: 'cars', input: (t: Trip) => t.car, timeoutMs: 2_000 },
  },
  compensation: { retries: 5, backoff: { initialMs: 100, factor: 2, maxMs: 2_000 } },
});
