// Trusted names (DESIGN §8): name spaces whose answers cyfs-ns verifies itself instead of taking an upstream's word —
// other zones' names through their owner-signed TXT records, ENS through an Ethereum JSON-RPC endpoint, and whatever
// name system is added next. Each is a TrustedNameResolver plugged in for a set of suffixes; this module gives every
// one its own answer cache and time limit, and turns anything it could not verify into SERVFAIL: an unverified answer
// is never passed on, and never falls through to the ordinary upstreams.
import type { ResourceRecord } from './wire.ts';
import { RCODE, normalizeName } from './wire.ts';

/** A verified answer. `ttl` bounds how long it is cached (the records' own TTLs are capped to it on the way out). */
export interface TrustedAnswer {
  rcode: typeof RCODE.NOERROR | typeof RCODE.NXDOMAIN;
  answers: ResourceRecord[];
  ttl: number;
}

/** A name that could not be verified (bad or missing signature, unreachable source): answered SERVFAIL, with `message`
 * in the log. */
export class TrustedNameError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TrustedNameError';
  }
}

/** Other DNS data a resolver may need (a zone's TXT records): asked through cyfs-ns's own upstreams. */
export type DnsLookup = (name: string, qtype: number, signal: AbortSignal) => Promise<{ rcode: number; answers: ResourceRecord[] }>;

export interface TrustedNameResolver {
  /** For logs, statistics and the admin API: "zone", "ens". */
  readonly label: string;
  /** Names it answers for, with every name below them; lower case, no trailing dot. */
  readonly suffixes: readonly string[];
  /** Time limit of one resolution, in ms. */
  readonly timeoutMs: number;
  /** Longest time any answer is cached, in seconds (0: never cached). */
  readonly maxCacheTtl: number;
  /**
   * The verified answer for a name (lower case, no trailing dot) and type, or a TrustedNameError. Must stop when
   * `signal` aborts.
   */
  resolve(name: string, qtype: number, signal: AbortSignal): Promise<TrustedAnswer>;
  close?(): void;
}

export interface TrustedStats {
  label: string;
  queries: number;
  cache_hits: number;
  failures: number;
  last_error: string | null;
}

interface Cached {
  answer: TrustedAnswer;
  until: number;
}

/** Bounded per resolver, oldest first out: trusted names are a small share of a network's queries. */
const MAX_CACHED = 10000;

class Plugged {
  readonly cache = new Map<string, Cached>();
  readonly inflight = new Map<string, Promise<TrustedAnswer>>();
  readonly stats: TrustedStats;

  constructor(readonly resolver: TrustedNameResolver) {
    this.stats = { label: resolver.label, queries: 0, cache_hits: 0, failures: 0, last_error: null };
  }
}

/** The trusted resolvers of one cyfs-ns process, matched by longest suffix. */
export class TrustedNames {
  private readonly bySuffix = new Map<string, Plugged>();
  private readonly plugged: Plugged[] = [];

  constructor(resolvers: readonly TrustedNameResolver[]) {
    for (const r of resolvers) {
      const p = new Plugged(r);
      this.plugged.push(p);
      for (const s of r.suffixes) {
        const suffix = normalizeName(s);
        const other = this.bySuffix.get(suffix);
        if (other) throw new Error(`trusted names: "${suffix}" is claimed by both ${other.resolver.label} and ${r.label}`);
        this.bySuffix.set(suffix, p);
      }
    }
  }

  get active(): boolean {
    return this.bySuffix.size > 0;
  }

  /** The resolver for a name (lower case, no trailing dot), if a trusted name space holds it. */
  private match(name: string): Plugged | undefined {
    let n = name;
    for (;;) {
      const p = this.bySuffix.get(n);
      if (p) return p;
      const dot = n.indexOf('.');
      if (dot < 0) return undefined;
      n = n.slice(dot + 1);
    }
  }

  owns(name: string): boolean {
    return this.active && this.match(name) !== undefined;
  }

  /** The verified answer, from the cache or the resolver; TrustedNameError when it cannot be had in time. */
  async resolve(name: string, qtype: number): Promise<TrustedAnswer> {
    const p = this.match(name);
    if (!p) throw new TrustedNameError(`${name}: no trusted name space holds it`);
    p.stats.queries++;
    const key = `${qtype} ${name}`;
    const now = Date.now();
    const hit = p.cache.get(key);
    if (hit && hit.until > now) {
      p.stats.cache_hits++;
      const left = Math.max(1, Math.floor((hit.until - now) / 1000));
      return { ...hit.answer, answers: hit.answer.answers.map((rr) => ({ ...rr, ttl: Math.min(rr.ttl, left) })) };
    }
    const running = p.inflight.get(key);
    if (running) return running;
    const promise = this.fetch(p, name, qtype, key).finally(() => p.inflight.delete(key));
    p.inflight.set(key, promise);
    return promise;
  }

  private async fetch(p: Plugged, name: string, qtype: number, key: string): Promise<TrustedAnswer> {
    const r = p.resolver;
    const ctl = new AbortController();
    const timer = setTimeout(() => ctl.abort(new TrustedNameError(`${r.label}: no answer for ${name} within ${r.timeoutMs} ms`)), r.timeoutMs);
    try {
      const answer = await Promise.race([
        r.resolve(name, qtype, ctl.signal),
        new Promise<never>((_, reject) => ctl.signal.addEventListener('abort', () => reject(ctl.signal.reason as Error), { once: true })),
      ]);
      const ttl = Math.min(answer.ttl, r.maxCacheTtl, ...answer.answers.map((rr) => rr.ttl));
      const capped = { ...answer, answers: answer.answers.map((rr) => ({ ...rr, ttl: Math.min(rr.ttl, Math.max(ttl, 0)) })) };
      if (ttl > 0) {
        if (p.cache.size >= MAX_CACHED) p.cache.delete(p.cache.keys().next().value as string);
        p.cache.set(key, { answer: capped, until: Date.now() + ttl * 1000 });
      }
      return capped;
    } catch (err) {
      p.stats.failures++;
      const message = err instanceof TrustedNameError ? err.message : `${r.label}: ${(err as Error).message}`;
      p.stats.last_error = message;
      throw new TrustedNameError(message);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Forgets every cached answer (reload). */
  clear(): void {
    for (const p of this.plugged) p.cache.clear();
  }

  stats(): TrustedStats[] {
    return this.plugged.map((p) => ({ ...p.stats }));
  }

  close(): void {
    for (const p of this.plugged) p.resolver.close?.();
  }
}
