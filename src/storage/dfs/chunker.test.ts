import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import {
  Chunker, DEFAULT_CHUNKER_OPTIONS, contentId, isChunkId, type Chunk, type ChunkerOptions,
} from './chunker.ts';

/** A seeded generator (xorshift32), so a failing case can be reproduced from its seed. */
function prng(seed: number): () => number {
  let x = seed | 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 2 ** 32;
  };
}

function pseudoRandomBytes(n: number, seed: number): Buffer {
  const rnd = prng(seed);
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) b[i] = (rnd() * 256) | 0;
  return b;
}

function chunkAll(data: Buffer, opts?: Partial<ChunkerOptions>, splits: number[] = []): Chunk[] {
  const c = new Chunker(opts);
  const out: Chunk[] = [];
  let pos = 0;
  for (const s of [...splits, data.length]) {
    out.push(...c.push(data.subarray(pos, s)));
    pos = s;
  }
  out.push(...c.end());
  return out;
}

const sizes = (cs: Chunk[]) => cs.map((c) => c.data.length);
const small: Partial<ChunkerOptions> = { min: 2048, avg: 8192, max: 32768 };

describe('chunker', () => {
  it('uses the documented defaults', () => {
    const c = new Chunker();
    assert.deepEqual({ min: c.min, avg: c.avg, max: c.max }, { ...DEFAULT_CHUNKER_OPTIONS });
    assert.deepEqual(DEFAULT_CHUNKER_OPTIONS, { min: 65536, avg: 262144, max: 1048576 });
  });

  it('produces chunks whose concatenation is the input, with correct ids, wherever the input is split', () => {
    const rnd = prng(7);
    for (let round = 0; round < 40; round++) {
      const len = Math.floor(rnd() * 300_000);
      const data = pseudoRandomBytes(len, round + 1);
      const whole = chunkAll(data, small);
      assert.deepEqual(Buffer.concat(whole.map((c) => c.data)), data);
      for (const c of whole) assert.equal(c.id, `sha256:${createHash('sha256').update(c.data).digest('hex')}`);
      const splits = Array.from({ length: Math.floor(rnd() * 30) }, () => Math.floor(rnd() * (len + 1))).sort((a, b) => a - b);
      const pieces = chunkAll(data, small, splits);
      assert.deepEqual(pieces.map((c) => c.id), whole.map((c) => c.id), `round ${round}: split points moved the cuts`);
    }
  });

  it('gives the same chunks when fed one byte at a time', () => {
    const data = pseudoRandomBytes(60_000, 99);
    const c = new Chunker(small);
    const out: Chunk[] = [];
    for (let i = 0; i < data.length; i++) out.push(...c.push(data.subarray(i, i + 1)));
    out.push(...c.end());
    assert.deepEqual(out.map((x) => x.id), chunkAll(data, small).map((x) => x.id));
  });

  it('respects min and max: only the last chunk may be shorter than min', () => {
    const data = randomBytes(3_000_000);
    const cs = chunkAll(data, small);
    assert.ok(cs.length > 100);
    cs.forEach((c, i) => {
      assert.ok(c.data.length <= 32768, `chunk ${i} longer than max`);
      if (i < cs.length - 1) assert.ok(c.data.length >= 2048, `chunk ${i} shorter than min`);
    });
    const mean = data.length / cs.length;
    assert.ok(mean > 4096 && mean < 16384, `mean chunk size ${mean} far from avg`);
  });

  it('cuts low-entropy input at max, and the ends of the input are cut correctly', () => {
    const zeros = Buffer.alloc(100_000);
    const cs = chunkAll(zeros, small);
    assert.deepEqual(sizes(cs), [32768, 32768, 32768, 100_000 - 3 * 32768]);
    assert.equal(new Set(cs.slice(0, 3).map((c) => c.id)).size, 1);
    assert.deepEqual(chunkAll(Buffer.alloc(0), small), []);
    assert.deepEqual(sizes(chunkAll(Buffer.alloc(10), small)), [10]);
    assert.deepEqual(sizes(chunkAll(Buffer.alloc(32768), small)), [32768]);
  });

  it('is deterministic across instances', () => {
    const data = pseudoRandomBytes(500_000, 3);
    assert.deepEqual(chunkAll(data, small).map((c) => c.id), chunkAll(Buffer.from(data), small).map((c) => c.id));
  });

  it('an insertion near the start changes only the chunks around it (dedup)', () => {
    // Fixed bytes, so the test checks the same cuts every run rather than a fresh random draw.
    const data = pseudoRandomBytes(4 * 1024 * 1024, 7);
    const before = chunkAll(data);
    const edited = Buffer.concat([data.subarray(0, 1000), Buffer.from('inserted bytes'), data.subarray(1000)]);
    const after = chunkAll(edited);
    const old = new Set(before.map((c) => c.id));
    const changed = after.filter((c) => !old.has(c.id));
    assert.ok(before.length >= 8);
    assert.ok(changed.length <= 2, `${changed.length} of ${after.length} chunks changed`);
    assert.equal(after[after.length - 1].id, before[before.length - 1].id);
    // A deletion in the middle likewise: the chunk it falls in, and the next when it swallows a cut point.
    const mid = Math.floor(data.length / 2);
    const cut = chunkAll(Buffer.concat([data.subarray(0, mid), data.subarray(mid + 5000)]));
    const changedByCut = cut.filter((c) => !old.has(c.id)).length;
    assert.ok(changedByCut <= 2, `${changedByCut} of ${cut.length} chunks changed by the deletion`);
  });

  it('does not keep references to the buffers the caller pushed', () => {
    const data = pseudoRandomBytes(50_000, 11);
    const expected = chunkAll(data, small).map((c) => c.id);
    const c = new Chunker(small);
    const out: Chunk[] = [];
    const buf = Buffer.alloc(1000);
    for (let o = 0; o < data.length; o += 1000) {
      data.copy(buf, 0, o, o + 1000);
      out.push(...c.push(buf));
      buf.fill(0xee);
    }
    out.push(...c.end());
    assert.deepEqual(out.map((x) => x.id), expected);
    for (const x of out) assert.equal(contentId(x.data), x.id);
  });

  it('accepts Uint8Array input and refuses bad options and use after end', () => {
    const data = pseudoRandomBytes(40_000, 5);
    const c = new Chunker(small);
    const out = [...c.push(new Uint8Array(data.buffer, data.byteOffset, data.length)), ...c.end()];
    assert.deepEqual(out.map((x) => x.id), chunkAll(data, small).map((x) => x.id));
    assert.throws(() => c.push(Buffer.alloc(1)), /after end/);
    assert.deepEqual(c.end(), []);
    assert.throws(() => new Chunker({ min: 1000, avg: 500, max: 2000 }), RangeError);
    assert.throws(() => new Chunker({ min: 16, avg: 512, max: 2048 }), RangeError);
    assert.throws(() => new Chunker({ min: 1.5 }), RangeError);
  });

  it('ids: contentId and isChunkId agree', () => {
    const data = randomBytes(100_000);
    const id = contentId(data);
    assert.equal(id, `sha256:${createHash('sha256').update(data).digest('hex')}`);
    assert.equal(contentId(''), 'sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
    assert.ok(isChunkId(id));
    for (const bad of [id.toUpperCase(), id.slice(0, -1), `${id}0`, `sha1:${id.slice(7)}`, `sha256:../${id.slice(10)}`, 42, undefined]) {
      assert.equal(isChunkId(bad), false, String(bad));
    }
  });

  it('cut/finish give push/end\'s chunks without ids', () => {
    const data = pseudoRandomBytes(3 * 1024 * 1024, 7);
    const c = new Chunker();
    const bufs = [...c.cut(data.subarray(0, 1_000_000)), ...c.cut(data.subarray(1_000_000)), ...c.finish()];
    const chunks = chunkAll(data);
    assert.deepEqual(bufs.map((b) => b.length), chunks.map((x) => x.data.length));
    assert.deepEqual(bufs.map(contentId), chunks.map((x) => x.id));
  });

  it('throughput (reported, not asserted)', () => {
    const data = randomBytes(128 * 1024 * 1024);
    const c = new Chunker();
    const t = performance.now();
    let n = 0;
    for (let o = 0; o < data.length; o += 1 << 20) n += c.push(data.subarray(o, o + (1 << 20))).length;
    n += c.end().length;
    const s = (performance.now() - t) / 1000;
    console.log(`chunker: ${(128 / s).toFixed(0)} MiB/s chunking + SHA-256 (defaults), ${n} chunks, mean ${(128 * 1024 / n).toFixed(0)} KiB`);
  });
});
