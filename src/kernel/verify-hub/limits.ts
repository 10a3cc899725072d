// In-memory guards in front of the expensive and guessable parts of login: token-bucket rate limits and single-use
// nonces. Both are bounded in size, so a flood of addresses or nonce requests cannot grow memory without limit.
import { randomBytes } from 'node:crypto';
import type { Clock } from '../../lib/rate-limiter.ts';

/**
 * Single-use login nonces, kept per client address. Issuing never fails: an address that holds `maxPerAddress`
 * outstanding nonces loses its own oldest, and a full store loses its oldest overall. So one address can only push
 * out its own nonces; pushing out another client's takes `max / maxPerAddress` addresses issuing faster than that
 * client logs in, each under its own rate limit.
 */
export class NonceStore {
  /** In issue order, which is expiry order: the TTL is the same for all. */
  private readonly nonces = new Map<string, { expiresAt: number; address: string }>();
  private readonly byAddress = new Map<string, Set<string>>();
  private readonly ttlMs: number;
  private readonly max: number;
  private readonly maxPerAddress: number;
  private readonly now: Clock;

  constructor(opts: { ttlMs: number; max?: number; maxPerAddress?: number; now?: Clock }) {
    this.ttlMs = opts.ttlMs;
    this.max = opts.max ?? 10_000;
    this.maxPerAddress = opts.maxPerAddress ?? 16;
    this.now = opts.now ?? Date.now;
  }

  /** A fresh nonce for a client at `address`, and its expiry (ms). */
  issue(address: string): { nonce: string; expiresAt: number } {
    const now = this.now();
    for (const [n, e] of this.nonces) {
      if (e.expiresAt > now) break;
      this.drop(n);
    }
    const mine = this.byAddress.get(address);
    if (mine && mine.size >= this.maxPerAddress) this.drop(mine.values().next().value!);
    if (this.nonces.size >= this.max) this.drop(this.nonces.keys().next().value!);
    const nonce = randomBytes(18).toString('base64url');
    const expiresAt = now + this.ttlMs;
    this.nonces.set(nonce, { expiresAt, address });
    if (mine) mine.add(nonce);
    else this.byAddress.set(address, new Set([nonce]));
    return { nonce, expiresAt };
  }

  /** True once for a nonce this store issued and that has not expired; it is gone afterwards either way. Any
   * address may use it: a client may change address between the two calls. */
  consume(nonce: string): boolean {
    const e = this.nonces.get(nonce);
    if (!e) return false;
    this.drop(nonce);
    return e.expiresAt > this.now();
  }

  private drop(nonce: string): void {
    const e = this.nonces.get(nonce);
    if (!e) return;
    this.nonces.delete(nonce);
    const set = this.byAddress.get(e.address)!;
    set.delete(nonce);
    if (set.size === 0) this.byAddress.delete(e.address);
  }

  get size(): number {
    return this.nonces.size;
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
