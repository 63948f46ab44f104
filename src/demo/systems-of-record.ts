/**
 * Three small fake systems of record for the demo and the examples: each keeps reservations by
 * idempotency key, so a repeated request is applied once, and a cancel removes it.
 */
export class SystemOfRecord {
  readonly held = new Map<string, { ref: string; what: string }>();
  private seq = 0;

  constructor(readonly name: string) {}

  reserve(key: string, what: string): { ref: string } {
    const existing = this.held.get(key);
    if (existing) return { ref: existing.ref };
    const ref = `${this.name.slice(0, 2).toUpperCase()}-${++this.seq}`;
    this.held.set(key, { ref, what });
    return { ref };
  }

  cancel(key: string): void {
    this.held.delete(key);
  }

  /** What a person would see: the live reservations. */
  describe(): string {
    return this.held.size === 0 ? 'nothing held' : [...this.held.values()].map((r) => `${r.ref} (${r.what})`).join(', ');
  }
}
