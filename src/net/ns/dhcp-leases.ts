// The DHCP lease database: which address each client holds, from one range of a subnet plus static leases by MAC.
// Every address has at most one entry (offered, bound or declined), so the entries can never outnumber the range and
// the static addresses, whatever a flood of made-up clients asks for. Bound and declined entries, expired ones
// included, are kept in the lease file: an expired lease is remembered so that its client gets the same address back
// as long as nobody else needed it, and the file is replaced atomically (temporary file, fsync, rename, fsync of the
// directory) so that a power cut leaves the old file or the new one, never half of one.
import { readTextIfExists } from '../../lib/read-if-exists.ts';
import { mkdir, open, rename } from 'node:fs/promises';
import { dirname } from 'node:path';
import { intToIpv4, ipv4ToInt } from './dhcp-packet.ts';

export type LeaseState = 'offered' | 'bound' | 'declined';

export interface Lease {
  address: string;
  mac: string;
  /** Option 61 in hex, when the client sent one: then it, not the MAC, identifies the client (RFC 2131 §4.2). */
  clientId: string | null;
  /** The client's host name (option 12), already made a DNS label. */
  hostname: string | null;
  /** Milliseconds since the epoch. */
  expires: number;
  state: LeaseState;
}

export interface Client {
  mac: string;
  clientId: string | null;
}

export interface StaticLease {
  mac: string;
  address: string;
  name: string | null;
}

export interface LeaseDbOptions {
  /** First and last address handed out dynamically. */
  start: string;
  end: string;
  statics: readonly StaticLease[];
  /** Seconds. */
  leaseTime: number;
  /** null: leases live in memory only. */
  file: string | null;
  now?: () => number;
}

/** How long an offered address is kept for the client that was offered it. */
export const OFFER_HOLD_MS = 60_000;
/** How long a declined address (someone else on the LAN uses it) is kept out of use, as dnsmasq does. */
export const DECLINE_HOLD_MS = 600_000;

const MAC = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;
const LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

function key(c: Client): string {
  return c.clientId !== null ? `id:${c.clientId}` : `mac:${c.mac}`;
}

/** FNV-1a: a client's first-choice address comes from its identity, so it tends to be the same even without a file. */
function hash(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

interface Entry {
  address: number;
  mac: string;
  clientId: string | null;
  hostname: string | null;
  expires: number;
  state: LeaseState;
}

/** Why an entry of the lease file cannot be used, or the entry. */
function fileEntry(x: unknown): Entry | string {
  if (typeof x !== 'object' || x === null) return 'not an object';
  const e = x as Record<string, unknown>;
  const address = typeof e.address === 'string' ? ipv4ToInt(e.address) : undefined;
  if (address === undefined) return `address ${JSON.stringify(e.address)} is not an IPv4 address`;
  if (typeof e.mac !== 'string' || !MAC.test(e.mac)) return `mac ${JSON.stringify(e.mac)} is not aa:bb:cc:dd:ee:ff`;
  if (e.client_id !== null && (typeof e.client_id !== 'string' || !/^([0-9a-f]{2}){2,255}$/.test(e.client_id))) {
    return `client_id ${JSON.stringify(e.client_id)} is not null or hex`;
  }
  if (e.hostname !== null && (typeof e.hostname !== 'string' || !LABEL.test(e.hostname))) return `hostname ${JSON.stringify(e.hostname)} is not null or a DNS label`;
  if (typeof e.expires !== 'number' || !Number.isSafeInteger(e.expires) || e.expires < 0) return `expires ${JSON.stringify(e.expires)} is not seconds since 1970`;
  if (e.state !== 'bound' && e.state !== 'declined') return `state ${JSON.stringify(e.state)} is neither "bound" nor "declined"`;
  return { address, mac: e.mac, clientId: e.client_id, hostname: e.hostname, expires: e.expires * 1000, state: e.state };
}

export class LeaseDb {
  private readonly byAddr = new Map<number, Entry>();
  /** Client key -> address of its offered or bound entry (declined entries belong to no client). */
  private readonly byClient = new Map<string, number>();
  private readonly staticByMac = new Map<string, number>();
  private readonly staticAddrs = new Set<number>();
  private readonly start: number;
  private readonly end: number;
  private readonly now: () => number;
  private writing: Promise<void> = Promise.resolve();
  private queued: Promise<void> | null = null;
  /** What was wrong with lease file entries at load, each "lease file entry N: reason". */
  readonly problems: string[];

  /** Reads the lease file (absent: no leases). Entries that cannot be used are left out and described in
   * `problems`; a file that cannot be read or parsed at all throws, since starting empty could hand out addresses
   * that clients still hold. */
  constructor(private readonly opts: LeaseDbOptions) {
    this.start = ipv4ToInt(opts.start)!;
    this.end = ipv4ToInt(opts.end)!;
    this.now = opts.now ?? Date.now;
    for (const s of opts.statics) {
      const a = ipv4ToInt(s.address)!;
      this.staticByMac.set(s.mac, a);
      this.staticAddrs.add(a);
    }
    this.problems = opts.file ? this.load(opts.file) : [];
  }

  private load(file: string): string[] {
    let text: string | null;
    try {
      text = readTextIfExists(file);
    } catch (err) {
      throw new Error(`lease file ${file}: ${(err as Error).message}`);
    }
    if (text === null) return [];
    let doc: unknown;
    try {
      doc = JSON.parse(text);
    } catch (err) {
      throw new Error(`lease file ${file} is not JSON (${(err as Error).message}); move it away to start without leases`);
    }
    const top = typeof doc === 'object' && doc !== null ? (doc as { version?: unknown; leases?: unknown }) : {};
    const leases = top.leases;
    if (top.version !== 1 || !Array.isArray(leases)) {
      throw new Error(`lease file ${file} is not {"version": 1, "leases": [...]}; move it away to start without leases`);
    }
    const problems: string[] = [];
    leases.forEach((x, i) => {
      const e = fileEntry(x);
      const why =
        typeof e === 'string' ? e
        : !this.inRange(e.address) && !this.staticAddrs.has(e.address) ? `${intToIpv4(e.address)} is neither in the range nor a static address (the configuration changed)`
        : this.staticAddrs.has(e.address) && e.state === 'bound' && this.staticByMac.get(e.mac) !== e.address ? `${intToIpv4(e.address)} is now the static address of another client`
        : this.byAddr.has(e.address) ? `${intToIpv4(e.address)} appears twice`
        : e.state === 'bound' && this.byClient.has(key(e)) ? `client ${key(e)} appears twice`
        : undefined;
      if (why !== undefined) problems.push(`lease file entry ${i}: ${why}`);
      else if (typeof e !== 'string') this.put(e);
    });
    return problems;
  }

  private inRange(a: number): boolean {
    return a >= this.start && a <= this.end;
  }

  private put(e: Entry): void {
    const old = this.byAddr.get(e.address);
    if (old && old.state !== 'declined' && this.byClient.get(key(old)) === e.address) this.byClient.delete(key(old));
    this.byAddr.set(e.address, e);
    if (e.state === 'declined') return;
    const k = key(e);
    const prev = this.byClient.get(k);
    if (prev !== undefined && prev !== e.address) this.byAddr.delete(prev);
    this.byClient.set(k, e.address);
  }

  private drop(address: number): void {
    const e = this.byAddr.get(address);
    if (!e) return;
    this.byAddr.delete(address);
    if (e.state !== 'declined' && this.byClient.get(key(e)) === address) this.byClient.delete(key(e));
  }

  private owns(e: Entry, c: Client): boolean {
    return e.state !== 'declined' && key(e) === key(c);
  }

  /** Whether `address` may be given to `c` now: its static address, or a free range address (never used, expired,
   * or already the client's), not reserved for another client and not declined recently. */
  private available(address: number, c: Client): boolean {
    const own = this.staticByMac.get(c.mac);
    if (own !== undefined) return address === own && this.unclaimed(address, c);
    return this.inRange(address) && !this.staticAddrs.has(address) && this.unclaimed(address, c);
  }

  private unclaimed(address: number, c: Client): boolean {
    const e = this.byAddr.get(address);
    return !e || e.expires <= this.now() || this.owns(e, c);
  }

  /** A never-used range address, searched from the client's hash; failing that, the one expired longest ago. */
  private fresh(c: Client): number | undefined {
    const size = this.end - this.start + 1;
    const first = hash(key(c)) % size;
    let oldest: Entry | undefined;
    for (let i = 0; i < size; i++) {
      const a = this.start + ((first + i) % size);
      if (this.staticAddrs.has(a)) continue;
      const e = this.byAddr.get(a);
      if (!e) return a;
      if (e.expires <= this.now() && (!oldest || e.expires < oldest.expires)) oldest = e;
    }
    return oldest?.address;
  }

  /** The client's current entry (offered or bound, expired or not). */
  private current(c: Client): Entry | undefined {
    const a = this.byClient.get(key(c));
    return a === undefined ? undefined : this.byAddr.get(a);
  }

  /**
   * The address to offer a client (DISCOVER), held for it for OFFER_HOLD_MS: its static address; else the address
   * it had (even expired) if still free; else the one it asks for (option 50) if free; else a fresh one. Undefined
   * when nothing is free.
   */
  offer(c: Client, requested: string | null, hostname: string | null): Lease | undefined {
    const now = this.now();
    const stat = this.staticByMac.get(c.mac);
    const cur = this.current(c);
    const req = requested === null ? undefined : ipv4ToInt(requested);
    let address: number | undefined;
    if (stat !== undefined) address = this.available(stat, c) ? stat : undefined;
    else if (cur && this.available(cur.address, c)) address = cur.address;
    else if (req !== undefined && this.available(req, c)) address = req;
    else address = this.fresh(c);
    if (address === undefined) return undefined;
    const held = this.byAddr.get(address);
    if (held && held.state === 'bound' && held.expires > now && this.owns(held, c)) return this.view(held);
    if (held && !this.owns(held, c)) this.drop(address);
    const e: Entry = { address, mac: c.mac, clientId: c.clientId, hostname: hostname ?? cur?.hostname ?? null, expires: now + OFFER_HOLD_MS, state: 'offered' };
    this.put(e);
    return this.view(e);
  }

  /**
   * Binds `address` to the client for the lease time (REQUEST in any state), or says why not (the NAK's message).
   * A client with a static address gets only that; others any free range address, so a client whose lease the
   * server forgot keeps its address unless someone else has it since.
   */
  commit(c: Client, address: string, hostname: string | null): Lease | string {
    const a = ipv4ToInt(address);
    if (a === undefined) return `${address} is not an address`;
    const stat = this.staticByMac.get(c.mac);
    if (stat !== undefined && a !== stat) return `this client's address is ${intToIpv4(stat)}`;
    if (stat === undefined && !this.inRange(a)) return `${address} is outside the range`;
    if (stat === undefined && this.staticAddrs.has(a)) return `${address} is reserved for another client`;
    const held = this.byAddr.get(a);
    if (held && held.expires > this.now() && !this.owns(held, c)) {
      return held.state === 'declined' ? `${address} was declined as in use` : `${address} is leased to another client`;
    }
    if (held && !this.owns(held, c)) this.drop(a);
    const cur = this.current(c);
    const e: Entry = {
      address: a, mac: c.mac, clientId: c.clientId, hostname: hostname ?? cur?.hostname ?? null,
      expires: this.now() + this.opts.leaseTime * 1000, state: 'bound',
    };
    this.put(e);
    return this.view(e);
  }

  /** RELEASE: the lease ends now, but stays remembered for the client's next request. */
  release(c: Client, address: string): boolean {
    const e = this.byAddr.get(ipv4ToInt(address) ?? -1);
    if (!e || !this.owns(e, c) || e.state !== 'bound') return false;
    e.expires = Math.min(e.expires, this.now());
    return true;
  }

  /** DECLINE: the client found the address in use by someone else; nobody gets it for DECLINE_HOLD_MS. Only the
   * client holding the address can decline it, or one client could take the whole range out of use. */
  decline(c: Client, address: string): boolean {
    const a = ipv4ToInt(address) ?? -1;
    const e = this.byAddr.get(a);
    if (!e || !this.owns(e, c)) return false;
    this.drop(a);
    this.put({ address: a, mac: c.mac, clientId: null, hostname: null, expires: this.now() + DECLINE_HOLD_MS, state: 'declined' });
    return true;
  }

  /** The client took another server's offer (REQUEST with another server identifier): free ours. */
  cancelOffer(c: Client): void {
    const e = this.current(c);
    if (e && e.state === 'offered') this.drop(e.address);
  }

  /** Bound leases not expired. */
  active(): Lease[] {
    const now = this.now();
    return [...this.byAddr.values()].filter((e) => e.state === 'bound' && e.expires > now).map((e) => this.view(e));
  }

  /** Every entry, expired ones included, by address. */
  all(): Lease[] {
    return [...this.byAddr.values()].sort((x, y) => x.address - y.address).map((e) => this.view(e));
  }

  private view(e: Entry): Lease {
    return { address: intToIpv4(e.address), mac: e.mac, clientId: e.clientId, hostname: e.hostname, expires: e.expires, state: e.state };
  }

  /**
   * Writes the lease file; settles once a write that began after this call has finished, so a caller that changed
   * a lease and then awaits this knows the change is on disk. Concurrent calls share writes.
   */
  persist(): Promise<void> {
    const file = this.opts.file;
    if (!file) return Promise.resolve();
    if (this.queued) return this.queued;
    const next = this.writing.catch(() => undefined).then(() => {
      this.queued = null;
      return writeAtomically(file, this.serialise());
    });
    this.queued = next;
    this.writing = next;
    return next;
  }

  private serialise(): string {
    const leases = [...this.byAddr.values()]
      .filter((e) => e.state !== 'offered')
      .sort((x, y) => x.address - y.address)
      .map((e) => ({
        address: intToIpv4(e.address), mac: e.mac, client_id: e.clientId, hostname: e.hostname, expires: Math.ceil(e.expires / 1000), state: e.state,
      }));
    return `${JSON.stringify({ version: 1, leases }, null, 1)}\n`;
  }
}

async function writeAtomically(file: string, content: string): Promise<void> {
  const dir = dirname(file);
  await mkdir(dir, { recursive: true });
  const tmp = `${file}.tmp`;
  const fh = await open(tmp, 'w', 0o644);
  try {
    await fh.writeFile(content);
    await fh.sync();
  } finally {
    await fh.close();
  }
  await rename(tmp, file);
  // The rename itself is only durable once the directory is.
  const d = await open(dir, 'r');
  try {
    await d.sync();
  } finally {
    await d.close();
  }
}
