/**
 * Group sending: what is handed over during one turn of the event loop is sent together
 * at its end (`setImmediate`). A NATS connection writes what was queued synchronously in
 * one socket write, so the messages of many sagas (requests, replies, journal and dedup
 * writes) share one write instead of paying one each; each still waits for its own answer.
 */
export function perTurn<T>(send: (item: T) => void): (item: T) => void {
  let queue: T[] = [];
  const flush = (): void => {
    const batch = queue;
    queue = [];
    for (const item of batch) send(item);
  };
  return (item) => {
    if (queue.push(item) === 1) setImmediate(flush);
  };
}
