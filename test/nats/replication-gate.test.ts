/**
 * The JetStream stores refuse replicated buckets on a nats-server whose clustered
 * compare-and-set is unsafe (older than 2.9.21): pure checks on the connection's server
 * info, no server needed.
 */
import { describe, expect, it } from 'vitest';
import type { NatsConnection } from '@nats-io/transport-node';
import { InvalidOptionError } from '../../src/index.ts';
import { jetstreamDedupStore, jetstreamSagaStore, MIN_SAFE_CLUSTERED_SERVER } from '../../src/nats.ts';
import { assertSafeReplication } from '../../src/store/jetstream.ts';

const serverAt = (version: string | undefined) => ({ info: version === undefined ? undefined : { version } }) as unknown as NatsConnection;

describe('replicated buckets and the server version', () => {
  it.each(['2.9.10', '2.9.20', '2.8.4', '1.4.1'])('refuses replicas 3 on nats-server %s, naming the option, the version and the upstream issue', (version) => {
    for (const make of [() => jetstreamDedupStore(serverAt(version), { replicas: 3 }), () => jetstreamSagaStore(serverAt(version), { replicas: 3 })]) {
      expect(make).toThrow(InvalidOptionError);
      expect(make).toThrow(`option 'replicas': 3 replicas need nats-server ${MIN_SAFE_CLUSTERED_SERVER} or later, but the connected server is ${version}`);
      expect(make).toThrow(/issue 4320/);
    }
  });

  it.each(['2.9.21', '2.9.25', '2.10.0', '2.11.4', '3.0.0', 'v2.10.22'])('accepts replicas 3 on nats-server %s', (version) => {
    expect(() => assertSafeReplication(serverAt(version), 3, undefined)).not.toThrow();
    expect(() => assertSafeReplication(serverAt(version), 5, false)).not.toThrow();
  });

  it('accepts one replica on any server, an unsafe server when told to, and rejects a non-boolean allowUnsafeServer', () => {
    expect(() => assertSafeReplication(serverAt('2.9.10'), 1, undefined)).not.toThrow();
    expect(() => assertSafeReplication(serverAt('2.9.10'), 3, true)).not.toThrow();
    // No server info (not connected yet): nothing to judge by.
    expect(() => assertSafeReplication(serverAt(undefined), 3, undefined)).not.toThrow();
    expect(() => jetstreamSagaStore(serverAt('2.9.10'), { replicas: 3, allowUnsafeServer: 1 as never })).toThrow(/option 'allowUnsafeServer': must be a boolean/);
  });
});
