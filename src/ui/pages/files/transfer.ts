// Moving file bytes between the page and dfs through the gateway's UI listener (docs/ui-files.md): downloads and
// previews are fetched with the session token in the Authorization header (never in a URL) and handed to the
// browser as blobs; uploads go through dfs's resumable uploads in parts, with progress, and continue from the
// bytes the zone already holds after a broken connection, a cancelled retry or a reload.
import { KrpcError, isErrorCode } from '../../../lib/krpc/errors.ts';
import { UPLOAD_ID, uploadCommitTimeoutMs } from '../../../lib/api/dfs.ts';
import { api, session } from '../../api.ts';
import { fileUrl, nextPart, resumeKey } from './model.ts';

async function bearer(): Promise<string> {
  const token = await session.token();
  if (!token) throw new KrpcError('UNAUTHENTICATED', 'signed out');
  return `Bearer ${token}`;
}

function errorFrom(status: number, text: string): KrpcError {
  try {
    const e = (JSON.parse(text) as { error?: { code?: unknown; message?: unknown; data?: unknown } }).error;
    if (e && isErrorCode(e.code)) return new KrpcError(e.code, typeof e.message === 'string' ? e.message : `HTTP ${status}`, e.data);
  } catch {
    // Not a kRPC error body (a proxy's page): the status says enough.
  }
  return new KrpcError(status === 503 ? 'UNAVAILABLE' : 'INTERNAL', `HTTP ${status}`);
}

/** Runs an authenticated request, renewing the token once when it expired; a dead session ends here too. */
async function withToken<T>(send: (auth: string) => Promise<T>): Promise<T> {
  try {
    return await send(await bearer());
  } catch (e) {
    if (!(e instanceof KrpcError)) throw e;
    if (e.code === 'TOKEN_EXPIRED' && (await session.refresh())) return send(await bearer());
    if (e.code === 'UNAUTHENTICATED') session.expire();
    throw e;
  }
}

/** A file's bytes (or its first `maxBytes`), as a blob of the type the page chose. */
export function fetchBlob(volume: string, path: string, opts: { version?: string; type?: string; maxBytes?: number; signal?: AbortSignal } = {}): Promise<Blob> {
  return withToken(async (auth) => {
    const headers: Record<string, string> = { authorization: auth };
    if (opts.maxBytes !== undefined) headers.range = `bytes=0-${opts.maxBytes - 1}`;
    const r = await fetch(fileUrl(volume, path, opts.version), { headers, signal: opts.signal, cache: 'no-store' });
    if (!r.ok) throw errorFrom(r.status, await r.text());
    const data = await r.blob();
    return opts.type ? new Blob([data], { type: opts.type }) : data;
  });
}

/** Saves a file (or a kept version) to the person's device under `name`. */
export async function download(volume: string, path: string, name: string, version?: string): Promise<void> {
  const blob = await fetchBlob(volume, path, { version, type: 'application/octet-stream' });
  const url = URL.createObjectURL(blob);
  const a = document.createElement('a');
  a.href = url;
  a.download = name;
  a.rel = 'noopener';
  document.body.append(a);
  a.click();
  a.remove();
  // The download has taken its copy once the click's task ran; the URL only has to outlive it.
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

/** One PUT of a part, with upload progress (fetch reports none): resolves the offset the upload then stands at. */
function putPart(url: string, auth: string, offset: number, body: Blob, onBytes: (sent: number) => void, signal: AbortSignal): Promise<number> {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open('PUT', `${url}?offset=${offset}`);
    xhr.setRequestHeader('authorization', auth);
    xhr.setRequestHeader('content-type', 'application/octet-stream');
    xhr.upload.onprogress = (ev) => onBytes(ev.loaded);
    xhr.onload = () => {
      if (xhr.status >= 200 && xhr.status < 300) {
        const at = (JSON.parse(xhr.responseText) as { offset?: unknown }).offset;
        return typeof at === 'number' ? resolve(at) : reject(new KrpcError('INTERNAL', 'the part was taken but no offset came back'));
      }
      reject(errorFrom(xhr.status, xhr.responseText));
    };
    xhr.onerror = () => reject(new TypeError('network error'));
    xhr.onabort = () => reject(new DOMException('aborted', 'AbortError'));
    signal.addEventListener('abort', () => xhr.abort(), { once: true });
    if (signal.aborted) return xhr.abort();
    xhr.send(body);
  });
}

/** Uploads not yet committed, by resumeKey: kept so that the same file picked again after a reload continues. Upload
 * ids are no secret (an upload belongs to the user and app that began it), so localStorage may keep them. */
const RESUME_STORAGE = 'buckyos.files.uploads';

function resumeStore(user: string): Record<string, string> {
  try {
    const all = JSON.parse(localStorage.getItem(RESUME_STORAGE) ?? '{}') as Record<string, Record<string, string>>;
    return all[user] ?? {};
  } catch {
    return {};
  }
}

function keepResume(user: string, key: string, id: string | null): void {
  try {
    const all = JSON.parse(localStorage.getItem(RESUME_STORAGE) ?? '{}') as Record<string, Record<string, string>>;
    const mine = { ...(all[user] ?? {}) };
    if (id === null) delete mine[key];
    else mine[key] = id;
    all[user] = mine;
    localStorage.setItem(RESUME_STORAGE, JSON.stringify(all));
  } catch {
    // Storage refused (private mode): a reload starts the upload over; a broken connection still resumes.
  }
}

export interface UploadProgress {
  sent: number;
  size: number;
  /** Bytes the zone already held when this attempt started (a resumed upload). */
  resumedAt: number;
}

/** How often one part is retried after a broken connection before the upload is reported interrupted. */
const RETRIES = 2;

const isNetwork = (e: unknown) => e instanceof TypeError || (e instanceof KrpcError && (e.code === 'UNAVAILABLE' || e.code === 'TIMEOUT'));

/**
 * Uploads `file` to `path`: begins a resumable upload (or finds the one an earlier attempt left), sends the parts it
 * lacks, and commits. A broken connection is retried from wherever the zone says the upload stands; past the
 * retries it throws, and calling again continues from there.
 */
export async function uploadFile(
  volume: string,
  path: string,
  file: File,
  onProgress: (p: UploadProgress) => void,
  signal: AbortSignal,
): Promise<void> {
  const user = session.get()?.user.name ?? '';
  const key = resumeKey(volume, path, file);
  // An id in another form (kept by an older version, or by hand) is one the zone would refuse: start afresh.
  let id: string | null = resumeStore(user)[key] ?? null;
  if (id !== null && !UPLOAD_ID.test(id)) id = null;
  let offset = 0;
  if (id !== null) {
    try {
      const s = await api.dfs.upload_status({ upload_id: id });
      if (s.size === file.size) offset = s.offset;
      else id = null;
    } catch (e) {
      // Committed, aborted or expired since: start afresh.
      if (!(e instanceof KrpcError && e.code === 'NOT_FOUND')) throw e;
      id = null;
    }
  }
  if (id === null) {
    const begun = await api.dfs.upload_begin({ volume, path, size: file.size, overwrite: true });
    id = begun.upload_id;
    keepResume(user, key, id);
  }
  const url = `/kapi/dfs/uploads/${id}`;
  const resumedAt = offset;
  onProgress({ sent: offset, size: file.size, resumedAt });
  let failures = 0;
  for (let part = nextPart(offset, file.size); part; part = nextPart(offset, file.size)) {
    const { start, end } = part;
    try {
      offset = await withToken((auth) => putPart(url, auth, start, file.slice(start, end), (n) => onProgress({ sent: start + n, size: file.size, resumedAt }), signal));
      failures = 0;
    } catch (e) {
      if (signal.aborted) throw e;
      const standsElsewhere = e instanceof KrpcError && e.code === 'CONFLICT' && typeof (e.data as { offset?: unknown } | undefined)?.offset === 'number';
      if (!standsElsewhere && (!isNetwork(e) || ++failures > RETRIES)) throw e;
      // The part may have landed in full, in part or not at all: the zone says where to go on from.
      offset = (await api.dfs.upload_status({ upload_id: id })).offset;
    }
    onProgress({ sent: offset, size: file.size, resumedAt });
  }
  await api.dfs.upload_commit({ upload_id: id }, { timeoutMs: uploadCommitTimeoutMs(file.size) });
  keepResume(user, key, null);
}

/** Gives up an upload for good: the zone drops what it held. */
export async function abandonUpload(volume: string, path: string, file: File): Promise<void> {
  const user = session.get()?.user.name ?? '';
  const key = resumeKey(volume, path, file);
  const id = resumeStore(user)[key];
  keepResume(user, key, null);
  if (id) await api.dfs.upload_abort({ upload_id: id }).catch(() => undefined);
}
