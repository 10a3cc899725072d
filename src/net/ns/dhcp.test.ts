// The DHCP server in this process over real UDP sockets on loopback (127.0.0.0/24 stands in for the LAN: the kernel
// loops limited broadcasts sent from 127.0.0.1 back to local sockets): every message type and client state, where
// replies go (broadcast, or unicast to ciaddr), static leases, names registered, released, expired and kept across a
// restart, malformed packets dropped, and the whole of it through startNs with the DNS server answering the names.
// The same server against a real client (udhcpc) in network namespaces is test/ns-dhcp.test.ts.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import pino from 'pino';
import { defaultConfig } from './config.ts';
import type { DhcpConfig } from './dhcp-config.ts';
import { BOOTREQUEST, type DhcpMessage, FLAG_BROADCAST, MSG, OPT, decodeDhcp, encodeDhcp, messageType, optionIp } from './dhcp-packet.ts';
import { DhcpServer, hostLabel } from './dhcp.ts';
import { startNs } from './start.ts';
import { ask } from './testing.suite.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const STATIC_MAC = '02:00:00:00:00:2a';

async function until(what: string, check: () => boolean | Promise<boolean>): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if (await check()) return;
    await sleep(25);
  }
  assert.fail(`timed out waiting until ${what}`);
}

function dhcpConfig(dir: string, over: Partial<DhcpConfig> = {}): DhcpConfig {
  return {
    interface_address: '127.0.0.1', port: 0, range: { start: '127.0.0.100', end: '127.0.0.120', netmask: '255.255.255.0' },
    lease_time: 600, router: '127.0.0.1', dns_servers: ['127.0.0.1'], domain: 'lan', lease_file: join(dir, 'leases.json'),
    static: [{ mac: STATIC_MAC, address: '127.0.0.50', name: 'nas' }], ...over,
  };
}

interface Got {
  m: DhcpMessage;
  /** "any": arrived on the socket bound to 0.0.0.0 (a broadcast, or unicast to an address nobody bound);
   * "unicast": on the socket bound to the client's leased address. */
  via: 'any' | 'unicast';
}

/** The client side: a socket on the client port, and one more bound to a leased address to see unicast arrive. */
class Clients {
  private sockets: dgram.Socket[] = [];
  private got: Got[] = [];
  private wake: (() => void) | null = null;
  port = 0;
  private xid = 1;

  async open(address = '0.0.0.0'): Promise<void> {
    const s = dgram.createSocket({ type: 'udp4', reuseAddr: true });
    await new Promise<void>((r) => s.bind(this.port, address, r));
    this.port = s.address().port;
    s.on('message', (msg) => {
      this.got.push({ m: decodeDhcp(msg), via: address === '0.0.0.0' ? 'any' : 'unicast' });
      this.wake?.();
    });
    this.sockets.push(s);
  }

  close(): void {
    for (const s of this.sockets) s.close();
  }

  /** Sends a request from the client `mac`, and resolves its reply (null after `waitMs` without one). */
  async ask(serverPort: number, type: number, mac: string, o: { ciaddr?: string; requested?: string; serverId?: string; hostname?: string; clientId?: boolean; giaddr?: string } = {}, waitMs = 2000): Promise<Got | null> {
    const xid = this.xid++;
    const options = new Map<number, Buffer>([[OPT.MESSAGE_TYPE, Buffer.from([type])]]);
    const ip = (s: string) => Buffer.from(s.split('.').map(Number));
    if (o.requested) options.set(OPT.REQUESTED_IP, ip(o.requested));
    if (o.serverId) options.set(OPT.SERVER_ID, ip(o.serverId));
    if (o.hostname) options.set(OPT.HOST_NAME, Buffer.from(o.hostname));
    if (o.clientId !== false) options.set(OPT.CLIENT_ID, Buffer.from(`01${mac.replace(/:/g, '')}`, 'hex'));
    const m: DhcpMessage = {
      op: BOOTREQUEST, htype: 1, hlen: 6, hops: 0, xid, secs: 0, flags: 0, ciaddr: o.ciaddr ?? '0.0.0.0', yiaddr: '0.0.0.0', siaddr: '0.0.0.0',
      giaddr: o.giaddr ?? '0.0.0.0', chaddr: Buffer.concat([Buffer.from(mac.replace(/:/g, ''), 'hex'), Buffer.alloc(10)]), sname: '', file: '', options,
    };
    this.sockets[0].send(encodeDhcp(m), serverPort, '127.0.0.1');
    const deadline = Date.now() + waitMs;
    for (;;) {
      const i = this.got.findIndex((g) => g.m.xid === xid);
      if (i >= 0) return this.got.splice(i, 1)[0];
      const left = deadline - Date.now();
      if (left <= 0) return null;
      await new Promise<void>((r) => {
        const t = setTimeout(r, left);
        this.wake = () => {
          clearTimeout(t);
          r();
        };
      });
    }
  }

  raw(serverPort: number, b: Buffer): void {
    this.sockets[0].send(b, serverPort, '127.0.0.1');
  }
}

/** DISCOVER then REQUEST (selecting): the address leased. */
async function lease(c: Clients, port: number, mac: string, hostname?: string): Promise<string> {
  const offer = await c.ask(port, MSG.DISCOVER, mac, { hostname });
  assert.ok(offer, `no OFFER for ${mac}`);
  const ack = await c.ask(port, MSG.REQUEST, mac, { requested: offer.m.yiaddr, serverId: '127.0.0.1', hostname });
  assert.equal(ack && messageType(ack.m), MSG.ACK);
  return ack!.m.yiaddr;
}

function logCapture(): { log: pino.Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const stream = new Writable({
    write(chunk, _enc, done) {
      lines.push(JSON.parse(String(chunk)));
      done();
    },
  });
  return { log: pino({ level: 'debug' }, stream), lines };
}

const aRecord = (s: DhcpServer, name: string) => {
  const r = s.names.records(name)?.find((x) => x.type === 1);
  return r && r.data.kind === 'ip' ? Array.from(r.data.bytes).join('.') : undefined;
};
const ptrRecord = (s: DhcpServer, address: string) => {
  const rev = `${address.split('.').reverse().join('.')}.in-addr.arpa`;
  const r = s.names.records(rev)?.[0];
  return r && r.data.kind === 'name' ? r.data.name : undefined;
};

describe('DHCP server', () => {
  let dir: string;
  let c: Clients;
  let server: DhcpServer;
  const logs = logCapture();
  let laptop = '';

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'dhcp-'));
    c = new Clients();
    await c.open();
    server = await DhcpServer.start({ config: dhcpConfig(dir), log: logs.log, ttl: 60, clientPort: c.port });
  });

  after(async () => {
    await server?.close();
    c?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('leases an address: DISCOVER, OFFER, REQUEST, ACK, with the options, and registers the host name', async () => {
    const mac = '02:00:00:00:00:01';
    const offer = await c.ask(server.port, MSG.DISCOVER, mac, { hostname: 'Laptop' });
    assert.ok(offer);
    assert.equal(offer.via, 'any', 'broadcast to a client without an address');
    const m = offer.m;
    assert.equal(messageType(m), MSG.OFFER);
    const last = Number(m.yiaddr.split('.')[3]);
    assert.ok(last >= 100 && last <= 120, m.yiaddr);
    assert.equal(optionIp(m, OPT.SERVER_ID), '127.0.0.1');
    assert.equal(optionIp(m, OPT.SUBNET_MASK), '255.255.255.0');
    assert.equal(optionIp(m, OPT.ROUTER), '127.0.0.1');
    assert.equal(optionIp(m, OPT.DNS_SERVERS), '127.0.0.1');
    assert.equal(m.options.get(OPT.DOMAIN_NAME)!.toString(), 'lan');
    assert.deepEqual([OPT.LEASE_TIME, OPT.T1, OPT.T2].map((o) => m.options.get(o)!.readUInt32BE(0)), [600, 300, 525]);
    assert.equal(m.options.get(OPT.CLIENT_ID)!.toString('hex'), '010200000000' + '01', 'RFC 6842: client id echoed');
    assert.equal(aRecord(server, 'laptop.lan'), undefined, 'an offer registers no name');

    const ack = await c.ask(server.port, MSG.REQUEST, mac, { requested: m.yiaddr, serverId: '127.0.0.1', hostname: 'Laptop' });
    assert.equal(messageType(ack!.m), MSG.ACK);
    assert.equal(ack!.m.yiaddr, m.yiaddr);
    assert.equal(ack!.m.options.get(OPT.LEASE_TIME)!.readUInt32BE(0), 600);
    laptop = m.yiaddr;
    assert.equal(aRecord(server, 'laptop.lan'), laptop);
    assert.equal(ptrRecord(server, laptop), 'laptop.lan');
    const listed = server.leases().find((l) => l.mac === mac)!;
    assert.deepEqual({ ...listed, expires_at: 0 }, { mac, address: laptop, hostname: 'laptop', expires_at: 0, static: false });
    assert.ok(listed.expires_at! > Date.now() + 590_000);
    const file = JSON.parse(readFileSync(join(dir, 'leases.json'), 'utf8'));
    assert.deepEqual(file.leases.map((l: { address: string; hostname: string }) => [l.address, l.hostname]), [[laptop, 'laptop']], 'on disk before the ACK');
  });

  it('renews by unicast to ciaddr, and answers init-reboot', async () => {
    const mac = '02:00:00:00:00:01';
    await c.open(laptop);
    const renew = await c.ask(server.port, MSG.REQUEST, mac, { ciaddr: laptop });
    assert.equal(messageType(renew!.m), MSG.ACK);
    assert.equal(renew!.via, 'unicast');
    assert.equal(renew!.m.ciaddr, laptop);
    const reboot = await c.ask(server.port, MSG.REQUEST, mac, { requested: laptop });
    assert.equal(messageType(reboot!.m), MSG.ACK);
    assert.equal(reboot!.via, 'any');
    assert.equal(aRecord(server, 'laptop.lan'), laptop, 'the name stays when the REQUEST carries none');
  });

  it('NAKs, by broadcast, addresses a client cannot have', async () => {
    const elsewhere = await c.ask(server.port, MSG.REQUEST, '02:00:00:00:00:02', { requested: '10.1.2.3' });
    assert.equal(messageType(elsewhere!.m), MSG.NAK);
    assert.equal(elsewhere!.m.options.get(OPT.MESSAGE)!.toString(), '10.1.2.3 is not on this network');
    assert.equal(elsewhere!.m.yiaddr, '0.0.0.0');
    assert.equal(elsewhere!.m.options.has(OPT.LEASE_TIME), false);
    const taken = await c.ask(server.port, MSG.REQUEST, '02:00:00:00:00:02', { ciaddr: laptop });
    assert.equal(messageType(taken!.m), MSG.NAK);
    assert.equal(taken!.via, 'any', 'NAKs are broadcast even to a client with ciaddr');
    assert.match(taken!.m.options.get(OPT.MESSAGE)!.toString(), /leased to another client/);
  });

  it('stays silent when the client chose another server, and frees the offer', async () => {
    const offer = await c.ask(server.port, MSG.DISCOVER, '02:00:00:00:00:03');
    // Silence is the expected outcome; the short wait only bounds how long the test looks for a reply.
    assert.equal(await c.ask(server.port, MSG.REQUEST, '02:00:00:00:00:03', { requested: offer!.m.yiaddr, serverId: '127.0.0.9' }, 300), null);
    const other = await c.ask(server.port, MSG.REQUEST, '02:00:00:00:00:04', { requested: offer!.m.yiaddr });
    assert.equal(messageType(other!.m), MSG.ACK, 'the offered address was free again');
  });

  it('gives a static client its address, registered under the static name from the start', async () => {
    assert.equal(aRecord(server, 'nas.lan'), '127.0.0.50');
    assert.equal(ptrRecord(server, '127.0.0.50'), 'nas.lan');
    const offer = await c.ask(server.port, MSG.DISCOVER, STATIC_MAC, { hostname: 'storage' });
    assert.equal(offer!.m.yiaddr, '127.0.0.50');
    await lease(c, server.port, STATIC_MAC, 'storage');
    assert.equal(aRecord(server, 'storage.lan'), undefined);
    const listed = server.leases().filter((l) => l.static);
    assert.deepEqual(listed, [{ mac: STATIC_MAC, address: '127.0.0.50', hostname: 'nas', expires_at: null, static: true }]);
  });

  it('removes the name of a released lease, and gives the client the same address again', async () => {
    const mac = '02:00:00:00:00:05';
    const a = await lease(c, server.port, mac, 'phone');
    assert.equal(aRecord(server, 'phone.lan'), a);
    assert.equal(await c.ask(server.port, MSG.RELEASE, mac, { ciaddr: a, serverId: '127.0.0.1' }, 200), null);
    await until('the name is gone', () => aRecord(server, 'phone.lan') === undefined);
    assert.equal(ptrRecord(server, a), undefined);
    assert.equal((await c.ask(server.port, MSG.DISCOVER, mac))!.m.yiaddr, a);
  });

  it('keeps a declined address from the next client', async () => {
    const mac = '02:00:00:00:00:06';
    const a = await lease(c, server.port, mac);
    await c.ask(server.port, MSG.DECLINE, mac, { requested: a, serverId: '127.0.0.1' }, 200);
    await until('the decline is recorded', () => !server.leases().some((l) => l.address === a));
    const next = await c.ask(server.port, MSG.REQUEST, '02:00:00:00:00:07', { requested: a });
    assert.equal(messageType(next!.m), MSG.NAK);
    assert.match(next!.m.options.get(OPT.MESSAGE)!.toString(), /declined/);
  });

  it('answers INFORM with the options and no lease', async () => {
    const r = await c.ask(server.port, MSG.INFORM, '02:00:00:00:00:08', { ciaddr: '127.0.0.77' });
    assert.equal(messageType(r!.m), MSG.ACK);
    assert.equal(r!.m.yiaddr, '0.0.0.0');
    assert.equal(r!.m.options.has(OPT.LEASE_TIME), false);
    assert.equal(optionIp(r!.m, OPT.ROUTER), '127.0.0.1');
  });

  it('drops malformed and unserved packets with a reason, ignores bad host names, and keeps serving', async () => {
    const before = logs.lines.length;
    c.raw(server.port, Buffer.from('not dhcp at all'));
    const discover = encodeDhcp({
      op: BOOTREQUEST, htype: 1, hlen: 6, hops: 0, xid: 99, secs: 0, flags: FLAG_BROADCAST, ciaddr: '0.0.0.0', yiaddr: '0.0.0.0', siaddr: '0.0.0.0',
      giaddr: '0.0.0.0', chaddr: Buffer.alloc(16, 9), sname: '', file: '', options: new Map([[OPT.MESSAGE_TYPE, Buffer.from([MSG.DISCOVER])]]),
    });
    c.raw(server.port, discover.subarray(0, 239));
    c.raw(server.port, Buffer.concat([discover.subarray(0, 240), Buffer.from([53, 1, 1, 12, 40, 65])]));
    assert.equal(await c.ask(server.port, MSG.DISCOVER, '02:00:00:00:00:09', { giaddr: '127.0.0.9' }, 200), null, 'relayed requests are not served');
    const r = await c.ask(server.port, MSG.DISCOVER, '02:00:00:00:00:0a', { hostname: 'bad/name!' });
    assert.equal(messageType(r!.m), MSG.OFFER, 'still serving');
    await c.ask(server.port, MSG.REQUEST, '02:00:00:00:00:0a', { requested: r!.m.yiaddr, serverId: '127.0.0.1', hostname: 'bad/name!' });
    assert.equal(server.leases().find((l) => l.mac === '02:00:00:00:00:0a')!.hostname, null);
    const said = logs.lines.slice(before).map((l) => `${l.msg} ${l.reason ?? l.why ?? l.problem ?? ''}`);
    assert.ok(said.includes('DHCP: dropped a malformed packet 15 bytes is too short: a DHCP message has at least 240'), said.join('\n'));
    assert.ok(said.includes('DHCP: dropped a malformed packet option 12 in the options field (length 40) runs past the end of the field'), said.join('\n'));
    assert.ok(said.includes('DHCP: ignored a packet relayed (giaddr set): only the directly attached subnet is served'), said.join('\n'));
    assert.ok(said.some((s) => s.startsWith('DHCP: client host name ignored "bad/name!"')), said.join('\n'));
  });

  it('refuses to share its port with another DHCP server', async () => {
    await assert.rejects(DhcpServer.start({ config: dhcpConfig(dir, { port: server.port, lease_file: null }), log: pino({ level: 'silent' }), ttl: 60 }), /cannot bind UDP 0\.0\.0\.0:\d+/);
  });

  it('keeps leases and names across a restart', async () => {
    await server.close();
    server = await DhcpServer.start({ config: dhcpConfig(dir), log: logs.log, ttl: 60, clientPort: c.port });
    assert.equal(aRecord(server, 'laptop.lan'), laptop);
    assert.ok(server.leases().some((l) => l.address === laptop && l.hostname === 'laptop'));
    const again = await c.ask(server.port, MSG.DISCOVER, '02:00:00:00:00:01');
    assert.equal(again!.m.yiaddr, laptop);
  });

  it('removes a name when its lease expires', async () => {
    const short = mkdtempSync(join(tmpdir(), 'dhcp-short-'));
    const s = await DhcpServer.start({ config: dhcpConfig(short, { lease_time: 1 }), log: pino({ level: 'silent' }), ttl: 60, clientPort: c.port });
    try {
      const a = await lease(c, s.port, '02:00:00:00:00:0b', 'brief');
      assert.equal(aRecord(s, 'brief.lan'), a);
      let changes = 0;
      s.names.subscribe(() => changes++);
      await until('the name expires', () => aRecord(s, 'brief.lan') === undefined);
      assert.equal(changes, 1);
    } finally {
      await s.close();
      rmSync(short, { recursive: true, force: true });
    }
  });
});

describe('host names from option 12', () => {
  it('makes a DNS label of what clients send, or says why not', () => {
    assert.equal(hostLabel(Buffer.from('Johns iPhone')), 'johns-iphone');
    assert.equal(hostLabel(Buffer.from('DESKTOP-AB12.corp.example\0\0')), 'desktop-ab12');
    assert.equal(hostLabel(Buffer.from('my_pc')), 'my-pc');
    for (const bad of ['-x', 'a/b', 'x'.repeat(64), '', 'caf\xe9']) assert.equal(typeof hostLabel(Buffer.from(bad, 'latin1')), 'object', bad);
  });
});

describe('DHCP through startNs', () => {
  it('registers client names in the DNS server and stops with it', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'dhcp-ns-'));
    const config = defaultConfig();
    config.listen = { addresses: ['127.0.0.1'], port: 0, tcp: false };
    config.dhcp = dhcpConfig(dir);
    const ns = await startNs(config, { log: pino({ level: 'silent' }) });
    const c = new Clients();
    try {
      await c.open();
      const port = ns.dhcp!.port;
      // startNs replies to the real client port, 68, where nobody listens here: the REQUEST alone binds the lease.
      void c.ask(port, MSG.REQUEST, '02:00:00:00:00:0c', { requested: '127.0.0.111', hostname: 'tv' }, 0);
      await until('the lease is bound', () => ns.dhcp!.leases().some((l) => l.hostname === 'tv'));
      const a = await ask(ns.server.port, 'tv.lan', 'A');
      assert.deepEqual(a.answers.map((r) => r.data), ['127.0.0.111']);
      assert.ok(a.flags & 0x0400, 'authoritative');
      const ptr = await ask(ns.server.port, '111.0.0.127.in-addr.arpa', 'PTR');
      assert.deepEqual(ptr.answers.map((r) => r.data), ['tv.lan']);
      assert.deepEqual((await ask(ns.server.port, 'nas.lan', 'A')).answers.map((r) => r.data), ['127.0.0.50']);
      assert.equal((await ask(ns.server.port, 'nobody.lan', 'A')).rcode, 3, 'NXDOMAIN: the DHCP domain is answered here');
    } finally {
      c.close();
      await ns.close();
    }
    const port = ns.dhcp!.port;
    const rebound = dgram.createSocket('udp4');
    await new Promise<void>((resolve, reject) => {
      rebound.once('error', reject);
      rebound.bind(port, '0.0.0.0', resolve);
    });
    rebound.close();
    rmSync(dir, { recursive: true, force: true });
  });
});
