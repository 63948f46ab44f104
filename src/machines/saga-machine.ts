/**
 * The saga machine (DESIGN section 3): one XState v5 machine per saga definition.
 *
 *   dispatching ─▶ gathering ─┬─▶ committed                        (final)
 *        ▲            │       └─▶ compensating ─┬─▶ compensated    (final)
 *        │            │  (operator abort)▲      │
 *        └─ next stage┘                         └─▶ compensationFailed ─(operator retry)─▶ compensating
 *
 * RECOVER (a coordinator restored the saga from its journal) taints every step that may
 * have been sent and sends again what may have been lost; a parked saga settles again.
 *
 * Every decision is a named guard or action over the pure functions of
 * saga-logic.ts. Effects leave the machine only as `effect` actions carrying a
 * {@link SagaCommand}, which the runtime provides; the machine has no `invoke` and
 * no `after`, so @xstate/graph can traverse it without running any I/O.
 */
import { and, assign, enqueueActions, setup } from 'xstate';
import type { SagaDefinition } from '../types.ts';
import * as L from './saga-logic.ts';
import type { KeyFn, SagaCommand, SagaContext, SagaEvent, SagaInput, Step } from './saga-logic.ts';
import { idempotencyKey } from './serializable.ts';

export interface SagaMachineOptions {
  /** How idempotency keys are computed. Default: sha256 of saga id, step id and input. */
  keyOf?: KeyFn;
}

/** Builds the machine of one saga definition. Its `effect` action does nothing until a runtime provides it. */
export function createSagaMachine(def: SagaDefinition, options: SagaMachineOptions = {}) {
  const keyOf = options.keyOf ?? idempotencyKey;

  /** An action that applies a pure step function and hands its commands to `effect`. */
  // Typed loosely on purpose: XState's action generics cannot express "any event of this machine".
  const apply = (fn: (ctx: SagaContext, ev: any) => Step): any =>
    enqueueActions(({ context, event, enqueue }: { context: SagaContext; event: SagaEvent; enqueue: any }) => {
      const r = fn(context, event);
      enqueue.assign(r.context);
      for (const params of r.commands) enqueue({ type: 'effect', params });
    });

  // Guards are only named on transitions whose events carry what the predicate reads.
  /** An action that only updates the context: a plain assign, cheaper than enqueueActions. */
  const update = (fn: (ctx: SagaContext, ev: any) => SagaContext): any =>
    assign(({ context, event }: { context: SagaContext; event: SagaEvent }) => fn(context, event));

  const onEvent =
    <E>(pred: (ctx: SagaContext, ev: E) => boolean) =>
    ({ context, event }: { context: SagaContext; event: SagaEvent }) =>
      pred(context, event as E);
  const onContext = (pred: (ctx: SagaContext) => boolean) => ({ context }: { context: SagaContext }) => pred(context);

  return setup({
    types: {
      context: {} as SagaContext,
      events: {} as SagaEvent,
      input: {} as SagaInput,
    },
    actions: {
      /** Performs one command. Provided by the runtime; a no-op in pure traversal. */
      effect: (_: unknown, _params: SagaCommand) => {},
      dispatchReady: apply((ctx) => L.dispatchReady(def, keyOf, ctx)),
      /** The step commits, unless its supervisor gate rejects the result (it is then compensated). */
      recordResult: update((ctx, ev) => L.recordResult(def, ctx, ev)),
      recordFailure: apply((ctx, ev) => L.recordFailure(def, ctx, ev)),
      recordTimeout: update((ctx, ev) => L.recordTimeout(def, ctx, ev)),
      redispatch: apply((ctx, ev) => L.redispatch(def, ctx, ev)),
      decideCommit: update((ctx) => L.decide(def, ctx, 'commit')),
      decideAbort: update((ctx) => L.decide(def, ctx, 'abort')),
      abortByOperator: update((ctx, ev) => L.abortByOperator(def, ctx, ev)),
      // The decision is journaled before any compensation goes out: a coordinator restored
      // from an older journal could otherwise decide differently from what was undone.
      launchCompensations: apply((ctx) => {
        const r = L.launchCompensations(def, ctx);
        return { context: r.context, commands: [{ type: 'checkpoint', writeAhead: true }, ...r.commands] };
      }),
      recover: apply((ctx) => L.recoverSaga(def, ctx)),
      recordLateResult: update((ctx, ev) => L.recordLateResult(def, ctx, ev)),
      recordCompensated: apply((ctx, ev) => L.recordCompensated(def, ctx, ev)),
      recordCompensationFailure: apply((ctx, ev) => L.recordCompensationFailure(def, ctx, ev)),
      resendCompensation: apply((ctx, ev) => L.resendCompensation(def, ctx, ev)),
      resetFailedCompensations: assign(({ context }) => L.resetFailedCompensations(def, context)),
      resolveRemaining: assign(({ context }) => L.resolveRemaining(def, context)),
      markParked: assign(({ context }) => L.markParked(context)),
      /** The saga reached a final state, or parked. Provided by the runtime. */
      settle: () => {},
    },
    guards: {
      hasReadySteps: onContext((ctx) => L.hasReadySteps(def, ctx)),
      joinSatisfiedCleanly: onContext((ctx) => L.joinSatisfiedCleanly(def, ctx)),
      joinSatisfied: onContext((ctx) => L.joinSatisfied(def, ctx)),
      joinImpossible: onContext((ctx) => L.joinImpossible(def, ctx)),
      isCurrentAttempt: onEvent((ctx, ev: { stepId: string; attempt: number }) => L.isCurrentAttempt(def, ctx, ev)),
      isRetryDue: onEvent((ctx, ev: { stepId: string; attempt: number }) => L.isRetryDue(def, ctx, ev)),
      isCurrentCompensation: onEvent((ctx, ev: { stepId: string; attempt: number }) => L.isCurrentCompensation(def, ctx, ev)),
      isCompensationAck: onEvent((ctx, ev: { stepId: string; attempt: number }) => L.isCompensationAck(def, ctx, ev)),
      isCompensationRetryDue: onEvent((ctx, ev: { stepId: string; attempt: number }) => L.isCompensationRetryDue(def, ctx, ev)),
      isLateResult: onEvent((ctx, ev: { stepId: string; attempt: number }) => L.isLateResult(def, ctx, ev)),
      decidedCommit: onContext((ctx) => ctx.decision === 'commit'),
      compensationComplete: onContext(L.compensationComplete),
      compensationStuck: onContext(L.compensationStuck),
    },
  }).createMachine({
    id: `saga:${def.name}@${def.version}`,
    context: ({ input }) => L.initialContext(def, input),
    initial: 'dispatching',
    states: {
      dispatching: {
        entry: 'dispatchReady',
        always: 'gathering',
      },
      gathering: {
        always: [
          { guard: 'joinSatisfiedCleanly', target: 'committed' },
          { guard: 'joinSatisfied', target: 'compensating', actions: 'decideCommit' },
          { guard: 'joinImpossible', target: 'compensating', actions: 'decideAbort' },
          { guard: 'hasReadySteps', target: 'dispatching' },
        ],
        on: {
          'STEP.COMMITTED': [
            { guard: 'isCurrentAttempt', actions: 'recordResult' },
            { guard: 'isLateResult', actions: 'recordLateResult' },
          ],
          'STEP.FAILED': { guard: 'isCurrentAttempt', actions: 'recordFailure' },
          'STEP.TIMED_OUT': { guard: 'isCurrentAttempt', actions: 'recordTimeout' },
          'STEP.RETRY_DUE': { guard: 'isRetryDue', actions: 'redispatch' },
          'OPERATOR.ABORT': { target: 'compensating', actions: 'abortByOperator' },
          RECOVER: { actions: 'recover' },
        },
      },
      compensating: {
        entry: 'launchCompensations',
        always: [
          { guard: and(['compensationComplete', 'decidedCommit']), target: 'committed' },
          { guard: 'compensationComplete', target: 'compensated' },
          { guard: 'compensationStuck', target: 'compensationFailed' },
        ],
        on: {
          'STEP.COMMITTED': { guard: 'isLateResult', actions: 'recordLateResult' },
          'COMPENSATION.DONE': { guard: 'isCompensationAck', actions: 'recordCompensated' },
          'COMPENSATION.FAILED': { guard: 'isCurrentCompensation', actions: 'recordCompensationFailure' },
          'COMPENSATION.TIMED_OUT': { guard: 'isCurrentCompensation', actions: 'recordCompensationFailure' },
          'COMPENSATION.RETRY_DUE': { guard: 'isCompensationRetryDue', actions: 'resendCompensation' },
          RECOVER: { actions: 'recover' },
        },
      },
      compensationFailed: {
        entry: ['markParked', 'settle'],
        on: {
          'STEP.COMMITTED': { guard: 'isLateResult', actions: 'recordLateResult' },
          'COMPENSATION.DONE': { guard: 'isCompensationAck', target: 'compensating', actions: 'recordCompensated' },
          'OPERATOR.RETRY': { target: 'compensating', actions: 'resetFailedCompensations' },
          'OPERATOR.RESOLVE': { target: 'compensating', actions: 'resolveRemaining' },
          // Restored parked: its dead letter and escalation are established again.
          RECOVER: { actions: 'settle' },
        },
      },
      committed: { type: 'final', entry: 'settle' },
      compensated: { type: 'final', entry: 'settle' },
    },
  });
}

export type SagaMachine = ReturnType<typeof createSagaMachine>;
