/**
 * The NATS transport: the Transport interface over NATS core request/reply.
 *
 * Request side (coordinators): one request per operation on
 * `<prefix>.worker.<worker>.do|compensate`, with the protocol headers, a timeout, and
 * the reply validated before anyone sees it. Serve side (worker hosts): one
 * queue-group subscription per worker on `<prefix>.worker.<worker>.*`, every inbound
 * message checked (wire.ts) before the handler runs, bounded concurrency with a
 * bounded wait queue, and a drain that finishes what it took.
 *
 * It uses the connection it is given and never closes it: one connection serves
 * everything in a process.
 */
import pino from 'pino';
import type { Msg, MsgHdrs, NatsConnection, Subscription } from '@nats-io/transport-node';
import { InvalidOptionError, SagaError, TransportError } from '../../errors.ts';
import type { ErrorInfo } from '../../errors.ts';
import { PROTOCOL_VERSION } from '../../types.ts';
import type { Logger, Served, Transport, WorkerHandler, WorkerReply, WorkerRequest } from '../../types.ts';
import { parseReply } from '../protocol.ts';
import { Limiter } from './limiter.ts';
import { perTurn } from './turn.ts';
import { RequestFailed, Requester } from './requester.ts';
import { byteLength, checkInbound, headerBytes, DEFAULT_MAX_PAYLOAD, DEFAULT_PREFIX, encodeReply, protocolHeaders, requestHeaders, validPrefix, workerSubject } from './wire.ts';

/** Default queue group of the serve side: `'saga-workers'`. */
export const DEFAULT_QUEUE = 'saga-workers';
/** Default requests the serve side runs at once: 64. */
export const DEFAULT_CONCURRENCY = 64;
/** Default requests the serve side lets wait for a slot before it answers `OVERLOADED`: 1024. */
export const DEFAULT_MAX_PENDING = 1024;
/** Default time `isServed` waits for a host's answer to its ping: 1000 ms. */
export const DEFAULT_PING_TIMEOUT_MS = 1_000;
/** Default time a positive `isServed` answer is trusted: 2000 ms. */
export const DEFAULT_SERVED_CACHE_MS = 2_000;

/** The options of `natsTransport`. The serve-side ones (`queue`, `concurrency`, `maxPending`) matter only to a transport that serves workers. */
export interface NatsTransportOptions {
  /** Subject prefix: requests go to `<prefix>.worker.<worker>.do|compensate`. Default `'saga'`. */
  prefix?: string;
  /**
   * Largest request or reply body in bytes, both ways. A larger request is refused
   * before it is sent (requester) or answered with `PAYLOAD_TOO_LARGE` (host).
   * Default 1 MiB, and never more than the server's `max_payload`.
   */
  maxPayload?: number;
  /** Queue group of the serve side: hosts in the same group share a worker's requests. Default `'saga-workers'`. */
  queue?: string;
  /** Requests the serve side runs at once, across all its workers. Default 64. */
  concurrency?: number;
  /**
   * Requests that may wait for a free slot. Beyond this a request is answered at once
   * with `OVERLOADED` (backpressure: nothing ran, sent again later), without running. Default 1024.
   */
  maxPending?: number;
  /** How long `isServed` waits for a host to answer its ping. Default 1000 ms. */
  pingTimeoutMs?: number;
  /** How long a positive `isServed` answer is trusted without asking again. Default 2000 ms. */
  servedCacheMs?: number;
  /** pino logger: a warn line for every rejected inbound message. Default: silent. */
  logger?: Logger;
}

/** A Transport over NATS, with a little more for worker hosts. */
export interface NatsTransport extends Transport {
  readonly prefix: string;
  readonly maxPayload: number;
  /** Requests running / waiting on the serve side right now. */
  readonly load: { readonly running: number; readonly pending: number };
  /** Stops every worker this transport serves: takes nothing new, finishes what it took. */
  drain(): Promise<void>;
}

const WORKER_NAME = /^[A-Za-z0-9_-]{1,64}$/;
const QUEUE_NAME = /^[A-Za-z0-9_.-]{1,128}$/;
/** Codes that mean "the message was wrong", logged at warn. */
const BAD_INPUT = new Set(['PROTOCOL_ERROR', 'UNKNOWN_WORKER', 'PAYLOAD_TOO_LARGE', 'KEY_CONFLICT']);

function posInt(options: NatsTransportOptions, field: keyof NatsTransportOptions, fallback: number, min = 1): number {
  const v = options[field] ?? fallback;
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min) throw new InvalidOptionError(field, `must be a whole number >= ${min}, got ${String(v)}`);
  return v;
}

function resolveOptions(nc: NatsConnection, options: NatsTransportOptions) {
  if (nc === null || typeof nc !== 'object' || typeof (nc as NatsConnection).request !== 'function') {
    throw new InvalidOptionError('nc', 'must be a NatsConnection from connect() of @nats-io/transport-node');
  }
  if (options === null || typeof options !== 'object') throw new InvalidOptionError('options', 'must be an object');
  const allowed = ['prefix', 'maxPayload', 'queue', 'concurrency', 'maxPending', 'pingTimeoutMs', 'servedCacheMs', 'logger'];
  for (const k of Object.keys(options)) if (!allowed.includes(k)) throw new InvalidOptionError(k, `unknown option (allowed: ${allowed.join(', ')})`);
  const prefix = options.prefix ?? DEFAULT_PREFIX;
  if (!validPrefix(prefix)) throw new InvalidOptionError('prefix', `must be dot-separated tokens of A-Z a-z 0-9 _ -, got ${JSON.stringify(prefix)}`);
  const queue = options.queue ?? DEFAULT_QUEUE;
  if (typeof queue !== 'string' || !QUEUE_NAME.test(queue)) throw new InvalidOptionError('queue', `must be 1-128 characters of A-Z a-z 0-9 _ . -, got ${JSON.stringify(queue)}`);
  if (options.logger !== undefined && (options.logger === null || typeof options.logger !== 'object')) throw new InvalidOptionError('logger', 'must be a pino logger');
  return {
    prefix,
    queue,
    maxPayload: posInt(options, 'maxPayload', DEFAULT_MAX_PAYLOAD, 64),
    concurrency: posInt(options, 'concurrency', DEFAULT_CONCURRENCY),
    maxPending: posInt(options, 'maxPending', DEFAULT_MAX_PENDING, 0),
    pingTimeoutMs: posInt(options, 'pingTimeoutMs', DEFAULT_PING_TIMEOUT_MS),
    servedCacheMs: posInt(options, 'servedCacheMs', DEFAULT_SERVED_CACHE_MS, 0),
    logger: options.logger ?? pino({ level: 'silent' }),
  };
}

const errorReply = (code: ErrorInfo['code'], message: string, retryable = false): WorkerReply => ({ ok: false, error: { code, message, retryable } });

/** Maps what `nc.request` rejected with onto the Transport's typed errors. */
function requestFailure(error: unknown, req: { worker: string; op: string }, timeoutMs: number): SagaError {
  const reason = error instanceof RequestFailed ? error.reason : undefined;
  if (reason === 'timeout') {
    return new SagaError('STEP_TIMED_OUT', `worker '${req.worker}' did not reply to ${req.op} within ${timeoutMs} ms`, { retryable: true, cause: error });
  }
  if (reason === 'no-responders') {
    return new TransportError('NO_RESPONDERS', `no host serves worker '${req.worker}' (no responders on its ${req.op} subject)`, { cause: error });
  }
  // Refused before it left this process, it cannot have applied; after, it is in doubt.
  const notSent = error instanceof RequestFailed && !error.sent;
  return new TransportError('TRANSPORT_ERROR', `NATS request to worker '${req.worker}' failed: ${(error as Error)?.message ?? String(error)}`, { cause: error, notSent });
}

/**
 * Creates a NATS transport on a connection you own.
 *
 * @example
 * const nc = await connect({ servers: 'nats://127.0.0.1:4222' });
 * const runtime = createRuntime({ transport: natsTransport(nc) });
 */
export function natsTransport(nc: NatsConnection, options: NatsTransportOptions = {}): NatsTransport {
  const o = resolveOptions(nc, options);
  const { prefix, queue, logger } = o;
  const limiter = new Limiter(o.concurrency, o.maxPending);
  const requester = new Requester(nc);
  const served = new Map<string, Served>();
  const servedUntil = new Map<string, number>();
  const pinging = new Map<string, Promise<boolean>>();
  let closed = false;

  /** The server's own limit wins when it is lower. */
  const maxPayload = () => Math.min(o.maxPayload, nc.info?.max_payload ?? o.maxPayload);

  /** Replies go out together at the end of the turn of the event loop (see perTurn). */
  const sendReply = perTurn<{ msg: Msg; body: string | Uint8Array; headers: MsgHdrs | undefined }>(({ msg, body, headers }) => {
    try {
      msg.respond(body, headers === undefined ? undefined : { headers });
    } catch (error) {
      logger.error({ err: error, subject: msg.subject }, 'could not send a reply');
    }
  });
  const respond = (msg: Msg, reply: WorkerReply, req?: WorkerRequest): void => {
    const { body, headers } = encodeReply(reply, maxPayload(), req === undefined ? undefined : `the ${req.op} of worker '${req.worker}' for step '${req.stepId}' of saga '${req.sagaId}'`);
    sendReply({ msg, body, headers });
  };

  const reject = (msg: Msg, error: ErrorInfo, extra: Record<string, unknown> = {}): void => {
    logger.warn({ subject: msg.subject, code: error.code, reason: error.message, ...extra }, 'rejected a request');
    respond(msg, { ok: false, error });
  };

  /** The request's body and headers, or the error it is refused with before sending (nothing is sent). */
  const encodeRequest = (req: WorkerRequest): { body: string; headers: MsgHdrs } | TransportError => {
    if (typeof req?.worker !== 'string' || !WORKER_NAME.test(req.worker) || (req.op !== 'do' && req.op !== 'compensate' && req.op !== 'fence')) {
      return new TransportError('PROTOCOL_ERROR', `cannot address worker ${JSON.stringify(req?.worker)} with op ${JSON.stringify(req?.op)}`, { retryable: false, notSent: true });
    }
    let body: string;
    try {
      body = JSON.stringify(req);
    } catch (error) {
      return new TransportError('PROTOCOL_ERROR', `the ${req.op} request of step '${req.stepId}' to worker '${req.worker}' cannot be encoded as JSON: ${(error as Error).message}`, { retryable: false, cause: error, notSent: true });
    }
    const limit = maxPayload();
    // The server counts the headers against max_payload with the body.
    const headers = requestHeaders(req);
    const size = byteLength(body, limit) + headerBytes(headers);
    if (size > limit) {
      const what = `the ${req.op} request of step '${req.stepId}' to worker '${req.worker}'`;
      return new TransportError('PAYLOAD_TOO_LARGE', `${what} is ${size} bytes with its headers, over the limit of ${limit} (the connection's max_payload or the maxPayload option)`, {
        retryable: false,
        notSent: true,
      });
    }
    return { body, headers };
  };

  const transport: NatsTransport = {
    prefix,
    maxPayload: o.maxPayload,

    get load() {
      return { running: limiter.running, pending: limiter.pending };
    },

    check(req: WorkerRequest): Error | undefined {
      const encoded = encodeRequest(req);
      return encoded instanceof Error ? encoded : undefined;
    },

    async request(req: WorkerRequest, timeoutMs: number): Promise<WorkerReply> {
      if (closed) throw new TransportError('TRANSPORT_ERROR', `the ${req.op} of step '${req.stepId}' was not sent to worker '${req.worker}': this NATS transport is closed`, { retryable: false, notSent: true });
      const encoded = encodeRequest(req);
      if (encoded instanceof Error) throw encoded;
      const timeout = Math.max(1, Math.ceil(timeoutMs));
      let msg: Msg;
      try {
        msg = await requester.request(workerSubject(prefix, req.worker, req.op), encoded.body, encoded.headers, timeout);
      } catch (error) {
        throw requestFailure(error, req, timeout);
      }
      let parsed: unknown;
      try {
        parsed = JSON.parse(msg.string());
      } catch (error) {
        throw new TransportError('PROTOCOL_ERROR', `worker '${req.worker}' replied with a body that is not JSON`, { retryable: false, cause: error });
      }
      return parseReply(parsed);
    },

    serve(worker: string, handler: WorkerHandler): Served {
      if (closed) throw new TransportError('TRANSPORT_ERROR', 'this NATS transport is closed', { retryable: false });
      if (typeof worker !== 'string' || !WORKER_NAME.test(worker)) throw new InvalidOptionError('worker', `must match ${WORKER_NAME.source}, got ${JSON.stringify(worker)}`);
      if (typeof handler !== 'function') throw new InvalidOptionError('handler', 'must be a function');
      if (served.has(worker)) throw new SagaError('WORKER_ALREADY_HOSTED', `worker '${worker}' is already served on this transport`);
      const base = workerSubject(prefix, worker, '*').slice(0, -1);
      const pong = JSON.stringify({ ok: true, result: { worker, v: PROTOCOL_VERSION } });
      const inflight = new Set<Promise<void>>();

      const runOne = async (msg: Msg, req: WorkerRequest): Promise<void> => {
        let reply: WorkerReply;
        try {
          reply = await handler(req);
        } catch (error) {
          logger.error({ err: error, worker, sagaId: req.sagaId, stepId: req.stepId }, 'worker handler threw');
          reply = errorReply('TRANSPORT_ERROR', `worker host error: ${(error as Error)?.message ?? String(error)}`, true);
        }
        if (!reply.ok && BAD_INPUT.has(reply.error.code)) {
          logger.warn({ subject: msg.subject, code: reply.error.code, reason: reply.error.message, sagaId: req.sagaId, stepId: req.stepId, key: req.key }, 'rejected a request');
        }
        respond(msg, reply, req);
      };

      const onMessage = (msg: Msg): void => {
        const op = msg.subject.slice(base.length);
        if (msg.reply === undefined || msg.reply === '') {
          logger.warn({ subject: msg.subject }, 'dropped a message without a reply subject');
          return;
        }
        if (op === 'ping') {
          msg.respond(pong);
          return;
        }
        if (op !== 'do' && op !== 'compensate' && op !== 'fence') {
          reject(msg, { code: 'PROTOCOL_ERROR', message: `unknown operation '${op.slice(0, 64)}' (expected do, compensate, fence or ping)`, retryable: false });
          return;
        }
        const checked = checkInbound(worker, op, msg.data, msg.headers, maxPayload());
        if (!checked.ok) {
          reject(msg, checked.error);
          return;
        }
        let settle!: () => void;
        const tracked = new Promise<void>((r) => (settle = r));
        inflight.add(tracked);
        const finish = () => {
          inflight.delete(tracked);
          settle();
        };
        const accepted = limiter.submit(() => runOne(msg, checked.request).finally(finish));
        if (!accepted) {
          finish();
          // Backpressure: nothing ran; the coordinator sends it again later without spending a retry.
          respond(msg, { ok: false, error: { code: 'OVERLOADED', message: `worker host at capacity (${limiter.running} running, ${limiter.pending} waiting): nothing ran; try again later`, retryable: true } });
          logger.debug({ subject: msg.subject, running: limiter.running, pending: limiter.pending }, 'at capacity: refused a request');
        }
      };

      const sub: Subscription = nc.subscribe(`${base}*`, {
        queue,
        callback: (err, msg) => {
          if (err !== null) {
            logger.error({ err, worker }, 'subscription error');
            return;
          }
          try {
            onMessage(msg);
          } catch (error) {
            logger.error({ err: error, subject: msg.subject }, 'failed to take a message');
          }
        },
      });

      let stopping: Promise<void> | undefined;
      const handle: Served = {
        stop() {
          stopping ??= (async () => {
            servedUntil.delete(worker);
            try {
              if (!sub.isClosed()) await sub.drain();
            } catch (error) {
              logger.warn({ err: error, worker }, 'could not drain the subscription');
            }
            while (inflight.size > 0) await Promise.allSettled([...inflight]);
            // Replies queued in this turn go out first (perTurn), then the flush covers them.
            await new Promise((resolve) => setImmediate(resolve));
            if (served.get(worker) === handle) served.delete(worker);
            if (!nc.isClosed()) await nc.flush().catch(() => undefined);
          })();
          return stopping;
        },
      };
      served.set(worker, handle);
      return handle;
    },

    isServed(worker: string): Promise<boolean> | boolean {
      if (closed) return false;
      const until = servedUntil.get(worker);
      if (until !== undefined && until > Date.now()) return true;
      if (typeof worker !== 'string' || !WORKER_NAME.test(worker)) return false;
      let p = pinging.get(worker);
      if (p !== undefined) return p;
      const ping = { worker, op: 'ping' };
      p = requester
        .request(workerSubject(prefix, worker, 'ping'), '', protocolHeaders(), o.pingTimeoutMs)
        .then(
          () => true,
          (error: unknown) => {
            const e = requestFailure(error, ping, o.pingTimeoutMs);
            if (e.code === 'NO_RESPONDERS') return false;
            // A timeout means a host subscribed but is slow to answer: it is there.
            if (e.code === 'STEP_TIMED_OUT') return true;
            throw e;
          },
        )
        .then((yes) => {
          if (yes && o.servedCacheMs > 0) servedUntil.set(worker, Date.now() + o.servedCacheMs);
          return yes;
        })
        .finally(() => pinging.delete(worker));
      pinging.set(worker, p);
      return p;
    },

    async drain() {
      await Promise.all([...served.values()].map((s) => s.stop()));
    },

    async close() {
      if (closed) return;
      await transport.drain();
      closed = true;
    },
  };
  return transport;
}
