import { trace } from '@opentelemetry/api';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { createRuntime, defineSaga, defineWorker, InvalidOptionError, memorySagaStore, TerminalError } from '../../src/index.ts';
import type { RunOptions } from '../../src/index.ts';

const W3C = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;
const PARENT = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';

/** What each worker call saw: its op, step and ctx.traceparent. */
const seen: { op: string; city: string; traceparent: string | undefined }[] = [];
const flights = defineWorker({
  name: 'flights',
  do: (city: string, ctx) => {
    seen.push({ op: 'do flight', city, traceparent: ctx.traceparent });
    return { seat: `${city}-1A` };
  },
  compensate: (city: string, _r, ctx) => void seen.push({ op: 'compensate flight', city, traceparent: ctx.traceparent }),
});
const hotels = defineWorker({
  name: 'hotels',
  do: (city: string, ctx) => {
    seen.push({ op: 'do hotel', city, traceparent: ctx.traceparent });
    if (city === 'Atlantis') throw new TerminalError('no hotel in Atlantis');
    return { room: 12 };
  },
  compensate: () => undefined,
});
const trip = defineSaga({
  name: 'trip',
  version: 1,
  steps: { flight: { worker: flights, input: (c: string) => c }, hotel: { worker: hotels, input: (c: string) => c, after: ['flight'] } },
});

async function run(city: string, options?: RunOptions) {
  seen.length = 0;
  const runtime = createRuntime().host(flights, hotels);
  try {
    return await runtime.run(trip, city, options);
  } finally {
    await runtime.close();
  }
}

describe('trace context without OpenTelemetry recording', () => {
  test('a saga started without a traceparent sends none: ctx.traceparent is undefined', async () => {
    expect((await run('Oslo')).status).toBe('committed');
    expect(seen.map((s) => s.traceparent)).toEqual([undefined, undefined]);
  });

  test("a saga started with a traceparent continues its trace: each request has the trace's id and a span of its own", async () => {
    expect((await run('Atlantis', { traceparent: PARENT })).status).toBe('compensated');
    expect(seen.map((s) => s.op)).toEqual(['do flight', 'do hotel', 'compensate flight']);
    const parts = seen.map((s) => W3C.exec(s.traceparent ?? '') as RegExpExecArray);
    for (const p of parts) {
      expect(p, 'a W3C traceparent').not.toBeNull();
      expect(p[1]).toBe('4bf92f3577b34da6a3ce929d0e0e4736');
      expect(p[3]).toBe('01');
    }
    const spans = parts.map((p) => p[2]);
    expect(new Set([...spans, '00f067aa0ba902b7']).size).toBe(4);
  });

  test("the journal keeps the saga's traceparent, so a coordinator that resumes it continues the trace", async () => {
    const store = memorySagaStore();
    const runtime = createRuntime({ store }).host(flights, hotels);
    try {
      const outcome = await runtime.run(trip, 'Oslo', { traceparent: PARENT });
      expect((await store.get(outcome.sagaId))?.traceparent).toBe(PARENT);
      const untraced = await runtime.run(trip, 'Oslo');
      expect((await store.get(untraced.sagaId))?.traceparent).toBeUndefined();
    } finally {
      await runtime.close();
    }
  });

  test('a traceparent that is not W3C is refused, naming the option, before anything runs', async () => {
    for (const bad of ['nope', '00-00000000000000000000000000000000-00f067aa0ba902b7-01', '00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01', 42]) {
      await expect(run('Oslo', { traceparent: bad as string })).rejects.toThrow(InvalidOptionError);
      await expect(run('Oslo', { traceparent: bad as string })).rejects.toThrow(/option 'traceparent': must be a W3C traceparent/);
    }
    expect(seen).toEqual([]);
  });
});

describe('OpenTelemetry spans, with a recording tracer provider', () => {
  const exporter = new InMemorySpanExporter();
  beforeAll(() => {
    trace.setGlobalTracerProvider(new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] }));
  });
  afterAll(() => {
    trace.disable();
  });

  const finished = () =>
    exporter.getFinishedSpans().map((s) => ({
      name: s.name,
      traceId: s.spanContext().traceId,
      spanId: s.spanContext().spanId,
      parent: s.parentSpanContext?.spanId,
      status: s.status.code,
      attributes: s.attributes,
    }));

  test('a span for the saga, and one for each request (do and compensate), children of it; workers get their request span as traceparent', async () => {
    exporter.reset();
    expect((await run('Atlantis')).status).toBe('compensated');
    const spans = finished();
    const saga = spans.find((s) => s.name === 'saga trip');
    expect(saga, 'the saga span').toBeDefined();
    expect(saga?.attributes).toMatchObject({ 'saga.name': 'trip', 'saga.version': 1, 'saga.status': 'compensated' });
    const requests = spans.filter((s) => s !== saga).map((s) => ({ name: s.name, parent: s.parent, traceId: s.traceId, status: s.status, code: s.attributes['saga.error.code'] }));
    expect(requests).toEqual([
      { name: 'do flight', parent: saga?.spanId, traceId: saga?.traceId, status: 1, code: undefined },
      { name: 'do hotel', parent: saga?.spanId, traceId: saga?.traceId, status: 2, code: 'WORKER_ERROR' },
      { name: 'compensate flight', parent: saga?.spanId, traceId: saga?.traceId, status: 1, code: undefined },
    ]);
    // Each worker call got the trace context of its own request span.
    const byName = new Map(spans.map((s) => [s.name, `00-${s.traceId}-${s.spanId}-01`]));
    expect(seen.map((s) => s.traceparent)).toEqual([byName.get('do flight'), byName.get('do hotel'), byName.get('compensate flight')]);
  });

  test("with run()'s traceparent, the saga span is a child of the caller's span, in the caller's trace", async () => {
    exporter.reset();
    expect((await run('Oslo', { traceparent: PARENT })).status).toBe('committed');
    const saga = finished().find((s) => s.name === 'saga trip');
    expect(saga).toMatchObject({ traceId: '4bf92f3577b34da6a3ce929d0e0e4736', parent: '00f067aa0ba902b7', status: 1 });
    expect(finished().filter((s) => s.name.startsWith('do ')).every((s) => s.traceId === saga?.traceId && s.parent === saga?.spanId)).toBe(true);
  });
});

describe('a tracer that throws', () => {
  beforeAll(() => {
    const throwing = {
      onStart: () => {
        throw new Error('span processor broke on start');
      },
      onEnd: () => {
        throw new Error('span processor broke on end');
      },
      forceFlush: async () => undefined,
      shutdown: async () => undefined,
    };
    trace.setGlobalTracerProvider(new BasicTracerProvider({ spanProcessors: [throwing] }));
  });
  afterAll(() => {
    trace.disable();
  });

  test('never stops a saga: it commits and compensates as untraced', async () => {
    expect((await run('Oslo')).status).toBe('committed');
    expect((await run('Atlantis', { traceparent: PARENT })).status).toBe('compensated');
    expect(seen.map((s) => s.op)).toEqual(['do flight', 'do hotel', 'compensate flight']);
  });
});
