// Runs every *.test.ts under src/ and test/ with Node's built-in runner (Node 20 has no glob support in --test).
// Extra arguments are path filters: `npm test -- src/lib` runs only files whose path contains "src/lib".
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';

function walk(dir, out) {
  for (const name of readdirSync(dir)) {
    if (name === 'node_modules' || name.startsWith('.')) continue;
    const p = join(dir, name);
    if (statSync(p).isDirectory()) walk(p, out);
    else if (name.endsWith('.test.ts')) out.push(p);
  }
  return out;
}

const filters = process.argv.slice(2);
const files = ['src', 'test', 'scripts']
  .flatMap((d) => walk(d, []))
  .filter((f) => filters.length === 0 || filters.some((x) => f.includes(x)))
  .sort();
if (files.length === 0) {
  console.error('no test files match', filters.join(' '));
  process.exit(1);
}
// Multi-process tests run the compiled CLI, as a user would; build it first so they never test stale code.
if (files.some((f) => f.startsWith('test/'))) {
  const build = spawnSync(process.execPath, ['node_modules/typescript/bin/tsc', '-p', 'tsconfig.build.json'], { stdio: 'inherit' });
  if (build.status !== 0) process.exit(build.status ?? 1);
}
// A file that awaits something that never settles would otherwise hold the whole run open; the longest file takes
// about three minutes, so fifteen turns such a hang into a failure that names the file.
const r = spawnSync(process.execPath, ['--import', 'tsx', '--test', '--test-concurrency=2', '--test-timeout=900000', ...files], {
  stdio: 'inherit',
});
process.exit(r.status ?? 1);
