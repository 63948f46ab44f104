/**
 * The operator console in a real headless Chromium (Debian's /usr/bin/chromium, driven by
 * playwright-core): a private nats-server, workers, a coordinator service and the console
 * on a free port; sagas that commit, run and park (an undo that throws). The page lists
 * them, shows the parked one with its remaining effect and its statechart with each
 * step's status, and a confirmed retry (the undo fixed by then) ends it compensated. Also
 * the JSON API's refusals, the review a resolve can ask for, the graph endpoint, and the
 * CLI's flags. With SCATTER_SAGA_SCREENSHOTS=1 it writes docs/console-*.png.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdirSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect } from '@nats-io/transport-node';
import type { NatsConnection } from '@nats-io/transport-node';
import { createRuntime, defineSaga, defineWorker, TerminalError } from '../../src/index.ts';
import type { Runtime } from '../../src/index.ts';
import { jetstreamSagaStore, natsTransport, sagaClient, serveCoordinator, serveWorkers } from '../../src/nats.ts';
import type { CoordinatorService, SagaClient, WorkerServer } from '../../src/nats.ts';
import { reviewOf, serveConsole } from '../../src/console/server.ts';
import type { ConsoleServer } from '../../src/console/server.ts';
import { runCli } from '../../src/cli/main.ts';
import { ServiceError } from '../../src/errors.ts';
import { startNatsServer } from '../helpers/nats-server.ts';
import type { NatsServer } from '../helpers/nats-server.ts';

const CHROMIUM = '/usr/bin/chromium';
const haveChromium = existsSync(CHROMIUM);
if (!haveChromium && process.env.CI) throw new Error(`${CHROMIUM} is missing: the console's browser test needs Debian's chromium (apt-get install -y chromium); .ci/run installs it`);
if (!haveChromium) console.warn(`skipping the console's browser test: ${CHROMIUM} is missing (apt-get install -y chromium)`);
const SCREENSHOTS = process.env.SCATTER_SAGA_SCREENSHOTS === '1';
/** What a page or a process may take to show a change, on a busy machine. */
const POLL = { timeout: 10_000 };
const DOCS = new URL('../../docs/', import.meta.url);

/** Switches the workers share with the test. */
const world = { carUndoBroken: true, gate: undefined as undefined | { open: () => void; opened: Promise<void> } };
const opened = () => {
  let open = () => {};
  const p = new Promise<void>((r) => (open = r));
  return { open, opened: p };
};

const flight = defineWorker({ name: 'flight', do: (i: { to: string }) => ({ seat: `${i.to}-12A` }), compensate: () => undefined });
const car = defineWorker({
  name: 'car',
  do: () => ({ car: 'compact' }),
  compensate: () => {
    if (world.carUndoBroken) throw new Error('the car rental is read-only');
  },
});
const hotel = defineWorker({
  name: 'hotel',
  do: async (i: { nights: number; full?: boolean; slow?: boolean }) => {
    if (i.slow) await world.gate?.opened;
    if (i.full) throw new TerminalError('the hotel is full');
    return { room: 101 };
  },
  compensate: () => undefined,
});
type Trip = { to: string; nights: number; full?: boolean; slow?: boolean };
const trip = defineSaga({
  name: 'trip',
  version: 1,
  steps: {
    flight: { worker: 'flight', input: (t: Trip) => ({ to: t.to }) },
    car: { worker: 'car' },
    hotel: { worker: 'hotel', after: ['flight'], input: (t: Trip) => ({ nights: t.nights, full: t.full, slow: t.slow }) },
  },
  compensation: { retries: 0 },
});

/** A saga the runtime knows but the service does not serve: no graph for it. */
const errand = defineSaga({ name: 'errand', version: 1, steps: { flight: { worker: 'flight', input: () => ({ to: 'BER' }) } } });

let server: NatsServer;
let workerNc: NatsConnection;
let coordNc: NatsConnection;
let consoleNc: NatsConnection;
let workers: WorkerServer;
let runtime: Runtime;
let service: CoordinatorService;
let web: ConsoleServer;
let client: SagaClient;

beforeAll(async () => {
  server = await startNatsServer();
  [workerNc, coordNc, consoleNc] = await Promise.all([connect({ servers: server.url }), connect({ servers: server.url }), connect({ servers: server.url })]);
  workers = await serveWorkers(workerNc, [flight, car, hotel], { signals: [] });
  runtime = createRuntime({ transport: natsTransport(coordNc), store: jetstreamSagaStore(coordNc, { bucketPrefix: 'console' }), sagas: [trip, errand] });
  service = await serveCoordinator(coordNc, runtime, { sagas: [trip] });
  web = await serveConsole(consoleNc, { port: 0 });
  client = sagaClient(consoleNc);
  world.gate = opened();
});

afterAll(async () => {
  world.gate?.open();
  await web?.close();
  await service?.stop();
  await runtime?.close();
  await workers?.drain();
  await Promise.all([consoleNc?.close(), coordNc?.close(), workerNc?.close()]);
  await server?.stop();
});

const get = async (path: string, init?: RequestInit) => {
  const res = await fetch(new URL(path, web.url), init);
  return { status: res.status, body: (await res.json()) as any };
};

describe('the coordinator service draws a saga: graph', () => {
  it('answers the states, transitions and steps of a definition, by name or by saga id', async () => {
    const g = await client.graph({ saga: 'trip' });
    expect(g.saga).toBe('trip');
    expect(g.states.map((s) => s.id)).toEqual(expect.arrayContaining(['dispatching', 'gathering', 'compensating', 'compensationFailed', 'committed', 'compensated']));
    expect(g.states.find((s) => s.initial)?.id).toBe('dispatching');
    expect(g.transitions).toContainEqual(expect.objectContaining({ from: 'compensationFailed', to: 'compensating', label: expect.stringContaining('OPERATOR.RETRY') }));
    expect(g.steps.map((s) => [s.id, s.worker, s.stage, s.after])).toEqual([
      ['flight', 'flight', 1, []],
      ['car', 'car', 1, []],
      ['hotel', 'hotel', 2, ['flight']],
    ]);
    expect(g.mermaid).toMatch(/^stateDiagram-v2/);
    await expect(client.graph({ saga: 'nope' })).rejects.toMatchObject({ code: 'UNKNOWN_SAGA' });
    await expect(client.graph({ saga: 'trip', version: 9 })).rejects.toMatchObject({ code: 'UNKNOWN_SAGA' });
    await expect(client.graph({ sagaId: 'no-such-saga' })).rejects.toMatchObject({ code: 'SAGA_NOT_FOUND' });
    const { sagaId } = await client.start('trip', { to: 'LIS', nights: 1 }, { sagaId: 'trip-graph', wait: true });
    expect((await client.graph({ sagaId })).saga).toBe('trip');
  });
});

describe('the console API', () => {
  it('refuses what the page never sends, with a code and a message', async () => {
    expect(await get('/api/sagas/no-such-saga')).toMatchObject({ status: 404, body: { error: { code: 'SAGA_NOT_FOUND' } } });
    expect(await get('/api/sagas?status=finished')).toMatchObject({ status: 400, body: { error: { code: 'BAD_REQUEST', message: expect.stringContaining("'status'") } } });
    expect(await get('/api/sagas/x/retry', { method: 'POST', body: '{}' })).toMatchObject({ status: 415 });
    expect(await get('/api/sagas/x/retry', { method: 'POST', headers: { 'content-type': 'application/json', origin: 'http://evil.example' }, body: '{}' })).toMatchObject({ status: 403, body: { error: { code: 'FORBIDDEN' } } });
    expect(await get('/api/sagas/x/resolve', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"note": 3}' })).toMatchObject({ status: 400, body: { error: { message: "'note' must be a string" } } });
    expect(await get('/api/nothing')).toMatchObject({ status: 404, body: { error: { code: 'NOT_FOUND' } } });
    const page = await fetch(web.url);
    expect(page.headers.get('content-type')).toMatch(/text\/html/);
    expect(await page.text()).toContain('scatter-saga console');
  });

  it('shows a saga without its statechart when no coordinator gives its graph', async () => {
    await runtime.run(errand, undefined as never, { sagaId: 'errand-1' });
    const { status, body } = await get('/api/sagas/errand-1');
    expect(status).toBe(200);
    expect(body).toMatchObject({ status: { sagaId: 'errand-1', state: 'committed' }, graph: null, graphError: expect.stringContaining('UNKNOWN_SAGA') });
  });

  it('names the bad option', async () => {
    await expect(serveConsole(consoleNc, { port: 70_000 })).rejects.toThrow(/port/);
    await expect(serveConsole(consoleNc, { port: web.port })).rejects.toThrow(/cannot listen .*EADDRINUSE/);
    await expect(serveConsole(consoleNc, { colour: 'red' } as never)).rejects.toThrow(/colour/);
  });

  it('turns a resolve that asks for a review into its fences and token', () => {
    const fences = [{ stepId: 'car', worker: 'car', idempotencyKey: 'k', inDoubt: false, verdict: 'review' as const, fence: { by: 'r1', was: 'applied' } }];
    const e = Object.assign(new ServiceError('resolve', 'RESOLVE_NEEDS_REVIEW', 'look again'), { review: 'tok-1', fences });
    expect(reviewOf(e)).toEqual({ code: 'RESOLVE_NEEDS_REVIEW', message: 'look again', review: 'tok-1', fences });
    const d = Object.assign(new ServiceError('resolve', 'FENCE_FAILED', 'no host'), { detail: { fences } });
    expect(reviewOf(d)).toMatchObject({ code: 'FENCE_FAILED', review: undefined, fences });
    expect(reviewOf(new ServiceError('resolve', 'SAGA_NOT_PARKED', 'x'))).toBeUndefined();
  });

  it('the CLI names a bad --port', async () => {
    let err = '';
    const code = await runCli(['console', '--port', 'abc'], { out: () => {}, err: (l) => (err += l), stopped: new Promise(() => {}) });
    expect(code).toBe(2);
    expect(err).toContain('--port must be a whole number from 0 to 65535');
  });

  it('the CLI serves the console until it is stopped', async () => {
    let out = '';
    let stop: (s: NodeJS.Signals) => void = () => {};
    const stopped = new Promise<NodeJS.Signals>((r) => (stop = r));
    const running = runCli(['console', '--port', '0', '--server', server.url], { out: (l) => (out += l), err: () => {}, stopped });
    await expect.poll(() => out, POLL).toMatch(/console on http:\/\/127\.0\.0\.1:\d+\//);
    const url = /(http:\/\/\S+\/)/.exec(out)?.[1] as string;
    expect((await fetch(new URL('/api/sagas', url))).status).toBe(200);
    stop('SIGTERM');
    expect(await running).toBe(0);
    await expect(fetch(url)).rejects.toThrow();
  });
});

describe('scatter-saga console, the executable', () => {
  it('serves until SIGTERM, then ends on its own with an event stream still open', async () => {
    const bin = new URL('../../src/cli/bin.ts', import.meta.url).pathname;
    const child = spawn(process.execPath, ['--import', 'tsx', bin, 'console', '--port', '0', '--server', server.url], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += String(d)));
    child.stderr.on('data', (d) => (err += String(d)));
    const killer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    const exited = once(child, 'exit') as Promise<[number | null, string | null]>;
    await expect.poll(() => out, { timeout: 20_000 }).toMatch(/console on http:\/\/127\.0\.0\.1:\d+\//);
    const url = /(http:\/\/\S+\/)/.exec(out)?.[1] as string;
    const stream = await fetch(new URL('/api/events', url));
    expect(stream.headers.get('content-type')).toMatch(/text\/event-stream/);
    const reader = stream.body?.getReader();
    await reader?.read();
    child.kill('SIGTERM');
    const [code, signal] = await exited;
    clearTimeout(killer);
    expect(signal, `killed: it did not end on its own\n${out}\n${err}`).toBeNull();
    expect(code).toBe(0);
    expect(err).toContain('SIGTERM: stopping');
    await reader?.cancel().catch(() => undefined);
  });
});

describe.skipIf(!haveChromium)(haveChromium ? 'the console in Chromium' : `the console in Chromium (skipped: ${CHROMIUM} is missing)`, () => {
  it('lists the sagas, shows the parked one, and a confirmed retry ends it compensated', async () => {
    const { chromium } = await import('playwright-core');
    await client.start('trip', { to: 'OSL', nights: 2 }, { sagaId: 'trip-ok', wait: true });
    await client.start('trip', { to: 'ROM', nights: 3, slow: true }, { sagaId: 'trip-running' });
    const parked = await client.start('trip', { to: 'NYC', nights: 4, full: true }, { sagaId: 'trip-parked', wait: true });
    expect(parked.outcome?.status).toBe('compensation-failed');
    expect((await client.start('trip', { to: 'SFO', nights: 1, full: true }, { sagaId: 'trip-review', wait: true })).outcome?.status).toBe('compensation-failed');

    const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
    try {
      const page = await browser.newPage({ viewport: { width: 1360, height: 900 } });
      const errors: string[] = [];
      page.on('pageerror', (e) => errors.push(e.message));
      await page.goto(web.url);
      await page.locator('#live.on').waitFor();
      await page.locator('tr.saga-row[data-saga-id="trip-parked"]').waitFor();
      await expect.poll(() => page.locator('#saga-list tr.saga-row').evaluateAll((rows) => rows.map((r) => r.getAttribute('data-saga-id'))), POLL).toEqual(expect.arrayContaining(['trip-running', 'trip-parked']));
      expect(await page.locator('tr.saga-row[data-saga-id="trip-parked"] [data-status]').textContent()).toBe('parked');
      expect(await page.locator('tr.saga-row[data-saga-id="trip-running"] [data-status]').textContent()).toBe('running');

      // Parked only, then the saga.
      await page.click('#tabs button[data-tab="parked"]');
      await expect.poll(() => page.locator('#saga-list tr.saga-row').count(), POLL).toBe(2);
      await page.click('tr.saga-row[data-saga-id="trip-parked"]');
      await page.locator('#saga-state [data-status="compensationFailed"]').waitFor();
      await page.locator('#remaining tr[data-step="car"]').waitFor({ timeout: 5_000 });
      const car = page.locator('#remaining tr[data-step="car"] td');
      const letter = (await client.deadLetters()).find((d) => d.sagaId === 'trip-parked');
      const effect = letter?.remaining.find((r) => r.stepId === 'car');
      expect(effect).toBeDefined();
      expect(await car.allTextContents()).toEqual(['car', 'car', effect?.idempotencyKey, 'no', String(effect?.attempts), 'compensation-failed', `${effect?.lastError?.code}: the car rental is read-only`]);
      expect(await page.locator('#machine g.state.current').getAttribute('data-state')).toBe('compensationFailed');
      const statusOf = (step: string) => page.locator(`#steps-chart g.step[data-step="${step}"]`).getAttribute('data-status');
      expect(await statusOf('car')).toBe('compensationFailed');
      expect(await statusOf('flight')).toBe('compensated');
      expect(await statusOf('hotel')).toBe('failed');
      expect(await page.locator('#failures').textContent()).toContain('the hotel is full');
      expect(await page.locator('#timeline tr[data-step="car"]').textContent()).toMatch(/dispatched attempt 1 at \+\d/);
      if (SCREENSHOTS) {
        mkdirSync(DOCS, { recursive: true });
        await page.click('#tabs button[data-tab="all"]');
        await page.locator('tr.saga-row[data-saga-id="trip-running"]').waitFor();
        await page.screenshot({ path: new URL('console-saga.png', DOCS).pathname, fullPage: true });
        await page.click('#tabs button[data-tab="dead-letters"]');
        await page.locator('#list .dead-letter[data-saga-id="trip-parked"]').waitFor();
        await page.screenshot({ path: new URL('console-dead-letters.png', DOCS).pathname, fullPage: true });
      }

      // Retry: the dialog names the effect; cancel does nothing, confirm retries.
      world.carUndoBroken = false;
      await page.click('#retry');
      await page.locator('#confirm[open]').waitFor();
      expect(await page.locator('#confirm-body').textContent()).toContain('car');
      if (SCREENSHOTS) await page.screenshot({ path: new URL('console-retry.png', DOCS).pathname });
      await page.click('#confirm-cancel');
      expect(await page.locator('#saga-state [data-status]').textContent()).toBe('compensationFailed');
      await page.click('#retry');
      await page.click('#confirm-ok');
      await page.locator('#saga-message', { hasText: 'retry: the saga is compensated' }).waitFor();
      await page.locator('#saga-state [data-status="compensated"]').waitFor();
      await expect.poll(() => statusOf('car'), POLL).toBe('compensated');
      expect(await page.locator('#machine g.state.current').getAttribute('data-state')).toBe('compensated');
      expect(await page.locator('#retry').isDisabled()).toBe(true);
      // It left the parked list.
      await page.click('#tabs button[data-tab="parked"]');
      await expect.poll(() => page.locator('#saga-list tr.saga-row').evaluateAll((rows) => rows.map((r) => r.getAttribute('data-saga-id'))), POLL).toEqual(['trip-review']);

      // Resolve, asked for a review: the page shows the fences and confirms with the token.
      // The review is played by the route (nothing in this scenario can land after a look):
      // the first resolve is answered RESOLVE_NEEDS_REVIEW; the second must carry the token,
      // and goes to the service.
      const bodies: Record<string, unknown>[] = [];
      const key = (await client.deadLetters()).find((d) => d.sagaId === 'trip-review')?.remaining[0]?.idempotencyKey;
      await page.route('**/api/sagas/trip-review/resolve', async (route) => {
        const body = JSON.parse(route.request().postData() ?? '{}') as Record<string, unknown>;
        bodies.push(body);
        if (bodies.length === 1) {
          const fences = [{ stepId: 'car', worker: 'car', idempotencyKey: key, inDoubt: false, verdict: 'review', fence: { by: 'resolve-1', was: 'applied' } }];
          await route.fulfill({ status: 409, contentType: 'application/json', body: JSON.stringify({ sagaId: 'trip-review', review: { code: 'RESOLVE_NEEDS_REVIEW', message: "saga 'trip-review' was not resolved: look again", review: 'tok-42', fences } }) });
        } else {
          await route.continue({ postData: JSON.stringify({ note: body.note }) });
        }
      });
      await page.click('tr.saga-row[data-saga-id="trip-review"]');
      await page.locator('#saga-id', { hasText: 'trip-review' }).waitFor();
      await page.locator('#saga-state [data-status="compensationFailed"]').waitFor();
      await page.click('#resolve');
      await page.locator('#confirm[open]').waitFor();
      await page.fill('#confirm-note', 'car returned at the desk');
      await page.click('#confirm-ok');
      await page.locator('#review-token', { hasText: 'tok-42' }).waitFor();
      expect(await page.locator('#fences tr[data-step="car"] td').allTextContents()).toEqual(['car', 'car', key, 'review', 'applied', '']);
      expect(await page.locator('#saga-message').textContent()).toContain('RESOLVE_NEEDS_REVIEW');
      if (SCREENSHOTS) await page.screenshot({ path: new URL('console-review.png', DOCS).pathname });
      await page.fill('#confirm-note', 'looked again: car returned');
      await page.click('#confirm-ok');
      await page.locator('#saga-message', { hasText: 'resolved: the saga is compensated' }).waitFor();
      expect(bodies).toEqual([{ note: 'car returned at the desk' }, { note: 'looked again: car returned', reviewed: 'tok-42' }]);
      expect((await client.status('trip-review'))?.outcome).toMatchObject({ status: 'compensated', resolvedByOperator: ['car'] });

      // Search by id: a finished saga too.
      await page.fill('#q', 'trip-ok');
      await page.click('#search button');
      await page.locator('#saga-state [data-status="committed"]').waitFor();
      expect(await page.locator('tr.saga-row[data-saga-id="trip-ok"] [data-status]').textContent()).toBe('committed');

      // The running saga: its steps change live as the hotel answers.
      await page.fill('#q', '');
      await page.click('#tabs button[data-tab="running"]');
      await page.click('tr.saga-row[data-saga-id="trip-running"]');
      await page.locator('#saga-state [data-status="gathering"]').waitFor();
      expect(await statusOf('hotel')).toBe('dispatched');
      expect(await page.locator('#saga-message').count()).toBe(0); // the answer to the resolve stayed with its saga
      expect(await page.locator('#retry').isDisabled()).toBe(true);
      if (SCREENSHOTS) await page.screenshot({ path: new URL('console-list.png', DOCS).pathname, fullPage: true });
      world.gate?.open();
      await page.locator('#saga-state [data-status="committed"]').waitFor();
      await expect.poll(() => statusOf('hotel'), POLL).toBe('committed');
      expect(await page.locator('#timeline tr[data-step="hotel"]').textContent()).toMatch(/committed attempt 1/);
      expect(errors).toEqual([]);
    } finally {
      await browser.close();
    }
  });
});
