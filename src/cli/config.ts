// `buckyos config get|set|list`: system-config through the node gateway, subject to the caller's RBAC.
import type { Command } from 'commander';
import { systemConfigApi } from '../lib/api/system-config.ts';
import { CliContext, table } from './context.ts';

export function registerConfig(program: Command): void {
  const config = program.command('config').description('read and write system-config keys');
  config
    .command('get <key>')
    .description('print a key\'s value')
    .option('--json', 'print key, value and revision as JSON')
    .action(async (key: string, opts: { json?: boolean }, cmd: Command) => {
      const r = await new CliContext(cmd.optsWithGlobals()).client(systemConfigApi).get({ key });
      if (opts.json) console.log(JSON.stringify(r, null, 2));
      else if (r.value === null) {
        console.error(`${key}: not set`);
        process.exitCode = 4;
      } else console.log(r.value);
    });
  config
    .command('set <key> <value>')
    .description('set a key (the value is stored as given)')
    .option('--expect-revision <n>', 'write only if the key is at this revision (0: absent)', (v) => Number(v))
    .action(async (key: string, value: string, opts: { expectRevision?: number }, cmd: Command) => {
      const r = await new CliContext(cmd.optsWithGlobals()).client(systemConfigApi).set({ key, value, expect_revision: opts.expectRevision });
      console.log(`${key} set at revision ${r.revision}`);
    });
  config
    .command('list [prefix]')
    .description('list keys under a prefix')
    .option('--json', 'JSON output')
    .action(async (prefix: string | undefined, opts: { json?: boolean }, cmd: Command) => {
      const r = await new CliContext(cmd.optsWithGlobals()).client(systemConfigApi).list({ prefix: prefix ?? '', keys_only: !opts.json });
      if (opts.json) console.log(JSON.stringify(r, null, 2));
      else console.log(table(['KEY', 'REVISION'], r.entries.map((e) => [e.key, e.revision])));
    });
}
