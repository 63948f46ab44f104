/**
 * The rule for values that cross a step (plain JSON only), as scenarios any transport
 * must pass alike: test/core/values.test.ts runs them in memory, test/nats/values.test.ts
 * over NATS. Each scenario builds its runtime with `setup(workers)`.
 */
import { expect, it } from 'vitest';
import { defineSaga, defineWorker, InputNotSerializableError } from '../../src/index.ts';
import type { Runtime, WorkerDefinition } from '../../src/index.ts';

/** A runtime serving `workers` on some transport, and how to tear both down. */
export type Setup = (workers: WorkerDefinition[]) => Promise<{ runtime: Runtime; close: () => Promise<void> }>;

export function valueScenarios(setup: Setup): void {
  it('a plain JSON input reaches the worker equal to what was passed, and its result comes back equal', async () => {
    const seen: unknown[] = [];
    const echo = defineWorker({
      name: 'echo',
      do: (input: unknown) => (seen.push(input), { got: input, list: [1, null, 'x', { deep: [true] }] }),
      compensate: () => undefined,
    });
    const { runtime, close } = await setup([echo]);
    const input = { text: 'héllo', n: -1.5, none: null, items: [1, { a: [] }], at: '2024-01-01T00:00:00.000Z' };
    const outcome = await runtime.run(defineSaga({ name: 'echo', version: 1, steps: { a: { worker: 'echo' } } }), input);
    expect(seen).toEqual([input]);
    expect(outcome).toEqual(expect.objectContaining({ status: 'committed', results: { a: { got: input, list: [1, null, 'x', { deep: [true] }] } } }));
    await close();
  });

  it('a worker gets copies: mutating its input, or its result after returning it, changes nothing the saga holds', async () => {
    const returned: { items: number[] }[] = [];
    const mutating = defineWorker({
      name: 'mutating',
      do: (input: { items: number[] }) => {
        input.items.push(99);
        const result = { items: [...input.items] };
        returned.push(result);
        return result;
      },
      compensate: () => undefined,
    });
    const reader = defineWorker({ name: 'reader', do: (input: unknown) => input, compensate: () => undefined });
    const { runtime, close } = await setup([mutating, reader]);
    const input = { items: [1] };
    const saga = defineSaga({
      name: 'copies',
      version: 1,
      steps: { a: { worker: 'mutating' }, b: { worker: 'reader', after: ['a'], input: (_o, r) => r.a } },
    });
    const outcome = await runtime.run(saga, input, { sagaId: 'copies-1' });
    returned[0]?.items.push(100);
    expect(input).toEqual({ items: [1] });
    expect(outcome).toMatchObject({ status: 'committed', results: { a: { items: [1, 99] }, b: { items: [1, 99] } } });
    await close();
  });

  it.each([
    ['Date', { when: new Date(0) }, 'input.when', 'date.toISOString()'],
    ['Map', { byId: new Map([['a', 1]]) }, 'input.byId', 'Object.fromEntries(map)'],
    ['Set', { tags: new Set(['x']) }, 'input.tags', '[...set]'],
    ['BigInt', { cents: 10n }, 'input.cents', 'n.toString()'],
    ['NaN', { rate: Number.NaN }, 'input.rate', 'JSON has no NaN'],
  ])('run refuses a saga input holding a %s, naming its path, before anything is sent', async (_label, input, path, fix) => {
    let calls = 0;
    const w = defineWorker({ name: 'w', do: () => void calls++, compensate: () => undefined });
    const { runtime, close } = await setup([w]);
    const error = await runtime.run(defineSaga({ name: 'dates', version: 1, steps: { a: { worker: 'w' } } }), input).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(InputNotSerializableError);
    expect(error).toMatchObject({ code: 'INPUT_NOT_SERIALIZABLE', path, saga: 'dates' });
    expect((error as Error).message).toMatch(new RegExp(`^saga 'dates': ${path.replace('.', '\\.')} is .*, not a plain JSON value; `));
    expect((error as Error).message).toContain(fix);
    expect(calls).toBe(0);
    await close();
  });

  it('a worker whose result holds a Date: RESULT_NOT_SERIALIZABLE naming the worker, step and path; the effect is undone', async () => {
    const held = new Set<string>();
    const clock = defineWorker({
      name: 'clock',
      do: (_input: unknown, ctx) => (held.add(ctx.idempotencyKey), { at: new Date(0) }),
      compensate: (_input, result, ctx) => {
        expect(result).toBeUndefined();
        held.delete(ctx.idempotencyKey);
      },
    });
    const { runtime, close } = await setup([clock]);
    const outcome = await runtime.run(defineSaga({ name: 'when', version: 1, steps: { stamp: { worker: 'clock' } } }), {}, { sagaId: 'when-1' });
    expect(outcome).toMatchObject({ status: 'compensated', compensated: ['stamp'] });
    const failure = outcome.status === 'compensated' ? outcome.failures[0] : undefined;
    expect(failure).toMatchObject({ stepId: 'stamp', inDoubt: true, error: { code: 'RESULT_NOT_SERIALIZABLE' } });
    expect(failure?.error.message).toBe(
      "the do of worker 'clock' for step 'stamp' of saga 'when-1' returned a result that cannot be stored or returned: result.at is a Date, not a plain JSON value; pass date.toISOString(). Its effect applied: the step is in doubt and is compensated",
    );
    expect(failure?.error.message).not.toContain('sent to a worker');
    expect(held.size).toBe(0);
    await close();
  });

  it('a later step whose input (computed from a result) holds a Date fails before it is sent, and the saga compensates', async () => {
    const calls: string[] = [];
    const first = defineWorker({ name: 'first', do: () => (calls.push('first.do'), { day: '2024-01-01' }), compensate: () => void calls.push('first.compensate') });
    const second = defineWorker({ name: 'second', do: () => void calls.push('second.do'), compensate: () => void calls.push('second.compensate') });
    const { runtime, close } = await setup([first, second]);
    const saga = defineSaga({
      name: 'staged',
      version: 1,
      steps: {
        a: { worker: 'first' },
        b: { worker: 'second', after: ['a'], input: (_in: unknown, r: Record<string, unknown>) => ({ on: new Date(String((r.a as { day: string }).day)) }) },
      },
    });
    const outcome = await runtime.run(saga, {});
    expect(outcome).toMatchObject({
      status: 'compensated',
      compensated: ['a'],
      failures: [{ stepId: 'b', reason: 'input-failed', inDoubt: false, error: { code: 'INPUT_NOT_SERIALIZABLE', message: expect.stringContaining("saga 'staged': step 'b' input.on is a Date") } }],
    });
    expect(calls).toEqual(['first.do', 'first.compensate']);
    await close();
  });
}
