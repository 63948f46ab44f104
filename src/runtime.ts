/**
 * createRuntime: wires saga machines, worker actors, the timer actor, a transport
 * and a store together. The embedded default needs nothing: in-memory transport,
 * in-memory stores, the system clock and a silent logger.
 */
import { randomUUID } from 'node:crypto';
import pino from 'pino';
import { createActor, enqueueActions, setup, spawnChild } from 'xstate';
import type { Actor, AnyActorRef, InspectionEvent, Observer } from 'xstate';
import { createWorkerHost } from './actors/worker-host.ts';
import type { WorkerHost } from './actors/worker-host.ts';
import { DEFAULT_TIMER_TICK_MS, TimerWheel, timerLogic } from './actors/timer.ts';
import type { TimerEvent } from './actors/timer.ts';
import { requestOf, workerActorLogic } from './actors/worker-actor.ts';
import { startOwnership } from './coordination/ownership.ts';
import type { Ownership } from './coordination/ownership.ts';
import type { WorkerActorEvent } from './actors/worker-actor.ts';
import { systemClock } from './clock.ts';
import { InvalidOptionError, JournalUnavailableError, SagaDefinitionError, SagaError, SagaNotFoundError, WorkerNotHostedError } from './errors.ts';
import { outcomeOf } from './machines/saga-logic.ts';
import type { MachineStateName, SagaCommand, SagaContext, StepStatus } from './machines/saga-logic.ts';
import { createSagaMachine } from './machines/saga-machine.ts';
import type { SagaMachine } from './machines/saga-machine.ts';
import { assertSerializable, fingerprint, stableStringify } from './machines/serializable.ts';
import { memoryDedupStore, memorySagaStore } from './store/memory.ts';
import { memoryTransport } from './transport/memory.ts';
import type {
  Clock,
  DeadLetter,
  DedupStore,
  Logger,
  SagaDefinition,
  SagaOutcome,
  SagaRecord,
  SagaStore,
  Served,
  Transport,
  VersionedSagaRecord,
  WorkerDefinition,
} from './types.ts';

/** Default time a saga keeps trying to write its journal before it is left to recover(). */
export const DEFAULT_JOURNAL_RETRY_MS = 30_000;
/** An idempotency key's shape (40 hex digits), for checking a request's size before its key is computed. */
const KEY_SHAPE = '0'.repeat(40);
/** Default time after which a coordinator whose heartbeat stopped is presumed dead and its sagas are taken over. */
export const DEFAULT_OWNERSHIP_LEASE_MS = 10_000;
/** Default bound of sagas running at once in one runtime; run() queues beyond it. */
export const DEFAULT_MAX_IN_FLIGHT = 1_000;
/** Compare-and-set tries of a takeover, and the pause between them (growing). */
const TAKEOVER_TRIES = 5;
const TAKEOVER_PAUSE_MS = 50;

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
   * first served) before it writes or sends anything; `inFlight` and `queued` show the
   * backlog. Default 1_000.
   */
  maxInFlight?: number;
  /**
   * Several coordinators on one store. Each saga is owned by the coordinator that wrote
   * its journal last; coordinators beat a heartbeat into the store (when it supports
   * `beat`/`beats`, as both built-in stores do) and take over the running sagas of one
   * whose heartbeat stopped for `leaseMs` (default 10_000). `id` names this coordinator
   * (default: random). `false`: no heartbeat and no automatic takeover (`recover()` only).
   */
  ownership?: false | { id?: string; leaseMs?: number };
}

/** Raised when a saga parks in `compensation-failed` (and again when recover() restores it parked): an operator must act. */
export type EscalationEvent = Omit<DeadLetter, 'parkedAt'>;

export interface RuntimeEvents {
  escalation: EscalationEvent;
  outcome: SagaOutcome & { readonly saga: string; readonly version: number };
}

/** What an operator sees of one saga. */
export interface SagaStatus {
  readonly sagaId: string;
  readonly saga: string;
  readonly version: number;
  /** The machine state: dispatching, gathering, compensating, compensationFailed, committed, compensated. */
  readonly state: MachineStateName;
  readonly steps: Readonly<Record<string, StepStatus>>;
  readonly outcome: SagaOutcome | undefined;
}

export interface RunOptions {
  /**
   * Use this saga id instead of a random UUID, to make `run` idempotent per business key:
   * a saga with this id that already exists is not started again; `run` resolves with its
   * outcome (waiting for it, or resuming it from the journal when no runtime drives it).
   * The same id with another saga or another input is a `SAGA_ID_CONFLICT`.
   */
  sagaId?: string;
}

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
   */
  run<TIn>(saga: SagaDefinition<TIn>, input: TIn, options?: RunOptions): Promise<SagaOutcome>;
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
  /** Operator: declares the remaining effects of a parked saga handled by hand (from any coordinator, as `retry`). */
  resolve(sagaId: string, note?: string): Promise<SagaOutcome>;
  /** Restores unfinished sagas from the store and drives them on (after a coordinator restart). */
  recover(): Promise<string[]>;
  status(sagaId: string): Promise<SagaStatus | undefined>;
  deadLetters(): Promise<DeadLetter[]>;
  on<K extends keyof RuntimeEvents>(event: K, listener: (e: RuntimeEvents[K]) => void): () => void;
  /** Sagas running (not parked) right now. */
  readonly inFlight: number;
  /** `run()` calls waiting for a slot (see `maxInFlight`): nothing of them is written or sent yet. */
  readonly queued: number;
  /** This coordinator's id: the `owner` of the journals it writes. */
  readonly coordinatorId: string;
  /**
   * Stops sagas, timers and serving. Worker calls in flight get up to `drainMs`
   * (default 5_000, real time) to finish. Sagas still running are left to `recover`.
   */
  close(options?: { drainMs?: number }): Promise<void>;
}

/** What a journal write keeps from the saga's first record. */
type Header = Pick<SagaRecord, 'sagaId' | 'saga' | 'version' | 'input' | 'startedAt'>;

interface Live {
  readonly def: SagaDefinition;
  readonly actor: Actor<SagaMachine>;
  readonly header: Header;
  /** The journal revision this runtime wrote last: the next write names it. */
  revision: number;
  /** This saga's journal writes, one after another; each resolves false when it could not be written. */
  journal: Promise<boolean>;
  /** Journal writes in flight. */
  writes: number;
  /** Callers waiting for this saga's next outcome. */
  waiters: { resolve: (o: SagaOutcome) => void; reject: (e: unknown) => void }[];
  parked: boolean;
  /** No longer counted in `inFlight`: parked, ended, or stopped. */
  idle: boolean;
  checkpointQueued: boolean;
  /** A write-ahead checkpoint being stored: requests wait for it, and are dropped if it fails. */
  barrier: Promise<boolean> | undefined;
  /** Stopped in this runtime (fenced, journal unavailable, closed): it sends and writes nothing more. */
  stopped: boolean;
}

const runtimeRoot = setup({
  types: { context: {} as { transport: Transport; clock: Clock; wheel: TimerWheel }, input: {} as { transport: Transport; clock: Clock; wheel: TimerWheel }, events: {} as { type: 'WORKER.ADD'; name: string } },
  actors: { worker: workerActorLogic, timer: timerLogic },
}).createMachine({
  id: 'scatter-saga',
  context: ({ input }) => input,
  entry: spawnChild('timer', { id: 'timer', systemId: 'timer', input: ({ context }) => ({ wheel: context.wheel }) }),
  on: {
    'WORKER.ADD': {
      actions: enqueueActions(({ enqueue, context, event }) => {
        enqueue.spawnChild('worker', {
          id: `worker:${event.name}`,
          systemId: `worker:${event.name}`,
          input: { worker: event.name, transport: context.transport, clock: context.clock },
        });
      }),
    },
  },
});

function resolveOptions(options: RuntimeOptions) {
  if (options === null || typeof options !== 'object') throw new InvalidOptionError('options', 'must be an object');
  const allowed = ['transport', 'store', 'dedup', 'logger', 'clock', 'random', 'timerTickMs', 'inspect', 'sagas', 'journalRetryMs', 'leaseMs', 'maxInFlight', 'ownership'];
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

/**
 * Creates a saga runtime.
 *
 * @example
 * const runtime = createRuntime();           // embedded: in-memory transport and store
 * runtime.host(flights, hotels, cars);
 * const outcome = await runtime.run(trip, { flight, hotel, car });
 */
export function createRuntime(options: RuntimeOptions = {}): Runtime {
  const o = resolveOptions(options);
  const { transport, store, logger, clock } = o;
  const ownerId = o.coordinatorId;
  let ownership: Ownership | undefined;
  const wheel = new TimerWheel(clock, o.tick);
  const root = createActor(runtimeRoot, { input: { transport, clock, wheel }, ...(o.inspect ? { inspect: o.inspect } : {}) });
  root.start();
  const timer = root.system.get('timer') as AnyActorRef;

  const live = new Map<string, Live>();
  /**
   * Sagas of this coordinator that no runtime drives: stopped here while their journal
   * could not be written, or whose intent may have landed unseen. The ownership watch
   * takes them up again once the store answers (without ownership: `recover()`).
   */
  const stranded = new Set<string>();
  /** Sagas this runtime is taking over from their journal right now. */
  const takingOver = new Map<string, Promise<Live | undefined>>();
  const definitions = new Map<string, SagaDefinition>();
  const machines = new WeakMap<SagaDefinition, SagaMachine>();
  const hosted: WorkerHost[] = [];
  const serving: Promise<Served>[] = [];
  const listeners: { [K in keyof RuntimeEvents]: Set<(e: RuntimeEvents[K]) => void> } = { escalation: new Set(), outcome: new Set() };
  let closed = false;
  let running = 0;
  /** Slots taken by run() calls that have not started their saga yet. */
  let reserved = 0;
  /** run() calls waiting for a slot. */
  const admissions: { resolve: () => void; reject: (e: unknown) => void }[] = [];
  const admitNext = () => {
    while (admissions.length > 0 && running + reserved < o.maxInFlight) {
      reserved++;
      (admissions.shift() as (typeof admissions)[number]).resolve();
    }
  };
  /** Waits for a slot under `maxInFlight`; the caller must call `release` unless its saga started. */
  const admit = (): Promise<void> | undefined => {
    if (admissions.length === 0 && running + reserved < o.maxInFlight) {
      reserved++;
      return undefined;
    }
    return new Promise<void>((resolve, reject) => admissions.push({ resolve, reject }));
  };
  const release = () => {
    reserved--;
    admitNext();
  };

  /** Definitions by name@version, for recovery. The most recently used one wins. */
  const register = (def: SagaDefinition) => definitions.set(`${def.name}@${def.version}`, def);
  for (const def of o.sagas) register(def);

  /** The worker actor for a name, spawned on first use; undefined once the runtime is closed. */
  const workerRef = (name: string): AnyActorRef | undefined => {
    if (closed) return undefined;
    let ref = root.system.get(`worker:${name}`) as AnyActorRef | undefined;
    if (ref === undefined) {
      root.send({ type: 'WORKER.ADD', name });
      ref = root.system.get(`worker:${name}`) as AnyActorRef;
    }
    return ref;
  };

  const emit = <K extends keyof RuntimeEvents>(event: K, payload: RuntimeEvents[K]) => {
    for (const l of listeners[event]) {
      try {
        (l as (e: RuntimeEvents[K]) => void)(payload);
      } catch (error) {
        logger.error({ err: error, event }, 'a runtime event listener threw');
      }
    }
  };

  const jittered = (delayMs: number, jitter: boolean) => (jitter ? delayMs * (0.5 + o.random() * 0.5) : delayMs);
  const sleep = (ms: number) => new Promise<void>((r) => clock.setTimeout(r, ms));

  /** No longer counted as running (parked, ended or stopped). */
  const goIdle = (entry: Live) => {
    if (!entry.idle) {
      entry.idle = true;
      running--;
      admitNext();
    }
  };

  /**
   * Stops a saga in this runtime: it sends and writes nothing more, its callers get
   * `error`, and its journal is left as last written, for `recover()`.
   */
  const stop = (entry: Live, error: SagaError) => {
    if (entry.stopped) return;
    entry.stopped = true;
    if (live.get(entry.header.sagaId) === entry) live.delete(entry.header.sagaId);
    goIdle(entry);
    timer.send({ type: 'CANCEL_ALL', owner: entry.actor } satisfies TimerEvent);
    entry.actor.stop();
    const waiters = entry.waiters;
    entry.waiters = [];
    for (const w of waiters) w.reject(error);
  };

  /** What one journal write sets, besides the saga's header. */
  type Fields = Pick<SagaRecord, 'status' | 'snapshot' | 'outcome'> & Pick<Partial<SagaRecord>, 'deadLetter' | 'parked'>;

  /**
   * Settles a write whose answer was lost: reads the journal back. Our record there: it
   * landed (its revision). The revision we named still there: it did not (`'retry'`).
   * Anything else: another coordinator wrote it (undefined). A read that fails: `'retry'`.
   */
  const landed = async (record: SagaRecord, named: number): Promise<number | undefined | 'retry'> => {
    let found: VersionedSagaRecord | undefined;
    try {
      found = await store.load(record.sagaId);
    } catch {
      return 'retry';
    }
    if (found !== undefined && found.revision > 0 && stableStringify(found.record) === stableStringify(record)) return found.revision;
    if (found === undefined) return named === 0 ? 'retry' : undefined;
    return found.revision === named ? 'retry' : undefined;
  };

  /** One journal write, tried again while the store is unreachable; resolves whether it landed. */
  const write = async (entry: Live, record: SagaRecord): Promise<boolean> => {
    const { sagaId } = entry.header;
    const since = clock.now();
    for (let attempt = 0; ; attempt++) {
      if (entry.stopped) return false;
      let revision: number | undefined | 'retry';
      let failure: unknown;
      try {
        revision = await store.write(record, entry.revision);
        // A conflict after a failed attempt may be that attempt, landed with its answer lost.
        if (revision === undefined && attempt > 0) revision = await landed(record, entry.revision);
        if (revision === 'retry') failure = new Error('the journal revision did not change, but the write did not land');
      } catch (error) {
        failure = error;
      }
      if (entry.stopped) return false;
      if (failure !== undefined) {
        if (closed || clock.now() - since >= o.journalRetryMs) {
          logger.error({ err: failure, sagaId }, 'could not write the journal: the saga is stopped here, and taken up again once the store answers (or by recover())');
          stranded.add(sagaId);
          stop(entry, new JournalUnavailableError(sagaId, true, failure));
          return false;
        }
        logger.warn({ err: failure, sagaId, attempt }, 'journal write failed; trying again');
        await sleep(Math.min(2_000, 50 * 2 ** attempt));
        continue;
      }
      if (revision === undefined) {
        logger.error({ sagaId }, "another coordinator wrote this saga's journal: it is stopped here");
        stop(entry, new SagaError('SAGA_FENCED', `saga '${sagaId}' was taken over by another coordinator (its journal changed under this one); that coordinator drives it on`));
        return false;
      }
      entry.revision = revision as number;
      return !entry.stopped;
    }
  };

  /**
   * Writes the saga's journal after every earlier write of it, naming the revision the
   * previous one wrote. A store that cannot be reached is tried again with backoff for
   * `journalRetryMs`; then, or when another coordinator wrote the journal meanwhile, the
   * saga is stopped here. Resolves whether the write landed.
   */
  const journal = (entry: Live, fields: Fields): Promise<boolean> => {
    if (entry.stopped) return Promise.resolve(false);
    const record: SagaRecord = { ...entry.header, ...fields, owner: ownerId, updatedAt: clock.now() };
    entry.writes++;
    const done = (ok: boolean) => {
      entry.writes--;
      return ok;
    };
    // No write in flight: start at once; else after the last one.
    const next = entry.writes === 1 ? write(entry, record).then(done) : entry.journal.then(() => write(entry, record)).then(done);
    entry.journal = next;
    return next;
  };

  /** The journal of a saga still running, as of now. */
  const runningFields = (entry: Live): Fields => ({ status: 'running', snapshot: entry.actor.getPersistedSnapshot(), outcome: undefined });

  const send = (entry: Live, workerName: string, ev: WorkerActorEvent) => {
    const barrier = entry.barrier;
    if (barrier === undefined) workerRef(workerName)?.send(ev);
    else void barrier.then((ok) => ok && !entry.stopped && workerRef(workerName)?.send(ev));
  };

  const perform = (self: AnyActorRef, sagaId: string, cmd: SagaCommand) => {
    switch (cmd.type) {
      case 'do':
      case 'compensate': {
        const entry = live.get(sagaId);
        if (entry === undefined || entry.stopped) return;
        send(entry, cmd.worker, {
          type: cmd.type === 'do' ? 'DO' : 'COMPENSATE',
          saga: self,
          sagaId,
          stepId: cmd.stepId,
          key: cmd.key,
          input: cmd.input,
          ...(cmd.type === 'compensate' ? { result: cmd.result } : {}),
          attempt: cmd.attempt,
          timeoutMs: cmd.timeoutMs,
        });
        return;
      }
      case 'schedule': {
        const event = cmd.event;
        const fire = () => {
          if (self.getSnapshot().status === 'active') self.send(event);
        };
        timer.send({ type: 'SCHEDULE', owner: self, id: cmd.timerId, delayMs: jittered(cmd.delayMs, cmd.jitter), fire } satisfies TimerEvent);
        return;
      }
      case 'cancel':
        timer.send({ type: 'CANCEL', owner: self, id: cmd.timerId } satisfies TimerEvent);
        return;
      case 'checkpoint': {
        const entry = live.get(sagaId);
        if (entry === undefined || entry.stopped) return;
        if (cmd.writeAhead === true) {
          // The snapshot is taken once this transition is done; the requests that follow wait for its write.
          // Taken and queued in one step, so journal writes keep the order of the states they hold.
          const barrier = new Promise<boolean>((resolve) => queueMicrotask(() => void journal(entry, runningFields(entry)).then(resolve)));
          entry.barrier = barrier;
          void barrier.then(() => {
            if (entry.barrier === barrier) entry.barrier = undefined;
          });
          return;
        }
        if (entry.checkpointQueued) return;
        entry.checkpointQueued = true;
        queueMicrotask(() => {
          entry.checkpointQueued = false;
          // A saga that parked or ended meanwhile is journaled by settle.
          if (entry.actor.getSnapshot().status !== 'active' || entry.parked) return;
          void journal(entry, runningFields(entry));
        });
        return;
      }
    }
  };

  const settle = (sagaId: string) => {
    const entry = live.get(sagaId);
    if (entry === undefined || entry.stopped) return;
    const snap = entry.actor.getSnapshot();
    const state = snap.value as MachineStateName;
    const outcome = outcomeOf(entry.def, snap.context, state) as SagaOutcome;
    const log = logger.child({ sagaId, saga: entry.def.name });
    timer.send({ type: 'CANCEL_ALL', owner: entry.actor } satisfies TimerEvent);
    if (outcome.status === 'compensation-failed') {
      entry.parked = true;
      goIdle(entry);
      const letter: DeadLetter = {
        sagaId,
        saga: entry.def.name,
        version: entry.def.version,
        remaining: outcome.remaining,
        failures: outcome.failures,
        parkedAt: clock.now(),
        timesParked: snap.context.timesParked,
      };
      log.error({ remaining: outcome.remaining.map((r) => r.stepId), failures: outcome.failures }, 'saga parked: compensation failed');
      // The parked state and its dead letter are one write; then the operator is told.
      void journal(entry, { status: 'parked', snapshot: entry.actor.getPersistedSnapshot(), outcome: undefined, deadLetter: letter, parked: outcome }).then((ok) => {
        if (!ok || !entry.parked) return;
        const { parkedAt: _at, ...escalation } = letter;
        emit('escalation', escalation);
        const waiters = entry.waiters;
        entry.waiters = [];
        for (const w of waiters) w.resolve(outcome);
      });
      return;
    }
    goIdle(entry);
    // The outcome is reported only once it is journaled: a caller never hears of an outcome a recovery could undo.
    // A finished saga is never restored: its record keeps the outcome and each step's last status.
    const summary = { value: state, context: { steps: Object.fromEntries(entry.def.steps.map((p) => [p.id, { status: (snap.context.steps[p.id] as { status: StepStatus }).status }])) } };
    void journal(entry, { status: outcome.status === 'committed' ? 'committed' : 'compensated', snapshot: summary, outcome }).then((ok) => {
      if (!ok) return;
      if (live.get(sagaId) === entry) live.delete(sagaId);
      log.info({ status: outcome.status }, 'saga ended');
      if (listeners.outcome.size > 0) emit('outcome', { ...outcome, saga: entry.def.name, version: entry.def.version });
      const waiters = entry.waiters;
      entry.waiters = [];
      for (const w of waiters) w.resolve(outcome);
      store.archive(sagaId).catch((error: unknown) => log.warn({ err: error }, 'could not archive a finished saga; recover() archives it later'));
    });
  };

  const machineOf = (def: SagaDefinition): SagaMachine => {
    let m = machines.get(def);
    if (m === undefined) {
      m = createSagaMachine(def).provide({
        actions: {
          effect: ({ self }, params) => perform(self, self.id, params as SagaCommand),
          settle: ({ self }) => queueMicrotask(() => settle(self.id)),
        },
      }) as SagaMachine;
      machines.set(def, m);
    }
    return m;
  };

  const start = (def: SagaDefinition, header: Header, revision: number, from: { snapshot?: unknown; rootInputs?: Record<string, unknown>; recovered?: boolean }): Live => {
    const actor = createActor(machineOf(def), {
      id: header.sagaId,
      input: {
        sagaId: header.sagaId,
        input: header.input,
        ...(from.rootInputs !== undefined ? { rootInputs: from.rootInputs } : {}),
        ...(from.recovered === true ? { recovered: true } : {}),
      },
      ...(from.snapshot !== undefined ? { snapshot: from.snapshot as never } : {}),
      ...(o.inspect ? { inspect: o.inspect } : {}),
    });
    const entry: Live = {
      def,
      actor,
      header,
      revision,
      journal: Promise.resolve(true),
      writes: 0,
      waiters: [],
      parked: false,
      idle: false,
      checkpointQueued: false,
      barrier: undefined,
      stopped: false,
    };
    live.set(header.sagaId, entry);
    running++;
    return entry;
  };

  /** Drives on a saga restored from its journal. */
  const restore = (def: SagaDefinition, record: SagaRecord, revision: number): Live => {
    const header: Header = { sagaId: record.sagaId, saga: record.saga, version: record.version, input: record.input, startedAt: record.startedAt };
    const entry = start(def, header, revision, record.snapshot === undefined ? { recovered: true } : { snapshot: record.snapshot });
    entry.actor.start();
    // Ended before its outcome was written: write it now.
    if (entry.actor.getSnapshot().status === 'done') queueMicrotask(() => settle(record.sagaId));
    // Restored from a checkpoint: taint what may have been sent, send again what may be lost.
    else if (record.snapshot !== undefined) entry.actor.send({ type: 'RECOVER' });
    return entry;
  };

  /**
   * Takes a saga over from its journal: a write naming the revision read fences off a
   * coordinator that still drives it. Undefined when another coordinator wrote it first.
   */
  const takeOver = async (def: SagaDefinition, found: VersionedSagaRecord): Promise<Live | undefined> => {
    const { sagaId } = found.record;
    // One takeover per saga at a time in this runtime: a second would fence off the first.
    const here = live.get(sagaId) ?? takingOver.get(sagaId);
    if (here !== undefined) return here;
    const taking = (async (): Promise<Live | undefined> => {
      let current: VersionedSagaRecord | undefined = found;
      // A write of a coordinator that died may still land after our read: read again and retry.
      for (let tries = 0; current !== undefined && current.revision > 0 && current.record.outcome === undefined && tries < TAKEOVER_TRIES; tries++) {
        // Closed meanwhile: the saga stays with its journal, for the next coordinator.
        if (closed) return undefined;
        const revision = await store.write({ ...current.record, owner: ownerId, updatedAt: clock.now() }, current.revision);
        if (closed) return undefined;
        if (revision !== undefined) return restore(def, current.record, revision);
        await sleep(TAKEOVER_PAUSE_MS * (tries + 1));
        current = await store.load(sagaId);
      }
      return undefined;
    })();
    takingOver.set(sagaId, taking);
    try {
      return await taking;
    } finally {
      takingOver.delete(sagaId);
    }
  };

  const definitionOf = (rec: Pick<SagaRecord, 'saga' | 'version'>) => definitions.get(`${rec.saga}@${rec.version}`);

  /**
   * Takes an unfinished saga over from its journal (recover(), or the ownership watch):
   * undefined, with a warning, when this runtime lacks its definition or another
   * coordinator wrote it first.
   */
  const adopt = async (found: VersionedSagaRecord): Promise<Live | undefined> => {
    const rec = found.record;
    const def = definitionOf(rec);
    if (def === undefined) {
      logger.warn({ sagaId: rec.sagaId, saga: rec.saga, version: rec.version, owner: rec.owner }, 'cannot take over a saga whose definition this runtime was not given');
      return undefined;
    }
    const entry = await takeOver(def, found);
    if (entry === undefined) logger.warn({ sagaId: rec.sagaId }, 'another coordinator wrote this saga while it was being taken over: left to it');
    return entry;
  };

  const ensureOpen = () => {
    if (closed) throw new SagaError('RUNTIME_CLOSED', 'this runtime is closed');
  };

  /** The next outcome of a saga driven here (its parked outcome at once, when parked). */
  const attach = (entry: Live): Promise<SagaOutcome> => {
    if (entry.parked) {
      const snap = entry.actor.getSnapshot();
      return Promise.resolve(outcomeOf(entry.def, snap.context, 'compensationFailed') as SagaOutcome);
    }
    return new Promise<SagaOutcome>((resolve, reject) => entry.waiters.push({ resolve, reject }));
  };

  const sameSaga = (sagaId: string, def: SagaDefinition, input: unknown, other: { saga: string; version: number; input: unknown }) => {
    if (other.saga !== def.name || other.version !== def.version || fingerprint(other.input) !== fingerprint(input)) {
      throw new SagaError(
        'SAGA_ID_CONFLICT',
        `saga id '${sagaId}' is already used by saga '${other.saga}' version ${other.version}${other.saga === def.name && other.version === def.version ? ' with another input' : ''}`,
      );
    }
  };

  /** run() for a saga id that may exist: its outcome, the saga driven here, or the saga resumed from its journal. */
  const existing = async (def: SagaDefinition, sagaId: string, input: unknown): Promise<Promise<SagaOutcome> | undefined> => {
    const here = live.get(sagaId);
    if (here !== undefined) {
      sameSaga(sagaId, def, input, here.header);
      return attach(here);
    }
    let found: VersionedSagaRecord | undefined;
    try {
      found = await store.load(sagaId);
    } catch (error) {
      throw new JournalUnavailableError(sagaId, false, error);
    }
    if (found === undefined) return undefined;
    sameSaga(sagaId, def, input, found.record);
    if (found.record.outcome !== undefined) return Promise.resolve(found.record.outcome);
    ensureOpen();
    const entry = live.get(sagaId) ?? (await takeOver(def, found));
    if (entry === undefined) throw new SagaError('SAGA_FENCED', `saga '${sagaId}' is driven by another coordinator`);
    return attach(entry);
  };

  const notParked = (sagaId: string) => new SagaError('SAGA_NOT_PARKED', `saga '${sagaId}' is not parked in compensation-failed; only parked sagas take operator commands`);

  /** The parked saga an operator acts on: driven here, or taken over from the store (another coordinator parked it). */
  const parkedEntry = async (sagaId: string): Promise<Live> => {
    if (typeof sagaId !== 'string') throw new InvalidOptionError('sagaId', 'must be a string');
    const here = live.get(sagaId);
    if (here !== undefined) {
      if (!here.parked) throw notParked(sagaId);
      return here;
    }
    const found = await store.load(sagaId);
    if (found === undefined) throw new SagaNotFoundError(sagaId);
    if (found.record.status !== 'parked') throw notParked(sagaId);
    const def = definitionOf(found.record);
    if (def === undefined) {
      throw new SagaError('SAGA_NOT_FOUND', `saga '${sagaId}' is parked, but this runtime has no definition of '${found.record.saga}' version ${found.record.version}: pass it in the sagas option`);
    }
    ensureOpen();
    const entry = await takeOver(def, found);
    if (entry === undefined) throw new SagaError('SAGA_FENCED', `saga '${sagaId}' was taken by another coordinator meanwhile`);
    // Restored parked: it is parked again (dead letter re-established) once that is journaled.
    await attach(entry);
    if (!entry.parked) throw notParked(sagaId);
    return entry;
  };

  const operator = async (sagaId: string, event: { type: 'OPERATOR.RETRY' } | { type: 'OPERATOR.RESOLVE'; note?: string }): Promise<SagaOutcome> => {
    ensureOpen();
    const entry = await parkedEntry(sagaId);
    const outcome = new Promise<SagaOutcome>((resolve, reject) => entry.waiters.push({ resolve, reject }));
    entry.parked = false;
    entry.idle = false;
    running++;
    logger.info({ sagaId, action: event.type, note: 'note' in event ? event.note : undefined }, 'operator action');
    // The machine journals the resumed compensation (and clears the dead letter) before it sends anything.
    entry.actor.send(event);
    return outcome;
  };

  const runtime: Runtime = {
    host(...workers) {
      ensureOpen();
      const host = createWorkerHost(workers, { dedup: o.dedup, clock, logger, ...(o.leaseMs !== undefined ? { leaseMs: o.leaseMs } : {}) });
      for (const name of host.workers) {
        if (hosted.some((h) => h.workers.includes(name))) throw new SagaError('WORKER_ALREADY_HOSTED', `worker '${name}' is already hosted by this runtime`);
      }
      hosted.push(host);
      const s = Promise.resolve(host.serve(transport));
      s.catch((error: unknown) => logger.error({ err: error, workers: host.workers }, 'could not serve workers'));
      serving.push(s);
      return runtime;
    },

    async run(saga, input, options = {}) {
      ensureOpen();
      if (saga === null || typeof saga !== 'object' || (saga as SagaDefinition).kind !== 'saga') {
        throw new SagaDefinitionError('run needs a saga made with defineSaga(...)');
      }
      if (options === null || typeof options !== 'object') throw new InvalidOptionError('options', 'must be an object');
      for (const k of Object.keys(options)) if (k !== 'sagaId') throw new InvalidOptionError(k, 'unknown option (allowed: sagaId)');
      const def = saga as SagaDefinition;
      register(def);
      assertSerializable(input, 'input');
      const sagaId = options.sagaId ?? randomUUID();
      if (typeof sagaId !== 'string' || sagaId.length === 0 || Buffer.byteLength(sagaId, 'utf8') > 256) throw new InvalidOptionError('sagaId', 'must be a non-empty string of at most 256 bytes in UTF-8');
      // Root steps' inputs are derived now so that a bad one rejects run before any dispatch.
      const rootInputs: Record<string, unknown> = {};
      for (const p of def.steps) {
        if (p.after.length > 0) continue;
        let stepInput: unknown;
        try {
          stepInput = p.input(input, {});
        } catch (error) {
          throw new SagaDefinitionError(`input function threw: ${(error as Error)?.message ?? String(error)}`, { saga: def.name, step: p.id, field: 'input' });
        }
        assertSerializable(stepInput, `step '${p.id}' input`);
        rootInputs[p.id] = stepInput;
        // A first request the transport would refuse (over the payload limit): reject now, with nothing dispatched.
        const refused = transport.check?.(
          requestOf(p.worker, { type: 'DO', sagaId, stepId: p.id, key: KEY_SHAPE, input: stepInput, attempt: 1, timeoutMs: p.timeoutMs }, clock.now()),
        );
        if (refused !== undefined) {
          const code = refused instanceof SagaError ? refused.code : 'TRANSPORT_ERROR';
          throw new SagaError(code, `saga '${def.name}' cannot start: ${refused.message}; nothing was dispatched`, { cause: refused });
        }
      }
      if (options.sagaId !== undefined) {
        const known = await existing(def, sagaId, input);
        if (known !== undefined) return known;
      }
      // A slot under maxInFlight; a run with the same id that starts meanwhile is found by begin().
      const queued = admit();
      if (queued !== undefined) await queued;
      let started = false;
      try {
        if (serving.length > 0) await Promise.all(serving);
        const missing: string[] = [];
        for (const name of def.workers.keys()) {
          const served = transport.isServed(name);
          if (!(typeof served === 'boolean' ? served : await served)) missing.push(name);
        }
        if (missing.length > 0) throw new WorkerNotHostedError(def.name, missing);
        ensureOpen();
        const now = clock.now();
        const header: Header = { sagaId, saga: def.name, version: def.version, input, startedAt: now };
        const intent: SagaRecord = { ...header, status: 'running', updatedAt: now, snapshot: undefined, outcome: undefined, owner: ownerId };
        let revision: number | undefined;
        try {
          revision = await store.begin(intent);
        } catch (error) {
          // The intent may have landed with its answer lost: read it back.
          const settled = await landed(intent, 0);
          if (settled === 'retry') {
            // Unknown: should it have landed, the ownership watch drives it (or recover()).
            stranded.add(sagaId);
            throw new JournalUnavailableError(sagaId, false, error);
          }
          revision = settled;
        }
        if (revision === undefined) {
          // Another run with this id began first: this call only waits for it.
          started = true;
          release();
          const known = await existing(def, sagaId, input);
          if (known !== undefined) return known;
          throw new SagaError('SAGA_ID_CONFLICT', `saga id '${sagaId}' is already used`);
        }
        ensureOpen(); // closed while the intent was being written: it stays for recover()
        const entry = start(def, header, revision, { rootInputs });
        // The slot passes from this call to the running saga.
        started = true;
        reserved--;
        const outcome = attach(entry);
        entry.actor.start();
        return outcome;
      } finally {
        if (!started) release();
      }
    },

    async outcome(sagaId, options = {}) {
      ensureOpen();
      if (typeof sagaId !== 'string' || sagaId.length === 0) throw new InvalidOptionError('sagaId', 'must be a non-empty string');
      if (options === null || typeof options !== 'object') throw new InvalidOptionError('options', 'must be an object');
      for (const k of Object.keys(options)) if (k !== 'timeoutMs' && k !== 'pollMs') throw new InvalidOptionError(k, 'unknown option (allowed: timeoutMs, pollMs)');
      const timeoutMs = options.timeoutMs ?? Number.POSITIVE_INFINITY;
      const pollMs = options.pollMs ?? 250;
      if (typeof timeoutMs !== 'number' || !(timeoutMs >= 0)) throw new InvalidOptionError('timeoutMs', 'must be a number of milliseconds >= 0');
      if (typeof pollMs !== 'number' || !Number.isFinite(pollMs) || pollMs < 1) throw new InvalidOptionError('pollMs', 'must be a number of milliseconds >= 1');
      const until = clock.now() + timeoutMs;
      for (let first = true; ; first = false) {
        // A saga parked here may since have been taken over by another coordinator: ask the store.
        const here = live.get(sagaId);
        if (here !== undefined && !here.parked) {
          const attached = attach(here);
          if (timeoutMs === Number.POSITIVE_INFINITY) return attached;
          return Promise.race([attached, sleep(Math.max(0, until - clock.now())).then(() => undefined)]);
        }
        const rec = await store.get(sagaId);
        if (rec === undefined && first) throw new SagaNotFoundError(sagaId);
        if (rec?.outcome !== undefined) return rec.outcome;
        if (rec?.status === 'parked' && rec.parked !== undefined) return rec.parked;
        if (clock.now() >= until) return undefined;
        await sleep(Math.min(pollMs, Math.max(1, until - clock.now())));
        if (closed) throw new SagaError('RUNTIME_CLOSED', 'this runtime is closed');
      }
    },

    retry: (sagaId) => operator(sagaId, { type: 'OPERATOR.RETRY' }),
    resolve: (sagaId, note) => operator(sagaId, { type: 'OPERATOR.RESOLVE', ...(note !== undefined ? { note } : {}) }),

    async recover() {
      ensureOpen();
      if (serving.length > 0) await Promise.all(serving);
      const restored: string[] = [];
      // Sagas of another coordinator with a heartbeat are its own while it lives: the
      // ownership watch takes them over once its heartbeat stops (a closed coordinator
      // removes its heartbeat; a restarted one with the same id recovers its own at once).
      const beating = o.ownershipLeaseMs !== undefined && store.beats !== undefined ? await store.beats() : new Map<string, number>();
      for (const found of await store.unfinished()) {
        ensureOpen();
        const rec = found.record;
        if (live.has(rec.sagaId)) continue;
        if (rec.owner !== undefined && rec.owner !== ownerId && beating.has(rec.owner) && rec.outcome === undefined) continue;
        if (rec.outcome !== undefined) {
          // Finished, its archiving interrupted.
          await store.archive(rec.sagaId).catch((error: unknown) => logger.warn({ err: error, sagaId: rec.sagaId }, 'could not archive a finished saga'));
          continue;
        }
        if ((await adopt(found)) !== undefined) restored.push(rec.sagaId);
      }
      return restored;
    },

    async status(sagaId) {
      const entry = live.get(sagaId);
      if (entry !== undefined) {
        const snap = entry.actor.getSnapshot();
        return statusOf(entry.def, snap.context, snap.value as MachineStateName);
      }
      const rec: SagaRecord | undefined = await store.get(sagaId);
      if (rec === undefined) return undefined;
      const snap = rec.snapshot as { value?: MachineStateName; context?: SagaContext } | undefined;
      const steps: Record<string, StepStatus> = {};
      for (const [id, s] of Object.entries(snap?.context?.steps ?? {})) steps[id] = s.status;
      const state: MachineStateName = rec.outcome?.status === 'committed' ? 'committed' : rec.outcome !== undefined ? 'compensated' : (snap?.value ?? 'dispatching');
      // Parked by another coordinator: the record carries its compensation-failed outcome.
      return { sagaId, saga: rec.saga, version: rec.version, state, steps, outcome: rec.outcome ?? (rec.status === 'parked' ? rec.parked : undefined) };
    },

    deadLetters: () => store.deadLetters(),

    on(event, listener) {
      if (!(event in listeners)) throw new InvalidOptionError('event', `unknown event '${String(event)}' (allowed: ${Object.keys(listeners).join(', ')})`);
      const set = listeners[event] as Set<typeof listener>;
      set.add(listener);
      return () => void set.delete(listener);
    },

    get inFlight() {
      return running;
    },

    get queued() {
      return admissions.length;
    },

    coordinatorId: ownerId,

    async close(closeOptions = {}) {
      if (closed) return;
      const drainMs = closeOptions.drainMs ?? 5_000;
      if (typeof drainMs !== 'number' || !(drainMs >= 0)) throw new InvalidOptionError('drainMs', 'must be a number >= 0');
      closed = true;
      for (const waiting of admissions.splice(0)) waiting.reject(new SagaError('RUNTIME_CLOSED', 'the runtime closed while this run() waited for a slot (maxInFlight); nothing of it was written or sent'));
      for (const [sagaId, entry] of [...live]) {
        stop(entry, new SagaError('RUNTIME_CLOSED', `the runtime closed while saga '${sagaId}' was running; recover() in a new runtime drives it on`));
      }
      live.clear();
      const served = await Promise.allSettled(serving);
      const drained = Promise.allSettled(served.map((s) => (s.status === 'fulfilled' ? s.value.stop() : undefined)));
      let giveUp: ReturnType<typeof setTimeout> | undefined;
      const gaveUp = new Promise<void>((resolve) => {
        giveUp = setTimeout(resolve, drainMs);
        giveUp.unref();
      });
      await Promise.race([drained, gaveUp]);
      clearTimeout(giveUp);
      await ownership?.stop();
      root.stop();
      wheel.stop();
    },
  };
  if (o.ownershipLeaseMs !== undefined) {
    ownership = startOwnership({
      id: ownerId,
      leaseMs: o.ownershipLeaseMs,
      store,
      clock,
      logger,
      strays: async () => {
        for (const sagaId of [...stranded]) {
          if (closed) return;
          if (live.has(sagaId) || takingOver.has(sagaId)) {
            stranded.delete(sagaId);
            continue;
          }
          // A store that still fails throws here: the next tick tries again.
          const found = await store.load(sagaId);
          if (found !== undefined && found.record.outcome === undefined && found.record.owner === ownerId && !live.has(sagaId)) {
            if ((await adopt(found)) !== undefined) logger.warn({ sagaId }, 'took up again a saga stopped here while its journal could not be written');
          }
          stranded.delete(sagaId);
        }
      },
      adopt: async (orphans) => {
        for (const found of orphans) {
          if (closed) return;
          if (live.has(found.record.sagaId)) continue;
          if ((await adopt(found)) !== undefined) logger.info({ sagaId: found.record.sagaId, from: found.record.owner }, 'took over a saga of a coordinator that stopped');
        }
      },
    });
  }
  return runtime;
}

function statusOf(def: SagaDefinition, ctx: SagaContext, state: MachineStateName): SagaStatus {
  const steps: Record<string, StepStatus> = {};
  for (const p of def.steps) steps[p.id] = (ctx.steps[p.id] as { status: StepStatus }).status;
  return { sagaId: ctx.sagaId, saga: def.name, version: def.version, state, steps, outcome: outcomeOf(def, ctx, state) };
}
