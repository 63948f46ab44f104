/**
 * The chaos orchestrator: the deployed topology with real processes, faults injected,
 * then a final phase that drives every saga to its end, and the checker.
 *
 *   nats-server (JetStream, file storage, private temp dir, free port), or with
 *   `cluster` a 3-node cluster on loopback whose buckets all have 3 replicas, each
 *   process connecting to another node first
 *   N worker hosts (chaos/worker-host.ts): half serve flights+hotels, half cars+payments
 *   2 coordinators (chaos/coordinator.ts), each with its own saga store prefix
 *
 * During the fault window it SIGKILLs random worker hosts and coordinators (each is
 * restarted after a short random pause; a restarted coordinator recovers its slot) and
 * restarts nats-server (SIGKILL, same port and store; in a cluster, one node at a time,
 * down for a second or two, and the next only once the cluster is healthy again). Every kill is logged to
 * events.jsonl. Then it kills everything still running, starts fresh hosts without
 * injected failures and, per slot, a fresh coordinator that recovers, waits until
 * nothing of its slot is unfinished, retries every parked saga once and reads the final
 * record of every saga. The checker (check.ts) judges what was left behind.
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { createWriteStream, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import type { WriteStream } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { connect } from '@nats-io/transport-node';
import { jetstreamDedupStore, jetstreamSagaStore } from '../src/nats.ts';
import { startNatsCluster, startNatsServer } from '../test/helpers/nats-server.ts';
import type { NatsServer } from '../test/helpers/nats-server.ts';
import { check } from './check.ts';
import type { CheckReport, FinalRecord, KillEvent, LedgerLine, ParkedEntry, ResolveEvent, RunEvent, StartedEntry, TimedOutEntry } from './check.ts';
import type { FaultConfig } from './common.ts';
import { deriveSeed, faultsToEnv, JsonlAppender, NO_FAULTS, prng, readJsonl, readJsonlWithOffsets, sleep } from './common.ts';
import { HOST_GROUPS, STORE_PREFIX, WORKERS } from './sagas.ts';

const HERE = dirname(fileURLToPath(import.meta.url));
const WORKER_HOST = join(HERE, 'worker-host.ts');
const COORDINATOR = join(HERE, 'coordinator.ts');

export interface ChaosOptions {
  /** Fault window in seconds (Infinity with `sagas`: until n sagas were started). */
  readonly durationS: number;
  /** SIGKILLs of hosts and coordinators spread over the window. */
  readonly kills: number;
  readonly natsRestarts: number;
  /** False: no kills, no restarts, no injected failures (the `faults` given should be NO_FAULTS). */
  readonly injectFaults: boolean;
  /** Stop after starting this many sagas. */
  readonly sagas?: number;
  readonly seed: number;
  /** Sagas in flight per coordinator. */
  readonly concurrency: number;
  readonly hosts: number;
  readonly coordinators: number;
  /** Time bound of the final phase (recovery and operator retries). */
  readonly finalTimeoutS: number;
  readonly faults: FaultConfig;
  /** Share of the sagas parked during the run that their coordinator resolves at once, as an operator. Default 0.5. */
  readonly resolveRate?: number;
  /** Run directory; default a new temp dir. */
  readonly dir?: string;
  readonly quiet?: boolean;
  /** serveWorkers concurrency of each host. Default 64. */
  readonly hostConcurrency?: number;
  /** pino level of the children. Default error. */
  readonly logLevel?: string;
  /** Shortest and longest pause before a killed process is restarted. Default 200-1500 ms. */
  readonly restartPauseMs?: readonly [number, number];
  /** A 3-node nats-server cluster with every bucket replicated 3 times, instead of one server. */
  readonly cluster?: boolean;
  /** Run a cluster although its nats-server is older than 2.9.21 (unsafe compare-and-set: violations are expected). */
  readonly allowUnsafeServer?: boolean;
}

/** The NATS deployment under test: one server, or a cluster whose nodes restart one at a time. */
interface Deployment {
  readonly describe: string;
  /** The NATS_URL of the n-th process spawned: in a cluster, each prefers another node. */
  urlFor(n: number): string;
  readonly replicas: number;
  /** Restarts a server (the n-th restart): SIGKILL, then back with the same store. */
  restart(n: number, pauseMs: number): Promise<string>;
  pid(): number | undefined;
  stop(): Promise<void>;
}

async function startDeployment(cluster: boolean, allowUnsafeServer: boolean): Promise<Deployment> {
  if (!cluster) {
    const server: NatsServer = await startNatsServer();
    return {
      describe: `nats-server ${server.url}`,
      urlFor: () => server.url,
      replicas: 1,
      async restart() {
        await server.restart();
        return 'nats-server';
      },
      pid: () => natsPid(server),
      stop: () => server.stop(),
    };
  }
  const c = await startNatsCluster(3);
  let down = -1;
  const deployment: Deployment = {
    describe: `a 3-node nats-server cluster ${c.urls.join(', ')}`,
    urlFor: (n) => [...c.urls.slice(n % 3), ...c.urls.slice(0, n % 3)].join(','),
    replicas: 3,
    async restart(n, pauseMs) {
      down = n % 3;
      await c.kill(down);
      await sleep(pauseMs);
      await c.start(down);
      // The next node goes down only once this one has caught up.
      await c.healthy(120_000);
      return `nats-server node ${down}`;
    },
    pid: () => c.pids[Math.max(0, down)],
    stop: () => c.stop(),
  };
  // Every bucket is created once, with its replicas, before any process uses it (as a
  // deployment step would): concurrent first creations of replicated streams are slow on 2.9.
  const nc = await connect({ servers: [...c.urls], noRandomize: true });
  try {
    await jetstreamSagaStore(nc, { bucketPrefix: STORE_PREFIX, replicas: 3, allowUnsafeServer }).unfinished();
    const dedup = jetstreamDedupStore(nc, { replicas: 3, allowUnsafeServer });
    for (const w of WORKERS) await dedup.bucket(w);
  } catch (error) {
    await c.stop();
    throw error;
  } finally {
    await nc.close();
  }
  await c.healthy(60_000);
  return deployment;
}

export interface ChaosResult {
  readonly report: CheckReport;
  readonly dir: string;
  readonly seed: number;
  readonly natsUrl: string;
  /** Processes that exited without being killed by the orchestrator. */
  readonly unexpectedExits: { what: string; pid: number; code: number | null; signal: string | null }[];
  /** Problems of the harness itself (a final coordinator that failed, a child that never got ready). */
  readonly errors: string[];
  readonly finalPhase: { slot: number; recovered: number; parked: number; timedOut: number; settledMs: number; retriedMs: number; readMs: number }[];
}

interface Proc {
  readonly what: string;
  readonly child: ChildProcess;
  readonly pid: number;
  readonly ready: Promise<void>;
  isReady: boolean;
  killedByUs: boolean;
  done: boolean;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  hasExited: boolean;
}

interface Slot {
  readonly what: string;
  readonly role: 'host' | 'coordinator';
  readonly index: number;
  proc: Proc | undefined;
  incarnation: number;
}

/** Runs the chaos test and returns the checker's report. Never throws for violations; throws when the harness cannot run. */
export async function runChaos(options: ChaosOptions): Promise<ChaosResult> {
  const o = options;
  const log = (msg: string) => {
    if (!o.quiet) process.stderr.write(`[chaos ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);
  };
  const dir = o.dir ?? mkdtempSync(join(tmpdir(), 'scatter-saga-chaos-'));
  mkdirSync(join(dir, 'logs'), { recursive: true });
  const paths = {
    started: join(dir, 'started.jsonl'),
    outcomes: join(dir, 'outcomes.jsonl'),
    ledger: join(dir, 'ledger.jsonl'),
    events: join(dir, 'events.jsonl'),
    resolves: join(dir, 'resolves.jsonl'),
  };
  for (const p of Object.values(paths)) if (existsSync(p)) throw new Error(`${dir} already holds a run (${p}): give an empty --dir`);
  const events = new JsonlAppender(paths.events, true);
  const random = prng(o.seed);
  const between = (a: number, b: number) => a + random() * (b - a);
  const [pauseMin, pauseMax] = o.restartPauseMs ?? [200, 1_500];
  const errors: string[] = [];
  const unexpectedExits: ChaosResult['unexpectedExits'] = [];
  const all = new Set<Proc>();
  const logStreams: WriteStream[] = [];
  const t0 = Date.now();

  const killAllNow = () => {
    for (const p of all) if (!p.hasExited) p.child.kill('SIGKILL');
  };
  process.once('exit', killAllNow);

  let server: Deployment | undefined;
  let spawned = 0;
  try {
    server = await startDeployment(o.cluster === true, o.allowUnsafeServer === true);
    const nats = server;
    log(`${nats.describe}, run directory ${dir}, seed ${o.seed}`);
    events.append({ type: 'nats-start', t: Date.now(), what: 'nats-server', pid: nats.pid() });

    let windowOpen = true;

    const spawnProc = (what: string, file: string, env: Record<string, string>, exitsByItself = false): Proc => {
      const child = spawn(process.execPath, ['--import', 'tsx', file], {
        cwd: join(HERE, '..'),
        env: { ...process.env, NATS_URL: nats.urlFor(spawned++), NATS_REPLICAS: String(nats.replicas), ...(o.allowUnsafeServer === true ? { NATS_ALLOW_UNSAFE_SERVER: '1' } : {}), LOG_LEVEL: o.logLevel ?? 'error', ...env },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      if (child.pid === undefined) throw new Error(`could not spawn ${what}`);
      const out = createWriteStream(join(dir, 'logs', `${what}-${child.pid}.log`));
      logStreams.push(out);
      let resolveReady!: () => void;
      const ready = new Promise<void>((r) => (resolveReady = r));
      const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
      const proc: Proc = { what, child, pid: child.pid, ready, isReady: false, killedByUs: exitsByItself, done: false, exited, hasExited: false };
      all.add(proc);
      let buf = '';
      child.stdout?.on('data', (d: Buffer) => {
        out.write(d);
        buf += d.toString();
        let i: number;
        while ((i = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, i);
          buf = buf.slice(i + 1);
          if (!line.startsWith('{"')) continue;
          try {
            const msg = JSON.parse(line) as Record<string, unknown>;
            if (msg.ready === true) {
              proc.isReady = true;
              resolveReady();
            }
            if (msg.done === true) proc.done = true;
          } catch {
            // a log line
          }
        }
      });
      child.stderr?.on('data', (d: Buffer) => out.write(d));
      void exited.then(({ code, signal }) => {
        proc.hasExited = true;
        all.delete(proc);
        out.end();
        if (!proc.killedByUs) {
          unexpectedExits.push({ what, pid: proc.pid, code, signal });
          events.append({ type: 'exit', t: Date.now(), what, pid: proc.pid, code, signal });
        }
      });
      events.append({ type: 'spawn', t: Date.now(), what, pid: proc.pid });
      return proc;
    };

    const waitReady = async (p: Proc, timeoutMs: number) => {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const r = await Promise.race([
        p.ready.then(() => 'ready' as const),
        p.exited.then(() => 'exited' as const),
        new Promise<'timeout'>((r) => (timer = setTimeout(() => r('timeout'), timeoutMs))),
      ]);
      clearTimeout(timer);
      if (r !== 'ready') throw new Error(`${p.what} (pid ${p.pid}) ${r === 'exited' ? 'exited' : 'was not ready'} before it was ready; see ${join(dir, 'logs', `${p.what}-${p.pid}.log`)}`);
    };

    const hostEnv = (s: Slot, faults: FaultConfig): Record<string, string> => ({
      CHAOS_WORKERS: (HOST_GROUPS[s.index < o.hosts / 2 ? 0 : 1] as readonly string[]).join(','),
      CHAOS_LEDGER: paths.ledger,
      CHAOS_SEED: String(deriveSeed(o.seed, 'host', s.index, s.incarnation)),
      CHAOS_CONCURRENCY: String(o.hostConcurrency ?? 64),
      ...faultsToEnv(faults),
    });
    /** Sagas a coordinator slot may still start (with --sagas). */
    const quotaOf = (index: number): number | undefined => {
      if (o.sagas === undefined) return undefined;
      const share = Math.floor(o.sagas / o.coordinators) + (index < o.sagas % o.coordinators ? 1 : 0);
      const already = readJsonl<StartedEntry>(paths.started).filter((e) => e.slot === index).length;
      return Math.max(share - already, 0);
    };
    const coordinatorEnv = (s: Slot, mode: 'run' | 'final'): Record<string, string> => {
      const quota = mode === 'run' ? quotaOf(s.index) : undefined;
      return {
        CHAOS_SLOT: String(s.index),
        CHAOS_DIR: dir,
        CHAOS_MODE: mode,
        CHAOS_CONCURRENCY: String(o.concurrency),
        CHAOS_SEED: String(deriveSeed(o.seed, 'coordinator', s.index, s.incarnation)),
        CHAOS_FINAL_TIMEOUT_MS: String(Math.round(o.finalTimeoutS * 1000)),
        CHAOS_RESOLVE_RATE: String(o.resolveRate ?? 0.5),
        ...(quota !== undefined ? { CHAOS_QUOTA: String(quota) } : {}),
      };
    };

    const hosts: Slot[] = Array.from({ length: o.hosts }, (_, i) => ({ what: `host-${i}`, role: 'host' as const, index: i, proc: undefined, incarnation: 0 }));
    const coordinators: Slot[] = Array.from({ length: o.coordinators }, (_, i) => ({ what: `coordinator-${i}`, role: 'coordinator' as const, index: i, proc: undefined, incarnation: 0 }));
    const restarts = new Set<Promise<void>>();
    const restartLater = (s: Slot) => {
      const p = (async () => {
        await sleep(between(pauseMin, pauseMax));
        if (windowOpen) start(s);
      })();
      restarts.add(p);
      void p.finally(() => restarts.delete(p));
    };
    const start = (s: Slot): Proc => {
      s.incarnation++;
      const proc = s.role === 'host' ? spawnProc(s.what, WORKER_HOST, hostEnv(s, o.faults)) : spawnProc(s.what, COORDINATOR, coordinatorEnv(s, 'run'));
      s.proc = proc;
      // A process that exits on its own during the window is restarted too (and reported).
      void proc.exited.then(() => {
        if (!proc.killedByUs && windowOpen && s.proc === proc) {
          log(`${s.what} (pid ${proc.pid}) exited on its own; restarting it`);
          restartLater(s);
        }
      });
      return proc;
    };

    const kill = async (p: Proc, phase: string, signal: NodeJS.Signals = 'SIGKILL') => {
      if (p.hasExited) return;
      p.killedByUs = true;
      const t = Date.now();
      p.child.kill(signal);
      if (signal === 'SIGKILL') events.append({ type: 'kill', t, what: p.what, pid: p.pid, phase } satisfies KillEvent & { type: string });
      else events.append({ type: 'signal', t, what: p.what, pid: p.pid, signal, phase });
      await p.exited;
    };
    /** Asks a process to stop (SIGTERM); SIGKILL (logged as a kill) when it takes longer than timeoutMs. */
    const stop = async (p: Proc, timeoutMs: number) => {
      if (p.hasExited) return;
      p.killedByUs = true;
      const exited = p.exited.then(() => true);
      void kill(p, 'stop', 'SIGTERM');
      const inTime = await Promise.race([exited, sleep(timeoutMs).then(() => false)]);
      if (!inTime) {
        log(`${p.what} (pid ${p.pid}) did not stop within ${timeoutMs} ms: SIGKILL`);
        const t = Date.now();
        p.child.kill('SIGKILL');
        events.append({ type: 'kill', t, what: p.what, pid: p.pid, phase: 'stop' });
        await p.exited;
      }
    };

    // ---- start the topology
    for (const h of hosts) start(h);
    await Promise.all(hosts.map((h) => waitReady(h.proc as Proc, 60_000)));
    for (const c of coordinators) start(c);
    await Promise.all(coordinators.map((c) => waitReady(c.proc as Proc, 60_000)));
    log(`${o.hosts} worker hosts and ${o.coordinators} coordinators ready (${Date.now() - t0} ms)`);

    // ---- the fault window
    const windowStart = Date.now();
    const windowMs = o.durationS * 1000;
    type Planned = { at: number; kind: 'kill' | 'nats' };
    const plan: Planned[] = [];
    if (o.injectFaults) {
      for (let i = 0; i < o.kills; i++) plan.push({ at: between(0.03, 0.95) * windowMs, kind: 'kill' });
      for (let i = 0; i < o.natsRestarts; i++) plan.push({ at: ((i + 1) / (o.natsRestarts + 1)) * windowMs, kind: 'nats' });
      plan.sort((a, b) => a.at - b.at);
    }
    let killsDone = 0;
    let natsRestartsDone = 0;
    let lastProgress = Date.now();
    const quotaDone = () => o.sagas !== undefined && coordinators.every((c) => c.proc?.done === true);
    /** Every third kill is a coordinator's, the others a worker host's (whichever is up when none of the kind is). */
    const pickTarget = (): Slot | undefined => {
      const up = (list: Slot[]) => list.filter((s) => s.proc !== undefined && s.proc.isReady && !s.proc.hasExited);
      const upHosts = up(hosts);
      const upCoordinators = up(coordinators);
      const wantCoordinator = killsDone % 3 === 1;
      const pool = (wantCoordinator && upCoordinators.length > 0) || upHosts.length === 0 ? upCoordinators : upHosts;
      return pool[Math.floor(random() * pool.length)];
    };
    while (Date.now() - windowStart < windowMs && !quotaDone()) {
      const due = plan[0];
      if (due !== undefined && Date.now() - windowStart >= due.at) {
        if (due.kind === 'nats') {
          plan.shift();
          const t = Date.now();
          events.append({ type: 'nats-restart', t, what: 'nats-server', pid: nats.pid() });
          const which = await nats.restart(natsRestartsDone, o.cluster === true ? Math.round(1_000 + random() * 1_000) : 0);
          natsRestartsDone++;
          events.append({ type: 'nats-up', t: Date.now(), what: 'nats-server', pid: nats.pid() });
          log(`${which} restarted (${Date.now() - t} ms until healthy)`);
        } else {
          const target = pickTarget();
          if (target === undefined) {
            await sleep(50); // everything is restarting: try again shortly
            continue;
          }
          plan.shift();
          const proc = target.proc as Proc;
          await kill(proc, 'window');
          killsDone++;
          restartLater(target);
        }
        continue;
      }
      if (Date.now() - lastProgress >= 10_000) {
        lastProgress = Date.now();
        log(`${Math.round((Date.now() - windowStart) / 1000)} s: ${countLines(paths.started)} sagas started, ${killsDone} kills, ${natsRestartsDone} nats-server restarts`);
      }
      await sleep(Math.max(5, Math.min(100, due === undefined ? 100 : due.at - (Date.now() - windowStart))));
    }
    windowOpen = false;
    const windowEnd = Date.now();
    if (plan.length > 0) log(`the window ended with ${plan.length} planned faults not done`);
    await Promise.all([...restarts]);
    log(`fault window over after ${Math.round((windowEnd - windowStart) / 1000)} s: ${countLines(paths.started)} sagas started, ${killsDone} kills, ${natsRestartsDone} nats-server restarts`);

    // ---- final phase: everything still running goes
    const living = [...hosts, ...coordinators].map((s) => s.proc).filter((p): p is Proc => p !== undefined && !p.hasExited);
    if (o.injectFaults) {
      for (const p of living) await kill(p, 'final');
    } else {
      await Promise.all(coordinators.map((c) => (c.proc === undefined ? undefined : stop(c.proc, 90_000))));
      await Promise.all(hosts.map((h) => (h.proc === undefined ? undefined : stop(h.proc, 15_000))));
    }
    const freshHosts: Slot[] = hosts.map((h) => ({ ...h, what: `final-host-${h.index}`, proc: undefined, incarnation: 1000 }));
    for (const h of freshHosts) h.proc = spawnProc(h.what, WORKER_HOST, hostEnv(h, NO_FAULTS));
    await Promise.all(freshHosts.map((h) => waitReady(h.proc as Proc, 60_000)));
    log(`final phase: ${freshHosts.length} fresh hosts ready; recovering every slot`);
    const finals = coordinators.map((c) => {
      const s: Slot = { ...c, what: `final-coordinator-${c.index}`, proc: undefined, incarnation: 1000 };
      s.proc = spawnProc(s.what, COORDINATOR, coordinatorEnv(s, 'final'), true);
      return s;
    });
    const finalBound = o.finalTimeoutS * 1000 + 120_000 + (o.sagas ?? 0) * 2;
    await Promise.all(
      finals.map(async (f) => {
        const p = f.proc as Proc;
        const r = await Promise.race([p.exited, sleep(finalBound).then(() => undefined)]);
        if (r === undefined) {
          errors.push(`${p.what} did not finish within ${finalBound} ms`);
          await kill(p, 'final');
        } else if (r.code !== 0) errors.push(`${p.what} (pid ${p.pid}) exited with ${r.code ?? r.signal}; see its log in ${join(dir, 'logs')}`);
      }),
    );
    await Promise.all(freshHosts.map((h) => (h.proc === undefined ? undefined : stop(h.proc, 10_000))));
    const end = Date.now();
    log(`final phase done (${Math.round((end - windowEnd) / 1000)} s); checking`);

    // ---- check
    const finalPhase: ChaosResult['finalPhase'] = [];
    const parkedRaw: (Omit<ParkedEntry, 'ledgerLines'> & { ledgerBytes: number })[] = [];
    const timedOut: TimedOutEntry[] = [];
    const records: FinalRecord[] = [];
    for (const c of coordinators) {
      const file = join(dir, `final-${c.index}.json`);
      if (!existsSync(file)) {
        errors.push(`the final coordinator of slot ${c.index} wrote no ${file}`);
        continue;
      }
      const f = JSON.parse(readFileSync(file, 'utf8')) as {
        recovered: number;
        parked: (Omit<ParkedEntry, 'ledgerLines'> & { ledgerBytes: number })[];
        timedOut: TimedOutEntry[];
        settledMs: number;
        retriedMs: number;
        readMs: number;
      };
      finalPhase.push({ slot: c.index, recovered: f.recovered, parked: f.parked.length, timedOut: f.timedOut.length, settledMs: f.settledMs, retriedMs: f.retriedMs, readMs: f.readMs });
      parkedRaw.push(...f.parked);
      timedOut.push(...f.timedOut);
      records.push(...readJsonl<FinalRecord>(join(dir, `records-${c.index}.jsonl`)));
    }
    const { lines: ledger, linesBefore } = readJsonlWithOffsets<LedgerLine>(
      paths.ledger,
      parkedRaw.map((p) => p.ledgerBytes),
    );
    const parked: ParkedEntry[] = parkedRaw.map(({ ledgerBytes, ...p }) => ({ ...p, ledgerLines: linesBefore.get(ledgerBytes) ?? ledger.length }));
    const allEvents = readJsonl<KillEvent & { type: string }>(paths.events);
    const report = check({
      started: readJsonl<StartedEntry>(paths.started),
      records,
      ledger,
      kills: allEvents.filter((e) => e.type === 'kill'),
      natsRestarts: allEvents.filter((e) => e.type === 'nats-restart'),
      parked,
      runEvents: readJsonl<RunEvent>(paths.outcomes),
      resolves: readJsonl<ResolveEvent>(paths.resolves),
      timedOut,
      durationMs: end - t0,
      windowMs: windowEnd - windowStart,
    });
    return { report, dir, seed: o.seed, natsUrl: nats.urlFor(0), unexpectedExits, errors, finalPhase };
  } finally {
    killAllNow();
    await Promise.all([...all].map((p) => p.exited));
    await Promise.all(logStreams.map((s) => new Promise<void>((r) => (s.writableFinished ? r() : s.once('finish', () => r())))));
    process.off('exit', killAllNow);
    events.close();
    await server?.stop();
  }
}

/** The pid of the running nats-server, from its ports file. */
function natsPid(server: NatsServer): number | undefined {
  const dir = dirname(server.storeDir);
  for (const f of readdirSync(dir)) {
    const m = /^nats-server_(\d+)\.ports$/.exec(f);
    if (m) return Number(m[1]);
  }
  return undefined;
}

function countLines(path: string): number {
  if (!existsSync(path)) return 0;
  const buf = readFileSync(path);
  let n = 0;
  for (const b of buf) if (b === 0x0a) n++;
  return n;
}
