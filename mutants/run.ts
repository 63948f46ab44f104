/**
 * `npm run mutants`: for each planted bug of mutants/table.ts, copies the repository
 * (src, test, package.json, tsconfig and vitest configuration; node_modules
 * linked) to a temporary directory, applies the patch there, type-checks the copy, and
 * runs `npx vitest run test/model` and, separately, `npx vitest run test/property` in it.
 * A suite catches a mutant when at least one of its tests fails; a run that fails
 * without a failed test (an import error, a crash, the time bound) is an error, as is a
 * patch that does not apply or does not type-check. The unmutated copy runs first and
 * must pass both suites, so that a failure can only be the mutant's. Prints a table,
 * writes the results as JSON with --json, and exits 1 unless every suite caught every
 * mutant.
 */
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { MutantsArgumentError, parseArgs, USAGE } from './args.ts';
import type { MutantsOptions, Suite } from './args.ts';
import { command, copyRepo, current, env, firstLine, judge, ROOT, run } from './scratch.ts';
import type { Verdict } from './scratch.ts';
import { applyMutant, checkTable, MUTANTS, MutantPatchError, patchedFiles } from './table.ts';
import type { Mutant } from './table.ts';

const LOGS = join(ROOT, 'reports', 'mutants');

export interface SuiteResult {
  readonly suite: Suite;
  readonly verdict: Verdict;
  readonly seconds: number;
  /** Failed tests (caught), or why the run is an error. */
  readonly detail: readonly string[];
  readonly log: string;
}

export interface MutantResult {
  readonly mutant: string;
  readonly breaks: string;
  readonly suites: readonly SuiteResult[];
}

async function runSuite(dir: string, label: string, suite: Suite, timeoutSeconds: number): Promise<SuiteResult> {
  const report = join(dir, `vitest-${suite}.json`);
  const log = join(LOGS, `${label}.${suite}.log`);
  const t0 = performance.now();
  const r = await run('npx', ['vitest', 'run', `test/${suite}`, '--bail=1', '--reporter=default', '--reporter=json', `--outputFile.json=${report}`], dir, env(), timeoutSeconds * 1000);
  const seconds = Math.round((performance.now() - t0) / 100) / 10;
  writeFileSync(log, r.out);
  const { verdict, detail } = judge(r, report, `${timeoutSeconds} s (--timeout)`);
  return { suite, verdict, seconds, detail, log };
}

async function runOne(label: string, mutant: Mutant | undefined, options: MutantsOptions): Promise<SuiteResult[]> {
  const dir = copyRepo(label);
  current.dir = dir;
  try {
    if (mutant !== undefined) {
      try {
        applyMutant(dir, mutant);
      } catch (error) {
        if (!(error instanceof MutantPatchError)) throw error;
        return options.suites.map((suite) => ({ suite, verdict: 'error', seconds: 0, detail: [error.message], log: '' }));
      }
    }
    const tsc = await run('npx', ['tsc', '--noEmit', '-p', 'tsconfig.mutants.json'], dir, env(), 600_000);
    if (tsc.code !== 0) {
      const log = join(LOGS, `${label}.tsc.log`);
      writeFileSync(log, tsc.out);
      const why = tsc.timedOut ? 'type-check did not finish in 600 s' : `does not type-check: ${firstLine(tsc.out)}`;
      return options.suites.map((suite) => ({ suite, verdict: 'error', seconds: 0, detail: [why], log }));
    }
    const out: SuiteResult[] = [];
    for (const suite of options.suites) {
      const r = await runSuite(dir, label, suite, options.timeoutSeconds);
      console.log(`  ${suite}: ${r.verdict} in ${r.seconds} s${r.detail[0] !== undefined ? ` (${r.detail[0]})` : ''}`);
      out.push(r);
    }
    return out;
  } finally {
    rmSync(dir, { recursive: true, force: true });
    current.dir = undefined;
  }
}

function table(results: readonly MutantResult[], suites: readonly Suite[]): string {
  const rows = results.map((r) => [r.mutant, ...suites.map((s) => {
    const x = r.suites.find((y) => y.suite === s);
    return x === undefined ? '-' : `${x.verdict} (${x.seconds} s)`;
  })]);
  const head = ['mutant', ...suites];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((row) => (row[i] as string).length)));
  const line = (cells: readonly string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i] as number)).join(' | ')} |`;
  return [line(head), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n');
}

async function main(options: MutantsOptions): Promise<number> {
  checkTable();
  mkdirSync(LOGS, { recursive: true });
  const chosen = MUTANTS.filter((m) => options.only.includes(m.name));
  // Every patch must apply to the sources as they are, before anything runs.
  for (const m of chosen) patchedFiles(ROOT, m);
  const t0 = performance.now();

  console.log(`unmutated copy: ${options.suites.join(' and ')} must pass`);
  const baseline = await runOne('unmutated', undefined, options);
  const bad = baseline.filter((r) => r.verdict !== 'missed');
  if (bad.length > 0) {
    for (const r of bad) console.error(`the unmutated ${r.suite} suite does not pass (${r.verdict}): ${r.detail.join('; ')}; log ${r.log}`);
    console.error('fix the suites first: a mutant cannot be judged against a failing suite');
    return 1;
  }

  const results: MutantResult[] = [];
  for (const m of chosen) {
    console.log(`${m.name}:`);
    results.push({ mutant: m.name, breaks: m.breaks, suites: await runOne(m.name, m, options) });
  }
  const seconds = Math.round((performance.now() - t0) / 1000);
  console.log(`\n${table(results, options.suites)}\n`);
  console.log(`unmutated: ${baseline.map((r) => `${r.suite} passes in ${r.seconds} s`).join(', ')}; ${results.length} mutant(s) in ${seconds} s in all; logs in ${LOGS}`);
  for (const r of results) for (const s of r.suites) if (s.verdict !== 'caught') console.log(`${r.mutant}, ${s.suite}: ${s.verdict}: ${s.detail.join('; ')}`);
  if (options.json !== undefined) {
    writeFileSync(options.json, `${JSON.stringify({ seconds, baseline, results }, null, 2)}\n`);
    console.log(`results written to ${options.json}`);
  }
  const failing = results.filter((r) => r.suites.some((s) => s.verdict !== 'caught'));
  if (failing.length > 0) {
    console.error(`${failing.length} mutant(s) not caught by every suite: ${failing.map((r) => r.mutant).join(', ')}`);
    return 1;
  }
  console.log(`every mutant caught by ${options.suites.join(' and by ')} alone`);
  return 0;
}

command(parseArgs, USAGE, (e) => e instanceof MutantsArgumentError, main);
