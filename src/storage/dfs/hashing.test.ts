import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { crc32 } from 'node:zlib';
import { Chunker, contentId, type ChunkerOptions } from './chunker.ts';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FileSums, contentIdAsync, crc32Async, hashEngine, loadDfsHash, readSummed, sha256Async } from './hashing.ts';

const MiB = 1024 * 1024;

function cuts(data: Buffer, engine: 'native' | 'js', opts: Partial<ChunkerOptions> = {}, piece = data.length): number[] {
  const c = new Chunker({ ...opts, engine });
  const sizes: number[] = [];
  for (let o = 0; o < data.length; o += piece) for (const b of c.cut(data.subarray(o, o + piece))) sizes.push(b.length);
  for (const b of c.finish()) sizes.push(b.length);
  return sizes;
}

describe('dfs hashing', () => {
  it('has the native addon here (the install script builds it; CI must not fall back silently)', () => {
    const l = loadDfsHash();
    assert.ok('addon' in l, `native/dfs-hash is not loaded: ${'reason' in l ? l.reason : ''}`);
    assert.equal(hashEngine().engine, 'native');
  });

  it('the native gear scan cuts exactly where the JavaScript one does, however the input is split', () => {
    const inputs = [
      randomBytes(9 * MiB + 12_345),
      Buffer.alloc(3 * MiB + 7), // no content cut ever matches: every cut is forced at max
      Buffer.concat([randomBytes(700_000), Buffer.alloc(2 * MiB), randomBytes(1_500_000)]),
      randomBytes(10), // shorter than min: one chunk
      Buffer.alloc(0),
    ];
    for (const data of inputs) {
      const want = cuts(data, 'js');
      for (const piece of [data.length || 1, 65_536, 1_000_003, 4097]) {
        assert.deepEqual(cuts(data, 'native', {}, piece), want, `${data.length} bytes in pieces of ${piece}`);
      }
      assert.equal(want.reduce((a, b) => a + b, 0), data.length);
    }
    // Other sizes move the masks and the skipped prefix; the two must still agree.
    const data = randomBytes(2 * MiB);
    for (const opts of [{ min: 64, avg: 256, max: 1024 }, { min: 2048, avg: 8192, max: 65_536 }, { min: 100_000, avg: 131_072, max: 200_000 }]) {
      assert.deepEqual(cuts(data, 'native', opts, 10_000), cuts(data, 'js', opts, 10_000), JSON.stringify(opts));
    }
  });

  it('a file\'s sums are the same natively and in JavaScript: each chunk\'s id and CRC-32, and the whole file\'s id', async () => {
    const data = randomBytes(5 * MiB + 99);
    const chunker = new Chunker({ engine: 'js' });
    const pieces = [...chunker.cut(data), ...chunker.finish()];
    for (const engine of ['native', 'js'] as const) {
      const sums = new FileSums(engine);
      const got = await Promise.all(pieces.map((p) => sums.chunk(p)));
      assert.deepEqual(got, pieces.map((p) => ({ id: contentId(p), crc: crc32(p) })), engine);
      assert.equal(sums.size, data.length);
      assert.equal(await sums.digest(), contentId(data), engine);
      assert.throws(() => sums.chunk(Buffer.from('late')), /after digest/);
    }
    for (const engine of ['native', 'js'] as const) {
      assert.equal(await new FileSums(engine).digest(), contentId(''), `an empty file, ${engine}`);
      // A small first chunk (a small file) is hashed inline; should more follow, the file's id still covers them all.
      const small = randomBytes(4096);
      const one = new FileSums(engine);
      assert.deepEqual(await one.chunk(small), { id: contentId(small), crc: crc32(small) });
      assert.equal(await one.digest(), contentId(small));
      const more = randomBytes(300_000);
      const two = new FileSums(engine);
      await Promise.all([two.chunk(small), two.chunk(more)]);
      assert.equal(await two.digest(), contentId(Buffer.concat([small, more])), `a small first chunk, then more, ${engine}`);
    }
  });

  it('one-off SHA-256 and CRC-32 agree with node:crypto and zlib, small (inline) and large (thread pool)', async () => {
    for (const b of [Buffer.from('small'), randomBytes(70_000), randomBytes(3 * MiB)]) {
      const sha = createHash('sha256').update(b).digest();
      for (const engine of ['native', 'js'] as const) {
        assert.deepEqual(await sha256Async(b, engine), sha);
        assert.equal(await contentIdAsync(b, engine), `sha256:${sha.toString('hex')}`);
        assert.equal(await crc32Async(b, engine), crc32(b));
      }
    }
    // A view into a larger buffer is hashed as itself, not as its backing memory.
    const big = randomBytes(200_000);
    const view = new Uint8Array(big.buffer, big.byteOffset + 1000, 100_000);
    assert.deepEqual(await sha256Async(view), createHash('sha256').update(view).digest());
  });

  it('reads a stretch of a file with its SHA-256 or CRC-32 in one trip; short at the end; a failed read has its errno code', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'dfs-hashing-'));
    try {
      const bytes = randomBytes(MiB + 123);
      writeFileSync(join(dir, 'f'), bytes);
      const fh = await open(join(dir, 'f'), 'r');
      try {
        const part = bytes.subarray(1000, 1000 + 300_000);
        const bySha = await readSummed(fh.fd, part.length, 1000, 'sha256');
        assert.deepEqual(bySha?.data, part);
        assert.deepEqual(bySha?.sha, createHash('sha256').update(part).digest());
        const byCrc = await readSummed(fh.fd, part.length, 1000, 'crc32');
        assert.deepEqual(byCrc?.data, part);
        assert.equal(byCrc?.crc, crc32(part));
        const tail = await readSummed(fh.fd, 500, bytes.length - 100, 'crc32');
        assert.deepEqual(tail?.data, bytes.subarray(bytes.length - 100));
        assert.equal(tail?.crc, crc32(bytes.subarray(bytes.length - 100)));
        assert.equal(readSummed(fh.fd, 10, 0, 'crc32', 'js'), null, 'without the addon the caller reads its own way');
      } finally {
        await fh.close();
      }
      const dirFd = await open(dir, 'r');
      try {
        await assert.rejects(readSummed(dirFd.fd, 10, 0, 'crc32')!, (e: NodeJS.ErrnoException) => e.code === 'EISDIR');
      } finally {
        await dirFd.close();
      }
      await assert.rejects(readSummed(-1, 10, 0, 'crc32')!, TypeError);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
