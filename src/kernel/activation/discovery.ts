// LAN discovery of unactivated devices (docs/ui-activation.md): each announces its activation page over mDNS as a
// DNS-SD service `_buckyos._tcp` (RFC 6762/6763) and listens for the others, so the activation page one device serves
// can list the rest; a browser cannot do mDNS itself. Only unactivated devices announce: the activation service says
// goodbye (TTL 0) when the device is activated or stops.
import { randomBytes } from 'node:crypto';
import type { RemoteInfo } from 'node:dgram';
import { isIPv4, isIPv6 } from 'node:net';
import { networkInterfaces } from 'node:os';
import makeMdns from 'multicast-dns';
import type { Answer } from 'dns-packet';
import type { DiscoveredDevice } from '../../lib/api/activation.ts';
import type { Logger } from '../../lib/log/logger.ts';

export const SERVICE_TYPE = '_buckyos._tcp.local';
/** RFC 6762 §10: two minutes for records naming a host or service. */
export const RECORD_TTL_SEC = 120;
/** How often the LAN is asked again while the service runs, beside the asks `discover` triggers. */
const REQUERY_MS = 60_000;
/** `discover` asks the LAN at most this often; answers arriving later show in the next call. */
const MIN_QUERY_INTERVAL_MS = 2_000;

/** What this device announces. */
export interface SelfAnnouncement {
  /** The DNS-SD instance label: the device name plus a random suffix, since devices on one LAN may share a name. */
  instance: string;
  name: string;
  port: number;
  version: string;
  /** IPv4 addresses announced as the A records of `<instance>.local`. */
  addresses: string[];
}

const fqdn = (instance: string) => `${instance}.${SERVICE_TYPE}`;
const hostName = (instance: string) => `${instance}.local`;

/** The PTR, SRV, TXT and A records announcing `self`; with `ttl` 0 they say goodbye. */
export function announcementRecords(self: SelfAnnouncement, ttl = RECORD_TTL_SEC): Answer[] {
  const name = fqdn(self.instance);
  const target = hostName(self.instance);
  return [
    { name: SERVICE_TYPE, type: 'PTR', ttl, data: name },
    // Cache-flush bit: these records are this device's alone (RFC 6762 §10.2).
    { name, type: 'SRV', ttl, flush: true, data: { priority: 0, weight: 0, port: self.port, target } },
    { name, type: 'TXT', ttl, flush: true, data: ['v=1', `name=${self.name}`, `version=${self.version}`, 'activated=0'] },
    ...self.addresses.map((a): Answer => ({ name: target, type: 'A', ttl, flush: true, data: a })),
  ];
}

/** One device heard in a response: `ttl` 0 is a goodbye. */
export interface HeardDevice {
  instance: string;
  name: string;
  address: string;
  port: number;
  version: string;
  ttl: number;
}

function txtFields(data: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  for (const item of Array.isArray(data) ? data : [data]) {
    const text = typeof item === 'string' ? item : item instanceof Uint8Array ? Buffer.from(item).toString('utf8') : '';
    const eq = text.indexOf('=');
    if (eq > 0) out[text.slice(0, eq).toLowerCase()] = text.slice(eq + 1);
  }
  return out;
}

const INSTANCE = /^[a-z0-9-]{1,63}$/;

/**
 * The devices a response announces. The address is the one the response came from (it reached us, so it is on our
 * link), not the A records, which may name interfaces we cannot reach. Records of anything else are ignored, as are
 * announcements whose fields do not make sense.
 */
export function parseResponse(records: readonly Answer[], from: string): HeardDevice[] {
  const out: HeardDevice[] = [];
  for (const ptr of records) {
    if (ptr.type !== 'PTR' || ptr.name.toLowerCase() !== SERVICE_TYPE || typeof ptr.data !== 'string') continue;
    const name = ptr.data;
    if (!name.toLowerCase().endsWith(`.${SERVICE_TYPE}`)) continue;
    const instance = name.slice(0, -(SERVICE_TYPE.length + 1));
    if (!INSTANCE.test(instance)) continue;
    const ttl = ptr.ttl ?? 0;
    const srv = records.find((r) => r.type === 'SRV' && r.name.toLowerCase() === name.toLowerCase());
    const txt = records.find((r) => r.type === 'TXT' && r.name.toLowerCase() === name.toLowerCase());
    const fields = txt && txt.type === 'TXT' ? txtFields(txt.data) : {};
    const port = srv && srv.type === 'SRV' ? srv.data.port : 0;
    if (ttl > 0 && (!Number.isInteger(port) || port < 1 || port > 65535 || fields.activated === '1')) continue;
    out.push({ instance, name: fields.name ?? instance, address: from, port, version: fields.version ?? '', ttl });
  }
  return out;
}

/** The devices heard so far, each until its announcement's TTL runs out or it says goodbye. */
export class DiscoveryTable {
  private readonly entries = new Map<string, { device: DiscoveredDevice; expiresAt: number }>();

  constructor(private readonly selfInstance: string) {}

  add(heard: readonly HeardDevice[], now = Date.now()): void {
    for (const h of heard) {
      if (h.instance === this.selfInstance) continue;
      if (h.ttl === 0) {
        this.entries.delete(h.instance);
        continue;
      }
      const host = isIPv6(h.address) ? `[${h.address}]` : h.address;
      this.entries.set(h.instance, {
        device: { name: h.name, address: h.address, port: h.port, url: `http://${host}:${h.port}/`, version: h.version, seen_at: now },
        expiresAt: now + h.ttl * 1000,
      });
    }
  }

  /** The live entries, by name then address. */
  list(now = Date.now()): DiscoveredDevice[] {
    for (const [k, e] of this.entries) if (e.expiresAt <= now) this.entries.delete(k);
    return [...this.entries.values()].map((e) => e.device).sort((a, b) => a.name.localeCompare(b.name) || a.address.localeCompare(b.address));
  }
}

/** Non-internal IPv4 addresses of this machine (in a network namespace: the namespace's). */
export function lanAddresses(): string[] {
  return Object.values(networkInterfaces())
    .flat()
    .filter((a) => a !== undefined && !a.internal && isIPv4(a.address))
    .map((a) => a!.address);
}

export interface Discovery {
  readonly instance: string;
  /** False once stopped, or when the mDNS socket could not be opened. */
  searching(): boolean;
  /** The other devices heard; asks the LAN again (at most every 2 s) so the next call knows more. */
  list(): DiscoveredDevice[];
  /** Says goodbye and closes the socket. */
  stop(): Promise<void>;
}

export interface DiscoveryOptions {
  name: string;
  port: number;
  version: string;
  log?: Logger;
  /** Defaults to lanAddresses(), read at each announcement (addresses come and go). */
  addresses?: () => string[];
}

export function startDiscovery(opts: DiscoveryOptions): Discovery {
  const instance = `${opts.name}-${randomBytes(3).toString('hex')}`;
  const self = (): SelfAnnouncement => ({ instance, name: opts.name, port: opts.port, version: opts.version, addresses: (opts.addresses ?? lanAddresses)() });
  const table = new DiscoveryTable(instance);
  const mdns = makeMdns({ reuseAddr: true });
  let up = false;
  let stopped = false;
  let lastQuery = 0;
  const timers: NodeJS.Timeout[] = [];
  const warn = (err: Error, what: string) => opts.log?.warn({ err: err.message }, what);

  const announce = () => {
    if (!stopped) mdns.respond({ answers: announcementRecords(self()) }, (err) => err && warn(err, 'mDNS announcement not sent'));
  };
  const ask = () => {
    if (stopped || !up) return;
    lastQuery = Date.now();
    mdns.query({ questions: [{ name: SERVICE_TYPE, type: 'PTR' }] }, (err) => err && warn(err, 'mDNS query not sent'));
  };

  mdns.on('ready', () => {
    up = true;
    opts.log?.info({ instance, service: SERVICE_TYPE, port: opts.port }, 'announcing this unactivated device on the LAN (mDNS)');
    // RFC 6762 §8.3: announce at least twice, a second apart; ask at once so the list fills without waiting.
    announce();
    ask();
    timers.push(setTimeout(announce, 1000), setInterval(ask, REQUERY_MS));
  });
  mdns.on('error', (err: Error) => {
    up = false;
    opts.log?.warn({ err: err.message }, 'mDNS is unavailable: this device will not be listed by others, nor list them');
  });
  mdns.on('warning', (err: Error) => opts.log?.debug({ err: err.message }, 'mDNS warning'));
  mdns.on('query', (q) => {
    const mine = new Set([SERVICE_TYPE, fqdn(instance), hostName(instance)]);
    if (q.questions.some((x) => mine.has(x.name.toLowerCase()))) announce();
  });
  mdns.on('response', (r, rinfo: RemoteInfo) => {
    table.add(parseResponse([...(r.answers ?? []), ...(r.additionals ?? [])], rinfo.address));
  });

  return {
    instance,
    searching: () => up && !stopped,
    list() {
      if (Date.now() - lastQuery >= MIN_QUERY_INTERVAL_MS) ask();
      return table.list();
    },
    stop() {
      if (stopped) return Promise.resolve();
      stopped = true;
      for (const t of timers) clearTimeout(t);
      return new Promise<void>((resolve) => {
        const close = () => mdns.destroy(() => resolve());
        if (!up) return close();
        // Goodbye (RFC 6762 §10.1): the others drop this device at once instead of listing it for two minutes.
        mdns.respond({ answers: announcementRecords(self(), 0) }, () => close());
      });
    },
  };
}
