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
import { workerActorLogic } from './actors/worker-actor.ts';
import type { WorkerActorEvent } from './actors/worker-actor.ts';
import { systemClock } from './clock.ts';
import { InvalidOptionError, SagaDefinitionError, SagaError, SagaNotFoundError, WorkerNotHostedError } from './errors.ts';
import { outcomeOf, redrive } from './machines/saga-logic.ts';
import type { MachineStateName, SagaCommand, SagaContext, StepStatus } from './machines/saga-logic.ts';
import { createSagaMachine } from './machines/saga-machine.ts';
import type { SagaMachine } from './machines/saga-machine.ts';
import { assertSerializable } from './machines/serializable.ts';
import { memoryDedupStore, memorySagaStore } from './store/memory.ts';
import { memoryTransport } from './transport/memory.ts';
import type {
  Clock,
  DeadLetter,
  DedupStore,
  Logger,
  RemainingEffect,
  SagaDefinition,
  SagaOutcome,
  SagaRecord,
  SagaStore,
  Served,
  StepFailure,
  Transport,
  WorkerDefinition,
} from './types.ts';

export interface RuntimeOptions {
  /** How workers are reached. Default: in-memory (workers hosted in this process). */
  transport?: Transport;
  /** Where saga journals and dead letters live. Default: in memory. */
  store?: SagaStore;
  /** Where workers hosted by this runtime keep idempotency records. Default: in memory, 24 hours. */
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
}

/** Raised when a saga parks in `compensation-failed`: an operator must act. */
export interface EscalationEvent {
  readonly sagaId: string;
  readonly saga: string;
  readonly version: number;
  readonly remaining: readonly RemainingEffect[];
  readonly failures: readonly StepFailure[];
  readonly timesParked: number;
}

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
  /** Use this saga id instead of a random UUID (e.g. to make `run` itself idempotent per business key). */
  sagaId?: string;
}

export interface Runtime {
  /** Serves workers from this process on the runtime's transport. */
  host(...workers: WorkerDefinition[]): Runtime;
  /**
   * Runs one saga to its end. Resolves with its outcome: `committed`, `compensated`, or
   * `compensation-failed` (parked for an operator). Rejects only for misuse, before
   * anything is dispatched.
   */
  run<TIn>(saga: SagaDefinition<TIn>, input: TIn, options?: RunOptions): Promise<SagaOutcome>;
  /** Operator: resumes the compensation of a parked saga with fresh retry budgets. */
  retry(sagaId: string): Promise<SagaOutcome>;
  /** Operator: declares the remaining effects of a parked saga handled by hand. */
  resolve(sagaId: string, note?: string): Promise<SagaOutcome>;
  /** Restores unfinished sagas from the store and drives them on (after a coordinator restart). */
  recover(): Promise<string[]>;
  status(sagaId: string): Promise<SagaStatus | undefined>;
  deadLetters(): Promise<DeadLetter[]>;
  on<K extends keyof RuntimeEvents>(event: K, listener: (e: RuntimeEvents[K]) => void): () => void;
  /** Sagas running (not parked) right now. */
  readonly inFlight: number;
  /**
   * Stops sagas, timers and serving. Worker calls in flight get up to `drainMs`
   * (default 5_000, real time) to finish. Sagas still running are left to `recover`.
   */
  close(options?: { drainMs?: number }): Promise<void>;
}

interface Live {
  readonly def: SagaDefinition;
  readonly actor: Actor<SagaMachine>;
  /** Callers waiting for this saga's next outcome. */
  waiters: { resolve: (o: SagaOutcome) => void; reject: (e: unknown) => void }[];
  parked: boolean;
  checkpointQueued: boolean;
  /** A write-ahead checkpoint being stored: requests wait for it. */
  barrier: Promise<void> | undefined;
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
  const allowed = ['transport', 'store', 'dedup', 'logger', 'clock', 'random', 'timerTickMs', 'inspect', 'sagas'];
  for (const k of Object.keys(options)) if (!allowed.includes(k)) throw new InvalidOptionError(k, `unknown option (allowed: ${allowed.join(', ')})`);
  const tick = options.timerTickMs ?? DEFAULT_TIMER_TICK_MS;
  if (typeof tick !== 'number' || !Number.isFinite(tick) || tick <= 0) throw new InvalidOptionError('timerTickMs', 'must be a finite number > 0');
  if (options.random !== undefined && typeof options.random !== 'function') throw new InvalidOptionError('random', 'must be a function () => number in [0, 1)');
  for (const k of ['transport', 'store', 'dedup', 'clock', 'logger'] as const) {
    if (options[k] !== undefined && (options[k] === null || typeof options[k] !== 'object')) throw new InvalidOptionError(k, 'must be an object');
  }
  const clock = options.clock ?? systemClock;
  return {
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
  const wheel = new TimerWheel(clock, o.tick);
  const root = createActor(runtimeRoot, { input: { transport, clock, wheel }, ...(o.inspect ? { inspect: o.inspect } : {}) });
  root.start();
  const timer = root.system.get('timer') as AnyActorRef;

  const live = new Map<string, Live>();
  const definitions = new Map<string, SagaDefinition>();
  const machines = new WeakMap<SagaDefinition, SagaMachine>();
  const hosted: WorkerHost[] = [];
  const serving: Promise<Served>[] = [];
  const listeners: { [K in keyof RuntimeEvents]: Set<(e: RuntimeEvents[K]) => void> } = { escalation: new Set(), outcome: new Set() };
  let closed = false;
  let running = 0;

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

  const perform = (self: AnyActorRef, sagaId: string, cmd: SagaCommand) => {
    switch (cmd.type) {
      case 'do':
      case 'compensate': {
        const ev: WorkerActorEvent = {
          type: cmd.type === 'do' ? 'DO' : 'COMPENSATE',
          saga: self,
          sagaId,
          stepId: cmd.stepId,
          key: cmd.key,
          input: cmd.input,
          ...(cmd.type === 'compensate' ? { result: cmd.result } : {}),
          attempt: cmd.attempt,
          timeoutMs: cmd.timeoutMs,
        };
        const barrier = live.get(sagaId)?.barrier;
        if (barrier === undefined) workerRef(cmd.worker)?.send(ev);
        else void barrier.then(() => workerRef(cmd.worker)?.send(ev));
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
        if (entry === undefined) return;
        if (cmd.writeAhead === true) {
          // Read the snapshot once this transition is done, store it, then let requests go.
          const barrier: Promise<void> = Promise.resolve()
            .then(() => store.checkpoint(sagaId, entry.actor.getPersistedSnapshot(), 'running'))
            .catch((error: unknown) => logger.error({ err: error, sagaId }, 'write-ahead checkpoint failed; sending anyway'))
            .then(() => {
              if (entry.barrier === barrier) entry.barrier = undefined;
            });
          entry.barrier = barrier;
          return;
        }
        if (entry.checkpointQueued) return;
        entry.checkpointQueued = true;
        queueMicrotask(() => {
          entry.checkpointQueued = false;
          if (entry.actor.getSnapshot().status !== 'active') return;
          store.checkpoint(sagaId, entry.actor.getPersistedSnapshot(), entry.parked ? 'parked' : 'running').catch((error: unknown) => {
            logger.error({ err: error, sagaId }, 'checkpoint failed');
          });
        });
        return;
      }
    }
  };

  const settle = (sagaId: string) => {
    const entry = live.get(sagaId);
    if (entry === undefined) return;
    const snap = entry.actor.getSnapshot();
    const state = snap.value as MachineStateName;
    const outcome = outcomeOf(entry.def, snap.context, state) as SagaOutcome;
    const waiters = entry.waiters;
    entry.waiters = [];
    timer.send({ type: 'CANCEL_ALL', owner: entry.actor } satisfies TimerEvent);
    if (outcome.status === 'compensation-failed') {
      const log = logger.child({ sagaId, saga: entry.def.name });
      if (!entry.parked) {
        entry.parked = true;
        running--;
      }
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
      void (async () => {
        try {
          await store.checkpoint(sagaId, entry.actor.getPersistedSnapshot(), 'parked');
          await store.park(letter);
        } catch (error) {
          log.error({ err: error }, 'could not store the dead letter');
        }
        emit('escalation', { sagaId, saga: letter.saga, version: letter.version, remaining: letter.remaining, failures: letter.failures, timesParked: letter.timesParked });
        for (const w of waiters) w.resolve(outcome);
      })();
      return;
    }
    live.delete(sagaId);
    if (!entry.parked) running--;
    logger.info({ sagaId, saga: entry.def.name, status: outcome.status }, 'saga ended');
    void (async () => {
      try {
        await store.finish(sagaId, outcome);
      } catch (error) {
        logger.error({ err: error, sagaId }, 'could not journal the outcome');
      }
      if (listeners.outcome.size > 0) emit('outcome', { ...outcome, saga: entry.def.name, version: entry.def.version });
      for (const w of waiters) w.resolve(outcome);
    })();
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

  const start = (def: SagaDefinition, sagaId: string, input: unknown, snapshot?: unknown, rootInputs?: Record<string, unknown>): Live => {
    const actor = createActor(machineOf(def), {
      id: sagaId,
      input: { sagaId, input, ...(rootInputs !== undefined ? { rootInputs } : {}) },
      ...(snapshot !== undefined ? { snapshot: snapshot as never } : {}),
      ...(o.inspect ? { inspect: o.inspect } : {}),
    });
    const entry: Live = { def, actor, waiters: [], parked: false, checkpointQueued: false, barrier: undefined };
    live.set(sagaId, entry);
    running++;
    return entry;
  };

  const ensureOpen = () => {
    if (closed) throw new SagaError('RUNTIME_CLOSED', 'this runtime is closed');
  };

  const parkedEntry = (sagaId: string): Live => {
    if (typeof sagaId !== 'string') throw new InvalidOptionError('sagaId', 'must be a string');
    const entry = live.get(sagaId);
    if (entry === undefined) throw new SagaNotFoundError(sagaId);
    if (!entry.parked) throw new SagaError('SAGA_NOT_PARKED', `saga '${sagaId}' is not parked in compensation-failed; only parked sagas take operator commands`);
    return entry;
  };

  const operator = async (sagaId: string, event: { type: 'OPERATOR.RETRY' } | { type: 'OPERATOR.RESOLVE'; note?: string }): Promise<SagaOutcome> => {
    ensureOpen();
    const entry = parkedEntry(sagaId);
    return new Promise<SagaOutcome>((resolve, reject) => {
      entry.waiters.push({ resolve, reject });
      store.unpark(sagaId).then(() => {
        entry.parked = false;
        running++;
        logger.info({ sagaId, action: event.type, note: 'note' in event ? event.note : undefined }, 'operator action');
        entry.actor.send(event);
      }, reject);
    });
  };

  const runtime: Runtime = {
    host(...workers) {
      ensureOpen();
      const host = createWorkerHost(workers, { dedup: o.dedup, clock, logger });
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
      const def = saga as SagaDefinition;
      register(def);
      assertSerializable(input, 'input');
      const sagaId = options.sagaId ?? randomUUID();
      if (typeof sagaId !== 'string' || sagaId.length === 0 || sagaId.length > 256) throw new InvalidOptionError('sagaId', 'must be a non-empty string of at most 256 characters');
      if (live.has(sagaId)) throw new SagaError('DEFINITION_INVALID', `saga id '${sagaId}' is already running`);
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
      }
      if (serving.length > 0) await Promise.all(serving);
      const missing: string[] = [];
      for (const name of def.workers.keys()) {
        const served = transport.isServed(name);
        if (!(typeof served === 'boolean' ? served : await served)) missing.push(name);
      }
      if (missing.length > 0) throw new WorkerNotHostedError(def.name, missing);
      ensureOpen();
      const now = clock.now();
      await store.begin({ sagaId, saga: def.name, version: def.version, input, status: 'running', startedAt: now, updatedAt: now, snapshot: undefined, outcome: undefined });
      ensureOpen(); // closed while the intent was being written: it stays for recover()
      const entry = start(def, sagaId, input, undefined, rootInputs);
      return new Promise<SagaOutcome>((resolve, reject) => {
        entry.waiters.push({ resolve, reject });
        entry.actor.start();
      });
    },

    retry: (sagaId) => operator(sagaId, { type: 'OPERATOR.RETRY' }),
    resolve: (sagaId, note) => operator(sagaId, { type: 'OPERATOR.RESOLVE', ...(note !== undefined ? { note } : {}) }),

    async recover() {
      ensureOpen();
      if (serving.length > 0) await Promise.all(serving);
      const restored: string[] = [];
      for (const rec of await store.unfinished()) {
        ensureOpen();
        if (live.has(rec.sagaId)) continue;
        const def = definitions.get(`${rec.saga}@${rec.version}`);
        if (def === undefined) {
          logger.warn({ sagaId: rec.sagaId, saga: rec.saga, version: rec.version }, 'cannot recover a saga whose definition this runtime was not given');
          continue;
        }
        const entry = start(def, rec.sagaId, rec.input, rec.snapshot ?? undefined);
        entry.actor.start();
        if (rec.snapshot !== undefined) {
          const snap = entry.actor.getSnapshot();
          if (snap.value === 'compensationFailed') {
            entry.parked = true;
            running--;
          } else {
            for (const cmd of redrive(def, snap.context as SagaContext)) perform(entry.actor, rec.sagaId, cmd);
          }
        }
        restored.push(rec.sagaId);
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
      return { sagaId, saga: rec.saga, version: rec.version, state, steps, outcome: rec.outcome };
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

    async close(closeOptions = {}) {
      if (closed) return;
      closed = true;
      const drainMs = closeOptions.drainMs ?? 5_000;
      if (typeof drainMs !== 'number' || !(drainMs >= 0)) throw new InvalidOptionError('drainMs', 'must be a number >= 0');
      for (const [sagaId, entry] of live) {
        entry.actor.stop();
        const abandoned = new SagaError('RUNTIME_CLOSED', `the runtime closed while saga '${sagaId}' was running; recover() in a new runtime drives it on`);
        for (const w of entry.waiters) w.reject(abandoned);
      }
      live.clear();
      const served = await Promise.allSettled(serving);
      const drained = Promise.allSettled(served.map((s) => (s.status === 'fulfilled' ? s.value.stop() : undefined)));
      let timer: ReturnType<typeof setTimeout> | undefined;
      const gaveUp = new Promise<void>((resolve) => {
        timer = setTimeout(resolve, drainMs);
        timer.unref();
      });
      await Promise.race([drained, gaveUp]);
      clearTimeout(timer);
      root.stop();
      wheel.stop();
    },
  };
  return runtime;
}

function statusOf(def: SagaDefinition, ctx: SagaContext, state: MachineStateName): SagaStatus {
  const steps: Record<string, StepStatus> = {};
  for (const p of def.steps) steps[p.id] = (ctx.steps[p.id] as { status: StepStatus }).status;
  return { sagaId: ctx.sagaId, saga: def.name, version: def.version, state, steps, outcome: outcomeOf(def, ctx, state) };
}
