/**
 * The `scatter-saga` command line (docs/cli.md): `demo`, `graph`, `worker`, `coordinator`, and
 * the commands that talk to a coordinator service over NATS (`start`, `status`, `list`,
 * `retry`, `resolve`, `abort`, `dead-letters`). `runCli(argv)` parses with commander and
 * resolves with the exit code; a problem the user can fix is one line on stderr (the stack
 * only with `--verbose`), never a stack trace.
 */
import { randomUUID } from 'node:crypto';
import { Command, CommanderError, Option } from 'commander';
import pino from 'pino';
import { toMermaid } from '../diagram.ts';
import { SagaError, ServiceError } from '../errors.ts';
import type { FencedEffect } from '../errors.ts';
import { createRuntime } from '../runtime.ts';
import { jetstreamDedupStore, jetstreamSagaStore, natsTransport, sagaClient, serveCoordinator, serveWorkers } from '../nats.ts';
import type { SagaClient } from '../nats.ts';
import type { SagaOutcome } from '../types.ts';
import { memoryDedupStore } from '../store/memory.ts';
import { CliError, connectFromFlags, EXIT } from './connection.ts';
import type { ConnectionFlags } from './connection.ts';
import { loadDefinitions } from './modules.ts';
import { addConsoleCommand } from './console-command.ts';

/** Where a command writes; the process's stdout and stderr by default. */
export interface CliIo {
  out(line: string): void;
  err(line: string): void;
  /** Resolves when the process is asked to stop (SIGINT or SIGTERM): long-running commands drain then. */
  stopped: Promise<NodeJS.Signals>;
  /** stderr is a terminal: commands that wait show their saga's progress there unless told not to. Default false. */
  errIsTerminal?: boolean;
}

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

function connectionOptions(cmd: Command): Command {
  return cmd
    .option('-s, --server <urls>', 'NATS server URL(s), comma-separated (default: $NATS_URL, else nats://127.0.0.1:4222)')
    .option('--user <user>', 'NATS user (password from --password or $NATS_PASSWORD)')
    .option('--password <password>', 'NATS password')
    .option('--token <token>', 'NATS token')
    .option('--creds <file>', 'NATS credentials file (JWT and nkey seed)')
    .option('--nkey <file>', 'NATS nkey seed file')
    .option('--tls-ca <file>', 'CA certificate to verify the server (PEM)')
    .option('--tls-cert <file>', 'client certificate (PEM), with --tls-key')
    .option('--tls-key <file>', 'client key (PEM), with --tls-cert')
    .option('--connect-timeout <seconds>', 'how long to wait for the server', '5');
}

function positiveInt(flag: string, text: string): number {
  const n = Number(text);
  if (!Number.isSafeInteger(n) || n < 1) throw new CliError(`${flag} must be a whole number >= 1, got '${text}'`, EXIT.usage);
  return n;
}

/** Builds the program; each action resolves with its exit code. */
export function buildProgram(io: CliIo, done: (code: number) => void): Command {
  const program = new Command('scatter-saga')
    .description('Scatter-gather sagas that never end half-committed: run the demo, serve workers, draw sagas.')
    .option('--verbose', 'print the stack of an error')
    .exitOverride()
    .configureOutput({ writeOut: (s) => io.out(s.replace(/\n$/, '')), writeErr: (s) => io.err(s.replace(/\n$/, '')) });

  program
    .command('demo')
    .description('run the trip-booking demo on the embedded runtime: a flight, a hotel and a car, three scenarios')
    .option('--json', 'print the outcomes as one JSON line')
    .option('--console', 'instead: keep running trips and serve the web console for them (no server needed), until Ctrl-C')
    .option('--port <port>', 'with --console: the console port', '8080')
    .option('--host <host>', 'with --console: the address to listen on', '127.0.0.1')
    .action(async (opts: { json?: boolean; console?: boolean; port: string; host: string }) => {
      if (opts.console === true) {
        const port = Number(opts.port);
        if (!Number.isSafeInteger(port) || port < 0 || port > 65_535) throw new CliError(`--port must be a whole number from 0 to 65535, got '${opts.port}'`, EXIT.usage);
        const { runConsoleDemo } = await import('../demo/trip.ts');
        await runConsoleDemo({ port, host: opts.host, say: (line) => io.out(line), stopped: io.stopped });
        done(EXIT.ok);
        return;
      }
      const { runScenario } = await import('../demo/trip.ts');
      const scenarios = [
        ['everything succeeds', 'ok'],
        ['the hotel is full: flight and car are cancelled', 'fails'],
        ['the hotel answers after its timeout: in doubt, so undone, late success included', 'slow'],
      ] as const;
      const results = [];
      for (const [name, behaviour] of scenarios) {
        const r = await runScenario(name, behaviour);
        results.push({ name, status: r.outcome.status, held: r.held });
        if (opts.json !== true) io.out(`${name}: ${r.outcome.status}\n${r.report}`);
      }
      if (opts.json === true) io.out(JSON.stringify(results));
      done(results.every((r) => r.held.flights + r.held.hotels + r.held.cars === (r.status === 'committed' ? 3 : 0)) ? EXIT.ok : EXIT.failed);
    });

  program
    .command('graph')
    .description("print each saga of a module as a Mermaid state diagram (its machine, stages and steps)")
    .argument('<module>', 'a JavaScript module exporting saga definitions (defineSaga)')
    .option('--saga <name>', 'only this saga (name, or name@version)')
    .option('--loops', 'also draw the transitions that stay in their state')
    .addOption(new Option('--direction <dir>', 'layout direction').choices(['LR', 'TB']).default('LR'))
    .action(async (module: string, opts: { saga?: string; loops?: boolean; direction: 'LR' | 'TB' }) => {
      const { sagas } = await loadDefinitions(module);
      const chosen = opts.saga === undefined ? sagas : sagas.filter((s) => s.name === opts.saga || `${s.name}@${s.version}` === opts.saga);
      if (chosen.length === 0) {
        const known = sagas.map((s) => `${s.name}@${s.version}`).join(', ');
        throw new CliError(opts.saga === undefined ? `${module} exports no saga definition` : `${module} has no saga '${opts.saga}' (it has: ${known || 'none'})`, EXIT.usage);
      }
      for (const s of chosen) io.out(`%% ${s.name}@${s.version}\n${toMermaid(s, { loops: opts.loops === true, direction: opts.direction }).trimEnd()}`);
      done(EXIT.ok);
    });

  connectionOptions(
    program
      .command('worker')
      .description('serve the workers a module exports over NATS (a worker host), until SIGINT or SIGTERM drains it')
      .argument('<module>', 'a JavaScript module exporting worker definitions (defineWorker)')
      .option('--concurrency <n>', 'requests run at once', '64')
      .addOption(new Option('--dedup <store>', 'where key records live').choices(['jetstream', 'memory']).default('jetstream'))
      .option('--prefix <prefix>', 'subject prefix', 'saga')
      .addOption(new Option('--log-level <level>', 'pino log level (JSON lines on stderr)').choices(LOG_LEVELS).default('info')),
  ).action(async (module: string, opts: ConnectionFlags & { concurrency: string; dedup: 'jetstream' | 'memory'; prefix: string; logLevel: string }) => {
    const concurrency = positiveInt('--concurrency', opts.concurrency);
    const { workers } = await loadDefinitions(module);
    if (workers.length === 0) throw new CliError(`${module} exports no worker definition`, EXIT.usage);
    const nc = await connectFromFlags(opts);
    const logger = pino({ level: opts.logLevel }, pino.destination(2));
    try {
      const host = await serveWorkers(nc, workers, {
        concurrency,
        prefix: opts.prefix,
        logger,
        signals: [],
        dedup: opts.dedup === 'memory' ? memoryDedupStore() : jetstreamDedupStore(nc),
      });
      io.out(`serving ${host.workers.join(', ')} on ${nc.getServer()} (Ctrl-C drains and stops)`);
      const signal = await io.stopped;
      io.err(`${signal}: draining`);
      await host.drain();
    } finally {
      await nc.close();
    }
    done(EXIT.ok);
  });

  connectionOptions(
    program
      .command('coordinator')
      .description('a coordinator serving the sagas a module exports as the NATS coordinator service (journals in JetStream), until SIGINT or SIGTERM')
      .argument('<module>', 'a JavaScript module exporting saga definitions (defineSaga)')
      .option('--prefix <prefix>', 'subject prefix', 'saga')
      .option('--no-recover', 'do not take up the unfinished sagas of the store at start')
      .addOption(new Option('--log-level <level>', 'pino log level (JSON lines on stderr)').choices(LOG_LEVELS).default('info')),
  ).action(async (module: string, opts: ConnectionFlags & { prefix: string; recover: boolean; logLevel: string }) => {
    const { sagas } = await loadDefinitions(module);
    if (sagas.length === 0) throw new CliError(`${module} exports no saga definition`, EXIT.usage);
    const nc = await connectFromFlags(opts);
    const logger = pino({ level: opts.logLevel }, pino.destination(2));
    const runtime = createRuntime({ transport: natsTransport(nc, { prefix: opts.prefix }), store: jetstreamSagaStore(nc), sagas, logger });
    try {
      const service = await serveCoordinator(nc, runtime, { prefix: opts.prefix, logger });
      const recovered = opts.recover ? await runtime.recover() : [];
      io.out(`coordinator ${runtime.coordinatorId} serving ${sagas.map((d) => `${d.name}@${d.version}`).join(', ')} on ${nc.getServer()} (${opts.prefix}.svc.*; ${recovered.length} saga(s) recovered; Ctrl-C stops)`);
      const signal = await io.stopped;
      io.err(`${signal}: stopping`);
      await service.stop();
    } finally {
      await runtime.close();
      await nc.close();
    }
    done(EXIT.ok);
  });

  /** A command that asks the coordinator service, with the connection and output flags. */
  const client = (name: string, description: string) =>
    connectionOptions(
      program
        .command(name)
        .description(description)
        .option('--prefix <prefix>', 'subject prefix of the service', 'saga')
        .option('--timeout <seconds>', 'how long to wait for a reply', '5')
        .option('--json', 'print the reply as JSON'),
    );
  type ClientFlags = ConnectionFlags & { prefix: string; timeout: string; json?: boolean };
  const withClient = async <T>(opts: ClientFlags, f: (c: SagaClient, timeoutMs: number) => Promise<T>): Promise<T> => {
    const seconds = Number(opts.timeout);
    if (!(Number.isFinite(seconds) && seconds > 0)) throw new CliError(`--timeout must be a number of seconds > 0, got '${opts.timeout}'`, EXIT.usage);
    const nc = await connectFromFlags(opts);
    try {
      return await f(sagaClient(nc, { prefix: opts.prefix, timeoutMs: seconds * 1000 }), seconds * 1000);
    } finally {
      await nc.close();
    }
  };
  /**
   * Runs `f` while printing the saga's step events on stderr, one line each, when asked
   * (`--progress`, on by default when stderr is a terminal and the output is not JSON).
   */
  const withProgress = async <T>(opts: ClientFlags & { progress?: boolean }, c: SagaClient, sagaId: string, f: () => Promise<T>): Promise<T> => {
    const on = opts.progress ?? (io.errIsTerminal === true && opts.json !== true);
    if (!on) return f();
    const watch = c.watch(sagaId);
    await watch.ready;
    const t0 = Date.now();
    const printing = (async () => {
      for await (const e of watch) {
        const at = `+${((Date.now() - t0) / 1000).toFixed(1)}s`;
        if (e.type === 'step') io.err(`${at} ${e.stepId} (${e.worker}): ${e.status}${e.attempt > 1 ? `, attempt ${e.attempt}` : ''}${e.compensationAttempt > 1 ? `, undo attempt ${e.compensationAttempt}` : ''}`);
        else if (e.type === 'escalation') io.err(`${at} parked: ${e.remaining.map((r) => r.stepId).join(', ')} still held`);
        else io.err(`${at} ${e.outcome.status}`);
      }
    })();
    try {
      return await f();
    } finally {
      watch.stop();
      await printing.catch(() => undefined);
    }
  };
  const progressOption = (cmd: Command) => cmd.option('--progress', "print the saga's step events on stderr while waiting (default: when stderr is a terminal)").option('--no-progress', 'do not');
  const show = (opts: { json?: boolean }, value: unknown, text: () => string) => io.out(opts.json === true ? JSON.stringify(value ?? null) : text());
  /** The exit code of an outcome: 0 committed, 5 compensated, 6 parked, 4 none in time. */
  const outcomeCode = (o: SagaOutcome | undefined) => (o === undefined ? EXIT.noOutcome : o.status === 'committed' ? EXIT.ok : o.status === 'compensated' ? EXIT.compensated : EXIT.parked);
  const outcomeText = (o: SagaOutcome | undefined) => {
    if (o === undefined) return 'no outcome yet (the saga goes on)';
    switch (o.status) {
      case 'committed':
        return `committed: ${Object.keys(o.results).join(', ') || 'no steps kept'}`;
      case 'compensated':
        return `compensated: ${o.failures.map((f) => `${f.stepId} ${f.reason} (${f.error.code}: ${f.error.message})`).join('; ')}`;
      case 'compensation-failed':
        return `compensation-failed, parked: still held ${o.remaining.map((r) => `${r.stepId} on ${r.worker}`).join(', ')}`;
    }
  };
  const parseInput = (text: string | undefined): unknown => {
    if (text === undefined) return null;
    try {
      return JSON.parse(text) as unknown;
    } catch (error) {
      throw new CliError(`the input is not JSON: ${(error as Error).message}`, EXIT.usage);
    }
  };

  client('start', 'start a saga by name on the coordinator service; with --wait, wait for its outcome')
    .argument('<saga>', 'the saga name (its highest version, unless --version)')
    .argument('[input]', 'the saga input as JSON (default null)')
    .option('--saga-id <id>', 'a saga id of your own: starting again with it is the same saga')
    .option('--version <n>', 'the saga version')
    .option('--wait', 'wait for the outcome (exit 0 committed, 5 compensated, 6 parked, 4 none within --timeout)')
    .option('--progress', "with --wait: print the saga's step events on stderr (default: when stderr is a terminal)")
    .option('--no-progress', 'do not')
    .action(async (saga: string, inputText: string | undefined, opts: ClientFlags & { sagaId?: string; version?: string; wait?: boolean; progress?: boolean }) => {
      const input = parseInput(inputText);
      const version = opts.version === undefined ? undefined : positiveInt('--version', opts.version);
      const code = await withClient(opts, async (c, timeoutMs) => {
        const base = { ...(opts.sagaId !== undefined ? { sagaId: opts.sagaId } : {}), ...(version !== undefined ? { version } : {}) };
        if (opts.wait === true) {
          // A saga id known before the start, so that its events can be watched from the first.
          const sagaId = opts.sagaId ?? randomUUID();
          const r = await withProgress(opts, c, sagaId, () => c.start(saga, input, { ...base, sagaId, wait: true, timeoutMs }));
          show(opts, r, () => `${r.sagaId} ${outcomeText(r.outcome)}`);
          return outcomeCode(r.outcome);
        }
        const r = await c.start(saga, input, base);
        show(opts, r, () => r.sagaId);
        return EXIT.ok;
      });
      done(code);
    });

  client('status', "a saga's machine state and each step's status")
    .argument('<sagaId>')
    .action(async (sagaId: string, opts: ClientFlags) => {
      const s = await withClient(opts, (c) => c.status(sagaId));
      if (s === undefined) throw new CliError(`no saga '${sagaId}' in the store`, EXIT.failed);
      show(opts, s, () => [`${s.sagaId} ${s.saga}@${s.version} ${s.state}`, ...Object.entries(s.steps).map(([id, st]) => `  ${id}: ${st}`), ...(s.outcome !== undefined ? [`  outcome: ${outcomeText(s.outcome)}`] : [])].join('\n'));
      done(EXIT.ok);
    });

  client('list', 'the running and parked sagas, oldest first')
    .addOption(new Option('--status <status>', 'only these').choices(['running', 'parked']))
    .option('--limit <n>', 'at most this many', '1000')
    .action(async (opts: ClientFlags & { status?: 'running' | 'parked'; limit: string }) => {
      const limit = positiveInt('--limit', opts.limit);
      const r = await withClient(opts, (c) => c.list({ ...(opts.status !== undefined ? { status: opts.status } : {}), limit }));
      show(opts, r, () => [...r.sagas.map((x) => `${x.sagaId} ${x.saga}@${x.version} ${x.status} since ${new Date(x.startedAt).toISOString()}`), ...(r.truncated ? [`(more than ${limit})`] : [])].join('\n') || '(none)');
      done(EXIT.ok);
    });

  client('dead-letters', 'the parked sagas and the effects each still holds')
    .action(async (opts: ClientFlags) => {
      const letters = await withClient(opts, (c) => c.deadLetters());
      show(opts, letters, () => letters.map((d) => `${d.sagaId} ${d.saga}@${d.version} parked ${d.timesParked}x: ${d.remaining.map((r) => `${r.stepId} on ${r.worker}${r.inDoubt ? ' (in doubt)' : ''}`).join(', ')}`).join('\n') || '(none)');
      done(EXIT.ok);
    });

  progressOption(client('retry', "operator: resume a parked saga's compensation with fresh retry budgets, and wait for its next outcome"))
    .argument('<sagaId>')
    .action(async (sagaId: string, opts: ClientFlags & { progress?: boolean }) => {
      const o = await withClient(opts, (c, timeoutMs) => withProgress(opts, c, sagaId, () => c.retry(sagaId, { timeoutMs })));
      show(opts, o, () => outcomeText(o));
      done(outcomeCode(o));
    });

  progressOption(client('abort', 'operator: abort a running saga (every step that committed or may have is undone), and wait for its outcome'))
    .argument('<sagaId>')
    .option('--note <text>', 'why, for the record')
    .action(async (sagaId: string, opts: ClientFlags & { note?: string; progress?: boolean }) => {
      const o = await withClient(opts, (c, timeoutMs) => withProgress(opts, c, sagaId, () => c.abort(sagaId, opts.note, { timeoutMs })));
      show(opts, o, () => outcomeText(o));
      done(outcomeCode(o));
    });

  /** A word the shell takes as it is, else single-quoted. */
  const shellWord = (w: string) => (/^[A-Za-z0-9_.,:@%+=\/-]+$/.test(w) ? w : `'${w.replace(/'/g, `'\\''`)}'`);
  const fenceText = (f: FencedEffect) =>
    `  ${f.stepId} (worker ${f.worker}${f.inDoubt ? ', in doubt' : ''}): ${f.verdict}${f.fence !== undefined ? `, the fence found ${f.fence.was}` : ''}${f.error !== undefined ? `, ${f.error.code}: ${f.error.message}` : ''}`;

  progressOption(client('resolve', "operator: declare a parked saga's remaining effects handled by hand (their keys are fenced first)"))
    .argument('<sagaId>')
    .option('--note <text>', 'why, for the record')
    .option('--reviewed <token>', 'the review token a resolve that needed a review printed: you have looked at the system of record again since')
    .option('--force', 'do not fence the keys (their worker is gone for good); unsafe: nothing stops a late do')
    .option('--fence-timeout <seconds>', 'how long each fence may wait for its key, less than --timeout (default: half of --timeout, at most 10)')
    .action(async (sagaId: string, opts: ClientFlags & { note?: string; reviewed?: string; force?: boolean; fenceTimeout?: string; progress?: boolean }) => {
      let fenceTimeoutMs: number | undefined;
      if (opts.fenceTimeout !== undefined) {
        const seconds = Number(opts.fenceTimeout);
        if (!(Number.isFinite(seconds) && seconds > 0)) throw new CliError(`--fence-timeout must be a number of seconds > 0, got '${opts.fenceTimeout}'`, EXIT.usage);
        fenceTimeoutMs = Math.max(1, Math.round(seconds * 1000));
        if (!(fenceTimeoutMs < Number(opts.timeout) * 1000)) throw new CliError(`--fence-timeout must be less than --timeout (${opts.timeout} s): the resolve waits for its fences within it`, EXIT.usage);
      }
      if (opts.force === true) io.err('scatter-saga: warning: --force resolves without fencing the keys: nothing stops a late do of the remaining effects from applying after the saga ends');
      const options = {
        ...(opts.note !== undefined ? { note: opts.note } : {}),
        ...(opts.reviewed !== undefined ? { reviewed: opts.reviewed } : {}),
        ...(opts.force === true ? { force: true } : {}),
        ...(fenceTimeoutMs !== undefined ? { fenceTimeoutMs } : {}),
      };
      let o: SagaOutcome | undefined;
      try {
        o = await withClient(opts, (c, timeoutMs) => withProgress(opts, c, sagaId, () => c.resolve(sagaId, { ...options, timeoutMs })));
      } catch (error) {
        if (!(error instanceof ServiceError) || (error.code !== 'RESOLVE_NEEDS_REVIEW' && error.code !== 'FENCE_FAILED')) throw error;
        const fences = error.fences ?? [];
        if (opts.json === true) io.out(JSON.stringify({ code: error.code, message: error.message, retryable: error.retryable, fences, ...(error.review !== undefined ? { review: error.review } : {}) }));
        io.err(`scatter-saga: ${error.code}: ${error.message}`);
        if (opts.json !== true) {
          if (error.code === 'RESOLVE_NEEDS_REVIEW') {
            io.err('these effects may have landed after you looked (their keys are fenced now: no do of them can apply any more):');
            for (const f of fences.filter((x) => x.verdict === 'review')) io.err(fenceText(f));
            const again = ['scatter-saga', 'resolve', sagaId, '--reviewed', error.review ?? '', ...(opts.note !== undefined ? ['--note', opts.note] : []), ...(opts.prefix !== 'saga' ? ['--prefix', opts.prefix] : [])];
            io.err('look at the system of record again, undo by hand what is there, then run (with your connection flags):');
            io.err(`  ${again.map(shellWord).join(' ')}`);
          } else {
            io.err('these keys could not be fenced; the saga stays parked:');
            for (const f of fences.filter((x) => x.verdict === 'failed')) io.err(fenceText(f));
            io.err("resolve again once the worker's hosts answer; if the worker is gone for good, resolve with --force");
          }
        }
        done(error.code === 'RESOLVE_NEEDS_REVIEW' ? EXIT.needsReview : EXIT.fenceFailed);
        return;
      }
      show(opts, o, () => outcomeText(o));
      done(outcomeCode(o));
    });

  addConsoleCommand(program, io, done, connectionOptions);

  return program;
}

/** Runs the CLI on `argv` (without node and the script); resolves with the exit code. */
export async function runCli(argv: readonly string[], io: CliIo): Promise<number> {
  let code: number | undefined;
  const program = buildProgram(io, (c) => (code = c));
  const verbose = argv.includes('--verbose');
  try {
    await program.parseAsync([...argv], { from: 'user' });
    return code ?? EXIT.ok;
  } catch (error) {
    if (error instanceof CommanderError) {
      // --help and --version end here too, with exit code 0; commander has printed what it had to.
      return error.exitCode === 0 ? EXIT.ok : EXIT.usage;
    }
    if (error instanceof CliError) io.err(`scatter-saga: ${error.message}`);
    else if (error instanceof SagaError) io.err(`scatter-saga: ${error.code}: ${error.message}`);
    else io.err(`scatter-saga: ${(error as Error)?.message ?? String(error)}`);
    if (verbose && error instanceof Error && error.stack !== undefined) io.err(error.stack);
    return error instanceof CliError ? error.code : EXIT.failed;
  }
}
