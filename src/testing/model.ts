/**
 * Model checking of the real saga machine (`createSagaMachine`): a breadth-first
 * traversal of every state reachable under the events a saga can see, each state
 * checked against the guarantee of DESIGN section 2.
 *
 * Next to the machine's own context the traversal carries a ghost of the world:
 * for each step, whether its effect is absent, may exist, exists, or was undone
 * (as far as the coordinator could know). The invariants compare the machine's
 * claims with that ghost, so a machine that *says* a step is compensated without
 * an acknowledged compensation is caught.
 */
import type { ErrorInfo } from '../errors.ts';
import { outcomeOf, stepOf } from '../machines/saga-logic.ts';
import type { MachineStateName, SagaCommand, SagaContext, SagaEvent, StepState } from '../machines/saga-logic.ts';
import { createSagaMachine } from '../machines/saga-machine.ts';
import type { SagaDefinition, SagaOutcome } from '../types.ts';
import { pureStepper } from '../machines/pure-transition.ts';

/** The world, per step, as the coordinator could know it. */
export type Ghost = 'none' | 'maybe' | 'yes' | 'undone';

interface GhostStep {
  readonly effect: Ghost;
  /**
   * An earlier request of the step may still apply without the coordinator hearing of it
   * (sent before a coordinator crash, or answered with a failure that proves nothing): a
   * failure reply then says nothing about the effect.
   */
  readonly unsure: boolean;
  /** A compensation attempt timed out: its late acknowledgement may still arrive. */
  readonly compUnknown: boolean;
  /** Its last attempt failed and the saga was aborted while it waited to retry: no effect, yet undone. */
  readonly abandoned: boolean;
  /**
   * Compensate requests the coordinators sent for it, counted from their commands. Not
   * part of a state's key: a stored state keeps the count of the path that reached it.
   */
  readonly compSent: number;
  /**
   * The coordinator holds proof that the step's requests took no effect: its current
   * request failed in user code under the host's claim, or found no responder as the key's
   * first request, with no earlier request unaccounted for (the in-doubt rule of
   * docs/protocol.md). Cleared again when a request is sent. Not part of a state's key.
   */
  readonly proven: boolean;
  /**
   * The error code of the last answer to its current compensation attempt that spent the
   * budget: STEP_TIMED_OUT for a timeout, else the failure's code (a refusal at capacity
   * spends none). Not part of a state's key.
   */
  readonly lastComp: string | undefined;
  /**
   * When the saga heard its `do` succeed (1, 2, ... across the steps, in the order the
   * replies came), counted from the replies to the latest attempt sent, before the saga
   * decided; 0 when it never did. The order a sequential undo reverses. Not part of a
   * state's key (the machine's own order is).
   */
  readonly doneAt: number;
  /**
   * The saga's timer ran out on its current `do` attempt (a STEP.TIMED_OUT it received
   * while waiting for that attempt): docs/guide.md, "then the step is in doubt and will be
   * undone", so the join never keeps it. Part of a state's key until the saga decides.
   */
  readonly timedOut: boolean;
}

type Snap = { value: unknown; context: SagaContext };

interface Journal {
  readonly journaled: Snap | undefined;
  readonly written: Snap | undefined;
  readonly crashesLeft: number;
}

interface Node {
  readonly snap: Snap;
  readonly ghost: Readonly<Record<string, GhostStep>>;
  /** The coordinator's journal: the last write-ahead write (certainly landed) and the last write. */
  readonly journal: Journal;
  readonly parent: string | undefined;
  readonly via: string | undefined;
  readonly depth: number;
  /**
   * On the path that reached it: how many times the saga entered compensationFailed from
   * another state, and how many undo acknowledgements reached it while parked (each may
   * wake it and park it again). Not part of a state's key.
   */
  readonly parkings: readonly [entered: number, wakes: number];
}

/** A property of the guarantee broken on a state reachable by the saga machine. */
export interface ModelViolation {
  /** Which property failed, e.g. `compensated-leaves-no-effect`. */
  readonly property: string;
  readonly message: string;
  /** The events from the initial state to the bad state, human readable. */
  readonly path: readonly string[];
}

/** What `exploreSaga` explored and found. */
export interface ModelReport {
  readonly shape: string;
  /** Distinct states (machine state + per-step status + ghost world). */
  readonly states: number;
  /** Transitions taken (events applied, including ignored ones). */
  readonly transitions: number;
  /** Shortest paths checked: one per reachable state. */
  readonly paths: number;
  /** Distinct reachable terminal states by kind. */
  readonly finals: { committed: number; compensated: number; compensationFailed: number };
  readonly violations: readonly ModelViolation[];
  /** True when `maxStates` stopped the traversal before it covered everything. */
  readonly truncated: boolean;
  /** Whether states equal up to a permutation of interchangeable steps were merged. */
  readonly symmetry: boolean;
  /** The classes of interchangeable steps (by id) that were permuted; empty when `symmetry` is false. */
  readonly symmetryClasses: readonly (readonly string[])[];
}

/** The options of `exploreSaga`. */
export interface ModelOptions {
  /** Stop after this many states (the report says `truncated`). Default 400_000. */
  maxStates?: number;
  /** Stop collecting after this many violations. Default 5. */
  maxViolations?: number;
  /** The saga input the machine is started with (step `input` functions read it). Default null. */
  input?: unknown;
  /**
   * Merge states that differ only by a permutation of interchangeable steps (see
   * `symmetryClasses`). Default true; always off with `crashes`.
   */
  symmetry?: boolean;
  /**
   * Coordinator crashes, each followed by a recovery from the journal (the last write-ahead
   * write, or the last write). Default 0: keep it to small shapes.
   */
  crashes?: number;
  /**
   * Hosts refuse requests at capacity (OVERLOADED, sent again without spending a retry):
   * once per step's `do` and once per compensation round. Default false: it multiplies
   * the space, so keep it to small shapes.
   */
  overload?: boolean;
}

const RESULT = 'r';
/** A second result a gated step's do may return: its gate decides whether the saga counts it. */
const OTHER_RESULT = 'r2';
const TERMINAL: ErrorInfo = { code: 'WORKER_ERROR', message: 'model: terminal failure', retryable: false };
const RETRYABLE: ErrorInfo = { code: 'WORKER_ERROR', message: 'model: retryable failure', retryable: true };
/** A failure that proves nothing (e.g. the host could not record what do did). */
const UNKNOWN: ErrorInfo = { code: 'OUTCOME_UNKNOWN', message: 'model: outcome unknown', retryable: true };
const NO_RESPONDERS: ErrorInfo = { code: 'NO_RESPONDERS', message: 'model: no responders', retryable: true };
const REFUSED: ErrorInfo = { code: 'COMPENSATED', message: 'model: the key was undone', retryable: false };
/** A host at capacity refused the request before it touched anything (backpressure). */
const OVERLOADED: ErrorInfo = { code: 'OVERLOADED', message: 'model: host at capacity', retryable: true };
const COMP_ERR: ErrorInfo = { code: 'COMPENSATION_FAILED', message: 'model: compensation failed', retryable: true };

function label(ev: SagaEvent): string {
  switch (ev.type) {
    case 'OPERATOR.RETRY':
    case 'OPERATOR.RESOLVE':
    case 'OPERATOR.ABORT':
    case 'RECOVER':
      return ev.type;
    case 'STEP.FAILED':
      return `${ev.type}(${ev.stepId}#${ev.attempt}, ${ev.error.code === 'WORKER_ERROR' ? (ev.error.retryable ? 'retryable' : 'terminal') : ev.error.code})`;
    default:
      return `${ev.type}(${ev.stepId}#${ev.attempt})`;
  }
}

/** The events a saga may see in this state, given what is in flight in the world. */
function eventsFor(def: SagaDefinition, snap: Snap, ghost: Readonly<Record<string, GhostStep>>, overload: boolean): SagaEvent[] {
  const out: SagaEvent[] = [];
  for (const p of def.steps) {
    const s = snap.context.steps[p.index] as StepState;
    const g = ghost[p.id] as GhostStep;
    const stepId = p.id;
    const a = s.attempt;
    if (s.status === 'dispatched' && !s.waiting && g.effect === 'undone') {
      // Undone by a coordinator before a crash: the host refuses the do.
      out.push({ type: 'STEP.FAILED', stepId, attempt: a, error: REFUSED }, { type: 'STEP.TIMED_OUT', stepId, attempt: a });
    } else if (s.status === 'dispatched' && !s.waiting) {
      out.push(
        { type: 'STEP.COMMITTED', stepId, attempt: a, result: RESULT },
        { type: 'STEP.FAILED', stepId, attempt: a, error: RETRYABLE },
        { type: 'STEP.FAILED', stepId, attempt: a, error: TERMINAL },
        { type: 'STEP.FAILED', stepId, attempt: a, error: UNKNOWN },
        { type: 'STEP.TIMED_OUT', stepId, attempt: a },
      );
      if (p.gate !== undefined) out.push({ type: 'STEP.COMMITTED', stepId, attempt: a, result: OTHER_RESULT });
      // On a first, untainted attempt "no responders" is proof, as a retryable worker error
      // is; later, or after a request unaccounted for, it proves nothing.
      out.push({ type: 'STEP.FAILED', stepId, attempt: a, error: NO_RESPONDERS });
      if (a > 1) out.push({ type: 'STEP.FAILED', stepId, attempt: a - 1, error: RETRYABLE }); // a duplicate of an old reply
      // Refused at capacity (once per step, to keep the space finite): sent again, no budget spent.
      if (overload && (s.refused ?? 0) === 0) out.push({ type: 'STEP.FAILED', stepId, attempt: a, error: OVERLOADED });
    } else if (s.status === 'dispatched' && s.waiting) {
      out.push({ type: 'STEP.RETRY_DUE', stepId, attempt: a + 1 }, { type: 'STEP.TIMED_OUT', stepId, attempt: a });
    } else if (g.effect === 'maybe') {
      // Timed out (or abandoned by the decision): its late reply may still come.
      out.push({ type: 'STEP.COMMITTED', stepId, attempt: a, result: RESULT }, { type: 'STEP.FAILED', stepId, attempt: a, error: TERMINAL });
    }
    if (s.status === 'compensating' && !s.waiting) {
      const c = s.compAttempt;
      out.push({ type: 'COMPENSATION.DONE', stepId, attempt: c }, { type: 'COMPENSATION.TIMED_OUT', stepId, attempt: c });
      // A key already undone (by a compensation sent before a coordinator crash) is acknowledged from its tombstone.
      if (g.effect !== 'undone') out.push({ type: 'COMPENSATION.FAILED', stepId, attempt: c, error: COMP_ERR });
      if (overload && (s.compRefused ?? 0) === 0) out.push({ type: 'COMPENSATION.FAILED', stepId, attempt: c, error: OVERLOADED });
    } else if (s.status === 'compensating' && s.waiting) {
      out.push({ type: 'COMPENSATION.RETRY_DUE', stepId, attempt: s.compAttempt + 1 });
    }
    if (g.compUnknown && (s.status === 'compensating' || s.status === 'compensationFailed')) {
      out.push({ type: 'COMPENSATION.DONE', stepId, attempt: Math.max(1, s.compAttempt - (s.waiting ? 0 : 1)) });
    }
  }
  if (snap.value === 'compensationFailed') out.push({ type: 'OPERATOR.RETRY' }, { type: 'OPERATOR.RESOLVE', note: 'model' });
  // An operator may abort a running saga at any moment: it undoes what committed or may have.
  if (snap.value === 'gathering') out.push({ type: 'OPERATOR.ABORT', note: 'model' });
  return out;
}

/** What the event and the commands it caused did to the world. */
function nextGhost(
  def: SagaDefinition,
  prev: Snap,
  next: Snap,
  ghost: Readonly<Record<string, GhostStep>>,
  ev: SagaEvent | undefined,
  commands: readonly SagaCommand[],
): Record<string, GhostStep> {
  const g: Record<string, GhostStep> = { ...ghost };
  if (ev !== undefined && 'stepId' in ev) {
    const cur = g[ev.stepId] as GhostStep;
    const before = stepOf(def, prev.context, ev.stepId) as StepState;
    switch (ev.type) {
      case 'STEP.COMMITTED': {
        if (cur.effect !== 'undone') g[ev.stepId] = { ...cur, effect: 'yes' };
        const current = before.status === 'dispatched' && !before.waiting && before.attempt === ev.attempt;
        if (current && cur.doneAt === 0 && prev.context.decision === undefined) {
          const last = Math.max(0, ...Object.values(ghost).map((o) => o.doneAt));
          g[ev.stepId] = { ...(g[ev.stepId] as GhostStep), doneAt: last + 1 };
        }
        break;
      }
      case 'STEP.FAILED': {
        // The current attempt failed. A worker error (the host ran it under its claim, and
        // the key's later attempts are serialized behind it) or no responders (nobody took
        // it) mean this request took no effect; with no earlier request unaccounted for,
        // the step has none. Any other failure proves nothing. (Old or late failures are
        // ignored by a coordinator.)
        const current = before.status === 'dispatched' && !before.waiting && before.attempt === ev.attempt;
        if (!current) break;
        // A refusal at capacity proves only that the refused copy ran nothing: another copy
        // of the same request (a duplicate) may reach a host that takes it. Unsure.
        if (ev.error.code === 'WORKER_ERROR' || ev.error.code === 'NO_RESPONDERS') {
          if (cur.effect === 'maybe' && !cur.unsure) g[ev.stepId] = { ...cur, effect: 'none', proven: ev.error.code === 'WORKER_ERROR' || ev.attempt === 1 };
        } else if (ev.error.code !== 'COMPENSATED') g[ev.stepId] = { ...cur, unsure: true };
        break;
      }
      case 'STEP.TIMED_OUT':
        if (before.status === 'dispatched' && !before.waiting && before.attempt === ev.attempt) g[ev.stepId] = { ...cur, timedOut: true };
        break;
      case 'COMPENSATION.DONE':
        g[ev.stepId] = { ...cur, effect: 'undone', compUnknown: false };
        break;
      case 'COMPENSATION.TIMED_OUT': {
        const current = before.status === 'compensating' && !before.waiting && before.compAttempt === ev.attempt;
        g[ev.stepId] = { ...cur, compUnknown: true, lastComp: current ? 'STEP_TIMED_OUT' : cur.lastComp };
        break;
      }
      case 'COMPENSATION.FAILED': {
        // A clean failure means the host ran the compensation and it failed; any other
        // (a refusal at capacity) proves only that this copy ran nothing: a duplicate of the
        // same request may reach a host that takes it.
        const current = before.status === 'compensating' && !before.waiting && before.compAttempt === ev.attempt && ev.error.code !== 'OVERLOADED';
        g[ev.stepId] = { ...cur, compUnknown: cur.compUnknown || ev.error.code !== 'COMPENSATION_FAILED', lastComp: current ? ev.error.code : cur.lastComp };
        break;
      }
      default:
        break;
    }
  }
  if (ev?.type === 'OPERATOR.RESOLVE') {
    for (const p of def.steps) {
      const was = prev.context.steps[p.index] as StepState;
      const now = next.context.steps[p.index] as StepState;
      if (now.resolvedByOperator && !was.resolvedByOperator) g[p.id] = { ...(g[p.id] as GhostStep), effect: 'undone', compUnknown: false };
    }
  }
  for (const p of def.steps) {
    const was = prev.context.steps[p.index] as StepState;
    const now = next.context.steps[p.index] as StepState;
    if (was.status === 'dispatched' && was.waiting && !was.undo && now.undo) g[p.id] = { ...(g[p.id] as GhostStep), abandoned: true };
  }
  for (const c of commands) {
    if (c.type === 'do') {
      const cur = g[c.stepId] as GhostStep;
      g[c.stepId] = { ...cur, effect: cur.effect === 'none' ? 'maybe' : cur.effect, proven: false };
    } else if (c.type === 'compensate') {
      const cur = g[c.stepId] as GhostStep;
      g[c.stepId] = { ...cur, compSent: cur.compSent + 1 };
    }
  }
  return g;
}

/**
 * Steps with the same plan are interchangeable: the same `after` and the same dependents
 * (so swapping two of them maps the definition's graph onto itself), the same `input`
 * function, timeouts, retries, backoff and compensation options. States that differ only
 * by a permutation of the steps within such a class are one state (symmetry reduction).
 * The worker name is left out: the model answers for every worker alike, and the machine
 * only passes it on in its commands. Every property checked here is symmetric, and each
 * stored state is the real successor of its stored parent, so reported paths stay exact.
 * Returns the classes of two or more steps, each in definition order.
 */
export function symmetryClasses(def: SagaDefinition): string[][] {
  const fns = new Map<unknown, number>();
  const fnId = (f: unknown) => {
    if (!fns.has(f)) fns.set(f, fns.size);
    return fns.get(f) as number;
  };
  const groups = new Map<string, string[]>();
  for (const p of def.steps) {
    const sig = JSON.stringify([fnId(p.input), fnId(p.gate), [...p.after].sort(), [...p.dependents].sort(), p.timeoutMs, p.retries, p.backoff, p.compensation]);
    const g = groups.get(sig);
    if (g === undefined) groups.set(sig, [p.id]);
    else g.push(p.id);
  }
  return [...groups.values()].filter((g) => g.length > 1);
}

/** Positions (in `def.steps`) of each class's members. */
type Classes = readonly (readonly number[])[];

function serialize(def: SagaDefinition, snap: Snap, ghost: Readonly<Record<string, GhostStep>>, classes: Classes = []): string {
  const ctx = snap.context;
  const seqs = def.steps
    .map((p) => (ctx.steps[p.index] as StepState).committedSeq)
    .filter((n) => n > 0)
    .sort((x, y) => x - y);
  const head = [String(snap.value), ctx.decision ?? '-'];
  const parts: string[] = [];
  for (const p of def.steps) {
    const s = ctx.steps[p.index] as StepState;
    const g = ghost[p.id] as GhostStep;
    parts.push(
      [
        s.status,
        s.attempt,
        s.waiting ? 'w' : '',
        s.result === undefined ? '' : 'r',
        s.undo ? 'u' : '',
        s.kept ? 'k' : '',
        s.committedSeq > 0 ? seqs.indexOf(s.committedSeq) + 1 : 0,
        s.compAttempt,
        s.resolvedByOperator ? 'o' : '',
        g.effect,
        g.unsure ? '!' : '',
        g.compUnknown ? '?' : '',
        g.abandoned ? 'a' : '',
        // Read when the saga decides (see checkCommands): part of the key until then only.
        g.timedOut && ctx.decision === undefined ? 't' : '',
      ].join(','),
    );
  }
  // Within each class the members' parts are sorted into the class's positions: states
  // equal up to a permutation of interchangeable steps get one key.
  for (const members of classes) {
    const sorted = members.map((i) => parts[i] as string).sort();
    members.forEach((i, k) => {
      parts[i] = sorted[k] as string;
    });
  }
  return [...head, ...parts].join('|');
}

function quorumOf(def: SagaDefinition): number {
  return def.join.kind === 'all' ? def.steps.length : def.join.kind === 'any' ? 1 : def.join.n;
}

const holdsEffect = (g: GhostStep) => g.effect === 'maybe' || g.effect === 'yes';

/** The properties of DESIGN section 2, checked on one reachable state. Returns [property, message] pairs. */
export function checkSagaState(
  def: SagaDefinition,
  snap: Snap,
  ghost: Readonly<Record<string, GhostStep>>,
  afterCrash = false,
  parkings?: readonly [entered: number, wakes: number],
): [string, string][] {
  const bad: [string, string][] = [];
  const state = snap.value as MachineStateName;
  const ctx = snap.context;
  // The dead letter of a parked saga says how many times it parked (operators read it as
  // "retried N times and still failing"): every parking counts (each operator retry that
  // parks again adds one), and a late undo acknowledgement that wakes a parked saga may
  // park it once more.
  if (state === 'compensationFailed' && parkings !== undefined && !afterCrash && (ctx.timesParked < parkings[0] || ctx.timesParked > parkings[0] + parkings[1])) {
    bad.push(['parked-counts-its-parkings', `the saga parked ${parkings[0]} time(s) (and was woken by ${parkings[1]} late acknowledgement(s) while parked), its dead letter says ${ctx.timesParked}`]);
  }
  const st = (id: string) => (stepOf(def, ctx, id) as StepState).status;
  const gh = (id: string) => ghost[id] as GhostStep;
  const outcome = outcomeOf(def, ctx, state);
  if (state === 'committed') {
    const kept = new Set(outcome?.status === 'committed' ? Object.keys(outcome.results) : []);
    if (kept.size !== quorumOf(def)) bad.push(['committed-keeps-the-join', `committed keeping ${kept.size} step(s) [${[...kept].join(', ')}], the join needs ${quorumOf(def)}`]);
    for (const p of def.steps) {
      if (kept.has(p.id)) {
        if (st(p.id) !== 'committed' || gh(p.id).effect !== 'yes') {
          bad.push(['committed-keeps-only-committed-steps', `kept step '${p.id}' is ${st(p.id)} with world effect ${gh(p.id).effect}`]);
        }
        // A supervisor gate is asked here, from the definition: a result it rejects is never kept.
        const result = outcome?.status === 'committed' ? outcome.results[p.id] : undefined;
        if (p.gate !== undefined && !gateAccepts(p.gate, result, () => (stepOf(def, ctx, p.id) as StepState).input)) {
          bad.push(['kept-results-pass-their-gates', `kept step '${p.id}' has result ${JSON.stringify(result)}, which its gate rejects`]);
        }
      } else if (holdsEffect(gh(p.id))) {
        bad.push(['committed-releases-the-rest', `step '${p.id}' is not kept but its effect ${gh(p.id).effect === 'yes' ? 'exists' : 'may exist'} (status ${st(p.id)})`]);
      }
    }
  }
  if (state === 'compensated') {
    for (const p of def.steps) {
      if (holdsEffect(gh(p.id))) {
        bad.push(['compensated-leaves-no-effect', `saga is compensated but step '${p.id}' ${gh(p.id).effect === 'yes' ? 'committed' : 'is in doubt'} and was never compensated (status ${st(p.id)})`]);
      }
      if (st(p.id) === 'compensating') bad.push(['compensated-only-when-compensations-ended', `saga is compensated while step '${p.id}' is still compensating`]);
    }
  }
  if (state === 'committed' || state === 'compensated' || state === 'compensationFailed') {
    // An outcome's optional fields (abortedByOperator, ...) are absent when they do not
    // apply, never present and undefined: so what run() returns in-process is what a journal
    // gives back after a restart (JSON drops them). Fields of remaining entries that the
    // type declares (`result`, `lastError`) may hold undefined.
    const dropped = Object.entries(outcome ?? {}).find(([, v]) => v === undefined);
    if (dropped !== undefined) bad.push(['outcome-is-plain-json', `outcome.${dropped[0]} is present and undefined: the outcome read back from a journal would not have it`]);
  }
  if (outcome !== undefined) bad.push(...checkOutcomeReport(def, outcome, ghost, afterCrash));
  if (state === 'committed' || state === 'compensated') {
    for (const p of def.steps) {
      const s = st(p.id);
      if ((s === 'dispatched' || s === 'inDoubt') && holdsEffect(gh(p.id))) {
        bad.push(['final-has-no-unknown-step', `final state ${state} with step '${p.id}' ${s} and its outcome unknown`]);
      }
    }
  }
  if (state === 'compensationFailed') {
    const listed = new Set(outcome?.status === 'compensation-failed' ? outcome.remaining.map((r) => r.stepId) : []);
    // Steps the join keeps (decision commit) stay; every other effect must be listed.
    const keptStep = (id: string) => ctx.decision === 'commit' && (stepOf(def, ctx, id) as StepState).kept;
    const actual = new Set(def.steps.filter((p) => holdsEffect(gh(p.id)) && !keptStep(p.id)).map((p) => p.id));
    const missing = [...actual].filter((id) => !listed.has(id));
    // An entry marked in doubt may have no effect: listing it is the point of the in-doubt rule.
    const inDoubt = new Set(outcome?.status === 'compensation-failed' ? outcome.remaining.filter((r) => r.inDoubt).map((r) => r.stepId) : []);
    const extra = [...listed].filter((id) => !actual.has(id) && !inDoubt.has(id));
    const what = `remaining lists [${[...listed].join(', ')}] but the effects that may be left are [${[...actual].join(', ')}]`;
    if (missing.length > 0) bad.push(['compensation-failed-lists-every-remaining-effect', `${what}; missing ${missing.join(', ')}`]);
    if (extra.length > 0) bad.push(['compensation-failed-lists-only-remaining-effects', `${what}; listed without an effect: ${extra.join(', ')}`]);
    if (def.steps.some((p) => st(p.id) === 'compensating')) bad.push(['parked-only-when-compensations-ended', 'saga parked while a compensation is still running']);
    // The in-doubt flag tells the operator whether to look before acting, so it must be
    // true to the world: an entry not in doubt certainly holds its effect, and an entry in
    // doubt is one the coordinator could not be sure of (a request may have applied
    // unheard, a compensation may have landed unheard, or a coordinator died meanwhile).
    for (const r of outcome?.status === 'compensation-failed' ? outcome.remaining : []) {
      const g = gh(r.stepId);
      if (!r.inDoubt && (g.effect !== 'yes' || g.compUnknown)) {
        bad.push(['in-doubt-when-unsure', `remaining step '${r.stepId}' is listed as certainly holding its effect, but in the world its effect ${g.effect === 'yes' ? 'exists and a compensation of it may still land' : g.effect === 'maybe' ? 'may or may not exist' : `is ${g.effect}`}`]);
      }
      // Listing in doubt a step that certainly has no effect is conservative (see above).
      if (r.inDoubt && g.effect === 'yes' && !g.unsure && !g.compUnknown && !afterCrash) {
        bad.push(['in-doubt-only-when-unsure', `remaining step '${r.stepId}' is listed in doubt, but its effect certainly exists and the coordinator heard every answer`]);
      }
    }
  }
  return bad;
}

/**
 * The report fields of a final or parked outcome, read against the world and the
 * definition only: which steps it says were undone, whether each failure left an effect,
 * why each remaining effect remains and how many undo attempts it got.
 */
function checkOutcomeReport(def: SagaDefinition, outcome: SagaOutcome, ghost: Readonly<Record<string, GhostStep>>, afterCrash: boolean): [string, string][] {
  const bad: [string, string][] = [];
  const gh = (id: string) => ghost[id] as GhostStep;
  // The steps it says were undone (released by the join, or compensated) are exactly the
  // steps whose effect was undone in the world, by a compensation or by an operator. A
  // parked saga may not have heard of an undo that landed: that step is listed remaining,
  // in doubt.
  const undone = outcome.status === 'committed' ? outcome.released : outcome.compensated;
  const field = outcome.status === 'committed' ? 'released' : 'compensated';
  const world = def.steps.filter((p) => gh(p.id).effect === 'undone').map((p) => p.id);
  const unheard = (id: string) => outcome.status === 'compensation-failed' && outcome.remaining.some((r) => r.stepId === id && r.inDoubt);
  if (undone.some((id) => !world.includes(id)) || world.some((id) => !undone.includes(id) && !unheard(id))) {
    bad.push(['outcome-lists-what-was-undone', `outcome.${field} is [${undone.join(', ')}], but the effects undone in the world are [${world.join(', ')}]`]);
  }
  if (outcome.status === 'committed') return bad;
  // Every failure and every remaining effect's last error says what happened: an error
  // with an empty message tells the operator nothing.
  const errors = [...outcome.failures.map((f) => [f.stepId, f.error] as const), ...(outcome.status === 'compensation-failed' ? outcome.remaining.flatMap((r) => (r.lastError === undefined ? [] : [[r.stepId, r.lastError] as const])) : [])];
  for (const [stepId, error] of errors) {
    if (typeof error.message !== 'string' || error.message.trim() === '') bad.push(['errors-say-why', `an error of step '${stepId}' (${error.code}) has no message`]);
  }
  // Each reason has its code (docs/guide.md, "Outcomes"; docs/protocol.md): a timeout is
  // STEP_TIMED_OUT, a gate's rejection GATE_REJECTED, and neither code means anything else.
  for (const f of outcome.failures) {
    const code = f.reason === 'timed-out' ? 'STEP_TIMED_OUT' : f.reason === 'rejected' ? 'GATE_REJECTED' : undefined;
    if ((code !== undefined && f.error.code !== code) || (code === undefined && f.error.code === 'GATE_REJECTED')) {
      bad.push(['failure-reason-has-its-code', `failure of step '${f.stepId}' says reason '${f.reason}' with code ${f.error.code}`]);
    }
  }
  // A failure not in doubt says its step left no effect: the coordinator must hold proof
  // of it (its request failed in user code under a claim, or found no responder as the
  // key's first request, nothing earlier unaccounted for); a failure in doubt says it
  // holds none.
  const lastFailure = new Map(outcome.failures.map((f) => [f.stepId, f] as const));
  for (const f of lastFailure.values()) {
    const g = gh(f.stepId);
    if (!f.inDoubt && g.effect !== 'none') {
      bad.push(['failure-in-doubt-when-unsure', `failure of step '${f.stepId}' (${f.error.code}) says it left no effect, but in the world its effect ${g.effect === 'undone' ? 'existed or may have, and was undone' : g.effect === 'yes' ? 'exists' : 'may exist'}`]);
    }
    if (f.inDoubt && g.proven) {
      bad.push(['failure-in-doubt-only-when-unsure', `failure of step '${f.stepId}' (${f.error.code}) is reported in doubt, but the coordinator holds proof that it left no effect`]);
    }
  }
  if (outcome.status !== 'compensation-failed') return bad;
  const listed = new Set(outcome.remaining.map((r) => r.stepId));
  for (const r of outcome.remaining) {
    const p = def.stepsById.get(r.stepId);
    if (p === undefined) continue;
    // Which undo waits: under `reverse`, one behind every step that ran after it; under
    // `sequential`, one never started (it waits behind the one that gave up); under
    // `parallel`, none.
    // (A coordinator restored from its journal may not know of an undo its predecessor
    // sent: under `sequential` it may then still wait to send it.)
    const behind = def.compensationOrder === 'reverse' ? p.dependents.filter((d) => listed.has(d)) : [];
    const waits = def.compensationOrder === 'reverse' ? behind.length > 0 : def.compensationOrder === 'sequential' && gh(r.stepId).compSent === 0;
    const why = waits ? 'blocked' : 'compensation-failed';
    const either = afterCrash && def.compensationOrder === 'sequential';
    if (r.why !== why && !either) {
      const because = waits ? (behind.length > 0 ? `it waits behind ${behind.join(', ')}, whose effects remain` : 'its undo never started: it waits behind one that gave up') : 'nothing it waits for remains, so its own undo gave up';
      bad.push(['remaining-says-why', `remaining step '${r.stepId}' says why '${r.why}', but ${because}`]);
    }
    // Every compensate request sent counts one attempt (a recovered coordinator re-sends
    // the one in flight, and may have lost count of the last ones: then at most as many).
    const sent = gh(r.stepId).compSent;
    if (afterCrash ? r.attempts > sent : r.attempts !== sent) {
      bad.push(['remaining-counts-attempts', `remaining step '${r.stepId}' reports ${r.attempts} undo attempt(s), but ${sent} compensate request(s) were sent`]);
    }
    if (r.why === 'compensation-failed' && r.attempts < 1) {
      bad.push(['remaining-counts-attempts', `remaining step '${r.stepId}' gave up its undo after ${r.attempts} attempts`]);
    }
    // Its last error is the answer to its last undo attempt: STEP_TIMED_OUT for a timeout.
    const lastAnswer = gh(r.stepId).lastComp;
    if (!afterCrash && r.lastError?.code !== lastAnswer) {
      bad.push(['remaining-names-its-last-error', `remaining step '${r.stepId}' reports last error ${r.lastError?.code ?? 'none'}, but its last undo attempt was answered ${lastAnswer ?? 'never'}`]);
    }
  }
  return bad;
}

/**
 * Whether a gate says `true` to a result, asked by an oracle from the definition (the
 * model check and the simulation). `input` gives the step's input; a throw of either, or
 * any other answer, is a no.
 */
export function gateAccepts(gate: (result: unknown, input: unknown) => unknown, result: unknown, input: () => unknown): boolean {
  try {
    return gate(result, input()) === true;
  } catch {
    return false;
  }
}

/** Properties of the commands a transition emitted, against the world before it. */
function checkCommands(def: SagaDefinition, ghost: Readonly<Record<string, GhostStep>>, prev: Snap, commands: readonly SagaCommand[], next: Snap): [string, string][] {
  const bad: [string, string][] = [];
  // docs/durability.md: one event costs at most one write-ahead write and one checkpoint (a
  // second of either would write the same snapshot again).
  const ahead = commands.filter((c) => c.type === 'checkpoint' && c.writeAhead === true).length;
  const after = commands.filter((c) => c.type === 'checkpoint' && c.writeAhead !== true).length;
  if (ahead > 1 || after > 1) bad.push(['one-journal-write-per-event', `one event caused ${ahead} write-ahead and ${after} other journal writes of the same snapshot`]);
  // docs/durability.md: an undo that settles (acknowledged, or given up) is journaled at
  // once, so a coordinator restored after a crash neither sends it again nor tries it anew.
  // A saga that ends or parks in the same transition is written with its outcome or its
  // dead letter instead.
  if (next.value !== 'committed' && next.value !== 'compensated' && next.value !== 'compensationFailed' && !commands.some((c) => c.type === 'checkpoint')) {
    for (const p of def.steps) {
      const was = (prev.context.steps[p.index] as StepState).status;
      const now = (next.context.steps[p.index] as StepState).status;
      if (was !== now && (now === 'compensated' || now === 'compensationFailed')) {
        bad.push(['settled-undo-is-journaled', `the undo of '${p.id}' settled (${now}) and no journal write followed`]);
      }
    }
  }
  // docs/durability.md: a saga that commits with nothing to undo costs its coordinator two
  // journal writes, the intent and the outcome: the event that commits it writes no
  // checkpoint (the outcome is the saga's own write).
  if (prev.value !== 'committed' && next.value === 'committed' && ahead + after > 0 && !commands.some((c) => c.type === 'compensate') && def.steps.every((p) => (ghost[p.id] as GhostStep).compSent === 0)) {
    bad.push(['clean-commit-writes-no-checkpoint', `the event that commits the saga, with nothing undone, also wrote ${ahead + after} checkpoint(s)`]);
  }
  // docs/guide.md: a step whose attempt timed out "is in doubt and will be undone": the
  // join never keeps it. Read as the saga commits (at once, or deciding to).
  if (prev.context.decision === undefined && (next.value === 'committed' || next.context.decision === 'commit')) {
    const kept = def.steps.filter((p) => {
      const st = stepOf(def, next.context, p.id) as StepState;
      return next.context.decision === undefined ? st.status === 'committed' : st.kept;
    });
    for (const p of kept) {
      if ((ghost[p.id] as GhostStep).timedOut) bad.push(['timed-out-step-is-never-kept', `the saga commits keeping step '${p.id}', whose current attempt timed out (a timed-out step is in doubt and undone)`]);
    }
  }
  const order = def.compensationOrder;
  for (const c of commands) {
    const p = c.type === 'do' || c.type === 'compensate' ? def.stepsById.get(c.stepId) : undefined;
    if (c.type === 'compensate' && p !== undefined && order !== 'parallel') {
      for (const d of p.dependents) {
        if (holdsEffect(ghost[d] as GhostStep)) {
          bad.push(['staged-compensation-in-reverse-order', `compensate '${c.stepId}' sent while '${d}', which runs after it, may still hold an effect`]);
        }
      }
    }
    // docs/patterns.md, "Compensation order". Sequential: one undo at a time, the last step
    // to complete first, after every step whose success the saga never heard (the order
    // read from the replies, in the ghost). Steps the join keeps are not undone at all.
    if (c.type === 'compensate' && p !== undefined && order === 'sequential') {
      const mine = (ghost[c.stepId] as GhostStep).doneAt;
      const kept = (id: string) => next.context.decision === 'commit' && (stepOf(def, next.context, id) as StepState).kept;
      const ahead = def.steps.filter((o) => {
        const g = ghost[o.id] as GhostStep;
        return o.id !== c.stepId && mine > 0 && holdsEffect(g) && !kept(o.id) && (g.doneAt === 0 || g.doneAt > mine);
      });
      if (ahead.length > 0) {
        bad.push(['sequential-undo-last-completed-first', `compensate '${c.stepId}' (completed ${mine}) sent while [${ahead.map((o) => o.id)}], which completed later or never reported, may still hold an effect`]);
      }
    }
    // Parallel: every step to undo gets its compensation when the saga decides; none waits
    // for another, so no first compensate goes out later.
    if (c.type === 'compensate' && p !== undefined && order === 'parallel' && prev.context.decision !== undefined && (ghost[c.stepId] as GhostStep).compSent === 0) {
      bad.push(['parallel-undoes-at-once', `the first compensate of '${c.stepId}' went out after the decision, not with it`]);
    }
    // Compensations go to the steps that committed or may have: not to one whose requests
    // the coordinator holds proof took no effect.
    if (c.type === 'compensate' && p !== undefined) {
      const g = ghost[c.stepId] as GhostStep;
      if (g.proven && g.effect === 'none') bad.push(['compensates-only-what-may-have-applied', `compensate '${c.stepId}' sent although its do failed with proof that it took no effect`]);
    }
    if (c.type === 'do' && p !== undefined) {
      if ((ghost[c.stepId] as GhostStep).effect === 'undone') bad.push(['no-do-after-compensation', `do '${c.stepId}' sent after it was compensated`]);
      if (prev.context.decision !== undefined) bad.push(['no-do-after-the-decision', `do '${c.stepId}' sent after the saga decided to ${prev.context.decision}`]);
      for (const dep of p.after) {
        if ((ghost[dep] as GhostStep).effect !== 'yes') bad.push(['stages-run-in-order', `do '${c.stepId}' sent before '${dep}' committed`]);
      }
    }
  }
  return bad;
}

const cmdsOf = (actions: readonly { type: string; params?: unknown }[]) =>
  actions.filter((a) => a.type === 'effect').map((a) => a.params as SagaCommand);

/** A short name of a saga's shape, for reports. */
export function shapeOf(def: SagaDefinition): string {
  const join = def.join.kind === 'quorum' ? `quorum(${def.join.n})` : def.join.kind;
  const staged = def.steps.some((p) => p.after.length > 0);
  const layout = staged ? def.steps.map((p) => (p.after.length ? `${p.id}<-${p.after.join('+')}` : p.id)).join(' ') : `${def.steps.length} parallel`;
  const retries = [...new Set(def.steps.map((p) => `${p.retries}/${p.compensation.retries}`))].join(',');
  const order = def.compensationOrder === 'reverse' ? '' : `, undo ${def.compensationOrder}`;
  return `${def.name}: ${layout}, join ${join}, retries do/comp ${retries}${order}`;
}

/**
 * Traverses every reachable state of the saga machine built from `def`, breadth first,
 * and checks the guarantee on each. Budgets come from the definition: keep step and
 * compensation retries small (0 to 2) so the space stays finite and small.
 */
export function exploreSaga(def: SagaDefinition, options: ModelOptions = {}): ModelReport {
  const maxStates = options.maxStates ?? 400_000;
  const maxViolations = options.maxViolations ?? 5;
  const machine = createSagaMachine(def, { keyOf: (sagaId, stepId) => `${sagaId}/${stepId}` });
  const stepper = pureStepper(machine, { sagaId: 'model', input: null });
  const seen = new Map<string, Node>();
  const violations: ModelViolation[] = [];
  const reported = new Set<string>();
  let transitions = 0;
  const finals = { committed: 0, compensated: 0, compensationFailed: 0 };

  const pathTo = (key: string, last?: string): string[] => {
    const out: string[] = [];
    if (last !== undefined) out.push(last);
    let k: string | undefined = key;
    while (k !== undefined) {
      const n = seen.get(k) as Node;
      if (n.via !== undefined) out.push(n.via);
      k = n.parent;
    }
    return out.reverse();
  };
  const report = (bad: [string, string][], key: string, last?: string) => {
    for (const [property, message] of bad) {
      if (reported.has(property) || violations.length >= maxViolations) continue;
      reported.add(property);
      violations.push({ property, message, path: pathTo(key, last) });
    }
  };

  const input = options.input ?? null;
  const crashes = options.crashes ?? 0;
  const [s0, a0] = stepper.initial({ sagaId: 'model', input });
  const blank: Record<string, GhostStep> = {};
  for (const p of def.steps) blank[p.id] = { effect: 'none', unsure: false, compUnknown: false, abandoned: false, compSent: 0, proven: false, lastComp: undefined, doneAt: 0, timedOut: false };
  const snap0 = s0 as unknown as Snap;
  const g0 = nextGhost(def, snap0, snap0, blank, undefined, cmdsOf(a0));
  const classIds = options.symmetry !== false && crashes === 0 ? symmetryClasses(def) : [];
  const symmetric = classIds.length > 0;
  const index = new Map(def.steps.map((p, i) => [p.id, i] as const));
  const classes: Classes = classIds.map((c) => c.map((id) => index.get(id) as number));
  const j0: Journal = { journaled: undefined, written: undefined, crashesLeft: crashes };
  const keyOf = (snap: Snap, ghost: Readonly<Record<string, GhostStep>>, j: Journal) =>
    crashes === 0 ? serialize(def, snap, ghost, classes) : `${serialize(def, snap, ghost)}#${journalKey(def, j)}`;
  const k0 = keyOf(snap0, g0, j0);
  seen.set(k0, { snap: snap0, ghost: g0, journal: j0, parent: undefined, via: '(start)', depth: 0, parkings: [0, 0] });
  const queue: string[] = [k0];
  let truncated = false;
  const visit = (key: string, node: Node, snap1: Snap, g1: Record<string, GhostStep>, j1: Journal, via: string, ev?: SagaEvent): boolean => {
    const k1 = keyOf(snap1, g1, j1);
    if (!seen.has(k1)) {
      if (seen.size >= maxStates) {
        truncated = true;
        return k1 !== key;
      }
      const [entered, wakes] = node.parkings;
      const wasParked = node.snap.value === 'compensationFailed';
      const parkings = [entered + (snap1.value === 'compensationFailed' && !wasParked ? 1 : 0), wakes + (wasParked && ev?.type === 'COMPENSATION.DONE' ? 1 : 0)] as const;
      seen.set(k1, { snap: snap1, ghost: g1, journal: j1, parent: key, via, depth: node.depth + 1, parkings });
      queue.push(k1);
    }
    return k1 !== key;
  };

  for (let qi = 0; qi < queue.length; qi++) {
    const key = queue[qi] as string;
    const node = seen.get(key) as Node;
    const state = node.snap.value as MachineStateName;
    report(checkSagaState(def, node.snap, node.ghost, node.journal.crashesLeft < crashes, node.parkings), key);
    if (state === 'committed') finals.committed++;
    else if (state === 'compensated') finals.compensated++;
    else if (state === 'compensationFailed') finals.compensationFailed++;
    if (state === 'committed' || state === 'compensated') continue;
    let moved = false;
    for (const ev of eventsFor(def, node.snap, node.ghost, options.overload === true)) {
      const [s1, actions] = stepper.next(node.snap as never, ev);
      transitions++;
      const snap1 = s1 as unknown as Snap;
      const commands = cmdsOf(actions);
      // The event changes the world first (a reply arrived); then the commands it caused go out.
      const gEv = nextGhost(def, node.snap, snap1, node.ghost, ev, []);
      report(checkCommands(def, gEv, node.snap, commands, snap1), key, label(ev));
      const g1 = nextGhost(def, snap1, snap1, gEv, undefined, commands);
      if (visit(key, node, snap1, g1, journalAfter(node.journal, snap1, commands), label(ev), ev)) moved = true;
    }
    if (node.journal.crashesLeft > 0) {
      // The coordinator dies; a new one restores the saga from what its journal holds.
      const froms = node.journal.journaled === node.journal.written ? [node.journal.journaled] : [node.journal.journaled, node.journal.written];
      const inFlight = def.steps.filter((p) => {
        const st = node.snap.context.steps[p.index] as StepState;
        return st.status === 'compensating' && !st.waiting;
      });
      for (const from of froms) {
        // Compensations in flight when it died may still land, or not.
        for (const landed of inFlight.length > 0 ? [false, true] : [false]) {
          const g: Record<string, GhostStep> = {};
          for (const p of def.steps) {
            const cur = node.ghost[p.id] as GhostStep;
            const undone = landed && inFlight.includes(p);
            // The new coordinator knows only its journal: no proof the old one heard carries over.
            // A request it sent (any step with an effect, or with proof of none) is one the new
            // coordinator cannot account for: a failure of it proves nothing any more.
            const sent = cur.effect !== 'none' || cur.proven;
            // Nor does a success it heard and did not journal: the step's place in the order
            // of completion is what the journal holds.
            const restored = from?.context.steps[p.index] as StepState | undefined;
            const doneAt = (restored?.committedSeq ?? 0) > 0 ? cur.doneAt : 0;
            // A timeout it did not journal is one it never saw: it may send the do again and keep it.
            const timedOut = cur.timedOut && restored?.status !== undefined && restored.status !== 'pending' && restored.status !== 'dispatched';
            g[p.id] = undone ? { ...cur, effect: 'undone', unsure: false, compUnknown: false, proven: false, doneAt, timedOut } : { ...cur, unsure: cur.unsure || sent, proven: false, doneAt, timedOut };
          }
          const [s1, actions] = from === undefined ? stepper.initial({ sagaId: 'model', input, recovered: true }) : stepper.next(from as never, { type: 'RECOVER' });
          transitions++;
          const snap1 = s1 as unknown as Snap;
          const commands = cmdsOf(actions);
          const g1 = nextGhost(def, snap1, snap1, g, undefined, commands);
          const j1 = journalAfter({ journaled: from, written: from, crashesLeft: node.journal.crashesLeft - 1 }, snap1, commands);
          const via = `coordinator crashes${landed ? ' (its compensations in flight land)' : ''}; a new one recovers from ${from === undefined ? 'the intent' : from === node.journal.written && from !== node.journal.journaled ? 'the last journal write' : 'the last write-ahead journal write'}`;
          if (visit(key, node, snap1, g1, j1, via)) moved = true;
        }
      }
    }
    if (!moved && state !== 'compensationFailed') {
      report([['no-dead-end', `the saga is stuck in ${state}: no event it can still receive moves it`]], key);
    }
  }
  return { shape: shapeOf(def), states: seen.size, transitions, paths: seen.size, finals, violations, truncated, symmetry: symmetric, symmetryClasses: classIds };
}

/** What the journal holds after a transition: write-ahead checkpoints land before what follows them is sent. */
function journalAfter(j: Journal, snap: Snap, commands: readonly SagaCommand[]): Journal {
  let next = j;
  for (const c of commands) {
    if (c.type !== 'checkpoint') continue;
    next = c.writeAhead === true ? { ...next, journaled: snap, written: snap } : { ...next, written: snap };
  }
  // A parked saga is written with its dead letter.
  if (snap.value === 'compensationFailed') next = { ...next, written: snap };
  return next;
}

function journalKey(def: SagaDefinition, j: Journal): string {
  const one = (s: Snap | undefined) =>
    s === undefined
      ? '-'
      : `${String(s.value)}:${def.steps
          .map((p) => {
            const st = s.context.steps[p.index] as StepState;
            return `${st.status}${st.attempt}${st.waiting ? 'w' : ''}${st.tainted ? 't' : ''}${st.undo ? 'u' : ''}${st.compAttempt}`;
          })
          .join(',')}`;
  return `${one(j.journaled)}|${one(j.written)}|${j.crashesLeft}`;
}

/** Renders a violation as text a test failure can show. */
export function explainModelViolation(v: ModelViolation): string {
  return `${v.property}: ${v.message}\n  path (${v.path.length} events):\n${v.path.map((e, i) => `    ${String(i + 1).padStart(3)}. ${e}`).join('\n')}`;
}
