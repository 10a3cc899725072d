// The zone benchmarks run the built daemon from dist/, so a stale build would measure old code.
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { REPO } from '../../test/support/zone.ts';

function newestMtime(dir: string, include: (file: string) => boolean): number {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (!entry.isFile() || !include(entry.name)) continue;
    newest = Math.max(newest, statSync(join(entry.parentPath, entry.name)).mtimeMs);
  }
  return newest;
}

/** The daemon and its children run compiled JavaScript from dist/; build it when it is missing or older than src/. */
export function ensureBuilt(): void {
  const marker = join(REPO, 'dist', 'cli', 'main.js');
  const compiled = (f: string) => f.endsWith('.ts') && !f.endsWith('.test.ts') && !f.endsWith('.suite.ts');
  if (existsSync(marker) && statSync(marker).mtimeMs >= newestMtime(join(REPO, 'src'), compiled)) return;
  console.log('  dist/ is missing or older than src/: running npm run build');
  const r = spawnSync('npm', ['run', 'build'], { cwd: REPO, stdio: ['ignore', 'inherit', 'inherit'] });
  if (r.status !== 0) throw new Error(`npm run build failed (${r.status ?? r.signal})`);
}
