/**
 * `scatter-saga demo --console`: the embedded demo serves the web console for its own
 * runtime (no NATS). Trips commit, compensate and park; an operator's retry through the
 * console's API ends the parked one compensated.
 */
import { describe, expect, it } from 'vitest';
import { runConsoleDemo } from '../../src/demo/trip.ts';

interface Summary {
  sagaId: string;
  status: string;
}

describe('the demo with the console', () => {
  it('shows trips commit, compensate and park, with statecharts; retry from the console ends the parked trip', async () => {
    const said: string[] = [];
    let stop!: () => void;
    const stopped = new Promise<void>((r) => (stop = r));
    const running = runConsoleDemo({ port: 0, say: (l) => said.push(l), stopped });
    try {
      await expect.poll(() => said.join('\n'), { timeout: 10_000 }).toMatch(/console is at http:\/\/127\.0\.0\.1:\d+\//);
      const url = /(http:\/\/\S+\/)/.exec(said.join('\n'))?.[1] as string;
      const get = async (path: string) => (await fetch(new URL(path, url))).json() as Promise<any>;
      expect((await fetch(url)).status).toBe(200);

      // The sixth trip (Reykjavik) parks: its car cannot be cancelled while the saga tries.
      const parkedId = 'trip-6-reykjavik';
      await expect.poll(async () => ((await get('api/sagas?status=parked')).sagas as Summary[]).map((s) => s.sagaId), { timeout: 30_000, interval: 250 }).toContain(parkedId);
      const committed = await get('api/sagas?q=trip-1-oslo');
      expect(committed.sagas).toEqual([expect.objectContaining({ sagaId: 'trip-1-oslo', status: 'committed' })]);
      const atlantis = await get('api/sagas/trip-3-atlantis');
      expect(atlantis.status).toMatchObject({ state: 'compensated', outcome: { status: 'compensated', failures: [expect.objectContaining({ stepId: 'hotel' })] } });
      expect(atlantis.events.length).toBeGreaterThan(0);

      const parked = await get(`api/sagas/${parkedId}`);
      expect(parked.status.state).toBe('compensationFailed');
      expect(parked.graph.states.map((s: { id: string }) => s.id)).toContain('compensationFailed');
      expect(parked.deadLetter.remaining).toEqual([expect.objectContaining({ stepId: 'car', worker: 'cars', inDoubt: false })]);

      const retried = await fetch(new URL(`api/sagas/${parkedId}/retry`, url), { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
      expect(retried.status).toBe(200);
      expect(await retried.json()).toMatchObject({ sagaId: parkedId, outcome: { status: 'compensated' } });
      expect((await get(`api/sagas/${parkedId}`)).status.state).toBe('compensated');
    } finally {
      stop();
      await running;
    }
  }, 60_000);
});
