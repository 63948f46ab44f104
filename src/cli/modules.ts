/**
 * The user's module of a CLI command (`worker <module>`, `graph <module>`): imported,
 * and every exported worker and saga definition collected (exports that are arrays of
 * them count too).
 */
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { isDefinedSaga } from '../define.ts';
import type { SagaDefinition, WorkerDefinition } from '../types.ts';
import { CliError, EXIT } from './connection.ts';

export interface Definitions {
  readonly workers: WorkerDefinition[];
  readonly sagas: SagaDefinition[];
}

const isWorker = (v: unknown): v is WorkerDefinition => typeof v === 'object' && v !== null && (v as { kind?: unknown }).kind === 'worker';

/** Imports `path` (relative to the working directory) and collects its worker and saga definitions. */
export async function loadDefinitions(path: string): Promise<Definitions> {
  let mod: Record<string, unknown>;
  try {
    mod = (await import(pathToFileURL(resolve(path)).href)) as Record<string, unknown>;
  } catch (error) {
    const e = error as NodeJS.ErrnoException;
    const why = e.code === 'ERR_MODULE_NOT_FOUND' ? 'no such module' : e.code === 'ERR_UNKNOWN_FILE_EXTENSION' ? `${e.message} (run TypeScript through tsx: npx tsx node_modules/.bin/scatter-saga …, or build it to JavaScript)` : e.message;
    throw new CliError(`cannot load ${path}: ${why}`, EXIT.usage);
  }
  const workers = new Map<string, WorkerDefinition>();
  const sagas = new Map<string, SagaDefinition>();
  for (const value of Object.values(mod)) {
    for (const v of Array.isArray(value) ? value : [value]) {
      if (isWorker(v)) workers.set(v.name, v);
      else if (isDefinedSaga(v)) sagas.set(`${v.name}@${v.version}`, v);
    }
  }
  // A module namespace lists its exports by name: sort by what they define instead.
  return {
    workers: [...workers.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0)),
    sagas: [...sagas.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : a.version - b.version)),
  };
}
