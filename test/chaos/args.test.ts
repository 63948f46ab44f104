/** The command line of `npm run chaos`: defaults, and clear errors for every mistake. */
import { describe, expect, it } from 'vitest';
import { ArgsError, parseArgs } from '../../chaos/args.ts';
import { DEFAULT_FAULTS, NO_FAULTS } from '../../chaos/common.ts';

describe('chaos command line', () => {
  it('defaults to the full run: 6 minutes, 50 kills, 2 nats-server restarts, injected failures', () => {
    const o = parseArgs(['--seed', '42']);
    expect(o).toMatchObject({ durationS: 360, kills: 50, natsRestarts: 2, injectFaults: true, seed: 42, concurrency: 32, hosts: 4, coordinators: 2, json: false, faults: DEFAULT_FAULTS });
    expect(o.sagas).toBeUndefined();
  });

  it('--no-faults turns off kills, restarts and failures; --sagas without --duration runs until n were started', () => {
    const o = parseArgs(['--no-faults', '--sagas=100000', '--json']);
    expect(o).toMatchObject({ kills: 0, natsRestarts: 0, injectFaults: false, sagas: 100_000, durationS: Infinity, json: true, faults: NO_FAULTS });
    expect(parseArgs(['--duration', '120', '--kills', '60', '--nats-restarts', '3', '--undo-fail-rate', '0.3'])).toMatchObject({
      durationS: 120,
      kills: 60,
      natsRestarts: 3,
      faults: { undoFailRate: 0.3 },
    });
  });

  it('--cluster runs on a 3-node cluster and restarts one node at a time, 3 of them by default', () => {
    expect(parseArgs(['--cluster'])).toMatchObject({ cluster: true, natsRestarts: 3 });
    expect(parseArgs(['--cluster', '--nats-restarts', '6'])).toMatchObject({ cluster: true, natsRestarts: 6 });
    expect(parseArgs([]).cluster).toBeUndefined();
    expect(() => parseArgs(['--cluster=yes'])).toThrow('--cluster takes no value');
  });

  it.each([
    [['--duration'], '--duration needs a value'],
    [['--duration', '-5'], '--duration must be > 0'],
    [['--kills', '2.5'], '--kills must be a whole number'],
    [['--kills', 'many'], '--kills must be a whole number, got "many"'],
    [['--no-faults', '--kills', '3'], '--kills cannot be combined with --no-faults'],
    [['--sagas', '0'], '--sagas must be >= 1'],
    [['--sagas', '10'], 'give --duration'],
    [['--hosts', '5'], '--hosts must be even'],
    [['--hosts', '2'], '--hosts must be >= 4'],
    [['--undo-fail-rate', '1.5'], '--undo-fail-rate must be <= 1'],
    [['--retryable-rate', '0.7', '--terminal-rate', '0.5'], 'at most 1'],
    [['--duration', '10', '--kills', '100'], 'too many'],
    [['--seed', '1', '--seed', '2'], '--seed given twice'],
    [['--json=yes'], '--json takes no value'],
    [['--frobnicate'], 'unknown argument "--frobnicate"'],
  ])('rejects %j', (argv, message) => {
    expect(() => parseArgs(argv)).toThrow(ArgsError);
    expect(() => parseArgs(argv)).toThrow(message);
  });
});
