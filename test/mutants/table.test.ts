/**
 * The table of planted bugs (mutants/table.ts) and the command line of `npm run mutants`:
 * every patch applies to the sources as they are (its search string occurs exactly once),
 * names are unique, and bad arguments get a typed error. The sweep itself is slow and
 * runs only as `npm run mutants`.
 */
import { mkdtempSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { MutantsArgumentError, parseArgs } from '../../mutants/args.ts';
import { applyMutant, checkTable, MUTANTS, MutantPatchError, MutantTableError, patchedFiles } from '../../mutants/table.ts';
import type { Mutant } from '../../mutants/table.ts';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

describe('the table of planted bugs', () => {
  it('has unique kebab-case names and edits under src/', () => {
    expect(() => checkTable()).not.toThrow();
    expect(new Set(MUTANTS.map((m) => m.name)).size).toBe(MUTANTS.length);
    expect(MUTANTS.length).toBeGreaterThanOrEqual(7);
  });

  it.each(MUTANTS.map((m) => [m.name, m] as const))('%s applies to the current sources: each search string occurs exactly once', (_, m) => {
    for (const e of m.edits) {
      const text = readFileSync(join(ROOT, e.file), 'utf8');
      expect(text.split(e.search).length - 1, `${e.file}: ${JSON.stringify(e.search)}`).toBe(1);
    }
    const patched = patchedFiles(ROOT, m);
    for (const [file, text] of patched) expect(text).not.toBe(readFileSync(join(ROOT, file), 'utf8'));
  });

  it('refuses a duplicate name, an edit outside src/, an empty or unchanged search', () => {
    const one = MUTANTS[0] as Mutant;
    expect(() => checkTable([one, one])).toThrow(MutantTableError);
    expect(() => checkTable([{ ...one, edits: [{ file: 'test/x.ts', search: 'a', replace: 'b' }] }])).toThrow(/outside src/);
    expect(() => checkTable([{ ...one, edits: [{ file: 'src/x.ts', search: '', replace: 'b' }] }])).toThrow(/empty search/);
    expect(() => checkTable([{ ...one, edits: [{ file: 'src/x.ts', search: 'a', replace: 'a' }] }])).toThrow(/with itself/);
    expect(() => checkTable([{ ...one, name: 'Not Kebab' }])).toThrow(/kebab-case/);
  });

  it('fails loudly on a search string that is missing or occurs twice, and patches a copy otherwise', () => {
    const dir = mkdtempSync(join(tmpdir(), 'scatter-saga-table-'));
    mkdirSync(join(dir, 'src'));
    writeFileSync(join(dir, 'src/a.ts'), 'x = 1;\ny = 2;\ny = 2;\n');
    const m = (search: string): Mutant => ({ name: 'm', breaks: 'b', edits: [{ file: 'src/a.ts', search, replace: 'z = 3;' }] });
    expect(() => applyMutant(dir, m('w = 0;'))).toThrow(MutantPatchError);
    expect(() => applyMutant(dir, m('y = 2;'))).toThrow(/occurs 2 time\(s\) in src\/a.ts/);
    applyMutant(dir, m('x = 1;'));
    expect(readFileSync(join(dir, 'src/a.ts'), 'utf8')).toBe('z = 3;\ny = 2;\ny = 2;\n');
  });
});

describe('npm run mutants arguments', () => {
  const errorOf = (argv: string[]): MutantsArgumentError => {
    try {
      parseArgs(argv);
    } catch (error) {
      expect(error).toBeInstanceOf(MutantsArgumentError);
      return error as MutantsArgumentError;
    }
    throw new Error(`parseArgs accepted ${JSON.stringify(argv)}`);
  };

  it('defaults to every mutant and both suites', () => {
    const o = parseArgs([]);
    expect(o.only).toEqual(MUTANTS.map((m) => m.name));
    expect(o.suites).toEqual(['model', 'property']);
    expect(o.json).toBeUndefined();
    expect(o.help).toBe(false);
  });

  it('selects mutants in table order, one suite, a JSON file and a bound', () => {
    const [a, b] = MUTANTS as [Mutant, Mutant];
    const o = parseArgs(['--only', `${b.name},${a.name}`, '--suite=model', '--json', 'out.json', '--timeout', '60']);
    expect(o.only).toEqual([a.name, b.name]);
    expect(o.suites).toEqual(['model']);
    expect(o.json).toBe('out.json');
    expect(o.timeoutSeconds).toBe(60);
    expect(parseArgs(['--suite', 'both']).suites).toEqual(['model', 'property']);
    expect(parseArgs(['--help']).help).toBe(true);
  });

  it('names the bad argument', () => {
    expect(errorOf(['--onyl', 'x']).argument).toBe('--onyl');
    expect(errorOf(['--only', 'no-such-mutant']).message).toMatch(/no mutant named 'no-such-mutant'/);
    expect(errorOf(['--only']).message).toMatch(/needs a value/);
    expect(errorOf(['--only', '--suite', 'model']).message).toMatch(/needs a value/);
    expect(errorOf(['--suite', 'all']).message).toMatch(/not model, property or both/);
    expect(errorOf(['--timeout', '0']).argument).toBe('--timeout');
    expect(errorOf(['--timeout', '1.5']).argument).toBe('--timeout');
    expect(errorOf(['--json=']).message).toMatch(/needs a value/);
    expect(errorOf(['--suite', 'model', '--suite', 'property']).message).toMatch(/given twice/);
    expect(errorOf(['--help=yes']).message).toMatch(/takes no value/);
  });
});
