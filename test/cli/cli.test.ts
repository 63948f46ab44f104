/**
 * The scatter-saga CLI as a user runs it: a child process of src/cli/bin.ts, its exit code,
 * its stdout and stderr. Commands that talk to NATS use a private nats-server.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { connect } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { runCli } from '../../src/cli/main.ts';
import { createRuntime, defineSaga, defineWorker } from '../../src/index.ts';
import { jetstreamSagaStore, natsTransport, serveCoordinator, serveWorkers } from '../../src/nats.ts';
import { control, flights, hotels, payments, sagas } from '../fixtures/cli-definitions.ts';
import { startNatsServer } from '../helpers/nats-server.ts';
import type { NatsServer } from '../helpers/nats-server.ts';

const BIN = fileURLToPath(new URL('../../src/cli/bin.ts', import.meta.url));
const DEFS = fileURLToPath(new URL('../fixtures/cli-definitions.ts', import.meta.url));

interface Ran {
  code: number | null;
  out: string;
  err: string;
}

/** Runs the CLI; `until` (when given) is awaited with the child before it is sent SIGTERM. */
async function cli(args: string[], options: { env?: NodeJS.ProcessEnv; until?: (out: () => string) => Promise<void> } = {}): Promise<Ran> {
  const child = spawn(process.execPath, ['--import', 'tsx', BIN, ...args], { env: { ...process.env, NATS_URL: '', ...options.env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (d) => (out += String(d)));
  child.stderr.on('data', (d) => (err += String(d)));
  const killer = setTimeout(() => child.kill('SIGKILL'), 30_000);
  const exited = once(child, 'exit') as Promise<[number | null, string | null]>;
  if (options.until !== undefined) {
    await options.until(() => out);
    child.kill('SIGTERM');
  }
  const [code, signal] = await exited;
  clearTimeout(killer);
  expect(signal, `killed: it did not end on its own\n${out}\n${err}`).toBeNull();
  return { code, out, err };
}

const lines = (s: string) => s.trim().split('\n').filter(Boolean);

/** Runs the CLI in this process, as the executable does; `stopped` plays SIGTERM for long-running commands. */
async function inProcess(args: string[], stopped: Promise<NodeJS.Signals> = new Promise(() => {})): Promise<Ran> {
  let out = '';
  let err = '';
  const code = await runCli(args, { out: (l) => (out += `${l}\n`), err: (l) => (err += `${l}\n`), stopped });
  return { code, out, err };
}

describe('scatter-saga without a server', () => {
  test('--help lists the commands, and each command has its own --help', async () => {
    const top = await cli(['--help']);
    expect(top.code).toBe(0);
    const commands = ['demo', 'graph', 'worker', 'coordinator', 'start', 'status', 'list', 'dead-letters', 'retry', 'resolve', 'abort'];
    for (const c of commands) expect(top.out).toMatch(new RegExp(`^  ${c}\\b`, 'm'));
    for (const c of commands) {
      const r = await inProcess([c, '--help']);
      expect(r.code, c).toBe(0);
      expect(r.out).toContain(`Usage: scatter-saga ${c}`);
    }
  }, 60_000);

  test('demo runs the three scenarios of the trip: committed, then compensated twice, nothing left held', async () => {
    const r = await cli(['demo', '--json']);
    expect(r.code, r.err).toBe(0);
    const results = JSON.parse(r.out) as { status: string; held: Record<string, number> }[];
    expect(results.map((x) => x.status)).toEqual(['committed', 'compensated', 'compensated']);
    expect(results.map((x) => x.held)).toEqual([{ flights: 1, hotels: 1, cars: 1 }, { flights: 0, hotels: 0, cars: 0 }, { flights: 0, hotels: 0, cars: 0 }]);
  });

  test('graph prints a Mermaid diagram of each saga of a module', async () => {
    const r = await cli(['graph', DEFS]);
    expect(r.code, r.err).toBe(0);
    expect(r.out.startsWith('%% cli-order@1\nstateDiagram-v2\n')).toBe(true);
    expect(r.out).toContain('\n%% cli-trip@2\nstateDiagram-v2\n');
    expect(r.out).toContain('stage 2 - hotel');
    expect(r.out).toContain('compensationFailed --> compensating: OPERATOR.RETRY / resetFailedCompensations');
  });

  test('bad input is one line naming the problem and a non-zero exit code, no stack trace unless --verbose', async () => {
    const cases: [string[], number, RegExp][] = [
      [['nope'], 2, /^error: unknown command 'nope'$/],
      [['graph'], 2, /^error: missing required argument 'module'$/],
      [['graph', DEFS, '--saga', 'other'], 2, /^scatter-saga: .*cli-definitions\.ts has no saga 'other' \(it has: cli-order@1, cli-trip@2\)$/],
      [['graph', 'no/such/module.js'], 2, /^scatter-saga: cannot load no\/such\/module\.js: no such module$/],
      [['graph', DEFS, '--direction', 'RL'], 2, /^error: option '--direction <dir>' argument 'RL' is invalid\. Allowed choices are LR, TB\.$/],
      [['worker', DEFS, '--concurrency', 'many'], 2, /^scatter-saga: --concurrency must be a whole number >= 1, got 'many'$/],
      [['worker', DEFS, '--token', 't', '--user', 'u'], 2, /^scatter-saga: give one of --user\/--password, --token, --creds and --nkey$/],
      [['worker', DEFS, '--creds', '/no/such.creds'], 2, /^scatter-saga: --creds \/no\/such\.creds: cannot read it \(ENOENT\)$/],
      [['worker', DEFS, '--server', 'nats://127.0.0.1:1', '--connect-timeout', '2'], 3, /^scatter-saga: cannot connect to NATS at nats:\/\/127\.0\.0\.1:1: /],
    ];
    // In this process (runCli, as the executable calls it), then one case through the executable.
    for (const [args, code, line] of cases) {
      const r = await inProcess(args);
      expect(r.code, args.join(' ')).toBe(code);
      expect(lines(r.err), args.join(' ')).toHaveLength(1);
      expect(lines(r.err)[0], args.join(' ')).toMatch(line);
      expect(r.out).toBe('');
    }
    const spawned = await cli(['graph', DEFS, '--saga', 'other']);
    expect(spawned.code).toBe(2);
    expect(lines(spawned.err)).toHaveLength(1);
    const verbose = await inProcess(['graph', 'no/such/module.js', '--verbose']);
    expect(verbose.code).toBe(2);
    expect(lines(verbose.err).length).toBeGreaterThan(1);
    expect(verbose.err).toMatch(/\n\s+at /);
  }, 120_000);
});

describe('scatter-saga worker, against a nats-server', () => {
  let server: NatsServer;
  beforeAll(async () => {
    server = await startNatsServer({ config: 'authorization { users = [ { user: ops, password: "s3cret" } ] }\n' });
  });
  afterAll(async () => {
    await server?.stop();
  });

  test('wrong credentials: one line, exit code 3', async () => {
    const r = await cli(['worker', DEFS, '--user', 'ops', '--password', 'wrong'], { env: { NATS_URL: server.url } });
    expect(r.code).toBe(3);
    expect(lines(r.err)).toHaveLength(1);
    expect(r.err).toMatch(/^scatter-saga: cannot connect to NATS at nats:\/\/127\.0\.0\.1:\d+: credentials refused \(/);
  });

  test('serves the workers of a module until SIGTERM drains it, exit code 0', async () => {
    const nc = await connect({ servers: server.url, user: 'ops', pass: 's3cret' });
    const runtime = createRuntime({ transport: natsTransport(nc), sagas });
    try {
      const r = await cli(['worker', DEFS, '--user', 'ops', '--log-level', 'warn'], {
        env: { NATS_URL: server.url, NATS_PASSWORD: 's3cret' },
        until: async (out) => {
          while (!out().includes('serving')) await new Promise((res) => setTimeout(res, 20));
          expect((await runtime.run(sagas[0] as (typeof sagas)[0], 'Oslo')).status).toBe('committed');
          expect((await runtime.run(sagas[0] as (typeof sagas)[0], 'Atlantis')).status).toBe('compensated');
        },
      });
      expect(r.code, r.err).toBe(0);
      expect(lines(r.out)).toEqual([`serving cli-flights, cli-hotels, cli-payments on 127.0.0.1:${server.port} (Ctrl-C drains and stops)`]);
      expect(lines(r.err)).toEqual(['SIGTERM: draining']);
    } finally {
      await runtime.close();
      await nc.close();
    }
  }, 60_000);
});

describe('scatter-saga coordinator and the service commands, against a nats-server', () => {
  let server: NatsServer;
  beforeAll(async () => {
    server = await startNatsServer();
  });
  afterAll(async () => {
    await server?.stop();
  });

  test('a coordinator serves the sagas of a module; start, status, list, dead-letters, retry and resolve reach it, with their exit codes', async () => {
    const hostNc = await connect({ servers: server.url });
    const host = await serveWorkers(hostNc, [flights, hotels, payments], { signals: [] });
    let stop!: (s: NodeJS.Signals) => void;
    const coordinator = inProcess(['coordinator', DEFS, '--server', server.url, '--log-level', 'silent'], new Promise((r) => (stop = r)));
    const ask = (...args: string[]) => inProcess([...args, '--server', server.url]);
    try {
      // The service answers once the coordinator is up.
      let up = await ask('list', '--json');
      for (let i = 0; i < 100 && up.code !== 0; i++) {
        await new Promise((r) => setTimeout(r, 50));
        up = await ask('list', '--json');
      }
      expect(up.code, up.err).toBe(0);
      expect(JSON.parse(up.out)).toEqual({ sagas: [], truncated: false });

      const ok = await ask('start', 'cli-trip', '"Oslo"', '--wait', '--json', '--saga-id', 'trip-1', '--progress');
      expect(ok.code, ok.err).toBe(0);
      expect(JSON.parse(ok.out)).toMatchObject({ sagaId: 'trip-1', outcome: { status: 'committed' } });
      // --progress: each step's events on stderr as the saga moves, then its outcome.
      const progress = lines(ok.err);
      expect(progress).toContainEqual(expect.stringMatching(/^\+\d+\.\ds flight \(cli-flights\): dispatched$/));
      expect(progress).toContainEqual(expect.stringMatching(/^\+\d+\.\ds hotel \(cli-hotels\): committed$/));
      expect(progress.at(-1)).toMatch(/^\+\d+\.\ds committed$/);
      // Not asked (stderr is not a terminal here): nothing on stderr.
      const quiet = await ask('start', 'cli-trip', '"Oslo"', '--wait', '--saga-id', 'trip-q');
      expect([quiet.code, quiet.err]).toEqual([0, '']);
      const again = await ask('start', 'cli-trip', '"Oslo"', '--saga-id', 'trip-1');
      expect([again.code, again.out.trim()]).toEqual([0, 'trip-1']);
      const failed = await ask('start', 'cli-trip', '"Atlantis"', '--wait');
      expect(failed.code, failed.err).toBe(5);
      expect(failed.out).toMatch(/^\S+ compensated: hotel failed \(WORKER_ERROR: no hotel in Atlantis\)\n$/);
      const status = await ask('status', 'trip-1');
      expect(status.code).toBe(0);
      expect(status.out).toBe('trip-1 cli-trip@2 committed\n  flight: committed\n  hotel: committed\n  outcome: committed: flight, hotel\n');

      // A saga that parks: its refund is refused.
      const parked = await ask('start', 'cli-order', '--wait', '--json', '--saga-id', 'order-1');
      expect(parked.code, parked.err).toBe(6);
      expect(JSON.parse(parked.out).outcome.remaining.map((r: { stepId: string }) => r.stepId)).toEqual(['charge']);
      expect((await ask('start', 'cli-order', '--wait', '--saga-id', 'order-2')).code).toBe(6);
      const list = await ask('list', '--status', 'parked');
      expect(list.out.trim().split('\n').map((l) => l.split(' ').slice(0, 3).join(' '))).toEqual(['order-1 cli-order@1 parked', 'order-2 cli-order@1 parked']);
      const letters = await ask('dead-letters');
      expect(letters.out).toBe('order-1 cli-order@1 parked 1x: charge on cli-payments\norder-2 cli-order@1 parked 1x: charge on cli-payments\n');

      control.refuseUndo = false;
      const retried = await ask('retry', 'order-1');
      expect([retried.code, retried.out]).toEqual([5, 'compensated: hotel failed (WORKER_ERROR: no hotel in Atlantis)\n']);
      const resolved = await ask('resolve', 'order-2', '--note', 'refunded by hand', '--json');
      expect(resolved.code, resolved.err).toBe(5);
      expect(JSON.parse(resolved.out)).toMatchObject({ status: 'compensated' });
      // Abort: a finished saga is refused (exit 1, one line); a missing argument is a usage error.
      const notRunning = await ask('abort', 'trip-1', '--note', 'too late');
      expect([notRunning.code, lines(notRunning.err)]).toEqual([1, [expect.stringMatching(/^scatter-saga: SAGA_NOT_RUNNING: saga 'trip-1' is committed, not running/)]]);
      expect((await ask('abort')).code).toBe(2);

      // Errors of the service and of the input: one line, a non-zero code.
      const unknown = await ask('start', 'no-such-saga', '1');
      expect(unknown.code).toBe(1);
      expect(lines(unknown.err)).toEqual([expect.stringMatching(/^scatter-saga: UNKNOWN_SAGA: /)]);
      const badJson = await ask('start', 'cli-trip', '{oops');
      expect(badJson.code).toBe(2);
      expect(lines(badJson.err)).toEqual([expect.stringMatching(/^scatter-saga: the input is not JSON: /)]);
      const missing = await ask('status', 'nope');
      expect([missing.code, lines(missing.err)]).toEqual([1, ["scatter-saga: no saga 'nope' in the store"]]);
    } finally {
      control.refuseUndo = true;
      stop('SIGTERM');
      const ran = await coordinator;
      await host.drain();
      await hostNc.close();
      expect(ran.code, ran.err).toBe(0);
      expect(lines(ran.err)).toEqual(['SIGTERM: stopping']);
    }
    // No coordinator any more: the service does not answer.
    const none = await inProcess(['list', '--server', server.url, '--timeout', '1']);
    expect(none.code).toBe(1);
    expect(lines(none.err)).toEqual([expect.stringMatching(/^scatter-saga: NO_RESPONDERS: /)]);
  }, 120_000);
});

describe('scatter-saga resolve: the keys are fenced first', () => {
  let server: NatsServer;
  beforeAll(async () => {
    server = await startNatsServer();
  });
  afterAll(async () => {
    await server?.stop();
  });

  /** Books `ms` (default 300) after it starts; its undo always fails. */
  const booked: string[] = [];
  const late = defineWorker({
    name: 'cli-late',
    do: async (input: { ms?: number } | null, ctx) => {
      await new Promise((r) => setTimeout(r, input?.ms ?? 300));
      booked.push(ctx.idempotencyKey);
      return { booked: true };
    },
    compensate: () => {
      throw new Error('the undo is broken');
    },
  });
  /** The do times out after 40 ms, the undo after 60 ms (behind the running do): the saga parks in doubt while the do runs on. */
  const lateSaga = defineSaga({
    name: 'cli-late',
    version: 1,
    steps: { s: { worker: 'cli-late', input: (i: { ms?: number } | null) => i, timeoutMs: 40, retries: 0 } },
    compensation: { retries: 0, timeoutMs: 60, backoff: { initialMs: 1 } },
  });

  test('a resolve that needs a review prints the steps and the command with --reviewed, exit 7; that command resolves; --json prints the error; FENCE_FAILED exits 8; --force warns', async () => {
    const hostNc = await connect({ servers: server.url });
    const coordNc = await connect({ servers: server.url });
    const host = await serveWorkers(hostNc, [late], { signals: [] });
    const runtime = createRuntime({ transport: natsTransport(coordNc), store: jetstreamSagaStore(coordNc, { bucketPrefix: 'cli_late' }), sagas: [lateSaga] });
    const service = await serveCoordinator(coordNc, runtime);
    const ask = (...args: string[]) => inProcess([...args, '--server', server.url]);
    const park = async (sagaId: string, ms: number) => {
      const parked = await ask('start', 'cli-late', JSON.stringify({ ms }), '--saga-id', sagaId, '--wait', '--json');
      expect(parked.code, parked.err).toBe(6);
      return (JSON.parse(parked.out) as { outcome: { remaining: { idempotencyKey: string }[] } }).outcome.remaining[0]?.idempotencyKey as string;
    };
    try {
      const key = await park('late 1', 300);
      const needs = await ask('resolve', 'late 1', '--note', 'nothing booked');
      expect(needs.code, needs.err).toBe(7);
      expect(needs.out).toBe('');
      const err = lines(needs.err);
      expect(err[0]).toMatch(/^scatter-saga: RESOLVE_NEEDS_REVIEW: saga 'late 1' was not resolved: /);
      expect(err).toContain('  s (worker cli-late, in doubt): review, the fence found applied');
      const command = err.at(-1) as string;
      expect(command).toMatch(/^  scatter-saga resolve 'late 1' --reviewed [A-Za-z0-9_-]+ --note 'nothing booked'$/);
      const token = (/--reviewed (\S+)/.exec(command) as RegExpExecArray)[1] as string;
      expect(needs.err).toContain(token);
      // The do landed while the fence waited for it: the review is what the operator must look at.
      expect(booked).toContain(key);
      expect((await runtime.status('late 1'))?.state).toBe('compensationFailed');
      // Looked again and undid it by hand: the printed command ends the saga (compensated: exit 5).
      const done = await ask('resolve', 'late 1', '--reviewed', token, '--note', 'cancelled by hand');
      expect(done.code, done.err).toBe(5);
      expect(done.out).toMatch(/^compensated: /);
      expect((await runtime.status('late 1'))?.state).toBe('compensated');

      await park('late-2', 300);
      const json = await ask('resolve', 'late-2', '--json');
      expect(json.code, json.err).toBe(7);
      const e = JSON.parse(json.out) as { code: string; retryable: boolean; message: string; fences: unknown[]; review: string };
      expect(e).toEqual({ code: 'RESOLVE_NEEDS_REVIEW', message: expect.stringContaining(e.review), retryable: false, fences: [expect.objectContaining({ stepId: 's', worker: 'cli-late', verdict: 'review', fence: expect.objectContaining({ was: 'applied' }) })], review: expect.any(String) });
      expect(lines(json.err)).toEqual([expect.stringMatching(/^scatter-saga: RESOLVE_NEEDS_REVIEW: /)]);

      // A do that outlasts the fence's wait: FENCE_FAILED, exit 8; the saga stays parked.
      const busyKey = await park('late-3', 1_500);
      const failed = await ask('resolve', 'late-3', '--fence-timeout', '0.1');
      expect(failed.code, failed.err).toBe(8);
      expect(lines(failed.err)[0]).toMatch(/^scatter-saga: FENCE_FAILED: saga 'late-3' was not resolved: could not fence 's'/);
      expect(failed.err).toMatch(/\n {2}s \(worker cli-late, in doubt\): failed, [A-Z_]+: /);
      expect(lines(failed.err).at(-1)).toBe("resolve again once the worker's hosts answer; if the worker is gone for good, resolve with --force");
      expect((await runtime.status('late-3'))?.state).toBe('compensationFailed');
      const forced = await ask('resolve', 'late-3', '--force');
      expect(forced.code, forced.err).toBe(5);
      expect(lines(forced.err)).toEqual(['scatter-saga: warning: --force resolves without fencing the keys: nothing stops a late do of the remaining effects from applying after the saga ends']);
      for (let i = 0; i < 150 && !booked.includes(busyKey); i++) await new Promise((r) => setTimeout(r, 20));

      // Bad flags: usage, exit 2, nothing asked.
      const tooLong = await ask('resolve', 'late-3', '--fence-timeout', '5');
      expect([tooLong.code, lines(tooLong.err)]).toEqual([2, ['scatter-saga: --fence-timeout must be less than --timeout (5 s): the resolve waits for its fences within it']]);
      const notNumber = await ask('resolve', 'late-3', '--fence-timeout', 'soon');
      expect([notNumber.code, lines(notNumber.err)]).toEqual([2, ["scatter-saga: --fence-timeout must be a number of seconds > 0, got 'soon'"]]);
      // A token that is not one: the service refuses it, naming the field.
      const badToken = await ask('resolve', 'late-3', '--reviewed', 'looked');
      expect(badToken.code).toBe(1);
      expect(lines(badToken.err)).toEqual([expect.stringMatching(/^scatter-saga: PROTOCOL_ERROR: 'reviewed' must be the 'review' token/)]);
    } finally {
      await service.stop();
      await runtime.close();
      await host.drain();
      await coordNc.close();
      await hostNc.close();
    }
  }, 60_000);
});
