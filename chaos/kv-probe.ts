/**
 * A probe of the nats-server file store alone, without scatter-saga: do acknowledged
 * JetStream KV writes survive a SIGKILL of the nats-server?
 *
 * Writers put, update (compare-and-set) and move keys (put into a second bucket, then
 * delete from the first) in buckets configured like the saga journal (history 1, file
 * storage, one replica; three with --cluster), and remember every write the server acknowledged. The server
 * is SIGKILLed and restarted with the same store every seconds/(restarts+1), a few
 * seconds after a burst of rewrites of long-lived keys (like a recovering coordinator
 * parking sagas again). Afterwards every key
 * whose last write was acknowledged is read back and compared.
 *
 *   npm run probe:kv -- [--seconds 120] [--restarts 6] [--writers 64] [--keepers 300] [--seed 1] [--cluster]
 *
 * Prints one JSON summary line; exits 1 when an acknowledged write was lost.
 */
import { connect } from '@nats-io/transport-node';
import { Kvm } from '@nats-io/kv';
import type { KV } from '@nats-io/kv';
import { startNatsCluster, startNatsServer } from '../test/helpers/nats-server.ts';

const USAGE = `usage: npm run probe:kv -- [--seconds 120] [--restarts 6] [--writers 64] [--keepers 300] [--pad 1000] [--gap 5] [--seed 1] [--cluster]
  --seconds   length of the run            --restarts  SIGKILLs of the server (of one node at a time with --cluster)
  --writers   concurrent writers of keys   --keepers   long-lived keys rewritten in a burst --gap seconds before each kill
  --pad       bytes of padding per value   --seed      seed of the random choices`;
const NUMERIC = new Set(['seconds', 'restarts', 'writers', 'keepers', 'pad', 'gap', 'seed']);
for (let i = 2; i < process.argv.length; i++) {
  const a = process.argv[i] as string;
  if (a === '--cluster') continue;
  const name = a.replace(/^--/, '');
  const value = process.argv[i + 1];
  if (!a.startsWith('--') || !NUMERIC.has(name) || value === undefined || !/^\d+$/.test(value)) {
    process.stderr.write(`kv-probe: bad argument ${JSON.stringify(a)}${value !== undefined ? ` ${JSON.stringify(value)}` : ''}: each option takes a whole number\n${USAGE}\n`);
    process.exit(2);
  }
  i++;
}
function arg(name: string, def: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : def;
}
const seconds = arg('seconds', 120);
const restarts = arg('restarts', 6);
const writers = arg('writers', 64);
const pad = arg('pad', 1000);
let seed = arg('seed', 1);
const rand = () => {
  seed = (seed * 1103515245 + 12345) % 2 ** 31;
  return seed / 2 ** 31;
};
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** What the server last acknowledged for a key: its text in each bucket (null = deleted/absent). */
interface Known {
  live: string | null;
  done: string | null;
  liveRevision: number;
  at: number;
}

const cluster = process.argv.includes('--cluster');
/** One server, or a 3-node cluster (replicas 3) restarted one node at a time. */
const server = cluster
  ? await (async () => {
      const c = await startNatsCluster(3);
      let n = 0;
      return {
        url: c.urls.join(','),
        restart: async () => {
          await c.restart(n++ % 3);
          await c.healthy(120_000);
        },
        stop: () => c.stop(),
      };
    })()
  : await startNatsServer();
const replicas = cluster ? 3 : 1;
const nc = await connect({ servers: server.url.split(','), maxReconnectAttempts: -1, reconnectTimeWait: 100 });
const kvm = new Kvm(nc);
const live: KV = await kvm.create('probe_live', { history: 1, allow_direct: false, replicas });
const done: KV = await kvm.create('probe_done', { history: 1, allow_direct: false, ttl: 7 * 24 * 3600_000, replicas });
const known = new Map<string, Known>();
const t0 = Date.now();
let stop = false;
let acked = 0;
let failed = 0;
const restartTimes: number[] = [];

async function writer(w: number): Promise<void> {
  let n = 0;
  while (!stop) {
    const key = `w${w}_${n++}`;
    const body = (v: number) => JSON.stringify({ key, v, pad: 'x'.repeat(pad + Math.floor(rand() * pad)) });
    try {
      let rev = await live.create(key, body(0));
      acked++;
      known.set(key, { live: body(0), done: null, liveRevision: rev, at: Date.now() - t0 });
      const updates = 1 + Math.floor(rand() * 5);
      for (let v = 1; v <= updates && !stop; v++) {
        await sleep(rand() * 200);
        const text = body(v);
        rev = await live.update(key, text, rev);
        acked++;
        known.set(key, { live: text, done: null, liveRevision: rev, at: Date.now() - t0 });
      }
      if (rand() < 0.6 && !stop) {
        // Move to the finished bucket: put there, then delete here.
        const k = known.get(key)!;
        await done.put(key, k.live!);
        acked++;
        known.set(key, { ...k, done: k.live, at: Date.now() - t0 });
        await live.delete(key);
        acked++;
        known.set(key, { ...known.get(key)!, live: null, at: Date.now() - t0 });
      }
    } catch {
      // Unacknowledged: this key's state is unknown; forget it.
      failed++;
      known.delete(key);
      await sleep(50);
    }
  }
}

/** Long-lived keys (like parked sagas): rewritten twice in a burst (a takeover, then a park) by a "recovering coordinator". */
const keepers = arg('keepers', 300);
const keeperRev = new Map<string, number>();
const keeperBody = (key: string, v: number) => JSON.stringify({ key, v, pad: 'y'.repeat(700) });
async function rewrite(w: number, v: number): Promise<void> {
  const key = `keep${w}`;
  if (v > 0 && !keeperRev.has(key)) return;
  try {
    for (const step of [0, 1]) {
      const text = keeperBody(key, v * 2 + step);
      const prev = keeperRev.get(key) ?? 0;
      const rev = prev === 0 ? await live.create(key, text) : await live.update(key, text, prev);
      acked++;
      keeperRev.set(key, rev);
      known.set(key, { live: text, done: null, liveRevision: rev, at: Date.now() - t0 });
    }
  } catch {
    failed++;
    keeperRev.delete(key);
    known.delete(key);
  }
}
const burst = (v: number) => Promise.all(Array.from({ length: keepers }, (_, i) => rewrite(i, v)));

const running = Array.from({ length: writers }, (_, i) => writer(i));
await burst(0);
const gap = arg('gap', 5);
for (let r = 0; r < restarts; r++) {
  await sleep(Math.max(1000, (seconds * 1000) / (restarts + 1) - gap * 1000));
  await burst(r + 1);
  await sleep(gap * 1000);
  restartTimes.push(Date.now() - t0);
  await server.restart();
}
await sleep((seconds * 1000) / (restarts + 1));
stop = true;
await Promise.all(running);

const lost: { key: string; expected: Known; live: string | null; done: string | null }[] = [];
for (const [key, k] of known) {
  const l = await live.get(key);
  const d = await done.get(key);
  const lv = l && l.operation === 'PUT' ? l.string() : null;
  const dv = d && d.operation === 'PUT' ? d.string() : null;
  if (lv !== k.live || dv !== k.done) lost.push({ key, expected: k, live: lv, done: dv });
}
console.log(
  JSON.stringify({
    nats: server.url,
    replicas,
    seconds,
    restartTimes,
    keys: known.size,
    acked,
    failed,
    lost: lost.length,
    lostKeepers: lost.filter((x) => x.key.startsWith('keep')).length,
    lostAtMs: [...new Set(lost.map((x) => Math.round(x.expected.at / 100) * 100))].sort((a, b) => a - b),
    examples: lost.slice(0, 5).map((x) => ({
      key: x.key,
      lastAckAtMs: x.expected.at,
      expectedLive: x.expected.live?.slice(0, 40) ?? null,
      expectedDone: x.expected.done?.slice(0, 40) ?? null,
      live: x.live?.slice(0, 40) ?? null,
      done: x.done?.slice(0, 40) ?? null,
    })),
  }),
);
await nc.close();
await server.stop();
process.exit(lost.length > 0 ? 1 : 0);
