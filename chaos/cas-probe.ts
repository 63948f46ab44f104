/**
 * A probe of JetStream KV compare-and-set, without scatter-saga: can two updates of one
 * key naming the same revision both succeed? Pairs of clients, each connected to another
 * server, race to update the same key from the same revision, again and again.
 *
 *   npm run probe:cas -- [--rounds 2000] [--keys 32] [--cluster]
 *
 * Prints one JSON summary line; exits 1 when both updates of a race succeeded.
 */
import { connect } from '@nats-io/transport-node';
import { Kvm } from '@nats-io/kv';
import type { KV } from '@nats-io/kv';
import { startNatsCluster, startNatsServer } from '../test/helpers/nats-server.ts';

const USAGE = 'usage: npm run probe:cas -- [--rounds 2000] [--keys 32] [--cluster]';
const NUMERIC = new Set(['rounds', 'keys']);
for (let i = 2; i < process.argv.length; i++) {
  const a = process.argv[i] as string;
  if (a === '--cluster') continue;
  const value = process.argv[i + 1];
  if (!a.startsWith('--') || !NUMERIC.has(a.slice(2)) || value === undefined || !/^\d+$/.test(value)) {
    process.stderr.write(`cas-probe: bad argument ${JSON.stringify(a)}: each option takes a whole number\n${USAGE}\n`);
    process.exit(2);
  }
  i++;
}
const arg = (name: string, def: number): number => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : def;
};
const rounds = arg('rounds', 2000);
const keys = arg('keys', 32);
const cluster = process.argv.includes('--cluster');

const deployment = cluster ? await startNatsCluster(3) : await startNatsServer();
const urls = 'urls' in deployment ? [...deployment.urls] : [deployment.url];
const conns = await Promise.all([0, 1].map((i) => connect({ servers: [urls[i % urls.length] as string] })));
const kvs: KV[] = [];
for (const [i, nc] of conns.entries()) {
  const kvm = new Kvm(nc);
  kvs.push(i === 0 ? await kvm.create('probe_cas', { history: 1, allow_direct: false, replicas: cluster ? 3 : 1 }) : await kvm.open('probe_cas'));
}
const [k0, k1] = kvs as [KV, KV];

let races = 0;
let both = 0;
let neither = 0;
const examples: unknown[] = [];
await Promise.all(
  Array.from({ length: keys }, async (_, k) => {
    const key = `k${k}`;
    let rev = await k0.create(key, 'start');
    for (let r = 0; r < rounds / keys; r++) {
      const race = await Promise.allSettled([k0.update(key, `a${r}`, rev), k1.update(key, `b${r}`, rev)]);
      races++;
      const won = race.filter((x) => x.status === 'fulfilled') as PromiseFulfilledResult<number>[];
      if (won.length === 2) {
        both++;
        if (examples.length < 3) examples.push({ key, from: rev, revisions: won.map((w) => w.value), now: (await k0.get(key))?.string() });
      }
      if (won.length === 0) neither++;
      const e = await k0.get(key);
      rev = e?.revision ?? rev;
    }
  }),
);
console.log(JSON.stringify({ cluster, races, bothSucceeded: both, neitherSucceeded: neither, examples }));
await Promise.all(conns.map((nc) => nc.close()));
await deployment.stop();
process.exit(both > 0 ? 1 : 0);
