/**
 * `npm run mutate:check`: CI's sample of the mutation score. Draws `--count` mutants from
 * mutants/catalogue.json (mutants of the guarantee code that the model and property
 * suites killed when `npm run mutate:sample -- --catalogue` last ran), applies each in a
 * scratch copy of the repository, and runs there the tests that killed it, under
 * `vitest.mutate.config.ts`. Each must still be killed: a mutant that now survives means
 * the proofs got weaker, and the check fails. A patch that no longer applies (its code
 * changed) fails too, naming the entry, so the catalogue is regenerated rather than
 * silently shrunk. Stops drawing once `--budget` seconds are spent, after at least one.
 */
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { CATALOGUE, command, copyRepo, current, env, judge, run } from './scratch.ts';
import { draw, flags, MutationArgumentError, seedOf, StrykerReportError, wholeNumber } from './stryker-report.ts';
import type { CatalogueEntry } from './stryker-report.ts';
import { applyMutant, MutantPatchError } from './table.ts';

const USAGE = `npm run mutate:check -- [--count <n>] [--seed <n>] [--budget <seconds>] [--timeout <seconds>]

Re-applies killed mutants of mutants/catalogue.json in scratch copies and checks that the
model and property tests that killed them still do.

  --count <n>        mutants to draw (default 3)
  --seed <n>         seed of the draw (default: random, printed)
  --budget <s>       draw no further mutant once this many seconds are spent (default 300)
  --timeout <s>      bound of one mutant's test run (default 300)
  --help             this text`;

function options(argv: readonly string[]) {
  const v = flags(argv, { count: { type: 'string' }, seed: { type: 'string' }, budget: { type: 'string' }, timeout: { type: 'string' }, help: { type: 'boolean' } });
  return {
    count: wholeNumber('count', v.count, 1, 3),
    seed: seedOf(v.seed),
    budgetSeconds: wholeNumber('budget', v.budget, 1, 300),
    timeoutSeconds: wholeNumber('timeout', v.timeout, 1, 300),
    help: v.help === true,
  };
}

function catalogue(): CatalogueEntry[] {
  if (!existsSync(CATALOGUE)) throw new StrykerReportError(`${CATALOGUE} is missing: run npm run mutate:sample -- --catalogue`);
  const c = JSON.parse(readFileSync(CATALOGUE, 'utf8')) as { entries?: CatalogueEntry[] };
  const entries = c.entries ?? [];
  if (entries.length === 0) throw new StrykerReportError(`${CATALOGUE} has no entries: run npm run mutate:sample -- --catalogue`);
  for (const e of entries) {
    if (typeof e.search !== 'string' || typeof e.replace !== 'string' || !Array.isArray(e.testFiles) || e.testFiles.length === 0 || !Array.isArray(e.killedBy) || e.killedBy.length === 0) {
      throw new StrykerReportError(`catalogue entry ${JSON.stringify(e.key)} lacks a search, a replacement, its test files or the tests that killed it`);
    }
  }
  return entries;
}

/** A mutant the tests caught was killed; one they missed survived. */
const KILLED = { caught: 'killed', missed: 'survived', error: 'error' } as const;

/** A vitest name pattern (-t) matching exactly the tests named, and no other test of their files. */
const namePattern = (names: readonly string[]): string => `^(?:${names.map((n) => n.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('|')})$`;

async function check(entry: CatalogueEntry, label: string, timeoutSeconds: number): Promise<{ verdict: (typeof KILLED)[keyof typeof KILLED]; detail: string; seconds: number }> {
  const dir = copyRepo(label);
  current.dir = dir;
  const t0 = performance.now();
  const seconds = () => Math.round((performance.now() - t0) / 100) / 10;
  try {
    try {
      applyMutant(dir, { name: label, breaks: entry.key, edits: [{ file: entry.file, search: entry.search, replace: entry.replace }] });
    } catch (error) {
      if (error instanceof MutantPatchError) return { verdict: 'error', detail: `${error.message}; the code changed: regenerate the catalogue (npm run mutate:sample -- --catalogue)`, seconds: 0 };
      throw error;
    }
    const report = join(dir, 'vitest-check.json');
    const r = await run(
      'npx',
      ['vitest', 'run', '--config', 'vitest.mutate.config.ts', ...entry.testFiles, '-t', namePattern(entry.killedBy), '--bail=1', '--reporter=dot', '--reporter=json', `--outputFile.json=${report}`],
      dir,
      env(),
      timeoutSeconds * 1000,
    );
    const { verdict, detail } = judge(r, report, `${timeoutSeconds} s`);
    // An error shows the end of vitest's output, where its reason is.
    return { verdict: KILLED[verdict], detail: verdict === 'error' ? `${detail.join('; ')}\n${r.out.slice(-2000)}` : detail.join('; '), seconds: seconds() };
  } finally {
    rmSync(dir, { recursive: true, force: true });
    current.dir = undefined;
  }
}

async function main(opts: ReturnType<typeof options>): Promise<number> {
  const entries = catalogue();
  const chosen = draw(entries, opts.count, opts.seed);
  console.log(`${chosen.length} of ${entries.length} catalogued mutants drawn with seed ${opts.seed} (replay: npm run mutate:check -- --count ${opts.count} --seed ${opts.seed})`);
  const t0 = performance.now();
  let ran = 0;
  const bad: string[] = [];
  for (const e of chosen) {
    if (ran > 0 && (performance.now() - t0) / 1000 > opts.budgetSeconds) {
      console.log(`budget of ${opts.budgetSeconds} s spent: ${chosen.length - ran} drawn mutant(s) left unchecked`);
      break;
    }
    const where = `${e.file}:${e.line} ${e.mutatorName} ${JSON.stringify(e.original.slice(0, 80))} -> ${JSON.stringify(e.replacement.slice(0, 80))}`;
    const r = await check(e, `check-${ran}`, opts.timeoutSeconds);
    ran++;
    console.log(`${r.verdict}: ${where} (${e.testFiles.join(', ')}; ${r.seconds} s)${r.verdict === 'killed' ? '' : `\n  ${r.detail}`}`);
    if (r.verdict !== 'killed') bad.push(where);
  }
  if (bad.length > 0) {
    console.error(`${bad.length} of ${ran} catalogued mutant(s) no longer killed by the proofs (or could not be run): ${bad.join('; ')}`);
    return 1;
  }
  console.log(`${ran} catalogued mutant(s) still killed by the model and property suites`);
  return 0;
}

command(options, USAGE, (e) => e instanceof MutationArgumentError, main);
