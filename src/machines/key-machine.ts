/**
 * The worker-host key machine (DESIGN section 3): what one idempotency key has seen.
 *
 *   new ─do▶ doing ─▶ done | failed | retryable
 *   retryable ─do (a newer attempt)▶ doing; ─do (the same or an older attempt)▶ stored error
 *        (a duplicate of the failed attempt never runs do again)
 *   new ─compensate▶ compensating ─▶ compensated
 *        (no record does not prove no effect: the do may have run before this host
 *        lost its memory, or on another host, so the worker's compensate runs; the
 *        key is then a tombstone and a late do is refused; if that undo fails the key
 *        waits in undoPending, which refuses do too)
 *   doing ─compensate▶ (waits for do) ─▶ compensating ─▶ compensated
 *   done ─compensate▶ compensating ─▶ compensated   (a failed undo returns to done)
 *   failed | retryable ─compensate▶ compensated    (the host saw do fail: nothing to undo)
 *   doing ─fail▶ uncertain   when this do re-ran one a crashed host left unfinished: the
 *        first run may have applied, so the failure proves nothing; a compensate undoes
 *        blindly, a do answers OUTCOME_UNKNOWN (a newer attempt runs again)
 *   compensating | undoPending | compensated ─do▶ refused   (the tombstone)
 *
 * Worker hosts apply it as a pure function with XState's `transition()` over their
 * dedup records: no actor per key. The named actions are what the host must do.
 */
import { assign, setup } from 'xstate';
import { pureStepper } from './pure-transition.ts';
import type { ErrorInfo } from '../errors.ts';
import type { KeyRecord, KeyState } from '../types.ts';

export type KeyEvent =
  | { type: 'DO'; attempt: number }
  | { type: 'COMPENSATE' }
  | { type: 'DO.OK'; result: unknown }
  | { type: 'DO.FAILED'; error: ErrorInfo }
  | { type: 'COMPENSATION.OK' }
  | { type: 'COMPENSATION.FAILED'; error: ErrorInfo };

/** What the host must do after a transition. */
export type KeyAction =
  | 'runDo' // start the worker's do
  | 'awaitDo' // wait for the do in flight, then answer from the record
  | 'runCompensate' // start the worker's compensate
  | 'awaitCompensation' // wait for the compensation in flight, then answer
  | 'replyStored' // answer a do from the stored outcome
  | 'refuse' // answer a do with COMPENSATED: the key was undone, the effect must not apply
  | 'ackCompensated'; // answer a compensate with ok: nothing (more) to undo

interface KeyContext {
  compensateRequested: boolean;
  /** The running or failed compensation started without a do seen here. */
  blind: boolean;
  /** The attempt of the last do this host ran (0: none). */
  attempt: number;
  /** This do re-runs one that a crashed host left unfinished. */
  interrupted: boolean;
  result: unknown;
  error: ErrorInfo | undefined;
}

const noop = () => {};

export const keyMachine = setup({
  types: { context: {} as KeyContext, events: {} as KeyEvent },
  actions: {
    runDo: noop,
    awaitDo: noop,
    runCompensate: noop,
    awaitCompensation: noop,
    replyStored: noop,
    refuse: noop,
    ackCompensated: noop,
    requestCompensation: assign({ compensateRequested: true }),
    storeResult: assign(({ event }) => ({ result: (event as { result: unknown }).result, error: undefined })),
    storeError: assign(({ event }) => ({ error: (event as { error: ErrorInfo }).error })),
    clearRequest: assign({ compensateRequested: false }),
    storeAttempt: assign(({ event }) => ({ attempt: (event as { attempt: number }).attempt })),
    markBlind: assign({ blind: true }),
  },
  guards: {
    compensateRequested: ({ context }) => context.compensateRequested,
    retryable: ({ event }) => (event as { error: ErrorInfo }).error.retryable,
    newerAttempt: ({ context, event }) => (event as { attempt: number }).attempt > context.attempt,
    blind: ({ context }) => context.blind,
    interrupted: ({ context }) => context.interrupted,
    interruptedAndCompensateRequested: ({ context }) => context.interrupted && context.compensateRequested,
  },
}).createMachine({
  id: 'idempotency-key',
  context: { compensateRequested: false, blind: false, attempt: 0, interrupted: false, result: undefined, error: undefined },
  initial: 'new',
  states: {
    new: {
      on: {
        DO: { target: 'doing', actions: ['storeAttempt', 'runDo'] },
        COMPENSATE: { target: 'compensating', actions: ['markBlind', 'runCompensate'] },
      },
    },
    doing: {
      on: {
        DO: { actions: 'awaitDo' },
        COMPENSATE: { actions: ['requestCompensation', 'awaitDo'] },
        'DO.OK': [
          { guard: 'compensateRequested', target: 'compensating', actions: ['storeResult', 'clearRequest', 'runCompensate'] },
          { target: 'done', actions: 'storeResult' },
        ],
        'DO.FAILED': [
          { guard: 'interruptedAndCompensateRequested', target: 'compensating', actions: ['storeError', 'clearRequest', 'markBlind', 'runCompensate'] },
          { guard: 'interrupted', target: 'uncertain', actions: 'storeError' },
          { guard: 'compensateRequested', target: 'compensated', actions: ['storeError', 'clearRequest'] },
          { guard: 'retryable', target: 'retryable', actions: 'storeError' },
          { target: 'failed', actions: 'storeError' },
        ],
      },
    },
    uncertain: {
      on: {
        DO: [{ guard: 'newerAttempt', target: 'doing', actions: ['storeAttempt', 'runDo'] }, { actions: 'replyStored' }],
        COMPENSATE: { target: 'compensating', actions: ['markBlind', 'runCompensate'] },
      },
    },
    retryable: {
      on: {
        DO: [{ guard: 'newerAttempt', target: 'doing', actions: ['storeAttempt', 'runDo'] }, { actions: 'replyStored' }],
        COMPENSATE: { target: 'compensated', actions: 'ackCompensated' },
      },
    },
    done: {
      on: {
        DO: { actions: 'replyStored' },
        COMPENSATE: { target: 'compensating', actions: 'runCompensate' },
      },
    },
    failed: {
      on: {
        DO: { actions: 'replyStored' },
        COMPENSATE: { target: 'compensated', actions: 'ackCompensated' },
      },
    },
    compensating: {
      on: {
        DO: { actions: 'refuse' },
        COMPENSATE: { actions: 'awaitCompensation' },
        'COMPENSATION.OK': { target: 'compensated' },
        'COMPENSATION.FAILED': [
          { guard: 'blind', target: 'undoPending', actions: 'storeError' },
          { target: 'done', actions: 'storeError' },
        ],
      },
    },
    undoPending: {
      on: {
        DO: { actions: 'refuse' },
        COMPENSATE: { target: 'compensating', actions: 'runCompensate' },
      },
    },
    compensated: {
      on: {
        DO: { actions: 'refuse' },
        COMPENSATE: { actions: 'ackCompensated' },
      },
    },
  },
});

const HOST_ACTIONS = new Set<string>(['runDo', 'awaitDo', 'runCompensate', 'awaitCompensation', 'replyStored', 'refuse', 'ackCompensated']);

/** XState's pure transition over one reused inert scope (see pure-transition.ts). */
const stepper = pureStepper(keyMachine, undefined);

function transitionKey(snapshot: ReturnType<typeof keyMachine.resolveState>, event: KeyEvent) {
  return stepper.next(snapshot, event);
}

/** The record of a key nobody has seen. */
export function newKeyRecord(inputHash: string, now: number): KeyRecord {
  return { state: 'new', compensateRequested: false, inputHash, updatedAt: now };
}

/** How one kind of transition changes a record, learned from the machine itself. */
interface Effect {
  state: KeyState;
  actions: KeyAction[];
  compensateRequested: boolean;
  blind: boolean;
  attempt: 'event' | 'keep';
  result: 'event' | 'keep' | 'clear';
  error: 'event' | 'keep' | 'clear';
}

const EVENT_RESULT = Symbol('event result');
const OLD_RESULT = Symbol('old result');
const EVENT_ERROR: ErrorInfo = { code: 'WORKER_ERROR', message: 'event error', retryable: false };
const OLD_ERROR: ErrorInfo = { code: 'WORKER_ERROR', message: 'old error', retryable: false };
const memo = new Map<string, Effect>();

/** What the machine's guards read: a transition kind is fixed by these. */
interface Kind {
  state: KeyState;
  compensateRequested: boolean;
  blind: boolean;
  interrupted: boolean;
  /** For DO: is the event's attempt newer than the last one run. */
  newer: boolean;
  /** For failures: is the error retryable. */
  retryable: boolean;
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
          : { type };
  const snapshot = keyMachine.resolveState({
    value: kind.state,
    context: { compensateRequested: kind.compensateRequested, blind: kind.blind, interrupted: kind.interrupted, attempt: 1, result: OLD_RESULT, error: OLD_ERROR },
  });
  const [next, actions] = transitionKey(snapshot, marked);
  const c = next.context;
  const origin = (v: unknown, fromEvent: unknown, old: unknown) => (v === fromEvent ? 'event' : v === old ? 'keep' : 'clear');
  return {
    state: next.value as KeyState,
    actions: actions.map((a) => a.type).filter((t): t is KeyAction => HOST_ACTIONS.has(t)),
    compensateRequested: c.compensateRequested,
    blind: c.blind,
    attempt: c.attempt === 2 ? 'event' : 'keep',
    result: origin(c.result, EVENT_RESULT, OLD_RESULT),
    error: origin(c.error, eventError, OLD_ERROR),
  };
}

/**
 * Applies one event to a key record. Pure: returns the next record and what the host
 * must do; an event the state does not accept returns the record unchanged and no action.
 * Each kind of transition is computed by the XState machine once and then reused.
 */
export function stepKey(record: KeyRecord, event: KeyEvent, now: number): { record: KeyRecord; actions: KeyAction[] } {
  const kind: Kind = {
    state: record.state,
    compensateRequested: record.compensateRequested,
    blind: record.blind === true,
    interrupted: record.interrupted === true,
    newer: event.type === 'DO' && event.attempt > (record.attempt ?? 0),
    retryable: (event.type === 'DO.FAILED' || event.type === 'COMPENSATION.FAILED') && event.error.retryable,
  };
  const memoKey = `${kind.state}|${event.type}|${+kind.compensateRequested}${+kind.blind}${+kind.interrupted}${+kind.newer}${+kind.retryable}`;
  let effect = memo.get(memoKey);
  if (effect === undefined) {
    effect = learn(kind, event.type);
    memo.set(memoKey, effect);
  }
  const result = effect.result === 'event' ? (event as { result: unknown }).result : effect.result === 'keep' ? record.result : undefined;
  const error = effect.error === 'event' ? (event as { error: ErrorInfo }).error : effect.error === 'keep' ? record.error : undefined;
  const attempt = effect.attempt === 'event' ? (event as { attempt: number }).attempt : record.attempt;
  const busy = effect.state === 'doing' || effect.state === 'compensating';
  const next: KeyRecord = {
    state: effect.state,
    compensateRequested: effect.compensateRequested,
    inputHash: record.inputHash,
    ...(effect.blind ? { blind: true } : {}),
    ...(record.interrupted === true && effect.state === 'doing' ? { interrupted: true } : {}),
    ...(attempt !== undefined ? { attempt } : {}),
    ...(result !== undefined ? { result } : {}),
    ...(error !== undefined ? { error } : {}),
    ...(busy && record.leaseUntil !== undefined ? { leaseUntil: record.leaseUntil } : {}),
    updatedAt: now,
  };
  return { record: next, actions: effect.actions.slice() };
}
