import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { StoreError } from '../store.ts';
import { runStoreSuite } from '../store.suite.ts';
import { openSqliteStore } from './sqlite.ts';

let dir: string;
let files = 0;
const freshPath = (): string => join(dir, `store-${++files}.db`);

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'buckyos-sqlite-store-'));
});
after(() => {
  rmSync(dir, { recursive: true, force: true });
});

runStoreSuite('sqlite', async () => {
  const store = openSqliteStore(freshPath());
  return { store, cleanup: () => store.close() };
});

describe('sqlite store specifics', () => {
  it('keeps data and revision across close and reopen', async () => {
    const path = freshPath();
    const first = openSqliteStore(path);
    const r1 = await first.set('boot/config', '{"zone":"alice.example.com"}');
    const tx = await first.execTx([], [
      { op: 'create', key: 'devices/ood1/doc', value: 'doc' },
      { op: 'put', key: 'nodes/ood1/config', value: '{}' },
    ]);
    await first.delete('nodes/ood1/config');
    const last = await first.currentRevision();
    await first.close();

    const reopened = openSqliteStore(path);
    try {
      assert.equal(await reopened.currentRevision(), last);
      assert.deepEqual(await reopened.get('boot/config'), {
        key: 'boot/config',
        value: '{"zone":"alice.example.com"}',
        revision: r1,
        createRevision: r1,
      });
      assert.equal((await reopened.get('devices/ood1/doc'))?.revision, tx.revision);
      assert.equal(await reopened.get('nodes/ood1/config'), null);
      assert.equal((await reopened.changesSince('', 0, 100)).length, 4);
      assert.equal(await reopened.set('boot/config', 'next'), last + 1);
    } finally {
      await reopened.close();
    }
  });

  it('keeps the file in WAL mode', async () => {
    const path = freshPath();
    const store = openSqliteStore(path);
    await store.set('k', 'v');
    const probe = new Database(path, { readonly: true });
    try {
      assert.equal(probe.pragma('journal_mode', { simple: true }), 'wal');
    } finally {
      probe.close();
      await store.close();
    }
  });

  it('compacts history to the last historyLimit revisions and reports older reads as COMPACTED', async () => {
    const store = openSqliteStore(freshPath(), { historyLimit: 5 });
    try {
      for (let i = 1; i <= 20; i++) await store.set(`h/${i % 3}`, String(i));
      const current = await store.currentRevision();
      assert.equal(current, 20);
      await assert.rejects(store.changesSince('', 0, 100), (err: unknown) => {
        assert.ok(err instanceof StoreError);
        assert.equal(err.code, 'COMPACTED');
        return true;
      });
      await assert.rejects(store.changesSince('h/', current - 6, 100), { code: 'COMPACTED' });
      const retained = await store.changesSince('', current - 5, 100);
      assert.deepEqual(
        retained.map((e) => e.revision),
        [16, 17, 18, 19, 20],
      );
      // Compaction drops history, never current data.
      assert.equal((await store.list('h/')).entries.length, 3);
    } finally {
      await store.close();
    }
  });

  it('rejects a historyLimit that is not a positive integer', () => {
    assert.throws(() => openSqliteStore(freshPath(), { historyLimit: 0 }), RangeError);
  });

  it('wakes a pending waitForChange when the store closes', async () => {
    const store = openSqliteStore(freshPath());
    const rev = await store.set('k', 'v');
    const waiting = store.waitForChange(rev, 10_000);
    await store.close();
    await waiting;
  });
});
