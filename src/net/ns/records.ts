// Record values as configuration writes them ("10 mail.lan" for MX, RFC 3597's "\# 4 0a000001" for any other type)
// turned into wire data. Kept apart from config.ts and local.ts so both can use it without importing each other.
import { parseIPv4, parseIPv6 } from './ip.ts';
import { type RData, TYPE, normalizeName } from './wire.ts';

const HOST_NAME = /^[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*$/;

/** Why `name` is not a domain name as configuration and host files may give it (host-name characters, and with
 * `wildcard` a leading "*."), or undefined when it is one. */
export function domainProblem(name: string, wildcard: boolean): string | undefined {
  const n = normalizeName(name);
  const body = wildcard && n.startsWith('*.') ? n.slice(2) : n;
  if (body === '') return 'is empty';
  if (!HOST_NAME.test(body)) {
    return `"${name}" is not a domain name (letters, digits, "-", "_" and dots${wildcard ? ', optionally starting with "*."' : ''})`;
  }
  // Host-name characters are one byte each, so the wire limits can be checked on the text without encoding it.
  if (n.length > 253) return `"${name}" is longer than 255 bytes on the wire`;
  for (let start = 0; start < n.length; ) {
    const dot = n.indexOf('.', start);
    const end = dot < 0 ? n.length : dot;
    if (end - start > 63) return `"${name}" has a label longer than 63 bytes`;
    start = end + 1;
  }
  return undefined;
}

function nameValue(v: string, what: string): string | { error: string } {
  const problem = domainProblem(v, false);
  return problem ? { error: `${what}: ${problem}` } : normalizeName(v);
}

function u16(s: string | undefined, what: string): number | { error: string } {
  if (s === undefined || !/^[0-9]{1,5}$/.test(s) || Number(s) > 0xffff) return { error: `${what} must be a number from 0 to 65535` };
  return Number(s);
}

/** Splits text into TXT character-strings of at most 255 bytes (RFC 1035 §3.3.14), as DKIM keys need. */
function txtStrings(values: string[]): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (const v of values) {
    const bytes = Buffer.from(v, 'utf8');
    if (bytes.length === 0) out.push(new Uint8Array(0));
    for (let i = 0; i < bytes.length; i += 255) out.push(Uint8Array.from(bytes.subarray(i, i + 255)));
  }
  return out;
}

/** The wire data for a configured value, or the reason it is not a valid value of that type. */
export function parseRecordValue(type: number, value: string | string[]): RData | string {
  if (Array.isArray(value)) {
    if (type !== TYPE.TXT) return 'a list of values is for TXT records only (give other records one entry each)';
    if (value.length === 0) return 'a TXT record needs at least one string';
    return { kind: 'txt', strings: txtStrings(value) };
  }
  const fail = (r: unknown): r is { error: string } => typeof r === 'object' && r !== null && 'error' in r;
  switch (type) {
    case TYPE.A: {
      const b = parseIPv4(value);
      return b ? { kind: 'ip', bytes: b } : `"${value}" is not an IPv4 address`;
    }
    case TYPE.AAAA: {
      const b = parseIPv6(value);
      return b ? { kind: 'ip', bytes: b } : `"${value}" is not an IPv6 address`;
    }
    case TYPE.CNAME:
    case TYPE.PTR:
    case TYPE.NS: {
      const n = nameValue(value, 'target');
      return fail(n) ? n.error : { kind: 'name', name: n };
    }
    case TYPE.MX: {
      const parts = value.trim().split(/\s+/);
      if (parts.length !== 2) return 'an MX value is "<preference> <mail host>", e.g. "10 mail.lan"';
      const pref = u16(parts[0], 'MX preference');
      const host = nameValue(parts[1], 'MX host');
      if (fail(pref)) return pref.error;
      if (fail(host)) return host.error;
      return { kind: 'mx', preference: pref, exchange: host };
    }
    case TYPE.SRV: {
      const parts = value.trim().split(/\s+/);
      if (parts.length !== 4) return 'an SRV value is "<priority> <weight> <port> <target>", e.g. "10 5 5060 sip.lan"';
      const [p, w, port] = [u16(parts[0], 'SRV priority'), u16(parts[1], 'SRV weight'), u16(parts[2], 'SRV port')];
      const target = nameValue(parts[3], 'SRV target');
      for (const x of [p, w, port, target]) if (fail(x)) return x.error;
      return { kind: 'srv', priority: p as number, weight: w as number, port: port as number, target: target as string };
    }
    case TYPE.TXT:
      return { kind: 'txt', strings: txtStrings([value]) };
    case TYPE.CAA: {
      const m = /^([0-9]{1,3})\s+([A-Za-z0-9]+)\s+"?([^"]*)"?$/.exec(value.trim());
      if (!m || Number(m[1]) > 255) return 'a CAA value is "<flags> <tag> <value>", e.g. \'0 issue "letsencrypt.org"\'';
      const tag = Buffer.from(m[2], 'latin1');
      return { kind: 'raw', bytes: Buffer.concat([Buffer.from([Number(m[1]), tag.length]), tag, Buffer.from(m[3], 'utf8')]) };
    }
    case TYPE.SOA:
    case TYPE.OPT:
    case TYPE.ANY:
    case TYPE.AXFR:
    case TYPE.IXFR:
      return 'this type cannot be a configured record (SOA is made for each local domain; OPT and query types are not records)';
    default: {
      // RFC 3597 §5: the generic form, so every type can be stored even when cyfs-ns has no syntax for it.
      const m = /^\\#\s+([0-9]+)\s*([0-9a-fA-F\s]*)$/.exec(value.trim());
      if (!m) return 'values of this type are written in RFC 3597 form: "\\# <length> <hex>", e.g. "\\# 4 0a000001"';
      const hex = m[2].replace(/\s+/g, '');
      if (hex.length % 2 !== 0 || hex.length / 2 !== Number(m[1])) return `the "\\#" length ${m[1]} does not match ${hex.length / 2} bytes of hex`;
      if (Number(m[1]) > 65535) return 'record data is at most 65535 bytes';
      return { kind: 'raw', bytes: Buffer.from(hex, 'hex') };
    }
  }
}
