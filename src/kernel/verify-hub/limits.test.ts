import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { NonceStore, PhantomLockout } from './limits.ts';

function clock(start = 1_000_000) {
  let t = start;
  return { now: () => t, advance: (ms: number) => (t += ms) };
}

describe('nonces', () => {
  it('are single-use', () => {
    const ns = new NonceStore({ ttlMs: 60_000 });
    const n = ns.issue('10.0.0.1');
    assert.equal(ns.consume(n.nonce), true);
    assert.equal(ns.consume(n.nonce), false);
    assert.equal(ns.consume('never-issued'), false);
  });

  it('expire', () => {
    const c = clock();
    const ns = new NonceStore({ ttlMs: 60_000, now: c.now });
    const a = ns.issue('10.0.0.1');
    const b = ns.issue('10.0.0.1');
    assert.equal(a.expiresAt, c.now() + 60_000);
    c.advance(59_999);
    assert.equal(ns.consume(a.nonce), true);
    c.advance(1);
    assert.equal(ns.consume(b.nonce), false);
  });

  it('are bounded per address: a flood from one address pushes out only its own', () => {
    const ns = new NonceStore({ ttlMs: 60_000, max: 100, maxPerAddress: 3 });
    const victim = ns.issue('10.0.0.1');
    const flood = Array.from({ length: 1000 }, () => ns.issue('10.6.6.6'));
    assert.equal(ns.size, 4);
    assert.equal(ns.consume(victim.nonce), true);
    assert.equal(ns.consume(flood[0]!.nonce), false);
    assert.equal(ns.consume(flood[999]!.nonce), true);
  });

  it('never refuse: expired ones make room first, then a full store forgets its oldest', () => {
    const c = clock();
    const ns = new NonceStore({ ttlMs: 1000, max: 2, now: c.now });
    ns.issue('10.0.0.1');
    c.advance(600);
    const b = ns.issue('10.0.0.2');
    c.advance(400);
    const d = ns.issue('10.0.0.3');
    assert.equal(ns.size, 2);
    assert.equal(ns.consume(b.nonce), true);
    const e = ns.issue('10.0.0.4');
    const f = ns.issue('10.0.0.5');
    assert.equal(ns.size, 2);
    assert.equal(ns.consume(d.nonce), false);
    assert.equal(ns.consume(e.nonce), true);
    assert.equal(ns.consume(f.nonce), true);
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
