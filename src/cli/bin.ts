#!/usr/bin/env node
/** The `scatter-saga` executable: runs the CLI on the process's arguments and exits with its code. */
import { runCli } from './main.ts';

// Output piped into a reader that stopped reading (`| head`): end quietly, as CLIs do.
process.stdout.on('error', (error: NodeJS.ErrnoException) => {
  if (error.code === 'EPIPE') process.exit(process.exitCode ?? 0);
  throw error;
});

const stopped = new Promise<NodeJS.Signals>((resolve) => {
  for (const s of ['SIGINT', 'SIGTERM'] as const) process.once(s, () => resolve(s));
});
const code = await runCli(process.argv.slice(2), {
  out: (line) => process.stdout.write(`${line}\n`),
  err: (line) => process.stderr.write(`${line}\n`),
  stopped,
  errIsTerminal: process.stderr.isTTY === true,
});
// Every command closes what it opened: the process ends on its own, its output flushed.
process.exitCode = code;
