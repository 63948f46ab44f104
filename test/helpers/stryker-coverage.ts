/**
 * StrykerJS's per-test coverage under vitest 4 (a setup file of vitest.mutate.config.ts).
 *
 * The vitest runner of StrykerJS 9.6 hands its results back from an `afterAll(({ meta }) => …)`
 * hook, the vitest 3 signature. Vitest 4 passes a fixture context first and the suite
 * second, so that hook fails and every file reaches StrykerJS without coverage: each
 * mutant would then run all 60 tests of the two suites, minutes a mutant. This hook stores
 * the same values on the file's `meta`, where the runner reads them. Outside StrykerJS
 * (nothing provided under `globalNamespace`) it does nothing.
 */
import { afterAll, inject } from 'vitest';

const read = inject as unknown as (key: string) => unknown;
const namespace = read('globalNamespace');

if (typeof namespace === 'string') {
  const ns = ((globalThis as Record<string, unknown>)[namespace] ??= {}) as { mutantCoverage?: unknown; hitCount?: number };
  const mode = read('mode');
  // eslint-disable-next-line no-empty-pattern -- vitest 4 requires the fixture context to be destructured
  afterAll(({}, suite) => {
    const meta = (suite as unknown as { meta: Record<string, unknown> }).meta;
    if (mode === 'mutant') meta.hitCount = ns.hitCount;
    else meta.mutantCoverage = ns.mutantCoverage;
  });
}
