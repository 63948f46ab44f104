/**
 * The coordinator service protocol, version 1: its endpoints and subjects, the checks
 * made on every request body, and the events it publishes. Pure functions over decoded
 * JSON; docs/protocol.md ("The coordinator service") is the prose form of this file.
 */
import { TransportError } from '../errors.ts';
import { parseReviewToken } from '../machines/fence-verdict.ts';
import { PROTOCOL_VERSION } from '../types.ts';
import type { SagaStatus, SagaSummary, StepEvent } from '../runtime/api.ts';
import type { SagaGraph } from '../diagram.ts';
import type { DeadLetter, RemainingEffect, SagaOutcome, StepFailure } from '../types.ts';

/** The endpoints of the coordinator service: `<prefix>.svc.<endpoint>`. */
export const SERVICE_ENDPOINTS = ['start', 'status', 'outcome', 'list', 'retry', 'resolve', 'abort', 'dead-letters', 'graph'] as const;
/** The name of one endpoint of the coordinator service. */
export type ServiceEndpoint = (typeof SERVICE_ENDPOINTS)[number];

/** Default time a request that waits for an outcome (`wait`, `outcome`, `retry`, `resolve`) waits: 30 s. */
export const DEFAULT_SERVICE_WAIT_MS = 30_000;
/** Longest wait a request may ask for (`timeoutMs`): 10 minutes. */
export const MAX_SERVICE_WAIT_MS = 600_000;
/** Default and largest number of sagas one `list` reply carries. */
export const DEFAULT_LIST_LIMIT = 1_000;
export const MAX_LIST_LIMIT = 10_000;
/** Longest `note` of a `resolve`, in bytes of UTF-8. */
export const MAX_NOTE_BYTES = 4_096;
/** Longest `reviewed` token of a `resolve`, in bytes: room for the fences of some hundreds of steps. */
export const MAX_REVIEW_BYTES = 65_536;
/** Longest a `resolve`'s fences wait by default: 10 s, and never more than half the request's `timeoutMs`. */
export const DEFAULT_SERVICE_FENCE_TIMEOUT_MS = 10_000;

const SAGA_NAME = /^[A-Za-z0-9_.-]{1,128}$/;
/** A subject token that needs no encoding (the rule of `kvKeyOf`). */
const PLAIN_TOKEN = /^[A-Za-z0-9_-]{1,512}$/;

export function serviceSubject(prefix: string, endpoint: ServiceEndpoint): string {
  return `${prefix}.svc.${endpoint}`;
}

/**
 * The subject of a saga's events: `<prefix>.svc.events.<token>`, the token being the saga id
 * itself when it is 1-512 characters of `A-Z a-z 0-9 _ -`, else `b64.` and the base64url of
 * its UTF-8 (two subject tokens). `<prefix>.svc.events.>` receives every saga's events.
 */
export function eventSubject(prefix: string, sagaId: string): string {
  return `${prefix}.svc.events.${PLAIN_TOKEN.test(sagaId) ? sagaId : `b64.${Buffer.from(sagaId, 'utf8').toString('base64url')}`}`;
}

/** Bodies of the requests, checked. */
export interface StartRequest {
  readonly saga: string;
  readonly version: number | undefined;
  readonly input: unknown;
  readonly sagaId: string | undefined;
  readonly wait: boolean;
  readonly timeoutMs: number;
}
export interface SagaIdRequest {
  readonly sagaId: string;
}
export interface WaitRequest extends SagaIdRequest {
  readonly timeoutMs: number;
}
/**
 * A resolve: it fences the remaining keys (each fence waits at most `fenceTimeoutMs`), then
 * ends the saga; `timeoutMs` bounds the whole of it, so `fenceTimeoutMs` < `timeoutMs`.
 */
export interface ResolveRequest extends WaitRequest {
  readonly note: string | undefined;
  /** The `review` token of a `RESOLVE_NEEDS_REVIEW` reply: the operator has looked again. */
  readonly reviewed: string | undefined;
  /** Skip the fences (the worker is gone for good). */
  readonly force: boolean;
  /** How long each fence may wait for its key. Default: half of `timeoutMs`, at most 10 000. */
  readonly fenceTimeoutMs: number;
}
/** An abort of a running saga, with the operator's note. */
export interface AbortRequest extends WaitRequest {
  readonly note: string | undefined;
}
/** A `graph` request names a saga definition (`saga`, optional `version`) or a saga by id (`sagaId`). */
export type GraphRequest = { readonly sagaId: string; readonly saga?: undefined; readonly version?: undefined } | { readonly sagaId?: undefined; readonly saga: string; readonly version: number | undefined };
export interface ListRequest {
  readonly status: 'running' | 'parked' | undefined;
  readonly limit: number;
}

/** The checked body of each endpoint's request. */
export interface ServiceRequests {
  start: StartRequest;
  status: SagaIdRequest;
  outcome: WaitRequest;
  list: ListRequest;
  retry: WaitRequest;
  resolve: ResolveRequest;
  abort: AbortRequest;
  'dead-letters': Record<string, never>;
  graph: GraphRequest;
}

/** What each endpoint answers in `result`. */
export interface ServiceResults {
  start: { sagaId: string; outcome?: SagaOutcome | null };
  status: SagaStatus;
  outcome: { sagaId: string; outcome: SagaOutcome | null };
  list: { sagas: SagaSummary[]; truncated: boolean };
  retry: { sagaId: string; outcome: SagaOutcome | null };
  resolve: { sagaId: string; outcome: SagaOutcome | null };
  abort: { sagaId: string; outcome: SagaOutcome | null };
  'dead-letters': { deadLetters: DeadLetter[] };
  graph: SagaGraph;
}

/** An event the service publishes on `<prefix>.svc.events.<sagaId>`. */
export type SagaEvent =
  | { readonly v: typeof PROTOCOL_VERSION; readonly type: 'outcome'; readonly sagaId: string; readonly saga: string; readonly version: number; readonly outcome: SagaOutcome }
  | {
      readonly v: typeof PROTOCOL_VERSION;
      readonly type: 'escalation';
      readonly sagaId: string;
      readonly saga: string;
      readonly version: number;
      readonly remaining: readonly RemainingEffect[];
      readonly failures: readonly StepFailure[];
      readonly timesParked: number;
    }
  | ({ readonly v: typeof PROTOCOL_VERSION; readonly type: 'step' } & StepEvent);

function bad(message: string): TransportError {
  return new TransportError('PROTOCOL_ERROR', message, { retryable: false });
}

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

const FIELDS: { readonly [E in ServiceEndpoint]: readonly string[] } = {
  start: ['v', 'saga', 'version', 'input', 'sagaId', 'wait', 'timeoutMs'],
  status: ['v', 'sagaId'],
  outcome: ['v', 'sagaId', 'timeoutMs'],
  list: ['v', 'status', 'limit'],
  retry: ['v', 'sagaId', 'timeoutMs'],
  resolve: ['v', 'sagaId', 'note', 'reviewed', 'force', 'fenceTimeoutMs', 'timeoutMs'],
  abort: ['v', 'sagaId', 'note', 'timeoutMs'],
  'dead-letters': ['v'],
  graph: ['v', 'sagaId', 'saga', 'version'],
};

/** The optional operator's note of a resolve or an abort. */
function noteOf(body: Record<string, unknown>): string | undefined {
  const note = body.note;
  if (note !== undefined && (typeof note !== 'string' || Buffer.byteLength(note, 'utf8') > MAX_NOTE_BYTES)) throw bad(`'note' must be a string of at most ${MAX_NOTE_BYTES} bytes in UTF-8, got ${describe(note)}`);
  return note;
}

function sagaIdOf(o: Record<string, unknown>, required: true): string;
function sagaIdOf(o: Record<string, unknown>, required: false): string | undefined;
function sagaIdOf(o: Record<string, unknown>, required: boolean): string | undefined {
  const v = o.sagaId;
  if (v === undefined && !required) return undefined;
  if (typeof v !== 'string' || v.length === 0 || Buffer.byteLength(v, 'utf8') > 256) throw bad(`'sagaId' must be a non-empty string of at most 256 bytes in UTF-8, got ${describe(v)}`);
  return v;
}

function wholeNumber(o: Record<string, unknown>, field: string, min: number, max: number, fallback: number): number {
  const v = o[field];
  if (v === undefined) return fallback;
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min || v > max) throw bad(`'${field}' must be a whole number from ${min} to ${max}, got ${describe(v)}`);
  return v;
}

function describe(v: unknown): string {
  if (v === undefined) return 'nothing';
  const text = JSON.stringify(v) ?? String(v);
  return text.length > 80 ? `${text.slice(0, 80)}...` : text;
}

/**
 * Checks the decoded body of a request to `endpoint`. Throws a `PROTOCOL_ERROR`
 * TransportError naming the first bad field; unknown fields are refused (a misspelt
 * `sagaId` must not start a second saga).
 */
export function parseServiceRequest<E extends ServiceEndpoint>(endpoint: E, body: unknown): ServiceRequests[E] {
  if (!isObject(body)) throw bad(`the request body must be a JSON object with "v": ${PROTOCOL_VERSION}, got ${describe(body)}`);
  if (body.v !== PROTOCOL_VERSION) throw bad(`unsupported protocol version ${describe(body.v)} in 'v' (this service speaks ${PROTOCOL_VERSION})`);
  const allowed = FIELDS[endpoint];
  for (const k of Object.keys(body)) {
    if (!allowed.includes(k)) throw bad(`unknown field '${k.slice(0, 64)}' for ${endpoint} (allowed: ${allowed.join(', ')})`);
  }
  const timeoutMs = () => wholeNumber(body, 'timeoutMs', 0, MAX_SERVICE_WAIT_MS, DEFAULT_SERVICE_WAIT_MS);
  let out: ServiceRequests[ServiceEndpoint];
  switch (endpoint as ServiceEndpoint) {
    case 'start': {
      const saga = body.saga;
      if (typeof saga !== 'string' || !SAGA_NAME.test(saga)) throw bad(`'saga' must be a saga name (1-128 characters of A-Z a-z 0-9 _ . -), got ${describe(saga)}`);
      const version = body.version === undefined ? undefined : wholeNumber(body, 'version', 1, Number.MAX_SAFE_INTEGER, 1);
      if (body.wait !== undefined && typeof body.wait !== 'boolean') throw bad(`'wait' must be true or false, got ${describe(body.wait)}`);
      const wait = body.wait === true;
      if (!wait && body.timeoutMs !== undefined) throw bad("'timeoutMs' is for a start that waits: add \"wait\": true, or leave 'timeoutMs' out");
      out = { saga, version, input: 'input' in body ? body.input : null, sagaId: sagaIdOf(body, false), wait, timeoutMs: timeoutMs() };
      break;
    }
    case 'status':
      out = { sagaId: sagaIdOf(body, true) };
      break;
    case 'outcome':
    case 'retry':
      out = { sagaId: sagaIdOf(body, true), timeoutMs: timeoutMs() };
      break;
    case 'abort':
      out = { sagaId: sagaIdOf(body, true), note: noteOf(body), timeoutMs: timeoutMs() };
      break;
    case 'resolve': {
      const note = noteOf(body);
      const reviewed = body.reviewed;
      if (reviewed !== undefined && (typeof reviewed !== 'string' || Buffer.byteLength(reviewed, 'utf8') > MAX_REVIEW_BYTES || parseReviewToken(reviewed) === undefined)) {
        throw bad(`'reviewed' must be the 'review' token of a RESOLVE_NEEDS_REVIEW reply, as it was given (at most ${MAX_REVIEW_BYTES} bytes), got ${describe(reviewed)}`);
      }
      if (body.force !== undefined && typeof body.force !== 'boolean') throw bad(`'force' must be true or false, got ${describe(body.force)}`);
      const force = body.force === true;
      const wait = timeoutMs();
      // The fences come first, within the request's wait: leave time for the outcome after them.
      if (body.fenceTimeoutMs !== undefined && (typeof body.fenceTimeoutMs !== 'number' || !Number.isSafeInteger(body.fenceTimeoutMs) || body.fenceTimeoutMs < 1 || body.fenceTimeoutMs >= wait)) {
        throw bad(`'fenceTimeoutMs' must be a whole number from 1 to less than 'timeoutMs' (${wait}: the resolve waits for its fences within it), got ${describe(body.fenceTimeoutMs)}`);
      }
      if (!force && wait < 2) throw bad(`'timeoutMs' of a resolve must be at least 2 (it waits for its fences within it), or pass "force": true, got ${describe(body.timeoutMs)}`);
      const fenceTimeoutMs = (body.fenceTimeoutMs as number | undefined) ?? Math.max(1, Math.min(DEFAULT_SERVICE_FENCE_TIMEOUT_MS, Math.floor(wait / 2)));
      out = { sagaId: sagaIdOf(body, true), note, reviewed, force, fenceTimeoutMs, timeoutMs: wait };
      break;
    }
    case 'list': {
      const status = body.status;
      if (status !== undefined && status !== 'running' && status !== 'parked') throw bad(`'status' must be "running" or "parked" (finished sagas are not listed), got ${describe(status)}`);
      out = { status, limit: wholeNumber(body, 'limit', 1, MAX_LIST_LIMIT, DEFAULT_LIST_LIMIT) };
      break;
    }
    case 'dead-letters':
      out = {};
      break;
    case 'graph': {
      if (body.sagaId !== undefined) {
        if (body.saga !== undefined || body.version !== undefined) throw bad("give 'sagaId', or 'saga' (and 'version'), not both");
        out = { sagaId: sagaIdOf(body, true) };
        break;
      }
      const saga = body.saga;
      if (typeof saga !== 'string' || !SAGA_NAME.test(saga)) throw bad(`'saga' must be a saga name (1-128 characters of A-Z a-z 0-9 _ . -), or give 'sagaId' instead, got ${describe(saga)}`);
      out = { saga, version: body.version === undefined ? undefined : wholeNumber(body, 'version', 1, Number.MAX_SAFE_INTEGER, 1) };
      break;
    }
  }
  return out as ServiceRequests[E];
}

/** Checks a published event body; undefined when it is not one (ignored by watchers). */
export function parseEvent(body: unknown): SagaEvent | undefined {
  if (!isObject(body) || body.v !== PROTOCOL_VERSION || typeof body.sagaId !== 'string' || typeof body.saga !== 'string' || typeof body.version !== 'number') return undefined;
  if (body.type === 'outcome' && isObject(body.outcome)) return body as unknown as SagaEvent;
  if (body.type === 'escalation' && Array.isArray(body.remaining) && Array.isArray(body.failures)) return body as unknown as SagaEvent;
  if (body.type === 'step' && typeof body.stepId === 'string' && typeof body.status === 'string' && typeof body.attempt === 'number') return body as unknown as SagaEvent;
  return undefined;
}
