/**
 * The rule a resolve decides by, case by case: what a fence found, whether the operator saw
 * the effect listed as certain, and which fences the operator reviewed.
 */
import { describe, expect, it } from 'vitest';
import { fenceOfReply, fenceVerdict, parseReviewToken, reviewKey, reviewToken } from '../../src/machines/fence-verdict.ts';
import type { FenceWas } from '../../src/types.ts';

const answer = (was: FenceWas, by = 'f1') => ({ by, was });
const none = new Set<string>();

describe('fenceVerdict', () => {
  it.each([
    ['none', true, 'handled'],
    ['none', false, 'handled'],
    ['compensated', true, 'handled'],
    ['applied', false, 'handled'],
    ['undoPending', false, 'handled'],
    ['applied', true, 'review'],
    ['undoPending', true, 'review'],
    ['unknown', true, 'review'],
    ['unknown', false, 'review'],
  ] as const)('%s, in doubt %s: %s', (was, inDoubt, kind) => {
    expect(fenceVerdict({ stepId: 's', inDoubt }, answer(was), none).kind).toBe(kind);
  });

  it('a reviewed fence is handled only when the key was closed by that very fence', () => {
    const reviewed = new Set([reviewKey('s', 'f1')]);
    expect(fenceVerdict({ stepId: 's', inDoubt: true }, answer('applied', 'f1'), reviewed).kind).toBe('handled');
    expect(fenceVerdict({ stepId: 's', inDoubt: true }, answer('applied', 'f2'), reviewed).kind).toBe('review');
    expect(fenceVerdict({ stepId: 't', inDoubt: true }, answer('applied', 'f1'), reviewed).kind).toBe('review');
  });

  it('an error answer fails the fence', () => {
    const v = fenceVerdict({ stepId: 's', inDoubt: false }, { code: 'NO_RESPONDERS', message: 'nobody', retryable: true }, none);
    expect(v).toEqual({ kind: 'failed', error: { code: 'NO_RESPONDERS', message: 'nobody', retryable: true } });
  });
});

describe('fence replies and review tokens', () => {
  it('reads a fence record from an ok reply, and refuses one without it', () => {
    expect(fenceOfReply({ ok: true, result: { by: 'f', was: 'applied' } })).toEqual({ by: 'f', was: 'applied' });
    expect(fenceOfReply({ ok: true })).toMatchObject({ code: 'PROTOCOL_ERROR' });
    expect(fenceOfReply({ ok: true, result: { by: 'f', was: 'gone' } })).toMatchObject({ code: 'PROTOCOL_ERROR' });
    expect(fenceOfReply({ ok: false, error: { code: 'IN_PROGRESS', message: 'busy', retryable: true } })).toMatchObject({ code: 'IN_PROGRESS' });
  });

  it('a token round-trips the fences it names; anything else is not a token', () => {
    const token = reviewToken([{ stepId: 'a', by: 'f1' }, { stepId: 'b,c', by: 'f1' }]);
    expect(parseReviewToken(token)).toEqual(new Set([reviewKey('a', 'f1'), reviewKey('b,c', 'f1')]));
    for (const bad of ['', 'not a token', Buffer.from('[]').toString('base64url'), Buffer.from('[["a"]]').toString('base64url'), Buffer.from('{"a":1}').toString('base64url')]) {
      expect(parseReviewToken(bad)).toBeUndefined();
    }
  });
});
