// `buckyos logs [--follow]`: search and tail the zone's logs through klog.
import type { Command } from 'commander';
import { klogApi, LOG_LEVELS, type LogLevel } from '../lib/api/klog.ts';
import { CliContext } from './context.ts';

interface LogRow { id: number; ts: number; level: string; service: string; node: string; msg: string; trace?: string | null; fields?: Record<string, unknown> }

/** What `--grep` means while following (klog's tail has no search): every word occurs in the message or fields,
 * ignoring case, as `query`'s full-text search would find it. */
function matches(r: LogRow, grep: string | undefined): boolean {
  if (!grep) return true;
  const hay = `${r.msg} ${r.fields ? JSON.stringify(r.fields) : ''}`.toLowerCase();
  return grep.toLowerCase().split(/\s+/).filter(Boolean).every((w) => hay.includes(w));
}

function line(r: LogRow): string {
  const { pid: _pid, ...fields } = r.fields ?? {};
  const extra = Object.keys(fields).length > 0 ? ` ${JSON.stringify(fields)}` : '';
  return `${new Date(r.ts).toISOString()} ${r.level.toUpperCase().padEnd(5)} ${r.node}/${r.service}: ${r.msg}${extra}${r.trace ? ` [trace ${r.trace}]` : ''}`;
}

export function registerLogs(program: Command): void {
  program
    .command('logs')
    .description('show recent log records (newest last); --follow keeps printing new ones')
    .option('-s, --service <name>', 'only this service')
    .option('-l, --level <level>', `minimum level (${LOG_LEVELS.join(', ')})`)
    .option('-g, --grep <words>', 'full-text search')
    .option('-n, --lines <n>', 'how many records', (v) => Number(v), 50)
    .option('-f, --follow', 'keep printing new records')
    .option('--json', 'one JSON record per line')
    .action(async (opts: { service?: string; level?: string; grep?: string; lines: number; follow?: boolean; json?: boolean }, cmd: Command) => {
      if (opts.level && !(LOG_LEVELS as readonly string[]).includes(opts.level)) throw new Error(`unknown level "${opts.level}"`);
      const level = opts.level as LogLevel | undefined;
      const klog = new CliContext(cmd.optsWithGlobals()).client(klogApi);
      const print = (r: LogRow) => console.log(opts.json ? JSON.stringify(r) : line(r));
      if (!Number.isInteger(opts.lines) || opts.lines < 0) throw new Error('--lines takes a whole number');
      const { records } = opts.lines > 0 ? await klog.query({ service: opts.service, level_min: level, text: opts.grep, limit: opts.lines }) : { records: [] };
      for (const r of [...records].reverse()) print(r);
      if (!opts.follow) return;
      // With no history shown, start at the current end of the log.
      let after: number | undefined = records[0]?.id;
      for (;;) {
        const t = await klog.tail({ after_id: after, service: opts.service, level_min: level, timeout_ms: 25_000, limit: 500 }, { timeoutMs: 35_000 });
        for (const r of t.records) if (matches(r, opts.grep)) print(r);
        after = t.last_id;
      }
    });
}
