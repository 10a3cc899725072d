import { after, before, describe, it } from 'node:test';
import { randomBytes } from 'node:crypto';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { type Server, createServer, request } from 'node:http';
import type { AddressInfo } from 'node:net';
import { until } from '../../../test/support/wait.ts';
import { type TestFiles, openTestFiles, session } from './files.suite.ts';
import { dfsFaces } from './endpoint.suite.ts';
import { continueWhenRead, streamTo } from './http.ts';
import { MAX_CHUNK_BYTES } from './peers.ts';
import type { Uploads } from './uploads.ts';

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
    // Another dfs instance's token.
    const { http } = dfsFaces(t, async () => ({ userId: 'dfs', appId: 'dfs', kind: 'service', expiresAt: 0 }));
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

describe('the file endpoint: PUT preconditions, conditional and ranged reads, malformed requests', () => {
  let t: TestFiles;
  let base: string;
  let server: Server;
  let uploads: Uploads;

  before(async () => {
    t = await openTestFiles('g, alice, user\ng, bob, user\n');
    for (const u of ['alice', 'bob']) t.meta.ensureHome(u);
    // A token here is the user's name, through the files page.
    const faces = dfsFaces(t, async (token) => session(token, 'control-panel'));
    uploads = faces.uploads;
    const http = faces.http;
    server = createServer((req, res) => void http.handle(req, res, new URL(req.url!, 'http://st1')));
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}/kapi/dfs`;
  });
  after(async () => {
    server.closeAllConnections();
    server.close();
    await t.close();
  });

  const put = (user: string, path: string, body: Buffer | string, headers: Record<string, string> = {}) =>
    fetch(`${base}/files/home${path}`, { method: 'PUT', headers: { authorization: `Bearer ${user}`, ...headers }, body: typeof body === 'string' ? body : new Uint8Array(body) });
  const etagOf = async (path: string) => (await fetch(`${base}/files/home${path}`, { method: 'HEAD', headers: { authorization: 'Bearer alice' } })).headers.get('etag')!;

  it('creates only once with If-None-Match: *, also for two such PUTs racing', async () => {
    assert.equal((await put('alice', '/public/once.txt', 'first', { 'if-none-match': '*' })).status, 201);
    assert.equal((await put('alice', '/public/once.txt', 'second', { 'if-none-match': '*' })).status, 412);
    const both = await Promise.all([randomBytes(4 << 20), randomBytes(4 << 20)].map((b) => put('alice', '/public/race.bin', b, { 'if-none-match': '*' })));
    assert.deepEqual(both.map((r) => r.status).sort(), [201, 412], 'one wins, the other is refused at its commit');
    assert.equal(t.meta.versions('/public/race.bin').length, 1);
  });

  it('writes with If-Match only over the version named, and refuses a changed or missing file with 412', async () => {
    assert.equal((await put('alice', '/public/doc.txt', 'v1')).status, 201);
    const v1 = await etagOf('/public/doc.txt');
    assert.equal((await put('alice', '/public/doc.txt', 'v2', { 'if-match': v1 })).status, 200);
    const stale = await put('alice', '/public/doc.txt', 'v3', { 'if-match': v1 });
    assert.equal(stale.status, 412);
    assert.match(await stale.text(), /is no longer the version If-Match names/);
    assert.equal(await (await fetch(`${base}/files/home/public/doc.txt`, { headers: { authorization: 'Bearer alice' } })).text(), 'v2');
    assert.equal((await put('alice', '/public/none.txt', 'x', { 'if-match': '*' })).status, 412);
    assert.equal((await put('alice', '/public/doc.txt', 'v3', { 'if-none-match': await etagOf('/public/doc.txt') })).status, 412);
  });

  it('tells a caller who may not write a file nothing of it through preconditions: 403, as without them', async () => {
    await put('alice', '/home/alice/secret.txt', 'alice only');
    for (const headers of [{ 'if-match': '"nope"' }, { 'if-none-match': '*' }, {}] as Record<string, string>[]) {
      const r = await put('bob', '/home/alice/secret.txt', 'x', headers);
      assert.equal(r.status, 403, JSON.stringify(headers));
      assert.doesNotMatch(await r.text(), /sha256/);
    }
    assert.equal((await put('bob', '/home/alice/none.txt', 'x', { 'if-none-match': '*' })).status, 403);
  });

  it('answers a weak If-None-Match with 304, a backwards range with the whole file, a whole file by id as private, and a malformed escape with 400', async () => {
    await put('alice', '/public/r.txt', '0123456789');
    const tag = await etagOf('/public/r.txt');
    assert.equal((await fetch(`${base}/files/home/public/r.txt`, { headers: { authorization: 'Bearer alice', 'if-none-match': `W/${tag}` } })).status, 304);
    const backwards = await fetch(`${base}/files/home/public/r.txt`, { headers: { authorization: 'Bearer alice', range: 'bytes=5-2' } });
    assert.deepEqual([backwards.status, await backwards.text()], [200, '0123456789']);
    const byId = await fetch(`${base}/ndn/${tag.slice(1, -1)}`, { headers: { authorization: 'Bearer alice' } });
    assert.deepEqual([byId.status, await byId.text(), byId.headers.get('cache-control')], [200, '0123456789', 'private, max-age=31536000, immutable']);
    const bad = await fetch(`${base}/ndn/%E0%A4`, { headers: { authorization: 'Bearer alice' } });
    assert.equal(bad.status, 400);
    assert.match(await bad.text(), /malformed %-escape/);
  });

  it('refuses an upload part whose Content-Range does not describe its body', async () => {
    const u = uploads.create({ volume: 'home', path: '/public/up.bin', size: 999, user: 'alice', app: 'control-panel', overwrite: true });
    const r = await fetch(`${base}/uploads/${u.id}`, { method: 'PUT', headers: { authorization: 'Bearer alice', 'content-range': 'bytes 0-9/999' }, body: 'abcd' });
    assert.equal(r.status, 400);
    assert.equal(uploads.get(u.id, session('alice', 'control-panel')).offset, 0, 'nothing was appended');
  });

  it('charges a write into a file to its owner, not the writer, when checking quotas early', async () => {
    await put('alice', '/public/shared.txt', 'alice wrote this');
    t.meta.setQuota('bob', 0);
    assert.equal((await put('bob', '/public/shared.txt', 'bob adds to it')).status, 200, 'bob\'s own quota is not what this costs');
    t.meta.setQuota('alice', 1024);
    const over = await put('bob', '/public/shared.txt', randomBytes(64 * 1024), { 'content-length': String(64 * 1024) });
    assert.equal(over.status, 412);
    assert.match(await over.text(), /quota exceeded: alice uses/);
    t.meta.setQuota('alice', null);
    t.meta.setQuota('bob', null);
  });
});
