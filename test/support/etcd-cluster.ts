// Starts a real local etcd cluster for tests and benchmarks: n members on 127.0.0.1, each with its own free ports and
// temporary data directory. Tests that need etcd must fail, not skip, when the binary is missing.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, openSync, closeSync, rmSync, mkdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { portFree } from './ports.ts';

export interface EtcdCluster {
  /** Client URLs, one per member, in member order. */
  endpoints: string[];
  /** Stops member `i` (SIGKILL by default, as a crash would) and waits for its exit. */
  stopMember(i: number, signal?: NodeJS.Signals): Promise<void>;
  /** Restarts a stopped member on its old ports and data, and waits until it serves again. */
  startMember(i: number): Promise<void>;
  /** Index of the member that currently leads, or -1 while there is none (during an election, without quorum). */
  leader(): Promise<number>;
  /** Stops every member and deletes all data. Safe to call more than once. */
  stop(): Promise<void>;
}

const ETCD_BIN = process.env.ETCD_BIN ?? '/usr/bin/etcd';
const PORT_MIN = 23000;
const PORT_MAX = 29000;
const READY_TIMEOUT_MS = 30_000;
const STOP_TIMEOUT_MS = 5_000;

interface Member {
  name: string;
  clientPort: number;
  peerPort: number;
  dataDir: string;
  logFile: string;
  proc: ChildProcess | null;
}

/** Every child of every cluster in this process, so a crashing test run does not leave etcd members behind. */
const liveChildren = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of liveChildren) child.kill('SIGKILL');
});

async function pickFreePorts(count: number): Promise<number[]> {
  const chosen = new Set<number>();
  while (chosen.size < count) {
    const port = PORT_MIN + Math.floor(Math.random() * (PORT_MAX - PORT_MIN));
    if (!chosen.has(port) && (await portFree(port))) chosen.add(port);
  }
  return [...chosen];
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

interface MemberStatus {
  header: { member_id: string };
  leader: string;
}

/** etcd's JSON gateway answers maintenance/status with this member's id and the leader it follows. */
async function status(clientPort: number): Promise<MemberStatus | null> {
  try {
    const res = await fetch(`http://127.0.0.1:${clientPort}/v3/maintenance/status`, {
      method: 'POST',
      body: '{}',
      signal: AbortSignal.timeout(1000),
    });
    return res.ok ? ((await res.json()) as MemberStatus) : null;
  } catch {
    return null;
  }
}

async function isHealthy(clientPort: number): Promise<boolean> {
  try {
    const res = await fetch(`http://127.0.0.1:${clientPort}/health`, { signal: AbortSignal.timeout(1000) });
    const body = (await res.json()) as { health?: string };
    return res.ok && body.health === 'true';
  } catch {
    return false;
  }
}

function waitForExit(proc: ChildProcess, timeoutMs: number): Promise<boolean> {
  if (proc.exitCode !== null || proc.signalCode !== null) return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), timeoutMs);
    proc.once('exit', () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}

async function killMember(m: Member, signal: NodeJS.Signals): Promise<void> {
  const proc = m.proc;
  if (!proc) return;
  m.proc = null;
  proc.kill(signal);
  if (!(await waitForExit(proc, STOP_TIMEOUT_MS))) {
    proc.kill('SIGKILL');
    await waitForExit(proc, STOP_TIMEOUT_MS);
  }
  liveChildren.delete(proc);
}

function launch(m: Member, initialCluster: string, clusterToken: string): void {
  const log = openSync(m.logFile, 'a');
  const proc = spawn(
    ETCD_BIN,
    [
      `--name=${m.name}`,
      `--data-dir=${m.dataDir}`,
      `--listen-client-urls=http://127.0.0.1:${m.clientPort}`,
      `--advertise-client-urls=http://127.0.0.1:${m.clientPort}`,
      `--listen-peer-urls=http://127.0.0.1:${m.peerPort}`,
      `--initial-advertise-peer-urls=http://127.0.0.1:${m.peerPort}`,
      `--initial-cluster=${initialCluster}`,
      `--initial-cluster-token=${clusterToken}`,
      '--initial-cluster-state=new',
      // Loopback round trips are sub-millisecond; short timeouts make elections after a kill take well under a second.
      '--heartbeat-interval=50',
      '--election-timeout=500',
      '--logger=zap',
      '--log-level=warn',
    ],
    { stdio: ['ignore', log, log] },
  );
  closeSync(log);
  liveChildren.add(proc);
  proc.once('exit', () => liveChildren.delete(proc));
  m.proc = proc;
}

/** The end of a member's log, for error messages: the data directory is deleted before anyone could read it. */
function logTail(m: Member): string {
  try {
    return readFileSync(m.logFile, 'utf8').slice(-2000);
  } catch {
    return '(no log)';
  }
}

async function waitHealthy(members: Member[]): Promise<void> {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  for (;;) {
    const exited = members.find((m) => m.proc === null || m.proc.exitCode !== null || m.proc.signalCode !== null);
    if (exited) throw new Error(`etcd member ${exited.name} exited during startup:\n${logTail(exited)}`);
    const health = await Promise.all(members.map((m) => isHealthy(m.clientPort)));
    if (health.every(Boolean)) return;
    if (Date.now() > deadline) {
      const sick = members.filter((_, i) => !health[i]);
      throw new Error(
        `etcd members ${sick.map((m) => m.name).join(', ')} not healthy after ${READY_TIMEOUT_MS} ms:\n` +
          sick.map(logTail).join('\n'),
      );
    }
    await sleep(100);
  }
}

async function tryStart(n: number): Promise<EtcdCluster> {
  const root = mkdtempSync(join(tmpdir(), 'buckyos-etcd-'));
  const ports = await pickFreePorts(2 * n);
  const members: Member[] = Array.from({ length: n }, (_, i) => {
    const dir = join(root, `m${i}`);
    mkdirSync(dir);
    return {
      name: `m${i}`,
      clientPort: ports[2 * i],
      peerPort: ports[2 * i + 1],
      dataDir: join(dir, 'data'),
      logFile: join(dir, 'etcd.log'),
      proc: null,
    };
  });
  const initialCluster = members.map((m) => `${m.name}=http://127.0.0.1:${m.peerPort}`).join(',');
  const token = `buckyos-test-${randomBytes(6).toString('hex')}`;
  let stopped = false;

  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    await Promise.all(members.map((m) => killMember(m, 'SIGKILL')));
    rmSync(root, { recursive: true, force: true });
  };

  try {
    for (const m of members) launch(m, initialCluster, token);
    await waitHealthy(members);
  } catch (err) {
    await stop();
    throw err;
  }

  const member = (i: number): Member => {
    const m = members[i];
    if (!m) throw new RangeError(`no etcd member ${i} in a cluster of ${n}`);
    return m;
  };

  return {
    endpoints: members.map((m) => `http://127.0.0.1:${m.clientPort}`),
    stopMember: (i, signal = 'SIGKILL') => killMember(member(i), signal),
    async startMember(i) {
      const m = member(i);
      if (m.proc) throw new Error(`etcd member ${m.name} is already running`);
      launch(m, initialCluster, token);
      await waitHealthy([m]);
    },
    async leader() {
      const running = members.filter((m) => m.proc !== null);
      const statuses = await Promise.all(running.map((m) => status(m.clientPort)));
      const i = statuses.findIndex((st) => st !== null && st.leader !== '0' && st.leader === st.header.member_id);
      return i < 0 ? -1 : members.indexOf(running[i]);
    },
    stop,
  };
}

export async function startEtcdCluster(n: number): Promise<EtcdCluster> {
  if (!existsSync(ETCD_BIN)) {
    throw new Error(
      `etcd binary not found at ${ETCD_BIN}: install it (Debian: apt-get install etcd-server) or set ETCD_BIN`,
    );
  }
  if (!Number.isInteger(n) || n < 1) throw new RangeError(`cluster size must be a positive integer, got ${n}`);
  // Another process can take a port between the free-port check and etcd's bind; new ports make that transient.
  let lastError: unknown;
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      return await tryStart(n);
    } catch (err) {
      lastError = err;
    }
  }
  throw lastError;
}
