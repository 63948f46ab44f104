/**
 * Scratch copies of the repository for mutants, and the commands run in them: each
 * command in its own process group, killed with its children at its bound; the command
 * running now and the copy in use are ended and removed if this process is interrupted.
 * Shared by `npm run mutants` (mutants/run.ts), `npm run mutate:sample` (mutants/sample.ts)
 * and `npm run mutate:check` (mutants/check.ts), with the way each runs as a command.
 */
import { spawn } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readFileSync, readdirSync, realpathSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');

/** Killed mutants of the guarantee code that CI re-applies (written by `npm run mutate:sample -- --catalogue`, read by `npm run mutate:check`). */
export const CATALOGUE = join(ROOT, 'mutants', 'catalogue.json');

/** The command running now (its process group) and the scratch copy in use: ended and removed if this process is interrupted. */
export const current: { pid: number | undefined; dir: string | undefined } = { pid: undefined, dir: undefined };

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    if (current.pid !== undefined) {
      try {
        process.kill(-current.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    if (current.dir !== undefined) rmSync(current.dir, { recursive: true, force: true });
    console.error(`interrupted (${signal})`);
    process.exit(130);
  });
}

/** Runs a command in its own process group, killed (with its children) at the bound; `echo` also copies its output to this process's stdout as it comes. */
export function run(cmd: string, args: readonly string[], cwd: string, env: NodeJS.ProcessEnv, timeoutMs: number, echo = false): Promise<{ code: number | null; out: string; timedOut: boolean }> {
  return new Promise((done) => {
    const child = spawn(cmd, args, { cwd, env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    current.pid = child.pid;
    let out = '';
    const take = (d: Buffer) => {
      out += d.toString();
      if (echo) process.stdout.write(d);
    };
    child.stdout.on('data', take);
    child.stderr.on('data', take);
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      try {
        process.kill(-(child.pid as number), 'SIGKILL');
      } catch {
        // already gone
      }
    }, timeoutMs);
    child.on('close', (code) => {
      clearTimeout(timer);
      current.pid = undefined;
      done({ code, out, timedOut });
    });
  });
}

/** A scratch copy of what the suites need, with node_modules linked. */
export function copyRepo(label: string): string {
  const dir = mkdtempSync(join(tmpdir(), `scatter-saga-mutant-${label}-`));
  for (const d of ['src', 'test']) cpSync(join(ROOT, d), join(dir, d), { recursive: true });
  for (const f of readdirSync(ROOT)) {
    if (f === 'package.json' || /^tsconfig.*\.json$/.test(f) || /^vitest.*\.config\.ts$/.test(f)) cpSync(join(ROOT, f), join(dir, f));
  }
  symlinkSync(realpathSync(join(ROOT, 'node_modules')), join(dir, 'node_modules'), 'dir');
  // The sources and the two suites (with what they import) are type-checked.
  writeFileSync(join(dir, 'tsconfig.mutants.json'), JSON.stringify({ extends: './tsconfig.json', include: ['src', 'test/model', 'test/property'] }));
  return dir;
}

export const env = (): NodeJS.ProcessEnv => {
  const e: NodeJS.ProcessEnv = { ...process.env, SCATTER_SAGA_END_ON_FAILURE: '1', FORCE_COLOR: '0', NO_COLOR: '1' };
  // Deep runs, random seeds and replays change what the suites run: each suite runs as CI runs it.
  for (const k of ['SCATTER_SAGA_DEEP', 'SCATTER_SAGA_SEED', 'SCATTER_SAGA_PATH', 'SCATTER_SAGA_RANDOM']) delete e[k];
  return e;
};


/**
 * Runs a command-line tool: parses its arguments (a bad one prints the error and the
 * usage, exit 2), prints the usage for --help, runs it, and exits with its code (1, with
 * the error, when it throws).
 */
export function command<O extends { readonly help: boolean }>(parse: (argv: readonly string[]) => O, usage: string, isArgumentError: (error: unknown) => boolean, body: (options: O) => Promise<number>): void {
  const start = async (): Promise<number> => {
    let options: O;
    try {
      options = parse(process.argv.slice(2));
    } catch (error) {
      if (!isArgumentError(error)) throw error;
      console.error(`${(error as Error).name}: ${(error as Error).message}\n\n${usage}`);
      return 2;
    }
    if (options.help) {
      console.log(usage);
      return 0;
    }
    return body(options);
  };
  start().then(
    (code) => process.exit(code),
    (error: unknown) => {
      console.error(error instanceof Error ? `${error.name}: ${error.message}` : error);
      process.exit(1);
    },
  );
}

/** What a suite run did to a mutant: it failed a test (caught), passed every test (missed), or could not be judged (error). */
export type Verdict = 'caught' | 'missed' | 'error';

interface VitestJson {
  numPassedTests: number;
  testResults: { name: string; status: string; message?: string; assertionResults: { fullName: string; status: string; failureMessages: string[] }[] }[];
}

/** What a failure says: the first property it names (`name-of-property: ...`, as both suites report them), else its first line. */
export const firstLine = (s: string) => {
  const lines = s.split('\n');
  const named = lines.map((l) => /^[\s+"-]*([a-z]+(?:-[a-z]+)+: .*)$/.exec(l)?.[1]).find((l) => l !== undefined);
  return (named ?? lines.find((l) => l.trim() !== '') ?? s).trim().replace(/",?$/, '').slice(0, 200);
};

/**
 * The verdict of a vitest run (`run`'s result, and the JSON report it was told to write):
 * caught when a test failed (the failed tests), an error when it timed out, wrote no
 * report, failed without a failed test or ran no test (why), missed otherwise.
 */
export function judge(r: { code: number | null; timedOut: boolean }, report: string, bound: string): { verdict: Verdict; detail: string[] } {
  if (r.timedOut) return { verdict: 'error', detail: [`no result within ${bound}`] };
  if (!existsSync(report)) return { verdict: 'error', detail: [`vitest exited with ${r.code} and wrote no report`] };
  const json = JSON.parse(readFileSync(report, 'utf8')) as VitestJson;
  const failed = json.testResults.flatMap((f) => f.assertionResults.filter((a) => a.status === 'failed').map((a) => `${a.fullName}: ${firstLine(a.failureMessages[0] ?? '')}`));
  if (failed.length > 0) return { verdict: 'caught', detail: failed };
  const broken = json.testResults.filter((f) => f.status === 'failed').map((f) => `${f.name}: ${firstLine(f.message ?? 'failed')}`);
  if (r.code !== 0 || broken.length > 0) return { verdict: 'error', detail: broken.length > 0 ? broken : [`vitest exited with ${r.code} and no failed test`] };
  if (json.numPassedTests === 0) return { verdict: 'error', detail: ['no test ran'] };
  return { verdict: 'missed', detail: [`${json.numPassedTests} test(s) passed`] };
}
