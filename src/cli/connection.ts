/**
 * The NATS connection of a CLI command: the server (`--server`, else `NATS_URL`, else
 * `nats://127.0.0.1:4222`) and its credentials and TLS from flags, each read once and
 * checked, so a bad flag is one clear line and nothing is half-connected.
 */
import { readFileSync } from 'node:fs';
import { connect, credsAuthenticator, nkeyAuthenticator } from '@nats-io/transport-node';
import type { ConnectionOptions, NatsConnection } from '@nats-io/transport-node';

/** The connection flags every command that talks to NATS takes. */
export interface ConnectionFlags {
  server?: string;
  user?: string;
  password?: string;
  token?: string;
  creds?: string;
  nkey?: string;
  tlsCa?: string;
  tlsCert?: string;
  tlsKey?: string;
  /** Seconds to wait for the server. */
  connectTimeout?: string;
}

/** A problem the user can fix (a flag, a file, the server): printed as one line, exit code `code`. */
export class CliError extends Error {
  constructor(
    message: string,
    readonly code: number,
  ) {
    super(message);
    this.name = 'CliError';
  }
}

/** Exit codes of the CLI (docs/cli.md). */
export const EXIT = Object.freeze({ ok: 0, failed: 1, usage: 2, unreachable: 3, noOutcome: 4, compensated: 5, parked: 6, needsReview: 7, fenceFailed: 8 });

function file(flag: string, path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (error) {
    throw new CliError(`--${flag} ${path}: cannot read it (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`, EXIT.usage);
  }
}

/** The connect options the flags ask for. */
export function connectionOptions(flags: ConnectionFlags, env: NodeJS.ProcessEnv = process.env): ConnectionOptions {
  const servers = flags.server ?? env.NATS_URL ?? 'nats://127.0.0.1:4222';
  const o: ConnectionOptions = { servers: servers.split(',').map((s) => s.trim()), name: 'scatter-saga-cli', noAsyncTraces: true, reconnect: false };
  const timeout = flags.connectTimeout === undefined ? 5 : Number(flags.connectTimeout);
  if (!(Number.isFinite(timeout) && timeout > 0)) throw new CliError(`--connect-timeout must be a number of seconds > 0, got '${flags.connectTimeout}'`, EXIT.usage);
  o.timeout = timeout * 1000;
  const auths = [flags.token !== undefined, flags.creds !== undefined, flags.nkey !== undefined, flags.user !== undefined].filter(Boolean).length;
  if (auths > 1) throw new CliError('give one of --user/--password, --token, --creds and --nkey', EXIT.usage);
  if (flags.password !== undefined && flags.user === undefined) throw new CliError('--password needs --user', EXIT.usage);
  if (flags.user !== undefined) {
    o.user = flags.user;
    o.pass = flags.password ?? env.NATS_PASSWORD ?? '';
  }
  if (flags.token !== undefined) o.token = flags.token;
  if (flags.creds !== undefined) o.authenticator = credsAuthenticator(new TextEncoder().encode(file('creds', flags.creds)));
  if (flags.nkey !== undefined) o.authenticator = nkeyAuthenticator(new TextEncoder().encode(file('nkey', flags.nkey).trim()));
  if (flags.tlsCa !== undefined || flags.tlsCert !== undefined || flags.tlsKey !== undefined) {
    if ((flags.tlsCert === undefined) !== (flags.tlsKey === undefined)) throw new CliError('--tls-cert and --tls-key go together', EXIT.usage);
    o.tls = {
      ...(flags.tlsCa !== undefined ? { ca: file('tls-ca', flags.tlsCa) } : {}),
      ...(flags.tlsCert !== undefined ? { cert: file('tls-cert', flags.tlsCert) } : {}),
      ...(flags.tlsKey !== undefined ? { key: file('tls-key', flags.tlsKey) } : {}),
    };
  }
  return o;
}

/** Connects, or fails with one line naming the server and why (unreachable, refused credentials, TLS). */
export async function connectFromFlags(flags: ConnectionFlags, env: NodeJS.ProcessEnv = process.env): Promise<NatsConnection> {
  const o = connectionOptions(flags, env);
  try {
    return await connect(o);
  } catch (error) {
    const e = error as Error & { code?: string };
    const why = /authorization|authentication/i.test(e.message) ? `credentials refused (${e.message})` : e.message;
    throw new CliError(`cannot connect to NATS at ${[o.servers].flat().join(',')}: ${why}`, EXIT.unreachable);
  }
}
