/**
 * Counters the benchmark suite wraps around what it measures, without touching src/:
 * a proxy that counts the calls of a SagaStore or DedupStore by method, and a wrapper of
 * a NATS connection's `request` that counts the JetStream operations by kind (KV and
 * stream writes, message reads, other JetStream API calls).
 */
import type { NatsConnection } from '@nats-io/transport-node';

export type Counts = Record<string, number>;

export function add(counts: Counts, key: string, n = 1): void {
  counts[key] = (counts[key] ?? 0) + n;
}

/** `after - before`, key by key. */
export function delta(after: Counts, before: Counts): Counts {
  const out: Counts = {};
  for (const [k, v] of Object.entries(after)) {
    const d = v - (before[k] ?? 0);
    if (d !== 0) out[k] = d;
  }
  return out;
}

/** The same object, whose method calls are counted in `counts` by method name. */
export function countCalls<T extends object>(target: T, counts: Counts): T {
  return new Proxy(target, {
    get(t, p) {
      const v: unknown = Reflect.get(t, p, t);
      if (typeof v !== 'function' || typeof p !== 'string') return v;
      return (...args: unknown[]) => {
        add(counts, p);
        return (v as (...a: unknown[]) => unknown).apply(t, args);
      };
    },
  });
}

/** What a request subject is, for JetStream: every KV put, create, update and delete is a publish to `$KV.<bucket>.<key>`. */
function kindOf(subject: string): string {
  if (subject.startsWith('$KV.')) return 'kvWrite';
  if (subject.startsWith('$JS.API.STREAM.MSG.GET.') || subject.startsWith('$JS.API.DIRECT.GET.')) return 'read';
  if (subject.startsWith('$JS.API.')) return 'jsApi';
  return 'other';
}

/**
 * Counts the connection's JetStream requests (the JetStream and KV clients send every
 * publish and API call through `nc.request`). Requests to worker subjects go another way
 * (the transport publishes on its own inbox) and are not counted here.
 */
export function countJetStream(nc: NatsConnection, counts: Counts): void {
  const request = nc.request.bind(nc);
  nc.request = (subject, ...rest) => {
    if (subject.startsWith('$')) add(counts, kindOf(subject));
    return request(subject, ...rest);
  };
}

/** Messages in and out of the connection so far. */
export function messages(nc: NatsConnection): number {
  const s = nc.stats();
  return s.inMsgs + s.outMsgs;
}
