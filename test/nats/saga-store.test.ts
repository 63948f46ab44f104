/**
 * jetstreamSagaStore: journals, the unfinished index and dead letters on JetStream
 * KV, and a coordinator that crashes mid-saga replaced by another that recovers it
 * from the journal, with the workers' effects applied once.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
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
const js = (nc: NatsConnection) => jetstreamManager(nc);

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
    await sleep(50); // the outcome is journaled before it is reported; the saga is archived right after
    const rec = (await store.get(outcome.sagaId)) as SagaRecord;
    expect(rec).toMatchObject({ sagaId: outcome.sagaId, saga: 'order', version: 1, input: { id: 'o-1' }, status: 'committed', outcome: { status: 'committed' } });
    expect((await store.unfinished()).map((r) => r.record.sagaId)).not.toContain(outcome.sagaId);
    // And from a fresh connection: it is on the server, not in this process.
    const other = await connect({ servers: server.url });
    expect(await jetstreamSagaStore(other, { bucketPrefix: 'j1' }).get(outcome.sagaId)).toMatchObject({ status: 'committed' });
    await other.close();
    await runtime.close();
    await nc.close();
  });

  it('begins a saga once, fences every write by revision, keeps the dead letter in the parked record, and closes a saga with its outcome', async () => {
    const nc = await connect({ servers: server.url });
    const store = jetstreamSagaStore(nc, { bucketPrefix: 'j2' });
    const now = Date.now();
    const base: SagaRecord = { sagaId: 'p-1', saga: 'order', version: 1, input: {}, status: 'running', startedAt: now, updatedAt: now, snapshot: undefined, outcome: undefined };
    const rev = (await store.begin(base)) as number;
    expect(rev).toBeGreaterThan(0);
    expect(await store.begin(base)).toBeUndefined(); // one saga per id
    const letter: DeadLetter = { sagaId: 'p-1', saga: 'order', version: 1, remaining: [], failures: [], parkedAt: now, timesParked: 1 };
    const parked = (await store.write({ ...base, status: 'parked', deadLetter: letter }, rev)) as number;
    expect(await store.write({ ...base, status: 'running' }, rev)).toBeUndefined(); // a coordinator that lost the saga cannot write it
    expect(await store.deadLetters()).toEqual([letter]);
    expect((await store.unfinished()).map((u) => u.record.sagaId)).toEqual(['p-1']);
    // From another connection: it is on the server.
    const other = await connect({ servers: server.url });
    expect(await jetstreamSagaStore(other, { bucketPrefix: 'j2' }).load('p-1')).toMatchObject({ revision: parked, record: { status: 'parked' } });
    await other.close();
    const outcome: SagaOutcome = { sagaId: 'p-1', status: 'compensated', failures: [], compensated: [], resolvedByOperator: [] };
    expect(await store.write({ ...base, status: 'compensated', outcome }, parked)).toBeGreaterThan(parked);
    // The outcome's write closed it: out of the unfinished set, its final record still found, and it takes no more writes.
    expect(store.archive).toBeUndefined();
    expect(await store.unfinished()).toEqual([]);
    expect(await store.deadLetters()).toEqual([]);
    expect(await store.load('p-1')).toMatchObject({ revision: 0, record: { status: 'compensated', outcome: { status: 'compensated' } } });
    const closedAt = (await (await js(nc)).streams.getMessage('KV_j2_journal', { last_by_subj: '$KV.j2_journal.p-1' }))?.seq as number;
    expect(await store.write({ ...base, status: 'running' }, parked)).toBeUndefined();
    expect(await store.write({ ...base, status: 'running' }, closedAt)).toBeGreaterThan(closedAt); // naming the marker's revision is still a compare-and-set
    // A closed saga's id is not begun again (a create never writes over its final record).
    const other2 = jetstreamSagaStore(nc, { bucketPrefix: 'j2b' });
    const r2 = (await other2.begin({ ...base, sagaId: 'p-2' })) as number;
    await other2.write({ ...base, sagaId: 'p-2', status: 'committed', outcome: { sagaId: 'p-2', status: 'committed', results: {}, released: [], resolvedByOperator: [] } as unknown as SagaOutcome }, r2);
    expect(await other2.begin({ ...base, sagaId: 'p-2' })).toBeUndefined();
    expect(await other2.get('p-2')).toMatchObject({ status: 'committed' });
    await nc.close();
  });

  it('a committed saga costs the coordinator two journal writes (intent and outcome) and no journal read', async () => {
    const nc = await connect({ servers: server.url });
    const store = jetstreamSagaStore(nc, { bucketPrefix: 'j5' });
    const runtime = createRuntime({ transport: natsTransport(nc), store, ownership: false });
    await runtime.run(saga, { id: 'warm' }); // the buckets exist
    // Every write to the journal bucket is a message on its subjects; every read a message-get request on its stream.
    const spy = await connect({ servers: server.url });
    const writes: string[] = [];
    const reads: string[] = [];
    spy.subscribe('$KV.j5_journal.>', { callback: (_e, m) => void writes.push(`${m.headers?.get('KV-Operation') || 'PUT'} ${m.subject}`) });
    spy.subscribe('$JS.API.STREAM.MSG.GET.KV_j5_journal', { callback: (_e, m) => void reads.push(m.subject) });
    spy.subscribe('$JS.API.DIRECT.GET.KV_j5_journal', { callback: (_e, m) => void reads.push(m.subject) });
    await spy.flush();
    const outcome = await runtime.run(saga, { id: 'counted' });
    expect(outcome.status).toBe('committed');
    await sleep(100);
    expect(writes).toEqual([`PUT $KV.j5_journal.${outcome.sagaId}`, `DEL $KV.j5_journal.${outcome.sagaId}`]);
    expect(reads).toEqual([]);
    expect(await store.get(outcome.sagaId)).toMatchObject({ status: 'committed', outcome: { status: 'committed' } });
    await runtime.close();
    await spy.close();
    await nc.close();
  });

  it('prune removes final records older than keepMs, and keeps running and parked sagas whatever their age', async () => {
    const nc = await connect({ servers: server.url });
    const store = jetstreamSagaStore(nc, { bucketPrefix: 'j6', keepMs: 1_000 });
    const now = Date.now();
    const base: SagaRecord = { sagaId: 'old-done', saga: 'order', version: 1, input: {}, status: 'running', startedAt: now, updatedAt: now, snapshot: undefined, outcome: undefined };
    const outcome = { sagaId: 'old-done', status: 'committed', results: {}, released: [], resolvedByOperator: [] } as unknown as SagaOutcome;
    const r1 = (await store.begin(base)) as number;
    await store.write({ ...base, status: 'committed', outcome }, r1);
    await store.begin({ ...base, sagaId: 'old-running' });
    const r3 = (await store.begin({ ...base, sagaId: 'old-parked' })) as number;
    await store.write({ ...base, sagaId: 'old-parked', status: 'parked' }, r3);
    await sleep(1_100);
    const r4 = (await store.begin({ ...base, sagaId: 'new-done' })) as number;
    await store.write({ ...base, sagaId: 'new-done', status: 'committed', outcome: { ...outcome, sagaId: 'new-done' } }, r4);
    expect(await store.prune?.()).toBe(1);
    expect(await store.get('old-done')).toBeUndefined();
    expect(await store.get('new-done')).toMatchObject({ status: 'committed' });
    expect((await store.unfinished()).map((u) => u.record.sagaId).sort()).toEqual(['old-parked', 'old-running']);
    expect(await store.prune?.()).toBe(0);
    // An aborted prune removes nothing.
    await sleep(1_000);
    const aborted = new AbortController();
    aborted.abort();
    expect(await store.prune?.(aborted.signal)).toBe(0);
    expect(await store.get('new-done')).toMatchObject({ status: 'committed' });
    // keepMs 0 keeps every final record.
    expect(await jetstreamSagaStore(nc, { bucketPrefix: 'j6', keepMs: 0 }).prune?.()).toBe(0);
    expect(await store.get('new-done')).toMatchObject({ status: 'committed' });
    await nc.close();
  });

  it('rejects with a typed error, with the cause, when JetStream cannot be reached', async () => {
    const nc = await connect({ servers: server.url });
    const store = jetstreamSagaStore(nc, { bucketPrefix: 'j4', attempts: 1 });
    await nc.close();
    await expect(store.begin({ sagaId: 'x', saga: 'order', version: 1, input: {}, status: 'running', startedAt: 0, updatedAt: 0, snapshot: undefined, outcome: undefined })).rejects.toMatchObject({
      code: 'TRANSPORT_ERROR',
      message: expect.stringContaining('saga store'),
    });
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
    const sagaId = (unfinished[0] as { record: SagaRecord }).record.sagaId;
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
