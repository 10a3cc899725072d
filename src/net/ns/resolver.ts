// One query's way through cyfs-ns: local names, then blocking, then the cache, then the upstreams. Everything up to a
// fresh cache hit runs synchronously on hashes and stored bytes (handle() returns a Buffer); only misses become
// promises. Misses for the same question share one upstream query; answers near expiry that are asked often are
// refreshed in the background (prefetch); when the upstreams fail, expired answers are served (RFC 8767).
import type { Logger } from '../../lib/log/logger.ts';
import { AnswerCache, Popularity, entryLifetime, entryStoredAt, materialize, nowSec, packAnswer, packLocal } from './cache.ts';
import { Blocking, type Policy, blocks } from './blocking.ts';
import type { NsConfig } from './config.ts';
import { ConfigRecords, HostsFiles, type LocalAnswer, type LocalRecordSource, LocalZone } from './local.ts';
import { type AnswerSource, Stats, type StatsPart, type Transport } from './stats.ts';
import { type DnsLookup, TrustedNameError, type TrustedNameResolver, TrustedNames, type TrustedStats } from './trusted.ts';
import { Router } from './upstream.ts';
import { ZoneNamesResolver } from './zone-names.ts';
import { createEnsResolver } from './ens.ts';
import { type FakeIpPool, loadFakeIpFilter } from './fakeip.ts';
import { parseIP } from './ip.ts';
import {
  CLASS_IN, FLAG, RCODE, TYPE, type Query, type ResourceRecord, decodeMessage, emptyAnswer, encodeMessage, isProblem, optRecord, parseQuery, queryName, rcodeName,
  suffixHashes, typeName, writeOpt,
} from './wire.ts';

export interface ResolverOptions {
  config: NsConfig;
  log: Logger;
  /** Local record sources besides the configuration's records and hosts files (the zone's names). */
  sources?: readonly LocalRecordSource[];
  /** Where each answered query is logged, when the query log is on. */
  queryLog?: Logger | null;
  /** Trusted name resolvers besides those the configuration names (zones, ENS). */
  trusted?: readonly TrustedNameResolver[];
  /** The fake-ip pool (fake_ip in the configuration), opened by the server; closed with the resolver. */
  fakeIp?: FakeIpPool | null;
}

/** An upstream answer in stored form, or the RCODE to answer with when there is none. `aa`: the upstream's answer was
 * authoritative, which is said to the clients it was fetched for, never from the cache. */
type Fetched = { entry: string; aa: boolean } | { rcode: number };

interface InFlight {
  question: string;
  promise: Promise<Fetched>;
}

/** Per-process numbers the primary merges with its workers'. */
export interface ResolverPart extends StatsPart {
  cache_entries: number;
  local_entries: number;
  evictions: number;
  pending: number;
  upstreams: { label: string; group: string; queries: number; failures: number; down: boolean; rtt_ms: number }[];
  trusted: TrustedStats[];
}

/** Question types fake-ip answers itself (fakeAnswer). */
const FAKE_IP_TYPES: ReadonlySet<number> = new Set([TYPE.A, TYPE.AAAA, TYPE.HTTPS, TYPE.SVCB]);

/** Upper bound on remembered refresh failures (serve-stale's retry timer); they are a hint, not state. */
const MAX_FAILED = 10000;

export class Resolver {
  readonly stats: Stats;
  private readonly cache: AnswerCache;
  private readonly localMemo: AnswerCache;
  private readonly popularity = new Popularity();
  private readonly hosts: HostsFiles;
  private readonly zone: LocalZone;
  private blocking: Blocking;
  private readonly router: Router;
  private readonly trusted: TrustedNames;
  /** What the gateway proxy maps fake addresses back through (src/lib/api/ns.ts fakeip_lookup). */
  readonly fakeIp: FakeIpPool | null;
  private readonly inflight = new Map<number, InFlight>();
  private readonly failedAt = new Map<number, number>();
  private pending = 0;
  private readonly cfg: NsConfig;
  private readonly log: Logger;
  private readonly queryLog: Logger | null;
  private readonly limits: { minTtl: number; maxTtl: number; negativeMaxTtl: number };

  /** Reads hosts files and block lists; throws when one cannot be read. */
  constructor(opts: ResolverOptions) {
    const cfg = opts.config;
    this.cfg = cfg;
    this.log = opts.log;
    this.queryLog = opts.queryLog ?? null;
    this.stats = new Stats(cfg.stats.top);
    this.cache = new AnswerCache(cfg.cache.max_entries);
    this.localMemo = new AnswerCache(Math.max(1024, cfg.cache.max_entries));
    this.limits = { minTtl: cfg.cache.min_ttl, maxTtl: cfg.cache.max_ttl, negativeMaxTtl: cfg.cache.negative_max_ttl };
    const configRecords = new ConfigRecords(cfg.local.records, cfg.local.domains, cfg.local.ttl);
    this.hosts = new HostsFiles(cfg.local.hosts_files, cfg.local.ttl);
    this.loadHosts();
    this.zone = new LocalZone([configRecords, this.hosts, ...(opts.sources ?? [])], cfg.local.negative_ttl);
    // A cached upstream answer must never shadow a name that has since become local (see run()).
    this.zone.subscribe(() => {
      this.localMemo.clear();
      this.cache.clear();
    });
    this.blocking = this.loadBlocking();
    this.router = new Router(cfg, this.log);
    const plugins: TrustedNameResolver[] = [...(opts.trusted ?? [])];
    if (cfg.trusted_names.zones.zones.length > 0) plugins.push(new ZoneNamesResolver(cfg.trusted_names.zones, this.lookup));
    if (cfg.trusted_names.ens) plugins.push(createEnsResolver(cfg.trusted_names.ens));
    this.trusted = new TrustedNames(plugins);
    this.fakeIp = opts.fakeIp ?? null;
  }

  /** Asks the upstreams directly, outside the cache: what trusted resolvers check their signed records against. */
  private readonly lookup: DnsLookup = async (name, qtype) => {
    const group = this.router.route(name);
    if (!group) throw new TrustedNameError(`no upstream group serves ${name}`);
    const wire = Buffer.concat([encodeMessage({ id: 0, flags: FLAG.RD, question: { name, type: qtype, cls: CLASS_IN } }), optRecord(this.cfg.edns_udp_size, 0, false)]);
    wire[11] = 1;
    const q = parseQuery(wire);
    if (!q || isProblem(q)) throw new TrustedNameError(`${name}: cannot be asked for`);
    const { resp } = await group.resolve(wire, q.qEnd, qtype);
    const m = decodeMessage(resp);
    return { rcode: m.rcode, answers: m.answers };
  };

  /** Logs the first lines of a file that could not be used, and how many more there are (statistics list them all). */
  private logUnusable(what: string, problems: readonly string[]): void {
    for (const p of problems.slice(0, 20)) this.log.warn({ problem: p }, `${what} line not used`);
    if (problems.length > 20) this.log.warn({ more: problems.length - 20 }, `more ${what} lines not used`);
  }

  private loadHosts(): void {
    this.hosts.load();
    this.logUnusable('hosts file', this.hosts.problems);
  }

  private loadBlocking(): Blocking {
    const b = new Blocking(this.cfg.blocking);
    for (const [name, set] of b.lists) {
      this.log.info({ list: name, rules: set.size, unusable_lines: set.problems.length, boilerplate_skipped: set.skipped }, 'block list loaded');
      this.logUnusable(`block list "${name}"`, set.problems);
    }
    return b;
  }

  /** Re-reads hosts files and block lists and empties the cache (dnsmasq's SIGHUP); on a read error nothing changes. */
  reload(): void {
    // Everything that can fail to read is read before anything changes.
    const filter = this.fakeIp && this.cfg.fake_ip ? loadFakeIpFilter(this.cfg.fake_ip.filter, this.cfg.fake_ip.filter_files) : null;
    const blocking = this.loadBlocking();
    this.loadHosts();
    this.blocking = blocking;
    this.cache.clear();
    this.localMemo.clear();
    this.failedAt.clear();
    this.trusted.clear();
    if (filter) {
      this.fakeIp!.setFilter(filter.filter);
      this.logUnusable('fake-ip filter', filter.problems);
    }
  }

  /**
   * The answer to a query: a Buffer when it is known at once, else a promise. `t0` is the arrival time
   * (performance.now()), for the latency statistics. The answer is not yet fitted to a UDP size.
   */
  handle(q: Query, client: string, transport: Transport, t0: number): Buffer | Promise<Buffer> {
    return this.run(q, client, transport, t0, false);
  }

  private run(q: Query, client: string, transport: Transport, t0: number, quiet: boolean): Buffer | Promise<Buffer> {
    const size = this.cfg.edns_udp_size;
    // Zone transfers are not a forwarder's to relay (they span several messages, and whole zones should not leak).
    if (q.qtype === TYPE.AXFR || q.qtype === TYPE.IXFR) return this.done(this.errorAnswer(q, RCODE.REFUSED), q, client, transport, 'error', t0, quiet);
    let e = this.localMemo.get(q);
    if (e !== undefined) return this.done(materialize(e, q, 0, -1, size), q, client, transport, 'local', t0, quiet);
    // Without block rules a fresh cache hit can come before the local-name test: the cache never holds a question
    // local data answers (those are answered here and never forwarded, and the cache is emptied when local data
    // changes), so this only saves the cache hits their name hashing.
    const early = !this.blocking.active;
    let cached = early ? this.cache.get(q) : undefined;
    if (cached !== undefined) {
      const out = this.fromCache(cached, q, client, transport, t0, quiet);
      if (out !== undefined) return out;
    }

    const suffixes = suffixHashes(q);
    let name: string | undefined;
    const nameOf = () => (name ??= queryName(q));
    if (q.qclass === CLASS_IN && this.zone.mayAnswer(suffixes)) {
      const local = this.zone.resolve(nameOf(), q.qtype);
      if (local?.kind === 'answer') {
        e = packLocal(this.encodeLocal(q, nameOf(), local), q);
        this.localMemo.set(q.key, e);
        return this.done(materialize(e, q, 0, -1, size), q, client, transport, 'local', t0, quiet);
      }
      if (local?.kind === 'chain') return this.slow(q, client, transport, t0, quiet, local, undefined);
    }

    if (this.blocking.active) {
      const policy = this.blocking.policyFor(client);
      if (policy.sets.length > 0 && blocks(policy, suffixes, (i) => nameOf().split('.').slice(i).join('.'))) {
        if (!quiet) this.stats.blocked(q.key, () => nameOf());
        return this.done(this.blockedAnswer(q, policy), q, client, transport, 'blocked', t0, quiet);
      }
    }

    if (this.trusted.active && q.qclass === CLASS_IN && this.trusted.owns(nameOf())) return this.trustedAnswer(q, nameOf(), client, transport, t0, quiet);

    if (this.fakeIp && q.qclass === CLASS_IN && FAKE_IP_TYPES.has(q.qtype) && !this.fakeIp.filtered(nameOf())) {
      const fake = this.fakeAnswer(q, nameOf());
      if (fake) return this.done(fake, q, client, transport, 'fakeip', t0, quiet);
    }

    if (!early) {
      cached = this.cache.get(q);
      if (cached !== undefined) {
        const out = this.fromCache(cached, q, client, transport, t0, quiet);
        if (out !== undefined) return out;
      }
    }
    if (cached !== undefined) {
      const now = nowSec();
      const age = now - entryStoredAt(cached);
      const lifetime = entryLifetime(cached);
      const ss = this.cfg.cache.serve_stale;
      if (ss.enabled && age < lifetime + ss.max_stale) {
        const failed = this.failedAt.get(q.key);
        // RFC 8767 §5: after a failed refresh, answer stale at once for a while instead of waiting on upstreams again.
        if (failed !== undefined && now - failed < ss.retry_after) {
          return this.done(materialize(cached, q, 0, ss.answer_ttl, size), q, client, transport, 'stale', t0, quiet);
        }
        return this.slow(q, client, transport, t0, quiet, undefined, cached);
      }
    }
    return this.slow(q, client, transport, t0, quiet, undefined, undefined);
  }

  /** The answer from a fresh cache entry (refreshing it in the background when it is popular and about to
   * expire), or undefined when the entry has expired. */
  private fromCache(e: string, q: Query, client: string, transport: Transport, t0: number, quiet: boolean): Buffer | undefined {
    const age = nowSec() - entryStoredAt(e);
    const lifetime = entryLifetime(e);
    if (age >= lifetime) return undefined;
    const pf = this.cfg.cache.prefetch;
    if (pf.enabled && this.popularity.hit(q.key) >= pf.min_hits && lifetime - age <= Math.max(1, lifetime * pf.threshold) && !this.inflight.has(q.key)) {
      this.stats.prefetches++;
      void this.fetch(q);
    }
    return this.done(materialize(e, q, age, -1, this.cfg.edns_udp_size), q, client, transport, 'cache', t0, quiet);
  }

  private async slow(q: Query, client: string, transport: Transport, t0: number, quiet: boolean, chain: LocalAnswer | undefined, stale: string | undefined): Promise<Buffer> {
    if (!quiet) this.stats.cacheMisses++;
    if (this.pending >= this.cfg.limits.max_pending) {
      // Beyond this many queries waiting on upstreams the server is being flooded: fail fast rather than queue.
      return this.done(this.errorAnswer(q, RCODE.SERVFAIL), q, client, transport, 'error', t0, quiet);
    }
    this.pending++;
    try {
      if (chain?.kind === 'chain') return this.done(await this.followChain(q, client, chain), q, client, transport, 'local', t0, quiet);
      const size = this.cfg.edns_udp_size;
      const ss = this.cfg.cache.serve_stale;
      const fetch = this.fetch(q);
      if (stale !== undefined && ss.client_timeout_ms > 0) {
        // RFC 8767 §5's client response timer: a stale answer now beats a fresh one too late.
        let timer: NodeJS.Timeout | undefined;
        const late = new Promise<null>((r) => (timer = setTimeout(() => r(null), ss.client_timeout_ms)));
        const first = await Promise.race([fetch, late]);
        clearTimeout(timer);
        if (first === null) return this.done(materialize(stale, q, 0, ss.answer_ttl, size), q, client, transport, 'stale', t0, quiet);
      }
      const r = await fetch;
      if ('entry' in r) {
        const out = materialize(r.entry, q, 0, -1, size);
        if (r.aa) out[2] |= FLAG.AA >> 8;
        return this.done(out, q, client, transport, 'upstream', t0, quiet);
      }
      if (stale !== undefined) return this.done(materialize(stale, q, 0, ss.answer_ttl, size), q, client, transport, 'stale', t0, quiet);
      return this.done(this.errorAnswer(q, r.rcode), q, client, transport, 'error', t0, quiet);
    } finally {
      this.pending--;
    }
  }

  /** An address from the fake-ip pool for A; NODATA for AAAA, HTTPS and SVCB, whose real addresses (and address
   * hints) would let a client go around the proxy. Undefined for a name the pool cannot hold: resolved as usual. */
  private fakeAnswer(q: Query, name: string): Buffer | undefined {
    const ttl = this.fakeIp!.ttl;
    let answers: ResourceRecord[] = [];
    if (q.qtype === TYPE.A) {
      try {
        answers = [{ name, type: TYPE.A, cls: CLASS_IN, ttl, data: { kind: 'ip', bytes: parseIP(this.fakeIp!.assign(name))! } }];
      } catch (err) {
        this.log.debug({ name, err: (err as Error).message }, 'fake-ip: no address for this name');
        return undefined;
      }
    }
    const wire = encodeMessage({ id: 0, flags: FLAG.QR | FLAG.RA, question: { name, type: q.qtype, cls: q.qclass }, answers });
    return materialize(packLocal(wire, q), q, 0, -1, this.cfg.edns_udp_size);
  }

  /** A trusted name space's verified answer; anything it could not verify is SERVFAIL, never an upstream's word. */
  private async trustedAnswer(q: Query, name: string, client: string, transport: Transport, t0: number, quiet: boolean): Promise<Buffer> {
    if (!quiet) this.stats.cacheMisses++;
    try {
      const a = await this.trusted.resolve(name, q.qtype);
      const wire = encodeMessage({
        id: 0,
        flags: FLAG.QR | FLAG.RA | a.rcode,
        question: { name, type: q.qtype, cls: q.qclass },
        answers: a.answers,
      });
      return this.done(materialize(packLocal(wire, q), q, 0, -1, this.cfg.edns_udp_size), q, client, transport, 'trusted', t0, quiet);
    } catch (err) {
      this.log.debug({ name, type: typeName(q.qtype), err: (err as Error).message }, 'trusted name not verified');
      return this.done(this.errorAnswer(q, RCODE.SERVFAIL), q, client, transport, 'error', t0, quiet);
    }
  }

  /** One upstream query per question at a time; the answer goes into the cache when it may be cached. */
  private fetch(q: Query): Promise<Fetched> {
    const question = q.msg.toString('latin1', 12, q.qEnd).toLowerCase() + (q.dnssecOk ? '+do' : '') + (q.flags & FLAG.CD ? '+cd' : '');
    const current = this.inflight.get(q.key);
    if (current && current.question === question) return current.promise;
    const promise = this.fetchNow(q).finally(() => {
      if (this.inflight.get(q.key)?.promise === promise) this.inflight.delete(q.key);
    });
    // On a hash collision with a different question in flight, this one simply goes unshared.
    if (!current) this.inflight.set(q.key, { question, promise });
    return promise;
  }

  private async fetchNow(q: Query): Promise<Fetched> {
    const name = queryName(q);
    const group = this.router.route(name);
    // No group for the name: REFUSED, as dnsmasq answers without servers.
    if (!group) return { rcode: RCODE.REFUSED };
    try {
      const { resp, info, upstream } = await group.resolve(this.upstreamQuery(q), q.qEnd, q.qtype);
      const { entry, lifetime } = packAnswer(resp, info, q, this.limits, nowSec());
      if (lifetime > 0) this.cache.set(q.key, entry);
      this.failedAt.delete(q.key);
      this.log.trace({ name, type: typeName(q.qtype), upstream: upstream.label, rcode: rcodeName(info.rcode) }, 'upstream answer');
      return { entry, aa: (info.flags & FLAG.AA) !== 0 };
    } catch (err) {
      if (this.failedAt.size >= MAX_FAILED) this.failedAt.clear();
      this.failedAt.set(q.key, nowSec());
      this.log.debug({ name, type: typeName(q.qtype), group: group.name, err: (err as Error).message }, 'upstreams failed');
      return { rcode: RCODE.SERVFAIL };
    }
  }

  /** The question in lower case with RD, the client's CD, and an OPT with our size and the client's DO bit. */
  private upstreamQuery(q: Query): Buffer {
    const out = Buffer.allocUnsafe(q.qEnd + 11);
    out.fill(0, 0, 12);
    out.writeUInt16BE(FLAG.RD | (q.flags & FLAG.CD), 2);
    out[5] = 1;
    out[11] = 1;
    for (let i = 12; i < q.nameEnd; i++) {
      const b = q.msg[i];
      out[i] = b >= 0x41 && b <= 0x5a ? b | 0x20 : b;
    }
    q.msg.copy(out, q.nameEnd, q.nameEnd, q.qEnd);
    writeOpt(out, q.qEnd, this.cfg.edns_udp_size, 0, q.dnssecOk);
    return out;
  }

  /** Local CNAMEs, then the answer for where they lead, from the cache or upstream (blocking applies to it too). */
  private async followChain(q: Query, client: string, chain: Extract<LocalAnswer, { kind: 'chain' }>): Promise<Buffer> {
    let wireQuery = encodeMessage({ id: q.id, flags: q.flags & (FLAG.RD | FLAG.CD), question: { name: chain.target, type: q.qtype, cls: q.qclass } });
    if (q.edns) {
      wireQuery = Buffer.concat([wireQuery, optRecord(this.cfg.edns_udp_size, 0, q.dnssecOk)]);
      wireQuery[11] = 1;
    }
    const inner = parseQuery(wireQuery);
    if (!inner || isProblem(inner)) return this.errorAnswer(q, RCODE.SERVFAIL);
    const tail = decodeMessage(await this.run(inner, client, 'udp', 0, true));
    const wire = encodeMessage({
      id: 0,
      flags: FLAG.QR | FLAG.RA | (tail.flags & FLAG.AD) | tail.rcode,
      question: { name: queryName(q), type: q.qtype, cls: q.qclass },
      answers: [...chain.answers, ...tail.answers],
      authorities: tail.authorities,
    });
    return materialize(packLocal(wire, q), q, 0, -1, this.cfg.edns_udp_size);
  }

  private encodeLocal(q: Query, name: string, a: Extract<LocalAnswer, { kind: 'answer' }>): Buffer {
    return encodeMessage({
      id: 0,
      flags: FLAG.QR | (a.rcode === RCODE.SERVFAIL ? 0 : FLAG.AA) | FLAG.RA | a.rcode,
      question: { name, type: q.qtype, cls: q.qclass },
      answers: a.answers,
      authorities: a.authorities,
      additionals: a.additionals,
    });
  }

  private opt(q: Query): Buffer | null {
    return q.edns ? optRecord(this.cfg.edns_udp_size, 0, q.dnssecOk) : null;
  }

  private errorAnswer(q: Query, rcode: number): Buffer {
    return emptyAnswer(q.msg, q.qEnd, rcode, 0, this.opt(q));
  }

  /** NXDOMAIN, or 0.0.0.0 / :: for A / AAAA (NODATA for other types), as the client's policy says. */
  private blockedAnswer(q: Query, policy: Policy): Buffer {
    const opt = this.opt(q);
    if (policy.answer === 'nxdomain') return emptyAnswer(q.msg, q.qEnd, RCODE.NXDOMAIN, 0, opt);
    const len = q.qtype === TYPE.A ? 4 : q.qtype === TYPE.AAAA ? 16 : -1;
    if (len < 0 || q.qclass !== CLASS_IN) return emptyAnswer(q.msg, q.qEnd, RCODE.NOERROR, 0, opt);
    const head = emptyAnswer(q.msg, q.qEnd, RCODE.NOERROR, 0, null);
    const rr = Buffer.allocUnsafe(12 + len).fill(0);
    rr.writeUInt16BE(0xc00c, 0);
    rr.writeUInt16BE(q.qtype, 2);
    rr.writeUInt16BE(CLASS_IN, 4);
    rr.writeUInt32BE(policy.ttl, 6);
    rr.writeUInt16BE(len, 10);
    const out = Buffer.concat(opt ? [head, rr, opt] : [head, rr]);
    out[7] = 1;
    out[11] = opt ? 1 : 0;
    return out;
  }

  private done(out: Buffer, q: Query, client: string, transport: Transport, source: AnswerSource, t0: number, quiet: boolean): Buffer {
    if (quiet) return out;
    const ms = performance.now() - t0;
    const rcode = out[3] & 0xf;
    this.stats.answered(transport, source, rcode, ms);
    this.stats.name(q.key, () => `${queryName(q)} ${typeName(q.qtype)}`);
    this.queryLog?.info({ client, transport, name: queryName(q), type: typeName(q.qtype), rcode: rcodeName(rcode), source, ms: Math.round(ms * 1000) / 1000 }, 'query');
    return out;
  }

  /** Counts for this process. */
  part(): ResolverPart {
    const now = Date.now();
    return {
      ...this.stats.part(),
      cache_entries: this.cache.size,
      local_entries: this.localMemo.size,
      evictions: this.cache.evictions,
      pending: this.pending,
      upstreams: this.router.upstreams().map((u) => ({
        label: u.label, group: u.group, queries: u.queries, failures: u.failures, down: u.isDown(now), rtt_ms: Math.round(u.rttMs * 100) / 100,
      })),
      trusted: this.trusted.stats(),
    };
  }

  /** Lines of hosts files and block lists that could not be used. */
  problems(): string[] {
    return [...this.hosts.problems, ...this.blocking.problems()];
  }

  blockListSizes(): { name: string; rules: number; unusable_lines: number }[] {
    return [...this.blocking.lists].map(([name, s]) => ({ name, rules: s.size, unusable_lines: s.problems.length }));
  }

  close(): void {
    this.router.close();
    this.trusted.close();
    this.zone.close();
    this.fakeIp?.close();
  }
}

/** An answer is for UDP at most the client's advertised size (capped by ours), 512 without EDNS; a larger one goes
 * out empty with TC set, and the client retries over TCP (RFC 7766). */
export function fitUdp(out: Buffer, q: Query, ednsSize: number): Buffer {
  const limit = q.edns ? Math.min(q.udpSize, ednsSize) : 512;
  if (out.length <= limit) return out;
  return emptyAnswer(q.msg, q.qEnd, out[3] & 0xf, FLAG.TC | (((out[2] << 8) | out[3]) & FLAG.AA), q.edns ? optRecord(ednsSize, 0, q.dnssecOk) : null);
}

