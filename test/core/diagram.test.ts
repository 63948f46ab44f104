import { readFileSync } from 'node:fs';
import { describe, expect, test } from 'vitest';
import { defineSaga, InvalidOptionError, SagaDefinitionError, toMermaid } from '../../src/index.ts';
import type { MermaidOptions, SagaDefinition } from '../../src/index.ts';
import { DIAGRAMS_PAGE, diagramsPage } from '../../scripts/diagrams.ts';

const order = defineSaga({
  name: 'order',
  version: 2,
  steps: { pay: { worker: 'payments' }, ship: { worker: 'shipping', after: ['pay'], timeoutMs: 500 }, mail: { worker: 'mailer', after: ['pay'], retries: 2 } },
});
const arrows = (text: string) => text.split('\n').filter((l) => l.includes('-->')).map((l) => l.trim());

describe('toMermaid', () => {
  test('draws every state and every transition that changes state of the saga machine', () => {
    const text = toMermaid(order);
    expect(text.startsWith('stateDiagram-v2\n  direction LR\n')).toBe(true);
    // The saga machine of DESIGN section 3: a change here is a change of the machine, and of docs/diagrams.md.
    expect(arrows(text)).toEqual([
      '[*] --> dispatching',
      'dispatching --> gathering',
      'gathering --> committed: [joinSatisfiedCleanly]',
      'gathering --> compensating: [joinSatisfied] / decideCommit',
      'gathering --> compensating: [joinImpossible] / decideAbort',
      'gathering --> dispatching: [hasReadySteps]',
      'gathering --> compensating: OPERATOR.ABORT / abortByOperator',
      'compensating --> committed: [compensationComplete and decidedCommit]',
      'compensating --> compensated: [compensationComplete]',
      'compensating --> compensationFailed: [compensationStuck]',
      'compensationFailed --> compensating: COMPENSATION.DONE [isCompensationAck] / recordCompensated',
      'compensationFailed --> compensating: OPERATOR.RETRY / resetFailedCompensations',
      'compensationFailed --> compensating: OPERATOR.RESOLVE / resolveRemaining',
      'committed --> [*]',
      'compensated --> [*]',
    ]);
    expect(text).toContain('  dispatching: entry / dispatchReady\n');
    expect(text).toContain('  compensationFailed: entry / markParked, settle\n');
  });

  test("lists the saga's stages, steps and join policy in a note", () => {
    const note = toMermaid(order).split('note right of dispatching\n')[1]?.split('  end note')[0] ?? '';
    expect(note.split('\n').map((l) => l.trim()).filter(Boolean)).toEqual([
      'saga order version 2',
      'join all (every step must commit)',
      'stage 1 - pay',
      'stage 2 - ship, mail',
      'pay on payments, timeout 30000 ms, retries 0, undo retries 5',
      'ship on shipping after pay, timeout 500 ms, retries 0, undo retries 5',
      'mail on mailer after pay, timeout 30000 ms, retries 2, undo retries 5',
    ]);
    const quorum = defineSaga({ name: 'q', version: 1, steps: { a: { worker: 'x' }, b: { worker: 'x' }, c: { worker: 'x' } }, join: { kind: 'quorum', n: 2 } });
    expect(toMermaid(quorum)).toContain('join quorum 2 (the first 2 steps to commit are kept, the others are undone)');
    const any = defineSaga({ name: 'a', version: 1, steps: { a: { worker: 'x' }, b: { worker: 'x' } }, join: { kind: 'any' } });
    expect(toMermaid(any)).toContain('join any (the first step to commit is kept, the others are undone)');
  });

  test('options: loops draws the transitions that stay in their state; steps: false leaves the notes out; direction', () => {
    const loops = arrows(toMermaid(order, { loops: true }));
    expect(loops).toContain('gathering --> gathering: STEP.COMMITTED [isCurrentAttempt] / recordResult');
    expect(loops).toContain('compensating --> compensating: COMPENSATION.RETRY_DUE [isCompensationRetryDue] / resendCompensation');
    expect(loops).toContain('compensationFailed --> compensationFailed: RECOVER / settle');
    expect(loops.length).toBeGreaterThan(arrows(toMermaid(order)).length);
    expect(toMermaid(order, { steps: false })).not.toContain('note');
    expect(toMermaid(order, { direction: 'TB' })).toContain('  direction TB\n');
  });

  test('a label never holds a second colon (Mermaid would cut it there)', () => {
    for (const line of arrows(toMermaid(order, { loops: true }))) expect(line.split(':').length).toBeLessThanOrEqual(2);
  });

  test('bad input is refused with a typed error naming it', () => {
    const copy = { ...order } as SagaDefinition;
    expect(() => toMermaid(copy)).toThrow(SagaDefinitionError);
    expect(() => toMermaid(null as unknown as SagaDefinition)).toThrow(/toMermaid needs a saga made with defineSaga/);
    expect(() => toMermaid(order, { loop: true } as unknown as MermaidOptions)).toThrow(InvalidOptionError);
    expect(() => toMermaid(order, { loop: true } as unknown as MermaidOptions)).toThrow(/option 'loop': is not an option of toMermaid/);
    expect(() => toMermaid(order, { loops: 'yes' } as unknown as MermaidOptions)).toThrow(/option 'loops': must be true or false/);
    expect(() => toMermaid(order, { direction: 'RL' } as unknown as MermaidOptions)).toThrow(/option 'direction'/);
    expect(() => toMermaid(order, null as unknown as MermaidOptions)).toThrow(InvalidOptionError);
  });

  test('docs/diagrams.md is what `npm run diagrams` writes from the examples', () => {
    expect(readFileSync(DIAGRAMS_PAGE, 'utf8')).toBe(diagramsPage());
  });
});

describe('toGraph', () => {
  test('the machine of toMermaid as data: states, state-changing transitions, steps by stage', async () => {
    const { toGraph } = await import('../../src/index.ts');
    const g = toGraph(order);
    expect(g).toMatchObject({ saga: 'order', version: 2, join: { kind: 'all' }, mermaid: toMermaid(order) });
    expect(g.states.filter((s) => s.type === 'final').map((s) => s.id).sort()).toEqual(['committed', 'compensated']);
    expect(g.states.filter((s) => s.initial).map((s) => s.id)).toEqual(['dispatching']);
    const mermaidArrows = arrows(toMermaid(order)).filter((a) => !a.includes('[*]'));
    expect(g.transitions.map((t) => `${t.from} --> ${t.to}${t.label === '' ? '' : `: ${t.label}`}`)).toEqual(mermaidArrows);
    expect(g.steps).toEqual([
      { id: 'pay', worker: 'payments', after: [], stage: 1, timeoutMs: expect.any(Number), retries: 0, compensationRetries: expect.any(Number) },
      { id: 'ship', worker: 'shipping', after: ['pay'], stage: 2, timeoutMs: 500, retries: 0, compensationRetries: expect.any(Number) },
      { id: 'mail', worker: 'mailer', after: ['pay'], stage: 2, timeoutMs: expect.any(Number), retries: 2, compensationRetries: expect.any(Number) },
    ]);
    const quorum = defineSaga({ name: 'q', version: 1, join: { kind: 'quorum', n: 2 }, steps: { a: { worker: 'w' }, b: { worker: 'w' }, c: { worker: 'w' } } });
    expect(toGraph(quorum).join).toEqual({ kind: 'quorum', n: 2 });
    expect(JSON.parse(JSON.stringify(g))).toEqual(g);
    expect(() => toGraph({} as SagaDefinition)).toThrow(SagaDefinitionError);
  });
});
