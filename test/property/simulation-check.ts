/**
 * The simulation property, parameterised by a fault mix: random saga shapes (from
 * saga-shapes.ts) run on the real runtime in the simulated world of `simulate`, checked
 * against the ledger of the fake systems of record. simulation.property.test.ts runs the
 * broad mix; fault-mixes.property.test.ts runs narrower mixes that each make one kind of
 * dangerous interleaving common (swarm testing: a run with every fault at a low rate
 * rarely lines up the few faults a bug needs).
 */
import fc from 'fast-check';
import { simulate } from '../../src/testing/simulation.ts';
import type { FaultProfile } from '../../src/testing/simulation.ts';
import { faultProfileArbitrary, tapeArbitrary } from '../../src/testing/verify.ts';
import { operatorArb, paceArb, sagaOf, shapeArb } from './saga-shapes.ts';
import type { Pace, Shape } from './saga-shapes.ts';

export interface FaultMix {
  /** Upper bounds of the fault profile's draws (faultProfileArbitrary). */
  readonly max: Partial<FaultProfile>;
  /** Lower bounds applied to a drawn profile: these faults are always on at least this much. */
  readonly min?: Partial<Record<keyof FaultProfile, number>>;
  /** Reshapes a drawn saga shape (e.g. only stages, no retries). */
  readonly shape?: (s: Shape) => Shape;
  /** Reshapes a drawn pace (e.g. every step waits longer than a host's lease). */
  readonly pace?: (p: Pace, s: Shape) => Pace;
  /**
   * Draws a coordinator lease of 100 to 600 ms in most runs (default 1 s): a crashed
   * coordinator's sagas are then recovered while the faults still go on. Drawn last.
   */
  readonly shortCoordinatorLeases?: boolean;
}

export interface SimulationCheck {
  readonly runs: number;
  readonly failed: boolean;
  readonly seed: number;
  readonly path: string | undefined;
  /** The violations of the failing run, the shape, the faults and the run's trace. */
  readonly explanation: string;
  /** The properties the failing run broke (the first failing run when `endOnFailure`). */
  readonly violated: readonly string[];
  readonly outcomes: { committed: number; compensated: number; 'compensation-failed': number; parkedThenRetried: number; resolvedByOperator: number; reviews: number };
}

/**
 * Runs the simulation property over `numRuns` runs of a mix. A fixed `seed` replays the
 * same runs; SCATTER_SAGA_END_ON_FAILURE=1 reports the first failing run unshrunk;
 * SCATTER_SAGA_PATH replays one run.
 */
export async function checkSimulation(mix: FaultMix, options: { numRuns: number; seed: number | undefined; timeLimitMs: number; endOnFailure?: boolean }): Promise<SimulationCheck> {
  let runs = 0;
  let violated: string[] = [];
  const outcomes = { committed: 0, compensated: 0, 'compensation-failed': 0, parkedThenRetried: 0, resolvedByOperator: 0, reviews: 0 };
  let explanation = '';
  const leaseArb = mix.shortCoordinatorLeases ? fc.oneof(fc.constant(1_000), fc.integer({ min: 100, max: 600 }), fc.integer({ min: 100, max: 600 })) : fc.constant(undefined);
  // The operator, the pace and the lease come last, so that the arbitraries before them draw what they drew without them.
  const property = fc.asyncProperty(shapeArb, faultProfileArbitrary(mix.max), tapeArbitrary, fc.integer({ min: 1, max: 2 }), operatorArb, paceArb, leaseArb, async (drawnShape, drawn, tape, sagas, operator, drawnPace, lease) => {
    runs++;
    const shape = mix.shape ? mix.shape(drawnShape) : drawnShape;
    const pace = mix.pace ? mix.pace(drawnPace, shape) : drawnPace;
    const faults: FaultProfile = { ...drawn };
    for (const [k, v] of Object.entries(mix.min ?? {})) (faults as unknown as Record<string, number>)[k] = Math.max((faults as unknown as Record<string, number>)[k] ?? 0, v as number);
    const def = sagaOf(shape, pace);
    const profile: FaultProfile = { ...faults, stuck: operator.stuck, slow: Math.max(faults.slow ?? 0, pace.lapse), storeFail: Math.max(faults.storeFail ?? 0, pace.storeFail) };
    const r = await simulate(def, { tape, faults: profile, sagas, faultWindowMs: 800, resolve: operator.resolve, operatorTape: operator.tape, ...(lease !== undefined ? { coordinatorLeaseMs: lease } : {}) });
    for (const o of r.outcomes) if (o) outcomes[o.status]++;
    outcomes.parkedThenRetried += r.parked;
    outcomes.resolvedByOperator += r.resolved;
    outcomes.reviews += r.reviews;
    if (r.violations.length > 0) {
      violated = [...new Set(r.violations.map((v) => v.property))];
      explanation = [
        ...r.violations.map((v) => `${v.property}: ${v.message}`),
        `shape: ${JSON.stringify(shape)}`,
        `faults: ${JSON.stringify(profile)}`,
        `operator: ${JSON.stringify(operator)}`,
        `pace: ${JSON.stringify(pace)}`,
        ...(lease !== undefined ? [`coordinator lease: ${lease} ms`] : []),
        ...r.trace,
      ].join('\n');
      return false;
    }
    return true;
  });
  const details = await fc.check(property, {
    numRuns: options.numRuns,
    // Shrinking a failure stops after this long and reports the smallest run found so far;
    // a run that has not finished by then fails too.
    interruptAfterTimeLimit: options.timeLimitMs,
    markInterruptAsFailure: true,
    endOnFailure: options.endOnFailure === true || process.env.SCATTER_SAGA_END_ON_FAILURE === '1',
    ...(options.seed !== undefined ? { seed: options.seed } : {}),
    ...(process.env.SCATTER_SAGA_PATH !== undefined ? { path: process.env.SCATTER_SAGA_PATH } : {}),
  });
  return { runs, failed: details.failed, seed: details.seed, path: details.counterexamplePath ?? undefined, explanation, violated, outcomes };
}

/** The broad mix of simulation.property.test.ts: every fault on, at a low rate. */
export const BROAD_MIX: FaultMix = { max: { duplicate: 20, coordinatorCrashes: 2 } };

/** Every saga staged: join all, and each step after the one before it unless it names others. */
const staged = (s: Shape): Shape => ({ ...s, join: 'all', after: s.after.map((a, i) => (i === 0 ? [] : a.length > 0 ? a : [i - 1])) });
/** No retries: the first failure a step meets decides it. */
const noRetries = (s: Shape): Shape => ({ ...s, retries: s.retries.map(() => 0) });

/** The narrow mixes of fault-mixes.property.test.ts, by what each makes common. */
export const FAULT_MIXES = {
  'coordinators recover while the faults go on': {
    max: { coordinatorCrashes: 3, blackouts: 2, duplicate: 20, noResponders: 30, requestTooLarge: 20, connectionLoss: 30 },
    shape: staged,
    shortCoordinatorLeases: true,
  },
  'claims lapse and keys are taken over while dos run': {
    max: { duplicate: 60, doFail: 80 },
    min: { duplicate: 40, doFail: 50, storeFail: 30 },
    shape: noRetries,
    // Every step waits longer than a host's lease for its answer: the answer of a takeover reaches the saga.
    pace: (p, s) => ({ ...p, timeouts: p.timeouts.map((t, i) => t || 300 + 4 * (s.timeouts[i % s.timeouts.length] ?? 100)) }),
  },
  'hosts are cut off from the store while their dos run': {
    max: {},
    min: { slow: 40, storeFail: 50 },
    shape: noRetries,
  },
} satisfies Record<string, FaultMix>;
