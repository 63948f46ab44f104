/**
 * Command line of `npm run chaos` (tsx chaos/run.ts). Every argument is validated here;
 * a mistake is an ArgsError with a message that says what is expected.
 */
import type { FaultConfig } from './common.ts';
import { DEFAULT_FAULTS, NO_FAULTS } from './common.ts';
import type { ChaosOptions } from './orchestrator.ts';

export class ArgsError extends Error {
  override readonly name = 'ArgsError';
}

export const USAGE = `usage: npm run chaos -- [options]

  --duration <s>          fault window in seconds (default 360; with --sagas and no
                          --duration, the window lasts until n sagas were started)
  --kills <n>             SIGKILLs of worker hosts and coordinators in the window (default 50)
  --nats-restarts <n>     nats-server restarts (SIGKILL, same store) in the window (default 2)
  --no-faults             no kills, no restarts, no injected failures, short latencies
  --cluster               a 3-node nats-server cluster, every bucket with 3 replicas, each
                          process connected to another node first; --nats-restarts then
                          restart one node at a time (default 3 of them); needs
                          nats-server 2.9.21 or later (older clusters accept conflicting
                          compare-and-set writes: docs/durability.md)
  --allow-unsafe-server   run --cluster on an older nats-server anyway (expect violations)
  --sagas <n>             stop after starting n sagas (across coordinators)
  --seed <n>              seed of the schedule and the injected faults (default: random)
  --concurrency <n>       sagas in flight per coordinator (default 32)
  --hosts <n>             worker host processes, at least 4, even (default 4)
  --final-timeout <s>     time bound of the final recovery and operator retries (default 120)
  --retryable-rate <p>    probability that a do fails retryably (default ${DEFAULT_FAULTS.retryableRate})
  --terminal-rate <p>     probability that a do fails with a TerminalError (default ${DEFAULT_FAULTS.terminalRate})
  --undo-fail-rate <p>    probability that a compensate fails (default ${DEFAULT_FAULTS.undoFailRate})
  --slow-rate <p>         probability that a call takes ${DEFAULT_FAULTS.slowMinMs}-${DEFAULT_FAULTS.slowMaxMs} ms (default ${DEFAULT_FAULTS.slowRate})
  --stuck-rate <p>        probability that a do takes ${DEFAULT_FAULTS.stuckMinMs}-${DEFAULT_FAULTS.stuckMaxMs} ms, so that its saga parks while it
                          still runs (default ${DEFAULT_FAULTS.stuckRate})
  --resolve-rate <p>      share of the sagas that park during the run which their coordinator
                          resolves at once as an operator would: undo by hand what the ledger
                          holds, resolve, and on a review look and undo again (default 0.5)
  --dir <path>            run directory for the logs and files (default: a new temp dir)
  --json                  print the final report as one JSON line
  --quiet                 no progress on stderr
  --help                  this text

Exit code: 0 when no violation was found, 1 when some were (or the harness reported an
error), 2 for a usage error, 3 when the harness could not run.`;

export interface CliOptions extends ChaosOptions {
  readonly json: boolean;
  readonly help: boolean;
}

const FLAGS_WITH_VALUE = new Set([
  '--duration',
  '--kills',
  '--nats-restarts',
  '--sagas',
  '--seed',
  '--concurrency',
  '--hosts',
  '--final-timeout',
  '--retryable-rate',
  '--terminal-rate',
  '--undo-fail-rate',
  '--slow-rate',
  '--stuck-rate',
  '--resolve-rate',
  '--dir',
]);
const BOOLEAN_FLAGS = new Set(['--no-faults', '--cluster', '--allow-unsafe-server', '--json', '--quiet', '--help']);

function num(flag: string, raw: string, opts: { int?: boolean; min?: number; max?: number; minExclusive?: boolean }): number {
  const v = Number(raw);
  const what = opts.int ? 'a whole number' : 'a number';
  if (raw.trim() === '' || !Number.isFinite(v) || (opts.int && !Number.isSafeInteger(v))) throw new ArgsError(`${flag} must be ${what}, got ${JSON.stringify(raw)}`);
  if (opts.min !== undefined && (opts.minExclusive ? v <= opts.min : v < opts.min)) throw new ArgsError(`${flag} must be ${opts.minExclusive ? '>' : '>='} ${opts.min}, got ${raw}`);
  if (opts.max !== undefined && v > opts.max) throw new ArgsError(`${flag} must be <= ${opts.max}, got ${raw}`);
  return v;
}

/** Parses and validates the command line (without `node` and the script). */
export function parseArgs(argv: readonly string[]): CliOptions {
  const given = new Map<string, string>();
  const flags = new Set<string>();
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] as string;
    let flag = a;
    let value: string | undefined;
    const eq = a.indexOf('=');
    if (a.startsWith('--') && eq > 0) {
      flag = a.slice(0, eq);
      value = a.slice(eq + 1);
    }
    if (FLAGS_WITH_VALUE.has(flag)) {
      if (value === undefined) {
        value = argv[++i];
        if (value === undefined || (value.startsWith('--') && value.length > 2)) throw new ArgsError(`${flag} needs a value`);
      }
      if (given.has(flag)) throw new ArgsError(`${flag} given twice`);
      given.set(flag, value);
    } else if (BOOLEAN_FLAGS.has(flag)) {
      if (value !== undefined) throw new ArgsError(`${flag} takes no value`);
      flags.add(flag);
    } else {
      throw new ArgsError(`unknown argument ${JSON.stringify(a)} (see --help)`);
    }
  }
  const help = flags.has('--help');
  const noFaults = flags.has('--no-faults');
  const get = (f: string) => given.get(f);

  const sagasRaw = get('--sagas');
  const sagas = sagasRaw === undefined ? undefined : num('--sagas', sagasRaw, { int: true, min: 1 });
  const durationRaw = get('--duration');
  const durationS = durationRaw !== undefined ? num('--duration', durationRaw, { min: 0, minExclusive: true, max: 24 * 3600 }) : sagas !== undefined ? Infinity : 360;

  const killsRaw = get('--kills');
  const restartsRaw = get('--nats-restarts');
  if (noFaults) {
    for (const f of ['--kills', '--nats-restarts', '--retryable-rate', '--terminal-rate', '--undo-fail-rate', '--slow-rate', '--stuck-rate']) {
      if (given.has(f)) throw new ArgsError(`${f} cannot be combined with --no-faults (no kills, no restarts, no injected failures)`);
    }
  }
  const kills = noFaults ? 0 : killsRaw === undefined ? 50 : num('--kills', killsRaw, { int: true, min: 0 });
  const cluster = flags.has('--cluster');
  const natsRestarts = noFaults ? 0 : restartsRaw === undefined ? (cluster ? 3 : 2) : num('--nats-restarts', restartsRaw, { int: true, min: 0 });
  if ((kills > 0 || natsRestarts > 0) && !Number.isFinite(durationS)) {
    throw new ArgsError('kills and nats-server restarts are spread over the fault window: give --duration (or --kills 0 --nats-restarts 0)');
  }
  if (Number.isFinite(durationS) && kills > durationS * 4) throw new ArgsError(`--kills ${kills} is too many for a ${durationS} s window (at most 4 per second)`);
  if (Number.isFinite(durationS) && natsRestarts > durationS / 5) throw new ArgsError(`--nats-restarts ${natsRestarts} is too many for a ${durationS} s window (at most one per 5 s)`);

  const seedRaw = get('--seed');
  const seed = seedRaw === undefined ? Math.floor(Math.random() * 2 ** 31) : num('--seed', seedRaw, { int: true, min: 0, max: 2 ** 32 - 1 });
  const concurrency = num('--concurrency', get('--concurrency') ?? '32', { int: true, min: 1, max: 1024 });
  const hosts = num('--hosts', get('--hosts') ?? '4', { int: true, min: 4, max: 32 });
  if (hosts % 2 !== 0) throw new ArgsError(`--hosts must be even (two groups of workers, each served by half the hosts), got ${hosts}`);
  const finalTimeoutS = num('--final-timeout', get('--final-timeout') ?? '120', { min: 1, max: 3600 });

  const faults: FaultConfig = noFaults ? { ...NO_FAULTS } : { ...DEFAULT_FAULTS };
  const rate = (flag: string, key: 'retryableRate' | 'terminalRate' | 'undoFailRate' | 'slowRate' | 'stuckRate') => {
    const raw = get(flag);
    if (raw !== undefined) faults[key] = num(flag, raw, { min: 0, max: 1 });
  };
  rate('--retryable-rate', 'retryableRate');
  rate('--terminal-rate', 'terminalRate');
  rate('--undo-fail-rate', 'undoFailRate');
  rate('--slow-rate', 'slowRate');
  rate('--stuck-rate', 'stuckRate');
  const resolveRate = num('--resolve-rate', get('--resolve-rate') ?? '0.5', { min: 0, max: 1 });
  if (faults.retryableRate + faults.terminalRate > 1) throw new ArgsError('--retryable-rate + --terminal-rate must be at most 1');
  const dir = get('--dir');
  if (dir !== undefined && dir.trim() === '') throw new ArgsError('--dir must be a path');

  return {
    help,
    json: flags.has('--json'),
    quiet: flags.has('--quiet'),
    durationS,
    kills,
    natsRestarts,
    injectFaults: !noFaults,
    ...(sagas !== undefined ? { sagas } : {}),
    seed,
    concurrency,
    hosts,
    coordinators: 2,
    finalTimeoutS,
    faults,
    resolveRate,
    ...(dir !== undefined ? { dir } : {}),
    ...(cluster ? { cluster } : {}),
    ...(flags.has('--allow-unsafe-server') ? { allowUnsafeServer: true } : {}),
  };
}
