/**
 * Type tests of defineSaga, run by vitest's typecheck mode (vitest.config.ts): nothing here
 * runs, the compiler checks it. Each `@ts-expect-error` line must fail to compile (an
 * unused one fails the test), and each sits next to a twin that compiles and differs only
 * in the mistake, so that the error is the one the test is about.
 */
import { describe, expectTypeOf, test } from 'vitest';
import { defineSaga } from '../../src/index.ts';
import type { SagaDefinition, SagaInputOf, SagaResultsOf, WorkerDefinition, WorkerInputOf, WorkerResultOf } from '../../src/index.ts';
import { audit, flights, hotels, payments } from './workers.ts';
import type { Reservation, Trip } from './workers.ts';

type FlightResult = Reservation & { seat: number };

describe("a step's input returns what its worker's do accepts", () => {
  test('the input function gets the saga input and returns the worker input', () => {
    defineSaga({
      name: 'trip',
      version: 1,
      steps: {
        flight: { worker: flights, input: (t: Trip) => t.flight },
        hotel: {
          worker: hotels,
          input: (t, results) => {
            expectTypeOf(t).toEqualTypeOf<Trip>();
            expectTypeOf(results).toEqualTypeOf<{}>();
            return t.hotel;
          },
        },
      },
    });
  });

  test('an input function returning something else does not compile', () => {
    defineSaga({
      name: 'trip',
      version: 1,
      steps: {
        flight: { worker: flights, input: (t: Trip) => t.flight },
        // @ts-expect-error flights takes { from, to }, not the hotel
        hotel: { worker: flights, input: (t: Trip) => t.hotel },
      },
    });
    defineSaga({
      name: 'trip',
      version: 1,
      steps: {
        flight: { worker: flights, input: (t: Trip) => t.flight },
        // @ts-expect-error a missing field: hotels needs nights
        hotel: { worker: hotels, input: (t) => ({ city: t.hotel.city }) },
      },
    });
  });

  test('a step without input passes the saga input: fine when its worker accepts it', () => {
    defineSaga({ name: 'audit', version: 1, steps: { flight: { worker: flights, input: (t: Trip) => t.flight }, audit: { worker: audit } } });
  });

  test('a step without input whose worker does not accept the saga input does not compile', () => {
    defineSaga({
      name: 'audit',
      version: 1,
      steps: {
        flight: { worker: flights, input: (t: Trip) => t.flight },
        // @ts-expect-error input is required: hotels does not take a Trip
        hotel: { worker: hotels },
      },
    });
  });

  test('a worker given by name takes anything: its input is not known here', () => {
    const saga = defineSaga({ name: 'named', version: 1, steps: { a: { worker: 'anything', input: (t: Trip) => [t.total, t.traveller] }, b: { worker: 'other' } } });
    expectTypeOf(saga).toEqualTypeOf<SagaDefinition<Trip, { readonly a: unknown; readonly b: unknown }>>();
  });

  test('WorkerInputOf and WorkerResultOf read a worker definition', () => {
    expectTypeOf<WorkerInputOf<typeof payments>>().toEqualTypeOf<{ amount: number; holds: string[] }>();
    expectTypeOf<WorkerResultOf<typeof payments>>().toEqualTypeOf<{ chargeId: string }>();
    expectTypeOf<WorkerResultOf<typeof hotels>>().toEqualTypeOf<Reservation>();
    expectTypeOf<WorkerInputOf<'by-name'>>().toEqualTypeOf<unknown>();
  });

  test('a worker declared with a Promise result type gives the awaited result', () => {
    expectTypeOf<WorkerResultOf<WorkerDefinition<string, Promise<{ ok: true }>>>>().toEqualTypeOf<{ ok: true }>();
    const declared = {} as WorkerDefinition<Trip['hotel'], Promise<Reservation>>;
    const saga = defineSaga({ name: 'declared', version: 1, steps: { hotel: { worker: declared, input: (t: Trip) => t.hotel } } });
    expectTypeOf<SagaResultsOf<typeof saga>>().toEqualTypeOf<{ readonly hotel: Reservation }>();
  });
});

describe('results are typed from each worker (awaited), by step id', () => {
  test("a later step's input sees the results of the steps it runs after", () => {
    defineSaga({
      name: 'trip',
      version: 1,
      steps: {
        flight: { worker: flights, input: (t: Trip) => t.flight },
        hotel: { worker: hotels, input: (t) => t.hotel },
        pay: {
          worker: payments,
          after: ['flight', 'hotel'],
          input: (t, r) => {
            expectTypeOf(r).toEqualTypeOf<{ readonly flight: FlightResult; readonly hotel: Reservation }>();
            return { amount: t.total, holds: [r.flight.ref, r.hotel.ref] };
          },
        },
      },
    });
  });

  test("a step does not see the results of steps it does not run after", () => {
    defineSaga({
      name: 'trip',
      version: 1,
      steps: {
        flight: { worker: flights, input: (t: Trip) => t.flight },
        hotel: { worker: hotels, input: (t) => t.hotel },
        pay: { worker: payments, after: ['flight', 'hotel'], input: (t, r) => ({ amount: t.total, holds: [r.hotel.ref] }) },
      },
    });
    defineSaga({
      name: 'trip',
      version: 1,
      steps: {
        flight: { worker: flights, input: (t: Trip) => t.flight },
        hotel: { worker: hotels, input: (t) => t.hotel },
        // @ts-expect-error pay runs after flight only: no hotel result
        pay: { worker: payments, after: ['flight'], input: (t, r) => ({ amount: t.total, holds: [r.hotel.ref] }) },
      },
    });
  });

  test('a result is used as its type: a wrong use does not compile', () => {
    defineSaga({
      name: 'trip',
      version: 1,
      steps: {
        flight: { worker: flights, input: (t: Trip) => t.flight },
        pay: { worker: payments, after: ['flight'], input: (t, r) => ({ amount: r.flight.seat, holds: [] }) },
      },
    });
    defineSaga({
      name: 'trip',
      version: 1,
      steps: {
        flight: { worker: flights, input: (t: Trip) => t.flight },
        // @ts-expect-error seat is a number, holds are strings
        pay: { worker: payments, after: ['flight'], input: (t, r) => ({ amount: t.total, holds: [r.flight.seat] }) },
      },
    });
  });

  test('the order of the steps in the object does not matter', () => {
    defineSaga({
      name: 'trip',
      version: 1,
      steps: {
        pay: { worker: payments, after: ['flight'], input: (t, r) => ({ amount: t.total, holds: [r.flight.ref] }) },
        flight: { worker: flights, input: (t: Trip) => t.flight },
      },
    });
  });

  test('the definition carries the saga input and the committed results by step id', () => {
    const trip = defineSaga({
      name: 'trip',
      version: 1,
      steps: {
        flight: { worker: flights, input: (t: Trip) => t.flight },
        hotel: { worker: hotels, input: (t) => t.hotel },
        pay: { worker: payments, after: ['flight', 'hotel'], input: (t, r) => ({ amount: t.total, holds: [r.flight.ref, r.hotel.ref] }) },
        audit: { worker: audit },
      },
    });
    expectTypeOf<SagaInputOf<typeof trip>>().toEqualTypeOf<Trip>();
    expectTypeOf<SagaResultsOf<typeof trip>>().toEqualTypeOf<{
      readonly flight: FlightResult;
      readonly hotel: Reservation;
      readonly pay: { chargeId: string };
      readonly audit: number;
    }>();
  });

  test("under join 'any' and 'quorum' only the kept steps' results are there: each may be missing", () => {
    const any = defineSaga({ name: 'any', version: 1, steps: { a: { worker: hotels }, b: { worker: hotels } }, join: { kind: 'any' } });
    expectTypeOf<SagaResultsOf<typeof any>>().toEqualTypeOf<{ readonly a?: Reservation; readonly b?: Reservation }>();
    const quorum = defineSaga({ name: 'q', version: 1, steps: { a: { worker: hotels }, b: { worker: flights } }, join: { kind: 'quorum', n: 1 } });
    expectTypeOf<SagaResultsOf<typeof quorum>>().toEqualTypeOf<{ readonly a?: Reservation; readonly b?: FlightResult }>();
    const all = defineSaga({ name: 'all', version: 1, steps: { a: { worker: hotels }, b: { worker: hotels } }, join: { kind: 'all' } });
    expectTypeOf<SagaResultsOf<typeof all>>().toEqualTypeOf<{ readonly a: Reservation; readonly b: Reservation }>();
  });
});

describe('after accepts only step ids of the same saga', () => {
  test('ids of other steps compile', () => {
    defineSaga({ name: 's', version: 1, steps: { a: { worker: 'w' }, b: { worker: 'w', after: ['a'] }, c: { worker: 'w', after: ['a', 'b'] } } });
  });

  test('an unknown id does not compile', () => {
    // @ts-expect-error 'nope' is not a step of this saga
    defineSaga({ name: 's', version: 1, steps: { a: { worker: 'w' }, b: { worker: 'w', after: ['nope'] } } });
  });

  test('a step of another saga does not compile', () => {
    defineSaga({ name: 'one', version: 1, steps: { flight: { worker: 'w' } } });
    // @ts-expect-error flight is a step of the other saga
    defineSaga({ name: 'two', version: 1, steps: { hotel: { worker: 'w' }, pay: { worker: 'w', after: ['flight'] } } });
  });

  test('a step after itself does not compile', () => {
    // @ts-expect-error b cannot run after b
    defineSaga({ name: 's', version: 1, steps: { a: { worker: 'w' }, b: { worker: 'w', after: ['a', 'b'] } } });
  });

  test('a string[] the compiler cannot see into is left to the run-time check, and may hold any result', () => {
    const deps: string[] = ['flight'];
    defineSaga({
      name: 'trip',
      version: 1,
      steps: {
        flight: { worker: flights, input: (t: Trip) => t.flight },
        pay: {
          worker: payments,
          after: deps,
          input: (t, r) => {
            expectTypeOf(r).toEqualTypeOf<{ readonly flight?: FlightResult; readonly pay?: { chargeId: string } }>();
            return { amount: t.total, holds: r.flight ? [r.flight.ref] : [] };
          },
        },
      },
    });
  });
});

describe('inference needs no type arguments', () => {
  test('the saga input is inferred from any step whose input annotates it, wherever it is', () => {
    const saga = defineSaga({
      name: 'trip',
      version: 1,
      steps: {
        hotel: { worker: hotels, input: (t) => t.hotel },
        flight: { worker: flights, input: (t: Trip) => t.flight },
      },
    });
    expectTypeOf(saga).toEqualTypeOf<SagaDefinition<Trip, { readonly hotel: Reservation; readonly flight: FlightResult }>>();
  });

  test('a saga input nobody annotates is unknown: using it does not compile', () => {
    const saga = defineSaga({ name: 's', version: 1, steps: { flight: { worker: flights, input: () => ({ from: 'LIS', to: 'OSL' }) } } });
    expectTypeOf<SagaInputOf<typeof saga>>().toEqualTypeOf<unknown>();
    // @ts-expect-error t is unknown
    defineSaga({ name: 's', version: 1, steps: { flight: { worker: flights, input: (t) => t.flight } } });
  });

  test('an explicit defineSaga<TIn>(...) still compiles, with the step ids unchecked and the results untyped', () => {
    const saga = defineSaga<Trip>({
      name: 'trip',
      version: 1,
      steps: {
        flight: { worker: flights, input: (t) => t.flight },
        pay: { worker: 'payments', after: ['flight'], input: (t, r) => ({ amount: t.total, flight: r['flight'] }) },
      },
      join: { kind: 'any' },
    });
    expectTypeOf(saga).toEqualTypeOf<SagaDefinition<Trip, Readonly<Record<string, unknown>>>>();
  });
});
