/**
 * The options of a runtime and of one run(), their defaults, and their validation:
 * resolveOptions checks what a caller passed and fills in the embedded defaults
 * (in-memory transport and stores, the system clock, a silent logger).
 */
import { randomUUID } from 'node:crypto';
import pino from 'pino';
import type { InspectionEvent, Observer } from 'xstate';
import { DEFAULT_TIMER_TICK_MS } from '../actors/timer.ts';
import { systemClock } from '../clock.ts';
import { InvalidOptionError } from '../errors.ts';
import { memoryDedupStore, memorySagaStore } from '../store/memory.ts';
import { memoryTransport } from '../transport/memory.ts';
import type { Clock, DedupStore, Logger, SagaDefinition, SagaStore, Transport } from '../types.ts';

/** Default time a saga keeps trying to write its journal before it is left to recover(). */
export const DEFAULT_JOURNAL_RETRY_MS = 30_000;
/** Default time after which a coordinator whose heartbeat stopped is presumed dead and its sagas are taken over. */
export const DEFAULT_OWNERSHIP_LEASE_MS = 10_000;
/** Default bound of sagas running at once in one runtime; run() queues beyond it. */
export const DEFAULT_MAX_IN_FLIGHT = 1_000;

/** The options of `createRuntime`; every one has a default. */
export interface RuntimeOptions {
  /** How workers are reached. Default: in-memory (workers hosted in this process). */
  transport?: Transport;
  /** Where saga journals and dead letters live. Default: in memory. */
  store?: SagaStore;
  /** Where workers hosted by this runtime keep idempotency records. Default: in memory, for 1 hour and at most 100,000 keys (`memoryDedupStore`); `jetstreamDedupStore` keeps them 24 hours. */
  dedup?: DedupStore;
  /** A pino logger. Default: silent. */
  logger?: Logger;
  /** The source of time. Default: the system clock. Tests pass a manual clock. */
  clock?: Clock;
  /** Random numbers in [0, 1) for backoff jitter. Default: Math.random. */
  random?: () => number;
  /** Resolution of the timer wheel in milliseconds. Default 5. */
  timerTickMs?: number;
  /** An XState inspector (e.g. from @statelyai/inspect) that sees every saga and worker actor. */
  inspect?: Observer<InspectionEvent> | ((event: InspectionEvent) => void);
  /** Saga definitions this runtime can restore from its store (see `recover`). */
  sagas?: readonly SagaDefinition[];
  /**
   * How long a saga keeps trying to write its journal (the store unreachable) before it
   * is stopped here and left to `recover()`. Default 30_000.
   */
  journalRetryMs?: number;
  /** How long a claim of a worker hosted here holds without renewal (see `createWorkerHost`). Default 10_000. */
  leaseMs?: number;
  /**
   * Sagas this runtime runs at once. Beyond it, `run()` waits in a queue (first come,
   * first served, not bounded) before it writes or sends anything; `inFlight` and `queued`
   * show the backlog. Parked sagas do not count; sagas restored by `recover()`, taken over,
   * or resumed by an operator count without waiting. Default 1_000.
   */
  maxInFlight?: number;
  /**
   * Requests this runtime has in flight to one worker at once, by worker name, e.g.
   * `{ payments: 8 }`. Beyond it, requests to that worker wait in a queue (first come,
   * first served); the wait counts toward the step's (or the compensation's) timeout, and
   * a request whose time ran out while it waited is never sent: the step timed out, is
   * in doubt and is compensated as usual. A request sent holds its slot until its reply,
   * its failure, or its deadline. Workers not named here are not bounded (each worker
   * host still bounds its own work and answers `OVERLOADED` beyond it). Default: none.
   */
  workerMaxInFlight?: Readonly<Record<string, number>>;
  /**
   * Several coordinators on one store. Each saga is owned by the coordinator that wrote
   * its journal last; coordinators beat a heartbeat into the store (when it supports
   * `beat`/`beats`, as both built-in stores do) and take over the running sagas of one
   * whose heartbeat stopped for `leaseMs` (default 10_000). `id` names this coordinator
   * (default: random). `false`: no heartbeat and no automatic takeover (`recover()` only).
   */
  ownership?: false | { id?: string; leaseMs?: number };
}

/** The options of `Runtime.run`. */
export interface RunOptions {
  /**
   * Use this saga id instead of a random UUID, to make `run` idempotent per business key.
   * A saga with this id that this runtime drives or the store holds, of the same saga name
   * and version and the same input (compared as canonical JSON), is not started again:
   * `run` resolves with its outcome (at once when it is finished or parked here; when this
   * runtime drives it, once it ends or parks; when another coordinator with a heartbeat
   * drives it, once that one reports the outcome to the store; else after taking it over
   * from its journal, which fences off any coordinator that drove it). Another saga name, version or input
   * rejects with `SAGA_ID_CONFLICT`, nothing written or sent. A finished saga the store no
   * longer keeps does not count: the id then starts a new saga.
   */
  sagaId?: string;
  /**
   * The W3C trace context to continue (`00-<32 hex>-<16 hex>-<2 hex>`), e.g. the incoming
   * request's `traceparent` header: the saga's requests carry its trace id, and with
   * OpenTelemetry its span is a child of this one. See "Tracing" in docs/guide.md.
   */
  traceparent?: string;
}

/** The options of a runtime, checked and with their defaults filled in. */
export interface ResolvedOptions {
  readonly journalRetryMs: number;
  readonly maxInFlight: number;
  /** Bounds of requests in flight per worker name; a worker not in it is not bounded. */
  readonly workerMaxInFlight: ReadonlyMap<string, number>;
  readonly coordinatorId: string;
  /** Heartbeat lease; undefined: no heartbeats, no automatic takeover. */
  readonly ownershipLeaseMs: number | undefined;
  readonly leaseMs: number | undefined;
  readonly transport: Transport;
  readonly store: SagaStore;
  readonly dedup: DedupStore;
  readonly logger: Logger;
  readonly clock: Clock;
  readonly random: () => number;
  readonly tick: number;
  readonly inspect: RuntimeOptions['inspect'];
  readonly sagas: readonly SagaDefinition[];
}

export function resolveOptions(options: RuntimeOptions): ResolvedOptions {
  if (options === null || typeof options !== 'object') throw new InvalidOptionError('options', 'must be an object');
  const allowed = ['transport', 'store', 'dedup', 'logger', 'clock', 'random', 'timerTickMs', 'inspect', 'sagas', 'journalRetryMs', 'leaseMs', 'maxInFlight', 'workerMaxInFlight', 'ownership'];
  for (const k of Object.keys(options)) if (!allowed.includes(k)) throw new InvalidOptionError(k, `unknown option (allowed: ${allowed.join(', ')})`);
  const tick = options.timerTickMs ?? DEFAULT_TIMER_TICK_MS;
  if (typeof tick !== 'number' || !Number.isFinite(tick) || tick <= 0) throw new InvalidOptionError('timerTickMs', 'must be a finite number > 0');
  if (options.random !== undefined && typeof options.random !== 'function') throw new InvalidOptionError('random', 'must be a function () => number in [0, 1)');
  for (const k of ['transport', 'store', 'dedup', 'clock', 'logger'] as const) {
    if (options[k] !== undefined && (options[k] === null || typeof options[k] !== 'object')) throw new InvalidOptionError(k, 'must be an object');
  }
  const journalRetryMs = options.journalRetryMs ?? DEFAULT_JOURNAL_RETRY_MS;
  if (typeof journalRetryMs !== 'number' || !Number.isFinite(journalRetryMs) || journalRetryMs < 0) throw new InvalidOptionError('journalRetryMs', 'must be a number of milliseconds >= 0');
  const maxInFlight = options.maxInFlight ?? DEFAULT_MAX_IN_FLIGHT;
  if (typeof maxInFlight !== 'number' || !(Number.isInteger(maxInFlight) || maxInFlight === Infinity) || maxInFlight < 1) {
    throw new InvalidOptionError('maxInFlight', 'must be an integer >= 1 (or Infinity)');
  }
  const perWorker = options.workerMaxInFlight === undefined ? {} : options.workerMaxInFlight;
  if (perWorker === null || typeof perWorker !== 'object' || Array.isArray(perWorker)) {
    throw new InvalidOptionError('workerMaxInFlight', 'must be an object of worker name to an integer >= 1');
  }
  const workerMaxInFlight = new Map<string, number>();
  for (const [name, bound] of Object.entries(perWorker)) {
    if (typeof bound !== 'number' || !Number.isInteger(bound) || bound < 1) throw new InvalidOptionError(`workerMaxInFlight.${name}`, 'must be an integer >= 1');
    workerMaxInFlight.set(name, bound);
  }
  const own = options.ownership ?? {};
  if (own !== false && (own === null || typeof own !== 'object')) throw new InvalidOptionError('ownership', 'must be false or { id?, leaseMs? }');
  if (own !== false) {
    for (const k of Object.keys(own)) if (k !== 'id' && k !== 'leaseMs') throw new InvalidOptionError(`ownership.${k}`, 'unknown option (allowed: id, leaseMs)');
    if (own.id !== undefined && (typeof own.id !== 'string' || !/^[A-Za-z0-9_.-]{1,64}$/.test(own.id))) throw new InvalidOptionError('ownership.id', 'must be 1-64 characters of A-Z a-z 0-9 _ . -');
    if (own.leaseMs !== undefined && (typeof own.leaseMs !== 'number' || !Number.isFinite(own.leaseMs) || own.leaseMs < 100)) throw new InvalidOptionError('ownership.leaseMs', 'must be a number of milliseconds >= 100');
  }
  if (options.sagas !== undefined && !Array.isArray(options.sagas)) throw new InvalidOptionError('sagas', 'must be an array of defineSaga(...) definitions');
  const clock = options.clock ?? systemClock;
  return {
    journalRetryMs,
    maxInFlight,
    workerMaxInFlight,
    coordinatorId: (own === false ? undefined : own.id) ?? `coordinator-${randomUUID().slice(0, 8)}`,
    /** Heartbeat lease; undefined: no heartbeats, no automatic takeover. */
    ownershipLeaseMs: own === false ? undefined : (own.leaseMs ?? DEFAULT_OWNERSHIP_LEASE_MS),
    leaseMs: options.leaseMs,
    transport: options.transport ?? memoryTransport(),
    store: options.store ?? memorySagaStore({ clock }),
    dedup: options.dedup ?? memoryDedupStore({ clock }),
    logger: options.logger ?? pino({ level: 'silent' }),
    clock,
    random: options.random ?? Math.random,
    tick,
    inspect: options.inspect,
    sagas: options.sagas ?? [],
  };
}
