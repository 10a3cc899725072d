// This node's etcd member, run as a child process of node_daemon when the zone keeps system-config in etcd
// (DESIGN §4). The flags are chosen for a home LAN of small devices; docs/etcd-control.md explains each one.
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, existsSync, mkdirSync, readFileSync, rmSync, type WriteStream } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { isIP } from 'node:net';
import { dirname, isAbsolute, join } from 'node:path';
import { DEVICE_NAME } from '../identity/documents.ts';

/** PEM files of this member's certificate (signed by the zone CA), its key and the zone CA. One certificate serves as
 * server and client certificate for both peer and client traffic, so it needs both TLS EKUs and, because etcd checks a
 * connecting peer's IP SANs against its source address, every address the device connects to peers from. */
export interface EtcdTls {
  certFile: string;
  keyFile: string;
  caFile: string;
}

export interface EtcdMemberSpec {
  /** The member's name: the device name, so `buckyos status` and etcd's member list agree. */
  name: string;
  /** Absolute. Once it holds a member (see hasMemberData), etcd restarts from it and ignores the initial-cluster flags. */
  dataDir: string;
  /** Where other members reach this one: listened on and advertised. */
  peerUrl: string;
  /** Listened on; advertised to other members except loopback ones (unless there are no others, as on a test
   * machine), since another device dialling this member's 127.0.0.1 would reach its own member instead. */
  clientUrls: string[];
  /** Every member of the cluster this member starts or joins, itself included. */
  initialCluster: { name: string; peerUrl: string }[];
  /** 'new' when the whole cluster is created together; 'existing' for a member added to a running cluster. */
  state: 'new' | 'existing';
  /** Distinguishes this cluster from any other created with the same member names and URLs. */
  clusterToken: string;
  /** Peer and client TLS with client-certificate authentication on both; without it every URL is plain http. */
  tls?: EtcdTls;
}

export interface EtcdMemberOptions {
  /** Where etcd's own log is appended; without it only the last lines are kept, for error messages. */
  logFile?: string;
  /** The etcd executable; default `etcd` from PATH. */
  binary?: string;
  /** Called when the process exits after a successful start, whether stopped or not: a member removed from the
   * cluster exits by itself, with status 0, and must not be restarted on the same data. */
  onExit?: (code: number | null, signal: NodeJS.Signals | null) => void;
}

// Raft timing for a home LAN: Wi-Fi round trips spike to tens of milliseconds and small devices fsync slowly, so
// heartbeats are sparser than etcd's default (100/1000 ms) and a leader is only replaced after ten missed heartbeats.
const HEARTBEAT_MS = 250;
const ELECTION_MS = 2500;
// The same history window as the SQLite backend (DESIGN: watches resume from a revision, and COMPACTED beyond it).
const HISTORY_REVISIONS = 100_000;
// etcd keeps this many raft entries before a snapshot; its 3.4 default (100,000) costs hundreds of MiB of memory
// with large values, too much beside everything else a home device runs.
const SNAPSHOT_COUNT = 10_000;
// etcd's own default, pinned: the size at which the store raises NOSPACE and goes read-only.
const QUOTA_BYTES = 2 * 1024 ** 3;
// Pinned to etcd's defaults because system-config's limits rely on them: at most 128 ops in a transaction, and a
// request (a migration batch, a 256 KiB value) below 1.5 MiB.
const MAX_TXN_OPS = 128;
const MAX_REQUEST_BYTES = 1.5 * 1024 * 1024;

const START_TIMEOUT_MS = 60_000;
const PROBE_INTERVAL_MS = 100;
const PROBE_TIMEOUT_MS = 1000;
// A stopping leader first hands leadership over, which can take etcd's request timeout (5 s + 2 elections).
const STOP_GRACE_MS = 15_000;
const LOG_TAIL_CHARS = 4000;
const CLUSTER_TOKEN = /^[A-Za-z0-9._-]{1,128}$/;

/** True when `dataDir` already holds an etcd member: starting it restarts that member with its data. */
export function hasMemberData(dataDir: string): boolean {
  return existsSync(join(dataDir, 'member', 'wal'));
}

/**
 * Deletes `dataDir` when it holds a member of a cluster other than the one about to be joined: etcd restarts a member
 * from its data whatever the new token and member list say, so data left by a cluster this device served before (a
 * move that failed while it was down, a power cut before it dropped its member) would take it back into that dead
 * cluster. `lastToken` is the token the data was written under (null when unknown, which counts as other). Returns
 * whether it deleted anything.
 */
export function clearDataOfOtherCluster(dataDir: string, lastToken: string | null, token: string): boolean {
  if (lastToken === token || !existsSync(dataDir)) return false;
  rmSync(dataDir, { recursive: true, force: true });
  return true;
}

export function assertMemberName(name: string, what = 'etcd member name'): void {
  if (typeof name !== 'string' || !DEVICE_NAME.test(name)) {
    throw new Error(`${what} ${JSON.stringify(name)} is not a device name (2-32 lowercase letters, digits or dashes)`);
  }
}

function hostIp(url: URL): string {
  return url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname;
}

function isLoopback(url: URL): boolean {
  const ip = hostIp(url);
  return ip === '::1' || (isIP(ip) === 4 && ip.startsWith('127.'));
}

/**
 * Checks a member URL and returns its canonical form (`scheme://ip:port`), the one string every member and the
 * cluster's member list must agree on. etcd binds only to IP addresses, and an unspecified address (0.0.0.0) could not
 * be advertised.
 */
export function memberUrl(raw: string, what: string, tls: boolean): string {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new Error(`${what} ${JSON.stringify(raw)} is not a URL`);
  }
  const scheme = tls ? 'https:' : 'http:';
  if (url.protocol !== scheme) {
    throw new Error(
      `${what} ${JSON.stringify(raw)} must use ${scheme.slice(0, -1)}: ` +
        (tls ? 'with TLS every URL is https, so no plain-text listener bypasses client certificates' : 'TLS is not configured'),
    );
  }
  const ip = hostIp(url);
  if (isIP(ip) === 0) throw new Error(`${what} ${JSON.stringify(raw)} must name an IP address, not a host name`);
  if (ip === '0.0.0.0' || ip === '::') {
    throw new Error(`${what} ${JSON.stringify(raw)} must name a concrete address: it is also advertised`);
  }
  if (url.port === '') throw new Error(`${what} ${JSON.stringify(raw)} must give a port`);
  if (url.username || url.password || url.search || url.hash || url.pathname !== '/') {
    throw new Error(`${what} ${JSON.stringify(raw)} must be only scheme, address and port`);
  }
  return url.origin;
}

/** The command-line arguments that run `spec`; validates the whole spec first. */
export function etcdArgs(spec: EtcdMemberSpec): string[] {
  assertMemberName(spec.name);
  const tls = spec.tls !== undefined;
  if (typeof spec.dataDir !== 'string' || !isAbsolute(spec.dataDir)) {
    throw new Error(`etcd data directory ${JSON.stringify(spec.dataDir)} must be an absolute path`);
  }
  const peerUrl = memberUrl(spec.peerUrl, `peer URL of ${spec.name}`, tls);
  if (!Array.isArray(spec.clientUrls) || spec.clientUrls.length === 0) throw new Error(`etcd member ${spec.name} has no client URL`);
  const clientUrls = spec.clientUrls.map((u) => memberUrl(u, `client URL of ${spec.name}`, tls));
  if (new Set(clientUrls).size !== clientUrls.length) {
    throw new Error(`client URLs of ${spec.name} repeat an address: ${clientUrls.join(', ')}`);
  }
  const remote = clientUrls.filter((u) => !isLoopback(new URL(u)));
  const advertised = remote.length > 0 ? remote : clientUrls;
  if (spec.state !== 'new' && spec.state !== 'existing') {
    throw new Error(`initial cluster state must be 'new' or 'existing', got ${JSON.stringify(spec.state)}`);
  }
  if (typeof spec.clusterToken !== 'string' || !CLUSTER_TOKEN.test(spec.clusterToken)) {
    throw new Error(`cluster token ${JSON.stringify(spec.clusterToken)} must be 1-128 letters, digits, '.', '_' or '-'`);
  }

  if (!Array.isArray(spec.initialCluster) || spec.initialCluster.length === 0) {
    throw new Error(`initial cluster of ${spec.name} is empty; it must list at least the member itself`);
  }
  const owner = new Map<string, string>();
  const cluster = spec.initialCluster.map((m) => {
    assertMemberName(m.name, 'initial cluster member name');
    const url = memberUrl(m.peerUrl, `peer URL of initial cluster member ${m.name}`, tls);
    const prev = owner.get(url);
    if (prev !== undefined) throw new Error(`initial cluster lists peer URL ${url} twice (${prev} and ${m.name})`);
    owner.set(url, m.name);
    return `${m.name}=${url}`;
  });
  const own = spec.initialCluster.filter((m) => m.name === spec.name);
  if (own.length !== 1 || owner.get(peerUrl) !== spec.name) {
    throw new Error(`initial cluster must list ${spec.name} exactly once, at its peer URL ${peerUrl}; got ${cluster.join(',')}`);
  }

  const args = [
    `--name=${spec.name}`,
    `--data-dir=${spec.dataDir}`,
    `--listen-peer-urls=${peerUrl}`,
    `--initial-advertise-peer-urls=${peerUrl}`,
    `--listen-client-urls=${clientUrls.join(',')}`,
    `--advertise-client-urls=${advertised.join(',')}`,
    `--initial-cluster=${cluster.join(',')}`,
    `--initial-cluster-state=${spec.state}`,
    `--initial-cluster-token=${spec.clusterToken}`,
    `--heartbeat-interval=${HEARTBEAT_MS}`,
    `--election-timeout=${ELECTION_MS}`,
    // A device that comes back from a partition (the portable node back home) must not depose a working leader.
    '--pre-vote=true',
    `--snapshot-count=${SNAPSHOT_COUNT}`,
    `--quota-backend-bytes=${QUOTA_BYTES}`,
    '--auto-compaction-mode=revision',
    `--auto-compaction-retention=${HISTORY_REVISIONS}`,
    `--max-txn-ops=${MAX_TXN_OPS}`,
    `--max-request-bytes=${MAX_REQUEST_BYTES}`,
    // etcd refuses a membership change that would leave fewer started members than the new quorum.
    '--strict-reconfig-check=true',
    '--enable-v2=false',
    '--logger=zap',
    '--log-outputs=stderr',
    '--log-level=warn',
  ];
  if (spec.tls) {
    const { certFile, keyFile, caFile } = spec.tls;
    for (const [what, file] of Object.entries({ certFile, keyFile, caFile })) {
      if (typeof file !== 'string' || !isAbsolute(file)) throw new Error(`TLS ${what} ${JSON.stringify(file)} must be an absolute path`);
    }
    args.push(
      `--cert-file=${certFile}`,
      `--key-file=${keyFile}`,
      `--trusted-ca-file=${caFile}`,
      '--client-cert-auth=true',
      `--peer-cert-file=${certFile}`,
      `--peer-key-file=${keyFile}`,
      `--peer-trusted-ca-file=${caFile}`,
      '--peer-client-cert-auth=true',
    );
  }
  return args;
}

interface TlsMaterial {
  ca: Buffer;
  cert: Buffer;
  key: Buffer;
}

function readTls(tls: EtcdTls): TlsMaterial {
  const read = (what: string, file: string): Buffer => {
    try {
      return readFileSync(file);
    } catch (err) {
      throw new Error(`cannot read etcd TLS ${what} ${file}: ${(err as Error).message}`);
    }
  };
  return { ca: read('CA file', tls.caFile), cert: read('certificate file', tls.certFile), key: read('key file', tls.keyFile) };
}

/** True when anything answers HTTP at `url`: the peer listener of a member that has read its data and joined. */
function answersHttp(url: string, tls: TlsMaterial | null): Promise<boolean> {
  return new Promise((resolve) => {
    // A fresh connection each time (no agent): a pooled one could outlive the process it was opened to.
    const opts = { timeout: PROBE_TIMEOUT_MS, agent: false, ...(tls ?? {}) };
    const req = (tls ? httpsRequest : httpRequest)(url, opts, (res) => {
      res.resume();
      resolve(true);
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(false));
    req.end();
  });
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

export class EtcdMember {
  private readonly args: string[];
  private child: ChildProcess | null = null;
  private exited: Promise<void> = Promise.resolve();
  private log: WriteStream | null = null;
  private tail = '';

  constructor(
    readonly spec: EtcdMemberSpec,
    private readonly opts: EtcdMemberOptions = {},
  ) {
    this.args = etcdArgs(spec);
  }

  get running(): boolean {
    return this.child !== null;
  }

  /**
   * Starts the member and resolves once its peer listener answers, which etcd does after it has opened its data
   * directory and, for a new member, agreed its cluster configuration. It does not wait for quorum: a member of a new
   * cluster cannot serve clients until a majority has started, and each device starts only its own member.
   */
  async start(): Promise<void> {
    if (this.child) throw new Error(`etcd member ${this.spec.name} is already running (pid ${this.child.pid})`);
    const tls = this.spec.tls ? readTls(this.spec.tls) : null;
    // The data directory holds every secret in the zone: no other local account may read it.
    mkdirSync(dirname(this.spec.dataDir), { recursive: true, mode: 0o700 });
    mkdirSync(this.spec.dataDir, { recursive: true, mode: 0o700 });
    if (this.opts.logFile) {
      mkdirSync(dirname(this.opts.logFile), { recursive: true, mode: 0o750 });
      this.log = createWriteStream(this.opts.logFile, { flags: 'a', mode: 0o640 });
      // A log that cannot be written must not take the member down; the tail still reaches error messages.
      this.log.on('error', () => undefined);
    }
    this.tail = '';
    const binary = this.opts.binary ?? 'etcd';
    const child = spawn(binary, this.args, { stdio: ['ignore', 'pipe', 'pipe'] });
    this.child = child;
    const output = (chunk: Buffer): void => {
      this.log?.write(chunk);
      this.tail = (this.tail + chunk.toString('utf8')).slice(-LOG_TAIL_CHARS);
    };
    child.stdout?.on('data', output);
    child.stderr?.on('data', output);
    // Written by the child's events while the loop below waits; an annotated object keeps TypeScript from treating
    // the fields as never changing.
    const state: { spawnError: Error | null; exit: string | null; started: boolean } = { spawnError: null, exit: null, started: false };
    child.once('error', (err) => {
      state.spawnError = err;
    });
    this.exited = new Promise((resolve) => {
      // 'close', not 'exit': a binary that failed to spawn emits only 'error' and 'close'.
      child.once('close', (code, signal) => {
        state.exit = signal ?? `exit code ${code}`;
        this.child = null;
        this.log?.end();
        this.log = null;
        if (state.started) this.opts.onExit?.(code, signal);
        resolve();
      });
    });

    const versionUrl = `${memberUrl(this.spec.peerUrl, 'peer URL', tls !== null)}/version`;
    const deadline = Date.now() + START_TIMEOUT_MS;
    for (;;) {
      if (state.exit !== null) {
        const why = state.spawnError ? `cannot run ${binary}: ${state.spawnError.message}` : `exited (${state.exit})`;
        throw new Error(`etcd member ${this.spec.name} ${why} during start:\n${this.tail}`);
      }
      if (await answersHttp(versionUrl, tls)) break;
      if (Date.now() > deadline) {
        await this.stop();
        throw new Error(`etcd member ${this.spec.name} did not answer on ${versionUrl} within ${START_TIMEOUT_MS} ms:\n${this.tail}`);
      }
      await sleep(PROBE_INTERVAL_MS);
    }
    state.started = true;
  }

  /** Stops the member gracefully (a leader hands leadership over first), killing it if it does not exit in time. */
  async stop(): Promise<void> {
    const child = this.child;
    if (!child) return;
    child.kill('SIGTERM');
    const killer = setTimeout(() => child.kill('SIGKILL'), STOP_GRACE_MS);
    await this.exited;
    clearTimeout(killer);
  }
}
