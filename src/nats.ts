/**
 * scatter-saga/nats: sagas whose workers run in other processes, reached over NATS.
 *
 * - `natsTransport(nc)` for coordinators: `createRuntime({ transport: natsTransport(nc) })`.
 * - `serveWorkers(nc, workers)` for worker hosts: the generic worker host given a NATS
 *   transport, with queue groups, bounded concurrency and a graceful drain on SIGTERM.
 * - `jetstreamDedupStore(nc)` so a restarted host remembers every idempotency key.
 * - `jetstreamSagaStore(nc)` so a restarted coordinator can `recover()` its sagas.
 * - `serveCoordinator(nc, runtime)` offers a runtime as a NATS micro service (start,
 *   status, outcome, list, retry, resolve, dead letters; `$SRV` discovery), and
 *   `sagaClient(nc)` is its client for other TypeScript services.
 * - `serveConsole(nc)` is the operator's web console over that service (docs/console.md).
 *
 * The wire protocol is documented in docs/protocol.md.
 */
import type { NatsConnection } from '@nats-io/transport-node';
import { createWorkerHost } from './actors/worker-host.ts';
import { InvalidOptionError } from './errors.ts';
import { natsTransport } from './transport/nats/transport.ts';
import type { NatsTransport, NatsTransportOptions } from './transport/nats/transport.ts';
import type { Clock, DedupStore, Logger, WorkerDefinition } from './types.ts';

export { natsTransport, DEFAULT_CONCURRENCY, DEFAULT_MAX_PENDING, DEFAULT_QUEUE, DEFAULT_PING_TIMEOUT_MS, DEFAULT_SERVED_CACHE_MS } from './transport/nats/transport.ts';
export { DEFAULT_MAX_PAYLOAD, DEFAULT_PREFIX } from './transport/nats/wire.ts';
export { jetstreamDedupStore, jetstreamSagaStore, kvKeyOf, DEFAULT_KV_DEDUP_WINDOW_MS, MIN_SAFE_CLUSTERED_SERVER } from './store/jetstream.ts';
export type { NatsTransport, NatsTransportOptions } from './transport/nats/transport.ts';
export type { JetStreamDedupStore, JetStreamDedupStoreOptions, JetStreamSagaStoreOptions } from './store/jetstream.ts';
export { serveCoordinator, DEFAULT_SERVICE_DRAIN_MS, DEFAULT_SERVICE_NAME, DEFAULT_SERVICE_QUEUE, DEFAULT_SERVICE_VERSION } from './service/coordinator.ts';
export type { CoordinatorService, ServeCoordinatorOptions } from './service/coordinator.ts';
export { sagaClient, DEFAULT_CLIENT_TIMEOUT_MS } from './service/client.ts';
export type { ClientResolveOptions, ClientStartOptions, SagaClient, SagaClientOptions, SagaList, SagaWatch } from './service/client.ts';
export { DEFAULT_SERVICE_WAIT_MS, MAX_SERVICE_WAIT_MS, SERVICE_ENDPOINTS } from './service/protocol.ts';
export type { SagaEvent, ServiceEndpoint } from './service/protocol.ts';
export type { SagaGraph, SagaGraphState, SagaGraphStep } from './diagram.ts';
export { serveConsole, serveRuntimeConsole, DEFAULT_CONSOLE_HOST, DEFAULT_CONSOLE_PORT } from './console/server.ts';
export type { ConsoleServer, ResolveReview, SeenStepEvent, ServeConsoleOptions } from './console/server.ts';
export type { MicroEndpointInfo, MicroEndpointStats, MicroInfo, MicroPing, MicroStats } from './service/micro.ts';
export { ServiceError } from './errors.ts';

/** The options of `serveWorkers`. */
export interface ServeWorkersOptions {
  /** Queue group: hosts in the same group share each worker's requests. Default `'saga-workers'`. */
  queue?: string;
  /** Requests run at once by this host, across its workers. Default 64. */
  concurrency?: number;
  /** Requests that may wait for a slot; beyond that a request is refused with `OVERLOADED` (nothing ran; the coordinator sends it again later, spending no retry). Default 1024. */
  maxPending?: number;
  /**
   * Where key records live. Every host serving a worker must share one store: use
   * `jetstreamDedupStore(nc)` whenever more than one host serves a worker, or a host must
   * survive a restart. Default: in memory (this host only, 1 hour, bounded).
   */
  dedup?: DedupStore;
  /** How long a claim on a key holds without renewal; other hosts take a dead host's keys over after it. Default 10_000. */
  leaseMs?: number;
  /** pino logger. Default: silent. */
  logger?: Logger;
  /** Subject prefix. Default `'saga'`. */
  prefix?: string;
  /** Largest request or reply body in bytes. Default 1 MiB. */
  maxPayload?: number;
  /** The source of time for key records. Default: the system clock. */
  clock?: Clock;
  /**
   * Signals that drain the host (take nothing new, finish what is in flight) and then
   * take their default effect (the process exits) unless something else listens to
   * them. Default `['SIGTERM']`; `[]` installs no handler.
   */
  signals?: readonly NodeJS.Signals[];
}

/** A running worker host. */
export interface WorkerServer {
  /** The workers served. */
  readonly workers: readonly string[];
  readonly transport: NatsTransport;
  /** Requests running / waiting for a slot right now. */
  readonly load: { readonly running: number; readonly pending: number };
  /** Takes nothing new (unsubscribes), finishes what is in flight, flushes the replies. Idempotent. */
  drain(): Promise<void>;
  /** Same as {@link drain}. */
  stop(): Promise<void>;
  /** Resolves once the host has drained, whatever started the drain. */
  readonly drained: Promise<void>;
}

/**
 * Serves workers over NATS from this process.
 *
 * @example
 * const nc = await connect({ servers: process.env.NATS_URL });
 * const host = await serveWorkers(nc, [flights, hotels, cars], { dedup: jetstreamDedupStore(nc) });
 * // SIGTERM now drains the host, then the process exits.
 */
export async function serveWorkers(nc: NatsConnection, workers: readonly WorkerDefinition[], options: ServeWorkersOptions = {}): Promise<WorkerServer> {
  if (options === null || typeof options !== 'object') throw new InvalidOptionError('options', 'must be an object');
  const allowed = ['queue', 'concurrency', 'maxPending', 'dedup', 'logger', 'prefix', 'maxPayload', 'clock', 'signals', 'leaseMs'];
  for (const k of Object.keys(options)) if (!allowed.includes(k)) throw new InvalidOptionError(k, `unknown option (allowed: ${allowed.join(', ')})`);
  if (!Array.isArray(workers) || workers.length === 0) throw new InvalidOptionError('workers', 'must be a non-empty array of defineWorker(...) definitions');
  const signals = options.signals ?? ['SIGTERM'];
  if (!Array.isArray(signals)) throw new InvalidOptionError('signals', "must be an array of signal names, e.g. ['SIGTERM']");

  const t: NatsTransportOptions = {};
  for (const k of ['queue', 'concurrency', 'maxPending', 'prefix', 'maxPayload', 'logger'] as const) {
    if (options[k] !== undefined) (t as Record<string, unknown>)[k] = options[k];
  }
  const transport = natsTransport(nc, t);
  const host = createWorkerHost(workers, {
    ...(options.dedup !== undefined ? { dedup: options.dedup } : {}),
    ...(options.clock !== undefined ? { clock: options.clock } : {}),
    ...(options.logger !== undefined ? { logger: options.logger } : {}),
    ...(options.leaseMs !== undefined ? { leaseMs: options.leaseMs } : {}),
  });
  const served = await host.serve(transport);
  await nc.flush(); // subscriptions are registered on the server before we say we serve
  const logger = options.logger;
  logger?.info({ workers: host.workers, prefix: transport.prefix }, 'serving workers over NATS');

  let resolveDrained!: () => void;
  const drained = new Promise<void>((r) => (resolveDrained = r));
  let draining: Promise<void> | undefined;
  const listeners = new Map<NodeJS.Signals, () => void>();

  const drain = (): Promise<void> => {
    draining ??= (async () => {
      for (const [sig, l] of listeners) process.off(sig, l);
      logger?.info({ workers: host.workers, ...transport.load }, 'draining: taking nothing new, finishing what is in flight');
      await served.stop();
      await transport.close();
      logger?.info({ workers: host.workers }, 'drained');
      resolveDrained();
    })();
    return draining;
  };

  for (const sig of signals) {
    const listener = () => {
      void drain().then(
        async () => {
          // The last log lines reach their destination before the process goes.
          await new Promise<void>((resolve) => {
            try {
              if (typeof logger?.flush === 'function') logger.flush(() => resolve());
              else resolve();
            } catch {
              resolve();
            }
          });
          // Nobody else handles this signal: let it do what it does by default.
          if (process.listenerCount(sig) === 0) process.kill(process.pid, sig);
        },
        (error: unknown) => {
          logger?.error({ err: error }, 'drain failed');
          process.exit(1);
        },
      );
    };
    listeners.set(sig, listener);
    process.once(sig, listener);
  }

  return {
    workers: host.workers,
    transport,
    get load() {
      return transport.load;
    },
    drain,
    stop: drain,
    drained,
  };
}
