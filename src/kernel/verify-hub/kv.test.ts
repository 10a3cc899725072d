import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { configKey, configPrefix } from '../../lib/api/system-config.ts';
import { type KvStore, MemoryKv, listAll } from './kv.ts';

/** MemoryKv that refuses prefixes system-config would refuse, and counts listings. */
function strictKv(mem: MemoryKv): KvStore & { lists: number } {
  const kv = {
    lists: 0,
    get: (p: Parameters<KvStore['get']>[0]) => mem.get(p),
    set: (p: Parameters<KvStore['set']>[0]) => mem.set(p),
    delete: (p: Parameters<KvStore['delete']>[0]) => mem.delete(p),
    exec_tx: (p: Parameters<KvStore['exec_tx']>[0]) => mem.exec_tx(p),
    list: (p: Parameters<KvStore['list']>[0]) => {
      kv.lists++;
      const r = configPrefix.safeParse(p.prefix);
      assert.ok(r.success, `system-config would refuse the prefix ${JSON.stringify(p.prefix)}`);
      return mem.list(p);
    },
  };
  return kv;
}

describe('listAll', () => {
  it('answers every key under a prefix, in order, with pages far smaller than the keys', async () => {
    const mem = new MemoryKv();
    const keys = [
      'a', 'a/b', 'a/.b', 'a/..c', 'a/...', 'a/-', 'a/@x', 'a/:y', 'a/Z', 'a/_', 'a/z.z', 'a/b/c', 'a/b-c', 'a/bb', 'ab', 'b/a',
      ...Array.from({ length: 40 }, (_, i) => `a/s/${String(i).padStart(2, '0')}`),
      ...Array.from({ length: 30 }, (_, i) => `a/t${i}`),
    ];
    for (const key of keys) {
      assert.ok(configKey.safeParse(key).success, key);
      await mem.set({ key, value: `v:${key}` });
    }
    const kv = strictKv(mem);
    for (const prefix of ['', 'a', 'a/', 'a/s/', 'a/t']) {
      const want = keys.filter((k) => k.startsWith(prefix)).sort();
      const got = await listAll(kv, prefix, { pageSize: 3 });
      assert.deepEqual(got.map((e) => e.key), want, prefix);
      assert.ok(got.every((e) => e.value === `v:${e.key}`));
      assert.deepEqual((await listAll(kv, prefix, { pageSize: 3, keysOnly: true })).map((e) => [e.key, e.value]), want.map((k) => [k, '']));
    }
  });

  it('costs one listing while a page holds everything', async () => {
    const mem = new MemoryKv();
    for (let i = 0; i < 5; i++) await mem.set({ key: `p/${i}`, value: '1' });
    const kv = strictKv(mem);
    assert.equal((await listAll(kv, 'p/', { pageSize: 6 })).length, 5);
    assert.equal(kv.lists, 1);
  });
});
