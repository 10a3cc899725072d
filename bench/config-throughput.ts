// system-config reads and writes per second through kRPC against the bare backend underneath it (DESIGN §12):
// (a) SQLite: openSqliteStore called directly vs the kRPC service on its own SQLite file;
// (b) etcd: a plain etcd3 client on a real 3-member cluster vs the kRPC service with the etcd backend on that cluster.
// The service runs in a child process (bench/support/config-server.ts) because that is how it runs in a zone: its
// callers are other processes, and sharing one event loop with the load generator would charge the client's HTTP and
// JSON work to the server. Both sides of each pair get the same closed-loop concurrency, key space and values, and
// their phases alternate order between rounds so drift (file growth, etcd history) does not favour one side.
import { fork, execFileSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Etcd3 } from 'etcd3';
import { systemConfigApi } from '../src/lib/api/system-config.ts';
import { createClient } from '../src/lib/krpc/index.ts';
import { openSqliteStore } from '../src/kernel/system-config/backends/sqlite.ts';
import { startEtcdCluster, type EtcdCluster } from '../test/support/etcd-cluster.ts';
import type { ServerReady, ServerSpec } from './support/config-server.ts';
import { closedLoop, fmt, forEachConcurrent, machineLine, summarize, table, type LoadResult, type LoadSample } from './support/measure.ts';

const CONCURRENCY = 32;
const PHASE_MS = 4000;
const WARMUP_MS = 1000;
const ROUNDS = 3;
const KEYS = 1000;
const ETCD_MEMBERS = 3;
const TARGET_ETCD_WRITES = 0.5;
/** An ordinary member writing their own app settings: the calls go through a real role chain in RBAC. */
const USER = 'bob';
const key = (seq: number) => `users/${USER}/apps/notes/settings/k${seq % KEYS}`;
// About the size of a settings document; the sequence number makes every write a real change.
const value = (seq: number) => JSON.stringify({ theme: 'dark', lang: 'en', layout: 'grid', seq, note: 'x'.repeat(120) });

type Op = 'write' | 'read';

interface Side {
  set(key: string, value: string): Promise<unknown>;
  get(key: string): Promise<string | null>;
}

interface Row {
  backend: string;
  op: Op;
  raw: LoadResult;
  krpc: LoadResult;
}

async function startServer(spec: ServerSpec): Promise<{ child: ChildProcess; ready: ServerReady }> {
  const child = fork(fileURLToPath(new URL('./support/config-server.ts', import.meta.url)), [JSON.stringify(spec)], {
    execArgv: ['--import', 'tsx'],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const ready = await new Promise<ServerReady>((resolve, reject) => {
    child.once('message', (m) => resolve(m as ServerReady));
    child.once('exit', (code, signal) => reject(new Error(`system-config bench server exited (${code ?? signal}) before it was ready`)));
  });
  return { child, ready };
}

async function stopServer(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  const killer = setTimeout(() => child.kill('SIGKILL'), 5000);
  await exited;
  clearTimeout(killer);
}

function krpcSide(ready: ServerReady): Side {
  const client = createClient(systemConfigApi, { baseUrl: `http://127.0.0.1:${ready.port}`, token: ready.token });
  return {
    set: (k, v) => client.set({ key: k, value: v }),
    get: async (k) => (await client.get({ key: k })).value,
  };
}

async function compare(backend: string, raw: Side, krpc: Side): Promise<Row[]> {
  const sides = { raw, krpc };
  for (const [name, side] of Object.entries(sides)) {
    await forEachConcurrent(KEYS, CONCURRENCY, (i) => side.set(key(i), value(i)));
    // One check per side, outside the timed phases: reads must find what the writes stored.
    if ((await side.get(key(KEYS - 1))) !== value(KEYS - 1)) throw new Error(`${backend} ${name}: read did not return the written value`);
  }
  const run = (side: Side, op: Op, durationMs: number) =>
    closedLoop(op === 'write' ? (seq) => side.set(key(seq), value(seq)) : (seq) => side.get(key(seq)), {
      concurrency: CONCURRENCY,
      durationMs,
    });
  for (const op of ['write', 'read'] as const) {
    await run(raw, op, WARMUP_MS);
    await run(krpc, op, WARMUP_MS);
  }
  const samples: Record<Op, Record<'raw' | 'krpc', LoadSample[]>> = {
    write: { raw: [], krpc: [] },
    read: { raw: [], krpc: [] },
  };
  for (let round = 0; round < ROUNDS; round++) {
    const order = round % 2 === 0 ? (['raw', 'krpc'] as const) : (['krpc', 'raw'] as const);
    for (const op of ['write', 'read'] as const) {
      for (const name of order) {
        const s = await run(sides[name], op, PHASE_MS);
        samples[op][name].push(s);
        console.log(`  ${backend} ${op} ${name.padEnd(4)} round ${round + 1}: ${fmt(s.latenciesMs.length / s.seconds)} ops/s`);
      }
    }
  }
  return (['write', 'read'] as const).map((op) => ({
    backend,
    op,
    raw: summarize(samples[op].raw),
    krpc: summarize(samples[op].krpc),
  }));
}

async function sqlitePair(dir: string): Promise<Row[]> {
  const store = openSqliteStore(join(dir, 'raw.db'));
  const server = await startServer({ backend: 'sqlite', path: join(dir, 'krpc.db'), user: USER });
  try {
    const raw: Side = { set: (k, v) => store.set(k, v), get: async (k) => (await store.get(k))?.value ?? null };
    return await compare('sqlite', raw, krpcSide(server.ready));
  } finally {
    await stopServer(server.child);
    await store.close();
  }
}

async function etcdPair(cluster: EtcdCluster): Promise<Row[]> {
  const client = new Etcd3({ hosts: cluster.endpoints });
  const server = await startServer({ backend: 'etcd', hosts: cluster.endpoints, prefix: '/krpc-bench/', user: USER });
  try {
    const raw: Side = {
      set: (k, v) => client.put(`/raw-bench/${k}`).value(v).exec(),
      get: (k) => client.get(`/raw-bench/${k}`).string(),
    };
    return await compare('etcd', raw, krpcSide(server.ready));
  } finally {
    await stopServer(server.child);
    client.close();
  }
}

function etcdVersion(): string {
  try {
    return execFileSync(process.env.ETCD_BIN ?? '/usr/bin/etcd', ['--version'], { encoding: 'utf8' }).split('\n')[0];
  } catch {
    return 'etcd version unknown';
  }
}

export async function main(): Promise<void> {
  console.log('config-throughput: system-config through kRPC vs the raw backend');
  console.log(`  ${machineLine()}; ${etcdVersion()}`);
  console.log(`  ${CONCURRENCY} operations in flight, ${KEYS} keys, ${ROUNDS} rounds x ${PHASE_MS / 1000} s per phase after ${WARMUP_MS / 1000} s warm-up`);
  console.log(`  kRPC: service in a child process on 127.0.0.1 (HTTP, token verification, RBAC, zod), caller "${USER}" (role user) via control-panel`);
  const dir = mkdtempSync(join(tmpdir(), 'bench-config-'));
  let cluster: EtcdCluster | null = null;
  const rows: Row[] = [];
  try {
    rows.push(...(await sqlitePair(dir)));
    cluster = await startEtcdCluster(ETCD_MEMBERS);
    rows.push(...(await etcdPair(cluster)));
  } finally {
    await cluster?.stop();
    rmSync(dir, { recursive: true, force: true });
  }

  const ratio = (r: Row) => r.krpc.opsPerSec / r.raw.opsPerSec;
  console.log(`  after: ${machineLine()}`);
  console.log('');
  console.log(
    table(
      ['backend', 'op', 'raw ops/s', 'raw p99 ms', 'kRPC ops/s', 'kRPC p99 ms', 'kRPC/raw'],
      rows.map((r) => [
        r.backend === 'etcd' ? `etcd (${ETCD_MEMBERS} members)` : r.backend,
        r.op,
        fmt(r.raw.opsPerSec),
        fmt(r.raw.p99Ms, 2),
        fmt(r.krpc.opsPerSec),
        fmt(r.krpc.p99Ms, 2),
        fmt(ratio(r), 2),
      ]),
    ),
  );
  const etcdWrites = rows.find((r) => r.backend === 'etcd' && r.op === 'write')!;
  console.log('');
  console.log(`ratio krpc/raw etcd writes: ${fmt(ratio(etcdWrites), 2)} (target >= ${TARGET_ETCD_WRITES.toFixed(2)})`);
}
