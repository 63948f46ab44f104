/**
 * A worker host of the chaos run, in its own process:
 * `node --import tsx chaos/worker-host.ts`. Configured by env:
 *
 *   NATS_URL            server, or servers separated by commas, the preferred first (required)
 *   NATS_REPLICAS       replicas of the dedup buckets (1 or 3; default 1)
 *   CHAOS_WORKERS       comma-separated worker names (required), e.g. flights,hotels
 *   CHAOS_LEDGER        the shared ledger file (required)
 *   CHAOS_SEED          seed of the fault decisions (default: the pid)
 *   CHAOS_CONCURRENCY   serveWorkers concurrency (default 64)
 *   CHAOS_*_RATE, CHAOS_*_MS   injected faults (see common.ts)
 *   LOG_LEVEL           pino level on stdout (default error)
 *
 * Hosts serving the same workers form a queue group and share the JetStream dedup store.
 * Prints {"ready":true,...} once it serves. SIGTERM drains it; SIGKILL is the crash.
 */
import pino from 'pino';
import { jetstreamDedupStore, serveWorkers } from '../src/nats.ts';
import { connectNats, faultsFromEnv, JsonlAppender, prng, replicasFromEnv, requireEnv, say, unsafeServerFromEnv } from './common.ts';
import { chaosWorker, WORKERS } from './sagas.ts';

const url = requireEnv('NATS_URL');
const names = requireEnv('CHAOS_WORKERS').split(',').filter((n) => n !== '');
for (const n of names) if (!(WORKERS as readonly string[]).includes(n)) throw new Error(`CHAOS_WORKERS: unknown worker '${n}' (known: ${WORKERS.join(', ')})`);
const ledger = new JsonlAppender(requireEnv('CHAOS_LEDGER'), true);
const faults = faultsFromEnv();
const seed = Number(process.env.CHAOS_SEED ?? process.pid);
const concurrency = Number(process.env.CHAOS_CONCURRENCY ?? 64);
const logger = pino({ level: process.env.LOG_LEVEL ?? 'error' });
const random = prng(seed);

const nc = await connectNats(url, `chaos-host-${process.pid}`);
const workers = names.map((n) => chaosWorker(n, ledger, faults, random));
const host = await serveWorkers(nc, workers, {
  dedup: jetstreamDedupStore(nc, { replicas: replicasFromEnv(), allowUnsafeServer: unsafeServerFromEnv() }),
  concurrency,
  signals: [],
  logger,
});
process.once('SIGTERM', () => {
  void host.drain().then(
    async () => {
      await nc.close();
      process.exit(0);
    },
    () => process.exit(1),
  );
});
say({ ready: true, pid: process.pid, workers: host.workers });
