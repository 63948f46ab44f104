/**
 * Admission under `maxInFlight`: a counting semaphore of the sagas a runtime runs at
 * once. A run() call takes a slot (or waits for one, first come, first served) before it
 * writes or sends anything; the slot passes to the saga it starts, and frees when that
 * saga parks, ends or is stopped. Sagas restored by recovery or resumed by an operator
 * count as running without waiting for a slot.
 */
export class Admission {
  /** Sagas running (not parked, ended or stopped). */
  private running = 0;
  /** Slots taken by run() calls that have not started their saga yet. */
  private reserved = 0;
  /** run() calls waiting for a slot. */
  private readonly admissions: { resolve: () => void; reject: (e: unknown) => void }[] = [];
  private readonly maxInFlight: number;

  constructor(maxInFlight: number) {
    this.maxInFlight = maxInFlight;
  }

  /** Sagas running (not parked) right now. */
  get inFlight(): number {
    return this.running;
  }

  /** run() calls waiting for a slot. */
  get queued(): number {
    return this.admissions.length;
  }

  /** Waits for a slot under `maxInFlight`; the caller must call `release` unless its saga started. */
  admit(): Promise<void> | undefined {
    if (this.admissions.length === 0 && this.running + this.reserved < this.maxInFlight) {
      this.reserved++;
      return undefined;
    }
    return new Promise<void>((resolve, reject) => this.admissions.push({ resolve, reject }));
  }

  /** Gives back a slot taken by `admit` whose run() call started no saga. */
  release(): void {
    this.reserved--;
    this.admitNext();
  }

  /** A saga starts running (or runs again): counted in `inFlight`. */
  enter(): void {
    this.running++;
  }

  /** The slot passes from the run() call that took it to the saga it started (counted by `enter`). */
  handOver(): void {
    this.reserved--;
  }

  /** A saga no longer runs (parked, ended or stopped): its slot goes to the next waiting run() call. */
  leave(): void {
    this.running--;
    this.admitNext();
  }

  /** Rejects every waiting run() call, each with its own `error()` (the runtime closed). */
  rejectAll(error: () => unknown): void {
    for (const waiting of this.admissions.splice(0)) waiting.reject(error());
  }

  private admitNext(): void {
    while (this.admissions.length > 0 && this.running + this.reserved < this.maxInFlight) {
      this.reserved++;
      (this.admissions.shift() as (typeof this.admissions)[number]).resolve();
    }
  }
}
