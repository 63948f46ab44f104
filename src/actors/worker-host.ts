/**
 * The transport-agnostic worker host: serves workers over any Transport and performs,
 * for each request, the commands of the pure host protocol (machines/host-protocol.ts):
 * reads and compare-and-set writes of the key's record in the dedup store, user code run
 * only under a written claim, waits for other claims, lease renewals, and the answer.
 * Several hosts may serve one worker over one shared dedup store.
 */
import { randomBytes } from 'node:crypto';
import pino from 'pino';
import { InvalidOptionError, SagaDefinitionError, SagaError, toErrorInfo, workerErrorInfo } from '../errors.ts';
import type { ErrorInfo } from '../errors.ts';
import { isBusy } from '../machines/key-machine.ts';
import { replies, startRequest, stepRequest } from '../machines/host-protocol.ts';
import type { Claim, HostCommand, HostEvent, RequestSetup, RequestState, RunOutcome } from '../machines/host-protocol.ts';
import { describeNotJson, findNotJson, fingerprint } from '../machines/serializable.ts';
import { memoryDedupStore } from '../store/memory.ts';
import { parseRequest } from '../transport/protocol.ts';
import { systemClock } from '../clock.ts';
import type { Clock, DedupStore, KeyRecord, Logger, Served, Transport, VersionedKeyRecord, WorkerContext, WorkerDefinition, WorkerReply, WorkerRequest } from '../types.ts';

/** Default time a claim holds without renewal: another host takes a key over this long after its holder died. */
export const DEFAULT_LEASE_MS = 10_000;

/** The options of `createWorkerHost`. */
export interface WorkerHostOptions {
  /**
   * Where key records live. Every host serving a worker must share one store. Default:
   * in memory, for 1 hour (this host only).
   */
  dedup?: DedupStore;
  clock?: Clock;
  /** Default: silent. */
  logger?: Logger;
  /**
   * How long a claim on a key holds without renewal. The holder renews it every third of
   * this while its user code runs; when a host dies, others take its keys over after it.
   * Default 10_000.
   */
  leaseMs?: number;
}

/** A transport-agnostic worker host, made by `createWorkerHost`. */
export interface WorkerHost {
  /** The names of the workers this host serves. */
  readonly workers: readonly string[];
  /** This host's id: the prefix of its claims (`<id>/<n>`). */
  readonly id: string;
  /** Answers one request (already decoded from the wire). Never throws. */
  handle(request: unknown): Promise<WorkerReply>;
  /** Registers every worker on a transport. */
  serve(transport: Transport): Promise<Served>;
}

function isThenable<T>(v: T | PromiseLike<T>): v is PromiseLike<T> {
  return v !== null && typeof v === 'object' && typeof (v as PromiseLike<T>).then === 'function';
}

const POLL_MIN_MS = 5;
const POLL_MAX_MS = 250;

/**
 * How long a request waiting on a busy key pauses before it reads the key again: 5 ms
 * doubling to 250 ms (`polls` is how many pauses it took before), never past the claim's
 * `leaseUntil` (`untilMs` from now), at least 1 ms. A claim this host runs itself wakes
 * the request when it ends, so that pause lasts until the lease.
 */
export function keyPollMs(untilMs: number, polls: number, runsHere: boolean): number {
  if (runsHere) return Math.max(1, untilMs);
  return Math.max(1, Math.min(untilMs, POLL_MAX_MS, POLL_MIN_MS * 2 ** polls));
}

/** What every request of one host shares. */
interface Host {
  readonly dedup: DedupStore;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly claimPrefix: string;
  /** Claims whose user code runs here, by owner. */
  readonly running: Map<string, Running>;
  /**
   * Claims of this host whose write is on its way: the store may already show them to
   * another request of this host before their writer hears back. They are live.
   */
  readonly claiming: Set<string>;
  armRenewal(): void;
}

/** A claim whose user code runs in this process. */
class Running {
  leaseUntil: number;
  private controller: AbortController | undefined;
  private aborted: unknown;
  private waiters: (() => void)[] | undefined;
  constructor(
    readonly request: RequestRun,
    leaseUntil: number,
  ) {
    this.leaseUntil = leaseUntil;
  }
  /** Made on first use: most user code never looks at it. */
  get signal(): AbortSignal {
    if (this.controller === undefined) {
      this.controller = new AbortController();
      if (this.aborted !== undefined) this.controller.abort(this.aborted);
    }
    return this.controller.signal;
  }
  abort(reason: unknown): void {
    this.aborted = reason;
    this.controller?.abort(reason);
  }
  /** Resolves when the claim ends (its outcome written, or it was lost). */
  ended(): Promise<void> {
    return new Promise<void>((resolve) => (this.waiters ??= []).push(resolve));
  }
  end(): void {
    for (const w of this.waiters ?? []) w();
    this.waiters = undefined;
  }
}

/**
 * One request driven through the protocol. Events are handled one at a time, in order;
 * store results that come back synchronously (the in-memory store) are handled without
 * an async frame.
 */
class RequestRun {
  private state: RequestState;
  private readonly queue: HostEvent[] = [];
  private draining = false;
  private polls = 0;
  private answer!: (reply: WorkerReply) => void;
  readonly answered: Promise<WorkerReply>;

  constructor(
    private readonly host: Host,
    private readonly def: WorkerDefinition,
    private readonly setup: RequestSetup,
  ) {
    this.answered = new Promise<WorkerReply>((r) => (this.answer = r));
    const first = startRequest(setup, host.clock.now());
    this.state = first.state;
    this.draining = true;
    for (const cmd of first.commands) this.perform(cmd);
    this.pump();
    this.draining = false;
  }

  send(ev: HostEvent): void {
    this.queue.push(ev);
    if (this.draining) return;
    this.draining = true;
    this.pump();
    this.draining = false;
  }

  private pump(): void {
    try {
      while (this.queue.length > 0) {
        const t = stepRequest(this.setup, this.state, this.queue.shift() as HostEvent);
        this.state = t.state;
        for (const cmd of t.commands) this.perform(cmd);
      }
    } catch (error) {
      const { req } = this.setup;
      this.host.logger.error({ err: error, sagaId: req.sagaId, stepId: req.stepId, worker: req.worker, key: req.key }, 'worker host failed to handle a request');
      this.queue.length = 0;
      this.state = { phase: 'done' };
      this.answer(replies.outcomeUnknown(req, 'the worker host failed'));
    }
  }

  /** Whether a record's claim runs somewhere: here (we know), or elsewhere (its lease has not passed). */
  private live(rec: KeyRecord | undefined, now: number): boolean {
    if (rec === undefined || !isBusy(rec.state) || rec.owner === undefined) return false;
    if (rec.owner.startsWith(this.host.claimPrefix)) return this.host.running.has(rec.owner) || this.host.claiming.has(rec.owner);
    return (rec.leaseUntil ?? 0) > now;
  }

  private readEvent(v: VersionedKeyRecord): HostEvent {
    const now = this.host.clock.now();
    return { type: 'READ', record: v.record, revision: v.revision, live: this.live(v.record, now), now };
  }

  private writeEvent(rev: number | undefined, record: KeyRecord): HostEvent {
    const owner = record.owner;
    if (owner !== undefined) {
      if (rev === undefined) this.host.claiming.delete(owner); // a claim that did not land is nobody's
      else {
        const r = this.host.running.get(owner);
        if (r !== undefined && record.leaseUntil !== undefined) r.leaseUntil = record.leaseUntil;
      }
    }
    const now = this.host.clock.now();
    return rev === undefined ? { type: 'CONFLICT', now } : { type: 'WRITTEN', revision: rev, now };
  }

  private storeFailed(error: unknown, record?: KeyRecord): void {
    if (record?.owner !== undefined) this.host.claiming.delete(record.owner);
    const { req } = this.setup;
    const info = toErrorInfo(error);
    this.host.logger.error({ err: info, sagaId: req.sagaId, stepId: req.stepId, worker: req.worker, key: req.key }, 'dedup store failed');
    // The protocol reads only the message (a store failure is answered TRANSPORT_ERROR or OUTCOME_UNKNOWN whatever its code).
    this.send({ type: 'STORE_FAILED', error: info, now: this.host.clock.now() });
  }

  /**
   * Calls the dedup store; its answer becomes an event. A synchronous answer (the
   * in-memory store) is queued for the pump in progress; an asynchronous one is sent.
   */
  private callStore<T>(call: () => T | Promise<T>, event: (value: T) => HostEvent, writing?: KeyRecord): void {
    let got: T | Promise<T>;
    try {
      got = call();
    } catch (error) {
      got = Promise.reject(error);
    }
    if (isThenable(got)) (got as Promise<T>).then((v) => this.send(event(v)), (error: unknown) => this.storeFailed(error, writing));
    else this.queue.push(event(got as T));
  }

  private perform(cmd: HostCommand): void {
    const { host } = this;
    const { req } = this.setup;
    switch (cmd.type) {
      case 'read':
        this.callStore(() => host.dedup.read(req.worker, req.key), (v) => this.readEvent(v));
        return;
      case 'write': {
        const owner = cmd.record.owner;
        if (owner !== undefined && isBusy(cmd.record.state) && !host.running.has(owner)) host.claiming.add(owner);
        this.callStore(() => host.dedup.write(req.worker, req.key, cmd.record, cmd.revision), (rev) => this.writeEvent(rev, cmd.record), cmd.record);
        return;
      }
      case 'wait': {
        const local = cmd.owner !== undefined ? host.running.get(cmd.owner) : undefined;
        const now = host.clock.now();
        const ms = keyPollMs(cmd.until - now, this.polls++, local !== undefined);
        let woken = false;
        const wake = () => {
          if (woken) return;
          woken = true;
          host.clock.clearTimeout(timer);
          this.send({ type: 'WAITED', now: host.clock.now() });
        };
        const timer = host.clock.setTimeout(wake, ms);
        void local?.ended().then(wake);
        return;
      }
      case 'run':
        this.run(cmd);
        return;
      case 'abort':
        host.logger.warn({ sagaId: req.sagaId, stepId: req.stepId, worker: req.worker, key: req.key }, 'lost the claim on a key while its user code ran: another host took it over');
        host.running.get(cmd.owner)?.abort(new SagaError('IN_PROGRESS', `the claim on key ${req.key} was taken over by another host`));
        return;
      case 'release': {
        const r = host.running.get(cmd.owner);
        if (r === undefined) return;
        host.running.delete(cmd.owner);
        r.end();
        return;
      }
      case 'reply':
        this.answer(cmd.reply);
        return;
    }
  }

  /** Runs user code under a written claim; its end comes back as RAN. */
  private run(cmd: Extract<HostCommand, { type: 'run' }>): void {
    const { host, def } = this;
    const { req } = this.setup;
    const claim: Claim = cmd.claim;
    const running = new Running(this, claim.record.leaseUntil ?? host.clock.now());
    host.running.set(claim.owner, running);
    host.claiming.delete(claim.owner);
    host.armRenewal();
    const ctx = new RunContext(req, host.logger, running, claim.revision);
    let work: unknown;
    try {
      work = cmd.op === 'do' ? def.do(cmd.input, ctx) : def.compensate(cmd.input, cmd.result, ctx);
    } catch (error) {
      work = Promise.reject(error);
    }
    Promise.resolve(work).then(
      (value) => this.ran(cmd.op === 'compensate' ? { event: { type: 'COMPENSATION.OK' } } : this.doneWith(value)),
      (error: unknown) => {
        const info = workerErrorInfo(error, `the ${cmd.op} of worker '${req.worker}'`);
        if (cmd.op === 'do') return this.ran({ event: { type: 'DO.FAILED', error: info } });
        host.logger.warn({ sagaId: req.sagaId, stepId: req.stepId, worker: req.worker, key: req.key, err: info }, 'compensation failed');
        this.ran({ event: { type: 'COMPENSATION.FAILED', error: { ...info, code: 'COMPENSATION_FAILED', retryable: true } } });
      },
    );
  }

  private doneWith(value: unknown): RunOutcome {
    const notJson = findNotJson(value, 'result');
    if (notJson === undefined) return { event: { type: 'DO.OK', result: value } };
    // The effect was applied but its result cannot be stored or returned: keep the key undoable, report it in doubt.
    const { req } = this.setup;
    const unsendable: ErrorInfo = {
      code: 'RESULT_NOT_SERIALIZABLE',
      message: `the do of worker '${req.worker}' for step '${req.stepId}' of saga '${req.sagaId}' returned a result that cannot be stored or returned: ${describeNotJson(notJson)}. Its effect applied: the step is in doubt and is compensated`,
      retryable: false,
    };
    this.host.logger.warn({ sagaId: req.sagaId, stepId: req.stepId, worker: req.worker, path: notJson.path, err: unsendable }, 'worker returned a result that is not plain JSON');
    return { event: { type: 'DO.OK', result: undefined }, unsendable };
  }

  private ran(outcome: RunOutcome): void {
    this.send({ type: 'RAN', outcome, now: this.host.clock.now() });
  }
}

/**
 * The context user code gets. A class, so that every context shares one shape and its
 * accessors live on the prototype: an object literal with getters costs each instance a
 * hidden class of its own.
 */
class RunContext implements WorkerContext {
  readonly sagaId: string;
  readonly stepId: string;
  readonly worker: string;
  readonly idempotencyKey: string;
  readonly attempt: number;
  readonly deadline: number;
  readonly fencingToken: number;
  readonly traceparent: string | undefined;
  readonly #parent: Logger;
  readonly #running: Running;
  #child: Logger | undefined = undefined;
  constructor(req: WorkerRequest, parent: Logger, running: Running, fencingToken: number) {
    this.#parent = parent;
    this.#running = running;
    this.fencingToken = fencingToken;
    this.sagaId = req.sagaId;
    this.stepId = req.stepId;
    this.worker = req.worker;
    this.idempotencyKey = req.key;
    this.attempt = req.attempt;
    this.deadline = req.deadline;
    this.traceparent = req.traceparent;
  }
  get signal(): AbortSignal {
    return this.#running.signal;
  }
  get logger(): Logger {
    return (this.#child ??= this.#parent.child({ sagaId: this.sagaId, stepId: this.stepId, worker: this.worker }));
  }
}

/** Creates a worker host for these workers; `serve(transport)` puts it to work. `runtime.host()` and `serveWorkers()` use it. */
export function createWorkerHost(workers: readonly WorkerDefinition[], options: WorkerHostOptions = {}): WorkerHost {
  const byName = new Map<string, WorkerDefinition>();
  for (const [i, w] of workers.entries()) {
    if (w === null || typeof w !== 'object' || w.kind !== 'worker') {
      throw new SagaDefinitionError(`a worker host serves definitions made with defineWorker(...); workers[${i}] is ${w === null ? 'null' : typeof w === 'object' ? 'an object without kind: "worker"' : typeof w}`);
    }
    if (byName.has(w.name)) throw new SagaError('WORKER_ALREADY_HOSTED', `worker '${w.name}' is given twice`);
    byName.set(w.name, w);
  }
  const clock = options.clock ?? systemClock;
  const leaseMs = options.leaseMs ?? DEFAULT_LEASE_MS;
  if (typeof leaseMs !== 'number' || !Number.isSafeInteger(leaseMs) || leaseMs < 30) throw new InvalidOptionError('leaseMs', `must be a whole number of milliseconds >= 30, got ${String(leaseMs)}`);
  const hostId = randomBytes(6).toString('base64url');
  let claims = 0;

  // Lease renewal: one timer for the whole host, armed while claims run.
  let renewTimer: unknown;
  const renewEvery = Math.max(10, Math.floor(leaseMs / 3));
  const renewDue = () => {
    renewTimer = undefined;
    const now = clock.now();
    for (const r of host.running.values()) if (r.leaseUntil - now <= leaseMs - renewEvery) r.request.send({ type: 'RENEW', now });
    host.armRenewal();
  };
  const host: Host = {
    dedup: options.dedup ?? memoryDedupStore({ clock }),
    clock,
    logger: options.logger ?? pino({ level: 'silent' }),
    claimPrefix: `${hostId}/`,
    running: new Map(),
    claiming: new Set(),
    armRenewal() {
      if (renewTimer !== undefined || host.running.size === 0) return;
      renewTimer = clock.setTimeout(renewDue, renewEvery);
      // Renewal keeps no process alive on its own: a process whose work is done may exit.
      (renewTimer as { unref?: () => void }).unref?.();
    },
  };

  const handle = (raw: unknown): Promise<WorkerReply> => {
    let req: WorkerRequest;
    try {
      req = parseRequest(raw);
    } catch (error) {
      const info = toErrorInfo(error);
      host.logger.warn({ err: info }, 'malformed request');
      return Promise.resolve({ ok: false, error: info });
    }
    const def = byName.get(req.worker);
    if (def === undefined) {
      host.logger.warn({ worker: req.worker, sagaId: req.sagaId }, 'request for a worker this host does not serve');
      return Promise.resolve({ ok: false, error: { code: 'UNKNOWN_WORKER', message: `this host does not serve worker '${req.worker}'`, retryable: false } });
    }
    // JSON off the wire always passes; a request handed over in process may hold anything.
    const notJson = findNotJson(req.input, 'input');
    if (notJson !== undefined) {
      const message = `the ${req.op} of worker '${req.worker}' for key ${req.key} carries an input that is not plain JSON: ${describeNotJson(notJson)}`;
      host.logger.warn({ worker: req.worker, sagaId: req.sagaId, key: req.key }, message);
      return Promise.resolve({ ok: false, error: { code: 'PROTOCOL_ERROR', message, retryable: false } });
    }
    return new RequestRun(host, def, { req, inputHash: fingerprint(req.input), owner: `${host.claimPrefix}${++claims}`, leaseMs }).answered;
  };

  return {
    workers: [...byName.keys()],
    id: hostId,
    handle,
    async serve(transport) {
      const served: Served[] = [];
      try {
        for (const name of byName.keys()) served.push(await transport.serve(name, handle));
      } catch (error) {
        await Promise.allSettled(served.map((s) => s.stop()));
        throw error;
      }
      return { stop: async () => void (await Promise.all(served.map((s) => s.stop()))) };
    },
  };
}
