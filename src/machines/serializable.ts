/**
 * Checks that a value survives JSON unchanged (what crosses the wire to a worker),
 * and hashes values for idempotency keys. Pure.
 */
import { createHash } from 'node:crypto';
import { InputNotSerializableError } from '../errors.ts';

/**
 * Throws {@link InputNotSerializableError} naming the exact path of the first value
 * that JSON cannot carry faithfully: functions, symbols, BigInt, cycles, non-finite
 * numbers, `undefined` in arrays, and class instances other than Date.
 */
export function assertSerializable(value: unknown, path = 'input'): void {
  if (value === null || typeof value !== 'object') walk(value, path, EMPTY);
  else walk(value, path, new Set());
}

/** Never written to: primitives need no cycle bookkeeping. */
const EMPTY: Set<object> = new Set();

function walk(value: unknown, path: string, seen: Set<object>): void {
  switch (typeof value) {
    case 'string':
    case 'boolean':
      return;
    case 'number':
      if (!Number.isFinite(value)) throw new InputNotSerializableError(path, `${value} is not a finite number`);
      return;
    case 'undefined':
      return;
    case 'bigint':
      throw new InputNotSerializableError(path, 'BigInt values have no JSON form (send them as strings)');
    case 'function':
      throw new InputNotSerializableError(path, 'functions cannot be serialized');
    case 'symbol':
      throw new InputNotSerializableError(path, 'symbols cannot be serialized');
  }
  if (value === null) return;
  const obj = value as object;
  if (seen.has(obj)) throw new InputNotSerializableError(path, 'the value contains a cycle');
  if (obj instanceof Date) return;
  seen.add(obj);
  if (Array.isArray(obj)) {
    for (let i = 0; i < obj.length; i++) {
      if (obj[i] === undefined) throw new InputNotSerializableError(`${path}[${i}]`, 'undefined inside an array becomes null in JSON');
      walk(obj[i], `${path}[${i}]`, seen);
    }
  } else {
    const proto = Object.getPrototypeOf(obj);
    if (proto !== Object.prototype && proto !== null) {
      const kind = (obj as { constructor?: { name?: string } }).constructor?.name ?? 'object';
      throw new InputNotSerializableError(path, `a ${kind} instance would lose its type in JSON (send plain objects)`);
    }
    for (const key of Object.keys(obj)) walk((obj as Record<string, unknown>)[key], `${path}.${key}`, seen);
  }
  seen.delete(obj);
}

/** JSON with object keys sorted, so equal values always give equal text. */
export function stableStringify(value: unknown): string {
  if (value === undefined) return 'null';
  if (value === null || typeof value !== 'object') return JSON.stringify(value);
  if (value instanceof Date) return JSON.stringify(value);
  if (Array.isArray(value)) return `[${value.map(stableStringify).join(',')}]`;
  const obj = value as Record<string, unknown>;
  const keys = Object.keys(obj).filter((k) => obj[k] !== undefined).sort();
  return `{${keys.map((k) => `${JSON.stringify(k)}:${stableStringify(obj[k])}`).join(',')}}`;
}

/** A stable fingerprint of a value: its canonical JSON when short, else a hash of it. */
export function fingerprint(value: unknown): string {
  const text = stableStringify(value);
  return text.length <= 96 ? text : `sha256:${createHash('sha256').update(text).digest('hex').slice(0, 32)}`;
}

/**
 * The idempotency key of one step of one saga: a hash of saga id, step id and the
 * step's input. Attempt-independent, and shared by `do` and `compensate`.
 */
export function idempotencyKey(sagaId: string, stepId: string, input: unknown): string {
  return createHash('sha256').update(`${sagaId}\u0000${stepId}\u0000${stableStringify(input)}`).digest('hex').slice(0, 40);
}
