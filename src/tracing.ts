/**
 * Trace context for sagas: a W3C `traceparent` for each saga and for each request it sends
 * to a worker (carried in the request's `Traceparent` header, and given to the worker as
 * `ctx.traceparent`), and OpenTelemetry spans when `@opentelemetry/api` is installed and a
 * tracer provider records: one span per saga, and one per `do` and per `compensate` request,
 * children of the saga's span.
 *
 * A saga is traced when its caller passes `traceparent` to `run()` (its span continues that
 * trace), or when OpenTelemetry records (its span is a child of the active span, if any).
 * Otherwise nothing is made: no ids, no header, no cost.
 */
import { randomBytes } from 'node:crypto';
import { createRequire } from 'node:module';
import { TRACEPARENT } from './transport/protocol.ts';

/** How a request ended, for its span. */
export type RequestEnd =
  | { readonly ok: true }
  /** A reply with an error, or a failure of the transport (`inDoubt` when the request may have been applied). */
  | { readonly ok: false; readonly code: string; readonly message: string; readonly inDoubt: boolean };

/** The span of one request (a `do` or a `compensate` attempt). */
export interface RequestSpan {
  /** The request's trace context: the saga's trace, this request's span. */
  readonly traceparent: string;
  end(how: RequestEnd): void;
}

/** How a saga ended in this runtime, for its span. */
export type SagaEnd = 'committed' | 'compensated' | 'compensation-failed' | 'stopped';

/** The span of one saga. */
export interface SagaSpan {
  readonly traceparent: string;
  request(op: 'do' | 'compensate', stepId: string, worker: string, attempt: number): RequestSpan;
  end(how: SagaEnd): void;
}

export interface SagaTracer {
  /** Whether `@opentelemetry/api` was loaded: a saga started without a traceparent may be traced. */
  readonly otel: boolean;
  /** The span of a saga; undefined when it is not traced (no parent, and OpenTelemetry does not record). */
  saga(name: string, version: number, sagaId: string, parent: string | undefined, resumed: boolean): SagaSpan | undefined;
}

// ---------------------------------------------------------------------------
// W3C trace context

/** A traceparent of `traceId` and `spanId` (flags: sampled when the parent was, else `01`). */
function format(traceId: string, spanId: string, flags: string): string {
  return `00-${traceId}-${spanId}-${flags}`;
}

/** The parts of a valid traceparent, undefined for an invalid one (W3C: all-zero ids are invalid). */
export function parseTraceparent(tp: string): { traceId: string; spanId: string; flags: string } | undefined {
  if (!TRACEPARENT.test(tp)) return undefined;
  const [version, traceId, spanId, flags] = tp.split('-') as [string, string, string, string];
  if (version === 'ff' || /^0+$/.test(traceId) || /^0+$/.test(spanId)) return undefined;
  return { traceId, spanId, flags };
}

/** Span ids without a random draw each: a random 32-bit prefix per process and a counter. */
const SPAN_PREFIX = randomBytes(4).toString('hex');
let spanCounter = 0;
function nextSpanId(): string {
  spanCounter = (spanCounter + 1) >>> 0;
  if (spanCounter === 0) spanCounter = 1;
  return SPAN_PREFIX + spanCounter.toString(16).padStart(8, '0');
}

/** Trace context with no OpenTelemetry: ids only, nothing recorded. */
function plainSpan(traceId: string, flags: string): SagaSpan {
  const traceparent = format(traceId, nextSpanId(), flags);
  return {
    traceparent,
    request: () => ({ traceparent: format(traceId, nextSpanId(), flags), end: () => {} }),
    end: () => {},
  };
}

// ---------------------------------------------------------------------------
// OpenTelemetry, when installed (an optional peer dependency), typed by what is used here

interface OtelSpanContext {
  traceId: string;
  spanId: string;
  traceFlags: number;
  isRemote?: boolean;
}
interface OtelSpan {
  spanContext(): OtelSpanContext;
  isRecording(): boolean;
  setAttribute(key: string, value: string | number | boolean): unknown;
  setStatus(status: { code: number; message?: string }): unknown;
  end(): void;
}
interface OtelTracer {
  startSpan(name: string, options: { kind: number; attributes: Record<string, string | number | boolean> }, context: unknown): OtelSpan;
}
interface OtelApi {
  trace: {
    getTracer(name: string, version?: string): OtelTracer;
    setSpanContext(context: unknown, spanContext: OtelSpanContext): unknown;
    setSpan(context: unknown, span: OtelSpan): unknown;
    getSpan(context: unknown): OtelSpan | undefined;
  };
  context: { active(): unknown };
  ROOT_CONTEXT: unknown;
  SpanKind: { INTERNAL: number; CLIENT: number };
  SpanStatusCode: { OK: number; ERROR: number };
}

function loadOtel(): OtelApi | undefined {
  try {
    return createRequire(import.meta.url)('@opentelemetry/api') as OtelApi;
  } catch {
    return undefined;
  }
}

const hex2 = (n: number) => (n & 0xff).toString(16).padStart(2, '0');

function otelTracer(api: OtelApi, version: string | undefined): SagaTracer {
  // Asked of the global provider at each saga: one may be registered after the runtime was made.
  const tracer = api.trace.getTracer('scatter-saga', version);
  return {
    otel: true,
    saga(name, sagaVersion, sagaId, parent, resumed) {
      const p = parent === undefined ? undefined : parseTraceparent(parent);
      const parentCtx =
        p !== undefined
          ? api.trace.setSpanContext(api.ROOT_CONTEXT, { traceId: p.traceId, spanId: p.spanId, traceFlags: Number.parseInt(p.flags, 16), isRemote: true })
          : api.context.active();
      const open = (again: boolean) =>
        tracer.startSpan(
          `saga ${name}`,
          { kind: api.SpanKind.INTERNAL, attributes: { 'saga.id': sagaId, 'saga.name': name, 'saga.version': sagaVersion, ...(again ? { 'saga.resumed': true } : {}) } },
          parentCtx,
        );
      let span = open(resumed);
      if (!span.isRecording()) {
        // The API without a recording provider: ids of our own, when there is a parent to continue.
        return p !== undefined ? plainSpan(p.traceId, p.flags) : undefined;
      }
      let sagaCtx = api.trace.setSpan(api.ROOT_CONTEXT, span);
      let ended = false;
      /** The saga's span; one ended (the saga parked) is followed by a new one when it acts again (an operator retry). */
      const current = () => {
        if (ended) {
          span = open(true);
          sagaCtx = api.trace.setSpan(api.ROOT_CONTEXT, span);
          ended = false;
        }
        return span;
      };
      const traceparentOf = (sc: OtelSpanContext) => format(sc.traceId, sc.spanId, hex2(sc.traceFlags));
      return {
        get traceparent() {
          return traceparentOf(span.spanContext());
        },
        request(op, stepId, worker, attempt) {
          current();
          const r = tracer.startSpan(
            `${op} ${stepId}`,
            { kind: api.SpanKind.CLIENT, attributes: { 'saga.id': sagaId, 'saga.name': name, 'saga.step': stepId, 'saga.worker': worker, 'saga.op': op, 'saga.attempt': attempt } },
            sagaCtx,
          );
          let done = false;
          return {
            traceparent: traceparentOf(r.spanContext()),
            end(how) {
              if (done) return;
              done = true;
              if (how.ok) r.setStatus({ code: api.SpanStatusCode.OK });
              else {
                r.setAttribute('saga.error.code', how.code);
                r.setAttribute('saga.in_doubt', how.inDoubt);
                r.setStatus({ code: api.SpanStatusCode.ERROR, message: `${how.code}: ${how.message}` });
              }
              r.end();
            },
          };
        },
        end(how) {
          if (ended) return;
          ended = true;
          span.setAttribute('saga.status', how);
          if (how === 'committed') span.setStatus({ code: api.SpanStatusCode.OK });
          else if (how === 'compensation-failed') span.setStatus({ code: api.SpanStatusCode.ERROR, message: 'compensation failed: the saga is parked for an operator' });
          span.end();
        },
      };
    },
  };
}

const plainTracer: SagaTracer = {
  otel: false,
  saga(_name, _version, _sagaId, parent) {
    const p = parent === undefined ? undefined : parseTraceparent(parent);
    return p === undefined ? undefined : plainSpan(p.traceId, p.flags);
  },
};

/** Runs a tracing call; a tracer that throws (a faulty span processor) must never stop a saga. */
function safely<T>(f: () => T, otherwise: T): T {
  try {
    return f();
  } catch {
    return otherwise;
  }
}

/** A saga span whose calls never throw. */
function guarded(span: SagaSpan): SagaSpan {
  return {
    get traceparent() {
      return span.traceparent;
    },
    request(op, stepId, worker, attempt) {
      const r = safely<RequestSpan | undefined>(() => span.request(op, stepId, worker, attempt), undefined);
      if (r === undefined) return { traceparent: span.traceparent, end: () => {} };
      return { traceparent: r.traceparent, end: (how) => safely(() => r.end(how), undefined) };
    },
    end: (how) => safely(() => span.end(how), undefined),
  };
}

/**
 * The tracer of a runtime: OpenTelemetry's when `@opentelemetry/api` can be loaded, else
 * trace context only. Its spans never throw: a tracing failure leaves a saga untraced,
 * never stopped.
 */
export function sagaTracer(version?: string, api: OtelApi | undefined = loadOtel()): SagaTracer {
  const inner = api === undefined ? plainTracer : otelTracer(api, version);
  return {
    otel: inner.otel,
    saga(name, sagaVersion, sagaId, parent, resumed) {
      const span = safely(() => inner.saga(name, sagaVersion, sagaId, parent, resumed), undefined);
      return span === undefined ? undefined : guarded(span);
    },
  };
}
