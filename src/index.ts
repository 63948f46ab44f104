/**
 * scatter-saga: scatter-gather sagas that never end half-committed.
 *
 * The embedded default needs nothing else: `createRuntime()` runs sagas in this
 * process with an in-memory transport and store. NATS lives in `scatter-saga/nats`;
 * test helpers (verifySaga, simulated clock and transport) in `scatter-saga/testing`.
 */
export { defineSaga, defineWorker, noCompensation } from './define.ts';
export {
  DEFAULT_BACKOFF,
  DEFAULT_COMPENSATION_RETRIES,
  DEFAULT_COMPENSATION_TIMEOUT_MS,
  DEFAULT_STEP_RETRIES,
  DEFAULT_STEP_TIMEOUT_MS,
} from './define.ts';
export { createRuntime, DEFAULT_JOURNAL_RETRY_MS } from './runtime.ts';
export { toMermaid } from './diagram.ts';
export type { MermaidOptions } from './diagram.ts';
export { toGraph } from './diagram.ts';
export type { SagaGraph, SagaGraphState, SagaGraphStep } from './diagram.ts';
export { createWorkerHost, DEFAULT_LEASE_MS } from './actors/worker-host.ts';
export { memoryTransport } from './transport/memory.ts';
export { memoryDedupStore, memorySagaStore, DEFAULT_DEDUP_WINDOW_MS, DEFAULT_DEDUP_MAX_RECORDS } from './store/memory.ts';
export type { MemoryDedupStoreOptions, MemorySagaStore, MemorySagaStoreOptions } from './store/memory.ts';
export { systemClock } from './clock.ts';
export {
  SagaError,
  SagaDefinitionError,
  InvalidOptionError,
  InputNotSerializableError,
  WorkerNotHostedError,
  SagaNotFoundError,
  TerminalError,
  TransportError,
  JournalUnavailableError,
  ResolveError,
} from './errors.ts';
export { PROTOCOL_VERSION } from './types.ts';

export type { DefinitionPlace, ErrorInfo, FencedEffect, SagaErrorCode } from './errors.ts';
export type { Runtime, RuntimeOptions, RuntimeEvents, EscalationEvent, SagaStatus, RunOptions, StartedSaga, SagaSummary, ListOptions, ResolveOptions, StepEvent } from './runtime.ts';
export type { WorkerHost, WorkerHostOptions } from './actors/worker-host.ts';
export type { MachineStateName, StepStatus } from './machines/saga-logic.ts';
export type {
  Backoff,
  BackoffSpec,
  Clock,
  CommittedOutcome,
  CompensateFn,
  CompensatedOutcome,
  CompensationFailedOutcome,
  CompensationOrder,
  CompensationSpec,
  DeadLetter,
  DedupStore,
  JoinSpec,
  KeyRecord,
  FenceRecord,
  FenceWas,
  KeyState,
  Logger,
  RemainingEffect,
  SagaDefinition,
  SagaInputOf,
  SagaCompensationSpec,
  SagaOutcome,
  SagaRecord,
  SagaResultsOf,
  SagaSpec,
  SagaStore,
  VersionedKeyRecord,
  VersionedSagaRecord,
  Served,
  StepFailure,
  StepPlan,
  StepSpec,
  Transport,
  WorkerContext,
  WorkerDefinition,
  WorkerHandler,
  WorkerInputOf,
  WorkerOp,
  WorkerReply,
  WorkerRequest,
  WorkerResultOf,
  WorkerSpec,
} from './types.ts';
