/**
 * `scatter-saga console`: the operator's web console (src/console/server.ts) on a local
 * port, talking to the coordinator service over NATS, until SIGINT or SIGTERM.
 */
import type { Command } from 'commander';
import { DEFAULT_CONSOLE_HOST, DEFAULT_CONSOLE_PORT, serveConsole } from '../console/server.ts';
import { CliError, connectFromFlags, EXIT } from './connection.ts';
import type { ConnectionFlags } from './connection.ts';
import type { CliIo } from './main.ts';

/** The flags of `console`, besides the connection flags. */
export interface ConsoleFlags extends ConnectionFlags {
  port: string;
  host: string;
  prefix: string;
}

/** The port of `--port`: a whole number from 0 to 65535 (0: any free port). */
export function consolePort(text: string): number {
  const n = Number(text);
  if (text.trim() === '' || !Number.isSafeInteger(n) || n < 0 || n > 65_535) throw new CliError(`--port must be a whole number from 0 to 65535, got '${text}'`, EXIT.usage);
  return n;
}

/** Adds `console` to the program; `withConnection` adds the NATS connection flags. */
export function addConsoleCommand(program: Command, io: CliIo, done: (code: number) => void, withConnection: (cmd: Command) => Command): void {
  withConnection(
    program
      .command('console')
      .description('a web console for operators on a local port: sagas by state, statecharts with live step status, dead letters, retry and resolve (until SIGINT or SIGTERM)')
      .option('--port <port>', 'TCP port (0: any free port)', String(DEFAULT_CONSOLE_PORT))
      .option('--host <host>', 'address to listen on', DEFAULT_CONSOLE_HOST)
      .option('--prefix <prefix>', 'subject prefix of the service', 'saga'),
  ).action(async (opts: ConsoleFlags) => {
    const port = consolePort(opts.port);
    if (opts.host.trim() === '') throw new CliError("--host must be a host name or address, got ''", EXIT.usage);
    const nc = await connectFromFlags(opts);
    try {
      let server;
      try {
        server = await serveConsole(nc, { port, host: opts.host, prefix: opts.prefix });
      } catch (error) {
        throw new CliError(`--port ${port} / --host ${opts.host}: ${(error as Error).message}`, EXIT.usage);
      }
      io.out(`console on ${server.url} for ${opts.prefix}.svc.* at ${nc.getServer()} (Ctrl-C stops)`);
      const signal = await io.stopped;
      io.err(`${signal}: stopping`);
      await server.close();
    } finally {
      await nc.close();
    }
    done(EXIT.ok);
  });
}
