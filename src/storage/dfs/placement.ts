// Where a chunk's copies go (docs/dcfs.md, "Placement"): a pure choice among the zone's disks, so the writer, the
// re-replicator and the rebalancer all place alike and table tests can pin the rules down.
import { createHash } from 'node:crypto';
import type { PlacementPolicy } from '../../lib/config/storage-records.ts';

export interface DiskInfo {
  node: string;
  disk: string;
  /** Draining disks keep what they hold but take nothing new. */
  state: 'active' | 'draining';
  free_bytes: number;
  /** The node's dfs instance answers: a copy written there can be acknowledged. */
  live: boolean;
}

export interface DiskRef {
  node: string;
  disk: string;
}

export const sameDisk = (a: DiskRef, b: DiskRef) => a.node === b.node && a.disk === b.disk;

/** A stable, per-chunk order among equal candidates, so chunks spread over disks instead of piling on the first. */
function spread(chunkId: string, d: DiskRef): string {
  return createHash('sha256').update(`${chunkId}/${d.node}/${d.disk}`).digest('hex');
}

export type Placement = { ok: true; targets: DiskRef[] } | { ok: false; reason: string };

/**
 * The disks a chunk should be on under `policy`: the copies it already has on usable disks first (nothing moves
 * without need), then new ones, preferring this node (no network on the write path), then free space, then a per-chunk
 * spread. With failure domain `node` no two copies share a node; with `disk`, no two share a disk.
 */
export function placeChunk(opts: {
  chunkId: string;
  size: number;
  policy: PlacementPolicy;
  disks: readonly DiskInfo[];
  /** Where copies already are. */
  have?: readonly DiskRef[];
  /** The writing node. */
  local?: string;
}): Placement {
  const { policy, size } = opts;
  const usable = (d: DiskInfo) => d.live && d.state === 'active';
  const have = opts.have ?? [];
  const chosen: DiskInfo[] = [];
  const domain = (d: DiskRef) => (policy.failure_domain === 'node' ? d.node : `${d.node}/${d.disk}`);
  const taken = new Set<string>();
  const take = (d: DiskInfo) => {
    chosen.push(d);
    taken.add(domain(d));
  };
  for (const h of have) {
    const d = opts.disks.find((x) => sameDisk(x, h));
    if (d && usable(d) && !taken.has(domain(d)) && chosen.length < policy.copies) take(d);
  }
  const candidates = opts.disks
    .filter((d) => usable(d) && d.free_bytes >= size && !chosen.some((c) => sameDisk(c, d)))
    .map((d) => ({ d, local: d.node === opts.local ? 0 : 1, key: spread(opts.chunkId, d) }));
  // Free space decides among disks only roughly: a fuller disk by a few chunks must not lose every chunk to its
  // neighbour, so ties within 1% go to the spread.
  candidates.sort((a, b) => {
    if (a.local !== b.local) return a.local - b.local;
    const big = Math.max(a.d.free_bytes, b.d.free_bytes, 1);
    if (Math.abs(a.d.free_bytes - b.d.free_bytes) / big > 0.01) return b.d.free_bytes - a.d.free_bytes;
    return a.key < b.key ? -1 : 1;
  });
  for (const c of candidates) {
    if (chosen.length >= policy.copies) break;
    if (!taken.has(domain(c.d))) take(c.d);
  }
  if (chosen.length < policy.copies) {
    const domains = new Set(opts.disks.filter((d) => usable(d) && d.free_bytes >= size).map(domain)).size;
    const what = policy.failure_domain === 'node' ? 'nodes' : 'disks';
    return { ok: false, reason: `the policy needs ${policy.copies} copies on different ${what}; ${domains} usable ${what} with room are available` };
  }
  return { ok: true, targets: chosen.map(({ node, disk }) => ({ node, disk })) };
}
