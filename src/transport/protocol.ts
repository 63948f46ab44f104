/**
 * Wire protocol v1, transport-independent: validation of requests and replies as they
 * arrive from any transport. A malformed message becomes a typed ProtocolError naming
 * the field, never a crash. docs/protocol.md is the prose form of this file.
 */
import type { ErrorInfo } from '../errors.ts';
import { TransportError } from '../errors.ts';
import { PROTOCOL_VERSION } from '../types.ts';
import type { WorkerReply, WorkerRequest } from '../types.ts';

const WORKER_NAME = /^[A-Za-z0-9_-]{1,64}$/;
/** W3C trace context, version 00. */
export const TRACEPARENT = /^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$/;

function bad(message: string): TransportError {
  return new TransportError('PROTOCOL_ERROR', message, { retryable: false });
}

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

/** A non-empty string of at most `max` bytes in UTF-8 (the unit every language can count alike). */
function str(o: Record<string, unknown>, field: string, max = 256): string {
  const v = o[field];
  if (typeof v !== 'string' || v.length === 0 || v.length > max || Buffer.byteLength(v, 'utf8') > max) throw bad(`'${field}' must be a non-empty string of at most ${max} bytes in UTF-8`);
  return v;
}

function int(o: Record<string, unknown>, field: string, min: number): number {
  const v = o[field];
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min) throw bad(`'${field}' must be a whole number from ${min} to ${Number.MAX_SAFE_INTEGER}`);
  return v;
}

/** Validates a request body. Throws a ProtocolError naming the first bad field. */
export function parseRequest(body: unknown): WorkerRequest {
  if (!isObject(body)) throw bad('the request body must be a JSON object');
  if (body.v !== PROTOCOL_VERSION) throw bad(`unsupported protocol version ${JSON.stringify(body.v)} (this host speaks ${PROTOCOL_VERSION})`);
  const op = body.op;
  if (op !== 'do' && op !== 'compensate' && op !== 'fence') throw bad(`'op' must be "do", "compensate" or "fence", got ${JSON.stringify(op)}`);
  const worker = str(body, 'worker', 64);
  if (!WORKER_NAME.test(worker)) throw bad(`'worker' must match ${WORKER_NAME.source}`);
  const request: WorkerRequest = {
    v: PROTOCOL_VERSION,
    op,
    worker,
    sagaId: str(body, 'sagaId'),
    stepId: str(body, 'stepId', 64),
    key: str(body, 'key'),
    attempt: int(body, 'attempt', 1),
    deadline: int(body, 'deadline', 0),
    input: body.input,
    ...('result' in body ? { result: body.result } : {}),
    ...(op === 'fence' ? { fence: str(body, 'fence', 128) } : {}),
    // W3C: an invalid trace context is ignored, not an error.
    ...(typeof body.traceparent === 'string' && TRACEPARENT.test(body.traceparent) ? { traceparent: body.traceparent } : {}),
  };
  return request;
}

function parseError(e: unknown): ErrorInfo {
  if (!isObject(e) || typeof e.code !== 'string' || typeof e.message !== 'string' || typeof e.retryable !== 'boolean') {
    throw bad("an error reply needs 'error': { code: string, message: string, retryable: boolean }");
  }
  return { code: e.code, message: e.message, retryable: e.retryable, ...(e.detail !== undefined ? { detail: e.detail } : {}) };
}

/** Validates a reply body. Throws a ProtocolError naming what is wrong. */
export function parseReply(body: unknown): WorkerReply {
  if (!isObject(body)) throw bad('the reply body must be a JSON object');
  if (body.ok === true) return 'result' in body ? { ok: true, result: body.result } : { ok: true };
  if (body.ok === false) return { ok: false, error: parseError(body.error) };
  throw bad("a reply needs 'ok': true or false");
}
