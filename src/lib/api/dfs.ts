// The dfs kRPC declaration (DESIGN §6, docs/dcfs.md): files and folders of the zone's volumes, uploads, trash and
// versions, quotas, and the state of disks and scrub. Disks and volumes themselves are records in system-config
// (src/lib/config/storage-records.ts), written by admins. File bytes move over plain HTTP beside it (ranges, ETags,
// resumable uploads, WebDAV, NDN): docs/dcfs.md, "HTTP". Server, client and docs derive from this object.
import { z } from 'zod';
import { defineService, method } from '../krpc/service.ts';
import { VOLUME_NAME, diskIdSchema, volumeNameSchema } from '../config/storage-records.ts';

const count = z.number().int().nonnegative();
const volume = volumeNameSchema;
/** A volume path: absolute, `/`-separated; the service checks it (traversal, names over 255 bytes, control characters). */
const path = z.string().min(1).max(4096);
const contentId = z.string().regex(/^sha256:[0-9a-f]{64}$/, 'a content id: sha256:<64 hex digits>');

/**
 * An upload id: its volume, a dot, then 22 random base64url characters. The upload's spool is on the volume's primary,
 * and the volume in the id is what lets any other dfs instance that a call or part of the upload reaches pass it on
 * there (docs/dcfs.md, "Uploads").
 */
export const UPLOAD_ID = new RegExp(`^(${VOLUME_NAME.source.slice(1, -1)})\\.([A-Za-z0-9_-]{22})$`);
const uploadId = z.string().regex(UPLOAD_ID, 'an upload id as upload_begin gives it: <volume>.<22 characters>');

export const dfsEntry = z.object({
  path: z.string(),
  type: z.enum(['file', 'dir']),
  size: count,
  /** Milliseconds since the epoch. */
  mtime: z.number(),
  created: z.number(),
  owner: z.string(),
  /** Files: the content id of the current version (also the ETag). */
  content_id: contentId.nullable(),
});
export type DfsEntry = z.infer<typeof dfsEntry>;

/** A volume as one node holds it. */
const volumeStatus = z.object({
  name: z.string(),
  role: z.enum(['primary', 'follower', 'none']),
  last_seq: count,
  /** The last entry this copy's log no longer keeps (0: it keeps them all); the log holds the entries after it. */
  log_start: count,
  /** Followers: entries the primary had, as it last answered, that this copy does not. */
  lag: count.nullable(),
  /** Followers: when a pull of the primary's log last caught up (ms; kept across restarts), null if none ever has. */
  synced_at: count.nullable(),
  /** Followers: why the last pull failed, null once one succeeds. */
  sync_error: z.string().nullable(),
});
export type DfsVolumeStatus = z.infer<typeof volumeStatus>;

const version = z.object({ version_id: z.string(), content_id: contentId, size: count, mtime: z.number(), author: z.string() });
const trashItem = z.object({ trash_id: z.string(), path: z.string(), type: z.enum(['file', 'dir']), size: count, deleted_at: z.number(), deleted_by: z.string() });

const diskStatus = z.object({
  node: z.string(),
  disk_id: z.string(),
  path: z.string(),
  state: z.enum(['active', 'draining', 'unreachable']),
  chunks: count,
  bytes: count,
  capacity_bytes: count,
  free_bytes: count,
  errors: z.object({ read: count, write: count, corrupt: count }),
  repairs: count,
  last_scrub_at: z.number().nullable(),
});

const gcTotals = z.object({
  chunks: count,
  bytes: count,
  compacted_bytes: count,
  /** Why the last round stopped short on this disk (the other disks were still collected), or null. */
  last_error: z.string().nullable(),
});
const gcState = z.object({
  running: z.boolean(),
  /** When the last round ended (ms since the epoch). */
  last_at: z.number().nullable(),
  last_outcome: z.enum(['swept', 'skipped', 'failed']).nullable(),
  /** Why the last round skipped its sweep (a volume's chunks could not be read completely) or failed. */
  last_reason: z.string().nullable(),
  live_chunks: count,
  /** Per disk of this node: chunks and bytes deleted, and pack bytes compaction gave back. */
  disks: z.record(z.string(), gcTotals),
});

/** The most entries `search` answers, and the most it looks at before it stops (a search is one walk of the
 * metadata, on the node serving the volume: bounded so one call cannot hold it for long). */
/** The slowest rate a commit is waited for at: a small storage node writing its copies over a slow link, with room. */
const COMMIT_FLOOR_BYTES_PER_S = 4 * 1024 * 1024;

/**
 * How long a client waits for `upload_commit` of an upload of `size` bytes. A commit stores the whole file (chunking,
 * hashing, every durable copy), which for a file of some gigabytes takes far longer than an ordinary call's 30 s; a
 * client that gave up early would report a failure for a file that then appears.
 */
export function uploadCommitTimeoutMs(size: number): number {
  return 60_000 + Math.ceil((size / COMMIT_FLOOR_BYTES_PER_S) * 1000);
}

export const SEARCH_MAX_RESULTS = 500;
export const SEARCH_MAX_VISITED = 20_000;

export const dfsApi = defineService('dfs', 'dcfs-lite: the zone\'s files (volumes, folders, versions, trash, uploads), quotas, and the state of disks and scrub.', {
  list: method({
    params: z.object({ volume, path }).strict(),
    result: z.object({ entries: z.array(dfsEntry) }),
    doc: 'The entries of a folder, sorted by name. Needs read on obj://dfs/<volume>/<path>.',
  }),
  stat: method({
    params: z.object({ volume, path }).strict(),
    result: dfsEntry,
    doc: 'One entry. NOT_FOUND when there is none. Needs read.',
  }),
  mkdir: method({
    params: z.object({ volume, path, parents: z.boolean().default(false) }).strict(),
    result: dfsEntry,
    doc: 'Creates a folder (and missing parents with `parents`). ALREADY_EXISTS when something is there. Needs create.',
  }),
  rename: method({
    params: z.object({ volume, from: path, to: path, overwrite: z.boolean().default(false) }).strict(),
    result: dfsEntry,
    doc: 'Moves a file or folder (with everything in it). Needs read and delete on the source and create on the destination, for a folder on everything in it too (and delete on all of a folder `overwrite` replaces). A file moved over a file (`overwrite`) becomes its newest version, the replaced content kept as an older one: that needs write on it instead. In /public only an entry\'s owner or an admin may move it; only an admin the root, /home, /public and a home folder.',
  }),
  copy: method({
    params: z.object({ volume, from: path, to: path, overwrite: z.boolean().default(false) }).strict(),
    result: dfsEntry,
    doc: 'Copies by reference: the copy shares the original\'s chunks, so it costs metadata only. Needs read on the source and create on the destination, for a folder on everything in it too (and delete on all of a folder `overwrite` replaces); counts against the quota.',
  }),
  delete: method({
    params: z.object({ volume, path }).strict(),
    result: z.object({ trash_id: z.string() }),
    doc: 'Moves a file or folder to the volume\'s trash, from where `restore` brings it back. Needs delete, for a folder on everything in it. In /public only an entry\'s owner or an admin may delete it; only an admin the root, /home, /public and a home folder.',
  }),
  trash_list: method({
    params: z.object({ volume }).strict(),
    result: z.object({ items: z.array(trashItem) }),
    doc: 'What is in the trash that the caller may read.',
  }),
  restore: method({
    params: z.object({ volume, trash_id: z.string().min(1).max(64), to: path.optional() }).strict(),
    result: dfsEntry,
    doc: 'Brings an item back from the trash, to where it was or to `to`. ALREADY_EXISTS when that place is taken. Needs read where it was and create there, for a folder on everything it holds; from /public, only by whoever owns all of it, or an admin.',
  }),
  trash_purge: method({
    params: z.object({ volume, trash_id: z.string().min(1).max(64) }).strict(),
    result: z.object({ purged: z.literal(true) }),
    doc: 'Deletes an item in the trash for good: it can no longer be restored. An item of more than 250 entries leaves the trash at once and is deleted in batches over the following moments, its owners\' usage going down as they go. Needs delete on the path it was removed from, for a folder on everything it held; from /public, only by whoever owns all of it, or an admin.',
  }),
  search: method({
    params: z.object({
      volume,
      path,
      query: z.string().min(1).max(255).refine((q) => q.trim() !== '', 'a name or part of one, not only spaces').refine((q) => !/[\u0000-\u001f\u007f]/.test(q), 'no control characters'),
      limit: z.number().int().min(1).max(SEARCH_MAX_RESULTS).default(100),
    }).strict(),
    result: z.object({ entries: z.array(dfsEntry), truncated: z.boolean() }),
    doc: `Files and folders anywhere under the folder \`path\` whose name contains \`query\` (case-insensitive, Unicode NFC), nearest first (breadth first, by name within a folder), at most \`limit\`. \`truncated\` when more matched, or when the search stopped after looking at ${SEARCH_MAX_VISITED} entries. Needs read on \`path\`; what below it the caller may not read is neither shown nor searched.`,
  }),
  versions: method({
    params: z.object({ volume, path }).strict(),
    result: z.object({ versions: z.array(version) }),
    doc: 'The kept versions of a file, newest first (the volume keeps `keep_versions`). Needs read.',
  }),
  restore_version: method({
    params: z.object({ volume, path, version_id: z.string().min(1).max(64) }).strict(),
    result: dfsEntry,
    doc: 'Makes an older version current again (as a new version). Needs write.',
  }),
  upload_begin: method({
    params: z.object({ volume, path, size: count.max(2 ** 50), overwrite: z.boolean().default(true) }).strict(),
    result: z.object({ upload_id: z.string(), offset: count, url: z.string() }),
    doc: 'Starts a resumable upload of `size` bytes to `path`: PUT the bytes to `url` (Content-Range or `?offset=`), in one or several parts, then `upload_commit`. Needs create (or write to replace). The id names the volume (`<volume>.<22 characters>`): every call and part of the upload runs on the volume\'s primary, wherever it is sent.',
  }),
  upload_status: method({
    params: z.object({ upload_id: uploadId }).strict(),
    result: z.object({ offset: count, size: count, expires_at: z.number() }),
    doc: 'How many bytes an upload holds: where to resume after a broken connection.',
  }),
  upload_commit: method({
    params: z.object({ upload_id: uploadId, content_id: contentId.optional() }).strict(),
    result: dfsEntry,
    doc: 'Makes a complete upload the file\'s new version, once every chunk has the durable copies its policy asks for. With `content_id`, the bytes must hash to it (else CONFLICT and nothing changes).',
  }),
  upload_abort: method({
    params: z.object({ upload_id: uploadId }).strict(),
    result: z.object({ aborted: z.literal(true) }),
    doc: 'Drops an upload; nothing becomes visible.',
  }),
  usage: method({
    params: z.object({ volume, user: z.string().min(1).max(64).optional() }).strict(),
    result: z.object({ user: z.string(), used_bytes: count, quota_bytes: count.nullable() }),
    doc: 'A user\'s usage and quota on a volume (the caller\'s own without `user`; another user\'s needs admin).',
  }),
  quota_set: method({
    params: z.object({ volume, user: z.string().min(1).max(64), quota_bytes: count.nullable() }).strict(),
    result: z.object({ user: z.string(), quota_bytes: count.nullable() }),
    doc: 'Sets (or with null lifts) a user\'s quota on a volume. Admins.',
  }),
  status: method({
    params: z.object({}).strict(),
    result: z.object({
      node: z.string(),
      disks: z.array(diskStatus),
      volumes: z.array(volumeStatus),
      under_replicated: count,
      /** Copies moved between disks to even them out (a disk was added) since the service started. */
      rebalanced: count,
      scrub: z.object({ running: z.boolean(), checked: count, corrupt: count, missing: count, repaired: count }),
      /** Absent from a node running a version without collection. */
      gc: gcState.optional(),
    }),
    doc: 'Every disk in the zone as its node last reported it, this node\'s volumes with the log lag, last sync and last sync error of followers, chunks below their policy, copies moved by rebalancing, scrub progress, and chunk collection on this node (totals per disk since the service started).',
  }),
  scrub: method({
    params: z.object({ disk_id: diskIdSchema.optional() }).strict(),
    result: z.object({ started: z.boolean() }),
    doc: 'Starts a scrub of this node\'s disks (or one) now, at the configured rate: every chunk is read and its hash checked; a corrupt or missing chunk is repaired from a healthy copy. Admins.',
  }),
  gc: method({
    params: z
      .object({
        /** Volumes whose metadata is to be taken as it is now, after a round skipped because it was made anew or went back. */
        accept: z.array(volumeNameSchema).max(100).optional(),
      })
      .strict(),
    result: z.object({ started: z.boolean() }),
    doc: 'Starts a chunk collection round on this node now (one runs every hour anyway): chunks on its disks that no volume of the zone names, and that were last stored more than an hour ago, are deleted, then half-dead packs are compacted. A round whose live set cannot be read completely (a volume\'s primary out of reach) deletes nothing, and so does one that finds a volume\'s metadata made anew or gone back in its log since the last round (lost and recreated, restored from an old copy), until `accept` names that volume. `started` is false when a round is running. Progress and totals: `status`.gc. Admins.',
  }),
});
