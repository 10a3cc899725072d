// Placement rules as a table: failure domains, existing copies kept, the local node first, free space, draining and
// dead disks, and a clear refusal when the zone cannot satisfy a policy.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { type DiskInfo, placeChunk } from './placement.ts';

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
});
