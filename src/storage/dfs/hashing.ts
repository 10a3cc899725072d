// The hashes dcfs-lite takes of the bytes it stores and serves (docs/dcfs.md, "Hashing"): SHA-256 content ids of
// chunks and files, CRC-32 read checks, and FastCDC's gear scan. With the native addon (native/dfs-hash, built from
// source at install time) the scan runs in C and the hashes on libuv's thread pool, reading the buffers in place;
// without it the same results come from JavaScript on the event loop, and the service says so once in its log.
import { createHash, type Hash } from 'node:crypto';
import { crc32 } from 'node:zlib';
import { type AddonLoad, loadNativeAddon } from '../../lib/native-addon.ts';

declare const fileHandle: unique symbol;
type FileHandle = { readonly [fileHandle]: true };

/** What native/dfs-hash/dfs_hash.c exports. */
export interface DfsHashAddon {
  /** Chunker.scan's steps: the index just past the cut, or -1 (state[0] is the gear hash, in and out). */
  scan(src: Buffer, start: number, n0: number, state: Int32Array, params: Int32Array, gear: Uint32Array): number;
  fileHash(): FileHandle;
  /** The file's SHA-256; the handle is spent. */
  fileDigest(file: FileHandle): Buffer;
  /** On the thread pool: adds `buf` to `file` (if given), and takes its SHA-256 (want & 1) and CRC-32 (want & 2). */
  digest(buf: Buffer, file: FileHandle | null, want: number, cb: (err: Error | null, sha: Buffer | null, crc: number) => void): void;
  /** On the thread pool: fills `buf` from `fd` at `position` (up to the file's end: `length` says how much), then
   * takes the SHA-256 (want & 1) and CRC-32 (want & 2) of what was read. A read error has node:fs's `code`. */
  readDigest(
    fd: number,
    buf: Buffer,
    position: number,
    want: number,
    cb: (err: (Error & { code?: string }) | null, sha: Buffer | null, crc: number, length: number) => void,
  ): void;
}

const WANT_SHA = 1;
const WANT_CRC = 2;

let loaded: AddonLoad<DfsHashAddon> | undefined;

/** The addon, or why it cannot be used. `DFS_HASH=js` declines it (tests compare both ways). */
export function loadDfsHash(): AddonLoad<DfsHashAddon> {
  if (loaded) return loaded;
  if (process.env.DFS_HASH === 'js') return (loaded = { reason: 'DFS_HASH=js' });
  return (loaded = loadNativeAddon<DfsHashAddon>('dfs-hash', 'dfs_hash'));
}

/** Which way hashing goes: `native` (the addon, when built) or `js`. */
export type HashEngine = 'native' | 'js';

function addonFor(engine: HashEngine | undefined): DfsHashAddon | null {
  if (engine === 'js') return null;
  const l = loadDfsHash();
  return 'addon' in l ? l.addon : null;
}

/** The engine that will be used by default, and why when it is JavaScript: for the service's start-up log. */
export function hashEngine(): { engine: HashEngine; reason?: string } {
  const l = loadDfsHash();
  return 'addon' in l ? { engine: 'native' } : { engine: 'js', reason: l.reason };
}

function digestNative(addon: DfsHashAddon, data: Buffer, file: FileHandle | null, want: number): Promise<{ sha: Buffer | null; crc: number }> {
  return new Promise((resolve, reject) => addon.digest(data, file, want, (err, sha, crc) => (err ? reject(err) : resolve({ sha, crc }))));
}

function asBuffer(data: Uint8Array): Buffer {
  return Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
}

/** Below this, hashing inline costs less than a trip to the thread pool. */
const POOL_MIN = 64 * 1024;

/** SHA-256 of bytes, off the event loop when they are large and the addon is there. They must not change until it
 * resolves. */
export async function sha256Async(data: Uint8Array, engine?: HashEngine): Promise<Buffer> {
  const addon = data.length >= POOL_MIN ? addonFor(engine) : null;
  if (!addon) return createHash('sha256').update(data).digest();
  return (await digestNative(addon, asBuffer(data), null, WANT_SHA)).sha!;
}

/** The content id (`sha256:<hex>`) of bytes, as sha256Async. */
export async function contentIdAsync(data: Uint8Array, engine?: HashEngine): Promise<string> {
  return `sha256:${(await sha256Async(data, engine)).toString('hex')}`;
}

/**
 * Where the addon is built: reads `length` bytes of an open file at `position` with the SHA-256 or the CRC-32 of what
 * was read, in one trip to the thread pool (a read and a check apart would take two, and each trip costs the event loop
 * about as much as a 256 KiB chunk's CRC). Fewer bytes when the file ends first. null without the addon: the caller
 * reads and checks its own way. `fd` must stay open until the promise settles.
 */
export function readSummed(
  fd: number,
  length: number,
  position: number,
  sum: 'sha256' | 'crc32',
  engine?: HashEngine,
): Promise<{ data: Buffer; sha: Buffer | null; crc: number }> | null {
  const addon = addonFor(engine);
  if (!addon) return null;
  const buf = Buffer.allocUnsafe(length);
  return new Promise((resolve, reject) =>
    addon.readDigest(fd, buf, position, sum === 'sha256' ? WANT_SHA : WANT_CRC, (err, sha, crc, n) =>
      err ? reject(err) : resolve({ data: n === length ? buf : buf.subarray(0, n), sha, crc }),
    ),
  );
}

/** CRC-32 (zlib's) of bytes, as sha256Async. */
export async function crc32Async(data: Uint8Array, engine?: HashEngine): Promise<number> {
  const addon = data.length >= POOL_MIN ? addonFor(engine) : null;
  if (!addon) return crc32(data);
  return (await digestNative(addon, asBuffer(data), null, WANT_CRC)).crc;
}

/** A chunk's content id and CRC-32. */
export interface ChunkSums {
  id: string;
  crc: number;
}

/**
 * A file's hashes as its chunks go by: each chunk's id and CRC-32, and the whole file's content id, which is the
 * SHA-256 of the chunks in the order given (so every byte of the file must pass through `chunk`). With the addon a
 * file's chunks are hashed one after another on the thread pool, in order, while the event loop goes on; a file whose
 * first chunk is small (a small file: only a file's last chunk is under the chunker's minimum) is hashed inline,
 * where a trip to the pool would cost more than the hashing.
 */
export class FileSums {
  private readonly addon: DfsHashAddon | null;
  /** Decided by the first chunk. */
  private native: FileHandle | null = null;
  private js: Hash | null = null;
  private tail: Promise<unknown> = Promise.resolve();
  private bytes = 0;
  private done = false;

  constructor(engine?: HashEngine) {
    this.addon = addonFor(engine);
  }

  /** The file's next chunk; it must not change until the answer. */
  chunk(data: Buffer): Promise<ChunkSums> {
    if (this.done) throw new Error('FileSums.chunk after digest');
    if (this.bytes === 0 && !this.native && !this.js) {
      if (this.addon && data.length >= POOL_MIN) this.native = this.addon.fileHash();
      else this.js = createHash('sha256');
    }
    this.bytes += data.length;
    if (this.js) {
      this.js.update(data);
      return Promise.resolve({ id: `sha256:${createHash('sha256').update(data).digest('hex')}`, crc: crc32(data) });
    }
    const addon = this.addon!;
    const next = this.tail.then(() => digestNative(addon, data, this.native, WANT_SHA | WANT_CRC));
    // A failure is the caller's to see (from the promise returned); the chain goes on for the next chunk's sake.
    this.tail = next.catch(() => undefined);
    return next.then(({ sha, crc }) => ({ id: `sha256:${sha!.toString('hex')}`, crc }));
  }

  get size(): number {
    return this.bytes;
  }

  /** The file's content id, once every chunk given has been hashed. */
  async digest(): Promise<string> {
    this.done = true;
    await this.tail;
    const sha = this.native ? this.addon!.fileDigest(this.native) : (this.js ?? createHash('sha256')).digest();
    return `sha256:${sha.toString('hex')}`;
  }
}

/** The native gear scan, when the addon is there and `engine` allows it. */
export function nativeScan(engine?: HashEngine): DfsHashAddon['scan'] | null {
  return addonFor(engine)?.scan ?? null;
}
