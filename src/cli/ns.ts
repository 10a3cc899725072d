// `buckyos ns --config FILE`: cyfs-ns, the DNS server, on its own (a soft router's dnsmasq replacement).
import type { Command } from 'commander';
import { ConfigError, checkNs, runNsStandalone } from '../net/ns/main.ts';

export function registerNs(program: Command): void {
  program
    .command('ns')
    .description('run cyfs-ns, the DNS server, from a YAML configuration file (see docs/ns.md)')
    .requiredOption('-c, --config <file>', 'configuration file')
    .option('--check', 'validate the configuration, print every problem, and exit')
    .action(async (opts: { config: string; check?: boolean }) => {
      try {
        if (opts.check) {
          const { config: cfg, unusable, blockLists } = await checkNs(opts.config);
          const groups = Object.keys(cfg.upstreams.groups);
          console.log(
            `${opts.config}: valid; ${cfg.local.records.length} records, ${cfg.local.hosts_files.length} hosts files, ` +
              `block lists: ${blockLists.length > 0 ? blockLists.map((l) => `${l.name} (${l.rules} rules)`).join(', ') : 'none'}, ` +
              `upstream groups: ${groups.length > 0 ? groups.join(', ') : 'none'}`,
          );
          for (const u of unusable) console.log(`  not used: ${u}`);
          return;
        }
        const { stopped } = await runNsStandalone(opts.config);
        await stopped;
        process.exit(0);
      } catch (err) {
        // Every configuration problem on its own line, rather than the CLI's one-line error.
        if (err instanceof ConfigError) {
          console.error(err.message);
          process.exit(2);
        }
        throw err;
      }
    });
}
