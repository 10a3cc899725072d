// Statistics: counters, a latency histogram and the most-asked and most-blocked names, all in fixed memory. Top names
// come from a count-min sketch: a query's name is built only when its estimated count makes it a contender, so a
// flood of random names costs a few array increments each, not a string and a map entry.
import { rcodeName } from './wire.ts';

/** Where an answer came from. */
export const SOURCES = ['local', 'cache', 'stale', 'upstream', 'blocked', 'trusted', 'fakeip', 'error'] as const;
export type AnswerSource = (typeof SOURCES)[number];
export const TRANSPORTS = ['udp', 'tcp', 'doh'] as const;
export type Transport = (typeof TRANSPORTS)[number];

// Latency buckets: 8 per doubling from 1 us, so any percentile is within about 9% of the truth.
const BUCKETS_PER_OCTAVE = 8;
const BUCKETS = 30 * BUCKETS_PER_OCTAVE;

class TopK {
  private sketch: Uint32Array;
  private readonly mask: number;
  private table = new Map<number, { label: string; count: number }>();
  private floor = 0;

  constructor(private readonly capacity: number, width = 1 << 15) {
    this.sketch = new Uint32Array(width * 2);
    this.mask = width - 1;
  }

  add(key: number, label: () => string): void {
    const a = key & this.mask;
    const b = this.mask + 1 + ((Math.imul(key, 0x9e3779b1) >>> 17) & this.mask);
    const est = Math.min(++this.sketch[a], ++this.sketch[b]);
    const e = this.table.get(key);
    if (e) {
      e.count = est;
      return;
    }
    if (this.table.size < this.capacity) {
      this.table.set(key, { label: label(), count: est });
      return;
    }
    if (est <= this.floor) return;
    let minKey = 0;
    let min = Infinity;
    for (const [k, v] of this.table) {
      if (v.count < min) {
        min = v.count;
        minKey = k;
      }
    }
    if (est <= min) {
      this.floor = min;
      return;
    }
    this.table.delete(minKey);
    this.table.set(key, { label: label(), count: est });
    this.floor = min;
  }

  entries(): { label: string; count: number }[] {
    return [...this.table.values()].map((v) => ({ ...v }));
  }
}

/** Everything one process counts; workers send theirs to the primary, which merges them (mergeStats). */
export interface StatsPart {
  started_at: number;
  queries: number;
  by_transport: Record<Transport, number>;
  by_source: Record<AnswerSource, number>;
  rcodes: Record<string, number>;
  dropped: number;
  truncated: number;
  cache_misses: number;
  prefetches: number;
  latency_buckets: number[];
  top_names: { label: string; count: number }[];
  top_blocked: { label: string; count: number }[];
}

export class Stats {
  queries = 0;
  readonly byTransport: Record<Transport, number> = { udp: 0, tcp: 0, doh: 0 };
  readonly bySource: Record<AnswerSource, number> = { local: 0, cache: 0, stale: 0, upstream: 0, blocked: 0, trusted: 0, fakeip: 0, error: 0 };
  private rcodes = new Uint32Array(24);
  dropped = 0;
  truncated = 0;
  cacheMisses = 0;
  prefetches = 0;
  private latency = new Float64Array(BUCKETS);
  private topNames: TopK;
  private topBlocked: TopK;
  private readonly startedAt = Date.now();

  constructor(top: number) {
    this.topNames = new TopK(top * 4);
    this.topBlocked = new TopK(top * 4, 1 << 12);
  }

  /** One answered query. `latencyMs` is from arrival to the answer being handed to the socket. */
  answered(transport: Transport, source: AnswerSource, rcode: number, latencyMs: number): void {
    this.queries++;
    this.byTransport[transport]++;
    this.bySource[source]++;
    this.rcodes[rcode < 24 ? rcode : 23]++;
    const us = latencyMs * 1000;
    const b = us <= 1 ? 0 : Math.min(BUCKETS - 1, Math.floor(Math.log2(us) * BUCKETS_PER_OCTAVE));
    this.latency[b]++;
  }

  name(key: number, label: () => string): void {
    this.topNames.add(key, label);
  }

  blocked(key: number, label: () => string): void {
    this.topBlocked.add(key, label);
  }

  part(): StatsPart {
    const rcodes: Record<string, number> = {};
    this.rcodes.forEach((n, r) => {
      if (n > 0) rcodes[rcodeName(r)] = n;
    });
    return {
      started_at: this.startedAt,
      queries: this.queries,
      by_transport: { ...this.byTransport },
      by_source: { ...this.bySource },
      rcodes,
      dropped: this.dropped,
      truncated: this.truncated,
      cache_misses: this.cacheMisses,
      prefetches: this.prefetches,
      latency_buckets: Array.from(this.latency),
      top_names: this.topNames.entries(),
      top_blocked: this.topBlocked.entries(),
    };
  }
}

/** Upper edge of a latency bucket, in milliseconds. */
function bucketMs(b: number): number {
  return 2 ** ((b + 1) / BUCKETS_PER_OCTAVE) / 1000;
}

export interface LatencySummary {
  p50_ms: number;
  p90_ms: number;
  p99_ms: number;
  p999_ms: number;
}

export function percentiles(buckets: readonly number[]): LatencySummary {
  const total = buckets.reduce((a, b) => a + b, 0);
  const at = (q: number) => {
    if (total === 0) return 0;
    const rank = Math.ceil(q * total);
    let seen = 0;
    for (let b = 0; b < buckets.length; b++) {
      seen += buckets[b];
      if (seen >= rank) return Math.round(bucketMs(b) * 1000) / 1000;
    }
    return Math.round(bucketMs(buckets.length - 1) * 1000) / 1000;
  };
  return { p50_ms: at(0.5), p90_ms: at(0.9), p99_ms: at(0.99), p999_ms: at(0.999) };
}

/** Adds up parts from several processes. Top lists are merged by label (each process saw its own share). */
export function mergeParts(parts: readonly StatsPart[]): StatsPart {
  const out: StatsPart = {
    started_at: Math.min(...parts.map((p) => p.started_at)),
    queries: 0,
    by_transport: { udp: 0, tcp: 0, doh: 0 },
    by_source: { local: 0, cache: 0, stale: 0, upstream: 0, blocked: 0, trusted: 0, fakeip: 0, error: 0 },
    rcodes: {},
    dropped: 0,
    truncated: 0,
    cache_misses: 0,
    prefetches: 0,
    latency_buckets: new Array<number>(BUCKETS).fill(0),
    top_names: [],
    top_blocked: [],
  };
  const names = new Map<string, number>();
  const blocked = new Map<string, number>();
  for (const p of parts) {
    out.queries += p.queries;
    out.dropped += p.dropped;
    out.truncated += p.truncated;
    out.cache_misses += p.cache_misses;
    out.prefetches += p.prefetches;
    for (const t of TRANSPORTS) out.by_transport[t] += p.by_transport[t];
    for (const s of SOURCES) out.by_source[s] += p.by_source[s];
    for (const [r, n] of Object.entries(p.rcodes)) out.rcodes[r] = (out.rcodes[r] ?? 0) + n;
    p.latency_buckets.forEach((n, i) => (out.latency_buckets[i] += n));
    for (const e of p.top_names) names.set(e.label, (names.get(e.label) ?? 0) + e.count);
    for (const e of p.top_blocked) blocked.set(e.label, (blocked.get(e.label) ?? 0) + e.count);
  }
  const sorted = (m: Map<string, number>) => [...m].map(([label, count]) => ({ label, count })).sort((a, b) => b.count - a.count);
  out.top_names = sorted(names);
  out.top_blocked = sorted(blocked);
  return out;
}
