/**
 * One point of the benchmark sweep (mode × width × sagas in flight × failure rate): warm
 * up, run the workload in a time-boxed closed loop, read the counters of both sides
 * before and after, then hold that many sagas in flight to measure memory per saga.
 * A mode is a {@link Target}: how to run one saga and how to read its counters.
 */
import type { Mode } from './args.ts';
import { add, delta } from './counting.ts';
import type { Counts } from './counting.ts';
import { closedLoop, failsAt, round, sig } from './stats.ts';
import type { LoopResult } from './stats.ts';

/** Counters of both sides at one moment (monotonic; a point reports their deltas). */
export interface Counters {
  /** SagaStore calls of the coordinator, by method. */
  readonly coordinatorStore: Counts;
  /** DedupStore calls of the worker host, by method. */
  readonly hostStore: Counts;
  /** JetStream requests of each side's connection, by kind (NATS modes). */
  readonly coordinatorJetStream?: Counts;
  readonly hostJetStream?: Counts;
  /** NATS messages in + out of each side's connection (NATS modes). */
  readonly coordinatorMessages?: number;
  readonly hostMessages?: number;
  /** CPU of the worker host process in ms (NATS modes; embedded: the host is this process). */
  readonly hostCpuMs?: number;
}

/** Memory growth with `held` sagas in flight, their workers held. */
export interface HeldMemory {
  readonly held: number;
  /**
   * Whether every step of every held saga was dispatched before the measurement: in a
   * worker, or (NATS modes) sent, the host's slots full and the rest queued there.
   */
  readonly reached: boolean;
  /** Steps in a worker's `do`. */
  readonly entered: number;
  readonly heapBytes: number;
  readonly rssBytes: number;
  readonly hostHeapBytes?: number;
  readonly hostRssBytes?: number;
}

export interface Target {
  readonly mode: Mode;
  /** Runs saga `k` of a point to its end; resolves with its outcome's status. */
  run(width: number, k: number, fail: boolean): Promise<string>;
  counters(): Promise<Counters>;
  /** Starts `n` sagas with their workers held, measures, releases them, awaits their ends. */
  heldMemory(width: number, n: number): Promise<HeldMemory>;
}

export interface PointSpec {
  readonly mode: Mode;
  readonly width: number;
  /** Sagas in flight asked for. */
  readonly inFlight: number;
  /** Sagas in flight run (fewer when width × inFlight is over the cap of steps in flight). */
  readonly used: number;
  readonly fail: number;
  readonly seconds: number;
  readonly warmup: number;
  /** Sagas to hold in flight for the memory figures (at least `used`). */
  readonly hold: number;
  readonly notes: readonly string[];
}

/** Figures of a loop, for baselines. */
export interface LoopFigures {
  readonly perSec: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly cpuMsPerOp: number;
  /** Operations in flight. */
  readonly inFlight: number;
}

export function figures(r: LoopResult, inFlight: number): LoopFigures {
  return { perSec: round(r.perSec), p50Ms: sig(r.p50Ms), p99Ms: sig(r.p99Ms), cpuMsPerOp: sig(r.cpuMs / Math.max(1, r.n)), inFlight };
}

export interface PointResult {
  readonly mode: Mode;
  readonly width: number;
  readonly inFlight: number;
  readonly inFlightUsed: number;
  readonly fail: number;
  /** Caps, skips, failures and anything unexpected about this point. */
  readonly notes: string[];
  /** Set when the point could not be measured. */
  error?: string;
  sagas?: number;
  seconds?: number;
  sagasPerSec?: number;
  /** Steps dispatched per second: sagas/s × width. */
  stepsPerSec?: number;
  p50Ms?: number;
  p99Ms?: number;
  maxMs?: number;
  outcomes?: Counts;
  cpuMsPerSaga?: { coordinator: number; host?: number };
  /** CPU (both sides) per step: the cost of a step, to compare across widths. */
  cpuMsPerStep?: number;
  memoryPerSaga?: { held: number; reached: boolean; heapBytes: number; rssBytes: number; hostHeapBytes?: number; hostRssBytes?: number };
  messagesPerSaga?: { coordinator: number; host: number };
  storeCallsPerSaga?: { coordinator: Counts; host: Counts };
  /** Coordinator: begin + write + archive of the SagaStore (heartbeats apart); host: DedupStore writes. */
  durableWritesPerSaga?: { coordinator: number; host: number };
  jetStreamOpsPerSaga?: { coordinator: Counts; host: Counts };
  baselines: Record<string, LoopFigures>;
  ratios: Record<string, number>;
}

const perSaga = (c: Counts, n: number): Counts => Object.fromEntries(Object.entries(c).map(([k, v]) => [k, sig(v / n)]));
const sum = (c: Counts, keys: readonly string[]) => keys.reduce((s, k) => s + (c[k] ?? 0), 0);

const memory = new Map<string, HeldMemory>();

/** Steps in flight at most during a warm-up. */
const WARMUP_STEPS = 1024;
/** Sagas in flight at least during a warm-up. */
const WARMUP_IN_FLIGHT = 64;

/** Runs one point against `target`. */
export async function measurePoint(target: Target, spec: PointSpec): Promise<PointResult> {
  const result: PointResult = {
    mode: spec.mode,
    width: spec.width,
    inFlight: spec.inFlight,
    inFlightUsed: spec.used,
    fail: spec.fail,
    notes: [...spec.notes],
    baselines: {},
    ratios: {},
  };
  const tally: Counts = {};
  const op = async (k: number) => add(tally, await target.run(spec.width, k, failsAt(k, spec.fail)));
  if (spec.warmup > 0) {
    // Enough to compile the paths and create the buckets: up to 64 sagas at once even for a point of 1 in flight (a
    // quarter second at 1 in flight runs too few sagas for the JIT), and wide sagas fewer at once.
    const w = await closedLoop(Math.max(1, Math.min(Math.max(spec.used, WARMUP_IN_FLIGHT), Math.floor(WARMUP_STEPS / spec.width))), spec.warmup, op);
    const limit = 30 + 10 * spec.seconds;
    if (w.seconds > limit) {
      result.notes.push(`skipped: the warm-up alone took ${round(w.seconds)} s (limit ${limit} s)`);
      return result;
    }
  }
  for (const k of Object.keys(tally)) delete tally[k];
  const c0 = await target.counters();
  const loop = await closedLoop(spec.used, spec.seconds, op);
  const c1 = await target.counters();
  const n = loop.n;
  if (loop.seconds > spec.seconds * 1.5 + 1) result.notes.push(`overran: ${round(loop.seconds, 2)} s measured for ${spec.seconds} s asked (the last sagas started ran to their end)`);
  const coordinatorStore = delta(c1.coordinatorStore, c0.coordinatorStore);
  const hostStore = delta(c1.hostStore, c0.hostStore);
  const hostCpu = c1.hostCpuMs !== undefined && c0.hostCpuMs !== undefined ? (c1.hostCpuMs - c0.hostCpuMs) / n : undefined;
  Object.assign(result, {
    sagas: n,
    seconds: round(loop.seconds, 3),
    sagasPerSec: round(loop.perSec),
    stepsPerSec: round(loop.perSec * spec.width),
    p50Ms: sig(loop.p50Ms),
    p99Ms: sig(loop.p99Ms),
    maxMs: sig(loop.maxMs),
    outcomes: { ...tally },
    cpuMsPerSaga: { coordinator: sig(loop.cpuMs / n), ...(hostCpu !== undefined ? { host: sig(hostCpu) } : {}) },
    cpuMsPerStep: sig((loop.cpuMs / n + (hostCpu ?? 0)) / spec.width),
    storeCallsPerSaga: { coordinator: perSaga(coordinatorStore, n), host: perSaga(hostStore, n) },
    durableWritesPerSaga: { coordinator: sig(sum(coordinatorStore, ['begin', 'write', 'archive']) / n), host: sig(sum(hostStore, ['write']) / n) },
  });
  if (c1.coordinatorMessages !== undefined && c1.hostMessages !== undefined) {
    result.messagesPerSaga = {
      coordinator: sig((c1.coordinatorMessages - (c0.coordinatorMessages ?? 0)) / n),
      host: sig((c1.hostMessages - (c0.hostMessages ?? 0)) / n),
    };
  }
  if (c1.coordinatorJetStream !== undefined && c1.hostJetStream !== undefined) {
    result.jetStreamOpsPerSaga = {
      coordinator: perSaga(delta(c1.coordinatorJetStream, c0.coordinatorJetStream ?? {}), n),
      host: perSaga(delta(c1.hostJetStream, c0.hostJetStream ?? {}), n),
    };
  }
  const expectedFailed = Array.from({ length: n }, (_, k) => failsAt(k, spec.fail)).filter(Boolean).length;
  const odd = Object.keys(tally).filter((s) => s !== 'committed' && s !== 'compensated');
  if (odd.length > 0) result.notes.push(`unexpected outcomes: ${odd.map((s) => `${tally[s]} ${s}`).join(', ')}`);
  if (spec.fail === 0 && (tally.compensated ?? 0) > 0) result.notes.push(`${tally.compensated} sagas compensated with no failure injected`);
  if (spec.fail > 0 && Math.abs((tally.compensated ?? 0) - expectedFailed) > spec.used) result.notes.push(`${tally.compensated ?? 0} compensated, about ${expectedFailed} expected`);

  // Measured once per mode, width and number held; points that hold as many reuse it.
  const key = `${spec.mode}/${spec.width}/${spec.hold}`;
  let m = memory.get(key);
  if (m === undefined) {
    m = await target.heldMemory(spec.width, spec.hold);
    memory.set(key, m);
  }
  result.memoryPerSaga = {
    held: m.held,
    reached: m.reached,
    heapBytes: Math.round(m.heapBytes / m.held),
    rssBytes: Math.round(m.rssBytes / m.held),
    ...(m.hostHeapBytes !== undefined ? { hostHeapBytes: Math.round(m.hostHeapBytes / m.held) } : {}),
    ...(m.hostRssBytes !== undefined ? { hostRssBytes: Math.round(m.hostRssBytes / m.held) } : {}),
  };
  if (!m.reached) result.notes.push(`memory: not every held saga was dispatched within the wait (${m.entered} steps in a worker)`);
  return result;
}
