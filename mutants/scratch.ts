/**
 * Scratch copies of the repository for mutants, and the commands run in them: each
 * command in its own process group, killed with its children at its bound; the command
 * running now and the copy in use are ended and removed if this process is interrupted.
 * Shared by `npm run mutants` (mutants/run.ts), `npm run mutate:sample` (mutants/sample.ts)
 * and `npm run mutate:check` (mutants/check.ts), with the way each runs as a command.
 */
import { spawn } from 'node:child_process';
import { cpSync, mkdtempSync, readdirSync, realpathSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
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
