// Upstreams against real local servers: UDP with TCP after truncation, pipelined TCP, DNS over TLS with certificate
// checks, DNS over HTTPS (cyfs-ns's own DoH endpoint with TLS), health tracking, both strategies and suffix routing.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import pino from 'pino';
import dnsPacket from 'dns-packet';
import { type GroupConfig, type UpstreamConfig, defaultConfig } from './config.ts';
import { NsServer } from './server.ts';
import { Router, Upstream, UpstreamGroup } from './upstream.ts';
import { TYPE, isProblem, parseQuery, type Query } from './wire.ts';
import { ScriptedDns, queryPacket, recs, selfSignedCert } from './testing.suite.ts';
import { freePort } from '../../../test/support/ports.ts';

const log = pino({ level: 'silent' });
const HEALTH = { fail_threshold: 2, down_ms: 60_000 };

function upstream(protocol: UpstreamConfig['protocol'], port: number, extra: Partial<UpstreamConfig> = {}): UpstreamConfig {
  return { url: `${protocol}://127.0.0.1:${port}`, protocol, host: '127.0.0.1', address: '127.0.0.1', port, path: '/dns-query', server_name: '127.0.0.1', ca_file: null, ...extra };
}

function wire(name: string, type = 'A'): Query {
  const q = parseQuery(queryPacket(name, type));
  assert.ok(q && !isProblem(q));
  return q as Query;
}

async function exchange(u: Upstream, name: string, type = 'A', timeoutMs = 2000) {
  const q = wire(name, type);
  const { resp, info } = await u.exchange(q.msg, q.qEnd, q.qtype, timeoutMs);
  return { msg: dnsPacket.decode(resp), info };
}

const A = (name: string, ip: string, ttl = 60) => ({ name, type: 'A', ttl, data: ip }) as dnsPacket.Answer;

describe('upstream transports', () => {
  let dns: ScriptedDns;
  let cert: ReturnType<typeof selfSignedCert>;
  const opened: Upstream[] = [];
  const make = (cfg: UpstreamConfig) => {
    const u = new Upstream(cfg, 'default', HEALTH, 5000, log);
    opened.push(u);
    return u;
  };

  before(async () => {
    cert = selfSignedCert('dns.test');
    dns = await ScriptedDns.start({ cert: cert.cert, key: cert.key });
    dns.set('host.test', 'A', { answers: [A('host.test', '192.0.2.1')] });
    const big = Array.from({ length: 60 }, (_, i) => A('big.test', `192.0.2.${i + 1}`));
    dns.set('big.test', 'A', { answers: big });
  });
  after(async () => {
    for (const u of opened) u.close();
    await dns.close();
    cert.cleanup();
  });

  it('UDP: answers, and a truncated answer is fetched again over TCP', async () => {
    const u = make(upstream('udp', dns.port));
    assert.deepEqual(recs((await exchange(u, 'host.test')).msg.answers).map((a) => a.data), ['192.0.2.1']);
    const big = await exchange(u, 'big.test');
    assert.equal(big.info.truncated, false);
    assert.equal(big.msg.answers?.length, 60);
  });

  it('TCP: concurrent queries share one pipelined connection', async () => {
    const u = make(upstream('tcp', dns.port));
    const names = ['host.test', 'big.test', 'host.test', 'missing.test'];
    const results = await Promise.all(names.map((n) => exchange(u, n)));
    assert.deepEqual(results.map((r) => r.msg.answers?.length ?? 0), [1, 60, 1, 0]);
    assert.equal(results[3].info.rcode, 3);
  });

  it('DNS over TLS: verifies the certificate against the configured name', async () => {
    const good = make(upstream('tls', dns.tlsPort, { server_name: 'dns.test', ca_file: cert.certFile }));
    assert.deepEqual(recs((await exchange(good, 'host.test')).msg.answers).map((a) => a.data), ['192.0.2.1']);
    const wrongName = make(upstream('tls', dns.tlsPort, { server_name: 'other.test', ca_file: cert.certFile }));
    await assert.rejects(exchange(wrongName, 'host.test'), /connection failed: .*(Hostname|altnames)/);
    const untrusted = make(upstream('tls', dns.tlsPort, { server_name: 'dns.test' }));
    await assert.rejects(exchange(untrusted, 'host.test'), /connection failed: .*self.signed/i);
  });

  it('DNS over HTTPS: POSTs to a DoH server over HTTP/2', async () => {
    const cfg = defaultConfig();
    cfg.listen = { addresses: ['127.0.0.1'], port: 0, tcp: false };
    cfg.doh = { address: '127.0.0.1', port: 0, path: '/dns-query', tls: { cert_file: cert.certFile, key_file: cert.keyFile } };
    cfg.upstreams.groups.default = { strategy: 'fallback', timeout_ms: 2000, servers: [upstream('udp', dns.port)] };
    const doh = await NsServer.start({ config: cfg, log });
    try {
      const u = make(upstream('https', doh.dohPort!, { server_name: 'dns.test', ca_file: cert.certFile }));
      const r = await exchange(u, 'host.test');
      assert.deepEqual(recs(r.msg.answers).map((a) => a.data), ['192.0.2.1']);
      assert.equal((await exchange(u, 'missing.test')).info.rcode, 3);
      const s = await doh.stats();
      assert.equal(s.by_transport.doh, 2);
    } finally {
      await doh.close();
    }
  });
});

describe('health, strategies and routing', () => {
  let good: ScriptedDns;
  let slow: ScriptedDns;
  let deadPort: number;
  const groups: UpstreamGroup[] = [];

  before(async () => {
    good = await ScriptedDns.start();
    slow = await ScriptedDns.start();
    for (const s of [good, slow]) s.set('host.test', 'A', { answers: [A('host.test', s === good ? '192.0.2.1' : '192.0.2.99')] });
    slow.set('host.test', 'A', { answers: [A('host.test', '192.0.2.99')], delayMs: 300 });
    good.set('fail.test', 'A', { rcode: 2 });
    slow.set('fail.test', 'A', { answers: [A('fail.test', '192.0.2.7')] });
    deadPort = await freePort();
  });
  after(async () => {
    for (const g of groups) g.close();
    await good.close();
    await slow.close();
  });

  const group = (cfg: GroupConfig) => {
    const g = new UpstreamGroup('g', cfg, cfg.servers.map((s) => new Upstream(s, 'g', HEALTH, 5000, log)));
    groups.push(g);
    return g;
  };
  const resolve = async (g: UpstreamGroup, name: string) => {
    const q = wire(name);
    const r = await g.resolve(q.msg, q.qEnd, TYPE.A);
    return { upstream: r.upstream.cfg.port, data: recs(dnsPacket.decode(r.resp).answers).map((a) => a.data) };
  };

  it('fallback: passes a dead server, marks it down after repeated failures, then skips it', async () => {
    const g = group({ strategy: 'fallback', timeout_ms: 200, servers: [upstream('udp', deadPort), upstream('udp', good.port)] });
    const dead = g.upstreams[0];
    assert.deepEqual(await resolve(g, 'host.test'), { upstream: good.port, data: ['192.0.2.1'] });
    assert.equal(dead.isDown(Date.now()), false);
    await resolve(g, 'host.test');
    assert.equal(dead.isDown(Date.now()), true, `down after ${HEALTH.fail_threshold} failures in a row`);
    const before = dead.queries;
    await resolve(g, 'host.test');
    assert.equal(dead.queries, before, 'a down server is not asked while another is up');
  });

  it('fallback: SERVFAIL from one server moves on to the next, without counting against its health', async () => {
    const g = group({ strategy: 'fallback', timeout_ms: 1000, servers: [upstream('udp', good.port), upstream('udp', slow.port)] });
    assert.deepEqual(await resolve(g, 'fail.test'), { upstream: slow.port, data: ['192.0.2.7'] });
    assert.equal(g.upstreams[0].consecutive, 0);
  });

  it('parallel: the first usable answer wins', async () => {
    const g = group({ strategy: 'parallel', timeout_ms: 2000, servers: [upstream('udp', slow.port), upstream('udp', good.port)] });
    assert.deepEqual(await resolve(g, 'host.test'), { upstream: good.port, data: ['192.0.2.1'] });
  });

  it('fails with every server\'s reason when none can answer', async () => {
    const g = group({ strategy: 'parallel', timeout_ms: 150, servers: [upstream('udp', deadPort), upstream('tcp', deadPort)] });
    await assert.rejects(resolve(g, 'host.test'), (err: Error) => /no answer within 150 ms/.test(err.message) && /connection failed/.test(err.message));
  });

  it('routes the longest matching suffix to its group, and the rest to "default"', () => {
    const cfg = defaultConfig();
    const srv = [upstream('udp', good.port)];
    cfg.upstreams.groups = { default: { strategy: 'fallback', timeout_ms: 100, servers: srv }, corp: { strategy: 'fallback', timeout_ms: 100, servers: srv }, lab: { strategy: 'fallback', timeout_ms: 100, servers: srv } };
    cfg.routes = [{ suffix: 'corp.example', group: 'corp' }, { suffix: 'lab.corp.example', group: 'lab' }];
    const router = new Router(cfg, log);
    try {
      assert.equal(router.route('corp.example')?.name, 'corp');
      assert.equal(router.route('www.corp.example')?.name, 'corp');
      assert.equal(router.route('x.lab.corp.example')?.name, 'lab');
      assert.equal(router.route('notcorp.example')?.name, 'default');
      cfg.upstreams.groups = { corp: cfg.upstreams.groups.corp };
      cfg.routes = [{ suffix: 'corp.example', group: 'corp' }];
      const onlyCorp = new Router(cfg, log);
      assert.equal(onlyCorp.route('www.example'), undefined);
      onlyCorp.close();
    } finally {
      router.close();
    }
  });
});
