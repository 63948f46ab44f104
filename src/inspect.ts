/**
 * The `scatter-saga/inspect` entry: `webSocketInspector`, an XState inspector that sends a
 * runtime's actors, events and snapshots to a WebSocket receiver in the format of
 * @statelyai/inspect (its `createInspector` converts them), such as the bridge of
 * `createInspectorServer` from `@statelyai/inspect/server`, which shows them in the Stately
 * inspector. Unlike `createWebSocketInspector`, it tries the connection once: when the
 * receiver cannot be reached it logs one line, drops every later event, keeps no timer and
 * no socket, and never keeps the process alive. `@statelyai/inspect` and `ws` are optional
 * peer dependencies, needed only by this entry.
 */
import { createInspector } from '@statelyai/inspect';
import type { StatelyInspectionEvent } from '@statelyai/inspect';
import pino from 'pino';
import { WebSocket } from 'ws';
import type { InspectionEvent, Observer } from 'xstate';
import { InvalidOptionError } from './errors.ts';
import type { Logger } from './types.ts';

/** Default time to open the connection before inspection is given up: 2 s. */
export const DEFAULT_INSPECT_CONNECT_TIMEOUT_MS = 2_000;
/** Default number of events kept while the connection opens; older ones are dropped first. */
export const DEFAULT_INSPECT_MAX_DEFERRED = 1_000;

/** The options of {@link webSocketInspector}. */
export interface WebSocketInspectorOptions {
  /** The receiver, `ws://` or `wss://`, e.g. `ws://127.0.0.1:8080` (the port `createInspectorServer` listens on by default). */
  readonly url: string;
  /** Where the one line about a failed or lost connection goes. Default: pino at `warn` on stderr. */
  readonly logger?: Logger;
  /** Time to open the connection before inspection is given up. Default 2_000 ms. */
  readonly connectTimeoutMs?: number;
  /** Events kept while the connection opens (then sent in order); older ones are dropped first. Default 1_000. */
  readonly maxDeferredEvents?: number;
}

/** What the inspector is doing: opening its connection, sending, given up (failed), or closed by `close()`. */
export type InspectorState = 'connecting' | 'open' | 'failed' | 'closed';

/** A WebSocket inspector: pass `inspect` as the runtime's `inspect` option. */
export interface SagaInspector {
  /** The XState inspection observer: `createRuntime({ inspect: inspector.inspect })`. */
  readonly inspect: Observer<InspectionEvent>;
  readonly state: InspectorState;
  /** Events sent to the receiver so far. */
  readonly sent: number;
  /** Events dropped: while connecting past `maxDeferredEvents`, after a failure, or after `close()`. */
  readonly dropped: number;
  /** Closes the connection; later events are dropped. Resolves once the socket is closed. */
  close(): Promise<void>;
}

const OPTION_NAMES = new Set(['url', 'logger', 'connectTimeoutMs', 'maxDeferredEvents']);

function checkOptions(options: unknown): asserts options is WebSocketInspectorOptions {
  if (options === null || typeof options !== 'object' || Array.isArray(options)) throw new InvalidOptionError('options', 'must be an object with at least `url`');
  for (const k of Object.keys(options)) if (!OPTION_NAMES.has(k)) throw new InvalidOptionError(k, `is not an option of webSocketInspector (its options: ${[...OPTION_NAMES].join(', ')})`);
  const o = options as Record<string, unknown>;
  let url: URL | undefined;
  try {
    url = typeof o.url === 'string' ? new URL(o.url) : undefined;
  } catch {
    url = undefined;
  }
  if (url === undefined || (url.protocol !== 'ws:' && url.protocol !== 'wss:')) throw new InvalidOptionError('url', `must be a ws:// or wss:// URL, got ${JSON.stringify(o.url) ?? String(o.url)}`);
  if (o.connectTimeoutMs !== undefined && !(typeof o.connectTimeoutMs === 'number' && Number.isFinite(o.connectTimeoutMs) && o.connectTimeoutMs > 0)) {
    throw new InvalidOptionError('connectTimeoutMs', 'must be a number of milliseconds > 0');
  }
  if (o.maxDeferredEvents !== undefined && !(Number.isSafeInteger(o.maxDeferredEvents) && (o.maxDeferredEvents as number) >= 0)) {
    throw new InvalidOptionError('maxDeferredEvents', 'must be a whole number >= 0');
  }
}

/** JSON of an inspection event: cycles and repeated objects cut, functions left out, bigints as strings. */
function toJson(event: StatelyInspectionEvent): string {
  const seen = new WeakSet<object>();
  return JSON.stringify(event, (_key, value: unknown) => {
    if (typeof value === 'bigint') return value.toString();
    if (typeof value === 'function' || typeof value === 'symbol') return undefined;
    if (typeof value === 'object' && value !== null) {
      if (seen.has(value)) return '[seen]';
      seen.add(value);
    }
    return value;
  });
}

/**
 * An XState inspector that sends to the WebSocket receiver at `url`. It connects at once,
 * keeps events while the connection opens, and sends them in order. If the connection
 * cannot be opened (refused, unreachable, `connectTimeoutMs` passed) or is lost, it logs
 * one warn line and drops every later event: no retry, no timer, and its socket never keeps
 * the process alive.
 */
export function webSocketInspector(options: WebSocketInspectorOptions): SagaInspector {
  checkOptions(options);
  const url = options.url;
  const logger = options.logger ?? pino({ level: 'warn' }, pino.destination(2));
  const maxDeferred = options.maxDeferredEvents ?? DEFAULT_INSPECT_MAX_DEFERRED;
  let state: InspectorState = 'connecting';
  let deferred: string[] = [];
  let sent = 0;
  let dropped = 0;

  const ws = new WebSocket(url, { handshakeTimeout: options.connectTimeoutMs ?? DEFAULT_INSPECT_CONNECT_TIMEOUT_MS });
  // An open inspection socket must not keep the process alive.
  ws.on('upgrade', (res) => res.socket.unref());
  ws.on('open', () => {
    if (state !== 'connecting') return;
    state = 'open';
    for (const text of deferred) ws.send(text);
    sent += deferred.length;
    deferred = [];
  });
  const giveUp = (why: string, err?: Error) => {
    if (state === 'failed' || state === 'closed') return;
    const was = state;
    state = 'failed';
    dropped += deferred.length;
    deferred = [];
    logger.warn(
      { url, ...(err !== undefined ? { err } : {}) },
      was === 'open' ? `inspector connection to ${url} lost (${why}): inspection is off for this process` : `inspector at ${url} unreachable (${why}): inspection is off for this process`,
    );
  };
  ws.on('error', (err) => giveUp(err.message || (err as NodeJS.ErrnoException).code || 'error', err));
  ws.on('close', (code) => giveUp(`closed, code ${code}`));

  const inspector = createInspector({
    send(event: StatelyInspectionEvent) {
      if (state === 'open') {
        ws.send(toJson(event));
        sent++;
      } else if (state === 'connecting') {
        deferred.push(toJson(event));
        if (deferred.length > maxDeferred) {
          deferred.shift();
          dropped++;
        }
      } else dropped++;
    },
  });

  return {
    inspect: inspector.inspect,
    get state() {
      return state;
    },
    get sent() {
      return sent;
    },
    get dropped() {
      return dropped;
    },
    close() {
      if (state !== 'failed') state = 'closed';
      dropped += deferred.length;
      deferred = [];
      if (ws.readyState === WebSocket.CLOSED) return Promise.resolve();
      return new Promise<void>((resolve) => {
        ws.once('close', () => resolve());
        if (ws.readyState === WebSocket.CONNECTING) ws.terminate();
        else ws.close();
      });
    },
  };
}
