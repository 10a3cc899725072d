// `buckyos logs [--follow]`: search and tail the zone's logs through klog.
import type { Command } from 'commander';
import { klogApi, LOG_LEVELS, type LogLevel } from '../lib/api/klog.ts';
import { CliContext } from './context.ts';

interface LogRow { id: number; ts: number; level: string; service: string; node: string; msg: string; trace?: string | null }

function line(r: LogRow): string {
  return `${new Date(r.ts).toISOString()} ${r.level.toUpperCase().padEnd(5)} ${r.node}/${r.service}: ${r.msg}${r.trace ? ` [trace ${r.trace}]` : ''}`;
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
      const { records } = await klog.query({ service: opts.service, level_min: level, text: opts.grep, limit: opts.lines });
      for (const r of [...records].reverse()) print(r);
      if (!opts.follow) return;
      let after = records[0]?.id ?? 0;
      for (;;) {
        const t = await klog.tail({ after_id: after, service: opts.service, level_min: level, timeout_ms: 25_000, limit: 500 }, { timeoutMs: 35_000 });
        for (const r of t.records) if (!opts.grep || r.msg.includes(opts.grep)) print(r);
        after = t.last_id;
      }
    });
}
