/**
 * createRuntime: wires saga machines, worker actors, the timer actor, a transport
 * and a store together. The embedded default needs nothing: in-memory transport,
 * in-memory stores, the system clock and a silent logger.
 *
 * The parts are in src/runtime/: options.ts (options, defaults, their validation),
 * api.ts (the Runtime interface), admission.ts (the `maxInFlight` bound), driver.ts (the
 * saga driver), operator.ts (retry, resolve, status, dead letters, outcome) and
 * recovery.ts (recover() and the ownership watch's takeovers). Here they are composed,
 * with hosting workers, run() and start() (run() that resolves once the saga is in the
 * store), and close().
 */
import { randomUUID } from 'node:crypto';
import { createWorkerHost } from './actors/worker-host.ts';
import type { WorkerHost } from './actors/worker-host.ts';
import { requestOf } from './actors/worker-actor.ts';
import type { Ownership } from './coordination/ownership.ts';
import { InvalidOptionError, JournalUnavailableError, SagaDefinitionError, SagaError, WorkerNotHostedError } from './errors.ts';
import { assertSerializable, fingerprint, rootStepInput } from './machines/serializable.ts';
import { Admission } from './runtime/admission.ts';
import type { Runtime, StartedSaga } from './runtime/api.ts';
import { SagaDriver } from './runtime/driver.ts';
import type { Header } from './runtime/driver.ts';
import { abortRunning, deadLetters, list, operator, outcome, resolveParked, status } from './runtime/operator.ts';
import { resolveOptions } from './runtime/options.ts';
import { parseTraceparent } from './tracing.ts';
import type { RunOptions, RuntimeOptions } from './runtime/options.ts';
import { recover, watchOwnership } from './runtime/recovery.ts';
import type { SagaDefinition, SagaOutcome, SagaRecord, Served, VersionedSagaRecord } from './types.ts';

export { DEFAULT_JOURNAL_RETRY_MS, DEFAULT_MAX_IN_FLIGHT, DEFAULT_OWNERSHIP_LEASE_MS } from './runtime/options.ts';
export type { RunOptions, RuntimeOptions } from './runtime/options.ts';
export type { EscalationEvent, ListOptions, ResolveOptions, Runtime, RuntimeEvents, SagaStatus, SagaSummary, StartedSaga, StepEvent } from './runtime/api.ts';

/** An idempotency key's shape (40 hex digits), for checking a request's size before its key is computed. */
const KEY_SHAPE = '0'.repeat(40);
/** A traceparent's length, for that check. */
const TRACEPARENT_SHAPE = `00-${'1'.repeat(32)}-${'1'.repeat(16)}-01`;

function sameSaga(sagaId: string, def: SagaDefinition, input: unknown, other: { saga: string; version: number; input: unknown }): void {
  if (other.saga !== def.name || other.version !== def.version || fingerprint(other.input) !== fingerprint(input)) {
    throw new SagaError(
      'SAGA_ID_CONFLICT',
      `saga id '${sagaId}' is already used by saga '${other.saga}' version ${other.version}${other.saga === def.name && other.version === def.version ? ' with another input' : ''}`,
    );
  }
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
  const admission = new Admission(o.maxInFlight);
  const driver = new SagaDriver(o, admission);
  const ownerId = driver.ownerId;
  let ownership: Ownership | undefined;
  const hosted: WorkerHost[] = [];
  const serving: Promise<Served>[] = [];
  /** How many of `serving`, from the first, are known to have resolved. */
  let servedUpTo = 0;
  /** Intents being written, by saga id. */
  const beginning = new Map<string, Promise<unknown>>();

  /** run() for a saga id that may exist: its outcome, the saga driven here, or the saga resumed from its journal (the outcome boxed, so that awaiting this does not wait for it). */
  const existing = async (def: SagaDefinition, sagaId: string, input: unknown): Promise<{ outcome: Promise<SagaOutcome> } | undefined> => {
    const here = driver.live.get(sagaId);
    if (here !== undefined) {
      sameSaga(sagaId, def, input, here.header);
      return { outcome: driver.attach(here) };
    }
    let found: VersionedSagaRecord | undefined;
    try {
      found = await store.load(sagaId);
    } catch (error) {
      throw new JournalUnavailableError(sagaId, false, error);
    }
    if (found === undefined) return undefined;
    sameSaga(sagaId, def, input, found.record);
    if (found.record.outcome !== undefined) return { outcome: Promise.resolve(found.record.outcome) };
    driver.ensureOpen();
    // Driven by another coordinator that has a heartbeat: wait for its outcome rather than
    // take the saga from it (should it be dead, the ownership watch takes the saga over).
    const owner = found.record.owner;
    if (owner !== undefined && owner !== ownerId && o.ownershipLeaseMs !== undefined && store.beats !== undefined) {
      let beating: ReadonlyMap<string, number>;
      try {
        beating = await store.beats();
      } catch (error) {
        throw new JournalUnavailableError(sagaId, false, error);
      }
      if (beating.has(owner)) return { outcome: outcome(driver, sagaId) as Promise<SagaOutcome> };
    }
    const entry = driver.live.get(sagaId) ?? (await driver.takeOver(def, found));
    if (entry === undefined) throw new SagaError('SAGA_FENCED', `saga '${sagaId}' is driven by another coordinator`);
    return { outcome: driver.attach(entry) };
  };

  /**
   * run() up to the moment the saga is known to the store: its intent written here, or a
   * saga with this id found (driven here, by another coordinator, or finished). Rejects
   * for misuse and for an intent that could not be written, as run() does.
   */
  const begin = async (saga: SagaDefinition, input: unknown, options: RunOptions): Promise<StartedSaga> => {
    driver.ensureOpen();
    if (saga === null || typeof saga !== 'object' || (saga as SagaDefinition).kind !== 'saga') {
      throw new SagaDefinitionError(`run needs a saga made with defineSaga(...), got ${saga === null ? 'null' : typeof saga === 'object' ? 'an object without kind: "saga"' : typeof saga}`);
    }
    if (options === null || typeof options !== 'object') throw new InvalidOptionError('options', 'must be an object');
    for (const k of Object.keys(options)) if (k !== 'sagaId' && k !== 'traceparent') throw new InvalidOptionError(k, 'unknown option (allowed: sagaId, traceparent)');
    const { traceparent } = options;
    if (traceparent !== undefined && (typeof traceparent !== 'string' || parseTraceparent(traceparent) === undefined)) {
      throw new InvalidOptionError('traceparent', `must be a W3C traceparent, 00-<32 hex>-<16 hex>-<2 hex> with ids not all zero, got ${JSON.stringify(traceparent) ?? String(traceparent)}`);
    }
    // A traced saga's requests carry a Traceparent header: the first one is checked with one.
    const tracedShape = traceparent !== undefined || driver.tracer.otel ? { span: { traceparent: TRACEPARENT_SHAPE, end: () => {} } } : {};
    const def = saga as SagaDefinition;
    driver.register(def);
    assertSerializable(input, 'input', def.name);
    const sagaId = options.sagaId ?? randomUUID();
    if (typeof sagaId !== 'string' || sagaId.length === 0 || Buffer.byteLength(sagaId, 'utf8') > 256) throw new InvalidOptionError('sagaId', 'must be a non-empty string of at most 256 bytes in UTF-8');
    // Root steps' inputs are derived now so that a bad one rejects run before any dispatch.
    const rootInputs: Record<string, unknown> = {};
    for (const p of def.steps) {
      if (p.after.length > 0) continue;
      const stepInput = rootStepInput(def.name, p, input);
      rootInputs[p.id] = stepInput;
      // A first request the transport would refuse (over the payload limit): reject now, with nothing dispatched.
      const refused = transport.check?.(
        requestOf(p.worker, { type: 'DO', sagaId, stepId: p.id, key: KEY_SHAPE, input: stepInput, attempt: 1, timeoutMs: p.timeoutMs, ...tracedShape }, clock.now()),
      );
      if (refused !== undefined) {
        const code = refused instanceof SagaError ? refused.code : 'TRANSPORT_ERROR';
        throw new SagaError(code, `saga '${def.name}' cannot start: ${refused.message}; nothing was dispatched`, { cause: refused });
      }
    }
    if (options.sagaId !== undefined) {
      const known = await existing(def, sagaId, input);
      if (known !== undefined) return { sagaId, outcome: known.outcome };
    }
    // A slot under maxInFlight; a run with the same id that starts meanwhile is found by begin().
    const queued = admission.admit();
    if (queued !== undefined) await queued;
    let started = false;
    try {
      // Hosts registering their workers: wait for them (once they all have, without a pause per run).
      if (serving.length > servedUpTo) {
        const upTo = serving.length;
        await Promise.all(serving);
        servedUpTo = Math.max(servedUpTo, upTo);
      }
      const missing: string[] = [];
      for (const name of def.workers.keys()) {
        const served = transport.isServed(name);
        if (!(typeof served === 'boolean' ? served : await served)) missing.push(name);
      }
      if (missing.length > 0) throw new WorkerNotHostedError(def.name, missing);
      // One intent per saga id at a time here: two identical intents cannot be told apart when read back.
      for (let ahead = beginning.get(sagaId); ahead !== undefined; ahead = beginning.get(sagaId)) await ahead.catch(() => undefined);
      driver.ensureOpen();
      const now = clock.now();
      const header: Header = { sagaId, saga: def.name, version: def.version, input, startedAt: now, ...(traceparent !== undefined ? { traceparent } : {}) };
      const intent: SagaRecord = { ...header, status: 'running', updatedAt: now, snapshot: undefined, outcome: undefined, owner: ownerId };
      const begun = (async (): Promise<number | undefined> => {
        try {
          return await store.begin(intent);
        } catch (error) {
          // The intent may have landed with its answer lost: read it back.
          const settled = await driver.landed(intent, 0);
          if (settled !== 'retry') return settled;
          // Unknown: should it have landed, the ownership watch drives it (or recover()).
          driver.stranded.add(sagaId);
          throw new JournalUnavailableError(sagaId, false, error);
        }
      })();
      beginning.set(sagaId, begun);
      let revision: number | undefined;
      try {
        revision = await begun;
      } finally {
        beginning.delete(sagaId);
      }
      if (revision === undefined) {
        // Another run with this id began first: this call only waits for it.
        started = true;
        admission.release();
        const known = await existing(def, sagaId, input);
        if (known !== undefined) return { sagaId, outcome: known.outcome };
        throw new SagaError('SAGA_ID_CONFLICT', `saga id '${sagaId}' is already used`);
      }
      driver.ensureOpen(); // closed while the intent was being written: it stays for recover()
      const entry = driver.start(def, header, revision, { rootInputs });
      // The slot passes from this call to the running saga.
      started = true;
      admission.handOver();
      const outcome = driver.attach(entry);
      entry.actor.start();
      return { sagaId, outcome };
    } finally {
      if (!started) admission.release();
    }
  };

  const runtime: Runtime = {
    host(...workers) {
      driver.ensureOpen();
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

    // Typed by the Runtime interface: the input and the results follow from the saga.
    run: async function run(saga: SagaDefinition, input: unknown, options: RunOptions = {}): Promise<SagaOutcome> {
      return (await begin(saga, input, options)).outcome;
    } as Runtime['run'],

    start: async function start(saga: SagaDefinition, input: unknown, options: RunOptions = {}): Promise<StartedSaga> {
      const started = await begin(saga, input, options);
      // The caller may never wait for the outcome: a rejection of it is not unhandled.
      started.outcome.catch(() => undefined);
      return started;
    } as Runtime['start'],

    outcome: (sagaId, options) => outcome(driver, sagaId, options),

    retry: (sagaId) => operator(driver, sagaId, { type: 'OPERATOR.RETRY' }),
    abort: (sagaId, note) => abortRunning(driver, sagaId, note),
    resolve: (sagaId, options) => resolveParked(driver, sagaId, options),

    recover: () => recover(driver, serving, o.ownershipLeaseMs),

    status: (sagaId) => status(driver, sagaId),

    deadLetters: () => deadLetters(driver),

    list: (options) => list(driver, options),

    sagas: o.sagas,

    on(event, listener) {
      const listeners = driver.listeners;
      if (!(event in listeners)) throw new InvalidOptionError('event', `unknown event '${String(event)}' (allowed: ${Object.keys(listeners).join(', ')})`);
      const set = listeners[event] as Set<typeof listener>;
      set.add(listener);
      return () => void set.delete(listener);
    },

    get inFlight() {
      return admission.inFlight;
    },

    get queued() {
      return admission.queued;
    },

    coordinatorId: ownerId,

    async close(closeOptions = {}) {
      if (driver.closed) return;
      const drainMs = closeOptions.drainMs ?? 5_000;
      if (typeof drainMs !== 'number' || !(drainMs >= 0)) throw new InvalidOptionError('drainMs', 'must be a number >= 0');
      driver.closed = true;
      admission.rejectAll(() => new SagaError('RUNTIME_CLOSED', 'the runtime closed while this run() waited for a slot (maxInFlight); nothing of it was written or sent'));
      for (const [sagaId, entry] of [...driver.live]) {
        driver.stop(entry, new SagaError('RUNTIME_CLOSED', `the runtime closed while saga '${sagaId}' was running; recover() in a new runtime drives it on`));
      }
      driver.live.clear();
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
      driver.shutdown();
    },
  };
  if (o.ownershipLeaseMs !== undefined) ownership = watchOwnership(driver, o.ownershipLeaseMs);
  return runtime;
}
