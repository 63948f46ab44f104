/**
 * Worker actors: one long-lived actor per worker name in the runtime's system, the
 * worker's proxy over the transport. A saga sends it DO / COMPENSATE with its own
 * reference; the actor answers the saga with STEP.* / COMPENSATION.* events. With a
 * bound (`workerMaxInFlight`), it sends at most that many requests at once and queues
 * the rest.
 */
import { fromCallback } from 'xstate';
import type { AnyActorRef } from 'xstate';
import { SagaError, toErrorInfo, TransportError } from '../errors.ts';
import type { SagaEvent } from '../machines/saga-logic.ts';
import type { RequestSpan } from '../tracing.ts';
import type { TimerWheel } from './timer.ts';
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
  /** The request's span when the saga is traced: its traceparent goes out with the request, and it ends with the reply. */
  span?: RequestSpan;
}

/** A bound of the requests this runtime has in flight to one worker at once (see `RuntimeOptions.workerMaxInFlight`). */
export interface WorkerBound {
  readonly maxInFlight: number;
  /** The runtime's timer wheel: a request sent holds its slot no longer than its deadline. */
  readonly wheel: TimerWheel;
}

export interface WorkerActorInput {
  worker: string;
  transport: Transport;
  clock: Clock;
  /** Undefined: no bound (requests are sent as the sagas send them). */
  bound?: WorkerBound;
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

/**
 * Sends a request and delivers its reply, or its failure, to the saga that sent it, after
 * `settled` (a bounded worker frees the request's slot there). A transport that throws
 * instead of rejecting is a rejection all the same.
 */
function call(transport: Transport, ev: WorkerActorEvent, request: WorkerRequest, timeoutMs: number, settled?: () => void): void {
  let sent: Promise<WorkerReply>;
  try {
    sent = transport.request(request, timeoutMs);
  } catch (error) {
    sent = Promise.reject(error);
  }
  sent.then(
    (reply) => {
      settled?.();
      ev.span?.end(reply.ok ? { ok: true } : { ok: false, code: reply.error.code, message: reply.error.message, inDoubt: false });
      deliver(ev.saga, replyToEvent(ev, reply));
    },
    (error) => {
      settled?.();
      const failure = error ?? new Error('request failed');
      const event = replyToEvent(ev, undefined, failure);
      ev.span?.end({ ok: false, code: failure instanceof SagaError ? failure.code : 'TRANSPORT_ERROR', message: String((failure as Error).message ?? failure), inDoubt: event.type.endsWith('TIMED_OUT') });
      deliver(ev.saga, event);
    },
  );
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
    ...(ev.span !== undefined ? { traceparent: ev.span.traceparent } : {}),
  };
}

export const workerActorLogic = fromCallback<WorkerActorEvent, WorkerActorInput>(({ input, receive }) => {
  const { worker, transport, clock } = input;
  if (input.bound !== undefined) {
    const queue = boundedQueue(input, input.bound);
    receive(queue.receive);
    return queue.stop;
  }
  receive((ev) => {
    call(transport, ev, requestOf(worker, ev, clock.now()), ev.timeoutMs);
  });
  return undefined;
});

/**
 * A worker actor with a bound: at most `maxInFlight` requests in flight to the worker at
 * once, the rest waiting here, first come, first served. A request is made (its deadline
 * set) when the saga sends it, so its time in the queue counts toward its timeout. One
 * whose saga is no longer active, or whose deadline passed while it waited, is dropped
 * unsent: the saga's own timer reports the timeout, and the step, in doubt, is
 * compensated. A request sent holds its slot until its reply, its failure, or its
 * deadline, whichever comes first, so a transport that never answers (the in-memory one
 * leaves timeouts to the saga) holds no slot forever.
 */
function boundedQueue(input: WorkerActorInput, bound: WorkerBound): { receive: (ev: WorkerActorEvent) => void; stop: () => void } {
  const { worker, transport, clock } = input;
  const { maxInFlight, wheel } = bound;
  let inFlight = 0;
  let stopped = false;
  const waiting: { ev: WorkerActorEvent; request: WorkerRequest }[] = [];

  const next = () => {
    while (!stopped && inFlight < maxInFlight && waiting.length > 0) {
      const { ev, request } = waiting.shift() as (typeof waiting)[number];
      const left = request.deadline - clock.now();
      if (left > 0 && ev.saga.getSnapshot().status === 'active') send(ev, request, left);
      else ev.span?.end({ ok: false, code: 'STEP_TIMED_OUT', message: `dropped unsent: its deadline passed while it waited for a slot to ${worker}`, inDoubt: false });
    }
  };

  const send = (ev: WorkerActorEvent, request: WorkerRequest, timeoutMs: number) => {
    inFlight++;
    /** The slot this request holds; it also keys the request's expiry in the wheel. */
    const slot = { held: true };
    const free = () => {
      if (!slot.held) return;
      slot.held = false;
      wheel.cancel(slot, 'expiry');
      inFlight--;
      next();
    };
    wheel.schedule(slot, 'expiry', timeoutMs, free);
    call(transport, ev, request, timeoutMs, free);
  };

  return {
    receive: (ev) => {
      const request = requestOf(worker, ev, clock.now());
      if (inFlight < maxInFlight && waiting.length === 0) send(ev, request, ev.timeoutMs);
      else waiting.push({ ev, request });
    },
    stop: () => {
      stopped = true;
      waiting.length = 0;
    },
  };
}
