import { describe, it, before, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { type AddressInfo, type Socket, connect, createServer } from 'node:net';
import { createInterface } from 'node:readline';
import { constants, createSecureServer } from 'node:http2';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { privateKeyToPem } from '../identity/keys.ts';
import { TunnelClient, type TunnelClientOptions, type TunnelPeer, writePieces } from './tunnel-client.ts';
import { type TunnelServer, type TunnelServerOptions, startTunnelServer } from './tunnel-server.ts';
import { TunnelError, WRITE_PIECE, parseAddress } from './common.ts';
import { type Device, closedPort, device, rejectsWith, text } from './testing.suite.ts';

/** A TCP relay to `port` on loopback that passes at most `bytesPerSecond` each way, as a slow uplink would. */
async function slowLink(port: number, bytesPerSecond: number): Promise<{ port: number; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  const pump = (from: Socket, to: Socket) => {
    from.on('data', (chunk: Buffer) => {
      to.write(chunk);
      from.pause();
      setTimeout(() => from.resume(), (chunk.length / bytesPerSecond) * 1000);
    });
    from.on('end', () => to.end());
    from.on('close', () => to.destroy());
    from.on('error', () => to.destroy());
  };
  const relay = createServer((inbound) => {
    const outbound = connect(port, '127.0.0.1');
    for (const s of [inbound, outbound]) sockets.add(s);
    pump(inbound, outbound);
    pump(outbound, inbound);
  }).listen(0, '127.0.0.1');
  await once(relay, 'listening');
  return {
    port: (relay.address() as AddressInfo).port,
    async close() {
      for (const s of sockets) s.destroy();
      relay.close();
      await once(relay, 'close');
    },
  };
}

/** What a client saw, in order, with a way to wait for the next thing that matches. */
function recorder() {
  type Event = { type: 'connect' } | { type: 'backoff'; delay: number; cause: TunnelError };
  const events: Event[] = [];
  const waiters: (() => void)[] = [];
  const push = (e: Event) => {
    events.push(e);
    for (const w of waiters.splice(0)) w();
  };
  return {
    events,
    options: {
      onConnect: () => push({ type: 'connect' }),
      onBackoff: (_peer: string, delay: number, cause: TunnelError) => push({ type: 'backoff', delay, cause }),
    } satisfies TunnelClientOptions,
    /** Resolves once `count` events of `type` have been seen. */
    async until(type: 'connect' | 'backoff', count = 1): Promise<void> {
      while (events.filter((e) => e.type === type).length < count) await new Promise<void>((r) => waiters.push(r));
    },
    /** The first back-off at or after index `from` whose cause matches. */
    async backoff(from: number, cause: RegExp): Promise<number> {
      for (;;) {
        const i = events.findIndex((e, at) => at >= from && e.type === 'backoff' && cause.test(e.cause.message));
        if (i >= 0) return i;
        await new Promise<void>((r) => waiters.push(r));
      }
    },
  };
}

const KEYS_TS = pathToFileURL(fileURLToPath(new URL('../identity/keys.ts', import.meta.url))).href;
const INDEX_TS = pathToFileURL(fileURLToPath(new URL('./index.ts', import.meta.url))).href;

// One end of a tunnel in a child process, so a test can freeze it (SIGSTOP) as a hung or unplugged device would be:
// its kernel still holds the TCP connection, but nothing answers. Settings (keys included) come on stdin.
const CHILD = `
import { privateKeyFromPem } from ${JSON.stringify(KEYS_TS)};
import { TunnelClient, startTunnelServer } from ${JSON.stringify(INDEX_TS)};
let text = '';
for await (const chunk of process.stdin) text += chunk;
const spec = JSON.parse(text);
const key = privateKeyFromPem(spec.keyPem);
if (spec.role === 'server') {
  const server = await startTunnelServer({ host: '127.0.0.1', port: 0, key, certPem: spec.certPem,
    authorizePeer: (k) => (k === spec.peerKey ? 'parent' : null), handler: (req, res) => res.end('child') });
  console.log(server.port);
} else {
  const client = new TunnelClient({ key, certPem: spec.certPem });
  const res = await client.request(spec.peer, { method: 'GET', path: '/' });
  for await (const _ of res.body);
  console.log('connected');
}
`;

async function startChild(spec: object): Promise<{ child: ChildProcess; line: string }> {
  const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', CHILD], { stdio: ['pipe', 'pipe', 'inherit'] });
  child.stdin!.end(JSON.stringify(spec));
  const lines = createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
  const first = await lines.next();
  if (first.done) throw new Error(`the child tunnel ${JSON.stringify((spec as { role: string }).role)} exited before it was ready`);
  return { child, line: first.value as string };
}

async function kill(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, 'exit');
  // SIGKILL also ends a stopped process.
  child.kill('SIGKILL');
  await exited;
}

describe('tunnel client', () => {
  let a: Device;
  let b: Device;
  const servers: TunnelServer[] = [];
  const clients: TunnelClient[] = [];
  const children: ChildProcess[] = [];

  before(async () => {
    [a, b] = await Promise.all([device('a'), device('b')]);
  });

  afterEach(async () => {
    await Promise.all(clients.splice(0).map((cl) => cl.close()));
    await Promise.all(servers.splice(0).map((s) => s.close()));
    await Promise.all(children.splice(0).map(kill));
  });

  /** Device b's tunnel server, taking device a, answering with `handler`. */
  async function serveWith(handler: TunnelServerOptions['handler'], opts: { port?: number; pingIntervalMs?: number } = {}): Promise<{ server: TunnelServer; peer: TunnelPeer }> {
    const server = await startTunnelServer({
      host: '127.0.0.1',
      port: opts.port ?? 0,
      key: b.key,
      certPem: b.certPem,
      authorizePeer: (k) => (k === a.key.publicKeyB64 ? 'a' : null),
      handler,
      ...(opts.pingIntervalMs ? { pingIntervalMs: opts.pingIntervalMs } : {}),
    });
    servers.push(server);
    return { server, peer: { name: 'b', key: b.key.publicKeyB64, address: `127.0.0.1:${server.port}` } };
  }

  const serve = (port = 0, reply = 'ok') => serveWith((_req, res) => res.end(reply), { port });

  /** How many bytes a body held, read to its end (or its error). */
  async function byteCount(body: Readable): Promise<number> {
    let got = 0;
    await pipeline(body, new Writable({ write: (c: Buffer, _e, cb) => ((got += c.length), cb()) }));
    return got;
  }

  function client(opts: TunnelClientOptions = {}): TunnelClient {
    const cl = new TunnelClient({ key: a.key, certPem: a.certPem, ...opts });
    clients.push(cl);
    return cl;
  }

  it('backs off exponentially from minMs, capped at maxMs, retrying in the background', async () => {
    const rec = recorder();
    const cl = client({ backoff: { minMs: 10, maxMs: 40 }, ...rec.options });
    const peer = { name: 'b', key: b.key.publicKeyB64, address: `127.0.0.1:${await closedPort()}` };
    await rejectsWith(cl.request(peer, { method: 'GET', path: '/' }), 'UNAVAILABLE', /tunnel to b at 127\.0\.0\.1:\d+ failed: .*ECONNREFUSED/);
    await rec.until('backoff', 6);
    const delays = rec.events.flatMap((e) => (e.type === 'backoff' ? [e.delay] : []));
    assert.deepEqual(delays.slice(0, 6), [10, 20, 40, 40, 40, 40]);
    assert.ok(rec.events.every((e) => e.type === 'backoff' && e.cause.code === 'UNAVAILABLE'));
  });

  it('fails requests at once while backing off, saying when it tries next', async () => {
    const cl = client({ backoff: { minMs: 60_000, maxMs: 60_000 } });
    const peer = { name: 'b', key: b.key.publicKeyB64, address: `127.0.0.1:${await closedPort()}` };
    const first = await cl.request(peer, { method: 'GET', path: '/' }).catch((e: unknown) => e);
    assert.ok(first instanceof TunnelError && /ECONNREFUSED/.test(first.message), String(first));
    assert.equal(first.unsent, true, 'no session: nothing was sent, another instance may take the request');
    assert.equal(cl.state('b'), 'backoff');
    const err = await cl.request(peer, { method: 'GET', path: '/' }).catch((e: unknown) => e);
    assert.ok(err instanceof TunnelError);
    assert.equal(err.code, 'UNAVAILABLE');
    assert.equal(err.unsent, true);
    assert.match(err.message, /ECONNREFUSED [\d.:]+; next attempt in \d+ ms/);
    assert.ok(err.retryAt !== undefined && err.retryAt > Date.now(), 'retryAt is in the future');
    // close() does not wait for the pending retry.
  });

  it('reconnects after back-off when the server comes back', async () => {
    const first = await serve(0, 'first');
    const rec = recorder();
    const cl = client({ backoff: { minMs: 20, maxMs: 100 }, ...rec.options });
    assert.equal(await text(await cl.request(first.peer, { method: 'GET', path: '/' })), 'first');
    await first.server.close();
    servers.splice(0);
    // A server closing in good order (GOAWAY, then the end of the stream) leaves the link idle; the next request
    // finds the server gone and starts the back-off.
    while (cl.state('b') === 'connected') await new Promise((r) => setImmediate(r));
    assert.equal(cl.state('b'), 'idle');
    await rejectsWith(cl.request(first.peer, { method: 'GET', path: '/' }), 'UNAVAILABLE', /ECONNREFUSED/);
    await rec.until('backoff');
    assert.equal(cl.state('b'), 'backoff');
    const again = await serve(Number(parseAddress(first.peer.address).port), 'second');
    await rec.until('connect', 2);
    assert.equal(cl.state('b'), 'connected');
    assert.equal(await text(await cl.request(again.peer, { method: 'GET', path: '/' })), 'second');
  });

  it('notices a peer that stopped answering by its keep-alive pings, and drops the session', async () => {
    const { child, line } = await startChild({ role: 'server', keyPem: privateKeyToPem(b.key.privateKey), certPem: b.certPem, peerKey: a.key.publicKeyB64 });
    children.push(child);
    const rec = recorder();
    const cl = client({ pingIntervalMs: 100, connectTimeoutMs: 1000, backoff: { minMs: 50, maxMs: 50 }, ...rec.options });
    const peer = { name: 'b', key: b.key.publicKeyB64, address: `127.0.0.1:${line}` };
    assert.equal(await text(await cl.request(peer, { method: 'GET', path: '/' })), 'child');
    const frozenAt = rec.events.length;
    child.kill('SIGSTOP');
    const dead = await rec.backoff(frozenAt, /^b at 127\.0\.0\.1:\d+: no answer to a keep-alive ping within 100 ms$/);
    // While the device stays frozen, attempts to reconnect time out rather than hang.
    await rec.backoff(dead + 1, /^connecting to b at 127\.0\.0\.1:\d+ timed out after 1000 ms$/);
  });

  it('fails an answer cut off mid-body instead of ending it as if whole, and ends a whole one', async () => {
    const half = Buffer.alloc(256 * 1024, 1);
    const { peer } = await serveWith((req, res) => {
      if (req.url === '/whole') return res.end(half);
      // The rest would follow; instead the stream is reset, the peer's session goes, or the body stops short.
      res.writeHead(200, req.url === '/short' ? { 'content-length': String(2 * half.length) } : {});
      res.write(half, () => {
        if (req.url === '/reset') res.stream.close(constants.NGHTTP2_CANCEL);
        else if (req.url === '/session') res.stream.session?.destroy();
        else res.end();
      });
    });
    const cl = client();
    const read = async (path: string) => byteCount((await cl.request(peer, { method: 'GET', path })).body);
    assert.equal(await read('/whole'), half.length);
    await assert.rejects(read('/reset'), /^TunnelError: GET \/reset to b: the answer was cut off \(stream reset, code 8\)$/);
    await assert.rejects(read('/short'), /NGHTTP2_PROTOCOL_ERROR/, 'shorter than its content-length');
    await assert.rejects(read('/session'), /GET \/session to b: the answer was cut off/);
    // A slow reader whose session goes before it has read the answer to its end hears so: Node drops what the stream
    // still held, and the body would otherwise never end.
    const slow = (await cl.request(peer, { method: 'GET', path: '/whole' })).body;
    const reading = pipeline(slow, new Writable({ highWaterMark: 1024, write: (_c: Buffer, _e, cb) => setTimeout(cb, 20) }));
    await new Promise((r) => setTimeout(r, 200));
    cl.drop('b');
    await assert.rejects(reading, /GET \/whole to b: the answer was cut off \(the session to b was dropped\)/);
  });

  it('keeps a session whose pings queue behind a long answer on a slow link, and ends the answer whole', async () => {
    const answer = Buffer.alloc(1200 * 1024, 7);
    const { server } = await serveWith((_req, res) => res.end(answer), { pingIntervalMs: 1000 });
    // 400 kB/s each way, in bursts of up to 64 KiB (160 ms apart): the answer takes 3 s, three ping intervals, and
    // every ping's answer waits behind what is left of it.
    const link = await slowLink(server.port, 400_000);
    try {
      const rec = recorder();
      const cl = client({ pingIntervalMs: 1000, ...rec.options });
      const r = await cl.request({ name: 'b', key: b.key.publicKeyB64, address: `127.0.0.1:${link.port}` }, { method: 'GET', path: '/' });
      assert.equal(await byteCount(r.body), answer.length);
      assert.deepEqual(rec.events.filter((e) => e.type === 'backoff'), [], 'the session was never dropped');
    } finally {
      await link.close();
    }
  });

  it('sends a request the peer refused unprocessed once more when its body can be sent again, and never a streamed one; only unprocessed ones count as unsent', async () => {
    // A peer closing its session refuses new streams unprocessed (REFUSED_STREAM); this one refuses every other one.
    const server = createSecureServer({ key: privateKeyToPem(b.key.privateKey), cert: b.certPem, minVersion: 'TLSv1.3', requestCert: true, rejectUnauthorized: false });
    let streams = 0;
    server.on('stream', (stream, headers) => {
      // Closing with an error code reports it on this end's stream too.
      stream.on('error', () => {});
      // A stream the peer took and then failed: it may have acted on it.
      if (headers[':path'] === '/taken') return stream.once('data', () => stream.close(constants.NGHTTP2_INTERNAL_ERROR));
      if (streams++ % 2 === 0) return stream.close(constants.NGHTTP2_REFUSED_STREAM);
      stream.respond({ ':status': 200 });
      stream.resume();
      stream.end('served');
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    try {
      const cl = client();
      const peer = { name: 'b', key: b.key.publicKeyB64, address: `127.0.0.1:${(server.address() as AddressInfo).port}` };
      assert.equal(await text(await cl.request(peer, { method: 'POST', path: '/', body: Buffer.from('again') })), 'served');
      assert.equal(streams, 2, 'refused, then sent once more');
      const refused = await cl.request(peer, { method: 'POST', path: '/', body: Readable.from([Buffer.from('once')]) }).catch((e: unknown) => e);
      assert.ok(refused instanceof TunnelError && /refused unprocessed .*it is safe to retry$/.test(refused.message), String(refused));
      assert.equal(refused.unsent, true);
      assert.equal(streams, 3, 'a streamed body is not sent again');
      const taken = await cl.request(peer, { method: 'POST', path: '/taken', body: Buffer.from('acted on') }).catch((e: unknown) => e);
      assert.ok(taken instanceof TunnelError, String(taken));
      assert.equal(taken.unsent, false, 'a stream the peer read from may have been acted on');
    } finally {
      server.close();
    }
  });

  it('lets the server drop a client that stopped answering its pings', async () => {
    const dropped: string[] = [];
    let seen!: () => void;
    const gone = new Promise<void>((r) => (seen = r));
    const server = await startTunnelServer({
      host: '127.0.0.1',
      port: 0,
      key: b.key,
      certPem: b.certPem,
      authorizePeer: (k) => (k === a.key.publicKeyB64 ? 'a' : null),
      handler: (_req, res) => res.end('ok'),
      pingIntervalMs: 100,
      onError: (e) => {
        dropped.push(e.message);
        if (/dropped/.test(e.message)) seen();
      },
    });
    servers.push(server);
    const peer = { name: 'b', key: b.key.publicKeyB64, address: `127.0.0.1:${server.port}` };
    const { child, line } = await startChild({ role: 'client', keyPem: privateKeyToPem(a.key.privateKey), certPem: a.certPem, peer });
    children.push(child);
    assert.equal(line, 'connected');
    child.kill('SIGSTOP');
    await gone;
    assert.ok(dropped.some((m) => m === 'tunnel session with device a dropped: no answer to a keep-alive ping within 100 ms'), dropped.join('; '));
  });

  it('keeps a working session when a device is named by another address, and uses that address for the next one', async () => {
    const one = await serve(0, 'one');
    const two = await serve(0, 'two');
    const rec = recorder();
    const cl = client(rec.options);
    assert.equal(await text(await cl.request(one.peer, { method: 'GET', path: '/' })), 'one');
    assert.equal(await text(await cl.request(one.peer, { method: 'GET', path: '/' })), 'one');
    await rec.until('connect', 1);
    assert.equal(rec.events.length, 1, 'the second request reused the session');
    assert.equal(await text(await cl.request(two.peer, { method: 'GET', path: '/' })), 'one', 'the session works: it stays');
    cl.drop('b');
    assert.equal(cl.state('b'), 'idle');
    assert.equal(await text(await cl.request(two.peer, { method: 'GET', path: '/' })), 'two', 'the next session goes to the address given last');
    assert.equal(await text(await cl.request(one.peer, { method: 'GET', path: '/' })), 'two');
    const three = await serve(0, 'three');
    const rec2 = recorder();
    const cl2 = client({ ...rec2.options, backoff: { minMs: 60_000, maxMs: 60_000 } });
    await rejectsWith(cl2.request({ ...one.peer, address: `127.0.0.1:${await closedPort()}` }, { method: 'GET', path: '/' }), 'UNAVAILABLE', /./);
    assert.equal(cl2.state('b'), 'backoff');
    assert.equal(await text(await cl2.request(three.peer, { method: 'GET', path: '/' })), 'three', 'backing off from the old address, the new one is tried at once');
  });

  it('fails requests waiting for a session when it is dropped or the client closes, and refuses new ones after', async () => {
    // A listener that accepts TCP but never answers TLS: the session stays "connecting".
    const silent = createServer(() => {}).listen(0, '127.0.0.1');
    await once(silent, 'listening');
    try {
      const cl = client();
      const peer = { name: 'b', key: b.key.publicKeyB64, address: `127.0.0.1:${(silent.address() as AddressInfo).port}` };
      const waiting = cl.request(peer, { method: 'GET', path: '/' });
      assert.equal(cl.state('b'), 'connecting');
      cl.drop('b');
      await rejectsWith(waiting, 'CLOSED', /the session to b was dropped/);
      const waiting2 = cl.request(peer, { method: 'GET', path: '/' });
      await cl.close();
      await rejectsWith(waiting2, 'CLOSED', /the tunnel client is closed/);
      await rejectsWith(cl.request(peer, { method: 'GET', path: '/' }), 'CLOSED', /the tunnel client is closed/);
    } finally {
      silent.close();
      // The silent server's accepted sockets are closed by the client's destroy; wait for the listener itself.
      await once(silent, 'close');
    }
  });

  it('cancels a request through its signal', async () => {
    let arrived!: () => void;
    let cancelled!: () => void;
    const atServer = new Promise<void>((r) => (arrived = r));
    const streamClosed = new Promise<void>((r) => (cancelled = r));
    const server = await startTunnelServer({
      host: '127.0.0.1',
      port: 0,
      key: b.key,
      certPem: b.certPem,
      authorizePeer: () => 'a',
      handler: (req) => {
        req.stream.once('close', cancelled);
        arrived();
      },
    });
    servers.push(server);
    const cl = client();
    const abort = new AbortController();
    const pending = cl.request({ name: 'b', key: b.key.publicKeyB64, address: `127.0.0.1:${server.port}` }, { method: 'GET', path: '/slow', signal: abort.signal });
    await atServer;
    abort.abort();
    await assert.rejects(pending, { name: 'AbortError' });
    await streamClosed;
    assert.equal(cl.state('b'), 'connected', 'one cancelled stream leaves the session up');
  });

  it('reaches a peer at an IPv6 address', async () => {
    const server = await startTunnelServer({
      host: '::1',
      port: 0,
      key: b.key,
      certPem: b.certPem,
      authorizePeer: (k) => (k === a.key.publicKeyB64 ? 'a' : null),
      handler: (req, res, who) => res.end(`${who} from ${req.socket.remoteAddress}`),
    });
    servers.push(server);
    const res = await client().request({ name: 'b', key: b.key.publicKeyB64, address: `[::1]:${server.port}` }, { method: 'GET', path: '/' });
    assert.equal(await text(res), 'a from ::1');
  });

  it('refuses malformed peers and inconsistent options by name', async () => {
    const cl = client();
    const key = b.key.publicKeyB64;
    for (const address of ['nohost', '10.0.0.1', '10.0.0.1:0', '10.0.0.1:65536', '::1:80', '[nothex]:80', 'a b:80']) {
      await rejectsWith(cl.request({ name: 'b', key, address }, { method: 'GET', path: '/' }), 'INVALID_PEER', new RegExp(`peer address "${address.replace(/[[\]]/g, '\\$&')}" is not host:port`));
    }
    await rejectsWith(cl.request({ name: 'b', key: 'short', address: '127.0.0.1:1' }, { method: 'GET', path: '/' }), 'INVALID_PEER', /peer b has a malformed key/);
    assert.deepEqual(parseAddress('[::1]:2980'), { host: '::1', port: 2980 });
    assert.deepEqual(parseAddress('ood1.local:2980'), { host: 'ood1.local', port: 2980 });
    assert.throws(() => new TunnelClient({ key: a.key }), /needs both key and certPem .* or neither/);
    assert.throws(() => new TunnelClient({ key: a.key, certPem: b.certPem }), new RegExp(`certPem is for key ${b.key.publicKeyB64}, not this device's key`));
    assert.throws(() => new TunnelClient({ backoff: { minMs: 100, maxMs: 10 } }), /backoff needs 0 < minMs <= maxMs, got 100 and 10/);
  });

  it('cuts body chunks larger than WRITE_PIECE into views of that size, in order, and passes smaller ones on whole', async () => {
    const small = Buffer.from('head');
    const big = randomBytes(2 * WRITE_PIECE + 5);
    const exact = randomBytes(WRITE_PIECE);
    const stage = writePieces();
    const out: Buffer[] = [];
    stage.on('data', (d: Buffer) => out.push(d));
    stage.write(small);
    stage.write(big);
    stage.end(exact);
    await once(stage, 'end');
    assert.deepEqual(out.map((d) => d.length), [4, WRITE_PIECE, WRITE_PIECE, 5, WRITE_PIECE]);
    assert.deepEqual(Buffer.concat(out), Buffer.concat([small, big, exact]));
    // Views, not copies: the pieces of the large chunk share its memory.
    assert.ok(out.slice(1, 4).every((d) => d.buffer === big.buffer));
  });
});
