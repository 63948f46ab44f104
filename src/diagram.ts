/**
 * Diagrams of a saga: `toMermaid(definition)` draws the saga machine of a definition as a
 * Mermaid state diagram, read from the XState machine the runtime runs (its states, its
 * eventless and event transitions, their guards and actions), with the saga's own steps
 * (stages, workers, join policy, timeouts and retries) as notes. Pure: no I/O.
 */
import { isDefinedSaga } from './define.ts';
import { InvalidOptionError, SagaDefinitionError } from './errors.ts';
import { createSagaMachine } from './machines/saga-machine.ts';
import type { SagaDefinition, StepPlan } from './types.ts';

/** The options of {@link toMermaid}. */
export interface MermaidOptions {
  /**
   * Also draw the transitions that keep the machine in its state (a step's result recorded
   * while gathering, a compensation acknowledged while compensating), as loops. Default false:
   * only the transitions that change the machine's state.
   */
  readonly loops?: boolean;
  /** Draw the notes that list the saga's stages and steps. Default true. */
  readonly steps?: boolean;
  /** Layout direction. Default `LR`. */
  readonly direction?: 'LR' | 'TB';
}

const OPTION_NAMES = new Set(['loops', 'steps', 'direction']);

/** The parts of XState's state node this module reads. */
interface NodeView {
  readonly key: string;
  readonly type: string;
  readonly entry: readonly unknown[];
  readonly always?: readonly TransitionView[];
  readonly transitions: ReadonlyMap<string, readonly TransitionView[]>;
}
interface TransitionView {
  readonly eventType: string;
  readonly target?: readonly { key: string }[];
  readonly guard?: unknown;
  readonly actions: readonly unknown[];
}

/** One arrow of the diagram. */
interface Arrow {
  readonly from: string;
  readonly to: string;
  readonly label: string;
}

function nameOf(x: unknown): string {
  if (typeof x === 'string') return x;
  if (typeof x === 'function') return x.name || 'guard';
  if (typeof x === 'object' && x !== null && typeof (x as { type?: unknown }).type === 'string') return (x as { type: string }).type;
  return '?';
}

function guardText(guard: unknown): string | undefined {
  if (guard === undefined) return undefined;
  const parts = (guard as { guards?: unknown[] }).guards;
  if (typeof guard === 'function' && Array.isArray(parts)) return parts.map(guardText).join(` ${guard.name} `);
  return nameOf(guard);
}

/** A transition's label: Mermaid ends a label at a colon, semicolon or hash, so none is left in it. */
function label(event: string, t: TransitionView): string {
  const guard = guardText(t.guard);
  const actions = t.actions.map(nameOf).filter((a) => a !== '?');
  let text = event;
  if (guard !== undefined) text += `${text === '' ? '' : ' '}[${guard}]`;
  if (actions.length > 0) text += ` / ${actions.join(', ')}`;
  return text.replace(/[:;#]/g, ' ').trim();
}

/** The stage of each step: 1 for steps without `after`, else one more than the latest of its `after`. */
function stages(def: SagaDefinition): StepPlan[][] {
  const level = new Map<string, number>();
  const of = (p: StepPlan): number => {
    let l = level.get(p.id);
    if (l === undefined) {
      l = 1 + Math.max(0, ...p.after.map((a) => of(def.stepsById.get(a) as StepPlan)));
      level.set(p.id, l);
    }
    return l;
  };
  const out: StepPlan[][] = [];
  for (const p of def.steps) (out[of(p) - 1] ??= []).push(p);
  return out;
}

/** How each compensation order undoes, in the diagram's note on `compensating`. */
const UNDO_ORDER_TEXT: Readonly<Record<SagaDefinition['compensationOrder'], string>> = {
  reverse: 'a step is undone only after the steps that ran after it',
  parallel: 'every step is undone at once (order parallel)',
  sequential: 'one step at a time, the last to complete first (order sequential)',
};

function joinText(def: SagaDefinition): string {
  switch (def.join.kind) {
    case 'all':
      return 'join all (every step must commit)';
    case 'any':
      return 'join any (the first step to commit is kept, the others are undone)';
    case 'quorum':
      return `join quorum ${def.join.n} (the first ${def.join.n} steps to commit are kept, the others are undone)`;
  }
}

function stepText(p: StepPlan): string {
  const after = p.after.length > 0 ? ` after ${p.after.join(', ')}` : '';
  return `${p.id} on ${p.worker}${after}, timeout ${p.timeoutMs} ms, retries ${p.retries}, undo retries ${p.compensation.retries}`;
}

function checkOptions(options: unknown): asserts options is MermaidOptions {
  if (options === null || typeof options !== 'object' || Array.isArray(options)) throw new InvalidOptionError('options', 'must be an object of toMermaid options');
  for (const k of Object.keys(options)) if (!OPTION_NAMES.has(k)) throw new InvalidOptionError(k, `is not an option of toMermaid (its options: ${[...OPTION_NAMES].join(', ')})`);
  const o = options as Record<string, unknown>;
  for (const k of ['loops', 'steps']) if (o[k] !== undefined && typeof o[k] !== 'boolean') throw new InvalidOptionError(k, 'must be true or false');
  if (o.direction !== undefined && o.direction !== 'LR' && o.direction !== 'TB') throw new InvalidOptionError('direction', "must be 'LR' or 'TB'");
}

/**
 * The saga machine of `definition` as a Mermaid `stateDiagram-v2`: every state of the
 * machine, every transition that changes state (labelled with its event, `[guard]` and
 * `/ actions`; an eventless transition has no event), and notes listing the saga's
 * stages, steps and join policy. The same machine the runtime runs and the model check
 * explores, so the diagram cannot drift from it.
 */
export function toMermaid(definition: SagaDefinition, options: MermaidOptions = {}): string {
  if (!isDefinedSaga(definition)) throw new SagaDefinitionError('toMermaid needs a saga made with defineSaga(...)');
  checkOptions(options);
  const machine = createSagaMachine(definition);
  const root = machine.root as unknown as { states: Record<string, NodeView>; initial?: { target?: readonly { key: string }[] } };
  const arrows: Arrow[] = [];
  const lines = ['stateDiagram-v2', `  direction ${options.direction ?? 'LR'}`];
  for (const initial of root.initial?.target ?? []) arrows.push({ from: '[*]', to: initial.key, label: '' });
  const finals: string[] = [];
  for (const node of Object.values(root.states)) {
    const entry = node.entry.map(nameOf).filter((a) => a !== '?');
    if (entry.length > 0) lines.push(`  ${node.key}: entry / ${entry.join(', ')}`);
    else lines.push(`  ${node.key}`);
    if (node.type === 'final') finals.push(node.key);
    for (const t of node.always ?? []) for (const to of t.target ?? []) arrows.push({ from: node.key, to: to.key, label: label('', t) });
    for (const [event, ts] of node.transitions) {
      for (const t of ts) {
        const targets = t.target ?? [];
        if (targets.length === 0 && options.loops === true) arrows.push({ from: node.key, to: node.key, label: label(event, t) });
        for (const to of targets) arrows.push({ from: node.key, to: to.key, label: label(event, t) });
      }
    }
  }
  for (const f of finals) arrows.push({ from: f, to: '[*]', label: '' });
  for (const a of arrows) lines.push(`  ${a.from} --> ${a.to}${a.label === '' ? '' : `: ${a.label}`}`);
  if (options.steps !== false) {
    const byStage = stages(definition);
    const dispatch = [`saga ${definition.name} version ${definition.version}`, joinText(definition)];
    byStage.forEach((ps, i) => dispatch.push(`stage ${i + 1} - ${ps.map((p) => p.id).join(', ')}`));
    for (const p of definition.steps) dispatch.push(stepText(p));
    lines.push('  note right of dispatching', ...dispatch.map((l) => `    ${l.replace(/[:;#]/g, ' ')}`), '  end note');
    lines.push(
      '  note right of compensating',
      '    undoes every step that committed or may have (in doubt)',
      `    ${UNDO_ORDER_TEXT[definition.compensationOrder]}`,
      '  end note',
    );
  }
  return `${lines.join('\n')}\n`;
}

/** A state of the saga machine in a {@link SagaGraph}. */
export interface SagaGraphState {
  readonly id: string;
  /** `final` for committed and compensated. */
  readonly type: 'normal' | 'final';
  readonly initial: boolean;
}

/** A step of the saga in a {@link SagaGraph}. */
export interface SagaGraphStep {
  readonly id: string;
  readonly worker: string;
  /** The steps it runs after. */
  readonly after: readonly string[];
  /** 1 for steps without `after`, else one more than the latest of its `after`. */
  readonly stage: number;
  readonly timeoutMs: number;
  readonly retries: number;
  readonly compensationRetries: number;
}

/**
 * What a picture of a saga needs, as plain JSON: the states and state-changing transitions
 * of its machine (read from the same machine as {@link toMermaid}), its steps with their
 * workers, dependencies and stages, its join policy, and the Mermaid text itself.
 */
export interface SagaGraph {
  readonly saga: string;
  readonly version: number;
  readonly join: { readonly kind: 'all' | 'any' | 'quorum'; readonly n?: number };
  readonly states: readonly SagaGraphState[];
  readonly transitions: readonly { readonly from: string; readonly to: string; readonly label: string }[];
  readonly steps: readonly SagaGraphStep[];
  readonly mermaid: string;
}

/** The graph of a saga's machine and steps, for a drawing made elsewhere (the console). Pure. */
export function toGraph(definition: SagaDefinition): SagaGraph {
  if (!isDefinedSaga(definition)) throw new SagaDefinitionError('toGraph needs a saga made with defineSaga(...)');
  const machine = createSagaMachine(definition);
  const root = machine.root as unknown as { states: Record<string, NodeView>; initial?: { target?: readonly { key: string }[] } };
  const initial = new Set((root.initial?.target ?? []).map((t) => t.key));
  const states: SagaGraphState[] = [];
  const transitions: { from: string; to: string; label: string }[] = [];
  const seen = new Set<string>();
  const add = (from: string, to: string, text: string) => {
    const k = `${from}\u0000${to}\u0000${text}`;
    if (!seen.has(k)) transitions.push({ from, to, label: text }), seen.add(k);
  };
  for (const node of Object.values(root.states)) {
    states.push({ id: node.key, type: node.type === 'final' ? 'final' : 'normal', initial: initial.has(node.key) });
    for (const t of node.always ?? []) for (const to of t.target ?? []) add(node.key, to.key, label('', t));
    for (const [event, ts] of node.transitions) for (const t of ts) for (const to of t.target ?? []) add(node.key, to.key, label(event, t));
  }
  const steps: SagaGraphStep[] = [];
  stages(definition).forEach((ps, i) => {
    for (const p of ps) steps.push({ id: p.id, worker: p.worker, after: [...p.after], stage: i + 1, timeoutMs: p.timeoutMs, retries: p.retries, compensationRetries: p.compensation.retries });
  });
  const order = new Map(definition.steps.map((p, i) => [p.id, i]));
  steps.sort((a, b) => a.stage - b.stage || (order.get(a.id) ?? 0) - (order.get(b.id) ?? 0));
  const join = definition.join.kind === 'quorum' ? { kind: 'quorum' as const, n: definition.join.n } : { kind: definition.join.kind };
  return { saga: definition.name, version: definition.version, join, states, transitions, steps, mermaid: toMermaid(definition) };
}
