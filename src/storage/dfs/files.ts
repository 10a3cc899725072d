// The file operations of dcfs-lite on this node (docs/dcfs.md, "Writing" and "Reading"): permission checks on
// `obj://dfs/<volume>/<path>` for the user and the app, the write path (chunk, place every chunk's durable copies,
// then one metadata transaction, so a file is visible only once all of it is safe), ranged reads from whichever
// copies are healthy, and the metadata operations. Called by the kRPC methods, the HTTP routes and WebDAV alike.
import { KrpcError, type Principal } from '../../lib/krpc/index.ts';
import { type Rbac, accessRequest, requesterText } from '../../lib/rbac/enforcer.ts';
import { type PlacementPolicy, policyFor } from '../../lib/config/storage-records.ts';
import type { DfsEntry } from '../../lib/api/dfs.ts';
import { Chunker } from './chunker.ts';
import { FileSums } from './hashing.ts';
import { type ChunkIO, ChunkUnavailableError, PlacementError } from './chunk-io.ts';
import type { ReadCheck } from './chunk-store.ts';
import { PathError, normalizePath, parentPath } from './paths.ts';
import type { HeldVolume, VolumeSet } from './volumes.ts';
import { type ChunkRef, type Entry, HOME_DIR, MetaError, PUBLIC_DIR, type Subtree, type TrashItem, type Version } from './volume-meta.ts';
import type { ZoneStorage } from './zone-view.ts';

export type Action = 'read' | 'write' | 'create' | 'delete';

/** This node is not where the operation runs: the caller forwards it to `node`. */
export class ElsewhereError extends Error {
  constructor(readonly node: string, readonly volume: string) {
    super(`volume ${volume} is served by ${node}`);
    this.name = 'ElsewhereError';
  }
}

/**
 * Bytes of chunks being hashed and stored at once while a file streams in (about ten average chunks): enough to keep
 * disks, peers and the thread pool busy, bounded in memory. Chunks of one disk share a group commit; windows from 2 to
 * 16 MiB measured alike on the development VM, so the smaller one holds less memory for nothing.
 */
const WRITE_WINDOW_BYTES = 3 * 1024 * 1024;

export function toKrpcError(err: unknown): Error {
  if (err instanceof KrpcError || err instanceof ElsewhereError) return err;
  if (err instanceof PathError) return new KrpcError('INVALID_PARAMS', `path: ${err.message}`, { reason: err.reason });
  if (err instanceof MetaError) {
    switch (err.code) {
      case 'NOT_FOUND':
      case 'NOT_FOUND_PARENT':
        return new KrpcError('NOT_FOUND', err.message, { reason: err.code });
      case 'EXISTS':
        return new KrpcError('ALREADY_EXISTS', err.message);
      case 'QUOTA_EXCEEDED':
        return new KrpcError('FAILED_PRECONDITION', err.message, { reason: 'QUOTA_EXCEEDED', ...err.detail });
      case 'INVALID_PATH':
        // Why, as for a path refused before it reached the metadata (`path_too_long`, ...).
        return new KrpcError('INVALID_PARAMS', err.message, { reason: typeof err.detail.reason === 'string' ? err.detail.reason : err.code });
      case 'INVALID_ARGUMENT':
        return new KrpcError('INVALID_PARAMS', err.message, { reason: err.code });
      case 'READ_ONLY':
        return new KrpcError('UNAVAILABLE', err.message, { reason: 'READ_ONLY' });
      case 'CONFLICT':
        return new KrpcError('CONFLICT', err.message);
      default:
        return new KrpcError('FAILED_PRECONDITION', err.message, { reason: err.code });
    }
  }
  if (err instanceof PlacementError) {
    // NO_PLACEMENT: the disks in service lack room or number; without it, one out of reach may be back soon.
    return new KrpcError('UNAVAILABLE', `not enough healthy disks for the placement policy: ${err.message}`, err.transient ? undefined : { reason: 'NO_PLACEMENT' });
  }
  if (err instanceof ChunkUnavailableError) return new KrpcError('UNAVAILABLE', err.message);
  return err instanceof Error ? err : new Error(String(err));
}

export function apiEntry(e: Entry): DfsEntry {
  return { path: e.path, type: e.type, size: e.size, mtime: e.mtime, created: e.created, owner: e.owner, content_id: e.content_id };
}

export interface FilesDeps {
  self: string;
  volumes: VolumeSet;
  io: ChunkIO;
  zone: () => ZoneStorage;
  rbac: Rbac;
}

/**
 * Chunks being read and checked ahead of the one being sent: each is read and hashed on the thread pool, so a few at
 * once keep both cores busy while the event loop writes to the socket; bounded (≤ 4 MiB) so a slow client holds little.
 */
const READ_AHEAD = 4;

/**
 * The most entries below a folder that a move, copy, removal, restore or purge checks one by one, when no single grant
 * of the caller covers the whole folder (`Rbac.checkBelow`: the common case, answered from the policy alone). The walk
 * and the checks run on the event loop before the change, a few microseconds an entry; past this the operation is
 * refused, naming the folder, rather than hold up every other request on the node.
 */
export const SUBTREE_CHECK_MAX = 10_000;

/** How long a follower serves reads on its own after failing to reach the primary, before trying it again. */
const PRIMARY_DOWN_MS = 10_000;

export class Files {
  private readonly primaryDown = new Map<string, number>();

  /** The chunk lists of writes under way, per volume: stored chunks that no version names yet (collection keeps them). */
  private readonly writing = new Map<string, Set<ChunkRef[]>>();

  constructor(private readonly d: FilesDeps) {}

  /** Chunk ids that writes under way on `volume` have stored or are storing, not yet committed (docs/dcfs.md,
   * "Chunk collection"). */
  writingChunks(volume: string): string[] {
    const out: string[] = [];
    for (const refs of this.writing.get(volume) ?? []) for (const r of refs) if (r.id) out.push(r.id);
    return out;
  }

  /** The primary of `volume` could not be reached: a follower here serves reads alone for a while. Answers whether
   * this node holds a follower copy to serve them from. */
  primaryUnreachable(volume: string): boolean {
    if (this.d.volumes.get(volume)?.role !== 'follower') return false;
    this.primaryDown.set(volume, Date.now() + PRIMARY_DOWN_MS);
    return true;
  }

  /** The RBAC resource of a volume path: `obj://dfs/<volume>` for its root, `obj://dfs/<volume>/<path>` below. */
  static resource(volume: string, path: string): string {
    return path === '/' ? `obj://dfs/${volume}` : `obj://dfs/${volume}${path}`;
  }

  check(p: Principal | null, action: Action, volume: string, path: string): void {
    if (!p) throw new KrpcError('UNAUTHENTICATED', 'files need a token');
    if (!this.d.rbac.check(accessRequest(p, Files.resource(volume, path), action))) {
      throw new KrpcError('PERMISSION_DENIED', `${requesterText(p)} may not ${action} ${volume}:${path}`);
    }
  }

  /**
   * Whether `p` may see `path` without reading it: they may read something below it, so the folders on the way there
   * show (a WebDAV client mounts a volume's root and lists it before going to the user's home), each listing only
   * what leads on to what they may read.
   */
  leadsToReadable(p: Principal, volume: string, path: string): boolean {
    return this.d.rbac.checkSomeBelow(accessRequest(p, Files.resource(volume, path), 'read'));
  }

  /** Whether `p` may read `path`, without saying why not. */
  mayRead(p: Principal, volume: string, path: string): boolean {
    return this.d.rbac.check(accessRequest(p, Files.resource(volume, path), 'read'));
  }

  // An operation on a folder acts on everything in it, and RBAC grants need not reach below the folder (an app may
  // hold `…/Photos/*`, which matches the folder Photos/2024 but nothing in it). So each check below covers the
  // entries under a folder too, all before anything changes: a refusal leaves the volume as it was.

  /** What removing `path` needs: `delete` on it and on everything below it; not a folder of the volume's own, and in
   * /public, all of it the caller's. */
  checkRemove(p: Principal | null, volume: string, path: string): void {
    this.check(p, 'delete', volume, path);
    const meta = this.writable(volume).meta;
    if (meta.tryStat(path)?.type === 'dir') this.checkBelow(p, 'delete', volume, path, (limit) => meta.below(path, limit), path);
    this.checkTakeAway(p, 'delete', volume, path, () => meta.notOwnedBy(path, p!.userId));
  }

  /**
   * Storing a file needs `write` where something is and `create` where nothing is. A refusal reads the same either
   * way, and comes before any word on what is there, so it tells no one who may not look whether the path exists.
   */
  checkPut(p: Principal | null, volume: string, path: string, exists: boolean): void {
    try {
      this.check(p, exists ? 'write' : 'create', volume, path);
    } catch (err) {
      if (err instanceof KrpcError && err.code === 'PERMISSION_DENIED') {
        throw new KrpcError('PERMISSION_DENIED', `${p!.userId} (app ${p!.appId}) may not write ${volume}:${path}`);
      }
      throw err;
    }
  }

  /**
   * What moving or copying `from` to `to` needs: at the source `read` (a move hands over what it moves, kept versions
   * included, so it needs what a copy needs) and for a move `delete`; `create` at the target, and `delete` of what an
   * overwrite would replace. A file moved over a file becomes that file's new version (VolumeMeta.rename), so that
   * needs `write` on it instead, as storing it would. For a folder, the same on every entry below: at the source,
   * where the entry lands below `to`, and below a replaced folder; a copy of depth 0 takes the folder alone. What a
   * move or an overwrite takes away must also be allowed to go (checkTakeAway).
   */
  checkTransfer(
    p: Principal | null,
    kind: 'move' | 'copy',
    volume: string,
    from: string,
    to: string,
    opts: { overwrite: boolean; depth?: 0 | 'infinity' },
  ): void {
    const meta = this.writable(volume).meta;
    const source: Action[] = kind === 'move' ? ['delete', 'read'] : ['read'];
    for (const action of source) this.check(p, action, volume, from);
    const moved = meta.tryStat(from);
    const replaced = opts.overwrite ? meta.tryStat(to) : null;
    const intoFile = kind === 'move' && moved?.type === 'file' && replaced?.type === 'file';
    this.check(p, intoFile ? 'write' : 'create', volume, to);
    if (replaced && !intoFile) this.check(p, 'delete', volume, to);
    if (moved?.type === 'dir' && (kind === 'move' || opts.depth !== 0)) {
      let listed: Subtree | undefined;
      const tree = (limit: number) => (listed ??= meta.below(from, limit));
      for (const action of source) this.checkBelow(p, action, volume, from, tree, from);
      this.checkBelow(p, 'create', volume, to, tree, from);
    }
    if (replaced?.type === 'dir') this.checkBelow(p, 'delete', volume, to, (limit) => meta.below(to, limit), to);
    if (kind === 'move') this.checkTakeAway(p, 'move', volume, from, () => meta.notOwnedBy(from, p!.userId));
    if (replaced && !intoFile) this.checkTakeAway(p, 'replace', volume, to, () => meta.notOwnedBy(to, p!.userId));
  }

  /** What restoring a trash entry to `to` needs: `read` where it was and `create` at `to`, and for a folder the same
   * on everything it holds; and what was in /public, all of it the caller's (checkShared). */
  checkRestore(p: Principal | null, volume: string, item: TrashItem, to: string): void {
    const meta = this.writable(volume).meta;
    this.check(p, 'read', volume, item.path);
    this.check(p, 'create', volume, to);
    if (item.type === 'dir') {
      let listed: Subtree | undefined;
      const tree = (limit: number) => (listed ??= meta.trashBelow(item.trash_id, limit));
      this.checkBelow(p, 'read', volume, item.path, tree, item.path);
      this.checkBelow(p, 'create', volume, to, tree, item.path);
    }
    this.checkShared(p, 'restore', volume, item.path, () => meta.trashNotOwnedBy(item.trash_id, p!.userId));
  }

  /** What purging a trash entry needs: `delete` where it was, and for a folder on everything it holds; and what was in
   * /public, all of it the caller's (checkShared). */
  checkPurge(p: Principal | null, volume: string, item: TrashItem): void {
    const meta = this.writable(volume).meta;
    this.check(p, 'delete', volume, item.path);
    if (item.type === 'dir') this.checkBelow(p, 'delete', volume, item.path, (limit) => meta.trashBelow(item.trash_id, limit), item.path);
    this.checkShared(p, 'purge', volume, item.path, () => meta.trashNotOwnedBy(item.trash_id, p!.userId));
  }

  /**
   * What taking `path` away from where it is (moving, renaming, removing or replacing it) needs besides RBAC, which
   * cannot say either: it is not one of the folders the volume itself keeps, and in /public it is the caller's
   * (checkShared). The volume's folders are the root, /home, /public and each /home/<user>: a user's grant on their
   * home (`home/{user}/**`) and everyone's on /public (`public/**`) match those folders themselves, and without them
   * the paths every user's grants name would be gone or somewhere else. Whoever administers the volume may.
   */
  private checkTakeAway(
    p: Principal | null,
    verb: 'move' | 'delete' | 'replace',
    volume: string,
    path: string,
    notOwned: () => { path: string; owner: string } | null,
  ): void {
    if (!p) throw new KrpcError('UNAUTHENTICATED', 'files need a token');
    const own = path === '/' || path === HOME_DIR || path === PUBLIC_DIR || parentPath(path) === HOME_DIR;
    if (own && !this.administers(p, volume)) {
      throw new KrpcError(
        'PERMISSION_DENIED',
        `${requesterText(p)} may not ${verb} ${volume}:${path}: it is one of the volume's own folders (/, ${HOME_DIR}, ${PUBLIC_DIR}, ${HOME_DIR}/<user>), which only an admin may move, rename or delete`,
        { reason: 'SYSTEM_FOLDER' },
      );
    }
    this.checkShared(p, verb, volume, path, notOwned);
  }

  /**
   * /public is shared the way a sticky folder is (/tmp): every user may add to it and write into what is there, but
   * an entry in it, at any depth, may be moved, renamed, removed or replaced, and once trashed restored or purged,
   * only by its owner, and a folder only when everything in it is theirs too. Otherwise one user could take
   * another's files out of their sight (still charged to them), or delete them. Whoever administers the volume may.
   */
  private checkShared(
    p: Principal | null,
    verb: 'move' | 'delete' | 'replace' | 'restore' | 'purge',
    volume: string,
    path: string,
    notOwned: () => { path: string; owner: string } | null,
  ): void {
    if (!p) throw new KrpcError('UNAUTHENTICATED', 'files need a token');
    if (!path.startsWith(`${PUBLIC_DIR}/`)) return;
    const other = notOwned();
    if (!other || this.administers(p, volume)) return;
    const what = other.path === path ? `${volume}:${path}, which ${other.owner} owns` : `${volume}:${path}: ${other.owner} owns ${volume}:${other.path} in it`;
    throw new KrpcError(
      'PERMISSION_DENIED',
      `${requesterText(p)} may not ${verb} ${what}; in ${PUBLIC_DIR} only an entry's owner or an admin may move, rename or delete it`,
      { reason: 'NOT_OWNER', owner: other.owner },
    );
  }

  /** Whether `p` holds `delete` on the whole volume, as admins and the kernel do (`obj://dfs/**`, `obj://**`). */
  private administers(p: Principal, volume: string): boolean {
    const req = accessRequest(p, Files.resource(volume, '/'), 'delete');
    return this.d.rbac.check(req) && this.d.rbac.checkBelow(req);
  }

  /**
   * `action` on every entry below `base`: at once when one grant per side covers all of it, else entry by entry for
   * those `tree` lists (paths relative to `base`), at most SUBTREE_CHECK_MAX of them. `of` is the folder the entries
   * are in now, which the refusal names.
   */
  private checkBelow(p: Principal | null, action: Action, volume: string, base: string, tree: (limit: number) => Subtree, of: string): void {
    if (!p) throw new KrpcError('UNAUTHENTICATED', 'files need a token');
    const who = requesterText(p);
    if (this.d.rbac.checkBelow(accessRequest(p, Files.resource(volume, base), action))) return;
    const { paths, complete } = tree(SUBTREE_CHECK_MAX);
    if (!complete) {
      throw new KrpcError(
        'PERMISSION_DENIED',
        `${who} holds no grant to ${action} all of ${volume}:${base} and below, and ${volume}:${of} holds more than ${SUBTREE_CHECK_MAX} entries, too many to check one by one`,
        { reason: 'SUBTREE_TOO_LARGE', max_entries: SUBTREE_CHECK_MAX },
      );
    }
    for (const rel of paths) {
      const path = base === '/' ? `/${rel}` : `${base}/${rel}`;
      if (!this.d.rbac.check(accessRequest(p, Files.resource(volume, path), action))) {
        throw new KrpcError('PERMISSION_DENIED', `${who} may not ${action} ${volume}:${path}, which is inside ${volume}:${base}`);
      }
    }
  }

  path(text: string): string {
    try {
      return normalizePath(text);
    } catch (err) {
      throw toKrpcError(err);
    }
  }

  /** Where writes to a volume go: here when this node is its primary. */
  writable(volume: string): HeldVolume {
    const rec = this.d.zone().volumes.get(volume);
    if (!rec) throw new KrpcError('NOT_FOUND', `no volume ${volume}`);
    const held = this.d.volumes.get(volume);
    if (held?.role === 'primary') return held;
    throw new ElsewhereError(rec.primary, volume);
  }

  /** Where reads of a volume are served: the primary; a follower here when the primary is not reachable. */
  readable(volume: string): HeldVolume {
    const rec = this.d.zone().volumes.get(volume);
    if (!rec) throw new KrpcError('NOT_FOUND', `no volume ${volume}`);
    const held = this.d.volumes.get(volume);
    if (held?.role === 'primary') return held;
    if (held?.role === 'follower' && (!this.d.zone().live.has(rec.primary) || (this.primaryDown.get(volume) ?? 0) > Date.now())) return held;
    throw new ElsewhereError(rec.primary, volume);
  }

  /**
   * What a write of `size` bytes must pass before any byte is stored, written in one request or begun as a resumable
   * upload alike: the caller's right to it, no folder in the way, no file when it may not replace one, and room in the
   * quota of whoever will own the file.
   */
  preflight(volume: string, pathText: string, p: Principal, size: number, mayReplace: boolean): { v: HeldVolume; path: string; existing: Entry | null } {
    const path = this.path(pathText);
    const v = this.writable(volume);
    const existing = this.meta(() => v.meta.tryStat(path));
    this.checkPut(p, volume, path, existing !== null);
    if (existing?.type === 'dir') throw new KrpcError('FAILED_PRECONDITION', `${path} is a folder`, { reason: 'IS_A_DIRECTORY' });
    if (existing && !mayReplace) throw new KrpcError('ALREADY_EXISTS', `${path} already exists`);
    this.quotaRoom(v, existing, p, size);
    return { v, path, existing };
  }

  /**
   * Stores a file from a stream of bytes and makes it the path's new version. Every chunk has its policy's durable
   * copies before the metadata changes; a failure before then leaves the path as it was.
   */
  async write(
    volume: string,
    pathText: string,
    body: AsyncIterable<Uint8Array>,
    p: Principal,
    opts: { sizeHint?: number; expectVersion?: string | null; overwrite?: boolean; expectContentId?: string } = {},
  ): Promise<{ entry: Entry; created: boolean }> {
    const { v, path, existing } = this.preflight(volume, pathText, p, opts.sizeHint ?? 0, opts.overwrite !== false);
    const policy = policyFor(v.record, path);
    const refs: ChunkRef[] = [];
    let writes = this.writing.get(volume);
    if (!writes) this.writing.set(volume, (writes = new Set()));
    writes.add(refs);
    // The check above looked before the bytes streamed in: a create-only write must also find no file at its commit,
    // or two of them (or one and another writer) would both succeed, the first one's bytes lost as an older version.
    const commitOpts = opts.overwrite === false && opts.expectVersion === undefined ? { ...opts, expectVersion: null } : opts;
    try {
      return await this.storeAndCommit(v, path, body, p, commitOpts, existing, policy, refs);
    } finally {
      writes.delete(refs);
    }
  }

  private async storeAndCommit(
    v: HeldVolume,
    path: string,
    body: AsyncIterable<Uint8Array>,
    p: Principal,
    opts: { sizeHint?: number; expectVersion?: string | null; expectContentId?: string },
    existing: Entry | null,
    policy: PlacementPolicy,
    refs: ChunkRef[],
  ): Promise<{ entry: Entry; created: boolean }> {
    const chunker = new Chunker();
    const sums = new FileSums();
    const inFlight = new Set<Promise<void>>();
    let inFlightBytes = 0;
    // The size a client announces is only a hint, checked before the first byte: past it the bytes themselves are
    // counted against the quota as they come, so a stream with no length, or a false one, stops at the quota
    // instead of filling the disks first.
    let received = 0;
    let failure: unknown = null;
    // A chunk is hashed (on the thread pool, where the addon is built) while the event loop goes on receiving and
    // chunking: its ref is filled in before the chunk is stored, and every ref before the metadata commit.
    const place = async (ref: ChunkRef, data: Buffer) => {
      try {
        const { id, crc } = await sums.chunk(data);
        ref.id = id;
        await this.d.io.store(id, data, policy, [], crc);
      } catch (err) {
        failure ??= err;
      }
    };
    const submit = async (chunks: Buffer[]) => {
      for (const data of chunks) {
        received += data.length;
        if (received > (opts.sizeHint ?? 0)) this.quotaRoom(v, existing, p, received);
        const ref: ChunkRef = { id: '', size: data.length };
        refs.push(ref);
        const size = data.length;
        const t: Promise<void> = place(ref, data).finally(() => {
          inFlight.delete(t);
          inFlightBytes -= size;
        });
        inFlight.add(t);
        inFlightBytes += size;
        while (inFlightBytes >= WRITE_WINDOW_BYTES) await Promise.race(inFlight);
        if (failure) throw toKrpcError(failure);
      }
    };
    for await (const buf of body) await submit(chunker.cut(buf));
    await submit(chunker.finish());
    await Promise.all(inFlight);
    if (failure) throw toKrpcError(failure);
    const content_id = await sums.digest();
    if (opts.expectContentId && opts.expectContentId !== content_id) {
      throw new KrpcError('CONFLICT', `the bytes received hash to ${content_id}, not ${opts.expectContentId}; nothing was changed`);
    }
    try {
      return await v.meta.grouped(() => {
        // Permission was checked for what was there before the bytes streamed in: `create` where nothing was, `write`
        // over a file. A file may have come or gone since; then the write is checked again, in the transaction that
        // commits it, for what it now does, or a create-only caller would replace a file that appeared meanwhile.
        const now = v.meta.tryStat(path);
        if ((now === null) !== (existing === null)) this.checkPut(p, v.name, path, now !== null);
        const r = v.meta.writeFile(path, { content_id, size: sums.size, chunks: refs }, { user: p.userId, expectVersion: opts.expectVersion });
        return { entry: r.entry, created: now === null };
      });
    } catch (err) {
      throw toKrpcError(err);
    }
  }

  /**
   * Refuses early a write of `size` bytes over `existing` (or a new file) that would clearly overrun a quota (the
   * metadata checks exactly at commit). Charges follow the owner: an existing file's, else the writer, who will own it.
   */
  private quotaRoom(v: HeldVolume, existing: Entry | null, p: Principal, size: number): void {
    const user = existing?.owner ?? p.userId;
    const growth = size - (existing?.size ?? 0);
    const quota = v.meta.quota(user);
    if (quota === null || growth <= 0) return;
    const used = v.meta.usage(user);
    if (used + growth > quota) {
      throw new KrpcError('FAILED_PRECONDITION', `quota exceeded: ${user} uses ${used} of ${quota} bytes on ${v.name}; this needs ${growth} more`, {
        reason: 'QUOTA_EXCEEDED', quota, used, wanted: growth,
      });
    }
  }

  /**
   * The bytes [start, end] (inclusive) of a version, chunk by chunk, the next chunks fetched while one is sent. Local
   * copies are CRC checked (ReadCheck) unless `check` is `hash`, as a read by content id must be.
   */
  async *read(version: Version, start = 0, end = version.size - 1, check: ReadCheck = 'crc'): AsyncGenerator<Buffer> {
    if (version.size === 0 || end < start) return;
    let offset = 0;
    const wanted: { ref: ChunkRef; from: number; to: number }[] = [];
    for (const ref of version.chunks) {
      const cStart = offset;
      const cEnd = offset + ref.size - 1;
      offset += ref.size;
      if (cEnd < start || cStart > end) continue;
      wanted.push({ ref, from: Math.max(0, start - cStart), to: Math.min(ref.size - 1, end - cStart) });
    }
    const ahead: Promise<Buffer>[] = [];
    const fetchAhead = (from: number) => {
      for (let j = from + ahead.length; j < wanted.length && ahead.length < READ_AHEAD; j++) {
        const p = this.d.io.fetch(wanted[j]!.ref.id, check);
        // One ahead must not become an unhandled rejection if an earlier one fails first.
        p.catch(() => undefined);
        ahead.push(p);
      }
    };
    for (let i = 0; i < wanted.length; i++) {
      fetchAhead(i);
      const current = ahead.shift()!;
      fetchAhead(i + 1);
      let data: Buffer;
      try {
        data = await current;
      } catch (err) {
        throw toKrpcError(err);
      }
      const w = wanted[i]!;
      yield data.subarray(w.from, w.to + 1);
    }
  }

  /** Runs a metadata read or change, turning its errors into kRPC errors. */
  meta<T>(fn: () => T): T {
    try {
      return fn();
    } catch (err) {
      throw toKrpcError(err);
    }
  }
}
