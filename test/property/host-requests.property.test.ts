/**
 * A worker host against requests it must refuse, as properties of docs/protocol.md rather
 * than of its code: a request whose input is not plain JSON (a host in another language,
 * or a coordinator of another version, may send one) is answered `PROTOCOL_ERROR`, not
 * retryable; a request for a worker the host does not serve is answered `UNKNOWN_WORKER`.
 * Either way no user code runs and the key's record is not touched, whatever the
 * operation, the key or where in the input the bad part sits.
 */
import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import { createWorkerHost, defineWorker, memoryDedupStore, SagaDefinitionError } from '../../src/index.ts';
import type { WorkerRequest } from '../../src/index.ts';

const RUNS = { seed: 20261203, numRuns: process.env.SCATTER_SAGA_MUTATE === '1' ? 60 : 200 };

function harness() {
  const calls = { do: 0, compensate: 0 };
  const worker = defineWorker({
    name: 'pay',
    do: async () => {
      calls.do++;
      return 'charged';
    },
    compensate: async () => {
      calls.compensate++;
    },
  });
  const dedup = memoryDedupStore();
  return { host: createWorkerHost([worker], { dedup }), dedup, calls };
}

/** Parts of a value that JSON would change or drop (the input rule of docs/protocol.md, section 3). */
const notJson = fc.constantFrom<() => unknown>(
  () => 10n,
  () => () => 1,
  () => Symbol('s'),
  () => Number.NaN,
  () => Number.NEGATIVE_INFINITY,
  () => new Date(0),
  () => new Map([[1, 2]]),
  () => [1, undefined],
  () => {
    const cycle: Record<string, unknown> = { a: 1 };
    cycle.self = cycle;
    return cycle;
  },
);
const keyArb = fc.string({ minLength: 1, maxLength: 8 }).filter((k) => k !== '__proto__');
/** A plain JSON object holding a bad part at a random depth, with the path to it. */
const inputArb = fc.tuple(fc.array(keyArb.filter((k) => k !== 'sibling'), { maxLength: 3 }), notJson).map(([path, bad]) => ({
  input: path.reduceRight<unknown>((inner, k) => ({ [k]: inner, sibling: 1 }), bad()),
  at: `input${path.map((k) => `.${k}`).join('')}`,
}));

const request = (op: 'do' | 'compensate', key: string, attempt: number, input: unknown, worker = 'pay'): WorkerRequest => ({
  v: 1,
  op,
  worker,
  sagaId: 's',
  stepId: 'charge',
  key,
  attempt,
  deadline: Date.now() + 10_000,
  input,
});

describe('a worker host refuses what it must not run', () => {
  test('an input that is not plain JSON: PROTOCOL_ERROR, not retryable; nothing runs, the key is not touched', async () => {
    await fc.assert(
      fc.asyncProperty(fc.constantFrom('do' as const, 'compensate' as const), keyArb, fc.integer({ min: 1, max: 3 }), inputArb, async (op, key, attempt, { input, at }) => {
        const { host, dedup, calls } = harness();
        const reply = await host.handle(request(op, key, attempt, input));
        expect(reply.ok).toBe(false);
        if (!reply.ok) {
          expect(reply.error.code).toBe('PROTOCOL_ERROR');
          expect(reply.error.retryable).toBe(false);
          // It names where the bad part is, as the coordinator's own check does.
          expect(reply.error.message).toContain(`not plain JSON: ${at}`);
        }
        expect(calls).toEqual({ do: 0, compensate: 0 });
        expect((await dedup.read('pay', key)).record).toBeUndefined();
      }),
      RUNS,
    );
  });

  test('a worker it does not serve: UNKNOWN_WORKER, not retryable; nothing runs, the key is not touched', async () => {
    await fc.assert(
      fc.asyncProperty(fc.constantFrom('do' as const, 'compensate' as const), keyArb, fc.stringMatching(/^[a-z][a-z0-9-]{0,10}$/).filter((w) => w !== 'pay'), async (op, key, worker) => {
        const { host, dedup, calls } = harness();
        const reply = await host.handle(request(op, key, 1, { amount: 1 }, worker));
        expect(reply).toMatchObject({ ok: false, error: { code: 'UNKNOWN_WORKER', retryable: false } });
        expect(calls).toEqual({ do: 0, compensate: 0 });
        expect((await dedup.read(worker, key)).record).toBeUndefined();
        expect((await dedup.read('pay', key)).record).toBeUndefined();
      }),
      RUNS,
    );
  });
});

describe('a worker host is made of worker definitions only', () => {
  // Anything but a defineWorker(...) definition, wherever it sits in the list: refused, naming its position and what it is.
  const notAWorker = fc.oneof(
    fc.constant(null),
    fc.constant(undefined),
    fc.string(),
    fc.integer(),
    fc.boolean(),
    fc.constant(() => 'worker'),
    fc.dictionary(fc.string(), fc.jsonValue()).filter((o) => (o as { kind?: unknown }).kind !== 'worker'),
  );
  test('anything else in the list is a SagaDefinitionError naming its index and what it is; no host is made', () => {
    fc.assert(
      fc.property(fc.nat({ max: 3 }), notAWorker, (before, bad) => {
        const workers = Array.from({ length: before }, (_, i) => defineWorker({ name: `w${i}`, do: async () => 1, compensate: async () => {} }));
        const what = bad === null ? 'null' : typeof bad === 'object' ? 'an object without kind: "worker"' : typeof bad;
        expect(() => createWorkerHost([...workers, bad] as never)).toThrow(new SagaDefinitionError(`a worker host serves definitions made with defineWorker(...); workers[${before}] is ${what}`));
      }),
      RUNS,
    );
  });
});
