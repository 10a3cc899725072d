// One volume's metadata (docs/dcfs.md, "Volume metadata"): directories and files as an inode table in SQLite, each
// file's kept versions as chunk lists, the trash, WebDAV dead properties, per-user quotas, and the operation log that
// followers apply.
//
// Every mutation on the primary is expressed as a list of small logical changes over ids (create node, add version,
// move node, ...). The primary applies them with the same function a follower uses to apply the log, inside the
// operation's transaction, and appends them to the log in that transaction. So a follower that has applied the log
// up to seq N holds exactly the primary's state at N, derived tables (usage, chunk references, id counters) included:
// nothing is recomputed from configuration or clocks on the follower.
import { randomUUID } from 'node:crypto';
import Database from 'better-sqlite3';
import { mkdirSync } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { dirname } from 'node:path';
import { z } from 'zod';
import { VOLUME_NAME } from '../../lib/config/storage-records.ts';
import { USER_NAME } from '../../lib/identity/documents.ts';
import { MAX_PATH_BYTES, PathError, baseName, isSameOrInside, normalizePath, parentPath, splitPath } from './paths.ts';

const SCHEMA_VERSION = 1;
export const DEFAULT_KEEP_VERSIONS = 10;
/** Directory paths remembered for lookups (VolumeMeta.dirIds); past this the memory starts again from empty. */
const DIR_CACHE = 10_000;
/** The owner of what the volume itself creates: the root, /home and /public. `kernel` is the RBAC subject of the
 * system and a name verify-hub refuses for users, so no user can come to own these. */
export const SYSTEM_OWNER = 'kernel';
export const HOME_DIR = '/home';
export const PUBLIC_DIR = '/public';
/** Where the homes of accounts that are gone are set aside (retireHome): no user name starts with a dot, so no user's
 * grants reach it; admins' do. */
export const RETIRED_HOMES_DIR = `${HOME_DIR}/.deleted`;
/** Entries a purge deletes in one transaction: a larger trashed folder leaves the trash at once and is deleted this
 * many entries at a time (finishPurges), so no commit holds the event loop for long. */
export const PURGE_BATCH = 250;
/** Dead properties are small XML fragments; bounds keep one PROPPATCH from bloating the log every follower ships. */
export const MAX_PROP_NAME_BYTES = 1024;
export const MAX_PROP_VALUE_BYTES = 64 * 1024;
/**
 * What one entry's dead properties may hold together, names and values in UTF-8 bytes, and how many there may be.
 * They are charged to no quota, yet live in the primary's database, on every follower and in the log, so without a
 * bound one file could carry any amount of data. Clients store a few small ones (Windows four Win32 times and
 * attributes, ~200 bytes): these bounds are far above that, and still take the largest name and value alone.
 */
export const MAX_PROPS_BYTES = 64 * 1024 + MAX_PROP_NAME_BYTES;
export const MAX_PROPS = 128;
const MAX_USER_BYTES = 255;
const ROOT_ID = 1;

export type MetaErrorCode =
  | 'NOT_FOUND'
  | 'NOT_FOUND_PARENT'
  | 'EXISTS'
  | 'NOT_A_DIRECTORY'
  | 'IS_A_DIRECTORY'
  | 'QUOTA_EXCEEDED'
  | 'READ_ONLY'
  | 'INVALID_PATH'
  | 'INVALID_ARGUMENT'
  | 'PRECONDITION_FAILED'
  | 'CONFLICT'
  | 'LOG_GAP';

export class MetaError extends Error {
  readonly code: MetaErrorCode;
  /** Machine-readable particulars: `reason` for INVALID_PATH; `user`, `quota`, `used`, `wanted` for QUOTA_EXCEEDED
   * of a user's quota, `path`, `props`, `bytes`, `max_props`, `max_bytes` for an entry's dead properties;
   * `expected`, `actual` for LOG_GAP. */
  readonly detail: Readonly<Record<string, string | number | null>>;

  constructor(code: MetaErrorCode, message: string, detail: Record<string, string | number | null> = {}, cause?: unknown) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = 'MetaError';
    this.code = code;
    this.detail = detail;
  }
}

export type Role = 'primary' | 'follower';
export type EntryType = 'file' | 'dir';

export interface VolumeMetaOptions {
  /** The volume's name (`storage/volumes/<volume>`); a file holding another volume is refused. */
  volume: string;
  role: Role;
  /** Versions kept per file, the current one included (the primary's setting; followers apply its drops). */
  keepVersions?: number;
  /** Milliseconds since the epoch; the primary's clock stamps every change and followers copy the stamps. */
  now?: () => number;
  /** Entries one purge transaction deletes at most (PURGE_BATCH). */
  purgeBatch?: number;
}

export interface ChunkRef {
  id: string;
  size: number;
}

export interface Version {
  version_id: string;
  /** `sha256:<hex>` of the whole file. */
  content_id: string;
  size: number;
  chunks: ChunkRef[];
  mtime: number;
  author: string;
}

/** A file's new content: what the caller stored in the chunk store. */
export interface NewVersion {
  content_id: string;
  size: number;
  chunks: ChunkRef[];
  /** The content's modification time when the client knows it (a sync client); the primary's clock otherwise. */
  mtime?: number;
}

/** What a listing or PROPFIND shows of an entry. Files: size, content_id (the ETag) and version_id of the current
 * version. Directories: size 0, both ids null. */
export interface Entry {
  id: number;
  path: string;
  name: string;
  type: EntryType;
  owner: string;
  created: number;
  mtime: number;
  size: number;
  content_id: string | null;
  version_id: string | null;
}

export interface WriteResult {
  entry: Entry;
  version: Version;
  /** Versions dropped to keep at most keepVersions. */
  dropped: Version[];
  /** Chunks no version in this volume refers to any longer: the caller may release them in the chunk stores. */
  released: ChunkRef[];
}

/** A trash entry as found by its id, without what it would cost to add up. */
export interface TrashItem {
  trash_id: string;
  /** Where the entry was when it was removed. */
  path: string;
  type: EntryType;
  owner: string;
  deleted_at: number;
  deleted_by: string;
}

export interface TrashEntry extends TrashItem {
  /** Bytes of the current versions of every file in the removed subtree. */
  size: number;
}

/** Entries below a folder, as paths relative to it. */
export interface Subtree {
  paths: string[];
  /** false: there are more than were asked for. */
  complete: boolean;
}

export interface MoveResult {
  entry: Entry;
  /** Whether the destination was taken (and overwritten). */
  overwritten: boolean;
  /** The destination an overwrite replaced, now in the trash; null when the destination was free, or when a file
   * moved over a file made the replaced content one of its kept versions instead (rename). */
  replaced: TrashEntry | null;
}

export interface PurgeResult {
  purged: string[];
  released: ChunkRef[];
}

/** One step of finishing purges (purgeStep). */
export interface EraseResult {
  /** Entries deleted. */
  erased: number;
  released: ChunkRef[];
  /** Whether purged entries are left to delete. */
  remaining: boolean;
}

export interface ApplyResult {
  applied: number;
  /** Entries at or below lastSeq, already applied (or covered by the snapshot this replica was restored from). */
  skipped: number;
  lastSeq: number;
}

/** What a snapshot of a volume's metadata holds (VolumeMeta.snapshotTo, inspectSnapshot). */
export interface SnapshotInfo {
  /** The seq of the last entry it holds: a replica made from it reads the log on from here. */
  seq: number;
  /** The last entry dropped from its log (0: none). */
  logStart: number;
  /** The metadata's identity, its primary's (instance). */
  instance: string;
}

// ---------------------------------------------------------------------------------------------------------------
// The log format. Changes name nodes, versions and trash entries by the ids the primary allocated, and carry every
// timestamp, so applying them needs nothing but the replica's own state.

const SHA256_ID = /^sha256:[0-9a-f]{64}$/;
const count = z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER);
const rowId = z.number().int().positive().max(Number.MAX_SAFE_INTEGER);
const sha256Id = z.string().regex(SHA256_ID, 'expected sha256:<64 lower-case hex digits>');
const chunkRefSchema = z.object({ id: sha256Id, size: z.number().int().positive().max(Number.MAX_SAFE_INTEGER) }).strict();

const changeSchema = z.discriminatedUnion('t', [
  z
    .object({
      t: z.literal('node'),
      id: rowId,
      parent: rowId.nullable(),
      name: z.string(),
      type: z.enum(['file', 'dir']),
      owner: z.string().min(1),
      created: count,
      mtime: count,
    })
    .strict(),
  z
    .object({
      t: z.literal('version'),
      file: rowId,
      vid: rowId,
      content_id: sha256Id,
      size: count,
      chunks: z.array(chunkRefSchema),
      mtime: count,
      author: z.string().min(1),
    })
    .strict(),
  z.object({ t: z.literal('drop'), file: rowId, vid: rowId }).strict(),
  z.object({ t: z.literal('move'), id: rowId, parent: rowId, name: z.string().min(1) }).strict(),
  z.object({ t: z.literal('touch'), id: rowId, mtime: count }).strict(),
  z
    .object({ t: z.literal('props'), id: rowId, set: z.array(z.tuple([z.string(), z.string()])), remove: z.array(z.string()) })
    .strict(),
  z
    .object({ t: z.literal('trash'), tid: rowId, id: rowId, path: z.string(), deleted_at: count, deleted_by: z.string().min(1) })
    .strict(),
  z.object({ t: z.literal('untrash'), tid: rowId, parent: rowId, name: z.string().min(1) }).strict(),
  z.object({ t: z.literal('purge'), tid: rowId }).strict(),
  z.object({ t: z.literal('purging'), tid: rowId }).strict(),
  z.object({ t: z.literal('erase'), ids: z.array(rowId).min(1) }).strict(),
  z.object({ t: z.literal('quota'), user: z.string().min(1), bytes: count.nullable() }).strict(),
  z.object({ t: z.literal('home'), user: z.string().min(1), account: z.string().min(1).nullable() }).strict(),
  z
    .object({ t: z.literal('disown'), user: z.string().min(1), owner: z.string().min(1), from: z.string().min(1), to: z.string().min(1).nullable() })
    .strict(),
]);

export const LOG_OPS = [
  'init',
  'mkdir',
  'write',
  'restore-version',
  'rename',
  'copy',
  'remove',
  'restore',
  'purge',
  'props',
  'quota',
  'ensure-home',
  'retire-home',
] as const;
export type LogOp = (typeof LOG_OPS)[number];

const logEntrySchema = z
  .object({
    seq: rowId,
    at: count,
    volume: z.string(),
    op: z.enum(LOG_OPS),
    user: z.string().nullable(),
    paths: z.array(z.string()),
    changes: z.array(changeSchema),
  })
  .strict();

export type Change = z.infer<typeof changeSchema>;
/** One mutation of the volume, as the primary applied it. `op`, `user` and `paths` say what happened for people
 * reading the log; `changes` is what a follower applies. */
export type LogEntry = z.infer<typeof logEntrySchema>;

const newVersionSchema = z
  .object({ content_id: sha256Id, size: count, chunks: z.array(chunkRefSchema), mtime: count.optional() })
  .strict()
  .refine((v) => v.chunks.reduce((n, c) => n + c.size, 0) === v.size, { message: 'the chunk sizes must add up to size' });

function zodMessage(err: z.ZodError): string {
  return err.issues.map((i) => `${i.path.length > 0 ? i.path.join('.') : 'value'}: ${i.message}`).join('; ');
}

/** Keys sorted at every depth: a follower stores the entry it applied byte for byte as the primary stored it, so a
 * re-sent entry can be checked against the stored one. */
function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const obj = value as Record<string, unknown>;
    const keys = Object.keys(obj).filter((k) => obj[k] !== undefined).sort();
    return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson(obj[k])}`).join(',')}}`;
  }
  return JSON.stringify(value);
}

// ---------------------------------------------------------------------------------------------------------------

/** How many WAL pages start a checkpoint (openDb). */
const WAL_CHECKPOINT_PAGES = 10_000;

const SCHEMA = `
CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE counters (name TEXT PRIMARY KEY, next INTEGER NOT NULL);
INSERT INTO counters (name, next) VALUES ('node', 1), ('version', 1), ('trash', 1);
-- A trashed subtree keeps its shape; only its top node is detached (parent NULL, like the root), so no path reaches it.
CREATE TABLE nodes (
  id INTEGER PRIMARY KEY,
  parent INTEGER REFERENCES nodes(id) DEFERRABLE INITIALLY DEFERRED,
  name TEXT NOT NULL,
  type TEXT NOT NULL CHECK (type IN ('file', 'dir')),
  owner TEXT NOT NULL,
  created INTEGER NOT NULL,
  mtime INTEGER NOT NULL,
  cur INTEGER REFERENCES versions(vid) DEFERRABLE INITIALLY DEFERRED,
  UNIQUE (parent, name)
);
CREATE INDEX nodes_cur ON nodes(cur);
CREATE TABLE versions (
  vid INTEGER PRIMARY KEY,
  file INTEGER NOT NULL REFERENCES nodes(id) DEFERRABLE INITIALLY DEFERRED,
  content_id TEXT NOT NULL,
  size INTEGER NOT NULL,
  chunks TEXT NOT NULL,
  mtime INTEGER NOT NULL,
  author TEXT NOT NULL
);
CREATE INDEX versions_file ON versions(file, vid);
CREATE INDEX versions_content ON versions(content_id);
CREATE TABLE props (
  node INTEGER NOT NULL REFERENCES nodes(id) DEFERRABLE INITIALLY DEFERRED,
  name TEXT NOT NULL,
  value TEXT NOT NULL,
  PRIMARY KEY (node, name)
) WITHOUT ROWID;
CREATE TABLE trash (
  tid INTEGER PRIMARY KEY,
  node INTEGER NOT NULL UNIQUE REFERENCES nodes(id) DEFERRABLE INITIALLY DEFERRED,
  path TEXT NOT NULL,
  deleted_at INTEGER NOT NULL,
  deleted_by TEXT NOT NULL
);
CREATE INDEX trash_deleted_at ON trash(deleted_at);
CREATE TABLE quotas (user TEXT PRIMARY KEY, bytes INTEGER NOT NULL);
CREATE TABLE usage (user TEXT PRIMARY KEY, bytes INTEGER NOT NULL);
-- How many version chunk lists name each chunk (a chunk listed twice in one file counts twice).
CREATE TABLE chunk_refs (id TEXT PRIMARY KEY, size INTEGER NOT NULL, refs INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE log (seq INTEGER PRIMARY KEY, entry TEXT NOT NULL);
PRAGMA user_version = ${SCHEMA_VERSION};
`;
/** The account each home folder was made for (ensureHome), so a later account of the same name is told apart. Made
 * where missing, in files from before it too. */
const HOMES_TABLE = 'CREATE TABLE IF NOT EXISTS homes (user TEXT PRIMARY KEY, account TEXT NOT NULL) WITHOUT ROWID';

interface NodeRow {
  id: number;
  parent: number | null;
  name: string;
  type: EntryType;
  owner: string;
  created: number;
  mtime: number;
  cur: number | null;
}

interface ListingRow extends NodeRow {
  content_id: string | null;
  size: number | null;
}

interface VersionRow {
  vid: number;
  file: number;
  content_id: string;
  size: number;
  chunks: string;
  mtime: number;
  author: string;
}

interface TrashRow {
  tid: number;
  node: number;
  path: string;
  deleted_at: number;
  deleted_by: string;
}

type Counter = 'node' | 'version' | 'trash';

const NODE_COLS = 'id, parent, name, type, owner, created, mtime, cur';
const VERSION_COLS = 'vid, file, content_id, size, chunks, mtime, author';
const SUBTREE = 'WITH RECURSIVE sub(id) AS (SELECT ? UNION ALL SELECT n.id FROM nodes n JOIN sub ON n.parent = sub.id)';

function statements(db: Database.Database) {
  return {
    meta: db.prepare<[string], { value: string }>('SELECT value FROM meta WHERE name = ?'),
    setMeta: db.prepare<[string, string]>(
      'INSERT INTO meta (name, value) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET value = excluded.value',
    ),
    alloc: db.prepare<[Counter], { id: number }>('UPDATE counters SET next = next + 1 WHERE name = ? RETURNING next - 1 AS id'),
    bump: db.prepare<[number, Counter]>('UPDATE counters SET next = max(next, ?) WHERE name = ?'),
    node: db.prepare<[number], NodeRow>(`SELECT ${NODE_COLS} FROM nodes WHERE id = ?`),
    child: db.prepare<[number, string], NodeRow>(`SELECT ${NODE_COLS} FROM nodes WHERE parent = ? AND name = ?`),
    children: db.prepare<[number], NodeRow>(`SELECT ${NODE_COLS} FROM nodes WHERE parent = ? ORDER BY name`),
    childIds: db.prepare<[number, number], { id: number; type: EntryType }>('SELECT id, type FROM nodes WHERE parent = ? ORDER BY name LIMIT ?'),
    hasChild: db.prepare<[number], { id: number }>('SELECT id FROM nodes WHERE parent = ? LIMIT 1'),
    // Detached subtrees no trash entry holds: purges under way (purge, purgeStep).
    purging: db.prepare<[], { id: number }>(
      `SELECT id FROM nodes n WHERE parent IS NULL AND id <> ${ROOT_ID} AND NOT EXISTS (SELECT 1 FROM trash t WHERE t.node = n.id) ORDER BY id LIMIT 2`,
    ),
    listing: db.prepare<[number], ListingRow>(
      `SELECT n.id, n.parent, n.name, n.type, n.owner, n.created, n.mtime, n.cur, v.content_id, v.size
       FROM nodes n LEFT JOIN versions v ON v.vid = n.cur WHERE n.parent = ? ORDER BY n.name`,
    ),
    subtree: db.prepare<[number], NodeRow>(`${SUBTREE} SELECT ${NODE_COLS} FROM nodes JOIN sub USING (id)`),
    // Each entry below a node as a path relative to it; the LIMIT inside the recursion stops the walk there.
    below: db.prepare<[number, number], { rel: string }>(
      `WITH RECURSIVE below(id, rel) AS (
         SELECT id, name FROM nodes WHERE parent = ?
         UNION ALL SELECT n.id, below.rel || '/' || n.name FROM nodes n JOIN below ON n.parent = below.id
         LIMIT ?)
       SELECT rel FROM below`,
    ),
    // The first entry below a node whose path relative to it is longer than the given UTF-8 bytes.
    tooDeep: db.prepare<[number, number], { rel: string }>(
      `WITH RECURSIVE below(id, rel) AS (
         SELECT id, name FROM nodes WHERE parent = ?
         UNION ALL SELECT n.id, below.rel || '/' || n.name FROM nodes n JOIN below ON n.parent = below.id)
       SELECT rel FROM below WHERE LENGTH(CAST(rel AS BLOB)) > ? LIMIT 1`,
    ),
    // The first entry at or below a node (a path relative to it, '' for the node) that `user` does not own.
    notOwned: db.prepare<[number, string], { rel: string; owner: string }>(
      `WITH RECURSIVE sub(id, rel, owner) AS (
         SELECT id, '', owner FROM nodes WHERE id = ?
         UNION ALL SELECT n.id, CASE sub.rel WHEN '' THEN n.name ELSE sub.rel || '/' || n.name END, n.owner
           FROM nodes n JOIN sub ON n.parent = sub.id)
       SELECT rel, owner FROM sub WHERE owner <> ? LIMIT 1`,
    ),
    subtreeSize: db.prepare<[number], { size: number }>(
      `${SUBTREE} SELECT IFNULL(SUM(v.size), 0) AS size FROM sub JOIN nodes n USING (id) JOIN versions v ON v.vid = n.cur`,
    ),
    insertNode: db.prepare<[number, number | null, string, EntryType, string, number, number]>(
      'INSERT INTO nodes (id, parent, name, type, owner, created, mtime, cur) VALUES (?, ?, ?, ?, ?, ?, ?, NULL)',
    ),
    moveNode: db.prepare<[number, string, number]>('UPDATE nodes SET parent = ?, name = ? WHERE id = ?'),
    detach: db.prepare<[number]>('UPDATE nodes SET parent = NULL WHERE id = ?'),
    touch: db.prepare<[number, number]>('UPDATE nodes SET mtime = ? WHERE id = ?'),
    setCur: db.prepare<[number, number, number]>('UPDATE nodes SET cur = ?, mtime = ? WHERE id = ?'),
    deleteNode: db.prepare<[number]>('DELETE FROM nodes WHERE id = ?'),
    version: db.prepare<[number], VersionRow>(`SELECT ${VERSION_COLS} FROM versions WHERE vid = ?`),
    versionsOf: db.prepare<[number], VersionRow>(`SELECT ${VERSION_COLS} FROM versions WHERE file = ? ORDER BY vid DESC`),
    insertVersion: db.prepare<[number, number, string, number, string, number, string]>(
      'INSERT INTO versions (vid, file, content_id, size, chunks, mtime, author) VALUES (?, ?, ?, ?, ?, ?, ?)',
    ),
    deleteVersion: db.prepare<[number]>('DELETE FROM versions WHERE vid = ?'),
    props: db.prepare<[number], { name: string; value: string }>('SELECT name, value FROM props WHERE node = ? ORDER BY name'),
    setProp: db.prepare<[number, string, string]>(
      'INSERT INTO props (node, name, value) VALUES (?, ?, ?) ON CONFLICT (node, name) DO UPDATE SET value = excluded.value',
    ),
    removeProp: db.prepare<[number, string]>('DELETE FROM props WHERE node = ? AND name = ?'),
    removeAllProps: db.prepare<[number]>('DELETE FROM props WHERE node = ?'),
    // How many dead properties a node has, and their names' and values' UTF-8 bytes.
    propsSize: db.prepare<[number], { count: number; bytes: number }>(
      'SELECT COUNT(*) AS count, IFNULL(SUM(LENGTH(CAST(name AS BLOB)) + LENGTH(CAST(value AS BLOB))), 0) AS bytes FROM props WHERE node = ?',
    ),
    trash: db.prepare<[number], TrashRow>('SELECT tid, node, path, deleted_at, deleted_by FROM trash WHERE tid = ?'),
    trashAll: db.prepare<[], TrashRow>('SELECT tid, node, path, deleted_at, deleted_by FROM trash ORDER BY deleted_at, tid'),
    trashBefore: db.prepare<[number], TrashRow>(
      'SELECT tid, node, path, deleted_at, deleted_by FROM trash WHERE deleted_at < ? ORDER BY deleted_at, tid',
    ),
    insertTrash: db.prepare<[number, number, string, number, string]>(
      'INSERT INTO trash (tid, node, path, deleted_at, deleted_by) VALUES (?, ?, ?, ?, ?)',
    ),
    deleteTrash: db.prepare<[number]>('DELETE FROM trash WHERE tid = ?'),
    trashOfNode: db.prepare<[number], { tid: number }>('SELECT tid FROM trash WHERE node = ?'),
    trashUnder: db.prepare<[{ path: string }], { tid: number }>(
      "SELECT tid FROM trash WHERE path = @path OR substr(path, 1, length(@path) + 1) = @path || '/' LIMIT 1",
    ),
    // The trash entries at or below `from` as if removed from the same place below `to`.
    repathTrash: db.prepare<[{ from: string; to: string }]>(
      "UPDATE trash SET path = @to || substr(path, length(@from) + 1) WHERE path = @from OR substr(path, 1, length(@from) + 1) = @from || '/'",
    ),
    home: db.prepare<[string], { account: string }>('SELECT account FROM homes WHERE user = ?'),
    homes: db.prepare<[], { user: string; account: string }>('SELECT user, account FROM homes ORDER BY user'),
    setHome: db.prepare<[string, string]>(
      'INSERT INTO homes (user, account) VALUES (?, ?) ON CONFLICT (user) DO UPDATE SET account = excluded.account',
    ),
    deleteHome: db.prepare<[string]>('DELETE FROM homes WHERE user = ?'),
    reown: db.prepare<[string, string]>('UPDATE nodes SET owner = ? WHERE owner = ?'),
    deleteUsage: db.prepare<[string]>('DELETE FROM usage WHERE user = ?'),
    quota: db.prepare<[string], { bytes: number }>('SELECT bytes FROM quotas WHERE user = ?'),
    setQuota: db.prepare<[string, number]>(
      'INSERT INTO quotas (user, bytes) VALUES (?, ?) ON CONFLICT (user) DO UPDATE SET bytes = excluded.bytes',
    ),
    deleteQuota: db.prepare<[string]>('DELETE FROM quotas WHERE user = ?'),
    usage: db.prepare<[string], { bytes: number }>('SELECT bytes FROM usage WHERE user = ?'),
    addUsage: db.prepare<[string, number]>(
      'INSERT INTO usage (user, bytes) VALUES (?, ?) ON CONFLICT (user) DO UPDATE SET bytes = bytes + excluded.bytes',
    ),
    ref: db.prepare<[string, number], { size: number }>(
      'INSERT INTO chunk_refs (id, size, refs) VALUES (?, ?, 1) ON CONFLICT (id) DO UPDATE SET refs = refs + 1 RETURNING size',
    ),
    unref: db.prepare<[string], { refs: number; size: number }>(
      'UPDATE chunk_refs SET refs = refs - 1 WHERE id = ? RETURNING refs, size',
    ),
    chunkRef: db.prepare<[string], { size: number }>('SELECT size FROM chunk_refs WHERE id = ?'),
    deleteRef: db.prepare<[string]>('DELETE FROM chunk_refs WHERE id = ?'),
    lastSeq: db.prepare<[], { seq: number | null }>('SELECT MAX(seq) AS seq FROM log'),
    synchronousNormal: db.prepare('PRAGMA synchronous = NORMAL'),
    synchronousFull: db.prepare('PRAGMA synchronous = FULL'),
    logEntry: db.prepare<[number], { entry: string }>('SELECT entry FROM log WHERE seq = ?'),
    logAfter: db.prepare<[number, number], { entry: string }>('SELECT entry FROM log WHERE seq > ? ORDER BY seq LIMIT ?'),
    appendLog: db.prepare<[number, string]>('INSERT INTO log (seq, entry) VALUES (?, ?)'),
    truncateLog: db.prepare<[number]>('DELETE FROM log WHERE seq <= ?'),
  };
}
type Statements = ReturnType<typeof statements>;

/** What applying one entry's changes did besides the changes themselves. */
class ApplyContext {
  /** How much each user's usage grew (or shrank). */
  readonly usageDelta = new Map<string, number>();
  readonly released = new Map<string, number>();
  /** `allocated`: the changes' ids came from this replica's counters (a primary's writer), which need no bump. */
  constructor(readonly allocated: boolean) {}
}

/** One primary operation in progress: its clock reading, and how it allocates ids and emits changes. */
interface Writer {
  readonly at: number;
  alloc(counter: Counter): number;
  emit(change: Change): void;
  /** Sets a directory's mtime to `at`, once per operation. */
  touch(dirId: number): void;
  /** Chunks released so far that nothing in the volume refers to any more. */
  released(): ChunkRef[];
}

function wellFormed(s: string): boolean {
  return !/\p{Cs}/u.test(s);
}

const utf8Length = (s: string): number => Buffer.byteLength(s, 'utf8');

function checkUser(user: unknown): string {
  if (typeof user !== 'string' || user === '' || !wellFormed(user) || utf8Length(user) > MAX_USER_BYTES || /[\u0000-\u001f\u007f]/.test(user)) {
    throw new MetaError(
      'INVALID_ARGUMENT',
      `invalid user ${JSON.stringify(user)}: a non-empty name of at most ${MAX_USER_BYTES} bytes with no control characters`,
    );
  }
  return user;
}

/** A user whose home a volume keeps: a user name (USER_NAME). */
function homeUser(user: unknown): string {
  const u = checkUser(user);
  if (!USER_NAME.test(u)) {
    throw new MetaError('INVALID_ARGUMENT', `"${u}" is not a user name (2-32 lowercase letters, digits, _ or -, starting with a letter)`);
  }
  return u;
}

const MAX_ACCOUNT_BYTES = 128;

function checkAccount(account: unknown): string {
  if (typeof account !== 'string' || account === '' || utf8Length(account) > MAX_ACCOUNT_BYTES || !/^[\x21-\x7e]+$/.test(account)) {
    throw new MetaError('INVALID_ARGUMENT', `invalid account ${JSON.stringify(account)}: 1 to ${MAX_ACCOUNT_BYTES} printable ASCII characters, no spaces`);
  }
  return account;
}

function parseId(id: string): number | null {
  return /^[1-9][0-9]{0,15}$/.test(id) ? Number(id) : null;
}

function toVersion(row: VersionRow): Version {
  return {
    version_id: String(row.vid),
    content_id: row.content_id,
    size: row.size,
    chunks: JSON.parse(row.chunks) as ChunkRef[],
    mtime: row.mtime,
    author: row.author,
  };
}

/** A node's entry at path `p`, with its current version `v` (none for a folder). */
function entryWith(row: NodeRow, p: string, v: Pick<VersionRow, 'vid' | 'size' | 'content_id'> | undefined): Entry {
  return {
    id: row.id,
    path: p,
    name: row.name,
    type: row.type,
    owner: row.owner,
    created: row.created,
    mtime: row.mtime,
    size: v?.size ?? 0,
    content_id: v?.content_id ?? null,
    version_id: v ? String(v.vid) : null,
  };
}

function joinChild(dir: string, name: string): string {
  return dir === '/' ? `/${name}` : `${dir}/${name}`;
}


export class VolumeMeta {
  readonly volume: string;
  readonly role: Role;
  readonly keepVersions: number;
  readonly purgeBatch: number;
  private readonly file: string;
  private readonly now: () => number;
  private readonly db: Database.Database;
  private readonly q: Statements;
  /** Mutations waiting for the next group commit (`grouped`). */
  private group: { op: () => unknown; resolve: (v: unknown) => void; reject: (e: unknown) => void }[] = [];
  /** The first log seq of each group commit whose WAL fdatasync is still under way: followers are not sent those. */
  /** The first log seq of each group whose WAL sync is under way, counted: a group that logs nothing has the same first
   * seq as the next one, and the first sync to finish must not clear the other's mark. */
  private readonly unsynced = new Map<number, number>();
  /** Set when a WAL sync failed: see commitGroup. */
  private syncFailure: MetaError | null = null;
  /** Group commits whose WAL sync is under way, each settled (answered) once it is done (durable()). */
  private readonly syncing = new Set<Promise<void>>();
  private closed = false;
  /**
   * Directories' node ids by path, so a path costs one lookup for its name rather than one per segment (a WebDAV PUT
   * resolves its path several times). Only committed state is remembered (a node id allocated in a transaction that
   * rolls back is handed out again); any change that moves or detaches nodes empties it.
   */
  private readonly dirIds = new Map<string, number>();
  /** lastSeq as of the last commit, so a write does not query it; undefined after anything that may have rolled a
   * commit back (the next read asks the database). */
  private seq: number | undefined;
  /** The primary's WAL, kept open for the group commits' fdatasyncs (opening it each time cost as much as the sync's
   * dispatch). */
  private wal: Promise<FileHandle> | null = null;
  /** Whether purges left entries to delete; undefined until asked (purgesLeft). */
  private purging: boolean | undefined;
  /** The run of finishPurges under way. */
  private finishing: Promise<void> | null = null;

  private constructor(file: string, opts: VolumeMetaOptions) {
    if (!VOLUME_NAME.test(opts.volume)) {
      throw new MetaError(
        'INVALID_ARGUMENT',
        `invalid volume name ${JSON.stringify(opts.volume)}: 1-32 lowercase letters, digits or dashes, starting with a letter`,
      );
    }
    if (opts.role !== 'primary' && opts.role !== 'follower') {
      throw new MetaError('INVALID_ARGUMENT', `role must be 'primary' or 'follower', not ${JSON.stringify(opts.role)}`);
    }
    const keep = opts.keepVersions ?? DEFAULT_KEEP_VERSIONS;
    if (!Number.isInteger(keep) || keep < 1 || keep > 1000) {
      throw new MetaError('INVALID_ARGUMENT', `keepVersions must be an integer from 1 to 1000, not ${keep}`);
    }
    const batch = opts.purgeBatch ?? PURGE_BATCH;
    if (!Number.isInteger(batch) || batch < 1 || batch > 100_000) {
      throw new MetaError('INVALID_ARGUMENT', `purgeBatch must be an integer from 1 to 100000, not ${batch}`);
    }
    this.file = file;
    this.volume = opts.volume;
    this.role = opts.role;
    this.keepVersions = keep;
    this.purgeBatch = batch;
    this.now = opts.now ?? Date.now;
    if (file !== ':memory:') mkdirSync(dirname(file), { recursive: true });
    this.db = this.openDb(new Database(file));
    this.q = statements(this.db);
  }

  /** Opens (creating if needed) the metadata file of `opts.volume`. A new primary logs its root as entry 1; a new
   * follower stays empty until it applies that entry. */
  static open(file: string, opts: VolumeMetaOptions): VolumeMeta {
    const meta = new VolumeMeta(file, opts);
    if (meta.role === 'primary' && meta.lastSeq === 0) {
      meta.mutate('init', null, ['/'], (w) => {
        w.emit({ t: 'node', id: w.alloc('node'), parent: null, name: '', type: 'dir', owner: SYSTEM_OWNER, created: w.at, mtime: w.at });
      });
    }
    return meta;
  }

  private openDb(db: Database.Database): Database.Database {
    try {
      db.pragma('journal_mode = WAL');
      // A checkpoint runs inside the commit that crosses the threshold, on the event loop, and writes each page the
      // WAL holds once, with two fsyncs. At SQLite's default (1,000 pages, one every few hundred small files) they took
      // about 5% of a small upload's time; at 10,000 pages (a WAL of up to 40 MB) the pages that many commits touch
      // (indexes, counters, the log's tail) are written once for many more commits.
      db.pragma(`wal_autocheckpoint = ${WAL_CHECKPOINT_PAGES}`);
      // The primary's metadata is the volume's truth and must survive power loss with every acknowledged write; a
      // follower can fetch again from the primary whatever its last commits lost.
      db.pragma(`synchronous = ${this.role === 'primary' ? 'FULL' : 'NORMAL'}`);
      db.pragma('foreign_keys = ON');
      const version = db.pragma('user_version', { simple: true }) as number;
      if (version === 0) {
        db.transaction(() => {
          db.exec(SCHEMA);
          db.prepare('INSERT INTO meta (name, value) VALUES (?, ?), (?, ?)').run('volume', this.volume, 'log_start', '0');
        })();
      } else if (version !== SCHEMA_VERSION) {
        throw new MetaError('CONFLICT', `${this.file} has metadata schema ${version}; this code reads schema ${SCHEMA_VERSION}`);
      }
      db.exec(HOMES_TABLE);
      // Which metadata this is: a file made anew (lost and recreated, or replaced) gets another instance, which chunk
      // collection notices (gc.ts). A database from before instances gets one now; a snapshot keeps its primary's.
      db.prepare('INSERT OR IGNORE INTO meta (name, value) VALUES (?, ?)').run('instance', randomUUID());
      const stored = (db.prepare('SELECT value FROM meta WHERE name = ?').get('volume') as { value: string } | undefined)?.value;
      if (stored !== this.volume) {
        const names = `${JSON.stringify(stored)}, not ${JSON.stringify(this.volume)}`;
        throw new MetaError('CONFLICT', `${this.file} holds the metadata of volume ${names}`);
      }
      if (this.role === 'primary' && this.file !== ':memory:') this.makeDurable(db);
      return db;
    } catch (err) {
      db.close();
      throw err;
    }
  }

  /**
   * Makes everything the file holds durable before it acts as a primary. A follower commits with synchronous=NORMAL,
   * so what it applied last may sit in a WAL that was never synced (its process killed, then promoted; or opened
   * after a crash): a primary's entries are the volume's truth, shipped to the other followers and reported by the
   * CLI, and a power cut must not take them back. A TRUNCATE checkpoint syncs the WAL, copies it into the database
   * file, syncs that and empties the WAL; with no other connection open (a primary's file is this process's alone) it
   * always completes.
   */
  private makeDurable(db: Database.Database): void {
    const [r] = db.pragma('wal_checkpoint(TRUNCATE)') as { busy: number; log: number; checkpointed: number }[];
    if (!r || r.busy !== 0 || r.log !== r.checkpointed) {
      throw new MetaError('CONFLICT', `${this.file}: its log could not be made durable before acting as primary (another connection holds the database)`);
    }
  }

  close(): void {
    this.closed = true;
    // A group queued in this turn would otherwise run on a closed database inside setImmediate, and its throw would
    // end the process.
    const queued = this.group;
    this.group = [];
    for (const g of queued) g.reject(new MetaError('READ_ONLY', `volume ${this.volume}: its metadata was closed here before this change was made`));
    void this.wal?.then((fh) => fh.close()).catch(() => {});
    this.wal = null;
    this.db.close();
  }

  /**
   * Runs `op` (mutations of this volume) in one transaction with every other `grouped` op of this event-loop turn,
   * each in its own savepoint so that one failing leaves the others, and resolves once that transaction is durable.
   * Concurrent writers share one commit instead of queueing for one each. On the primary a plain commit is an fsync
   * that blocks the event loop (synchronous=FULL); a group commits without it (NORMAL) and then fdatasyncs the WAL on
   * the thread pool, which makes the same frames durable that FULL would have, while the event loop serves other
   * requests. None is answered before that sync, and followers are not sent the group's log entries before it either.
   */
  grouped<T>(op: () => T): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.group.push({ op, resolve: resolve as (v: unknown) => void, reject });
      if (this.group.length === 1) setImmediate(() => this.commitGroup());
    });
  }

  private commitGroup(): void {
    const group = this.group;
    this.group = [];
    if (this.closed || group.length === 0) return;
    if (this.syncFailure) {
      for (const g of group) g.reject(this.syncFailure);
      return;
    }
    const deferSync = this.role === 'primary' && this.file !== ':memory:';
    const firstSeq = this.lastSeq + 1;
    if (deferSync) {
      this.unsynced.set(firstSeq, (this.unsynced.get(firstSeq) ?? 0) + 1);
      this.q.synchronousNormal.run();
    }
    const results: { ok: boolean; value: unknown }[] = [];
    const alone = (g: (typeof group)[number]) => {
      try {
        results.push({ ok: true, value: g.op() });
      } catch (err) {
        results.push({ ok: false, value: err });
      }
    };
    try {
      if (group.length === 1) alone(group[0]!);
      else {
        this.db.transaction(() => {
          for (const g of group) {
            try {
              // Nested in the open transaction, this is a savepoint: a failing op is rolled back alone.
              results.push({ ok: true, value: this.db.transaction(g.op)() });
            } catch (err) {
              // The op's savepoint is rolled back, and with it any entry it logged.
              this.seq = undefined;
              results.push({ ok: false, value: err });
            }
          }
        })();
      }
    } catch {
      // The commit itself failed, so none of the group is stored: each runs again alone and meets its own outcome.
      this.seq = undefined;
      results.length = 0;
      for (const g of group) alone(g);
    } finally {
      if (deferSync) this.q.synchronousFull.run();
    }
    const answer = () => group.forEach((g, i) => (results[i]!.ok ? g.resolve(results[i]!.value) : g.reject(results[i]!.value)));
    if (!deferSync) return answer();
    const sync = this.syncWal().then(
      () => {
        const n = this.unsynced.get(firstSeq)!;
        if (n > 1) this.unsynced.set(firstSeq, n - 1);
        else this.unsynced.delete(firstSeq);
        answer();
      },
      (err: unknown) => {
        // Committed but not known to be durable, and no later sync can be trusted to make it so: Linux may drop the
        // dirty pages of a failed fsync and report the next one clean, and a WAL missing frames loses every commit
        // after them at recovery. So nobody is told it succeeded, its entries and all later ones are never shipped
        // (its mark stays), and the volume takes no more writes here until dfs opens it again (a restart), when SQLite
        // recovers what is really on the disk.
        this.syncFailure = new MetaError(
          'READ_ONLY',
          `volume ${this.volume}: its metadata could not be made durable (${(err as Error).message}); it takes no writes until dfs is restarted`,
        );
        for (const g of group) g.reject(this.syncFailure);
      },
    );
    this.syncing.add(sync);
    void sync.finally(() => this.syncing.delete(sync));
  }

  /** Resolves once every change committed so far is durable; rejects when a group commit could not be made so. */
  async durable(): Promise<void> {
    await Promise.allSettled([...this.syncing]);
    if (this.syncFailure) throw this.syncFailure;
  }

  /** fdatasync of the WAL, on the thread pool. */
  private async syncWal(): Promise<void> {
    this.wal ??= open(`${this.file}-wal`, 'r');
    const wal = this.wal;
    try {
      await (await wal).datasync();
    } catch (err) {
      if (this.wal === wal) this.wal = null;
      void wal.then((fh) => fh.close()).catch(() => {});
      throw err;
    }
  }

  // -------------------------------------------------------------------------------------------------------------
  // Reads: the same on the primary and on a follower.

  stat(path: string): Entry {
    const p = this.path(path);
    return this.entryOf(this.mustResolve(p), p);
  }

  /** stat, or null when nothing is at the path (an invalid path still throws). */
  tryStat(path: string): Entry | null {
    const p = this.path(path);
    const row = this.resolve(p);
    return row ? this.entryOf(row, p) : null;
  }

  /** A directory's entries, sorted by name (code point order). */
  list(path: string): Entry[] {
    const p = this.path(path);
    const dir = this.mustResolve(p);
    if (dir.type !== 'dir') throw new MetaError('NOT_A_DIRECTORY', `${p} is a file, not a directory`, { path: p });
    return this.q.listing.all(dir.id).map((r) => ({
      id: r.id,
      path: joinChild(p, r.name),
      name: r.name,
      type: r.type,
      owner: r.owner,
      created: r.created,
      mtime: r.mtime,
      size: r.size ?? 0,
      content_id: r.content_id,
      version_id: r.cur === null ? null : String(r.cur),
    }));
  }

  /** A file's kept versions, newest (the current one) first. */
  versions(path: string): Version[] {
    const p = this.path(path);
    return this.q.versionsOf.all(this.mustResolveFile(p).id).map(toVersion);
  }

  /** A file's current version, or the kept version `versionId`: what a reader needs to fetch the chunks. */
  getVersion(path: string, versionId?: string): Version {
    const p = this.path(path);
    const file = this.mustResolveFile(p);
    return toVersion(this.fileVersion(file, p, versionId ?? String(file.cur)));
  }

  /** Every chunk some version of the volume names (kept versions and the trash included), in id order after
   * `after`, at most `limit`: what re-replication walks. */
  chunkIds(after = '', limit = 1000): ChunkRef[] {
    return this.db.prepare('SELECT id, size FROM chunk_refs WHERE id > ? ORDER BY id LIMIT ?').all(after, limit) as ChunkRef[];
  }

  /**
   * Current files (not in the trash) whose content is `id`, or, for a chunk id, that hold the chunk: what a read by
   * content id (NDN) checks permission against and fetches. At most `limit`.
   */
  findContent(id: string, limit = 16): { path: string; version: Version }[] {
    const whole = this.db
      .prepare('SELECT v.* FROM versions v JOIN nodes n ON n.cur = v.vid WHERE v.content_id = ? LIMIT ?')
      .all(id, limit) as VersionRow[];
    const rows = whole.length > 0 || (this.db.prepare('SELECT 1 FROM chunk_refs WHERE id = ?').get(id) === undefined)
      ? whole
      : (this.db.prepare('SELECT v.* FROM versions v JOIN nodes n ON n.cur = v.vid WHERE instr(v.chunks, ?) > 0 LIMIT ?').all(`"${id}"`, limit) as VersionRow[]);
    const out: { path: string; version: Version }[] = [];
    const byId = this.db.prepare('SELECT * FROM nodes WHERE id = ?');
    for (const r of rows) {
      const names: string[] = [];
      let node = byId.get(r.file) as NodeRow | undefined;
      // A node whose chain of parents does not reach the root is in the trash.
      while (node && node.id !== ROOT_ID && node.parent !== null) {
        names.unshift(node.name);
        node = byId.get(node.parent) as NodeRow | undefined;
      }
      if (node?.id === ROOT_ID) out.push({ path: `/${names.join('/')}`, version: toVersion(r) });
    }
    return out;
  }

  /** An entry's dead properties, by name. */
  props(path: string): Record<string, string> {
    const p = this.path(path);
    return Object.fromEntries(this.q.props.all(this.mustResolve(p).id).map((r) => [r.name, r.value]));
  }

  /**
   * The paths of the entries below `path`, relative to it (`a`, `a/b`), at most `limit` of them; `complete` is false
   * when there are more. What a caller checks permissions on before it moves, copies or removes a whole folder.
   */
  below(path: string, limit: number): Subtree {
    const p = this.path(path);
    return this.belowNode(this.mustResolve(p).id, limit);
  }

  /** `below` for what a trash entry holds, relative to its original path. */
  trashBelow(trashId: string, limit: number): Subtree {
    return this.belowNode(this.mustTrash(trashId).node, limit);
  }

  /**
   * The first entry at or below `path` that `user` does not own, and its owner; null when all of it is theirs. What a
   * caller checks before someone moves or removes something in a shared folder (files.ts, `/public`). One query over
   * the subtree, which stops at the first such entry.
   */
  notOwnedBy(path: string, user: string): { path: string; owner: string } | null {
    const p = this.path(path);
    const row = this.q.notOwned.get(this.mustResolve(p).id, checkUser(user));
    return row ? { path: row.rel === '' ? p : joinChild(p, row.rel), owner: row.owner } : null;
  }

  /** `notOwnedBy` for what a trash entry holds, named by where it was. */
  trashNotOwnedBy(trashId: string, user: string): { path: string; owner: string } | null {
    const item = this.mustTrash(trashId);
    const row = this.q.notOwned.get(item.node, checkUser(user));
    return row ? { path: row.rel === '' ? item.path : joinChild(item.path, row.rel), owner: row.owner } : null;
  }

  trashList(): TrashEntry[] {
    return this.q.trashAll.all().map((r) => this.trashEntryOf(r));
  }

  /** The trash entry `trashId`, found by its id and without its size (which trashList adds up), or null. */
  trashItem(trashId: string): TrashItem | null {
    const tid = typeof trashId === 'string' ? parseId(trashId) : null;
    const row = tid === null ? undefined : this.q.trash.get(tid);
    return row ? this.trashItemOf(row) : null;
  }

  /** Whether purges left entries to delete (finishPurges). */
  get purgesLeft(): boolean {
    this.purging ??= this.q.purging.get() !== undefined;
    return this.purging;
  }

  /** The account the home folder of `user` was made for (ensureHome), or null when none is recorded. */
  homeAccount(user: string): string | null {
    return this.q.home.get(homeUser(user))?.account ?? null;
  }

  /** Each user this volume keeps a home for: every folder in /home named like a user, and every home recorded for an
   * account, with that account (null: none recorded, as for homes made before accounts were). */
  homeUsers(): { user: string; account: string | null }[] {
    const users = new Map<string, string | null>();
    const home = this.resolve(HOME_DIR);
    if (home?.type === 'dir') {
      for (const c of this.q.children.all(home.id)) if (USER_NAME.test(c.name) && c.name !== SYSTEM_OWNER) users.set(c.name, null);
    }
    for (const r of this.q.homes.all()) users.set(r.user, r.account);
    return [...users].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([user, account]) => ({ user, account }));
  }

  /** null: no quota. */
  quota(user: string): number | null {
    return this.q.quota.get(checkUser(user))?.bytes ?? null;
  }

  /** Bytes charged to `user`: the current version of every file they own, live or in the trash. */
  usage(user: string): number {
    return this.q.usage.get(checkUser(user))?.bytes ?? 0;
  }

  // -------------------------------------------------------------------------------------------------------------
  // Mutations: the primary only.

  mkdir(path: string, user: string): Entry {
    const p = this.path(path);
    const u = checkUser(user);
    return this.mutate('mkdir', u, [p], (w) => {
      if (this.resolve(p)) throw new MetaError('EXISTS', `${p} already exists`, { path: p });
      const parent = this.mustResolveParent(p);
      const id = w.alloc('node');
      w.emit({ t: 'node', id, parent: parent.id, name: baseName(p), type: 'dir', owner: u, created: w.at, mtime: w.at });
      w.touch(parent.id);
      return this.stat(p);
    });
  }

  /** Creates the file, or makes `content` its new current version. `expectVersion`: the current version_id the caller
   * last saw (else PRECONDITION_FAILED), or null for "only if the file does not exist yet". */
  writeFile(path: string, content: NewVersion, opts: { user: string; expectVersion?: string | null }): WriteResult {
    const p = this.path(path);
    const u = checkUser(opts.user);
    const parsed = newVersionSchema.safeParse(content);
    if (!parsed.success) throw new MetaError('INVALID_ARGUMENT', `invalid file version: ${zodMessage(parsed.error)}`, { path: p });
    const v = parsed.data;
    return this.mutate('write', u, [p], (w) => {
      // Checked again against the volume's other files as the version is stored (applyChange).
      const sizes = new Map<string, number>();
      for (const c of v.chunks) {
        const known = sizes.get(c.id);
        if (known !== undefined && known !== c.size) {
          throw new MetaError('INVALID_ARGUMENT', `invalid file version: chunk ${c.id} is ${known} bytes elsewhere, not ${c.size}`, { path: p });
        }
        sizes.set(c.id, c.size);
      }
      return this.addVersion(w, p, { ...v, mtime: v.mtime ?? w.at }, u, opts.expectVersion);
    });
  }

  /** Makes a kept version current again by adding it as a new version, so the history in between is kept. */
  restoreVersion(path: string, versionId: string, opts: { user: string }): WriteResult {
    const p = this.path(path);
    const u = checkUser(opts.user);
    return this.mutate('restore-version', u, [p], (w) => {
      const old = this.fileVersion(this.mustResolveFile(p), p, versionId);
      const content = { content_id: old.content_id, size: old.size, chunks: JSON.parse(old.chunks) as ChunkRef[], mtime: w.at };
      return this.addVersion(w, p, content, u, undefined);
    });
  }

  /** Moves an entry and its subtree; owners, versions and properties go with it. With overwrite, a file moved over a
   * file becomes its new content (moveOntoFile); anything else at the destination goes to the trash first (as WebDAV
   * MOVE with Overwrite: T deletes it). */
  rename(from: string, to: string, opts: { user: string; overwrite?: boolean }): MoveResult {
    const f = this.path(from);
    const t = this.path(to);
    const u = checkUser(opts.user);
    return this.mutate('rename', u, [f, t], (w) => {
      if (f === '/') throw new MetaError('CONFLICT', 'the root of a volume cannot be moved', { path: f });
      const src = this.mustResolve(f);
      this.checkSourceAndDestination(f, t, 'move');
      this.checkRoomBelow(src, f, t, 'move');
      const existing = opts.overwrite && src.type === 'file' ? this.resolve(t) : undefined;
      if (existing?.type === 'file') return this.moveOntoFile(w, src, f, existing, t, u);
      const { parent, name, replaced } = this.clearDestination(w, f, t, u, opts.overwrite ?? false);
      w.emit({ t: 'move', id: src.id, parent: parent.id, name });
      w.touch(src.parent!);
      w.touch(parent.id);
      return { entry: this.stat(t), overwritten: replaced !== null, replaced };
    });
  }

  /** Copies by reference: new entries, owned by `user`, whose versions name the same content ids and chunks; no data
   * is copied. Only the current version of each file is copied; properties are. depth 0 copies a directory without
   * its contents (WebDAV COPY with Depth: 0). */
  copy(from: string, to: string, opts: { user: string; overwrite?: boolean; depth?: 0 | 'infinity' }): MoveResult {
    const f = this.path(from);
    const t = this.path(to);
    const u = checkUser(opts.user);
    const depth = opts.depth ?? 'infinity';
    if (depth !== 0 && depth !== 'infinity') {
      throw new MetaError('INVALID_ARGUMENT', `depth must be 0 or 'infinity', not ${JSON.stringify(depth)}`);
    }
    return this.mutate('copy', u, [f, t], (w) => {
      const src = this.mustResolve(f);
      this.checkSourceAndDestination(f, t, 'copy');
      if (depth === 'infinity') this.checkRoomBelow(src, f, t, 'copy');
      const { parent, name, replaced } = this.clearDestination(w, f, t, u, opts.overwrite ?? false);
      this.copyTree(w, src, parent.id, name, u, depth === 'infinity');
      w.touch(parent.id);
      return { entry: this.stat(t), overwritten: replaced !== null, replaced };
    });
  }

  /** Moves the entry and its subtree to the trash, where it keeps counting against its owners' quotas. */
  remove(path: string, user: string): TrashEntry {
    const p = this.path(path);
    const u = checkUser(user);
    return this.mutate('remove', u, [p], (w) => {
      if (p === '/') throw new MetaError('CONFLICT', 'the root of a volume cannot be removed', { path: p });
      return this.trashNode(w, this.mustResolve(p), p, u);
    });
  }

  /** Puts a trashed entry back at its original path, or at `to`. A taken path is EXISTS (nothing is renamed behind
   * the caller's back) and a missing parent NOT_FOUND_PARENT: restore the parent first, or pass `to`. */
  restore(trashId: string, opts: { user: string; to?: string }): Entry {
    const u = checkUser(opts.user);
    const to = opts.to === undefined ? undefined : this.path(opts.to);
    const paths: string[] = [];
    return this.mutate('restore', u, paths, (w) => {
      const row = this.mustTrash(trashId);
      const p = to ?? row.path;
      paths.push(p);
      if (p === '/') throw new MetaError('EXISTS', 'cannot restore onto the root of the volume', { path: p });
      this.checkRoomBelow(this.q.node.get(row.node)!, row.path, p, 'restore');
      const parent = this.mustResolveParent(p);
      if (this.q.child.get(parent.id, baseName(p))) {
        throw new MetaError('EXISTS', `cannot restore ${trashId} to ${p}: the path is taken; pass another path as "to"`, { path: p });
      }
      w.emit({ t: 'untrash', tid: row.tid, parent: parent.id, name: baseName(p) });
      w.touch(parent.id);
      return this.stat(p);
    });
  }

  /**
   * Deletes a trashed subtree for good. One of at most purgeBatch entries is deleted in this transaction. A larger one
   * only leaves the trash here (nothing restores it any more); finishPurges deletes its entries, purgeBatch at a time,
   * each batch its own transaction, and its owners' usage and the chunks' references go down batch by batch.
   */
  purge(trashId: string): PurgeResult {
    const paths: string[] = [];
    return this.mutate('purge', null, paths, (w) => {
      const row = this.mustTrash(trashId);
      paths.push(row.path);
      this.purgeRow(w, row, this.purgeBatch);
      return { purged: [String(row.tid)], released: w.released() };
    });
  }

  /** Purges every trash entry removed before `olderThan` (ms since the epoch); all of them when omitted. As with purge,
   * at most purgeBatch entries are deleted in this transaction, the rest by finishPurges. */
  emptyTrash(olderThan?: number): PurgeResult {
    if (olderThan !== undefined && !Number.isFinite(olderThan)) {
      throw new MetaError('INVALID_ARGUMENT', `olderThan must be a time in milliseconds, not ${olderThan}`);
    }
    const paths: string[] = [];
    return this.mutate('purge', null, paths, (w) => {
      const rows = olderThan === undefined ? this.q.trashAll.all() : this.q.trashBefore.all(olderThan);
      let room = this.purgeBatch;
      for (const r of rows) {
        paths.push(r.path);
        room -= this.purgeRow(w, r, room);
      }
      return { purged: rows.map((r) => String(r.tid)), released: w.released() };
    });
  }

  /**
   * Deletes up to purgeBatch entries that purges took out of the trash and left to delete, in one transaction (with its
   * log entry, as every change): a crash between two steps leaves the rest for the next. `remaining`: more is left.
   */
  purgeStep(): EraseResult {
    const result = this.mutate('purge', null, [], (w): EraseResult => {
      const tops = this.q.purging.all();
      if (tops.length === 0) return { erased: 0, released: [], remaining: false };
      const { ids, whole } = this.eraseBatch(tops[0]!.id, this.purgeBatch);
      w.emit({ t: 'erase', ids });
      return { erased: ids.length, released: w.released(), remaining: !whole || tops.length > 1 };
    });
    this.purging = result.remaining;
    return result;
  }

  /**
   * Deletes everything purges left to delete, one purgeStep at a time, each in a group commit of its own (grouped), so
   * other requests are served between them. A call while a run is under way joins it.
   */
  finishPurges(): Promise<void> {
    this.finishing ??= (async () => {
      try {
        while (!this.closed && (await this.grouped(() => this.purgeStep())).remaining);
      } finally {
        this.finishing = null;
      }
    })();
    return this.finishing;
  }

  /** Sets and removes dead properties in one step; returns them all afterwards. A name both set and removed is
   * refused, since the outcome would depend on an order this call does not have. */
  patchProps(path: string, set: Record<string, string>, remove: readonly string[], opts: { user?: string } = {}): Record<string, string> {
    const p = this.path(path);
    const u = opts.user === undefined ? null : checkUser(opts.user);
    const sets = this.checkProps(set, remove);
    return this.mutate('props', u, [p], (w) => {
      const node = this.mustResolve(p);
      if (sets.length === 0 && remove.length === 0) return this.props(p);
      const before = this.q.propsSize.get(node.id)!;
      w.emit({ t: 'props', id: node.id, set: sets, remove: [...remove] });
      const after = this.q.propsSize.get(node.id)!;
      // Only growth is refused, as with quotas: an entry over the bounds (written before there were any) can shrink.
      if ((after.bytes > MAX_PROPS_BYTES && after.bytes > before.bytes) || (after.count > MAX_PROPS && after.count > before.count)) {
        throw new MetaError(
          'QUOTA_EXCEEDED',
          `the dead properties of ${p} would be ${after.count} taking ${after.bytes} bytes; an entry may hold at most ${MAX_PROPS} taking ${MAX_PROPS_BYTES} bytes`,
          { path: p, props: after.count, bytes: after.bytes, max_props: MAX_PROPS, max_bytes: MAX_PROPS_BYTES },
        );
      }
      return this.props(p);
    });
  }

  /** null removes the quota. A lower quota than the usage is allowed: it stops writes that grow the usage. */
  setQuota(user: string, bytes: number | null): void {
    const u = checkUser(user);
    if (bytes !== null && !(Number.isSafeInteger(bytes) && bytes >= 0)) {
      throw new MetaError('INVALID_ARGUMENT', `a quota is a whole number of bytes or null, not ${bytes}`);
    }
    this.mutate('quota', null, [], (w) => {
      if ((this.q.quota.get(u)?.bytes ?? null) !== bytes) w.emit({ t: 'quota', user: u, bytes });
    });
  }

  /**
   * Creates whatever is missing of /home, /public (both owned by the system) and /home/<user> (owned by the user);
   * returns the home folder. With `account` (which account of the name this is, see retireHome) the home is recorded
   * as that account's: a home recorded for another account is CONFLICT, one recorded for none (made before accounts
   * were recorded) is taken as this account's.
   */
  ensureHome(user: string, opts: { account?: string } = {}): Entry {
    const u = homeUser(user);
    const account = opts.account === undefined ? undefined : checkAccount(opts.account);
    const home = `${HOME_DIR}/${u}`;
    return this.mutate('ensure-home', u, [home], (w) => {
      const recorded = this.q.home.get(u)?.account;
      if (account !== undefined && recorded !== undefined && recorded !== account) {
        throw new MetaError('CONFLICT', `${home} is the home of an earlier account named ${u}; set it aside first (retireHome)`, { path: home });
      }
      this.ensureDir(w, HOME_DIR, SYSTEM_OWNER);
      this.ensureDir(w, PUBLIC_DIR, SYSTEM_OWNER);
      this.ensureDir(w, home, u);
      if (account !== undefined && recorded !== account) w.emit({ t: 'home', user: u, account });
      return this.stat(home);
    });
  }

  /**
   * Sets aside what the volume keeps for `user` once their account is gone (deleted, or the name now another
   * account's), so that none of it passes to a later account of the name and none of it is lost. The home folder moves
   * to RETIRED_HOMES_DIR/<user>-<UTC time>, where only admins reach it; every entry the user owns, there or anywhere
   * else, live or in the trash, passes to SYSTEM_OWNER, and the user's usage with it; their quota and the home's
   * account record are dropped; trash entries removed from inside the home are listed as removed from the same place in
   * the new folder. Entries other users own inside the home stay theirs. Answers where the home went, or null when
   * there was no home and no trash from it.
   */
  retireHome(user: string): string | null {
    const u = homeUser(user);
    const home = `${HOME_DIR}/${u}`;
    const paths = [home];
    return this.mutate('retire-home', u, paths, (w) => {
      const row = this.resolve(home);
      let to: string | null = null;
      if (row || this.q.trashUnder.get({ path: home })) {
        this.ensureDir(w, HOME_DIR, SYSTEM_OWNER);
        const parent = this.ensureDir(w, RETIRED_HOMES_DIR, SYSTEM_OWNER);
        const base = `${u}-${new Date(w.at).toISOString().replace(/[-:]|\.\d+/g, '')}`;
        let name = base;
        for (let i = 2; this.q.child.get(parent, name); i++) name = `${base}-${i}`;
        to = `${RETIRED_HOMES_DIR}/${name}`;
        if (row) {
          this.checkRoomBelow(row, home, to, 'set aside');
          w.emit({ t: 'move', id: row.id, parent, name });
          w.touch(row.parent!);
        } else {
          w.emit({ t: 'node', id: w.alloc('node'), parent, name, type: 'dir', owner: SYSTEM_OWNER, created: w.at, mtime: w.at });
        }
        w.touch(parent);
        paths.push(to);
      }
      w.emit({ t: 'disown', user: u, owner: SYSTEM_OWNER, from: home, to });
      return to;
    });
  }

  // -------------------------------------------------------------------------------------------------------------
  // The log.

  /** This metadata's identity: made with the database, kept by snapshots, new if the file is ever made anew. */
  get instance(): string {
    return (this.db.prepare('SELECT value FROM meta WHERE name = ?').get('instance') as { value: string }).value;
  }

  /** The seq of the last entry applied here; 0 for a replica that has applied nothing. */
  get lastSeq(): number {
    this.seq ??= this.q.lastSeq.get()?.seq ?? this.logStart;
    return this.seq;
  }

  /** Entries after `afterSeq`, in order, at most `limit`, and no more than `maxBytes` of them as stored once there are
   * `atLeast`: those few come however large, so that a reader always gets on. LOG_GAP when the entries right after
   * `afterSeq` were truncated: that reader must restore a snapshot. */
  log(afterSeq: number, limit = 1000, maxBytes = Infinity, atLeast = 1): LogEntry[] {
    if (!Number.isSafeInteger(afterSeq) || afterSeq < 0 || !Number.isSafeInteger(limit) || limit < 1) {
      throw new MetaError('INVALID_ARGUMENT', `log(afterSeq, limit) needs afterSeq ≥ 0 and limit ≥ 1, not (${afterSeq}, ${limit})`);
    }
    const start = this.logStart;
    if (afterSeq < start) {
      throw new MetaError(
        'LOG_GAP',
        `entries up to ${start} of volume ${this.volume} are no longer kept here; restore a snapshot, then read from ${start}`,
        { expected: afterSeq + 1, actual: start + 1 },
      );
    }
    const entries: LogEntry[] = [];
    let bytes = 0;
    for (const r of this.q.logAfter.iterate(afterSeq, limit)) {
      bytes += Buffer.byteLength(r.entry);
      if (entries.length >= atLeast && bytes > maxBytes) break;
      entries.push(JSON.parse(r.entry) as LogEntry);
    }
    if (this.unsynced.size === 0) return entries;
    const durable = Math.min(...this.unsynced.keys());
    return entries.filter((e) => e.seq < durable);
  }

  /** Applies the primary's entries (a follower only), in one transaction: all or none. Entries at or below lastSeq
   * are skipped after checking they are the ones applied here (CONFLICT if not: this replica diverged); an entry
   * beyond lastSeq + 1 is LOG_GAP. */
  apply(entries: readonly LogEntry[]): ApplyResult {
    if (this.role !== 'follower') {
      throw new MetaError('CONFLICT', `volume ${this.volume} is the primary here; only followers apply a log`);
    }
    const parsed = entries.map((e, i) => {
      const r = logEntrySchema.safeParse(e);
      if (!r.success) throw new MetaError('INVALID_ARGUMENT', `log entry ${i} is malformed: ${zodMessage(r.error)}`);
      return r.data;
    });
    return this.inTransaction(() => {
      let applied = 0;
      let skipped = 0;
      let last = this.lastSeq;
      for (const e of parsed) {
        if (e.volume !== this.volume) {
          const names = `${JSON.stringify(e.volume)}, not ${JSON.stringify(this.volume)}`;
          throw new MetaError('CONFLICT', `log entry ${e.seq} belongs to volume ${names}`);
        }
        const text = canonicalJson(e);
        if (e.seq <= last) {
          const stored = this.q.logEntry.get(e.seq);
          if (stored && stored.entry !== text) {
            throw new MetaError('CONFLICT', `log entry ${e.seq} differs from the one applied here: this replica has diverged from the primary`);
          }
          skipped++;
          continue;
        }
        if (e.seq !== last + 1) {
          throw new MetaError('LOG_GAP', `log entry ${e.seq} does not follow ${last}: entries ${last + 1}..${e.seq - 1} are missing`, {
            expected: last + 1,
            actual: e.seq,
          });
        }
        const ctx = new ApplyContext(false);
        try {
          for (const c of e.changes) this.applyChange(c, ctx);
        } catch (err) {
          throw new MetaError('CONFLICT', `log entry ${e.seq} (${e.op}) does not apply to this replica: ${(err as Error).message}`, {}, err);
        }
        this.q.appendLog.run(e.seq, text);
        this.seq = e.seq;
        last = e.seq;
        applied++;
      }
      return { applied, skipped, lastSeq: last };
    });
  }

  /** The seq of the last entry dropped from this replica's log (0: none were); the log holds the entries after it. */
  get logStart(): number {
    return Number(this.q.meta.get('log_start')?.value ?? 0);
  }

  /** Drops the entries up to `throughSeq` (at most lastSeq) from this replica's log; a reader further behind must then
   * start from a snapshot. Local housekeeping: not itself logged. Returns how many entries were dropped. */
  truncateLog(throughSeq: number): number {
    const last = this.lastSeq;
    if (!Number.isSafeInteger(throughSeq) || throughSeq < 0 || throughSeq > last) {
      throw new MetaError('INVALID_ARGUMENT', `truncateLog needs a seq from 0 to ${last}, not ${throughSeq}`);
    }
    return this.inTransaction(() => {
      const dropped = this.q.truncateLog.run(throughSeq).changes;
      if (throughSeq > this.logStart) this.q.setMeta.run('log_start', String(throughSeq));
      return dropped;
    });
  }

  /**
   * Writes a consistent copy of the whole metadata, log included, to `file` (which must not exist yet), and answers
   * what it holds. SQLite's online backup copies the pages a step at a time between turns of the event loop, so a
   * large namespace does not stall the node, and carries into the copy whatever this connection commits meanwhile:
   * the copy is the state at one seq. It is answered only once every change in it is durable here: a group commit is
   * readable before its WAL sync is done, and a follower must never install an entry a power cut could take from
   * the primary.
   */
  async snapshotTo(file: string): Promise<SnapshotInfo> {
    if (this.file === ':memory:') throw new MetaError('INVALID_ARGUMENT', 'an in-memory volume makes no snapshot');
    await this.db.backup(file);
    await this.durable();
    // The copy keeps this database's WAL mode, in which even a read-only reader makes -wal and -shm files beside it. A
    // snapshot is one file: it goes back to WAL when a replica opens it.
    const copy = new Database(file);
    try {
      copy.pragma('journal_mode = DELETE');
    } finally {
      copy.close();
    }
    return VolumeMeta.inspectSnapshot(file, this.volume, { integrity: false });
  }

  /**
   * What a snapshot file holds: the last seq, the log's start and the instance, once it proves to be metadata of this
   * schema and of `volume` (CONFLICT otherwise). With `integrity`, SQLite's integrity and foreign-key checks must
   * pass too (INVALID_ARGUMENT when they fail, or when the file is no SQLite database at all): they read every page,
   * so dfs runs them in a process of its own (snapshot-check.ts), not on its event loop.
   */
  static inspectSnapshot(file: string, volume: string, opts: { integrity: boolean }): SnapshotInfo {
    let db: Database.Database;
    try {
      db = new Database(file, { readonly: true, fileMustExist: true });
    } catch (err) {
      throw new MetaError('INVALID_ARGUMENT', `the snapshot ${file} cannot be opened: ${(err as Error).message}`, {}, err);
    }
    try {
      if (opts.integrity) {
        let problems: string[];
        try {
          problems = (db.pragma('integrity_check') as { integrity_check: string }[]).map((r) => r.integrity_check);
        } catch (err) {
          // Damage SQLite meets before it can list it (a page header that makes no sense).
          problems = [(err as Error).message];
        }
        if (problems.length !== 1 || problems[0] !== 'ok') {
          throw new MetaError('INVALID_ARGUMENT', `the snapshot ${file} is damaged: ${problems.slice(0, 3).join('; ')}`);
        }
        const dangling = (db.pragma('foreign_key_check') as unknown[]).length;
        if (dangling > 0) throw new MetaError('INVALID_ARGUMENT', `the snapshot ${file} holds ${dangling} dangling references`);
      }
      const version = db.pragma('user_version', { simple: true }) as number;
      const meta = (name: string) => (db.prepare('SELECT value FROM meta WHERE name = ?').get(name) as { value: string } | undefined)?.value;
      const held = version === SCHEMA_VERSION ? meta('volume') : undefined;
      if (held !== volume) {
        throw new MetaError('CONFLICT', `the snapshot ${file} is not a schema ${SCHEMA_VERSION} snapshot of volume ${JSON.stringify(volume)}`);
      }
      const instance = meta('instance');
      const logStart = Number(meta('log_start') ?? 0);
      if (!instance || !Number.isSafeInteger(logStart) || logStart < 0) {
        throw new MetaError('INVALID_ARGUMENT', `the snapshot ${file} lacks its instance or log start`);
      }
      const seq = (db.prepare('SELECT MAX(seq) AS seq FROM log').get() as { seq: number | null }).seq ?? logStart;
      return { seq, logStart, instance };
    } catch (err) {
      if (err instanceof MetaError) throw err;
      throw new MetaError('INVALID_ARGUMENT', `the snapshot ${file} cannot be read: ${(err as Error).message}`, {}, err);
    } finally {
      db.close();
    }
  }

  // -------------------------------------------------------------------------------------------------------------
  // Internals.

  private path(input: string): string {
    try {
      return normalizePath(input);
    } catch (err) {
      if (err instanceof PathError) throw new MetaError('INVALID_PATH', err.message, { reason: err.reason, path: err.input }, err);
      throw err;
    }
  }

  /** Runs `fn` in a transaction, turning a deferred foreign-key failure at commit (a change that left a dangling
   * reference: a follower applying a log that does not fit its state) into a CONFLICT. */
  private inTransaction<T>(fn: () => T): T {
    try {
      return this.db.transaction(fn)();
    } catch (err) {
      this.seq = undefined;
      if (err instanceof Database.SqliteError && err.code === 'SQLITE_CONSTRAINT_FOREIGNKEY') {
        throw new MetaError('CONFLICT', `the changes leave a dangling reference; this replica has diverged from the primary`, {}, err);
      }
      throw err;
    }
  }

  /** `paths` (what the entry says the operation touched) is read after `body`, which may add to it. */
  private mutate<T>(op: LogOp, user: string | null, paths: string[], body: (w: Writer) => T): T {
    if (this.role !== 'primary') {
      throw new MetaError('READ_ONLY', `volume ${this.volume} is a read-only follower here; write through its primary`);
    }
    if (this.syncFailure) throw this.syncFailure;
    return this.inTransaction(() => {
      const at = this.now();
      const ctx = new ApplyContext(true);
      const changes: Change[] = [];
      const touched = new Set<number>();
      const w: Writer = {
        at,
        alloc: (counter) => this.q.alloc.get(counter)!.id,
        emit: (change) => {
          changes.push(change);
          this.applyChange(change, ctx);
        },
        touch: (dirId) => {
          if (touched.has(dirId)) return;
          touched.add(dirId);
          w.emit({ t: 'touch', id: dirId, mtime: at });
        },
        released: () =>
          [...ctx.released]
            .filter(([id]) => !this.q.chunkRef.get(id))
            .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
            .map(([id, size]) => ({ id, size })),
      };
      const result = body(w);
      if (changes.length === 0) return result;
      this.checkQuotas(ctx);
      const entry: LogEntry = { seq: this.lastSeq + 1, at, volume: this.volume, op, user, paths, changes };
      this.q.appendLog.run(entry.seq, canonicalJson(entry));
      this.seq = entry.seq;
      return result;
    });
  }

  /** Only growth is refused, so a user over a lowered quota can still delete, shrink and purge. */
  private checkQuotas(ctx: ApplyContext): void {
    for (const [user, delta] of ctx.usageDelta) {
      if (delta <= 0) continue;
      const quota = this.q.quota.get(user)?.bytes;
      if (quota === undefined) continue;
      const after = this.q.usage.get(user)?.bytes ?? 0;
      const before = after - delta;
      if (after > quota) {
        throw new MetaError(
          'QUOTA_EXCEEDED',
          `${user} has a quota of ${quota} bytes and uses ${before}; this would make it ${after} (${after - quota} over)`,
          { user, quota, used: before, wanted: after },
        );
      }
    }
  }

  /** The one place state changes, on the primary and on followers alike. Throws on a change that does not fit the
   * state (only a diverged follower can meet one). */
  private applyChange(c: Change, ctx: ApplyContext): void {
    const q = this.q;
    const one = (changes: number, what: string): void => {
      if (changes !== 1) throw new Error(`${c.t}: ${what} not found`);
    };
    switch (c.t) {
      case 'node':
        q.insertNode.run(c.id, c.parent, c.name, c.type, c.owner, c.created, c.mtime);
        if (!ctx.allocated) q.bump.run(c.id + 1, 'node');
        return;
      case 'version': {
        const node = q.node.get(c.file);
        if (!node || node.type !== 'file') throw new Error(`version: file ${c.file} not found`);
        const old = node.cur === null ? 0 : q.version.get(node.cur)!.size;
        const chunks = JSON.stringify(c.chunks.map((k) => ({ id: k.id, size: k.size })));
        q.insertVersion.run(c.vid, c.file, c.content_id, c.size, chunks, c.mtime, c.author);
        q.setCur.run(c.vid, c.mtime, c.file);
        for (const k of c.chunks) {
          // A chunk id names its bytes, so one id with two sizes is a caller's bug that would corrupt the chunk counts.
          const known = q.ref.get(k.id, k.size)!.size;
          if (known !== k.size) throw new MetaError('INVALID_ARGUMENT', `invalid file version: chunk ${k.id} is ${known} bytes elsewhere, not ${k.size}`);
        }
        this.addUsage(ctx, node.owner, c.size - old);
        if (!ctx.allocated) q.bump.run(c.vid + 1, 'version');
        return;
      }
      case 'drop': {
        const v = q.version.get(c.vid);
        if (!v || v.file !== c.file) throw new Error(`drop: version ${c.vid} of file ${c.file} not found`);
        if (q.node.get(c.file)?.cur === c.vid) throw new Error(`drop: version ${c.vid} is current`);
        this.unrefChunks(ctx, v);
        q.deleteVersion.run(c.vid);
        return;
      }
      case 'move':
        this.dirIds.clear();
        one(q.moveNode.run(c.parent, c.name, c.id).changes, `node ${c.id}`);
        return;
      case 'touch':
        one(q.touch.run(c.mtime, c.id).changes, `node ${c.id}`);
        return;
      case 'props':
        if (!q.node.get(c.id)) throw new Error(`props: node ${c.id} not found`);
        for (const name of c.remove) q.removeProp.run(c.id, name);
        for (const [name, value] of c.set) q.setProp.run(c.id, name, value);
        return;
      case 'trash':
        this.dirIds.clear();
        q.insertTrash.run(c.tid, c.id, c.path, c.deleted_at, c.deleted_by);
        one(q.detach.run(c.id).changes, `node ${c.id}`);
        if (!ctx.allocated) q.bump.run(c.tid + 1, 'trash');
        return;
      case 'untrash': {
        this.dirIds.clear();
        const row = q.trash.get(c.tid);
        if (!row) throw new Error(`untrash: trash entry ${c.tid} not found`);
        q.moveNode.run(c.parent, c.name, row.node);
        q.deleteTrash.run(c.tid);
        return;
      }
      case 'purge': {
        this.dirIds.clear();
        const row = q.trash.get(c.tid);
        if (!row) throw new Error(`purge: trash entry ${c.tid} not found`);
        const nodes = q.subtree.all(row.node);
        q.deleteTrash.run(c.tid);
        this.eraseNodes(ctx, nodes);
        return;
      }
      case 'purging':
        one(q.deleteTrash.run(c.tid).changes, `trash entry ${c.tid}`);
        this.purging = true;
        return;
      case 'erase': {
        if (new Set(c.ids).size !== c.ids.length) throw new Error('erase: a node is named twice');
        const known = new Set<number>();
        const nodes = c.ids.map((id) => this.purgingNode(id, known));
        this.eraseNodes(ctx, nodes);
        for (const n of nodes) if (q.hasChild.get(n.id)) throw new Error(`erase: node ${n.id} still holds entries`);
        return;
      }
      case 'quota':
        if (c.bytes === null) q.deleteQuota.run(c.user);
        else q.setQuota.run(c.user, c.bytes);
        return;
      case 'home':
        if (c.account === null) q.deleteHome.run(c.user);
        else q.setHome.run(c.user, c.account);
        return;
      case 'disown':
        q.reown.run(c.owner, c.user);
        this.addUsage(ctx, c.owner, q.usage.get(c.user)?.bytes ?? 0);
        q.deleteUsage.run(c.user);
        q.deleteQuota.run(c.user);
        q.deleteHome.run(c.user);
        if (c.to !== null) q.repathTrash.run({ from: c.from, to: c.to });
        return;
    }
  }

  private addUsage(ctx: ApplyContext, user: string, delta: number): void {
    if (delta === 0) return;
    ctx.usageDelta.set(user, (ctx.usageDelta.get(user) ?? 0) + delta);
    this.q.addUsage.run(user, delta);
  }

  private unrefChunks(ctx: ApplyContext, v: VersionRow): void {
    for (const k of JSON.parse(v.chunks) as ChunkRef[]) {
      const r = this.q.unref.get(k.id);
      if (!r) throw new Error(`chunk ${k.id} has no reference count`);
      if (r.refs === 0) {
        this.q.deleteRef.run(k.id);
        ctx.released.set(k.id, r.size);
      }
    }
  }

  private belowNode(id: number, limit: number): Subtree {
    if (!Number.isSafeInteger(limit) || limit < 0) throw new MetaError('INVALID_ARGUMENT', `a limit is a whole number of entries, not ${limit}`);
    const rows = this.q.below.all(id, limit + 1);
    return { paths: rows.slice(0, limit).map((r) => r.rel), complete: rows.length <= limit };
  }

  private resolve(p: string): NodeRow | undefined {
    const names = splitPath(p);
    if (names.length === 0) return this.q.node.get(ROOT_ID);
    const parent = parentPath(p)!;
    let dir = this.dirIds.get(parent);
    if (dir === undefined) {
      let row = this.q.node.get(ROOT_ID);
      for (let i = 0; i < names.length - 1; i++) {
        if (!row || row.type !== 'dir') return undefined;
        row = this.q.child.get(row.id, names[i]!);
      }
      if (!row || row.type !== 'dir') return undefined;
      dir = row.id;
      if (!this.db.inTransaction) {
        if (this.dirIds.size >= DIR_CACHE) this.dirIds.clear();
        this.dirIds.set(parent, dir);
      }
    }
    return this.q.child.get(dir, names[names.length - 1]!);
  }

  private mustResolve(p: string): NodeRow {
    const row = this.resolve(p);
    if (!row) throw new MetaError('NOT_FOUND', `${p} does not exist`, { path: p });
    return row;
  }

  private mustResolveFile(p: string): NodeRow {
    const row = this.mustResolve(p);
    if (row.type !== 'file') throw new MetaError('IS_A_DIRECTORY', `${p} is a directory, not a file`, { path: p });
    return row;
  }

  /** The directory that holds (or would hold) `p`, which is not the root. */
  private mustResolveParent(p: string): NodeRow {
    const pp = parentPath(p)!;
    const parent = this.resolve(pp);
    if (!parent) throw new MetaError('NOT_FOUND_PARENT', `cannot create ${p}: the directory ${pp} does not exist`, { path: p });
    if (parent.type !== 'dir') throw new MetaError('NOT_A_DIRECTORY', `cannot create ${p}: ${pp} is a file, not a directory`, { path: p });
    return parent;
  }

  /** The directory at `p`, made (owned by `owner`) when missing; its node id. */
  private ensureDir(w: Writer, p: string, owner: string): number {
    const row = this.resolve(p);
    if (row) {
      if (row.type !== 'dir') throw new MetaError('NOT_A_DIRECTORY', `${p} is a file, not a directory`, { path: p });
      return row.id;
    }
    const parent = this.mustResolveParent(p);
    const id = w.alloc('node');
    w.emit({ t: 'node', id, parent: parent.id, name: baseName(p), type: 'dir', owner, created: w.at, mtime: w.at });
    w.touch(parent.id);
    return id;
  }

  /** 'purge' of a trash entry whose subtree fits in `room` entries, else 'purging' (finishPurges deletes it);
   * answers the entries deleted now. */
  private purgeRow(w: Writer, row: TrashRow, room: number): number {
    const { ids, whole } = this.eraseBatch(row.node, room);
    w.emit(whole ? { t: 'purge', tid: row.tid } : { t: 'purging', tid: row.tid });
    return whole ? ids.length : 0;
  }

  /**
   * Up to `limit` entries of the subtree at `top` that can go together: files, and folders whose every entry is among
   * them (each after what it holds). `whole`: all of it, `top` included. One query per folder entered, so a batch costs
   * about its own size however large the subtree is.
   */
  private eraseBatch(top: number, limit: number): { ids: number[]; whole: boolean } {
    const ids: number[] = [];
    const take = (id: number, type: EntryType): boolean => {
      if (ids.length >= limit) return false;
      if (type === 'dir') {
        const room = limit - ids.length;
        const kids = this.q.childIds.all(id, room);
        // Fewer than asked for: that is all of them.
        let all = kids.length < room;
        for (const k of kids) {
          if (take(k.id, k.type)) continue;
          all = false;
          if (ids.length >= limit) break;
        }
        if (!all || ids.length >= limit) return false;
      }
      ids.push(id);
      return true;
    };
    return { ids, whole: take(top, this.q.node.get(top)!.type) };
  }

  /** Node `id`, which must lie in a subtree a purge is deleting: detached, and held by no trash entry. `known`: nodes
   * already found to. */
  private purgingNode(id: number, known: Set<number>): NodeRow {
    const node = this.q.node.get(id);
    if (!node) throw new Error(`erase: node ${id} not found`);
    const seen: number[] = [];
    for (let n = node; !known.has(n.id); ) {
      seen.push(n.id);
      if (n.parent === null) {
        if (n.id === ROOT_ID || this.q.trashOfNode.get(n.id)) throw new Error(`erase: node ${id} is not being purged`);
        break;
      }
      const up = this.q.node.get(n.parent);
      if (!up) throw new Error(`erase: node ${n.parent} not found`);
      n = up;
    }
    for (const s of seen) known.add(s);
    return node;
  }

  /** Deletes nodes with their versions and properties, giving back their owners' usage and the chunks' references. */
  private eraseNodes(ctx: ApplyContext, nodes: readonly NodeRow[]): void {
    const q = this.q;
    // One usage update per owner, not per file.
    const freed = new Map<string, number>();
    for (const n of nodes) {
      if (n.cur !== null) freed.set(n.owner, (freed.get(n.owner) ?? 0) + q.version.get(n.cur)!.size);
      for (const v of q.versionsOf.all(n.id)) {
        this.unrefChunks(ctx, v);
        q.deleteVersion.run(v.vid);
      }
      q.removeAllProps.run(n.id);
    }
    for (const n of nodes) q.deleteNode.run(n.id);
    for (const [owner, bytes] of freed) this.addUsage(ctx, owner, -bytes);
  }

  private mustTrash(trashId: string): TrashRow {
    const tid = typeof trashId === 'string' ? parseId(trashId) : null;
    const row = tid === null ? undefined : this.q.trash.get(tid);
    if (!row) throw new MetaError('NOT_FOUND', `trash entry ${JSON.stringify(trashId)} does not exist`);
    return row;
  }

  private fileVersion(file: NodeRow, p: string, versionId: string): VersionRow {
    const vid = typeof versionId === 'string' ? parseId(versionId) : null;
    const row = vid === null ? undefined : this.q.version.get(vid);
    if (!row || row.file !== file.id) throw new MetaError('NOT_FOUND', `${p} has no version ${JSON.stringify(versionId)}`, { path: p });
    return row;
  }

  private entryOf(row: NodeRow, p: string): Entry {
    return entryWith(row, p, row.cur === null ? undefined : this.q.version.get(row.cur));
  }

  private trashItemOf(r: TrashRow): TrashItem {
    const node = this.q.node.get(r.node)!;
    return { trash_id: String(r.tid), path: r.path, type: node.type, owner: node.owner, deleted_at: r.deleted_at, deleted_by: r.deleted_by };
  }

  private trashEntryOf(r: TrashRow): TrashEntry {
    return { ...this.trashItemOf(r), size: this.q.subtreeSize.get(r.node)!.size };
  }

  private addVersion(
    w: Writer,
    p: string,
    content: { content_id: string; size: number; chunks: ChunkRef[]; mtime: number },
    user: string,
    expectVersion: string | null | undefined,
  ): WriteResult {
    let node = this.resolve(p);
    if (node?.type === 'dir') throw new MetaError('IS_A_DIRECTORY', `${p} is a directory, not a file`, { path: p });
    if (expectVersion !== undefined) {
      const actual = node ? String(node.cur) : null;
      if (actual !== expectVersion) {
        throw new MetaError(
          'PRECONDITION_FAILED',
          expectVersion === null
            ? `${p} already exists (version ${actual})`
            : `${p} is at version ${actual === null ? '(none: it does not exist)' : actual}, not ${expectVersion}`,
          { path: p },
        );
      }
    }
    const isNew = !node;
    if (!node) {
      const parent = this.mustResolveParent(p);
      const id = w.alloc('node');
      node = { id, parent: parent.id, name: baseName(p), type: 'file', owner: user, created: w.at, mtime: content.mtime, cur: null };
      w.emit({ t: 'node', id, parent: parent.id, name: node.name, type: 'file', owner: user, created: w.at, mtime: content.mtime });
      w.touch(parent.id);
    }
    const vid = w.alloc('version');
    w.emit({ t: 'version', file: node.id, vid, ...content, author: user });
    const dropped = isNew ? [] : this.q.versionsOf.all(node.id).slice(this.keepVersions);
    for (const v of dropped) w.emit({ t: 'drop', file: node.id, vid: v.vid });
    // What stat and the stored version row would say, without reading back what was just written.
    const version: Version = {
      version_id: String(vid),
      content_id: content.content_id,
      size: content.size,
      chunks: content.chunks.map((k) => ({ id: k.id, size: k.size })),
      mtime: content.mtime,
      author: user,
    };
    const entry = entryWith({ ...node, mtime: content.mtime }, p, { vid, size: content.size, content_id: content.content_id });
    return { entry, version, dropped: dropped.map(toVersion), released: w.released() };
  }

  /**
   * INVALID_PATH (`path_too_long`, as a path given that long is) when putting what is below `node`, now at `from`,
   * under `to` would make a path longer than MAX_PATH_BYTES, which no operation could name again. Only a longer `to`
   * can: the paths below `from` are within the limit.
   */
  private checkRoomBelow(node: NodeRow, from: string, to: string, verb: 'move' | 'copy' | 'restore' | 'set aside'): void {
    const grows = utf8Length(to) - utf8Length(from);
    if (node.type !== 'dir' || grows <= 0) return;
    const deep = this.q.tooDeep.get(node.id, MAX_PATH_BYTES - utf8Length(to) - 1);
    if (!deep) return;
    const short = (s: string) => (s.length > 80 ? `${s.slice(0, 80)}…` : s);
    throw new MetaError(
      'INVALID_PATH',
      `cannot ${verb} ${short(from)} to ${short(to)}: ${short(`${from}/${deep.rel}`)} in it would take a path of ` +
        `${utf8Length(to) + 1 + utf8Length(deep.rel)} bytes in UTF-8; the limit is ${MAX_PATH_BYTES}`,
      { reason: 'path_too_long', path: short(to) },
    );
  }

  private checkSourceAndDestination(f: string, t: string, verb: 'move' | 'copy'): void {
    if (t === f) throw new MetaError('CONFLICT', `cannot ${verb} ${f} onto itself`, { path: f });
    if (isSameOrInside(t, f)) throw new MetaError('CONFLICT', `cannot ${verb} ${f} into itself (${t})`, { path: t });
  }

  /** The destination's parent and name, after trashing what is there when overwriting. */
  private clearDestination(
    w: Writer,
    f: string,
    t: string,
    user: string,
    overwrite: boolean,
  ): { parent: NodeRow; name: string; replaced: TrashEntry | null } {
    if (t === '/') throw new MetaError(overwrite ? 'CONFLICT' : 'EXISTS', 'the root of a volume cannot be replaced', { path: t });
    const parent = this.mustResolveParent(t);
    const name = baseName(t);
    const existing = this.q.child.get(parent.id, name);
    if (!existing) return { parent, name, replaced: null };
    if (!overwrite) throw new MetaError('EXISTS', `${t} already exists`, { path: t });
    if (isSameOrInside(f, t)) throw new MetaError('CONFLICT', `cannot replace ${t}: it contains the source ${f}`, { path: t });
    return { parent, name, replaced: this.trashNode(w, existing, t, user) };
  }

  /**
   * A file moved over a file: an editor's safe save (write a temporary file, move it over the original; LibreOffice,
   * vim, Office over WebDAV). The destination stays the same file, with its id, owner, creation time and history, and
   * takes the source's content as its newest version; the content it replaces stays a kept version, pruned by
   * keepVersions like any overwrite, instead of going to the trash, where it would be charged to the owner until
   * purged, every save, and be missing from the file's history.
   *
   * The source's own kept versions come along too, oldest first, after the destination's: the history at the path
   * then reads as what it was and then what the source was, and nothing the source held is lost but what
   * keepVersions drops (a safe save's temporary file has one version; a file with a history moved over another keeps
   * it). Its dead properties replace the destination's, as a moved entry's go with it. The source entry is then gone:
   * trashed and purged within this one log entry, which releases only chunks no kept version names.
   */
  private moveOntoFile(w: Writer, src: NodeRow, f: string, dest: NodeRow, t: string, user: string): MoveResult {
    for (const v of this.q.versionsOf.all(src.id).slice(0, this.keepVersions).reverse()) {
      const chunks = JSON.parse(v.chunks) as ChunkRef[];
      w.emit({ t: 'version', file: dest.id, vid: w.alloc('version'), content_id: v.content_id, size: v.size, chunks, mtime: v.mtime, author: v.author });
    }
    for (const v of this.q.versionsOf.all(dest.id).slice(this.keepVersions)) w.emit({ t: 'drop', file: dest.id, vid: v.vid });
    const props = new Map(this.q.props.all(src.id).map((r) => [r.name, r.value]));
    const old = this.q.props.all(dest.id);
    const set = [...props].filter(([name, value]) => !old.some((r) => r.name === name && r.value === value));
    const remove = old.filter((r) => !props.has(r.name)).map((r) => r.name);
    if (set.length > 0 || remove.length > 0) w.emit({ t: 'props', id: dest.id, set, remove });
    const tid = w.alloc('trash');
    w.emit({ t: 'trash', tid, id: src.id, path: f, deleted_at: w.at, deleted_by: user });
    w.emit({ t: 'purge', tid });
    w.touch(src.parent!);
    return { entry: this.stat(t), overwritten: true, replaced: null };
  }

  private trashNode(w: Writer, node: NodeRow, p: string, user: string): TrashEntry {
    const tid = w.alloc('trash');
    w.emit({ t: 'trash', tid, id: node.id, path: p, deleted_at: w.at, deleted_by: user });
    w.touch(node.parent!);
    return this.trashEntryOf(this.q.trash.get(tid)!);
  }

  private copyTree(w: Writer, src: NodeRow, parentId: number, name: string, user: string, deep: boolean): void {
    const id = w.alloc('node');
    w.emit({ t: 'node', id, parent: parentId, name, type: src.type, owner: user, created: w.at, mtime: w.at });
    if (src.cur !== null) {
      const v = this.q.version.get(src.cur)!;
      const chunks = JSON.parse(v.chunks) as ChunkRef[];
      w.emit({ t: 'version', file: id, vid: w.alloc('version'), content_id: v.content_id, size: v.size, chunks, mtime: v.mtime, author: user });
    }
    const props = this.q.props.all(src.id);
    if (props.length > 0) w.emit({ t: 'props', id, set: props.map((r) => [r.name, r.value]), remove: [] });
    if (src.type === 'dir' && deep) {
      for (const child of this.q.children.all(src.id)) this.copyTree(w, child, id, child.name, user, true);
    }
  }

  private checkProps(set: Record<string, string>, remove: readonly string[]): Array<[string, string]> {
    if (set === null || typeof set !== 'object' || !Array.isArray(remove)) {
      throw new MetaError('INVALID_ARGUMENT', 'patchProps needs an object of properties to set and an array of names to remove');
    }
    const checkName = (name: unknown): string => {
      if (typeof name !== 'string' || name === '' || !wellFormed(name) || utf8Length(name) > MAX_PROP_NAME_BYTES) {
        throw new MetaError(
          'INVALID_ARGUMENT',
          `invalid property name ${JSON.stringify(name)}: 1 to ${MAX_PROP_NAME_BYTES} bytes of well-formed Unicode`,
        );
      }
      return name;
    };
    const sets = Object.entries(set).map(([name, value]): [string, string] => {
      checkName(name);
      if (typeof value !== 'string' || !wellFormed(value) || utf8Length(value) > MAX_PROP_VALUE_BYTES) {
        throw new MetaError(
          'INVALID_ARGUMENT',
          `invalid value for property ${JSON.stringify(name)}: a string of well-formed Unicode, at most ${MAX_PROP_VALUE_BYTES} bytes`,
        );
      }
      return [name, value];
    });
    for (const name of remove) {
      if (Object.hasOwn(set, checkName(name))) {
        throw new MetaError('INVALID_ARGUMENT', `property ${JSON.stringify(name)} is both set and removed`);
      }
    }
    return sets;
  }
}
