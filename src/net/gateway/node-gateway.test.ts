// The node gateway's route table and its cache on disk, and its proxy against real HTTP servers on loopback.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { Agent, createServer, request, type IncomingHttpHeaders, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RouteCache, RouteTable, followRoutes, proxy } from './node-gateway.ts';
import type { ServiceInfo } from '../../lib/config/zone-records.ts';
import { KrpcError } from '../../lib/krpc/index.ts';

type Instance = ServiceInfo['instances'][number];

function info(...instances: Instance[]): string {
  return JSON.stringify({ instances, updated_at: Date.now() });
}

const inst = (node: string, port: number, state: Instance['state']): Instance => ({ node, host: '127.0.0.1', port, state });

describe('RouteTable', () => {
  it('applies, replaces and deletes routes from services/<s>/info', () => {
    const t = new RouteTable('n1');
    t.apply('services/klog/info', info(inst('n1', 3500, 'running')));
    t.apply('services/system-config/info', info(inst('n1', 3200, 'running')));
    assert.deepEqual(t.services(), ['klog', 'system-config']);
    assert.deepEqual(t.pick('klog'), { node: 'n1', host: '127.0.0.1', port: 3500 });
    t.apply('services/klog/info', info(inst('n1', 3501, 'running')));
    assert.equal(t.pick('klog')?.port, 3501);
    t.apply('services/klog/info', null);
    assert.equal(t.pick('klog'), undefined);
    assert.deepEqual(t.services(), ['system-config']);
  });

  it('drops routes a full re-list no longer has', () => {
    const t = new RouteTable('n1');
    t.apply('services/klog/info', info(inst('n1', 3500, 'running')));
    t.apply('services/old/info', info(inst('n1', 3999, 'running')));
    t.replaceAll([{ key: 'services/klog/info', value: info(inst('n1', 3500, 'running')) }]);
    assert.deepEqual(t.services(), ['klog']);
  });

  it('ignores keys that are not a service info document', () => {
    const t = new RouteTable('n1');
    for (const key of ['services/klog/spec', 'services/klog/instances/n1', 'services/Klog/info', 'services/klog/info/x', 'nodes/n1/config']) {
      t.apply(key, info(inst('n1', 3500, 'running')));
    }
    assert.deepEqual(t.services(), []);
  });

  it('treats a malformed info document as absent, dropping the route it replaces', () => {
    const t = new RouteTable('n1');
    for (const bad of ['{not json', '[]', '{"instances":[{"node":"n1","host":"127.0.0.1","port":70000,"state":"running"}],"updated_at":1}', '{"instances":"x"}']) {
      t.apply('services/klog/info', info(inst('n1', 3500, 'running')));
      t.apply('services/klog/info', bad);
      assert.equal(t.pick('klog'), undefined, `route dropped after ${bad}`);
    }
  });

  it('picks this node\'s running instance first, then another running one, then a starting one, never a dead one', () => {
    const t = new RouteTable('n1');
    t.apply('services/s/info', info(inst('n2', 1, 'running'), inst('n1', 2, 'running'), inst('n3', 3, 'starting')));
    assert.equal(t.pick('s')?.port, 2);
    t.apply('services/s/info', info(inst('n1', 2, 'starting'), inst('n2', 1, 'running')));
    assert.equal(t.pick('s')?.port, 1, 'a running instance elsewhere beats a starting one here');
    t.apply('services/s/info', info(inst('n2', 1, 'starting'), inst('n1', 2, 'starting'), inst('n3', 3, 'dead')));
    assert.equal(t.pick('s')?.port, 2, 'among starting ones, this node\'s');
    t.apply('services/s/info', info(inst('n2', 1, 'starting')));
    assert.equal(t.pick('s')?.port, 1);
    t.apply('services/s/info', info(inst('n1', 2, 'dead')));
    assert.equal(t.pick('s'), undefined);
    assert.equal(t.pick('unknown'), undefined);
  });

  it('passes over an instance or bootstrap node the caller cannot reach now, while another can answer', () => {
    const t = new RouteTable('n1');
    t.apply('services/s/info', info(inst('n2', 1, 'running'), inst('n3', 3, 'running')));
    const down = new Set(['n2']);
    const reachable = (n: string) => !down.has(n);
    assert.equal(t.pick('s', reachable)?.node, 'n3');
    down.add('n3');
    assert.equal(t.pick('s', reachable)?.node, 'n2', 'none reachable: the first, which may be back by now');
    t.apply('services/s/info', info(inst('n1', 2, 'running'), inst('n3', 3, 'running')));
    assert.equal(t.pick('s', () => false)?.node, 'n1', 'this node\'s own needs no tunnel');
    const b = new RouteTable('pn1');
    b.setBootstrap(['system-config'], ['ood1', 'ood2']);
    assert.equal(b.pick('system-config', (n) => n !== 'ood1')?.node, 'ood2');
  });

  it('never picks a node a request already failed to reach, even when nothing else is left', () => {
    const t = new RouteTable('n1');
    t.apply('services/s/info', info(inst('n2', 1, 'running'), inst('n3', 3, 'starting'), inst('n4', 4, 'running')));
    assert.equal(t.pick('s', () => true, new Set(['n2']))?.node, 'n4');
    assert.equal(t.pick('s', () => false, new Set(['n2']))?.node, 'n4', 'unreachable-looking ones still beat tried ones');
    assert.equal(t.pick('s', () => true, new Set(['n2', 'n4']))?.node, 'n3', 'a starting one after every running one failed');
    assert.equal(t.pick('s', () => true, new Set(['n2', 'n3', 'n4'])), undefined);
    const b = new RouteTable('pn1');
    b.setBootstrap(['system-config'], ['ood1', 'ood2']);
    assert.equal(b.pick('system-config', () => true, new Set(['ood1']))?.node, 'ood2');
    assert.equal(b.pick('system-config', () => true, new Set(['ood1', 'ood2'])), undefined);
  });

  it('sends bootstrap services to the enrolment peers until a route names a running instance', () => {
    const t = new RouteTable('pn1');
    t.setBootstrap(['system-config'], ['ood1', 'ood2']);
    assert.deepEqual(t.pick('system-config'), { node: 'ood1', host: '', port: 0, fromBootstrap: true });
    assert.equal(t.pick('klog'), undefined);
    t.apply('services/system-config/info', info({ node: 'ood2', host: '10.0.0.3', port: 3200, state: 'running' }));
    assert.deepEqual(t.pick('system-config'), { node: 'ood2', host: '10.0.0.3', port: 3200 });
    assert.equal(t.own('system-config'), undefined);
    t.apply('services/gateway/info', info({ node: 'pn1', host: '10.0.0.9', port: 3180, state: 'running' }));
    assert.deepEqual(t.own('gateway'), { node: 'pn1', host: '127.0.0.1', port: 3180 });
  });

  it('reaches a named node\'s instance, running or restarting, and no other', () => {
    const t = new RouteTable('n1', '127.0.0.1');
    t.apply('services/dfs/info', info({ node: 'n1', host: '10.0.0.1', port: 2, state: 'running' }, { node: 'n2', host: '10.0.0.2', port: 1, state: 'starting' }, { node: 'n3', host: '10.0.0.3', port: 3, state: 'dead' }));
    assert.deepEqual(t.on('dfs', 'n1'), { node: 'n1', host: '127.0.0.1', port: 2 });
    assert.deepEqual(t.on('dfs', 'n2'), { node: 'n2', host: '10.0.0.2', port: 1 });
    assert.equal(t.on('dfs', 'n3'), undefined, 'a dead instance is not reached');
    assert.equal(t.on('dfs', 'n4'), undefined);
    assert.equal(t.on('other', 'n1'), undefined);
  });

  it('reaches this node\'s own instance on its local host, other nodes\' at their listed address', () => {
    const t = new RouteTable('n1', '127.0.0.1');
    t.apply('services/s/info', info({ node: 'n1', host: '10.0.0.1', port: 2, state: 'running' }, { node: 'n2', host: '10.0.0.2', port: 1, state: 'running' }));
    assert.deepEqual(t.pick('s'), { node: 'n1', host: '127.0.0.1', port: 2 });
    t.apply('services/s/info', info({ node: 'n2', host: '10.0.0.2', port: 1, state: 'running' }));
    assert.equal(t.pick('s')?.host, '10.0.0.2');
  });
});

type ConfigClient = Parameters<typeof followRoutes>[0];

/** A system-config that lists `entries` and then has no change to report until `signal` ends the watch. */
function listingConfig(entries: { key: string; value: string }[], signal: AbortSignal): ConfigClient {
  return {
    list: async () => ({ entries: entries.map((e) => ({ ...e, revision: 5, create_revision: 5 })), revision: 7, more: false }),
    watch: () => new Promise((resolve) => signal.addEventListener('abort', () => resolve({ events: [], revision: 7 }), { once: true })),
  } as Partial<ConfigClient> as ConfigClient;
}

/** A system-config out of reach, as for a device cut off from the zone's core. */
function unreachableConfig(): ConfigClient {
  const fail = async (): Promise<never> => {
    throw new KrpcError('UNAVAILABLE', 'cannot reach system-config');
  };
  return { list: fail, watch: fail } as Partial<ConfigClient> as ConfigClient;
}

async function until(done: () => boolean, what: string): Promise<void> {
  for (let i = 0; !done(); i++) {
    assert.ok(i < 500, `${what} within 5 s`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('RouteCache', () => {
  const DID = 'did:dev:n1';
  let dir: string;
  const warnings: string[] = [];
  const warn = (message: string) => void warnings.push(message);
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'route-cache-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  /** A gateway that lists `listed` from system-config, cached in `file`, until it has written them there. */
  async function cacheListed(file: string, listed: { key: string; value: string }[]): Promise<void> {
    const online = new AbortController();
    const following = followRoutes(listingConfig(listed, online.signal), new RouteTable('n1'), online.signal, () => {}, new RouteCache(file, DID, warn));
    await until(() => existsSync(file), 'the listed routes written');
    online.abort();
    await following;
  }

  it('keeps the routes listed, and a gateway restarted cut off from system-config routes by them', async () => {
    const file = join(dir, 'run', 'routes.json');
    await cacheListed(file, [
      { key: 'services/dfs/info', value: info({ node: 'n1', host: '10.0.0.1', port: 3700, state: 'running' }) },
      { key: 'services/klog/info', value: info({ node: 'ood1', host: '10.0.0.2', port: 3500, state: 'running' }) },
    ]);
    const kept = readFileSync(file, 'utf8');

    const t = new RouteTable('n1');
    const cutOff = new AbortController();
    const failures: unknown[] = [];
    const second = followRoutes(unreachableConfig(), t, cutOff.signal, (e) => failures.push(e), new RouteCache(file, DID, warn));
    try {
      await until(() => failures.length > 0, 'the first list failed');
      assert.deepEqual(t.pick('dfs'), { node: 'n1', host: '127.0.0.1', port: 3700 });
      assert.deepEqual(t.own('dfs'), { node: 'n1', host: '127.0.0.1', port: 3700 }, 'the tunnel reaches this device\'s own dfs');
      assert.deepEqual(t.pick('klog'), { node: 'ood1', host: '10.0.0.2', port: 3500 });
    } finally {
      cutOff.abort();
      await second;
    }
    assert.deepEqual(warnings, []);
    assert.equal(readFileSync(file, 'utf8'), kept, 'a failed list leaves the cache as it was');
  });

  it('never routes a service with a bootstrap route by the cache: after a store move its cached instances are gone', async () => {
    const file = join(dir, 'skip', 'routes.json');
    await cacheListed(file, [
      { key: 'services/dfs/info', value: info({ node: 'n1', host: '10.0.0.1', port: 3700, state: 'running' }) },
      { key: 'services/system-config/info', value: info({ node: 'n1', host: '10.0.0.1', port: 3200, state: 'running' }) },
    ]);
    const t = new RouteTable('n1');
    t.setBootstrap(['system-config'], ['ood1']);
    new RouteCache(file, DID, warn, 1000, new Set(['system-config'])).load(t);
    assert.equal(t.pick('dfs')?.port, 3700);
    assert.deepEqual(t.pick('system-config'), { node: 'ood1', host: '', port: 0, fromBootstrap: true }, 'the peers this device was given, not its own old instance');
  });

  it('passes over a malformed, unreadable or another identity\'s cache, leaving the table empty', () => {
    const route = { key: 'services/dfs/info', value: info(inst('n1', 3700, 'running')) };
    for (const bad of ['{not json', JSON.stringify([route]), JSON.stringify({ device: DID, routes: [{ key: route.key }] })]) {
      const file = join(dir, 'bad.json');
      writeFileSync(file, bad);
      warnings.length = 0;
      const t = new RouteTable('n1');
      new RouteCache(file, DID, warn).load(t);
      assert.deepEqual(t.services(), [], bad);
      assert.deepEqual(warnings, ['the cached routes are malformed; starting without them'], bad);
    }
    writeFileSync(join(dir, 'other.json'), JSON.stringify({ device: 'did:dev:before-reset', routes: [route] }));
    warnings.length = 0;
    const t = new RouteTable('n1');
    new RouteCache(join(dir, 'other.json'), DID, warn).load(t);
    assert.deepEqual(t.services(), [], 'routes another identity of this device wrote');
    assert.deepEqual(warnings, ['the cached routes are from before this device was activated; starting without them']);
    warnings.length = 0;
    new RouteCache(dir, DID, warn).load(t);
    assert.deepEqual(t.services(), []);
    assert.deepEqual(warnings, ['the cached routes are unreadable; starting without them'], 'a directory in the file\'s place');
    warnings.length = 0;
    new RouteCache(join(dir, 'absent.json'), DID, warn).load(t);
    assert.deepEqual(warnings, [], 'no cache yet (a first start) is no problem');
  });

  it('writes a burst of changes once, unchanged routes never, and what is still waiting when closed', async () => {
    const file = join(dir, 'burst.json');
    const cache = new RouteCache(file, DID, warn, 200);
    const t = new RouteTable('n1');
    const stored = () => (JSON.parse(readFileSync(file, 'utf8')) as { routes: { key: string }[] }).routes.map((e) => e.key);
    t.apply('services/a/info', info(inst('n1', 1, 'running')));
    cache.save(t);
    assert.deepEqual(stored(), ['services/a/info'], 'the first change is written at once');
    for (const s of ['b', 'c', 'd']) {
      t.apply(`services/${s}/info`, info(inst('n1', 1, 'running')));
      cache.save(t);
    }
    assert.deepEqual(stored(), ['services/a/info'], 'the burst waits');
    await until(() => stored().length === 4, 'the burst written');
    rmSync(file);
    await new Promise((r) => setTimeout(r, 250));
    cache.save(t);
    assert.equal(existsSync(file), false, 'the same routes are not written again');
    t.apply('services/a/info', null);
    cache.save(t);
    t.apply('services/b/info', null);
    cache.save(t);
    cache.close();
    assert.deepEqual(stored(), ['services/c/info', 'services/d/info']);
  });
});

function listen(server: Server): Promise<number> {
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve((server.address() as AddressInfo).port)));
}

function close(server: Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}

function post(port: number, path: string, body: Buffer, headers: Record<string, string>, agent?: Agent) {
  return new Promise<{ status: number; headers: IncomingHttpHeaders; body: Buffer }>((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, method: 'POST', agent, headers: { ...headers, 'content-length': body.length } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

describe('proxy', () => {
  let upstream: Server;
  let front: Server;
  let upstreamPort: number;
  let frontPort: number;
  let deadPort: number;
  let frontConnections = 0;
  let endlessClosed = 0;
  let lastFrontRequest: IncomingMessage | undefined;
  const seen: { method?: string; url?: string; headers: IncomingHttpHeaders; body: Buffer }[] = [];

  before(async () => {
    upstream = createServer((req, res) => {
      if (req.url?.startsWith('/endless')) {
        // A long answer (a large file) whose reader may leave: it records when its request is ended.
        res.writeHead(200, { 'content-type': 'application/octet-stream' });
        const piece = Buffer.alloc(64 * 1024);
        const pump = () => {
          while (!res.destroyed && res.write(piece));
        };
        res.on('drain', pump);
        res.on('close', () => endlessClosed++);
        pump();
        return;
      }
      if (req.url?.startsWith('/early')) {
        // Like a kRPC endpoint refusing an oversized body: answer at once, then discard the rest.
        req.resume();
        res.writeHead(413, { 'content-type': 'application/json' });
        res.end('{"error":{"code":"PAYLOAD_TOO_LARGE","message":"too large"}}');
        return;
      }
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const body = Buffer.concat(chunks);
        seen.push({ method: req.method, url: req.url, headers: req.headers, body });
        res.writeHead(201, { 'content-type': 'application/octet-stream', 'x-upstream': 'yes' });
        res.end(body);
      });
    });
    upstreamPort = await listen(upstream);
    // A port that was free a moment ago: nothing listens there.
    const gone = createServer();
    deadPort = await listen(gone);
    await close(gone);
    front = createServer((req, res) => {
      lastFrontRequest = req;
      const url = new URL(req.url ?? '/', 'http://local');
      const port = url.pathname.startsWith('/dead') ? deadPort : upstreamPort;
      proxy(req, res, { host: '127.0.0.1', port }, url.pathname + url.search);
    });
    // Long enough that only the proxy, not an idle timeout, can free a connection stuck on an unread body.
    front.keepAliveTimeout = 120_000;
    front.on('connection', () => frontConnections++);
    frontPort = await listen(front);
  });
  after(async () => {
    await close(front);
    await close(upstream);
  });

  it('forwards method, path, query, headers and body, and relays the upstream answer', async () => {
    const body = Buffer.alloc(2 * 1024 * 1024);
    for (let i = 0; i < body.length; i++) body[i] = (i * 31) & 0xff;
    const r = await post(frontPort, '/kapi/echo?x=1', body, { 'content-type': 'application/json', 'x-trace': 'abc' });
    assert.equal(r.status, 201);
    assert.equal(r.headers['x-upstream'], 'yes');
    assert.ok(r.body.equals(body), 'the answer body arrived intact');
    const got = seen.at(-1)!;
    assert.equal(got.method, 'POST');
    assert.equal(got.url, '/kapi/echo?x=1');
    assert.equal(got.headers['x-trace'], 'abc');
    assert.equal(got.headers['content-type'], 'application/json');
    assert.equal(got.headers.host, `127.0.0.1:${upstreamPort}`);
    assert.equal(got.headers['x-forwarded-for'], '127.0.0.1', 'the client address travels with the request');
    assert.ok(got.body.equals(body), 'the request body arrived intact');
  });

  it('keeps a keep-alive connection usable after the upstream answered before reading the whole body', async () => {
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    const connectionsBefore = frontConnections;
    try {
      const big = await post(frontPort, '/early', Buffer.alloc(4 * 1024 * 1024, 0x20), {}, agent);
      assert.equal(big.status, 413);
      const first = lastFrontRequest!;
      if (!first.readableEnded) {
        let timer: NodeJS.Timeout | undefined;
        const stuck = new Promise((_, reject) => {
          timer = setTimeout(() => reject(new Error('the rest of the refused body was never read off the connection')), 10_000);
        });
        await Promise.race([once(first, 'end'), stuck]).finally(() => clearTimeout(timer));
      }
      const next = await post(frontPort, '/kapi/echo', Buffer.from('after'), {}, agent);
      assert.equal(next.status, 201);
      assert.equal(next.body.toString(), 'after');
      assert.equal(frontConnections - connectionsBefore, 1, 'both requests went over one keep-alive connection');
    } finally {
      agent.destroy();
    }
  });

  it('ends the upstream request when the client leaves before the answer is done', async () => {
    const before = endlessClosed;
    const req = request({ host: '127.0.0.1', port: frontPort, path: '/endless', agent: false });
    req.end();
    const [res] = (await once(req, 'response')) as [IncomingMessage];
    await once(res, 'data');
    req.destroy();
    for (let i = 0; endlessClosed === before; i++) {
      assert.ok(i < 500, 'the upstream answer was still open 5 s after its client left');
      await new Promise((r) => setTimeout(r, 10));
    }
  });

  it('answers 503 UNAVAILABLE as JSON when the upstream is unreachable', async () => {
    const r = await post(frontPort, '/dead/kapi/echo', Buffer.from('{"method":"x"}'), { 'content-type': 'application/json' });
    assert.equal(r.status, 503);
    assert.match(String(r.headers['content-type']), /^application\/json/);
    const json = JSON.parse(r.body.toString('utf8')) as { error: { code: string; message: string } };
    assert.equal(json.error.code, 'UNAVAILABLE');
    assert.match(json.error.message, /unreachable/);
  });
});
