/**
 * Memory benchmark: the heap of the embedded runtime with many trip sagas (three parallel
 * steps) in flight at once, their workers held on a gate until every saga has started.
 * Issue target: 100,000 sagas in flight within 2 GB of heap.
 *
 *   npm run bench:memory                 (100,000 sagas)
 *   npm run bench:memory -- --held 10000
 *
 * Prints one JSON object: the heap used before and while the sagas are held (after a full
 * gc each time), the growth per saga in flight, and whether the target is met.
 */
import { createRuntime, defineSaga, defineWorker } from '../src/index.ts';

const TARGET_BYTES = 2 * 1024 ** 3;
const HOLD_TIMEOUT_MS = 600_000;

function heldArg(argv: readonly string[]): number {
  const i = argv.indexOf('--held');
  if (i < 0) return 100_000;
  const n = Number(argv[i + 1]);
  if (!Number.isSafeInteger(n) || n < 1) throw new Error(`--held must be a whole number >= 1, got ${JSON.stringify(argv[i + 1])}`);
  return n;
}

async function main(): Promise<void> {
  const held = heldArg(process.argv.slice(2));
  const gc = (globalThis as { gc?: () => void }).gc;
  if (gc === undefined) throw new Error('run with node --expose-gc (npm run bench:memory does)');
  let gate: Promise<void> = Promise.resolve();
  const worker = (name: string) =>
    defineWorker({
      name,
      async do(input: { trip: number }, ctx) {
        await gate;
        return { trip: input.trip, ref: ctx.idempotencyKey.slice(0, 8) };
      },
      async compensate() {},
    });
  // Every saga really in flight: no maxInFlight queue.
  const runtime = createRuntime({ maxInFlight: Number.POSITIVE_INFINITY }).host(worker('flights'), worker('hotels'), worker('cars'));
  const trip = defineSaga({
    name: 'trip',
    version: 1,
    steps: {
      // Held for as long as starting them all takes: no step may time out meanwhile.
      flight: { worker: 'flights', input: (t: { id: number }) => ({ trip: t.id }), timeoutMs: HOLD_TIMEOUT_MS },
      hotel: { worker: 'hotels', input: (t: { id: number }) => ({ trip: t.id }), timeoutMs: HOLD_TIMEOUT_MS },
      car: { worker: 'cars', input: (t: { id: number }) => ({ trip: t.id }), timeoutMs: HOLD_TIMEOUT_MS },
    },
  });
  // Warm up: compile the paths, create the worker actors.
  await Promise.all(Array.from({ length: 500 }, (_, i) => runtime.run(trip, { id: -1 - i })));
  gc();
  gc();
  const before = process.memoryUsage().heapUsed;
  let open!: () => void;
  gate = new Promise<void>((resolve) => (open = resolve));
  const t0 = performance.now();
  const pending = Array.from({ length: held }, (_, i) => runtime.run(trip, { id: i }));
  // Until every step of every saga has reached its worker.
  while (runtime.inFlight < held) await new Promise((r) => setTimeout(r, 20));
  await new Promise((r) => setTimeout(r, 200));
  gc();
  gc();
  const during = process.memoryUsage().heapUsed;
  const startedMs = performance.now() - t0;
  open();
  const outcomes = await Promise.all(pending);
  const ended: Record<string, number> = {};
  for (const o of outcomes) ended[o.status] = (ended[o.status] ?? 0) + 1;
  await runtime.close();
  console.log(
    JSON.stringify(
      {
        bench: 'embedded trip saga (3 parallel steps): heap with sagas in flight',
        node: process.version,
        held,
        endedAfterwards: ended,
        startedMs: Math.round(startedMs),
        heapUsedBeforeBytes: before,
        heapUsedWhileHeldBytes: during,
        bytesPerSagaInFlight: Math.round((during - before) / held),
        target: { heapUsedWhileHeldBytes: TARGET_BYTES, met: held >= 100_000 ? during <= TARGET_BYTES : undefined },
      },
      null,
      2,
    ),
  );
}

await main();
