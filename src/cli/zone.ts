// `buckyos zone store` and `buckyos zone move --to etcd|sqlite`: where the zone's configuration lives, with the quorum
// arithmetic on etcd, and moving it between backends (docs/etcd-control.md). The move itself is node_daemon's work;
// the command asks for it through the control record and, with --wait, follows it to the end.
import type { Command } from 'commander';
import { systemConfigApi } from '../lib/api/system-config.ts';
import { MIGRATION_KEY, type MigrationRecord, migrationSchema, parseRecord } from '../lib/config/store-control.ts';
import { readStatusFile } from '../kernel/node-daemon/main.ts';
import { CliContext } from './context.ts';
import { describeStore } from './status.ts';

const IN_PROGRESS = new Set(['requested', 'forming', 'copying']);

export function registerZone(program: Command): void {
  const zone = program.command('zone').description('the zone\'s configuration store (admin)');
  zone
    .command('store')
    .description('show the backend, and on etcd each member\'s health and how many may fail before writes stop')
    .option('--json', 'JSON output')
    .action(async (opts: { json?: boolean }, cmd: Command) => {
      const cfg = new CliContext(cmd.optsWithGlobals()).client(systemConfigApi);
      const st = await cfg.status({});
      const m = parseRecord(migrationSchema, (await cfg.get({ key: MIGRATION_KEY })).value);
      if (opts.json) return console.log(JSON.stringify({ ...st, migration: m }, null, 2));
      console.log(describeStore(st));
      if (m) console.log(`last move: to ${m.to}, ${m.state}${m.error ? ` (${m.error})` : ''}, requested by ${m.requested_by} at ${new Date(m.requested_at).toISOString()}`);
    });
  zone
    .command('move')
    .description('move the zone store to etcd (needs 3 core devices online) or back to SQLite on this device')
    .requiredOption('--to <backend>', 'etcd or sqlite')
    .option('--wait', 'wait until the move is done or has failed')
    .action(async (opts: { to: string; wait?: boolean }, cmd: Command) => {
      if (opts.to !== 'etcd' && opts.to !== 'sqlite') throw new Error(`--to must be etcd or sqlite, not "${opts.to}"`);
      const ctx = new CliContext(cmd.optsWithGlobals());
      const cfg = ctx.client(systemConfigApi);
      const st = await cfg.status({});
      if (st.backend === opts.to) throw new Error(`the zone store is already on ${opts.to}`);
      const current = await cfg.get({ key: MIGRATION_KEY });
      const m = parseRecord(migrationSchema, current.value);
      if (m && IN_PROGRESS.has(m.state)) throw new Error(`a move to ${m.to} is already ${m.state}; wait for it (buckyos zone store)`);
      const self = readStatusFile(ctx.paths)?.node;
      if (!self) throw new Error('this device is not running in a zone');
      // Only a member holds the cluster's data and can carry the move out; a request naming another device would wait
      // for ever and block every later move.
      const members = st.cluster?.members.map((x) => x.name) ?? [];
      if (opts.to === 'sqlite' && !members.includes(self)) {
        throw new Error(`${self} is not a member of the etcd cluster: run this on one of ${members.join(', ')}, which will then hold the store`);
      }
      const now = Date.now();
      const request: MigrationRecord = {
        to: opts.to, requested_by: `${ctx.actor}@${self}`, requested_at: now, state: 'requested', error: null, updated_at: now,
        ...(opts.to === 'sqlite' ? { primary: self } : {}),
      };
      await cfg.set({ key: MIGRATION_KEY, value: JSON.stringify(request), expect_revision: current.revision });
      console.log(`asked to move the zone store to ${opts.to}${opts.to === 'sqlite' ? ` on ${self}` : ''}`);
      if (!opts.wait) return;
      for (;;) {
        await new Promise((r) => setTimeout(r, 1000));
        let now: MigrationRecord | null;
        try {
          now = parseRecord(migrationSchema, (await cfg.get({ key: MIGRATION_KEY }, { timeoutMs: 5000 })).value);
        } catch {
          continue; // the store is switching over: ask again in a moment
        }
        if (now?.state === 'done') return console.log(`the zone store is on ${opts.to}`);
        if (now?.state === 'failed') throw new Error(`the move failed: ${now.error}`);
      }
    });
}
