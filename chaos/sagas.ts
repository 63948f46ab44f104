/**
 * The workers and sagas of the chaos run.
 *
 * Workers apply their effects to a ledger: one shared append-only file, one JSON line
 * per effect, written with a single write and fsynced before the worker returns. Faults
 * are decided at random per call: a latency (sometimes beyond the step timeout, so the
 * step goes in doubt), then a retryable error or a TerminalError without applying, or
 * (for compensate) a failure without undoing.
 */
import { defineSaga, defineWorker, TerminalError } from '../src/index.ts';
import type { SagaDefinition, WorkerContext, WorkerDefinition } from '../src/index.ts';
import type { FaultConfig } from './common.ts';
import { sleep } from './common.ts';
import type { JsonlAppender } from './common.ts';
import type { LedgerLine } from './check.ts';

export const WORKERS = ['flights', 'hotels', 'cars', 'payments'] as const;
/** The bucket prefix of the saga store every coordinator shares. */
export const STORE_PREFIX = 'chaos_shared';
export type WorkerName = (typeof WORKERS)[number];

/** Worker groups served by hosts: every worker is served by every host of its group. */
export const HOST_GROUPS: readonly (readonly WorkerName[])[] = [
  ['flights', 'hotels'],
  ['cars', 'payments'],
];

/** What `do` returns: deterministic from the key, so a step's dependents see the same input after any re-run. */
export interface EffectResult {
  readonly ref: string;
  readonly key: string;
}

export function chaosWorker(name: string, ledger: JsonlAppender, faults: FaultConfig, random: () => number): WorkerDefinition {
  const latency = () => (random() < faults.slowRate ? faults.slowMinMs + random() * (faults.slowMaxMs - faults.slowMinMs) : random() * faults.latencyMs);
  const pause = async () => {
    const ms = latency();
    if (ms >= 1) await sleep(ms);
  };
  const write = (op: LedgerLine['op'], ctx: WorkerContext) => {
    const line: LedgerLine = { t: Date.now(), pid: process.pid, op, worker: name, sagaId: ctx.sagaId, stepId: ctx.stepId, key: ctx.idempotencyKey, attempt: ctx.attempt };
    ledger.append(line);
  };
  return defineWorker({
    name,
    async do(_input: unknown, ctx: WorkerContext): Promise<EffectResult> {
      if (random() < faults.stuckRate) await sleep(faults.stuckMinMs + random() * (faults.stuckMaxMs - faults.stuckMinMs));
      else await pause();
      const r = random();
      if (r < faults.retryableRate) throw new Error(`${name}: injected retryable failure`);
      if (r < faults.retryableRate + faults.terminalRate) throw new TerminalError(`${name}: injected terminal failure`);
      write('apply', ctx);
      return { ref: `${name}-${ctx.idempotencyKey.slice(0, 12)}`, key: ctx.idempotencyKey };
    },
    async compensate(_input: unknown, _result: unknown, ctx: WorkerContext) {
      await pause();
      if (random() < faults.undoFailRate) throw new Error(`${name}: injected undo failure`);
      // Undoing what is not there is a no-op for the system of record; the line records the attempt either way.
      write('undo', ctx);
    },
  });
}

const stepBackoff = { initialMs: 50, factor: 2, maxMs: 300 };
const compensation = { retries: 3, timeoutMs: 1_500, backoff: { initialMs: 50, factor: 2, maxMs: 400 } };

export interface ChaosInput {
  readonly n: number;
}

const refOf = (r: unknown): string => (r as EffectResult | undefined)?.ref ?? 'none';

/** Fanout of three, every step kept; undone one at a time, the last to complete first. */
export const trip = defineSaga<ChaosInput>({
  name: 'trip',
  version: 1,
  steps: {
    flight: { worker: 'flights', timeoutMs: 1_000, retries: 1, backoff: stepBackoff },
    hotel: { worker: 'hotels', timeoutMs: 800 },
    car: { worker: 'cars', timeoutMs: 1_200, retries: 2, backoff: stepBackoff },
  },
  join: { kind: 'all' },
  compensation: { ...compensation, order: 'sequential' },
});

/** A chain of three stages, each fed by the result of the previous one. */
export const checkout = defineSaga<ChaosInput>({
  name: 'checkout',
  version: 1,
  steps: {
    reserve: { worker: 'hotels', timeoutMs: 700, retries: 1, backoff: stepBackoff },
    charge: { worker: 'payments', after: ['reserve'], input: (s, r) => ({ n: s.n, hold: refOf(r.reserve) }), timeoutMs: 1_500, retries: 2, backoff: stepBackoff },
    confirm: { worker: 'flights', after: ['charge'], input: (s, r) => ({ n: s.n, charge: refOf(r.charge) }), timeoutMs: 500 },
  },
  compensation,
});

/** Three parallel quotes, the first two kept; the rest undone all at once. */
export const quote = defineSaga<ChaosInput>({
  name: 'quote',
  version: 1,
  steps: {
    a: { worker: 'cars', timeoutMs: 900, retries: 1, backoff: stepBackoff },
    b: { worker: 'payments', timeoutMs: 600 },
    c: { worker: 'flights', timeoutMs: 1_300, retries: 2, backoff: stepBackoff },
  },
  join: { kind: 'quorum', n: 2 },
  compensation: { ...compensation, order: 'parallel' },
});

/** Two parallel offers, the first one kept. */
export const race = defineSaga<ChaosInput>({
  name: 'race',
  version: 1,
  steps: {
    a: { worker: 'hotels', timeoutMs: 1_000 },
    b: { worker: 'payments', timeoutMs: 700, retries: 1, backoff: stepBackoff },
  },
  join: { kind: 'any' },
  compensation,
});

export const SAGAS: readonly SagaDefinition<ChaosInput>[] = [trip, checkout, quote, race];
