// The DNS wire format as cyfs-ns needs it. Queries are parsed once, by hand, into offsets and a hash (no record
// objects), because that parse runs for every packet; upstream answers are walked in place to find their TTL fields
// and negative-caching data, so they can be stored as bytes and patched on the way out. A general decoder and an
// encoder with name compression serve the colder paths (local answers, CNAME chains leaving the local data, tests).
import { formatIPv4, formatIPv6 } from './ip.ts';

export const TYPE = {
  A: 1, NS: 2, CNAME: 5, SOA: 6, PTR: 12, MX: 15, TXT: 16, AAAA: 28, SRV: 33, OPT: 41, SVCB: 64, HTTPS: 65, IXFR: 251,
  AXFR: 252, ANY: 255, CAA: 257,
} as const;

export const CLASS_IN = 1;

export const RCODE = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4, REFUSED: 5, BADVERS: 16 } as const;

const TYPE_NAMES = new Map<number, string>(Object.entries(TYPE).map(([k, v]) => [v, k]));
const RCODE_NAMES = new Map<number, string>(Object.entries(RCODE).map(([k, v]) => [v, k]));

/** "A", "AAAA", ... or RFC 3597's "TYPE65280" for types without a mnemonic here. */
export function typeName(t: number): string {
  return TYPE_NAMES.get(t) ?? `TYPE${t}`;
}

export function rcodeName(r: number): string {
  return RCODE_NAMES.get(r) ?? `RCODE${r}`;
}

/** The number of a type mnemonic or RFC 3597 `TYPEnnn`, or undefined. */
export function typeNumber(name: string): number | undefined {
  const upper = name.toUpperCase();
  const known = (TYPE as Record<string, number>)[upper];
  if (known !== undefined) return known;
  const m = /^TYPE([0-9]{1,5})$/.exec(upper);
  return m && Number(m[1]) <= 0xffff ? Number(m[1]) : undefined;
}

/** Header flag bits (the 16-bit word at offset 2). */
export const FLAG = { QR: 0x8000, AA: 0x0400, TC: 0x0200, RD: 0x0100, RA: 0x0080, AD: 0x0020, CD: 0x0010 } as const;

/** Names on the wire are at most 255 bytes, labels at most 63. */
const MAX_NAME = 255;
/** A name that needs more pointer jumps than this is a loop or an attack; real names need a handful. */
const MAX_JUMPS = 64;

export class WireError extends Error {}

// ---- hashing -----------------------------------------------------------------------------------------------------
// FNV-1a over the lower-cased, dotted form of a name. The same hash is computed from wire bytes (per packet) and from
// strings (rules, local names), so a query can be looked up in hash-keyed tables without building its name string.

export const HASH_SEED = 0x811c9dc5 | 0;

export function hashByte(h: number, b: number): number {
  return Math.imul(h ^ b, 16777619);
}

function lower(b: number): number {
  return b >= 0x41 && b <= 0x5a ? b | 0x20 : b;
}

/** Hash of a name given as a lower-case dotted string (no trailing dot; "" is the root). Escapes are not decoded:
 * names with escapes never take part in hash lookups (rules and local names are plain host names). */
export function hashName(name: string): number {
  let h = HASH_SEED;
  for (let i = 0; i < name.length; i++) h = hashByte(h, lower(name.charCodeAt(i) & 0xff));
  return h;
}

/**
 * Cache key of (name, type, class, DNSSEC bits) given the name's hash, an int32. Type and class go in through a
 * bijection of their 32 bits, XORed: two questions for the same name and DNSSEC bits have the same key only when
 * type and class are the same too, so the cache need not store them to tell such questions apart (cache.ts).
 */
export function questionKey(nameHash: number, qtype: number, qclass: number, dnssecOk: boolean, checkingDisabled: boolean): number {
  const name = hashByte(hashByte(nameHash, 0), (dnssecOk ? 1 : 0) | (checkingDisabled ? 2 : 0));
  const tc = (qtype << 16) | qclass;
  return name ^ Math.imul(tc ^ (tc >>> 16), 0x45d9f3b);
}

// ---- queries -----------------------------------------------------------------------------------------------------

/** A query that parsed: everything later stages need, as offsets into the original packet. */
export interface Query {
  msg: Buffer;
  id: number;
  /** The query's header flags word. */
  flags: number;
  /** End of the question name (offset after its root label); the name starts at 12. */
  nameEnd: number;
  /** End of the question (after type and class). */
  qEnd: number;
  qtype: number;
  qclass: number;
  nameHash: number;
  key: number;
  edns: boolean;
  /** The client's advertised UDP payload size (512 without EDNS). */
  udpSize: number;
  dnssecOk: boolean;
}

/** A packet that deserves an error answer rather than silence. `question` is set when the question parsed. */
export interface QueryProblem {
  problem: true;
  id: number;
  flags: number;
  rcode: number;
  question?: { end: number };
  /** Whether the answer carries an OPT record (the query had a valid one, or BADVERS). */
  edns: boolean;
}

/**
 * Parses a query. Returns null for packets that get no answer at all: shorter than a header, or responses (answering
 * them could start a loop between two servers). Malformed queries get FORMERR, other opcodes NOTIMP, EDNS versions
 * above 0 BADVERS.
 */
export function parseQuery(msg: Buffer): Query | QueryProblem | null {
  const len = msg.length;
  if (len < 12) return null;
  const flags = (msg[2] << 8) | msg[3];
  if (flags & FLAG.QR) return null;
  const id = (msg[0] << 8) | msg[1];
  const fail = (rcode: number, question?: { end: number }, edns = false): QueryProblem => ({ problem: true, id, flags, rcode, question, edns });
  if (((flags >> 11) & 0xf) !== 0) return fail(RCODE.NOTIMP);
  if (msg[4] !== 0 || msg[5] !== 1 || msg[6] !== 0 || msg[7] !== 0 || msg[8] !== 0 || msg[9] !== 0) return fail(RCODE.FORMERR);
  const arcount = (msg[10] << 8) | msg[11];

  // The question name. A compression pointer could only point back into the header, so any is malformed here.
  let p = 12;
  let h = HASH_SEED;
  for (;;) {
    if (p >= len) return fail(RCODE.FORMERR);
    const l = msg[p];
    if (l === 0) {
      p++;
      break;
    }
    if (l > 63 || p + 1 + l >= len || p + 1 + l - 12 >= MAX_NAME) return fail(RCODE.FORMERR);
    if (p !== 12) h = hashByte(h, 0x2e);
    for (let i = p + 1; i <= p + l; i++) h = hashByte(h, lower(msg[i]));
    p += 1 + l;
  }
  const nameEnd = p;
  if (p + 4 > len) return fail(RCODE.FORMERR);
  const qtype = (msg[p] << 8) | msg[p + 1];
  const qclass = (msg[p + 2] << 8) | msg[p + 3];
  p += 4;
  const question = { end: p };

  let edns = false;
  let udpSize = 512;
  let dnssecOk = false;
  let version = 0;
  for (let i = 0; i < arcount; i++) {
    const nameStart = p;
    p = checkName(msg, p);
    if (p < 0 || p + 10 > len) return fail(RCODE.FORMERR, question);
    const type = (msg[p] << 8) | msg[p + 1];
    const cls = (msg[p + 2] << 8) | msg[p + 3];
    const rdlen = (msg[p + 8] << 8) | msg[p + 9];
    const rdStart = p + 10;
    if (rdStart + rdlen > len) return fail(RCODE.FORMERR, question);
    if (type === TYPE.OPT) {
      // RFC 6891 §6.1.1: one OPT, owned by the root; its options must tile the RDATA exactly.
      if (edns || msg[nameStart] !== 0) return fail(RCODE.FORMERR, question);
      for (let o = rdStart; o < rdStart + rdlen; ) {
        if (o + 4 > rdStart + rdlen) return fail(RCODE.FORMERR, question);
        o += 4 + ((msg[o + 2] << 8) | msg[o + 3]);
        if (o > rdStart + rdlen) return fail(RCODE.FORMERR, question);
      }
      edns = true;
      udpSize = Math.max(512, cls);
      version = msg[p + 5];
      dnssecOk = (msg[p + 6] & 0x80) !== 0;
    }
    p = rdStart + rdlen;
  }
  if (p !== len) return fail(RCODE.FORMERR, question, edns);
  if (version !== 0) return fail(RCODE.BADVERS, question, true);
  return {
    msg, id, flags, nameEnd, qEnd: question.end, qtype, qclass, nameHash: h,
    key: questionKey(h, qtype, qclass, dnssecOk, (flags & FLAG.CD) !== 0),
    edns, udpSize, dnssecOk,
  };
}

export function isProblem(q: Query | QueryProblem): q is QueryProblem {
  return (q as QueryProblem).problem === true;
}

/** Hashes of the query name and each of its parent names, longest first ("a.b.c", "b.c", "c"); none for the root. */
export function suffixHashes(q: Query): number[] {
  const out: number[] = [];
  const msg = q.msg;
  for (let start = 12; msg[start] !== 0; start += msg[start] + 1) {
    let h = HASH_SEED;
    for (let p = start; msg[p] !== 0; p += msg[p] + 1) {
      if (p !== start) h = hashByte(h, 0x2e);
      for (let i = p + 1; i <= p + msg[p]; i++) h = hashByte(h, lower(msg[i]));
    }
    out.push(h);
  }
  return out;
}

/** The query name, lower-cased, in presentation form without the trailing dot ("" for the root). */
export function queryName(q: Query): string {
  return readLabels(q.msg, 12, true);
}

// ---- names -------------------------------------------------------------------------------------------------------

/**
 * Validates the name at `off`, following compression pointers (each must point strictly backwards, which rules out
 * loops), and returns the offset just after it in the record, or -1 when it is malformed.
 */
export function checkName(buf: Buffer, off: number): number {
  const len = buf.length;
  let p = off;
  let after = -1;
  let total = 0;
  let jumps = 0;
  let floor = off;
  for (;;) {
    if (p >= len) return -1;
    const l = buf[p];
    if (l === 0) return after < 0 ? p + 1 : after;
    if ((l & 0xc0) === 0xc0) {
      if (p + 1 >= len) return -1;
      const target = ((l & 0x3f) << 8) | buf[p + 1];
      if (target >= floor || ++jumps > MAX_JUMPS) return -1;
      if (after < 0) after = p + 2;
      floor = target;
      p = target;
      continue;
    }
    if (l > 63) return -1;
    total += l + 1;
    if (total >= MAX_NAME || p + 1 + l >= len) return -1;
    p += l + 1;
  }
}

function appendLabel(out: string[], buf: Buffer, start: number, l: number, lowerCase: boolean): void {
  let s = '';
  for (let i = start; i < start + l; i++) {
    let b = buf[i];
    if (lowerCase) b = lower(b);
    if (b === 0x2e || b === 0x5c) s += `\\${String.fromCharCode(b)}`;
    else if (b < 0x21 || b > 0x7e) s += `\\${b.toString().padStart(3, '0')}`;
    else s += String.fromCharCode(b);
  }
  out.push(s);
}

/** Labels from `off` to the root, without following pointers (the caller knows there are none). */
function readLabels(buf: Buffer, off: number, lowerCase: boolean): string {
  const labels: string[] = [];
  for (let p = off; buf[p] !== 0; p += buf[p] + 1) appendLabel(labels, buf, p + 1, buf[p], lowerCase);
  return labels.join('.');
}

/** Reads a possibly compressed name; throws WireError when it is malformed. */
export function readName(buf: Buffer, off: number): { name: string; next: number } {
  const next = checkName(buf, off);
  if (next < 0) throw new WireError(`malformed name at offset ${off}`);
  const labels: string[] = [];
  for (let p = off; ; ) {
    const l = buf[p];
    if (l === 0) break;
    if ((l & 0xc0) === 0xc0) {
      p = ((l & 0x3f) << 8) | buf[p + 1];
      continue;
    }
    appendLabel(labels, buf, p + 1, l, false);
    p += l + 1;
  }
  return { name: labels.join('.'), next };
}

/** Splits a presentation-form name into label byte strings, decoding `\.` and `\DDD`; throws on a bad name. */
export function nameLabels(name: string): Buffer[] {
  if (name === '' || name === '.') return [];
  const text = name.endsWith('.') && !name.endsWith('\\.') ? name.slice(0, -1) : name;
  const labels: Buffer[] = [];
  let cur: number[] = [];
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x5c) {
      const d = /^[0-9]{3}/.exec(text.slice(i + 1, i + 4));
      if (d && Number(d[0]) <= 255) {
        cur.push(Number(d[0]));
        i += 3;
      } else if (i + 1 < text.length) {
        cur.push(text.charCodeAt(++i) & 0xff);
      } else throw new WireError(`name "${name}" ends in a lone backslash`);
    } else if (c === 0x2e) {
      labels.push(Buffer.from(cur));
      cur = [];
    } else if (c > 0xff) {
      throw new WireError(`name "${name}" has a character outside Latin-1; use its punycode (xn--) form`);
    } else cur.push(c);
  }
  labels.push(Buffer.from(cur));
  let total = 1;
  for (const l of labels) {
    if (l.length === 0) throw new WireError(`name "${name}" has an empty label`);
    if (l.length > 63) throw new WireError(`name "${name}" has a label longer than 63 bytes`);
    total += l.length + 1;
  }
  if (total > MAX_NAME) throw new WireError(`name "${name}" is longer than 255 bytes on the wire`);
  return labels;
}

/** Lower-case presentation form of a name as written in configuration: no trailing dot. */
export function normalizeName(name: string): string {
  const n = name.endsWith('.') && name !== '.' ? name.slice(0, -1) : name === '.' ? '' : name;
  return n.toLowerCase();
}

// ---- records -----------------------------------------------------------------------------------------------------

export type RData =
  | { kind: 'ip'; bytes: Uint8Array }
  | { kind: 'name'; name: string }
  | { kind: 'mx'; preference: number; exchange: string }
  | { kind: 'srv'; priority: number; weight: number; port: number; target: string }
  | { kind: 'txt'; strings: Uint8Array[] }
  | { kind: 'soa'; mname: string; rname: string; serial: number; refresh: number; retry: number; expire: number; minimum: number }
  | { kind: 'raw'; bytes: Uint8Array };

export interface ResourceRecord {
  name: string;
  type: number;
  cls: number;
  ttl: number;
  data: RData;
}

/** Types whose RDATA names may be compressed (RFC 3597 §4: only RFC 1035's). */
const COMPRESSIBLE = new Set<number>([TYPE.NS, TYPE.CNAME, TYPE.SOA, TYPE.PTR, TYPE.MX]);

function decodeRData(buf: Buffer, off: number, rdlen: number, type: number): RData {
  const end = off + rdlen;
  const nameAt = (o: number) => {
    const r = readName(buf, o);
    if (r.next > end) throw new WireError(`name runs past the end of a type ${type} record`);
    return r;
  };
  const exact = (o: number, what: string) => {
    if (o !== end) throw new WireError(`${what} record has ${end - o} stray bytes`);
  };
  switch (type) {
    case TYPE.A:
    case TYPE.AAAA:
      if (rdlen !== (type === TYPE.A ? 4 : 16)) throw new WireError(`${typeName(type)} record with ${rdlen} bytes of data`);
      return { kind: 'ip', bytes: Uint8Array.from(buf.subarray(off, end)) };
    case TYPE.NS:
    case TYPE.CNAME:
    case TYPE.PTR: {
      const r = nameAt(off);
      exact(r.next, typeName(type));
      return { kind: 'name', name: r.name };
    }
    case TYPE.MX: {
      if (rdlen < 3) throw new WireError('MX record too short');
      const r = nameAt(off + 2);
      exact(r.next, 'MX');
      return { kind: 'mx', preference: buf.readUInt16BE(off), exchange: r.name };
    }
    case TYPE.SRV: {
      if (rdlen < 7) throw new WireError('SRV record too short');
      const r = nameAt(off + 6);
      exact(r.next, 'SRV');
      return { kind: 'srv', priority: buf.readUInt16BE(off), weight: buf.readUInt16BE(off + 2), port: buf.readUInt16BE(off + 4), target: r.name };
    }
    case TYPE.TXT: {
      const strings: Uint8Array[] = [];
      for (let o = off; o < end; ) {
        const l = buf[o];
        if (o + 1 + l > end) throw new WireError('TXT string runs past its record');
        strings.push(Uint8Array.from(buf.subarray(o + 1, o + 1 + l)));
        o += 1 + l;
      }
      if (strings.length === 0) throw new WireError('TXT record with no strings');
      return { kind: 'txt', strings };
    }
    case TYPE.SOA: {
      const m = nameAt(off);
      const r = nameAt(m.next);
      if (r.next + 20 !== end) throw new WireError('SOA record has the wrong length');
      const u = (i: number) => buf.readUInt32BE(r.next + i * 4);
      return { kind: 'soa', mname: m.name, rname: r.name, serial: u(0), refresh: u(1), retry: u(2), expire: u(3), minimum: u(4) };
    }
    default:
      return { kind: 'raw', bytes: Uint8Array.from(buf.subarray(off, end)) };
  }
}

export interface DecodedMessage {
  id: number;
  flags: number;
  rcode: number;
  questions: { name: string; type: number; cls: number }[];
  answers: ResourceRecord[];
  authorities: ResourceRecord[];
  additionals: ResourceRecord[];
}

/** Full decode, for the paths that need records as values. Throws WireError on anything malformed. */
export function decodeMessage(buf: Buffer): DecodedMessage {
  if (buf.length < 12) throw new WireError(`message of ${buf.length} bytes is shorter than a header`);
  const count = (i: number) => buf.readUInt16BE(4 + i * 2);
  let p = 12;
  const questions: DecodedMessage['questions'] = [];
  for (let i = 0; i < count(0); i++) {
    const r = readName(buf, p);
    if (r.next + 4 > buf.length) throw new WireError('question runs past the end of the message');
    questions.push({ name: r.name, type: buf.readUInt16BE(r.next), cls: buf.readUInt16BE(r.next + 2) });
    p = r.next + 4;
  }
  const section = (n: number): ResourceRecord[] => {
    const out: ResourceRecord[] = [];
    for (let i = 0; i < n; i++) {
      const r = readName(buf, p);
      if (r.next + 10 > buf.length) throw new WireError('record header runs past the end of the message');
      const type = buf.readUInt16BE(r.next);
      const rdlen = buf.readUInt16BE(r.next + 8);
      const rd = r.next + 10;
      if (rd + rdlen > buf.length) throw new WireError('record data runs past the end of the message');
      out.push({ name: r.name, type, cls: buf.readUInt16BE(r.next + 2), ttl: buf.readUInt32BE(r.next + 4), data: decodeRData(buf, rd, rdlen, type) });
      p = rd + rdlen;
    }
    return out;
  };
  const answers = section(count(1));
  const authorities = section(count(2));
  const additionals = section(count(3));
  const flags = buf.readUInt16BE(2);
  return { id: buf.readUInt16BE(0), flags, rcode: flags & 0xf, questions, answers, authorities, additionals };
}

// ---- encoding ----------------------------------------------------------------------------------------------------

/** Grows as needed; compresses names against those already written (lower-cased suffix -> offset). */
export class Writer {
  buf: Buffer;
  len = 0;
  private names = new Map<string, number>();

  constructor(size = 512) {
    this.buf = Buffer.alloc(size);
  }

  private ensure(n: number): void {
    if (this.len + n <= this.buf.length) return;
    const next = Buffer.alloc(Math.max(this.buf.length * 2, this.len + n));
    this.buf.copy(next, 0, 0, this.len);
    this.buf = next;
  }

  u8(v: number): void {
    this.ensure(1);
    this.buf[this.len++] = v;
  }

  u16(v: number): void {
    this.ensure(2);
    this.buf.writeUInt16BE(v, this.len);
    this.len += 2;
  }

  u32(v: number): void {
    this.ensure(4);
    this.buf.writeUInt32BE(v >>> 0, this.len);
    this.len += 4;
  }

  bytes(b: Uint8Array): void {
    this.ensure(b.length);
    this.buf.set(b, this.len);
    this.len += b.length;
  }

  name(name: string, compress: boolean): void {
    const labels = nameLabels(name);
    for (let i = 0; i < labels.length; i++) {
      const key = labels.slice(i).map((l) => l.toString('latin1').toLowerCase()).join('.');
      const at = this.names.get(key);
      if (compress && at !== undefined) {
        this.u16(0xc000 | at);
        return;
      }
      if (this.len < 0x4000 && at === undefined) this.names.set(key, this.len);
      this.u8(labels[i].length);
      this.bytes(labels[i]);
    }
    this.u8(0);
  }

  record(rr: ResourceRecord): void {
    this.name(rr.name, true);
    this.u16(rr.type);
    this.u16(rr.cls);
    this.u32(rr.ttl);
    const lenAt = this.len;
    this.u16(0);
    const compress = COMPRESSIBLE.has(rr.type);
    const d = rr.data;
    switch (d.kind) {
      case 'ip':
      case 'raw':
        this.bytes(d.bytes);
        break;
      case 'name':
        this.name(d.name, compress);
        break;
      case 'mx':
        this.u16(d.preference);
        this.name(d.exchange, compress);
        break;
      case 'srv':
        this.u16(d.priority);
        this.u16(d.weight);
        this.u16(d.port);
        this.name(d.target, false);
        break;
      case 'txt':
        for (const s of d.strings) {
          this.u8(s.length);
          this.bytes(s);
        }
        break;
      case 'soa':
        this.name(d.mname, compress);
        this.name(d.rname, compress);
        for (const v of [d.serial, d.refresh, d.retry, d.expire, d.minimum]) this.u32(v);
        break;
    }
    this.buf.writeUInt16BE(this.len - lenAt - 2, lenAt);
  }

  finish(): Buffer {
    return this.buf.subarray(0, this.len);
  }
}

export interface MessageSpec {
  id: number;
  flags: number;
  question?: { name: string; type: number; cls: number };
  answers?: ResourceRecord[];
  authorities?: ResourceRecord[];
  additionals?: ResourceRecord[];
}

/** Encodes a whole message (no OPT: the server adds its own per client). */
export function encodeMessage(m: MessageSpec): Buffer {
  const w = new Writer();
  const an = m.answers ?? [];
  const ns = m.authorities ?? [];
  const ar = m.additionals ?? [];
  w.u16(m.id);
  w.u16(m.flags);
  w.u16(m.question ? 1 : 0);
  w.u16(an.length);
  w.u16(ns.length);
  w.u16(ar.length);
  if (m.question) {
    w.name(m.question.name, false);
    w.u16(m.question.type);
    w.u16(m.question.cls);
  }
  for (const rr of [...an, ...ns, ...ar]) w.record(rr);
  return w.finish();
}

/** Writes at `at` an 11-byte OPT record advertising `udpSize`, with the upper bits of an extended RCODE and the DO
 * bit (root owner, version 0, no options). */
export function writeOpt(b: Buffer, at: number, udpSize: number, extRcode: number, dnssecOk: boolean): void {
  b[at] = 0;
  b[at + 1] = 0;
  b[at + 2] = TYPE.OPT;
  b[at + 3] = udpSize >> 8;
  b[at + 4] = udpSize & 0xff;
  b[at + 5] = extRcode >> 4;
  b[at + 6] = 0;
  b[at + 7] = dnssecOk ? 0x80 : 0;
  b[at + 8] = 0;
  b[at + 9] = 0;
  b[at + 10] = 0;
}

/** An OPT record as its own buffer (writeOpt); from Node's shared pool, so the hot paths allocate no backing store. */
export function optRecord(udpSize: number, extRcode: number, dnssecOk: boolean): Buffer {
  const b = Buffer.allocUnsafe(11);
  writeOpt(b, 0, udpSize, extRcode, dnssecOk);
  return b;
}

/**
 * An answer with no records: the header (id, RD and CD copied from the query, RA set), the question when there is
 * one, and an OPT when the client used EDNS. Used for errors, blocked NXDOMAIN and truncated (TC) answers.
 */
export function emptyAnswer(msg: Buffer, questionEnd: number | undefined, rcode: number, extra: number, opt: Buffer | null): Buffer {
  const qlen = questionEnd === undefined ? 0 : questionEnd - 12;
  const out = Buffer.allocUnsafe(12 + qlen + (opt ? opt.length : 0));
  out.fill(0, 0, 12);
  out[0] = msg[0];
  out[1] = msg[1];
  const qflags = (msg[2] << 8) | msg[3];
  const flags = FLAG.QR | (qflags & (0x7800 | FLAG.RD | FLAG.CD)) | FLAG.RA | extra | (rcode & 0xf);
  out.writeUInt16BE(flags, 2);
  out[5] = qlen > 0 ? 1 : 0;
  out[11] = opt ? 1 : 0;
  if (qlen > 0) msg.copy(out, 12, 12, questionEnd);
  if (opt) opt.copy(out, 12 + qlen);
  return out;
}

// ---- upstream answers --------------------------------------------------------------------------------------------

/** What an upstream answer holds, found by one walk over it without decoding records. */
export interface AnswerInfo {
  rcode: number;
  flags: number;
  truncated: boolean;
  ancount: number;
  /** Offsets of every TTL field except the OPT's. */
  ttlOffsets: number[];
  /** Smallest TTL in the answer section (Infinity when empty). */
  minAnswerTtl: number;
  /** min(SOA TTL, SOA MINIMUM) from the authority section (RFC 2308 §5), or -1 without an SOA. */
  negativeTtl: number;
  /** Where the OPT record starts, or -1; everything from here on is dropped when the answer is stored. */
  cutAt: number;
  /** ARCOUNT once the OPT and any records after it are cut. */
  arcountKept: number;
  /** The answer had records of the queried type. */
  hasQtype: boolean;
}

/**
 * Checks an upstream answer against the query it answers (`question` holds the query's question bytes, starting at
 * offset 12 of `sent`) and walks it. Returns a reason string when it is malformed or answers something else.
 */
export function inspectAnswer(buf: Buffer, sent: Buffer, questionEnd: number, qtype: number): AnswerInfo | string {
  const len = buf.length;
  if (len < 12) return `answer of ${len} bytes is shorter than a header`;
  const flags = (buf[2] << 8) | buf[3];
  if (!(flags & FLAG.QR)) return 'answer does not have the QR bit';
  const rcode = flags & 0xf;
  const qd = (buf[4] << 8) | buf[5];
  const an = (buf[6] << 8) | buf[7];
  const ns = (buf[8] << 8) | buf[9];
  const ar = (buf[10] << 8) | buf[11];
  if (qd !== 1) return `answer has ${qd} questions`;
  if (len < questionEnd) return 'answer is shorter than its question';
  for (let i = 12; i < questionEnd; i++) if (lower(buf[i]) !== lower(sent[i])) return 'answer is for a different question';
  const info: AnswerInfo = {
    rcode, flags, truncated: (flags & FLAG.TC) !== 0, ancount: an, ttlOffsets: [], minAnswerTtl: Infinity, negativeTtl: -1,
    cutAt: -1, arcountKept: ar, hasQtype: false,
  };
  let p = questionEnd;
  const total = an + ns + ar;
  for (let i = 0; i < total; i++) {
    const recStart = p;
    p = checkName(buf, p);
    if (p < 0 || p + 10 > len) return `record ${i + 1} is malformed`;
    const type = (buf[p] << 8) | buf[p + 1];
    const rawTtl = buf.readUInt32BE(p + 4);
    // RFC 2181 §8: a TTL with the top bit set means zero.
    const ttl = rawTtl > 0x7fffffff ? 0 : rawTtl;
    const rdlen = (buf[p + 8] << 8) | buf[p + 9];
    const rd = p + 10;
    if (rd + rdlen > len) return `record ${i + 1} runs past the end of the answer`;
    if (i >= an + ns && type === TYPE.OPT) {
      if (info.cutAt < 0) {
        info.cutAt = recStart;
        info.arcountKept = i - an - ns;
      }
    } else if (info.cutAt < 0) {
      info.ttlOffsets.push(p + 4);
      if (i < an) {
        if (ttl < info.minAnswerTtl) info.minAnswerTtl = ttl;
        if (type === qtype) info.hasQtype = true;
      } else if (i < an + ns && type === TYPE.SOA) {
        let q = checkName(buf, rd);
        if (q >= 0) q = checkName(buf, q);
        if (q < 0 || q + 20 !== rd + rdlen) return 'SOA record is malformed';
        const min = Math.min(ttl, buf.readUInt32BE(q + 16));
        info.negativeTtl = info.negativeTtl < 0 ? min : Math.min(info.negativeTtl, min);
      }
    }
    p = rd + rdlen;
  }
  if (p !== len) return `answer has ${len - p} stray bytes after its records`;
  return info;
}

/** Presentation form of record data, for logs and the query log. */
export function formatRData(type: number, d: RData): string {
  switch (d.kind) {
    case 'ip':
      return d.bytes.length === 4 ? formatIPv4(d.bytes) : formatIPv6(d.bytes);
    case 'name':
      return `${d.name}.`;
    case 'mx':
      return `${d.preference} ${d.exchange}.`;
    case 'srv':
      return `${d.priority} ${d.weight} ${d.port} ${d.target}.`;
    case 'txt':
      return d.strings.map((s) => JSON.stringify(Buffer.from(s).toString('latin1'))).join(' ');
    case 'soa':
      return `${d.mname}. ${d.rname}. ${d.serial} ${d.refresh} ${d.retry} ${d.expire} ${d.minimum}`;
    case 'raw':
      return `\\# ${d.bytes.length} ${Buffer.from(d.bytes).toString('hex')} (${typeName(type)})`;
  }
}
