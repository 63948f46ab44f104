/**
 * Bounded concurrency with backpressure for a worker host: at most `concurrency`
 * requests run at once, at most `maxPending` wait in arrival order, and anything
 * beyond that is refused at once (the caller replies "at capacity"), so a flood
 * costs memory in proportion to the limits and never to the flood.
 */
export class Limiter {
  private active = 0;
  private readonly waiting: (() => void)[] = [];
  private head = 0;

  constructor(
    readonly concurrency: number,
    readonly maxPending: number,
  ) {}

  get running(): number {
    return this.active;
  }

  get pending(): number {
    return this.waiting.length - this.head;
  }

  /** Runs `task` now or later; returns false (and never runs it) when the queue is full. */
  submit(task: () => Promise<unknown>): boolean {
    const run = () => {
      this.active++;
      let p: Promise<unknown>;
      try {
        p = task();
      } catch (error) {
        p = Promise.reject(error);
      }
      p.then(this.done, this.done);
    };
    if (this.active < this.concurrency) {
      run();
      return true;
    }
    if (this.pending >= this.maxPending) return false;
    this.waiting.push(run);
    return true;
  }

  private readonly done = () => {
    this.active--;
    if (this.head < this.waiting.length) {
      const next = this.waiting[this.head] as () => void;
      this.waiting[this.head++] = undefined as never;
      if (this.head > 1024 && this.head * 2 > this.waiting.length) {
        this.waiting.splice(0, this.head);
        this.head = 0;
      }
      next();
    } else {
      this.waiting.length = 0;
      this.head = 0;
    }
  };
}
