// What PeerChunks makes of other dfs instances' answers, from a plain HTTP server standing in for an instance.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { PeerChunks } from './peers.ts';

describe('PeerChunks.log', () => {
  it('takes a log answer without log_start, from a primary older than log truncation, as a log kept whole', async () => {
    const answers = [{ entries: [], last_seq: 3 }, { entries: [], last_seq: 3, log_start: 2 }, { entries: [], last_seq: 3, log_start: 'x' }];
    const server = createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(answers.shift()));
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    try {
      const peers = new PeerChunks({ gatewayUrl: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, token: async () => 'dfs' });
      assert.deepEqual(await peers.log('st1', 'home', 0, 10, 'st2'), { entries: [], lastSeq: 3, logStart: 0 });
      assert.deepEqual(await peers.log('st1', 'home', 0, 10, 'st2'), { entries: [], lastSeq: 3, logStart: 2 });
      await assert.rejects(peers.log('st1', 'home', 0, 10, 'st2'), /log of home: a malformed answer/);
    } finally {
      server.closeAllConnections();
      server.close();
    }
  });
});
