/**
 * `scatter-saga demo --console`: the embedded demo serves the web console for its own
 * runtime (no NATS). Trips commit, compensate and park; an operator's retry from the
 * console ends the parked one compensated: through the console's API, and in Chromium.
 */
import { existsSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { serveRuntimeConsole } from '../../src/console/server.ts';
import { runConsoleDemo } from '../../src/demo/trip.ts';
import { createRuntime, defineSaga, defineWorker } from '../../src/index.ts';

const CHROMIUM = '/usr/bin/chromium';
const haveChromium = existsSync(CHROMIUM);
if (!haveChromium && process.env.CI) throw new Error(`${CHROMIUM} is missing: the console's browser test needs Debian's chromium (apt-get install -y chromium); .ci/run installs it`);

interface Summary {
  sagaId: string;
  status: string;
}

/** The sixth trip (Reykjavik) parks: its car cannot be cancelled while the saga tries. */
const PARKED = 'trip-6-reykjavik';

/** Runs the demo on a free port for `f`, then stops it. */
async function withDemo(f: (url: string, get: (path: string) => Promise<any>) => Promise<void>): Promise<void> {
  const said: string[] = [];
  let stop!: () => void;
  const stopped = new Promise<void>((r) => (stop = r));
  const running = runConsoleDemo({ port: 0, say: (l) => said.push(l), stopped });
  try {
    await expect.poll(() => said.join('\n'), { timeout: 10_000 }).toMatch(/console is at http:\/\/127\.0\.0\.1:\d+\//);
    const url = /(http:\/\/\S+\/)/.exec(said.join('\n'))?.[1] as string;
    const get = async (path: string) => (await fetch(new URL(path, url))).json() as Promise<any>;
    await f(url, get);
  } finally {
    stop();
    await running;
  }
}

describe('the demo with the console', () => {
  it('shows trips commit, compensate and park, with statecharts; retry through the API ends the parked trip', async () => {
    await withDemo(async (url, get) => {
      expect((await fetch(url)).status).toBe(200);
      await expect.poll(async () => ((await get('api/sagas?status=parked')).sagas as Summary[]).map((s) => s.sagaId), { timeout: 30_000, interval: 250 }).toContain(PARKED);
      const committed = await get('api/sagas?q=trip-1-oslo');
      expect(committed.sagas).toEqual([expect.objectContaining({ sagaId: 'trip-1-oslo', status: 'committed' })]);
      const atlantis = await get('api/sagas/trip-3-atlantis');
      expect(atlantis.status).toMatchObject({ state: 'compensated', outcome: { status: 'compensated', failures: [expect.objectContaining({ stepId: 'hotel' })] } });
      expect(atlantis.events.length).toBeGreaterThan(0);

      const parked = await get(`api/sagas/${PARKED}`);
      expect(parked.status.state).toBe('compensationFailed');
      expect(parked.graph.states.map((s: { id: string }) => s.id)).toContain('compensationFailed');
      expect(parked.deadLetter.remaining).toEqual([expect.objectContaining({ stepId: 'car', worker: 'cars', inDoubt: false })]);

      // Abort is for running sagas only.
      const refused = await fetch(new URL(`api/sagas/${PARKED}/abort`, url), { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
      expect(refused.status).toBe(409);
      expect(await refused.json()).toMatchObject({ error: { code: 'SAGA_NOT_RUNNING' } });
      const retried = await fetch(new URL(`api/sagas/${PARKED}/retry`, url), { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
      expect(retried.status).toBe(200);
      expect(await retried.json()).toMatchObject({ sagaId: PARKED, outcome: { status: 'compensated' } });
      expect((await get(`api/sagas/${PARKED}`)).status.state).toBe('compensated');
    });
  }, 60_000);

  it('abort from the console: a running saga is undone, its outcome says who aborted it and why', async () => {
    let land!: () => void;
    const landed = new Promise<void>((r) => (land = r));
    const held = new Set<string>();
    const slow = defineWorker({
      name: 'slow',
      do: async (_i: unknown, ctx) => {
        await landed;
        held.add(ctx.idempotencyKey);
        return {};
      },
      compensate: async (_i: unknown, _r: unknown, ctx) => void held.delete(ctx.idempotencyKey),
    });
    const saga = defineSaga({ name: 'long', version: 1, steps: { s: { worker: slow, timeoutMs: 10_000 } } });
    const runtime = createRuntime().host(slow);
    const web = await serveRuntimeConsole(runtime, [saga], { port: 0 });
    try {
      const run = runtime.run(saga, {}, { sagaId: 'long-1' });
      await expect.poll(async () => (await runtime.status('long-1'))?.state).toBe('gathering');
      const aborting = fetch(new URL('api/sagas/long-1/abort', web.url), { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ note: 'ordered by mistake' }) });
      await new Promise((r) => setTimeout(r, 50));
      land();
      const r = await aborting;
      expect(r.status).toBe(200);
      expect(await r.json()).toMatchObject({ sagaId: 'long-1', outcome: { status: 'compensated', abortedByOperator: { note: 'ordered by mistake' } } });
      expect(await run).toMatchObject({ status: 'compensated' });
      expect(held.size).toBe(0);
    } finally {
      await web.close();
      await runtime.close();
    }
  });

  it.skipIf(!haveChromium)(`in Chromium: a person watches trips commit, compensate and park, and retries the parked one${haveChromium ? '' : ` (skipped: ${CHROMIUM} is missing)`}`, async () => {
    const { chromium } = await import('playwright-core');
    await withDemo(async (url) => {
      const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
      try {
        const page = await browser.newPage({ viewport: { width: 1360, height: 900 } });
        const errors: string[] = [];
        page.on('pageerror', (e) => errors.push(e.message));
        await page.goto(url);
        await page.locator('#live.on').waitFor();
        const rowStatus = (id: string) => page.locator(`tr.saga-row[data-saga-id="${id}"] [data-status]`).textContent();
        await page.locator('tr.saga-row[data-saga-id="trip-1-oslo"]').waitFor({ timeout: 15_000 });
        await expect.poll(() => rowStatus('trip-1-oslo'), { timeout: 15_000 }).toBe('committed');
        await page.locator('tr.saga-row[data-saga-id="trip-3-atlantis"]').waitFor({ timeout: 15_000 });
        await expect.poll(() => rowStatus('trip-3-atlantis'), { timeout: 15_000 }).toBe('compensated');
        await page.click('#tabs button[data-tab="parked"]');
        await page.locator(`tr.saga-row[data-saga-id="${PARKED}"]`).waitFor({ timeout: 30_000 });
        await page.click(`tr.saga-row[data-saga-id="${PARKED}"]`);
        await page.locator('#saga-state [data-status="compensationFailed"]').waitFor();
        expect(await page.locator('#remaining tr[data-step="car"] td').first().textContent()).toBe('car');
        expect(await page.locator('#abort').isDisabled()).toBe(true);
        await page.click('#retry');
        await page.locator('#confirm[open]').waitFor();
        await page.click('#confirm-ok');
        await page.locator('#saga-message', { hasText: 'retry: the saga is compensated' }).waitFor({ timeout: 15_000 });
        await page.locator('#saga-state [data-status="compensated"]').waitFor();
        expect(errors).toEqual([]);
      } finally {
        await browser.close();
      }
    });
  }, 90_000);
});
