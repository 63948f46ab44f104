/**
 * StrykerJS's JSON report (the mutation-testing-report schema) as `npm run mutate:sample`
 * reads and writes it, and the pure pieces of a sampled mutation score: the identity of a
 * mutant, its source text, a seeded draw, the score and its confidence interval, and the
 * catalogue of killed mutants that CI re-checks (`npm run mutate:check`), and the command
 * line both read.
 */
import { parseArgs } from 'node:util';
import { prng } from '../test/helpers/random.ts';
import { occurrences } from './table.ts';

export interface Position {
  /** 1-based. */
  readonly line: number;
  /** 1-based, in UTF-16 code units. */
  readonly column: number;
}

export interface Location {
  readonly start: Position;
  readonly end: Position;
}

export type MutantStatus = 'Killed' | 'Survived' | 'NoCoverage' | 'Timeout' | 'CompileError' | 'RuntimeError' | 'Ignored' | 'Pending';

export interface ReportMutant {
  readonly id: string;
  readonly mutatorName: string;
  readonly replacement?: string;
  readonly location: Location;
  readonly status: MutantStatus;
  readonly statusReason?: string;
  readonly killedBy?: readonly string[];
  readonly coveredBy?: readonly string[];
  readonly static?: boolean;
  readonly testsCompleted?: number;
}

export interface ReportTest {
  readonly id: string;
  readonly name: string;
  readonly location?: { readonly start: Position };
}

export interface Report {
  readonly schemaVersion: string;
  readonly thresholds: { readonly high: number; readonly low: number };
  readonly projectRoot?: string;
  readonly files: Record<string, { readonly language: string; readonly source: string; readonly mutants: readonly ReportMutant[] }>;
  readonly testFiles?: Record<string, { readonly source?: string; readonly tests: readonly ReportTest[] }>;
}

/** One mutant of the guarantee code, wherever it was enumerated or run. */
export interface MutantRef {
  /** Relative to the repository root. */
  readonly file: string;
  readonly mutatorName: string;
  readonly replacement: string;
  readonly location: Location;
}

/** A report that is not what this tool expects: names what is missing. */
export class StrykerReportError extends Error {
  override readonly name = 'StrykerReportError';
}

/** Every mutant of a report, in file order then position order. */
export function mutantsOf(report: Report): (MutantRef & { readonly result: ReportMutant })[] {
  if (typeof report !== 'object' || report === null || typeof report.files !== 'object' || report.files === null) {
    throw new StrykerReportError('the report has no "files" object');
  }
  return Object.keys(report.files)
    .sort()
    .flatMap((file) =>
      (report.files[file]?.mutants ?? []).map((m) => ({ file, mutatorName: m.mutatorName, replacement: m.replacement ?? m.mutatorName, location: m.location, result: m })),
    );
}

/** The identity StrykerJS gives a mutant across runs (file, position, mutator and replacement). */
export const mutantKey = (m: MutantRef): string =>
  `${m.file}@${m.location.start.line}:${m.location.start.column}-${m.location.end.line}:${m.location.end.column}\n${m.mutatorName}: ${m.replacement}`;

/** The `mutate` entry of a StrykerJS configuration that selects this mutant's node (its lines are 1-based, its columns 0-based). */
export const mutateRange = (m: MutantRef): string =>
  `${m.file}:${m.location.start.line}:${m.location.start.column - 1}-${m.location.end.line}:${m.location.end.column - 1}`;

/** Offset in `source` of a 1-based position. */
export function offsetOf(source: string, p: Position): number {
  let offset = 0;
  for (let line = 1; line < p.line; line++) {
    const nl = source.indexOf('\n', offset);
    if (nl === -1) throw new StrykerReportError(`line ${p.line} is past the end of the source`);
    offset = nl + 1;
  }
  return offset + p.column - 1;
}

/** The original text a mutant replaces. */
export const originalText = (source: string, m: MutantRef): string => source.slice(offsetOf(source, m.location.start), offsetOf(source, m.location.end));

/** `count` distinct elements drawn uniformly without replacement, in their original order. */
export function draw<T>(items: readonly T[], count: number, seed: number): T[] {
  if (!Number.isSafeInteger(count) || count < 0) throw new RangeError(`count must be a whole number >= 0, got ${count}`);
  const next = prng(seed);
  const index = items.map((_, i) => i);
  const n = Math.min(count, items.length);
  // Partial Fisher-Yates: the first n slots end up a uniform draw.
  for (let i = 0; i < n; i++) {
    const j = i + Math.floor(next() * (index.length - i));
    [index[i], index[j]] = [index[j] as number, index[i] as number];
  }
  return index
    .slice(0, n)
    .sort((x, y) => x - y)
    .map((i) => items[i] as T);
}

/** Counted in the score as StrykerJS counts it: detected (killed or timed out) over detected and undetected (survived or without coverage); errors and ignored mutants are left out. */
export const DETECTED: readonly MutantStatus[] = ['Killed', 'Timeout'];
export const UNDETECTED: readonly MutantStatus[] = ['Survived', 'NoCoverage'];

/** The Wilson score interval of a proportion at 95 % confidence. */
export function wilson(detected: number, valid: number, z = 1.959964): { low: number; high: number } {
  if (valid === 0) return { low: 0, high: 1 };
  const p = detected / valid;
  const z2 = z * z;
  const centre = (p + z2 / (2 * valid)) / (1 + z2 / valid);
  const half = (z * Math.sqrt((p * (1 - p)) / valid + z2 / (4 * valid * valid))) / (1 + z2 / valid);
  return { low: Math.max(0, centre - half), high: Math.min(1, centre + half) };
}

/** A mutant as the sample reports it: where it is, what it replaces and with what. */
export interface MutantSummary {
  readonly key: string;
  readonly file: string;
  /** 1-based line of its start. */
  readonly line: number;
  readonly mutatorName: string;
  readonly original: string;
  readonly replacement: string;
}

/**
 * A killed mutant that CI applies again (`npm run mutate:check`): a textual patch (a
 * search string that occurs once in the file, and its replacement) and the test files
 * that killed it under `vitest.mutate.config.ts`.
 */
export interface CatalogueEntry extends MutantSummary {
  readonly search: string;
  readonly replace: string;
  /** Test files (relative) holding a test that killed the mutant. */
  readonly testFiles: readonly string[];
  /** Names of the tests that killed it. */
  readonly killedBy: readonly string[];
}

/** The smallest search string around a mutant that occurs exactly once in `source`, widened a character at a time on each side, and its mutated form. */
export function uniquePatch(source: string, m: MutantRef): { search: string; replace: string } {
  const start = offsetOf(source, m.location.start);
  const end = offsetOf(source, m.location.end);
  for (let pad = 0; start - pad >= 0 || end + pad <= source.length; pad++) {
    const from = Math.max(0, start - pad);
    const to = Math.min(source.length, end + pad);
    const search = source.slice(from, to);
    if (search.length > 0 && occurrences(source, search) === 1) {
      return { search, replace: source.slice(from, start) + m.replacement + source.slice(end, to) };
    }
  }
  throw new StrykerReportError(`no unique search string for ${mutantKey(m)}`);
}

/** A bad command-line argument of `npm run mutate:sample` or `npm run mutate:check`: names it and says what is accepted. */
export class MutationArgumentError extends Error {
  override readonly name = 'MutationArgumentError';
}

/** The named flags of a command line (strings and booleans, no positionals), or a MutationArgumentError naming the bad one. */
export function flags<T extends Record<string, { type: 'string' | 'boolean' }>>(argv: readonly string[], spec: T) {
  try {
    return parseArgs({ args: [...argv], strict: true, allowPositionals: false, options: spec }).values;
  } catch (error) {
    throw new MutationArgumentError(error instanceof Error ? error.message : String(error));
  }
}

/** A whole-number flag, at least `min`; `fallback` when it is absent. */
export function wholeNumber(flag: string, value: string | boolean | undefined, min: number, fallback: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (typeof value !== 'string' || !/^\d+$/.test(value) || !Number.isSafeInteger(n) || n < min) throw new MutationArgumentError(`--${flag}: '${String(value)}' is not a whole number >= ${min}`);
  return n;
}

/** A seed for a draw: the one given, else a random one (which the caller prints, so the draw can be replayed). */
export const seedOf = (value: string | boolean | undefined): number => wholeNumber('seed', value, 0, Math.floor(Math.random() * 2 ** 31));
