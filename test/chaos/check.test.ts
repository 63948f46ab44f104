/**
 * The chaos checker on hand-made runs: a clean run has no violation, and each kind of
 * violation, planted into that run, is found (and nothing else is).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { check, formatReport, trimOutcome, VIOLATION_KINDS } from '../../chaos/check.ts';
import type { CheckInput, CheckReport, FinalRecord, KillEvent, LedgerLine, ParkedEntry, RunEvent, StartedEntry } from '../../chaos/check.ts';
import { readJsonl, readJsonlWithOffsets } from '../../chaos/common.ts';

interface Fixture {
  started: StartedEntry[];
  records: FinalRecord[];
  ledger: LedgerLine[];
  kills: KillEvent[];
  natsRestarts: { t: number }[];
  parked: ParkedEntry[];
  runEvents: RunEvent[];
  timedOut: { sagaId: string; state?: string }[];
}

const HOST_A = 11;
const HOST_B = 12;

/**
 * A clean run of seven sagas:
 *  s1 trip committed; s2 compensated (one effect undone, one blind undo of an in-doubt step);
 *  s3 race committed with a released step; s4 parked, then compensated by the operator retry;
 *  s5 trip committed, its car step re-run after host A was SIGKILLed mid-step;
 *  s6 run() rejected before anything was dispatched (no record, no effect);
 *  s7 quorum parked with decision commit (two kept steps), still parked after the retry.
 */
function cleanRun(): Fixture {
  const ledger: LedgerLine[] = [];
  let t = 1_000;
  const add = (op: LedgerLine['op'], sagaId: string, stepId: string, key: string, pid = HOST_A) => {
    t += 10;
    ledger.push({ t, pid, op, worker: 'w', sagaId, stepId, key, attempt: 1 });
  };
  add('apply', 's1', 'flight', 'k1f');
  add('apply', 's1', 'hotel', 'k1h');
  add('apply', 's1', 'car', 'k1c');
  add('apply', 's2', 'flight', 'k2f');
  add('undo', 's2', 'flight', 'k2f');
  add('undo', 's2', 'car', 'k2c');
  add('apply', 's3', 'a', 'k3a');
  add('apply', 's3', 'b', 'k3b');
  add('undo', 's3', 'b', 'k3b');
  add('apply', 's4', 'flight', 'k4f');
  add('apply', 's4', 'hotel', 'k4h');
  add('undo', 's4', 'hotel', 'k4h');
  add('apply', 's7', 'a', 'k7a', HOST_B);
  add('apply', 's7', 'b', 'k7b', HOST_B);
  add('apply', 's7', 'c', 'k7c', HOST_B);
  add('apply', 's5', 'flight', 'k5f', HOST_B);
  add('apply', 's5', 'hotel', 'k5h', HOST_B);
  add('apply', 's5', 'car', 'k5c', HOST_A);
  const killAt = t + 5;
  add('apply', 's5', 'car', 'k5c', HOST_B); // the re-run after the crash of host A
  const parkedAt = ledger.length;
  add('undo', 's4', 'flight', 'k4f', HOST_B); // the operator retry

  const started: StartedEntry[] = [
    { sagaId: 's1', saga: 'trip', slot: 0 },
    { sagaId: 's2', saga: 'trip', slot: 0 },
    { sagaId: 's3', saga: 'race', slot: 1 },
    { sagaId: 's4', saga: 'trip', slot: 1 },
    { sagaId: 's5', saga: 'trip', slot: 0 },
    { sagaId: 's6', saga: 'trip', slot: 1 },
    { sagaId: 's7', saga: 'quote', slot: 0 },
  ];
  const records: FinalRecord[] = [
    { sagaId: 's1', found: true, state: 'committed', outcome: { status: 'committed', results: { flight: { key: 'k1f' }, hotel: { key: 'k1h' }, car: { key: 'k1c' } }, released: [] } },
    { sagaId: 's2', found: true, state: 'compensated', outcome: { status: 'compensated', compensated: ['flight', 'car'] } },
    { sagaId: 's3', found: true, state: 'committed', outcome: { status: 'committed', results: { a: { key: 'k3a' } }, released: ['b'] } },
    { sagaId: 's4', found: true, state: 'compensated', outcome: { status: 'compensated', compensated: ['flight', 'hotel'] } },
    { sagaId: 's5', found: true, state: 'committed', outcome: { status: 'committed', results: { flight: { key: 'k5f' }, hotel: { key: 'k5h' }, car: { key: 'k5c' } }, released: [] } },
    { sagaId: 's6', found: false },
    {
      sagaId: 's7',
      found: true,
      state: 'compensationFailed',
      steps: { a: 'committed', b: 'committed', c: 'compensationFailed' },
      outcome: { status: 'compensation-failed', remaining: [{ stepId: 'c', idempotencyKey: 'k7c', why: 'compensation-failed' }], decision: 'commit' },
    },
  ];
  const parked: ParkedEntry[] = [
    { sagaId: 's4', deadLetter: true, remaining: [{ stepId: 'flight', idempotencyKey: 'k4f' }], decision: 'abort', keptSteps: [], ledgerLines: parkedAt, retry: { status: 'compensated' } },
    { sagaId: 's7', deadLetter: true, remaining: [{ stepId: 'c', idempotencyKey: 'k7c' }], decision: 'commit', keptSteps: ['a', 'b'], ledgerLines: parkedAt, retry: { status: 'compensation-failed' } },
  ];
  return {
    started,
    records,
    ledger,
    kills: [
      { t: killAt, what: 'host-1', pid: HOST_A, phase: 'window' },
      { t: killAt + 1, what: 'coordinator-0', pid: 99, phase: 'window' },
    ],
    natsRestarts: [{ t: 1_005 }],
    parked,
    runEvents: [
      { t: 1, sagaId: 's1', slot: 0, status: 'committed' },
      { t: 2, sagaId: 's2', slot: 0, status: 'compensated' },
      { t: 3, sagaId: 's6', slot: 1, error: 'WORKER_NOT_HOSTED' },
      { t: 4, sagaId: 's4', slot: 1, status: 'compensation-failed' },
    ],
    timedOut: [],
  };
}

const run = (f: Fixture, extra: Partial<CheckInput> = {}): CheckReport => check({ ...f, durationMs: 12_000, windowMs: 10_000, ...extra });

/** The violation kinds found, with their counts (zeros left out). */
const found = (r: CheckReport): Record<string, number> => Object.fromEntries(Object.entries(r.violations).filter(([, v]) => v.count > 0).map(([k, v]) => [k, v.count]));

const setRecord = (f: Fixture, rec: FinalRecord) => {
  f.records = f.records.map((r) => (r.sagaId === rec.sagaId ? rec : r));
};
const removeLine = (f: Fixture, pred: (l: LedgerLine) => boolean) => {
  const i = f.ledger.findIndex(pred);
  expect(i).toBeGreaterThanOrEqual(0);
  f.ledger.splice(i, 1);
  for (const p of f.parked) if (p.ledgerLines > i) (p as { ledgerLines: number }).ledgerLines--;
};
const append = (f: Fixture, op: LedgerLine['op'], sagaId: string, stepId: string, key: string, pid = HOST_B) => {
  const last = f.ledger[f.ledger.length - 1] as LedgerLine;
  f.ledger.push({ t: last.t + 10, pid, op, worker: 'w', sagaId, stepId, key, attempt: 1 });
};

describe('the chaos checker', () => {
  it('finds nothing wrong in a clean run, and counts what happened', () => {
    const r = run(cleanRun());
    expect(found(r)).toEqual({});
    expect(r.ok).toBe(true);
    expect(r.violationCount).toBe(0);
    expect(r.totals).toMatchObject({
      sagasStarted: 7,
      withRecord: 6,
      noRecord: 1,
      committed: 3,
      compensated: 2,
      stillParked: 1,
      unfinished: 0,
      parked: 2,
      afterRetry: { compensated: 1, 'compensation-failed': 1 },
      runOutcomes: { committed: 1, compensated: 1, 'compensation-failed': 1 },
      runRejections: { WORKER_NOT_HOSTED: 1 },
      kills: { total: 2, hosts: 1, coordinators: 1, byPhase: { window: 2 } },
      natsRestarts: 1,
      ledger: { lines: 20, applies: 15, undos: 5, keys: 15 },
      reRunsAfterCrash: 1,
      durationS: 12,
      windowS: 10,
      throughput: { startedPerS: 0.7, endedPerS: 0.3 },
    });
    expect(formatReport(r)).toContain('chaos: OK, no violation');
  });

  it('1: a compensated saga with an effect left', () => {
    const f = cleanRun();
    removeLine(f, (l) => l.op === 'undo' && l.key === 'k2f');
    const r = run(f);
    expect(found(r)).toEqual({ compensatedWithEffects: 1 });
    expect(r.ok).toBe(false);
    expect(r.violations.compensatedWithEffects.examples[0]).toMatchObject({ sagaId: 's2', effects: [{ stepId: 'flight', key: 'k2f' }] });
    expect(formatReport(r)).toContain('1 VIOLATION(S)');
  });

  it('2: a committed saga with the effect of a released step left', () => {
    const f = cleanRun();
    removeLine(f, (l) => l.op === 'undo' && l.key === 'k3b');
    const r = run(f);
    expect(found(r)).toEqual({ releasedEffectsLeft: 1 });
    expect(r.violations.releasedEffectsLeft.examples[0]).toMatchObject({ sagaId: 's3', released: true, effect: { stepId: 'b', key: 'k3b' } });
  });

  it('2: a committed saga with an effect of a step it neither kept nor released', () => {
    const f = cleanRun();
    setRecord(f, { sagaId: 's3', found: true, state: 'committed', outcome: { status: 'committed', results: { a: { key: 'k3a' } }, released: [] } });
    append(f, 'apply', 's3', 'c', 'k3c');
    const r = run(f);
    expect(found(r)).toEqual({ releasedEffectsLeft: 1 });
    expect(r.violations.releasedEffectsLeft.examples[0]).toMatchObject({ sagaId: 's3', released: false, effect: { stepId: 'c' } });
  });

  it('2: a committed saga with a second key of a kept step left', () => {
    const f = cleanRun();
    append(f, 'apply', 's1', 'car', 'k1c-other');
    const r = run(f);
    expect(found(r)).toEqual({ releasedEffectsLeft: 1 });
  });

  it('3: a committed saga missing the effect of a kept step (undone, or never applied)', () => {
    const f = cleanRun();
    append(f, 'undo', 's1', 'hotel', 'k1h');
    removeLine(f, (l) => l.key === 'k5f');
    const r = run(f);
    expect(found(r)).toEqual({ committedMissingEffect: 2 });
    expect(r.violations.committedMissingEffect.examples.map((e) => [e.sagaId, e.stepId])).toEqual([
      ['s1', 'hotel'],
      ['s5', 'flight'],
    ]);
  });

  it('4: a saga still running after the final recovery', () => {
    const f = cleanRun();
    setRecord(f, { sagaId: 's2', found: true, state: 'compensating', steps: { flight: 'compensated', car: 'compensating' } });
    const r = run(f);
    expect(found(r)).toEqual({ unfinished: 1 });
    expect(r.totals.unfinished).toBe(1);
    expect(r.violations.unfinished.examples[0]).toMatchObject({ sagaId: 's2', reason: 'still compensating', run: 'resolved compensated' });
  });

  it('4: a saga without a record but with effects in the ledger', () => {
    const f = cleanRun();
    setRecord(f, { sagaId: 's1', found: false });
    const r = run(f);
    expect(found(r)).toEqual({ unfinished: 1 });
    expect(r.violations.unfinished.examples[0]).toMatchObject({ sagaId: 's1', reason: 'no record, but the ledger has effects for it' });
    // Without a record and without an effect, it is a rejected run(): not a violation.
    expect(run(cleanRun()).totals.noRecord).toBe(1);
  });

  it('4: effects of a saga nobody started, a record that could not be read, the final time bound exceeded', () => {
    const f = cleanRun();
    append(f, 'apply', 'ghost', 'flight', 'kg');
    setRecord(f, { sagaId: 's6', found: false, error: 'TIMEOUT' });
    f.timedOut = [{ sagaId: 's2', state: 'compensating' }];
    const r = run(f);
    expect(found(r)).toEqual({ unfinished: 3 });
    expect(r.violations.unfinished.examples.map((e) => e.sagaId).sort()).toEqual(['ghost', 's2', 's6']);
  });

  it('5: a second apply of an active key whose first process was not killed', () => {
    const f = cleanRun();
    // k1f was first applied by host A, which was killed since: make host B apply it first, and again now.
    const first = f.ledger.findIndex((l) => l.key === 'k1f');
    f.ledger[first] = { ...(f.ledger[first] as LedgerLine), pid: HOST_B };
    append(f, 'apply', 's1', 'flight', 'k1f', HOST_B);
    const r = run(f);
    expect(found(r)).toEqual({ doubleApply: 1 });
    expect(r.violations.doubleApply.examples[0]).toMatchObject({ sagaId: 's1', stepId: 'flight', samePid: true });
    expect(r.totals.reRunsAfterCrash).toBe(1);
  });

  it('5: a re-run counts as allowed only when the first process was SIGKILLed before the second apply', () => {
    const f = cleanRun();
    const kill = f.kills[0] as KillEvent;
    const rerun = f.ledger.filter((l) => l.key === 'k5c')[1] as LedgerLine;
    f.kills[0] = { ...kill, t: rerun.t + 1 }; // the kill came after the second apply
    const r = run(f);
    expect(found(r)).toEqual({ doubleApply: 1 });
    expect(r.totals.reRunsAfterCrash).toBe(0);
    expect(r.violations.doubleApply.examples[0]).toMatchObject({ sagaId: 's5', samePid: false, natsRestartBetween: false });
    // With no kill at all, the same.
    const g = cleanRun();
    g.kills = [];
    expect(found(run(g))).toEqual({ doubleApply: 1 });
  });

  it('5: an apply after an undo of the same key is a violation whatever the outcome', () => {
    const f = cleanRun();
    append(f, 'apply', 's3', 'b', 'k3b'); // a late do of a released step of a committed saga
    append(f, 'undo', 's3', 'b', 'k3b'); // ... even if it was undone again afterwards
    const r = run(f);
    expect(found(r)).toEqual({ applyAfterUndo: 1 });
    expect(r.violations.applyAfterUndo.examples[0]).toMatchObject({ sagaId: 's3', stepId: 'b', undo: { op: 'undo' }, apply: { op: 'apply' }, outcome: 'committed' });
    // A blind undo (of an in-doubt step), then its late do: the effect stays too.
    const g = cleanRun();
    append(g, 'apply', 's2', 'car', 'k2c');
    expect(found(run(g))).toEqual({ applyAfterUndo: 1, compensatedWithEffects: 1 });
  });

  it('6: a parked saga with an active effect missing from remaining (before the retry)', () => {
    const f = cleanRun();
    // s4's hotel undo was never done: the effect is active when s4 is parked, and not listed.
    removeLine(f, (l) => l.op === 'undo' && l.key === 'k4h');
    const r = run(f);
    expect(found(r)).toEqual({ parkedUnlisted: 1, retriedCompensatedWithEffects: 1 });
    expect(r.violations.parkedUnlisted.examples[0]).toMatchObject({ sagaId: 's4', phase: 'before operator retry', unlisted: [{ stepId: 'hotel', key: 'k4h' }] });
  });

  it('6: only effects active when remaining was read count before the retry; kept steps of a commit decision are no violation', () => {
    const f = cleanRun();
    const s4 = f.parked[0] as ParkedEntry;
    // Read before s4's hotel was undone: then the active hotel effect was unlisted.
    f.parked[0] = { ...s4, ledgerLines: f.ledger.findIndex((l) => l.op === 'undo' && l.key === 'k4h') };
    expect(found(run(f))).toEqual({ parkedUnlisted: 1 });
    // An effect applied after remaining was read (and undone later) is not held against the list.
    const h = cleanRun();
    append(h, 'apply', 's4', 'car', 'k4c');
    append(h, 'undo', 's4', 'car', 'k4c');
    expect(found(run(h))).toEqual({});
    // s7 keeps a and b (decision commit): without them in keptSteps they would be unlisted.
    const g = cleanRun();
    g.parked[1] = { ...(g.parked[1] as ParkedEntry), keptSteps: [] };
    expect(found(run(g))).toEqual({ parkedUnlisted: 1 });
  });

  it('6: a saga still parked at the end with an unlisted effect', () => {
    const f = cleanRun();
    setRecord(f, {
      sagaId: 's7',
      found: true,
      state: 'compensationFailed',
      steps: { a: 'committed', b: 'committed', c: 'compensationFailed' },
      outcome: { status: 'compensation-failed', remaining: [], decision: 'commit' },
    });
    const r = run(f);
    expect(found(r)).toEqual({ parkedUnlisted: 1 });
    expect(r.violations.parkedUnlisted.examples[0]).toMatchObject({ sagaId: 's7', phase: 'at the end', unlisted: [{ stepId: 'c' }] });
  });

  it('6: a saga that the operator retry ended compensated with an effect still active', () => {
    const f = cleanRun();
    removeLine(f, (l) => l.op === 'undo' && l.key === 'k4f');
    const r = run(f);
    expect(found(r)).toEqual({ retriedCompensatedWithEffects: 1 });
    expect(r.violations.retriedCompensatedWithEffects.examples[0]).toMatchObject({ sagaId: 's4', effects: [{ stepId: 'flight', key: 'k4f' }] });
  });

  it('6: a parked saga without a dead letter', () => {
    const f = cleanRun();
    f.parked[0] = { ...(f.parked[0] as ParkedEntry), deadLetter: false };
    expect(found(run(f))).toEqual({ parkedWithoutDeadLetter: 1 });
  });

  it('keeps at most maxExamples examples per kind but counts every violation', () => {
    const f = cleanRun();
    for (let i = 0; i < 8; i++) append(f, 'apply', 'ghost', 's', `kg${i}`);
    const r = run(f, { maxExamples: 2 });
    expect(r.violations.unfinished.count).toBe(1); // one unknown saga
    const g = cleanRun();
    for (let i = 0; i < 8; i++) {
      g.started.push({ sagaId: `x${i}`, saga: 'trip', slot: 0 });
      g.records.push({ sagaId: `x${i}`, found: true, state: 'dispatching' });
    }
    const rg = run(g, { maxExamples: 2 });
    expect(rg.violations.unfinished.count).toBe(8);
    expect(rg.violations.unfinished.examples).toHaveLength(2);
    expect(Object.keys(rg.violations)).toEqual([...VIOLATION_KINDS]);
  });
});

describe('trimOutcome', () => {
  it('keeps the keys of kept results, released steps and remaining effects', () => {
    expect(trimOutcome({ status: 'committed', results: { a: { ref: 'x', key: 'ka' }, b: null }, released: ['c'] })).toEqual({
      status: 'committed',
      results: { a: { key: 'ka' }, b: {} },
      released: ['c'],
    });
    expect(trimOutcome({ status: 'compensation-failed', remaining: [{ stepId: 'a', idempotencyKey: 'ka', why: 'blocked' }], decision: 'abort' })).toEqual({
      status: 'compensation-failed',
      remaining: [{ stepId: 'a', idempotencyKey: 'ka', why: 'blocked' }],
      decision: 'abort',
    });
    expect(trimOutcome(undefined)).toBeUndefined();
  });
});

describe('ledger files', () => {
  it('skips a torn last line and tells how many lines ended before a byte offset', () => {
    const dir = mkdtempSync(join(tmpdir(), 'chaos-check-'));
    try {
      const file = join(dir, 'ledger.jsonl');
      const a = `${JSON.stringify({ n: 1 })}\n`;
      const b = `${JSON.stringify({ n: 2 })}\n`;
      writeFileSync(file, `${a}${b}{"n":3,"tor`);
      expect(readJsonl(file)).toEqual([{ n: 1 }, { n: 2 }]);
      const { lines, linesBefore } = readJsonlWithOffsets(file, [0, a.length - 1, a.length, a.length + b.length, 10_000]);
      expect(lines).toEqual([{ n: 1 }, { n: 2 }]);
      expect([...linesBefore.entries()]).toEqual([
        [0, 0],
        [a.length - 1, 0],
        [a.length, 1],
        [a.length + b.length, 2],
        [10_000, 2],
      ]);
      expect(readJsonl(join(dir, 'missing.jsonl'))).toEqual([]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
