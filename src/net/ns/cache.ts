// The answer cache. An entry is one latin1 string: the answer's section counts, its question name in lower case, its
// records (no OPT), then a trailer with the header flags, the entry's own flags and its times. Answering from it is a
// copy, the client's id and question, and one subtraction per TTL (found by walking the records): no parse, no
// encode. Strings rather than Buffers because V8 keeps a short string in one small heap object, where a Buffer costs
// a view object and a backing store. Every byte counts (V8 rounds a string up to 8 bytes; 100,000 one-record answers
// for 15-character names take 6.4 MB): hence no id, QDCOUNT, question type and class or TTL offsets, and flags and
// times packed. Keys are int32 hashes; a collision between two names is caught by comparing the stored name and
// DNSSEC bits with the query's, and costs only a miss (questions for one name differ in their keys by construction:
// questionKey).
import { FLAG, type Query, type AnswerInfo, RCODE, writeOpt } from './wire.ts';

/** Wire bytes before an entry's first: the id, the header flags (in the trailer) and QDCOUNT (always 1). */
const SKIP = 6;
/** The question's type and class, between the name and the records on the wire, are the query's. */
const TYPE_CLASS = 4;
// Trailer: [header flags, the entry's own flags in the opcode field: 2][lifetime s: 3][stored at s: 4]. Stored
// answers are all for opcode 0 (QUERY), the only one cyfs-ns answers; lifetimes are at most cache.max_ttl (7 days).
const TRAILER = 9;
const OPCODE = 0x7800;
const OWN_SHIFT = 11;
const MAX_LIFETIME = 0xffffff;
const F_DO = 1;
const F_CD = 2;
/** A negative answer (NXDOMAIN or NODATA). */
export const F_NEGATIVE = 4;
/** Local data: its TTLs never count down. */
const F_LOCAL = 8;

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
  const out = pack(resp, q, wireLen);
  out.writeUInt16BE(info.arcountKept, 10 - SKIP);
  const shift = SKIP + TYPE_CLASS;
  for (const off of info.ttlOffsets) {
    let ttl = out.readUInt32BE(off - shift);
    // RFC 2181 §8: a TTL with the top bit set means zero.
    if (ttl > 0x7fffffff) ttl = 0;
    ttl = negative ? Math.min(ttl, lifetime) : Math.max(limits.minTtl, Math.min(ttl, limits.maxTtl));
    out.writeUInt32BE(ttl, off - shift);
  }
  // What comes from the cache is not an authoritative answer, whatever the upstream was (RFC 1035 §4.1.1).
  const headerFlags = ((resp[2] << 8) | resp[3]) & ~FLAG.AA;
  writeTrailer(out, headerFlags, (q.dnssecOk ? F_DO : 0) | (q.flags & FLAG.CD ? F_CD : 0) | (negative ? F_NEGATIVE : 0), Math.min(lifetime, MAX_LIFETIME), storedAt);
  return { entry: out.toString('latin1'), lifetime };
}

/** An answer's bytes as stored (room for the trailer left at the end), its question being the query's. */
function pack(wire: Buffer, q: Query, wireLen: number): Buffer {
  const out = Buffer.allocUnsafe(wireLen - SKIP - TYPE_CLASS + TRAILER);
  wire.copy(out, 0, SKIP, q.nameEnd);
  for (let i = 12 - SKIP; i < q.nameEnd - SKIP; i++) out[i] = lower(out[i]);
  wire.copy(out, q.nameEnd - SKIP, q.qEnd, wireLen);
  return out;
}

/** The stored form of an answer built locally. */
export function packLocal(wire: Buffer, q: Query): string {
  const out = pack(wire, q, wire.length);
  writeTrailer(out, (wire[2] << 8) | wire[3], (q.dnssecOk ? F_DO : 0) | (q.flags & FLAG.CD ? F_CD : 0) | F_LOCAL, 0, 0);
  return out.toString('latin1');
}

function writeTrailer(out: Buffer, headerFlags: number, flags: number, lifetime: number, storedAt: number): void {
  const o = out.length - TRAILER;
  out.writeUInt16BE((headerFlags & ~OPCODE) | (flags << OWN_SHIFT), o);
  out.writeUIntBE(lifetime, o + 2, 3);
  out.writeUInt32BE(storedAt, o + 5);
}

export function entryLifetime(e: string): number {
  const t = e.length - 7;
  return (e.charCodeAt(t) << 16) | (e.charCodeAt(t + 1) << 8) | e.charCodeAt(t + 2);
}

export function entryStoredAt(e: string): number {
  const t = e.length - 4;
  return ((e.charCodeAt(t) << 24) | (e.charCodeAt(t + 1) << 16) | (e.charCodeAt(t + 2) << 8) | e.charCodeAt(t + 3)) >>> 0;
}

export function entryFlags(e: string): number {
  return ((e.charCodeAt(e.length - TRAILER) << 8) >> OWN_SHIFT) & 0xf;
}

/** Whether an entry stored under the query's key answers it: the same name (ignoring case) and DNSSEC bits. */
function sameQuestion(e: string, q: Query): boolean {
  const msg = q.msg;
  for (let i = 12; i < q.nameEnd; i++) if (e.charCodeAt(i - SKIP) !== lower(msg[i])) return false;
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
  const wireLen = t + SKIP + TYPE_CLASS;
  const out = Buffer.allocUnsafe(q.edns ? wireLen + 11 : wireLen);
  // Counts, name and records in one write, then the records moved past the question's type and class.
  out.write(e, SKIP, t, 'latin1');
  out.copyWithin(q.qEnd, q.nameEnd, SKIP + t);
  const msg = q.msg;
  out[0] = msg[0];
  out[1] = msg[1];
  const qflags = q.flags;
  const stored = (e.charCodeAt(t) << 8) | e.charCodeAt(t + 1);
  let flags = (stored & ~(OPCODE | FLAG.RD | FLAG.CD)) | (qflags & (FLAG.RD | FLAG.CD));
  if (!q.dnssecOk && !(qflags & FLAG.AD)) flags &= ~FLAG.AD;
  out[2] = flags >> 8;
  out[3] = flags & 0xff;
  out[4] = 0;
  out[5] = 1;
  msg.copy(out, 12, 12, q.qEnd);
  if ((age > 0 || fixedTtl >= 0) && !((stored >> OWN_SHIFT) & F_LOCAL)) countDown(out, q.qEnd, wireLen, age, fixedTtl);
  if (q.edns) {
    writeOpt(out, wireLen, udpSize, 0, q.dnssecOk);
    const ar = ((out[10] << 8) | out[11]) + 1;
    out[10] = ar >> 8;
    out[11] = ar & 0xff;
  }
  return out;
}

/** Every record's TTL less `age` (not below zero), or `fixedTtl` when it is not negative. The records were checked
 * when the entry was stored: names are labels ending in a zero or a pointer. */
function countDown(out: Buffer, from: number, end: number, age: number, fixedTtl: number): void {
  for (let p = from; p < end; ) {
    for (let l = out[p]; ; l = out[p]) {
      if (l === 0) {
        p++;
        break;
      }
      if (l >= 0xc0) {
        p += 2;
        break;
      }
      p += l + 1;
    }
    let ttl = fixedTtl >= 0 ? fixedTtl : out.readUInt32BE(p + 4) - age;
    if (ttl < 0) ttl = 0;
    out.writeUInt32BE(ttl, p + 4);
    p += 10 + ((out[p + 8] << 8) | out[p + 9]);
  }
}

/** Most keys per slot of the hash table before it doubles: linear probing stays short below this. */
const MAX_LOAD = 0.8;
const EMPTY = -1;

/**
 * Entries by question key, never more than `maxEntries`; beyond that the CLOCK algorithm picks the one to drop (an
 * entry asked for since the hand last passed gets a second chance), which approximates least-recently-used without
 * moving anything on a hit. Entries live in dense arrays by index, in the order they were stored; an open-addressing
 * table of int32 indexes finds them by key. That costs about 20 bytes an entry where a Map<number, string> that is
 * both read and written (every LRU hit a delete and an insert) settles at twice its size, about 37. Expired entries
 * stay until evicted: serve-stale may still use them.
 */
export class AnswerCache {
  private keys = new Int32Array(0);
  private entries: string[] = [];
  /** Asked for since the hand last passed (CLOCK's reference bit). */
  private used = new Uint8Array(0);
  private slots = new Int32Array(0);
  private shift = 32;
  private count = 0;
  private hand = 0;
  evictions = 0;

  constructor(private maxEntries: number) {}

  get size(): number {
    return this.count;
  }

  /** Fibonacci hashing: the top bits of key x golden ratio pick the slot. */
  private home(key: number): number {
    return Math.imul(key, 0x9e3779b1) >>> this.shift;
  }

  /** The slot holding `key`, or -1 - the empty slot where it would go. */
  private find(key: number): number {
    const mask = this.slots.length - 1;
    for (let i = this.home(key); ; i = (i + 1) & mask) {
      const id = this.slots[i];
      if (id === EMPTY) return -1 - i;
      if (this.keys[id] === key) return i;
    }
  }

  get(q: Query): string | undefined {
    if (this.count === 0) return undefined;
    const slot = this.find(q.key);
    if (slot < 0) return undefined;
    const id = this.slots[slot];
    const e = this.entries[id];
    if (!sameQuestion(e, q)) return undefined;
    this.used[id] = 1;
    return e;
  }

  set(key: number, e: string): void {
    if (this.maxEntries === 0) return;
    if (this.count > 0) {
      const slot = this.find(key);
      if (slot >= 0) {
        const id = this.slots[slot];
        this.entries[id] = e;
        this.used[id] = 1;
        return;
      }
    }
    let id: number;
    if (this.count < this.maxEntries) {
      if (this.count === this.keys.length) this.growEntries();
      if (this.count + 1 > this.slots.length * MAX_LOAD) this.rehash(Math.max(64, this.slots.length * 2));
      id = this.count++;
      this.entries[id] = e;
    } else {
      id = this.victim();
      this.unlink(this.find(this.keys[id]));
      this.evictions++;
      this.entries[id] = e;
    }
    this.keys[id] = key;
    this.used[id] = 0;
    this.slots[-1 - this.find(key)] = id;
  }

  /** The entry the CLOCK hand stops at: the first one not asked for since the hand last passed it. The new entry
   * takes its place, just behind the hand, so it is the last to be looked at. */
  private victim(): number {
    for (;;) {
      if (this.hand >= this.count) this.hand = 0;
      const id = this.hand++;
      if (this.used[id] === 0) return id;
      this.used[id] = 0;
    }
  }

  /** Empties a slot, moving later entries of its probe run back so that none is left behind a gap. */
  private unlink(slot: number): void {
    const mask = this.slots.length - 1;
    let gap = slot;
    for (let i = (slot + 1) & mask; ; i = (i + 1) & mask) {
      const id = this.slots[i];
      if (id === EMPTY) break;
      const h = this.home(this.keys[id]);
      // An entry whose home lies cyclically in (gap, i] is still reachable from its home: it stays.
      if (gap <= i ? gap < h && h <= i : gap < h || h <= i) continue;
      this.slots[gap] = id;
      gap = i;
    }
    this.slots[gap] = EMPTY;
  }

  /** A quarter more room at a time (V8 grows an array by half): the room not used yet stays under a fifth. */
  private growEntries(): void {
    const size = Math.min(this.maxEntries, Math.max(64, Math.ceil(this.keys.length * 1.25)));
    const keys = new Int32Array(size);
    keys.set(this.keys);
    this.keys = keys;
    const used = new Uint8Array(size);
    used.set(this.used);
    this.used = used;
    const entries = new Array<string>(size);
    for (let id = 0; id < this.count; id++) entries[id] = this.entries[id];
    this.entries = entries;
  }

  private rehash(size: number): void {
    this.slots = new Int32Array(size).fill(EMPTY);
    this.shift = 32 - Math.log2(size);
    for (let id = 0; id < this.count; id++) this.slots[-1 - this.find(this.keys[id])] = id;
  }

  clear(): void {
    this.keys = new Int32Array(0);
    this.entries = [];
    this.used = new Uint8Array(0);
    this.slots = new Int32Array(0);
    this.shift = 32;
    this.count = 0;
    this.hand = 0;
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
