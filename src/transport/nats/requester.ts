/**
 * Request/reply over one wildcard inbox subscription (`<inbox>.*`), as nats.js's own
 * muxed requests do, but without building an Error (and its stack trace) for every
 * request: at thousands of requests per second that was the single largest cost of
 * `nc.request` measured on the coordinator. No-responders is the server's 503 status
 * message on the reply subject.
 */
import { createInbox } from '@nats-io/transport-node';
import type { Msg, MsgHdrs, NatsConnection, Subscription } from '@nats-io/transport-node';
import { perTurn } from './turn.ts';

export type RequestFailure = 'timeout' | 'no-responders' | 'closed';

export class RequestFailed extends Error {
  constructor(
    readonly reason: RequestFailure,
    message: string,
    /** Whether the request left this process before it failed. */
    readonly sent = true,
  ) {
    super(message);
    this.name = 'RequestFailed';
  }
}

interface Pending {
  resolve(msg: Msg): void;
  reject(error: RequestFailed): void;
  timer: ReturnType<typeof setTimeout>;
}

export class Requester {
  private readonly pending = new Map<string, Pending>();
  private sub: Subscription | undefined;
  private inbox = '';
  private next = 0;

  constructor(private readonly nc: NatsConnection) {}

  private start(): void {
    const prefix = (this.nc as { options?: { inboxPrefix?: string } }).options?.inboxPrefix;
    this.inbox = `${createInbox(prefix)}.`;
    this.sub = this.nc.subscribe(`${this.inbox}*`, {
      callback: (err, msg) => {
        if (err !== null) return;
        const token = msg.subject.slice(this.inbox.length);
        const p = this.pending.get(token);
        if (p === undefined) return; // late reply after a timeout
        this.pending.delete(token);
        clearTimeout(p.timer);
        if (msg.data.length === 0 && msg.headers?.code === 503) p.reject(new RequestFailed('no-responders', 'no responders'));
        else p.resolve(msg);
      },
    });
    void this.sub.closed.then(() => this.failAll('the reply subscription closed'));
    void this.nc.closed().then(() => this.failAll('the NATS connection closed'));
  }

  private failAll(why: string): void {
    this.sub = undefined;
    for (const [token, p] of this.pending) {
      this.pending.delete(token);
      clearTimeout(p.timer);
      p.reject(new RequestFailed('closed', why));
    }
  }

  request(subject: string, body: string | Uint8Array, headers: MsgHdrs | undefined, timeoutMs: number): Promise<Msg> {
    if (this.nc.isClosed() || this.nc.isDraining()) return Promise.reject(new RequestFailed('closed', 'the NATS connection is closed or draining', false));
    if (this.sub === undefined) this.start();
    const token = (this.next++).toString(36);
    return new Promise<Msg>((resolve, reject) => {
      const timer = setTimeout(() => {
        if (this.pending.delete(token)) reject(new RequestFailed('timeout', `no reply within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(token, { resolve, reject, timer });
      this.send({ subject, body, headers, token });
    });
  }

  /** Requests go out together at the end of the turn of the event loop (see perTurn). */
  private readonly send = perTurn<{ subject: string; body: string | Uint8Array; headers: MsgHdrs | undefined; token: string }>(({ subject, body, headers, token }) => {
    const p = this.pending.get(token);
    if (p === undefined) return; // timed out or failed before it was sent
    try {
      this.nc.publish(subject, body, headers === undefined ? { reply: this.inbox + token } : { reply: this.inbox + token, headers });
    } catch (error) {
      this.pending.delete(token);
      clearTimeout(p.timer);
      p.reject(new RequestFailed('closed', `the request could not be published: ${(error as Error)?.message ?? String(error)}`, false));
    }
  });

  /** Requests waiting for a reply. */
  get size(): number {
    return this.pending.size;
  }
}
