/**
 * Shared types of scatter-saga: definitions, outcomes, and the four boundaries
 * (Transport, Store, Clock, Logger). Plain types only; no behaviour lives here.
 */
import type { Logger } from 'pino';
import type { ErrorInfo } from './errors.ts';

export type { Logger };

// ---------------------------------------------------------------------------
// Workers

/** What a worker's `do` and `compensate` receive besides their input. */
export interface WorkerContext {
  readonly sagaId: string;
  readonly stepId: string;
  readonly worker: string;
  /**
   * Stable for this step of this saga: the same for every attempt and for the
   * compensation. Pass it on to external APIs (payment providers, upserts).
   */
  readonly idempotencyKey: string;
  /** 1 for the first attempt, counting up with retries of the same operation. */
  readonly attempt: number;
  /** Epoch milliseconds after which the coordinator no longer waits for this reply. */
  readonly deadline: number;
  /** A pino logger bound to `sagaId`, `stepId` and `worker`. */
  readonly logger: Logger;
  /**
   * The W3C trace context of this request (`00-<trace id>-<span id>-<flags>`): the saga's
   * trace, and this attempt's span. Undefined when the saga is not traced (see "Tracing" in
   * docs/guide.md). Pass it on to the calls you make to join their spans to the saga's trace.
   */
  readonly traceparent: string | undefined;
  /**
   * Aborted when this host loses its claim on the key (it could not renew its lease,
   * and another host may now run or undo the same key). Pass it to the calls you make,
   * and do not apply an effect once it is aborted.
   */
  readonly signal: AbortSignal;
  /**
   * Grows with every claim on this key, across hosts: a system of record that remembers
   * the highest token it saw for a key and refuses lower ones fences off a host that
   * lost its claim while it was still running.
   */
  readonly fencingToken: number;
}

/** Undoes what `do` did. `result` is undefined when `do` never returned (a timeout whose late `do` did not finish). */
export type CompensateFn<I = any, R = any> = (input: I, result: R | undefined, ctx: WorkerContext) => unknown;

/** A worker as written by a user: a side effect and its mandatory undo. */
export interface WorkerSpec<I = any, R = any> {
  /** Unique name; steps refer to it, and over NATS it is part of the subject. `[A-Za-z0-9_-]+`. */
  readonly name: string;
  /** Applies the effect. Throw {@link TerminalError} to fail without retries. */
  do(input: I, ctx: WorkerContext): Promise<R> | R;
  /**
   * Undoes the effect. Mandatory: a step that needs no undo says so with
   * `noCompensation('why')`.
   */
  compensate: CompensateFn<I, R>;
}

/** A validated worker, returned by `defineWorker`. */
export interface WorkerDefinition<I = any, R = any> extends WorkerSpec<I, R> {
  readonly kind: 'worker';
  /** Why this worker needs no undo, when it was declared with `noCompensation`. */
  readonly noCompensationReason: string | undefined;
}

// ---------------------------------------------------------------------------
// Sagas

/** Exponential backoff: `initialMs * factor^(n-1)`, capped at `maxMs`, with equal jitter. */
export interface BackoffSpec {
  /** Delay before the first retry. Default 100. */
  readonly initialMs?: number;
  /** Growth per retry. Default 2. */
  readonly factor?: number;
  /** Upper bound of one delay. Default 10_000. */
  readonly maxMs?: number;
  /** Randomize each delay between half and all of it. Default true. */
  readonly jitter?: boolean;
}

/**
 * In which order a saga undoes its steps (docs/patterns.md, "Compensation order"):
 * - `reverse` (the default): a step is undone once every step that ran after it (named
 *   it in `after`) is undone or never took effect; parallel steps are undone at once;
 * - `parallel`: every step to undo at once, whatever ran after what;
 * - `sequential`: one step at a time, the last to complete first. Steps whose outcome the
 *   saga never saw (still running, or timed out) count as the last to complete.
 */
export type CompensationOrder = 'reverse' | 'parallel' | 'sequential';

/** How compensations are retried. */
export interface CompensationSpec {
  /** Retries of one step's compensation after its first attempt fails. Default 5. */
  readonly retries?: number;
  readonly backoff?: BackoffSpec;
  /** How long one compensation attempt may take before it counts as failed. Default 30_000. */
  readonly timeoutMs?: number;
}

/** Which results a saga needs before it commits. */
export type JoinSpec =
  /** Every step must commit (the default). */
  | { readonly kind: 'all' }
  /** The first step to commit wins; every other step is compensated. Steps must be parallel. */
  | { readonly kind: 'any' }
  /** The first `n` steps to commit are kept; every other step is compensated. Steps must be parallel. */
  | { readonly kind: 'quorum'; readonly n: number };

/** One step of a saga: a use of a worker. */
export interface StepSpec<TIn = any> {
  /** The worker's name, or the worker definition itself. */
  readonly worker: string | WorkerDefinition;
  /**
   * Derives the step's input from the saga input and the results of the steps it
   * runs `after`. Default: the saga input itself. Must be pure.
   */
  readonly input?: (sagaInput: TIn, results: Readonly<Record<string, unknown>>) => unknown;
  /** Steps that must commit before this one is dispatched (stages, or a DAG). Default: none. */
  readonly after?: readonly string[];
  /** How long one attempt may take; then the step is in doubt and is compensated. Default 30_000. */
  readonly timeoutMs?: number;
  /** Retries of `do` after a retryable error. Default 0. */
  readonly retries?: number;
  /** Backoff between retries of `do`. */
  readonly backoff?: BackoffSpec;
  /** Overrides the saga's compensation policy for this step. */
  readonly compensation?: CompensationSpec;
  /**
   * A supervisor's check of the step's result before the saga counts it (docs/patterns.md,
   * "Supervisor gate"): returns `true` to accept it, or a reason (a string) to reject it.
   * A rejected step fails with `GATE_REJECTED`; its worker did commit, so it is compensated
   * like any other step with an effect. Must be pure and synchronous: a gate that throws,
   * or returns anything but `true` or a string, rejects, and the reason says so.
   */
  readonly gate?: (result: any, input: any) => true | string;
}

/** A saga as written by a user. */
export interface SagaSpec<TIn = any> {
  readonly name: string;
  readonly version: number;
  readonly steps: Readonly<Record<string, StepSpec<TIn>>>;
  /** Default `{ kind: 'all' }`. */
  readonly join?: JoinSpec;
  /** The saga's compensation policy: its steps' retries, backoff and timeout (each step may override them), and the saga's undo `order`. */
  readonly compensation?: SagaCompensationSpec;
}

/** The compensation policy of a saga: a {@link CompensationSpec} for its steps, and the order its undos run in. */
export interface SagaCompensationSpec extends CompensationSpec {
  /** Default `'reverse'`. */
  readonly order?: CompensationOrder;
}

/** A fully resolved backoff. */
export interface Backoff {
  readonly initialMs: number;
  readonly factor: number;
  readonly maxMs: number;
  readonly jitter: boolean;
}

/** One step, validated and with every default filled in. */
export interface StepPlan {
  readonly id: string;
  /** Position in the definition: used for stable ordering. */
  readonly index: number;
  readonly worker: string;
  /** Derives the step's input from the saga input and the results of the steps in `after`. */
  readonly input: (sagaInput: unknown, results: Readonly<Record<string, unknown>>) => unknown;
  readonly after: readonly string[];
  /** Steps that run after this one (the reverse of `after`). */
  readonly dependents: readonly string[];
  readonly timeoutMs: number;
  readonly retries: number;
  readonly backoff: Backoff;
  readonly compensation: { readonly retries: number; readonly backoff: Backoff; readonly timeoutMs: number };
  /** The supervisor gate of the step's result, when it has one. */
  readonly gate?: (result: unknown, input: unknown) => unknown;
}

/**
 * A validated saga, returned by `defineSaga`. `TIn` is the saga input, `TResults` the
 * `results` of its committed outcome, by step id (both inferred by `defineSaga`).
 */
export interface SagaDefinition<TIn = any, TResults = Readonly<Record<string, unknown>>> {
  readonly kind: 'saga';
  readonly name: string;
  readonly version: number;
  readonly steps: readonly StepPlan[];
  readonly stepsById: ReadonlyMap<string, StepPlan>;
  readonly join: JoinSpec;
  /** The order its undos run in (default `'reverse'`). */
  readonly compensationOrder: CompensationOrder;
  /** Workers this saga uses, by name, when they were given as definitions. */
  readonly workers: ReadonlyMap<string, WorkerDefinition | undefined>;
  /** Phantom: the saga input type. */
  readonly __input?: TIn;
  /** Phantom: the results of a committed outcome, by step id. */
  readonly __results?: TResults;
}

// ---------------------------------------------------------------------------
// Types of sagas, inferred from their definitions
//
// defineSaga infers, without type arguments, three things from `steps`: each step's worker
// (W, by step id), each step's `after` (A, by step id), and the saga input (TIn) from any
// step whose `input` annotates its first parameter. Every step is then checked against
// them: `after` names other steps of the same saga, `input` gets the saga input and the
// results of the steps in `after`, and returns what the step's worker accepts.

/** What a worker's `do` accepts: the `I` of `WorkerDefinition<I, R>`; `unknown` for a worker given by name. */
export type WorkerInputOf<W> = W extends WorkerDefinition<infer I, any> ? I : unknown;

/** What a worker's `do` resolves with: the awaited `R` of `WorkerDefinition<I, R>`; `unknown` for a worker given by name. */
export type WorkerResultOf<W> = W extends WorkerDefinition<any, infer R> ? Awaited<R> : unknown;

/** The input `run` takes for a saga made by `defineSaga`. */
export type SagaInputOf<S> = S extends SagaDefinition<infer I, any> ? I : never;

/** The `results` of a saga's committed outcome, by step id. */
export type SagaResultsOf<S> = S extends SagaDefinition<any, infer R> ? R : never;

/** Each step's worker, by step id: what `defineSaga` infers from `steps`. */
export type StepWorkers = Readonly<Record<string, string | WorkerDefinition>>;

/** Each step's `after`, by step id (`unknown` for a step without one): what `defineSaga` infers from `steps`. */
export type StepAfters = Readonly<Record<string, unknown>>;

/** `T`, in a position the compiler does not infer `T` from. */
type Held<T> = [T][T extends unknown ? 0 : never];

/** True when the step ids are unknown to the compiler: steps typed as a record, or `defineSaga<TIn>(...)`. */
type UnknownIds<W> = string extends keyof W ? true : false;

/** The ids in step `K`'s `after`, as the compiler sees them (`string` for a `string[]`). */
type AfterOf<A, K> = K extends keyof A ? (A[K] extends readonly (infer D)[] ? D : never) : never;

/** True when step `K`'s `after` is a `string[]` whose ids the compiler cannot see (not written as a literal). */
type UnknownAfter<A, K> = string extends AfterOf<A, K> ? true : false;

/** What each step's worker resolves with, by step id. */
type StepResults<W> = { readonly [K in keyof W]: WorkerResultOf<W[K]> };

/**
 * The `results` step `K`'s `input` receives: those of the steps it runs `after`, by step
 * id, and of no other step. When the compiler cannot see which steps those are, any of
 * them may be there.
 */
export type ResultsBefore<W, A, K> = UnknownIds<W> extends true
  ? Readonly<Record<string, unknown>>
  : UnknownAfter<A, K> extends true
    ? Partial<StepResults<W>>
    : { readonly [D in Extract<AfterOf<A, K>, keyof W>]: WorkerResultOf<W[D]> };

/**
 * The `results` of a committed outcome: every step's under join `all`; under `any` and
 * `quorum` only the kept steps' are there, so each may be missing.
 */
export type CommittedResults<W, J> = UnknownIds<W> extends true
  ? Readonly<Record<string, unknown>>
  : [J] extends [{ readonly kind: 'all' }]
    ? { readonly [K in keyof W]: WorkerResultOf<W[K]> }
    : { readonly [K in keyof W]?: WorkerResultOf<W[K]> };

/** Step `K`'s `input`: from the saga input and the results of the steps in its `after`, to what its worker accepts. */
export type StepInputFn<TIn, W, A, K extends keyof W> = (sagaInput: TIn, results: ResultsBefore<W, A, K>) => WorkerInputOf<W[K]>;

/**
 * True when step `K` must have an `input`: it passes the saga input itself to its worker
 * otherwise, and the saga input is typed (not `unknown`) and is not what the worker accepts.
 */
type InputNeeded<TIn, W, K extends keyof W> = unknown extends Held<TIn> ? false : [Held<TIn>] extends [WorkerInputOf<W[K]>] ? false : true;

/** What every step has besides `input`, checked against the other steps of its saga. */
export interface TypedStepOptions<W, A, K extends keyof W> {
  /** The worker's name, or the worker definition itself. */
  readonly worker: string | WorkerDefinition;
  /**
   * Steps that must commit before this one is dispatched (stages, or a DAG). Default: none.
   * Ids of the other steps of the same saga; a `string[]` the compiler cannot see into is
   * checked by `defineSaga` at run time only.
   */
  readonly after?: readonly ([UnknownIds<W>, UnknownAfter<A, K>] extends [false, false] ? Exclude<Extract<keyof W, string>, K> : string)[];
  /** How long one attempt may take; then the step is in doubt and is compensated. Default 30_000. */
  readonly timeoutMs?: number;
  /** Retries of `do` after a retryable error. Default 0. */
  readonly retries?: number;
  /** Backoff between retries of `do`. */
  readonly backoff?: BackoffSpec;
  /** Overrides the saga's compensation policy for this step. */
  readonly compensation?: CompensationSpec;
  /**
   * A supervisor's check of the step's result before the saga counts it: `true` accepts it,
   * a string (the reason) rejects it. A rejected step fails with `GATE_REJECTED` and, as its
   * worker did commit, is compensated. Must be pure and synchronous (see {@link StepSpec}).
   */
  gate?(result: WorkerResultOf<W[K]>, input: WorkerInputOf<W[K]>): true | string;
}

/**
 * Step `K` of a saga as `defineSaga` checks it (a {@link StepSpec} typed against the other
 * steps). `input` derives the step's input from the saga input and the results of the
 * steps it runs `after`, and must return what the worker accepts; without it the worker
 * gets the saga input itself. Must be pure.
 */
export type TypedStepSpec<TIn, W, A, K extends keyof W> = TypedStepOptions<W, A, K> &
  (InputNeeded<TIn, W, K> extends true ? { readonly input: StepInputFn<TIn, W, A, K> } : { readonly input?: StepInputFn<TIn, W, A, K> });

/**
 * The steps of a saga as `defineSaga` reads them. The first two parts infer each step's
 * worker (`W`) and `after` (`A`) by step id; the last types and checks each step against
 * them.
 */
export type TypedSteps<TIn, W, A> = { readonly [K in keyof W]: { readonly worker: W[K] } } & {
  readonly [K in keyof A]: { readonly after?: A[K] };
} & { readonly [K in Extract<keyof W, string>]: TypedStepSpec<TIn, W, A, K> };

/** The join `defineSaga` assumes when none is given: `all` (any join, when the step ids are unknown to the compiler). */
export type DefaultJoin<W> = UnknownIds<W> extends true ? JoinSpec : { readonly kind: 'all' };

/** A saga as `defineSaga` reads it: a {@link SagaSpec} whose steps are typed against each other. */
export interface TypedSagaSpec<TIn, W, A, J extends JoinSpec> {
  readonly name: string;
  readonly version: number;
  readonly steps: TypedSteps<TIn, W, A>;
  /** Default `{ kind: 'all' }`. */
  readonly join?: J;
  /** The saga's compensation policy: its steps' retries, backoff and timeout (each step may override them), and the saga's undo `order`. */
  readonly compensation?: SagaCompensationSpec;
}

// ---------------------------------------------------------------------------
// Outcomes

/** Why a step did not commit. */
export interface StepFailure {
  readonly stepId: string;
  readonly worker: string;
  /** `rejected`: the step's `do` succeeded and its gate rejected the result (`GATE_REJECTED`). */
  readonly reason: 'failed' | 'timed-out' | 'input-failed' | 'rejected';
  readonly attempt: number;
  readonly error: ErrorInfo;
  /**
   * The failure does not prove that `do` applied nothing (a timeout, a lost or unreadable
   * reply, another host still holding the key, a coordinator that restarted, or a result
   * its gate rejected, whose effect does exist): the step may hold an effect and is
   * compensated.
   */
  readonly inDoubt: boolean;
}

/** An effect that is still in the world because its compensation could not complete. */
export interface RemainingEffect {
  readonly stepId: string;
  readonly worker: string;
  readonly idempotencyKey: string;
  readonly input: unknown;
  /** The result of `do`, when it is known. */
  readonly result: unknown;
  /** `compensation-failed`: its compensation exhausted its retries; `blocked`: it waits behind one that did. */
  readonly why: 'compensation-failed' | 'blocked';
  /**
   * The effect may or may not be there: its `do` never reported an outcome, its last undo
   * attempt got no clear answer (a timeout, an unreadable reply) and may have landed, or a
   * coordinator restarted while the saga was being undone. Without it, the effect is
   * certainly there.
   */
  readonly inDoubt: boolean;
  /** Compensation attempts made so far. */
  readonly attempts: number;
  readonly lastError: ErrorInfo | undefined;
}

/**
 * The saga committed: every step the join policy keeps is committed; any other step that ran was undone (or, in `resolvedByOperator`, handled by hand).
 * `TResults`: the results by step id, typed from each step's worker for a saga made by `defineSaga`.
 */
export interface CommittedOutcome<TResults = Readonly<Record<string, unknown>>> {
  readonly sagaId: string;
  readonly status: 'committed';
  /** Results of the kept steps, by step id. */
  readonly results: TResults;
  /** Steps that ran but were not kept by the join policy, and were compensated. */
  readonly released: readonly string[];
  /** Steps an operator marked resolved by hand. */
  readonly resolvedByOperator: readonly string[];
}

/** The saga was undone: no effect of it remains (those in `resolvedByOperator` were handled by hand). */
export interface CompensatedOutcome {
  readonly sagaId: string;
  readonly status: 'compensated';
  readonly failures: readonly StepFailure[];
  /** Steps whose effect was (or may have been) applied and has been undone. */
  readonly compensated: readonly string[];
  readonly resolvedByOperator: readonly string[];
  /** An operator aborted the saga while it ran (`Runtime.abort`), with the note given. */
  readonly abortedByOperator?: { readonly note?: string };
}

/** The saga is parked: a compensation exhausted its retries, and `remaining` lists what is still in the world. */
export interface CompensationFailedOutcome {
  readonly sagaId: string;
  readonly status: 'compensation-failed';
  /** Exactly the effects that remain in the world. */
  readonly remaining: readonly RemainingEffect[];
  readonly failures: readonly StepFailure[];
  readonly compensated: readonly string[];
  /** What the saga was heading for: `commit` when only releasing non-kept steps failed. */
  readonly decision: 'commit' | 'abort';
}

/** How a saga ended (or parked): what `run()` resolves with. */
export type SagaOutcome<TResults = Readonly<Record<string, unknown>>> = CommittedOutcome<TResults> | CompensatedOutcome | CompensationFailedOutcome;

// ---------------------------------------------------------------------------
// Wire: what travels between the coordinator and worker hosts (any transport)

/** The version of the wire protocol (docs/protocol.md): the `v` field and `Saga-Protocol` header of every request. */
export const PROTOCOL_VERSION = 1;

/** The two operations of a worker. */
export type WorkerOp = 'do' | 'compensate' | 'fence';

/** One request from a coordinator to a worker host. */
export interface WorkerRequest {
  readonly v: typeof PROTOCOL_VERSION;
  readonly op: WorkerOp;
  readonly worker: string;
  readonly sagaId: string;
  readonly stepId: string;
  readonly key: string;
  readonly attempt: number;
  /** Epoch milliseconds. */
  readonly deadline: number;
  readonly input: unknown;
  /** For `compensate`: the result of `do` as the coordinator knows it. */
  readonly result?: unknown;
  /** For `fence` (required there): the fence's id, 1 to 128 characters, the same for every key one resolve fences. */
  readonly fence?: string;
  readonly traceparent?: string;
}

/** A worker host's answer to one request: the result of the operation, or its error. */
export type WorkerReply = { readonly ok: true; readonly result?: unknown } | { readonly ok: false; readonly error: ErrorInfo };

/** Serves requests for one worker on a worker host. */
export type WorkerHandler = (request: WorkerRequest) => Promise<WorkerReply>;

/** A registration made with {@link Transport.serve}; `stop` takes nothing new and waits for what is in flight. */
export interface Served {
  /** Takes nothing new and resolves once what is in flight has been answered. */
  stop(): Promise<void>;
}

/**
 * How coordinators reach worker hosts. The request side is used by worker actors,
 * the serve side by worker hosts.
 */
export interface Transport {
  /**
   * Sends a request and waits for the reply. Rejects with a `TransportError`
   * (`NO_RESPONDERS`, `TRANSPORT_ERROR`, `PROTOCOL_ERROR`) or, after `timeoutMs`,
   * with a `SagaError` of code `STEP_TIMED_OUT`.
   */
  request(request: WorkerRequest, timeoutMs: number): Promise<WorkerReply>;
  /** Starts serving a worker. */
  serve(worker: string, handler: WorkerHandler): Promise<Served> | Served;
  /** Whether some host serves this worker right now. */
  isServed(worker: string): Promise<boolean> | boolean;
  /**
   * Optional: the error `request` would refuse this request with before sending it
   * (e.g. over the connection's payload limit), or undefined. `run()` asks it for the
   * first requests of a saga, so that such a saga is rejected before anything is dispatched.
   */
  check?(request: WorkerRequest): Error | undefined;
  /** Closes the transport: requests made after it are refused. */
  close(): Promise<void>;
}

// ---------------------------------------------------------------------------
// Stores

/** The state of one idempotency key on a worker host (DESIGN section 3). */
export type KeyState = 'new' | 'doing' | 'done' | 'failed' | 'retryable' | 'uncertain' | 'compensating' | 'undoPending' | 'compensated';

/** What the hosts of a worker remember about one idempotency key. Plain JSON. */
export interface KeyRecord {
  readonly state: KeyState;
  /** The attempt of the last `do` run for this key. */
  readonly attempt?: number;
  /** The running `do` re-runs one that a host which stopped left unfinished. */
  readonly interrupted?: boolean;
  /** Fingerprint of the input first seen with this key. */
  readonly inputHash: string;
  readonly result?: unknown;
  readonly error?: ErrorInfo;
  /**
   * While `doing` or `compensating`: the claim that runs the operation, `<host>/<n>`.
   * A host writes its claim (compare-and-set) before it runs any user code.
   */
  readonly owner?: string;
  /**
   * While `doing` or `compensating`: the epoch ms until which the claim holds. The
   * holder renews it while its user code runs; once it has passed, the holder is
   * presumed dead and another host may take the key over.
   */
  readonly leaseUntil?: number;
  /** The first fence of the key (an operator resolving its saga): no `do` applies after it. */
  readonly fence?: FenceRecord;
  readonly updatedAt: number;
}

/**
 * What a `do` had left on a key when the first fence came: `none` (no `do` applied: none
 * ran, or its run failed), `applied` (a `do` applied), `unknown` (a `do` may have
 * applied: an interrupted run), `undoPending` (an undo had started and not finished: the
 * effect may be there), `compensated` (undone).
 */
export type FenceWas = 'none' | 'applied' | 'unknown' | 'undoPending' | 'compensated';

/** A key's first fence: which one (`by`, the resolve that sent it) and what it found. */
export interface FenceRecord {
  readonly by: string;
  readonly was: FenceWas;
}

/** A key's record as read, with the revision a compare-and-set write must name. */
export interface VersionedKeyRecord {
  /** Undefined when the key was never written, or was forgotten after the dedup window. */
  readonly record: KeyRecord | undefined;
  /** The store's revision of the key: 0 when it was never written. */
  readonly revision: number;
}

/**
 * Where the hosts of a worker keep their per-key records for the dedup window. Every
 * host serving a worker must share one store: claims are taken on it.
 */
export interface DedupStore {
  /** A key's record (none when never written or forgotten) with the revision a compare-and-set write must name. */
  read(worker: string, key: string): VersionedKeyRecord | Promise<VersionedKeyRecord>;
  /**
   * Compare-and-set: writes the record only if the key is still at `revision`. Resolves
   * with the new revision, or `undefined` when another write came first. Rejects only when
   * the store cannot be reached and it cannot tell whether the write happened.
   */
  write(worker: string, key: string, record: KeyRecord, revision: number): number | undefined | Promise<number | undefined>;
}

/** The journal of one saga. */
export interface SagaRecord {
  readonly sagaId: string;
  readonly saga: string;
  readonly version: number;
  readonly input: unknown;
  readonly status: 'running' | 'parked' | 'committed' | 'compensated';
  readonly startedAt: number;
  readonly updatedAt: number;
  /** The persisted machine snapshot at the last checkpoint (undefined until the first). */
  readonly snapshot: unknown;
  readonly outcome: SagaOutcome | undefined;
  /** While parked: the dead letter, written in the same write as the parked state. */
  readonly deadLetter?: DeadLetter;
  /** While parked: the `compensation-failed` outcome, for callers in other processes (see `Runtime.outcome`). */
  readonly parked?: CompensationFailedOutcome;
  /** The coordinator that wrote the journal last (its `coordinatorId`): the saga's owner. */
  readonly owner?: string;
  /** The trace context the saga was started with (`run()`'s `traceparent`): a coordinator that resumes it continues that trace. */
  readonly traceparent?: string;
}

/** A parked saga, waiting for an operator. */
export interface DeadLetter {
  readonly sagaId: string;
  readonly saga: string;
  readonly version: number;
  readonly remaining: readonly RemainingEffect[];
  readonly failures: readonly StepFailure[];
  readonly parkedAt: number;
  /** How many times the saga has been parked (operator retries that failed again add one). */
  readonly timesParked: number;
}

/** A journal as read, with the revision the next write must name. */
export interface VersionedSagaRecord {
  readonly record: SagaRecord;
  /** 0 for a finished saga that was archived: it takes no more writes. */
  readonly revision: number;
}

/**
 * Where coordinators keep saga journals. Every write names the revision it replaces
 * (compare-and-set), so a coordinator that is no longer a saga's owner cannot write it.
 */
export interface SagaStore {
  /**
   * The saga's first durable write: its intent, before anything is dispatched. Resolves
   * with the journal's revision, or `undefined` when a saga with this id already exists.
   */
  begin(record: SagaRecord): Promise<number | undefined>;
  /**
   * Replaces the journal if it is still at `revision`. Resolves with the new revision, or
   * `undefined` when another coordinator wrote it meanwhile (this one is fenced off).
   */
  write(record: SagaRecord, revision: number): Promise<number | undefined>;
  /**
   * Optional: moves a saga whose outcome is written out of the unfinished set. Idempotent.
   * A store whose write of an outcome already does so (`jetstreamSagaStore`) has none.
   */
  archive?(sagaId: string): Promise<void>;
  /**
   * Optional: removes the final records that are past the store's retention. Coordinators
   * call it from their ownership watch, about once a minute, and abort it when they close.
   * Resolves with how many records it removed.
   */
  prune?(signal?: AbortSignal): Promise<number>;
  /** A saga's journal with its revision (0 once finished and archived or closed: it takes no more writes), or undefined when the store has none. */
  load(sagaId: string): Promise<VersionedSagaRecord | undefined>;
  /** A saga's journal, running, parked or finished, or undefined when the store has none. */
  get(sagaId: string): Promise<SagaRecord | undefined>;
  /** Every saga not archived yet (running, parked, or finished and not yet archived or closed). */
  unfinished(): Promise<VersionedSagaRecord[]>;
  /** The dead letters of the sagas parked now. */
  deadLetters(): Promise<DeadLetter[]>;
  /**
   * Optional, for several coordinators on one store: records a heartbeat of coordinator
   * `owner` (any write that changes its revision). Coordinators that share the store
   * watch each other's heartbeats and take over the sagas of one that stopped beating.
   */
  beat?(owner: string): Promise<void>;
  /** Optional, with `beat`: each coordinator's latest heartbeat revision. */
  beats?(): Promise<ReadonlyMap<string, number>>;
  /** Optional, with `beat`: coordinator `owner` closed; its heartbeat is removed. */
  retire?(owner: string): Promise<void>;
}

// ---------------------------------------------------------------------------
// Time

/** The source of time. Injected so tests never sleep for real. */
export interface Clock {
  /** The current time in milliseconds. */
  now(): number;
  /** Calls `fn` once after `ms` milliseconds; returns a handle for `clearTimeout`. */
  setTimeout(fn: () => void, ms: number): unknown;
  /** Cancels a call scheduled with `setTimeout`. */
  clearTimeout(handle: unknown): void;
}
