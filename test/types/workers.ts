/**
 * Typed workers and a saga input shared by the type tests of this directory
 * (*.test-d.ts). The tests only type-check them; nothing here runs.
 */
import { defineWorker, noCompensation } from '../../src/index.ts';

export interface Trip {
  readonly traveller: string;
  readonly flight: { from: string; to: string };
  readonly hotel: { city: string; nights: number };
  readonly total: number;
}

export interface Reservation {
  readonly ref: string;
}

/** Async `do`: its results are the awaited `Reservation & { seat }`. */
export const flights = defineWorker({
  name: 'flights',
  async do(req: Trip['flight']): Promise<Reservation & { seat: number }> {
    return { ref: `${req.from}-${req.to}`, seat: 12 };
  },
  async compensate() {},
});

/** Sync `do`: its results are its plain return type. */
export const hotels = defineWorker({
  name: 'hotels',
  do(req: Trip['hotel']): Reservation {
    return { ref: `${req.city}/${req.nights}` };
  },
  compensate() {},
});

/** Needs the results of earlier steps: its input can only come from an `input` function with `after`. */
export const payments = defineWorker({
  name: 'payments',
  async do(req: { amount: number; holds: string[] }): Promise<{ chargeId: string }> {
    return { chargeId: `${req.amount}:${req.holds.join(',')}` };
  },
  async compensate() {},
});

/** Takes the whole trip: a step using it needs no `input` function. */
export const audit = defineWorker({
  name: 'audit',
  do(trip: Trip): number {
    return trip.total;
  },
  compensate: noCompensation('an audit record is kept either way'),
});

export const TRIP: Trip = {
  traveller: 'Ada',
  flight: { from: 'LIS', to: 'OSL' },
  hotel: { city: 'Oslo', nights: 3 },
  total: 900,
};
