// The HTTP side of dfs (docs/dcfs.md, "HTTP"): file downloads with ranges and ETags, uploads (whole, and resumable
// parts), reads by content id (NDN), WebDAV, and the chunk and log exchange between storage nodes. Everything under
// `/kapi/dfs/`, reached through the node gateway (which also maps `/ndn/` and `/dav/` here); WebDAV and NDN also on
// dfs's own LAN listener (lanHandle). A request for a volume this node does not serve is passed to the node that does.
import { createReadStream } from 'node:fs';
import { request, type IncomingMessage, type ServerResponse } from 'node:http';
import { pipeline } from 'node:stream/promises';
import { GATEWAY_ONLY_HEADERS, KrpcError, NODE_HEADER, type Principal, clientAddress, sendJson } from '../../lib/krpc/index.ts';
import { RateLimiter } from '../../lib/rate-limiter.ts';
import type { Logger } from '../../lib/log/logger.ts';
import { LIVE_PAGE, localLivePage } from './gc.ts';
import { type ChunkIO } from './chunk-io.ts';
import type { ReadCheck } from './chunk-store.ts';
import { isChunkId } from './chunker.ts';
import { volumeDavBackend } from './dav-backend.ts';
import type { DiskSet } from './disks.ts';
import { BasicSessions, type BasicGrant } from './basic-sessions.ts';
import { ElsewhereError, type Files, toKrpcError } from './files.ts';
import { decodeUrlPath } from './paths.ts';
import { LOG_BATCH_BYTES, MAX_CHUNK_BYTES, SNAPSHOT_SEQ_HEADER, SNAPSHOT_SHA256_HEADER } from './peers.ts';
import { type Uploads, uploadVolume } from './uploads.ts';
import type { VolumeSet } from './volumes.ts';
import { DEFAULT_DAV_LIMITS, type DavHandler, bodyReadAhead, createDavHandler, hasBody } from './webdav.ts';
import { VOLUME_NAME, placementPolicySchema } from '../../lib/config/storage-records.ts';
import { DEVICE_NAME } from '../../lib/identity/names.ts';
import type { Version } from './volume-meta.ts';

export interface HttpDeps {
  self: string;
  gatewayUrl: string;
  files: Files;
  uploads: Uploads;
  disks: DiskSet;
  volumes: VolumeSet;
  io: ChunkIO;
  authenticate(token: string): Promise<Principal>;
  /** A user's session from a WebDAV client's Basic credentials, and its renewal. */
  basicLogin(user: string, password: string): Promise<BasicGrant>;
  basicRefresh(refreshToken: string): Promise<BasicGrant>;
  log: Logger;
}

const MAX_JSON_BODY = 4 * 1024 * 1024;

/** What a refusal of the credentials themselves looks like; any other failure to check them is the zone's. */
const CREDENTIALS_REFUSED = new Set<string>(['UNAUTHENTICATED', 'TOKEN_EXPIRED', 'PERMISSION_DENIED', 'INVALID_PARAMS']);

/**
 * Logins from Basic credentials per client address: a burst of 5, then one every 12 s. A client's parallel requests
 * share one login and its session is kept going (basic-sessions.ts), so only guessing meets this; and one every 12 s
 * stays under verify-hub's own per-address refill, where every dfs login counts against dfs's address, so one guessing
 * client cannot lock the other WebDAV users out of verify-hub.
 */
export const BASIC_LOGIN_RATE = { capacity: 5, refillMs: 12_000 };

function fail(res: ServerResponse, err: unknown): void {
  const e = toKrpcError(err);
  const k = e instanceof KrpcError ? e : new KrpcError('INTERNAL', 'internal error');
  if (res.headersSent) {
    res.destroy();
    return;
  }
  sendJson(res, k.httpStatus, { error: k.toJSON() });
}

/**
 * Writes what `it` yields (starting with `first`, already taken) and ends the response. A client that goes away (a
 * player seeking, a cancelled download) never drains: then this stops and closes `it`, or the request and the chunks
 * it read ahead would wait for good. Throws what `it` throws.
 */
export async function streamTo(res: ServerResponse, it: AsyncIterator<Buffer>, first: IteratorResult<Buffer>): Promise<void> {
  try {
    for (let r = first; !r.done; r = await it.next()) {
      if (!res.write(r.value) && !(await drained(res))) return;
    }
    res.end();
  } finally {
    await it.return?.(undefined);
  }
}

/** Resolves true once the response can take more, false if its connection closed first. */
function drained(res: ServerResponse): Promise<boolean> {
  if (res.destroyed) return Promise.resolve(false);
  return new Promise((resolve) => {
    const done = (ok: boolean) => {
      res.off('drain', onDrain);
      res.off('close', onClose);
      resolve(ok);
    };
    const onDrain = () => done(true);
    const onClose = () => done(false);
    res.on('drain', onDrain);
    res.on('close', onClose);
  });
}

/** Methods a follower may answer from its own copy when the primary cannot be reached. */
/**
 * For a request that asked to hear whether to go on (`Expect: 100-continue`, as Finder and Cyberduck send): the 100
 * goes out only when a handler starts reading the body. A request refused before that (credentials, permission, a
 * lock, the quota) gets its final answer instead, and the client never sends a body that would only be thrown away.
 */
export function continueWhenRead(req: IncomingMessage, res: ServerResponse): void {
  const onListener = (event: string | symbol) => {
    if (event !== 'data' && event !== 'readable') return;
    req.off('newListener', onListener);
    if (!res.headersSent && !res.writableEnded) res.writeContinue();
  };
  req.on('newListener', onListener);
}

/**
 * Whether a request target's path holds something URL parsing would resolve away before the handlers see it: a `.`
 * or `..` segment, percent-encoded or not, or a backslash (read as `/`). Such a path is refused rather than
 * normalised, so a request acts on exactly the path it names and a traversal is never quietly turned into another.
 */
function resolvesAway(target: string): boolean {
  const path = target.split('?', 1)[0]!;
  return path.includes('\\') || path.split('/').some((seg) => /^(\.|%2e){1,2}$/i.test(seg));
}

function isRead(req: IncomingMessage): boolean {
  return req.method === 'GET' || req.method === 'HEAD' || req.method === 'PROPFIND' || req.method === 'OPTIONS';
}

/** A request's whole body, refused past `max` bytes (before any is read when its Content-Length says so already). */
async function readSmallBody(req: IncomingMessage, max: number, tooLarge = `request body larger than ${max} bytes`): Promise<Buffer> {
  if (Number(req.headers['content-length'] ?? 0) > max) throw new KrpcError('PAYLOAD_TOO_LARGE', tooLarge);
  const parts: Buffer[] = [];
  let n = 0;
  for await (const c of req) {
    n += (c as Buffer).length;
    if (n > max) throw new KrpcError('PAYLOAD_TOO_LARGE', tooLarge);
    parts.push(c as Buffer);
  }
  return Buffer.concat(parts);
}

async function readJson(req: IncomingMessage): Promise<unknown> {
  const body = await readSmallBody(req, MAX_JSON_BODY);
  try {
    return JSON.parse(body.toString('utf8'));
  } catch {
    throw new KrpcError('BAD_REQUEST', 'body is not JSON');
  }
}

/** `bytes=a-b`, `bytes=a-`, `bytes=-n` against a size; null for no (or an unsupported multi-) range; 'unsatisfiable'. */
export function parseRange(header: string | undefined, size: number): { start: number; end: number } | null | 'unsatisfiable' {
  if (!header) return null;
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!m || (m[1] === '' && m[2] === '')) return null;
  if (m[1] === '') {
    const n = Number(m[2]);
    if (n === 0) return 'unsatisfiable';
    return size === 0 ? 'unsatisfiable' : { start: Math.max(0, size - n), end: size - 1 };
  }
  const start = Number(m[1]);
  // A last byte before the first makes the range invalid, which is answered as if there were none (RFC 9110 §14.2).
  if (m[2] !== '' && Number(m[2]) < start) return null;
  const end = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1);
  if (start >= size || end < start) return 'unsatisfiable';
  return { start, end };
}

/** A URL path segment decoded; a malformed escape (`%E0%A4`) is the client's error, not the server's. */
function decodeSegment(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    throw new KrpcError('BAD_REQUEST', `the path segment ${JSON.stringify(segment.slice(0, 80))} has a malformed %-escape`);
  }
}

/** The follower a log or snapshot request says it comes from (`from`), whose position the primary keeps its log
 * for; null when it names none. Only dfs instances ask, so the name is taken as given. */
function askingNode(url: URL): string | null {
  const from = url.searchParams.get('from');
  if (from !== null && !DEVICE_NAME.test(from)) throw new KrpcError('INVALID_PARAMS', `from: a node name, not ${JSON.stringify(from.slice(0, 40))}`);
  return from;
}

function contentRange(header: string | undefined): { start: number; end: number; total: number } | null {
  const m = header ? /^bytes (\d+)-(\d+)\/(\d+)$/.exec(header.trim()) : null;
  return m ? { start: Number(m[1]), end: Number(m[2]), total: Number(m[3]) } : null;
}

export class DfsHttp {
  private readonly dav = new Map<string, DavHandler>();
  /** The caller of each WebDAV request being served, for the backend made for it. */
  private readonly davCallers = new WeakMap<IncomingMessage, Principal>();
  private readonly basicLogins = new RateLimiter(BASIC_LOGIN_RATE);
  /** Volumes whose snapshot is being sent from here. */
  private readonly snapshotting = new Set<string>();
  private readonly basicGrants: BasicSessions;
  /** The session a request's Basic credentials logged in to, so that a request passed on to another node carries
   * the session rather than the password, and costs that node no login of its own. */
  private readonly basicSessions = new WeakMap<IncomingMessage, string>();

  constructor(private readonly d: HttpDeps) {
    this.basicGrants = new BasicSessions({ login: d.basicLogin, refresh: d.basicRefresh });
  }

  private async principal(req: IncomingMessage, allowBasic = false): Promise<Principal> {
    const h = req.headers.authorization ?? '';
    const bearer = /^Bearer (.+)$/.exec(h);
    if (bearer) return this.d.authenticate(bearer[1]!);
    const basic = allowBasic ? /^Basic ([A-Za-z0-9+/=]+)$/.exec(h) : null;
    if (basic) {
      const text = Buffer.from(basic[1]!, 'base64').toString('utf8');
      const colon = text.indexOf(':');
      if (colon > 0) {
        // A login costs verify-hub a scrypt; it is made once per credentials, not per request.
        const [user, password] = [text.slice(0, colon), text.slice(colon + 1)];
        const token = await this.basicGrants.token(user, password, () => {
          const wait = this.basicLogins.take(clientAddress(req));
          if (wait > 0) {
            throw new KrpcError('RATE_LIMITED', `too many logins from this address; retry in ${Math.ceil(wait / 1000)} s`, { retry_after_ms: wait });
          }
        });
        try {
          return await this.authenticateSession(req, token);
        } catch (err) {
          // A session refused (a password changed, the user disabled) is forgotten; one merely not checked now is kept.
          if (err instanceof KrpcError && CREDENTIALS_REFUSED.has(err.code)) this.basicGrants.drop(user, password);
          throw err;
        }
      }
    }
    throw new KrpcError('UNAUTHENTICATED', 'this needs a token (Authorization: Bearer ...)');
  }

  private async authenticateSession(req: IncomingMessage, token: string): Promise<Principal> {
    const p = await this.d.authenticate(token);
    this.basicSessions.set(req, token);
    return p;
  }

  private kernelOnly(p: Principal): void {
    if (p.kind !== 'service' || p.userId !== 'dfs') throw new KrpcError('PERMISSION_DENIED', 'only dfs instances exchange chunks and logs');
  }

  /**
   * The LAN listener's requests (docs/dcfs.md, "LAN access"): WebDAV under `/dav/` and reads by content id under
   * `/ndn/`, each authenticated as through the gateway; nothing else of dfs's HTTP side (the file API, chunk and log
   * exchange between nodes) is reachable there.
   */
  lanHandle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    for (const h of GATEWAY_ONLY_HEADERS) delete req.headers[h];
    let url: URL;
    try {
      if (req.url?.includes('#')) throw new Error('fragment');
      url = new URL(req.url ?? '/', 'http://lan');
    } catch {
      return sendJson(res, 400, { error: { code: 'BAD_REQUEST', message: 'malformed request URI' } });
    }
    if (resolvesAway(req.url ?? '/')) return sendJson(res, 400, { error: { code: 'BAD_REQUEST', message: 'a path may hold no "." or ".." segment and no "\\"' } });
    await this.guarded(req, res, url, async () => {
      let m: RegExpExecArray | null;
      if ((m = /^\/dav(\/.*)?$/.exec(url.pathname))) return await this.davRequest(req, res, url, m[1] ?? '/');
      if ((m = /^\/ndn\/([^/]+)$/.exec(url.pathname)) && (req.method === 'GET' || req.method === 'HEAD')) return await this.ndn(req, res, decodeSegment(m[1]!));
      if (url.pathname === '/' && req.method === 'OPTIONS') {
        // Windows' WebDAV redirector asks the server's root before it opens a folder under it.
        res.writeHead(200, { DAV: '1, 2', 'MS-Author-Via': 'DAV', Allow: 'OPTIONS', 'content-length': '0' });
        res.end();
        return;
      }
      sendJson(res, 404, { error: { code: 'NOT_FOUND', message: `no route for ${req.method} ${url.pathname} here: WebDAV is under /dav/<volume>/, content by id under /ndn/<id>` } });
    });
  };

  /** The route handler for everything under /kapi/dfs/ that is not the kRPC endpoint. */
  handle = (req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> =>
    this.guarded(req, res, url, async () => {
      const rest = url.pathname.slice('/kapi/dfs'.length);
      let m: RegExpExecArray | null;
      if ((m = /^\/dav(\/.*)?$/.exec(rest))) return await this.davRequest(req, res, url, m[1] ?? '/');
      if ((m = /^\/files\/([a-z][a-z0-9-]{0,31})(\/.*)?$/.exec(rest))) return await this.fileRequest(req, res, m[1]!, decodeUrlPath(m[2] ?? '/'), url);
      if ((m = /^\/uploads\/([^/]+)$/.exec(rest)) && req.method === 'PUT') return await this.uploadPart(req, res, m[1]!, url);
      if ((m = /^\/ndn\/([^/]+)$/.exec(rest)) && (req.method === 'GET' || req.method === 'HEAD')) return await this.ndn(req, res, decodeSegment(m[1]!));
      if ((m = /^\/chunks\/([^/]+)\/(sha256:[0-9a-f]{64})$/.exec(rest))) return await this.chunk(req, res, url, m[1]!, m[2]!);
      if (rest === '/chunks-has' && req.method === 'POST') return await this.chunksHas(req, res);
      if ((m = /^\/meta\/([^/]+)\/log$/.exec(rest)) && req.method === 'GET') return await this.metaLog(req, res, m[1]!, url);
      if ((m = /^\/meta\/([^/]+)\/live$/.exec(rest)) && req.method === 'GET') return await this.metaLive(req, res, m[1]!, url);
      if ((m = /^\/meta\/([^/]+)\/snapshot$/.exec(rest)) && req.method === 'GET') return await this.metaSnapshot(req, res, m[1]!, url);
      sendJson(res, 404, { error: { code: 'NOT_FOUND', message: `no route for ${req.method} ${url.pathname}` } });
    });

  private async guarded(req: IncomingMessage, res: ServerResponse, url: URL, fn: () => Promise<void>): Promise<void> {
    try {
      await fn();
    } catch (err) {
      if (err instanceof ElsewhereError) return this.forward(req, res, err.node, url, err.volume, () => void this.guarded(req, res, url, fn));
      fail(res, err);
    }
  }

  /**
   * Passes the request on to `node`'s dfs through the local gateway, body and answer streamed; `again` serves a read
   * here instead when the primary turns out to be unreachable.
   */
  private forward(req: IncomingMessage, res: ServerResponse, node: string, url: URL, volume: string, again: () => void): void {
    if (node === this.d.self || req.headers[NODE_HEADER] === this.d.self) {
      return fail(res, new KrpcError('UNAVAILABLE', `this node (${this.d.self}) does not hold the volume's metadata yet`));
    }
    // A read may be answered here after all (below), when a body streamed to the primary would be gone from the
    // socket: such a body (a PROPFIND's XML) is read first, kept for that, and sent whole.
    if (isRead(req) && hasBody(req)) {
      readSmallBody(req, DEFAULT_DAV_LIMITS.maxXmlBytes)
        .then((body) => {
          bodyReadAhead(req, body);
          this.send(req, res, node, url, volume, again, body);
        })
        .catch((err: unknown) => fail(res, err));
      return;
    }
    this.send(req, res, node, url, volume, again, null);
  }

  private send(req: IncomingMessage, res: ServerResponse, node: string, url: URL, volume: string, again: () => void, body: Buffer | null): void {
    // The host the client addressed names its resources (WebDAV's Destination), at the primary as here.
    const headers = { ...req.headers, [NODE_HEADER]: node, 'x-forwarded-host': req.headers['x-forwarded-host'] ?? req.headers.host ?? '' };
    delete headers.host;
    const session = this.basicSessions.get(req);
    if (session) headers.authorization = `Bearer ${session}`;
    if (body) {
      delete headers['transfer-encoding'];
      headers['content-length'] = String(body.length);
    }
    const read = isRead(req);
    const up = request(`${this.d.gatewayUrl}${url.pathname}${url.search}`, { method: req.method, headers, timeout: 30_000 }, (ans) => {
      // Cut off from the primary, a follower answers reads from its own copy of the metadata.
      if (read && ans.statusCode === 503 && this.d.files.primaryUnreachable(volume)) {
        ans.resume();
        again();
        return;
      }
      res.writeHead(ans.statusCode ?? 502, ans.headers);
      ans.pipe(res);
    });
    up.on('timeout', () => up.destroy(new Error(`no answer within 30 s`)));
    up.on('error', (err) => {
      if (read && !res.headersSent && this.d.files.primaryUnreachable(volume)) return again();
      fail(res, new KrpcError('UNAVAILABLE', `${node}: ${err.message}`));
    });
    if (body) up.end(body);
    else req.pipe(up);
  }

  private async fileRequest(req: IncomingMessage, res: ServerResponse, volume: string, path: string, url: URL): Promise<void> {
    const p = await this.principal(req);
    const files = this.d.files;
    if (req.method === 'GET' || req.method === 'HEAD') {
      files.check(p, 'read', volume, files.path(path));
      const v = files.readable(volume);
      const entry = files.meta(() => v.meta.stat(path));
      if (entry.type === 'dir') throw new KrpcError('FAILED_PRECONDITION', `${path} is a folder: list it with dfs.list`, { reason: 'IS_A_DIRECTORY' });
      // `?version=<id>`: one of the kept versions (dfs.versions), readable by whoever may read the file.
      const version = files.meta(() => v.meta.getVersion(path, url.searchParams.get('version') ?? undefined));
      return this.sendVersion(req, res, version, url.searchParams.has('version') ? version.mtime : entry.mtime);
    }
    if (req.method === 'PUT') {
      const length = req.headers['content-length'] ? Number(req.headers['content-length']) : undefined;
      const r = await files.write(volume, path, req, p, { sizeHint: length, ...this.putConditions(req, p, volume, path) });
      res.writeHead(r.created ? 201 : 200, { 'content-type': 'application/json', etag: `"${r.entry.content_id}"` });
      res.end(JSON.stringify({ entry: { path: r.entry.path, size: r.entry.size, content_id: r.entry.content_id } }));
      return;
    }
    throw new KrpcError('BAD_REQUEST', `${req.method} is not a file operation (GET, HEAD, PUT)`);
  }

  /**
   * A PUT's preconditions (RFC 9110 §13): `If-Match` (the file as the client last saw it, or `*`: any) and
   * `If-None-Match` (`*`: create only; tags: not while it is one of them) are checked against the file now, 412 when
   * they fail. `If-Match` with a tag and `If-None-Match: *` are held at the commit too (that version, or no file), so
   * a write racing this one cannot slip between. Only for a caller who may make this write: to anyone else the answer
   * would tell whether the file exists.
   */
  private putConditions(req: IncomingMessage, p: Principal, volume: string, path: string): { overwrite?: false; expectVersion?: string | null } {
    const ifMatch = req.headers['if-match'];
    const ifNoneMatch = req.headers['if-none-match'];
    if (ifMatch === undefined && ifNoneMatch === undefined) return {};
    const files = this.d.files;
    const cur = files.meta(() => files.writable(volume).meta.tryStat(files.path(path)));
    files.checkPut(p, volume, files.path(path), cur !== null);
    const etag = cur?.type === 'file' && cur.content_id !== null ? `"${cur.content_id}"` : null;
    const tags = (h: string) => h.split(',').map((t) => t.trim());
    const failed = (why: string) => new KrpcError('FAILED_PRECONDITION', `${path} ${why}`, { reason: 'PRECONDITION_FAILED' });
    if (ifNoneMatch !== undefined) {
      if (ifNoneMatch.trim() === '*') {
        if (cur !== null) throw failed('exists (If-None-Match: *)');
      } else if (etag !== null && tags(ifNoneMatch).some((t) => t === etag || t === `W/${etag}`)) {
        throw failed('is the version If-None-Match names');
      }
    }
    if (ifMatch === undefined) return ifNoneMatch?.trim() === '*' ? { overwrite: false } : {};
    if (etag === null) throw failed('does not exist (If-Match)');
    if (ifMatch.trim() === '*') return {};
    if (!tags(ifMatch).includes(etag)) throw failed('is no longer the version If-Match names');
    return { expectVersion: cur!.version_id };
  }

  /** A version's bytes with HTTP caching and ranges: the ETag is the content id, so it is the same on every node. */
  private async sendVersion(req: IncomingMessage, res: ServerResponse, version: Version, mtime: number, byId = false): Promise<void> {
    const etag = `"${version.content_id}"`;
    // By content id every chunk is hashed, not CRC-checked: the id is the promise made. Such an answer never changes,
    // but it is permission-checked, so no shared cache may keep it for others.
    const check: ReadCheck = byId ? 'hash' : 'crc';
    const base: Record<string, string> = {
      etag,
      'last-modified': new Date(mtime).toUTCString(),
      'accept-ranges': 'bytes',
      'content-type': 'application/octet-stream',
      ...(byId ? { 'cache-control': 'private, max-age=31536000, immutable' } : {}),
    };
    const inm = req.headers['if-none-match'];
    // Weak comparison, as If-None-Match asks (RFC 9110 §13.1.2): W/"x" matches "x".
    if (inm && inm.split(',').map((s) => s.trim().replace(/^W\//, '')).some((t) => t === etag || t === '*')) {
      res.writeHead(304, base);
      res.end();
      return;
    }
    let range = parseRange(req.headers.range, version.size);
    const ifRange = req.headers['if-range'];
    if (range && ifRange && ifRange !== etag) range = null;
    if (range === 'unsatisfiable') {
      res.writeHead(416, { ...base, 'content-range': `bytes */${version.size}` });
      res.end();
      return;
    }
    const start = range?.start ?? 0;
    const end = range?.end ?? version.size - 1;
    const headers = { ...base, 'content-length': String(Math.max(0, end - start + 1)), ...(range ? { 'content-range': `bytes ${start}-${end}/${version.size}` } : {}) };
    if (req.method === 'HEAD') {
      res.writeHead(range ? 206 : 200, headers);
      res.end();
      return;
    }
    // Before the first byte a failure is an error answer; after it, the connection is cut so the client sees a short body.
    const it = this.d.files.read(version, start, end, check)[Symbol.asyncIterator]();
    const first = await it.next();
    res.writeHead(range ? 206 : 200, headers);
    try {
      await streamTo(res, it, first);
    } catch (err) {
      this.d.log.warn({ err: (err as Error).message }, 'dfs: read failed mid-transfer');
      res.destroy();
    }
  }

  private async uploadPart(req: IncomingMessage, res: ServerResponse, id: string, url: URL): Promise<void> {
    const p = await this.principal(req);
    // The spool is on the volume's primary: a part sent here is passed on there (ElsewhereError, guarded), body
    // unread, with the caller's token. Only after the caller is known, so no stranger's bytes cross to another node.
    this.d.files.writable(uploadVolume(id));
    const cr = contentRange(req.headers['content-range']);
    const offset = cr ? cr.start : Number(url.searchParams.get('offset') ?? 'NaN');
    if (!Number.isInteger(offset) || offset < 0) throw new KrpcError('INVALID_PARAMS', 'give the part\'s offset: Content-Range: bytes <start>-<end>/<size>, or ?offset=');
    const length = req.headers['content-length'] ? Number(req.headers['content-length']) : null;
    if (cr && (cr.end < cr.start || (length !== null && length !== cr.end - cr.start + 1))) {
      throw new KrpcError('INVALID_PARAMS', `Content-Range bytes ${cr.start}-${cr.end} does not describe a body of ${length ?? 'this'} bytes`);
    }
    const at = await this.d.uploads.append(id, p, offset, req, length);
    sendJson(res, 200, { offset: at });
  }

  private async ndn(req: IncomingMessage, res: ServerResponse, id: string): Promise<void> {
    if (!isChunkId(id)) throw new KrpcError('INVALID_PARAMS', 'a content id: sha256:<64 lower-case hex digits>');
    // Basic too: a download tool given a user and password (curl -u) reads by content id as a WebDAV client does.
    const p = await this.principal(req, true);
    // Readable is whatever some file the caller may read holds: an id alone is no permission.
    for (const v of this.d.volumes.all()) {
      for (const hit of v.meta.findContent(id)) {
        try {
          this.d.files.check(p, 'read', v.name, hit.path);
        } catch {
          continue;
        }
        if (hit.version.content_id === id) return this.sendVersion(req, res, hit.version, hit.version.mtime, true);
        const data = await this.d.io.fetch(id);
        res.writeHead(200, { etag: `"${id}"`, 'content-type': 'application/octet-stream', 'content-length': String(data.length), 'cache-control': 'private, max-age=31536000, immutable' });
        res.end(req.method === 'HEAD' ? undefined : data);
        return;
      }
    }
    throw new KrpcError('NOT_FOUND', `no file you may read holds ${id} on this node's volumes`);
  }

  private async chunk(req: IncomingMessage, res: ServerResponse, url: URL, disk: string, id: string): Promise<void> {
    this.kernelOnly(await this.principal(req));
    if (req.method === 'PUT') {
      const d = this.d.disks.get(disk);
      if (!d?.store) throw new KrpcError('UNAVAILABLE', `disk ${disk} is not open on ${this.d.self}`);
      if (d.record.state !== 'active') throw new KrpcError('FAILED_PRECONDITION', `disk ${disk} is draining`);
      // The bound peers read chunks with: a larger body can only be a mistake or an attack, and is not held.
      const body = await readSmallBody(req, MAX_CHUNK_BYTES, `a chunk is at most ${MAX_CHUNK_BYTES} bytes`);
      const r = await d.store.put(id, body).catch((err: Error) => {
        throw new KrpcError(/hash/i.test(err.message) ? 'INVALID_PARAMS' : 'UNAVAILABLE', `${this.d.self}/${disk}: ${err.message}`);
      });
      sendJson(res, r.stored ? 201 : 200, { stored: r.stored });
      return;
    }
    if (req.method === 'GET') {
      for (const d of this.d.disks.open()) {
        if (!d.store.has(id)) continue;
        try {
          const data = await d.store.get(id);
          res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(data.length) });
          res.end(data);
          return;
        } catch {
          // A damaged copy here: another disk of this node may hold a good one.
        }
      }
      throw new KrpcError('NOT_FOUND', `${this.d.self} holds no readable copy of ${id}`);
    }
    if (req.method === 'DELETE') {
      const parsed = placementPolicySchema.safeParse({ copies: Number(url.searchParams.get('copies')), failure_domain: url.searchParams.get('failure_domain') });
      if (!parsed.success) throw new KrpcError('INVALID_PARAMS', 'a chunk is dropped only with the policy its other copies must meet: ?copies=<1-8>&failure_domain=disk|node');
      if (!this.d.disks.get(disk)?.store) throw new KrpcError('UNAVAILABLE', `disk ${disk} is not open on ${this.d.self}`);
      sendJson(res, 200, { deleted: await this.d.io.dropLocalIfCovered(disk, id, parsed.data) });
      return;
    }
    throw new KrpcError('BAD_REQUEST', `${req.method} is not a chunk operation`);
  }

  private async chunksHas(req: IncomingMessage, res: ServerResponse): Promise<void> {
    this.kernelOnly(await this.principal(req));
    const body = (await readJson(req)) as { ids?: unknown };
    if (!Array.isArray(body.ids) || body.ids.length > 100_000 || !body.ids.every(isChunkId)) throw new KrpcError('INVALID_PARAMS', 'ids: a list of chunk ids');
    const found: Record<string, string[]> = {};
    for (const id of body.ids as string[]) {
      const on = this.d.io.holds(id);
      if (on.length > 0) found[id] = on;
    }
    sendJson(res, 200, { found });
  }

  private async metaLog(req: IncomingMessage, res: ServerResponse, volume: string, url: URL): Promise<void> {
    this.kernelOnly(await this.principal(req));
    const v = this.d.volumes.get(volume);
    if (!v) throw new KrpcError('NOT_FOUND', `${this.d.self} holds no metadata of volume ${volume}`);
    const after = Number(url.searchParams.get('after') ?? '0');
    const limit = Math.min(10_000, Number(url.searchParams.get('limit') ?? '1000'));
    if (!Number.isInteger(after) || after < 0 || !Number.isInteger(limit) || limit < 1) throw new KrpcError('INVALID_PARAMS', 'after and limit: whole numbers');
    const from = askingNode(url);
    const start = v.meta.logStart;
    // A follower asks from the last entry it holds, to compare it with this one: the entry after it comes as well,
    // however large, or a follower whose next entry is over the batch bound would be sent only what it has, for good.
    // One asking from before what this log still keeps gets none, and `log_start` says it needs a snapshot.
    const entries = after < start ? [] : this.d.files.meta(() => v.meta.log(after, limit, LOG_BATCH_BYTES, 2));
    if (from !== null) this.d.volumes.heard(volume, from, after);
    sendJson(res, 200, { entries, last_seq: v.meta.lastSeq, log_start: start });
  }

  /**
   * A consistent snapshot of a volume's metadata, streamed as the SQLite file it is, for a follower whose next entry
   * this primary's log no longer keeps. Its length, the seq it holds and its SHA-256 come as headers. One at a time
   * per volume: each is a file as large as the metadata.
   */
  private async metaSnapshot(req: IncomingMessage, res: ServerResponse, volume: string, url: URL): Promise<void> {
    this.kernelOnly(await this.principal(req));
    const from = askingNode(url);
    const v = this.d.volumes.get(volume);
    if (!v || v.role !== 'primary') throw new KrpcError('UNAVAILABLE', `${this.d.self} is not the primary of volume ${volume}`);
    if (this.snapshotting.has(volume)) throw new KrpcError('UNAVAILABLE', `a snapshot of volume ${volume} is being sent from ${this.d.self} already; try again once it is done`);
    this.snapshotting.add(volume);
    try {
      const snap = await this.d.volumes.snapshot(volume);
      try {
        // The follower reads the log on from the snapshot's last entry: those entries are kept for it from now.
        if (from !== null) this.d.volumes.heard(volume, from, Math.max(0, snap.seq - 1));
        res.writeHead(200, {
          'content-type': 'application/vnd.sqlite3',
          'content-length': String(snap.bytes),
          [SNAPSHOT_SEQ_HEADER]: String(snap.seq),
          [SNAPSHOT_SHA256_HEADER]: snap.sha256,
        });
        await pipeline(createReadStream(snap.file), res);
      } finally {
        snap.release();
      }
    } finally {
      this.snapshotting.delete(volume);
    }
  }

  /** A page of the chunks a volume this node is primary for keeps alive, for another node's collection (gc.ts). */
  private async metaLive(req: IncomingMessage, res: ServerResponse, volume: string, url: URL): Promise<void> {
    this.kernelOnly(await this.principal(req));
    const after = url.searchParams.get('after') ?? '';
    const limit = Number(url.searchParams.get('limit') ?? String(LIVE_PAGE));
    if (after !== '' && !isChunkId(after)) throw new KrpcError('INVALID_PARAMS', 'after: a chunk id, or empty for the first page');
    if (!Number.isInteger(limit) || limit < 1 || limit > 10_000) throw new KrpcError('INVALID_PARAMS', 'limit: a whole number from 1 to 10000');
    const v = this.d.volumes.get(volume);
    if (!v || v.role !== 'primary') throw new KrpcError('UNAVAILABLE', `${this.d.self} is not the primary of volume ${volume}`);
    sendJson(res, 200, this.d.files.meta(() => localLivePage(this.d.volumes, this.d.files, volume, after, limit)));
  }

  private async davRequest(req: IncomingMessage, res: ServerResponse, url: URL, rest: string): Promise<void> {
    const m = /^\/([^/]+)(\/.*)?$/.exec(rest);
    if (!m || !VOLUME_NAME.test(m[1]!)) {
      res.writeHead(404, { 'content-type': 'text/plain' });
      res.end('WebDAV: give a volume, /dav/<volume>/...\n');
      return;
    }
    const volume = m[1]!;
    let p: Principal;
    try {
      p = await this.principal(req, true);
    } catch (err) {
      if (err instanceof KrpcError && err.code === 'RATE_LIMITED') {
        const ms = Number((err.data as { retry_after_ms?: number } | undefined)?.retry_after_ms ?? 12_000);
        res.writeHead(429, { 'retry-after': String(Math.ceil(ms / 1000)), 'content-type': 'text/plain' });
        res.end(`${err.message}\n`);
        return;
      }
      if (!(err instanceof KrpcError && CREDENTIALS_REFUSED.has(err.code))) {
        // A 401 would have the client ask its user for a password that is not the problem (and davfs2 may drop the
        // mount); the cause stays in the log, not in an answer to whoever asked.
        this.d.log.warn({ err: (err as Error).message }, 'dfs: could not check WebDAV credentials');
        res.writeHead(503, { 'retry-after': '5', 'content-type': 'text/plain' });
        res.end('credentials cannot be checked right now; try again shortly\n');
        return;
      }
      // WebDAV clients ask for credentials only when challenged.
      res.writeHead(401, { 'www-authenticate': 'Basic realm="BuckyOS", charset="UTF-8"', 'content-type': 'text/plain' });
      res.end(`${err.message}\n`);
      return;
    }
    // Reads may be answered by a follower cut off from the primary; everything else runs on the primary.
    const read = req.method === 'GET' || req.method === 'HEAD' || req.method === 'PROPFIND' || req.method === 'OPTIONS';
    try {
      if (read) this.d.files.readable(volume);
      else this.d.files.writable(volume);
    } catch (err) {
      if (err instanceof ElsewhereError) return this.forward(req, res, err.node, url, volume, () => void this.guarded(req, res, url, () => this.davRequest(req, res, url, rest)));
      throw err;
    }
    let handler = this.dav.get(volume);
    if (!handler) {
      handler = createDavHandler({
        backend: (r) => volumeDavBackend(this.d.files, volume, this.davCallers.get(r)!),
        prefix: `/dav/${volume}`,
        principal: (r) => this.davCallers.get(r)?.userId,
        onError: (err, r) => this.d.log.error({ err: (err as Error).message, method: r.method, volume }, 'dfs: WebDAV request failed'),
      });
      this.dav.set(volume, handler);
    }
    // Resources are named under /dav/<volume>, whichever path the request came in on, and on the host the client
    // addressed (the gateway passes it on), which Destination headers name.
    req.url = `/dav/${volume}${m[2] ?? ''}${url.search}`;
    const host = req.headers['x-forwarded-host'];
    if (typeof host === 'string' && host) req.headers.host = host;
    this.davCallers.set(req, p);
    await handler(req, res);
  }
}
