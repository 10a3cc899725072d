// The WebDAV handler over a real on-disk backend, driven by raw HTTP requests (node:http, so paths reach the server
// exactly as written: fetch() would normalise "..", percent-encoding and fragments away before sending).
import { describe, it, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, request, type IncomingHttpHeaders } from 'node:http';
import { readdir } from 'node:fs/promises';
import { connect, type AddressInfo } from 'node:net';
import { DavBackendError, createDavHandler, type DavBackend, type DavHandlerOptions } from './webdav.ts';
import { DiskDavBackend } from './webdav.suite.ts';
import { XmlError, childElements, parseXml, serializeContent, type XmlElement } from './webdav-xml.ts';
import { createHash } from 'node:crypto';
import type { Principal } from '../../lib/krpc/index.ts';
import { volumeDavBackend } from './dav-backend.ts';
import { type TestFiles, openTestFiles, session } from './files.suite.ts';
import type { VolumeMeta } from './volume-meta.ts';

interface Reply {
  status: number;
  headers: IncomingHttpHeaders;
  text: string;
}

interface Dav {
  port: number;
  backend: DiskDavBackend;
  close(): Promise<void>;
  /** Requests the server received and is still handling. */
  busy(): number;
  send(method: string, path: string, opts?: { headers?: Record<string, string>; body?: string | Buffer }): Promise<Reply>;
  /** Sends a body in chunks until the server answers (or all are sent), as a client uploading a large file does. */
  stream(method: string, path: string, headers: Record<string, string>, chunk: Buffer, count: number): Promise<Reply>;
}

async function startDav(opts: Partial<DavHandlerOptions> & { disk?: DiskDavBackend } = {}): Promise<Dav> {
  const disk = opts.disk ?? (await DiskDavBackend.create());
  const handler = createDavHandler({ prefix: '/dav', ...opts, backend: opts.backend ?? disk });
  // A request whose client hung up can still be in the handler; the backend must outlive it.
  const inFlight = new Set<Promise<void>>();
  const server = createServer((req, res) => {
    const p = handler(req, res).finally(() => inFlight.delete(p));
    inFlight.add(p);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as AddressInfo).port;
  const exchange = (method: string, path: string, headers: Record<string, string>, write: (req: ReturnType<typeof request>, answered: () => boolean) => void) =>
    new Promise<Reply>((resolve, reject) => {
      let done = false;
      const req = request({ host: '127.0.0.1', port, method, path, headers, agent: false }, (res) => {
        done = true;
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, text: Buffer.concat(chunks).toString() }));
        res.on('error', reject);
      });
      req.on('error', (err) => (done ? undefined : reject(err)));
      write(req, () => done);
    });
  return {
    port,
    backend: disk,
    busy: () => inFlight.size,
    async close() {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
      await Promise.allSettled(inFlight);
      await disk.destroy();
    },
    send(method, path, o = {}) {
      const headers = { ...o.headers };
      if (o.body !== undefined) headers['Content-Length'] = String(Buffer.byteLength(o.body));
      return exchange(method, path, headers, (req) => req.end(o.body));
    },
    stream(method, path, headers, chunk, count) {
      return exchange(method, path, headers, async (req, answered) => {
        req.flushHeaders();
        for (let i = 0; i < count && !answered() && !req.destroyed; i++) {
          if (!req.write(chunk)) await drainedOrClosed(req);
        }
        if (!answered() && !req.destroyed) req.end();
      });
    },
  };
}

function drainedOrClosed(req: ReturnType<typeof request>): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      req.off('drain', done).off('close', done);
      resolve();
    };
    req.on('drain', done).on('close', done);
  });
}

async function until(condition: () => Promise<boolean>): Promise<void> {
  for (let i = 0; !(await condition()); i++) {
    if (i > 3000) throw new Error('condition not reached in 30 s');
    await new Promise((r) => setTimeout(r, 10));
  }
}

const PROPFIND_ALL = '<?xml version="1.0" encoding="utf-8"?><D:propfind xmlns:D="DAV:"><D:allprop/></D:propfind>';

function propfindBody(...keys: Array<[string, string]>): string {
  return `<D:propfind xmlns:D="DAV:"><D:prop>${keys.map(([ns, local], i) => `<p${i}:${local} xmlns:p${i}="${ns}"/>`).join('')}</D:prop></D:propfind>`;
}

interface PropResult {
  status: number;
  el: XmlElement;
}

/** A multistatus body as href -> "{ns}name" -> status and element. */
function multistatus(text: string): Map<string, Map<string, PropResult>> {
  const doc = parseXml(text, { maxDepth: 100 });
  assert.equal(`{${doc.ns}}${doc.local}`, '{DAV:}multistatus');
  const out = new Map<string, Map<string, PropResult>>();
  for (const response of childElements(doc)) {
    const href = childElements(response).find((e) => e.local === 'href');
    const props = new Map<string, PropResult>();
    out.set(href ? textOf(href) : '', props);
    for (const ps of childElements(response).filter((e) => e.local === 'propstat')) {
      const statusEl = childElements(ps).find((e) => e.local === 'status');
      const status = Number(/HTTP\/1\.1 (\d+)/.exec(statusEl ? textOf(statusEl) : '')?.[1]);
      for (const prop of childElements(ps).filter((e) => e.local === 'prop')) {
        for (const p of childElements(prop)) props.set(`{${p.ns}}${p.local}`, { status, el: p });
      }
    }
  }
  return out;
}

function textOf(el: XmlElement): string {
  return el.children.map((c) => (c.kind === 'text' ? c.text : textOf(c))).join('');
}

describe('WebDAV: reading and writing files', () => {
  let dav: Dav;
  before(async () => {
    dav = await startDav();
  });
  after(() => dav.close());

  it('answers OPTIONS with the DAV classes and the methods the resource allows', async () => {
    const r = await dav.send('OPTIONS', '/dav/');
    assert.equal(r.status, 200);
    assert.equal(r.headers.dav, '1, 2');
    assert.equal(r.headers['ms-author-via'], 'DAV');
    for (const m of ['PROPFIND', 'PROPPATCH', 'LOCK', 'UNLOCK', 'COPY', 'MOVE', 'DELETE']) assert.match(String(r.headers.allow), new RegExp(`\\b${m}\\b`));
    assert.doesNotMatch(String(r.headers.allow), /\b(PUT|MKCOL)\b/);
    const unmapped = await dav.send('OPTIONS', '/dav/nothing-here');
    assert.equal(unmapped.headers.allow, 'OPTIONS, PUT, MKCOL, LOCK, UNLOCK');
  });

  it('PUT creates (201) then replaces (204); GET and HEAD return the bytes, type and validators', async () => {
    const first = await dav.send('PUT', '/dav/hello.txt', { body: 'hello, world' });
    assert.equal(first.status, 201);
    assert.ok(first.headers.etag);
    const again = await dav.send('PUT', '/dav/hello.txt', { body: 'hello, dcfs!' });
    assert.equal(again.status, 204);
    assert.notEqual(again.headers.etag, first.headers.etag);
    const get = await dav.send('GET', '/dav/hello.txt');
    assert.equal(get.status, 200);
    assert.equal(get.text, 'hello, dcfs!');
    assert.equal(get.headers['content-type'], 'text/plain');
    assert.equal(get.headers['accept-ranges'], 'bytes');
    assert.equal(get.headers.etag, again.headers.etag);
    assert.ok(get.headers['last-modified']);
    const head = await dav.send('HEAD', '/dav/hello.txt');
    assert.equal(head.status, 200);
    assert.equal(head.headers['content-length'], '12');
    assert.equal(head.text, '');
  });

  it('keeps the Content-Type a client gave, and guesses from the extension when it gave only octet-stream', async () => {
    await dav.send('PUT', '/dav/data.bin', { body: '{}', headers: { 'Content-Type': 'application/vnd.example+json' } });
    assert.equal((await dav.send('GET', '/dav/data.bin')).headers['content-type'], 'application/vnd.example+json');
    await dav.send('PUT', '/dav/pic.png', { body: 'x', headers: { 'Content-Type': 'application/octet-stream' } });
    assert.equal((await dav.send('GET', '/dav/pic.png')).headers['content-type'], 'image/png');
  });

  it('serves byte ranges (206), refuses unsatisfiable ones (416), and ignores ranges it will not serve', async () => {
    await dav.send('PUT', '/dav/digits', { body: '0123456789' });
    const mid = await dav.send('GET', '/dav/digits', { headers: { Range: 'bytes=2-5' } });
    assert.equal(mid.status, 206);
    assert.equal(mid.text, '2345');
    assert.equal(mid.headers['content-range'], 'bytes 2-5/10');
    assert.equal(mid.headers['content-length'], '4');
    const suffix = await dav.send('GET', '/dav/digits', { headers: { Range: 'bytes=-3' } });
    assert.equal(suffix.text, '789');
    const open = await dav.send('GET', '/dav/digits', { headers: { Range: 'bytes=7-' } });
    assert.equal(open.text, '789');
    const past = await dav.send('GET', '/dav/digits', { headers: { Range: 'bytes=8-100' } });
    assert.equal(past.text, '89');
    const beyond = await dav.send('GET', '/dav/digits', { headers: { Range: 'bytes=10-' } });
    assert.equal(beyond.status, 416);
    assert.equal(beyond.headers['content-range'], 'bytes */10');
    const several = await dav.send('GET', '/dav/digits', { headers: { Range: 'bytes=0-1,4-5' } });
    assert.equal(several.status, 200);
    assert.equal(several.text, '0123456789');
    const stale = await dav.send('GET', '/dav/digits', { headers: { Range: 'bytes=0-1', 'If-Range': '"not-the-etag"' } });
    assert.equal(stale.status, 200);
    const etag = String(stale.headers.etag);
    const fresh = await dav.send('GET', '/dav/digits', { headers: { Range: 'bytes=0-1', 'If-Range': etag } });
    assert.equal(fresh.status, 206);
    assert.equal(fresh.text, '01');
  });

  it('answers conditional requests: 304 on a matching If-None-Match or If-Modified-Since, 412 on failed write preconditions', async () => {
    const put = await dav.send('PUT', '/dav/cond', { body: 'v1' });
    const etag = String(put.headers.etag);
    const notModified = await dav.send('GET', '/dav/cond', { headers: { 'If-None-Match': `"other", ${etag}` } });
    assert.equal(notModified.status, 304);
    assert.equal(notModified.headers.etag, etag);
    assert.equal(notModified.text, '');
    assert.equal((await dav.send('GET', '/dav/cond', { headers: { 'If-None-Match': `W/${etag}` } })).status, 304);
    assert.equal((await dav.send('GET', '/dav/cond', { headers: { 'If-None-Match': '"other"' } })).status, 200);
    const lastModified = String((await dav.send('HEAD', '/dav/cond')).headers['last-modified']);
    assert.equal((await dav.send('GET', '/dav/cond', { headers: { 'If-Modified-Since': lastModified } })).status, 304);

    assert.equal((await dav.send('PUT', '/dav/cond', { body: 'v2', headers: { 'If-Match': '"stale"' } })).status, 412);
    assert.equal((await dav.send('PUT', '/dav/cond', { body: 'v2', headers: { 'If-None-Match': '*' } })).status, 412);
    assert.equal((await dav.send('PUT', '/dav/cond-new', { body: 'x', headers: { 'If-Match': '*' } })).status, 412);
    assert.equal((await dav.send('PUT', '/dav/cond', { body: 'v2', headers: { 'If-Match': etag } })).status, 204);
    assert.equal((await dav.send('GET', '/dav/cond')).text, 'v2');
    assert.equal((await dav.send('PUT', '/dav/cond-new', { body: 'x', headers: { 'If-None-Match': '*' } })).status, 201);
  });

  it('lists a collection as HTML on GET, with names escaped', async () => {
    await dav.send('MKCOL', '/dav/listing');
    await dav.send('PUT', '/dav/listing/%3Cb%3E%20%26.txt', { body: 'x' });
    const r = await dav.send('GET', '/dav/listing');
    assert.equal(r.status, 200);
    assert.match(String(r.headers['content-type']), /^text\/html/);
    assert.match(r.text, /<a href="\/dav\/listing\/%3Cb%3E%20%26\.txt">&lt;b&gt; &amp;\.txt<\/a>/);
  });

  it('PUT answers 409 without a parent, 405 on a collection, 400 for a partial PUT', async () => {
    const noParent = await dav.send('PUT', '/dav/missing/file', { body: 'x' });
    assert.equal(noParent.status, 409);
    assert.match(noParent.text, /parent collection \/missing does not exist/);
    await dav.send('MKCOL', '/dav/a-dir');
    const onDir = await dav.send('PUT', '/dav/a-dir', { body: 'x' });
    assert.equal(onDir.status, 405);
    assert.doesNotMatch(String(onDir.headers.allow), /\bPUT\b/);
    assert.equal((await dav.send('PUT', '/dav/', { body: 'x' })).status, 405);
    assert.equal((await dav.send('PUT', '/dav/under-file', { body: 'x' })).status, 201);
    assert.equal((await dav.send('PUT', '/dav/under-file/child', { body: 'x' })).status, 409);
    const partial = await dav.send('PUT', '/dav/part', { body: 'x', headers: { 'Content-Range': 'bytes 0-0/10' } });
    assert.equal(partial.status, 400);
  });

  it('MKCOL: 201, 405 when something exists, 409 without a parent, 415 with a body', async () => {
    assert.equal((await dav.send('MKCOL', '/dav/col')).status, 201);
    const again = await dav.send('MKCOL', '/dav/col/');
    assert.equal(again.status, 405);
    assert.match(again.text, /already exists/);
    assert.equal((await dav.send('MKCOL', '/dav/nope/col')).status, 409);
    assert.equal((await dav.send('MKCOL', '/dav/with-body', { body: '<x/>', headers: { 'Content-Type': 'text/xml' } })).status, 415);
    assert.equal((await dav.send('GET', '/dav/with-body')).status, 404);
  });

  it('DELETE removes files and whole trees (204), 404 for nothing, and refuses Depth other than infinity on a collection', async () => {
    await dav.send('MKCOL', '/dav/tree');
    await dav.send('MKCOL', '/dav/tree/sub');
    await dav.send('PUT', '/dav/tree/sub/f', { body: 'x' });
    const shallow = await dav.send('DELETE', '/dav/tree', { headers: { Depth: '0' } });
    assert.equal(shallow.status, 400);
    assert.match(shallow.text, /Depth "0" is not allowed/);
    assert.equal((await dav.send('DELETE', '/dav/tree', { headers: { Depth: 'infinity' } })).status, 204);
    assert.equal((await dav.send('GET', '/dav/tree/sub/f')).status, 404);
    assert.equal((await dav.send('DELETE', '/dav/tree')).status, 404);
    await dav.send('PUT', '/dav/plain', { body: 'x' });
    assert.equal((await dav.send('DELETE', '/dav/plain', { headers: { Depth: '0' } })).status, 204);
    assert.equal((await dav.send('DELETE', '/dav/')).status, 403);
  });

  it('answers 501 for methods it does not implement and 404 outside its prefix', async () => {
    const post = await dav.send('POST', '/dav/x', { body: 'x' });
    assert.equal(post.status, 501);
    assert.match(String(post.headers.allow), /PROPFIND/);
    assert.equal((await dav.send('GET', '/other/x')).status, 404);
    assert.equal((await dav.send('GET', '/davish')).status, 404);
  });
});

describe('WebDAV: request paths', () => {
  let dav: Dav;
  before(async () => {
    dav = await startDav();
    await dav.send('MKCOL', '/dav/a');
  });
  after(() => dav.close());

  it('stores names in NFC, so the NFD spelling macOS sends names the same file', async () => {
    const nfd = encodeURIComponent('re\u0301sume\u0301.txt');
    assert.equal((await dav.send('PUT', `/dav/a/${nfd}`, { body: 'cv' })).status, 201);
    assert.equal((await dav.send('GET', `/dav/a/${encodeURIComponent('r\u00e9sum\u00e9.txt')}`)).text, 'cv');
    assert.equal((await dav.send('PUT', `/dav/a/${nfd}`, { body: 'cv2' })).status, 204);
  });

  it('decodes percent-encoded UTF-8 names and encodes them back in hrefs', async () => {
    assert.equal((await dav.send('PUT', '/dav/a/caf%C3%A9%20%E2%82%AC', { body: 'x' })).status, 201);
    assert.ok(await dav.backend.stat('/a/café €'));
    const r = await dav.send('PROPFIND', '/dav/a', { headers: { Depth: '1' }, body: PROPFIND_ALL });
    assert.ok(multistatus(r.text).has('/dav/a/caf%C3%A9%20%E2%82%AC'));
  });

  it('refuses invalid UTF-8 and malformed percent-encoding with 400', async () => {
    for (const path of ['/dav/a/%FF', '/dav/a/%C3%28', '/dav/a/%ED%A0%80', '/dav/%C0%AE%C0%AE/x']) {
      const r = await dav.send('GET', path);
      assert.equal(r.status, 400, path);
      assert.match(r.text, /not valid UTF-8/, path);
    }
    const bad = await dav.send('GET', '/dav/a/%zz');
    assert.equal(bad.status, 400);
    assert.match(bad.text, /malformed percent-encoding/);
  });

  it('refuses path traversal, encoded slashes, empty names, control characters and fragments with 400', async () => {
    for (const path of ['/dav/a/../..', '/dav/../etc/passwd', '/dav/a/%2e%2e/%2E%2E/x', '/dav/a/./b']) {
      const r = await dav.send('PUT', path, { body: 'x' });
      assert.equal(r.status, 400, path);
      assert.match(r.text, /"\.\.?" is not allowed as a name/, path);
    }
    assert.match((await dav.send('GET', '/dav/a%2Fb')).text, /encoded "\/"/);
    assert.match((await dav.send('GET', '/dav/a/%00x')).text, /control character U\+0000/);
    assert.match((await dav.send('GET', '/dav/a/%C2%85x')).text, /control character U\+0085/);
    assert.match((await dav.send('GET', '/dav/a//b')).text, /empty name/);
    const frag = await dav.send('DELETE', '/dav/a/#frag');
    assert.equal(frag.status, 400);
    assert.ok(await dav.backend.stat('/a'));
  });

  it('refuses a name longer than 255 bytes (400) and a path longer than 4096 bytes (414)', async () => {
    const long = await dav.send('PUT', `/dav/${'n'.repeat(256)}`, { body: 'x' });
    assert.equal(long.status, 400);
    assert.match(long.text, /256 bytes in UTF-8; the limit is 255/);
    assert.equal((await dav.send('PUT', `/dav/${'%C3%A9'.repeat(128)}`, { body: 'x' })).status, 400);
    assert.equal((await dav.send('PUT', `/dav/${'n'.repeat(255)}`, { body: 'x' })).status, 201);
    const deep = await dav.send('GET', `/dav/${Array.from({ length: 20 }, () => 'd'.repeat(250)).join('/')}`);
    assert.equal(deep.status, 414);
  });

  it('applies the same checks to Destination headers, which may be absolute URLs, paths or raw UTF-8', async () => {
    await dav.send('PUT', '/dav/a/src', { body: 'x' });
    const traversal = await dav.send('COPY', '/dav/a/src', { headers: { Destination: '/dav/a/../../x' } });
    assert.equal(traversal.status, 400);
    assert.equal((await dav.send('COPY', '/dav/a/src', { headers: { Destination: '/dav/a/%FF' } })).status, 400);
    const abs = await dav.send('COPY', '/dav/a/src', { headers: { Destination: `http://127.0.0.1:${dav.port}/dav/a/copy%20one` } });
    assert.equal(abs.status, 201);
    assert.ok(await dav.backend.stat('/a/copy one'));
    const raw = await dav.send('COPY', '/dav/a/src', { headers: { Destination: Buffer.from('/dav/a/naïve', 'utf8').toString('latin1') } });
    assert.equal(raw.status, 201);
    assert.ok(await dav.backend.stat('/a/naïve'));
  });
});

describe('WebDAV: COPY and MOVE', () => {
  let dav: Dav;
  before(async () => {
    dav = await startDav();
    await dav.send('MKCOL', '/dav/src');
    await dav.send('PUT', '/dav/src/one', { body: '1' });
    await dav.send('MKCOL', '/dav/src/sub');
    await dav.send('PUT', '/dav/src/sub/two', { body: '2' });
  });
  after(() => dav.close());

  it('copies a tree (Depth infinity) or only the collection (Depth 0), and refuses Depth 1', async () => {
    assert.equal((await dav.send('COPY', '/dav/src', { headers: { Destination: '/dav/deep' } })).status, 201);
    assert.equal((await dav.send('GET', '/dav/deep/sub/two')).text, '2');
    assert.equal((await dav.send('COPY', '/dav/src', { headers: { Destination: '/dav/shallow', Depth: '0' } })).status, 201);
    assert.equal((await dav.send('PROPFIND', '/dav/shallow', { headers: { Depth: '0' } })).status, 207);
    assert.deepEqual(await dav.backend.list('/shallow'), []);
    assert.equal((await dav.send('COPY', '/dav/src', { headers: { Destination: '/dav/d1', Depth: '1' } })).status, 400);
  });

  it('Overwrite F answers 412 and leaves the destination; Overwrite T replaces it (204)', async () => {
    await dav.send('PUT', '/dav/target', { body: 'old' });
    for (const method of ['COPY', 'MOVE']) {
      const r = await dav.send(method, '/dav/src/one', { headers: { Destination: '/dav/target', Overwrite: 'F' } });
      assert.equal(r.status, 412, method);
      assert.match(r.text, /exists and Overwrite is F/);
    }
    assert.equal((await dav.send('GET', '/dav/target')).text, 'old');
    assert.equal((await dav.send('COPY', '/dav/src/one', { headers: { Destination: '/dav/target', Overwrite: 'T' } })).status, 204);
    assert.equal((await dav.send('GET', '/dav/target')).text, '1');
    assert.equal((await dav.send('COPY', '/dav/src/one', { headers: { Destination: '/dav/target', Overwrite: 'maybe' } })).status, 400);
  });

  it('MOVE carries a tree and its dead properties, 201 for a new destination and 204 over an existing one', async () => {
    await dav.send('COPY', '/dav/src', { headers: { Destination: '/dav/mv' } });
    await dav.send('PROPPATCH', '/dav/mv/one', {
      body: '<D:propertyupdate xmlns:D="DAV:"><D:set><D:prop><z:tag xmlns:z="urn:z">red</z:tag></D:prop></D:set></D:propertyupdate>',
    });
    assert.equal((await dav.send('MOVE', '/dav/mv', { headers: { Destination: '/dav/mv2' } })).status, 201);
    assert.equal((await dav.send('GET', '/dav/mv')).status, 404);
    assert.deepEqual(await dav.backend.getProps('/mv2/one'), { '{urn:z}tag': 'red' });
    await dav.send('PUT', '/dav/file-over', { body: 'f' });
    assert.equal((await dav.send('MOVE', '/dav/mv2', { headers: { Destination: '/dav/file-over' } })).status, 204);
    assert.equal((await dav.backend.stat('/file-over'))?.type, 'dir');
    assert.equal((await dav.send('MOVE', '/dav/file-over', { headers: { Destination: '/dav/x', Depth: '0' } })).status, 400);
  });

  it('refuses a missing or foreign Destination, the same resource, a collection into itself, and the root', async () => {
    assert.equal((await dav.send('COPY', '/dav/src/one')).status, 400);
    const foreign = await dav.send('COPY', '/dav/src/one', { headers: { Destination: 'http://elsewhere.example/dav/x' } });
    assert.equal(foreign.status, 502);
    assert.match(foreign.text, /another server/);
    assert.equal((await dav.send('COPY', '/dav/src/one', { headers: { Destination: '/not-dav/x' } })).status, 502);
    assert.equal((await dav.send('COPY', '/dav/src/one', { headers: { Destination: `http://localhost:${dav.port}/dav/x`, Host: `127.0.0.1:${dav.port}` } })).status, 502);
    assert.equal((await dav.send('MOVE', '/dav/src', { headers: { Destination: '/dav/src/' } })).status, 403);
    assert.equal((await dav.send('MOVE', '/dav/src', { headers: { Destination: '/dav/src/sub/inner' } })).status, 403);
    assert.equal((await dav.send('MOVE', '/dav/', { headers: { Destination: '/dav/root2' } })).status, 403);
    assert.equal((await dav.send('COPY', '/dav/src/one', { headers: { Destination: '/dav/' } })).status, 403);
    assert.equal((await dav.send('COPY', '/dav/none', { headers: { Destination: '/dav/x' } })).status, 404);
    const noParent = await dav.send('COPY', '/dav/src/one', { headers: { Destination: '/dav/nonesuch/x' } });
    assert.equal(noParent.status, 409);
  });
});

describe('WebDAV: PROPFIND and PROPPATCH', () => {
  let dav: Dav;
  before(async () => {
    dav = await startDav();
    await dav.send('MKCOL', '/dav/c');
    await dav.send('PUT', '/dav/c/f.txt', { body: 'abc' });
    await dav.send('MKCOL', '/dav/c/d');
  });
  after(() => dav.close());

  it('Depth 0 describes the resource, Depth 1 its members too; Depth infinity (or none) is refused with propfind-finite-depth', async () => {
    const d0 = multistatus((await dav.send('PROPFIND', '/dav/c', { headers: { Depth: '0' } })).text);
    assert.deepEqual([...d0.keys()], ['/dav/c/']);
    const d1 = await dav.send('PROPFIND', '/dav/c', { headers: { Depth: '1' }, body: PROPFIND_ALL });
    assert.equal(d1.status, 207);
    assert.match(String(d1.headers['content-type']), /^application\/xml/);
    assert.deepEqual([...multistatus(d1.text).keys()].sort(), ['/dav/c/', '/dav/c/d/', '/dav/c/f.txt']);
    for (const depth of ['infinity', undefined]) {
      const r = await dav.send('PROPFIND', '/dav/c', { headers: depth ? { Depth: depth } : {} });
      assert.equal(r.status, 403);
      assert.match(r.text, /<D:propfind-finite-depth\/>/);
    }
    assert.equal((await dav.send('PROPFIND', '/dav/c', { headers: { Depth: '2' } })).status, 400);
    assert.equal((await dav.send('PROPFIND', '/dav/nothing', { headers: { Depth: '0' } })).status, 404);
  });

  it('returns live properties, and 404 propstats for those it does not have', async () => {
    const r = await dav.send('PROPFIND', '/dav/c/f.txt', {
      headers: { Depth: '0' },
      body: propfindBody(['DAV:', 'getcontentlength'], ['DAV:', 'resourcetype'], ['DAV:', 'getetag'], ['DAV:', 'getcontenttype'], ['DAV:', 'creationdate'], ['DAV:', 'getlastmodified'], ['urn:x', 'nothing']),
    });
    const props = multistatus(r.text).get('/dav/c/f.txt')!;
    assert.equal(textOf(props.get('{DAV:}getcontentlength')!.el), '3');
    assert.equal(childElements(props.get('{DAV:}resourcetype')!.el).length, 0);
    assert.equal(textOf(props.get('{DAV:}getetag')!.el), (await dav.send('HEAD', '/dav/c/f.txt')).headers.etag);
    assert.equal(textOf(props.get('{DAV:}getcontenttype')!.el), 'text/plain');
    assert.match(textOf(props.get('{DAV:}creationdate')!.el), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    assert.match(textOf(props.get('{DAV:}getlastmodified')!.el), /GMT$/);
    assert.equal(props.get('{urn:x}nothing')!.status, 404);
    const dir = multistatus((await dav.send('PROPFIND', '/dav/c/d', { headers: { Depth: '0' }, body: PROPFIND_ALL })).text).get('/dav/c/d/')!;
    assert.equal(childElements(dir.get('{DAV:}resourcetype')!.el)[0].local, 'collection');
    assert.equal(dir.has('{DAV:}getcontentlength'), false);
    assert.ok(dir.has('{DAV:}supportedlock'));
  });

  it('propname lists names without values', async () => {
    const r = multistatus((await dav.send('PROPFIND', '/dav/c/f.txt', { headers: { Depth: '0' }, body: '<propfind xmlns="DAV:"><propname/></propfind>' })).text);
    const props = r.get('/dav/c/f.txt')!;
    assert.ok(props.has('{DAV:}getetag'));
    for (const p of props.values()) assert.equal(p.el.children.length, 0);
  });

  it('PROPPATCH applies in document order and keeps namespaced XML values intact', async () => {
    const body =
      '<?xml version="1.0"?><D:propertyupdate xmlns:D="DAV:" xmlns:a="urn:a">' +
      '<D:set><D:prop><a:x>1</a:x><a:y>gone</a:y><a:z>first</a:z></D:prop></D:set>' +
      '<D:remove><D:prop><a:y/><a:z/></D:prop></D:remove>' +
      '<D:set><D:prop><a:z>second</a:z><a:xml><b:v xmlns:b="urn:b" b:k="&lt;&amp;"><a:w>t</a:w><![CDATA[<raw>]]></b:v></a:xml></D:prop></D:set>' +
      '</D:propertyupdate>';
    const r = await dav.send('PROPPATCH', '/dav/c/f.txt', { body, headers: { 'Content-Type': 'application/xml' } });
    assert.equal(r.status, 207);
    const result = multistatus(r.text).get('/dav/c/f.txt')!;
    for (const k of ['x', 'y', 'z', 'xml']) assert.equal(result.get(`{urn:a}${k}`)?.status, 200, k);
    const props = await dav.backend.getProps('/c/f.txt');
    assert.deepEqual(Object.keys(props).sort(), ['{urn:a}x', '{urn:a}xml', '{urn:a}z']);
    assert.equal(props['{urn:a}z'], 'second');

    const got = multistatus((await dav.send('PROPFIND', '/dav/c/f.txt', { headers: { Depth: '0' }, body: propfindBody(['urn:a', 'xml']) })).text);
    const v = childElements(got.get('/dav/c/f.txt')!.get('{urn:a}xml')!.el)[0];
    assert.equal(`{${v.ns}}${v.local}`, '{urn:b}v');
    assert.deepEqual(
      v.attrs.map((a) => [a.ns, a.local, a.value]),
      [['urn:b', 'k', '<&']],
    );
    const w = childElements(v)[0];
    assert.equal(`{${w.ns}}${w.local}`, '{urn:a}w');
    assert.equal(textOf(v), 't<raw>');
  });

  it('PROPPATCH is all or nothing: a protected property fails (403) and the rest are not applied (424)', async () => {
    const r = await dav.send('PROPPATCH', '/dav/c/f.txt', {
      body: '<D:propertyupdate xmlns:D="DAV:"><D:set><D:prop><q:new xmlns:q="urn:q">v</q:new><D:getetag>"forged"</D:getetag></D:prop></D:set></D:propertyupdate>',
    });
    assert.equal(r.status, 207);
    const result = multistatus(r.text).get('/dav/c/f.txt')!;
    assert.equal(result.get('{DAV:}getetag')?.status, 403);
    assert.equal(result.get('{urn:q}new')?.status, 424);
    assert.equal((await dav.backend.getProps('/c/f.txt'))['{urn:q}new'], undefined);
  });

  it('a dead DAV:displayname overrides the computed one', async () => {
    await dav.send('PROPPATCH', '/dav/c/d', { body: '<propertyupdate xmlns="DAV:"><set><prop><displayname>My Folder</displayname></prop></set></propertyupdate>' });
    const got = multistatus((await dav.send('PROPFIND', '/dav/c/d', { headers: { Depth: '0' }, body: PROPFIND_ALL })).text);
    assert.equal(textOf(got.get('/dav/c/d/')!.get('{DAV:}displayname')!.el), 'My Folder');
  });

  it('refuses malformed and unexpected bodies with 400', async () => {
    const cases: Array<[string, string, RegExp]> = [
      ['PROPFIND', '<D:propfind xmlns:D="DAV:"><D:prop>', /is not closed/],
      ['PROPFIND', '<D:propfind xmlns:D="DAV:"><D:prop><bar:foo xmlns:bar=""/></D:prop></D:propfind>', /empty name/],
      ['PROPFIND', '<D:propfind xmlns:D="DAV:"><D:prop><bar:foo/></D:prop></D:propfind>', /prefix "bar" is not declared/],
      ['PROPFIND', '<propfind xmlns="urn:not-dav"><allprop/></propfind>', /must be a DAV:propfind/],
      ['PROPFIND', '<propfind xmlns="DAV:"><foo/></propfind>', /needs a prop, allprop or propname/],
      ['PROPPATCH', '<propertyupdate xmlns="DAV:"/>', /no property to set or remove/],
      ['PROPPATCH', '', /must be a DAV:propertyupdate/],
    ];
    for (const [method, body, message] of cases) {
      const r = await dav.send(method, '/dav/c', { headers: { Depth: '0' }, body });
      assert.equal(r.status, 400, body);
      assert.match(r.text, message, body);
    }
    const notXml = await dav.send('PROPFIND', '/dav/c', { headers: { Depth: '0', 'Content-Type': 'text/plain' }, body: 'hello' });
    assert.equal(notXml.status, 415);
  });
});

describe('WebDAV: XML body limits', () => {
  let dav: Dav;
  before(async () => {
    dav = await startDav({ limits: { maxXmlBytes: 64 * 1024, maxXmlDepth: 16 } });
  });
  after(() => dav.close());

  it('refuses a PROPPATCH whose values, written out, would take more than twice the body limit (413), and sets nothing', async () => {
    const ns = `urn:${'n'.repeat(1000)}`;
    const body = `<D:propertyupdate xmlns:D="DAV:" xmlns:z="${ns}"><D:set><D:prop><z:big>${'<z:a/>'.repeat(10_000)}</z:big></D:prop></D:set></D:propertyupdate>`;
    assert.ok(body.length < 64 * 1024, 'the body itself is within the limit');
    const r = await dav.send('PROPPATCH', '/dav/', { body });
    assert.equal(r.status, 413, r.text);
    assert.match(r.text, /longer than 131072 bytes once written out/);
    const props = await dav.send('PROPFIND', '/dav/', { headers: { Depth: '0' }, body: `<D:propfind xmlns:D="DAV:"><D:prop><z:big xmlns:z="${ns}"/></D:prop></D:propfind>` });
    assert.match(props.text, /404 Not Found/);
  });

  it('refuses a body over the size limit with 413, whether its length is declared or streamed', async () => {
    const declared = await dav.stream('PROPFIND', '/dav/', { Depth: '0', 'Content-Length': String(100 * 1024 * 1024) }, Buffer.alloc(0), 0);
    assert.equal(declared.status, 413);
    assert.equal(declared.headers.connection, 'close');
    assert.match(declared.text, /request body too large/);
    const streamed = await dav.stream('PROPPATCH', '/dav/', { 'Transfer-Encoding': 'chunked' }, Buffer.alloc(16 * 1024, ' '), 1000);
    assert.equal(streamed.status, 413);
    assert.equal((await dav.send('PROPFIND', '/dav/', { headers: { Depth: '0' } })).status, 207);
  });

  it('refuses nesting deeper than the limit with 400', async () => {
    const deep = `<D:propfind xmlns:D="DAV:"><D:prop>${'<x:a xmlns:x="urn:x">'.repeat(20)}${'</x:a>'.repeat(20)}</D:prop></D:propfind>`;
    const r = await dav.send('PROPFIND', '/dav/', { headers: { Depth: '0' }, body: deep });
    assert.equal(r.status, 400);
    assert.match(r.text, /nested deeper than 16/);
    const bomb = '<a>'.repeat(100_000);
    assert.equal((await dav.send('PROPFIND', '/dav/', { headers: { Depth: '0' }, body: bomb })).status, 413);
  });

  it('refuses DTDs, invalid UTF-8 and encodings other than UTF-8', async () => {
    const dtd = await dav.send('PROPFIND', '/dav/', {
      headers: { Depth: '0' },
      body: '<?xml version="1.0"?><!DOCTYPE lol [<!ENTITY a "aaaa">]><propfind xmlns="DAV:"><allprop/></propfind>',
    });
    assert.equal(dtd.status, 400);
    assert.match(dtd.text, /document type declarations are not accepted/);
    const latin1 = Buffer.concat([Buffer.from('<propfind xmlns="DAV:"><prop><x:caf'), Buffer.from([0xe9]), Buffer.from(' xmlns:x="urn:x"/></prop></propfind>')]);
    const bad = await dav.send('PROPFIND', '/dav/', { headers: { Depth: '0' }, body: latin1 });
    assert.equal(bad.status, 400);
    assert.match(bad.text, /not valid UTF-8/);
    const declared = await dav.send('PROPFIND', '/dav/', { headers: { Depth: '0' }, body: '<?xml version="1.0" encoding="ISO-8859-1"?><propfind xmlns="DAV:"><allprop/></propfind>' });
    assert.equal(declared.status, 415);
  });
});

describe('WebDAV: the XML parser', () => {
  const parse = (s: string) => parseXml(s, { maxDepth: 8 });

  it('resolves namespaces, entities and character references, and normalises line ends', () => {
    const el = parse('<?xml version="1.0" encoding="UTF-8"?>\r\n<!-- c --><a:r xmlns:a="urn:a" xmlns="urn:d" k="1&#x9;2"><c>x&amp;&#65536;\r\ny</c><?pi x?></a:r>');
    assert.equal(el.ns, 'urn:a');
    assert.deepEqual(el.attrs, [{ ns: '', local: 'k', prefix: '', value: '1 2' }]);
    const c = childElements(el)[0];
    assert.equal(c.ns, 'urn:d');
    assert.equal(textOf(c), 'x&\u{10000}\ny');
  });

  it('serialises content so that it carries its own namespace declarations', () => {
    const el = parse('<p xmlns="urn:p" xmlns:q="urn:q"><q:a q:k="v"><inner/></q:a> &lt;t&gt;</p>');
    const text = serializeContent(el);
    assert.equal(text, '<q:a xmlns:q="urn:q" q:k="v"><inner xmlns="urn:p"/></q:a> &lt;t&gt;');
    const again = parse(`<wrap>${text}</wrap>`);
    assert.equal(childElements(childElements(again)[0])[0].ns, 'urn:p');
  });

  it('refuses what is not well-formed or not namespace-well-formed', () => {
    const bad = [
      '<a>',
      '<a></b>',
      '<a/><b/>',
      'text',
      '<a x="1" x="2"/>',
      '<a xmlns:p="urn:p" xmlns:q="urn:p" p:x="1" q:x="2"/>',
      '<a>&unknown;</a>',
      '<a>&#0;</a>',
      '<a>\u0001</a>',
      '<a x=1/>',
      '<p:a/>',
      '<a xmlns:xmlns="urn:x"/>',
      '<a><!-- a -- b --></a>',
      '<a>]]></a>',
      '<a><?xml version="1.0"?></a>',
    ];
    for (const s of bad) assert.throws(() => parse(s), XmlError, s);
    assert.throws(() => parse('<a>'.repeat(9) + '</a>'.repeat(9)), /nested deeper than 8/);
  });
});

describe('WebDAV: backend errors and permissions', () => {
  it('maps QUOTA_EXCEEDED to 507, refusing a declared oversize upload before reading it', async () => {
    const dav = await startDav({ disk: await DiskDavBackend.create({ quotaBytes: 100_000 }) });
    try {
      const declared = await dav.stream('PUT', '/dav/big', { 'Content-Length': String(50 * 1024 * 1024) }, Buffer.alloc(0), 0);
      assert.equal(declared.status, 507);
      assert.match(declared.text, /quota of 100000 bytes/);
      assert.equal(declared.headers.connection, 'close');
      const streamed = await dav.stream('PUT', '/dav/big', { 'Transfer-Encoding': 'chunked' }, Buffer.alloc(32 * 1024), 100);
      assert.equal(streamed.status, 507);
      assert.equal(await dav.backend.stat('/big'), null);
      assert.equal((await dav.send('PUT', '/dav/small', { body: 'fits' })).status, 201);
      const quota = multistatus(
        (await dav.send('PROPFIND', '/dav/', { headers: { Depth: '0' }, body: propfindBody(['DAV:', 'quota-used-bytes'], ['DAV:', 'quota-available-bytes']) })).text,
      ).get('/dav/')!;
      assert.equal(textOf(quota.get('{DAV:}quota-used-bytes')!.el), '4');
      assert.equal(textOf(quota.get('{DAV:}quota-available-bytes')!.el), '99996');
    } finally {
      await dav.close();
    }
  });

  it('an upload the client aborts leaves no file behind and is not reported as a server error', async () => {
    const errors: unknown[] = [];
    const dav = await startDav({ onError: (err) => errors.push(err) });
    try {
      const uploads = async () => (await readdir(dav.backend.root)).filter((n) => n.startsWith('upload-'));
      const req = request({ host: '127.0.0.1', port: dav.port, method: 'PUT', path: '/dav/partial', headers: { 'Transfer-Encoding': 'chunked' }, agent: false });
      req.on('error', () => {});
      req.write(Buffer.alloc(64 * 1024));
      await until(async () => (await uploads()).length > 0);
      req.destroy();
      await until(async () => (await uploads()).length === 0);
      assert.equal(await dav.backend.stat('/partial'), null);
      assert.deepEqual(errors, []);
    } finally {
      await dav.close();
    }
  });

  it('an upload whose client left before the handler read it fails cleanly instead of hanging', async () => {
    const errors: unknown[] = [];
    const dav = await startDav({
      onError: (err) => errors.push(err),
      // Holds the request until its client is gone, as a slow permission check would.
      authorize: (req) => new Promise<boolean>((resolve) => (req.destroyed ? resolve(true) : req.once('close', () => resolve(true)))),
    });
    try {
      const sock = connect(dav.port, '127.0.0.1');
      await once(sock, 'connect');
      sock.end('PUT /dav/left HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello');
      await once(sock, 'close');
      await until(async () => dav.busy() === 0 && (await readdir(dav.backend.root)).every((n) => !n.startsWith('upload-')));
      assert.equal(await dav.backend.stat('/left'), null);
      assert.deepEqual(errors, []);
    } finally {
      await dav.close();
    }
  });

  it('answers a PROPPATCH the backend refuses with that status for every property, changing nothing', async () => {
    const dav = await startDav({ disk: await DiskDavBackend.create({ maxPropBytes: 100 }) });
    try {
      await dav.send('PUT', '/dav/f', { body: 'x' });
      const r = await dav.send('PROPPATCH', '/dav/f', {
        body: `<D:propertyupdate xmlns:D="DAV:"><D:set><D:prop><a:small xmlns:a="urn:a">1</a:small><a:big xmlns:a="urn:a">${'x'.repeat(200)}</a:big></D:prop></D:set></D:propertyupdate>`,
      });
      assert.equal(r.status, 207);
      const result = multistatus(r.text).get('/dav/f')!;
      assert.equal(result.get('{urn:a}small')?.status, 507);
      assert.equal(result.get('{urn:a}big')?.status, 507);
      assert.deepEqual(await dav.backend.getProps('/f'), {});
    } finally {
      await dav.close();
    }
  });

  it('maps the other backend codes to statuses with the backend message, and hides unexpected errors behind a 500', async () => {
    const disk = await DiskDavBackend.create();
    const errors: unknown[] = [];
    let next: Error = new Error('unset');
    const backend: DavBackend = Object.assign(Object.create(disk) as DavBackend, {
      write: async () => {
        throw next;
      },
    });
    const dav = await startDav({ disk, backend, onError: (err) => errors.push(err) });
    try {
      const cases: Array<[Error, number]> = [
        [new DavBackendError('FORBIDDEN', 'no writes for guests'), 403],
        [new DavBackendError('READ_ONLY', 'volume is read-only'), 403],
        [new DavBackendError('INVALID_PATH', 'name not allowed here'), 400],
        [new DavBackendError('CONFLICT', 'a concurrent change won'), 409],
        [new DavBackendError('IS_A_DIRECTORY', 'became a directory'), 405],
        [Object.assign(new Error('volume quota'), { code: 'QUOTA_EXCEEDED' }), 507],
      ];
      for (const [err, status] of cases) {
        next = err;
        const r = await dav.send('PUT', '/dav/f', { body: 'x' });
        assert.equal(r.status, status, err.message);
        assert.match(r.text, new RegExp(err.message), err.message);
      }
      next = Object.assign(new Error('/var/lib/secret: EIO'), { code: 'EIO' });
      const r = await dav.send('PUT', '/dav/f', { body: 'x' });
      assert.equal(r.status, 500);
      assert.doesNotMatch(r.text, /secret/);
      assert.deepEqual(errors, [next]);
    } finally {
      await dav.close();
    }
  });

  it('asks authorize() for every path a request reads or writes, and answers 403 when refused', async () => {
    const asked: string[] = [];
    const dav = await startDav({
      authorize: (_req, path, access) => {
        asked.push(`${access} ${path}`);
        return access === 'read' || path.startsWith('/rw');
      },
    });
    try {
      assert.equal((await dav.send('MKCOL', '/dav/rw')).status, 201);
      assert.equal((await dav.send('PUT', '/dav/rw/f', { body: 'x' })).status, 201);
      const denied = await dav.send('PUT', '/dav/ro', { body: 'x' });
      assert.equal(denied.status, 403);
      assert.match(denied.text, /no write permission for \/ro/);
      assert.equal((await dav.send('COPY', '/dav/rw/f', { headers: { Destination: '/dav/ro-copy' } })).status, 403);
      assert.equal((await dav.send('COPY', '/dav/rw/f', { headers: { Destination: '/dav/rw/g' } })).status, 201);
      assert.equal((await dav.send('MOVE', '/dav/rw/g', { headers: { Destination: '/dav/elsewhere' } })).status, 403);
      assert.equal((await dav.send('PROPPATCH', '/dav/', { body: '<propertyupdate xmlns="DAV:"><set><prop><displayname>x</displayname></prop></set></propertyupdate>' })).status, 403);
      assert.equal((await dav.send('GET', '/dav/rw/f')).status, 200);
      assert.ok(asked.includes('read /rw/f') && asked.includes('write /rw/g') && asked.includes('write /ro-copy'));
    } finally {
      await dav.close();
    }
  });
});

describe('WebDAV: locks', () => {
  let dav: Dav;
  before(async () => {
    dav = await startDav({ principal: (req) => req.headers['x-user'] as string | undefined, limits: { maxLockSeconds: 600 } });
    await dav.send('MKCOL', '/dav/l');
    await dav.send('PUT', '/dav/l/doc', { body: 'v1' });
  });
  after(() => dav.close());

  const lockBody = (scope: 'exclusive' | 'shared') =>
    `<?xml version="1.0" encoding="utf-8"?><D:lockinfo xmlns:D="DAV:"><D:lockscope><D:${scope}/></D:lockscope><D:locktype><D:write/></D:locktype><D:owner><D:href>mailto:me@example.com</D:href></D:owner></D:lockinfo>`;

  async function lock(path: string, scope: 'exclusive' | 'shared', headers: Record<string, string> = {}): Promise<{ token: string; reply: Reply }> {
    const reply = await dav.send('LOCK', path, { headers: { Timeout: 'Second-300', ...headers }, body: lockBody(scope) });
    return { token: /^<(.*)>$/.exec(String(reply.headers['lock-token']))?.[1] ?? '', reply };
  }

  it('an exclusive lock keeps others out (423) until its holder unlocks it', async () => {
    const { token, reply } = await lock('/dav/l/doc', 'exclusive', { 'X-User': 'alice' });
    assert.equal(reply.status, 200);
    assert.match(token, /^opaquelocktoken:[0-9a-f-]{36}$/);
    assert.match(reply.text, /<D:owner><D:href xmlns:D="DAV:">mailto:me@example.com<\/D:href><\/D:owner>/);
    assert.match(reply.text, /<D:timeout>Second-300<\/D:timeout>/);

    const blocked = await dav.send('PUT', '/dav/l/doc', { body: 'v2' });
    assert.equal(blocked.status, 423);
    assert.match(blocked.text, /<D:lock-token-submitted><D:href>\/dav\/l\/doc<\/D:href>/);
    assert.equal((await dav.send('DELETE', '/dav/l')).status, 423);
    assert.equal((await dav.send('MOVE', '/dav/l/doc', { headers: { Destination: '/dav/l/moved' } })).status, 423);
    assert.equal((await lock('/dav/l/doc', 'shared')).reply.status, 423);
    const bob = await dav.send('PUT', '/dav/l/doc', { body: 'v2', headers: { 'X-User': 'bob', If: `(<${token}>)` } });
    assert.equal(bob.status, 423);

    const alice = await dav.send('PUT', '/dav/l/doc', { body: 'v2', headers: { 'X-User': 'alice', If: `(<${token}>)` } });
    assert.equal(alice.status, 204);
    const tagged = await dav.send('PROPPATCH', '/dav/l/doc', {
      headers: { 'X-User': 'alice', If: `<http://127.0.0.1:${dav.port}/dav/l/doc> (<${token}>)` },
      body: '<propertyupdate xmlns="DAV:"><set><prop><x:a xmlns:x="urn:x">1</x:a></prop></set></propertyupdate>',
    });
    assert.equal(tagged.status, 207);
    assert.equal((await dav.send('PUT', '/dav/l/doc', { body: 'v3', headers: { 'X-User': 'alice', If: '(<opaquelocktoken:not-a-lock>)' } })).status, 412);

    const discovery = await dav.send('PROPFIND', '/dav/l/doc', { headers: { Depth: '0' }, body: propfindBody(['DAV:', 'lockdiscovery']) });
    assert.match(discovery.text, new RegExp(`<D:locktoken><D:href>${token}</D:href>`));

    assert.equal((await dav.send('UNLOCK', '/dav/l/doc', { headers: { 'Lock-Token': `<${token}>`, 'X-User': 'bob' } })).status, 403);
    assert.equal((await dav.send('UNLOCK', '/dav/l/doc', { headers: { 'Lock-Token': `<${token}>`, 'X-User': 'alice' } })).status, 204);
    assert.equal((await dav.send('UNLOCK', '/dav/l/doc', { headers: { 'Lock-Token': `<${token}>`, 'X-User': 'alice' } })).status, 409);
    assert.equal((await dav.send('PUT', '/dav/l/doc', { body: 'v4' })).status, 204);
  });

  it('shared locks coexist; an exclusive one conflicts with them', async () => {
    const a = await lock('/dav/l/doc', 'shared');
    const b = await lock('/dav/l/doc', 'shared');
    assert.equal(a.reply.status, 200);
    assert.equal(b.reply.status, 200);
    const excl = await lock('/dav/l', 'exclusive');
    assert.equal(excl.reply.status, 423);
    assert.match(excl.reply.text, /no-conflicting-lock/);
    for (const t of [a.token, b.token]) await dav.send('UNLOCK', '/dav/l/doc', { headers: { 'Lock-Token': `<${t}>` } });
  });

  it('a depth-infinity lock on a collection guards new members; LOCK on an unmapped URL creates an empty file (201)', async () => {
    const col = await lock('/dav/l', 'exclusive', { Depth: 'infinity' });
    assert.equal(col.reply.status, 200);
    assert.equal((await dav.send('PUT', '/dav/l/new', { body: 'x' })).status, 423);
    assert.equal((await dav.send('PUT', '/dav/l/new', { body: 'x', headers: { If: `(<${col.token}>)` } })).status, 201);
    assert.equal((await dav.send('UNLOCK', '/dav/l/new', { headers: { 'Lock-Token': `<${col.token}>` } })).status, 204);

    const unmapped = await lock('/dav/l/unmapped', 'exclusive');
    assert.equal(unmapped.reply.status, 201);
    assert.equal((await dav.backend.stat('/l/unmapped'))?.size, 0);
    const refreshed = await dav.send('LOCK', '/dav/l/unmapped', { headers: { If: `(<${unmapped.token}>)`, Timeout: 'Second-60' } });
    assert.equal(refreshed.status, 200);
    assert.match(refreshed.text, /<D:timeout>Second-60<\/D:timeout>/);
    assert.equal((await dav.send('LOCK', '/dav/l/unmapped', { headers: { Timeout: 'Second-60' } })).status, 412);
    assert.equal((await dav.send('DELETE', '/dav/l/unmapped', { headers: { If: `(<${unmapped.token}>)` } })).status, 204);
    assert.equal((await lock('/dav/l/unmapped', 'exclusive')).reply.status, 201);
  });

  it('grants at most the configured timeout, and an expired lock no longer blocks', async () => {
    const long = await lock('/dav/l/doc', 'exclusive', { Timeout: 'Infinite' });
    assert.match(long.reply.text, /<D:timeout>Second-600<\/D:timeout>/);
    await dav.send('UNLOCK', '/dav/l/doc', { headers: { 'Lock-Token': `<${long.token}>` } });
    await lock('/dav/l/doc', 'exclusive', { Timeout: 'Second-1' });
    assert.equal((await dav.send('PUT', '/dav/l/doc', { body: 'x' })).status, 423);
    await new Promise((r) => setTimeout(r, 1100));
    assert.equal((await dav.send('PUT', '/dav/l/doc', { body: 'x' })).status, 204);
  });

  it('refuses malformed If and Lock-Token headers with 400', async () => {
    for (const value of ['(', '()', '<http://x/>', '(<a> [b)', 'junk']) {
      assert.equal((await dav.send('PUT', '/dav/l/doc', { body: 'x', headers: { If: value } })).status, 400, value);
    }
    assert.equal((await dav.send('UNLOCK', '/dav/l/doc', { headers: { 'Lock-Token': 'no-brackets' } })).status, 400);
  });

  it('keeps at most 4 KiB of DAV:owner, counted as written out, and a bounded number of locks per principal', async () => {
    const limited = await startDav({ principal: (req) => req.headers['x-user'] as string | undefined, limits: { maxLocksPerPrincipal: 2, maxLockOwnerBytes: 4096 } });
    try {
      const body = (owner: string) =>
        `<D:lockinfo xmlns:D="DAV:"><D:lockscope><D:shared/></D:lockscope><D:locktype><D:write/></D:locktype><D:owner>${owner}</D:owner></D:lockinfo>`;
      // A short body that grows when written out: each top-level element repeats the namespace it inherits.
      const ns = `urn:${'n'.repeat(200)}`;
      const swelling = `<D:lockinfo xmlns:D="DAV:" xmlns:z="${ns}"><D:lockscope><D:shared/></D:lockscope><D:locktype><D:write/></D:locktype><D:owner>${'<z:a/>'.repeat(100)}</D:owner></D:lockinfo>`;
      assert.ok(swelling.length < 4096);
      const grown = await limited.send('LOCK', '/dav/', { headers: { 'X-User': 'ann' }, body: swelling });
      assert.equal(grown.status, 413, grown.text);
      assert.match(grown.text, /DAV:owner is longer than 4096 bytes/);
      assert.equal((await limited.send('LOCK', '/dav/', { headers: { 'X-User': 'ann' }, body: body('x'.repeat(5000)) })).status, 413);

      for (const path of ['/dav/a', '/dav/b']) assert.equal((await limited.send('LOCK', path, { headers: { 'X-User': 'ann' }, body: body('ann') })).status, 201);
      const third = await limited.send('LOCK', '/dav/c', { headers: { 'X-User': 'ann' }, body: body('ann') });
      assert.equal(third.status, 503);
      assert.match(third.text, /you hold 2 locks, the most one may/);
      assert.equal((await limited.send('LOCK', '/dav/c', { headers: { 'X-User': 'ben' }, body: body('ben') })).status, 201, 'another principal still may');
    } finally {
      await limited.close();
    }
  });

  it("asks the backend's checkLock before a lock is taken or refreshed, and answers 403 when it refuses", async () => {
    const disk = await DiskDavBackend.create();
    const asked: string[] = [];
    let refuse = false;
    const backend: DavBackend = Object.assign(Object.create(disk) as DavBackend, {
      checkLock: async (path: string, exists: boolean) => {
        asked.push(`${path} ${exists}`);
        if (refuse) throw new DavBackendError('FORBIDDEN', `no locks on ${path} for you`);
      },
    });
    const locking = await startDav({ disk, backend });
    try {
      await locking.send('PUT', '/dav/f', { body: 'x' });
      const taken = await locking.send('LOCK', '/dav/f', { body: lockBody('exclusive') });
      assert.equal(taken.status, 200);
      const token = /^<(.*)>$/.exec(String(taken.headers['lock-token']))![1];
      refuse = true;
      const refresh = await locking.send('LOCK', '/dav/f', { headers: { If: `(<${token}>)` } });
      assert.equal(refresh.status, 403);
      assert.match(refresh.text, /no locks on \/f for you/);
      assert.equal((await locking.send('LOCK', '/dav/new', { body: lockBody('exclusive') })).status, 403);
      assert.equal(await disk.stat('/new'), null, 'a refused LOCK on an unmapped URL creates nothing');
      assert.deepEqual(asked, ['/f true', '/f true', '/new false']);
    } finally {
      await locking.close();
    }
  });
});

describe('WebDAV over a dfs volume (dav-backend.ts)', () => {
  // alice is a member of the zone. photos may read the folders and files right inside her Photos folder, and no
  // deeper; tidy may also delete and create right there. Each app also has its own folder, as every app does.
  const TAIL = `g, alice, user
g2, photos, app
p2, photos, obj://dfs/home/home/alice/Photos/*, read
g2, tidy, app
p2, tidy, obj://dfs/home/home/alice/Photos/*, read|create|delete
`;
  const alice = session('alice', 'buckyos-cli');
  const photos = session('alice', 'photos');
  const tidy = session('alice', 'tidy');
  const contentId = (data: Buffer) => `sha256:${createHash('sha256').update(data).digest('hex')}`;
  let t: TestFiles;
  let meta: VolumeMeta;
  let dav: Dav;
  /** The caller of the requests that follow: http.ts binds each request's backend to the request's principal. */
  let caller: Principal = alice;
  const store = (path: string, data: Buffer) =>
    meta.writeFile(path, { content_id: contentId(data), size: data.length, chunks: [{ id: contentId(data), size: data.length }] }, { user: 'alice' });
  const exists = (path: string) => meta.tryStat(path) !== null;
  const proppatch = (props: string) =>
    `<D:propertyupdate xmlns:D="DAV:"><D:set><D:prop>${props}</D:prop></D:set></D:propertyupdate>`;

  before(async () => {
    t = await openTestFiles(TAIL);
    meta = t.meta;
    meta.ensureHome('alice');
    for (const d of ['/home/alice/apps', '/home/alice/apps/photos', '/home/alice/apps/tidy']) meta.mkdir(d, 'alice');
    dav = await startDav({ backend: () => volumeDavBackend(t.files, 'home', caller) });
  });
  after(async () => {
    await dav.close();
    await t.close();
  });
  beforeEach(() => {
    caller = alice;
    // Photos/2024 is a folder photos may read and tidy may delete, as an entry; what is inside it neither may touch.
    if (exists('/home/alice/Photos')) meta.remove('/home/alice/Photos', 'alice');
    meta.mkdir('/home/alice/Photos', 'alice');
    meta.mkdir('/home/alice/Photos/2024', 'alice');
    meta.mkdir('/home/alice/Photos/2024/private', 'alice');
    store('/home/alice/Photos/2024/private/secret.jpg', Buffer.from('secret'));
    store('/home/alice/Photos/top.jpg', Buffer.from('top'));
  });

  it('takes a lock only for a caller who may write the file, or create it where nothing is', async () => {
    const body = '<D:lockinfo xmlns:D="DAV:"><D:lockscope><D:exclusive/></D:lockscope><D:locktype><D:write/></D:locktype></D:lockinfo>';
    // photos may read Photos/* but neither write nor create there.
    caller = photos;
    assert.equal((await dav.send('PROPFIND', '/dav/home/alice/Photos/top.jpg', { headers: { Depth: '0' } })).status, 207);
    const onFile = await dav.send('LOCK', '/dav/home/alice/Photos/top.jpg', { body });
    assert.equal(onFile.status, 403);
    assert.match(onFile.text, /may not write home:\/home\/alice\/Photos\/top\.jpg/);
    const unmapped = await dav.send('LOCK', '/dav/home/alice/Photos/new.jpg', { body });
    assert.equal(unmapped.status, 403);
    assert.equal(exists('/home/alice/Photos/new.jpg'), false);
    caller = alice;
    assert.equal((await dav.send('PUT', '/dav/home/alice/Photos/top.jpg', { body: 'w' })).status, 204, 'no lock was left behind');
    const own = await dav.send('LOCK', '/dav/home/alice/Photos/top.jpg', { body });
    assert.equal(own.status, 200, 'who may write may lock');
    await dav.send('UNLOCK', '/dav/home/alice/Photos/top.jpg', { headers: { 'Lock-Token': String(own.headers['lock-token']) } });
  });

  it("gives ETags short enough for litmus's complex conditional PUT, which it cuts to 199 characters", async () => {
    assert.equal((await dav.send('PUT', '/dav/home/alice/doc', { body: 'v1' })).status, 201);
    const lock = await dav.send('LOCK', '/dav/home/alice/doc', {
      body: '<D:lockinfo xmlns:D="DAV:"><D:lockscope><D:exclusive/></D:lockscope><D:locktype><D:write/></D:locktype></D:lockinfo>',
    });
    assert.equal(lock.status, 200, lock.text);
    const token = /^<(.*)>$/.exec(String(lock.headers['lock-token']))![1];
    // litmus's complex_cond_put and fail_complex_cond_put (locks.c) ne_snprintf this into `char hdr[200]`.
    const litmusIf = (etag: string) => `(<${token}> [${etag}]) (Not <DAV:no-lock> [${etag}])`.slice(0, 199);
    const etag = String((await dav.send('HEAD', '/dav/home/alice/doc')).headers.etag);
    const put = await dav.send('PUT', '/dav/home/alice/doc', { body: 'v2', headers: { If: litmusIf(etag) } });
    assert.equal(put.status, 204, put.text);

    const now = String(put.headers.etag);
    assert.notEqual(now, etag);
    const corrupted = now.slice(0, -3) + String.fromCharCode(now.charCodeAt(now.length - 3) + 1) + now.slice(-2);
    const stale = await dav.send('PUT', '/dav/home/alice/doc', { body: 'v3', headers: { If: litmusIf(corrupted) } });
    assert.equal(stale.status, 412, stale.text);
    assert.equal((await dav.send('GET', '/dav/home/alice/doc')).text, 'v2');
  });

  it('COPY of a folder needs read on everything in it: an app that may read only the folder gets 403 and no copy', async () => {
    caller = photos;
    const deep = await dav.send('COPY', '/dav/home/alice/Photos/2024', { headers: { Destination: '/dav/home/alice/apps/photos/2024' } });
    assert.equal(deep.status, 403, deep.text);
    assert.match(deep.text, /may not read home:\/home\/alice\/Photos\/2024\/private/);
    assert.equal(exists('/home/alice/apps/photos/2024'), false);
    // What it was granted still works: a file right inside, and the folder alone.
    assert.equal((await dav.send('COPY', '/dav/home/alice/Photos/top.jpg', { headers: { Destination: '/dav/home/alice/apps/photos/top.jpg' } })).status, 201);
    const alone = await dav.send('COPY', '/dav/home/alice/Photos/2024', { headers: { Destination: '/dav/home/alice/apps/photos/2024', Depth: '0' } });
    assert.equal(alone.status, 201, alone.text);
    assert.deepEqual(meta.list('/home/alice/apps/photos/2024'), []);
  });

  it('DELETE and MOVE of a folder need delete on everything in it, checked before anything changes', async () => {
    caller = tidy;
    const del = await dav.send('DELETE', '/dav/home/alice/Photos/2024');
    assert.equal(del.status, 403, del.text);
    assert.match(del.text, /may not delete home:\/home\/alice\/Photos\/2024\/private/);
    const move = await dav.send('MOVE', '/dav/home/alice/Photos/2024', { headers: { Destination: '/dav/home/alice/Photos/2023' } });
    assert.equal(move.status, 403, move.text);
    // Overwriting the folder would put it in the trash with everything in it.
    const over = await dav.send('MOVE', '/dav/home/alice/Photos/top.jpg', { headers: { Destination: '/dav/home/alice/Photos/2024', Overwrite: 'T' } });
    assert.equal(over.status, 403, over.text);
    assert.match(over.text, /may not delete home:\/home\/alice\/Photos\/2024\/private/);
    assert.ok(exists('/home/alice/Photos/2024/private/secret.jpg') && exists('/home/alice/Photos/top.jpg'));
    assert.equal(exists('/home/alice/Photos/2023'), false);
    assert.deepEqual(meta.trashList().filter((e) => e.path.startsWith('/home/alice/Photos/')), []);
    assert.equal((await dav.send('DELETE', '/dav/home/alice/Photos/top.jpg')).status, 204);
  });

  it('the owner, whose grant covers the whole home, copies, moves and deletes whole folders', async () => {
    const copy = await dav.send('COPY', '/dav/home/alice/Photos/2024', { headers: { Destination: '/dav/home/alice/Photos/copy' } });
    assert.equal(copy.status, 201, copy.text);
    assert.ok(exists('/home/alice/Photos/copy/private/secret.jpg'));
    assert.equal((await dav.send('MOVE', '/dav/home/alice/Photos/copy', { headers: { Destination: '/dav/home/alice/Photos/2024', Overwrite: 'T' } })).status, 204);
    assert.equal((await dav.send('DELETE', '/dav/home/alice/Photos/2024')).status, 204);
    assert.equal(exists('/home/alice/Photos/2024'), false);
  });

  it('shows a user who may read only their home and /public the folders on the way there, listing only what leads on', async () => {
    for (const d of ['/public', '/home/bob', '/secret']) if (!exists(d)) meta.mkdir(d, 'alice');
    store('/readme.txt', Buffer.from('root file'));
    store('/home/bob/b.txt', Buffer.from('bob'));
    const listed = async (path: string) => {
      const r = await dav.send('PROPFIND', path, { headers: { Depth: '1' } });
      assert.equal(r.status, 207, `${path}: ${r.text}`);
      return [...multistatus(r.text).keys()].sort();
    };
    assert.deepEqual(await listed('/dav/'), ['/dav/', '/dav/home/', '/dav/public/']);
    assert.deepEqual(await listed('/dav/home/'), ['/dav/home/', '/dav/home/alice/']);
    assert.ok((await listed('/dav/home/alice/')).includes('/dav/home/alice/Photos/'), 'her own home in full');
    assert.equal((await dav.send('PROPFIND', '/dav/home/bob/', { headers: { Depth: '0' } })).status, 403);
    assert.equal((await dav.send('PROPFIND', '/dav/readme.txt', { headers: { Depth: '0' } })).status, 403, 'a file is never on the way');
    assert.equal((await dav.send('GET', '/dav/readme.txt')).status, 403);
    assert.equal((await dav.send('PUT', '/dav/new.txt', { body: 'x' })).status, 403, 'seeing the root gives no right to write there');
  });

  it('answers 507 when the disks cannot take the copies a write needs, and creates nothing', async () => {
    // The disk record is the one object both the zone view and the disk set hold: drained in place, as a record update
    // would make it.
    const record = t.zone().disks[0]!.record as { state: string };
    record.state = 'draining';
    // Placement keeps what it knows of the disks for a second (ChunkIO.diskInfos).
    await new Promise((r) => setTimeout(r, 1100));
    try {
      const put = await dav.send('PUT', '/dav/home/alice/Photos/full.bin', { body: Buffer.alloc(1 << 20, 7) });
      assert.equal(put.status, 507, put.text);
      assert.match(put.text, /not enough healthy disks/);
      assert.equal(exists('/home/alice/Photos/full.bin'), false);
    } finally {
      record.state = 'active';
    }
    await new Promise((r) => setTimeout(r, 1100));
    assert.equal((await dav.send('PUT', '/dav/home/alice/Photos/full.bin', { body: 'fits' })).status, 201);
  });

  it('PROPPATCH past the dead properties one entry may hold answers 507 for every property and stores none', async () => {
    const big = 'x'.repeat(40 * 1024);
    const tooBig = await dav.send('PROPPATCH', '/dav/home/alice/Photos/top.jpg', { body: proppatch(`<a:one xmlns:a="urn:a">${big}</a:one><a:two xmlns:a="urn:a">${big}</a:two>`) });
    assert.equal(tooBig.status, 207, tooBig.text);
    const refused = multistatus(tooBig.text).get('/dav/home/alice/Photos/top.jpg')!;
    assert.equal(refused.get('{urn:a}one')?.status, 507);
    assert.equal(refused.get('{urn:a}two')?.status, 507);
    const many = Array.from({ length: 200 }, (_, i) => `<a:p${i} xmlns:a="urn:a">${i}</a:p${i}>`).join('');
    const tooMany = await dav.send('PROPPATCH', '/dav/home/alice/Photos/top.jpg', { body: proppatch(many) });
    assert.equal(multistatus(tooMany.text).get('/dav/home/alice/Photos/top.jpg')!.get('{urn:a}p0')?.status, 507);
    assert.deepEqual(meta.props('/home/alice/Photos/top.jpg'), {});
    // What Windows stores on every file it writes.
    const win = ['Win32CreationTime', 'Win32LastAccessTime', 'Win32LastModifiedTime']
      .map((n) => `<z:${n} xmlns:z="urn:schemas-microsoft-com:">Thu, 01 Jan 2026 00:00:00 GMT</z:${n}>`)
      .join('') + '<z:Win32FileAttributes xmlns:z="urn:schemas-microsoft-com:">00000020</z:Win32FileAttributes>';
    const ok = await dav.send('PROPPATCH', '/dav/home/alice/Photos/top.jpg', { body: proppatch(win) });
    assert.equal(multistatus(ok.text).get('/dav/home/alice/Photos/top.jpg')!.get('{urn:schemas-microsoft-com:}Win32FileAttributes')?.status, 200);
  });
});
