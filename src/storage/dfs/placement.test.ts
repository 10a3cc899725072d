// Placement rules as a table: failure domains, existing copies kept, the local node first, free space, draining and
// dead disks, and a clear refusal when the zone cannot satisfy a policy.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { type DiskInfo, placeChunk, rebalanceMove } from './placement.ts';

const GB = 2 ** 30;
const disk = (node: string, d: string, over: Partial<DiskInfo> = {}): DiskInfo => ({ node, disk: d, state: 'active', free_bytes: 100 * GB, live: true, ...over });
const ZONE = [disk('a', 'd1'), disk('a', 'd2'), disk('b', 'd1'), disk('b', 'd2')];
const ids = (p: ReturnType<typeof placeChunk>) => (p.ok ? p.targets.map((t) => `${t.node}/${t.disk}`) : p.reason);

describe('chunk placement', () => {
  it('puts copies on different nodes for failure domain node, the local node first', () => {
    const p = placeChunk({ chunkId: 'sha256:1', size: 1, policy: { copies: 2, failure_domain: 'node' }, disks: ZONE, local: 'b' });
    const t = ids(p) as string[];
    assert.equal(t.length, 2);
    assert.equal(t[0]!.split('/')[0], 'b');
    assert.equal(t[1]!.split('/')[0], 'a');
  });

  it('allows two disks of one node for failure domain disk, never the same disk twice', () => {
    const p = placeChunk({ chunkId: 'sha256:2', size: 1, policy: { copies: 2, failure_domain: 'disk' }, disks: [disk('a', 'd1'), disk('a', 'd2')], local: 'a' });
    assert.deepEqual((ids(p) as string[]).sort(), ['a/d1', 'a/d2']);
    const one = placeChunk({ chunkId: 'sha256:2', size: 1, policy: { copies: 2, failure_domain: 'disk' }, disks: [disk('a', 'd1')] });
    assert.equal(one.ok, false);
    assert.match(ids(one) as string, /needs 2 copies on different disks; 1 usable disks/);
  });

  it('keeps copies where they already are', () => {
    const p = placeChunk({ chunkId: 'sha256:3', size: 1, policy: { copies: 2, failure_domain: 'node' }, disks: ZONE, local: 'a', have: [{ node: 'b', disk: 'd2' }] });
    assert.equal((ids(p) as string[])[0], 'b/d2');
  });

  it('skips draining, dead and full disks, and refuses when too few nodes are left', () => {
    const disks = [disk('a', 'd1', { state: 'draining' }), disk('a', 'd2', { live: false }), disk('b', 'd1', { free_bytes: 10 }), disk('b', 'd2'), disk('c', 'd1')];
    const p = placeChunk({ chunkId: 'sha256:4', size: 1000, policy: { copies: 2, failure_domain: 'node' }, disks });
    assert.deepEqual((ids(p) as string[]).sort(), ['b/d2', 'c/d1']);
    const three = placeChunk({ chunkId: 'sha256:4', size: 1000, policy: { copies: 3, failure_domain: 'node' }, disks });
    assert.match(ids(three) as string, /needs 3 copies on different nodes; 2 usable nodes/);
  });

  it('says whether a refusal may pass: a disk in service out of reach, or disks that lack room or are taken out', () => {
    const policy = { copies: 2, failure_domain: 'node' as const };
    const refusal = (disks: DiskInfo[]) => {
      const p = placeChunk({ chunkId: 'sha256:5', size: 1000, policy, disks });
      assert.equal(p.ok, false);
      return (p as { transient: boolean }).transient;
    };
    assert.equal(refusal([disk('a', 'd1'), disk('b', 'd1', { live: false })]), true, 'b may come back');
    assert.equal(refusal([disk('a', 'd1'), disk('b', 'd1', { free_bytes: 10 })]), false, 'b is full');
    assert.equal(refusal([disk('a', 'd1'), disk('b', 'd1', { state: 'draining' })]), false, 'b is being emptied');
    assert.equal(refusal([disk('a', 'd1'), disk('b', 'd1', { state: 'draining', live: false })]), false, 'a draining disk out of reach changes nothing');
  });

  it('prefers free space, and spreads chunks over disks of about equal room', () => {
    const p = placeChunk({ chunkId: 'sha256:5', size: 1, policy: { copies: 1, failure_domain: 'disk' }, disks: [disk('a', 'small', { free_bytes: GB }), disk('a', 'big', { free_bytes: 50 * GB })] });
    assert.deepEqual(ids(p), ['a/big']);
    const seen = new Set<string>();
    for (let i = 0; i < 64; i++) seen.add((ids(placeChunk({ chunkId: `sha256:${i}`, size: 1, policy: { copies: 1, failure_domain: 'disk' }, disks: [disk('a', 'd1'), disk('a', 'd2')] })) as string[])[0]!);
    assert.deepEqual([...seen].sort(), ['a/d1', 'a/d2']);
  });

  it('is deterministic', () => {
    const args = { chunkId: 'sha256:6', size: 1, policy: { copies: 2, failure_domain: 'disk' as const }, disks: ZONE, local: 'a' };
    assert.deepEqual(placeChunk(args), placeChunk(args));
  });

  it('moves a copy from a clearly fuller disk to an emptier one the failure domain allows, and leaves near-equal disks alone', () => {
    const cap = 100 * GB;
    const d = (node: string, name: string, used: number) => disk(node, name, { used_bytes: used, capacity_bytes: cap });
    const policy = { copies: 2, failure_domain: 'disk' as const };
    const zone = [d('a', 'd1', 10 * GB), d('a', 'd2', 10 * GB), d('a', 'd3', 0)];
    assert.deepEqual(rebalanceMove({ size: 1, policy, disks: zone, have: [{ node: 'a', disk: 'd1' }, { node: 'a', disk: 'd2' }] }), {
      from: { node: 'a', disk: 'd1' }, to: { node: 'a', disk: 'd3' },
    });
    const even = [d('a', 'd1', 10 * GB), d('a', 'd2', 9 * GB), d('a', 'd3', 9 * GB)];
    assert.equal(rebalanceMove({ size: 1, policy, disks: even, have: [{ node: 'a', disk: 'd1' }, { node: 'a', disk: 'd2' }] }), null);
    const byNode = [d('a', 'd1', 10 * GB), d('b', 'd1', 10 * GB), d('b', 'd2', 0)];
    assert.equal(
      rebalanceMove({ size: 1, policy: { copies: 2, failure_domain: 'node' }, disks: byNode, have: [{ node: 'a', disk: 'd1' }, { node: 'b', disk: 'd1' }] })?.to.disk,
      'd2',
      'within node b: the copy on a stays where it is',
    );
    const wouldShare = [d('a', 'd1', 10 * GB), d('b', 'd1', 5 * GB), d('a', 'd2', 0)];
    assert.equal(rebalanceMove({ size: 1, policy: { copies: 2, failure_domain: 'node' }, disks: wouldShare, have: [{ node: 'a', disk: 'd1' }, { node: 'b', disk: 'd1' }] })?.to.disk, 'd2');
    const draining = [d('a', 'd1', 10 * GB), d('a', 'd2', 10 * GB), { ...d('a', 'd3', 0), state: 'draining' as const }];
    assert.equal(rebalanceMove({ size: 1, policy, disks: draining, have: [{ node: 'a', disk: 'd1' }, { node: 'a', disk: 'd2' }] }), null);
  });
});
