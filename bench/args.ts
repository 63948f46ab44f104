/**
 * The command line of the benchmark suite (bench/suite.ts): parses `--modes`, `--widths`,
 * `--in-flight`, `--fail`, `--seconds`, `--warmup`, `--max-steps`, `--hold`, `--out`, `--smoke` and
 * `--no-docs` into a {@link SuiteOptions}. A bad argument is a {@link BenchArgumentError}
 * that names the argument and says what it takes.
 */

export const MODES = ['embedded', 'nats', 'durable'] as const;
export type Mode = (typeof MODES)[number];

export interface SuiteOptions {
  readonly modes: readonly Mode[];
  readonly widths: readonly number[];
  readonly inFlight: readonly number[];
  /** Failure rates in [0, 1]: the share of sagas whose last step throws TerminalError. */
  readonly fail: readonly number[];
  /** Measured seconds per point. */
  readonly seconds: number;
  /** Warm-up seconds per point, before the measured ones. */
  readonly warmup: number;
  /** Steps in flight at most (width × sagas in flight); beyond it a point runs fewer sagas at once and says so. */
  readonly maxSteps: number;
  /** Sagas held in flight at least to measure memory per saga (a few sagas alone are lost in the noise). */
  readonly hold: number;
  /** Where the JSON, Markdown and SVG go; undefined: bench/results. */
  readonly out: string | undefined;
  /** Also refresh docs/performance.svg and the results table in docs/performance.md (runs of every mode into bench/results only). */
  readonly docs: boolean;
  readonly smoke: boolean;
}

/** The full sweep. */
export const DEFAULTS: SuiteOptions = Object.freeze({
  modes: MODES,
  widths: [1, 3, 10, 100, 1000],
  inFlight: [1, 64, 256, 1024],
  fail: [0, 0.2],
  seconds: 1,
  warmup: 1,
  maxSteps: 16_384,
  hold: 256,
  out: undefined,
  docs: true,
  smoke: false,
});

/** `--smoke`: a tiny subset for CI, well under a minute. */
export const SMOKE: Partial<SuiteOptions> = Object.freeze({
  widths: [1, 10],
  inFlight: [1, 16],
  fail: [0, 0.2],
  seconds: 0.25,
  warmup: 0.05,
  hold: 16,
  docs: false,
});

/** A bad command-line argument: `argument` names it (e.g. `--widths`). */
export class BenchArgumentError extends Error {
  override readonly name = 'BenchArgumentError';
  constructor(
    readonly argument: string,
    message: string,
  ) {
    super(`${argument}: ${message}`);
  }
}

const USAGE = `npm run bench -- [options]
  --modes embedded,nats,durable   modes to run (default: all three)
  --widths 1,3,10,100,1000        fan-out widths: steps per saga, run in parallel
  --in-flight 1,64,256,1024       sagas kept in flight (closed loop)
  --fail 0,0.2                    failure rates in [0, 1] (a failing saga's last step throws TerminalError)
  --seconds 1                     measured seconds per point (> 0)
  --warmup 1                      warm-up seconds per point (>= 0)
  --max-steps 16384               steps in flight at most; a point over it runs fewer sagas at once and says so
  --hold 256                      sagas held in flight at least for the memory figures (4,096 steps at most)
  --out DIR                       write results to DIR (default bench/results; docs are then left alone)
  --no-docs                       do not refresh docs/performance.svg and docs/performance.md
                                  (only a run of all three modes into bench/results refreshes them)
  --smoke                         a tiny subset for CI (widths 1,10; in flight 1,16; 0.25 s a point; 16 held; no docs)
  --help                          this text`;

export function usage(): string {
  return USAGE;
}

function list<T>(arg: string, raw: string, one: (s: string) => T): T[] {
  const parts = raw.split(',').map((s) => s.trim());
  if (parts.length === 0 || parts.some((s) => s === '')) throw new BenchArgumentError(arg, `takes a comma-separated list without empty entries, got '${raw}'`);
  const values = parts.map(one);
  if (new Set(values).size !== values.length) throw new BenchArgumentError(arg, `lists a value twice in '${raw}'`);
  return values;
}

function positiveInt(arg: string, s: string): number {
  if (!/^[0-9]+$/.test(s) || Number(s) < 1 || !Number.isSafeInteger(Number(s))) throw new BenchArgumentError(arg, `takes whole numbers >= 1, got '${s}'`);
  return Number(s);
}

function number(arg: string, s: string, min: number, minIncluded: boolean, max = Infinity): number {
  const n = s.trim() === '' ? NaN : Number(s);
  if (!Number.isFinite(n) || (minIncluded ? n < min : n <= min) || n > max) {
    const range = `${minIncluded ? '>=' : '>'} ${min}${max !== Infinity ? ` and <= ${max}` : ''}`;
    throw new BenchArgumentError(arg, `takes a number ${range}, got '${s}'`);
  }
  return n;
}

/** Parses the suite's arguments (without node and the script). Throws BenchArgumentError. */
export function parseArgs(argv: readonly string[]): SuiteOptions & { help: boolean } {
  const given: Partial<Record<string, string | true>> = {};
  const flags = new Set(['--smoke', '--no-docs', '--help']);
  const valued = new Set(['--modes', '--widths', '--in-flight', '--fail', '--seconds', '--warmup', '--max-steps', '--hold', '--out']);
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] as string;
    const eq = a.indexOf('=');
    const name = a.startsWith('--') && eq > 0 ? a.slice(0, eq) : a;
    if (flags.has(name)) {
      if (eq > 0) throw new BenchArgumentError(name, 'takes no value');
      given[name] = true;
    } else if (valued.has(name)) {
      const value = eq > 0 ? a.slice(eq + 1) : argv[++i];
      if (value === undefined || (eq < 0 && value.startsWith('--'))) throw new BenchArgumentError(name, 'needs a value');
      if (given[name] !== undefined) throw new BenchArgumentError(name, 'is given twice');
      given[name] = value;
    } else {
      throw new BenchArgumentError(name, `unknown argument (see --help)`);
    }
  }
  const smoke = given['--smoke'] === true;
  const base: SuiteOptions = smoke ? { ...DEFAULTS, ...SMOKE, smoke: true } : DEFAULTS;
  const str = (k: string) => given[k] as string | undefined;

  const modesRaw = str('--modes');
  const modes = modesRaw === undefined ? base.modes : list('--modes', modesRaw, (s) => {
    if (!(MODES as readonly string[]).includes(s)) throw new BenchArgumentError('--modes', `unknown mode '${s}' (modes: ${MODES.join(', ')})`);
    return s as Mode;
  });
  const widthsRaw = str('--widths');
  const widths = widthsRaw === undefined ? base.widths : list('--widths', widthsRaw, (s) => positiveInt('--widths', s));
  const inFlightRaw = str('--in-flight');
  const inFlight = inFlightRaw === undefined ? base.inFlight : list('--in-flight', inFlightRaw, (s) => positiveInt('--in-flight', s));
  const failRaw = str('--fail');
  const fail = failRaw === undefined ? base.fail : list('--fail', failRaw, (s) => number('--fail', s, 0, true, 1));
  const secondsRaw = str('--seconds');
  const seconds = secondsRaw === undefined ? base.seconds : number('--seconds', secondsRaw, 0, false);
  const warmupRaw = str('--warmup');
  const warmup = warmupRaw === undefined ? base.warmup : number('--warmup', warmupRaw, 0, true);
  const maxStepsRaw = str('--max-steps');
  const maxSteps = maxStepsRaw === undefined ? base.maxSteps : positiveInt('--max-steps', maxStepsRaw);
  const holdRaw = str('--hold');
  const hold = holdRaw === undefined ? base.hold : positiveInt('--hold', holdRaw);
  const outRaw = str('--out');
  if (outRaw !== undefined && outRaw.trim() === '') throw new BenchArgumentError('--out', 'needs a directory');
  return {
    modes,
    widths,
    inFlight,
    fail,
    seconds,
    warmup,
    maxSteps,
    hold,
    out: outRaw ?? base.out,
    // Only a run of every mode into bench/results refreshes the docs (not smoke runs, --out, or one mode).
    docs: given['--no-docs'] !== true && outRaw === undefined && base.docs && MODES.every((m) => modes.includes(m)),
    smoke,
    help: given['--help'] === true,
  };
}
