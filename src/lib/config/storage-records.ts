// The storage records in system-config (docs/dcfs.md, "Configuration"): which disks each storage node holds and how
// each volume is placed. Admins write them through the dfs API (which checks what only the node can check, such as
// whether a disk's directory exists there); every dfs instance reads them. In lib because the dfs service, the
// scheduler and the CLI all read them.
import { z } from 'zod';
import { deviceName } from '../identity/names.ts';

export const DISK_ID = /^[a-z0-9][a-z0-9-]{0,31}$/;
export const VOLUME_NAME = /^[a-z][a-z0-9-]{0,31}$/;

export const diskIdSchema = z.string().regex(DISK_ID, 'disk id: 1-32 lowercase letters, digits or dashes');
export const volumeNameSchema = z.string().regex(VOLUME_NAME, 'volume name: 1-32 lowercase letters, digits or dashes, starting with a letter');

export const diskKey = (node: string, disk: string) => `storage/disks/${node}/${disk}`;
export const volumeKey = (volume: string) => `storage/volumes/${volume}`;
export const DISK_KEY = /^storage\/disks\/([^/]+)\/([^/]+)$/;
export const VOLUME_KEY = /^storage\/volumes\/([^/]+)$/;

/** `storage/disks/<node>/<disk>`: a directory on one of that node's disks, holding a chunk store. */
export const diskRecordSchema = z
  .object({
    /** Absolute path on the node. */
    path: z.string().min(2).max(1024).regex(/^\//, 'path: an absolute path'),
    /** `draining`: no new chunks; re-replication moves its chunks elsewhere before it is removed. */
    state: z.enum(['active', 'draining']).default('active'),
    added_at: z.number().int().nonnegative(),
  })
  .strict();
export type DiskRecord = z.infer<typeof diskRecordSchema>;

/** How many durable copies of each chunk, and what they must not share: a disk, or a whole node. */
export const placementPolicySchema = z
  .object({
    copies: z.number().int().min(1).max(8),
    failure_domain: z.enum(['disk', 'node']),
  })
  .strict();
export type PlacementPolicy = z.infer<typeof placementPolicySchema>;

/** `storage/volumes/<volume>`: a namespace, its metadata's primary node and followers, and placement. */
export const volumeRecordSchema = z
  .object({
    primary: deviceName,
    /** Nodes that keep a copy of the metadata, shipped as a log, and serve reads when cut off from the primary. */
    followers: z.array(deviceName).max(8).default([]),
    policy: placementPolicySchema,
    /** Policies for folders (absolute volume paths), the most specific winning over the volume's. */
    folders: z.record(z.string().regex(/^\/[^\0]{0,1023}$/, 'folder: an absolute volume path'), placementPolicySchema).default({}),
    /** Versions kept per file, the current one included. */
    keep_versions: z.number().int().min(1).max(100).default(10),
    created_at: z.number().int().nonnegative(),
  })
  .strict()
  .refine((v) => !v.followers.includes(v.primary), { message: 'the primary cannot also be a follower', path: ['followers'] });
export type VolumeRecord = z.infer<typeof volumeRecordSchema>;

/** The policy for a path: its nearest folder's, else the volume's. */
export function policyFor(volume: VolumeRecord, path: string): PlacementPolicy {
  let best: string | null = null;
  for (const folder of Object.keys(volume.folders)) {
    const f = folder.endsWith('/') && folder !== '/' ? folder.slice(0, -1) : folder;
    const inside = f === '/' || path === f || path.startsWith(`${f}/`);
    if (inside && (best === null || f.length > best.length)) best = f;
  }
  return best === null ? volume.policy : (volume.folders[best] ?? volume.folders[`${best}/`] ?? volume.policy);
}

/**
 * The volume with `node`, one of its followers, as its primary: for when the primary is lost for good. The old primary
 * leaves the volume (it may hold changes it never shipped, so it cannot follow the new primary's log); it can be
 * added back as a follower, which then starts from an empty copy.
 */
export function promoteFollower(volume: VolumeRecord, node: string): VolumeRecord {
  if (!volume.followers.includes(node)) {
    const followers = volume.followers.length > 0 ? `its followers are ${volume.followers.join(', ')}` : 'it has no followers';
    throw new Error(`${node} is not a follower of the volume (${volume.primary} is its primary; ${followers}): only a follower holds a copy of the metadata to take over`);
  }
  return volumeRecordSchema.parse({ ...volume, primary: node, followers: volume.followers.filter((f) => f !== node) });
}

/** The volume with exactly these followers (each once, never the primary). */
export function withFollowers(volume: VolumeRecord, followers: readonly string[]): VolumeRecord {
  const seen = new Set<string>();
  for (const f of followers) {
    if (f === volume.primary) throw new Error(`${f} is the volume's primary; it cannot also follow it`);
    if (seen.has(f)) throw new Error(`${f} is named twice`);
    seen.add(f);
  }
  return volumeRecordSchema.parse({ ...volume, followers: [...followers] });
}
