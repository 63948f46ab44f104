/**
 * Planted bugs that the model check (test/model) and the simulation (test/property) must
 * each catch on their own. Each mutant is a small textual patch of the guarantee code:
 * in a file under src/, one exact search string (it must occur exactly once) and its
 * replacement. `npm run mutants` applies each one in a scratch copy of the repository
 * and runs each suite there (see mutants/run.ts and "Planted bugs both suites must
 * catch" in docs/testing.md).
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export interface MutantEdit {
  /** Path of the file to patch, relative to the repository root (under src/). */
  readonly file: string;
  /** Text that must occur exactly once in the file. */
  readonly search: string;
  readonly replace: string;
}

export interface Mutant {
  /** Unique, kebab-case. */
  readonly name: string;
  /** The guarantee the bug breaks, in a sentence. */
  readonly breaks: string;
  readonly edits: readonly MutantEdit[];
}

export const MUTANTS: readonly Mutant[] = [
  {
    name: 'compensate-takes-over-a-running-do',
    breaks:
      'An answered compensate means no effect remains: a compensate that finds a do running under a live claim takes the key over as if the claim had expired, answers ok, and the running do then applies.',
    edits: [
      {
        file: 'src/machines/host-protocol.ts',
        search: 'if (ev.live) {',
        replace: "if (ev.live && !(req.op === 'compensate' && current.state === 'doing')) {",
      },
    ],
  },
  {
    name: 'late-do-success-after-takeover-keeps-its-effect',
    breaks:
      'A compensated key holds no effect, now or later: a host whose do succeeded after another host took its key over and undid it no longer undoes that effect again, so the late success keeps its effect.',
    edits: [
      {
        file: 'src/machines/host-protocol.ts',
        search: "claim.selfUndo > 0 || outcome.event.type !== 'DO.OK'",
        replace: "claim.selfUndo >= 0 || outcome.event.type !== 'DO.OK'",
      },
    ],
  },
  {
    name: 'transport-timeout-is-a-clean-failure',
    breaks:
      'A do whose transport gave up may have reached a host: reported as a local failure that proves nothing applied (STEP.FAILED, TRANSPORT_ERROR) instead of in doubt, its effect is never undone.',
    edits: [
      {
        file: 'src/actors/worker-actor.ts',
        search: "if (code === 'NO_RESPONDERS' || (failure instanceof TransportError && failure.notSent)) {\n      const error = toErrorInfo(failure);",
        replace:
          "if (code === 'NO_RESPONDERS' || code === 'STEP_TIMED_OUT' || (failure instanceof TransportError && failure.notSent)) {\n      const error = code === 'STEP_TIMED_OUT' ? { code: 'TRANSPORT_ERROR', message: String(failure), retryable: false } : toErrorInfo(failure);",
      },
    ],
  },
  {
    name: 'undo-ignores-dependency-order',
    breaks: 'Staged sagas are undone in reverse order: every compensation starts at once, while steps that ran after its step still hold their effects.',
    edits: [
      {
        file: 'src/machines/saga-logic.ts',
        search: "if (order === 'reverse' && !p.dependents.every((d) => releasesDependency(e.get(d)))) continue;",
        replace: '// Every compensation starts at once.',
      },
    ],
  },
  {
    name: 'join-keeps-a-dispatched-step',
    breaks:
      'A committed saga keeps exactly the steps of its join (any: one, quorum: n), each effect once, and releases the rest: the join picks the steps to keep among the dispatched ones too, so it may keep a step whose outcome is unknown and release one that committed.',
    edits: [
      {
        file: 'src/machines/saga-logic.ts',
        search: ".filter((p) => ctx.steps[p.index]?.status === 'committed')",
        replace: ".filter((p) => ctx.steps[p.index]?.status === 'committed' || ctx.steps[p.index]?.status === 'dispatched')",
      },
    ],
  },
  {
    name: 'recovery-leaves-dispatched-steps-untainted',
    breaks:
      'A step whose requests a crashed coordinator may have sent stays in doubt: after recovery, a failure of a step that was in flight counts as proof that it left no effect, though an earlier request of it may still apply.',
    edits: [
      {
        file: 'src/machines/saga-logic.ts',
        search: 'if (s.status !== \'pending\' || p.after.length === 0) e.patchAt(p.index, { tainted: true, recovered: true });',
        replace: "if (s.status !== 'pending' || p.after.length === 0) e.patchAt(p.index, { tainted: s.status !== 'dispatched' || s.tainted, recovered: true });",
      },
    ],
  },
  {
    name: 'parked-saga-omits-in-doubt-steps',
    breaks: "A parked saga lists every effect that may remain: its remaining effects leave out steps whose do never reported an outcome (in doubt).",
    edits: [
      {
        file: 'src/machines/saga-logic.ts',
        search: "return s.undo && s.status !== 'compensated';",
        replace: "return s.undo && s.status !== 'compensated' && s.result !== undefined;",
      },
    ],
  },
  {
    name: 'retry-forgets-an-attempt-in-doubt',
    breaks:
      'A failure proves no effect only when no earlier request is unaccounted for: an attempt that failed without proof (e.g. OUTCOME_UNKNOWN) is retried without tainting the step, so a later clean failure marks it failed while the first attempt may have applied.',
    edits: [
      {
        file: 'src/machines/saga-logic.ts',
        search: 'context: put(def, ctx, ev.stepId, { waiting: true, tainted: s.tainted || !proof }),',
        replace: 'context: put(def, ctx, ev.stepId, { waiting: true, tainted: s.tainted }),',
      },
    ],
  },
  {
    name: 'expired-do-claim-not-marked-interrupted',
    breaks:
      'A do whose host died may have applied: the key machine takes an expired do claim over without marking the key interrupted, so a failing re-run proves "nothing applied" and a compensate is acknowledged without undoing.',
    edits: [
      {
        file: 'src/machines/key-machine.ts',
        search: "'CLAIM.EXPIRED': { target: 'new', actions: 'markInterrupted' },",
        replace: "'CLAIM.EXPIRED': { target: 'new' },",
      },
    ],
  },
  {
    name: 'uncertain-key-acknowledges-compensate-without-undo',
    breaks:
      'An answered compensate means no effect remains: a key whose interrupted do may have applied (uncertain) answers a compensate with ok without running the undo.',
    edits: [
      {
        file: 'src/machines/key-machine.ts',
        search:
          "DO: [{ guard: 'newerAttempt', target: 'doing', actions: ['storeAttempt', 'runDo'] }, { actions: 'replyStored' }],\n        COMPENSATE: { target: 'compensating', actions: ['settleDoubt', 'runCompensate'] },",
        replace:
          "DO: [{ guard: 'newerAttempt', target: 'doing', actions: ['storeAttempt', 'runDo'] }, { actions: 'replyStored' }],\n        COMPENSATE: { target: 'compensated', actions: 'ackCompensated' },",
      },
    ],
  },
  {
    name: 'resolve-trusts-an-applied-fence-in-doubt',
    breaks:
      'A resolve ends a saga only when nothing can have landed after the operator looked: a fence that finds a do applied is taken as handled even when the step was in doubt, so the effect of a do that was still running when the operator looked stays behind a saga reported compensated.',
    edits: [
      {
        file: 'src/machines/fence-verdict.ts',
        search: "if (!effect.inDoubt && (answer.was === 'applied' || answer.was === 'undoPending')) return",
        replace: "if (answer.was === 'applied' || (!effect.inDoubt && answer.was === 'undoPending')) return",
      },
    ],
  },
  {
    name: 'resolve-skips-the-fences',
    breaks:
      'A resolve fences the keys of the remaining effects before it declares them handled: every resolve goes through as with force, so a do still running when the operator looked applies after the saga reported compensated.',
    edits: [
      {
        file: 'src/runtime/operator.ts',
        search: 'const o = resolveOptions(options);',
        replace: 'const o = { ...resolveOptions(options), force: true };',
      },
    ],
  },
  {
    name: 'store-failure-after-a-late-do-forgets-the-effect',
    breaks:
      'A compensated key holds no effect, now or later: when the dedup store fails under the outcome of a do that applied (its host may have lost its claim meanwhile, and the key been undone), the host answers OUTCOME_UNKNOWN and forgets the effect instead of reading the key again until it can tell whether to undo it itself.',
    edits: [
      {
        file: 'src/machines/host-protocol.ts',
        search: "if (outcome.event.type !== 'DO.OK' || claim.selfUndo > 0) return unanswered(done(unknown,",
        replace: 'return unanswered(done(unknown,',
      },
    ],
  },
  {
    name: 'gate-ignored',
    breaks: 'A supervisor gate decides whether a step counts: with no gate ever asked, a committed saga keeps a result its gate rejects.',
    edits: [
      {
        file: 'src/machines/saga-logic.ts',
        search: 'if (p?.gate === undefined) return undefined;',
        replace: "if (p?.gate === undefined || p.id !== '') return undefined;",
      },
    ],
  },
  {
    name: 'rejected-step-counted-as-no-effect',
    breaks: "A step whose gate rejected its result did commit its effect: counted as holding none, it is never compensated, and the saga ends with the rejected effect in the world.",
    edits: [
      {
        file: 'src/machines/saga-logic.ts',
        search: "s.status === 'inDoubt' || s.status === 'rejected' ||",
        replace: "s.status === 'inDoubt' ||",
      },
    ],
  },
  {
    name: 'sequential-undo-ignores-completion-order',
    breaks: 'A sequential saga undoes one step at a time, the last to complete first: undone all at once, the first step to complete is undone while later ones still hold their effects.',
    edits: [
      {
        file: 'src/machines/saga-logic.ts',
        search: "if (order === 'sequential' && s.committedSeq > 0) {",
        replace: "if (order === 'sequential' && s.committedSeq < 0) {",
      },
    ],
  },
  {
    name: 'parallel-undo-waits-for-dependents',
    breaks: 'A parallel saga undoes every step at once: undone in reverse instead, a step waits for the undo of each step that ran after it.',
    edits: [
      {
        file: 'src/machines/saga-logic.ts',
        search: "if (order === 'reverse' && !p.dependents",
        replace: "if (order !== 'sequential' && !p.dependents",
      },
    ],
  },
  {
    name: 'takeover-with-a-lost-answer-strands-the-saga',
    breaks:
      'Every saga ends: a coordinator whose write taking a saga over landed with its answer lost gives the saga up, although the journal now names it as the owner, so no other coordinator takes the saga and it never ends.',
    edits: [
      {
        file: 'src/runtime/driver.ts',
        search: "const settled = await this.landed(claim, current.revision);\n          if (settled === 'retry') {\n            this.stranded.add(sagaId);\n            throw error;\n          }\n          revision = settled;",
        replace: 'throw error;',
      },
    ],
  },
];

/** A mutant's patch does not apply to the sources (its search string is missing or ambiguous). */
export class MutantPatchError extends Error {
  override readonly name = 'MutantPatchError';
  constructor(
    readonly mutant: string,
    readonly file: string,
    readonly occurrences: number,
  ) {
    super(`mutant '${mutant}': its search string occurs ${occurrences} time(s) in ${file}, it must occur exactly once`);
  }
}

/** An invalid table: a duplicate name, or an edit outside src/. */
export class MutantTableError extends Error {
  override readonly name = 'MutantTableError';
}

/** How many times `search` occurs in `text` (overlapping counted; none for an empty search). */
export function occurrences(text: string, search: string): number {
  if (search.length === 0) return 0;
  let n = 0;
  for (let i = text.indexOf(search); i !== -1; i = text.indexOf(search, i + 1)) n++;
  return n;
}

/** Checks the table's own shape: unique names, edits under src/ with a non-empty search that differs from its replacement. */
export function checkTable(table: readonly Mutant[] = MUTANTS): void {
  const names = new Set<string>();
  for (const m of table) {
    if (!/^[a-z0-9]+(-[a-z0-9]+)*$/.test(m.name)) throw new MutantTableError(`mutant name '${m.name}' is not kebab-case`);
    if (names.has(m.name)) throw new MutantTableError(`mutant name '${m.name}' is used twice`);
    names.add(m.name);
    if (m.edits.length === 0) throw new MutantTableError(`mutant '${m.name}' has no edit`);
    for (const e of m.edits) {
      if (!e.file.startsWith('src/') || e.file.includes('..')) throw new MutantTableError(`mutant '${m.name}' edits ${e.file}, outside src/`);
      if (e.search.length === 0) throw new MutantTableError(`mutant '${m.name}' has an empty search string in ${e.file}`);
      if (e.search === e.replace) throw new MutantTableError(`mutant '${m.name}' replaces a search string in ${e.file} with itself`);
    }
  }
}

/** The patched text of each file a mutant edits, read from `root`; throws MutantPatchError unless each search string occurs exactly once. */
export function patchedFiles(root: string, mutant: Mutant): Map<string, string> {
  const out = new Map<string, string>();
  for (const e of mutant.edits) {
    const text = out.get(e.file) ?? readFileSync(join(root, e.file), 'utf8');
    const n = occurrences(text, e.search);
    if (n !== 1) throw new MutantPatchError(mutant.name, e.file, n);
    const at = text.indexOf(e.search);
    out.set(e.file, text.slice(0, at) + e.replace + text.slice(at + e.search.length));
  }
  return out;
}

/** Applies a mutant to the copy of the repository at `root`. */
export function applyMutant(root: string, mutant: Mutant): void {
  for (const [file, text] of patchedFiles(root, mutant)) writeFileSync(join(root, file), text);
}
