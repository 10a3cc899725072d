import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, request } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import pino from 'pino';
import { until } from '../../../test/support/wait.ts';
import { openTestFiles } from './files.suite.ts';
import { DfsHttp, continueWhenRead, streamTo } from './http.ts';
import { MAX_CHUNK_BYTES } from './peers.ts';
import { Uploads } from './uploads.ts';

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

describe('continueWhenRead', () => {
  it('sends 100 Continue only once the handler reads the body, so a refusal comes first and no body is sent', async () => {
    const server = createServer();
    server.on('checkContinue', (req, res) => {
      continueWhenRead(req, res);
      if (req.url === '/refuse') {
        res.writeHead(401, { 'content-length': '0' });
        res.end();
        return;
      }
      let got = 0;
      req.on('data', (c: Buffer) => (got += c.length));
      req.on('end', () => res.end(String(got)));
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const { port } = server.address() as AddressInfo;
    const put = (path: string) =>
      new Promise<{ status: number; body: string; continued: boolean }>((resolve, reject) => {
        let continued = false;
        const req = request({ host: '127.0.0.1', port, method: 'PUT', path, headers: { expect: '100-continue', 'content-length': '5' } }, (res) => {
          let body = '';
          res.on('data', (c: Buffer) => (body += c));
          res.on('end', () => resolve({ status: res.statusCode!, body, continued }));
        });
        // The body goes only when the server says to go on, as a client that waits for the 100 does.
        req.on('continue', () => {
          continued = true;
          req.end('hello');
        });
        req.on('error', reject);
      });
    try {
      assert.deepEqual(await put('/refuse'), { status: 401, body: '', continued: false });
      assert.deepEqual(await put('/accept'), { status: 200, body: '5', continued: true });
    } finally {
      server.closeAllConnections();
      server.close();
    }
  });
});

describe('chunk exchange between dfs instances', () => {
  it('refuses a chunk larger than any chunk before holding it, declared or streamed', async () => {
    const t = await openTestFiles('');
    const http = new DfsHttp({
      self: 'st1', gatewayUrl: 'http://127.0.0.1:9', files: t.files, uploads: new Uploads(join(t.dir, 'uploads')), disks: t.disks, volumes: t.volumes, io: t.io,
      // Another dfs instance's token: verify-hub's part, which this test is not about.
      authenticate: async () => ({ userId: 'dfs', appId: 'dfs', kind: 'service', expiresAt: 0 }),
      basicLogin: () => Promise.reject(new Error('unused')),
      basicRefresh: () => Promise.reject(new Error('unused')),
      log: pino({ level: 'silent' }),
    });
    const server = createServer((req, res) => void http.handle(req, res, new URL(req.url!, 'http://st1')));
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    try {
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/kapi/dfs/chunks/d1/sha256:${'0'.repeat(64)}`;
      const put = (body: Buffer | ReadableStream) => fetch(url, { method: 'PUT', headers: { authorization: 'Bearer peer' }, body, duplex: 'half' } as RequestInit);
      const declared = await put(Buffer.alloc(MAX_CHUNK_BYTES + 1));
      assert.equal(declared.status, 413);
      assert.match(await declared.text(), /a chunk is at most 4194304 bytes/);
      // Without a length, counted as it comes: the instance stops reading long before the sender would stop.
      const piece = Buffer.alloc(1024 * 1024);
      let sent = 0;
      const endless = new ReadableStream({
        pull(c) {
          sent += piece.length;
          if (sent > 256 * 1024 * 1024) c.close();
          else c.enqueue(piece);
        },
      });
      const streamed = await put(endless).catch((e: Error) => e);
      if (!(streamed instanceof Error)) assert.equal(streamed.status, 413);
      assert.ok(sent < 256 * 1024 * 1024, `${sent} bytes went before the instance stopped reading`);
    } finally {
      server.closeAllConnections();
      server.close();
      await t.close();
    }
  });
});
