import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { retryUntilDone } from './retry.ts';

describe('retryUntilDone', () => {
  it('tries again after each failure, the wait doubling up to its cap, and answers the first success', async () => {
    const waits: number[] = [];
    let calls = 0;
    const got = await retryUntilDone(
      async () => {
        if (++calls < 5) throw new Error(`failure ${calls}`);
        return 'held';
      },
      { firstMs: 1, maxMs: 4, signal: new AbortController().signal, onFailure: (err, ms) => void waits.push(ms) },
    );
    assert.equal(got, 'held');
    assert.deepEqual(waits, [1, 2, 4, 4]);
  });

  it('awaits its failure handler before the next attempt, so it may clean up after the failed one', async () => {
    const order: string[] = [];
    let calls = 0;
    await retryUntilDone(
      async () => {
        order.push(`attempt ${++calls}`);
        if (calls === 1) throw new Error('boot failed');
      },
      {
        firstMs: 1,
        maxMs: 1,
        signal: new AbortController().signal,
        onFailure: async (err) => {
          await new Promise((r) => setTimeout(r, 5));
          order.push(`cleaned up after ${err.message}`);
        },
      },
    );
    assert.deepEqual(order, ['attempt 1', 'cleaned up after boot failed', 'attempt 2']);
  });

  it('ends during a long wait when aborted, answering undefined, and starts nothing once aborted', async () => {
    const stop = new AbortController();
    let calls = 0;
    const run = retryUntilDone(
      async () => {
        calls++;
        throw new Error('down');
      },
      { firstMs: 3_600_000, maxMs: 3_600_000, signal: stop.signal, onFailure: () => stop.abort() },
    );
    assert.equal(await run, undefined, 'an hour-long wait ended by the abort');
    assert.equal(calls, 1);
    assert.equal(await retryUntilDone(async () => calls++, { firstMs: 1, maxMs: 1, signal: stop.signal, onFailure: () => {} }), undefined);
    assert.equal(calls, 1, 'no attempt after the abort');
  });

  it('refuses waits that are not positive or exceed their cap', async () => {
    const opts = { signal: new AbortController().signal, onFailure: () => {} };
    await assert.rejects(retryUntilDone(async () => 1, { ...opts, firstMs: 0, maxMs: 10 }), /retry needs 0 < firstMs <= maxMs, got 0 and 10/);
    await assert.rejects(retryUntilDone(async () => 1, { ...opts, firstMs: 20, maxMs: 10 }), /got 20 and 10/);
  });
});
