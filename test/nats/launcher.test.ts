/**
 * The test launcher itself: a private server on a free port (never 4222), and a
 * missing binary is a loud error that says how to install it, never a skip.
 */
import { existsSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { connect } from '@nats-io/transport-node';
import { findNatsServer, startNatsServer } from '../helpers/nats-server.ts';

describe('nats-server launcher', () => {
  it('fails with the install command when nats-server is not on PATH', () => {
    expect(() => findNatsServer('/nonexistent-dir', [])).toThrow(/apt-get install -y nats-server/);
  });

  it('starts a private JetStream server on a free port and removes it afterwards', async () => {
    const server = await startNatsServer();
    expect(server.port).not.toBe(4222);
    const nc = await connect({ servers: server.url });
    expect(nc.info?.jetstream).toBe(true);
    await nc.close();
    await server.stop();
    expect(existsSync(server.storeDir)).toBe(false);
    await expect(connect({ servers: server.url, reconnect: false, timeout: 500 })).rejects.toThrow();
  });
});
