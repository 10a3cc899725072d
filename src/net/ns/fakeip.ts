// The fake-ip pool (Clash's fake-ip mode): an A query for a name outside the filter gets an address from a reserved
// block, and the gateway's proxy, seeing a connection to that address, asks which name it stands for and connects
// there itself. Clients never learn real addresses, so the proxy decides routing by name, and no real lookup sits on
// the path of a connection the proxy will route elsewhere anyway.
//
// A name keeps its address for as long as the pool has room, across restarts: a client that cached the address (many
// apps keep addresses far beyond the TTL) must reach the same name tomorrow. So every new mapping is committed to
// SQLite, fsync included, before its address is returned. Recency (which mapping is least recently used, the one a
// full pool recycles) lives in memory and reaches SQLite in batches; a crash loses only recency since the last flush.
import { mkdirSync, readFileSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import { parseIPv4 } from './ip.ts';
import { domainProblem } from './records.ts';

export const DEFAULT_FAKE_IP_CIDR = '198.18.0.0/15';
export const DEFAULT_FAKE_IP_TTL = 1;
/** A fake answer is stable, so a longer TTL costs nothing until the filter changes or the name's mapping is recycled;
 * then clients keep the stale answer this long. */
export const MAX_FAKE_IP_TTL = 3600;

/** Largest pool: every address may end up holding a mapping in memory (about 110 bytes each with 30-character names),
 * so the prefix bounds what a long-running pool grows to; a full /12 (1,048,573 names) is about 120 MB. */
export const MIN_FAKE_IP_PREFIX = 12;
/** Smallest pool: a /30 has one usable address (network, gateway and broadcast are never handed out). */
export const MAX_FAKE_IP_PREFIX = 30;

/** "cfIP" in the SQLite header, so a file of ours is told apart from any other database. */
const APPLICATION_ID = 0x63664950;
const SCHEMA_VERSION = 1;
const SCHEMA = `
CREATE TABLE fakeip (
  ip INTEGER PRIMARY KEY,       -- the address as an unsigned 32-bit number (198.18.0.2 = 3323068418)
  name TEXT NOT NULL UNIQUE,    -- lower case, no trailing dot
  assigned_at INTEGER NOT NULL, -- ms since the epoch
  last_used INTEGER NOT NULL    -- ms since the epoch; written in batches, so up to one flush interval old
) STRICT;
`;

export class FakeIpError extends Error {}

export interface FakeIpMapping {
  name: string;
  /** When the name got this address (ms since the epoch). */
  assigned_at: number;
  /** When an answer or a map-back last used it (ms since the epoch). */
  last_used: number;
}

export interface FakeIpStats {
  cidr: string;
  /** Mappings held. */
  size: number;
  /** Addresses that can be handed out (the prefix's size less network, gateway and broadcast). */
  capacity: number;
  /** Mappings taken from their name for a new one since open, because the pool was full. */
  recycled: number;
  /** Mappings found in the file at open that no longer fit (the pool's CIDR changed), deleted. */
  dropped: number;
  /** Mappings whose last use is not yet in the file. */
  unflushed: number;
}

export interface FakeIpPoolOptions {
  /** IPv4 CIDR, /12 to /30. Default 198.18.0.0/15 (RFC 2544's benchmarking block, routed nowhere). */
  cidr?: string;
  /** SQLite file ("" or ":memory:" for a pool that forgets at close). Its directory is created when missing. */
  dbFile: string;
  /** Names that get real answers: patterns (each checked; a bad one throws) or a filter built with loadFakeIpFilter. */
  filter?: readonly string[] | FakeIpFilter;
  /** TTL of fake answers (0 to 3600); default 1, as Clash. */
  ttl?: number;
  /** How often recency is written to the file (ms). Default 30000. */
  flushMs?: number;
  /** Told about a background flush that failed (the entries stay unflushed and are tried again). */
  onError?: (err: Error) => void;
}

/** The pool's addresses: `base` is the network address, `bits` the prefix length. */
export interface PoolRange {
  base: number;
  bits: number;
}

/** Why `cidr` is not a usable fake-ip pool, or its range. */
export function parsePoolCidr(cidr: string): PoolRange | string {
  const m = /^([^/]+)\/([0-9]{1,2})$/.exec(cidr);
  if (!m) return `"${cidr}" is not an IPv4 CIDR such as ${DEFAULT_FAKE_IP_CIDR}`;
  const bytes = parseIPv4(m[1]);
  if (!bytes) return `"${m[1]}" is not an IPv4 address (the pool is IPv4 only: AAAA queries get no fake answer)`;
  const bits = Number(m[2]);
  if (bits < MIN_FAKE_IP_PREFIX || bits > MAX_FAKE_IP_PREFIX) {
    return `prefix /${bits} is outside /${MIN_FAKE_IP_PREFIX} to /${MAX_FAKE_IP_PREFIX} (a /${MIN_FAKE_IP_PREFIX} already holds over a million names in memory; a /${MAX_FAKE_IP_PREFIX} has one usable address)`;
  }
  const addr = u32(bytes);
  const hostMask = 2 ** (32 - bits) - 1;
  const base = addr - (addr % (hostMask + 1));
  if (base !== addr) return `"${cidr}" has host bits set; the network is ${formatU32(base)}/${bits}`;
  // A fake address must be something a client sends to its default route; these never leave the host or the link.
  for (const [net, len, what] of RESERVED) {
    const size = 2 ** (32 - len);
    if (base < net + size && net < base + hostMask + 1) return `"${cidr}" overlaps ${formatU32(net)}/${len} (${what}); clients would never route it to the gateway`;
  }
  return { base, bits };
}

const RESERVED: [number, number, string][] = [
  [0x00000000, 8, '"this network"'],
  [0x7f000000, 8, 'loopback'],
  [0xa9fe0000, 16, 'link-local'],
  [0xe0000000, 3, 'multicast and reserved'],
];

function u32(b: Uint8Array): number {
  return b[0] * 0x1000000 + (b[1] << 16) + (b[2] << 8) + b[3];
}

function formatU32(v: number): string {
  return `${v >>> 24}.${(v >>> 16) & 0xff}.${(v >>> 8) & 0xff}.${v & 0xff}`;
}

/** The address as a number, accepting the IPv4-mapped IPv6 form a dual-stack socket reports ("::ffff:198.18.0.2"). */
function addressOf(ip: string): number | undefined {
  const text = ip.length > 7 && ip.slice(0, 7).toLowerCase() === '::ffff:' ? ip.slice(7) : ip;
  const b = parseIPv4(text);
  return b ? u32(b) : undefined;
}

// ---- the filter --------------------------------------------------------------------------------------------------
// Clash's domain trie semantics (component/trie/domain.go), which its fake-ip-filter uses:
//   example.com     the name only
//   *.example.com   one label below (a.example.com, not example.com, not a.b.example.com); "*" may be any whole
//                   label, anywhere: a.*.example.com, *.*.example.com, time.*.com; "*" alone: single-label names
//   .example.com    every name below, not the name itself
//   +.example.com   the name and every name below ("+" only as the first label; "+" alone: every name)
// Labels are matched from the right in a trie, so a query costs a few map lookups per label whatever the list's size.

interface TrieNode {
  next: Map<string, TrieNode> | null;
  /** A pattern ends here: the name itself matches. */
  exact: boolean;
  /** Names with one or more labels below this one match. */
  below: boolean;
}

const LABEL = /^[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?$/;

function trimPattern(pattern: string): string {
  const p = pattern.trim().toLowerCase();
  return p.length > 1 && p.endsWith('.') && p !== '+.' ? p.slice(0, -1) : p;
}

/** Why `pattern` is not a fake-ip filter pattern, or undefined when it is one. */
export function filterPatternProblem(pattern: string): string | undefined {
  const p = trimPattern(pattern);
  if (p === '') return 'a pattern is empty';
  if (/^(geosite|geoip|rule-set):/.test(p)) return `"${pattern}": geosite, geoip and rule-set references are not supported; list the patterns`;
  if (p === '+') return undefined;
  const body = p.startsWith('+.') ? p.slice(2) : p.startsWith('.') ? p.slice(1) : p;
  if (body === '') return `"${pattern}" has nothing after its prefix`;
  if (body.length > 253) return `"${pattern}" is longer than 255 bytes on the wire`;
  for (const label of body.split('.')) {
    if (label === '') return `"${pattern}" has an empty label`;
    if (label === '*') continue;
    if (label.includes('*')) return `"${pattern}": "*" stands for a whole label (*.example.com, a.*.example.com)`;
    if (label.includes('+')) return `"${pattern}": "+" may only be the first label (+.example.com)`;
    if (label.length > 63) return `"${pattern}" has a label longer than 63 bytes`;
    if (!LABEL.test(label)) return `"${pattern}" is not a domain pattern (letters, digits, "-", "_", dots, and the wildcards "*", "+." and ".")`;
  }
  return undefined;
}

/** Names that get real answers instead of fake ones. */
export class FakeIpFilter {
  private readonly root: TrieNode = { next: null, exact: false, below: false };
  private count = 0;

  /** Patterns added. */
  get size(): number {
    return this.count;
  }

  /** Adds a pattern; returns why it is not one (and adds nothing) when it is malformed. */
  add(pattern: string): string | undefined {
    const problem = filterPatternProblem(pattern);
    if (problem) return problem;
    let p = trimPattern(pattern);
    let exact = true;
    let below = false;
    if (p === '+') {
      this.root.below = true;
      this.count++;
      return undefined;
    }
    if (p.startsWith('+.')) {
      p = p.slice(2);
      below = true;
    } else if (p.startsWith('.')) {
      p = p.slice(1);
      exact = false;
      below = true;
    }
    let node = this.root;
    const labels = p.split('.');
    for (let i = labels.length - 1; i >= 0; i--) {
      node.next ??= new Map();
      let child = node.next.get(labels[i]);
      if (!child) {
        child = { next: null, exact: false, below: false };
        node.next.set(labels[i], child);
      }
      node = child;
    }
    node.exact ||= exact;
    node.below ||= below;
    this.count++;
    return undefined;
  }

  /** Adds one pattern per line ("#" starts a comment); returns "<label>:<line>: <reason>" for each line left out. */
  addList(text: string, label: string): string[] {
    const problems: string[] = [];
    const lines = text.split('\n');
    for (let i = 0; i < lines.length; i++) {
      const hash = lines[i].indexOf('#');
      const line = (hash >= 0 ? lines[i].slice(0, hash) : lines[i]).trim();
      if (line === '') continue;
      const problem = this.add(line);
      if (problem) problems.push(`${label}:${i + 1}: ${problem}`);
    }
    return problems;
  }

  /** Whether `name` (lower case, no trailing dot) matches a pattern. */
  matches(name: string): boolean {
    return this.count > 0 && name !== '' && walk(this.root, name, name.length);
  }
}

/** Whether the labels of name[0, end) (none when end < 0) lead from `n` to a match. Each trie node is visited at most
 * once per name (a node's depth fixes which label it is compared with), so wildcards cannot make this blow up. */
function walk(n: TrieNode, name: string, end: number): boolean {
  if (end < 0) return n.exact;
  if (n.below) return true;
  if (n.next === null) return false;
  const dot = name.lastIndexOf('.', end - 1);
  const child = n.next.get(name.slice(dot + 1, end));
  if (child && walk(child, name, dot)) return true;
  const any = n.next.get('*');
  return any !== undefined && walk(any, name, dot);
}

/**
 * A filter from configured patterns and pattern files. A bad configured pattern, or a file that cannot be read,
 * throws; a bad line in a file is left out and reported in `problems` (the files are often downloaded lists, and one
 * odd line should not stop the server).
 */
export function loadFakeIpFilter(patterns: readonly string[], files: readonly string[] = []): { filter: FakeIpFilter; problems: string[] } {
  const filter = new FakeIpFilter();
  const bad = patterns.map((p) => filter.add(p)).filter((p): p is string => p !== undefined);
  if (bad.length > 0) throw new FakeIpError(`fake-ip filter: ${bad.join('; ')}`);
  const problems: string[] = [];
  for (const file of files) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (err) {
      throw new FakeIpError(`fake-ip filter file ${file}: cannot read: ${(err as Error).message}`);
    }
    problems.push(...filter.addList(text, file));
  }
  return { filter, problems };
}

// ---- the pool ----------------------------------------------------------------------------------------------------

const NONE = -1;

/**
 * Mappings in memory are kept by slot: slot i is the address base + 2 + i (the network address, the first address,
 * kept for the gateway's own interface on the pool, and the broadcast address are never handed out). Per-slot data
 * sits in typed arrays grown on demand, so memory follows the mappings held, not the pool's size; an LRU list runs
 * through the slots (prev/next), the most recently used at its head.
 */
export class FakeIpPool {
  readonly cidr: string;
  readonly ttl: number;
  private filterSet: FakeIpFilter;
  private readonly first: number;
  private readonly end: number;
  private readonly capacity: number;
  private readonly byName = new Map<string, number>();
  private names: (string | undefined)[] = [];
  private assignedAt = new Float64Array(0);
  private lastUsed = new Float64Array(0);
  private prev = new Int32Array(0);
  private next = new Int32Array(0);
  private dirty = new Uint8Array(0);
  private dirtyList: number[] = [];
  private head = NONE;
  private tail = NONE;
  /** No slot below this is free: slots are never freed while open, so the search for a free one only moves forward. */
  private fresh = 0;
  private recycled = 0;
  private dropped = 0;
  private closed = false;
  private readonly timer: NodeJS.Timeout;
  private readonly stmt: {
    insert: Database.Statement<[number, string, number, number]>;
    reuse: Database.Statement<[string, number, number, number]>;
    touch: Database.Statement<[number, number]>;
  };
  private readonly flushDirty: () => void;

  private constructor(
    private readonly db: Database.Database,
    private readonly file: string,
    range: PoolRange,
    o: FakeIpPoolOptions,
    filter: FakeIpFilter,
  ) {
    this.cidr = `${formatU32(range.base)}/${range.bits}`;
    this.ttl = o.ttl ?? DEFAULT_FAKE_IP_TTL;
    this.filterSet = filter;
    this.first = range.base + 2;
    this.end = range.base + 2 ** (32 - range.bits) - 1;
    this.capacity = this.end - this.first;
    this.stmt = {
      insert: db.prepare('INSERT INTO fakeip (ip, name, assigned_at, last_used) VALUES (?, ?, ?, ?)'),
      reuse: db.prepare('UPDATE fakeip SET name = ?, assigned_at = ?, last_used = ? WHERE ip = ?'),
      touch: db.prepare('UPDATE fakeip SET last_used = ? WHERE ip = ?'),
    };
    this.flushDirty = db.transaction(() => {
      for (const slot of this.dirtyList) this.stmt.touch.run(this.lastUsed[slot], this.first + slot);
    });
    this.load();
    const onError = o.onError;
    this.timer = setInterval(() => {
      try {
        this.flush();
      } catch (err) {
        onError?.(err as Error);
      }
    }, o.flushMs ?? 30_000);
    this.timer.unref();
  }

  /**
   * Opens (or creates) the pool's file and loads every mapping. The file is locked for as long as the pool is open:
   * two processes handing out addresses from one file would give one address to two names.
   */
  static open(o: FakeIpPoolOptions): FakeIpPool {
    const range = parsePoolCidr(o.cidr ?? DEFAULT_FAKE_IP_CIDR);
    if (typeof range === 'string') throw new FakeIpError(`fake-ip cidr: ${range}`);
    if (o.ttl !== undefined && !(Number.isInteger(o.ttl) && o.ttl >= 0 && o.ttl <= MAX_FAKE_IP_TTL)) {
      throw new FakeIpError(`fake-ip ttl: must be a whole number of seconds from 0 to ${MAX_FAKE_IP_TTL}, got ${o.ttl}`);
    }
    if (o.flushMs !== undefined && !(Number.isInteger(o.flushMs) && o.flushMs >= 1)) {
      throw new FakeIpError(`fake-ip flushMs: must be a whole number of ms of at least 1, got ${o.flushMs}`);
    }
    const filter = o.filter instanceof FakeIpFilter ? o.filter : loadFakeIpFilter(o.filter ?? []).filter;
    const file = o.dbFile === '' ? ':memory:' : o.dbFile;
    let db: Database.Database | undefined;
    try {
      if (file !== ':memory:') mkdirSync(dirname(file), { recursive: true, mode: 0o750 });
      // No waiting for a lock: the only holder is another pool, which holds it until it closes.
      db = new Database(file, { timeout: 0 });
      prepareFile(db, file);
      return new FakeIpPool(db, file, range, o, filter);
    } catch (err) {
      db?.close();
      if (err instanceof FakeIpError) throw err;
      const e = err as Error & { code?: string };
      const why =
        e.code === 'SQLITE_NOTADB' || e.code === 'SQLITE_CORRUPT'
          ? 'is not a SQLite database, or is damaged; move it aside and a new, empty pool is started'
          : e.code === 'SQLITE_BUSY'
            ? 'is in use by another fake-ip pool (another cyfs-ns?); one process owns a pool file'
            : `cannot be opened: ${e.message}`;
      throw new FakeIpError(`fake-ip database ${file} ${why}`);
    }
  }

  /** Reads every mapping, the least recently used first; deletes the ones that no longer fit the pool. */
  private load(): void {
    const count = this.db.prepare('SELECT count(*) FROM fakeip').pluck().get() as number;
    this.grow(Math.min(this.capacity, count));
    // Row by row: all() would hold every row as an array at once, tens of MB of garbage for a full /15.
    const rows = this.db.prepare('SELECT ip, name, assigned_at, last_used FROM fakeip ORDER BY last_used, ip').raw().iterate() as IterableIterator<[number, string, number, number]>;
    const misfits: number[] = [];
    for (const [ip, name, assigned, used] of rows) {
      const slot = ip - this.first;
      if (slot < 0 || slot >= this.capacity || domainProblem(name, false) !== undefined || name !== name.toLowerCase() || name.endsWith('.')) {
        misfits.push(ip);
        continue;
      }
      this.grow(slot + 1);
      this.names[slot] = name;
      this.byName.set(name, slot);
      this.assignedAt[slot] = assigned;
      this.lastUsed[slot] = used;
      this.linkHead(slot);
    }
    if (misfits.length > 0) {
      const del = this.db.prepare<[number]>('DELETE FROM fakeip WHERE ip = ?');
      this.db.transaction(() => misfits.forEach((ip) => del.run(ip)))();
      this.dropped = misfits.length;
    }
  }

  get filter(): FakeIpFilter {
    return this.filterSet;
  }

  /** Replaces the filter (a reload): names it now matches keep their mappings, unused until they leave it again. */
  setFilter(filter: FakeIpFilter): void {
    this.filterSet = filter;
  }

  /** Whether `name` gets a real answer rather than a fake one. */
  filtered(name: string): boolean {
    return this.filterSet.matches(normalize(name));
  }

  /** Whether `ip` lies in the pool's CIDR (its reserved addresses included): a destination the proxy must map back. */
  contains(ip: string): boolean {
    const a = addressOf(ip);
    return a !== undefined && a >= this.first - 2 && a <= this.end;
  }

  /**
   * The fake address of `name` (case and a trailing dot do not matter), allocated when it has none. A new mapping is
   * on disk before this returns. When the pool is full, the least recently used mapping is taken from its name: that
   * name gets a new address when next asked, and a client still holding the old one reaches the new name.
   */
  assign(name: string): string {
    this.open();
    const n = normalize(name);
    const known = this.byName.get(n);
    if (known !== undefined) {
      this.touch(known);
      return formatU32(this.first + known);
    }
    const problem = domainProblem(n, false);
    if (problem) throw new FakeIpError(`fake-ip: ${problem === 'is empty' ? 'the root name has no address' : problem}`);
    const now = Date.now();
    let slot: number;
    if (this.byName.size < this.capacity) {
      while (this.fresh < this.names.length && this.names[this.fresh] !== undefined) this.fresh++;
      slot = this.fresh;
      this.write(() => this.stmt.insert.run(this.first + slot, n, now, now));
      this.grow(slot + 1);
    } else {
      slot = this.tail;
      this.write(() => this.stmt.reuse.run(n, now, now, this.first + slot));
      this.byName.delete(this.names[slot]!);
      this.unlink(slot);
      this.recycled++;
    }
    this.names[slot] = n;
    this.byName.set(n, slot);
    this.assignedAt[slot] = now;
    this.lastUsed[slot] = now;
    this.linkHead(slot);
    return formatU32(this.first + slot);
  }

  /**
   * The name `ip` stands for (the gateway proxy's map-back), or undefined when no name has it. A map-back counts as a
   * use: a client that keeps connecting to a cached address keeps its mapping from being recycled. Throws when `ip` is
   * not an IPv4 address in the pool.
   */
  lookup(ip: string): FakeIpMapping | undefined {
    this.open();
    const a = addressOf(ip);
    if (a === undefined) throw new FakeIpError(`fake-ip: "${ip}" is not an IPv4 address`);
    if (a < this.first - 2 || a > this.end) throw new FakeIpError(`fake-ip: ${ip} is outside the pool ${this.cidr}`);
    const slot = a - this.first;
    const name = slot >= 0 && slot < this.names.length ? this.names[slot] : undefined;
    if (name === undefined) return undefined;
    this.touch(slot);
    return { name, assigned_at: this.assignedAt[slot], last_used: this.lastUsed[slot] };
  }

  stats(): FakeIpStats {
    return {
      cidr: this.cidr,
      size: this.byName.size,
      capacity: this.capacity,
      recycled: this.recycled,
      dropped: this.dropped,
      unflushed: this.dirtyList.length,
    };
  }

  /** Writes pending recency in one transaction (the timer does this every flushMs; close does it too). */
  flush(): void {
    if (this.dirtyList.length === 0 || this.closed) return;
    this.flushDirty();
    for (const slot of this.dirtyList) this.dirty[slot] = 0;
    this.dirtyList = [];
  }

  close(): void {
    if (this.closed) return;
    clearInterval(this.timer);
    try {
      this.flush();
    } finally {
      this.closed = true;
      this.db.close();
    }
  }

  private open(): void {
    if (this.closed) throw new FakeIpError('fake-ip: the pool is closed');
  }

  private write(run: () => void): void {
    try {
      run();
    } catch (err) {
      throw new FakeIpError(`fake-ip database ${this.file}: cannot store a mapping: ${(err as Error).message}`);
    }
  }

  private touch(slot: number): void {
    this.lastUsed[slot] = Date.now();
    if (this.dirty[slot] === 0) {
      this.dirty[slot] = 1;
      this.dirtyList.push(slot);
    }
    if (this.head !== slot) {
      this.unlink(slot);
      this.linkHead(slot);
    }
  }

  private linkHead(slot: number): void {
    this.prev[slot] = NONE;
    this.next[slot] = this.head;
    if (this.head !== NONE) this.prev[this.head] = slot;
    this.head = slot;
    if (this.tail === NONE) this.tail = slot;
  }

  private unlink(slot: number): void {
    const p = this.prev[slot];
    const n = this.next[slot];
    if (p !== NONE) this.next[p] = n;
    else this.head = n;
    if (n !== NONE) this.prev[n] = p;
    else this.tail = p;
  }

  /** Makes the per-slot arrays hold at least `len` slots, doubling so that growth costs O(1) per mapping. */
  private grow(len: number): void {
    if (len <= this.lastUsed.length) return;
    const size = Math.min(this.capacity, Math.max(len, this.lastUsed.length * 2, 1024));
    const copy = <T extends Float64Array | Int32Array | Uint8Array>(old: T, make: (n: number) => T): T => {
      const out = make(size);
      out.set(old);
      return out;
    };
    this.assignedAt = copy(this.assignedAt, (n) => new Float64Array(n));
    this.lastUsed = copy(this.lastUsed, (n) => new Float64Array(n));
    this.prev = copy(this.prev, (n) => new Int32Array(n));
    this.next = copy(this.next, (n) => new Int32Array(n));
    this.dirty = copy(this.dirty, (n) => new Uint8Array(n));
  }
}

function normalize(name: string): string {
  const n = name.endsWith('.') ? name.slice(0, -1) : name;
  return n.toLowerCase();
}

/** Checks that the file is ours (or new, then makes it ours), locks it, and turns on WAL. */
function prepareFile(db: Database.Database, file: string): void {
  // Before the first read, so the lock the first write takes is kept until close.
  db.pragma('locking_mode = EXCLUSIVE');
  const app = db.pragma('application_id', { simple: true }) as number;
  const tables = db.prepare("SELECT name FROM sqlite_schema WHERE type = 'table'").pluck().all() as string[];
  const fresh = app === 0 && tables.length === 0;
  if (!fresh && app !== APPLICATION_ID) {
    const what = app === 0 ? `it holds other tables (${tables.slice(0, 5).join(', ')})` : `its application id is 0x${(app >>> 0).toString(16)}`;
    throw new FakeIpError(`fake-ip database ${file} is not a cyfs-ns fake-ip pool: ${what}; give the pool a file of its own`);
  }
  if (!fresh) {
    const version = db.pragma('user_version', { simple: true }) as number;
    if (version !== SCHEMA_VERSION || !tables.includes('fakeip')) {
      throw new FakeIpError(`fake-ip database ${file} has schema version ${version}; this build reads version ${SCHEMA_VERSION}`);
    }
  }
  // WAL: a new mapping is one append and one fsync, not a rewrite of a rollback journal.
  db.pragma('journal_mode = WAL');
  // FULL: a mapping is on disk before its address is handed out; a power cut must not lose an address a client holds.
  db.pragma('synchronous = FULL');
  db.transaction(() => {
    if (!fresh) return;
    db.exec(SCHEMA);
    db.pragma(`application_id = ${APPLICATION_ID}`);
    db.pragma(`user_version = ${SCHEMA_VERSION}`);
  }).immediate();
}
