/**
 * A reduced real chaos run (at most 60 s in all): a private nats-server with JetStream on
 * file storage, 4 worker host processes, 2 coordinator processes, a fault window of
 * about 25 s with SIGKILLs of hosts and coordinators, one nats-server restart and
 * injected failures, then the final recovery and the checker. Every saga must end
 * committed, compensated or parked listing every effect that remains.
 *
 * Needs nats-server (on PATH or in /usr/sbin): without it the test fails and says how to
 * install it. The test's timeout is the 60 s bound. CHAOS_SEED replays a schedule.
 */
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { formatReport } from '../../chaos/check.ts';
import type { KillEvent } from '../../chaos/check.ts';
import { DEFAULT_FAULTS, readJsonl } from '../../chaos/common.ts';
import { runChaos } from '../../chaos/orchestrator.ts';

const WINDOW_S = 25;
const KILLS = 6;

describe('chaos: the deployed topology under SIGKILLs and a nats-server restart', () => {
  it(
    'every saga ends committed, compensated, or parked listing every effect that remains',
    async () => {
      const seed = Number(process.env.CHAOS_SEED ?? 7_001);
      const result = await runChaos({
        durationS: WINDOW_S,
        kills: KILLS,
        natsRestarts: 1,
        injectFaults: true,
        seed,
        concurrency: 12,
        hosts: 4,
        coordinators: 2,
        finalTimeoutS: 12,
        faults: { ...DEFAULT_FAULTS, undoFailRate: 0.5 },
        restartPauseMs: [200, 800],
        quiet: true,
      });
      const { report } = result;
      const summary = formatReport(report, { 'run directory': result.dir, seed: String(seed), errors: result.errors, 'final phase': result.finalPhase });
      const kills = readJsonl<KillEvent & { type: string }>(join(result.dir, 'events.jsonl')).filter((e) => e.type === 'kill' && e.phase === 'window');

      // The run really was the deployed topology under faults.
      expect.soft(result.errors, summary).toEqual([]);
      expect.soft(new URL(result.natsUrl).port).not.toBe('4222');
      expect.soft(kills, summary).toHaveLength(KILLS);
      expect.soft(kills.filter((k) => k.what.startsWith('host-')).length, summary).toBeGreaterThan(0);
      expect.soft(kills.filter((k) => k.what.startsWith('coordinator-')).length, summary).toBeGreaterThan(0);
      expect.soft(report.totals.natsRestarts, summary).toBe(1);
      // Sagas of every outcome kind occurred.
      expect.soft(report.totals.committed, summary).toBeGreaterThan(0);
      expect.soft(report.totals.compensated, summary).toBeGreaterThan(0);
      expect.soft(report.totals.parked, summary).toBeGreaterThan(0);
      expect.soft(report.totals.sagasStarted, summary).toBeGreaterThan(200);
      // The promise.
      expect(report.violationCount, summary).toBe(0);
      rmSync(result.dir, { recursive: true, force: true }); // kept when something failed
    },
    60_000,
  );
});
