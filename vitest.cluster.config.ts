import { defineConfig } from 'vitest/config';

/** `npm run test:cluster`: sagas on a 3-node nats-server cluster with replicated JetStream. */
export default defineConfig({
  test: {
    include: ['test/cluster/**/*.test.ts'],
    testTimeout: 400_000,
    hookTimeout: 60_000,
  },
});
