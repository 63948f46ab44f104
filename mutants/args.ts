/**
 * The command line of `npm run mutants` (mutants/run.ts).
 */
import { MUTANTS } from './table.ts';

export type Suite = 'model' | 'property';

export interface MutantsOptions {
  /** Mutants to run, in table order. */
  readonly only: readonly string[];
  readonly suites: readonly Suite[];
  /** Where to write the results as JSON, if anywhere. */
  readonly json: string | undefined;
  /** Bound of one suite run in one copy, in seconds. */
  readonly timeoutSeconds: number;
  readonly help: boolean;
}

/** A bad command-line argument: names it and says what is accepted. */
export class MutantsArgumentError extends Error {
  override readonly name = 'MutantsArgumentError';
  constructor(
    readonly argument: string,
    message: string,
  ) {
    super(`${argument}: ${message}`);
  }
}

export const DEFAULT_TIMEOUT_SECONDS = 900;

export const USAGE = `npm run mutants -- [--only <name,...>] [--suite model|property|both] [--json <file>] [--timeout <seconds>]

Applies each planted bug of mutants/table.ts in a scratch copy of the repository and runs
npx vitest run test/model and npx vitest run test/property there, each alone. Exits 1 when
a suite misses a mutant or a mutant cannot be run.

  --only <names>     comma-separated mutant names (default: all ${MUTANTS.length})
  --suite <which>    model, property or both (default: both)
  --json <file>      also write the results as JSON
  --timeout <s>      bound of one suite run, in seconds (default: ${DEFAULT_TIMEOUT_SECONDS})
  --help             this text`;

const FLAGS = ['--only', '--suite', '--json', '--timeout', '--help'];

export function parseArgs(argv: readonly string[]): MutantsOptions {
  let only: string[] = MUTANTS.map((m) => m.name);
  let suites: Suite[] = ['model', 'property'];
  let json: string | undefined;
  let timeoutSeconds = DEFAULT_TIMEOUT_SECONDS;
  let help = false;
  const seen = new Set<string>();
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    const eq = arg.indexOf('=');
    const flag = arg.startsWith('--') && eq > 0 ? arg.slice(0, eq) : arg;
    if (!FLAGS.includes(flag)) {
      throw new MutantsArgumentError(arg, `unknown argument; expected one of ${FLAGS.join(', ')}`);
    }
    if (seen.has(flag)) throw new MutantsArgumentError(flag, 'given twice');
    seen.add(flag);
    if (flag === '--help') {
      if (eq > 0) throw new MutantsArgumentError(flag, 'takes no value');
      help = true;
      continue;
    }
    let value: string;
    if (eq > 0) value = arg.slice(eq + 1);
    else {
      const next = argv[i + 1];
      if (next === undefined || next.startsWith('--')) throw new MutantsArgumentError(flag, 'needs a value');
      value = next;
      i++;
    }
    if (value === '') throw new MutantsArgumentError(flag, 'needs a value');
    switch (flag) {
      case '--only': {
        const names = value.split(',').map((s) => s.trim());
        const known = new Set(MUTANTS.map((m) => m.name));
        for (const n of names) {
          if (!known.has(n)) throw new MutantsArgumentError(flag, `no mutant named '${n}'; the mutants are ${[...known].join(', ')}`);
        }
        if (new Set(names).size !== names.length) throw new MutantsArgumentError(flag, 'names a mutant twice');
        only = MUTANTS.map((m) => m.name).filter((n) => names.includes(n));
        break;
      }
      case '--suite':
        if (value === 'both') suites = ['model', 'property'];
        else if (value === 'model' || value === 'property') suites = [value];
        else throw new MutantsArgumentError(flag, `'${value}' is not model, property or both`);
        break;
      case '--json':
        json = value;
        break;
      case '--timeout': {
        const n = Number(value);
        if (!/^\d+$/.test(value) || !Number.isSafeInteger(n) || n < 1) throw new MutantsArgumentError(flag, `'${value}' is not a whole number of seconds >= 1`);
        timeoutSeconds = n;
        break;
      }
    }
  }
  return { only, suites, json, timeoutSeconds, help };
}
