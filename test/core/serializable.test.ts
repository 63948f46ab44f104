import { describe, expect, it } from 'vitest';
import { InputNotSerializableError } from '../../src/index.ts';
import { assertSerializable, findNotJson } from '../../src/machines/serializable.ts';

class Money {
  constructor(readonly cents: number) {}
}

describe('plain JSON values: the rule for what crosses a step', () => {
  it('accepts plain JSON values, null-prototype objects, and undefined properties (left out, as JSON does)', () => {
    const bare = Object.assign(Object.create(null) as object, { a: 1 });
    for (const v of [null, true, 0, -1.5, '', 'x', [], [1, 'a', null, [{}]], { a: { b: [1, { c: 'd' }] } }, bare, { gone: undefined }, undefined]) {
      expect(findNotJson(v, 'input')).toBeUndefined();
    }
  });

  it.each([
    ['a Date', { when: new Date(0) }, 'input.when', 'a Date', 'date.toISOString()'],
    ['a Map', { m: new Map([['a', 1]]) }, 'input.m', 'a Map', 'Object.fromEntries(map)'],
    ['a Set', { tags: new Set(['a']) }, 'input.tags', 'a Set', '[...set]'],
    ['a BigInt', { n: 10n }, 'input.n', 'a BigInt', 'as a string'],
    ['a function', { f: () => 1 }, 'input.f', 'a function', 'pass data'],
    ['a symbol', { s: Symbol('s') }, 'input.s', 'a symbol', 'pass a string'],
    ['a class instance', { price: new Money(5) }, 'input.price', 'a Money instance', 'plain object'],
    ['a Uint8Array', { bytes: new Uint8Array(2) }, 'input.bytes', 'a Uint8Array', 'base64'],
    ['an ArrayBuffer', { bytes: new ArrayBuffer(2) }, 'input.bytes', 'an ArrayBuffer', 'base64'],
    ['an Int16Array', { bytes: new Int16Array(2) }, 'input.bytes', 'an Int16Array', 'base64'],
    ['a Promise', { later: Promise.resolve(1) }, 'input.later', 'a Promise', 'await it first'],
    ['an Error', { e: new Error('x') }, 'input.e', 'an Error', '{ code, message }'],
    ['NaN', { n: Number.NaN }, 'input.n', 'NaN', 'JSON has no NaN'],
    ['Infinity', { n: -Infinity }, 'input.n', '-Infinity', 'JSON has no Infinity'],
    ['undefined in an array', { items: [1, undefined] }, 'input.items[1]', 'undefined inside an array', 'pass null'],
    ['a hole in an array', { items: [1, , 3] }, 'input.items[1]', 'undefined inside an array', 'pass null'],
    ['a deep Date', { a: [{ b: { when: new Date(0) } }] }, 'input.a[0].b.when', 'a Date', 'date.toISOString()'],
  ])('refuses %s, naming its path, what it is and what to pass instead', (_label, value, path, what, fix) => {
    const bad = findNotJson(value, 'input');
    expect(bad).toMatchObject({ path, what });
    expect(bad?.fix).toContain(fix);
    let thrown: unknown;
    try {
      assertSerializable(value, 'input', 'trip');
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toBeInstanceOf(InputNotSerializableError);
    expect(thrown).toMatchObject({ code: 'INPUT_NOT_SERIALIZABLE', path, saga: 'trip' });
    expect((thrown as Error).message).toBe(`saga 'trip': ${path} is ${what}, not a plain JSON value; ${bad?.fix}`);
  });

  it('refuses a Date at the top level and a cycle', () => {
    expect(findNotJson(new Date(0), 'result')).toMatchObject({ path: 'result', what: 'a Date' });
    const cyclic: Record<string, unknown> = { a: 1 };
    cyclic.self = { back: cyclic };
    expect(findNotJson(cyclic, 'input')).toMatchObject({ path: 'input.self.back', what: expect.stringContaining('cycle') });
  });

  it('accepts a value seen twice that is not a cycle', () => {
    const shared = { a: 1 };
    expect(findNotJson({ x: shared, y: [shared, shared] }, 'input')).toBeUndefined();
  });
});
