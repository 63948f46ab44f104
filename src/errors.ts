/**
 * The typed errors of scatter-saga.
 *
 * Every error carries a stable `code` from {@link SagaErrorCode}. Errors that a worker
 * may raise are split by kind, as Restate does: a {@link TerminalError} fails the step
 * at once, any other error is retryable within the step's retry budget.
 */

/** Every code an error of scatter-saga can carry. Stable: codes cross the wire. */
export type SagaErrorCode =
  | 'DEFINITION_INVALID'
  | 'OPTION_INVALID'
  | 'INPUT_NOT_SERIALIZABLE'
  | 'RESULT_NOT_SERIALIZABLE'
  | 'WORKER_NOT_HOSTED'
  | 'WORKER_ALREADY_HOSTED'
  | 'SAGA_NOT_FOUND'
  | 'SAGA_NOT_PARKED'
  | 'RUNTIME_CLOSED'
  | 'STEP_FAILED'
  | 'STEP_TIMED_OUT'
  | 'STEP_INPUT_FAILED'
  | 'COMPENSATION_FAILED'
  | 'COMPENSATED'
  | 'KEY_CONFLICT'
  | 'IN_PROGRESS'
  | 'OUTCOME_UNKNOWN'
  | 'PROTOCOL_ERROR'
  | 'NO_RESPONDERS'
  | 'TRANSPORT_ERROR'
  | 'OVERLOADED'
  | 'PAYLOAD_TOO_LARGE'
  | 'RESULT_TOO_LARGE'
  | 'UNKNOWN_WORKER'
  | 'WORKER_ERROR'
  | 'SAGA_ID_CONFLICT'
  | 'JOURNAL_UNAVAILABLE'
  | 'SAGA_FENCED'
  | 'UNKNOWN_SAGA'
  | 'SERVICE_ERROR'
  | 'RESOLVE_NEEDS_REVIEW'
  | 'FENCE_FAILED'
  | 'SAGA_NOT_RUNNING';

/** Base class of every error scatter-saga throws or reports. */
export class SagaError extends Error {
  readonly code: SagaErrorCode;
  /** Whether trying the same operation again may succeed. */
  readonly retryable: boolean;

  constructor(code: SagaErrorCode, message: string, options?: ErrorOptions & { retryable?: boolean }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
    this.retryable = options?.retryable ?? false;
  }
}

/** Where in a saga or worker definition a problem is. */
export interface DefinitionPlace {
  readonly saga?: string;
  readonly worker?: string;
  readonly step?: string;
  /** The field, relative to the step when `step` is given, e.g. `compensation.backoff.initialMs`. */
  readonly field?: string;
}

/**
 * A saga or worker definition is invalid. Names the saga (or worker), the step and the
 * field, and the field's full path in what was passed to `defineSaga`, e.g.
 * `steps.pay.compensation.backoff.initialMS`.
 */
export class SagaDefinitionError extends SagaError {
  readonly saga: string | undefined;
  readonly step: string | undefined;
  readonly field: string | undefined;
  /** The full path of the field in the definition (`steps.<id>.` before a step's field); undefined when no field is named. */
  readonly path: string | undefined;

  constructor(problem: string, where: DefinitionPlace = {}) {
    const path = where.field === undefined ? undefined : where.step !== undefined ? `steps.${where.step}.${where.field}` : where.field;
    const at = [
      where.saga !== undefined ? `saga '${where.saga}'` : undefined,
      where.worker !== undefined ? `worker '${where.worker}'` : undefined,
      path !== undefined ? `field '${path}'` : where.step !== undefined ? `step '${where.step}'` : undefined,
    ].filter(Boolean);
    super('DEFINITION_INVALID', at.length > 0 ? `${at.join(', ')}: ${problem}` : problem);
    this.saga = where.saga;
    this.step = where.step;
    this.field = where.field;
    this.path = path;
  }
}

/** An option passed to a scatter-saga function is invalid. Names the option. */
export class InvalidOptionError extends SagaError {
  readonly option: string;
  constructor(option: string, problem: string) {
    super('OPTION_INVALID', `option '${option}': ${problem}`);
    this.option = option;
  }
}

/**
 * A saga input or a step input is not a plain JSON value (see "What values can cross a
 * step" in docs/guide.md). Raised by `run` before anything is dispatched; for a step of a
 * later stage, whose input is computed from earlier results, it is that step's failure
 * (`INPUT_NOT_SERIALIZABLE`, nothing was sent) and the saga compensates.
 */
export class InputNotSerializableError extends SagaError {
  /** Where in the value the problem is, e.g. `input.items[2].price`, or `step 'charge' input.when`. */
  readonly path: string;
  /** The saga whose input it is, when known. */
  readonly saga: string | undefined;
  /** @param problem what the value at `path` is, e.g. `is a Date, not a plain JSON value; pass date.toISOString()`. */
  constructor(path: string, problem: string, where: { saga?: string } = {}) {
    super('INPUT_NOT_SERIALIZABLE', `${where.saga !== undefined ? `saga '${where.saga}': ` : ''}${path} ${problem}`);
    this.path = path;
    this.saga = where.saga;
  }
}

/** A saga names a worker that no host serves; raised by `run` before anything is dispatched. */
export class WorkerNotHostedError extends SagaError {
  readonly workers: readonly string[];
  constructor(saga: string, workers: readonly string[]) {
    super(
      'WORKER_NOT_HOSTED',
      `saga '${saga}' needs worker${workers.length > 1 ? 's' : ''} ${workers.map((w) => `'${w}'`).join(', ')} ` +
        `that no host serves: call runtime.host(...) or start a worker host for ${workers.length > 1 ? 'them' : 'it'}`,
    );
    this.workers = workers;
  }
}

/** An operator call named a saga the runtime does not know, or one in the wrong state. */
export class SagaNotFoundError extends SagaError {
  constructor(sagaId: string) {
    super('SAGA_NOT_FOUND', `no saga '${sagaId}' is known to this runtime`);
  }
}

/** What a resolve learned of one remaining effect when it fenced the effect's key. */
export interface FencedEffect {
  readonly stepId: string;
  readonly worker: string;
  readonly idempotencyKey: string;
  /** The dead letter listed the effect as in doubt when the resolve began. */
  readonly inDoubt: boolean;
  /**
   * The key's fence: which resolve closed it (`by`) and what a `do` had left there
   * (`was`: `none`, `applied`, `unknown`, `undoPending`, `compensated`). Absent when the
   * fence got no answer.
   */
  readonly fence?: { readonly by: string; readonly was: string };
  /** `handled`: nothing can have landed unseen; `review`: look again; `failed`: the key could not be fenced. */
  readonly verdict: 'handled' | 'review' | 'failed';
  /** Why the fence failed. */
  readonly error?: ErrorInfo;
}

/**
 * A resolve did not end the saga; it stays parked, and nothing was journaled.
 *
 * - `RESOLVE_NEEDS_REVIEW`: every remaining key is fenced now (no `do` of them can apply
 *   any more), but for some (`verdict: 'review'`) a `do` applied, or may have, at a time
 *   nobody knows: after the operator looked, perhaps. Look at the system of record again,
 *   undo by hand what is there, and resolve again passing `review` as `reviewed`.
 * - `FENCE_FAILED`: some key could not be fenced (no host answered, a `do` of it still
 *   runs, or its hosts do not speak `fence`). Resolve again once its hosts answer; if the
 *   worker is gone for good, resolve with `force` (then nothing stops a late `do`).
 */
export class ResolveError extends SagaError {
  readonly sagaId: string;
  readonly fences: readonly FencedEffect[];
  /** With `RESOLVE_NEEDS_REVIEW`: the token to pass as `reviewed` once the operator has looked again. */
  readonly review: string | undefined;
  constructor(code: 'RESOLVE_NEEDS_REVIEW' | 'FENCE_FAILED', sagaId: string, fences: readonly FencedEffect[], review: string | undefined) {
    const list = (verdict: FencedEffect['verdict']) =>
      fences
        .filter((f) => f.verdict === verdict)
        .map((f) => `'${f.stepId}' (worker '${f.worker}'${f.fence !== undefined ? `, ${f.fence.was}` : ''}${f.error !== undefined ? `: ${f.error.code} ${f.error.message}` : ''})`)
        .join(', ');
    super(
      code,
      code === 'RESOLVE_NEEDS_REVIEW'
        ? `saga '${sagaId}' was not resolved: its keys are fenced now (no do of them can apply any more), but the effect of ${list('review')} may have landed after you looked. Look at the system of record again, undo by hand what is there, then resolve again with reviewed: '${review}'`
        : `saga '${sagaId}' was not resolved: could not fence ${list('failed')}; it stays parked. Resolve again once the worker's hosts answer; if the worker is gone for good, resolve with force (then nothing stops a late do of it)`,
      { retryable: code === 'FENCE_FAILED' },
    );
    this.sagaId = sagaId;
    this.fences = fences;
    this.review = review;
  }
}

/**
 * The saga store could not be written, so the saga cannot safely go on in this runtime.
 *
 * - `dispatched: false`: raised by `run` before anything was sent. The intent may still
 *   have reached the store (a write that timed out); if it did, `recover()` runs the saga
 *   to an end. Call `run` again with the same `sagaId` to start it or attach to it.
 * - `dispatched: true`: the saga had sent requests; nothing it had not journaled was sent.
 *   It was stopped here and is left to `recover()`, which drives it on from its journal.
 */
export class JournalUnavailableError extends SagaError {
  readonly sagaId: string;
  readonly dispatched: boolean;
  constructor(sagaId: string, dispatched: boolean, cause: unknown) {
    const why = (cause as Error)?.message ?? String(cause);
    super(
      'JOURNAL_UNAVAILABLE',
      dispatched
        ? `saga '${sagaId}' could not write its journal (${why}); it was stopped in this runtime, and is driven on from its journal by this coordinator once the store answers (with ownership on) or by recover()`
        : `saga '${sagaId}' was not started: its intent could not be written (${why}). If the write reached the store after all, this coordinator runs it once the store answers (with ownership on) or recover() does; run again with the same sagaId to start it or attach to it`,
      { cause, retryable: true },
    );
    this.sagaId = sagaId;
    this.dispatched = dispatched;
  }
}

/**
 * Thrown by worker code to fail a step at once, without retries. Any other error a
 * worker throws is retryable within the step's `retries` budget.
 */
export class TerminalError extends SagaError {
  constructor(message: string, options?: ErrorOptions) {
    super('WORKER_ERROR', message, { ...options, retryable: false });
  }
}

/** The transport could not deliver a request, or the reply was malformed. */
export class TransportError extends SagaError {
  /**
   * The request was refused before anything was sent (too large, not encodable, the
   * transport closed): it cannot have applied. A failure after sending (a garbled reply,
   * a broken connection) leaves the request in doubt.
   */
  readonly notSent: boolean;
  constructor(
    code: 'NO_RESPONDERS' | 'TRANSPORT_ERROR' | 'PROTOCOL_ERROR' | 'PAYLOAD_TOO_LARGE',
    message: string,
    options?: ErrorOptions & { retryable?: boolean; notSent?: boolean },
  ) {
    super(code, message, { retryable: code === 'NO_RESPONDERS' || code === 'TRANSPORT_ERROR', ...options });
    this.notSent = options?.notSent ?? false;
  }
}

/**
 * The coordinator service (`serveCoordinator`) refused a request, or could not be reached:
 * raised by `SagaClient`. `code` is the service's error code (e.g. `UNKNOWN_SAGA`,
 * `SAGA_NOT_FOUND`, `SAGA_NOT_PARKED`, `SAGA_ID_CONFLICT`, `PROTOCOL_ERROR`), or, when no
 * reply came, `NO_RESPONDERS` (no coordinator serves the endpoint) or `TRANSPORT_ERROR`
 * (no reply in time, or the connection failed). A resolve's `RESOLVE_NEEDS_REVIEW` and
 * `FENCE_FAILED` carry the fences and the review token of the `ResolveError` behind them.
 */
export class ServiceError extends SagaError {
  /** The endpoint asked, e.g. `start`. */
  readonly endpoint: string;
  /** The error reply's `detail`, as the service sent it (absent when it sent none). */
  readonly detail: unknown;
  /** With `RESOLVE_NEEDS_REVIEW` and `FENCE_FAILED`: what the resolve's fences found, one per remaining effect (see `ResolveError`). */
  readonly fences: readonly FencedEffect[] | undefined;
  /** With `RESOLVE_NEEDS_REVIEW`: the token to pass as `reviewed` once the operator has looked again. */
  readonly review: string | undefined;
  constructor(endpoint: string, code: SagaErrorCode | (string & {}), message: string, options?: ErrorOptions & { retryable?: boolean; detail?: unknown }) {
    super(code as SagaErrorCode, message, options);
    this.endpoint = endpoint;
    const detail = options?.detail;
    this.detail = detail;
    const d = detail !== null && typeof detail === 'object' ? (detail as { fences?: unknown; review?: unknown }) : {};
    this.fences = Array.isArray(d.fences) ? (d.fences as FencedEffect[]) : undefined;
    this.review = typeof d.review === 'string' ? d.review : undefined;
  }
}

/** The plain-data form of an error, as it crosses the wire and sits in outcomes. */
export interface ErrorInfo {
  readonly code: SagaErrorCode | (string & {});
  readonly message: string;
  readonly retryable: boolean;
  /**
   * For `WORKER_ERROR`: what the value the worker's code threw carried besides its
   * message, as JSON: its own `code` and its `detail` (`{ code?, detail? }`). Absent when
   * it carried neither. A detail over 4 KB of JSON, or not JSON at all, is replaced by a
   * note saying so.
   */
  readonly detail?: unknown;
}

/** Turns anything thrown into {@link ErrorInfo}. Non-scatter-saga errors are retryable worker errors. */
export function toErrorInfo(error: unknown): ErrorInfo {
  if (error instanceof SagaError) return { code: error.code, message: error.message, retryable: error.retryable };
  if (error instanceof Error) return { code: 'WORKER_ERROR', message: thrownMessage(error), retryable: true };
  return workerErrorInfo(error);
}

/** Longest text kept from a thrown value that is not an Error. */
const THROWN_TEXT_MAX = 500;

function clip(text: string): string {
  return text.length > THROWN_TEXT_MAX ? `${text.slice(0, THROWN_TEXT_MAX)}...` : text;
}

function jsonOf(value: unknown): string | undefined {
  try {
    return JSON.stringify(value);
  } catch {
    return undefined;
  }
}

/**
 * The message of anything thrown: an Error's own message, a plain object's `message`,
 * or else a sentence naming `who` threw what, e.g. `the do of worker 'payments' threw
 * undefined`, `... threw the string "sold out"`, `... threw an object that is not an
 * Error: {"reason":"no stock"}`. Never `[object Object]`.
 */
export function thrownMessage(value: unknown, who = 'the code'): string {
  if (value instanceof Error) {
    return typeof value.message === 'string' && value.message !== '' ? value.message : `${who} threw ${article(value.name || 'Error')} with no message`;
  }
  switch (typeof value) {
    case 'undefined':
      return `${who} threw undefined`;
    case 'string':
      return `${who} threw the string ${clip(JSON.stringify(value))}`;
    case 'number':
    case 'boolean':
      return `${who} threw the ${typeof value} ${String(value)}`;
    case 'bigint':
      return `${who} threw the BigInt ${String(value)}`;
    case 'symbol':
      return `${who} threw ${String(value)}`;
    case 'function':
      return `${who} threw a function${value.name ? ` (${value.name})` : ''}`;
  }
  if (value === null) return `${who} threw null`;
  const o = value as { message?: unknown };
  if (typeof o.message === 'string' && o.message !== '') return o.message;
  const proto = Object.getPrototypeOf(value);
  const className = (value as { constructor?: { name?: unknown } }).constructor?.name;
  const kind = Array.isArray(value)
    ? 'an array'
    : proto === Object.prototype || proto === null
      ? 'an object that is not an Error'
      : `${article(typeof className === 'string' && className !== '' ? className : 'object')} that is not an Error`;
  const text = jsonOf(value);
  return `${who} threw ${kind}${text !== undefined ? `: ${clip(text)}` : ''}`;
}

/** `<who> threw: <message>` for an Error (or an object with a message), else what {@link thrownMessage} says. */
export function threwText(value: unknown, who: string): string {
  const own = value instanceof Error ? value.message : value !== null && typeof value === 'object' ? (value as { message?: unknown }).message : undefined;
  return typeof own === 'string' && own !== '' ? `${who} threw: ${own}` : thrownMessage(value, who);
}

function article(name: string): string {
  return /^[AEIOU]/i.test(name) ? `an ${name}` : `a ${name}`;
}

/**
 * What a failure of user code (a worker's `do` or `compensate`) becomes on the wire. The
 * code is always `WORKER_ERROR`: the host ran the code under its claim and it failed, which
 * is what the coordinator relies on. A `TerminalError` (or any error with `retryable: false`)
 * is terminal, anything else retryable. The message is the thrown value's own (see
 * {@link thrownMessage}; `who` names the code that threw, e.g. `the do of worker 'payments'`);
 * its own `code` (a `SagaError`'s, an Error's or a plain object's) and its `detail` are kept
 * in `detail`.
 */
export function workerErrorInfo(error: unknown, who = 'worker code'): ErrorInfo {
  const detail = detailOf(error);
  const withDetail = detail === undefined ? {} : { detail };
  if (error instanceof SagaError) return { code: 'WORKER_ERROR', message: thrownMessage(error, who), retryable: error.retryable, ...withDetail };
  if (error instanceof Error) return { code: 'WORKER_ERROR', message: thrownMessage(error, who), retryable: true, ...withDetail };
  const retryable = !(typeof error === 'object' && error !== null && (error as { retryable?: unknown }).retryable === false);
  return { code: 'WORKER_ERROR', message: thrownMessage(error, who), retryable, ...withDetail };
}

/** Largest detail kept, in bytes of JSON. */
const DETAIL_MAX = 4096;

/** The `code` (a string or a number) and `detail` a thrown value carries, as JSON; undefined when it has neither. */
function detailOf(value: unknown): { code?: string | number; detail?: unknown } | undefined {
  if (value === null || typeof value !== 'object') return undefined;
  const o = value as { code?: unknown; detail?: unknown };
  // A TerminalError's code (WORKER_ERROR) says nothing the reply does not.
  const code = (typeof o.code === 'string' && o.code !== 'WORKER_ERROR') || (typeof o.code === 'number' && Number.isFinite(o.code)) ? o.code : undefined;
  let detail: unknown;
  if (o.detail !== undefined) {
    try {
      const text = JSON.stringify(o.detail);
      const bytes = text === undefined ? 0 : Buffer.byteLength(text, 'utf8');
      detail = text === undefined ? undefined : bytes > DETAIL_MAX ? `(a detail of ${bytes} bytes of JSON, over ${DETAIL_MAX}, was left out)` : JSON.parse(text);
    } catch (error) {
      detail = `(a detail that is not JSON was left out: ${(error as Error)?.message ?? String(error)})`;
    }
  }
  if (code === undefined && detail === undefined) return undefined;
  return { ...(code !== undefined ? { code } : {}), ...(detail !== undefined ? { detail } : {}) };
}

/** Rebuilds a typed error from its wire form. */
export function fromErrorInfo(info: ErrorInfo): SagaError {
  return new SagaError(info.code as SagaErrorCode, info.message, { retryable: info.retryable });
}
