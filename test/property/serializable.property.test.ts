/**
 * The value rule as properties (src/machines/serializable.ts), against JSON itself rather
 * than the code: a plain JSON value passes and its stable text is JSON with sorted keys,
 * whatever order its keys came in; a value with one part JSON would change or drop is
 * refused with the exact path of that part. Idempotency keys hang on the stable text: two
 * requests of a step with equal inputs must get one key, and different inputs two keys.
 */
import { createHash } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import { defineSaga } from '../../src/define.ts';
import { InputNotSerializableError, SagaDefinitionError } from '../../src/errors.ts';
import { assertSerializable, findNotJson, fingerprint, idempotencyKey, rootStepInput, stableStringify } from '../../src/machines/serializable.ts';

const RUNS = { numRuns: 300, seed: 20261203 };

/** The same value with every object's keys in another order (given by `order`). */
function reorder(v: unknown, order: number): unknown {
  if (Array.isArray(v)) return v.map((x) => reorder(x, order));
  if (v === null || typeof v !== 'object') return v;
  const keys = Object.keys(v);
  const rotated = keys.length === 0 ? keys : [...keys.slice(order % keys.length), ...keys.slice(0, order % keys.length)].reverse();
  const out: Record<string, unknown> = {};
  for (const k of rotated) Object.defineProperty(out, k, { value: reorder((v as Record<string, unknown>)[k], order + 1), enumerable: true, writable: true, configurable: true });
  return out;
}

/** JSON text with object keys sorted, written independently of the code under test. */
function sortedJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(sortedJson).join(',')}]`;
  if (v === null || typeof v !== 'object') return JSON.stringify(v);
  const keys = Object.keys(v).sort();
  return `{${keys.map((k) => `${JSON.stringify(k)}:${sortedJson((v as Record<string, unknown>)[k])}`).join(',')}}`;
}

// What JSON.stringify and JSON.parse give back (-0 becomes 0, as on the wire).
const jsonArb = fc.jsonValue({ maxDepth: 4 }).map((v) => JSON.parse(JSON.stringify(v)) as unknown);

describe('plain JSON values', () => {
  test('pass the check, and their stable text is JSON with sorted keys, whatever the order of their keys', () => {
    fc.assert(
      fc.property(jsonArb, fc.nat(7), (v, order) => {
        expect(findNotJson(v, 'input')).toBeUndefined();
        expect(() => assertSerializable(v)).not.toThrow();
        const text = stableStringify(v);
        expect(text).toBe(sortedJson(v));
        expect(JSON.parse(text)).toEqual(v);
        const same = reorder(v, order);
        expect(stableStringify(same)).toBe(text);
        expect(fingerprint(same)).toBe(fingerprint(v));
        expect(idempotencyKey('saga-1', 'step', same)).toBe(idempotencyKey('saga-1', 'step', v));
      }),
      RUNS,
    );
  });

  test('different values get different stable text, fingerprints and idempotency keys', () => {
    fc.assert(
      fc.property(jsonArb, jsonArb, (a, b) => {
        fc.pre(sortedJson(a) !== sortedJson(b));
        expect(stableStringify(a)).not.toBe(stableStringify(b));
        expect(fingerprint(a)).not.toBe(fingerprint(b));
        expect(idempotencyKey('saga-1', 'step', a)).not.toBe(idempotencyKey('saga-1', 'step', b));
      }),
      RUNS,
    );
  });

  test("a key's inputHash is as docs/protocol.md writes it: the canonical JSON, or sha256:<32 hex> of it past 96 characters", () => {
    // Hosts in other languages compute the same fingerprint to tell KEY_CONFLICT: it is part of the protocol.
    fc.assert(
      fc.property(fc.oneof(jsonArb, fc.string({ minLength: 90, maxLength: 200 })), (v) => {
        const text = sortedJson(v);
        expect(fingerprint(v)).toBe(text.length <= 96 ? text : `sha256:${createHash('sha256').update(text, 'utf8').digest('hex').slice(0, 32)}`);
      }),
      RUNS,
    );
  });

  test("a first step's input checked at start is what its input function returns", () => {
    const saga = defineSaga({ name: 'root', version: 1, steps: { a: { worker: 'w', input: (x: { payload: unknown }) => x.payload } } });
    const plan = saga.steps[0] as (typeof saga.steps)[number];
    fc.assert(
      fc.property(jsonArb, (v) => {
        expect(rootStepInput('root', plan, { payload: v })).toEqual(v);
      }),
      RUNS,
    );
    expect(() => rootStepInput('root', plan, { payload: { when: new Date(0) } })).toThrow(InputNotSerializableError);
    const throwing = defineSaga({ name: 'root', version: 1, steps: { a: { worker: 'w', input: () => { throw new Error('no payload'); } } } });
    expect(() => rootStepInput('root', throwing.steps[0] as (typeof saga.steps)[number], null)).toThrow(SagaDefinitionError);
  });

  test('a property holding undefined is left out, as JSON leaves it out', () => {
    fc.assert(
      fc.property(fc.dictionary(fc.string({ maxLength: 6 }).filter((k) => k !== '__proto__'), jsonArb, { maxKeys: 4 }), fc.string({ maxLength: 6 }), (obj, extra) => {
        fc.pre(extra !== '__proto__' && !(extra in obj));
        const withHole = { ...obj, [extra]: undefined };
        expect(findNotJson(withHole, 'input')).toBeUndefined();
        expect(stableStringify(withHole)).toBe(stableStringify(obj));
      }),
      RUNS,
    );
  });
});

class Order {
  readonly id = 1;
}

/** Values JSON would change or drop, each with what the refusal must call it and what it must tell the user to pass instead. */
const BAD: readonly { make: () => unknown; what: RegExp; fix: RegExp }[] = [
  { make: () => new Date(0), what: /a Date/, fix: /date\.toISOString\(\)/ },
  { make: () => new Map([[1, 2]]), what: /a Map/, fix: /Object\.fromEntries\(map\)/ },
  { make: () => new Set([1]), what: /a Set/, fix: /\[\.\.\.set\]/ },
  { make: () => Promise.resolve(1), what: /a Promise/, fix: /await it/ },
  { make: () => /x/, what: /a RegExp/, fix: /source as a string/ },
  { make: () => new URL('https://example.com/'), what: /a URL/, fix: /url\.href/ },
  { make: () => new Uint8Array(2), what: /a Uint8Array/, fix: /base64/ },
  { make: () => new ArrayBuffer(2), what: /an? ArrayBuffer/, fix: /base64/ },
  { make: () => new Error('x'), what: /an Error/, fix: /\{ code, message \}/ },
  { make: () => new Order(), what: /^an Order instance$/, fix: /plain object/ },
  { make: () => Object.create({ inherited: 1 }) as unknown, what: /^an object with a prototype$/, fix: /plain object/ },
  // A prototype whose constructor has no usable name (not a string, or empty): no class to name.
  { make: () => Object.create({ constructor: { name: 7 } }) as unknown, what: /^an object with a prototype$/, fix: /plain object/ },
  { make: () => Object.create({ constructor: { name: '' } }) as unknown, what: /^an object with a prototype$/, fix: /plain object/ },
  { make: () => 10n, what: /BigInt|bigint/i, fix: /string/ },
  { make: () => Number.NaN, what: /NaN/, fix: /null or a string/ },
  { make: () => Number.POSITIVE_INFINITY, what: /Infinity/, fix: /null or a string/ },
  { make: () => () => 1, what: /function/, fix: /data, not code/ },
  { make: () => Symbol('s'), what: /symbol/i, fix: /string/ },
];

type Segment = { key: string } | { index: number };
const segmentArb: fc.Arbitrary<Segment> = fc.oneof(
  fc.record({ key: fc.string({ minLength: 1, maxLength: 5 }).filter((k) => k !== '__proto__') }),
  fc.record({ index: fc.nat(3) }),
);

/** A value holding `leaf` at `path`, with plain JSON siblings around it. */
function build(path: readonly Segment[], leaf: unknown, noise: readonly unknown[]): unknown {
  let v = leaf;
  for (let i = path.length - 1; i >= 0; i--) {
    const seg = path[i] as Segment;
    const sibling = noise[i % Math.max(1, noise.length)] ?? null;
    if ('key' in seg) {
      const o: Record<string, unknown> = {};
      Object.defineProperty(o, `${seg.key}~`, { value: sibling, enumerable: true, writable: true, configurable: true });
      Object.defineProperty(o, seg.key, { value: v, enumerable: true, writable: true, configurable: true });
      v = o;
    } else {
      const arr: unknown[] = Array.from({ length: seg.index }, () => sibling);
      arr.push(v, sibling);
      v = arr;
    }
  }
  return v;
}

const render = (path: readonly Segment[]) => `input${path.map((s) => ('key' in s ? `.${s.key}` : `[${s.index}]`)).join('')}`;

describe('values that are not plain JSON', () => {
  test('are refused with a typed error naming the exact path of the part JSON would change or drop', () => {
    fc.assert(
      fc.property(fc.array(segmentArb, { maxLength: 4 }), fc.nat(BAD.length - 1), fc.array(jsonArb, { minLength: 1, maxLength: 3 }), (path, which, noise) => {
        const bad = BAD[which] as (typeof BAD)[number];
        const value = build(path, bad.make(), noise);
        const found = findNotJson(value, 'input');
        expect(found?.path).toBe(render(path));
        expect(found?.what).toMatch(bad.what);
        expect(found?.fix).toMatch(bad.fix);
        let thrown: unknown;
        try {
          assertSerializable(value, 'input', 'trip');
        } catch (e) {
          thrown = e;
        }
        expect(thrown).toBeInstanceOf(InputNotSerializableError);
        expect((thrown as InputNotSerializableError).path).toBe(render(path));
        expect((thrown as InputNotSerializableError).saga).toBe('trip');
      }),
      RUNS,
    );
  });

  test('undefined inside an array and a cycle are refused at their path', () => {
    fc.assert(
      fc.property(fc.array(segmentArb, { minLength: 1, maxLength: 4 }), fc.array(jsonArb, { minLength: 1, maxLength: 3 }), fc.boolean(), (path, noise, cycle) => {
        if (cycle) {
          const holder: Record<string, unknown> = { name: 'loop' };
          const value = build(path, holder, noise);
          holder.back = value;
          expect(findNotJson(value, 'input')).toMatchObject({ path: `${render(path)}.back`, what: expect.stringMatching(/cycle/) });
        } else {
          const value = build(path, [1, undefined], noise);
          expect(findNotJson(value, 'input')).toMatchObject({ path: `${render(path)}[1]`, what: 'undefined inside an array' });
        }
      }),
      RUNS,
    );
  });
});
