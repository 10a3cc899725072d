// The answer cache. An entry is one latin1 string: the answer's wire bytes (id 0, question in lower case, no OPT)
// followed by the offsets of its TTL fields and a small trailer. Answering from it is a copy, a two-byte id, the
// question bytes in the client's case, and one subtraction per TTL: no parse, no encode. Strings rather than
// Buffers because V8 keeps a short string in one small heap object, where a Buffer costs a view object and a
// backing store: 100,000 entries fit in about 12 MB. Keys are int32 hashes (kept unboxed by Map); a hash collision
// is caught by comparing the stored question and the DNSSEC bits with the query's, and costs only a miss.
import { FLAG, type Query, type AnswerInfo, RCODE, writeOpt } from './wire.ts';

// Trailer: [ttl offsets, 2 bytes each][offset count: 2][flags: 1][lifetime s: 4][stored at s: 4]
const TRAILER = 11;
const F_DO = 1;
const F_CD = 2;
/** A negative answer (NXDOMAIN or NODATA). */
export const F_NEGATIVE = 4;

/** Seconds on a monotonic clock: cache ages must not jump when the wall clock is set. */
export function nowSec(): number {
  return Math.floor(performance.now() / 1000);
}

export interface PackLimits {
  minTtl: number;
  maxTtl: number;
  negativeMaxTtl: number;
}

function lower(b: number): number {
  return b >= 0x41 && b <= 0x5a ? b | 0x20 : b;
}

/**
 * Turns an upstream answer into the stored form, clamping its TTLs, and says for how long it may be cached (0: not
 * at all; the answer can still be served once). Negative answers live as long as their SOA says (RFC 2308 §5), and
 * without an SOA not at all.
 */
export function packAnswer(resp: Buffer, info: AnswerInfo, q: Query, limits: PackLimits, storedAt: number): { entry: string; lifetime: number } {
  const negative = info.rcode === RCODE.NXDOMAIN || info.ancount === 0;
  let lifetime: number;
  if (info.rcode !== RCODE.NOERROR && info.rcode !== RCODE.NXDOMAIN) lifetime = 0;
  else if (negative) {
    lifetime = info.negativeTtl < 0 ? 0 : Math.min(info.negativeTtl, limits.negativeMaxTtl, info.minAnswerTtl);
  } else {
    lifetime = Math.max(limits.minTtl, Math.min(info.minAnswerTtl, limits.maxTtl));
  }
  const wireLen = info.cutAt < 0 ? resp.length : info.cutAt;
  const n = info.ttlOffsets.length;
  const out = Buffer.allocUnsafe(wireLen + n * 2 + TRAILER);
  resp.copy(out, 0, 0, wireLen);
  out[0] = 0;
  out[1] = 0;
  // What comes from the cache is not an authoritative answer, whatever the upstream was (RFC 1035 §4.1.1).
  out[2] &= ~(FLAG.AA >> 8);
  for (let i = 12; i < q.nameEnd; i++) out[i] = lower(out[i]);
  out.writeUInt16BE(info.arcountKept, 10);
  let o = wireLen;
  for (const off of info.ttlOffsets) {
    let ttl = out.readUInt32BE(off);
    // RFC 2181 §8: a TTL with the top bit set means zero.
    if (ttl > 0x7fffffff) ttl = 0;
    ttl = negative ? Math.min(ttl, lifetime) : Math.max(limits.minTtl, Math.min(ttl, limits.maxTtl));
    out.writeUInt32BE(ttl, off);
    out.writeUInt16BE(off, o);
    o += 2;
  }
  writeTrailer(out, o, n, (q.dnssecOk ? F_DO : 0) | (q.flags & FLAG.CD ? F_CD : 0) | (negative ? F_NEGATIVE : 0), lifetime, storedAt);
  return { entry: out.toString('latin1'), lifetime };
}

/** The stored form of an answer built locally (its TTLs never count down: local data does not expire). */
export function packLocal(wire: Buffer, q: Query): string {
  const out = Buffer.allocUnsafe(wire.length + TRAILER);
  wire.copy(out, 0);
  for (let i = 12; i < q.nameEnd; i++) out[i] = lower(out[i]);
  writeTrailer(out, wire.length, 0, (q.dnssecOk ? F_DO : 0) | (q.flags & FLAG.CD ? F_CD : 0), 0, 0);
  return out.toString('latin1');
}

function writeTrailer(out: Buffer, o: number, count: number, flags: number, lifetime: number, storedAt: number): void {
  out.writeUInt16BE(count, o);
  out[o + 2] = flags;
  out.writeUInt32BE(lifetime, o + 3);
  out.writeUInt32BE(storedAt, o + 7);
}

export function entryLifetime(e: string): number {
  const t = e.length - 8;
  return ((e.charCodeAt(t) << 24) | (e.charCodeAt(t + 1) << 16) | (e.charCodeAt(t + 2) << 8) | e.charCodeAt(t + 3)) >>> 0;
}

export function entryStoredAt(e: string): number {
  const t = e.length - 4;
  return ((e.charCodeAt(t) << 24) | (e.charCodeAt(t + 1) << 16) | (e.charCodeAt(t + 2) << 8) | e.charCodeAt(t + 3)) >>> 0;
}

export function entryFlags(e: string): number {
  return e.charCodeAt(e.length - 9);
}

/** Whether a stored entry answers this query: same question (ignoring case) and the same DNSSEC bits. */
function sameQuestion(e: string, q: Query): boolean {
  const msg = q.msg;
  for (let i = 12; i < q.qEnd; i++) if (e.charCodeAt(i) !== lower(msg[i])) return false;
  const flags = entryFlags(e);
  return ((flags & F_DO) !== 0) === q.dnssecOk && ((flags & F_CD) !== 0) === ((q.flags & FLAG.CD) !== 0);
}

/**
 * The answer for `q` from entry `e`: the client's id and question case, RD and CD as the client sent them, AD only
 * for clients that asked for DNSSEC data or set AD themselves (RFC 6840 §5.7-5.8), TTLs less `age` seconds (or all
 * set to `fixedTtl` when it is not negative: stale answers), and an OPT when the client used EDNS.
 */
export function materialize(e: string, q: Query, age: number, fixedTtl: number, udpSize: number): Buffer {
  const t = e.length - TRAILER;
  const count = (e.charCodeAt(t) << 8) | e.charCodeAt(t + 1);
  const wireLen = t - count * 2;
  const out = Buffer.allocUnsafe(q.edns ? wireLen + 11 : wireLen);
  out.write(e, 0, wireLen, 'latin1');
  const msg = q.msg;
  out[0] = msg[0];
  out[1] = msg[1];
  const qflags = q.flags;
  let flags = (out[2] << 8) | out[3];
  flags = (flags & ~(FLAG.RD | FLAG.CD)) | (qflags & (FLAG.RD | FLAG.CD));
  if (!q.dnssecOk && !(qflags & FLAG.AD)) flags &= ~FLAG.AD;
  out[2] = flags >> 8;
  out[3] = flags & 0xff;
  msg.copy(out, 12, 12, q.nameEnd);
  if (age > 0 || fixedTtl >= 0) {
    for (let i = 0; i < count; i++) {
      const off = (e.charCodeAt(wireLen + i * 2) << 8) | e.charCodeAt(wireLen + i * 2 + 1);
      let ttl = fixedTtl >= 0 ? fixedTtl : out.readUInt32BE(off) - age;
      if (ttl < 0) ttl = 0;
      out.writeUInt32BE(ttl, off);
    }
  }
  if (q.edns) {
    writeOpt(out, wireLen, udpSize, 0, q.dnssecOk);
    const ar = ((out[10] << 8) | out[11]) + 1;
    out[10] = ar >> 8;
    out[11] = ar & 0xff;
  }
  return out;
}

/**
 * Entries by question key, least recently used first (a Map keeps insertion order, and a hit re-inserts), never more
 * than `maxEntries`. Expired entries stay until evicted: serve-stale may still use them.
 */
export class AnswerCache {
  private map = new Map<number, string>();
  evictions = 0;

  constructor(private maxEntries: number) {}

  get size(): number {
    return this.map.size;
  }

  get(q: Query): string | undefined {
    const e = this.map.get(q.key);
    if (e === undefined) return undefined;
    if (!sameQuestion(e, q)) return undefined;
    this.map.delete(q.key);
    this.map.set(q.key, e);
    return e;
  }

  set(key: number, e: string): void {
    if (this.maxEntries === 0) return;
    this.map.delete(key);
    this.map.set(key, e);
    while (this.map.size > this.maxEntries) {
      const oldest = this.map.keys().next().value as number;
      this.map.delete(oldest);
      this.evictions++;
    }
  }

  delete(key: number): void {
    this.map.delete(key);
  }

  clear(): void {
    this.map.clear();
  }
}

/**
 * How often each question was asked lately, in 64 KB: saturating 8-bit counters indexed by key, halved every
 * 16 x 65,536 hits so that "popular" means popular now. Decides which entries are worth refreshing before expiry.
 */
export class Popularity {
  private counts = new Uint8Array(1 << 16);
  private hits = 0;

  hit(key: number): number {
    const i = key & 0xffff;
    const c = this.counts[i];
    if (c < 255) this.counts[i] = c + 1;
    if (++this.hits >= 1 << 20) {
      this.hits = 0;
      for (let j = 0; j < this.counts.length; j++) this.counts[j] >>= 1;
    }
    return c + 1;
  }
}
