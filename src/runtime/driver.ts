/**
 * The saga driver: the sagas this runtime drives, each an XState actor of its
 * definition's machine, and what they do. It carries out their commands (requests to
 * worker actors, timers, checkpoints), journals every state a saga must not lose (one
 * write after another per saga, fenced by the revision this runtime wrote last), reports
 * outcomes once they are journaled, and starts, restores and takes sagas over.
 */
import { createActor, enqueueActions, setup, spawnChild } from 'xstate';
import type { Actor, AnyActorRef, InspectionEvent } from 'xstate';
import { TimerWheel, timerLogic } from '../actors/timer.ts';
import type { TimerEvent } from '../actors/timer.ts';
import { workerActorLogic } from '../actors/worker-actor.ts';
import type { WorkerActorEvent } from '../actors/worker-actor.ts';
import { JournalUnavailableError, SagaError } from '../errors.ts';
import { fromPersistedSteps, outcomeOf, toPersistedSteps } from '../machines/saga-logic.ts';
import type { MachineStateName, SagaCommand, SagaContext, StepState, StepStatus } from '../machines/saga-logic.ts';
import { stableStringify } from '../machines/serializable.ts';
import { createSagaMachine } from '../machines/saga-machine.ts';
import type { SagaMachine } from '../machines/saga-machine.ts';
import type { Clock, DeadLetter, Logger, SagaDefinition, SagaOutcome, SagaRecord, SagaStore, Transport, VersionedSagaRecord } from '../types.ts';
import type { Admission } from './admission.ts';
import type { RuntimeEvents } from './api.ts';
import type { ResolvedOptions } from './options.ts';
import { LOG_MSG, outcomeFields, SagaTrace } from './saga-log.ts';
import { sagaTracer } from '../tracing.ts';
import type { SagaSpan, SagaTracer } from '../tracing.ts';

/** Step statuses of the undo side: their events follow those of the `do` side in one transition. */
const UNDO_STATUSES: ReadonlySet<StepStatus> = new Set(['compensating', 'compensated', 'compensationFailed']);

/** Compare-and-set tries of a takeover, and the pause between them (growing). */
const TAKEOVER_TRIES = 5;
const TAKEOVER_PAUSE_MS = 50;

/** What a journal write keeps from the saga's first record. */
export type Header = Pick<SagaRecord, 'sagaId' | 'saga' | 'version' | 'input' | 'startedAt' | 'traceparent'>;

/** What one journal write sets, besides the saga's header. */
export type Fields = Pick<SagaRecord, 'status' | 'snapshot' | 'outcome'> & Pick<Partial<SagaRecord>, 'deadLetter' | 'parked'>;

/** A saga driven by this runtime. */
export interface Live {
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
  /** Its debug lines; undefined when the logger's level was above debug as it started. */
  readonly trace: SagaTrace | undefined;
  /** Its span (trace context, and OpenTelemetry); undefined when it is not traced. */
  span: SagaSpan | undefined;
}

interface RootContext {
  transport: Transport;
  clock: Clock;
  wheel: TimerWheel;
  /** Bounds of requests in flight per worker name (`workerMaxInFlight`). */
  workerMaxInFlight: ReadonlyMap<string, number>;
}

const runtimeRoot = setup({
  types: { context: {} as RootContext, input: {} as RootContext, events: {} as { type: 'WORKER.ADD'; name: string } },
  actors: { worker: workerActorLogic, timer: timerLogic },
}).createMachine({
  id: 'scatter-saga',
  context: ({ input }) => input,
  entry: spawnChild('timer', { id: 'timer', systemId: 'timer', input: ({ context }) => ({ wheel: context.wheel }) }),
  on: {
    'WORKER.ADD': {
      actions: enqueueActions(({ enqueue, context, event }) => {
        const maxInFlight = context.workerMaxInFlight.get(event.name);
        enqueue.spawnChild('worker', {
          id: `worker:${event.name}`,
          systemId: `worker:${event.name}`,
          input: { worker: event.name, transport: context.transport, clock: context.clock, ...(maxInFlight !== undefined ? { bound: { maxInFlight, wheel: context.wheel } } : {}) },
        });
      }),
    },
  },
});

/** The inspector a saga actor gets: the runtime's (`inspect` option), its trace's, both, or none. */
/**
 * The snapshot a saga's journal holds: the machine's persisted snapshot, its steps by id
 * (a context holds them in definition order, see `SagaContext.steps`).
 */
function persistedSnapshot(entry: Live): unknown {
  const snap = entry.actor.getPersistedSnapshot() as unknown as { context: SagaContext };
  return { ...snap, context: { ...snap.context, steps: toPersistedSteps(entry.def, snap.context.steps) } };
}

/** A journaled snapshot as the machine takes it back (see {@link persistedSnapshot}). */
function restoredSnapshot(def: SagaDefinition, snapshot: unknown): unknown {
  const snap = snapshot as { context?: { steps?: Record<string, StepState> | StepState[] } } | null;
  if (snap?.context?.steps === undefined || Array.isArray(snap.context.steps)) return snapshot;
  return { ...snap, context: { ...snap.context, steps: fromPersistedSteps(def, snap.context.steps) } };
}

function inspectors(user: ResolvedOptions['inspect'], trace: SagaTrace | undefined): ResolvedOptions['inspect'] {
  if (trace === undefined) return user;
  if (user === undefined) return trace.inspect;
  return (ev: InspectionEvent) => {
    if (typeof user === 'function') user(ev);
    else user.next?.(ev);
    trace.inspect(ev);
  };
}

export class SagaDriver {
  readonly store: SagaStore;
  readonly logger: Logger;
  readonly clock: Clock;
  /** This coordinator's id: the `owner` of the journals it writes. */
  readonly ownerId: string;
  /** Sagas driven here, by id. */
  readonly live = new Map<string, Live>();
  /**
   * Sagas of this coordinator that no runtime drives: stopped here while their journal
   * could not be written, or whose intent may have landed unseen. The ownership watch
   * takes them up again once the store answers (without ownership: `recover()`).
   */
  readonly stranded = new Set<string>();
  readonly listeners: { [K in keyof RuntimeEvents]: Set<(e: RuntimeEvents[K]) => void> } = { escalation: new Set(), outcome: new Set(), step: new Set() };
  /** The runtime closed: nothing is started, sent or written any more. */
  closed = false;
  /** Sagas this runtime is taking over from their journal right now. */
  private readonly takingOver = new Map<string, Promise<Live | undefined>>();
  private readonly definitions = new Map<string, SagaDefinition>();
  private readonly machines = new WeakMap<SagaDefinition, SagaMachine>();
  /** The bound of sagas running at once: a saga started or resumed enters it, one parked, ended or stopped leaves it. */
  readonly admission: Admission;
  private readonly o: ResolvedOptions;
  private readonly wheel: TimerWheel;
  private readonly root: Actor<typeof runtimeRoot>;
  private readonly timer: AnyActorRef;
  /** The worker actors, by worker name: looked up once, not once per request. */
  private readonly workerRefs = new Map<string, AnyActorRef>();
  /** Spans of sagas and of their requests: W3C trace context, and OpenTelemetry when installed. */
  readonly tracer: SagaTracer = sagaTracer();

  constructor(o: ResolvedOptions, admission: Admission) {
    this.o = o;
    this.admission = admission;
    this.store = o.store;
    this.logger = o.logger;
    this.clock = o.clock;
    this.ownerId = o.coordinatorId;
    this.wheel = new TimerWheel(o.clock, o.tick);
    this.root = createActor(runtimeRoot, { input: { transport: o.transport, clock: o.clock, wheel: this.wheel, workerMaxInFlight: o.workerMaxInFlight }, ...(o.inspect ? { inspect: o.inspect } : {}) });
    this.root.start();
    this.timer = this.root.system.get('timer') as AnyActorRef;
    for (const def of o.sagas) this.register(def);
  }

  /** Definitions by name@version, for recovery. The most recently used one wins. */
  register(def: SagaDefinition): void {
    this.definitions.set(`${def.name}@${def.version}`, def);
  }

  definitionOf(rec: Pick<SagaRecord, 'saga' | 'version'>): SagaDefinition | undefined {
    return this.definitions.get(`${rec.saga}@${rec.version}`);
  }

  /** The transport requests go out on (an operator's resolve fences keys through it). */
  get transport(): Transport {
    return this.o.transport;
  }

  ensureOpen(): void {
    if (this.closed) throw new SagaError('RUNTIME_CLOSED', 'this runtime is closed');
  }

  sleep(ms: number): Promise<void> {
    return new Promise<void>((r) => this.clock.setTimeout(r, ms));
  }

  emit<K extends keyof RuntimeEvents>(event: K, payload: RuntimeEvents[K]): void {
    for (const l of this.listeners[event]) {
      try {
        (l as (e: RuntimeEvents[K]) => void)(payload);
      } catch (error) {
        this.logger.error({ err: error, event }, 'a runtime event listener threw');
      }
    }
  }

  /** The worker actor for a name, spawned on first use; undefined once the runtime is closed. */
  private workerRef(name: string): AnyActorRef | undefined {
    if (this.closed) return undefined;
    let ref = this.workerRefs.get(name);
    if (ref !== undefined) return ref;
    ref = this.root.system.get(`worker:${name}`) as AnyActorRef | undefined;
    if (ref === undefined) {
      this.root.send({ type: 'WORKER.ADD', name });
      ref = this.root.system.get(`worker:${name}`) as AnyActorRef;
    }
    this.workerRefs.set(name, ref);
    return ref;
  }

  private jittered(delayMs: number, jitter: boolean): number {
    return jitter ? delayMs * (0.5 + this.o.random() * 0.5) : delayMs;
  }

  /** No longer counted as running (parked, ended or stopped). */
  goIdle(entry: Live): void {
    if (!entry.idle) {
      entry.idle = true;
      this.admission.leave();
    }
  }

  /**
   * Stops a saga in this runtime: it sends and writes nothing more, its callers get
   * `error`, and its journal is left as last written, for `recover()`.
   */
  stop(entry: Live, error: SagaError): void {
    if (entry.stopped) return;
    entry.stopped = true;
    if (this.live.get(entry.header.sagaId) === entry) this.live.delete(entry.header.sagaId);
    this.goIdle(entry);
    this.timer.send({ type: 'CANCEL_ALL', owner: entry.actor } satisfies TimerEvent);
    entry.actor.stop();
    entry.span?.end('stopped');
    entry.span = undefined;
    const waiters = entry.waiters;
    entry.waiters = [];
    for (const w of waiters) w.reject(error);
  }

  /** Whether this runtime is taking the saga over from its journal right now. */
  isTakingOver(sagaId: string): boolean {
    return this.takingOver.has(sagaId);
  }

  /**
   * Settles a write whose answer was lost: reads the journal back. Our record there: it
   * landed (its revision). The revision we named still there: it did not (`'retry'`).
   * Anything else: another coordinator wrote it (undefined). A read that fails: `'retry'`.
   * Our outcome found closed (revision 0): it landed; `named` is returned, as no write follows.
   * `named` 0: an intent, which is absent when it did not land.
   */
  async landed(record: SagaRecord, named: number): Promise<number | undefined | 'retry'> {
    let found: VersionedSagaRecord | undefined;
    try {
      found = await this.store.load(record.sagaId);
    } catch {
      return 'retry';
    }
    if (found !== undefined && stableStringify(found.record) === stableStringify(record)) {
      if (found.revision > 0) return found.revision;
      // Our outcome, closed or archived: it landed, and nothing is written after it.
      if (record.outcome !== undefined) return named;
    }
    if (found === undefined) return named === 0 ? 'retry' : undefined;
    return found.revision === named ? 'retry' : undefined;
  }

  /** One journal write, tried again while the store is unreachable; resolves whether it landed. */
  private async write(entry: Live, record: SagaRecord): Promise<boolean> {
    const { sagaId } = entry.header;
    const since = this.clock.now();
    for (let attempt = 0; ; attempt++) {
      if (entry.stopped) return false;
      let revision: number | undefined | 'retry';
      let failure: unknown;
      try {
        revision = await this.store.write(record, entry.revision);
        // A conflict after a failed attempt may be that attempt, landed with its answer lost.
        if (revision === undefined && attempt > 0) revision = await this.landed(record, entry.revision);
        if (revision === 'retry') failure = new Error('the journal revision did not change, but the write did not land');
      } catch (error) {
        failure = error;
      }
      if (entry.stopped) return false;
      if (failure !== undefined) {
        if (this.closed || this.clock.now() - since >= this.o.journalRetryMs) {
          this.logger.error({ err: failure, sagaId }, 'could not write the journal: the saga is stopped here, and taken up again once the store answers (or by recover())');
          this.stranded.add(sagaId);
          this.stop(entry, new JournalUnavailableError(sagaId, true, failure));
          return false;
        }
        this.logger.warn({ err: failure, sagaId, attempt }, 'journal write failed; trying again');
        await this.sleep(Math.min(2_000, 50 * 2 ** attempt));
        continue;
      }
      if (revision === undefined) {
        this.logger.error({ sagaId }, "another coordinator wrote this saga's journal: it is stopped here");
        this.stop(entry, new SagaError('SAGA_FENCED', `saga '${sagaId}' was taken over by another coordinator (its journal changed under this one); that coordinator drives it on`));
        return false;
      }
      entry.revision = revision as number;
      return !entry.stopped;
    }
  }

  /**
   * Writes the saga's journal after every earlier write of it, naming the revision the
   * previous one wrote. A store that cannot be reached is tried again with backoff for
   * `journalRetryMs`; then, or when another coordinator wrote the journal meanwhile, the
   * saga is stopped here. Resolves whether the write landed.
   */
  private journal(entry: Live, fields: Fields): Promise<boolean> {
    if (entry.stopped) return Promise.resolve(false);
    const record: SagaRecord = { ...entry.header, ...fields, owner: this.ownerId, updatedAt: this.clock.now() };
    entry.writes++;
    const done = (ok: boolean) => {
      entry.writes--;
      return ok;
    };
    // No write in flight: start at once; else after the last one.
    const next = entry.writes === 1 ? this.write(entry, record).then(done) : entry.journal.then(() => this.write(entry, record)).then(done);
    entry.journal = next;
    return next;
  }

  /** The journal of a saga still running, as of now. */
  private runningFields(entry: Live): Fields {
    return { status: 'running', snapshot: persistedSnapshot(entry), outcome: undefined };
  }

  private send(entry: Live, workerName: string, ev: WorkerActorEvent): void {
    const barrier = entry.barrier;
    if (barrier === undefined) this.deliver(entry, workerName, ev, true);
    else void barrier.then((ok) => ok && !entry.stopped && this.deliver(entry, workerName, ev, false));
  }

  private deliver(entry: Live, workerName: string, ev: WorkerActorEvent, direct: boolean): void {
    const ref = this.workerRef(workerName);
    if (ref === undefined) return;
    ref.send(ev);
    entry.trace?.sent(ev, direct);
  }

  private perform(self: AnyActorRef, sagaId: string, cmd: SagaCommand): void {
    switch (cmd.type) {
      case 'do':
      case 'compensate': {
        const entry = this.live.get(sagaId);
        if (entry === undefined || entry.stopped) return;
        const ev: WorkerActorEvent =
          cmd.type === 'do'
            ? { type: 'DO', saga: self, sagaId, stepId: cmd.stepId, key: cmd.key, input: cmd.input, attempt: cmd.attempt, timeoutMs: cmd.timeoutMs }
            : { type: 'COMPENSATE', saga: self, sagaId, stepId: cmd.stepId, key: cmd.key, input: cmd.input, result: cmd.result, attempt: cmd.attempt, timeoutMs: cmd.timeoutMs };
        if (entry.span !== undefined) ev.span = entry.span.request(cmd.type, cmd.stepId, cmd.worker, cmd.attempt);
        this.send(entry, cmd.worker, ev);
        return;
      }
      case 'schedule': {
        const event = cmd.event;
        const fire = () => {
          if (self.getSnapshot().status === 'active') self.send(event);
        };
        const delayMs = this.jittered(cmd.delayMs, cmd.jitter);
        this.timer.send({ type: 'SCHEDULE', owner: self, id: cmd.timerId, delayMs, fire } satisfies TimerEvent);
        if (event.type === 'STEP.RETRY_DUE' || event.type === 'COMPENSATION.RETRY_DUE') this.live.get(sagaId)?.trace?.retryScheduled(event, delayMs);
        return;
      }
      case 'cancel':
        this.timer.send({ type: 'CANCEL', owner: self, id: cmd.timerId } satisfies TimerEvent);
        return;
      case 'checkpoint': {
        const entry = this.live.get(sagaId);
        if (entry === undefined || entry.stopped) return;
        if (cmd.writeAhead === true) {
          // The snapshot is taken once this transition is done; the requests that follow wait for its write.
          // Taken and queued in one step, so journal writes keep the order of the states they hold.
          const barrier = new Promise<boolean>((resolve) => queueMicrotask(() => void this.journal(entry, this.runningFields(entry)).then(resolve)));
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
          void this.journal(entry, this.runningFields(entry));
        });
        return;
      }
    }
  }

  private settle(sagaId: string): void {
    const entry = this.live.get(sagaId);
    if (entry === undefined || entry.stopped) return;
    const snap = entry.actor.getSnapshot();
    const state = snap.value as MachineStateName;
    const outcome = outcomeOf(entry.def, snap.context, state) as SagaOutcome;
    const logger = this.logger;
    this.timer.send({ type: 'CANCEL_ALL', owner: entry.actor } satisfies TimerEvent);
    entry.span?.end(outcome.status);
    if (outcome.status === 'compensation-failed') {
      entry.parked = true;
      this.goIdle(entry);
      const letter: DeadLetter = {
        sagaId,
        saga: entry.def.name,
        version: entry.def.version,
        remaining: outcome.remaining,
        failures: outcome.failures,
        parkedAt: this.clock.now(),
        timesParked: snap.context.timesParked,
      };
      if (logger.isLevelEnabled('error')) logger.error({ sagaId, saga: entry.def.name, ...outcomeFields(outcome, this.clock.now() - entry.header.startedAt) }, LOG_MSG.sagaParked);
      // The parked state and its dead letter are one write; then the operator is told.
      void this.journal(entry, { status: 'parked', snapshot: persistedSnapshot(entry), outcome: undefined, deadLetter: letter, parked: outcome }).then((ok) => {
        if (!ok || !entry.parked) return;
        const { parkedAt: _at, ...escalation } = letter;
        this.emit('escalation', escalation);
        const waiters = entry.waiters;
        entry.waiters = [];
        for (const w of waiters) w.resolve(outcome);
      });
      return;
    }
    this.goIdle(entry);
    // The outcome is reported only once it is journaled: a caller never hears of an outcome a recovery could undo.
    // A finished saga is never restored: its record keeps the outcome and each step's last status.
    const summary = { value: state, context: { steps: Object.fromEntries(entry.def.steps.map((p) => [p.id, { status: (snap.context.steps[p.index] as { status: StepStatus }).status }])) } };
    void this.journal(entry, { status: outcome.status === 'committed' ? 'committed' : 'compensated', snapshot: summary, outcome }).then((ok) => {
      if (!ok) return;
      if (this.live.get(sagaId) === entry) this.live.delete(sagaId);
      if (logger.isLevelEnabled('info')) logger.info({ sagaId, saga: entry.def.name, ...outcomeFields(outcome, this.clock.now() - entry.header.startedAt) }, LOG_MSG.ended);
      if (this.listeners.outcome.size > 0) this.emit('outcome', { ...outcome, saga: entry.def.name, version: entry.def.version });
      const waiters = entry.waiters;
      entry.waiters = [];
      for (const w of waiters) w.resolve(outcome);
      this.store.archive?.(sagaId).catch((error: unknown) => logger.warn({ err: error, sagaId }, 'could not archive a finished saga; recover() archives it later'));
    });
  }

  private machineOf(def: SagaDefinition): SagaMachine {
    let m = this.machines.get(def);
    if (m === undefined) {
      m = createSagaMachine(def).provide({
        actions: {
          effect: ({ self }, params) => this.perform(self, self.id, params as SagaCommand),
          settle: ({ self }) => queueMicrotask(() => this.settle(self.id)),
        },
      }) as SagaMachine;
      this.machines.set(def, m);
    }
    return m;
  }

  start(def: SagaDefinition, header: Header, revision: number, from: { snapshot?: unknown; rootInputs?: Record<string, unknown>; recovered?: boolean }): Live {
    const trace = this.logger.isLevelEnabled('debug') ? new SagaTrace(this.logger, def, header.sagaId, () => this.clock.now()) : undefined;
    const inspect = inspectors(this.o.inspect, trace);
    const actor = createActor(this.machineOf(def), {
      id: header.sagaId,
      input: {
        sagaId: header.sagaId,
        input: header.input,
        ...(from.rootInputs !== undefined ? { rootInputs: from.rootInputs } : {}),
        ...(from.recovered === true ? { recovered: true } : {}),
      },
      ...(from.snapshot !== undefined ? { snapshot: restoredSnapshot(def, from.snapshot) as never } : {}),
      ...(inspect !== undefined ? { inspect } : {}),
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
      trace,
      span: this.tracer.saga(def.name, def.version, header.sagaId, header.traceparent, from.snapshot !== undefined || from.recovered === true),
    };
    if (this.listeners.step.size > 0) this.watchSteps(entry);
    trace?.started(from.snapshot !== undefined || from.recovered === true);
    this.live.set(header.sagaId, entry);
    this.admission.enter();
    return entry;
  }

  /** Emits a `step` event for each step whose status or attempts change, as the saga's machine moves. */
  private watchSteps(entry: Live): void {
    const { def } = entry;
    let prev: readonly StepState[] | undefined;
    entry.actor.subscribe((snap) => {
      const steps = snap.context.steps;
      if (steps === prev) return;
      const changed: number[] = [];
      for (let i = 0; i < steps.length; i++) {
        const s = steps[i] as StepState;
        const was = prev?.[i];
        if (s === was) continue;
        if (was !== undefined ? s.status === was.status && s.attempt === was.attempt && s.compAttempt === was.compAttempt : s.status === 'pending') continue;
        changed.push(i);
      }
      prev = steps;
      // One event can move several steps (a failure that starts the undo of others): what happened to a `do` comes first, then the undos it caused.
      const undoing = (i: number) => UNDO_STATUSES.has((steps[i] as StepState).status);
      for (const i of [...changed.filter((i) => !undoing(i)), ...changed.filter(undoing)]) {
        const s = steps[i] as StepState;
        const p = def.steps[i] as (typeof def.steps)[number];
        this.emit('step', { sagaId: entry.header.sagaId, saga: def.name, version: def.version, stepId: p.id, worker: p.worker, status: s.status, attempt: s.attempt, compensationAttempt: s.compAttempt });
      }
    });
  }

  /** Drives on a saga restored from its journal. */
  restore(def: SagaDefinition, record: SagaRecord, revision: number): Live {
    const header: Header = {
      sagaId: record.sagaId,
      saga: record.saga,
      version: record.version,
      input: record.input,
      startedAt: record.startedAt,
      ...(record.traceparent !== undefined ? { traceparent: record.traceparent } : {}),
    };
    const entry = this.start(def, header, revision, record.snapshot === undefined ? { recovered: true } : { snapshot: record.snapshot });
    entry.actor.start();
    // Ended before its outcome was written: write it now.
    if (entry.actor.getSnapshot().status === 'done') queueMicrotask(() => this.settle(record.sagaId));
    // Restored from a checkpoint: taint what may have been sent, send again what may be lost.
    else if (record.snapshot !== undefined) entry.actor.send({ type: 'RECOVER' });
    return entry;
  }

  /**
   * Takes a saga over from its journal: a write naming the revision read fences off a
   * coordinator that still drives it. Undefined when another coordinator wrote it first.
   */
  async takeOver(def: SagaDefinition, found: VersionedSagaRecord): Promise<Live | undefined> {
    const { sagaId } = found.record;
    // One takeover per saga at a time in this runtime: a second would fence off the first.
    const here = this.live.get(sagaId) ?? this.takingOver.get(sagaId);
    if (here !== undefined) return here;
    const taking = (async (): Promise<Live | undefined> => {
      let current: VersionedSagaRecord | undefined = found;
      // A write of a coordinator that died may still land after our read: read again and retry.
      for (let tries = 0; current !== undefined && current.revision > 0 && current.record.outcome === undefined && tries < TAKEOVER_TRIES; tries++) {
        // Closed meanwhile: the saga stays with its journal, for the next coordinator.
        if (this.closed) return undefined;
        const claim: SagaRecord = { ...current.record, owner: this.ownerId, updatedAt: this.clock.now() };
        let revision: number | undefined;
        try {
          revision = await this.store.write(claim, current.revision);
        } catch (error) {
          // The claim may have landed with its answer lost: the journal then names this
          // coordinator, which no other takes a saga from while it beats. Read it back; when
          // that cannot tell, the ownership watch looks at the saga again (strays).
          const settled = await this.landed(claim, current.revision);
          if (settled === 'retry') {
            this.stranded.add(sagaId);
            throw error;
          }
          revision = settled;
        }
        if (this.closed) return undefined;
        if (revision !== undefined) return this.restore(def, current.record, revision);
        await this.sleep(TAKEOVER_PAUSE_MS * (tries + 1));
        current = await this.store.load(sagaId);
      }
      return undefined;
    })();
    this.takingOver.set(sagaId, taking);
    try {
      return await taking;
    } finally {
      this.takingOver.delete(sagaId);
    }
  }

  /** The next outcome of a saga driven here (its parked outcome at once, when parked). */
  attach(entry: Live): Promise<SagaOutcome> {
    if (entry.parked) {
      const snap = entry.actor.getSnapshot();
      return Promise.resolve(outcomeOf(entry.def, snap.context, 'compensationFailed') as SagaOutcome);
    }
    return new Promise<SagaOutcome>((resolve, reject) => entry.waiters.push({ resolve, reject }));
  }

  /** Stops the actor system: the timer actor, the worker actors and the timer wheel. */
  shutdown(): void {
    this.root.stop();
    this.wheel.stop();
  }
}
