/**
 * The embedded mode of the benchmark suite: createRuntime() with its in-memory transport
 * and stores (wrapped in call counters), the workers hosted in this process. Its
 * baselines, run at every point with the same width, sagas in flight and failures: the
 * bare machine with worker actors, scatter-saga's saga machine alone (answered at once),
 * and a plain Promise.allSettled saga.
 */
import { createRuntime, memoryDedupStore, memorySagaStore } from '../../src/index.ts';
import { allSettledSaga, bareMachine, sagaMachineAlone } from '../baselines.ts';
import { countCalls } from '../counting.ts';
import type { Counts } from '../counting.ts';
import { figures } from '../point.ts';
import type { LoopFigures, PointSpec, Target } from '../point.ts';
import { closedLoop, failsAt, settledMemory } from '../stats.ts';
import { closeGate, hold, sagaOfWidth, workers } from '../workload.ts';
import { waitUntil } from './held.ts';

export interface EmbeddedTarget extends Target {
  close(): Promise<void>;
}

export function embeddedTarget(): EmbeddedTarget {
  const coordinatorStore: Counts = {};
  const hostStore: Counts = {};
  const runtime = createRuntime({
    store: countCalls(memorySagaStore(), coordinatorStore),
    dedup: countCalls(memoryDedupStore(), hostStore),
    maxInFlight: Number.POSITIVE_INFINITY,
  }).host(...workers);
  const run = async (width: number, k: number, fail: boolean) => (await runtime.run(sagaOfWidth(width), { k, fail })).status;
  return {
    mode: 'embedded',
    run,
    counters: async () => ({ coordinatorStore: { ...coordinatorStore }, hostStore: { ...hostStore } }),
    async heldMemory(width, n) {
      const before = settledMemory();
      const open = closeGate();
      const pending = Array.from({ length: n }, (_, k) => run(width, k, false));
      const reached = await waitUntil(() => hold.entered >= n * width, 60_000);
      const during = settledMemory();
      open();
      await Promise.all(pending);
      return { held: n, reached, entered: hold.entered, heapBytes: during.heap - before.heap, rssBytes: during.rss - before.rss };
    },
    close: () => runtime.close(),
  };
}

const bare = new Map<number, (fail: boolean) => Promise<void>>();
const settled = new Map<number, (fail: boolean) => Promise<void>>();
const alone = new Map<number, (k: number, fail: boolean) => Promise<void>>();

/** The bare machine, the saga machine alone and the allSettled saga at the point's width, sagas in flight and failure rate. */
export async function embeddedBaselines(spec: PointSpec): Promise<Record<string, LoopFigures>> {
  if (!bare.has(spec.width)) bare.set(spec.width, bareMachine(spec.width));
  if (!settled.has(spec.width)) settled.set(spec.width, allSettledSaga(spec.width));
  if (!alone.has(spec.width)) alone.set(spec.width, sagaMachineAlone(sagaOfWidth(spec.width)));
  const out: Record<string, LoopFigures> = {};
  const machine = alone.get(spec.width) as (k: number, fail: boolean) => Promise<void>;
  const sagas: [string, (k: number) => Promise<void>][] = [
    ['bareMachine', (k) => (bare.get(spec.width) as (fail: boolean) => Promise<void>)(failsAt(k, spec.fail))],
    ['sagaMachine', (k) => machine(k, failsAt(k, spec.fail))],
    ['allSettled', (k) => (settled.get(spec.width) as (fail: boolean) => Promise<void>)(failsAt(k, spec.fail))],
  ];
  for (const [name, op] of sagas) {
    if (spec.warmup > 0) await closedLoop(spec.used, spec.warmup, op);
    out[name] = figures(await closedLoop(spec.used, spec.seconds, op), spec.used);
  }
  return out;
}
