import { describe, it, beforeEach, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import pino from 'pino';
import { ChunkStore } from './chunk-store.ts';
import { Collector, withDiskMarks, type LivePager, type MarkStore, fileMarks, localLivePage } from './gc.ts';
import { type ChunkRef, VolumeMeta } from './volume-meta.ts';

const HOUR = 3600 * 1000;
const T0 = 1_700_000_000_000;
const CHUNK = 16 * 1024;
const log = pino({ level: 'silent' });
const sha = (b: Uint8Array | string): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;

function packBytes(dir: string): number {
  return readdirSync(join(dir, 'packs')).reduce((n, f) => n + statSync(join(dir, 'packs', f)).size, 0);
}

describe('chunk collection', () => {
  let root: string;
  let t: number;
  const now = (): number => t;
  let store: ChunkStore;
  let metas: Map<string, VolumeMeta>;
  /** Chunks of writes under way, per volume, as Files.writingChunks answers them. */
  let writing: Map<string, string[]>;
  /** Volumes whose primary cannot be reached. */
  let unreachable: Set<string>;
  let collector: Collector;

  const page: LivePager = async (volume, _primary, after, limit) => {
    if (unreachable.has(volume)) throw new Error('no answer within 30000 ms');
    return localLivePage(
      { get: (name) => (metas.has(name) ? { role: 'primary' as const, meta: metas.get(name)! } : undefined) },
      { writingChunks: (name) => writing.get(name) ?? [] },
      volume,
      after,
      limit,
    );
  };

  /** A collector over this node's store (by default) and the volumes in `metas`, keeping its marks in `root` (by
   * default). */
  const newCollector = (marks: MarkStore = fileMarks(join(root, 'gc-marks.json')), disks = () => [{ id: 'd1', store }]) =>
    new Collector(
      {
        disks,
        volumes: async () => [...metas.keys()].map((name) => ({ name, primary: 'n1', created_at: T0 })),
        page,
        marks,
        log,
      },
      { graceMs: HOUR, intervalMs: HOUR, minDeadRatio: 0.5, now },
    );

  /** Loses volume `v`'s metadata file and makes an empty one in its place (a new instance). */
  function remakeMetadata(v: string): void {
    metas.get(v)!.close();
    rmSync(join(root, `${v}.db`));
    metas.set(v, VolumeMeta.open(join(root, `${v}.db`), { volume: v, role: 'primary', now }));
  }

  /** Stores `n` chunks of fresh bytes and answers their refs. */
  async function chunks(n: number): Promise<ChunkRef[]> {
    const out: ChunkRef[] = [];
    for (let i = 0; i < n; i++) {
      const data = randomBytes(CHUNK);
      const id = sha(data);
      await store.put(id, data);
      out.push({ id, size: data.length });
    }
    return out;
  }

  function write(volume: string, path: string, refs: ChunkRef[]): void {
    metas.get(volume)!.writeFile(path, { content_id: sha(`${path}:${refs.map((r) => r.id).join()}`), size: refs.reduce((s, r) => s + r.size, 0), chunks: refs }, { user: 'alice' });
  }

  beforeEach(async () => {
    root = mkdtempSync(join(tmpdir(), 'dfs-gc-'));
    t = T0;
    // Small packs, so that a file's chunks fill packs of their own that compaction can rewrite.
    store = await ChunkStore.open(join(root, 'disk'), { diskId: 'd1', packThreshold: Infinity, packMaxBytes: 128 * 1024, now });
    metas = new Map(['a', 'b'].map((v) => [v, VolumeMeta.open(join(root, `${v}.db`), { volume: v, role: 'primary', now })]));
    writing = new Map();
    unreachable = new Set();
    collector = newCollector();
    t += 1000;
  });

  afterEach(async () => {
    collector.stop();
    for (const m of metas.values()) m.close();
    await store.close();
    rmSync(root, { recursive: true, force: true });
  });

  it('deletes a purged file\'s chunks and compaction gives the space back', async () => {
    const gone = await chunks(24);
    write('a', '/big', gone);
    const kept = await chunks(2);
    write('a', '/small', kept);
    const before = packBytes(store.dir);
    const { trash_id } = metas.get('a')!.remove('/big', 'alice');
    assert.deepEqual(metas.get('a')!.purge(trash_id).released.map((r) => r.id).sort(), gone.map((r) => r.id).sort());

    t += 2 * HOUR;
    const round = await collector.collect();
    assert.equal(round.outcome, 'swept');
    assert.equal(round.disks.d1!.chunks, gone.length);
    assert.equal(round.disks.d1!.bytes, gone.length * CHUNK);
    assert.ok(round.disks.d1!.compacted_bytes > 0, 'half-dead packs were rewritten');
    for (const r of gone) assert.equal(store.has(r.id), false);
    for (const r of kept) assert.equal(await store.verify(r.id), 'ok');
    assert.ok(packBytes(store.dir) < before - (gone.length * CHUNK) / 2, `packs shrank from ${before} to ${packBytes(store.dir)}`);
    const s = collector.state();
    assert.equal(s.last_outcome, 'swept');
    assert.deepEqual(s.disks.d1, round.disks.d1);
    assert.equal(s.live_chunks, kept.length);
  });

  it('keeps the chunks of a folder purged in batches until the batch deleting them commits', async () => {
    metas.get('a')!.close();
    const a = VolumeMeta.open(join(root, 'a.db'), { volume: 'a', role: 'primary', now, purgeBatch: 2 });
    metas.set('a', a);
    a.mkdir('/d', 'alice');
    const refs: ChunkRef[] = [];
    for (let i = 0; i < 5; i++) {
      const [r] = await chunks(1);
      write('a', `/d/${i}`, [r!]);
      refs.push(r!);
    }
    a.purge(a.remove('/d', 'alice').trash_id);
    const held = () => refs.filter((r) => store.has(r.id)).map((r) => r.id).sort();
    t += 2 * HOUR;
    await collector.collect();
    assert.deepEqual(held(), refs.map((r) => r.id).sort(), 'out of the trash, not yet deleted: all kept');
    const step = a.purgeStep();
    assert.equal(step.released.length, 2);
    t += 2 * HOUR;
    await collector.collect();
    const released = new Set(step.released.map((r) => r.id));
    assert.deepEqual(held(), refs.map((r) => r.id).filter((id) => !released.has(id)).sort());
    await a.finishPurges();
    t += 2 * HOUR;
    await collector.collect();
    assert.deepEqual(held(), []);
  });

  it('goes on with the other disks when one fails, and says which failed and why', async () => {
    const broken = await ChunkStore.open(join(root, 'disk0'), { diskId: 'd0', packThreshold: Infinity, now });
    try {
      const junk = randomBytes(CHUNK);
      await broken.put(sha(junk), junk);
      // A disk refusing writes (EIO, read-only, full): the store's own method is made to fail, as no real disk here
      // can be made to on demand.
      broken.collect = async () => {
        throw new Error('EIO: i/o error, write');
      };
      const gone = await chunks(2);
      write('a', '/g', gone);
      metas.get('a')!.purge(metas.get('a')!.remove('/g', 'alice').trash_id);
      const two = newCollector(undefined, () => [{ id: 'd0', store: broken }, { id: 'd1', store }]);

      t += 2 * HOUR;
      const round = await two.collect();
      assert.equal(round.outcome, 'swept');
      assert.deepEqual(round.disks.d0, { chunks: 0, bytes: 0, compacted_bytes: 0, last_error: 'EIO: i/o error, write' });
      assert.equal(round.disks.d1!.chunks, 2, 'the healthy disk after it was still collected');
      assert.equal(round.disks.d1!.last_error, null);
      for (const r of gone) assert.equal(store.has(r.id), false);
      assert.equal(two.state().disks.d0!.last_error, 'EIO: i/o error, write');
      two.stop();
    } finally {
      await broken.close();
    }
  });

  it('keeps chunks shared with another file, another volume, a kept version or the trash', async () => {
    const [shared, only, v1, v2, trashed] = await chunks(5);
    write('a', '/f', [shared!, only!]);
    write('b', '/g', [shared!]);
    write('a', '/versioned', [v1!]);
    write('a', '/versioned', [v2!]);
    write('a', '/trashed', [trashed!]);
    metas.get('a')!.remove('/trashed', 'alice');
    metas.get('a')!.purge(metas.get('a')!.remove('/f', 'alice').trash_id);

    t += 2 * HOUR;
    const round = await collector.collect();
    assert.equal(round.disks.d1!.chunks, 1);
    assert.equal(store.has(only!.id), false);
    for (const r of [shared!, v1!, v2!, trashed!]) assert.equal(store.has(r.id), true, r.id);
  });

  it('keeps the chunks of a write under way until it is given up', async () => {
    const [pending] = await chunks(1);
    writing.set('a', [pending!.id]);
    t += 2 * HOUR;
    assert.equal((await collector.collect()).disks.d1!.chunks, 0);
    assert.equal(store.has(pending!.id), true);

    writing.delete('a');
    assert.equal((await collector.collect()).disks.d1!.chunks, 1);
    assert.equal(store.has(pending!.id), false);
  });

  it('deletes nothing when a volume\'s chunks cannot be read', async () => {
    const orphans = await chunks(3);
    unreachable.add('b');
    t += 2 * HOUR;
    const round = await collector.collect();
    assert.equal(round.outcome, 'skipped');
    assert.match(round.reason!, /volume b .*no answer/);
    assert.deepEqual(round.disks, {});
    for (const r of orphans) assert.equal(store.has(r.id), true);
    assert.equal(collector.state().last_outcome, 'skipped');

    const failing = new Collector(
      { disks: () => [{ id: 'd1', store }], volumes: async () => { throw new Error('system-config: UNAVAILABLE'); }, page, marks: fileMarks(join(root, 'm.json')), log },
      { graceMs: HOUR, intervalMs: HOUR, minDeadRatio: 0.5, now },
    );
    assert.equal((await failing.collect()).outcome, 'skipped');
    for (const r of orphans) assert.equal(store.has(r.id), true);
  });

  it('keeps a chunk stored or reused within the grace period', async () => {
    const [young] = await chunks(1);
    t += HOUR / 2;
    await collector.collect();
    assert.equal(store.has(young!.id), true, 'stored half an hour ago');

    const [old] = await chunks(1);
    t += 2 * HOUR;
    // A writer reusing a chunk nothing names makes it new again.
    assert.deepEqual(await store.put(old!.id, await store.get(old!.id)), { stored: false });
    const round = await collector.collect();
    assert.equal(round.disks.d1!.chunks, 1);
    assert.equal(store.has(young!.id), false);
    assert.equal(store.has(old!.id), true, 'reused a moment ago');
  });

  it('takes nothing from a store opened within the grace period', async () => {
    const [orphan] = await chunks(1);
    t += 2 * HOUR;
    await store.close();
    store = await ChunkStore.open(join(root, 'disk'), { diskId: 'd1', packThreshold: Infinity, packMaxBytes: 128 * 1024, now });
    assert.equal((await collector.collect()).disks.d1!.chunks, 0);
    assert.equal(store.has(orphan!.id), true);
    t += 2 * HOUR;
    assert.equal((await collector.collect()).disks.d1!.chunks, 1);
  });

  it('dates the chunks of an index from before collection to its first open since', async () => {
    const [orphan] = await chunks(1);
    await store.close();
    const db = new Database(join(root, 'disk', 'index.sqlite'));
    db.exec('ALTER TABLE chunks DROP COLUMN stored_at');
    db.close();
    t += 2 * HOUR;
    store = await ChunkStore.open(join(root, 'disk'), { diskId: 'd1', packThreshold: Infinity, packMaxBytes: 128 * 1024, now });
    assert.equal((await collector.collect()).disks.d1!.chunks, 0);
    t += 2 * HOUR;
    assert.equal((await collector.collect()).disks.d1!.chunks, 1);
    assert.equal(store.has(orphan!.id), false);
  });

  it('sweeps nothing once a volume\'s metadata was made anew, until an admin accepts it; a restart remembers', async () => {
    const files = await chunks(3);
    write('a', '/f', files);
    t += 2 * HOUR;
    assert.equal((await collector.collect()).outcome, 'swept', 'the first round marks each volume\'s metadata');

    // The primary's metadata file is lost and an empty one made in its place: its live set now names nothing.
    remakeMetadata('a');
    t += 2 * HOUR;
    collector.stop();
    collector = newCollector();
    const round = await collector.collect();
    assert.equal(round.outcome, 'skipped');
    assert.match(round.reason!, /volume a .*made anew.*buckyos fs gc --accept a/);
    for (const r of files) assert.equal(store.has(r.id), true, 'a chunk of the lost metadata\'s files is kept');
    assert.equal((await collector.collect()).outcome, 'skipped', 'and stays kept round after round');

    const accepted = await collector.collect(['a']);
    assert.equal(accepted.outcome, 'swept');
    assert.equal(accepted.disks.d1!.chunks, files.length, 'accepted: what nothing names any more goes');
    assert.equal((await collector.collect()).outcome, 'swept', 'the new metadata is the marked one now');
  });

  it('keeps its marks on the disks too: metadata made anew is caught after the node\'s own marks were lost with it', async () => {
    const diskCollector = () => newCollector(withDiskMarks(fileMarks(join(root, 'gc-marks.json')), () => [store]));
    collector.stop();
    collector = diskCollector();
    const files = await chunks(3);
    write('a', '/f', files);
    t += 2 * HOUR;
    assert.equal((await collector.collect()).outcome, 'swept');

    // The system disk is rebuilt: the volume's metadata and the node's marks file are gone; the data disk is kept.
    rmSync(join(root, 'gc-marks.json'));
    remakeMetadata('a');
    t += 2 * HOUR;
    collector.stop();
    collector = diskCollector();
    const round = await collector.collect();
    assert.equal(round.outcome, 'skipped');
    assert.match(round.reason!, /volume a .*made anew.*buckyos fs gc --accept a/);
    for (const r of files) assert.equal(store.has(r.id), true, 'the kept disk keeps what the lost files named');
    assert.equal((await collector.collect(['a'])).outcome, 'swept', 'until an admin accepts it');
  });

  it('sweeps nothing once a volume\'s metadata went back in its log (an old copy restored)', async () => {
    const [first] = await chunks(1);
    write('a', '/old', [first!]);
    metas.get('a')!.close();
    const copy = join(root, 'a-copy.db');
    const db = new Database(join(root, 'a.db'));
    await db.backup(copy);
    db.close();
    metas.set('a', VolumeMeta.open(join(root, 'a.db'), { volume: 'a', role: 'primary', now }));
    const later = await chunks(2);
    write('a', '/new', later);
    t += 2 * HOUR;
    assert.equal((await collector.collect()).outcome, 'swept');

    metas.get('a')!.close();
    rmSync(join(root, 'a.db'));
    const restored = new Database(copy);
    await restored.backup(join(root, 'a.db'));
    restored.close();
    metas.set('a', VolumeMeta.open(join(root, 'a.db'), { volume: 'a', role: 'primary', now }));
    t += 2 * HOUR;
    const round = await collector.collect();
    assert.equal(round.outcome, 'skipped');
    assert.match(round.reason!, /volume a .*went back from log entry \d+ to \d+/);
    for (const r of later) assert.equal(store.has(r.id), true, 'chunks written after the old copy are kept');
  });
});
