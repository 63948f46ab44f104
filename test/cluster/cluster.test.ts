/**
 * Beyond one machine, on NATS itself: a 3-node nats-server cluster on loopback with
 * JetStream, every bucket with 3 replicas, two coordinators and two worker hosts
 * connected to different nodes, and one node at a time killed (SIGKILL) and restarted
 * while sagas run. Every saga must end committed or compensated as its ledger of effects
 * says, and no acknowledged journal write may be lost.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect } from '@nats-io/transport-node';
import type { NatsConnection } from '@nats-io/transport-node';
import { createRuntime, defineSaga, defineWorker, TerminalError } from '../../src/index.ts';
import type { SagaOutcome } from '../../src/index.ts';
import { InvalidOptionError } from '../../src/index.ts';
import { jetstreamDedupStore, jetstreamSagaStore, MIN_SAFE_CLUSTERED_SERVER, natsTransport, serveWorkers } from '../../src/nats.ts';
import type { WorkerServer } from '../../src/nats.ts';
import { startNatsCluster } from '../helpers/nats-server.ts';
import type { NatsCluster } from '../helpers/nats-server.ts';

let cluster: NatsCluster;
const conns: NatsConnection[] = [];
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const DRIVERS = 6;

/** A connection that prefers node `first` and fails over to the others. */
async function connectTo(first: number, name: string): Promise<NatsConnection> {
  const servers = [cluster.urls[first] as string, ...cluster.urls.filter((_, i) => i !== first)];
  const nc = await connect({ servers, name, maxReconnectAttempts: -1, reconnectTimeWait: 100, noRandomize: true });
  conns.push(nc);
  return nc;
}

beforeAll(async () => {
  cluster = await startNatsCluster(3);
}, 60_000);

afterAll(async () => {
  for (const nc of conns) await nc.close().catch(() => undefined);
  await cluster?.stop();
});

describe('a 3-node NATS cluster with replicated JetStream', () => {
  it(`refuses replicated buckets on a nats-server older than ${MIN_SAFE_CLUSTERED_SERVER} (its compare-and-set is unsafe), naming replicas`, async () => {
    const nc = await connectTo(0, 'version-check');
    const version = nc.info?.version ?? '';
    expect(version).toMatch(/^\d+\.\d+\.\d+/);
    const [a, b, c] = version.split('.').map((x) => Number.parseInt(x, 10)) as [number, number, number];
    const older = a !== 2 ? a < 2 : b !== 9 ? b < 9 : c < 21;
    const attempt = () => [jetstreamSagaStore(nc, { bucketPrefix: 'refused', replicas: 3 }), jetstreamDedupStore(nc, { replicas: 3 })];
    if (older) {
      expect(attempt).toThrow(InvalidOptionError);
      expect(attempt).toThrow(new RegExp(`option 'replicas'.*${version.replace(/\./g, '\\.')}.*issue 4320`));
      expect(() => jetstreamDedupStore(nc, { replicas: 3, allowUnsafeServer: 'yes' as never })).toThrow(/allowUnsafeServer/);
    } else {
      expect(attempt).not.toThrow();
    }
    // One replica, or an explicit allowUnsafeServer, is always accepted.
    expect(() => jetstreamDedupStore(nc, { replicas: 1 })).not.toThrow();
    expect(() => jetstreamDedupStore(nc, { replicas: 3, allowUnsafeServer: true })).not.toThrow();
  });

  it('sagas keep the guarantee while one node at a time is killed and restarted; no acknowledged write is lost', async () => {
    const active = new Map<string, boolean>();
    const make = (name: string, failsWhen: (n: number) => boolean) =>
      defineWorker({
        name,
        do: (input: { n: number }, ctx) => {
          if (failsWhen(input.n)) throw new TerminalError(`${name} refuses ${input.n}`);
          active.set(`${ctx.sagaId}/${ctx.stepId}`, true);
          return { n: input.n };
        },
        compensate: (_i, _r, ctx) => void active.set(`${ctx.sagaId}/${ctx.stepId}`, false),
      });
    const workers = [make('flights', () => false), make('hotels', (n) => n % 5 === 0), make('cars', () => false)];
    const replicas = 3;
    // This test is about failover (kills, restarts, takeovers), not about two writers racing on
    // one key: on a server older than 2.9.21 those races are unsafe (the test below), so the
    // stores are told to run anyway.
    const allowUnsafeServer = true;
    const hosts: WorkerServer[] = [];
    // The buckets are created once, before any process uses them (as a deployment step
    // would), and the cluster is left to settle: every stream with a leader and caught up.
    {
      const nc = await connectTo(0, 'setup');
      await jetstreamSagaStore(nc, { bucketPrefix: 'cluster', replicas, allowUnsafeServer }).unfinished();
      const dedup = jetstreamDedupStore(nc, { replicas, allowUnsafeServer });
      for (const w of workers) await dedup.bucket(w.name);
      await cluster.healthy();
    }
    for (const node of [1, 2]) {
      const nc = await connectTo(node, `host-${node}`);
      hosts.push(await serveWorkers(nc, workers, { signals: [], dedup: jetstreamDedupStore(nc, { replicas, attempts: 8, allowUnsafeServer }) }));
    }
    const trip = defineSaga({
      name: 'trip',
      version: 1,
      steps: { flight: { worker: 'flights', timeoutMs: 5_000, retries: 2 }, hotel: { worker: 'hotels', timeoutMs: 5_000 }, car: { worker: 'cars', timeoutMs: 5_000, retries: 2 } },
      compensation: { retries: 8, backoff: { initialMs: 100, factor: 2, maxMs: 1_000 } },
    });
    const coordinators: { store: ReturnType<typeof jetstreamSagaStore>; runtime: ReturnType<typeof createRuntime> }[] = [];
    for (const node of [0, 1]) {
      const nc = await connectTo(node, `coordinator-${node}`);
      const store = jetstreamSagaStore(nc, { bucketPrefix: 'cluster', replicas, attempts: 8, allowUnsafeServer });
      coordinators.push({ store, runtime: createRuntime({ transport: natsTransport(nc), store, sagas: [trip], journalRetryMs: 60_000, ownership: { id: `c${node}`, leaseMs: 3_000 } }) });
    }

    const outcomes = new Map<string, SagaOutcome>();
    const rejected = new Map<string, string>();
    let stop = false;
    const drive = async (c: number, first: number) => {
      const { runtime } = coordinators[c] as (typeof coordinators)[number];
      for (let n = first; !stop; n += DRIVERS) {
        const sagaId = `trip-${n}`;
        try {
          outcomes.set(sagaId, await runtime.run(trip, { n }, { sagaId }));
        } catch (error) {
          const e = error as { code?: string; dispatched?: boolean };
          // Refused before its intent was written: it never began.
          rejected.set(sagaId, e.code === 'JOURNAL_UNAVAILABLE' && e.dispatched === false ? 'NOT_BEGUN' : (e.code ?? String(error)));
        }
      }
    };
    // Six callers, three on each coordinator, each running its own sagas one after another.
    const drivers = Array.from({ length: DRIVERS }, (_, i) => sleep(i * 10).then(() => drive(i % 2, i)));
    // One node at a time: kill it, let the others carry on, bring it back, and wait
    // until it has caught up before the next one goes down.
    for (const node of [2, 0, 1]) {
      await sleep(3_000);
      await cluster.kill(node);
      await sleep(3_000);
      await cluster.start(node);
      await cluster.healthy();
    }
    await sleep(3_000);
    stop = true;
    await Promise.all(drivers);
    console.log(`[cluster] ${outcomes.size} sagas ended, ${rejected.size} run() rejections ${JSON.stringify([...rejected.values()])}`);

    // Every saga that began is finished in the journal and agrees with the ledger.
    const { store } = coordinators[0] as (typeof coordinators)[number];
    const started = [...outcomes.keys(), ...[...rejected.entries()].filter(([, code]) => code !== 'NOT_BEGUN').map(([id]) => id)];
    expect(outcomes.size, `rejections: ${JSON.stringify([...new Set(rejected.values())])} (${rejected.size})`).toBeGreaterThan(20);
    for (const sagaId of started) {
      // A saga whose run() rejected after it began goes on elsewhere (fenced) or after recover().
      if (!outcomes.has(sagaId)) await coordinators[0]?.runtime.recover();
      const outcome = outcomes.get(sagaId) ?? (await coordinators[0]?.runtime.outcome(sagaId, { timeoutMs: 60_000 }));
      expect(outcome, `${sagaId} has no outcome`).toBeDefined();
      const rec = await store.get(sagaId);
      // What run() reported was journaled first: it survives node failures.
      expect(rec?.outcome ?? rec?.parked, sagaId).toEqual(outcome);
      const held = ['flight', 'hotel', 'car'].filter((s) => active.get(`${sagaId}/${s}`) === true);
      if (outcome?.status === 'committed') expect(held, sagaId).toEqual(['flight', 'hotel', 'car']);
      else expect(outcome?.status === 'compensated' ? held : [], `${sagaId} ${outcome?.status}`).toEqual([]);
    }
    expect([...outcomes.values()].some((o) => o.status === 'compensated')).toBe(true);
    for (const { runtime } of coordinators) await runtime.close();
    for (const h of hosts) await h.drain();
  }, 400_000);
});
