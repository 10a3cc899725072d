// Zone devices on a test network (test/support/netns.ts): each device is a real `buckyos node` with its own root
// directory, running inside its own network namespace on the default ports, driven through the CLI run in that
// namespace, as an operator on the device would.
import type { ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { NodeStatusFile } from '../../src/kernel/node-daemon/main.ts';
import { type NodePaths, nodePaths, saveNodeConfig } from '../../src/lib/config/node-config.ts';
import { NetExecError, type TestNet } from './netns.ts';
import { BIN } from './zone.ts';

export const MNEMONIC = 'legal winner thank year wave sausage worth useful legal winner thank yellow';
export const ADMIN_PASSWORD = 'Zone-admin-pw-42';

export interface TestDevice {
  name: string;
  ip: string;
  root: string;
  paths: NodePaths;
  daemon: ChildProcess | null;
  status(): NodeStatusFile | null;
  waitFor(pred: (s: NodeStatusFile) => boolean, timeoutMs?: number, what?: string): Promise<NodeStatusFile>;
  /** Runs the CLI inside the device's namespace; rejects with the CLI's stderr when it exits non-zero. */
  cli(args: string[], env?: NodeJS.ProcessEnv, timeoutMs?: number): Promise<string>;
  /** Like cli, but resolves the exit code and output instead of rejecting. */
  tryCli(args: string[], env?: NodeJS.ProcessEnv): Promise<{ code: number | null; stdout: string; stderr: string }>;
  start(): void;
  /** SIGTERM the daemon and wait for it to exit. */
  stop(): Promise<void>;
  /** Power cut: every process in the namespace gets SIGKILL. */
  kill(): Promise<void>;
}

export async function startDevice(net: TestNet, name: string): Promise<TestDevice> {
  const nd = net.device(name);
  const root = mkdtempSync(join(tmpdir(), `buckyos-${name}-`));
  const paths = nodePaths(root);
  saveNodeConfig(paths, { heartbeat_ms: 1000, log_level: 'debug' });
  const dev: TestDevice = {
    name,
    ip: nd.ip,
    root,
    paths,
    daemon: null,
    status() {
      try {
        return JSON.parse(readFileSync(join(paths.run, 'status.json'), 'utf8')) as NodeStatusFile;
      } catch {
        return null;
      }
    },
    async waitFor(pred, timeoutMs = 60_000, what = 'condition') {
      const deadline = Date.now() + timeoutMs;
      while (Date.now() < deadline) {
        const s = dev.status();
        // A daemon killed with SIGKILL leaves its last status behind: only the running daemon's own counts.
        if (s && (!dev.daemon || s.pid === dev.daemon.pid) && pred(s)) return s;
        if (dev.daemon && dev.daemon.exitCode !== null) throw new Error(`${name}: node daemon exited (${dev.daemon.exitCode}) while waiting for ${what}`);
        await new Promise((r) => setTimeout(r, 200));
      }
      throw new Error(`${name}: timed out waiting for ${what}; status: ${JSON.stringify(dev.status())}`);
    },
    async cli(args, env = {}, timeoutMs = 60_000) {
      try {
        return await net.exec(name, process.execPath, [BIN, '--root', root, ...args], { env, timeoutMs });
      } catch (e) {
        if (e instanceof NetExecError) throw new Error(`${name}: buckyos ${args.join(' ')} failed (${e.code}): ${e.stderr.trim() || e.stdout.trim()}`);
        throw e;
      }
    },
    async tryCli(args, env = {}) {
      try {
        return { code: 0, stdout: await net.exec(name, process.execPath, [BIN, '--root', root, ...args], { env, timeoutMs: 60_000 }), stderr: '' };
      } catch (e) {
        if (e instanceof NetExecError) return { code: e.code, stdout: e.stdout, stderr: e.stderr };
        throw e;
      }
    },
    start() {
      dev.daemon = net.spawn(name, process.execPath, [BIN, 'node', '--root', root], { stdio: ['ignore', 'ignore', 'pipe'] });
      dev.daemon.stderr?.on('data', (d) => process.stderr.write(`[${name}] ${d}`));
    },
    async stop() {
      const d = dev.daemon;
      if (d && d.exitCode === null && d.signalCode === null) {
        const exited = new Promise((r) => d.once('exit', r));
        // The spawned process is `ip netns exec`, which execs node: the signal reaches the daemon itself.
        d.kill('SIGTERM');
        const t = setTimeout(() => d.kill('SIGKILL'), 20_000);
        await exited;
        clearTimeout(t);
      }
      dev.daemon = null;
    },
    async kill() {
      await net.killAll(name);
      dev.daemon = null;
    },
  };
  dev.start();
  await dev.waitFor((s) => s.state === 'activation', 30_000, 'activation mode');
  return dev;
}

/** Waits until the device's gateway routes system-config: a node reports `running` once its services are up, a
 * moment before the scheduler has written the routes to them. */
async function waitRoutable(dev: TestDevice, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const r = await dev.tryCli(['config', 'get', 'boot/config']);
    if (r.code === 0) return;
    if (Date.now() > deadline) throw new Error(`${dev.name}: system-config not reachable through the gateway: ${r.stderr.trim()}`);
    await new Promise((res) => setTimeout(res, 500));
  }
}

/** Activates the first device of a zone from inside its namespace, with the test owner words and password. */
export async function activateFirst(dev: TestDevice, zone: string): Promise<void> {
  await dev.cli(['activate', '--zone', zone, '--owner', 'alice', '--device-name', dev.name], { BUCKYOS_MNEMONIC: MNEMONIC, BUCKYOS_PASSWORD: ADMIN_PASSWORD });
  await dev.waitFor((s) => s.state === 'running', 90_000, 'running after activation');
  await waitRoutable(dev);
}

/** Issues an offer on `admin` and joins `dev` with it; resolves once `dev` runs in the zone. */
export async function joinDevice(admin: TestDevice, dev: TestDevice, role: string): Promise<void> {
  const offer = JSON.parse(await admin.cli(['device', 'add', '--role', role, '--name', dev.name, '--json'])) as { code: string };
  await dev.cli(['join', offer.code]);
  await dev.waitFor((s) => s.state === 'running', 90_000, 'running after join');
  await waitRoutable(dev);
}

/** Stops the device and deletes its root, unless BUCKYOS_TEST_KEEP_ROOTS is set (to read a failed run's logs). */
export async function destroyDevice(dev: TestDevice): Promise<void> {
  await dev.stop().catch(() => undefined);
  if (process.env.BUCKYOS_TEST_KEEP_ROOTS) return console.error(`kept ${dev.name}'s root: ${dev.root}`);
  if (existsSync(dev.root)) rmSync(dev.root, { recursive: true, force: true });
}
