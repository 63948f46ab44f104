/**
 * The runtime's three pause schedules as properties, against their documented statements
 * rather than their code: each is written here as a recurrence (start, double, cap), the
 * code as a closed form. A retry that waits too little hammers a failing system; one that
 * waits too long stalls a saga an operator is watching.
 *
 * - a step's retries (`backoff` in src/types.ts and docs/guide.md): `initialMs` before the
 *   first retry, times `factor` for each next one, never above `maxMs`;
 * - a refusal at capacity (docs/protocol.md, OVERLOADED): 25 ms doubling, at most 2 s;
 * - a host undoing an effect it applied after losing its claim (docs/protocol.md, Claims):
 *   100 ms doubling, at most 30 s;
 * - a request waiting on a busy key (docs/protocol.md, Claims): 5 ms doubling to 250 ms,
 *   never past the claim's lease, and until the lease when this host runs the claim
 *   itself (its end wakes the request). Seen from outside: a host takes over another
 *   host's abandoned claim exactly when its lease passes.
 */
import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import { createWorkerHost, defineWorker, memoryDedupStore } from '../../src/index.ts';
import { createManualClock } from '../../src/testing/index.ts';
import { keyPollMs } from '../../src/actors/worker-host.ts';
import { selfUndoBackoff, startRequest, stepRequest } from '../../src/machines/host-protocol.ts';
import type { HostCommand, RequestSetup, RequestState } from '../../src/machines/host-protocol.ts';
import { backoffDelay, overloadDelay } from '../../src/machines/saga-logic.ts';

/** The n-th pause (1-based) of a schedule that starts at `first`, multiplies by `factor` and never passes `cap`. */
function nth(first: number, factor: number, cap: number, n: number): number {
  let d = Math.min(first, cap);
  let raw = first;
  for (let i = 1; i < n; i++) {
    raw *= factor;
    d = Math.min(raw, cap);
  }
  return d;
}

describe('pause schedules follow their documented statements', () => {
  test("a step's retry backoff: initialMs, times factor per retry, capped at maxMs", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 5_000 }),
        fc.double({ min: 1, max: 4, noNaN: true }),
        fc.integer({ min: 0, max: 60_000 }),
        fc.integer({ min: 1, max: 30 }),
        (initialMs, factor, maxMs, n) => {
          const b = { initialMs, factor, maxMs, jitter: false };
          const d = backoffDelay(b, n);
          expect(d).toBeCloseTo(nth(initialMs, factor, maxMs, n), 6);
          expect(d).toBeLessThanOrEqual(maxMs);
          expect(d).toBeGreaterThanOrEqual(backoffDelay(b, Math.max(1, n - 1)));
        },
      ),
      { seed: 20261203, numRuns: 300 },
    );
  });

  test('a refusal at capacity: 25 ms doubling per refusal, at most 2 s', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 200 }), (refusals) => {
        expect(overloadDelay(refusals)).toBe(nth(25, 2, 2_000, refusals));
      }),
      { seed: 20261203, numRuns: 200 },
    );
  });

  test("a host's own undo after a failure: 100 ms doubling, at most 30 s", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 200 }), (failures) => {
        expect(selfUndoBackoff(failures)).toBe(nth(100, 2, 30_000, failures + 1));
      }),
      { seed: 20261203, numRuns: 200 },
    );
  });

  test('a request waiting on a busy key: 5 ms doubling to 250 ms, never past the lease; its own claim until the lease', () => {
    fc.assert(
      fc.property(fc.integer({ min: -1_000, max: 120_000 }), fc.integer({ min: 0, max: 100 }), fc.boolean(), (untilMs, polls, runsHere) => {
        const lease = Math.max(1, untilMs);
        expect(keyPollMs(untilMs, polls, runsHere)).toBe(runsHere ? lease : Math.min(lease, nth(5, 2, 250, polls + 1)));
      }),
      { seed: 20261203, numRuns: 300 },
    );
  });

  test('a host whose store keeps failing under a do that applied reads the key again after 100 ms, doubling, at most 30 s', () => {
    // docs/protocol.md, Claims, step 5: it cannot tell whether the key is still its own, so it keeps reading.
    const setup: RequestSetup = {
      req: { v: 1, op: 'do', worker: 'pay', sagaId: 's', stepId: 'charge', key: 'k', attempt: 1, deadline: Number.MAX_SAFE_INTEGER, input: 1 },
      inputHash: '1',
      owner: 'host/1',
      leaseMs: 1_000,
    };
    const failed = { code: 'TRANSPORT_ERROR', message: 'the dedup store failed', retryable: true };
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: 100_000 }), { minLength: 1, maxLength: 14 }), (gaps) => {
        let now = 0;
        let t = startRequest(setup, now);
        const step = (ev: Parameters<typeof stepRequest>[2]) => {
          t = stepRequest(setup, t.state as RequestState, ev);
          return t.commands;
        };
        step({ type: 'WRITTEN', revision: 1, now });
        step({ type: 'RAN', outcome: { event: { type: 'DO.OK', result: 'charged' } }, now });
        const pauses: number[] = [];
        const waitOf = (cmds: readonly HostCommand[]) => cmds.find((c): c is Extract<HostCommand, { type: 'wait' }> => c.type === 'wait');
        let wait = waitOf(step({ type: 'STORE_FAILED', error: failed, now }));
        for (const gap of gaps) {
          expect(wait, `no pause after ${pauses.length + 1} failure(s)`).toBeDefined();
          pauses.push((wait?.until ?? now) - now);
          now = wait?.until ?? now;
          expect(step({ type: 'WAITED', now })).toEqual([{ type: 'read' }]);
          now += gap % 50; // the read takes a while, then fails too
          wait = waitOf(step({ type: 'STORE_FAILED', error: failed, now }));
        }
        expect(pauses).toEqual(pauses.map((_, i) => nth(100, 2, 30_000, i + 1)));
      }),
      { seed: 20261203, numRuns: 100 },
    );
  });

  test("a worker host takes over another host's abandoned claim when its lease passes, not before and not later", async () => {
    // The schedule above, seen from outside: a host waiting on a claim it does not run
    // reads the key again by the claim's leaseUntil at the latest, so the key is taken
    // over at that very moment (the holder is presumed dead only then).
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: 3_000 }), fc.integer({ min: 0, max: 1_000_000 }), async (leaseMs, start) => {
        const clock = createManualClock(start);
        let ranAt: number | undefined;
        const worker = defineWorker({
          name: 'pay',
          do: async () => {
            ranAt = clock.now();
            return 'charged';
          },
          compensate: async () => {},
        });
        const dedup = memoryDedupStore({ clock });
        const leaseUntil = start + leaseMs;
        // Another host claimed the key and died: its claim stays until its lease passes.
        await dedup.write('pay', 'k', { state: 'doing', attempt: 1, inputHash: '', owner: 'gone-host/1', leaseUntil, updatedAt: start }, 0);
        const host = createWorkerHost([worker], { dedup, clock });
        const reply = host.handle({ v: 1, op: 'do', worker: 'pay', sagaId: 's', stepId: 'charge', key: 'k', attempt: 1, deadline: start + 60_000, input: { amount: 1 } });
        await clock.advance(leaseMs + 1_000);
        expect(await reply).toEqual({ ok: true, result: 'charged' });
        expect(ranAt).toBe(leaseUntil);
      }),
      { seed: 20261203, numRuns: 40 },
    );
  });

  test('a running claim is renewed once a third of its lease has passed, not sooner: a claim made just before a renewal tick waits for the next', async () => {
    // docs/protocol.md, Claims, step 4: "renews leaseUntil every third of the lease". One
    // renewal timer serves every claim of a host; a claim made between two of its ticks is
    // renewed at the first tick at which a third of its lease has passed.
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 30, max: 3_000 }), fc.integer({ min: 1, max: 9 }), async (leaseMs, tenths) => {
        const clock = createManualClock(0);
        const every = Math.max(10, Math.floor(leaseMs / 3));
        const releases: (() => void)[] = [];
        const worker = defineWorker({
          name: 'slow',
          do: () => new Promise<string>((resolve) => releases.push(() => resolve('done'))),
          compensate: async () => {},
        });
        const store = memoryDedupStore({ clock });
        const writes: { key: string; at: number; leaseUntil: number | undefined }[] = [];
        const dedup = { ...store, write: (w: string, k: string, r: Parameters<typeof store.write>[2], rev: number) => (writes.push({ key: k, at: clock.now(), leaseUntil: r.leaseUntil }), store.write(w, k, r, rev)) };
        const host = createWorkerHost([worker], { dedup, clock, leaseMs });
        const request = (key: string) => ({ v: 1 as const, op: 'do' as const, worker: 'slow', sagaId: 's', stepId: key, key, attempt: 1, deadline: 1e9, input: 1 });
        const first = host.handle(request('k1'));
        await clock.advance(0);
        // The second claim is made a few tenths of a period after the first, before the first tick.
        const later = Math.max(1, Math.floor((every * tenths) / 10));
        await clock.advance(later);
        const second = host.handle(request('k2'));
        await clock.advance(every - later);
        const at = (key: string) => writes.filter((w) => w.key === key).map((w) => w.at);
        // First tick: the first claim is due (a third of its lease has passed), the second is not.
        expect(at('k1')).toEqual([0, every]);
        expect(at('k2')).toEqual([later]);
        await clock.advance(every);
        expect(at('k2')).toEqual([later, 2 * every]);
        for (const release of releases) release();
        await clock.advance(1);
        expect(await first).toMatchObject({ ok: true });
        expect(await second).toMatchObject({ ok: true });
      }),
      { seed: 20261208, numRuns: 40 },
    );
  });
});
