// `buckyos scheduler status|tick`: how the zone scheduler is doing, and a tick on demand, through the node gateway.
import type { Command } from 'commander';
import { schedulerApi } from '../lib/api/scheduler.ts';
import { CliContext } from './context.ts';

export function registerScheduler(program: Command): void {
  const scheduler = program.command('scheduler').description('the zone scheduler: its status, or a tick now');
  scheduler
    .command('status')
    .description('ticks, writes, lost races, the last error and the input it had to ignore')
    .option('--json', 'machine-readable output')
    .action(async (opts: { json?: boolean }, cmd: Command) => {
      const s = await new CliContext(cmd.optsWithGlobals()).client(schedulerApi).status({});
      if (opts.json) {
        console.log(JSON.stringify(s, null, 2));
        return;
      }
      const at = (ms: number | null) => (ms === null ? 'never' : new Date(ms).toISOString());
      console.log(`last tick: ${at(s.last_tick_at)}   ticks: ${s.ticks}   writes: ${s.writes}   lost races: ${s.conflicts}`);
      console.log(`last write: ${s.last_write_revision === null ? 'none' : `revision ${s.last_write_revision}`}`);
      if (s.last_error !== null) console.log(`last tick failed: ${s.last_error}`);
      for (const p of s.problems) console.log(`problem: ${p}`);
    });
  scheduler
    .command('tick')
    .description('derive and write the intent now; prints what changed')
    .option('--json', 'machine-readable output')
    .action(async (opts: { json?: boolean }, cmd: Command) => {
      const r = await new CliContext(cmd.optsWithGlobals()).client(schedulerApi).tick({});
      if (opts.json) console.log(JSON.stringify(r, null, 2));
      else if (r.changes.length === 0) console.log('nothing to change');
      else {
        for (const c of r.changes) console.log(`${c.op.padEnd(6)} ${c.key}`);
        console.log(r.written ? `written at revision ${r.revision}` : `not written: ${r.conflicts.join(', ')} changed meanwhile; the next tick re-reads`);
      }
    });
}
