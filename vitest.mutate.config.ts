/**
 * The test command of mutation testing (`npm run mutate`): the model check and the
 * property suite only, so a mutant counts as killed only when the proofs catch it.
 */
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/model/**/*.test.ts', 'test/property/**/*.test.ts'],
    // The planted-bug rows check the suite itself, not the code under mutation.
    exclude: ['node_modules/**', 'test/property/mutants.test.ts'],
    // The property files run the first runs of their seeded sequences only (see docs/testing.md).
    env: { SCATTER_SAGA_MUTATE: '1' },
    // Hands StrykerJS its per-test coverage under vitest 4 (see the file).
    setupFiles: ['test/helpers/stryker-coverage.ts'],
    testTimeout: 300_000,
    hookTimeout: 60_000,
    typecheck: { enabled: false },
  },
});
