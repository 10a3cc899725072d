// `buckyos service <name>`: one kernel service process, as node_daemon starts it. Not meant for people to run.
// This is the composition root: it gives each service the dependencies it takes (RBAC enforcer, audit sink, role
// lookup) built from other services' clients, so no service reaches into another.
import type { Command } from 'commander';
import { systemConfigApi } from '../lib/api/system-config.ts';
import { Rbac } from '../lib/rbac/enforcer.ts';
import { effectiveRole, followPolicy } from '../lib/rbac/config-sync.ts';
import { createKernelRuntime, type KernelRuntime } from '../kernel/runtime.ts';
import { KERNEL_SERVICE_PORTS, type KernelServiceName, loadNodeConfig, nodePaths } from '../lib/config/node-config.ts';

type Running = { close(): Promise<void> };

async function runVerifyHub(rt: KernelRuntime, port: number, stop: AbortSignal): Promise<Running> {
  const { runVerifyHubService } = await import('../kernel/verify-hub/main.ts');
  const config = rt.configClient();
  const rbac = await Rbac.create();
  await followPolicy(config, rbac, stop, (err) => rt.log.error({ err: (err as Error).message }, 'RBAC policy sync failed'));
  return runVerifyHubService(rt, port, {
    check: (req) => rbac.check(req),
    audit: (ev) =>
      rt.audit.emit({
        kind: ev.type,
        actor: ev.actor ?? 'anonymous',
        target: ev.target ?? '',
        detail: { action: ev.action, at: ev.at, app: ev.app, ip: ev.ip, sid: ev.sid, reason: ev.reason },
      }),
    onUserDeleted: (name) => rbac.removeUser(name),
  });
}

/** A user's role as `users/<u>/settings` records it; none for an unknown or disabled user. */
function roleLookup(rt: KernelRuntime): (user: string) => Promise<string | undefined> {
  const config = rt.configClient();
  return async (user) => effectiveRole((await config.get({ key: `users/${user}/settings` })).value);
}

async function runKlog(rt: KernelRuntime, port: number): Promise<Running> {
  const { runKlogService } = await import('../kernel/klog/main.ts');
  return runKlogService(rt, port, roleLookup(rt));
}

async function runScheduler(rt: KernelRuntime, port: number): Promise<Running> {
  const { runSchedulerService } = await import('../kernel/scheduler/main.ts');
  return runSchedulerService(rt, port, roleLookup(rt));
}

async function runNs(rt: KernelRuntime, port: number): Promise<Running> {
  const { runNsService } = await import('../net/ns/main.ts');
  return runNsService(rt, port, roleLookup(rt));
}

async function runDfs(rt: KernelRuntime, port: number): Promise<Running> {
  const { runDfsService } = await import('../storage/dfs/main.ts');
  return runDfsService(rt, port, roleLookup(rt));
}

/** The bootstrap service of an unactivated device: runs until the device is activated, then exits 0. */
async function runActivation(root: string | undefined): Promise<void> {
  const { runActivationService } = await import('../kernel/activation/main.ts');
  const paths = nodePaths(root);
  const config = loadNodeConfig(paths);
  const svc = await runActivationService(paths.root, config.ports.activation, config.activation_host);
  const close = () => void svc.close().then(() => process.exit(0));
  process.on('SIGTERM', close);
  stopWhenOrphaned(close);
  await svc.activated;
  process.exit(0);
}

/** When node_daemon dies without stopping us (kill -9), we are re-parented: stop rather than run unsupervised. */
function stopWhenOrphaned(stop: () => void): void {
  const parent = process.ppid;
  setInterval(() => {
    if (process.ppid !== parent) stop();
  }, 1000).unref();
}

export function registerService(program: Command): void {
  program
    .command('service <name>')
    .description(`run one kernel service (${Object.keys(KERNEL_SERVICE_PORTS).join(', ')}, or activation); node_daemon does this`)
    .action(async (name: string, _o: unknown, cmd: Command) => {
      if (name === 'activation') return runActivation(cmd.optsWithGlobals().root);
      if (!Object.prototype.hasOwnProperty.call(KERNEL_SERVICE_PORTS, name)) throw new Error(`unknown kernel service "${name}"`);
      const svc = name as KernelServiceName;
      const rt = await createKernelRuntime(svc, cmd.optsWithGlobals().root);
      const port = rt.config.ports[KERNEL_SERVICE_PORTS[svc]];
      const stop = new AbortController();
      const running =
        svc === 'system-config' ? await (await import('../kernel/system-config/main.ts')).runSystemConfigService(rt, port)
        : svc === 'verify-hub' ? await runVerifyHub(rt, port, stop.signal)
        : svc === 'klog' ? await runKlog(rt, port)
        : svc === 'scheduler' ? await runScheduler(rt, port)
        : svc === 'ns' ? await runNs(rt, port)
        : svc === 'dfs' ? await runDfs(rt, port)
        : await (await import('../net/gateway/main.ts')).runNodeGateway(rt, port);
      let closing = false;
      const close = async (why: string) => {
        if (closing) return;
        closing = true;
        rt.log.info({ why }, 'stopping');
        stop.abort();
        await rt.audit.flush(2000);
        await running.close();
        process.exit(0);
      };
      process.on('SIGTERM', () => void close('SIGTERM'));
      process.on('SIGINT', () => void close('SIGINT'));
      stopWhenOrphaned(() => void close('node daemon is gone'));
    });
}
