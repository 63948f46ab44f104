/**
 * The trip-booking example, proved with verifySaga: its own copy of the trip saga
 * (flight, hotel and car in parallel, then a payment once all three hold).
 */
import { expect, test } from 'vitest';
import { defineSaga } from '../../src/index.ts';
import { verifySaga } from '../../src/testing/index.ts';

interface Trip {
  flight: { from: string; to: string };
  hotel: { city: string; nights: number };
  car: { city: string };
}

const trip = defineSaga<Trip>({
  name: 'trip',
  version: 1,
  steps: {
    flight: { worker: 'flights', input: (t) => t.flight, timeoutMs: 2_000, retries: 1 },
    hotel: { worker: 'hotels', input: (t) => t.hotel, timeoutMs: 2_000 },
    car: { worker: 'cars', input: (t) => t.car, timeoutMs: 2_000 },
    pay: { worker: 'payments', input: (t, r) => ({ city: t.hotel.city, holds: Object.keys(r).sort() }), after: ['flight', 'hotel', 'car'] },
  },
  join: { kind: 'all' },
  compensation: { retries: 2, backoff: { initialMs: 100, factor: 2, maxMs: 1_000 } },
});

const input = (sagaId: string): Trip => ({ flight: { from: 'CDG', to: sagaId }, hotel: { city: 'Lisbon', nights: 2 }, car: { city: 'Lisbon' } });

test('the trip saga never ends half-booked (an exhaustive model check + 150 simulated faulty runs)', async () => {
  // With its step retry in the model, the space passes 300,000 states; without it the check
  // is exhaustive, and the simulation's runs exercise the retry.
  const report = await verifySaga(trip, { runs: 150, input, seed: 20_261_122, modelRetryCap: 0 });
  console.log(`[verifySaga] ${report.saga}: ${report.states} states, ${report.transitions} transitions, ${report.runs} runs, ${report.violations.length} violations`);
  expect(report.states).toBeGreaterThan(100);
  expect(report.exhaustive).toBe(true);
  expect(report.runs).toBe(150);
  expect(report.violations).toEqual([]);
  report.assert();
}, 180_000);
