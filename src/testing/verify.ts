/**
 * verifySaga: model-checks and property-tests a user's own saga definition.
 *
 * 1. Every reachable state of the real saga machine built from the definition (its
 *    step count, join policy, stages and retry budgets, capped to keep the space
 *    finite) is checked against the guarantee (see model.ts).
 * 2. The real runtime and worker host run the saga many times on a simulated faulty
 *    transport and clock (see simulation.ts), with simulated workers whose systems of
 *    record are the oracle. Choices come from fast-check, so each failure carries a
 *    seed and a path that replay it.
 */
import fc from 'fast-check';
import { defineSaga } from '../define.ts';
import type { SagaDefinition, SagaSpec, StepSpec } from '../types.ts';
import { explainModelViolation, exploreSaga } from './model.ts';
import type { ModelViolation } from './model.ts';
import { simulate } from './simulation.ts';
import type { FaultProfile, SimulationViolation } from './simulation.ts';

/** The options of `verifySaga`. */
export interface VerifyOptions {
  /** Simulated runs. Default 200. 0 runs only the model check. */
  runs?: number;
  /** Replay a failure: the seed printed with it. */
  seed?: number;
  /** Replay a failure: the path printed with it (with its seed). */
  path?: string;
  /** Retry budgets used by the model check are capped at this (the space grows fast). Default 1. */
  modelRetryCap?: number;
  /** Skip the model check. Default false. */
  skipModel?: boolean;
  /** Input of each simulated saga. Default `{ n: sagaId }`. */
  input?: (sagaId: string) => unknown;
  /** Upper bounds of the faults fast-check may choose. */
  faults?: Partial<FaultProfile>;
  /** Stop the model check after this many states. Default 300_000. */
  maxStates?: number;
}

/** One broken property found by `verifySaga`, with what replays it. */
export interface VerifyViolation {
  /** The property that failed, e.g. `compensated-has-no-effect`. */
  readonly property: string;
  /** What went wrong, and the bad path: the events (model) or the faults and outcomes (simulation). */
  readonly explanation: string;
  /** The path to the bad state: events for the model check, the fast-check path for a simulated run. */
  readonly path: string;
  /** The fast-check seed that replays the run (undefined for model-check violations, which are deterministic). */
  readonly seed: number | undefined;
}

/** What `verifySaga` explored and found. */
export interface VerifyReport {
  readonly saga: string;
  /** States the model check explored. */
  readonly states: number;
  /** Transitions the model check took. */
  readonly transitions: number;
  /** Simulated runs made. */
  readonly runs: number;
  readonly violations: readonly VerifyViolation[];
  /** Throws an Error with a readable explanation of every violation; does nothing when there are none. */
  assert(): void;
}

/** Caps retry budgets so that the model check stays finite and small; everything else is kept. */
function capped(def: SagaDefinition, cap: number): SagaDefinition {
  const steps: Record<string, StepSpec> = {};
  for (const p of def.steps) {
    steps[p.id] = {
      worker: p.worker,
      input: p.input,
      after: p.after,
      timeoutMs: p.timeoutMs,
      retries: Math.min(p.retries, cap),
      backoff: p.backoff,
      compensation: { retries: Math.min(p.compensation.retries, cap), backoff: p.compensation.backoff, timeoutMs: p.compensation.timeoutMs },
    };
  }
  const spec: SagaSpec = { name: def.name, version: def.version, steps, join: def.join };
  return defineSaga(spec);
}

/** Shorter timeouts for the simulation (the simulated clock does not care, but runs take fewer ticks). */
function simulated(def: SagaDefinition): SagaDefinition {
  const steps: Record<string, StepSpec> = {};
  for (const p of def.steps) {
    const ms = (v: number) => Math.max(20, Math.min(v, 400));
    steps[p.id] = {
      worker: p.worker,
      input: p.input,
      after: p.after,
      timeoutMs: ms(p.timeoutMs),
      retries: Math.min(p.retries, 3),
      backoff: { initialMs: Math.min(p.backoff.initialMs, 50), factor: p.backoff.factor, maxMs: Math.min(p.backoff.maxMs, 200), jitter: p.backoff.jitter },
      compensation: {
        retries: Math.min(p.compensation.retries, 3),
        backoff: {
          initialMs: Math.min(p.compensation.backoff.initialMs, 50),
          factor: p.compensation.backoff.factor,
          maxMs: Math.min(p.compensation.backoff.maxMs, 200),
          jitter: p.compensation.backoff.jitter,
        },
        timeoutMs: ms(p.compensation.timeoutMs),
      },
    };
  }
  return defineSaga({ name: def.name, version: def.version, steps, join: def.join });
}

/** The fault profiles fast-check may pick, bounded by `max`. */
export function faultProfileArbitrary(max: Partial<FaultProfile> = {}): fc.Arbitrary<FaultProfile> {
  const m: Required<FaultProfile> = {
    drop: 20,
    duplicate: 20,
    maxDelayMs: 80,
    doFail: 40,
    compensateFail: 50,
    hostCrashes: 2,
    coordinatorCrashes: 2,
    hosts: 3,
    storeDelayMs: 40,
    garble: 10,
    oversize: 10,
    slow: 10,
    blackouts: 1,
    overload: 20,
    journalFail: 10,
    requestTimeout: 100,
    noResponders: 10,
    requestTooLarge: 5,
    connectionLoss: 10,
    ...max,
  };
  return fc.record({
    drop: fc.integer({ min: 0, max: m.drop }),
    duplicate: fc.integer({ min: 0, max: m.duplicate }),
    maxDelayMs: fc.integer({ min: 0, max: m.maxDelayMs }),
    doFail: fc.integer({ min: 0, max: m.doFail }),
    compensateFail: fc.integer({ min: 0, max: m.compensateFail }),
    hostCrashes: fc.integer({ min: 0, max: m.hostCrashes }),
    coordinatorCrashes: fc.integer({ min: 0, max: m.coordinatorCrashes }),
    hosts: fc.integer({ min: 1, max: Math.max(1, m.hosts) }),
    storeDelayMs: fc.integer({ min: 0, max: m.storeDelayMs }),
    garble: fc.integer({ min: 0, max: m.garble }),
    oversize: fc.integer({ min: 0, max: m.oversize }),
    slow: fc.integer({ min: 0, max: m.slow }),
    blackouts: fc.integer({ min: 0, max: m.blackouts }),
    overload: fc.integer({ min: 0, max: m.overload }),
    journalFail: fc.integer({ min: 0, max: m.journalFail }),
    requestTimeout: fc.integer({ min: 0, max: m.requestTimeout }),
    noResponders: fc.integer({ min: 0, max: m.noResponders }),
    requestTooLarge: fc.integer({ min: 0, max: m.requestTooLarge }),
    connectionLoss: fc.integer({ min: 0, max: m.connectionLoss }),
  });
}

/** The choice tape: shrinks toward zeros, which mean "no fault, no delay". */
export const tapeArbitrary = fc.array(fc.nat({ max: 0xffff }), { minLength: 100, maxLength: 400 });

function explainSimulation(v: SimulationViolation[], trace: readonly string[], faults: FaultProfile): string {
  return [
    ...v.map((x) => `${x.property}: ${x.message}`),
    `  faults: ${JSON.stringify(faults)}`,
    '  what happened:',
    ...trace.map((l) => `    ${l}`),
  ].join('\n');
}

/**
 * Model-checks and property-tests a saga definition with simulated workers.
 *
 * @example
 * import { verifySaga } from 'scatter-saga/testing';
 * test('trip never ends half-booked', async () => {
 *   (await verifySaga(trip, { runs: 300 })).assert();
 * });
 */
export async function verifySaga(definition: SagaDefinition, options: VerifyOptions = {}): Promise<VerifyReport> {
  const violations: VerifyViolation[] = [];
  let states = 0;
  let transitions = 0;
  if (!options.skipModel) {
    const r = exploreSaga(capped(definition, options.modelRetryCap ?? 1), {
      maxStates: options.maxStates ?? 300_000,
      ...(options.input ? { input: options.input('model') } : {}),
    });
    states = r.states;
    transitions = r.transitions;
    for (const v of r.violations as ModelViolation[]) {
      violations.push({ property: v.property, explanation: explainModelViolation(v), path: v.path.join(' -> '), seed: undefined });
    }
  }
  const runs = options.runs ?? 200;
  let made = 0;
  if (runs > 0) {
    const def = simulated(definition);
    let last: { violations: SimulationViolation[]; trace: readonly string[]; faults: FaultProfile } | undefined;
    const property = fc.asyncProperty(faultProfileArbitrary(options.faults), tapeArbitrary, fc.integer({ min: 1, max: 2 }), async (faults, tape, sagas) => {
      made++;
      const r = await simulate(def, { tape, faults, sagas, faultWindowMs: 1_000, ...(options.input ? { input: options.input } : {}) });
      if (r.violations.length > 0) {
        last = { violations: [...r.violations], trace: r.trace, faults };
        return false;
      }
      return true;
    });
    const details = await fc.check(property, {
      numRuns: runs,
      ...(options.seed !== undefined ? { seed: options.seed } : {}),
      ...(options.path !== undefined ? { path: options.path } : {}),
    });
    made = details.numRuns;
    if (details.failed) {
      const found = last as { violations: SimulationViolation[]; trace: readonly string[]; faults: FaultProfile } | undefined;
      // Replay the shrunk counterexample to explain it.
      const [faults, tape, sagas] = details.counterexample as [FaultProfile, number[], number];
      const again = await simulate(def, { tape, faults, sagas, faultWindowMs: 1_000, ...(options.input ? { input: options.input } : {}) });
      const v = again.violations.length > 0 ? { violations: [...again.violations], trace: again.trace, faults } : found;
      violations.push({
        property: v?.violations[0]?.property ?? 'simulation',
        explanation:
          (v ? explainSimulation(v.violations, v.trace, v.faults) : String(details.errorInstance)) +
          `\n  replay: verifySaga(def, { seed: ${details.seed}, path: '${details.counterexamplePath}' })`,
        path: details.counterexamplePath ?? '',
        seed: details.seed,
      });
    }
  }
  const report: VerifyReport = {
    saga: `${definition.name}@${definition.version}`,
    states,
    transitions,
    runs: made,
    violations,
    assert() {
      if (violations.length > 0) throw new Error(formatViolations(report.saga, violations));
    },
  };
  return report;
}

/** The text `assert()` throws: every violation with its explanation, path and seed. */
export function formatViolations(saga: string, violations: readonly VerifyViolation[]): string {
  return (
    `verifySaga(${saga}) found ${violations.length} violation(s) of the saga guarantee:\n\n` +
    violations.map((v, i) => `${i + 1}) ${v.explanation}${v.seed !== undefined ? `\n  seed ${v.seed}, path ${v.path}` : ''}`).join('\n\n')
  );
}

/** Verifies and fails the calling test with a readable explanation of every bad path. */
export async function assertSagaVerified(definition: SagaDefinition, options: VerifyOptions = {}): Promise<VerifyReport> {
  const report = await verifySaga(definition, options);
  report.assert();
  return report;
}
