/**
 * The resolve rule as properties, against its statement in docs/guarantees.md rather than
 * its code: a resolve may end a saga for a key only where nothing can have landed after the
 * operator looked. Also the two encodings an operator's resolve depends on: the fence
 * record read from a host's reply, and the review token handed back to the operator.
 */
import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import { fenceOfReply, fenceVerdict, parseReviewToken, reviewKey, reviewToken } from '../../src/machines/fence-verdict.ts';
import type { FenceWas, WorkerReply } from '../../src/types.ts';

const WAS: readonly FenceWas[] = ['none', 'applied', 'unknown', 'undoPending', 'compensated'];
const wasArb = fc.constantFrom(...WAS);
const idArb = fc.string({ minLength: 1, maxLength: 12 });
const errorArb = fc.record({ code: fc.constantFrom('NO_RESPONDERS', 'IN_PROGRESS', 'PROTOCOL_ERROR', 'STEP_TIMED_OUT', 'TRANSPORT_ERROR'), message: fc.string(), retryable: fc.boolean() });

/**
 * What the guarantee allows, in its own words: no effect can be there or come (`none`,
 * `compensated`); the effect was certain in the dead letter the operator read, and a key
 * that applied once never applies again (`applied` or `undoPending` of a step not in
 * doubt); or the operator looked again after this very fence closed the key.
 */
function mayEnd(was: FenceWas, inDoubt: boolean, reviewedThisFence: boolean): boolean {
  if (was === 'none' || was === 'compensated') return true;
  if (!inDoubt && (was === 'applied' || was === 'undoPending')) return true;
  return reviewedThisFence;
}

describe('fenceVerdict decides as the guarantee says', () => {
  test('a fence record: handled exactly when nothing can have landed unseen, else a review; the record is kept', () => {
    fc.assert(
      fc.property(idArb, idArb, wasArb, fc.boolean(), fc.array(fc.tuple(idArb, idArb), { maxLength: 4 }), fc.boolean(), (stepId, by, was, inDoubt, others, reviewedThis) => {
        const reviewed = new Set([...others.map(([s, b]) => reviewKey(s, b)), ...(reviewedThis ? [reviewKey(stepId, by)] : [])]);
        const v = fenceVerdict({ stepId, inDoubt }, { by, was }, reviewed);
        const expected = mayEnd(was, inDoubt, reviewed.has(reviewKey(stepId, by)));
        expect(v).toEqual({ kind: expected ? 'handled' : 'review', fence: { by, was } });
      }),
    );
  });

  test('a review of another step or another fence never counts for this one', () => {
    fc.assert(
      fc.property(idArb, idArb, idArb, wasArb, (stepId, by, other, was) => {
        fc.pre(other !== stepId && other !== by);
        const elsewhere = new Set([reviewKey(other, by), reviewKey(stepId, other)]);
        expect(fenceVerdict({ stepId, inDoubt: true }, { by, was }, elsewhere).kind).toBe(mayEnd(was, true, false) ? 'handled' : 'review');
      }),
    );
  });

  test('an answer without a fence record fails the fence, whatever was reviewed', () => {
    fc.assert(
      fc.property(idArb, fc.boolean(), errorArb, (stepId, inDoubt, error) => {
        expect(fenceVerdict({ stepId, inDoubt }, error, new Set([reviewKey(stepId, 'x')]))).toEqual({ kind: 'failed', error });
      }),
    );
  });
});

describe('fence replies', () => {
  test('an ok reply with a fence record gives that record; any other ok reply is a protocol error; an error reply gives its error', () => {
    const validArb = fc.record({ by: idArb, was: wasArb });
    const junkArb = fc.oneof(
      fc.constant(undefined),
      fc.constant(null),
      fc.string(),
      fc.integer(),
      fc.record({ by: fc.oneof(fc.constant(''), fc.integer(), fc.constant(undefined)), was: wasArb }),
      fc.record({ by: idArb, was: fc.oneof(fc.string().filter((s) => !(WAS as readonly string[]).includes(s)), fc.integer()) }),
      fc.record({ was: wasArb }),
    );
    fc.assert(
      fc.property(validArb, junkArb, errorArb, (valid, junk, error) => {
        expect(fenceOfReply({ ok: true, result: { ...valid, extra: 1 } })).toEqual(valid);
        const bad = fenceOfReply({ ok: true, result: junk } as WorkerReply);
        expect(bad).toMatchObject({ code: 'PROTOCOL_ERROR', retryable: false });
        expect((bad as { message: string }).message).toContain('without a fence record');
        expect(fenceOfReply({ ok: false, error })).toEqual(error);
      }),
    );
  });
});

describe('review tokens', () => {
  test('a token names exactly the fences it was made of', () => {
    fc.assert(
      fc.property(fc.array(fc.record({ stepId: fc.string({ maxLength: 12 }), by: fc.string({ maxLength: 12 }) }), { minLength: 1, maxLength: 6 }), (fences) => {
        const token = reviewToken(fences);
        expect(token).toMatch(/^[A-Za-z0-9_-]+$/);
        expect(parseReviewToken(token)).toEqual(new Set(fences.map((f) => reviewKey(f.stepId, f.by))));
      }),
    );
  });

  test('anything else is not a token: no throw, undefined', () => {
    const encode = (v: unknown) => Buffer.from(JSON.stringify(v), 'utf8').toString('base64url');
    const notPairs = fc.oneof(
      fc.constant([]),
      fc.array(fc.tuple(fc.string()), { minLength: 1, maxLength: 3 }),
      fc.array(fc.tuple(fc.string(), fc.string(), fc.string()), { minLength: 1, maxLength: 3 }),
      fc.array(fc.tuple(fc.string(), fc.integer()), { minLength: 1, maxLength: 3 }),
      fc.array(fc.tuple(fc.integer(), fc.string()), { minLength: 1, maxLength: 3 }),
      fc.dictionary(fc.string(), fc.string()),
      fc.string(),
      fc.integer(),
      fc.constant(null),
    );
    fc.assert(
      fc.property(notPairs, fc.array(fc.tuple(fc.string(), fc.string()), { maxLength: 2 }), (bad, good) => {
        expect(parseReviewToken(encode(bad))).toBeUndefined();
        // One bad entry among good ones spoils the token.
        if (Array.isArray(bad) && bad.length > 0) expect(parseReviewToken(encode([...good, ...bad]))).toBeUndefined();
      }),
    );
    fc.assert(
      fc.property(fc.string(), (s) => {
        expect(() => parseReviewToken(s)).not.toThrow();
      }),
    );
    expect(parseReviewToken('%%% not base64 %%%')).toBeUndefined();
    expect(parseReviewToken(Buffer.from('{not json', 'utf8').toString('base64url'))).toBeUndefined();
  });
});
