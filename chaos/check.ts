/**
 * The chaos checker: a pure function from what a run left behind (the started log, the
 * final record of every saga, the ledger of effects, the kill events) to a report of
 * every way the promise was broken. The promise: every saga ends committed, compensated,
 * or parked listing every effect that remains; never half-committed.
 *
 * Key state comes from the ledger, in file order: a key is active after an `apply` and
 * inactive after an `undo`.
 *
 * Violations:
 *  1. compensatedWithEffects     a compensated saga with a key still active
 *  2. releasedEffectsLeft        a committed saga with an active key of a step it did not keep
 *  3. committedMissingEffect     a committed saga whose kept step's key is not active
 *  4. unfinished                 a saga not ended after the final recovery (running, no record
 *                                although the ledger has effects for it, an effect of a saga
 *                                nobody started, or the final phase's time bound exceeded)
 *  5. doubleApply                an apply of an active key whose earlier apply's process was
 *                                not SIGKILLed before it (re-runs after a crash are counted
 *                                as reRunsAfterCrash instead)
 *     applyAfterUndo             an apply of a key after its undo, whatever the outcome
 *  6. parkedUnlisted             a parked saga with an active effect missing from `remaining`
 *                                (checked before the operator retry, and again at the end for
 *                                a saga still parked)
 *     retriedCompensatedWithEffects  a saga the operator retried that ended compensated with
 *                                an effect still active
 *     parkedWithoutDeadLetter    a saga parked in compensation-failed without a dead letter
 */

/** One effect in the ledger. File order is the order of effects across processes. */
export interface LedgerLine {
  readonly t: number;
  readonly pid: number;
  readonly op: 'apply' | 'undo';
  readonly worker: string;
  readonly sagaId: string;
  readonly stepId: string;
  readonly key: string;
  readonly attempt: number;
}

/** Appended (fsynced) by a coordinator before it calls run(). */
export interface StartedEntry {
  readonly sagaId: string;
  readonly saga: string;
  readonly input?: unknown;
  readonly slot: number;
}

/** What a run() call ended with, as its coordinator saw it (if it lived to see it). */
export interface RunEvent {
  readonly t: number;
  readonly sagaId: string;
  readonly slot: number;
  readonly status?: string;
  /** The error code when run() rejected. */
  readonly error?: string;
}

export interface KillEvent {
  readonly t: number;
  /** e.g. `host-2`, `coordinator-0`. */
  readonly what: string;
  readonly pid: number;
  readonly phase?: string;
}

export interface RemainingRef {
  readonly stepId: string;
  readonly idempotencyKey: string;
  readonly why?: string;
}

/** A saga outcome reduced to what the checker needs. */
export type FinalOutcome =
  | { readonly status: 'committed'; readonly results: Readonly<Record<string, { readonly key?: string }>>; readonly released: readonly string[] }
  | { readonly status: 'compensated'; readonly compensated?: readonly string[] }
  | { readonly status: 'compensation-failed'; readonly remaining: readonly RemainingRef[]; readonly decision: 'commit' | 'abort' };

/** The final record of one started saga, read from its coordinator slot's store. */
export interface FinalRecord {
  readonly sagaId: string;
  /** False when the store has no record of it. */
  readonly found: boolean;
  /** The machine state: committed, compensated, compensationFailed, or a running state. */
  readonly state?: string;
  readonly outcome?: FinalOutcome;
  /** Per-step status. */
  readonly steps?: Readonly<Record<string, string>>;
  /** The record could not be read (error code). */
  readonly error?: string;
}

/** A saga found parked in the final phase, before the operator retried it. */
export interface ParkedEntry {
  readonly sagaId: string;
  /** Whether its dead letter existed. */
  readonly deadLetter: boolean;
  readonly remaining: readonly RemainingRef[];
  readonly decision?: 'commit' | 'abort';
  /** With decision 'commit': the steps the saga keeps (their effects legitimately remain). */
  readonly keptSteps: readonly string[];
  /** How many ledger lines had been written when `remaining` was read. */
  readonly ledgerLines: number;
  /** What the one operator retry ended with. */
  readonly retry?: { readonly status: string } | { readonly error: string };
}

/** A saga the final phase was still waiting for when its time bound expired. */
export interface TimedOutEntry {
  readonly sagaId: string;
  readonly state?: string;
}

/**
 * A saga that parked during the run and that its coordinator resolved as an operator:
 * undo by hand what the ledger held (`undo` lines with `attempt` 0), resolve, and on a
 * review look and undo again. Its effects are checked like any other saga's.
 */
export interface ResolveEvent {
  readonly t: number;
  readonly sagaId: string;
  readonly slot: number;
  /** The outcome's status, or the error code the last resolve call ended with. */
  readonly result: string;
  /** Resolve calls that asked for a review. */
  readonly reviews: number;
  /** Effects the operator undid by hand. */
  readonly undos: number;
}

export interface CheckInput {
  readonly started: readonly StartedEntry[];
  readonly records: readonly FinalRecord[];
  readonly ledger: readonly LedgerLine[];
  readonly kills: readonly KillEvent[];
  readonly natsRestarts?: readonly { readonly t: number }[];
  readonly parked?: readonly ParkedEntry[];
  readonly runEvents?: readonly RunEvent[];
  readonly resolves?: readonly ResolveEvent[];
  readonly timedOut?: readonly TimedOutEntry[];
  /** Wall time of the whole run. */
  readonly durationMs?: number;
  /** Length of the fault window (sagas were started during it). */
  readonly windowMs?: number;
  /** Examples kept per violation kind. Default 5. */
  readonly maxExamples?: number;
}

export const VIOLATION_KINDS = [
  'compensatedWithEffects',
  'releasedEffectsLeft',
  'committedMissingEffect',
  'unfinished',
  'doubleApply',
  'applyAfterUndo',
  'parkedUnlisted',
  'retriedCompensatedWithEffects',
  'parkedWithoutDeadLetter',
] as const;
export type ViolationKind = (typeof VIOLATION_KINDS)[number];

export interface ViolationSummary {
  readonly count: number;
  readonly examples: Record<string, unknown>[];
}

export interface CheckReport {
  readonly ok: boolean;
  readonly violationCount: number;
  readonly violations: Record<ViolationKind, ViolationSummary>;
  readonly totals: {
    readonly sagasStarted: number;
    readonly withRecord: number;
    /** No record and no effect: run() rejected (or the coordinator died) before anything was dispatched. */
    readonly noRecord: number;
    /** Final states after the operator retries. */
    readonly committed: number;
    readonly compensated: number;
    readonly stillParked: number;
    readonly unfinished: number;
    /** Sagas found parked in the final phase, before the operator retried them. */
    readonly parked: number;
    readonly afterRetry: Record<string, number>;
    /** Sagas resolved by an operator during the run: by result, with the reviews asked and the effects undone by hand. */
    readonly resolvedDuringRun: { readonly byResult: Record<string, number>; readonly reviews: number; readonly undosByHand: number };
    /** What run() resolved with, as the coordinators saw it. */
    readonly runOutcomes: Record<string, number>;
    readonly runRejections: Record<string, number>;
    readonly kills: { readonly total: number; readonly hosts: number; readonly coordinators: number; readonly byPhase: Record<string, number> };
    readonly natsRestarts: number;
    readonly ledger: { readonly lines: number; readonly applies: number; readonly undos: number; readonly keys: number };
    /** Applies of an active key after the process of the earlier apply was SIGKILLed (the documented at-least-once window). */
    readonly reRunsAfterCrash: number;
    readonly durationS: number | undefined;
    readonly windowS: number | undefined;
    readonly throughput: { readonly startedPerS: number | undefined; readonly endedPerS: number | undefined };
  };
}

const FINISHED = new Set(['committed', 'compensated', 'compensationFailed']);

interface KeyState {
  readonly key: string;
  readonly sagaId: string;
  readonly stepId: string;
  readonly worker: string;
  /** Indices into the ledger. */
  readonly lines: number[];
  active: boolean;
  undone: boolean;
  lastApply: LedgerLine | undefined;
}

const inc = (m: Record<string, number>, k: string, by = 1) => {
  m[k] = (m[k] ?? 0) + by;
};
const round = (n: number, d = 1) => Math.round(n * 10 ** d) / 10 ** d;

/** Checks a chaos run. Pure: reads only its input. */
export function check(input: CheckInput): CheckReport {
  const maxExamples = input.maxExamples ?? 5;
  const counts = Object.fromEntries(VIOLATION_KINDS.map((k) => [k, 0])) as Record<ViolationKind, number>;
  const examples = Object.fromEntries(VIOLATION_KINDS.map((k) => [k, [] as Record<string, unknown>[]])) as Record<ViolationKind, Record<string, unknown>[]>;
  const violation = (kind: ViolationKind, example: () => Record<string, unknown>) => {
    counts[kind]++;
    if (examples[kind].length < maxExamples) examples[kind].push(example());
  };

  const startedById = new Map<string, StartedEntry>();
  for (const s of input.started) startedById.set(s.sagaId, s);
  const records = new Map<string, FinalRecord>();
  for (const r of input.records) records.set(r.sagaId, r);
  const runOf = new Map<string, string>();
  for (const e of input.runEvents ?? []) runOf.set(e.sagaId, e.error !== undefined ? `rejected ${e.error}` : `resolved ${e.status ?? '?'}`);
  const parked = new Map<string, ParkedEntry>();
  for (const p of input.parked ?? []) parked.set(p.sagaId, p);
  const natsRestarts = input.natsRestarts ?? [];
  const ledger = input.ledger;

  // Replay the ledger: key states, rule 5.
  const keys = new Map<string, KeyState>();
  const keysBySaga = new Map<string, KeyState[]>();
  let applies = 0;
  let undos = 0;
  let reRunsAfterCrash = 0;
  const lineView = (i: number) => ({ line: i, ...(ledger[i] as LedgerLine) });
  for (let i = 0; i < ledger.length; i++) {
    const line = ledger[i] as LedgerLine;
    let st = keys.get(line.key);
    if (st === undefined) {
      st = { key: line.key, sagaId: line.sagaId, stepId: line.stepId, worker: line.worker, lines: [], active: false, undone: false, lastApply: undefined };
      keys.set(line.key, st);
      const list = keysBySaga.get(line.sagaId) ?? [];
      list.push(st);
      keysBySaga.set(line.sagaId, list);
    }
    st.lines.push(i);
    if (line.op === 'apply') {
      applies++;
      if (st.undone) {
        const undo = [...st.lines].reverse().find((j) => (ledger[j] as LedgerLine).op === 'undo');
        violation('applyAfterUndo', () => ({
          sagaId: line.sagaId,
          saga: startedById.get(line.sagaId)?.saga,
          stepId: line.stepId,
          key: line.key,
          undo: undo === undefined ? undefined : lineView(undo),
          apply: lineView(i),
          outcome: records.get(line.sagaId)?.outcome?.status ?? records.get(line.sagaId)?.state,
        }));
      } else if (st.active && st.lastApply !== undefined) {
        const earlier = st.lastApply;
        const killed = input.kills.some((k) => k.pid === earlier.pid && k.t <= line.t);
        if (killed) reRunsAfterCrash++;
        else {
          violation('doubleApply', () => ({
            sagaId: line.sagaId,
            saga: startedById.get(line.sagaId)?.saga,
            stepId: line.stepId,
            key: line.key,
            first: earlier,
            second: lineView(i),
            samePid: earlier.pid === line.pid,
            natsRestartBetween: natsRestarts.some((r) => r.t >= earlier.t && r.t <= line.t),
          }));
        }
      }
      st.active = true;
      st.lastApply = line;
    } else {
      undos++;
      st.active = false;
      st.undone = true;
    }
  }

  /** Whether a key was active once the first `cutoff` ledger lines had been written. */
  const activeAt = (st: KeyState, cutoff: number): boolean => {
    let active = false;
    for (const i of st.lines) {
      if (i >= cutoff) break;
      active = (ledger[i] as LedgerLine).op === 'apply';
    }
    return active;
  };
  const effectView = (st: KeyState) => ({ stepId: st.stepId, worker: st.worker, key: st.key, lines: st.lines.slice(-4).map(lineView) });

  // Effects of sagas nobody started.
  for (const [sagaId, list] of keysBySaga) {
    if (startedById.has(sagaId)) continue;
    violation('unfinished', () => ({ sagaId, reason: 'effects of a saga not in the started log', effects: list.map(effectView) }));
  }

  const timedOut = new Map((input.timedOut ?? []).map((t) => [t.sagaId, t]));
  const unfinishedIds = new Set<string>();
  const finalStates: Record<string, number> = {};
  let withRecord = 0;
  let noRecord = 0;

  // Parked sagas before the operator retry (rule 6).
  for (const p of parked.values()) {
    if (!p.deadLetter) violation('parkedWithoutDeadLetter', () => ({ sagaId: p.sagaId, saga: startedById.get(p.sagaId)?.saga, remaining: p.remaining }));
    const listed = new Set(p.remaining.map((r) => r.idempotencyKey));
    const kept = new Set(p.keptSteps);
    const unlisted = (keysBySaga.get(p.sagaId) ?? []).filter((st) => activeAt(st, p.ledgerLines) && !listed.has(st.key) && !kept.has(st.stepId));
    if (unlisted.length > 0) {
      violation('parkedUnlisted', () => ({
        sagaId: p.sagaId,
        saga: startedById.get(p.sagaId)?.saga,
        phase: 'before operator retry',
        decision: p.decision,
        remaining: p.remaining,
        unlisted: unlisted.map(effectView),
      }));
    }
  }

  for (const s of input.started) {
    const rec = records.get(s.sagaId);
    const mine = keysBySaga.get(s.sagaId) ?? [];
    const active = mine.filter((k) => k.active);
    const unfinished = (reason: string, extra: Record<string, unknown> = {}) => {
      unfinishedIds.add(s.sagaId);
      violation('unfinished', () => ({ sagaId: s.sagaId, saga: s.saga, reason, ...extra, run: runOf.get(s.sagaId) ?? 'no answer seen', activeEffects: active.map(effectView) }));
    };
    if (rec === undefined || !rec.found) {
      if (rec?.error !== undefined) unfinished('its record could not be read', { error: rec.error });
      else if (mine.length > 0) unfinished('no record, but the ledger has effects for it', { effects: mine.length });
      else noRecord++;
      continue;
    }
    withRecord++;
    const t = timedOut.get(s.sagaId);
    if (rec.state === undefined || !FINISHED.has(rec.state) || rec.outcome === undefined) {
      unfinished(rec.state === undefined || !FINISHED.has(rec.state) ? `still ${rec.state ?? 'without a state'}` : 'finished without an outcome', {
        ...(t !== undefined ? { finalPhaseTimeBoundExceeded: true } : {}),
      });
      continue;
    }
    if (t !== undefined) unfinished('the final phase gave up waiting for it (it ended later)', { stateWhenGivenUp: t.state, finalState: rec.state });
    const o = rec.outcome;
    inc(finalStates, o.status);
    switch (o.status) {
      case 'committed': {
        const keptKey = new Map<string, string | undefined>(Object.entries(o.results).map(([id, r]) => [id, r?.key]));
        for (const [stepId, key] of keptKey) {
          const stepKeys = mine.filter((k) => k.stepId === stepId);
          const ok = key !== undefined ? keys.get(key)?.active === true : stepKeys.some((k) => k.active);
          if (!ok) {
            violation('committedMissingEffect', () => ({
              sagaId: s.sagaId,
              saga: s.saga,
              stepId,
              key,
              retriedByOperator: parked.has(s.sagaId),
              effects: stepKeys.map(effectView),
            }));
          }
        }
        for (const st of active) {
          const kept = keptKey.has(st.stepId) && (keptKey.get(st.stepId) === undefined || keptKey.get(st.stepId) === st.key);
          if (!kept) {
            violation('releasedEffectsLeft', () => ({
              sagaId: s.sagaId,
              saga: s.saga,
              released: o.released.includes(st.stepId),
              kept: [...keptKey.keys()],
              retriedByOperator: parked.has(s.sagaId),
              effect: effectView(st),
            }));
          }
        }
        break;
      }
      case 'compensated':
        if (active.length > 0) {
          const kind: ViolationKind = parked.has(s.sagaId) ? 'retriedCompensatedWithEffects' : 'compensatedWithEffects';
          violation(kind, () => ({ sagaId: s.sagaId, saga: s.saga, compensated: o.compensated, effects: active.map(effectView) }));
        }
        break;
      case 'compensation-failed': {
        const listed = new Set(o.remaining.map((r) => r.idempotencyKey));
        const listedSteps = new Set(o.remaining.map((r) => r.stepId));
        const kept = new Set(
          o.decision === 'commit'
            ? Object.entries(rec.steps ?? {})
                .filter(([id, st]) => st === 'committed' && !listedSteps.has(id))
                .map(([id]) => id)
            : [],
        );
        const unlisted = active.filter((st) => !listed.has(st.key) && !kept.has(st.stepId));
        if (unlisted.length > 0) {
          violation('parkedUnlisted', () => ({ sagaId: s.sagaId, saga: s.saga, phase: 'at the end', decision: o.decision, remaining: o.remaining, unlisted: unlisted.map(effectView) }));
        }
        break;
      }
    }
  }
  // Time-bound misses of sagas that are not in the started log (should not happen) still count.
  for (const t of timedOut.values()) {
    if (!startedById.has(t.sagaId) && !unfinishedIds.has(t.sagaId)) violation('unfinished', () => ({ sagaId: t.sagaId, reason: 'the final phase gave up waiting for it', state: t.state }));
  }

  const afterRetry: Record<string, number> = {};
  for (const p of parked.values()) {
    if (p.retry === undefined) inc(afterRetry, 'not retried');
    else if ('status' in p.retry) inc(afterRetry, p.retry.status);
    else inc(afterRetry, `error ${p.retry.error}`);
  }
  const resolvedDuringRun = { byResult: {} as Record<string, number>, reviews: 0, undosByHand: 0 };
  for (const r of input.resolves ?? []) {
    inc(resolvedDuringRun.byResult, r.result);
    resolvedDuringRun.reviews += r.reviews;
    resolvedDuringRun.undosByHand += r.undos;
  }
  const runOutcomes: Record<string, number> = {};
  const runRejections: Record<string, number> = {};
  for (const e of input.runEvents ?? []) {
    if (e.error !== undefined) inc(runRejections, e.error);
    else if (e.status !== undefined) inc(runOutcomes, e.status);
  }
  const byPhase: Record<string, number> = {};
  for (const k of input.kills) inc(byPhase, k.phase ?? 'unknown');
  const windowS = input.windowMs === undefined ? undefined : input.windowMs / 1000;
  const ended = Object.values(runOutcomes).reduce((a, b) => a + b, 0);

  const violations = Object.fromEntries(VIOLATION_KINDS.map((k) => [k, { count: counts[k], examples: examples[k] }])) as Record<ViolationKind, ViolationSummary>;
  const violationCount = VIOLATION_KINDS.reduce((a, k) => a + counts[k], 0);
  return {
    ok: violationCount === 0,
    violationCount,
    violations,
    totals: {
      sagasStarted: input.started.length,
      withRecord,
      noRecord,
      committed: finalStates.committed ?? 0,
      compensated: finalStates.compensated ?? 0,
      stillParked: finalStates['compensation-failed'] ?? 0,
      unfinished: unfinishedIds.size,
      parked: parked.size,
      afterRetry,
      resolvedDuringRun,
      runOutcomes,
      runRejections,
      kills: {
        total: input.kills.length,
        hosts: input.kills.filter((k) => k.what.startsWith('host')).length,
        coordinators: input.kills.filter((k) => k.what.startsWith('coordinator')).length,
        byPhase,
      },
      natsRestarts: natsRestarts.length,
      ledger: { lines: ledger.length, applies, undos, keys: keys.size },
      reRunsAfterCrash,
      durationS: input.durationMs === undefined ? undefined : round(input.durationMs / 1000),
      windowS: windowS === undefined ? undefined : round(windowS),
      throughput: {
        startedPerS: windowS ? round(input.started.length / windowS) : undefined,
        endedPerS: windowS ? round(ended / windowS) : undefined,
      },
    },
  };
}

/** Reduces a scatter-saga outcome to what {@link check} needs. */
export function trimOutcome(
  o:
    | { status: 'committed'; results: Readonly<Record<string, unknown>>; released: readonly string[] }
    | { status: 'compensated'; compensated: readonly string[] }
    | { status: 'compensation-failed'; remaining: readonly RemainingRef[]; decision: 'commit' | 'abort' }
    | undefined,
): FinalOutcome | undefined {
  if (o === undefined) return undefined;
  switch (o.status) {
    case 'committed': {
      const results: Record<string, { key?: string }> = {};
      for (const [id, r] of Object.entries(o.results)) {
        const key = (r as { key?: unknown } | null)?.key;
        results[id] = typeof key === 'string' ? { key } : {};
      }
      return { status: 'committed', results, released: [...o.released] };
    }
    case 'compensated':
      return { status: 'compensated', compensated: [...o.compensated] };
    case 'compensation-failed':
      return {
        status: 'compensation-failed',
        remaining: o.remaining.map((r) => ({ stepId: r.stepId, idempotencyKey: r.idempotencyKey, ...(r.why !== undefined ? { why: r.why } : {}) })),
        decision: o.decision,
      };
  }
}

/** A human summary of a report. */
export function formatReport(report: CheckReport, extra: Record<string, unknown> = {}): string {
  const t = report.totals;
  const out: string[] = [];
  out.push(report.ok ? 'chaos: OK, no violation' : `chaos: ${report.violationCount} VIOLATION(S)`);
  for (const [k, v] of Object.entries(extra)) out.push(`  ${k}: ${typeof v === 'string' ? v : JSON.stringify(v)}`);
  out.push(`  sagas started ${t.sagasStarted} (with a record ${t.withRecord}, no record and no effect ${t.noRecord})`);
  out.push(`  final: committed ${t.committed}, compensated ${t.compensated}, still parked ${t.stillParked}, unfinished ${t.unfinished}`);
  out.push(`  parked before the operator retry ${t.parked}; after one retry: ${JSON.stringify(t.afterRetry)}`);
  out.push(`  resolved by an operator during the run: ${JSON.stringify(t.resolvedDuringRun.byResult)}, ${t.resolvedDuringRun.reviews} review(s), ${t.resolvedDuringRun.undosByHand} effect(s) undone by hand`);
  out.push(`  run() resolved: ${JSON.stringify(t.runOutcomes)}; rejected: ${JSON.stringify(t.runRejections)}`);
  out.push(`  kills ${t.kills.total} (hosts ${t.kills.hosts}, coordinators ${t.kills.coordinators}, by phase ${JSON.stringify(t.kills.byPhase)}), nats-server restarts ${t.natsRestarts}`);
  out.push(`  ledger: ${t.ledger.applies} applies, ${t.ledger.undos} undos, ${t.ledger.keys} keys; re-runs after a host crash ${t.reRunsAfterCrash}`);
  out.push(`  duration ${t.durationS ?? '?'} s (fault window ${t.windowS ?? '?'} s); started ${t.throughput.startedPerS ?? '?'}/s, ended ${t.throughput.endedPerS ?? '?'}/s`);
  for (const kind of VIOLATION_KINDS) {
    const v = report.violations[kind];
    out.push(`  ${kind}: ${v.count}`);
    for (const e of v.examples.slice(0, 3)) out.push(`      e.g. ${JSON.stringify(e)}`);
  }
  return out.join('\n');
}
