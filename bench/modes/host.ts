/**
 * The worker host process of the benchmark suite's NATS modes, spawned by
 * bench/modes/nats.ts: serves the workload's workers with `serveWorkers` (in-memory
 * dedup store, or `jetstreamDedupStore` with `--durable`, wrapped in a call counter),
 * echoes raw requests on the baseline subject, and answers the coordinator over the IPC
 * channel: its counters (CPU, messages, store calls, JetStream requests), and holding
 * its workers to measure memory. Not run by hand.
 */
import { connect } from '@nats-io/transport-node';
import { memoryDedupStore } from '../../src/index.ts';
import { jetstreamDedupStore, serveWorkers } from '../../src/nats.ts';
import { RAW_SUBJECT } from '../baselines.ts';
import { countCalls, countJetStream, messages } from '../counting.ts';
import type { Counts } from '../counting.ts';
import { settledMemory } from '../stats.ts';
import { closeGate, hold, HOST_CONCURRENCY, workers } from '../workload.ts';

/** A request of the coordinator over IPC, and what the host answers (same id). */
export type HostCommand = 'counters' | 'hold' | 'entered' | 'measure' | 'release';
export interface HostRequest {
  readonly id: number;
  readonly cmd: HostCommand;
}

async function main(): Promise<void> {
  const durable = process.argv.includes('--durable');
  const nc = await connect({ servers: process.env.NATS_URL as string, name: 'bench-worker-host', noAsyncTraces: true });
  const jetStream: Counts = {};
  const store: Counts = {};
  countJetStream(nc, jetStream);
  nc.subscribe(RAW_SUBJECT, { callback: (_err, msg) => void msg.respond(msg.data) });
  const dedup = countCalls(durable ? jetstreamDedupStore(nc) : memoryDedupStore(), store);
  // Room for every step the suite may have in flight (--max-steps), so none is refused as OVERLOADED.
  await serveWorkers(nc, workers, { concurrency: HOST_CONCURRENCY, maxPending: 1 << 20, dedup, signals: [] });

  let before = { heap: 0, rss: 0 };
  let open: (() => void) | undefined;
  const answer = (req: HostRequest): unknown => {
    switch (req.cmd) {
      case 'counters': {
        const cpu = process.cpuUsage();
        return { hostStore: { ...store }, hostJetStream: { ...jetStream }, hostMessages: messages(nc), hostCpuMs: (cpu.user + cpu.system) / 1000 };
      }
      case 'hold':
        before = settledMemory();
        open = closeGate();
        return {};
      case 'entered':
        return { entered: hold.entered };
      case 'measure': {
        const m = settledMemory();
        return { heap: m.heap - before.heap, rss: m.rss - before.rss };
      }
      case 'release':
        open?.();
        return {};
    }
  };
  process.on('message', (req: HostRequest) => process.send?.({ id: req.id, ...(answer(req) as object) }));
  // The coordinator went away (or closed the channel): nothing left to serve.
  process.on('disconnect', () => process.exit(0));
  process.send?.({ ready: true });
}

await main();
