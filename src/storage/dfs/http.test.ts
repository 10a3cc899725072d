import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, request } from 'node:http';
import type { AddressInfo } from 'node:net';
import { until } from '../../../test/support/wait.ts';
import { streamTo } from './http.ts';

describe('streamTo', () => {
  it('stops and closes the source when the client goes away mid-transfer, instead of waiting for a drain', async () => {
    let closed = false;
    let sent = 0;
    async function* endless(): AsyncGenerator<Buffer> {
      try {
        for (;;) {
          sent++;
          yield Buffer.alloc(1024 * 1024, 1);
        }
      } finally {
        closed = true;
      }
    }
    let finished: Promise<void> | undefined;
    const server = createServer((_req, res) => {
      const it = endless()[Symbol.asyncIterator]();
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      finished = it.next().then((first) => streamTo(res, it, first));
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    try {
      const req = request({ port: (server.address() as AddressInfo).port, host: '127.0.0.1', path: '/' });
      req.end();
      const [res] = (await once(req, 'response')) as [NodeJS.ReadableStream];
      await once(res, 'data');
      // The client stops reading and goes: the server's socket fills, then closes.
      req.destroy();
      await until('the source closed', () => (closed ? true : undefined), 10_000);
      await finished;
      assert.ok(sent < 1000, `the source was not read to no end (${sent} chunks)`);
    } finally {
      server.close();
    }
  });

  it('ends the response once the source is done', async () => {
    async function* three(): AsyncGenerator<Buffer> {
      for (const s of ['a', 'b', 'c']) yield Buffer.from(s);
    }
    const server = createServer((_req, res) => {
      const it = three()[Symbol.asyncIterator]();
      res.writeHead(200);
      void it.next().then((first) => streamTo(res, it, first));
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    try {
      const r = await fetch(`http://127.0.0.1:${(server.address() as AddressInfo).port}/`);
      assert.equal(await r.text(), 'abc');
    } finally {
      server.close();
    }
  });
});
