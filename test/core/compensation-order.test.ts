/**
 * The compensation order of a saga (docs/patterns.md, "Compensation order"): `reverse`
 * (the default), `parallel` and `sequential`, on the embedded runtime; the definition's
 * checks of `compensation.order`; and the runnable example.
 */
import { describe, expect, it } from 'vitest';
import { createRuntime, defineSaga, defineWorker, SagaDefinitionError, TerminalError } from '../../src/index.ts';
import type { CompensationOrder } from '../../src/index.ts';

const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Workers that log when each undo starts and ends; `doMs` sets when each do completes. */
function world(options: { failUndo?: string } = {}) {
  const log: string[] = [];
  const undoneWith: Record<string, unknown> = {};
  const worker = (name: string, doMs: number) =>
    defineWorker({
      name,
      async do(input: { n: number }) {
        await pause(doMs);
        return { [name]: input.n };
      },
      async compensate(input, result) {
        log.push(`${name} starts`);
        undoneWith[name] = { input, result };
        await pause(15);
        if (options.failUndo === name) throw new Error(`${name}: undo refused`);
        log.push(`${name} done`);
      },
    });
  const fail = defineWorker({
    name: 'fail',
    async do(_input: unknown): Promise<null> {
      throw new TerminalError('no');
    },
    async compensate() {},
  });
  return { log, undoneWith, worker, fail };
}

/** Three parallel steps completing a, then b, then c; a fourth after them fails. */
function threeThenFail(order: CompensationOrder | undefined, w: ReturnType<typeof world>) {
  const a = w.worker('a', 1);
  const b = w.worker('b', 15);
  const c = w.worker('c', 30);
  const saga = defineSaga({
    name: `three-${order ?? 'default'}`,
    version: 1,
    steps: { a: { worker: a }, b: { worker: b }, c: { worker: c }, d: { worker: w.fail, after: ['a', 'b', 'c'] } },
    compensation: { retries: 0, timeoutMs: 1_000, ...(order === undefined ? {} : { order }) },
  });
  return { saga, workers: [a, b, c, w.fail] };
}

describe('compensation order', () => {
  it("defaults to 'reverse', and the definition says which order it has", () => {
    const w = world();
    expect(threeThenFail(undefined, w).saga.compensationOrder).toBe('reverse');
    expect(threeThenFail('sequential', w).saga.compensationOrder).toBe('sequential');
  });

  it('sequential: one undo at a time, the last step to complete first; each compensate gets its input and result', async () => {
    const w = world();
    const { saga, workers } = threeThenFail('sequential', w);
    const runtime = createRuntime().host(...workers);
    try {
      const outcome = await runtime.run(saga, { n: 7 });
      expect(outcome.status).toBe('compensated');
      expect(w.log).toEqual(['c starts', 'c done', 'b starts', 'b done', 'a starts', 'a done']);
      expect(w.undoneWith.b).toEqual({ input: { n: 7 }, result: { b: 7 } });
    } finally {
      await runtime.close();
    }
  });

  it('parallel: every undo starts at once', async () => {
    const w = world();
    const { saga, workers } = threeThenFail('parallel', w);
    const runtime = createRuntime().host(...workers);
    try {
      expect((await runtime.run(saga, { n: 1 })).status).toBe('compensated');
      expect(w.log.slice(0, 3).sort()).toEqual(['a starts', 'b starts', 'c starts']);
    } finally {
      await runtime.close();
    }
  });

  it('reverse: a step is undone after the steps that ran after it; parallel steps at once', async () => {
    const w = world();
    const truck = w.worker('truck', 1);
    const load = w.worker('load', 1);
    const crossing = w.worker('crossing', 1);
    const saga = defineSaga({
      name: 'move',
      version: 1,
      steps: { truck: { worker: truck }, load: { worker: load, after: ['truck'] }, crossing: { worker: crossing, after: ['truck'] }, customs: { worker: w.fail, after: ['load', 'crossing'] } },
    });
    const runtime = createRuntime().host(truck, load, crossing, w.fail);
    try {
      expect((await runtime.run(saga, { n: 1 })).status).toBe('compensated');
      expect(w.log.slice(0, 2).sort()).toEqual(['crossing starts', 'load starts']);
      expect(w.log.slice(4)).toEqual(['truck starts', 'truck done']);
    } finally {
      await runtime.close();
    }
  });

  it('sequential: a step whose outcome the saga never saw (still running when the saga aborts) is undone first', async () => {
    const w = world();
    const slow = w.worker('slow', 150);
    const fast = w.worker('fast', 1);
    const failLater = defineWorker({
      name: 'fail-later',
      async do(_input: unknown): Promise<null> {
        await pause(20);
        throw new TerminalError('no');
      },
      async compensate() {},
    });
    const saga = defineSaga({
      name: 'unseen',
      version: 1,
      steps: { fast: { worker: fast }, slow: { worker: slow }, fail: { worker: failLater } },
      compensation: { order: 'sequential' },
    });
    const runtime = createRuntime().host(slow, fast, failLater);
    try {
      expect((await runtime.run(saga, { n: 1 })).status).toBe('compensated');
      expect(w.log).toEqual(['slow starts', 'slow done', 'fast starts', 'fast done']);
    } finally {
      await runtime.close();
    }
  });

  it("sequential: when an undo gives up, the saga parks and the steps behind it are 'blocked', never attempted", async () => {
    const w = world({ failUndo: 'c' });
    const { saga, workers } = threeThenFail('sequential', w);
    const runtime = createRuntime().host(...workers);
    try {
      const outcome = await runtime.run(saga, { n: 1 });
      expect(outcome.status).toBe('compensation-failed');
      if (outcome.status !== 'compensation-failed') return;
      const why = Object.fromEntries(outcome.remaining.map((r) => [r.stepId, [r.why, r.attempts]]));
      expect(why).toEqual({ a: ['blocked', 0], b: ['blocked', 0], c: ['compensation-failed', 1] });
      expect(w.log).toEqual(['c starts']);
    } finally {
      await runtime.close();
    }
  });

  it("reverse, the same failure: the other parallel steps' undos went ahead, only the failed one remains", async () => {
    const w = world({ failUndo: 'c' });
    const { saga, workers } = threeThenFail('reverse', w);
    const runtime = createRuntime().host(...workers);
    try {
      const outcome = await runtime.run(saga, { n: 1 });
      expect(outcome.status).toBe('compensation-failed');
      if (outcome.status !== 'compensation-failed') return;
      expect(outcome.remaining.map((r) => [r.stepId, r.why])).toEqual([['c', 'compensation-failed']]);
      expect(outcome.compensated.slice().sort()).toEqual(['a', 'b']);
    } finally {
      await runtime.close();
    }
  });

  it('a bad order is a SagaDefinitionError naming the field; a step cannot set one', () => {
    const steps = { a: { worker: 'a' } };
    const bad = () => defineSaga({ name: 'bad', version: 1, steps, compensation: { order: 'backwards' as CompensationOrder } });
    expect(bad).toThrow(SagaDefinitionError);
    expect(bad).toThrow(/unknown compensation order "backwards" \(allowed: reverse, parallel, sequential\)/);
    try {
      bad();
    } catch (e) {
      expect(e).toMatchObject({ saga: 'bad', field: 'compensation.order' });
    }
    const perStep = () => defineSaga({ name: 'bad', version: 1, steps: { a: { worker: 'a', compensation: { order: 'parallel' } as never } } });
    expect(perStep).toThrow(/the undo order is the saga's/);
    try {
      perStep();
    } catch (e) {
      expect(e).toMatchObject({ saga: 'bad', step: 'a', field: 'compensation.order' });
    }
  });
});

describe('examples/compensation-order.ts', () => {
  it('runs: each order undoes the same three effects in its own order', async () => {
    const { execFileSync } = await import('node:child_process');
    const out = execFileSync(process.execPath, ['--import', 'tsx', 'examples/compensation-order.ts'], { encoding: 'utf8' });
    const section = (name: string) => out.split(/\n(?=\w)/).find((s) => s.startsWith(`${name}:`))?.split('\n').slice(1).map((l) => l.trim()).filter((l) => l !== '') ?? [];
    expect(out).toMatch(/^reverse: compensated$/m);
    expect(section('sequential')).toEqual(['undo load starts', 'undo load done', 'undo crossing starts', 'undo crossing done', 'undo truck starts', 'undo truck done']);
    expect(section('parallel').slice(0, 3).sort()).toEqual(['undo crossing starts', 'undo load starts', 'undo truck starts']);
    expect(section('reverse').slice(4)).toEqual(['undo truck starts', 'undo truck done']);
  });
});
