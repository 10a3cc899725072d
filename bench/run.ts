// `npm run bench -- <name>` runs bench/<name>.ts's `main()`. Each benchmark starts and stops its own anchor, so one
// name is one self-contained run; helpers live in bench/support/ and are not benchmarks.
import { readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const dir = fileURLToPath(new URL('.', import.meta.url));
const available = readdirSync(dir)
  .filter((f) => f.endsWith('.ts') && f !== 'run.ts')
  .map((f) => f.slice(0, -3))
  .sort();

const name = process.argv[2];
if (name === undefined || !available.includes(name)) {
  if (name !== undefined) console.error(`unknown benchmark "${name}"`);
  console.error(`usage: npm run bench -- <name>\navailable benchmarks:\n${available.map((b) => `  ${b}`).join('\n')}`);
  process.exit(1);
}

const mod = (await import(`./${name}.ts`)) as { main?: () => Promise<void> };
if (typeof mod.main !== 'function') {
  console.error(`bench/${name}.ts does not export main()`);
  process.exit(1);
}
try {
  await mod.main();
} catch (err) {
  console.error(err instanceof Error ? (err.stack ?? err.message) : err);
  process.exit(1);
}
// Clients with keep-alive sockets or background timers (etcd3, http agents) would otherwise hold the process open.
process.exit(0);
