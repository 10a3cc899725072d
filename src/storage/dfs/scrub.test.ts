// Scrub's repair on a node's real file layer (files.suite.ts): one disk, the volume's only copy of each chunk.
import { describe, it, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import pino from 'pino';
import { type ChunkStore, DiskError } from './chunk-store.ts';
import { type TestFiles, openTestFiles } from './files.suite.ts';
import { Scrubber } from './scrub.ts';

const sha = (b: Uint8Array): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;

/**
 * Makes the store's next read fail once with an I/O error, as a disk with a passing fault does, and (when `writes` is
 * false) every write fail too. A fault at the device boundary cannot be had on demand from a real disk here, so the
 * store's own methods are wrapped: everything else is the real store.
 */
function flaky(store: ChunkStore, writes: boolean): () => void {
  const get = store.get.bind(store);
  const put = store.put.bind(store);
  let failedOnce = false;
  store.get = async (...args) => {
    if (!failedOnce) {
      failedOnce = true;
      throw new DiskError('d1', 'read', 'EIO', new Error('EIO: i/o error, read'));
    }
    return get(...args);
  };
  if (!writes) store.put = async () => { throw new DiskError('d1', 'write', 'EIO', new Error('EIO: i/o error, write')); };
  return () => {
    store.get = get;
    store.put = put;
  };
}

async function scrubOnce(t: TestFiles): Promise<ReturnType<Scrubber['state']>> {
  const s = new Scrubber(t.disks, t.io, t.volumes, t.zone, pino({ level: 'silent' }), { bytesPerSecond: 1e12, intervalMs: 1e9, replicateEveryMs: 1e9 });
  assert.ok(s.start());
  while (s.state().running) await new Promise((r) => setTimeout(r, 10));
  s.stop();
  return s.state();
}

describe('scrub repair', () => {
  let t: TestFiles | undefined;
  afterEach(async () => {
    await t?.close();
    t = undefined;
  });

  /** One scrub over the only copy of a chunk, on a disk whose first read fails (and whose writes do unless `writes`). */
  async function scrubOneFlakyCopy(writes: boolean) {
    t = await openTestFiles('');
    const store = t.disks.open()[0]!.store;
    const data = randomBytes(100_000);
    await store.put(sha(data), data);
    const restore = flaky(store, writes);
    const state = await scrubOnce(t);
    restore();
    return { store, data, state };
  }

  it('never deletes a copy it could not read before the rewrite holds: a disk that then refuses the write keeps it', async () => {
    const { store, data, state } = await scrubOneFlakyCopy(false);
    assert.deepEqual([state.checked, state.missing, state.repaired], [1, 1, 0], 'the repair failed');
    assert.equal(store.has(sha(data)), true);
    assert.deepEqual(await store.get(sha(data)), data, 'the only copy is still there');
  });

  it('rewrites a copy a passing I/O error kept it from reading, from bytes it checked', async () => {
    const { store, data, state } = await scrubOneFlakyCopy(true);
    assert.deepEqual([state.checked, state.missing, state.repaired], [1, 1, 1]);
    assert.deepEqual(await store.get(sha(data)), data);
  });
});
