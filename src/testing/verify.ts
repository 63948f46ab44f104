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
import { defineSaga, isDefinedSaga } from '../define.ts';
import { InvalidOptionError, SagaDefinitionError, threwText } from '../errors.ts';
import { assertSerializable, rootStepInput } from '../machines/serializable.ts';
import type { Backoff, SagaDefinition, SagaSpec, StepPlan, StepSpec } from '../types.ts';
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
  /**
   * Stop the model check after this many states (an integer >= 1). Default 300_000. A
   * check that stops here is not exhaustive: the report says `truncated`, and `assert()`
   * fails unless `allowPartial` is true.
   */
  maxStates?: number;
  /** Let `assert()` (and `assertSagaVerified`) pass a model check that `maxStates` stopped before it covered every state. Default false. */
  allowPartial?: boolean;
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
  /** The saga verified, as `name@version`. */
  readonly saga: string;
  /** Distinct states the model check reached (0 when it was skipped); with `truncated`, it equals `maxStates`. */
  readonly states: number;
  /** Events the model check applied, over all states reached (ignored ones included). */
  readonly transitions: number;
  /** True when the model check ran and covered every reachable state: nothing was left out. */
  readonly exhaustive: boolean;
  /** True when the model check stopped at `maxStates` with states left unexplored: a partial check. */
  readonly truncated: boolean;
  /** The bound the model check ran with; undefined when it was skipped. */
  readonly maxStates: number | undefined;
  /** Whether `assert()` accepts a truncated model check (the `allowPartial` option). */
  readonly allowPartial: boolean;
  /** Simulated runs made. */
  readonly runs: number;
  /** What broke, model check first; empty when nothing did in what was explored. */
  readonly violations: readonly VerifyViolation[];
  /**
   * Throws an Error with a readable explanation of every violation, and when the model
   * check was truncated (unless `allowPartial`), one saying where it stopped and how to
   * raise `maxStates` or opt in. Does nothing otherwise.
   */
  assert(): void;
  /**
   * One line: the model check (states, transitions, exhaustive or `truncated at N states
   * (not exhaustive)`, or skipped), the simulated runs and the violations.
   */
  toString(): string;
}

/**
 * The definition again, with each step's timing and budgets changed by `tune`: its worker,
 * input, `after` and gate, the join and the undo order are kept.
 */
function retuned(def: SagaDefinition, tune: (p: StepPlan) => Pick<StepSpec, 'timeoutMs' | 'retries' | 'backoff' | 'compensation'>): SagaDefinition {
  const steps: Record<string, StepSpec> = {};
  for (const p of def.steps) {
    steps[p.id] = { worker: p.worker, input: p.input, after: p.after, ...(p.gate !== undefined ? { gate: p.gate as StepSpec['gate'] } : {}), ...tune(p) };
  }
  const spec: SagaSpec = { name: def.name, version: def.version, steps, join: def.join, compensation: { order: def.compensationOrder } };
  return defineSaga(spec);
}

/** Caps retry budgets so that the model check stays finite and small; everything else is kept. */
function capped(def: SagaDefinition, cap: number): SagaDefinition {
  return retuned(def, (p) => ({
    timeoutMs: p.timeoutMs,
    retries: Math.min(p.retries, cap),
    backoff: p.backoff,
    compensation: { retries: Math.min(p.compensation.retries, cap), backoff: p.compensation.backoff, timeoutMs: p.compensation.timeoutMs },
  }));
}

/** Shorter timeouts for the simulation (the simulated clock does not care, but runs take fewer ticks). */
function simulated(def: SagaDefinition): SagaDefinition {
  const ms = (v: number) => Math.max(20, Math.min(v, 400));
  const shorter = (b: Backoff): Backoff => ({ initialMs: Math.min(b.initialMs, 50), factor: b.factor, maxMs: Math.min(b.maxMs, 200), jitter: b.jitter });
  return retuned(def, (p) => ({
    timeoutMs: ms(p.timeoutMs),
    retries: Math.min(p.retries, 3),
    backoff: shorter(p.backoff),
    compensation: { retries: Math.min(p.compensation.retries, 3), backoff: shorter(p.compensation.backoff), timeoutMs: ms(p.compensation.timeoutMs) },
  }));
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
    stuck: 0,
    storeFail: 0,
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
    // Only when asked for: the profiles drawn without it stay what they were.
    ...(m.stuck > 0 ? { stuck: fc.integer({ min: 0, max: m.stuck }) } : {}),
    ...(m.storeFail > 0 ? { storeFail: fc.integer({ min: 0, max: m.storeFail }) } : {}),
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
  checkDefinition(definition);
  checkOptions(options);
  checkInputs(definition, options);
  const violations: VerifyViolation[] = [];
  let states = 0;
  let transitions = 0;
  let truncated = false;
  const maxStates = options.skipModel ? undefined : (options.maxStates ?? DEFAULT_MAX_STATES);
  if (maxStates !== undefined) {
    const r = exploreSaga(capped(definition, options.modelRetryCap ?? 1), {
      maxStates,
      ...(options.input ? { input: options.input('model') } : {}),
    });
    states = r.states;
    transitions = r.transitions;
    truncated = r.truncated;
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
  const allowPartial = options.allowPartial === true;
  const report: VerifyReport = {
    saga: `${definition.name}@${definition.version}`,
    states,
    transitions,
    exhaustive: maxStates !== undefined && !truncated,
    truncated,
    maxStates,
    allowPartial,
    runs: made,
    violations,
    assert() {
      const problems: string[] = [];
      if (violations.length > 0) problems.push(formatViolations(report.saga, violations));
      if (truncated && !allowPartial) problems.push(formatTruncated(report));
      if (problems.length > 0) throw new Error(problems.join('\n\n'));
    },
    toString() {
      return formatSummary(report);
    },
  };
  return report;
}

/** The default bound of the model check (`maxStates`). */
const DEFAULT_MAX_STATES = 300_000;

/** The text `assert()` throws for a model check that `maxStates` stopped: where it stopped, and what to do. */
function formatTruncated(r: VerifyReport): string {
  return (
    `verifySaga(${r.saga}): the model check stopped at maxStates ${r.maxStates} after ${r.states} states and ${r.transitions} transitions, ` +
    'with reachable states left unexplored, so it is not exhaustive and says nothing about them. ' +
    `Raise maxStates above ${r.maxStates} (see "Sizing maxStates" in docs/testing.md), lower modelRetryCap, ` +
    'or pass allowPartial: true to accept a partial check.'
  );
}

/** The one-line summary of a report (its `toString()`). A truncated check never reads as a clean one. */
function formatSummary(r: VerifyReport): string {
  const model =
    r.maxStates === undefined
      ? 'model check skipped'
      : r.truncated
        ? `model check truncated at ${r.maxStates} states (not exhaustive), ${r.transitions} transitions${r.allowPartial ? ', allowed by allowPartial' : ''}`
        : `model check exhaustive: ${r.states} states, ${r.transitions} transitions`;
  const found = r.truncated ? `${r.violations.length} violation(s) in the part explored` : `${r.violations.length} violation(s)`;
  return `verifySaga(${r.saga}): ${model}; ${r.runs} simulated run(s); ${found}`;
}

/** The options `verifySaga` takes; anything else is refused. */
const OPTION_NAMES: readonly (keyof VerifyOptions)[] = ['runs', 'seed', 'path', 'modelRetryCap', 'skipModel', 'input', 'faults', 'maxStates', 'allowPartial'];

/** The fault bounds `faults` takes: percentages, counts and milliseconds, each with its range. */
const FAULT_RANGES: Readonly<Record<keyof FaultProfile, readonly [number, number, string]>> = {
  drop: [0, 100, 'a percentage'],
  duplicate: [0, 100, 'a percentage'],
  maxDelayMs: [0, 60_000, 'milliseconds'],
  doFail: [0, 100, 'a percentage'],
  compensateFail: [0, 100, 'a percentage'],
  hostCrashes: [0, 3, 'a count'],
  coordinatorCrashes: [0, 3, 'a count'],
  hosts: [1, 3, 'hosts per worker'],
  storeDelayMs: [0, 60_000, 'milliseconds'],
  garble: [0, 100, 'a percentage'],
  oversize: [0, 100, 'a percentage'],
  slow: [0, 100, 'a percentage'],
  blackouts: [0, 3, 'a count'],
  overload: [0, 100, 'a percentage'],
  journalFail: [0, 100, 'a percentage'],
  requestTimeout: [0, 100, 'a percentage'],
  noResponders: [0, 100, 'a percentage'],
  requestTooLarge: [0, 100, 'a percentage'],
  connectionLoss: [0, 100, 'a percentage'],
  stuck: [0, 100, 'a percentage'],
  storeFail: [0, 100, 'a percentage'],
};

/** How a wrong value reads in an error: `got -1`, `got "5"`, `got a function`. */
function got(v: unknown): string {
  if (typeof v === 'number') return `got ${String(v)}`;
  if (typeof v === 'string') return `got the string ${JSON.stringify(v)}`;
  if (v === null || v === undefined || typeof v === 'boolean') return `got ${String(v)}`;
  if (typeof v === 'bigint') return `got the BigInt ${String(v)}n`;
  return `got ${Array.isArray(v) ? 'an array' : typeof v === 'function' ? 'a function' : `a ${typeof v}`}`;
}

/** A known name one or two edits from `name` (or equal but for case), to suggest. */
function near(name: string, known: readonly string[]): string | undefined {
  const distance = (a: string, b: string): number => {
    const row = Array.from({ length: b.length + 1 }, (_, j) => j);
    for (let i = 1; i <= a.length; i++) {
      let diag = row[0] as number;
      row[0] = i;
      for (let j = 1; j <= b.length; j++) {
        const up = row[j] as number;
        row[j] = Math.min(up + 1, (row[j - 1] as number) + 1, diag + (a[i - 1] === b[j - 1] ? 0 : 1));
        diag = up;
      }
    }
    return row[b.length] as number;
  };
  return known.find((k) => k.toLowerCase() === name.toLowerCase()) ?? known.find((k) => distance(k.toLowerCase(), name.toLowerCase()) <= 2);
}

function unknownKeys(obj: object, known: readonly string[], prefix: string, of: string): void {
  for (const key of Object.keys(obj)) {
    if (known.includes(key)) continue;
    const hint = near(key, known);
    throw new InvalidOptionError(`${prefix}${key}`, `unknown option of ${of} (allowed: ${known.join(', ')})${hint !== undefined ? `; did you mean '${prefix}${hint}'?` : ''}`);
  }
}

function integerIn(name: string, v: unknown, min: number, max: number, what: string): void {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
    const range = max === Number.MAX_SAFE_INTEGER ? `>= ${min}` : `from ${min} to ${max}`;
    throw new InvalidOptionError(name, `must be an integer ${range} (${what}), ${got(v)}`);
  }
}

function boolean(name: string, v: unknown): void {
  if (v !== undefined && typeof v !== 'boolean') throw new InvalidOptionError(name, `must be true or false, ${got(v)}`);
}

/** Refuses anything that is not a saga definition returned by defineSaga, before anything runs. */
function checkDefinition(definition: unknown): asserts definition is SagaDefinition {
  if (isDefinedSaga(definition)) return;
  const what =
    definition === null || typeof definition !== 'object'
      ? got(definition)
      : (definition as { kind?: unknown }).kind === 'saga'
        ? 'got an object that defineSaga did not return (a copy, or one made by hand): pass the definition defineSaga returned'
        : 'got an object without kind: "saga"';
  throw new SagaDefinitionError(`verifySaga needs a saga made with defineSaga(...), ${what}`);
}

/** Refuses unknown options and values out of range, naming the option and what it allows. */
function checkOptions(options: unknown): asserts options is VerifyOptions {
  if (options === null || typeof options !== 'object' || Array.isArray(options)) throw new InvalidOptionError('options', `must be an object of verifySaga options, ${got(options)}`);
  unknownKeys(options, OPTION_NAMES, '', 'verifySaga');
  const o = options as Record<string, unknown>;
  const max = Number.MAX_SAFE_INTEGER;
  if (o.runs !== undefined) integerIn('runs', o.runs, 0, max, 'simulated runs; 0 runs only the model check');
  if (o.maxStates !== undefined) integerIn('maxStates', o.maxStates, 1, max, 'states the model check may reach');
  if (o.modelRetryCap !== undefined) integerIn('modelRetryCap', o.modelRetryCap, 0, 10, 'the cap on retry budgets in the model check');
  if (o.seed !== undefined) integerIn('seed', o.seed, -0x80000000, 0x7fffffff, 'a fast-check seed, as printed with a failure');
  if (o.path !== undefined) {
    if (typeof o.path !== 'string' || !/^\d+(:\d+)*$/.test(o.path)) throw new InvalidOptionError('path', `must be a fast-check path such as '17:3:0', as printed with a failure, ${got(o.path)}`);
    if (o.seed === undefined) throw new InvalidOptionError('path', 'replays a failure only with its seed: pass the seed printed with it too');
  }
  boolean('skipModel', o.skipModel);
  boolean('allowPartial', o.allowPartial);
  if (o.input !== undefined && typeof o.input !== 'function') throw new InvalidOptionError('input', `must be a function (sagaId) => saga input, ${got(o.input)}`);
  if (o.faults !== undefined) {
    if (o.faults === null || typeof o.faults !== 'object' || Array.isArray(o.faults)) throw new InvalidOptionError('faults', `must be an object of fault bounds, ${got(o.faults)}`);
    unknownKeys(o.faults, Object.keys(FAULT_RANGES), 'faults.', 'verifySaga');
    for (const [key, value] of Object.entries(o.faults as Record<string, unknown>)) {
      const [lo, hi, what] = FAULT_RANGES[key as keyof FaultProfile];
      integerIn(`faults.${key}`, value, lo, hi, what);
    }
  }
  if (o.skipModel === true && o.runs === 0) throw new InvalidOptionError('runs', 'is 0 and skipModel is true: nothing would be verified');
}

/**
 * Computes every saga input the check will use (the model's and the simulated sagas') and
 * the inputs of the first steps, and refuses any that is not plain JSON or whose function
 * throws: misuse, reported before anything runs rather than as a violation of the guarantee.
 */
function checkInputs(def: SagaDefinition, options: VerifyOptions): void {
  const ids = [...(options.skipModel ? [] : ['model']), ...((options.runs ?? 200) > 0 ? ['saga-0', 'saga-1'] : [])];
  for (const id of ids) {
    let input: unknown;
    if (options.input === undefined) input = id === 'model' ? null : { n: id };
    else {
      try {
        input = options.input(id);
      } catch (error) {
        throw new InvalidOptionError('input', threwText(error, `input('${id}')`));
      }
    }
    assertSerializable(input, `input('${id}')`, def.name);
    for (const p of def.steps) {
      if (p.after.length > 0) continue;
      const given = options.input === undefined && id === 'model' ? ' (the model check starts the saga with the input null when the input option is not given: pass input)' : ` (on the saga input of '${id}')`;
      rootStepInput(def.name, p, input, { threw: given, value: ` (on the saga input of '${id}')` });
    }
  }
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
