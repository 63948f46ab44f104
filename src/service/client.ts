/**
 * sagaClient: the coordinator service (serveCoordinator) from another TypeScript
 * service: start sagas by name, wait for outcomes, ask and command as an operator, and
 * watch the events the service publishes. Error replies become `ServiceError`s with the
 * service's code.
 */
import type { NatsConnection, Subscription } from '@nats-io/transport-node';
import { InvalidOptionError, ServiceError } from '../errors.ts';
import type { SagaStatus, SagaSummary } from '../runtime/api.ts';
import { PROTOCOL_VERSION } from '../types.ts';
import type { DeadLetter, SagaOutcome } from '../types.ts';
import { parseReply } from '../transport/protocol.ts';
import { parseTraceparent } from '../tracing.ts';
import { RequestFailed, Requester } from '../transport/nats/requester.ts';
import { DEFAULT_PREFIX, H, protocolHeaders, validPrefix } from '../transport/nats/wire.ts';
import { DEFAULT_SERVICE_WAIT_MS, eventSubject, parseEvent, serviceSubject } from './protocol.ts';
import type { SagaEvent, ServiceEndpoint } from './protocol.ts';
import type { SagaGraph } from '../diagram.ts';

/** Default time a client waits for a reply to a request that does not wait for an outcome: 5000 ms. */
export const DEFAULT_CLIENT_TIMEOUT_MS = 5_000;

/** The options of `sagaClient`. */
export interface SagaClientOptions {
  /** Subject prefix of the service. Default `'saga'`. */
  prefix?: string;
  /**
   * How long to wait for a reply. A request that waits for an outcome (`wait`, `outcome`,
   * `retry`, `resolve`) waits its own `timeoutMs` on the service, plus this. Default 5000.
   */
  timeoutMs?: number;
}

/** The options of `SagaClient.start`. */
export interface ClientStartOptions {
  /** A saga id of your own: a repeated start with it is idempotent (the same saga, not a second one). Default: a random UUID, chosen by the service. */
  sagaId?: string;
  /** The saga version to start. Default: the highest version the service serves. */
  version?: number;
  /** Wait for the outcome. Default false: resolve once the saga is written to the store. */
  wait?: boolean;
  /** The W3C trace context the saga continues (sent as the request's `Traceparent` header; see `RunOptions.traceparent`). */
  traceparent?: string;
  /** With `wait`: how long the service waits for the outcome. Default 30_000, at most 600_000. */
  timeoutMs?: number;
}

/** What a resolve says besides the saga id (see `ResolveOptions` of the runtime). */
export interface ClientResolveOptions {
  /** Why, for the record (kept in the coordinator's log). */
  note?: string;
  /** The `review` of a `RESOLVE_NEEDS_REVIEW` ServiceError: the operator has looked at the system of record again since. */
  reviewed?: string;
  /** Resolve without fencing the keys (their worker is gone for good). Unsafe: nothing stops a late `do`. */
  force?: boolean;
  /** How long each fence may wait for its key; less than `timeoutMs`. Default: half of `timeoutMs`, at most 10_000. */
  fenceTimeoutMs?: number;
  /** How long the service waits, fences first, then the outcome. Default 30_000. */
  timeoutMs?: number;
}

/** The sagas a `list` found, oldest first. */
export interface SagaList {
  readonly sagas: readonly SagaSummary[];
  /** More sagas matched than `limit` allowed. */
  readonly truncated: boolean;
}

/** A stream of saga events; `stop()` (or leaving a `for await` loop) unsubscribes. */
export interface SagaWatch extends AsyncIterable<SagaEvent> {
  /** Resolves once the subscription is registered on the server: events published after it are seen. */
  readonly ready: Promise<void>;
  /** Unsubscribes: the iteration ends. */
  stop(): void;
}

/** A client of the coordinator service. Made by `sagaClient`. */
export interface SagaClient {
  /** Starts a saga by name and waits for its outcome: `undefined` when none came within `timeoutMs`. */
  start(saga: string, input: unknown, options: ClientStartOptions & { wait: true }): Promise<{ sagaId: string; outcome: SagaOutcome | undefined }>;
  /** Starts a saga by name; resolves with its id once it is in the store. A repeated start with the same `sagaId` is the same saga. */
  start(saga: string, input: unknown, options?: ClientStartOptions): Promise<{ sagaId: string; outcome?: SagaOutcome | undefined }>;
  /** Waits up to `timeoutMs` (default 30_000) for a saga's outcome (a parked saga's is `compensation-failed`); undefined when none came in time. Rejects with `SAGA_NOT_FOUND` for an unknown id. */
  outcome(sagaId: string, options?: { timeoutMs?: number }): Promise<SagaOutcome | undefined>;
  /** A saga's machine state and per-step status; undefined when the store has no such saga. */
  status(sagaId: string): Promise<SagaStatus | undefined>;
  /** The running and parked sagas (finished ones are not listed), oldest first, at most `limit` (default 1000). */
  list(options?: { status?: 'running' | 'parked'; limit?: number }): Promise<SagaList>;
  /** Operator: resumes a parked saga's compensation; resolves with its next outcome, or undefined when none came within `timeoutMs` (it goes on). */
  retry(sagaId: string, options?: { timeoutMs?: number }): Promise<SagaOutcome | undefined>;
  /**
   * Operator: aborts a running saga (every step that committed or may have is undone);
   * resolves with its outcome, or undefined when none came within `timeoutMs` (it goes on).
   * A parked or finished saga is refused with `SAGA_NOT_RUNNING`.
   */
  abort(sagaId: string, note?: string, options?: { timeoutMs?: number }): Promise<SagaOutcome | undefined>;
  /**
   * Operator: declares a parked saga's remaining effects handled by hand; resolves with its
   * outcome, or undefined when none came within `timeoutMs`. The service fences the effects'
   * keys first: a ServiceError `RESOLVE_NEEDS_REVIEW` (look again, then resolve with
   * `reviewed: error.review`) or `FENCE_FAILED` (retryable) carries `fences`, and the saga
   * stays parked. The second argument is the note, or the options.
   */
  resolve(sagaId: string, noteOrOptions?: string | ClientResolveOptions, options?: { timeoutMs?: number }): Promise<SagaOutcome | undefined>;
  /** The dead letters of the parked sagas. */
  deadLetters(): Promise<DeadLetter[]>;
  /** The states and steps of a saga's machine, to draw it: of a saga by id, or of a definition by name (its highest version, unless `version`). `UNKNOWN_SAGA` when no coordinator serves it. */
  graph(of: { sagaId: string } | { saga: string; version?: number }): Promise<SagaGraph>;
  /** The step, outcome and escalation events of one saga, or of every saga when no id is given. */
  watch(sagaId?: string): SagaWatch;
}

function checkTimeout(field: string, v: unknown): void {
  if (v !== undefined && (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0)) throw new InvalidOptionError(field, `must be a whole number of milliseconds >= 0, got ${String(v)}`);
}

/**
 * Creates a client of the coordinator service on a connection you own (it never closes it).
 *
 * @example
 * const client = sagaClient(nc);
 * const { sagaId } = await client.start('trip', { flight, hotel, car }, { sagaId: `trip-${orderId}` });
 * const outcome = await client.outcome(sagaId, { timeoutMs: 60_000 });
 */
export function sagaClient(nc: NatsConnection, options: SagaClientOptions = {}): SagaClient {
  if (nc === null || typeof nc !== 'object' || typeof (nc as NatsConnection).publish !== 'function') {
    throw new InvalidOptionError('nc', 'must be a NatsConnection from connect() of @nats-io/transport-node');
  }
  if (options === null || typeof options !== 'object') throw new InvalidOptionError('options', 'must be an object');
  for (const k of Object.keys(options)) if (k !== 'prefix' && k !== 'timeoutMs') throw new InvalidOptionError(k, 'unknown option (allowed: prefix, timeoutMs)');
  const prefix = options.prefix ?? DEFAULT_PREFIX;
  if (!validPrefix(prefix)) throw new InvalidOptionError('prefix', `must be dot-separated tokens of A-Z a-z 0-9 _ -, got ${JSON.stringify(prefix)}`);
  checkTimeout('timeoutMs', options.timeoutMs);
  const timeoutMs = Math.max(1, options.timeoutMs ?? DEFAULT_CLIENT_TIMEOUT_MS);
  const requester = new Requester(nc);

  const call = async <T>(endpoint: ServiceEndpoint, fields: Record<string, unknown>, waitMs = 0, traceparent?: string): Promise<T> => {
    const subject = serviceSubject(prefix, endpoint);
    let body: string;
    try {
      body = JSON.stringify({ v: PROTOCOL_VERSION, ...fields });
    } catch (error) {
      throw new ServiceError(endpoint, 'INPUT_NOT_SERIALIZABLE', `the ${endpoint} request cannot be encoded as JSON: ${(error as Error).message}`, { cause: error });
    }
    let text: string;
    try {
      const headers = protocolHeaders();
      if (traceparent !== undefined) headers.set(H.traceparent, traceparent);
      text = (await requester.request(subject, body, headers, timeoutMs + waitMs)).string();
    } catch (error) {
      const reason = error instanceof RequestFailed ? error.reason : undefined;
      if (reason === 'no-responders') throw new ServiceError(endpoint, 'NO_RESPONDERS', `no coordinator serves '${subject}' (no responders)`, { cause: error, retryable: true });
      const why = reason === 'timeout' ? `no reply within ${timeoutMs + waitMs} ms` : ((error as Error)?.message ?? String(error));
      throw new ServiceError(endpoint, 'TRANSPORT_ERROR', `the ${endpoint} request on '${subject}' failed: ${why}`, { cause: error, retryable: true });
    }
    let reply;
    try {
      reply = parseReply(JSON.parse(text));
    } catch (error) {
      throw new ServiceError(endpoint, 'PROTOCOL_ERROR', `the ${endpoint} reply on '${subject}' is malformed: ${(error as Error).message}`, { cause: error });
    }
    if (!reply.ok) throw new ServiceError(endpoint, reply.error.code, reply.error.message, { retryable: reply.error.retryable, ...(reply.error.detail !== undefined ? { detail: reply.error.detail } : {}) });
    return reply.result as T;
  };
  const waitOf = (o: { timeoutMs?: number } | undefined): number => {
    checkTimeout('timeoutMs', o?.timeoutMs);
    return o?.timeoutMs ?? DEFAULT_SERVICE_WAIT_MS;
  };
  const orUndefined = (outcome: SagaOutcome | null): SagaOutcome | undefined => outcome ?? undefined;

  const client: SagaClient = {
    async start(saga: string, input: unknown, o: ClientStartOptions = {}): Promise<{ sagaId: string; outcome: SagaOutcome | undefined }> {
      if (o === null || typeof o !== 'object') throw new InvalidOptionError('options', 'must be an object');
      const wait = o.wait === true;
      if (!wait && o.timeoutMs !== undefined) throw new InvalidOptionError('timeoutMs', 'is how long a start waits for the outcome: pass wait: true with it');
      const fields: Record<string, unknown> = { saga, input: input === undefined ? null : input };
      if (o.sagaId !== undefined) fields.sagaId = o.sagaId;
      if (o.version !== undefined) fields.version = o.version;
      if (o.wait !== undefined) fields.wait = o.wait;
      if (wait) fields.timeoutMs = waitOf(o);
      if (o.traceparent !== undefined && (typeof o.traceparent !== 'string' || parseTraceparent(o.traceparent) === undefined)) {
        throw new InvalidOptionError('traceparent', `must be a W3C traceparent, 00-<32 hex>-<16 hex>-<2 hex> with ids not all zero, got ${JSON.stringify(o.traceparent) ?? String(o.traceparent)}`);
      }
      const r = await call<{ sagaId: string; outcome?: SagaOutcome | null }>('start', fields, wait ? (fields.timeoutMs as number) : 0, o.traceparent);
      return (wait ? { sagaId: r.sagaId, outcome: orUndefined(r.outcome ?? null) } : { sagaId: r.sagaId }) as { sagaId: string; outcome: SagaOutcome | undefined };
    },
    async outcome(sagaId, o) {
      const wait = waitOf(o);
      return orUndefined((await call<{ outcome: SagaOutcome | null }>('outcome', { sagaId, timeoutMs: wait }, wait)).outcome);
    },
    async status(sagaId) {
      try {
        return await call<SagaStatus>('status', { sagaId });
      } catch (error) {
        if (error instanceof ServiceError && error.code === 'SAGA_NOT_FOUND') return undefined;
        throw error;
      }
    },
    async list(o = {}) {
      return call<SagaList>('list', { ...(o.status !== undefined ? { status: o.status } : {}), ...(o.limit !== undefined ? { limit: o.limit } : {}) });
    },
    async retry(sagaId, o) {
      const wait = waitOf(o);
      return orUndefined((await call<{ outcome: SagaOutcome | null }>('retry', { sagaId, timeoutMs: wait }, wait)).outcome);
    },
    async abort(sagaId, note, o) {
      if (note !== undefined && typeof note !== 'string') throw new InvalidOptionError('note', 'must be a string');
      const wait = waitOf(o);
      return orUndefined((await call<{ outcome: SagaOutcome | null }>('abort', { sagaId, timeoutMs: wait, ...(note !== undefined ? { note } : {}) }, wait)).outcome);
    },
    async resolve(sagaId, noteOrOptions, o) {
      let r: ClientResolveOptions;
      if (noteOrOptions === undefined || typeof noteOrOptions === 'string') r = { ...(noteOrOptions !== undefined ? { note: noteOrOptions } : {}), ...o };
      else if (noteOrOptions === null || typeof noteOrOptions !== 'object') throw new InvalidOptionError('options', 'must be a note string or an object { note?, reviewed?, force?, fenceTimeoutMs?, timeoutMs? }');
      else r = { ...noteOrOptions, ...o };
      const allowed = ['note', 'reviewed', 'force', 'fenceTimeoutMs', 'timeoutMs'];
      for (const k of Object.keys(r)) if (!allowed.includes(k)) throw new InvalidOptionError(k, `unknown option (allowed: ${allowed.join(', ')})`);
      const wait = waitOf(r);
      const fields = {
        sagaId,
        timeoutMs: wait,
        ...(r.note !== undefined ? { note: r.note } : {}),
        ...(r.reviewed !== undefined ? { reviewed: r.reviewed } : {}),
        ...(r.force !== undefined ? { force: r.force } : {}),
        ...(r.fenceTimeoutMs !== undefined ? { fenceTimeoutMs: r.fenceTimeoutMs } : {}),
      };
      return orUndefined((await call<{ outcome: SagaOutcome | null }>('resolve', fields, wait)).outcome);
    },
    async deadLetters() {
      return (await call<{ deadLetters: DeadLetter[] }>('dead-letters', {})).deadLetters;
    },
    async graph(of) {
      if (of === null || typeof of !== 'object') throw new InvalidOptionError('of', 'must be { sagaId } or { saga, version? }');
      return call<SagaGraph>('graph', 'sagaId' in of ? { sagaId: of.sagaId } : { saga: of.saga, ...(of.version !== undefined ? { version: of.version } : {}) });
    },
    watch(sagaId) {
      if (sagaId !== undefined && (typeof sagaId !== 'string' || sagaId.length === 0)) throw new InvalidOptionError('sagaId', 'must be a non-empty string, or left out to watch every saga');
      const sub: Subscription = nc.subscribe(sagaId === undefined ? `${prefix}.svc.events.>` : eventSubject(prefix, sagaId));
      const events = (async function* (): AsyncGenerator<SagaEvent> {
        try {
          for await (const msg of sub) {
            let body: unknown;
            try {
              body = JSON.parse(msg.string());
            } catch {
              continue; // not an event of this protocol
            }
            const event = parseEvent(body);
            if (event !== undefined && (sagaId === undefined || event.sagaId === sagaId)) yield event;
          }
        } finally {
          if (!sub.isClosed()) sub.unsubscribe();
        }
      })();
      return {
        ready: nc.flush(),
        stop: () => {
          if (!sub.isClosed()) sub.unsubscribe();
        },
        [Symbol.asyncIterator]: () => events,
      };
    },
  };
  return client;
}
