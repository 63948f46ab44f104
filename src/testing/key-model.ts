/**
 * Model checking of one idempotency key on the topology users deploy.
 *
 * - `exploreKeyMachine`: the key machine alone under any sequence of requests, worker
 *   completions and expired claims, with an effect counter as the world.
 * - `exploreProduct`: one step of the real saga machine (a coordinator) × one key served
 *   by one or two worker hosts that share a compare-and-set store, each request handled
 *   by the real host protocol (machines/host-protocol.ts) one store operation at a time,
 *   so requests on different hosts interleave between their reads and writes. The
 *   channel loses, duplicates, reorders, garbles and oversizes messages, and the
 *   transport's own deadline may pass while a request or its reply is in flight; a host's
 *   lease may pass while its user code runs (it could not renew), so another host takes
 *   the key over while the first one's do still runs and may still apply; hosts crash
 *   (a store write on its way may still land, user code running may or may not have
 *   taken effect, the dead host's claim holds until its lease passes) and restart with
 *   nothing but the shared store; the coordinator crashes and a new one recovers from
 *   the last journal write that landed; an operator retries a parked saga, or resolves
 *   it by undoing by hand what the system of record holds. The world is the effect of
 *   the key in its system of record: it must be there once for a committed step, gone
 *   for a compensated one, listed when the saga parks, and gone for good once an
 *   operator resolved it. The oracle reads only the world, the definition and what the
 *   saga reports, never the saga's own bookkeeping.
 */
import { replyToEvent } from '../actors/worker-actor.ts';
import type { WorkerActorEvent } from '../actors/worker-actor.ts';
import type { ErrorInfo } from '../errors.ts';
import { InvalidOptionError, SagaDefinitionError, SagaError, TransportError } from '../errors.ts';
import { startRequest, stepRequest } from '../machines/host-protocol.ts';
import type { HostCommand, HostEvent, RequestSetup, RequestState } from '../machines/host-protocol.ts';
import { newKeyRecord, stepKey } from '../machines/key-machine.ts';
import type { KeyAction, KeyEvent } from '../machines/key-machine.ts';
import { fenceOfReply, fenceVerdict, reviewKey } from '../machines/fence-verdict.ts';
import { outcomeOf } from '../machines/saga-logic.ts';
import type { MachineStateName, SagaCommand, SagaContext, SagaEvent, StepState } from '../machines/saga-logic.ts';
import { createSagaMachine } from '../machines/saga-machine.ts';
import { pureStepper } from '../machines/pure-transition.ts';
import { parseReply } from '../transport/protocol.ts';
import { encodeReply } from '../transport/nats/wire.ts';
import type { KeyRecord, SagaDefinition, WorkerOp, WorkerReply, WorkerRequest } from '../types.ts';
import type { ModelViolation } from './model.ts';

/** The commands of the host protocol (src/machines/host-protocol.ts). */
const HOST_COMMANDS: ReadonlySet<string> = new Set<HostCommand['type']>(['read', 'write', 'wait', 'run', 'abort', 'release', 'reply']);
const RETRYABLE: ErrorInfo = { code: 'WORKER_ERROR', message: 'model: retryable', retryable: true };
const TERMINAL: ErrorInfo = { code: 'WORKER_ERROR', message: 'model: terminal', retryable: false };
/** The errors the model's user code fails with, as a host's reply carries them. */
const USER_ERRORS: ReadonlySet<string> = new Set([JSON.stringify(RETRYABLE), JSON.stringify(TERMINAL)]);
const COMP_ERR: ErrorInfo = { code: 'COMPENSATION_FAILED', message: 'model: compensation failed', retryable: true };
/**
 * The codes a host may answer and their `retryable` flag, from the table of docs/protocol.md
 * (section 6); `WORKER_ERROR` carries the worker's own choice.
 */
const HOST_CODES: Readonly<Record<string, boolean | 'worker'>> = {
  PROTOCOL_ERROR: false,
  UNKNOWN_WORKER: false,
  PAYLOAD_TOO_LARGE: false,
  KEY_CONFLICT: false,
  OVERLOADED: true,
  TRANSPORT_ERROR: true,
  WORKER_ERROR: 'worker',
  COMPENSATED: false,
  RESULT_NOT_SERIALIZABLE: false,
  RESULT_TOO_LARGE: false,
  IN_PROGRESS: true,
  OUTCOME_UNKNOWN: true,
  COMPENSATION_FAILED: true,
};

/** What `exploreKeyMachine` or `exploreProduct` explored and found. */
export interface KeyModelReport {
  readonly states: number;
  readonly transitions: number;
  readonly paths: number;
  readonly violations: readonly ModelViolation[];
  readonly truncated: boolean;
}

// ---------------------------------------------------------------------------
// Generic BFS with parent pointers

interface Edge<S> {
  label: string;
  next: S;
  bad: [string, string][];
}

function bfs<S>(
  start: S,
  keyOf: (s: S) => string,
  edges: (s: S) => Edge<S>[],
  check: (s: S) => [string, string][],
  maxStates = 2_000_000,
  ignore: readonly string[] = [],
  observe?: (s: S) => void,
): KeyModelReport {
  /** Every state reached, with how; a state's world is dropped once expanded (paths need only the links). */
  const seen = new Map<string, { s: S | undefined; parent: string | undefined; via: string }>();
  const violations: ModelViolation[] = [];
  const reported = new Set<string>();
  const pathTo = (k: string | undefined, last?: string) => {
    const out: string[] = last === undefined ? [] : [last];
    for (let c = k; c !== undefined; c = seen.get(c)?.parent) out.push((seen.get(c) as { via: string }).via);
    return out.reverse();
  };
  const report = (bad: [string, string][], k: string, last?: string) => {
    for (const [property, message] of bad) {
      if (reported.has(property) || violations.length >= 5 || ignore.includes(property)) continue;
      reported.add(property);
      violations.push({ property, message, path: pathTo(k, last) });
    }
  };
  const k0 = keyOf(start);
  seen.set(k0, { s: start, parent: undefined, via: '(start)' });
  const queue = [k0];
  let transitions = 0;
  let truncated = false;
  // Breadth first: the first violation found has a shortest path; the search stops there.
  for (let i = 0; i < queue.length && violations.length === 0; i++) {
    const k = queue[i] as string;
    const node = seen.get(k) as { s: S };
    const s = node.s;
    (node as { s: S | undefined }).s = undefined;
    observe?.(s);
    report(check(s), k);
    for (const e of edges(s)) {
      transitions++;
      report(e.bad, k, e.label);
      const k1 = keyOf(e.next);
      if (!seen.has(k1)) {
        if (seen.size >= maxStates) {
          truncated = true;
          continue;
        }
        seen.set(k1, { s: e.next, parent: k, via: e.label });
        queue.push(k1);
      }
    }
  }
  return { states: seen.size, transitions, paths: seen.size, violations, truncated };
}

// ---------------------------------------------------------------------------
// The key machine alone

interface KeyWorld {
  record: KeyRecord;
  running: 'none' | 'do' | 'comp';
  effect: number;
  undone: boolean;
}

const keyOfWorld = (w: KeyWorld) =>
  `${w.record.state}|${w.record.interrupted ? 'i' : ''}|${w.record.attempt ?? 0}|${w.record.result === undefined ? '' : 'r'}|${w.running}|${w.effect}|${w.undone ? 'u' : ''}|${w.record.fence?.was ?? ''}`;

function keyStep(w: KeyWorld, ev: KeyEvent, applied: boolean): { next: KeyWorld; actions: KeyAction[]; bad: [string, string][] } {
  const bad: [string, string][] = [];
  const { record, actions } = stepKey(w.record, ev, 0);
  const next: KeyWorld = { ...w, record };
  if (ev.type === 'DO.OK' || ((ev.type === 'DO.FAILED' || ev.type === 'CLAIM.EXPIRED') && w.running === 'do' && applied)) {
    if (w.undone && next.effect === 0 && ev.type === 'DO.OK') bad.push(['no-effect-after-undo', `a do applied after the key was undone (state ${w.record.state})`]);
    next.effect = 1;
  }
  if (ev.type === 'COMPENSATION.OK') {
    next.effect = 0;
    next.undone = true;
  }
  if (ev.type === 'DO.OK' || ev.type === 'DO.FAILED' || ev.type === 'COMPENSATION.OK' || ev.type === 'COMPENSATION.FAILED' || ev.type === 'CLAIM.EXPIRED') next.running = 'none';
  for (const a of actions) {
    if (a === 'runDo') {
      if (w.undone) bad.push(['tombstone-refuses-late-do', `a do started on a key already undone (state ${w.record.state})`]);
      if (w.record.fence !== undefined) bad.push(['fence-refuses-later-do', `a do started on a key already fenced (state ${w.record.state})`]);
      if (w.running !== 'none') bad.push(['one-operation-at-a-time', `a do started while ${w.running} was running`]);
      next.running = 'do';
    }
    if (a === 'runCompensate') {
      if (w.running !== 'none') bad.push(['one-operation-at-a-time', `a compensation started while ${w.running} was running`]);
      next.running = 'comp';
    }
    if (a === 'ackCompensated' && (next.effect !== 0 || w.running === 'do')) {
      bad.push(['compensate-acked-only-when-undone', `compensate acknowledged with effect count ${next.effect}${w.running === 'do' ? ' and a do running' : ''}`]);
    }
    if (a === 'ackFenced') {
      if (w.running !== 'none') bad.push(['fence-waits-for-the-claim', `a fence was answered while ${w.running} was running`]);
      const was = record.fence?.was;
      if (w.record.fence === undefined && (was === 'none' || was === 'compensated') && next.effect !== 0) bad.push(['fence-none-means-no-effect', `a fence answered '${was}' (state ${w.record.state}) with effect count ${next.effect}`]);
      if (w.record.fence === undefined && was === 'applied' && next.effect !== 1) bad.push(['fence-applied-means-effect', `a fence answered 'applied' with effect count ${next.effect}`]);
      if (w.record.fence !== undefined && record.fence !== w.record.fence) bad.push(['fence-answers-its-first-fence', 'a second fence changed the key\'s fence record']);
    }
    if (a === 'replyStored' && record.state === 'done' && next.effect !== 1) bad.push(['stored-reply-matches-world', `do answered ok from the record but the effect count is ${next.effect}`]);
  }
  if (record.state === 'compensated' && next.effect !== 0) bad.push(['compensated-key-holds-no-effect', `key ${record.state} with effect count ${next.effect}`]);
  return { next, actions, bad };
}

/** Every reachable state of one key under any sequence of requests, worker completions and expired claims. */
export function exploreKeyMachine(options: { ignore?: readonly string[] } = {}): KeyModelReport {
  const start: KeyWorld = { record: newKeyRecord('h', 0), running: 'none', effect: 0, undone: false };
  const edges = (w: KeyWorld): Edge<KeyWorld>[] => {
    const out: Edge<KeyWorld>[] = [];
    const add = (label: string, ev: KeyEvent, applied = false) => {
      // Requests for a busy key wait for its claim (the host protocol): the machine only says awaitClaim.
      const r = keyStep(w, ev, applied);
      out.push({ label, next: r.next, bad: r.bad });
    };
    add('DO#1', { type: 'DO', attempt: 1 });
    add('DO#2', { type: 'DO', attempt: 2 });
    add('COMPENSATE', { type: 'COMPENSATE' });
    add('FENCE', { type: 'FENCE', by: 'f' });
    if (w.running === 'do') {
      add('do succeeds', { type: 'DO.OK', result: 'r' });
      add('do fails (retryable)', { type: 'DO.FAILED', error: RETRYABLE });
      add('do fails (terminal)', { type: 'DO.FAILED', error: TERMINAL });
      add('its host dies before the effect; claim expires', { type: 'CLAIM.EXPIRED' });
      add('its host dies after the effect; claim expires', { type: 'CLAIM.EXPIRED' }, true);
    }
    if (w.running === 'comp') {
      add('compensate succeeds', { type: 'COMPENSATION.OK' });
      add('compensate fails', { type: 'COMPENSATION.FAILED', error: COMP_ERR });
      add('its host dies; claim expires', { type: 'CLAIM.EXPIRED' });
    }
    return out;
  };
  return bfs(start, keyOfWorld, edges, () => [], undefined, options.ignore);
}

// ---------------------------------------------------------------------------
// One coordinator step × one key on several hosts sharing a compare-and-set store

type Snap = { value: unknown; context: SagaContext; status?: string };

type Msg =
  | { readonly kind: 'req'; readonly op: WorkerOp; readonly attempt: number; readonly coord: number }
  | { readonly kind: 'rep'; readonly op: WorkerOp; readonly attempt: number; readonly coord: number; readonly reply: WorkerReply }
  /**
   * A reply that cannot be read (garbled), a request no host took (no responders), or the
   * transport's deadline passing before a reply came (the request may still reach a host).
   */
  | { readonly kind: 'fail'; readonly op: WorkerOp; readonly attempt: number; readonly coord: number; readonly code: 'PROTOCOL_ERROR' | 'NO_RESPONDERS' | 'STEP_TIMED_OUT' };

/** One request being handled by one host, one store operation at a time. */
interface Proc {
  readonly host: number;
  /** The coordinator (incarnation) that sent the request: its reply goes to that one's inbox. */
  readonly coord: number;
  readonly setup: RequestSetup;
  readonly state: RequestState;
  /** Commands waiting for the world to answer: read, write, wait, or user code running. */
  readonly pending: readonly HostCommand[];
  /** The request's deadline has passed. */
  readonly late: boolean;
  /** The host has answered the request. */
  readonly replied: boolean;
  /** Claims whose user code the request started and has not released yet (its host renews them while listed). */
  readonly claims?: readonly string[];
}

interface Host {
  readonly alive: boolean;
  /** The incarnation: a restarted host claims under a new id, as a new process does. */
  readonly gen: number;
  /**
   * The incarnation that died last, while its claims' leases may not have passed yet: its
   * claim in the store still counts as live (other requests wait for it) until then.
   */
  readonly leased: number | undefined;
}

interface World {
  saga: Snap;
  coord: number;
  /** The last journal write that certainly landed (write-ahead), and the last one written at all. */
  journaled: Snap | undefined;
  written: Snap | undefined;
  store: { record: KeyRecord | undefined; revision: number };
  hosts: Host[];
  procs: Proc[];
  channel: Msg[];
  timers: Record<string, SagaEvent>;
  /** The key's effect in its system of record. */
  effect: 0 | 1;
  /** A compensate of the key finished: a later apply is a late do that got through. */
  undone: boolean;
  /** An operator resolved the parked saga: the effect the system of record held then was undone by hand. */
  resolved: boolean;
  /** An operator aborted the running saga: it may not end committed. */
  aborted: boolean;
  /**
   * The operator's resolve call waiting for its fence's answer, if one is: its number, and
   * whether the dead letter the operator read listed the effect as in doubt (late replies
   * may settle it while the saga is parked: the call decides on what the operator saw).
   */
  calling: { readonly n: number; readonly inDoubt: boolean } | undefined;
  /** The fence the operator reviewed (as `reviewKey`), after a resolve asked for a review. */
  reviewed: string | undefined;
  requests: number;
  /** A host has claimed the key for a do (a claim written, its user code may run): until then no do applied or may have. */
  doClaimed: boolean;
  /**
   * Claims whose lease passed while their user code ran (the host could not renew): other
   * hosts take the key over; the holder still runs, and learns of it when it completes.
   */
  expired: readonly string[];
  /**
   * Claims left in the store by a request that no longer runs or renews them (its write of
   * the claim, or of the outcome, failed or lost its answer): nobody holds them, and every
   * host may take the key over (the lease passes; the holder's own host knows at once).
   */
  abandoned: readonly string[];
  budget: { storeFailures: number; leaseExpiries: number; dups: number; drops: number; hostCrashes: number; coordCrashes: number; garbles: number; oversizes: number; transportTimeouts: number; operator: number; resolves: number; aborts: number; forgets: number };
}

/** The options of `exploreProduct`: the bounds of each fault. */
export interface ProductOptions {
  /** Step retries of the coordinator step. Default 1. */
  stepRetries?: number;
  /** Compensation retries. Default 1. */
  compensationRetries?: number;
  /** Worker hosts serving the key over one shared store (1 or 2). Default 2. */
  hosts?: number;
  /** How many messages the channel may duplicate in one run. Default 1. */
  duplicates?: number;
  /** How many messages the channel may lose in one run. Default 1. */
  drops?: number;
  /**
   * Host crashes. A crashed host restarts (a new process with a new claim id and nothing
   * but the shared store); its claim holds until its lease passes. Default 0.
   */
  hostCrashes?: number;
  /** Coordinator crashes, each followed by a recovery from the journal. Default 0. */
  coordinatorCrashes?: number;
  /** Replies that arrive garbled. Default 0. */
  garbles?: number;
  /** Results too large for a reply. Default 0. */
  oversizes?: number;
  /**
   * Requests whose transport gives up (its deadline passes, STEP_TIMED_OUT) while the
   * request is still in flight, or while its reply is: the request may still reach a
   * host, the reply is lost. Default 0.
   */
  transportTimeouts?: number;
  /** Leases that pass while a host's user code runs (the host stalls, cannot renew, and lives on). Default 0. */
  leaseExpiries?: number;
  /**
   * Calls of a host to the shared store that fail (STORE_FAILED): a read, a write that
   * fails before it lands, or a write that lands with its answer lost. Default 0.
   */
  storeFailures?: number;
  /** How many operator retries a parked saga may get (OPERATOR.RETRY). Default 1. */
  operatorRetries?: number;
  /**
   * How many resolve calls an operator may make on a parked saga: each time the operator
   * undoes by hand what the system of record holds, then calls resolve, which fences the
   * key and ends the saga (OPERATOR.RESOLVE) only when nothing can have landed unseen;
   * otherwise it asks for a review (another call) or fails. Default 0.
   */
  operatorResolves?: number;
  /** Operator aborts of the running saga (OPERATOR.ABORT, at any moment it gathers). Default 0. */
  operatorAborts?: number;
  /**
   * The store forgets the key's record (its dedup window passed) once the saga has ended
   * and no request of the key is in flight (docs/durability.md: the window outlasts every
   * saga): only a host still at work on the key on its own, undoing a late effect of a do
   * that lost its claim, meets the key gone. Default 0.
   */
  forgets?: number;
  /** Stop after this many states (the report is then `truncated`). Default 2_000_000. */
  maxStates?: number;
  /** Properties not to report. */
  ignore?: readonly string[];
}

/** How far the exploration of `exploreProduct` got: the largest use of each bound on any state it reached. */
export interface ProductCoverage {
  /** A reachable state where the saga committed, compensated, or parked. */
  readonly committed: boolean;
  readonly compensated: boolean;
  readonly parked: boolean;
  /** A reachable state where an operator resolved the saga. */
  readonly resolved: boolean;
  /** A reachable state where a resolve asked for a review and a later one resolved the saga. */
  readonly resolvedAfterReview: boolean;
  /** A reachable state where an operator aborted the saga and it ended compensated. */
  readonly abortedThenCompensated: boolean;
  /** The highest `do` attempt and compensation attempt (in one round) sent. */
  readonly doAttempts: number;
  readonly compensationAttempts: number;
  readonly operatorRetries: number;
  readonly hostCrashes: number;
  /** The most restarts of one host. */
  readonly hostRestarts: number;
  readonly coordinatorCrashes: number;
  /** A reachable state where the store forgot the key while a host still undid a late effect of it. */
  readonly forgottenWhileUndoing: boolean;
}

/** What `exploreProduct` explored and found. */
export interface ProductReport extends KeyModelReport {
  /** The configuration, in words. */
  readonly shape: string;
  /** Every reachable state was explored (not truncated). */
  readonly exhaustive: boolean;
  readonly coverage: ProductCoverage;
}

/** The options of `exploreProduct`, with the range each accepts. */
const PRODUCT_RANGES: Readonly<Record<Exclude<keyof ProductOptions, 'ignore'>, readonly [number, number, string]>> = {
  stepRetries: [0, 3, 'retries of the step'],
  compensationRetries: [0, 3, 'retries of its compensation'],
  hosts: [1, 2, 'worker hosts sharing the store'],
  duplicates: [0, 3, 'messages the channel duplicates'],
  drops: [0, 3, 'messages the channel loses'],
  hostCrashes: [0, 3, 'host crashes'],
  coordinatorCrashes: [0, 3, 'coordinator crashes'],
  garbles: [0, 3, 'garbled replies'],
  oversizes: [0, 3, 'oversized replies'],
  operatorRetries: [0, 4, 'operator retries'],
  operatorResolves: [0, 3, 'operator resolve calls, each fencing the key; a review asks for another'],
  operatorAborts: [0, 1, 'operator aborts; an aborted saga does not run again'],
  forgets: [0, 1, 'times the store forgets the key once the saga ended'],
  transportTimeouts: [0, 3, 'transport deadlines passing with the request or its reply in flight'],
  leaseExpiries: [0, 3, 'leases passing while a do runs'],
  storeFailures: [0, 3, 'store calls of a host that fail (a read, a write before it lands, a write whose answer is lost)'],
  maxStates: [1, Number.MAX_SAFE_INTEGER, 'states before the exploration stops'],
};

function checkProductOptions(options: unknown): asserts options is ProductOptions {
  if (options === null || typeof options !== 'object' || Array.isArray(options)) throw new InvalidOptionError('options', `must be an object of exploreProduct options, got ${describe(options)}`);
  const known = [...Object.keys(PRODUCT_RANGES), 'ignore'];
  for (const [key, v] of Object.entries(options)) {
    if (key === 'ignore') {
      if (v !== undefined && (!Array.isArray(v) || v.some((x) => typeof x !== 'string'))) throw new InvalidOptionError('ignore', `must be an array of property names, got ${describe(v)}`);
      continue;
    }
    const range = (PRODUCT_RANGES as Record<string, readonly [number, number, string] | undefined>)[key];
    if (range === undefined) throw new InvalidOptionError(key, `unknown option of exploreProduct (allowed: ${known.join(', ')})`);
    if (v === undefined) continue;
    const [lo, hi, what] = range;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < lo || v > hi) {
      throw new InvalidOptionError(key, `must be an integer ${hi === Number.MAX_SAFE_INTEGER ? `>= ${lo}` : `from ${lo} to ${hi}`} (${what}), got ${describe(v)}`);
    }
  }
}

function describe(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v);
  if (typeof v === 'bigint') return `${v}n`;
  if (Array.isArray(v)) return 'an array';
  if (v === null || typeof v !== 'object') return String(v);
  return 'an object';
}

const REQ_DEADLINE = 1;
const RESULT = 'r';
/** Smaller than any result: an oversized reply goes through the real encoder. */
const TINY_PAYLOAD = 8;

/**
 * The product of the real saga machine (one step) with the real host protocol on one or
 * two hosts sharing a compare-and-set store, over a faulty channel, with host and
 * coordinator crashes. Checks the key's effect against the saga on every state.
 */
export function exploreProduct(defFor: (stepRetries: number, compRetries: number) => SagaDefinition, options: ProductOptions = {}): ProductReport {
  checkProductOptions(options);
  const def = defFor(options.stepRetries ?? 1, options.compensationRetries ?? 1);
  const p = def.steps[0];
  if (p === undefined || def.steps.length !== 1) throw new SagaDefinitionError(`exploreProduct needs a saga of one step, got ${def.steps.length} step(s)`);
  const hostCount = options.hosts ?? 2;
  const machine = createSagaMachine(def, { keyOf: () => 'k' });
  const stepper = pureStepper(machine, { sagaId: 'model', input: null });
  /** A fence is sent by resolve call `attempt`, with id `f<attempt>`. */
  const baseReq = (op: WorkerOp, attempt: number): WorkerRequest => ({ v: 1, op, worker: p.worker, sagaId: 'model', stepId: p.id, key: 'k', attempt, deadline: REQ_DEADLINE, input: null, ...(op === 'fence' ? { fence: `f${attempt}` } : {}) });

  const clone = (w: World): World => ({ ...w, expired: w.expired.slice(), abandoned: w.abandoned.slice(), hosts: w.hosts.slice(), procs: w.procs.slice(), channel: w.channel.slice(), timers: { ...w.timers }, store: { ...w.store }, budget: { ...w.budget } });

  const hostOf = (owner: string) => Number(owner.split('.')[0]);
  const genOf = (owner: string) => Number(owner.split('.')[1]?.split('/')[0]);
  /** A claim is live while its host runs, or, once its host died, until its lease passes. */
  const ownerAlive = (w: World, owner: string) => {
    const h = w.hosts[hostOf(owner)];
    return h !== undefined && ((h.alive && h.gen === genOf(owner)) || h.leased === genOf(owner));
  };
  /** The dead incarnation whose claim in the store still holds its lease, if one does (nothing else can read it). */
  const leaseHolding = (w: World, slot: number) => {
    const h = w.hosts[slot] as Host;
    const owner = w.store.record?.owner;
    return h.leased !== undefined && owner !== undefined && hostOf(owner) === slot && genOf(owner) === h.leased && (w.store.record?.state === 'doing' || w.store.record?.state === 'compensating');
  };
  /**
   * Whether the key's record holds a claim a reader on host `reader` must wait for: one
   * that runs, and whose lease has not passed for that reader (a claim whose lease passed
   * while its user code ran is dead to other hosts; its own host knows it still runs),
   * and that nothing abandoned.
   */
  const liveFor = (w: World, rec: KeyRecord | undefined, reader: number): boolean => {
    if (rec?.owner === undefined || (rec.state !== 'doing' && rec.state !== 'compensating')) return false;
    const expired = w.expired.includes(rec.owner) && hostOf(rec.owner) !== reader;
    return ownerAlive(w, rec.owner) && !expired && !w.abandoned.includes(rec.owner);
  };
  /** A do's user code took effect. After an operator resolved the saga, nothing may bring the effect back. */
  const applyDo = (w: World, bad: [string, string][], owner: string) => {
    if (w.undone && w.effect === 0 && !w.expired.includes(owner)) bad.push(['no-effect-after-undo', 'a do applied its effect after the key was undone']);
    w.effect = 1;
  };

  /** Applies commands of the saga machine to the world. */
  const sagaCommands = (w: World, cmds: readonly SagaCommand[]) => {
    for (const c of cmds) {
      if (c.type === 'do' || c.type === 'compensate') w.channel.push({ kind: 'req', op: c.type, attempt: c.attempt, coord: w.coord });
      else if (c.type === 'schedule') w.timers[c.timerId] = c.event;
      else if (c.type === 'cancel') delete w.timers[c.timerId];
      else if (c.type === 'checkpoint') {
        if (c.writeAhead === true) w.journaled = w.saga;
        w.written = w.saga;
      }
    }
  };
  const effects = (actions: readonly { type: string; params?: unknown }[]) => actions.filter((a) => a.type === 'effect').map((a) => a.params as SagaCommand);
  const sagaSend = (w: World, ev: SagaEvent) => {
    const v = w.saga.value;
    if (v === 'committed' || v === 'compensated') return;
    const [s, actions] = stepper.next(w.saga as never, ev);
    w.saga = s as unknown as Snap;
    sagaCommands(w, effects(actions));
    // A parked saga is journaled with its dead letter; an ended one with its outcome.
    if (w.saga.value === 'compensationFailed') w.written = w.saga;
    if (w.saga.value === 'committed' || w.saga.value === 'compensated') w.timers = {};
  };

  /**
   * Runs a process's commands: replies go out, one store, wait or run command stays
   * pending. A host answers each request exactly once (a request whose host lives on is
   * never left unanswered), and a request still under way always waits on something: a
   * store call, a timer or its user code.
   */
  const perform = (w: World, proc: Proc, state: RequestState, cmds: readonly HostCommand[], bad: [string, string][], keep: readonly HostCommand[] = []): Proc | undefined => {
    const pending = keep.slice();
    let replied = proc.replied;
    let claims = proc.claims ?? [];
    const req = proc.setup.req;
    for (const c of cmds) {
      if (c.type === 'reply') {
        if (replied) bad.push(['one-reply-per-request', `the host answered its ${req.op} (attempt ${req.attempt}) a second time`]);
        // Every do of the model applies the same result: each answer of success carries it, repeated or not.
        if (req.op === 'do' && c.reply.ok && JSON.stringify(c.reply.result) !== JSON.stringify(RESULT)) bad.push(['do-answers-the-applied-result', `the host answered a do (attempt ${req.attempt}) with result ${JSON.stringify(c.reply.result)}, not the result its do applied`]);
        // A do that failed in user code is answered with its own error, first or repeated.
        const said = !c.reply.ok && c.reply.error.code === 'WORKER_ERROR' ? JSON.stringify(c.reply.error) : undefined;
        if (req.op === 'do' && said !== undefined && !USER_ERRORS.has(said)) bad.push(['do-answers-the-error-it-failed-with', `the host answered a do (attempt ${req.attempt}) with ${said}, not the error its user code failed with`]);
        // A host answers only the codes of the protocol's table, each with its documented flag.
        if (!c.reply.ok) {
          const flag = HOST_CODES[c.reply.error.code];
          if (flag === undefined || (flag !== 'worker' && flag !== c.reply.error.retryable)) {
            bad.push(['reply-codes-as-documented', `the host answered a ${req.op} with ${c.reply.error.code}, retryable ${String(c.reply.error.retryable)}: ${flag === undefined ? 'no code of the protocol' : `the protocol says retryable ${String(flag)}`}`]);
          }
        }
        // docs/protocol.md: an error reply says what happened, in its message, for the
        // operator who reads it in a log or an outcome: never an empty one.
        if (!c.reply.ok && (typeof c.reply.error.message !== 'string' || c.reply.error.message.trim() === '')) {
          bad.push(['error-replies-say-why', `the host answered a ${req.op} (attempt ${req.attempt}) with ${c.reply.error.code} and no message`]);
        }
        // Every request of the model carries the same input: no key can be in conflict.
        if (!c.reply.ok && c.reply.error.code === 'KEY_CONFLICT') bad.push(['key-conflict-only-for-another-input', `the host refused a ${req.op} (attempt ${req.attempt}) with KEY_CONFLICT, but every request of the key had the same input`]);
        replied = true;
        w.channel.push({ kind: 'rep', op: req.op, attempt: req.attempt, coord: proc.coord, reply: c.reply });
      } else if (!HOST_COMMANDS.has((c as { type?: unknown }).type as string)) {
        bad.push(['host-commands-are-known', `the host's ${req.op} (attempt ${req.attempt}) emitted ${JSON.stringify(c)}, no command of the protocol`]);
      } else if (c.type === 'release') {
        claims = claims.filter((o) => o !== c.owner);
      } else if (c.type === 'read' || c.type === 'write' || c.type === 'wait' || c.type === 'run') {
        if (c.type === 'run') claims = [...claims, c.claim.owner];
        if (c.type === 'write' && c.record.state === 'doing') w.doClaimed = true;
        // compensate gets the stored result when the record has one (docs/protocol.md), and a
        // host undoing its own late effect the result its do returned: every do here returns RESULT.
        if (c.type === 'run' && c.op === 'compensate' && (c.claim.record.result !== undefined || c.claim.selfUndo > 0) && JSON.stringify(c.result) !== JSON.stringify(RESULT)) {
          bad.push(['compensate-gets-the-result', `a compensate of the key ran with result ${JSON.stringify(c.result)}, not the result its do applied`]);
        }
        pending.push(c);
      }
    }
    if (state.phase === 'done' && pending.length === 0) {
      if (!replied) bad.push(['every-request-answered', `the host ended its ${req.op} (attempt ${req.attempt}) without answering it`]);
      // A claim left listed would be renewed, and waited for by the host's other requests, for ever.
      if (claims.length > 0) bad.push(['a-request-releases-its-claims', `the host ended its ${req.op} (attempt ${req.attempt}) without releasing claim ${claims.join(', ')}`]);
      return undefined;
    }
    if (pending.length === 0) bad.push(['a-request-never-stalls', `the host's ${req.op} (attempt ${req.attempt}) is in phase ${state.phase} with nothing to wait on`]);
    const { claims: _, ...rest } = proc;
    return { ...rest, state, pending, replied, ...(claims.length > 0 ? { claims } : {}) };
  };

  const hostEvent = (w: World, proc: Proc, ev: HostEvent, keep: readonly HostCommand[], bad: [string, string][]): void => {
    const t = stepRequest(proc.setup, proc.state, ev);
    for (const c of t.commands) {
      if (c.type === 'reply' && proc.setup.req.op === 'compensate' && c.reply.ok) {
        // A do whose claim expired is another host's to account for (it undoes a late effect itself): checked once it ends.
        const doRuns = w.procs.some((q) => q !== proc && !w.expired.includes(q.setup.owner) && q.pending.some((x) => x.type === 'run' && x.op === 'do'));
        if (doRuns) bad.push(['compensate-acked-only-when-no-do-may-apply', 'a compensate was acknowledged while a do of the key was still running']);
      }
      if (c.type === 'reply' && proc.setup.req.op === 'fence' && c.reply.ok) {
        // A fence reports what it found of the key's do: with none ever claimed, none applied or may have.
        const found = w.doClaimed ? undefined : fenceOfReply(c.reply);
        if (found !== undefined && 'was' in found && (found.was === 'applied' || found.was === 'unknown')) bad.push(['fence-reports-only-what-ran', `a fence answered '${found.was}' for a key no do ever claimed`]);
        const doRuns = w.procs.some((q) => q !== proc && !w.expired.includes(q.setup.owner) && q.pending.some((x) => x.type === 'run' && x.op === 'do'));
        if (doRuns) bad.push(['fence-answers-only-when-no-do-may-apply', 'a fence was answered while a do of the key was still running']);
      }
    }
    const next = perform(w, proc, t.state, t.commands, bad, keep);
    w.procs = w.procs.filter((q) => q !== proc);
    if (next !== undefined) w.procs.push(next);
  };

  /**
   * A record a host writes over another, against the record table of docs/protocol.md: the
   * result of a `do` is kept through the undo, and a failed undo leaves its error stored.
   */
  const landing = (prev: KeyRecord | undefined, next: KeyRecord, writer: Proc | undefined): [string, string][] => {
    const bad: [string, string][] = [];
    if (prev?.result !== undefined && next.state !== 'new' && JSON.stringify(next.result) !== JSON.stringify(prev.result)) {
      bad.push(['record-keeps-the-result', `a ${prev.state} record holding the do's result was overwritten by a ${next.state} record with result ${JSON.stringify(next.result)}`]);
    }
    const st = writer?.state;
    if (st?.phase === 'completing' && st.outcome.event.type === 'COMPENSATION.FAILED' && JSON.stringify(next.error) !== JSON.stringify(st.outcome.event.error)) {
      bad.push(['failed-undo-stores-its-error', `an undo failed with ${JSON.stringify(st.outcome.event.error)}, and the host wrote a ${next.state} record with error ${JSON.stringify(next.error)}`]);
    }
    return bad;
  };

  /**
   * A store call of a host fails (STORE_FAILED); `lands`: a write that landed all the same.
   * A claim of the request left in the store that nothing runs under any more is abandoned.
   */
  const storeFails = (w: World, pi: number, keep: readonly HostCommand[], now: number, label: string, lands: boolean, write?: Extract<HostCommand, { type: 'write' }>): Edge<World> => {
    const n = clone(w);
    const bad: [string, string][] = [];
    n.budget.storeFailures--;
    if (lands && write !== undefined) {
      bad.push(...landing(n.store.record, write.record, n.procs[pi]));
      n.store = { record: write.record, revision: n.store.revision + 1 };
    }
    const proc = n.procs[pi] as Proc;
    hostEvent(n, proc, { type: 'STORE_FAILED', error: { code: 'TRANSPORT_ERROR', message: 'the dedup store failed', retryable: true }, now }, keep, bad);
    // docs/protocol.md: under the outcome of a request that did not apply an effect (a failed
    // do, an undo asked for), a failed store call ends the request; only a do that applied
    // keeps reading the key, and a host's own undo tries again.
    const st = proc.state;
    if ((st.phase === 'completing' || st.phase === 'rechecking') && st.claim.selfUndo === 0 && st.outcome.event.type !== 'DO.OK' && n.procs.some((q) => q.setup === proc.setup)) {
      bad.push(['store-failure-ends-what-applied-nothing', `the store failed under the ${st.outcome.event.type} outcome of a ${proc.setup.req.op} (attempt ${proc.setup.req.attempt}), and the host kept the request going`]);
    }
    const rec = n.store.record;
    const owner = rec?.owner;
    if (owner !== undefined && (rec?.state === 'doing' || rec?.state === 'compensating') && !n.abandoned.includes(owner)) {
      const holder = n.procs.find((q) => q.setup.owner === owner || `${q.setup.owner}+undo` === owner);
      const runs = holder !== undefined && (holder.pending.some((c) => c.type === 'run') || holder.state.phase === 'running');
      if (!runs) n.abandoned = [...n.abandoned, owner];
    }
    return { label, next: n, bad };
  };

  /**
   * The answer to an operator's resolve call: the fence's reply, or its failure. The call
   * decides with the runtime's own rule (machines/fence-verdict.ts): it resolves the saga,
   * asks for a review (the operator then looks again before the next call, naming the fence
   * reviewed), or fails and leaves the saga parked.
   */
  const answerResolve = (w: World, m: Exclude<Msg, { kind: 'req' }>) => {
    const call = w.calling;
    if (call?.n !== m.attempt) return; // a call that already ended (timed out), or died with its coordinator
    w.calling = undefined;
    if (w.saga.value !== 'compensationFailed') return;
    const answer = m.kind === 'rep' ? fenceOfReply(m.reply) : { code: m.code, message: 'model', retryable: true };
    const v = fenceVerdict({ stepId: p.id, inDoubt: call.inDoubt }, answer, new Set(w.reviewed === undefined ? [] : [w.reviewed]));
    if (v.kind === 'review') w.reviewed = reviewKey(p.id, v.fence.by);
    if (v.kind === 'handled') endByResolve(w);
  };

  /** The resolve ends the saga: the operator declared its remaining effects handled. */
  const endByResolve = (w: World) => {
    w.resolved = true;
    sagaSend(w, { type: 'OPERATOR.RESOLVE', note: 'model' });
  };

  const deliverToSaga = (w: World, m: Exclude<Msg, { kind: 'req' }>) => {
    if (m.op === 'fence') return answerResolve(w, m);
    if (m.coord !== w.coord) return; // a reply to a coordinator that died: its inbox is gone
    const ev: WorkerActorEvent = { type: m.op === 'do' ? 'DO' : 'COMPENSATE', saga: undefined as never, sagaId: 'model', stepId: p.id, key: 'k', input: null, attempt: m.attempt, timeoutMs: 1 };
    const failure = m.kind === 'fail' ? (m.code === 'STEP_TIMED_OUT' ? new SagaError('STEP_TIMED_OUT', 'model: no reply within the deadline', { retryable: true }) : new TransportError(m.code, 'model')) : undefined;
    const sagaEv = m.kind === 'rep' ? replyToEvent(ev, m.reply) : replyToEvent(ev, undefined, failure);
    sagaSend(w, sagaEv);
  };

  const recover = (w: World, from: Snap | undefined) => {
    w.coord++;
    w.timers = {};
    // A resolve call in this coordinator dies with it (its fence may still land).
    w.calling = undefined;
    if (from === undefined) {
      const [s, a] = stepper.initial({ sagaId: 'model', input: null, recovered: true });
      w.saga = s as unknown as Snap;
      sagaCommands(w, effects(a));
    } else {
      w.saga = from;
      sagaSend(w, { type: 'RECOVER' });
    }
  };

  const edges = (w: World): Edge<World>[] => {
    const out: Edge<World>[] = [];
    const seenMsg = new Set<string>();
    w.channel.forEach((m, i) => {
      const mk = msgKey(m, w.coord);
      if (seenMsg.has(mk)) return;
      seenMsg.add(mk);
      const take = () => {
        const n = clone(w);
        n.channel.splice(i, 1);
        return n;
      };
      if (m.kind === 'req') {
        const alive = w.hosts.map((h, slot) => (h.alive ? slot : -1)).filter((s) => s >= 0);
        if (alive.length === 0) {
          const n = take();
          deliverToSaga(n, { kind: 'fail', op: m.op, attempt: m.attempt, coord: m.coord, code: 'NO_RESPONDERS' });
          out.push({ label: `${mk}: no host serves the worker (no responders)`, next: n, bad: [] });
        }
        for (const slot of alive) {
          const n = take();
          const host = n.hosts[slot] as Host;
          const setup: RequestSetup = { req: baseReq(m.op, m.attempt), inputHash: 'null', owner: `${slot}.${host.gen}/${++n.requests}`, leaseMs: 1_000 };
          const first = startRequest(setup, 0);
          const bad: [string, string][] = [];
          // The reference host's first attempt of a do expects a new key: it claims with one
          // write (a create) and no read, a store round trip less per step (docs/protocol.md).
          if (m.op === 'do' && m.attempt === 1 && first.commands[0]?.type !== 'write') bad.push(['first-do-claims-without-a-read', `the first attempt of a do began with ${first.commands[0]?.type ?? 'nothing'}, not a claim`]);
          // Every other request reads first: its key is expected to hold a record.
          if ((m.op !== 'do' || m.attempt > 1) && first.commands[0]?.type !== 'read') bad.push(['other-requests-read-first', `a ${m.op} (attempt ${m.attempt}) began with ${first.commands[0]?.type ?? 'nothing'}, not a read`]);
          const proc = perform(n, { host: slot, coord: m.coord, setup, state: first.state, pending: [], late: false, replied: false }, first.state, first.commands, bad);
          if (proc !== undefined) n.procs.push(proc);
          out.push({ label: `deliver ${mk} to host ${slot}`, next: n, bad });
        }
        if (w.budget.transportTimeouts > 0) {
          // The transport gives up on the request; the request itself stays in flight.
          const n = clone(w);
          n.budget.transportTimeouts--;
          deliverToSaga(n, { kind: 'fail', op: m.op, attempt: m.attempt, coord: m.coord, code: 'STEP_TIMED_OUT' });
          out.push({ label: `${mk}: the transport's deadline passes while it is in flight (STEP_TIMED_OUT)`, next: n, bad: [] });
        }
      } else {
        const n = take();
        deliverToSaga(n, m);
        out.push({ label: `deliver ${mk}`, next: n, bad: [] });
        if (m.kind === 'rep' && w.budget.garbles > 0) {
          const g = take();
          g.budget.garbles--;
          deliverToSaga(g, { kind: 'fail', op: m.op, attempt: m.attempt, coord: m.coord, code: 'PROTOCOL_ERROR' });
          out.push({ label: `deliver ${mk} garbled`, next: g, bad: [] });
        }
        if (m.kind === 'rep' && m.reply.ok && m.op === 'do' && w.budget.oversizes > 0) {
          const o = take();
          o.budget.oversizes--;
          // The host's encoder replaces a reply over the limit; the coordinator decodes what arrives.
          deliverToSaga(o, { ...m, reply: parseReply(JSON.parse(encodeReply(m.reply, TINY_PAYLOAD).body)) });
          out.push({ label: `deliver ${mk} over the payload limit`, next: o, bad: [] });
        }
        if (m.kind === 'rep' && w.budget.transportTimeouts > 0) {
          const t = take();
          t.budget.transportTimeouts--;
          deliverToSaga(t, { kind: 'fail', op: m.op, attempt: m.attempt, coord: m.coord, code: 'STEP_TIMED_OUT' });
          out.push({ label: `${mk} comes after the transport's deadline (STEP_TIMED_OUT)`, next: t, bad: [] });
        }
      }
      if (w.budget.dups > 0) {
        const n = clone(w);
        n.budget.dups--;
        n.channel.push(m);
        out.push({ label: `duplicate ${mk}`, next: n, bad: [] });
      }
      if (w.budget.drops > 0) {
        const n = take();
        n.budget.drops--;
        out.push({ label: `drop ${mk}`, next: n, bad: [] });
      }
    });

    for (const [id, ev] of Object.entries(w.timers)) {
      const n = clone(w);
      delete n.timers[id];
      sagaSend(n, ev);
      out.push({ label: `timer ${id} fires`, next: n, bad: [] });
    }

    w.procs.forEach((proc, pi) => {
      const who = `host ${proc.host} ${proc.setup.req.op}#${proc.setup.req.attempt}`;
      proc.pending.forEach((cmd, ci) => {
        const keep = proc.pending.filter((_, j) => j !== ci);
        const at = (n: World) => n.procs[pi] as Proc;
        const now = proc.late ? REQ_DEADLINE + 1 : 0;
        if (cmd.type === 'read') {
          const n = clone(w);
          const bad: [string, string][] = [];
          const rec = n.store.record;
          hostEvent(n, at(n), { type: 'READ', record: rec, revision: n.store.revision, live: liveFor(n, rec, proc.host), now }, keep, bad);
          out.push({ label: `${who} reads ${rec?.state ?? 'nothing'}`, next: n, bad });
          if (w.budget.storeFailures > 0) out.push(storeFails(w, pi, keep, now, `${who}: its read fails`, false));
        } else if (cmd.type === 'write') {
          const n = clone(w);
          const bad: [string, string][] = [];
          if (n.store.revision === cmd.revision) {
            bad.push(...landing(n.store.record, cmd.record, proc));
            n.store = { record: cmd.record, revision: n.store.revision + 1 };
            hostEvent(n, at(n), { type: 'WRITTEN', revision: n.store.revision, now }, keep, bad);
            out.push({ label: `${who} writes ${cmd.record.state}`, next: n, bad });
          } else {
            hostEvent(n, at(n), { type: 'CONFLICT', now }, keep, bad);
            out.push({ label: `${who} loses its write of ${cmd.record.state}`, next: n, bad });
          }
          if (w.budget.storeFailures > 0) {
            out.push(storeFails(w, pi, keep, now, `${who}: its write of ${cmd.record.state} fails before it lands`, false));
            if (w.store.revision === cmd.revision) out.push(storeFails(w, pi, keep, now, `${who}: its write of ${cmd.record.state} lands, its answer is lost`, true, cmd));
          }
        } else if (cmd.type === 'wait') {
          const n = clone(w);
          const bad: [string, string][] = [];
          hostEvent(n, at(n), { type: 'WAITED', now }, keep, bad);
          out.push({ label: `${who} waits, reads again`, next: n, bad });
          if (!proc.late) {
            const l = clone(w);
            l.procs[pi] = { ...proc, late: true };
            out.push({ label: `${who}: its request deadline passes`, next: l, bad: [] });
          }
        } else if (cmd.type === 'run') {
          const outcomes: [string, { type: 'DO.OK'; result: unknown } | { type: 'DO.FAILED' | 'COMPENSATION.FAILED'; error: ErrorInfo } | { type: 'COMPENSATION.OK' }][] =
            cmd.op === 'do'
              ? [
                  ['applies', { type: 'DO.OK', result: RESULT }],
                  ['fails (retryable)', { type: 'DO.FAILED', error: RETRYABLE }],
                  ['fails (terminal)', { type: 'DO.FAILED', error: TERMINAL }],
                ]
              : cmd.claim.selfUndo > 1
                ? // A host's own undo, tried again while it lives: its first try may fail, the next succeeds (bounds the space).
                  [['undoes', { type: 'COMPENSATION.OK' }]]
                : [
                    ['undoes', { type: 'COMPENSATION.OK' }],
                    ['fails to undo', { type: 'COMPENSATION.FAILED', error: COMP_ERR }],
                  ];
          for (const [what, event] of outcomes) {
            const n = clone(w);
            const bad: [string, string][] = [];
            // A do whose lease passed may apply after another host undid the key: its own host must undo it again (checked once it ends).
            if (event.type === 'DO.OK') applyDo(n, bad, proc.setup.owner);
            if (event.type === 'COMPENSATION.OK') {
              n.effect = 0;
              n.undone = true;
            }
            hostEvent(n, at(n), { type: 'RAN', outcome: { event }, now }, keep, bad);
            out.push({ label: `${who}: user code ${what}`, next: n, bad });
          }
        }
      });
    });

    if (w.budget.leaseExpiries > 0) {
      for (const proc of w.procs) {
        if (w.expired.includes(proc.setup.owner) || !proc.pending.some((c) => c.type === 'run' && c.op === 'do')) continue;
        const n = clone(w);
        n.budget.leaseExpiries--;
        n.expired = [...n.expired, proc.setup.owner];
        out.push({ label: `host ${proc.host} stalls while its do#${proc.setup.req.attempt} runs: its lease passes`, next: n, bad: [] });
      }
    }

    w.hosts.forEach((h, slot) => {
      if (h.alive && w.budget.hostCrashes > 0) {
        const mine = w.procs.filter((q) => q.host === slot);
        const running = mine.filter((q) => q.pending.some((c) => c.type === 'run'));
        const writing = mine.filter((q) => q.pending.some((c) => c.type === 'write'));
        // A do that runs when its host dies may or may not have applied; an undo may or may
        // not have finished. A store write already sent may still land, or not.
        const ran = running.length === 0 ? [false] : [false, true];
        const wrote = writing.length === 0 ? [false] : [false, true];
        for (const landed of ran) {
          for (const written of wrote) {
            const n = clone(w);
            n.budget.hostCrashes--;
            const bad: [string, string][] = [];
            if (landed) {
              for (const q of running) {
                const run = q.pending.find((c) => c.type === 'run') as Extract<HostCommand, { type: 'run' }>;
                if (run.op === 'do') applyDo(n, bad, q.setup.owner);
                else {
                  n.effect = 0;
                  n.undone = true;
                }
              }
            }
            if (written) {
              for (const q of writing) {
                const write = q.pending.find((c) => c.type === 'write') as Extract<HostCommand, { type: 'write' }>;
                if (n.store.revision === write.revision) {
                  bad.push(...landing(n.store.record, write.record, q));
                  n.store = { record: write.record, revision: n.store.revision + 1 };
                }
              }
            }
            n.hosts[slot] = { alive: false, gen: h.gen, leased: h.gen };
            n.procs = n.procs.filter((q) => q.host !== slot);
            const what = [
              running.length > 0 ? (landed ? 'after its user code took effect' : 'before its user code took effect') : '',
              writing.length > 0 ? (written ? 'its store write lands' : 'its store write is lost') : '',
            ].filter(Boolean);
            out.push({ label: `host ${slot} crashes${what.length > 0 ? ` (${what.join('; ')})` : ''}`, next: n, bad });
          }
        }
      } else if (!h.alive) {
        const n = clone(w);
        n.hosts[slot] = { alive: true, gen: h.gen + 1, leased: h.leased };
        out.push({ label: `host ${slot} restarts (a new process: the shared store is all it has)`, next: n, bad: [] });
      }
      if (leaseHolding(w, slot)) {
        const n = clone(w);
        n.hosts[slot] = { ...h, leased: undefined };
        out.push({ label: `the lease of host ${slot}'s dead claim passes`, next: n, bad: [] });
      }
    });

    const v = w.saga.value;
    if (w.budget.coordCrashes > 0 && v !== 'committed' && v !== 'compensated') {
      const froms = w.journaled === w.written ? [w.journaled] : [w.journaled, w.written];
      for (const from of froms) {
        const n = clone(w);
        n.budget.coordCrashes--;
        recover(n, from);
        out.push({ label: `coordinator crashes; a new one recovers from the ${from === undefined ? 'intent' : from === w.written ? 'last journal write' : 'last write-ahead journal write'}`, next: n, bad: [] });
      }
    }

    // The dedup window passes after the saga ended, with no request of the key in flight:
    // only hosts undoing a late effect on their own may still be at work on the key.
    const ended = v === 'committed' || v === 'compensated';
    if (ended && w.budget.forgets > 0 && w.store.record !== undefined && !w.channel.some((m) => m.kind === 'req') && w.procs.every((q) => q.state.phase === 'undoing' || w.expired.includes(q.setup.owner))) {
      const n = clone(w);
      n.budget.forgets--;
      n.store = { record: undefined, revision: n.store.revision + 1 };
      out.push({ label: 'the store forgets the key (its dedup window passed)', next: n, bad: [] });
    }
    if (v === 'gathering' && w.budget.aborts > 0) {
      const n = clone(w);
      n.budget.aborts--;
      n.aborted = true;
      sagaSend(n, { type: 'OPERATOR.ABORT', note: 'model' });
      out.push({ label: 'OPERATOR.ABORT (an operator aborts the running saga)', next: n, bad: [] });
    }
    // An operator retry waits for a resolve call of the same saga to end (the runtime refuses
    // it meanwhile); a retry from elsewhere while a fence is on its way is reached through a
    // resolve call that timed out.
    if (v === 'compensationFailed' && w.budget.operator > 0 && w.calling === undefined) {
      const n = clone(w);
      n.budget.operator--;
      sagaSend(n, { type: 'OPERATOR.RETRY' });
      out.push({ label: 'OPERATOR.RETRY', next: n, bad: [] });
    }
    if (v === 'compensationFailed' && w.budget.resolves > 0 && w.calling === undefined) {
      const n = clone(w);
      n.budget.resolves--;
      const call = budget0.resolves - n.budget.resolves;
      // The operator reads the dead letter and undoes by hand each listed effect the
      // system of record holds (an unlisted one is the listing's violation, checked on
      // the parked state), then calls resolve, which fences the key before it may end the
      // saga. The operator looks before the fence lands: the worst moment.
      const parked = outcomeOf(def, w.saga.context, 'compensationFailed');
      const listed = parked?.status === 'compensation-failed' ? parked.remaining.find((e) => e.stepId === p.id) : undefined;
      if (listed !== undefined) n.effect = 0;
      if (listed !== undefined) {
        n.calling = { n: call, inDoubt: listed.inDoubt };
        n.channel.push({ kind: 'req', op: 'fence', attempt: call, coord: n.coord });
      } else endByResolve(n); // nothing listed: nothing to fence
      out.push({ label: `operator resolve #${call} (undoes by hand what the system of record holds, then fences the key)`, next: n, bad: [] });
    }
    return out;
  };

  /**
   * A `do` of another saga that reuses this key with another input (a key function that
   * maps two sagas to one key) must be refused with KEY_CONFLICT whatever the key's record
   * holds, touching nothing (docs/protocol.md, section 8): it reads the record as it stands
   * and decides. Probed on every state without entering the world, so the space does not
   * grow: had it run, it would have answered another saga with this step's result, or
   * claimed and run over this step's key.
   */
  /**
   * How a host of the protocol, on none of the model's hosts, decides a request (attempt 2 or
   * later: it reads first) from the key's record as it stands. The world is not touched.
   */
  const probe = (w: World, req: WorkerRequest, inputHash: string) => {
    const setup: RequestSetup = { req, inputHash, owner: 'probe', leaseMs: 1_000 };
    const start = startRequest(setup, 0);
    return stepRequest(setup, start.state, { type: 'READ', record: w.store.record, revision: w.store.revision, live: liveFor(w, w.store.record, -1), now: 0 });
  };

  const foreignDo = (w: World): [string, string][] => {
    const rec = w.store.record;
    if (rec === undefined || rec.state === 'new') return [];
    const t = probe(w, { ...baseReq('do', 2), sagaId: 'other', input: 'another input' }, JSON.stringify('another input'));
    const reply = t.commands.find((c) => c.type === 'reply');
    const touches = t.commands.filter((c) => c.type !== 'reply');
    if (reply === undefined || reply.reply.ok || reply.reply.error.code !== 'KEY_CONFLICT' || touches.length > 0 || t.state.phase !== 'done') {
      return [['key-conflict-for-another-input', `a do of another saga with another input, reading the key's ${rec.state} record, was answered ${reply === undefined ? 'nothing' : JSON.stringify(reply.reply)}${touches.length > 0 ? ` and went on to ${touches.map((c) => c.type).join(', ')}` : ''}, not KEY_CONFLICT without touching the key`]];
    }
    return [];
  };

  /**
   * A host whose claim was taken over while its user code runs must tell that code to stop
   * (`ctx.signal`, docs/guarantees.md) as soon as it learns of it: at its next renewal,
   * whose write then conflicts. Probed on every state where a request's user code runs
   * under a claim the store no longer holds (the model's user code ignores the signal, as
   * user code may, so the guarantee does not rest on it; the probe does not enter the world).
   */
  const renewalAfterTakeover = (w: World): [string, string][] => {
    for (const q of w.procs) {
      const st = q.state;
      if (st.phase !== 'running' || st.renewing !== undefined || st.lost || st.outcome !== undefined) continue;
      if (w.store.record?.owner === st.claim.owner && w.store.revision === st.claim.revision) continue;
      const renew = stepRequest(q.setup, st, { type: 'RENEW', now: 0 });
      if (!renew.commands.some((c) => c.type === 'write')) return [['claim-lost-stops-user-code', `host ${q.host}'s renewal of its ${q.setup.req.op} claim wrote nothing`]];
      const lost = stepRequest(q.setup, renew.state, { type: 'CONFLICT', now: 0 });
      if (!lost.commands.some((c) => c.type === 'abort' && c.owner === st.claim.owner)) {
        return [['claim-lost-stops-user-code', `host ${q.host}'s renewal of its ${q.setup.req.op} claim conflicted (another host took the key over), and it did not abort its user code: it answered ${JSON.stringify(lost.commands.map((c) => c.type))}`]];
      }
    }
    return [];
  };

  /**
   * The `do` rows of the record table (docs/protocol.md, section 8), probed on the record as
   * it stands: a newer attempt of a key whose last run failed retryably or was interrupted
   * (`retryable`, `uncertain`) claims the key and runs again; a repeat of the last attempt,
   * or any attempt of a key that is `done`, `failed`, being undone or undone, is answered
   * from the record without a write.
   */
  const doTable = (w: World): [string, string][] => {
    const rec = w.store.record;
    if (rec === undefined || rec.state === 'new' || rec.state === 'doing' || rec.state === 'compensating') return [];
    const last = rec.attempt ?? 1;
    const probes = [{ attempt: Math.max(2, last + 1), reruns: rec.state === 'retryable' || rec.state === 'uncertain' }, ...(last >= 2 ? [{ attempt: last, reruns: false }] : [])];
    for (const { attempt, reruns } of probes) {
      const t = probe(w, baseReq('do', attempt), 'null');
      const claims = t.commands.some((c) => c.type === 'write' && c.record.state === 'doing');
      const writes = t.commands.some((c) => c.type === 'write');
      const answers = t.commands.some((c) => c.type === 'reply');
      if (reruns && !claims) return [['a-newer-attempt-runs-again', `a do of attempt ${attempt} reading a ${rec.state} record of attempt ${last} did not claim the key to run again: ${JSON.stringify(t.commands.map((c) => c.type))}`]];
      if (!reruns && (writes || !answers)) return [['a-repeat-is-answered-from-the-record', `a do of attempt ${attempt} reading a ${rec.state} record of attempt ${last} was not answered from the record alone: ${JSON.stringify(t.commands.map((c) => (c.type === 'write' ? `write ${c.record.state}` : c.type)))}`]];
    }
    return [];
  };

  const check = (w: World): [string, string][] => {
    const bad: [string, string][] = [...foreignDo(w), ...renewalAfterTakeover(w), ...doTable(w)];
    const state = w.saga.value as MachineStateName;
    if (state === 'committed' && w.effect !== 1) bad.push(['committed-step-keeps-its-effect', 'the saga committed but the step has no effect']);
    if (state === 'committed' && w.aborted) bad.push(['aborted-saga-does-not-commit', 'an operator aborted the saga, yet it committed']);
    // A do whose lease passed may apply after the key was undone; its host then undoes it
    // again. Until it ends, the effect may be there: what must hold is checked again then.
    const stalled = w.procs.some((q) => w.expired.includes(q.setup.owner));
    if (state === 'compensated' && w.effect !== 0 && !w.resolved && !stalled) bad.push(['compensated-step-leaves-no-effect', 'the saga is compensated but the step\'s effect is there']);
    if (w.undone && w.effect !== 0 && !w.resolved && !stalled) bad.push(['no-effect-after-undo', 'the key was undone, yet its effect is there and no host that lost its claim is left to undo it']);
    if (w.resolved) {
      // The operator undid what was there and declared the rest handled: the saga ends
      // (its one step was being undone, so compensated), names the step as resolved by the
      // operator, and no late do of the key may bring the effect back.
      if (w.effect !== 0 && !stalled) bad.push(['resolved-effect-stays-handled', `the operator resolved the saga (${state}) but the step's effect is back in the system of record`]);
      if (state !== 'compensated') bad.push(['resolve-ends-the-saga', `the operator resolved the saga but it is ${state}`]);
    }
    if (state === 'committed' || state === 'compensated') {
      const o = outcomeOf(def, w.saga.context, state);
      const byOperator = o !== undefined && 'resolvedByOperator' in o ? o.resolvedByOperator : [];
      const expected = w.resolved ? [p.id] : [];
      if (byOperator.join() !== expected.join()) bad.push(['resolved-by-operator-reported', `the outcome names [${byOperator.join(', ')}] as resolved by an operator, the operator resolved [${expected.join(', ')}]`]);
    }
    if (state === 'compensationFailed' && !stalled) {
      const o = outcomeOf(def, w.saga.context, state);
      const listed = o?.status === 'compensation-failed' ? o.remaining.length : 0;
      if (w.effect > listed) bad.push(['compensation-failed-lists-every-remaining-effect', `parked listing ${listed} remaining effect(s) while the step's effect is there`]);
    }
    const quiet = w.channel.length === 0 && Object.keys(w.timers).length === 0 && w.procs.length === 0;
    if (quiet && state !== 'committed' && state !== 'compensated' && state !== 'compensationFailed') {
      bad.push(['no-dead-end', `nothing is in flight and the saga is stuck in ${state} (step ${(w.saga.context.steps[p.index] as StepState).status})`]);
    }
    return bad;
  };

  const [s0, a0] = stepper.initial({ sagaId: 'model', input: null });
  const w0: World = {
    saga: s0 as unknown as Snap,
    coord: 0,
    journaled: undefined,
    written: undefined,
    store: { record: undefined, revision: 0 },
    hosts: Array.from({ length: hostCount }, () => ({ alive: true, gen: 0, leased: undefined })),
    procs: [],
    channel: [],
    timers: {},
    effect: 0,
    undone: false,
    resolved: false,
    aborted: false,
    calling: undefined,
    reviewed: undefined,
    requests: 0,
    doClaimed: false,
    expired: [],
    abandoned: [],
    budget: {
      storeFailures: options.storeFailures ?? 0,
      dups: options.duplicates ?? 1,
      drops: options.drops ?? 1,
      hostCrashes: options.hostCrashes ?? 0,
      coordCrashes: options.coordinatorCrashes ?? 0,
      garbles: options.garbles ?? 0,
      oversizes: options.oversizes ?? 0,
      leaseExpiries: options.leaseExpiries ?? 0,
      transportTimeouts: options.transportTimeouts ?? 0,
      operator: options.operatorRetries ?? 1,
      resolves: options.operatorResolves ?? 0,
      aborts: options.operatorAborts ?? 0,
      forgets: options.forgets ?? 0,
    },
  };
  sagaCommands(w0, effects(a0));

  const serialize = (w: World): string => {
    const owner = w.store.record?.owner;
    const rev = (r: number) => (r === w.store.revision ? 'c' : 'o');
    const mine = (o: string | undefined) => (o === undefined ? '' : `${o === owner ? 'M' : ownerAlive(w, o) ? 'a' : 'd'}${w.expired.includes(o) ? 'e' : ''}${w.abandoned.includes(o) ? 'x' : ''}`);
    const rec = (r: KeyRecord | undefined) =>
      r === undefined ? '-' : `${r.state}${r.interrupted ? 'i' : ''}${r.attempt ?? 0}${r.result === undefined ? '' : 'r'}${r.error?.code ?? ''}${r.owner === undefined ? '' : `@${mine(r.owner)}${hostOf(r.owner)}`}`;
    const claim = (c: { op: string; revision: number; selfUndo: number; owner: string }) => `${c.op}${rev(c.revision)}${c.selfUndo}${mine(c.owner)}`;
    const st = (s: RequestState): string => {
      switch (s.phase) {
        case 'deciding':
        case 'waiting':
          return `${s.phase}${s.conflicts}`;
        case 'writing':
          return `w${s.conflicts}:${rec(s.record)}:${'reply' in s.then ? (s.then.reply.ok ? 'ok' : s.then.reply.error.code) : s.then.run}`;
        case 'running':
          return `r:${claim(s.claim)}:${s.renewing ? 'n' : ''}${s.outcome?.event.type ?? ''}${s.lost ? 'L' : ''}`;
        case 'completing':
          return `c:${claim(s.claim)}:${s.outcome.event.type}:${s.record.state}`;
        case 'rechecking':
          return `k:${claim(s.claim)}:${s.outcome.event.type}`;
        case 'undoing':
          return `u${s.failures}:${s.writing ? rec(s.writing) : ''}`;
        case 'done':
          return 'done';
      }
    };
    const cmd = (c: HostCommand) => (c.type === 'write' ? `W${rev(c.revision)}${rec(c.record)}` : c.type === 'run' ? `R${c.op}` : c.type === 'wait' ? 'T' : c.type);
    const procs = w.procs
      .map((q) => `${q.host}${(w.hosts[q.host] as Host).alive ? '' : 'x'}${q.setup.req.op}${q.setup.req.attempt}${q.coord === w.coord ? '' : 'old'}${q.late ? 'L' : ''}${w.expired.includes(q.setup.owner) ? 'S' : ''}[${st(q.state)}|${q.pending.map(cmd).join(',')}]`)
      .sort()
      .join(';');
    return [
      sagaKey(w.saga, p.index),
      w.journaled === undefined ? '-' : sagaKey(w.journaled, p.index),
      w.written === undefined ? '-' : sagaKey(w.written, p.index),
      rec(w.store.record),
      w.hosts.map((h, slot) => `${h.alive ? 'A' : 'D'}${leaseHolding(w, slot) ? 'l' : ''}`).join(''),
      procs,
      w.channel.map((m) => msgKey(m, w.coord)).sort().join(','),
      Object.entries(w.timers).map(([id, e]) => `${id}${'attempt' in e ? e.attempt : ''}`).sort().join(','),
      w.effect,
      w.undone ? 'u' : '',
      w.resolved ? 'R' : '',
      w.aborted ? 'A' : '',
      w.calling === undefined ? '' : `${w.calling.n}${w.calling.inDoubt ? 'd' : ''}`,
      w.reviewed === undefined ? '' : w.reviewed.slice(w.reviewed.indexOf('\u0000') + 1),
      Object.values(w.budget).join('.'),
    ].join('|');
  };
  const budget0 = { ...w0.budget };
  const seen = { committed: false, compensated: false, parked: false, resolved: false, resolvedAfterReview: false, abortedThenCompensated: false, doAttempts: 0, compensationAttempts: 0, operatorRetries: 0, hostCrashes: 0, hostRestarts: 0, coordinatorCrashes: 0, forgottenWhileUndoing: false };
  const observe = (w: World) => {
    const v = w.saga.value;
    if (v === 'committed') seen.committed = true;
    if (v === 'compensated') seen.compensated = true;
    if (v === 'compensationFailed') seen.parked = true;
    if (w.resolved) seen.resolved = true;
    if (w.resolved && w.reviewed !== undefined) seen.resolvedAfterReview = true;
    if (w.aborted && v === 'compensated') seen.abortedThenCompensated = true;
    const st = w.saga.context.steps[p.index] as StepState;
    seen.doAttempts = Math.max(seen.doAttempts, st.attempt);
    seen.compensationAttempts = Math.max(seen.compensationAttempts, st.compAttempt);
    seen.operatorRetries = Math.max(seen.operatorRetries, budget0.operator - w.budget.operator);
    seen.hostCrashes = Math.max(seen.hostCrashes, budget0.hostCrashes - w.budget.hostCrashes);
    seen.coordinatorCrashes = Math.max(seen.coordinatorCrashes, budget0.coordCrashes - w.budget.coordCrashes);
    for (const h of w.hosts) seen.hostRestarts = Math.max(seen.hostRestarts, h.gen);
    if (w.budget.forgets < budget0.forgets && w.procs.some((q) => q.state.phase === 'undoing')) seen.forgottenWhileUndoing = true;
  };
  const r = bfs(w0, serialize, edges, check, options.maxStates, options.ignore, observe);
  const faults = [
    `${hostCount} host(s)`,
    `${options.duplicates ?? 1} duplicate(s)`,
    `${options.drops ?? 1} drop(s)`,
    options.hostCrashes ? `${options.hostCrashes} host crash(es) and restart(s)` : '',
    options.coordinatorCrashes ? `${options.coordinatorCrashes} coordinator crash(es)` : '',
    options.garbles ? `${options.garbles} garbled repl(ies)` : '',
    options.oversizes ? `${options.oversizes} oversized repl(ies)` : '',
    (options.operatorRetries ?? 1) > 0 ? `${options.operatorRetries ?? 1} operator retr${(options.operatorRetries ?? 1) === 1 ? 'y' : 'ies'}` : '',
    options.operatorResolves ? `${options.operatorResolves} operator resolve call(s)` : '',
    options.transportTimeouts ? `${options.transportTimeouts} transport timeout(s)` : '',
    options.operatorAborts ? `${options.operatorAborts} operator abort` : '',
    options.leaseExpiries ? `${options.leaseExpiries} lease(s) passing while a do runs` : '',
    options.storeFailures ? `${options.storeFailures} failed store call(s)` : '',
    options.forgets ? 'the store forgets the key once the saga ended' : '',
  ].filter(Boolean);
  return { ...r, exhaustive: !r.truncated, coverage: { ...seen }, shape: `1 step x 1 key, retries do/comp ${p.retries}/${p.compensation.retries}, ${faults.join(', ')}` };
}

function sagaKey(s: Snap, index: number): string {
  const st = s.context.steps[index] as StepState;
  return [String(s.value), st.status, st.attempt, st.waiting ? 'w' : '', st.tainted ? 't' : '', st.result === undefined ? '' : 'r', st.compAttempt, st.undo ? 'u' : ''].join(',');
}

function msgKey(m: Msg, coord: number): string {
  const gen = m.coord === coord ? '' : '(old)';
  if (m.kind === 'req') return `q:${m.op}#${m.attempt}${gen}`;
  if (m.kind === 'fail') return `f:${m.op}#${m.attempt}:${m.code}${gen}`;
  return `p:${m.op}#${m.attempt}:${m.reply.ok ? 'ok' : m.reply.error.code}${gen}`;
}
