// Content-defined chunking for dcfs-lite (docs/dcfs.md, "Chunk store"): FastCDC (Xia et al., USENIX ATC 2016) with a
// gear rolling hash and normalized chunking. A cut depends only on the bytes inside the hash window, so an insert or a
// deletion moves the cuts next to it and no others, and equal content anywhere in any file yields equal chunks.
//
// The gear table and the mask layout below are part of the store's dedup contract: changing them never breaks
// correctness (every chunk is addressed by its SHA-256), but content chunked before and after the change no longer
// shares chunks.
import { createHash } from 'node:crypto';
import { type DfsHashAddon, type HashEngine, nativeScan } from './hashing.ts';

export interface Chunk {
  data: Buffer;
  /** `sha256:<hex>` of `data`. */
  id: string;
}

export interface ChunkerOptions {
  /** No cut before this many bytes (only the last chunk of the input may be shorter). */
  min: number;
  /** The size the cut probabilities aim at; rounded to a power of two. */
  avg: number;
  /** A cut is forced here. */
  max: number;
}

/**
 * 64 KiB / 256 KiB / 1 MiB. Below ~64 KiB the per-chunk costs of the store (one file, one fsync and one index row per
 * large chunk) dominate a large upload; above ~1 MiB a small edit re-stores too much and a range read fetches too much.
 * 256 KiB makes 4,096 chunks per GiB, and a chunk smaller than the store's pack threshold (64 KiB) can only be the tail
 * of a file, so a large file never costs a pack entry except for its last chunk.
 */
export const DEFAULT_CHUNKER_OPTIONS: Readonly<ChunkerOptions> = Object.freeze({ min: 64 * 1024, avg: 256 * 1024, max: 1024 * 1024 });

const ID_PREFIX = 'sha256:';
export const CHUNK_ID_RE = /^sha256:[0-9a-f]{64}$/;

export function isChunkId(s: unknown): s is string {
  return typeof s === 'string' && s.length === 71 && CHUNK_ID_RE.test(s);
}

/** The content id (`sha256:<hex>`) of bytes: of one chunk, or of a whole file given whole. */
export function contentId(data: Uint8Array | string): string {
  return ID_PREFIX + createHash('sha256').update(data).digest('hex');
}

// 256 fixed pseudo-random 32-bit values, derived rather than listed so that anyone can regenerate and check them.
const GEAR: Uint32Array = (() => {
  const t = new Uint32Array(256);
  for (let i = 0; i < 256; i++) t[i] = createHash('sha256').update(`dcfs-lite gear ${i}`).digest().readUInt32BE(0);
  return t;
})();

/**
 * A mask of the top `bits` bits. In the gear hash `h = (h << 1) + gear[b]` bit k depends on the last k+1 bytes, so
 * the top bits see the widest window (32 bytes), which is what makes cuts depend on content rather than on a few bytes.
 */
function topMask(bits: number): number {
  return bits >= 32 ? -1 : (~0 << (32 - bits)) | 0;
}

/**
 * Streaming FastCDC. `push` as many buffers as the input arrives in, then `end`; the chunks come out in order and their
 * concatenation is the input. Where the input was split between pushes never changes where it is cut.
 */
export class Chunker {
  readonly min: number;
  readonly avg: number;
  readonly max: number;
  private readonly maskS: number;
  private readonly maskL: number;
  /**
   * Bytes of the chunk being built, copied (the caller may reuse the buffers it pushed) into one buffer that grows up
   * to `max` and is reused for every chunk: a chunk then costs one allocation of its own size, not one per push and
   * a concatenation, which matters to the garbage collector when a large upload streams through. It starts at the
   * size first needed, so a small file allocates no more than its bytes.
   */
  private acc: Buffer | null = null;
  private pendingLen = 0;
  private h = 0;
  private ended = false;
  /** The native scan (hashing.ts), with its in/out state and its parameters as the addon takes them. */
  private readonly native: { scan: DfsHashAddon['scan']; state: Int32Array; params: Int32Array } | null;

  /** `engine: 'js'` keeps the scan in JavaScript even where the native addon is built (the results are the same). */
  constructor(opts: Partial<ChunkerOptions> & { engine?: HashEngine } = {}) {
    const { min, avg, max } = { ...DEFAULT_CHUNKER_OPTIONS, ...opts };
    for (const [k, v] of Object.entries({ min, avg, max })) {
      if (!Number.isSafeInteger(v) || v < 1) throw new RangeError(`chunker ${k} must be a positive integer, got ${v}`);
    }
    if (!(min < avg && avg < max)) throw new RangeError(`chunker sizes must satisfy min < avg < max, got ${min}/${avg}/${max}`);
    if (min < 64) throw new RangeError('chunker min must be at least 64 bytes (twice the hash window)');
    const bits = Math.round(Math.log2(avg));
    if (bits < 8 || bits > 30) throw new RangeError(`chunker avg out of range: ${avg}`);
    this.min = min;
    this.avg = 2 ** bits;
    this.max = max;
    // Normalization level 2 (the paper's recommendation): harder to cut before avg, easier after it, which narrows
    // the size distribution around avg without giving up the content-defined cuts.
    this.maskS = topMask(bits + 2);
    this.maskL = topMask(bits - 2);
    const scan = nativeScan(opts.engine);
    this.native = scan && { scan, state: new Int32Array(1), params: Int32Array.of(this.min, this.avg, this.max, this.maskS, this.maskL) };
  }

  push(buf: Uint8Array): Chunk[] {
    return this.cut(buf).map(withId);
  }

  /** The last chunk (possibly shorter than min), if any bytes are left. */
  end(): Chunk[] {
    return this.finish().map(withId);
  }

  /** `push` without the ids: for a caller that hashes the chunks itself (off the event loop, with FileSums). */
  cut(buf: Uint8Array): Buffer[] {
    if (this.ended) throw new Error('Chunker.push after end');
    const out: Buffer[] = [];
    const src = Buffer.isBuffer(buf) ? buf : Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
    let start = 0;
    while (start < src.length) {
      const cut = this.scan(src, start);
      if (cut < 0) {
        // A chunk is cut at `max` at the latest, so what is pending always fits in `max` bytes.
        const need = this.pendingLen + src.length - start;
        if (!this.acc || this.acc.length < need) {
          const grown = Buffer.allocUnsafe(Math.min(this.max, Math.max(need, 2 * (this.acc?.length ?? 0))));
          this.acc?.copy(grown, 0, 0, this.pendingLen);
          this.acc = grown;
        }
        src.copy(this.acc, this.pendingLen, start);
        this.pendingLen += src.length - start;
        break;
      }
      out.push(this.emit(src.subarray(start, cut)));
      start = cut;
    }
    return out;
  }

  /** `end` without the ids. */
  finish(): Buffer[] {
    if (this.ended) return [];
    this.ended = true;
    if (this.pendingLen === 0) return [];
    return [this.emit(Buffer.alloc(0))];
  }

  /**
   * Continues the current chunk over `src` from `start`; returns the index in `src` just past the cut, or -1 when
   * `src` ends first (the hash state is kept for the next push).
   */
  private scan(src: Buffer, start: number): number {
    const n0 = this.pendingLen - start; // chunk offset of src[i] is n0 + i
    if (this.native) {
      this.native.state[0] = this.h;
      const cut = this.native.scan(src, start, n0, this.native.state, this.native.params, GEAR);
      this.h = this.native.state[0]!;
      return cut;
    }
    const { min, avg, max, maskS, maskL } = this;
    const end = src.length;
    let i = start;
    let h = this.h;
    // FastCDC skips the first `min` bytes: no cut may fall there, so they are not hashed.
    if (n0 + i < min) i = Math.min(end, min - n0);
    const normalEnd = Math.min(end, avg - n0);
    for (; i < normalEnd; i++) {
      h = ((h << 1) + GEAR[src[i]]) | 0;
      if ((h & maskS) === 0) return this.cutAt(i + 1);
    }
    const hardEnd = Math.min(end, max - n0);
    for (; i < hardEnd; i++) {
      h = ((h << 1) + GEAR[src[i]]) | 0;
      if ((h & maskL) === 0) return this.cutAt(i + 1);
    }
    if (n0 + i >= max) return this.cutAt(i);
    this.h = h;
    return -1;
  }

  private cutAt(index: number): number {
    this.h = 0;
    return index;
  }

  private emit(tail: Buffer): Buffer {
    if (tail.length === 0 && this.acc?.length === this.pendingLen) {
      // The last chunk fills the buffer exactly (a small file's only chunk): it becomes the chunk.
      const data = this.acc;
      this.acc = null;
      this.pendingLen = 0;
      return data;
    }
    const data = Buffer.allocUnsafe(this.pendingLen + tail.length);
    if (this.pendingLen > 0) this.acc!.copy(data, 0, 0, this.pendingLen);
    tail.copy(data, this.pendingLen);
    this.pendingLen = 0;
    return data;
  }
}

function withId(data: Buffer): Chunk {
  return { data, id: contentId(data) };
}
