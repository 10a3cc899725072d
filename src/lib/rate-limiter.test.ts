import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { RateLimiter } from './rate-limiter.ts';

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
