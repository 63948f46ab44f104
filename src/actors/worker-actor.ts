/**
 * Worker actors: one long-lived actor per worker name in the runtime's system, the
 * worker's proxy over the transport. A saga sends it DO / COMPENSATE with its own
 * reference; the actor answers the saga with STEP.* / COMPENSATION.* events.
 */
import { fromCallback } from 'xstate';
import type { AnyActorRef } from 'xstate';
import { SagaError, toErrorInfo, TransportError } from '../errors.ts';
import type { SagaEvent } from '../machines/saga-logic.ts';
import type { Clock, Transport, WorkerReply, WorkerRequest } from '../types.ts';
import { PROTOCOL_VERSION } from '../types.ts';

export interface WorkerActorEvent {
  type: 'DO' | 'COMPENSATE';
  saga: AnyActorRef;
  sagaId: string;
  stepId: string;
  key: string;
  input: unknown;
  result?: unknown;
  attempt: number;
  timeoutMs: number;
}

export interface WorkerActorInput {
  worker: string;
  transport: Transport;
  clock: Clock;
}

/**
 * Turns a reply, or a transport failure, into the event the saga understands. A failure
 * is reported as such only when the request never reached a host ("no responders", or
 * refused before sending); the saga logic decides whether that proves the step left no
 * effect. Any other failure (no reply in time, a garbled reply, a broken connection)
 * leaves the request in doubt, as a timeout does.
 */
export function replyToEvent(ev: WorkerActorEvent, reply: WorkerReply | undefined, failure?: unknown): SagaEvent {
  const { stepId, attempt } = ev;
  if (failure !== undefined) {
    const code = failure instanceof SagaError ? failure.code : 'TRANSPORT_ERROR';
    if (code === 'NO_RESPONDERS' || (failure instanceof TransportError && failure.notSent)) {
      const error = toErrorInfo(failure);
      return ev.type === 'DO' ? { type: 'STEP.FAILED', stepId, attempt, error, local: true } : { type: 'COMPENSATION.FAILED', stepId, attempt, error: { ...error, retryable: true } };
    }
    return ev.type === 'DO' ? { type: 'STEP.TIMED_OUT', stepId, attempt } : { type: 'COMPENSATION.TIMED_OUT', stepId, attempt };
  }
  const r = reply as WorkerReply;
  if (ev.type === 'DO') {
    return r.ok ? { type: 'STEP.COMMITTED', stepId, attempt, result: r.result } : { type: 'STEP.FAILED', stepId, attempt, error: r.error };
  }
  return r.ok ? { type: 'COMPENSATION.DONE', stepId, attempt } : { type: 'COMPENSATION.FAILED', stepId, attempt, error: r.error };
}

function deliver(saga: AnyActorRef, event: SagaEvent): void {
  if (saga.getSnapshot().status === 'active') saga.send(event);
}

/** The wire request for a DO or COMPENSATE of a saga. */
export function requestOf(worker: string, ev: Omit<WorkerActorEvent, 'saga'>, now: number): WorkerRequest {
  return {
    v: PROTOCOL_VERSION,
    op: ev.type === 'DO' ? ('do' as const) : ('compensate' as const),
    worker,
    sagaId: ev.sagaId,
    stepId: ev.stepId,
    key: ev.key,
    attempt: ev.attempt,
    deadline: now + ev.timeoutMs,
    input: ev.input,
    ...(ev.type === 'COMPENSATE' && ev.result !== undefined ? { result: ev.result } : {}),
  };
}

export const workerActorLogic = fromCallback<WorkerActorEvent, WorkerActorInput>(({ input, receive }) => {
  const { worker, transport, clock } = input;
  receive((ev) => {
    const request = requestOf(worker, ev, clock.now());
    let sent: Promise<WorkerReply>;
    try {
      sent = transport.request(request, ev.timeoutMs);
    } catch (error) {
      sent = Promise.reject(error);
    }
    sent.then(
      (reply) => deliver(ev.saga, replyToEvent(ev, reply)),
      (error) => deliver(ev.saga, replyToEvent(ev, undefined, error ?? new Error('request failed'))),
    );
  });
});
