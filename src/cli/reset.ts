// `buckyos reset`: return a stopped device to the unactivated state, saying exactly what is removed and kept.
import type { Command } from 'commander';
import { resetNode } from '../kernel/activation/main.ts';
import { readStatusFile } from '../kernel/node-daemon/main.ts';
import { pidAlive } from '../lib/sysinfo.ts';
import { CliContext } from './context.ts';

export function registerReset(program: Command): void {
  program
    .command('reset')
    .description('forget this device\'s zone identity so it can be activated again (the node must be stopped)')
    .option('--wipe-data', 'also delete all zone data (config store, users, logs) under the root')
    .option('--yes', 'do not ask for confirmation')
    .action(async (opts: { wipeData?: boolean; yes?: boolean }, cmd: Command) => {
      const ctx = new CliContext(cmd.optsWithGlobals());
      const s = readStatusFile(ctx.paths);
      if (s && pidAlive(s.pid)) throw new Error(`the node is running (pid ${s.pid}); stop it first`);
      if (!opts.yes) {
        throw new Error(
          `reset removes this device's identity files${opts.wipeData ? ' and ALL zone data' : ' (data is kept)'} under ${ctx.paths.root}; add --yes to confirm`,
        );
      }
      const r = resetNode(ctx.paths, { keepData: !opts.wipeData });
      for (const p of r.removed) console.log(`removed ${p}`);
      for (const p of r.kept) console.log(`kept    ${p}`);
      console.log(
        opts.wipeData
          ? 'device reset: identity, zone configuration, accounts and all data removed'
          : 'device reset: identity, zone configuration and accounts removed; user data, logs and node settings kept',
      );
    });
}
