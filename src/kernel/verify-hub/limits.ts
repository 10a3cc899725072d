// In-memory guards in front of the expensive and guessable parts of login: token-bucket rate limits and single-use
// nonces. Both are bounded in size, so a flood of addresses or nonce requests cannot grow memory without limit.
import { randomBytes } from 'node:crypto';

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

export class NonceStore {
  private readonly nonces = new Map<string, number>();
  private readonly ttlMs: number;
  private readonly max: number;
  private readonly now: Clock;

  constructor(opts: { ttlMs: number; max?: number; now?: Clock }) {
    this.ttlMs = opts.ttlMs;
    this.max = opts.max ?? 10_000;
    this.now = opts.now ?? Date.now;
  }

  /** A fresh nonce and its expiry (ms), or null when too many are outstanding. */
  issue(): { nonce: string; expiresAt: number } | null {
    const now = this.now();
    if (this.nonces.size >= this.max) {
      for (const [n, exp] of this.nonces) if (exp <= now) this.nonces.delete(n);
      if (this.nonces.size >= this.max) return null;
    }
    const nonce = randomBytes(18).toString('base64url');
    const expiresAt = now + this.ttlMs;
    this.nonces.set(nonce, expiresAt);
    return { nonce, expiresAt };
  }

  /** True once for a nonce this store issued and that has not expired; it is gone afterwards either way. */
  consume(nonce: string): boolean {
    const exp = this.nonces.get(nonce);
    if (exp === undefined) return false;
    this.nonces.delete(nonce);
    return exp > this.now();
  }
}

export interface LockoutPolicy {
  maxFailures: number;
  lockMs: number;
}

/**
 * Failed-login counting for user names that do not exist, kept in memory with the same thresholds as the persisted
 * counters of real accounts: without it "account locked" would appear only for real accounts and reveal them.
 */
export class PhantomLockout {
  private readonly entries = new Map<string, { failures: number; lockedUntil: number }>();

  constructor(
    private readonly policy: LockoutPolicy,
    private readonly now: Clock = Date.now,
    private readonly maxKeys = 10_000,
  ) {}

  lockedUntil(name: string): number {
    const e = this.entries.get(name);
    return e && e.lockedUntil > this.now() ? e.lockedUntil : 0;
  }

  fail(name: string): void {
    const e = this.entries.get(name) ?? { failures: 0, lockedUntil: 0 };
    this.entries.delete(name);
    e.failures += 1;
    if (e.failures >= this.policy.maxFailures) {
      e.failures = 0;
      e.lockedUntil = this.now() + this.policy.lockMs;
    }
    this.entries.set(name, e);
    for (const k of this.entries.keys()) {
      if (this.entries.size <= this.maxKeys) break;
      this.entries.delete(k);
    }
  }
}
