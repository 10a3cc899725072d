// litmus, the WebDAV server test suite (Debian package "litmus"), against the WebDAV handler serving an on-disk test
// backend under /dav on a free port. The acceptance groups are basic, copymove and props; locks and http run too,
// since the handler implements class 2. Every test of every group must pass, without warnings (litmus warns where a
// server breaks a SHOULD), and a failure names each failing test with litmus's own explanation.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createDavHandler } from '../src/storage/dfs/webdav.ts';
import { DiskDavBackend } from '../src/storage/dfs/webdav.suite.ts';
import { freePort } from './support/ports.ts';
import { type LitmusGroup, parseLitmus, runLitmus } from './support/litmus.ts';

const GROUPS = ['basic', 'copymove', 'props', 'locks', 'http'];

async function listenOnFreePort(server: Server): Promise<number> {
  for (let attempt = 0; ; attempt++) {
    const port = await freePort();
    server.listen(port, '127.0.0.1');
    try {
      await once(server, 'listening');
      return port;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EADDRINUSE' || attempt >= 5) throw err;
    }
  }
}

describe('WebDAV handler under litmus', () => {
  let backend: DiskDavBackend;
  let server: Server;
  let cwd: string;
  let groups: Map<string, LitmusGroup>;
  let output: string;
  // Requests litmus abandons mid-way are still being handled after it exits; the backend must outlive them.
  const inFlight = new Set<Promise<void>>();

  before(async () => {
    backend = await DiskDavBackend.create();
    const handler = createDavHandler({ backend, prefix: '/dav' });
    server = createServer((req, res) => {
      const p = handler(req, res).finally(() => inFlight.delete(p));
      inFlight.add(p);
    });
    const port = await listenOnFreePort(server);
    // litmus writes debug.log and child.log into its working directory.
    cwd = mkdtempSync(join(tmpdir(), 'litmus-'));
    output = await runLitmus(`http://127.0.0.1:${port}/dav/`, cwd, GROUPS);
    groups = parseLitmus(output);
  });

  after(async () => {
    if (cwd) rmSync(cwd, { recursive: true, force: true });
    server?.closeAllConnections();
    await new Promise<void>((r) => (server ? server.close(() => r()) : r()));
    await Promise.allSettled(inFlight);
    await backend?.destroy();
  });

  for (const name of GROUPS) {
    it(`passes every test of the ${name} group`, () => {
      const group = groups.get(name);
      assert.ok(group, `litmus did not run the ${name} group:\n${output}`);
      const problems = group.tests
        .filter((t) => t.result !== 'pass' || t.warnings.length > 0)
        .map((t) => `${t.num}. ${t.name}: ${t.result || 'no result'} ${t.detail}${t.warnings.map((w) => `\n   WARNING: ${w}`).join('')}`);
      assert.deepEqual(problems, [], `litmus ${name}:\n${problems.join('\n')}`);
      assert.ok(group.summary, `no summary for ${name}:\n${output}`);
      assert.equal(group.summary.failed, 0);
      assert.equal(group.summary.run, group.tests.length, `parsed ${group.tests.length} tests of ${group.summary.run}:\n${output}`);
      assert.ok(group.tests.length > 3, `${name} ran only ${group.tests.length} tests`);
    });
  }
});
