/**
 * Measuring helpers of the benchmark suite: a time-boxed closed loop with latency
 * percentiles and this process's CPU, percentiles, rounding, and heap/RSS after a full gc.
 */

export const round = (n: number, digits = 1): number => (Number.isFinite(n) ? Math.round(n * 10 ** digits) / 10 ** digits : n);

/** Rounds to `sig` significant digits (figures that span many orders of magnitude). */
export const sig = (n: number, digits = 3): number => (Number.isFinite(n) && n !== 0 ? Number(n.toPrecision(digits)) : n);

export function percentile(sorted: readonly number[], p: number): number {
  return sorted.length === 0 ? NaN : (sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))] as number);
}

export interface LoopResult {
  /** Operations completed. */
  readonly n: number;
  readonly seconds: number;
  readonly perSec: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly maxMs: number;
  /** CPU of this process (user + system) over the loop, in ms. */
  readonly cpuMs: number;
}

/**
 * Runs `op(k)` with `inFlight` callers in a closed loop for `seconds` (each caller starts
 * another op as soon as its last one ends, until the time is up; ops already started
 * finish). `k` counts the ops started, from 0.
 */
export async function closedLoop(inFlight: number, seconds: number, op: (k: number) => Promise<unknown>): Promise<LoopResult> {
  const lat: number[] = [];
  let started = 0;
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const end = t0 + seconds * 1000;
  await Promise.all(
    Array.from({ length: inFlight }, async () => {
      while (performance.now() < end) {
        const s = performance.now();
        await op(started++);
        lat.push(performance.now() - s);
      }
    }),
  );
  const elapsed = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  lat.sort((a, b) => a - b);
  return {
    n: lat.length,
    seconds: elapsed,
    perSec: lat.length / elapsed,
    p50Ms: percentile(lat, 0.5),
    p99Ms: percentile(lat, 0.99),
    maxMs: lat[lat.length - 1] ?? NaN,
    cpuMs: (cpu.user + cpu.system) / 1000,
  };
}

/** Heap used and RSS after two full collections (node must run with --expose-gc). */
export function settledMemory(): { heap: number; rss: number } {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (gc === undefined) throw new Error('run node with --expose-gc (npm run bench does)');
  gc();
  gc();
  const m = process.memoryUsage();
  return { heap: m.heapUsed, rss: m.rss };
}

/** Whether saga `k` of a run with failure rate `rate` fails: spread evenly (every 5th at 0.2). */
export function failsAt(k: number, rate: number): boolean {
  return Math.floor((k + 1) * rate) > Math.floor(k * rate);
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
