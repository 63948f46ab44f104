/**
 * The in-memory transport: the embedded default. Requests go straight to the
 * handler a worker host registered in this process; timeouts are left to the
 * runtime's timer actor.
 */
import { SagaError, TransportError } from '../errors.ts';
import type { Served, Transport, WorkerHandler, WorkerReply, WorkerRequest } from '../types.ts';

/** Thrown inside {@link plainCopy} when a value is not a plain JSON tree: the copy falls back to structuredClone. */
const NOT_PLAIN: unique symbol = Symbol('not plain');
/** Deeper than any step value is expected to be: a cycle, most likely. */
const MAX_DEPTH = 64;

function plainCopy(v: unknown, depth: number): unknown {
  if (v === null || typeof v !== 'object') return v;
  if (depth > MAX_DEPTH) throw NOT_PLAIN;
  if (Array.isArray(v)) {
    const out = new Array<unknown>(v.length);
    for (let i = 0; i < v.length; i++) {
      const x: unknown = v[i];
      if (x !== undefined || i in v) out[i] = plainCopy(x, depth + 1); // a hole stays a hole
    }
    return out;
  }
  const proto = Object.getPrototypeOf(v);
  if (proto !== Object.prototype && proto !== null) throw NOT_PLAIN;
  const out: Record<string, unknown> = {};
  for (const k of Object.keys(v)) {
    const x = plainCopy((v as Record<string, unknown>)[k], depth + 1);
    // An own "__proto__" key is data: assigning it would set the copy's prototype.
    if (k === '__proto__') Object.defineProperty(out, k, { value: x, enumerable: true, writable: true, configurable: true });
    else out[k] = x;
  }
  return out;
}

/**
 * A copy that shares no object with `v`. Step inputs and results are checked plain JSON
 * (arrays and plain objects of primitives), which a walk copies far cheaper than
 * structuredClone; anything else (a handler's own reply, say) is left to structuredClone.
 */
const copy = (v: unknown): unknown => {
  if (v === null || typeof v !== 'object') return v;
  try {
    return plainCopy(v, 0);
  } catch (error) {
    if (error !== NOT_PLAIN) throw error;
    return structuredClone(v);
  }
};

/** The in-memory transport, the embedded default: requests go straight to workers hosted in this process. */
export function memoryTransport(): Transport {
  const handlers = new Map<string, WorkerHandler>();
  const inflight = new Map<string, Set<Promise<unknown>>>();
  let closed = false;

  return {
    request(request: WorkerRequest): Promise<WorkerReply> {
      if (closed) return Promise.reject(new TransportError('TRANSPORT_ERROR', `the ${request.op} of step '${request.stepId}' was not sent to worker '${request.worker}': the in-memory transport is closed`, { retryable: false, notSent: true }));
      const handler = handlers.get(request.worker);
      if (handler === undefined) {
        return Promise.reject(new TransportError('NO_RESPONDERS', `no host serves worker '${request.worker}'`));
      }
      // Workers get copies and give copies back, as over the wire: a worker that mutates its
      // input, or a result it returned, changes nothing the saga holds. Values are plain JSON.
      const sent: WorkerRequest = { ...request, input: copy(request.input) };
      if ('result' in request) (sent as { result: unknown }).result = copy(request.result);
      const mine = inflight.get(request.worker);
      // One promise per request: it copies the reply and takes itself off the in-flight set.
      const reply: Promise<WorkerReply> = handler(sent).then(
        (r) => {
          mine?.delete(reply);
          return r.ok && r.result !== undefined ? { ok: true as const, result: copy(r.result) } : r;
        },
        (error: unknown) => {
          mine?.delete(reply);
          throw error;
        },
      );
      mine?.add(reply);
      return reply;
    },
    serve(worker: string, handler: WorkerHandler): Served {
      if (handlers.has(worker)) throw new SagaError('WORKER_ALREADY_HOSTED', `worker '${worker}' is already served on this transport`);
      handlers.set(worker, handler);
      const mine = new Set<Promise<unknown>>();
      inflight.set(worker, mine);
      return {
        async stop() {
          if (handlers.get(worker) === handler) handlers.delete(worker);
          await Promise.allSettled([...mine]);
          if (inflight.get(worker) === mine) inflight.delete(worker);
        },
      };
    },
    isServed: (worker: string) => handlers.has(worker),
    async close() {
      closed = true;
      handlers.clear();
    },
  };
}
