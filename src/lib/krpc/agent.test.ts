import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, request, type Agent } from 'node:http';
import type { AddressInfo } from 'node:net';
import { keepAliveAgent } from './agent.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function get(port: number, agent: Agent): Promise<void> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, agent }, (res) => {
      res.resume();
      res.on('end', resolve);
    });
    req.on('error', reject);
    req.end();
  });
}

describe('keepAliveAgent', () => {
  it('reuses a socket while the server keeps it, and lets it go a second before the server announced it would', async () => {
    const server = createServer((req, res) => req.resume().on('end', () => res.end('ok')));
    server.keepAliveTimeout = 3000;
    let connections = 0;
    server.on('connection', () => connections++);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const { port } = server.address() as AddressInfo;
    const agent = keepAliveAgent();
    try {
      await get(port, agent);
      await get(port, agent);
      assert.equal(connections, 1, 'the second request went on the kept socket');
      // Past the agent's 2 s (the announced 3 s less one) and short of the server's 3 s: a plain keep-alive agent
      // would still send on the old socket here, racing the server's close.
      await sleep(2500);
      await get(port, agent);
      assert.equal(connections, 2, 'the idle socket was dropped by the agent, and a new one opened');
    } finally {
      agent.destroy();
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    }
  });
});
