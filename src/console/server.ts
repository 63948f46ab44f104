/**
 * serveConsole: the operator's web console, a local HTTP server (node:http) that talks to
 * the coordinators only over NATS, through `sagaClient` and a subscription to
 * `<prefix>.svc.events.>`; `serveRuntimeConsole` serves the same console for an embedded
 * runtime in the same process (the demo's). It serves one static page (assets/ next to this file), a JSON
 * API the page uses (sagas by state, one saga's status, graph and timeline, dead letters,
 * retry, resolve with its review) and the saga events as Server-Sent Events. It keeps the
 * step events it saw, with the time each arrived, so that the page can show durations.
 */
import { createServer } from 'node:http';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { readFile } from 'node:fs/promises';
import type { NatsConnection, Subscription } from '@nats-io/transport-node';
import { InvalidOptionError, SagaError, ServiceError } from '../errors.ts';
import type { FencedEffect } from '../errors.ts';
import { toGraph } from '../diagram.ts';
import type { SagaGraph } from '../diagram.ts';
import type { Runtime, SagaStatus, SagaSummary } from '../runtime/api.ts';
import { sagaClient } from '../service/client.ts';
import type { DeadLetter, SagaDefinition, SagaOutcome } from '../types.ts';
import { PROTOCOL_VERSION } from '../types.ts';
import { parseEvent } from '../service/protocol.ts';
import type { SagaEvent } from '../service/protocol.ts';
import { DEFAULT_PREFIX, validPrefix } from '../transport/nats/wire.ts';

/** Default port of the console: 8080. */
export const DEFAULT_CONSOLE_PORT = 8080;
/** Default address the console listens on: `127.0.0.1` (this machine only). */
export const DEFAULT_CONSOLE_HOST = '127.0.0.1';
/** How many sagas the console remembers step events of (the oldest are forgotten first). */
export const CONSOLE_SAGAS_KEPT = 2_000;
/** How many ended sagas the console lists beside the running and parked ones (the ones it saw end). */
export const CONSOLE_ENDED_KEPT = 50;
/** How many step events the console keeps of one saga. */
export const CONSOLE_EVENTS_PER_SAGA = 500;

/** The options of `serveConsole`. */
export interface ServeConsoleOptions {
  /** Subject prefix of the coordinator service. Default `'saga'`. */
  prefix?: string;
  /** TCP port; 0 picks a free one (see `ConsoleServer.port`). Default 8080. */
  port?: number;
  /** Address to listen on. Default `127.0.0.1`: only this machine reaches the console. */
  host?: string;
  /** How long the console waits for a reply of the service (a retry or resolve waits its outcome this long too). Default 30_000. */
  timeoutMs?: number;
}

/** A running console. */
export interface ConsoleServer {
  /** `http://<host>:<port>/` */
  readonly url: string;
  readonly port: number;
  /** Ends the event streams, stops listening and unsubscribes. Closes not the NATS connection. Idempotent. */
  close(): Promise<void>;
}

/** A step event as the console saw it: with the time it arrived (epoch ms). */
export interface SeenStepEvent {
  readonly at: number;
  readonly stepId: string;
  readonly worker: string;
  readonly status: string;
  readonly attempt: number;
  readonly compensationAttempt: number;
}

/** What the page gets when a resolve did not end the saga: the fences, and the token to confirm with after a second look. */
export interface ResolveReview {
  readonly code: string;
  readonly message: string;
  readonly review: string | undefined;
  readonly fences: readonly FencedEffect[];
}

const ASSETS: Readonly<Record<string, string>> = {
  '/': 'index.html',
  '/index.html': 'index.html',
  '/console.js': 'console.js',
  '/console.css': 'console.css',
};
const TYPES: Readonly<Record<string, string>> = { html: 'text/html; charset=utf-8', js: 'text/javascript; charset=utf-8', css: 'text/css; charset=utf-8' };
const MAX_BODY = 16 * 1024;

/** An HTTP error the API answers with `{ error: { code, message } }`. */
class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

/** Where the console gets what it shows, and sends what the operator does. */
interface ConsoleSource {
  status(sagaId: string): Promise<SagaStatus | undefined>;
  list(options: { status?: 'running' | 'parked' }): Promise<{ sagas: readonly SagaSummary[]; truncated: boolean }>;
  deadLetters(): Promise<DeadLetter[]>;
  retry(sagaId: string, timeoutMs: number): Promise<SagaOutcome | undefined>;
  abort(sagaId: string, note: string | undefined, timeoutMs: number): Promise<SagaOutcome | undefined>;
  resolve(sagaId: string, r: { note?: string; reviewed?: string }, timeoutMs: number): Promise<SagaOutcome | undefined>;
  graph(sagaId: string): Promise<SagaGraph>;
  /** Starts delivering the saga events; resolves with how to stop. */
  subscribe(listener: (event: SagaEvent) => void): Promise<() => void>;
}

/** Resolves with `p`, or undefined after `ms` (the saga goes on). */
function upTo<T>(p: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  return Promise.race([p, new Promise<undefined>((r) => (timer = setTimeout(() => r(undefined), ms)))]).finally(() => clearTimeout(timer));
}

/** The console's source for an embedded runtime: its operator API and its events, in this process. */
function runtimeSource(runtime: Runtime, sagas: readonly SagaDefinition[]): ConsoleSource {
  const defs = new Map(sagas.map((d) => [`${d.name}@${d.version}`, d]));
  return {
    status: (sagaId) => runtime.status(sagaId),
    list: async (o) => ({ sagas: await runtime.list(o), truncated: false }),
    deadLetters: () => runtime.deadLetters(),
    retry: (sagaId, ms) => upTo(runtime.retry(sagaId), ms),
    abort: (sagaId, note, ms) => upTo(runtime.abort(sagaId, note), ms),
    resolve: (sagaId, r, ms) => upTo(runtime.resolve(sagaId, r), ms),
    async graph(sagaId) {
      const s = await runtime.status(sagaId);
      const def = s === undefined ? undefined : defs.get(`${s.saga}@${s.version}`);
      if (def === undefined) throw new SagaError('UNKNOWN_SAGA', `the console was not given the definition of saga '${sagaId}'`);
      return toGraph(def);
    },
    async subscribe(listener) {
      const v = PROTOCOL_VERSION;
      const offs = [
        runtime.on('step', (e) => listener({ v, type: 'step', ...e })),
        runtime.on('outcome', ({ saga, version, ...outcome }) => listener({ v, type: 'outcome', sagaId: outcome.sagaId, saga, version, outcome: outcome as SagaOutcome })),
        runtime.on('escalation', (e) => listener({ v, type: 'escalation', sagaId: e.sagaId, saga: e.saga, version: e.version, remaining: e.remaining, failures: e.failures, timesParked: e.timesParked })),
      ];
      return () => {
        for (const off of offs) off();
      };
    },
  };
}

/** The console's source over NATS: the coordinator service, and its events. */
function natsSource(nc: NatsConnection, prefix: string): ConsoleSource {
  const client = sagaClient(nc, { prefix, timeoutMs: 5_000 });
  return {
    status: (sagaId) => client.status(sagaId),
    list: (o) => client.list(o),
    deadLetters: () => client.deadLetters(),
    retry: (sagaId, timeoutMs) => client.retry(sagaId, { timeoutMs }),
    abort: (sagaId, note, timeoutMs) => client.abort(sagaId, note, { timeoutMs }),
    resolve: (sagaId, r, timeoutMs) => client.resolve(sagaId, { ...r, timeoutMs }),
    graph: (sagaId) => client.graph({ sagaId }),
    async subscribe(listener) {
      const sub: Subscription = nc.subscribe(`${prefix}.svc.events.>`, {
        callback: (err, msg) => {
          if (err !== null) return;
          let event: SagaEvent | undefined;
          try {
            event = parseEvent(JSON.parse(msg.string()));
          } catch {
            return; // not an event of this protocol
          }
          if (event !== undefined) listener(event);
        },
      });
      await nc.flush();
      return () => {
        if (!sub.isClosed()) sub.unsubscribe();
      };
    },
  };
}

function checkConnection(nc: NatsConnection): void {
  if (nc === null || typeof nc !== 'object' || typeof (nc as NatsConnection).subscribe !== 'function') {
    throw new InvalidOptionError('nc', 'must be a NatsConnection from connect() of @nats-io/transport-node');
  }
}

function checkOptions(options: ServeConsoleOptions) {
  if (options === null || typeof options !== 'object') throw new InvalidOptionError('options', 'must be an object');
  const allowed = ['prefix', 'port', 'host', 'timeoutMs'];
  for (const k of Object.keys(options)) if (!allowed.includes(k)) throw new InvalidOptionError(k, `unknown option (allowed: ${allowed.join(', ')})`);
  const prefix = options.prefix ?? DEFAULT_PREFIX;
  if (!validPrefix(prefix)) throw new InvalidOptionError('prefix', `must be dot-separated tokens of A-Z a-z 0-9 _ -, got ${JSON.stringify(prefix)}`);
  const port = options.port ?? DEFAULT_CONSOLE_PORT;
  if (typeof port !== 'number' || !Number.isSafeInteger(port) || port < 0 || port > 65_535) throw new InvalidOptionError('port', `must be a whole number from 0 to 65535, got ${String(port)}`);
  const host = options.host ?? DEFAULT_CONSOLE_HOST;
  if (typeof host !== 'string' || host.length === 0) throw new InvalidOptionError('host', 'must be a non-empty host name or address');
  const timeoutMs = options.timeoutMs ?? 30_000;
  if (typeof timeoutMs !== 'number' || !Number.isSafeInteger(timeoutMs) || timeoutMs < 1) throw new InvalidOptionError('timeoutMs', `must be a whole number of milliseconds >= 1, got ${String(timeoutMs)}`);
  return { prefix, port, host, timeoutMs };
}

/** The review a resolve error carries (code, message, `review` token and `fences`), or undefined for any other error. */
export function reviewOf(error: unknown): ResolveReview | undefined {
  if (!(error instanceof SagaError) || (error.code !== 'RESOLVE_NEEDS_REVIEW' && error.code !== 'FENCE_FAILED')) return undefined;
  const e = error as SagaError & { review?: unknown; fences?: unknown; detail?: { review?: unknown; fences?: unknown } };
  const review = typeof e.review === 'string' ? e.review : typeof e.detail?.review === 'string' ? e.detail.review : undefined;
  const fences = Array.isArray(e.fences) ? e.fences : Array.isArray(e.detail?.fences) ? e.detail.fences : [];
  return { code: error.code, message: error.message, review, fences: fences as FencedEffect[] };
}

async function readJson(req: IncomingMessage): Promise<Record<string, unknown>> {
  const type = req.headers['content-type'] ?? '';
  if (!type.startsWith('application/json')) throw new HttpError(415, 'BAD_REQUEST', 'send the body as application/json');
  let size = 0;
  const chunks: Buffer[] = [];
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY) throw new HttpError(413, 'BAD_REQUEST', `the body is over ${MAX_BODY} bytes`);
    chunks.push(chunk);
  }
  const text = Buffer.concat(chunks).toString('utf8');
  if (text === '') return {};
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch (error) {
    throw new HttpError(400, 'BAD_REQUEST', `the body is not JSON: ${(error as Error).message}`);
  }
  if (body === null || typeof body !== 'object' || Array.isArray(body)) throw new HttpError(400, 'BAD_REQUEST', 'the body must be a JSON object');
  return body as Record<string, unknown>;
}

function optionalString(body: Record<string, unknown>, field: string): string | undefined {
  const v = body[field];
  if (v === undefined || v === null || v === '') return undefined;
  if (typeof v !== 'string') throw new HttpError(400, 'BAD_REQUEST', `'${field}' must be a string`);
  return v;
}

function send(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

/** The HTTP status of an error of the service. */
function statusOf(error: unknown): number {
  if (!(error instanceof SagaError)) return 500;
  switch (error.code) {
    case 'SAGA_NOT_FOUND':
    case 'UNKNOWN_SAGA':
      return 404;
    case 'SAGA_NOT_PARKED':
    case 'SAGA_NOT_RUNNING':
    case 'RESOLVE_NEEDS_REVIEW':
    case 'FENCE_FAILED':
      return 409;
    case 'NO_RESPONDERS':
    case 'TRANSPORT_ERROR':
      return 503;
    default:
      return error.code === 'PROTOCOL_ERROR' ? 400 : 502;
  }
}

/**
 * Serves the console. Resolves once it listens and its event subscription is registered.
 *
 * @example
 * const nc = await connect({ servers: 'nats://127.0.0.1:4222' });
 * const console = await serveConsole(nc, { port: 8080 });
 * // open console.url; later: await console.close(); await nc.close();
 */
export async function serveConsole(nc: NatsConnection, options: ServeConsoleOptions = {}): Promise<ConsoleServer> {
  checkConnection(nc);
  const o = checkOptions(options);
  return serveSource(natsSource(nc, o.prefix), o);
}

/**
 * Serves the same console for an embedded runtime in this process (no NATS): its sagas,
 * events and operator actions, and the statecharts of the `sagas` given.
 *
 * @example
 * const runtime = createRuntime().host(...workers);
 * const console = await serveRuntimeConsole(runtime, [trip], { port: 8080 });
 */
export async function serveRuntimeConsole(runtime: Runtime, sagas: readonly SagaDefinition[], options: Omit<ServeConsoleOptions, 'prefix'> = {}): Promise<ConsoleServer> {
  if (runtime === null || typeof runtime !== 'object' || typeof (runtime as Runtime).on !== 'function') throw new InvalidOptionError('runtime', 'must be a Runtime from createRuntime()');
  if (!Array.isArray(sagas)) throw new InvalidOptionError('sagas', 'must be an array of saga definitions');
  return serveSource(runtimeSource(runtime, sagas), checkOptions(options));
}

async function serveSource(source: ConsoleSource, o: ReturnType<typeof checkOptions>): Promise<ConsoleServer> {
  const assets = new URL('./assets/', import.meta.url);
  const steps = new Map<string, SeenStepEvent[]>();
  const graphs = new Map<string, SagaGraph>();
  const streams = new Set<ServerResponse>();

  /** Sagas whose end the console saw, newest last: the "all" list shows them beside the running and parked ones. */
  const ended = new Map<string, { sagaId: string; saga: string; version: number; status: string; endedAt: number }>();
  const remember = (event: SagaEvent): void => {
    if (event.type === 'outcome') {
      ended.delete(event.sagaId);
      ended.set(event.sagaId, { sagaId: event.sagaId, saga: event.saga, version: event.version, status: event.outcome.status, endedAt: Date.now() });
      if (ended.size > CONSOLE_ENDED_KEPT) ended.delete(ended.keys().next().value as string);
    }
    if (event.type !== 'step') return;
    let list = steps.get(event.sagaId);
    if (list === undefined) {
      if (steps.size >= CONSOLE_SAGAS_KEPT) steps.delete(steps.keys().next().value as string);
      list = [];
      steps.set(event.sagaId, list);
    }
    list.push({ at: Date.now(), stepId: event.stepId, worker: event.worker, status: event.status, attempt: event.attempt, compensationAttempt: event.compensationAttempt });
    if (list.length > CONSOLE_EVENTS_PER_SAGA) list.splice(0, list.length - CONSOLE_EVENTS_PER_SAGA);
  };
  const unsubscribe = await source.subscribe((event) => {
    remember(event);
    const line = `data: ${JSON.stringify({ ...event, at: Date.now() })}\n\n`;
    for (const res of streams) res.write(line);
  });

  /**
   * The graph of a saga's definition, asked once per name@version; else why there is none
   * (no coordinator serves that version, or none answers `graph`): the saga is shown without it.
   */
  const graphOf = async (sagaId: string, saga: string, version: number): Promise<{ graph: SagaGraph } | { why: string }> => {
    const key = `${saga}@${version}`;
    const known = graphs.get(key);
    if (known !== undefined) return { graph: known };
    try {
      const graph = await source.graph(sagaId);
      graphs.set(key, graph);
      return { graph };
    } catch (error) {
      return { why: error instanceof SagaError ? `${error.code}: ${error.message}` : String((error as Error)?.message ?? error) };
    }
  };

  const api = async (req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> => {
    const path = url.pathname;
    const method = req.method ?? 'GET';
    if (method === 'POST') {
      // A page of another site may not command the console: same origin only.
      const origin = req.headers.origin;
      let from: string | undefined;
      try {
        from = origin === undefined ? undefined : new URL(origin).host;
      } catch {
        from = '';
      }
      if (origin !== undefined && from !== req.headers.host) throw new HttpError(403, 'FORBIDDEN', `requests from ${origin.slice(0, 200)} are refused: use the console's own page`);
    }
    if (method === 'GET' && path === '/api/events') {
      res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-store', connection: 'keep-alive' });
      res.write(': scatter-saga console events\n\n');
      streams.add(res);
      const ping = setInterval(() => res.write(': ping\n\n'), 15_000);
      res.on('close', () => {
        clearInterval(ping);
        streams.delete(res);
      });
      return;
    }
    if (method === 'GET' && path === '/api/sagas') {
      const q = (url.searchParams.get('q') ?? '').trim();
      if (q !== '') {
        const s = await source.status(q);
        return send(res, 200, { sagas: s === undefined ? [] : [{ sagaId: s.sagaId, saga: s.saga, version: s.version, state: s.state, status: s.state === 'compensationFailed' ? 'parked' : s.outcome === undefined ? 'running' : s.outcome.status }], truncated: false });
      }
      const status = url.searchParams.get('status') ?? '';
      if (status !== '' && status !== 'running' && status !== 'parked') throw new HttpError(400, 'BAD_REQUEST', `'status' must be running or parked, got '${status.slice(0, 40)}'`);
      const list = await source.list(status === '' ? {} : { status });
      if (status !== '') return send(res, 200, list);
      // Every saga: the running and parked ones, then the ones that ended lately, newest first.
      const listed = new Set(list.sagas.map((x) => x.sagaId));
      const recent = [...ended.values()].filter((x) => !listed.has(x.sagaId)).reverse();
      return send(res, 200, { sagas: [...list.sagas, ...recent], truncated: list.truncated });
    }
    if (method === 'GET' && path === '/api/dead-letters') return send(res, 200, { deadLetters: await source.deadLetters() });
    const m = /^\/api\/sagas\/([^/]+)(?:\/(retry|resolve|abort))?$/.exec(path);
    if (m !== null) {
      let sagaId: string;
      try {
        sagaId = decodeURIComponent(m[1] as string);
      } catch {
        throw new HttpError(400, 'BAD_REQUEST', 'the saga id in the path is not valid percent-encoding');
      }
      const action = m[2];
      if (action === undefined && method === 'GET') {
        const status = await source.status(sagaId);
        if (status === undefined) throw new HttpError(404, 'SAGA_NOT_FOUND', `no saga '${sagaId}' is in the store`);
        const drawn = await graphOf(sagaId, status.saga, status.version);
        const deadLetter = status.state === 'compensationFailed' ? (await source.deadLetters()).find((d) => d.sagaId === sagaId) : undefined;
        const graph = 'graph' in drawn ? { graph: drawn.graph } : { graph: null, graphError: drawn.why };
        return send(res, 200, { status, ...graph, deadLetter: deadLetter ?? null, events: steps.get(sagaId) ?? [], now: Date.now() });
      }
      if (action === 'retry' && method === 'POST') {
        await readJson(req);
        const outcome = await source.retry(sagaId, o.timeoutMs);
        return send(res, 200, { sagaId, outcome: outcome ?? null });
      }
      if (action === 'abort' && method === 'POST') {
        const note = optionalString(await readJson(req), 'note');
        const outcome = await source.abort(sagaId, note, o.timeoutMs);
        return send(res, 200, { sagaId, outcome: outcome ?? null });
      }
      if (action === 'resolve' && method === 'POST') {
        const body = await readJson(req);
        const note = optionalString(body, 'note');
        const reviewed = optionalString(body, 'reviewed');
        try {
          const outcome = await source.resolve(sagaId, { ...(note !== undefined ? { note } : {}), ...(reviewed !== undefined ? { reviewed } : {}) }, o.timeoutMs);
          return send(res, 200, { sagaId, outcome: outcome ?? null });
        } catch (error) {
          const review = reviewOf(error);
          if (review === undefined) throw error;
          return send(res, 409, { sagaId, review });
        }
      }
    }
    throw new HttpError(404, 'NOT_FOUND', `no ${method} ${path.slice(0, 200)}`);
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const url = new URL(req.url ?? '/', 'http://console.invalid');
    try {
      if (url.pathname.startsWith('/api/')) return await api(req, res, url);
      const asset = ASSETS[url.pathname];
      if (asset === undefined || (req.method !== 'GET' && req.method !== 'HEAD')) throw new HttpError(404, 'NOT_FOUND', `no ${req.method} ${url.pathname.slice(0, 200)}`);
      const body = await readFile(new URL(asset, assets));
      res.writeHead(200, { 'content-type': TYPES[asset.split('.').pop() as string] ?? 'application/octet-stream', 'cache-control': 'no-cache', 'content-length': body.length, 'x-content-type-options': 'nosniff' });
      res.end(req.method === 'HEAD' ? undefined : body);
    } catch (error) {
      if (res.headersSent) {
        res.end();
        return;
      }
      if (error instanceof HttpError) return send(res, error.status, { error: { code: error.code, message: error.message } });
      const code = error instanceof SagaError ? error.code : 'CONSOLE_ERROR';
      const message = (error as Error)?.message ?? String(error);
      send(res, statusOf(error), { error: { code, message, ...(error instanceof ServiceError ? { endpoint: error.endpoint } : {}) } });
    }
  };

  const server: Server = createServer((req, res) => void handle(req, res));
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(o.port, o.host, () => {
      server.off('error', reject);
      resolve();
    });
  }).catch((error: NodeJS.ErrnoException) => {
    unsubscribe();
    throw new InvalidOptionError('port', `cannot listen on ${o.host}:${o.port}: ${error.code ?? error.message}`);
  });
  const address = server.address();
  const port = typeof address === 'object' && address !== null ? address.port : o.port;
  let closing: Promise<void> | undefined;
  return {
    url: `http://${o.host.includes(':') ? `[${o.host}]` : o.host}:${port}/`,
    port,
    close() {
      closing ??= (async () => {
        for (const res of streams) res.end();
        streams.clear();
        unsubscribe();
        await new Promise<void>((resolve) => {
          server.close(() => resolve());
          server.closeAllConnections();
        });
      })();
      return closing;
    },
  };
}
