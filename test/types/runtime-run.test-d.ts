/**
 * Type tests of `runtime.run`, run by vitest's typecheck mode (vitest.config.ts): nothing
 * here runs, the compiler checks it. `run(saga, input)` takes the saga's own input type and
 * resolves with an outcome whose committed `results` are typed by step id. Each
 * `@ts-expect-error` line must fail to compile, next to a twin that compiles.
 */
import { describe, expectTypeOf, test } from 'vitest';
import { createRuntime, defineSaga } from '../../src/index.ts';
import type { CommittedOutcome, Runtime, SagaDefinition, SagaOutcome } from '../../src/index.ts';
import { flights, hotels, payments, TRIP } from './workers.ts';
import type { Reservation, Trip } from './workers.ts';

const trip = defineSaga({
  name: 'trip',
  version: 1,
  steps: {
    flight: { worker: flights, input: (t: Trip) => t.flight },
    hotel: { worker: hotels, input: (t) => t.hotel },
    pay: { worker: payments, after: ['flight', 'hotel'], input: (t, r) => ({ amount: t.total, holds: [r.flight.ref, r.hotel.ref] }) },
  },
});

type TripResults = {
  readonly flight: Reservation & { seat: number };
  readonly hotel: Reservation;
  readonly pay: { chargeId: string };
};

declare const runtime: Runtime;

describe('run(saga, input)', () => {
  test('takes the saga input', () => {
    void runtime.run(trip, TRIP, { sagaId: 'trip-1' });
    void runtime.run(trip, { ...TRIP, total: 1 });
  });

  test('an input of another type does not compile', () => {
    void runtime.run(trip, { ...TRIP, total: 2 });
    // @ts-expect-error total must be a number
    void runtime.run(trip, { ...TRIP, total: '2' });
    // @ts-expect-error the hotel is missing
    void runtime.run(trip, { traveller: 'Ada', flight: TRIP.flight, total: 1 });
  });

  test("resolves with an outcome whose committed results are the saga's, by step id", async () => {
    const outcome = await runtime.run(trip, TRIP);
    expectTypeOf(outcome).toEqualTypeOf<SagaOutcome<TripResults>>();
    if (outcome.status === 'committed') {
      expectTypeOf(outcome).toEqualTypeOf<CommittedOutcome<TripResults>>();
      expectTypeOf(outcome.results.pay.chargeId).toEqualTypeOf<string>();
      expectTypeOf(outcome.results.flight.seat).toEqualTypeOf<number>();
    }
  });

  test('a result that is not there does not compile', async () => {
    const outcome = await runtime.run(trip, TRIP);
    if (outcome.status === 'committed') {
      void outcome.results.hotel;
      // @ts-expect-error the trip has no car step
      void outcome.results.car;
    }
  });

  test("results under join 'any' must be checked before use", async () => {
    const race = defineSaga({ name: 'race', version: 1, steps: { a: { worker: hotels }, b: { worker: hotels } }, join: { kind: 'any' } });
    const outcome = await runtime.run(race, TRIP.hotel);
    if (outcome.status === 'committed') {
      void outcome.results.a?.ref;
      // @ts-expect-error a may not have been kept
      void outcome.results.a.ref;
    }
  });

  test('a saga whose input is not typed takes any input, and its results stay untyped without a worker definition', async () => {
    const untyped = defineSaga({ name: 'named', version: 1, steps: { a: { worker: 'somewhere' } } });
    expectTypeOf(untyped).toEqualTypeOf<SagaDefinition<unknown, { readonly a: unknown }>>();
    const outcome = await runtime.run(untyped, { any: 'thing' });
    if (outcome.status === 'committed') expectTypeOf(outcome.results.a).toEqualTypeOf<unknown>();
  });

  test('createRuntime() returns a Runtime with the typed run', () => {
    expectTypeOf(createRuntime()).toEqualTypeOf<Runtime>();
  });
});

describe('start(saga, input)', () => {
  test('takes the saga input and resolves with the id and a typed outcome to come', async () => {
    const started = await runtime.start(trip, TRIP, { sagaId: 'trip-2' });
    expectTypeOf(started.sagaId).toEqualTypeOf<string>();
    expectTypeOf(started.outcome).toEqualTypeOf<Promise<SagaOutcome<TripResults>>>();
    // @ts-expect-error total must be a number
    void runtime.start(trip, { ...TRIP, total: '2' });
  });
});
