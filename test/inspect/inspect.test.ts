import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import pino from 'pino';
import { afterEach, describe, expect, test } from 'vitest';
import { WebSocketServer } from 'ws';
import { createRuntime, defineSaga, defineWorker, InvalidOptionError } from '../../src/index.ts';
import { webSocketInspector } from '../../src/inspect.ts';
import type { SagaInspector, WebSocketInspectorOptions } from '../../src/inspect.ts';

const FIXTURE = fileURLToPath(new URL('../fixtures/inspect-unreachable.ts', import.meta.url));
const silent = pino({ level: 'silent' });

/** A port nobody listens on: bound, then released. */
async function closedPort(): Promise<number> {
  const s = createServer();
  s.listen(0, '127.0.0.1');
  await once(s, 'listening');
  const { port } = s.address() as AddressInfo;
  s.close();
  await once(s, 'close');
  return port;
}

const flights = defineWorker({ name: 'flights', do: (to: string) => ({ seat: `${to}-1A` }), compensate: () => undefined });
const trip = defineSaga({ name: 'trip', version: 3, steps: { flight: { worker: flights, input: (t: { to: string }) => t.to } } });

const cleanup: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c();
});

describe('webSocketInspector', () => {
  test("a local WebSocket receiver gets the saga's actor, its events and its snapshots, in the format of @statelyai/inspect", async () => {
    const wss = new WebSocketServer({ port: 0, host: '127.0.0.1' });
    await once(wss, 'listening');
    cleanup.push(() => new Promise((r) => wss.close(r)));
    const received: Record<string, unknown>[] = [];
    wss.on('connection', (socket) => socket.on('message', (data) => received.push(JSON.parse(String(data)) as Record<string, unknown>)));
    const inspector = webSocketInspector({ url: `ws://127.0.0.1:${(wss.address() as AddressInfo).port}`, logger: silent });
    cleanup.push(() => inspector.close());
    const runtime = createRuntime({ inspect: inspector.inspect }).host(flights);
    cleanup.push(() => runtime.close());

    const outcome = await runtime.run(trip, { to: 'OSL' }, { sagaId: 'trip-ada' });
    expect(outcome.status).toBe('committed');
    // Events reach the receiver after the saga ends (the inspector sends on a later tick).
    const deadline = Date.now() + 5_000;
    const saga = () => received.filter((e) => e.sessionId !== undefined && received.some((a) => a.type === '@xstate.actor' && a.sessionId === e.sessionId && a.name === 'trip-ada'));
    while (Date.now() < deadline && !saga().some((e) => e.type === '@xstate.snapshot' && (e.snapshot as { value?: unknown }).value === 'committed')) await new Promise((r) => setTimeout(r, 20));

    const actor = received.find((e) => e.type === '@xstate.actor' && e.name === 'trip-ada');
    expect(actor, 'the saga actor was announced').toBeDefined();
    expect(JSON.parse(actor?.definition as string)).toMatchObject({ id: 'saga:trip@3' });
    const mine = saga();
    const events = mine.filter((e) => e.type === '@xstate.event').map((e) => (e.event as { type: string }).type);
    expect(events).toContain('STEP.COMMITTED');
    const snapshots = mine.filter((e) => e.type === '@xstate.snapshot').map((e) => (e.snapshot as { value: unknown }).value);
    expect(snapshots).toContain('committed');
    expect(inspector.state).toBe('open');
    expect(inspector.sent).toBe(received.length);
    expect(inspector.dropped).toBe(0);
  });

  test('an unreachable receiver: one warn line, the saga runs, events are dropped, and the process ends on its own', async () => {
    const port = await closedPort();
    const child = spawn(process.execPath, ['--import', 'tsx', FIXTURE, String(port)], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += String(d)));
    child.stderr.on('data', (d) => (err += String(d)));
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    const [code, signal] = (await once(child, 'exit')) as [number | null, string | null];
    clearTimeout(timer);
    expect(signal, `the process was killed: it did not end on its own\n${out}\n${err}`).toBeNull();
    expect(code, err).toBe(0);
    const lines = out.trim().split('\n');
    expect(lines).toContain('outcome committed');
    expect(lines).toContain('inspector failed sent 0');
    const logged = lines.filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as { level: number; msg: string });
    expect(logged).toHaveLength(1);
    expect(logged[0]?.level).toBe(40);
    expect(logged[0]?.msg).toMatch(new RegExp(`^inspector at ws://127\\.0\\.0\\.1:${port} unreachable \\(.*\\): inspection is off for this process$`));
    expect(err).toBe('');
  }, 60_000);

  test('a lost connection is one line too, and close() resolves', async () => {
    const wss = new WebSocketServer({ port: 0, host: '127.0.0.1' });
    await once(wss, 'listening');
    const lines: string[] = [];
    const logger = pino({ level: 'warn' }, { write: (l: string) => lines.push(l) });
    const inspector: SagaInspector = webSocketInspector({ url: `ws://127.0.0.1:${(wss.address() as AddressInfo).port}`, logger });
    while (inspector.state === 'connecting') await new Promise((r) => setTimeout(r, 10));
    expect(inspector.state).toBe('open');
    for (const c of wss.clients) c.terminate();
    await new Promise((r) => wss.close(r));
    while (inspector.state === 'open') await new Promise((r) => setTimeout(r, 10));
    expect(inspector.state).toBe('failed');
    expect(lines).toHaveLength(1);
    expect(JSON.parse(lines[0] as string).msg).toMatch(/^inspector connection to ws:\/\/127\.0\.0\.1:\d+ lost \(closed, code \d+\): inspection is off for this process$/);
    await inspector.close();
    expect(inspector.state).toBe('failed');
  });

  test('bad options are refused with a typed error naming the option', () => {
    const bad = (o: unknown) => () => webSocketInspector(o as WebSocketInspectorOptions);
    expect(bad(undefined)).toThrow(InvalidOptionError);
    expect(bad({})).toThrow(/option 'url': must be a ws:\/\/ or wss:\/\/ URL, got undefined/);
    expect(bad({ url: 'http://localhost:8080' })).toThrow(/option 'url'/);
    expect(bad({ url: 'not a url' })).toThrow(/option 'url'/);
    expect(bad({ url: 'ws://localhost:1', connectTimeoutMs: 0 })).toThrow(/option 'connectTimeoutMs'/);
    expect(bad({ url: 'ws://localhost:1', maxDeferredEvents: 1.5 })).toThrow(/option 'maxDeferredEvents'/);
    expect(bad({ url: 'ws://localhost:1', retry: true })).toThrow(/option 'retry': is not an option of webSocketInspector/);
  });
});
