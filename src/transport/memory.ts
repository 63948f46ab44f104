/**
 * The in-memory transport: the embedded default. Requests go straight to the
 * handler a worker host registered in this process; timeouts are left to the
 * runtime's timer actor.
 */
import { SagaError, TransportError } from '../errors.ts';
import type { Served, Transport, WorkerHandler, WorkerReply, WorkerRequest } from '../types.ts';

const copy = (v: unknown): unknown => (v === null || typeof v !== 'object' ? v : structuredClone(v));

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
      const sent: WorkerRequest = { ...request, input: copy(request.input), ...('result' in request ? { result: copy(request.result) } : {}) };
      const reply = handler(sent).then((r) => (r.ok && r.result !== undefined ? { ok: true as const, result: copy(r.result) } : r));
      const mine = inflight.get(request.worker);
      if (mine !== undefined) {
        mine.add(reply);
        const forget = () => mine.delete(reply);
        reply.then(forget, forget);
      }
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
