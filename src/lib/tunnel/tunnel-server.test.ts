import { describe, it, before, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, generateKeyPairSync, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { connect as h2connect, constants, type Http2ServerRequest, type Http2ServerResponse, type ServerHttp2Session } from 'node:http2';
import { connect as tcpConnect } from 'node:net';
import { Readable } from 'node:stream';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { privateKeyToPem } from '../identity/keys.ts';
import { selfSignedCert } from '../identity/tls-certs.ts';
import { TunnelClient, type TunnelClientOptions, type TunnelPeer } from './tunnel-client.ts';
import { type TunnelServer, type TunnelServerOptions, startTunnelServer } from './tunnel-server.ts';
import { TunnelError } from './common.ts';
import { type Device, device, rejectsWith, text } from './testing.suite.ts';

describe('tunnel server', () => {
  let a: Device; // the usual client
  let b: Device; // the server
  let c: Device; // a device the server does not know
  const servers: TunnelServer[] = [];
  const clients: TunnelClient[] = [];

  before(async () => {
    [a, b, c] = await Promise.all([device('a'), device('b'), device('c')]);
  });

  afterEach(async () => {
    await Promise.all(clients.splice(0).map((cl) => cl.close()));
    await Promise.all(servers.splice(0).map((s) => s.close()));
  });

  /** A tunnel server for device b on a free port that records who reached its handler and what it refused. */
  async function serve(opts: Partial<TunnelServerOptions> & { trusted?: Map<string, string> } = {}) {
    const trusted = opts.trusted ?? new Map([[a.key.publicKeyB64, 'a']]);
    const handled: (string | null)[] = [];
    const errors: string[] = [];
    const server = await startTunnelServer({
      host: '127.0.0.1',
      port: 0,
      key: b.key,
      certPem: b.certPem,
      authorizePeer: (k) => trusted.get(k) ?? null,
      handler: (req, res, peer) => {
        handled.push(peer);
        res.end(JSON.stringify({ peer, path: req.url }));
      },
      onError: (e) => errors.push(e.message),
      ...opts,
    });
    servers.push(server);
    const peer: TunnelPeer = { name: 'b', key: b.key.publicKeyB64, address: `127.0.0.1:${server.port}` };
    return { server, peer, handled, errors, trusted };
  }

  function client(d: Device | null, opts: TunnelClientOptions = {}): TunnelClient {
    const cl = new TunnelClient({ ...(d ? { key: d.key, certPem: d.certPem } : {}), ...opts });
    clients.push(cl);
    return cl;
  }

  it('authenticates both ends by device key over TLS 1.3 and HTTP/2', async () => {
    const seen: string[] = [];
    const { peer } = await serve({
      authorizePeer: (k) => {
        seen.push(k);
        return k === a.key.publicKeyB64 ? 'a' : null;
      },
      handler: (req, res, who) => {
        const socket = req.socket as unknown as TLSSocket;
        res.end(JSON.stringify({ who, version: req.httpVersion, tls: socket.getProtocol(), alpn: socket.alpnProtocol }));
      },
    });
    const cl = client(a);
    const res = await cl.request(peer, { method: 'GET', path: '/hello' });
    assert.equal(res.status, 200);
    assert.deepEqual(JSON.parse(await text(res)), { who: 'a', version: '2.0', tls: 'TLSv1.3', alpn: 'h2' });
    assert.deepEqual(seen, [a.key.publicKeyB64]);
    assert.equal(cl.state('b'), 'connected');
  });

  it('refuses a client whose key it does not authorise, before any request reaches the handler', async () => {
    const { peer, handled, errors } = await serve();
    const stranger = client(c);
    await rejectsWith(stranger.request(peer, { method: 'GET', path: '/' }), 'REFUSED', new RegExp(`device key ${c.key.publicKeyB64} is not authorised in this zone`));
    assert.deepEqual(handled, []);
    assert.ok(errors.some((m) => m.includes(`device key ${c.key.publicKeyB64} is not authorised`)), errors.join('; '));
    assert.equal(stranger.state('b'), 'backoff');
  });

  it('is refused by a client that expected another key for that device, which then sends nothing', async () => {
    const { peer, handled } = await serve();
    const cl = client(a);
    const wrong = { ...peer, key: c.key.publicKeyB64 };
    await rejectsWith(
      cl.request(wrong, { method: 'POST', path: '/secret', body: Buffer.from('token') }),
      'UNTRUSTED_PEER',
      new RegExp(`presented key ${b.key.publicKeyB64}, not the key ${c.key.publicKeyB64} expected for b`),
    );
    assert.deepEqual(handled, []);
  });

  it('refuses clients without a certificate unless allowAnonymous, which hands them over as peer null', async () => {
    const strict = await serve();
    await rejectsWith(client(null).request(strict.peer, { method: 'GET', path: '/' }), 'REFUSED', /presented no device certificate/);
    assert.deepEqual(strict.handled, []);

    const open = await serve({ allowAnonymous: true });
    assert.deepEqual(JSON.parse(await text(await client(null).request(open.peer, { method: 'GET', path: '/enrol' }))), { peer: null, path: '/enrol' });
    assert.deepEqual(JSON.parse(await text(await client(a).request(open.peer, { method: 'GET', path: '/x' }))), { peer: 'a', path: '/x' });
    // A key that is presented must still be authorised: anonymity is for devices that have no key in the zone yet.
    await rejectsWith(client(c).request(open.peer, { method: 'GET', path: '/' }), 'REFUSED', /is not authorised/);
    assert.deepEqual(open.handled, [null, 'a']);
  });

  it('bounds clients without a certificate: sessions from one address and in all, streams per session, and their lifetime', async () => {
    const hanging: Http2ServerResponse[] = [];
    const { server } = await serve({
      allowAnonymous: true,
      anonymousLimits: { maxSessions: 3, maxPerAddress: 2, maxStreams: 1, lifetimeMs: 1500 },
      handler: (req, res) => {
        if (req.url === '/hang') hanging.push(res);
        else res.end('ok');
      },
    });
    const sessions: ReturnType<typeof h2connect>[] = [];
    const anonymous = (from: string) => {
      const session = h2connect(`https://127.0.0.1:${server.port}`, {
        createConnection: () => tlsConnect({ socket: tcpConnect({ host: '127.0.0.1', port: server.port, localAddress: from }), ALPNProtocols: ['h2'], rejectUnauthorized: false }),
      });
      session.on('error', () => {});
      sessions.push(session);
      return session;
    };
    const get = (session: ReturnType<typeof h2connect>, path: string) =>
      new Promise<number>((resolve, reject) => {
        const st = session.request({ ':path': path });
        st.on('response', (h) => resolve(Number(h[':status'])));
        st.on('error', reject);
        st.resume();
      });
    // Only the GOAWAY counts: the session's error that may follow it is the refusal's echo.
    const refusal = (session: ReturnType<typeof h2connect>) => new Promise<string>((resolve) => session.once('goaway', (_code, _last, data?: Buffer) => resolve(String(data))));
    try {
      const first = anonymous('127.0.0.1');
      assert.equal(await get(first, '/'), 200);
      assert.equal(await get(anonymous('127.0.0.1'), '/'), 200);
      assert.match(await refusal(anonymous('127.0.0.1')), /too many clients without a certificate from 127\.0\.0\.1 \(2\)/);
      assert.equal(await get(anonymous('127.0.0.2'), '/'), 200);
      assert.match(await refusal(anonymous('127.0.0.3')), /too many clients without a certificate \(3\)/);

      // One stream at a time: the client holds a second request back until the first ends.
      if (first.remoteSettings.maxConcurrentStreams !== 1) await once(first, 'remoteSettings');
      void get(first, '/hang').catch(() => undefined);
      void get(first, '/hang').catch(() => undefined);
      await new Promise((r) => setTimeout(r, 300));
      assert.equal(hanging.length, 1);

      assert.match(await refusal(first), /a session without a certificate lasts at most 1500 ms/);
    } finally {
      for (const session of sessions) session.destroy();
    }
  });

  it('refuses a client certificate whose key is not Ed25519, saying so in the GOAWAY', async () => {
    const { server, handled } = await serve();
    const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const cert = await selfSignedCert({ key: { ...ec, publicKeyB64: '' }, commonName: 'ec-device' });
    const session = h2connect(`https://127.0.0.1:${server.port}`, { key: privateKeyToPem(ec.privateKey), cert, rejectUnauthorized: false });
    session.on('error', () => {});
    const [code, , data] = (await once(session, 'goaway')) as [number, number, Buffer];
    assert.equal(code, constants.NGHTTP2_INADEQUATE_SECURITY);
    assert.match(data.toString(), /the client certificate is not a device certificate: the certificate's key is ec, not Ed25519/);
    session.destroy();
    assert.deepEqual(handled, []);
  });

  it('multiplexes 100 concurrent requests on one session', async () => {
    const sessions = new Set<ServerHttp2Session>();
    const waiting: (() => void)[] = [];
    const { peer } = await serve({
      // Every response waits until all 100 requests are open at once.
      handler: (req, res) => {
        sessions.add(req.stream.session as ServerHttp2Session);
        waiting.push(() => res.end(req.url));
        if (waiting.length === 100) for (const release of waiting) release();
      },
    });
    const cl = client(a);
    const bodies = await Promise.all(Array.from({ length: 100 }, async (_, i) => text(await cl.request(peer, { method: 'GET', path: `/r/${i}` }))));
    assert.deepEqual(bodies, Array.from({ length: 100 }, (_, i) => `/r/${i}`));
    assert.equal(sessions.size, 1);
  });

  it('carries a 64 MiB body each way intact, at once, on one stream', async () => {
    const size = 64 * 1024 * 1024;
    let serverHash = '';
    const { peer } = await serve({
      handler: (req, res) => {
        const hash = createHash('sha256');
        req.on('data', (d: Buffer) => hash.update(d));
        req.on('end', () => (serverHash = hash.digest('hex')));
        // Echoed as it arrives: both directions are in flight together and both depend on flow control.
        req.pipe(res);
      },
    });
    const data = randomBytes(size);
    const sent = createHash('sha256').update(data).digest('hex');
    // Uneven pieces, so frame and record boundaries fall everywhere.
    const pieces: Buffer[] = [];
    for (let at = 0, n = 1; at < size; at += n, n = (n * 7919 + 13) % 1_500_000 || 1) pieces.push(data.subarray(at, Math.min(size, at + n)));
    const res = await client(a).request(peer, { method: 'POST', path: '/echo', body: Readable.from(pieces) });
    const hash = createHash('sha256');
    let received = 0;
    for await (const chunk of res.body) {
      hash.update(chunk as Buffer);
      received += (chunk as Buffer).length;
    }
    assert.equal(received, size);
    assert.equal(hash.digest('hex'), sent);
    assert.equal(serverHash, sent);
  });

  it('keeps small requests flowing while a large upload on the same session is stalled', async () => {
    let release!: () => void;
    const released = new Promise<void>((r) => (release = r));
    const { peer } = await serve({
      handler: (req: Http2ServerRequest, res: Http2ServerResponse) => {
        if (req.url === '/ping') {
          res.end('pong');
          return;
        }
        // Not read until released: the upload fills its stream window and waits.
        req.pause();
        void released.then(() => {
          let n = 0;
          req.on('data', (d: Buffer) => (n += d.length));
          req.on('end', () => res.end(String(n)));
          req.resume();
        });
      },
    });
    const cl = client(a);
    const upload = cl.request(peer, { method: 'POST', path: '/upload', body: Buffer.alloc(48 * 1024 * 1024, 1) });
    const pongs = await Promise.all(Array.from({ length: 20 }, async () => text(await cl.request(peer, { method: 'GET', path: '/ping' }))));
    assert.deepEqual(pongs, Array(20).fill('pong'));
    release();
    assert.equal(await text(await upload), String(48 * 1024 * 1024));
  });

  it('revalidate() cuts a removed device, whose next request is refused, and leaves the others alone', async () => {
    const d = await device('d');
    const hanging: string[] = [];
    const { server, peer, trusted } = await serve({
      trusted: new Map([
        [a.key.publicKeyB64, 'a'],
        [d.key.publicKeyB64, 'd'],
      ]),
      handler: (req, res, who) => {
        if (req.url === '/hang') hanging.push(who ?? 'anonymous');
        else res.end(who ?? 'anonymous');
      },
    });
    const backoffs: TunnelError[] = [];
    const ca = client(a, { onBackoff: (_p, _d, cause) => backoffs.push(cause) });
    let dConnects = 0;
    const cd = client(d, { onConnect: () => dConnects++ });
    assert.equal(await text(await ca.request(peer, { method: 'GET', path: '/' })), 'a');
    assert.equal(await text(await cd.request(peer, { method: 'GET', path: '/' })), 'd');
    const inFlight = ca.request(peer, { method: 'GET', path: '/hang' });
    while (hanging.length === 0) await new Promise((r) => setImmediate(r));

    trusted.delete(a.key.publicKeyB64);
    server.revalidate();
    await rejectsWith(inFlight, 'REFUSED', /device key .* \(a\) is no longer authorised in this zone/);
    while (backoffs.length === 0) await new Promise((r) => setImmediate(r));
    assert.equal(backoffs[0].code, 'REFUSED');
    await rejectsWith(ca.request(peer, { method: 'GET', path: '/' }), 'REFUSED', /no longer authorised.*; next attempt in \d+ ms/);

    assert.equal(await text(await cd.request(peer, { method: 'GET', path: '/' })), 'd');
    assert.equal(dConnects, 1, 'd kept its session');
  });

  it('revalidate() keeps a renamed device connected and hands over its new name', async () => {
    const { server, peer, trusted } = await serve({ handler: (_req, res, who) => res.end(String(who)) });
    let connects = 0;
    const cl = client(a, { onConnect: () => connects++ });
    assert.equal(await text(await cl.request(peer, { method: 'GET', path: '/' })), 'a');
    trusted.set(a.key.publicKeyB64, 'a-renamed');
    server.revalidate();
    assert.equal(await text(await cl.request(peer, { method: 'GET', path: '/' })), 'a-renamed');
    assert.equal(connects, 1);
  });

  it('checks its own certificate against its key at start', async () => {
    await assert.rejects(
      startTunnelServer({ host: '127.0.0.1', port: 0, key: b.key, certPem: a.certPem, authorizePeer: () => null, handler: () => {} }),
      new RegExp(`certPem is for key ${a.key.publicKeyB64}, not this device's key ${b.key.publicKeyB64}`),
    );
  });

  it('close() finishes, cutting a request that does not end and a handshake that never starts, and leaves no sockets', async () => {
    let arrived!: () => void;
    const atServer = new Promise<void>((r) => (arrived = r));
    const { server, peer } = await serve({ handler: () => arrived() });
    const cl = client(a);
    const hung = rejectsWith(cl.request(peer, { method: 'GET', path: '/never' }), 'UNAVAILABLE', /GET \/never to b failed/);
    await atServer;
    const silent = tcpConnect(server.port, '127.0.0.1');
    await once(silent, 'connect');
    const silentClosed = once(silent, 'close');
    await server.close();
    await hung;
    await silentClosed;
    await cl.close();
    servers.splice(0);
    clients.splice(0);
    await new Promise((r) => setImmediate(r));
    const sockets = process.getActiveResourcesInfo().filter((r) => /TCP|TLS/.test(r));
    assert.deepEqual(sockets, []);
  });
});
