// The server end to end, in this process, against a scripted upstream on loopback: every transport, EDNS and
// truncation, caching (positive, negative, shared misses), serve-stale, prefetch, blocking per client, local names
// with chains into upstream data, statistics, the query log, reload, and worker processes; UDP both through the
// batched-UDP addon and through node:dgram (what runs where the addon is not built).
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import dnsPacket from 'dns-packet';
import { type NsConfig, defaultConfig } from './config.ts';
import { NsServer, workerExecArgv } from './server.ts';
import { loadUdpBatch } from './udp-batch.ts';
import { checkNs, startNs } from './main.ts';
import { ScriptedDns, ask, decodeAnswer, queryPacket, sendTcp, sendUdp, soa } from './testing.suite.ts';

const log = pino({ level: 'silent' });
const A = (name: string, ip: string, ttl = 300) => ({ name, type: 'A', ttl, data: ip }) as dnsPacket.Answer;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const addon = loadUdpBatch();
const UDP_PATHS = [
  { label: 'batched UDP', udpBatch: true, skip: 'reason' in addon ? addon.reason : false },
  { label: 'node:dgram', udpBatch: false, skip: false },
] as const;

async function until(what: string, check: () => boolean | Promise<boolean>): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if (await check()) return;
    await sleep(25);
  }
  assert.fail(`timed out waiting until ${what}`);
}

function baseConfig(upstreamPort: number | null, dir: string): NsConfig {
  const c = defaultConfig();
  c.listen = { addresses: ['127.0.0.1'], port: 0, tcp: true };
  c.doh = { address: '127.0.0.1', port: 0, path: '/dns-query', tls: null };
  if (upstreamPort !== null) {
    c.upstreams.groups.default = {
      strategy: 'fallback', timeout_ms: 400,
      servers: [{ url: `udp://127.0.0.1:${upstreamPort}`, protocol: 'udp', host: '127.0.0.1', address: '127.0.0.1', port: upstreamPort, path: '', server_name: '127.0.0.1', ca_file: null }],
    };
  }
  c.upstreams.health = { fail_threshold: 1000, down_ms: 1000 };
  c.local.domains = ['lan'];
  c.local.hosts_files = [join(dir, 'hosts')];
  c.local.records = [
    { name: 'nas.lan', type: 'A', value: '192.168.1.10', ttl: null, line: 1 },
    { name: 'big.lan', type: 'TXT', value: Array.from({ length: 12 }, (_, i) => `${i}`.padEnd(200, 'x')), ttl: null, line: 2 },
    { name: 'cdn.lan', type: 'CNAME', value: 'cdn.upstream.test', ttl: 120, line: 3 },
  ];
  c.cache.serve_stale = { enabled: true, max_stale: 3600, answer_ttl: 30, client_timeout_ms: 100, retry_after: 30 };
  c.cache.prefetch = { enabled: true, min_hits: 1, threshold: 0.9 };
  return c;
}

for (const { label, udpBatch, skip } of UDP_PATHS) describe(`cyfs-ns server, ${label}`, { skip }, () => {
  let dir: string;
  let up: ScriptedDns;
  let ns: NsServer;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'ns-server-'));
    writeFileSync(join(dir, 'hosts'), '10.0.0.5 printer.lan\n');
    writeFileSync(join(dir, 'block.txt'), '||ads.test^\n');
    up = await ScriptedDns.start();
    up.set('www.upstream.test', 'A', { answers: [A('www.upstream.test', '192.0.2.10')] });
    up.set('cdn.upstream.test', 'A', { answers: [A('cdn.upstream.test', '192.0.2.20', 60)] });
    up.set('gone.upstream.test', 'A', { rcode: 3, authorities: [soa('upstream.test', 300)] });
    up.set('nosoa.upstream.test', 'A', { rcode: 3 });
    up.set('slow.upstream.test', 'A', { answers: [A('slow.upstream.test', '192.0.2.30')], delayMs: 150 });
    up.set('broken.upstream.test', 'A', { rcode: 2 });
    up.set('ads.test', 'A', { answers: [A('ads.test', '192.0.2.66')] });
    const cfg = baseConfig(up.port, dir);
    cfg.blocking.lists = [{ name: 'ads', file: join(dir, 'block.txt') }];
    cfg.blocking.policies = [{ name: 'kids', lists: ['ads'], allow: [], deny: [], answer: 'zero_ip' }];
    cfg.blocking.clients = [{ cidr: '127.0.0.2', policy: 'kids' }];
    ns = await NsServer.start({ config: cfg, log, udpBatch });
  });

  after(async () => {
    await ns.close();
    await up.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('answers local names over UDP, TCP and DNS over HTTPS (GET and POST)', async () => {
    const udp = await ask(ns.port, 'NAS.lan', 'A');
    assert.deepEqual(udp.answers.map((a) => a.data), ['192.168.1.10']);
    assert.equal(udp.msg.questions?.[0].name, 'NAS.lan', 'the question comes back as asked');
    assert.equal(udp.msg.flag_aa, true);
    const tcp = await ask(ns.port, 'printer.lan', 'A', { tcp: true });
    assert.deepEqual(tcp.answers.map((a) => a.data), ['10.0.0.5']);
    const q = queryPacket('nas.lan', 'A', { id: 0 });
    const get = await fetch(`http://127.0.0.1:${ns.dohPort}/dns-query?dns=${q.toString('base64url')}`);
    assert.equal(get.status, 200);
    assert.equal(get.headers.get('content-type'), 'application/dns-message');
    assert.equal(get.headers.get('cache-control'), 'max-age=300');
    assert.deepEqual(decodeAnswer(Buffer.from(await get.arrayBuffer())).answers.map((a) => a.data), ['192.168.1.10']);
    const post = await fetch(`http://127.0.0.1:${ns.dohPort}/dns-query`, { method: 'POST', headers: { 'content-type': 'application/dns-message' }, body: new Uint8Array(q) });
    assert.deepEqual(decodeAnswer(Buffer.from(await post.arrayBuffer())).answers.map((a) => a.data), ['192.168.1.10']);
  });

  it('refuses malformed DNS over HTTPS requests with the right status', async () => {
    const base = `http://127.0.0.1:${ns.dohPort}`;
    assert.equal((await fetch(`${base}/dns-query`)).status, 400);
    assert.equal((await fetch(`${base}/dns-query?dns=***`)).status, 400);
    assert.equal((await fetch(`${base}/dns-query?dns=AAAA`)).status, 400, 'too short to be a query');
    assert.equal((await fetch(`${base}/elsewhere`)).status, 404);
    assert.equal((await fetch(`${base}/dns-query`, { method: 'PUT' })).status, 405);
    assert.equal((await fetch(`${base}/dns-query`, { method: 'POST', headers: { 'content-type': 'text/plain' }, body: 'x' })).status, 415);
    const huge = await fetch(`${base}/dns-query`, { method: 'POST', headers: { 'content-type': 'application/dns-message' }, body: Buffer.alloc(70000) });
    assert.equal(huge.status, 413);
  });

  it('speaks EDNS: advertises its size, and truncates what does not fit (TC), which TCP then carries', async () => {
    const edns = await ask(ns.port, 'nas.lan', 'A', { edns: 4096 });
    const opt = edns.msg.additionals?.find((a) => a.type === 'OPT') as dnsPacket.OptAnswer;
    assert.equal(opt.udpPayloadSize, 1232);
    const noEdns = await ask(ns.port, 'big.lan', 'TXT', { edns: false });
    assert.equal(noEdns.msg.flag_tc, true);
    assert.equal(noEdns.answers.length, 0);
    assert.equal((await ask(ns.port, 'big.lan', 'TXT', { edns: 1232 })).msg.flag_tc, true, 'larger than 1232 too');
    const big = await ask(ns.port, 'big.lan', 'TXT', { tcp: true });
    assert.equal(big.msg.flag_tc, false);
    assert.equal((big.answers[0].data as Buffer[]).length, 12);
  });

  it('answers malformed queries with FORMERR and stays silent for responses', async () => {
    const bad = queryPacket('x.lan', 'A', { edns: false });
    bad.writeUInt16BE(2, 4);
    const r = await sendUdp(ns.port, bad);
    assert.ok(r);
    assert.equal(r.readUInt16BE(2) & 0xf, 1);
    const response = queryPacket('x.lan', 'A');
    response[2] |= 0x80;
    assert.equal(await sendUdp(ns.port, response, { timeoutMs: 300 }), null);
  });

  it('forwards, caches, and counts TTLs down from the cache', async () => {
    const first = await ask(ns.port, 'www.upstream.test', 'A');
    assert.deepEqual(first.answers.map((a) => a.data), ['192.0.2.10']);
    assert.equal(first.msg.flag_ra, true);
    const second = await ask(ns.port, 'WWW.upstream.test', 'A');
    assert.deepEqual(second.answers.map((a) => a.data), ['192.0.2.10']);
    assert.ok((second.answers[0].ttl ?? 0) <= 300);
    assert.equal(up.count('www.upstream.test', 'A'), 1);
  });

  it('caches NXDOMAIN with an SOA (RFC 2308), and not without one', async () => {
    for (let i = 0; i < 2; i++) assert.equal((await ask(ns.port, 'gone.upstream.test', 'A')).rcode, 3);
    assert.equal(up.count('gone.upstream.test', 'A'), 1);
    for (let i = 0; i < 2; i++) assert.equal((await ask(ns.port, 'nosoa.upstream.test', 'A')).rcode, 3);
    assert.equal(up.count('nosoa.upstream.test', 'A'), 2);
  });

  it('sends concurrent misses for one question upstream once', async () => {
    const answers = await Promise.all(Array.from({ length: 8 }, () => ask(ns.port, 'slow.upstream.test', 'A')));
    assert.ok(answers.every((a) => a.answers[0]?.data === '192.0.2.30'));
    assert.equal(up.count('slow.upstream.test', 'A'), 1);
  });

  it('refuses zone transfers rather than relaying them', async () => {
    assert.equal((await ask(ns.port, 'lan', 'AXFR', { tcp: true })).rcode, 5);
  });

  it('answers SERVFAIL when the upstreams cannot answer', async () => {
    assert.equal((await ask(ns.port, 'broken.upstream.test', 'A')).rcode, 2);
  });

  it('follows a local CNAME into upstream data', async () => {
    const r = await ask(ns.port, 'cdn.lan', 'A');
    assert.deepEqual(r.answers.map((a) => `${a.name} ${a.type} ${a.data}`), ['cdn.lan CNAME cdn.upstream.test', 'cdn.upstream.test A 192.0.2.20']);
  });

  it('blocks by the client\'s policy: 0.0.0.0 for the kids\' address, NXDOMAIN from the default list for others', async () => {
    const kids = await ask(ns.port, 'ads.test', 'A', { localAddress: '127.0.0.2' });
    assert.deepEqual(kids.answers.map((a) => a.data), ['0.0.0.0']);
    const kidsV6 = await ask(ns.port, 'www.ads.test', 'AAAA', { localAddress: '127.0.0.2' });
    assert.deepEqual(kidsV6.answers.map((a) => a.data), ['::']);
    assert.equal((await ask(ns.port, 'ads.test', 'A')).rcode, 3);
    assert.equal(up.count('ads.test', 'A'), 0);
  });

  it('keeps statistics: sources, transports, top names, blocked names and latency', async () => {
    const s = await ns.stats();
    assert.equal(s.processes, 1);
    assert.ok(s.queries >= 20);
    assert.ok(s.by_source.local > 0 && s.by_source.cache > 0 && s.by_source.upstream > 0 && s.by_source.blocked === 3);
    assert.ok(s.by_transport.udp > 0 && s.by_transport.tcp > 0 && s.by_transport.doh > 0);
    assert.ok(s.rcodes.NXDOMAIN > 0 && s.rcodes.SERVFAIL > 0 && s.rcodes.FORMERR > 0);
    assert.equal(s.dropped, 1);
    assert.ok(s.truncated >= 2);
    assert.ok(s.top_names.some((t) => t.name === 'slow.upstream.test A' && t.count >= 8));
    assert.deepEqual(s.top_blocked.map((t) => t.name).sort(), ['ads.test', 'www.ads.test']);
    assert.ok(s.latency.p50_ms > 0 && s.latency.p99_ms >= s.latency.p50_ms);
    assert.equal(s.cache.entries > 0, true);
    assert.deepEqual(s.block_lists, [{ name: 'ads', rules: 1, unusable_lines: 0 }]);
    assert.equal(s.upstreams[0].label, `udp://127.0.0.1:${up.port}`);
  });

  it('re-reads hosts files on reload', async () => {
    writeFileSync(join(dir, 'hosts'), '10.0.0.6 printer.lan\n');
    ns.reload();
    assert.deepEqual((await ask(ns.port, 'printer.lan', 'A')).answers.map((a) => a.data), ['10.0.0.6']);
  });
});

describe('cyfs-ns when upstreams fail and time passes', () => {
  let dir: string;
  let up: ScriptedDns;
  let ns: NsServer;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'ns-stale-'));
    writeFileSync(join(dir, 'hosts'), '');
    up = await ScriptedDns.start();
    up.set('short.test', 'A', { answers: [A('short.test', '192.0.2.1', 1)] });
    up.set('popular.test', 'A', { answers: [A('popular.test', '192.0.2.2', 10)] });
    ns = await NsServer.start({ config: baseConfig(up.port, dir), log });
  });
  after(async () => {
    await ns.close();
    await up.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('serves an expired answer (TTL 30) when the upstream stops answering, and refreshes popular ones early', async () => {
    assert.equal((await ask(ns.port, 'short.test', 'A')).answers[0].ttl, 1);
    await ask(ns.port, 'popular.test', 'A');
    // Past the 1 s TTL, and a second into popular.test's 10 s, inside its prefetch window (threshold 0.9).
    await sleep(1100);
    await ask(ns.port, 'popular.test', 'A');
    await until('the popular answer was refreshed', () => up.count('popular.test', 'A') === 2);
    up.dead = true;
    const stale = await ask(ns.port, 'short.test', 'A');
    assert.deepEqual(stale.answers.map((a) => [a.data, a.ttl]), [['192.0.2.1', 30]]);
    const again = await ask(ns.port, 'short.test', 'A');
    assert.equal(again.answers[0].ttl, 30, 'served stale at once after the failed refresh');
    assert.equal((await ask(ns.port, 'never.test', 'A')).rcode, 2, 'nothing stale to serve: SERVFAIL');
    const s = await ns.stats();
    assert.equal(s.cache.stale_served, 2);
    assert.ok(s.cache.prefetches >= 1);
  });
});

describe('cyfs-ns with no upstream, a query log and worker processes', () => {
  let dir: string;

  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'ns-workers-'));
    writeFileSync(join(dir, 'hosts'), '10.0.0.7 box.lan\n');
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('refuses names it cannot forward, as dnsmasq does without servers', async () => {
    const ns = await NsServer.start({ config: baseConfig(null, dir), log });
    try {
      assert.equal((await ask(ns.port, 'elsewhere.example', 'A')).rcode, 5);
      assert.equal((await ask(ns.port, 'nas.lan', 'A')).rcode, 0);
    } finally {
      await ns.close();
    }
  });

  it('logs every query to the query log', async () => {
    const cfg = baseConfig(null, dir);
    cfg.query_log.enabled = true;
    cfg.log = { level: 'error', dir: join(dir, 'logs') };
    const { server: ns } = await startNs(cfg);
    try {
      await ask(ns.port, 'nas.lan', 'A');
      await ask(ns.port, 'missing.lan', 'AAAA', { tcp: true });
      const logDir = join(dir, 'logs', 'cyfs-ns-queries');
      const read = () => readdirSync(logDir).map((f) => readFileSync(join(logDir, f), 'utf8')).join('');
      await until('both queries are in the log', () => read().split('\n').filter(Boolean).length >= 2);
      const lines = read().split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);
      assert.deepEqual(
        lines.map((l) => [l.name, l.type, l.rcode, l.source, l.transport, l.client]),
        [['nas.lan', 'A', 'NOERROR', 'local', 'udp', '127.0.0.1'], ['missing.lan', 'AAAA', 'NXDOMAIN', 'local', 'tcp', '127.0.0.1']],
      );
    } finally {
      await ns.close();
    }
  });

  for (const { label, udpBatch, skip } of UDP_PATHS) {
    it(`shares the UDP socket with worker processes and merges their statistics (${label})`, { skip }, async () => {
      const cfg = baseConfig(null, dir);
      cfg.workers = 2;
      const ns = await NsServer.start({ config: cfg, log, udpBatch });
      try {
        const answers = await Promise.all(Array.from({ length: 200 }, (_, i) => ask(ns.port, i % 2 ? 'box.lan' : 'nas.lan', 'A')));
        assert.ok(answers.every((a) => a.rcode === 0 && a.answers.length === 1));
        const s = await ns.stats();
        assert.equal(s.processes, 2);
        assert.equal(s.queries, 200);
        assert.ok(await sendTcp(ns.port, queryPacket('nas.lan', 'A')));
      } finally {
        await ns.close();
      }
    });
  }

  it('passes workers only the loader, heap and compiler flags, never -e or test flags', () => {
    assert.deepEqual(
      workerExecArgv(['--import', 'tsx', '--max-semi-space-size=1', '--single-threaded', '--no-sparkplug', '--input-type=module', '-e', 'code()', '--test-reporter=spec', '--require=x.cjs']),
      ['--import', 'tsx', '--max-semi-space-size=1', '--single-threaded', '--no-sparkplug', '--require=x.cjs'],
    );
  });

  it('checks a configuration file and every file it names without starting', async () => {
    writeFileSync(join(dir, 'list.txt'), '||ads.example^\nexample.com##.banner\n');
    writeFileSync(join(dir, 'ns.yaml'), `local: { hosts_files: [hosts] }\nblocking: { lists: [{ name: ads, file: list.txt }] }\n`);
    const r = await checkNs(join(dir, 'ns.yaml'));
    assert.deepEqual(r.blockLists, [{ name: 'ads', rules: 1 }]);
    assert.deepEqual(r.unusable, [`${join(dir, 'list.txt')}:2: cosmetic (element hiding) rules do not apply to DNS`]);
    writeFileSync(join(dir, 'ns.yaml'), 'blocking: { lists: [{ name: ads, file: missing.txt }] }\n');
    await assert.rejects(checkNs(join(dir, 'ns.yaml')), /block list "ads" \(.*missing\.txt\): ENOENT/);
  });

  it('refuses to start when a port is taken, naming it', async () => {
    const first = await NsServer.start({ config: baseConfig(null, dir), log });
    try {
      const cfg = baseConfig(null, dir);
      cfg.listen.port = first.port;
      await assert.rejects(NsServer.start({ config: cfg, log }), new RegExp(`cannot listen on UDP 127\\.0\\.0\\.1:${first.port}`));
    } finally {
      await first.close();
    }
  });
});

describe('cyfs-ns batched UDP', { skip: UDP_PATHS[0].skip }, () => {
  let dir: string;
  let ns: NsServer;
  const logged: { client: string; name: string }[] = [];

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'ns-batch-'));
    writeFileSync(join(dir, 'hosts'), Array.from({ length: 50 }, (_, i) => `10.0.1.${i} h${i}.lan\n`).join(''));
    const cfg = baseConfig(null, dir);
    cfg.listen.addresses = ['127.0.0.1', '::1'];
    const queryLog = pino({ level: 'info' }, { write: (line: string) => logged.push(JSON.parse(line) as { client: string; name: string }) });
    ns = await NsServer.start({ config: cfg, log, queryLog, udpBatch: true });
  });
  after(async () => {
    await ns.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('answers bursts from many clients, each its own answers, IPv6 clients too', async () => {
    // All sent at once, they wait in the socket's receive buffer together (which holds about 150 at the default
    // size) and come out in batches.
    const PER_CLIENT = 16;
    const socket = (type: 'udp4' | 'udp6', host: string) =>
      new Promise<dgram.Socket>((resolve) => {
        const s = dgram.createSocket(type);
        s.bind(0, host, () => resolve(s));
      });
    const clients = await Promise.all([...Array.from({ length: 7 }, () => socket('udp4', '127.0.0.1')), socket('udp6', '::1')]);
    try {
      const bursts = clients.map((s, c) => {
        const host = c === 7 ? '::1' : '127.0.0.1';
        const answers = new Map<number, string>();
        const done = new Promise<void>((resolve) => {
          s.on('message', (m) => {
            const a = decodeAnswer(m);
            answers.set(a.msg.id ?? -1, `${a.msg.questions?.[0].name} ${a.answers[0]?.data}`);
            if (answers.size === PER_CLIENT) resolve();
          });
        });
        for (let i = 0; i < PER_CLIENT; i++) s.send(queryPacket(`h${(c * PER_CLIENT + i) % 50}.lan`, 'A', { id: c * 1000 + i }), ns.port, host);
        return done.then(() => answers);
      });
      const results = await Promise.race([Promise.all(bursts), sleep(5000).then(() => null)]);
      assert.ok(results, 'every query answered');
      results.forEach((answers, c) => {
        for (let i = 0; i < PER_CLIENT; i++) {
          const n = (c * PER_CLIENT + i) % 50;
          assert.equal(answers.get(c * 1000 + i), `h${n}.lan 10.0.1.${n}`);
        }
      });
      await until('the query log has every query', () => logged.length >= 8 * PER_CLIENT);
      assert.equal(logged.filter((l) => l.client === '::1').length, PER_CLIENT);
      assert.equal(logged.filter((l) => l.client === '127.0.0.1').length, 7 * PER_CLIENT);
    } finally {
      for (const s of clients) s.close();
    }
  });

  it('sends nothing, and fails nothing, when an upstream answer comes after the server closed', async () => {
    const up = await ScriptedDns.start();
    up.set('late.test', 'A', { answers: [A('late.test', '192.0.2.9')], delayMs: 200 });
    const late = await NsServer.start({ config: baseConfig(up.port, dir), log, udpBatch: true });
    try {
      const answer = sendUdp(late.port, queryPacket('late.test', 'A'), { timeoutMs: 600 });
      await until('the query went upstream', () => up.count('late.test', 'A') === 1);
      await late.close();
      assert.equal(await answer, null);
    } finally {
      await up.close();
    }
  });

  it('takes queries of up to 4,096 bytes, and drops larger datagrams unanswered', async () => {
    const padded = (size: number) =>
      dnsPacket.encode({
        type: 'query', id: 77, flags: dnsPacket.RECURSION_DESIRED, questions: [{ name: 'h7.lan', type: 'A' }],
        additionals: [{ name: '.', type: 'OPT', udpPayloadSize: 1232, flags: 0, options: [{ code: 12, data: Buffer.alloc(size) }] } as unknown as dnsPacket.Answer],
      });
    const big = padded(4000);
    assert.ok(big.length > 4000 && big.length <= 4096);
    const answer = await sendUdp(ns.port, big);
    assert.ok(answer);
    assert.deepEqual(decodeAnswer(answer).answers.map((a) => a.data), ['10.0.1.7']);
    const before = (await ns.stats()).dropped;
    assert.equal(await sendUdp(ns.port, padded(5000), { timeoutMs: 300 }), null);
    assert.equal((await ns.stats()).dropped, before + 1);
  });
});
