// Local names: records from configuration and hosts files, and any other LocalRecordSource (the zone's own names from
// system-config plug in here). LocalZone answers from them authoritatively: CNAME chains are followed through local
// data, wildcards fill in names that have no records of their own, and inside a local domain a missing name is
// NXDOMAIN and a missing type NODATA, each with an SOA so that clients cache the negative answer (RFC 2308).
import { readFileSync } from 'node:fs';
import type { RecordConfig } from './config.ts';
import { readHosts } from './hosts.ts';
import { reverseNameOfPacked } from './ip.ts';
import { parseRecordValue } from './records.ts';
import { CLASS_IN, RCODE, type ResourceRecord, TYPE, hashName, typeNumber } from './wire.ts';

/**
 * Where local records come from. Names are lower-case without a trailing dot; a wildcard is owned by "*.<parent>".
 */
export interface LocalRecordSource {
  /** For logs and statistics: "config", "hosts", "zone". */
  readonly label: string;
  /** Every record owned by exactly `name`; undefined or empty when there are none. */
  records(name: string): readonly ResourceRecord[] | undefined;
  /** Whether some name strictly below `name` has records (then `name` is an empty non-terminal: NODATA, not NXDOMAIN). */
  hasBelow(name: string): boolean;
  /** Domains this source answers for completely: a name or type under one of them that it lacks does not exist. */
  authoritativeFor(): readonly string[];
  /** Every owner name, wildcards included; the server derives its per-packet prefilter from them. */
  names(): Iterable<string>;
  /** `onChange` runs after the records change; returns the function that stops it. */
  subscribe(onChange: () => void): () => void;
}

class Listeners {
  private set = new Set<() => void>();

  add(f: () => void): () => void {
    this.set.add(f);
    return () => this.set.delete(f);
  }

  fire(): void {
    for (const f of this.set) f();
  }
}

function parents(name: string): string[] {
  const out: string[] = [];
  for (let i = name.indexOf('.'); i >= 0; i = name.indexOf('.', i + 1)) out.push(name.slice(i + 1));
  return out;
}

/** Whether a packed address list (length byte, then the bytes, repeated) holds `entry`. */
function hasEntry(list: string, entry: string): boolean {
  for (let i = 0; i < list.length; i += 1 + list.charCodeAt(i)) if (list.startsWith(entry, i)) return true;
  return false;
}

/** Records written in the configuration (`local.records`), authoritative for `local.domains`. */
export class ConfigRecords implements LocalRecordSource {
  private byName = new Map<string, ResourceRecord[]>();
  private below = new Set<string>();
  private domains: string[] = [];
  private listeners = new Listeners();

  /** `label`: "config" for the configuration file's records; a zone service also keeps its own names and the records
   * admins add through the API in sources of this kind. */
  constructor(records: readonly RecordConfig[], domains: readonly string[], defaultTtl: number, readonly label = 'config') {
    this.replace(records, domains, defaultTtl);
  }

  /** Swaps in new records (configuration reload); the records were validated when the configuration was. */
  replace(records: readonly RecordConfig[], domains: readonly string[], defaultTtl: number): void {
    const byName = new Map<string, ResourceRecord[]>();
    const below = new Set<string>();
    for (const rc of records) {
      const type = typeNumber(rc.type);
      const data = type === undefined ? `unknown type ${rc.type}` : parseRecordValue(type, rc.value);
      if (typeof data === 'string' || type === undefined) throw new Error(`local record "${rc.name}" (line ${rc.line}): ${data}`);
      const list = byName.get(rc.name) ?? [];
      list.push({ name: rc.name, type, cls: CLASS_IN, ttl: rc.ttl ?? defaultTtl, data });
      byName.set(rc.name, list);
      for (const p of parents(rc.name)) below.add(p);
    }
    this.byName = byName;
    this.below = below;
    this.domains = [...domains];
    this.listeners.fire();
  }

  records(name: string): readonly ResourceRecord[] | undefined {
    return this.byName.get(name);
  }

  hasBelow(name: string): boolean {
    return this.below.has(name);
  }

  authoritativeFor(): readonly string[] {
    return this.domains;
  }

  names(): Iterable<string> {
    return this.byName.keys();
  }

  subscribe(onChange: () => void): () => void {
    return this.listeners.add(onChange);
  }
}

/**
 * Names from hosts files: A/AAAA for each name, and PTR for each address to the first name given for it, as
 * dnsmasq does. Kept as packed strings rather than record objects: a hosts file can have 100,000 lines.
 */
export class HostsFiles implements LocalRecordSource {
  readonly label = 'hosts';
  /** name -> addresses, each as a length byte (4 or 16) then the address bytes, in latin1. */
  private addrs = new Map<string, string>();
  private ptr = new Map<string, string>();
  private below = new Set<string>();
  private listeners = new Listeners();
  /** Problems found in the files at the last load, "<file>:<line>: <reason>". */
  problems: string[] = [];

  constructor(private readonly files: readonly string[], private readonly ttl: number) {}

  /** Reads the files; throws when one cannot be read. Lines that do not parse end up in `problems`. */
  load(): void {
    const addrs = new Map<string, string>();
    const ptr = new Map<string, string>();
    const below = new Set<string>();
    const problems: string[] = [];
    for (const file of this.files) {
      let text: string;
      try {
        text = readFileSync(file, 'utf8');
      } catch (err) {
        throw new Error(`hosts file ${file}: ${(err as Error).message}`);
      }
      problems.push(
        ...readHosts(text, file, (packed, names) => {
          const entry = String.fromCharCode(packed.length) + packed;
          for (const n of names) {
            const prev = addrs.get(n);
            if (prev === undefined) addrs.set(n, entry);
            else if (!hasEntry(prev, entry)) addrs.set(n, prev + entry);
            for (const p of parents(n)) below.add(p);
          }
          const rev = reverseNameOfPacked(packed);
          if (!ptr.has(rev)) ptr.set(rev, names[0]);
        }),
      );
    }
    this.addrs = addrs;
    this.ptr = ptr;
    this.below = below;
    this.problems = problems;
    this.listeners.fire();
  }

  records(name: string): readonly ResourceRecord[] | undefined {
    const packed = this.addrs.get(name);
    if (packed !== undefined) {
      const out: ResourceRecord[] = [];
      for (let i = 0; i < packed.length; ) {
        const n = packed.charCodeAt(i);
        const bytes = Buffer.from(packed.slice(i + 1, i + 1 + n), 'latin1');
        out.push({ name, type: n === 4 ? TYPE.A : TYPE.AAAA, cls: CLASS_IN, ttl: this.ttl, data: { kind: 'ip', bytes } });
        i += 1 + n;
      }
      const target = this.ptr.get(name);
      if (target !== undefined) out.push({ name, type: TYPE.PTR, cls: CLASS_IN, ttl: this.ttl, data: { kind: 'name', name: target } });
      return out;
    }
    const target = this.ptr.get(name);
    return target === undefined ? undefined : [{ name, type: TYPE.PTR, cls: CLASS_IN, ttl: this.ttl, data: { kind: 'name', name: target } }];
  }

  hasBelow(name: string): boolean {
    return this.below.has(name);
  }

  authoritativeFor(): readonly string[] {
    return [];
  }

  *names(): Iterable<string> {
    yield* this.addrs.keys();
    yield* this.ptr.keys();
  }

  subscribe(onChange: () => void): () => void {
    return this.listeners.add(onChange);
  }
}

export type LocalAnswer =
  /** A complete answer from local data. */
  | { kind: 'answer'; rcode: number; answers: ResourceRecord[]; authorities: ResourceRecord[]; additionals: ResourceRecord[] }
  /** A CNAME chain that leaves the local data at `target`: the rest comes from the cache or an upstream. */
  | { kind: 'chain'; answers: ResourceRecord[]; target: string };

/** Longer chains than this are refused as broken; real ones are two or three links. */
const MAX_CHAIN = 12;

/** Sorted, distinct int32 hashes: a set at 4 bytes a member, where a Set costs about 24 (100,000 hosts-file names
 * and their 100,000 reverse names would otherwise take almost 5 MB). */
function hashSet(hashes: number[]): Int32Array {
  const sorted = Int32Array.from(hashes).sort();
  let n = 0;
  for (let i = 0; i < sorted.length; i++) if (i === 0 || sorted[i] !== sorted[n - 1]) sorted[n++] = sorted[i];
  return sorted.slice(0, n);
}

function hasHash(set: Int32Array, h: number): boolean {
  let lo = 0;
  let hi = set.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1;
    const v = set[mid];
    if (v === h) return true;
    if (v < h) lo = mid + 1;
    else hi = mid - 1;
  }
  return false;
}

export class LocalZone {
  private nameSet: Int32Array = new Int32Array(0);
  private suffixSet = new Set<number>();
  private domains = new Set<string>();
  private listeners = new Listeners();
  private readonly serial = Math.floor(Date.now() / 1000);
  private readonly unsubscribe: (() => void)[];

  constructor(private readonly sources: readonly LocalRecordSource[], private readonly negativeTtl: number) {
    this.unsubscribe = sources.map((s) =>
      s.subscribe(() => {
        this.rebuild();
        this.listeners.fire();
      }),
    );
    this.rebuild();
  }

  /** Stops following the sources: a source outlives a server restarted on a new configuration. */
  close(): void {
    for (const u of this.unsubscribe) u();
  }

  /** Runs after any source changes (memoised local answers must go). */
  subscribe(onChange: () => void): () => void {
    return this.listeners.add(onChange);
  }

  private rebuild(): void {
    const names: number[] = [];
    const suffixSet = new Set<number>();
    const domains = new Set<string>();
    for (const s of this.sources) {
      for (const d of s.authoritativeFor()) {
        domains.add(d);
        suffixSet.add(hashName(d));
      }
    }
    this.domains = domains;
    for (const s of this.sources) {
      for (const n of s.names()) {
        if (n.startsWith('*.')) suffixSet.add(hashName(n.slice(2)));
        // A name inside a local domain passes the prefilter through its domain already.
        else if (this.authority(n) === undefined) names.push(hashName(n) | 0);
      }
    }
    this.nameSet = hashSet(names);
    this.suffixSet = suffixSet;
  }

  /**
   * Whether local data might answer a query, from hashes alone: the per-packet test that lets every other query
   * skip building its name. `suffixes` are the name's hashes, longest first (wire.suffixHashes).
   */
  mayAnswer(suffixes: readonly number[]): boolean {
    if (suffixes.length === 0) return false;
    if (hasHash(this.nameSet, suffixes[0] | 0)) return true;
    for (const h of suffixes) if (this.suffixSet.has(h)) return true;
    return false;
  }

  /** The longest local domain at or above `name`. */
  authority(name: string): string | undefined {
    if (this.domains.size === 0) return undefined;
    if (this.domains.has(name)) return name;
    for (const p of parents(name)) if (this.domains.has(p)) return p;
    return undefined;
  }

  private exact(name: string): readonly ResourceRecord[] | undefined {
    for (const s of this.sources) {
      const r = s.records(name);
      if (r && r.length > 0) return r;
    }
    return undefined;
  }

  /** Records at `name`, or those of the most specific wildcard above it, renamed to `name`. */
  private find(name: string): readonly ResourceRecord[] | undefined {
    const own = this.exact(name);
    if (own) return own;
    for (const p of parents(name)) {
      const w = this.exact(`*.${p}`);
      if (w) return w.map((r) => ({ ...r, name }));
    }
    return undefined;
  }

  private hasBelow(name: string): boolean {
    return this.sources.some((s) => s.hasBelow(name));
  }

  private soa(domain: string): ResourceRecord {
    const own = this.exact(domain)?.find((r) => r.type === TYPE.SOA);
    if (own) return own;
    const ttl = this.negativeTtl;
    return {
      name: domain, type: TYPE.SOA, cls: CLASS_IN, ttl,
      data: { kind: 'soa', mname: domain, rname: `hostmaster.${domain}`, serial: this.serial, refresh: 3600, retry: 600, expire: 86400, minimum: ttl },
    };
  }

  /** A/AAAA of local MX and SRV targets, as dnsmasq adds them, saving the client a round trip. */
  private glue(answers: readonly ResourceRecord[]): ResourceRecord[] {
    const out: ResourceRecord[] = [];
    for (const r of answers) {
      const target = r.data.kind === 'mx' ? r.data.exchange : r.data.kind === 'srv' ? r.data.target : undefined;
      if (target === undefined) continue;
      for (const g of this.exact(target) ?? []) if (g.type === TYPE.A || g.type === TYPE.AAAA) out.push(g);
    }
    return out;
  }

  /**
   * The local answer for (name, qtype), or undefined when local data has nothing to say and the query goes on to
   * the cache and the upstreams. A name with records of other types outside any local domain is forwarded too, as
   * dnsmasq does with hosts-file names: the hosts file only overrides addresses.
   */
  resolve(qname: string, qtype: number): LocalAnswer | undefined {
    const answers: ResourceRecord[] = [];
    const seen = new Set<string>();
    const servfail = (): LocalAnswer => ({ kind: 'answer', rcode: RCODE.SERVFAIL, answers: [], authorities: [], additionals: [] });
    let name = qname;
    for (let depth = 0; depth < MAX_CHAIN; depth++) {
      seen.add(name);
      const recs = this.find(name);
      const auth = this.authority(name);
      if (!recs) {
        if (auth === undefined) return depth === 0 ? undefined : { kind: 'chain', answers, target: name };
        const rcode = this.hasBelow(name) ? RCODE.NOERROR : RCODE.NXDOMAIN;
        return { kind: 'answer', rcode, answers, authorities: [this.soa(auth)], additionals: [] };
      }
      const match = qtype === TYPE.ANY ? [...recs] : recs.filter((r) => r.type === qtype);
      if (match.length > 0) {
        answers.push(...match);
        return { kind: 'answer', rcode: RCODE.NOERROR, answers, authorities: [], additionals: this.glue(match) };
      }
      const cname = qtype === TYPE.CNAME ? undefined : recs.find((r) => r.type === TYPE.CNAME);
      if (cname && cname.data.kind === 'name') {
        answers.push(cname);
        if (seen.has(cname.data.name)) return servfail();
        name = cname.data.name;
        continue;
      }
      if (auth === undefined) return depth === 0 ? undefined : { kind: 'chain', answers, target: name };
      return { kind: 'answer', rcode: RCODE.NOERROR, answers, authorities: [this.soa(auth)], additionals: [] };
    }
    return servfail();
  }
}
