// Starts a real single-device zone (the built `buckyos node` process and its kernel children) in a temporary root
// on free ports, and always tears it down. Multi-process tests build on this.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, readFileSync, existsSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { saveNodeConfig, nodePaths, type NodePaths } from '../../src/lib/config/node-config.ts';
import type { NodeStatusFile } from '../../src/kernel/node-daemon/main.ts';
import { didDev, loadKeyFile } from '../../src/lib/identity/keys.ts';
import { signAccessToken } from '../../src/lib/identity/tokens.ts';
import { randomUUID } from 'node:crypto';
import { pidAlive } from '../../src/lib/sysinfo.ts';
import { portFree } from './ports.ts';

export const REPO = fileURLToPath(new URL('../..', import.meta.url));
export const BIN = join(REPO, 'bin', 'buckyos.mjs');

const OFFSETS = { gateway: 0, activation: 2, ui: 10, tunnel: 80, system_config: 20, verify_hub: 120, scheduler: 220, klog: 320, ns: 420, dfs: 520, files: 620 };

/** A block of ports laid out like the defaults (3180, 3182, 3200, ...) shifted to a free range. */
export async function freePorts(): Promise<Record<keyof typeof OFFSETS, number>> {
  for (let attempt = 0; attempt < 50; attempt++) {
    // Below the kernel's ephemeral range (32768 and up): a port a service binds only later (dfs, once storage is
    // configured) cannot meanwhile become some connection's local port.
    const base = 20000 + Math.floor(Math.random() * 120) * 100;
    const ports = Object.fromEntries(Object.entries(OFFSETS).map(([k, o]) => [k, base + o])) as Record<keyof typeof OFFSETS, number>;
    const free = await Promise.all(Object.values(ports).map(portFree));
    if (free.every(Boolean)) return ports;
  }
  throw new Error('no free port block found');
}

export interface TestZone {
  root: string;
  paths: NodePaths;
  ports: Awaited<ReturnType<typeof freePorts>>;
  daemon: ChildProcess;
  gatewayUrl: string;
  activationUrl: string;
  /** The system UI on the gateway's LAN listener (on loopback in tests). */
  uiUrl: string;
  status(): NodeStatusFile | null;
  waitFor(pred: (s: NodeStatusFile) => boolean, timeoutMs?: number, what?: string): Promise<NodeStatusFile>;
  /** A kernel token as root on the device has (what the CLI uses without --user). */
  localToken(): Promise<string>;
  /** Waits until the node gateway answers `/health` of each service through its route. */
  waitRoutable(services: string[], timeoutMs?: number): Promise<void>;
  /** Runs the CLI against this zone; resolves with exit code and output. */
  cli(args: string[], env?: Record<string, string>): Promise<{ code: number; stdout: string; stderr: string }>;
  /** SIGTERM the daemon and wait for it and every child to exit. */
  stop(): Promise<void>;
  /** Stops (if running) and deletes the root. */
  destroy(): Promise<void>;
  startDaemon(): void;
}

/** Tests default to fast heartbeats and debug logs; `defaults: true` keeps the node's embedded defaults instead. */
/** The last lines of every log of each service the status shows unhealthy: why a child keeps failing. */
function unhealthyLogs(paths: NodePaths, status: NodeStatusFile | null): string {
  const out: string[] = [];
  for (const c of status?.children ?? []) {
    if (c.healthy) continue;
    const dir = join(paths.logs, c.name);
    for (const file of existsSync(dir) ? readdirSync(dir) : []) {
      const tail = readFileSync(join(dir, file), 'utf8').trimEnd().split('\n').slice(-15).join('\n');
      if (tail) out.push(`--- ${c.name}/${file}:\n${tail}`);
    }
  }
  return out.length ? `\n${out.join('\n')}` : '';
}

export interface ZoneOptions {
  heartbeatMs?: number;
  defaults?: boolean;
  /** dfs's chunk collection grace (node config `dfs_gc_grace_s`), to see chunks go within a test. */
  gcGraceS?: number;
}

export async function startZone(opts: ZoneOptions = {}): Promise<TestZone> {
  const root = mkdtempSync(join(tmpdir(), 'buckyos-zone-'));
  const paths = nodePaths(root);
  const ports = await freePorts();
  saveNodeConfig(
    paths,
    opts.defaults
      ? { ports, activation_host: '127.0.0.1', ui_host: '127.0.0.1', files_host: '127.0.0.1' }
      : {
          ports, activation_host: '127.0.0.1', ui_host: '127.0.0.1', files_host: '127.0.0.1', heartbeat_ms: opts.heartbeatMs ?? 1000, log_level: 'debug',
          ...(opts.gcGraceS === undefined ? {} : { dfs_gc_grace_s: opts.gcGraceS }),
        },
  );
  const statusPath = join(paths.run, 'status.json');
  const seenPids = new Set<number>();

  const zone: TestZone = {
    root,
    paths,
    ports,
    daemon: null as unknown as ChildProcess,
    gatewayUrl: `http://127.0.0.1:${ports.gateway}`,
    activationUrl: `http://127.0.0.1:${ports.activation}`,
    uiUrl: `http://127.0.0.1:${ports.ui}`,
    status() {
      try {
        const s = JSON.parse(readFileSync(statusPath, 'utf8')) as NodeStatusFile;
        for (const c of s.children) if (c.pid) seenPids.add(c.pid);
        return s;
      } catch {
        return null;
      }
    },
    async waitFor(pred, timeoutMs = 60_000, what = 'condition') {
      const deadline = Date.now() + timeoutMs;
      while (Date.now() < deadline) {
        const s = zone.status();
        if (s && pred(s)) return s;
        if (zone.daemon.exitCode !== null) throw new Error(`node daemon exited (${zone.daemon.exitCode}) while waiting for ${what}`);
        await new Promise((r) => setTimeout(r, 100));
      }
      const last = zone.status();
      throw new Error(`timed out waiting for ${what}; status: ${JSON.stringify(last)}${unhealthyLogs(paths, last)}`);
    },
    async localToken() {
      const kp = loadKeyFile(join(paths.etc, 'device_key.pem'));
      return signAccessToken({ typ: 'service', sub: 'node-daemon', app: 'buckyos-cli', jti: randomUUID() }, kp.privateKey, 600, didDev(kp.publicKeyB64));
    },
    async waitRoutable(services, timeoutMs = 30_000) {
      const deadline = Date.now() + timeoutMs;
      for (const s of services) {
        for (;;) {
          try {
            const r = await fetch(`${zone.gatewayUrl}/kapi/${s}/health`);
            await r.body?.cancel();
            if (r.status === 200) break;
          } catch {
            // Not routable yet.
          }
          if (Date.now() > deadline) throw new Error(`${s} not routable through the gateway within ${timeoutMs} ms`);
          await new Promise((r) => setTimeout(r, 100));
        }
      }
    },
    cli(args, env = {}) {
      return new Promise((resolve) => {
        const p = spawn(process.execPath, [BIN, '--root', root, ...args], { env: { ...process.env, ...env } });
        let stdout = '';
        let stderr = '';
        p.stdout.on('data', (d) => (stdout += d));
        p.stderr.on('data', (d) => (stderr += d));
        p.on('exit', (code) => resolve({ code: code ?? -1, stdout, stderr }));
      });
    },
    startDaemon() {
      zone.daemon = spawn(process.execPath, [BIN, 'node', '--root', root], { stdio: ['ignore', 'ignore', 'pipe'] });
      zone.daemon.stderr?.on('data', (d) => process.stderr.write(`[node-daemon] ${d}`));
    },
    async stop() {
      const d = zone.daemon;
      zone.status();
      if (d && d.exitCode === null && d.signalCode === null) {
        const exited = new Promise((r) => d.once('exit', r));
        d.kill('SIGTERM');
        const t = setTimeout(() => d.kill('SIGKILL'), 20_000);
        await exited;
        clearTimeout(t);
      }
      // Anything the daemon failed to stop is a test failure, but we still clean it up.
      const left = [...seenPids].filter(pidAlive);
      for (const pid of left) process.kill(pid, 'SIGKILL');
      if (left.length > 0) throw new Error(`kernel processes outlived the daemon: ${left.join(', ')}`);
    },
    async destroy() {
      try {
        await zone.stop();
      } finally {
        if (existsSync(root)) rmSync(root, { recursive: true, force: true });
      }
    },
  };
  zone.startDaemon();
  await zone.waitFor((s) => s.state === 'activation', 30_000, 'activation mode');
  return zone;
}
