/**
 * The simulation property under narrower fault mixes (swarm testing). The broad mix of
 * simulation.property.test.ts turns every fault on at a low rate, so the few faults that a
 * dangerous interleaving needs rarely line up in one run. Each mix here makes one kind of
 * interleaving common, with the same oracle (the ledger of the fake systems of record):
 *
 * - coordinators crash and are recovered while the faults still go on (short coordinator
 *   leases), in staged sagas whose checkpoints hold steps in flight: their requests are
 *   sent again to hosts that may be down, refusing or unreachable;
 * - claims lapse under running `do`s: a host's write of an outcome fails after the effect
 *   applied, copies of the same request reach hosts that take the key over and run it
 *   again, and re-runs fail;
 * - hosts are cut off from the store while their `do`s run: their claims lapse, another
 *   host takes the key over and undoes it, the `do` applies late, and the store fails
 *   under the late `do`'s writes (the host must still undo the late effect itself).
 */
import { expect, test } from 'vitest';
import { checkSimulation, FAULT_MIXES } from './simulation-check.ts';

const DEEP = process.env.SCATTER_SAGA_DEEP === '1';
/** Mutation testing (vitest.mutate.config.ts) runs the first 1 000 runs of each seeded sequence: a mutant they kill, the full suite kills. */
const RUNS = DEEP ? 20_000 : process.env.SCATTER_SAGA_MUTATE === '1' ? 1_000 : 3_000;
const SEED = process.env.SCATTER_SAGA_SEED !== undefined ? Number(process.env.SCATTER_SAGA_SEED) : DEEP || process.env.SCATTER_SAGA_RANDOM === '1' ? undefined : 20_261_202;

for (const [name, mix] of Object.entries(FAULT_MIXES)) {
  test(`the runtime keeps the guarantee when ${name} (${RUNS} simulated runs)`, async () => {
    const t0 = performance.now();
    const r = await checkSimulation(mix, { numRuns: RUNS, seed: SEED, timeLimitMs: DEEP ? 3_300_000 : 240_000 });
    console.log(`[property: ${name}] ${r.runs} simulated runs in ${Math.round(performance.now() - t0)} ms; outcomes ${JSON.stringify(r.outcomes)}`);
    if (r.failed) console.log(`[property: ${name}] FAILED: seed ${r.seed}, path ${r.path}\n${r.explanation}\nreplay: SCATTER_SAGA_SEED=${r.seed} SCATTER_SAGA_PATH=${r.path} npx vitest run test/property/fault-mixes.property.test.ts`);
    expect(r.failed, r.failed ? `seed ${r.seed} path ${r.path}\n${r.explanation}` : '').toBe(false);
    if (process.env.SCATTER_SAGA_PATH === undefined) {
      expect(r.runs).toBe(RUNS);
      expect(r.outcomes.committed).toBeGreaterThan(0);
      expect(r.outcomes.compensated).toBeGreaterThan(0);
    }
  }, DEEP ? 3_600_000 : 300_000);
}
