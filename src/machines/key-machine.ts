/**
 * The worker-host key machine (DESIGN section 3): what one idempotency key has seen,
 * shared by every host that serves the worker.
 *
 *   new ─do▶ doing ─▶ done | failed | retryable
 *   retryable ─do (a newer attempt)▶ doing; ─do (the same or an older attempt)▶ stored error
 *        (a duplicate of the failed attempt never runs do again)
 *   new ─compensate▶ compensating ─▶ compensated
 *        (no record does not prove no effect: the do may have run before the hosts lost
 *        their memory, so the worker's compensate runs; the key is then a tombstone and a
 *        late do is refused)
 *   doing | compensating ─do or compensate▶ awaitClaim   (the request waits for the claim
 *        to end, then decides again: a compensate never answers while a do may still apply)
 *   done ─compensate▶ compensating ─▶ compensated
 *   compensating ─undo fails▶ undoPending ─compensate▶ compensating   (do stays refused)
 *   failed | retryable ─compensate▶ compensated    (the claim holder saw do fail: nothing to undo)
 *   doing ─claim expired▶ new, interrupted   (its host stopped mid-do: the do may have applied)
 *   compensating ─claim expired▶ undoPending   (its host stopped mid-undo)
 *   interrupted: an earlier run may have applied, so a failure proves nothing: doing ─fail▶
 *        uncertain; a compensate undoes blindly, a do of the same attempt answers
 *        OUTCOME_UNKNOWN, a newer attempt runs again (and stays interrupted)
 *   compensating | undoPending | compensated ─do▶ refused   (the tombstone)
 *   fence (an operator resolving a parked saga): the key refuses every later do, and the
 *        host answers what a do left (`none`, `applied`, `unknown`, `undoPending`,
 *        `compensated`) and which fence closed the key first. new | done | uncertain
 *        ─fence▶ undoPending (an effect may be there: a later compensate still undoes);
 *        failed | retryable ─fence▶ compensated; undoPending | compensated stay. A key
 *        already fenced answers its first fence again. doing | compensating: the fence
 *        waits for the claim, as every request does.
 *
 * Hosts apply it as a pure function with XState's `transition()` over their dedup
 * records: no actor per key. The named actions are what the host must do; claims,
 * leases and the compare-and-set around them live in host-protocol.ts.
 */
import { assign, setup } from 'xstate';
import { pureStepper } from './pure-transition.ts';
import type { ErrorInfo } from '../errors.ts';
import type { FenceRecord, FenceWas, KeyRecord, KeyState } from '../types.ts';

export type KeyEvent =
  | { type: 'DO'; attempt: number }
  | { type: 'COMPENSATE' }
  /** An operator fences the key before resolving its saga: `by` names the fence. */
  | { type: 'FENCE'; by: string }
  | { type: 'DO.OK'; result: unknown }
  | { type: 'DO.FAILED'; error: ErrorInfo }
  | { type: 'COMPENSATION.OK' }
  | { type: 'COMPENSATION.FAILED'; error: ErrorInfo }
  | { type: 'CLAIM.EXPIRED' };

/** What the host must do after a transition. */
export type KeyAction =
  | 'runDo' // claim the key, then start the worker's do
  | 'runCompensate' // claim the key, then start the worker's compensate
  | 'awaitClaim' // another claim runs the key: wait for it to end, then decide again
  | 'replyStored' // answer a do from the stored outcome
  | 'refuse' // answer a do with COMPENSATED: the key was undone, the effect must not apply
  | 'ackCompensated' // answer a compensate with ok: nothing (more) to undo
  | 'ackFenced'; // answer a fence with the key's fence record

interface KeyContext {
  /** The attempt of the last do run (0: none). */
  attempt: number;
  /** An earlier run of this key may have applied its effect. */
  interrupted: boolean;
  result: unknown;
  error: ErrorInfo | undefined;
  /** The first fence of the key, and what a do had left when it came. */
  fence: FenceRecord | undefined;
}

const noop = () => {};

export const keyMachine = setup({
  types: { context: {} as KeyContext, events: {} as KeyEvent },
  actions: {
    runDo: noop,
    runCompensate: noop,
    awaitClaim: noop,
    replyStored: noop,
    refuse: noop,
    ackCompensated: noop,
    ackFenced: noop,
    storeFence: assign(({ context, event }, params: { was: FenceWas }) => ({ fence: { by: (event as { by: string }).by, was: context.interrupted && params.was === 'none' ? 'unknown' : params.was } })),
    storeResult: assign(({ event }) => ({ result: (event as { result: unknown }).result, error: undefined, interrupted: false })),
    storeError: assign(({ event }) => ({ error: (event as { error: ErrorInfo }).error })),
    storeAttempt: assign(({ event }) => ({ attempt: (event as { attempt: number }).attempt })),
    markInterrupted: assign({ interrupted: true }),
    settleDoubt: assign({ interrupted: false }),
  },
  guards: {
    retryable: ({ event }) => (event as { error: ErrorInfo }).error.retryable,
    newerAttempt: ({ context, event }) => (event as { attempt: number }).attempt > context.attempt,
    interrupted: ({ context }) => context.interrupted,
    fenced: ({ context }) => context.fence !== undefined,
  },
}).createMachine({
  id: 'idempotency-key',
  context: { attempt: 0, interrupted: false, result: undefined, error: undefined, fence: undefined },
  initial: 'new',
  states: {
    new: {
      on: {
        FENCE: [{ guard: 'fenced', actions: 'ackFenced' }, { target: 'undoPending', actions: [{ type: 'storeFence', params: { was: 'none' } }, 'ackFenced'] }],
        DO: { target: 'doing', actions: ['storeAttempt', 'runDo'] },
        COMPENSATE: { target: 'compensating', actions: ['settleDoubt', 'runCompensate'] },
      },
    },
    doing: {
      on: {
        FENCE: { actions: 'awaitClaim' },
        DO: { actions: 'awaitClaim' },
        COMPENSATE: { actions: 'awaitClaim' },
        'DO.OK': { target: 'done', actions: 'storeResult' },
        'DO.FAILED': [
          { guard: 'interrupted', target: 'uncertain', actions: 'storeError' },
          { guard: 'retryable', target: 'retryable', actions: 'storeError' },
          { target: 'failed', actions: 'storeError' },
        ],
        'CLAIM.EXPIRED': { target: 'new', actions: 'markInterrupted' },
      },
    },
    uncertain: {
      on: {
        FENCE: [{ guard: 'fenced', actions: 'ackFenced' }, { target: 'undoPending', actions: [{ type: 'storeFence', params: { was: 'unknown' } }, 'ackFenced'] }],
        DO: [{ guard: 'newerAttempt', target: 'doing', actions: ['storeAttempt', 'runDo'] }, { actions: 'replyStored' }],
        COMPENSATE: { target: 'compensating', actions: ['settleDoubt', 'runCompensate'] },
      },
    },
    retryable: {
      on: {
        FENCE: [{ guard: 'fenced', actions: 'ackFenced' }, { target: 'compensated', actions: [{ type: 'storeFence', params: { was: 'none' } }, 'ackFenced'] }],
        DO: [{ guard: 'newerAttempt', target: 'doing', actions: ['storeAttempt', 'runDo'] }, { actions: 'replyStored' }],
        COMPENSATE: { target: 'compensated', actions: 'ackCompensated' },
      },
    },
    done: {
      on: {
        FENCE: [{ guard: 'fenced', actions: 'ackFenced' }, { target: 'undoPending', actions: [{ type: 'storeFence', params: { was: 'applied' } }, 'ackFenced'] }],
        DO: { actions: 'replyStored' },
        COMPENSATE: { target: 'compensating', actions: 'runCompensate' },
      },
    },
    failed: {
      on: {
        FENCE: [{ guard: 'fenced', actions: 'ackFenced' }, { target: 'compensated', actions: [{ type: 'storeFence', params: { was: 'none' } }, 'ackFenced'] }],
        DO: { actions: 'replyStored' },
        COMPENSATE: { target: 'compensated', actions: 'ackCompensated' },
      },
    },
    compensating: {
      on: {
        FENCE: { actions: 'awaitClaim' },
        DO: { actions: 'refuse' },
        COMPENSATE: { actions: 'awaitClaim' },
        'COMPENSATION.OK': { target: 'compensated' },
        'COMPENSATION.FAILED': { target: 'undoPending', actions: 'storeError' },
        'CLAIM.EXPIRED': { target: 'undoPending' },
      },
    },
    undoPending: {
      on: {
        FENCE: [{ guard: 'fenced', actions: 'ackFenced' }, { actions: [{ type: 'storeFence', params: { was: 'undoPending' } }, 'ackFenced'] }],
        DO: { actions: 'refuse' },
        COMPENSATE: { target: 'compensating', actions: 'runCompensate' },
      },
    },
    compensated: {
      on: {
        FENCE: [{ guard: 'fenced', actions: 'ackFenced' }, { actions: [{ type: 'storeFence', params: { was: 'compensated' } }, 'ackFenced'] }],
        DO: { actions: 'refuse' },
        COMPENSATE: { actions: 'ackCompensated' },
      },
    },
  },
});

const HOST_ACTIONS = new Set<string>(['runDo', 'runCompensate', 'awaitClaim', 'replyStored', 'refuse', 'ackCompensated', 'ackFenced']);

/** XState's pure transition over one reused inert scope (see pure-transition.ts). */
const stepper = pureStepper(keyMachine, undefined);

/** The record of a key nobody has seen. */
export function newKeyRecord(inputHash: string, now: number): KeyRecord {
  return { state: 'new', inputHash, updatedAt: now };
}

/** Whether a state means an operation runs under a claim. */
export function isBusy(state: KeyState): boolean {
  return state === 'doing' || state === 'compensating';
}

/** How one kind of transition changes a record, learned from the machine itself. */
interface Effect {
  state: KeyState;
  actions: KeyAction[];
  interrupted: boolean;
  attempt: 'event' | 'keep';
  result: 'event' | 'keep' | 'clear';
  error: 'event' | 'keep' | 'clear';
  /** The fence record: kept, or a new one of the event's fence with this `was`. */
  fence: 'keep' | { was: FenceWas };
}

const EVENT_RESULT = Symbol('event result');
const OLD_RESULT = Symbol('old result');
const EVENT_ERROR: ErrorInfo = { code: 'WORKER_ERROR', message: 'event error', retryable: false };
const OLD_ERROR: ErrorInfo = { code: 'WORKER_ERROR', message: 'old error', retryable: false };
const EVENT_FENCE = 'event fence';
const OLD_FENCE: FenceRecord = { by: 'old fence', was: 'none' };
const memo = new Map<string, Effect>();

/** What the machine's guards read: a transition kind is fixed by these. */
interface Kind {
  state: KeyState;
  interrupted: boolean;
  /** For DO: is the event's attempt newer than the last one run. */
  newer: boolean;
  /** For failures: is the error retryable. */
  retryable: boolean;
  /** An operator fenced the key. */
  fenced: boolean;
}

/**
 * Runs the XState machine once for a kind of transition, with marker values, and
 * remembers what it did. Exact because the machine's guards read only what {@link Kind}
 * holds, which makes up the memo key.
 */
function learn(kind: Kind, type: KeyEvent['type']): Effect {
  const eventError: ErrorInfo = { ...EVENT_ERROR, retryable: kind.retryable };
  const marked: KeyEvent =
    type === 'DO'
      ? { type, attempt: kind.newer ? 2 : 1 }
      : type === 'DO.OK'
        ? { type, result: EVENT_RESULT }
        : type === 'DO.FAILED' || type === 'COMPENSATION.FAILED'
          ? { type, error: eventError }
          : type === 'FENCE'
            ? { type, by: EVENT_FENCE }
            : { type };
  const snapshot = keyMachine.resolveState({
    value: kind.state,
    context: { interrupted: kind.interrupted, attempt: 1, result: OLD_RESULT, error: OLD_ERROR, fence: kind.fenced ? OLD_FENCE : undefined },
  });
  const [next, actions] = stepper.next(snapshot, marked);
  const c = next.context;
  const origin = (v: unknown, fromEvent: unknown, old: unknown) => (v === fromEvent ? 'event' : v === old ? 'keep' : 'clear');
  return {
    state: next.value as KeyState,
    actions: actions.map((a) => a.type).filter((t): t is KeyAction => HOST_ACTIONS.has(t)),
    interrupted: c.interrupted,
    attempt: c.attempt === 2 ? 'event' : 'keep',
    result: origin(c.result, EVENT_RESULT, OLD_RESULT),
    error: origin(c.error, eventError, OLD_ERROR),
    fence: c.fence !== undefined && c.fence.by === EVENT_FENCE ? { was: c.fence.was } : 'keep',
  };
}

/**
 * Applies one event to a key record. Pure: returns the next record and what the host
 * must do; an event the state does not accept returns the record unchanged and no action.
 * The next record holds no claim (`owner`, `leaseUntil`): the host adds its own when it
 * starts an operation. Each kind of transition is computed by the XState machine once and
 * then reused.
 */
export function stepKey(record: KeyRecord, event: KeyEvent, now: number): { record: KeyRecord; actions: KeyAction[] } {
  const kind: Kind = {
    state: record.state,
    interrupted: record.interrupted === true,
    newer: event.type === 'DO' && event.attempt > (record.attempt ?? 0),
    retryable: (event.type === 'DO.FAILED' || event.type === 'COMPENSATION.FAILED') && event.error.retryable,
    fenced: record.fence !== undefined,
  };
  const memoKey = `${kind.state}|${event.type}|${+kind.interrupted}${+kind.newer}${+kind.retryable}${+kind.fenced}`;
  let effect = memo.get(memoKey);
  if (effect === undefined) {
    effect = learn(kind, event.type);
    memo.set(memoKey, effect);
  }
  const result = effect.result === 'event' ? (event as { result: unknown }).result : effect.result === 'keep' ? record.result : undefined;
  const error = effect.error === 'event' ? (event as { error: ErrorInfo }).error : effect.error === 'keep' ? record.error : undefined;
  const attempt = effect.attempt === 'event' ? (event as { attempt: number }).attempt : record.attempt;
  const fence = effect.fence === 'keep' ? record.fence : { by: (event as { by: string }).by, was: effect.fence.was };
  const next: KeyRecord = {
    state: effect.state,
    inputHash: record.inputHash,
    ...(effect.interrupted ? { interrupted: true } : {}),
    ...(attempt !== undefined ? { attempt } : {}),
    ...(result !== undefined ? { result } : {}),
    ...(error !== undefined ? { error } : {}),
    ...(fence !== undefined ? { fence } : {}),
    updatedAt: now,
  };
  return { record: next, actions: effect.actions.slice() };
}
