/**
 * A coordinator of the chaos run, in its own process:
 * `node --import tsx chaos/coordinator.ts`. One coordinator per slot at a time; all
 * slots share one saga store (bucket prefix `chaos_shared`), each under the coordinator
 * id `chaos-c<slot>` (a restarted slot recovers its own sagas at once; the other slot
 * takes them over when its heartbeat stops for the 3 s lease). Configured by env:
 *
 *   NATS_URL                 server, or servers separated by commas, the preferred first (required)
 *   NATS_REPLICAS            replicas of the saga store's buckets (1 or 3; default 1)
 *   CHAOS_SLOT               0, 1, ... (required)
 *   CHAOS_DIR                the run directory: started.jsonl, outcomes.jsonl, ledger.jsonl (required)
 *   CHAOS_MODE               'run' (default) or 'final'
 *   CHAOS_CONCURRENCY        sagas in flight (run mode, default 32)
 *   CHAOS_QUOTA              sagas to start before stopping (run mode, default unlimited)
 *   CHAOS_SEED               seed of the saga mix
 *   CHAOS_FINAL_TIMEOUT_MS   final mode: time bound for the recovered sagas and operator retries (default 120000)
 *   CHAOS_RESOLVE_RATE       run mode: share of the sagas that park which are resolved at once (default 0.5)
 *   LOG_LEVEL                pino level on stdout (default error)
 *
 * Run mode: recover() what a killed predecessor left, then keep starting sagas. Every
 * saga is appended (fsynced) to started.jsonl before run() is called, with an explicit
 * saga id; every run() result or rejection goes to outcomes.jsonl. A saga that parks is,
 * at CHAOS_RESOLVE_RATE, resolved at once as an operator would, while the faults go on
 * and its `do`s may still run: undo by hand what the ledger holds for its remaining
 * effects, resolve; on a review look and undo again, and resolve naming it (resolves.jsonl).
 * SIGTERM: stop starting, let the sagas in flight end, close, exit 0.
 *
 * Final mode: recover(), wait until no saga of the slot is unfinished (bounded), record
 * every parked saga's remaining effects, retry each once, then read the final record of
 * every saga of the slot in started.jsonl and write records-<slot>.jsonl and
 * final-<slot>.json.
 */
import { closeSync, openSync, readSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import pino from 'pino';
import { createRuntime } from '../src/index.ts';
import { ResolveError } from '../src/index.ts';
import type { CompensationFailedOutcome, SagaStatus } from '../src/index.ts';
import { jetstreamSagaStore, natsTransport } from '../src/nats.ts';
import { codeOf, connectNats, JsonlAppender, prng, readJsonl, replicasFromEnv, requireEnv, say, sleep, unsafeServerFromEnv } from './common.ts';
import { trimOutcome } from './check.ts';
import type { FinalRecord, LedgerLine, ResolveEvent, RunEvent, StartedEntry } from './check.ts';
import { SAGAS, STORE_PREFIX } from './sagas.ts';

const url = requireEnv('NATS_URL');
const slot = Number(requireEnv('CHAOS_SLOT'));
if (!Number.isSafeInteger(slot) || slot < 0) throw new Error('CHAOS_SLOT must be a whole number >= 0');
const dir = requireEnv('CHAOS_DIR');
const mode = process.env.CHAOS_MODE ?? 'run';
if (mode !== 'run' && mode !== 'final') throw new Error("CHAOS_MODE must be 'run' or 'final'");
const logger = pino({ level: process.env.LOG_LEVEL ?? 'error' });
const paths = {
  started: join(dir, 'started.jsonl'),
  outcomes: join(dir, 'outcomes.jsonl'),
  ledger: join(dir, 'ledger.jsonl'),
  resolves: join(dir, 'resolves.jsonl'),
  records: join(dir, `records-${slot}.jsonl`),
  final: join(dir, `final-${slot}.json`),
};

const nc = await connectNats(url, `chaos-coordinator-${slot}-${process.pid}`);
const runtime = createRuntime({
  transport: natsTransport(nc),
  store: jetstreamSagaStore(nc, { bucketPrefix: STORE_PREFIX, replicas: replicasFromEnv(), allowUnsafeServer: unsafeServerFromEnv() }),
  sagas: SAGAS,
  ownership: { id: `chaos-c${slot}`, leaseMs: 3_000 },
  logger,
});

/** Retries an operation on the store until it succeeds or the deadline passes. */
async function persist<T>(what: string, fn: () => Promise<T>, deadline = Infinity): Promise<T> {
  for (let i = 0; ; i++) {
    try {
      return await fn();
    } catch (error) {
      if (Date.now() >= deadline) throw error;
      logger.warn({ err: error, what, attempt: i + 1 }, 'store operation failed; trying again');
      await sleep(Math.min(100 * 2 ** i, 1_000));
    }
  }
}

const FINISHED = new Set(['committed', 'compensated', 'compensationFailed']);

/** What the ledger holds, read incrementally: the active keys (an `apply` not followed by an `undo`). */
class LedgerView {
  private offset = 0;
  private rest = '';
  private readonly active = new Set<string>();
  refresh(): void {
    let fd: number;
    try {
      fd = openSync(paths.ledger, 'r');
    } catch {
      return;
    }
    try {
      const buf = Buffer.alloc(1 << 20);
      for (;;) {
        const n = readSync(fd, buf, 0, buf.length, this.offset);
        if (n === 0) break;
        this.offset += n;
        const lines = (this.rest + buf.toString('utf8', 0, n)).split('\n');
        this.rest = lines.pop() ?? '';
        for (const line of lines) {
          if (line === '') continue;
          try {
            const l = JSON.parse(line) as LedgerLine;
            if (l.op === 'apply') this.active.add(l.key);
            else this.active.delete(l.key);
          } catch {
            // a torn line of a killed writer
          }
        }
      }
    } finally {
      closeSync(fd);
    }
  }
  isActive(key: string): boolean {
    return this.active.has(key);
  }
}

/**
 * The operator of a parked saga, acting at once: looks at the ledger, undoes by hand each
 * remaining effect it holds (an `undo` line, attempt 0), resolves; on a review looks and
 * undoes again and resolves naming the review; on a fence failure waits and tries again.
 */
async function resolveAsOperator(sagaId: string, parked: CompensationFailedOutcome, view: LedgerView, ledger: JsonlAppender): Promise<ResolveEvent> {
  let reviews = 0;
  let undos = 0;
  let reviewed: string | undefined;
  let result = 'not resolved';
  for (let call = 0; call < 6; call++) {
    view.refresh();
    for (const e of parked.remaining) {
      if (!view.isActive(e.idempotencyKey)) continue;
      ledger.append({ t: Date.now(), pid: process.pid, op: 'undo', worker: e.worker, sagaId, stepId: e.stepId, key: e.idempotencyKey, attempt: 0 } satisfies LedgerLine);
      undos++;
    }
    try {
      const o = await runtime.resolve(sagaId, { note: 'chaos operator: undone by hand', ...(reviewed !== undefined ? { reviewed } : {}) });
      result = o.status;
      break;
    } catch (error) {
      result = codeOf(error);
      if (error instanceof ResolveError && error.code === 'RESOLVE_NEEDS_REVIEW') {
        reviews++;
        reviewed = error.review;
        continue;
      }
      if (error instanceof ResolveError && error.code === 'FENCE_FAILED') {
        await sleep(1_000);
        continue;
      }
      // Not parked any more (taken over and retried elsewhere), or the store is down: the final phase sees to it.
      break;
    }
  }
  return { t: Date.now(), sagaId, slot, result, reviews, undos };
}

async function runMode(): Promise<void> {
  const concurrency = Number(process.env.CHAOS_CONCURRENCY ?? 32);
  const quota = process.env.CHAOS_QUOTA === undefined ? Infinity : Number(process.env.CHAOS_QUOTA);
  const random = prng(Number(process.env.CHAOS_SEED ?? process.pid));
  const started = new JsonlAppender(paths.started, true);
  const outcomes = new JsonlAppender(paths.outcomes, false);
  const resolveRate = Number(process.env.CHAOS_RESOLVE_RATE ?? 0.5);
  if (!(resolveRate >= 0 && resolveRate <= 1)) throw new Error('CHAOS_RESOLVE_RATE must be a probability in [0, 1]');
  const resolves = new JsonlAppender(paths.resolves, true);
  const ledger = new JsonlAppender(paths.ledger, true);
  const view = new LedgerView();

  const recovered = await persist('recover', () => runtime.recover());
  say({ ready: true, pid: process.pid, slot, recovered: recovered.length });

  let n = 0;
  let inflight = 0;
  let settled = 0;
  let stopping = false;
  let wake: (() => void) | undefined;
  const notify = () => {
    const w = wake;
    wake = undefined;
    w?.();
  };
  process.once('SIGTERM', () => {
    stopping = true;
    notify();
  });
  const progress = setInterval(() => say({ progress: { started: n, inflight, settled, runtimeInFlight: runtime.inFlight } }), 1_000);

  while (!stopping && n < quota) {
    if (inflight >= concurrency) {
      await new Promise<void>((r) => (wake = r));
      continue;
    }
    const def = SAGAS[Math.floor(random() * SAGAS.length)] ?? SAGAS[0]!;
    const sagaId = `c${slot}-${process.pid}-${n}`;
    const input = { n };
    n++;
    const entry: StartedEntry = { sagaId, saga: def.name, input, slot };
    started.append(entry);
    inflight++;
    runtime.run(def, input, { sagaId }).then(
      async (o) => {
        outcomes.append({ t: Date.now(), sagaId, slot, status: o.status } satisfies RunEvent);
        if (o.status === 'compensation-failed' && random() < resolveRate) {
          resolves.append(await resolveAsOperator(sagaId, o, view, ledger).catch((error: unknown) => ({ t: Date.now(), sagaId, slot, result: codeOf(error), reviews: 0, undos: 0 })));
        }
        inflight--;
        settled++;
        notify();
      },
      (error: unknown) => {
        outcomes.append({ t: Date.now(), sagaId, slot, error: codeOf(error) } satisfies RunEvent);
        // Hold the slot a little: a store or a worker that is down makes run() reject at once.
        setTimeout(() => {
          inflight--;
          settled++;
          notify();
        }, 200);
      },
    );
    // Let replies and timers in between starts.
    await new Promise((r) => setImmediate(r));
  }
  // Quota reached or told to stop: let what is in flight end.
  const deadline = Date.now() + 60_000;
  while ((inflight > 0 || runtime.inFlight > 0) && Date.now() < deadline) {
    await sleep(50);
  }
  if (!stopping) {
    say({ done: true, started: n, settled });
    await new Promise<void>((r) => process.once('SIGTERM', () => r()));
  }
  clearInterval(progress);
  await runtime.close({ drainMs: 2_000 });
  await nc.close();
  say({ stopped: true, started: n, settled });
  process.exit(0);
}

async function finalMode(): Promise<void> {
  const t0 = Date.now();
  const timeoutMs = Number(process.env.CHAOS_FINAL_TIMEOUT_MS ?? 120_000);
  const deadline = t0 + timeoutMs;
  const recovered = await persist('recover', () => runtime.recover(), deadline);
  say({ ready: true, pid: process.pid, slot, recovered: recovered.length });

  const status = (id: string): Promise<SagaStatus | undefined> => persist(`status of ${id}`, () => runtime.status(id), deadline + 30_000);
  // Wait until every recovered saga has ended or parked.
  let pending = [...recovered];
  while (pending.length > 0 && Date.now() < deadline) {
    const next: string[] = [];
    for (const id of pending) {
      const s = await status(id);
      if (s === undefined || !FINISHED.has(s.state)) next.push(id);
    }
    pending = next;
    if (pending.length > 0) await sleep(200);
  }
  const settledMs = Date.now() - t0;
  const timedOut: { sagaId: string; state: string | undefined }[] = [];
  for (const id of pending) timedOut.push({ sagaId: id, state: (await status(id))?.state });

  // Every parked saga: its remaining effects (before the operator acts), then one retry.
  // The store is shared: this slot acts on the sagas it started (the other slot on its own).
  const mineIds = new Set(readJsonl<StartedEntry>(paths.started).filter((e) => e.slot === slot).map((e) => e.sagaId));
  const letters = (await persist('deadLetters', () => runtime.deadLetters(), deadline + 30_000)).filter((l) => mineIds.has(l.sagaId));
  const parkedIds = new Map<string, boolean>(letters.map((l) => [l.sagaId, true]));
  for (const id of recovered) {
    if (parkedIds.has(id) || !mineIds.has(id)) continue;
    if ((await status(id))?.state === 'compensationFailed') parkedIds.set(id, false);
  }
  const parked: {
    sagaId: string;
    deadLetter: boolean;
    remaining: { stepId: string; idempotencyKey: string; why?: string }[];
    decision: 'commit' | 'abort' | undefined;
    keptSteps: string[];
    ledgerBytes: number;
    retry?: { status: string } | { error: string };
  }[] = [];
  const letterOf = new Map(letters.map((l) => [l.sagaId, l]));
  for (const [sagaId, deadLetter] of parkedIds) {
    const s = await status(sagaId);
    const o = s?.outcome;
    const remaining = (letterOf.get(sagaId)?.remaining ?? (o?.status === 'compensation-failed' ? o.remaining : [])).map((r) => ({
      stepId: r.stepId,
      idempotencyKey: r.idempotencyKey,
      why: r.why,
    }));
    const listed = new Set(remaining.map((r) => r.stepId));
    const decision = o?.status === 'compensation-failed' ? o.decision : undefined;
    const keptSteps = decision === 'commit' ? Object.entries(s?.steps ?? {}).filter(([id, st]) => st === 'committed' && !listed.has(id)).map(([id]) => id) : [];
    parked.push({ sagaId, deadLetter, remaining, decision, keptSteps, ledgerBytes: statSync(paths.ledger, { throwIfNoEntry: false })?.size ?? 0 });
  }
  await Promise.all(
    parked.map(async (p) => {
      const left = Math.max(deadline - Date.now(), 5_000);
      let timer: ReturnType<typeof setTimeout> | undefined;
      try {
        const o = await Promise.race([
          runtime.retry(p.sagaId),
          new Promise<never>((_, reject) => {
            timer = setTimeout(() => reject(Object.assign(new Error('operator retry did not end in time'), { code: 'RETRY_TIMEOUT' })), left);
          }),
        ]);
        p.retry = { status: o.status };
      } catch (error) {
        p.retry = { error: codeOf(error) };
      } finally {
        clearTimeout(timer);
      }
    }),
  );
  const retriedMs = Date.now() - t0;

  // The final record of every saga this slot started.
  const mine = readJsonl<StartedEntry>(paths.started).filter((e) => e.slot === slot);
  const records = new JsonlAppender(paths.records, false);
  let next = 0;
  const readOne = async (e: StartedEntry): Promise<FinalRecord> => {
    try {
      let s = await status(e.sagaId);
      if (s !== undefined && !FINISHED.has(s.state)) {
        // Driven by the other slot's coordinator (the store is shared): wait for its end.
        await runtime.outcome(e.sagaId, { timeoutMs: Math.max(deadline - Date.now(), 1_000), pollMs: 200 }).catch(() => undefined);
        s = await status(e.sagaId);
      }
      if (s === undefined) return { sagaId: e.sagaId, found: false };
      const outcome = trimOutcome(s.outcome);
      return { sagaId: e.sagaId, found: true, state: s.state, steps: { ...s.steps }, ...(outcome !== undefined ? { outcome } : {}) };
    } catch (error) {
      return { sagaId: e.sagaId, found: false, error: codeOf(error) };
    }
  };
  await Promise.all(
    Array.from({ length: 32 }, async () => {
      while (next < mine.length) {
        const e = mine[next++] as StartedEntry;
        records.append(await readOne(e));
      }
    }),
  );
  records.close();
  writeFileSync(
    paths.final,
    JSON.stringify({ slot, pid: process.pid, recovered: recovered.length, settledMs, retriedMs, readMs: Date.now() - t0, timeoutMs, timedOut, parked, records: mine.length }),
  );
  say({ final: true, slot, recovered: recovered.length, parked: parked.length, timedOut: timedOut.length });
  await runtime.close({ drainMs: 1_000 });
  await nc.close();
  process.exit(0);
}

const main = mode === 'run' ? runMode : finalMode;
main().catch((error: unknown) => {
  process.stderr.write(`coordinator ${slot} failed: ${(error as Error)?.stack ?? String(error)}\n`);
  process.exit(1);
});
