/**
 * The test command of mutation testing (`npm run mutate`): the model check and the
 * property suite only, so a mutant counts as killed only when the proofs catch it.
 */
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/model/**/*.test.ts', 'test/property/**/*.test.ts'],
    exclude: ['node_modules/**'],
    testTimeout: 300_000,
    hookTimeout: 60_000,
    typecheck: { enabled: false },
  },
});
