/**
 * What a runtime offers its callers: the Runtime interface, its events, and what an
 * operator sees of one saga.
 */
import type { MachineStateName, StepStatus } from '../machines/saga-logic.ts';
import type { DeadLetter, SagaDefinition, SagaInputOf, SagaOutcome, SagaResultsOf, WorkerDefinition } from '../types.ts';
import type { RunOptions } from './options.ts';

/** Raised when a saga parks in `compensation-failed` (and again when recover() restores it parked): an operator must act. */
export type EscalationEvent = Omit<DeadLetter, 'parkedAt'>;

/** The events of `Runtime.on`, by name. */
export interface RuntimeEvents {
  /** A saga parked in `compensation-failed`: an operator must act. */
  escalation: EscalationEvent;
  /** A saga driven here ended (committed or compensated), once its outcome is journaled. */
  outcome: SagaOutcome & { readonly saga: string; readonly version: number };
  /**
   * A step of a saga driven here changed status or attempt: dispatched, committed, failed,
   * compensating, compensated, … Informational: emitted as the saga's machine moves, before
   * the journal has it. Only sagas started (or restored) while a `step` listener exists
   * emit it, so it costs nothing otherwise.
   */
  step: StepEvent;
}

/** A step's new status (see `RuntimeEvents.step`). */
export interface StepEvent {
  readonly sagaId: string;
  readonly saga: string;
  readonly version: number;
  readonly stepId: string;
  readonly worker: string;
  readonly status: StepStatus;
  /** `do` requests sent so far. */
  readonly attempt: number;
  /** Compensation requests sent in the current round. */
  readonly compensationAttempt: number;
}

/**
 * What an operator sees of one saga: live when this runtime drives it, else as its
 * journal last recorded it (a running saga's last checkpoint; a finished or parked
 * saga's final state).
 */
export interface SagaStatus {
  readonly sagaId: string;
  readonly saga: string;
  readonly version: number;
  /** The machine state: dispatching, gathering, compensating, compensationFailed, committed, compensated. */
  readonly state: MachineStateName;
  /**
   * Every step's status. At the end: `committed` (kept), `compensated` (undone, or
   * released by a join that kept others), `failed` (applied nothing), `pending` (never
   * ran); parked: `compensationFailed` for an undo that exhausted its retries, `committed`
   * or `inDoubt` for one blocked behind it. Empty only for a running saga that another
   * coordinator started and whose definition this runtime was not given.
   */
  readonly steps: Readonly<Record<string, StepStatus>>;
  readonly outcome: SagaOutcome | undefined;
}

/** The options of `Runtime.resolve`. */
export interface ResolveOptions {
  /** Logged with the operator action. */
  readonly note?: string;
  /** The `review` token of the `RESOLVE_NEEDS_REVIEW` error: the operator has looked again since those fences. */
  readonly reviewed?: string;
  /**
   * How long each fence may wait for its key: a `do` that still runs is waited for this long
   * (then the resolve fails with `FENCE_FAILED`, the saga still parked). Default 10_000.
   */
  readonly fenceTimeoutMs?: number;
  /** Resolve without fencing the keys (their worker is gone for good). Unsafe: nothing stops a late `do`. Default false. */
  readonly force?: boolean;
}

/** What `Runtime.start` resolves with: the saga's id, and its outcome to come. */
export interface StartedSaga<TResults = Readonly<Record<string, unknown>>> {
  readonly sagaId: string;
  /** Settles as `run()` would: with the outcome, or rejected when the saga cannot go on in this runtime. */
  readonly outcome: Promise<SagaOutcome<TResults>>;
}

/** One saga as the store lists it (see `Runtime.list`). */
export interface SagaSummary {
  readonly sagaId: string;
  readonly saga: string;
  readonly version: number;
  /** `running` (its compensation included) or `parked` (in `compensation-failed`, waiting for an operator). */
  readonly status: 'running' | 'parked';
  /** Epoch ms of its intent. */
  readonly startedAt: number;
  /** Epoch ms of its last journal write. */
  readonly updatedAt: number;
  /** The coordinator that wrote its journal last. */
  readonly owner: string | undefined;
}

/** The options of `Runtime.list`. */
export interface ListOptions {
  /** Only the sagas in this status. Default: running and parked. */
  readonly status?: 'running' | 'parked';
}

/** A saga runtime (a coordinator), made by `createRuntime`. */
export interface Runtime {
  /** Serves workers from this process on the runtime's transport. */
  host(...workers: WorkerDefinition[]): Runtime;
  /**
   * Runs one saga to its end. Resolves with its outcome: `committed`, `compensated`, or
   * `compensation-failed` (parked for an operator). Rejects for misuse before anything is
   * dispatched, with a `JournalUnavailableError` (`dispatched: false`) when the saga's intent
   * cannot be written, and, once it has dispatched, only when the saga cannot go on in this
   * runtime: the journal stayed unavailable (`JournalUnavailableError`, `dispatched: true`),
   * another coordinator took it over (`SAGA_FENCED`), or the runtime closed
   * (`RUNTIME_CLOSED`). Each of those leaves the saga to `recover()`.
   *
   * `input` must be the saga's input type, and a committed outcome's `results` are typed
   * by step id from each step's worker (see `defineSaga`).
   */
  run<S extends SagaDefinition<any, any>>(saga: S, input: SagaInputOf<S>, options?: RunOptions): Promise<SagaOutcome<SagaResultsOf<S>>>;
  /**
   * Starts a saga as `run()` does, and resolves as soon as it is known to the store (its
   * intent written, or a saga with this `sagaId` found), with its id and its outcome to come.
   * Rejects as `run()` does before anything is dispatched (misuse, `WORKER_NOT_HOSTED`,
   * `SAGA_ID_CONFLICT`, a `JournalUnavailableError` with `dispatched: false`). It waits for a
   * slot under `maxInFlight` like `run()`. A rejection of `outcome` that nobody awaits is not
   * reported as unhandled.
   */
  start<S extends SagaDefinition<any, any>>(saga: S, input: SagaInputOf<S>, options?: RunOptions): Promise<StartedSaga<SagaResultsOf<S>>>;
  /**
   * The outcome of a saga by its id, from any coordinator sharing the store (or this one):
   * waits until it is committed, compensated, or parked (`compensation-failed`). Resolves
   * undefined when it has none within `timeoutMs` (default: no limit); polls the store
   * every `pollMs` (default 250) for sagas not driven here. Rejects with
   * `SagaNotFoundError` when the store has no saga with this id.
   */
  outcome(sagaId: string, options?: { timeoutMs?: number; pollMs?: number }): Promise<SagaOutcome | undefined>;
  /**
   * Operator: resumes the compensation of a parked saga with fresh retry budgets. Works
   * from any coordinator sharing the store: one that does not drive the saga takes it over
   * first (it needs the saga's definition, from `sagas` or an earlier run).
   */
  retry(sagaId: string): Promise<SagaOutcome>;
  /**
   * Operator: aborts a running saga. It dispatches nothing more and undoes every step that
   * committed or may have (as after a failure), and resolves with its outcome:
   * `compensated` with `abortedByOperator`, or `compensation-failed` when an undo ran out of
   * retries. Works from any coordinator sharing the store: one that does not drive the saga
   * takes it over first (the one that drove it is fenced off). A saga already undoing is
   * left as it is (its outcome comes); a parked or finished one is refused with
   * `SAGA_NOT_RUNNING`.
   */
  abort(sagaId: string, note?: string): Promise<SagaOutcome>;
  /**
   * Operator: declares the remaining effects of a parked saga handled by hand (from any
   * coordinator, as `retry`); the saga ends `compensated` (or `committed`, when it was
   * releasing steps of a commit), naming them in `resolvedByOperator`.
   *
   * It first fences the key of every remaining effect through the worker's hosts: from then
   * on no `do` of them can apply. It ends the saga only when nothing can have landed after
   * the operator looked; otherwise it rejects with a `ResolveError`, the saga still parked:
   * `RESOLVE_NEEDS_REVIEW` (look at the system of record again, then resolve again with
   * `reviewed: error.review`) or `FENCE_FAILED` (a key could not be fenced). `force` skips
   * the fences, for a worker gone for good: nothing then stops a late `do` of it. A string
   * as second argument is the `note`.
   */
  resolve(sagaId: string, options?: ResolveOptions | string): Promise<SagaOutcome>;
  /**
   * Restores unfinished sagas from the store and drives them on (after a coordinator
   * restart); resolves with the ids of the sagas restored. It skips sagas owned by another
   * coordinator whose heartbeat is in the store (with `ownership` on), and sagas whose
   * definition (by name and version) this runtime lacks: those are logged at warn and stay
   * in the store as they are.
   */
  recover(): Promise<string[]>;
  /** A saga's machine state and per-step status: of the saga driven here, else as its journal last recorded it; undefined when the store has none. */
  status(sagaId: string): Promise<SagaStatus | undefined>;
  /** The dead letters of the parked sagas in the store (from every coordinator sharing it). */
  deadLetters(): Promise<DeadLetter[]>;
  /**
   * The sagas the store lists as unfinished (from every coordinator sharing it): running and
   * parked, oldest first. Finished sagas are not listed (ask `status` or `outcome` by id).
   */
  list(options?: ListOptions): Promise<SagaSummary[]>;
  /** The saga definitions given in the `sagas` option. */
  readonly sagas: readonly SagaDefinition[];
  /** Listens to a runtime event; returns a function that removes the listener. */
  on<K extends keyof RuntimeEvents>(event: K, listener: (e: RuntimeEvents[K]) => void): () => void;
  /** Sagas running (not parked) right now. */
  readonly inFlight: number;
  /** `run()` calls waiting for a slot (see `maxInFlight`): nothing of them is written or sent yet. */
  readonly queued: number;
  /** This coordinator's id: the `owner` of the journals it writes. */
  readonly coordinatorId: string;
  /**
   * Closes the runtime. From the call on, `run()`, `host()`, `recover()`, `retry()`,
   * `resolve()` and `outcome()` are refused with `RUNTIME_CLOSED`. `run()` calls queued for
   * a slot (`maxInFlight`) reject with `RUNTIME_CLOSED`, nothing of them written or sent.
   * Every saga driven here is stopped at once (it sends and writes nothing more) and the
   * calls waiting for it reject with `RUNTIME_CLOSED`; its journal stays as last written,
   * for `recover()` or another coordinator. Then the workers hosted here stop taking
   * requests, and close waits up to `drainMs` (default 5_000, real time) for their calls
   * in flight; it then removes this coordinator's heartbeat and stops the worker and timer
   * actors. It closes neither the transport, nor the store, nor a NATS connection. A
   * second call resolves at once.
   */
  close(options?: { drainMs?: number }): Promise<void>;
}
