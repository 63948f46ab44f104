/**
 * Model checking of the worker host's per-key machine, alone and in product with one
 * coordinator step (the real saga machine) over a lossy, duplicating, reordering
 * channel. The world is an effect counter: it must end 1 for a committed step, 0 for
 * a compensated one, and never exceed 1; this is where "a late do after compensate
 * must not apply" is proved.
 */
import type { ErrorInfo } from '../errors.ts';
import { newKeyRecord, stepKey } from '../machines/key-machine.ts';
import type { KeyAction, KeyEvent } from '../machines/key-machine.ts';
import { outcomeOf } from '../machines/saga-logic.ts';
import type { MachineStateName, SagaCommand, SagaContext, SagaEvent, StepState } from '../machines/saga-logic.ts';
import { createSagaMachine } from '../machines/saga-machine.ts';
import type { KeyRecord, SagaDefinition } from '../types.ts';
import type { ModelViolation } from './model.ts';
import { pureStepper } from '../machines/pure-transition.ts';

const RETRYABLE: ErrorInfo = { code: 'WORKER_ERROR', message: 'model: retryable', retryable: true };
const TERMINAL: ErrorInfo = { code: 'WORKER_ERROR', message: 'model: terminal', retryable: false };
const COMP_ERR: ErrorInfo = { code: 'COMPENSATION_FAILED', message: 'model: compensation failed', retryable: true };

export interface KeyModelReport {
  readonly states: number;
  readonly transitions: number;
  readonly paths: number;
  readonly violations: readonly ModelViolation[];
  readonly truncated?: boolean;
}

// ---------------------------------------------------------------------------
// The key machine with the host's executor and the world, under any requests

interface KeyWorld {
  record: KeyRecord;
  running: 'none' | 'do' | 'comp';
  effect: number;
  compensateSeen: boolean;
}

const keyOfWorld = (w: KeyWorld) =>
  `${w.record.state}|${w.record.compensateRequested ? 1 : 0}|${w.record.result === undefined ? '' : 'r'}|${w.running}|${w.effect}|${w.compensateSeen ? 1 : 0}`;

/**
 * Applies one event to a key the way the worker host does (`stepKey`, the machine run
 * through XState's `transition`), runs the world forward, and returns what went wrong.
 */
function keyStep(w: KeyWorld, ev: KeyEvent): { next: KeyWorld; actions: KeyAction[]; bad: [string, string][] } {
  const bad: [string, string][] = [];
  const { record, actions } = stepKey(w.record, ev, 0);
  const next: KeyWorld = { ...w, record };
  if (ev.type === 'COMPENSATE') next.compensateSeen = true;
  if (ev.type === 'DO.OK') next.effect++;
  if (ev.type === 'COMPENSATION.OK') next.effect = 0;
  if (ev.type === 'DO.OK' || ev.type === 'DO.FAILED' || ev.type === 'COMPENSATION.OK' || ev.type === 'COMPENSATION.FAILED') next.running = 'none';
  for (const a of actions) {
    if (a === 'runDo') {
      if (w.compensateSeen) bad.push(['tombstone-refuses-late-do', `a do started on a key already compensated (state ${w.record.state})`]);
      if (w.running !== 'none') bad.push(['one-operation-at-a-time', `a do started while ${w.running} was running`]);
      next.running = 'do';
    }
    if (a === 'runCompensate') {
      if (w.running === 'comp') bad.push(['one-operation-at-a-time', 'a compensation started while another was running']);
      next.running = 'comp';
    }
    if (a === 'ackCompensated' && (next.effect !== 0 || next.running === 'do')) {
      bad.push(['compensate-acked-only-when-undone', `compensate acknowledged with effect count ${next.effect}${next.running === 'do' ? ' and a do running' : ''}`]);
    }
    if (a === 'replyStored' && record.state === 'done' && next.effect !== 1) bad.push(['stored-reply-matches-world', `do answered ok from the record but the effect count is ${next.effect}`]);
  }
  if (next.effect > 1) bad.push(['effect-at-most-once', `effect applied ${next.effect} times`]);
  if (record.state === 'compensated' && next.effect !== 0) {
    bad.push(['compensated-key-holds-no-effect', `key ${record.state} with effect count ${next.effect}`]);
  }
  return { next, actions, bad };
}

function keyEvents(w: KeyWorld): KeyEvent[] {
  // A first attempt, and a later one (a retry); a repeat of either is a duplicate.
  const out: KeyEvent[] = [{ type: 'DO', attempt: 1 }, { type: 'DO', attempt: 2 }, { type: 'COMPENSATE' }];
  if (w.running === 'do') out.push({ type: 'DO.OK', result: 'r' }, { type: 'DO.FAILED', error: RETRYABLE }, { type: 'DO.FAILED', error: TERMINAL });
  if (w.running === 'comp') out.push({ type: 'COMPENSATION.OK' }, { type: 'COMPENSATION.FAILED', error: COMP_ERR });
  return out;
}

const keyLabel = (ev: KeyEvent) =>
  ev.type === 'DO.FAILED' ? `DO.FAILED(${ev.error.retryable ? 'retryable' : 'terminal'})` : ev.type === 'DO' ? `DO#${ev.attempt}` : ev.type;

/** Every reachable state of one key under any sequence of requests and worker completions. */
export function exploreKeyMachine(options: { ignore?: readonly string[] } = {}): KeyModelReport {
  const start: KeyWorld = { record: newKeyRecord('h', 0), running: 'none', effect: 0, compensateSeen: false };
  return bfs(start, keyOfWorld, (w) => keyEvents(w).map((ev) => ({ label: keyLabel(ev), ...keyStep(w, ev) })), () => [], undefined, options.ignore);
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
): KeyModelReport & { truncated: boolean } {
  const seen = new Map<string, { s: S; parent: string | undefined; via: string }>();
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
  for (let i = 0; i < queue.length; i++) {
    const k = queue[i] as string;
    const { s } = seen.get(k) as { s: S };
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
// One coordinator step x one worker-host key, over a faulty channel

type Msg =
  | { kind: 'req'; op: 'do' | 'compensate'; attempt: number }
  | { kind: 'reply'; op: 'do' | 'compensate'; attempt: number; ok: boolean; retryable: boolean; code: string };

interface Waiter {
  op: 'do' | 'compensate';
  attempt: number;
  /** Waiting on the running do (`awaitDo`) or compensation. */
  on: 'do' | 'comp';
  /** After the do finishes, decide again (a compensate that waited for its do). */
  again: boolean;
}

interface World {
  saga: { value: unknown; context: SagaContext };
  key: KeyWorld;
  waiters: Waiter[];
  /** Requests the host will decide again (their wait ended). */
  redecide: Waiter[];
  channel: Msg[];
  timers: Record<string, SagaEvent>;
  dupsLeft: number;
  dropsLeft: number;
  /** Operator retries left: each round sends new messages, so the budget keeps the space finite. */
  operatorLeft: number;
}

const msgKey = (m: Msg) => (m.kind === 'req' ? `q:${m.op}:${m.attempt}` : `p:${m.op}:${m.attempt}:${m.ok ? 'ok' : m.code}`);

export interface ProductOptions {
  /** Step retries of the coordinator step. Default 1. */
  stepRetries?: number;
  /** Compensation retries. Default 1. */
  compensationRetries?: number;
  /** How many messages the channel may duplicate in one run. Default 1. */
  duplicates?: number;
  /** How many messages the channel may lose in one run. Default 2. */
  drops?: number;
  /** How many operator retries a parked saga may get. Default 1. */
  operatorRetries?: number;
  /** Stop after this many states. Default 2_000_000. */
  maxStates?: number;
  /** Properties not to report (known core issues under repair). */
  ignore?: readonly string[];
}

/**
 * The product of the real saga machine (one step) with the real key machine (as the
 * worker host applies it) over a channel that loses, duplicates and reorders messages,
 * and timers that fire at any moment. Checks the world's effect count on every state.
 */
export function exploreProduct(defFor: (stepRetries: number, compRetries: number) => SagaDefinition, options: ProductOptions = {}): KeyModelReport & { shape: string } {
  const def = defFor(options.stepRetries ?? 1, options.compensationRetries ?? 1);
  const p = def.steps[0];
  if (p === undefined || def.steps.length !== 1) throw new Error('exploreProduct needs a one-step saga');
  const machine = createSagaMachine(def, { keyOf: () => 'k' });
  const stepper = pureStepper(machine, { sagaId: 'model', input: null });

  const applyCommands = (w: World, cmds: SagaCommand[]) => {
    for (const c of cmds) {
      if (c.type === 'do' || c.type === 'compensate') w.channel.push({ kind: 'req', op: c.type, attempt: c.attempt });
      else if (c.type === 'schedule') w.timers[c.timerId] = c.event;
      else if (c.type === 'cancel') delete w.timers[c.timerId];
    }
  };
  const sagaSend = (w: World, ev: SagaEvent) => {
    const v = w.saga.value;
    if (v === 'committed' || v === 'compensated') return;
    const [s, actions] = stepper.next(w.saga as never, ev);
    w.saga = s as unknown as World['saga'];
    applyCommands(
      w,
      actions.filter((a) => a.type === 'effect').map((a) => a.params as SagaCommand),
    );
    if (w.saga.value === 'committed' || w.saga.value === 'compensated') w.timers = {};
  };
  const clone = (w: World): World => ({
    ...w,
    key: { ...w.key },
    waiters: w.waiters.slice(),
    redecide: w.redecide.slice(),
    channel: w.channel.slice(),
    timers: { ...w.timers },
  });
  const reply = (w: World, q: { op: 'do' | 'compensate'; attempt: number }, ok: boolean, error?: ErrorInfo) => {
    w.channel.push({ kind: 'reply', op: q.op, attempt: q.attempt, ok, retryable: error?.retryable ?? false, code: error?.code ?? '' });
  };
  /** The host decides one request (worker-host.ts `decide`). */
  const decide = (w: World, q: { op: 'do' | 'compensate'; attempt: number }, bad: [string, string][]) => {
    const r = keyStep(w.key, q.op === 'do' ? { type: 'DO', attempt: q.attempt } : { type: 'COMPENSATE' });
    bad.push(...r.bad);
    w.key = r.next;
    for (const a of r.actions) {
      if (a === 'runDo') w.waiters.push({ ...q, on: 'do', again: false });
      else if (a === 'runCompensate') w.waiters.push({ ...q, on: 'comp', again: false });
      else if (a === 'awaitDo') w.waiters.push({ ...q, on: 'do', again: q.op === 'compensate' });
      else if (a === 'awaitCompensation') w.waiters.push({ ...q, on: 'comp', again: false });
      else if (a === 'replyStored') {
        const rec = w.key.record;
        if (rec.state === 'done') reply(w, q, true);
        else reply(w, q, false, rec.error);
      } else if (a === 'refuse') reply(w, q, false, { code: 'COMPENSATED', message: '', retryable: false });
      else if (a === 'ackCompensated') reply(w, q, true);
    }
  };
  const finish = (w: World, on: 'do' | 'comp', ok: boolean, error: ErrorInfo | undefined) => {
    const mine = w.waiters.filter((x) => x.on === on);
    w.waiters = w.waiters.filter((x) => x.on !== on);
    for (const x of mine) {
      if (x.again) w.redecide.push(x);
      else reply(w, x, ok, error);
    }
  };

  const edges = (w: World): Edge<World>[] => {
    const out: Edge<World>[] = [];
    const seenMsg = new Set<string>();
    w.channel.forEach((m, i) => {
      const mk = msgKey(m);
      if (seenMsg.has(mk)) return;
      seenMsg.add(mk);
      for (const mode of ['deliver', 'duplicate', 'drop'] as const) {
        if (mode === 'duplicate' && w.dupsLeft === 0) continue;
        if (mode === 'drop' && w.dropsLeft === 0) continue;
        const n = clone(w);
        const bad: [string, string][] = [];
        if (mode !== 'duplicate') n.channel.splice(i, 1);
        else n.dupsLeft--;
        if (mode === 'drop') n.dropsLeft--;
        else if (m.kind === 'req') decide(n, m, bad);
        else {
          const error = { code: m.code, message: 'model', retryable: m.retryable };
          const ev: SagaEvent =
            m.op === 'do'
              ? m.ok
                ? { type: 'STEP.COMMITTED', stepId: p.id, attempt: m.attempt, result: 'r' }
                : { type: 'STEP.FAILED', stepId: p.id, attempt: m.attempt, error }
              : m.ok
                ? { type: 'COMPENSATION.DONE', stepId: p.id, attempt: m.attempt }
                : { type: 'COMPENSATION.FAILED', stepId: p.id, attempt: m.attempt, error };
          sagaSend(n, ev);
        }
        out.push({ label: `${mode} ${mk}`, next: n, bad });
      }
    });
    for (const [id, ev] of Object.entries(w.timers)) {
      const n = clone(w);
      delete n.timers[id];
      sagaSend(n, ev);
      out.push({ label: `timer ${id} fires`, next: n, bad: [] });
    }
    w.redecide.forEach((q, i) => {
      const n = clone(w);
      const bad: [string, string][] = [];
      n.redecide.splice(i, 1);
      decide(n, q, bad);
      out.push({ label: `host decides again ${q.op}#${q.attempt}`, next: n, bad });
    });
    if (w.key.running === 'do') {
      for (const [label, ev] of [
        ['worker do succeeds', { type: 'DO.OK', result: 'r' }],
        ['worker do fails (retryable)', { type: 'DO.FAILED', error: RETRYABLE }],
        ['worker do fails (terminal)', { type: 'DO.FAILED', error: TERMINAL }],
      ] as const) {
        const n = clone(w);
        const r = keyStep(n.key, ev);
        n.key = r.next;
        const bad = r.bad.slice();
        finish(n, 'do', ev.type === 'DO.OK', ev.type === 'DO.FAILED' ? ev.error : undefined);
        if (r.actions.includes('runCompensate')) n.key.running = 'comp';
        out.push({ label, next: n, bad });
      }
    }
    if (w.key.running === 'comp') {
      for (const [label, ev] of [
        ['worker compensate succeeds', { type: 'COMPENSATION.OK' }],
        ['worker compensate fails', { type: 'COMPENSATION.FAILED', error: COMP_ERR }],
      ] as const) {
        const n = clone(w);
        const r = keyStep(n.key, ev);
        n.key = r.next;
        finish(n, 'comp', ev.type === 'COMPENSATION.OK', ev.type === 'COMPENSATION.FAILED' ? ev.error : undefined);
        out.push({ label, next: n, bad: r.bad });
      }
    }
    if (w.saga.value === 'compensationFailed' && w.operatorLeft > 0) {
      // OPERATOR.RESOLVE is left out: resolving by hand hands the world to the operator.
      const n = clone(w);
      n.operatorLeft--;
      sagaSend(n, { type: 'OPERATOR.RETRY' });
      out.push({ label: 'OPERATOR.RETRY', next: n, bad: [] });
    }
    return out;
  };

  const check = (w: World): [string, string][] => {
    const bad: [string, string][] = [];
    const state = w.saga.value as MachineStateName;
    const effect = w.key.effect;
    if (state === 'committed' && effect !== 1) bad.push(['committed-step-applied-exactly-once', `saga committed with the effect applied ${effect} times`]);
    if (state === 'compensated' && effect !== 0) bad.push(['compensated-step-leaves-no-effect', `saga compensated with the effect applied ${effect} times`]);
    if (state === 'compensationFailed') {
      const o = outcomeOf(def, w.saga.context, state);
      const listed = o?.status === 'compensation-failed' ? o.remaining.length : 0;
      if (effect > listed) bad.push(['compensation-failed-lists-every-remaining-effect', `parked with ${listed} remaining but ${effect} effect(s) in the world`]);
    }
    const quiet = w.channel.length === 0 && Object.keys(w.timers).length === 0 && w.redecide.length === 0 && w.key.running === 'none';
    if (quiet && state !== 'committed' && state !== 'compensated' && state !== 'compensationFailed') {
      bad.push(['no-dead-end', `nothing is in flight and the saga is stuck in ${state} (step ${(w.saga.context.steps[p.id] as StepState).status})`]);
    }
    return bad;
  };

  const [s0, a0] = stepper.initial({ sagaId: 'model', input: null });
  const w0: World = {
    saga: s0 as unknown as World['saga'],
    key: { record: newKeyRecord('h', 0), running: 'none', effect: 0, compensateSeen: false },
    waiters: [],
    redecide: [],
    channel: [],
    timers: {},
    dupsLeft: options.duplicates ?? 1,
    dropsLeft: options.drops ?? 2,
    operatorLeft: options.operatorRetries ?? 1,
  };
  applyCommands(
    w0,
    a0.filter((a) => a.type === 'effect').map((a) => a.params as SagaCommand),
  );
  const serialize = (w: World) => {
    const s = w.saga.context.steps[p.id] as StepState;
    return [
      String(w.saga.value),
      s.status,
      s.attempt,
      s.waiting ? 'w' : '',
      s.result === undefined ? '' : 'r',
      s.compAttempt,
      keyOfWorld(w.key),
      w.waiters.map((x) => `${x.op}${x.attempt}${x.on}${x.again ? 'a' : ''}`).sort().join(','),
      w.redecide.map((x) => `${x.op}${x.attempt}`).sort().join(','),
      w.channel.map(msgKey).sort().join(','),
      Object.keys(w.timers).sort().join(','),
      w.dupsLeft,
      w.dropsLeft,
      w.operatorLeft,
    ].join('|');
  };
  const r = bfs(w0, serialize, edges, check, options.maxStates, options.ignore);
  return { ...r, shape: `1 step x 1 key, retries do/comp ${p.retries}/${p.compensation.retries}, ${options.duplicates ?? 1} duplicate(s), ${options.drops ?? 2} drop(s)` };
}
