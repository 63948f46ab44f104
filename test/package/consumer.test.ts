/**
 * The package as a user gets it: `npm pack` (which builds dist/ through `prepare`), the
 * tarball installed into a fresh project, every entry loaded from plain Node ESM, and a
 * TypeScript consumer type-checked under the consumer's own settings (skipLibCheck off),
 * so that nothing of our sources or our compiler settings leaks into theirs.
 *
 * Slow-ish (packing, one npm install, a few tsc runs) but needs nothing beyond npm's
 * registry, whose packages are already in the npm cache after `npm ci`.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const tsc = join(repo, 'node_modules/typescript/bin/tsc');
const TIMEOUT = 180_000;

interface Ran {
  code: number | null;
  stdout: string;
  stderr: string;
  ms: number;
}

/** The environment of npm, minus what an enclosing `npm run`/`npm test` put there for its own package. */
function childEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    const key = k.toLowerCase();
    if (key.startsWith('npm_package_') || key.startsWith('npm_lifecycle_')) continue;
    if (['npm_config_local_prefix', 'npm_config_ignore_scripts', 'npm_config_dry_run', 'npm_config_global', 'npm_config_prefix', 'npm_config_omit', 'npm_config_production'].includes(key)) continue;
    env[k] = v;
  }
  return env;
}

/** At most two busy child processes at once: the machine also runs the rest of the suite. */
let slots = 2;
const waiting: (() => void)[] = [];
async function run(cmd: string, args: string[], cwd: string, limited = true): Promise<Ran> {
  if (!limited) return spawned(cmd, args, cwd);
  while (slots === 0) await new Promise<void>((r) => waiting.push(r));
  slots--;
  try {
    return await spawned(cmd, args, cwd);
  } finally {
    slots++;
    waiting.shift()?.();
  }
}

function spawned(cmd: string, args: string[], cwd: string): Promise<Ran> {
  const started = Date.now();
  return new Promise<Ran>((done, fail) => {
    const child = spawn(cmd, args, { cwd, env: childEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', fail);
    child.on('close', (code) => done({ code, stdout, stderr, ms: Date.now() - started }));
  });
}

/** Runs a command that must succeed; otherwise throws with everything it printed. */
async function mustRun(cmd: string, args: string[], cwd: string): Promise<Ran> {
  const r = await run(cmd, args, cwd);
  if (r.code !== 0) throw new Error(`\`${cmd} ${args.join(' ')}\` in ${cwd} exited with ${r.code}\n--- stdout\n${r.stdout}\n--- stderr\n${r.stderr}`);
  return r;
}

const timings: Record<string, number> = {};
let dir = '';
let project = '';

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'scatter-saga-consumer-'));
  const packDir = join(dir, 'pack');
  project = join(dir, 'project');
  await mkdir(packDir);
  await mkdir(project);

  // npm pack runs `prepare`, which builds dist/ from the current sources.
  timings.pack = (await mustRun('npm', ['pack', '--pack-destination', packDir], repo)).ms;
  const tarballs = (await readdir(packDir)).filter((f) => f.endsWith('.tgz'));
  expect(tarballs, 'npm pack wrote exactly one tarball').toHaveLength(1);

  const own = JSON.parse(await readFile(join(repo, 'package.json'), 'utf8')) as { devDependencies: Record<string, string> };
  await writeFile(join(project, 'package.json'), JSON.stringify({ name: 'scatter-saga-consumer', private: true, type: 'module' }, null, 2));
  for (const [name, text] of Object.entries(FILES)) await writeFile(join(project, name), text);
  // fast-check: the optional peer dependency that scatter-saga/testing needs; @types/node: NodeJS types in our API.
  timings.install = (
    await mustRun(
      'npm',
      [
        'install',
        '--no-audit',
        '--no-fund',
        '--prefer-offline',
        join(packDir, tarballs[0] as string),
        `fast-check@${own.devDependencies['fast-check']}`,
        `@types/node@${own.devDependencies['@types/node']}`,
      ],
      project,
    )
  ).ms;
}, TIMEOUT);

afterAll(async () => {
  console.info(`consumer test timings (ms): ${JSON.stringify(timings)}`);
  if (dir !== '') await rm(dir, { recursive: true, force: true });
});

describe('the packed package, installed in a fresh project', () => {
  test('ships dist, the docs, README, CHANGELOG, LICENSE and package.json only, and every export target exists', async () => {
    const installed = join(project, 'node_modules/scatter-saga');
    expect((await readdir(installed)).sort()).toEqual(['CHANGELOG.md', 'LICENSE', 'README.md', 'dist', 'docs', 'package.json']);
    // The docs are the Markdown pages; the generated API reference (docs/api/) is not shipped.
    const docs = await readdir(join(installed, 'docs'));
    expect(docs).toContain('guide.md');
    expect(docs.filter((f) => !f.endsWith('.md'))).toEqual([]);
    const pkg = JSON.parse(await readFile(join(installed, 'package.json'), 'utf8')) as { exports: Record<string, string | Record<string, string>> };
    const targets = Object.values(pkg.exports).flatMap((t) => (typeof t === 'string' ? [t] : Object.values(t)));
    expect(targets.length).toBeGreaterThan(6);
    for (const t of targets) expect(existsSync(join(installed, t)), t).toBe(true);
  });

  test.concurrent(
    'plain Node ESM imports every entry and runs a saga in memory',
    async () => {
      // Light on CPU (about a second of work): it takes no slot.
      const r = await run(process.execPath, ['plain.mjs'], project, false);
      timings.node = r.ms;
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      expect(r.stdout).toMatch(/^ok: committed, compensated; model \d+ states; 2 simulated runs\n$/);
    },
    TIMEOUT,
  );

  test.concurrent(
    'the installed executable runs: npx scatter-saga demo',
    async () => {
      const r = await run(process.execPath, [join(project, 'node_modules/.bin/scatter-saga'), 'demo', '--json'], project, false);
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      expect((JSON.parse(r.stdout) as { status: string }[]).map((x) => x.status)).toEqual(['committed', 'compensated', 'compensated']);
    },
    TIMEOUT,
  );

  // The consumer's settings apply to their code and to every declaration file it reaches,
  // ours included (skipLibCheck off). Our own files must be clean under each of them.
  // Under non-strict and exactOptionalPropertyTypes, xstate's and nats-core's own declarations
  // have errors of their own (a project importing only them gets the same ones); those are
  // listed, and only those packages may have any.
  const checks: { name: string; options: Record<string, unknown>; othersMayFailIn: string[] }[] = [
    { name: 'strict', options: { strict: true }, othersMayFailIn: [] },
    { name: 'non-strict', options: { strict: false }, othersMayFailIn: ['xstate'] },
    { name: 'exactOptionalPropertyTypes', options: { strict: true, exactOptionalPropertyTypes: true }, othersMayFailIn: ['xstate', '@nats-io/nats-core'] },
  ];
  for (const check of checks) {
    test.concurrent(
      `type-checks a TypeScript consumer: ${check.name}, skipLibCheck off`,
      async () => {
        const config = `tsconfig.${check.name.replace(/\W+/g, '-')}.json`;
        const compilerOptions = { target: 'ES2022', module: 'NodeNext', moduleResolution: 'NodeNext', skipLibCheck: false, noEmit: true, types: ['node'], ...check.options };
        await writeFile(join(project, config), JSON.stringify({ compilerOptions, files: ['consumer.ts'] }, null, 2));
        const r = await run(process.execPath, [tsc, '-p', config, '--pretty', 'false'], project);
        timings[`tsc ${check.name}`] = r.ms;
        // One line per error (their explanations follow, indented), located or global.
        const lines = r.stdout.split('\n').filter((l) => /^(\S.*\(\d+,\d+\): )?error TS\d+:/.test(l));
        if (r.code !== 0 && lines.length === 0) throw new Error(`tsc exited with ${r.code} and no diagnostics\n${r.stdout}\n${r.stderr}`);
        const packageOf = (line: string): string | undefined => {
          const m = /node_modules\/((?:@[^/]+\/)?[^/]+)\/[^(]*\.d\.[cm]?ts\(/.exec(line);
          return m?.[1];
        };
        const others = lines.filter((l) => packageOf(l) !== undefined && packageOf(l) !== 'scatter-saga');
        if (others.length > 0) console.info(`${check.name}: ${others.length} error(s) in other packages' own declarations:\n${others.join('\n')}`);
        expect(lines.filter((l) => !others.includes(l)), 'errors in the consumer or in scatter-saga').toEqual([]);
        expect([...new Set(others.map(packageOf))].filter((p) => !check.othersMayFailIn.includes(p as string))).toEqual([]);
        expect(r.code === 0).toBe(lines.length === 0);
      },
      TIMEOUT,
    );
  }
});

/** The consumer project's own files. */
const FILES: Record<string, string> = {
  'plain.mjs': `
import assert from 'node:assert/strict';
import { createRuntime, defineSaga, defineWorker, TerminalError } from 'scatter-saga';
import { natsTransport, serveWorkers, jetstreamDedupStore, jetstreamSagaStore } from 'scatter-saga/nats';
import { createManualClock, exploreSaga, verifySaga } from 'scatter-saga/testing';
import { createRequire } from 'node:module';

for (const f of [natsTransport, serveWorkers, jetstreamDedupStore, jetstreamSagaStore]) assert.equal(typeof f, 'function');
assert.equal(createRequire(import.meta.url)('scatter-saga/package.json').name, 'scatter-saga');

const held = new Set();
const flights = defineWorker({
  name: 'flights',
  async do(req, ctx) { held.add('flight ' + ctx.idempotencyKey); return { to: req.to }; },
  async compensate(_req, _res, ctx) { held.delete('flight ' + ctx.idempotencyKey); },
});
const hotels = defineWorker({
  name: 'hotels',
  async do(req, ctx) {
    if (req.city === 'Nowhere') throw new TerminalError('no rooms');
    held.add('hotel ' + ctx.idempotencyKey);
    return { city: req.city };
  },
  async compensate(_req, _res, ctx) { held.delete('hotel ' + ctx.idempotencyKey); },
});
const trip = defineSaga({
  name: 'trip',
  version: 1,
  steps: {
    flight: { worker: flights, input: (t) => ({ to: t.to }) },
    hotel: { worker: hotels, input: (t) => ({ city: t.to }) },
  },
});

const runtime = createRuntime();
runtime.host(flights, hotels);
const ok = await runtime.run(trip, { to: 'Lisbon' });
assert.equal(ok.status, 'committed');
assert.deepEqual(ok.results, { flight: { to: 'Lisbon' }, hotel: { city: 'Lisbon' } });
const undone = await runtime.run(trip, { to: 'Nowhere' });
assert.equal(undone.status, 'compensated');
assert.equal(held.size, 2); // the committed trip's two effects; the compensated one left none
await runtime.close();

assert.equal(createManualClock(5).now(), 5);
const model = exploreSaga(trip, { input: { to: 'Lisbon' } });
assert.deepEqual(model.violations, []);
const sim = await verifySaga(defineSaga({ name: 'pair', version: 1, steps: { a: { worker: 'a' }, b: { worker: 'b' } } }), { runs: 2, skipModel: true });
assert.deepEqual(sim.violations, []);
console.log('ok: ' + ok.status + ', ' + undone.status + '; model ' + model.states + ' states; ' + sim.runs + ' simulated runs');
`,
  'consumer.ts': `
import { createRuntime, defineSaga, defineWorker, memorySagaStore, memoryTransport, noCompensation, TerminalError } from 'scatter-saga';
import type { Runtime, RuntimeOptions, SagaOutcome, WorkerContext, WorkerDefinition } from 'scatter-saga';
import { natsTransport, serveWorkers, jetstreamDedupStore, jetstreamSagaStore } from 'scatter-saga/nats';
import type { NatsTransportOptions, ServeWorkersOptions, WorkerServer } from 'scatter-saga/nats';
import { createManualClock, exploreSaga, verifySaga } from 'scatter-saga/testing';
import type { ManualClock, ModelReport, VerifyOptions, VerifyReport } from 'scatter-saga/testing';

interface Trip { to: string; nights: number }

const flights: WorkerDefinition<{ to: string }, { seat: string }> = defineWorker({
  name: 'flights',
  async do(req: { to: string }, ctx: WorkerContext) {
    if (req.to === '') throw new TerminalError('nowhere to fly');
    return { seat: ctx.idempotencyKey + ':12A' };
  },
  async compensate() {},
});
const notify = defineWorker({ name: 'notify', do: (_: unknown) => 'sent', compensate: noCompensation('a message cannot be unsent') });

const trip = defineSaga<Trip>({
  name: 'trip',
  version: 1,
  steps: {
    flight: { worker: flights, input: (t) => ({ to: t.to }), timeoutMs: 2_000, retries: 1 },
    notify: { worker: notify, after: ['flight'], input: (_t, results) => results['flight'] },
  },
  join: { kind: 'all' },
  compensation: { retries: 2, backoff: { initialMs: 10, factor: 2, maxMs: 100 } },
});

const options: RuntimeOptions = { transport: memoryTransport(), store: memorySagaStore() };
const runtime: Runtime = createRuntime(options).host(flights, notify);
export async function book(t: Trip): Promise<string> {
  const outcome: SagaOutcome = await runtime.run(trip, t, { sagaId: 'trip-' + t.to });
  switch (outcome.status) {
    case 'committed':
      return JSON.stringify(outcome.results);
    case 'compensated':
      return outcome.failures.map((f) => f.stepId + ': ' + f.error.message).join(', ');
    case 'compensation-failed':
      return outcome.remaining.map((r) => r.stepId).join(', ');
  }
}

// Types end to end, inferred without type arguments: the saga input from the annotated
// input, each step's input checked against its worker, results typed by step id.
const hotels = defineWorker({ name: 'hotels', async do(req: { city: string }) { return { ref: req.city }; }, async compensate() {} });
const booking = defineSaga({
  name: 'booking',
  version: 1,
  steps: {
    flight: { worker: flights, input: (t: Trip) => ({ to: t.to }) },
    hotel: { worker: hotels, after: ['flight'], input: (t, r) => ({ city: t.to + ':' + r.flight.seat }) },
  },
});
export async function booked(t: Trip): Promise<string> {
  // @ts-expect-error the input of booking is a Trip
  void runtime.run(booking, { to: 1 });
  const outcome = await runtime.run(booking, t);
  if (outcome.status !== 'committed') return outcome.status;
  // @ts-expect-error a seat is a string
  const seat: number = outcome.results.flight.seat;
  return outcome.results.flight.seat + outcome.results.hotel.ref + String(seat);
}
// @ts-expect-error 'nope' is not a step of this saga
export const unknownStep = defineSaga({ name: 'bad', version: 1, steps: { a: { worker: hotels, input: (t: Trip) => ({ city: t.to }) }, b: { worker: 'x', after: ['nope'] } } });
// @ts-expect-error hotels takes { city }, not a number
export const badInput = defineSaga({ name: 'bad', version: 1, steps: { a: { worker: hotels, input: (t: Trip) => t.nights } } });
// @ts-expect-error hotel does not run after flight: no flight result
export const unseen = defineSaga({ name: 'bad', version: 1, steps: { flight: { worker: flights, input: (t: Trip) => ({ to: t.to }) }, hotel: { worker: hotels, input: (t, r) => ({ city: r.flight.seat }) } } });

export type NatsApi = [typeof natsTransport, typeof serveWorkers, typeof jetstreamDedupStore, typeof jetstreamSagaStore];
export const serve: ServeWorkersOptions = { queue: 'q', concurrency: 4, signals: [] };
export const transportOptions: NatsTransportOptions = {};
export type Server = WorkerServer;

const clock: ManualClock = createManualClock(0);
export const model: ModelReport = exploreSaga(trip, { input: { to: 'Lisbon', nights: 2 } });
const verify: VerifyOptions = { runs: 1 };
export const verified: Promise<VerifyReport> = verifySaga(trip, verify);
export const now: number = clock.now();
`,
};
