// The chunks a dfs disk holds in its packs (docs/dcfs.md, "Layout on a disk"), read straight from the files, for tests
// that damage stored chunks behind the service's back and then check that they were made whole again.
import { createHash } from 'node:crypto';
import { closeSync, lstatSync, openSync, readFileSync, readdirSync, readSync, writeSync } from 'node:fs';
import { join } from 'node:path';

/** One small or large chunk's record in a pack: where its bytes are. */
export interface PackedChunk {
  pack: string;
  /** Where the chunk's bytes start in the pack. */
  offset: number;
  length: number;
  /** `sha256:<hex>` from the record's header. */
  id: string;
}

const HEADER = 48;
const MAGIC = 0x31524344;
const DATA = 1;

/** The pack files of a disk directory that are regular files (a test may have replaced some with links). */
export function packFiles(disk: string): string[] {
  const dir = join(disk, 'packs');
  return readdirSync(dir)
    .filter((n) => n.endsWith('.pack'))
    .sort()
    .map((n) => join(dir, n))
    .filter((p) => lstatSync(p).isFile());
}

/** Every chunk record in the disk's readable packs, in pack order (a chunk stored again appears again). */
export function packedChunks(disk: string): PackedChunk[] {
  const out: PackedChunk[] = [];
  for (const pack of packFiles(disk)) {
    const buf = readFileSync(pack);
    let pos = 0;
    while (pos + HEADER <= buf.length && buf.readUInt32LE(pos) === MAGIC) {
      const type = buf.readUInt32LE(pos + 4);
      const length = buf.readUInt32LE(pos + 8);
      const id = `sha256:${buf.subarray(pos + 12, pos + 44).toString('hex')}`;
      if (type === DATA) {
        out.push({ pack, offset: pos + HEADER, length, id });
        pos += HEADER + length;
      } else pos += HEADER;
    }
  }
  return out;
}

/** Whether the record's bytes still hash to its id. */
export function chunkIntact(c: PackedChunk): boolean {
  const fd = openSync(c.pack, 'r');
  try {
    const buf = Buffer.alloc(c.length);
    readSync(fd, buf, 0, c.length, c.offset);
    return `sha256:${createHash('sha256').update(buf).digest('hex')}` === c.id;
  } finally {
    closeSync(fd);
  }
}

/** Flips one bit of the chunk's bytes in place (the pack keeps its inode, so a running store reads the damage). */
export function flipByte(c: PackedChunk, at = Math.floor(c.length / 2)): void {
  const fd = openSync(c.pack, 'r+');
  try {
    const b = Buffer.alloc(1);
    readSync(fd, b, 0, 1, c.offset + at);
    b[0]! ^= 0x01;
    writeSync(fd, b, 0, 1, c.offset + at);
  } finally {
    closeSync(fd);
  }
}

/** The distinct chunks of `chunks`, the last record of each (the one a store's index points at). */
export function latestById(chunks: readonly PackedChunk[]): PackedChunk[] {
  return [...new Map(chunks.map((c) => [c.id, c])).values()];
}
