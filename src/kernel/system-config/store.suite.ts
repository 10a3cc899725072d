// The conformance suite every ConfigStore backend must pass. Tests only rely on revisions relative to what they read,
// because an etcd store shares its revision counter with everything else in the cluster.
import { describe, it, beforeEach, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { StoreError, type ConfigStore, type WatchEvent } from './store.ts';

export type OpenStore = () => Promise<{ store: ConfigStore; cleanup: () => Promise<void> }>;

function isStoreError(code: StoreError['code']): (err: unknown) => boolean {
  return (err: unknown) => {
    assert.ok(err instanceof StoreError, `expected StoreError(${code}), got ${String(err)}`);
    assert.equal(err.code, code);
    return true;
  };
}

/** Milliseconds `p` takes to settle, failing the test if it rejects. */
async function timed(p: Promise<unknown>): Promise<number> {
  const start = performance.now();
  await p;
  return performance.now() - start;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function brief(events: WatchEvent[]): string[] {
  return events.map((e) => `${e.type} ${e.key} ${e.value ?? '-'}`);
}

export function runStoreSuite(name: string, open: OpenStore): void {
  describe(`ConfigStore conformance: ${name}`, () => {
    let store: ConfigStore;
    let cleanup: (() => Promise<void>) | undefined;

    beforeEach(async () => {
      ({ store, cleanup } = await open());
    });
    afterEach(async () => {
      await cleanup?.();
      cleanup = undefined;
    });

    it('get of a missing key returns null', async () => {
      assert.equal(await store.get('missing/key'), null);
    });

    it('set then get returns the value at the returned revision', async () => {
      const rev = await store.set('a/b', '{"x":1}');
      assert.ok(rev > 0);
      assert.deepEqual(await store.get('a/b'), { key: 'a/b', value: '{"x":1}', revision: rev, createRevision: rev });
      assert.equal(await store.currentRevision(), rev);
    });

    it('revisions increase monotonically and createRevision stays until delete', async () => {
      const r1 = await store.set('k', 'v1');
      const r2 = await store.set('k', 'v2');
      const r3 = await store.set('other', 'x');
      const r4 = await store.set('k', 'v3');
      assert.ok(r1 < r2 && r2 < r3 && r3 < r4, `${r1} < ${r2} < ${r3} < ${r4}`);
      assert.deepEqual(await store.get('k'), { key: 'k', value: 'v3', revision: r4, createRevision: r1 });
      const r5 = await store.delete('k');
      assert.ok(r5 > r4);
      const r6 = await store.set('k', 'again');
      assert.equal((await store.get('k'))?.createRevision, r6);
      assert.ok((await store.currentRevision()) >= r6);
    });

    it('create fails with ALREADY_EXISTS on an existing key and leaves it unchanged', async () => {
      const rev = await store.create('c', 'first');
      assert.equal((await store.get('c'))?.revision, rev);
      await assert.rejects(store.create('c', 'second'), isStoreError('ALREADY_EXISTS'));
      assert.deepEqual(await store.get('c'), { key: 'c', value: 'first', revision: rev, createRevision: rev });
      assert.equal(await store.currentRevision(), rev);
    });

    it('delete of a missing key fails with NOT_FOUND and does not bump the revision', async () => {
      const before = await store.set('present', '1');
      await assert.rejects(store.delete('absent'), isStoreError('NOT_FOUND'));
      await assert.rejects(store.delete('absent', 0), isStoreError('NOT_FOUND'));
      assert.equal(await store.currentRevision(), before);
    });

    it('delete with expectRevision deletes only at that revision', async () => {
      const rev = await store.set('d', '1');
      await assert.rejects(store.delete('d', rev - 1), isStoreError('CONFLICT'));
      assert.equal((await store.get('d'))?.value, '1');
      const delRev = await store.delete('d', rev);
      assert.ok(delRev > rev);
      assert.equal(await store.get('d'), null);
    });

    it('set with expectRevision: success, conflict, and 0 meaning "must not exist"', async () => {
      const r1 = await store.set('cas', 'a', 0);
      await assert.rejects(store.set('cas', 'b', 0), isStoreError('CONFLICT'));
      const r2 = await store.set('cas', 'b', r1);
      assert.ok(r2 > r1);
      await assert.rejects(store.set('cas', 'c', r1), isStoreError('CONFLICT'));
      assert.deepEqual(await store.get('cas'), { key: 'cas', value: 'b', revision: r2, createRevision: r1 });
      await assert.rejects(store.set('never', 'x', r2), isStoreError('CONFLICT'));
      assert.equal(await store.get('never'), null);
      assert.equal(await store.currentRevision(), r2);
    });

    it('list returns only keys under the prefix, sorted by key, honouring limit', async () => {
      for (const key of ['l/c', 'l/a', 'lz', 'k/a', 'l/b/1', 'l/b', 'l/', 'l']) await store.set(key, `v:${key}`);
      const last = await store.currentRevision();
      const all = await store.list('l/');
      assert.deepEqual(
        all.entries.map((e) => e.key),
        ['l/', 'l/a', 'l/b', 'l/b/1', 'l/c'],
      );
      assert.equal(all.entries[1].value, 'v:l/a');
      assert.equal(all.revision, last);
      const limited = await store.list('l/', 2);
      assert.deepEqual(
        limited.entries.map((e) => e.key),
        ['l/', 'l/a'],
      );
      assert.deepEqual((await store.list('nothing/')).entries, []);
      assert.equal((await store.list('')).entries.length, 8);
    });

    it('execTx applies every op under one revision when all compares hold', async () => {
      const ra = await store.set('tx/a', '1');
      await store.set('tx/gone', 'x');
      const res = await store.execTx(
        [
          { key: 'tx/a', revision: ra },
          { key: 'tx/new', revision: 0 },
        ],
        [
          { op: 'put', key: 'tx/a', value: '2' },
          { op: 'create', key: 'tx/new', value: 'n' },
          { op: 'put', key: 'tx/b', value: 'b' },
          { op: 'delete', key: 'tx/gone' },
        ],
      );
      assert.equal(res.succeeded, true);
      assert.deepEqual(res.conflicts, []);
      assert.ok(res.revision > ra);
      assert.equal(await store.currentRevision(), res.revision);
      const { entries } = await store.list('tx/');
      assert.deepEqual(
        entries.map((e) => [e.key, e.value, e.revision]),
        [
          ['tx/a', '2', res.revision],
          ['tx/b', 'b', res.revision],
          ['tx/new', 'n', res.revision],
        ],
      );
      assert.equal((await store.get('tx/a'))?.createRevision, ra);
    });

    it('execTx with a failed compare writes nothing and names the conflicting key', async () => {
      const ra = await store.set('tx/a', '1');
      await store.set('tx/a', '2');
      const before = await store.currentRevision();
      const res = await store.execTx(
        [
          { key: 'tx/a', revision: ra },
          { key: 'tx/missing', revision: 0 },
        ],
        [
          { op: 'put', key: 'tx/a', value: '3' },
          { op: 'put', key: 'tx/b', value: 'b' },
          { op: 'delete', key: 'tx/a2' },
        ],
      );
      assert.deepEqual(res, { succeeded: false, revision: before, conflicts: ['tx/a'] });
      assert.equal((await store.get('tx/a'))?.value, '2');
      assert.equal(await store.get('tx/b'), null);
      assert.equal(await store.currentRevision(), before);
    });

    it('execTx with a colliding create writes nothing and names the key', async () => {
      await store.set('tx/exists', 'e');
      const before = await store.currentRevision();
      const res = await store.execTx(
        [],
        [
          { op: 'put', key: 'tx/p', value: 'p' },
          { op: 'create', key: 'tx/exists', value: 'x' },
          { op: 'create', key: 'tx/fresh', value: 'f' },
        ],
      );
      assert.deepEqual(res, { succeeded: false, revision: before, conflicts: ['tx/exists'] });
      assert.equal(await store.get('tx/p'), null);
      assert.equal(await store.get('tx/fresh'), null);
      assert.equal((await store.get('tx/exists'))?.value, 'e');
    });

    it('execTx rejects an op list that writes one key twice', async () => {
      await assert.rejects(
        store.execTx(
          [],
          [
            { op: 'put', key: 'dup', value: '1' },
            { op: 'delete', key: 'dup' },
          ],
        ),
        /more than once/,
      );
      assert.equal(await store.get('dup'), null);
    });

    it('changesSince returns puts and deletes under the prefix, in order, after the revision', async () => {
      await store.set('p/early', 'skip');
      const start = await store.currentRevision();
      const r1 = await store.set('p/a', '1');
      await store.set('q/a', 'other prefix');
      const r3 = await store.set('p/b', '2');
      const r4 = await store.delete('p/a');
      const tx = await store.execTx([], [
        { op: 'put', key: 'p/c', value: '3' },
        { op: 'put', key: 'q/b', value: 'other' },
        { op: 'delete', key: 'p/b' },
      ]);
      const events = await store.changesSince('p/', start, 100);
      assert.deepEqual(events, [
        { type: 'put', key: 'p/a', value: '1', revision: r1 },
        { type: 'put', key: 'p/b', value: '2', revision: r3 },
        { type: 'delete', key: 'p/a', value: null, revision: r4 },
        { type: 'put', key: 'p/c', value: '3', revision: tx.revision },
        { type: 'delete', key: 'p/b', value: null, revision: tx.revision },
      ]);
      assert.deepEqual(await store.changesSince('p/', tx.revision, 100), []);
      assert.deepEqual(brief(await store.changesSince('p/', r3, 100)), ['delete p/a -', 'put p/c 3', 'delete p/b -']);
      assert.deepEqual(brief(await store.changesSince('p/', start, 2)), ['put p/a 1', 'put p/b 2']);
      assert.deepEqual(
        brief(await store.changesSince('q/', start, 100)),
        ['put q/a other prefix', 'put q/b other'],
      );
    });

    it('changesSince never splits one revision across pages', async () => {
      const start = await store.currentRevision();
      const tx = await store.execTx([], [
        { op: 'put', key: 'w/1', value: '1' },
        { op: 'put', key: 'w/2', value: '2' },
        { op: 'put', key: 'w/3', value: '3' },
      ]);
      await store.set('w/4', '4');
      const first = await store.changesSince('w/', start, 2);
      assert.deepEqual(brief(first), ['put w/1 1', 'put w/2 2', 'put w/3 3']);
      assert.ok(first.every((e) => e.revision === tx.revision));
      assert.deepEqual(brief(await store.changesSince('w/', tx.revision, 2)), ['put w/4 4']);
    });

    it('waitForChange resolves early when another write happens', async () => {
      const rev = await store.set('watch/x', '1');
      const waiting = store.waitForChange(rev, 10_000);
      const writer = sleep(150).then(() => store.set('watch/x', '2'));
      const elapsed = await timed(waiting);
      await writer;
      assert.ok(elapsed >= 100 && elapsed < 5_000, `woke after ${elapsed} ms`);
      assert.equal((await store.changesSince('watch/', rev, 10)).length, 1);
    });

    it('waitForChange resolves at once when a later revision already exists', async () => {
      const rev = await store.set('watch/x', '1');
      await store.set('watch/x', '2');
      const elapsed = await timed(store.waitForChange(rev, 10_000));
      assert.ok(elapsed < 2_000, `took ${elapsed} ms`);
    });

    it('waitForChange times out when nothing is written', async () => {
      const rev = await store.set('watch/x', '1');
      const elapsed = await timed(store.waitForChange(rev, 300));
      assert.ok(elapsed >= 250 && elapsed < 3_000, `took ${elapsed} ms`);
    });

    it('waitForChange rejects promptly when its signal aborts', async () => {
      const rev = await store.set('watch/x', '1');
      const ctl = new AbortController();
      const waiting = store.waitForChange(rev, 10_000, ctl.signal);
      const start = performance.now();
      setTimeout(() => ctl.abort(), 100);
      await assert.rejects(waiting, { name: 'AbortError' });
      assert.ok(performance.now() - start < 2_000);
      await assert.rejects(store.waitForChange(rev, 10_000, ctl.signal), { name: 'AbortError' });
    });

    it('a reconnecting reader that missed several writes sees all of them via changesSince', async () => {
      const seen = await store.set('sync/a', '0');
      const expected: string[] = [];
      for (let i = 1; i <= 12; i++) {
        if (i % 4 === 0) {
          await store.delete(`sync/k${i - 1}`);
          expected.push(`delete sync/k${i - 1} -`);
        } else {
          await store.set(`sync/k${i}`, `v${i}`);
          expected.push(`put sync/k${i} v${i}`);
        }
      }
      assert.deepEqual(brief(await store.changesSince('sync/', seen, 1000)), expected);
      // Resuming page by page from the last revision of each page yields the same sequence.
      const paged: WatchEvent[] = [];
      let cursor = seen;
      for (;;) {
        const page = await store.changesSince('sync/', cursor, 5);
        if (page.length === 0) break;
        paged.push(...page);
        cursor = page[page.length - 1].revision;
      }
      assert.deepEqual(brief(paged), expected);
    });

    it('dump returns every key sorted by key with the current revision', async () => {
      await store.set('z', '26');
      await store.set('a', '1');
      await store.set('m/n', '14');
      await store.delete('z');
      const dumped = await store.dump();
      assert.deepEqual(
        dumped.entries.map((e) => [e.key, e.value]),
        [
          ['a', '1'],
          ['m/n', '14'],
        ],
      );
      assert.equal(dumped.revision, await store.currentRevision());
    });

    it('stores unicode keys and values and 100 KB values intact', async () => {
      const unicode = 'héllo — 你好 — привет — 🚀🌍 — e\u0301 — "quotes" \\ backslash \n newline';
      await store.set('u/ключ/🔑', unicode);
      assert.equal((await store.get('u/ключ/🔑'))?.value, unicode);
      const big = Array.from({ length: 100 * 1024 }, (_, i) => String.fromCharCode(0x21 + ((i * 7919) % 94))).join('');
      const start = await store.currentRevision();
      await store.set('u/big', big);
      assert.equal((await store.get('u/big'))?.value, big);
      const events = await store.changesSince('u/', start, 10);
      assert.equal(events.length, 1);
      assert.equal(events[0].value, big);
      assert.deepEqual(
        (await store.list('u/')).entries.map((e) => e.key),
        ['u/big', 'u/ключ/🔑'],
      );
    });

    it('50 parallel compare-and-swap increments with retry end at exactly 50', async () => {
      await store.set('counter', '0');
      let conflicts = 0;
      const increment = async (): Promise<void> => {
        for (;;) {
          const cur = await store.get('counter');
          assert.ok(cur);
          try {
            await store.set('counter', String(Number(cur.value) + 1), cur.revision);
            return;
          } catch (err) {
            if (!(err instanceof StoreError && err.code === 'CONFLICT')) throw err;
            conflicts++;
            await sleep(Math.random() * 5);
          }
        }
      };
      await Promise.all(Array.from({ length: 50 }, increment));
      assert.equal((await store.get('counter'))?.value, '50');
      assert.ok(conflicts > 0, 'the increments should have contended');
    });
  });
}
