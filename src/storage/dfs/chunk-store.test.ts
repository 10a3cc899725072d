import { type TestContext, describe, it, beforeEach, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  appendFileSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync,
  symlinkSync, truncateSync, unlinkSync, writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { contentId } from './chunker.ts';
import {
  ChunkCorruptError, ChunkHashMismatchError, ChunkMissingError, ChunkStore, ChunkStoreClosedError, DiskError,
  DiskFullError, InvalidChunkIdError, type ChunkStoreOptions, type FsyncKind,
} from './chunk-store.ts';

const KiB = 1024;
const MiB = 1024 * 1024;

function chunk(size: number): { id: string; data: Buffer } {
  const data = randomBytes(size);
  return { id: contentId(data), data };
}

const hexOf = (id: string) => id.slice(7);
const filePath = (dir: string, id: string) => join(dir, 'chunks', hexOf(id).slice(0, 2), hexOf(id));
const packFiles = (dir: string) => readdirSync(join(dir, 'packs')).filter((n) => n.endsWith('.pack')).sort();
const lastPack = (dir: string) => join(dir, 'packs', packFiles(dir).at(-1)!);

/** Flips one byte of `data` where it sits inside `file`. */
function flipInside(file: string, data: Buffer, at = 10): void {
  const buf = readFileSync(file);
  const off = buf.indexOf(data);
  assert.ok(off >= 0, 'chunk bytes not found in file');
  buf[off + at] ^= 0xff;
  writeFileSync(file, buf);
}

async function rejectsWith(p: Promise<unknown>, type: abstract new (...a: never[]) => Error, check?: (e: Error) => void): Promise<void> {
  await assert.rejects(p, (e: Error) => {
    assert.ok(e instanceof type, `expected ${type.name}, got ${e?.constructor?.name}: ${e?.message}`);
    check?.(e);
    return true;
  });
}

describe('ChunkStore', () => {
  let root: string;
  let dir: string;
  let store: ChunkStore;
  let syncs: Record<FsyncKind, number>;
  const open = (extra: Partial<ChunkStoreOptions> = {}) =>
    ChunkStore.open(dir, { diskId: 'disk-a', onFsync: (k) => syncs[k]++, ...extra });
  const reopen = async (extra: Partial<ChunkStoreOptions> = {}) => {
    await store.close();
    store = await open(extra);
  };
  /** Changes the index while the store is closed, as a lost transaction or an older version would have left it. */
  const editIndex = async (edit: (db: Database.Database) => void) => {
    await store.close();
    const db = new Database(join(dir, 'index.sqlite'));
    try {
      edit(db);
    } finally {
      db.close();
    }
    store = await open();
  };

  /** A tmpfs of `size` mounted at `name` under the test's root (the caller unmounts it); null, the test skipped,
   * where none can be mounted. */
  function smallFs(t: TestContext, name: string, size: string): string | null {
    const mnt = join(root, name);
    mkdirSync(mnt);
    try {
      execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', mnt], { stdio: 'ignore' });
      return mnt;
    } catch {
      t.skip('cannot mount a small tmpfs here (needs root)');
      return null;
    }
  }

  beforeEach(async () => {
    root = mkdtempSync(join(tmpdir(), 'chunk-store-'));
    dir = join(root, 'disk');
    syncs = { pack: 0, file: 0, dir: 0 };
    store = await open();
  });
  afterEach(async () => {
    await store.close();
    rmSync(root, { recursive: true, force: true });
  });

  it('creates its layout', () => {
    for (const d of ['chunks', 'packs', 'tmp', 'chunks/00', 'chunks/ff']) assert.ok(statSync(join(dir, d)).isDirectory(), d);
    assert.ok(existsSync(join(dir, 'index.sqlite')));
    assert.equal(readdirSync(join(dir, 'chunks')).length, 256);
  });

  it('round-trips large chunks as files and small chunks in packs', async () => {
    const big = chunk(300 * KiB);
    const small = chunk(4 * KiB);
    const empty = { id: contentId(Buffer.alloc(0)), data: Buffer.alloc(0) };
    const edge = chunk(64 * KiB); // exactly the threshold: a file
    for (const c of [big, small, empty, edge]) assert.deepEqual(await store.put(c.id, c.data), { stored: true });
    for (const c of [big, small, empty, edge]) {
      assert.deepEqual(await store.get(c.id), c.data);
      assert.equal(store.has(c.id), true);
      assert.equal(await store.verify(c.id), 'ok');
    }
    assert.ok(statSync(filePath(dir, big.id)).isFile());
    assert.ok(statSync(filePath(dir, edge.id)).isFile());
    assert.equal(existsSync(filePath(dir, small.id)), false);
    assert.ok(readFileSync(lastPack(dir)).includes(small.data));
    const s = await store.stats();
    assert.equal(s.disk_id, 'disk-a');
    assert.equal(s.chunks, 4);
    assert.equal(s.bytes, 368 * KiB);
    assert.deepEqual(s.errors, { read: 0, write: 0, corrupt: 0, missing: 0 });
    assert.ok(s.capacity_bytes > 0 && s.free_bytes > 0 && s.free_bytes <= s.capacity_bytes);
    assert.deepEqual(readdirSync(join(dir, 'tmp')), []);

    await reopen();
    for (const c of [big, small, empty, edge]) assert.deepEqual(await store.get(c.id), c.data);
    assert.equal((await store.stats()).chunks, 4);
  });

  it('packs every chunk with packThreshold: Infinity (as the service does): one group commit, replayed after a lost index', async () => {
    await reopen({ packThreshold: Infinity });
    await store.close();
    const snap = join(root, 'index-snapshot');
    copyFileSync(join(dir, 'index.sqlite'), snap);
    store = await open({ packThreshold: Infinity });
    syncs = { pack: 0, file: 0, dir: 0 };
    const chunks = [chunk(1 * MiB), chunk(300 * KiB), chunk(64 * KiB), chunk(3 * KiB)];
    // Puts issued together share one write and one fdatasync of the pack, large chunks as much as small ones.
    await Promise.all(chunks.map((c) => store.put(c.id, c.data, { hashed: true })));
    assert.equal(syncs.pack, 1);
    // Without `hashed` a large chunk's bytes are checked (on the thread pool) before anything is written.
    const other = chunk(200 * KiB);
    await rejectsWith(store.put(other.id, chunks[1].data), ChunkHashMismatchError);
    assert.equal(store.has(other.id), false);
    assert.equal(syncs.file, 0);
    for (const c of chunks) {
      assert.equal(existsSync(filePath(dir, c.id)), false);
      assert.deepEqual(await store.get(c.id), c.data);
    }
    assert.equal((await store.stats()).bytes, 1 * MiB + 367 * KiB);
    // The index transactions lost (a power cut under synchronous=NORMAL): the packs bring every chunk back.
    await store.close();
    copyFileSync(snap, join(dir, 'index.sqlite'));
    store = await open({ packThreshold: Infinity });
    for (const c of chunks) assert.equal(await store.verify(c.id), 'ok');
    assert.equal((await store.stats()).chunks, chunks.length);
    // A large packed chunk is checked on read like any other, and a put of the good bytes repairs it.
    flipInside(lastPack(dir), chunks[1].data);
    assert.equal(await store.verify(chunks[1].id), 'corrupt');
    await store.put(chunks[1].id, chunks[1].data);
    assert.equal(await store.verify(chunks[1].id), 'ok');
  });

  it('is idempotent: a chunk already here is not written again', async () => {
    const big = chunk(200 * KiB);
    const small = chunk(100);
    await store.put(big.id, big.data);
    await store.put(small.id, small.data);
    const before = { ...syncs };
    const packSize = statSync(lastPack(dir)).size;
    assert.deepEqual(await store.put(big.id, big.data), { stored: false });
    assert.deepEqual(await store.put(small.id, small.data), { stored: false });
    assert.deepEqual(syncs, before);
    assert.equal(statSync(lastPack(dir)).size, packSize);
    // Concurrent puts of one id: one writes, the others find it there.
    const c = chunk(5000);
    const r = await Promise.all([1, 2, 3].map(() => store.put(c.id, c.data)));
    assert.deepEqual(r.map((x) => x.stored).sort(), [false, false, true]);
    assert.equal((await store.stats()).chunks, 3);
  });

  it('refuses bytes that do not match the id, and malformed ids before touching the filesystem', async () => {
    const a = chunk(1000);
    const b = chunk(100 * KiB);
    await rejectsWith(store.put(a.id, b.data), ChunkHashMismatchError, (e) => assert.match(e.message, new RegExp(b.id)));
    await rejectsWith(store.put(b.id, a.data), ChunkHashMismatchError);
    assert.equal(store.has(a.id), false);
    const bad = ['sha256:../../etc/passwd', `sha256:${'A'.repeat(64)}`, `sha1:${'a'.repeat(64)}`, `sha256:${'a'.repeat(63)}/`, '', 'x'];
    for (const id of bad) {
      await rejectsWith(store.put(id, a.data), InvalidChunkIdError);
      await rejectsWith(store.get(id), InvalidChunkIdError);
      await rejectsWith(store.delete(id), InvalidChunkIdError);
      await rejectsWith(store.verify(id), InvalidChunkIdError);
      assert.throws(() => store.has(id), InvalidChunkIdError);
    }
    assert.equal((await store.stats()).chunks, 0);
  });

  it('group commit: concurrent small puts share one write and fsync, and resolve only once durable', async () => {
    const cs = Array.from({ length: 64 }, () => chunk(4 * KiB));
    const packBefore = syncs.pack;
    await Promise.all(cs.map((c) => store.put(c.id, c.data).then(() => {
      assert.ok(syncs.pack > packBefore, 'resolved before the pack was synced');
      assert.equal(store.has(c.id), true, 'resolved before the index had it');
    })));
    const used = syncs.pack - packBefore;
    assert.ok(used >= 1 && used <= 2, `64 concurrent puts took ${used} pack fsyncs`);
    assert.equal(syncs.file, 0);
    for (const c of cs) assert.deepEqual(await store.get(c.id), c.data);
    // Large puts' commits are batched too (each still has its own file and directory fsync).
    const bigs = Array.from({ length: 8 }, () => chunk(128 * KiB));
    const before = { ...syncs };
    await Promise.all(bigs.map((c) => store.put(c.id, c.data)));
    assert.equal(syncs.file - before.file, 8);
    assert.equal(syncs.dir - before.dir, 8);
    assert.ok(syncs.pack - before.pack <= 8);
  });

  it('detects a flipped byte in a large chunk file; a put of the good bytes repairs it', async () => {
    const c = chunk(256 * KiB);
    await store.put(c.id, c.data);
    flipInside(filePath(dir, c.id), c.data, 1000);
    await rejectsWith(store.get(c.id), ChunkCorruptError, (e) => assert.match(e.message, /disk-a/));
    assert.equal(await store.verify(c.id), 'corrupt');
    assert.equal(store.has(c.id), false, 'a known-corrupt chunk is not offered');
    assert.equal((await store.stats()).errors.corrupt, 2);
    assert.deepEqual(await store.put(c.id, c.data), { stored: true });
    assert.equal(await store.verify(c.id), 'ok');
    assert.equal(store.has(c.id), true);
    assert.equal((await store.stats()).chunks, 1);
  });

  it('detects a flipped byte inside a pack; a put of the good bytes repairs it', async () => {
    const cs = Array.from({ length: 10 }, () => chunk(3000));
    await Promise.all(cs.map((c) => store.put(c.id, c.data)));
    flipInside(lastPack(dir), cs[4].data, 2999);
    await reopen(); // drops the cached pack handle, so the read sees the file as changed on disk
    await rejectsWith(store.get(cs[4].id), ChunkCorruptError);
    assert.equal(await store.verify(cs[4].id), 'corrupt');
    for (const c of cs.filter((_, i) => i !== 4)) assert.equal(await store.verify(c.id), 'ok');
    assert.equal((await store.stats()).errors.corrupt, 2);
    assert.deepEqual(await store.put(cs[4].id, cs[4].data), { stored: true });
    assert.deepEqual(await store.get(cs[4].id), cs[4].data);
    assert.equal((await store.stats()).chunks, 10);
  });

  it('a CRC-checked read catches a flipped byte too, in a pack and in a file, and after replay', async () => {
    const small = chunk(3000);
    const large = chunk(256 * KiB);
    await reopen({ packThreshold: 64 * KiB });
    await store.put(small.id, small.data);
    await store.put(large.id, large.data);
    assert.deepEqual(await store.get(small.id, 'crc'), small.data);
    assert.deepEqual(await store.get(large.id, 'crc'), large.data);
    flipInside(lastPack(dir), small.data, 7);
    flipInside(filePath(dir, large.id), large.data, 100 * KiB);
    await reopen({ packThreshold: 64 * KiB });
    await rejectsWith(store.get(small.id, 'crc'), ChunkCorruptError);
    await rejectsWith(store.get(large.id, 'crc'), ChunkCorruptError);
    assert.equal((await store.stats()).errors.corrupt, 2);

    // A record indexed by replay gets its CRC from the replay, so its reads are checked the same way (on a fresh disk:
    // replay stops at the first damaged record, as at a torn tail).
    await store.close();
    rmSync(dir, { recursive: true, force: true });
    store = await open();
    const replayed = chunk(4000);
    await store.put(replayed.id, replayed.data);
    await editIndex((db) => {
      db.prepare('DELETE FROM chunks WHERE id = ?').run(Buffer.from(hexOf(replayed.id), 'hex'));
      db.prepare('UPDATE packs SET indexed_end = 0').run();
    });
    assert.deepEqual(await store.get(replayed.id, 'crc'), replayed.data);
    flipInside(lastPack(dir), replayed.data, 5);
    await reopen();
    await rejectsWith(store.get(replayed.id, 'crc'), ChunkCorruptError);
  });

  it('hashes a CRC-checked read of a chunk indexed without a CRC (an index from before CRCs)', async () => {
    const c = chunk(3000);
    await store.put(c.id, c.data);
    await editIndex((db) => db.prepare('UPDATE chunks SET crc = NULL').run());
    assert.deepEqual(await store.get(c.id, 'crc'), c.data);
    flipInside(lastPack(dir), c.data, 1);
    await reopen();
    await rejectsWith(store.get(c.id, 'crc'), ChunkCorruptError);
  });

  it('a chunk file deleted behind its back is missing', async () => {
    const c = chunk(100 * KiB);
    await store.put(c.id, c.data);
    unlinkSync(filePath(dir, c.id));
    await rejectsWith(store.get(c.id), ChunkMissingError);
    assert.equal(await store.verify(c.id), 'missing');
    assert.equal(store.has(c.id), false);
    assert.equal((await store.stats()).errors.missing, 2);
    // Never stored at all: missing, and not a disk error.
    const other = chunk(10);
    await rejectsWith(store.get(other.id), ChunkMissingError);
    assert.equal(await store.verify(other.id), 'missing');
    assert.equal((await store.stats()).errors.missing, 2);
    await store.put(c.id, c.data);
    assert.equal(await store.verify(c.id), 'ok');
  });

  it('reports an unreadable disk as DiskError and counts read errors (failures root cannot read past)', async () => {
    const a = chunk(100 * KiB);
    const b = chunk(100 * KiB);
    const small = chunk(2000);
    for (const c of [a, b, small]) await store.put(c.id, c.data);
    // EISDIR: a directory where the chunk file should be.
    unlinkSync(filePath(dir, a.id));
    mkdirSync(filePath(dir, a.id));
    await rejectsWith(store.get(a.id), DiskError, (e) => assert.equal((e as DiskError).code, 'EISDIR'));
    await rejectsWith(store.verify(a.id), DiskError);
    // EIO: /proc/self/mem reads as EIO at unmapped addresses, a real I/O error even for root.
    unlinkSync(filePath(dir, b.id));
    symlinkSync('/proc/self/mem', filePath(dir, b.id));
    await rejectsWith(store.get(b.id), DiskError, (e) => assert.equal((e as DiskError).code, 'EIO'));
    let s = await store.stats();
    assert.equal(s.errors.read, 3);
    assert.equal(s.errors.corrupt + s.errors.missing, 0);
    assert.equal(store.has(a.id), true, 'an I/O error says nothing about the chunk itself');
    // A pack that cannot be read: the store still opens, and serves what is elsewhere.
    await store.close();
    const pack = lastPack(dir);
    unlinkSync(pack);
    symlinkSync('/proc/self/mem', pack);
    store = await open();
    await rejectsWith(store.get(small.id), DiskError, (e) => assert.equal((e as DiskError).code, 'EIO'));
    s = await store.stats();
    assert.equal(s.errors.read, 4, 'error counts persist across reopen');
    // ENOTDIR: the whole fan-out directory replaced by a file.
    const c = chunk(80 * KiB);
    await store.put(c.id, c.data);
    const sub = join(dir, 'chunks', hexOf(c.id).slice(0, 2));
    rmSync(sub, { recursive: true });
    writeFileSync(sub, 'not a directory');
    await rejectsWith(store.get(c.id), DiskError, (e) => assert.equal((e as DiskError).code, 'ENOTDIR'));
    const d = { ...chunk(70 * KiB) };
    while (hexOf(d.id).slice(0, 2) !== hexOf(c.id).slice(0, 2)) Object.assign(d, chunk(70 * KiB));
    const writesBefore = (await store.stats()).errors.write;
    await rejectsWith(store.put(d.id, d.data), DiskError, (e) => assert.equal((e as DiskError).op, 'write'));
    assert.equal((await store.stats()).errors.write, writesBefore + 1);
    assert.equal(store.has(d.id), false);
    assert.deepEqual(readdirSync(join(dir, 'tmp')), [], 'a failed put leaves no temp file');
  });

  it('deletes durably: large files unlinked, packed chunks marked dead', async () => {
    const big = chunk(100 * KiB);
    const small = chunk(1000);
    await store.put(big.id, big.data);
    await store.put(small.id, small.data);
    assert.equal(await store.delete(big.id), true);
    assert.equal(await store.delete(small.id), true);
    assert.equal(await store.delete(small.id), false);
    assert.equal(existsSync(filePath(dir, big.id)), false);
    assert.equal(store.has(big.id), false);
    await rejectsWith(store.get(small.id), ChunkMissingError);
    assert.deepEqual((await store.stats()).chunks, 0);
    await reopen();
    assert.equal(store.has(big.id), false);
    assert.equal(store.has(small.id), false);
    // And back again.
    assert.deepEqual(await store.put(big.id, big.data), { stored: true });
    assert.deepEqual(await store.get(big.id), big.data);
  });

  it('replays the packs after losing index transactions (a power cut under synchronous=NORMAL)', async () => {
    const kept = [chunk(2000), chunk(150 * KiB)];
    for (const c of kept) await store.put(c.id, c.data);
    await store.close();
    const snap = join(root, 'index-snapshot');
    copyFileSync(join(dir, 'index.sqlite'), snap);
    store = await open();
    const later = [chunk(3000), chunk(200 * KiB), chunk(10)];
    for (const c of later) await store.put(c.id, c.data);
    await store.delete(kept[0].id);
    await store.delete(kept[1].id);
    // Delete then put again: replay must end with the chunk present (the file must survive the replayed delete).
    const again = chunk(90 * KiB);
    await store.put(again.id, again.data);
    await store.delete(again.id);
    await store.put(again.id, again.data);
    await store.close();
    copyFileSync(snap, join(dir, 'index.sqlite'));
    store = await open();
    for (const c of [...later, again]) assert.equal(await store.verify(c.id), 'ok', 'an acknowledged put was lost');
    for (const c of kept) assert.equal(store.has(c.id), false, 'an acknowledged delete was lost');
    assert.equal(existsSync(filePath(dir, kept[1].id)), false);
    const s = await store.stats();
    assert.equal(s.chunks, 4);
    assert.equal(s.bytes, 3000 + 200 * KiB + 10 + 90 * KiB);
  });

  it('replays past damaged records (a changed byte in data or header): only their chunks are lost, in any pack', async () => {
    await reopen({ packMaxBytes: 8 * KiB });
    const first = chunk(3000);
    await store.put(first.id, first.data);
    await store.close();
    const snap = join(root, 'index-snapshot');
    copyFileSync(join(dir, 'index.sqlite'), snap);
    store = await open({ packMaxBytes: 8 * KiB });
    const later = Array.from({ length: 8 }, () => chunk(3000));
    for (const c of later) await store.put(c.id, c.data);
    await store.close();
    // A power cut lost the index transactions since `first`, and the medium changed a byte in two records meanwhile.
    copyFileSync(snap, join(dir, 'index.sqlite'));
    const packOf = (c: { data: Buffer }) => packFiles(dir).map((n) => join(dir, 'packs', n)).find((f) => readFileSync(f).includes(c.data))!;
    const [dataHit, headerHit] = [later[1]!, later[4]!];
    assert.notEqual(packOf(dataHit), lastPack(dir), 'a damaged record in an older pack');
    flipInside(packOf(dataHit), dataHit.data);
    flipInside(packOf(headerHit), headerHit.data, -30);
    const sizes = packFiles(dir).map((n) => statSync(join(dir, 'packs', n)).size);
    store = await open({ packMaxBytes: 8 * KiB });
    assert.deepEqual(packFiles(dir).map((n) => statSync(join(dir, 'packs', n)).size), sizes, 'no pack was cut');
    for (const c of [first, ...later]) {
      if (c === dataHit || c === headerHit) assert.equal(store.has(c.id), false);
      else assert.equal(await store.verify(c.id), 'ok', 'a sound record after a damaged one was lost');
    }
    assert.equal((await store.stats()).errors.corrupt, 2);
    // Not deduplicated against: a put of the lost bytes (a repair) stores them again.
    assert.deepEqual(await store.put(dataHit.id, dataHit.data), { stored: true });
  });

  it('marks bad, at open, the chunks a pack no longer holds (shorter than its index says): they are no copies', async () => {
    const first = chunk(3000);
    const second = chunk(4000);
    await store.put(first.id, first.data);
    await store.put(second.id, second.data);
    await store.close();
    // Something outside the store cut the pack (a restore of an old copy, a filesystem repair).
    const pack = lastPack(dir);
    truncateSync(pack, readFileSync(pack).indexOf(second.data) + 100);
    store = await open();
    assert.equal(store.has(first.id), true);
    assert.equal(store.has(second.id), false, 'a chunk cut off counts as no copy');
    // Not deduplicated against: a put of its bytes stores it again.
    assert.deepEqual(await store.put(second.id, second.data), { stored: true });
    assert.equal(await store.verify(second.id), 'ok');
  });

  it('truncates a torn pack tail and keeps a complete unindexed record', async () => {
    const base = chunk(5000);
    await store.put(base.id, base.data);
    await store.close();
    const goodSize = statSync(lastPack(dir)).size;
    // Genuine records, made by a scratch store: one appended whole (its index entry lost), one torn.
    const scratch = join(root, 'scratch');
    const whole = chunk(700);
    const torn = chunk(4000);
    const s2 = await ChunkStore.open(scratch, { diskId: 'scratch' });
    await s2.put(whole.id, whole.data);
    await s2.put(torn.id, torn.data);
    await s2.close();
    const recs = readFileSync(lastPack(scratch));
    const wholeLen = recs.indexOf(whole.data) + whole.data.length;
    appendFileSync(lastPack(dir), recs.subarray(0, wholeLen + 48 + 1000));
    store = await open();
    assert.equal(statSync(lastPack(dir)).size, goodSize + wholeLen);
    assert.equal(await store.verify(whole.id), 'ok');
    assert.equal(store.has(torn.id), false);
    assert.equal(await store.verify(base.id), 'ok');
    // Garbage after the last record goes too, and appending resumes at the good end.
    appendFileSync(lastPack(dir), randomBytes(777));
    await reopen();
    assert.equal(statSync(lastPack(dir)).size, goodSize + wholeLen);
    const next = chunk(1234);
    await store.put(next.id, next.data);
    await reopen();
    for (const c of [base, whole, next]) assert.equal(await store.verify(c.id), 'ok');
  });

  it('a crash (SIGKILL) mid-upload loses no acknowledged chunk and indexes nothing corrupt', async () => {
    await store.close();
    const script = join(root, 'putter.mts');
    const storeUrl = new URL('./chunk-store.ts', import.meta.url).href;
    const chunkerUrl = new URL('./chunker.ts', import.meta.url).href;
    writeFileSync(script, `
      import { writeSync } from 'node:fs';
      import { randomBytes } from 'node:crypto';
      import { ChunkStore } from ${JSON.stringify(storeUrl)};
      import { contentId } from ${JSON.stringify(chunkerUrl)};
      const store = await ChunkStore.open(process.argv[2], { diskId: 'disk-a', packMaxBytes: 256 * 1024 });
      const one = async (i) => {
        const data = randomBytes(i % 5 === 0 ? 70 * 1024 + (i % 7) * 1000 : 1 + (i * 997) % 16000);
        const id = contentId(data);
        await store.put(id, data);
        writeSync(1, id + '\\n');
        if (i % 11 === 0) { const d = randomBytes(3000); await store.put(contentId(d), d); await store.delete(contentId(d)); }
      };
      for (let i = 0; ; i += 32) await Promise.all(Array.from({ length: 32 }, (_, k) => one(i + k)));
    `);
    const acked: string[] = [];
    for (const target of [150, 400, 700]) {
      const child = spawn(process.execPath, ['--import', 'tsx', script, dir], { cwd: fileURLToPath(new URL('../../..', import.meta.url)), stdio: ['ignore', 'pipe', 'inherit'] });
      let buf = '';
      let seen = 0;
      await new Promise<void>((resolve, reject) => {
        child.on('error', reject);
        child.on('exit', () => resolve());
        child.stdout!.on('data', (d: Buffer) => {
          buf += d.toString();
          const lines = buf.split('\n');
          buf = lines.pop()!;
          acked.push(...lines);
          seen += lines.length;
          if (seen >= target) child.kill('SIGKILL');
        });
      });
      assert.equal(child.signalCode, 'SIGKILL', 'the child died by itself');
      store = await open();
      assert.deepEqual(readdirSync(join(dir, 'tmp')), []);
      for (const id of acked) assert.equal(await store.verify(id), 'ok', `acknowledged chunk ${id} lost`);
      let indexed = 0;
      for await (const id of store.list()) {
        assert.equal(await store.verify(id), 'ok', `indexed chunk ${id} does not verify`);
        indexed++;
      }
      assert.ok(indexed >= new Set(acked).size);
      const r = await store.reconcile();
      assert.equal(r.removed, 0, 'a chunk file that does not match its name');
      await store.close();
    }
    store = await open();
    assert.ok(packFiles(dir).length > 1, 'the crashes should span several packs');
  });

  it('accounts capacity: capacityBytes is enforced and reported', async () => {
    await reopen({ capacityBytes: 100 * KiB });
    const a = chunk(60 * KiB);
    await store.put(a.id, a.data);
    let s = await store.stats();
    assert.equal(s.capacity_bytes, 100 * KiB);
    assert.equal(s.free_bytes, 40 * KiB);
    const b = chunk(50 * KiB);
    await rejectsWith(store.put(b.id, b.data), DiskFullError);
    const c = chunk(40 * KiB);
    await store.put(c.id, c.data);
    s = await store.stats();
    assert.equal(s.free_bytes, 0);
    assert.equal(s.errors.write, 0, 'a full disk is not a faulty disk');
    assert.deepEqual(await store.put(a.id, a.data), { stored: false }, 'a duplicate costs nothing');
    await store.delete(a.id);
    await store.put(b.id, b.data);
    // Puts under way count together: of two that fit alone but not both (50 KiB free), one is refused.
    await reopen({ capacityBytes: 140 * KiB });
    const [x, y] = [chunk(30 * KiB), chunk(30 * KiB)];
    const both = await Promise.allSettled([store.put(x.id, x.data), store.put(y.id, y.data)]);
    assert.deepEqual(both.map((r) => r.status).sort(), ['fulfilled', 'rejected']);
  });

  it('a full filesystem refuses puts with DiskFullError, counts no fault, and recovers once space is freed', async (t) => {
    const mnt = smallFs(t, 'small-fs', '3m');
    if (mnt === null) return;
    let full: ChunkStore | undefined;
    try {
      full = await ChunkStore.open(join(mnt, 'disk'), { diskId: 'small' });
      const stored: { id: string; data: Buffer }[] = [];
      let refused: unknown;
      for (let i = 0; i < 10 && !refused; i++) {
        const c = chunk(512 * KiB);
        await full.put(c.id, c.data).then(() => stored.push(c), (e) => (refused = e));
      }
      assert.ok(refused instanceof DiskFullError, String(refused));
      refused = undefined;
      for (let i = 0; i < 200 && !refused; i++) {
        const c = chunk(60 * KiB);
        await full.put(c.id, c.data).then(() => stored.push(c), (e) => (refused = e));
      }
      assert.ok(refused instanceof DiskFullError, String(refused));
      const packs = readdirSync(join(mnt, 'disk', 'packs')).length;
      for (let i = 0; i < 5; i++) {
        const c = chunk(60 * KiB);
        await rejectsWith(full.put(c.id, c.data), DiskFullError);
      }
      assert.equal(readdirSync(join(mnt, 'disk', 'packs')).length, packs, 'refused batches left packs behind');
      assert.deepEqual((await full.stats()).errors, { read: 0, write: 0, corrupt: 0, missing: 0 });
      assert.deepEqual(readdirSync(join(mnt, 'disk', 'tmp')), []);
      await full.delete(stored[0].id);
      const c = chunk(60 * KiB);
      assert.deepEqual(await full.put(c.id, c.data), { stored: true });
      await full.close();
      full = await ChunkStore.open(join(mnt, 'disk'), { diskId: 'small' });
      for (const x of [...stored.slice(1), c]) assert.equal(await full.verify(x.id), 'ok');
    } finally {
      await full?.close();
      execFileSync('umount', [mnt]);
    }
  });

  it('keeps room on a full filesystem to delete and compact, so that a full disk can always be freed', async (t) => {
    const mnt = smallFs(t, 'full-fs', '8m');
    if (mnt === null) return;
    let full: ChunkStore | undefined;
    try {
      // Every chunk packed, as the service stores them: a delete is a record in a pack and a row in the index.
      // The default reserve is sized for real disks (up to a pack and 56 MiB); this filesystem is 8 MiB.
      const opts = { diskId: 'full', packThreshold: Infinity, packMaxBytes: 512 * KiB, reserveBytes: 2 * MiB };
      full = await ChunkStore.open(join(mnt, 'disk'), opts);
      const stored: { id: string; data: Buffer }[] = [];
      let refused: unknown;
      while (!refused) {
        const c = chunk(60 * KiB);
        await full.put(c.id, c.data).then(() => stored.push(c), (e) => (refused = e));
      }
      assert.ok(refused instanceof DiskFullError, String(refused));
      assert.match(refused.message, /kept free for deletes and compaction/);
      assert.deepEqual(await Promise.all(stored.map((c) => full!.delete(c.id))), stored.map(() => true));
      const { bytes_reclaimed } = await full.compact({ minDeadRatio: 0.5 });
      assert.ok(bytes_reclaimed > 2 * MiB, `compaction gave back ${bytes_reclaimed} bytes`);
      const again = chunk(60 * KiB);
      assert.deepEqual(await full.put(again.id, again.data), { stored: true });
      await full.close();
      full = await ChunkStore.open(join(mnt, 'disk'), opts);
      assert.equal(await full.verify(again.id), 'ok');
      for (const c of stored) assert.equal(full.has(c.id), false);
    } finally {
      await full?.close();
      execFileSync('umount', [mnt]);
    }
  });

  it('belongs to one disk and one process at a time', async () => {
    await assert.rejects(ChunkStore.open(dir, { diskId: 'disk-a' }), /in use by another process/);
    await store.close();
    await rejectsWith(store.get(contentId('x')), ChunkStoreClosedError);
    await assert.rejects(ChunkStore.open(dir, { diskId: 'disk-b' }), /holds disk disk-a/);
    store = await open();
  });

  it('lists every chunk id, across index pages', async () => {
    const cs = Array.from({ length: 1500 }, (_, i) => chunk(i % 100 === 0 ? 65 * KiB : 64));
    await Promise.all(cs.map((c) => store.put(c.id, c.data)));
    const ids: string[] = [];
    for await (const id of store.list()) ids.push(id);
    assert.deepEqual(ids, cs.map((c) => c.id).sort());
  });

  it('compacts packs with mostly dead records, keeping the live ones readable', async () => {
    await reopen({ packMaxBytes: 64 * KiB });
    const cs = Array.from({ length: 120 }, () => chunk(2 * KiB));
    for (let i = 0; i < cs.length; i += 10) await Promise.all(cs.slice(i, i + 10).map((c) => store.put(c.id, c.data)));
    const packsBefore = packFiles(dir).length;
    assert.ok(packsBefore >= 3);
    for (const [i, c] of cs.entries()) if (i % 4 !== 0) await store.delete(c.id);
    const r = await store.compact();
    assert.ok(r.packs >= 2 && r.bytes_reclaimed > 0, JSON.stringify(r));
    assert.ok(packFiles(dir).length < packsBefore + 2);
    await reopen({ packMaxBytes: 64 * KiB });
    for (const [i, c] of cs.entries()) {
      if (i % 4 === 0) assert.deepEqual(await store.get(c.id), c.data);
      else assert.equal(store.has(c.id), false);
    }
    assert.equal((await store.stats()).chunks, 30);
    assert.deepEqual(await store.compact(), { packs: 0, bytes_reclaimed: 0 });
  });

  it('compaction keeps a pack holding a corrupt chunk', async () => {
    await reopen({ packMaxBytes: 16 * KiB });
    const cs = Array.from({ length: 12 }, () => chunk(3 * KiB));
    for (const c of cs) await store.put(c.id, c.data);
    const first = join(dir, 'packs', packFiles(dir)[0]);
    for (const c of cs.slice(1)) await store.delete(c.id);
    flipInside(first, cs[0].data);
    await reopen({ packMaxBytes: 16 * KiB });
    const r = await store.compact();
    assert.ok(existsSync(first), 'the only copy of a (damaged) chunk was thrown away');
    assert.ok(r.packs >= 1);
    assert.equal(await store.verify(cs[0].id), 'corrupt');
  });

  it('reconcile adopts complete orphan chunk files and removes the rest', async () => {
    const orphan = chunk(100 * KiB);
    writeFileSync(filePath(dir, orphan.id), orphan.data);
    const junk = chunk(100 * KiB);
    writeFileSync(filePath(dir, junk.id), randomBytes(10));
    writeFileSync(join(dir, 'chunks', '00', 'stray.tmp'), 'x');
    const known = chunk(100 * KiB);
    await store.put(known.id, known.data);
    assert.deepEqual(await store.reconcile(), { adopted: 1, removed: 2 });
    assert.equal(await store.verify(orphan.id), 'ok');
    assert.equal(await store.verify(known.id), 'ok');
    assert.equal(existsSync(filePath(dir, junk.id)), false);
    await reopen();
    assert.equal(await store.verify(orphan.id), 'ok');
    assert.equal((await store.stats()).chunks, 2);
  });

  it('throughput (reported, not asserted)', async () => {
    const big = Array.from({ length: 128 }, () => chunk(MiB));
    let t = performance.now();
    for (let i = 0; i < big.length; i += 8) await Promise.all(big.slice(i, i + 8).map((c) => store.put(c.id, c.data)));
    const put = 128 / ((performance.now() - t) / 1000);
    t = performance.now();
    for (let i = 0; i < big.length; i += 8) await Promise.all(big.slice(i, i + 8).map((c) => store.get(c.id)));
    const get = 128 / ((performance.now() - t) / 1000);
    const small = Array.from({ length: 10_000 }, () => chunk(4 * KiB));
    const before = syncs.pack;
    t = performance.now();
    let next = 0;
    await Promise.all(Array.from({ length: 64 }, async () => {
      while (next < small.length) {
        const c = small[next++];
        await store.put(c.id, c.data);
      }
    }));
    const rate = small.length / ((performance.now() - t) / 1000);
    console.log(`chunk store: 1 MiB chunks put ${put.toFixed(0)} MiB/s, get ${get.toFixed(0)} MiB/s (8 in flight); ` +
      `4 KiB chunks ${rate.toFixed(0)} puts/s with 64 in flight, ${(small.length / (syncs.pack - before)).toFixed(1)} puts per fsync`);
  });
});
