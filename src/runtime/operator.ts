/**
 * The operator API: retry and resolve a parked saga (from any coordinator sharing the
 * store), a saga's status, the dead letters, and the outcome of a saga by its id.
 */
import { randomUUID } from 'node:crypto';
import { InvalidOptionError, ResolveError, SagaError, SagaNotFoundError, toErrorInfo } from '../errors.ts';
import type { ErrorInfo, FencedEffect } from '../errors.ts';
import { fenceOfReply, fenceVerdict, parseReviewToken, reviewToken } from '../machines/fence-verdict.ts';
import { outcomeOf } from '../machines/saga-logic.ts';
import type { MachineStateName, SagaContext, StepStatus } from '../machines/saga-logic.ts';
import { PROTOCOL_VERSION } from '../types.ts';
import type { DeadLetter, FenceRecord, RemainingEffect, SagaDefinition, SagaOutcome, SagaRecord, VersionedSagaRecord, WorkerRequest } from '../types.ts';
import type { ListOptions, ResolveOptions, SagaStatus, SagaSummary } from './api.ts';
import type { Live, SagaDriver } from './driver.ts';

const notParked = (sagaId: string) => new SagaError('SAGA_NOT_PARKED', `saga '${sagaId}' is not parked in compensation-failed; only parked sagas take operator commands`);

/**
 * A saga parked here stays in this runtime, but an operator may since have retried or
 * resolved it from another coordinator, which took it over: its journal then holds
 * another revision. Such a stale entry is dropped (undefined); the journal is the truth.
 * The journal as read is passed on, so that the caller need not read it again.
 */
async function currentParked(driver: SagaDriver, entry: Live): Promise<{ entry: Live | undefined; found?: VersionedSagaRecord | undefined }> {
  // A write of it in flight: its revision is not known here yet, and it is ours.
  if (entry.writes > 0) return { entry };
  const found = await driver.store.load(entry.header.sagaId);
  // Absent (forgotten, or lost by the store): this runtime's parked saga is all there is.
  if (found === undefined || found.revision === entry.revision) return { entry, found };
  if (!entry.parked || entry.writes > 0 || driver.live.get(entry.header.sagaId) !== entry) return { entry };
  driver.stop(entry, new SagaError('SAGA_FENCED', `saga '${entry.header.sagaId}' was taken over by another coordinator while parked here`));
  return { entry: undefined, found };
}

/**
 * Takes a saga over from its journal so that an operator command can act on it here: it
 * needs the saga's definition, and fails when another coordinator took it meanwhile.
 */
async function takeOverForOperator(driver: SagaDriver, found: VersionedSagaRecord): Promise<Live> {
  const r = found.record;
  const def = driver.definitionOf(r);
  if (def === undefined) {
    throw new SagaError('SAGA_NOT_FOUND', `saga '${r.sagaId}' is ${r.status}, but this runtime has no definition of '${r.saga}' version ${r.version}: pass it in the sagas option`);
  }
  driver.ensureOpen();
  const entry = await driver.takeOver(def, found);
  if (entry === undefined) throw new SagaError('SAGA_FENCED', `saga '${r.sagaId}' was taken by another coordinator meanwhile`);
  return entry;
}

/** The parked saga an operator acts on: driven here, or taken over from the store (another coordinator parked it). */
async function parkedEntry(driver: SagaDriver, sagaId: string): Promise<Live> {
  if (typeof sagaId !== 'string') throw new InvalidOptionError('sagaId', 'must be a string');
  const here = driver.live.get(sagaId);
  if (here !== undefined) {
    if (!here.parked) throw notParked(sagaId);
    if ((await currentParked(driver, here)).entry !== undefined) return here;
  }
  const found = await driver.store.load(sagaId);
  if (found === undefined) throw new SagaNotFoundError(sagaId);
  if (found.record.status !== 'parked') throw notParked(sagaId);
  const entry = await takeOverForOperator(driver, found);
  // Restored parked: it is parked again (dead letter re-established) once that is journaled.
  await driver.attach(entry);
  if (!entry.parked) throw notParked(sagaId);
  return entry;
}

/** Sends an operator command (retry or resolve) to a parked saga; resolves with its next outcome. */
export async function operator(driver: SagaDriver, sagaId: string, event: { type: 'OPERATOR.RETRY' } | { type: 'OPERATOR.RESOLVE'; note?: string }): Promise<SagaOutcome> {
  driver.ensureOpen();
  return send(driver, await parkedEntry(driver, sagaId), event);
}

function send(driver: SagaDriver, entry: Live, event: { type: 'OPERATOR.RETRY' } | { type: 'OPERATOR.RESOLVE'; note?: string }): Promise<SagaOutcome> {
  const outcome = new Promise<SagaOutcome>((resolve, reject) => entry.waiters.push({ resolve, reject }));
  entry.parked = false;
  entry.idle = false;
  driver.admission.enter();
  driver.logger.info({ sagaId: entry.header.sagaId, action: event.type, note: 'note' in event ? event.note : undefined }, 'operator action');
  // The machine journals the resumed compensation (and clears the dead letter) before it sends anything.
  entry.actor.send(event);
  return outcome;
}

/**
 * See `Runtime.abort`. A saga driven here gets OPERATOR.ABORT at once; one driven elsewhere
 * (or by nobody) is taken over from its journal first, which fences off its coordinator.
 */
export async function abortRunning(driver: SagaDriver, sagaId: string, note?: string): Promise<SagaOutcome> {
  driver.ensureOpen();
  if (typeof sagaId !== 'string' || sagaId.length === 0) throw new InvalidOptionError('sagaId', 'must be a non-empty string');
  if (note !== undefined && typeof note !== 'string') throw new InvalidOptionError('note', 'must be a string');
  const notRunning = (state: string) =>
    new SagaError('SAGA_NOT_RUNNING', `saga '${sagaId}' is ${state}, not running: only a running saga can be aborted${state === 'parked' ? ' (retry or resolve a parked one)' : ''}`);
  let entry = driver.live.get(sagaId);
  if (entry === undefined) {
    const found = await driver.store.load(sagaId);
    if (found === undefined) throw new SagaNotFoundError(sagaId);
    const r = found.record;
    if (r.outcome !== undefined) throw notRunning(r.outcome.status);
    if (r.status !== 'running') throw notRunning(r.status);
    entry = await takeOverForOperator(driver, found);
  }
  const state = entry.actor.getSnapshot().value as MachineStateName;
  if (entry.parked || state === 'compensationFailed') throw notRunning('parked');
  if (state === 'committed' || state === 'compensated') throw notRunning(state);
  const outcome = driver.attach(entry);
  if (state !== 'compensating') {
    driver.logger.info({ sagaId, action: 'OPERATOR.ABORT', note }, 'operator action');
    entry.actor.send({ type: 'OPERATOR.ABORT', ...(note !== undefined ? { note } : {}) });
  }
  return outcome;
}

/** How long a fence waits for its key by default (a `do` that still runs is waited for). */
const DEFAULT_FENCE_TIMEOUT_MS = 10_000;

/** The effects a parked saga lists as remaining. */
function remainingOf(entry: Live): readonly RemainingEffect[] {
  const parked = outcomeOf(entry.def, entry.actor.getSnapshot().context, 'compensationFailed');
  return parked?.status === 'compensation-failed' ? parked.remaining : [];
}

function resolveOptions(options: ResolveOptions | string | undefined): ResolveOptions {
  if (options === undefined) return {};
  if (typeof options === 'string') return { note: options };
  if (options === null || typeof options !== 'object') throw new InvalidOptionError('options', 'must be an object { note?, reviewed?, force?, fenceTimeoutMs? } or a note string');
  for (const k of Object.keys(options)) if (k !== 'note' && k !== 'reviewed' && k !== 'force' && k !== 'fenceTimeoutMs') throw new InvalidOptionError(k, 'unknown option (allowed: note, reviewed, force, fenceTimeoutMs)');
  const t = options.fenceTimeoutMs;
  if (t !== undefined && (typeof t !== 'number' || !Number.isFinite(t) || t < 1)) throw new InvalidOptionError('fenceTimeoutMs', 'must be a number of milliseconds >= 1');
  if (options.note !== undefined && typeof options.note !== 'string') throw new InvalidOptionError('note', 'must be a string');
  if (options.force !== undefined && typeof options.force !== 'boolean') throw new InvalidOptionError('force', 'must be true or false');
  if (options.reviewed !== undefined && (typeof options.reviewed !== 'string' || parseReviewToken(options.reviewed) === undefined)) {
    throw new InvalidOptionError('reviewed', "must be the 'review' token of a RESOLVE_NEEDS_REVIEW error, as it was given");
  }
  return options;
}

/** Fences one remaining effect's key through its worker's hosts: its fence record, or why there is none. */
async function fenceKey(driver: SagaDriver, entry: Live, effect: RemainingEffect, fence: string, timeoutMs: number): Promise<FenceRecord | ErrorInfo> {
  const req: WorkerRequest = {
    v: PROTOCOL_VERSION,
    op: 'fence',
    worker: effect.worker,
    sagaId: entry.header.sagaId,
    stepId: effect.stepId,
    key: effect.idempotencyKey,
    attempt: 1,
    // The host stops waiting for a running do a little before the transport gives up, so
    // that its IN_PROGRESS answer arrives (and says why) instead of a bare timeout.
    deadline: driver.clock.now() + Math.max(1, timeoutMs - Math.min(500, Math.floor(timeoutMs / 5))),
    input: effect.input,
    fence,
  };
  try {
    const reply = await driver.transport.request(req, timeoutMs);
    const answer = fenceOfReply(reply);
    if ('by' in answer || answer.code !== 'PROTOCOL_ERROR' || !/unknown operation|"fence"/.test(answer.message)) return answer;
    return { ...answer, message: `the hosts of worker '${effect.worker}' do not speak fence (${answer.message}): upgrade them` };
  } catch (error) {
    return toErrorInfo(error);
  }
}

/**
 * See `Runtime.resolve`. Fences every remaining key with one fence id, decides with
 * `fenceVerdict` on the dead letter the operator read (late replies while parked may settle
 * a step in doubt meanwhile: that must not count), and ends the saga only when every
 * effect is handled. Nothing is journaled otherwise.
 */
export async function resolveParked(driver: SagaDriver, sagaId: string, options?: ResolveOptions | string): Promise<SagaOutcome> {
  driver.ensureOpen();
  const o = resolveOptions(options);
  const entry = await parkedEntry(driver, sagaId);
  const event = { type: 'OPERATOR.RESOLVE' as const, ...(o.note !== undefined ? { note: o.note } : {}) };
  if (o.force === true) {
    driver.logger.warn({ sagaId }, 'resolve with force: the keys of the remaining effects were not fenced');
    return send(driver, entry, event);
  }
  const remaining = remainingOf(entry);
  const reviewed = o.reviewed === undefined ? new Set<string>() : (parseReviewToken(o.reviewed) as Set<string>);
  const fence = randomUUID();
  const answers = await Promise.all(remaining.map((e) => fenceKey(driver, entry, e, fence, o.fenceTimeoutMs ?? DEFAULT_FENCE_TIMEOUT_MS)));
  driver.ensureOpen();
  if (!entry.parked || driver.live.get(sagaId) !== entry) throw new SagaError('SAGA_NOT_PARKED', `saga '${sagaId}' was retried or resolved while this resolve fenced its keys`);
  const fences: FencedEffect[] = remaining.map((e, i) => {
    const answer = answers[i] as FenceRecord | ErrorInfo;
    const v = fenceVerdict(e, answer, reviewed);
    const base = { stepId: e.stepId, worker: e.worker, idempotencyKey: e.idempotencyKey, inDoubt: e.inDoubt, verdict: v.kind };
    return v.kind === 'failed' ? { ...base, error: v.error } : { ...base, fence: v.fence };
  });
  driver.logger.info({ sagaId, fence, fences: fences.map((f) => ({ stepId: f.stepId, verdict: f.verdict, was: f.fence?.was, code: f.error?.code })) }, 'resolve fenced the remaining keys');
  if (fences.some((f) => f.verdict === 'failed')) throw new ResolveError('FENCE_FAILED', sagaId, fences, undefined);
  const review = fences.filter((f) => f.verdict === 'review');
  if (review.length > 0) throw new ResolveError('RESOLVE_NEEDS_REVIEW', sagaId, fences, reviewToken(review.map((f) => ({ stepId: f.stepId, by: (f.fence as FenceRecord).by }))));
  // Every effect listed now was fenced above (a parked saga lists no new effect; guard anyway).
  const fenced = new Set(remaining.map((e) => e.stepId));
  const now = remainingOf(entry).filter((e) => !fenced.has(e.stepId));
  if (now.length > 0) throw new SagaError('SAGA_NOT_PARKED', `saga '${sagaId}' lists effects its resolve did not fence (${now.map((e) => `'${e.stepId}'`).join(', ')}): resolve again`);
  return send(driver, entry, event);
}

/** See `Runtime.outcome`. */
export async function outcome(driver: SagaDriver, sagaId: string, options: { timeoutMs?: number; pollMs?: number } = {}): Promise<SagaOutcome | undefined> {
  const { store, clock } = driver;
  driver.ensureOpen();
  if (typeof sagaId !== 'string' || sagaId.length === 0) throw new InvalidOptionError('sagaId', 'must be a non-empty string');
  if (options === null || typeof options !== 'object') throw new InvalidOptionError('options', 'must be an object');
  for (const k of Object.keys(options)) if (k !== 'timeoutMs' && k !== 'pollMs') throw new InvalidOptionError(k, 'unknown option (allowed: timeoutMs, pollMs)');
  const timeoutMs = options.timeoutMs ?? Number.POSITIVE_INFINITY;
  const pollMs = options.pollMs ?? 250;
  if (typeof timeoutMs !== 'number' || !(timeoutMs >= 0)) throw new InvalidOptionError('timeoutMs', 'must be a number of milliseconds >= 0');
  if (typeof pollMs !== 'number' || !Number.isFinite(pollMs) || pollMs < 1) throw new InvalidOptionError('pollMs', 'must be a number of milliseconds >= 1');
  const until = clock.now() + timeoutMs;
  for (let first = true; ; first = false) {
    // A saga parked here may since have been taken over by another coordinator: ask the store.
    const here = driver.live.get(sagaId);
    if (here !== undefined && !here.parked) {
      const attached = driver.attach(here);
      if (timeoutMs === Number.POSITIVE_INFINITY) return attached;
      return Promise.race([attached, driver.sleep(Math.max(0, until - clock.now())).then(() => undefined)]);
    }
    const rec = await store.get(sagaId);
    if (rec === undefined && first) throw new SagaNotFoundError(sagaId);
    if (rec?.outcome !== undefined) return rec.outcome;
    if (rec?.status === 'parked' && rec.parked !== undefined) return rec.parked;
    if (clock.now() >= until) return undefined;
    await driver.sleep(Math.min(pollMs, Math.max(1, until - clock.now())));
    if (driver.closed) throw new SagaError('RUNTIME_CLOSED', 'this runtime is closed');
  }
}

/** What an operator sees of one saga: driven here, or as its journal last recorded it. */
export async function status(driver: SagaDriver, sagaId: string): Promise<SagaStatus | undefined> {
  const entry = driver.live.get(sagaId);
  let known: VersionedSagaRecord | undefined;
  if (entry !== undefined) {
    const current = entry.parked ? await currentParked(driver, entry).catch(() => ({ entry, found: undefined })) : { entry };
    if (current.entry !== undefined) {
      const snap = entry.actor.getSnapshot();
      return statusOf(entry.def, snap.context, snap.value as MachineStateName);
    }
    known = current.found;
  }
  const rec: SagaRecord | undefined = entry !== undefined ? known?.record : await driver.store.get(sagaId);
  if (rec === undefined) return undefined;
  return recordStatus(rec, driver.definitionOf(rec));
}

/**
 * What a journal record says of a saga. A finished saga's record keeps each step's last
 * status; a running saga's, the statuses of its last checkpoint. A record with no
 * checkpoint yet (the intent alone) has sent its first steps, or is sending them: with
 * the saga's definition at hand they show `dispatched` and the others `pending`.
 */
export function recordStatus(rec: SagaRecord, def: SagaDefinition | undefined): SagaStatus {
  // Journaled snapshots hold the steps by id.
  const snap = rec.snapshot as { value?: MachineStateName; context?: { steps?: Record<string, { status: StepStatus }> } } | undefined;
  const steps: Record<string, StepStatus> = {};
  let state: MachineStateName = rec.outcome?.status === 'committed' ? 'committed' : rec.outcome !== undefined ? 'compensated' : (snap?.value ?? 'dispatching');
  if (snap?.context?.steps !== undefined) {
    for (const [id, s] of Object.entries(snap.context.steps)) steps[id] = s.status;
  } else if (def !== undefined && rec.outcome === undefined) {
    for (const p of def.steps) steps[p.id] = p.after.length === 0 ? 'dispatched' : 'pending';
    state = 'gathering';
  }
  // Parked by another coordinator: the record carries its compensation-failed outcome.
  return { sagaId: rec.sagaId, saga: rec.saga, version: rec.version, state, steps, outcome: rec.outcome ?? (rec.status === 'parked' ? rec.parked : undefined) };
}

/** See `Runtime.list`. */
export async function list(driver: SagaDriver, options: ListOptions = {}): Promise<SagaSummary[]> {
  if (options === null || typeof options !== 'object') throw new InvalidOptionError('options', 'must be an object');
  for (const k of Object.keys(options)) if (k !== 'status') throw new InvalidOptionError(k, 'unknown option (allowed: status)');
  const wanted = options.status;
  if (wanted !== undefined && wanted !== 'running' && wanted !== 'parked') throw new InvalidOptionError('status', `must be 'running' or 'parked', got ${JSON.stringify(wanted)}`);
  const out: SagaSummary[] = [];
  for (const { record: r } of await driver.store.unfinished()) {
    // A store may list a finished saga until it archives it: that one is not unfinished.
    if (r.outcome !== undefined || (r.status !== 'running' && r.status !== 'parked')) continue;
    if (wanted !== undefined && r.status !== wanted) continue;
    out.push({ sagaId: r.sagaId, saga: r.saga, version: r.version, status: r.status, startedAt: r.startedAt, updatedAt: r.updatedAt, owner: r.owner });
  }
  return out.sort((a, b) => a.startedAt - b.startedAt || (a.sagaId < b.sagaId ? -1 : a.sagaId > b.sagaId ? 1 : 0));
}

/** The dead letters of parked sagas, from the store. */
export function deadLetters(driver: SagaDriver): Promise<DeadLetter[]> {
  return driver.store.deadLetters();
}

function statusOf(def: SagaDefinition, ctx: SagaContext, state: MachineStateName): SagaStatus {
  const steps: Record<string, StepStatus> = {};
  for (const p of def.steps) steps[p.id] = (ctx.steps[p.index] as { status: StepStatus }).status;
  return { sagaId: ctx.sagaId, saga: def.name, version: def.version, state, steps, outcome: outcomeOf(def, ctx, state) };
}
