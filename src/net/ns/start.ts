// Starting cyfs-ns on a validated configuration: the DNS server and what runs beside it. Shared by the standalone
// server (main.ts) and the zone service (zone-service.ts).
import { createLogger, type Logger } from '../../lib/log/logger.ts';
import type { NsConfig } from './config.ts';
import { DhcpServer } from './dhcp.ts';
import type { LocalRecordSource } from './local.ts';
import { NsServer } from './server.ts';

export interface StartNsOptions {
  /** Defaults to a logger built from the configuration's `log` section. */
  log?: Logger;
  sources?: readonly LocalRecordSource[];
}

/** A running cyfs-ns: the DNS server and what runs beside it on the same configuration. */
export interface StartedNs {
  config: NsConfig;
  server: NsServer;
  /** The DHCP server when the configuration has `dhcp` (`dhcp.leases()` lists the leases), else null. */
  dhcp: DhcpServer | null;
  close(): Promise<void>;
}

/** Starts the server for a validated configuration; resolves once every listener is bound. */
export async function startNs(config: NsConfig, opts: StartNsOptions = {}): Promise<StartedNs> {
  const log = opts.log ?? (await createLogger({ service: 'cyfs-ns', logsDir: config.log.dir ?? undefined, level: config.log.level }));
  const queryLog = config.query_log.enabled ? await createLogger({ service: 'cyfs-ns-queries', logsDir: config.log.dir ?? undefined }) : null;
  // DHCP first: its client names are a source the DNS server is built with.
  const dhcp = config.dhcp ? await DhcpServer.start({ config: config.dhcp, log, ttl: config.local.ttl }) : null;
  let server: NsServer;
  try {
    server = await NsServer.start({ config, log, sources: dhcp ? [...(opts.sources ?? []), dhcp.names] : opts.sources, queryLog });
  } catch (err) {
    await dhcp?.close();
    throw err;
  }
  const close = async () => {
    await dhcp?.close();
    await server.close();
  };
  return { config, server, dhcp, close };
}
