/**
 * Starts a private nats-server (the binary on PATH) for one test file: a free port
 * chosen by the server (`-p -1`, read back from its ports file), JetStream in a temp
 * dir, and a teardown that kills it and removes the dir. It never uses a server
 * someone else started. A missing binary is an error that says how to install it.
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { connect as tcpConnect } from 'node:net';

export const INSTALL_HINT = 'nats-server is not on PATH: install it (Debian/Ubuntu: `apt-get install -y nats-server`) to run the NATS tests';

export interface NatsServer {
  /** `nats://127.0.0.1:<port>` */
  readonly url: string;
  readonly port: number;
  /** The JetStream store directory (kept across `restart`). */
  readonly storeDir: string;
  /** Kills the server (SIGKILL) and starts it again on the same port with the same store. */
  restart(): Promise<void>;
  /** Kills the server and removes its temp dir. */
  stop(): Promise<void>;
}

/** The nats-server binary on `path` (Debian puts it in /usr/sbin, which some PATHs lack). Throws {@link INSTALL_HINT}. */
export function findNatsServer(path = process.env.PATH ?? '', extraDirs: readonly string[] = ['/usr/sbin', '/usr/local/sbin']): string {
  const dirs = path.split(delimiter).concat(extraDirs);
  for (const d of dirs) {
    if (d !== '' && existsSync(join(d, 'nats-server'))) return join(d, 'nats-server');
  }
  throw new Error(INSTALL_HINT);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function portOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = tcpConnect({ host: '127.0.0.1', port }, () => {
      s.destroy();
      resolve(true);
    });
    s.on('error', () => resolve(false));
  });
}

async function launch(bin: string, dir: string, port: number | undefined, config?: string): Promise<{ child: ChildProcess; port: number }> {
  const args = ['-a', '127.0.0.1', '-p', String(port ?? -1), '-js', '-sd', join(dir, 'js'), '--ports_file_dir', dir, ...(config !== undefined ? ['-c', config] : [])];
  const child = spawn(bin, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => {
    stderr = (stderr + d.toString()).slice(-4000);
  });
  let exited: string | undefined;
  let spawnError: Error | undefined;
  child.once('error', (e) => (spawnError = e));
  child.once('exit', (code, signal) => (exited = `exited with ${code ?? signal}`));
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    if (spawnError !== undefined) throw new Error(`${INSTALL_HINT} (${spawnError.message})`);
    if (exited !== undefined) throw new Error(`nats-server ${exited}: ${stderr}`);
    const file = join(dir, `nats-server_${child.pid}.ports`);
    if (existsSync(file)) {
      try {
        const ports = JSON.parse(readFileSync(file, 'utf8')) as { nats?: string[] };
        const url = ports.nats?.[0];
        const p = url === undefined ? NaN : Number(new URL(url).port);
        if (Number.isInteger(p) && (await portOpen(p))) return { child, port: p };
      } catch {
        // written but not complete yet
      }
    }
    await sleep(25);
  }
  child.kill('SIGKILL');
  throw new Error(`nats-server did not become ready within 10s: ${stderr}`);
}

function kill(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    child.once('exit', () => resolve());
    child.kill('SIGKILL');
  });
}

/** Options of {@link startNatsServer}. */
export interface NatsServerOptions {
  /** A nats-server configuration file's text (e.g. an `authorization` block); the command line still sets the address, port and JetStream directory. */
  readonly config?: string;
}

/** Starts a private nats-server with JetStream. Call `stop()` in `afterAll`. */
export async function startNatsServer(options: NatsServerOptions = {}): Promise<NatsServer> {
  const bin = findNatsServer();
  const dir = mkdtempSync(join(tmpdir(), 'scatter-saga-nats-'));
  let config: string | undefined;
  if (options.config !== undefined) {
    config = join(dir, 'nats-server.conf');
    writeFileSync(config, options.config);
  }
  let current: { child: ChildProcess; port: number };
  try {
    current = await launch(bin, dir, undefined, config);
  } catch (error) {
    rmSync(dir, { recursive: true, force: true });
    throw error;
  }
  const port = current.port;
  return {
    url: `nats://127.0.0.1:${port}`,
    port,
    storeDir: join(dir, 'js'),
    async restart() {
      await kill(current.child);
      for (const f of readdirSync(dir)) if (f.endsWith('.ports')) rmSync(join(dir, f), { force: true });
      // The port may linger for a moment after the kill.
      for (let i = 0; ; i++) {
        try {
          current = await launch(bin, dir, port, config);
          return;
        } catch (error) {
          if (i >= 20) throw error;
          await sleep(100);
        }
      }
    },
    async stop() {
      await kill(current.child);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Free TCP ports on 127.0.0.1, as the OS hands them out (closed again before use). */
async function freePorts(n: number): Promise<number[]> {
  const { createServer } = await import('node:net');
  const out: number[] = [];
  const servers = await Promise.all(
    Array.from({ length: n }, () => new Promise<import('node:net').Server>((resolve, reject) => {
      const srv = createServer();
      srv.once('error', reject);
      srv.listen(0, '127.0.0.1', () => resolve(srv));
    })),
  );
  for (const srv of servers) out.push((srv.address() as { port: number }).port);
  await Promise.all(servers.map((srv) => new Promise((r) => srv.close(r))));
  return out;
}

/** Waits until every node knows the JetStream meta leader (streams can be created). */
async function jetStreamReady(monitor: readonly number[], deadline: number): Promise<void> {
  for (;;) {
    const leaders = await Promise.all(
      monitor.map(async (p) => {
        try {
          const r = await fetch(`http://127.0.0.1:${p}/jsz`);
          return ((await r.json()) as { meta_cluster?: { leader?: string } }).meta_cluster?.leader ?? '';
        } catch {
          return '';
        }
      }),
    );
    if (leaders.every((l) => l !== '')) return;
    if (Date.now() > deadline) throw new Error('JetStream has no meta leader in the cluster');
    await sleep(100);
  }
}

export interface NatsCluster {
  /** Client URLs of the nodes, in order. */
  readonly urls: readonly string[];
  /** Kills node `i` (SIGKILL) and starts it again with the same store and ports. */
  restart(i: number): Promise<void>;
  /** Kills node `i` (SIGKILL); `start(i)` brings it back. */
  kill(i: number): Promise<void>;
  start(i: number): Promise<void>;
  /**
   * Waits until every running node reports itself healthy on `/healthz` (JetStream on, and
   * every stream and consumer it holds caught up), or throws after `timeoutMs`.
   */
  healthy(timeoutMs?: number): Promise<void>;
  /** The pids of the running nodes (undefined for a node that is down). */
  readonly pids: readonly (number | undefined)[];
  stop(): Promise<void>;
}

/**
 * Starts a private cluster of `n` nats-servers (2.9 or later) on loopback, with JetStream
 * on each node (a store dir each) and routes between all of them; resolves once they
 * route to each other. Streams created with `replicas: 3` then live on three nodes.
 */
export async function startNatsCluster(n = 3): Promise<NatsCluster> {
  const bin = findNatsServer();
  const dir = mkdtempSync(join(tmpdir(), 'scatter-saga-cluster-'));
  const ports = await freePorts(n * 3);
  const client = ports.slice(0, n);
  const route = ports.slice(n, 2 * n);
  const monitor = ports.slice(2 * n);
  const { writeFileSync } = await import('node:fs');
  const conf = (i: number) => {
    const file = join(dir, `n${i}.conf`);
    writeFileSync(
      file,
      [
        `server_name: n${i}`,
        `listen: 127.0.0.1:${client[i]}`,
        `http: 127.0.0.1:${monitor[i]}`,
        `jetstream { store_dir: "${join(dir, `js${i}`)}" }`,
        `cluster { name: scatter, listen: 127.0.0.1:${route[i]}, routes: [${route.filter((_, j) => j !== i).map((p) => `nats-route://127.0.0.1:${p}`).join(', ')}] }`,
      ].join('\n'),
    );
    return file;
  };
  const nodes: (ChildProcess | undefined)[] = Array.from({ length: n }, () => undefined);
  const start = async (i: number) => {
    for (let attempt = 0; ; attempt++) {
      const child = spawn(bin, ['-c', conf(i)], { stdio: ['ignore', 'ignore', 'pipe'] });
      let stderr = '';
      child.stderr?.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4000)));
      let exited = false;
      child.once('exit', () => (exited = true));
      const deadline = Date.now() + 10_000;
      while (Date.now() < deadline && !exited && !(await portOpen(client[i] as number))) await sleep(25);
      if (!exited && (await portOpen(client[i] as number))) {
        nodes[i] = child;
        return;
      }
      child.kill('SIGKILL');
      if (attempt >= 20) throw new Error(`nats-server node ${i} did not start: ${stderr}`);
      await sleep(100); // a port may linger for a moment after a kill
    }
  };
  try {
    for (let i = 0; i < n; i++) await start(i);
    // Every node sees the others as routes.
    const deadline = Date.now() + 20_000;
    for (;;) {
      const counts = await Promise.all(
        monitor.map(async (p) => {
          try {
            const r = await fetch(`http://127.0.0.1:${p}/routez`);
            return ((await r.json()) as { num_routes?: number }).num_routes ?? 0;
          } catch {
            return 0;
          }
        }),
      );
      if (counts.every((c) => c >= n - 1)) break;
      if (Date.now() > deadline) throw new Error(`the cluster did not form: routes ${counts.join(', ')}`);
      await sleep(100);
    }
    await jetStreamReady(monitor, deadline);
  } catch (error) {
    for (const c of nodes) if (c) await kill(c);
    rmSync(dir, { recursive: true, force: true });
    throw error;
  }
  const killNode = async (i: number) => {
    const c = nodes[i];
    if (c) await kill(c);
    nodes[i] = undefined;
  };
  return {
    urls: client.map((p) => `nats://127.0.0.1:${p}`),
    kill: killNode,
    start,
    async restart(i) {
      await killNode(i);
      await start(i);
    },
    async healthy(timeoutMs = 60_000) {
      const until = Date.now() + timeoutMs;
      for (;;) {
        const states = await Promise.all(
          monitor.map(async (p, i) => {
            if (nodes[i] === undefined) return 'down';
            try {
              const r = await fetch(`http://127.0.0.1:${p}/healthz`);
              return r.ok ? 'ok' : `${r.status} ${(await r.text()).slice(0, 200)}`;
            } catch (error) {
              return String(error);
            }
          }),
        );
        if (states.every((st) => st === 'ok' || st === 'down')) return;
        if (Date.now() > until) throw new Error(`the cluster is not healthy after ${timeoutMs} ms: ${states.map((st, i) => `n${i}: ${st}`).join('; ')}`);
        await sleep(200);
      }
    },
    get pids() {
      return nodes.map((c) => c?.pid);
    },
    async stop() {
      for (const c of nodes) if (c) await kill(c);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A worker host running in a child process (`node --import tsx <file>`). */
export interface ChildHost {
  readonly child: ChildProcess;
  /** Every JSON line the child printed on stdout (pino logs and the ready line). */
  readonly lines: Record<string, unknown>[];
  /** Resolves with the exit code and signal. */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  kill(signal?: NodeJS.Signals): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Spawns a fixture and waits for its `{"ready":true}` line (or fails with its stderr). */
export async function spawnHost(file: string, env: Record<string, string>, timeoutMs = 20_000): Promise<ChildHost> {
  const child = spawn(process.execPath, ['--import', 'tsx', file], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const lines: Record<string, unknown>[] = [];
  let stderr = '';
  let buf = '';
  let onReady: (() => void) | undefined;
  child.stdout?.on('data', (d: Buffer) => {
    buf += d.toString();
    let i: number;
    while ((i = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      try {
        const obj = JSON.parse(line) as Record<string, unknown>;
        lines.push(obj);
        if (obj.ready === true) onReady?.();
      } catch {
        // not JSON: ignore
      }
    }
  });
  child.stderr?.on('data', (d: Buffer) => {
    stderr = (stderr + d.toString()).slice(-8000);
  });
  // 'close', not 'exit': every line the child wrote on stdout has been read by then.
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('close', (code: number | null, signal: NodeJS.Signals | null) => resolve({ code, signal })));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`worker host ${file} not ready within ${timeoutMs} ms: ${stderr}`)), timeoutMs);
    onReady = () => {
      clearTimeout(timer);
      resolve();
    };
    void exited.then((e) => {
      clearTimeout(timer);
      reject(new Error(`worker host ${file} exited (${e.code ?? e.signal}) before it was ready: ${stderr}`));
    });
  });
  return {
    child,
    lines,
    exited,
    kill(signal: NodeJS.Signals = 'SIGKILL') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
  };
}
