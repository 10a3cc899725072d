// IPv4/IPv6 text <-> bytes, and CIDR sets for per-client policy. Node has isIP() but nothing that yields the bytes,
// which record data (A/AAAA), reverse names (PTR from hosts files) and prefix matching all need.

/** The 4 bytes of a dotted-quad IPv4 address, or undefined when `s` is not one (no leading zeros, no short forms). */
export function parseIPv4(s: string): Uint8Array | undefined {
  const parts = s.split('.');
  if (parts.length !== 4) return undefined;
  const out = new Uint8Array(4);
  for (let i = 0; i < 4; i++) {
    const p = parts[i];
    if (!/^(0|[1-9][0-9]{0,2})$/.test(p)) return undefined;
    const v = Number(p);
    if (v > 255) return undefined;
    out[i] = v;
  }
  return out;
}

/** The 16 bytes of an IPv6 address (with `::` and an embedded dotted quad allowed), or undefined. */
export function parseIPv6(s: string): Uint8Array | undefined {
  if (s.length === 0 || s.length > 45 || s.includes('%')) return undefined;
  const out = new Uint8Array(16);
  let tail = s;
  let v4: Uint8Array | undefined;
  const lastColon = s.lastIndexOf(':');
  if (lastColon >= 0 && s.indexOf('.', lastColon) > 0) {
    v4 = parseIPv4(s.slice(lastColon + 1));
    if (!v4) return undefined;
    tail = s.slice(0, lastColon + 1) + '0:0';
  }
  const halves = tail.split('::');
  if (halves.length > 2) return undefined;
  const groups = (h: string): number[] | undefined => {
    if (h === '') return [];
    const out: number[] = [];
    for (const g of h.split(':')) {
      if (!/^[0-9a-fA-F]{1,4}$/.test(g)) return undefined;
      out.push(parseInt(g, 16));
    }
    return out;
  };
  const head = groups(halves[0]);
  const rest = halves.length === 2 ? groups(halves[1]) : [];
  if (!head || !rest) return undefined;
  if (halves.length === 1 ? head.length !== 8 : head.length + rest.length > 7) return undefined;
  const all = [...head, ...new Array<number>(8 - head.length - rest.length).fill(0), ...rest];
  for (let i = 0; i < 8; i++) {
    out[i * 2] = all[i] >> 8;
    out[i * 2 + 1] = all[i] & 0xff;
  }
  if (v4) out.set(v4, 12);
  return out;
}

/**
 * An address as a latin1 string of its 4 or 16 bytes: the compact form hosts files are kept in (a Uint8Array per
 * address would cost an ArrayBuffer each, and a hosts file can have 100,000 of them).
 */
export function packIP(s: string): string | undefined {
  if (!s.includes(':')) {
    let out = '';
    let v = -1;
    let digits = 0;
    let parts = 0;
    for (let i = 0; i <= s.length; i++) {
      const c = i < s.length ? s.charCodeAt(i) : 0x2e;
      if (c === 0x2e) {
        if (digits === 0 || v > 255 || ++parts > 4) return undefined;
        out += String.fromCharCode(v);
        v = -1;
        digits = 0;
      } else if (c >= 0x30 && c <= 0x39) {
        if (digits > 0 && v === 0) return undefined;
        v = (v < 0 ? 0 : v * 10) + (c - 0x30);
        digits++;
      } else return undefined;
    }
    return parts === 4 ? out : undefined;
  }
  const b = parseIPv6(s);
  return b ? Buffer.from(b).toString('latin1') : undefined;
}

/** reverseName() of a packed address. */
export function reverseNameOfPacked(p: string): string {
  return reverseName(Buffer.from(p, 'latin1'));
}

export function parseIP(s: string): Uint8Array | undefined {
  return s.includes(':') ? parseIPv6(s) : parseIPv4(s);
}

export function formatIPv4(b: Uint8Array, at = 0): string {
  return `${b[at]}.${b[at + 1]}.${b[at + 2]}.${b[at + 3]}`;
}

/** RFC 5952 text form: lower case, the longest run of two or more zero groups as `::`. */
export function formatIPv6(b: Uint8Array, at = 0): string {
  const g: number[] = [];
  for (let i = 0; i < 8; i++) g.push((b[at + i * 2] << 8) | b[at + i * 2 + 1]);
  let bestStart = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (g[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = (a: number[]) => a.map((x) => x.toString(16)).join(':');
  if (bestStart < 0) return hex(g);
  return `${hex(g.slice(0, bestStart))}::${hex(g.slice(bestStart + bestLen))}`;
}

/** The reverse-lookup owner name of an address: `4.3.2.1.in-addr.arpa` or the nibble form under ip6.arpa. */
export function reverseName(addr: Uint8Array): string {
  if (addr.length === 4) return `${addr[3]}.${addr[2]}.${addr[1]}.${addr[0]}.in-addr.arpa`;
  const nibbles: string[] = [];
  for (let i = 15; i >= 0; i--) nibbles.push((addr[i] & 0xf).toString(16), (addr[i] >> 4).toString(16));
  return `${nibbles.join('.')}.ip6.arpa`;
}

interface Prefix<T> {
  bytes: Uint8Array;
  bits: number;
  value: T;
}

/** Address prefixes mapped to values; the longest matching prefix wins, as in routing. */
export class CidrMap<T> {
  private v4: Prefix<T>[] = [];
  private v6: Prefix<T>[] = [];

  /** Adds `cidr` ("192.168.1.0/24", "fd00::/8", or a bare address); returns an error message when it is not one. */
  add(cidr: string, value: T): string | undefined {
    const slash = cidr.indexOf('/');
    const addrText = slash < 0 ? cidr : cidr.slice(0, slash);
    const bytes = parseIP(addrText);
    if (!bytes) return `"${addrText}" is not an IPv4 or IPv6 address`;
    const max = bytes.length * 8;
    let bits = max;
    if (slash >= 0) {
      const b = cidr.slice(slash + 1);
      if (!/^[0-9]{1,3}$/.test(b) || Number(b) > max) return `prefix length "${b}" must be 0-${max}`;
      bits = Number(b);
    }
    for (let i = 0; i < bytes.length; i++) {
      const keep = Math.max(0, Math.min(8, bits - i * 8));
      if ((bytes[i] & ~(0xff << (8 - keep)) & 0xff) !== 0) return `"${cidr}" has host bits set beyond /${bits}`;
    }
    const list = bytes.length === 4 ? this.v4 : this.v6;
    list.push({ bytes, bits, value });
    list.sort((a, b) => b.bits - a.bits);
    return undefined;
  }

  get size(): number {
    return this.v4.length + this.v6.length;
  }

  lookup(addr: string): T | undefined {
    const bytes = parseIP(addr);
    if (!bytes) return undefined;
    const list = bytes.length === 4 ? this.v4 : this.v6;
    for (const p of list) if (matches(p.bytes, p.bits, bytes)) return p.value;
    return undefined;
  }
}

function matches(prefix: Uint8Array, bits: number, addr: Uint8Array): boolean {
  let i = 0;
  for (; bits >= 8; bits -= 8, i++) if (prefix[i] !== addr[i]) return false;
  if (bits === 0) return true;
  const mask = (0xff << (8 - bits)) & 0xff;
  return (prefix[i] & mask) === (addr[i] & mask);
}
