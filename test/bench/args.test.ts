/**
 * The benchmark suite's command line (bench/args.ts): the defaults, the smoke profile,
 * subsets, and a typed error naming the argument for each kind of bad argument.
 */
import { describe, expect, it } from 'vitest';
import { BenchArgumentError, DEFAULTS, parseArgs } from '../../bench/args.ts';

function errorOf(argv: string[]): BenchArgumentError {
  try {
    parseArgs(argv);
  } catch (error) {
    expect(error).toBeInstanceOf(BenchArgumentError);
    return error as BenchArgumentError;
  }
  throw new Error(`parseArgs accepted ${JSON.stringify(argv)}`);
}

describe('bench arguments', () => {
  it('defaults to the full sweep, writing to bench/results and refreshing the docs', () => {
    const o = parseArgs([]);
    expect(o.modes).toEqual(['embedded', 'nats', 'durable']);
    expect(o.widths).toEqual([1, 3, 10, 100, 1000]);
    expect(o.inFlight).toEqual([1, 64, 256, 1024]);
    expect(o.fail).toEqual([0, 0.2]);
    expect(o.seconds).toBe(DEFAULTS.seconds);
    expect(o.out).toBeUndefined();
    expect(o.docs).toBe(true);
    expect(o.smoke).toBe(false);
  });

  it('selects subsets, in both --name value and --name=value forms', () => {
    const o = parseArgs(['--modes', 'durable,embedded', '--widths=3,100', '--in-flight', '1,256', '--fail', '0.2', '--seconds', '2', '--max-steps', '500', '--hold', '8']);
    expect(o.modes).toEqual(['durable', 'embedded']);
    expect(o.widths).toEqual([3, 100]);
    expect(o.inFlight).toEqual([1, 256]);
    expect(o.fail).toEqual([0.2]);
    expect(o.seconds).toBe(2);
    expect(o.maxSteps).toBe(500);
    expect(o.hold).toBe(8);
  });

  it('--smoke is a small subset that leaves the docs alone; explicit arguments still win', () => {
    const o = parseArgs(['--smoke', '--modes', 'embedded']);
    expect(o.smoke).toBe(true);
    expect(o.docs).toBe(false);
    expect(o.modes).toEqual(['embedded']);
    expect(o.widths.length * o.inFlight.length * o.fail.length).toBeLessThanOrEqual(8);
    expect(o.seconds).toBeLessThan(DEFAULTS.seconds);
  });

  it('a run of fewer than every mode leaves the docs alone, as does --no-docs', () => {
    expect(parseArgs(['--modes', 'nats']).docs).toBe(false);
    expect(parseArgs(['--modes', 'durable,nats,embedded', '--widths', '3']).docs).toBe(true);
    expect(parseArgs(['--no-docs']).docs).toBe(false);
  });

  it('--out leaves the docs alone', () => {
    const o = parseArgs(['--out', '/tmp/x']);
    expect(o.out).toBe('/tmp/x');
    expect(o.docs).toBe(false);
  });

  it.each([
    [['--modes', 'embedded,cloud'], '--modes', /unknown mode 'cloud'/],
    [['--modes', ''], '--modes', /needs a value|comma-separated/],
    [['--widths', '3,,10'], '--widths', /comma-separated/],
    [['--widths', '0'], '--widths', /whole numbers >= 1, got '0'/],
    [['--widths', '2.5'], '--widths', /whole numbers >= 1, got '2.5'/],
    [['--widths', '3,3'], '--widths', /twice/],
    [['--in-flight', 'many'], '--in-flight', /whole numbers >= 1, got 'many'/],
    [['--fail', '1.5'], '--fail', /<= 1, got '1.5'/],
    [['--fail', '-0.1'], '--fail', />= 0 and <= 1, got '-0.1'/],
    [['--seconds', '0'], '--seconds', /> 0, got '0'/],
    [['--seconds', 'abc'], '--seconds', /got 'abc'/],
    [['--warmup', '-1'], '--warmup', />= 0/],
    [['--max-steps', '1e3'], '--max-steps', /whole numbers/],
    [['--seconds'], '--seconds', /needs a value/],
    [['--seconds', '--smoke'], '--seconds', /needs a value/],
    [['--seconds', '1', '--seconds', '2'], '--seconds', /given twice/],
    [['--smoke=yes'], '--smoke', /takes no value/],
    [['--width', '3'], '--width', /unknown argument/],
    [['3'], '3', /unknown argument/],
    [['--out', ' '], '--out', /needs a directory/],
  ])('%j is refused, naming %s', (argv, argument, message) => {
    const e = errorOf(argv);
    expect(e.argument).toBe(argument);
    expect(e.message).toMatch(message);
    expect(e.message.startsWith(`${argument}: `)).toBe(true);
  });
});
