// The WebDAV protocol (RFC 4918, class 1 and 2) as a node:http request handler over a storage-independent backend.
// The handler owns everything HTTP and WebDAV: URL decoding and validation, conditional requests, ranges, XML bodies,
// multistatus answers and write locks (held in memory: a lock is a promise between one client and this process, and
// clients refresh or retake it). The backend owns files, directories and dead properties. docs/dcfs.md § WebDAV.
import { randomUUID } from 'node:crypto';
import { STATUS_CODES, type IncomingMessage, type ServerResponse } from 'node:http';
import { PassThrough, Readable, finished } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { PathError, normalizePath } from './paths.ts';
import { DAV_NS, XmlError, childElements, escapeAttr, escapeText, isDav, parseXml, serializeContent, type XmlElement } from './webdav-xml.ts';

export interface DavEntry {
  /** Volume-relative path: "/" for the root, otherwise "/a/b" (no trailing slash). */
  path: string;
  type: 'file' | 'dir';
  size: number;
  /** Milliseconds since the epoch. */
  mtime: number;
  created: number;
  /** Opaque; changes whenever the content changes. Without quotes: the handler sends it as a strong ETag. */
  etag: string;
  contentType?: string;
}

/** Bytes start..end, both inclusive (as in an HTTP Range header). */
export interface DavRange {
  start: number;
  end: number;
}

export interface DavQuota {
  usedBytes: number;
  availableBytes: number;
}

/**
 * What the protocol needs from storage. Paths are decoded, validated, "/"-separated and volume-relative, in the
 * canonical form of paths.ts's normalizePath: "/" is the root, "/a/b" a member, names in NFC, never "." or ".."
 * segments, empty segments or a trailing slash. Failures are DavBackendError (or any error whose `code` is a
 * DavErrorCode, such as the volume metadata's MetaError), which the handler turns into HTTP statuses.
 */
export interface DavBackend {
  stat(path: string): Promise<DavEntry | null>;
  /** The members of a directory (not recursive). */
  list(path: string): Promise<DavEntry[]>;
  read(path: string, range?: DavRange): Promise<Readable>;
  /** Replaces or creates a file from the stream; NOT_FOUND_PARENT if the parent is missing, IS_A_DIRECTORY on a directory. */
  write(path: string, body: Readable, opts: { contentType?: string; expectedSize?: number }): Promise<{ created: boolean; entry: DavEntry }>;
  /** EXISTS if anything is at the path, NOT_FOUND_PARENT if the parent is missing. */
  mkdir(path: string): Promise<void>;
  /** Removes a file, or a directory with everything below it, with their dead properties. */
  remove(path: string): Promise<void>;
  /** Dead properties travel with the resource. EXISTS when the destination exists and overwrite is false; otherwise an existing destination is replaced whole. */
  move(from: string, to: string, opts: { overwrite: boolean }): Promise<{ created: boolean }>;
  /** As move, but the source stays; depth 0 copies a directory without its members. Dead properties are copied. */
  copy(from: string, to: string, opts: { overwrite: boolean; depth: 0 | 'infinity' }): Promise<{ created: boolean }>;
  /** Dead properties: key "{namespace}localname", value the property element's content as self-contained XML text. */
  getProps(path: string): Promise<Record<string, string>>;
  /** Sets and removes dead properties all or nothing; the two never share a key. */
  patchProps(path: string, set: Record<string, string>, remove: string[]): Promise<void>;
  /** Space for RFC 4331's quota properties; absent when the backend cannot tell. */
  quota?(path: string): Promise<DavQuota | null>;
  /**
   * FORBIDDEN unless the caller may take a lock on the path: a write lock keeps everyone else from changing it, so it
   * needs what changing it would (creating it, when nothing is there yet). Absent: whoever may see a path may lock it.
   */
  checkLock?(path: string, exists: boolean): Promise<void>;
}

/** The volume metadata's MetaError codes that a request can cause, plus FORBIDDEN for a permission refused below the protocol. */
export const DAV_ERROR_CODES = [
  'NOT_FOUND',
  'NOT_FOUND_PARENT',
  'EXISTS',
  'NOT_A_DIRECTORY',
  'IS_A_DIRECTORY',
  'QUOTA_EXCEEDED',
  'READ_ONLY',
  'FORBIDDEN',
  'INVALID_PATH',
  'INVALID_ARGUMENT',
  'PRECONDITION_FAILED',
  'CONFLICT',
  'INSUFFICIENT_STORAGE',
  'UNAVAILABLE',
] as const;
export type DavErrorCode = (typeof DAV_ERROR_CODES)[number];

export class DavBackendError extends Error {
  constructor(
    readonly code: DavErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'DavBackendError';
  }
}

export interface DavLimits {
  /** Largest XML request body (PROPFIND, PROPPATCH, LOCK); larger ones get 413. */
  maxXmlBytes: number;
  /** Deepest element nesting in an XML request body; deeper ones get 400. */
  maxXmlDepth: number;
  /** Longest lock timeout granted, whatever the client asks for (also the timeout of "Infinite"). */
  maxLockSeconds: number;
  /** Most locks held at once; past it LOCK gets 503. */
  maxLocks: number;
  /** Most locks one principal holds at once, so that one client cannot take every lock there is; past it 503. */
  maxLocksPerPrincipal: number;
  /** Longest DAV:owner a lock keeps (it is stored and sent back in every lock discovery); longer ones get 413. */
  maxLockOwnerBytes: number;
}

export const DEFAULT_DAV_LIMITS: DavLimits = {
  maxXmlBytes: 1024 * 1024,
  maxXmlDepth: 32,
  maxLockSeconds: 3600,
  maxLocks: 10_000,
  maxLocksPerPrincipal: 1_000,
  maxLockOwnerBytes: 4096,
};

export type DavAccess = 'read' | 'write';

export interface DavHandlerOptions {
  /** The files, or a function giving each request the backend it acts through (one bound to its caller, say). */
  backend: DavBackend | ((req: IncomingMessage) => DavBackend);
  /** URL path the handler is mounted under, e.g. "/dav" ("" for the server root). */
  prefix?: string;
  /** Called for every path a request reads or changes; false answers 403. Absent: everything is allowed. */
  authorize?: (req: IncomingMessage, path: string, access: DavAccess) => boolean | Promise<boolean>;
  /** Who is asking, so a lock token only counts when the same principal presents it. */
  principal?: (req: IncomingMessage) => string | undefined;
  /** LOCK/UNLOCK and class 2; on by default (Windows and macOS mount read-only without them). */
  locks?: boolean;
  limits?: Partial<DavLimits>;
  /** Unexpected errors (answered 500): backend bugs, storage failures. */
  onError?: (err: unknown, req: IncomingMessage) => void;
}

export type DavHandler = (req: IncomingMessage, res: ServerResponse) => Promise<void>;

export function createDavHandler(opts: DavHandlerOptions): DavHandler {
  const dav = new Dav(opts);
  return (req, res) => dav.handle(req, res);
}

/** An answer decided before the end of a request: a status, a short text naming the problem, or an RFC 4918 error element. */
class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly extra: { headers?: Record<string, string>; davError?: string } = {},
  ) {
    super(message);
  }
}

function backendCode(err: unknown): DavErrorCode | null {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && (DAV_ERROR_CODES as readonly string[]).includes(code) ? (code as DavErrorCode) : null;
}

function statusForCode(code: DavErrorCode, method: string): number {
  switch (code) {
    case 'NOT_FOUND':
      return 404;
    case 'EXISTS':
      return method === 'MKCOL' ? 405 : method === 'COPY' || method === 'MOVE' ? 412 : 409;
    case 'IS_A_DIRECTORY':
      return method === 'PUT' ? 405 : 409;
    case 'NOT_FOUND_PARENT':
    case 'NOT_A_DIRECTORY':
    case 'CONFLICT':
      return 409;
    case 'QUOTA_EXCEEDED':
      return 507;
    case 'READ_ONLY':
    case 'FORBIDDEN':
      return 403;
    case 'INVALID_PATH':
      return 400;
    case 'INVALID_ARGUMENT':
      // RFC 4918 §9.2.1: a property value the server will not take is a conflict; elsewhere it is a bad request.
      return method === 'PROPPATCH' ? 409 : 400;
    case 'PRECONDITION_FAILED':
      return 412;
    // RFC 4918 §11.5: no room for what the request would store (the disks cannot take the placement's copies).
    case 'INSUFFICIENT_STORAGE':
      return 507;
    // A passing condition (the primary out of reach, a store closing): a client may try again, unlike after a 500.
    case 'UNAVAILABLE':
      return 503;
  }
}

const statusLine = (status: number) => `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ''}`;

// ---- paths ------------------------------------------------------------------------------------------------------

const parentOf = (path: string) => (path === '/' ? '/' : path.slice(0, path.lastIndexOf('/')) || '/');
const within = (path: string, root: string) => root === '/' || path === root || path.startsWith(root + '/');
const utf8 = new TextDecoder('utf-8', { fatal: true });

function decodeSegment(raw: string): string {
  const bytes: number[] = [];
  for (let i = 0; i < raw.length; i++) {
    const c = raw.charCodeAt(i);
    if (c === 0x25) {
      const hex = raw.slice(i + 1, i + 3);
      if (!/^[0-9a-fA-F]{2}$/.test(hex)) throw new HttpError(400, `malformed percent-encoding in "${raw.slice(0, 100)}"`);
      bytes.push(parseInt(hex, 16));
      i += 2;
    } else if (c <= 0xff) {
      // Node hands header values over as latin1, so raw UTF-8 in a Destination header arrives one byte per char.
      bytes.push(c);
    } else {
      throw new HttpError(400, 'path holds a character that is neither a byte nor percent-encoded');
    }
  }
  try {
    return utf8.decode(Uint8Array.from(bytes));
  } catch {
    throw new HttpError(400, 'path is not valid UTF-8 after percent-decoding');
  }
}

/**
 * The volume path a URL path names, or null when it is outside the prefix. Each segment is percent-decoded on its own
 * (so an encoded "/" is refused, never turned into a separator), then the whole takes the volume's canonical form
 * (paths.ts: no "." or "..", no empty names or control characters, NFC, at most 255 bytes a name and 4096 a path).
 */
function parsePathUnder(rawPath: string, prefix: string): string | null {
  if (rawPath.includes('#')) throw new HttpError(400, 'a fragment ("#") is not allowed in a request URI; encode "#" in names as %23');
  if (!rawPath.startsWith('/')) throw new HttpError(400, 'path must be absolute');
  if (rawPath !== prefix && !rawPath.startsWith(prefix + '/')) return null;
  const decoded = (rawPath.slice(prefix.length) || '/').split('/').map((raw) => {
    const name = decodeSegment(raw);
    if (name.includes('/')) throw new HttpError(400, 'an encoded "/" (%2F) is not allowed in a name');
    return name;
  });
  try {
    return normalizePath(decoded.join('/'));
  } catch (err) {
    if (err instanceof PathError) throw new HttpError(err.reason === 'path_too_long' ? 414 : 400, err.message);
    throw err;
  }
}

/** Splits an absolute URL into its authority and path; an absolute path has no authority. */
function splitUrl(ref: string): { scheme?: string; host?: string; path: string } {
  const abs = /^([a-zA-Z][a-zA-Z0-9+.-]*):\/\/([^/?#]*)([^?]*)/.exec(ref);
  if (abs) return { scheme: abs[1].toLowerCase(), host: abs[2].replace(/^.*@/, ''), path: abs[3] || '/' };
  if (ref.startsWith('/')) return { path: ref.replace(/\?.*$/, '') };
  throw new HttpError(400, `not an absolute URL or path: "${ref.slice(0, 200)}"`);
}

function normalHost(host: string, scheme: string): string {
  const h = host.toLowerCase();
  const dflt = scheme === 'https' ? ':443' : ':80';
  return h.endsWith(dflt) ? h.slice(0, -dflt.length) : h;
}

// ---- HTTP helpers -----------------------------------------------------------------------------------------------

function quoteEtag(etag: string): string {
  return /^(W\/)?"[^"]*"$/.test(etag) ? etag : `"${etag.replace(/"/g, '')}"`;
}

const etagList = (header: string) => header.match(/(?:W\/)?"[^"]*"/g) ?? [];
const opaque = (tag: string) => tag.replace(/^W\//, '');
const httpDate = (ms: number) => new Date(ms).toUTCString();
const isoDate = (ms: number) => new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');
const seconds = (ms: number) => Math.floor(ms / 1000);

const CONTENT_TYPES: Record<string, string> = {
  txt: 'text/plain',
  md: 'text/markdown',
  csv: 'text/csv',
  html: 'text/html',
  htm: 'text/html',
  css: 'text/css',
  js: 'text/javascript',
  mjs: 'text/javascript',
  json: 'application/json',
  xml: 'application/xml',
  pdf: 'application/pdf',
  zip: 'application/zip',
  gz: 'application/gzip',
  tar: 'application/x-tar',
  wasm: 'application/wasm',
  png: 'image/png',
  jpg: 'image/jpeg',
  jpeg: 'image/jpeg',
  gif: 'image/gif',
  webp: 'image/webp',
  svg: 'image/svg+xml',
  ico: 'image/vnd.microsoft.icon',
  heic: 'image/heic',
  mp3: 'audio/mpeg',
  ogg: 'audio/ogg',
  wav: 'audio/wav',
  flac: 'audio/flac',
  mp4: 'video/mp4',
  webm: 'video/webm',
  mov: 'video/quicktime',
  mkv: 'video/x-matroska',
};

function contentTypeOf(entry: DavEntry): string {
  if (entry.contentType) return entry.contentType;
  const dot = entry.path.lastIndexOf('.');
  const ext = dot > entry.path.lastIndexOf('/') ? entry.path.slice(dot + 1).toLowerCase() : '';
  return CONTENT_TYPES[ext] ?? 'application/octet-stream';
}

function parseRange(header: string, size: number): DavRange | 'unsatisfiable' | null {
  const m = /^bytes=\s*(\d*)\s*-\s*(\d*)\s*$/i.exec(header);
  if (!m || (m[1] === '' && m[2] === '')) return null;
  if (m[1] === '') {
    const n = Number(m[2]);
    if (n === 0 || size === 0) return 'unsatisfiable';
    return { start: Math.max(0, size - n), end: size - 1 };
  }
  const start = Number(m[1]);
  const end = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1);
  if (m[2] !== '' && Number(m[2]) < start) return null;
  if (start >= size) return 'unsatisfiable';
  return { start, end };
}

/** A WebDAV request header (node types headers it does not know as possibly repeated). */
function header(req: IncomingMessage, name: string): string | undefined {
  const v = req.headers[name];
  return Array.isArray(v) ? v.join(', ') : v;
}

function parseDepth(req: IncomingMessage, allowed: Array<'0' | '1' | 'infinity'>, dflt: '0' | '1' | 'infinity'): '0' | '1' | 'infinity' {
  const raw = header(req, 'depth');
  if (raw === undefined) return dflt;
  const d = raw.trim().toLowerCase();
  if (!(allowed as string[]).includes(d)) throw new HttpError(400, `Depth "${raw}" is not allowed here (allowed: ${allowed.join(', ')})`);
  return d as '0' | '1' | 'infinity';
}

/** Whether a request says it carries a body. */
export function hasBody(req: IncomingMessage): boolean {
  const len = req.headers['content-length'];
  return req.headers['transfer-encoding'] !== undefined || (len !== undefined && len.trim() !== '0');
}

/** Bodies read off their requests before the handler ran (`bodyReadAhead`). */
const readAhead = new WeakMap<IncomingMessage, Buffer>();

/** Gives the handler a request's body that someone already read off the socket: a follower that first tried the
 * primary with it, and then answers the read itself. */
export function bodyReadAhead(req: IncomingMessage, body: Buffer): void {
  readAhead.set(req, body);
}

/** The whole body, at most `max` bytes; past that it stops reading (the answer then closes the connection). */
function readBody(req: IncomingMessage, max: number): Promise<Buffer> {
  const ahead = readAhead.get(req);
  if (ahead) return ahead.length > max ? Promise.reject(new HttpError(413, `request body too large: ${ahead.length} bytes, at most ${max}`)) : Promise.resolve(ahead);
  const declared = Number(req.headers['content-length']);
  if (declared > max) return Promise.reject(new HttpError(413, `request body too large: ${declared} bytes, at most ${max}`));
  // Its 'end' has been and gone: waiting for it would never finish.
  if (req.readableEnded) return Promise.reject(new Error('the request body was already read'));
  if (req.destroyed) return Promise.reject(new Error('the client closed the connection before the end of the body'));
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let total = 0;
    const done = () => {
      req.off('data', onData).off('end', onEnd).off('error', onError).off('close', onClose);
    };
    const onData = (chunk: Buffer) => {
      total += chunk.length;
      if (total > max) {
        done();
        req.pause();
        reject(new HttpError(413, `request body too large: more than ${max} bytes`));
      } else {
        chunks.push(chunk);
      }
    };
    const onEnd = () => {
      done();
      resolve(Buffer.concat(chunks));
    };
    const onError = (err: Error) => {
      done();
      reject(err);
    };
    const onClose = () => onError(new Error('the client closed the connection before the end of the body'));
    req.on('data', onData).on('end', onEnd).on('error', onError).on('close', onClose);
  });
}

/**
 * The request body as a stream the backend may destroy when it refuses the upload (quota) without destroying the
 * request, which would take the socket and the error answer with it. A client that goes away fails it: Node then
 * destroys the request, even a complete one whose bytes were not read yet (possibly before the handler gets here),
 * and its buffered body never ends; `finished` reports that case too.
 */
/** How much of a refused request's unread body is read and dropped, and for how long, before the connection is cut. */
export const LINGER = { bytes: 16 * 1024 * 1024, ms: 5000 };

/**
 * Reads and drops the rest of a request answered before its body was read (a refused upload). Closing with the body
 * unread would reset the connection, and a reset can discard the answer before the client has read it, leaving it a
 * "connection reset" instead of the reason. Past the LINGER bounds the connection is cut.
 */
function linger(req: IncomingMessage): void {
  req.unpipe();
  let left = LINGER.bytes;
  const cut = () => req.socket.destroy();
  const timer = setTimeout(cut, LINGER.ms);
  req.on('data', (c: Buffer) => {
    left -= c.length;
    if (left < 0) cut();
  });
  req.once('close', () => clearTimeout(timer));
  req.resume();
}

function uploadBody(req: IncomingMessage): Readable {
  // The backend may not be listening yet when the client leaves; an unheard 'error' event would kill the process.
  // It still learns of the failure: pipeline and async iteration report a stream that has already errored.
  const body = new PassThrough().on('error', () => {});
  finished(req, (err) => {
    if (err) body.destroy(new Error('the client closed the connection during the upload'));
  });
  return req.pipe(body);
}

// ---- properties -------------------------------------------------------------------------------------------------

const PROTECTED = new Set(
  ['resourcetype', 'getcontentlength', 'getcontenttype', 'getetag', 'getlastmodified', 'creationdate', 'lockdiscovery', 'supportedlock', 'quota-available-bytes', 'quota-used-bytes'].map(
    (n) => `{DAV:}${n}`,
  ),
);

function splitKey(key: string): { ns: string; local: string } {
  const close = key.lastIndexOf('}');
  return { ns: key.slice(1, close), local: key.slice(close + 1) };
}

const keyOf = (el: XmlElement) => `{${el.ns}}${el.local}`;

/** A property element; DAV: properties use the multistatus root's D: prefix, others declare their own. */
function propXml(key: string, content = ''): string {
  const { ns, local } = splitKey(key);
  const open = ns === DAV_NS ? `D:${local}` : ns === '' ? local : `x:${local} xmlns:x="${escapeAttr(ns)}"`;
  const close = ns === DAV_NS ? `D:${local}` : ns === '' ? local : `x:${local}`;
  return content === '' ? `<${open}/>` : `<${open}>${content}</${close}>`;
}

function multistatus(responses: string[]): string {
  return `<?xml version="1.0" encoding="utf-8"?>\n<D:multistatus xmlns:D="DAV:">\n${responses.join('\n')}\n</D:multistatus>\n`;
}

function propstat(props: string[], status: number, description?: string): string {
  const desc = description ? `<D:responsedescription>${escapeText(description)}</D:responsedescription>` : '';
  return `<D:propstat><D:prop>${props.join('')}</D:prop><D:status>${statusLine(status)}</D:status>${desc}</D:propstat>`;
}

type PropRequest = { kind: 'allprop'; include: string[] } | { kind: 'propname' } | { kind: 'prop'; names: string[] };

// ---- locks ------------------------------------------------------------------------------------------------------

interface DavLock {
  token: string;
  root: string;
  depth: 0 | 'infinity';
  exclusive: boolean;
  ownerXml: string;
  principal: string | undefined;
  timeoutSeconds: number;
  expires: number;
}

class LockTable {
  private readonly locks = new Map<string, DavLock>();

  get size(): number {
    this.prune();
    return this.locks.size;
  }

  get(token: string): DavLock | undefined {
    this.prune();
    return this.locks.get(token);
  }

  add(lock: DavLock): void {
    this.locks.set(lock.token, lock);
  }

  heldBy(principal: string | undefined): number {
    this.prune();
    let n = 0;
    for (const l of this.locks.values()) if (l.principal === principal) n++;
    return n;
  }

  delete(token: string): void {
    this.locks.delete(token);
  }

  /** Locks that apply to `path`: on it, or on an ancestor with depth infinity. */
  covering(path: string): DavLock[] {
    this.prune();
    return [...this.locks.values()].filter((l) => l.root === path || (l.depth === 'infinity' && within(path, l.root)));
  }

  /** Locks rooted strictly below `path`. */
  below(path: string): DavLock[] {
    this.prune();
    return [...this.locks.values()].filter((l) => l.root !== path && within(l.root, path));
  }

  /** Locks rooted at the direct parent of `path`, which guard its membership even at depth 0. */
  onParent(path: string): DavLock[] {
    if (path === '/') return [];
    this.prune();
    const parent = parentOf(path);
    return [...this.locks.values()].filter((l) => l.root === parent);
  }

  dropWithin(path: string): void {
    for (const l of [...this.locks.values()]) if (within(l.root, path)) this.locks.delete(l.token);
  }

  private prune(): void {
    const now = Date.now();
    for (const l of [...this.locks.values()]) if (l.expires <= now) this.locks.delete(l.token);
  }
}

interface IfCondition {
  not: boolean;
  token?: string;
  etag?: string;
}

interface IfList {
  /** The tagged resource's path, undefined for an untagged list, null for a tag this server does not hold. */
  resource: string | null | undefined;
  conditions: IfCondition[];
}

/** RFC 4918 §10.4 If header: untagged lists, or resource-tagged ones. */
function parseIfHeader(value: string, resolveTag: (ref: string) => string | null): IfList[] {
  const lists: IfList[] = [];
  let i = 0;
  let tag: string | null | undefined;
  let tagged: boolean | undefined;
  let tagUsed = true;
  const bad = (what: string): never => {
    throw new HttpError(400, `malformed If header: ${what}`);
  };
  const skip = () => {
    while (i < value.length && /\s/.test(value[i])) i++;
  };
  const until = (close: string): string => {
    const end = value.indexOf(close, i + 1);
    if (end < 0) bad(`missing "${close}"`);
    const s = value.slice(i + 1, end);
    i = end + 1;
    return s;
  };
  for (skip(); i < value.length; skip()) {
    if (value[i] === '<') {
      if (tagged === false || !tagUsed) bad('a resource tag must be followed by a list, and lists must be all tagged or all untagged');
      tagged = true;
      tagUsed = false;
      tag = resolveTag(until('>'));
    } else if (value[i] === '(') {
      if (tagged === undefined) tagged = false;
      i++;
      const conditions: IfCondition[] = [];
      for (skip(); value[i] !== ')'; skip()) {
        if (i >= value.length) bad('missing ")"');
        let not = false;
        if (/^not\b/i.test(value.slice(i, i + 4))) {
          not = true;
          i += 3;
          skip();
        }
        if (value[i] === '<') conditions.push({ not, token: until('>') });
        else if (value[i] === '[') conditions.push({ not, etag: until(']').trim() });
        else bad(`unexpected "${value[i]}"`);
      }
      i++;
      if (conditions.length === 0) bad('empty list');
      lists.push({ resource: tagged ? tag : undefined, conditions });
      tagUsed = true;
    } else {
      bad(`unexpected "${value[i]}"`);
    }
  }
  if (lists.length === 0 || !tagUsed) bad('no condition list');
  return lists;
}

const SUPPORTED_LOCK =
  '<D:lockentry><D:lockscope><D:exclusive/></D:lockscope><D:locktype><D:write/></D:locktype></D:lockentry>' +
  '<D:lockentry><D:lockscope><D:shared/></D:lockscope><D:locktype><D:write/></D:locktype></D:lockentry>';

// ---- the handler ------------------------------------------------------------------------------------------------

interface Ctx {
  req: IncomingMessage;
  res: ServerResponse;
  method: string;
  /** The request's volume path. */
  target: string;
  ifLists: IfList[] | null;
  /** Lock tokens the request presents (in its If header) that belong to its principal. */
  tokens: Set<string>;
  backend: DavBackend;
}

const CLASS1_METHODS = ['OPTIONS', 'GET', 'HEAD', 'PUT', 'DELETE', 'MKCOL', 'COPY', 'MOVE', 'PROPFIND', 'PROPPATCH'];

class Dav {
  private readonly prefix: string;
  private readonly limits: DavLimits;
  private readonly locks: LockTable | null;

  constructor(private readonly opts: DavHandlerOptions) {
    this.prefix = (opts.prefix ?? '').replace(/\/+$/, '');
    if (this.prefix !== '' && !this.prefix.startsWith('/')) throw new Error(`WebDAV prefix must start with "/": ${opts.prefix}`);
    this.limits = { ...DEFAULT_DAV_LIMITS, ...opts.limits };
    this.locks = opts.locks === false ? null : new LockTable();
  }

  async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const method = (req.method ?? '').toUpperCase();
    try {
      const url = req.url ?? '/';
      if (method === 'OPTIONS' && url === '*') return this.sendOptions(res, undefined);
      const target = parsePathUnder(splitUrl(url).path, this.prefix);
      if (!target) throw new HttpError(404, `not under the WebDAV prefix ${this.prefix || '/'}`);
      const backend = typeof this.opts.backend === 'function' ? this.opts.backend(req) : this.opts.backend;
      const ctx: Ctx = { req, res, method, target, ifLists: null, tokens: new Set(), backend };
      const ifHeader = header(req, 'if');
      if (ifHeader !== undefined) {
        ctx.ifLists = parseIfHeader(ifHeader, (ref) => this.resolveTag(req, ref));
        const principal = this.opts.principal?.(req);
        for (const list of ctx.ifLists) {
          for (const c of list.conditions) {
            const lock = c.token === undefined ? undefined : this.locks?.get(c.token);
            if (lock && lock.principal === principal) ctx.tokens.add(lock.token);
          }
        }
      }
      switch (method) {
        case 'OPTIONS':
          return await this.options(ctx);
        case 'GET':
        case 'HEAD':
          return await this.get(ctx);
        case 'PUT':
          return await this.put(ctx);
        case 'DELETE':
          return await this.delete(ctx);
        case 'MKCOL':
          return await this.mkcol(ctx);
        case 'COPY':
        case 'MOVE':
          return await this.copyMove(ctx);
        case 'PROPFIND':
          return await this.propfind(ctx);
        case 'PROPPATCH':
          return await this.proppatch(ctx);
        case 'LOCK':
          if (this.locks) return await this.lock(ctx, this.locks);
          break;
        case 'UNLOCK':
          if (this.locks) return await this.unlock(ctx, this.locks);
          break;
      }
      throw new HttpError(501, `method ${method} is not implemented`, { headers: { Allow: this.allMethods().join(', ') } });
    } catch (err) {
      this.fail(req, res, method, err);
    }
  }

  private allMethods(): string[] {
    return this.locks ? [...CLASS1_METHODS, 'LOCK', 'UNLOCK'] : CLASS1_METHODS;
  }

  /** The Allow header for a resource of this type, or for an unmapped URL. */
  private allowFor(type: DavEntry['type'] | null): string {
    if (!type) return ['OPTIONS', 'PUT', 'MKCOL', ...(this.locks ? ['LOCK', 'UNLOCK'] : [])].join(', ');
    return this.allMethods()
      .filter((m) => !(m === 'MKCOL' || (m === 'PUT' && type === 'dir')))
      .join(', ');
  }

  private fail(req: IncomingMessage, res: ServerResponse, method: string, err: unknown): void {
    // A client that went away (an abandoned upload) has nobody left to answer, and is not a server fault.
    if (res.headersSent || res.destroyed || req.socket.destroyed) {
      res.destroy();
      return;
    }
    let status = 500;
    let message = 'internal error';
    let extra: HttpError['extra'] = {};
    const code = backendCode(err);
    if (err instanceof HttpError) {
      ({ status, message, extra } = err);
    } else if (err instanceof XmlError) {
      status = err.status;
      message = `request body: ${err.message}`;
    } else if (code) {
      status = statusForCode(code, method);
      message = (err as Error).message || code;
    } else {
      this.opts.onError?.(err, req);
    }
    const headers: Record<string, string> = { ...extra.headers };
    const declared = Number(req.headers['content-length']);
    // A body larger than lingering would take is not waited for: the connection closes after the answer.
    const rest = req.complete ? 'none' : Number.isSafeInteger(declared) && declared > LINGER.bytes ? 'close' : 'linger';
    if (rest === 'close') headers.Connection = 'close';
    if (extra.davError) {
      this.sendXml(res, status, `<?xml version="1.0" encoding="utf-8"?>\n<D:error xmlns:D="DAV:">${extra.davError}</D:error>\n`, headers, method);
    } else {
      this.sendText(res, status, `${status} ${STATUS_CODES[status] ?? ''}: ${message}`, headers, method);
    }
    // Read only once the answer is out: a client still waiting to be told to go on (Expect: 100-continue) hears the
    // refusal and never sends the body, rather than being told to go on by this read.
    if (rest === 'linger') linger(req);
  }

  private sendText(res: ServerResponse, status: number, text: string, headers: Record<string, string>, method: string): void {
    const body = Buffer.from(text + '\n');
    res.writeHead(status, { 'Content-Type': 'text/plain; charset=utf-8', 'Content-Length': String(body.length), ...headers });
    res.end(method === 'HEAD' ? undefined : body);
  }

  private sendXml(res: ServerResponse, status: number, xml: string, headers: Record<string, string> = {}, method = ''): void {
    const body = Buffer.from(xml);
    res.writeHead(status, { 'Content-Type': 'application/xml; charset=utf-8', 'Content-Length': String(body.length), ...headers });
    res.end(method === 'HEAD' ? undefined : body);
  }

  private sendEmpty(res: ServerResponse, status: number, headers: Record<string, string> = {}): void {
    res.writeHead(status, { ...headers, ...(status === 204 || status === 304 ? {} : { 'Content-Length': '0' }) });
    res.end();
  }

  private href(path: string, dir: boolean): string {
    const enc = path === '/' ? '' : path.split('/').slice(1).map(encodeURIComponent).join('/');
    return `${this.prefix}/${enc}${dir && enc !== '' ? '/' : ''}`;
  }

  private resolveTag(req: IncomingMessage, ref: string): string | null {
    try {
      return this.localPath(req, ref);
    } catch {
      return null;
    }
  }

  /** A URL or absolute path from a header, as a path in this space; null when it names another server or space. */
  private localPath(req: IncomingMessage, ref: string): string | null {
    const url = splitUrl(ref.trim());
    if (url.host !== undefined) {
      const scheme = url.scheme ?? 'http';
      const ours = req.headers.host;
      if (!ours || normalHost(url.host, scheme) !== normalHost(ours, scheme)) return null;
    }
    return parsePathUnder(url.path, this.prefix);
  }

  private async authorize(req: IncomingMessage, path: string, access: DavAccess): Promise<void> {
    if (this.opts.authorize && !(await this.opts.authorize(req, path, access))) {
      throw new HttpError(403, `no ${access} permission for ${path}`);
    }
  }

  /** If-Match, If-None-Match, If-(Un)Modified-Since (RFC 9110 §13) and the WebDAV If header, in that order. */
  private async preconditions(ctx: Ctx, entry: DavEntry | null): Promise<void> {
    const { req } = ctx;
    const read = ctx.method === 'GET' || ctx.method === 'HEAD';
    const etag = entry ? quoteEtag(entry.etag) : null;
    const ifMatch = req.headers['if-match'];
    const ifUnmodified = req.headers['if-unmodified-since'];
    if (ifMatch !== undefined) {
      if (!entry || (ifMatch.trim() !== '*' && !etagList(ifMatch).some((t) => !t.startsWith('W/') && t === etag))) {
        throw new HttpError(412, 'If-Match: the resource does not have that entity tag');
      }
    } else if (ifUnmodified !== undefined && entry) {
      const since = Date.parse(ifUnmodified);
      if (!Number.isNaN(since) && seconds(entry.mtime) > seconds(since)) throw new HttpError(412, 'If-Unmodified-Since: the resource changed since');
    }
    const ifNone = req.headers['if-none-match'];
    const ifModified = req.headers['if-modified-since'];
    let notModified = false;
    if (ifNone !== undefined) {
      if (entry && (ifNone.trim() === '*' || etagList(ifNone).some((t) => opaque(t) === opaque(etag!)))) {
        if (!read) throw new HttpError(412, 'If-None-Match: the resource exists with a matching entity tag');
        notModified = true;
      }
    } else if (read && ifModified !== undefined && entry) {
      const since = Date.parse(ifModified);
      notModified = !Number.isNaN(since) && seconds(entry.mtime) <= seconds(since);
    }
    if (ctx.ifLists && !(await this.evaluateIf(ctx, ctx.ifLists, entry))) {
      throw new HttpError(412, 'If header: no condition list matches');
    }
    if (notModified) throw new HttpError(304, 'not modified');
  }

  private async evaluateIf(ctx: Ctx, lists: IfList[], targetEntry: DavEntry | null): Promise<boolean> {
    for (const list of lists) {
      const path = list.resource === undefined ? ctx.target : list.resource;
      if (path === null) continue;
      // A tagged list must not reveal, through 412 or not, the entity tag of a resource the client may not read.
      if (path !== ctx.target && this.opts.authorize && !(await this.opts.authorize(ctx.req, path, 'read'))) continue;
      const entry = path === ctx.target ? targetEntry : await ctx.backend.stat(path);
      let ok = true;
      for (const c of list.conditions) {
        const match =
          c.token !== undefined
            ? (this.locks?.covering(path) ?? []).some((l) => l.token === c.token)
            : entry !== null && c.etag !== undefined && opaque(c.etag) === opaque(quoteEtag(entry.etag));
        if (match === c.not) {
          ok = false;
          break;
        }
      }
      if (ok) return true;
    }
    return false;
  }

  /**
   * 423 unless the request presents a token for every lock guarding the change: locks on the path or an ancestor
   * (depth infinity), on the parent when membership changes, and below the path when a whole subtree goes.
   */
  private requireTokens(ctx: Ctx, path: string, change: { membership: boolean; subtree: boolean }): void {
    if (!this.locks) return;
    const guarding = [...this.locks.covering(path), ...(change.membership ? this.locks.onParent(path) : []), ...(change.subtree ? this.locks.below(path) : [])];
    const missing = guarding.find((l) => !ctx.tokens.has(l.token));
    if (missing) {
      throw new HttpError(423, `${path} is locked`, {
        davError: `<D:lock-token-submitted><D:href>${escapeText(this.href(missing.root, false))}</D:href></D:lock-token-submitted>`,
      });
    }
  }

  // ---- methods ----

  private sendOptions(res: ServerResponse, entry: DavEntry | null | undefined): void {
    this.sendEmpty(res, 200, {
      DAV: this.locks ? '1, 2' : '1',
      'MS-Author-Via': 'DAV',
      Allow: entry === undefined ? this.allMethods().join(', ') : this.allowFor(entry?.type ?? null),
      'Accept-Ranges': 'bytes',
    });
  }

  private async options(ctx: Ctx): Promise<void> {
    await this.authorize(ctx.req, ctx.target, 'read');
    this.sendOptions(ctx.res, await ctx.backend.stat(ctx.target));
  }

  private async get(ctx: Ctx): Promise<void> {
    const { req, res, target } = ctx;
    await this.authorize(req, target, 'read');
    const entry = await ctx.backend.stat(target);
    if (!entry) throw new HttpError(404, `${target} does not exist`);
    try {
      await this.preconditions(ctx, entry);
    } catch (err) {
      if (err instanceof HttpError && err.status === 304) {
        return this.sendEmpty(res, 304, { ETag: quoteEtag(entry.etag), 'Last-Modified': httpDate(entry.mtime) });
      }
      throw err;
    }
    if (entry.type === 'dir') return this.listing(ctx, entry);

    const etag = quoteEtag(entry.etag);
    const headers: Record<string, string> = {
      'Content-Type': contentTypeOf(entry),
      ETag: etag,
      'Last-Modified': httpDate(entry.mtime),
      'Accept-Ranges': 'bytes',
      // Files are whatever users uploaded; served from the zone's origin they must not run as its pages.
      'X-Content-Type-Options': 'nosniff',
      'Content-Security-Policy': 'sandbox',
    };
    let range: DavRange | undefined;
    const rangeHeader = req.headers.range;
    if (rangeHeader !== undefined && this.ifRangeHolds(header(req, 'if-range'), entry)) {
      const r = parseRange(rangeHeader, entry.size);
      if (r === 'unsatisfiable') {
        throw new HttpError(416, `range not satisfiable: the resource has ${entry.size} bytes`, { headers: { 'Content-Range': `bytes */${entry.size}` } });
      }
      if (r) range = r;
    }
    const length = range ? range.end - range.start + 1 : entry.size;
    headers['Content-Length'] = String(length);
    if (range) headers['Content-Range'] = `bytes ${range.start}-${range.end}/${entry.size}`;
    if (ctx.method === 'HEAD') {
      res.writeHead(range ? 206 : 200, headers);
      res.end();
      return;
    }
    const body = length === 0 ? Readable.from([]) : await ctx.backend.read(target, range);
    res.writeHead(range ? 206 : 200, headers);
    await pipeline(body, res).catch(() => res.destroy());
  }

  private ifRangeHolds(ifRange: string | undefined, entry: DavEntry): boolean {
    if (ifRange === undefined) return true;
    const v = ifRange.trim();
    if (v.startsWith('"')) return v === quoteEtag(entry.etag);
    if (v.startsWith('W/')) return false;
    const since = Date.parse(v);
    return !Number.isNaN(since) && seconds(entry.mtime) === seconds(since);
  }

  private async listing(ctx: Ctx, entry: DavEntry): Promise<void> {
    const children = (await ctx.backend.list(entry.path)).sort((a, b) => (a.type === b.type ? (a.path < b.path ? -1 : 1) : a.type === 'dir' ? -1 : 1));
    const title = escapeText(entry.path === '/' ? '/' : entry.path + '/');
    const items = children.map((c) => {
      const name = c.path.slice(c.path.lastIndexOf('/') + 1) + (c.type === 'dir' ? '/' : '');
      return `<li><a href="${escapeAttr(this.href(c.path, c.type === 'dir'))}">${escapeText(name)}</a></li>`;
    });
    if (entry.path !== '/') items.unshift(`<li><a href="${escapeAttr(this.href(parentOf(entry.path), true))}">../</a></li>`);
    const html = `<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>Index of ${title}</title></head>\n<body><h1>Index of ${title}</h1>\n<ul>\n${items.join('\n')}\n</ul></body></html>\n`;
    const body = Buffer.from(html);
    ctx.res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8', 'Content-Length': String(body.length), 'Content-Security-Policy': 'sandbox' });
    ctx.res.end(ctx.method === 'HEAD' ? undefined : body);
  }

  private async put(ctx: Ctx): Promise<void> {
    const { req, res, target } = ctx;
    if (target === '/') throw new HttpError(405, 'the root is a collection; PUT needs a file path', { headers: { Allow: this.allowFor('dir') } });
    if (req.headers['content-range'] !== undefined) throw new HttpError(400, 'partial PUT (Content-Range) is not supported; send the whole file');
    await this.authorize(req, target, 'write');
    const entry = await ctx.backend.stat(target);
    if (entry?.type === 'dir') throw new HttpError(405, `${target} is a collection`, { headers: { Allow: this.allowFor(entry.type) } });
    await this.preconditions(ctx, entry);
    this.requireTokens(ctx, target, { membership: !entry, subtree: false });
    const type = req.headers['content-type']?.trim();
    // macOS Finder uploads chunked and announces the size in X-Expected-Entity-Length instead.
    const declared = Number(req.headers['content-length'] ?? header(req, 'x-expected-entity-length'));
    const { created, entry: written } = await ctx.backend.write(target, uploadBody(req), {
      // Clients that do not know a type send application/octet-stream; the name's extension is then the better guess.
      contentType: type && !/^application\/octet-stream\b/i.test(type) ? type : undefined,
      expectedSize: Number.isSafeInteger(declared) && declared >= 0 ? declared : undefined,
    });
    this.sendEmpty(res, created ? 201 : 204, { ETag: quoteEtag(written.etag), ...(created ? { Location: this.href(target, false) } : {}) });
  }

  private async delete(ctx: Ctx): Promise<void> {
    const { req, res, target } = ctx;
    if (target === '/') throw new HttpError(403, 'the root collection cannot be deleted');
    await this.authorize(req, target, 'write');
    const entry = await ctx.backend.stat(target);
    if (!entry) throw new HttpError(404, `${target} does not exist`);
    if (entry.type === 'dir') parseDepth(req, ['infinity'], 'infinity');
    await this.preconditions(ctx, entry);
    this.requireTokens(ctx, target, { membership: true, subtree: true });
    await ctx.backend.remove(target);
    this.locks?.dropWithin(target);
    this.sendEmpty(res, 204);
  }

  private async mkcol(ctx: Ctx): Promise<void> {
    const { req, res, target } = ctx;
    if (hasBody(req)) throw new HttpError(415, 'MKCOL with a request body is not supported');
    await this.authorize(req, target, 'write');
    const entry = await ctx.backend.stat(target);
    if (entry) throw new HttpError(405, `${target} already exists`, { headers: { Allow: this.allowFor(entry.type) } });
    await this.preconditions(ctx, entry);
    this.requireTokens(ctx, target, { membership: true, subtree: false });
    await ctx.backend.mkdir(target);
    this.sendEmpty(res, 201, { Location: this.href(target, true) });
  }

  private async copyMove(ctx: Ctx): Promise<void> {
    const { req, res, target, method } = ctx;
    const move = method === 'MOVE';
    const destHeader = header(req, 'destination');
    if (!destHeader) throw new HttpError(400, `${method} needs a Destination header`);
    const dest = this.localPath(req, destHeader);
    if (!dest) throw new HttpError(502, `Destination ${destHeader.slice(0, 200)} is on another server or outside this WebDAV space`);
    const overwriteHeader = (header(req, 'overwrite') ?? 'T').trim().toUpperCase();
    if (overwriteHeader !== 'T' && overwriteHeader !== 'F') throw new HttpError(400, `Overwrite must be T or F, not "${header(req, 'overwrite')}"`);
    const overwrite = overwriteHeader === 'T';
    const depth = move ? parseDepth(req, ['infinity'], 'infinity') : parseDepth(req, ['0', 'infinity'], 'infinity');
    if (target === '/' && move) throw new HttpError(403, 'the root collection cannot be moved');
    if (dest === '/') throw new HttpError(403, 'the root collection cannot be overwritten');
    if (dest === target) throw new HttpError(403, 'source and destination are the same resource');

    await this.authorize(req, target, move ? 'write' : 'read');
    await this.authorize(req, dest, 'write');
    const entry = await ctx.backend.stat(target);
    if (!entry) throw new HttpError(404, `${target} does not exist`);
    if (entry.type === 'dir' && within(dest, target)) throw new HttpError(403, `cannot ${method} a collection into itself`);
    await this.preconditions(ctx, entry);
    const destEntry = await ctx.backend.stat(dest);
    if (destEntry && !overwrite) throw new HttpError(412, `${dest} exists and Overwrite is F`);
    if (move) this.requireTokens(ctx, target, { membership: true, subtree: true });
    this.requireTokens(ctx, dest, { membership: !destEntry, subtree: !!destEntry });

    const { created } = move
      ? await ctx.backend.move(target, dest, { overwrite })
      : await ctx.backend.copy(target, dest, { overwrite, depth: depth === '0' ? 0 : 'infinity' });
    // Locks stay with URLs: the moved-away source loses its locks; an overwritten destination keeps its own.
    if (move) this.locks?.dropWithin(target);
    this.sendEmpty(res, created ? 201 : 204, created ? { Location: this.href(dest, entry.type === 'dir') } : {});
  }

  private async readXml(req: IncomingMessage): Promise<XmlElement | null> {
    const raw = await readBody(req, this.limits.maxXmlBytes);
    if (raw.length === 0) return null;
    const type = req.headers['content-type'];
    if (type && !/^(application|text)\/([\w.+-]*\+)?xml\b/i.test(type)) throw new HttpError(415, `expected an XML body, got Content-Type ${type}`);
    let text: string;
    try {
      text = utf8.decode(raw);
    } catch {
      throw new HttpError(400, 'request body is not valid UTF-8');
    }
    if (text.trim() === '') return null;
    return parseXml(text, { maxDepth: this.limits.maxXmlDepth });
  }

  private async propfind(ctx: Ctx): Promise<void> {
    const { req, res, target } = ctx;
    const depth = parseDepth(req, ['0', '1', 'infinity'], 'infinity');
    if (depth === 'infinity') {
      throw new HttpError(403, 'PROPFIND with Depth infinity is not supported; use Depth 0 or 1', { davError: '<D:propfind-finite-depth/>' });
    }
    const doc = await this.readXml(req);
    let request: PropRequest = { kind: 'allprop', include: [] };
    if (doc) {
      if (!isDav(doc, 'propfind')) throw new HttpError(400, 'PROPFIND body must be a DAV:propfind element');
      const kids = childElements(doc);
      const prop = kids.find((k) => isDav(k, 'prop'));
      const include = kids.find((k) => isDav(k, 'include'));
      if (prop) request = { kind: 'prop', names: childElements(prop).map(keyOf) };
      else if (kids.some((k) => isDav(k, 'propname'))) request = { kind: 'propname' };
      else if (kids.some((k) => isDav(k, 'allprop'))) request = { kind: 'allprop', include: include ? childElements(include).map(keyOf) : [] };
      else throw new HttpError(400, 'DAV:propfind needs a prop, allprop or propname element');
    }
    await this.authorize(req, target, 'read');
    const entry = await ctx.backend.stat(target);
    if (!entry) throw new HttpError(404, `${target} does not exist`);
    await this.preconditions(ctx, entry);
    const entries = depth === '1' && entry.type === 'dir' ? [entry, ...(await ctx.backend.list(target))] : [entry];
    const responses: string[] = [];
    for (const e of entries) {
      try {
        responses.push(await this.propResponse(ctx.backend, e, request));
      } catch (err) {
        // A member deleted while the listing is answered is simply no longer listed.
        if (e === entry || backendCode(err) !== 'NOT_FOUND') throw err;
      }
    }
    this.sendXml(res, 207, multistatus(responses));
  }

  /** Live properties as functions, so that a prop request computes only what it names. */
  private liveProps(entry: DavEntry): Map<string, () => string> {
    const live = new Map<string, () => string>();
    const set = (local: string, value: () => string) => live.set(`{DAV:}${local}`, value);
    set('resourcetype', () => (entry.type === 'dir' ? '<D:collection/>' : ''));
    set('displayname', () => escapeText(entry.path.slice(entry.path.lastIndexOf('/') + 1)));
    set('creationdate', () => isoDate(entry.created));
    set('getlastmodified', () => httpDate(entry.mtime));
    if (entry.etag) set('getetag', () => escapeText(quoteEtag(entry.etag)));
    if (entry.type === 'file') {
      set('getcontentlength', () => String(entry.size));
      set('getcontenttype', () => escapeText(contentTypeOf(entry)));
    }
    if (this.locks) {
      set('supportedlock', () => SUPPORTED_LOCK);
      const locks = this.locks;
      set('lockdiscovery', () => locks.covering(entry.path).map((l) => this.activeLock(l)).join(''));
    }
    return live;
  }

  /** RFC 4331 quota properties: only when asked for by name, as that RFC requires of allprop. */
  private async quotaProp(backend: DavBackend, entry: DavEntry, key: string): Promise<string | undefined> {
    if (key !== '{DAV:}quota-available-bytes' && key !== '{DAV:}quota-used-bytes') return undefined;
    const q = await backend.quota?.(entry.path);
    if (!q) return undefined;
    return String(key === '{DAV:}quota-used-bytes' ? q.usedBytes : q.availableBytes);
  }

  private async propResponse(backend: DavBackend, entry: DavEntry, request: PropRequest): Promise<string> {
    const live = this.liveProps(entry);
    const dead = await backend.getProps(entry.path);
    // A dead DAV:displayname is the user's name for the resource; every other live property is computed.
    if ('{DAV:}displayname' in dead) live.delete('{DAV:}displayname');
    const found: string[] = [];
    const missing: string[] = [];
    if (request.kind === 'propname') {
      for (const key of new Set([...live.keys(), ...Object.keys(dead)])) found.push(propXml(key));
    } else {
      const keys = request.kind === 'prop' ? request.names : [...new Set([...live.keys(), ...Object.keys(dead), ...request.include])];
      for (const key of new Set(keys)) {
        const compute = live.get(key);
        const value = compute ? compute() : key in dead ? dead[key] : await this.quotaProp(backend, entry, key);
        if (value === undefined) missing.push(propXml(key));
        else found.push(propXml(key, value));
      }
    }
    const stats = [...(found.length ? [propstat(found, 200)] : []), ...(missing.length ? [propstat(missing, 404)] : [])];
    return `<D:response><D:href>${escapeText(this.href(entry.path, entry.type === 'dir'))}</D:href>${stats.join('')}</D:response>`;
  }

  private async proppatch(ctx: Ctx): Promise<void> {
    const { req, res, target } = ctx;
    const doc = await this.readXml(req);
    if (!doc || !isDav(doc, 'propertyupdate')) throw new HttpError(400, 'PROPPATCH body must be a DAV:propertyupdate element');
    // Instructions apply in document order, so the last one for a property decides: value to set, or null to remove.
    const final = new Map<string, string | null>();
    // Written out, the values may take somewhat more than the body did (inherited namespace declarations are
    // repeated), never without bound.
    let room = 2 * this.limits.maxXmlBytes;
    for (const op of childElements(doc)) {
      const remove = isDav(op, 'remove');
      if (!remove && !isDav(op, 'set')) continue;
      for (const prop of childElements(op).filter((p) => isDav(p, 'prop'))) {
        for (const p of childElements(prop)) {
          const value = remove ? null : serializeContent(p, room);
          room -= value?.length ?? 0;
          final.set(keyOf(p), value);
        }
      }
    }
    if (final.size === 0) throw new HttpError(400, 'DAV:propertyupdate has no property to set or remove');
    await this.authorize(req, target, 'write');
    const entry = await ctx.backend.stat(target);
    if (!entry) throw new HttpError(404, `${target} does not exist`);
    await this.preconditions(ctx, entry);
    this.requireTokens(ctx, target, { membership: false, subtree: false });

    const keys = [...final.keys()];
    const protectedKeys = keys.filter((k) => PROTECTED.has(k));
    let stats: string[];
    if (protectedKeys.length > 0) {
      const others = keys.filter((k) => !PROTECTED.has(k));
      stats = [propstat(protectedKeys.map((k) => propXml(k)), 403, 'protected live property; nothing was changed')];
      if (others.length) stats.push(propstat(others.map((k) => propXml(k)), 424, 'not changed because another property in the request failed'));
    } else {
      const set: Record<string, string> = {};
      const remove: string[] = [];
      for (const [k, v] of final) {
        if (v === null) remove.push(k);
        else set[k] = v;
      }
      try {
        await ctx.backend.patchProps(target, set, remove);
        stats = [propstat(keys.map((k) => propXml(k)), 200)];
      } catch (err) {
        const code = backendCode(err);
        if (!code || code === 'NOT_FOUND') throw err;
        stats = [propstat(keys.map((k) => propXml(k)), statusForCode(code, 'PROPPATCH'), (err as Error).message || code)];
      }
    }
    this.sendXml(res, 207, multistatus([`<D:response><D:href>${escapeText(this.href(target, entry.type === 'dir'))}</D:href>${stats.join('')}</D:response>`]));
  }

  private activeLock(l: DavLock): string {
    const left = Math.max(0, Math.ceil((l.expires - Date.now()) / 1000));
    return (
      `<D:activelock><D:locktype><D:write/></D:locktype><D:lockscope>${l.exclusive ? '<D:exclusive/>' : '<D:shared/>'}</D:lockscope>` +
      `<D:depth>${l.depth === 0 ? '0' : 'infinity'}</D:depth>${l.ownerXml ? `<D:owner>${l.ownerXml}</D:owner>` : ''}` +
      `<D:timeout>Second-${left}</D:timeout><D:locktoken><D:href>${escapeText(l.token)}</D:href></D:locktoken>` +
      `<D:lockroot><D:href>${escapeText(this.href(l.root, false))}</D:href></D:lockroot></D:activelock>`
    );
  }

  private lockTimeout(req: IncomingMessage): number {
    for (const part of (header(req, 'timeout') ?? '').split(',')) {
      const m = /^\s*Second-(\d+)\s*$/i.exec(part);
      if (m) return Math.max(1, Math.min(Number(m[1]), this.limits.maxLockSeconds));
      if (/^\s*Infinite\s*$/i.test(part)) return this.limits.maxLockSeconds;
    }
    return this.limits.maxLockSeconds;
  }

  private async lock(ctx: Ctx, locks: LockTable): Promise<void> {
    const { req, res, target } = ctx;
    const depth = parseDepth(req, ['0', 'infinity'], 'infinity');
    const doc = await this.readXml(req);
    await this.authorize(req, target, 'write');
    const timeoutSeconds = this.lockTimeout(req);
    let entry = await ctx.backend.stat(target);
    await ctx.backend.checkLock?.(target, entry !== null);

    if (!doc) {
      // A LOCK without a body refreshes a lock the If header names.
      await this.preconditions(ctx, entry);
      const lock = locks.covering(target).find((l) => ctx.tokens.has(l.token));
      if (!lock) throw new HttpError(412, 'refreshing a lock needs its token, for a lock on this resource, in the If header', { davError: '<D:lock-token-matches-request-uri/>' });
      lock.timeoutSeconds = timeoutSeconds;
      lock.expires = Date.now() + timeoutSeconds * 1000;
      return this.sendXml(res, 200, `<?xml version="1.0" encoding="utf-8"?>\n<D:prop xmlns:D="DAV:"><D:lockdiscovery>${this.activeLock(lock)}</D:lockdiscovery></D:prop>\n`);
    }

    if (!isDav(doc, 'lockinfo')) throw new HttpError(400, 'LOCK body must be a DAV:lockinfo element');
    const kids = childElements(doc);
    const scope = kids.find((k) => isDav(k, 'lockscope'));
    const type = kids.find((k) => isDav(k, 'locktype'));
    const owner = kids.find((k) => isDav(k, 'owner'));
    const exclusive = scope ? childElements(scope).some((k) => isDav(k, 'exclusive')) : false;
    if (!scope || (!exclusive && !childElements(scope).some((k) => isDav(k, 'shared')))) throw new HttpError(400, 'DAV:lockinfo needs a lockscope of exclusive or shared');
    if (!type || !childElements(type).some((k) => isDav(k, 'write'))) throw new HttpError(422, 'only write locks are supported');

    await this.preconditions(ctx, entry);
    const conflicting = [...locks.covering(target), ...(depth === 'infinity' ? locks.below(target) : [])].find((l) => exclusive || l.exclusive);
    if (conflicting) {
      throw new HttpError(423, `${target} is already locked`, {
        davError: `<D:no-conflicting-lock><D:href>${escapeText(this.href(conflicting.root, false))}</D:href></D:no-conflicting-lock>`,
      });
    }
    if (locks.size >= this.limits.maxLocks) throw new HttpError(503, `too many locks held (${this.limits.maxLocks}); try again later`);
    const principal = this.opts.principal?.(req);
    if (locks.heldBy(principal) >= this.limits.maxLocksPerPrincipal) {
      throw new HttpError(503, `you hold ${this.limits.maxLocksPerPrincipal} locks, the most one may; unlock some first`);
    }
    let ownerXml = '';
    try {
      ownerXml = owner ? serializeContent(owner, this.limits.maxLockOwnerBytes) : '';
    } catch (err) {
      if (err instanceof XmlError) throw new HttpError(413, `DAV:owner is longer than ${this.limits.maxLockOwnerBytes} bytes`);
      throw err;
    }
    let status = 200;
    if (!entry) {
      // RFC 4918 §7.3: locking an unmapped URL creates an empty resource.
      this.requireTokens(ctx, target, { membership: true, subtree: false });
      entry = (await ctx.backend.write(target, Readable.from([]), { expectedSize: 0 })).entry;
      status = 201;
    }
    const lock: DavLock = {
      token: `opaquelocktoken:${randomUUID()}`,
      root: target,
      depth: entry.type === 'dir' && depth === 'infinity' ? 'infinity' : 0,
      exclusive,
      ownerXml,
      principal,
      timeoutSeconds,
      expires: Date.now() + timeoutSeconds * 1000,
    };
    locks.add(lock);
    this.sendXml(res, status, `<?xml version="1.0" encoding="utf-8"?>\n<D:prop xmlns:D="DAV:"><D:lockdiscovery>${this.activeLock(lock)}</D:lockdiscovery></D:prop>\n`, {
      'Lock-Token': `<${lock.token}>`,
    });
  }

  private async unlock(ctx: Ctx, locks: LockTable): Promise<void> {
    const { req, res, target } = ctx;
    const token = header(req, 'lock-token')?.trim();
    const m = token ? /^<([^>]+)>$/.exec(token) : null;
    if (!m) throw new HttpError(400, 'UNLOCK needs a Lock-Token header: <token>');
    await this.authorize(req, target, 'write');
    const lock = locks.get(m[1]);
    if (!lock || !locks.covering(target).includes(lock)) {
      throw new HttpError(409, 'no such lock on this resource', { davError: '<D:lock-token-matches-request-uri/>' });
    }
    if (lock.principal !== this.opts.principal?.(req)) throw new HttpError(403, 'the lock belongs to someone else');
    locks.delete(lock.token);
    this.sendEmpty(res, 204);
  }
}
