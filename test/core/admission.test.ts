/**
 * Admission under maxInFlight: the counting semaphore a runtime takes a slot of before
 * run() writes or sends anything.
 */
import { describe, expect, it } from 'vitest';
import { Admission } from '../../src/runtime/admission.ts';

/** Whether a promise has settled, after pending microtasks ran. */
async function settled(p: Promise<unknown>): Promise<boolean> {
  let done = false;
  void p.then(
    () => (done = true),
    () => (done = true),
  );
  await new Promise<void>((r) => setImmediate(r));
  return done;
}

describe('admission', () => {
  it('admits at once while under the bound, then queues', () => {
    const a = new Admission(2);
    expect(a.admit()).toBeUndefined();
    expect(a.admit()).toBeUndefined();
    const third = a.admit();
    expect(third).toBeInstanceOf(Promise);
    expect(a.queued).toBe(1);
    expect(a.inFlight).toBe(0);
  });

  it('a slot handed over to a saga counts as running until the saga leaves; then the next waiting call is admitted', async () => {
    const a = new Admission(1);
    expect(a.admit()).toBeUndefined();
    a.enter();
    a.handOver();
    expect(a.inFlight).toBe(1);
    const waiting = a.admit() as Promise<void>;
    expect(await settled(waiting)).toBe(false);
    a.leave();
    expect(await settled(waiting)).toBe(true);
    expect(a.inFlight).toBe(0);
    expect(a.queued).toBe(0);
    // The admitted call holds the slot: a further call waits.
    expect(a.admit()).toBeInstanceOf(Promise);
  });

  it('a released slot goes to the next waiting call, first come first served', async () => {
    const a = new Admission(1);
    expect(a.admit()).toBeUndefined();
    const order: number[] = [];
    const waits = [1, 2, 3].map((n) => (a.admit() as Promise<void>).then(() => order.push(n)));
    expect(a.queued).toBe(3);
    a.release();
    await settled(waits[0] as Promise<unknown>);
    expect(order).toEqual([1]);
    a.release();
    a.release();
    await Promise.all(waits);
    expect(order).toEqual([1, 2, 3]);
    expect(a.queued).toBe(0);
  });

  it('a waiting call is not overtaken by a new one while it waits', () => {
    const a = new Admission(1);
    expect(a.admit()).toBeUndefined();
    void a.admit();
    a.release();
    // The slot went to the waiting call: a new call queues behind it.
    expect(a.admit()).toBeInstanceOf(Promise);
  });

  it('sagas resumed outside admission count as running and hold back waiting calls', async () => {
    const a = new Admission(1);
    a.enter();
    const waiting = a.admit() as Promise<void>;
    expect(waiting).toBeInstanceOf(Promise);
    a.enter();
    a.leave();
    expect(await settled(waiting)).toBe(false);
    a.leave();
    expect(await settled(waiting)).toBe(true);
  });

  it('rejects every waiting call, each with its own error, and forgets them', async () => {
    const a = new Admission(1);
    expect(a.admit()).toBeUndefined();
    const waits = [a.admit(), a.admit()] as Promise<void>[];
    let n = 0;
    a.rejectAll(() => new Error(`closed ${++n}`));
    expect(a.queued).toBe(0);
    await expect(waits[0]).rejects.toThrow('closed 1');
    await expect(waits[1]).rejects.toThrow('closed 2');
  });

  it('has no bound with Infinity', () => {
    const a = new Admission(Infinity);
    for (let i = 0; i < 10_000; i++) expect(a.admit()).toBeUndefined();
    expect(a.queued).toBe(0);
  });
});
