// DHCPv4 messages (RFC 2131 §2, options RFC 2132): decoding with every field checked, and encoding of the server's
// replies. Anything on the LAN can send port 67 a packet, so a malformed one must end as a DhcpParseError naming what
// is wrong (the server logs it and drops the packet), never as an exception from deep inside, a hang or a half-read
// message acted upon.

export const BOOTREQUEST = 1;
export const BOOTREPLY = 2;
export const HTYPE_ETHERNET = 1;
/** RFC 2131 §2: the broadcast bit, set by clients that cannot receive unicast before they are configured. */
export const FLAG_BROADCAST = 0x8000;

export const MSG = { DISCOVER: 1, OFFER: 2, REQUEST: 3, DECLINE: 4, ACK: 5, NAK: 6, RELEASE: 7, INFORM: 8 } as const;
export const MSG_NAMES = ['', 'DISCOVER', 'OFFER', 'REQUEST', 'DECLINE', 'ACK', 'NAK', 'RELEASE', 'INFORM'];

export const OPT = {
  PAD: 0, SUBNET_MASK: 1, ROUTER: 3, DNS_SERVERS: 6, HOST_NAME: 12, DOMAIN_NAME: 15, REQUESTED_IP: 50, LEASE_TIME: 51,
  OVERLOAD: 52, MESSAGE_TYPE: 53, SERVER_ID: 54, PARAMETERS: 55, MESSAGE: 56, MAX_SIZE: 57, T1: 58, T2: 59,
  CLIENT_ID: 61, END: 255,
} as const;

const COOKIE = 0x63825363;
/** op through file (RFC 2131 figure 1), then the 4-byte magic cookie. */
const FIXED = 236;
const OPTIONS_AT = FIXED + 4;
const SNAME_AT = 44;
const FILE_AT = 108;
/** RFC 1542 §3.3: some relays and clients drop BOOTP messages shorter than the original 300 bytes. */
const MIN_SIZE = 300;

export class DhcpParseError extends Error {
  override name = 'DhcpParseError';
}

export interface DhcpMessage {
  op: number;
  htype: number;
  hlen: number;
  hops: number;
  xid: number;
  secs: number;
  flags: number;
  ciaddr: string;
  yiaddr: string;
  siaddr: string;
  giaddr: string;
  /** All 16 bytes as sent; the hardware address is the first `hlen`. */
  chaddr: Buffer;
  /** Text up to the first NUL; empty when the field carries options (overload). */
  sname: string;
  file: string;
  /** Option code -> value; a code sent several times is one value, the parts concatenated (RFC 3396). */
  options: Map<number, Buffer>;
}

/** The unsigned 32-bit value of a dotted quad, or undefined when `s` is not one. */
export function ipv4ToInt(s: string): number | undefined {
  const parts = s.split('.');
  if (parts.length !== 4) return undefined;
  let v = 0;
  for (const p of parts) {
    if (!/^(0|[1-9][0-9]{0,2})$/.test(p) || Number(p) > 255) return undefined;
    v = v * 256 + Number(p);
  }
  return v;
}

export function intToIpv4(n: number): string {
  return `${(n >>> 24) & 255}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`;
}

export function formatMac(b: Uint8Array, len = 6): string {
  return Array.from(b.subarray(0, len), (x) => x.toString(16).padStart(2, '0')).join(':');
}

/** Options whose length the server relies on: exactly `len` bytes, or at least `min` (in steps of `step`). */
const OPTION_SHAPES: Record<number, { name: string; len?: number; min?: number; step?: number }> = {
  [OPT.SUBNET_MASK]: { name: 'subnet mask', len: 4 },
  [OPT.ROUTER]: { name: 'router', min: 4, step: 4 },
  [OPT.DNS_SERVERS]: { name: 'DNS servers', min: 4, step: 4 },
  [OPT.HOST_NAME]: { name: 'host name', min: 1 },
  [OPT.DOMAIN_NAME]: { name: 'domain name', min: 1 },
  [OPT.REQUESTED_IP]: { name: 'requested address', len: 4 },
  [OPT.LEASE_TIME]: { name: 'lease time', len: 4 },
  [OPT.OVERLOAD]: { name: 'option overload', len: 1 },
  [OPT.MESSAGE_TYPE]: { name: 'message type', len: 1 },
  [OPT.SERVER_ID]: { name: 'server identifier', len: 4 },
  [OPT.PARAMETERS]: { name: 'parameter request list', min: 1 },
  [OPT.MAX_SIZE]: { name: 'maximum message size', len: 2 },
  [OPT.T1]: { name: 'renewal time', len: 4 },
  [OPT.T2]: { name: 'rebinding time', len: 4 },
  [OPT.CLIENT_ID]: { name: 'client identifier', min: 2 },
};

/** Reads the options in buf[start, end) into `parts`; a field without END is accepted when it ends exactly. */
function readOptions(buf: Buffer, start: number, end: number, where: string, parts: Map<number, Buffer[]>): void {
  let i = start;
  while (i < end) {
    const code = buf[i];
    if (code === OPT.END) return;
    if (code === OPT.PAD) {
      i++;
      continue;
    }
    if (i + 1 >= end) throw new DhcpParseError(`option ${code} in the ${where} has no length byte`);
    const len = buf[i + 1];
    if (i + 2 + len > end) throw new DhcpParseError(`option ${code} in the ${where} (length ${len}) runs past the end of the field`);
    const list = parts.get(code);
    const value = buf.subarray(i + 2, i + 2 + len);
    if (list) list.push(value);
    else parts.set(code, [value]);
    i += 2 + len;
  }
}

function text(buf: Buffer, start: number, len: number): string {
  const field = buf.subarray(start, start + len);
  const nul = field.indexOf(0);
  return field.subarray(0, nul < 0 ? len : nul).toString('latin1');
}

/** Decodes one message; throws DhcpParseError saying what is wrong with it. */
export function decodeDhcp(buf: Buffer): DhcpMessage {
  if (buf.length < OPTIONS_AT) throw new DhcpParseError(`${buf.length} bytes is too short: a DHCP message has at least ${OPTIONS_AT}`);
  const op = buf[0];
  if (op !== BOOTREQUEST && op !== BOOTREPLY) throw new DhcpParseError(`op ${op} is neither BOOTREQUEST (1) nor BOOTREPLY (2)`);
  const hlen = buf[2];
  if (hlen > 16) throw new DhcpParseError(`hardware address length ${hlen} is over 16`);
  if (buf.readUInt32BE(FIXED) !== COOKIE) throw new DhcpParseError('no DHCP magic cookie (a plain BOOTP message)');
  const parts = new Map<number, Buffer[]>();
  readOptions(buf, OPTIONS_AT, buf.length, 'options field', parts);
  const overload = parts.get(OPT.OVERLOAD);
  let overloaded = 0;
  if (overload) {
    if (overload.length > 1 || overload[0].length !== 1 || overload[0][0] < 1 || overload[0][0] > 3) {
      throw new DhcpParseError('option overload (52) must appear once with the value 1, 2 or 3');
    }
    overloaded = overload[0][0];
    // RFC 2131 §4.1: the options field first, then file, then sname.
    if (overloaded & 1) readOptions(buf, FILE_AT, FILE_AT + 128, 'file field', parts);
    if (overloaded & 2) readOptions(buf, SNAME_AT, SNAME_AT + 64, 'sname field', parts);
    if (parts.get(OPT.OVERLOAD)!.length > 1) throw new DhcpParseError('option overload (52) inside an overloaded field');
  }
  const options = new Map<number, Buffer>();
  for (const [code, list] of parts) {
    const value = list.length === 1 ? list[0] : Buffer.concat(list);
    const shape = OPTION_SHAPES[code];
    if (shape) {
      const bad =
        shape.len !== undefined ? value.length !== shape.len : value.length < (shape.min ?? 0) || value.length % (shape.step ?? 1) !== 0;
      if (bad) {
        const want = shape.len !== undefined ? `${shape.len}` : `at least ${shape.min}${shape.step ? `, a multiple of ${shape.step}` : ''}`;
        throw new DhcpParseError(`option ${code} (${shape.name}) has length ${value.length}, must be ${want}`);
      }
    }
    options.set(code, Buffer.from(value));
  }
  const type = options.get(OPT.MESSAGE_TYPE);
  if (type && (type[0] < MSG.DISCOVER || type[0] > MSG.INFORM)) throw new DhcpParseError(`message type ${type[0]} is not 1-8`);
  const maxSize = options.get(OPT.MAX_SIZE);
  if (maxSize && maxSize.readUInt16BE(0) < 576) throw new DhcpParseError(`maximum message size ${maxSize.readUInt16BE(0)} is below the minimum of 576`);
  return {
    op,
    htype: buf[1],
    hlen,
    hops: buf[3],
    xid: buf.readUInt32BE(4),
    secs: buf.readUInt16BE(8),
    flags: buf.readUInt16BE(10),
    ciaddr: intToIpv4(buf.readUInt32BE(12)),
    yiaddr: intToIpv4(buf.readUInt32BE(16)),
    siaddr: intToIpv4(buf.readUInt32BE(20)),
    giaddr: intToIpv4(buf.readUInt32BE(24)),
    chaddr: Buffer.from(buf.subarray(28, 44)),
    sname: overloaded & 2 ? '' : text(buf, SNAME_AT, 64),
    file: overloaded & 1 ? '' : text(buf, FILE_AT, 128),
    options,
  };
}

function writeIp(buf: Buffer, at: number, ip: string): void {
  const v = ipv4ToInt(ip);
  if (v === undefined) throw new Error(`"${ip}" is not an IPv4 address`);
  buf.writeUInt32BE(v, at);
}

/** Encodes a message; values longer than 255 bytes are split over several instances of their option (RFC 3396). */
export function encodeDhcp(m: DhcpMessage): Buffer {
  const opts: Buffer[] = [];
  for (const [code, value] of m.options) {
    for (let at = 0; at === 0 || at < value.length; at += 255) {
      const part = value.subarray(at, at + 255);
      opts.push(Buffer.from([code, part.length]), part);
    }
  }
  opts.push(Buffer.from([OPT.END]));
  const body = Buffer.concat(opts);
  const buf = Buffer.alloc(Math.max(MIN_SIZE, OPTIONS_AT + body.length));
  buf[0] = m.op;
  buf[1] = m.htype;
  buf[2] = m.hlen;
  buf[3] = m.hops;
  buf.writeUInt32BE(m.xid >>> 0, 4);
  buf.writeUInt16BE(m.secs, 8);
  buf.writeUInt16BE(m.flags, 10);
  writeIp(buf, 12, m.ciaddr);
  writeIp(buf, 16, m.yiaddr);
  writeIp(buf, 20, m.siaddr);
  writeIp(buf, 24, m.giaddr);
  m.chaddr.copy(buf, 28, 0, 16);
  buf.write(m.sname.slice(0, 63), SNAME_AT, 'latin1');
  buf.write(m.file.slice(0, 127), FILE_AT, 'latin1');
  buf.writeUInt32BE(COOKIE, FIXED);
  body.copy(buf, OPTIONS_AT);
  return buf;
}

/** The message type (option 53), or undefined for a BOOTP message without one. */
export function messageType(m: DhcpMessage): number | undefined {
  return m.options.get(OPT.MESSAGE_TYPE)?.[0];
}

/** An address-valued option (requested address, server identifier), checked to be 4 bytes by decodeDhcp. */
export function optionIp(m: DhcpMessage, code: number): string | undefined {
  const v = m.options.get(code);
  return v && v.length === 4 ? intToIpv4(v.readUInt32BE(0)) : undefined;
}
