/**
 * Embedded-runtime benchmark: the fanout-3 trip saga in memory.
 *
 *   npm run bench            (node --expose-gc --import tsx bench/embedded.ts)
 *
 * Prints JSON: sagas/s, p50/p99 latency and CPU ms per saga at 1 and 64 sagas in flight,
 * with 0% and 20% hotel failures; heap bytes per in-flight saga with 10,000 in flight
 * (BENCH_HELD=100000 for 100,000; BENCH_HEAP_ONLY=1 measures the heap alone), and the heap used then;
 * and, measured in the same run, the bare machine with worker actors as the baseline.
 * Throughput figures are medians of several rounds: the machine is shared.
 */
import { createRuntime, defineSaga, defineWorker, TerminalError } from '../src/index.ts';
import { bareSagaRunner } from './bare-baseline.ts';

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
const SAGAS = Number(process.env.BENCH_SAGAS ?? 20_000);
const HELD = Number(process.env.BENCH_HELD ?? 10_000);

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;
const pct = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(xs.length * p))] as number;

let seq = 0;
function tripRuntime(failRate: number, gate?: Promise<void>, maxInFlight?: number) {
  const worker = (name: string, canFail: boolean) =>
    defineWorker({
      name,
      async do(_input: unknown, ctx) {
        if (gate) await gate;
        if (canFail && failRate > 0 && (seq++ % Math.round(1 / failRate)) === 0) throw new TerminalError('no rooms');
        return { ref: ctx.idempotencyKey.slice(0, 8) };
      },
      async compensate() {},
    });
  const runtime = createRuntime(maxInFlight !== undefined ? { maxInFlight } : {}).host(worker('flights', false), worker('hotels', true), worker('cars', false));
  const saga = defineSaga({
    name: 'trip',
    version: 1,
    steps: {
      flight: { worker: 'flights', input: (t: { id: number }) => ({ trip: t.id, leg: 'flight' }) },
      hotel: { worker: 'hotels', input: (t: { id: number }) => ({ trip: t.id, leg: 'hotel' }) },
      car: { worker: 'cars', input: (t: { id: number }) => ({ trip: t.id, leg: 'car' }) },
    },
  });
  return { runtime, run: (i: number) => runtime.run(saga, { id: i }) };
}

/** Runs `total` sagas keeping `inFlight` going; returns throughput, latencies and CPU. */
async function load(run: (i: number) => Promise<unknown>, inFlight: number, total: number) {
  const latencies: number[] = [];
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  let started = 0;
  await new Promise<void>((resolve, reject) => {
    let done = 0;
    const next = () => {
      const i = started++;
      const t = performance.now();
      run(i).then(() => {
        latencies.push(performance.now() - t);
        if (++done === total) resolve();
        else if (started < total) next();
      }, reject);
    };
    for (let k = 0; k < Math.min(inFlight, total); k++) next();
  });
  const ms = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  return { sagasPerSec: total / (ms / 1000), p50: pct(latencies, 0.5), p99: pct(latencies, 0.99), cpuMsPerSaga: (cpu.user + cpu.system) / 1000 / total };
}

async function measure(label: string, make: () => (i: number) => Promise<unknown>, inFlight: number) {
  const run = make();
  await load(run, inFlight, Math.min(2_000, SAGAS)); // warm-up
  const rounds = [];
  for (let r = 0; r < ROUNDS; r++) rounds.push(await load(run, inFlight, inFlight === 1 ? Math.min(SAGAS, 5_000) : SAGAS));
  return {
    label,
    inFlight,
    sagasPerSec: Math.round(median(rounds.map((x) => x.sagasPerSec))),
    p50Ms: +median(rounds.map((x) => x.p50)).toFixed(3),
    p99Ms: +median(rounds.map((x) => x.p99)).toFixed(3),
    cpuMsPerSaga: +median(rounds.map((x) => x.cpuMsPerSaga)).toFixed(4),
    rounds: rounds.map((x) => Math.round(x.sagasPerSec)),
  };
}

async function heapPerInFlight(): Promise<{ inFlight: number; bytesPerSaga: number; heapUsedBytes: number }> {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (!gc) throw new Error('run with node --expose-gc (npm run bench does)');
  let open!: () => void;
  const gate = new Promise<void>((r) => (open = r));
  const { runtime, run } = tripRuntime(0, gate);
  await Promise.all(Array.from({ length: 200 }, (_, i) => (i === 0 ? (open(), run(i)) : run(i)))); // warm-up: compile paths
  let open2!: () => void;
  const gate2 = new Promise<void>((r) => (open2 = r));
  // Every one of the HELD sagas really in flight, none waiting for a slot (maxInFlight).
  const held = tripRuntime(0, gate2, Number.POSITIVE_INFINITY);
  await held.run(-1).catch(() => undefined).finally(() => undefined);
  gc();
  gc();
  const before = process.memoryUsage().heapUsed;
  const pending = Array.from({ length: HELD }, (_, i) => held.run(i));
  await new Promise((r) => setTimeout(r, 50));
  gc();
  gc();
  const during = process.memoryUsage().heapUsed;
  open2();
  await Promise.all(pending);
  await runtime.close();
  await held.runtime.close();
  return { inFlight: HELD, bytesPerSaga: Math.round((during - before) / HELD), heapUsedBytes: during };
}

async function main() {
  if (process.env.BENCH_HEAP_ONLY === '1') {
    console.log(JSON.stringify({ bench: 'embedded fanout-3 trip saga: heap', node: process.version, heap: await heapPerInFlight() }, null, 2));
    return;
  }
  const results = [];
  const bare = bareSagaRunner();
  results.push(await measure('baseline: bare machine + worker actors, 0% failures', () => () => bare(false), 64));
  for (const failRate of [0, 0.2]) {
    for (const inFlight of [1, 64]) {
      results.push(await measure(`runtime, ${failRate * 100}% hotel failures`, () => tripRuntime(failRate).run, inFlight));
    }
  }
  const heap = await heapPerInFlight();
  const baseline = results[0]?.sagasPerSec ?? 1;
  const at64 = results.find((r) => r.label === 'runtime, 0% hotel failures' && r.inFlight === 64)?.sagasPerSec ?? 0;
  const out = {
    bench: 'embedded fanout-3 trip saga',
    node: process.version,
    cpus: (await import('node:os')).cpus().length,
    rounds: ROUNDS,
    sagasPerRound: SAGAS,
    results,
    heap,
    summary: {
      sagasPerSecAt64: at64,
      ratioToBareBaseline: +(at64 / baseline).toFixed(3),
      targetSagasPerSec: 15_000,
      heapBytesPerInFlightSaga: heap.bytesPerSaga,
      targetHeapBytes: 20_000,
    },
  };
  console.log(JSON.stringify(out, null, 2));
}

await main();
