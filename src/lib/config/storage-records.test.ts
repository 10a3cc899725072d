// The storage records' rules: what a disk and a volume record may hold, and which placement policy a path gets.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { diskRecordSchema, policyFor, volumeRecordSchema } from './storage-records.ts';

describe('storage records', () => {
  const volume = volumeRecordSchema.parse({
    primary: 'st1',
    followers: ['st2'],
    policy: { copies: 2, failure_domain: 'node' },
    folders: { '/photos': { copies: 3, failure_domain: 'node' }, '/photos/raw': { copies: 1, failure_domain: 'disk' }, '/tmp/': { copies: 1, failure_domain: 'disk' } },
    created_at: 1,
  });

  it('gives a path its nearest folder\'s policy, else the volume\'s', () => {
    assert.deepEqual(policyFor(volume, '/photos/a.jpg'), { copies: 3, failure_domain: 'node' });
    assert.deepEqual(policyFor(volume, '/photos'), { copies: 3, failure_domain: 'node' });
    assert.deepEqual(policyFor(volume, '/photos/raw/x.cr2'), { copies: 1, failure_domain: 'disk' });
    assert.deepEqual(policyFor(volume, '/photosmore/a.jpg'), { copies: 2, failure_domain: 'node' }, 'a prefix of a name is not a folder');
    assert.deepEqual(policyFor(volume, '/tmp/x'), { copies: 1, failure_domain: 'disk' });
    assert.deepEqual(policyFor(volume, '/home/alice/a'), { copies: 2, failure_domain: 'node' });
    assert.equal(volume.keep_versions, 10);
  });

  it('refuses malformed records with the field named', () => {
    const bad = volumeRecordSchema.safeParse({ primary: 'st1', followers: ['st1'], policy: { copies: 9, failure_domain: 'rack' }, created_at: 1 });
    assert.equal(bad.success, false);
    const paths = bad.error!.issues.map((i) => i.path.join('.'));
    assert.ok(paths.includes('policy.copies') && paths.includes('policy.failure_domain'), JSON.stringify(paths));
    assert.equal(diskRecordSchema.safeParse({ path: 'relative/dir', added_at: 1 }).success, false);
    assert.equal(diskRecordSchema.safeParse({ path: '/mnt/d1', added_at: 1, extra: true }).success, false);
    assert.equal(diskRecordSchema.parse({ path: '/mnt/d1', added_at: 1 }).state, 'active');
  });
});
