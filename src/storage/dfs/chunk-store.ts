// One disk's chunk store (docs/dcfs.md, "Chunk store"): content-addressed chunks in a directory on one disk.
//
// Layout under the disk's directory:
//   index.sqlite     which chunks are here and where (SQLite, WAL), the disk's id and error counts
//   chunks/xx/<hex>  a chunk of packThreshold bytes or more, one file each, xx = the first two hex digits of its id
//   packs/<n>.pack   append-only logs of records: small chunks' bytes, and markers for large puts and deletes
//   tmp/             large chunks being written; emptied on open
//
// The pack logs are also the store's journal. Every put and delete is acknowledged only once its record is in a pack
// and that pack is fdatasync'ed; the index is then updated in a transaction that is not synced by itself
// (synchronous=NORMAL), so acknowledging costs one fsync shared by every put in the batch (group commit) and never
// blocks the event loop on a synchronous fsync. The index records, per pack, the offset up to which it reflects the
// pack; opening the store replays the records after that offset, so a power cut that loses index transactions loses
// no acknowledged put, and truncates a torn tail.
import Database from 'better-sqlite3';
import { createHash } from 'node:crypto';
import { constants as fsc, existsSync, mkdirSync, readdirSync } from 'node:fs';
import { open, readdir, readFile, rename, rm, stat, statfs, unlink, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import { isChunkId } from './chunker.ts';
import { crc32Async, readSummed, sha256Async } from './hashing.ts';

export interface ChunkStoreOptions {
  /** The disk's id (system-config `storage/disks/<node>/<disk>`). A directory keeps the id it was first opened with. */
  diskId: string;
  /**
   * Chunks smaller than this are packed; others get a file each. Default 64 KiB; `Infinity` packs every chunk, which
   * is what the dfs service does (a file each costs an fsync of it and of its directory per chunk).
   */
  packThreshold?: number;
  /** Bytes this store may hold (the sum of its chunks' sizes). Default: no limit beyond the filesystem's. */
  capacityBytes?: number;
  /** A pack stops taking records at this size. Default 64 MiB: the unit `compact` rewrites. */
  packMaxBytes?: number;
  /**
   * Free space on the filesystem that new chunks leave alone: deletes, compaction and the index still need room when
   * the disk is otherwise full, or a full disk could never be freed. Default: the smaller of 5% of the filesystem and
   * a pack plus 56 MiB (compacting one pack, and the index's growth). Repairs of chunks the index holds are not held
   * to it.
   */
  reserveBytes?: number;
  /** Called after every fsync, for metrics and tests. */
  onFsync?: (kind: FsyncKind) => void;
  /** The clock that dates stores (ms), for tests of collection's grace period. Default Date.now. */
  now?: () => number;
  /**
   * Whether a store may be made where none is. Default true. A disk whose store was made before opens with false: an
   * unmounted disk leaves an empty directory (or the mount point's) where its store was, and a new store there would
   * take acknowledged copies onto the wrong disk, to vanish behind the mount when the disk comes back.
   */
  create?: boolean;
}

/** `pack`: a group commit; `file`: a large chunk's bytes; `dir`: a directory entry (a large chunk's, a new pack's). */
export type FsyncKind = 'pack' | 'file' | 'dir';

export interface PutOptions {
  /**
   * The caller computed `id` from these very bytes in this process (the chunker did, or a read that checked them), so
   * hashing them again would only repeat that. Bytes from elsewhere (another node) are never put with this.
   */
  hashed?: boolean;
  /** The CRC-32 of the bytes, when the caller took it already (with their id, FileSums). */
  crc?: number;
  /**
   * Write the bytes even though the index holds the chunk as sound: a repair of a copy a read could not get (an I/O
   * error does not mark it damaged). The old copy stays in force until the new one is durable.
   */
  replace?: boolean;
}

export interface PutResult {
  /** False when the chunk was here already (and not known to be damaged): nothing was written. */
  stored: boolean;
}

export type VerifyResult = 'ok' | 'corrupt' | 'missing';

/**
 * How a read checks a chunk's bytes. `hash`: SHA-256 against the id, which proves the bytes are the content the id
 * names. `crc`: the CRC-32 the store took of the bytes when it stored them (proven against the id then), which catches
 * a disk's corruption since at a quarter of the cost, the way checksumming file systems check every read; a chunk
 * stored without one is hashed. Scrub, NDN and copies between nodes hash; a file's local reads take the CRC.
 */
export type ReadCheck = 'hash' | 'crc';

export interface ChunkStoreStats {
  disk_id: string;
  chunks: number;
  /** The sum of the stored chunks' sizes. */
  bytes: number;
  capacity_bytes: number;
  free_bytes: number;
  /**
   * Since the store was created. read/write: I/O failures; corrupt: a chunk read back with the wrong hash; missing: a
   * chunk in the index whose file is gone.
   */
  errors: { read: number; write: number; corrupt: number; missing: number };
}

export interface CompactResult {
  packs: number;
  bytes_reclaimed: number;
}

export class InvalidChunkIdError extends TypeError {
  constructor(readonly chunkId: unknown) {
    super(`not a chunk id (sha256:<64 lower-case hex>): ${String(chunkId).slice(0, 80)}`);
    this.name = 'InvalidChunkIdError';
  }
}

/** put() was given bytes that do not hash to the id. */
export class ChunkHashMismatchError extends Error {
  constructor(readonly chunkId: string, readonly actualId: string) {
    super(`chunk bytes hash to ${actualId}, not ${chunkId}`);
    this.name = 'ChunkHashMismatchError';
  }
}

export class ChunkMissingError extends Error {
  constructor(readonly chunkId: string, readonly diskId: string) {
    super(`chunk ${chunkId} is not on disk ${diskId}`);
    this.name = 'ChunkMissingError';
  }
}

export class ChunkCorruptError extends Error {
  constructor(readonly chunkId: string, readonly diskId: string) {
    super(`chunk ${chunkId} on disk ${diskId} is corrupt (its bytes no longer hash to its id)`);
    this.name = 'ChunkCorruptError';
  }
}

/** An I/O failure of the disk; `code` is the errno name (EIO, EISDIR, ENOTDIR, ...). */
export class DiskError extends Error {
  constructor(readonly diskId: string, readonly op: 'read' | 'write', readonly code: string, cause: unknown) {
    super(`disk ${diskId}: ${op} failed: ${cause instanceof Error ? cause.message : String(cause)}`, { cause });
    this.name = 'DiskError';
  }
}

/** Out of space: the filesystem's (ENOSPC, EDQUOT, SQLITE_FULL) or the store's capacityBytes. Not a disk error. */
export class DiskFullError extends DiskError {
  constructor(diskId: string, cause: unknown) {
    super(diskId, 'write', 'ENOSPC', cause);
    this.name = 'DiskFullError';
  }
}

export class ChunkStoreClosedError extends Error {
  constructor(diskId: string) {
    super(`chunk store of disk ${diskId} is closed`);
    this.name = 'ChunkStoreClosedError';
  }
}

const DEFAULT_PACK_THRESHOLD = 64 * 1024;
const DEFAULT_PACK_MAX = 64 * 1024 * 1024;
const FORMAT = '1';
/** A batch is cut at this many records or bytes so that one commit never holds an unbounded buffer. */
const BATCH_MAX_OPS = 4096;
const BATCH_MAX_BYTES = 32 * 1024 * 1024;
/** Read handles kept open on packs. */
const PACK_HANDLES = 64;
const LIST_PAGE = 1000;
/** Kept free beside a pack's worth for compaction (reserveBytes): the index's WAL may grow to its checkpoint size
 * (wal_autocheckpoint, 10,000 pages of 4 KiB) and its tables by the deletes' rows. */
const RESERVE_BEYOND_PACK = 56 * 1024 * 1024;
const COMPACT_SLICE = 256;

// A record: magic u32 | type u8 | 3 zero bytes | length u32 | id 32 bytes | check u32 | data (type DATA only).
// `check` is the first 4 bytes of SHA-256 over the 44 bytes before it, so replay can tell a record from a torn or
// stale tail even for records without data; a DATA record's bytes are checked against its id.
const HEADER = 48;
const MAGIC = 0x31524344; // "DCR1" little-endian
const DATA = 1; // a small chunk's bytes follow
const LARGE = 2; // a large chunk's file is complete and in place; length = its size
const DELETE = 3;
type OpType = typeof DATA | typeof LARGE | typeof DELETE;

interface Op {
  type: OpType;
  key: Buffer;
  size: number;
  data?: Buffer;
  /** CRC-32 of the chunk's bytes, when they were at hand and proven against the key. */
  crc?: number;
  resolve: () => void;
  reject: (e: unknown) => void;
}

/** An op as the index transaction sees it: from a live batch or from replay. */
interface AppliedOp {
  type: OpType;
  key: Buffer;
  size: number;
  /** DATA: where the chunk's bytes start in the pack. */
  dataOff: number;
  crc: number | null;
}

interface Row {
  size: number;
  pack: number | null;
  off: number | null;
  bad: number;
  crc: number | null;
}

interface PackHandle {
  fh: FileHandle;
  refs: number;
  retired: boolean;
}

interface ActivePack {
  id: number;
  fh: FileHandle;
  end: number;
}

type ErrorKind = 'read' | 'write' | 'corrupt' | 'missing';

function errnoCode(e: unknown): string {
  return typeof (e as NodeJS.ErrnoException)?.code === 'string' ? (e as NodeJS.ErrnoException).code! : 'EUNKNOWN';
}

function sha256(data: Uint8Array): Buffer {
  return createHash('sha256').update(data).digest();
}

function encodeHeader(buf: Buffer, at: number, type: OpType, length: number, key: Buffer): void {
  buf.writeUInt32LE(MAGIC, at);
  buf.writeUInt32LE(type, at + 4); // type in the low byte, then the three zero bytes
  buf.writeUInt32LE(length, at + 8);
  key.copy(buf, at + 12);
  sha256(buf.subarray(at, at + 44)).copy(buf, at + 44, 0, 4);
}

/** Parses the valid records of a pack tail; stops at the first that is torn, stale or damaged. */
const MAGIC_BYTES = Buffer.alloc(4);
MAGIC_BYTES.writeUInt32LE(MAGIC);

/**
 * The records in `buf` (pack bytes from offset `base`). A damaged record (bytes changed on the medium) is passed over,
 * as is everything up to the next record whose header checks out, so that one bad sector costs the chunks it held and
 * not every record after it; `skipped` counts them. `validEnd` is where the last sound record ends: past it lies at
 * most the torn tail a crash left in the newest pack.
 */
function parseRecords(buf: Buffer, base: number): { ops: AppliedOp[]; validEnd: number; skipped: number } {
  const ops: AppliedOp[] = [];
  const headerAt = (at: number) =>
    at + HEADER <= buf.length && buf.readUInt32LE(at) === MAGIC && sha256(buf.subarray(at, at + 44)).subarray(0, 4).equals(buf.subarray(at + 44, at + 48));
  /** The next offset after `from` where a sound header starts, or -1. */
  const resync = (from: number) => {
    for (let at = buf.indexOf(MAGIC_BYTES, from); at >= 0; at = buf.indexOf(MAGIC_BYTES, at + 1)) if (headerAt(at)) return at;
    return -1;
  };
  let pos = 0;
  let validEnd = 0;
  let skipped = 0;
  let resynced = false;
  while (pos + HEADER <= buf.length) {
    const type = headerAt(pos) ? buf.readUInt32LE(pos + 4) : -1;
    if (type !== DATA && type !== LARGE && type !== DELETE) {
      const next = resync(pos + 1);
      if (next < 0) break;
      skipped++;
      resynced = true;
      pos = next;
      continue;
    }
    // Past a resync the scan may have landed inside a chunk's bytes (a chunk holding pack bytes, a disk image): a
    // DATA record there proves itself (its bytes hash to its id), a LARGE or DELETE record does not, and applying a
    // stray DELETE would drop a live chunk from the index. Passed over, the worst is a deleted chunk kept until
    // collection takes it again.
    if (resynced && type !== DATA) {
      pos += HEADER;
      validEnd = pos;
      continue;
    }
    const length = buf.readUInt32LE(pos + 8);
    const key = Buffer.from(buf.subarray(pos + 12, pos + 44));
    if (type === DATA) {
      // The header's own checksum vouches for the length, so a record whose data is damaged is stepped over whole.
      const end = pos + HEADER + length;
      if (end > buf.length) break;
      if (sha256(buf.subarray(pos + HEADER, end)).equals(key)) {
        ops.push({ type, key, size: length, dataOff: base + pos + HEADER, crc: crc32(buf.subarray(pos + HEADER, end)) });
        validEnd = end;
      } else skipped++;
      pos = end;
    } else {
      ops.push({ type, key, size: length, dataOff: 0, crc: null });
      pos += HEADER;
      validEnd = pos;
    }
  }
  return { ops, validEnd: base + validEnd, skipped };
}

async function writeAll(fh: FileHandle, buf: Buffer, position: number): Promise<void> {
  let done = 0;
  while (done < buf.length) {
    const { bytesWritten } = await fh.write(buf, done, buf.length - done, position + done);
    done += bytesWritten;
  }
}

/** Writes the buffers one after another from `position`; a short gathered write goes on with what is left. */
async function writevAll(fh: FileHandle, parts: Buffer[], position: number): Promise<void> {
  let i = 0;
  let at = position;
  while (i < parts.length) {
    const batch = parts.slice(i, i + 1024);
    let { bytesWritten } = await fh.writev(batch, at);
    at += bytesWritten;
    for (const b of batch) {
      if (bytesWritten >= b.length) {
        bytesWritten -= b.length;
        i++;
        continue;
      }
      // A short write: finish this buffer plainly, then carry on gathering from the next.
      await writeAll(fh, b.subarray(bytesWritten), at);
      at += b.length - bytesWritten;
      i++;
      break;
    }
  }
}

/** Reads exactly `length` bytes, or fewer when the file ends first. */
async function readAt(fh: FileHandle, length: number, position: number): Promise<Buffer> {
  const buf = Buffer.allocUnsafe(length);
  let done = 0;
  while (done < length) {
    const { bytesRead } = await fh.read(buf, done, length - done, position + done);
    if (bytesRead === 0) break;
    done += bytesRead;
  }
  return done === length ? buf : buf.subarray(0, done);
}

/** A large chunk's file. Asking for one byte more than the index says catches a file that grew, without reading it all. */
async function readChunkFile(path: string, size: number): Promise<Buffer> {
  const fh = await open(path, 'r');
  try {
    return await readAt(fh, size + 1, 0);
  } finally {
    await fh.close();
  }
}

async function fsyncPath(path: string): Promise<void> {
  const fh = await open(path, fsc.O_RDONLY);
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

const packName = (id: number) => `${String(id).padStart(8, '0')}.pack`;
const PACK_FILE = /^(\d{8,})\.pack$/;
const HEX64 = /^[0-9a-f]{64}$/;

export class ChunkStore {
  readonly diskId: string;
  readonly dir: string;
  readonly packThreshold: number;
  private readonly capacityBytes: number | undefined;
  private readonly packMax: number;
  private readonly onFsync: (kind: FsyncKind) => void;
  private readonly db: Database.Database;
  private readonly st: ReturnType<ChunkStore['prepare']>;
  private readonly applyTx: (packId: number, ops: AppliedOp[], end: number) => { chunks: number; bytes: number };

  private chunks = 0;
  private bytes = 0;
  /** Bytes of puts under way, so concurrent puts cannot together overshoot capacityBytes. */
  private reserved = 0;
  /** The filesystem's free bytes at the last look (`at`, ms), and the bytes written since; see reserveBytes. */
  private fsFree = { bytes: 0, at: -Infinity, written: 0 };
  private reserve = 0;
  private readonly errors = { read: 0, write: 0, corrupt: 0, missing: 0 };

  private active: ActivePack | null = null;
  private nextPackId = 1;
  private readonly handles = new Map<number, PackHandle>();
  private queue: Op[] = [];
  private loop: Promise<void> | null = null;
  /** Operations on one chunk id run one at a time: put, delete and compaction's move of that id. */
  private readonly locks = new Map<string, Promise<void>>();
  private tmpSeq = 0;
  private closed = false;
  /** When the store was opened; replay, which follows, dates the chunks it applies to then or later. */
  private readonly openedAt: number;
  private readonly now: () => number;

  private constructor(dir: string, opts: ChunkStoreOptions, db: Database.Database) {
    this.dir = dir;
    this.diskId = opts.diskId;
    this.packThreshold = opts.packThreshold ?? DEFAULT_PACK_THRESHOLD;
    this.capacityBytes = opts.capacityBytes;
    this.packMax = opts.packMaxBytes ?? DEFAULT_PACK_MAX;
    this.onFsync = opts.onFsync ?? (() => {});
    this.now = opts.now ?? Date.now;
    this.openedAt = this.now();
    this.db = db;
    this.st = this.prepare();
    this.applyTx = db.transaction((packId: number, ops: AppliedOp[], end: number) => this.apply(packId, ops, end));
  }

  /**
   * Opens (creating if needed) the chunk store in `dir`: replays pack records the index has not seen, truncates torn
   * pack tails and empties tmp/. Refuses a directory that holds another disk, or one another process has open.
   */
  static async open(dir: string, opts: ChunkStoreOptions): Promise<ChunkStore> {
    if (!opts.diskId) throw new TypeError('ChunkStore.open: diskId is required');
    const threshold = opts.packThreshold ?? DEFAULT_PACK_THRESHOLD;
    if (threshold !== Infinity && (!Number.isSafeInteger(threshold) || threshold < 0)) throw new RangeError(`packThreshold: ${threshold}`);
    if (opts.reserveBytes !== undefined && !(Number.isSafeInteger(opts.reserveBytes) && opts.reserveBytes >= 0)) throw new RangeError(`reserveBytes: ${opts.reserveBytes}`);
    if (opts.create === false && !existsSync(join(dir, 'index.sqlite'))) {
      throw new DiskError(opts.diskId, 'read', 'ENOENT', new Error(`no chunk store in ${dir}, where this disk's was made: is the disk mounted?`));
    }
    const created = ChunkStore.makeLayout(dir);
    const db = new Database(join(dir, 'index.sqlite'));
    let store: ChunkStore | undefined;
    try {
      // EXCLUSIVE keeps the database locked from the first write to close: a second process opening the same disk
      // (two daemons, a stale mount) fails at once instead of interleaving appends.
      db.pragma('locking_mode = EXCLUSIVE');
      db.pragma('journal_mode = WAL');
      db.pragma('synchronous = NORMAL');
      // Fewer, larger checkpoints: each runs on the event loop inside a commit, and writes once the index pages that
      // many commits touched (see volume-meta.ts).
      db.pragma('wal_autocheckpoint = 10000');
      db.exec(`
        CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);
        CREATE TABLE IF NOT EXISTS chunks (
          id BLOB PRIMARY KEY,   -- the 32 bytes of the SHA-256
          size INTEGER NOT NULL,
          pack INTEGER,          -- NULL: a file under chunks/
          off INTEGER,           -- in the pack, where the bytes start
          bad INTEGER NOT NULL DEFAULT 0,  -- last read found it corrupt or missing
          stored_at INTEGER NOT NULL DEFAULT 0, -- ms: when last put (or re-put, or moved); what collection's grace reads
          crc INTEGER            -- CRC-32 of the bytes, taken when they were proven against the id; NULL: not known
        ) WITHOUT ROWID;
        CREATE INDEX IF NOT EXISTS chunks_by_pack ON chunks(pack) WHERE pack IS NOT NULL;
        CREATE TABLE IF NOT EXISTS packs (
          id INTEGER PRIMARY KEY,
          indexed_end INTEGER NOT NULL,  -- the index reflects every record before this offset
          dead INTEGER NOT NULL          -- bytes of records no longer needed
        );`);
      // Indexes from before collection have no stored_at; 0 there is safe, since nothing is collected until a grace
      // period has passed since the store was opened (collectable()).
      const columns = new Set((db.pragma('table_info(chunks)') as { name: string }[]).map((c) => c.name));
      if (!columns.has('stored_at')) db.exec('ALTER TABLE chunks ADD COLUMN stored_at INTEGER NOT NULL DEFAULT 0');
      // Chunks indexed before reads took CRCs have none; their reads hash them.
      if (!columns.has('crc')) db.exec('ALTER TABLE chunks ADD COLUMN crc INTEGER');
      const meta = db.prepare('SELECT v FROM meta WHERE k = ?').pluck();
      const owner = meta.get('disk_id') as string | undefined;
      if (owner !== undefined && owner !== opts.diskId) throw new Error(`${dir} holds disk ${owner}, not ${opts.diskId}`);
      const format = meta.get('format') as string | undefined;
      if (format !== undefined && format !== FORMAT) throw new Error(`${dir} has chunk store format ${format}; this code reads ${FORMAT}`);
      db.prepare('INSERT OR REPLACE INTO meta (k, v) VALUES (?, ?), (?, ?)').run('disk_id', opts.diskId, 'format', FORMAT);
      store = new ChunkStore(dir, opts, db);
      const fs = await statfs(dir);
      store.reserve = opts.reserveBytes ?? Math.min(Math.floor(fs.blocks * fs.bsize * 0.05), store.packMax + RESERVE_BEYOND_PACK);
      if (created) {
        await fsyncPath(join(dir, 'chunks'));
        await fsyncPath(dir);
      }
      await store.recover();
      return store;
    } catch (e) {
      if (store) await store.closeHandles();
      db.close();
      if (errnoCode(e) === 'SQLITE_BUSY') throw new Error(`${dir} is in use by another process`, { cause: e });
      throw e;
    }
  }

  /** Creates the directories; true when the fan-out had to be created (so its entries need an fsync). */
  private static makeLayout(dir: string): boolean {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    for (const d of ['packs', 'tmp']) mkdirSync(join(dir, d), { recursive: true, mode: 0o700 });
    const chunks = join(dir, 'chunks');
    let created = false;
    try {
      mkdirSync(chunks, { mode: 0o700 });
      created = true;
    } catch (e) {
      if (errnoCode(e) !== 'EEXIST') throw e;
    }
    const have = new Set(readdirSync(chunks));
    for (let i = 0; i < 256; i++) {
      const name = i.toString(16).padStart(2, '0');
      if (!have.has(name)) {
        mkdirSync(join(chunks, name), { mode: 0o700 });
        created = true;
      }
    }
    return created;
  }

  private prepare() {
    const db = this.db;
    return {
      row: db.prepare<[Buffer], Row>('SELECT size, pack, off, bad, crc FROM chunks WHERE id = ?'),
      upsert: db.prepare(`INSERT INTO chunks (id, size, pack, off, bad, stored_at, crc) VALUES (?, ?, ?, ?, 0, ?, ?)
        ON CONFLICT (id) DO UPDATE SET size = excluded.size, pack = excluded.pack, off = excluded.off, bad = 0, stored_at = excluded.stored_at,
          crc = excluded.crc`),
      touch: db.prepare('UPDATE chunks SET stored_at = ? WHERE id = ?'),
      storedAt: db.prepare<[Buffer], number>('SELECT stored_at FROM chunks WHERE id = ?').pluck(),
      pageBefore: db.prepare<[Buffer, number], Buffer>('SELECT id FROM chunks WHERE id > ? AND stored_at < ? ORDER BY id LIMIT ' + LIST_PAGE).pluck(),
      del: db.prepare('DELETE FROM chunks WHERE id = ?'),
      setBad: db.prepare('UPDATE chunks SET bad = ? WHERE id = ?'),
      addDead: db.prepare('UPDATE packs SET dead = dead + ? WHERE id = ?'),
      packEnd: db.prepare(`INSERT INTO packs (id, indexed_end, dead) VALUES (?, ?, ?)
        ON CONFLICT (id) DO UPDATE SET indexed_end = excluded.indexed_end, dead = dead + excluded.dead`),
      packs: db.prepare<[], { id: number; indexed_end: number; dead: number }>('SELECT id, indexed_end, dead FROM packs ORDER BY id'),
      dropPack: db.prepare('DELETE FROM packs WHERE id = ?'),
      inPack: db.prepare<[number], { id: Buffer; size: number; off: number }>('SELECT id, size, off FROM chunks WHERE pack = ?'),
      countInPack: db.prepare('SELECT count(*) FROM chunks WHERE pack = ?').pluck(),
      page: db.prepare<[Buffer], Buffer>('SELECT id FROM chunks WHERE id > ? ORDER BY id LIMIT ' + LIST_PAGE).pluck(),
      totals: db.prepare<[], { n: number; b: number }>('SELECT count(*) AS n, coalesce(sum(size), 0) AS b FROM chunks'),
      getMeta: db.prepare('SELECT v FROM meta WHERE k = ?').pluck(),
      setMeta: db.prepare('INSERT OR REPLACE INTO meta (k, v) VALUES (?, ?)'),
    };
  }

  // ---- recovery ----------------------------------------------------------------------------------------------------

  private async recover(): Promise<void> {
    for (const name of await readdir(join(this.dir, 'tmp'))) await rm(join(this.dir, 'tmp', name), { recursive: true, force: true });
    for (const k of Object.keys(this.errors) as ErrorKind[]) this.errors[k] = Number(this.st.getMeta.get(`errors_${k}`) ?? 0);

    const rows = new Map(this.st.packs.all().map((r) => [r.id, r]));
    const files = (await readdir(join(this.dir, 'packs')))
      .map((n) => PACK_FILE.exec(n))
      .filter((m): m is RegExpExecArray => m !== null)
      .map((m) => Number(m[1]))
      .sort((a, b) => a - b);
    const touched = new Set<string>();
    let last: { id: number; fh: FileHandle; end: number } | null = null;
    for (const id of files) {
      this.nextPackId = Math.max(this.nextPackId, id + 1);
      const from = rows.get(id)?.indexed_end ?? 0;
      let fh: FileHandle | undefined;
      try {
        fh = await open(this.packPath(id), 'r+');
        const size = (await fh.stat()).size;
        let end = size;
        if (size > from) {
          const { ops, validEnd, skipped } = parseRecords(await readAt(fh, size - from, from), from);
          // Only the newest pack takes appends, so only its tail can be torn by a crash and cut off. Anything else
          // that fails to parse is damage: cutting there would destroy the sound records after it.
          const newest = id === files[files.length - 1];
          end = newest ? validEnd : size;
          this.applyTx(id, ops, end);
          for (const op of ops) if (op.type !== LARGE) touched.add(op.key.toString('hex'));
          const damaged = skipped + (!newest && validEnd < size ? 1 : 0);
          for (let i = 0; i < damaged; i++) this.countError('corrupt');
          if (newest && validEnd < size) {
            await fh.truncate(validEnd);
            await fh.sync();
            this.onFsync('pack');
          }
        } else if (!rows.has(id)) this.applyTx(id, [], 0);
        if (last) await last.fh.close();
        // A pack shorter than the index says lost bytes outside this store's doing; it is read, never appended to.
        last = size >= from ? { id, fh, end } : null;
        if (!last) {
          await fh.close();
          this.markLost(id, size);
        }
      } catch {
        // One unreadable pack must not keep the disk's other chunks offline: its chunks fail as they are read.
        if (fh) await fh.close().catch(() => {});
        this.countError('read');
        this.markLost(id, 0);
        // Appends only ever go to the newest pack, so that replay order is commit order.
        if (last) await last.fh.close().catch(() => {});
        last = null;
      }
    }
    if (last && last.end < this.packMax) this.active = last;
    else if (last) await last.fh.close();
    // A pack row whose file is gone with nothing left in it was compacted away just before a crash.
    for (const id of rows.keys()) if (!files.includes(id) && this.st.countInPack.get(id) === 0) this.st.dropPack.run(id);

    // Replayed deletes (and packed re-puts of a damaged large chunk) may leave files that the final state drops.
    for (const hex of touched) {
      const row = this.st.row.get(Buffer.from(hex, 'hex'));
      if (!row || row.pack !== null) await rm(this.chunkPath(hex), { force: true });
    }
    const t = this.st.totals.get()!;
    this.chunks = t.n;
    this.bytes = t.b;
  }

  // ---- the index ---------------------------------------------------------------------------------------------------

  /**
   * Applies ops recorded in pack `packId`; runs inside one transaction (applyTx). Returns the change in chunks and
   * bytes, for the caller to count once the transaction has committed.
   */
  private apply(packId: number, ops: AppliedOp[], end: number): { chunks: number; bytes: number } {
    const delta = { chunks: 0, bytes: 0 };
    let deadHere = 0;
    for (const op of ops) {
      const old = this.st.row.get(op.key);
      if (old && old.pack !== null) {
        if (old.pack === packId) deadHere += HEADER + old.size;
        else this.st.addDead.run(HEADER + old.size, old.pack);
      }
      if (op.type === DELETE) {
        deadHere += HEADER;
        if (old) {
          this.st.del.run(op.key);
          delta.chunks--;
          delta.bytes -= old.size;
        }
        continue;
      }
      // Replay and compaction's moves count as stores too: a chunk only looks younger than it is, never older.
      const now = this.now();
      if (op.type === DATA) this.st.upsert.run(op.key, op.size, packId, op.dataOff, now, op.crc);
      else {
        deadHere += HEADER;
        this.st.upsert.run(op.key, op.size, null, null, now, op.crc);
      }
      if (old) delta.bytes += op.size - old.size;
      else {
        delta.chunks++;
        delta.bytes += op.size;
      }
    }
    this.st.packEnd.run(packId, end, deadHere);
    return delta;
  }

  private row(key: Buffer): Row | undefined {
    return this.st.row.get(key);
  }

  private countError(kind: ErrorKind): void {
    this.errors[kind]++;
    try {
      this.st.setMeta.run(`errors_${kind}`, String(this.errors[kind]));
    } catch {
      // The index lives on the failing disk too; the in-memory count still reports the error.
    }
  }

  /** A note another part keeps on this disk, in its index (collection's marks); null if none. */
  note(name: string): string | null {
    this.checkOpen();
    return (this.st.getMeta.get(`note_${name}`) as string | undefined) ?? null;
  }

  setNote(name: string, value: string): void {
    this.checkOpen();
    try {
      this.st.setMeta.run(`note_${name}`, value);
    } catch (e) {
      throw this.writeError(e);
    }
  }

  /**
   * Marks bad the chunks of pack `id` that lie past `size` bytes (all of them for an unreadable pack): until a read
   * stumbled on them, they would count as healthy copies to re-replication and to a put deduplicating against them.
   */
  private markLost(id: number, size: number): void {
    for (const c of this.st.inPack.all(id)) if (c.off + c.size > size) this.setBad(c.id, true);
  }

  private setBad(key: Buffer, bad: boolean): void {
    try {
      this.st.setBad.run(bad ? 1 : 0, key);
    } catch {
      // Only a hint for has() and put(); losing it costs a repair later, nothing more.
    }
  }

  // ---- paths and ids -----------------------------------------------------------------------------------------------

  private parse(id: string): { key: Buffer; hex: string } {
    if (!isChunkId(id)) throw new InvalidChunkIdError(id);
    const hex = id.slice(7);
    return { key: Buffer.from(hex, 'hex'), hex };
  }

  private chunkPath(hex: string): string {
    return join(this.dir, 'chunks', hex.slice(0, 2), hex);
  }

  private packPath(id: number): string {
    return join(this.dir, 'packs', packName(id));
  }

  private checkOpen(): void {
    if (this.closed) throw new ChunkStoreClosedError(this.diskId);
  }

  private writeError(e: unknown): DiskError {
    if (e instanceof DiskError) return e;
    const code = errnoCode(e);
    if (code === 'ENOSPC' || code === 'EDQUOT' || code === 'SQLITE_FULL') return new DiskFullError(this.diskId, e);
    this.countError('write');
    return new DiskError(this.diskId, 'write', code, e);
  }

  private async withLock<T>(hex: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.locks.get(hex);
    let release!: () => void;
    const mine = new Promise<void>((r) => (release = r));
    this.locks.set(hex, mine);
    if (prev) await prev;
    try {
      return await fn();
    } finally {
      if (this.locks.get(hex) === mine) this.locks.delete(hex);
      release();
    }
  }

  // ---- writing -----------------------------------------------------------------------------------------------------

  /**
   * Stores a chunk once its bytes are checked against `id`; resolves when the chunk is durable. A chunk already here
   * is not written again, unless a read found it corrupt or missing (or `replace` says so): then this put is its
   * repair.
   */
  async put(id: string, data: Uint8Array, opts: PutOptions = {}): Promise<PutResult> {
    this.checkOpen();
    const { key, hex } = this.parse(id);
    const buf = Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    if (!opts.hashed) {
      const actual = await sha256Async(buf);
      if (!actual.equals(key)) throw new ChunkHashMismatchError(id, `sha256:${actual.toString('hex')}`);
    }
    return this.withLock(hex, async () => {
      this.checkOpen();
      const old = this.row(key);
      if (old && !old.bad && !opts.replace) {
        // A writer reusing a chunk that nothing may name yet: it must look new to collection until the writer commits.
        try {
          this.st.touch.run(this.now(), key);
        } catch (e) {
          // Unable to date the reuse, this copy cannot be counted on: the writer places the chunk elsewhere.
          throw this.writeError(e);
        }
        return { stored: false };
      }
      const extra = old ? 0 : buf.length;
      const crc = opts.hashed && opts.crc !== undefined ? opts.crc : crc32(buf);
      if (this.capacityBytes !== undefined && this.bytes + this.reserved + extra > this.capacityBytes) {
        throw new DiskFullError(this.diskId, `capacity of ${this.capacityBytes} bytes reached`);
      }
      // Reserved before anything is awaited, so puts under way together count against capacity and the free reserve.
      this.reserved += extra;
      try {
        if (extra > 0) await this.checkRoom(HEADER);
        if (buf.length < this.packThreshold) {
          await this.enqueue({ type: DATA, key, size: buf.length, data: buf, crc });
          if (old && old.pack === null) await rm(this.chunkPath(hex), { force: true });
        } else {
          await this.writeChunkFile(hex, buf);
          await this.enqueue({ type: LARGE, key, size: buf.length, crc });
        }
      } finally {
        this.reserved -= extra;
      }
      return { stored: true };
    });
  }

  /**
   * Refuses a new chunk that would eat into the reserve (reserveBytes): the bytes of puts under way (`reserved`, this
   * one's included) and `bytes` more. The filesystem is asked at most once a second while there is room, and again
   * before any refusal: space freed meanwhile (a delete, compaction) counts at once.
   */
  private async checkRoom(bytes: number): Promise<void> {
    for (let asked = false; ; asked = true) {
      if (asked || Date.now() - this.fsFree.at > 1000) {
        const fs = await statfs(this.dir);
        this.fsFree = { bytes: fs.bavail * fs.bsize, at: Date.now(), written: 0 };
      }
      if (this.fsFree.bytes - this.fsFree.written - this.reserved - bytes >= this.reserve) return;
      if (asked) throw new DiskFullError(this.diskId, `the filesystem is full but for the ${this.reserve} bytes kept free for deletes and compaction`);
    }
  }

  /** temp file, fdatasync, rename into place, fsync of the directory: the file exists complete or not at all. */
  private async writeChunkFile(hex: string, data: Buffer): Promise<void> {
    const tmp = join(this.dir, 'tmp', `${hex}.${process.pid}.${++this.tmpSeq}`);
    const final = this.chunkPath(hex);
    try {
      const fh = await open(tmp, 'wx', 0o600);
      try {
        await writeAll(fh, data, 0);
        this.fsFree.written += data.length;
        await fh.datasync();
        this.onFsync('file');
      } finally {
        await fh.close();
      }
      await rename(tmp, final);
      await fsyncPath(join(this.dir, 'chunks', hex.slice(0, 2)));
      this.onFsync('dir');
    } catch (e) {
      await rm(tmp, { force: true }).catch(() => {});
      throw this.writeError(e);
    }
  }

  private enqueue(op: Omit<Op, 'resolve' | 'reject'>): Promise<void> {
    return new Promise((resolve, reject) => {
      this.queue.push({ ...op, resolve, reject });
      this.kick();
    });
  }

  /**
   * Starts a commit loop unless one is running. The first commit waits for the end of the current event-loop turn,
   * so that puts issued together share it; later ones take whatever queued while the previous one was being synced.
   */
  private kick(): void {
    if (this.loop || this.queue.length === 0) return;
    this.loop = new Promise<void>((r) => setImmediate(r))
      .then(() => this.drain())
      .finally(() => {
        this.loop = null;
        this.kick();
      });
  }

  private async drain(): Promise<void> {
    while (this.queue.length > 0) {
      let n = 0;
      let bytes = 0;
      while (n < this.queue.length && n < BATCH_MAX_OPS) {
        const len = HEADER + (this.queue[n].data?.length ?? 0);
        if (n > 0 && bytes + len > BATCH_MAX_BYTES) break;
        bytes += len;
        n++;
      }
      const batch = this.queue.splice(0, n);
      try {
        await this.commit(batch, bytes);
      } catch (e) {
        for (const op of batch) op.reject(e);
      }
    }
  }

  /**
   * One group commit: one write and one fdatasync of the active pack, then one index transaction. The records go out
   * in one gathered write (headers between the chunks' own buffers), so a batch of large chunks is not copied first.
   */
  private async commit(batch: Op[], bytes: number): Promise<void> {
    const fail = (e: unknown) => {
      const err = this.writeError(e);
      for (const op of batch) op.reject(err);
    };
    let pack: ActivePack;
    try {
      pack = await this.activePack(bytes);
    } catch (e) {
      return fail(e);
    }
    const headers = Buffer.allocUnsafe(HEADER * batch.length);
    const parts: Buffer[] = [];
    const applied: AppliedOp[] = [];
    let at = 0;
    batch.forEach((op, i) => {
      const len = op.type === DATA ? op.data!.length : op.type === LARGE ? op.size : 0;
      const header = headers.subarray(i * HEADER, (i + 1) * HEADER);
      encodeHeader(header, 0, op.type, len, op.key);
      at += HEADER;
      applied.push({ type: op.type, key: op.key, size: op.size, dataOff: pack.end + at, crc: op.crc ?? null });
      parts.push(header);
      if (op.data) {
        parts.push(op.data);
        at += op.data.length;
      }
    });
    try {
      await writevAll(pack.fh, parts, pack.end);
      this.fsFree.written += at;
    } catch (e) {
      // Nothing of this batch was synced, so cutting the pack back to its last good end makes it whole again (a full
      // disk would otherwise leave a new pack behind for every batch it refused).
      await pack.fh.truncate(pack.end).catch(() => this.abandon(pack));
      return fail(e);
    }
    try {
      await pack.fh.datasync();
      this.onFsync('pack');
    } catch (e) {
      // After a failed fsync the pack's tail is unknown (Linux may have dropped the dirty pages), so nothing more is
      // appended to it. The refused records are cut off too, as far as the disk lets us: left in the page cache they
      // would read as valid at the next open, be indexed, and later answer a retried put as already stored, with
      // bytes that may never have reached the disk.
      await pack.fh.truncate(pack.end).then(() => pack.fh.datasync()).catch(() => undefined);
      await this.abandon(pack);
      return fail(e);
    }
    pack.end += bytes;
    try {
      const delta = this.applyTx(pack.id, applied, pack.end);
      this.chunks += delta.chunks;
      this.bytes += delta.bytes;
    } catch (e) {
      return fail(e);
    }
    for (const op of batch) op.resolve();
  }

  private async abandon(pack: ActivePack): Promise<void> {
    if (this.active === pack) this.active = null;
    await pack.fh.close().catch(() => {});
  }

  private async activePack(bytes: number): Promise<ActivePack> {
    const cur = this.active;
    if (cur && (cur.end === 0 || cur.end + bytes <= this.packMax)) return cur;
    if (cur) {
      this.active = null;
      await cur.fh.close();
    }
    const id = this.nextPackId++;
    const fh = await open(this.packPath(id), 'wx', 0o600);
    try {
      await fsyncPath(join(this.dir, 'packs'));
      this.onFsync('dir');
    } catch (e) {
      await fh.close().catch(() => {});
      throw e;
    }
    this.active = { id, fh, end: 0 };
    return this.active;
  }

  // ---- reading -----------------------------------------------------------------------------------------------------

  /** The chunk's bytes, checked against its id (by hash unless `check` says CRC and the store has one). */
  async get(id: string, check: ReadCheck = 'hash'): Promise<Buffer> {
    this.checkOpen();
    const { key, hex } = this.parse(id);
    for (let attempt = 0; ; attempt++) {
      const row = this.row(key);
      if (!row) throw new ChunkMissingError(id, this.diskId);
      const crc = check === 'crc' ? row.crc : null;
      let data: Buffer;
      let intact: boolean;
      try {
        if (row.pack === null) {
          data = await readChunkFile(this.chunkPath(hex), row.size);
          intact = data.length === row.size && (await this.intact(data, key, crc));
        } else {
          ({ data, intact } = await this.readPacked(row.pack, row.off!, row.size, key, crc));
        }
      } catch (e) {
        this.checkOpen();
        // A concurrent delete, repair or compaction may have moved the chunk between the lookup and the read.
        const now = this.row(key);
        if (attempt === 0 && (!now || now.pack !== row.pack || now.off !== row.off)) continue;
        if (!now) throw new ChunkMissingError(id, this.diskId);
        if (errnoCode(e) === 'ENOENT') {
          this.countError('missing');
          this.setBad(key, true);
          throw new ChunkMissingError(id, this.diskId);
        }
        this.countError('read');
        throw new DiskError(this.diskId, 'read', errnoCode(e), e);
      }
      if (!intact) {
        if (attempt === 0 && this.row(key)?.off !== row.off) continue;
        this.countError('corrupt');
        this.setBad(key, true);
        throw new ChunkCorruptError(id, this.diskId);
      }
      if (row.bad) this.setBad(key, false);
      return data;
    }
  }

  private async intact(data: Buffer, key: Buffer, crc: number | null): Promise<boolean> {
    // Off the event loop where the addon is built: a large read's check runs on another core while the last chunk is
    // being sent.
    return crc !== null ? (await crc32Async(data)) === crc : (await sha256Async(data)).equals(key);
  }

  /** A packed chunk's bytes, and whether they are whole and match `key` (or `crc`, when given). */
  private async readPacked(packId: number, off: number, size: number, key: Buffer, crc: number | null): Promise<{ data: Buffer; intact: boolean }> {
    const h = await this.acquire(packId);
    try {
      const summed = readSummed(h.fh.fd, size, off, crc !== null ? 'crc32' : 'sha256');
      if (summed) {
        const r = await summed;
        return { data: r.data, intact: r.data.length === size && (crc !== null ? r.crc === crc : r.sha!.equals(key)) };
      }
      const data = await readAt(h.fh, size, off);
      return { data, intact: data.length === size && (await this.intact(data, key, crc)) };
    } finally {
      this.release(h);
    }
  }

  private async acquire(packId: number): Promise<PackHandle> {
    let h = this.handles.get(packId);
    if (!h) {
      const fh = await open(this.packPath(packId), 'r');
      h = this.handles.get(packId);
      if (h) {
        await fh.close();
        h.refs++;
      } else {
        h = { fh, refs: 1, retired: false };
        this.handles.set(packId, h);
        this.evictHandles();
      }
    } else {
      // Re-inserting keeps the Map in least-recently-used order.
      this.handles.delete(packId);
      this.handles.set(packId, h);
      h.refs++;
    }
    return h;
  }

  private release(h: PackHandle): void {
    h.refs--;
    if (h.retired && h.refs === 0) void h.fh.close().catch(() => {});
  }

  private evictHandles(): void {
    for (const [id, h] of this.handles) {
      if (this.handles.size <= PACK_HANDLES) break;
      if (h.refs === 0) {
        this.handles.delete(id);
        void h.fh.close().catch(() => {});
      }
    }
  }

  private retireHandle(packId: number): void {
    const h = this.handles.get(packId);
    if (!h) return;
    this.handles.delete(packId);
    h.retired = true;
    if (h.refs === 0) void h.fh.close().catch(() => {});
  }

  /** Whether the chunk is here and not known to be damaged (from the index: no I/O). */
  has(id: string): boolean {
    this.checkOpen();
    const row = this.row(this.parse(id).key);
    return row !== undefined && row.bad === 0;
  }

  /** Reads the chunk and checks its hash. An I/O failure throws DiskError: the disk, not the chunk, is in question. */
  async verify(id: string): Promise<VerifyResult> {
    try {
      await this.get(id);
      return 'ok';
    } catch (e) {
      if (e instanceof ChunkCorruptError) return 'corrupt';
      if (e instanceof ChunkMissingError) return 'missing';
      throw e;
    }
  }

  /** Every chunk id in the index (damaged ones too), in id order; pages through the index, so it may run long. */
  async *list(): AsyncIterable<string> {
    let after: Buffer = Buffer.alloc(0);
    for (;;) {
      this.checkOpen();
      const page = this.st.page.all(after);
      for (const k of page) yield `sha256:${k.toString('hex')}`;
      if (page.length < LIST_PAGE) return;
      after = page[page.length - 1];
    }
  }

  // ---- deleting and compaction -------------------------------------------------------------------------------------

  /**
   * The time before which a chunk's last store must lie for collection to take it: `cutoff`, once the store has been
   * open since before it. The touch of a re-put is not synced on its own, so a power cut may lose it: every chunk
   * counts as stored no earlier than the open, and until a grace period has passed since, nothing here is old enough.
   */
  private collectable(cutoff: number): number {
    return this.openedAt < cutoff ? cutoff : 0;
  }

  /** Chunk ids last stored before `cutoff` (see collect()), in id order; pages through the index. */
  async *listStoredBefore(cutoff: number): AsyncIterable<string> {
    let after: Buffer = Buffer.alloc(0);
    for (;;) {
      this.checkOpen();
      const page = this.st.pageBefore.all(after, this.collectable(cutoff));
      for (const k of page) yield `sha256:${k.toString('hex')}`;
      if (page.length < LIST_PAGE) return;
      after = page[page.length - 1]!;
    }
  }

  /**
   * Deletes a chunk only if it was last stored before `cutoff` (checked under the chunk's lock, so a put racing with
   * collection wins); answers the bytes freed, or null when it was kept or not here. Durable when it resolves.
   */
  async collect(id: string, cutoff: number): Promise<number | null> {
    this.checkOpen();
    const { key, hex } = this.parse(id);
    return this.withLock(hex, async () => {
      this.checkOpen();
      const old = this.row(key);
      const at = this.st.storedAt.get(key);
      if (!old || at === undefined || at >= this.collectable(cutoff)) return null;
      await this.enqueue({ type: DELETE, key, size: 0 });
      if (old.pack === null) await rm(this.chunkPath(hex), { force: true });
      return old.size;
    });
  }

  /** Removes a chunk; false when it was not here. Durable when it resolves (a crash does not bring it back). */
  async delete(id: string): Promise<boolean> {
    this.checkOpen();
    const { key, hex } = this.parse(id);
    return this.withLock(hex, async () => {
      this.checkOpen();
      const old = this.row(key);
      if (!old) return false;
      await this.enqueue({ type: DELETE, key, size: 0 });
      if (old.pack === null) await rm(this.chunkPath(hex), { force: true });
      return true;
    });
  }

  /**
   * Rewrites the packs (but the one being appended to) whose dead records make up at least `minDeadRatio` of them:
   * their live chunks are appended anew, the index is checkpointed durably, then the old pack is deleted. A pack with a
   * chunk that cannot be read or verified is kept (scrub reports and repairs the chunk; a later compaction frees it).
   */
  async compact(opts: { minDeadRatio?: number } = {}): Promise<CompactResult> {
    this.checkOpen();
    const ratio = opts.minDeadRatio ?? 0.5;
    const result: CompactResult = { packs: 0, bytes_reclaimed: 0 };
    for (const p of this.st.packs.all()) {
      if (p.id === this.active?.id || p.indexed_end === 0 || p.dead / p.indexed_end < ratio) continue;
      const rows = this.st.inPack.all(p.id);
      let movable = true;
      // Moves go through group commit like puts; issuing them in slices lets one fsync carry many.
      for (let i = 0; i < rows.length; i += COMPACT_SLICE) {
        const moved = await Promise.all(rows.slice(i, i + COMPACT_SLICE).map((r) => this.move(p.id, r)));
        movable &&= moved.every(Boolean);
      }
      if (!movable || this.st.countInPack.get(p.id) !== 0) continue;
      // The moves must be durable in the index before the only other copy of those bytes goes away.
      this.db.pragma('wal_checkpoint(TRUNCATE)');
      this.retireHandle(p.id);
      await unlink(this.packPath(p.id));
      await fsyncPath(join(this.dir, 'packs'));
      this.onFsync('dir');
      this.st.dropPack.run(p.id);
      result.packs++;
      result.bytes_reclaimed += p.indexed_end;
    }
    return result;
  }

  /** Appends a packed chunk anew, unless it has moved meanwhile; false when it cannot be read intact. */
  private move(packId: number, r: { id: Buffer; size: number; off: number }): Promise<boolean> {
    return this.withLock(r.id.toString('hex'), async () => {
      this.checkOpen();
      const cur = this.row(r.id);
      if (!cur || cur.pack !== packId || cur.off !== r.off) return true;
      let read: { data: Buffer; intact: boolean };
      try {
        read = await this.readPacked(packId, r.off, r.size, r.id, null);
      } catch {
        return false;
      }
      if (!read.intact) return false;
      await this.enqueue({ type: DATA, key: r.id, size: r.size, data: read.data, crc: crc32(read.data) });
      return true;
    });
  }

  /**
   * Brings chunk files the index does not know back in line with it. Such files are left by a crash between a large
   * chunk's rename and its commit (a put never acknowledged), or by a delete whose unlink outlived its index entry.
   * A file whose bytes hash to its name is complete (it was renamed in only after its fsync) and is indexed again, so
   * that no verified data is ever thrown away here; anything else is removed. Walks all of chunks/: run it rarely
   * (after an unclean shutdown, or with scrub).
   */
  async reconcile(): Promise<{ adopted: number; removed: number }> {
    this.checkOpen();
    const out = { adopted: 0, removed: 0 };
    for (let i = 0; i < 256; i++) {
      const sub = join(this.dir, 'chunks', i.toString(16).padStart(2, '0'));
      for (const name of await readdir(sub)) {
        const key = HEX64.test(name) ? Buffer.from(name, 'hex') : null;
        if (key && this.row(key)) continue;
        await this.withLock(name, async () => {
          this.checkOpen();
          if (key && this.row(key)) return;
          const path = join(sub, name);
          let data: Buffer | null = null;
          try {
            if (key && (await stat(path)).isFile()) data = await readFile(path);
          } catch (e) {
            if (errnoCode(e) === 'ENOENT') return;
            this.countError('read');
            throw new DiskError(this.diskId, 'read', errnoCode(e), e);
          }
          if (key && data && sha256(data).equals(key)) {
            await this.enqueue({ type: LARGE, key, size: data.length, crc: crc32(data) });
            out.adopted++;
          } else {
            await rm(path, { recursive: true, force: true });
            out.removed++;
          }
        });
      }
    }
    return out;
  }

  // ---- accounting and lifecycle ------------------------------------------------------------------------------------

  async stats(): Promise<ChunkStoreStats> {
    this.checkOpen();
    const fs = await statfs(this.dir);
    // What new chunks may still take: the reserve is not theirs (reserveBytes).
    const fsFree = Math.max(0, fs.bavail * fs.bsize - this.reserve);
    const capacity = this.capacityBytes ?? fs.blocks * fs.bsize;
    const free = this.capacityBytes === undefined ? fsFree : Math.max(0, Math.min(fsFree, this.capacityBytes - this.bytes));
    return {
      disk_id: this.diskId,
      chunks: this.chunks,
      bytes: this.bytes,
      capacity_bytes: capacity,
      free_bytes: free,
      errors: { ...this.errors },
    };
  }

  /** Waits for commits under way, then releases the disk. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.allSettled([...this.locks.values()]);
    while (this.loop) await this.loop;
    await this.closeHandles();
    this.db.close();
  }

  private async closeHandles(): Promise<void> {
    const all = [...this.handles.values()].map((h) => h.fh);
    this.handles.clear();
    if (this.active) all.push(this.active.fh);
    this.active = null;
    await Promise.allSettled(all.map((fh) => fh.close()));
  }
}
