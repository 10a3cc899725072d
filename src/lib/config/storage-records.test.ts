// The storage records' rules: what a disk and a volume record may hold, and which placement policy a path gets.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { diskRecordSchema, policyFor, promoteFollower, volumeRecordSchema, withFollowers } from './storage-records.ts';

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

  it('promotes a follower to primary, dropping the old primary, and refuses any other node', () => {
    const three = volumeRecordSchema.parse({ ...volume, followers: ['st2', 'st3'] });
    const p = promoteFollower(three, 'st3');
    assert.equal(p.primary, 'st3');
    assert.deepEqual(p.followers, ['st2']);
    assert.deepEqual(p.policy, three.policy);
    assert.deepEqual(p.folders, three.folders);
    assert.equal(p.created_at, three.created_at);
    assert.throws(() => promoteFollower(three, 'st1'), /st1 is not a follower of the volume \(st1 is its primary; its followers are st2, st3\)/);
    assert.throws(() => promoteFollower(promoteFollower(volume, 'st2'), 'st1'), /it has no followers/);
  });

  it('sets followers: each once, never the primary, at most eight, each a device name', () => {
    assert.deepEqual(withFollowers(volume, ['st3', 'st2']).followers, ['st3', 'st2']);
    assert.deepEqual(withFollowers(volume, []).followers, []);
    assert.throws(() => withFollowers(volume, ['st1']), /st1 is the volume's primary/);
    assert.throws(() => withFollowers(volume, ['st2', 'st2']), /st2 is named twice/);
    assert.throws(() => withFollowers(volume, Array.from({ length: 9 }, (_, i) => `n${i}`)));
    assert.throws(() => withFollowers(volume, ['Not A Name']));
  });
});
