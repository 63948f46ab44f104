import { describe, expect, it } from 'vitest';
import { defineSaga, defineWorker, noCompensation, SagaDefinitionError } from '../../src/index.ts';

const w = defineWorker({ name: 'w', do: async () => 1, compensate: async () => {} });

function definitionError(fn: () => unknown): SagaDefinitionError {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(SagaDefinitionError);
    return error as SagaDefinitionError;
  }
  throw new Error('expected a SagaDefinitionError');
}

describe('defineWorker', () => {
  it('requires compensate, and says how to opt out explicitly', () => {
    const e = definitionError(() => defineWorker({ name: 'pay', do: async () => 1 } as never));
    expect(e.code).toBe('DEFINITION_INVALID');
    expect(e.field).toBe('compensate');
    expect(e.message).toContain("worker 'pay'");
    expect(e.message).toContain('noCompensation');
  });

  it('accepts an explicit noCompensation with its reason', () => {
    const quote = defineWorker({ name: 'quote', do: async () => 1, compensate: noCompensation('read-only lookup') });
    expect(quote.noCompensationReason).toBe('read-only lookup');
    expect(w.noCompensationReason).toBeUndefined();
  });

  it('rejects an empty noCompensation reason', () => {
    expect(() => noCompensation('  ')).toThrow(SagaDefinitionError);
  });

  it('rejects bad names, a missing do and unknown options', () => {
    expect(definitionError(() => defineWorker({ name: 'bad name', do: async () => 1, compensate: async () => {} })).field).toBe('name');
    expect(definitionError(() => defineWorker({ name: 'x', compensate: async () => {} } as never)).field).toBe('do');
    expect(definitionError(() => defineWorker({ name: 'x', do: async () => 1, compensate: async () => {}, retries: 3 } as never)).field).toBe('retries');
  });

  it('is a type error to omit compensate', () => {
    // @ts-expect-error compensate is mandatory in the types too
    expect(() => defineWorker({ name: 'x', do: async () => 1 })).toThrow(SagaDefinitionError);
  });
});

describe('defineSaga', () => {
  const ok = { name: 'trip', version: 1, steps: { a: { worker: 'w' } } };

  it('fills in defaults', () => {
    const s = defineSaga({ name: 'trip', version: 2, steps: { a: { worker: w }, b: { worker: 'other', after: ['a'] } } });
    expect(s.join).toEqual({ kind: 'all' });
    const a = s.stepsById.get('a');
    expect(a?.timeoutMs).toBe(30_000);
    expect(a?.retries).toBe(0);
    expect(a?.compensation.retries).toBe(5);
    expect(a?.dependents).toEqual(['b']);
    expect([...s.workers.keys()]).toEqual(['w', 'other']);
  });

  it('rejects an empty saga', () => {
    const e = definitionError(() => defineSaga({ ...ok, steps: {} }));
    expect(e.saga).toBe('trip');
    expect(e.field).toBe('steps');
  });

  it('rejects unknown options on the saga and on steps, naming saga, step and field', () => {
    expect(definitionError(() => defineSaga({ ...ok, retries: 2 } as never)).field).toBe('retries');
    const e = definitionError(() => defineSaga({ ...ok, steps: { a: { worker: 'w', timeout: 5 } } } as never));
    expect(e.saga).toBe('trip');
    expect(e.step).toBe('a');
    expect(e.field).toBe('timeout');
    expect(e.path).toBe('steps.a.timeout');
    expect(e.message).toMatch(/^saga 'trip', field 'steps\.a\.timeout': unknown option 'timeout'/);
  });

  it.each([
    ['a step compensation backoff', { steps: { pay: { worker: 'w', compensation: { backoff: { initialMS: 1 } } } } }, 'pay', 'compensation.backoff.initialMS', 'steps.pay.compensation.backoff.initialMS'],
    ['a step backoff', { steps: { pay: { worker: 'w', backoff: { maxMS: 1 } } } }, 'pay', 'backoff.maxMS', 'steps.pay.backoff.maxMS'],
    ['a step compensation', { steps: { pay: { worker: 'w', compensation: { retry: 1 } } } }, 'pay', 'compensation.retry', 'steps.pay.compensation.retry'],
    ['the saga compensation backoff', { steps: { pay: { worker: 'w' } }, compensation: { backoff: { initialMS: 1 } } }, undefined, 'compensation.backoff.initialMS', 'compensation.backoff.initialMS'],
    ['a quorum join', { steps: { pay: { worker: 'w' } }, join: { kind: 'quorum', n: 1, of: 2 } }, undefined, 'join.of', 'join.of'],
  ])('names the full path of a typo in %s', (_label, spec, step, field, path) => {
    const e = definitionError(() => defineSaga({ name: 'trip', version: 1, ...spec } as never));
    expect(e.step).toBe(step);
    expect(e.field).toBe(field);
    expect(e.path).toBe(path);
    expect(e.message).toContain(`field '${path}'`);
  });

  it('suggests the option a typo differs from only in case', () => {
    const e = definitionError(() => defineSaga({ ...ok, steps: { pay: { worker: 'w', compensation: { backoff: { initialMS: 1 } } } } } as never));
    expect(e.message).toBe(
      "saga 'trip', field 'steps.pay.compensation.backoff.initialMS': unknown option 'initialMS' (allowed: initialMs, factor, maxMs, jitter); did you mean 'initialMs'?",
    );
  });

  it.each([
    ['negative timeout', { timeoutMs: -1 }, 'timeoutMs'],
    ['zero timeout', { timeoutMs: 0 }, 'timeoutMs'],
    ['infinite timeout', { timeoutMs: Infinity }, 'timeoutMs'],
    ['NaN timeout', { timeoutMs: Number.NaN }, 'timeoutMs'],
    ['negative retries', { retries: -1 }, 'retries'],
    ['fractional retries', { retries: 1.5 }, 'retries'],
    ['infinite compensation retries', { compensation: { retries: Infinity } }, 'compensation.retries'],
    ['backoff factor below 1', { backoff: { factor: 0.5 } }, 'backoff.factor'],
    ['backoff max below initial', { backoff: { initialMs: 500, maxMs: 100 } }, 'backoff.maxMs'],
  ])('rejects a %s', (_label, extra, field) => {
    const e = definitionError(() => defineSaga({ ...ok, steps: { a: { worker: 'w', ...extra } } } as never));
    expect(e.step).toBe('a');
    expect(e.field).toBe(field);
    expect(e.message).toContain(`field 'steps.a.${field}'`);
  });

  it('rejects bad versions and names', () => {
    expect(definitionError(() => defineSaga({ ...ok, version: 0 })).field).toBe('version');
    expect(definitionError(() => defineSaga({ ...ok, version: 1.5 })).field).toBe('version');
    expect(definitionError(() => defineSaga({ ...ok, name: '' })).field).toBe('name');
  });

  it('rejects unknown dependencies, self-dependencies and cycles', () => {
    // Both are compile errors in TypeScript (test/types); plain JavaScript gets them at run time.
    expect(definitionError(() => defineSaga({ ...ok, steps: { a: { worker: 'w', after: ['zz'] } } } as never)).message).toContain("unknown step 'zz'");
    expect(definitionError(() => defineSaga({ ...ok, steps: { a: { worker: 'w', after: ['a'] } } } as never)).field).toBe('after');
    const e = definitionError(() =>
      defineSaga({ ...ok, steps: { a: { worker: 'w', after: ['c'] }, b: { worker: 'w', after: ['a'] }, c: { worker: 'w', after: ['b'] } } }),
    );
    expect(e.message).toMatch(/cycle: a -> c -> b -> a/);
  });

  it('rejects join policies that cannot work', () => {
    expect(definitionError(() => defineSaga({ ...ok, join: { kind: 'most' } as never })).field).toBe('join');
    expect(definitionError(() => defineSaga({ ...ok, join: { kind: 'quorum', n: 2 } })).field).toBe('join.n');
    const staged = { a: { worker: 'w' }, b: { worker: 'w', after: ['a'] } };
    expect(definitionError(() => defineSaga({ ...ok, steps: staged, join: { kind: 'any' } })).message).toContain('parallel');
  });

  it('rejects a worker that is neither a name nor a definition, and two definitions with one name', () => {
    expect(definitionError(() => defineSaga({ ...ok, steps: { a: { worker: 42 as never } } })).field).toBe('worker');
    const w2 = defineWorker({ name: 'w', do: async () => 2, compensate: async () => {} });
    expect(definitionError(() => defineSaga({ ...ok, steps: { a: { worker: w }, b: { worker: w2 } } })).message).toContain("named 'w'");
  });

  it('rejects a non-function input', () => {
    expect(definitionError(() => defineSaga({ ...ok, steps: { a: { worker: 'w', input: 5 as never } } })).field).toBe('input');
  });
});
