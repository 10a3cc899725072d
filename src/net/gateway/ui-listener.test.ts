// The gateway's LAN listener for the system UI: the built files as it serves them, and the gate in front of the
// kRPC router (what reaches it, with which headers, and what is refused), against a real HTTP server.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { connect, type AddressInfo } from 'node:net';
import { once } from 'node:events';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync, brotliCompressSync } from 'node:zlib';
import { pino } from 'pino';
import { request } from 'node:http';
import { UPLOAD_PART_MAX_BYTES, type UiListener, startUiListener } from './ui-listener.ts';
import { NONCE_PLACEHOLDER, acceptsEncoding, type UiBuild } from '../../lib/ui-files.ts';

const log = pino({ level: 'silent' });
const ASSET = 'console.log("app");'.repeat(100);

function writeBuild(dir: string, id: string): void {
  mkdirSync(join(dir, 'assets'), { recursive: true });
  writeFileSync(join(dir, 'index.html'), `<meta name="csp-nonce" content="${NONCE_PLACEHOLDER}"><script type="module" src="/assets/app-${id}.js"></script>`);
  writeFileSync(join(dir, `assets/app-${id}.js`), ASSET);
  writeFileSync(join(dir, `assets/app-${id}.js.br`), brotliCompressSync(ASSET));
  writeFileSync(join(dir, `assets/app-${id}.js.gz`), gzipSync(ASSET));
  writeFileSync(join(dir, 'sw.js'), 'self.x=1;');
  writeFileSync(join(dir, 'manifest.webmanifest'), '{}');
  const build: UiBuild = {
    id,
    built_at: Date.now(),
    files: {
      '/index.html': { encodings: [] },
      [`/assets/app-${id}.js`]: { encodings: ['br', 'gzip'] },
      '/sw.js': { encodings: [] },
      '/manifest.webmanifest': { encodings: [] },
    },
  };
  writeFileSync(join(dir, 'build.json'), JSON.stringify(build));
}

interface Routed {
  path: string;
  method: string;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

describe('system UI listener', () => {
  let dir: string;
  let ui: UiListener;
  let base: string;
  const routed: Routed[] = [];

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'bk-ui-'));
    writeBuild(dir, 'aaaaaaaa11111111');
    writeFileSync(join(dir, 'secret.txt'), 'on disk, not in the build');
    ui = startUiListener({
      host: '127.0.0.1',
      port: 0,
      dir,
      log,
      route: (req, res, url, body) => {
        const answer = (text: string) => {
          routed.push({ path: url.pathname + url.search, method: req.method ?? '', headers: { ...req.headers }, body: text });
          res.writeHead(200, { 'content-type': 'application/json' });
          res.end(JSON.stringify({ result: { ok: true }, sys: [1, 't'] }));
        };
        if (body) return answer(body.toString('utf8'));
        // A dfs file request: the body is the router's to stream on.
        const parts: Buffer[] = [];
        req.on('data', (c: Buffer) => parts.push(c));
        req.on('end', () => answer(Buffer.concat(parts).toString('utf8')));
      },
    });
    await ui.listening;
    base = `http://127.0.0.1:${(ui.server.address() as AddressInfo).port}`;
  });
  after(async () => {
    await ui.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('answers index.html with a fresh nonce in its CSP and its markup, and client routes with the app', async () => {
    const a = await fetch(`${base}/`);
    const b = await fetch(`${base}/devices/vm`);
    for (const r of [a, b]) {
      assert.equal(r.status, 200);
      assert.equal(r.headers.get('content-type'), 'text/html; charset=utf-8');
      assert.equal(r.headers.get('cache-control'), 'no-cache');
      const nonce = /'nonce-([^']+)'/.exec(r.headers.get('content-security-policy') ?? '')?.[1];
      assert.ok(nonce);
      assert.ok((await r.text()).includes(`content="${nonce}"`));
    }
    assert.notEqual(a.headers.get('content-security-policy'), b.headers.get('content-security-policy'));
    assert.equal(a.headers.get('x-content-type-options'), 'nosniff');
    assert.equal(a.headers.get('x-frame-options'), 'DENY');
    assert.equal(a.headers.get('referrer-policy'), 'no-referrer');
  });

  it('serves hashed assets for good, in the encoding the client takes, and the rest revalidated', async () => {
    const path = '/assets/app-aaaaaaaa11111111.js';
    for (const [accept, enc] of [['gzip, deflate, br', 'br'], ['gzip', 'gzip'], ['br;q=0, gzip', 'gzip'], ['identity', null]] as const) {
      const r = await fetch(`${base}${path}`, { headers: { 'accept-encoding': accept } });
      assert.equal(r.status, 200);
      assert.equal(r.headers.get('content-encoding'), enc, accept);
      assert.equal(r.headers.get('content-type'), 'text/javascript; charset=utf-8');
      assert.equal(r.headers.get('cache-control'), 'public, max-age=31536000, immutable');
      assert.equal(r.headers.get('vary'), 'accept-encoding');
      assert.equal(await r.text(), ASSET, 'fetch decodes what it was sent');
    }
    const sw = await fetch(`${base}/sw.js`);
    assert.equal(sw.headers.get('cache-control'), 'no-cache');
    const etag = sw.headers.get('etag')!;
    assert.equal((await fetch(`${base}/sw.js`, { headers: { 'if-none-match': etag } })).status, 304);
    const head = await fetch(`${base}/manifest.webmanifest`, { method: 'HEAD' });
    assert.equal(head.headers.get('content-type'), 'application/manifest+json');
    assert.equal(head.headers.get('content-length'), '2');
    assert.equal(await head.text(), '');
  });

  it('serves nothing the build does not list', async () => {
    for (const path of ['/secret.txt', '/build.json', '/assets/app-bbbbbbbb.js', '/assets/../secret.txt', '/%2e%2e/etc/passwd.txt']) {
      assert.equal((await fetch(`${base}${path}`)).status, 404, path);
    }
    assert.equal((await fetch(`${base}/`, { method: 'DELETE' })).status, 400);
  });

  it('follows a rebuild, and says plainly when there is no build', async () => {
    writeBuild(dir, 'cccccccc22222222');
    assert.match(await (await fetch(`${base}/`)).text(), /app-cccccccc22222222\.js/);
    assert.equal((await fetch(`${base}/assets/app-cccccccc22222222.js`)).status, 200);
    rmSync(join(dir, 'build.json'));
    const r = await fetch(`${base}/`);
    assert.equal(r.status, 503);
    assert.match(await r.text(), /not built/);
    writeBuild(dir, 'aaaaaaaa11111111');
  });

  const call = (path: string, body: unknown, headers: Record<string, string> = {}) =>
    fetch(`${base}${path}`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: typeof body === 'string' ? body : JSON.stringify(body) });
  const errorCode = async (r: Response) => ((await r.json()) as { error?: { code?: string } }).error?.code;

  it('hands kRPC calls to the router with the body intact and gateway-only headers removed', async () => {
    routed.length = 0;
    const body = { method: 'login_password', params: { username: 'alice' }, sys: [1, null, 'trace1'] };
    const r = await call('/kapi/verify-hub', body, { 'x-forwarded-for': '10.9.9.9', 'x-buckyos-node': 'other', 'x-buckyos-client': '10.8.8.8', 'x-forwarded-host': 'evil' });
    assert.equal(r.status, 200);
    assert.equal(routed.length, 1);
    const [got] = routed;
    assert.equal(got!.path, '/kapi/verify-hub');
    assert.deepEqual(JSON.parse(got!.body), body);
    assert.equal(got!.headers['content-length'], String(Buffer.byteLength(JSON.stringify(body))));
    for (const h of ['x-forwarded-for', 'x-buckyos-node', 'x-buckyos-client', 'x-forwarded-host']) assert.equal(got!.headers[h], undefined, h);
  });

  it('lets only the login methods through without a token', async () => {
    routed.length = 0;
    for (const m of ['login_nonce', 'login_password', 'login_jwt', 'refresh']) assert.equal((await call('/kapi/verify-hub', { method: m, sys: [1] })).status, 200, m);
    assert.equal((await call('/kapi/system-config', { method: 'get', sys: [1, 'token'] })).status, 200);
    assert.equal((await call('/kapi/system-config', { method: 'get', sys: [1] }, { authorization: 'Bearer token' })).status, 200);
    assert.equal(routed.length, 6);
    for (const [svc, m] of [['verify-hub', 'device_enrol'], ['verify-hub', 'whoami'], ['system-config', 'get'], ['dfs', 'status']]) {
      const r = await call(`/kapi/${svc}`, { method: m, sys: [1, ''] });
      assert.equal(r.status, 401, `${svc}.${m}`);
      assert.equal(await errorCode(r), 'UNAUTHENTICATED');
    }
    assert.equal(routed.length, 6, 'nothing refused reached the router');
    // A method that answers without a token but is for the tunnel port only: refused here whatever token comes along.
    for (const headers of [{}, { authorization: 'Bearer token' }] as Record<string, string>[]) {
      const r = await call('/kapi/verify-hub', { method: 'device_enrol', sys: [1, 'token'] }, headers);
      assert.equal(r.status, 403);
      assert.match(JSON.stringify(await r.json()), /verify-hub\.device_enrol is not served on this listener/);
    }
    assert.equal(routed.length, 6);
  });

  it('refuses anything but a same-origin JSON kRPC POST to /kapi/<service>', async () => {
    routed.length = 0;
    const ok = { method: 'login_nonce', sys: [1] };
    const cases: [string, () => Promise<Response>, number, string][] = [
      ['text/plain (a cross-site form could send it)', () => call('/kapi/verify-hub', ok, { 'content-type': 'text/plain' }), 400, 'BAD_REQUEST'],
      ['another origin', () => call('/kapi/verify-hub', ok, { origin: 'http://evil.example' }), 403, 'PERMISSION_DENIED'],
      ['GET', () => fetch(`${base}/kapi/verify-hub`), 400, 'BAD_REQUEST'],
      ['a sub-path (health, file API)', () => call('/kapi/dfs/files/home', ok), 404, 'NOT_FOUND'],
      ['a query', () => call('/kapi/verify-hub?x=1', ok), 404, 'NOT_FOUND'],
      ['bad JSON', () => call('/kapi/verify-hub', '{'), 400, 'BAD_REQUEST'],
      ['no method', () => call('/kapi/verify-hub', { sys: [1] }), 400, 'BAD_REQUEST'],
      ['over 1 MiB', () => call('/kapi/verify-hub', { method: 'login_nonce', pad: 'x'.repeat(1024 * 1024) }), 413, 'PAYLOAD_TOO_LARGE'],
    ];
    for (const [what, send, status, code] of cases) {
      const r = await send();
      assert.equal(r.status, status, what);
      assert.equal(await errorCode(r), code, what);
    }
    assert.equal((await call('/kapi/verify-hub', ok, { origin: base })).status, 200, 'its own origin');
    assert.equal(routed.length, 1);
  });

  it('passes the files page\'s dfs requests on with a token, streamed, without gateway-only headers', async () => {
    routed.length = 0;
    const auth = { authorization: 'Bearer session-token' };
    const file = '/kapi/dfs/files/home/home/alice/photo%20one.jpg';
    const get = await fetch(`${base}${file}`, { headers: { ...auth, range: 'bytes=0-99', 'x-forwarded-for': '10.9.9.9', 'x-buckyos-node': 'other', 'x-forwarded-prefix': '/dav' } });
    assert.equal(get.status, 200);
    assert.equal((await fetch(`${base}${file}?version=12`, { method: 'HEAD', headers: auth })).status, 200);
    const part = 'x'.repeat(64 * 1024);
    const put = await fetch(`${base}/kapi/dfs/uploads/home.${'A'.repeat(22)}?offset=0`, { method: 'PUT', headers: { ...auth, 'content-type': 'application/octet-stream' }, body: part });
    assert.equal(put.status, 200);
    assert.deepEqual(routed.map((r) => [r.method, r.path]), [
      ['GET', file],
      ['HEAD', `${file}?version=12`],
      ['PUT', `/kapi/dfs/uploads/home.${'A'.repeat(22)}?offset=0`],
    ]);
    const [g, , p] = routed;
    assert.equal(g!.headers.authorization, 'Bearer session-token');
    assert.equal(g!.headers.range, 'bytes=0-99');
    for (const h of ['x-forwarded-for', 'x-buckyos-node', 'x-forwarded-prefix']) assert.equal(g!.headers[h], undefined, h);
    assert.equal(p!.body, part, 'the part reaches the router whole');
    // The answers carry the listener's security headers, like everything it sends.
    assert.equal(get.headers.get('x-content-type-options'), 'nosniff');
    assert.match(get.headers.get('content-security-policy') ?? '', /default-src 'self'/);
  });

  it('refuses dfs requests without a token, from elsewhere, with other methods, queries or paths, or oversized', async () => {
    routed.length = 0;
    const auth = { authorization: 'Bearer session-token' };
    const file = `${base}/kapi/dfs/files/home/home/alice/a.txt`;
    const upload = `${base}/kapi/dfs/uploads/home.${'B'.repeat(22)}`;
    const cases: [string, () => Promise<Response>, number, string][] = [
      ['no token', () => fetch(file), 401, 'UNAUTHENTICATED'],
      ['a token in the URL', () => fetch(`${file}?token=session-token`), 404, 'NOT_FOUND'],
      ['Basic credentials', () => fetch(file, { headers: { authorization: 'Basic YWxpY2U6cHc=' } }), 401, 'UNAUTHENTICATED'],
      ['another origin', () => fetch(file, { headers: { ...auth, origin: 'http://evil.example' } }), 403, 'PERMISSION_DENIED'],
      ['a bad version', () => fetch(`${file}?version=1;2`, { headers: auth }), 404, 'NOT_FOUND'],
      ['a whole-file PUT', () => fetch(file, { method: 'PUT', headers: auth, body: 'x' }), 404, 'NOT_FOUND'],
      ['DELETE', () => fetch(file, { method: 'DELETE', headers: auth }), 404, 'NOT_FOUND'],
      ['WebDAV', () => fetch(`${base}/kapi/dfs/dav/home/home/alice/a.txt`, { headers: auth }), 404, 'NOT_FOUND'],
      ['content by id', () => fetch(`${base}/kapi/dfs/ndn/sha256:${'0'.repeat(64)}`, { headers: auth }), 404, 'NOT_FOUND'],
      ['chunks between storage nodes', () => fetch(`${base}/kapi/dfs/chunks/any/sha256:${'0'.repeat(64)}`, { headers: auth }), 404, 'NOT_FOUND'],
      ['a volume root', () => fetch(`${base}/kapi/dfs/files/home`, { headers: auth }), 404, 'NOT_FOUND'],
      ['GET of an upload', () => fetch(upload, { headers: auth }), 404, 'NOT_FOUND'],
      ['a part without a token', () => fetch(upload, { method: 'PUT', body: 'x' }), 401, 'UNAUTHENTICATED'],
      ['a part with another query', () => fetch(`${upload}?offset=0&x=1`, { method: 'PUT', headers: auth, body: 'x' }), 404, 'NOT_FOUND'],
      ['a part of an id without its volume', () => fetch(`${base}/kapi/dfs/uploads/${'B'.repeat(22)}`, { method: 'PUT', headers: auth, body: 'x' }), 404, 'NOT_FOUND'],
      ['a part of an id naming no volume name', () => fetch(`${base}/kapi/dfs/uploads/Home.${'B'.repeat(22)}`, { method: 'PUT', headers: auth, body: 'x' }), 404, 'NOT_FOUND'],
    ];
    for (const [what, send, status, code] of cases) {
      const r = await send();
      assert.equal(r.status, status, what);
      assert.equal(await errorCode(r), code, what);
    }
    // Bodies: a part must declare its length and stay within the limit, which is checked before a byte is read;
    // a download carries none.
    const raw = (method: string, url: string, headers: Record<string, string | number>, body?: string) =>
      new Promise<{ status: number; code: string | undefined }>((resolve, reject) => {
        const r = request(url, { method, headers: { ...auth, ...headers } }, (res) => {
          const parts: Buffer[] = [];
          res.on('data', (c: Buffer) => parts.push(c));
          res.on('end', () => {
            resolve({ status: res.statusCode ?? 0, code: (JSON.parse(Buffer.concat(parts).toString('utf8')) as { error?: { code?: string } }).error?.code });
            r.destroy();
          });
        });
        r.on('error', reject);
        if (body !== undefined) r.write(body);
        // An oversized part is answered from its headers alone: the body is never sent.
        if (!('content-length' in headers) || Number(headers['content-length']) === (body ?? '').length) r.end();
        else r.flushHeaders();
      });
    assert.deepEqual(await raw('PUT', upload, { 'content-length': UPLOAD_PART_MAX_BYTES + 1 }), { status: 413, code: 'PAYLOAD_TOO_LARGE' });
    assert.deepEqual(await raw('PUT', upload, { 'transfer-encoding': 'chunked' }, 'abc'), { status: 400, code: 'BAD_REQUEST' });
    assert.deepEqual(await raw('GET', file, { 'content-length': 3 }, 'abc'), { status: 400, code: 'BAD_REQUEST' });
    assert.equal(routed.length, 0, 'nothing refused reached the router');
  });

  it('shares a bounded budget among bodies read before a token is known: a stalled one holds only its share', async () => {
    const small = startUiListener({
      host: '127.0.0.1', port: 0, dir, log, unprovenBodyBudget: 100_000,
      route: (_req, res) => {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end('{"result":{}}');
      },
    });
    await small.listening;
    const port = (small.server.address() as AddressInfo).port;
    const post = (length: number, headers: Record<string, string> = {}) =>
      fetch(`http://127.0.0.1:${port}/kapi/system-config`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...headers },
        body: JSON.stringify({ method: 'get', sys: [1, 't'], pad: 'x'.repeat(length) }),
      });
    const stalled = connect(port, '127.0.0.1');
    try {
      await once(stalled, 'connect');
      // 80,000 bytes announced, a few sent: the body is being read, holding its share.
      stalled.write('POST /kapi/system-config HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 80000\r\n\r\n{"method"');
      await new Promise((r) => setTimeout(r, 100));
      const refused = await post(50_000);
      assert.equal(refused.status, 503);
      assert.equal(refused.headers.get('retry-after'), '5');
      assert.equal(await errorCode(refused), 'UNAVAILABLE');
      assert.equal((await post(50_000, { authorization: 'Bearer t' })).status, 200, 'a call with its token in a header is not held back');
      assert.equal((await post(1_000)).status, 200, 'small calls still fit');
      stalled.destroy();
      await new Promise((r) => setTimeout(r, 100));
      assert.equal((await post(50_000)).status, 200, 'the stalled body gave its share back');
      assert.equal(small.server.maxConnections, 512);
    } finally {
      stalled.destroy();
      await small.close();
    }
  });

  it('keeps trying to bind a port that is taken, and binds once it is free', async () => {
    const port = (ui.server.address() as AddressInfo).port;
    const second = startUiListener({ host: '127.0.0.1', port, dir, log, route: () => {}, rebindMs: 50 });
    try {
      await new Promise((r) => setTimeout(r, 120));
      assert.equal(second.server.listening, false);
      await ui.close();
      await second.listening;
      assert.equal((await fetch(`${base}/sw.js`)).status, 200);
    } finally {
      await second.close();
      ui = startUiListener({ host: '127.0.0.1', port: 0, dir, log, route: () => {} });
    }
  });
});

describe('acceptsEncoding', () => {
  it('takes listed encodings unless q=0', () => {
    assert.equal(acceptsEncoding('gzip, br', 'br'), true);
    assert.equal(acceptsEncoding('gzip;q=1.0, BR;q=0.5', 'br'), true);
    assert.equal(acceptsEncoding('br;q=0', 'br'), false);
    assert.equal(acceptsEncoding(undefined, 'gzip'), false);
    assert.equal(acceptsEncoding('x-gzip', 'gzip'), false);
  });
});
