/**
 * The lines a runtime logs about its sagas (docs/guide.md, "Logging", lists them with
 * their fields). Debug lines tell each step's life, one line per thing that happened;
 * an info line (an error line when it parks) tells each saga's outcome and why.
 *
 * Debug lines come from a {@link SagaTrace}, made only for a saga started while the
 * logger's level is debug or lower: above it, a saga builds no log object at all.
 * {@link traceTransition} is the pure part: what one event did to a saga's steps, read
 * from the saga's snapshots before and after it.
 */
import type { InspectionEvent } from 'xstate';
import { isCompensationAck, isCurrentAttempt, isCurrentCompensation, isLateResult } from '../machines/saga-logic.ts';
import type { MachineStateName, SagaContext, SagaEvent, StepState } from '../machines/saga-logic.ts';
import type { Logger, SagaDefinition, SagaOutcome } from '../types.ts';

/** The `msg` of every line about a saga. Stable: dashboards and alerts match on them. */
export const LOG_MSG = Object.freeze({
  started: 'saga started',
  dispatched: 'step dispatched',
  committed: 'step committed',
  lateResult: 'step committed after its undo began',
  failed: 'step failed',
  retryScheduled: 'step retry scheduled',
  timedOut: 'step timed out',
  compensationStarted: 'compensation started',
  compensationDone: 'compensation done',
  compensationFailed: 'compensation attempt failed',
  compensationTimedOut: 'compensation timed out',
  compensationRetryScheduled: 'compensation retry scheduled',
  parked: 'step parked',
  ended: 'saga ended',
  sagaParked: 'saga parked: compensation failed',
});

/** What a saga's snapshot holds that its log lines read. */
export interface TracedSnapshot {
  readonly value: MachineStateName;
  readonly context: SagaContext;
}

/** One debug line: its msg, its fields, and the request whose time it reports as `durationMs`. */
export interface TraceLine {
  readonly msg: string;
  readonly fields: { readonly stepId: string; readonly worker: string; readonly attempt: number } & Record<string, unknown>;
  readonly timed?: 'do' | 'compensate';
}

const undoing = (v: MachineStateName) => v === 'compensating' || v === 'compensationFailed';

/**
 * What `event` did to the saga's steps, going from `prev` to `next`: a commit, a failure
 * (retried or final), a timeout, a late result, an undo done or failed, and the steps
 * left when the saga parks. An event the saga ignored (a stale attempt, a duplicate
 * acknowledgement) gives nothing. Pure.
 */
export function traceTransition(def: SagaDefinition, prev: TracedSnapshot, next: TracedSnapshot, event: SagaEvent): TraceLine[] {
  const lines: TraceLine[] = [];
  if ('stepId' in event) {
    const p = def.stepsById.get(event.stepId);
    const after = p === undefined ? undefined : next.context.steps[p.index];
    if (p !== undefined && after !== undefined) {
      const base = { stepId: p.id, worker: p.worker, attempt: event.attempt };
      const current = prev.value === 'gathering' && isCurrentAttempt(def, prev.context, event);
      switch (event.type) {
        case 'STEP.COMMITTED':
          if (current) lines.push({ msg: LOG_MSG.committed, fields: base, timed: 'do' });
          else if (undoing(prev.value) && isLateResult(def, prev.context, event)) lines.push({ msg: LOG_MSG.lateResult, fields: base, timed: 'do' });
          break;
        case 'STEP.FAILED':
          if (current) {
            const retrying = after.status === 'dispatched' && after.waiting;
            const failure = next.context.failures.length > prev.context.failures.length ? next.context.failures[next.context.failures.length - 1] : undefined;
            lines.push({
              msg: LOG_MSG.failed,
              fields: { ...base, code: event.error.code, error: event.error.message, retryable: event.error.retryable, retrying, ...(failure !== undefined ? { inDoubt: failure.inDoubt } : {}) },
              timed: 'do',
            });
          }
          break;
        case 'STEP.TIMED_OUT':
          if (current) lines.push({ msg: LOG_MSG.timedOut, fields: { ...base, timeoutMs: p.timeoutMs }, timed: 'do' });
          break;
        case 'COMPENSATION.DONE':
          if (undoing(prev.value) && isCompensationAck(def, prev.context, event)) lines.push({ msg: LOG_MSG.compensationDone, fields: base, timed: 'compensate' });
          break;
        case 'COMPENSATION.FAILED':
        case 'COMPENSATION.TIMED_OUT':
          if (prev.value === 'compensating' && isCurrentCompensation(def, prev.context, event)) {
            const retrying = after.status === 'compensating' && after.waiting;
            lines.push(
              event.type === 'COMPENSATION.FAILED'
                ? { msg: LOG_MSG.compensationFailed, fields: { ...base, code: event.error.code, error: event.error.message, retrying }, timed: 'compensate' }
                : { msg: LOG_MSG.compensationTimedOut, fields: { ...base, timeoutMs: p.compensation.timeoutMs, retrying }, timed: 'compensate' },
            );
          }
          break;
      }
    }
  }
  if (next.value === 'compensationFailed' && prev.value !== 'compensationFailed') {
    for (const p of def.steps) {
      const s = next.context.steps[p.index] as StepState;
      if (!s.undo || s.status === 'compensated') continue;
      const failed = s.status === 'compensationFailed';
      lines.push({
        msg: LOG_MSG.parked,
        fields: {
          stepId: p.id,
          worker: p.worker,
          attempt: s.compAttempt,
          attempts: s.compTotal,
          why: failed ? 'compensation-failed' : 'blocked',
          ...(failed && s.lastCompError !== undefined ? { code: s.lastCompError.code, error: s.lastCompError.message } : {}),
        },
      });
    }
  }
  return lines;
}

/** A request a saga sent, as the driver hands it to a worker actor. */
interface Sent {
  readonly type: 'DO' | 'COMPENSATE';
  readonly stepId: string;
  readonly attempt: number;
  readonly timeoutMs: number;
}

/**
 * The debug lines of one saga. The driver reports the requests it sends and the retries
 * it schedules; the saga actor's inspection events (`inspect`) report its transitions. A
 * transition's own lines (a failure) come before the lines of what it did (the retry it
 * scheduled, the compensations it sent).
 */
export class SagaTrace {
  private readonly log: Logger;
  private readonly def: SagaDefinition;
  private readonly now: () => number;
  /** When the current request of each step was sent: `do:<stepId>` and `compensate:<stepId>`. */
  private readonly sentAt = new Map<string, number>();
  /** Lines of a transition in progress, written once its own lines are. */
  private waiting: (() => void)[] = [];
  private last: TracedSnapshot | undefined;

  constructor(logger: Logger, def: SagaDefinition, sagaId: string, now: () => number) {
    this.log = logger.child({ sagaId, saga: def.name });
    this.def = def;
    this.now = now;
  }

  /** `recovered`: restored from its journal by this coordinator. */
  started(recovered: boolean): void {
    this.log.debug({ version: this.def.version, steps: this.def.steps.length, recovered }, LOG_MSG.started);
  }

  /** The saga actor's inspection events: each transition's snapshot. */
  readonly inspect = (ev: InspectionEvent): void => {
    if (ev.type !== '@xstate.snapshot') return;
    const next = ev.snapshot as unknown as TracedSnapshot;
    const prev = this.last;
    this.last = next;
    if (prev !== undefined) {
      for (const line of traceTransition(this.def, prev, next, ev.event as SagaEvent)) {
        const since = line.timed === undefined ? undefined : this.sentAt.get(`${line.timed}:${line.fields.stepId}`);
        this.log.debug(since === undefined ? line.fields : { ...line.fields, durationMs: this.now() - since }, line.msg);
      }
    }
    const waiting = this.waiting;
    this.waiting = [];
    for (const write of waiting) write();
  };

  /** A request was handed to its worker actor; `inTransition`: by the transition in progress (its line waits for the transition's). */
  sent(req: Sent, inTransition: boolean): void {
    const p = this.def.stepsById.get(req.stepId);
    if (p === undefined) return;
    const kind = req.type === 'DO' ? 'do' : 'compensate';
    this.sentAt.set(`${kind}:${req.stepId}`, this.now());
    const fields = { stepId: req.stepId, worker: p.worker, attempt: req.attempt, timeoutMs: req.timeoutMs };
    const msg = kind === 'do' ? LOG_MSG.dispatched : LOG_MSG.compensationStarted;
    if (inTransition) this.waiting.push(() => this.log.debug(fields, msg));
    else this.log.debug(fields, msg);
  }

  /** A retry timer was set, by the transition in progress. */
  retryScheduled(event: SagaEvent, delayMs: number): void {
    if (event.type !== 'STEP.RETRY_DUE' && event.type !== 'COMPENSATION.RETRY_DUE') return;
    const p = this.def.stepsById.get(event.stepId);
    if (p === undefined) return;
    const msg = event.type === 'STEP.RETRY_DUE' ? LOG_MSG.retryScheduled : LOG_MSG.compensationRetryScheduled;
    const fields = { stepId: event.stepId, worker: p.worker, attempt: event.attempt, delayMs: Math.round(delayMs) };
    this.waiting.push(() => this.log.debug(fields, msg));
  }
}

/**
 * The fields of a saga's outcome line: its status and why. A compensated or parked saga
 * names the step that failed first (`failedStep`, `failedWorker`, `code`, `error`) and
 * every failure; a parked one, each effect that remains; a committed one, the steps its
 * join released and those an operator resolved.
 */
export function outcomeFields(outcome: SagaOutcome, durationMs: number): Record<string, unknown> {
  if (outcome.status === 'committed') {
    return {
      status: outcome.status,
      durationMs,
      ...(outcome.released.length > 0 ? { released: outcome.released } : {}),
      ...(outcome.resolvedByOperator.length > 0 ? { resolvedByOperator: outcome.resolvedByOperator } : {}),
    };
  }
  const first = outcome.failures[0];
  const why =
    first === undefined ? {} : { failedStep: first.stepId, failedWorker: first.worker, code: first.error.code, error: first.error.message };
  const failures = outcome.failures.map((f) => ({ stepId: f.stepId, worker: f.worker, reason: f.reason, attempt: f.attempt, code: f.error.code, inDoubt: f.inDoubt }));
  if (outcome.status === 'compensated') {
    return {
      status: outcome.status,
      durationMs,
      ...why,
      failures,
      compensated: outcome.compensated,
      ...(outcome.resolvedByOperator.length > 0 ? { resolvedByOperator: outcome.resolvedByOperator } : {}),
    };
  }
  return {
    status: outcome.status,
    durationMs,
    decision: outcome.decision,
    ...why,
    failures,
    remaining: outcome.remaining.map((r) => ({ stepId: r.stepId, worker: r.worker, why: r.why, inDoubt: r.inDoubt, attempts: r.attempts, ...(r.lastError !== undefined ? { code: r.lastError.code } : {}) })),
    compensated: outcome.compensated,
  };
}
