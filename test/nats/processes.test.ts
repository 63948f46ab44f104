/**
 * Across processes: the coordinator runs here, worker hosts run as child processes.
 * A host killed with SIGKILL in the middle of sagas and replaced by a new one leaves
 * every saga committed or compensated, with the systems of record (a KV bucket the
 * workers write) matching. A host sent SIGTERM finishes what it took, then exits.
 */
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect } from '@nats-io/transport-node';
import type { NatsConnection } from '@nats-io/transport-node';
import { Kvm } from '@nats-io/kv';
import { createRuntime, defineSaga } from '../../src/index.ts';
import type { SagaOutcome, WorkerRequest } from '../../src/index.ts';
import { natsTransport } from '../../src/nats.ts';
import { spawnHost, startNatsServer } from '../helpers/nats-server.ts';
import type { ChildHost, NatsServer } from '../helpers/nats-server.ts';

const FIXTURE = fileURLToPath(new URL('../fixtures/nats-worker-host.ts', import.meta.url));
let server: NatsServer;
let nc: NatsConnection;
const children: ChildHost[] = [];

beforeAll(async () => {
  server = await startNatsServer();
  nc = await connect({ servers: server.url });
});

afterAll(async () => {
  await Promise.all(children.map((c) => c.kill('SIGKILL')));
  await nc?.close();
  await server?.stop();
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function host(env: Record<string, string>): Promise<ChildHost> {
  const c = await spawnHost(FIXTURE, { NATS_URL: server.url, LOG_LEVEL: 'info', ...env });
  children.push(c);
  return c;
}

interface Booking {
  status: 'booked' | 'cancelled';
  key: string;
  applied: number;
}

describe('worker hosts in other processes', () => {
  it('SIGKILL of a worker host mid-saga, then a new host: every saga ends committed or compensated, and the systems of record agree', async () => {
    const env = { DEDUP: 'kv', DELAY_MS: '300' };
    const first = await host(env);
    const runtime = createRuntime({ transport: natsTransport(nc) });
    const trip = defineSaga({
      name: 'trip',
      version: 1,
      steps: {
        flight: { worker: 'flights', timeoutMs: 3_000 },
        hotel: { worker: 'hotels', timeoutMs: 3_000 },
        car: { worker: 'cars', timeoutMs: 3_000 },
      },
      compensation: { retries: 40, timeoutMs: 3_000, backoff: { initialMs: 100, factor: 1.5, maxMs: 500 } },
    });
    const started: { input: { fail?: string }; outcome: Promise<SagaOutcome> }[] = [];
    const launch = (i: number) => {
      const input = i % 5 === 0 ? { fail: 'hotels' } : {};
      started.push({ input, outcome: runtime.run(trip, input) });
    };

    // Sagas start over 300 ms; each step takes up to 300 ms: the kill finds some done, some in flight.
    for (let i = 0; i < 60; i++) {
      launch(i);
      await sleep(5);
    }
    await sleep(200);
    const killed = await first.kill('SIGKILL');
    expect(killed.signal).toBe('SIGKILL');
    await host(env); // the replacement: same KV buckets, nothing in memory
    for (let i = 60; i < 80; i++) launch(i);

    const outcomes = await Promise.all(started.map((s) => s.outcome));
    const sor = await new Kvm(nc).open('sor');
    const booking = async (worker: string, sagaId: string): Promise<Booking | undefined> => {
      const e = await sor.get(`${worker}.${sagaId}`);
      return e === null || e.operation !== 'PUT' ? undefined : e.json<Booking>();
    };
    let committed = 0;
    let compensatedAfterTimeout = 0;
    for (const [i, o] of outcomes.entries()) {
      expect(['committed', 'compensated'], `saga ${o.sagaId} ended ${o.status}`).toContain(o.status);
      const records = await Promise.all(['flights', 'hotels', 'cars'].map((w) => booking(w, o.sagaId)));
      if (o.status === 'committed') {
        committed++;
        expect(started[i]?.input.fail).toBeUndefined();
        for (const r of records) expect(r).toEqual(expect.objectContaining({ status: 'booked', applied: 1 }));
      } else {
        for (const r of records) expect(r?.status ?? 'absent', `saga ${o.sagaId}`).not.toBe('booked');
        if (o.status === 'compensated' && o.failures.some((f) => f.reason === 'timed-out')) compensatedAfterTimeout++;
      }
    }
    expect(outcomes.slice(0, 60).some((o) => o.status === 'committed')).toBe(true);
    // The kill really hit sagas in flight, and the new host really served.
    expect(compensatedAfterTimeout).toBeGreaterThan(0);
    expect(committed).toBeGreaterThan(0);
    // Every saga started after the restart without a planned failure committed.
    for (let i = 60; i < 80; i++) if (started[i]?.input.fail === undefined) expect(outcomes[i]?.status).toBe('committed');

    // Late duplicates of every do the workers saw, as a slow network would deliver them,
    // reach the new host: it remembers (JetStream KV) what the killed host did.
    const t = natsTransport(nc);
    const steps = { flights: 'flight', hotels: 'hotel', cars: 'car' } as const;
    for (const [i, o] of outcomes.slice(0, 60).entries()) {
      for (const [worker, stepId] of Object.entries(steps)) {
        const before = await booking(worker, o.sagaId);
        if (before === undefined) continue;
        const late: WorkerRequest = { v: 1, op: 'do', worker, sagaId: o.sagaId, stepId, key: before.key, attempt: 1, deadline: Date.now() + 5_000, input: started[i]?.input };
        const reply = await t.request(late, 5_000);
        if (o.status === 'committed') expect(reply).toEqual({ ok: true, result: o.results[stepId] });
        else expect(reply, `late do of ${worker} for compensated saga ${o.sagaId}`).toMatchObject({ ok: false, error: { code: 'COMPENSATED' } });
        expect(await booking(worker, o.sagaId)).toEqual(before);
      }
    }
    await runtime.close();
  }, 90_000);

  it('SIGTERM drains a worker host: requests in flight are answered, nothing new is taken, the process exits', async () => {
    const c = await host({ SAGA_PREFIX: 'term' });
    const t = natsTransport(nc, { prefix: 'term' });
    const req = (i: number, ms: number): WorkerRequest => ({
      v: 1,
      op: 'do',
      worker: 'slow',
      sagaId: `term-${i}`,
      stepId: 's',
      key: `${i}`.padStart(40, 'e'),
      attempt: 1,
      deadline: Date.now() + 10_000,
      input: { ms },
    });
    let answered = 0;
    const inflight = [1, 2, 3].map((i) => t.request(req(i, 1_500), 10_000).finally(() => answered++));
    await sleep(300);
    c.child.kill('SIGTERM');
    const probe = natsTransport(nc, { prefix: 'term', servedCacheMs: 0 });
    for (let i = 0; i < 100 && (await probe.isServed('slow')); i++) await sleep(10);
    await expect(t.request(req(4, 1), 2_000)).rejects.toMatchObject({ code: 'NO_RESPONDERS' });
    expect(answered).toBe(0); // it stopped taking work while the requests it took still ran
    const replies = await Promise.all(inflight);
    for (const r of replies) expect(r).toMatchObject({ ok: true, result: { slept: 1_500 } });
    const exit = await c.exited;
    expect(exit.signal ?? exit.code).toBe('SIGTERM');
    const msgs = c.lines.map((l) => l.msg);
    expect(msgs).toContain('draining: taking nothing new, finishing what is in flight');
    expect(msgs).toContain('drained');
  }, 30_000);
});
