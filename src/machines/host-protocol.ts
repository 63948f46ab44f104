/**
 * The worker host's protocol for one request, as a pure reducer: what to read, what to
 * write (compare-and-set on the key's revision), when to run user code, when to wait,
 * and what to answer. The worker host (src/actors/worker-host.ts) only performs the
 * commands it emits; the model checker and the simulation drive the same reducer.
 *
 * The rules that make it safe with any number of hosts sharing one dedup store:
 *
 * - **Claim before effect.** User code for a key runs only after the host's claim (the
 *   next record: state, attempt, owner, lease) has been written with compare-and-set on
 *   the revision it decided from. A lost compare-and-set means read again and decide
 *   again, never "run anyway".
 * - **Answers only from a record that still holds.** An answer that changes the record
 *   (a tombstone, "nothing to undo") is sent only after its write won; an answer from an
 *   unchanged record is a read of a state that no later write can contradict.
 * - **A busy key is waited for.** A `doing` or `compensating` key whose claim is live
 *   (its lease not passed, or its operation running in this process) makes any request
 *   wait and decide again; a compensate never answers while a `do` may still apply. Once
 *   the lease has passed, the holder is presumed dead and the key is taken over
 *   (`CLAIM.EXPIRED`): an interrupted `do` may have applied, an interrupted undo may not
 *   have finished.
 * - **The holder checks its claim before it answers.** A completion is written with
 *   compare-and-set on the claim's own revision. If another host took the key over in the
 *   meantime (the holder could not renew its lease), a failure proves nothing (the answer
 *   is OUTCOME_UNKNOWN), and a `do` that applied after the key was undone is undone again
 *   by the holder itself.
 */
import type { ErrorInfo } from '../errors.ts';
import type { KeyRecord, WorkerOp, WorkerReply, WorkerRequest } from '../types.ts';
import { isBusy, newKeyRecord, stepKey } from './key-machine.ts';
import type { KeyEvent } from './key-machine.ts';

/** What does not change while one request is handled. */
export interface RequestSetup {
  readonly req: WorkerRequest;
  /** Fingerprint of the request's input. */
  readonly inputHash: string;
  /** The claim id this request writes when it starts an operation: `<host>/<n>`. */
  readonly owner: string;
  /** How long a claim holds without renewal. */
  readonly leaseMs: number;
}

/** How user code ended. */
export interface RunOutcome {
  readonly event: Extract<KeyEvent, { type: 'DO.OK' | 'DO.FAILED' | 'COMPENSATION.OK' | 'COMPENSATION.FAILED' }>;
  /** The do applied but its result cannot be stored or returned (not plain JSON): the answer is RESULT_NOT_SERIALIZABLE (in doubt). */
  readonly unsendable?: ErrorInfo;
}

/** A claim this request holds: the record as last written under it, and that write's revision. */
export interface Claim {
  readonly op: WorkerOp;
  readonly owner: string;
  readonly record: KeyRecord;
  readonly revision: number;
  /**
   * Undoing an effect that applied after its key was taken over (0: no): the n-th try.
   * Nobody else will ask for this undo, so the host keeps trying while it lives.
   */
  readonly selfUndo: number;
}

type WriteThen = { readonly reply: WorkerReply } | { readonly run: WorkerOp; readonly result: unknown };

export type RequestState =
  /** A read is out; `conflicts` counts lost compare-and-sets, `wrote` whether any write was tried. */
  | { readonly phase: 'deciding'; readonly conflicts: number }
  | { readonly phase: 'writing'; readonly conflicts: number; readonly record: KeyRecord; readonly then: WriteThen }
  | { readonly phase: 'waiting'; readonly conflicts: number }
  | {
      readonly phase: 'running';
      readonly claim: Claim;
      /** A lease renewal being written. */
      readonly renewing: KeyRecord | undefined;
      /** The outcome, when user code ended while a renewal was being written. */
      readonly outcome: RunOutcome | undefined;
      readonly lost: boolean;
    }
  /** `answered`: the request was answered already (OUTCOME_UNKNOWN, while the store failed); no second answer follows. */
  | { readonly phase: 'completing'; readonly claim: Claim; readonly outcome: RunOutcome; readonly record: KeyRecord; readonly answered?: true }
  /**
   * The completion lost its compare-and-set, or the store failed under it: reading whose
   * the key is now. `failures`: reads or writes of this recheck that the store failed.
   */
  | { readonly phase: 'rechecking'; readonly claim: Claim; readonly outcome: RunOutcome; readonly answered?: true; readonly failures?: number }
  /**
   * Our do applied after the key was taken over and undone or refused: this host undoes
   * it itself, again and again until it succeeds (nobody else will ask). `writing`: the
   * undo's claim being written; `failures`: own undos that failed so far.
   */
  | { readonly phase: 'undoing'; readonly owner: string; readonly result: unknown; readonly failures: number; readonly writing: KeyRecord | undefined }
  | { readonly phase: 'done' };

export type HostEvent =
  /** `live`: the record's claim is held by a host that runs it (lease not passed, or running here). */
  | { readonly type: 'READ'; readonly record: KeyRecord | undefined; readonly revision: number; readonly live: boolean; readonly now: number }
  | { readonly type: 'WRITTEN'; readonly revision: number; readonly now: number }
  | { readonly type: 'CONFLICT'; readonly now: number }
  | { readonly type: 'WAITED'; readonly now: number }
  | { readonly type: 'RAN'; readonly outcome: RunOutcome; readonly now: number }
  /** Time to renew the running claim's lease. */
  | { readonly type: 'RENEW'; readonly now: number }
  | { readonly type: 'STORE_FAILED'; readonly error: ErrorInfo; readonly now: number };

export type HostCommand =
  | { readonly type: 'read' }
  | { readonly type: 'write'; readonly record: KeyRecord; readonly revision: number }
  /** Wait until `until` at most (or until the claim `owner` ends, when it runs here), then read again. */
  | { readonly type: 'wait'; readonly until: number; readonly owner: string | undefined }
  /** Start user code. Emitted only once `claim` has been written. */
  | { readonly type: 'run'; readonly op: WorkerOp; readonly input: unknown; readonly result: unknown; readonly claim: Claim }
  /** The running claim was taken over by another host: abort the user code's signal. */
  | { readonly type: 'abort'; readonly owner: string }
  /** The claim ended: stop renewing it. */
  | { readonly type: 'release'; readonly owner: string }
  | { readonly type: 'reply'; readonly reply: WorkerReply };

export interface Transition {
  readonly state: RequestState;
  readonly commands: readonly HostCommand[];
}

/** Compare-and-set conflicts one request tolerates before it answers IN_PROGRESS. */
export const MAX_CONFLICTS = 16;

const fail = (code: string, message: string, retryable: boolean): WorkerReply => ({ ok: false, error: { code, message, retryable } });

export const replies = {
  inProgress: (req: WorkerRequest, why: string) => fail('IN_PROGRESS', `key ${req.key} is busy: ${why}; ask again`, true),
  outcomeUnknown: (req: WorkerRequest, why: string) =>
    fail('OUTCOME_UNKNOWN', `the outcome of ${req.op} for key ${req.key} is unknown (${why}); it may have applied`, true),
  storeUnavailable: (req: WorkerRequest, error: ErrorInfo) =>
    fail('TRANSPORT_ERROR', `the dedup store could not be reached (${error.message}); nothing ran for key ${req.key}`, true),
  compensated: (req: WorkerRequest) => fail('COMPENSATED', `key ${req.key} was already compensated: this do must not apply`, false),
  keyConflict: (req: WorkerRequest) => fail('KEY_CONFLICT', `idempotency key ${req.key} was first used with a different input`, false),
};

/**
 * The first commands for a new request. A `do`'s first attempt expects its key to be new
 * and writes its claim at once, as a create (revision 0), which lands only on a key that
 * holds nothing: the very write a read that found nothing would lead to, without the read.
 * On a conflict it reads, as every request does. Any other request reads first.
 */
export function startRequest(setup: RequestSetup, now: number): Transition {
  if (setup.req.op === 'do' && setup.req.attempt === 1) return decide(setup, { type: 'READ', record: undefined, revision: 0, live: false, now }, 0);
  return { state: { phase: 'deciding', conflicts: 0 }, commands: [{ type: 'read' }] };
}

const done = (reply: WorkerReply, ...before: HostCommand[]): Transition => ({ state: { phase: 'done' }, commands: [...before, { type: 'reply', reply }] });

const readAgain = (conflicts: number): Transition => ({ state: { phase: 'deciding', conflicts }, commands: [{ type: 'read' }] });

/** The answer a stored record gives a repeated request. */
function storedReply(setup: RequestSetup, rec: KeyRecord): WorkerReply {
  // A do whose result could not be sent keeps answering so: the step stays in doubt.
  if (rec.state === 'done') return rec.error !== undefined ? { ok: false, error: rec.error } : { ok: true, result: rec.result };
  if (rec.state === 'uncertain') return replies.outcomeUnknown(setup.req, 'an earlier run was interrupted and may have applied');
  return { ok: false, error: rec.error ?? { code: 'WORKER_ERROR', message: `the do of worker '${setup.req.worker}' for key ${setup.req.key} failed`, retryable: false } };
}

/** Decides from a fresh read: answer, write and answer, claim and run, or wait. */
function decide(setup: RequestSetup, ev: Extract<HostEvent, { type: 'READ' }>, conflicts: number): Transition {
  const { req } = setup;
  const now = ev.now;
  let current = ev.record ?? newKeyRecord(setup.inputHash, now);
  if (req.op === 'do' && ev.record !== undefined && current.state !== 'new' && current.inputHash !== '' && current.inputHash !== setup.inputHash) {
    return done(replies.keyConflict(req));
  }
  let changed = ev.record === undefined;
  if (isBusy(current.state)) {
    if (ev.live) {
      if (now >= req.deadline) return done(replies.inProgress(req, `${current.state === 'doing' ? 'its do' : 'its undo'} runs under claim ${current.owner ?? '?'}`));
      const until = current.owner !== undefined && current.leaseUntil !== undefined ? Math.min(req.deadline, current.leaseUntil) : req.deadline;
      return { state: { phase: 'waiting', conflicts }, commands: [{ type: 'wait', until, owner: current.owner }] };
    }
    // The holder is gone: take the key over.
    current = stepKey(current, { type: 'CLAIM.EXPIRED' }, now).record;
    changed = true;
  }
  if (current.state === 'new') current = { ...current, inputHash: setup.inputHash };
  const event: KeyEvent = req.op === 'do' ? { type: 'DO', attempt: req.attempt } : req.op === 'compensate' ? { type: 'COMPENSATE' } : { type: 'FENCE', by: req.fence ?? '' };
  const stepped = stepKey(current, event, now);
  const next = stepped.record;
  for (const action of stepped.actions) {
    switch (action) {
      case 'runDo':
      case 'runCompensate': {
        const claimed: KeyRecord = { ...next, owner: setup.owner, leaseUntil: now + setup.leaseMs };
        const op: WorkerOp = action === 'runDo' ? 'do' : 'compensate';
        return {
          state: { phase: 'writing', conflicts, record: claimed, then: { run: op, result: op === 'compensate' ? (next.result ?? req.result) : undefined } },
          commands: [{ type: 'write', record: claimed, revision: ev.revision }],
        };
      }
      case 'ackCompensated': {
        if (next.state === current.state && !changed) return done({ ok: true });
        return { state: { phase: 'writing', conflicts, record: next, then: { reply: { ok: true } } }, commands: [{ type: 'write', record: next, revision: ev.revision }] };
      }
      case 'ackFenced': {
        const reply: WorkerReply = { ok: true, result: next.fence };
        if (!changed && next.fence === current.fence && next.state === current.state) return done(reply);
        return { state: { phase: 'writing', conflicts, record: next, then: { reply } }, commands: [{ type: 'write', record: next, revision: ev.revision }] };
      }
      case 'replyStored':
        return done(storedReply(setup, next));
      case 'refuse':
        return done(replies.compensated(req));
      case 'awaitClaim':
        // Only a busy record awaits a claim, and busy records are handled above.
        break;
    }
  }
  return done(fail('PROTOCOL_ERROR', `key ${req.key} in state ${next.state} cannot take ${req.op}`, false));
}

/** The answer to the request once its claimed operation is recorded (a host's own undo ends in `ownUndoEnded` instead). */
function completionReply(setup: RequestSetup, outcome: RunOutcome, written: KeyRecord): WorkerReply {
  const { req } = setup;
  switch (outcome.event.type) {
    case 'DO.OK':
      return outcome.unsendable !== undefined ? { ok: false, error: outcome.unsendable } : { ok: true, result: outcome.event.result };
    case 'DO.FAILED':
      return written.state === 'uncertain' ? replies.outcomeUnknown(req, 'a re-run of an interrupted do failed; the first run may have applied') : { ok: false, error: outcome.event.error };
    case 'COMPENSATION.OK':
      return { ok: true };
    case 'COMPENSATION.FAILED':
      return { ok: false, error: outcome.event.error };
  }
}

/** User code ended (or a renewal finished after it did): write the outcome under the claim. */
function complete(claim: Claim, outcome: RunOutcome, now: number, answered?: true): Transition {
  const stepped = stepKey(claim.record, outcome.event, now).record;
  const record = outcome.unsendable !== undefined ? { ...stepped, error: outcome.unsendable } : stepped;
  return { state: { phase: 'completing', claim, outcome, record, ...(answered ? { answered } : {}) }, commands: [{ type: 'write', record, revision: claim.revision }] };
}

/** Leaves out the answer of a request that was answered already. */
function unanswered(t: Transition, answered: true | undefined): Transition {
  return answered ? { state: t.state, commands: t.commands.filter((c) => c.type !== 'reply') } : t;
}

/**
 * The store failed under an outcome (its write, or the read of a recheck). A failure or an
 * undo has no effect to look after: the answer is OUTCOME_UNKNOWN, and the request ends.
 * A `do` that applied is another matter: whether the key is still this claim's is unknown. Another host may have taken
 * it over and undone or refused it, and then nobody but this host knows of the effect. The
 * request is answered OUTCOME_UNKNOWN at once (in doubt: the saga compensates), and the
 * host keeps reading the key, with backoff, until it can tell: still its own, it records
 * the outcome; taken over, it undoes the effect itself when it must (recheck).
 */
function storeFailedUnder(setup: RequestSetup, claim: Claim, outcome: RunOutcome, failures: number, answered: true | undefined, ev: Extract<HostEvent, { type: 'STORE_FAILED' }>): Transition {
  const unknown = replies.outcomeUnknown(setup.req, `the dedup store failed: ${ev.error.message}`);
  if (outcome.event.type !== 'DO.OK' || claim.selfUndo > 0) return unanswered(done(unknown, { type: 'release', owner: claim.owner }), answered);
  return {
    state: { phase: 'rechecking', claim, outcome, answered: true, failures },
    commands: [
      { type: 'release', owner: claim.owner },
      ...(answered ? [] : [{ type: 'reply' as const, reply: unknown }]),
      { type: 'wait', until: ev.now + selfUndoBackoff(failures - 1), owner: undefined },
    ],
  };
}

/** This host's own undo ended and was written, or the store failed under it: done when it undid the effect, else tried again after a pause. */
function ownUndoEnded(claim: Claim, outcome: RunOutcome, now: number): Transition {
  const release = { type: 'release' as const, owner: claim.owner };
  if (outcome.event.type === 'COMPENSATION.OK') return { state: { phase: 'done' }, commands: [release] };
  const failures = claim.selfUndo;
  return {
    state: { phase: 'undoing', owner: claim.owner, result: claim.record.result, failures, writing: undefined },
    commands: [release, { type: 'wait', until: now + selfUndoBackoff(failures), owner: undefined }],
  };
}

/** Pause before a host tries its own undo again: 100 ms doubling, at most 30 s. */
export function selfUndoBackoff(failures: number): number {
  return Math.min(30_000, 100 * 2 ** Math.min(failures, 9));
}

/**
 * The completion found the key taken over by another host. A failure or an undo proves
 * nothing then: the answer is OUTCOME_UNKNOWN. A do that applied is accounted for by
 * whoever re-runs or ran the same key; if the key was undone or refused instead, the
 * effect may have landed after that undo, and this host undoes it itself.
 */
function recheck(setup: RequestSetup, claim: Claim, outcome: RunOutcome, ev: Extract<HostEvent, { type: 'READ' }>, answered?: true): Transition {
  const { req } = setup;
  const rec = ev.record;
  if (rec === undefined || rec.owner === claim.owner) {
    // Still ours (a write of ours landed after all), or forgotten by a bounded store with
    // nobody writing it since: complete on the fresh revision.
    return complete({ ...claim, record: rec ?? claim.record, revision: ev.revision }, outcome, ev.now, answered);
  }
  const lost = { type: 'release' as const, owner: claim.owner };
  const unknown = replies.outcomeUnknown(req, 'another host took the key over while this one ran it');
  if (claim.selfUndo > 0 || outcome.event.type !== 'DO.OK' || rec.state === 'doing' || rec.state === 'done' || rec.state === 'uncertain') return unanswered(done(unknown, lost), answered);
  const undoing: RequestState = { phase: 'undoing', owner: `${claim.owner}+undo`, result: outcome.event.result, failures: 0, writing: undefined };
  const next = undo(setup, undoing, ev);
  return { state: next.state, commands: [lost, ...(answered ? [] : [{ type: 'reply' as const, reply: unknown }]), ...next.commands] };
}

/** The host's own undo, from a fresh read: wait for a live claim, else claim the key and run compensate. */
function undo(setup: RequestSetup, state: Extract<RequestState, { phase: 'undoing' }>, ev: Extract<HostEvent, { type: 'READ' }>): Transition {
  const rec = ev.record;
  if (rec !== undefined && isBusy(rec.state) && ev.live) {
    return { state: { ...state, writing: undefined }, commands: [{ type: 'wait', until: Math.max(ev.now + 1, rec.leaseUntil ?? ev.now + 1), owner: rec.owner }] };
  }
  const claimed: KeyRecord = {
    state: 'compensating',
    inputHash: rec?.inputHash ?? setup.inputHash,
    ...(rec?.attempt !== undefined ? { attempt: rec.attempt } : {}),
    ...(state.result !== undefined ? { result: state.result } : {}),
    owner: state.owner,
    leaseUntil: ev.now + setup.leaseMs,
    updatedAt: ev.now,
  };
  return { state: { ...state, writing: claimed }, commands: [{ type: 'write', record: claimed, revision: ev.revision }] };
}

/** Advances one request by one event. Pure. */
export function stepRequest(setup: RequestSetup, state: RequestState, ev: HostEvent): Transition {
  const { req } = setup;
  switch (state.phase) {
    case 'deciding':
      if (ev.type === 'READ') return decide(setup, ev, state.conflicts);
      if (ev.type === 'STORE_FAILED') return done(replies.storeUnavailable(req, ev.error));
      break;
    case 'waiting':
      if (ev.type === 'WAITED') return readAgain(state.conflicts);
      break;
    case 'writing':
      if (ev.type === 'WRITTEN') {
        const then = state.then;
        if ('reply' in then) return done(then.reply);
        const owner = state.record.owner as string;
        const claim: Claim = { op: then.run, owner, record: state.record, revision: ev.revision, selfUndo: 0 };
        return {
          state: { phase: 'running', claim, renewing: undefined, outcome: undefined, lost: false },
          commands: [{ type: 'run', op: then.run, input: req.input, result: then.result, claim }],
        };
      }
      if (ev.type === 'CONFLICT') {
        if (state.conflicts + 1 >= MAX_CONFLICTS) return done(replies.inProgress(req, 'it kept changing while this request decided'));
        return readAgain(state.conflicts + 1);
      }
      if (ev.type === 'STORE_FAILED') {
        // A claim that may have landed runs nothing: it expires like a dead host's claim.
        return done(replies.storeUnavailable(req, ev.error));
      }
      break;
    case 'running':
      if (ev.type === 'RAN') {
        if (state.renewing !== undefined) return { state: { ...state, outcome: ev.outcome }, commands: [] };
        return complete(state.claim, ev.outcome, ev.now);
      }
      if (ev.type === 'RENEW') {
        if (state.renewing !== undefined || state.lost) return { state, commands: [] };
        const renewed: KeyRecord = { ...state.claim.record, leaseUntil: ev.now + setup.leaseMs, updatedAt: ev.now };
        return { state: { ...state, renewing: renewed }, commands: [{ type: 'write', record: renewed, revision: state.claim.revision }] };
      }
      if (ev.type === 'WRITTEN' && state.renewing !== undefined) {
        const claim = { ...state.claim, record: state.renewing, revision: ev.revision };
        if (state.outcome !== undefined) return complete(claim, state.outcome, ev.now);
        return { state: { ...state, claim, renewing: undefined }, commands: [] };
      }
      if ((ev.type === 'CONFLICT' || ev.type === 'STORE_FAILED') && state.renewing !== undefined) {
        const next = { ...state, renewing: undefined };
        if (ev.type === 'CONFLICT') {
          // Someone else wrote the key: the claim is lost (this host could not renew in time).
          if (state.outcome !== undefined) return { state: { phase: 'rechecking', claim: state.claim, outcome: state.outcome }, commands: [{ type: 'read' }] };
          return { state: { ...next, lost: true }, commands: [{ type: 'abort', owner: state.claim.owner }] };
        }
        if (state.outcome !== undefined) return complete(state.claim, state.outcome, ev.now);
        return { state: next, commands: [] };
      }
      break;
    case 'completing':
      // This host's own undo (answered already), written or not: nobody else will ask for it.
      if ((ev.type === 'WRITTEN' || ev.type === 'STORE_FAILED') && state.claim.selfUndo > 0) return ownUndoEnded(state.claim, state.outcome, ev.now);
      if (ev.type === 'WRITTEN') return unanswered(done(completionReply(setup, state.outcome, state.record), { type: 'release', owner: state.claim.owner }), state.answered);
      if (ev.type === 'CONFLICT') return { state: { phase: 'rechecking', claim: state.claim, outcome: state.outcome, ...(state.answered ? { answered: state.answered } : {}) }, commands: [{ type: 'read' }] };
      if (ev.type === 'STORE_FAILED') return storeFailedUnder(setup, state.claim, state.outcome, 1, state.answered, ev);
      break;
    case 'rechecking':
      if (ev.type === 'READ') return recheck(setup, state.claim, state.outcome, ev, state.answered);
      if (ev.type === 'WAITED') return { state, commands: [{ type: 'read' }] };
      if (ev.type === 'STORE_FAILED') return storeFailedUnder(setup, state.claim, state.outcome, (state.failures ?? 0) + 1, state.answered, ev);
      break;
    case 'undoing':
      if (ev.type === 'READ') return undo(setup, state, ev);
      if (ev.type === 'WAITED') return { state, commands: [{ type: 'read' }] };
      if (ev.type === 'WRITTEN' && state.writing !== undefined) {
        const claim: Claim = { op: 'compensate', owner: state.owner, record: state.writing, revision: ev.revision, selfUndo: state.failures + 1 };
        return {
          state: { phase: 'running', claim, renewing: undefined, outcome: undefined, lost: false },
          commands: [{ type: 'run', op: 'compensate', input: req.input, result: state.result ?? req.result, claim }],
        };
      }
      if (ev.type === 'CONFLICT') return { state: { ...state, writing: undefined }, commands: [{ type: 'read' }] };
      if (ev.type === 'STORE_FAILED') {
        return { state: { ...state, writing: undefined }, commands: [{ type: 'wait', until: ev.now + selfUndoBackoff(state.failures), owner: undefined }] };
      }
      break;
  }
  // An event this phase does not take (a stray renewal tick, a late wake-up): nothing changes.
  return { state, commands: [] };
}
