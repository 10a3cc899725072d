// A size- and day-rotated log file stream on pino's own SonicBoom. Files are `<base>.<n>.log`, the highest n being
// the one written; older ones beyond `keep` are deleted. Written here rather than taken from pino-roll because that
// package's date library alone costs every kernel process ~7 MB of memory, a fifth of its share of the idle budget.
import SonicBoomCtor, { type SonicBoom } from 'sonic-boom';
import { mkdirSync, readdirSync, statSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';

export interface RotatingStreamOptions {
  dir: string;
  base: string;
  maxBytes: number;
  /** Old files kept besides the current one. */
  keep: number;
}

const day = () => new Date().toISOString().slice(0, 10);

function numbered(dir: string, base: string): number[] {
  const re = new RegExp(`^${base.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\.(\\d+)\\.log$`);
  return readdirSync(dir)
    .map((f) => re.exec(f)?.[1])
    .filter((n): n is string => n !== undefined)
    .map(Number)
    .sort((a, b) => a - b);
}

export function createRotatingStream(opts: RotatingStreamOptions): SonicBoom {
  mkdirSync(opts.dir, { recursive: true, mode: 0o750 });
  const pathOf = (n: number) => join(opts.dir, `${opts.base}.${n}.log`);
  const existing = numbered(opts.dir, opts.base);
  let n = existing.length > 0 ? existing[existing.length - 1] : 1;
  let size = 0;
  let opened = day();
  try {
    const st = statSync(pathOf(n));
    size = st.size;
    if (size >= opts.maxBytes || st.mtime.toISOString().slice(0, 10) !== opened) {
      n++;
      size = 0;
    }
  } catch {
    size = 0;
  }
  const stream: SonicBoom = new (SonicBoomCtor as unknown as typeof SonicBoom)({ dest: pathOf(n), mkdir: true, append: true, sync: false, mode: 0o640 });

  const prune = () => {
    const all = numbered(opts.dir, opts.base);
    for (const old of all.slice(0, Math.max(0, all.length - 1 - opts.keep))) {
      try {
        unlinkSync(pathOf(old));
      } catch {
        // Already gone (another pruner, or an operator): nothing to do.
      }
    }
  };

  stream.on('write', (bytes: number) => {
    size += bytes;
    const today = day();
    if (size >= opts.maxBytes || today !== opened) {
      n++;
      size = 0;
      opened = today;
      stream.reopen(pathOf(n));
      prune();
    }
  });
  prune();
  return stream;
}
