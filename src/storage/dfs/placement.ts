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
  /** What the disk's chunk store holds, and the disk's size: rebalancing evens out their ratio. */
  used_bytes?: number;
  capacity_bytes?: number;
}

/** How full a disk is, as a fraction of its size. */
export function fill(d: DiskInfo): number {
  return (d.used_bytes ?? 0) / Math.max(1, d.capacity_bytes ?? 1);
}

/**
 * A copy worth moving to even out disks (docs/dcfs.md, "Scrub and repair"): from the fullest disk holding the chunk to
 * the emptiest usable disk that may take it under the failure domain, when the source is clearly fuller (by a quarter
 * of the target's fill, plus a small margin so near-equal disks do not trade chunks back and forth). Null when none.
 */
export function rebalanceMove(opts: { size: number; policy: PlacementPolicy; disks: readonly DiskInfo[]; have: readonly DiskRef[] }): { from: DiskRef; to: DiskRef } | null {
  const usable = opts.disks.filter((d) => d.live && d.state === 'active' && d.free_bytes >= opts.size);
  const holders = opts.have.map((h) => opts.disks.find((d) => sameDisk(d, h))).filter((d): d is DiskInfo => d !== undefined);
  // The fullest holder first; a holder whose copy cannot go anywhere the failure domain allows gives way to the next.
  for (const from of [...holders].sort((a, b) => fill(b) - fill(a))) {
    const others = holders.filter((h) => !sameDisk(h, from));
    const allowed = usable.filter(
      (d) => !holders.some((h) => sameDisk(h, d)) && (opts.policy.failure_domain === 'disk' || !others.some((o) => o.node === d.node)),
    );
    if (allowed.length === 0) continue;
    const to = allowed.reduce((a, b) => (fill(b) < fill(a) ? b : a));
    const margin = (2 * opts.size) / Math.max(1, to.capacity_bytes ?? 1);
    if (fill(from) > fill(to) * 1.25 + margin) return { from: { node: from.node, disk: from.disk }, to: { node: to.node, disk: to.disk } };
  }
  return null;
}

export interface DiskRef {
  node: string;
  disk: string;
}

export const sameDisk = (a: DiskRef, b: DiskRef) => a.node === b.node && a.disk === b.disk;

/** The failure domain a copy on `d` takes up under `policy`: its node, or its disk. */
export const domainOf = (policy: PlacementPolicy, d: DiskRef): string => (policy.failure_domain === 'node' ? d.node : `${d.node}/${d.disk}`);

/** A stable, per-chunk order among equal candidates, so chunks spread over disks instead of piling on the first. */
function spread(chunkId: string, d: DiskRef): string {
  return createHash('sha256').update(`${chunkId}/${d.node}/${d.disk}`).digest('hex');
}

/** A failure is `transient` when a disk in service is out of reach (a node restarting, a link down): the copies may
 * fit once it is back. Otherwise the zone's disks in service lack the room, or there are too few of them. */
export type Placement = { ok: true; targets: DiskRef[] } | { ok: false; reason: string; transient: boolean };

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
  const domain = (d: DiskRef) => domainOf(policy, d);
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
    return {
      ok: false,
      reason: `the policy needs ${policy.copies} copies on different ${what}; ${domains} usable ${what} with room are available`,
      transient: opts.disks.some((d) => !d.live && d.state === 'active'),
    };
  }
  return { ok: true, targets: chosen.map(({ node, disk }) => ({ node, disk })) };
}
