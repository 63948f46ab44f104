/**
 * jetstreamSagaStore: journals, the unfinished index and dead letters on JetStream
 * KV, and a coordinator that crashes mid-saga replaced by another that recovers it
 * from the journal, with the workers' effects applied once.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect } from '@nats-io/transport-node';
import type { NatsConnection } from '@nats-io/transport-node';
import { createRuntime, defineSaga, defineWorker } from '../../src/index.ts';
import type { DeadLetter, SagaOutcome, SagaRecord } from '../../src/index.ts';
import { jetstreamDedupStore, jetstreamSagaStore, natsTransport, serveWorkers } from '../../src/nats.ts';
import type { WorkerServer } from '../../src/nats.ts';
import { startNatsServer } from '../helpers/nats-server.ts';
import type { NatsServer } from '../helpers/nats-server.ts';

let server: NatsServer;
let hostNc: NatsConnection;
let host: WorkerServer;
const applied = new Map<string, number>();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

beforeAll(async () => {
  server = await startNatsServer();
  hostNc = await connect({ servers: server.url });
  const w = (name: string, ms: number) =>
    defineWorker({
      name,
      async do(input: { id: string }, ctx) {
        await sleep(ms);
        applied.set(`${name}:${ctx.idempotencyKey}`, (applied.get(`${name}:${ctx.idempotencyKey}`) ?? 0) + 1);
        return { name, id: input.id };
      },
      compensate: () => undefined,
    });
  host = await serveWorkers(hostNc, [w('fast', 0), w('slow', 400)], { dedup: jetstreamDedupStore(hostNc, { windowMs: 60_000 }), signals: [] });
});

afterAll(async () => {
  await host?.drain();
  await hostNc?.close();
  await server?.stop();
});

const saga = defineSaga({ name: 'order', version: 1, steps: { a: { worker: 'fast' }, b: { worker: 'slow', timeoutMs: 5_000 } } });

describe('jetstreamSagaStore', () => {
  it('journals a saga from intent to outcome, and keeps finished sagas out of unfinished()', async () => {
    const nc = await connect({ servers: server.url });
    const store = jetstreamSagaStore(nc, { bucketPrefix: 'j1' });
    const runtime = createRuntime({ transport: natsTransport(nc), store });
    const outcome = await runtime.run(saga, { id: 'o-1' });
    expect(outcome.status).toBe('committed');
    await sleep(50); // the outcome is journaled right after it is reported
    const rec = (await store.get(outcome.sagaId)) as SagaRecord;
    expect(rec).toMatchObject({ sagaId: outcome.sagaId, saga: 'order', version: 1, input: { id: 'o-1' }, status: 'committed', outcome: { status: 'committed' } });
    expect((await store.unfinished()).map((r) => r.sagaId)).not.toContain(outcome.sagaId);
    // And from a fresh connection: it is on the server, not in this process.
    const other = await connect({ servers: server.url });
    expect(await jetstreamSagaStore(other, { bucketPrefix: 'j1' }).get(outcome.sagaId)).toMatchObject({ status: 'committed' });
    await other.close();
    await runtime.close();
    await nc.close();
  });

  it('keeps dead letters until unparked', async () => {
    const nc = await connect({ servers: server.url });
    const store = jetstreamSagaStore(nc, { bucketPrefix: 'j2' });
    const now = Date.now();
    await store.begin({ sagaId: 'p-1', saga: 'order', version: 1, input: {}, status: 'running', startedAt: now, updatedAt: now, snapshot: undefined, outcome: undefined });
    const letter: DeadLetter = { sagaId: 'p-1', saga: 'order', version: 1, remaining: [], failures: [], parkedAt: now, timesParked: 1 };
    await store.park(letter);
    expect(await store.deadLetters()).toEqual([letter]);
    expect(await store.get('p-1')).toMatchObject({ status: 'parked' });
    expect((await store.unfinished()).map((r) => r.sagaId)).toEqual(['p-1']);
    await store.unpark('p-1');
    expect(await store.deadLetters()).toEqual([]);
    expect(await store.get('p-1')).toMatchObject({ status: 'running' });
    await nc.close();
  });

  it('a coordinator that dies mid-saga is replaced by one that recovers the saga from the journal; effects apply once', async () => {
    const a = await connect({ servers: server.url });
    const first = createRuntime({ transport: natsTransport(a), store: jetstreamSagaStore(a, { bucketPrefix: 'j3' }) });
    const lost = first.run(saga, { id: 'o-2' });
    void lost.catch(() => undefined);
    await sleep(150); // 'a' has committed, 'b' is running on the host
    await first.close({ drainMs: 0 });
    await a.close();

    const b = await connect({ servers: server.url });
    const store = jetstreamSagaStore(b, { bucketPrefix: 'j3' });
    const unfinished = await store.unfinished();
    expect(unfinished).toHaveLength(1);
    const sagaId = (unfinished[0] as SagaRecord).sagaId;
    const second = createRuntime({ transport: natsTransport(b), store, sagas: [saga] });
    const ended = new Promise<SagaOutcome>((resolve) => second.on('outcome', (o) => o.sagaId === sagaId && resolve(o)));
    expect(await second.recover()).toEqual([sagaId]);
    const outcome = await ended;
    expect(outcome).toMatchObject({ status: 'committed', results: { a: { name: 'fast', id: 'o-2' }, b: { name: 'slow', id: 'o-2' } } });
    const effects = [...applied].filter(([k]) => k.startsWith('fast:') || k.startsWith('slow:'));
    await sleep(50);
    expect(await store.get(sagaId)).toMatchObject({ status: 'committed' });
    expect(await store.unfinished()).toEqual([]);
    // Each step's effect was applied exactly once, whatever was asked twice.
    for (const [, count] of effects) expect(count).toBe(1);
    await second.close();
    await b.close();
  });
});
