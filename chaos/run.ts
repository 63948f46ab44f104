/**
 * `npm run chaos` (tsx chaos/run.ts): the chaos test of scatter-saga on the deployed
 * topology (nats-server with JetStream on file storage, worker host processes,
 * coordinator processes), with SIGKILLs, nats-server restarts and injected failures.
 * Prints a summary (or one JSON line with --json); exits 1 when the checker finds a
 * violation, 2 on a usage error, 3 when the harness itself cannot run. See --help.
 */
import { ArgsError, parseArgs, USAGE } from './args.ts';
import { formatReport } from './check.ts';
import { runChaos } from './orchestrator.ts';

let options;
try {
  options = parseArgs(process.argv.slice(2));
} catch (error) {
  if (error instanceof ArgsError) {
    process.stderr.write(`chaos: ${error.message}\n\n${USAGE}\n`);
    process.exit(2);
  }
  throw error;
}
if (options.help) {
  process.stdout.write(`${USAGE}\n`);
  process.exit(0);
}

let interrupted = false;
process.once('SIGINT', () => {
  interrupted = true;
  process.stderr.write('chaos: interrupted; stopping every process\n');
  process.exit(130); // the orchestrator's exit hook kills the children
});

try {
  const result = await runChaos(options);
  const { report } = result;
  const failed = !report.ok || result.errors.length > 0;
  const run = {
    dir: result.dir,
    seed: result.seed,
    options: {
      durationS: Number.isFinite(options.durationS) ? options.durationS : null,
      kills: options.kills,
      natsRestarts: options.natsRestarts,
      injectFaults: options.injectFaults,
      sagas: options.sagas ?? null,
      concurrency: options.concurrency,
      hosts: options.hosts,
      finalTimeoutS: options.finalTimeoutS,
      faults: options.faults,
    },
    finalPhase: result.finalPhase,
    unexpectedExits: result.unexpectedExits,
    errors: result.errors,
  };
  if (options.json) process.stdout.write(`${JSON.stringify({ ...report, run })}\n`);
  else {
    process.stdout.write(
      `${formatReport(report, {
        'run directory': result.dir,
        seed: String(result.seed),
        'final phase': result.finalPhase,
        ...(result.unexpectedExits.length > 0 ? { 'processes that exited on their own': result.unexpectedExits } : {}),
        ...(result.errors.length > 0 ? { 'HARNESS ERRORS': result.errors } : {}),
      })}\n`,
    );
    // Journals or key records lost on a single server that was SIGKILLed: say where to look.
    if (!report.ok && !options.cluster && report.totals.natsRestarts > 0) {
      process.stdout.write(
        'note: a single nats-server 2.9.10 loses acknowledged KV writes across a SIGKILL (docs/durability.md). Run `npm run probe:kv` against this server; compare with --nats-restarts 0 and with --cluster.\n',
      );
    }
  }
  process.exit(failed ? 1 : 0);
} catch (error) {
  if (!interrupted) process.stderr.write(`chaos: the harness could not run: ${(error as Error)?.stack ?? String(error)}\n`);
  process.exit(3);
}
