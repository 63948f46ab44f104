/**
 * Deterministic simulation of the topology users deploy: the real runtime and real
 * worker hosts on a simulated network and the manual clock. Several hosts serve every
 * worker (a NATS queue group) over one shared dedup store that answers after network
 * delays, so hosts interleave between their reads and writes; hosts die and come back,
 * sometimes all at once (no responders); coordinators crash and a new one recovers (and
 * once the world heals, a final recover() picks up what no recovery saw); hosts refuse
 * requests at capacity; messages are lost, duplicated, delayed and reordered; replies
 * arrive garbled or too large; some `do`s outlive their host's lease, renewing it, or
 * losing it while the host is cut off from the store (another host then takes the key
 * over while the `do` still runs and may still apply). The transport fails
 * requests as the NATS one does: its own deadline (STEP_TIMED_OUT, in doubt), no
 * responders and payload-too-large refusals (nothing sent), a connection lost before or
 * after publishing (TRANSPORT_ERROR, `notSent` or in doubt). Some `do`s get stuck for
 * seconds, so their saga parks while they still run, and an operator may resolve a saga
 * as soon as it parks, while the faults go on: it undoes by hand what the ledger holds,
 * resolves, looks again on a review. Every choice is read from a tape of numbers (the
 * operator's from a tape of its own), so a run replays exactly from its tapes. A ledger
 * of fake systems of record is the oracle: what each saga's outcome says against what
 * the systems of record hold (again once every message in flight has landed), the order
 * of undos against the definition's `after` edges and its compensation order, each undo a host acknowledged against
 * what the systems of record did afterwards, and each resolve against what applied after
 * the operator looked.
 */
import { InvalidOptionError, ResolveError, SagaError, TerminalError, TransportError } from '../errors.ts';
import { createWorkerHost } from '../actors/worker-host.ts';
import { defineWorker } from '../define.ts';
import { createRuntime } from '../runtime.ts';
import type { Runtime } from '../runtime.ts';
import { memoryDedupStore, memorySagaStore } from '../store/memory.ts';
import { parseReply } from '../transport/protocol.ts';
import { encodeReply } from '../transport/nats/wire.ts';
import type { DedupStore, KeyRecord, SagaDefinition, SagaOutcome, SagaRecord, SagaStore, Served, StepPlan, Transport, VersionedKeyRecord, WorkerHandler, WorkerReply, WorkerRequest } from '../types.ts';
import type { StepEvent } from '../runtime/api.ts';
import { fromPersistedSteps, outcomeOf } from '../machines/saga-logic.ts';
import type { SagaContext, StepState } from '../machines/saga-logic.ts';
import { createManualClock } from './clock.ts';
import { gateAccepts } from './model.ts';
import type { ManualClock } from './clock.ts';

/** Odds of each fault, in percent (0 to 100), and the shape of the simulated deployment. */
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
  /** Worker host crashes during the faulty window (0 to 3); a crashed host comes back after a while. */
  readonly hostCrashes: number;
  /** Coordinator crashes (and recoveries) during the faulty window (0 to 3). */
  readonly coordinatorCrashes: number;
  /** Hosts serving every worker over one shared dedup store (1 to 3). Default 2. */
  readonly hosts?: number;
  /** Upper bound of one store round trip in ms (dedup records and saga journals): hosts interleave between reads and writes, and a dead coordinator's write may land late. Default 0. */
  readonly storeDelayMs?: number;
  /** A reply arrives garbled (not JSON). Default 0. */
  readonly garble?: number;
  /** A `do` returns a result too large for a reply. Default 0. */
  readonly oversize?: number;
  /**
   * A `do` runs for several leases (its host must renew its claim). Half of them run while
   * their host is cut off from the dedup store, so it cannot renew in time: the claim
   * lapses under the running `do`. Default 0.
   */
  readonly slow?: number;
  /** Outages in which every host is down at once (no responders), each with a coordinator crash. Default 0. */
  readonly blackouts?: number;
  /** A host refuses a request at capacity (OVERLOADED), before it touches anything. Default 0. */
  readonly overload?: number;
  /**
   * A coordinator's journal write (or a saga's intent) fails: half of these before reaching
   * the store, half after landing there (the answer is lost, as when a server dies after
   * committing). Default 0.
   */
  readonly journalFail?: number;
  /**
   * The transport enforces its own deadline on a request, as NATS does: with no reply
   * within the request's timeout it rejects with STEP_TIMED_OUT (the request may have
   * reached a host: in doubt), and a later reply is ignored. Default 0.
   */
  readonly requestTimeout?: number;
  /** NO_RESPONDERS although hosts serve the worker (their subscriptions not yet known to the server): nothing was sent. Default 0. */
  readonly noResponders?: number;
  /** The request is refused before sending as over the payload limit (PAYLOAD_TOO_LARGE, `notSent`), as after a reconnect to a server with a lower `max_payload`. Default 0. */
  readonly requestTooLarge?: number;
  /**
   * The connection fails under a request (TRANSPORT_ERROR): half of these before it was
   * published (`notSent`), half after (the request may still reach a host: in doubt). Default 0.
   */
  readonly connectionLoss?: number;
  /**
   * A `do` gets stuck: it runs for 2 to 3 s (renewing its lease), far longer than its
   * step's timeout and its compensations' timeouts, so its saga parks while it still runs
   * and may still apply. Default 0.
   */
  readonly stuck?: number;
  /**
   * A host's write to the dedup store fails (the store unreachable for that call) before it
   * lands: a claim that cannot be written refuses the request (nothing ran), an outcome that
   * cannot be written after the `do` applied is answered OUTCOME_UNKNOWN and leaves the
   * key's claim to lapse (another request then takes the key over). Read from the tape only
   * when on. Default 0.
   */
  readonly storeFail?: number;
}

/** A fault profile with every fault off. */
export const NO_FAULTS: FaultProfile = Object.freeze({ drop: 0, duplicate: 0, maxDelayMs: 0, doFail: 0, compensateFail: 0, hostCrashes: 0, coordinatorCrashes: 0 });

/** Reads choices from a tape; past its end, or once healed, every choice is the benign one. */
export class Chooser {
  private i = 0;
  healed = false;
  constructor(private readonly tape: readonly number[]) {}
  /** The next choice on the tape (0 once healed or past its end). */
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

/** One call into the fake systems of record, in the order they happened. */
export interface LedgerEvent {
  /** Position in the ledger's history, from 0. */
  readonly seq: number;
  /** Clock time of the call, in ms. */
  readonly at: number;
  readonly kind: 'apply' | 'undo';
  readonly key: string;
  /** Whether the key's effect was in the world just before the call. */
  readonly wasActive: boolean;
  /** An undo an operator made by hand (not a worker's compensate). */
  readonly byOperator?: boolean;
}

/** Fake systems of record: one effect per key, applied at most once while active. The oracle of `simulate`. */
export interface Ledger {
  /** Applies the key's effect, unless it is active already. */
  apply(key: string): void;
  /** Undoes the key's effect (nothing when it is not active); `by: 'operator'` records an undo made by hand. */
  undo(key: string, by?: 'operator'): void;
  /** Whether the key's effect is in the world now. */
  active(key: string): boolean;
  /** Effects applied, in total (a re-application after an undo counts again). */
  applies(key: string): number;
  /** Every apply and undo call so far, in order. */
  readonly events: readonly LedgerEvent[];
}

/** An empty ledger; `now` stamps its events (default: always 0). */
export function createLedger(now: () => number = () => 0): Ledger {
  const state = new Map<string, { active: boolean; applies: number }>();
  const events: LedgerEvent[] = [];
  const get = (k: string) => state.get(k) ?? { active: false, applies: 0 };
  const log = (kind: LedgerEvent['kind'], key: string, byOperator = false) =>
    events.push({ seq: events.length, at: now(), kind, key, wasActive: get(key).active, ...(byOperator ? { byOperator } : {}) });
  return {
    apply(key) {
      log('apply', key);
      const s = get(key);
      if (!s.active) state.set(key, { active: true, applies: s.applies + 1 });
    },
    undo(key, by) {
      log('undo', key, by === 'operator');
      state.set(key, { ...get(key), active: false });
    },
    events,
    active: (key) => get(key).active,
    applies: (key) => get(key).applies,
  };
}

// ---------------------------------------------------------------------------
// The simulated transport: a queue group per worker

export interface SimulatedTransport extends Transport {
  /** Messages scheduled and not yet delivered. */
  readonly inFlight: number;
  /** Keys whose messages were lost, duplicated or answered too late: a coordinator cannot know their exact state. */
  readonly disturbed: ReadonlySet<string>;
  /** Every host of a worker is replaced by this one (e.g. after a crash). */
  replace(worker: string, handler: WorkerHandler): void;
}

/** The options of `simulatedTransport`. */
export interface SimulatedTransportOptions {
  clock: ManualClock;
  chooser: Chooser;
  faults: FaultProfile;
  /** Receives one line per fault the transport injects. */
  trace?: (line: string) => void;
  /** Largest reply body in bytes, as a NATS host enforces it. Default 1 MiB. */
  maxPayload?: number;
  /** Sees every request a coordinator makes, as it makes it (before any fault is drawn). */
  onRequest?: (req: WorkerRequest) => void;
  /** Sees the coordinator's side of a request settle: a reply, or an error. */
  onSettled?: (req: WorkerRequest) => void;
}

/**
 * Requests go to one of the hosts serving the worker (chosen from the tape, as a NATS
 * queue group would), or fail with NO_RESPONDERS when none serves it. Replies are
 * encoded and decoded as on NATS (an oversized result becomes RESULT_TOO_LARGE), and may
 * arrive garbled (PROTOCOL_ERROR). The other failures of the NATS transport come with its
 * semantics: refused before sending (PAYLOAD_TOO_LARGE, TRANSPORT_ERROR with `notSent`,
 * NO_RESPONDERS: no host sees the request), or after it was published (STEP_TIMED_OUT at
 * the request's deadline, TRANSPORT_ERROR without `notSent`: a host may run it).
 */
export function simulatedTransport(o: SimulatedTransportOptions): SimulatedTransport {
  const { clock, chooser, faults } = o;
  const maxPayload = o.maxPayload ?? 1024 * 1024;
  const pools = new Map<string, WorkerHandler[]>();
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
  const pick = (worker: string): WorkerHandler | undefined => {
    const pool = pools.get(worker) ?? [];
    return pool.length === 0 ? undefined : pool[chooser.upTo(pool.length - 1)];
  };
  /** What the coordinator's side makes of a reply: the NATS encoding, a garbled body, or the decoded reply. */
  const received = (reply: WorkerReply, what: string): { reply: WorkerReply } | { error: TransportError } => {
    let { body } = encodeReply(reply, maxPayload);
    if (chooser.chance(faults.garble ?? 0)) {
      trace(`t=${clock.now()} garbled reply to ${what}`);
      body = body.slice(0, Math.floor(body.length / 2));
    }
    try {
      return { reply: parseReply(JSON.parse(body)) };
    } catch (error) {
      return { error: new TransportError('PROTOCOL_ERROR', `the reply to ${what} is not valid: ${(error as Error).message}`, { retryable: false, cause: error }) };
    }
  };
  return {
    request(req, timeoutMs) {
      o.onRequest?.(req);
      const key = `${req.sagaId}/${req.stepId}`;
      const what = `${req.op} ${req.stepId}#${req.attempt} of ${req.sagaId}`;
      const sentAt = clock.now();
      // Refusals before anything is published: no host can see the request.
      if ((pools.get(req.worker) ?? []).length === 0) return Promise.reject(new TransportError('NO_RESPONDERS', `no host serves ${req.worker}`));
      if (chooser.chance(faults.requestTooLarge ?? 0)) {
        trace(`t=${sentAt} ${what} refused before sending: over the payload limit`);
        return Promise.reject(new TransportError('PAYLOAD_TOO_LARGE', `the ${what} request is over the payload limit`, { retryable: false, notSent: true }));
      }
      const lost = chooser.chance(faults.connectionLoss ?? 0);
      const lostAfterSending = lost && chooser.upTo(1) === 1;
      if (lost && !lostAfterSending) {
        trace(`t=${sentAt} ${what} not sent: the connection is closed`);
        return Promise.reject(new TransportError('TRANSPORT_ERROR', `the ${what} request could not be published: the connection is closed`, { notSent: true }));
      }
      if (!lost && chooser.chance(faults.noResponders ?? 0)) {
        // The server knows no subscriber yet: it answers with a 503 status after a round trip, having delivered nothing.
        const d = chooser.upTo(faults.maxDelayMs);
        trace(`t=${sentAt} no responders to ${what} (+${d} ms)`);
        return new Promise<WorkerReply>((_, reject) => later(d, () => reject(new TransportError('NO_RESPONDERS', `no responders on the ${req.op} subject of ${req.worker}`))));
      }
      // An operator's fence relies on the transport's deadline, as on NATS, which always enforces it.
      const enforcesDeadline = chooser.chance(faults.requestTimeout ?? 0) || req.op === 'fence';
      const deliver = (onReply: (r: WorkerReply) => void) => {
        const h = pick(req.worker);
        if (h === undefined) return; // every host died while the message travelled: it is lost
        void h(req).then(onReply);
      };
      return new Promise<WorkerReply>((resolve, reject) => {
        let settled = false;
        const settle = (fn: () => void) => {
          if (settled) return; // a reply after the transport gave up on the request is dropped, as NATS drops it
          settled = true;
          o.onSettled?.(req);
          fn();
        };
        if (enforcesDeadline) {
          clock.setTimeout(() => {
            if (settled) return;
            disturbed.add(key);
            trace(`t=${clock.now()} transport timeout of ${what} after ${timeoutMs} ms`);
            settle(() => reject(new SagaError('STEP_TIMED_OUT', `worker '${req.worker}' did not reply to ${req.op} within ${timeoutMs} ms`, { retryable: true })));
          }, timeoutMs);
        }
        if (lostAfterSending) {
          // Published, then the connection failed: the request may still reach a host.
          disturbed.add(key);
          const d = chooser.upTo(faults.maxDelayMs);
          trace(`t=${sentAt} connection lost after sending ${what} (+${d} ms)`);
          later(d, () => settle(() => reject(new TransportError('TRANSPORT_ERROR', `the connection failed after the ${what} request was sent`))));
        }
        // A copy may arrive late, whatever becomes of the original (a retransmission).
        if (chooser.chance(faults.duplicate)) {
          disturbed.add(key);
          const d = chooser.upTo(faults.maxDelayMs * 2);
          trace(`t=${sentAt} duplicate request ${what} (+${d} ms)`);
          later(d, () => deliver(() => {}));
        }
        if (chooser.chance(faults.drop)) {
          disturbed.add(key);
          trace(`t=${sentAt} drop request ${what}`);
          return;
        }
        later(chooser.upTo(faults.maxDelayMs), () =>
          deliver((reply) => {
            if (chooser.chance(faults.drop)) {
              disturbed.add(key);
              trace(`t=${clock.now()} drop reply to ${what}`);
              return;
            }
            const got = received(reply, what);
            later(chooser.upTo(faults.maxDelayMs), () => {
              if (clock.now() - sentAt >= timeoutMs) disturbed.add(key);
              settle(() => ('reply' in got ? resolve(got.reply) : reject(got.error)));
            });
          }),
        );
      });
    },
    serve(worker, handler): Served {
      pools.set(worker, [...(pools.get(worker) ?? []), handler]);
      return {
        stop: async () => {
          pools.set(
            worker,
            (pools.get(worker) ?? []).filter((h) => h !== handler),
          );
        },
      };
    },
    replace(worker, handler) {
      pools.set(worker, [handler]);
    },
    isServed: (worker) => (pools.get(worker) ?? []).length > 0,
    async close() {
      pools.clear();
    },
    get inFlight() {
      return inFlight;
    },
    disturbed,
  };
}

// ---------------------------------------------------------------------------
// One simulated run

/** One simulated run: the choice tape, the fault bounds and the sagas started. */
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
  /**
   * Odds, in percent, that an operator resolves a saga as soon as it parks, while the
   * faults go on and its `do`s may still run: the operator undoes by hand what the ledger
   * holds for its remaining effects and calls `runtime.resolve`; on a review it looks and
   * undoes again and resolves naming the review; on a fence failure (or a coordinator
   * crash under the call) it tries again later, a few times. Default 0.
   */
  readonly resolve?: number;
  /** The operator's own choice tape (which parked sagas it resolves, its fence timeouts and waits); it never heals. Default empty: no resolve. */
  readonly operatorTape?: readonly number[];
  /**
   * How long a coordinator's heartbeat goes unchanged before another coordinator takes its
   * sagas over, in ms (at least 40). Shorter than the fault window, a crashed coordinator's
   * sagas are recovered while the faults still go on: their steps' requests are sent again
   * to hosts that may be down, refusing or slow. Default 1_000.
   */
  readonly coordinatorLeaseMs?: number;
}

/** A property of the guarantee that a simulated run broke. */
export interface SimulationViolation {
  readonly property: string;
  readonly message: string;
}

/** What one simulated run ended with. */
export interface SimulationResult {
  readonly outcomes: readonly (SagaOutcome | undefined)[];
  readonly violations: readonly SimulationViolation[];
  /** Sagas that parked in compensation-failed before the operator retry. */
  readonly parked: number;
  /** Sagas an operator resolved while the run went on, and the reviews its resolve calls asked for. */
  readonly resolved: number;
  readonly reviews: number;
  /** What happened, one line per fault and outcome: the path of the run. */
  readonly trace: readonly string[];
}

const HORIZON_MS = 60_000;
/** The lease of simulated hosts: a slow `do` runs for several of them. */
const SIM_LEASE_MS = 200;
/** How long a crashed coordinator's heartbeat goes unchanged before its sagas are taken over, unless the scenario says. */
const SIM_COORDINATOR_LEASE_MS = 1_000;
/** How long the world runs on after the last check, so that every message and `do` still under way lands. */
const SETTLE_MS = 2_000;
/** Largest reply of simulated hosts: an oversized result is bigger. */
const SIM_MAX_PAYLOAD = 2_048;
/** How long a stuck `do` runs at least, in ms: longer than any simulated step timeout with its retries and compensations. */
const SIM_STUCK_MS = 2_000;
/** Resolve calls an operator makes for one saga before leaving it to the retry at the end. */
const OPERATOR_CALLS = 6;

/** Runs `def` on the real runtime in a simulated world and checks the ledger against the outcomes. */
export async function simulate(def: SagaDefinition, scenario: SimulationScenario): Promise<SimulationResult> {
  const coordinatorLeaseMs = scenario.coordinatorLeaseMs ?? SIM_COORDINATOR_LEASE_MS;
  if (typeof coordinatorLeaseMs !== 'number' || !Number.isFinite(coordinatorLeaseMs) || coordinatorLeaseMs < 40) throw new InvalidOptionError('coordinatorLeaseMs', `must be a number of milliseconds >= 40, got ${String(scenario.coordinatorLeaseMs)}`);
  const trace: string[] = [];
  const violations: SimulationViolation[] = [];
  const clock = createManualClock(0);
  const chooser = new Chooser(scenario.tape);
  const faults: Required<FaultProfile> = {
    hosts: 2,
    storeDelayMs: 0,
    garble: 0,
    oversize: 0,
    slow: 0,
    blackouts: 0,
    overload: 0,
    journalFail: 0,
    requestTimeout: 0,
    noResponders: 0,
    requestTooLarge: 0,
    connectionLoss: 0,
    stuck: 0,
    storeFail: 0,
    ...scenario.faults,
  };
  const sleep = (ms: number) => (ms <= 0 ? Promise.resolve() : new Promise<void>((r) => clock.setTimeout(r, ms)));
  const window = scenario.faultWindowMs ?? 2_000;
  const ledger = createLedger(() => clock.now());
  /** Every `{ ok: true }` a host gave a compensate: where the ledger stood when it was given. */
  const undoAcks: UndoAck[] = [];
  const order = orderWatch(def, ledger, () => coordinators === 1);
  const transport = simulatedTransport({ clock, chooser, faults, trace: (l) => trace.push(l), maxPayload: SIM_MAX_PAYLOAD, onRequest: (req) => order.requested(req, clock.now()), onSettled: (req) => order.settled(req) });
  const shared = memoryDedupStore({ clock });
  const journals = memorySagaStore({ clock });
  // Coordinators reach their journal over the network too: a write takes time, and one in
  // flight when its coordinator dies may still land afterwards.
  /** A journal write that may fail before it lands or after (its answer lost). */
  const journaled = async <T>(what: string, sagaId: string, write: () => T | Promise<T>): Promise<T> => {
    await sleep(chooser.upTo(faults.storeDelayMs));
    const fails = chooser.chance(faults.journalFail);
    const landsFirst = fails && chooser.upTo(1) === 1;
    if (fails && !landsFirst) {
      trace.push(`t=${clock.now()} ${sagaId}: ${what} fails before reaching the store`);
      throw new TransportError('TRANSPORT_ERROR', `simulated store: ${what} of ${sagaId} failed`);
    }
    const v = await write();
    await sleep(chooser.upTo(faults.storeDelayMs));
    if (landsFirst) {
      trace.push(`t=${clock.now()} ${sagaId}: ${what} lands, but its answer is lost`);
      throw new TransportError('TRANSPORT_ERROR', `simulated store: no answer to the ${what} of ${sagaId}`);
    }
    return v;
  };
  const store: SagaStore = {
    ...journals,
    begin: (r) => journaled('intent', r.sagaId, () => journals.begin(r)),
    write: (r, rev) => journaled('journal write', r.sagaId, () => journals.write(r, rev)),
    // A coordinator that crashes leaves its heartbeat behind: the next one takes its sagas
    // over once that heartbeat has not changed for a lease (or they are its own).
    retire: async () => undefined,
  };
  let compensateFailOdds = faults.compensateFail;
  const workerNames = [...new Set(def.steps.map((p) => p.worker))];
  const hang = () => new Promise<never>(() => {});

  // Worker hosts: several per worker, one shared dedup store; a crash loses everything but the store.
  const slots = Math.max(1, Math.min(3, faults.hosts));
  const generation: number[] = Array.from({ length: slots }, () => 0);
  /** Until when each host is cut off from the dedup store: its calls wait, so its leases lapse. */
  const cutOffUntil: number[] = Array.from({ length: slots }, () => 0);
  /** Each host's cuts, [from, until]: a claim of it made or running across one may have lapsed. */
  const cuts: [number, number][][] = Array.from({ length: slots }, () => []);
  /** When each request a host is handling arrived, by `<slot>|<key>`: its claim was made after that. */
  const arrivals = new Map<string, number[]>();
  /** Ledger positions of applies made by a `do` whose host was cut off while it ran (its claim lapsed). */
  const lapsedApplies = new Set<number>();
  /**
   * Late effects a host still owes an undo of: its `do` applied after it was cut off from
   * the store, and the key was meanwhile taken over and undone or refused. docs/guarantees.md
   * assumes such a host "lives long enough to undo its late effect" (or honours
   * `ctx.signal`, which the simulated `do`s do not): a crash of the host (or an outage of
   * every host) waits until it has undone them.
   */
  const owedUndos: { slot: number; key: string; worker: string; idem: string }[] = [];
  /** When each host's writes of a key to the dedup store failed, by `<slot>|<key>`: a failed renewal lets a running claim lapse, as a cut does. */
  const failedWrites = new Map<string, number[]>();
  const owes = (slot: number): boolean =>
    owedUndos.some((o) => {
      if (o.slot !== slot || !ledger.active(o.key)) return false;
      // Still the host's to undo while its key's record says the effect was undone or refused.
      const state = (shared.read(o.worker, o.idem) as VersionedKeyRecord).record?.state;
      return state === 'compensating' || state === 'undoPending' || state === 'compensated';
    });
  const served: (Served[] | undefined)[] = Array.from({ length: slots }, () => undefined);
  let gens = 0;
  /** Requests each host incarnation took and has not answered yet: a live host answers every one. */
  const unanswered = new Map<number, number>();
  /** Stuck `do`s still running: the world is not healed before they end. */
  let stuckDos = 0;
  /** Slow `do`s still running (several leases long): neither is the world quiet before they end, so the operator's last retry never meets one. */
  let slowDos = 0;

  /**
   * The shared store as one host sees it: a round trip takes time, a dead host's calls
   * never return, and a host cut off from the store reaches it only once the cut ends.
   */
  const viewOf = (alive: () => boolean, slot: number): DedupStore => {
    const cut = () => clock.now() < (cutOffUntil[slot] as number);
    /** Whether this write fails before it lands (the tape is read only when the fault is on). */
    const failsNow = (k: string): boolean => {
      if (faults.storeFail <= 0 || !chooser.chance(faults.storeFail)) return false;
      trace.push(`t=${clock.now()} host ${slot}: its write of ${k} to the dedup store fails`);
      const at = `${slot}|${k}`;
      failedWrites.set(at, [...(failedWrites.get(at) ?? []), clock.now()]);
      return true;
    };
    const storeDown = () => Promise.reject(new TransportError('TRANSPORT_ERROR', 'simulated dedup store: the write failed before it landed'));
    const afterCut = async () => {
      while (cut()) await sleep((cutOffUntil[slot] as number) - clock.now());
      if (!alive()) await hang();
    };
    if (faults.storeDelayMs <= 0) {
      return {
        read: (w, k) => (!alive() ? hang() : cut() ? afterCut().then(() => shared.read(w, k)) : shared.read(w, k)),
        write: (w, k, r, rev) => (!alive() ? hang() : cut() ? afterCut().then(() => (failsNow(k) ? storeDown() : shared.write(w, k, r, rev))) : failsNow(k) ? storeDown() : shared.write(w, k, r, rev)),
      };
    }
    const hop = async () => {
      await sleep(chooser.upTo(faults.storeDelayMs));
      if (!alive()) await hang();
      if (cut()) await afterCut();
    };
    return {
      async read(w: string, k: string): Promise<VersionedKeyRecord> {
        await hop();
        const v = shared.read(w, k) as VersionedKeyRecord;
        await hop();
        return v;
      },
      async write(w: string, k: string, r: KeyRecord, rev: number): Promise<number | undefined> {
        await hop();
        if (failsNow(k)) return storeDown();
        const v = shared.write(w, k, r, rev) as number | undefined;
        await hop();
        return v;
      },
    };
  };

  const startHost = (slot: number) => {
    const gen = ++gens;
    generation[slot] = gen;
    const alive = () => generation[slot] === gen;
    const workers = workerNames.map((name) =>
      defineWorker<unknown, unknown>({
        name,
        async do(_input: unknown, ctx) {
          const key = `${ctx.sagaId}/${ctx.stepId}`;
          // A host may die after the system of record took the effect but before it recorded the outcome.
          const early = (faults.hostCrashes > 0 || faults.blackouts > 0) && chooser.chance(30);
          // The claim this do runs under was made after the earliest request of its key this host is handling arrived.
          const started = Math.min(clock.now(), ...(arrivals.get(`${slot}|${key}`) ?? []));
          const apply = (how: string) => {
            const cutOff = cuts[slot]?.some(([from, until]) => from <= clock.now() && until > started) === true;
            const renewalFailed = failedWrites.get(`${slot}|${ctx.idempotencyKey}`)?.some((t) => t >= started) === true;
            const lapsed = cutOff || renewalFailed;
            if (cutOff) how += ', its host was cut off from the store while it ran: its claim may have lapsed';
            else if (renewalFailed) how += ', a write of its claim failed while it ran: its claim may have lapsed';
            trace.push(`t=${clock.now()} host ${slot} applies ${key} (do #${ctx.attempt}${how}, claim ${ctx.fencingToken})`);
            if (lapsed) {
              lapsedApplies.add(ledger.events.length);
              owedUndos.push({ slot, key, worker: name, idem: ctx.idempotencyKey });
            }
            ledger.apply(key);
          };
          if (early) apply(', before its host may die');
          const slow = chooser.chance(faults.slow);
          if (slow) slowDos++;
          if (slow && !early && chooser.chance(50)) {
            // Cut off from the store while the do runs: renewals cannot land, claims lapse, another host may take their keys over.
            cutOffUntil[slot] = Math.max(cutOffUntil[slot] as number, clock.now() + SIM_LEASE_MS * 3);
            cuts[slot]?.push([clock.now(), cutOffUntil[slot] as number]);
            trace.push(`t=${clock.now()} host ${slot} is cut off from the dedup store until t=${cutOffUntil[slot]} while do #${ctx.attempt} of ${key} runs`);
          }
          // Stuck: the saga parks while it runs (read from the tape only when the fault is on).
          const stuck = !slow && !early && faults.stuck > 0 && chooser.chance(faults.stuck);
          if (stuck) {
            stuckDos++;
            trace.push(`t=${clock.now()} host ${slot}: do #${ctx.attempt} of ${key} is stuck`);
          }
          await sleep(slow ? SIM_LEASE_MS * 3 : stuck ? SIM_STUCK_MS + chooser.upTo(1_000) : chooser.upTo(faults.maxDelayMs));
          if (stuck) stuckDos--;
          if (slow) slowDos--;
          if (!alive()) return hang();
          if (!early && chooser.chance(faults.doFail)) {
            if (chooser.chance(50)) throw new TerminalError(`simulated terminal failure of ${ctx.stepId}`);
            throw new Error(`simulated retryable failure of ${ctx.stepId}`);
          }
          apply('');
          return chooser.chance(faults.oversize) ? { applied: ctx.idempotencyKey, padding: 'x'.repeat(SIM_MAX_PAYLOAD) } : { applied: ctx.idempotencyKey };
        },
        async compensate(_input: unknown, _result: unknown, ctx) {
          const key = `${ctx.sagaId}/${ctx.stepId}`;
          const early = (faults.hostCrashes > 0 || faults.blackouts > 0) && chooser.chance(30);
          const undo = (how: string) => {
            trace.push(`t=${clock.now()} host ${slot} undoes ${key} (compensate${how}, claim ${ctx.fencingToken})`);
            ledger.undo(key);
          };
          if (early) undo(', before its host may die');
          await sleep(chooser.upTo(faults.maxDelayMs));
          if (!alive()) return hang();
          if (!early && chooser.chance(compensateFailOdds)) throw new Error(`simulated compensation failure of ${ctx.stepId}`);
          undo('');
        },
      }),
    );
    const host = createWorkerHost(workers, { dedup: viewOf(alive, slot), clock, leaseMs: SIM_LEASE_MS });
    // What a host says it serves (logs, the CLI) is what it was given.
    const serves = workers.map((w) => w.name);
    if (host.workers.join() !== serves.join()) violations.push({ property: 'host-reports-its-workers', message: `host ${slot} reports workers [${host.workers}], it serves [${serves}]` });
    const handler: WorkerHandler = (req: WorkerRequest) => {
      if (!alive()) return hang();
      if (chooser.chance(faults.overload)) {
        trace.push(`t=${clock.now()} host ${slot} at capacity: refuses ${req.op} ${req.stepId}#${req.attempt} of ${req.sagaId}`);
        return Promise.resolve({ ok: false, error: { code: 'OVERLOADED', message: `host ${slot} at capacity`, retryable: true } });
      }
      const handling = `${slot}|${req.sagaId}/${req.stepId}`;
      const arrived = clock.now();
      arrivals.set(handling, [...(arrivals.get(handling) ?? []), arrived]);
      unanswered.set(gen, (unanswered.get(gen) ?? 0) + 1);
      return host.handle(req).then((reply) => {
        unanswered.set(gen, (unanswered.get(gen) ?? 0) - 1);
        const left = (arrivals.get(handling) ?? []).slice();
        left.splice(left.indexOf(arrived), 1);
        if (left.length > 0) arrivals.set(handling, left);
        else arrivals.delete(handling);
        if (req.op === 'compensate' && reply.ok) undoAcks.push({ key: `${req.sagaId}/${req.stepId}`, seq: ledger.events.length, at: clock.now(), host: slot });
        trace.push(`t=${clock.now()} host ${slot} answers ${req.op} ${req.stepId}#${req.attempt} of ${req.sagaId}: ${reply.ok ? 'ok' : reply.error.code}`);
        return reply;
      });
    };
    served[slot] = workerNames.map((name) => transport.serve(name, handler) as Served);
  };
  const killHost = (slot: number) => {
    generation[slot] = -1;
    for (const s of served[slot] ?? []) void s.stop();
    served[slot] = undefined;
  };
  for (let i = 0; i < slots; i++) startHost(i);

  const random = () => (chooser.next() % 1000) / 1000;
  let coordinators = 0;
  const newRuntime = () => {
    const made = createRuntime({ transport, store, dedup: shared, clock, random, sagas: [def], ownership: { id: `coordinator-${coordinators++}`, leaseMs: coordinatorLeaseMs } });
    made.on('step', order.step);
    return made;
  };
  let runtime: Runtime = newRuntime();

  const n = scenario.sagas ?? 1;
  let ids = Array.from({ length: n }, (_, i) => `saga-${i}`);
  type Crash = { at: number; what: 'host' | 'coordinator' | 'blackout'; slot: number; downMs: number; deferred?: boolean };
  const crashes: Crash[] = [];
  for (let i = 0; i < faults.hostCrashes; i++) crashes.push({ at: chooser.upTo(window), what: 'host', slot: chooser.upTo(slots - 1), downMs: chooser.upTo(300) });
  for (let i = 0; i < faults.coordinatorCrashes; i++) crashes.push({ at: chooser.upTo(window), what: 'coordinator', slot: 0, downMs: 0 });
  for (let i = 0; i < faults.blackouts; i++) crashes.push({ at: chooser.upTo(window), what: 'blackout', slot: 0, downMs: 50 + chooser.upTo(400) });
  crashes.sort((a, b) => a.at - b.at);
  const restarts: { at: number; slot: number }[] = [];

  const neverStarted: string[] = [];
  const sagaInput = (id: string): unknown => (scenario.input ? scenario.input(id) : { n: id });
  for (const id of ids) {
    void runtime.run(def, sagaInput(id), { sagaId: id }).catch(async (e: unknown) => {
      // A coordinator that crashes while run() waits rejects it, and run() refuses a saga whose
      // workers nobody serves (every host down); the saga goes on only if its intent was journaled.
      // A journal that cannot be written stops the saga in its coordinator (and one that
      // another coordinator took over is driven there): it must still end.
      const code = (e as { code?: string }).code;
      if (code === 'JOURNAL_UNAVAILABLE' || code === 'SAGA_FENCED') trace.push(`t=${clock.now()} ${id}: run() rejects: ${String(e)}`);
      if (code === 'RUNTIME_CLOSED' || code === 'WORKER_NOT_HOSTED' || code === 'JOURNAL_UNAVAILABLE' || code === 'SAGA_FENCED') {
        if ((await journals.get(id)) === undefined) {
          trace.push(`t=${clock.now()} ${id} never started: ${code === 'RUNTIME_CLOSED' ? 'its coordinator crashed before journaling it' : code === 'WORKER_NOT_HOSTED' ? 'no host served its workers' : 'its intent was not written'}`);
          ids = ids.filter((x) => x !== id);
          neverStarted.push(id);
        }
        return;
      }
      violations.push({ property: 'run-accepts-the-saga', message: String(e) });
    });
  }

  /** A parked saga's outcome, as its journal holds it (the dead letter an operator reads). */
  const parkedOutcome = (rec: SagaRecord): SagaOutcome | undefined => {
    // A journaled snapshot holds the steps by id.
    const snap = rec.snapshot as { value?: string; context?: Omit<SagaContext, 'steps'> & { steps: Record<string, StepState> } } | undefined;
    return snap?.value === 'compensationFailed' && snap.context ? outcomeOf(def, { ...snap.context, steps: fromPersistedSteps(def, snap.context.steps) }, 'compensationFailed') : undefined;
  };
  const settledAll = async () => {
    const out: (SagaOutcome | undefined)[] = [];
    for (const id of ids) {
      const rec = await store.get(id);
      if (rec?.outcome !== undefined) out.push(rec.outcome);
      else if (rec?.status === 'parked') out.push(parkedOutcome(rec));
      else out.push(undefined);
    }
    return out;
  };

  // The operator: resolves a share of the sagas as soon as they park, while the run goes on.
  const operatorChooser = new Chooser(scenario.operatorTape ?? []);
  const resolveOdds = scenario.resolve ?? 0;
  let operatorOn = resolveOdds > 0;
  let operatorBusy = 0;
  let reviews = 0;
  /** Sagas the operator has seen parked (it decides once for each). */
  const operatorSeen = new Set<string>();
  const resolutions: Resolution[] = [];
  /**
   * Looks at the ledger, undoes by hand each remaining effect it holds, resolves; on a
   * review looks and undoes again and resolves naming the review; on any other refusal
   * (a fence failed, its coordinator crashed under the call) waits and tries again.
   */
  const resolveAsOperator = async (id: string) => {
    const keys = new Set<string>();
    let reviewed: string | undefined;
    let ended: number | undefined;
    for (let call = 0; call < OPERATOR_CALLS; call++) {
      const rec = await journals.get(id);
      const parked = rec?.status === 'parked' && rec.outcome === undefined ? parkedOutcome(rec) : undefined;
      if (parked?.status !== 'compensation-failed') break;
      for (const e of parked.remaining) {
        const key = `${id}/${e.stepId}`;
        keys.add(key);
        if (!ledger.active(key)) continue;
        trace.push(`t=${clock.now()} operator undoes ${key} by hand`);
        ledger.undo(key, 'operator');
      }
      const fenceTimeoutMs = operatorChooser.chance(50) ? 50 + operatorChooser.upTo(950) : undefined;
      trace.push(`t=${clock.now()} operator resolves ${id}${reviewed !== undefined ? ' (reviewed)' : ''}${fenceTimeoutMs !== undefined ? `, fences wait ${fenceTimeoutMs} ms` : ''}`);
      try {
        const o = await runtime.resolve(id, { note: 'simulated operator: undone by hand', ...(reviewed !== undefined ? { reviewed } : {}), ...(fenceTimeoutMs !== undefined ? { fenceTimeoutMs } : {}) });
        trace.push(`t=${clock.now()} operator resolved ${id}: ${o.status}`);
        ended = ledger.events.length;
        break;
      } catch (error) {
        const code = (error as { code?: string }).code;
        trace.push(`t=${clock.now()} operator's resolve of ${id} refused: ${code ?? String(error)}`);
        if (error instanceof ResolveError && code === 'RESOLVE_NEEDS_REVIEW') {
          reviews++;
          reviewed = error.review;
          continue;
        }
        // Neither a review nor a failed fence: this call may have ended the saga all the same
        // (its journal write landed, the answer was lost).
        if (code !== 'FENCE_FAILED') ended = ledger.events.length;
        await sleep(200 + operatorChooser.upTo(800));
      }
    }
    if (ended !== undefined) resolutions.push({ sagaId: id, ended, keys });
  };
  const operatorLooks = async () => {
    if (!operatorOn) return;
    for (const id of ids) {
      if (operatorSeen.has(id)) continue;
      const rec = await journals.get(id);
      if (rec?.status !== 'parked' || rec.outcome !== undefined) continue;
      operatorSeen.add(id);
      if (!operatorChooser.chance(resolveOdds)) continue;
      operatorBusy++;
      void resolveAsOperator(id)
        .catch((e: unknown) => violations.push({ property: 'operator-can-resolve', message: `resolving ${id}: ${String(e)}` }))
        .finally(() => operatorBusy--);
    }
  };
  const quiet = async () => {
    const outs = await settledAll();
    return outs.every((x) => x !== undefined) && transport.inFlight === 0 && operatorBusy === 0 && stuckDos === 0 && slowDos === 0;
  };
  const crashCoordinator = async () => {
    // The coordinator stops at once; a call of it still under way (a journal read of a
    // takeover) finishes on the clock, which goes on meanwhile.
    let closed = false;
    const closing = runtime.close().finally(() => (closed = true));
    while (!closed) await clock.advance(5);
    await closing;
    runtime = newRuntime();
    // Recovery reads and writes journals, which takes simulated time: it runs while the clock moves.
    void runtime.recover().catch((e: unknown) => {
      // Another crash closed this coordinator before it finished recovering: the next one will.
      if ((e as { code?: string }).code !== 'RUNTIME_CLOSED') violations.push({ property: 'recover-succeeds', message: String(e) });
    });
  };
  const drive = async (until: number) => {
    while (clock.now() < until) {
      const restart = restarts.find((r) => r.at <= clock.now());
      if (restart !== undefined) {
        restarts.splice(restarts.indexOf(restart), 1);
        trace.push(`t=${clock.now()} worker host ${restart.slot} comes back`);
        startHost(restart.slot);
        continue;
      }
      const next = crashes[0];
      if (next !== undefined && next.at <= clock.now()) {
        crashes.shift();
        // A host that owes the undo of a late effect lives until it has undone it.
        const owing = next.what === 'host' ? (owes(next.slot) ? [next.slot] : []) : next.what === 'blackout' ? Array.from({ length: slots }, (_, s) => s).filter(owes) : [];
        if (owing.length > 0) {
          if (!next.deferred) trace.push(`t=${clock.now()} ${next.what === 'host' ? `worker host ${next.slot} crashes` : 'every worker host crashes'} once host${owing.length > 1 ? 's' : ''} ${owing.join(', ')} ha${owing.length > 1 ? 've' : 's'} undone a late effect`);
          crashes.push({ ...next, at: clock.now() + 25, deferred: true });
          crashes.sort((x, y) => x.at - y.at);
          await clock.advance(25);
          continue;
        }
        if (next.what === 'host') {
          if (generation[next.slot] === -1) continue;
          trace.push(`t=${clock.now()} worker host ${next.slot} crashes, back in ${next.downMs} ms`);
          killHost(next.slot);
          restarts.push({ at: clock.now() + next.downMs, slot: next.slot });
        } else if (next.what === 'coordinator') {
          trace.push(`t=${clock.now()} coordinator crashes and a new one recovers`);
          await crashCoordinator();
        } else {
          trace.push(`t=${clock.now()} every worker host and the coordinator crash; hosts back in ${next.downMs} ms`);
          for (let s = 0; s < slots; s++) {
            if (generation[s] === -1) continue;
            killHost(s);
            restarts.push({ at: clock.now() + next.downMs, slot: s });
          }
          await crashCoordinator();
        }
        continue;
      }
      await clock.advance(clock.now() < window ? 25 : 100);
      await operatorLooks();
      if (clock.now() >= window && crashes.length === 0 && restarts.length === 0 && (await quiet())) return;
    }
  };

  await drive(window);
  chooser.healed = true;
  // No final recover(): the live coordinator must finish every saga on its own, taking
  // over those of the coordinators that died (a write of a dead one may land after its
  // successor recovered) and those it stopped itself when its journal failed.
  await drive(HORIZON_MS);
  // Every fence has a deadline: a resolve call answers, and the operator is done by now.
  if (operatorBusy > 0) violations.push({ property: 'operator-resolve-answers', message: `an operator's resolve call has not answered at t=${clock.now()} ms` });
  let outcomes = await settledAll();
  check(def, ids, sagaInput, outcomes, ledger, order, violations, 'after the faults', clock.now());
  for (const [i, o] of outcomes.entries()) {
    if (o !== undefined) continue;
    const st = await runtime.status(ids[i] as string);
    trace.push(`stuck ${ids[i]}: ${st === undefined ? 'unknown to the runtime' : `machine ${st.state}, steps ${JSON.stringify(st.steps)}`}`);
  }
  for (const id of neverStarted) {
    const active = def.steps.filter((p) => ledger.active(`${id}/${p.id}`)).map((p) => p.id);
    if (active.length > 0) violations.push({ property: 'a-saga-never-started-has-no-effect', message: `saga ${id} was never started but the systems of record hold [${active}]` });
  }

  // An operator retries every parked saga in a healed world: it must then end cleanly.
  // What is still parked now is left to the operator's retry in a healed world.
  operatorOn = false;
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
    check(def, ids, sagaInput, outcomes, ledger, order, violations, 'after the operator retry', clock.now());
  }
  // Whatever is still under way (a slow `do`, a late duplicate, a reply no one waits for)
  // arrives now: an ended saga's effects must not change any more.
  await clock.advance(SETTLE_MS);
  check(def, ids, sagaInput, outcomes, ledger, order, violations, `${SETTLE_MS} ms after the end, every message in flight delivered`, clock.now());
  // A host that lives answers every request it took (a dead one's calls to the store never return).
  generation.forEach((gen, slot) => {
    const open = gen === -1 ? 0 : (unanswered.get(gen) ?? 0);
    if (open > 0) violations.push({ property: 'every-request-answered', message: `worker host ${slot} took ${open} request(s) it has not answered at t=${clock.now()} ms` });
  });
  checkUndoOrder(def, ledger, violations);
  // The finer order of each compensation order, read from what one coordinator did.
  if (order.oneCoordinator()) violations.push(...order.check(ids, outcomes, lapsedApplies));
  checkAcknowledgedUndos(ledger, undoAcks, lapsedApplies, violations);
  checkResolvedStayHandled(ids, outcomes, ledger, resolutions, lapsedApplies, violations);
  await runtime.close();
  for (const o of outcomes) trace.push(`outcome ${o?.sagaId}: ${o?.status ?? 'none'}${o?.status === 'compensated' || o?.status === 'committed' ? (o.resolvedByOperator.length > 0 ? ` (resolved by the operator: [${o.resolvedByOperator}])` : '') : ''}`);
  const resolved = outcomes.filter((o) => (o?.status === 'compensated' || o?.status === 'committed') && o.resolvedByOperator.length > 0).length;
  return { outcomes, violations, trace, parked: parked.length, resolved, reviews };
}

/**
 * The steps an outcome says the join keeps: a committed saga's results; for a saga parked
 * after deciding to commit, every step neither compensated nor listed remaining; else none.
 */
function keptBy(def: SagaDefinition, o: SagaOutcome): string[] {
  if (o.status === 'committed') return Object.keys(o.results);
  if (o.status !== 'compensation-failed' || o.decision !== 'commit') return [];
  return def.steps.filter((p) => !o.compensated.includes(p.id) && !o.remaining.some((r) => r.stepId === p.id)).map((p) => p.id);
}

/** What the coordinators of a run did, as the compensation orders' oracle reads it. */
interface OrderWatch {
  /** Each request, as the transport sees it made. */
  requested(req: WorkerRequest, now: number): void;
  /** Each request settled on the coordinator's side. */
  settled(req: WorkerRequest): void;
  /** Each step event of a coordinator. */
  step(e: StepEvent): void;
  /** Whether any coordinator ever sent a compensate for this key (`<sagaId>/<stepId>`). */
  undoSent(key: string): boolean;
  /** Whether the run had one coordinator from start to end. */
  oneCoordinator(): boolean;
  /** The order violations of a run with one coordinator, given the sagas' outcomes. */
  check(ids: readonly string[], outcomes: readonly (SagaOutcome | undefined)[], lapsed: ReadonlySet<number>): SimulationViolation[];
}

/**
 * The oracle of the compensation orders (docs/patterns.md), read from the world and from
 * the order in which the coordinator reported its steps' `do` succeeding (its step events
 * `committed` and `rejected`), never from its plan of what to undo:
 * - `sequential`: when a compensate goes out for a step whose success was reported, no
 *   other step of the saga that the join does not keep holds an effect in the systems of
 *   record if its success was reported later, or never (`sequential-undo-last-completed-first`);
 * - `parallel`: every step's first compensate of a saga goes out before any compensate
 *   of the saga is answered (`parallel-undoes-at-once`).
 * A run where a coordinator took over from another is not judged (its successor knows only
 * the journal); the guarantee's own checks judge it.
 */
function orderWatch(def: SagaDefinition, ledger: Ledger, oneCoordinator: () => boolean): OrderWatch {
  const completed = new Map<string, number>();
  /** Per key, when its first compensate went out: how many compensates of its saga had been answered by then. */
  const firstUndo = new Map<string, number>();
  const undosAnswered = new Map<string, number>();
  const suspects: { sagaId: string; stepId: string; at: number; blockers: { stepId: string; applied: number }[] }[] = [];
  const lastApply = (key: string): number => {
    for (let i = ledger.events.length - 1; i >= 0; i--) if ((ledger.events[i] as LedgerEvent).key === key && (ledger.events[i] as LedgerEvent).kind === 'apply') return i;
    return -1;
  };
  return {
    requested(req, now) {
      if (req.op !== 'compensate') return;
      const key = `${req.sagaId}/${req.stepId}`;
      if (!firstUndo.has(key)) firstUndo.set(key, undosAnswered.get(req.sagaId) ?? 0);
      const mine = completed.get(key);
      if (def.compensationOrder !== 'sequential' || mine === undefined) return;
      const blockers = def.steps
        .filter((p) => p.id !== req.stepId && ledger.active(`${req.sagaId}/${p.id}`))
        .filter((p) => (completed.get(`${req.sagaId}/${p.id}`) ?? Infinity) > mine)
        .map((p) => ({ stepId: p.id, applied: lastApply(`${req.sagaId}/${p.id}`) }));
      if (blockers.length > 0) suspects.push({ sagaId: req.sagaId, stepId: req.stepId, at: now, blockers });
    },
    settled(req) {
      if (req.op === 'compensate') undosAnswered.set(req.sagaId, (undosAnswered.get(req.sagaId) ?? 0) + 1);
    },
    step(e) {
      const key = `${e.sagaId}/${e.stepId}`;
      if ((e.status === 'committed' || e.status === 'rejected') && !completed.has(key)) completed.set(key, completed.size + 1);
    },
    undoSent: (key) => firstUndo.has(key),
    oneCoordinator,
    check(ids, outcomes, lapsed) {
      const out: SimulationViolation[] = [];
      const kept = new Map<string, ReadonlySet<string>>();
      outcomes.forEach((o, i) => {
        if (o !== undefined) kept.set(ids[i] as string, new Set(keptBy(def, o)));
      });
      const reported = new Set<string>();
      for (const s of suspects) {
        // A step the join keeps is never undone; an effect a host applied under a lapsed claim is that host's to undo.
        const holding = s.blockers.filter((b) => !(kept.get(s.sagaId)?.has(b.stepId) ?? false) && !lapsed.has(b.applied)).map((b) => b.stepId);
        if (holding.length === 0 || reported.has(s.sagaId)) continue;
        reported.add(s.sagaId);
        out.push({ property: 'sequential-undo-last-completed-first', message: `saga ${s.sagaId}: the compensate of step ${s.stepId} went out at t=${s.at} ms while [${holding}], reported done later or never, still held their effects` });
      }
      if (def.compensationOrder === 'parallel') {
        for (const id of ids) {
          const waited = def.steps.filter((p) => (firstUndo.get(`${id}/${p.id}`) ?? 0) > 0).map((p) => p.id);
          if (waited.length > 0) out.push({ property: 'parallel-undoes-at-once', message: `saga ${id}: the first compensates of [${waited}] went out after another compensate of the saga was answered` });
        }
      }
      return out;
    },
  };
}

/** Whether the undo that last removed a key's effect was an operator's, by hand. */
function undoneByHand(ledger: Ledger, key: string): boolean {
  for (let i = ledger.events.length - 1; i >= 0; i--) {
    const e = ledger.events[i] as LedgerEvent;
    if (e.key === key && e.kind === 'undo' && e.wasActive) return e.byOperator === true;
  }
  return false;
}

/** Whether a step's gate accepts its result in `results`, its input derived as the runtime does. */
function gateSays(p: StepPlan, sagaInput: unknown, results: Readonly<Record<string, unknown>>): boolean {
  const after: Record<string, unknown> = {};
  for (const d of p.after) after[d] = results[d];
  return gateAccepts(p.gate as NonNullable<StepPlan['gate']>, results[p.id], () => p.input(sagaInput, after));
}

/** How many steps a committed saga keeps, from its join policy: all of them, one (any), or n (quorum). */
function joinSize(def: SagaDefinition): number {
  return def.join.kind === 'all' ? def.steps.length : def.join.kind === 'any' ? 1 : def.join.n;
}

function check(
  def: SagaDefinition,
  ids: readonly string[],
  sagaInput: (sagaId: string) => unknown,
  outcomes: readonly (SagaOutcome | undefined)[],
  ledger: Ledger,
  order: OrderWatch,
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
      // How many steps a committed saga keeps comes from its join policy alone.
      if (kept.length !== joinSize(def)) say('committed-keeps-the-join', `committed keeping [${kept}], but join ${def.join.kind} keeps exactly ${joinSize(def)} step(s)`);
      if (active.slice().sort().join() !== kept.join()) say('committed-has-each-kept-effect-once', `committed keeping [${kept}] but the systems of record hold [${active}]`);
      for (const p of def.steps) if ((ledger.applies(keys.get(p.id) as string) ?? 0) > 1 && kept.includes(p.id)) say('effect-applied-once', `applied step ${p.id} ${ledger.applies(keys.get(p.id) as string)} times`);
      // A supervisor gate is asked here, from the definition (the step's input derived again
      // from the saga's input and the results it ran after): a result it rejects is never kept.
      for (const k of kept) {
        const p = def.stepsById.get(k);
        if (p?.gate === undefined) continue;
        if (!gateSays(p, sagaInput(id), o.results)) say('kept-results-pass-their-gates', `keeps step ${k} with result ${JSON.stringify(o.results[k])}, which its gate rejects`);
      }
    } else if (o.status === 'compensated') {
      if (active.length > 0) say('compensated-has-no-effect', `is compensated but the systems of record hold [${active}]`);
    } else {
      const remaining = o.remaining.map((r) => r.stepId);
      // With decision commit, the steps the join keeps stay, by design.
      const kept = keptBy(def, o);
      const missing = active.filter((s) => !remaining.includes(s) && !kept.includes(s));
      if (missing.length > 0) say('compensation-failed-lists-every-effect', `lists remaining [${remaining}] but the systems of record also hold [${missing}]`);
      // The effects it does not list are the ones the join keeps: exactly as many as its policy says.
      const unlisted = active.filter((s) => !remaining.includes(s));
      if (o.decision === 'commit' && unlisted.length !== joinSize(def)) {
        say('compensation-failed-lists-every-effect', `decided to commit, lists remaining [${remaining}], and the systems of record hold [${unlisted}] besides, but join ${def.join.kind} keeps exactly ${joinSize(def)} step(s)`);
      }
      // Listing a step that left no effect is conservative (an in-doubt step), not unsafe: the operator
      // retry below (in a healed world) must then end the saga with no effect at all. An entry not
      // marked in doubt tells the operator the effect is certainly there, with everything delivered.
      // (An effect the operator undid by hand while the saga stayed parked, its resolve
      // refused, is gone without the saga's knowing: not the saga's claim to check.)
      const gone = o.remaining.filter((r) => !r.inDoubt && !active.includes(r.stepId) && !undoneByHand(ledger, keys.get(r.stepId) as string)).map((r) => r.stepId);
      if (gone.length > 0) say('in-doubt-when-unsure', `lists [${gone}] as certainly holding their effects, but the systems of record do not hold them`);
      // An effect remains either because its own undo gave up (after at least one attempt)
      // or because it waits: under `reverse`, behind the undo of a step that ran after it,
      // which remains too; under `sequential`, its undo never went out (one coordinator
      // knows; a successor may not know of an undo its predecessor sent); under `parallel`,
      // no undo waits.
      for (const r of o.remaining) {
        const behind = def.compensationOrder === 'reverse' ? (def.stepsById.get(r.stepId)?.dependents ?? []).filter((d) => remaining.includes(d)) : [];
        const never = def.compensationOrder === 'sequential' && !order.undoSent(keys.get(r.stepId) as string);
        const why = behind.length > 0 || never ? 'blocked' : 'compensation-failed';
        const either = def.compensationOrder === 'sequential' && !order.oneCoordinator();
        if (r.why !== why && !either) say('remaining-says-why', `lists step ${r.stepId} as '${r.why}', but ${behind.length > 0 ? `it waits behind [${behind}]` : never ? 'no undo of it was ever sent' : 'nothing it waits for remains'}`);
        if (r.why === 'compensation-failed' && r.attempts < 1) say('remaining-counts-attempts', `lists step ${r.stepId} as a failed undo after ${r.attempts} attempts`);
      }
    }
    // A failure not in doubt says its step left no effect: no request of it ever applied.
    if (o.status !== 'committed') {
      const applied = o.failures.filter((f) => !f.inDoubt && ledger.applies(keys.get(f.stepId) as string) > 0).map((f) => f.stepId);
      if (applied.length > 0) say('failure-in-doubt-when-unsure', `reports failures of [${applied}] as leaving no effect, but the systems of record applied them`);
    }
  });
}

/** An operator's resolve call that may have ended a saga: the ledger's length when the call answered, and the keys the operator looked at. */
interface Resolution {
  readonly sagaId: string;
  readonly ended: number;
  readonly keys: ReadonlySet<string>;
}

/**
 * What an operator's resolve promises, read from the world alone: the ledger's history,
 * the operator's record of its calls and the faults planted, once every message in flight
 * has landed and every running `do` has ended. A resolve declares handled what the
 * operator saw and undid by hand; so once a resolve has ended a saga, no key the operator
 * looked at holds an effect, then or ever after: none when the call answered, and no `do`
 * applies afterwards (in particular, no effect the operator undid by hand comes back). A
 * `do` may land between the operator's look and the end, if something undoes it before
 * the end (a compensate still on its way, say). The one exception is the one of
 * `checkAcknowledgedUndos`: a `do` whose host was cut off from the store while it ran,
 * whose effect must then be undone again. The call that may have ended a saga is the
 * operator's last one answered with an outcome, or refused neither for a review nor for a
 * failed fence (its journal write may have landed); whether one did, the saga's outcome
 * (`resolvedByOperator`).
 */
function checkResolvedStayHandled(
  ids: readonly string[],
  outcomes: readonly (SagaOutcome | undefined)[],
  ledger: Ledger,
  resolutions: readonly Resolution[],
  lapsed: ReadonlySet<number>,
  violations: SimulationViolation[],
): void {
  outcomes.forEach((o, i) => {
    const id = ids[i] as string;
    if (o === undefined || o.status === 'compensation-failed' || o.resolvedByOperator.length === 0) return;
    // The last call that may have ended it: the latest moment, the weakest claim.
    const r = resolutions.filter((x) => x.sagaId === id).at(-1);
    if (r === undefined) {
      violations.push({ property: 'resolved-effect-stays-handled', message: `saga ${id} names [${o.resolvedByOperator}] resolved by an operator, but no operator's resolve could have ended it` });
      return;
    }
    for (const key of r.keys) {
      const history = ledger.events.filter((e) => e.key === key);
      const before = history.filter((e) => e.seq < r.ended).at(-1);
      const heldThen = before?.kind === 'apply' && !lapsed.has(before.seq);
      const late = history.find((e) => e.seq >= r.ended && e.kind === 'apply' && !lapsed.has(e.seq));
      const lapsedLeft = history.at(-1)?.kind === 'apply' && history.some((e) => lapsed.has(e.seq) && (e.seq >= r.ended || e === before));
      if (!heldThen && late === undefined && !lapsedLeft) continue;
      const byHand = history.some((e) => e.seq < r.ended && e.kind === 'undo' && e.byOperator === true) ? ' (the operator had undone it by hand)' : '';
      violations.push({
        property: 'resolved-effect-stays-handled',
        message: heldThen
          ? `saga ${id} was resolved (${o.status}) while the systems of record held ${key}, applied at t=${before.at} ms${byHand}`
          : late !== undefined
            ? `saga ${id} was resolved (${o.status}), then a do applied ${key} at t=${late.at} ms${byHand}`
            : `saga ${id} was resolved (${o.status}); a do whose claim lapsed applied ${key} and nothing undid it again`,
      });
    }
  });
}

/** A host answered a compensate of `key` with `{ ok: true }` when the ledger held `seq` events. */
interface UndoAck {
  readonly key: string;
  readonly seq: number;
  readonly at: number;
  readonly host: number;
}

/**
 * An acknowledged undo, read from the world alone: the ledger's history, the answers
 * hosts gave, and the faults planted. Once a host has answered a compensate of a key with
 * `{ ok: true }`, the key's effect is not in the systems of record then, and no `do` of the
 * key applies afterwards (checked once every message in flight has landed and every
 * running `do` has ended): a compensate never answers while a `do` of its key may still
 * apply. One exception, planted on purpose: a `do` whose host was cut off from the store
 * while it ran lost its claim without knowing, and may apply after another host undid the
 * key; its effect must then be undone again, so the key's last event is an undo.
 */
function checkAcknowledgedUndos(ledger: Ledger, acks: readonly UndoAck[], lapsed: ReadonlySet<number>, violations: SimulationViolation[]): void {
  const reported = new Set<string>();
  for (const ack of acks) {
    if (reported.has(ack.key)) continue;
    const history = ledger.events.filter((e) => e.key === ack.key);
    // The key's last apply or undo before the answer says whether its effect was there.
    const before = history.filter((e) => e.seq < ack.seq).at(-1);
    const heldThen = before?.kind === 'apply' && !lapsed.has(before.seq);
    const later = history.find((e) => e.seq >= ack.seq && e.kind === 'apply' && !lapsed.has(e.seq));
    const lapsedLeft = history.at(-1)?.kind === 'apply' && history.some((e) => lapsed.has(e.seq) && (e.seq >= ack.seq || e === before));
    if (!heldThen && later === undefined && !lapsedLeft) continue;
    reported.add(ack.key);
    violations.push({
      property: 'acknowledged-undo-stays-undone',
      message: heldThen
        ? `host ${ack.host} acknowledged the undo of ${ack.key} at t=${ack.at} ms while the systems of record held its effect`
        : later !== undefined
          ? `host ${ack.host} acknowledged the undo of ${ack.key} at t=${ack.at} ms, then a do applied it at t=${later.at} ms`
          : `host ${ack.host} acknowledged the undo of ${ack.key} at t=${ack.at} ms; a do whose claim lapsed applied it afterwards and nothing undid it again`,
    });
  }
}

/**
 * The undo order, read from the world alone: the ledger's history and the definition's
 * `after` edges. Under the `reverse` and `sequential` orders, a step's compensation may
 * run only once no step that runs after it (one naming it in `after`) holds an effect in
 * the systems of record. (`parallel` undoes in any order; the model check holds the
 * finer properties of each order.)
 */
function checkUndoOrder(def: SagaDefinition, ledger: Ledger, violations: SimulationViolation[]): void {
  if (def.compensationOrder === 'parallel') return;
  const dependentsOf = new Map(def.steps.map((p) => [p.id, def.steps.filter((d) => d.after.includes(p.id)).map((d) => d.id)]));
  const active = new Set<string>();
  const reported = new Set<string>();
  for (const e of ledger.events) {
    const cut = e.key.lastIndexOf('/');
    const sagaId = e.key.slice(0, cut);
    const stepId = e.key.slice(cut + 1);
    // An operator undoing by hand is not a compensation: it may undo in any order.
    if (e.kind === 'undo' && e.byOperator !== true && !reported.has(sagaId)) {
      const holding = (dependentsOf.get(stepId) ?? []).filter((d) => active.has(`${sagaId}/${d}`));
      if (holding.length > 0) {
        reported.add(sagaId);
        violations.push({
          property: 'undo-in-dependency-order',
          message: `saga ${sagaId}: step ${stepId} was undone at t=${e.at} ms while [${holding}], which run after it, still held their effect`,
        });
      }
    }
    if (e.kind === 'apply') active.add(e.key);
    else active.delete(e.key);
  }
}
