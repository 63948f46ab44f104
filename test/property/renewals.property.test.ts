/**
 * A host renewing its claim while user code runs (docs/protocol.md, Claims, step 4), as
 * properties of the protocol's pure transitions, whatever the lease, the times and whether
 * the user code ended while the renewal was in flight:
 * - a renewal that loses to another host's write means the claim is lost: the host tells
 *   its user code to stop (`abort`), or, when the user code has ended, reads the key
 *   again before it answers (`rechecking`);
 * - a renewal the store fails to answer loses nothing: no command, the claim is kept, the
 *   next renewal writes again, and user code that has ended completes on its claim.
 */
import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import { startRequest, stepRequest } from '../../src/machines/host-protocol.ts';
import type { RequestSetup, RequestState } from '../../src/machines/host-protocol.ts';
import type { WorkerRequest } from '../../src/types.ts';

const RUNS = { seed: 20261208, numRuns: process.env.SCATTER_SAGA_MUTATE === '1' ? 40 : 150 };

const req: WorkerRequest = { v: 1, op: 'do', worker: 'pay', sagaId: 's', stepId: 'a', key: 'k', attempt: 1, deadline: 10_000_000, input: 1 };

/** A do that won its claim at `t0` and renews it at `at`: the request, its setup and the renewal's write. */
function renewing(leaseMs: number, t0: number, at: number) {
  const setup: RequestSetup = { req, inputHash: '1', owner: 'h/1', leaseMs };
  const running = stepRequest(setup, startRequest(setup, t0).state, { type: 'WRITTEN', revision: 1, now: t0 }).state;
  const renew = stepRequest(setup, running, { type: 'RENEW', now: at });
  return { setup, renew };
}

const times = fc.record({ leaseMs: fc.integer({ min: 30, max: 60_000 }), t0: fc.nat({ max: 1_000_000 }), after: fc.integer({ min: 1, max: 60_000 }), ended: fc.boolean() });
const DONE = { event: { type: 'DO.OK' as const, result: 'charged' } };

describe('lease renewals', () => {
  test('each renewal writes the claim with a lease from now, compare-and-set on its revision', () => {
    fc.assert(
      fc.property(times, ({ leaseMs, t0, after }) => {
        const { renew } = renewing(leaseMs, t0, t0 + after);
        expect(renew.commands).toMatchObject([{ type: 'write', record: { state: 'doing', owner: 'h/1', leaseUntil: t0 + after + leaseMs }, revision: 1 }]);
      }),
      RUNS,
    );
  });

  test('a renewal that loses to another write: the claim is lost (user code told to stop, or the key read again once it ended)', () => {
    fc.assert(
      fc.property(times, ({ leaseMs, t0, after, ended }) => {
        const { setup, renew } = renewing(leaseMs, t0, t0 + after);
        const state: RequestState = ended ? stepRequest(setup, renew.state, { type: 'RAN', outcome: DONE as never, now: t0 + after }).state : renew.state;
        const lost = stepRequest(setup, state, { type: 'CONFLICT', now: t0 + after + 1 });
        if (ended) {
          expect(lost.state.phase).toBe('rechecking');
          expect(lost.commands).toEqual([{ type: 'read' }]);
        } else {
          expect(lost.commands).toEqual([{ type: 'abort', owner: 'h/1' }]);
          expect(lost.state).toMatchObject({ phase: 'running', lost: true });
          // A lost claim is not renewed again.
          expect(stepRequest(setup, lost.state, { type: 'RENEW', now: t0 + after + 2 }).commands).toEqual([]);
        }
      }),
      RUNS,
    );
  });

  test('a renewal the store fails to answer loses nothing: the claim is kept and renewed again, and ended user code completes on it', () => {
    fc.assert(
      fc.property(times, fc.string(), ({ leaseMs, t0, after, ended }, why) => {
        const { setup, renew } = renewing(leaseMs, t0, t0 + after);
        const state: RequestState = ended ? stepRequest(setup, renew.state, { type: 'RAN', outcome: DONE as never, now: t0 + after }).state : renew.state;
        const failed = stepRequest(setup, state, { type: 'STORE_FAILED', error: { code: 'TRANSPORT_ERROR', message: why, retryable: true }, now: t0 + after + 1 });
        if (ended) {
          // It completes on its claim: the outcome written compare-and-set on the claim's revision.
          expect(failed.commands).toMatchObject([{ type: 'write', record: { state: 'done', result: 'charged' }, revision: 1 }]);
        } else {
          expect(failed.commands).toEqual([]);
          expect(failed.state).toMatchObject({ phase: 'running', lost: false, renewing: undefined });
          expect(stepRequest(setup, failed.state, { type: 'RENEW', now: t0 + after + 2 }).commands).toMatchObject([{ type: 'write', revision: 1 }]);
        }
      }),
      RUNS,
    );
  });
});
