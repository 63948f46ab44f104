/**
 * scatter-saga/testing: prove your own sagas. `verifySaga` model-checks a definition's
 * machine and runs it many times on a simulated faulty network with simulated
 * workers; the manual clock and the simulated transport are here for your own tests.
 */
export { createManualClock } from './clock.ts';
export { verifySaga, assertSagaVerified, formatViolations, faultProfileArbitrary, tapeArbitrary } from './verify.ts';
export { simulatedTransport, simulate, createLedger, Chooser, NO_FAULTS } from './simulation.ts';
export { exploreSaga, explainModelViolation } from './model.ts';
export { exploreKeyMachine, exploreProduct } from './key-model.ts';

export type { ManualClock } from './clock.ts';
export type { VerifyOptions, VerifyReport, VerifyViolation } from './verify.ts';
export type {
  FaultProfile,
  Ledger,
  LedgerEvent,
  SimulatedTransport,
  SimulatedTransportOptions,
  SimulationResult,
  SimulationScenario,
  SimulationViolation,
} from './simulation.ts';
export type { ModelOptions, ModelReport, ModelViolation } from './model.ts';
export type { KeyModelReport, ProductCoverage, ProductOptions, ProductReport } from './key-model.ts';
