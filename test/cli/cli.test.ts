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
import { createRuntime } from '../../src/index.ts';
import { natsTransport, serveWorkers } from '../../src/nats.ts';
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
    const commands = ['demo', 'graph', 'worker', 'coordinator', 'start', 'status', 'list', 'dead-letters', 'retry', 'resolve'];
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

      const ok = await ask('start', 'cli-trip', '"Oslo"', '--wait', '--json', '--saga-id', 'trip-1');
      expect(ok.code, ok.err).toBe(0);
      expect(JSON.parse(ok.out)).toMatchObject({ sagaId: 'trip-1', outcome: { status: 'committed' } });
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
