/**
 * XState's pure `initialTransition` / `transition`, with one inert actor scope reused
 * for every call instead of a new throwaway actor per call (which costs ten times the
 * transition itself). Actions are collected, never executed, exactly as XState does.
 */
import { createActor } from 'xstate';
import type { AnyActorScope, AnyStateMachine, SnapshotFrom } from 'xstate';

export interface CollectedAction {
  readonly type: string;
  readonly params?: unknown;
}

export interface PureStepper<M extends AnyStateMachine> {
  initial(input: unknown): [SnapshotFrom<M>, CollectedAction[]];
  next(snapshot: SnapshotFrom<M>, event: unknown): [SnapshotFrom<M>, CollectedAction[]];
}

export function pureStepper<M extends AnyStateMachine>(machine: M, probeInput: unknown): PureStepper<M> {
  const collected: CollectedAction[] = [];
  const self = (createActor as (m: AnyStateMachine, o: { input: unknown }) => ReturnType<typeof createActor>)(machine, { input: probeInput });
  const scope = {
    self,
    defer: () => {},
    id: '',
    logger: () => {},
    sessionId: '',
    stopChild: () => {},
    system: self.system,
    emit: () => {},
    actionExecutor: (action: CollectedAction) => {
      collected.push({ type: action.type, params: action.params });
    },
  } as unknown as AnyActorScope;
  return {
    initial(input) {
      collected.length = 0;
      const s = machine.getInitialSnapshot(scope, input) as SnapshotFrom<M>;
      return [s, collected.slice()];
    },
    next(snapshot, event) {
      collected.length = 0;
      const s = machine.transition(snapshot, event as never, scope) as SnapshotFrom<M>;
      return [s, collected.slice()];
    },
  };
}
