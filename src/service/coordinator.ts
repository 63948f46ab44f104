/**
 * serveCoordinator: a runtime offered as a NATS micro service. Requests on
 * `<prefix>.svc.<endpoint>` (a queue group, so several coordinators serve one service)
 * start sagas by name and answer an operator's questions and commands; the runtime's
 * `outcome` and `escalation` events are published on `<prefix>.svc.events.<sagaId>`;
 * `$SRV` discovery (micro.ts) makes it visible to NATS tooling. Every request is checked
 * (protocol.ts) before the runtime sees it; a bad one gets an error reply and a log line.
 */
import pino from 'pino';
import type { Msg, MsgHdrs, NatsConnection, Subscription } from '@nats-io/transport-node';
import { InvalidOptionError, ResolveError, SagaError } from '../errors.ts';
import type { ErrorInfo } from '../errors.ts';
import type { Runtime } from '../runtime/api.ts';
import { PROTOCOL_VERSION } from '../types.ts';
import type { Logger, SagaDefinition, SagaOutcome } from '../types.ts';
import { parseTraceparent } from '../tracing.ts';
import { toGraph } from '../diagram.ts';
import { byteLength, decoder, DEFAULT_MAX_PAYLOAD, DEFAULT_PREFIX, H, header, validPrefix } from '../transport/nats/wire.ts';
import { EndpointCounter, microErrorHeaders, microId, microResponses, MICRO_NAME, SEMVER, serveDiscovery } from './micro.ts';
import type { MicroInfo, MicroStats } from './micro.ts';
import { eventSubject, parseServiceRequest, SERVICE_ENDPOINTS, serviceSubject } from './protocol.ts';
import type { SagaEvent, ServiceEndpoint, ServiceRequests, ServiceResults } from './protocol.ts';

/** Default name of the service in `$SRV` discovery: `'scatter-saga'`. */
export const DEFAULT_SERVICE_NAME = 'scatter-saga';
/** Default version the service reports to `$SRV` discovery: `'1.0.0'`. */
export const DEFAULT_SERVICE_VERSION = '1.0.0';
/** Default queue group of the service endpoints: `'saga-coordinators'`. */
export const DEFAULT_SERVICE_QUEUE = 'saga-coordinators';
/** Default time `stop()` lets waiting requests wait before it answers them: 5000 ms. */
export const DEFAULT_SERVICE_DRAIN_MS = 5_000;

/** The options of `serveCoordinator`. */
export interface ServeCoordinatorOptions {
  /** Subject prefix: endpoints on `<prefix>.svc.<endpoint>`. Default `'saga'` (the prefix of the worker subjects too). */
  prefix?: string;
  /** Queue group of the endpoints: coordinators in one group share the requests. Default `'saga-coordinators'`. */
  queue?: string;
  /**
   * The sagas `start` may start, looked up by name (and version, else the highest
   * version). Default: the runtime's `sagas` option. Give the runtime the same list, so
   * that it can also retry, resolve and recover the sagas another coordinator started.
   */
  sagas?: readonly SagaDefinition[];
  /** The service name in `$SRV` discovery (`[A-Za-z0-9_-]`, at most 64). Default `'scatter-saga'`. */
  name?: string;
  /** The version reported to `$SRV` discovery (SemVer). Default `'1.0.0'`. */
  version?: string;
  /** The description reported by `$SRV.INFO`. Default: a sentence naming the prefix. */
  description?: string;
  /** Publish the runtime's `outcome` and `escalation` events on `<prefix>.svc.events.<sagaId>`. Default true. */
  events?: boolean;
  /** Largest request or reply body, in bytes. Default 1 MiB, and never more than the server's `max_payload`. */
  maxPayload?: number;
  /** How long `stop()` lets requests that wait for an outcome go on waiting before it answers them (`outcome: null`). Default 5000. */
  drainMs?: number;
  /** pino logger: a warn line for every error reply. Default: silent. */
  logger?: Logger;
}

/** A running coordinator service. */
export interface CoordinatorService {
  readonly name: string;
  /** This instance's id in `$SRV` discovery. */
  readonly id: string;
  readonly prefix: string;
  /** What `$SRV.INFO` answers. */
  info(): MicroInfo;
  /** What `$SRV.STATS` answers. */
  stats(): MicroStats;
  /**
   * Drains: takes no new request (other coordinators of the queue group get them), answers
   * those it took (a request waiting for an outcome waits at most `drainMs` more, then is
   * answered `outcome: null`), stops publishing events and answering discovery, and
   * flushes. It closes neither the runtime nor the connection. Idempotent.
   */
  stop(): Promise<void>;
}

const QUEUE_NAME = /^[A-Za-z0-9_.-]{1,128}$/;
/** The HTTP-like status of an error code, for the micro error header `Nats-Service-Error-Code` (else 500). */
const HTTP_STATUS: Readonly<Record<string, number>> = {
  PROTOCOL_ERROR: 400,
  OPTION_INVALID: 400,
  DEFINITION_INVALID: 400,
  INPUT_NOT_SERIALIZABLE: 400,
  STEP_INPUT_FAILED: 400,
  UNKNOWN_SAGA: 404,
  SAGA_NOT_FOUND: 404,
  SAGA_ID_CONFLICT: 409,
  SAGA_NOT_PARKED: 409,
  SAGA_NOT_RUNNING: 409,
  SAGA_FENCED: 409,
  RESOLVE_NEEDS_REVIEW: 409,
  PAYLOAD_TOO_LARGE: 413,
  WORKER_NOT_HOSTED: 503,
  JOURNAL_UNAVAILABLE: 503,
  RUNTIME_CLOSED: 503,
  NO_RESPONDERS: 503,
  TRANSPORT_ERROR: 503,
  FENCE_FAILED: 503,
};

type Reply = { ok: true; result: unknown } | { ok: false; error: ErrorInfo };

function resolveOptions(nc: NatsConnection, runtime: Runtime, options: ServeCoordinatorOptions) {
  if (nc === null || typeof nc !== 'object' || typeof (nc as NatsConnection).subscribe !== 'function') {
    throw new InvalidOptionError('nc', 'must be a NatsConnection from connect() of @nats-io/transport-node');
  }
  if (runtime === null || typeof runtime !== 'object' || typeof (runtime as Runtime).start !== 'function' || typeof (runtime as Runtime).on !== 'function') {
    throw new InvalidOptionError('runtime', 'must be a runtime made by createRuntime(...)');
  }
  if (options === null || typeof options !== 'object') throw new InvalidOptionError('options', 'must be an object');
  const allowed = ['prefix', 'queue', 'sagas', 'name', 'version', 'description', 'events', 'maxPayload', 'drainMs', 'logger'];
  for (const k of Object.keys(options)) if (!allowed.includes(k)) throw new InvalidOptionError(k, `unknown option (allowed: ${allowed.join(', ')})`);
  const prefix = options.prefix ?? DEFAULT_PREFIX;
  if (!validPrefix(prefix)) throw new InvalidOptionError('prefix', `must be dot-separated tokens of A-Z a-z 0-9 _ -, got ${JSON.stringify(prefix)}`);
  const queue = options.queue ?? DEFAULT_SERVICE_QUEUE;
  if (typeof queue !== 'string' || !QUEUE_NAME.test(queue)) throw new InvalidOptionError('queue', `must be 1-128 characters of A-Z a-z 0-9 _ . -, got ${JSON.stringify(queue)}`);
  const name = options.name ?? DEFAULT_SERVICE_NAME;
  if (typeof name !== 'string' || !MICRO_NAME.test(name)) throw new InvalidOptionError('name', `must be 1-64 characters of A-Z a-z 0-9 _ -, got ${JSON.stringify(name)}`);
  const version = options.version ?? DEFAULT_SERVICE_VERSION;
  if (typeof version !== 'string' || !SEMVER.test(version)) throw new InvalidOptionError('version', `must be a SemVer version such as '1.0.0', got ${JSON.stringify(version)}`);
  const description = options.description ?? `scatter-saga coordinator: start and operate sagas on ${prefix}.svc.*`;
  if (typeof description !== 'string') throw new InvalidOptionError('description', 'must be a string');
  if (options.events !== undefined && typeof options.events !== 'boolean') throw new InvalidOptionError('events', 'must be true or false');
  const maxPayload = options.maxPayload ?? DEFAULT_MAX_PAYLOAD;
  if (typeof maxPayload !== 'number' || !Number.isSafeInteger(maxPayload) || maxPayload < 1024) throw new InvalidOptionError('maxPayload', `must be a whole number >= 1024, got ${String(maxPayload)}`);
  const drainMs = options.drainMs ?? DEFAULT_SERVICE_DRAIN_MS;
  if (typeof drainMs !== 'number' || !Number.isFinite(drainMs) || drainMs < 0) throw new InvalidOptionError('drainMs', 'must be a number of milliseconds >= 0');
  if (options.logger !== undefined && (options.logger === null || typeof options.logger !== 'object')) throw new InvalidOptionError('logger', 'must be a pino logger');
  const list = options.sagas ?? runtime.sagas;
  if (!Array.isArray(list)) throw new InvalidOptionError('sagas', 'must be an array of defineSaga(...) definitions');
  const sagas = new Map<string, Map<number, SagaDefinition>>();
  list.forEach((def: SagaDefinition, i) => {
    if (def === null || typeof def !== 'object' || def.kind !== 'saga') throw new InvalidOptionError(`sagas[${i}]`, 'must be a saga made with defineSaga(...)');
    const versions = sagas.get(def.name) ?? new Map<number, SagaDefinition>();
    if (versions.has(def.version)) throw new InvalidOptionError(`sagas[${i}]`, `saga '${def.name}' version ${def.version} is given twice`);
    versions.set(def.version, def);
    sagas.set(def.name, versions);
  });
  return { prefix, queue, name, version, description, events: options.events ?? true, maxPayload, drainMs, sagas, logger: options.logger ?? pino({ level: 'silent' }) };
}

/**
 * The error info of anything a handler threw: a SagaError keeps its code, anything else is a
 * `SERVICE_ERROR`. A resolve's `ResolveError` also carries `detail: { fences, review? }`.
 */
function errorOf(error: unknown): { info: ErrorInfo; unexpected: boolean } {
  if (error instanceof ResolveError) {
    const detail = { fences: error.fences, ...(error.review !== undefined ? { review: error.review } : {}) };
    return { info: { code: error.code, message: error.message, retryable: error.retryable, detail }, unexpected: false };
  }
  if (error instanceof SagaError) return { info: { code: error.code, message: error.message, retryable: error.retryable }, unexpected: false };
  const message = (error as Error)?.message ?? String(error);
  return { info: { code: 'SERVICE_ERROR', message: `the coordinator failed to handle the request: ${message}`, retryable: true }, unexpected: true };
}

/**
 * Serves a runtime as the coordinator service over NATS. Resolves once its subscriptions
 * are registered on the server.
 *
 * @example
 * const runtime = createRuntime({ transport: natsTransport(nc), store: jetstreamSagaStore(nc), sagas: [trip] });
 * const service = await serveCoordinator(nc, runtime);
 * // nats req saga.svc.start '{"v":1,"saga":"trip","input":{...}}'
 * // later: await service.stop(); await runtime.close();
 */
export async function serveCoordinator(nc: NatsConnection, runtime: Runtime, options: ServeCoordinatorOptions = {}): Promise<CoordinatorService> {
  const o = resolveOptions(nc, runtime, options);
  const { prefix, logger } = o;
  const identity = { name: o.name, id: microId(), version: o.version, metadata: { prefix, protocol: String(PROTOCOL_VERSION), coordinator: runtime.coordinatorId } };
  const counters = new Map<ServiceEndpoint, EndpointCounter>();
  for (const endpoint of SERVICE_ENDPOINTS) {
    counters.set(endpoint, new EndpointCounter({ name: endpoint, subject: serviceSubject(prefix, endpoint), queue_group: o.queue, metadata: null }));
  }
  const responses = microResponses(identity, o.description, new Date(), [...counters.values()]);
  const maxPayload = () => Math.min(o.maxPayload, nc.info?.max_payload ?? o.maxPayload);
  const inflight = new Set<Promise<void>>();
  /** Aborted `drainMs` after stop(): requests still waiting for an outcome are answered. */
  const giveUp = new AbortController();
  let stopping: Promise<void> | undefined;

  /** The outcome of `pending`, or null when `ms` pass (if given) or the service gives up waiting, first. */
  const waitUpTo = async (pending: Promise<SagaOutcome | undefined>, ms?: number): Promise<SagaOutcome | null> => {
    pending.catch(() => undefined);
    let timer: ReturnType<typeof setTimeout> | undefined;
    let onAbort: (() => void) | undefined;
    const late = new Promise<null>((resolve) => {
      if (ms !== undefined) timer = setTimeout(() => resolve(null), ms);
      onAbort = () => resolve(null);
      if (giveUp.signal.aborted) resolve(null);
      else giveUp.signal.addEventListener('abort', onAbort, { once: true });
    });
    try {
      return (await Promise.race([pending, late])) ?? null;
    } finally {
      clearTimeout(timer);
      if (onAbort !== undefined) giveUp.signal.removeEventListener('abort', onAbort);
    }
  };

  const definitionOf = (name: string, version: number | undefined): SagaDefinition => {
    const versions = o.sagas.get(name);
    if (versions === undefined) {
      const known = [...o.sagas.keys()];
      throw new SagaError('UNKNOWN_SAGA', `this coordinator serves no saga '${name}' (it serves ${known.length === 0 ? 'none' : known.map((k) => `'${k}'`).join(', ')})`);
    }
    if (version === undefined) return versions.get(Math.max(...versions.keys())) as SagaDefinition;
    const def = versions.get(version);
    if (def === undefined) throw new SagaError('UNKNOWN_SAGA', `this coordinator serves saga '${name}' in version${versions.size > 1 ? 's' : ''} ${[...versions.keys()].sort((a, b) => a - b).join(', ')}, not ${version}`);
    return def;
  };

  /** What a handler reads of the request message besides its body. */
  interface Context {
    /** A valid W3C `Traceparent` header of the request (an invalid one is ignored, as W3C asks). */
    readonly traceparent: string | undefined;
  }
  const handlers: { [E in ServiceEndpoint]: (req: ServiceRequests[E], ctx: Context) => Promise<ServiceResults[E]> } = {
    async start(req, ctx) {
      const def = definitionOf(req.saga, req.version);
      const options = { ...(req.sagaId !== undefined ? { sagaId: req.sagaId } : {}), ...(ctx.traceparent !== undefined ? { traceparent: ctx.traceparent } : {}) };
      const started = await runtime.start(def, req.input as never, options);
      if (!req.wait) return { sagaId: started.sagaId };
      return { sagaId: started.sagaId, outcome: await waitUpTo(started.outcome, req.timeoutMs) };
    },
    async status(req) {
      const status = await runtime.status(req.sagaId);
      if (status === undefined) throw new SagaError('SAGA_NOT_FOUND', `no saga '${req.sagaId}' is in the store`);
      return status;
    },
    async outcome(req) {
      // runtime.outcome keeps to the timeout itself, after a first look at the saga.
      return { sagaId: req.sagaId, outcome: await waitUpTo(runtime.outcome(req.sagaId, { timeoutMs: req.timeoutMs })) };
    },
    async list(req) {
      const all = await runtime.list(req.status === undefined ? {} : { status: req.status });
      return { sagas: all.slice(0, req.limit), truncated: all.length > req.limit };
    },
    async retry(req) {
      return { sagaId: req.sagaId, outcome: await waitUpTo(runtime.retry(req.sagaId), req.timeoutMs) };
    },
    async abort(req) {
      return { sagaId: req.sagaId, outcome: await waitUpTo(runtime.abort(req.sagaId, req.note), req.timeoutMs) };
    },
    async resolve(req) {
      // The fences take at most fenceTimeoutMs (< timeoutMs), so their verdict comes within the wait.
      const options = { ...(req.note !== undefined ? { note: req.note } : {}), ...(req.reviewed !== undefined ? { reviewed: req.reviewed } : {}), ...(req.force ? { force: true } : { fenceTimeoutMs: req.fenceTimeoutMs }) };
      return { sagaId: req.sagaId, outcome: await waitUpTo(runtime.resolve(req.sagaId, options), req.timeoutMs) };
    },
    async 'dead-letters'() {
      return { deadLetters: await runtime.deadLetters() };
    },
    async graph(req) {
      if (req.sagaId === undefined) return toGraph(definitionOf(req.saga, req.version));
      const status = await runtime.status(req.sagaId);
      if (status === undefined) throw new SagaError('SAGA_NOT_FOUND', `no saga '${req.sagaId}' is in the store`);
      return toGraph(definitionOf(status.saga, status.version));
    },
  };

  /**
   * The body and headers of a reply. A reply too large for the limit becomes a
   * `RESULT_TOO_LARGE` error; an error reply first loses its `detail` (its code stays).
   */
  const encode = (endpoint: ServiceEndpoint, reply: Reply): { body: string; headers: MsgHdrs | undefined; reply: Reply } => {
    let body = JSON.stringify(reply);
    const limit = maxPayload();
    // An error reply carries headers: keep room for them.
    let size = byteLength(body, limit - 2048);
    if (size > limit - 2048 && !reply.ok && reply.error.detail !== undefined) {
      const { detail: _left, ...error } = reply.error;
      reply = { ok: false, error: { ...error, message: `${error.message} (its detail was left out: the reply was ${size} bytes, over this service's limit of ${limit})` } };
      body = JSON.stringify(reply);
      size = byteLength(body, limit - 2048);
    }
    if (size > limit - 2048) {
      const hint = endpoint === 'list' ? ' (ask for fewer with "limit")' : '';
      reply = { ok: false, error: { code: 'RESULT_TOO_LARGE', message: `the ${endpoint} reply is ${size} bytes, over this service's limit of ${limit}${hint}`, retryable: false } };
      body = JSON.stringify(reply);
    }
    if (reply.ok) return { body, headers: undefined, reply };
    const h = microErrorHeaders(HTTP_STATUS[reply.error.code] ?? 500, `${reply.error.code}: ${reply.error.message}`);
    h.set(H.protocol, String(PROTOCOL_VERSION));
    h.set(H.errorCode, String(reply.error.code));
    return { body, headers: h, reply };
  };

  /** Sends a reply, counts it and logs an error reply. Never throws. */
  const answer = (msg: Msg, endpoint: ServiceEndpoint, reply: Reply, began: bigint, extra: Record<string, unknown> = {}): void => {
    try {
      const encoded = encode(endpoint, reply);
      const { error } = encoded.reply.ok ? { error: undefined } : encoded.reply;
      counters.get(endpoint)?.record(process.hrtime.bigint() - began, error === undefined ? undefined : `${error.code}: ${error.message}`);
      if (error !== undefined) logger.warn({ subject: msg.subject, endpoint, code: error.code, reason: error.message, ...extra }, 'refused a service request');
      msg.respond(encoded.body, encoded.headers === undefined ? undefined : { headers: encoded.headers });
    } catch (e) {
      logger.error({ err: e, subject: msg.subject, endpoint }, 'could not send a reply');
    }
  };

  const onMessage = (endpoint: ServiceEndpoint, msg: Msg): void => {
    const began = process.hrtime.bigint();
    if (msg.reply === undefined || msg.reply === '') {
      logger.warn({ subject: msg.subject, endpoint }, 'dropped a service message without a reply subject');
      return;
    }
    const refuse = (message: string, code: ErrorInfo['code'] = 'PROTOCOL_ERROR') => answer(msg, endpoint, { ok: false, error: { code, message, retryable: false } }, began);
    const limit = maxPayload();
    if (msg.data.length > limit) return refuse(`request body of ${msg.data.length} bytes is over this service's limit of ${limit}`, 'PAYLOAD_TOO_LARGE');
    const version = header(msg.headers, H.protocol);
    if (version !== undefined && version !== String(PROTOCOL_VERSION)) {
      return refuse(`unsupported protocol version ${JSON.stringify(version.slice(0, 20))} in header '${H.protocol}' (this service speaks ${PROTOCOL_VERSION})`);
    }
    let body: unknown;
    try {
      body = JSON.parse(decoder.decode(msg.data));
    } catch (error) {
      return refuse(msg.data.length === 0 ? `the request body is empty: send a JSON object with "v": ${PROTOCOL_VERSION}` : `the request body is not valid UTF-8 JSON: ${(error as Error).message}`);
    }
    let req: ServiceRequests[ServiceEndpoint];
    try {
      req = parseServiceRequest(endpoint, body);
    } catch (error) {
      return answer(msg, endpoint, { ok: false, error: errorOf(error).info }, began);
    }
    const handled = (async () => {
      try {
        const tp = header(msg.headers, H.traceparent);
        const ctx: Context = { traceparent: tp !== undefined && parseTraceparent(tp) !== undefined ? tp : undefined };
        const result = await (handlers[endpoint] as (r: typeof req, c: Context) => Promise<unknown>)(req, ctx);
        answer(msg, endpoint, { ok: true, result }, began);
      } catch (error) {
        const { info, unexpected } = errorOf(error);
        if (unexpected) logger.error({ err: error, subject: msg.subject, endpoint }, 'a service handler failed');
        answer(msg, endpoint, { ok: false, error: info }, began, 'sagaId' in req ? { sagaId: req.sagaId } : {});
      }
    })();
    inflight.add(handled);
    void handled.finally(() => inflight.delete(handled));
  };

  const subs: Subscription[] = SERVICE_ENDPOINTS.map((endpoint) =>
    nc.subscribe(serviceSubject(prefix, endpoint), {
      queue: o.queue,
      callback: (err, msg) => {
        if (err !== null) {
          logger.error({ err, endpoint }, 'service subscription error');
          return;
        }
        try {
          onMessage(endpoint, msg);
        } catch (error) {
          logger.error({ err: error, subject: msg.subject }, 'failed to take a service request');
        }
      },
    }),
  );
  const stopDiscovery = serveDiscovery(nc, identity, responses, logger);

  const publish = (event: SagaEvent): void => {
    if (nc.isClosed()) return;
    try {
      nc.publish(eventSubject(prefix, event.sagaId), JSON.stringify(event));
    } catch (error) {
      logger.warn({ err: error, sagaId: event.sagaId, type: event.type }, 'could not publish a saga event');
    }
  };
  const unlisten: (() => void)[] = [];
  if (o.events) {
    unlisten.push(
      runtime.on('outcome', (e) => {
        const { saga, version, ...outcome } = e;
        publish({ v: PROTOCOL_VERSION, type: 'outcome', sagaId: e.sagaId, saga, version, outcome: outcome as SagaOutcome });
      }),
      runtime.on('escalation', (e) => publish({ v: PROTOCOL_VERSION, type: 'escalation', sagaId: e.sagaId, saga: e.saga, version: e.version, remaining: e.remaining, failures: e.failures, timesParked: e.timesParked })),
      runtime.on('step', (e) => publish({ v: PROTOCOL_VERSION, type: 'step', ...e })),
    );
  }

  await nc.flush();
  logger.info({ prefix, queue: o.queue, name: o.name, id: identity.id, sagas: [...o.sagas.keys()] }, 'serving the coordinator service over NATS');

  return {
    name: o.name,
    id: identity.id,
    prefix,
    info: responses.info,
    stats: responses.stats,
    stop() {
      stopping ??= (async () => {
        logger.info({ prefix, id: identity.id, inflight: inflight.size }, 'draining the coordinator service');
        await Promise.all(subs.map((s) => (s.isClosed() ? undefined : s.drain().catch((error: unknown) => logger.warn({ err: error }, 'could not drain a service subscription')))));
        const timer = setTimeout(() => giveUp.abort(), o.drainMs);
        while (inflight.size > 0) await Promise.allSettled([...inflight]);
        clearTimeout(timer);
        for (const u of unlisten) u();
        stopDiscovery();
        if (!nc.isClosed()) await nc.flush().catch(() => undefined);
        logger.info({ prefix, id: identity.id }, 'coordinator service stopped');
      })();
      return stopping;
    },
  };
}
