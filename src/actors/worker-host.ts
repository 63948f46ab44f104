/**
 * The transport-agnostic worker host: serves workers over any Transport, applies the
 * per-key machine (key-machine.ts) to its dedup store, and runs user code. It
 * serializes the bookkeeping of each idempotency key, so duplicates, a compensate
 * that overtakes its do, and a do that arrives after its compensate are all answered
 * from the record, and a late request never leaves an effect.
 */
import pino from 'pino';
import { SagaError, toErrorInfo } from '../errors.ts';
import type { ErrorInfo } from '../errors.ts';
import { newKeyRecord, stepKey } from '../machines/key-machine.ts';
import type { KeyAction, KeyEvent } from '../machines/key-machine.ts';
import { assertSerializable, fingerprint } from '../machines/serializable.ts';
import { memoryDedupStore } from '../store/memory.ts';
import { parseRequest } from '../transport/protocol.ts';
import { systemClock } from '../clock.ts';
import type { Clock, DedupStore, KeyRecord, Logger, Served, Transport, WorkerContext, WorkerDefinition, WorkerReply, WorkerRequest } from '../types.ts';

export interface WorkerHostOptions {
  /** Where key records live. Default: in memory, for 24 hours. */
  dedup?: DedupStore;
  clock?: Clock;
  /** Default: silent. */
  logger?: Logger;
}

export interface WorkerHost {
  /** The names of the workers this host serves. */
  readonly workers: readonly string[];
  /** Answers one request (already decoded from the wire). Never throws. */
  handle(request: unknown): Promise<WorkerReply>;
  /** Registers every worker on a transport. */
  serve(transport: Transport): Promise<Served>;
}

const compensated = (key: string): WorkerReply => ({
  ok: false,
  error: { code: 'COMPENSATED', message: `key ${key} was already compensated: this do must not apply`, retryable: false },
});

function fail(error: ErrorInfo): WorkerReply {
  return { ok: false, error };
}

/** The operation may or may not have applied (the host could not record or report it): the step is in doubt. */
const outcomeUnknown = (req: WorkerRequest): WorkerReply =>
  fail({ code: 'OUTCOME_UNKNOWN', message: `the outcome of ${req.op} for key ${req.key} could not be recorded; it may have applied`, retryable: true });

/** A promise chain per key: the bookkeeping of one key never interleaves. */
class KeyedMutex {
  private readonly tails = new Map<string, Promise<unknown>>();
  idle(key: string): boolean {
    return !this.tails.has(key);
  }
  run<T>(key: string, fn: () => Promise<T> | T): Promise<T> {
    const prev = this.tails.get(key) ?? Promise.resolve();
    const next = prev.then(fn, fn);
    const tail = next.then(
      () => undefined,
      () => undefined,
    );
    this.tails.set(key, tail);
    void tail.then(() => {
      if (this.tails.get(key) === tail) this.tails.delete(key);
    });
    return next;
  }
}

type Decision = { reply: WorkerReply } | { wait: Promise<WorkerReply>; again: boolean };

function isThenable<T>(v: T | PromiseLike<T>): v is PromiseLike<T> {
  return v !== null && typeof v === 'object' && typeof (v as PromiseLike<T>).then === 'function';
}

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
  const mutex = new KeyedMutex();
  /** The do or compensate of a key running in this process, resolving to its reply. */
  const running = new Map<string, Promise<WorkerReply>>();

  const contextOf = (req: WorkerRequest): WorkerContext => {
    let child: Logger | undefined;
    return {
      sagaId: req.sagaId,
      stepId: req.stepId,
      worker: req.worker,
      idempotencyKey: req.key,
      attempt: req.attempt,
      deadline: req.deadline,
      get logger() {
        return (child ??= logger.child({ sagaId: req.sagaId, stepId: req.stepId, worker: req.worker }));
      },
    };
  };

  let storeIsAsync = false;
  /**
   * Reads a key's record, lets `f` decide (and start what it starts), stores the new
   * record. Never interleaves with another transaction on the same key: a synchronous
   * store (the in-memory one) needs no lock, an asynchronous one goes through the mutex.
   */
  const transact = <T>(id: string, worker: string, key: string, f: (rec: KeyRecord | undefined) => { record?: KeyRecord; out: T }): T | Promise<T> => {
    if (!storeIsAsync && mutex.idle(id)) {
      const got = dedup.get(worker, key);
      if (!isThenable(got)) {
        const { record, out } = f(got);
        if (record === undefined) return out;
        const stored = dedup.set(worker, key, record);
        return isThenable(stored) ? stored.then(() => out) : out;
      }
      storeIsAsync = true;
    }
    return mutex.run(id, async () => {
      const { record, out } = f(await dedup.get(worker, key));
      if (record !== undefined) await dedup.set(worker, key, record);
      return out;
    });
  };

  /** Applies a completion event (do or compensate finished) to a key's record. */
  const complete = (id: string, req: WorkerRequest, event: KeyEvent, after?: (r: { record: KeyRecord; actions: KeyAction[] }) => void) =>
    transact(id, req.worker, req.key, (rec) => {
      const next = stepKey(rec ?? newKeyRecord('', clock.now()), event, clock.now());
      after?.(next);
      return { record: next.record, out: undefined };
    });

  /**
   * Stores an operation's outcome. False when the dedup store failed: the operation ran
   * but is not recorded, so its answer must be OUTCOME_UNKNOWN (in doubt), never a failure.
   */
  const recorded = async (req: WorkerRequest, store: () => unknown): Promise<boolean> => {
    try {
      await store();
      return true;
    } catch (error) {
      logger.error({ err: toErrorInfo(error), sagaId: req.sagaId, stepId: req.stepId, worker: req.worker, key: req.key }, 'could not record an outcome');
      return false;
    }
  };

  const runCompensate = (id: string, def: WorkerDefinition, req: WorkerRequest, result: unknown): Promise<WorkerReply> => {
    const p = (async (): Promise<WorkerReply> => {
      let outcome: KeyEvent;
      try {
        await def.compensate(req.input, result, contextOf(req));
        outcome = { type: 'COMPENSATION.OK' };
      } catch (error) {
        const info = toErrorInfo(error);
        logger.warn({ sagaId: req.sagaId, stepId: req.stepId, worker: req.worker, key: req.key, err: info }, 'compensation failed');
        outcome = { type: 'COMPENSATION.FAILED', error: { ...info, code: 'COMPENSATION_FAILED', retryable: true } };
      }
      if (!(await recorded(req, () => complete(id, req, outcome)))) return outcomeUnknown(req);
      return outcome.type === 'COMPENSATION.OK' ? { ok: true } : fail(outcome.error);
    })();
    track(id, p);
    return p;
  };

  const runDo = (id: string, def: WorkerDefinition, req: WorkerRequest): Promise<WorkerReply> => {
    const p = (async (): Promise<WorkerReply> => {
      let outcome: KeyEvent;
      let unsendable: ErrorInfo | undefined;
      try {
        const result = await def.do(req.input, contextOf(req));
        try {
          assertSerializable(result, `result of worker '${req.worker}'`);
          outcome = { type: 'DO.OK', result };
        } catch (error) {
          // The effect was applied but its result cannot travel: keep the key undoable, report it in doubt.
          unsendable = { code: 'RESULT_NOT_SERIALIZABLE', message: toErrorInfo(error).message, retryable: false };
          logger.warn({ sagaId: req.sagaId, stepId: req.stepId, worker: req.worker, err: unsendable }, 'worker returned a result that cannot be serialized');
          outcome = { type: 'DO.OK', result: undefined };
        }
      } catch (error) {
        outcome = { type: 'DO.FAILED', error: toErrorInfo(error) };
      }
      let uncertain = false;
      const stored = await recorded(req, () =>
        complete(id, req, outcome, (r) => {
          uncertain = r.record.state === 'uncertain' || (r.record.blind === true && outcome.type === 'DO.FAILED');
          // A compensate arrived while do ran: undo at once, before anyone sees the key idle.
          if (r.actions.includes('runCompensate')) void runCompensate(id, def, req, r.record.result);
        }),
      );
      // A failure of a re-run proves nothing: the interrupted first run may have applied.
      if (!stored || uncertain) return outcomeUnknown(req);
      if (unsendable !== undefined) return fail(unsendable);
      return outcome.type === 'DO.OK' ? { ok: true, result: outcome.result } : fail(outcome.error);
    })();
    track(id, p);
    return p;
  };

  const track = (id: string, p: Promise<WorkerReply>) => {
    running.set(id, p);
    const forget = () => {
      if (running.get(id) === p) running.delete(id);
    };
    // Waiters see a rejection (a dedup store that failed); this handler only keeps it from being unhandled.
    void p.then(forget, forget);
  };

  /** One pass over a key: take the transition, then answer, or start work, or say what to wait for. */
  const decide = (id: string, def: WorkerDefinition, req: WorkerRequest, inputHash: string, stored: KeyRecord | undefined): { record?: KeyRecord; out: Decision } => {
    let current = stored ?? newKeyRecord(inputHash, clock.now());
    if (current.state !== 'new' && current.inputHash !== '' && req.op === 'do' && current.inputHash !== inputHash) {
      return {
        out: { reply: fail({ code: 'KEY_CONFLICT', message: `idempotency key ${req.key} was first used with a different input`, retryable: false }) },
      };
    }
    if ((current.state === 'doing' || current.state === 'compensating') && !running.has(id)) {
      if (current.leaseUntil !== undefined && clock.now() < current.leaseUntil) {
        // Another host (sharing this dedup store) is running it: neither wait nor run it twice.
        return {
          out: {
            reply: fail({ code: 'IN_PROGRESS', message: `key ${req.key} is being worked on by another host until ${current.leaseUntil}`, retryable: true }),
          },
        };
      }
      // Orphaned by a host that stopped mid-operation: run it again (user code gets the same key).
      // An interrupted do may or may not have applied; an interrupted undo may or may not have finished.
      const state = current.state === 'doing' ? 'new' : current.blind === true ? 'undoPending' : 'done';
      const { attempt: _forgotten, ...rest } = current;
      current = state === 'new' ? { ...rest, state, compensateRequested: false, interrupted: true } : { ...current, state, compensateRequested: false };
    }
    if (current.state === 'new') current = { ...current, inputHash };
    const stepped = stepKey(current, req.op === 'do' ? { type: 'DO', attempt: req.attempt } : { type: 'COMPENSATE' }, clock.now());
    const { actions } = stepped;
    // Whoever starts an operation holds the key until the request's deadline.
    const starts = actions.includes('runDo') || actions.includes('runCompensate');
    const record: KeyRecord = starts ? { ...stepped.record, leaseUntil: Math.max(req.deadline, clock.now()) } : stepped.record;
    const out = ((): Decision => {
      for (const action of actions) {
        switch (action) {
          case 'runDo':
            return { wait: runDo(id, def, req), again: false };
          case 'runCompensate':
            return { wait: runCompensate(id, def, req, record.result ?? req.result), again: false };
          case 'awaitDo':
            return { wait: running.get(id) as Promise<WorkerReply>, again: req.op === 'compensate' };
          case 'awaitCompensation':
            return { wait: running.get(id) as Promise<WorkerReply>, again: false };
          case 'replyStored':
            return {
              reply: record.state === 'done' ? { ok: true, result: record.result } : record.state === 'uncertain' ? outcomeUnknown(req) : fail(record.error as ErrorInfo),
            };
          case 'refuse':
            return { reply: compensated(req.key) };
          case 'ackCompensated':
            return { reply: { ok: true } };
        }
      }
      return { reply: fail({ code: 'PROTOCOL_ERROR', message: `key ${req.key} in state ${record.state} cannot take ${req.op}`, retryable: false }) };
    })();
    return { record, out };
  };

  const hostFailed = (req: WorkerRequest, error: unknown): WorkerReply => {
    logger.error({ err: toErrorInfo(error), sagaId: req.sagaId, stepId: req.stepId, worker: req.worker }, 'worker host failed to handle a request');
    return outcomeUnknown(req);
  };

  /** The general path: an asynchronous store, or a compensate that waits for its do and then decides again. */
  const settle = async (req: WorkerRequest, def: WorkerDefinition, id: string, inputHash: string, first: Decision | PromiseLike<Decision>): Promise<WorkerReply> => {
    try {
      let pending = first;
      for (let rounds = 0; rounds < 4; rounds++) {
        const decision = isThenable(pending) ? await pending : pending;
        if ('reply' in decision) return decision.reply;
        const reply = await decision.wait;
        if (!decision.again) return reply;
        pending = transact(id, req.worker, req.key, (stored) => decide(id, def, req, inputHash, stored));
      }
      return fail({ code: 'TRANSPORT_ERROR', message: `key ${req.key} kept changing while this request waited; ask again`, retryable: true });
    } catch (error) {
      return hostFailed(req, error);
    }
  };

  const handle = (raw: unknown): Promise<WorkerReply> => {
    let req: WorkerRequest;
    try {
      req = parseRequest(raw);
    } catch (error) {
      const info = toErrorInfo(error);
      logger.warn({ err: info }, 'malformed request');
      return Promise.resolve(fail(info));
    }
    const def = byName.get(req.worker);
    if (def === undefined) {
      logger.warn({ worker: req.worker, sagaId: req.sagaId }, 'request for a worker this host does not serve');
      return Promise.resolve(fail({ code: 'UNKNOWN_WORKER', message: `this host does not serve worker '${req.worker}'`, retryable: false }));
    }
    const id = `${req.worker}\u0000${req.key}`;
    let first: Decision | PromiseLike<Decision>;
    let inputHash: string;
    try {
      inputHash = fingerprint(req.input);
      first = transact(id, req.worker, req.key, (stored) => decide(id, def, req, inputHash, stored));
    } catch (error) {
      return Promise.resolve(hostFailed(req, error));
    }
    // The common case answers without an async frame of its own: the reply, or the operation's promise (which never rejects).
    if (!isThenable(first)) {
      if ('reply' in first) return Promise.resolve(first.reply);
      if (!first.again) return first.wait;
    }
    return settle(req, def, id, inputHash, first);
  };

  return {
    workers: [...byName.keys()],
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
