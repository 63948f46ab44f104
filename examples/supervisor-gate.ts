/**
 * The supervisor gate: an agent drafts an answer, a deterministic check gates it before
 * the saga counts it, and a rejected draft is compensated although its worker committed.
 * On the embedded runtime (no server needed).
 *
 *   npx tsx examples/supervisor-gate.ts
 *
 * Two runs: a short answer passes the gate and is published; a long one is rejected, so
 * the draft the worker stored is deleted again and nothing is published.
 */
import { createRuntime, defineSaga, defineWorker } from '../src/index.ts';

/** A stand-in for a store of drafts that honours idempotency keys. */
const drafts = new Map<string, string>();
const published: string[] = [];

const writer = defineWorker({
  name: 'writer',
  async do(input: { prompt: string; words: number }, ctx) {
    const text = `${input.prompt}: ${'lorem '.repeat(input.words).trim()}`;
    drafts.set(ctx.idempotencyKey, text);
    return { text };
  },
  async compensate(_input, _result, ctx) {
    drafts.delete(ctx.idempotencyKey);
  },
});

const cms = defineWorker({
  name: 'cms',
  async do(input: { text: string }) {
    published.push(input.text);
    return { url: `https://example.invalid/${published.length}` };
  },
  async compensate(input: { text: string }) {
    published.splice(published.indexOf(input.text), 1);
  },
});

const answer = defineSaga({
  name: 'answer',
  version: 1,
  steps: {
    draft: {
      worker: writer,
      input: (q: { prompt: string; words: number }) => q,
      gate: (result) => result.text.length <= 60 || `the answer has ${result.text.length} characters, at most 60 allowed`,
    },
    publish: { worker: cms, after: ['draft'], input: (_q, r) => ({ text: r.draft.text }) },
  },
});

const runtime = createRuntime().host(writer, cms);
for (const words of [3, 20]) {
  const outcome = await runtime.run(answer, { prompt: 'why sagas', words });
  const why = outcome.status === 'compensated' ? ` (${outcome.failures.map((f) => `${f.stepId} ${f.reason}: ${f.error.message}`).join('; ')})` : '';
  console.log(`${words} words: ${outcome.status}${why}`);
  console.log(`  drafts stored: ${drafts.size}, pages published: ${published.length}`);
}
await runtime.close();
