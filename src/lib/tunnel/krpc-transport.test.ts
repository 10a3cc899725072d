import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { type AddressInfo, createServer } from 'node:net';
import { z } from 'zod';
import { generateKeyPair } from '../identity/keys.ts';
import { selfSignedCert } from '../identity/tls-certs.ts';
import { KrpcError, createClient, defineService, method } from '../krpc/index.ts';
import { TunnelClient, type TunnelPeer } from './tunnel-client.ts';
import { type TunnelServer, startTunnelServer } from './tunnel-server.ts';
import { tunnelTransport } from './krpc-transport.ts';

const echoApi = defineService('echo', 'Says back what it is told, and who told it.', {
  say: method({
    params: z.object({ text: z.string() }),
    result: z.object({ text: z.string(), from: z.string() }),
    auth: 'none',
    doc: 'Echo.',
  }),
  fail: method({ params: z.object({}), result: z.object({}), auth: 'none', doc: 'Always refuses.' }),
  hang: method({ params: z.object({}), result: z.object({}), auth: 'none', doc: 'Never answers.' }),
});

describe('kRPC over a tunnel', () => {
  let server: TunnelServer;
  let tunnel: TunnelClient;
  let peer: TunnelPeer;
  let hangClosed: Promise<void>;

  before(async () => {
    const [a, b] = [generateKeyPair(), generateKeyPair()];
    const [certA, certB] = await Promise.all([selfSignedCert({ key: a, commonName: 'a' }), selfSignedCert({ key: b, commonName: 'b' })]);
    let onHangClosed!: () => void;
    hangClosed = new Promise((r) => (onHangClosed = r));
    server = await startTunnelServer({
      host: '127.0.0.1',
      port: 0,
      key: b,
      certPem: certB,
      authorizePeer: (k) => (k === a.publicKeyB64 ? 'a' : null),
      handler: (req, res, from) => {
        let body = '';
        req.on('data', (d: Buffer) => (body += String(d)));
        req.on('end', () => {
          const call = JSON.parse(body) as { method: string; params: { text?: string }; sys: unknown[] };
          assert.equal(req.url, '/kapi/echo');
          assert.equal(req.headers['content-type'], 'application/json');
          if (call.method === 'hang') {
            req.stream.once('close', onHangClosed);
            return;
          }
          const answer =
            call.method === 'say'
              ? { result: { text: call.params.text, from }, sys: call.sys }
              : { error: { code: 'PERMISSION_DENIED', message: 'no' }, sys: call.sys };
          res.writeHead(call.method === 'say' ? 200 : 403, { 'content-type': 'application/json' }).end(JSON.stringify(answer));
        });
      },
    });
    peer = { name: 'b', key: b.publicKeyB64, address: `127.0.0.1:${server.port}` };
    tunnel = new TunnelClient({ key: a, certPem: certA });
  });

  after(async () => {
    await tunnel.close();
    await server.close();
  });

  it('calls a service on another device with the typed client', async () => {
    const echo = createClient(echoApi, { baseUrl: 'tunnel://b', transport: tunnelTransport(tunnel, peer) });
    assert.deepEqual(await echo.say({ text: 'hello' }), { text: 'hello', from: 'a' });
    await assert.rejects(echo.fail({}), (e: unknown) => e instanceof KrpcError && e.code === 'PERMISSION_DENIED' && e.message === 'no');
  });

  it('times a call out as TIMEOUT and cancels its stream', async () => {
    const echo = createClient(echoApi, { baseUrl: 'tunnel://b', transport: tunnelTransport(tunnel, peer) });
    await assert.rejects(echo.hang({}, { timeoutMs: 100 }), (e: unknown) => {
      assert.ok(e instanceof KrpcError);
      assert.equal(e.code, 'TIMEOUT');
      assert.equal(e.message, 'b/kapi/echo did not answer within 100 ms');
      return true;
    });
    await hangClosed;
  });

  it('reports an unreachable device as UNAVAILABLE, keeping the tunnel reason', async () => {
    const s = createServer().listen(0, '127.0.0.1');
    await once(s, 'listening');
    const port = (s.address() as AddressInfo).port;
    s.close();
    const gone = new TunnelClient({});
    try {
      const echo = createClient(echoApi, { baseUrl: 'tunnel://b', transport: tunnelTransport(gone, { ...peer, address: `127.0.0.1:${port}` }) });
      await assert.rejects(echo.say({ text: 'x' }), (e: unknown) => {
        assert.ok(e instanceof KrpcError);
        assert.equal(e.code, 'UNAVAILABLE');
        assert.match(e.message, /^cannot reach b\/kapi\/echo through its tunnel: UNAVAILABLE: tunnel to b at 127\.0\.0\.1:\d+ failed: .*ECONNREFUSED/);
        return true;
      });
    } finally {
      await gone.close();
    }
  });
});
