// The DHCPv4 server of cyfs-ns (RFC 2131), serving one subnet directly: DISCOVER/OFFER, REQUEST in every client
// state (selecting, init-reboot, renewing, rebinding) answered ACK or NAK, RELEASE, DECLINE and INFORM. Clients' host
// names become DNS names through `names`, a LocalRecordSource the DNS server consults like its other local data.
//
// Node has no SO_BINDTODEVICE or IP_PKTINFO, so the server cannot tell which interface a broadcast came in on. It
// receives on 0.0.0.0 (broadcasts reach only wildcard sockets), and sends from a second socket bound to its own
// address on the served subnet: Linux sends a limited broadcast out of the interface that owns the sending socket's
// address, so replies leave on the LAN and carry the right source even on a router with several interfaces.
import dgram from 'node:dgram';
import type { Logger } from '../../lib/log/logger.ts';
import type { DhcpConfig } from './dhcp-config.ts';
import { type Client, LeaseDb } from './dhcp-leases.ts';
import {
  BOOTREPLY, BOOTREQUEST, type DhcpMessage, DhcpParseError, HTYPE_ETHERNET, MSG, MSG_NAMES, OPT, decodeDhcp, encodeDhcp, formatMac,
  ipv4ToInt, messageType, optionIp,
} from './dhcp-packet.ts';
import { parseIPv4, reverseName } from './ip.ts';
import type { LocalRecordSource } from './local.ts';
import { CLASS_IN, type ResourceRecord, TYPE } from './wire.ts';

/** One line of the lease list (`DhcpServer.leases()`, the `ns.leases` kRPC method). */
export interface DhcpLeaseInfo {
  mac: string;
  address: string;
  /** The static lease's name, else the client's own host name. */
  hostname: string | null;
  /** Milliseconds since the epoch; null for a static lease, which never expires. */
  expires_at: number | null;
  static: boolean;
}

export interface DhcpServerOptions {
  config: DhcpConfig;
  log: Logger;
  /** TTL of the names registered in DNS. */
  ttl: number;
  /** The port replies go to (68); tests on loopback give a free one. */
  clientPort?: number;
}

const ZERO = '0.0.0.0';
const BROADCAST = '255.255.255.255';
/** setTimeout's limit; a longer wait for the next expiry is taken in steps. */
const MAX_TIMER_MS = 2 ** 31 - 1;
const LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

/**
 * The DNS label a client's host name (option 12) gives, or the reason it gives none. Clients send anything from
 * "Johns iPhone" to a full name with NUL padding: the first label is kept, lower-cased, with spaces and underscores
 * made hyphens; what is still not a label is refused rather than guessed at.
 */
export function hostLabel(raw: Buffer): string | { problem: string } {
  const text = raw.toString('latin1').replace(/\0+$/, '').trim();
  const label = text.split('.')[0].toLowerCase().replace(/[ _]/g, '-');
  if (LABEL.test(label)) return label;
  return { problem: `${JSON.stringify(text.slice(0, 80))} does not make a DNS label (letters, digits and "-", up to 63)` };
}

/** The names of active leases and named static leases: <name>.<domain> A, and the PTR of each address. */
export class DhcpNames implements LocalRecordSource {
  readonly label = 'dhcp';
  private byName = new Map<string, ResourceRecord[]>();
  private below = new Set<string>();
  private signature = '';
  private readonly listeners = new Set<() => void>();

  constructor(private readonly domain: string, private readonly ttl: number) {}

  /** Replaces the names; `entries` are (label, address) pairs. Listeners run only when something changed, since
   * each change empties the DNS server's memo and cache. */
  update(entries: readonly (readonly [string, string])[]): void {
    const signature = entries.map(([n, a]) => `${n}=${a}`).sort().join(',');
    if (signature === this.signature) return;
    this.signature = signature;
    const byName = new Map<string, ResourceRecord[]>();
    const below = new Set<string>();
    const add = (owner: string, rec: ResourceRecord) => {
      byName.set(owner, [...(byName.get(owner) ?? []), rec]);
      for (let i = owner.indexOf('.'); i >= 0; i = owner.indexOf('.', i + 1)) below.add(owner.slice(i + 1));
    };
    for (const [label, address] of entries) {
      const bytes = parseIPv4(address)!;
      const fqdn = `${label}.${this.domain}`;
      add(fqdn, { name: fqdn, type: TYPE.A, cls: CLASS_IN, ttl: this.ttl, data: { kind: 'ip', bytes } });
      const rev = reverseName(bytes);
      add(rev, { name: rev, type: TYPE.PTR, cls: CLASS_IN, ttl: this.ttl, data: { kind: 'name', name: fqdn } });
    }
    this.byName = byName;
    this.below = below;
    for (const f of this.listeners) f();
  }

  records(name: string): readonly ResourceRecord[] | undefined {
    return this.byName.get(name);
  }

  hasBelow(name: string): boolean {
    return this.below.has(name);
  }

  /** The DHCP domain is answered here completely: a name under it that no client has is NXDOMAIN, not forwarded. */
  authoritativeFor(): readonly string[] {
    return [this.domain];
  }

  names(): Iterable<string> {
    return this.byName.keys();
  }

  subscribe(onChange: () => void): () => void {
    this.listeners.add(onChange);
    return () => this.listeners.delete(onChange);
  }
}

function bindUdp(port: number, address: string, reuseAddr: boolean): Promise<dgram.Socket> {
  return new Promise((resolve, reject) => {
    const socket = dgram.createSocket({ type: 'udp4', reuseAddr });
    socket.once('error', (err) => {
      socket.close();
      reject(new Error(`DHCP: cannot bind UDP ${address}:${port}: ${err.message}`));
    });
    socket.bind(port, address, () => {
      socket.removeAllListeners('error');
      resolve(socket);
    });
  });
}

function ipOption(...ips: string[]): Buffer {
  const b = Buffer.alloc(4 * ips.length);
  ips.forEach((ip, i) => b.writeUInt32BE(ipv4ToInt(ip)!, i * 4));
  return b;
}

function u32(v: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(v, 0);
  return b;
}

export class DhcpServer {
  readonly names: DhcpNames;
  /** The port bound (the configured one, or the kernel's choice for 0). */
  port = 0;
  private readonly db: LeaseDb;
  private readonly cfg: DhcpConfig;
  private readonly log: Logger;
  private readonly clientPort: number;
  private readonly mask: number;
  private readonly net: number;
  private readonly namedStatics: Set<string>;
  private sockets: dgram.Socket[] = [];
  private out: dgram.Socket | null = null;
  private timer: NodeJS.Timeout | null = null;
  private closed = false;

  private constructor(opts: DhcpServerOptions) {
    this.cfg = opts.config;
    this.log = opts.log;
    this.clientPort = opts.clientPort ?? 68;
    this.mask = ipv4ToInt(this.cfg.range.netmask)!;
    this.net = (ipv4ToInt(this.cfg.interface_address)! & this.mask) >>> 0;
    this.namedStatics = new Set(this.cfg.static.filter((s) => s.name !== null).map((s) => s.mac));
    this.names = new DhcpNames(this.cfg.domain, opts.ttl);
    this.db = new LeaseDb({
      start: this.cfg.range.start, end: this.cfg.range.end, statics: this.cfg.static, leaseTime: this.cfg.lease_time, file: this.cfg.lease_file,
    });
  }

  /** Loads the lease file, rewrites it (proving it writable), binds the sockets; throws when any of it fails. */
  static async start(opts: DhcpServerOptions): Promise<DhcpServer> {
    const s = new DhcpServer(opts);
    for (const p of s.db.problems) s.log.warn({ problem: p, file: s.cfg.lease_file }, 'DHCP lease left out');
    if (s.cfg.lease_file === null) s.log.warn('DHCP has no lease_file: leases are forgotten on restart');
    try {
      await s.db.persist();
      await s.bind();
    } catch (err) {
      await s.close();
      throw err;
    }
    s.publish();
    s.log.info(
      { port: s.port, address: s.cfg.interface_address, range: `${s.cfg.range.start}-${s.cfg.range.end}`, leases: s.db.active().length },
      'DHCP server started',
    );
    return s;
  }

  private async bind(): Promise<void> {
    // The two sockets below must share the port (SO_REUSEADDR), which would also let them share it with another DHCP
    // server (a dnsmasq still running) without a word; a plain bind first fails in that case.
    const probe = await bindUdp(this.cfg.port, ZERO, false);
    this.port = probe.address().port;
    await new Promise<void>((r) => probe.close(r));
    const any = await bindUdp(this.port, ZERO, true);
    this.sockets.push(any);
    const own = await bindUdp(this.port, this.cfg.interface_address, true);
    this.sockets.push(own);
    own.setBroadcast(true);
    this.out = own;
    for (const s of this.sockets) {
      s.on('message', (msg, from) => {
        this.handle(msg, from).catch((err: unknown) => this.log.error({ err: err instanceof Error ? err.stack : String(err) }, 'DHCP request failed'));
      });
      s.on('error', (err) => this.log.warn({ err: err.message }, 'DHCP socket error'));
    }
  }

  /** Every static lease, and every dynamic lease bound and not expired, by address. */
  leases(): DhcpLeaseInfo[] {
    const active = this.db.active();
    const out: DhcpLeaseInfo[] = this.cfg.static.map((s) => ({
      mac: s.mac, address: s.address, hostname: s.name ?? active.find((l) => l.address === s.address)?.hostname ?? null, expires_at: null, static: true,
    }));
    const statics = new Set(this.cfg.static.map((s) => s.address));
    for (const l of active) {
      if (!statics.has(l.address)) out.push({ mac: l.mac, address: l.address, hostname: l.hostname, expires_at: l.expires, static: false });
    }
    return out.sort((a, b) => ipv4ToInt(a.address)! - ipv4ToInt(b.address)!);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    await Promise.all(this.sockets.map((s) => new Promise<void>((r) => s.close(r))));
    this.sockets = [];
    if (this.out) await this.saved();
  }

  private async handle(msg: Buffer, from: dgram.RemoteInfo): Promise<void> {
    let m: DhcpMessage;
    try {
      m = decodeDhcp(msg);
    } catch (err) {
      if (!(err instanceof DhcpParseError)) throw err;
      this.log.warn({ from: `${from.address}:${from.port}`, reason: err.message }, 'DHCP: dropped a malformed packet');
      return;
    }
    const type = messageType(m);
    const drop = (why: string) => this.log.debug({ from: `${from.address}:${from.port}`, type: MSG_NAMES[type ?? 0] || 'BOOTP', why }, 'DHCP: ignored a packet');
    if (m.op !== BOOTREQUEST) return drop('not a request');
    if (m.htype !== HTYPE_ETHERNET || m.hlen !== 6) return drop(`hardware type ${m.htype} length ${m.hlen}: only Ethernet is served`);
    if (m.giaddr !== ZERO) return drop('relayed (giaddr set): only the directly attached subnet is served');
    if (type === undefined) return drop('BOOTP without a DHCP message type is not served');
    const client: Client = { mac: formatMac(m.chaddr), clientId: m.options.get(OPT.CLIENT_ID)?.toString('hex') ?? null };
    switch (type) {
      case MSG.DISCOVER:
        return this.discover(m, client);
      case MSG.REQUEST:
        return this.request(m, client, drop);
      case MSG.DECLINE:
        return this.decline(m, client, drop);
      case MSG.RELEASE:
        return this.release(m, client);
      case MSG.INFORM:
        return this.inform(m, client, drop);
      default:
        return drop('a server\'s message');
    }
  }

  private hostname(m: DhcpMessage, c: Client): string | null {
    const raw = m.options.get(OPT.HOST_NAME);
    if (!raw) return null;
    const label = hostLabel(raw);
    if (typeof label === 'string') return label;
    this.log.info({ mac: c.mac, problem: label.problem }, 'DHCP: client host name ignored');
    return null;
  }

  private inSubnet(address: string): boolean {
    const v = ipv4ToInt(address);
    return v !== undefined && ((v & this.mask) >>> 0) === this.net;
  }

  private discover(m: DhcpMessage, c: Client): void {
    const lease = this.db.offer(c, optionIp(m, OPT.REQUESTED_IP) ?? null, this.hostname(m, c));
    if (!lease) {
      this.log.warn({ mac: c.mac }, 'DHCP: no free address to offer (every range address is leased, offered or declined)');
      return;
    }
    this.log.info({ mac: c.mac, address: lease.address, hostname: lease.hostname }, 'DHCPOFFER');
    this.send(m, MSG.OFFER, lease.address);
  }

  private async request(m: DhcpMessage, c: Client, drop: (why: string) => void): Promise<void> {
    const serverId = optionIp(m, OPT.SERVER_ID);
    if (serverId !== undefined && serverId !== this.cfg.interface_address) {
      this.db.cancelOffer(c);
      return drop(`the client chose server ${serverId}`);
    }
    // Selecting and init-reboot name the address in option 50; renewing and rebinding clients in ciaddr.
    const address = optionIp(m, OPT.REQUESTED_IP) ?? (m.ciaddr !== ZERO ? m.ciaddr : undefined);
    if (address === undefined) return drop('a REQUEST naming no address');
    const state = serverId !== undefined ? 'selecting' : m.ciaddr === ZERO ? 'init-reboot' : 'renewing';
    const lease = this.inSubnet(address) ? this.db.commit(c, address, this.hostname(m, c)) : `${address} is not on this network`;
    if (typeof lease === 'string') {
      this.log.info({ mac: c.mac, address, state, why: lease }, 'DHCPNAK');
      this.send(m, MSG.NAK, ZERO, lease);
      return;
    }
    this.publish();
    await this.saved();
    this.log.info({ mac: c.mac, address, hostname: lease.hostname, state }, 'DHCPACK');
    this.send(m, MSG.ACK, lease.address);
  }

  private async decline(m: DhcpMessage, c: Client, drop: (why: string) => void): Promise<void> {
    const serverId = optionIp(m, OPT.SERVER_ID);
    if (serverId !== undefined && serverId !== this.cfg.interface_address) return drop(`meant for server ${serverId}`);
    const address = optionIp(m, OPT.REQUESTED_IP);
    if (address === undefined || !this.db.decline(c, address)) return drop(`declines ${address ?? 'no address'}, which the client does not hold`);
    this.log.warn({ mac: c.mac, address }, 'DHCPDECLINE: another host uses this address; it is not handed out for 10 minutes');
    this.publish();
    await this.saved();
  }

  private async release(m: DhcpMessage, c: Client): Promise<void> {
    if (!this.db.release(c, m.ciaddr)) return;
    this.log.info({ mac: c.mac, address: m.ciaddr }, 'DHCPRELEASE');
    this.publish();
    await this.saved();
  }

  /** A client with an address of its own asks for the other parameters (RFC 2131 §3.4): no lease, no yiaddr. */
  private inform(m: DhcpMessage, c: Client, drop: (why: string) => void): void {
    if (m.ciaddr === ZERO || !this.inSubnet(m.ciaddr)) return drop(`an INFORM from ciaddr ${m.ciaddr}, not on this network`);
    this.log.debug({ mac: c.mac, address: m.ciaddr }, 'DHCPINFORM');
    this.send(m, MSG.ACK, ZERO);
  }

  /** Writes the lease file; a failure is logged and the reply still goes out: an unwritable disk must not take the
   * LAN's addresses down with it. */
  private async saved(): Promise<void> {
    try {
      await this.db.persist();
    } catch (err) {
      this.log.error({ err: (err as Error).message, file: this.cfg.lease_file }, 'DHCP: cannot write the lease file');
    }
  }

  /** Publishes the names of static leases and active leases, and wakes up again when the next lease expires. The
   * newest lease wins a name two clients claim; a static lease's name is never taken. */
  private publish(): void {
    if (this.closed) return;
    const entries: [string, string][] = [];
    const taken = new Set<string>();
    for (const s of this.cfg.static) {
      if (s.name === null) continue;
      entries.push([s.name, s.address]);
      taken.add(s.name);
    }
    const active = this.db.active().sort((a, b) => b.expires - a.expires);
    for (const l of active) {
      if (l.hostname === null || taken.has(l.hostname) || this.namedStatics.has(l.mac)) continue;
      taken.add(l.hostname);
      entries.push([l.hostname, l.address]);
    }
    this.names.update(entries);
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    if (active.length === 0) return;
    const next = Math.min(...active.map((l) => l.expires));
    this.timer = setTimeout(() => this.publish(), Math.min(MAX_TIMER_MS, Math.max(0, next - Date.now()) + 10));
    this.timer.unref();
  }

  /**
   * Sends a reply as RFC 2131 §4.1 says, for clients on the subnet: NAKs and replies to clients without an address
   * are broadcast (a client not yet configured cannot take unicast without an ARP entry Node cannot make), others
   * go to ciaddr.
   */
  private send(req: DhcpMessage, type: number, yiaddr: string, message?: string): void {
    const cfg = this.cfg;
    const options = new Map<number, Buffer>([
      [OPT.MESSAGE_TYPE, Buffer.from([type])],
      [OPT.SERVER_ID, ipOption(cfg.interface_address)],
    ]);
    if (type === MSG.NAK) {
      if (message) options.set(OPT.MESSAGE, Buffer.from(message, 'latin1'));
    } else {
      if (type !== MSG.ACK || yiaddr !== ZERO) {
        options.set(OPT.LEASE_TIME, u32(cfg.lease_time));
        options.set(OPT.T1, u32(Math.floor(cfg.lease_time / 2)));
        options.set(OPT.T2, u32(Math.floor((cfg.lease_time * 7) / 8)));
      }
      options.set(OPT.SUBNET_MASK, ipOption(cfg.range.netmask));
      options.set(OPT.ROUTER, ipOption(cfg.router));
      options.set(OPT.DNS_SERVERS, ipOption(...cfg.dns_servers));
      options.set(OPT.DOMAIN_NAME, Buffer.from(cfg.domain, 'latin1'));
    }
    // RFC 6842: a client identifier comes back as it was sent.
    const clientId = req.options.get(OPT.CLIENT_ID);
    if (clientId) options.set(OPT.CLIENT_ID, clientId);
    const reply: DhcpMessage = {
      op: BOOTREPLY, htype: req.htype, hlen: req.hlen, hops: 0, xid: req.xid, secs: 0, flags: req.flags,
      ciaddr: type === MSG.ACK ? req.ciaddr : ZERO, yiaddr, siaddr: ZERO, giaddr: ZERO, chaddr: req.chaddr, sname: '', file: '', options,
    };
    const to = type === MSG.NAK || req.ciaddr === ZERO ? BROADCAST : req.ciaddr;
    const out = this.out;
    if (!out || this.closed) return;
    out.send(encodeDhcp(reply), this.clientPort, to, (err) => {
      if (err) this.log.warn({ err: err.message, to, type: MSG_NAMES[type] }, 'DHCP: cannot send a reply');
    });
  }
}
