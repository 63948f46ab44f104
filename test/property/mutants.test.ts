/**
 * Mutants the simulation must catch: each row plants one bug in the runtime (by replacing
 * one export of its module) and runs the simulation property of
 * simulation.property.test.ts or fault-mixes.property.test.ts, with its mix, seed and
 * arbitraries, until the first violation. The row passes when a run breaks the property
 * the bug is about. Without the mutants the same runs hold (those two files), so each
 * failure here is the bug's.
 */
import { fromCallback } from 'xstate';
import { afterEach, expect, test, vi } from 'vitest';
import type { WorkerActorEvent, WorkerActorInput } from '../../src/actors/worker-actor.ts';
import type { SagaEvent } from '../../src/machines/saga-logic.ts';
import { BROAD_MIX, checkSimulation, FAULT_MIXES } from './simulation-check.ts';
import type { FaultMix } from './simulation-check.ts';

type Mutant =
  | 'transport-timeout-is-a-clean-failure'
  | 'undo-ignores-dependency-order'
  | 'compensate-takes-over-a-running-do'
  | 'resolve-trusts-an-applied-fence-in-doubt'
  | 'resolve-skips-the-fences'
  | 'retry-forgets-an-attempt-in-doubt'
  | 'expired-do-claim-not-marked-interrupted'
  | 'uncertain-key-acknowledges-compensate-without-undo'
  | 'store-failure-after-a-late-do-forgets-the-effect'
  | 'gate-ignored'
  | 'rejected-step-counted-as-no-effect'
  | 'sequential-undo-ignores-completion-order'
  | 'parallel-undo-waits-for-dependents';
const planted: { mutant: Mutant | undefined } = vi.hoisted(() => ({ mutant: undefined }));

vi.mock('../../src/actors/worker-actor.ts', async (importOriginal) => {
  const real = await importOriginal<typeof import('../../src/actors/worker-actor.ts')>();
  /** The real reply mapping, except that a transport timeout of a `do` is reported as a failure that proves nothing applied. */
  const replyToEvent = (ev: WorkerActorEvent, reply: Parameters<typeof real.replyToEvent>[1], failure?: unknown): SagaEvent => {
    if (planted.mutant === 'transport-timeout-is-a-clean-failure' && ev.type === 'DO' && (failure as { code?: string } | undefined)?.code === 'STEP_TIMED_OUT') {
      return { type: 'STEP.FAILED', stepId: ev.stepId, attempt: ev.attempt, error: { code: 'TRANSPORT_ERROR', message: String(failure), retryable: false }, local: true };
    }
    return real.replyToEvent(ev, reply, failure);
  };
  /** The unbounded worker actor (the simulation sets no `workerMaxInFlight`), over the reply mapping above. */
  const workerActorLogic = fromCallback<WorkerActorEvent, WorkerActorInput>(({ input, receive }) => {
    if (input.bound !== undefined) throw new Error('the mutant worker actor has no bound');
    receive((ev) => {
      const deliver = (event: SagaEvent) => {
        if (ev.saga.getSnapshot().status === 'active') ev.saga.send(event);
      };
      let sent;
      try {
        sent = input.transport.request(real.requestOf(input.worker, ev, input.clock.now()), ev.timeoutMs);
      } catch (error) {
        sent = Promise.reject(error);
      }
      sent.then(
        (reply) => deliver(replyToEvent(ev, reply)),
        (error: unknown) => deliver(replyToEvent(ev, undefined, error ?? new Error('request failed'))),
      );
    });
    return undefined;
  });
  return { ...real, replyToEvent, workerActorLogic };
});

vi.mock('../../src/machines/saga-logic.ts', async (importOriginal) => {
  const real = await importOriginal<typeof import('../../src/machines/saga-logic.ts')>();
  /**
   * The real launch, told that no step has dependents (every compensation starts at once);
   * or that a sequential saga undoes in parallel; or that a parallel one undoes in reverse.
   */
  const launchCompensations: typeof real.launchCompensations = (def, ctx) => {
    if (planted.mutant === 'undo-ignores-dependency-order') return real.launchCompensations({ ...def, steps: def.steps.map((p) => ({ ...p, dependents: [] })) }, ctx);
    if (planted.mutant === 'sequential-undo-ignores-completion-order' && def.compensationOrder === 'sequential') return real.launchCompensations({ ...def, compensationOrder: 'parallel' }, ctx);
    if (planted.mutant === 'parallel-undo-waits-for-dependents' && def.compensationOrder === 'parallel') return real.launchCompensations({ ...def, compensationOrder: 'reverse' }, ctx);
    return real.launchCompensations(def, ctx);
  };
  /**
   * The real failure record, except that a failure it retries leaves the step's taint as it
   * was: told that the failure proves nothing applied (WORKER_ERROR), the real code taints
   * only a step already tainted, and nothing else of a retry depends on the error's code.
   */
  const recordFailure: typeof real.recordFailure = (def, ctx, ev) => {
    if (planted.mutant !== 'retry-forgets-an-attempt-in-doubt' || ev.error.code === 'OVERLOADED') return real.recordFailure(def, ctx, ev);
    const p = def.stepsById.get(ev.stepId);
    const s = p === undefined ? undefined : ctx.steps[p.index];
    const retried = p !== undefined && s !== undefined && ev.error.retryable && ev.attempt - (s.refused ?? 0) <= p.retries;
    return real.recordFailure(def, ctx, retried ? { ...ev, local: false, error: { ...ev.error, code: 'WORKER_ERROR' } } : ev);
  };
  /**
   * The real result record, except that no gate is asked (the definition seen without its
   * gates), or that a rejected step is marked failed, as if its do had applied nothing.
   */
  const recordResult: typeof real.recordResult = (def, ctx, ev) => {
    if (planted.mutant === 'gate-ignored') {
      const stepsById = new Map([...def.stepsById].map(([id, p]) => [id, { ...p, gate: undefined }]));
      return real.recordResult({ ...def, stepsById }, ctx, ev);
    }
    const r = real.recordResult(def, ctx, ev);
    const p = def.stepsById.get(ev.stepId);
    if (planted.mutant !== 'rejected-step-counted-as-no-effect' || p === undefined || r.steps[p.index]?.status !== 'rejected') return r;
    return { ...r, steps: r.steps.map((s, i) => (i === p.index ? { ...s, status: 'failed' as const } : s)) };
  };
  return { ...real, launchCompensations, recordFailure, recordResult };
});

vi.mock('../../src/machines/key-machine.ts', async (importOriginal) => {
  const real = await importOriginal<typeof import('../../src/machines/key-machine.ts')>();
  /**
   * The real key machine, except that an expired do claim is taken over without marking the
   * key interrupted, and that an uncertain key answers a compensate as compensated (ok)
   * without running the undo.
   */
  const stepKey: typeof real.stepKey = (record, event, now) => {
    if (planted.mutant === 'expired-do-claim-not-marked-interrupted' && event.type === 'CLAIM.EXPIRED' && record.state === 'doing' && record.interrupted !== true) {
      const r = real.stepKey(record, event, now);
      const { interrupted: _, ...rest } = r.record;
      return { ...r, record: rest };
    }
    if (planted.mutant === 'uncertain-key-acknowledges-compensate-without-undo' && event.type === 'COMPENSATE' && record.state === 'uncertain') {
      const undone = real.stepKey(real.stepKey(record, event, now).record, { type: 'COMPENSATION.OK' }, now);
      return { record: undone.record, actions: ['ackCompensated'] };
    }
    return real.stepKey(record, event, now);
  };
  return { ...real, stepKey };
});

vi.mock('../../src/machines/host-protocol.ts', async (importOriginal) => {
  const real = await importOriginal<typeof import('../../src/machines/host-protocol.ts')>();
  /**
   * The real protocol, except that a compensate reading a `doing` key under a live claim
   * decides as if that claim had expired, instead of waiting for it; or that a do that
   * applied and whose outcome the store failed to take answers OUTCOME_UNKNOWN and forgets
   * the effect, instead of reading its key until it can tell whether to undo it itself.
   */
  const stepRequest: typeof real.stepRequest = (setup, state, ev) => {
    if (planted.mutant === 'compensate-takes-over-a-running-do' && state.phase === 'deciding' && ev.type === 'READ' && ev.live && setup.req.op === 'compensate' && ev.record?.state === 'doing') {
      return real.stepRequest(setup, state, { ...ev, live: false });
    }
    if (planted.mutant === 'store-failure-after-a-late-do-forgets-the-effect' && state.phase === 'completing' && ev.type === 'STORE_FAILED' && state.claim.selfUndo === 0 && state.outcome.event.type === 'DO.OK') {
      const unknown = real.replies.outcomeUnknown(setup.req, `the dedup store failed: ${ev.error.message}`);
      return { state: { phase: 'done' }, commands: [{ type: 'release', owner: state.claim.owner }, ...(state.answered ? [] : [{ type: 'reply' as const, reply: unknown }])] };
    }
    return real.stepRequest(setup, state, ev);
  };
  return { ...real, stepRequest };
});

vi.mock('../../src/machines/fence-verdict.ts', async (importOriginal) => {
  const real = await importOriginal<typeof import('../../src/machines/fence-verdict.ts')>();
  /** The real verdict, except that a fence that found a do applied is handled even when the step was in doubt. */
  const fenceVerdict: typeof real.fenceVerdict = (effect, answer, reviewed) =>
    planted.mutant === 'resolve-trusts-an-applied-fence-in-doubt' && 'by' in answer && answer.was === 'applied' ? { kind: 'handled', fence: answer } : real.fenceVerdict(effect, answer, reviewed);
  return { ...real, fenceVerdict };
});

vi.mock('../../src/runtime/operator.ts', async (importOriginal) => {
  const real = await importOriginal<typeof import('../../src/runtime/operator.ts')>();
  /** The real resolve, always with force: no key is fenced. */
  const resolveParked: typeof real.resolveParked = (driver, sagaId, options) =>
    planted.mutant === 'resolve-skips-the-fences' ? real.resolveParked(driver, sagaId, { ...(typeof options === 'string' ? { note: options } : options), force: true }) : real.resolveParked(driver, sagaId, options);
  return { ...real, resolveParked };
});

afterEach(() => {
  planted.mutant = undefined;
});

const BROAD_SEED = 20_261_122;
const MIXES_SEED = 20_261_202;

/** The first violations the simulation property finds with `mutant` planted, under `mix`, or undefined when all runs hold. */
async function firstViolations(mutant: Mutant, mix: FaultMix, seed: number, numRuns: number): Promise<{ properties: readonly string[]; run: number } | undefined> {
  planted.mutant = mutant;
  const r = await checkSimulation(mix, { numRuns, seed, timeLimitMs: 240_000, endOnFailure: true });
  return r.failed ? { properties: r.violated, run: r.runs } : undefined;
}

const LEAKS = ['compensated-has-no-effect', 'compensation-failed-lists-every-effect', 'committed-has-each-kept-effect-once', 'acknowledged-undo-stays-undone'];
const LAPSE = 'claims lapse and keys are taken over while dos run';
const CUT = 'hosts are cut off from the store while their dos run';

test.each([
  // A `do` whose transport gave up may have reached a host: counted as a clean failure, its effect is never undone.
  { mutant: 'transport-timeout-is-a-clean-failure' as const, mix: 'broad', breaks: ['compensated-has-no-effect', 'compensation-failed-lists-every-effect', 'committed-has-each-kept-effect-once'] },
  // Compensations started without waiting for the steps that ran after them.
  { mutant: 'undo-ignores-dependency-order' as const, mix: 'broad', breaks: ['undo-in-dependency-order'] },
  // A compensate that meets a running do takes the key over and answers ok; the do then applies (and its host undoes it again).
  { mutant: 'compensate-takes-over-a-running-do' as const, mix: 'broad', breaks: ['acknowledged-undo-stays-undone'] },
  // A resolve takes a fence that found a do applied as handled although the step was in doubt: the do may have applied after the operator looked.
  { mutant: 'resolve-trusts-an-applied-fence-in-doubt' as const, mix: 'broad', breaks: ['resolved-effect-stays-handled', 'compensated-has-no-effect'] },
  // A resolve fences nothing: a do still running when the operator looked applies after the saga reported compensated.
  { mutant: 'resolve-skips-the-fences' as const, mix: 'broad', breaks: ['resolved-effect-stays-handled', 'compensated-has-no-effect'] },
  // A retried attempt whose failure proves nothing (OUTCOME_UNKNOWN: its do applied, its outcome could not be written) leaves the step untainted; the saga settles during the backoff and abandons the step as failed.
  { mutant: 'retry-forgets-an-attempt-in-doubt' as const, mix: 'broad', breaks: ['compensated-has-no-effect', 'compensation-failed-lists-every-effect', 'committed-has-each-kept-effect-once'] },
  // A do applied but its outcome could not be written; a copy of the request takes the key over without marking it interrupted, and the failing re-run proves "nothing applied".
  { mutant: 'expired-do-claim-not-marked-interrupted' as const, mix: LAPSE, breaks: LEAKS },
  // The same runs: the key left uncertain by the failing re-run answers the compensate ok without undoing the first run's effect.
  { mutant: 'uncertain-key-acknowledges-compensate-without-undo' as const, mix: LAPSE, breaks: LEAKS },
  // A host cut off from the store while its do ran: the key is undone by another host, the do applies late, the store fails under its outcome, and the host forgets the late effect.
  { mutant: 'store-failure-after-a-late-do-forgets-the-effect' as const, mix: CUT, breaks: LEAKS },
  // A supervisor gate is never asked: a committed saga keeps results its gate rejects.
  { mutant: 'gate-ignored' as const, mix: 'broad', breaks: ['kept-results-pass-their-gates'] },
  // A result the gate rejected is taken as a failure with no effect: the effect its worker committed is never undone.
  { mutant: 'rejected-step-counted-as-no-effect' as const, mix: 'broad', breaks: LEAKS },
  // A sequential saga undoes every step at once: the first to complete is undone while later ones still hold their effects.
  { mutant: 'sequential-undo-ignores-completion-order' as const, mix: 'broad', breaks: ['sequential-undo-last-completed-first'] },
  // A parallel saga undoes in reverse: a step waits for the undo of the steps that ran after it.
  { mutant: 'parallel-undo-waits-for-dependents' as const, mix: 'broad', breaks: ['parallel-undoes-at-once'] },
])('the simulation catches the mutant $mutant ($mix mix)', async ({ mutant, mix, breaks }) => {
  const broad = mix === 'broad';
  const runs = broad ? 2_000 : 3_000;
  const found = await firstViolations(mutant, broad ? BROAD_MIX : FAULT_MIXES[mix as keyof typeof FAULT_MIXES], broad ? BROAD_SEED : MIXES_SEED, runs);
  console.log(`[mutants] ${mutant} (${mix} mix): ${found === undefined ? 'not caught' : `caught at run ${found.run}: ${found.properties.join(', ')}`}`);
  expect(found, `${mutant} survived ${runs} simulated runs of the ${mix} mix`).toBeDefined();
  expect(found?.properties.some((p) => breaks.includes(p)), `${mutant} broke ${found?.properties.join(', ')}`).toBe(true);
});
