// WebDAV over a volume (docs/dcfs.md, "WebDAV"): the protocol layer (webdav.ts) asks this backend for entries and
// bytes through a backend made for each request and bound to its principal (the protocol layer knows nothing of
// users), with the same permission checks and write path as the kRPC and HTTP APIs.
import { Readable } from 'node:stream';
import { KrpcError, type Principal } from '../../lib/krpc/index.ts';
import { type Files, toKrpcError } from './files.ts';
import { type DavBackend, DavBackendError, type DavEntry, type DavErrorCode, type DavRange } from './webdav.ts';
import { type Entry, MetaError } from './volume-meta.ts';

const KRPC_TO_DAV: Record<string, DavErrorCode> = {
  NOT_FOUND: 'NOT_FOUND',
  ALREADY_EXISTS: 'EXISTS',
  PERMISSION_DENIED: 'FORBIDDEN',
  UNAUTHENTICATED: 'FORBIDDEN',
  INVALID_PARAMS: 'INVALID_PATH',
  CONFLICT: 'CONFLICT',
  UNAVAILABLE: 'UNAVAILABLE',
  TIMEOUT: 'UNAVAILABLE',
};

/** Backend errors in the protocol layer's terms: the metadata's own codes pass as they are. */
function davError(err: unknown): Error {
  if (err instanceof DavBackendError) return err;
  if (err instanceof MetaError) return new DavBackendError(err.code === 'LOG_GAP' ? 'CONFLICT' : err.code, err.message);
  const k = toKrpcError(err);
  if (k instanceof KrpcError) {
    const reason = (k.data as { reason?: string } | undefined)?.reason;
    if (reason === 'QUOTA_EXCEEDED' || reason === 'IS_A_DIRECTORY' || reason === 'NOT_A_DIRECTORY' || reason === 'NOT_FOUND_PARENT' || reason === 'READ_ONLY') {
      return new DavBackendError(reason, k.message);
    }
    if (reason === 'NO_PLACEMENT') return new DavBackendError('INSUFFICIENT_STORAGE', k.message);
    const code = KRPC_TO_DAV[k.code];
    if (code) return new DavBackendError(code, k.message);
  }
  return k;
}

function davEntry(e: Entry): DavEntry {
  return {
    path: e.path,
    type: e.type,
    size: e.size,
    mtime: e.mtime,
    created: e.created,
    // A folder has no content id; its mtime changes whenever its members do. A file's hash goes in base64url (43
    // characters, not 64 hex): clients format If headers into fixed buffers, and litmus's 200 bytes cannot hold a lock
    // token and two hex tags, so the header arrives cut off (400).
    etag: e.content_id ? Buffer.from(e.content_id.slice('sha256:'.length), 'hex').toString('base64url') : `d${e.id}-${e.mtime}`,
  };
}

async function run<T>(fn: () => Promise<T> | T): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw davError(err);
  }
}

/** The backend of one volume for one caller; writes need this node to be its primary (the router forwards otherwise). */
export function volumeDavBackend(files: Files, volume: string, caller: Principal): DavBackend {
  const reader = () => files.readable(volume).meta;
  const writer = () => files.writable(volume).meta;
  return {
    // A folder the caller may not read still shows, and lists what leads on, when something below it is theirs to read.
    stat: (path) =>
      run(() => {
        if (files.mayRead(caller, volume, path)) {
          const e = reader().tryStat(path);
          return e ? davEntry(e) : null;
        }
        const e = files.leadsToReadable(caller, volume, path) ? reader().tryStat(path) : null;
        if (e?.type !== 'dir') files.check(caller, 'read', volume, path);
        return davEntry(e!);
      }),
    list: (path) =>
      run(() => {
        const all = files.mayRead(caller, volume, path);
        if (!all && !files.leadsToReadable(caller, volume, path)) files.check(caller, 'read', volume, path);
        const entries = reader().list(path);
        const shown = all ? entries : entries.filter((e) => files.mayRead(caller, volume, e.path) || (e.type === 'dir' && files.leadsToReadable(caller, volume, e.path)));
        return shown.map(davEntry);
      }),
    read: (path, range?: DavRange) =>
      run(() => {
        files.check(caller, 'read', volume, path);
        const version = reader().getVersion(path);
        return Readable.from(files.read(version, range?.start ?? 0, range?.end ?? version.size - 1));
      }),
    write: (path, body, opts) =>
      run(async () => {
        const r = await files.write(volume, path, body, caller, { sizeHint: opts.expectedSize });
        return { created: r.created, entry: davEntry(r.entry) };
      }),
    mkdir: (path) =>
      run(() => {
        const p = caller;
        files.check(p, 'create', volume, path);
        writer().mkdir(path, p.userId);
      }),
    remove: (path) =>
      run(() => {
        const p = caller;
        files.checkRemove(p, volume, path);
        writer().remove(path, p.userId);
      }),
    move: (from, to, opts) =>
      run(() => {
        const p = caller;
        files.checkTransfer(p, 'move', volume, from, to, { overwrite: opts.overwrite });
        const r = writer().rename(from, to, { user: p.userId, overwrite: opts.overwrite });
        return { created: !r.overwritten };
      }),
    copy: (from, to, opts) =>
      run(() => {
        const p = caller;
        files.checkTransfer(p, 'copy', volume, from, to, { overwrite: opts.overwrite, depth: opts.depth });
        const r = writer().copy(from, to, { user: p.userId, overwrite: opts.overwrite, depth: opts.depth });
        return { created: !r.overwritten };
      }),
    getProps: (path) =>
      run(() => {
        if (!files.mayRead(caller, volume, path)) {
          // A folder shown only on the way to what the caller may read shows none of its own properties.
          if (files.leadsToReadable(caller, volume, path)) return {};
          files.check(caller, 'read', volume, path);
        }
        return reader().props(path);
      }),
    checkLock: (path, exists) =>
      run(() => {
        files.check(caller, exists ? 'write' : 'create', volume, path);
      }),
    patchProps: (path, set, remove) =>
      run(() => {
        const p = caller;
        files.check(p, 'write', volume, path);
        writer().patchProps(path, set, remove, { user: p.userId });
      }),
    quota: (path) =>
      run(() => {
        const p = caller;
        // The caller's own quota, asked of the folder a client mounted (the volume's root, often only on the way).
        if (!files.leadsToReadable(p, volume, path)) files.check(p, 'read', volume, path);
        const meta = reader();
        const q = meta.quota(p.userId);
        return q === null ? null : { usedBytes: meta.usage(p.userId), availableBytes: Math.max(0, q - meta.usage(p.userId)) };
      }),
  };
}
