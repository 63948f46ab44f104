/**
 * Deterministic simulation: the real runtime and the real worker host on a simulated
 * transport and the manual clock, every choice (drop, duplicate, delay, crash, fail)
 * read from a tape of numbers, so a run replays exactly from its tape. A ledger of
 * fake systems of record is the oracle.
 */
import { TerminalError } from '../errors.ts';
import { createWorkerHost } from '../actors/worker-host.ts';
import { defineWorker } from '../define.ts';
import { createRuntime } from '../runtime.ts';
import type { Runtime } from '../runtime.ts';
import { memoryDedupStore, memorySagaStore } from '../store/memory.ts';
import type { SagaDefinition, SagaOutcome, Served, Transport, WorkerHandler, WorkerReply, WorkerRequest } from '../types.ts';
import { outcomeOf } from '../machines/saga-logic.ts';
import type { SagaContext } from '../machines/saga-logic.ts';
import { createManualClock } from './clock.ts';
import type { ManualClock } from './clock.ts';

/** Odds of each fault, in percent (0 to 100). */
export interface FaultProfile {
  /** A request or a reply is lost. */
  readonly drop: number;
  /** A request is delivered twice. */
  readonly duplicate: number;
  /** Upper bound of one message delay, in ms (delays reorder messages). */
  readonly maxDelayMs: number;
  /** A worker's `do` fails (half of these terminally, half retryably). */
  readonly doFail: number;
  /** A worker's `compensate` fails. */
  readonly compensateFail: number;
  /** Worker host crashes during the faulty window (0 to 3). */
  readonly hostCrashes: number;
  /** Coordinator crashes (and recoveries) during the faulty window (0 to 3). */
  readonly coordinatorCrashes: number;
}

export const NO_FAULTS: FaultProfile = Object.freeze({ drop: 0, duplicate: 0, maxDelayMs: 0, doFail: 0, compensateFail: 0, hostCrashes: 0, coordinatorCrashes: 0 });

/** Reads choices from a tape; past its end, or once healed, every choice is the benign one. */
export class Chooser {
  private i = 0;
  healed = false;
  constructor(private readonly tape: readonly number[]) {}
  next(): number {
    if (this.healed) return 0;
    return this.tape[this.i++] ?? 0;
  }
  /** True with `pct` percent odds; a 0 on the tape means no. */
  chance(pct: number): boolean {
    const v = this.next();
    return v !== 0 && pct > 0 && v % 100 < pct;
  }
  /** A number from 0 to `max`. */
  upTo(max: number): number {
    return max <= 0 ? 0 : this.next() % (max + 1);
  }
}

// ---------------------------------------------------------------------------
// The ledger: fake systems of record, idempotent per key while an effect is active

export interface Ledger {
  apply(key: string): void;
  undo(key: string): void;
  active(key: string): boolean;
  /** Effects applied, in total (a re-application after an undo counts again). */
  applies(key: string): number;
}

export function createLedger(): Ledger {
  const state = new Map<string, { active: boolean; applies: number }>();
  const get = (k: string) => state.get(k) ?? { active: false, applies: 0 };
  return {
    apply(key) {
      const s = get(key);
      if (!s.active) state.set(key, { active: true, applies: s.applies + 1 });
    },
    undo(key) {
      state.set(key, { ...get(key), active: false });
    },
    active: (key) => get(key).active,
    applies: (key) => get(key).applies,
  };
}

// ---------------------------------------------------------------------------
// The simulated transport

export interface SimulatedTransport extends Transport {
  /** Messages scheduled and not yet delivered. */
  readonly inFlight: number;
  /** Keys whose messages were lost, duplicated or answered too late: a coordinator cannot know their exact state. */
  readonly disturbed: ReadonlySet<string>;
  /** A new host takes over a worker's subject (after a crash). */
  replace(worker: string, handler: WorkerHandler): void;
}

export interface SimulatedTransportOptions {
  clock: ManualClock;
  chooser: Chooser;
  faults: FaultProfile;
  trace?: (line: string) => void;
}

export function simulatedTransport(o: SimulatedTransportOptions): SimulatedTransport {
  const { clock, chooser, faults } = o;
  const handlers = new Map<string, WorkerHandler>();
  const disturbed = new Set<string>();
  let inFlight = 0;
  const trace = o.trace ?? (() => {});
  const later = (ms: number, fn: () => void) => {
    inFlight++;
    clock.setTimeout(() => {
      inFlight--;
      fn();
    }, ms);
  };
  const deliver = (req: WorkerRequest, onReply: (r: WorkerReply) => void) => {
    const h = handlers.get(req.worker);
    if (h === undefined) return;
    void h(req).then(onReply);
  };
  return {
    request(req, timeoutMs) {
      if (!handlers.has(req.worker)) return Promise.reject(Object.assign(new Error(`no host serves ${req.worker}`), { code: 'NO_RESPONDERS' }));
      const sentAt = clock.now();
      const what = `${req.op} ${req.stepId}#${req.attempt} of ${req.sagaId}`;
      return new Promise<WorkerReply>((resolve) => {
        if (chooser.chance(faults.drop)) {
          disturbed.add(`${req.sagaId}/${req.stepId}`);
          trace(`t=${sentAt} drop request ${what}`);
          return;
        }
        if (chooser.chance(faults.duplicate)) {
          disturbed.add(`${req.sagaId}/${req.stepId}`);
          const d = chooser.upTo(faults.maxDelayMs * 2);
          trace(`t=${sentAt} duplicate request ${what} (+${d} ms)`);
          later(d, () => deliver(req, () => {}));
        }
        later(chooser.upTo(faults.maxDelayMs), () =>
          deliver(req, (reply) => {
            if (chooser.chance(faults.drop)) {
              disturbed.add(`${req.sagaId}/${req.stepId}`);
              trace(`t=${clock.now()} drop reply to ${what}`);
              return;
            }
            later(chooser.upTo(faults.maxDelayMs), () => {
              if (clock.now() - sentAt >= timeoutMs) disturbed.add(`${req.sagaId}/${req.stepId}`);
              resolve(reply);
            });
          }),
        );
      });
    },
    serve(worker, handler): Served {
      handlers.set(worker, handler);
      return { stop: async () => void (handlers.get(worker) === handler && handlers.delete(worker)) };
    },
    replace(worker, handler) {
      handlers.set(worker, handler);
    },
    isServed: (worker) => handlers.has(worker),
    async close() {
      handlers.clear();
    },
    get inFlight() {
      return inFlight;
    },
    disturbed,
  };
}

// ---------------------------------------------------------------------------
// One simulated run

export interface SimulationScenario {
  /** The choice tape: every fault and delay is read from it, in order. */
  readonly tape: readonly number[];
  readonly faults: FaultProfile;
  /** Sagas started at once. Default 1. */
  readonly sagas?: number;
  /** Faults happen in [0, faultWindowMs); afterwards the world is healed. Default 2_000. */
  readonly faultWindowMs?: number;
  /** The input of each saga. Default `{ n: sagaId }`. */
  readonly input?: (sagaId: string) => unknown;
}

export interface SimulationViolation {
  readonly property: string;
  readonly message: string;
}

export interface SimulationResult {
  readonly outcomes: readonly (SagaOutcome | undefined)[];
  readonly violations: readonly SimulationViolation[];
  /** Sagas that parked in compensation-failed before the operator retry. */
  readonly parked: number;
  /** What happened, one line per fault and outcome: the path of the run. */
  readonly trace: readonly string[];
}

const HORIZON_MS = 60_000;

/** Runs `def` on the real runtime in a simulated world and checks the ledger against the outcomes. */
export async function simulate(def: SagaDefinition, scenario: SimulationScenario): Promise<SimulationResult> {
  const trace: string[] = [];
  const violations: SimulationViolation[] = [];
  const clock = createManualClock(0);
  const chooser = new Chooser(scenario.tape);
  const faults = scenario.faults;
  const window = scenario.faultWindowMs ?? 2_000;
  const ledger = createLedger();
  const transport = simulatedTransport({ clock, chooser, faults, trace: (l) => trace.push(l) });
  const dedup = memoryDedupStore({ clock });
  const store = memorySagaStore({ clock });
  let compensateFailOdds = faults.compensateFail;
  const workerNames = [...new Set(def.steps.map((p) => p.worker))];

  // Worker hosts: a crash loses everything but the dedup store.
  let generation = 0;
  const sleep = (ms: number) => new Promise<void>((r) => clock.setTimeout(r, ms));
  const hang = () => new Promise<never>(() => {});
  const startHost = () => {
    const gen = ++generation;
    const alive = () => gen === generation;
    const workers = workerNames.map((name) =>
      defineWorker<unknown, unknown>({
        name,
        async do(_input: unknown, ctx) {
          // A host may die after the system of record took the effect but before it recorded the outcome.
          const early = faults.hostCrashes > 0 && chooser.chance(30);
          if (early) ledger.apply(`${ctx.sagaId}/${ctx.stepId}`);
          await sleep(chooser.upTo(faults.maxDelayMs));
          if (!alive()) return hang();
          if (!early && chooser.chance(faults.doFail)) {
            if (chooser.chance(50)) throw new TerminalError(`simulated terminal failure of ${ctx.stepId}`);
            throw new Error(`simulated retryable failure of ${ctx.stepId}`);
          }
          ledger.apply(`${ctx.sagaId}/${ctx.stepId}`);
          return { applied: ctx.idempotencyKey };
        },
        async compensate(_input: unknown, _result: unknown, ctx) {
          const early = faults.hostCrashes > 0 && chooser.chance(30);
          if (early) ledger.undo(`${ctx.sagaId}/${ctx.stepId}`);
          await sleep(chooser.upTo(faults.maxDelayMs));
          if (!alive()) return hang();
          if (!early && chooser.chance(compensateFailOdds)) throw new Error(`simulated compensation failure of ${ctx.stepId}`);
          ledger.undo(`${ctx.sagaId}/${ctx.stepId}`);
        },
      }),
    );
    // A dead host neither reads nor writes its dedup store again.
    const hostDedup = {
      get: (w: string, k: string) => (alive() ? dedup.get(w, k) : hang()),
      set: (w: string, k: string, r: Parameters<typeof dedup.set>[2]) => (alive() ? dedup.set(w, k, r) : hang()),
    };
    const host = createWorkerHost(workers, { dedup: hostDedup, clock });
    for (const name of workerNames) transport.replace(name, (req) => (alive() ? host.handle(req) : hang()));
  };
  startHost();

  const random = () => (chooser.next() % 1000) / 1000;
  const newRuntime = () => createRuntime({ transport, store, dedup, clock, random, sagas: [def] });
  let runtime: Runtime = newRuntime();

  const n = scenario.sagas ?? 1;
  let ids = Array.from({ length: n }, (_, i) => `saga-${i}`);
  const crashes: { at: number; what: 'host' | 'coordinator' }[] = [];
  for (let i = 0; i < faults.hostCrashes; i++) crashes.push({ at: chooser.upTo(window), what: 'host' });
  for (let i = 0; i < faults.coordinatorCrashes; i++) crashes.push({ at: chooser.upTo(window), what: 'coordinator' });
  crashes.sort((a, b) => a.at - b.at);

  for (const id of ids) {
    void runtime.run(def, scenario.input ? scenario.input(id) : { n: id }, { sagaId: id }).catch(async (e: unknown) => {
      // A coordinator that crashes while run() waits rejects it; the saga goes on only if its intent was journaled.
      if ((e as { code?: string }).code === 'RUNTIME_CLOSED') {
        if ((await store.get(id)) === undefined) {
          trace.push(`t=${clock.now()} ${id} never started: its coordinator crashed before journaling it`);
          ids = ids.filter((x) => x !== id);
        }
        return;
      }
      violations.push({ property: 'run-accepts-the-saga', message: String(e) });
    });
  }

  const settledAll = async () => {
    const out: (SagaOutcome | undefined)[] = [];
    for (const id of ids) {
      const rec = await store.get(id);
      if (rec?.outcome !== undefined) out.push(rec.outcome);
      else if (rec?.status === 'parked') {
        const snap = rec.snapshot as { value?: string; context?: SagaContext } | undefined;
        out.push(snap?.value === 'compensationFailed' && snap.context ? outcomeOf(def, snap.context, 'compensationFailed') : undefined);
      } else out.push(undefined);
    }
    return out;
  };
  const quiet = async () => {
    const outs = await settledAll();
    return outs.every((x) => x !== undefined) && transport.inFlight === 0;
  };
  const drive = async (until: number) => {
    while (clock.now() < until) {
      const next = crashes[0];
      if (next !== undefined && next.at <= clock.now()) {
        crashes.shift();
        if (next.what === 'host') {
          trace.push(`t=${clock.now()} worker host crashes and restarts`);
          startHost();
        } else {
          trace.push(`t=${clock.now()} coordinator crashes and a new one recovers`);
          await runtime.close();
          runtime = newRuntime();
          await runtime.recover();
        }
        continue;
      }
      await clock.advance(clock.now() < window ? 25 : 100);
      if (clock.now() >= window && crashes.length === 0 && (await quiet())) return;
    }
  };

  await drive(window);
  chooser.healed = true;
  await drive(HORIZON_MS);
  let outcomes = await settledAll();
  check(def, ids, outcomes, ledger, transport.disturbed, violations, 'after the faults', clock.now());

  // An operator retries every parked saga in a healed world: it must then end cleanly.
  const parked = outcomes.filter((o) => o?.status === 'compensation-failed');
  if (parked.length > 0) {
    compensateFailOdds = 0;
    for (const o of parked) {
      trace.push(`t=${clock.now()} operator retries ${o?.sagaId}`);
      void runtime.retry((o as SagaOutcome).sagaId).catch((e: unknown) => violations.push({ property: 'operator-can-retry', message: String(e) }));
    }
    await drive(clock.now() + HORIZON_MS);
    outcomes = await settledAll();
    for (const o of outcomes) {
      if (o?.status === 'compensation-failed') violations.push({ property: 'operator-retry-ends-the-saga', message: `${o.sagaId} is still parked after an operator retry in a healed world` });
    }
    check(def, ids, outcomes, ledger, new Set(), violations, 'after the operator retry', clock.now());
  }
  await runtime.close();
  for (const o of outcomes) trace.push(`outcome ${o?.sagaId}: ${o?.status ?? 'none'}`);
  return { outcomes, violations, trace, parked: parked.length };
}

function check(
  def: SagaDefinition,
  ids: readonly string[],
  outcomes: readonly (SagaOutcome | undefined)[],
  ledger: Ledger,
  disturbed: ReadonlySet<string>,
  violations: SimulationViolation[],
  when: string,
  now: number,
): void {
  outcomes.forEach((o, i) => {
    const id = ids[i] as string;
    if (o === undefined) {
      violations.push({ property: 'every-saga-ends', message: `${when}: saga ${id} has no outcome at t=${now} ms` });
      return;
    }
    const keys = new Map(def.steps.map((p) => [p.id, `${id}/${p.id}`]));
    const active = def.steps.filter((p) => ledger.active(keys.get(p.id) as string)).map((p) => p.id);
    const say = (property: string, message: string) => violations.push({ property, message: `${when}: saga ${id} ${message}` });
    if (o.status === 'committed') {
      const kept = Object.keys(o.results).sort();
      if (active.slice().sort().join() !== kept.join()) say('committed-has-each-kept-effect-once', `committed keeping [${kept}] but the systems of record hold [${active}]`);
      for (const p of def.steps) if ((ledger.applies(keys.get(p.id) as string) ?? 0) > 1 && kept.includes(p.id)) say('effect-applied-once', `applied step ${p.id} ${ledger.applies(keys.get(p.id) as string)} times`);
    } else if (o.status === 'compensated') {
      if (active.length > 0) say('compensated-has-no-effect', `is compensated but the systems of record hold [${active}]`);
    } else {
      const remaining = o.remaining.map((r) => r.stepId);
      // With decision commit, the steps the join keeps stay, by design.
      const kept = o.decision === 'commit' ? def.steps.filter((p) => !o.compensated.includes(p.id) && !remaining.includes(p.id)).map((p) => p.id) : [];
      const missing = active.filter((s) => !remaining.includes(s) && !kept.includes(s));
      if (missing.length > 0) say('compensation-failed-lists-every-effect', `lists remaining [${remaining}] but the systems of record also hold [${missing}]`);
      // Listing a step that left no effect is conservative, not unsafe: the operator retry below
      // (in a healed world) must then end the saga with no effect at all.
      void disturbed;
    }
  });
}
