// The `dhcp:` section of the cyfs-ns configuration, validated as config.ts validates the rest: every problem with its
// line and key path, unknown keys are errors. A DHCP server with a wrong subnet or two clients on one static address
// breaks a whole LAN, so the addresses are checked against each other here rather than discovered at run time.
import { type Reader, type YamlNode } from './config-reader.ts';
import { intToIpv4, ipv4ToInt } from './dhcp-packet.ts';
import { domainProblem } from './records.ts';
import { normalizeName } from './wire.ts';

export interface DhcpStatic {
  /** Lower case, colon-separated. */
  mac: string;
  address: string;
  /** A DNS label, registered as <name>.<domain> whether or not the client is on the LAN. */
  name: string | null;
}

export interface DhcpConfig {
  /** This server's address on the served subnet: the server identifier, and the default router and DNS server. */
  interface_address: string;
  port: number;
  range: { start: string; end: string; netmask: string };
  /** Seconds. */
  lease_time: number;
  router: string;
  dns_servers: string[];
  domain: string;
  /** Absolute; null keeps leases in memory only. */
  lease_file: string | null;
  static: DhcpStatic[];
}

/** More than a /16 of dynamic addresses is not a LAN; the bound also caps the lease table and each address search. */
const MAX_RANGE = 65536;
const LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

export function normaliseMac(s: string): string | undefined {
  const m = /^([0-9a-fA-F]{2})([:-])([0-9a-fA-F]{2})\2([0-9a-fA-F]{2})\2([0-9a-fA-F]{2})\2([0-9a-fA-F]{2})\2([0-9a-fA-F]{2})$/.exec(s);
  return m ? [m[1], m[3], m[4], m[5], m[6], m[7]].join(':').toLowerCase() : undefined;
}

/** The prefix length of a contiguous netmask, or undefined. */
function prefixOf(mask: number): number | undefined {
  const inv = ~mask >>> 0;
  return (inv & (inv + 1)) === 0 ? 32 - Math.log2(inv + 1) : undefined;
}

/** Parses `dhcp:`; null when absent or too broken to use (the problems are then in `r`). */
export function parseDhcpConfig(r: Reader, node: YamlNode | null, abs: (p: string) => string): DhcpConfig | null {
  const m = r.map(node, 'dhcp', ['interface_address', 'port', 'range', 'lease_time', 'router', 'dns_servers', 'domain', 'lease_file', 'static']);
  if (!m) return null;
  const ip = (n: YamlNode | null | undefined, path: string): number | undefined => {
    const s = r.str(n, path);
    if (s === undefined) return undefined;
    const v = ipv4ToInt(s);
    if (v === undefined) r.err(n, path, `"${s}" is not an IPv4 address`);
    return v;
  };
  const required = (k: string) => {
    if (!m.has(k)) r.err(node, 'dhcp', `needs ${k}`);
    return m.has(k);
  };

  const iface = required('interface_address') ? ip(m.get('interface_address'), 'dhcp.interface_address') : undefined;
  let range: { start: number; end: number; mask: number } | undefined;
  if (required('range')) {
    const rn = m.get('range');
    const rm = r.map(rn, 'dhcp.range', ['start', 'end', 'netmask']);
    if (rm) {
      for (const k of ['start', 'end', 'netmask']) if (!rm.has(k)) r.err(rn, 'dhcp.range', `needs ${k}`);
      const start = rm.has('start') ? ip(rm.get('start'), 'dhcp.range.start') : undefined;
      const end = rm.has('end') ? ip(rm.get('end'), 'dhcp.range.end') : undefined;
      let mask = rm.has('netmask') ? ip(rm.get('netmask'), 'dhcp.range.netmask') : undefined;
      if (mask !== undefined) {
        const prefix = prefixOf(mask);
        if (prefix === undefined || prefix < 8 || prefix > 30) {
          r.err(rm.get('netmask'), 'dhcp.range.netmask', `${intToIpv4(mask)} is not a netmask from /8 to /30 (contiguous ones, then zeros)`);
          mask = undefined;
        }
      }
      if (start !== undefined && end !== undefined && mask !== undefined) {
        if (start > end) r.err(rn, 'dhcp.range', `start ${intToIpv4(start)} is after end ${intToIpv4(end)}`);
        else if (end - start + 1 > MAX_RANGE) r.err(rn, 'dhcp.range', `${end - start + 1} addresses; at most ${MAX_RANGE}`);
        else range = { start, end, mask };
      }
    }
  }

  // Everything else is checked against the subnet, known once interface_address and the netmask are.
  const subnet = iface !== undefined && range ? { net: (iface & range.mask) >>> 0, mask: range.mask } : undefined;
  const onLink = (v: number, n: YamlNode | null | undefined, path: string, what = 'an address'): boolean => {
    if (!subnet) return true;
    const bcast = (subnet.net | ~subnet.mask) >>> 0;
    const why =
      ((v & subnet.mask) >>> 0) !== subnet.net ? `is outside the subnet ${intToIpv4(subnet.net)}/${prefixOf(subnet.mask)}`
      : v === subnet.net ? 'is the network address of the subnet'
      : v === bcast ? 'is the broadcast address of the subnet'
      : undefined;
    if (why) r.err(n, path, `${intToIpv4(v)} ${why}; ${what} must be a host address on it`);
    return why === undefined;
  };
  if (iface !== undefined && range) {
    onLink(iface, m.get('interface_address'), 'dhcp.interface_address');
    const rn = m.get('range');
    const startOk = onLink(range.start, rn, 'dhcp.range.start', 'the range');
    const endOk = onLink(range.end, rn, 'dhcp.range.end', 'the range');
    if (startOk && endOk && iface >= range.start && iface <= range.end) {
      r.err(rn, 'dhcp.range', `includes interface_address ${intToIpv4(iface)}; the server's own address cannot be handed out`);
    }
  }

  const port = m.has('port') ? r.int(m.get('port'), 'dhcp.port', 1, 65535) : 67;
  const leaseTime = m.has('lease_time') ? r.int(m.get('lease_time'), 'dhcp.lease_time', 120, 31_536_000) : 43_200;
  let router = iface;
  if (m.has('router')) {
    router = ip(m.get('router'), 'dhcp.router');
    if (router !== undefined) onLink(router, m.get('router'), 'dhcp.router', 'the router');
  }
  let dns = iface === undefined ? [] : [iface];
  if (m.has('dns_servers')) {
    const list = r.strList(m.get('dns_servers'), 'dhcp.dns_servers');
    dns = [];
    list.forEach((s, i) => {
      const v = ipv4ToInt(s);
      if (v === undefined) r.err(m.get('dns_servers'), `dhcp.dns_servers[${i}]`, `"${s}" is not an IPv4 address`);
      else dns.push(v);
    });
    if (list.length === 0) r.err(m.get('dns_servers'), 'dhcp.dns_servers', 'must list at least one address');
  }
  let domain = 'lan';
  if (m.has('domain')) {
    const d = r.str(m.get('domain'), 'dhcp.domain');
    const problem = d === undefined ? undefined : domainProblem(d, false);
    if (problem) r.err(m.get('domain'), 'dhcp.domain', problem);
    else if (d !== undefined) domain = normalizeName(d);
  }
  let leaseFile: string | null = null;
  if (m.has('lease_file')) {
    const f = r.str(m.get('lease_file'), 'dhcp.lease_file');
    if (f !== undefined) leaseFile = abs(f);
  }

  const statics: DhcpStatic[] = [];
  if (m.has('static')) {
    const seen = { mac: new Set<string>(), address: new Set<number>(), name: new Set<string>() };
    (r.seq(m.get('static'), 'dhcp.static') ?? []).forEach((item, i) => {
      const path = `dhcp.static[${i}]`;
      const s = r.map(item, path, ['mac', 'address', 'name']);
      if (!s) return;
      for (const k of ['mac', 'address']) if (!s.has(k)) r.err(item, path, `needs ${k}`);
      const macText = s.has('mac') ? r.str(s.get('mac'), `${path}.mac`) : undefined;
      const mac = macText === undefined ? undefined : normaliseMac(macText);
      if (macText !== undefined && mac === undefined) r.err(s.get('mac'), `${path}.mac`, `"${macText}" is not a MAC address (aa:bb:cc:dd:ee:ff)`);
      else if (mac !== undefined && seen.mac.has(mac)) r.err(s.get('mac'), `${path}.mac`, `${mac} has two static leases`);
      const address = s.has('address') ? ip(s.get('address'), `${path}.address`) : undefined;
      if (address !== undefined) {
        if (seen.address.has(address)) r.err(s.get('address'), `${path}.address`, `${intToIpv4(address)} is given to two clients`);
        else if (address === iface) r.err(s.get('address'), `${path}.address`, `${intToIpv4(address)} is interface_address, the server's own`);
        else onLink(address, s.get('address'), `${path}.address`, 'a static address');
      }
      let name: string | null = null;
      if (s.has('name')) {
        const n = r.str(s.get('name'), `${path}.name`)?.toLowerCase();
        if (n !== undefined && !LABEL.test(n)) r.err(s.get('name'), `${path}.name`, `"${n}" is not a DNS label (letters, digits and "-", up to 63, no dots)`);
        else if (n !== undefined && seen.name.has(n)) r.err(s.get('name'), `${path}.name`, `"${n}" names two static leases`);
        else if (n !== undefined) name = n;
      }
      if (mac === undefined || address === undefined) return;
      seen.mac.add(mac);
      seen.address.add(address);
      if (name !== null) seen.name.add(name);
      statics.push({ mac, address: intToIpv4(address), name });
    });
  }

  if (iface === undefined || !range || router === undefined || port === undefined || leaseTime === undefined) return null;
  return {
    interface_address: intToIpv4(iface),
    port,
    range: { start: intToIpv4(range.start), end: intToIpv4(range.end), netmask: intToIpv4(range.mask) },
    lease_time: leaseTime,
    router: intToIpv4(router),
    dns_servers: dns.map(intToIpv4),
    domain,
    lease_file: leaseFile,
    static: statics,
  };
}
