/**
 * Shared helpers of the chaos harness: a seeded PRNG, durable JSON-lines files, the
 * fault configuration passed to child processes through the environment, and a NATS
 * connection that reconnects forever.
 */
import { closeSync, existsSync, fsyncSync, openSync, readFileSync, writeSync } from 'node:fs';
import { connect } from '@nats-io/transport-node';
import type { NatsConnection } from '@nats-io/transport-node';

export { prng } from '../test/helpers/random.ts';

/** A seed derived from a base seed and labels (process role, index, incarnation). */
export function deriveSeed(seed: number, ...labels: (string | number)[]): number {
  let h = (seed ^ 0x9e3779b9) >>> 0;
  for (const ch of labels.join('/')) {
    h = Math.imul(h ^ ch.charCodeAt(0), 0x01000193) >>> 0;
  }
  return h >>> 0;
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** An append-only JSON-lines file; `sync` fsyncs every line before returning. */
export class JsonlAppender {
  private readonly fd: number;
  constructor(
    readonly path: string,
    private readonly sync: boolean,
  ) {
    this.fd = openSync(path, 'a');
  }
  append(obj: unknown): void {
    // One write per line: with O_APPEND, lines from several processes never interleave.
    writeSync(this.fd, `${JSON.stringify(obj)}\n`);
    if (this.sync) fsyncSync(this.fd);
  }
  close(): void {
    closeSync(this.fd);
  }
}

/** Parses a JSON-lines file; a torn last line (a writer killed mid-write) is skipped. */
export function readJsonl<T>(path: string): T[] {
  if (!existsSync(path)) return [];
  const out: T[] = [];
  for (const line of readFileSync(path, 'utf8').split('\n')) {
    if (line === '') continue;
    try {
      out.push(JSON.parse(line) as T);
    } catch {
      // incomplete line
    }
  }
  return out;
}

/**
 * Parses a JSON-lines file and, for each byte offset asked for, how many complete lines
 * end at or before it.
 */
export function readJsonlWithOffsets<T>(path: string, offsets: readonly number[]): { lines: T[]; linesBefore: Map<number, number> } {
  const linesBefore = new Map<number, number>();
  if (!existsSync(path)) {
    for (const o of offsets) linesBefore.set(o, 0);
    return { lines: [], linesBefore };
  }
  const buf = readFileSync(path);
  const sorted = [...new Set(offsets)].sort((a, b) => a - b);
  const lines: T[] = [];
  let start = 0;
  let k = 0;
  for (let i = 0; i < buf.length; i++) {
    if (buf[i] !== 0x0a) continue;
    const end = i + 1;
    while (k < sorted.length && (sorted[k] as number) < end) linesBefore.set(sorted[k++] as number, lines.length);
    const text = buf.toString('utf8', start, i);
    start = end;
    try {
      lines.push(JSON.parse(text) as T);
    } catch {
      // incomplete line
    }
  }
  while (k < sorted.length) linesBefore.set(sorted[k++] as number, lines.length);
  return { lines, linesBefore };
}

/** Injected faults of worker calls. All zero (and short latencies) in no-fault mode. */
export interface FaultConfig {
  /** Probability that `do` fails with a retryable error (without applying). */
  retryableRate: number;
  /** Probability that `do` fails with a TerminalError (without applying). */
  terminalRate: number;
  /** Probability that `compensate` fails (without undoing). */
  undoFailRate: number;
  /** Probability that a call sleeps slowMinMs..slowMaxMs (beyond the step timeout) instead of 0..latencyMs. */
  slowRate: number;
  latencyMs: number;
  slowMinMs: number;
  slowMaxMs: number;
  /**
   * Probability that a `do` sleeps stuckMinMs..stuckMaxMs: its saga times it out, its
   * compensations wait behind it and time out too, and the saga parks while the `do` still
   * runs. An operator who resolves it then must not miss the effect it applies later.
   */
  stuckRate: number;
  stuckMinMs: number;
  stuckMaxMs: number;
}

export const DEFAULT_FAULTS: FaultConfig = {
  retryableRate: 0.2,
  terminalRate: 0.1,
  undoFailRate: 0.4,
  slowRate: 0.03,
  latencyMs: 30,
  slowMinMs: 1_000,
  slowMaxMs: 4_000,
  stuckRate: 0.004,
  stuckMinMs: 7_000,
  stuckMaxMs: 9_000,
};

export const NO_FAULTS: FaultConfig = {
  retryableRate: 0,
  terminalRate: 0,
  undoFailRate: 0,
  slowRate: 0,
  latencyMs: 2,
  slowMinMs: 0,
  slowMaxMs: 0,
  stuckRate: 0,
  stuckMinMs: 0,
  stuckMaxMs: 0,
};

const FAULT_ENV: Record<keyof FaultConfig, string> = {
  retryableRate: 'CHAOS_RETRYABLE_RATE',
  terminalRate: 'CHAOS_TERMINAL_RATE',
  undoFailRate: 'CHAOS_UNDO_FAIL_RATE',
  slowRate: 'CHAOS_SLOW_RATE',
  latencyMs: 'CHAOS_LATENCY_MS',
  slowMinMs: 'CHAOS_SLOW_MIN_MS',
  slowMaxMs: 'CHAOS_SLOW_MAX_MS',
  stuckRate: 'CHAOS_STUCK_RATE',
  stuckMinMs: 'CHAOS_STUCK_MIN_MS',
  stuckMaxMs: 'CHAOS_STUCK_MAX_MS',
};

export function faultsToEnv(f: FaultConfig): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, name] of Object.entries(FAULT_ENV)) env[name] = String(f[k as keyof FaultConfig]);
  return env;
}

/** Reads the fault configuration from the environment (defaults: {@link DEFAULT_FAULTS}). */
export function faultsFromEnv(env: NodeJS.ProcessEnv = process.env): FaultConfig {
  const f = { ...DEFAULT_FAULTS };
  for (const [k, name] of Object.entries(FAULT_ENV)) {
    const raw = env[name];
    if (raw === undefined) continue;
    const v = Number(raw);
    if (!Number.isFinite(v) || v < 0) throw new Error(`${name} must be a number >= 0, got ${JSON.stringify(raw)}`);
    f[k as keyof FaultConfig] = v;
  }
  for (const k of ['retryableRate', 'terminalRate', 'undoFailRate', 'slowRate', 'stuckRate'] as const) {
    if (f[k] > 1) throw new Error(`${FAULT_ENV[k]} must be a probability in [0, 1], got ${f[k]}`);
  }
  if (f.retryableRate + f.terminalRate > 1) throw new Error('CHAOS_RETRYABLE_RATE + CHAOS_TERMINAL_RATE must be at most 1');
  if (f.slowMaxMs < f.slowMinMs) throw new Error('CHAOS_SLOW_MAX_MS must be >= CHAOS_SLOW_MIN_MS');
  if (f.stuckMaxMs < f.stuckMinMs) throw new Error('CHAOS_STUCK_MAX_MS must be >= CHAOS_STUCK_MIN_MS');
  return f;
}

export function requireEnv(name: string): string {
  const v = process.env[name];
  if (v === undefined || v === '') throw new Error(`${name} is required`);
  return v;
}

/** Replicas of the buckets (NATS_REPLICAS: 1 or 3; default 1). */
export function replicasFromEnv(): number {
  const raw = process.env.NATS_REPLICAS ?? '1';
  if (raw !== '1' && raw !== '3') throw new Error(`NATS_REPLICAS must be 1 or 3, got ${JSON.stringify(raw)}`);
  return Number(raw);
}

/** NATS_ALLOW_UNSAFE_SERVER=1: replicated buckets on a server older than 2.9.21 (see `allowUnsafeServer`). */
export function unsafeServerFromEnv(): boolean {
  return process.env.NATS_ALLOW_UNSAFE_SERVER === '1';
}

/**
 * A connection that waits for the server at start and reconnects forever with short
 * waits. `url` may list several servers separated by commas: the first is preferred, the
 * others are where it fails over to.
 */
export function connectNats(url: string, name: string): Promise<NatsConnection> {
  return connect({
    servers: url.split(','),
    noRandomize: true,
    name,
    maxReconnectAttempts: -1,
    reconnectTimeWait: 150,
    reconnectJitter: 50,
    waitOnFirstConnect: true,
    noAsyncTraces: true,
  });
}

/** The error code of anything thrown (scatter-saga errors carry `code`). */
export function codeOf(error: unknown): string {
  const e = error as { code?: unknown; name?: unknown } | undefined;
  if (e !== null && typeof e === 'object') {
    if (typeof e.code === 'string' && e.code !== '') return e.code;
    if (typeof e.code === 'number') return String(e.code);
    if (typeof e.name === 'string' && e.name !== '') return e.name;
  }
  return 'UNKNOWN';
}

/** Writes one JSON line on stdout: the protocol between child processes and the orchestrator. */
export function say(obj: Record<string, unknown>): void {
  process.stdout.write(`${JSON.stringify(obj)}\n`);
}
