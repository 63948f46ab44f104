/**
 * The NATS modes of the benchmark suite. `nats`: the coordinator (this process) with
 * `natsTransport` and an in-memory SagaStore; `durable`: the same with
 * `jetstreamSagaStore`, and the worker host with `jetstreamDedupStore`. The worker host
 * is a separate process (bench/modes/host.ts) on the same private nats-server. Stores
 * are wrapped in call counters, connections in JetStream request counters.
 *
 * The raw baselines, run against the same server and worker host process: request/reply
 * (NATS mode) at as many requests in flight as the point has steps in flight, and
 * JetStream publish and KV put (durable mode) at as many in flight as the point has sagas.
 */
import { fork } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { connect } from '@nats-io/transport-node';
import type { NatsConnection } from '@nats-io/transport-node';
import { createRuntime, memorySagaStore } from '../../src/index.ts';
import type { Runtime } from '../../src/index.ts';
import { jetstreamSagaStore, natsTransport } from '../../src/nats.ts';
import { rawNats } from '../baselines.ts';
import type { RawNats } from '../baselines.ts';
import { countCalls, countJetStream, messages } from '../counting.ts';
import type { Counts } from '../counting.ts';
import { figures } from '../point.ts';
import type { Counters, LoopFigures, PointSpec, Target } from '../point.ts';
import { closedLoop, settledMemory, sleep } from '../stats.ts';
import { HOST_CONCURRENCY, sagaOfWidth } from '../workload.ts';
import { waitUntil } from './held.ts';
import type { HostCommand } from './host.ts';

const HOST_FILE = fileURLToPath(new URL('./host.ts', import.meta.url));

export interface NatsTarget extends Target {
  /** The raw baselines of this mode for a point, measured once per in-flight level and reused. */
  baselines(spec: PointSpec, stepsInFlight: number): Promise<Record<string, LoopFigures>>;
  close(): Promise<void>;
}

/** Spawns the worker host process and waits for it; `ask` sends it a command over IPC. */
async function spawnHost(url: string, durable: boolean): Promise<{ child: ChildProcess; ask: (cmd: HostCommand) => Promise<Record<string, unknown>> }> {
  const child = fork(HOST_FILE, durable ? ['--durable'] : [], {
    env: { ...process.env, NATS_URL: url },
    execArgv: ['--expose-gc', '--import', 'tsx'],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const waiting = new Map<number, (reply: Record<string, unknown>) => void>();
  let ids = 0;
  let exited: Error | undefined;
  await new Promise<void>((resolve, reject) => {
    child.on('message', (m: Record<string, unknown>) => {
      if (m.ready === true) resolve();
      const w = waiting.get(m.id as number);
      waiting.delete(m.id as number);
      w?.(m);
    });
    child.once('exit', (code, signal) => {
      exited = new Error(`the worker host process exited (${code ?? signal})`);
      reject(exited);
      for (const w of waiting.values()) w({ error: exited.message });
    });
  });
  const ask = (cmd: HostCommand) =>
    new Promise<Record<string, unknown>>((resolve, reject) => {
      if (exited !== undefined) return reject(exited);
      const id = ++ids;
      waiting.set(id, (reply) => (typeof reply.error === 'string' ? reject(new Error(reply.error)) : resolve(reply)));
      child.send({ id, cmd });
    });
  return { child, ask };
}

export async function natsTarget(mode: 'nats' | 'durable', url: string): Promise<NatsTarget> {
  const durable = mode === 'durable';
  const { child, ask } = await spawnHost(url, durable);
  let nc: NatsConnection | undefined;
  let runtime: Runtime | undefined;
  try {
    nc = await connect({ servers: url, name: `bench-coordinator-${mode}`, noAsyncTraces: true });
    const conn = nc;
    const jetStream: Counts = {};
    const store: Counts = {};
    countJetStream(conn, jetStream);
    runtime = createRuntime({
      transport: natsTransport(conn),
      store: countCalls(durable ? jetstreamSagaStore(conn) : memorySagaStore(), store),
      maxInFlight: Number.POSITIVE_INFINITY,
    });
    const rt = runtime;
    const run = async (width: number, k: number, fail: boolean) => (await rt.run(sagaOfWidth(width), { k, fail })).status;
    let raw: RawNats | undefined;
    const measured = new Map<string, LoopFigures>();
    /** A raw operation at `inFlight`, measured the first time it is asked for. */
    const rawAt = async (name: string, inFlight: number, spec: PointSpec, op: (k: number) => Promise<unknown>) => {
      const key = `${name}@${inFlight}`;
      let f = measured.get(key);
      if (f === undefined) {
        if (spec.warmup > 0) await closedLoop(inFlight, spec.warmup, op);
        f = figures(await closedLoop(inFlight, spec.seconds, op), inFlight);
        measured.set(key, f);
      }
      return f;
    };
    return {
      mode,
      run,
      async counters(): Promise<Counters> {
        const host = await ask('counters');
        return {
          coordinatorStore: { ...store },
          coordinatorJetStream: { ...jetStream },
          coordinatorMessages: messages(conn),
          hostStore: host.hostStore as Counts,
          hostJetStream: host.hostJetStream as Counts,
          hostMessages: host.hostMessages as number,
          hostCpuMs: host.hostCpuMs as number,
        };
      },
      async heldMemory(width, n) {
        const before = settledMemory();
        await ask('hold');
        const sent0 = conn.stats().outMsgs;
        const pending = Array.from({ length: n }, (_, k) => run(width, k, false));
        // Held: every request sent, and the host's slots full (it queues the requests beyond them).
        let entered = 0;
        const reached = await waitUntil(
          async () => conn.stats().outMsgs - sent0 >= n * width && (entered = (await ask('entered')).entered as number) >= Math.min(n * width, HOST_CONCURRENCY),
          60_000,
        );
        await sleep(100); // the last requests sent reach the host
        const during = settledMemory();
        const host = await ask('measure');
        await ask('release');
        await Promise.all(pending);
        return { held: n, reached, entered, heapBytes: during.heap - before.heap, rssBytes: during.rss - before.rss, hostHeapBytes: host.heap as number, hostRssBytes: host.rss as number };
      },
      async baselines(spec, stepsInFlight): Promise<Record<string, LoopFigures>> {
        raw ??= await rawNats(conn);
        const r = raw;
        if (!durable) return { requestReply: await rawAt('requestReply', stepsInFlight, spec, () => r.request()) };
        return {
          kvPut: await rawAt('kvPut', spec.used, spec, (k) => r.kvPut(k)),
          jsPublish: await rawAt('jsPublish', spec.used, spec, () => r.publish()),
        };
      },
      async close() {
        await rt.close();
        await conn.close();
        child.disconnect();
        child.kill('SIGKILL');
      },
    };
  } catch (error) {
    await runtime?.close().catch(() => undefined);
    await nc?.close().catch(() => undefined);
    child.kill('SIGKILL');
    throw error;
  }
}
