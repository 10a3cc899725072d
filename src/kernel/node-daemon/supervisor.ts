// Supervises one child process per kernel service: start, health check, restart with exponential back-off, and
// an orderly stop (SIGTERM, then SIGKILL after a grace period).
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { httpHealthy } from '../../lib/krpc/index.ts';
import { processRss } from '../../lib/sysinfo.ts';

export interface ChildSpec {
  name: string;
  command: string;
  args: string[];
  env?: Record<string, string>;
  /** GET this URL for health; 200 means healthy. */
  healthUrl?: string;
  /** Where the child's stderr goes (crash output before its own logger is up). */
  stderrDir: string;
}

export type ChildState = 'starting' | 'running' | 'backoff' | 'stopping' | 'stopped';

export interface ChildStatus {
  name: string;
  state: ChildState;
  pid: number | null;
  healthy: boolean;
  restarts: number;
  startedAt: number | null;
  lastExit: { code: number | null; signal: string | null; at: number } | null;
  rssBytes: number | null;
}

export interface SupervisorOptions {
  logger: Logger;
  /** Called when a child becomes healthy or exits, so its state can be reported without waiting for a tick. */
  onChange?: (name: string) => void;
  healthIntervalMs?: number;
  /** Consecutive failed health checks before the child is killed and restarted. */
  healthFailures?: number;
  /** Time a child gets to become healthy before checks count against it. */
  startGraceMs?: number;
  backoffBaseMs?: number;
  backoffMaxMs?: number;
  /** A child running this long without crashing resets its back-off. */
  stableAfterMs?: number;
  stopGraceMs?: number;
}

type SupervisorSettings = Required<Omit<SupervisorOptions, 'logger' | 'onChange'>> & Pick<SupervisorOptions, 'logger' | 'onChange'>;

class Supervised {
  status: ChildStatus;
  private child: ChildProcess | null = null;
  private failuresInRow = 0;
  private healthMisses = 0;
  private timer: NodeJS.Timeout | null = null;
  private healthTimer: NodeJS.Timeout | null = null;
  private wanted = true;
  private exited: Promise<void> = Promise.resolve();

  constructor(
    readonly spec: ChildSpec,
    private readonly opts: SupervisorSettings,
    private readonly onHealthy: (name: string) => void,
  ) {
    this.status = { name: spec.name, state: 'stopped', pid: null, healthy: false, restarts: 0, startedAt: null, lastExit: null, rssBytes: null };
  }

  start(): void {
    this.wanted = true;
    const { spec, opts } = this;
    // Logs name users and addresses: not for other local accounts (the service's own logger uses the same modes).
    mkdirSync(spec.stderrDir, { recursive: true, mode: 0o750 });
    const stderr = createWriteStream(join(spec.stderrDir, 'stderr.log'), { flags: 'a', mode: 0o640 });
    stderr.on('error', (err) => opts.logger.error({ child: spec.name, err: err.message }, 'cannot write kernel service stderr log'));
    const child = spawn(spec.command, spec.args, { env: { ...process.env, ...spec.env }, stdio: ['ignore', 'ignore', 'pipe'] });
    child.stderr?.pipe(stderr);
    this.child = child;
    this.status = { ...this.status, state: 'starting', pid: child.pid ?? null, healthy: false, startedAt: Date.now() };
    this.healthMisses = 0;
    opts.logger.info({ child: spec.name, pid: child.pid }, 'started kernel service');
    this.exited = new Promise((resolve) => {
      // 'close', not 'exit': a child that failed to spawn (ENOENT, EAGAIN) never emits 'exit', and would otherwise
      // hang in 'starting' and block every stop.
      child.once('close', (code, signal) => {
        stderr.end();
        this.onExit(code, signal);
        resolve();
      });
    });
    child.once('error', (err) => opts.logger.error({ child: spec.name, err: err.message }, 'could not spawn kernel service'));
    if (spec.healthUrl) this.healthTimer = setInterval(() => void this.checkHealth(), opts.healthIntervalMs);
    else this.status.state = 'running';
  }

  /** Checks overlap (a hung child takes a whole timeout to fail): a result about a process that has since exited,
   * been replaced or is being stopped says nothing about the current one. */
  private isCurrent(child: ChildProcess | null): child is ChildProcess {
    return child !== null && child === this.child && this.status.state !== 'stopping';
  }

  private async checkHealth(): Promise<void> {
    const { spec, opts } = this;
    const child = this.child;
    if (!this.isCurrent(child)) return;
    const ok = await httpHealthy(spec.healthUrl!, Math.max(1000, opts.healthIntervalMs - 100));
    if (!this.isCurrent(child)) return;
    if (ok) {
      this.healthMisses = 0;
      if (!this.status.healthy) {
        this.status = { ...this.status, healthy: true, state: 'running' };
        this.onHealthy(spec.name);
      }
      return;
    }
    this.status.healthy = false;
    if (Date.now() - (this.status.startedAt ?? 0) < opts.startGraceMs) return;
    this.healthMisses++;
    if (this.healthMisses >= opts.healthFailures) {
      opts.logger.warn({ child: spec.name, misses: this.healthMisses }, 'kernel service failed health checks; killing it');
      child.kill('SIGKILL');
    }
  }

  private onExit(code: number | null, signal: NodeJS.Signals | null): void {
    const { opts, spec } = this;
    if (this.healthTimer) clearInterval(this.healthTimer);
    this.healthTimer = null;
    const ranFor = Date.now() - (this.status.startedAt ?? Date.now());
    this.child = null;
    this.status = { ...this.status, pid: null, healthy: false, lastExit: { code, signal, at: Date.now() }, rssBytes: null };
    opts.onChange?.(spec.name);
    if (!this.wanted) {
      this.status.state = 'stopped';
      return;
    }
    this.failuresInRow = ranFor >= opts.stableAfterMs ? 1 : this.failuresInRow + 1;
    const delay = Math.min(opts.backoffMaxMs, opts.backoffBaseMs * 2 ** (this.failuresInRow - 1));
    opts.logger.warn({ child: spec.name, code, signal, restartInMs: delay }, 'kernel service exited; restarting');
    this.status.state = 'backoff';
    this.timer = setTimeout(() => {
      this.timer = null;
      if (!this.wanted) return;
      this.status.restarts++;
      this.start();
    }, delay);
  }

  async stop(): Promise<void> {
    this.wanted = false;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    const child = this.child;
    if (!child) {
      this.status.state = 'stopped';
      return;
    }
    this.status.state = 'stopping';
    child.kill('SIGTERM');
    const killer = setTimeout(() => child.kill('SIGKILL'), this.opts.stopGraceMs);
    await this.exited;
    clearTimeout(killer);
  }

  refreshRss(): void {
    this.status.rssBytes = this.status.pid ? processRss(this.status.pid) : null;
  }
}

export class Supervisor {
  private readonly children = new Map<string, Supervised>();
  private readonly opts: SupervisorSettings;
  private readonly healthyWaiters = new Map<string, (() => void)[]>();

  constructor(opts: SupervisorOptions) {
    this.opts = {
      healthIntervalMs: 2000,
      healthFailures: 3,
      startGraceMs: 15_000,
      backoffBaseMs: 500,
      backoffMaxMs: 30_000,
      stableAfterMs: 60_000,
      stopGraceMs: 10_000,
      ...opts,
    };
  }

  has(name: string): boolean {
    return this.children.has(name);
  }

  start(spec: ChildSpec): void {
    if (this.children.has(spec.name)) throw new Error(`${spec.name} is already supervised`);
    const s = new Supervised(spec, this.opts, (name) => {
      for (const w of this.healthyWaiters.get(name) ?? []) w();
      this.healthyWaiters.delete(name);
      this.opts.onChange?.(name);
    });
    this.children.set(spec.name, s);
    s.start();
  }

  /** Resolves when the child first passes a health check; rejects after `timeoutMs`. */
  waitHealthy(name: string, timeoutMs: number): Promise<void> {
    const s = this.children.get(name);
    if (s?.status.healthy) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`${name} did not become healthy within ${timeoutMs} ms`)), timeoutMs);
      const list = this.healthyWaiters.get(name) ?? [];
      list.push(() => {
        clearTimeout(t);
        resolve();
      });
      this.healthyWaiters.set(name, list);
    });
  }

  async stop(name: string): Promise<void> {
    const s = this.children.get(name);
    if (!s) return;
    await s.stop();
    this.children.delete(name);
  }

  /** Stops every child, the last started first, so dependents go before what they depend on. */
  async stopAll(): Promise<void> {
    for (const name of [...this.children.keys()].reverse()) await this.stop(name);
  }

  statuses(): ChildStatus[] {
    return [...this.children.values()].map((s) => {
      s.refreshRss();
      return { ...s.status };
    });
  }
}
