/**
 * The pieces of the sampled mutation score (mutants/stryker-report.ts) and CI's catalogue
 * of killed mutants (mutants/catalogue.json): the draw is uniform and replayable, the
 * interval is Wilson's, a mutant's patch rewrites exactly its node, and every catalogued
 * patch applies to the sources as they are. The runs themselves are slow and run only as
 * `npm run mutate:sample` and `npm run mutate:check` (the latter in CI).
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import {
  draw,
  flags,
  mutantKey,
  mutantsOf,
  MutationArgumentError,
  mutateRange,
  offsetOf,
  originalText,
  StrykerReportError,
  uniquePatch,
  wholeNumber,
  wilson,
} from '../../mutants/stryker-report.ts';
import type { CatalogueEntry, MutantRef, Report } from '../../mutants/stryker-report.ts';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

const source = 'const a = 1;\nif (a === 1) {\n  go(a === 1);\n}\n';
// `a === 1` on line 2: 1-based columns 5 to 12 (end exclusive, as StrykerJS reports them).
const onLine2: MutantRef = { file: 'src/x.ts', mutatorName: 'EqualityOperator', replacement: 'a !== 1', location: { start: { line: 2, column: 5 }, end: { line: 2, column: 12 } } };

describe('a mutant and its source text', () => {
  it('locates 1-based positions and reads the replaced text', () => {
    expect(offsetOf(source, { line: 1, column: 1 })).toBe(0);
    expect(offsetOf(source, { line: 2, column: 1 })).toBe(13);
    expect(originalText(source, onLine2)).toBe('a === 1');
    expect(() => offsetOf(source, { line: 9, column: 1 })).toThrow(StrykerReportError);
  });

  it('widens the patch until it occurs once: the same text on line 3 is not touched', () => {
    const { search, replace } = uniquePatch(source, onLine2);
    expect(source.split(search).length - 1).toBe(1);
    const patched = source.replace(search, replace);
    expect(patched).toBe('const a = 1;\nif (a !== 1) {\n  go(a === 1);\n}\n');
  });

  it('has the identity and the mutate range StrykerJS uses (0-based columns in the range)', () => {
    expect(mutantKey(onLine2)).toBe('src/x.ts@2:5-2:12\nEqualityOperator: a !== 1');
    expect(mutateRange(onLine2)).toBe('src/x.ts:2:4-2:11');
  });

  it('lists the mutants of a report in file order, and refuses a report without files', () => {
    const report = {
      schemaVersion: '2',
      thresholds: { high: 95, low: 90 },
      files: {
        'src/b.ts': { language: 'typescript', source: '', mutants: [{ id: '2', mutatorName: 'M', location: onLine2.location, status: 'Killed' }] },
        'src/a.ts': { language: 'typescript', source: '', mutants: [{ id: '1', mutatorName: 'N', replacement: 'x', location: onLine2.location, status: 'Survived' }] },
      },
    } satisfies Report;
    expect(mutantsOf(report).map((m) => [m.file, m.replacement])).toEqual([
      ['src/a.ts', 'x'],
      ['src/b.ts', 'M'],
    ]);
    expect(() => mutantsOf({} as Report)).toThrow(StrykerReportError);
  });
});

describe('the draw and the score', () => {
  const items = Array.from({ length: 100 }, (_, i) => i);

  it('draws distinct items, in order, the same for the same seed and differently for another', () => {
    const a = draw(items, 10, 7);
    expect(a).toHaveLength(10);
    expect(new Set(a).size).toBe(10);
    expect([...a].sort((x, y) => x - y)).toEqual(a);
    expect(draw(items, 10, 7)).toEqual(a);
    expect(draw(items, 10, 8)).not.toEqual(a);
    expect(draw(items, 500, 1)).toEqual(items);
    expect(() => draw(items, -1, 1)).toThrow(RangeError);
  });

  it('draws every item about equally often (uniform)', () => {
    const hits = new Array<number>(items.length).fill(0);
    for (let seed = 0; seed < 2000; seed++) for (const i of draw(items, 10, seed)) hits[i] = (hits[i] as number) + 1;
    // 20,000 draws over 100 items: 200 each on average; a binomial sd of about 13.4.
    expect(Math.min(...hits)).toBeGreaterThan(140);
    expect(Math.max(...hits)).toBeLessThan(260);
  });

  it('gives the Wilson 95 % interval', () => {
    const { low, high } = wilson(54, 60);
    expect(low).toBeCloseTo(0.7986, 3);
    expect(high).toBeCloseTo(0.9534, 3);
    expect(wilson(0, 0)).toEqual({ low: 0, high: 1 });
    expect(wilson(10, 10).high).toBeCloseTo(1, 12);
    expect(wilson(10, 10).low).toBeCloseTo(0.7225, 3);
  });
});

describe('the command line', () => {
  it('takes known flags and whole numbers, and names what is wrong', () => {
    expect(flags(['--count', '5'], { count: { type: 'string' } }).count).toBe('5');
    expect(() => flags(['--cuont', '5'], { count: { type: 'string' } })).toThrow(MutationArgumentError);
    expect(() => flags(['extra'], { count: { type: 'string' } })).toThrow(MutationArgumentError);
    expect(wholeNumber('count', '5', 1, 3)).toBe(5);
    expect(wholeNumber('count', undefined, 1, 3)).toBe(3);
    expect(() => wholeNumber('count', '0', 1, 3)).toThrow(/--count: '0' is not a whole number >= 1/);
    expect(() => wholeNumber('count', '2.5', 1, 3)).toThrow(MutationArgumentError);
  });
});

describe('the catalogue CI re-checks', () => {
  const file = join(ROOT, 'mutants', 'catalogue.json');

  it('exists, and each entry applies to the sources as they are, and names the test files that killed it', () => {
    expect(existsSync(file), 'mutants/catalogue.json: run npm run mutate:sample -- --catalogue').toBe(true);
    const { entries } = JSON.parse(readFileSync(file, 'utf8')) as { entries: CatalogueEntry[] };
    expect(entries.length).toBeGreaterThanOrEqual(20);
    for (const e of entries) {
      const text = readFileSync(join(ROOT, e.file), 'utf8');
      expect(text.split(e.search).length - 1, `${e.key}: its search string must occur once in ${e.file}`).toBe(1);
      expect(e.search).toContain(e.original);
      expect(e.replace).toContain(e.replacement);
      expect(e.testFiles.length).toBeGreaterThan(0);
      for (const t of e.testFiles) {
        expect(t, e.key).toMatch(/^test\/(model|property)\//);
        expect(existsSync(join(ROOT, t)), `${e.key}: ${t}`).toBe(true);
      }
    }
  });
});
