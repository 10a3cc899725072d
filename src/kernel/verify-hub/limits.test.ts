import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { NonceStore, PhantomLockout, RateLimiter } from './limits.ts';

function clock(start = 1_000_000) {
  let t = start;
  return { now: () => t, advance: (ms: number) => (t += ms) };
}

describe('rate limiter', () => {
  it('allows a burst, then one request per refill period, per key', () => {
    const c = clock();
    const rl = new RateLimiter({ capacity: 3, refillMs: 1000, now: c.now });
    assert.deepEqual([rl.take('a'), rl.take('a'), rl.take('a')], [0, 0, 0]);
    assert.equal(rl.take('a'), 1000);
    assert.equal(rl.take('b'), 0);
    c.advance(400);
    assert.equal(rl.take('a'), 600);
    c.advance(600);
    assert.equal(rl.take('a'), 0);
    assert.equal(rl.take('a'), 1000);
    c.advance(10_000);
    assert.deepEqual([rl.take('a'), rl.take('a'), rl.take('a'), rl.take('a') > 0], [0, 0, 0, true]);
  });

  it('stays bounded, and a flood of new keys does not reset an exhausted bucket', () => {
    const c = clock();
    const rl = new RateLimiter({ capacity: 2, refillMs: 1000, maxKeys: 10, now: c.now });
    rl.take('victim');
    rl.take('victim');
    for (let i = 0; i < 100; i++) rl.take(`made-up-${i}`);
    assert.ok(rl.size <= 10);
    assert.ok(rl.take('victim') > 0);
  });
});

describe('nonces', () => {
  it('are single-use', () => {
    const ns = new NonceStore({ ttlMs: 60_000 });
    const n = ns.issue()!;
    assert.equal(ns.consume(n.nonce), true);
    assert.equal(ns.consume(n.nonce), false);
    assert.equal(ns.consume('never-issued'), false);
  });

  it('expire', () => {
    const c = clock();
    const ns = new NonceStore({ ttlMs: 60_000, now: c.now });
    const a = ns.issue()!;
    const b = ns.issue()!;
    assert.equal(a.expiresAt, c.now() + 60_000);
    c.advance(59_999);
    assert.equal(ns.consume(a.nonce), true);
    c.advance(1);
    assert.equal(ns.consume(b.nonce), false);
  });

  it('are bounded; expired ones make room', () => {
    const c = clock();
    const ns = new NonceStore({ ttlMs: 1000, max: 2, now: c.now });
    assert.ok(ns.issue());
    assert.ok(ns.issue());
    assert.equal(ns.issue(), null);
    c.advance(1000);
    assert.ok(ns.issue());
  });
});

describe('phantom lockout', () => {
  it('locks after the same number of failures as a real account', () => {
    const c = clock();
    const pl = new PhantomLockout({ maxFailures: 3, lockMs: 5000 }, c.now);
    pl.fail('ghost');
    pl.fail('ghost');
    assert.equal(pl.lockedUntil('ghost'), 0);
    pl.fail('ghost');
    assert.equal(pl.lockedUntil('ghost'), c.now() + 5000);
    c.advance(5000);
    assert.equal(pl.lockedUntil('ghost'), 0);
  });
});
