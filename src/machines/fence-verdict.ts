/**
 * What an operator's resolve may conclude from fencing the keys of a parked saga. Pure:
 * the runtime's resolve (runtime/operator.ts) and the step × key model both decide with it.
 *
 * A resolve declares the remaining effects handled by hand. That is only true of an effect
 * the operator could see: an effect that lands after the operator looked at the system of
 * record would stay behind a saga reported compensated. So a resolve first fences every
 * remaining key (from then on no `do` of it can apply) and learns what a `do` had left
 * there. It may then end the saga only for keys where nothing can have landed unseen:
 *
 * - `none` or `compensated`: no effect is there, and none can come;
 * - `applied` or `undoPending` of a step that committed before the saga parked (not in
 *   doubt): the effect was there when the dead letter listed it as certain, before the
 *   operator looked, and a key that applied once never applies again;
 * - a key fenced by an earlier resolve whose answer the operator reviewed: the operator
 *   looked after that fence, and nothing has landed since.
 *
 * Any other answer (an effect that applied, or may have, at a time nobody knows) needs a
 * review: the operator looks again, now that the key is fenced, and resolves again naming
 * the fences reviewed. A fence with no clear answer fails the resolve: the saga stays parked.
 */
import type { ErrorInfo } from '../errors.ts';
import type { FenceRecord, FenceWas, RemainingEffect, WorkerReply } from '../types.ts';

const WAS: ReadonlySet<string> = new Set<FenceWas>(['none', 'applied', 'unknown', 'undoPending', 'compensated']);

/** What one fence concluded for one remaining effect. */
export type FenceVerdict =
  | { readonly kind: 'handled'; readonly fence: FenceRecord }
  | { readonly kind: 'review'; readonly fence: FenceRecord }
  | { readonly kind: 'failed'; readonly error: ErrorInfo };

/** Reads a fence's reply: its fence record, or why it has none. */
export function fenceOfReply(reply: WorkerReply): FenceRecord | ErrorInfo {
  if (!reply.ok) return reply.error;
  const r = reply.result as { by?: unknown; was?: unknown } | undefined;
  if (r === null || typeof r !== 'object' || typeof r.by !== 'string' || r.by.length === 0 || typeof r.was !== 'string' || !WAS.has(r.was)) {
    return { code: 'PROTOCOL_ERROR', message: `a fence was answered ok without a fence record { by, was } (got ${JSON.stringify(reply.result)?.slice(0, 120)})`, retryable: false };
  }
  return { by: r.by, was: r.was as FenceWas };
}

/**
 * Decides for one remaining effect. `reviewed`: the fences the operator reviewed, as
 * `reviewKey(stepId, fence.by)`.
 */
export function fenceVerdict(effect: Pick<RemainingEffect, 'stepId' | 'inDoubt'>, answer: FenceRecord | ErrorInfo, reviewed: ReadonlySet<string>): FenceVerdict {
  if (!('by' in answer)) return { kind: 'failed', error: answer };
  if (answer.was === 'none' || answer.was === 'compensated') return { kind: 'handled', fence: answer };
  if (!effect.inDoubt && (answer.was === 'applied' || answer.was === 'undoPending')) return { kind: 'handled', fence: answer };
  if (reviewed.has(reviewKey(effect.stepId, answer.by))) return { kind: 'handled', fence: answer };
  return { kind: 'review', fence: answer };
}

/** How a reviewed fence is named: the step and the fence that closed its key. */
export function reviewKey(stepId: string, by: string): string {
  return `${stepId}\u0000${by}`;
}

/** The token a review hands the operator: every fence it showed, opaque (base64url of JSON). */
export function reviewToken(fences: readonly { stepId: string; by: string }[]): string {
  return Buffer.from(JSON.stringify(fences.map((f) => [f.stepId, f.by])), 'utf8').toString('base64url');
}

/** The reviewed fences a token names, or undefined when it is not a review token. */
export function parseReviewToken(token: string): Set<string> | undefined {
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(token, 'base64url').toString('utf8'));
  } catch {
    return undefined;
  }
  if (!Array.isArray(parsed) || parsed.length === 0) return undefined;
  const out = new Set<string>();
  for (const pair of parsed) {
    if (!Array.isArray(pair) || pair.length !== 2 || typeof pair[0] !== 'string' || typeof pair[1] !== 'string') return undefined;
    out.add(reviewKey(pair[0], pair[1]));
  }
  return out;
}
