// Where a node keeps its state and which ports it uses. Everything lives under one root (DESIGN §3); a development or
// test zone gets its own root and its own ports. The file is validated at load and every error names its field.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import { writeFileAtomic } from '../identity/keys.ts';
import { IDENTITY_FILES } from '../identity/node-identity.ts';

export const DEFAULT_ROOT = '/opt/buckyos';

export interface NodePaths {
  root: string;
  etc: string;
  data: string;
  logs: string;
  run: string;
  nodeConfig: string;
}

export function nodePaths(root = process.env.BUCKYOS_ROOT || DEFAULT_ROOT): NodePaths {
  return {
    root,
    etc: join(root, 'etc'),
    data: join(root, 'data'),
    logs: join(root, 'logs'),
    run: join(root, 'run'),
    nodeConfig: join(root, 'etc', 'node.json'),
  };
}

const port = z.number().int().min(1).max(65535);

export const nodeConfigSchema = z
  .object({
    ports: z
      .object({
        gateway: port.default(3180),
        activation: port.default(3182),
        system_config: port.default(3200),
        verify_hub: port.default(3300),
        scheduler: port.default(3400),
        klog: port.default(3500),
        /** cyfs-ns's admin API (kRPC); its DNS listeners are set in its own configuration (port 53 by default). */
        ns: port.default(3600),
        /** dfs (dcfs-lite): the file API, chunk exchange between storage nodes, WebDAV and NDN. */
        dfs: port.default(3700),
        /** Device-to-device tunnels (TLS + HTTP/2, authenticated by device keys), on the LAN. */
        tunnel: port.default(2980),
        /** The system UI and the kRPC calls it makes, served by the gateway process on the LAN (docs/ui.md). */
        ui: port.default(3190),
        /** dfs's own listener on the LAN, where dfs runs: WebDAV (`/dav/<volume>/`) and reads by content id (`/ndn/`)
         * for the home network's computers, without the gateway's extra hop (docs/dcfs.md, "LAN access"). */
        files: port.default(3780),
      })
      .strict()
      .default({}),
    /** Address the activation port listens on: the LAN, so a browser can reach an unactivated device. */
    activation_host: z.string().default('0.0.0.0'),
    /** Address the system UI listens on: the LAN, so a browser or phone at home can reach it. */
    ui_host: z.string().default('0.0.0.0'),
    /** Address dfs's LAN listener (WebDAV, NDN) listens on. */
    files_host: z.string().default('0.0.0.0'),
    /** Address the tunnel port listens on: other devices of the zone reach this one there. */
    tunnel_host: z.string().default('0.0.0.0'),
    /** Kernel services listen on loopback only; the gateway is the one entry. */
    service_host: z.string().default('127.0.0.1'),
    /** Unset: SQLite on the device that holds the zone's store, remote on a device that joined (configBackendKind).
     * node_daemon writes it when the zone's store moves (docs/etcd-control.md). */
    config_backend: z
      .discriminatedUnion('type', [
        z.object({ type: z.literal('sqlite') }).strict(),
        z.object({ type: z.literal('remote') }).strict(),
        z
          .object({
            type: z.literal('etcd'),
            endpoints: z.array(z.string().url()).min(1),
            /** PEM files for client TLS to the members: the zone CA, this device's certificate and key. */
            tls: z.object({ ca: z.string(), cert: z.string(), key: z.string() }).strict().optional(),
          })
          .strict(),
      ])
      .optional(),
    log_level: z.enum(['trace', 'debug', 'info', 'warn', 'error']).default('info'),
    /** How often node_daemon reports instance heartbeats; the scheduler calls an instance dead after 90 s of silence
     * (nine missed at the default). */
    heartbeat_ms: z.number().int().min(500).max(60_000).default(10_000),
    /** How long a chunk must go without being stored before dfs's chunk collection may delete it: it covers a write
     * between storing its chunks and committing them, and clock skew between nodes. Keep the default; tests shorten it
     * to see chunks go. */
    dfs_gc_grace_s: z.number().int().min(1).max(7 * 86_400).default(3600),
    /** How long a follower of a dfs volume may go unheard before its primary stops keeping the metadata log for it
     * (it then catches up from a snapshot): a week, so a device away for a holiday or a repair comes back to the log. */
    dfs_log_retention_s: z.number().int().min(60).max(365 * 86_400).default(7 * 86_400),
    /** How long a deleted file or folder stays in a dfs volume's trash (restorable, and charged to its owner) before
     * the volume's primary purges it: 30 days, as file services commonly keep deleted files; 0 keeps it until a user
     * or an admin purges it. */
    dfs_trash_retention_s: z.number().int().min(0).max(10 * 365 * 86_400).default(30 * 86_400),
    /** The most recent metadata log entries every copy of a dfs volume keeps, whatever its followers' positions. */
    dfs_log_keep_entries: z.number().int().min(1).max(10_000_000).default(10_000),
  })
  .strict();

export type NodeConfig = z.infer<typeof nodeConfigSchema>;

/** Kernel services node_daemon runs as children, in boot order, with the port setting each listens on. The scheduler
 * needs only system-config, but comes after klog so that its first ticks already have somewhere to log and audit,
 * and before the gateway, which routes by the `services/<s>/info` the scheduler writes: the zone's entry opens last,
 * once everything behind it is up. */
export const KERNEL_SERVICE_PORTS = {
  'system-config': 'system_config',
  'verify-hub': 'verify_hub',
  klog: 'klog',
  scheduler: 'scheduler',
  gateway: 'gateway',
  ns: 'ns',
  dfs: 'dfs',
} as const satisfies Record<string, keyof NodeConfig['ports']>;
export type KernelServiceName = keyof typeof KERNEL_SERVICE_PORTS;

/** Kernel services that do not run everywhere by default: the zone's DNS server runs where an admin's
 * `services/ns/spec` places it (answering a network is the owner's decision), and dfs where storage is configured
 * (a node with a disk, or a role in a volume). Either would cost an idle zone a process for nothing. */
export const OPT_IN_KERNEL_SERVICES: ReadonlySet<KernelServiceName> = new Set<KernelServiceName>(['ns', 'dfs']);

/**
 * Where this node's system-config lives: `sqlite` (this node holds the zone's store), `etcd` (this core node runs a
 * system-config instance on the zone's etcd cluster), or `remote` (a device that joined a zone reaches system-config
 * on a core device through its gateway and the tunnels). node.json says which when the zone's store has moved;
 * otherwise a device that joined (it has `etc/peers.json`) is remote, and the first device of a zone keeps SQLite.
 */
export type ConfigBackendKind = 'sqlite' | 'etcd' | 'remote';

export function configBackendKind(paths: NodePaths, config: NodeConfig): ConfigBackendKind {
  if (config.config_backend) return config.config_backend.type;
  return existsSync(join(paths.etc, IDENTITY_FILES.peers)) ? 'remote' : 'sqlite';
}

export class ConfigFileError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigFileError';
  }
}

export function parseNodeConfig(raw: unknown, source: string): NodeConfig {
  const r = nodeConfigSchema.safeParse(raw);
  if (!r.success) {
    const why = r.error.issues.map((i) => `${i.path.join('.') || '(top)'}: ${i.message}`).join('; ');
    throw new ConfigFileError(`${source}: ${why}`);
  }
  return r.data;
}

export function loadNodeConfig(paths: NodePaths): NodeConfig {
  if (!existsSync(paths.nodeConfig)) return parseNodeConfig({}, paths.nodeConfig);
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(paths.nodeConfig, 'utf8'));
  } catch (e) {
    throw new ConfigFileError(`${paths.nodeConfig}: not valid JSON (${(e as Error).message})`);
  }
  return parseNodeConfig(raw, paths.nodeConfig);
}

export function saveNodeConfig(paths: NodePaths, cfg: z.input<typeof nodeConfigSchema>): NodeConfig {
  const parsed = parseNodeConfig(cfg, paths.nodeConfig);
  writeFileAtomic(paths.nodeConfig, JSON.stringify(parsed, null, 2) + '\n', 0o644);
  return parsed;
}
