/**
 * What a supervisor gate's verdict makes of a step (docs/patterns.md, "Supervisor gate"):
 * `true` commits it; any other answer rejects it with `GATE_REJECTED`, and the failure's
 * message says what the gate answered (its reason, or what it returned or threw instead),
 * whatever the result and the input.
 */
import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import { defineSaga } from '../../src/define.ts';
import { dispatchReady, initialContext, recordResult } from '../../src/machines/saga-logic.ts';

const RUNS = { seed: 20261207, numRuns: process.env.SCATTER_SAGA_MUTATE === '1' ? 40 : 150 };

/** A verdict the gate returns (or throws), and the words the failure's message must hold. */
const verdicts = fc.oneof(
  fc.string({ minLength: 1 }).map((reason) => ({ verdict: () => reason, says: reason })),
  fc.constant({ verdict: () => '', says: 'it gave an empty reason' }),
  fc.constant({ verdict: () => false, says: 'it returned boolean false, not true or a reason' }),
  fc.constant({ verdict: () => undefined, says: 'it returned undefined, not true or a reason' }),
  fc.constant({ verdict: () => null, says: 'it returned null, not true or a reason' }),
  fc.integer().map((n) => ({ verdict: () => n, says: `it returned number ${n}, not true or a reason` })),
  fc.constant({ verdict: () => ({ ok: true }), says: 'it returned an object, not true or a reason' }),
  fc.constant({ verdict: () => Promise.resolve(true), says: 'it returned a Promise (a gate must be synchronous), not true or a reason' }),
  fc.string({ minLength: 1 }).map((why) => ({
    verdict: () => {
      throw new Error(why);
    },
    says: `it threw: ${why}`,
  })),
);

describe("a gate's verdict", () => {
  test('true commits the step; anything else rejects it with GATE_REJECTED, the message saying what the gate answered', () => {
    fc.assert(
      fc.property(verdicts, fc.jsonValue(), fc.boolean(), ({ verdict, says }, result, accept) => {
        const def = defineSaga({ name: 'gated', version: 1, steps: { a: { worker: 'w', gate: () => (accept ? true : (verdict() as never)) } } });
        const started = dispatchReady(def, (id, step) => `${id}/${step}`, initialContext(def, { sagaId: 's', input: 1 })).context;
        const after = recordResult(def, started, { stepId: 'a', attempt: 1, result });
        const step = after.steps[0];
        if (accept) {
          expect(step?.status).toBe('committed');
          expect(after.failures).toEqual([]);
          return;
        }
        expect(step?.status).toBe('rejected');
        expect(step?.result).toEqual(result);
        expect(after.failures).toHaveLength(1);
        const failure = after.failures[0];
        expect(failure).toMatchObject({ stepId: 'a', worker: 'w', reason: 'rejected', attempt: 1, inDoubt: true, error: { code: 'GATE_REJECTED', retryable: false } });
        expect(failure?.error.message).toBe(`the gate of step 'a' (worker 'w') rejected its result: ${says}`);
      }),
      RUNS,
    );
  });
});
