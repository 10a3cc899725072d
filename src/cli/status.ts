// `buckyos status`: node, services, health and memory, from the node's own status file (always readable by root,
// even when system-config is down) and, when reachable, the heartbeats and device info in system-config.
import type { Command } from 'commander';
import { systemConfigApi } from '../lib/api/system-config.ts';
import type { Result } from '../lib/krpc/index.ts';
import { readStatusFile } from '../kernel/node-daemon/main.ts';
import type { NodeConfig } from '../lib/config/node-config.ts';
import { listAddresses, processRss } from '../lib/sysinfo.ts';
import { CliContext, formatBytes, table } from './context.ts';

/** Where a browser opens the system UI: the listener's own address, or this device's first IPv4 address on the LAN
 * when it listens on all of them. */
export function uiUrl(config: NodeConfig): string {
  const any = config.ui_host === '0.0.0.0' || config.ui_host === '::';
  const host = any ? (listAddresses().find((a) => a.family === 'IPv4')?.address ?? '127.0.0.1') : config.ui_host;
  return `http://${host.includes(':') ? `[${host}]` : host}:${config.ports.ui}/`;
}

export interface StatusReport {
  node: string | null;
  zone: string | null;
  state: string;
  activation_url?: string;
  /** The system UI, once the device runs its zone. */
  ui_url?: string;
  daemon_pid: number | null;
  daemon_rss_bytes: number | null;
  services: { name: string; state: string; healthy: boolean; pid: number | null; port: number; restarts: number; rss_bytes: number | null }[];
  total_rss_bytes: number;
  device?: unknown;
  config_reachable: boolean;
  /** The zone's configuration store as the system-config instance reached reports it (quorum health on etcd). */
  store?: Result<(typeof systemConfigApi.methods)['status']>;
}

export async function collectStatus(ctx: CliContext): Promise<StatusReport> {
  const s = readStatusFile(ctx.paths);
  const services = (s?.children ?? []).map((c) => ({
    name: c.name, state: c.state, healthy: c.healthy, pid: c.pid, port: c.port, restarts: c.restarts, rss_bytes: c.rssBytes,
  }));
  const report: StatusReport = {
    node: s?.node ?? null,
    zone: s?.zone ?? null,
    state: s ? s.state : 'stopped',
    activation_url: s?.activation_url,
    ui_url: s?.state === 'running' ? uiUrl(ctx.config) : undefined,
    daemon_pid: s?.pid ?? null,
    services,
    daemon_rss_bytes: s ? processRss(s.pid) : null,
    total_rss_bytes: services.reduce((a, c) => a + (c.rss_bytes ?? 0), 0) + ((s && processRss(s.pid)) ?? 0),
    config_reachable: false,
  };
  if (s?.state === 'running' && s.node) {
    try {
      const cfg = ctx.client(systemConfigApi);
      const dev = await cfg.get({ key: `devices/${s.node}/info` }, { timeoutMs: 3000 });
      report.device = dev.value ? JSON.parse(dev.value) : undefined;
      report.config_reachable = true;
      report.store = await cfg.status({}, { timeoutMs: 5000 });
    } catch {
      report.config_reachable = false;
    }
  }
  return report;
}

/** The store line(s) of `status`: the backend, and on etcd every member and how many may fail before writes stop. */
export function describeStore(st: NonNullable<StatusReport['store']>): string {
  const lines = [`zone store: ${st.backend}, revision ${st.revision}${st.frozen ? `, READ-ONLY: ${st.frozen}` : ''}`];
  const c = st.cluster;
  if (c) {
    lines.push(`etcd: ${c.healthy} of ${c.members.length} members healthy, quorum ${c.quorum}, ${c.has_quorum ? `can lose ${c.fault_tolerance} more` : 'NO QUORUM: writes stop'}, leader ${c.leader ?? '-'}`);
    lines.push(table(['MEMBER', 'HEALTH', 'LEADER', 'CLIENT URLS', 'PROBLEM'], c.members.map((m) => [m.name || '(not started)', m.healthy ? 'ok' : 'DOWN', m.leader ? 'yes' : '', m.client_urls.join(' '), m.problem ?? ''])));
  }
  return lines.join('\n');
}

export function registerStatus(program: Command): void {
  program
    .command('status')
    .description('show this node, its kernel services, their health and memory')
    .option('--json', 'machine-readable output')
    .action(async (opts: { json?: boolean }, cmd: Command) => {
      const ctx = new CliContext(cmd.optsWithGlobals());
      const r = await collectStatus(ctx);
      if (opts.json) {
        console.log(JSON.stringify(r, null, 2));
        return;
      }
      console.log(`node: ${r.node ?? '-'}   zone: ${r.zone ?? '-'}   state: ${r.state}${r.daemon_pid ? `   daemon pid: ${r.daemon_pid}` : ''}`);
      if (r.activation_url) console.log(`not activated: open ${r.activation_url} or run \`buckyos activate\``);
      if (r.ui_url) console.log(`system UI: ${r.ui_url}`);
      if (r.services.length > 0) {
        console.log('');
        console.log(table(['SERVICE', 'STATE', 'HEALTH', 'PID', 'PORT', 'RESTARTS', 'MEMORY'], r.services.map((c) => [
          c.name, c.state, c.healthy ? 'ok' : 'FAILING', c.pid ?? '-', c.port, c.restarts, formatBytes(c.rss_bytes),
        ])));
        console.log(`\nnode daemon: ${formatBytes(r.daemon_rss_bytes)}   total with the daemon: ${formatBytes(r.total_rss_bytes)}${r.state === 'running' && !r.config_reachable ? '   (system-config unreachable)' : ''}`);
      }
      if (r.store) console.log(`\n${describeStore(r.store)}`);
      if (r.state === 'stopped') process.exitCode = 3;
    });
}
