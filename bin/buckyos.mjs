#!/usr/bin/env node
// Runs the compiled CLI. Kernel services are long-running children of node_daemon, so they run compiled JavaScript
// rather than through a TypeScript loader (less memory per process, faster start).
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const main = fileURLToPath(new URL('../dist/cli/main.js', import.meta.url));
if (!existsSync(main)) {
  console.error('buckyos is not built yet: run `npm run build` in', fileURLToPath(new URL('..', import.meta.url)));
  process.exit(1);
}
await import(main);
