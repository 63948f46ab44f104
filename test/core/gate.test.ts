/**
 * The supervisor gate (docs/patterns.md): a step's result is checked before the saga
 * counts it; a rejected result fails the step, and since its worker did commit, the
 * effect is compensated, with the result it returned.
 */
import { describe, expect, it } from 'vitest';
import { createRuntime, defineSaga, defineWorker, SagaDefinitionError } from '../../src/index.ts';

/** A system of record per worker: effects held by idempotency key, and what each compensate was given. */
function records() {
  const held = new Map<string, Set<string>>();
  const undoneWith: unknown[] = [];
  const worker = (name: string, result: (input: unknown) => unknown) =>
    defineWorker({
      name,
      async do(input: unknown, ctx) {
        const set = held.get(name) ?? new Set<string>();
        held.set(name, set);
        set.add(ctx.idempotencyKey);
        return result(input);
      },
      async compensate(input, res, ctx) {
        undoneWith.push({ worker: name, input, result: res });
        held.get(name)?.delete(ctx.idempotencyKey);
      },
    });
  const holding = (name: string) => held.get(name)?.size ?? 0;
  return { worker, holding, undoneWith };
}

describe('supervisor gate', () => {
  it('a rejected result fails the step and is compensated with that result; the saga compensates', async () => {
    const r = records();
    const seen: unknown[] = [];
    const saga = defineSaga({
      name: 'answer',
      version: 1,
      steps: {
        draft: {
          worker: 'llm',
          input: (q: { question: string }) => ({ prompt: q.question }),
          gate: (result: { text: string }, input: { prompt: string }) => {
            seen.push({ result, input });
            return result.text.length <= 10 || `answer is ${result.text.length} characters, at most 10 allowed`;
          },
        },
        ledger: { worker: 'ledger' },
      },
    });
    const runtime = createRuntime().host(
      r.worker('llm', () => ({ text: 'a very long answer' })),
      r.worker('ledger', () => 'written'),
    );
    const outcome = await runtime.run(saga, { question: 'why?' });
    expect(outcome.status).toBe('compensated');
    if (outcome.status !== 'compensated') return;
    expect(outcome.failures).toEqual([
      {
        stepId: 'draft',
        worker: 'llm',
        reason: 'rejected',
        attempt: 1,
        error: { code: 'GATE_REJECTED', message: "the gate of step 'draft' (worker 'llm') rejected its result: answer is 18 characters, at most 10 allowed", retryable: false },
        inDoubt: true,
      },
    ]);
    expect(outcome.compensated.slice().sort()).toEqual(['draft', 'ledger']);
    expect(seen).toEqual([{ result: { text: 'a very long answer' }, input: { prompt: 'why?' } }]);
    expect(r.undoneWith).toContainEqual({ worker: 'llm', input: { prompt: 'why?' }, result: { text: 'a very long answer' } });
    expect([r.holding('llm'), r.holding('ledger')]).toEqual([0, 0]);
    const status = await runtime.status(outcome.sagaId);
    expect(status?.steps.draft).toBe('compensated');
    await runtime.close();
  });

  it('an accepted result is kept as if there were no gate', async () => {
    const r = records();
    const saga = defineSaga({ name: 'ok', version: 1, steps: { a: { worker: 'a', gate: (x: number) => x > 0 || 'not positive' } } });
    const runtime = createRuntime().host(r.worker('a', () => 7));
    expect(await runtime.run(saga, null)).toMatchObject({ status: 'committed', results: { a: 7 }, released: [] });
    expect(r.holding('a')).toBe(1);
    await runtime.close();
  });

  it('under join any, a rejected step is released and another step is kept', async () => {
    const r = records();
    const saga = defineSaga({
      name: 'quotes',
      version: 1,
      join: { kind: 'any' },
      steps: {
        cheap: { worker: 'cheap', gate: (q: { price: number }) => q.price < 100 || `price ${q.price} over budget` },
        fair: { worker: 'fair', after: [] },
      },
    });
    const runtime = createRuntime().host(
      r.worker('cheap', () => ({ price: 500 })),
      r.worker('fair', () => ({ price: 90 })),
    );
    const outcome = await runtime.run(saga, null);
    expect(outcome).toMatchObject({ status: 'committed', results: { fair: { price: 90 } }, released: ['cheap'] });
    expect([r.holding('cheap'), r.holding('fair')]).toEqual([0, 1]);
    await runtime.close();
  });

  it('a rejected step stops the stage after it: its dependents never run', async () => {
    const r = records();
    let shipped = 0;
    const saga = defineSaga({
      name: 'chain',
      version: 1,
      steps: {
        check: { worker: 'check', gate: () => 'fraud score too high' },
        ship: { worker: 'ship', after: ['check'] },
      },
    });
    const runtime = createRuntime().host(
      r.worker('check', () => ({ score: 0.97 })),
      r.worker('ship', () => ++shipped),
    );
    expect(await runtime.run(saga, null)).toMatchObject({ status: 'compensated', compensated: ['check'], failures: [{ stepId: 'check', reason: 'rejected' }] });
    expect(shipped).toBe(0);
    expect(r.holding('check')).toBe(0);
    await runtime.close();
  });

  it('a gate that throws, or answers neither true nor a reason, rejects, and the reason says why', async () => {
    const cases: [string, (result: unknown) => unknown, string][] = [
      ['throws', () => { throw new Error('policy service down'); }, 'it threw: policy service down'],
      ['async', async () => true, 'it returned a Promise (a gate must be synchronous), not true or a reason'],
      ['false', () => false, 'it returned boolean false, not true or a reason'],
      ['undefined', () => undefined, 'it returned undefined, not true or a reason'],
      ['empty', () => '', 'it gave an empty reason'],
    ];
    for (const [name, gate, why] of cases) {
      const r = records();
      const saga = defineSaga({ name: `gate-${name}`, version: 1, steps: { a: { worker: 'a', gate: gate as never } } });
      const runtime = createRuntime().host(r.worker('a', () => 1));
      const outcome = await runtime.run(saga, null);
      expect(outcome, name).toMatchObject({ status: 'compensated', failures: [{ reason: 'rejected', error: { code: 'GATE_REJECTED', message: `the gate of step 'a' (worker 'a') rejected its result: ${why}` } }] });
      expect(r.holding('a'), name).toBe(0);
      await runtime.close();
    }
  });

  it('a gate that is not a function is refused at definition time, naming the step and the field', () => {
    const bad = () => defineSaga({ name: 'bad', version: 1, steps: { draft: { worker: 'llm', gate: 'length < 10' as never } } });
    expect(bad).toThrow(SagaDefinitionError);
    expect(bad).toThrow(/gate must be a function/);
    try {
      bad();
    } catch (e) {
      expect(e).toMatchObject({ step: 'draft', field: 'gate' });
    }
  });
});

describe('examples/supervisor-gate.ts', () => {
  it('runs: the short answer is published, the long one rejected and its draft deleted', async () => {
    const { execFileSync } = await import('node:child_process');
    const out = execFileSync(process.execPath, ['--import', 'tsx', 'examples/supervisor-gate.ts'], { encoding: 'utf8' });
    expect(out).toContain('3 words: committed');
    expect(out).toMatch(/20 words: compensated \(draft rejected: .*at most 60 allowed\)/);
    expect(out.trim().split('\n').at(-1)).toBe('  drafts stored: 1, pages published: 1');
  });
});
