/**
 * The NATS micro service protocol (io.nats.micro.v1, the "Service API" of nats.go's
 * micro and nats.js's services), on core NATS: the `$SRV` discovery subjects, their
 * PING / INFO / STATS responses, per-endpoint statistics, and the error headers a
 * micro service sets on an error reply. With it, `nats micro ls|info|stats` and any
 * micro-aware tool see the coordinator service.
 */
import { randomBytes } from 'node:crypto';
import { headers as natsHeaders } from '@nats-io/transport-node';
import type { MsgHdrs, NatsConnection, Subscription } from '@nats-io/transport-node';
import type { Logger } from '../types.ts';

/** The header of a micro error reply with its description, and the one with its code. */
export const MICRO_ERROR = 'Nats-Service-Error';
export const MICRO_ERROR_CODE = 'Nats-Service-Error-Code';

/** A micro service's name: `[A-Za-z0-9_-]+`. */
export const MICRO_NAME = /^[A-Za-z0-9_-]{1,64}$/;
/** A micro service's version: SemVer 2.0 (the pattern the micro schemas use). */
export const SEMVER =
  /^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$/;

export type MicroVerb = 'PING' | 'INFO' | 'STATS';

/** What identifies one running instance of a service. */
export interface MicroIdentity {
  readonly name: string;
  /** Unique to this instance. */
  readonly id: string;
  readonly version: string;
  readonly metadata: Readonly<Record<string, string>>;
}

/** One endpoint as INFO describes it. */
export interface MicroEndpointInfo {
  readonly name: string;
  readonly subject: string;
  readonly queue_group: string;
  readonly metadata: Readonly<Record<string, string>> | null;
}

/** One endpoint's statistics as STATS reports them; times in nanoseconds. */
export interface MicroEndpointStats {
  readonly name: string;
  readonly subject: string;
  readonly queue_group: string;
  readonly num_requests: number;
  readonly num_errors: number;
  readonly last_error: string;
  readonly processing_time: number;
  readonly average_processing_time: number;
}

/** The answer to `$SRV.PING`. */
export interface MicroPing extends MicroIdentity {
  readonly type: 'io.nats.micro.v1.ping_response';
}
/** The answer to `$SRV.INFO`. */
export interface MicroInfo extends MicroIdentity {
  readonly type: 'io.nats.micro.v1.info_response';
  readonly description: string;
  readonly endpoints: readonly MicroEndpointInfo[];
}
/** The answer to `$SRV.STATS`. */
export interface MicroStats extends MicroIdentity {
  readonly type: 'io.nats.micro.v1.stats_response';
  /** When this instance started, ISO 8601 in UTC. */
  readonly started: string;
  readonly endpoints: readonly MicroEndpointStats[];
}

/** An instance id: 22 characters of A-Z 0-9, like a NUID. */
export function microId(): string {
  const alphabet = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ';
  let id = '';
  for (const b of randomBytes(22)) id += alphabet[b % alphabet.length];
  return id;
}

/** The subjects one verb is answered on: for every service, for the services of a name, for this instance. */
export function verbSubjects(verb: MicroVerb, name: string, id: string): string[] {
  return [`$SRV.${verb}`, `$SRV.${verb}.${name}`, `$SRV.${verb}.${name}.${id}`];
}

/** The headers of a micro error reply. `status` is an HTTP-like number, e.g. 400 for a malformed request. */
export function microErrorHeaders(status: number, description: string, into: MsgHdrs = natsHeaders()): MsgHdrs {
  // A header value is one line.
  into.set(MICRO_ERROR, description.replace(/[\r\n]+/g, ' ').slice(0, 1024));
  into.set(MICRO_ERROR_CODE, String(status));
  return into;
}

/** Counts one endpoint's requests, errors and processing time. */
export class EndpointCounter {
  private requests = 0;
  private errors = 0;
  private lastError = '';
  private nanos = 0n;

  constructor(readonly info: MicroEndpointInfo) {}

  /** One request answered after `nanos`, with `error` (`<code>: <message>`) when the reply was an error. */
  record(nanos: bigint, error?: string): void {
    this.requests += 1;
    this.nanos += nanos;
    if (error !== undefined) {
      this.errors += 1;
      this.lastError = error;
    }
  }

  stats(): MicroEndpointStats {
    const total = Number(this.nanos);
    return {
      name: this.info.name,
      subject: this.info.subject,
      queue_group: this.info.queue_group,
      num_requests: this.requests,
      num_errors: this.errors,
      last_error: this.lastError,
      processing_time: total,
      average_processing_time: this.requests === 0 ? 0 : Math.round(total / this.requests),
    };
  }
}

/** The three discovery responses of a service, built from its identity and endpoints. */
export function microResponses(identity: MicroIdentity, description: string, started: Date, endpoints: readonly EndpointCounter[]) {
  const base = { name: identity.name, id: identity.id, version: identity.version, metadata: identity.metadata };
  return {
    ping: (): MicroPing => ({ type: 'io.nats.micro.v1.ping_response', ...base }),
    info: (): MicroInfo => ({ type: 'io.nats.micro.v1.info_response', ...base, description, endpoints: endpoints.map((e) => e.info) }),
    stats: (): MicroStats => ({ type: 'io.nats.micro.v1.stats_response', ...base, started: started.toISOString(), endpoints: endpoints.map((e) => e.stats()) }),
  };
}

/**
 * Answers `$SRV.PING|INFO|STATS` (all three subject forms each) for one service instance.
 * These subscriptions take no queue group: every instance answers, which is how tools
 * count them. Resolves with a function that unsubscribes them.
 */
export function serveDiscovery(nc: NatsConnection, identity: MicroIdentity, responses: ReturnType<typeof microResponses>, logger: Logger): () => void {
  const subs: Subscription[] = [];
  for (const verb of ['PING', 'INFO', 'STATS'] as const) {
    const respond = verb === 'PING' ? responses.ping : verb === 'INFO' ? responses.info : responses.stats;
    for (const subject of verbSubjects(verb, identity.name, identity.id)) {
      subs.push(
        nc.subscribe(subject, {
          callback: (err, msg) => {
            if (err !== null) {
              logger.error({ err, subject }, 'discovery subscription error');
              return;
            }
            if (msg.reply === undefined || msg.reply === '') return;
            try {
              msg.respond(JSON.stringify(respond()));
            } catch (error) {
              logger.error({ err: error, subject }, 'could not answer a discovery request');
            }
          },
        }),
      );
    }
  }
  return () => {
    for (const s of subs) if (!s.isClosed()) s.unsubscribe();
  };
}
