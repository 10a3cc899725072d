// The gateway's two ends of a tunnel on one machine: device a's gateway passes a local client's request through the
// tunnel (proxyThroughTunnel), device b's tunnel server hands it to b's service instance (proxyFromTunnel).
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { type IncomingMessage, type Server, type ServerResponse, createServer, request } from 'node:http';
import type { AddressInfo } from 'node:net';
import { PassThrough } from 'node:stream';
import { TunnelClient, type TunnelPeer, type TunnelServer, startTunnelServer } from '../../lib/tunnel/index.ts';
import { type Device, closedPort, device } from '../../lib/tunnel/testing.suite.ts';
import { until } from '../../../test/support/wait.ts';
import { proxyFromTunnel, proxyThroughTunnel } from './tunnel-routes.ts';

async function listenHttp(handler: (req: IncomingMessage, res: ServerResponse) => void): Promise<{ server: Server; port: number }> {
  const server = createServer(handler);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return { server, port: (server.address() as AddressInfo).port };
}

/** What b's service instance saw of the requests it got. */
interface Seen {
  path: string;
  forwardedFor: string | undefined;
  bytes: number;
  /** 'ended': the whole body came; 'aborted': the request was cut. */
  outcome: 'open' | 'ended' | 'aborted';
  answerClosed: boolean;
}

describe('tunnel routes: requests between two gateways', () => {
  let a: Device;
  let b: Device;
  let service: { server: Server; port: number };
  let tunnelServer: TunnelServer;
  let tunnel: TunnelClient;
  let gateway: { server: Server; port: number };
  let peer: TunnelPeer;
  const seen: Seen[] = [];
  /** Device a removed from the zone: b's tunnel server refuses it from then on (revalidate). */
  let aRemoved = false;

  before(async () => {
    [a, b] = await Promise.all([device('a'), device('b')]);
    service = await listenHttp((req, res) => {
      const s: Seen = { path: req.url!, forwardedFor: req.headers['x-forwarded-for'] as string | undefined, bytes: 0, outcome: 'open', answerClosed: false };
      seen.push(s);
      req.on('data', (c: Buffer) => (s.bytes += c.length));
      req.on('aborted', () => (s.outcome = 'aborted'));
      req.on('end', () => {
        if (s.outcome === 'open') s.outcome = 'ended';
        // /download streams until its client goes; everything else answers once the body is in.
        if (req.url !== '/download') res.end('done');
      });
      res.on('close', () => (s.answerClosed = true));
      if (req.url === '/download') {
        res.writeHead(200);
        const more = () => {
          while (res.write(Buffer.alloc(64 * 1024)));
          res.once('drain', more);
        };
        more();
      }
    });
    tunnelServer = await startTunnelServer({
      host: '127.0.0.1',
      port: 0,
      key: b.key,
      certPem: b.certPem,
      authorizePeer: (k) => (k === a.key.publicKeyB64 && !aRemoved ? 'a' : null),
      // As the gateway's handler does: the client a's gateway named, else the tunnel peer itself.
      handler: (req, res) => proxyFromTunnel(req, res, service.port, (req.headers['x-buckyos-client'] as string | undefined) ?? 'tunnel peer'),
    });
    peer = { name: 'b', key: b.key.publicKeyB64, address: `127.0.0.1:${tunnelServer.port}` };
    tunnel = new TunnelClient({ key: a.key, certPem: a.certPem });
    gateway = await listenHttp((req, res) => proxyThroughTunnel(tunnel, peer, req, res, req.url!));
  });

  after(async () => {
    for (const s of [gateway.server, service.server]) {
      s.closeAllConnections();
      s.close();
    }
    await Promise.all([tunnelServer.close(), tunnel.close()]);
  });

  it('hands an upload the tunnel client gave up on to the service as aborted, never as a whole body', async () => {
    const body = new PassThrough();
    const stop = new AbortController();
    const answer = tunnel.request(peer, { method: 'PUT', path: '/upload', body, signal: stop.signal });
    body.write(Buffer.alloc(100_000));
    const s = await until('the service receiving', async () => seen.find((x) => x.path === '/upload' && x.bytes === 100_000), 10_000);
    stop.abort();
    await assert.rejects(answer, { name: 'AbortError' });
    await until('the service seeing the request cut', async () => (s.outcome === 'aborted' ? true : undefined), 10_000);
    assert.equal(s.outcome, 'aborted');
  });

  it('ends the service\'s answer when the client of a download through the tunnel goes away', async () => {
    const req = request({ host: '127.0.0.1', port: gateway.port, path: '/download' });
    req.end();
    const [res] = (await once(req, 'response')) as [IncomingMessage];
    let got = 0;
    res.on('data', (c: Buffer) => (got += c.length));
    await until('bytes flowing', async () => (got > 1024 * 1024 ? true : undefined), 10_000);
    const s = seen.find((x) => x.path === '/download')!;
    assert.equal(s.answerClosed, false);
    req.destroy();
    await until('the service\'s answer closed', async () => (s.answerClosed ? true : undefined), 10_000);
  });

  it('names the caller by the address the gateway sees, whatever x-forwarded-for a local process sends', async () => {
    const res = await fetch(`http://127.0.0.1:${gateway.port}/who`, { method: 'POST', body: 'x', headers: { 'x-forwarded-for': '203.0.113.77' } });
    assert.equal(await res.text(), 'done');
    assert.equal(seen.find((x) => x.path === '/who')?.forwardedFor, '127.0.0.1');
  });

  it('sends a request that reached no device to the next instance with its streamed body whole, and answers 503 when none is left', async () => {
    // A device down: a peer nothing answers for. Its failures go to the live peer, as the gateway's route does.
    const down: TunnelPeer = { name: 'down', key: b.key.publicKeyB64, address: `127.0.0.1:${await closedPort()}` };
    const failover = await listenHttp((req, res) =>
      proxyThroughTunnel(tunnel, down, req, res, req.url!, undefined, () => {
        if (req.url === '/nowhere-else') return false;
        proxyThroughTunnel(tunnel, peer, req, res, req.url!);
        return true;
      }),
    );
    try {
      const moved = await fetch(`http://127.0.0.1:${failover.port}/moved`, { method: 'POST', body: Buffer.alloc(300_000, 1) });
      assert.equal(moved.status, 200);
      assert.equal(await moved.text(), 'done');
      const s = seen.find((x) => x.path === '/moved');
      assert.deepEqual([s?.bytes, s?.outcome], [300_000, 'ended']);
      // The down device's tunnel now backs off: the request fails at once, and there is nowhere else to send it.
      const stranded = await fetch(`http://127.0.0.1:${failover.port}/nowhere-else`, { method: 'POST', body: 'x' });
      assert.equal(stranded.status, 503);
      assert.match(((await stranded.json()) as { error: { message: string } }).error.message, /^device down is unreachable through its tunnel \(UNAVAILABLE: .*ECONNREFUSED/);
      assert.equal(seen.find((x) => x.path === '/nowhere-else'), undefined);
    } finally {
      failover.server.closeAllConnections();
      failover.server.close();
    }
  });

  // Last: device a stays refused after it.
  it('hands an upload its session was cut under (the calling device removed) to the service as aborted', async () => {
    const body = new PassThrough();
    const answer = tunnel.request(peer, { method: 'PUT', path: '/cut', body });
    answer.catch(() => {});
    body.write(Buffer.alloc(100_000));
    const s = await until('the service receiving', async () => seen.find((x) => x.path === '/cut' && x.bytes === 100_000), 10_000);
    aRemoved = true;
    tunnelServer.revalidate();
    await until('the service seeing the request cut', async () => (s.outcome === 'aborted' ? true : undefined), 10_000);
    assert.equal(s.outcome, 'aborted');
  });
});
