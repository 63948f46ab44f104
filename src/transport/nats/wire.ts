/**
 * Wire protocol v1 over NATS: subjects, header names, and the checks a worker host
 * makes on an inbound message before any worker code sees it. Pure functions over
 * what NATS delivered; docs/protocol.md is the prose form of this file.
 */
import { headers as natsHeaders, Match } from '@nats-io/transport-node';
import type { MsgHdrs } from '@nats-io/transport-node';
import { TransportError } from '../../errors.ts';
import type { ErrorInfo } from '../../errors.ts';
import { PROTOCOL_VERSION } from '../../types.ts';
import type { WorkerOp, WorkerReply, WorkerRequest } from '../../types.ts';
import { parseRequest, TRACEPARENT } from '../protocol.ts';

/** Default subject prefix: `saga.worker.<worker>.do`. */
export const DEFAULT_PREFIX = 'saga';
/** Default largest request or reply body, in bytes: 1 MiB. */
export const DEFAULT_MAX_PAYLOAD = 1024 * 1024;

/** Header names (sent in canonical MIME case; matched case-insensitively). */
export const H = Object.freeze({
  protocol: 'Saga-Protocol',
  sagaId: 'Saga-Id',
  stepId: 'Saga-Step',
  key: 'Idempotency-Key',
  attempt: 'Saga-Attempt',
  deadline: 'Saga-Deadline',
  traceparent: 'Traceparent',
  errorCode: 'Saga-Error-Code',
});

export type SubjectOp = 'do' | 'compensate' | 'fence' | 'ping';

const PREFIX = /^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/;

export function validPrefix(prefix: string): boolean {
  return typeof prefix === 'string' && prefix.length <= 128 && PREFIX.test(prefix);
}

export function workerSubject(prefix: string, worker: string, op: SubjectOp | '*'): string {
  return `${prefix}.worker.${worker}.${op}`;
}

/** Just the protocol version header (pings). */
export function protocolHeaders(): MsgHdrs {
  const h = natsHeaders();
  h.set(H.protocol, String(PROTOCOL_VERSION));
  return h;
}

/** The headers a coordinator sends with a request. */
export function requestHeaders(req: WorkerRequest): MsgHdrs {
  const h = natsHeaders();
  h.set(H.protocol, String(PROTOCOL_VERSION));
  h.set(H.sagaId, req.sagaId);
  h.set(H.stepId, req.stepId);
  h.set(H.key, req.key);
  h.set(H.attempt, String(req.attempt));
  h.set(H.deadline, String(req.deadline));
  if (req.traceparent !== undefined) h.set(H.traceparent, req.traceparent);
  return h;
}

/**
 * Bytes a header block takes on the wire (`NATS/1.0`, a `key: value` line each, a blank
 * line): the server counts them against `max_payload` with the body.
 */
export function headerBytes(h: MsgHdrs | undefined): number {
  if (h === undefined) return 0;
  let n = 'NATS/1.0'.length + 4;
  for (const [k, values] of h) for (const v of values) n += 2 + Buffer.byteLength(k, 'utf8') + 2 + Buffer.byteLength(v, 'utf8');
  return n;
}

/** UTF-8 length of a string without encoding it when the answer is obvious. */
export function byteLength(s: string, limit: number): number {
  if (s.length * 3 <= limit) return s.length; // cannot exceed the limit
  return Buffer.byteLength(s, 'utf8');
}

function bad(message: string): TransportError {
  return new TransportError('PROTOCOL_ERROR', message, { retryable: false });
}

/** A header's value, its name matched case-insensitively; undefined when absent. */
export function header(h: MsgHdrs | undefined, name: string): string | undefined {
  if (h === undefined) return undefined;
  const v = h.get(name, Match.IgnoreCase);
  return v === '' && !h.has(name, Match.IgnoreCase) ? undefined : v;
}

function requireHeader(h: MsgHdrs | undefined, name: string, expected: string): void {
  const v = header(h, name);
  if (v === undefined) throw bad(`missing header '${name}'`);
  if (v !== expected) throw bad(`header '${name}' is ${JSON.stringify(v.slice(0, 80))} but the body says ${JSON.stringify(expected.slice(0, 80))}`);
}

/** Decodes UTF-8, refusing invalid bytes (a leading byte order mark is dropped). */
export const decoder = new TextDecoder('utf-8', { fatal: true });

/** The outcome of checking one inbound message: a request to serve, or the error to reply with. */
export type Inbound = { ok: true; request: WorkerRequest } | { ok: false; error: ErrorInfo };

/**
 * Checks an inbound `do` / `compensate` / `fence` message in protocol order: size, protocol
 * header, JSON, body fields, headers against the body, subject against the body.
 */
export function checkInbound(worker: string, op: WorkerOp, data: Uint8Array, h: MsgHdrs | undefined, maxPayload: number): Inbound {
  if (data.length > maxPayload) {
    return { ok: false, error: { code: 'PAYLOAD_TOO_LARGE', message: `request body of ${data.length} bytes is over this host's limit of ${maxPayload}`, retryable: false } };
  }
  try {
    const version = header(h, H.protocol);
    if (version === undefined) throw bad(`missing header '${H.protocol}' (this host speaks protocol ${PROTOCOL_VERSION})`);
    if (version !== String(PROTOCOL_VERSION)) throw bad(`unsupported protocol version ${JSON.stringify(version.slice(0, 20))} (this host speaks ${PROTOCOL_VERSION})`);
    let body: unknown;
    try {
      body = JSON.parse(decoder.decode(data));
    } catch (error) {
      throw bad(`the request body is not valid UTF-8 JSON: ${(error as Error).message}`);
    }
    let req = parseRequest(body);
    if (req.op !== op) throw bad(`the subject says '${op}' but the body says '${req.op}'`);
    if (req.worker !== worker) {
      return { ok: false, error: { code: 'UNKNOWN_WORKER', message: `this subject serves worker '${worker}', not '${req.worker}'`, retryable: false } };
    }
    requireHeader(h, H.sagaId, req.sagaId);
    requireHeader(h, H.stepId, req.stepId);
    requireHeader(h, H.key, req.key);
    requireHeader(h, H.attempt, String(req.attempt));
    requireHeader(h, H.deadline, String(req.deadline));
    if (req.traceparent === undefined) {
      // W3C: an invalid traceparent is ignored, not an error.
      const tp = header(h, H.traceparent);
      if (tp !== undefined && TRACEPARENT.test(tp)) req = { ...req, traceparent: tp };
    }
    return { ok: true, request: req };
  } catch (error) {
    const e = error as TransportError;
    return { ok: false, error: { code: e.code ?? 'PROTOCOL_ERROR', message: e.message, retryable: false } };
  }
}

/** Room kept for an error reply's headers (protocol version and an error code of at most 64 characters). */
const ERROR_HEADER_ROOM = 128;

/**
 * Encodes a reply. A reply that cannot be sent as it is never becomes a code that proves
 * nothing ran: a result that is over the limit is answered RESULT_TOO_LARGE, one that
 * cannot be encoded RESULT_NOT_SERIALIZABLE (both leave the step in doubt, so it is
 * compensated); an error whose message is too long keeps its code with a shortened message.
 * `about` names the request in those messages, e.g. `the do of worker 'payments' for step 'charge' of saga 'order-42'`.
 */
export function encodeReply(reply: WorkerReply, maxPayload: number, about = 'the operation'): { body: string; headers: MsgHdrs | undefined } {
  let body: string;
  try {
    body = JSON.stringify(reply);
  } catch (error) {
    const message = `the reply to ${about} cannot be encoded as JSON (${(error as Error).message}); it may have applied`;
    reply = { ok: false, error: { code: reply.ok ? 'RESULT_NOT_SERIALIZABLE' : 'OUTCOME_UNKNOWN', message, retryable: !reply.ok } };
    body = JSON.stringify(reply);
  }
  // An error reply carries headers (protocol version, error code): they count too.
  const room = reply.ok ? maxPayload : maxPayload - ERROR_HEADER_ROOM;
  const size = byteLength(body, room);
  if (size > room) {
    if (reply.ok) {
      reply = { ok: false, error: { code: 'RESULT_TOO_LARGE', message: `the result of ${about} is ${size} bytes, over the reply limit of ${maxPayload}; it applied`, retryable: false } };
    } else {
      // A character takes at most 6 bytes in JSON (a control character, escaped).
      const chars = Math.max(0, Math.floor((maxPayload - ERROR_HEADER_ROOM - 300) / 6));
      const { code, message, retryable, detail } = reply.error;
      const shortened = `${message.slice(0, chars)}... (shortened to fit ${maxPayload} bytes${detail !== undefined ? '; its detail left out' : ''})`;
      reply = { ok: false, error: { code: String(code).slice(0, 64), message: shortened, retryable } };
    }
    body = JSON.stringify(reply);
  }
  if (reply.ok) return { body, headers: undefined };
  const h = natsHeaders();
  h.set(H.protocol, String(PROTOCOL_VERSION));
  h.set(H.errorCode, String(reply.error.code));
  return { body, headers: h };
}
