/** What values can cross a step, over NATS: the same scenarios as in memory (test/core/values.test.ts), against a private nats-server. */
import { afterAll, beforeAll, describe } from 'vitest';
import { connect } from '@nats-io/transport-node';
import type { NatsConnection } from '@nats-io/transport-node';
import { createRuntime } from '../../src/index.ts';
import { natsTransport, serveWorkers } from '../../src/nats.ts';
import { startNatsServer } from '../helpers/nats-server.ts';
import type { NatsServer } from '../helpers/nats-server.ts';
import { valueScenarios } from '../helpers/value-scenarios.ts';

let server: NatsServer;
let host: NatsConnection;
let client: NatsConnection;

beforeAll(async () => {
  server = await startNatsServer();
  host = await connect({ servers: server.url, name: 'values-host' });
  client = await connect({ servers: server.url, name: 'values-client' });
});

afterAll(async () => {
  await client?.close();
  await host?.close();
  await server?.stop();
});

let seq = 0;

describe('values that cross a step, over NATS', () => {
  valueScenarios(async (workers) => {
    const prefix = `values${++seq}`;
    const served = await serveWorkers(host, workers, { prefix, signals: [] });
    const runtime = createRuntime({ transport: natsTransport(client, { prefix }) });
    return {
      runtime,
      close: async () => {
        await runtime.close();
        await served.drain();
      },
    };
  });
});
