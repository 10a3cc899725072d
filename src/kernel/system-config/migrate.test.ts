import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startEtcdCluster, type EtcdCluster } from '../../../test/support/etcd-cluster.ts';
import { openEtcdStore } from './backends/etcd.ts';
import { openSqliteStore } from './backends/sqlite.ts';
import { copyStore, verifyCopy } from './migrate.ts';
import type { ConfigStore } from './store.ts';

const KEYS = 3000;
const UNICODE = ['héllo wörld', '你好，世界', 'مرحبا بالعالم', '🦀🚀 emoji 👩‍👩‍👧', 'e\u0301 combining', 'tab\tnew\nline "quoted" \\'];

/** A zone-shaped key set: several prefixes, unicode values and a run of values at the 256 KiB limit. */
function sampleData(): Map<string, string> {
  const data = new Map<string, string>();
  for (let i = 0; i < KEYS; i++) {
    const kind = i % 4;
    const key =
      kind === 0 ? `devices/dev-${i}/info` :
      kind === 1 ? `users/u${i}/apps/app-${i % 7}/spec` :
      kind === 2 ? `services/svc-${i % 11}/instances/node:${i}@lan` :
      `storage/volumes/v${i}/meta.json`;
    data.set(key, JSON.stringify({ i, note: UNICODE[i % UNICODE.length], at: `2025-01-${String((i % 28) + 1).padStart(2, '0')}` }));
  }
  // Neighbours in key order, together far over etcd's 1.5 MiB request limit: only batching by size lets them through.
  for (let i = 0; i < 12; i++) {
    data.set(`storage/blobs/b${String(i).padStart(2, '0')}`, i % 2 === 0 ? '大'.repeat(87_381) : 'x'.repeat(256 * 1024));
  }
  data.set('boot/config', 'eyJhbGciOiJFZERTQSJ9.e30.sig');
  data.set('empty/value', '');
  return data;
}

async function contents(store: ConfigStore): Promise<Map<string, string>> {
  return new Map((await store.dump()).entries.map((e) => [e.key, e.value]));
}

async function fill(store: ConfigStore, data: Map<string, string>): Promise<void> {
  const entries = [...data];
  for (let i = 0; i < entries.length; i += 100) {
    const res = await store.execTx([], entries.slice(i, i + 100).map(([key, value]) => ({ op: 'put' as const, key, value })));
    assert.ok(res.succeeded);
  }
}

describe('copyStore', () => {
  let cluster: EtcdCluster;
  let dir: string;
  const open: ConfigStore[] = [];
  let nextPrefix = 0;

  const sqlite = (name: string): ConfigStore => {
    const store = openSqliteStore(join(dir, `${name}.db`));
    open.push(store);
    return store;
  };
  // Each test gets its own namespace in the one cluster, so every etcd target starts empty.
  const etcd = (): ConfigStore => {
    const store = openEtcdStore({ hosts: cluster.endpoints, prefix: `/migrate-${nextPrefix++}/` });
    open.push(store);
    return store;
  };

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'buckyos-migrate-'));
    cluster = await startEtcdCluster(3);
  });

  after(async () => {
    for (const store of open) await store.close();
    await cluster?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('moves a zone from SQLite to etcd and back without losing or changing a key', async () => {
    const data = sampleData();
    const source = sqlite('source');
    await fill(source, data);
    const expectedBytes = [...data.values()].reduce((sum, v) => sum + Buffer.byteLength(v, 'utf8'), 0);

    const cluster3 = etcd();
    const progress: number[] = [];
    const up = await copyStore(source, cluster3, { onProgress: (copied, total) => { assert.equal(total, data.size); progress.push(copied); } });
    assert.equal(up.keys, data.size);
    assert.equal(up.bytes, expectedBytes);
    assert.equal(up.sourceRevision, await source.currentRevision());
    assert.equal(up.targetRevision, await cluster3.currentRevision());
    assert.deepEqual(await contents(cluster3), data);
    assert.equal(progress.at(-1), data.size);
    assert.ok(progress.every((n, i) => i === 0 || n > progress[i - 1]));
    assert.ok(progress.length > Math.ceil(data.size / 128), `${progress.length} batches: the large values need batches of their own`);

    const back = sqlite('back');
    const down = await copyStore(cluster3, back);
    assert.deepEqual({ keys: down.keys, bytes: down.bytes }, { keys: data.size, bytes: expectedBytes });
    assert.deepEqual(await contents(back), data);
    const original = (await source.dump()).entries.map((e) => [e.key, e.value]);
    assert.deepEqual((await back.dump()).entries.map((e) => [e.key, e.value]), original, 'same keys in the same order');
  });

  it('names the keys of a batch the target refused', async () => {
    const source = sqlite('oversize-source');
    await fill(source, new Map(Array.from({ length: 8 }, (_, i) => [`blob/${i}`, 'y'.repeat(256 * 1024)])));
    await assert.rejects(
      copyStore(source, etcd(), { batchBytes: 64 * 1024 * 1024 }),
      /copying keys blob\/0 \.\. blob\/7 failed after 0 of 8 keys: .*larger than max/,
    );
  });

  it('copies an empty store', async () => {
    const result = await copyStore(sqlite('empty-source'), etcd());
    assert.deepEqual({ keys: result.keys, bytes: result.bytes }, { keys: 0, bytes: 0 });
  });

  it('refuses a target that is not empty, naming a key it holds', async () => {
    const source = sqlite('refuse-source');
    await source.set('devices/a/info', '{}');
    const target = etcd();
    await target.set('boot/config', 'already here');
    await assert.rejects(copyStore(source, target), /the target store is not empty \(it holds "boot\/config"\)/);
    assert.deepEqual(await contents(target), new Map([['boot/config', 'already here']]));
  });

  it('verification names every kind of difference', async () => {
    const source = sqlite('verify-source');
    await fill(source, new Map([['a/1', 'one'], ['a/2', 'two'], ['a/3', 'three'], ['a/4', 'four']]));
    const target = etcd();
    await copyStore(source, target);
    await verifyCopy(source, target);

    await target.set('a/1', 'ONE!');
    await target.delete('a/2');
    await target.set('a/9', 'extra');
    await assert.rejects(
      verifyCopy(source, target),
      /differs from its source in 3 key\(s\): a\/1 differs \(source 3 bytes, target 4 bytes\); a\/2 is missing from the target; a\/9 is in the target but not in the source/,
    );
    for (let i = 0; i < 10; i++) await target.set(`b/${i}`, 'x');
    await assert.rejects(verifyCopy(source, target), /in 13 key\(s\): .*; and 8 more$/);
  });

  it('fails when the source is written during the copy', async () => {
    const source = sqlite('busy-source');
    await fill(source, new Map(Array.from({ length: 300 }, (_, i) => [`k/${String(i).padStart(3, '0')}`, `v${i}`])));
    let wrote = false;
    const copy = copyStore(source, sqlite('busy-target'), {
      onProgress: () => {
        if (wrote) return;
        wrote = true;
        void source.set('k/late', 'written while copying');
      },
    });
    await assert.rejects(copy, /the source store changed during the copy \(revision \d+ → \d+\): k\/late; stop writes/);
  });

  it('fails instead of overwriting when the target is written during the copy', async () => {
    const source = sqlite('race-source');
    await fill(source, new Map(Array.from({ length: 300 }, (_, i) => [`k/${String(i).padStart(3, '0')}`, `v${i}`])));
    // SQLite applies the competing write at once, so it certainly lands between two batches.
    const target = sqlite('race-target');
    let wrote = false;
    const copy = copyStore(source, target, {
      batchOps: 100,
      onProgress: () => {
        if (wrote) return;
        wrote = true;
        void target.set('k/150', 'someone else');
      },
    });
    await assert.rejects(copy, /the target store changed during the copy: k\/150 appeared there before being copied/);
    assert.equal((await target.get('k/150'))?.value, 'someone else');
  });

  it('checks its batch limits', async () => {
    await assert.rejects(copyStore(sqlite('o1'), sqlite('o2'), { batchOps: 0 }), /batchOps must be a positive integer, got 0/);
    await assert.rejects(copyStore(sqlite('o3'), sqlite('o4'), { batchBytes: 1.5 }), /batchBytes must be a positive integer, got 1.5/);
  });
});
