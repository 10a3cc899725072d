// A node's disks across restarts: a disk whose chunk store was made here must find it where it was made, so an
// unmounted disk is reported, not replaced by an empty store on whatever lies under its mount point.
import { describe, it, beforeEach, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { DiskSet } from './disks.ts';

const log = pino({ level: 'silent' });

describe('DiskSet', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'disks-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('makes a store once; later, a missing store is an unmounted disk, reported and not made anew', async () => {
    const made = join(dir, 'disks-made.json');
    const path = join(dir, 'mnt', 'd1');
    mkdirSync(join(dir, 'mnt'));
    const records = new Map([['d1', { path, state: 'active' as const, added_at: 1 }]]);

    const first = new DiskSet(log, made);
    await first.sync(records);
    assert.ok(first.get('d1')?.store, 'a new disk gets its store');
    assert.deepEqual(JSON.parse(readFileSync(made, 'utf8')), ['d1']);
    await first.close();

    // The disk is not mounted: its directory is gone, and an empty mount point stands where it was.
    renameSync(path, join(dir, 'elsewhere'));
    mkdirSync(path);
    const second = new DiskSet(log, made);
    await second.sync(records);
    assert.equal(second.get('d1')?.store, null);
    assert.match(second.get('d1')?.error ?? '', /no chunk store in .*d1, where this disk's was made: is the disk mounted\?/);
    assert.equal(existsSync(join(path, 'index.sqlite')), false, 'no store was made on the mount point');
    await second.close();

    // Mounted again: the store is found.
    rmSync(path, { recursive: true });
    renameSync(join(dir, 'elsewhere'), path);
    const third = new DiskSet(log, made);
    await third.sync(records);
    assert.ok(third.get('d1')?.store);
    await third.close();
  });
});
