/**
 * The rule for values that cross a step (saga input, step inputs, results): plain JSON
 * values only, checked the same way whatever the transport; and stable hashes of such
 * values for idempotency keys. Pure.
 */
import * as crypto from 'node:crypto';
import { InputNotSerializableError, SagaDefinitionError, threwText } from '../errors.ts';
import type { StepPlan } from '../types.ts';

/**
 * What is wrong with a value that is not plain JSON: where (`path`), what it is, and
 * what to pass instead.
 */
export interface NotJson {
  /** Where in the value, e.g. `input.items[2].when`. */
  readonly path: string;
  /** What it is, e.g. `a Date`. */
  readonly what: string;
  /** What to pass instead, e.g. `pass date.toISOString()`. */
  readonly fix: string;
}

/** `is a Date, not a plain JSON value; pass date.toISOString()`. */
function problemOf(n: NotJson): string {
  return `is ${n.what}, not a plain JSON value; ${n.fix}`;
}

/** `input.when is a Date, not a plain JSON value; pass date.toISOString()`. */
export function describeNotJson(n: NotJson): string {
  return `${n.path} ${problemOf(n)}`;
}

/**
 * The first part of a value that is not a plain JSON value, or undefined when there is
 * none. Plain JSON values are what every step input and result must be, on every
 * transport alike: null, booleans, strings, finite numbers, arrays of them and plain
 * objects of them (`{}` or `Object.create(null)`). Anything JSON would change or drop
 * is refused: Date, Map, Set, class instances, typed arrays, BigInt, functions, symbols,
 * NaN and Infinity, `undefined` inside an array, cycles. A property whose value is
 * `undefined` is left out, as JSON leaves it out; a value that is `undefined` as a whole
 * stands for no value.
 */
export function findNotJson(value: unknown, path: string): NotJson | undefined {
  if (value === null || typeof value !== 'object') return primitive(value, path);
  return walk(value, path, new Set());
}

/**
 * Throws {@link InputNotSerializableError} naming the exact path of the first part of
 * `value` that is not a plain JSON value (see {@link findNotJson}), and `saga` when given.
 */
export function assertSerializable(value: unknown, path = 'input', saga?: string): void {
  const bad = findNotJson(value, path);
  if (bad !== undefined) throw new InputNotSerializableError(bad.path, problemOf(bad), saga !== undefined ? { saga } : {});
}

function primitive(value: unknown, path: string): NotJson | undefined {
  switch (typeof value) {
    case 'number':
      return Number.isFinite(value) ? undefined : { path, what: String(value), fix: `JSON has no ${Number.isNaN(value) ? 'NaN' : 'Infinity'}: pass null or a string` };
    case 'bigint':
      return { path, what: 'a BigInt', fix: 'pass it as a string (n.toString())' };
    case 'function':
      return { path, what: 'a function', fix: 'pass data, not code' };
    case 'symbol':
      return { path, what: 'a symbol', fix: 'pass a string' };
    default:
      return undefined;
  }
}

/** What to pass instead of an instance of a well-known class. */
const INSTEAD: Readonly<Record<string, string>> = {
  Date: 'pass date.toISOString()',
  Map: 'pass Object.fromEntries(map), or [...map] for keys that are not strings',
  Set: 'pass [...set]',
  Promise: 'await it first',
  RegExp: 'pass its source as a string',
  URL: 'pass url.href',
};

/** `a Uint8Array`, `an ArrayBuffer`: the article a class name is spoken with (a leading U mostly sounds like "you"). */
function withArticle(name: string): string {
  return `${/^[AEIO]/.test(name) ? 'an' : 'a'} ${name}`;
}

function instanceOf(obj: object, path: string): NotJson {
  const name = (obj as { constructor?: { name?: unknown } }).constructor?.name;
  // An object made with another prototype still inherits Object's constructor: no class to name.
  const kind = typeof name === 'string' && name !== '' && name !== 'Object' ? name : undefined;
  if (kind !== undefined && Object.prototype.hasOwnProperty.call(INSTEAD, kind)) return { path, what: `a ${kind}`, fix: INSTEAD[kind] as string };
  if (ArrayBuffer.isView(obj) || obj instanceof ArrayBuffer) {
    const buffer = kind ?? 'binary buffer';
    return { path, what: withArticle(buffer), fix: 'pass its bytes as a base64 string' };
  }
  if (obj instanceof Error) return { path, what: `an ${kind ?? 'Error'}`, fix: 'pass { code, message } as a plain object' };
  return { path, what: kind !== undefined ? `${withArticle(kind)} instance` : 'an object with a prototype', fix: 'pass a plain object (JSON would drop its class and methods)' };
}

function walk(obj: object, path: string, seen: Set<object>): NotJson | undefined {
  if (seen.has(obj)) return { path, what: 'a reference back to an enclosing value (a cycle)', fix: 'JSON cannot hold cycles: pass a tree' };
  const isArray = Array.isArray(obj);
  if (!isArray) {
    const proto = Object.getPrototypeOf(obj);
    if (proto !== Object.prototype && proto !== null) return instanceOf(obj, path);
  }
  seen.add(obj);
  let bad: NotJson | undefined;
  if (isArray) {
    const arr = obj as unknown[];
    for (let i = 0; i < arr.length && bad === undefined; i++) {
      const v = arr[i];
      if (v === undefined) bad = { path: `${path}[${i}]`, what: 'undefined inside an array', fix: 'JSON would turn it into null: pass null' };
      else bad = v === null || typeof v !== 'object' ? primitive(v, `${path}[${i}]`) : walk(v, `${path}[${i}]`, seen);
    }
  } else {
    const rec = obj as Record<string, unknown>;
    for (const key of Object.keys(rec)) {
      const v = rec[key];
      if (v === undefined) continue;
      bad = v === null || typeof v !== 'object' ? primitive(v, `${path}.${key}`) : walk(v, `${path}.${key}`, seen);
      if (bad !== undefined) break;
    }
  }
  seen.delete(obj);
  return bad;
}

/**
 * JSON with object keys sorted, so equal values always give equal text. One string built
 * in one walk: no arrays of parts per level (it runs for every step input, on both sides).
 */
export function stableStringify(value: unknown): string {
  if (value === undefined) return 'null';
  if (value === null || typeof value !== 'object') return JSON.stringify(value);
  if (Array.isArray(value)) {
    let out = '[';
    for (let i = 0; i < value.length; i++) {
      if (i > 0) out += ',';
      // A hole is left empty, as Array.prototype.map leaves it.
      if (i in value) out += stableStringify(value[i]);
    }
    return `${out}]`;
  }
  const obj = value as Record<string, unknown>;
  const keys = Object.keys(obj);
  // Most objects come with their keys in order already: sort only those that do not.
  for (let i = 1; i < keys.length; i++) {
    if ((keys[i - 1] as string) > (keys[i] as string)) {
      keys.sort();
      break;
    }
  }
  let out = '{';
  for (const k of keys) {
    const v = obj[k];
    if (v === undefined) continue;
    if (out.length > 1) out += ',';
    out += `${JSON.stringify(k)}:${stableStringify(v)}`;
  }
  return `${out}}`;
}

/** sha256 as hex: one-shot `crypto.hash` where Node has it (20.12+), else a Hash object. */
const oneShot = (crypto as { hash?: (algorithm: string, data: string, encoding: 'hex') => string }).hash;
const sha256Hex: (text: string) => string =
  typeof oneShot === 'function' ? (text) => oneShot('sha256', text, 'hex') : (text) => crypto.createHash('sha256').update(text).digest('hex');

/** A stable fingerprint of a value: its canonical JSON when short, else a hash of it. */
export function fingerprint(value: unknown): string {
  const text = stableStringify(value);
  return text.length <= 96 ? text : `sha256:${sha256Hex(text).slice(0, 32)}`;
}

/**
 * The idempotency key of one step of one saga: a hash of saga id, step id and the
 * step's input. Attempt-independent, and shared by `do` and `compensate`.
 */
export function idempotencyKey(sagaId: string, stepId: string, input: unknown): string {
  return sha256Hex(`${sagaId}\u0000${stepId}\u0000${stableStringify(input)}`).slice(0, 40);
}

/**
 * The input of a first step (one with no `after`), from the saga input: its `input`
 * function's value, checked to be plain JSON. A function that throws is a
 * SagaDefinitionError naming the saga and step. `where` adds what the saga input was: to
 * the message of a function that threw, and to the path of a value that is not JSON.
 */
export function rootStepInput(saga: string, p: StepPlan, input: unknown, where: { threw: string; value: string } = { threw: '', value: '' }): unknown {
  let stepInput: unknown;
  try {
    stepInput = p.input(input, {});
  } catch (error) {
    throw new SagaDefinitionError(`${threwText(error, 'the input function')}${where.threw}`, { saga, step: p.id, field: 'input' });
  }
  assertSerializable(stepInput, `step '${p.id}' input${where.value}`, saga);
  return stepInput;
}
