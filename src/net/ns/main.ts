// cyfs-ns, the DNS server: its public face. `runNsStandalone` is `buckyos ns --config FILE`; `startNs` is for a
// process that embeds it (the zone service, which plugs the zone's own names in as a LocalRecordSource).
import { readFileSync } from 'node:fs';
import { createLogger, type Logger } from '../../lib/log/logger.ts';
import { type NsConfig, ConfigError, loadNsConfig, parseNsConfig } from './config.ts';
import type { LocalRecordSource } from './local.ts';
import { Resolver } from './resolver.ts';
import { type StartNsOptions, type StartedNs, startNs } from './start.ts';
import { NsServer, type NsStats } from './server.ts';

export { ConfigError, loadNsConfig, parseNsConfig, NsServer, startNs };
export type { StartNsOptions, StartedNs };
export { BOOT_PREFIX, NAMES_PREFIX, ZONE_RECORDS_LABEL, txtStrings } from './zone-names.ts';

/** The zone kernel service (`buckyos service ns`), loaded only by the process that runs it. */
export async function runNsService(...args: Parameters<typeof import('./zone-service.ts').runNsService>) {
  return (await import('./zone-service.ts')).runNsService(...args);
}
export type { LocalRecordSource, NsConfig, NsStats };
export type { ResourceRecord, RData } from './wire.ts';

export interface NsCheck {
  config: NsConfig;
  /** Hosts-file and block-list lines that would not be used, "<file>:<line>: <reason>". */
  unusable: string[];
  blockLists: { name: string; rules: number }[];
}

/**
 * What `buckyos ns --check` reports: the configuration validated (ConfigError otherwise) and every file it names
 * read as the server would read it (an Error naming the file otherwise), without binding anything.
 */
export async function checkNs(configPath: string): Promise<NsCheck> {
  const config = loadNsConfig(configPath);
  if (config.doh?.tls) {
    for (const f of [config.doh.tls.cert_file, config.doh.tls.key_file]) {
      try {
        readFileSync(f);
      } catch (err) {
        throw new Error(`doh.tls: ${f}: ${(err as Error).message}`);
      }
    }
  }
  const resolver = new Resolver({ config, log: await createLogger({ service: 'cyfs-ns', level: 'silent' }) });
  try {
    return { config, unusable: resolver.problems(), blockLists: resolver.blockListSizes().map(({ name, rules }) => ({ name, rules })) };
  } finally {
    resolver.close();
  }
}

export interface StandaloneNs {
  ns: StartedNs;
  /** Settles when the server has stopped (SIGTERM or SIGINT). */
  stopped: Promise<void>;
}

/**
 * The standalone server: loads and validates the configuration (throwing ConfigError with every problem), starts,
 * and handles signals as dnsmasq does: SIGHUP re-reads hosts files and block lists and empties the cache, SIGUSR1
 * logs the statistics, SIGTERM and SIGINT stop it.
 */
export async function runNsStandalone(configPath: string): Promise<StandaloneNs> {
  const config = loadNsConfig(configPath);
  const log = await createLogger({ service: 'cyfs-ns', logsDir: config.log.dir ?? undefined, level: config.log.level });
  const ns = await startNs(config, { log });
  const server = ns.server;
  log.info({ config: configPath }, 'cyfs-ns started');
  const onHup = () => {
    try {
      server.reload();
      log.info('reloaded hosts files and block lists; cache emptied');
    } catch (err) {
      log.error({ err: (err as Error).message }, 'reload failed; still serving the previous data');
    }
  };
  const onUsr1 = () => void server.stats().then((s) => log.info({ stats: s }, 'statistics'));
  let stop: () => void = () => undefined;
  const stopped = new Promise<void>((resolve) => {
    let stopping = false;
    stop = () => {
      if (stopping) return;
      stopping = true;
      log.info('stopping');
      process.off('SIGHUP', onHup);
      process.off('SIGUSR1', onUsr1);
      process.off('SIGTERM', stop);
      process.off('SIGINT', stop);
      void ns.close().then(resolve);
    };
  });
  process.on('SIGHUP', onHup);
  process.on('SIGUSR1', onUsr1);
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  return { ns, stopped };
}
