/** What values can cross a step, on the in-memory transport (the same scenarios run over NATS in test/nats/values.test.ts). */
import { describe } from 'vitest';
import { createRuntime } from '../../src/index.ts';
import { valueScenarios } from '../helpers/value-scenarios.ts';

describe('values that cross a step, in memory', () => {
  valueScenarios(async (workers) => {
    const runtime = createRuntime().host(...workers);
    return { runtime, close: () => runtime.close() };
  });
});
