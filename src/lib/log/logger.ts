// Structured JSON logs (pino) for every process, written to `<root>/logs/<service>/<service>.N.log` and rotated by
// size and day. The rotating file stream runs in-process rather than in a transport worker thread: a worker per
// service would cost more memory than the whole idle budget allows.
import pino, { type Logger } from 'pino';
import { join } from 'node:path';
import { createRotatingStream } from './rotating-stream.ts';

export type { Logger } from 'pino';

export interface LoggerOptions {
  service: string;
  /** Directory under which `<service>/` is created; omit to log to stdout only. */
  logsDir?: string;
  level?: string;
  /** Rotate at this size; keep this many old files. */
  maxBytes?: number;
  keepFiles?: number;
}

/** Paths never logged: tokens, passwords, keys, mnemonics. pino replaces them before serialisation. */
export const REDACT_PATHS = [
  'password', '*.password', 'new_password', '*.new_password', 'old_password', '*.old_password', 'token', '*.token',
  'refresh_token', '*.refresh_token', 'session_token', '*.session_token', 'mnemonic', '*.mnemonic', 'private_key',
  '*.private_key', 'authorization', '*.authorization', 'headers.authorization', 'sys[1]', '*.sys[1]',
];

export async function createLogger(opts: LoggerOptions): Promise<Logger> {
  const base = { service: opts.service, pid: process.pid };
  const common = { level: opts.level ?? 'info', base, redact: { paths: REDACT_PATHS, censor: '[redacted]' }, timestamp: pino.stdTimeFunctions.isoTime };
  if (!opts.logsDir) return pino(common);
  const stream = createRotatingStream({
    dir: join(opts.logsDir, opts.service),
    base: opts.service,
    maxBytes: opts.maxBytes ?? 20 * 1024 * 1024,
    keep: opts.keepFiles ?? 10,
  });
  return pino(common, stream);
}
