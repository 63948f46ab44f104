/**
 * The trip-booking demo: a flight, a hotel and a car reserved in parallel against
 * three fake systems of record, on the embedded runtime (no server needed).
 *
 *   npm start                 # in a clone (examples/trip-booking.ts)
 *   npx scatter-saga demo     # from the installed package
 *
 * Three scenarios: everything succeeds; the hotel fails, so flight and car are
 * cancelled; the hotel answers too late, so it is treated as in doubt, and its late
 * success is undone too. After each, what every system of record holds.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { createRuntime, defineSaga, defineWorker, TerminalError } from '../index.ts';
import type { SagaOutcome } from '../index.ts';
import { SystemOfRecord } from './systems-of-record.ts';

export interface Trip {
  traveller: string;
  flight: { from: string; to: string };
  hotel: { city: string; nights: number };
  car: { city: string };
}

export type HotelBehaviour = 'ok' | 'fails' | 'slow';

export interface ScenarioResult {
  name: string;
  outcome: SagaOutcome;
  held: { flights: number; hotels: number; cars: number };
}

/**
 * Builds the three workers against fresh systems of record, and the saga. `carCancel`, when
 * given, is asked before each car cancellation and may throw (the rental's line is down).
 */
export function buildTrip(hotelBehaviour: (req: Trip['hotel']) => HotelBehaviour, carCancel?: (key: string, city: string) => void) {
  const airline = new SystemOfRecord('airline');
  const hotelChain = new SystemOfRecord('hotel');
  const carRental = new SystemOfRecord('cars');

  const flights = defineWorker({
    name: 'flights',
    async do(req: Trip['flight'], ctx) {
      return airline.reserve(ctx.idempotencyKey, `${req.from} -> ${req.to}`);
    },
    async compensate(_req, _res, ctx) {
      airline.cancel(ctx.idempotencyKey);
    },
  });

  const hotels = defineWorker({
    name: 'hotels',
    async do(req: Trip['hotel'], ctx) {
      const behaviour = hotelBehaviour(req);
      if (behaviour === 'fails') throw new TerminalError(`no rooms left in ${req.city}`);
      if (behaviour === 'slow') await sleep(300); // longer than the step's 100 ms timeout
      return hotelChain.reserve(ctx.idempotencyKey, `${req.nights} nights in ${req.city}`);
    },
    async compensate(_req, _res, ctx) {
      hotelChain.cancel(ctx.idempotencyKey);
    },
  });

  const cars = defineWorker({
    name: 'cars',
    async do(req: Trip['car'], ctx) {
      return carRental.reserve(ctx.idempotencyKey, `car in ${req.city}`);
    },
    async compensate(req, _res, ctx) {
      carCancel?.(ctx.idempotencyKey, req.city);
      carRental.cancel(ctx.idempotencyKey);
    },
  });

  const trip = defineSaga({
    name: 'trip',
    version: 1,
    steps: {
      flight: { worker: flights, input: (t: Trip) => t.flight, timeoutMs: 2_000 },
      hotel: { worker: hotels, input: (t: Trip) => t.hotel, timeoutMs: 100 },
      car: { worker: cars, input: (t: Trip) => t.car, timeoutMs: 2_000 },
    },
    join: { kind: 'all' },
    compensation: { retries: 5, backoff: { initialMs: 50, factor: 2, maxMs: 1_000 } },
  });

  return { trip, workers: [flights, hotels, cars] as const, systems: { airline, hotelChain, carRental } };
}

const TRIP: Trip = {
  traveller: 'Ada',
  flight: { from: 'LIS', to: 'OSL' },
  hotel: { city: 'Oslo', nights: 3 },
  car: { city: 'Oslo' },
};

/** Runs one scenario on a fresh embedded runtime; reports the outcome and what each system holds after it. */
export async function runScenario(name: string, behaviour: HotelBehaviour): Promise<ScenarioResult & { report: string }> {
  const { trip, workers, systems } = buildTrip(() => behaviour);
  const runtime = createRuntime();
  runtime.host(...workers);
  // For the slow hotel, run resolves only once the late reservation has been undone too.
  const outcome = await runtime.run(trip, TRIP);
  await runtime.close();
  return {
    name,
    outcome,
    held: { flights: systems.airline.held.size, hotels: systems.hotelChain.held.size, cars: systems.carRental.held.size },
    report: [
      `   airline holds: ${systems.airline.describe()}`,
      `   hotel holds:   ${systems.hotelChain.describe()}`,
      `   cars holds:    ${systems.carRental.describe()}`,
    ].join('\n'),
  };
}

function show(r: ScenarioResult, systems: string) {
  const o = r.outcome;
  console.log(`\n== ${r.name}`);
  switch (o.status) {
    case 'committed':
      console.log(`   outcome: committed — ${Object.entries(o.results).map(([k, v]) => `${k} ${(v as { ref: string }).ref}`).join(', ')}`);
      break;
    case 'compensated':
      console.log(`   outcome: compensated — ${o.failures.map((f) => `${f.stepId} ${f.reason}: ${f.error.message}`).join('; ')}`);
      console.log(`   undone:  ${o.compensated.join(', ') || 'nothing'}`);
      break;
    case 'compensation-failed':
      console.log(`   outcome: compensation FAILED — still held: ${o.remaining.map((x) => x.stepId).join(', ')}`);
      break;
  }
  console.log(systems);
}

export async function main(): Promise<ScenarioResult[]> {
  console.log('scatter-saga demo: reserve a flight, a hotel and a car in parallel; never half-committed.');
  const results: ScenarioResult[] = [];
  for (const [name, behaviour] of [
    ['1. everything succeeds', 'ok'],
    ['2. the hotel is full: flight and car are cancelled', 'fails'],
    ['3. the hotel answers after its 100 ms timeout: in doubt, so undone, late success included', 'slow'],
  ] as const) {
    const r = await runScenario(name, behaviour);
    results.push(r);
    show(r, r.report);
  }
  console.log('');
  return results;
}

/** The options of `runConsoleDemo`. */
export interface ConsoleDemoOptions {
  port?: number;
  host?: string;
  /** A line for the user. */
  say(line: string): void;
  /** Resolves when the demo must stop (Ctrl-C). */
  stopped: Promise<unknown>;
}

/** Where the demo's trips go, in turn: most commit, some are compensated, one in six parks. */
const CONSOLE_TRIPS: readonly { traveller: string; city: string }[] = [
  { traveller: 'Ada', city: 'Oslo' },
  { traveller: 'Grace', city: 'Lisbon' },
  { traveller: 'Alan', city: 'Atlantis' }, // no hotel there: flight and car are cancelled
  { traveller: 'Edsger', city: 'Oslo' },
  { traveller: 'Barbara', city: 'Slowtown' }, // the hotel answers too late: in doubt, undone
  { traveller: 'Leslie', city: 'Reykjavik' }, // no hotel, and the car rental's cancellations are down: parks
];

/**
 * The demo with the web console: trips keep coming on the embedded runtime, one every
 * 1.5 s, and the console (served in this process) shows them commit, compensate and park.
 * A parked trip's car cancellation works again once the saga has given up: an operator's
 * retry from the console then ends it compensated.
 */
export async function runConsoleDemo(o: ConsoleDemoOptions): Promise<void> {
  const { serveRuntimeConsole } = await import('../console/server.ts');
  /** Car cancellation attempts per key for trips to Reykjavik: the first six fail (the saga's 1 + 5 retries). */
  const attempts = new Map<string, number>();
  const { trip, workers } = buildTrip(
    (req) => (req.city === 'Atlantis' || req.city === 'Reykjavik' ? 'fails' : req.city === 'Slowtown' ? 'slow' : 'ok'),
    (key, city) => {
      if (city !== 'Reykjavik') return;
      const n = (attempts.get(key) ?? 0) + 1;
      attempts.set(key, n);
      if (n <= 6) throw new Error('the car rental cannot take cancellations right now');
    },
  );
  const runtime = createRuntime().host(...workers);
  const server = await serveRuntimeConsole(runtime, [trip], { ...(o.port !== undefined ? { port: o.port } : {}), ...(o.host !== undefined ? { host: o.host } : {}) });
  o.say(`scatter-saga demo: the console is at ${server.url}`);
  o.say('A trip every 1.5 s: most commit; Atlantis has no hotel (compensated); Slowtown answers too late (compensated); Reykjavik parks (its car cannot be cancelled): retry it from the console. Ctrl-C stops.');
  let n = 0;
  let stop = false;
  void o.stopped.then(() => (stop = true));
  while (!stop) {
    const t = CONSOLE_TRIPS[n % CONSOLE_TRIPS.length] as { traveller: string; city: string };
    n++;
    const input: Trip = { traveller: t.traveller, flight: { from: 'LIS', to: t.city }, hotel: { city: t.city, nights: 2 }, car: { city: t.city } };
    runtime.run(trip, input, { sagaId: `trip-${n}-${t.city.toLowerCase()}` }).catch(() => undefined);
    await Promise.race([sleep(1_500), o.stopped]);
  }
  await server.close();
  await runtime.close({ drainMs: 1_000 });
}
