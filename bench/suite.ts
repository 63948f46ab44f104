/**
 * The benchmark suite: every mode (embedded, NATS, durable) over the sweep of fan-out
 * widths, sagas in flight and failure rates, each point next to its baselines measured in
 * the same run; writes bench/results/<date>.json, .md and .svg (see bench/report.ts).
 *
 *   npm run bench                                  the full sweep
 *   npm run bench -- --smoke                       a tiny subset, for CI
 *   npm run bench -- --modes durable --widths 3 --in-flight 1,256 --fail 0 --seconds 2
 *   npm run bench -- --help
 *
 * Runs under `node --expose-gc --import tsx` (npm run bench does). Starts its own
 * nats-server (JetStream in a temp dir) for the NATS modes; the worker host of those
 * runs in another process (bench/modes/host.ts). Progress goes to stderr. Exits 2 on a
 * bad argument, 1 when a point or a mode failed (after writing what was measured).
 */
import { execFileSync } from 'node:child_process';
import os from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { findNatsServer, startNatsServer } from '../test/helpers/nats-server.ts';
import type { NatsServer } from '../test/helpers/nats-server.ts';
import { BenchArgumentError, parseArgs, usage } from './args.ts';
import type { Mode, SuiteOptions } from './args.ts';
import { embeddedBaselines, embeddedTarget } from './modes/embedded.ts';
import { natsTarget } from './modes/nats.ts';
import { measurePoint } from './point.ts';
import type { PointResult, PointSpec, Target } from './point.ts';
import { writeReport } from './report.ts';
import type { SuiteReport } from './report.ts';
import { round, sig } from './stats.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
/** Steps held in flight at most for the memory figures (wide sagas dispatch slowly). */
export const HELD_STEPS = 4096;
const log = (line: string) => process.stderr.write(`${line}\n`);

/** The points of one mode, widths outermost; a point over the cap of steps in flight runs fewer sagas at once. */
export function plan(mode: Mode, o: SuiteOptions): PointSpec[] {
  const out: PointSpec[] = [];
  for (const width of o.widths) {
    for (const inFlight of o.inFlight) {
      for (const fail of o.fail) {
        const used = Math.min(inFlight, Math.floor(o.maxSteps / width));
        const notes = used < inFlight && used >= 1 ? [`capped: ${used} sagas in flight instead of ${inFlight} (${width} × ${inFlight} steps is over --max-steps ${o.maxSteps})`] : [];
        // Memory: as many sagas as the point runs (at least --hold), within HELD_STEPS steps.
        const hold = Math.max(1, Math.min(Math.max(used, o.hold), Math.floor(HELD_STEPS / width)));
        out.push({ mode, width, inFlight, used, fail, seconds: o.seconds, warmup: o.warmup, hold, notes });
      }
    }
  }
  return out;
}

function ratios(r: PointResult): Record<string, number> {
  const b = r.baselines;
  const x = (a: number | undefined, c: number | undefined) => (a === undefined || c === undefined || c === 0 ? NaN : sig(a / c));
  switch (r.mode) {
    case 'embedded':
      return {
        sagasPerSecVsBare: x(r.sagasPerSec, b.bareMachine?.perSec),
        p50VsBare: x(r.p50Ms, b.bareMachine?.p50Ms),
        cpuVsBare: x(r.cpuMsPerSaga?.coordinator, b.bareMachine?.cpuMsPerOp),
        sagasPerSecVsSagaMachine: x(r.sagasPerSec, b.sagaMachine?.perSec),
        sagaMachineVsBare: x(b.sagaMachine?.perSec, b.bareMachine?.perSec),
        sagasPerSecVsAllSettled: x(r.sagasPerSec, b.allSettled?.perSec),
        p50VsAllSettled: x(r.p50Ms, b.allSettled?.p50Ms),
      };
    case 'nats':
      return { stepsPerSecVsRequestReply: x(r.stepsPerSec, b.requestReply?.perSec), p50VsRequestReply: x(r.p50Ms, b.requestReply?.p50Ms) };
    case 'durable':
      return {
        sagasPerSecVsKvPut: x(r.sagasPerSec, b.kvPut?.perSec),
        p50VsKvPut: x(r.p50Ms, b.kvPut?.p50Ms),
        sagasPerSecVsJsPublish: x(r.sagasPerSec, b.jsPublish?.perSec),
        p50VsJsPublish: x(r.p50Ms, b.jsPublish?.p50Ms),
      };
  }
}

const describe = (s: PointSpec) => `${s.mode} width ${s.width}, ${s.used === s.inFlight ? s.inFlight : `${s.inFlight}→${s.used}`} in flight, ${Math.round(s.fail * 100)}% failing`;
const failed = (s: PointSpec, error: unknown): PointResult => ({
  mode: s.mode,
  width: s.width,
  inFlight: s.inFlight,
  inFlightUsed: s.used,
  fail: s.fail,
  notes: [...s.notes],
  error: error instanceof Error ? error.message : String(error),
  baselines: {},
  ratios: {},
});

async function runMode(mode: Mode, o: SuiteOptions, server: NatsServer | undefined, counter: { done: number; total: number }, results: PointResult[]): Promise<boolean> {
  const points = plan(mode, o);
  let ok = true;
  let target: (Target & { close(): Promise<void>; baselines?: (s: PointSpec, steps: number) => Promise<PointResult['baselines']> }) | undefined;
  try {
    target = mode === 'embedded' ? embeddedTarget() : await natsTarget(mode, (server as NatsServer).url);
  } catch (error) {
    log(`${mode}: could not start: ${error instanceof Error ? error.message : String(error)}`);
    for (const s of points) results.push(failed(s, error));
    counter.done += points.length;
    return false;
  }
  try {
    for (const spec of points) {
      counter.done++;
      const where = `[${counter.done}/${counter.total}] ${describe(spec)}`;
      if (spec.used < 1) {
        results.push({ ...failed(spec, undefined), error: undefined, notes: [`skipped: one saga of width ${spec.width} is over --max-steps ${o.maxSteps}`] });
        log(`${where}: skipped (width over --max-steps)`);
        continue;
      }
      try {
        const r = await measurePoint(target, spec);
        if (r.sagasPerSec !== undefined) {
          r.baselines = mode === 'embedded' ? await embeddedBaselines(spec) : await (target.baselines as NonNullable<typeof target.baselines>)(spec, Math.min(spec.used * spec.width, o.maxSteps));
          r.ratios = ratios(r);
        }
        results.push(r);
        log(`${where}: ${r.sagasPerSec === undefined ? r.notes.join('; ') : `${r.sagasPerSec} sagas/s, p50 ${r.p50Ms} ms, p99 ${r.p99Ms} ms${r.notes.length > 0 ? ` (${r.notes.join('; ')})` : ''}`}`);
      } catch (error) {
        ok = false;
        results.push(failed(spec, error));
        log(`${where}: FAILED: ${error instanceof Error ? error.stack : String(error)}`);
      }
    }
  } finally {
    await target.close().catch((error: unknown) => log(`${mode}: close failed: ${String(error)}`));
  }
  return ok;
}

function natsServerVersion(): string | undefined {
  try {
    return execFileSync(findNatsServer(), ['--version'], { encoding: 'utf8' }).trim().replace(/^nats-server:\s*/, '');
  } catch {
    return undefined;
  }
}

function commit(): string {
  try {
    const sha = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: ROOT, encoding: 'utf8' }).trim();
    const dirty = execFileSync('git', ['status', '--porcelain', '--', 'src'], { cwd: ROOT, encoding: 'utf8' }).trim() !== '';
    return dirty ? `${sha} (src modified)` : sha;
  } catch {
    return 'unknown';
  }
}

async function main(): Promise<number> {
  let o: ReturnType<typeof parseArgs>;
  try {
    o = parseArgs(process.argv.slice(2));
  } catch (error) {
    if (!(error instanceof BenchArgumentError)) throw error;
    log(`bench: ${error.message}\n\n${usage()}`);
    return 2;
  }
  if (o.help) {
    process.stdout.write(`${usage()}\n`);
    return 0;
  }
  if ((globalThis as { gc?: unknown }).gc === undefined) {
    log('bench: run under node --expose-gc (npm run bench does)');
    return 2;
  }
  const t0 = Date.now();
  const startedAt = new Date(t0).toISOString();
  const loadavgStart = os.loadavg().map((x) => round(x, 2));
  const total = o.modes.reduce((n, m) => n + plan(m, o).length, 0);
  log(`bench: ${total} points (${o.modes.join(', ')}), about ${round(total * (o.seconds + o.warmup) * (o.modes.includes('embedded') ? 2 : 1.3) / 60, 1)} min or more`);
  const results: PointResult[] = [];
  const counter = { done: 0, total };
  let ok = true;
  const server = o.modes.some((m) => m !== 'embedded') ? await startNatsServer() : undefined;
  try {
    for (const mode of o.modes) ok = (await runMode(mode, o, server, counter, results)) && ok;
  } finally {
    await server?.stop();
  }
  const { help: _help, out: _out, docs: _docs, ...options } = o;
  const report: SuiteReport = {
    suite: 'scatter-saga benchmark suite',
    date: startedAt.slice(0, 10),
    startedAt,
    durationSeconds: Math.round((Date.now() - t0) / 1000),
    machine: { node: process.version, cpus: os.availableParallelism(), loadavgStart, loadavgEnd: os.loadavg().map((x) => round(x, 2)), natsServer: server === undefined ? undefined : natsServerVersion(), commit: commit() },
    options,
    workload:
      'a saga of `width` parallel steps on three workers (w0, w1, w2, step i on w<i mod 3>) that answer at once; a failing saga\'s last step throws TerminalError and the others are compensated. Closed loop: each of the sagas in flight starts the next as soon as its last ends.',
    results,
  };
  const written = await writeReport(report, o.out ?? join(ROOT, 'bench', 'results'), o.docs, ROOT);
  log(`bench: ${report.durationSeconds} s; wrote ${written.join(', ')}`);
  const bad = results.filter((r) => r.error !== undefined);
  if (bad.length > 0) log(`bench: ${bad.length} point(s) failed`);
  return ok && bad.length === 0 ? 0 : 1;
}

process.exitCode = await main();
