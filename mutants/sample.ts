/**
 * `npm run mutate:sample`: the mutation score of the whole guarantee code (the files
 * `stryker.config.json` mutates), estimated from a seeded uniform sample of its mutants.
 *
 * A full run of its roughly 2 800 mutants takes many hours on a small machine, so:
 * 1. StrykerJS enumerates every mutant with a test command that does nothing (seconds);
 * 2. `--count` of them are drawn uniformly, from `--seed`;
 * 3. StrykerJS runs for real (the vitest runner, `vitest.mutate.config.ts`, per-test
 *    coverage) in incremental mode, with an incremental file that marks every mutant
 *    outside the sample as already decided, so only the sample is run. The test list the
 *    incremental file needs comes from a first run limited to the first mutant drawn.
 *
 * Prints the sample's detected / valid count, the estimated score with its 95 % Wilson
 * interval, each file's share, and every survivor with its source text; writes the
 * results as JSON in `--out`; with `--catalogue`, writes the killed mutants to
 * mutants/catalogue.json, which `npm run mutate:check` re-applies in CI.
 */
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { CATALOGUE, command, current, ROOT, run } from './scratch.ts';
import { DETECTED, draw, flags, MutationArgumentError, seedOf, wholeNumber, mutantKey, mutateRange, mutantsOf, originalText, StrykerReportError, uniquePatch, UNDETECTED, wilson } from './stryker-report.ts';
import type { CatalogueEntry, MutantRef, MutantSummary, Report, ReportMutant } from './stryker-report.ts';

const USAGE = `npm run mutate:sample -- [--count <n>] [--seed <n>] [--out <dir>] [--catalogue]

Estimates the mutation score of the guarantee code from a seeded uniform sample of its
mutants, run by StrykerJS with the model and property suites (vitest.mutate.config.ts).

  --count <n>    mutants to draw (default 80)
  --seed <n>     seed of the draw, a whole number (default: random, printed)
  --out <dir>    where to write sample.json, and keep the first run's test list (default reports/mutation-sample)
  --catalogue    also write the killed mutants to mutants/catalogue.json (for npm run mutate:check)
  --help         this text`;

interface SampleOptions {
  readonly count: number;
  readonly seed: number;
  readonly out: string;
  readonly catalogue: boolean;
  readonly help: boolean;
}

function options(argv: readonly string[]): SampleOptions {
  const v = flags(argv, { count: { type: 'string' }, seed: { type: 'string' }, out: { type: 'string' }, catalogue: { type: 'boolean' }, help: { type: 'boolean' } });
  return {
    count: wholeNumber('count', v.count, 1, 80),
    seed: seedOf(v.seed),
    out: join(ROOT, v.out ?? join('reports', 'mutation-sample')),
    catalogue: v.catalogue === true,
    help: v.help === true,
  };
}

const readJson = <T>(file: string): T => JSON.parse(readFileSync(file, 'utf8')) as T;

/** The text of a file of the repository, read once. */
const sources = new Map<string, string>();
const sourceOf = (file: string): string => {
  let text = sources.get(file);
  if (text === undefined) sources.set(file, (text = readFileSync(join(ROOT, file), 'utf8')));
  return text;
};

/** The project's StrykerJS configuration, changed for one step of the sample. */
function config(base: Record<string, unknown>, changes: Record<string, unknown>): Record<string, unknown> {
  // With every test file in one process and every mutant instrumented, the first test run takes minutes.
  const c: Record<string, unknown> = { dryRunTimeoutMinutes: 30, ...base, ...changes };
  delete c.$schema;
  return c;
}

async function stryker(work: string, name: string, cfg: Record<string, unknown>, timeoutMs: number): Promise<void> {
  const file = join(work, `${name}.stryker.json`);
  writeFileSync(file, JSON.stringify(cfg, null, 2));
  console.log(`\n== StrykerJS: ${name}`);
  const r = await run('npx', ['stryker', 'run', relative(ROOT, file)], ROOT, { ...process.env, FORCE_COLOR: '0', NO_COLOR: '1' }, timeoutMs, true);
  writeFileSync(join(work, `${name}.log`), r.out);
  if (r.timedOut) throw new Error(`StrykerJS (${name}) did not finish within ${timeoutMs / 1000} s; log ${join(work, `${name}.log`)}`);
  if (r.code !== 0) throw new Error(`StrykerJS (${name}) exited with ${r.code}; log ${join(work, `${name}.log`)}`);
}

/** The incremental file of the sample run: the first run's tests and results, and every mutant outside the sample marked killed by every test. */
function incremental(boot: Report, all: readonly MutantRef[], sample: ReadonlySet<string>): Report {
  const testIds = Object.values(boot.testFiles ?? {}).flatMap((f) => f.tests.map((t) => t.id));
  if (testIds.length === 0) throw new StrykerReportError('the first run reported no tests (testFiles), so its results cannot be reused');
  // The first run's results, where the file is still as it ran.
  const decided = new Map(
    mutantsOf(boot)
      .filter((m) => m.result.status !== 'Pending' && boot.files[m.file]?.source === sourceOf(m.file))
      .map((m) => [mutantKey(m), m.result]),
  );
  const files: Record<string, { language: string; source: string; mutants: ReportMutant[] }> = {};
  all.forEach((m, i) => {
    const file = (files[m.file] ??= { language: 'typescript', source: sourceOf(m.file), mutants: [] });
    const key = mutantKey(m);
    const known = decided.get(key);
    if (known !== undefined) file.mutants.push(known);
    else if (!sample.has(key)) {
      file.mutants.push({ id: `outside-${i}`, mutatorName: m.mutatorName, replacement: m.replacement, location: m.location, status: 'Killed', killedBy: testIds, coveredBy: testIds });
    }
  });
  return { ...boot, files };
}

/** Whether a first run's incremental file lists the tests as they are now (every test file it read is unchanged). */
function testsUnchanged(file: string): boolean {
  if (!existsSync(file)) return false;
  const testFiles = readJson<Report>(file).testFiles ?? {};
  const names = Object.keys(testFiles);
  return names.length > 0 && names.every((f) => existsSync(join(ROOT, f)) && testFiles[f]?.source === sourceOf(f));
}

interface SampledResult extends MutantSummary {
  readonly status: string;
  readonly statusReason?: string;
  readonly killedBy: readonly { file: string; name: string }[];
}

async function main(opts: SampleOptions): Promise<number> {
  const t0 = performance.now();
  const base = readJson<Record<string, unknown>>(join(ROOT, 'stryker.config.json'));
  mkdirSync(opts.out, { recursive: true });
  // StrykerJS reads its configuration and reports relative to the project.
  mkdirSync(join(ROOT, 'reports'), { recursive: true });
  const work = mkdtempSync(join(ROOT, 'reports', '.sample-'));
  current.dir = work;
  try {
    // 1. Enumerate: every mutant, with a test command that does nothing.
    await stryker(
      work,
      'enumerate',
      config(base, {
        testRunner: 'command',
        commandRunner: { command: 'true' },
        coverageAnalysis: 'off',
        ignoreStatic: false,
        reporters: ['json'],
        jsonReporter: { fileName: relative(ROOT, join(work, 'enumerate.json')) },
        tempDirName: '.stryker-tmp-enumerate',
        incremental: false,
      }),
      600_000,
    );
    const all = mutantsOf(readJson<Report>(join(work, 'enumerate.json'))).map(({ file, mutatorName, replacement, location }) => ({ file, mutatorName, replacement, location }));
    const sample = draw(all, opts.count, opts.seed);
    const first = sample[0];
    if (first === undefined) throw new StrykerReportError('StrykerJS found no mutant to draw from');
    console.log(`\n${all.length} mutants in the guarantee code; ${sample.length} drawn with seed ${opts.seed}`);

    // 2. The first mutant alone (and any mutant inside its node): the test list for the incremental file.
    // Kept in --out, and used again while the test files are as they were.
    const bootFile = join(opts.out, 'first.incremental.json');
    if (testsUnchanged(bootFile)) console.log(`\n== StrykerJS: first (reused: ${relative(ROOT, bootFile)} lists the tests as they are)`);
    else {
      await stryker(
        work,
        'first',
        config(base, {
          mutate: [mutateRange(first)],
          incremental: true,
          incrementalFile: relative(ROOT, join(work, 'first.incremental.json')),
          reporters: ['progress'],
          tempDirName: '.stryker-tmp-first',
          // Every test file, not only those importing the first mutant's file, so every test is listed.
          vitest: { ...(base.vitest as object), related: false },
        }),
        4 * 3600_000,
      );
      copyFileSync(join(work, 'first.incremental.json'), bootFile);
    }

    // 3. The sample: everything outside it is reused from the crafted incremental file.
    const keys = new Set(sample.map(mutantKey));
    const sampleFile = join(work, 'sample.incremental.json');
    writeFileSync(sampleFile, JSON.stringify(incremental(readJson<Report>(bootFile), all, keys)));
    // Its report holds the placeholders too (every mutant outside the sample as killed): it stays in the work directory.
    const reportFile = join(work, 'sample.json');
    await stryker(
      work,
      'sample',
      config(base, {
        // Only the sampled nodes are instrumented (with any mutant inside them, decided in the incremental file):
        // instrumenting all of the guarantee code slows every test several times over.
        mutate: sample.map(mutateRange),
        incremental: true,
        incrementalFile: relative(ROOT, sampleFile),
        // The event recorder keeps each mutant's result as it comes (onMutantTested), should the run be cut short.
        reporters: ['json', 'progress', 'event-recorder'],
        eventReporter: { baseDir: relative(ROOT, join(opts.out, 'events')) },
        jsonReporter: { fileName: relative(ROOT, reportFile) },
        tempDirName: '.stryker-tmp-sample',
        vitest: { ...(base.vitest as object), related: false },
      }),
      12 * 3600_000,
    );

    // 4. The sampled mutants' results.
    const report = readJson<Report>(reportFile);
    const tests = new Map(Object.entries(report.testFiles ?? {}).flatMap(([file, f]) => f.tests.map((t) => [t.id, { file, name: t.name }] as const)));
    const byKey = new Map(mutantsOf(report).map((m) => [mutantKey(m), m.result]));
    const results: SampledResult[] = sample.map((m) => {
      const r = byKey.get(mutantKey(m));
      if (r === undefined) throw new StrykerReportError(`the sample run did not report ${mutantKey(m)}`);
      return {
        key: mutantKey(m),
        file: m.file,
        line: m.location.start.line,
        mutatorName: m.mutatorName,
        original: originalText(sourceOf(m.file), m),
        replacement: m.replacement,
        status: r.status,
        ...(r.statusReason !== undefined ? { statusReason: r.statusReason } : {}),
        killedBy: (r.killedBy ?? []).flatMap((id) => {
          const t = tests.get(id);
          return t === undefined ? [] : [t];
        }),
      };
    });
    const isDetected = (r: SampledResult) => (DETECTED as readonly string[]).includes(r.status);
    const isUndetected = (r: SampledResult) => (UNDETECTED as readonly string[]).includes(r.status);
    const detected = results.filter(isDetected);
    const undetected = results.filter(isUndetected);
    const valid = detected.length + undetected.length;
    const { low, high } = wilson(detected.length, valid);
    const pct = (x: number) => `${(100 * x).toFixed(1)} %`;
    const minutes = Math.round((performance.now() - t0) / 6000) / 10;

    console.log(`\nsample of ${results.length} mutants (seed ${opts.seed}) out of ${all.length}, ${minutes} min:`);
    const byFile = new Map<string, { all: number; drawn: number; detected: number; valid: number }>();
    for (const m of all) {
      const f = byFile.get(m.file) ?? { all: 0, drawn: 0, detected: 0, valid: 0 };
      f.all++;
      byFile.set(m.file, f);
    }
    for (const r of results) {
      const f = byFile.get(r.file) as { drawn: number; detected: number; valid: number };
      f.drawn++;
      if (isDetected(r)) f.detected++;
      if (isDetected(r) || isUndetected(r)) f.valid++;
    }
    for (const [file, f] of byFile) console.log(`  ${file}: ${f.all} mutants, ${f.drawn} drawn, ${f.detected} of ${f.valid} detected`);
    const statuses = new Map<string, number>();
    for (const r of results) statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1);
    console.log(`  statuses: ${[...statuses].map(([s, n]) => `${s} ${n}`).join(', ')}`);
    console.log(`estimated mutation score: ${pct(valid === 0 ? 0 : detected.length / valid)} (${detected.length} of ${valid} detected), 95 % interval ${pct(low)} to ${pct(high)}`);
    for (const r of undetected) console.log(`  ${r.status.toLowerCase()}: ${r.file}:${r.line} ${r.mutatorName}: ${JSON.stringify(r.original.slice(0, 160))} -> ${JSON.stringify(r.replacement.slice(0, 160))}`);

    const summary = { seed: opts.seed, population: all.length, drawn: results.length, detected: detected.length, valid, score: valid === 0 ? 0 : detected.length / valid, interval95: { low, high }, minutes, results };
    writeFileSync(join(opts.out, 'sample.json'), `${JSON.stringify(summary, null, 2)}\n`);
    console.log(`results written to ${relative(ROOT, join(opts.out, 'sample.json'))}`);

    if (opts.catalogue) {
      const entries: CatalogueEntry[] = results
        .filter((r) => r.status === 'Killed' && r.killedBy.length > 0)
        .map((r) => {
          const m = sample.find((s) => mutantKey(s) === r.key) as MutantRef;
          const { search, replace } = uniquePatch(sourceOf(m.file), m);
          return {
            key: r.key,
            file: r.file,
            line: r.line,
            mutatorName: r.mutatorName,
            original: r.original,
            replacement: r.replacement,
            search,
            replace,
            testFiles: [...new Set(r.killedBy.map((t) => t.file))].sort(),
            killedBy: [...new Set(r.killedBy.map((t) => t.name))].sort(),
          };
        });
      writeFileSync(CATALOGUE, `${JSON.stringify({ seed: opts.seed, entries }, null, 2)}\n`);
      console.log(`${entries.length} killed mutants written to ${relative(ROOT, CATALOGUE)}`);
    }
    return 0;
  } finally {
    rmSync(work, { recursive: true, force: true });
    current.dir = undefined;
  }
}

command(options, USAGE, (e) => e instanceof MutationArgumentError, main);
