/**
 * The transport-agnostic worker host: serves workers over any Transport and performs,
 * for each request, the commands of the pure host protocol (machines/host-protocol.ts):
 * reads and compare-and-set writes of the key's record in the dedup store, user code run
 * only under a written claim, waits for other claims, lease renewals, and the answer.
 * Several hosts may serve one worker over one shared dedup store.
 */
import { randomBytes } from 'node:crypto';
import pino from 'pino';
import { SagaError, toErrorInfo } from '../errors.ts';
import type { ErrorInfo } from '../errors.ts';
import { isBusy } from '../machines/key-machine.ts';
import { replies, startRequest, stepRequest } from '../machines/host-protocol.ts';
import type { Claim, HostCommand, HostEvent, RequestSetup, RequestState, RunOutcome } from '../machines/host-protocol.ts';
import { assertSerializable, fingerprint } from '../machines/serializable.ts';
import { memoryDedupStore } from '../store/memory.ts';
import { parseRequest } from '../transport/protocol.ts';
import { systemClock } from '../clock.ts';
import { InvalidOptionError } from '../errors.ts';
import type { Clock, DedupStore, KeyRecord, Logger, Served, Transport, VersionedKeyRecord, WorkerContext, WorkerDefinition, WorkerReply, WorkerRequest } from '../types.ts';

/** Default time a claim holds without renewal: another host takes a key over this long after its holder died. */
export const DEFAULT_LEASE_MS = 10_000;

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

/** A claim whose user code runs in this process. */
interface Running {
  readonly driver: Driver;
  readonly abort: AbortController;
  leaseUntil: number;
  /** Resolves when the claim ends (its outcome written, or it was lost). */
  readonly ended: Promise<void>;
  readonly end: () => void;
}

interface Driver {
  send(ev: HostEvent): void;
}

const POLL_MIN_MS = 5;
const POLL_MAX_MS = 250;

export function createWorkerHost(workers: readonly WorkerDefinition[], options: WorkerHostOptions = {}): WorkerHost {
  const byName = new Map<string, WorkerDefinition>();
  for (const w of workers) {
    if (w === null || typeof w !== 'object' || w.kind !== 'worker') {
      throw new SagaError('DEFINITION_INVALID', 'a worker host serves definitions made with defineWorker(...)');
    }
    if (byName.has(w.name)) throw new SagaError('WORKER_ALREADY_HOSTED', `worker '${w.name}' is given twice`);
    byName.set(w.name, w);
  }
  const clock = options.clock ?? systemClock;
  const dedup = options.dedup ?? memoryDedupStore({ clock });
  const logger = options.logger ?? pino({ level: 'silent' });
  const leaseMs = options.leaseMs ?? DEFAULT_LEASE_MS;
  if (typeof leaseMs !== 'number' || !Number.isSafeInteger(leaseMs) || leaseMs < 30) throw new InvalidOptionError('leaseMs', `must be a whole number of milliseconds >= 30, got ${String(leaseMs)}`);
  const hostId = randomBytes(6).toString('base64url');
  const claimPrefix = `${hostId}/`;
  let claims = 0;
  /** Claims whose user code runs here, by owner. */
  const running = new Map<string, Running>();
  /**
   * Claims of this host whose write is on its way: the store may already show them to
   * another request of this host before their writer hears back. They are live.
   */
  const claiming = new Set<string>();

  // ---------------------------------------------------------------------------
  // Lease renewal: one timer for the whole host, armed while claims run.

  let renewTimer: unknown;
  const renewEvery = Math.max(10, Math.floor(leaseMs / 3));
  const renewDue = () => {
    renewTimer = undefined;
    const now = clock.now();
    for (const r of running.values()) if (r.leaseUntil - now <= leaseMs - renewEvery) r.driver.send({ type: 'RENEW', now });
    armRenewal();
  };
  const armRenewal = () => {
    if (renewTimer === undefined && running.size > 0) renewTimer = clock.setTimeout(renewDue, renewEvery);
  };

  // ---------------------------------------------------------------------------

  const contextOf = (req: WorkerRequest, signal: AbortSignal, fencingToken: number): WorkerContext => {
    let child: Logger | undefined;
    return {
      sagaId: req.sagaId,
      stepId: req.stepId,
      worker: req.worker,
      idempotencyKey: req.key,
      attempt: req.attempt,
      deadline: req.deadline,
      signal,
      fencingToken,
      get logger() {
        return (child ??= logger.child({ sagaId: req.sagaId, stepId: req.stepId, worker: req.worker }));
      },
    };
  };

  /** Whether a record's claim runs somewhere: here (we know), or elsewhere (its lease has not passed). */
  const isLive = (rec: KeyRecord | undefined, now: number): boolean => {
    if (rec === undefined || !isBusy(rec.state) || rec.owner === undefined) return false;
    if (rec.owner.startsWith(claimPrefix)) return running.has(rec.owner) || claiming.has(rec.owner);
    return (rec.leaseUntil ?? 0) > now;
  };

  const storeError = (error: unknown): ErrorInfo => {
    const info = toErrorInfo(error);
    return { ...info, code: info.code === 'WORKER_ERROR' ? 'TRANSPORT_ERROR' : info.code };
  };

  /** Runs user code under a written claim; its end comes back as RAN. */
  const runUserCode = (def: WorkerDefinition, setup: RequestSetup, driver: Driver, cmd: Extract<HostCommand, { type: 'run' }>) => {
    const { req } = setup;
    const claim: Claim = cmd.claim;
    const abort = new AbortController();
    let end!: () => void;
    const ended = new Promise<void>((r) => (end = r));
    running.set(claim.owner, { driver, abort, leaseUntil: claim.record.leaseUntil ?? clock.now() + leaseMs, ended, end });
    claiming.delete(claim.owner);
    armRenewal();
    const ctx = contextOf(req, abort.signal, claim.revision);
    let work: unknown;
    try {
      work = cmd.op === 'do' ? def.do(cmd.input, ctx) : def.compensate(cmd.input, cmd.result, ctx);
    } catch (error) {
      work = Promise.reject(error);
    }
    const ran = (outcome: RunOutcome) => driver.send({ type: 'RAN', outcome, now: clock.now() });
    Promise.resolve(work).then(
      (value) => {
        if (cmd.op === 'compensate') return ran({ event: { type: 'COMPENSATION.OK' } });
        try {
          assertSerializable(value, `result of worker '${req.worker}'`);
          ran({ event: { type: 'DO.OK', result: value } });
        } catch (error) {
          // The effect was applied but its result cannot travel: keep the key undoable, report it in doubt.
          const unsendable: ErrorInfo = { code: 'RESULT_NOT_SERIALIZABLE', message: toErrorInfo(error).message, retryable: false };
          logger.warn({ sagaId: req.sagaId, stepId: req.stepId, worker: req.worker, err: unsendable }, 'worker returned a result that cannot be serialized');
          ran({ event: { type: 'DO.OK', result: undefined }, unsendable });
        }
      },
      (error: unknown) => {
        const info = toErrorInfo(error);
        if (cmd.op === 'do') return ran({ event: { type: 'DO.FAILED', error: info } });
        logger.warn({ sagaId: req.sagaId, stepId: req.stepId, worker: req.worker, key: req.key, err: info }, 'compensation failed');
        ran({ event: { type: 'COMPENSATION.FAILED', error: { ...info, code: 'COMPENSATION_FAILED', retryable: true } } });
      },
    );
  };

  const release = (owner: string) => {
    const r = running.get(owner);
    if (r === undefined) return;
    running.delete(owner);
    r.end();
  };

  /** Waits for a claim to end: the local one's end, or a poll of the store. */
  const waitFor = (cmd: Extract<HostCommand, { type: 'wait' }>, polls: number): Promise<void> => {
    const local = cmd.owner !== undefined ? running.get(cmd.owner) : undefined;
    const now = clock.now();
    const poll = Math.min(POLL_MAX_MS, POLL_MIN_MS * 2 ** Math.min(polls, 6));
    const ms = local !== undefined ? Math.max(1, cmd.until - now) : Math.max(1, Math.min(cmd.until - now, poll));
    return new Promise<void>((resolve) => {
      const timer = clock.setTimeout(resolve, ms);
      void local?.ended.then(() => {
        clock.clearTimeout(timer);
        resolve();
      });
    });
  };

  /**
   * Drives one request through the protocol. Events are handled one at a time, in
   * order; store results that come back synchronously (the in-memory store) are
   * handled without an async frame.
   */
  const drive = (def: WorkerDefinition, setup: RequestSetup): Promise<WorkerReply> => {
    const { req } = setup;
    let state: RequestState;
    const queue: HostEvent[] = [];
    let draining = false;
    let polls = 0;
    let answer!: (reply: WorkerReply) => void;
    const answered = new Promise<WorkerReply>((r) => (answer = r));

    const pump = () => {
      try {
        while (queue.length > 0) {
          const t = stepRequest(setup, state, queue.shift() as HostEvent);
          state = t.state;
          for (const cmd of t.commands) perform(cmd);
        }
      } catch (error) {
        logger.error({ err: error, sagaId: req.sagaId, stepId: req.stepId, worker: req.worker, key: req.key }, 'worker host failed to handle a request');
        queue.length = 0;
        state = { phase: 'done' };
        answer(replies.outcomeUnknown(req, 'the worker host failed'));
      }
    };
    const deliver = (ev: HostEvent) => {
      queue.push(ev);
      if (draining) return;
      draining = true;
      pump();
      draining = false;
    };
    const driver: Driver = { send: deliver };

    const readEvent = (v: VersionedKeyRecord): HostEvent => {
      const now = clock.now();
      return { type: 'READ', record: v.record, revision: v.revision, live: isLive(v.record, now), now };
    };
    const writeEvent = (rev: number | undefined, record: KeyRecord): HostEvent => {
      const r = rev !== undefined && record.owner !== undefined ? running.get(record.owner) : undefined;
      if (r !== undefined && record.leaseUntil !== undefined) r.leaseUntil = record.leaseUntil;
      // A claim that did not land is nobody's.
      if (rev === undefined && record.owner !== undefined) claiming.delete(record.owner);
      return rev === undefined ? { type: 'CONFLICT', now: clock.now() } : { type: 'WRITTEN', revision: rev, now: clock.now() };
    };
    const onStoreError = (error: unknown, record?: KeyRecord) => {
      if (record?.owner !== undefined) claiming.delete(record.owner);
      logger.error({ err: toErrorInfo(error), sagaId: req.sagaId, stepId: req.stepId, worker: req.worker, key: req.key }, 'dedup store failed');
      deliver({ type: 'STORE_FAILED', error: storeError(error), now: clock.now() });
    };

    const perform = (cmd: HostCommand): void => {
      switch (cmd.type) {
        case 'read': {
          let got: VersionedKeyRecord | Promise<VersionedKeyRecord>;
          try {
            got = dedup.read(req.worker, req.key);
          } catch (error) {
            got = Promise.reject(error);
          }
          if (isThenable(got)) got.then((v) => deliver(readEvent(v)), onStoreError);
          else queue.push(readEvent(got));
          return;
        }
        case 'write': {
          const owner = cmd.record.owner;
          if (owner !== undefined && isBusy(cmd.record.state) && !running.has(owner)) claiming.add(owner);
          let put: number | undefined | Promise<number | undefined>;
          try {
            put = dedup.write(req.worker, req.key, cmd.record, cmd.revision);
          } catch (error) {
            put = Promise.reject(error);
          }
          if (isThenable(put)) put.then((rev) => deliver(writeEvent(rev, cmd.record)), (error: unknown) => onStoreError(error, cmd.record));
          else queue.push(writeEvent(put, cmd.record));
          return;
        }
        case 'wait':
          void waitFor(cmd, polls++).then(() => deliver({ type: 'WAITED', now: clock.now() }));
          return;
        case 'run':
          runUserCode(def, setup, driver, cmd);
          return;
        case 'abort':
          logger.warn({ sagaId: req.sagaId, stepId: req.stepId, worker: req.worker, key: req.key }, 'lost the claim on a key while its user code ran: another host took it over');
          running.get(cmd.owner)?.abort.abort(new SagaError('IN_PROGRESS', `the claim on key ${req.key} was taken over by another host`));
          return;
        case 'release':
          release(cmd.owner);
          return;
        case 'reply':
          answer(cmd.reply);
          return;
      }
    };

    const first = startRequest();
    state = first.state;
    draining = true;
    for (const cmd of first.commands) perform(cmd);
    pump();
    draining = false;
    return answered;
  };

  const handle = (raw: unknown): Promise<WorkerReply> => {
    let req: WorkerRequest;
    try {
      req = parseRequest(raw);
    } catch (error) {
      const info = toErrorInfo(error);
      logger.warn({ err: info }, 'malformed request');
      return Promise.resolve({ ok: false, error: info });
    }
    const def = byName.get(req.worker);
    if (def === undefined) {
      logger.warn({ worker: req.worker, sagaId: req.sagaId }, 'request for a worker this host does not serve');
      return Promise.resolve({ ok: false, error: { code: 'UNKNOWN_WORKER', message: `this host does not serve worker '${req.worker}'`, retryable: false } });
    }
    let inputHash: string;
    try {
      inputHash = fingerprint(req.input);
    } catch (error) {
      return Promise.resolve({ ok: false, error: { ...toErrorInfo(error), code: 'PROTOCOL_ERROR', retryable: false } });
    }
    return drive(def, { req, inputHash, owner: `${claimPrefix}${++claims}`, leaseMs });
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
