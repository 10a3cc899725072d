// node_daemon (DESIGN §1.3): the first process on every device. Unactivated, it serves activation; activated, it
// boots the kernel services in order, supervises them, reports the device and its instances to system-config, and
// converges to `nodes/<node>/config` by watch (polling when the watch fails). SIGTERM stops the whole tree.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  type ConfigBackendKind, KERNEL_SERVICE_PORTS, type KernelServiceName, OPT_IN_KERNEL_SERVICES, type NodeConfig, type NodePaths, loadNodeConfig, nodePaths,
} from '../../lib/config/node-config.ts';
import { type InstanceReport, type NodeRunConfig, nodeRunConfigSchema } from '../../lib/config/zone-records.ts';
import { isActivated } from '../../lib/identity/node-identity.ts';
import { writeFileAtomic } from '../../lib/identity/keys.ts';
import { klogApi } from '../../lib/api/klog.ts';
import { KrpcError, httpHealthy } from '../../lib/krpc/index.ts';
import { type Logger, createLogger } from '../../lib/log/logger.ts';
import { collectDeviceInfo, pidAlive } from '../../lib/sysinfo.ts';
import { createLogShipper } from '../../lib/log/shipper.ts';
import { retryUntilDone } from '../../lib/retry.ts';
import { createKernelRuntime, type KernelRuntime } from '../runtime.ts';
import { type ChildStatus, Supervisor } from './supervisor.ts';
import { StoreControl } from './store-control.ts';
import type { TunnelPeer } from '../../lib/tunnel/index.ts';

/** Kernel services in boot order; each waits for the one before to be healthy. */
export const KERNEL_BOOT_ORDER = Object.keys(KERNEL_SERVICE_PORTS) as KernelServiceName[];

/** A device that reaches system-config remotely cannot run an instance of it, and needs its gateway first: the
 * gateway is its way to every other service of the zone. */
export function bootOrder(backend: ConfigBackendKind): KernelServiceName[] {
  if (backend !== 'remote') return KERNEL_BOOT_ORDER;
  return ['gateway', ...KERNEL_BOOT_ORDER.filter((s) => s !== 'gateway' && s !== 'system-config')];
}

/** What a node runs before the scheduler said otherwise: everything on the device holding the zone's store, only the
 * gateway on a device that joined. */
export function initialRunConfig(backend: ConfigBackendKind): NodeRunConfig {
  return { kernel: backend === 'remote' ? ['gateway'] : KERNEL_BOOT_ORDER.filter((s) => !OPT_IN_KERNEL_SERVICES.has(s)), apps: [] };
}

export function kernelPort(name: KernelServiceName, config: NodeConfig): number {
  return config.ports[KERNEL_SERVICE_PORTS[name]];
}

const KERNEL_NODE_FLAGS = [
  // A small young generation: kernel services hold little live data, and the default semi-space (16 MB) is memory
  // they would keep committed for nothing.
  '--max-semi-space-size=1',
  // grpc-js (the etcd client) sets an etcd member's IP address as the TLS server name, which Node warns about on every
  // start; the certificate is still checked against the address, so the warning says nothing an operator can act on.
  '--disable-warning=DEP0123',
];

/** Services whose work is native rather than JavaScript (logins are bound by scrypt, logs by SQLite) or periodic (the
 * scheduler's tick) run without V8's optimising compiler: about 8 MB less each, at a CPU cost they do not feel.
 * system-config, whose JavaScript runs on every call, keeps it, and so does the gateway: every byte to and from a
 * service passes through its stream code, which interpreted costs about twice the CPU per byte (a 1 GiB download
 * through it: ~1.5 instead of ~0.8 CPU seconds, and ~40% less throughput on two cores; docs/dcfs.md, "Benchmark"). */
const QUIET_SERVICE_FLAGS = ['--lite-mode'];
const QUIET_SERVICES: ReadonlySet<string> = new Set(['verify-hub', 'klog', 'scheduler', 'activation']);

/** cyfs-ns answers in batches through its native UDP addon and spends little of its time in JavaScript: without V8's
 * background threads (concurrent compilation and GC) it holds about 3 MB less for some 5% of its query rate, and
 * without the baseline compiler (its hot code is optimised anyway) about 1 MB less for none. The standalone server is
 * documented to run the same way (docs/ns.md, "Memory"). */
const NS_SERVICE_FLAGS = ['--single-threaded', '--no-sparkplug'];

/** dfs moves file bytes through Buffers at hundreds of MiB/s, and V8 counts their memory towards the old generation's
 * allocation limit: with the limit fitted to dfs's small heap (~12 MB), every ~9 MB of Buffers started a full
 * collection, about 30 a second during an upload, which cost a quarter of its CPU. A larger initial old space keeps
 * the limit above that churn (a 1 GiB upload: ~500 full collections down to ~40, 7.3 down to 5.3 CPU s; downloads
 * 2.1 down to 1.2 CPU s per GiB), for about 40 MB more resident memory at peak (docs/dcfs.md, "Benchmark"). */
const DFS_SERVICE_FLAGS = ['--initial-old-space-size=64', '--max-semi-space-size=8'];

function nodeFlags(service: string): string[] {
  if (service === 'ns') return [...KERNEL_NODE_FLAGS, ...NS_SERVICE_FLAGS];
  if (service === 'dfs') return [...KERNEL_NODE_FLAGS, ...DFS_SERVICE_FLAGS];
  return QUIET_SERVICES.has(service) ? [...KERNEL_NODE_FLAGS, ...QUIET_SERVICE_FLAGS] : KERNEL_NODE_FLAGS;
}

const BIN = fileURLToPath(new URL('../../../bin/buckyos.mjs', import.meta.url));

export interface NodeStatusFile {
  node: string | null;
  zone: string | null;
  pid: number;
  state: 'activation' | 'booting' | 'running' | 'stopping';
  activation_url?: string;
  started_at: number;
  updated_at: number;
  children: (ChildStatus & { port: number })[];
}

export function statusFilePath(paths: NodePaths): string {
  return join(paths.run, 'status.json');
}

export function readStatusFile(paths: NodePaths): NodeStatusFile | null {
  try {
    return JSON.parse(readFileSync(statusFilePath(paths), 'utf8')) as NodeStatusFile;
  } catch {
    return null;
  }
}

/** Polls `cond` every `everyMs` until it holds (true) or `exited` settles first (false). */
async function until(cond: () => boolean | Promise<boolean>, exited: Promise<unknown>, everyMs: number): Promise<boolean> {
  let done = false;
  void exited.then(() => (done = true));
  while (!done) {
    if (await cond()) return true;
    await new Promise((r) => setTimeout(r, everyMs));
  }
  return false;
}

class NodeDaemon {
  private readonly supervisor: Supervisor;
  private rt: KernelRuntime | null = null;
  private readonly stop = new AbortController();
  private readonly timers: NodeJS.Timeout[] = [];
  private state: NodeStatusFile['state'] = 'booting';
  private activationUrl: string | undefined;
  private readonly startedAt = Date.now();
  private desired: NodeRunConfig = initialRunConfig('sqlite');
  private converging: Promise<void> = Promise.resolve();
  private shipper: { stop(): Promise<void> } | null = null;
  private storeControl: StoreControl | null = null;
  /** Counts boots of the kernel: loops of an earlier boot end when it changes. */
  private generation = 0;

  constructor(
    private readonly paths: NodePaths,
    private config: NodeConfig,
    private readonly log: Logger,
  ) {
    this.supervisor = new Supervisor({ logger: log, onChange: () => this.scheduleHeartbeat() });
  }

  get aborted(): boolean {
    return this.stop.signal.aborted;
  }

  writeStatus(): void {
    const dev = this.rt?.identity.device;
    const status: NodeStatusFile = {
      node: dev?.name ?? null,
      zone: dev?.zone ?? null,
      pid: process.pid,
      state: this.state,
      activation_url: this.activationUrl,
      started_at: this.startedAt,
      updated_at: Date.now(),
      children: this.supervisor.statuses().map((c) => ({ ...c, port: kernelPort(c.name as KernelServiceName, this.config) })),
    };
    writeFileAtomic(statusFilePath(this.paths), JSON.stringify(status, null, 2), 0o644);
  }

  /** Runs the activation service as a child until the owner activates this device. A child of its own, so the
   * daemon of an activated node never carries activation's code in memory. */
  async awaitActivation(): Promise<void> {
    this.state = 'activation';
    const { port, host } = { port: this.config.ports.activation, host: this.config.activation_host };
    const addr = collectDeviceInfo().addresses.find((a) => a.family === 'IPv4')?.address ?? '127.0.0.1';
    const url = `http://${host === '0.0.0.0' ? addr : host}:${port}/`;
    const health = `http://${host === '0.0.0.0' ? '127.0.0.1' : host}:${port}/health`;
    while (!this.aborted && !isActivated(this.paths.etc)) {
      const child = spawn(process.execPath, [...nodeFlags('activation'), BIN, 'service', 'activation', '--root', this.paths.root], {
        env: { ...process.env, BUCKYOS_ROOT: this.paths.root },
        stdio: 'ignore',
      });
      const stopChild = () => child.kill('SIGTERM');
      this.stop.signal.addEventListener('abort', stopChild, { once: true });
      // A failed spawn emits 'error' (which rejects `once`) and never 'exit': count it as an exit and retry.
      const exited = once(child, 'close').catch((err: Error) => [null, `spawn failed: ${err.message}`]);
      // Announce the address only once it answers, so whoever reads the status can use it at once.
      if (await until(() => httpHealthy(health, 1000), exited, 100)) {
        this.activationUrl = url;
        this.writeStatus();
        this.log.info({ url }, 'device is not activated; waiting for activation');
      }
      // Once activated, the child stays on its port until the system UI answers, telling the owner's page when to
      // open it (docs/ui-activation.md): boot now, and let it exit on its own (a stop still ends it).
      if (await until(() => isActivated(this.paths.etc), exited, 200)) {
        void exited.then(() => this.stop.signal.removeEventListener('abort', stopChild));
        break;
      }
      const [code, signal] = (await exited) as [number | null, string | null];
      this.stop.signal.removeEventListener('abort', stopChild);
      if (!this.aborted && !isActivated(this.paths.etc)) {
        this.log.error({ code, signal }, 'activation service exited before activation; restarting it');
        await new Promise((r) => setTimeout(r, 1000));
      }
    }
    this.activationUrl = undefined;
  }

  private spec(name: KernelServiceName) {
    return {
      name,
      command: process.execPath,
      args: [...nodeFlags(name), BIN, 'service', name, '--root', this.paths.root],
      env: { BUCKYOS_ROOT: this.paths.root },
      healthUrl: `http://127.0.0.1:${kernelPort(name, this.config)}/health`,
      stderrDir: join(this.paths.logs, name),
    };
  }

  private async startKernel(name: KernelServiceName): Promise<void> {
    if (this.supervisor.has(name)) return;
    this.supervisor.start(this.spec(name));
    await this.supervisor.waitHealthy(name, 60_000);
  }

  async boot(): Promise<void> {
    this.state = 'booting';
    this.writeStatus();
    this.rt = await createKernelRuntime('node-daemon', this.paths.root);
    this.desired = this.cachedRunConfig() ?? initialRunConfig(this.rt.backend);
    this.storeControl ??= new StoreControl({
      paths: this.paths,
      log: this.log,
      runtime: () => this.rt!,
      backend: () => this.rt!.backend,
      stopService: (name) => this.supervisor.stop(name),
      restartService: async (name) => {
        await this.supervisor.stop(name);
        await this.startKernel(name);
      },
      reboot: (why) => this.reboot(why),
    });
    // system-config on etcd answers only once this device's member runs, so the member comes first.
    if (this.rt.backend === 'etcd') await this.storeControl.startSavedMember();
    if (this.rt.backend === 'remote') {
      // The gateway is this device's way to system-config on a core device. When the core cannot be reached, the
      // device keeps running what it last knew it should, and catches up when the link returns (followRunConfig).
      await this.startKernel('gateway');
      if (!(await this.reachConfig())) this.log.warn('system-config is unreachable; running on the cached run config');
    } else {
      // system-config is the bootstrap: nothing can be read, not even this node's own run config, before it. A store
      // that cannot answer yet (etcd without quorum, writes frozen during a move) is waited for, not given up on:
      // nothing restarts node_daemon, so giving up would leave the device down for good.
      await this.startKernel('system-config').catch((err) => this.log.warn({ err: (err as Error).message }, 'system-config is not healthy yet'));
      // A member whose cluster does not answer may have missed a move back to SQLite made while it was away (the
      // members left the cluster then): after a while the other core devices are asked where the store is now. (A
      // store that still serves reads, frozen by that move, lets boot through; store control asks then.)
      const elsewhere = new AbortController();
      const moved: { to: TunnelPeer | null } = { to: null };
      await retryUntilDone(
        async () => {
          await this.seedZoneRecords();
          await this.readDesired();
          this.storeControl!.storeAnswered();
        },
        {
          firstMs: 500,
          maxMs: 10_000,
          signal: AbortSignal.any([this.stop.signal, elsewhere.signal]),
          onFailure: async (err, wait) => {
            this.log.warn({ err: err.message, retry_ms: wait }, 'cannot publish this device\'s records yet; retrying');
            if (!this.storeControl!.storeSilent()) return;
            moved.to = await this.storeControl!.movedStore().catch((e: unknown) => {
              this.log.warn({ err: (e as Error).message }, 'asking the other core devices where the zone store is failed');
              return null;
            });
            if (moved.to) elsewhere.abort();
          },
        },
      );
      if (moved.to && !this.aborted) {
        this.log.warn({ via: moved.to.name }, 'the zone store moved while this device was away; reaching it as a remote device from now on');
        await this.storeControl.leaveForRemote(moved.to);
        await this.supervisor.stopAll();
        this.rt.close();
        this.config = loadNodeConfig(this.paths);
        return this.boot();
      }
    }
    await this.converge();
    this.state = 'running';
    await this.heartbeat();
    await this.reportDevice();
    this.timers.push(setInterval(() => void this.heartbeat(), this.config.heartbeat_ms));
    this.timers.push(setInterval(() => void this.reportDevice(), Math.max(this.config.heartbeat_ms * 6, 30_000)));
    void this.followRunConfig(this.generation);
    this.startShipper();
    if (this.generation === 0) this.storeControl.follow();
    this.log.info({ node: this.rt.identity.device.name, zone: this.rt.identity.boot.zone }, 'node is running');
  }

  private config_client() {
    return this.rt!.configClient();
  }

  /** Publishes this node's owner-signed documents (always the ones on disk: they are the truth) and, on first
   * boot, this node's run config: the zone has to start before the scheduler runs, and the scheduler then derives
   * the same list for the core node of a one-device zone, so its first tick leaves the key as it is. The boot config
   * is the core devices' to publish: RBAC lets another device's kernel read it, not write it (docs/rbac.md). */
  private async seedZoneRecords(): Promise<void> {
    const rt = this.rt!;
    const cfg = this.config_client();
    const node = rt.identity.device.name;
    const documents: [string, string][] = [[`devices/${node}/doc`, rt.identity.deviceJwt]];
    if (rt.identity.device.role === 'core') documents.unshift(['boot/config', rt.identity.bootJwt]);
    for (const [key, value] of documents) {
      const cur = await cfg.get({ key });
      if (cur.value === value) continue;
      try {
        await cfg.set({ key, value });
      } catch (e) {
        // Frozen by a move this device left half done: store control lifts it, and the next boot publishes these.
        if (cur.value !== null && e instanceof KrpcError && e.code === 'UNAVAILABLE' && /read-only for a moment/.test(e.message)) {
          this.log.warn({ key }, 'the store is frozen; publishing this device\'s document later');
          continue;
        }
        throw e;
      }
      if (key === 'boot/config' && cur.value === null) {
        const { boot, device } = rt.identity;
        rt.audit.emit({ kind: 'activation', actor: boot.owner, target: `did:web:${boot.zone}`, detail: { device: device.name, device_did: device.did } });
      }
    }
    // Read first: a store frozen by a move this device was making when it stopped refuses every write, and boot must
    // get through to store control, which abandons that move and lifts the freeze.
    const runConfig = `nodes/${node}/config`;
    if ((await cfg.get({ key: runConfig })).value !== null) return;
    try {
      await cfg.create({ key: runConfig, value: JSON.stringify(initialRunConfig(rt.backend)) });
    } catch (e) {
      if (!(e instanceof KrpcError && e.code === 'ALREADY_EXISTS')) throw e;
    }
  }

  private applyRunConfig(value: string | null): void {
    if (value === null) return;
    try {
      const parsed = nodeRunConfigSchema.safeParse(JSON.parse(value));
      if (parsed.success) {
        this.desired = parsed.data;
        writeFileAtomic(this.runConfigCache, JSON.stringify(parsed.data) + '\n', 0o644);
      } else this.log.error({ issues: parsed.error.issues }, 'nodes/<node>/config is invalid; keeping the previous one');
    } catch {
      this.log.error('nodes/<node>/config is not JSON; keeping the previous one');
    }
  }

  /** The last run config this node received: what it runs when it boots while cut off from system-config. */
  private get runConfigCache(): string {
    return join(this.paths.run, 'run-config.json');
  }

  private cachedRunConfig(): NodeRunConfig | null {
    try {
      const parsed = nodeRunConfigSchema.safeParse(JSON.parse(readFileSync(this.runConfigCache, 'utf8')));
      return parsed.success ? parsed.data : null;
    } catch {
      return null;
    }
  }

  /** For a device that joined: publishes its records and reads its run config through the gateway, waiting a while
   * for the tunnel to a core device to come up. False when system-config stayed unreachable. */
  private async reachConfig(): Promise<boolean> {
    const deadline = Date.now() + 20_000;
    while (!this.aborted) {
      try {
        await this.seedZoneRecords();
        await this.readDesired();
        return true;
      } catch (err) {
        if (Date.now() > deadline) {
          this.log.warn({ err: (err as Error).message }, 'cannot reach system-config');
          return false;
        }
        await new Promise((r) => setTimeout(r, 500));
      }
    }
    return false;
  }

  private async readDesired(): Promise<number> {
    const key = `nodes/${this.rt!.identity.device.name}/config`;
    const e = await this.config_client().get({ key });
    this.applyRunConfig(e.value);
    return e.revision;
  }

  /**
   * Starts what the run config lists and stops what it no longer lists. system-config always runs, and on a core
   * node so does the scheduler: it is what writes run configs, so no run config (an old one, or one set by hand) can
   * leave the zone without the process that would correct it.
   */
  converge(): Promise<void> {
    this.converging = this.converging.then(async () => {
      const backend = this.rt?.backend ?? 'sqlite';
      const order = bootOrder(backend);
      const always: KernelServiceName[] =
        backend === 'remote' ? ['gateway'] : this.rt?.identity.device.role === 'core' ? ['system-config', 'scheduler'] : ['system-config'];
      const want = new Set<string>([...always, ...this.desired.kernel].filter((s) => order.includes(s as KernelServiceName)));
      for (const name of [...order].reverse()) {
        if (!want.has(name) && this.supervisor.has(name)) {
          this.log.info({ service: name }, 'stopping kernel service no longer in the run config');
          await this.supervisor.stop(name);
          await this.forgetInstance(name);
        }
      }
      for (const name of order) {
        if (want.has(name) && !this.supervisor.has(name) && !this.aborted) {
          try {
            await this.startKernel(name);
          } catch (err) {
            // Keep booting the rest: the supervisor goes on restarting it, and status shows it unhealthy.
            this.log.error({ service: name, err: (err as Error).message }, 'kernel service did not become healthy');
          }
        }
      }
    });
    return this.converging;
  }

  /** Watch on the run config, with a polling fallback while the watch keeps failing. */
  private async followRunConfig(generation: number): Promise<void> {
    const key = `nodes/${this.rt!.identity.device.name}/config`;
    let rev = 0;
    while (!this.aborted && generation === this.generation) {
      try {
        if (rev === 0) {
          const listed = await this.config_client().list({ prefix: key });
          this.applyRunConfig(listed.entries[0]?.value ?? null);
          rev = listed.revision;
          await this.converge();
        }
        const w = await this.config_client().watch({ prefix: key, after_revision: rev, timeout_ms: 25_000 }, { timeoutMs: 35_000 });
        rev = w.revision;
        const last = w.events.filter((e) => e.key === key).pop();
        if (last) {
          this.applyRunConfig(last.value);
          await this.converge();
        }
      } catch (err) {
        if (this.aborted) return;
        this.log.warn({ err: (err as Error).message }, 'run config watch failed; polling');
        rev = 0;
        await new Promise((r) => setTimeout(r, Math.min(this.config.heartbeat_ms, 5000)));
      }
    }
  }

  /** Instance records are written one report at a time, so a heartbeat that listed a service before it was stopped
   * cannot land after the record was removed and bring it back. */
  private reporting: Promise<void> = Promise.resolve();

  private report(fn: () => Promise<void>): Promise<void> {
    const run = this.reporting.then(fn);
    this.reporting = run.catch(() => undefined);
    return run;
  }

  /** An instance stopped on purpose is gone, not silent: its record goes too, so its route goes at once instead of
   * pointing at a closed port until the heartbeat ages out. */
  private forgetInstance(name: string): Promise<void> {
    const key = `services/${name}/instances/${this.rt!.identity.device.name}`;
    return this.report(async () => {
      try {
        await this.config_client().delete({ key });
      } catch (err) {
        if (!(err instanceof KrpcError && err.code === 'NOT_FOUND')) this.log.warn({ key, err: (err as Error).message }, 'could not remove the instance record');
      }
    });
  }

  private heartbeatSoon: NodeJS.Timeout | null = null;

  /** A child changed state: report it now (coalescing bursts) so routes follow within moments, not a tick. */
  private scheduleHeartbeat(): void {
    if (this.heartbeatSoon || !this.rt || this.state !== 'running') return;
    this.heartbeatSoon = setTimeout(() => {
      this.heartbeatSoon = null;
      void this.heartbeat();
    }, 50);
  }

  /** Whether a heartbeat waits its turn already: it reads the statuses when it runs, so a second would add nothing,
   * and while system-config hangs they would only pile up. */
  private heartbeatQueued = false;

  private heartbeat(): Promise<void> {
    if (this.heartbeatQueued) return this.reporting;
    this.heartbeatQueued = true;
    return this.report(async () => {
      this.heartbeatQueued = false;
      if (this.aborted || !this.rt) return;
      const node = this.rt.identity.device.name;
      const cfg = this.config_client();
      const now = Date.now();
      try {
        this.writeStatus();
        for (const c of this.supervisor.statuses()) {
          const port = kernelPort(c.name as KernelServiceName, this.config);
          const instance: InstanceReport = { node, pid: c.pid, port, state: c.state, healthy: c.healthy, restarts: c.restarts, rss_bytes: c.rssBytes, heartbeat_at: now };
          await cfg.set({ key: `services/${c.name}/instances/${node}`, value: JSON.stringify(instance) });
        }
        // A device report that failed (the device was cut off) is made again as soon as the zone answers, so the
        // device shows online again at once rather than at the next periodic report.
        if (!this.deviceReported) await this.reportDevice();
      } catch (err) {
        this.log.warn({ err: (err as Error).message }, 'heartbeat failed');
      }
    });
  }

  private deviceReported = false;

  private async reportDevice(): Promise<void> {
    if (this.aborted || !this.rt) return;
    try {
      const info = { ...collectDeviceInfo(), reported_at: Date.now() };
      await this.config_client().set({ key: `devices/${this.rt.identity.device.name}/info`, value: JSON.stringify(info) });
      this.deviceReported = true;
    } catch (err) {
      this.deviceReported = false;
      this.log.warn({ err: (err as Error).message }, 'device report to system-config failed');
    }
  }

  private startShipper(): void {
    const rt = this.rt!;
    const klog = rt.backend === 'remote' ? rt.gatewayClient(klogApi) : rt.localClient(klogApi, this.config.ports.klog);
    this.shipper = createLogShipper({
      logsDir: this.paths.logs,
      node: rt.identity.device.name,
      stateFile: join(this.paths.run, 'log-shipper.json'),
      send: async (records, batchId) => {
        await klog.append({ records, batch_id: batchId });
      },
      log: this.log,
    });
  }

  /** The device switched backends (docs/etcd-control.md): stop every kernel service and boot again on the node
   * config now on disk. The etcd member, owned by store control, keeps running throughout. */
  async reboot(why: string): Promise<void> {
    if (this.aborted) return;
    this.log.info({ why }, 'restarting the kernel services');
    this.generation++;
    for (const t of this.timers.splice(0)) clearInterval(t);
    await this.rt?.audit.flush(2000);
    await this.shipper?.stop();
    this.shipper = null;
    await this.supervisor.stopAll();
    this.rt?.close();
    // A boot that fails here (the device's own etcd member not starting, the gateway not healthy in time) is tried
    // again until it holds: nothing else would ever start this device's kernel services again.
    await retryUntilDone(
      async () => {
        this.config = loadNodeConfig(this.paths);
        await this.boot();
      },
      {
        firstMs: 1000,
        maxMs: 30_000,
        signal: this.stop.signal,
        onFailure: async (err, wait) => {
          this.log.error({ err: err.message, retry_ms: wait }, 'booting the kernel services again failed; retrying');
          await this.supervisor.stopAll();
          this.rt?.close();
        },
      },
    );
  }

  private stopping: Promise<void> | null = null;

  /** Stops everything once; a second caller (a signal during a failed boot) waits for the same stop. */
  shutdown(): Promise<void> {
    this.stopping ??= this.stopAll();
    return this.stopping;
  }

  private async stopAll(): Promise<void> {
    this.stop.abort();
    this.state = 'stopping';
    for (const t of this.timers) clearInterval(t);
    this.log.info('stopping node: all kernel services');
    await this.rt?.audit.flush(2000);
    this.rt?.audit.stop();
    await this.shipper?.stop();
    await this.supervisor.stopAll();
    await this.storeControl?.close();
    rmSync(statusFilePath(this.paths), { force: true });
    this.log.info('node stopped');
  }
}

/** Runs node_daemon in this process until SIGTERM or SIGINT. */
export async function runNodeDaemon(root?: string): Promise<void> {
  const paths = nodePaths(root);
  const config = loadNodeConfig(paths);
  const pidFile = join(paths.run, 'node-daemon.pid');
  if (existsSync(pidFile)) {
    const pid = Number(readFileSync(pidFile, 'utf8'));
    if (pid && pid !== process.pid && pidAlive(pid)) throw new Error(`a node daemon is already running for ${paths.root} (pid ${pid})`);
  }
  writeFileAtomic(pidFile, String(process.pid), 0o644);
  const log = await createLogger({ service: 'node-daemon', logsDir: paths.logs, level: config.log_level });
  const daemon = new NodeDaemon(paths, config, log);
  let exiting = false;
  const onSignal = (sig: string) => {
    if (exiting) return;
    exiting = true;
    log.info({ signal: sig }, 'received signal');
    void daemon.shutdown().finally(() => {
      rmSync(pidFile, { force: true });
      process.exit(0);
    });
  };
  process.on('SIGTERM', () => onSignal('SIGTERM'));
  process.on('SIGINT', () => onSignal('SIGINT'));
  if (!isActivated(paths.etc)) await daemon.awaitActivation();
  if (daemon.aborted) return;
  try {
    await daemon.boot();
  } catch (err) {
    // Leave nothing behind: a half-booted node's children would hold its ports against the next start.
    await daemon.shutdown();
    rmSync(pidFile, { force: true });
    throw err;
  }
}
