/**
 * The pure decisions of the saga machine: per-step status, the join policy, which
 * steps to undo and in which order, and the outcome. Every function here takes the
 * context and an event and returns a new context plus the commands (effects) the
 * runtime must perform. No I/O, no clock, no randomness.
 */
import type { ErrorInfo } from '../errors.ts';
import { SagaError, threwText, toErrorInfo } from '../errors.ts';
import type { Backoff, RemainingEffect, SagaDefinition, SagaOutcome, StepFailure, StepPlan } from '../types.ts';
import { assertSerializable } from './serializable.ts';

/** The status of one step of a saga (see `Runtime.status`). */
export type StepStatus =
  | 'pending'
  | 'dispatched'
  | 'committed'
  | 'failed'
  | 'inDoubt'
  /** Its `do` succeeded and its gate rejected the result: the effect exists, and is compensated. */
  | 'rejected'
  | 'compensating'
  | 'compensated'
  | 'compensationFailed';

export interface StepState {
  readonly status: StepStatus;
  /** `do` requests sent (attempts, refusals at capacity included). */
  readonly attempt: number;
  /** `do` requests a host refused at capacity: they ran nothing and spend no retry budget. */
  readonly refused: number;
  /** For `dispatched`: waiting out a retry backoff. For `compensating`: likewise. */
  readonly waiting: boolean;
  /**
   * Some request of this step is unaccounted for: an attempt whose failure did not prove
   * it applied nothing, or requests a coordinator sent before it restarted. No later
   * failure can then prove the step left no effect.
   */
  readonly tainted: boolean;
  /** Restored from a journal: requests of it (do or compensate) may have gone out unrecorded. */
  readonly recovered: boolean;
  readonly key: string | undefined;
  readonly input: unknown;
  readonly result: unknown;
  /** The step must be undone: it committed or may have, and the saga does not keep it. */
  readonly undo: boolean;
  /** Kept by the join policy (only set once the saga decided to commit). */
  readonly kept: boolean;
  /**
   * Order in which the steps' `do` succeeded (1, 2, ...): committed, or rejected by the
   * step's gate. 0 when the saga never saw the step succeed.
   */
  readonly committedSeq: number;
  /** Compensation attempts in the current round (reset by an operator retry). */
  readonly compAttempt: number;
  /** Compensation requests of the current round refused at capacity: they spend no budget. */
  readonly compRefused: number;
  /** Compensation attempts in all rounds. */
  readonly compTotal: number;
  readonly lastCompError: ErrorInfo | undefined;
  readonly resolvedByOperator: boolean;
}

export interface SagaContext {
  readonly sagaId: string;
  readonly input: unknown;
  readonly decision: 'commit' | 'abort' | undefined;
  /**
   * The state of each step, in definition order: `steps[i]` is the step `def.steps[i]`
   * (its `index`). Persisted snapshots hold them by id (see `toPersistedSteps`).
   */
  readonly steps: readonly StepState[];
  readonly failures: readonly StepFailure[];
  readonly commitSeq: number;
  /** How many times the saga entered `compensationFailed`. */
  readonly timesParked: number;
  /** An operator aborted the saga while it ran (OPERATOR.ABORT), with the note given. */
  readonly abortedByOperator?: { readonly note?: string };
}

export interface SagaInput {
  readonly sagaId: string;
  readonly input: unknown;
  /** Inputs of steps without dependencies, already derived and checked by the caller. */
  readonly rootInputs?: Readonly<Record<string, unknown>>;
  /**
   * Restored from a journal written before any checkpoint: the root steps may have been
   * sent by the coordinator that wrote it.
   */
  readonly recovered?: boolean;
}

// ---------------------------------------------------------------------------
// Events the saga machine accepts

export type SagaEvent =
  | { type: 'STEP.COMMITTED'; stepId: string; attempt: number; result: unknown }
  /** `local`: the coordinator's side refused the request (never sent, or no responders): no copy of it exists anywhere. */
  | { type: 'STEP.FAILED'; stepId: string; attempt: number; error: ErrorInfo; local?: boolean }
  | { type: 'STEP.TIMED_OUT'; stepId: string; attempt: number }
  | { type: 'STEP.RETRY_DUE'; stepId: string; attempt: number }
  | { type: 'COMPENSATION.DONE'; stepId: string; attempt: number }
  | { type: 'COMPENSATION.FAILED'; stepId: string; attempt: number; error: ErrorInfo }
  | { type: 'COMPENSATION.TIMED_OUT'; stepId: string; attempt: number }
  | { type: 'COMPENSATION.RETRY_DUE'; stepId: string; attempt: number }
  | { type: 'OPERATOR.RETRY' }
  | { type: 'OPERATOR.RESOLVE'; note?: string }
  /** An operator aborts a running saga: it undoes every step that committed or may have. */
  | { type: 'OPERATOR.ABORT'; note?: string }
  /** A coordinator restored this saga from its journal and drives it on. */
  | { type: 'RECOVER' };

// ---------------------------------------------------------------------------
// Commands the machine asks the runtime to perform

export type SagaCommand =
  | { type: 'do'; stepId: string; worker: string; key: string; input: unknown; attempt: number; timeoutMs: number }
  | { type: 'compensate'; stepId: string; worker: string; key: string; input: unknown; result: unknown; attempt: number; timeoutMs: number }
  /** Deliver `event` to this saga after `delayMs` (with equal jitter when `jitter`). Replaces a timer of the same id. */
  | { type: 'schedule'; timerId: string; delayMs: number; jitter: boolean; event: SagaEvent }
  | { type: 'cancel'; timerId: string }
  /**
   * Persist the snapshot. With `writeAhead`, the `do` and `compensate` commands that
   * follow must wait until it is stored (and are never sent if it cannot be), so that a
   * coordinator restored from the journal knows every stage that was dispatched and every
   * decision whose compensations went out.
   */
  | { type: 'checkpoint'; writeAhead?: boolean };

export interface Step {
  readonly context: SagaContext;
  readonly commands: readonly SagaCommand[];
}

/** Computes idempotency keys; injected so the logic stays pure. */
export type KeyFn = (sagaId: string, stepId: string, input: unknown) => string;

// ---------------------------------------------------------------------------

const NEW_STEP: StepState = Object.freeze({
  status: 'pending',
  attempt: 0,
  refused: 0,
  waiting: false,
  tainted: false,
  recovered: false,
  key: undefined,
  input: undefined,
  result: undefined,
  undo: false,
  kept: false,
  committedSeq: 0,
  compAttempt: 0,
  compRefused: 0,
  compTotal: 0,
  lastCompError: undefined,
  resolvedByOperator: false,
});

export function initialContext(def: SagaDefinition, input: SagaInput): SagaContext {
  const steps: StepState[] = [];
  const given = input.rootInputs;
  const root = input.recovered === true ? { ...NEW_STEP, tainted: true, recovered: true } : NEW_STEP;
  for (const s of def.steps) {
    const base = s.after.length === 0 ? root : NEW_STEP;
    steps[s.index] = given !== undefined && s.after.length === 0 && Object.prototype.hasOwnProperty.call(given, s.id) ? { ...base, input: given[s.id] } : base;
  }
  return { sagaId: input.sagaId, input: input.input, decision: undefined, steps, failures: [], commitSeq: 0, timesParked: 0 };
}

export const doTimer = (stepId: string) => `do:${stepId}`;
export const retryTimer = (stepId: string) => `retry:${stepId}`;
export const compTimer = (stepId: string) => `comp:${stepId}`;

/** Delivers a retry-due event after `delayMs`: the one retry timer a step has, for `do` or for its undo. */
function retryAfter(stepId: string, delayMs: number, jitter: boolean, event: Extract<SagaEvent, { type: 'STEP.RETRY_DUE' | 'COMPENSATION.RETRY_DUE' }>): SagaCommand {
  return { type: 'schedule', timerId: retryTimer(stepId), delayMs, jitter, event };
}

/**
 * Backpressure: a host at capacity refused the request before it touched anything
 * (`OVERLOADED`). The request is sent again after this delay (25 ms doubling, at most
 * 2 s, with jitter), as often as it takes; refusals spend no retry budget.
 */
export function overloadDelay(refusals: number): number {
  return Math.min(2_000, 25 * 2 ** Math.min(Math.max(0, refusals - 1), 7));
}

/** The wire code of a refusal at capacity. */
export const OVERLOADED = 'OVERLOADED';

/** Delay before retry number `n` (1-based), before jitter. */
export function backoffDelay(b: Backoff, n: number): number {
  return Math.min(b.maxMs, b.initialMs * b.factor ** Math.max(0, n - 1));
}

// ---------------------------------------------------------------------------
// Step records and their tallies
//
// A saga's `steps` array is immutable: every transition that changes a step builds a new
// array (old contexts stay valid, the model checker keeps them). A transition copies it
// once (an array copy is cheap at any width, unlike a record keyed by id, which V8 keeps
// in dictionary mode past ~128 keys) and sets every change on that fresh copy (a draft)
// before handing it out. The guards evaluated after every event read counts instead of
// scanning the steps: each array carries a tally (in a WeakMap, invisible to the
// persisted snapshot), derived from the tally of the array it was copied from and kept
// up to date as its draft changes; an array seen without one (restored from a journal,
// built by hand) is counted once.

/** Counts over a steps array, kept alongside it. */
interface Tally {
  committed: number;
  /** Steps that may still count towards the join: committed, dispatched or pending. */
  possible: number;
  /** Steps not committed whose effect may exist (see `mayHaveEffect`). */
  uncommittedEffects: number;
  pending: number;
  /** Steps to undo that are not undone yet. */
  undoOpen: number;
  compensating: number;
  compensationFailed: number;
}

/** Where an array's tally is kept: a non-enumerable symbol property, cheaper for the GC than a WeakMap entry per array. */
const TALLY = Symbol('tally');
const tallies = {
  get: (steps: object): Tally | undefined => (steps as { [TALLY]?: Tally })[TALLY],
  set: (steps: object, t: Tally): void => {
    Object.defineProperty(steps, TALLY, { value: t, writable: true, configurable: true });
  },
};

function count(t: Tally, s: StepState, by: 1 | -1): void {
  switch (s.status) {
    case 'committed':
      t.committed += by;
      t.possible += by;
      break;
    case 'dispatched':
      t.possible += by;
      break;
    case 'pending':
      t.possible += by;
      t.pending += by;
      break;
    case 'compensating':
      t.compensating += by;
      break;
    case 'compensationFailed':
      t.compensationFailed += by;
      break;
  }
  if (s.status !== 'committed' && mayHaveEffect(s)) t.uncommittedEffects += by;
  if (s.undo && s.status !== 'compensated') t.undoOpen += by;
}

function tallyOf(steps: readonly StepState[]): Tally {
  let t = tallies.get(steps);
  if (t === undefined) {
    t = { committed: 0, possible: 0, uncommittedEffects: 0, pending: 0, undoOpen: 0, compensating: 0, compensationFailed: 0 };
    for (const s of steps) count(t, s, 1);
    tallies.set(steps, t);
  }
  return t;
}

/** A fresh copy of `ctx.steps` to set changes on (with {@link setStep}) before it is handed out. */
function draftSteps(ctx: SagaContext): StepState[] {
  const t = tallyOf(ctx.steps);
  const steps = ctx.steps.slice();
  tallies.set(steps, { ...t });
  return steps;
}

/** Sets one step of a draft made by {@link draftSteps}, keeping its tally. */
function setStep(draft: StepState[], index: number, s: StepState): void {
  const t = tallies.get(draft) as Tally;
  count(t, draft[index] as StepState, -1);
  count(t, s, 1);
  draft[index] = s;
}

/** Updates the steps of a context in one copy: reads and sets steps on a draft; the context is returned as it is when nothing was set. */
class StepsEditor {
  private draft: StepState[] | undefined;
  constructor(
    private readonly def: SagaDefinition,
    private readonly base: SagaContext,
  ) {}
  get(stepId: string): StepState {
    return (this.draft ?? this.base.steps)[plan(this.def, stepId).index] as StepState;
  }
  /** The steps as they stand, changes included (read only). */
  get steps(): readonly StepState[] {
    return this.draft ?? this.base.steps;
  }
  patch(stepId: string, patch: Partial<StepState>): StepState {
    return this.patchAt(plan(this.def, stepId).index, patch);
  }
  patchAt(index: number, patch: Partial<StepState>): StepState {
    this.draft ??= draftSteps(this.base);
    const s = { ...(this.draft[index] as StepState), ...patch };
    setStep(this.draft, index, s);
    return s;
  }
  /** The context with the changes made (`extra` merged in), or `extra` merged into the base. */
  context(extra?: Partial<SagaContext>): SagaContext {
    if (this.draft === undefined) return extra === undefined ? this.base : { ...this.base, ...extra };
    return { ...this.base, ...extra, steps: this.draft };
  }
}

function put(def: SagaDefinition, ctx: SagaContext, stepId: string, patch: Partial<StepState>): SagaContext {
  const e = new StepsEditor(def, ctx);
  e.patch(stepId, patch);
  return e.context();
}

/** The state of a step of the saga, undefined for an id the definition does not have. */
export function stepOf(def: SagaDefinition, ctx: SagaContext, stepId: string): StepState | undefined {
  const p = def.stepsById.get(stepId);
  return p === undefined ? undefined : ctx.steps[p.index];
}

/** The steps of a context by id, as persisted snapshots hold them. */
export function toPersistedSteps(def: SagaDefinition, steps: readonly StepState[]): Record<string, StepState> {
  const out: Record<string, StepState> = {};
  for (const p of def.steps) out[p.id] = steps[p.index] as StepState;
  return out;
}

/** The steps of a persisted snapshot (held by id) as a context holds them; an array is taken as it is. */
export function fromPersistedSteps(def: SagaDefinition, steps: Readonly<Record<string, StepState>> | readonly StepState[]): readonly StepState[] {
  if (Array.isArray(steps)) return steps;
  return def.steps.map((p) => (steps as Readonly<Record<string, StepState>>)[p.id] as StepState);
}

function plan(def: SagaDefinition, stepId: string): StepPlan {
  return def.stepsById.get(stepId) as StepPlan;
}

function dependenciesCommitted(def: SagaDefinition, steps: readonly StepState[], p: StepPlan): boolean {
  return p.after.every((d) => steps[plan(def, d).index]?.status === 'committed');
}

// ---------------------------------------------------------------------------
// Gathering

/** Guard: a pending step whose dependencies all committed can be dispatched. */
export function hasReadySteps(def: SagaDefinition, ctx: SagaContext): boolean {
  if (tallyOf(ctx.steps).pending === 0) return false;
  for (const p of def.steps) if (ctx.steps[p.index]?.status === 'pending' && dependenciesCommitted(def, ctx.steps, p)) return true;
  return false;
}

/** Dispatches every ready step: derives its input, computes its key, sends `do`, starts its timeout. */
export function dispatchReady(def: SagaDefinition, keyOf: KeyFn, ctx: SagaContext): Step {
  const commands: SagaCommand[] = [];
  if (tallyOf(ctx.steps).pending === 0) return { context: ctx, commands };
  const e = new StepsEditor(def, ctx);
  let failures = ctx.failures;
  for (const p of def.steps) {
    const s = e.steps[p.index] as StepState;
    if (s.status !== 'pending' || !dependenciesCommitted(def, e.steps, p)) continue;
    let input: unknown = s.input;
    try {
      if (input === undefined) {
        input = p.input(ctx.input, resultsOf(def, e.steps, p.after));
        assertSerializable(input, `step '${p.id}' input`, def.name);
      }
    } catch (error) {
      const info =
        error instanceof SagaError
          ? { ...toErrorInfo(error), retryable: false }
          : { code: 'STEP_INPUT_FAILED', message: threwText(error, `the input function of step '${p.id}' (saga '${def.name}')`), retryable: false };
      e.patchAt(p.index, { status: 'failed' });
      failures = [...failures, { stepId: p.id, worker: p.worker, reason: 'input-failed', attempt: 0, error: info, inDoubt: false }];
      continue;
    }
    const key = keyOf(ctx.sagaId, p.id, input);
    e.patchAt(p.index, { status: 'dispatched', attempt: 1, key, input });
    // Root steps are known from the journal's intent record; later stages are not.
    if (p.after.length > 0 && commands.length === 0) commands.push({ type: 'checkpoint', writeAhead: true });
    commands.push(...sendDo(p, key, input, 1));
  }
  return { context: e.context(failures === ctx.failures ? undefined : { failures }), commands };
}

function sendDo(p: StepPlan, key: string, input: unknown, attempt: number): SagaCommand[] {
  return [
    { type: 'do', stepId: p.id, worker: p.worker, key, input, attempt, timeoutMs: p.timeoutMs },
    { type: 'schedule', timerId: doTimer(p.id), delayMs: p.timeoutMs, jitter: false, event: { type: 'STEP.TIMED_OUT', stepId: p.id, attempt } },
  ];
}

function resultsOf(def: SagaDefinition, steps: readonly StepState[], ids: readonly string[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const id of ids) out[id] = steps[plan(def, id).index]?.result;
  return out;
}

/** Guard: the event answers the step's current, unanswered `do` attempt. */
export function isCurrentAttempt(def: SagaDefinition, ctx: SagaContext, ev: { stepId: string; attempt: number }): boolean {
  const s = stepOf(def, ctx, ev.stepId);
  return s !== undefined && s.status === 'dispatched' && !s.waiting && s.attempt === ev.attempt;
}

/** Guard: the retry timer of a step waiting out its backoff. */
export function isRetryDue(def: SagaDefinition, ctx: SagaContext, ev: { stepId: string; attempt: number }): boolean {
  const s = stepOf(def, ctx, ev.stepId);
  return s !== undefined && s.status === 'dispatched' && s.waiting && s.attempt + 1 === ev.attempt;
}

/**
 * A step committed. Its timeout timer is left to fire into a guard that ignores it (or
 * to be cancelled with the saga's other timers when it settles): no command at all.
 */
function recordCommit(def: SagaDefinition, ctx: SagaContext, ev: { stepId: string; result: unknown }): SagaContext {
  const seq = ctx.commitSeq + 1;
  return { ...put(def, ctx, ev.stepId, { status: 'committed', result: ev.result, committedSeq: seq }), commitSeq: seq };
}

/**
 * The step's supervisor gate on a result: undefined when it accepts (or the step has no
 * gate), else why it rejects. A gate that throws, or answers anything but `true` or a
 * string, rejects, and the reason says so: a check that cannot say yes is a no.
 */
function gateRejection(def: SagaDefinition, ctx: SagaContext, ev: { stepId: string; result: unknown }): string | undefined {
  const p = def.stepsById.get(ev.stepId);
  if (p?.gate === undefined) return undefined;
  let verdict: unknown;
  try {
    verdict = p.gate(ev.result, (ctx.steps[p.index] as StepState).input);
  } catch (error) {
    return threwText(error, 'it');
  }
  if (verdict === true) return undefined;
  if (typeof verdict === 'string') return verdict === '' ? 'it gave an empty reason' : verdict;
  const what =
    typeof verdict === 'object' && verdict !== null && typeof (verdict as { then?: unknown }).then === 'function'
      ? 'a Promise (a gate must be synchronous)'
      : verdict === null || verdict === undefined
        ? String(verdict)
        : typeof verdict === 'object'
          ? 'an object'
          : `${typeof verdict} ${String(verdict)}`;
  return `it returned ${what}, not true or a reason`;
}

/**
 * The current attempt of a step succeeded: the step commits, unless its gate (asked once)
 * rejects the result. Then the step fails (it cannot count for the join, and no retry
 * would change an answered key's result), and because its worker did commit, its effect
 * is compensated like any other: status `rejected`, with the result kept for the
 * compensation.
 */
export function recordResult(def: SagaDefinition, ctx: SagaContext, ev: { stepId: string; attempt: number; result: unknown }): SagaContext {
  const reason = gateRejection(def, ctx, ev);
  return reason === undefined ? recordCommit(def, ctx, ev) : recordRejection(def, ctx, ev, reason);
}

function recordRejection(def: SagaDefinition, ctx: SagaContext, ev: { stepId: string; attempt: number; result: unknown }, reason: string): SagaContext {
  const worker = plan(def, ev.stepId).worker;
  const error = { code: 'GATE_REJECTED', message: `the gate of step '${ev.stepId}' (worker '${worker}') rejected its result: ${reason}`, retryable: false };
  // Its do succeeded: it takes its place in the order of completion (sequential undo).
  const seq = ctx.commitSeq + 1;
  const failed = failStep(def, ctx, ev.stepId, { status: 'rejected', result: ev.result, committedSeq: seq }, { reason: 'rejected', attempt: ev.attempt, error, inDoubt: true });
  return { ...failed, commitSeq: seq };
}

/** Sets a step that failed (`patch`: its new status) and adds the failure to the saga's. */
function failStep(def: SagaDefinition, ctx: SagaContext, stepId: string, patch: Partial<StepState>, failure: Omit<StepFailure, 'stepId' | 'worker'>): SagaContext {
  return { ...put(def, ctx, stepId, patch), failures: [...ctx.failures, { stepId, worker: plan(def, stepId).worker, ...failure }] };
}

/**
 * Codes of a `do` failure that prove the attempt applied nothing: the host refused the
 * request before it touched the key (malformed, too large, unknown worker, a key reused
 * with another input), the user code failed under the host's claim, or the coordinator
 * could not send it (TRANSPORT_ERROR then; from a host it is a passing refusal, see
 * TRANSIENT_REFUSALS). Every other code (a
 * timeout, a garbled or oversized reply, IN_PROGRESS, OUTCOME_UNKNOWN, COMPENSATED, a
 * code this coordinator does not know) leaves the step in doubt.
 */
const PROVES_NOTHING_APPLIED: ReadonlySet<string> = new Set([
  'WORKER_ERROR',
  'PROTOCOL_ERROR',
  'UNKNOWN_WORKER',
  'PAYLOAD_TOO_LARGE',
  'KEY_CONFLICT',
  'TRANSPORT_ERROR',
  'INPUT_NOT_SERIALIZABLE',
  'NO_RESPONDERS',
]);

/** Refusals a host may give one copy of a request and not another: they prove nothing about the step. */
const TRANSIENT_REFUSALS: ReadonlySet<string> = new Set([OVERLOADED, 'TRANSPORT_ERROR']);

/**
 * The in-doubt rule: whether a failed attempt proves that the step left no effect
 * anywhere. Never for a tainted step (an earlier request of it is unaccounted for), and
 * "no responders" only for the first request of a key never sent before.
 */
export function provesNoEffect(s: StepState, ev: { attempt: number; error: ErrorInfo }): boolean {
  if (s.tainted) return false;
  if (ev.error.code === 'NO_RESPONDERS') return ev.attempt === 1;
  return PROVES_NOTHING_APPLIED.has(ev.error.code);
}

/** A failed attempt: retried after backoff while the error is retryable and the budget lasts, else the step failed (or is in doubt). */
export function recordFailure(def: SagaDefinition, ctx: SagaContext, ev: { stepId: string; attempt: number; error: ErrorInfo; local?: boolean }): Step {
  const p = plan(def, ev.stepId);
  const s = ctx.steps[p.index] as StepState;
  const refused = s.refused ?? 0;
  // A host's refusal of a passing kind (at capacity, its dedup store unreachable) proves
  // only that the refused copy ran nothing: another copy of the same request (a duplicate
  // in transit) may reach a host that takes it. The step is then tainted, like a timeout.
  const copyOnly = ev.local !== true && TRANSIENT_REFUSALS.has(ev.error.code);
  if (ev.error.code === OVERLOADED) {
    return {
      context: put(def, ctx, ev.stepId, { waiting: true, refused: refused + 1, tainted: s.tainted || copyOnly }),
      commands: [retryAfter(ev.stepId, overloadDelay(refused + 1), true, { type: 'STEP.RETRY_DUE', stepId: ev.stepId, attempt: ev.attempt + 1 })],
    };
  }
  const proof = !copyOnly && provesNoEffect(s, ev);
  if (ev.error.retryable && ev.attempt - refused <= p.retries) {
    return {
      context: put(def, ctx, ev.stepId, { waiting: true, tainted: s.tainted || !proof }),
      commands: [
        retryAfter(ev.stepId, backoffDelay(p.backoff, ev.attempt - refused), p.backoff.jitter, { type: 'STEP.RETRY_DUE', stepId: ev.stepId, attempt: ev.attempt + 1 }),
      ],
    };
  }
  return { context: failStep(def, ctx, ev.stepId, { status: proof ? 'failed' : 'inDoubt' }, { reason: 'failed', attempt: ev.attempt, error: ev.error, inDoubt: !proof }), commands: [] };
}

/** No answer in time: the step may or may not have applied its effect. */
export function recordTimeout(def: SagaDefinition, ctx: SagaContext, ev: { stepId: string; attempt: number }): SagaContext {
  const p = plan(def, ev.stepId);
  const error = { code: 'STEP_TIMED_OUT', message: `step '${ev.stepId}' (worker '${p.worker}') did not answer within ${p.timeoutMs} ms (attempt ${ev.attempt})`, retryable: false };
  return failStep(def, ctx, ev.stepId, { status: 'inDoubt' }, { reason: 'timed-out', attempt: ev.attempt, error, inDoubt: true });
}

export function redispatch(def: SagaDefinition, ctx: SagaContext, ev: { stepId: string; attempt: number }): Step {
  const p = plan(def, ev.stepId);
  const s = ctx.steps[p.index] as StepState;
  return { context: put(def, ctx, ev.stepId, { waiting: false, attempt: ev.attempt }), commands: sendDo(p, s.key as string, s.input, ev.attempt) };
}

// ---------------------------------------------------------------------------
// Join policy

function quorumOf(def: SagaDefinition): number {
  const j = def.join;
  return j.kind === 'all' ? def.steps.length : j.kind === 'any' ? 1 : j.n;
}

/** Guard: enough steps committed for the join policy. */
export function joinSatisfied(def: SagaDefinition, ctx: SagaContext): boolean {
  return tallyOf(ctx.steps).committed >= quorumOf(def);
}

/** Guard: the join policy can no longer be satisfied. */
export function joinImpossible(def: SagaDefinition, ctx: SagaContext): boolean {
  // Steps committed, in flight or not yet sent.
  return tallyOf(ctx.steps).possible < quorumOf(def);
}

/** The steps the join keeps: the first `n` to commit. */
function keptSteps(def: SagaDefinition, ctx: SagaContext): Set<string> {
  const committed = def.steps
    .filter((p) => ctx.steps[p.index]?.status === 'committed')
    .sort((a, b) => (ctx.steps[a.index] as StepState).committedSeq - (ctx.steps[b.index] as StepState).committedSeq);
  return new Set(committed.slice(0, quorumOf(def)).map((p) => p.id));
}

/**
 * Whether a step's effect may exist: it committed (its gate rejecting the result or not),
 * is in doubt, or is in flight. A step waiting to retry has none: its host reported the last attempt failed (and refuses
 * duplicates of it), unless an attempt left doubt.
 */
function mayHaveEffect(s: StepState): boolean {
  return s.status === 'committed' || s.status === 'inDoubt' || s.status === 'rejected' || (s.status === 'dispatched' && (!s.waiting || s.tainted));
}

/** Guard: the join is satisfied and no other step needs releasing, so the saga commits at once. */
export function joinSatisfiedCleanly(def: SagaDefinition, ctx: SagaContext): boolean {
  // The join keeps the first `quorum` steps to commit: it is clean when exactly that many
  // committed (one more would need releasing) and no other step may have an effect.
  // Evaluated after every event while gathering, so it reads the tally instead of sorting.
  const t = tallyOf(ctx.steps);
  return t.uncommittedEffects === 0 && t.committed === quorumOf(def);
}

/**
 * Decides the saga's fate and marks every step to undo: on `abort`, each step that
 * committed or may have; on `commit`, each such step the join does not keep.
 */
export function decide(def: SagaDefinition, ctx: SagaContext, decision: 'commit' | 'abort'): SagaContext {
  const kept = decision === 'commit' ? keptSteps(def, ctx) : new Set<string>();
  const steps: StepState[] = [];
  for (const p of def.steps) {
    const s = ctx.steps[p.index] as StepState;
    const undo = !kept.has(p.id) && mayHaveEffect(s);
    // A step waiting to retry without any effect is abandoned: its retry is cancelled.
    const abandoned = !undo && s.status === 'dispatched' && s.waiting;
    steps[p.index] = { ...s, kept: kept.has(p.id), undo, status: abandoned ? 'failed' : s.status, waiting: undo || abandoned ? false : s.waiting };
  }
  // Timeout and retry timers still pending fire into guards that ignore them.
  return { ...ctx, decision, steps };
}

/** An operator aborted the running saga: the decision is abort, whatever the steps say so far. */
export function abortByOperator(def: SagaDefinition, ctx: SagaContext, ev: { note?: string }): SagaContext {
  return decide(def, { ...ctx, abortedByOperator: ev.note === undefined ? {} : { note: ev.note } }, 'abort');
}

// ---------------------------------------------------------------------------
// Compensating

/** A dependent no longer holds on to this step's effect: it never ran, failed, or was undone. */
function releasesDependency(s: StepState): boolean {
  return s.status === 'pending' || s.status === 'failed' || s.status === 'compensated';
}

/**
 * Starts every compensation that may start now, in the saga's compensation order:
 * - `reverse`: a step to undo starts once each step that ran after it (its dependents)
 *   has been undone or never took effect, so staged sagas are undone in reverse order and
 *   parallel steps all at once;
 * - `parallel`: every step to undo starts at once;
 * - `sequential`: one at a time, the last step to complete first. A step whose success
 *   the saga never saw (still running, or in doubt) has no place in that order: all such
 *   steps start at once, first (no step depends on them, as none committed).
 */
export function launchCompensations(def: SagaDefinition, ctx: SagaContext): Step {
  const commands: SagaCommand[] = [];
  const e = new StepsEditor(def, ctx);
  const start = (p: StepPlan, s: StepState) => {
    const now = e.patchAt(p.index, { status: 'compensating', waiting: false, compAttempt: s.compAttempt + 1, compTotal: s.compTotal + 1 });
    commands.push(...sendCompensate(p, now));
  };
  const order = def.compensationOrder;
  let last: StepPlan | undefined;
  for (const p of def.steps) {
    const s = e.steps[p.index] as StepState;
    if (!s.undo || !mayHaveEffect(s)) continue;
    if (order === 'sequential' && s.committedSeq > 0) {
      if (last === undefined || s.committedSeq > (e.steps[last.index] as StepState).committedSeq) last = p;
      continue;
    }
    if (order === 'reverse' && !p.dependents.every((d) => releasesDependency(e.get(d)))) continue;
    start(p, s);
  }
  // Sequential: the last to complete starts once no other undo is under way or parked.
  if (last !== undefined && !e.steps.some((s) => s.undo && (s.status === 'compensating' || s.status === 'compensationFailed'))) {
    start(last, e.steps[last.index] as StepState);
  }
  return { context: e.context(), commands };
}

function sendCompensate(p: StepPlan, s: StepState): SagaCommand[] {
  return [
    {
      type: 'compensate',
      stepId: p.id,
      worker: p.worker,
      key: s.key as string,
      input: s.input,
      result: s.result,
      attempt: s.compAttempt,
      timeoutMs: p.compensation.timeoutMs,
    },
    {
      type: 'schedule',
      timerId: compTimer(p.id),
      delayMs: p.compensation.timeoutMs,
      jitter: false,
      event: { type: 'COMPENSATION.TIMED_OUT', stepId: p.id, attempt: s.compAttempt },
    },
  ];
}

/** Guard: the event answers the step's current compensation attempt. */
export function isCurrentCompensation(def: SagaDefinition, ctx: SagaContext, ev: { stepId: string; attempt: number }): boolean {
  const s = stepOf(def, ctx, ev.stepId);
  return s !== undefined && s.status === 'compensating' && !s.waiting && s.compAttempt === ev.attempt;
}

/** Guard: an acknowledgement of any attempt of a compensation not yet known done. */
export function isCompensationAck(def: SagaDefinition, ctx: SagaContext, ev: { stepId: string }): boolean {
  const s = stepOf(def, ctx, ev.stepId);
  return s !== undefined && (s.status === 'compensating' || s.status === 'compensationFailed');
}

/** Guard: the backoff timer of a compensation waiting to be retried. */
export function isCompensationRetryDue(def: SagaDefinition, ctx: SagaContext, ev: { stepId: string; attempt: number }): boolean {
  const s = stepOf(def, ctx, ev.stepId);
  return s !== undefined && s.status === 'compensating' && s.waiting && s.compAttempt + 1 === ev.attempt;
}

/**
 * Guard: a late `do` reply for a step that timed out or is already being undone. It does
 * not count for the join (a timed-out step is compensated), but its result helps the
 * compensation and proves the effect exists, so the step is no longer in doubt.
 */
export function isLateResult(def: SagaDefinition, ctx: SagaContext, ev: { stepId: string }): boolean {
  const s = stepOf(def, ctx, ev.stepId);
  return s !== undefined && s.result === undefined && (s.status === 'inDoubt' || (s.undo && (s.status === 'compensating' || s.status === 'compensationFailed')));
}

export function recordLateResult(def: SagaDefinition, ctx: SagaContext, ev: { stepId: string; result: unknown }): SagaContext {
  return put(def, ctx, ev.stepId, { result: ev.result });
}

/** A compensation acknowledged: the step is undone; steps it was blocking may start. */
export function recordCompensated(def: SagaDefinition, ctx: SagaContext, ev: { stepId: string }): Step {
  const done = put(def, ctx, ev.stepId, { status: 'compensated', waiting: false, lastCompError: undefined });
  const launched = launchCompensations(def, done);
  return {
    context: launched.context,
    commands: [{ type: 'cancel', timerId: compTimer(ev.stepId) }, ...launched.commands, { type: 'checkpoint' }],
  };
}

/** A compensation attempt failed: retried with backoff while the step's budget lasts. */
export function recordCompensationFailure(
  def: SagaDefinition,
  ctx: SagaContext,
  ev: { stepId: string; attempt: number; error?: ErrorInfo },
): Step {
  const p = plan(def, ev.stepId);
  const s = ctx.steps[p.index] as StepState;
  const error = ev.error ?? {
    code: 'STEP_TIMED_OUT',
    message: `the compensation of step '${ev.stepId}' (worker '${p.worker}') did not answer within ${p.compensation.timeoutMs} ms (attempt ${ev.attempt})`,
    retryable: true,
  };
  const cancel: SagaCommand = { type: 'cancel', timerId: compTimer(ev.stepId) };
  const refused = s.compRefused ?? 0;
  if (error.code === OVERLOADED) {
    return {
      context: put(def, ctx, ev.stepId, { waiting: true, compRefused: refused + 1 }),
      commands: [cancel, retryAfter(ev.stepId, overloadDelay(refused + 1), true, { type: 'COMPENSATION.RETRY_DUE', stepId: ev.stepId, attempt: s.compAttempt + 1 })],
    };
  }
  if (s.compAttempt - refused <= p.compensation.retries) {
    return {
      context: put(def, ctx, ev.stepId, { waiting: true, lastCompError: error }),
      commands: [
        cancel,
        retryAfter(ev.stepId, backoffDelay(p.compensation.backoff, s.compAttempt - refused), p.compensation.backoff.jitter, {
          type: 'COMPENSATION.RETRY_DUE',
          stepId: ev.stepId,
          attempt: s.compAttempt + 1,
        }),
      ],
    };
  }
  return {
    context: put(def, ctx, ev.stepId, { status: 'compensationFailed', waiting: false, lastCompError: error }),
    commands: [cancel, { type: 'checkpoint' }],
  };
}

export function resendCompensation(def: SagaDefinition, ctx: SagaContext, ev: { stepId: string; attempt: number }): Step {
  const p = plan(def, ev.stepId);
  const next = put(def, ctx, ev.stepId, { waiting: false, compAttempt: ev.attempt, compTotal: (ctx.steps[p.index] as StepState).compTotal + 1 });
  return { context: next, commands: sendCompensate(p, next.steps[p.index] as StepState) };
}

/** Guard: every step to undo has been undone. */
export function compensationComplete(ctx: SagaContext): boolean {
  return tallyOf(ctx.steps).undoOpen === 0;
}

/** Guard: nothing is being undone any more, and some compensation exhausted its retries. */
export function compensationStuck(ctx: SagaContext): boolean {
  const t = tallyOf(ctx.steps);
  return t.compensating === 0 && t.compensationFailed > 0;
}

/** Operator retry: each failed compensation gets a fresh budget and is marked to start again. */
export function resetFailedCompensations(def: SagaDefinition, ctx: SagaContext): SagaContext {
  const e = new StepsEditor(def, ctx);
  for (let i = 0; i < ctx.steps.length; i++) {
    const s = ctx.steps[i] as StepState;
    if (s.status === 'compensationFailed') e.patchAt(i, { status: s.result === undefined ? 'inDoubt' : 'committed', compAttempt: 0, compRefused: 0 });
  }
  return e.context();
}

/** Operator resolve: the operator took care of every remaining effect by hand. */
export function resolveRemaining(def: SagaDefinition, ctx: SagaContext): SagaContext {
  const e = new StepsEditor(def, ctx);
  for (let i = 0; i < ctx.steps.length; i++) {
    const s = ctx.steps[i] as StepState;
    if (s.undo && s.status !== 'compensated') e.patchAt(i, { status: 'compensated', resolvedByOperator: true, waiting: false });
  }
  return e.context();
}

export function markParked(ctx: SagaContext): SagaContext {
  return { ...ctx, timesParked: ctx.timesParked + 1 };
}

// ---------------------------------------------------------------------------
// Outcome

/** The effects still in the world: each step to undo that is not undone. */
export function remainingEffects(def: SagaDefinition, ctx: SagaContext): RemainingEffect[] {
  return def.steps
    .filter((p) => {
      const s = ctx.steps[p.index] as StepState;
      return s.undo && s.status !== 'compensated';
    })
    .map((p) => {
      const s = ctx.steps[p.index] as StepState;
      return {
        stepId: p.id,
        worker: p.worker,
        idempotencyKey: s.key as string,
        input: s.input,
        result: s.result,
        why: s.status === 'compensationFailed' ? ('compensation-failed' as const) : ('blocked' as const),
        // Its do never reported an outcome, its last undo got no clear answer (it may have
        // landed), or a coordinator restarted while it was being undone: the effect may or
        // may not be there.
        inDoubt: (s.committedSeq === 0 && s.result === undefined) || s.recovered || (s.lastCompError !== undefined && s.lastCompError.code !== 'COMPENSATION_FAILED'),
        attempts: s.compTotal,
        lastError: s.lastCompError,
      };
    });
}

/** The state of a saga machine (see `Runtime.status`). */
export type MachineStateName = 'dispatching' | 'gathering' | 'compensating' | 'compensationFailed' | 'committed' | 'compensated';

/** The outcome a saga reports in a given machine state; undefined while it is still running. */
export function outcomeOf(def: SagaDefinition, ctx: SagaContext, state: MachineStateName): SagaOutcome | undefined {
  const ids = (pred: (s: StepState) => boolean) => def.steps.filter((p) => pred(ctx.steps[p.index] as StepState)).map((p) => p.id);
  const resolvedByOperator = ids((s) => s.resolvedByOperator);
  switch (state) {
    case 'committed': {
      const results: Record<string, unknown> = {};
      for (const p of def.steps) {
        const s = ctx.steps[p.index] as StepState;
        if (s.status === 'committed' && (s.kept || ctx.decision === undefined)) results[p.id] = s.result;
      }
      return { sagaId: ctx.sagaId, status: 'committed', results, released: ids((s) => s.undo && s.status === 'compensated'), resolvedByOperator };
    }
    case 'compensated':
      return {
        sagaId: ctx.sagaId,
        status: 'compensated',
        failures: ctx.failures,
        compensated: ids((s) => s.undo && s.status === 'compensated'),
        resolvedByOperator,
        ...(ctx.abortedByOperator !== undefined ? { abortedByOperator: ctx.abortedByOperator } : {}),
      };
    case 'compensationFailed':
      return {
        sagaId: ctx.sagaId,
        status: 'compensation-failed',
        remaining: remainingEffects(def, ctx),
        failures: ctx.failures,
        compensated: ids((s) => s.undo && s.status === 'compensated'),
        decision: ctx.decision ?? 'abort',
        ...(ctx.abortedByOperator !== undefined ? { abortedByOperator: ctx.abortedByOperator } : {}),
      };
    default:
      return undefined;
  }
}

/**
 * A coordinator restored this saga from its journal. Every request the old coordinator
 * may have sent is unaccounted for: each step that may have been sent (anything not
 * pending, and the root steps, which the intent record covers) is tainted, so no later
 * failure of it counts as proof of no effect. Then every request that may have been lost
 * with the old process is sent again: safe, because worker hosts answer repeated keys
 * from their records.
 */
export function recoverSaga(def: SagaDefinition, ctx: SagaContext): Step {
  const e = new StepsEditor(def, ctx);
  for (const p of def.steps) {
    const s = e.steps[p.index] as StepState;
    if (s.status !== 'pending' || p.after.length === 0) e.patchAt(p.index, { tainted: true, recovered: true });
  }
  const next = e.context();
  return { context: next, commands: redrive(def, next) };
}

/** The requests a restored saga sends again. */
export function redrive(def: SagaDefinition, ctx: SagaContext): SagaCommand[] {
  const commands: SagaCommand[] = [];
  for (const p of def.steps) {
    const s = ctx.steps[p.index] as StepState;
    if (s.status === 'dispatched') {
      if (s.waiting) commands.push(retryAfter(p.id, 0, false, { type: 'STEP.RETRY_DUE', stepId: p.id, attempt: s.attempt + 1 }));
      else commands.push(...sendDo(p, s.key as string, s.input, s.attempt));
    } else if (s.status === 'compensating') {
      if (s.waiting) commands.push(retryAfter(p.id, 0, false, { type: 'COMPENSATION.RETRY_DUE', stepId: p.id, attempt: s.compAttempt + 1 }));
      else commands.push(...sendCompensate(p, s));
    }
  }
  return commands;
}
