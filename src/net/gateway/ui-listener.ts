// The gateway's LAN-facing listener (DESIGN §10: the system UI "served ... through the gateway"): the built UI's
// files, and the UI's kRPC calls handed to the gateway's own router. It opens nothing the loopback entry does not
// already route, and less: only `POST /kapi/<service>` with a JSON kRPC envelope, and without a token only the login
// methods; plus, with a token, the few dfs file requests the files page needs (downloads and upload parts).
// docs/ui.md ("Security") and docs/ui-files.md explain what a caller on the LAN can reach.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import { dfsApi } from '../../lib/api/dfs.ts';
import { klogApi } from '../../lib/api/klog.ts';
import { nsApi } from '../../lib/api/ns.ts';
import { schedulerApi } from '../../lib/api/scheduler.ts';
import { systemConfigApi } from '../../lib/api/system-config.ts';
import { verifyHubApi } from '../../lib/api/verify-hub.ts';
import type { MethodDef } from '../../lib/krpc/service.ts';
import { DEFAULT_MAX_BODY_BYTES, GATEWAY_ONLY_HEADERS, KrpcError, bearerToken, listenRetrying, readBody, sendJson } from '../../lib/krpc/index.ts';
import { UiFiles, sameOrigin, setUiSecurityHeaders } from '../../lib/ui-files.ts';
import { UPLOAD_ID } from '../../lib/api/dfs.ts';

/** Hands a checked request to the gateway's router: a kRPC call with its body already read, or a dfs file request
 * (no body given) whose body the router streams on. */
export type KapiRoute = (req: IncomingMessage, res: ServerResponse, url: URL, body?: Buffer) => void;

/** What a caller without a token may call from the LAN: how a person gets a token. */
export const ANONYMOUS_METHODS: ReadonlySet<string> = new Set([
  'verify-hub.login_nonce',
  'verify-hub.login_password',
  'verify-hub.login_jwt',
  'verify-hub.refresh',
]);

/**
 * Methods that answer without a token but are not for the LAN (a device enrolling, whose answer carries a core
 * device's keys, comes through the tunnel port): refused here with or without a token, since with any token at all a
 * call is passed on, and the service asks none of them for one.
 */
export const TUNNEL_ONLY_METHODS: ReadonlySet<string> = new Set(
  [dfsApi, klogApi, nsApi, schedulerApi, systemConfigApi, verifyHubApi].flatMap((api) =>
    Object.entries(api.methods as Record<string, MethodDef>)
      .filter(([m, def]) => def.auth === 'none' && !ANONYMOUS_METHODS.has(`${api.name}.${m}`))
      .map(([m]) => `${api.name}.${m}`),
  ),
);

const KAPI_PATH = /^\/kapi\/([a-z][a-z0-9-]{0,62})$/;

/** The largest upload part the listener passes on. The files page sends 8 MiB parts; a part is spooled and synced by
 * dfs before it is acknowledged, so a bigger one gains nothing and holds a request open longer on a slow network. */
export const UPLOAD_PART_MAX_BYTES = 16 * 1024 * 1024;

/**
 * The dfs HTTP requests the files page makes (docs/ui-files.md), each with the only query it may carry: a file's
 * bytes (`?version=` for a kept one), read whole or by range, and a part of a resumable upload (`?offset=`, or a
 * Content-Range header). Nothing else of dfs's HTTP side (WebDAV, NDN, whole-file PUT, chunk and log exchange
 * between storage nodes) is reachable from the LAN.
 */
const DFS_REQUESTS: readonly { methods: readonly string[]; path: RegExp; query: RegExp }[] = [
  { methods: ['GET', 'HEAD'], path: /^\/kapi\/dfs\/files\/[a-z][a-z0-9-]{0,31}\/[^?#]+$/, query: /^(\?version=[0-9]{1,20})?$/ },
  { methods: ['PUT'], path: new RegExp(`^/kapi/dfs/uploads/${UPLOAD_ID.source.slice(1, -1)}$`), query: /^(\?offset=[0-9]{1,16})?$/ },
];

function dfsRequest(req: IncomingMessage, url: URL): (typeof DFS_REQUESTS)[number] | undefined {
  return DFS_REQUESTS.find((r) => r.methods.includes(req.method ?? '') && r.path.test(url.pathname));
}

export interface UiListenerOptions {
  host: string;
  port: number;
  /** The built UI (dist/ui). */
  dir: string;
  route: KapiRoute;
  log: Logger;
  /** How long after a failed bind to try again (listenRetrying's default otherwise): the UI is not worth stopping the
   * zone's entry for. */
  rebindMs?: number;
  /** UNPROVEN_BODY_BUDGET unless given (tests). */
  unprovenBodyBudget?: number;
}

export interface UiListener {
  server: Server;
  /** Resolves once the listener is bound (it may retry first). */
  listening: Promise<void>;
  close(): Promise<void>;
}

function refuse(res: ServerResponse, err: KrpcError): void {
  sendJson(res, err.httpStatus, { error: err.toJSON() });
}

/** A dfs file request: a token, this device's own pages, a body only on an upload part and at most a part's size;
 * the body is streamed on, not buffered. dfs itself authenticates the token and checks RBAC on the path. */
function handleDfs(req: IncomingMessage, res: ServerResponse, url: URL, allowed: (typeof DFS_REQUESTS)[number], route: KapiRoute): void {
  if (req.url?.includes('#')) return refuse(res, new KrpcError('BAD_REQUEST', 'the request URI has a fragment (#...)'));
  if (!allowed.query.test(url.search)) return refuse(res, new KrpcError('NOT_FOUND', `no route for ${url.pathname}${url.search}: only ?version= on a file and ?offset= on an upload part`));
  if (!sameOrigin(req)) return refuse(res, new KrpcError('PERMISSION_DENIED', `requests from ${req.headers.origin} are refused: only pages from this device may make them`));
  // Only the header: a token in a URL would end up in histories and logs, and a cookie would ride along on
  // cross-site requests.
  if (bearerToken(req) === null) return refuse(res, new KrpcError('UNAUTHENTICATED', 'files need a token (Authorization: Bearer ...)'));
  const length = req.headers['content-length'];
  if (req.method === 'PUT') {
    // A declared length lets the limit be checked before a byte is read; the HTTP parser then holds the body to it.
    if (req.headers['transfer-encoding'] !== undefined || length === undefined) return refuse(res, new KrpcError('BAD_REQUEST', 'an upload part needs Content-Length'));
    if (Number(length) > UPLOAD_PART_MAX_BYTES) return refuse(res, new KrpcError('PAYLOAD_TOO_LARGE', `an upload part is at most ${UPLOAD_PART_MAX_BYTES} bytes; send ${length} bytes in several parts`));
  } else if (req.headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0')) {
    return refuse(res, new KrpcError('BAD_REQUEST', `${req.method} carries no body`));
  }
  for (const h of GATEWAY_ONLY_HEADERS) delete req.headers[h];
  route(req, res, url);
}

/**
 * A call's token may be inside its body, so a body is read before anyone is known; on this LAN-facing listener the
 * bodies read at once by calls without an Authorization header share this many bytes (a body of unknown length counts
 * as the largest allowed). Past it such calls get 503 rather than letting stalled uploads hold the gateway's memory.
 */
export const UNPROVEN_BODY_BUDGET = 16 * 1024 * 1024;
/** Connections the listener keeps at once: a household's browsers use a few dozen. */
export const MAX_CONNECTIONS = 512;

class ByteBudget {
  private used = 0;
  constructor(private readonly limit: number) {}
  take(n: number): boolean {
    if (this.used + n > this.limit) return false;
    this.used += n;
    return true;
  }
  give(n: number): void {
    this.used -= n;
  }
}

async function handleKapi(req: IncomingMessage, res: ServerResponse, url: URL, route: KapiRoute, budget: ByteBudget): Promise<void> {
  // As on the loopback entry: a fragment never belongs in a request, and parsing would drop it silently.
  if (req.url?.includes('#')) return refuse(res, new KrpcError('BAD_REQUEST', 'the request URI has a fragment (#...)'));
  const m = KAPI_PATH.exec(url.pathname);
  if (!m || url.search) return refuse(res, new KrpcError('NOT_FOUND', `no route for ${url.pathname}${url.search}: this listener serves kRPC calls only (POST /kapi/<service>)`));
  if (req.method !== 'POST') return refuse(res, new KrpcError('BAD_REQUEST', `kRPC requires POST, got ${req.method}`));
  // A cross-site page can send a form or text/plain POST without asking; application/json needs a CORS preflight,
  // which this listener never grants.
  if (!/^application\/json\s*(;|$)/i.test(req.headers['content-type'] ?? '')) return refuse(res, new KrpcError('BAD_REQUEST', 'kRPC calls carry content-type application/json'));
  if (!sameOrigin(req)) return refuse(res, new KrpcError('PERMISSION_DENIED', `calls from ${req.headers.origin} are refused: only pages from this device may call it`));
  const declared = Number(req.headers['content-length']);
  const reserved = bearerToken(req) !== null ? 0 : Number.isSafeInteger(declared) && declared >= 0 ? Math.min(declared, DEFAULT_MAX_BODY_BYTES) : DEFAULT_MAX_BODY_BYTES;
  if (!budget.take(reserved)) {
    res.setHeader('retry-after', '5');
    res.setHeader('connection', 'close');
    return refuse(res, new KrpcError('UNAVAILABLE', 'too many calls are being read at once; try again shortly'));
  }
  let body: Buffer;
  try {
    body = await readBody(req, DEFAULT_MAX_BODY_BYTES);
  } finally {
    budget.give(reserved);
  }
  let env: { method?: unknown; sys?: unknown };
  try {
    env = JSON.parse(body.toString('utf8')) as typeof env;
  } catch {
    return refuse(res, new KrpcError('BAD_REQUEST', 'request body is not valid JSON'));
  }
  if (env === null || typeof env !== 'object' || typeof env.method !== 'string') return refuse(res, new KrpcError('BAD_REQUEST', 'malformed kRPC envelope: method is missing'));
  const sysToken = Array.isArray(env.sys) ? env.sys[1] : undefined;
  const hasToken = (typeof sysToken === 'string' && sysToken !== '') || bearerToken(req) !== null;
  const name = `${m[1]}.${env.method}`;
  if (!hasToken && !ANONYMOUS_METHODS.has(name)) {
    return refuse(res, new KrpcError('UNAUTHENTICATED', `${name} needs a token: without one, only the login methods answer here`));
  }
  if (TUNNEL_ONLY_METHODS.has(name)) return refuse(res, new KrpcError('PERMISSION_DENIED', `${name} is not served on this listener`));
  for (const h of GATEWAY_ONLY_HEADERS) delete req.headers[h];
  delete req.headers['transfer-encoding'];
  req.headers['content-length'] = String(body.length);
  route(req, res, url, body);
}

export function startUiListener(opts: UiListenerOptions): UiListener {
  const files = new UiFiles(opts.dir);
  const budget = new ByteBudget(opts.unprovenBodyBudget ?? UNPROVEN_BODY_BUDGET);
  const server = createServer((req, res) => {
    setUiSecurityHeaders(req, res);
    let url: URL;
    try {
      url = new URL(req.url ?? '/', 'http://ui.local');
    } catch {
      return refuse(res, new KrpcError('BAD_REQUEST', 'malformed request URL'));
    }
    const dfs = dfsRequest(req, url);
    const work =
      dfs ? Promise.resolve(handleDfs(req, res, url, dfs, opts.route))
      : url.pathname === '/kapi' || url.pathname.startsWith('/kapi/') ? handleKapi(req, res, url, opts.route, budget)
      : req.method === 'GET' || req.method === 'HEAD' ? files.serve(req, res, url)
      : Promise.resolve(refuse(res, new KrpcError('BAD_REQUEST', `${req.method} is not served here; pages are GET`)));
    work.catch((err: unknown) => {
      const e = err instanceof KrpcError ? err : new KrpcError('INTERNAL', 'internal error');
      if (!(err instanceof KrpcError)) opts.log.error({ err: (err as Error).message, path: url.pathname }, 'system UI request failed');
      if (!res.headersSent) refuse(res, e);
      else res.destroy();
    });
  });
  server.keepAliveTimeout = 30_000;
  server.headersTimeout = 35_000;
  server.requestTimeout = 120_000;
  server.maxConnections = MAX_CONNECTIONS;

  const bound = listenRetrying(server, { host: opts.host, port: opts.port, log: opts.log, what: 'system UI', rebindMs: opts.rebindMs });
  return { server, listening: bound.listening, close: bound.close };
}
