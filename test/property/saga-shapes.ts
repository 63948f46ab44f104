/**
 * The random saga shapes of the simulation property tests: 1 to 8 steps, stages (`after`
 * edges) under join "all", parallel steps under "any" and "quorum", timeouts, retry and
 * compensation budgets.
 */
import fc from 'fast-check';
import { defineSaga } from '../../src/define.ts';
import type { CompensationOrder, JoinSpec, SagaDefinition, StepSpec } from '../../src/types.ts';

export interface Shape {
  n: number;
  after: number[][];
  join: 'all' | 'any' | 'quorum';
  quorum: number;
  timeouts: number[];
  retries: number[];
  compRetries: number;
}

export const shapeArb: fc.Arbitrary<Shape> = fc.integer({ min: 1, max: 8 }).chain((n) =>
  fc.record({
    n: fc.constant(n),
    after: fc.tuple(...Array.from({ length: n }, (_, i) => (i === 0 ? fc.constant([] as number[]) : fc.subarray(Array.from({ length: i }, (_, j) => j), { maxLength: Math.min(2, i) })))),
    join: fc.constantFrom('all' as const, 'all' as const, 'any' as const, 'quorum' as const),
    quorum: fc.integer({ min: 1, max: n }),
    timeouts: fc.array(fc.integer({ min: 20, max: 200 }), { minLength: n, maxLength: n }),
    retries: fc.array(fc.integer({ min: 0, max: 2 }), { minLength: n, maxLength: n }),
    compRetries: fc.integer({ min: 0, max: 3 }),
  }),
);

/**
 * Steps that wait longer than a host's lease (200 ms in the simulation) for their answer:
 * for each step, 0 keeps the shape's timeout, any other value replaces it. A `do` whose
 * host lost its claim mid-run can then be taken over by another request of the same step
 * (a duplicate, a retry) while the saga still waits, and the takeover's answer (its
 * re-run failing, the key left uncertain) reaches the saga instead of a timeout. Drawn
 * last, after the other arbitraries, so that they draw what they drew without it.
 */
export interface Pace {
  timeouts: number[];
  /** Odds (percent) of a slow `do` at least: half of them lose their claim while they run. */
  lapse: number;
  /** First retry backoff of every step in ms (10 in the shape): a long one leaves a step waiting to retry while its saga settles. */
  backoffMs: number;
  /** Odds (percent) that a host's write to the dedup store fails (0 in most runs). */
  storeFail: number;
  /**
   * Odds (percent) that the supervisor gate of a gated step (every other step, the first
   * included) rejects a result its `do` committed: 0 (no gates) in most runs. The verdict
   * is a function of the result (which names the idempotency key), so every answer of one
   * key gets the same one, as a pure gate must.
   */
  gateOdds: number;
  /** The saga's compensation order (docs/patterns.md): `reverse` in half of the runs. */
  order: CompensationOrder;
}

export const paceArb: fc.Arbitrary<Pace> = fc.record({
  timeouts: fc.array(fc.oneof(fc.constant(0), fc.constant(0), fc.integer({ min: 300, max: 1_200 })), { minLength: 8, maxLength: 8 }),
  lapse: fc.integer({ min: 0, max: 40 }),
  backoffMs: fc.oneof(fc.constant(10), fc.constant(10), fc.integer({ min: 100, max: 600 })),
  storeFail: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 25 })),
  gateOdds: fc.oneof(fc.constant(0), fc.constant(0), fc.integer({ min: 10, max: 60 })),
  order: fc.constantFrom<CompensationOrder>('reverse', 'reverse', 'parallel', 'sequential'),
});

/** A pure gate that rejects about `odds` percent of results, by a hash of the key each names. */
function gateOf(odds: number): NonNullable<StepSpec['gate']> {
  return (result: { applied?: unknown } | undefined) => {
    const key = typeof result?.applied === 'string' ? result.applied : '';
    let h = 0;
    for (let i = 0; i < key.length; i++) h = (h * 31 + key.charCodeAt(i)) >>> 0;
    return h % 100 >= odds || `simulated supervisor rejects ${key.slice(0, 12)}`;
  };
}

export function sagaOf(s: Shape, pace?: Pace): SagaDefinition {
  const parallelOnly = s.join !== 'all';
  const steps: Record<string, StepSpec> = {};
  for (let i = 0; i < s.n; i++) {
    steps[`s${i}`] = {
      worker: `w${i % 3}`,
      after: parallelOnly ? [] : (s.after[i] ?? []).map((j) => `s${j}`),
      timeoutMs: pace?.timeouts[i] || (s.timeouts[i] ?? 100),
      retries: s.retries[i] ?? 0,
      backoff: { initialMs: pace?.backoffMs ?? 10, maxMs: Math.max(80, pace?.backoffMs ?? 10) },
      ...(pace !== undefined && pace.gateOdds > 0 && i % 2 === 0 ? { gate: gateOf(pace.gateOdds) } : {}),
    };
  }
  const join: JoinSpec = s.join === 'all' ? { kind: 'all' } : s.join === 'any' ? { kind: 'any' } : { kind: 'quorum', n: s.quorum };
  return defineSaga({ name: 'sim', version: 1, steps, join, compensation: { retries: s.compRetries, timeoutMs: 150, backoff: { initialMs: 10, maxMs: 80 }, order: pace?.order ?? 'reverse' } });
}

/**
 * The operator of a run and the fault that makes its resolves dangerous: odds of a stuck
 * `do` (it runs for seconds, so its saga parks while it still runs), the share of parked
 * sagas the operator resolves at once, and the operator's own choice tape.
 */
export interface Operator {
  stuck: number;
  resolve: number;
  tape: number[];
}

export const operatorArb: fc.Arbitrary<Operator> = fc.record({
  stuck: fc.integer({ min: 0, max: 15 }),
  resolve: fc.integer({ min: 0, max: 100 }),
  tape: fc.array(fc.nat({ max: 0xffff }), { maxLength: 24 }),
});
