/**
 * defineWorker and defineSaga: validate what users write and fill in every default,
 * so that misuse fails here, with a SagaDefinitionError naming the saga, the step and
 * the field, and never in the middle of a running saga.
 */
import { SagaDefinitionError } from './errors.ts';
import type {
  Backoff,
  BackoffSpec,
  CommittedResults,
  CompensateFn,
  CompensationOrder,
  CompensationSpec,
  DefaultJoin,
  JoinSpec,
  SagaCompensationSpec,
  SagaDefinition,
  SagaSpec,
  StepAfters,
  StepPlan,
  StepSpec,
  StepWorkers,
  TypedSagaSpec,
  WorkerDefinition,
  WorkerSpec,
} from './types.ts';

/** Default time of one `do` attempt of a step (`timeoutMs`); after it the step is in doubt. */
export const DEFAULT_STEP_TIMEOUT_MS = 30_000;
/** Default retries of a step's `do` after a retryable error (`retries`). */
export const DEFAULT_STEP_RETRIES = 0;
/** Default retries of one step's compensation (`compensation.retries`). */
export const DEFAULT_COMPENSATION_RETRIES = 5;
/** Default time of one compensation attempt (`compensation.timeoutMs`). */
export const DEFAULT_COMPENSATION_TIMEOUT_MS = 30_000;
/** Default backoff of `do` and compensation retries: 100 ms doubling up to 10 s, with jitter. */
export const DEFAULT_BACKOFF: Backoff = Object.freeze({ initialMs: 100, factor: 2, maxMs: 10_000, jitter: true });

const NAME = /^[A-Za-z0-9_-]{1,64}$/;
const NO_COMPENSATION = Symbol.for('scatter-saga.noCompensation');

/**
 * The explicit way to say a worker needs no undo (a read-only lookup, an idempotent
 * notification). Omitting `compensate` is an error; this is not.
 *
 * @example
 * defineWorker({ name: 'quote', do: getQuote, compensate: noCompensation('read-only lookup') })
 */
export function noCompensation(reason: string): CompensateFn {
  if (typeof reason !== 'string' || reason.trim() === '') {
    throw new SagaDefinitionError('noCompensation(reason) needs a non-empty reason saying why no undo is needed');
  }
  const fn = (() => undefined) as CompensateFn & { [NO_COMPENSATION]?: string };
  fn[NO_COMPENSATION] = reason;
  return fn;
}

/**
 * Declares a worker: a named side effect and its mandatory compensation.
 *
 * @example
 * const flights = defineWorker({
 *   name: 'flights',
 *   async do(req: FlightReq, ctx) { return api.reserve(req, { idempotencyKey: ctx.idempotencyKey }) },
 *   async compensate(req, reservation, ctx) { await api.cancel(ctx.idempotencyKey) },
 * });
 */
export function defineWorker<I, R>(spec: WorkerSpec<I, R>): WorkerDefinition<I, R> {
  if (spec === null || typeof spec !== 'object') throw new SagaDefinitionError('defineWorker needs an object { name, do, compensate }');
  const name = (spec as { name?: unknown }).name;
  if (typeof name !== 'string' || !NAME.test(name)) {
    throw new SagaDefinitionError(`name must be 1-64 characters of A-Z a-z 0-9 _ -, got ${JSON.stringify(name)}`, { field: 'name' });
  }
  if (typeof spec.do !== 'function') throw new SagaDefinitionError('do must be a function', { worker: name, field: 'do' });
  if (typeof spec.compensate !== 'function') {
    throw new SagaDefinitionError(
      "compensate is mandatory: give the undo, or say explicitly that none is needed with compensate: noCompensation('why')",
      { worker: name, field: 'compensate' },
    );
  }
  rejectUnknown(spec as object, ['name', 'do', 'compensate'], { worker: name });
  const reason = (spec.compensate as { [NO_COMPENSATION]?: string })[NO_COMPENSATION];
  return Object.freeze({ ...spec, kind: 'worker' as const, noCompensationReason: reason });
}

/**
 * Declares a saga: steps, how they depend on each other, the join policy and the
 * compensation policy. Steps without `after` run in parallel.
 *
 * The types follow from the steps, without type arguments: the
 * saga input from a step whose `input` annotates it, each `input` checked against its
 * worker's `do`, `after` against the step ids, and the results (an `input`'s second
 * argument, and the committed outcome's `results`) typed by step id from each worker.
 *
 * @example
 * const trip = defineSaga({
 *   name: 'trip', version: 1,
 *   steps: {
 *     flight: { worker: flights, input: (t: Trip) => t.flight, timeoutMs: 2_000 },
 *     hotel:  { worker: hotels,  input: (t) => t.hotel },
 *     pay:    { worker: payments, after: ['flight', 'hotel'], input: (t, r) => ({ amount: t.total, holds: [r.flight.ref, r.hotel.ref] }) },
 *   },
 *   compensation: { retries: 5, backoff: { initialMs: 100, factor: 2, maxMs: 10_000 } },
 * });
 */
export function defineSaga<
  TIn = unknown,
  const W extends StepWorkers = StepWorkers,
  A extends StepAfters = StepAfters,
  const J extends JoinSpec = DefaultJoin<W>,
>(definition: TypedSagaSpec<TIn, W, A, J>): SagaDefinition<TIn, CommittedResults<W, J>> {
  const spec = definition as unknown as SagaSpec<TIn>;
  if (spec === null || typeof spec !== 'object') throw new SagaDefinitionError('defineSaga needs an object { name, version, steps }');
  const name = (spec as { name?: unknown }).name;
  if (typeof name !== 'string' || !NAME.test(name)) {
    throw new SagaDefinitionError(`name must be 1-64 characters of A-Z a-z 0-9 _ -, got ${JSON.stringify(name)}`, { field: 'name' });
  }
  const where = { saga: name };
  rejectUnknown(spec as object, ['name', 'version', 'steps', 'join', 'compensation'], where);
  if (!Number.isSafeInteger(spec.version) || spec.version < 1) {
    throw new SagaDefinitionError(`version must be a positive integer, got ${String(spec.version)}`, { ...where, field: 'version' });
  }
  if (spec.steps === null || typeof spec.steps !== 'object' || Array.isArray(spec.steps)) {
    throw new SagaDefinitionError('steps must be an object of step id to step', { ...where, field: 'steps' });
  }
  const ids = Object.keys(spec.steps);
  if (ids.length === 0) throw new SagaDefinitionError('a saga needs at least one step', { ...where, field: 'steps' });

  const sagaCompensation = resolveCompensation(spec.compensation, { ...where, field: 'compensation' }, {
    retries: DEFAULT_COMPENSATION_RETRIES,
    backoff: DEFAULT_BACKOFF,
    timeoutMs: DEFAULT_COMPENSATION_TIMEOUT_MS,
  }, 'saga');
  const compensationOrder = resolveOrder(spec.compensation, { ...where, field: 'compensation.order' });

  const workers = new Map<string, WorkerDefinition | undefined>();
  const drafts = ids.map((id, index) => {
    const step = spec.steps[id] as StepSpec<TIn> | undefined;
    const at = { ...where, step: id };
    if (!NAME.test(id)) throw new SagaDefinitionError('step ids must be 1-64 characters of A-Z a-z 0-9 _ -', at);
    if (step === null || typeof step !== 'object') throw new SagaDefinitionError('a step must be an object { worker, input?, ... }', at);
    rejectUnknown(step, ['worker', 'input', 'after', 'timeoutMs', 'retries', 'backoff', 'compensation', 'gate'], at);
    const worker = resolveWorker(step.worker, at);
    const known = workers.get(worker.name);
    if (worker.definition !== undefined && known !== undefined && known !== worker.definition) {
      throw new SagaDefinitionError(`two different worker definitions are named '${worker.name}'`, { ...at, field: 'worker' });
    }
    workers.set(worker.name, worker.definition ?? known);
    if (step.input !== undefined && typeof step.input !== 'function') {
      throw new SagaDefinitionError('input must be a function (sagaInput, results) => stepInput', { ...at, field: 'input' });
    }
    if (step.gate !== undefined && typeof step.gate !== 'function') {
      throw new SagaDefinitionError('gate must be a function (result, input) => true | reason', { ...at, field: 'gate' });
    }
    const after = step.after ?? [];
    if (!Array.isArray(after) || after.some((a) => typeof a !== 'string')) {
      throw new SagaDefinitionError('after must be an array of step ids', { ...at, field: 'after' });
    }
    for (const dep of after) {
      if (dep === id) throw new SagaDefinitionError('a step cannot run after itself', { ...at, field: 'after' });
      if (!ids.includes(dep)) throw new SagaDefinitionError(`runs after unknown step '${dep}'`, { ...at, field: 'after' });
    }
    if (new Set(after).size !== after.length) throw new SagaDefinitionError('after names a step twice', { ...at, field: 'after' });
    return {
      id,
      index,
      worker: worker.name,
      input: (step.input ?? identity) as StepPlan['input'],
      after: Object.freeze([...after]),
      timeoutMs: positiveMs(step.timeoutMs, DEFAULT_STEP_TIMEOUT_MS, { ...at, field: 'timeoutMs' }),
      retries: count(step.retries, DEFAULT_STEP_RETRIES, { ...at, field: 'retries' }),
      backoff: resolveBackoff(step.backoff, DEFAULT_BACKOFF, { ...at, field: 'backoff' }),
      compensation: resolveCompensation(step.compensation, { ...at, field: 'compensation' }, sagaCompensation, 'step'),
      ...(step.gate !== undefined ? { gate: step.gate as NonNullable<StepPlan['gate']> } : {}),
    };
  });

  rejectCycles(drafts, name);
  const steps: StepPlan[] = drafts.map((d) =>
    Object.freeze({ ...d, dependents: Object.freeze(drafts.filter((o) => o.after.includes(d.id)).map((o) => o.id)) }),
  );
  const join = resolveJoin(spec.join, steps, where);

  const made = Object.freeze({
    kind: 'saga' as const,
    name,
    version: spec.version,
    steps: Object.freeze(steps),
    stepsById: new Map(steps.map((s) => [s.id, s])),
    join,
    compensationOrder,
    workers,
  });
  DEFINED.add(made);
  return made;
}

/** Every definition `defineSaga` returned: a copy or a hand-made object is not one of them. */
const DEFINED = new WeakSet<object>();

/** True when `value` is a saga definition returned by {@link defineSaga} itself (not a copy of one, nor a hand-made object). */
export function isDefinedSaga(value: unknown): value is SagaDefinition {
  return typeof value === 'object' && value !== null && DEFINED.has(value);
}

function identity(x: unknown): unknown {
  return x;
}

type Where = { saga?: string; step?: string; field?: string; worker?: string };

/** Rejects keys not in `allowed`, naming the key's full path (`where.field` is the object's own path, when nested). */
function rejectUnknown(obj: object, allowed: readonly string[], where: Where): void {
  for (const key of Object.keys(obj)) {
    if (!allowed.includes(key)) {
      const near = allowed.find((a) => a.toLowerCase() === key.toLowerCase());
      const hint = near !== undefined ? `; did you mean '${near}'?` : '';
      throw new SagaDefinitionError(`unknown option '${key}' (allowed: ${allowed.join(', ')})${hint}`, { ...where, field: where.field !== undefined ? `${where.field}.${key}` : key });
    }
  }
}

function resolveWorker(worker: unknown, where: Where): { name: string; definition: WorkerDefinition | undefined } {
  if (typeof worker === 'string') {
    if (!NAME.test(worker)) throw new SagaDefinitionError(`worker name ${JSON.stringify(worker)} is not valid`, { ...where, field: 'worker' });
    return { name: worker, definition: undefined };
  }
  if (worker !== null && typeof worker === 'object' && (worker as WorkerDefinition).kind === 'worker') {
    return { name: (worker as WorkerDefinition).name, definition: worker as WorkerDefinition };
  }
  throw new SagaDefinitionError('worker must be a worker name or a definition from defineWorker', { ...where, field: 'worker' });
}

function positiveMs(value: unknown, fallback: number, where: Where): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) {
    throw new SagaDefinitionError(`must be a finite number of milliseconds > 0, got ${String(value)}`, where);
  }
  return value;
}

function count(value: unknown, fallback: number, where: Where): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
    throw new SagaDefinitionError(`must be a whole number >= 0, got ${String(value)}`, where);
  }
  return value;
}

function resolveBackoff(spec: BackoffSpec | undefined, fallback: Backoff, where: Where): Backoff {
  if (spec === undefined) return fallback;
  if (spec === null || typeof spec !== 'object') throw new SagaDefinitionError('must be an object { initialMs, factor, maxMs, jitter }', where);
  rejectUnknown(spec, ['initialMs', 'factor', 'maxMs', 'jitter'], where);
  const f = (k: string) => ({ ...where, field: `${where.field}.${k}` });
  const initialMs = positiveMs(spec.initialMs, fallback.initialMs, f('initialMs'));
  const factor = spec.factor === undefined ? fallback.factor : spec.factor;
  if (typeof factor !== 'number' || !Number.isFinite(factor) || factor < 1) {
    throw new SagaDefinitionError(`must be a finite number >= 1, got ${String(factor)}`, f('factor'));
  }
  const maxMs = positiveMs(spec.maxMs, Math.max(fallback.maxMs, initialMs), f('maxMs'));
  if (maxMs < initialMs) throw new SagaDefinitionError(`must be >= initialMs (${initialMs}), got ${maxMs}`, f('maxMs'));
  const jitter = spec.jitter ?? fallback.jitter;
  if (typeof jitter !== 'boolean') throw new SagaDefinitionError('must be true or false', f('jitter'));
  return Object.freeze({ initialMs, factor, maxMs, jitter });
}

function resolveCompensation(
  spec: CompensationSpec | undefined,
  where: Where,
  fallback: StepPlan['compensation'],
  of: 'saga' | 'step',
): StepPlan['compensation'] {
  if (spec === undefined) return fallback;
  if (spec === null || typeof spec !== 'object') throw new SagaDefinitionError(`must be an object { retries, backoff, timeoutMs${of === 'saga' ? ', order' : ''} }`, where);
  if (of === 'step' && Object.prototype.hasOwnProperty.call(spec, 'order')) {
    throw new SagaDefinitionError("the undo order is the saga's: set it in the saga's compensation.order, not a step's", { ...where, field: `${where.field}.order` });
  }
  rejectUnknown(spec, of === 'saga' ? ['retries', 'backoff', 'timeoutMs', 'order'] : ['retries', 'backoff', 'timeoutMs'], where);
  return Object.freeze({
    retries: count(spec.retries, fallback.retries, { ...where, field: `${where.field}.retries` }),
    backoff: resolveBackoff(spec.backoff, fallback.backoff, { ...where, field: `${where.field}.backoff` }),
    timeoutMs: positiveMs(spec.timeoutMs, fallback.timeoutMs, { ...where, field: `${where.field}.timeoutMs` }),
  });
}

const ORDERS: readonly CompensationOrder[] = ['reverse', 'parallel', 'sequential'];

function resolveOrder(spec: SagaCompensationSpec | undefined, where: Where): CompensationOrder {
  const order = spec?.order;
  if (order === undefined) return 'reverse';
  if (!ORDERS.includes(order)) throw new SagaDefinitionError(`unknown compensation order ${JSON.stringify(order)} (allowed: ${ORDERS.join(', ')})`, where);
  return order;
}

function resolveJoin(spec: JoinSpec | undefined, steps: readonly StepPlan[], where: Where): JoinSpec {
  if (spec === undefined) return Object.freeze({ kind: 'all' });
  const at = { ...where, field: 'join' };
  if (spec === null || typeof spec !== 'object') throw new SagaDefinitionError("must be { kind: 'all' | 'any' | 'quorum' }", at);
  if (spec.kind === 'all') {
    rejectUnknown(spec, ['kind'], at);
    return Object.freeze({ kind: 'all' });
  }
  if (spec.kind !== 'any' && spec.kind !== 'quorum') {
    throw new SagaDefinitionError(`unknown join kind ${JSON.stringify((spec as { kind?: unknown }).kind)} (allowed: all, any, quorum)`, at);
  }
  const staged = steps.find((s) => s.after.length > 0);
  if (staged) {
    throw new SagaDefinitionError(`join '${spec.kind}' needs parallel steps, but step '${staged.id}' runs after others`, at);
  }
  if (spec.kind === 'any') {
    rejectUnknown(spec, ['kind'], at);
    return Object.freeze({ kind: 'any' });
  }
  rejectUnknown(spec, ['kind', 'n'], at);
  if (!Number.isSafeInteger(spec.n) || spec.n < 1 || spec.n > steps.length) {
    throw new SagaDefinitionError(`quorum n must be a whole number from 1 to ${steps.length} (the step count), got ${String(spec.n)}`, {
      ...at,
      field: 'join.n',
    });
  }
  return Object.freeze({ kind: 'quorum', n: spec.n });
}

function rejectCycles(steps: readonly { id: string; after: readonly string[] }[], saga: string): void {
  const byId = new Map(steps.map((s) => [s.id, s]));
  const state = new Map<string, 'visiting' | 'done'>();
  const visit = (id: string, path: string[]): void => {
    const seen = state.get(id);
    if (seen === 'done') return;
    if (seen === 'visiting') {
      const cycle = [...path.slice(path.indexOf(id)), id];
      throw new SagaDefinitionError(`steps depend on each other in a cycle: ${cycle.join(' -> ')}`, { saga, step: id, field: 'after' });
    }
    state.set(id, 'visiting');
    for (const dep of byId.get(id)?.after ?? []) visit(dep, [...path, id]);
    state.set(id, 'done');
  };
  for (const s of steps) visit(s.id, []);
}
