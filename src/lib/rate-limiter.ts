// A token-bucket rate limit per key (a client address, a user name), bounded in size, so a flood of made-up keys
// cannot grow memory without limit. Used in front of whatever is expensive or guessable: logins, enrolment, the
// Basic credentials a file service checks.
export type Clock = () => number;

export interface RateLimitOptions {
  /** Burst size: this many requests pass at once from a full bucket. */
  capacity: number;
  /** One token comes back every `refillMs`. */
  refillMs: number;
  /** Most keys tracked; beyond it, the fullest buckets are forgotten. */
  maxKeys?: number;
  now?: Clock;
}

interface Bucket {
  tokens: number;
  at: number;
}

export class RateLimiter {
  private readonly buckets = new Map<string, Bucket>();
  private readonly capacity: number;
  private readonly refillMs: number;
  private readonly maxKeys: number;
  private readonly now: Clock;

  constructor(opts: RateLimitOptions) {
    this.capacity = opts.capacity;
    this.refillMs = opts.refillMs;
    this.maxKeys = opts.maxKeys ?? 10_000;
    this.now = opts.now ?? Date.now;
  }

  private level(b: Bucket, now: number): number {
    return Math.min(this.capacity, b.tokens + (now - b.at) / this.refillMs);
  }

  /** Takes one token for `key`: 0 when allowed, else the milliseconds until one is available. */
  take(key: string): number {
    const now = this.now();
    const b = this.buckets.get(key);
    const tokens = b ? this.level(b, now) : this.capacity;
    if (tokens < 1) return Math.ceil((1 - tokens) * this.refillMs);
    this.buckets.set(key, { tokens: tokens - 1, at: now });
    if (this.buckets.size > this.maxKeys) this.evict(now);
    return 0;
  }

  /**
   * Forgets full buckets (they hold nothing a new one would not), then the fullest, down to 90% of the bound so the
   * scan is paid once per many insertions. Dropping the emptiest would let a flood of fresh keys (made-up user
   * names) reset the bucket of the key under attack.
   */
  private evict(now: number): void {
    const levels: [string, number][] = [];
    for (const [k, b] of this.buckets) {
      const level = this.level(b, now);
      if (level >= this.capacity) this.buckets.delete(k);
      else levels.push([k, level]);
    }
    const target = Math.floor(this.maxKeys * 0.9);
    if (this.buckets.size <= target) return;
    levels.sort((a, b) => b[1] - a[1]);
    for (const [k] of levels.slice(0, this.buckets.size - target)) this.buckets.delete(k);
  }

  get size(): number {
    return this.buckets.size;
  }
}
