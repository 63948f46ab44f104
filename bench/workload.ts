/**
 * The workload every mode of the benchmark suite runs: a saga of `width` parallel steps
 * spread over three workers, whose last step throws TerminalError when the saga is
 * chosen to fail (the saga then compensates the others). The workers answer at once,
 * unless held behind a gate (to measure memory with sagas in flight).
 */
import { defineSaga, defineWorker, TerminalError } from '../src/index.ts';
import type { SagaDefinition, WorkerDefinition } from '../src/index.ts';

export const WORKER_NAMES = ['w0', 'w1', 'w2'] as const;

/** Requests the worker host process of the NATS modes runs at once (`serveWorkers` concurrency); it queues the rest. */
export const HOST_CONCURRENCY = 256;

/** The saga input: its number, and whether its last step fails. */
export interface SagaInput {
  readonly k: number;
  readonly fail: boolean;
}

/** Holds workers: while `gate` is set, every `do` waits for it; `entered` counts the `do` calls. */
export const hold: { gate: Promise<void> | undefined; entered: number } = { gate: undefined, entered: 0 };

/** Makes every `do` wait until the returned function is called. */
export function closeGate(): () => void {
  let open!: () => void;
  hold.gate = new Promise<void>((r) => (open = r));
  hold.entered = 0;
  return () => {
    hold.gate = undefined;
    open();
  };
}

export const workers: readonly WorkerDefinition[] = WORKER_NAMES.map((name) =>
  defineWorker({
    name,
    async do(input: { k: number; fail?: boolean }) {
      hold.entered++;
      if (hold.gate !== undefined) await hold.gate;
      if (input.fail === true) throw new TerminalError('sold out');
      return { ok: input.k };
    },
    compensate: () => undefined,
  }),
);

const sagas = new Map<number, SagaDefinition>();

/** The saga of `width` parallel steps `s0`…: step i on worker `w<i mod 3>`; the last one gets `fail`. */
export function sagaOfWidth(width: number): SagaDefinition<SagaInput> {
  let saga = sagas.get(width);
  if (saga === undefined) {
    const steps: Record<string, { worker: string; timeoutMs: number; input: (t: SagaInput) => unknown }> = {};
    for (let i = 0; i < width; i++) {
      const last = i === width - 1;
      steps[`s${i}`] = {
        worker: WORKER_NAMES[i % WORKER_NAMES.length] as string,
        // Generous: a busy point must not turn slow steps into timeouts and compensations.
        timeoutMs: 120_000,
        input: last ? (t: SagaInput) => ({ k: t.k, fail: t.fail }) : (t: SagaInput) => ({ k: t.k }),
      };
    }
    saga = defineSaga({ name: `width${width}`, version: 1, steps });
    sagas.set(width, saga);
  }
  return saga as SagaDefinition<SagaInput>;
}
